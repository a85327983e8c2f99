//! The Artifortress test bed: an imitation of the real (.NET) service's operational contract
//! (routes, JSON property names, status codes, tables) on a real PostgreSQL and a real S3 server.

pub mod api;
pub mod auth;
pub mod clients;
pub mod config;
pub mod faults;
pub mod health;
pub mod npgsql;
pub mod repos;
mod smoke_routes;
pub mod uploads;
pub mod worker;

/// Log to stderr (stdout is reserved for the `Now listening on:` line).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}
