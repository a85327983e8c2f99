//! [`LocalTransport`]: commands on this machine, each in its own process group.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::error::{HostError, Output, Stdin, Timeouts};
use super::transport::{DRAIN_GRACE, STDERR_LIMIT, STDOUT_LIMIT, Transport, read_limited};

/// Commands on this machine (`/bin/sh -c`), each in its own process group so that a timeout
/// kills everything it started.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    label: String,
    timeouts: Timeouts,
    /// Processes started ([`Transport::commands_started`]), shared by clones.
    started: Arc<AtomicU64>,
}

impl LocalTransport {
    pub fn new(timeouts: Timeouts) -> Self {
        LocalTransport {
            label: "localhost".to_string(),
            timeouts,
            started: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for LocalTransport {
    fn default() -> Self {
        LocalTransport::new(Timeouts::default())
    }
}

fn kill_process_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the process
    // group we created for this command (process_group(0) makes the child its leader).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

impl LocalTransport {
    /// Runs `command`, filling `out` as its output arrives: what was read before an error
    /// stays in `out`.
    async fn run_into(
        &self,
        command: &str,
        stdin: Stdin<'_>,
        timeout: Duration,
        out: &mut Output,
    ) -> Result<(), HostError> {
        let io_err = |message: String| HostError::Io {
            host: self.label.clone(),
            op: "exec",
            message,
        };
        let file = match stdin {
            Stdin::File(p) => Some(
                tokio::fs::File::open(p)
                    .await
                    .map_err(|e| io_err(format!("{}: {e}", p.display())))?,
            ),
            _ => None,
        };
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(match stdin {
                Stdin::Null => Stdio::null(),
                _ => Stdio::piped(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| io_err(format!("cannot start /bin/sh: {e}")))?;
        self.started.fetch_add(1, Ordering::Relaxed);
        let pid = child.id();
        let child_stdin = child.stdin.take();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(io_err("the child's output pipes are missing".to_string()));
        };

        let outcome = {
            let feed = async move {
                let Some(mut w) = child_stdin else {
                    return Ok(());
                };
                let res = match (stdin, file) {
                    (Stdin::Bytes(b), _) => w.write_all(b).await,
                    (Stdin::File(_), Some(mut f)) => {
                        tokio::io::copy(&mut f, &mut w).await.map(drop)
                    }
                    _ => Ok(()),
                };
                let shut = w.shutdown().await;
                res.and(shut)
            };
            let reading = async {
                tokio::join!(
                    read_limited(stdout, &mut out.stdout, STDOUT_LIMIT),
                    read_limited(stderr, &mut out.stderr, STDERR_LIMIT)
                )
            };
            let waiting = async { tokio::join!(feed, child.wait()) };
            let work = async {
                tokio::pin!(reading);
                tokio::pin!(waiting);
                let mut read_done = false;
                let (fed, status) = loop {
                    tokio::select! {
                        _ = &mut reading, if !read_done => read_done = true,
                        r = &mut waiting => break r,
                    }
                };
                if !read_done {
                    let _ = tokio::time::timeout(DRAIN_GRACE, &mut reading).await;
                }
                (fed, status)
            };
            tokio::time::timeout(timeout, work).await
        };
        match outcome {
            Err(_) => {
                if let Some(pid) = pid {
                    kill_process_group(pid);
                }
                let _ = child.kill().await;
                Err(HostError::Timeout {
                    host: self.label.clone(),
                    op: "exec",
                    after: timeout,
                })
            }
            Ok((fed, status)) => {
                let status = status.map_err(|e| io_err(format!("waiting for /bin/sh: {e}")))?;
                use std::os::unix::process::ExitStatusExt;
                out.status = status.code();
                out.signal = status.signal().map(|s| s.to_string());
                // A command may ignore bytes given on stdin; a file it was to receive whole.
                if out.success()
                    && matches!(stdin, Stdin::File(_))
                    && let Err(e) = fed
                {
                    return Err(io_err(format!("stdin was not fully delivered: {e}")));
                }
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.label
    }

    fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    fn commands_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    async fn run_partial(
        &self,
        command: &str,
        stdin: Stdin<'_>,
        timeout: Duration,
    ) -> (Output, Result<(), HostError>) {
        let mut out = Output::default();
        let r = self.run_into(command, stdin, timeout, &mut out).await;
        (out, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn local_exec_status_stdin_and_timeout() {
        let t = LocalTransport::default();
        let out = t
            .exec(
                "cat; echo err >&2; exit 3",
                Some(b"in"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.stderr_text(), "err");
        let started = Instant::now();
        let e = t
            .exec("sleep 30", None, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, HostError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // A background process holding the pipes does not hold us past the drain grace.
        let started = Instant::now();
        let out = t
            .exec("sleep 10 & echo started", None, Duration::from_secs(15))
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout_text().trim(), "started");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
