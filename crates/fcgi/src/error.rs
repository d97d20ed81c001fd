//! The one error type of the client, with variants a caller can act on.

use std::io;
use std::time::Duration;

use fcgi_proto::decode::DecodeError;
use fcgi_proto::encode::EncodeError;
use fcgi_proto::head::HeadError;
use fcgi_proto::record::ProtocolStatus;

pub use crate::address::AddressError;

/// Whether an I/O error means the peer closed the connection (both
/// clients, reading and writing, go by this one list).
pub(crate) fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// The error for an I/O failure on a connection to `address`, `received`
/// bytes into the answer (both clients, reading or writing):
/// [`Error::ConnectionClosed`] when the peer closed it ([`is_closed`]), else
/// [`Error::Io`]. A timeout is told apart before this, by the caller that
/// knows which limit it armed.
pub(crate) fn connection_error(address: String, received: u64, source: io::Error) -> Error {
    if is_closed(&source) {
        Error::ConnectionClosed { address, received }
    } else {
        Error::Io { address, source }
    }
}

/// A connect to `address` that did not finish within `limit` (both
/// clients).
pub(crate) fn connect_timed_out(address: impl std::fmt::Display, limit: Duration) -> Error {
    Error::Timeout {
        phase: TimeoutPhase::Connect,
        after: limit,
        address: address.to_string(),
    }
}

/// A connect to `address` that failed with `source` (both clients): the
/// system's own connect timeout (ETIMEDOUT, or a blocking connect's
/// WouldBlock) reads as the connect time limit, anything else as
/// [`Error::Connect`].
pub(crate) fn connect_failed(address: &str, limit: Duration, source: io::Error) -> Error {
    match source.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => connect_timed_out(address, limit),
        _ => Error::Connect {
            address: address.to_string(),
            source,
        },
    }
}

/// Which time limit fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutPhase {
    /// Establishing the connection.
    Connect,
    /// No byte moved in either direction for the idle timeout.
    Idle,
    /// The overall deadline of the request passed.
    Deadline,
    /// Waiting for a free connection in a pool.
    PoolWait,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connecting",
            TimeoutPhase::Idle => "waiting for the server (idle timeout)",
            TimeoutPhase::Deadline => "the request (overall deadline)",
            TimeoutPhase::PoolWait => "waiting for a free pooled connection",
        })
    }
}

/// A limit that a request or response exceeded; each is a setting in
/// [`crate::Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`crate::Limits::max_head_bytes`]: the CGI response head.
    HeadBytes,
    /// [`crate::Limits::max_body_bytes`]: the response body kept in memory.
    BodyBytes,
    /// [`crate::Limits::max_params`]: name-value pairs in one request.
    Params,
    /// The async client's buffer for one request's unread response on a
    /// multiplexed connection (memory, then a temporary file): see
    /// `nonblocking::Builder::max_response_temp_file`.
    ResponseBuffer,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::HeadBytes => "max_head_bytes (response head size)",
            Limit::BodyBytes => {
                "max_body_bytes (response body kept in memory; stream large responses instead)"
            }
            Limit::Params => "max_params (name-value pairs per request)",
            Limit::ResponseBuffer => {
                "max_response_temp_file (unread response of one request on a multiplexed connection; read it faster or raise the limit)"
            }
        })
    }
}

/// Everything that can go wrong with a FastCGI request. Each message is one
/// line that says what happened and what to check.
#[doc = include_str!("../doc/errors.md")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address text could not be parsed.
    #[error(transparent)]
    InvalidAddress(#[from] AddressError),

    /// The request cannot be sent as given (nothing was sent).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The connection could not be established.
    #[error("cannot connect to {address}: {source}{}", connect_hint(source))]
    Connect {
        /// The address tried.
        address: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A time limit fired.
    #[error("timed out {phase} after {:.3}s at {address}", after.as_secs_f64())]
    Timeout {
        /// Which limit.
        phase: TimeoutPhase,
        /// The limit's value.
        after: Duration,
        /// The server's address.
        address: String,
    },

    /// The server closed the connection before END_REQUEST.
    #[error("{address} closed the connection before the end of the response ({received} bytes of response received){}", if *received == 0 { "; is this a FastCGI server, and is its worker alive?" } else { "" })]
    ConnectionClosed {
        /// The server's address.
        address: String,
        /// Response bytes (records included) received before the close.
        received: u64,
    },

    /// The server broke the FastCGI protocol.
    #[error("protocol error from {address}: {detail}")]
    Protocol {
        /// The server's address.
        address: String,
        /// What arrived.
        detail: String,
    },

    /// The server ended the request with a protocol status other than
    /// FCGI_REQUEST_COMPLETE.
    #[error("{address} rejected the request: {status}{}", rejection_hint(*status))]
    Rejected {
        /// The server's address.
        address: String,
        /// The status, with its raw value.
        status: ProtocolStatus,
    },

    /// A configured limit was exceeded.
    #[error("limit exceeded: {limit} is {max}")]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// Its value.
        max: usize,
    },

    /// A FastCGI application could not be started or stopped running
    /// ([`crate::spawn`]).
    #[error("application {command:?}: {detail}")]
    Spawn {
        /// The command line.
        command: String,
        /// What went wrong.
        detail: String,
    },

    /// Reading the caller's request body failed.
    #[error("reading the request body failed: {0}")]
    Body(#[source] io::Error),

    /// Another I/O error on the connection.
    #[error("I/O error with {address}: {source}")]
    Io {
        /// The server's address.
        address: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A fault of this client, neither the caller's nor the server's: a
    /// body writer thread that stopped without a result, a connection's
    /// driver or pool gone while a request needed it. It is a bug in fcgi
    /// (please report it); the request may or may not have reached the
    /// server.
    #[error("internal error of the fcgi client (a bug; please report it): {detail}")]
    Internal {
        /// What went wrong.
        detail: String,
    },
}

fn connect_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::NotFound => " (no such socket: check the path and that php-fpm is running)",
        io::ErrorKind::PermissionDenied => {
            " (permission denied: check the socket's owner and mode, e.g. listen.owner/listen.mode)"
        }
        io::ErrorKind::ConnectionRefused => " (nothing listens there: is the server running?)",
        _ => "",
    }
}

fn rejection_hint(status: ProtocolStatus) -> &'static str {
    match status {
        ProtocolStatus::CantMpxConn => {
            " (the server does not multiplex: one request per connection)"
        }
        ProtocolStatus::Overloaded => {
            " (the server is out of resources: retry later or add workers)"
        }
        ProtocolStatus::UnknownRole => " (the server does not support this role)",
        _ => "",
    }
}

impl Error {
    /// The time-limit phase, when this is a timeout.
    pub fn timeout_phase(&self) -> Option<TimeoutPhase> {
        match self {
            Error::Timeout { phase, .. } => Some(*phase),
            _ => None,
        }
    }

    pub(crate) fn internal(detail: impl ToString) -> Error {
        Error::Internal {
            detail: detail.to_string(),
        }
    }

    pub(crate) fn protocol(address: &str, detail: impl ToString) -> Error {
        Error::Protocol {
            address: address.to_string(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn from_decode(address: &str, err: DecodeError) -> Error {
        Error::protocol(address, err)
    }

    pub(crate) fn from_head(address: &str, err: HeadError, max_head: usize) -> Error {
        match err {
            HeadError::TooLarge { .. } => Error::LimitExceeded {
                limit: Limit::HeadBytes,
                max: max_head,
            },
            other => Error::protocol(address, other),
        }
    }
}

impl From<EncodeError> for Error {
    fn from(err: EncodeError) -> Error {
        Error::InvalidRequest(err.to_string())
    }
}
