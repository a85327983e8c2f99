//! Artifortress test bed API: same routes, JSON, status codes and environment variables as the
//! real service (see `acceptance-tests/testbed/README.md`).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use acceptance_tests::testbed::{self, api, config::ApiConfig};

#[tokio::main]
async fn main() -> ExitCode {
    testbed::init_logging();
    let cfg = match ApiConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("artifortress-testbed-api: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(cfg.bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "artifortress-testbed-api: cannot listen on {}: {e}",
                cfg.bind
            );
            return ExitCode::from(1);
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("artifortress-testbed-api: {e}");
            return ExitCode::from(1);
        }
    };
    if cfg.faults_api_enabled
        || cfg.initial_faults.never_ready
        || cfg.initial_faults.ready_after_seconds.is_some()
        || !cfg.initial_faults.dependencies.is_empty()
    {
        tracing::warn!(
            faults = ?cfg.initial_faults.to_wire(),
            faults_api = cfg.faults_api_enabled,
            "TEST-ONLY fault switches are active"
        );
    }
    let state = Arc::new(api::AppState::new(&cfg));
    let app = api::router(state, cfg.faults_api_enabled);
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Now listening on: http://{addr}");
        let _ = out.flush();
    }
    tracing::info!(
        %addr,
        environment = %cfg.environment,
        presign_part_ttl_seconds = cfg.object_storage.presign_part_ttl_seconds,
        "artifortress test bed API started"
    );
    match axum::serve(listener, app)
        .with_graceful_shutdown(testbed::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("artifortress-testbed-api: server error: {e}");
            ExitCode::from(1)
        }
    }
}
