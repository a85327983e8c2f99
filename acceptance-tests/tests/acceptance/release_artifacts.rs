//! `artifortress_release` with one archive per role (`api_artifact` / `worker_artifact`): the
//! real service ships two `dotnet publish` outputs, the API and the worker (its
//! docs/29-deployment-howto-production.md, "Release Artifact Preparation" lines 26-29;
//! deploy/kind/Dockerfile.api and Dockerfile.worker), which the host module's
//! systemd units run from `current/api/` and `current/worker/`. Against the dev deploy hosts
//! (`scripts/dev-env up --hosts 4`, hosts 1-3 as the release tests share them, in a deploy dir of
//! its own) and the test bed's role tarballs (`artifortress-{api,worker}-<version>.tar.gz`,
//! `acceptance-tests/testbed/build-releases.sh`), under every Terraform under test.

use sha2::Digest;

use super::deploy_hosts::{DevHost, artifacts, dev_host, ssh};
use super::harness::{Terraform, Workdir, terraforms};
use super::release::{Fleet, free_port, hcl, live_version, readiness, state, tf_tag};

const STRATEGY: &str =
    r#"strategy = { max_parallel = 2, health_timeout = "20s", poll_interval = "100ms" }"#;

/// api-1 (API only), worker-1 (worker only) and both-1 (both roles).
fn role_fleet(tf: &Terraform) -> Fleet {
    let fleet = Fleet {
        hosts: vec![
            ("api-1".into(), dev_host("host-1"), vec!["api"]),
            ("worker-1".into(), dev_host("host-2"), vec!["worker"]),
            ("both-1".into(), dev_host("host-3"), vec!["api", "worker"]),
        ],
        deploy_dir: format!("/opt/artifortress/roles-{}", tf_tag(tf)),
        api_port: free_port(),
        local: false,
        faults: false,
    };
    fleet.reset();
    fleet
}

/// The release's configuration with `api_artifact` / `worker_artifact` (the role tarballs of
/// `version`) instead of `artifact`, and commands that run each role from its own directory.
/// `keep_single` keeps `artifact` too (a mixed, invalid configuration).
fn per_role(fleet: &Fleet, version: &str, extra: &str, keep_single: bool) -> String {
    let (dir, sums) = artifacts();
    let single = fleet.config(version, extra);
    let start = single.find("  artifact   = {").expect("the artifact line");
    let end = start + single[start..].find('\n').unwrap() + 1;
    let roles = format!(
        "  api_artifact    = {{ source = {}, sha256 = {} }}\n  worker_artifact = {{ source = {}, sha256 = {} }}\n",
        hcl(&format!("{dir}/artifortress-api-{version}.tar.gz")),
        hcl(&sums[&format!("api-{version}")]),
        hcl(&format!("{dir}/artifortress-worker-{version}.tar.gz")),
        hcl(&sums[&format!("worker-{version}")]),
    );
    let kept = if keep_single { &single[start..end] } else { "" };
    let mut out = format!("{}{kept}{roles}{}", &single[..start], &single[end..]);
    for verb in ["restart", "status", "stop"] {
        for role in ["api", "worker"] {
            out = out.replace(
                &format!("{{{{release_dir}}}}/bin/artifortress {verb} {role}\""),
                &format!("{{{{release_dir}}}}/{role}/bin/artifortress {verb} {role}\""),
            );
        }
    }
    assert!(!out.contains("{{release_dir}}/bin/"), "{out}");
    out
}

/// `ls` of a host's `releases/<version>`.
fn release_entries(h: &DevHost, deploy_dir: &str, version: &str) -> Vec<String> {
    let (code, out) = ssh(h, &format!("ls -A {deploy_dir}/releases/{version}"));
    assert_eq!(code, 0, "{out}");
    out.lines().map(str::to_string).collect()
}

/// What the host recorded for a role's archive.
fn recorded(h: &DevHost, deploy_dir: &str, version: &str, role: &str) -> String {
    let (code, out) = ssh(
        h,
        &format!("cat {deploy_dir}/releases/{version}/{role}/.artifact-sha256"),
    );
    assert_eq!(code, 0, "{out}");
    out.trim().to_string()
}

/// The set digest `host_artifact_sha256` holds for per-role archives: sha256 of `<role> <sha>\n`.
fn set_digest(parts: &[(&str, &str)]) -> String {
    let text: String = parts.iter().map(|(r, s)| format!("{r} {s}\n")).collect();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The state file rewritten as the provider before per-role archives wrote it: schema version 1,
/// without the attributes added since.
fn rewrite_as_schema_1(wd: &Workdir) {
    let path = wd.file("terraform.tfstate");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let inst = &mut st["resources"][0]["instances"][0];
    assert_eq!(inst["schema_version"], 2, "{inst}");
    inst["schema_version"] = 1.into();
    let attrs = inst["attributes"].as_object_mut().unwrap();
    for a in [
        "api_artifact",
        "worker_artifact",
        "host_role_artifact_sha256",
    ] {
        assert!(attrs.remove(a).is_some(), "{a} is in today's state");
    }
    st["serial"] = (st["serial"].as_u64().unwrap() + 1).into();
    std::fs::write(&path, serde_json::to_string_pretty(&st).unwrap()).unwrap();
}

#[test]
fn release_deploys_one_archive_per_role() {
    for tf in terraforms() {
        let fleet = role_fleet(&tf);
        let d = fleet.deploy_dir.clone();
        let host = |name: &str| fleet.hosts.iter().find(|h| h.0 == name).unwrap().1.clone();
        let (_, sums) = artifacts();

        // v1 from one archive, as configurations before per-role archives have it.
        let wd = Workdir::new(&tf, &fleet.config("v1", STRATEGY));
        wd.apply_ok();
        let s = state(&wd);
        assert_eq!(s["revision"], 1);
        let v1 = sums["v1"].clone();
        assert_eq!(
            s["host_role_artifact_sha256"],
            serde_json::json!({
                "api-1": {"api": v1},
                "worker-1": {"worker": v1},
                "both-1": {"api": v1, "worker": v1},
            }),
            "with `artifact`, every role comes from it: {s}"
        );
        assert_eq!(s["host_artifact_sha256"]["both-1"], v1);

        // A state written by the provider before per-role archives (schema version 1) upgrades
        // with an empty plan, and nothing is deployed.
        rewrite_as_schema_1(&wd);
        wd.assert_plan_empty();
        let run = wd.run(&[
            "apply",
            "-refresh-only",
            "-auto-approve",
            "-input=false",
            "-no-color",
        ]);
        assert_eq!(run.code, 0, "{}", run.text());
        let s = state(&wd);
        assert_eq!(s["revision"], 1, "nothing deployed: {s}");
        assert_eq!(s["host_role_artifact_sha256"]["both-1"]["worker"], v1);
        wd.assert_plan_empty();
        let (_, log) = ssh(&host("both-1"), &format!("cat {d}/revisions.log"));
        assert_eq!(log.lines().count(), 1, "{log}");

        // Mixing the forms, or a role without its archive, is refused at plan.
        wd.set_config(&per_role(&fleet, "v2", STRATEGY, true));
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 1, "{}", plan.text());
        assert!(
            plan.shows("artifact and api_artifact both given"),
            "{}",
            plan.text()
        );
        let no_worker = per_role(&fleet, "v2", STRATEGY, false);
        let start = no_worker.find("  worker_artifact = {").unwrap();
        let end = start + no_worker[start..].find('\n').unwrap() + 1;
        wd.set_config(&format!("{}{}", &no_worker[..start], &no_worker[end..]));
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 1, "{}", plan.text());
        assert!(plan.shows("worker_artifact is required"), "{}", plan.text());
        assert!(
            plan.shows("hosts both-1, worker-1 have the worker role"),
            "{}",
            plan.text()
        );

        // Switched to one archive per role with v2: each host gets the archives of its roles
        // only, each recorded per role.
        wd.set_config(&per_role(&fleet, "v2", STRATEGY, false));
        wd.apply_ok();
        let (a2, w2) = (sums["api-v2"].clone(), sums["worker-v2"].clone());
        for (name, want) in [
            ("api-1", vec!["api"]),
            ("worker-1", vec!["worker"]),
            ("both-1", vec!["api", "worker"]),
        ] {
            let h = host(name);
            assert_eq!(live_version(&h, &d), "v2", "{name}");
            assert_eq!(release_entries(&h, &d, "v2"), want, "{name}");
            for role in want {
                let sha = if role == "api" { &a2 } else { &w2 };
                assert_eq!(&recorded(&h, &d, "v2", role), sha, "{name} {role}");
            }
        }
        for name in ["worker-1", "both-1"] {
            let (code, out) = ssh(
                &host(name),
                &format!("{d}/current/worker/bin/artifortress status worker"),
            );
            assert_eq!(code, 0, "{name}: {out}");
            assert!(out.starts_with("running v2"), "{name}: {out}");
        }
        for (name, url) in fleet.apis() {
            assert_eq!(readiness(&url).as_deref(), Some("ready"), "{name}");
        }
        let s = state(&wd);
        assert_eq!(s["revision"], 2);
        assert_eq!(
            s["host_role_artifact_sha256"],
            serde_json::json!({
                "api-1": {"api": a2},
                "worker-1": {"worker": w2},
                "both-1": {"api": a2, "worker": w2},
            }),
            "{s}"
        );
        assert_eq!(
            s["host_artifact_sha256"],
            serde_json::json!({
                "api-1": set_digest(&[("api", &a2)]),
                "worker-1": set_digest(&[("worker", &w2)]),
                "both-1": set_digest(&[("api", &a2), ("worker", &w2)]),
            })
        );
        assert!(s["artifact"].is_null(), "{s}");
        let (_, log) = ssh(&host("both-1"), &format!("cat {d}/revisions.log"));
        assert!(
            log.lines()
                .last()
                .unwrap()
                .contains(&format!("api_sha256={a2} worker_sha256={w2}")),
            "{log}"
        );

        // A worker directory from another archive is drift of the worker's archive only.
        let record = format!("{d}/releases/v2/worker/.artifact-sha256");
        let other = sums["worker-v1"].clone();
        let (code, out) = ssh(
            &host("worker-1"),
            &format!("chmod u+w {record} && printf '%s\\n' {other} > {record}"),
        );
        assert_eq!(code, 0, "{out}");
        let plan = wd.plan_detailed();
        assert_eq!(plan.code, 2, "drift is a change:\n{}", plan.text());
        assert!(
            plan.shows(&format!("drifted: worker-1={other}")),
            "{}",
            plan.text()
        );
        assert!(!plan.shows("drifted: api-1"), "{}", plan.text());
        let restore = || {
            let (code, out) = ssh(
                &host("worker-1"),
                &format!("printf '%s\\n' {w2} > {record}"),
            );
            assert_eq!(code, 0, "{out}");
        };
        restore();
        wd.assert_plan_empty();
        // The live version holding other archives than configured: as with `artifact`, the
        // apply refuses to replace it under the same version, and worker-1 stays on v2.
        let (code, out) = ssh(
            &host("worker-1"),
            &format!("printf '%s\\n' {other} > {record}"),
        );
        assert_eq!(code, 0, "{out}");
        let run = wd.apply();
        assert_ne!(run.code, 0, "{}", run.text());
        assert!(run.shows("under a new version"), "{}", run.text());
        assert_eq!(live_version(&host("worker-1"), &d), "v2");
        // Put back by hand, the next apply finds every host as configured (revision 3) and
        // the plan after it is empty.
        restore();
        wd.apply_ok();
        assert_eq!(state(&wd)["revision"], 3);

        // A new source with the same checksums deploys nothing.
        let (dir, _) = artifacts();
        let copy = wd.file("api-copy.tar.gz");
        std::fs::copy(format!("{dir}/artifortress-api-v2.tar.gz"), &copy).unwrap();
        let moved = per_role(&fleet, "v2", STRATEGY, false).replace(
            &hcl(&format!("{dir}/artifortress-api-v2.tar.gz")),
            &hcl(&copy.display().to_string()),
        );
        wd.set_config(&moved);
        wd.apply_ok();
        assert_eq!(state(&wd)["revision"], 3, "nothing deployed");

        // Only the worker's archive changes: as with `artifact`, under a new version (v3 =
        // v2's API with v1's worker), deployed everywhere.
        let v3 = moved
            .replace("\"v2\"", "\"v3\"")
            .replace(
                &hcl(&format!("{dir}/artifortress-worker-v2.tar.gz")),
                &hcl(&format!("{dir}/artifortress-worker-v1.tar.gz")),
            )
            .replace(&hcl(&w2), &hcl(&sums["worker-v1"]));
        wd.set_config(&v3);
        wd.apply_ok();
        let s = state(&wd);
        assert_eq!(s["revision"], 4);
        assert_eq!(
            s["host_role_artifact_sha256"]["both-1"]["worker"],
            sums["worker-v1"]
        );
        assert_eq!(
            recorded(&host("worker-1"), &d, "v3", "worker"),
            sums["worker-v1"]
        );
        assert_eq!(recorded(&host("both-1"), &d, "v3", "api"), a2);

        let run = wd.run(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
        assert_eq!(run.code, 0, "{}", run.text());
    }
}
