//! Release engine benchmark (`provider/src/clients/release.rs`), two measurements in one run:
//!
//! - **Rollout scaling**: `Deployment::deploy` of the test bed's release `v2` to the dev
//!   environment's 10 SSH deploy hosts with `max_parallel = 10`, against the same deploy to 1
//!   host (host-1), in the same run, interleaved (which goes first alternates). Before every
//!   timed deploy an untimed deploy of `v1` to the same hosts puts them back on `v1`, so every
//!   timed deploy really writes the env file, switches `current`, restarts the API and waits
//!   for its readiness on every host: the outcome must have succeeded, name every host as
//!   changed and report `v2` live everywhere, and afterwards the release's control script must
//!   report `running v2` on every host with a pid other than before (a broken run must not
//!   look fast). One untimed warm-up round (v1 then v2 to all 10 hosts) first: it uploads both
//!   artifacts, so no timed deploy uploads anything. Goal: median(10 hosts) / median(1 host)
//!   ≤ 1.5×. For information, each round also times one no-op command (`true`) on the 10
//!   hosts at once and on 1 host over the same SSH sessions: what every host command costs on
//!   these hosts (the channel and the login shell's start-up), whatever the engine does; a
//!   deploy runs about a dozen commands per host.
//! - **Readiness detection lag**: a test bed API of its own on 127.0.0.1 (free port, run-time
//!   faults enabled). Per sample: `PUT /testbed/faults {"readyAfterSeconds": 2}` (the test bed
//!   counts from the PUT), then `release::wait_api_ready(api, 1, DEFAULT_POLL_INTERVAL, 30 s)`;
//!   lag = (when it returned) − (when the PUT returned + 2 s). Sample i (of n) starts waiting
//!   (i − 1)/n of a poll interval after the PUT (sample 1 at once): started at once every
//!   time, the probes would meet the switch to ready at the same phase of their schedule in
//!   every sample, and the max would say nothing about the worst case. The PUT's own round
//!   trip (a millisecond or so, printed) is how much the lag may be understated. Goal: ≤ 250 ms
//!   (median and max are printed). The probes are counted from the test bed's own request log (one
//!   `request` line per request, with path and status): each sample must show at least one
//!   `not_ready` answer and exactly one `ready` one; the request rate is the count over the
//!   time spent waiting, and the steady probe rate comes from the spacing of the log's times.
//!
//! Not a timed assertion: it prints medians, the ratio and met/missed; it exits non-zero only
//! when something errors.
//!
//! Hosts: `scripts/dev-env up --hosts 10` (run it with `bench/release.sh`): sshd on
//! 127.0.0.(K+1), each in its own mount namespace with its own `/opt/artifortress`; the bench
//! deploys into `<deploy_dir>/bench-release`. Each host runs the release's API (role `api`) on
//! `http://<address>:<port>`, one free port for all, restarted with the release's control
//! script; its env file holds the dev environment's PostgreSQL, Garage and bootstrap token. At
//! the end the APIs on the hosts are stopped (`bin/artifortress stop api`) and the lag test
//! bed is killed.
//!
//! Environment: `RUNS` (default 3): timed rounds, each deploying once to 10 hosts and once to
//! 1 host. `LAG_SAMPLES` (default 10): readiness lag samples. The dev environment's exports
//! (`ARTIFORTRESS_TEST_HOSTS`, `ARTIFORTRESS_SSH_USER`, `ARTIFORTRESS_SSH_PRIVATE_KEY_FILE`,
//! `ARTIFORTRESS_SSH_KNOWN_HOSTS_FILE`, `ARTIFORTRESS_TEST_ARTIFACTS`,
//! `ARTIFORTRESS_DATABASE_URL`, `ARTIFORTRESS_S3_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `ARTIFORTRESS_S3_BUCKET`, `ARTIFORTRESS_BOOTSTRAP_TOKEN`,
//! `ARTIFORTRESS_TESTBED_API_BIN`) are required. `RUST_LOG` (`bench/release.sh` unsets it):
//! the engine's log on stderr, with times, to see where a deploy spends its time.

// Shared helpers; this bench does not use all of them.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acceptance_tests::support::api::{TestbedApi, api_env};
use artifortress_provider::clients::api::ApiClient;
use artifortress_provider::clients::hosts::{
    self, PrivateKeyText, SshConfig, SshTransport, Transport,
};
use artifortress_provider::clients::release::{
    self, Archive, Artifacts, Commands, Deployment, Host, Outcome, Role, Strategy, Target,
};
use common::{Result, emit_row, env_u64, err, median, met, min_max};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

/// median(10 hosts) / median(1 host) must stay at or below this.
const GOAL_SCALING: f64 = 1.5;
/// At most this many SSH commands per host in a deploy (issue 19).
const GOAL_COMMANDS: u64 = 3;
/// Readiness detection lag goal, milliseconds.
const GOAL_LAG_MS: f64 = 250.0;
const HOSTS: usize = 10;
const SUBDIR: &str = "bench-release";
const READY_AFTER: Duration = Duration::from_secs(2);
const LAG_TIMEOUT: Duration = Duration::from_secs(30);
const CONSECUTIVE_READY: u32 = 3;

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to configure on the command line.
    if std::env::var_os("RUST_LOG").is_some() {
        // The engine's own log (host commands, readiness waits) with times since the start.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_ansi(false)
            .try_init();
    }
    if let Err(e) = run() {
        eprintln!("release bench: error: {e}");
        std::process::exit(1);
    }
}

fn need(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(err(format!(
            "{name} is not set: run inside the dev environment with deploy hosts \
             (bash bench/release.sh runs `scripts/dev-env up --hosts {HOSTS}` and sources \
             .dev/env.sh)"
        ))),
    }
}

/// `postgres://user:pass@host:port/db` → Npgsql's `Host=…;Port=…;Username=…;Password=…;Database=…`
/// (as `acceptance-tests/tests/acceptance/harness.rs` builds it).
fn npgsql(database_url: &str) -> Result<String> {
    let u = url::Url::parse(database_url)
        .map_err(|e| err(format!("ARTIFORTRESS_DATABASE_URL is not a URL: {e}")))?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Ok(format!(
        "Host={};Port={};Username={};Password={};Database={}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(5432),
        decode(u.username()),
        decode(u.password().unwrap_or("")),
        u.path().trim_start_matches('/'),
    ))
}

/// The test bed API's settings from the dev environment (Npgsql connection string, object
/// storage, bootstrap token).
fn service_env() -> Result<Vec<(String, String)>> {
    Ok(api_env(
        &npgsql(&need("ARTIFORTRESS_DATABASE_URL")?)?,
        &need("ARTIFORTRESS_BOOTSTRAP_TOKEN")?,
        vec![
            (
                "ObjectStorage__Endpoint".into(),
                need("ARTIFORTRESS_S3_ENDPOINT")?,
            ),
            (
                "ObjectStorage__AccessKey".into(),
                need("AWS_ACCESS_KEY_ID")?,
            ),
            (
                "ObjectStorage__SecretKey".into(),
                need("AWS_SECRET_ACCESS_KEY")?,
            ),
            (
                "ObjectStorage__Bucket".into(),
                need("ARTIFORTRESS_S3_BUCKET")?,
            ),
        ],
    ))
}

/// A deploy host of `ARTIFORTRESS_TEST_HOSTS`.
struct HostSpec {
    name: String,
    address: String,
    port: u16,
    deploy_dir: String,
}

/// The first `HOSTS` hosts (host-1, host-2, …, by number).
fn host_specs() -> Result<Vec<HostSpec>> {
    let text = need("ARTIFORTRESS_TEST_HOSTS")?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| err(format!("ARTIFORTRESS_TEST_HOSTS is not JSON: {e}")))?;
    let map = v
        .as_object()
        .ok_or_else(|| err("ARTIFORTRESS_TEST_HOSTS is not a JSON object"))?;
    let mut specs = Vec::new();
    for (name, h) in map {
        let field = |k: &str| {
            h.get(k)
                .ok_or_else(|| err(format!("ARTIFORTRESS_TEST_HOSTS: {name} has no {k}")))
        };
        specs.push(HostSpec {
            name: name.clone(),
            address: field("address")?
                .as_str()
                .ok_or_else(|| err(format!("{name}: address is not a string")))?
                .to_string(),
            port: field("port")?
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| err(format!("{name}: port is not a port")))?,
            deploy_dir: field("deploy_dir")?
                .as_str()
                .ok_or_else(|| err(format!("{name}: deploy_dir is not a string")))?
                .to_string(),
        });
    }
    let number = |s: &HostSpec| {
        s.name
            .strip_prefix("host-")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    };
    specs.sort_by(|a, b| number(a).cmp(&number(b)).then_with(|| a.name.cmp(&b.name)));
    if specs.len() < HOSTS {
        return Err(err(format!(
            "ARTIFORTRESS_TEST_HOSTS has {} hosts, the bench needs {HOSTS}: \
             scripts/dev-env up --hosts {HOSTS}",
            specs.len()
        )));
    }
    specs.truncate(HOSTS);
    let dirs: Vec<&str> = specs.iter().map(|s| s.deploy_dir.as_str()).collect();
    if dirs.iter().any(|d| *d != dirs[0]) {
        return Err(err("the deploy hosts have different deploy_dirs"));
    }
    Ok(specs)
}

/// A TCP port free on every one of `addresses` (the hosts share this network namespace).
fn free_port_on(addresses: &[&str]) -> Result<u16> {
    for _ in 0..100 {
        let port = acceptance_tests::support::free_port()?;
        if addresses
            .iter()
            .all(|a| std::net::TcpListener::bind((*a, port)).is_ok())
        {
            return Ok(port);
        }
    }
    Err(err("no TCP port free on every deploy host's address"))
}

/// `<dir>/artifortress-<version>.tar.gz` with its sha256 from `<dir>/SHA256SUMS`, checked.
async fn artifact(
    http: &reqwest::Client,
    dir: &Path,
    version: &str,
    env: &BTreeMap<Role, BTreeMap<String, String>>,
) -> Result<(Target, u64)> {
    let file = format!("artifortress-{version}.tar.gz");
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS"))?;
    let sha = sums
        .lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .find(|(_, f)| f.trim().trim_start_matches('*') == file)
        .map(|(s, _)| s.to_string())
        .ok_or_else(|| {
            err(format!(
                "{}: no line for {file}",
                dir.join("SHA256SUMS").display()
            ))
        })?;
    let path = dir.join(&file);
    let local = release::fetch_artifact(http, &path.to_string_lossy(), &sha)
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok((
        Target {
            version: version.to_string(),
            artifacts: Artifacts::Single(Archive {
                path: PathBuf::from(&path),
                sha256: sha,
            }),
            env: env.clone(),
            env_key: None,
            unsafe_rollback: Default::default(),
        },
        local.size,
    ))
}

/// What the release's control script says about a host's API: `(version, pid)` when running.
async fn api_status(deploy_dir: &str, host: &Host) -> Result<Option<(String, u32)>> {
    let cmd = format!(
        "{}/current/bin/artifortress status api",
        hosts::shell_quote(deploy_dir)
    );
    let t = &host.transport;
    let out = t.exec(&cmd, None, t.timeouts().command).await?;
    let text = out.stdout_text();
    match out.status {
        Some(0) => {
            // "running <version> pid <N>"
            let w: Vec<&str> = text.split_whitespace().collect();
            match w.as_slice() {
                ["running", v, "pid", pid] => Ok(Some((
                    v.to_string(),
                    pid.parse()
                        .map_err(|_| err(format!("{}: status said {text:?}", host.name)))?,
                ))),
                _ => Err(err(format!("{}: status said {text:?}", host.name))),
            }
        }
        Some(3) => Ok(None),
        _ => Err(err(format!(
            "{}: `{cmd}` failed ({}): {}",
            host.name,
            out.status_text(),
            out.stderr_text()
        ))),
    }
}

async fn statuses(d: &Deployment) -> Result<Vec<Option<(String, u32)>>> {
    join_all(d.hosts.iter().map(|h| api_status(&d.deploy_dir, h)))
        .await
        .into_iter()
        .collect()
}

/// The outcome must have succeeded and have `target` live on every host; with `all_changed`
/// every host must have been changed.
fn check_outcome(d: &Deployment, target: &Target, out: &Outcome, all_changed: bool) -> Result<()> {
    let what = format!("deploy of {} to {} host(s)", target.version, d.hosts.len());
    if !out.succeeded() {
        return Err(err(format!(
            "{what} failed: {:?}; rollback failures: {:?}",
            out.failures, out.rollback_failures
        )));
    }
    if all_changed && out.changed_hosts.len() != d.hosts.len() {
        return Err(err(format!(
            "{what} changed {} host(s) ({:?}), not all {}",
            out.changed_hosts.len(),
            out.changed_hosts,
            d.hosts.len()
        )));
    }
    for h in &d.hosts {
        let live = out.hosts.get(&h.name).and_then(|s| s.version.as_deref());
        if live != Some(target.version.as_str()) {
            return Err(err(format!("{what}: {} has {live:?} live", h.name)));
        }
    }
    Ok(())
}

/// How many commands each host's transport has started so far.
fn commands(d: &Deployment) -> Vec<u64> {
    d.hosts
        .iter()
        .map(|h| h.transport.commands_started())
        .collect()
}

/// The most commands any host of `d` ran since `before` ([`commands`]).
fn commands_since(d: &Deployment, before: &[u64]) -> u64 {
    commands(d)
        .iter()
        .zip(before)
        .map(|(a, b)| a - b)
        .max()
        .unwrap_or(0)
}

/// CPU ticks (user + system, with reaped children's) of every process now, by pid, with its
/// name; and the machine's busy and total ticks (`/proc/stat`).
struct CpuSnapshot {
    procs: BTreeMap<u32, (String, u64)>,
    busy: u64,
    total: u64,
}

fn cpu_snapshot() -> CpuSnapshot {
    let mut procs = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ... utime(14) stime(15): the process's own time (a
            // parent's cutime would also hold the whole life of a child reaped in the window)
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            // Kernel workers carry their current work queue in the name: one name for all.
            let comm = stat[open + 1..close]
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            let ticks: u64 = fields
                .get(11..13)
                .map(|f| f.iter().filter_map(|x| x.parse::<u64>().ok()).sum())
                .unwrap_or(0);
            procs.insert(pid, (comm, ticks));
        }
    }
    let (busy, total) = common::machine_ticks();
    CpuSnapshot { procs, busy, total }
}

/// What ran between two snapshots: the machine's busy share, and CPU seconds by process name
/// (processes alive at both ends: their growth; started since and still running: all of
/// theirs; those that ended in between are not seen, so the names are a lower bound of the
/// busy time). Enough to say which processes the time went to.
struct CpuUse {
    busy_share: f64,
    by_name: Vec<(String, f64)>,
}

fn cpu_use(before: &CpuSnapshot, after: &CpuSnapshot) -> CpuUse {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for (pid, (comm, t)) in &after.procs {
        let was = before.procs.get(pid).map_or(0, |(_, t)| *t);
        *by.entry(comm.clone()).or_default() += t.saturating_sub(was);
    }
    let mut by_name: Vec<(String, f64)> = by
        .into_iter()
        .filter(|(_, t)| *t > 0)
        .map(|(c, t)| (c, t as f64 / hz))
        .collect();
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total = after.total.saturating_sub(before.total).max(1);
    CpuUse {
        busy_share: after.busy.saturating_sub(before.busy) as f64 / total as f64,
        by_name,
    }
}

/// Deploys untimed (setup between timed runs); returns the time and the most SSH commands a
/// host ran.
async fn deploy_untimed(d: &Deployment, target: &Target) -> Result<(f64, u64)> {
    let before = commands(d);
    let started = Instant::now();
    let out = d.deploy(target, None, false).await;
    let secs = started.elapsed().as_secs_f64();
    check_outcome(d, target, &out, false)?;
    Ok((secs, commands_since(d, &before)))
}

/// One timed deploy of `target` (the hosts must have another release live): every host must
/// be changed, and afterwards run `target` in a new process.
async fn deploy_timed(d: &Deployment, target: &Target) -> Result<(f64, u64)> {
    let before = statuses(d).await?;
    let count = commands(d);
    let started = Instant::now();
    let out = d.deploy(target, None, false).await;
    let secs = started.elapsed().as_secs_f64();
    let count = commands_since(d, &count);
    check_outcome(d, target, &out, true)?;
    let after = statuses(d).await?;
    for ((h, b), a) in d.hosts.iter().zip(&before).zip(&after) {
        match a {
            Some((v, pid))
                if *v == target.version && b.as_ref().is_none_or(|(_, old)| old != pid) => {}
            _ => {
                return Err(err(format!(
                    "{}: after the deploy of {} the API is {a:?} (before: {b:?}); it was not \
                     restarted on {}",
                    h.name, target.version, target.version
                )));
            }
        }
    }
    Ok((secs, count))
}

/// Stops the API on every host (`{{release_dir}}/bin/artifortress stop api` of the live
/// release).
async fn stop_apis(d: &Deployment, stop: &str) -> Result<()> {
    let results = join_all(d.hosts.iter().map(|h| async move {
        let t = &h.transport;
        let Some(version) = hosts::current(&**t, &d.deploy_dir).await? else {
            return Ok(());
        };
        let release_dir = format!("{}/{}/{version}", d.deploy_dir, hosts::RELEASES_DIR);
        let cmd = release::render(stop, &[("release_dir", &release_dir)]);
        let out = t.exec(&cmd, None, t.timeouts().command).await?;
        if !out.success() {
            return Err(err(format!(
                "{}: `{cmd}` failed ({}): {}",
                h.name,
                out.status_text(),
                out.stderr_text()
            )));
        }
        Ok(())
    }))
    .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(())
}

/// One no-op command (`true`) on every host of `d` at once, over the same SSH sessions: what
/// any host command costs on these hosts (channel, the login shell's start-up), whatever the
/// engine does.
async fn noop(d: &Deployment) -> Result<f64> {
    let started = Instant::now();
    let results = join_all(d.hosts.iter().map(|h| {
        h.transport
            .exec("true", None, h.transport.timeouts().command)
    }))
    .await;
    let secs = started.elapsed().as_secs_f64();
    for (h, r) in d.hosts.iter().zip(results) {
        let out = r?;
        if !out.success() {
            return Err(err(format!(
                "{}: `true` failed ({})",
                h.name,
                out.status_text()
            )));
        }
    }
    Ok(secs)
}

/// No-op commands per round and size, alternating 10 hosts / 1 host.
const NOOPS: usize = 3;

struct Rollout {
    /// Where the CPU went during each timed deploy (10 hosts, 1 host).
    cpu_ten: Vec<CpuUse>,
    cpu_one: Vec<CpuUse>,
    /// The most SSH commands a host ran in one timed deploy (the release already staged).
    commands: u64,
    /// The same in the warm-up deploy of v2, which uploads it.
    upload_commands: u64,
    ten: Vec<f64>,
    one: Vec<f64>,
    noop_ten: Vec<f64>,
    noop_one: Vec<f64>,
}

async fn rollout(
    ten: &Deployment,
    one: &Deployment,
    v1: &Target,
    v2: &Target,
    runs: usize,
) -> Result<Rollout> {
    let (w1, _) = deploy_untimed(ten, v1).await?;
    let (w2, upload_commands) = deploy_untimed(ten, v2).await?;
    println!(
        "warm-up (untimed, uploads both artifacts): v1 to {HOSTS} hosts {w1:.2} s, v2 to \
         {HOSTS} hosts {w2:.2} s"
    );
    println!(
        "runs: {runs} timed rounds, each deploying v2 to {HOSTS} hosts and to 1 host (each after \
         an untimed deploy of v1 to the same hosts), which goes first alternates"
    );
    let mut r = Rollout {
        cpu_ten: Vec::new(),
        cpu_one: Vec::new(),
        commands: 0,
        upload_commands,
        ten: Vec::new(),
        one: Vec::new(),
        noop_ten: Vec::new(),
        noop_one: Vec::new(),
    };
    for i in 1..=runs {
        let order: [bool; 2] = if i % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        let (mut t10, mut t1) = (0.0, 0.0);
        for is_ten in order {
            let d = if is_ten { ten } else { one };
            deploy_untimed(d, v1).await?;
            let cpu_before = cpu_snapshot();
            let (secs, n) = deploy_timed(d, v2).await?;
            let used = cpu_use(&cpu_before, &cpu_snapshot());
            r.commands = r.commands.max(n);
            if is_ten {
                r.cpu_ten.push(used);
            } else {
                r.cpu_one.push(used);
            }
            if is_ten {
                t10 = secs;
            } else {
                t1 = secs;
            }
        }
        let (mut n10, mut n1) = (Vec::new(), Vec::new());
        for _ in 0..NOOPS {
            n10.push(noop(ten).await?);
            n1.push(noop(one).await?);
        }
        println!(
            "  round {i}: {HOSTS} hosts {t10:.2} s, 1 host {t1:.2} s (no-op command: {HOSTS} \
             hosts at once {:.0} ms, 1 host {:.0} ms)",
            median(&n10) * 1e3,
            median(&n1) * 1e3
        );
        r.ten.push(t10);
        r.one.push(t1);
        r.noop_ten.extend(n10);
        r.noop_one.extend(n1);
    }
    Ok(r)
}

/// One health probe in the test bed's request log.
struct Probe {
    /// When the test bed logged it (the request's end).
    at: Option<chrono::DateTime<chrono::FixedOffset>>,
    path: String,
    status: u16,
}

/// Health probes in the test bed's request log, one `request` line each (`<RFC 3339 time>
/// INFO …: request method=GET path="/health/ready" status=503 ms=…`).
fn health_requests(log: &str) -> Vec<Probe> {
    log.lines()
        .filter(|l| l.contains(" request ") || l.ends_with(" request"))
        .filter_map(|l| {
            let path = field(l, "path")?;
            if !path.starts_with("/health/") {
                return None;
            }
            Some(Probe {
                at: l
                    .split_whitespace()
                    .next()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()),
                status: field(l, "status")?.parse().ok()?,
                path,
            })
        })
        .collect()
}

/// `name=value` (value possibly `"quoted"`) out of a tracing line.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    let v = match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"')?],
        None => rest.split_whitespace().next()?,
    };
    Some(v.to_string())
}

struct LagSample {
    lag_ms: f64,
    /// Between consecutive `/health/ready` probes, by the test bed's log times.
    ready_gaps_ms: Vec<f64>,
    put_rtt_ms: f64,
    wait_secs: f64,
    requests: usize,
    not_ready: usize,
}

async fn lag_samples(
    tb: &TestbedApi,
    http: &reqwest::Client,
    samples: usize,
) -> Result<Vec<LagSample>> {
    let base = url::Url::parse(tb.url())?;
    let api = ApiClient::new(http.clone(), base, Duration::from_secs(10));
    let cancel = CancellationToken::new();
    release::wait_api_ready(
        &api,
        1,
        release::DEFAULT_POLL_INTERVAL,
        LAG_TIMEOUT,
        &cancel,
    )
    .await
    .map_err(|e| err(format!("the lag test bed never became ready: {e}")))?;
    let faults = format!("{}/testbed/faults", tb.url().trim_end_matches('/'));
    let body = serde_json::json!({ "readyAfterSeconds": READY_AFTER.as_secs() });
    let mut out = Vec::new();
    for i in 1..=samples {
        let seen = health_requests(&tb.log()).len();
        // Sample i starts waiting (i - 1) / samples of a poll interval after the PUT, so the
        // samples cover every phase of the probe schedule against the moment it turns ready
        // (started at once, the probes would meet it at the same phase every time).
        let offset = release::DEFAULT_POLL_INTERVAL.mul_f64((i - 1) as f64 / samples as f64);
        let sent = Instant::now();
        let resp = http.put(&faults).json(&body).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let put_returned = Instant::now();
        if !status.is_success() {
            return Err(err(format!("PUT {faults}: HTTP {status}: {text}")));
        }
        tokio::time::sleep_until((put_returned + offset).into()).await;
        let wait_started = Instant::now();
        release::wait_api_ready(
            &api,
            1,
            release::DEFAULT_POLL_INTERVAL,
            LAG_TIMEOUT,
            &cancel,
        )
        .await
        .map_err(|e| err(format!("sample {i}: {e}")))?;
        let returned = Instant::now();
        let ready_at = put_returned + READY_AFTER;
        let lag_ms = if returned >= ready_at {
            (returned - ready_at).as_secs_f64() * 1e3
        } else {
            -((ready_at - returned).as_secs_f64() * 1e3)
        };
        let probes: Vec<Probe> = health_requests(&tb.log()).into_iter().skip(seen).collect();
        let ready: Vec<&Probe> = probes
            .iter()
            .filter(|p| p.path == "/health/ready")
            .collect();
        let ready_gaps_ms: Vec<f64> = ready
            .windows(2)
            .filter_map(|w| Some((w[1].at? - w[0].at?).as_seconds_f64() * 1e3))
            .collect();
        let statuses: Vec<u16> = ready.iter().map(|p| p.status).collect();
        let not_ready = statuses.iter().filter(|s| **s == 503).count();
        // Exactly one `ready` answer (200) and it came last; before it, only `not_ready` (503).
        if not_ready == 0 || statuses.last() != Some(&200) || not_ready + 1 != statuses.len() {
            return Err(err(format!(
                "sample {i}: the readiness probes do not show the fault: /health/ready \
                 answered {statuses:?}"
            )));
        }
        if ready_gaps_ms.len() + 1 != ready.len() {
            return Err(err(format!(
                "sample {i}: the test bed's request log has no readable times"
            )));
        }
        out.push(LagSample {
            lag_ms,
            ready_gaps_ms,
            put_rtt_ms: (put_returned - sent).as_secs_f64() * 1e3,
            wait_secs: (returned - wait_started).as_secs_f64(),
            requests: probes.len(),
            not_ready,
        });
        println!(
            "  sample {i}: waiting from PUT + {:.0} ms: lag {lag_ms:.1} ms ({} requests: {} \
             /health/live, {not_ready} not_ready + 1 ready /health/ready)",
            offset.as_secs_f64() * 1e3,
            probes.len(),
            probes.len() - ready.len(),
        );
    }
    Ok(out)
}

fn run() -> Result<()> {
    let runs = env_u64("RUNS", 3)? as usize;
    let samples = env_u64("LAG_SAMPLES", 10)? as usize;
    let specs = host_specs()?;
    let key = std::fs::read_to_string(need("ARTIFORTRESS_SSH_PRIVATE_KEY_FILE")?)?;
    let known_hosts = std::fs::read_to_string(need("ARTIFORTRESS_SSH_KNOWN_HOSTS_FILE")?)?;
    let artifacts = PathBuf::from(need("ARTIFORTRESS_TEST_ARTIFACTS")?);
    let api_bin = PathBuf::from(need("ARTIFORTRESS_TESTBED_API_BIN")?);
    let env = service_env()?;
    let runtime = common::runtime()?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()?;

    let mut ssh = SshConfig::new(need("ARTIFORTRESS_SSH_USER")?);
    ssh.private_key = Some(PrivateKeyText::new(key));
    ssh.known_hosts = known_hosts;

    let addresses: Vec<&str> = specs.iter().map(|s| s.address.as_str()).collect();
    let api_port = free_port_on(&addresses)?;
    let deploy_dir = format!("{}/{SUBDIR}", specs[0].deploy_dir.trim_end_matches('/'));
    let target_env: BTreeMap<Role, BTreeMap<String, String>> = BTreeMap::from([(
        Role::Api,
        env.iter()
            .filter(|(k, _)| k != "ASPNETCORE_ENVIRONMENT")
            .cloned()
            .collect(),
    )]);
    let (v1, v2, size) = runtime.block_on(async {
        let (v1, size) = artifact(&http, &artifacts, "v1", &target_env).await?;
        let (v2, _) = artifact(&http, &artifacts, "v2", &target_env).await?;
        Ok::<_, common::BoxError>((v1, v2, size))
    })?;

    let transports = runtime.block_on(join_all(
        specs
            .iter()
            .map(|s| SshTransport::connect(&s.address, s.port, &ssh)),
    ));
    let mut all = Vec::new();
    for (s, t) in specs.iter().zip(transports) {
        let t: Arc<dyn Transport> = Arc::new(t?);
        let url = url::Url::parse(&format!("http://{}:{api_port}", s.address))?;
        all.push(Host {
            name: s.name.clone(),
            address: s.address.clone(),
            transport: t,
            roles: vec![Role::Api],
            api: Some(ApiClient::new(http.clone(), url, Duration::from_secs(10))),
        });
    }
    let stop_cmd = "{{release_dir}}/bin/artifortress stop api";
    let commands = Commands {
        restart: BTreeMap::from([(
            Role::Api,
            format!(
                "ASPNETCORE_URLS=http://{{{{address}}}}:{api_port} \
                 {{{{release_dir}}}}/bin/artifortress restart api"
            ),
        )]),
        stop: BTreeMap::from([(Role::Api, stop_cmd.to_string())]),
        worker_status: None,
    };
    let deployment = |hosts: Vec<Host>| Deployment {
        deploy_dir: deploy_dir.clone(),
        hosts,
        commands: commands.clone(),
        strategy: Strategy {
            max_parallel: HOSTS,
            consecutive_ready: CONSECUTIVE_READY,
            ..Strategy::default()
        },
        lock_owner: "release-bench@localhost".to_string(),
        cancel: CancellationToken::new(),
        worker_processes: 1,
        smoke_token: None,
    };
    let ten = deployment(all.clone());
    let one = deployment(all[..1].to_vec());

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "hosts: the dev environment's {HOSTS} SSH deploy hosts ({} .. {}; sshd, each in its own \
         mount namespace), deploy_dir {deploy_dir}, one SSH session per host (russh), all on \
         this machine's {cores} cores with PostgreSQL, Garage and the provider",
        specs[0].address,
        specs[HOSTS - 1].address
    );
    println!(
        "release: the test bed's v1 / v2 ({:.1} MiB each), role api on http://<address>:\
         {api_port}, restarted by the release's control script; readiness: /health/live, then \
         {CONSECUTIVE_READY} ready /health/ready in a row every {} ms; max_parallel {HOSTS}",
        size as f64 / common::MIB,
        release::DEFAULT_POLL_INTERVAL.as_millis()
    );

    let result = runtime.block_on(rollout(&ten, &one, &v1, &v2, runs));
    let stopped = runtime.block_on(stop_apis(&ten, stop_cmd));
    for t in &all {
        runtime.block_on(t.transport.close());
    }
    let r = result?;
    stopped?;
    println!("  the APIs on the hosts are stopped");

    // Readiness detection lag, on a test bed API of its own.
    let mut tb_env = env.clone();
    tb_env.push(("TESTBED_FAULTS_ENABLED".into(), "1".into()));
    tb_env.push(("RUST_LOG".into(), "info".into()));
    let tb = TestbedApi::start(&api_bin, &tb_env).map_err(|e| err(format!("{e:#}")))?;
    println!(
        "readiness lag: a test bed API on {} (run-time faults on); per sample PUT \
         /testbed/faults readyAfterSeconds={}, then wait_api_ready(consecutive 1, every {} ms)",
        tb.url(),
        READY_AFTER.as_secs(),
        release::DEFAULT_POLL_INTERVAL.as_millis()
    );
    let lag = runtime.block_on(lag_samples(&tb, &http, samples));
    drop(tb);
    let lag = lag?;

    // Results.
    println!(
        "rollout of v2 (env file, switch, restart, readiness on every host), median of {runs} runs"
    );
    let line = |label: &str, v: &[f64]| {
        let (lo, hi) = min_max(v);
        println!(
            "  {label:<44} {:>7.2} s (min {lo:.2}, max {hi:.2})",
            median(v)
        );
    };
    line(&format!("{HOSTS} hosts, max_parallel = {HOSTS}"), &r.ten);
    line("1 host", &r.one);
    let ratio = median(&r.ten) / median(&r.one);
    println!(
        "  ratio {HOSTS} hosts / 1 host: {ratio:.2}x  (goal <= {GOAL_SCALING}x: {})",
        met(ratio <= GOAL_SCALING)
    );
    emit_row(
        "release",
        &format!("{HOSTS} hosts / 1 host"),
        &format!(
            "{:.2} s (v2 to {HOSTS} hosts, max_parallel {HOSTS})",
            median(&r.ten)
        ),
        &format!("{:.2} s (the same deploy to 1 host)", median(&r.one)),
        &format!("{ratio:.2}x"),
        &format!("<= {GOAL_SCALING}x"),
        met(ratio <= GOAL_SCALING),
    )?;
    println!(
        "ssh commands per host per deploy: {} (the most any host ran in a timed deploy: \
         goal <= {GOAL_COMMANDS}: {}); {} in the warm-up deploy of v2 (which uploads it, unless an \
         earlier run left it staged on the hosts)",
        r.commands,
        met(r.commands <= GOAL_COMMANDS),
        r.upload_commands
    );
    emit_row(
        "release",
        "SSH commands per host per deploy",
        &format!(
            "{} (release staged); {} in the warm-up deploy of v2",
            r.commands, r.upload_commands
        ),
        "-",
        &r.commands.to_string(),
        &format!("<= {GOAL_COMMANDS}"),
        met(r.commands <= GOAL_COMMANDS),
    )?;
    for (label, uses, wall) in [
        (format!("{HOSTS} hosts"), &r.cpu_ten, median(&r.ten)),
        ("1 host".to_string(), &r.cpu_one, median(&r.one)),
    ] {
        let busy: Vec<f64> = uses.iter().map(|u| u.busy_share * 100.0).collect();
        let mut names: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for u in uses.iter() {
            for (n, secs) in &u.by_name {
                names.entry(n.clone()).or_default().push(*secs);
            }
        }
        let mut top: Vec<(String, f64)> = names
            .into_iter()
            .map(|(n, v)| (n, v.iter().sum::<f64>() / uses.len().max(1) as f64))
            .collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let cpu_total: f64 = top.iter().map(|(_, s)| s).sum();
        println!(
            "  where the CPU went, {label} (mean per timed deploy, /proc accounting): machine busy \
             {:.0} % of {cores} cores over {wall:.2} s; {cpu_total:.2} CPU-s: {}",
            median(&busy),
            top.iter()
                .take(6)
                .map(|(n, s)| format!("{n} {s:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (n10, n1) = (median(&r.noop_ten), median(&r.noop_one));
    println!(
        "  for information: one no-op command (`true`) over the same SSH sessions, median of \
         {}: {HOSTS} hosts at once {:.0} ms, 1 host {:.0} ms ({:.2}x): what every host command \
         costs here, whatever the engine does",
        r.noop_one.len(),
        n10 * 1e3,
        n1 * 1e3,
        n10 / n1
    );

    let lags: Vec<f64> = lag.iter().map(|s| s.lag_ms).collect();
    let (_, lag_max) = min_max(&lags);
    let lag_median = median(&lags);
    let requests: usize = lag.iter().map(|s| s.requests).sum();
    let waited: f64 = lag.iter().map(|s| s.wait_secs).sum();
    let put_rtt: Vec<f64> = lag.iter().map(|s| s.put_rtt_ms).collect();
    println!(
        "readiness detection lag (return of wait_api_ready - (PUT returned + {} s)), {} samples",
        READY_AFTER.as_secs(),
        lag.len()
    );
    println!(
        "  median {lag_median:.1} ms, max {lag_max:.1} ms  (goal <= {GOAL_LAG_MS} ms: {})",
        met(lag_median <= GOAL_LAG_MS && lag_max <= GOAL_LAG_MS)
    );
    emit_row(
        "release",
        "readiness detection lag",
        &format!(
            "median {lag_median:.1} ms, max {lag_max:.1} ms ({} samples, {} ms poll)",
            lag.len(),
            release::DEFAULT_POLL_INTERVAL.as_millis()
        ),
        "- (an absolute bound)",
        "-",
        &format!("<= {GOAL_LAG_MS} ms (median and max)"),
        met(lag_median <= GOAL_LAG_MS && lag_max <= GOAL_LAG_MS),
    )?;
    let gaps: Vec<f64> = lag.iter().flat_map(|s| s.ready_gaps_ms.clone()).collect();
    let (gap_lo, gap_hi) = min_max(&gaps);
    println!(
        "  requests (counted in the test bed's request log): {requests} in {waited:.1} s of \
         waiting = {:.2}/s ({:.1} per wait: 1 /health/live, then /health/ready at once and \
         every interval; not_ready answers per wait: median {:.0})",
        requests as f64 / waited,
        requests as f64 / lag.len() as f64,
        median(&lag.iter().map(|s| s.not_ready as f64).collect::<Vec<_>>()),
    );
    println!(
        "  /health/ready probe spacing (the test bed's log times): median {:.1} ms (min {gap_lo:.1}, \
         max {gap_hi:.1}) = {:.2} probes/s while waiting; the PUT's round trip (how much the \
         lag may be understated): median {:.2} ms",
        median(&gaps),
        1e3 / median(&gaps),
        median(&put_rtt)
    );
    println!(
        "note: the hosts, PostgreSQL, Garage and the provider share this machine: absolute times \
         are this machine's; the ratio and the lag are the result"
    );
    Ok(())
}
