//! Releases in the release directory: install with an on-host checksum, `current` (read,
//! switched atomically), the revisions log, pruning and removal.

use std::path::Path;
use std::time::Instant;

use super::error::{HostError, Output, Stdin};
use super::shell::{
    check_text, check_version, deploy_dir_arg, normalize_sha256, shell_quote, version_of_target,
};
use super::stage::stage_probe;
use super::transport::{SHA256_STDIN, Transport, run_ok, token};

/// Where releases are unpacked, one directory per version.
pub const RELEASES_DIR: &str = "releases";
/// The symlink naming the live release.
pub const CURRENT_LINK: &str = "current";
/// The append-only log of deploys.
pub const REVISIONS_LOG: &str = "revisions.log";
/// Inside each release: the sha256 of the artifact it was unpacked from.
pub const ARTIFACT_SHA256_FILE: &str = ".artifact-sha256";
/// Temporary entries in `releases/` older than this (minutes) are removed by [`prune`].
const STALE_TEMP_MINUTES: u32 = 60;

/// A release on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRelease {
    /// `<deploy_dir>/releases/<version>`.
    pub path: String,
    pub sha256: String,
    /// Bytes uploaded (0 when it was already there).
    pub uploaded_bytes: u64,
    /// It was already installed from the same artifact: nothing was done.
    pub already_present: bool,
}

/// Installs `artifact` (a local `.tar.gz`) as `releases/<version>`: uploaded under a temporary
/// name, its sha256 checked on the host against `expected_sha256`, unpacked into a temporary
/// directory, then renamed into place (one command after the probe). Already installed from the same artifact: nothing to
/// do. Installed from another artifact: replaced, unless it is the live release
/// ([`HostError::ReleaseConflict`]). Nothing is left behind on failure.
pub async fn install_release(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
    artifact: &Path,
    expected_sha256: &str,
) -> Result<InstalledRelease, HostError> {
    install_release_probed(t, deploy_dir, version, artifact, expected_sha256, None).await
}

/// [`install_release`], given what [`super::stage_probe_command`] printed when it already ran (under
/// the same deploy lock).
pub async fn install_release_probed(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
    artifact: &Path,
    expected_sha256: &str,
    probed: Option<&str>,
) -> Result<InstalledRelease, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_version(version)?;
    let expected = normalize_sha256(expected_sha256)?;
    let timeouts = t.timeouts();
    let releases = format!("{d}/{RELEASES_DIR}");
    let release = format!("{releases}/{version}");

    let probe = stage_probe(t, &d, version, probed).await?;
    let current = probe.current.clone();
    if probe.present {
        let installed = probe.single.as_str();
        if installed == expected {
            return Ok(InstalledRelease {
                path: release,
                sha256: expected,
                uploaded_bytes: 0,
                already_present: true,
            });
        }
        if current.as_deref() == Some(version) {
            return Err(HostError::ReleaseConflict {
                host: t.host().to_string(),
                deploy_dir: d,
                version: version.to_string(),
                installed: (!installed.is_empty()).then(|| installed.to_string()),
                expected,
            });
        }
        tracing::warn!(
            host = t.host(),
            version,
            "release present with another artifact; replacing it"
        );
    }

    // One command: the archive arrives on stdin under a temporary name, its size and sha256
    // are checked on the host, then it is unpacked beside the release and renamed into place;
    // the trap removes every temporary entry whatever happens.
    let tok = token();
    let incoming = format!("{releases}/.incoming-{version}-{tok}.tar.gz");
    let size = tokio::fs::metadata(artifact)
        .await
        .map_err(|e| HostError::Io {
            host: t.host().to_string(),
            op: "upload artifact",
            message: format!("{}: {e}", artifact.display()),
        })?
        .len();
    let install = format!(
        "set -e; umask 022\n\
         r={r}; inc={inc}; u={u}; old={old}\n\
         trap 'rm -rf -- \"$u\" \"$inc\" \"$old\"' EXIT\n\
         (umask 077 && head -c {size} > \"$inc\")\n\
         n=$(wc -c < \"$inc\")\n\
         if [ \"$n\" -ne {size} ]; then echo \"received $n bytes of {size}\" >&2; exit 1; fi\n\
         a=$({SHA256_STDIN} < \"$inc\"); a=${{a%% *}}\n\
         if [ \"$a\" != {sha} ]; then printf 'mismatch %s\\n' \"$a\"; exit 4; fi\n\
         mkdir -- \"$u\"\n\
         tar -xzf \"$inc\" -C \"$u\" --no-same-owner\n\
         src=$u; n=0; one=\n\
         for e in \"$u\"/* \"$u\"/.[!.]* \"$u\"/..?*; do\n\
           if [ -e \"$e\" ] || [ -L \"$e\" ]; then n=$((n + 1)); one=$e; fi\n\
         done\n\
         if [ \"$n\" -eq 0 ]; then echo 'the artifact is an empty archive' >&2; exit 1; fi\n\
         if [ \"$n\" -eq 1 ] && [ -d \"$one\" ] && [ ! -L \"$one\" ]; then src=$one; fi\n\
         printf '%s\\n' {sha} > \"$src/{ARTIFACT_SHA256_FILE}\"\n\
         touch -- \"$src\"\n\
         if [ -e \"$r\" ] || [ -L \"$r\" ]; then mv -T -- \"$r\" \"$old\"; fi\n\
         mv -T -- \"$src\" \"$r\"",
        r = shell_quote(&release),
        inc = shell_quote(&incoming),
        u = shell_quote(&format!("{releases}/.unpack-{version}-{tok}")),
        old = shell_quote(&format!("{releases}/.replaced-{version}-{tok}")),
        sha = shell_quote(&expected),
    );
    let started = Instant::now();
    let out = t
        .run(&install, Stdin::File(artifact), timeouts.transfer)
        .await
        .map_err(|e| e.in_op("upload artifact"))?;
    if !out.success() {
        let stdout = out.stdout_text();
        if out.status == Some(4)
            && let Some(actual) = stdout.trim().strip_prefix("mismatch ")
        {
            return Err(HostError::ChecksumMismatch {
                host: t.host().to_string(),
                path: format!("{} (uploaded from {})", incoming, artifact.display()),
                expected,
                actual: actual.trim().to_string(),
            });
        }
        return Err(HostError::Command {
            host: t.host().to_string(),
            op: "install release",
            status: out.status_text(),
            stderr: out.stderr_text(),
        });
    }
    let uploaded_bytes = size;
    tracing::info!(
        host = t.host(),
        version,
        bytes = uploaded_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "artifact uploaded, verified and unpacked"
    );
    tracing::info!(host = t.host(), version, path = %release, "release installed");
    Ok(InstalledRelease {
        path: release,
        sha256: expected,
        uploaded_bytes,
        already_present: false,
    })
}

/// The subdirectories of a release installed from one archive per role
/// ([`install_role_release`]): `releases/<version>/<dir>/`, each with its own
/// [`ARTIFACT_SHA256_FILE`].
pub const ROLE_DIRS: [&str; 2] = ["api", "worker"];

/// One archive of a release installed per role: unpacked as `releases/<version>/<dir>`.
#[derive(Debug, Clone, Copy)]
pub struct RolePart<'a> {
    /// One of [`ROLE_DIRS`].
    pub dir: &'a str,
    /// A local `.tar.gz`.
    pub artifact: &'a Path,
    pub sha256: &'a str,
}

/// Installs one archive per role as `releases/<version>/<dir>/` (a tarball holding a single top
/// directory is unpacked as that directory's contents), each uploaded under a temporary name, its
/// sha256 checked on the host, recorded in `<dir>/`[`ARTIFACT_SHA256_FILE`]; the release is
/// assembled in a temporary directory, then renamed into place. Already installed with every
/// part from the same archive: nothing to do. Installed otherwise (another archive for a part, a
/// part missing, or a release from a single archive): replaced, unless it is the live release
/// ([`HostError::ReleaseConflict`]). Nothing is left behind on failure.
pub async fn install_role_release(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
    parts: &[RolePart<'_>],
) -> Result<InstalledRelease, HostError> {
    install_role_release_probed(t, deploy_dir, version, parts, None).await
}

/// [`install_role_release`], given what [`super::stage_probe_command`] printed when it already ran
/// (under the same deploy lock).
pub async fn install_role_release_probed(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
    parts: &[RolePart<'_>],
    probed: Option<&str>,
) -> Result<InstalledRelease, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_version(version)?;
    let mut expected = Vec::new();
    for p in parts {
        if !ROLE_DIRS.contains(&p.dir) {
            return Err(HostError::InvalidArgument {
                what: "role directory",
                value: p.dir.to_string(),
                reason: format!("not one of {}", ROLE_DIRS.join(", ")),
            });
        }
        expected.push(normalize_sha256(p.sha256)?);
    }
    let record = parts
        .iter()
        .zip(&expected)
        .map(|(p, s)| format!("{}={s}", p.dir))
        .collect::<Vec<_>>()
        .join(",");
    let timeouts = t.timeouts();
    let releases = format!("{d}/{RELEASES_DIR}");
    let release = format!("{releases}/{version}");
    let probe = stage_probe(t, &d, version, probed).await?;
    let current = probe.current.clone();
    let present = probe.present;
    let installed: Vec<String> = parts
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                p.dir,
                probe.parts.get(p.dir).map_or("", String::as_str)
            )
        })
        .collect();
    if present {
        let installed = installed.join(",");
        if installed == record {
            return Ok(InstalledRelease {
                path: release,
                sha256: record,
                uploaded_bytes: 0,
                already_present: true,
            });
        }
        if current.as_deref() == Some(version) {
            return Err(HostError::ReleaseConflict {
                host: t.host().to_string(),
                deploy_dir: d,
                version: version.to_string(),
                installed: Some(installed),
                expected: record,
            });
        }
        tracing::warn!(
            host = t.host(),
            version,
            "release present with other artifacts; replacing it"
        );
    }

    let tok = token();
    let mut uploaded_bytes = 0;
    let mut incoming: Vec<String> = Vec::new();
    let remove_incoming = |files: &[String]| {
        format!(
            "rm -f -- {}",
            files
                .iter()
                .map(|f| shell_quote(f))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    let started = Instant::now();
    for (p, want) in parts.iter().zip(&expected) {
        let inc = format!("{releases}/.incoming-{version}-{tok}-{}.tar.gz", p.dir);
        incoming.push(inc.clone());
        let checked = async {
            uploaded_bytes += t
                .upload(p.artifact, &inc, 0o600)
                .await
                .map_err(|e| e.in_op("upload artifact"))?;
            let actual = t
                .sha256(&inc)
                .await
                .map_err(|e| e.in_op("verify artifact"))?;
            if &actual != want {
                return Err(HostError::ChecksumMismatch {
                    host: t.host().to_string(),
                    path: format!(
                        "{inc} (the {} artifact, uploaded from {})",
                        p.dir,
                        p.artifact.display()
                    ),
                    expected: want.clone(),
                    actual,
                });
            }
            Ok(())
        }
        .await;
        if let Err(e) = checked {
            let _ = t
                .exec(&remove_incoming(&incoming), None, timeouts.command)
                .await;
            return Err(e);
        }
    }
    tracing::info!(
        host = t.host(),
        version,
        bytes = uploaded_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "role artifacts uploaded and verified"
    );
    let u = format!("{releases}/.unpack-{version}-{tok}");
    // The uploaded archives are `$i0`, `$i1`, ...: removed on exit whatever happens.
    let incs: String = incoming
        .iter()
        .enumerate()
        .map(|(i, f)| format!("i{i}={}\n", shell_quote(f)))
        .collect();
    let inc_vars: String = (0..incoming.len()).map(|i| format!(" \"$i{i}\"")).collect();
    let mut unpack = format!(
        "set -e; umask 022\n\
         r={r}; u={uq}; old={old}\n\
         {incs}\
         trap 'rm -rf -- \"$u\" \"$old\"{inc_vars}' EXIT\n\
         mkdir -- \"$u\"\n\
         part() {{\n\
           x=\"$u/.x-$2\"; mkdir -- \"$x\"\n\
           tar -xzf \"$1\" -C \"$x\" --no-same-owner\n\
           src=$x; n=0; one=\n\
           for e in \"$x\"/* \"$x\"/.[!.]* \"$x\"/..?*; do\n\
             if [ -e \"$e\" ] || [ -L \"$e\" ]; then n=$((n + 1)); one=$e; fi\n\
           done\n\
           if [ \"$n\" -eq 0 ]; then echo \"the $2 artifact is an empty archive\" >&2; exit 1; fi\n\
           if [ \"$n\" -eq 1 ] && [ -d \"$one\" ] && [ ! -L \"$one\" ]; then src=$one; fi\n\
           printf '%s\\n' \"$3\" > \"$src/{ARTIFACT_SHA256_FILE}\"\n\
           mv -T -- \"$src\" \"$u/$2\"\n\
           rm -rf -- \"$x\"\n\
         }}\n",
        r = shell_quote(&release),
        uq = shell_quote(&u),
        old = shell_quote(&format!("{releases}/.replaced-{version}-{tok}")),
    );
    for (i, (p, want)) in parts.iter().zip(&expected).enumerate() {
        unpack.push_str(&format!(
            "part \"$i{i}\" {} {}\n",
            shell_quote(p.dir),
            shell_quote(want)
        ));
    }
    unpack.push_str(
        "touch -- \"$u\"\n\
         if [ -e \"$r\" ] || [ -L \"$r\" ]; then mv -T -- \"$r\" \"$old\"; fi\n\
         mv -T -- \"$u\" \"$r\"",
    );
    run_ok(t, "unpack release", &unpack, Stdin::Null, timeouts.transfer).await?;
    tracing::info!(host = t.host(), version, path = %release, parts = %record, "release installed from role artifacts");
    Ok(InstalledRelease {
        path: release,
        sha256: record,
        uploaded_bytes,
        already_present: false,
    })
}

/// The sha256 of the artifact `releases/<version>` was unpacked from; `None` when the release
/// is absent or has no record.
pub async fn release_sha256(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
) -> Result<Option<String>, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_version(version)?;
    let cmd = format!(
        "cat -- {} 2>/dev/null || true",
        shell_quote(&format!(
            "{d}/{RELEASES_DIR}/{version}/{ARTIFACT_SHA256_FILE}"
        ))
    );
    let out = run_ok(
        t,
        "read release checksum",
        &cmd,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    Ok(normalize_sha256(&out).ok())
}

/// Points `current` at `releases/<version>` atomically (a new symlink renamed over the old
/// one). Returns the version it pointed to before.
pub async fn switch_current(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
) -> Result<Option<String>, HostError> {
    let cmd = switch_command(deploy_dir, version)?;
    let out = t
        .run(&cmd, Stdin::Null, t.timeouts().command)
        .await
        .map_err(|e| e.in_op("switch current"))?;
    read_switch(t.host(), deploy_dir, version, &out)
}

/// The script [`switch_current`] runs (a part of a [`super::Batch`]; [`read_switch`] reads it).
pub fn switch_command(deploy_dir: &str, version: &str) -> Result<String, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_version(version)?;
    Ok(format!(
        "d={d}; r={r}; tmp={tmp}\n\
         [ -d \"$d/$r\" ] || {{ echo missing; exit 3; }}\n\
         prev=$(readlink -- \"$d/{CURRENT_LINK}\" 2>/dev/null || true)\n\
         ln -sfn -- \"$r\" \"$tmp\" && mv -T -- \"$tmp\" \"$d/{CURRENT_LINK}\" \
         || {{ rc=$?; rm -f -- \"$tmp\"; exit $rc; }}\n\
         echo switched; printf '%s\\n' \"$prev\"",
        d = shell_quote(&d),
        r = shell_quote(&format!("{RELEASES_DIR}/{version}")),
        tmp = shell_quote(&format!("{d}/.{CURRENT_LINK}.{}", token())),
    ))
}

/// What [`switch_command`] did: the version `current` named before, or why it did not
/// switch.
pub fn read_switch(
    host: &str,
    deploy_dir: &str,
    version: &str,
    out: &Output,
) -> Result<Option<String>, HostError> {
    let text = out.stdout_text();
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some("missing") => Err(HostError::ReleaseMissing {
            host: host.to_string(),
            deploy_dir: deploy_dir_arg(deploy_dir)?,
            version: version.to_string(),
        }),
        _ if !out.success() => Err(HostError::Command {
            host: host.to_string(),
            op: "switch current",
            status: out.status_text(),
            stderr: out.stderr_text(),
        }),
        Some("switched") => {
            let previous = lines.next().and_then(version_of_target);
            tracing::info!(host, version, previous = ?previous, "current switched");
            Ok(previous)
        }
        _ => Err(HostError::UnexpectedOutput {
            host: host.to_string(),
            op: "switch current",
            output: text.clone(),
        }),
    }
}

/// The version `current` points to, or `None` when there is no `current`.
pub async fn current(t: &dyn Transport, deploy_dir: &str) -> Result<Option<String>, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    let cmd = format!(
        "c={c}\n\
         if [ -L \"$c\" ]; then readlink -- \"$c\"; \
         elif [ -e \"$c\" ]; then echo \"$c is not a symbolic link\" >&2; exit 1; fi",
        c = shell_quote(&format!("{d}/{CURRENT_LINK}")),
    );
    let out = run_ok(t, "read current", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(version_of_target(&out))
}

/// What a deploy dir holds on a host: the version `current` points to (`None`: no `current`)
/// and the releases installed in `releases/`, oldest install first (ties: by name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Installed {
    pub current: Option<String>,
    pub releases: Vec<String>,
}

/// Reads [`Installed`]; a missing deploy dir holds nothing. Temporary entries (`.incoming-*`
/// and the like) and names that are not versions are not releases.
pub async fn installed(t: &dyn Transport, deploy_dir: &str) -> Result<Installed, HostError> {
    let cmd = installed_command(deploy_dir)?;
    let out = run_ok(t, "list releases", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(parse_installed(&out))
}

/// The script [`installed`] runs (a part of a [`super::Batch`]; [`parse_installed`] reads it).
pub fn installed_command(deploy_dir: &str) -> Result<String, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    Ok(format!(
        "c={c}\n\
         if [ -L \"$c\" ]; then printf 'current %s\\n' \"$(readlink -- \"$c\")\"; \
         elif [ -e \"$c\" ]; then echo \"$c is not a symbolic link\" >&2; exit 1; fi\n\
         cd -- {rs} 2>/dev/null || exit 0\n\
         find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %f\\n'",
        c = shell_quote(&format!("{d}/{CURRENT_LINK}")),
        rs = shell_quote(&format!("{d}/{RELEASES_DIR}")),
    ))
}

/// Reads what [`installed_command`] printed.
pub fn parse_installed(out: &str) -> Installed {
    let mut current = None;
    let mut releases: Vec<(f64, String)> = Vec::new();
    for line in out.lines() {
        if let Some(target) = line.strip_prefix("current ") {
            current = version_of_target(target);
        } else if let Some((mtime, name)) = line.split_once(' ')
            && let Ok(mtime) = mtime.parse::<f64>()
            && check_version(name).is_ok()
        {
            releases.push((mtime, name.to_string()));
        }
    }
    releases.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    Installed {
        current,
        releases: releases.into_iter().map(|(_, v)| v).collect(),
    }
}

/// The script [`append_revision`] runs.
pub fn append_revision_command(deploy_dir: &str, line: &str) -> Result<String, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_text("revision line", line)?;
    Ok(format!(
        "(umask 022 && mkdir -p -- {d}) && printf '%s\\n' {line} >> {log}",
        d = shell_quote(&d),
        line = shell_quote(line),
        log = shell_quote(&format!("{d}/{REVISIONS_LOG}")),
    ))
}

/// Appends one line to `revisions.log`.
pub async fn append_revision(
    t: &dyn Transport,
    deploy_dir: &str,
    line: &str,
) -> Result<(), HostError> {
    let cmd = append_revision_command(deploy_dir, line)?;
    run_ok(
        t,
        "append revision",
        &cmd,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    Ok(())
}

/// The last `n` lines of `revisions.log` (oldest first); empty when there is none.
pub async fn revisions(
    t: &dyn Transport,
    deploy_dir: &str,
    n: usize,
) -> Result<Vec<String>, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    let log = shell_quote(&format!("{d}/{REVISIONS_LOG}"));
    let cmd = format!("if [ -f {log} ]; then tail -n {n} -- {log}; fi");
    let out = run_ok(t, "read revisions", &cmd, Stdin::Null, t.timeouts().command).await?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Removes releases beyond the `keep` most recently installed, never `current`'s nor those
/// in `protect`; also temporary entries older than an hour. Returns the versions removed.
pub async fn prune(
    t: &dyn Transport,
    deploy_dir: &str,
    keep: usize,
    protect: &[&str],
) -> Result<Vec<String>, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    let releases = format!("{d}/{RELEASES_DIR}");
    let list = format!(
        "cd -- {rs} 2>/dev/null || exit 0\n\
         printf 'current %s\\n' \"$(readlink -- ../{CURRENT_LINK} 2>/dev/null)\"\n\
         find . -mindepth 1 -maxdepth 1 \\( -name '.incoming-*' -o -name '.unpack-*' -o -name '.replaced-*' \\) \
         -mmin +{STALE_TEMP_MINUTES} -exec rm -rf -- {{}} + 2>/dev/null || true\n\
         find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %f\\n'",
        rs = shell_quote(&releases),
    );
    let out = run_ok(
        t,
        "prune releases",
        &list,
        Stdin::Null,
        t.timeouts().command,
    )
    .await?;
    let mut current = None;
    let mut installed: Vec<(f64, String)> = Vec::new();
    for line in out.lines() {
        if let Some(target) = line.strip_prefix("current ") {
            current = version_of_target(target);
        } else if let Some((mtime, name)) = line.split_once(' ')
            && let Ok(mtime) = mtime.parse::<f64>()
            && check_version(name).is_ok()
        {
            installed.push((mtime, name.to_string()));
        }
    }
    let doomed = releases_to_prune(installed, keep, current.as_deref(), protect);
    if doomed.is_empty() {
        return Ok(doomed);
    }
    let cmd = format!(
        "cd -- {rs} && rm -rf -- {names}",
        rs = shell_quote(&releases),
        names = doomed
            .iter()
            .map(|v| shell_quote(v))
            .collect::<Vec<_>>()
            .join(" "),
    );
    run_ok(
        t,
        "prune releases",
        &cmd,
        Stdin::Null,
        t.timeouts().transfer,
    )
    .await?;
    tracing::info!(host = t.host(), removed = ?doomed, "releases pruned");
    Ok(doomed)
}

/// The script that removes what [`prune`] would, when the releases were listed under the same
/// deploy lock ([`installed_command`]) and `current` has since been switched to `current`:
/// `installed` as listed (oldest first), plus `staged` when this deploy installed it (the
/// newest). Also removes temporary entries older than an hour. `None`: nothing to remove.
pub fn prune_command(
    deploy_dir: &str,
    installed: &Installed,
    staged: Option<&str>,
    current: &str,
    keep: usize,
    protect: &[&str],
) -> Result<String, HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    let releases = format!("{d}/{RELEASES_DIR}");
    // Oldest first, as listed; ranked by position (a staged release is the newest).
    let mut listed: Vec<(f64, String)> = installed
        .releases
        .iter()
        .filter(|v| Some(v.as_str()) != staged)
        .enumerate()
        .map(|(i, v)| (i as f64, v.clone()))
        .collect();
    if let Some(v) = staged {
        listed.push((listed.len() as f64, v.to_string()));
    }
    let doomed = releases_to_prune(listed, keep, Some(current), protect);
    let mut cmd = format!(
        "cd -- {rs} 2>/dev/null || exit 0\n\
         find . -mindepth 1 -maxdepth 1 \\( -name '.incoming-*' -o -name '.unpack-*' -o -name '.replaced-*' \\) \
         -mmin +{STALE_TEMP_MINUTES} -exec rm -rf -- {{}} + 2>/dev/null || true",
        rs = shell_quote(&releases),
    );
    if !doomed.is_empty() {
        cmd.push_str(&format!(
            "\nrm -rf -- {names} && printf 'pruned %s\\n' {names}",
            names = doomed
                .iter()
                .map(|v| shell_quote(v))
                .collect::<Vec<_>>()
                .join(" "),
        ));
    }
    Ok(cmd)
}

/// Newest first by install time (ties: version name, descending); the first `keep`, the
/// current one and the protected ones stay.
fn releases_to_prune(
    mut installed: Vec<(f64, String)>,
    keep: usize,
    current: Option<&str>,
    protect: &[&str],
) -> Vec<String> {
    installed.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    installed
        .into_iter()
        .enumerate()
        .filter(|(i, (_, v))| {
            *i >= keep && Some(v.as_str()) != current && !protect.contains(&v.as_str())
        })
        .map(|(_, (_, v))| v)
        .collect()
}

/// Removes `current` (when it is a symbolic link) and `releases/<version>`: what a failed
/// first deploy leaves behind.
pub async fn remove_release(
    t: &dyn Transport,
    deploy_dir: &str,
    version: &str,
) -> Result<(), HostError> {
    let d = deploy_dir_arg(deploy_dir)?;
    check_version(version)?;
    let cmd = format!(
        "c={c}; r={r}\n\
         if [ -L \"$c\" ] && [ \"$(basename -- \"$(readlink -- \"$c\")\")\" = {v} ]; then rm -f -- \"$c\"; fi\n\
         rm -rf -- \"$r\"",
        c = shell_quote(&format!("{d}/{CURRENT_LINK}")),
        r = shell_quote(&format!("{d}/{RELEASES_DIR}/{version}")),
        v = shell_quote(version),
    );
    run_ok(
        t,
        "remove release",
        &cmd,
        Stdin::Null,
        t.timeouts().transfer,
    )
    .await?;
    tracing::info!(host = t.host(), version, "release removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_releases_oldest_first_without_temporary_entries() {
        let out = "current /srv/af/releases/v2\n20.5 v2\n10.0 v1\n30.0 bad name\n";
        assert_eq!(
            parse_installed(out),
            Installed {
                current: Some("v2".into()),
                releases: vec!["v1".into(), "v2".into()],
            }
        );
        assert_eq!(parse_installed(""), Installed::default());
    }

    #[tokio::test]
    async fn installed_reads_a_deploy_dir_on_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let t = super::super::LocalTransport::new(super::super::Timeouts::default());
        // No deploy dir at all: nothing installed.
        assert_eq!(
            installed(&t, &format!("{d}/missing")).await.unwrap(),
            Installed::default()
        );
        std::fs::create_dir_all(format!("{d}/releases/v1")).unwrap();
        std::fs::create_dir_all(format!("{d}/releases/.incoming-x")).unwrap();
        std::os::unix::fs::symlink(format!("{d}/releases/v1"), format!("{d}/current")).unwrap();
        assert_eq!(
            installed(&t, &d).await.unwrap(),
            Installed {
                current: Some("v1".into()),
                releases: vec!["v1".into()],
            }
        );
    }

    #[test]
    fn prune_selection() {
        let installed = vec![
            (10.0, "v1".to_string()),
            (30.0, "v3".to_string()),
            (20.0, "v2".to_string()),
            (40.0, "v4".to_string()),
        ];
        assert_eq!(
            releases_to_prune(installed.clone(), 2, Some("v4"), &[]),
            vec!["v2", "v1"]
        );
        assert_eq!(
            releases_to_prune(installed.clone(), 1, Some("v2"), &["v1"]),
            vec!["v3"]
        );
        assert!(releases_to_prune(installed, 10, None, &[]).is_empty());
    }
}
