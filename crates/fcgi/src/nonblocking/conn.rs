//! One multiplexed connection: its socket and the task that drives it.
//! (Connections that carry one request at a time need no task: see
//! [`super::direct`].)
//!
//! A multiplexed connection is owned by one tokio task (the driver), which reads
//! the server's records with the sans-IO [`Decoder`] and routes each event by
//! request id to that request's bounded channel; it writes the records that
//! requests hand it (preambles from [`Ctl::Start`], body records from the
//! bounded write channel) in the order they come, whole records only. It
//! does both at once, so a request body is written while the response is
//! read (full duplex).
//!
//! Backpressure: when a request's channel is full the driver stops reading
//! the socket until the reader takes a chunk, so a slow reader slows the
//! server down instead of growing a buffer. This stalls every request on the
//! connection (FastCGI has no per-request flow control).

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fcgi_proto::decode::{DecodeError, Decoder, EndRequest, Event};
use fcgi_proto::encode::encode_abort_request;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::lock;
use super::pool::Pool;
use super::socket::Socket;
use crate::error::{is_closed, Error};
use crate::exchange::{trace_event, trace_sent_records};

/// Bytes asked of the socket per read: one full php-fpm record fits.
pub(crate) const READ_CHUNK_LEN: usize = 64 * 1024 + 64;
/// Response chunks buffered per request before the connection stops reading
/// (each at most [`READ_CHUNK_LEN`] bytes).
pub(crate) const FRAME_CHANNEL_CAPACITY: usize = 4;
/// Body records queued per connection before body writers wait.
pub(crate) const WRITE_CHANNEL_CAPACITY: usize = 4;
/// Largest number of buffers handed to one vectored write.
const MAX_WRITE_SLICES: usize = 16;

/// What a request and its connection driver share.
#[derive(Debug)]
pub(crate) struct RequestShared {
    base: Instant,
    /// Microseconds since `base` of the last byte moved for this request.
    activity: AtomicU64,
    /// Why the request ended early; the first writer wins.
    failure: Mutex<Option<Failure>>,
}

/// Why a request failed, and whether sending it again is safe.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    /// Nothing of the response arrived and the connection closed: the
    /// server never saw the request (a stale kept connection).
    pub(crate) retryable: bool,
}

impl RequestShared {
    pub(crate) fn new() -> RequestShared {
        RequestShared {
            base: Instant::now(),
            activity: AtomicU64::new(0),
            failure: Mutex::new(None),
        }
    }

    /// Records that a byte moved now.
    pub(crate) fn touch(&self) {
        let now = self.base.elapsed().as_micros() as u64;
        self.activity.fetch_max(now, Ordering::Relaxed);
    }

    /// When the last byte moved.
    pub(crate) fn last_activity(&self) -> Instant {
        self.base + Duration::from_micros(self.activity.load(Ordering::Relaxed))
    }

    /// Records why the request failed, unless a reason is already known.
    pub(crate) fn fail(&self, failure: Failure) {
        let mut slot = lock(&self.failure);
        if slot.is_none() {
            *slot = Some(failure);
        }
    }

    pub(crate) fn take_failure(&self) -> Option<Failure> {
        lock(&self.failure).take()
    }
}

/// What the driver hands a request.
#[derive(Debug)]
pub(crate) enum Frame {
    Stdout(Bytes),
    Stderr(Bytes),
    End(EndRequest),
}

/// Decodes the next event from `pending` (bytes read, not yet decoded) and
/// drops what it used; STDOUT and STDERR share `pending`'s buffer. Returns
/// the frame and its request id, or `None` when the bytes used made no
/// frame (a partial record, or a management answer, which is ignored).
pub(crate) fn next_frame(
    decoder: &mut Decoder,
    pending: &mut Bytes,
) -> Result<Option<(u16, Frame)>, DecodeError> {
    let input = std::mem::take(pending);
    let (used, event) = decoder.decode(&input)?;
    let frame = event.and_then(|event| {
        trace_event("recv", &event);
        match event {
            Event::Stdout(id, b) => Some((id, Frame::Stdout(input.slice_ref(b)))),
            Event::Stderr(id, b) => Some((id, Frame::Stderr(input.slice_ref(b)))),
            Event::End(id, end) => Some((id, Frame::End(end))),
            Event::Values(_) | Event::UnknownType(_) => None,
        }
    });
    *pending = input.slice(used..);
    Ok(frame)
}

/// Makes room in `rbuf` for one more read of up to [`READ_CHUNK_LEN`] bytes
/// when little is left.
pub(crate) fn reserve_read(rbuf: &mut BytesMut) {
    if rbuf.capacity() - rbuf.len() < READ_CHUNK_LEN / 4 {
        rbuf.reserve(READ_CHUNK_LEN);
    }
}

/// A request starting on a connection.
pub(crate) struct Start {
    pub(crate) id: u16,
    /// Unique per request: tells a late message from the id's next user.
    pub(crate) generation: u64,
    /// BEGIN_REQUEST and PARAMS, and the whole body when `complete`.
    pub(crate) preamble: Bytes,
    pub(crate) complete: bool,
    pub(crate) frames: mpsc::Sender<Frame>,
    pub(crate) shared: Arc<RequestShared>,
}

/// Messages from requests to their connection's driver.
pub(crate) enum Ctl {
    Start(Start),
    /// The request was dropped or failed: stop it with ABORT_REQUEST.
    Cancel {
        id: u16,
        generation: u64,
    },
}

/// One body record (or its last piece) from a request's body writer.
pub(crate) struct WriteItem {
    pub(crate) id: u16,
    pub(crate) generation: u64,
    pub(crate) parts: Vec<Bytes>,
    /// The request's last record: its body is complete once it is written.
    pub(crate) last: bool,
}

/// The pool's handle on a connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub(crate) serial: u64,
    ctl: mpsc::UnboundedSender<Ctl>,
    pub(crate) writes: mpsc::Sender<WriteItem>,
}

impl ConnHandle {
    /// Hands a request to the driver; false when the driver is gone (the
    /// request never reached the server).
    pub(crate) fn start(&self, start: Start) -> bool {
        self.ctl.send(Ctl::Start(start)).is_ok()
    }

    pub(crate) fn cancel(&self, id: u16, generation: u64) {
        // A driver that is gone has nothing left to cancel.
        let _ = self.ctl.send(Ctl::Cancel { id, generation });
    }
}

/// Settings the driver needs.
#[derive(Debug, Clone)]
pub(crate) struct DriverSettings {
    pub(crate) address: String,
    pub(crate) pool_idle_timeout: Duration,
}

/// Starts the driver task of a fresh connection.
pub(crate) fn spawn(
    socket: Socket,
    serial: u64,
    pool: Weak<Pool>,
    settings: DriverSettings,
) -> Arc<ConnHandle> {
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let (write_tx, write_rx) = mpsc::channel(WRITE_CHANNEL_CAPACITY);
    let driver = Driver {
        serial,
        pool,
        settings,
        active: HashMap::new(),
        aborted: HashMap::new(),
        decoder: Decoder::multiplexed(),
        pending: Bytes::new(),
        blocked: None,
        out: VecDeque::new(),
        out_offset: 0,
    };
    tokio::spawn(driver.run(socket, ctl_rx, write_rx));
    Arc::new(ConnHandle {
        serial,
        ctl: ctl_tx,
        writes: write_tx,
    })
}

struct Active {
    generation: u64,
    frames: mpsc::Sender<Frame>,
    shared: Arc<RequestShared>,
    body_done: bool,
    received: u64,
}

/// A buffer queued for writing, and whose it is.
struct OutItem {
    bytes: Bytes,
    id: u16,
    generation: u64,
    last: bool,
}

/// Why the driver stops.
enum Stop {
    /// Closed on purpose (idle, or the pool is gone).
    Quiet,
    /// The connection failed; every request on it fails with this.
    Failed { error: Error, closed: bool },
}

struct Driver {
    serial: u64,
    pool: Weak<Pool>,
    settings: DriverSettings,
    active: HashMap<u16, Active>,
    /// Aborted ids (multiplexed): their records are dropped until END_REQUEST.
    aborted: HashMap<u16, u64>,
    decoder: Decoder,
    /// Read but not yet decoded.
    pending: Bytes,
    /// A frame waiting for room in its request's channel.
    blocked: Option<(u16, Frame)>,
    out: VecDeque<OutItem>,
    /// Bytes of `out.front()` already written.
    out_offset: usize,
}

impl Driver {
    async fn run(
        mut self,
        socket: Socket,
        mut ctl_rx: mpsc::UnboundedReceiver<Ctl>,
        mut write_rx: mpsc::Receiver<WriteItem>,
    ) {
        let (mut reader, mut writer) = tokio::io::split(socket);
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK_LEN);
        let stop = loop {
            let idle = self.active.is_empty() && self.aborted.is_empty() && self.out.is_empty();
            let blocked_tx = self
                .blocked
                .as_ref()
                .and_then(|(id, _)| self.active.get(id))
                .map(|a| a.frames.clone());
            let can_read = self.blocked.is_none() && self.pending.is_empty();
            if can_read {
                reserve_read(&mut rbuf);
            }
            let result: Result<(), Stop> = tokio::select! {
                biased;
                ctl = ctl_rx.recv() => match ctl {
                    Some(ctl) => self.on_ctl(ctl),
                    // Every handle is gone: the pool was dropped.
                    None => Err(Stop::Quiet),
                },
                permit = reserve(blocked_tx.as_ref()), if blocked_tx.is_some() => {
                    match permit {
                        Some(permit) => match self.blocked.take() {
                            Some((id, frame)) => {
                                let end = matches!(frame, Frame::End(_));
                                permit.send(frame);
                                let finished = if end { self.finish(id) } else { Ok(()) };
                                // Go on with the input that waited behind it.
                                finished.and_then(|()| self.process_input())
                            }
                            None => Ok(()),
                        },
                        // The reader went away while we waited.
                        None => match self.blocked.take() {
                            Some((id, Frame::End(_))) => self.finish(id).and_then(|()| self.process_input()),
                            Some((id, _)) => self.abandon(id).and_then(|()| self.process_input()),
                            None => Ok(()),
                        },
                    }
                }
                written = write_some(&mut writer, &self.out, self.out_offset), if !self.out.is_empty() => {
                    match written {
                        Ok(n) => { self.advance_out(n); Ok(()) }
                        Err(e) => Err(self.io_stop(e)),
                    }
                }
                item = write_rx.recv(), if self.out.len() < 4 => {
                    if let Some(item) = item { self.queue_write(item); }
                    Ok(())
                }
                read = reader.read_buf(&mut rbuf), if can_read => match read {
                    Ok(0) => Err(Stop::Failed {
                        error: Error::ConnectionClosed { address: self.settings.address.clone(), received: 0 },
                        closed: true,
                    }),
                    Ok(_) => {
                        self.pending = rbuf.split().freeze();
                        self.process_input()
                    }
                    Err(e) => Err(self.io_stop(e)),
                },
                () = tokio::time::sleep(self.settings.pool_idle_timeout), if idle => {
                    match self.pool.upgrade() {
                        Some(pool) if !pool.retire_if_idle(self.serial) => Ok(()),
                        _ => Err(Stop::Quiet),
                    }
                }
            };
            if let Err(stop) = result {
                break stop;
            }
        };
        self.shutdown(stop, &mut ctl_rx);
    }

    fn io_stop(&self, e: io::Error) -> Stop {
        let closed = is_closed(&e);
        let address = self.settings.address.clone();
        let error = if closed {
            Error::ConnectionClosed {
                address,
                received: 0,
            }
        } else {
            Error::Io { address, source: e }
        };
        Stop::Failed { error, closed }
    }

    fn on_ctl(&mut self, ctl: Ctl) -> Result<(), Stop> {
        match ctl {
            Ctl::Start(start) => {
                trace_sent_records(&start.preamble);
                start.shared.touch();
                let conflict =
                    self.active.contains_key(&start.id) || self.aborted.contains_key(&start.id);
                if conflict {
                    // The pool never does this; refuse rather than corrupt.
                    start.shared.fail(Failure {
                        error: Error::protocol(
                            &self.settings.address,
                            "internal: request id already in use on this connection",
                        ),
                        retryable: false,
                    });
                    return Ok(());
                }
                self.out.push_back(OutItem {
                    bytes: start.preamble,
                    id: start.id,
                    generation: start.generation,
                    last: start.complete,
                });
                self.active.insert(
                    start.id,
                    Active {
                        generation: start.generation,
                        frames: start.frames,
                        shared: start.shared,
                        body_done: false,
                        received: 0,
                    },
                );
                Ok(())
            }
            Ctl::Cancel { id, generation } => {
                if self.active.get(&id).map(|a| a.generation) != Some(generation) {
                    return Ok(()); // finished already; the id may serve another request
                }
                self.abandon(id)
            }
        }
    }

    /// Stops request `id` whose reader is gone.
    fn abandon(&mut self, id: u16) -> Result<(), Stop> {
        let Some(active) = self.active.remove(&id) else {
            return Ok(());
        };
        if matches!(&self.blocked, Some((b, _)) if *b == id) {
            self.blocked = None;
        }
        tracing::debug!(
            conn = self.serial,
            id,
            "request cancelled: FCGI_ABORT_REQUEST"
        );
        // Drop its queued body records that have not started to go out.
        let generation = active.generation;
        let mut index = 0;
        let offset = self.out_offset;
        self.out.retain(|item| {
            let keep = (index == 0 && offset > 0) || item.id != id || item.generation != generation;
            index += 1;
            keep
        });
        let mut abort = Vec::with_capacity(8);
        encode_abort_request(id, &mut abort);
        trace_sent_records(&abort);
        self.out.push_back(OutItem {
            bytes: Bytes::from(abort),
            id,
            generation,
            last: false,
        });
        self.aborted.insert(id, generation);
        Ok(())
    }

    fn queue_write(&mut self, item: WriteItem) {
        let current = self
            .active
            .get(&item.id)
            .is_some_and(|a| a.generation == item.generation);
        if !current {
            return; // a cancelled or finished request's leftovers
        }
        let count = item.parts.len();
        for (i, bytes) in item.parts.into_iter().enumerate() {
            self.out.push_back(OutItem {
                bytes,
                id: item.id,
                generation: item.generation,
                last: item.last && i + 1 == count,
            });
        }
    }

    fn advance_out(&mut self, mut n: usize) {
        while let Some(front) = self.out.front() {
            let left = front.bytes.len() - self.out_offset;
            if left == 0 || n >= left {
                n -= left;
                self.out_offset = 0;
                if let Some(item) = self.out.pop_front() {
                    if let Some(a) = self.active.get_mut(&item.id) {
                        if a.generation == item.generation {
                            a.shared.touch();
                            if item.last {
                                a.body_done = true;
                            }
                        }
                    }
                }
            } else {
                self.out_offset += n;
                return;
            }
        }
    }

    /// Decodes `pending` and routes events until it is used up or a
    /// request's channel is full.
    fn process_input(&mut self) -> Result<(), Stop> {
        while !self.pending.is_empty() && self.blocked.is_none() {
            let routed =
                next_frame(&mut self.decoder, &mut self.pending).map_err(|e| Stop::Failed {
                    error: Error::from_decode(&self.settings.address, e),
                    closed: false,
                })?;
            if let Some((id, frame)) = routed {
                self.route(id, frame)?;
            }
        }
        Ok(())
    }

    fn route(&mut self, id: u16, frame: Frame) -> Result<(), Stop> {
        if self.aborted.contains_key(&id) {
            if matches!(frame, Frame::End(_)) {
                self.aborted.remove(&id);
                self.release(id, true);
            }
            return Ok(());
        }
        let Some(active) = self.active.get_mut(&id) else {
            return Err(Stop::Failed {
                error: Error::protocol(
                    &self.settings.address,
                    format!(
                        "record for request id {id}, which is not in progress on this connection"
                    ),
                ),
                closed: false,
            });
        };
        if let Frame::Stdout(b) | Frame::Stderr(b) = &frame {
            active.received += b.len() as u64 + 8;
        }
        let end = matches!(frame, Frame::End(_));
        match active.frames.try_send(frame) {
            Ok(()) => {
                if end {
                    self.finish(id)?;
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(frame)) => {
                self.blocked = Some((id, frame));
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(frame)) => {
                if end {
                    // Its reader left just as the response ended: the
                    // request is over; nothing to abort.
                    drop(frame);
                    self.finish(id)
                } else {
                    self.abandon(id)
                }
            }
        }
    }

    /// END_REQUEST was handed to request `id`.
    fn finish(&mut self, id: u16) -> Result<(), Stop> {
        let Some(active) = self.active.remove(&id) else {
            return Ok(());
        };
        if !active.body_done {
            // Drop the rest of its body; the server is done with it.
            let generation = active.generation;
            let offset = self.out_offset;
            let mut index = 0;
            self.out.retain(|item| {
                let keep =
                    (index == 0 && offset > 0) || item.id != id || item.generation != generation;
                index += 1;
                keep
            });
        }
        self.release(id, true);
        Ok(())
    }

    fn release(&self, id: u16, served: bool) {
        if let Some(pool) = self.pool.upgrade() {
            pool.release(self.serial, id, served);
        }
    }

    fn shutdown(mut self, stop: Stop, ctl_rx: &mut mpsc::UnboundedReceiver<Ctl>) {
        if let Some(pool) = self.pool.upgrade() {
            pool.remove(self.serial);
        }
        let (error, closed) = match stop {
            Stop::Quiet => (
                Error::ConnectionClosed {
                    address: self.settings.address.clone(),
                    received: 0,
                },
                true,
            ),
            Stop::Failed { error, closed } => (error, closed),
        };
        tracing::debug!(conn = self.serial, reason = %error, "connection closed");
        for (_, active) in self.active.drain() {
            let retryable = closed && active.received == 0;
            active.shared.fail(Failure {
                error: copy_error(&error, active.received),
                retryable,
            });
        }
        // Requests handed over after the end never reached the server.
        ctl_rx.close();
        while let Ok(ctl) = ctl_rx.try_recv() {
            if let Ctl::Start(start) = ctl {
                start.shared.fail(Failure {
                    error: copy_error(&error, 0),
                    retryable: true,
                });
            }
        }
    }
}

/// A copy of a connection-level error for one of its requests.
fn copy_error(error: &Error, received: u64) -> Error {
    match error {
        Error::ConnectionClosed { address, .. } => Error::ConnectionClosed {
            address: address.clone(),
            received,
        },
        Error::Io { address, source } => Error::Io {
            address: address.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        Error::Protocol { address, detail } => Error::Protocol {
            address: address.clone(),
            detail: detail.clone(),
        },
        other => Error::Protocol {
            address: String::new(),
            detail: other.to_string(),
        },
    }
}

async fn reserve(tx: Option<&mpsc::Sender<Frame>>) -> Option<mpsc::Permit<'_, Frame>> {
    match tx {
        Some(tx) => tx.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

/// One vectored write of the queued buffers; cancel-safe (a write that did
/// not complete wrote nothing).
async fn write_some<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &VecDeque<OutItem>,
    offset: usize,
) -> io::Result<usize> {
    let mut slices = Vec::with_capacity(MAX_WRITE_SLICES.min(out.len()));
    for (i, item) in out.iter().take(MAX_WRITE_SLICES).enumerate() {
        let bytes = if i == 0 {
            &item.bytes[offset..]
        } else {
            &item.bytes[..]
        };
        if !bytes.is_empty() {
            slices.push(IoSlice::new(bytes));
        }
    }
    if slices.is_empty() {
        return Ok(0);
    }
    let n = writer.write_vectored(&slices).await?;
    if n == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(n)
}
