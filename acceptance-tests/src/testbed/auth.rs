//! Personal access tokens: hashing, scope grammar, bearer lookup, role checks.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::postgres::PgExecutor;

/// The tenant every request of the test bed belongs to.
pub const DEFAULT_TENANT_SLUG: &str = "default";
/// Scope that makes a token a tenant administrator / auditor.
pub const ADMIN_SCOPE: &str = "repo:*:admin";
pub const TTL_MINUTES_MIN: i64 = 5;
pub const TTL_MINUTES_MAX: i64 = 1440;
/// The PAT policy's bounds and its default maximum when a tenant has no policy row
/// (Program.fs:625 `defaultPatPolicy`, :8103 `maxTtlMinutes must be between 5 and 10080.`).
pub const POLICY_MAX_TTL_MIN: i64 = 5;
pub const POLICY_MAX_TTL_MAX: i64 = 10080;
pub const DEFAULT_POLICY_MAX_TTL: i64 = 1440;

/// A tenant-level role (the service's `TenantRole`, src/Artifortress.Domain/Library.fs:28-57):
/// `admin` implies every role; `auditor` and `operator` only themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantRole {
    Admin,
    Auditor,
    Operator,
}

impl TenantRole {
    /// `admin`/`tenant_admin`, `auditor`/`tenant_auditor`, `operator`/`tenant_operator`,
    /// trimmed and case-insensitive (Library.fs:34-46).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" | "tenant_admin" => Some(Self::Admin),
            "auditor" | "tenant_auditor" => Some(Self::Auditor),
            "operator" | "tenant_operator" => Some(Self::Operator),
            _ => None,
        }
    }

    pub fn implies(self, required: TenantRole) -> bool {
        self == TenantRole::Admin || self == required
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub tenant_id: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub auth_source: &'static str,
}

impl Principal {
    pub fn has_admin_scope(&self) -> bool {
        self.scopes.iter().any(|s| s == ADMIN_SCOPE)
    }
}

/// Lower-case hex SHA-256 of the token; only this is stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 32 random bytes as 64 lower-case hex characters, no prefix (Program.fs:2173
/// `createPlainToken`).
pub fn generate_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Trimmed and lower-cased (Program.fs:685 `normalizeSubject`).
pub fn normalize_subject(s: &str) -> String {
    s.trim().to_lowercase()
}

/// `repo:<repoKey|*>:<read|write|admin|promote>`.
pub fn validate_scope(scope: &str) -> Result<(), String> {
    let parts: Vec<&str> = scope.split(':').collect();
    let bad =
        || format!("invalid scope {scope:?}: expected repo:<repoKey|*>:<read|write|admin|promote>");
    if parts.len() != 3 || parts[0] != "repo" {
        return Err(bad());
    }
    let key = parts[1];
    let key_ok = key == "*"
        || (!key.is_empty()
            && key.len() <= 128
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric()));
    if !key_ok || !matches!(parts[2], "read" | "write" | "admin" | "promote") {
        return Err(bad());
    }
    Ok(())
}

/// Constant-time string comparison for the bootstrap token.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Find the active (not revoked, not expired) token.
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Option<Principal>, sqlx::Error> {
    let row: Option<(String, String, String, Vec<String>)> = sqlx::query_as(
        "select token_id::text, tenant_id::text, subject, scopes \
         from personal_access_tokens \
         where token_hash = $1 and revoked_at is null and expires_at > now()",
    )
    .bind(hash_token(token))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(token_id, tenant_id, subject, scopes)| Principal {
        token_id,
        tenant_id,
        subject,
        scopes,
        auth_source: "pat",
    }))
}

/// The subject's tenant roles: the roles of its (first) `tenant_role_bindings` row
/// (Program.fs:2578 `readTenantRolesForSubject`); unknown role names are ignored.
pub async fn tenant_roles<'e>(
    ex: impl PgExecutor<'e>,
    tenant_id: &str,
    subject: &str,
) -> Result<Vec<TenantRole>, sqlx::Error> {
    let roles: Option<Vec<String>> = sqlx::query_scalar(
        "select roles from tenant_role_bindings \
         where tenant_id = $1::uuid and subject = $2 limit 1",
    )
    .bind(tenant_id)
    .bind(subject)
    .fetch_optional(ex)
    .await?;
    Ok(roles
        .unwrap_or_default()
        .iter()
        .filter_map(|r| TenantRole::parse(r))
        .collect())
}

/// Whether the subject holds a tenant role that implies `required`.
pub async fn has_tenant_role(
    pool: &PgPool,
    tenant_id: &str,
    subject: &str,
    required: TenantRole,
) -> Result<bool, sqlx::Error> {
    Ok(tenant_roles(pool, tenant_id, subject)
        .await?
        .iter()
        .any(|r| r.implies(required)))
}

/// Scopes derived from the subject's repository role bindings, `repo:<repo_key>:<role>`
/// (Program.fs:6690 `readScopesFromBindings`).
pub async fn scopes_from_bindings<'e>(
    ex: impl PgExecutor<'e>,
    tenant_id: &str,
    subject: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String, Vec<String>)> = sqlx::query_as(
        "select r.repo_key, rb.roles from role_bindings rb \
         join repos r on r.repo_id = rb.repo_id \
         where rb.tenant_id = $1::uuid and rb.subject = $2 order by rb.binding_id",
    )
    .bind(tenant_id)
    .bind(subject)
    .fetch_all(ex)
    .await?;
    let mut out = Vec::new();
    for (repo, roles) in rows {
        for role in roles {
            let scope = format!("repo:{repo}:{}", role.trim().to_ascii_lowercase());
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
    }
    Ok(out)
}

/// The tenant's PAT policy maximum TTL in minutes: its `pat_issuance_policies` row, else the
/// default 1440 (Program.fs:2678 `effectivePatPolicyForTenant`).
pub async fn policy_max_ttl<'e>(
    ex: impl PgExecutor<'e>,
    tenant_id: &str,
) -> Result<i64, sqlx::Error> {
    let v: Option<i32> = sqlx::query_scalar(
        "select max_ttl_minutes from pat_issuance_policies where tenant_id = $1::uuid",
    )
    .bind(tenant_id)
    .fetch_optional(ex)
    .await?;
    Ok(v.map_or(DEFAULT_POLICY_MAX_TTL, i64::from))
}

/// Create the default tenant if needed and return its id.
pub async fn ensure_default_tenant<'e>(ex: impl PgExecutor<'e>) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "with ins as ( \
           insert into tenants (slug, name) values ($1, 'Default tenant') \
           on conflict (slug) do nothing returning tenant_id) \
         select tenant_id::text from ins \
         union all select tenant_id::text from tenants where slug = $1 \
         limit 1",
    )
    .bind(DEFAULT_TENANT_SLUG)
    .fetch_one(ex)
    .await
}

pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_grammar() {
        for ok in [
            "repo:*:admin",
            "repo:libs-release:read",
            "repo:a.b_c:promote",
            "repo:x:write",
        ] {
            assert!(validate_scope(ok).is_ok(), "{ok}");
        }
        for bad in [
            "repo:*:owner",
            "repo::read",
            "repos:*:read",
            "repo:*:read:x",
            "repo:-x:read",
            "repo:a b:read",
            "",
        ] {
            assert!(validate_scope(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        let t = generate_token();
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{t}");
        assert_ne!(t, generate_token());
        assert_eq!(hash_token("abc").len(), 64);
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd"));
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert_eq!(normalize_subject("  CI-Bot "), "ci-bot");
    }

    #[test]
    fn tenant_roles_follow_library_fs() {
        assert_eq!(
            TenantRole::parse(" Tenant_Auditor"),
            Some(TenantRole::Auditor)
        );
        assert_eq!(TenantRole::parse("ADMIN"), Some(TenantRole::Admin));
        assert_eq!(TenantRole::parse("owner"), None);
        assert!(TenantRole::Admin.implies(TenantRole::Auditor));
        assert!(!TenantRole::Auditor.implies(TenantRole::Admin));
        assert!(!TenantRole::Operator.implies(TenantRole::Auditor));
    }
}
