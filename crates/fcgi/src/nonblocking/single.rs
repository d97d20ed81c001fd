//! The single path: connections that carry a single request at a time
//! ([`SinglePool`], [`SingleExchange`]), for every upstream that does not
//! multiplex, php-fpm among them. Nothing here comes from the mux path
//! ([`super::mux`]); reading records is [`super::frame`]'s.
//!
//! No task sits between a request and its socket. An idle connection waits
//! in the pool; a request takes it, writes its records and reads the answer
//! from the caller's own task, and puts it back after a clean END_REQUEST.
//! A small request costs one write and one read, with no hand-off between
//! tasks. Only a body that is not in memory gets a task of its own, which
//! writes it through the socket's write half while the caller reads (full
//! duplex) and hands the half back when done.
//!
//! MuxPool invariant: open connections (idle plus in use) never exceed the
//! semaphore's permits, because a request opens a connection only when no
//! idle one is left for it (or after closing one, for a fresh retry).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fcgi_proto::decode::Decoder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::alarm::Alarm;
use super::body::{self, Sink};
use super::frame::{next_frame, reserve_read, Frame};
use super::lock::lock;
use super::shared::RequestShared;
use super::socket::{ReadHalf, Socket, WriteHalf};
use crate::error::is_closed;
use crate::error::Error;
use crate::exchange::{
    following_request_id, kept_out, readdress, reusable_after_end, Failure, SINGLE_REQUEST_ID,
};
use crate::request::Body;

/// A kept connection and what it remembers between requests. Boxed from
/// its start to its close: taking it from the pool, lending it to a request
/// and parking it again move a pointer, not the state.
#[derive(Debug)]
pub(crate) struct SingleConn {
    /// `None` while a request has the socket (see [`SingleExchange`]).
    socket: Option<Socket>,
    serial: u64,
    /// Requests it completed.
    served: u64,
    /// Request ids go round on a kept connection, so a late record of an
    /// earlier request is caught instead of being read as this one's.
    next_id: u16,
    /// Kept across requests: it knows where the byte stream stands.
    decoder: Decoder,
    /// Kept across requests: its room is reused once the previous answer's
    /// chunks are dropped.
    rbuf: BytesMut,
    /// Kept across requests: the next request's records are copied here.
    out: Vec<u8>,
    /// Kept across requests: most requests then register no timer.
    alarm: Alarm,
}

/// How a request starts on its connection.
pub(crate) enum SingleStart<'a> {
    /// The whole request is in these records (encoded under request id 1),
    /// sent with FCGI_KEEP_CONN as given; this task writes them.
    Inline(&'a Bytes, bool),
    /// These records (already under the connection's id), then a body (and
    /// DATA) that a task of its own streams.
    Streamed(Bytes, (Body, Option<Body>)),
}

#[derive(Debug)]
struct Idle {
    conn: Box<SingleConn>,
    since: Instant,
}

#[derive(Debug, Default)]
struct IdleList {
    /// Most recently used last.
    conns: Vec<Idle>,
    /// A task closes connections idle for too long while this is set.
    reaper: bool,
}

/// The connections of one upstream that does not multiplex.
#[derive(Debug)]
pub(crate) struct SinglePool {
    me: Weak<SinglePool>,
    /// One permit per connection; tokio's semaphore is fair (FIFO).
    pub(crate) semaphore: Arc<Semaphore>,
    idle: Mutex<IdleList>,
    next_serial: AtomicU64,
    pub(crate) address: String,
    keep_alive: bool,
    idle_timeout: Duration,
}

impl SinglePool {
    pub(crate) fn new(
        address: String,
        max_connections: usize,
        keep_alive: bool,
        idle_timeout: Duration,
    ) -> Arc<SinglePool> {
        Arc::new_cyclic(|me| SinglePool {
            me: me.clone(),
            semaphore: Arc::new(Semaphore::new(max_connections)),
            idle: Mutex::new(IdleList::default()),
            next_serial: AtomicU64::new(1),
            address,
            keep_alive,
            idle_timeout,
        })
    }

    /// The most recently used idle connection that is still fit (see
    /// [`Socket::still_idle`]), unless `fresh` asks for a new one (then the
    /// oldest idle connection is closed to make room for it).
    pub(crate) fn take_idle(&self, fresh: bool, cx: &mut Context<'_>) -> Option<Box<SingleConn>> {
        loop {
            let now = Instant::now();
            let mut list = lock(&self.idle);
            let expired = self.split_off_expired(&mut list, now);
            let idle = if fresh {
                (!list.conns.is_empty()).then(|| list.conns.remove(0))
            } else {
                list.conns.pop()
            };
            drop(list);
            drop(expired);
            let conn = idle?.conn;
            if fresh {
                return None; // `conn` is closed here
            }
            if conn.socket.as_ref().is_some_and(|s| s.still_idle(cx)) {
                return Some(conn);
            }
            tracing::debug!(upstream = %self.address, conn = conn.serial, "idle connection closed by the server (or sent bytes unasked); not reused");
        }
    }

    /// Wraps a socket just connected.
    pub(crate) fn new_conn(&self, socket: Socket) -> Box<SingleConn> {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(upstream = %self.address, conn = serial, "connected");
        Box::new(SingleConn {
            socket: Some(socket),
            serial,
            served: 0,
            next_id: SINGLE_REQUEST_ID,
            decoder: Decoder::for_request(SINGLE_REQUEST_ID),
            rbuf: BytesMut::new(),
            out: Vec::new(),
            // Here, in the runtime the socket was registered with: a kept
            // connection is only reused while that runtime runs.
            alarm: Alarm::new(),
        })
    }

    /// Puts a connection whose request ended cleanly back for the next one.
    fn park(&self, conn: Box<SingleConn>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime to close it when idle: close it now
        };
        let mut list = lock(&self.idle);
        list.conns.push(Idle {
            conn,
            since: Instant::now(),
        });
        if !list.reaper {
            list.reaper = true;
            runtime.spawn(reap(ReaperGuard {
                pool: self.me.clone(),
                armed: true,
            }));
        }
    }

    /// Removes the connections idle for the idle timeout or longer (the
    /// oldest are first).
    fn split_off_expired(&self, list: &mut IdleList, now: Instant) -> Vec<Idle> {
        let fresh_from = list
            .conns
            .iter()
            .position(|idle| now.duration_since(idle.since) < self.idle_timeout)
            .unwrap_or(list.conns.len());
        list.conns.drain(..fresh_from).collect()
    }
}

/// Clears the pool's reaper flag when the reaper task is dropped before it
/// ends on its own (its runtime shut down), so that the next park starts
/// another. Moved into the task when it is spawned, so it also acts if the
/// task never ran.
struct ReaperGuard {
    pool: Weak<SinglePool>,
    armed: bool,
}

impl Drop for ReaperGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Some(pool) = self.pool.upgrade() {
                lock(&pool.idle).reaper = false;
            }
        }
    }
}

/// Closes connections of the guard's pool once they have been idle for its
/// idle timeout. Ends after a whole idle timeout with no idle connection
/// (the next park starts another), so a busy pool keeps one reaper rather
/// than starting one per request.
async fn reap(mut guard: ReaperGuard) {
    let mut quiet = false;
    loop {
        let next = {
            let Some(pool) = guard.pool.upgrade() else {
                return;
            };
            let now = Instant::now();
            let mut list = lock(&pool.idle);
            let expired = pool.split_off_expired(&mut list, now);
            for idle in &expired {
                tracing::debug!(upstream = %pool.address, conn = idle.conn.serial, "idle connection closed");
            }
            let next = match list.conns.first() {
                Some(oldest) => {
                    quiet = false;
                    oldest.since + pool.idle_timeout
                }
                None if quiet => {
                    list.reaper = false;
                    guard.armed = false;
                    return;
                }
                None => {
                    quiet = true;
                    now + pool.idle_timeout
                }
            };
            drop(list);
            drop(expired);
            next
        };
        tokio::time::sleep_until(next.into()).await;
    }
}

/// A connection and its pool slot, held by one request.
#[derive(Debug)]
pub(crate) struct SingleLease {
    pub(crate) pool: Arc<SinglePool>,
    pub(crate) permit: OwnedSemaphorePermit,
    pub(crate) conn: Box<SingleConn>,
}

impl SingleLease {
    /// The request id this request uses on its connection.
    pub(crate) fn id(&self) -> u16 {
        self.conn.next_id
    }

    pub(crate) fn serial(&self) -> u64 {
        self.conn.serial
    }

    /// The connection served requests before: a failure may mean it was stale.
    pub(crate) fn reused(&self) -> bool {
        self.conn.served > 0
    }
}

/// The socket while a request uses it.
enum Io {
    /// The caller writes and reads.
    Whole(Socket),
    /// A body task has the write half.
    Split(ReadHalf),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Whole(s) => Pin::new(s).poll_read(cx, buf),
            Io::Split(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// One request on a connection of its own, driven from the caller's task.
pub(crate) struct SingleExchange {
    pool: Arc<SinglePool>,
    permit: Option<OwnedSemaphorePermit>,
    io: Option<Io>,
    /// The connection's state (decoder, buffers, alarm) while this request
    /// has it; `None` once it is back in the pool or closed.
    conn: Option<Box<SingleConn>>,
    serial: u64,
    /// The connection had served requests before this one.
    reused: bool,
    /// How much of the records in the connection's `out` went out from
    /// this task (the whole request when it is in memory).
    out_offset: usize,
    /// Why writing failed; reported only if the answer does not come.
    write_error: Option<io::Error>,
    /// The body task, which returns the write half when the body is sent.
    writer: Option<JoinHandle<Option<Sink>>>,
    /// The write half back from the body task: the whole body went out.
    body_sent: Option<WriteHalf>,
    shared: Option<Arc<RequestShared>>,
    /// Read but not yet decoded.
    pending: Bytes,
    last_activity: Instant,
    /// Bytes moved since `last_activity` was set: it is moved to the time
    /// of the next wait, which reads the clock anyway.
    progressed: bool,
    received: u64,
}

impl SingleExchange {
    /// Starts the request on its leased connection.
    pub(crate) fn start(lease: SingleLease, start: SingleStart<'_>) -> SingleExchange {
        let SingleLease {
            pool,
            permit,
            mut conn,
        } = lease;
        let id = conn.next_id;
        // Strays of the response before (records after its END_REQUEST
        // that came after the readiness check) are skipped, as the
        // blocking client's `ResponseMachine::restart` skips them.
        conn.decoder = conn.decoder.for_next_request(id);
        // A leased connection always has its socket; without one the
        // request fails as closed at its first poll.
        let socket = conn.socket.take();
        let mut exchange = SingleExchange {
            pool,
            permit: Some(permit),
            io: None,
            conn: None,
            serial: conn.serial,
            reused: conn.served > 0,
            out_offset: 0,
            write_error: None,
            writer: None,
            body_sent: None,
            shared: None,
            pending: Bytes::new(),
            last_activity: Instant::now(),
            progressed: false,
            received: 0,
        };
        match start {
            SingleStart::Inline(records, keep_conn) => {
                readdress(records, id, keep_conn, &mut conn.out);
                exchange.io = socket.map(Io::Whole);
            }
            SingleStart::Streamed(records, (body, data)) => {
                conn.out.clear();
                if let Some(socket) = socket {
                    let (read, write) = socket.into_split();
                    let shared = Arc::new(RequestShared::new());
                    let sink = Sink::Single {
                        half: write,
                        id,
                        shared: Arc::clone(&shared),
                        address: exchange.pool.address.clone(),
                    };
                    exchange.writer = Some(tokio::spawn(body::write_body(
                        sink,
                        Some(records),
                        body,
                        data,
                        Arc::clone(&shared),
                    )));
                    exchange.shared = Some(shared);
                    exchange.io = Some(Io::Split(read));
                }
            }
        }
        exchange.conn = Some(conn);
        exchange
    }

    pub(crate) fn reused(&self) -> bool {
        self.reused
    }

    pub(crate) fn alarm(&mut self) -> Option<&mut Alarm> {
        self.conn.as_deref_mut().map(|conn| &mut conn.alarm)
    }

    /// When a byte last moved for this request; `now` is the time of the
    /// wait that asks.
    pub(crate) fn last_activity(&mut self, now: Instant) -> Instant {
        if std::mem::take(&mut self.progressed) {
            self.last_activity = now;
        }
        match &self.shared {
            Some(shared) => shared.last_activity().max(self.last_activity),
            None => self.last_activity,
        }
    }

    /// The connection closed: nothing of the answer came, so the server
    /// never took the request (a stale kept connection), or it came in part.
    fn closed(&self) -> Failure {
        let error = Error::ConnectionClosed {
            address: self.pool.address.clone(),
            received: self.received,
        };
        Failure::new(error, true, self.received)
    }

    fn io_failure(&self, e: io::Error) -> Failure {
        Failure::io(self.pool.address.clone(), self.received, e)
    }

    /// The next record's worth of answer; on END_REQUEST the connection
    /// goes back to the pool when it is fit for another request.
    pub(crate) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Frame, Failure>> {
        loop {
            let Some(conn) = self.conn.as_deref_mut() else {
                return Poll::Ready(Err(self.closed()));
            };
            if !self.pending.is_empty() {
                // The decoder refuses records for any other request id.
                let frame = next_frame(&mut conn.decoder, &mut self.pending)
                    .map_err(|e| Failure::fatal(Error::from_decode(&self.pool.address, e)))?;
                match frame.map(|(_, frame)| frame) {
                    Some(Frame::End(end)) => {
                        self.on_end(cx);
                        return Poll::Ready(Ok(Frame::End(end)));
                    }
                    Some(frame) => return Poll::Ready(Ok(frame)),
                    None => continue,
                }
            }
            let Some(io) = self.io.as_mut() else {
                return Poll::Ready(Err(self.closed()));
            };
            while self.out_offset < conn.out.len() && self.write_error.is_none() {
                let Io::Whole(socket) = io else { break };
                match Pin::new(&mut *socket).poll_write(cx, &conn.out[self.out_offset..]) {
                    Poll::Ready(Ok(0)) => self.write_error = Some(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        self.out_offset += n;
                        self.progressed = true;
                    }
                    // The server may have answered and closed before
                    // reading everything: read what it said first.
                    Poll::Ready(Err(e)) => self.write_error = Some(e),
                    Poll::Pending => break,
                }
            }
            reserve_read(&mut conn.rbuf);
            let read = {
                let reading = io.read_buf(&mut conn.rbuf);
                tokio::pin!(reading);
                reading.poll(cx)
            };
            match read {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(match self.write_error.take() {
                        Some(e) if !is_closed(&e) => self.io_failure(e),
                        _ => self.closed(),
                    }))
                }
                Poll::Ready(Ok(n)) => {
                    self.received += n as u64;
                    self.progressed = true;
                    self.pending = conn.rbuf.split().freeze();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_failure(e))),
                Poll::Pending => {
                    // A write that failed for another reason than the
                    // server closing (which the read will show) is the
                    // answer's end too.
                    if let Some(e) = self.write_error.take() {
                        if !is_closed(&e) {
                            return Poll::Ready(Err(self.io_failure(e)));
                        }
                        self.write_error = Some(e);
                    }
                    return self.poll_writer(cx);
                }
            }
        }
    }

    /// Checks on the body task (its end wakes this task): a body that
    /// failed ends the request even while the server is silent.
    fn poll_writer(&mut self, cx: &mut Context<'_>) -> Poll<Result<Frame, Failure>> {
        let Some(writer) = self.writer.as_mut() else {
            return Poll::Pending;
        };
        let Poll::Ready(done) = Pin::new(writer).poll(cx) else {
            return Poll::Pending;
        };
        self.writer = None;
        if let Ok(Some(Sink::Single { half, .. })) = done {
            self.body_sent = Some(half);
            return Poll::Pending;
        }
        match self.shared.as_ref().and_then(|s| s.take_failure()) {
            Some(failure) => Poll::Ready(Err(failure)),
            // A write failed: the reading side tells why.
            None => Poll::Pending,
        }
    }

    /// END_REQUEST arrived: keep the connection when the whole request went
    /// out, nothing follows the answer and keep-alive is on; else close it.
    fn on_end(&mut self, cx: &mut Context<'_>) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // What follows END_REQUEST in this read (its padding, if any).
        let rest = std::mem::take(&mut self.pending);
        let socket = match self.io.take() {
            Some(Io::Whole(socket)) => {
                let sent = self.out_offset == conn.out.len() && self.write_error.is_none();
                sent.then_some(socket)
            }
            Some(Io::Split(read)) => {
                // A body task still running: the server answered before it
                // read the whole body.
                let _ = self.poll_writer(cx);
                match (self.writer.take(), self.body_sent.take()) {
                    (None, Some(half)) => Socket::reunite(read, half),
                    (writer, _) => {
                        if let Some(writer) = writer {
                            writer.abort();
                        }
                        None
                    }
                }
            }
            None => None,
        };
        let sent = socket.is_some();
        let socket = socket
            .filter(|_| reusable_after_end(&mut conn.decoder, &rest, sent, self.pool.keep_alive));
        if let Some(socket) = socket {
            conn.socket = Some(socket);
            conn.served += 1;
            conn.next_id = following_request_id(conn.next_id);
            conn.out = kept_out(std::mem::take(&mut conn.out));
            self.pool.park(conn);
        } else {
            tracing::debug!(upstream = %self.pool.address, conn = self.serial, "connection closed after its request");
        }
        // After parking, so the next waiter finds the connection idle.
        self.permit = None;
    }

    /// Ends the request early: closes the connection, stops the body task
    /// and frees the pool slot.
    pub(crate) fn cancel(&mut self) {
        if self.io.is_some() {
            tracing::debug!(upstream = %self.pool.address, conn = self.serial, "request stopped: closing its connection");
        }
        self.release();
    }

    /// Frees what a finished request still holds.
    pub(crate) fn release(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
        self.io = None;
        self.permit = None;
    }
}

impl Drop for SingleExchange {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
    }
}
