//! The stage probe: what a host has of a release about to be staged (`releases/<version>`, its
//! artifact records, `current`), read before an install, or with the deploy lock in one command.

use std::collections::BTreeMap;

use super::error::{HostError, Stdin};
use super::release_dir::{ARTIFACT_SHA256_FILE, CURRENT_LINK, RELEASES_DIR, ROLE_DIRS};
use super::shell::{check_version, deploy_dir_arg, shell_quote, version_of_target};
use super::transport::{Transport, run_ok};

/// What a host has of a release about to be staged ([`stage_probe_command`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageProbe {
    /// The version `current` names.
    pub current: Option<String>,
    /// `releases/<version>` exists.
    pub present: bool,
    /// Its [`ARTIFACT_SHA256_FILE`] (empty: none).
    pub single: String,
    /// Per role directory, its [`ARTIFACT_SHA256_FILE`] (empty: none).
    pub parts: BTreeMap<String, String>,
}

/// The script that looks at `releases/<version>` before staging it (and creates `releases/`):
/// [`super::install_release`] and [`super::install_role_release`] run it themselves unless given its output.
pub fn stage_probe_command(deploy_dir: &str, version: &str) -> Result<String, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_version(version)?;
    let releases = format!("{d}/{RELEASES_DIR}");
    Ok(format!(
        "r={r}\n\
         (umask 022 && mkdir -p -- {rs}) || exit 1\n\
         printf 'current %s\\n' \"$(readlink -- {cur} 2>/dev/null)\"\n\
         if [ -d \"$r\" ]; then echo present; else echo absent; fi\n\
         printf 'single %s\\n' \"$(cat -- \"$r/{ARTIFACT_SHA256_FILE}\" 2>/dev/null)\"\n\
         for p in {roles}; do printf 'part %s %s\\n' \"$p\" \"$(cat -- \"$r/$p/{ARTIFACT_SHA256_FILE}\" 2>/dev/null)\"; done",
        r = shell_quote(&format!("{releases}/{version}")),
        rs = shell_quote(&releases),
        cur = shell_quote(&format!("{d}/{CURRENT_LINK}")),
        roles = ROLE_DIRS.join(" "),
    ))
}

/// Reads what [`stage_probe_command`] printed.
pub fn read_stage_probe(out: &str) -> StageProbe {
    let mut p = StageProbe::default();
    for line in out.lines() {
        if let Some(target) = line.strip_prefix("current ") {
            p.current = version_of_target(target);
        } else if line.trim() == "present" {
            p.present = true;
        } else if let Some(sha) = line.strip_prefix("single ") {
            p.single = sha.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("part ")
            && let Some((dir, sha)) = rest.split_once(' ')
        {
            p.parts.insert(dir.to_string(), sha.trim().to_string());
        }
    }
    p
}

/// What [`stage_probe_command`] printed: `probed` when it already ran (under the same deploy
/// lock), else read now.
pub(super) async fn stage_probe(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
    probed: Option<&str>,
) -> Result<StageProbe, HostError> {
    if let Some(out) = probed {
        return Ok(read_stage_probe(out));
    }
    let cmd = stage_probe_command(deploy_dir, version)?;
    let out = run_ok(
        t,
        "install release",
        &cmd,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    Ok(read_stage_probe(&out))
}
