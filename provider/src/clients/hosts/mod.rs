//! Hosts: run commands on a machine, over SSH ([`SshTransport`], russh) or on this machine
//! ([`LocalTransport`]), and the release-directory operations a deploy is made of (deploy lock,
//! release install with an on-host checksum, env files, atomic `current` switch, revisions log,
//! pruning). Knows nothing of Terraform.
//!
//! # The release directory
//! ```text
//! <deploy_dir>/
//!   .deploy-lock/owner        owner=<owner> / expires=<epoch seconds> / token=<random>
//!   releases/<version>/       one unpacked artifact each (a tarball holding a single top
//!                             directory is unpacked as that directory's contents)
//!   releases/<version>/.artifact-sha256   the sha256 of the artifact it came from
//!   releases/<version>/{api,worker}/      or: one archive per role (the service's two
//!                             `dotnet publish` outputs), each with its own `.artifact-sha256`
//!   current -> releases/<version>          switched atomically (rename of a symlink)
//!   revisions.log             one line appended per deploy
//! ```
//! Every remote operation is a `/bin/sh` command in which every argument is quoted with
//! [`shell_quote`]; data that may be secret (env files) travels on the command's stdin, never on
//! its command line, and is never logged. Timestamps (lock expiry) come from the host's clock.
//!
//! The submodules follow the seams: `error` (errors and results), `transport` (the
//! [`Transport`] trait and what transports share), `batch` (several operations in one command:
//! a deployment's round trips), `local` and `ssh` (the transports),
//! `known_hosts` (host-key verification), `shell` (quoting and validation), `lock` (the deploy
//! lock), `release_dir` (install, `current`, revisions, prune), `stage` (the stage probe) and `files` (env files,
//! inspection, stashes).

mod batch;
mod error;
mod files;
mod known_hosts;
mod local;
mod lock;
mod release_dir;
mod shell;
mod ssh;
mod stage;
mod transport;

pub use batch::{Batch, Ran};
pub use error::{HostError, Output, Stdin, Timeouts};
pub use files::{
    ENV_KEY_FILE, EnvKey, FileSums, Inspection, drop_stash, drop_stash_command, env_file_content,
    env_fingerprint, env_key_path, env_sha256, file_sha256, inspect, inspect_command,
    read_inspection, read_stash, restore_stash, stash_command, stash_file, write_env,
    write_env_key, write_file, write_file_command,
};
pub use known_hosts::{HostKeyStatus, KnownHosts, known_hosts_name};
pub use local::LocalTransport;
pub use lock::{
    Attempted, DeployLock, LOCK_DIR, LockAttempt, LockInfo, LockRelease, acquire_lock,
    parse_lock_file, read_release, release_lock, release_lock_command, renew_lock,
};
pub use release_dir::{
    ARTIFACT_SHA256_FILE, CURRENT_LINK, Installed, InstalledRelease, RELEASES_DIR, REVISIONS_LOG,
    ROLE_DIRS, RolePart, append_revision, append_revision_command, current, install_release,
    install_release_probed, install_role_release, install_role_release_probed, installed,
    installed_command, parse_installed, prune, prune_command, read_switch, release_sha256,
    remove_release, revisions, switch_command, switch_current,
};
pub use shell::{check_version, shell_quote};
pub use ssh::{PrivateKeyText, SshConfig, SshTransport};
pub use stage::{StageProbe, read_stage_probe, stage_probe_command};
pub use transport::Transport;
