//! Personal access tokens: hashing, scope grammar, bearer lookup, role checks.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::postgres::PgExecutor;

/// The tenant every request of the test bed belongs to.
pub const DEFAULT_TENANT_SLUG: &str = "default";
/// Scope that makes a token a tenant administrator / auditor.
pub const ADMIN_SCOPE: &str = "repo:*:admin";
pub const TOKEN_PREFIX: &str = "af_pat_";
pub const TTL_MINUTES_MIN: i64 = 5;
pub const TTL_MINUTES_MAX: i64 = 1440;

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

pub fn generate_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("{TOKEN_PREFIX}{}", hex::encode(b))
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

/// Whether the subject holds one of `roles` in a tenant-level role binding.
pub async fn has_tenant_role(
    pool: &PgPool,
    tenant_id: &str,
    subject: &str,
    roles: &[&str],
) -> Result<bool, sqlx::Error> {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    sqlx::query_scalar(
        "select exists(select 1 from tenant_role_bindings \
         where tenant_id = $1::uuid and subject = $2 and roles && $3)",
    )
    .bind(tenant_id)
    .bind(subject)
    .bind(roles)
    .fetch_one(pool)
    .await
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
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(t, generate_token());
        assert_eq!(hash_token("abc").len(), 64);
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd"));
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
    }
}
