//! `ephemeral "artifortress_admin_token"`: a short-lived personal access token minted with the
//! provider's bootstrap token for one Terraform run, revoked when Terraform closes it.
//!
//! The token never reaches state or plan (Terraform keeps ephemeral results in memory); the
//! provider keeps it in process memory only, keyed by its id, to revoke it on close.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clients::api::{ApiError, Credential};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{Context, EphemeralResource, OpenRequest, OpenResponse};
use crate::protocol::model::Maybe;
use crate::protocol::schema::{Attribute, Schema};
use crate::protocol::types::Type;
use crate::protocol::validators::Validator;
use crate::protocol::value::Value;
use crate::settings::{BOOTSTRAP_TOKEN, Secret, Setting, Settings, api_diagnostic, require};

pub const TYPE_NAME: &str = "artifortress_admin_token";
pub const DEFAULT_SCOPE: &str = "repo:*:admin";
pub const DEFAULT_SUBJECT: &str = "terraform";

crate::model! {
    /// `ephemeral "artifortress_admin_token"` as configured and opened.
    pub(crate) struct AdminTokenModel {
        subject: String = Attribute::optional_computed("subject", Type::String)
            .default_value(DEFAULT_SUBJECT)
            .validate(Validator::NotEmpty)
            .description("Subject recorded on the token and in the service's audit log (e.g. `ci-drift-check`)."),
        /// Null or unknown elements are skipped, as they always were.
        scopes: Vec<Option<String>> = Attribute::optional_computed("scopes", Type::list(Type::String))
            .default_value(Value::string_list([DEFAULT_SCOPE.to_string()]))
            .description("Scopes, in the service's grammar `repo:<repoKey|*>:<read|write|admin|promote>`."),
        ttl_minutes: i64 = Attribute::optional_computed("ttl_minutes", Type::Number)
            .default_value(Value::int(15))
            .validate(Validator::IntBetween(5, 1440))
            .description("Lifetime in minutes (5 to 1440, and at most the maximum of the tenant's PAT policy, `GET /v1/admin/auth/pat-policy`; a longer one is refused naming that maximum). The token is revoked at the end of the run anyway; the TTL bounds a run that is killed."),
        token: Option<String> = Attribute::computed("token", Type::String)
            .sensitive()
            .description("The bearer token."),
        token_id: Option<String> = Attribute::computed("token_id", Type::String)
            .description("The service's id of the token (what its audit log records)."),
        expires_at: Option<String> = Attribute::computed("expires_at", Type::String)
            .description("When the token expires (RFC 3339, UTC)."),
    }
}

pub struct AdminToken;

/// What Terraform hands back on close: no secret, only the id.
#[derive(Serialize, Deserialize)]
struct Private {
    token_id: String,
    expires_at: String,
}

#[async_trait]
impl EphemeralResource<Settings> for AdminToken {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "Mints a short-lived personal access token through `POST /v1/auth/pats` with the provider's `bootstrap_token`, for this Terraform run only, and revokes it when Terraform closes the resource at the end of the run. Give it to a second, aliased provider block as its `admin_token`, and read `data \"artifortress_ops_summary\"` or `data \"artifortress_preflight\"` through that alias (data sources take no token argument: their arguments are saved in the state). Never in state or plan. Needs Terraform >= 1.10.",
            AdminTokenModel::attributes(),
        )
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut diags = Diagnostics::new();
        // Only a value that an attribute's own validator refuses (a `ttl_minutes` that is not
        // a whole number) fails to convert; that validator reports it.
        if let Ok(m) = AdminTokenModel::planned(config)
            && let Maybe::Known(items) = &m.scopes
        {
            if items.is_empty() {
                diags.push(
                    Diagnostic::error("No scopes", "scopes must list at least one scope.")
                        .at_attr("scopes"),
                );
            }
            for s in items.iter().flatten() {
                if let Err(e) = check_scope(s) {
                    diags.push(Diagnostic::error("Invalid scope", e).at_attr("scopes"));
                }
            }
        }
        diags
    }

    async fn open(&self, req: OpenRequest<'_, Settings>, resp: &mut OpenResponse) {
        let mut model = match AdminTokenModel::from_config(req.config) {
            Ok(m) => m,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(e.diagnostic("Minting an admin token"));
            }
        };
        let settings = req.provider;
        let bootstrap = match require(
            &settings.bootstrap_token,
            BOOTSTRAP_TOKEN,
            "the service's bootstrap token to mint an admin token",
        ) {
            Ok(t) => t,
            Err(d) => return resp.diagnostics.push(d),
        };
        let client = match settings.api_client(None) {
            Ok(c) => c,
            Err(d) => return resp.diagnostics.push(d),
        };
        let scopes: Vec<String> = model.scopes.iter().flatten().cloned().collect();
        let issued = tokio::select! {
            r = client.issue_token(Credential::Bootstrap(bootstrap.expose()), &model.subject, &scopes, model.ttl_minutes) => r,
            _ = req.ctx.cancel.cancelled() => {
                return resp.diagnostics.push(Diagnostic::error("Minting the admin token cancelled", "Terraform was interrupted."));
            }
        };
        let issued = match issued {
            Ok(t) => t,
            Err(e) => {
                return resp
                    .diagnostics
                    .push(mint_diagnostic(&e, model.ttl_minutes));
            }
        };
        tracing::info!(
            token_id = %issued.token_id,
            subject = %issued.subject,
            expires_at = %issued.expires_at_utc,
            "admin token minted"
        );
        model.token = Some(issued.token.clone());
        model.token_id = Some(issued.token_id.clone());
        model.expires_at = Some(issued.expires_at_utc.clone());
        resp.result = model.to_object();
        settings.remember_minted(&issued.token_id, Secret::new(issued.token.clone()));
        resp.private = serde_json::to_vec(&Private {
            token_id: issued.token_id,
            expires_at: issued.expires_at_utc,
        })
        .unwrap_or_default();
    }

    async fn close(&self, private: &[u8], settings: &Settings, ctx: &Context) -> Diagnostics {
        let mut diags = Diagnostics::new();
        let Ok(p) = serde_json::from_slice::<Private>(private) else {
            return diags;
        };
        let client = match settings.api_client(None) {
            Ok(c) => c,
            Err(d) => {
                diags.push(d);
                return diags;
            }
        };
        // Revoke with the token itself (it is an admin token by default), else with the
        // provider's admin token.
        let own = settings.forget_minted(&p.token_id);
        let mut tried = Vec::new();
        for (label, token) in [
            ("the token itself", own),
            (
                "the provider's admin_token",
                match &settings.admin_token {
                    Setting::Known(s) => Some(s.clone()),
                    _ => None,
                },
            ),
        ] {
            let Some(token) = token else { continue };
            let r = tokio::select! {
                r = client.revoke_token(token.expose(), &p.token_id) => r,
                _ = ctx.cancel.cancelled() => break,
            };
            match r {
                Ok(_) => {
                    tracing::info!(token_id = %p.token_id, "admin token revoked");
                    return diags;
                }
                Err(e) => tried.push(format!("with {label}: {e}")),
            }
        }
        diags.push(Diagnostic::warning(
            "Admin token not revoked",
            format!(
                "Token {} could not be revoked; it stays valid until {}.{}",
                p.token_id,
                p.expires_at,
                if tried.is_empty() {
                    " No admin credential was available to revoke it.".to_string()
                } else {
                    format!(" Attempts:\n  - {}", tried.join("\n  - "))
                }
            ),
        ));
        diags
    }
}

/// What a refused mint means, in the service's words and with what to change.
fn mint_diagnostic(e: &ApiError, ttl_minutes: i64) -> Diagnostic {
    if let Some(max) = e.pat_policy_max_ttl() {
        return Diagnostic::error(
            format!("The tenant's PAT policy allows tokens of at most {max} minutes"),
            format!(
                "ttl_minutes = {ttl_minutes} is above the maximum TTL of the tenant's PAT policy \
                 ({max} minutes, set with PUT /v1/admin/auth/pat-policy). Set ttl_minutes to \
                 {max} or less, or have a tenant admin raise the policy's maxTtlMinutes.\n\n{e}"
            ),
        )
        .at_attr("ttl_minutes");
    }
    match e {
        ApiError::Service { status: 403, .. } => Diagnostic::error(
            "Minting an admin token: Artifortress refused the bootstrap token (403)",
            format!(
                "{e}\n\nThe tenant has tokens already, so the service mints one only for a request \
                 whose X-Bootstrap-Token matches its Auth__BootstrapToken (the well-known \
                 `artifortress-bootstrap` when the service leaves it unset, none when it is set \
                 blank) or that carries a tenant admin's bearer token. Check the provider's \
                 `{}` / {} against the service's Auth__BootstrapToken.",
                BOOTSTRAP_TOKEN.attribute,
                BOOTSTRAP_TOKEN.env.unwrap_or_default()
            ),
        ),
        ApiError::Service { status: 400, .. } => Diagnostic::error(
            "Minting an admin token: Artifortress refused the request (400)",
            format!("{e}\n\nCheck subject, scopes and ttl_minutes against the service's rules."),
        ),
        _ => api_diagnostic("Minting an admin token", e),
    }
}

/// `repo:<repoKey|*>:<read|write|admin|promote>`.
fn check_scope(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        ["repo", key, perm]
            if !key.is_empty() && ["read", "write", "admin", "promote"].contains(perm) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{s:?} is not a scope; the grammar is repo:<repoKey|*>:<read|write|admin|promote>."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_valid() {
        assert!(AdminToken.schema().check().is_empty());
    }

    fn service(status: u16, code: &str, message: &str) -> ApiError {
        ApiError::Service {
            url: "http://h/v1/auth/pats".into(),
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn refusals_quote_the_service_and_say_what_to_change() {
        let d = mint_diagnostic(
            &service(
                400,
                "bad_request",
                "ttlMinutes exceeds configured max TTL of 30.",
            ),
            60,
        );
        assert_eq!(
            d.summary,
            "The tenant's PAT policy allows tokens of at most 30 minutes"
        );
        assert!(d.detail.contains("ttl_minutes = 60"), "{}", d.detail);
        assert!(
            d.detail
                .contains("bad_request: ttlMinutes exceeds configured max TTL of 30."),
            "{}",
            d.detail
        );
        assert_eq!(d.attribute.unwrap().to_string(), "ttl_minutes");

        let d = mint_diagnostic(
            &service(403, "forbidden", crate::clients::api::PAT_ISSUANCE_REFUSED),
            15,
        );
        assert!(d.summary.contains("refused the bootstrap token (403)"));
        assert!(
            d.detail
                .contains("forbidden: PAT issuance requires bootstrap token or admin scope.")
                && d.detail.contains("Auth__BootstrapToken")
                && d.detail.contains("ARTIFORTRESS_BOOTSTRAP_TOKEN"),
            "{}",
            d.detail
        );
    }

    #[test]
    fn scopes_follow_the_grammar() {
        assert!(check_scope("repo:*:admin").is_ok());
        assert!(check_scope("repo:core:promote").is_ok());
        assert!(check_scope("repo:*:owner").is_err());
        assert!(check_scope("admin").is_err());
        assert!(check_scope("repo::read").is_err());
    }
}
