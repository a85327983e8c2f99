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
//! [`Transport`] trait and what transports share), `local` and `ssh` (the transports),
//! `known_hosts` (host-key verification), `shell` (quoting and validation), `lock` (the deploy
//! lock), `release_dir` (install, `current`, revisions, prune) and `files` (env files,
//! inspection, stashes).

mod error;
mod files;
mod known_hosts;
mod local;
mod lock;
mod release_dir;
mod shell;
mod ssh;
mod transport;

pub use error::{HostError, Output, Stdin, Timeouts};
pub use files::{
    ENV_KEY_FILE, EnvKey, FileSums, Inspection, drop_stash, env_file_content, env_fingerprint,
    env_key_path, env_sha256, file_sha256, inspect, restore_stash, stash_file, write_env,
    write_env_key, write_file,
};
pub use known_hosts::{HostKeyStatus, KnownHosts, known_hosts_name};
pub use local::LocalTransport;
pub use lock::{
    DeployLock, LOCK_DIR, LockInfo, LockRelease, acquire_lock, parse_lock_file, release_lock,
    renew_lock,
};
pub use release_dir::{
    ARTIFACT_SHA256_FILE, CURRENT_LINK, Installed, InstalledRelease, RELEASES_DIR, REVISIONS_LOG,
    ROLE_DIRS, RolePart, append_revision, current, install_release, install_role_release,
    installed, prune, release_sha256, remove_release, revisions, switch_current,
};
pub use shell::{check_version, shell_quote};
pub use ssh::{PrivateKeyText, SshConfig, SshTransport};
pub use transport::Transport;
