//! What a request shares with the code that moves its bytes, on either
//! path: the driver of a multiplexed connection ([`super::mux`]) or the
//! body writer of a connection the request has alone ([`super::single`]).
//! Both record activity (for the idle limit) and the first failure here;
//! the request's reader looks at them.

use std::sync::Mutex;
use std::time::Instant;

use super::lock::lock;
use crate::exchange::{Activity, Failure};

/// What a request shares with whoever moves its bytes: when a byte last
/// moved (either way), and why it failed, if it did.
#[derive(Debug)]
pub(crate) struct RequestShared {
    base: Instant,
    /// Microseconds since `base` of the last byte moved for this request.
    activity: Activity,
    /// Why the request ended early; the first writer wins.
    failure: Mutex<Option<Failure>>,
}

impl RequestShared {
    pub(crate) fn new() -> RequestShared {
        RequestShared {
            base: Instant::now(),
            activity: Activity::default(),
            failure: Mutex::new(None),
        }
    }

    /// Records that a byte moved now.
    #[inline]
    pub(crate) fn touch(&self) {
        self.activity.record(self.base.elapsed());
    }

    /// When the last byte moved.
    #[inline]
    pub(crate) fn last_activity(&self) -> Instant {
        self.base + self.activity.last()
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
