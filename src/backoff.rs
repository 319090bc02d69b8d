//! The one backoff of every retry: a pause that starts at `first`, grows by `factor` after
//! each further failure up to `max`, optionally jittered, optionally limited to a number of
//! attempts or a time since the first one.
//!
//! Loops that retry for ever (a listener that reconnects, a worker that takes again) keep a
//! count of consecutive failures and ask [`Backoff::delay`]; loops that give up take
//! [`Backoff::start`]'s [`Retries`], or let [`Backoff::retry`] run the whole loop.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// An exponential backoff. `Copy`, so a `const` can be shared by every retry of a kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    factor: u32,
    /// The fraction of each pause that may be taken off at random (0: none).
    jitter: f64,
    /// Attempts in all, the first included.
    attempts: Option<u32>,
    /// How long after the first attempt the last pause may end.
    deadline: Option<Duration>,
}

impl Backoff {
    /// `first` after the first failure, doubling after each further one, at most `max`; no
    /// jitter, no limit.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            factor: 2,
            jitter: 0.0,
            attempts: None,
            deadline: None,
        }
    }

    /// Grows the pause by `factor` (at least 1) instead of doubling it.
    pub const fn factor(self, factor: u32) -> Self {
        Backoff {
            factor: if factor == 0 { 1 } else { factor },
            ..self
        }
    }

    /// Takes up to `fraction` (clamped to 0..=1) of each pause off at random, so that many
    /// clients failing together do not all try again together. A pause never grows by it.
    pub fn jitter(self, fraction: f64) -> Self {
        Backoff {
            jitter: if fraction.is_nan() {
                0.0
            } else {
                fraction.clamp(0.0, 1.0)
            },
            ..self
        }
    }

    /// At most `attempts` attempts in all (at least 1), the first included.
    pub const fn attempts(self, attempts: u32) -> Self {
        Backoff {
            attempts: Some(if attempts == 0 { 1 } else { attempts }),
            ..self
        }
    }

    /// No pause that would end `deadline` or later after [`Backoff::start`].
    pub const fn deadline(self, deadline: Duration) -> Self {
        Backoff {
            deadline: Some(deadline),
            ..self
        }
    }

    /// The pause after the `failures`-th failure in a row (1-based; 0 counts as 1), jittered
    /// when asked for. Ignores the attempt limit and the deadline.
    pub fn delay(&self, failures: u32) -> Duration {
        let mut pause = self.first;
        // Multiplied step by step (not by factor^n, which saturates u32 before the pause
        // reaches `max` when `first` is tiny); at most ~100 steps before `max` or saturation.
        for _ in 1..failures {
            if pause >= self.max || self.factor == 1 {
                break;
            }
            pause = pause.saturating_mul(self.factor);
        }
        let pause = pause.min(self.max);
        if self.jitter > 0.0 {
            let scaled = pause.as_secs_f64() * (1.0 - self.jitter * random_fraction());
            // Rounding to f64 must not lengthen it (nor overflow near `Duration::MAX`).
            Duration::try_from_secs_f64(scaled).map_or(pause, |p| p.min(pause))
        } else {
            pause
        }
    }

    /// The pause after failed attempt number `attempt` (1-based), or `None` when that was the
    /// last attempt allowed. Ignores the deadline (it has no start to count from).
    pub fn after(&self, attempt: u32) -> Option<Duration> {
        match self.attempts {
            Some(attempts) if attempt >= attempts => None,
            _ => Some(self.delay(attempt)),
        }
    }

    /// The retries of one operation, whose first attempt starts now.
    pub fn start(&self) -> Retries {
        Retries {
            backoff: *self,
            failures: 0,
            started: Instant::now(),
        }
    }

    /// Runs `op` until it succeeds, fails with an error that is not `transient`, or the
    /// attempts or the deadline are used up (then the last error is returned). Before each
    /// pause, `retrying` is told the error and the pause.
    pub async fn retry<T, E, F, Fut>(
        &self,
        mut op: F,
        transient: impl Fn(&E) -> bool,
        mut retrying: impl FnMut(&E, Duration),
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut retries = self.start();
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(e) if transient(&e) => e,
                Err(e) => return Err(e),
            };
            let Some(pause) = retries.next() else {
                return Err(error);
            };
            retrying(&error, pause);
            tokio::time::sleep(pause).await;
        }
    }
}

/// The pauses of one operation that is tried again: each [`Iterator::next`], called after a
/// failed attempt, is the pause before the next one, or `None` when the attempts are used up or
/// the pause would end at or after the deadline.
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    failures: u32,
    started: Instant,
}

impl Iterator for Retries {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        let pause = self.backoff.after(self.failures)?;
        match self.backoff.deadline {
            Some(deadline) if Instant::now() + pause >= self.started + deadline => None,
            _ => Some(pause),
        }
    }
}

/// A number in [0, 1), different at each call. Jitter only spreads clients out, so the
/// randomly keyed hasher of the standard library is random enough (no RNG dependency).
fn random_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_pause_doubles_up_to_its_maximum() {
        let backoff = Backoff::new(ms(100), ms(500));
        let pauses: Vec<_> = (1..=5).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 500, 500]);
        assert_eq!(backoff.delay(0), ms(100));
        assert_eq!(backoff.delay(u32::MAX), ms(500));
    }

    #[test]
    fn a_tiny_first_pause_still_reaches_its_maximum() {
        // 1 ns × 2^31 is only 2 s: the maximum is reached by growing, not by a capped power.
        let backoff = Backoff::new(Duration::from_nanos(1), Duration::from_secs(3600));
        assert_eq!(backoff.delay(100), Duration::from_secs(3600));
        assert_eq!(
            Backoff::new(ms(1), Duration::MAX).delay(1000),
            Duration::MAX
        );
    }

    #[test]
    fn the_factor_sets_the_growth() {
        let backoff = Backoff::new(ms(10), ms(1000)).factor(3);
        let pauses: Vec<_> = (1..=6).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(pauses, [10, 30, 90, 270, 810, 1000]);
        let constant = Backoff::new(ms(10), ms(1000)).factor(0);
        assert_eq!(constant.delay(50), ms(10));
    }

    #[test]
    fn jitter_only_shortens_a_pause_and_varies_it() {
        let backoff = Backoff::new(ms(1000), ms(8000)).jitter(0.5);
        let mut seen = std::collections::HashSet::new();
        for n in 1..=200 {
            let full = Backoff::new(ms(1000), ms(8000)).delay(n);
            let pause = backoff.delay(n);
            assert!(pause <= full && pause >= full / 2, "{pause:?} of {full:?}");
            seen.insert(pause);
        }
        assert!(seen.len() > 100, "only {} different pauses", seen.len());
        // Out of range: clamped.
        let all = Backoff::new(ms(1000), ms(1000)).jitter(7.0);
        assert!((0..50).all(|_| all.delay(1) <= ms(1000)));
        assert!(Backoff::new(ms(1), Duration::MAX).jitter(0.1).delay(1000) > ms(1));
        assert_eq!(
            Backoff::new(ms(1000), ms(1000)).jitter(-1.0).delay(1),
            ms(1000)
        );
    }

    #[test]
    fn the_attempt_limit_counts_the_first_attempt() {
        let backoff = Backoff::new(ms(50), Duration::MAX).attempts(5);
        let pauses: Vec<_> = backoff.start().map(|p| p.as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 400]);
        assert_eq!(backoff.after(4), Some(ms(400)));
        assert_eq!(backoff.after(5), None);
        assert_eq!(
            Backoff::new(ms(50), ms(50)).attempts(0).start().next(),
            None
        );
        // Without a limit there is always one more.
        assert_eq!(Backoff::new(ms(50), ms(80)).start().nth(1000), Some(ms(80)));
    }

    #[test]
    fn no_pause_ends_at_or_after_the_deadline() {
        let (hour, secs) = (Duration::from_secs(3600), Duration::from_secs);
        let long = Backoff::new(secs(30), secs(30)).deadline(hour);
        assert_eq!(long.start().take(100).count(), 100);
        // Started almost an hour ago: 20 s are left, less than the 30 s pause ...
        let started = Instant::now().checked_sub(hour - secs(20)).unwrap();
        let mut late = Retries {
            started,
            ..long.start()
        };
        assert_eq!(late.next(), None);
        // ... but more than a 1 ms one.
        let short = Backoff::new(ms(1), ms(1)).deadline(hour);
        let mut in_time = Retries {
            started,
            ..short.start()
        };
        assert_eq!(in_time.next(), Some(ms(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_success_at_a_lasting_error_and_when_used_up() {
        let backoff = Backoff::new(ms(100), ms(300)).attempts(4);
        let calls = AtomicU32::new(0);
        let mut pauses = Vec::new();
        // Two transient failures, then success.
        let got: Result<u32, &str> = backoff
            .retry(
                || async {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 | 1 => Err("transient"),
                        n => Ok(n),
                    }
                },
                |e| *e == "transient",
                |_, pause| pauses.push(pause),
            )
            .await;
        assert_eq!(got, Ok(2));
        assert_eq!(pauses, [ms(100), ms(200)]);

        // A lasting error is returned at once.
        calls.store(0, Ordering::SeqCst);
        let got: Result<(), &str> = backoff
            .retry(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("lasting")
                },
                |e| *e == "transient",
                |_, _| {},
            )
            .await;
        assert_eq!((got, calls.load(Ordering::SeqCst)), (Err("lasting"), 1));

        // Transient for ever: four attempts, three pauses, then the last error.
        calls.store(0, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let got: Result<(), u32> = backoff
            .retry(
                || async { Err(calls.fetch_add(1, Ordering::SeqCst)) },
                |_| true,
                |_, _| {},
            )
            .await;
        assert_eq!(got, Err(3));
        assert_eq!(started.elapsed(), ms(100 + 200 + 300));
    }
}
