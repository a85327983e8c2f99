//! The deploy lock: a directory created complete and renamed into place, with owner, expiry
//! (host clock) and a token; acquire (taking over expired locks), renew, release.

use std::time::Duration;

use super::error::{HostError, Stdin};
use super::shell::{check_path, deploy_dir_arg, shell_quote};
use super::transport::{Transport, run_ok, token};

/// The lock directory inside a deploy directory.
pub const LOCK_DIR: &str = ".deploy-lock";
/// Rounds of the lock protocol before giving up on a lock that keeps changing hands.
const LOCK_ATTEMPTS: usize = 4;

/// The content of a lock's owner file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub owner: String,
    /// Epoch seconds, host clock.
    pub expires_at: u64,
    /// Random, per acquisition: releases and renewals only touch the lock holding it.
    pub token: String,
}

impl LockInfo {
    #[cfg(test)]
    fn render(&self) -> String {
        format!(
            "owner={}\nexpires={}\ntoken={}\n",
            self.owner, self.expires_at, self.token
        )
    }
}

/// Parses an owner file (`key=value` lines; unknown keys ignored).
pub fn parse_lock_file(text: &str) -> Result<LockInfo, String> {
    let (mut owner, mut expires, mut token) = (None, None, None);
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim() {
            "owner" => owner = Some(v.to_string()),
            "expires" => {
                expires = Some(
                    v.trim()
                        .parse::<u64>()
                        .map_err(|e| format!("expires {v:?}: {e}"))?,
                );
            }
            "token" => token = Some(v.trim().to_string()),
            _ => {}
        }
    }
    Ok(LockInfo {
        owner: owner.ok_or("no owner")?,
        expires_at: expires.ok_or("no expires")?,
        token: token.ok_or("no token")?,
    })
}

/// A deploy lock we hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployLock {
    pub deploy_dir: String,
    pub owner: String,
    pub token: String,
    /// Epoch seconds, host clock.
    pub expires_at: u64,
}

/// What [`release_lock`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockRelease {
    Released,
    /// No lock at all (removed by hand).
    AlreadyGone,
    /// Ours expired and another owner took it over; left alone.
    TakenOver(LockInfo),
}

/// One round of the lock protocol as a script ([`LockAttempt::script`], e.g. a part of a
/// [`super::Batch`]) and the reading of its output. [`acquire_lock`] runs rounds until the lock
/// is taken.
#[derive(Debug, Clone)]
pub struct LockAttempt {
    pub script: String,
    deploy_dir: String,
    owner: String,
    ttl_secs: u64,
    token: String,
}

/// What one round of the lock protocol found.
#[derive(Debug)]
pub enum Attempted {
    Acquired(DeployLock),
    /// Lost a race: another round may take it.
    Retry,
    /// Expired, ours, or unreadable and old: to be taken over (this is what its owner file
    /// read), then another round.
    TakeOver(String),
}

impl LockAttempt {
    pub fn new(deploy_dir: &str, owner: &str, ttl: Duration) -> Result<LockAttempt, HostError> {
        let d = deploy_dir_arg(deploy_dir)?;
        check_path("lock owner", owner)?;
        let ttl_secs = ttl.as_secs().max(1);
        let tok = token();
        let lock = format!("{d}/{LOCK_DIR}");
        let new = format!("{lock}.new.{tok}");
        let script = format!(
            "d={dq}; l={l}; n={n}\n\
             mkdir -p -- \"$d\" || exit 1\n\
             now=$(date +%s) || exit 1\n\
             rm -rf -- \"$n\"; mkdir -- \"$n\" || exit 1\n\
             printf 'owner=%s\\nexpires=%s\\ntoken=%s\\n' {owner} \"$((now + {ttl_secs}))\" {tok} \
             > \"$n/owner\" || {{ rm -rf -- \"$n\"; exit 1; }}\n\
             if err=$(mv -T -- \"$n\" \"$l\" 2>&1); then echo acquired; cat -- \"$l/owner\"; exit 0; fi\n\
             rm -rf -- \"$n\"\n\
             if [ ! -d \"$l\" ]; then printf '%s\\n' \"$err\" >&2; exit 1; fi\n\
             echo \"held $now $(stat -c %Y -- \"$l\" 2>/dev/null || echo 0)\"\n\
             cat -- \"$l/owner\" 2>/dev/null\n\
             exit 0",
            dq = shell_quote(&d),
            l = shell_quote(&lock),
            n = shell_quote(&new),
            owner = shell_quote(owner),
        );
        Ok(LockAttempt {
            script,
            deploy_dir: d,
            owner: owner.to_string(),
            ttl_secs,
            token: tok,
        })
    }

    /// Reads the script's stdout: acquired, or why not ([`HostError::LockHeld`]: a live lock of
    /// another owner).
    pub fn read(&self, host: &str, out: &str) -> Result<Attempted, HostError> {
        let (d, owner, ttl_secs) = (&self.deploy_dir, self.owner.as_str(), self.ttl_secs);
        let unexpected = || HostError::UnexpectedOutput {
            host: host.to_string(),
            op: "acquire deploy lock",
            output: out.to_string(),
        };
        let (head, rest) = out.split_once('\n').unwrap_or((out, ""));
        if head == "acquired" {
            let info = parse_lock_file(rest).map_err(|_| unexpected())?;
            if info.token != self.token {
                return Ok(Attempted::Retry);
            }
            tracing::info!(host, deploy_dir = %d, owner, expires_at = info.expires_at, "deploy lock acquired");
            return Ok(Attempted::Acquired(DeployLock {
                deploy_dir: d.clone(),
                owner: owner.to_string(),
                token: self.token.clone(),
                expires_at: info.expires_at,
            }));
        }
        let mut words = head.split_whitespace();
        let (Some("held"), Some(now), Some(mtime)) = (words.next(), words.next(), words.next())
        else {
            return Err(unexpected());
        };
        let now: u64 = now.parse().map_err(|_| unexpected())?;
        let mtime: u64 = mtime.parse().unwrap_or(0);
        match parse_lock_file(rest) {
            Ok(info) if info.expires_at > now && info.owner != owner => Err(HostError::LockHeld {
                host: host.to_string(),
                deploy_dir: d.clone(),
                holder: info.owner,
                expires_at: info.expires_at,
                remaining_secs: info.expires_at - now,
            }),
            Ok(info) => {
                tracing::info!(
                    host, deploy_dir = %d, holder = %info.owner, expires_at = info.expires_at,
                    "taking over a deploy lock (expired, or our own)"
                );
                Ok(Attempted::TakeOver(rest.to_string()))
            }
            // Not written by us (or damaged): judged by its age.
            Err(_) if mtime + ttl_secs > now => Err(HostError::LockHeld {
                host: host.to_string(),
                deploy_dir: d.clone(),
                holder: "(unreadable owner file)".to_string(),
                expires_at: mtime + ttl_secs,
                remaining_secs: mtime + ttl_secs - now,
            }),
            Err(_) => Ok(Attempted::TakeOver(rest.to_string())),
        }
    }
}

/// Takes the deploy lock of `deploy_dir` for `owner` until `ttl` from now (host clock),
/// creating the directory if needed. A lock held by `owner` itself, or expired, is taken over;
/// a live lock of another owner is [`HostError::LockHeld`].
///
/// The lock is a directory, created complete (owner file inside) under a temporary name and
/// renamed into place, so it never exists without its owner file; a takeover renames the old
/// lock away and checks that what it moved is what it judged expired.
pub async fn acquire_lock(
    t: &dyn Transport,
    deploy_dir: &str,
    owner: &str,
    ttl: Duration,
) -> Result<DeployLock, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_path("lock owner", owner)?;
    let timeout = t.timeouts().command;
    let lock = format!("{d}/{LOCK_DIR}");
    for _ in 0..LOCK_ATTEMPTS {
        let attempt = LockAttempt::new(&d, owner, ttl)?;
        let out = run_ok(
            t,
            "acquire deploy lock",
            &attempt.script,
            Stdin::Null,
            timeout,
        )
        .await?;
        match attempt.read(t.host(), &out)? {
            Attempted::Acquired(l) => return Ok(l),
            Attempted::Retry => continue,
            Attempted::TakeOver(rest) => take_over(t, &d, &lock, &rest, timeout).await?,
        }
    }
    Err(HostError::LockContention {
        host: t.host().to_string(),
        deploy_dir: d,
    })
}

/// Removes the lock at `lock` if its owner file still reads `expected`.
async fn take_over(
    t: &dyn Transport,
    d: &str,
    lock: &str,
    expected: &str,
    timeout: Duration,
) -> Result<(), HostError> {
    let stale = format!("{lock}.stale.{}", token());
    let cmd = format!(
        "l={l}; s={s}\n\
         if ! mv -T -- \"$l\" \"$s\" 2>/dev/null; then echo gone; exit 0; fi\n\
         cur=$(cat -- \"$s/owner\" 2>/dev/null; echo x)\n\
         want=$(cat; echo x)\n\
         if [ \"$cur\" = \"$want\" ]; then rm -rf -- \"$s\"; echo removed; exit 0; fi\n\
         if mv -T -- \"$s\" \"$l\" 2>/dev/null; then echo restored; else rm -rf -- \"$s\"; echo lost; fi",
        l = shell_quote(lock),
        s = shell_quote(&stale),
    );
    let out = run_ok(
        t,
        "take over deploy lock",
        &cmd,
        Stdin::Bytes(expected.as_bytes()),
        timeout,
    )
    .await?;
    match out.trim() {
        "gone" | "removed" | "restored" => Ok(()),
        "lost" => Err(HostError::LockContention {
            host: t.host().to_string(),
            deploy_dir: d.to_string(),
        }),
        other => Err(HostError::UnexpectedOutput {
            host: t.host().to_string(),
            op: "take over deploy lock",
            output: other.to_string(),
        }),
    }
}

/// Extends a lock we hold to `ttl` from now; [`HostError::LockLost`] if it is no longer ours.
pub async fn renew_lock(
    t: &dyn Transport,
    lock: &DeployLock,
    ttl: Duration,
) -> Result<DeployLock, HostError> {
    let d = deploy_dir_arg(&lock.deploy_dir)?;
    let ttl_secs = ttl.as_secs().max(1);
    let l = format!("{d}/{LOCK_DIR}");
    let cmd = format!(
        "l={l}\n\
         if ! grep -qxF -- {tokline} \"$l/owner\" 2>/dev/null; then echo lost; cat -- \"$l/owner\" 2>/dev/null; exit 0; fi\n\
         now=$(date +%s) || exit 1\n\
         exp=$((now + {ttl_secs}))\n\
         printf 'owner=%s\\nexpires=%s\\ntoken=%s\\n' {owner} \"$exp\" {tok} > \"$l/owner.tmp\" \
         && mv -f -- \"$l/owner.tmp\" \"$l/owner\" && echo \"renewed $exp\"",
        l = shell_quote(&l),
        tokline = shell_quote(&format!("token={}", lock.token)),
        owner = shell_quote(&lock.owner),
        tok = shell_quote(&lock.token),
    );
    let out = run_ok(
        t,
        "renew deploy lock",
        &cmd,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    let (head, rest) = out.split_once('\n').unwrap_or((out.as_str(), ""));
    if let Some(exp) = head.strip_prefix("renewed ")
        && let Ok(expires_at) = exp.trim().parse()
    {
        return Ok(DeployLock {
            expires_at,
            ..lock.clone()
        });
    }
    if head == "lost" {
        let info = parse_lock_file(rest).ok();
        return Err(HostError::LockLost {
            host: t.host().to_string(),
            deploy_dir: d,
            holder: info
                .as_ref()
                .map_or_else(|| "(nobody)".to_string(), |i| i.owner.clone()),
            expires_at: info.map_or(0, |i| i.expires_at),
        });
    }
    Err(HostError::UnexpectedOutput {
        host: t.host().to_string(),
        op: "renew deploy lock",
        output: out,
    })
}

/// The script that releases a lock we hold (only if it still carries our token): a part of a
/// [`super::Batch`]; [`read_release`] reads its output.
pub fn release_lock_command(lock: &DeployLock) -> Result<String, HostError> {
    let d = deploy_dir_arg(&lock.deploy_dir)?;
    let l = format!("{d}/{LOCK_DIR}");
    Ok(format!(
        "l={l}; s={s}\n\
         [ -d \"$l\" ] || {{ echo absent; exit 0; }}\n\
         if grep -qxF -- {tokline} \"$l/owner\" 2>/dev/null; then\n\
           mv -T -- \"$l\" \"$s\" && rm -rf -- \"$s\" && echo released\n\
         else echo other; cat -- \"$l/owner\" 2>/dev/null; fi",
        s = shell_quote(&format!("{l}.released.{}", token())),
        l = shell_quote(&l),
        tokline = shell_quote(&format!("token={}", lock.token)),
    ))
}

/// What [`release_lock_command`] printed.
pub fn read_release(host: &str, lock: &DeployLock, out: &str) -> Result<LockRelease, HostError> {
    let (head, rest) = out.split_once('\n').unwrap_or((out, ""));
    match head.trim() {
        "released" => {
            tracing::info!(host, deploy_dir = %lock.deploy_dir, "deploy lock released");
            Ok(LockRelease::Released)
        }
        "absent" => Ok(LockRelease::AlreadyGone),
        "other" => match parse_lock_file(rest) {
            Ok(info) => Ok(LockRelease::TakenOver(info)),
            Err(_) => Ok(LockRelease::AlreadyGone),
        },
        _ => Err(HostError::UnexpectedOutput {
            host: host.to_string(),
            op: "release deploy lock",
            output: out.to_string(),
        }),
    }
}

/// Releases a lock we hold (only if it still carries our token).
pub async fn release_lock(t: &dyn Transport, lock: &DeployLock) -> Result<LockRelease, HostError> {
    let cmd = release_lock_command(lock)?;
    let out = run_ok(
        t,
        "release deploy lock",
        &cmd,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    read_release(t.host(), lock, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_round_trip_and_errors() {
        let info = LockInfo {
            owner: "terraform@ci-7 run=42 a=b".to_string(),
            expires_at: 1_700_000_000,
            token: "00ff00ff00ff00ff".to_string(),
        };
        assert_eq!(parse_lock_file(&info.render()).unwrap(), info);
        assert_eq!(
            parse_lock_file("token=t\nextra=1\nowner=me\nexpires=5").unwrap(),
            LockInfo {
                owner: "me".to_string(),
                expires_at: 5,
                token: "t".to_string()
            }
        );
        assert!(parse_lock_file("").is_err());
        assert!(parse_lock_file("owner=a\ntoken=t\n").is_err());
        assert!(parse_lock_file("owner=a\nexpires=soon\ntoken=t\n").is_err());
    }
}
