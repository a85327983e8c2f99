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

use super::auth::{self, Principal};
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

    pub async fn readiness(&self) -> Readiness {
        let (postgres, object_storage) = tokio::join!(
            health::probe_postgres(&self.pool, &self.pg_options),
            health::probe_object_storage(&self.s3, &self.bucket)
        );
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

/// Connection-level failures (PostgreSQL down, unreachable, refusing logins) are 503
/// `service_unavailable`; anything else the database reports is a 500.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        let unavailable = match &e {
            sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                ["08", "28", "3D", "53", "57P"]
                    .iter()
                    .any(|p| c.starts_with(p))
            }),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            _ => false,
        };
        if unavailable {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                format!("PostgreSQL is unavailable: {e}"),
            )
        } else {
            tracing::error!(error = %e, "database error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("database error: {e}"),
            )
        }
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

pub(super) async fn require_principal(
    state: &AppState,
    headers: &HeaderMap,
) -> ApiResult<Principal> {
    if headers.get(axum::http::header::AUTHORIZATION).is_none() {
        return Err(ApiError::unauthorized("a bearer token is required"));
    }
    let token = bearer_token(headers).ok_or_else(|| {
        ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
    })?;
    auth::authenticate(&state.pool, &token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the token is invalid, expired or revoked"))
}

async fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
    roles: &[&str],
) -> ApiResult<Principal> {
    let p = require_principal(state, headers).await?;
    if p.has_admin_scope()
        || auth::has_tenant_role(&state.pool, &p.tenant_id, &p.subject, roles).await?
    {
        Ok(p)
    } else {
        Err(ApiError::forbidden(format!(
            "subject {:?} lacks the required role (scope {} or a tenant {} role binding)",
            p.subject,
            auth::ADMIN_SCOPE,
            roles.join("/")
        )))
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

async fn root(State(s): State<SharedState>) -> Json<Value> {
    Json(
        json!({"service": "artifortress", "environment": s.environment, "timestampUtc": now_iso()}),
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

async fn ops_summary(State(s): State<SharedState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let p = require_admin(&s, &headers, &["admin", "auditor"]).await?;
    let c: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "select \
           (select count(*) from outbox_events where delivered_at is null), \
           (select count(*) from outbox_events where delivered_at is null and available_at <= now()), \
           (select coalesce(greatest(floor(extract(epoch from now() - min(occurred_at))), 0), 0)::bigint \
              from outbox_events where delivered_at is null), \
           (select count(*) from search_index_jobs where status = 'failed'), \
           (select count(*) from search_index_jobs where status in ('pending', 'processing')), \
           (select count(*) from gc_runs where completed_at is null), \
           (select count(*) from audit_log where action = 'policy.timeout' \
              and occurred_at >= now() - interval '24 hours')",
    )
    .fetch_one(&s.pool)
    .await?;
    audit(
        &s.pool,
        &p.tenant_id,
        &p.subject,
        "ops.summary.read",
        "ops_summary",
        "summary",
        json!({"tokenId": p.token_id, "authSource": p.auth_source}),
    )
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

enum IssueAuth {
    Bootstrap,
    Bearer(Principal),
    FirstToken,
}

async fn issue_pat(
    State(s): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let how = if let Some(given) = headers.get("x-bootstrap-token") {
        let given = given.to_str().unwrap_or_default();
        match &s.bootstrap_token {
            Some(expected) if auth::constant_time_eq(given, expected) => IssueAuth::Bootstrap,
            _ => return Err(ApiError::unauthorized("invalid bootstrap token")),
        }
    } else if headers.get(axum::http::header::AUTHORIZATION).is_some() {
        IssueAuth::Bearer(require_admin(&s, &headers, &["admin"]).await?)
    } else {
        IssueAuth::FirstToken
    };

    let m = parse_object(&body)?;
    let subject = match get_ci(&m, "subject") {
        Some(Value::String(v)) if !v.trim().is_empty() && v.len() <= 256 => v.trim().to_string(),
        _ => {
            return Err(ApiError::bad_request(
                "subject is required (a non-empty string)",
            ));
        }
    };
    let scopes: Vec<String> = match get_ci(&m, "scopes") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::new();
            for it in items {
                let Value::String(sc) = it else {
                    return Err(ApiError::bad_request("scopes must be an array of strings"));
                };
                auth::validate_scope(sc).map_err(ApiError::bad_request)?;
                if !out.contains(sc) {
                    out.push(sc.clone());
                }
            }
            out
        }
        _ => {
            return Err(ApiError::bad_request(
                "scopes is required (a non-empty array)",
            ));
        }
    };
    let ttl = get_ci(&m, "ttlMinutes").and_then(Value::as_i64);
    let ttl = match ttl {
        Some(t) if (auth::TTL_MINUTES_MIN..=auth::TTL_MINUTES_MAX).contains(&t) => t,
        _ => {
            return Err(ApiError::bad_request(format!(
                "ttlMinutes must be an integer between {} and {}",
                auth::TTL_MINUTES_MIN,
                auth::TTL_MINUTES_MAX
            )));
        }
    };

    let mut tx = s.pool.begin().await?;
    // Serialises the first-token rule.
    sqlx::query("select pg_advisory_xact_lock(hashtext('artifortress.pat.issue'))")
        .execute(&mut *tx)
        .await?;
    let tenant_id = auth::ensure_default_tenant(&mut *tx).await?;
    let (actor, authorized_by) = match &how {
        IssueAuth::Bootstrap => ("bootstrap".to_string(), "bootstrap_token"),
        IssueAuth::Bearer(p) => (p.subject.clone(), "bearer"),
        IssueAuth::FirstToken => {
            let existing: i64 = sqlx::query_scalar(
                "select count(*) from personal_access_tokens where tenant_id = $1::uuid",
            )
            .bind(&tenant_id)
            .fetch_one(&mut *tx)
            .await?;
            if existing > 0 {
                return Err(ApiError::unauthorized(
                    "an admin bearer token or X-Bootstrap-Token is required",
                ));
            }
            (subject.clone(), "first_token")
        }
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
    sqlx::query(
        "insert into audit_log (tenant_id, actor_subject, action, resource_type, resource_id, details) \
         values ($1::uuid, $2, 'auth.pat.issued', 'personal_access_token', $3, $4::jsonb)",
    )
    .bind(&tenant_id)
    .bind(&actor)
    .bind(&token_id)
    .bind(
        json!({"subject": subject, "scopes": scopes, "ttlMinutes": ttl, "authorizedBy": authorized_by})
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

async fn revoke_pat(
    State(s): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let p = require_admin(&s, &headers, &["admin"]).await?;
    let m = parse_object(&body)?;
    let token_id = match get_ci(&m, "tokenId") {
        Some(Value::String(t)) if auth::is_uuid(t.trim()) => t.trim().to_ascii_lowercase(),
        _ => return Err(ApiError::bad_request("tokenId is required (a GUID)")),
    };
    let mut tx = s.pool.begin().await?;
    let found: Option<String> = sqlx::query_scalar(
        "update personal_access_tokens set revoked_at = coalesce(revoked_at, now()) \
         where token_id = $1::uuid and tenant_id = $2::uuid returning token_id::text",
    )
    .bind(&token_id)
    .bind(&p.tenant_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(found) = found else {
        return Err(ApiError::not_found(format!(
            "token {token_id} was not found"
        )));
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
         values ($1::uuid, $2, 'auth.pat.revoked', 'personal_access_token', $3, '{}'::jsonb)",
    )
    .bind(&p.tenant_id)
    .bind(&p.subject)
    .bind(&found)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(json!({"tokenId": found, "status": "revoked"})))
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

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
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
        .route("/v1/auth/whoami", get(whoami))
        .merge(super::smoke_routes::routes());
    if faults_api_enabled {
        r = r.route("/testbed/faults", get(get_faults).put(put_faults));
    }
    r.fallback(not_found)
        .layer(middleware::from_fn(log_requests))
        .with_state(state)
}
