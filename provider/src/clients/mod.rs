//! Domain clients: talk to Artifortress and its dependencies; know nothing of Terraform.
//!
//! - [`api`]: the service's HTTP API (health, readiness, ops summary, tokens).
//! - [`http`]: what every HTTP exchange shares: the body limit, bounded reads, errors in words.
//! - [`ops`]: judging an ops summary: thresholds, breaches, growth against a baseline.
//! - [`migrations`]: the service's SQL migrations: files, ledger, plan, exactly-once apply.
//! - [`object_store`]: S3-compatible object storage.
//! - [`process`]: child processes (`pg_dump`, `pg_restore`, `psql`) with capped output.
//! - [`pg`]: PostgreSQL identifiers from configuration: validation and quoting.
//! - [`bootstrap`]: staging bootstrap: owner role, its database, the bucket, a storage probe.
//! - [`backup`]: `pg_dump` streamed into object storage, with a manifest, verified.
//! - [`restore`]: restore drills: restore a backup, verify it, measure RTO and RPO.
//! - [`restore_database`]: a backup restored into the live database (the runbook's way back
//!   after a contract migration), refused unless confirmed and the migration heads fit.
//! - [`hosts`]: deploy hosts over SSH (russh) or locally: commands, uploads, and the release
//!   directory (deploy lock, install with an on-host checksum, env files, `current`, prune).
//! - [`smoke`]: the post-deploy smoke flow (whoami, repositories, draft → upload → publish).
//! - [`release`]: rolling releases over those hosts: staged artifacts, batches, readiness
//!   waits, atomic rollback, watch window, rollback rehearsal.
//! - [`service_config`]: the keys the service's API and worker read from their environment,
//!   and the checks of an env file against them.

pub mod api;
pub mod backup;
pub mod bootstrap;
pub mod gate;
pub mod hosts;
pub mod http;
pub mod migrations;
pub mod object_store;
pub mod ops;
pub mod pg;
mod poll;
pub mod process;
pub mod release;
pub mod restore;
pub mod restore_database;
pub mod service_config;
pub mod smoke;
mod stream;
pub mod words;
