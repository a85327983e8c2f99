//! Reusable helpers for tests that need real servers (no mocks).

pub mod api;
pub mod garage;
pub mod postgres;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; tiny race, fine for tests).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// `acceptance-tests/testbed/` (migrations, seed, scripts).
pub fn testbed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testbed")
}

/// `acceptance-tests/testbed/migrations/`.
pub fn migrations_dir() -> PathBuf {
    testbed_dir().join("migrations")
}

/// Poll `f` every 50 ms until it returns `Some`, or give up after `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Send a signal to a process id (e.g. `libc::SIGTERM`). Returns false if it does not exist.
pub fn send_signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) with a concrete pid; no memory is touched.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}
