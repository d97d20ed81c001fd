//! What a server answered.

use std::borrow::Cow;

pub use fcgi_proto::head::Headers;

/// A complete response, collected in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
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
