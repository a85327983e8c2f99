//! Several host operations in one command: one SSH channel and one shell on the host instead
//! of one each (a deployment's round trips). Each part runs in its own subshell, framed by
//! marker lines carrying a random token on stdout and stderr, so every part's exit status,
//! stdout and stderr come back separately, as if it had run alone; a part that reads no input
//! gets `/dev/null` on stdin. What ran is known even when the command is cut off (a timeout, a
//! lost connection): the parts that finished keep their results, the one that was running gets
//! the error, the rest did not run.

use std::time::{Duration, Instant};

use super::error::{HostError, Output, Stdin};
use super::transport::{Transport, token};

/// One part: a `sh` script (run in a subshell: `exit` ends the part) and the bytes it reads on
/// stdin, if any.
#[derive(Debug)]
struct Part<'a> {
    op: &'static str,
    script: String,
    input: Option<&'a [u8]>,
    timeout: Duration,
}

/// Parts to run in one command, in order.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    parts: Vec<Part<'a>>,
    stop_on_failure: bool,
}

/// What a batch did.
#[derive(Debug)]
pub struct Ran {
    host: String,
    ops: Vec<&'static str>,
    results: Vec<Option<Result<Output, HostError>>>,
}

impl<'a> Batch<'a> {
    /// A batch in which every part runs whatever the others did (except after a failed part
    /// that reads input: see [`Batch::push_with_input`]).
    pub fn new() -> Self {
        Batch::default()
    }

    /// A batch that stops at the first part that fails: the parts after it do not run.
    pub fn stopping_at_failure() -> Self {
        Batch {
            parts: Vec::new(),
            stop_on_failure: true,
        }
    }

    /// Adds a part; returns its index. `op` names it in errors and logs; `timeout` is its share
    /// of the command's time limit (the batch's limit is the sum).
    pub fn push(&mut self, op: &'static str, script: String, timeout: Duration) -> usize {
        self.parts.push(Part {
            op,
            script,
            input: None,
            timeout,
        });
        self.parts.len() - 1
    }

    /// Adds a part that reads exactly `input` on stdin (the batch's stdin is the parts' inputs
    /// one after the other, so the script must read all of it, and only it, when it succeeds).
    /// A part with input that fails stops the batch, whatever the batch's policy: what it left
    /// unread must not reach a later part.
    pub fn push_with_input(
        &mut self,
        op: &'static str,
        script: String,
        input: &'a [u8],
        timeout: Duration,
    ) -> usize {
        self.parts.push(Part {
            op,
            script,
            input: Some(input),
            timeout,
        });
        self.parts.len() - 1
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The one command that runs every part (`tok` frames the parts' output).
    fn script(&self, tok: &str) -> String {
        let mut s = format!(
            "__afb_t={tok}\n\
             __afb_m() {{ printf '\\n%s %s\\n' \"$__afb_t\" \"$1\"; printf '\\n%s %s\\n' \"$__afb_t\" \"$1\" >&2; }}\n"
        );
        for (i, p) in self.parts.iter().enumerate() {
            let stdin = if p.input.is_some() { "" } else { " </dev/null" };
            let stop = if self.stop_on_failure || p.input.is_some() {
                "[ \"$__afb_r\" -eq 0 ] || exit 0\n"
            } else {
                ""
            };
            s.push_str(&format!(
                "__afb_m '{i} begin'\n(\n{script}\n){stdin}\n__afb_r=$?\n__afb_m \"{i} end $__afb_r\"\n{stop}",
                script = p.script,
            ));
        }
        s
    }

    /// Runs the batch as one command on `t`. Never fails as a whole: each part has its result
    /// in [`Ran`] (nothing ran when the command could not start).
    pub async fn run(self, t: &dyn Transport) -> Ran {
        let tok = token();
        let script = self.script(&tok);
        let input: Vec<u8> = self
            .parts
            .iter()
            .filter_map(|p| p.input)
            .flatten()
            .copied()
            .collect();
        let timeout = self.parts.iter().map(|p| p.timeout).sum::<Duration>();
        let stdin = if self.parts.iter().any(|p| p.input.is_some()) {
            Stdin::Bytes(&input)
        } else {
            Stdin::Null
        };
        let started = Instant::now();
        let (out, r) = t.run_partial(&script, stdin, timeout).await;
        let ops: Vec<&'static str> = self.parts.iter().map(|p| p.op).collect();
        tracing::debug!(
            host = t.host(),
            ops = ?ops,
            status = %out.status_text(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "host command (batch)"
        );
        Ran {
            host: t.host().to_string(),
            results: split(&tok, &ops, &out, r),
            ops,
        }
    }
}

impl Ran {
    /// Part `i`'s result as `run_ok` gives it: its stdout when it exited 0;
    /// [`HostError::Command`] for a non-zero exit; the transport's error when the command was
    /// cut off while it ran. `None`: it did not run.
    pub fn ok(&self, i: usize) -> Option<Result<String, HostError>> {
        let r = self.results.get(i)?.as_ref()?;
        Some(match r {
            Ok(out) if out.success() => Ok(out.stdout_text()),
            Ok(out) => Err(HostError::Command {
                host: self.host.clone(),
                op: self.ops[i],
                status: out.status_text(),
                stderr: out.stderr_text(),
            }),
            Err(e) => Err(e.clone()),
        })
    }

    /// Part `i`'s output (whatever its exit status), or the transport's error when the command
    /// was cut off while it ran. `None`: it did not run.
    pub fn output(&self, i: usize) -> Option<Result<&Output, HostError>> {
        let r = self.results.get(i)?.as_ref()?;
        Some(r.as_ref().map_err(Clone::clone))
    }

    /// [`Ran::ok`] for a part that must have run (an error naming the part when it did not).
    pub fn required(&self, i: usize) -> Result<String, HostError> {
        self.ok(i).unwrap_or_else(|| {
            Err(HostError::UnexpectedOutput {
                host: self.host.clone(),
                op: self.ops.get(i).copied().unwrap_or("batch"),
                output: "the step did not run (an earlier step of the same command failed)".into(),
            })
        })
    }
}

/// The bytes of `part` framed by `tok` in `stream`: `(content, Some(status))` for a part that
/// ended, `(content so far, None)` for one that began and did not end, `None` for one that
/// never began.
fn framed<'s>(stream: &'s [u8], tok: &str, part: usize) -> Option<(&'s [u8], Option<i32>)> {
    let begin = format!("\n{tok} {part} begin\n");
    let start = find(stream, begin.as_bytes(), 0)? + begin.len();
    let end = format!("\n{tok} {part} end ");
    let Some(e) = find(stream, end.as_bytes(), start) else {
        return Some((&stream[start..], None));
    };
    let rest = &stream[e + end.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let status = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok();
    Some((&stream[start..e], status))
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn split(
    tok: &str,
    ops: &[&'static str],
    out: &Output,
    run: Result<(), HostError>,
) -> Vec<Option<Result<Output, HostError>>> {
    let mut error = run.err();
    let mut results = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let Some((stdout, status)) = framed(&out.stdout, tok, i) else {
            results.push(None);
            continue;
        };
        let stderr = framed(&out.stderr, tok, i)
            .map(|(e, _)| e.to_vec())
            .unwrap_or_default();
        let part = Output {
            status,
            signal: None,
            stdout: stdout.to_vec(),
            stderr,
        };
        results.push(Some(match (status, error.take()) {
            (Some(_), e) => {
                error = e;
                Ok(part)
            }
            // Running when the command was cut off: the transport's error is this part's.
            (None, Some(e)) => Err(e.in_op(op)),
            // The shell ended inside the part (it was killed, or the script ended it).
            (None, None) => Ok(Output {
                status: match (out.status, &out.signal) {
                    (Some(s), _) if s != 0 => Some(s),
                    (_, Some(_)) => None,
                    _ => Some(-1),
                },
                signal: out.signal.clone(),
                ..part
            }),
        }));
    }
    // The shell could not start, or failed before the first part (a lost connection, a
    // refused channel): the first part that did not run gets the error.
    if let Some(e) = error {
        match results.iter().position(Option::is_none) {
            Some(i) => results[i] = Some(Err(e.in_op(ops[i]))),
            None => {
                tracing::warn!(error = %e, "every part of a host command ended, then the command failed")
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::hosts::{LocalTransport, Timeouts};

    const T: Duration = Duration::from_secs(10);

    /// Each part's status, stdout and stderr come back as if it had run alone, in one command;
    /// a part's `exit` ends only that part; a part without input reads nothing.
    #[tokio::test]
    async fn parts_come_back_separately_from_one_command() {
        let t = LocalTransport::default();
        let mut b = Batch::new();
        let a = b.push("a", "printf 'one\\ntwo'; echo warn >&2".into(), T);
        let x = b.push("x", "cat; echo out; exit 3; echo never".into(), T);
        let c = b.push("c", "printf 'c\\n'".into(), T);
        let ran = b.run(&t).await;
        assert_eq!(t.commands_started(), 1);
        assert_eq!(ran.ok(a).unwrap().unwrap(), "one\ntwo");
        assert_eq!(ran.output(a).unwrap().unwrap().stderr_text(), "warn");
        let out = ran.output(x).unwrap().unwrap();
        assert_eq!((out.status, out.stdout_text().as_str()), (Some(3), "out\n"));
        match ran.ok(x).unwrap() {
            Err(HostError::Command { op, status, .. }) => {
                assert_eq!((op, status.as_str()), ("x", "exit status 3"))
            }
            other => panic!("{other:?}"),
        }
        // Not a stopping batch: the part after a failure still ran.
        assert_eq!(ran.ok(c).unwrap().unwrap(), "c\n");
    }

    /// Inputs are cut exactly; a stopping batch runs nothing after a failure, and a failed part
    /// with input stops any batch (what it left unread must not reach the next part).
    #[tokio::test]
    async fn inputs_and_stopping() {
        let t = LocalTransport::default();
        let mut b = Batch::stopping_at_failure();
        let one = b.push_with_input("one", "head -c 3".into(), b"abc", T);
        let two = b.push_with_input("two", "head -c 4; echo !".into(), b"defg", T);
        let fail = b.push("fail", "false".into(), T);
        let after = b.push("after", "echo ran".into(), T);
        let ran = b.run(&t).await;
        assert_eq!(ran.ok(one).unwrap().unwrap(), "abc");
        assert_eq!(ran.ok(two).unwrap().unwrap(), "defg!\n");
        assert!(ran.ok(fail).unwrap().is_err());
        assert!(ran.ok(after).is_none());
        assert!(ran.required(after).is_err());

        let mut b = Batch::new();
        let bad = b.push_with_input("bad", "exit 1".into(), b"secret", T);
        let next = b.push_with_input("next", "cat".into(), b"x", T);
        let ran = b.run(&t).await;
        assert!(ran.ok(bad).unwrap().is_err());
        assert!(
            ran.ok(next).is_none(),
            "a failed part with input stops the batch"
        );
    }

    /// Cut off by the time limit: the parts that ended keep their results, the running one
    /// gets the timeout, the rest did not run.
    #[tokio::test]
    async fn a_timeout_is_the_running_parts() {
        let t = LocalTransport::new(Timeouts::default());
        let mut b = Batch::new();
        let done = b.push("done", "echo done".into(), Duration::from_millis(500));
        let slow = b.push("slow", "sleep 30".into(), Duration::from_millis(500));
        let never = b.push("never", "echo never".into(), Duration::from_millis(500));
        let started = Instant::now();
        let ran = b.run(&t).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(ran.ok(done).unwrap().unwrap(), "done\n");
        match ran.ok(slow).unwrap() {
            Err(HostError::Timeout { op, .. }) => assert_eq!(op, "slow"),
            other => panic!("{other:?}"),
        }
        assert!(ran.ok(never).is_none());
    }

    /// A shell killed inside a part: that part failed, with the shell's status.
    #[tokio::test]
    async fn a_shell_ended_inside_a_part() {
        let t = LocalTransport::default();
        let mut b = Batch::new();
        let first = b.push("first", "echo a".into(), T);
        let killer = b.push("killer", "kill -9 $$; sleep 5".into(), T);
        let ran = b.run(&t).await;
        assert_eq!(ran.ok(first).unwrap().unwrap(), "a\n");
        assert!(ran.ok(killer).unwrap().is_err());
    }
}
