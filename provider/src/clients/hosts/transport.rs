//! The [`Transport`] trait (somewhere commands run) and what every transport shares: running a
//! command that must succeed, atomic uploads, on-host sha256, bounded output buffers.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::error::{HostError, Output, Stdin, Timeouts, invalid};
use super::shell::{check_path, shell_quote};

/// At most this much stdout is kept per command (the rest is read and dropped).
pub(super) const STDOUT_LIMIT: usize = 8 << 20;
/// At most this much stderr is kept per command.
pub(super) const STDERR_LIMIT: usize = 64 << 10;
/// After a command exited, how long to wait for its output to close: a daemon started by a
/// restart command may keep the pipes open forever.
pub(super) const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Somewhere commands run: a host over SSH, or this machine.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// The host's name in errors and logs.
    fn host(&self) -> &str;

    /// The timeouts release operations use.
    fn timeouts(&self) -> Timeouts;

    /// Runs `command` with `/bin/sh` (SSH: the login user's shell, `sh`-compatible), feeding
    /// it `stdin`, and returns what it printed even when it was cut off (a timeout, a lost
    /// connection): for scripts that report their progress ([`super::Batch`]), where what
    /// already happened must be known after a failure. A non-zero exit is an `Ok` result;
    /// errors are for commands that could not run, lost connections and timeouts (after which
    /// the command is killed, best effort over SSH).
    async fn run_partial(
        &self,
        command: &str,
        stdin: Stdin<'_>,
        timeout: Duration,
    ) -> (Output, Result<(), HostError>);

    /// [`Transport::run_partial`] without the output of a command that was cut off.
    async fn run(
        &self,
        command: &str,
        stdin: Stdin<'_>,
        timeout: Duration,
    ) -> Result<Output, HostError> {
        let (out, r) = self.run_partial(command, stdin, timeout).await;
        r.map(|()| out)
    }

    /// How many commands this transport has started (each one an SSH channel with a shell on
    /// the host, or a local process): what a deployment's round trips are counted in.
    fn commands_started(&self) -> u64 {
        0
    }

    /// [`Transport::run`] with optional stdin bytes.
    async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, HostError> {
        self.run(command, stdin.map_or(Stdin::Null, Stdin::Bytes), timeout)
            .await
    }

    /// Streams local file `local` to `remote` (through a temporary file next to it, then a
    /// rename) with permissions `mode`. The parent directory must exist. Returns the size.
    async fn upload(&self, local: &Path, remote: &str, mode: u32) -> Result<u64, HostError> {
        check_path("remote path", remote)?;
        let size = tokio::fs::metadata(local)
            .await
            .map_err(|e| HostError::Io {
                host: self.host().to_string(),
                op: "upload",
                message: format!("{}: {e}", local.display()),
            })?
            .len();
        let cmd = atomic_write_command(remote, mode, size, None)?;
        run_ok(
            self,
            "upload",
            &cmd,
            Stdin::File(local),
            self.timeouts().transfer,
        )
        .await?;
        Ok(size)
    }

    /// The sha256 (lowercase hex) of a file on the host.
    async fn sha256(&self, remote: &str) -> Result<String, HostError> {
        check_path("remote path", remote)?;
        let out = run_ok(
            self,
            "sha256",
            &sha256_command(remote),
            Stdin::Null,
            self.timeouts().transfer,
        )
        .await?;
        parse_sha256_output(self.host(), &out)
    }

    /// Ends the session, if there is one.
    async fn close(&self) {}
}

/// Runs a command and turns a non-zero exit into [`HostError::Command`]; returns stdout.
pub(super) async fn run_ok<T: Transport + ?Sized>(
    t: &T,
    op: &'static str,
    command: &str,
    stdin: Stdin<'_>,
    timeout: Duration,
) -> Result<String, HostError> {
    let started = Instant::now();
    let out = t
        .run(command, stdin, timeout)
        .await
        .map_err(|e| e.in_op(op))?;
    tracing::debug!(
        host = t.host(),
        op,
        status = %out.status_text(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "host command"
    );
    if !out.success() {
        return Err(HostError::Command {
            host: t.host().to_string(),
            op,
            status: out.status_text(),
            stderr: out.stderr_text(),
        });
    }
    Ok(out.stdout_text())
}

/// `sh` that writes `size` bytes of its stdin to `path` via a temporary file next to it (mode
/// 0600 while written; it reads no further, so it can take its part of a [`super::Batch`]'s
/// stdin), checks that exactly `size` bytes arrived (a broken stream never replaces the
/// file), sets `mode` and renames it into place; optionally creates `parent` (0755) first.
pub(super) fn atomic_write_command(
    path: &str,
    mode: u32,
    size: u64,
    parent: Option<&str>,
) -> Result<String, HostError> {
    if mode > 0o7777 {
        return Err(invalid(
            "file mode",
            &format!("{mode:o}"),
            "must be at most 7777",
        ));
    }
    let mkdir = parent.map_or_else(String::new, |p| {
        format!("(umask 022 && mkdir -p -- {}) && ", shell_quote(p))
    });
    Ok(format!(
        "{mkdir}umask 077 && head -c {size} > {t} && n=$(wc -c < {t}) \
         && if [ \"$n\" -ne {size} ]; then echo \"received $n bytes of {size}\" >&2; false; fi \
         && chmod {mode:o} -- {t} && mv -f -- {t} {p} || {{ rc=$?; rm -f -- {t}; exit $rc; }}",
        t = shell_quote(&format!("{path}.tmp-{}", token())),
        p = shell_quote(path),
    ))
}

pub(super) fn sha256_command(path: &str) -> String {
    let p = shell_quote(path);
    format!(
        "if command -v sha256sum >/dev/null 2>&1; then sha256sum < {p}; \
         else shasum -a 256 < {p}; fi"
    )
}

/// sha256 of standard input, as `sha256sum` prints it, on hosts with either tool.
pub(super) const SHA256_STDIN: &str =
    "{ if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi; }";

pub(super) fn parse_sha256_output(host: &str, out: &str) -> Result<String, HostError> {
    let first = out.split_whitespace().next().unwrap_or_default();
    if first.len() == 64 && first.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(first.to_ascii_lowercase())
    } else {
        Err(HostError::UnexpectedOutput {
            host: host.to_string(),
            op: "sha256",
            output: out.trim().to_string(),
        })
    }
}

/// 16 random hex digits, for temporary names and lock tokens.
pub(super) fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Appends `data` to `buf` up to `limit` bytes in all.
pub(super) fn push_limited(buf: &mut Vec<u8>, data: &[u8], limit: usize) {
    let room = limit.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

pub(super) async fn read_limited<R: AsyncRead + Unpin>(mut r: R, buf: &mut Vec<u8>, limit: usize) {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => push_limited(buf, &chunk[..n], limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::hosts::LocalTransport;

    #[test]
    fn sha256_output() {
        let h = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(parse_sha256_output("h", &format!("{h}  -\n")).unwrap(), h);
        assert_eq!(
            parse_sha256_output("h", &h.to_ascii_uppercase()).unwrap(),
            h
        );
        assert!(parse_sha256_output("h", "sha256sum: x: No such file").is_err());
    }

    #[tokio::test]
    async fn a_short_stream_never_replaces_the_file() {
        let t = LocalTransport::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f").display().to_string();
        std::fs::write(&path, "old").unwrap();
        let cmd = atomic_write_command(&path, 0o600, 10, None).unwrap();
        let out = t
            .exec(&cmd, Some(b"abc"), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!out.success());
        assert_eq!(out.stderr_text(), "received 3 bytes of 10");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(atomic_write_command(&path, 0o10000, 1, None).is_err());
    }
}
