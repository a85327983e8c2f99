//! The HTTP surface of the test bed API.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use super::auth::{self, Principal, TenantRole};
use super::config::ApiConfig;
use super::faults::{Faults, FaultsWire};
use super::health::{self, OverallStatus, ProbeResults, Readiness, now_iso};

pub struct AppState {
    pub environment: String,
    pub pool: PgPool,
    pub pg_options: PgConnectOptions,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub bootstrap_token: Option<String>,
    pub presign_part_ttl_seconds: u32,
    pub faults: Mutex<Faults>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn new(cfg: &ApiConfig) -> Self {
        AppState {
            environment: cfg.environment.clone(),
            pool: super::clients::lazy_pool(cfg.postgres.clone(), 10),
            pg_options: cfg.postgres.clone(),
            s3: super::clients::s3_client(&cfg.object_storage),
            bucket: cfg.object_storage.bucket.clone(),
            bootstrap_token: cfg.bootstrap_token.clone(),
            presign_part_ttl_seconds: cfg.object_storage.presign_part_ttl_seconds,
            faults: Mutex::new(cfg.initial_faults.clone()),
        }
    }

    /// PostgreSQL first, then object storage, one after the other, as the service does
    /// (Program.fs:2525-2526 `collectDependencyStatuses`).
    pub async fn readiness(&self) -> Readiness {
        let postgres = health::probe_postgres(&self.pool, &self.pg_options).await;
        let object_storage = health::probe_object_storage(&self.s3, &self.bucket).await;
        let faults = self.faults.lock().expect("faults lock").clone();
        health::assemble(
            ProbeResults {
                postgres,
                object_storage,
            },
            &faults,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Errors: {"error": code, "message": text}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
}

/// Every database failure is a 503 `service_unavailable` "Database operation failed: ..."
/// (Program.fs:2338-2344 `withConnection` turns any exception into an error, and the handlers
/// answer it with `serviceUnavailable`, Program.fs:2192); the service has no `internal_error`.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "database operation failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("Database operation failed: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

// ---------------------------------------------------------------------------------------------
// Helpers

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let t = rest.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// The service's 401 for a missing or unknown bearer (Program.fs:6399, :6412).
const MISSING_BEARER: &str = "Missing or invalid bearer token.";

/// The bearer's principal, or `None` when there is no `Bearer` header or the token is unknown,
/// expired or revoked (Program.fs:6388 `tryAuthenticate`).
async fn try_authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Principal>> {
    match bearer_token(headers) {
        None => Ok(None),
        Some(token) => Ok(auth::authenticate(&state.pool, &token).await?),
    }
}

pub(super) async fn require_principal(
    state: &AppState,
    headers: &HeaderMap,
) -> ApiResult<Principal> {
    try_authenticate(state, headers)
        .await?
        .ok_or_else(|| ApiError::unauthorized(MISSING_BEARER))
}

/// Scope `repo:*:admin` or a tenant role binding implying `role` (Program.fs:6405
/// `hasTenantRoleAccess`).
async fn has_tenant_role_access(
    state: &AppState,
    p: &Principal,
    role: TenantRole,
) -> ApiResult<bool> {
    Ok(p.has_admin_scope()
        || auth::has_tenant_role(&state.pool, &p.tenant_id, &p.subject, role).await?)
}

/// Program.fs:6409 `requireTenantRole`: 401 without a valid bearer, 403 without the role.
async fn require_tenant_role(
    state: &AppState,
    headers: &HeaderMap,
    role: TenantRole,
) -> ApiResult<Principal> {
    let p = require_principal(state, headers).await?;
    if has_tenant_role_access(state, &p, role).await? {
        Ok(p)
    } else {
        Err(ApiError::forbidden(
            "Caller does not have the required tenant role.",
        ))
    }
}

pub(super) fn parse_object(body: &Bytes) -> ApiResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// Property lookup with case-insensitive names (like System.Text.Json's web defaults).
pub(super) fn get_ci<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.get(name).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The array field `name` of a request body (case-insensitive, as System.Text.Json binds it):
/// missing, not an array or empty is the service's 400 with `empty`.
pub(super) fn non_empty_array(
    m: &Map<String, Value>,
    name: &str,
    empty: &str,
) -> ApiResult<Vec<Value>> {
    match get_ci(m, name).and_then(Value::as_array) {
        Some(items) if !items.is_empty() => Ok(items.clone()),
        _ => Err(ApiError::bad_request(empty)),
    }
}

pub(super) async fn audit(
    pool: &PgPool,
    tenant_id: &str,
    actor: &str,
    action: &str,
    resource_type: &str,
    resource_id: &str,
    details: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log (tenant_id, actor_subject, action, resource_type, resource_id, details) \
         values ($1::uuid, $2, $3, $4, $5, $6::jsonb)",
    )
    .bind(tenant_id)
    .bind(actor)
    .bind(action)
    .bind(resource_type)
    .bind(resource_id)
    .bind(details.to_string())
    .execute(pool)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// Program.fs:7666: `service = "artifortress-api"`.
async fn root(State(s): State<SharedState>) -> Json<Value> {
    Json(
        json!({"service": "artifortress-api", "environment": s.environment, "timestampUtc": now_iso()}),
    )
}

async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(s): State<SharedState>) -> Response {
    let r = s.readiness().await;
    let code = if r.status == OverallStatus::NotReady {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(r)).into_response()
}

/// Program.fs:10892-10955: tenant auditor (or admin) only; counters of the caller's tenant
/// (Program.fs:5174 `readOpsSummary`); the audit row is `operations` / tenant id with the
/// counters and statuses as details.
async fn ops_summary(State(s): State<SharedState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let p = require_tenant_role(&s, &headers, TenantRole::Auditor).await?;
    let c: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "select \
           (select count(*) from outbox_events where tenant_id = $1::uuid and delivered_at is null), \
           (select count(*) from outbox_events where tenant_id = $1::uuid and delivered_at is null \
              and available_at <= now()), \
           (select coalesce(max(extract(epoch from (now() - occurred_at))), 0)::bigint \
              from outbox_events where tenant_id = $1::uuid and delivered_at is null), \
           (select count(*) from search_index_jobs where tenant_id = $1::uuid and status = 'failed'), \
           (select count(*) from search_index_jobs where tenant_id = $1::uuid \
              and status in ('pending', 'processing')), \
           (select count(*) from gc_runs where tenant_id = $1::uuid and completed_at is null), \
           (select count(*) from audit_log where tenant_id = $1::uuid and action = 'policy.timeout' \
              and occurred_at >= now() - interval '24 hours')",
    )
    .bind(&p.tenant_id)
    .fetch_one(&s.pool)
    .await?;
    let readiness = s.readiness().await;
    let trust = |name: &str| {
        readiness
            .dependencies
            .iter()
            .find(|d| d.name == name)
            .map(|d| json!({"healthy": d.healthy, "status": d.status, "detail": d.detail}))
            .unwrap_or(Value::Null)
    };
    let trust_material = json!({"oidc": trust("oidc_jwks"), "saml": trust("saml_metadata")});
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        "ops.summary.read",
        "operations",
        &p.tenant_id,
        json!({
            "pendingOutboxEvents": c.0.to_string(),
            "availableOutboxEvents": c.1.to_string(),
            "oldestPendingOutboxAgeSeconds": c.2.to_string(),
            "failedSearchJobs": c.3.to_string(),
            "pendingSearchJobs": c.4.to_string(),
            "incompleteGcRuns": c.5.to_string(),
            "recentPolicyTimeouts24h": c.6.to_string(),
            "readinessStatus": readiness.status.as_str(),
            "oidcTrustStatus": trust_material["oidc"]["status"],
            "samlTrustStatus": trust_material["saml"]["status"],
        }),
    )
    .await?;
    Ok(Json(json!({
        "checkedAtUtc": now_iso(),
        "pendingOutboxEvents": c.0,
        "availableOutboxEvents": c.1,
        "oldestPendingOutboxAgeSeconds": c.2,
        "failedSearchJobs": c.3,
        "pendingSearchJobs": c.4,
        "incompleteGcRuns": c.5,
        "recentPolicyTimeouts24h": c.6,
        "readiness": {"status": readiness.status, "dependencies": readiness.dependencies},
        "trustMaterial": trust_material,
    })))
}

/// A JSON integer property as .NET reads it into an `int`: absent or null is 0.
fn int_prop(m: &Map<String, Value>, name: &str) -> ApiResult<i64> {
    match get_ci(m, name) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .filter(|n| i32::try_from(*n).is_ok())
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be an integer"))),
    }
}

/// `POST /v1/auth/pats`, following Program.fs:7799-7905.
async fn issue_pat(
    State(s): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    // Program.fs:7802-7806: the header is compared only when a bootstrap token is configured.
    let given = headers
        .get("x-bootstrap-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let bootstrap_ok = s
        .bootstrap_token
        .as_deref()
        .is_some_and(|expected| !given.is_empty() && auth::constant_time_eq(given, expected));
    let caller = try_authenticate(&s, &headers).await?;
    let caller_is_admin = match &caller {
        Some(p) => has_tenant_role_access(&s, p, TenantRole::Admin).await?,
        None => false,
    };

    let mut tx = s.pool.begin().await?;
    // Serialises the first-token rule.
    sqlx::query("select pg_advisory_xact_lock(hashtext('artifortress.pat.issue'))")
        .execute(&mut *tx)
        .await?;
    let tenant_id = auth::ensure_default_tenant(&mut *tx).await?;
    let has_tokens: bool = sqlx::query_scalar(
        "select exists(select 1 from personal_access_tokens where tenant_id = $1::uuid)",
    )
    .bind(&tenant_id)
    .fetch_one(&mut *tx)
    .await?;
    let policy_max = auth::policy_max_ttl(&mut *tx, &tenant_id).await?;
    // Program.fs:7824-7828: the first token of a tenant is minted whatever the header says.
    if has_tokens && !bootstrap_ok && !caller_is_admin {
        return Err(ApiError::forbidden(
            "PAT issuance requires bootstrap token or admin scope.",
        ));
    }

    let m = parse_object(&body)?;
    let subject = match get_ci(&m, "subject") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(v)) => auth::normalize_subject(v),
        Some(_) => return Err(ApiError::bad_request("subject must be a string")),
    };
    if subject.is_empty() {
        return Err(ApiError::bad_request("Subject is required."));
    }
    let ttl = int_prop(&m, "ttlMinutes")?;
    if !(auth::TTL_MINUTES_MIN..=auth::TTL_MINUTES_MAX).contains(&ttl) {
        return Err(ApiError::bad_request(
            "ttlMinutes must be between 5 and 1440.",
        ));
    }
    if ttl > policy_max {
        return Err(ApiError::bad_request(format!(
            "ttlMinutes exceeds configured max TTL of {policy_max}."
        )));
    }
    let requested: Vec<String> = match get_ci(&m, "scopes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|it| match it {
                Value::String(sc) => Ok(sc.clone()),
                _ => Err(ApiError::bad_request("scopes must be an array of strings")),
            })
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(ApiError::bad_request("scopes must be an array of strings")),
    };
    // Program.fs:7846-7862: no scopes given → the subject's role bindings.
    let input = if requested.is_empty() {
        let derived = auth::scopes_from_bindings(&mut *tx, &tenant_id, &subject).await?;
        let roles = auth::tenant_roles(&mut *tx, &tenant_id, &subject).await?;
        if derived.is_empty() && roles.is_empty() {
            return Err(ApiError::bad_request(
                "No scopes were provided and no role bindings were found for the subject.",
            ));
        }
        derived
    } else {
        requested
    };
    let mut scopes = Vec::new();
    for sc in input {
        auth::validate_scope(&sc).map_err(ApiError::bad_request)?;
        if !scopes.contains(&sc) {
            scopes.push(sc);
        }
    }
    // Program.fs:7872-7875.
    let actor = match &caller {
        Some(p) => p.subject.clone(),
        None if bootstrap_ok => "bootstrap".to_string(),
        None => "anonymous".to_string(),
    };
    let token = auth::generate_token();
    let (token_id, expires_at): (String, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "insert into personal_access_tokens \
           (tenant_id, subject, token_hash, scopes, expires_at, created_by_subject) \
         values ($1::uuid, $2, $3, $4, now() + make_interval(mins => $5), $6) \
         returning token_id::text, expires_at",
    )
    .bind(&tenant_id)
    .bind(&subject)
    .bind(auth::hash_token(&token))
    .bind(&scopes)
    .bind(ttl as i32)
    .bind(&actor)
    .fetch_one(&mut *tx)
    .await?;
    // Program.fs:7882-7892: resource type `token`, details subject / TTL / the policy's max.
    sqlx::query(
        "insert into audit_log (tenant_id, actor_subject, action, resource_type, resource_id, details) \
         values ($1::uuid, $2, 'auth.pat.issued', 'token', $3, $4::jsonb)",
    )
    .bind(&tenant_id)
    .bind(&actor)
    .bind(&token_id)
    .bind(
        json!({
            "subject": subject,
            "ttlMinutes": ttl.to_string(),
            "policyMaxTtlMinutes": policy_max.to_string(),
        })
        .to_string(),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(json!({
        "tokenId": token_id,
        "token": token,
        "subject": subject,
        "scopes": scopes,
        "expiresAtUtc": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })))
}

/// `POST /v1/auth/pats/revoke` (Program.fs:7908-7931): only a token not revoked yet is
/// revoked (Program.fs:3253-3265 `revoked_at is null`); otherwise 404.
async fn revoke_pat(
    State(s): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let p = require_tenant_role(&s, &headers, TenantRole::Admin).await?;
    let m = parse_object(&body)?;
    let token_id = match get_ci(&m, "tokenId") {
        Some(Value::String(t)) if auth::is_uuid(t.trim()) => t.trim().to_ascii_lowercase(),
        _ => return Err(ApiError::bad_request("tokenId is required (a GUID)")),
    };
    let mut tx = s.pool.begin().await?;
    let found: Option<String> = sqlx::query_scalar(
        "update personal_access_tokens set revoked_at = now() \
         where token_id = $1::uuid and tenant_id = $2::uuid and revoked_at is null \
         returning token_id::text",
    )
    .bind(&token_id)
    .bind(&p.tenant_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(found) = found else {
        return Err(ApiError::not_found("Token id was not found."));
    };
    sqlx::query(
        "insert into token_revocations (tenant_id, token_id, revoked_by_subject) \
         values ($1::uuid, $2::uuid, $3)",
    )
    .bind(&p.tenant_id)
    .bind(&found)
    .bind(&p.subject)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "insert into audit_log (tenant_id, actor_subject, action, resource_type, resource_id, details) \
         values ($1::uuid, $2, 'auth.pat.revoked', 'token', $3, '{}'::jsonb)",
    )
    .bind(&p.tenant_id)
    .bind(&p.subject)
    .bind(&found)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(json!({"tokenId": found, "status": "revoked"})))
}

/// The policy as the service serialises it (Program.fs:625 default: 1440, bootstrap issuance
/// allowed, `system-default`, `DateTimeOffset.MinValue`).
async fn read_pat_policy(pool: &PgPool, tenant_id: &str) -> Result<Value, sqlx::Error> {
    let row: Option<(i32, bool, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "select max_ttl_minutes, allow_bootstrap_issuance, updated_by_subject, updated_at \
         from pat_issuance_policies where tenant_id = $1::uuid",
    )
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((max, allow, by, at)) => json!({
            "maxTtlMinutes": max,
            "allowBootstrapIssuance": allow,
            "updatedBySubject": by,
            "updatedAtUtc": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }),
        None => json!({
            "maxTtlMinutes": auth::DEFAULT_POLICY_MAX_TTL,
            "allowBootstrapIssuance": true,
            "updatedBySubject": "system-default",
            "updatedAtUtc": "0001-01-01T00:00:00+00:00",
        }),
    })
}

/// `GET /v1/admin/auth/pat-policy` (Program.fs:7934-7943): tenant admin.
async fn get_pat_policy(
    State(s): State<SharedState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let p = require_tenant_role(&s, &headers, TenantRole::Admin).await?;
    Ok(Json(read_pat_policy(&s.pool, &p.tenant_id).await?))
}

/// `PUT /v1/admin/auth/pat-policy` (Program.fs:8093-8128): tenant admin, body
/// `{maxTtlMinutes, allowBootstrapIssuance}`, 5..10080, audit `auth.pat.policy.updated`.
async fn put_pat_policy(
    State(s): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let p = require_tenant_role(&s, &headers, TenantRole::Admin).await?;
    let m = parse_object(&body)?;
    let max = int_prop(&m, "maxTtlMinutes")?;
    let allow = match get_ci(&m, "allowBootstrapIssuance") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "allowBootstrapIssuance must be a boolean",
            ));
        }
    };
    if !(auth::POLICY_MAX_TTL_MIN..=auth::POLICY_MAX_TTL_MAX).contains(&max) {
        return Err(ApiError::bad_request(
            "maxTtlMinutes must be between 5 and 10080.",
        ));
    }
    sqlx::query(
        "insert into pat_issuance_policies \
           (tenant_id, max_ttl_minutes, allow_bootstrap_issuance, updated_by_subject, updated_at) \
         values ($1::uuid, $2, $3, $4, now()) \
         on conflict (tenant_id) do update set \
           max_ttl_minutes = excluded.max_ttl_minutes, \
           allow_bootstrap_issuance = excluded.allow_bootstrap_issuance, \
           updated_by_subject = excluded.updated_by_subject, updated_at = now()",
    )
    .bind(&p.tenant_id)
    .bind(max as i32)
    .bind(allow)
    .bind(&p.subject)
    .execute(&s.pool)
    .await?;
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        "auth.pat.policy.updated",
        "pat_policy",
        &p.tenant_id,
        // .NET's bool.ToString(): True / False.
        json!({"maxTtlMinutes": max.to_string(), "allowBootstrapIssuance": if allow { "True" } else { "False" }}),
    )
    .await?;
    Ok(Json(read_pat_policy(&s.pool, &p.tenant_id).await?))
}

async fn whoami(State(s): State<SharedState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let p = require_principal(&s, &headers).await?;
    Ok(Json(
        json!({"subject": p.subject, "scopes": p.scopes, "authSource": p.auth_source}),
    ))
}

// TEST-ONLY: fault switches (see `faults.rs`). Mounted only with TESTBED_FAULTS_ENABLED=1.
async fn get_faults(State(s): State<SharedState>) -> Json<FaultsWire> {
    Json(s.faults.lock().expect("faults lock").to_wire())
}

async fn put_faults(State(s): State<SharedState>, body: Bytes) -> ApiResult<Json<FaultsWire>> {
    let wire: FaultsWire = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid fault document: {e}")))?;
    let f = Faults::from_wire(&wire).map_err(ApiError::bad_request)?;
    tracing::warn!(faults = ?wire, "testbed fault switches replaced");
    let out = f.to_wire();
    *s.faults.lock().expect("faults lock") = f;
    Ok(Json(out))
}

/// ASP.NET's answer to an unknown route: 404 with an empty body.
async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

async fn log_requests(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t = Instant::now();
    let resp = next.run(req).await;
    tracing::info!(
        %method,
        path,
        status = resp.status().as_u16(),
        ms = t.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

pub fn router(state: SharedState, faults_api_enabled: bool) -> Router {
    let mut r = Router::new()
        .route("/", get(root))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/v1/admin/ops/summary", get(ops_summary))
        .route("/v1/auth/pats", post(issue_pat))
        .route("/v1/auth/pats/revoke", post(revoke_pat))
        .route(
            "/v1/admin/auth/pat-policy",
            get(get_pat_policy).put(put_pat_policy),
        )
        .route("/v1/auth/whoami", get(whoami))
        .merge(super::smoke_routes::routes());
    if faults_api_enabled {
        r = r.route("/testbed/faults", get(get_faults).put(put_faults));
    }
    r.fallback(not_found)
        .layer(middleware::from_fn(log_requests))
        .with_state(state)
}
