//! Polling until a deadline: try, pause, try again until an attempt succeeds, the time is up
//! or the caller cancels. One schedule ([`Poller`]), so every wait agrees on when it gives up:
//! after an attempt, when one more pause would end past the deadline (no attempt after it).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Why a [`Poller`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GaveUp {
    /// One more pause would have ended past the deadline.
    TimedOut,
    /// The wait was cancelled before an attempt.
    Cancelled,
}

/// The schedule of a wait: `loop { poller.next_attempt().await?; <attempt> }`. The caller's
/// loop keeps its own state (what to say on giving up), so it stays an ordinary, `Send`
/// future.
pub(super) struct Poller<'a> {
    deadline: Instant,
    interval: Duration,
    cancel: &'a CancellationToken,
    attempted: bool,
}

impl<'a> Poller<'a> {
    /// A wait of at most `timeout` from now, one attempt every `interval`.
    pub(super) fn new(
        timeout: Duration,
        interval: Duration,
        cancel: &'a CancellationToken,
    ) -> Poller<'a> {
        Poller {
            deadline: Instant::now() + timeout,
            interval,
            cancel,
            attempted: false,
        }
    }

    /// Waits until the next attempt is due: at once the first time, then one `interval`
    /// after the previous call returned plus the attempt's own time. Gives up with
    /// [`GaveUp::TimedOut`] when that pause would end past the deadline (so no attempt starts
    /// after it), with [`GaveUp::Cancelled`] when `cancel` is cancelled (a pause ends early).
    pub(super) async fn next_attempt(&mut self) -> Result<(), GaveUp> {
        if self.attempted {
            if Instant::now() + self.interval > self.deadline {
                return Err(GaveUp::TimedOut);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
        self.attempted = true;
        if self.cancel.is_cancelled() {
            return Err(GaveUp::Cancelled);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// The loop every caller writes, around a synchronous attempt.
    async fn poll_until<T>(
        timeout: Duration,
        interval: Duration,
        cancel: &CancellationToken,
        mut attempt: impl FnMut() -> Option<T>,
    ) -> Result<T, GaveUp> {
        let mut poller = Poller::new(timeout, interval, cancel);
        loop {
            poller.next_attempt().await?;
            if let Some(value) = attempt() {
                return Ok(value);
            }
        }
    }

    #[tokio::test]
    async fn the_first_value_ends_the_wait() {
        let mut attempts = 0;
        let started = Instant::now();
        let cancel = CancellationToken::new();
        let got = poll_until(Duration::from_secs(60), 10 * MS, &cancel, || {
            attempts += 1;
            (attempts == 3).then_some("ready")
        })
        .await;
        assert_eq!((got, attempts), (Ok("ready"), 3));
        assert!(
            started.elapsed() >= 20 * MS,
            "two pauses between three attempts"
        );
    }

    #[tokio::test]
    async fn no_pause_that_would_end_past_the_deadline() {
        let (timeout, interval) = (250 * MS, 100 * MS);
        let mut attempts = 0;
        let mut last_attempt = Instant::now();
        let started = Instant::now();
        let cancel = CancellationToken::new();
        let got: Result<(), _> = poll_until(timeout, interval, &cancel, || {
            attempts += 1;
            last_attempt = Instant::now();
            None
        })
        .await;
        assert_eq!(got, Err(GaveUp::TimedOut));
        assert!(attempts >= 2, "{attempts} attempts");
        assert!(
            started.elapsed() + interval > timeout,
            "tried until one more pause would not fit"
        );
        assert!(
            last_attempt.elapsed() < interval / 2,
            "no pause after the last attempt"
        );
    }

    #[tokio::test]
    async fn a_timeout_shorter_than_the_interval_is_one_attempt() {
        let mut attempts = 0;
        let cancel = CancellationToken::new();
        let got: Result<(), _> = poll_until(MS, Duration::from_secs(60), &cancel, || {
            attempts += 1;
            None
        })
        .await;
        assert_eq!((got, attempts), (Err(GaveUp::TimedOut), 1));
    }

    #[tokio::test]
    async fn cancellation_stops_before_an_attempt_and_cuts_the_pause_short() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut attempts = 0;
        let got: Result<(), _> = poll_until(Duration::from_secs(60), MS, &cancel, || {
            attempts += 1;
            None
        })
        .await;
        assert_eq!((got, attempts), (Err(GaveUp::Cancelled), 0));

        let cancel = CancellationToken::new();
        let started = Instant::now();
        let mut attempts = 0;
        let got: Result<(), _> = poll_until(
            Duration::from_secs(3600),
            Duration::from_secs(60),
            &cancel,
            || {
                attempts += 1;
                cancel.cancel();
                None
            },
        )
        .await;
        assert_eq!((got, attempts), (Err(GaveUp::Cancelled), 1));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the pause ended at once"
        );
    }
}
