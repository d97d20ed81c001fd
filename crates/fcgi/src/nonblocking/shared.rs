//! What a request shares with the code that moves its bytes, on either
//! path: the driver of a multiplexed connection ([`super::mux`]) or the
//! body writer of a connection the request has alone ([`super::single`]).
//! Both record activity (for the idle limit) and the first failure here;
//! the request's reader looks at them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock::lock;
use crate::exchange::Failure;

/// What a request shares with whoever moves its bytes: when a byte last
/// moved (either way), and why it failed, if it did.
#[derive(Debug)]
pub(crate) struct RequestShared {
    base: Instant,
    /// Microseconds since `base` of the last byte moved for this request.
    activity: AtomicU64,
    /// Why the request ended early; the first writer wins.
    failure: Mutex<Option<Failure>>,
}

impl RequestShared {
    pub(crate) fn new() -> RequestShared {
        RequestShared {
            base: Instant::now(),
            activity: AtomicU64::new(0),
            failure: Mutex::new(None),
        }
    }

    /// Records that a byte moved now.
    #[inline]
    pub(crate) fn touch(&self) {
        let now = self.base.elapsed().as_micros() as u64;
        self.activity.fetch_max(now, Ordering::Relaxed);
    }

    /// When the last byte moved.
    #[inline]
    pub(crate) fn last_activity(&self) -> Instant {
        self.base + Duration::from_micros(self.activity.load(Ordering::Relaxed))
    }

    /// Records why the request failed, unless a reason is already known.
    pub(crate) fn fail(&self, failure: Failure) {
        let mut slot = lock(&self.failure);
        if slot.is_none() {
            *slot = Some(failure);
        }
    }

    pub(crate) fn take_failure(&self) -> Option<Failure> {
        lock(&self.failure).take()
    }
}
