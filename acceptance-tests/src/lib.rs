//! Artifortress test bed and reusable test support.
//!
//! * [`testbed`]: the code behind the `artifortress-testbed-api` and
//!   `artifortress-testbed-worker` binaries.
//! * [`support`]: helpers for tests: a throw-away PostgreSQL ([`support::postgres::PgServer`]),
//!   a throw-away Garage S3 server ([`support::garage::GarageServer`]) and a running test bed API
//!   ([`support::api::TestbedApi`]).

pub mod support;
pub mod testbed;
