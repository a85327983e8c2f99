//! The Artifortress HTTP API, as the operational contract describes it.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::http;

/// Overall or per-dependency readiness status, as the service reports it.
pub const READY: &str = "ready";
pub const DEGRADED: &str = "degraded";
pub const NOT_READY: &str = "not_ready";

/// The time limit of one readiness probe unless the caller says otherwise. Never below
/// [`MIN_PROBE_TIMEOUT`].
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest probe timeout that can tell a slow dependency from a dead API: the service
/// gives its own object-storage readiness check 3 s before it answers `/health/ready`
/// (`checkObjectStorageReadiness`, src/Artifortress.Api/Program.fs:2383 at f628e74 of the
/// service's repository), so a shorter probe gives up on a healthy API whose storage is slow.
pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No answer: the connection failed or broke off. `message` says why in words
    /// (`cannot connect to 127.0.0.1:37913: connection refused`).
    #[error("could not reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url} did not answer within {}", crate::duration::format(*.timeout))]
    Timeout { url: String, timeout: Duration },
    /// The answer's body passed [`http::BODY_LIMIT`]; reading stopped there.
    #[error(
        "{url} answered HTTP {status} with a body larger than {}, the limit for the service's JSON answers; reading stopped there (is this URL the Artifortress API?)",
        http::format_size(*.limit)
    )]
    BodyTooLarge {
        url: String,
        status: u16,
        limit: u64,
    },
    #[error(
        "{url} answered HTTP {status} with a body that is not the service's {what}: {message}; body: {body}"
    )]
    UnexpectedBody {
        url: String,
        status: u16,
        what: &'static str,
        message: String,
        body: String,
    },
    /// The service refused with its own error body `{"error": code, "message": text}`.
    #[error("{url} answered HTTP {status} {code}: {message}")]
    Service {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
}

/// The service's refusal to mint a token (403 `forbidden`): the tenant has tokens already and
/// neither the bootstrap token nor a tenant admin's bearer came with the request
/// (src/Artifortress.Api/Program.fs:7824-7828 at f628e74 of the service's repository).
pub const PAT_ISSUANCE_REFUSED: &str = "PAT issuance requires bootstrap token or admin scope.";

/// The start of the service's 400 for a TTL above the tenant's PAT policy maximum:
/// "ttlMinutes exceeds configured max TTL of N." (Program.fs:7842-7843).
const POLICY_MAX_TTL_PREFIX: &str = "ttlMinutes exceeds configured max TTL of ";

impl ApiError {
    /// The tenant's PAT policy maximum (minutes), when the service refused a token's TTL as
    /// above it.
    pub fn pat_policy_max_ttl(&self) -> Option<i64> {
        match self {
            ApiError::Service {
                status: 400,
                message,
                ..
            } => message
                .strip_prefix(POLICY_MAX_TTL_PREFIX)?
                .trim()
                .trim_end_matches('.')
                .parse()
                .ok(),
            _ => None,
        }
    }

    /// The HTTP status the service answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::UnexpectedBody { status, .. }
            | ApiError::Service { status, .. }
            | ApiError::BodyTooLarge { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A bearer token or the bootstrap token: never printed.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    Bearer(&'a str),
    Bootstrap(&'a str),
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credential::Bootstrap(_) => f.write_str("Bootstrap(<redacted>)"),
        }
    }
}

/// `GET /v1/admin/ops/summary` (every read writes an `ops.summary.read` audit row).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpsSummary {
    pub pending_outbox_events: i64,
    pub available_outbox_events: i64,
    pub oldest_pending_outbox_age_seconds: i64,
    pub failed_search_jobs: i64,
    pub pending_search_jobs: i64,
    pub incomplete_gc_runs: i64,
    pub recent_policy_timeouts24h: i64,
    #[serde(default)]
    pub checked_at_utc: Option<String>,
    pub readiness: ReadinessBody,
    #[serde(default)]
    pub trust_material: TrustMaterial,
}

impl OpsSummary {
    /// The seven counters under their snake_case names, in the contract's order.
    pub fn counters(&self) -> [(&'static str, i64); 7] {
        [
            ("pending_outbox_events", self.pending_outbox_events),
            ("available_outbox_events", self.available_outbox_events),
            (
                "oldest_pending_outbox_age_seconds",
                self.oldest_pending_outbox_age_seconds,
            ),
            ("failed_search_jobs", self.failed_search_jobs),
            ("pending_search_jobs", self.pending_search_jobs),
            ("incomplete_gc_runs", self.incomplete_gc_runs),
            ("recent_policy_timeouts_24h", self.recent_policy_timeouts24h),
        ]
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TrustMaterial {
    #[serde(default)]
    pub oidc: Option<TrustStatus>,
    #[serde(default)]
    pub saml: Option<TrustStatus>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrustStatus {
    pub healthy: bool,
    pub status: String,
    #[serde(default)]
    pub detail: Option<String>,
}

/// `POST /v1/auth/pats` answer. `token` is the secret.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    pub token_id: String,
    pub token: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub expires_at_utc: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token_id", &self.token_id)
            .field("token", &"<redacted>")
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .field("expires_at_utc", &self.expires_at_utc)
            .finish()
    }
}

/// `GET /health/ready`: `{"status", "checkedAtUtc", "dependencies": [...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessBody {
    pub status: String,
    #[serde(default)]
    pub checked_at_utc: Option<String>,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Dependency {
    pub name: String,
    pub healthy: bool,
    pub essential: bool,
    pub status: String,
    #[serde(default)]
    pub detail: Option<String>,
}

/// One readiness probe: the HTTP status and the parsed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub http_status: u16,
    pub body: ReadinessBody,
}

/// A client for one Artifortress API base URL.
#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
}

impl ApiClient {
    /// `http` carries the connection pool; `timeout` bounds every request except the health
    /// probes ([`ApiClient::live`], [`ApiClient::ready`]), which take their caller's.
    pub fn new(http: reqwest::Client, base: Url, timeout: Duration) -> Self {
        ApiClient {
            http,
            base,
            timeout,
        }
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        let mut base = self.base.clone();
        let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
        base.set_path(&joined);
        base.to_string()
    }

    /// `GET path` bounded by `timeout` (the caller's: a readiness probe's own limit, which may
    /// be longer or shorter than the provider's `request_timeout`).
    async fn get(&self, path: &str, timeout: Duration) -> Result<(u16, String), ApiError> {
        let url = self.url(path);
        let request = self.http.get(&url).timeout(timeout);
        exchange(&url, timeout, request).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        credential: Option<Credential<'_>>,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, String), ApiError> {
        let url = self.url(path);
        let mut req = self
            .http
            .request(method, &url)
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        match credential {
            Some(Credential::Bearer(t)) => req = req.bearer_auth(t),
            Some(Credential::Bootstrap(t)) => req = req.header("X-Bootstrap-Token", t),
            None => {}
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        exchange(&url, self.timeout, req).await
    }

    /// A 2xx JSON body as `T`; a contract error body as [`ApiError::Service`].
    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &'static str,
        status: u16,
        text: &str,
    ) -> Result<T, ApiError> {
        let url = self.url(path);
        if (200..300).contains(&status) {
            return serde_json::from_str(text).map_err(|e| ApiError::UnexpectedBody {
                url,
                status,
                what,
                message: e.to_string(),
                body: excerpt(text),
            });
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
            #[serde(default)]
            message: String,
        }
        match serde_json::from_str::<ErrorBody>(text) {
            Ok(e) => Err(ApiError::Service {
                url,
                status,
                code: e.error,
                message: e.message,
            }),
            Err(e) => Err(ApiError::UnexpectedBody {
                url,
                status,
                what: "error body",
                message: e.to_string(),
                body: excerpt(text),
            }),
        }
    }

    /// `GET path` with a bearer token, the answer parsed as `T`.
    async fn get_with_token<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &'static str,
        token: &str,
    ) -> Result<T, ApiError> {
        let (status, text) = self
            .send(
                reqwest::Method::GET,
                path,
                Some(Credential::Bearer(token)),
                None,
            )
            .await?;
        self.parse(path, what, status, &text)
    }

    /// `method path` with a bearer token and an optional JSON body; a 2xx answer as JSON
    /// (`what` names it in errors), anything else as [`ApiError::Service`] or
    /// [`ApiError::UnexpectedBody`]. For flows such as [`super::smoke`] that walk many routes.
    pub async fn call_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
        what: &'static str,
    ) -> Result<serde_json::Value, ApiError> {
        let (status, text) = self
            .send(method, path, Some(Credential::Bearer(token)), body)
            .await?;
        self.parse(path, what, status, &text)
    }

    /// The HTTP client (its connection pool) and the per-request time limit, for requests that
    /// go elsewhere than the API (a presigned object-storage URL the API handed out).
    pub fn http_client(&self) -> (&reqwest::Client, Duration) {
        (&self.http, self.timeout)
    }

    /// `GET /v1/admin/ops/summary` with an admin (or auditor) bearer token.
    pub async fn ops_summary(&self, token: &str) -> Result<OpsSummary, ApiError> {
        self.get_with_token("/v1/admin/ops/summary", "ops summary", token)
            .await
    }

    /// `POST /v1/auth/pats`: mint a personal access token.
    pub async fn issue_token(
        &self,
        credential: Credential<'_>,
        subject: &str,
        scopes: &[String],
        ttl_minutes: i64,
    ) -> Result<IssuedToken, ApiError> {
        const PATH: &str = "/v1/auth/pats";
        let body =
            serde_json::json!({"subject": subject, "scopes": scopes, "ttlMinutes": ttl_minutes});
        let (status, text) = self
            .send(reqwest::Method::POST, PATH, Some(credential), Some(body))
            .await?;
        self.parse(PATH, "issued token", status, &text)
    }

    /// `POST /v1/auth/pats/revoke` with an admin bearer. `Ok(false)` when the service does not
    /// know the token (404).
    pub async fn revoke_token(&self, admin_token: &str, token_id: &str) -> Result<bool, ApiError> {
        const PATH: &str = "/v1/auth/pats/revoke";
        let body = serde_json::json!({ "tokenId": token_id });
        let (status, text) = self
            .send(
                reqwest::Method::POST,
                PATH,
                Some(Credential::Bearer(admin_token)),
                Some(body),
            )
            .await?;
        if status == 404 {
            return Ok(false);
        }
        #[derive(Deserialize)]
        struct Revoked {
            status: String,
        }
        let r: Revoked = self.parse(PATH, "revocation", status, &text)?;
        Ok(r.status == "revoked")
    }

    /// `GET /health/live`: true when the process answers 200 `{"status":"ok"}`.
    pub async fn live(&self, timeout: Duration) -> Result<bool, ApiError> {
        let (status, body) = self.get("/health/live", timeout).await?;
        #[derive(Deserialize)]
        struct Live {
            status: String,
        }
        Ok(status == 200
            && serde_json::from_str::<Live>(&body)
                .is_ok_and(|l| l.status.eq_ignore_ascii_case("ok")))
    }

    /// `GET /health/ready`. The status comes from the body: `degraded` answers 200, `not_ready`
    /// 503; a body that is not the contract's is an error whatever the HTTP status.
    pub async fn ready(&self, timeout: Duration) -> Result<Readiness, ApiError> {
        let url = self.url("/health/ready");
        let (http_status, text) = self.get("/health/ready", timeout).await?;
        let body: ReadinessBody =
            serde_json::from_str(&text).map_err(|e| ApiError::UnexpectedBody {
                url: url.clone(),
                status: http_status,
                what: "readiness report",
                message: e.to_string(),
                body: excerpt(&text),
            })?;
        if ![READY, DEGRADED, NOT_READY].contains(&body.status.as_str()) {
            return Err(ApiError::UnexpectedBody {
                url,
                status: http_status,
                what: "readiness report",
                message: format!("unknown status {:?}", body.status),
                body: excerpt(&text),
            });
        }
        Ok(Readiness { http_status, body })
    }
}

/// One request and its body, read up to [`http::BODY_LIMIT`] (error bodies too); `timeout`
/// (already set on `request`) bounds both.
async fn exchange(
    url: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
) -> Result<(u16, String), ApiError> {
    let response = request
        .send()
        .await
        .map_err(|e| classify(url, timeout, &e))?;
    let status = response.status().as_u16();
    match http::read_body(response, http::BODY_LIMIT).await {
        Ok(body) => Ok((status, String::from_utf8_lossy(&body).into_owned())),
        Err(http::BodyError::TooLarge { limit }) => Err(ApiError::BodyTooLarge {
            url: url.to_string(),
            status,
            limit,
        }),
        Err(http::BodyError::Transport(e)) => Err(classify(url, timeout, &e)),
    }
}

fn classify(url: &str, timeout: Duration, e: &reqwest::Error) -> ApiError {
    if e.is_timeout() && !e.is_connect() {
        tracing::debug!(url, error = ?e, "HTTP exchange timed out");
        return ApiError::Timeout {
            url: url.to_string(),
            timeout,
        };
    }
    ApiError::Unreachable {
        url: url.to_string(),
        message: http::describe(url, timeout, e),
    }
}

/// The first 512 characters of a body, for error messages.
fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(512).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_under_a_base_path() {
        let c = ApiClient::new(
            reqwest::Client::new(),
            Url::parse("http://h:1/prefix/").unwrap(),
            Duration::from_secs(1),
        );
        assert_eq!(c.url("/health/ready"), "http://h:1/prefix/health/ready");
        let c = ApiClient::new(
            reqwest::Client::new(),
            Url::parse("http://h:1").unwrap(),
            Duration::from_secs(1),
        );
        assert_eq!(c.url("/health/live"), "http://h:1/health/live");
    }

    #[test]
    fn readiness_body_follows_the_contract() {
        let body: ReadinessBody = serde_json::from_str(
            r#"{"status":"degraded","checkedAtUtc":"2026-11-27T03:00:00Z","dependencies":[
              {"name":"postgres","healthy":true,"essential":true,"status":"ready","detail":null},
              {"name":"oidc_jwks","healthy":false,"essential":false,"status":"degraded","detail":"slow"}]}"#,
        )
        .unwrap();
        assert_eq!(body.status, "degraded");
        assert_eq!(body.dependencies[1].detail.as_deref(), Some("slow"));
    }

    #[test]
    fn ops_summary_body_follows_the_contract() {
        let s: OpsSummary = serde_json::from_str(
            r#"{"checkedAtUtc":"2026-11-27T03:00:00Z","pendingOutboxEvents":3,"availableOutboxEvents":2,
              "oldestPendingOutboxAgeSeconds":40,"failedSearchJobs":1,"pendingSearchJobs":0,
              "incompleteGcRuns":0,"recentPolicyTimeouts24h":5,
              "readiness":{"status":"ready","dependencies":[]},
              "trustMaterial":{"oidc":{"healthy":true,"status":"not_configured","detail":null},"saml":null}}"#,
        )
        .unwrap();
        assert_eq!(s.counters()[6], ("recent_policy_timeouts_24h", 5));
        assert_eq!(s.counters()[2], ("oldest_pending_outbox_age_seconds", 40));
        assert_eq!(s.trust_material.oidc.unwrap().status, "not_configured");
        assert!(s.trust_material.saml.is_none());
    }

    #[test]
    fn error_bodies_become_service_errors_and_tokens_never_print() {
        let c = ApiClient::new(
            reqwest::Client::new(),
            Url::parse("http://h:1").unwrap(),
            Duration::from_secs(1),
        );
        let e = c
            .parse::<OpsSummary>(
                "/v1/admin/ops/summary",
                "ops summary",
                403,
                r#"{"error":"forbidden","message":"lacks the role"}"#,
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://h:1/v1/admin/ops/summary answered HTTP 403 forbidden: lacks the role"
        );
        let e = c
            .parse::<OpsSummary>("/x", "ops summary", 502, "<html>bad gateway</html>")
            .unwrap_err();
        assert!(matches!(e, ApiError::UnexpectedBody { status: 502, .. }));
        assert!(!format!("{:?}", Credential::Bearer("s3cr3t")).contains("s3cr3t"));
        let e = c
            .parse::<IssuedToken>(
                "/v1/auth/pats",
                "issued token",
                400,
                r#"{"error":"bad_request","message":"ttlMinutes exceeds configured max TTL of 30."}"#,
            )
            .unwrap_err();
        assert_eq!(e.pat_policy_max_ttl(), Some(30));
        let e = c
            .parse::<IssuedToken>(
                "/v1/auth/pats",
                "issued token",
                400,
                r#"{"error":"bad_request","message":"ttlMinutes must be between 5 and 1440."}"#,
            )
            .unwrap_err();
        assert_eq!(e.pat_policy_max_ttl(), None);
        let t: IssuedToken = serde_json::from_str(
            r#"{"tokenId":"t1","token":"s3cr3t","subject":"ci","scopes":["repo:*:admin"],"expiresAtUtc":"x"}"#,
        )
        .unwrap();
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }

    /// Serves `answer` (then `a` bytes for ever when `endless`) to every connection, after
    /// reading the request; `None`: reads the request and never answers.
    async fn server(answer: Option<&'static str>, endless: bool) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let Some(answer) = answer else {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    };
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    let block = vec![b'a'; 64 << 10];
                    while endless && s.write_all(&block).await.is_ok() {}
                });
            }
        });
        format!("http://{addr}")
    }

    fn client(base: &str) -> ApiClient {
        ApiClient::new(
            reqwest::Client::new(),
            Url::parse(base).unwrap(),
            Duration::from_secs(10),
        )
    }

    /// Every way an exchange fails, against real sockets on 127.0.0.1, in words.
    #[tokio::test]
    async fn failures_read_as_causes_with_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let e = client(&base)
            .ready(Duration::from_secs(3))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "could not reach {base}/health/ready: cannot connect to 127.0.0.1:{port}: connection refused"
            )
        );

        let base = server(None, false).await;
        let started = std::time::Instant::now();
        let e = client(&base)
            .ready(Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the probe's own timeout, not the client's 10 s"
        );
        assert_eq!(
            e.to_string(),
            format!("{base}/health/ready did not answer within 0.3s")
        );

        let base = server(
            Some("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"status\":\""),
            true,
        )
        .await;
        let e = client(&base)
            .ready(Duration::from_secs(3))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{base}/health/ready answered HTTP 200 with a body larger than 1 MiB, the limit for the service's JSON answers; reading stopped there (is this URL the Artifortress API?)"
            )
        );
        assert_eq!(e.status(), Some(200));

        // Error bodies too, even when they announce their size.
        let base = server(
            Some("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5000000\r\n\r\n"),
            true,
        )
        .await;
        let e = client(&base).ops_summary("t").await.unwrap_err();
        assert!(
            matches!(
                e,
                ApiError::BodyTooLarge {
                    status: 500,
                    limit: http::BODY_LIMIT,
                    ..
                }
            ),
            "{e}"
        );
    }
}
