//! Tests of the Artifortress test bed against real servers: a throw-away PostgreSQL cluster and a
//! throw-away Garage S3 server (no mocks).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use acceptance_tests::support::api::{
    TestbedApi, api_env, scrub_env, unreachable_object_storage_env,
};
use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::postgres::PgServer;
use acceptance_tests::support::{free_port, migrations_dir, send_signal, testbed_dir, wait_for};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const API_BIN: &str = env!("CARGO_BIN_EXE_artifortress-testbed-api");
const WORKER_BIN: &str = env!("CARGO_BIN_EXE_artifortress-testbed-worker");
const BOOT: &str = "test-bootstrap-token-0123456789";
const DB: &str = "artifortress";

// ------------------------------------------------------------------------------------------------
// helpers

fn pg(seed: bool) -> PgServer {
    let pg = PgServer::start().expect("start PostgreSQL");
    pg.create_migrated_database(DB).expect("migrate");
    if seed {
        pg.seed(DB).expect("seed");
    }
    pg
}

fn garage() -> GarageServer {
    GarageServer::start().unwrap_or_else(|e| panic!("cannot start garage: {e:#}"))
}

fn env_with(mut base: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    base.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    base
}

fn api(env: Vec<(String, String)>) -> TestbedApi {
    TestbedApi::start(Path::new(API_BIN), &env).expect("start test bed API")
}

fn api_for(pg: &PgServer, g: Option<&GarageServer>, extra: &[(&str, &str)]) -> TestbedApi {
    let storage = match g {
        Some(g) => g.object_storage_env(g.bucket()),
        None => unreachable_object_storage_env(),
    };
    api(env_with(
        api_env(&pg.npgsql_connection_string(DB), BOOT, storage),
        extra,
    ))
}

async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let r = rb.send().await.expect("HTTP request");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("body");
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(api: &TestbedApi) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: api.url().to_string(),
        }
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        send(self.http.get(self.url(path))).await
    }
    async fn get_auth(&self, path: &str, token: &str) -> (u16, Value) {
        send(self.http.get(self.url(path)).bearer_auth(token)).await
    }
    async fn ready(&self) -> (u16, Value) {
        self.get("/health/ready").await
    }
    async fn put_faults(&self, body: Value) -> (u16, Value) {
        send(self.http.put(self.url("/testbed/faults")).json(&body)).await
    }
    /// Mint a token with the bootstrap token.
    async fn mint(&self, subject: &str, scopes: &[&str]) -> Value {
        let (s, v) = send(
            self.http
                .post(self.url("/v1/auth/pats"))
                .header("X-Bootstrap-Token", BOOT)
                .json(&json!({"subject": subject, "scopes": scopes, "ttlMinutes": 60})),
        )
        .await;
        assert_eq!(s, 200, "mint {subject}: {v}");
        v
    }
    async fn post_json(&self, path: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
        let mut rb = self.http.post(self.url(path)).json(&body);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        send(rb).await
    }
    /// Poll readiness until `pred` holds (or panic after `timeout`).
    async fn wait_ready(&self, timeout: Duration, pred: impl Fn(u16, &Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (s, v) = self.ready().await;
            if pred(s, &v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "readiness never matched; last: {s} {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn dep<'a>(ready: &'a Value, name: &str) -> &'a Value {
    ready["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no dependency {name} in {ready}"))
}

fn token(v: &Value) -> &str {
    v["token"].as_str().expect("token")
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn assert_error(status: u16, v: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{v}");
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
}

// ------------------------------------------------------------------------------------------------
// readiness with real PostgreSQL and S3

#[tokio::test]
async fn ready_with_real_postgres_and_s3() {
    let pg = pg(false);
    let g = garage();
    let a = api_for(&pg, Some(&g), &[("ASPNETCORE_ENVIRONMENT", "Staging")]);
    let port: u16 = a
        .url()
        .strip_prefix("http://127.0.0.1:")
        .expect("Now listening on: http://127.0.0.1:PORT")
        .parse()
        .unwrap();
    assert_ne!(port, 0);
    let c = Client::new(&a);

    let (s, v) = c.get("/").await;
    assert_eq!(s, 200);
    // Program.fs:7666.
    assert_eq!(v["service"], "artifortress-api");
    assert_eq!(v["environment"], "Staging");
    chrono::DateTime::parse_from_rfc3339(v["timestampUtc"].as_str().unwrap()).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 3, "no version endpoint: {v}");

    let (s, v) = c.get("/health/live").await;
    assert_eq!((s, v), (200, json!({"status": "ok"})));

    let (s, v) = c.ready().await;
    assert_eq!(s, 200, "{v}\n{}", a.log());
    assert_eq!(v["status"], "ready", "{v}");
    chrono::DateTime::parse_from_rfc3339(v["checkedAtUtc"].as_str().unwrap()).unwrap();
    let deps = v["dependencies"].as_array().unwrap();
    let got: Vec<(String, bool, String)> = deps
        .iter()
        .map(|d| {
            assert_eq!(d.as_object().unwrap().len(), 5, "{d}");
            assert_eq!(d["healthy"], true, "{d}");
            // A detail only on not_configured (the service's words, see
            // readiness_detail_on_not_configured_program_fs_2508).
            assert_eq!(
                d["detail"].is_string(),
                d["status"] == "not_configured",
                "{d}"
            );
            (
                d["name"].as_str().unwrap().to_string(),
                d["essential"].as_bool().unwrap(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("redis", false, "not_configured"),
        ("telemetry", false, "not_configured"),
        ("postgres", true, "ready"),
        ("object_storage", true, "ready"),
        ("oidc_jwks", false, "not_configured"),
        ("saml_metadata", false, "not_configured"),
    ];
    let want: Vec<(String, bool, String)> = want
        .iter()
        .map(|(n, e, s)| (n.to_string(), *e, s.to_string()))
        .collect();
    assert_eq!(got, want);

    // Faults routes are absent unless TESTBED_FAULTS_ENABLED=1.
    let (s, _) = c.get("/testbed/faults").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn postgres_outage_gives_not_ready_503_and_recovers() {
    let pg = pg(false);
    let g = garage();
    let a = api_for(&pg, Some(&g), &[]);
    let c = Client::new(&a);
    let admin = c.mint("platform-admin", &["repo:*:admin"]).await;
    let (s, _) = c.ready().await;
    assert_eq!(s, 200);

    pg.stop().unwrap();
    let t = Instant::now();
    let (s, v) = c.ready().await;
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "readiness took {:?}",
        t.elapsed()
    );
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["status"], "not_ready");
    let p = dep(&v, "postgres");
    assert_eq!(p["status"], "not_ready");
    assert_eq!(p["healthy"], false);
    assert_eq!(p["essential"], true);
    let detail = p["detail"].as_str().expect("detail");
    assert!(detail.to_lowercase().contains("refused"), "{detail}");
    assert_eq!(dep(&v, "object_storage")["status"], "ready");

    let (s, v) = c.get("/health/live").await;
    assert_eq!((s, v), (200, json!({"status": "ok"})));
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&admin)).await;
    assert_error(s, &v, 503, "service_unavailable");

    pg.start_again().unwrap();
    c.wait_ready(Duration::from_secs(15), |s, v| {
        s == 200 && v["status"] == "ready"
    })
    .await;
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&admin)).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn api_starts_and_is_live_while_postgres_is_down() {
    let dead = free_port().unwrap();
    let t = Instant::now();
    let a = api(api_env(
        &format!("Host=127.0.0.1;Port={dead};Username=postgres;Password=x;Database=artifortress"),
        BOOT,
        unreachable_object_storage_env(),
    ));
    let c = Client::new(&a);
    let (s, _) = c.get("/health/live").await;
    assert_eq!(s, 200);
    let (s, v) = c.ready().await;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(s, 503);
    assert_eq!(dep(&v, "postgres")["status"], "not_ready");
    assert_eq!(dep(&v, "object_storage")["status"], "not_ready");
    assert!(dep(&v, "object_storage")["detail"].as_str().is_some());
    // No bearer → 401 without touching the database; a bearer → 503.
    let (s, v) = c.get("/v1/admin/ops/summary").await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = c.get_auth("/v1/admin/ops/summary", "af_pat_x").await;
    assert_error(s, &v, 503, "service_unavailable");
}

#[tokio::test]
async fn missing_bucket_makes_object_storage_not_ready() {
    let pg = pg(false);
    let g = garage();
    let a = api(api_env(
        &pg.npgsql_connection_string(DB),
        BOOT,
        g.object_storage_env("late-bucket"),
    ));
    let c = Client::new(&a);
    let (s, v) = c.ready().await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["status"], "not_ready");
    assert_eq!(dep(&v, "postgres")["status"], "ready");
    let os = dep(&v, "object_storage");
    assert_eq!(os["status"], "not_ready");
    assert_eq!(os["healthy"], false);
    let detail = os["detail"].as_str().unwrap();
    assert!(
        detail.contains("not found") && detail.contains("late-bucket"),
        "{detail}"
    );

    // The probe is real: creating the bucket makes the service ready.
    g.create_bucket("late-bucket").unwrap();
    c.wait_ready(Duration::from_secs(10), |s, v| {
        s == 200 && v["status"] == "ready"
    })
    .await;
}

/// Only the test-only fault switches and an unparsable connection string stop the test bed at
/// start; missing or out-of-range service settings fall back as the service's do (see
/// missing_settings_fall_back_to_localhost_program_fs_7319 and
/// presign_part_ttl_out_of_range_is_900_object_storage_fs_94).
#[test]
fn api_rejects_bad_test_switches_at_start() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(API_BIN);
        scrub_env(&mut cmd);
        cmd.env("ASPNETCORE_URLS", "http://127.0.0.1:0")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    for (k, v) in [
        ("TESTBED_FAULT_DEPENDENCIES", "postgres:sad"),
        ("TESTBED_FAULT_READY_AFTER_SECONDS", "soon"),
    ] {
        let out = run(&[(k, v)]);
        assert_eq!(out.status.code(), Some(2), "{k}={v}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("configuration error"), "{k}={v}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

// ------------------------------------------------------------------------------------------------
// test-only fault switches

#[tokio::test]
async fn fault_switches_from_environment() {
    let pg = pg(false);
    let g = garage();

    // Non-essential degraded / not_ready → overall degraded, HTTP 200.
    let a = api_for(
        &pg,
        Some(&g),
        &[(
            "TESTBED_FAULT_DEPENDENCIES",
            "oidc_jwks:degraded,saml_metadata:not_ready",
        )],
    );
    let c = Client::new(&a);
    let (s, v) = c.ready().await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "degraded");
    let o = dep(&v, "oidc_jwks");
    assert_eq!(
        (&o["status"], &o["healthy"], &o["detail"]),
        (
            &json!("degraded"),
            &json!(false),
            &json!("testbed fault injection")
        )
    );
    assert_eq!(dep(&v, "saml_metadata")["status"], "not_ready");
    let (s, _) = c.get("/testbed/faults").await;
    assert_eq!(s, 404, "runtime fault routes need TESTBED_FAULTS_ENABLED=1");
    drop(a);

    // Essential dependency forced not_ready → 503.
    let a = api_for(
        &pg,
        Some(&g),
        &[("TESTBED_FAULT_DEPENDENCIES", "object_storage:not_ready")],
    );
    let (s, v) = Client::new(&a).ready().await;
    assert_eq!(s, 503);
    assert_eq!(
        dep(&v, "object_storage")["detail"],
        "testbed fault injection"
    );
    drop(a);

    // Ready only N seconds after start.
    let started = Instant::now();
    let a = api_for(&pg, Some(&g), &[("TESTBED_FAULT_READY_AFTER_SECONDS", "3")]);
    let c = Client::new(&a);
    let (s, v) = c.ready().await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(dep(&v, "postgres")["detail"], "testbed fault: warming up");
    c.wait_ready(Duration::from_secs(15), |s, v| {
        s == 200 && v["status"] == "ready"
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(2900));
    drop(a);

    // Never ready.
    let a = api_for(&pg, Some(&g), &[("TESTBED_FAULT_NEVER_READY", "1")]);
    let c = Client::new(&a);
    for _ in 0..3 {
        let (s, v) = c.ready().await;
        assert_eq!(s, 503);
        assert_eq!(v["status"], "not_ready");
        assert_eq!(dep(&v, "postgres")["detail"], "testbed fault: never ready");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (s, _) = c.get("/health/live").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn fault_switches_at_runtime() {
    let pg = pg(false);
    let g = garage();
    let a = api_for(&pg, Some(&g), &[("TESTBED_FAULTS_ENABLED", "1")]);
    let c = Client::new(&a);
    let admin = c.mint("platform-admin", &["repo:*:admin"]).await;

    let (s, v) = c.get("/testbed/faults").await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"dependencies": {}, "readyAfterSeconds": null, "neverReady": false})
        )
    );

    let (s, v) = c
        .put_faults(json!({"dependencies": {"oidc_jwks": "degraded"}}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["dependencies"]["oidc_jwks"], "degraded");
    let (s, v) = c.ready().await;
    assert_eq!((s, &v["status"]), (200, &json!("degraded")));
    // The ops summary reports the same readiness and trust material.
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(v["readiness"]["status"], "degraded");
    assert_eq!(
        v["trustMaterial"]["oidc"],
        json!({"healthy": false, "status": "degraded", "detail": "testbed fault injection"})
    );

    // PUT replaces: readyAfterSeconds counts from the PUT; the dependency fault is gone.
    let (s, _) = c.put_faults(json!({"readyAfterSeconds": 2})).await;
    assert_eq!(s, 200);
    let t = Instant::now();
    let (s, v) = c.ready().await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(dep(&v, "postgres")["detail"], "testbed fault: warming up");
    assert_eq!(dep(&v, "oidc_jwks")["status"], "not_configured");
    c.wait_ready(Duration::from_secs(10), |s, v| {
        s == 200 && v["status"] == "ready"
    })
    .await;
    assert!(t.elapsed() >= Duration::from_millis(1500));

    let (s, _) = c.put_faults(json!({"neverReady": true})).await;
    assert_eq!(s, 200);
    let (s, v) = c.ready().await;
    assert_eq!(s, 503);
    assert_eq!(dep(&v, "postgres")["detail"], "testbed fault: never ready");
    let (s, v) = c.get("/testbed/faults").await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"dependencies": {}, "readyAfterSeconds": null, "neverReady": true})
        )
    );

    let (s, v) = c
        .put_faults(json!({"dependencies": {"nope": "ready"}}))
        .await;
    assert_error(s, &v, 400, "bad_request");
    let (s, v) = c
        .put_faults(json!({"dependencies": {"redis": "sad"}}))
        .await;
    assert_error(s, &v, 400, "bad_request");
    let (s, v) = c.put_faults(json!({"bogus": 1})).await;
    assert_error(s, &v, 400, "bad_request");

    let (s, _) = c.put_faults(json!({})).await;
    assert_eq!(s, 200);
    let (s, v) = c.ready().await;
    assert_eq!((s, &v["status"]), (200, &json!("ready")));
}

// ------------------------------------------------------------------------------------------------
// ops summary

#[tokio::test]
async fn ops_summary_auth_counters_and_audit() {
    let pg = pg(true);
    // Object storage unreachable: readiness is not_ready, but the summary still answers 200.
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);

    let (s, v) = c.get("/v1/admin/ops/summary").await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = c.get_auth("/v1/admin/ops/summary", "af_pat_bogus").await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = send(
        c.http
            .get(c.url("/v1/admin/ops/summary"))
            .header("Authorization", "Basic Zm9vOmJhcg=="),
    )
    .await;
    assert_error(s, &v, 401, "unauthorized");

    let admin = c.mint("platform-admin", &["repo:*:admin"]).await;
    let reader = c
        .mint("reader", &["repo:libs-release:read", "repo:*:write"])
        .await;
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&reader)).await;
    assert_error(s, &v, 403, "forbidden");
    let audit_reads = || {
        pg.psql(
            DB,
            "select count(*) from audit_log where action = 'ops.summary.read'",
        )
        .unwrap()
        .parse::<i64>()
        .unwrap()
    };
    assert_eq!(audit_reads(), 0, "a forbidden request is not a read");

    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&admin)).await;
    assert_eq!(s, 200, "{v}");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "pendingOutboxEvents",
        "availableOutboxEvents",
        "oldestPendingOutboxAgeSeconds",
        "failedSearchJobs",
        "pendingSearchJobs",
        "incompleteGcRuns",
        "recentPolicyTimeouts24h",
        "checkedAtUtc",
        "readiness",
        "trustMaterial",
    ] {
        assert!(keys.contains(&k), "missing {k} in {v}");
    }
    // Seeded values (see testbed/seed.sql).
    assert_eq!(v["pendingOutboxEvents"], 4);
    assert_eq!(v["availableOutboxEvents"], 3);
    let age = v["oldestPendingOutboxAgeSeconds"].as_i64().unwrap();
    assert!((600..700).contains(&age), "{age}");
    assert_eq!(v["failedSearchJobs"], 1);
    assert_eq!(v["pendingSearchJobs"], 3);
    assert_eq!(v["incompleteGcRuns"], 1);
    assert_eq!(v["recentPolicyTimeouts24h"], 1);
    assert_eq!(v["readiness"]["status"], "not_ready");
    assert_eq!(v["readiness"]["dependencies"].as_array().unwrap().len(), 6);
    assert_eq!(
        v["trustMaterial"],
        json!({
            "oidc": {"healthy": true, "status": "not_configured", "detail": "OIDC bearer validation is disabled."},
            "saml": {"healthy": true, "status": "not_configured", "detail": "SAML federation is disabled."}
        })
    );
    assert_eq!(audit_reads(), 1);
    // The row itself: see ops_summary_audit_row_is_operations_and_tenant_program_fs_10920.
    assert_eq!(
        pg.psql(
            DB,
            "select a.actor_subject || '|' || a.resource_type || '|' || (a.resource_id = t.tenant_id::text) \
             from audit_log a join tenants t on t.slug = 'default' where a.action = 'ops.summary.read'"
        )
        .unwrap(),
        "platform-admin|operations|true"
    );

    // Counters follow the tables.
    pg.psql(
        DB,
        "insert into outbox_events (tenant_id, aggregate_type, aggregate_id, event_type, payload, occurred_at) \
         select tenant_id, 'x', 'y', 'z', '{}', now() - interval '2000 seconds' from tenants where slug = 'default'; \
         update search_index_jobs set status = 'failed' where job_id = 'e0000000-0000-4000-8000-000000000001'; \
         update gc_runs set completed_at = now(); \
         insert into audit_log (tenant_id, actor_subject, action, resource_type, resource_id) \
         select tenant_id, 'policy', 'policy.timeout', 'package_version', 'x' from tenants where slug = 'default'",
    )
    .unwrap();
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(v["pendingOutboxEvents"], 5);
    assert_eq!(v["availableOutboxEvents"], 4);
    let age = v["oldestPendingOutboxAgeSeconds"].as_i64().unwrap();
    assert!((2000..2100).contains(&age), "{age}");
    assert_eq!(v["failedSearchJobs"], 2);
    assert_eq!(v["pendingSearchJobs"], 2);
    assert_eq!(v["incompleteGcRuns"], 0);
    assert_eq!(v["recentPolicyTimeouts24h"], 2);
    assert_eq!(audit_reads(), 2, "every read writes an audit row");

    // Expired and revoked tokens are rejected.
    let expiring = c.mint("expiring", &["repo:*:admin"]).await;
    pg.psql(
        DB,
        &format!(
            "update personal_access_tokens set created_at = now() - interval '2 hours', \
             expires_at = now() - interval '1 second' where token_id = '{}'",
            expiring["tokenId"].as_str().unwrap()
        ),
    )
    .unwrap();
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&expiring)).await;
    assert_error(s, &v, 401, "unauthorized");
    let revoked = c.mint("revoked", &["repo:*:admin"]).await;
    let (s, _) = send(
        c.http
            .post(c.url("/v1/auth/pats/revoke"))
            .bearer_auth(token(&admin))
            .json(&json!({"tokenId": revoked["tokenId"]})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&revoked)).await;
    assert_error(s, &v, 401, "unauthorized");

    // A tenant auditor role binding grants access without the admin scope.
    let auditor = c.mint("auditor-1", &["repo:libs-release:read"]).await;
    let (s, _) = c.get_auth("/v1/admin/ops/summary", token(&auditor)).await;
    assert_eq!(s, 403);
    pg.psql(
        DB,
        "insert into tenant_role_bindings (tenant_id, subject, roles, updated_by_subject) \
         select tenant_id, 'auditor-1', '{auditor}', 'test' from tenants where slug = 'default'",
    )
    .unwrap();
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&auditor)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(audit_reads(), 3);
}

// ------------------------------------------------------------------------------------------------
// personal access tokens

#[tokio::test]
async fn pat_bootstrap_first_token_whoami_and_revoke() {
    let pg = pg(false);
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);
    let pats = "/v1/auth/pats";

    // Validation happens before the first-token rule is used up.
    let (s, v) = c
        .post_json(
            pats,
            &[],
            json!({"subject": "x", "scopes": ["repo:*:admin"], "ttlMinutes": 4}),
        )
        .await;
    assert_error(s, &v, 400, "bad_request");

    // First token of the tenant: no credentials needed; property names case-insensitive.
    let (s, first) = c
        .post_json(
            pats,
            &[],
            json!({"Subject": "first-admin", "SCOPES": ["repo:*:admin"], "ttlminutes": 30}),
        )
        .await;
    assert_eq!(s, 200, "{first}");
    let mut keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["expiresAtUtc", "scopes", "subject", "token", "tokenId"]
    );
    assert_eq!(first["subject"], "first-admin");
    assert_eq!(first["scopes"], json!(["repo:*:admin"]));
    let exp =
        chrono::DateTime::parse_from_rfc3339(first["expiresAtUtc"].as_str().unwrap()).unwrap();
    let mins = (exp.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    assert!((29 * 60..=30 * 60).contains(&mins), "{mins}");

    // Not any more: 403 (Program.fs:7827-7828).
    let body = json!({"subject": "second", "scopes": ["repo:*:read"], "ttlMinutes": 60});
    let (s, v) = c.post_json(pats, &[], body.clone()).await;
    assert_error(s, &v, 403, "forbidden");
    let (s, v) = c
        .post_json(pats, &[("X-Bootstrap-Token", "wrong")], body.clone())
        .await;
    assert_error(s, &v, 403, "forbidden");
    let (s, v) = c
        .post_json(pats, &[("X-Bootstrap-Token", BOOT)], body.clone())
        .await;
    assert_eq!(s, 200, "{v}");
    let reader = v;

    // Validation.
    for bad in [
        json!({"subject": "x", "scopes": ["repo:*:admin"], "ttlMinutes": 1441}),
        json!({"subject": "x", "scopes": ["repo:*:admin"]}),
        json!({"subject": "x", "scopes": ["repo:*:owner"], "ttlMinutes": 60}),
        json!({"subject": "x", "scopes": ["repo:*"], "ttlMinutes": 60}),
        json!({"subject": "x", "scopes": [], "ttlMinutes": 60}),
        json!({"subject": "", "scopes": ["repo:*:read"], "ttlMinutes": 60}),
        json!({"scopes": ["repo:*:read"], "ttlMinutes": 60}),
        json!(["not", "an", "object"]),
    ] {
        let (s, v) = c
            .post_json(pats, &[("X-Bootstrap-Token", BOOT)], bad.clone())
            .await;
        assert_error(s, &v, 400, "bad_request");
    }
    let (s, v) = send(
        c.http
            .post(c.url(pats))
            .header("X-Bootstrap-Token", BOOT)
            .body("{not json"),
    )
    .await;
    assert_error(s, &v, 400, "bad_request");
    for ttl in [5, 1440] {
        let (s, v) = c
            .post_json(
                pats,
                &[("X-Bootstrap-Token", BOOT)],
                json!({"subject": "edge", "scopes": ["repo:a.b-c_d:promote"], "ttlMinutes": ttl}),
            )
            .await;
        assert_eq!(s, 200, "ttl {ttl}: {v}");
    }

    // Only a hash is stored.
    let tok = token(&first);
    assert_eq!(
        pg.psql(
            DB,
            &format!(
                "select count(*) from personal_access_tokens where token_hash = '{}'",
                sha256_hex(tok)
            )
        )
        .unwrap(),
        "1"
    );
    assert_eq!(
        pg.psql(
            DB,
            &format!("select count(*) from personal_access_tokens p where p::text like '%{tok}%'")
        )
        .unwrap(),
        "0"
    );
    // The actor is the caller, `bootstrap` or `anonymous` (Program.fs:7872-7875); the row is
    // `token` with subject, TTL and the policy's max (Program.fs:7882-7892).
    assert_eq!(
        pg.psql(
            DB,
            "select string_agg(actor_subject || ':' || resource_type || ':' || (details->>'ttlMinutes') \
             || ':' || (details->>'policyMaxTtlMinutes'), ',' order by audit_id) from audit_log \
             where action = 'auth.pat.issued'"
        )
        .unwrap(),
        "anonymous:token:30:1440,bootstrap:token:60:1440,bootstrap:token:5:1440,bootstrap:token:1440:1440"
    );

    // whoami.
    let (s, v) = c.get_auth("/v1/auth/whoami", tok).await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"subject": "first-admin", "scopes": ["repo:*:admin"], "authSource": "pat"})
        )
    );
    let (s, v) = c.get("/v1/auth/whoami").await;
    assert_error(s, &v, 401, "unauthorized");

    // An admin bearer may mint; a non-admin bearer may not.
    let (s, v) = send(c.http.post(c.url(pats)).bearer_auth(tok).json(&body)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = send(
        c.http
            .post(c.url(pats))
            .bearer_auth(token(&reader))
            .json(&body),
    )
    .await;
    assert_error(s, &v, 403, "forbidden");
    // An unknown bearer is no caller at all: refused like no credential (Program.fs:7810-7828).
    let (s, v) = send(
        c.http
            .post(c.url(pats))
            .bearer_auth("0".repeat(64))
            .json(&body),
    )
    .await;
    assert_error(s, &v, 403, "forbidden");

    // Revoke.
    let revoke = "/v1/auth/pats/revoke";
    let reader_id = reader["tokenId"].as_str().unwrap();
    let (s, v) = send(
        c.http
            .post(c.url(revoke))
            .bearer_auth(token(&reader))
            .json(&json!({"tokenId": reader_id})),
    )
    .await;
    assert_error(s, &v, 403, "forbidden");
    let (s, v) = send(
        c.http
            .post(c.url(revoke))
            .json(&json!({"tokenId": reader_id})),
    )
    .await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = send(
        c.http
            .post(c.url(revoke))
            .bearer_auth(tok)
            .json(&json!({"TokenId": reader_id})),
    )
    .await;
    assert_eq!(
        (s, v),
        (200, json!({"tokenId": reader_id, "status": "revoked"}))
    );
    let (s, v) = c.get_auth("/v1/auth/whoami", token(&reader)).await;
    assert_error(s, &v, 401, "unauthorized");
    let (s, v) = send(
        c.http
            .post(c.url(revoke))
            .bearer_auth(tok)
            .json(&json!({"tokenId": "00000000-0000-4000-8000-000000000000"})),
    )
    .await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = send(
        c.http
            .post(c.url(revoke))
            .bearer_auth(tok)
            .json(&json!({"tokenId": "not-a-guid"})),
    )
    .await;
    assert_error(s, &v, 400, "bad_request");
    assert_eq!(
        pg.psql(DB, "select count(*) from token_revocations")
            .unwrap(),
        "1"
    );
}

// ------------------------------------------------------------------------------------------------
// The real service's behaviour, one test per row of real-service-divergences.md. Sources are
// cited at commit f628e74 of sremani/Artifortress (Program.fs = src/Artifortress.Api/Program.fs,
// ObjectStorage.fs = src/Artifortress.Api/ObjectStorage.fs).

const PATS: &str = "/v1/auth/pats";
const POLICY: &str = "/v1/admin/auth/pat-policy";

impl Client {
    async fn mint_ttl(&self, subject: &str, scopes: &[&str], ttl: i64) -> (u16, Value) {
        self.post_json(
            PATS,
            &[("X-Bootstrap-Token", BOOT)],
            json!({"subject": subject, "scopes": scopes, "ttlMinutes": ttl}),
        )
        .await
    }
    async fn put_auth(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        send(self.http.put(self.url(path)).bearer_auth(token).json(&body)).await
    }
    async fn post_auth(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        send(
            self.http
                .post(self.url(path))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }
}

fn tenant_id(pg: &PgServer) -> String {
    pg.psql(DB, "select tenant_id from tenants where slug = 'default'")
        .unwrap()
}

/// Row 1: a refused PAT request is 403 `forbidden` with the service's message.
#[tokio::test]
async fn pat_refusal_is_403_forbidden_program_fs_7828() {
    let pg = pg(false);
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);
    let reader = c.mint("reader", &["repo:*:read"]).await;
    let body = json!({"subject": "x", "scopes": ["repo:*:read"], "ttlMinutes": 60});
    let want = json!({"error": "forbidden", "message": "PAT issuance requires bootstrap token or admin scope."});
    let reader_bearer = format!("Bearer {}", token(&reader));
    for headers in [
        vec![],
        vec![("X-Bootstrap-Token", "wrong")],
        vec![("Authorization", reader_bearer.as_str())],
        vec![("Authorization", "Bearer unknown-token")],
    ] {
        let (s, v) = c.post_json(PATS, &headers, body.clone()).await;
        assert_eq!((s, &v), (403, &want), "{headers:?}");
    }
    assert_eq!(
        pg.psql(DB, "select count(*) from personal_access_tokens")
            .unwrap(),
        "1"
    );
}

/// Row 2: the first token of a tenant is minted even with a wrong or missing bootstrap header
/// (`allowIssuance = not hasTokens || ...`).
#[tokio::test]
async fn first_token_is_minted_whatever_the_bootstrap_header_program_fs_7825() {
    let pg = pg(false);
    // No bootstrap token at all (set blank): only the first-token rule can mint.
    let a = api_for(&pg, None, &[("Auth__BootstrapToken", "")]);
    let c = Client::new(&a);
    let body = |s: &str| json!({"subject": s, "scopes": ["repo:*:admin"], "ttlMinutes": 60});
    let (s, v) = c
        .post_json(PATS, &[("X-Bootstrap-Token", "wrong")], body("first"))
        .await;
    assert_eq!(s, 200, "{v}");
    for h in ["wrong", BOOT, ""] {
        let (s, v) = c
            .post_json(PATS, &[("X-Bootstrap-Token", h)], body("second"))
            .await;
        assert_error(s, &v, 403, "forbidden");
    }
    assert_eq!(
        pg.psql(
            DB,
            "select actor_subject from audit_log where action = 'auth.pat.issued'"
        )
        .unwrap(),
        "anonymous"
    );
}

/// Row 3 (scopes): no scopes → the subject's role bindings; none → 400.
#[tokio::test]
async fn empty_scopes_come_from_role_bindings_program_fs_7846_7862() {
    let pg = pg(true);
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);
    c.mint("platform-admin", &["repo:*:admin"]).await;
    let want = json!({"error": "bad_request", "message": "No scopes were provided and no role bindings were found for the subject."});
    for body in [
        json!({"subject": "dev-1", "scopes": [], "ttlMinutes": 60}),
        json!({"subject": "dev-1", "ttlMinutes": 60}),
        json!({"subject": "dev-1", "scopes": null, "ttlMinutes": 60}),
    ] {
        let (s, v) = c
            .post_json(PATS, &[("X-Bootstrap-Token", BOOT)], body)
            .await;
        assert_eq!((s, v), (400, want.clone()));
    }
    pg.psql(
        DB,
        "insert into role_bindings (tenant_id, repo_id, subject, roles, updated_by_subject) \
         select tenant_id, repo_id, 'dev-1', '{read,promote}', 'test' from repos where repo_key = 'libs-release'; \
         insert into tenant_role_bindings (tenant_id, subject, roles, updated_by_subject) \
         select tenant_id, 'ops-1', '{auditor}', 'test' from tenants where slug = 'default'",
    )
    .unwrap();
    // The subject is normalised before the bindings are looked up.
    let (s, v) = c.mint_ttl("DEV-1", &[], 60).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subject"], "dev-1");
    assert_eq!(
        v["scopes"],
        json!(["repo:libs-release:read", "repo:libs-release:promote"])
    );
    // Tenant roles alone are enough; the token then has no repository scopes.
    let (s, v) = c.mint_ttl("ops-1", &[], 60).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["scopes"], json!([]));
    let (s, _) = c.get_auth("/v1/admin/ops/summary", token(&v)).await;
    assert_eq!(s, 200, "the auditor role comes from the binding");
}

/// Row 3 (TTL): at most the tenant's PAT policy maximum, set with `PUT
/// /v1/admin/auth/pat-policy` (Program.fs:8093-8128) and read with `GET` (Program.fs:7934).
#[tokio::test]
async fn pat_policy_caps_ttl_program_fs_7843_and_its_routes_program_fs_7935_8094() {
    let pg = pg(false);
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);
    let admin = c.mint("platform-admin", &["repo:*:admin"]).await;
    let reader = c.mint("reader", &["repo:*:read"]).await;

    let (s, v) = c.get(POLICY).await;
    assert_eq!(
        (s, v),
        (
            401,
            json!({"error": "unauthorized", "message": "Missing or invalid bearer token."})
        )
    );
    let (s, v) = c.get_auth(POLICY, token(&reader)).await;
    assert_eq!(
        (s, v),
        (
            403,
            json!({"error": "forbidden", "message": "Caller does not have the required tenant role."})
        )
    );
    // Program.fs:625 `defaultPatPolicy`.
    let (s, v) = c.get_auth(POLICY, token(&admin)).await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"maxTtlMinutes": 1440, "allowBootstrapIssuance": true,
                   "updatedBySubject": "system-default", "updatedAtUtc": "0001-01-01T00:00:00+00:00"})
        )
    );
    let range =
        json!({"error": "bad_request", "message": "maxTtlMinutes must be between 5 and 10080."});
    for body in [
        json!({"maxTtlMinutes": 4, "allowBootstrapIssuance": true}),
        json!({"maxTtlMinutes": 10081, "allowBootstrapIssuance": true}),
        json!({"allowBootstrapIssuance": true}),
    ] {
        let (s, v) = c.put_auth(POLICY, token(&admin), body).await;
        assert_eq!((s, v), (400, range.clone()));
    }
    let (s, v) = c
        .put_auth(POLICY, token(&reader), json!({"maxTtlMinutes": 30}))
        .await;
    assert_error(s, &v, 403, "forbidden");

    let (s, v) = c
        .put_auth(
            POLICY,
            token(&admin),
            json!({"maxTtlMinutes": 30, "allowBootstrapIssuance": false}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["maxTtlMinutes"], 30);
    assert_eq!(v["allowBootstrapIssuance"], false);
    assert_eq!(v["updatedBySubject"], "platform-admin");
    chrono::DateTime::parse_from_rfc3339(v["updatedAtUtc"].as_str().unwrap()).unwrap();
    let (s, got) = c.get_auth(POLICY, token(&admin)).await;
    assert_eq!((s, got), (200, v));
    assert_eq!(
        pg.psql(
            DB,
            "select a.resource_type || '|' || (a.resource_id = t.tenant_id::text) || '|' || \
             (a.details->>'maxTtlMinutes') || '|' || (a.details->>'allowBootstrapIssuance') \
             from audit_log a join tenants t on t.slug = 'default' \
             where a.action = 'auth.pat.policy.updated'"
        )
        .unwrap(),
        "pat_policy|true|30|False"
    );

    let (s, v) = c.mint_ttl("ci", &["repo:*:read"], 31).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"error": "bad_request", "message": "ttlMinutes exceeds configured max TTL of 30."})
        )
    );
    let (s, v) = c.mint_ttl("ci", &["repo:*:read"], 1441).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"error": "bad_request", "message": "ttlMinutes must be between 5 and 1440."})
        )
    );
    let (s, v) = c.mint_ttl("ci", &["repo:*:read"], 30).await;
    assert_eq!(s, 200, "{v}");

    // A maximum above 1440 leaves the request's own 1440 limit.
    let (s, _) = c
        .put_auth(POLICY, token(&admin), json!({"maxTtlMinutes": 10080}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = c.mint_ttl("ci", &["repo:*:read"], 1440).await;
    assert_eq!(s, 200, "{v}");
}

/// Row 3 (subject): trimmed and lower-cased (`normalizeSubject`).
#[tokio::test]
async fn subjects_are_lower_cased_program_fs_685() {
    let pg = pg(false);
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);
    let (s, v) = c
        .mint_ttl("  CI-Bot@Example.COM ", &["repo:*:admin"], 60)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subject"], "ci-bot@example.com");
    let (s, w) = c.get_auth("/v1/auth/whoami", token(&v)).await;
    assert_eq!((s, &w["subject"]), (200, &json!("ci-bot@example.com")));
    assert_eq!(
        pg.psql(DB, "select subject from personal_access_tokens")
            .unwrap(),
        "ci-bot@example.com"
    );
}

/// Row 4: a token is 64 lower-case hex characters (`createPlainToken`, Program.fs:2173).
#[tokio::test]
async fn tokens_are_64_lower_case_hex_program_fs_2173() {
    let pg = pg(false);
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);
    let mut seen = Vec::new();
    for i in 0..3 {
        let v = c.mint(&format!("t{i}"), &["repo:*:read"]).await;
        let t = token(&v).to_string();
        assert_eq!(t.len(), 64, "{t}");
        assert!(
            t.chars().all(|ch| matches!(ch, '0'..='9' | 'a'..='f')),
            "{t}"
        );
        let (s, _) = c.get_auth("/v1/auth/whoami", &t).await;
        assert_eq!(s, 200);
        assert!(!seen.contains(&t));
        seen.push(t);
    }
}

/// Row 5: revoking a revoked token is 404 (the update requires `revoked_at is null`,
/// Program.fs:3253-3265; Program.fs:7917 answers 404).
#[tokio::test]
async fn second_revoke_is_404_program_fs_3253() {
    let pg = pg(false);
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);
    let admin = c.mint("platform-admin", &["repo:*:admin"]).await;
    let victim = c.mint("victim", &["repo:*:read"]).await;
    let body = json!({"tokenId": victim["tokenId"]});
    let (s, v) = c
        .post_auth("/v1/auth/pats/revoke", token(&admin), body.clone())
        .await;
    assert_eq!((s, &v["status"]), (200, &json!("revoked")), "{v}");
    let first = pg
        .psql(
            DB,
            &format!(
                "select revoked_at from personal_access_tokens where token_id = '{}'",
                victim["tokenId"].as_str().unwrap()
            ),
        )
        .unwrap();
    let (s, v) = c
        .post_auth("/v1/auth/pats/revoke", token(&admin), body)
        .await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"error": "not_found", "message": "Token id was not found."})
        )
    );
    assert_eq!(
        pg.psql(
            DB,
            "select (select count(*) from token_revocations) || '|' || \
             (select count(*) from audit_log where action = 'auth.pat.revoked')"
        )
        .unwrap(),
        "1|1"
    );
    let again = pg
        .psql(
            DB,
            &format!(
                "select revoked_at from personal_access_tokens where token_id = '{}'",
                victim["tokenId"].as_str().unwrap()
            ),
        )
        .unwrap();
    assert_eq!(first, again, "the first revocation time stays");
}

/// Row 6: the ops summary counts the caller's tenant only (`readOpsSummary`, Program.fs:5174)
/// and needs the tenant auditor role (Program.fs:10895), which an admin role implies.
#[tokio::test]
async fn ops_summary_counts_the_callers_tenant_and_needs_auditor_program_fs_5174_10895() {
    let pg = pg(true);
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);
    let admin = c.mint("platform-admin", &["repo:*:admin"]).await;
    // Another tenant's backlog.
    pg.psql(
        DB,
        "insert into tenants (slug, name) values ('other', 'Other tenant'); \
         insert into outbox_events (tenant_id, aggregate_type, aggregate_id, event_type, payload, occurred_at) \
         select tenant_id, 'x', 'y', 'z', '{}', now() - interval '5000 seconds' \
         from tenants, generate_series(1, 7) where slug = 'other'; \
         insert into gc_runs (tenant_id, initiated_by_subject, mode, retention_grace_hours, batch_size) \
         select tenant_id, 'x', 'dry_run', 1, 1 from tenants where slug = 'other'; \
         insert into audit_log (tenant_id, actor_subject, action, resource_type, resource_id) \
         select tenant_id, 'policy', 'policy.timeout', 'package_version', 'x' from tenants where slug = 'other'",
    )
    .unwrap();
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&admin)).await;
    assert_eq!(s, 200, "{v}");
    // The seeded values of the default tenant (seed.sql), nothing of `other`.
    assert_eq!(v["pendingOutboxEvents"], 4);
    assert_eq!(v["availableOutboxEvents"], 3);
    assert!(v["oldestPendingOutboxAgeSeconds"].as_i64().unwrap() < 5000);
    assert_eq!(v["incompleteGcRuns"], 1);
    assert_eq!(v["recentPolicyTimeouts24h"], 1);

    // Roles: operator is not auditor; auditor and admin (which implies it) are.
    for (subject, roles, want) in [
        ("op-1", "{operator}", 403),
        ("aud-1", "{tenant_auditor}", 200),
        ("adm-1", "{ADMIN}", 200),
    ] {
        let t = c.mint(subject, &["repo:libs-release:read"]).await;
        let (s, _) = c.get_auth("/v1/admin/ops/summary", token(&t)).await;
        assert_eq!(s, 403, "{subject} before its binding");
        pg.psql(
            DB,
            &format!(
                "insert into tenant_role_bindings (tenant_id, subject, roles, updated_by_subject) \
                 select tenant_id, '{subject}', '{roles}', 'test' from tenants where slug = 'default'"
            ),
        )
        .unwrap();
        let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&t)).await;
        assert_eq!(s, want, "{subject} {roles}: {v}");
    }
}

/// Row 7: the audit row of a summary read is `operations` / the tenant id, with the counters
/// and statuses as details (Program.fs:10920-10938).
#[tokio::test]
async fn ops_summary_audit_row_is_operations_and_tenant_program_fs_10920() {
    let pg = pg(true);
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);
    let admin = c.mint("platform-admin", &["repo:*:admin"]).await;
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&admin)).await;
    assert_eq!(s, 200, "{v}");
    let row: Value = serde_json::from_str(
        &pg.psql(
            DB,
            "select json_build_object('actor', actor_subject, 'type', resource_type, \
             'id', resource_id, 'details', details) from audit_log where action = 'ops.summary.read'",
        )
        .unwrap(),
    )
    .unwrap();
    let age = v["oldestPendingOutboxAgeSeconds"].as_i64().unwrap();
    assert_eq!(
        row,
        json!({
            "actor": "platform-admin",
            "type": "operations",
            "id": tenant_id(&pg),
            "details": {
                "pendingOutboxEvents": "4",
                "availableOutboxEvents": "3",
                "oldestPendingOutboxAgeSeconds": age.to_string(),
                "failedSearchJobs": "1",
                "pendingSearchJobs": "3",
                "incompleteGcRuns": "1",
                "recentPolicyTimeouts24h": "1",
                "readinessStatus": "not_ready",
                "oidcTrustStatus": "not_configured",
                "samlTrustStatus": "not_configured",
            }
        })
    );
}

/// Row 8: `not_configured` dependencies carry the service's `detail` string (Program.fs:2407,
/// :2457, :2508-2513).
#[tokio::test]
async fn readiness_detail_on_not_configured_program_fs_2508() {
    let pg = pg(false);
    let a = api_for(&pg, None, &[]);
    let (_, v) = Client::new(&a).ready().await;
    for (name, detail) in [
        (
            "redis",
            "Redis is not on the critical path for current production scope.",
        ),
        (
            "telemetry",
            "Telemetry exporter health is not enforced by readiness; validate collector and exporter pipelines separately.",
        ),
        ("oidc_jwks", "OIDC bearer validation is disabled."),
        ("saml_metadata", "SAML federation is disabled."),
    ] {
        let d = dep(&v, name);
        assert_eq!(
            d,
            &json!({"name": name, "healthy": true, "essential": false, "status": "not_configured", "detail": detail})
        );
    }
}

/// A TCP server that accepts connections, records when each request head arrived and its first
/// line, and never answers.
/// When each request head arrived, and its first line.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>;

fn silent_server() -> (u16, Seen) {
    use std::io::Read;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { break };
            let rec = rec.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                let mut recorded = false;
                while let Ok(n) = conn.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if !recorded && !buf.is_empty() {
                        recorded = true;
                        let first = String::from_utf8_lossy(&buf)
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        rec.lock().unwrap().push((Instant::now(), first));
                    }
                }
            });
        }
    });
    (port, seen)
}

/// Row 9: PostgreSQL first, then object storage, one after the other
/// (`collectDependencyStatuses`, Program.fs:2525-2526); the storage probe is `ListObjectsV2`
/// with `MaxKeys = 1` (ObjectStorage.fs:335-341) given 3 s (Program.fs:2383), and its
/// timeout detail is the service's (Program.fs:2394).
#[tokio::test]
async fn readiness_probes_postgres_then_list_objects_3s_program_fs_2525_object_storage_fs_339() {
    // A "PostgreSQL" and an "S3" that accept connections and never answer.
    let (pg_port, pg_seen) = silent_server();
    let (s3_port, s3_seen) = silent_server();
    let a = api(vec![
        (
            "ConnectionStrings__Postgres".into(),
            format!("Host=127.0.0.1;Port={pg_port};Username=u;Password=p;Database=d"),
        ),
        (
            "ObjectStorage__Endpoint".into(),
            format!("http://127.0.0.1:{s3_port}"),
        ),
        ("ObjectStorage__AccessKey".into(), "ak".into()),
        ("ObjectStorage__SecretKey".into(), "sk".into()),
        ("ObjectStorage__Bucket".into(), "probe-bucket".into()),
    ]);
    let c = Client::new(&a);
    let t0 = Instant::now();
    let (s, v) = c.ready().await;
    let answered = Instant::now();
    assert_eq!(s, 503, "{v}");
    assert_eq!(dep(&v, "postgres")["status"], "not_ready");
    assert_eq!(
        dep(&v, "object_storage")["detail"],
        "Object storage readiness check timed out."
    );
    let pg_first = pg_seen
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("PostgreSQL was probed");
    let s3 = s3_seen.lock().unwrap().clone();
    assert_eq!(s3.len(), 1, "one storage request: {s3:?}");
    let (s3_at, line) = &s3[0];
    // Sequential: storage is asked only after the PostgreSQL probe gave up (it waits at least
    // the pool's 2 s acquire timeout on a server that never answers).
    assert!(pg_first.0 < *s3_at);
    assert!(
        s3_at.duration_since(t0) >= Duration::from_millis(1900),
        "storage probed {:?} after the request: not after PostgreSQL",
        s3_at.duration_since(t0)
    );
    assert!(
        (line.starts_with("GET /probe-bucket?") || line.starts_with("GET /probe-bucket/?"))
            && line.contains("list-type=2")
            && line.contains("max-keys=1"),
        "{line}"
    );
    let waited = answered.duration_since(*s3_at);
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_millis(4500),
        "storage probe waited {waited:?}"
    );
}

/// Row 10: `GET /` names `artifortress-api` (Program.fs:7666); an unknown route is ASP.NET's
/// empty 404; a database failure is 503 `service_unavailable` "Database operation failed"
/// (Program.fs:2338-2344 and :2192), never an `internal_error`.
#[tokio::test]
async fn root_name_empty_404_and_no_internal_error_program_fs_7666() {
    let pg = pg(false);
    let a = api_for(&pg, None, &[]);
    let c = Client::new(&a);
    let (s, v) = c.get("/").await;
    assert_eq!((s, &v["service"]), (200, &json!("artifortress-api")));
    for path in ["/nope", "/v1/admin/nope", "/health"] {
        let r = c.http.get(c.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
        assert!(r.headers().get("content-type").is_none(), "{path}");
        assert!(r.bytes().await.unwrap().is_empty(), "{path}");
    }
    let admin = c.mint("platform-admin", &["repo:*:admin"]).await;
    pg.psql(DB, "drop table gc_runs cascade").unwrap();
    let (s, v) = c.get_auth("/v1/admin/ops/summary", token(&admin)).await;
    assert_error(s, &v, 503, "service_unavailable");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.starts_with("Database operation failed: ") && m.contains("gc_runs"),
        "{m}"
    );
}

/// Row 11: without database or storage settings the API uses the service's localhost defaults
/// (Program.fs:7316-7320, ObjectStorage.fs:100-103), starts, and answers `not_ready`.
#[tokio::test]
async fn missing_settings_fall_back_to_localhost_program_fs_7319() {
    let a = api(vec![]);
    let c = Client::new(&a);
    let (s, _) = c.get("/health/live").await;
    assert_eq!(s, 200);
    let (s, v) = c.ready().await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["status"], "not_ready");
    assert_eq!(dep(&v, "postgres")["status"], "not_ready");
    let os = dep(&v, "object_storage");
    assert_eq!(os["status"], "not_ready");
    let detail = os["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"artifortress-dev\"")
            || detail == "Object storage readiness check timed out.",
        "the default bucket: {detail}"
    );
    // A route that needs the database says so in the service's words.
    let (s, v) = c.get_auth("/v1/auth/whoami", &"a".repeat(64)).await;
    assert_error(s, &v, 503, "service_unavailable");
}

/// Row 12: an out-of-range `ObjectStorage__PresignPartTtlSeconds` is 900, not a start failure
/// (ObjectStorage.fs:94-97).
#[test]
fn presign_part_ttl_out_of_range_is_900_object_storage_fs_94() {
    for (given, want) in [("59", 900), ("3601", 900), ("soon", 900), ("120", 120)] {
        let a = api(vec![(
            "ObjectStorage__PresignPartTtlSeconds".into(),
            given.into(),
        )]);
        let log = wait_for(Duration::from_secs(5), || {
            let l = a.log();
            l.contains("API started").then_some(l)
        })
        .expect("start line logged");
        assert!(
            log.contains(&format!("presign_part_ttl_seconds={want}")),
            "{given}: {log}"
        );
    }
}

/// Row 13: `ObjectStorage__Region` is never read; requests are signed for `us-east-1`
/// (ObjectStorage.fs:119).
#[tokio::test]
async fn object_storage_region_is_not_read_object_storage_fs_119() {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let pg = pg(false);
    let g = garage();
    // This Garage refuses a request signed for another region ...
    let wrong = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-central-9"))
            .endpoint_url(g.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                g.access_key(),
                g.secret_key(),
                None,
                None,
                "test",
            ))
            .build(),
    );
    assert!(
        wrong
            .list_objects_v2()
            .bucket(g.bucket())
            .max_keys(1)
            .send()
            .await
            .is_err(),
        "Garage must refuse a request signed for eu-central-9 for this test to mean anything"
    );
    // ... yet the test bed told that region stays ready.
    let a = api_for(&pg, Some(&g), &[("ObjectStorage__Region", "eu-central-9")]);
    let (s, v) = Client::new(&a).ready().await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(dep(&v, "object_storage")["status"], "ready");
}

/// Row 14: with `Auth__BootstrapToken` unset the service uses appsettings.json's well-known
/// `artifortress-bootstrap` (appsettings.json:22-24); set blank, no header is accepted.
#[tokio::test]
async fn unset_bootstrap_token_is_artifortress_bootstrap_appsettings_json_23() {
    let pg = pg(false);
    let mut env = vec![(
        "ConnectionStrings__Postgres".to_string(),
        pg.npgsql_connection_string(DB),
    )];
    env.extend(unreachable_object_storage_env());
    let a = api(env.clone());
    let c = Client::new(&a);
    let body = |s: &str| json!({"subject": s, "scopes": ["repo:*:read"], "ttlMinutes": 60});
    let (s, v) = c.post_json(PATS, &[], body("first")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c
        .post_json(PATS, &[("X-Bootstrap-Token", "wrong")], body("second"))
        .await;
    assert_error(s, &v, 403, "forbidden");
    let (s, v) = c
        .post_json(
            PATS,
            &[("X-Bootstrap-Token", "artifortress-bootstrap")],
            body("second"),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    drop(a);

    env.push(("Auth__BootstrapToken".into(), String::new()));
    let a = api(env);
    let (s, v) = Client::new(&a)
        .post_json(
            PATS,
            &[("X-Bootstrap-Token", "artifortress-bootstrap")],
            body("third"),
        )
        .await;
    assert_error(s, &v, 403, "forbidden");
}

// ------------------------------------------------------------------------------------------------
// worker

fn worker(pg_conn: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(WORKER_BIN);
    scrub_env(&mut cmd);
    cmd.env("ConnectionStrings__Postgres", pg_conn)
        .envs(extra.iter().copied())
        .args(args);
    cmd.output().expect("run worker")
}

#[tokio::test]
async fn worker_once_delivers_outbox_and_processes_search_jobs() {
    let pg = pg(true);
    let conn = pg.npgsql_connection_string(DB);
    let q = |sql: &str| pg.psql(DB, sql).unwrap();

    let out = worker(&conn, &["--once"], &[("Worker__SearchJobMaxAttempts", "1")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let sweeps: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("sweep complete"))
        .collect();
    assert_eq!(sweeps.len(), 1, "{stderr}");
    assert!(
        sweeps[0].contains("outbox_delivered=3")
            && sweeps[0].contains("search_completed=1")
            && sweeps[0].contains("search_failed=1"),
        "{stderr}"
    );
    // The future event and nothing else stays undelivered.
    assert_eq!(
        q("select string_agg(event_id::text, ',') from outbox_events where delivered_at is null"),
        "d0000000-0000-4000-8000-000000000004"
    );
    assert_eq!(
        q(
            "select string_agg(status || ':' || attempts, ',' order by job_id) from search_index_jobs"
        ),
        "completed:1,failed:1,processing:1,failed:5"
    );
    assert!(q("select last_error from search_index_jobs where job_id = 'e0000000-0000-4000-8000-000000000002'")
        .contains("not published"));

    // Second sweep: nothing left to do.
    let out = worker(&conn, &["--once"], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outbox_delivered=0"));

    // Batch size, oldest first; a retried job goes back to pending with a back-off.
    q(
        "insert into outbox_events (event_id, tenant_id, aggregate_type, aggregate_id, event_type, payload, occurred_at) \
       select ('10000000-0000-4000-8000-00000000000' || i)::uuid, tenant_id, 'x', 'y', 'z', '{}', now() - i * interval '1 minute' \
       from tenants, generate_series(1, 5) i where slug = 'default'; \
       update package_versions set state = 'draft' where version_id = 'c0000000-0000-4000-8000-000000000001'; \
       update search_index_jobs set status = 'pending', attempts = 0 where job_id = 'e0000000-0000-4000-8000-000000000001'",
    );
    let out = worker(&conn, &["--once"], &[("Worker__BatchSize", "2")]);
    assert!(out.status.success());
    assert_eq!(
        q(
            "select string_agg(right(event_id::text, 1), ',' order by event_id) from outbox_events \
           where event_id::text like '10000000%' and delivered_at is not null"
        ),
        "4,5"
    );
    assert_eq!(
        q(
            "select status || ':' || attempts || ':' || (available_at > now()) from search_index_jobs \
           where job_id = 'e0000000-0000-4000-8000-000000000001'"
        ),
        "pending:1:true"
    );

    // PostgreSQL unreachable → non-zero exit and a clear message.
    let dead = free_port().unwrap();
    let out = worker(
        &format!("Host=127.0.0.1;Port={dead};Username=postgres;Password=x;Database=x"),
        &["--once"],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sweep failed") && stderr.contains("refused"),
        "{stderr}"
    );

    // Missing configuration → exit 2.
    let mut cmd = Command::new(WORKER_BIN);
    scrub_env(&mut cmd);
    let out = cmd.arg("--once").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn worker_loop_stops_promptly_on_sigterm() {
    let pg = pg(true);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut cmd = Command::new(WORKER_BIN);
    scrub_env(&mut cmd);
    let mut child = cmd
        .env(
            "ConnectionStrings__Postgres",
            pg.npgsql_connection_string(DB),
        )
        .env("Worker__PollSeconds", "30")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let swept = wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("sweep complete"))
    });
    assert!(swept.is_some(), "no sweep logged");
    let t = Instant::now();
    assert!(send_signal(child.id(), libc::SIGTERM));
    let st = wait_for(Duration::from_secs(5), || child.try_wait().ok().flatten())
        .expect("worker did not stop within 5 s of SIGTERM");
    assert!(st.success(), "{st}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

// ------------------------------------------------------------------------------------------------
// db-migrate.sh

#[tokio::test]
async fn db_migrate_script_applies_records_and_skips() {
    let pg = PgServer::start().unwrap();
    pg.create_database("mig").unwrap();
    let url = pg.database_url("mig");
    let q = |sql: &str| pg.psql("mig", sql).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(migrations_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    assert!(
        files
            .iter()
            .all(|f| f.len() > 9 && f[..4].chars().all(|c| c.is_ascii_digit()) && &f[4..5] == "_")
    );

    let script = testbed_dir().join("db-migrate.sh");
    let out = acceptance_tests::support::postgres::run_db_migrate(&url, &migrations_dir()).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in &files {
        assert!(stdout.contains(&format!("Applying {f}...")), "{stdout}");
    }
    assert!(stdout.contains("Migrations are up to date."));
    assert_eq!(
        q("select string_agg(version, ',' order by version) from schema_migrations"),
        files.join(",")
    );
    assert_eq!(
        q("select max(version) from schema_migrations"),
        *files.last().unwrap()
    );
    // The ledger's exact shape.
    assert_eq!(
        q(
            "select string_agg(column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '-'), ', ' order by ordinal_position) \
           from information_schema.columns where table_name = 'schema_migrations'"
        ),
        "version text NO -, applied_at timestamp with time zone NO now()"
    );
    assert_eq!(
        q(
            "select count(*) from information_schema.table_constraints where table_name = 'schema_migrations' and constraint_type = 'PRIMARY KEY'"
        ),
        "1"
    );
    for t in [
        "schema_migrations",
        "tenants",
        "repos",
        "packages",
        "blobs",
        "package_versions",
        "artifact_entries",
        "audit_log",
        "outbox_events",
        "search_index_jobs",
        "gc_runs",
        "personal_access_tokens",
        "token_revocations",
        "role_bindings",
        "tenant_role_bindings",
    ] {
        assert_eq!(
            q(&format!("select to_regclass('public.{t}') is not null")),
            "t",
            "table {t}"
        );
    }

    // Second run: everything skipped, ledger untouched.
    let before = q(
        "select string_agg(version || '@' || applied_at, ',' order by version) from schema_migrations",
    );
    let out = Command::new("bash")
        .arg(&script)
        .arg(&url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for f in &files {
        assert!(
            stdout.contains(&format!("Skipping {f} (already applied).")),
            "{stdout}"
        );
    }
    assert!(!stdout.contains("Applying"));
    assert_eq!(
        before,
        q(
            "select string_agg(version || '@' || applied_at, ',' order by version) from schema_migrations"
        )
    );

    // Files are re-runnable: applying them again directly works, and so does a lost ledger row.
    for f in &files {
        pg.psql_file("mig", &migrations_dir().join(f)).unwrap();
    }
    let last = files.last().unwrap();
    q(&format!(
        "delete from schema_migrations where version = '{last}'"
    ));
    let out = Command::new("bash")
        .arg(&script)
        .arg(&url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("Applying {last}...")));
    assert_eq!(stdout.matches("Applying").count(), 1);

    // Seed is re-runnable and idempotent.
    pg.seed("mig").unwrap();
    let counts = "select (select count(*) from tenants) || ',' || (select count(*) from repos) || ',' || \
                  (select count(*) from packages) || ',' || (select count(*) from blobs) || ',' || \
                  (select count(*) from package_versions) || ',' || (select count(*) from artifact_entries) || ',' || \
                  (select count(*) from outbox_events) || ',' || (select count(*) from search_index_jobs) || ',' || \
                  (select count(*) from gc_runs) || ',' || (select count(*) from audit_log)";
    let first = q(counts);
    pg.seed("mig").unwrap();
    assert_eq!(first, q(counts));
    assert_eq!(first, "1,1,3,3,4,3,5,4,2,2");

    // A failing file stops the run and is not recorded.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("0001_ok.sql"),
        "create table if not exists t_ok (x int);",
    )
    .unwrap();
    std::fs::write(
        bad.path().join("0002_bad.sql"),
        "create table t_bad (x nonexistent_type);",
    )
    .unwrap();
    std::fs::write(
        bad.path().join("0003_never.sql"),
        "create table t_never (x int);",
    )
    .unwrap();
    pg.create_database("mig2").unwrap();
    let out =
        acceptance_tests::support::postgres::run_db_migrate(&pg.database_url("mig2"), bad.path())
            .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        pg.psql(
            "mig2",
            "select string_agg(version, ',') from schema_migrations"
        )
        .unwrap(),
        "0001_ok.sql"
    );

    // Usage.
    let out = Command::new("bash").arg(&script).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

// ------------------------------------------------------------------------------------------------
// release tarballs + control script

fn build_releases(out: &Path) -> String {
    let bin_dir = Path::new(API_BIN).parent().unwrap();
    let o = Command::new("bash")
        .arg(testbed_dir().join("build-releases.sh"))
        .arg(out)
        .env("TESTBED_BIN_DIR", bin_dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(out.join("SHA256SUMS")).unwrap()
}

fn ctl(release: &Path, action: &str, role: &str) -> (i32, String) {
    let mut cmd = Command::new(release.join("bin/artifortress"));
    scrub_env(&mut cmd);
    for k in [
        "ARTIFORTRESS_RUN_DIR",
        "ARTIFORTRESS_ENV_FILE",
        "ARTIFORTRESS_STOP_TIMEOUT",
    ] {
        cmd.env_remove(k);
    }
    let o = cmd.args([action, role]).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .trim()
        .to_string(),
    )
}

fn pid_of(status_line: &str) -> u32 {
    status_line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn release_tarballs_are_reproducible_and_controllable() {
    let tmp = tempfile::tempdir().unwrap();
    let (out1, out2) = (tmp.path().join("out1"), tmp.path().join("out2"));
    let sums1 = build_releases(&out1);
    let sums2 = build_releases(&out2);
    assert_eq!(sums1, sums2, "tarballs are not reproducible");
    let names: Vec<&str> = sums1
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "artifortress-v1.tar.gz",
            "artifortress-v2.tar.gz",
            "artifortress-broken.tar.gz",
            "artifortress-api-v1.tar.gz",
            "artifortress-api-v2.tar.gz",
            "artifortress-api-broken.tar.gz",
            "artifortress-worker-v1.tar.gz",
            "artifortress-worker-v2.tar.gz",
            "artifortress-worker-broken.tar.gz",
        ]
    );
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&out1)
        .output()
        .unwrap();
    assert!(check.status.success());

    for v in ["v1", "v2", "broken"] {
        let o = Command::new("tar")
            .args(["tzvf"])
            .arg(out1.join(format!("artifortress-{v}.tar.gz")))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&o.stdout);
        let entries: Vec<&str> = listing
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect();
        let top = format!("artifortress-{v}/");
        let want: Vec<String> = [
            "",
            "VERSION",
            "bin/",
            "bin/artifortress",
            "bin/artifortress-testbed-api",
            "bin/artifortress-testbed-worker",
        ]
        .iter()
        .map(|e| format!("{top}{e}"))
        .collect();
        assert_eq!(entries, want, "{listing}");
        assert!(listing.lines().all(|l| l.contains(" 0/0 ")), "{listing}");
        // Per role (api_artifact / worker_artifact): that role's binary only, and the control
        // script.
        for role in ["api", "worker"] {
            let o = Command::new("tar")
                .args(["tzf"])
                .arg(out1.join(format!("artifortress-{role}-{v}.tar.gz")))
                .output()
                .unwrap();
            let top = format!("artifortress-{role}-{v}/");
            let want: Vec<String> = [
                "",
                "VERSION",
                "bin/",
                "bin/artifortress",
                &format!("bin/artifortress-testbed-{role}"),
            ]
            .iter()
            .map(|e| format!("{top}{e}"))
            .collect();
            assert_eq!(
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .collect::<Vec<_>>(),
                want
            );
        }
    }

    // A host layout: <root>/releases/artifortress-<v>, <root>/shared/<role>.env, <root>/run.
    let root = tmp.path().join("host");
    let releases = root.join("releases");
    std::fs::create_dir_all(&releases).unwrap();
    std::fs::create_dir_all(root.join("shared")).unwrap();
    for v in ["v1", "broken"] {
        let st = Command::new("tar")
            .arg("xzf")
            .arg(out1.join(format!("artifortress-{v}.tar.gz")))
            .arg("-C")
            .arg(&releases)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let v1 = releases.join("artifortress-v1");
    let broken = releases.join("artifortress-broken");
    // Stop whatever the control scripts started, even if an assertion fails.
    let _cleanup = StopOnDrop(vec![
        (v1.clone(), "api"),
        (v1.clone(), "worker"),
        (broken.clone(), "api"),
    ]);
    assert_eq!(
        std::fs::read_to_string(v1.join("VERSION")).unwrap().trim(),
        "v1"
    );
    assert_eq!(
        std::fs::read_to_string(broken.join("VERSION"))
            .unwrap()
            .trim(),
        "broken"
    );
    std::os::unix::fs::symlink("releases/artifortress-v1", root.join("current")).unwrap();

    let pg = pg(false);
    let g = garage();
    let port = free_port().unwrap();
    let mut api_env_file = format!(
        "# test bed API\nASPNETCORE_URLS=http://127.0.0.1:{port}\nConnectionStrings__Postgres={}\nAuth__BootstrapToken=\"{BOOT}\"\n",
        pg.npgsql_connection_string(DB)
    );
    for (k, v) in g.object_storage_env(g.bucket()) {
        api_env_file.push_str(&format!("{k}={v}\n"));
    }
    std::fs::write(root.join("shared/api.env"), api_env_file).unwrap();
    std::fs::write(
        root.join("shared/worker.env"),
        format!(
            "ConnectionStrings__Postgres={}\nWorker__PollSeconds=1\n",
            pg.npgsql_connection_string(DB)
        ),
    )
    .unwrap();

    // A release installed from the role archives (releases/<v>/{api,worker}/, as
    // artifortress_release unpacks api_artifact / worker_artifact): the control script under
    // current/worker/ uses the deploy dir's run/ and shared/, one level further up.
    let roles_root = tmp.path().join("host-roles");
    for role in ["api", "worker"] {
        let dir = roles_root.join("releases/v1").join(role);
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("tar")
            .arg("xzf")
            .arg(out1.join(format!("artifortress-{role}-v1.tar.gz")))
            .args(["--strip-components=1", "-C"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success());
    }
    std::fs::create_dir_all(roles_root.join("shared")).unwrap();
    std::fs::copy(
        root.join("shared/worker.env"),
        roles_root.join("shared/worker.env"),
    )
    .unwrap();
    std::os::unix::fs::symlink("releases/v1", roles_root.join("current")).unwrap();
    let role_worker = roles_root.join("current/worker");
    let _role_cleanup = StopOnDrop(vec![(role_worker.clone(), "worker")]);
    let (rc, out) = ctl(&role_worker, "start", "worker");
    assert_eq!(rc, 0, "{out}");
    assert!(out.starts_with("started v1 pid "), "{out}");
    assert!(
        roles_root.join("run/worker.pid").is_file(),
        "run/ of the deploy dir"
    );
    assert_eq!(ctl(&role_worker, "stop", "worker"), (0, "stopped".into()));
    assert!(
        !roles_root
            .join("current/api/bin/artifortress-testbed-worker")
            .exists(),
        "the API archive holds the API only"
    );

    let current = root.join("current");
    let url = format!("http://127.0.0.1:{port}");
    // No connection reuse: the server behind the port is replaced during the test.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    assert_eq!(ctl(&current, "status", "api"), (3, "stopped".into()));
    let (rc, out) = ctl(&current, "start", "api");
    assert_eq!(rc, 0, "{out}");
    assert!(out.starts_with("started v1 pid "), "{out}");
    let (rc, st) = ctl(&current, "status", "api");
    assert_eq!(rc, 0);
    assert!(st.starts_with("running v1 pid "), "{st}");
    let pid = pid_of(&st);
    assert_eq!(
        std::fs::read_to_string(root.join("run/api.pid"))
            .unwrap()
            .trim(),
        pid.to_string()
    );
    let (s, v) = send(http.get(format!("{url}/health/live"))).await;
    assert_eq!((s, v), (200, json!({"status": "ok"})));
    let (s, v) = send(http.get(format!("{url}/health/ready"))).await;
    assert_eq!((s, &v["status"]), (200, &json!("ready")), "{v}");
    // Idempotent start.
    let (rc, out) = ctl(&current, "start", "api");
    assert_eq!(rc, 0);
    assert!(out.contains(&format!("pid {pid}")), "{out}");
    assert!(
        std::fs::read_to_string(root.join("run/api.log"))
            .unwrap()
            .contains("Now listening on:")
    );

    // Worker.
    let (rc, out) = ctl(&current, "start", "worker");
    assert_eq!(rc, 0, "{out}");
    let (rc, st) = ctl(&current, "status", "worker");
    assert_eq!(rc, 0);
    assert!(st.starts_with("running v1 pid "), "{st}");
    let worker_pid = pid_of(&st);
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(
            root.join("run/worker.log")
        )
        .ok()
        .filter(|l| l.contains("sweep complete")))
        .is_some()
    );
    let t = Instant::now();
    assert_eq!(ctl(&current, "stop", "worker"), (0, "stopped".into()));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!Path::new(&format!("/proc/{worker_pid}")).exists() || proc_is_zombie(worker_pid));
    assert_eq!(ctl(&current, "status", "worker"), (3, "stopped".into()));

    // Stop API (idempotent).
    assert_eq!(ctl(&current, "stop", "api"), (0, "stopped".into()));
    assert_eq!(ctl(&current, "stop", "api"), (0, "stopped".into()));
    assert_eq!(ctl(&current, "status", "api"), (3, "stopped".into()));
    assert!(send_or_refused(&http, &format!("{url}/health/live")).await);

    // The broken release starts but never becomes ready.
    let (rc, out) = ctl(&broken, "start", "api");
    assert_eq!(rc, 0, "{out}");
    let (rc, st) = ctl(&broken, "status", "api");
    assert_eq!(rc, 0);
    assert!(st.starts_with("running broken pid "), "{st}");
    for _ in 0..3 {
        let (s, v) = send(http.get(format!("{url}/health/ready"))).await;
        assert_eq!(s, 503, "{v}");
        assert_eq!(dep(&v, "postgres")["detail"], "testbed fault: never ready");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // restart keeps it broken; then stop.
    let (rc, out) = ctl(&broken, "restart", "api");
    assert_eq!(rc, 0, "{out}");
    let (s, _) = send(http.get(format!("{url}/health/ready"))).await;
    assert_eq!(s, 503);
    assert_eq!(ctl(&broken, "stop", "api"), (0, "stopped".into()));

    // Usage errors.
    assert_eq!(ctl(&current, "start", "db").0, 2);
    assert_eq!(ctl(&current, "explode", "api").0, 2);
}

struct StopOnDrop(Vec<(std::path::PathBuf, &'static str)>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for (release, role) in &self.0 {
            let _ = ctl(release, "stop", role);
        }
    }
}

fn proc_is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        .unwrap_or(true)
}

/// True when nothing answers at `url` any more.
async fn send_or_refused(http: &reqwest::Client, url: &str) -> bool {
    http.get(url).send().await.is_err()
}
