//! Child processes whose output the provider reads (`pg_dump`, `pg_restore`, `psql`): every
//! stream is read to its end but only its first bytes are kept, so a tool that prints without
//! end neither fills memory nor blocks on a full pipe. Commands on deploy hosts have their own
//! caps in [`super::hosts`].

use std::process::ExitStatus;

use tokio::io::{AsyncRead, AsyncReadExt};

/// What is kept of a tool's stderr: enough for PostgreSQL's errors and their context lines.
pub const STDERR_LIMIT: usize = 16 << 10;
/// What is kept of a short answer on stdout (`--version`).
pub const STDOUT_LIMIT: usize = 64 << 10;

/// The first `limit` bytes of a stream, and how many bytes it had in all.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Capped {
    pub bytes: Vec<u8>,
    pub total: u64,
}

impl Capped {
    /// The kept bytes as text, trimmed; `… (N more bytes not kept)` when the stream was longer.
    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).trim().to_string();
        let dropped = self.total - self.bytes.len() as u64;
        if dropped > 0 {
            text.push_str(&format!("… ({dropped} more bytes not kept)"));
        }
        text
    }
}

/// Reads `r` to its end (or its first error), keeping the first `limit` bytes.
pub async fn read_capped<R: AsyncRead + Unpin>(mut r: R, limit: usize) -> Capped {
    let mut out = Capped::default();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                out.total += n as u64;
                let room = limit.saturating_sub(out.bytes.len());
                out.bytes.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// A finished child's status and its capped output.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Capped,
    pub stderr: Capped,
}

/// Spawns `cmd` with stdout and stderr piped (stdin is the caller's choice) and waits for it,
/// keeping at most `stdout_limit` / `stderr_limit` bytes of each. Dropping the future kills
/// the child when `cmd` has `kill_on_drop`.
pub async fn output(
    cmd: &mut tokio::process::Command,
    stdout_limit: usize,
    stderr_limit: usize,
) -> std::io::Result<Output> {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (stdout, stderr, status) = tokio::join!(
        read_capped(stdout, stdout_limit),
        read_capped(stderr, stderr_limit),
        child.wait()
    );
    Ok(Output {
        status: status?,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tool_printing_without_end_is_read_to_its_end_but_kept_short() {
        // 64 MiB on stderr and 1 MiB on stdout from a real process: both drained (the child
        // exits instead of blocking on a full pipe), only the caps kept.
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args([
            "-c",
            "head -c 1048576 /dev/zero; head -c 67108864 /dev/zero | tr '\\0' e >&2; echo done >&2; exit 3",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        let out = output(&mut cmd, STDOUT_LIMIT, STDERR_LIMIT).await.unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout.bytes.len(), STDOUT_LIMIT);
        assert_eq!(out.stdout.total, 1 << 20);
        assert_eq!(out.stderr.bytes.len(), STDERR_LIMIT);
        assert_eq!(out.stderr.total, (64 << 20) + 5);
        let text = out.stderr.text();
        assert!(
            text.ends_with(&format!(
                "… ({} more bytes not kept)",
                (64 << 20) + 5 - STDERR_LIMIT
            )),
            "{}",
            &text[text.len() - 60..]
        );
    }

    #[tokio::test]
    async fn short_output_is_kept_whole() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo ' pg_dump (PostgreSQL) 17.2 '; echo oops >&2"]);
        let out = output(&mut cmd, STDOUT_LIMIT, STDERR_LIMIT).await.unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.text(), "pg_dump (PostgreSQL) 17.2");
        assert_eq!(out.stderr.text(), "oops");
    }
}
