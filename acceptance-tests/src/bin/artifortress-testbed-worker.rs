//! Artifortress test bed worker: sweeps the outbox and search index jobs. No HTTP port.
//! `--once` runs one sweep and exits (non-zero if the sweep fails).

use std::process::ExitCode;
use std::time::Duration;

use acceptance_tests::testbed::{self, clients, worker};

#[tokio::main]
async fn main() -> ExitCode {
    testbed::init_logging();
    let mut once = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--once" => once = true,
            "-h" | "--help" => {
                println!("usage: artifortress-testbed-worker [--once]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("artifortress-testbed-worker: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let cfg = match worker::WorkerConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("artifortress-testbed-worker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let pool = clients::lazy_pool(cfg.postgres.clone(), 2);
    tracing::info!(
        poll_seconds = cfg.poll_seconds,
        batch_size = cfg.batch_size,
        max_attempts = cfg.search_job_max_attempts,
        lease_seconds = cfg.search_job_lease_seconds,
        once,
        "artifortress test bed worker started"
    );
    let shutdown = testbed::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let result = tokio::select! {
            r = worker::sweep(&pool, &cfg) => r,
            _ = &mut shutdown => return ExitCode::SUCCESS,
        };
        match result {
            Ok(r) => tracing::info!("{r}"),
            Err(e) => {
                let reason = clients::describe_pg_error(&e, &cfg.postgres).await;
                if once {
                    eprintln!(
                        "artifortress-testbed-worker: sweep failed (is PostgreSQL reachable and migrated?): {reason}"
                    );
                    return ExitCode::from(1);
                }
                tracing::error!("sweep failed: {reason}");
            }
        }
        if once {
            return ExitCode::SUCCESS;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(cfg.poll_seconds)) => {}
            _ = &mut shutdown => return ExitCode::SUCCESS,
        }
    }
}
