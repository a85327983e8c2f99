//! Real-Terraform acceptance tests (feature `acceptance`; run by `make test` against the dev
//! environment). The Artifortress service itself is a .NET program that cannot run here: these
//! tests run against the test bed in `acceptance-tests/src/testbed`, which implements its
//! operational contract (same routes, JSON, status codes, tables) on a real PostgreSQL and a
//! real S3 server (Garage).

mod actions;
mod backup;
mod bootstrap;
mod bounded_reads;
mod ci_drift;
mod deploy_hosts;
mod distribution;
mod examples;
mod gates;
mod harness;
mod host_module;
mod identity;
mod migration;
mod own_credentials;
mod provider_config;
mod readiness;
mod release;
mod release_artifacts;
mod release_env;
mod resource_examples;
mod restore_database;
mod secrets;
mod smoke;
mod state_upgrade;
