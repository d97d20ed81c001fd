//! The time limits of one exchange, for both clients: the transport says
//! what time it is and when a byte last moved, and the timer answers when
//! it must look again, or which limit has passed. It never reads a socket
//! or arms a timer itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::Timeouts;
use crate::error::{Error, TimeoutPhase};

/// When a byte last moved for an exchange, either way, as time after a
/// start: what the idle limit counts from. Microseconds in an atomic, so
/// that whoever moves the bytes records it from its own thread or task (the
/// blocking body writer, a multiplexed connection's driver); an older
/// reading never moves it back. Both clients: the blocking `Conn` counts
/// from its request's [`Timer`] start, the async `RequestShared` from its
/// own.
#[derive(Debug, Default)]
pub(crate) struct Activity(AtomicU64);

impl Activity {
    /// Records a byte having moved `since_start` after the start.
    #[inline]
    pub(crate) fn record(&self, since_start: Duration) {
        self.0
            .fetch_max(since_start.as_micros() as u64, Ordering::Relaxed);
    }

    /// When a byte last moved, after the start (zero before any did).
    #[inline]
    pub(crate) fn last(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }

    /// Nothing moved yet: for a new exchange counted from a new start.
    pub(crate) fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// The limits of one request ([`Timeouts`]) and when it began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    start: Instant,
    pub(crate) timeouts: Timeouts,
}

impl Timer {
    /// Limits counted from now.
    pub(crate) fn new(timeouts: Timeouts) -> Timer {
        Timer::starting_at(Instant::now(), timeouts)
    }

    /// Limits counted from `start`.
    pub(crate) fn starting_at(start: Instant, timeouts: Timeouts) -> Timer {
        Timer { start, timeouts }
    }

    /// When the request began.
    pub(crate) fn started(&self) -> Instant {
        self.start
    }

    /// When the overall deadline passes.
    pub(crate) fn deadline_at(&self) -> Instant {
        self.start + self.timeouts.deadline
    }

    /// Time left before the overall deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline_at().saturating_duration_since(Instant::now())
    }

    /// When to look again at the latest, given that a byte last moved at
    /// `last_activity`; or the limit that has passed by `now` (the
    /// deadline first when both have).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the async client's
    pub(crate) fn next_timeout(
        &self,
        now: Instant,
        last_activity: Instant,
    ) -> Result<Instant, TimeoutPhase> {
        let deadline_at = self.deadline_at();
        if now >= deadline_at {
            return Err(TimeoutPhase::Deadline);
        }
        let idle_at = last_activity + self.timeouts.idle;
        if now >= idle_at {
            return Err(TimeoutPhase::Idle);
        }
        Ok(deadline_at.min(idle_at))
    }

    /// [`Timer::next_timeout`] on times counted from the start (one clock
    /// reading, no instant arithmetic: the blocking client's read loop):
    /// how long to wait at most, `elapsed` since the start, a byte having
    /// last moved `last_activity` after the start.
    pub(crate) fn wait_after(
        &self,
        elapsed: Duration,
        last_activity: Duration,
    ) -> Result<Duration, TimeoutPhase> {
        let deadline = self.timeouts.deadline.saturating_sub(elapsed);
        if deadline.is_zero() {
            return Err(TimeoutPhase::Deadline);
        }
        let idle = (last_activity + self.timeouts.idle).saturating_sub(elapsed);
        if idle.is_zero() {
            return Err(TimeoutPhase::Idle);
        }
        Ok(deadline.min(idle))
    }

    /// The error for the limit of `phase` having passed: each phase names
    /// its own limit (the connect timeout for [`TimeoutPhase::Connect`],
    /// the idle timeout for [`TimeoutPhase::Idle`]), any other the overall
    /// deadline. (A pool wait has a limit of the async client's own and
    /// makes its error there.)
    pub(crate) fn expired(&self, address: &str, phase: TimeoutPhase) -> Error {
        Error::Timeout {
            phase,
            after: match phase {
                TimeoutPhase::Connect => self.timeouts.connect,
                TimeoutPhase::Idle => self.timeouts.idle,
                TimeoutPhase::Deadline | TimeoutPhase::PoolWait => self.timeouts.deadline,
            },
            address: address.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer() -> (Timer, Instant) {
        let start = Instant::now();
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            idle: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
        };
        (Timer::starting_at(start, timeouts), start)
    }

    fn after(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn the_idle_limit_counts_from_the_last_activity() {
        let (timer, start) = timer();
        assert_eq!(timer.next_timeout(start, start), Ok(after(start, 5)));
        assert_eq!(
            timer.next_timeout(after(start, 4), after(start, 3)),
            Ok(after(start, 8))
        );
        assert_eq!(
            timer.next_timeout(after(start, 9), after(start, 3)),
            Err(TimeoutPhase::Idle)
        );
    }

    #[test]
    fn the_deadline_caps_the_wait_and_wins_when_both_passed() {
        let (timer, start) = timer();
        assert_eq!(
            timer.next_timeout(after(start, 28), after(start, 27)),
            Ok(after(start, 30))
        );
        assert_eq!(
            timer.next_timeout(after(start, 40), after(start, 1)),
            Err(TimeoutPhase::Deadline)
        );
    }

    #[test]
    fn activity_recorded_from_another_thread_moves_the_idle_limit() {
        let activity = Activity::default();
        assert_eq!(activity.last(), Duration::ZERO);
        activity.record(Duration::from_secs(2));
        // An older reading never moves it back.
        activity.record(Duration::from_secs(1));
        assert_eq!(activity.last(), Duration::from_secs(2));
        activity.reset();
        assert_eq!(activity.last(), Duration::ZERO);
    }

    #[test]
    fn waits_counted_from_the_start_follow_the_same_rule() {
        let (timer, start) = timer();
        let secs = Duration::from_secs;
        for (now, last) in [(4, 3), (9, 3), (28, 27), (40, 1), (0, 0)] {
            let by_instant = timer
                .next_timeout(after(start, now), after(start, last))
                .map(|at| at.duration_since(after(start, now)));
            assert_eq!(timer.wait_after(secs(now), secs(last)), by_instant);
        }
    }

    #[test]
    fn each_phase_reports_its_own_limit() {
        let (timer, _) = timer();
        let after_of = |phase| match timer.expired("unix:/x.sock", phase) {
            Error::Timeout {
                after, phase: p, ..
            } if p == phase => after,
            other => panic!("not a timeout of {phase:?}: {other:?}"),
        };
        assert_eq!(after_of(TimeoutPhase::Connect), Duration::from_secs(1));
        assert_eq!(after_of(TimeoutPhase::Idle), Duration::from_secs(5));
        assert_eq!(after_of(TimeoutPhase::Deadline), Duration::from_secs(30));
    }
}
