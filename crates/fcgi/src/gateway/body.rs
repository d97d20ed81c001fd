//! Bodies both ways: an `http_body::Body` as a FastCGI request body (read
//! whole before the request goes upstream, or streamed through on request),
//! and the FastCGI response as a streaming `http_body::Body` framed by what
//! the gateway knows.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use super::{BoxError, Settings, LOG_TARGET};
use crate::error::Error;
use crate::nonblocking::{Chunk, ResponseStream};
use crate::request::Body;

/// An `http_body::Body` as a `Stream` of byte chunks (trailers are
/// dropped). With a read timeout, a wait of that long for the next bytes
/// ends the stream with a [`io::ErrorKind::TimedOut`] error.
struct HttpBodyStream<B> {
    body: Pin<Box<B>>,
    read_timeout: Option<Duration>,
    /// The alarm for the current wait (armed when a wait starts, so a body
    /// that keeps arriving costs no timer operation per chunk).
    alarm: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl<B> HttpBodyStream<B> {
    fn new(body: B, read_timeout: Option<Duration>) -> HttpBodyStream<B> {
        HttpBodyStream {
            body: Box::pin(body),
            read_timeout,
            alarm: None,
            waiting: false,
        }
    }

    /// Pending: whether the read timeout has passed since the wait began.
    fn wait_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timeout) = self.read_timeout else {
            return false;
        };
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + timeout;
            match &mut self.alarm {
                Some(alarm) => alarm.as_mut().reset(deadline),
                None => self.alarm = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.alarm
            .as_mut()
            .is_some_and(|alarm| alarm.as_mut().poll(cx).is_ready())
    }
}

/// The error a stalled request body ends with.
fn read_timed_out(timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "no request body bytes for {:.3}s (body read timeout)",
            timeout.as_secs_f64()
        ),
    )
}

impl<B> futures_core::Stream for HttpBodyStream<B>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let frame = match this.body.as_mut().poll_frame(cx) {
                Poll::Pending if this.wait_expired(cx) => {
                    let timeout = this.read_timeout.unwrap_or_default();
                    return Poll::Ready(Some(Err(read_timed_out(timeout))));
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(frame) => frame,
            };
            this.waiting = false;
            return match frame {
                None => Poll::Ready(None),
                Some(Err(e)) => Poll::Ready(Some(Err(io::Error::other(e.into())))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        Poll::Ready(Some(Ok(bytes)))
                    }
                    Err(_trailers) => continue,
                },
            };
        }
    }
}

impl Body {
    /// A body streamed from an [`http_body::Body`] (feature `http`), e.g. a
    /// hyper `Incoming` or an axum `Body`. Its length is the body's exact
    /// size hint when it has one (hyper gives it for a `Content-Length`
    /// request); without a length PHP does not see the body, so
    /// [`super::Gateway`] reads such bodies whole first. Not replayable.
    ///
    /// ```
    /// let body = fcgi::Body::from_http_body(http_body_util::Full::new(bytes::Bytes::from("a=1")));
    /// assert_eq!(body.len(), Some(3));
    /// ```
    pub fn from_http_body<B>(body: B) -> Body
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let len = body.size_hint().exact();
        if len == Some(0) && body.is_end_stream() {
            return Body::Empty;
        }
        Body::from_stream(HttpBodyStream::new(body, None), len)
    }
}

/// Why a request body could not be prepared.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Larger than [`Settings::max_body_bytes`] (413).
    TooLarge,
    /// No bytes for the body read timeout (408).
    TimedOut(io::Error),
    /// Reading it from the client, or buffering it, failed (400).
    Read(io::Error),
}

/// The error a request body can end with to say that its client declared
/// more than [`GatewayBuilder::max_body_bytes`](super::GatewayBuilder::max_body_bytes)
/// before sending it (e.g. in a chunk-size line, which hyper does not
/// expose): the gateway answers 413 at once, as for a `Content-Length` over
/// the limit, instead of when that many bytes have arrived. `fcgi serve`
/// reads chunk sizes off the socket and uses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeclaredTooLarge;

impl std::fmt::Display for DeclaredTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body is declared larger than the limit")
    }
}

impl std::error::Error for DeclaredTooLarge {}

impl BodyError {
    fn from_read(error: io::Error) -> BodyError {
        if error
            .get_ref()
            .is_some_and(|inner| inner.is::<DeclaredTooLarge>())
        {
            BodyError::TooLarge
        } else if error.kind() == io::ErrorKind::TimedOut {
            BodyError::TimedOut(error)
        } else {
            BodyError::Read(error)
        }
    }
}

/// The body to send and its length (`None`: no body at all). By default
/// the whole body is read before anything goes upstream (in memory up to
/// `buffer_memory_bytes`, then into a temporary file), so a slow client
/// never holds a PHP worker, and a body without a length gets its
/// CONTENT_LENGTH, which php-fpm needs. With `stream_request_bodies`, a
/// body with a declared length streams straight through instead.
pub(crate) async fn prepare<B>(
    settings: &Settings,
    body: B,
    declared: Option<u64>,
) -> Result<(Body, Option<u64>), BodyError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    if declared.is_none() && body.is_end_stream() {
        // No body at all (a GET): no CONTENT_LENGTH either, as nginx does.
        return Ok((Body::Empty, None));
    }
    let declared = declared.or(body.size_hint().exact());
    if let Some(len) = declared {
        if len > settings.max_body_bytes {
            return Err(BodyError::TooLarge);
        }
        if len == 0 {
            return Ok((Body::Empty, Some(0)));
        }
    }
    let stream = HttpBodyStream::new(body, Some(settings.body_read_timeout));
    match declared {
        Some(len) if settings.stream_request_bodies => {
            Ok((Body::from_stream(stream, Some(len)), Some(len)))
        }
        _ => buffer(settings, stream, declared).await,
    }
}

/// Reads the whole body: in memory up to `buffer_memory_bytes`, the rest in
/// a temporary file. A body that disagrees with its declared length is an
/// error.
async fn buffer<B>(
    settings: &Settings,
    mut stream: HttpBodyStream<B>,
    declared: Option<u64>,
) -> Result<(Body, Option<u64>), BodyError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    use futures_core::Stream;
    let memory_max = settings.buffer_memory_bytes;
    let expected_in_memory = declared.map_or(0, |len| len.min(memory_max as u64) as usize);
    let mut memory: Vec<u8> = Vec::with_capacity(expected_in_memory);
    let mut file: Option<tokio::fs::File> = None;
    let mut total: u64 = 0;
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
        let chunk = chunk.map_err(BodyError::from_read)?;
        total += chunk.len() as u64;
        if total > settings.max_body_bytes {
            return Err(BodyError::TooLarge);
        }
        match &mut file {
            Some(f) => f.write_all(&chunk).await.map_err(BodyError::Read)?,
            None if memory.len() + chunk.len() <= memory_max => memory.extend_from_slice(&chunk),
            None => {
                let temp = match &settings.spool_dir {
                    Some(dir) => tempfile::tempfile_in(dir),
                    None => tempfile::tempfile(),
                }
                .map_err(BodyError::Read)?;
                let mut f = tokio::fs::File::from_std(temp);
                f.write_all(&memory).await.map_err(BodyError::Read)?;
                f.write_all(&chunk).await.map_err(BodyError::Read)?;
                memory = Vec::new();
                file = Some(f);
            }
        }
    }
    if let Some(len) = declared {
        if total != len {
            return Err(BodyError::Read(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the request body has {total} bytes, its Content-Length says {len}"),
            )));
        }
    }
    tracing::debug!(target: LOG_TARGET, bytes = total, to_file = file.is_some(), "request body read before the request");
    match file {
        None if total == 0 => Ok((Body::Empty, Some(0))),
        None => Ok((Body::Bytes(Bytes::from(memory)), Some(total))),
        Some(mut f) => {
            f.flush().await.map_err(BodyError::Read)?;
            f.rewind().await.map_err(BodyError::Read)?;
            Ok((Body::from_async_read(f, Some(total)), Some(total)))
        }
    }
}

/// The body of a gateway response: the FastCGI STDOUT as it arrives, or a
/// short text of the gateway's own (errors, redirects). STDERR lines that
/// arrive while streaming are logged (tracing target `fcgi::gateway`, level
/// WARN), never sent to the client.
///
/// A body [framed](GatewayBody::framed) by a declared length reports that
/// exact length, never yields more (extra bytes from the application are
/// dropped and logged) and ends with an error when the application sends
/// fewer, so an HTTP server closes the connection instead of letting the
/// client wait for bytes that will not come or read the next response as
/// the rest of this one. That error is an [`Error::Protocol`] naming the
/// upstream.
pub struct GatewayBody {
    inner: Inner,
    /// Bytes still owed under a declared length.
    remaining: Option<u64>,
    /// The body ended this many bytes short; the error is reported on the
    /// next poll, after the HTTP server has had a chance to flush what was
    /// sent (so the client sees the head and the bytes that came).
    short_by: Option<u64>,
}

enum Inner {
    Full(Option<Bytes>),
    /// Body bytes already read, then the rest of the stream.
    Stream(Option<Bytes>, Box<ResponseStream>),
}

impl std::fmt::Debug for GatewayBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Full(b) => write!(
                f,
                "GatewayBody::Full({} bytes)",
                b.as_ref().map_or(0, |b| b.len())
            ),
            Inner::Stream(..) => f.write_str("GatewayBody::Stream"),
        }
    }
}

impl GatewayBody {
    /// A body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> GatewayBody {
        let bytes = bytes.into();
        GatewayBody {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            remaining: None,
            short_by: None,
        }
    }

    /// No body.
    pub fn empty() -> GatewayBody {
        GatewayBody::full(Bytes::new())
    }

    /// The body of a FastCGI response stream.
    pub fn stream(stream: ResponseStream) -> GatewayBody {
        GatewayBody::prefixed(Bytes::new(), stream)
    }

    /// `prefix` (body bytes already taken from the stream), then the rest.
    pub(crate) fn prefixed(prefix: Bytes, stream: ResponseStream) -> GatewayBody {
        GatewayBody {
            inner: Inner::Stream((!prefix.is_empty()).then_some(prefix), Box::new(stream)),
            remaining: None,
            short_by: None,
        }
    }

    /// This body held to exactly `length` bytes when `length` is given
    /// (see the type's docs); unchanged otherwise. A body of bytes
    /// ([`GatewayBody::full`]) is whole already: it is cut at `length`, and
    /// a longer `length` is not promised (its exact size stays its own).
    ///
    /// ```
    /// use http_body::Body;
    /// let body = fcgi::gateway::GatewayBody::full("0123456789").framed(Some(5));
    /// assert_eq!(body.size_hint().exact(), Some(5));
    /// let body = fcgi::gateway::GatewayBody::full("012").framed(Some(5));
    /// assert_eq!(body.size_hint().exact(), Some(3));
    /// ```
    pub fn framed(mut self, length: Option<u64>) -> GatewayBody {
        self.remaining = match (&self.inner, length) {
            (Inner::Full(bytes), Some(length)) => {
                Some(length.min(bytes.as_ref().map_or(0, |b| b.len() as u64)))
            }
            _ => length,
        };
        self
    }

    /// The next piece of the body as it comes, before any framing.
    fn poll_unframed(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        match &mut self.inner {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(Ok)),
            Inner::Stream(prefix, _) if prefix.is_some() => Poll::Ready(prefix.take().map(Ok)),
            Inner::Stream(_, stream) => loop {
                match stream.poll_chunk(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(Some(Chunk::Body(bytes)))) => {
                        return Poll::Ready(Some(Ok(bytes)))
                    }
                    Poll::Ready(Ok(Some(Chunk::Stderr(bytes)))) => log_stderr(&bytes),
                    Poll::Ready(Ok(None)) => return Poll::Ready(None),
                    Poll::Ready(Err(error)) => {
                        tracing::error!(target: LOG_TARGET, %error, "upstream failed while the response body was being sent");
                        return Poll::Ready(Some(Err(error)));
                    }
                }
            },
        }
    }

    /// The error of a body that ended `short_by` bytes short of its
    /// declared length, naming the upstream that sent it. Only a stream
    /// can end short: [`GatewayBody::framed`] never holds a body of bytes
    /// to more than it has, and [`gather`] keeps the ended stream of a
    /// short body.
    fn ended_short(&self, short_by: u64) -> Error {
        let detail =
            format!("the response body ended {short_by} bytes short of its Content-Length");
        match &self.inner {
            Inner::Stream(_, stream) => Error::protocol(stream.address(), detail),
            Inner::Full(_) => Error::internal(format!("a body of bytes: {detail}")),
        }
    }
}

impl http_body::Body for GatewayBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let Some(short_by) = this.short_by.take() {
            let error = this.ended_short(short_by);
            tracing::error!(target: LOG_TARGET, %error, "closing the client connection");
            this.inner = Inner::Full(None);
            return Poll::Ready(Some(Err(error)));
        }
        let Some(remaining) = this.remaining else {
            return this
                .poll_unframed(cx)
                .map(|next| next.map(|r| r.map(Frame::data)));
        };
        if remaining == 0 {
            // Whatever the application still sends is not this response's:
            // let go of the stream (closing its connection if unfinished).
            this.inner = Inner::Full(None);
            return Poll::Ready(None);
        }
        match std::task::ready!(this.poll_unframed(cx)) {
            Some(Ok(mut bytes)) => {
                if bytes.len() as u64 > remaining {
                    tracing::warn!(target: LOG_TARGET, declared_more_by = bytes.len() as u64 - remaining, "upstream sent more body than its Content-Length; the rest is dropped");
                    bytes.truncate(remaining as usize);
                }
                this.remaining = Some(remaining - bytes.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Some(Err(error)) => Poll::Ready(Some(Err(error))),
            None => {
                this.short_by = Some(remaining);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.remaining {
            Some(remaining) => remaining == 0,
            None => matches!(self.inner, Inner::Full(None)),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, self.remaining) {
            (_, Some(remaining)) => SizeHint::with_exact(remaining),
            (Inner::Full(bytes), None) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            (Inner::Stream(..), None) => SizeHint::default(),
        }
    }
}

/// The body of a response whose head has arrived: what is already there
/// is read without waiting (up to `limit` bytes). When that is the whole
/// body, it is returned in one piece (with an exact length, so the HTTP
/// server sends Content-Length and writes head and body at once); else the
/// bytes read come first and the rest streams. Small responses, the common
/// case, so cost one write instead of a chunked head, body and terminator.
/// An upstream failure before any byte is returned as an error (the caller
/// can still answer 502). A whole body shorter than `declared` (the
/// script's Content-Length) keeps its ended stream, so that the error it
/// ends with names the upstream.
pub(crate) async fn gather(
    mut stream: ResponseStream,
    limit: usize,
    declared: Option<u64>,
) -> Result<GatewayBody, Error> {
    let mut buffered = bytes::BytesMut::new();
    loop {
        let ready = std::future::poll_fn(|cx| match stream.poll_chunk(cx) {
            Poll::Pending => Poll::Ready(None),
            Poll::Ready(result) => Poll::Ready(Some(result)),
        })
        .await;
        match ready {
            None => break,
            Some(Ok(Some(Chunk::Body(bytes)))) => {
                buffered.extend_from_slice(&bytes);
                if buffered.len() >= limit {
                    break;
                }
            }
            Some(Ok(Some(Chunk::Stderr(bytes)))) => log_stderr(&bytes),
            Some(Ok(None)) if declared.is_some_and(|len| len > buffered.len() as u64) => break,
            Some(Ok(None)) => return Ok(GatewayBody::full(buffered.freeze())),
            Some(Err(error)) if buffered.is_empty() => return Err(error),
            Some(Err(error)) => {
                // Part of the body is here: send it, then fail the stream.
                tracing::error!(target: LOG_TARGET, %error, "upstream failed while the response body was being read");
                return Ok(GatewayBody::prefixed(buffered.freeze(), stream));
            }
        }
    }
    Ok(GatewayBody::prefixed(buffered.freeze(), stream))
}

/// Logs what the application wrote to STDERR, line by line.
pub(crate) fn log_stderr(bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes).lines() {
        if !line.trim().is_empty() {
            tracing::warn!(target: LOG_TARGET, "FastCGI sent in stderr: {line}");
        }
    }
}
