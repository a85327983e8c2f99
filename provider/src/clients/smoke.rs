//! The post-deploy smoke flow: the service's D1 exit criterion "minimal smoke flow (auth, repo
//! read, draft/publish happy path)" and step 8 of its docs/29-deployment-howto-production.md.
//!
//! * [`read_only`]: `GET /v1/auth/whoami`, `GET /v1/repos`, `GET /v1/repos/{key}` of the first
//!   repository the token sees. Writes nothing.
//! * [`happy_path`]: a scratch `local` repository with a unique key, one small blob through an
//!   upload session (the API presigns the part; its bytes go straight to object storage, not
//!   through the API), commit, a draft version, the blob as its artifact entry, manifest,
//!   publish, the published manifest read back, then `DELETE` of the repository. The draft comes
//!   after the upload so that a failed upload leaves an empty repository, which the clean-up
//!   can delete. The service refuses to delete a
//!   repository that still has packages, so that last step normally reports `warning` and the
//!   repository stays, with its published version and blob.
//!
//! Routes, bodies and states follow src/Artifortress.Api/Program.fs at f628e74 of the service's
//! repository (line numbers in each step). Every step is timed; after a failed step the later
//! ones are `skipped`, except the clean-up, which runs whenever the repository was created.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::api::{ApiClient, ApiError};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed,
    /// Not run: an earlier step failed, or there was nothing to do (no repository to read).
    Skipped,
    /// Ran, did not do all it meant to, and does not fail the smoke (the clean-up the service
    /// refuses).
    Warning,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Warning => "warning",
        }
    }
}

/// One step: what ran, how it ended, how long it took, and what it saw (or the remote error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub status: Status,
    pub duration: Duration,
    pub detail: String,
}

/// Every step of one run, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    /// No step failed (warnings and skips included: a skip only follows a failure or has
    /// nothing to do).
    pub fn passed(&self) -> bool {
        self.first_failure().is_none()
    }

    pub fn first_failure(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.status == Status::Failed)
    }
}

/// The steps, in the order they run (a test keeps the list and the flow in step).
pub const READ_ONLY_STEPS: [&str; 3] = ["whoami", "list_repositories", "read_repository"];
pub const WRITE_STEPS: [&str; 13] = [
    "create_repository",
    "create_upload_session",
    "presign_part",
    "upload_part",
    "complete_upload",
    "commit_upload",
    "create_draft",
    "add_entry",
    "set_manifest",
    "publish",
    "read_back",
    // Not a request: the published manifest read back is the one written.
    "verify",
    "cleanup",
];

/// The package every scratch repository gets (`generic`: no manifest fields required,
/// `validateManifestForPackageType`, Program.fs:803).
pub const PACKAGE_TYPE: &str = "generic";
pub const PACKAGE_NAME: &str = "artifortress-smoke";
pub const PACKAGE_VERSION: &str = "1.0.0";
pub const ENTRY_PATH: &str = "smoke.txt";
/// Scratch repository keys start with this.
pub const REPO_PREFIX: &str = "smoke-";

/// The read-only part, then (with `write`) the happy path. The call a release makes after its
/// hosts are ready: `smoke::run(&settings.api_client(None)?, &admin_token, write).await`.
pub async fn run(client: &ApiClient, token: &str, write: bool) -> Report {
    run_watched(client, token, write, &|_| {}).await
}

/// Told of every step as soon as it has ended (skipped ones included), in order.
pub type OnStep<'a> = &'a (dyn Fn(&Step) + Send + Sync);

/// [`run`], telling `on_step` of each step as it ends (e.g. to report progress while the flow
/// runs).
pub async fn run_watched(
    client: &ApiClient,
    token: &str,
    write: bool,
    on_step: OnStep<'_>,
) -> Report {
    let mut report = read_only_watched(client, token, on_step).await;
    if write {
        let failed = !report.passed();
        let mut rest = happy_path_watched(client, token, failed, on_step).await;
        report.steps.append(&mut rest.steps);
    }
    report
}

struct Flow<'a> {
    client: &'a ApiClient,
    token: &'a str,
    steps: Vec<Step>,
    failed: bool,
    on_step: OnStep<'a>,
}

impl Flow<'_> {
    fn record(&mut self, step: Step) {
        (self.on_step)(&step);
        self.steps.push(step);
    }

    /// Run `f` as step `name` unless an earlier step failed; its `Ok` text is the detail.
    async fn step<T, F>(&mut self, name: &'static str, f: F) -> Option<T>
    where
        F: std::future::Future<Output = Result<(T, String), String>>,
    {
        if self.failed {
            self.skip(name, "an earlier step failed");
            return None;
        }
        let t = Instant::now();
        let out = f.await;
        let duration = t.elapsed();
        match out {
            Ok((v, detail)) => {
                self.record(Step {
                    name,
                    status: Status::Passed,
                    duration,
                    detail,
                });
                Some(v)
            }
            Err(detail) => {
                tracing::warn!(step = name, %detail, "smoke step failed");
                self.failed = true;
                self.record(Step {
                    name,
                    status: Status::Failed,
                    duration,
                    detail,
                });
                None
            }
        }
    }

    fn skip(&mut self, name: &'static str, why: &str) {
        self.record(Step {
            name,
            status: Status::Skipped,
            duration: Duration::ZERO,
            detail: why.to_string(),
        });
    }

    /// One request, unless an earlier step failed (`Err("not run")`: its step is skipped).
    async fn call(
        &self,
        method: Method,
        path: String,
        body: Option<Value>,
        what: &'static str,
    ) -> Result<Value, String> {
        if self.failed {
            return Err("not run".into());
        }
        self.client
            .call_json(method, &path, self.token, body, what)
            .await
            .map_err(|e: ApiError| e.to_string())
    }
}

fn text<'v>(v: &'v Value, field: &str) -> &'v str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// A field the flow needs, or the error naming it.
fn need(v: &Value, field: &str, what: &str) -> Result<String, String> {
    match v.get(field).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(format!("the {what} has no {field:?}: {v}")),
    }
}

/// `whoami`, `list_repositories`, `read_repository`.
pub async fn read_only(client: &ApiClient, token: &str) -> Report {
    read_only_watched(client, token, &|_| {}).await
}

async fn read_only_watched(client: &ApiClient, token: &str, on_step: OnStep<'_>) -> Report {
    let mut f = Flow {
        client,
        token,
        steps: Vec::new(),
        failed: false,
        on_step,
    };
    // Program.fs:7696.
    let who = f
        .call(Method::GET, "/v1/auth/whoami".into(), None, "identity")
        .await;
    f.step("whoami", async {
        let v = who?;
        let scopes = v
            .get("scopes")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        Ok((
            (),
            format!(
                "subject {:?} ({}), {scopes} scope(s)",
                text(&v, "subject"),
                text(&v, "authSource")
            ),
        ))
    })
    .await;
    // Program.fs:8427.
    let repos = if f.failed {
        f.skip("list_repositories", "an earlier step failed");
        None
    } else {
        let listed = f
            .call(Method::GET, "/v1/repos".into(), None, "repository list")
            .await;
        f.step("list_repositories", async {
            let v = listed?;
            let keys: Vec<String> = v
                .as_array()
                .ok_or_else(|| format!("the repository list is not an array: {v}"))?
                .iter()
                .map(|r| text(r, "repoKey").to_string())
                .collect();
            let detail = format!("{} repository(ies) visible", keys.len());
            Ok((keys, detail))
        })
        .await
    };
    match repos {
        None => f.skip("read_repository", "an earlier step failed"),
        Some(keys) => match keys.first() {
            None => f.skip("read_repository", "no repository is visible to the token"),
            Some(key) => {
                // Program.fs:8447.
                let path = format!("/v1/repos/{}", segment(key));
                let got = f.call(Method::GET, path, None, "repository").await;
                f.step("read_repository", async {
                    let v = got?;
                    Ok((
                        (),
                        format!(
                            "{} repository {:?}",
                            text(&v, "repoType"),
                            text(&v, "repoKey")
                        ),
                    ))
                })
                .await;
            }
        },
    }
    Report { steps: f.steps }
}

/// A path segment: repository keys are `[a-z0-9._-]` in practice; anything else is escaped.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A fresh scratch repository key: `smoke-<UTC time>-<8 random hex digits>`.
pub fn scratch_repo_key() -> String {
    use rand::RngCore;
    let mut b = [0u8; 4];
    rand::rng().fill_bytes(&mut b);
    format!(
        "{REPO_PREFIX}{}-{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        hex::encode(b)
    )
}

/// The happy path, in a scratch repository. With `skip_all` (the read-only part failed) every
/// step is recorded as skipped.
pub async fn happy_path(client: &ApiClient, token: &str, skip_all: bool) -> Report {
    happy_path_watched(client, token, skip_all, &|_| {}).await
}

async fn happy_path_watched(
    client: &ApiClient,
    token: &str,
    skip_all: bool,
    on_step: OnStep<'_>,
) -> Report {
    let mut f = Flow {
        client,
        token,
        steps: Vec::new(),
        failed: skip_all,
        on_step,
    };
    let key = scratch_repo_key();
    let repo = format!("/v1/repos/{key}");
    // Unique content, so the upload is never deduplicated and always reaches object storage.
    let content = format!(
        "artifortress smoke {key} {}\n",
        chrono::Utc::now().to_rfc3339()
    )
    .into_bytes();
    let digest = hex::encode(Sha256::digest(&content));
    let length = content.len();

    // Program.fs:8465.
    let created = f
        .call(
            Method::POST,
            "/v1/repos".into(),
            Some(json!({"repoKey": key, "repoType": "local"})),
            "created repository",
        )
        .await;
    let made_repo = f
        .step("create_repository", async {
            let v = created?;
            Ok(((), format!("local repository {:?}", text(&v, "repoKey"))))
        })
        .await
        .is_some();

    // Program.fs:9920.
    let session = f
        .call(
            Method::POST,
            format!("{repo}/uploads"),
            Some(json!({"expectedDigest": digest, "expectedLength": length})),
            "upload session",
        )
        .await;
    let upload_id = f
        .step("create_upload_session", async {
            let v = session?;
            let id = need(&v, "uploadId", "upload session")?;
            if v.get("deduped").and_then(Value::as_bool) == Some(true) {
                return Err(format!(
                    "the service already holds blob {digest} and skipped the upload: the smoke did not reach object storage"
                ));
            }
            Ok((id.clone(), format!("upload {id} for {length} bytes ({})", text(&v, "state"))))
        })
        .await;
    let uploads = format!("{repo}/uploads/{}", upload_id.clone().unwrap_or_default());

    // Program.fs:10068.
    let part = f
        .call(
            Method::POST,
            format!("{uploads}/parts"),
            Some(json!({"partNumber": 1})),
            "presigned part",
        )
        .await;
    let url = f
        .step("presign_part", async {
            let v = part?;
            let url = need(&v, "uploadUrl", "presigned part")?;
            let target = super::http::host_port(&url);
            Ok((url, format!("part 1 presigned for {target}")))
        })
        .await;

    // The client's own PUT to object storage (docs/29, step 8: "upload through presigned URL").
    let put = match (&url, f.failed) {
        (Some(u), false) => Some(put_part(client, u, content.clone()).await),
        _ => None,
    };
    let etag = f
        .step("upload_part", async {
            let (etag, target) = put.unwrap_or_else(|| Err("not run".into()))?;
            Ok((etag, format!("{length} bytes to {target}")))
        })
        .await;

    // Program.fs:10171.
    let completed = f
        .call(
            Method::POST,
            format!("{uploads}/complete"),
            Some(json!({"parts": [{"partNumber": 1, "etag": etag.clone().unwrap_or_default()}]})),
            "completed upload",
        )
        .await;
    f.step("complete_upload", async {
        let v = completed?;
        Ok(((), format!("state {}", text(&v, "state"))))
    })
    .await;

    // Program.fs:10367.
    let committed = f
        .call(
            Method::POST,
            format!("{uploads}/commit"),
            Some(json!({})),
            "committed upload",
        )
        .await;
    f.step("commit_upload", async {
        let v = committed?;
        if text(&v, "state") != "committed" || text(&v, "digest") != digest {
            return Err(format!("the commit did not record blob {digest}: {v}"));
        }
        Ok(((), format!("blob {digest} committed")))
    })
    .await;

    // Program.fs:8902.
    let draft = f.call(
            Method::POST,
            format!("{repo}/packages/versions/drafts"),
            Some(json!({"packageType": PACKAGE_TYPE, "packageName": PACKAGE_NAME, "version": PACKAGE_VERSION})),
            "draft version",
        )
    .await;
    let version_id = f
        .step("create_draft", async {
            let v = draft?;
            let id = need(&v, "versionId", "draft version")?;
            Ok((
                id.clone(),
                format!("{PACKAGE_NAME} {PACKAGE_VERSION}: version {id}"),
            ))
        })
        .await;

    let version = format!(
        "{repo}/packages/versions/{}",
        version_id.clone().unwrap_or_default()
    );
    // Program.fs:8996.
    let entry = f
        .call(
            Method::POST,
            format!("{version}/entries"),
            Some(json!({"entries": [{
                "relativePath": ENTRY_PATH, "blobDigest": digest,
                "checksumSha256": digest, "sizeBytes": length,
            }]})),
            "artifact entries",
        )
        .await;
    f.step("add_entry", async {
        let v = entry?;
        Ok((
            (),
            format!("{} entry(ies)", v.get("entryCount").unwrap_or(&Value::Null)),
        ))
    })
    .await;

    let manifest = json!({"name": PACKAGE_NAME, "version": PACKAGE_VERSION, "files": [ENTRY_PATH], "smoke": key});
    // Program.fs:9065.
    let set = f
        .call(
            Method::PUT,
            format!("{version}/manifest"),
            Some(json!({"manifest": manifest})),
            "manifest",
        )
        .await;
    f.step("set_manifest", async {
        set?;
        Ok(((), "manifest stored".to_string()))
    })
    .await;

    // Program.fs:9187.
    let published = f
        .call(
            Method::POST,
            format!("{version}/publish"),
            None,
            "published version",
        )
        .await;
    f.step("publish", async {
        let v = published?;
        if text(&v, "state") != "published" {
            return Err(format!("the version is not published: {v}"));
        }
        Ok(((), format!("published at {}", text(&v, "publishedAtUtc"))))
    })
    .await;

    // Program.fs:9143.
    let back = f
        .call(
            Method::GET,
            format!("{version}/manifest"),
            None,
            "published manifest",
        )
        .await;
    let read = f
        .step("read_back", async {
            let v = back?;
            let state = text(&v, "state").to_string();
            Ok((v, format!("state {state}")))
        })
        .await;
    f.step("verify", async {
        let v = read.ok_or_else(|| "not run".to_string())?;
        if text(&v, "state") != "published" {
            return Err(format!(
                "the version read back is {:?}, not published",
                text(&v, "state")
            ));
        }
        if v.get("manifest") != Some(&manifest) {
            return Err(format!(
                "the manifest read back differs from the one written: {}",
                v.get("manifest").unwrap_or(&Value::Null)
            ));
        }
        Ok((
            (),
            "published version and manifest read back as written".to_string(),
        ))
    })
    .await;

    // Program.fs:8496. Runs after a failure too, whenever the repository exists.
    if made_repo {
        let t = Instant::now();
        let deleted = client
            .call_json(Method::DELETE, &repo, token, None, "deleted repository")
            .await;
        let (status, detail) = match deleted {
            Ok(_) => (Status::Passed, format!("repository {key:?} deleted")),
            Err(e) => (
                Status::Warning,
                format!(
                    "repository {key:?} left in place{} (the service refused to delete it: {e})",
                    if version_id.is_some() {
                        format!(" with {PACKAGE_NAME} {PACKAGE_VERSION}")
                    } else {
                        String::new()
                    }
                ),
            ),
        };
        f.record(Step {
            name: "cleanup",
            status,
            duration: t.elapsed(),
            detail,
        });
    } else {
        f.skip("cleanup", "no repository was created");
    }
    Report { steps: f.steps }
}

/// `PUT` the part's bytes to the presigned URL; its ETag and `host:port`. Errors never quote
/// the URL's query (it carries the signature).
async fn put_part(
    client: &ApiClient,
    url: &str,
    body: Vec<u8>,
) -> Result<(String, String), String> {
    let (http, timeout) = client.http_client();
    let target = super::http::host_port(url);
    let resp = http
        .put(url)
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| super::http::describe(url, timeout, &e.without_url()))?;
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string());
    if !(200..300).contains(&status) {
        let body = super::http::read_body(resp, 2048)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        return Err(format!(
            "object storage at {target} answered HTTP {status} to the part upload: {}",
            body.chars().take(300).collect::<String>()
        ));
    }
    match etag {
        Some(e) if !e.is_empty() => Ok((e, target)),
        _ => Err(format!(
            "object storage at {target} accepted the part but sent no ETag"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &'static str, status: Status) -> Step {
        Step {
            name,
            status,
            duration: Duration::ZERO,
            detail: String::new(),
        }
    }

    #[test]
    fn passed_means_no_failed_step() {
        let mut r = Report {
            steps: vec![
                step("whoami", Status::Passed),
                step("cleanup", Status::Warning),
            ],
        };
        assert!(r.passed());
        r.steps.push(step("publish", Status::Failed));
        r.steps.push(step("read_back", Status::Skipped));
        assert!(!r.passed());
        assert_eq!(r.first_failure().unwrap().name, "publish");
    }

    #[test]
    fn scratch_keys_are_unique_and_valid_repo_keys() {
        let a = scratch_repo_key();
        let b = scratch_repo_key();
        assert_ne!(a, b);
        assert!(a.starts_with(REPO_PREFIX));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_eq!(segment(&a), a);
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }

    #[tokio::test]
    async fn unreachable_api_fails_whoami_and_skips_the_rest() {
        // A port where nothing listens.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let client = ApiClient::new(
            reqwest::Client::new(),
            url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            Duration::from_secs(2),
        );
        let seen = std::sync::Mutex::new(Vec::new());
        let r = run_watched(&client, "t", true, &|s| {
            seen.lock().unwrap().push((s.name, s.status))
        })
        .await;
        // Every step was told as it ended, in the report's order.
        assert_eq!(
            *seen.lock().unwrap(),
            r.steps
                .iter()
                .map(|s| (s.name, s.status))
                .collect::<Vec<_>>()
        );
        assert!(!r.passed());
        assert_eq!(r.steps[0].name, "whoami");
        assert_eq!(r.steps[0].status, Status::Failed);
        assert!(
            r.steps[0].detail.contains("cannot connect"),
            "{:?}",
            r.steps[0]
        );
        assert!(
            r.steps[1..].iter().all(|s| s.status == Status::Skipped),
            "{r:?}"
        );
        let names: Vec<_> = r.steps.iter().map(|s| s.name).collect();
        let mut want: Vec<&str> = READ_ONLY_STEPS.to_vec();
        want.extend(WRITE_STEPS);
        assert_eq!(names, want);
    }
}
