//! The mux path: one multiplexed connection ([`MuxConn`]), its socket and
//! the task that drives it. (Connections that carry a single request at a
//! time need no task: see [`super::single`]; what both paths use is in
//! [`super::frame`] and [`super::shared`].)
//!
//! A multiplexed connection is owned by one tokio task (the driver), which reads
//! the server's records with the sans-IO [`Decoder`] and routes each event by
//! request id to that request's bounded channel; it writes the records that
//! requests hand it (preambles from [`Ctl::Start`], body records from the
//! bounded write channel) in the order they come, whole records only. It
//! does both at once, so a request body is written while the response is
//! read (full duplex).
//!
//! The driver never waits for a reader: FastCGI has no per-request flow
//! control, so stopping the socket for one slow reader would stall every
//! request on the connection. Each request buffers its own unread response
//! ([`Inbox`]: memory, then a temporary file, then that request fails).
//!
//! Cancellation sends FCGI_ABORT_REQUEST; the request's records are read
//! and dropped until its END_REQUEST, and records that still come for an id
//! that ended within the abort timeout are dropped and counted (Go's server
//! sends some after it answered the abort). A record for any other id is a
//! protocol error. An aborted id whose END_REQUEST does not come within the
//! abort timeout (flup never sends one while its application waits for the
//! body) is given up and the connection retired: it takes no new requests
//! and closes once its requests are over.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fcgi_proto::decode::Decoder;
use fcgi_proto::encode::encode_abort_request;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{next_frame, reserve_read, Frame, READ_CHUNK_LEN};
use super::inbox::{BufferLimits, Inbox};
use super::pool::MuxPool;
use super::shared::RequestShared;
use super::socket::Socket;
use crate::error::{connection_error, is_closed, Error};
use crate::exchange::{trace_sent_records, Failure};

/// Body records queued per connection before body writers wait.
pub(crate) const WRITE_CHANNEL_CAPACITY: usize = 4;
/// Largest number of buffers handed to one vectored write.
const MAX_WRITE_SLICES: usize = 16;

/// A request starting on a connection.
pub(crate) struct MuxStart {
    pub(crate) id: u16,
    /// Unique per request: tells a late message from the id's next user.
    pub(crate) generation: u64,
    /// BEGIN_REQUEST and PARAMS, and the whole body when `complete`.
    pub(crate) preamble: Bytes,
    pub(crate) complete: bool,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) shared: Arc<RequestShared>,
}

/// Messages from requests to their connection's driver.
pub(crate) enum Ctl {
    Start(MuxStart),
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
pub(crate) struct MuxConn {
    pub(crate) serial: u64,
    ctl: mpsc::UnboundedSender<Ctl>,
    pub(crate) writes: mpsc::Sender<WriteItem>,
}

impl MuxConn {
    /// Hands a request to the driver; false when the driver is gone (the
    /// request never reached the server).
    pub(crate) fn start(&self, start: MuxStart) -> bool {
        self.ctl.send(Ctl::Start(start)).is_ok()
    }

    pub(crate) fn cancel(&self, id: u16, generation: u64) {
        // A driver that is gone has nothing left to cancel.
        let _ = self.ctl.send(Ctl::Cancel { id, generation });
    }
}

/// Settings the driver needs.
#[derive(Debug, Clone)]
pub(crate) struct MuxSettings {
    pub(crate) address: String,
    pub(crate) pool_idle_timeout: Duration,
    /// How long an aborted request id may wait for its END_REQUEST; also
    /// how long records for an id that ended are taken as late and dropped.
    pub(crate) abort_timeout: Duration,
    pub(crate) buffer: BufferLimits,
}

/// Starts the driver task of a fresh connection.
pub(crate) fn spawn(
    socket: Socket,
    serial: u64,
    pool: Weak<MuxPool>,
    settings: MuxSettings,
) -> Arc<MuxConn> {
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let (write_tx, write_rx) = mpsc::channel(WRITE_CHANNEL_CAPACITY);
    let driver = Driver {
        serial,
        pool,
        settings,
        active: HashMap::new(),
        aborted: HashMap::new(),
        ended: Ended::default(),
        dropped_records: 0,
        retiring: false,
        decoder: Decoder::multiplexed(),
        out: VecDeque::new(),
        out_offset: 0,
    };
    tokio::spawn(driver.run(socket, ctl_rx, write_rx));
    Arc::new(MuxConn {
        serial,
        ctl: ctl_tx,
        writes: write_tx,
    })
}

struct Active {
    generation: u64,
    inbox: Arc<Inbox>,
    shared: Arc<RequestShared>,
    body_done: bool,
    received: u64,
}

/// Ids whose requests ended recently, so that records a server still sends
/// for them (Go's `net/http/fcgi` answers FCGI_ABORT_REQUEST with
/// END_REQUEST, then may send STDOUT and a second END_REQUEST) are told
/// from records for an id never used. At most one entry per id.
#[derive(Default)]
struct Ended {
    /// When each id ended, and the number of that ending.
    when: HashMap<u16, (Instant, u64)>,
    /// Endings in order (an id that ended again leaves a stale earlier
    /// entry, told apart by its number).
    order: VecDeque<(u16, Instant, u64)>,
    count: u64,
}

impl Ended {
    fn insert(&mut self, id: u16, now: Instant, window: Duration) {
        self.prune(now, window);
        // Bounded however fast requests end: past one entry per possible
        // id, the oldest endings are forgotten early.
        while self.order.len() > usize::from(u16::MAX) {
            self.forget_oldest();
        }
        self.count += 1;
        self.when.insert(id, (now, self.count));
        self.order.push_back((id, now, self.count));
    }

    fn forget_oldest(&mut self) {
        if let Some((id, _, number)) = self.order.pop_front() {
            if self.when.get(&id).map(|&(_, n)| n) == Some(number) {
                self.when.remove(&id);
            }
        }
    }

    fn remove(&mut self, id: u16) {
        self.when.remove(&id);
    }

    fn contains(&self, id: u16, now: Instant, window: Duration) -> bool {
        self.when
            .get(&id)
            .is_some_and(|&(at, _)| now.duration_since(at) <= window)
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some(&(_, at, _)) = self.order.front() {
            if now.duration_since(at) <= window {
                break;
            }
            self.forget_oldest();
        }
    }
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
    /// Closed on purpose (idle, retired, or the pool is gone).
    Quiet,
    /// The connection failed; every request on it fails with this.
    Failed { error: Error, closed: bool },
}

struct Driver {
    serial: u64,
    pool: Weak<MuxPool>,
    settings: MuxSettings,
    active: HashMap<u16, Active>,
    /// Aborted ids, and when: their records are dropped until END_REQUEST
    /// or the abort timeout.
    aborted: HashMap<u16, Instant>,
    ended: Ended,
    /// Records dropped because their request was aborted or had ended.
    dropped_records: u64,
    /// The pool gives this connection no more requests; it closes once the
    /// requests on it are over.
    retiring: bool,
    decoder: Decoder,
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
            if self.retiring && self.active.is_empty() {
                break Stop::Quiet;
            }
            let idle = self.active.is_empty() && self.aborted.is_empty() && self.out.is_empty();
            let abort_due = self
                .aborted
                .values()
                .map(|&since| since + self.settings.abort_timeout)
                .min();
            reserve_read(&mut rbuf);
            let result: Result<(), Stop> = tokio::select! {
                biased;
                ctl = ctl_rx.recv() => match ctl {
                    Some(ctl) => self.on_ctl(ctl),
                    // Every handle is gone: the pool was dropped.
                    None => Err(Stop::Quiet),
                },
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
                read = reader.read_buf(&mut rbuf) => match read {
                    Ok(0) => Err(Stop::Failed {
                        error: Error::ConnectionClosed { address: self.settings.address.clone(), received: 0 },
                        closed: true,
                    }),
                    Ok(_) => {
                        let input = rbuf.split().freeze();
                        self.process_input(input)
                    }
                    Err(e) => Err(self.io_stop(e)),
                },
                () = sleep_until(abort_due), if abort_due.is_some() => {
                    self.expire_aborts();
                    Ok(())
                }
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
        let error = connection_error(self.settings.address.clone(), 0, e);
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
                    start.shared.fail(Failure::fatal(Error::internal(format!(
                        "request id {} already in use on a connection to {}",
                        start.id, self.settings.address
                    ))));
                    start.inbox.close();
                    return Ok(());
                }
                self.ended.remove(start.id);
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
                        inbox: start.inbox,
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
                self.abandon(id);
                Ok(())
            }
        }
    }

    /// Stops request `id` (its reader is gone, or its buffer overflowed):
    /// FCGI_ABORT_REQUEST, and its records are dropped from now on.
    fn abandon(&mut self, id: u16) {
        let Some(active) = self.active.remove(&id) else {
            return;
        };
        active.inbox.close();
        tracing::debug!(
            conn = self.serial,
            id,
            "request cancelled: FCGI_ABORT_REQUEST"
        );
        let generation = active.generation;
        self.drop_queued_body(id, generation);
        let mut abort = Vec::with_capacity(8);
        encode_abort_request(id, &mut abort);
        trace_sent_records(&abort);
        self.out.push_back(OutItem {
            bytes: Bytes::from(abort),
            id,
            generation,
            last: false,
        });
        self.aborted.insert(id, Instant::now());
    }

    /// Drops the body records of request `id` that have not started to go
    /// out.
    fn drop_queued_body(&mut self, id: u16, generation: u64) {
        let mut index = 0;
        let offset = self.out_offset;
        self.out.retain(|item| {
            let keep = (index == 0 && offset > 0) || item.id != id || item.generation != generation;
            index += 1;
            keep
        });
    }

    /// Aborted ids whose END_REQUEST did not come within the abort timeout
    /// are given up: released, and the connection retired (the server may
    /// still count them as running, so the connection is not trusted with
    /// more requests); the pool opens a new one as needed.
    fn expire_aborts(&mut self) {
        let now = Instant::now();
        let timeout = self.settings.abort_timeout;
        let expired: Vec<u16> = self
            .aborted
            .iter()
            .filter(|(_, &since)| now.duration_since(since) >= timeout)
            .map(|(&id, _)| id)
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in &expired {
            self.aborted.remove(id);
            self.ended.insert(*id, now, timeout);
            self.release(*id, false);
        }
        tracing::debug!(
            conn = self.serial,
            ids = ?expired,
            "no END_REQUEST for aborted requests within the abort timeout; connection retired"
        );
        self.retiring = true;
        if let Some(pool) = self.pool.upgrade() {
            pool.remove(self.serial);
        }
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

    /// Decodes `input` and routes every event in it; never waits for a
    /// reader (each request buffers its own, see [`Inbox`]).
    fn process_input(&mut self, mut input: Bytes) -> Result<(), Stop> {
        while !input.is_empty() {
            let routed = next_frame(&mut self.decoder, &mut input).map_err(|e| Stop::Failed {
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
        let Some(active) = self.active.get_mut(&id) else {
            return self.stray(id, frame);
        };
        if let Frame::Stdout(b) | Frame::Stderr(b) = &frame {
            active.received += b.len() as u64 + 8;
        }
        active.shared.touch();
        let end = matches!(frame, Frame::End(_));
        match active
            .inbox
            .push(frame, &self.settings.buffer, &self.settings.address)
        {
            Ok(()) if end => {
                self.finish(id);
                Ok(())
            }
            Ok(()) => Ok(()),
            Err(error) => {
                // This request alone fails; its reader gets what was
                // buffered, then the error.
                tracing::debug!(conn = self.serial, id, %error, "response buffer full; request aborted");
                active.shared.fail(Failure::fatal(error));
                if end {
                    self.finish(id);
                } else {
                    self.abandon(id);
                }
                Ok(())
            }
        }
    }

    /// A record for an id with no request in progress: dropped (and
    /// counted) when this side aborted that request or it ended recently,
    /// else a protocol error.
    fn stray(&mut self, id: u16, frame: Frame) -> Result<(), Stop> {
        let end = matches!(frame, Frame::End(_));
        let kind = match frame {
            Frame::Stdout(_) => "STDOUT",
            Frame::Stderr(_) => "STDERR",
            Frame::End(_) => "END_REQUEST",
        };
        let window = self.settings.abort_timeout;
        let now = Instant::now();
        if self.aborted.contains_key(&id) {
            self.dropped_records += 1;
            if end {
                self.aborted.remove(&id);
                self.ended.insert(id, now, window);
                self.release(id, true);
            }
            return Ok(());
        }
        if self.ended.contains(id, now, window) {
            self.dropped_records += 1;
            tracing::debug!(
                conn = self.serial,
                id,
                record = kind,
                dropped_records = self.dropped_records,
                "late record for a request that already ended; dropped"
            );
            return Ok(());
        }
        Err(Stop::Failed {
            error: Error::protocol(
                &self.settings.address,
                format!(
                    "{kind} record for request id {id}, which is not in progress on this connection"
                ),
            ),
            closed: false,
        })
    }

    /// END_REQUEST was handed to request `id`.
    fn finish(&mut self, id: u16) {
        let Some(active) = self.active.remove(&id) else {
            return;
        };
        active.inbox.close();
        if !active.body_done {
            // Drop the rest of its body; the server is done with it.
            self.drop_queued_body(id, active.generation);
        }
        self.ended
            .insert(id, Instant::now(), self.settings.abort_timeout);
        self.release(id, true);
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
        tracing::debug!(conn = self.serial, reason = %error, dropped_records = self.dropped_records, "connection closed");
        for (_, active) in self.active.drain() {
            let error = copy_error(&error, active.received);
            active
                .shared
                .fail(Failure::new(error, closed, active.received));
            active.inbox.close();
        }
        // Requests handed over after the end never reached the server.
        ctl_rx.close();
        while let Ok(ctl) = ctl_rx.try_recv() {
            if let Ctl::Start(start) = ctl {
                start
                    .shared
                    .fail(Failure::new(copy_error(&error, 0), true, 0));
                start.inbox.close();
            }
        }
    }
}

/// Waits until `at` (never, when `None`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
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
        // A connection fails with the three above only.
        other => Error::internal(format!("unexpected connection failure: {other}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_id_is_remembered_for_the_window_only() {
        let mut ended = Ended::default();
        let start = Instant::now();
        let window = Duration::from_secs(10);
        ended.insert(7, start, window);
        assert!(ended.contains(7, start + Duration::from_secs(9), window));
        assert!(!ended.contains(7, start + Duration::from_secs(11), window));
        assert!(!ended.contains(8, start, window), "never used");
        ended.insert(9, start + Duration::from_secs(11), window);
        assert!(!ended.when.contains_key(&7), "pruned");
    }

    #[test]
    fn ended_ids_stay_bounded_however_fast_requests_end() {
        let mut ended = Ended::default();
        let now = Instant::now();
        for i in 0..200_000u32 {
            ended.insert((i % 1000) as u16 + 1, now, Duration::from_secs(3600));
        }
        assert!(ended.order.len() <= usize::from(u16::MAX) + 1);
        assert_eq!(ended.when.len(), 1000);
    }
}
