//! Chunk sizes read as they arrive. hyper decodes a chunked request body
//! but never tells how large a chunk says it is, so a client announcing a
//! 10 GB chunk would get its 413 only once `--max-body-size` bytes of it had
//! come in. nginx refuses at the chunk-size line, and so does `fcgi serve`:
//! [`Framing`] follows the HTTP/1.1 framing of what the client sends
//! (request heads with httparse, the parser hyper uses; Content-Length
//! bodies; chunk-size lines, chunk data and trailers), beside hyper and
//! without changing a byte, and [`Declared`] flags the first request whose
//! chunk sizes add up to more than the limit. That request's body
//! ([`Guarded`]) then ends at once with [`DeclaredTooLarge`], which the
//! gateway answers with 413.
//!
//! Wherever the bytes are something it does not follow exactly (a
//! malformed head or chunk line, a head over its limits, a transfer coding
//! other than chunked, CONNECT), [`Framing`] stops watching the connection:
//! hyper refuses those requests itself and closes, and a body it still
//! reads is counted byte by byte as before.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use fcgi::gateway::DeclaredTooLarge;
use http_body::{Body, Frame, SizeHint};

/// Most header lines a head may have for [`Framing`] to follow it (more:
/// it stops watching).
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (with extensions) or trailer section followed.
const MAX_LINE: usize = 64 * 1024;

/// "No request flagged" in [`Declared::too_large`].
const NONE: u64 = u64::MAX;

/// What the reading side found, for the request handlers: which request (by
/// its number on the connection, from 0) declared too large a body.
#[derive(Debug)]
pub struct Declared {
    too_large: AtomicU64,
    /// The body waiting for its next bytes, woken when a flag is set.
    waiting: Mutex<Option<Waker>>,
}

impl Declared {
    pub fn new() -> Declared {
        Declared {
            too_large: AtomicU64::new(NONE),
            waiting: Mutex::new(None),
        }
    }

    fn flag(&self, request: u64) {
        self.too_large.store(request, Ordering::Release);
        if let Some(waker) = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            waker.wake();
        }
    }

    fn is_too_large(&self, request: u64) -> bool {
        self.too_large.load(Ordering::Acquire) == request
    }

    fn wait(&self, waker: &Waker) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *waiting {
            Some(w) if w.will_wake(waker) => {}
            other => *other = Some(waker.clone()),
        }
    }
}

/// Where in the client's byte stream [`Framing`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// In a request head (its bytes so far are in `pending`).
    Head,
    /// In a body of known length: this many bytes left.
    Fixed(u64),
    /// In a chunk-size line (so far in `pending`).
    SizeLine,
    /// In chunk data: this many bytes left.
    Data(u64),
    /// After chunk data: the CRLF that ends it, `\r` seen or not.
    DataEnd { cr: bool },
    /// In the trailer section (the current line so far in `pending`).
    Trailers,
    /// Not following any more.
    Off,
}

/// Follows the framing of the requests on one connection (sans-IO: fed
/// the bytes as they are read).
#[derive(Debug)]
pub struct Framing {
    at: At,
    /// The request being read (its number on the connection).
    request: u64,
    /// Chunk sizes of the current body so far.
    declared: u64,
    max_body: u64,
    max_head: usize,
    pending: Vec<u8>,
    shared: Arc<Declared>,
}

impl Framing {
    /// `max_body`: the body size over which a request is flagged;
    /// `max_head`: the longest head followed.
    pub fn new(max_body: u64, max_head: usize, shared: Arc<Declared>) -> Framing {
        Framing {
            at: At::Head,
            request: 0,
            declared: 0,
            max_body,
            max_head,
            pending: Vec::new(),
            shared,
        }
    }

    /// The next bytes the client sent.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let used = match self.at {
                At::Off => return,
                At::Head => self.head(bytes),
                At::Fixed(left) | At::Data(left) => {
                    let used = left.min(bytes.len() as u64);
                    self.at = match (self.at, left - used) {
                        (At::Fixed(_), 0) => self.next_request(),
                        (At::Fixed(_), left) => At::Fixed(left),
                        (_, 0) => At::DataEnd { cr: false },
                        (_, left) => At::Data(left),
                    };
                    used as usize
                }
                At::DataEnd { cr } => {
                    self.at = match (cr, bytes[0]) {
                        (false, b'\r') => At::DataEnd { cr: true },
                        (true, b'\n') => At::SizeLine,
                        _ => At::Off,
                    };
                    1
                }
                At::SizeLine | At::Trailers => self.line(bytes),
            };
            bytes = &bytes[used..];
        }
    }

    /// In a head: how many of `bytes` it used.
    fn head(&mut self, bytes: &[u8]) -> usize {
        let earlier = self.pending.len();
        let parsed = if earlier == 0 {
            // The usual case: a whole head in one read, nothing copied.
            self.parse_head(bytes)
        } else {
            self.pending.extend_from_slice(bytes);
            let pending = std::mem::take(&mut self.pending);
            let parsed = self.parse_head(&pending);
            self.pending = pending;
            parsed
        };
        match parsed {
            Some(end) => {
                self.pending.clear();
                end - earlier
            }
            None => {
                if earlier == 0 && self.at == At::Head {
                    self.pending.extend_from_slice(bytes);
                }
                if self.pending.len() > self.max_head {
                    self.stop();
                }
                bytes.len()
            }
        }
    }

    /// Parses a head from `bytes`: its length when complete (and the state
    /// after it set), `None` when more is needed (or following stopped).
    fn parse_head(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Request::new(&mut headers);
        let end = match head.parse(bytes) {
            Ok(httparse::Status::Complete(end)) => end,
            Ok(httparse::Status::Partial) => return None,
            Err(_) => {
                self.stop();
                return None;
            }
        };
        if head.method == Some("CONNECT") {
            self.stop();
            return None;
        }
        let mut chunked = None;
        let mut length = None;
        for header in head.headers.iter() {
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                // The last coding decides; hyper refuses anything else.
                let last = header.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                let last = std::str::from_utf8(last).map(str::trim);
                chunked = Some(last.is_ok_and(|coding| coding.eq_ignore_ascii_case("chunked")));
            } else if header.name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match (length, value) {
                    (_, None) => chunked = Some(false),
                    (Some(earlier), Some(value)) if earlier != value => chunked = Some(false),
                    (_, value) => length = value,
                }
            }
        }
        self.at = match (chunked, length) {
            (Some(true), _) => At::SizeLine,
            (Some(false), _) => {
                self.stop();
                return None;
            }
            (None, Some(len)) if len > 0 => At::Fixed(len),
            (None, _) => self.next_request(),
        };
        Some(end)
    }

    /// In a chunk-size line or a trailer line: how many of `bytes` it used.
    fn line(&mut self, bytes: &[u8]) -> usize {
        let Some(newline) = bytes.iter().position(|&b| b == b'\n') else {
            self.pending.extend_from_slice(bytes);
            if self.pending.len() > MAX_LINE {
                self.stop();
            }
            return bytes.len();
        };
        self.pending.extend_from_slice(&bytes[..newline]);
        let line = std::mem::take(&mut self.pending);
        match self.at {
            At::SizeLine => self.size_line(&line),
            // An empty line ends the trailers, and the request.
            _ if line.is_empty() || line == b"\r" => self.at = self.next_request(),
            _ => {}
        }
        self.pending = line;
        self.pending.clear();
        newline + 1
    }

    /// A whole chunk-size line (without its `\n`).
    fn size_line(&mut self, line: &[u8]) {
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let size = std::str::from_utf8(&line[..digits])
            .ok()
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        let Some(size) = size.filter(|_| digits > 0 && line.last() == Some(&b'\r')) else {
            // No size, an overflow, a bare LF: hyper refuses it (400).
            self.stop();
            return;
        };
        self.declared = self.declared.saturating_add(size);
        if self.declared > self.max_body {
            self.shared.flag(self.request);
            // The answer closes the connection: nothing more to follow.
            self.stop();
        } else if size == 0 {
            self.at = At::Trailers;
        } else {
            self.at = At::Data(size);
        }
    }

    /// The state at the start of the next request.
    fn next_request(&mut self) -> At {
        self.request += 1;
        self.declared = 0;
        At::Head
    }

    fn stop(&mut self) {
        self.at = At::Off;
        self.pending = Vec::new();
    }
}

/// A request body that ends with [`DeclaredTooLarge`] as soon as its
/// request is flagged in [`Declared`].
pub struct Guarded<B> {
    inner: B,
    request: u64,
    declared: Arc<Declared>,
}

impl<B> Guarded<B> {
    /// The body of the connection's request number `request`.
    pub fn new(inner: B, request: u64, declared: Arc<Declared>) -> Guarded<B> {
        Guarded {
            inner,
            request,
            declared,
        }
    }
}

impl<B> Body for Guarded<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.declared.is_too_large(this.request) {
            return Poll::Ready(Some(Err(Box::new(DeclaredTooLarge))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                this.declared.wait(cx.waker());
                // Flagged between the first check and the wait.
                if this.declared.is_too_large(this.request) {
                    return Poll::Ready(Some(Err(Box::new(DeclaredTooLarge))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; the requests flagged.
    fn flagged(input: &[u8], max_body: u64, step: usize) -> (Option<u64>, u64, At) {
        let shared = Arc::new(Declared::new());
        let mut framing = Framing::new(max_body, 32 * 1024, Arc::clone(&shared));
        for piece in input.chunks(step) {
            framing.feed(piece);
        }
        let flag = shared.too_large.load(Ordering::Relaxed);
        ((flag != NONE).then_some(flag), framing.request, framing.at)
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    const CHUNKED: &[u8] = b"POST /a.php HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn a_chunk_declared_over_the_limit_flags_its_request_before_its_bytes() {
        let mut input = GET.to_vec();
        input.extend_from_slice(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
        input.extend_from_slice(CHUNKED);
        input.extend_from_slice(b"10\r\n0123456789abcdef\r\n");
        input.extend_from_slice(b"1000;ext=1\r\n");
        for step in [1, 2, 3, 7, input.len()] {
            let (flag, request, at) = flagged(&input, 1000, step);
            assert_eq!(flag, Some(2), "step {step}");
            assert_eq!((request, at), (2, At::Off), "step {step}");
        }
    }

    #[test]
    fn bodies_within_the_limit_are_followed_to_the_next_request() {
        let mut input = CHUNKED.to_vec();
        input.extend_from_slice(b"3e8\r\n");
        input.extend(vec![b'x'; 1000]);
        input.extend_from_slice(b"\r\n0\r\nX-Trailer: 1\r\n\r\n");
        input.extend_from_slice(CHUNKED);
        input.extend_from_slice(b"3E8\r\n");
        for step in [1, 5, 64, input.len()] {
            assert_eq!(
                flagged(&input, 1000, step),
                (None, 1, At::Data(1000)),
                "step {step}"
            );
        }
        // The sizes of one body add up.
        let mut input = CHUNKED.to_vec();
        input.extend_from_slice(b"1f4\r\n");
        input.extend(vec![b'x'; 500]);
        input.extend_from_slice(b"\r\n1f5\r\n");
        assert_eq!(flagged(&input, 1000, 100).0, Some(0));
    }

    #[test]
    fn what_hyper_refuses_stops_the_following_without_a_flag() {
        for tail in [
            &b"fffffffffffffffffffff\r\n"[..],
            b"zz\r\n",
            b"10\n",
            b"\r\n",
        ] {
            let mut input = CHUNKED.to_vec();
            input.extend_from_slice(tail);
            assert_eq!(flagged(&input, 10, 1), (None, 0, At::Off), "{tail:?}");
        }
        for head in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nffffff\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: 1\r\n\r\n",
        ] {
            assert_eq!(flagged(head, 10, 1), (None, 0, At::Off), "{head:?}");
        }
        // Chunked data must end with CRLF.
        let mut input = CHUNKED.to_vec();
        input.extend_from_slice(b"1\r\nxyz");
        assert_eq!(flagged(&input, 10, 1), (None, 0, At::Off));
    }

    #[test]
    fn a_head_over_its_limit_stops_the_following() {
        let mut input = b"GET / HTTP/1.1\r\nX: ".to_vec();
        input.extend(vec![b'a'; 40 * 1024]);
        assert_eq!(flagged(&input, 10, 4096), (None, 0, At::Off));
    }

    #[test]
    fn a_flag_wakes_the_waiting_body_and_ends_it_with_declared_too_large() {
        struct Never;
        impl Body for Never {
            type Data = bytes::Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<bytes::Bytes>, std::convert::Infallible>>> {
                Poll::Pending
            }
        }
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let woken = Arc::new(Count(0.into()));
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        let shared = Arc::new(Declared::new());
        let mut body = Guarded::new(Never, 1, Arc::clone(&shared));
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        shared.flag(0);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        shared.flag(1);
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Err(error))) => assert!(error.is::<DeclaredTooLarge>()),
            other => panic!("not ended: {:?}", other.map(|f| f.map(|r| r.is_ok()))),
        }
    }
}
