//! Exit codes and the one-line error reports: every failure becomes a
//! [`Failure`], and every `fcgi::Error` is mapped in [`Failure::from_fcgi`].

use std::fmt;

use fcgi::{Limit, TimeoutPhase};

/// Success.
pub const OK: u8 = 0;
/// An unexpected answer (ping, status) or a local file that could not be
/// read or written.
pub const OTHER: u8 = 1;
/// A usage error: bad options, a bad address, a request that cannot be sent.
pub const USAGE: u8 = 2;
/// The connection could not be established.
pub const CONNECT: u8 = 3;
/// A time limit fired.
pub const TIMEOUT: u8 = 4;
/// The peer broke the protocol or closed before the end of the response.
pub const PROTOCOL: u8 = 5;
/// The server rejected the request (CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE).
pub const REJECTED: u8 = 6;
/// A limit was exceeded.
pub const LIMIT: u8 = 7;
/// `--role authorizer` and the authorizer denied the request.
pub const DENIED: u8 = 8;
/// `fcgi eval`: the PHP code failed with a fatal error.
pub const PHP_FATAL: u8 = 9;
/// `--fail` and a status of 400 or more.
pub const HTTP_FAIL: u8 = 22;

/// A failure: the exit code and what to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// One line (no prefix) saying what happened and what to check.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(USAGE, message)
    }

    /// The exit code and message for a library error: the only place where
    /// `fcgi::Error` variants are told apart.
    pub fn from_fcgi(err: &fcgi::Error) -> Failure {
        use fcgi::Error as E;
        let text = err.to_string();
        let (code, hint) = match err {
            E::InvalidAddress(_) => (USAGE, ""),
            E::InvalidRequest(_) => (USAGE, "; check the -H, -p and -d options"),
            E::Connect { .. } => {
                let hint = if text.contains(" (") {
                    ""
                } else {
                    "; check the address and that the server is running"
                };
                (CONNECT, hint)
            }
            E::Timeout { phase, .. } => (
                TIMEOUT,
                match phase {
                    TimeoutPhase::Connect => {
                        "; is the server reachable? (--connect-timeout sets this limit)"
                    }
                    _ => "; the script may be slow or the pool busy (--timeout sets this limit)",
                },
            ),
            E::ConnectionClosed { .. } => (
                PROTOCOL,
                if text.contains("FastCGI server") {
                    ""
                } else {
                    "; check the server's log (a crashed worker, or a request timeout on the server)"
                },
            ),
            E::Protocol { .. } => (
                PROTOCOL,
                if text.contains("FastCGI server") {
                    ""
                } else {
                    "; is this address a FastCGI server (and not HTTP or something else)?"
                },
            ),
            E::Rejected { .. } => (REJECTED, ""),
            E::LimitExceeded { limit, .. } => (
                LIMIT,
                match limit {
                    Limit::HeadBytes => "; raise it with --max-header-bytes",
                    Limit::Params => "; send fewer params",
                    _ => "",
                },
            ),
            E::Body(_) => (OTHER, "; check the file or standard input given with -d"),
            E::Spawn { .. } => (CONNECT, ""),
            E::Io { .. } => (PROTOCOL, "; check the server's log"),
            _ => (OTHER, ""),
        };
        Failure::new(code, format!("{text}{hint}"))
    }
}

impl From<fcgi::Error> for Failure {
    fn from(err: fcgi::Error) -> Failure {
        Failure::from_fcgi(&err)
    }
}

impl fmt::Display for Failure {
    /// `fcgi: error: MESSAGE` on one line (line breaks in the message become
    /// spaces).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one_line: String = self
            .message
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        write!(f, "fcgi: error: {one_line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::time::Duration;

    #[test]
    fn every_error_kind_has_its_exit_code() {
        let cases: Vec<(fcgi::Error, u8)> = vec![
            ("nope".parse::<fcgi::Address>().unwrap_err().into(), USAGE),
            (fcgi::Error::InvalidRequest("x".into()), USAGE),
            (
                fcgi::Error::Connect {
                    address: "a".into(),
                    source: io::ErrorKind::ConnectionRefused.into(),
                },
                CONNECT,
            ),
            (
                fcgi::Error::Timeout {
                    phase: TimeoutPhase::Deadline,
                    after: Duration::from_secs(1),
                    address: "a".into(),
                },
                TIMEOUT,
            ),
            (
                fcgi::Error::ConnectionClosed {
                    address: "a".into(),
                    received: 3,
                },
                PROTOCOL,
            ),
            (
                fcgi::Error::Protocol {
                    address: "a".into(),
                    detail: "x".into(),
                },
                PROTOCOL,
            ),
            (
                fcgi::Error::Rejected {
                    address: "a".into(),
                    status: fcgi::ProtocolStatus::Overloaded,
                },
                REJECTED,
            ),
            (
                fcgi::Error::LimitExceeded {
                    limit: Limit::HeadBytes,
                    max: 10,
                },
                LIMIT,
            ),
            (
                fcgi::Error::Spawn {
                    command: "x".into(),
                    detail: "cannot start it".into(),
                },
                CONNECT,
            ),
        ];
        for (err, code) in cases {
            let failure = Failure::from_fcgi(&err);
            assert_eq!(failure.code, code, "{err}");
            assert!(failure.to_string().starts_with("fcgi: error: "));
        }
    }

    #[test]
    fn a_report_is_one_line() {
        let f = Failure::usage("a\nb\r\nc");
        assert_eq!(f.to_string(), "fcgi: error: a b  c");
    }
}
