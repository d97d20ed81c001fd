//! The async response: head first, then body and STDERR chunks as they
//! arrive, with the request's time limits applied while waiting.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use fcgi_proto::decode::Event;
use tokio::task::JoinHandle;

use super::alarm::Alarm;
use super::body::Sink;
use super::frame::Frame;
use super::inbox::Inbox;
use super::pool::{MuxLease, Upstream};
use super::shared::RequestShared;
use super::single::SingleExchange;
use super::Timer;
use crate::blocking::Trailer;
use crate::error::Error;
use crate::exchange::{Failure, ResponseMachine, Step};
use crate::response::{BodyCollector, Response, ResponseHead, StreamHead};

/// One chunk of a streamed async response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes (STDOUT after the head).
    Body(Bytes),
    /// STDERR bytes (also kept, up to the limit, in [`ResponseStream::stderr`]).
    Stderr(Bytes),
}

/// Counts a request against its upstream's outstanding requests (used to
/// balance) until dropped.
#[derive(Debug)]
pub(crate) struct Outstanding(Arc<Upstream>);

impl Outstanding {
    pub(crate) fn new(upstream: &Arc<Upstream>) -> Outstanding {
        upstream.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(Arc::clone(upstream))
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Ended,
    Failed,
}

/// What one step of decoding produced.
enum Out {
    Head(Bytes),
    Body(Bytes),
    Stderr(Bytes),
    End,
}

/// Everything a live exchange needs, handed over by the client.
pub(crate) struct Parts {
    pub(crate) id: u16,
    pub(crate) link: Link,
    pub(crate) machine: ResponseMachine,
    pub(crate) timer: Timer,
    pub(crate) outstanding: Option<Outstanding>,
    pub(crate) address: Arc<str>,
    pub(crate) span: tracing::Span,
    /// The alarm for a request without a connection of its own (a single-request
    /// connection lends its own), made at the first wait.
    pub(crate) alarm: Option<Alarm>,
}

/// Where a request's answer comes from.
pub(crate) enum Link {
    /// A multiplexed connection's driver, through a channel.
    Mux(MuxLink),
    /// A connection of its own, read from this task.
    Single(SingleExchange),
}

/// A request on a multiplexed connection.
pub(crate) struct MuxLink {
    pub(crate) generation: u64,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) shared: Arc<RequestShared>,
    pub(crate) lease: MuxLease,
    pub(crate) writer: Option<JoinHandle<Option<Sink>>>,
}

impl Link {
    fn reused(&self) -> bool {
        match self {
            Link::Mux(d) => d.lease.reused,
            Link::Single(x) => x.reused(),
        }
    }

    /// The alarm of a single-request connection, while the request has it.
    fn alarm(&mut self) -> Option<&mut Alarm> {
        match self {
            Link::Mux(_) => None,
            Link::Single(x) => x.alarm(),
        }
    }

    /// When a byte last moved; `now` is the time of the wait that asks.
    fn last_activity(&mut self, now: Instant) -> Instant {
        match self {
            Link::Mux(d) => d.shared.last_activity(),
            Link::Single(x) => x.last_activity(now),
        }
    }

    /// The next frame if one is there (no time limits here).
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        address: &str,
        received: u64,
    ) -> Poll<Result<Frame, Failure>> {
        let d = match self {
            Link::Single(x) => return x.poll_frame(cx),
            Link::Mux(d) => d,
        };
        match d.inbox.poll_next(cx) {
            Poll::Ready(Ok(Some(frame))) => {
                d.shared.touch();
                Poll::Ready(Ok(frame))
            }
            Poll::Ready(Ok(None)) => {
                Poll::Ready(Err(d.shared.take_failure().unwrap_or_else(|| {
                    Failure::fatal(Error::ConnectionClosed {
                        address: address.to_string(),
                        received,
                    })
                })))
            }
            Poll::Ready(Err(source)) => Poll::Ready(Err(Failure::fatal(Error::Io {
                address: format!("{address} (response buffer file)"),
                source,
            }))),
            Poll::Pending => {
                // A body error ends the request even while the server is silent.
                if d.writer.as_ref().is_some_and(|w| w.is_finished()) {
                    if let Some(failure) = d.shared.take_failure() {
                        return Poll::Ready(Err(failure));
                    }
                }
                Poll::Pending
            }
        }
    }

    /// The request is over: free its pool slot.
    fn release(&mut self) {
        match self {
            Link::Mux(d) => {
                if let Some(writer) = d.writer.take() {
                    // The server has answered; the rest of the body is not needed.
                    writer.abort();
                }
                d.lease.release_permit();
            }
            Link::Single(x) => x.release(),
        }
    }

    /// Stops request `id` before its end.
    fn cancel(&mut self, id: u16) {
        match self {
            Link::Mux(d) => d.lease.conn.cancel(id, d.generation),
            Link::Single(x) => x.cancel(),
        }
    }
}

/// A response whose head has arrived. Read the body with
/// [`ResponseStream::next_chunk`] or as a [`futures_core::Stream`] of
/// [`Chunk`]s. On a connection of its own (php-fpm) at most a few chunks are
/// buffered, so a slow reader slows the server down and memory stays flat;
/// on a multiplexed connection the unread response is buffered up to a
/// bound (memory, then a temporary file: see
/// [`super::Builder::response_buffer_memory`]) so that other requests on
/// the connection keep flowing.
///
/// Dropping it before the end cancels the request: the connection is closed
/// (which stops a php-fpm script at its next output), or on a multiplexed
/// connection FCGI_ABORT_REQUEST is sent and the request's records are
/// discarded.
pub struct ResponseStream {
    head: ResponseHead,
    /// Boxed: the stream is moved through several futures, and a pointer
    /// moves cheaper than the whole exchange.
    parts: Box<Parts>,
    pending: Option<Bytes>,
    state: State,
    app_status: u32,
    received: u64,
    body_bytes: u64,
}

crate::response::stream_head!(ResponseStream);

impl StreamHead for ResponseStream {
    fn response_head(&self) -> &ResponseHead {
        &self.head
    }

    fn request_started(&self) -> Instant {
        self.parts.timer.started()
    }

    fn kept_stderr(&self) -> &[u8] {
        &self.parts.machine.stderr
    }
}

impl ResponseStream {
    pub(crate) fn new(parts: Parts) -> ResponseStream {
        ResponseStream {
            head: ResponseHead::default(),
            parts: Box::new(parts),
            pending: None,
            state: State::Open,
            app_status: 0,
            received: 0,
            body_bytes: 0,
        }
    }

    /// Counts the request against its upstream until it ends.
    pub(crate) fn set_outstanding(&mut self, outstanding: Option<Outstanding>) {
        if self.state == State::Open {
            self.parts.outstanding = outstanding;
        }
    }

    /// The connection had carried requests before this one.
    pub(crate) fn reused(&self) -> bool {
        self.parts.link.reused()
    }

    /// The upstream's address (the gateway's log lines name it).
    #[cfg(feature = "http")]
    pub(crate) fn address(&self) -> &str {
        &self.parts.address
    }

    /// Polls for the next body or STDERR chunk; `None` after END_REQUEST.
    /// STDERR that arrived before the head is only in
    /// [`ResponseStream::stderr`].
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Chunk>, Error>> {
        if let Some(bytes) = self.pending.take() {
            return Poll::Ready(Ok(Some(Chunk::Body(bytes))));
        }
        loop {
            match self.state {
                State::Ended => return Poll::Ready(Ok(None)),
                State::Failed => {
                    return Poll::Ready(Err(Error::ConnectionClosed {
                        address: self.parts.address.to_string(),
                        received: self.received,
                    }))
                }
                State::Open => {}
            }
            match ready!(self.poll_out(cx)) {
                Ok(Out::Head(bytes) | Out::Body(bytes)) if bytes.is_empty() => {}
                Ok(Out::Head(bytes) | Out::Body(bytes)) => {
                    return Poll::Ready(Ok(Some(Chunk::Body(bytes))))
                }
                Ok(Out::Stderr(bytes)) => return Poll::Ready(Ok(Some(Chunk::Stderr(bytes)))),
                Ok(Out::End) => return Poll::Ready(Ok(None)),
                Err(failure) => return Poll::Ready(Err(failure.error)),
            }
        }
    }

    /// The next body or STDERR chunk as it arrives; `None` after END_REQUEST.
    pub async fn next_chunk(&mut self) -> Result<Option<Chunk>, Error> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Reads the rest of the response (discarding body bytes) and returns
    /// what END_REQUEST and STDERR said.
    pub async fn finish(mut self) -> Result<Trailer, Error> {
        while self.next_chunk().await?.is_some() {}
        Ok(self.trailer())
    }

    /// What END_REQUEST and STDERR said (once the response has ended).
    fn trailer(&mut self) -> Trailer {
        Trailer {
            stderr: std::mem::take(&mut self.parts.machine.stderr),
            stderr_dropped: self.parts.machine.stderr_dropped,
            app_status: self.app_status,
        }
    }

    /// Collects the rest into a [`Response`], the body up to
    /// [`crate::Limits::max_body_bytes`].
    pub async fn into_response(mut self, max_body_bytes: usize) -> Result<Response, Error> {
        let mut body = BodyCollector::new(max_body_bytes);
        while let Some(chunk) = self.next_chunk().await? {
            if let Chunk::Body(bytes) = chunk {
                body.push(&bytes)?;
            }
        }
        let head = std::mem::take(&mut self.head);
        let trailer = self.trailer();
        Ok(body.into_response(head, trailer))
    }

    /// Waits for the head (STDERR before it is kept). Used by the client
    /// before handing the stream out.
    pub(crate) fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        loop {
            match ready!(self.poll_out(cx)) {
                Ok(Out::Head(bytes)) => {
                    if !bytes.is_empty() {
                        self.pending = Some(bytes);
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Out::Stderr(_)) => {}
                Ok(Out::Body(bytes)) => {
                    self.pending = Some(bytes);
                    return Poll::Ready(Ok(()));
                }
                Ok(Out::End) => return Poll::Ready(Ok(())),
                Err(failure) => return Poll::Ready(Err(failure)),
            }
        }
    }

    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<Out, Failure>> {
        let result = ready!(self.poll_out_inner(cx));
        match &result {
            Ok(Out::End) => self.complete(),
            Ok(_) => {}
            Err(failure) => {
                self.parts.span.in_scope(|| {
                    tracing::debug!(error = %failure.error, received = self.received, "request failed")
                });
                self.abort();
            }
        }
        Poll::Ready(result)
    }

    fn poll_out_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<Out, Failure>> {
        let id = self.parts.id;
        loop {
            let frame = ready!(self.poll_frame(cx))?;
            let failed = |error| Failure::fatal(error);
            match frame {
                Frame::Stdout(bytes) => {
                    self.received += bytes.len() as u64;
                    match self.parts.machine.on_event(Event::Stdout(id, &bytes)) {
                        Ok(Step::Head(range)) => {
                            if let Some(head) = self.parts.machine.take_head() {
                                self.head.set(head);
                            }
                            self.parts.span.in_scope(|| {
                                tracing::debug!(status = self.head.status, "response head")
                            });
                            self.body_bytes += range.len() as u64;
                            return Poll::Ready(Ok(Out::Head(bytes.slice(range))));
                        }
                        Ok(Step::Body(range)) => {
                            self.body_bytes += range.len() as u64;
                            return Poll::Ready(Ok(Out::Body(bytes.slice(range))));
                        }
                        Ok(_) => {}
                        Err(error) => return Poll::Ready(Err(failed(error))),
                    }
                }
                Frame::Stderr(bytes) => {
                    self.received += bytes.len() as u64;
                    if let Err(error) = self.parts.machine.on_event(Event::Stderr(id, &bytes)) {
                        return Poll::Ready(Err(failed(error)));
                    }
                    return Poll::Ready(Ok(Out::Stderr(bytes)));
                }
                Frame::End(end) => {
                    // The driver has finished the request either way.
                    self.state = State::Ended;
                    return match self.parts.machine.on_event(Event::End(id, end)) {
                        Ok(_) => {
                            self.app_status = end.app_status;
                            Poll::Ready(Ok(Out::End))
                        }
                        Err(error) => {
                            self.release();
                            Poll::Ready(Err(failed(error)))
                        }
                    };
                }
            }
        }
    }

    /// The next frame, or why there is none, within the time limits.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Frame, Failure>> {
        loop {
            let parts = &mut *self.parts;
            if let Poll::Ready(frame) = parts.link.poll_frame(cx, &parts.address, self.received) {
                return Poll::Ready(frame);
            }
            let timer = &parts.timer;
            let now = Instant::now();
            let wake_at = match timer.next_timeout(now, parts.link.last_activity(now)) {
                Ok(at) => at,
                Err(phase) => {
                    return Poll::Ready(Err(Failure::fatal(timer.expired(&parts.address, phase))))
                }
            };
            let alarm = match parts.link.alarm() {
                Some(alarm) => alarm,
                None => parts.alarm.get_or_insert_with(Alarm::new),
            };
            if alarm.poll_until(wake_at, now, cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// END_REQUEST arrived: the connection is back in the pool already.
    fn complete(&mut self) {
        self.state = State::Ended;
        self.release();
        let elapsed = self.started().elapsed();
        self.parts.span.in_scope(|| {
            tracing::debug!(
                status = self.head.status,
                body_bytes = self.body_bytes,
                stderr_bytes = self.parts.machine.stderr.len(),
                received = self.received,
                duration_ms = elapsed.as_secs_f64() * 1e3,
                "response complete"
            )
        });
    }

    /// Gives the pool slot back after the request ended normally.
    fn release(&mut self) {
        self.parts.link.release();
        self.parts.outstanding = None;
    }

    /// Stops the request early: cancel on its connection, stop the writer.
    fn abort(&mut self) {
        if self.state == State::Open {
            self.parts.link.cancel(self.parts.id);
        }
        self.state = State::Failed;
        self.release();
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        if self.state == State::Open {
            self.parts
                .span
                .in_scope(|| tracing::debug!("request cancelled"));
            self.abort();
        }
    }
}

impl futures_core::Stream for ResponseStream {
    type Item = Result<Chunk, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.state == State::Failed && this.pending.is_none() {
            return Poll::Ready(None);
        }
        match ready!(this.poll_chunk(cx)) {
            Ok(Some(chunk)) => Poll::Ready(Some(Ok(chunk))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}
