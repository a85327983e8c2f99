//! `data "artifortress_readiness"` against servers that misbehave (issue 15, items 2 and 7):
//! one answers `200` and then streams bytes without end, one accepts the connection and never
//! answers. Both are small real TCP servers on 127.0.0.1 started by the test; the provider is
//! the one Terraform starts, and its peak memory is read from `/proc`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Workdir, shows, terraforms};
use crate::readiness::config;

/// The peak RSS the provider may reach while it reads an endless body.
const PEAK_RSS_LIMIT_KB: u64 = 64 << 10;
/// What the endless server sends on one connection before it gives up itself: far more than a
/// provider without a limit could hold under [`PEAK_RSS_LIMIT_KB`], so such a provider fails
/// this test instead of passing it, while the machine running it survives.
const ENDLESS_CAP: u64 = 512 << 20;

/// What the test server saw of one connection.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// From accept until the client closed its end.
    held: Duration,
    /// Body bytes written before the client went away.
    sent: u64,
    /// The client process: pid, and its VmHWM (kB): the highest read while it read the body and
    /// right after it closed the connection.
    client: Option<(u32, u64)>,
    /// The client's executable, and its parent's command line (executable first), read while
    /// the connection was open.
    client_exe: Option<PathBuf>,
    parent_cmdline: Vec<PathBuf>,
    /// Whether the server stopped at [`ENDLESS_CAP`] rather than the client stopping it.
    capped: bool,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Accepts connections for the rest of the test, each handled on its own thread by
    /// `handle`, which returns what it saw.
    fn start(handle: fn(TcpStream, SocketAddr) -> Seen) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let record = record.clone();
                std::thread::spawn(move || {
                    let s = handle(stream, addr);
                    record.lock().unwrap().push(s);
                });
            }
        });
        Server { addr, seen }
    }

    /// `200`, then `a` bytes without end (no length, `Connection: close`).
    fn endless() -> Server {
        Server::start(|mut s, server| {
            let accepted = Instant::now();
            let pid = peer_pid(&s, server);
            let mut seen = Seen {
                client_exe: pid.and_then(exe),
                parent_cmdline: pid.and_then(parent).map(cmdline).unwrap_or_default(),
                ..Seen::default()
            };
            read_request(&mut s);
            let header = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"status\":\"";
            if s.write_all(header.as_bytes()).is_err() {
                return seen;
            }
            let block = vec![b'a'; 64 << 10];
            // VmHWM only grows: sampled after every block while the client reads, and once more right
            // after it closed the connection. The last read alone raced the provider's exit
            // (Terraform stops it as soon as the read failed: /proc/<pid> gone, read as 0).
            let mut peak_kb = pid.and_then(vm_hwm_kb).unwrap_or(0);
            loop {
                if seen.sent >= ENDLESS_CAP {
                    seen.capped = true;
                    break;
                }
                match s.write(&block) {
                    Ok(n) if n > 0 => seen.sent += n as u64,
                    _ => break,
                }
                if let Some(k) = pid.and_then(vm_hwm_kb) {
                    peak_kb = peak_kb.max(k);
                }
            }
            seen.held = accepted.elapsed();
            if let Some(k) = pid.and_then(vm_hwm_kb) {
                peak_kb = peak_kb.max(k);
            }
            seen.client = pid.map(|p| (p, peak_kb));
            seen
        })
    }

    /// Reads the request, then never answers; records when the client gives up.
    fn silent() -> Server {
        Server::start(|mut s, _| {
            let accepted = Instant::now();
            read_request(&mut s);
            let mut buf = [0u8; 1024];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            Seen {
                held: accepted.elapsed(),
                ..Seen::default()
            }
        })
    }
}

fn read_request(s: &mut TcpStream) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
}

/// The process holding the client end of `s`: the socket's inode from `/proc/net/tcp`, then the
/// process with a descriptor on it.
fn peer_pid(s: &TcpStream, server: SocketAddr) -> Option<u32> {
    let peer = s.peer_addr().ok()?;
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want_local = format!(":{:04X}", peer.port());
    let want_remote = format!(":{:04X}", server.port());
    let inode = tcp.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[1].ends_with(&want_local) && f[2].ends_with(&want_remote))
            .then(|| f[9].to_string())
    })?;
    let target = format!("socket:[{inode}]");
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn exe(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The executable, then the arguments: `/proc/<pid>/exe` resolves an interpreted program (a
/// Terraform built as a library and run from a script) to its interpreter, so the script is
/// found among the arguments.
fn cmdline(pid: u32) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = exe(pid).into_iter().collect();
    if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        out.extend(
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| PathBuf::from(String::from_utf8_lossy(a).into_owned())),
        );
    }
    out
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The number N in "on the last of N probe(s)".
fn probes_in(text: &str) -> u64 {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let at = flat
        .find("on the last of ")
        .unwrap_or_else(|| panic!("no probe count in:\n{text}"));
    flat[at + "on the last of ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no probe count in:\n{text}"))
}

#[test]
fn an_endless_body_stops_at_the_limit_and_memory_stays_small() {
    let provider = canonical(Path::new(&crate::harness::required_env(
        "ARTIFORTRESS_PROVIDER_BIN",
    )));
    for tf in terraforms() {
        let server = Server::endless();
        let wd = Workdir::new(&tf, &config(&server.url(), r#"require_status = "ready""#));
        let started = Instant::now();
        let run = wd.apply();
        let took = started.elapsed();
        let text = run.text();
        let seen = server.seen();
        assert!(
            seen.len() >= 2,
            "live and ready were both requested: {seen:?}"
        );
        let terraform = canonical(&tf.bin);
        for s in &seen {
            let (pid, peak_kb) = s.client.expect("the client process was found in /proc");
            assert_eq!(
                s.client_exe.as_deref().map(canonical),
                Some(provider.clone()),
                "the client is the provider under test"
            );
            assert!(
                s.parent_cmdline
                    .iter()
                    .any(|a| std::fs::canonicalize(a).is_ok_and(|a| a == terraform)),
                "the provider was started by terraform {} ({}): its parent runs {:?}",
                tf.version,
                terraform.display(),
                s.parent_cmdline
            );
            assert!(peak_kb > 0, "VmHWM read while the provider ran: {s:?}");
            assert!(
                peak_kb < PEAK_RSS_LIMIT_KB,
                "terraform {}: the provider's peak RSS was {peak_kb} kB after {} body bytes were sent",
                tf.version,
                s.sent
            );
            assert!(!s.capped, "the provider read {} bytes and on", s.sent);
            assert!(
                s.held < Duration::from_secs(5),
                "the limit, not the probe timeout, ended the read: {s:?}"
            );
            eprintln!(
                "terraform {}: provider pid {pid} peak RSS {peak_kb} kB; {} bytes sent, connection held {:?}",
                tf.version, s.sent, s.held
            );
        }
        assert_ne!(run.code, 0, "terraform {}: {text}", tf.version);
        assert!(shows(&text, "Artifortress is not ready"), "{text}");
        assert!(
            shows(
                &text,
                &format!(
                    "{}/health/ready answered HTTP 200 with a body larger than 1 MiB, the limit for the service's JSON answers; reading stopped there",
                    server.url()
                )
            ),
            "{text}"
        );
        // Well inside the provider's 30 s request timeout (and the 5 s probe timeout): the
        // limit ended the read, not a clock.
        assert!(
            took < Duration::from_secs(30),
            "terraform {}: the apply took {took:?}",
            tf.version
        );
    }
}

#[test]
fn a_server_that_never_answers_is_unreachable_within_the_probe_timeout() {
    for tf in terraforms() {
        // Reporting only, default probe timeout (5 s).
        let server = Server::silent();
        let wd = Workdir::new(&tf, &config(&server.url(), ""));
        let started = Instant::now();
        wd.apply_ok();
        let took = started.elapsed();
        assert_eq!(
            wd.output("status"),
            "unreachable",
            "terraform {}",
            tf.version
        );
        assert_eq!(wd.output("live"), false);
        assert_eq!(wd.output("http_status"), 0);
        let seen = server.seen();
        // apply reads once, apply_ok's second plan once more: live and ready each time.
        assert!(seen.len() >= 4, "{seen:?}");
        for s in &seen {
            assert!(
                s.held >= Duration::from_millis(4500) && s.held < Duration::from_secs(7),
                "terraform {}: each request is given up after the 5 s probe timeout: {s:?}",
                tf.version
            );
        }
        eprintln!(
            "terraform {}: default probe timeout: connections held {:?}; apply + plan took {took:?}",
            tf.version,
            seen.iter().map(|s| s.held).collect::<Vec<_>>()
        );
        // Two reads of about 5 s each, not 2 × 61 s.
        assert!(
            took < Duration::from_secs(40),
            "terraform {}: apply and plan took {took:?}",
            tf.version
        );

        // A gate without waiting: fails at once with the reason.
        let server = Server::silent();
        let wd = Workdir::new(
            &tf,
            &config(
                &server.url(),
                r#"require_status = "ready"
  probe_timeout  = "3s""#,
            ),
        );
        let run = wd.apply();
        let text = run.text();
        assert_ne!(run.code, 0, "terraform {}: {text}", tf.version);
        assert!(shows(&text, "Artifortress is not ready"), "{text}");
        assert!(shows(&text, "status \"unreachable\" (HTTP 0)"), "{text}");
        assert!(
            shows(
                &text,
                &format!("{}/health/ready did not answer within 3s", server.url())
            ),
            "{text}"
        );
        assert_eq!(probes_in(&text), 1, "{text}");
        eprintln!(
            "terraform {}: probe_timeout 3s, no wait: connections held {:?}",
            tf.version,
            server.seen().iter().map(|s| s.held).collect::<Vec<_>>()
        );
        for s in server.seen() {
            assert!(
                s.held >= Duration::from_millis(2500) && s.held < Duration::from_secs(5),
                "terraform {}: given up after the 3 s probe timeout: {s:?}",
                tf.version
            );
        }
    }
}

#[test]
fn with_wait_timeout_a_server_that_never_answers_is_probed_until_it_runs_out() {
    for tf in terraforms() {
        let server = Server::silent();
        let wd = Workdir::new(
            &tf,
            &config(
                &server.url(),
                r#"require_status = "ready"
  probe_timeout  = "3s"
  wait_timeout   = "10s"
  poll_interval  = "500ms""#,
            ),
        );
        let started = Instant::now();
        let run = wd.apply();
        let took = started.elapsed();
        let text = run.text();
        assert_ne!(run.code, 0, "terraform {}: {text}", tf.version);
        assert!(
            shows(&text, "Artifortress did not become ready within 10s"),
            "{text}"
        );
        assert!(shows(&text, "did not answer within"), "{text}");
        // 3 s probes 0.5 s apart in 10 s: the third ends at about 10 s.
        let probes = probes_in(&text);
        assert!(
            (3..=4).contains(&probes),
            "terraform {}: {probes} probes in 10 s: {text}",
            tf.version
        );
        let seen = server.seen();
        assert_eq!(
            seen.len() as u64,
            2 * probes,
            "live and ready per probe: {seen:?}"
        );
        for s in &seen {
            assert!(
                s.held < Duration::from_millis(3500),
                "no request outlives the probe timeout: {s:?}"
            );
        }
        eprintln!(
            "terraform {}: wait_timeout 10s: {probes} probes, {} connections, apply took {took:?}",
            tf.version,
            seen.len()
        );
        assert!(
            took >= Duration::from_secs(10),
            "terraform {}: the wait ended after {took:?}, before wait_timeout",
            tf.version
        );
        assert!(
            took < Duration::from_secs(25),
            "terraform {}: wait_timeout bounds the wait, it took {took:?}",
            tf.version
        );
    }
}
