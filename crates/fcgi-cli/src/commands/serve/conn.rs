//! One client connection of `fcgi serve`: hyper's HTTP/1.1 state machine
//! over the socket, plus the limits nginx puts on a connection that hyper
//! does not have in this form: a keep-alive idle timeout (nginx's
//! `keepalive_timeout`) and a header read timeout that starts with the
//! first byte of a request head (nginx's `client_header_timeout`), each its
//! own setting. A watchdog per connection checks them; it wakes only when
//! a limit could have passed, so a busy connection costs no timer work per
//! request.
//!
//! A connection the server closes while the client may still be sending
//! (a 413 or 408 before the body was read, a 431) is closed the way nginx's
//! `lingering_close` does it: the write side first, then what the client
//! still sends is read and dropped until it closes too (at most
//! `lingering_time`, and `lingering_timeout` between two reads). Closing at
//! once with unread bytes would make the kernel reset the connection, and
//! the client could lose the answer it had not read yet.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use fcgi::gateway::ConnectionInfo;
use http::header::CONNECTION;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::access_log::Pending;
use super::chunk_sizes::{Declared, Framing, Guarded};
use super::{ServeBody, State};

/// Serves one client connection until it ends, a limit of [`ConnLimits`]
/// passes, or the server stops (then the request in progress finishes and
/// the connection closes).
pub async fn serve(
    state: Arc<State>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let info = ConnectionInfo::new(Some(peer), tcp.local_addr().ok());
    let activity = Arc::new(Activity::new());
    let declared = Arc::new(Declared::new());
    let (give_back, taken_back) = oneshot::channel();
    let io = TokioIo::new(Watched {
        io: Some(tcp),
        activity: Arc::clone(&activity),
        framing: Framing::new(
            state.common.max_body_size,
            state.common.head_limit,
            Arc::clone(&declared),
        ),
        peer_closed: false,
        give_back: Some(give_back),
    });
    let service = {
        let state = Arc::clone(&state);
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let state = Arc::clone(&state);
            let activity = Arc::clone(&activity);
            let number = activity.request_started();
            let request = request.map(|body| Guarded::new(body, number, Arc::clone(&declared)));
            async move {
                let (response, log) = super::handle(&state, info, request).await;
                if response
                    .headers()
                    .get(CONNECTION)
                    .is_some_and(|v| v == "close")
                {
                    // Answered before the request was read to its end.
                    activity.linger.store(true, Ordering::Relaxed);
                }
                Ok::<_, Infallible>(response.map(|body| Finishing::wrap(body, activity, log)))
            }
        })
    };
    let limits = state.common.limits;
    // Boxed so it can be dropped (handing the socket back) before the end.
    let mut conn = Box::pin(state.common.http.serve_connection(io, service));
    let alarm = tokio::time::sleep(limits.keepalive_timeout.min(limits.header_timeout));
    tokio::pin!(alarm);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    let linger_wanted = loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = &result {
                    tracing::debug!(target: "fcgi_cli", %peer, %error, "connection ended with an error");
                }
                // A head hyper refused (431, 400) may have more bytes behind it.
                break result.is_err() || activity.linger.load(Ordering::Relaxed);
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = &mut alarm => match activity.check(&limits, Instant::now()) {
                Ok(next) => alarm.as_mut().reset(next),
                Err(expired) => {
                    tracing::debug!(target: "fcgi_cli", %peer, ?expired, "closing the connection");
                    // Idle, or a head too slow: nothing to read first.
                    break false;
                }
            },
        }
    };
    // Dropping hyper's connection hands the socket back (unless the client
    // closed its side already).
    drop(conn);
    if let Ok(tcp) = taken_back.await {
        if linger_wanted {
            linger(tcp, &limits).await;
        }
    }
}

/// Closes the write side, then reads and drops what the client still sends
/// until it closes (or the lingering limits pass).
async fn linger(mut tcp: TcpStream, limits: &ConnLimits) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let give_up = Instant::now() + limits.lingering_time;
    let mut scratch = vec![0u8; LINGER_READ];
    loop {
        let until = give_up.min(Instant::now() + limits.lingering_timeout);
        match tokio::time::timeout_at(until, tcp.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => continue,
            _ => return,
        }
    }
}

/// Bytes read at a time while lingering.
const LINGER_READ: usize = 16 * 1024;

/// The per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Longest time from the first byte of a request head to its end.
    pub header_timeout: Duration,
    /// Longest idle time between two requests on a kept connection (and
    /// before the first).
    pub keepalive_timeout: Duration,
    /// Longest time a closing connection reads what the client still sends.
    pub lingering_time: Duration,
    /// Longest wait for the next bytes while lingering.
    pub lingering_timeout: Duration,
}

/// "Not set" for the millisecond clocks of [`Activity`].
const NEVER: u64 = u64::MAX;

/// What a connection is doing, as its socket, its request handler and its
/// responses' bodies report it; read by the watchdog.
pub struct Activity {
    origin: Instant,
    started: AtomicU64,
    finished: AtomicU64,
    /// When the connection last became idle (ms since `origin`).
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived (ms since
    /// `origin`), or [`NEVER`].
    head_started: AtomicU64,
    /// A response was sent before its request was read to the end
    /// (`Connection: close`): close lingering.
    linger: AtomicBool,
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No request for the keep-alive timeout.
    Idle,
    /// A request head took longer than the header timeout.
    Header,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NEVER),
            linger: AtomicBool::new(false),
        }
    }

    fn ms_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    fn is_idle(&self) -> bool {
        self.started.load(Ordering::Relaxed) == self.finished.load(Ordering::Relaxed)
    }

    /// Bytes arrived from the client.
    fn bytes_arrived(&self) {
        if self.is_idle() && self.head_started.load(Ordering::Relaxed) == NEVER {
            self.head_started
                .store(self.ms_at(Instant::now()), Ordering::Relaxed);
        }
    }

    /// A request head is complete and its handler runs: the request's
    /// number on the connection (from 0).
    pub fn request_started(&self) -> u64 {
        self.head_started.store(NEVER, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed)
    }

    /// A response was sent (or abandoned).
    fn response_finished(&self) {
        self.idle_since
            .store(self.ms_at(Instant::now()), Ordering::Relaxed);
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    /// At `now`: the time of the next check, or the limit that passed.
    pub fn check(&self, limits: &ConnLimits, now: Instant) -> Result<Instant, Expired> {
        let at = |ms: u64| self.origin + Duration::from_millis(ms);
        if !self.is_idle() {
            // A request is being handled: its own time limits apply.
            return Ok(now + limits.keepalive_timeout.min(limits.header_timeout));
        }
        let (deadline, why) = match self.head_started.load(Ordering::Relaxed) {
            NEVER => (
                at(self.idle_since.load(Ordering::Relaxed)) + limits.keepalive_timeout,
                Expired::Idle,
            ),
            started => (at(started) + limits.header_timeout, Expired::Header),
        };
        if now >= deadline {
            Err(why)
        } else {
            Ok(deadline)
        }
    }
}

/// The client's socket, telling [`Activity`] when bytes arrive, and handing
/// itself back for a lingering close when hyper lets go of it before the
/// client closed its side.
pub struct Watched {
    io: Option<TcpStream>,
    activity: Arc<Activity>,
    /// Follows the requests' framing for the chunk sizes.
    framing: Framing,
    /// The client closed its side (a read gave end of file).
    peer_closed: bool,
    give_back: Option<oneshot::Sender<TcpStream>>,
}

impl Watched {
    fn io(&mut self) -> io::Result<&mut TcpStream> {
        self.io
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.peer_closed {
            return;
        }
        if let (Some(io), Some(give_back)) = (self.io.take(), self.give_back.take()) {
            let _ = give_back.send(io);
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(self.io()?).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if buf.filled().len() > before {
                self.activity.bytes_arrived();
                self.framing.feed(&buf.filled()[before..]);
            } else if buf.remaining() > 0 {
                self.peer_closed = true;
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.io()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.io()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.io()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.io()?).poll_shutdown(cx)
    }
}

/// A response body that tells [`Activity`] when it is done (sent whole, or
/// dropped by hyper), and writes the access log line if there is one.
pub struct Finishing {
    inner: ServeBody,
    activity: Arc<Activity>,
    log: Option<Pending>,
}

impl Finishing {
    pub fn wrap(inner: ServeBody, activity: Arc<Activity>, log: Option<Pending>) -> ServeBody {
        super::boxed(Finishing {
            inner,
            activity,
            log,
        })
    }
}

impl Body for Finishing {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(log)) = (&polled, self.log.as_mut()) {
            if let Some(data) = frame.data_ref() {
                log.sent(data.len());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        self.activity.response_finished();
        if let Some(log) = self.log.take() {
            log.write();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnLimits = ConnLimits {
        header_timeout: Duration::from_secs(60),
        keepalive_timeout: Duration::from_secs(75),
        lingering_time: Duration::from_secs(30),
        lingering_timeout: Duration::from_secs(5),
    };

    #[test]
    fn an_idle_connection_expires_after_the_keepalive_timeout() {
        let activity = Activity::new();
        let start = activity.origin;
        let next = activity.check(&LIMITS, start).unwrap();
        assert_eq!(next, start + LIMITS.keepalive_timeout);
        assert_eq!(
            activity.check(&LIMITS, next),
            Err(Expired::Idle),
            "idle for the whole keep-alive timeout"
        );
    }

    #[test]
    fn a_started_head_has_the_header_timeout_from_its_first_byte() {
        let activity = Activity::new();
        activity.bytes_arrived();
        let first_byte =
            activity.origin + Duration::from_millis(activity.head_started.load(Ordering::Relaxed));
        assert_eq!(
            activity.check(&LIMITS, first_byte),
            Ok(first_byte + LIMITS.header_timeout)
        );
        // More bytes do not move the deadline (a slow head still expires).
        activity.bytes_arrived();
        assert_eq!(
            activity.check(&LIMITS, first_byte + LIMITS.header_timeout),
            Err(Expired::Header)
        );
    }

    #[test]
    fn a_request_in_progress_never_expires_here_and_its_end_restarts_the_idle_clock() {
        let activity = Arc::new(Activity::new());
        activity.bytes_arrived();
        activity.request_started();
        let later = activity.origin + Duration::from_secs(3600);
        assert!(activity.check(&LIMITS, later).is_ok());
        drop(Finishing {
            inner: ServeBody::default(),
            activity: Arc::clone(&activity),
            log: None,
        });
        assert!(activity.is_idle());
        let idle_at =
            activity.origin + Duration::from_millis(activity.idle_since.load(Ordering::Relaxed));
        assert_eq!(
            activity.check(&LIMITS, idle_at),
            Ok(idle_at + LIMITS.keepalive_timeout)
        );
    }
}
