//! Files on a host: checksums, atomic writes, env files and the deployment's env-fingerprint
//! key, one-command inspection, stashes for rollback.

use std::collections::BTreeMap;
use std::fmt;

use sha2::Digest;

use super::error::{HostError, Stdin, invalid};
use super::release_dir::{ARTIFACT_SHA256_FILE, CURRENT_LINK, ROLE_DIRS};
use super::shell::{
    check_path, deploy_dir_arg, normalize_sha256, parent_dir, shell_quote, version_of_target,
};
use super::transport::{
    SHA256_STDIN, Transport, atomic_write_command, parse_sha256_output, run_ok, sha256_command,
};

/// The sha256 of a file on the host; `None` when it does not exist.
pub async fn file_sha256(t: &dyn Transport, path: &str) -> Result<Option<String>, HostError> {
    check_path("path", path)?;
    let cmd = format!(
        "if [ -f {p} ]; then {sha}; elif [ -e {p} ]; then echo {msg} >&2; exit 1; \
         else echo missing; fi",
        p = shell_quote(path),
        sha = sha256_command(path),
        msg = shell_quote(&format!("{path} is not a regular file")),
    );
    let out = run_ok(t, "sha256", &cmd, Stdin::Null, t.timeouts().transfer).await?;
    if out.trim() == "missing" {
        return Ok(None);
    }
    parse_sha256_output(t.host(), &out).map(Some)
}

/// Writes `content` to `path` with permissions `mode` through a temporary file and a rename
/// (readers see the old or the new file, never a partial one); the parent is created (0755).
/// The content travels on stdin and is never logged.
pub async fn write_file(
    t: &dyn Transport,
    path: &str,
    content: &[u8],
    mode: u32,
) -> Result<(), HostError> {
    let cmd = write_file_command(path, content.len() as u64, mode)?;
    run_ok(
        t,
        "write file",
        &cmd,
        Stdin::Bytes(content),
        t.timeouts().command,
    )
    .await?;
    Ok(())
}

/// The script [`write_file`] runs: it writes the `size` bytes it reads on stdin (a part of a
/// [`super::Batch`] with those bytes as its input).
pub fn write_file_command(path: &str, size: u64, mode: u32) -> Result<String, HostError> {
    check_path("path", path)?;
    let parent = parent_dir(path).ok_or_else(|| invalid("path", path, "must be absolute"))?;
    atomic_write_command(path, mode, size, Some(parent))
}

/// The env file for `env`: a header comment, then `KEY=value` lines in key order. Keys are
/// `[A-Za-z_][A-Za-z0-9_]*`; values are taken literally and may not contain line breaks or NUL.
/// Errors name the key, never the value.
pub fn env_file_content(env: &BTreeMap<String, String>) -> Result<String, HostError> {
    let mut s = String::from("# Managed by terraform-provider-artifortress; edits are reverted.\n");
    for (k, v) in env {
        let key_ok = k
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(invalid("env key", k, "must match [A-Za-z_][A-Za-z0-9_]*"));
        }
        if v.contains(['\0', '\n', '\r']) {
            return Err(invalid(
                "env value of",
                k,
                "contains a NUL or line break, which env files cannot hold",
            ));
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('\n');
    }
    Ok(s)
}

/// Where a deployment's env-fingerprint key lives, below the deploy dir.
pub const ENV_KEY_FILE: &str = "shared/env-fingerprint.key";

/// The deployment's env-fingerprint key: 32 random bytes, kept as 64 hex digits in
/// [`ENV_KEY_FILE`] (mode 0600) on every host of the deployment and nowhere else (never in
/// state, plan or logs). Fingerprints keyed with it let drift detection compare env files
/// without handing anyone who reads the state a plain sha256 to test guessed secrets against.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvKey(String);

impl EnvKey {
    pub fn generate() -> EnvKey {
        EnvKey(hex::encode(rand::random::<[u8; 32]>()))
    }

    /// The key from its file's content (64 hex digits, surrounding white space ignored).
    pub fn parse(text: &str) -> Option<EnvKey> {
        let t = text.trim();
        (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| EnvKey(t.to_ascii_lowercase()))
    }

    /// What the key file holds: the hex digits and a newline.
    pub fn file_content(&self) -> String {
        format!("{}\n", self.0)
    }
}

impl fmt::Debug for EnvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvKey(..)")
    }
}

/// Where the key file of `deploy_dir` lives.
pub fn env_key_path(deploy_dir: &str) -> String {
    format!("{}/{ENV_KEY_FILE}", deploy_dir.trim_end_matches('/'))
}

/// The keyed fingerprint of the env file [`write_env`] writes for `env`: the sha256 of the key
/// file's content followed by the env file's, which is what a host computes with
/// `cat <key file> <env file> | sha256sum` (see [`inspect`]). Without the key, which never
/// leaves the hosts, it confirms no guess.
pub fn env_fingerprint(key: &EnvKey, env: &BTreeMap<String, String>) -> Result<String, HostError> {
    let mut h = sha2::Sha256::new();
    h.update(key.file_content().as_bytes());
    h.update(env_file_content(env)?.as_bytes());
    Ok(hex::encode(h.finalize()))
}

/// The plain sha256 of the env file for `env`: what provider versions before the keyed
/// fingerprints kept in state. Only compared against such old states, never stored.
pub fn env_sha256(env: &BTreeMap<String, String>) -> Result<String, HostError> {
    Ok(hex::encode(sha2::Sha256::digest(
        env_file_content(env)?.as_bytes(),
    )))
}

/// Writes an env file, mode 0600, atomically.
pub async fn write_env(
    t: &dyn Transport,
    path: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), HostError> {
    let content = env_file_content(env)?;
    write_file(t, path, content.as_bytes(), 0o600)
        .await
        .map_err(|e| e.in_op("write env file"))?;
    tracing::info!(host = t.host(), path, keys = env.len(), "env file written");
    Ok(())
}

/// Writes the deployment's env-fingerprint key (mode 0600, atomically).
pub async fn write_env_key(
    t: &dyn Transport,
    deploy_dir: &str,
    key: &EnvKey,
) -> Result<(), HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    write_file(t, &env_key_path(&d), key.file_content().as_bytes(), 0o600)
        .await
        .map_err(|e| e.in_op("write env fingerprint key"))?;
    tracing::info!(host = t.host(), "env fingerprint key written");
    Ok(())
}

/// A file's checksums as a host computed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSums {
    /// sha256 of the file.
    pub sha256: String,
    /// sha256 of the deployment key file followed by the file ([`env_fingerprint`]); `None`
    /// when the host has no key file.
    pub keyed: Option<String>,
}

/// What a host has now: the release `current` names, the artifact that release came from,
/// the deployment's env-fingerprint key, and the checksums of each file asked about (`None`:
/// no such file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    pub version: Option<String>,
    pub artifact_sha256: Option<String>,
    /// Per role directory ([`ROLE_DIRS`]) of a release installed from one archive per role,
    /// the sha256 of the archive it came from.
    pub role_artifact_sha256: BTreeMap<String, String>,
    pub env_key: Option<EnvKey>,
    pub files: BTreeMap<String, Option<FileSums>>,
}

/// Reads `current`, its artifact checksum (and its role directories' ones), the env-fingerprint key and the checksums of
/// `files` (plain, and keyed where the key exists) in one command.
pub async fn inspect(
    t: &dyn Transport,
    deploy_dir: &str,
    files: &[String],
) -> Result<Inspection, HostError> {
    let cmd = inspect_command(deploy_dir, files)?;
    let out = run_ok(t, "inspect host", &cmd, Stdin::Null, t.timeouts().transfer).await?;
    read_inspection(t.host(), files, &out)
}

/// The script [`inspect`] runs (a part of a [`super::Batch`]; [`read_inspection`] reads it).
pub fn inspect_command(deploy_dir: &str, files: &[String]) -> Result<String, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    let mut cmd = format!(
        "c={c}; k={k}\n\
         if [ -L \"$c\" ]; then printf 'current %s\\n' \"$(readlink -- \"$c\")\"; \
         printf 'artifact %s\\n' \"$(cat -- \"$c/{ARTIFACT_SHA256_FILE}\" 2>/dev/null)\"; \
         for p in {roles}; do printf 'part %s %s\\n' \"$p\" \"$(cat -- \"$c/$p/{ARTIFACT_SHA256_FILE}\" 2>/dev/null)\"; done; \
         elif [ -e \"$c\" ]; then echo \"$c is not a symbolic link\" >&2; exit 1; fi\n\
         if [ -f \"$k\" ]; then printf 'key %s\\n' \"$(cat -- \"$k\")\"; fi\n",
        c = shell_quote(&format!("{d}/{CURRENT_LINK}")),
        k = shell_quote(&env_key_path(&d)),
        roles = ROLE_DIRS.join(" "),
    );
    for (i, f) in files.iter().enumerate() {
        check_path("path", f)?;
        let p = shell_quote(f);
        cmd.push_str(&format!(
            "if [ -f {p} ]; then printf 'file {i} '; {sha}; \
             if [ -f \"$k\" ]; then printf 'keyed {i} '; cat -- \"$k\" {p} | {stdin_sha}; fi; \
             else echo 'file {i} missing'; fi\n",
            sha = sha256_command(f),
            stdin_sha = SHA256_STDIN,
        ));
    }
    Ok(cmd)
}

/// Reads what [`inspect_command`] printed.
pub fn read_inspection(host: &str, files: &[String], out: &str) -> Result<Inspection, HostError> {
    let mut found = Inspection::default();
    let mut keyed = BTreeMap::new();
    for line in out.lines() {
        if let Some(target) = line.strip_prefix("current ") {
            found.version = version_of_target(target);
        } else if let Some(sha) = line.strip_prefix("artifact ") {
            found.artifact_sha256 = normalize_sha256(sha).ok();
        } else if let Some(rest) = line.strip_prefix("part ")
            && let Some((dir, sha)) = rest.split_once(' ')
            && let Ok(sha) = normalize_sha256(sha)
        {
            found.role_artifact_sha256.insert(dir.to_string(), sha);
        } else if let Some(key) = line.strip_prefix("key ") {
            found.env_key = EnvKey::parse(key);
        } else if let Some(rest) = line.strip_prefix("file ")
            && let Some((i, sha)) = rest.split_once(' ')
            && let Some(f) = i.parse::<usize>().ok().and_then(|i| files.get(i))
        {
            let sums = if sha.trim() == "missing" {
                None
            } else {
                Some(FileSums {
                    sha256: parse_sha256_output(host, sha)?,
                    keyed: None,
                })
            };
            found.files.insert(f.clone(), sums);
        } else if let Some(rest) = line.strip_prefix("keyed ")
            && let Some((i, sha)) = rest.split_once(' ')
            && let Some(f) = i.parse::<usize>().ok().and_then(|i| files.get(i))
        {
            keyed.insert(f.clone(), parse_sha256_output(host, sha)?);
        }
    }
    if found.env_key.is_some() {
        for (f, sums) in found.files.iter_mut() {
            if let Some(s) = sums {
                s.keyed = keyed.remove(f);
            }
        }
    }
    Ok(found)
}

/// Keeps a copy of `path` beside it (`<path>.rollback`) for [`restore_stash`]; returns whether
/// `path` existed (when it did not, restoring removes it).
pub async fn stash_file(t: &dyn Transport, path: &str) -> Result<bool, HostError> {
    let cmd = stash_command(path)?;
    let out = run_ok(t, "stash file", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(read_stash(&out))
}

/// The script [`stash_file`] runs (a part of a [`super::Batch`]; [`read_stash`] reads it).
pub fn stash_command(path: &str) -> Result<String, HostError> {
    check_path("path", path)?;
    Ok(format!(
        "p={p}; s={s}\n\
         if [ -f \"$p\" ]; then cp -p -- \"$p\" \"$s.tmp\" && mv -f -- \"$s.tmp\" \"$s\" && echo present; \
         else rm -f -- \"$s\" && echo absent; fi",
        p = shell_quote(path),
        s = shell_quote(&format!("{path}.rollback")),
    ))
}

/// Whether the stashed file existed, from what [`stash_command`] printed.
pub fn read_stash(out: &str) -> bool {
    out.trim() == "present"
}

/// Puts back what [`stash_file`] kept (or removes `path` when there was nothing). With `keep`,
/// the copy stays for another restore; else it is removed.
pub async fn restore_stash(
    t: &dyn Transport,
    path: &str,
    existed: bool,
    keep: bool,
) -> Result<(), HostError> {
    check_path("path", path)?;
    let s = shell_quote(&format!("{path}.rollback"));
    let p = shell_quote(path);
    let cmd = match (existed, keep) {
        (true, true) => format!("cp -p -- {s} {p}.tmp && mv -f -- {p}.tmp {p}"),
        (true, false) => format!("mv -f -- {s} {p}"),
        (false, _) => format!("rm -f -- {p} {s}"),
    };
    run_ok(t, "restore file", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(())
}

/// The script [`drop_stash`] runs.
pub fn drop_stash_command(path: &str) -> Result<String, HostError> {
    check_path("path", path)?;
    Ok(format!(
        "rm -f -- {}",
        shell_quote(&format!("{path}.rollback"))
    ))
}

/// Removes the copy [`stash_file`] kept.
pub async fn drop_stash(t: &dyn Transport, path: &str) -> Result<(), HostError> {
    let cmd = drop_stash_command(path)?;
    run_ok(t, "drop stash", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files() {
        let env = BTreeMap::from([
            ("Worker__BatchSize".to_string(), "100".to_string()),
            (
                "ConnectionStrings__Postgres".to_string(),
                "Host=db;Password='p w'=x".to_string(),
            ),
        ]);
        let content = env_file_content(&env).unwrap();
        assert!(content.ends_with(
            "ConnectionStrings__Postgres=Host=db;Password='p w'=x\nWorker__BatchSize=100\n"
        ));
        assert_eq!(env_sha256(&env).unwrap().len(), 64);
        // Keyed: differs from the plain sha256, per key; the key never prints.
        let (k1, k2) = (EnvKey::generate(), EnvKey::generate());
        let f1 = env_fingerprint(&k1, &env).unwrap();
        assert_eq!(f1.len(), 64);
        assert_ne!(f1, env_sha256(&env).unwrap());
        assert_ne!(f1, env_fingerprint(&k2, &env).unwrap());
        assert_eq!(f1, env_fingerprint(&k1, &env).unwrap());
        let mut h = sha2::Sha256::new();
        h.update(format!("{}\n", k1.0));
        h.update(env_file_content(&env).unwrap());
        assert_eq!(
            f1,
            hex::encode(h.finalize()),
            "sha256(key file || env file)"
        );
        assert_eq!(format!("{k1:?}"), "EnvKey(..)");
        assert_eq!(
            EnvKey::parse(&format!(" {}\n", k1.0.to_uppercase())),
            Some(k1.clone())
        );
        assert_eq!(EnvKey::parse("abc"), None);
        assert_eq!(EnvKey::parse(&"g".repeat(64)), None);
        let bad = BTreeMap::from([("1X".to_string(), "v".to_string())]);
        assert!(env_file_content(&bad).is_err());
        let secret = BTreeMap::from([("K".to_string(), "s3cr3t\nx".to_string())]);
        let e = env_file_content(&secret).unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
