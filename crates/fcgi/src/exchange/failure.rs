//! Why an exchange failed, and the one rule for sending it again: a request
//! whose connection closed before any byte of its answer came never reached
//! a server that took it (a stale kept connection), so a request that can
//! be replayed goes once more on a fresh connection.

use std::io;

use crate::error::{connection_error, is_closed, Error};

/// Why an exchange failed, and whether sending it again is safe.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    /// Nothing of the response arrived and the connection closed: the
    /// server never saw the request (a stale kept connection).
    pub(crate) retryable: bool,
}

impl Failure {
    /// A failure after which the request must not be sent again.
    pub(crate) fn fatal(error: Error) -> Failure {
        Failure {
            error,
            retryable: false,
        }
    }

    /// `error` after `received` bytes of the answer; retryable when the
    /// connection was found `closed` and none came.
    pub(crate) fn new(error: Error, closed: bool, received: u64) -> Failure {
        Failure {
            error,
            retryable: closed && received == 0,
        }
    }

    /// An I/O failure on the connection to `address`, `received` bytes into
    /// the answer: [`connection_error`]'s error, retryable when the peer
    /// closed the connection before any of the answer came.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the async client's
    pub(crate) fn io(address: String, received: u64, source: io::Error) -> Failure {
        let closed = is_closed(&source);
        Failure::new(
            connection_error(address, received, source),
            closed,
            received,
        )
    }

    /// Whether to send the request again on a fresh connection: it failed
    /// unanswered on a connection that had carried requests before, and
    /// its body can be sent again.
    pub(crate) fn retry_on_fresh(&self, reused: bool, replayable: bool) -> bool {
        self.retryable && reused && replayable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_error() -> Error {
        Error::ConnectionClosed {
            address: "unix:/x.sock".into(),
            received: 0,
        }
    }

    #[test]
    fn only_an_unanswered_request_on_a_reused_connection_is_sent_again() {
        let unanswered = Failure::new(closed_error(), true, 0);
        assert!(unanswered.retry_on_fresh(true, true));
        assert!(
            !unanswered.retry_on_fresh(false, true),
            "a fresh connection failed"
        );
        assert!(
            !unanswered.retry_on_fresh(true, false),
            "the body cannot be replayed"
        );
        let answered = Failure::new(closed_error(), true, 8);
        assert!(!answered.retry_on_fresh(true, true));
        let other_fault = Failure::new(closed_error(), false, 0);
        assert!(!other_fault.retry_on_fresh(true, true));
        assert!(!Failure::fatal(closed_error()).retry_on_fresh(true, true));
    }
}
