//! Actions (Terraform >= 1.14): one file each, joining a domain client to the protocol layer
//! like a resource does, but with no state. Invoked with
//! `terraform apply -invoke=action.<type>.<name>` or by `action_trigger` in a resource's
//! `lifecycle`; progress goes to Terraform's console as progress events
//! (`framework::Progress`), the result is the diagnostics. Registered in `provider.rs`
//! (`actions()`).
//!
//! Here, what the actions share: byte counts and rates in words, and a ticker that reports
//! while an operation runs.

use std::future::Future;
use std::time::Duration;

pub mod restore_database;
pub mod rollback_release;
pub mod run_restore_drill;
pub mod run_smoke;
pub mod take_backup;

/// `1.5 GiB`, `12.0 MiB`, `812 B`: binary units, one decimal.
pub(crate) fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `12.0 MiB/s` for `bytes` in `elapsed` (`0 B/s` for no time at all).
pub(crate) fn rate_text(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "0 B/s".into();
    }
    format!("{}/s", bytes_text((bytes as f64 / secs) as u64))
}

/// Awaits `work`, calling `tick` every `every` while it runs (not at the start, never after
/// it ended): progress reported periodically rather than per chunk.
pub(crate) async fn with_ticks<T>(
    work: impl Future<Output = T>,
    every: Duration,
    mut tick: impl FnMut(),
) -> T {
    tokio::pin!(work);
    let start = tokio::time::Instant::now() + every;
    let mut ticks = tokio::time::interval_at(start, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = ticks.tick() => tick(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_rates_read_as_an_operator_writes_them() {
        assert_eq!(bytes_text(0), "0 B");
        assert_eq!(bytes_text(1023), "1023 B");
        assert_eq!(bytes_text(1024), "1.0 KiB");
        assert_eq!(bytes_text(1536 * 1024), "1.5 MiB");
        assert_eq!(bytes_text(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(
            rate_text(100 * 1024 * 1024, Duration::from_secs(10)),
            "10.0 MiB/s"
        );
        assert_eq!(rate_text(5, Duration::ZERO), "0 B/s");
    }

    #[tokio::test]
    async fn ticks_come_periodically_while_the_work_runs_and_never_after() {
        let mut ticks = 0;
        let out = with_ticks(
            async {
                tokio::time::sleep(Duration::from_millis(350)).await;
                7
            },
            Duration::from_millis(100),
            || ticks += 1,
        )
        .await;
        assert_eq!(out, 7);
        // At 100, 200 and 300 ms on an idle machine; a loaded one may skip some, never add.
        assert!((1..=3).contains(&ticks), "{ticks} ticks");
        let mut none = 0;
        with_ticks(async {}, Duration::from_millis(100), || none += 1).await;
        assert_eq!(none, 0, "none at the start");
    }
}
