//! The test bed's smoke-flow routes (repositories, package versions, upload sessions) against a
//! throw-away PostgreSQL and a throw-away Garage. Line numbers cite
//! src/Artifortress.Api/Program.fs at f628e74 of the service's repository.

use std::path::Path;

use acceptance_tests::support::api::{TestbedApi, api_env};
use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::postgres::PgServer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const API_BIN: &str = env!("CARGO_BIN_EXE_artifortress-testbed-api");
const BOOT: &str = "test-bootstrap-token-0123456789";
const DB: &str = "artifortress";

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("HTTP request");
        let status = r.status().as_u16();
        let bytes = r.bytes().await.expect("body");
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    }
    async fn mint(&self, subject: &str, scopes: &[&str]) -> String {
        let r = self
            .http
            .post(format!("{}/v1/auth/pats", self.base))
            .header("X-Bootstrap-Token", BOOT)
            .json(&json!({"subject": subject, "scopes": scopes, "ttlMinutes": 60}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    }
}

use reqwest::Method;

fn code(s: u16, v: &Value, want: u16, error: &str) {
    assert_eq!(s, want, "{v}");
    assert_eq!(v["error"], error, "{v}");
}

/// Upload `bytes` through a session: create, presign part 1, PUT to Garage, complete.
/// Returns (upload path, PUT status).
async fn upload(c: &Client, tok: &str, repo: &str, bytes: &[u8], claimed: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(claimed));
    let (s, v) = c
        .req(
            Method::POST,
            &format!("/v1/repos/{repo}/uploads"),
            Some(tok),
            Some(json!({"expectedDigest": digest, "expectedLength": claimed.len()})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "initiated");
    assert_eq!(v["deduped"], false);
    let up = format!(
        "/v1/repos/{repo}/uploads/{}",
        v["uploadId"].as_str().unwrap()
    );
    // Commit before complete: 409 (Program.fs:10367).
    let (s, v) = c
        .req(
            Method::POST,
            &format!("{up}/commit"),
            Some(tok),
            Some(json!({})),
        )
        .await;
    code(s, &v, 409, "conflict");
    let (s, v) = c
        .req(
            Method::POST,
            &format!("{up}/parts"),
            Some(tok),
            Some(json!({"partNumber": 1})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "parts_uploading");
    let url = v["uploadUrl"].as_str().unwrap().to_string();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(url.contains("uploadId="), "{url}");
    // The bytes go straight to object storage, no credentials but the signature.
    let put = reqwest::Client::new()
        .put(&url)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200, "{:?}", put.text().await);
    let etag = put.headers()["etag"].to_str().unwrap().to_string();
    let (s, v) = c
        .req(
            Method::POST,
            &format!("{up}/complete"),
            Some(tok),
            Some(json!({"parts": [{"partNumber": 1, "etag": etag}]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "pending_commit");
    up
}

#[tokio::test]
async fn repositories_drafts_uploads_and_publish() {
    let pg = PgServer::start().expect("start PostgreSQL");
    pg.create_migrated_database(DB).expect("migrate");
    let g = GarageServer::start().unwrap_or_else(|e| panic!("cannot start garage: {e:#}"));
    let api = TestbedApi::start(
        Path::new(API_BIN),
        &api_env(
            &pg.npgsql_connection_string(DB),
            BOOT,
            g.object_storage_env(g.bucket()),
        ),
    )
    .expect("start test bed API");
    let c = Client {
        http: reqwest::Client::new(),
        base: api.url().to_string(),
    };
    let admin = c.mint("ops", &["repo:*:admin"]).await;
    let reader = c.mint("reader", &["repo:libs:read"]).await;

    // Program.fs:8427/8465: no token 401; create needs repo:*:admin (403); 201 then 409.
    let (s, v) = c.req(Method::GET, "/v1/repos", None, None).await;
    code(s, &v, 401, "unauthorized");
    let (s, v) = c
        .req(
            Method::POST,
            "/v1/repos",
            Some(&reader),
            Some(json!({"repoKey": "libs", "repoType": "local"})),
        )
        .await;
    code(s, &v, 403, "forbidden");
    for key in ["Libs", "other"] {
        let (s, v) = c
            .req(
                Method::POST,
                "/v1/repos",
                Some(&admin),
                Some(json!({"repoKey": key, "repoType": "local"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["repoKey"], key.to_lowercase());
        assert_eq!(v["upstreamUrl"], Value::Null);
    }
    let (s, v) = c
        .req(
            Method::POST,
            "/v1/repos",
            Some(&admin),
            Some(json!({"repoKey": "libs", "repoType": "local"})),
        )
        .await;
    code(s, &v, 409, "conflict");
    let (s, v) = c
        .req(
            Method::POST,
            "/v1/repos",
            Some(&admin),
            Some(json!({"repoKey": "x", "repoType": "cloud"})),
        )
        .await;
    code(s, &v, 400, "bad_request");
    // Program.fs:8427: only the repositories the token may read, by key.
    let (_, v) = c.req(Method::GET, "/v1/repos", Some(&admin), None).await;
    let keys: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repoKey"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["libs", "other"]);
    let (_, v) = c.req(Method::GET, "/v1/repos", Some(&reader), None).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (s, v) = c
        .req(Method::GET, "/v1/repos/LIBS", Some(&reader), None)
        .await;
    assert_eq!((s, v["repoType"].as_str()), (200, Some("local")), "{v}");
    let (s, v) = c
        .req(Method::GET, "/v1/repos/other", Some(&reader), None)
        .await;
    code(s, &v, 403, "forbidden");
    let (s, v) = c
        .req(Method::GET, "/v1/repos/none", Some(&admin), None)
        .await;
    code(s, &v, 404, "not_found");

    // Program.fs:8902: 201, then the same draft again is 200 reusedDraft.
    let drafts = "/v1/repos/libs/packages/versions/drafts";
    let body = json!({"packageType": "generic", "packageName": "Tool", "version": "1.0.0"});
    let (s, v) = c
        .req(Method::POST, drafts, Some(&reader), Some(body.clone()))
        .await;
    code(s, &v, 403, "forbidden");
    let (s, draft) = c
        .req(Method::POST, drafts, Some(&admin), Some(body.clone()))
        .await;
    assert_eq!(s, 201, "{draft}");
    assert_eq!(draft["packageName"], "tool");
    assert_eq!(draft["reusedDraft"], false);
    let (s, again) = c
        .req(Method::POST, drafts, Some(&admin), Some(body.clone()))
        .await;
    assert_eq!((s, &again["versionId"]), (200, &draft["versionId"]));
    assert_eq!(again["reusedDraft"], true);
    let version = format!(
        "/v1/repos/libs/packages/versions/{}",
        draft["versionId"].as_str().unwrap()
    );

    // Program.fs:9187: nothing to publish yet.
    let (s, v) = c
        .req(
            Method::POST,
            &format!("{version}/publish"),
            Some(&admin),
            None,
        )
        .await;
    code(s, &v, 409, "conflict");
    assert!(
        v["message"].as_str().unwrap().contains("artifact entries"),
        "{v}"
    );

    // A verification failure: the bytes are not the ones announced (Program.fs:10367).
    let bad = upload(&c, &admin, "libs", b"other bytes", b"announced bytes").await;
    let (s, v) = c
        .req(
            Method::POST,
            &format!("{bad}/commit"),
            Some(&admin),
            Some(json!({})),
        )
        .await;
    code(s, &v, 409, "upload_verification_failed");

    // The real upload.
    let content = b"hello smoke\n";
    let digest = hex::encode(Sha256::digest(content));
    let up = upload(&c, &admin, "libs", content, content).await;
    let (s, v) = c
        .req(
            Method::POST,
            &format!("{up}/commit"),
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["digest"].as_str()),
        (Some("committed"), Some(digest.as_str()))
    );
    // The object is in Garage under the staging key the blob row names.
    let key = pg
        .psql(
            DB,
            &format!("select storage_key from blobs where digest = '{digest}'"),
        )
        .unwrap();
    assert!(
        key.starts_with("staging/") && key.contains("/libs/"),
        "{key}"
    );
    let obj = g
        .s3_client()
        .get_object()
        .bucket(g.bucket())
        .key(key.trim())
        .send()
        .await
        .expect("object in Garage");
    assert_eq!(
        obj.body.collect().await.unwrap().into_bytes().as_ref(),
        content
    );
    // The same blob again is deduplicated: 200, already committed (Program.fs:9920).
    let (s, v) = c
        .req(
            Method::POST,
            "/v1/repos/libs/uploads",
            Some(&admin),
            Some(json!({"expectedDigest": digest, "expectedLength": content.len()})),
        )
        .await;
    assert_eq!(
        (s, &v["deduped"], &v["state"]),
        (200, &json!(true), &json!("committed")),
        "{v}"
    );
    // A blob not committed in this repository cannot be an entry of another one.
    let (s, v) = c
        .req(
            Method::POST,
            "/v1/repos/other/packages/versions/drafts",
            Some(&admin),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = c
        .req(
            Method::POST,
            &format!(
                "/v1/repos/other/packages/versions/{}/entries",
                v["versionId"].as_str().unwrap()
            ),
            Some(&admin),
            Some(
                json!({"entries": [{"relativePath": "a", "blobDigest": digest, "sizeBytes": 12}]}),
            ),
        )
        .await;
    code(s, &v, 409, "conflict");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("not committed in this repository"),
        "{v}"
    );

    // Program.fs:8996, 9065, 9187, 9143.
    let (s, v) = c
        .req(
            Method::POST,
            &format!("{version}/entries"),
            Some(&admin),
            Some(
                json!({"entries": [{"relativePath": "tool.txt", "blobDigest": digest,
                                     "checksumSha256": digest, "sizeBytes": content.len()}]}),
            ),
        )
        .await;
    assert_eq!((s, &v["entryCount"]), (200, &json!(1)), "{v}");
    let (s, v) = c
        .req(
            Method::POST,
            &format!("{version}/publish"),
            Some(&admin),
            None,
        )
        .await;
    code(s, &v, 409, "conflict");
    assert!(v["message"].as_str().unwrap().contains("manifest"), "{v}");
    let (s, v) = c
        .req(
            Method::GET,
            &format!("{version}/manifest"),
            Some(&admin),
            None,
        )
        .await;
    code(s, &v, 404, "not_found");
    let manifest = json!({"name": "tool", "version": "1.0.0"});
    let (s, v) = c
        .req(
            Method::PUT,
            &format!("{version}/manifest"),
            Some(&admin),
            Some(json!({"manifest": manifest})),
        )
        .await;
    assert_eq!((s, &v["state"]), (200, &json!("draft")), "{v}");
    // Publishing needs the promote role: write is not enough.
    let writer = c.mint("writer", &["repo:libs:write"]).await;
    let (s, v) = c
        .req(
            Method::POST,
            &format!("{version}/publish"),
            Some(&writer),
            None,
        )
        .await;
    code(s, &v, 403, "forbidden");
    let (s, v) = c
        .req(
            Method::POST,
            &format!("{version}/publish"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["state"], &v["eventEmitted"], &v["idempotent"]),
        (&json!("published"), &json!(true), &json!(false))
    );
    let (s, v2) = c
        .req(
            Method::POST,
            &format!("{version}/publish"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((s, &v2["idempotent"]), (200, &json!(true)), "{v2}");
    let (s, v) = c
        .req(
            Method::GET,
            &format!("{version}/manifest"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["state"], &v["manifest"]),
        (&json!("published"), &manifest)
    );
    // A published version is immutable; the draft route refuses to reuse it.
    let (s, v) = c
        .req(Method::POST, drafts, Some(&admin), Some(body.clone()))
        .await;
    code(s, &v, 409, "conflict");
    assert_eq!(
        pg.psql(
            DB,
            "select count(*) from outbox_events where event_type = 'version.published'"
        )
        .unwrap()
        .trim(),
        "1"
    );

    // Program.fs:8496: a repository with packages cannot be deleted (foreign keys; the
    // service's withConnection answers 503); an empty one can.
    let (s, v) = c
        .req(Method::DELETE, "/v1/repos/libs", Some(&admin), None)
        .await;
    code(s, &v, 503, "service_unavailable");
    assert!(
        v["message"].as_str().unwrap().contains("foreign key"),
        "{v}"
    );
    let (s, v) = c
        .req(
            Method::POST,
            "/v1/repos",
            Some(&admin),
            Some(json!({"repoKey": "empty", "repoType": "local"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = c
        .req(Method::DELETE, "/v1/repos/empty", Some(&admin), None)
        .await;
    assert_eq!(
        (s, v),
        (200, json!({"repoKey": "empty", "status": "deleted"}))
    );
    let (s, v) = c
        .req(Method::DELETE, "/v1/repos/empty", Some(&admin), None)
        .await;
    code(s, &v, 404, "not_found");
    let audits = pg
        .psql(
            DB,
            "select string_agg(distinct action, ',' order by action) from audit_log \
             where action like 'repo.%' or action like 'upload.%' or action like 'package.%'",
        )
        .unwrap();
    assert_eq!(
        audits.trim(),
        "package.version.draft.created,package.version.draft.reused,\
package.version.entries.upserted,package.version.manifest.upserted,package.version.published,\
repo.created,repo.deleted,upload.commit.verification_failed,upload.committed,upload.completed,\
upload.part.presigned,upload.session.created"
    );
}
