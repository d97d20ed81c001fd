//! Bodies both ways: an `http_body::Body` as a FastCGI request body
//! (streamed when its length is known, spooled when it is not), and the
//! FastCGI response as a streaming `http_body::Body`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{BoxError, Settings, LOG_TARGET};
use crate::error::Error;
use crate::nonblocking::{Chunk, ResponseStream};
use crate::request::Body;

/// An `http_body::Body` as a `Stream` of byte chunks (trailers are dropped).
struct HttpBodyStream<B> {
    body: Pin<Box<B>>,
}

impl<B> futures_core::Stream for HttpBodyStream<B>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.body.as_mut().poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(io::Error::other(e.into())))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
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
    /// [`super::Gateway`] spools such bodies first. Not replayable.
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
        Body::from_stream(
            HttpBodyStream {
                body: Box::pin(body),
            },
            len,
        )
    }
}

/// Why a request body could not be prepared.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Larger than [`Settings::max_body_bytes`] (413).
    TooLarge,
    /// Reading it from the client, or spooling it, failed (400).
    Read(io::Error),
}

/// The body to send and its length (`None`: no body at all). A declared
/// length streams through; an unknown one is read first (in memory up to
/// `spool_memory_bytes`, then into a temporary file) so that CONTENT_LENGTH
/// can be sent, as php-fpm needs.
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
        let stream = HttpBodyStream {
            body: Box::pin(body),
        };
        return Ok((Body::from_stream(stream, Some(len)), Some(len)));
    }
    spool(settings, body).await
}

async fn spool<B>(settings: &Settings, body: B) -> Result<(Body, Option<u64>), BodyError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    use futures_core::Stream;
    let mut stream = HttpBodyStream {
        body: Box::pin(body),
    };
    let mut memory: Vec<u8> = Vec::new();
    let mut file: Option<tokio::fs::File> = None;
    let mut total: u64 = 0;
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
        let chunk = chunk.map_err(BodyError::Read)?;
        total += chunk.len() as u64;
        if total > settings.max_body_bytes {
            return Err(BodyError::TooLarge);
        }
        match &mut file {
            Some(f) => f.write_all(&chunk).await.map_err(BodyError::Read)?,
            None if memory.len() + chunk.len() <= settings.spool_memory_bytes => {
                memory.extend_from_slice(&chunk)
            }
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
    tracing::debug!(target: LOG_TARGET, bytes = total, to_file = file.is_some(), "request body without a length spooled");
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
pub struct GatewayBody {
    inner: Inner,
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
        }
    }

    /// No body.
    pub fn empty() -> GatewayBody {
        GatewayBody {
            inner: Inner::Full(None),
        }
    }

    /// The body of a FastCGI response stream.
    pub fn stream(stream: ResponseStream) -> GatewayBody {
        GatewayBody {
            inner: Inner::Stream(None, Box::new(stream)),
        }
    }

    /// `prefix` (body bytes already taken from the stream), then the rest.
    pub(crate) fn prefixed(prefix: Bytes, stream: ResponseStream) -> GatewayBody {
        GatewayBody {
            inner: Inner::Stream((!prefix.is_empty()).then_some(prefix), Box::new(stream)),
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
        match &mut self.inner {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream(prefix, _) if prefix.is_some() => {
                Poll::Ready(prefix.take().map(|b| Ok(Frame::data(b))))
            }
            Inner::Stream(_, stream) => loop {
                match stream.poll_chunk(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(Some(Chunk::Body(bytes)))) => {
                        return Poll::Ready(Some(Ok(Frame::data(bytes))))
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

    fn is_end_stream(&self) -> bool {
        matches!(self.inner, Inner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Stream(..) => SizeHint::default(),
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
/// can still answer 502).
pub(crate) async fn gather(mut stream: ResponseStream, limit: usize) -> Result<GatewayBody, Error> {
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
