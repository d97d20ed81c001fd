//! What a server answered.

use std::borrow::Cow;

pub use fcgi_proto::head::Headers;

/// A complete response, collected in memory. It may grow: outside this
/// crate it is read, or made with [`Response::new`] (to test code that
/// handles responses).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// HTTP status code (from `Status`, 302 for a bare `Location`, else 200).
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Response headers in order, repetitions kept (`Status` excluded).
    pub headers: Headers,
    /// The body: STDOUT after the head.
    pub body: Vec<u8>,
    /// The STDERR stream, up to [`crate::Limits::max_stderr_bytes`].
    pub stderr: Vec<u8>,
    /// STDERR bytes dropped over the limit (0 when all was kept).
    pub stderr_dropped: u64,
    /// The application status of END_REQUEST (php-fpm always sends 0).
    pub app_status: u32,
}

impl Response {
    /// A response with this status, headers and body, and no STDERR.
    ///
    /// ```
    /// use fcgi::{Authorization, Headers, Response};
    /// let mut headers = Headers::new();
    /// headers.append("Variable-USER", "ann");
    /// let granted = Authorization::from_response(Response::new(200, headers, Vec::new()));
    /// assert!(granted.is_granted());
    /// ```
    pub fn new(status: u16, headers: Headers, body: Vec<u8>) -> Response {
        Response {
            status,
            reason: String::new(),
            headers,
            body,
            stderr: Vec::new(),
            stderr_dropped: 0,
            app_status: 0,
        }
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn body_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// STDERR as text, invalid UTF-8 replaced.
    pub fn stderr_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The head of a streamed response, as both clients' `ResponseStream`s
/// keep it: empty (status 0) until the head has arrived.
#[derive(Default)]
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) reason: Cow<'static, str>,
    pub(crate) headers: Headers,
}

impl ResponseHead {
    /// Takes the parsed head.
    pub(crate) fn set(&mut self, head: fcgi_proto::head::Head) {
        self.status = head.status;
        self.reason = head.reason;
        self.headers = head.headers;
    }

    /// True once the head has arrived.
    pub(crate) fn arrived(&self) -> bool {
        self.status != 0
    }

    /// The `Debug` output of a `ResponseStream` with this head.
    pub(crate) fn debug_stream(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Where both clients' `ResponseStream`s keep what their head accessors
/// ([`stream_head!`]) return: the head, when the request began, and the
/// STDERR kept so far (in the response machine, or where the blocking
/// stream put it when it let its connection go).
pub(crate) trait StreamHead {
    /// The head (empty until it has arrived).
    fn response_head(&self) -> &ResponseHead;
    /// When the client began the request.
    fn request_started(&self) -> std::time::Instant;
    /// STDERR kept so far.
    fn kept_stderr(&self) -> &[u8];
}

/// The public head accessors (`started`, `status`, `reason`, `headers`,
/// `stderr`) and the `Debug` impl of a `ResponseStream` that implements
/// [`StreamHead`]: one text for both clients' streams, whose methods keep
/// their names and docs.
macro_rules! stream_head {
    ($stream:ident) => {
        impl $stream {
            /// When the client began this request (before it took a connection):
            /// `started().elapsed()` at the end is the request's whole duration.
            pub fn started(&self) -> std::time::Instant {
                $crate::response::StreamHead::request_started(self)
            }

            /// HTTP status code.
            pub fn status(&self) -> u16 {
                $crate::response::StreamHead::response_head(self).status
            }

            /// Reason phrase.
            pub fn reason(&self) -> &str {
                &$crate::response::StreamHead::response_head(self).reason
            }

            /// Response headers.
            pub fn headers(&self) -> &$crate::Headers {
                &$crate::response::StreamHead::response_head(self).headers
            }

            /// STDERR received so far (up to [`crate::Limits::max_stderr_bytes`]).
            pub fn stderr(&self) -> &[u8] {
                $crate::response::StreamHead::kept_stderr(self)
            }
        }

        impl std::fmt::Debug for $stream {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $crate::response::StreamHead::response_head(self).debug_stream(f)
            }
        }
    };
}
pub(crate) use stream_head;

/// A response body collected in memory up to a limit, then made into a
/// [`Response`] with its head and what END_REQUEST and STDERR said.
pub(crate) struct BodyCollector {
    body: Vec<u8>,
    max: usize,
}

impl BodyCollector {
    /// Collects at most `max` bytes ([`crate::Limits::max_body_bytes`]).
    pub(crate) fn new(max: usize) -> BodyCollector {
        BodyCollector {
            body: Vec::new(),
            max,
        }
    }

    /// Adds body bytes; past the limit, [`crate::Limit::BodyBytes`].
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), crate::Error> {
        if self.body.len() + bytes.len() > self.max {
            return Err(crate::Error::LimitExceeded {
                limit: crate::Limit::BodyBytes,
                max: self.max,
            });
        }
        self.body.extend_from_slice(bytes);
        Ok(())
    }

    /// The whole response.
    pub(crate) fn into_response(
        self,
        head: ResponseHead,
        trailer: crate::blocking::Trailer,
    ) -> Response {
        Response {
            status: head.status,
            reason: head.reason.into_owned(),
            headers: head.headers,
            body: self.body,
            stderr: trailer.stderr,
            stderr_dropped: trailer.stderr_dropped,
            app_status: trailer.app_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocking::Trailer;

    #[test]
    fn a_body_over_the_limit_is_refused() {
        let mut body = BodyCollector::new(5);
        body.push(b"abc").unwrap();
        assert!(matches!(
            body.push(b"def"),
            Err(crate::Error::LimitExceeded {
                limit: crate::Limit::BodyBytes,
                max: 5
            })
        ));
        body.push(b"de").unwrap();
        let mut head = ResponseHead::default();
        assert!(!head.arrived());
        head.status = 201;
        let trailer = Trailer {
            stderr: b"warn".to_vec(),
            stderr_dropped: 1,
            app_status: 3,
        };
        let response = body.into_response(head, trailer);
        assert_eq!(
            (response.status, &response.body[..], &response.stderr[..]),
            (201, &b"abcde"[..], &b"warn"[..])
        );
        assert_eq!((response.stderr_dropped, response.app_status), (1, 3));
    }
}
