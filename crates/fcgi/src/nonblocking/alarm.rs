//! [`Alarm`]: the one tokio timer a waiting request (or a connection that
//! carries a single request at a time, for all its requests) arms and
//! moves, so that most requests register no timer of their own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// The tokio timer that wakes a waiting request when one of its limits
/// passes. A single-request connection keeps one for all its requests: a request
/// moves it only when its limit comes sooner than the armed time or the
/// armed time has passed (it then fired early, and the wait goes on), so
/// most requests register no timer and allocate none. Created in the
/// runtime whose timers it uses, like the socket it goes with.
#[derive(Debug)]
pub(crate) struct Alarm(Pin<Box<tokio::time::Sleep>>);

impl Alarm {
    /// An alarm not yet set to any useful time.
    pub(crate) fn new() -> Alarm {
        Alarm(Box::pin(tokio::time::sleep_until(
            tokio::time::Instant::now(),
        )))
    }

    /// Waits until `wake_at` at the latest (`now` is the caller's clock
    /// reading); ready when the alarm fired, which may be before `wake_at`.
    pub(crate) fn poll_until(
        &mut self,
        wake_at: Instant,
        now: Instant,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let armed_at = self.0.deadline().into_std();
        if wake_at < armed_at || armed_at <= now {
            self.0.as_mut().reset(wake_at.into());
        }
        self.0.as_mut().poll(cx)
    }
}
