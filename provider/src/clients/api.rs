//! The Artifortress HTTP API, as the operational contract describes it.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// Overall or per-dependency readiness status, as the service reports it.
pub const READY: &str = "ready";
pub const DEGRADED: &str = "degraded";
pub const NOT_READY: &str = "not_ready";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("could not reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
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
    /// `http` carries the connection pool; `timeout` bounds every request.
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

    async fn get(&self, path: &str, timeout: Duration) -> Result<(u16, String), ApiError> {
        let url = self.url(path);
        let timeout = timeout.min(self.timeout);
        let response = self
            .http
            .get(&url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| classify(&url, timeout, e))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| classify(&url, timeout, e))?;
        Ok((status, body))
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

fn classify(url: &str, timeout: Duration, e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        return ApiError::Timeout {
            url: url.to_string(),
            timeout,
        };
    }
    // The innermost cause says what really happened ("Connection refused").
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message = s.to_string();
        source = s.source();
    }
    ApiError::Unreachable {
        url: url.to_string(),
        message,
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
}
