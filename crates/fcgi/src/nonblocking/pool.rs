//! Upstreams and their connection pools: multiplexing discovery, bounded
//! connections, fair waiting, request id allocation, health. An upstream
//! that multiplexes gets a [`MuxPool`] of driven connections ([`super::mux`],
//! the mux path); one that does not gets a [`SinglePool`] ([`super::single`],
//! the single path).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fcgi_proto::record::{MAX_CONNS, MAX_REQS, MPXS_CONNS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::lock::lock;
use super::mux::{self, MuxConn, MuxSettings};
use super::settings::Settings;
use super::single::{SingleLease, SinglePool};
use super::socket::{self, Socket};
use super::{Multiplexing, Timer};
use crate::address::Address;
use crate::error::{connection_error, is_closed, Error, TimeoutPhase};
use crate::exchange::{
    first_free_request_id, following_request_id, ValuesAnswer, SINGLE_REQUEST_ID,
};

/// Whether an upstream may be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    Up,
    /// Marked down, and the time to try it again has come.
    ProbeDue,
    /// Marked down until this instant.
    Down(Instant),
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    down_until: Option<Instant>,
    probing: bool,
}

/// One FastCGI server of a client.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) address: Address,
    pub(crate) address_text: String,
    /// `address_text` for errors and machines, shared without copying.
    pub(crate) address_shared: Arc<str>,
    settings: Arc<Settings>,
    /// Set once discovery has concluded (or the settings say).
    pool: tokio::sync::OnceCell<Pools>,
    /// One request per connection until discovery concludes; the pool for
    /// good if the server does not multiplex.
    provisional: std::sync::OnceLock<Arc<SinglePool>>,
    /// A discovery task is running.
    discovering: std::sync::atomic::AtomicBool,
    /// Requests chosen for this upstream and not finished.
    pub(crate) outstanding: AtomicUsize,
    health: Mutex<Health>,
}

impl Upstream {
    pub(crate) fn new(address: Address, settings: Arc<Settings>) -> Upstream {
        let label = address.to_string();
        Upstream::with_label(address, label, settings)
    }

    /// An upstream named `label` in errors and logs.
    pub(crate) fn with_label(address: Address, label: String, settings: Arc<Settings>) -> Upstream {
        Upstream {
            address_shared: label.as_str().into(),
            address_text: label,
            address,
            settings,
            pool: tokio::sync::OnceCell::new(),
            provisional: std::sync::OnceLock::new(),
            discovering: std::sync::atomic::AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            health: Mutex::new(Health::default()),
        }
    }

    pub(crate) fn availability(&self) -> Availability {
        let health = lock(&self.health);
        match health.down_until {
            None => Availability::Up,
            Some(until) if Instant::now() >= until && !health.probing => Availability::ProbeDue,
            Some(until) => Availability::Down(until.max(Instant::now())),
        }
    }

    /// Claims the right to probe a down upstream; one request at a time.
    pub(crate) fn claim_probe(&self) -> bool {
        let mut health = lock(&self.health);
        match health.down_until {
            Some(until) if Instant::now() >= until && !health.probing => {
                health.probing = true;
                true
            }
            _ => false,
        }
    }

    fn connect_failed(&self, error: &Error) {
        let mut health = lock(&self.health);
        health.failures += 1;
        health.probing = false;
        if health.failures >= self.settings.mark_down_after {
            health.down_until = Some(Instant::now() + self.settings.probe_interval);
            tracing::debug!(upstream = %self.address_text, failures = health.failures, %error, "upstream marked down");
        }
    }

    fn connect_succeeded(&self) {
        let mut health = lock(&self.health);
        if health.down_until.is_some() {
            tracing::debug!(upstream = %self.address_text, "upstream is back up");
        }
        *health = Health::default();
    }

    /// Whether the upstream multiplexes, once known.
    pub(crate) fn multiplexed(&self) -> Option<bool> {
        self.pool.get().map(|p| matches!(p, Pools::Mux(_)))
    }

    async fn connect(&self, timer: &Timer) -> Result<Socket, Error> {
        let limit = self.settings.config.timeouts.connect.min(timer.remaining());
        if limit.is_zero() {
            return Err(timer.expired(&self.address_text, TimeoutPhase::Deadline));
        }
        match socket::connect(&self.address, limit).await {
            Ok(socket) => {
                self.connect_succeeded();
                Ok(socket)
            }
            Err(error) => {
                self.connect_failed(&error);
                Err(error)
            }
        }
    }

    /// The pool for the next request. While discovery has not concluded
    /// the upstream is used one request per connection (no request waits
    /// for an answer that fcgiwrap or uWSGI never give).
    fn pool(&self) -> Pools {
        if let Some(pools) = self.pool.get() {
            return pools.clone();
        }
        match self.settings.multiplexing {
            Multiplexing::Auto => Pools::Single(Arc::clone(self.provisional())),
            Multiplexing::Disabled => self.settle(Pools::Single(Arc::clone(self.provisional()))),
            Multiplexing::Enabled => self.settle(self.mux_pool(None, None)),
        }
    }

    /// Sets the pool for good (the first one set wins).
    fn settle(&self, pools: Pools) -> Pools {
        let _ = self.pool.set(pools.clone());
        self.pool.get().cloned().unwrap_or(pools)
    }

    fn provisional(&self) -> &Arc<SinglePool> {
        self.provisional.get_or_init(|| {
            SinglePool::new(
                self.address_text.clone(),
                self.settings.max_connections,
                self.settings.config.keep_alive,
                self.settings.pool_idle_timeout,
            )
        })
    }

    /// Starts discovery in a task of its own unless it has concluded or is
    /// under way. Called after a request's own connection is made, so that
    /// a server with one worker takes the request's connection first.
    fn start_discovery(self: &Arc<Self>) {
        if self.pool.get().is_some() || self.discovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let guard = Discovering(Arc::clone(self));
        tokio::spawn(async move {
            // A failure to connect leaves it open: the next connection
            // made for a request starts it again.
            let _ = guard.0.discovered().await;
        });
    }

    /// Waits until discovery has concluded (running it here unless it runs
    /// elsewhere); an error when the server could not be reached.
    pub(crate) async fn discovered(self: &Arc<Self>) -> Result<(), Error> {
        if self.settings.multiplexing != Multiplexing::Auto {
            let _ = self.pool();
            return Ok(());
        }
        self.pool
            .get_or_try_init(|| self.discover())
            .await
            .map(|_| ())
    }

    /// Asks the server with FCGI_GET_VALUES whether it multiplexes; no
    /// answer (or an answer without FCGI_MPXS_CONNS=1) means it does not,
    /// and is remembered.
    async fn discover(self: &Arc<Self>) -> Result<Pools, Error> {
        let timer = Timer::new(self.settings.config.timeouts);
        let values = self
            .get_values(
                &timer,
                &[MPXS_CONNS, MAX_REQS, MAX_CONNS],
                self.settings.discovery_timeout,
            )
            .await;
        let values = match values {
            Ok(values) => values,
            Err(e @ (Error::Connect { .. } | Error::InvalidAddress(_))) => return Err(e),
            Err(
                e @ Error::Timeout {
                    phase: TimeoutPhase::Connect,
                    ..
                },
            ) => return Err(e),
            Err(error) => {
                tracing::debug!(upstream = %self.address_text, %error, "FCGI_GET_VALUES unanswered; not multiplexing");
                Vec::new()
            }
        };
        let get = |name: &str| {
            values
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        };
        if get(MPXS_CONNS) != Some(1) {
            tracing::debug!(upstream = %self.address_text, multiplexed = false, "pool ready");
            return Ok(Pools::Single(Arc::clone(self.provisional())));
        }
        Ok(self.mux_pool(get(MAX_REQS), get(MAX_CONNS)))
    }

    /// The pool of a server that multiplexes, within what it said it takes.
    fn mux_pool(&self, max_reqs: Option<usize>, max_conns: Option<usize>) -> Pools {
        let settings = &self.settings;
        let cap = max_reqs
            .map_or(settings.max_requests_per_connection, |m| {
                settings.max_requests_per_connection.min(m)
            })
            .clamp(1, u16::MAX as usize - 1);
        let max_connections = max_conns
            .map_or(settings.max_connections, |m| {
                settings.max_connections.min(m)
            })
            .max(1);
        tracing::debug!(
            upstream = %self.address_text,
            multiplexed = true,
            requests_per_connection = cap,
            max_connections,
            "pool ready"
        );
        Pools::Mux(Arc::new_cyclic(|me| MuxPool {
            me: me.clone(),
            semaphore: Arc::new(Semaphore::new(max_connections * cap)),
            cap,
            max_connections,
            state: Mutex::new(PoolState::default()),
            changed: Notify::new(),
            next_serial: AtomicU64::new(1),
            driver: MuxSettings {
                address: self.address_text.clone(),
                pool_idle_timeout: settings.pool_idle_timeout,
                abort_timeout: settings.abort_timeout,
                buffer: settings.buffer.clone(),
            },
        }))
    }

    /// FCGI_GET_VALUES over a connection of its own, closed afterwards.
    pub(crate) async fn get_values(
        &self,
        timer: &Timer,
        names: &[&str],
        wait: Duration,
    ) -> Result<Vec<(String, String)>, Error> {
        let mut socket = self.connect(timer).await?;
        let address = &self.address_text;
        let limit = wait
            .min(self.settings.config.timeouts.idle)
            .min(timer.remaining());
        // The question and the reading of the answer are `ValuesAnswer`'s,
        // as in the blocking `Client::get_values`; this loop only moves bytes.
        let exchange = async {
            let mut out = Vec::new();
            let mut answer = ValuesAnswer::ask(names, &mut out);
            // I/O failures read as the blocking client's do.
            socket
                .write_all(&out)
                .await
                .map_err(|source| connection_error(address.clone(), 0, source))?;
            let mut buf = BytesMut::with_capacity(4096);
            loop {
                buf.clear();
                let n = match socket.read_buf(&mut buf).await {
                    Ok(n) => n,
                    // Closed reads as the end, as in the blocking client:
                    // the answer says what it was missing and how much came.
                    Err(e) if is_closed(&e) => 0,
                    Err(source) => return Err(connection_error(address.clone(), 0, source)),
                };
                if let Some(pairs) = answer.feed(&buf[..n], address)? {
                    return Ok(pairs);
                }
            }
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                phase: TimeoutPhase::Idle,
                after: limit,
                address: address.clone(),
            }),
        }
    }

    /// A connection and request id for one request: waits (FIFO, bounded)
    /// for a free slot, reuses a pooled connection or opens one. `fresh`
    /// asks for a new connection (the retry after a stale one).
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        timer: &Timer,
        fresh: bool,
    ) -> Result<Lease, Error> {
        match self.pool() {
            Pools::Single(pool) => {
                let permit = self.permit(&pool.semaphore, timer).await?;
                let idle =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(pool.take_idle(fresh, cx)))
                        .await;
                let conn = match idle {
                    Some(conn) => conn,
                    // Boxed: connecting is rare, and its future would
                    // otherwise grow every request's future.
                    None => {
                        let conn = pool.new_conn(Box::pin(self.connect(timer)).await?);
                        if self.pool.get().is_none() {
                            self.start_discovery();
                        }
                        conn
                    }
                };
                Ok(Lease::Single(SingleLease { pool, permit, conn }))
            }
            // Boxed: the multiplexed path's waits would otherwise grow the
            // future of every request to a server that does not multiplex.
            Pools::Mux(pool) => Box::pin(self.acquire_mux(pool, timer)).await,
        }
    }

    /// When the wait for a pool slot ends: the pool wait limit or the
    /// request's deadline, whichever comes first.
    fn wait_until(&self, timer: &Timer) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.settings.pool_wait_timeout.min(timer.remaining())
    }

    /// The error of a pool wait that ran out.
    fn wait_error(&self, timer: &Timer) -> Error {
        let pool_wait = self.settings.pool_wait_timeout;
        if pool_wait <= timer.remaining() {
            Error::Timeout {
                phase: TimeoutPhase::PoolWait,
                after: pool_wait,
                address: self.address_text.clone(),
            }
        } else {
            timer.expired(&self.address_text, TimeoutPhase::Deadline)
        }
    }

    /// A slot of `semaphore`, waited for in FIFO order within the limits.
    async fn permit(
        &self,
        semaphore: &Arc<Semaphore>,
        timer: &Timer,
    ) -> Result<OwnedSemaphorePermit, Error> {
        // A free slot needs no clock and no timer. (The semaphore hands
        // released slots to waiters first, so this cannot jump the queue.)
        if let Ok(permit) = Arc::clone(semaphore).try_acquire_owned() {
            return Ok(permit);
        }
        // Boxed: the timed wait would otherwise grow every request's future.
        Box::pin(self.wait_for_permit(semaphore, timer)).await
    }

    /// [`Upstream::permit`] when no slot is free: waits within the limits.
    async fn wait_for_permit(
        &self,
        semaphore: &Arc<Semaphore>,
        timer: &Timer,
    ) -> Result<OwnedSemaphorePermit, Error> {
        match tokio::time::timeout_at(
            self.wait_until(timer),
            Arc::clone(semaphore).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(Error::internal(format!(
                "the connection pool of {} was closed while a request waited",
                self.address_text
            ))),
            Err(_) => Err(self.wait_error(timer)),
        }
    }

    async fn acquire_mux(
        self: &Arc<Self>,
        pool: Arc<MuxPool>,
        timer: &Timer,
    ) -> Result<Lease, Error> {
        let permit = self.permit(&pool.semaphore, timer).await?;
        let wait_until = self.wait_until(timer);
        loop {
            let notified = pool.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match pool.assign() {
                Assign::Ready { conn, id, reused } => {
                    return Ok(Lease::Mux(MuxLease {
                        pool: Arc::clone(&pool),
                        conn,
                        id,
                        reused,
                        started: false,
                        permit: Some(permit),
                    }))
                }
                Assign::Connect(slot) => {
                    let socket = Box::pin(self.connect(timer)).await?;
                    let (conn, id) = pool.add(slot, socket);
                    return Ok(Lease::Mux(MuxLease {
                        pool: Arc::clone(&pool),
                        conn,
                        id,
                        reused: false,
                        started: false,
                        permit: Some(permit),
                    }));
                }
                Assign::Wait => {
                    if tokio::time::timeout_at(wait_until, notified).await.is_err() {
                        return Err(self.wait_error(timer));
                    }
                }
            }
        }
    }
}

/// A discovery task's claim: released when the task ends or is dropped
/// unfinished (its runtime shut down), so that a later request starts
/// another.
struct Discovering(Arc<Upstream>);

impl Drop for Discovering {
    fn drop(&mut self) {
        self.0.discovering.store(false, Ordering::Release);
    }
}

/// The pool of an upstream, by whether it multiplexes.
#[derive(Debug, Clone)]
enum Pools {
    Mux(Arc<MuxPool>),
    Single(Arc<SinglePool>),
}

#[derive(Debug)]
struct Entry {
    conn: Arc<MuxConn>,
    /// Request ids in flight (aborted ones too, until their END_REQUEST).
    ids: Vec<u16>,
    next_id: u16,
    served: u64,
}

impl Entry {
    fn allocate(&mut self) -> u16 {
        // Ids go round, so a late record of an old request never meets a
        // new request with the same id.
        let id = first_free_request_id(self.next_id, |id| self.ids.contains(&id));
        self.next_id = following_request_id(id);
        self.ids.push(id);
        id
    }
}

#[derive(Debug, Default)]
struct PoolState {
    entries: Vec<Entry>,
    connecting: usize,
}

enum Assign {
    Ready {
        conn: Arc<MuxConn>,
        id: u16,
        reused: bool,
    },
    Connect(ConnectSlot),
    Wait,
}

/// A connection being opened; counted against the limit until added.
struct ConnectSlot {
    pool: Arc<MuxPool>,
    armed: bool,
}

impl Drop for ConnectSlot {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.pool.state).connecting -= 1;
            self.pool.changed.notify_waiters();
        }
    }
}

/// The connections of one upstream that multiplexes.
#[derive(Debug)]
pub(crate) struct MuxPool {
    me: Weak<MuxPool>,
    /// One permit per request slot (connections x requests per connection);
    /// tokio's semaphore is fair, so waiters are served first come, first served.
    semaphore: Arc<Semaphore>,
    cap: usize,
    max_connections: usize,
    state: Mutex<PoolState>,
    changed: Notify,
    next_serial: AtomicU64,
    driver: MuxSettings,
}

impl MuxPool {
    /// A slot on the least busy connection, else a new connection while
    /// under the limit. (A retry after a failed connection needs nothing
    /// special: the failed one has left the pool.)
    fn assign(&self) -> Assign {
        let mut state = lock(&self.state);
        let ready = |state: &mut PoolState| {
            let entry = state
                .entries
                .iter_mut()
                .filter(|e| e.ids.len() < self.cap)
                .min_by_key(|e| e.ids.len())?;
            let reused = entry.served > 0 || !entry.ids.is_empty();
            let id = entry.allocate();
            Some(Assign::Ready {
                conn: Arc::clone(&entry.conn),
                id,
                reused,
            })
        };
        if let Some(ready) = ready(&mut state) {
            return ready;
        }
        if state.entries.len() + state.connecting < self.max_connections {
            return self.connect_slot(&mut state);
        }
        Assign::Wait
    }

    fn connect_slot(&self, state: &mut PoolState) -> Assign {
        match self.me.upgrade() {
            Some(pool) => {
                state.connecting += 1;
                Assign::Connect(ConnectSlot { pool, armed: true })
            }
            None => Assign::Wait,
        }
    }

    fn add(&self, mut slot: ConnectSlot, socket: Socket) -> (Arc<MuxConn>, u16) {
        slot.armed = false;
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let conn = mux::spawn(socket, serial, self.me.clone(), self.driver.clone());
        let mut entry = Entry {
            conn: Arc::clone(&conn),
            ids: Vec::new(),
            next_id: SINGLE_REQUEST_ID,
            served: 0,
        };
        let id = entry.allocate();
        let mut state = lock(&self.state);
        state.connecting -= 1;
        state.entries.push(entry);
        drop(state);
        // Callers that waited for this connection may take slots on it now.
        self.changed.notify_waiters();
        tracing::debug!(upstream = %self.driver.address, conn = serial, "connected");
        (conn, id)
    }

    /// Request `id` on connection `serial` is over (or never started).
    pub(crate) fn release(&self, serial: u64, id: u16, served: bool) {
        let mut state = lock(&self.state);
        if let Some(entry) = state.entries.iter_mut().find(|e| e.conn.serial == serial) {
            if let Some(at) = entry.ids.iter().position(|&i| i == id) {
                entry.ids.swap_remove(at);
            }
            if served {
                entry.served += 1;
            }
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// Connection `serial` is gone.
    pub(crate) fn remove(&self, serial: u64) {
        lock(&self.state)
            .entries
            .retain(|e| e.conn.serial != serial);
        self.changed.notify_waiters();
    }

    /// Removes connection `serial` when it carries no request; true when it
    /// was removed (or is not in the pool any more).
    pub(crate) fn retire_if_idle(&self, serial: u64) -> bool {
        let mut state = lock(&self.state);
        match state.entries.iter().position(|e| e.conn.serial == serial) {
            Some(at) if state.entries[at].ids.is_empty() => {
                state.entries.remove(at);
                tracing::debug!(upstream = %self.driver.address, conn = serial, "idle connection closed");
                true
            }
            Some(_) => false,
            None => true,
        }
    }
}

/// A request's hold on a connection, from assignment to the response's end.
#[derive(Debug)]
pub(crate) enum Lease {
    /// A slot on a multiplexed connection.
    Mux(MuxLease),
    /// A connection of its own.
    Single(SingleLease),
}

/// A request slot on a multiplexed connection.
#[derive(Debug)]
pub(crate) struct MuxLease {
    pool: Arc<MuxPool>,
    pub(crate) conn: Arc<MuxConn>,
    pub(crate) id: u16,
    /// The connection carried requests before: a failure may mean it was stale.
    pub(crate) reused: bool,
    started: bool,
    permit: Option<OwnedSemaphorePermit>,
}

impl MuxLease {
    /// The driver owns the id from now on.
    pub(crate) fn mark_started(&mut self) {
        self.started = true;
    }

    /// Frees the pool slot for the next waiter (the response is over).
    pub(crate) fn release_permit(&mut self) {
        self.permit = None;
    }
}

impl Drop for MuxLease {
    fn drop(&mut self) {
        if !self.started {
            self.pool.release(self.conn.serial, self.id, false);
        }
    }
}
