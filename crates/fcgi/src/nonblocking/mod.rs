//! The async client (feature `tokio`, on by default): [`Client`], also
//! re-exported as [`crate::AsyncClient`].
//!
//! It sends the same [`Request`]s and returns the same [`Response`]s and
//! [`Error`]s as the blocking client, over tokio, with:
//!
//! - **a pool per upstream**: at most [`Builder::max_connections`]
//!   connections (default [`DEFAULT_MAX_CONNECTIONS`]), reused with
//!   FCGI_KEEP_CONN unless [`Config::keep_alive`] is off (the builder
//!   starts with it on), closed after [`Builder::pool_idle_timeout`]
//!   without a request. With php-fpm each kept connection pins a worker,
//!   so keep `max_connections` at or below the pool's `pm.max_children`
//!   (minus what other clients need). Callers that find every connection busy wait in
//!   FIFO order for at most [`Builder::pool_wait_timeout`], then get
//!   [`Error::Timeout`] with [`TimeoutPhase::PoolWait`];
//! - **stale connection retry**: a request that fails on a reused connection
//!   before any byte of its response arrived is sent once more on a fresh
//!   connection, when its body is replayable (in memory);
//! - **multiplexing**: each upstream is asked once (FCGI_GET_VALUES, on a
//!   connection of its own, in the background after the first request's
//!   connection is made: no request waits for it) whether it multiplexes;
//!   until an answer says FCGI_MPXS_CONNS=1 it is used one request per
//!   connection, and no answer (fcgiwrap, uWSGI) is remembered as "no".
//!   With FCGI_MPXS_CONNS=1 many requests share a connection with distinct
//!   request ids (at most [`Builder::max_requests_per_connection`], lowered
//!   to FCGI_MAX_REQS when the server gives it). php-fpm answers 0.
//!   [`Builder::multiplexing`] overrides the discovery and
//!   [`Client::discover`] runs it at once;
//! - **no task per connection** when the server does not multiplex
//!   (php-fpm): a request takes an idle connection from the pool, writes
//!   and reads it from the caller's own task and puts it back after a clean
//!   END_REQUEST, so a small request costs one write and one read and no
//!   hand-off between tasks. Multiplexed connections have a driver task that
//!   routes records by request id;
//! - **prepared requests**: [`Client::prepare`] encodes a request once,
//!   [`Client::execute_prepared`] sends it any number of times;
//! - **the same shape as the blocking client** ([`crate::blocking`]): the
//!   same type names, `new`/`with_config`/`builder`, `execute_with`,
//!   `execute_prepared`, [`Client::authorize`]; the blocking client's
//!   `stream_again` has no async twin, since [`Client::prepare`] with
//!   [`Client::stream_prepared`] does the same and encodes only once;
//! - **full duplex**: the body is written while the response is read;
//! - **streaming with backpressure** on connections of their own:
//!   [`ResponseStream`] buffers a few chunks at most, so a slow reader slows
//!   the server down. A multiplexed connection never waits for one reader
//!   (FastCGI has no per-request flow control, so that would stall every
//!   request on it): each request's unread response is buffered, up to
//!   [`Builder::response_buffer_memory`] in memory, then up to
//!   [`Builder::max_response_temp_file`] in a temporary file; past that
//!   the request fails with [`crate::Limit::ResponseBuffer`];
//! - **cancellation**: dropping a request future or a [`ResponseStream`]
//!   cancels the request: its connection is closed (php-fpm ignores
//!   FCGI_ABORT_REQUEST, a closed connection stops the script at its next
//!   output); on a multiplexed connection FCGI_ABORT_REQUEST is sent and the
//!   request's records are read and discarded (also records that still come
//!   after its END_REQUEST, as Go's server sends). An aborted request whose
//!   END_REQUEST never comes (flup) is given up after
//!   [`Builder::abort_timeout`], and its connection retired and replaced;
//! - **time limits** as the blocking client ([`crate::Timeouts`]: connect,
//!   idle, overall deadline), per request with [`Client::execute_with`];
//! - **several upstreams**: requests go to the upstream with the fewest
//!   outstanding requests; one whose connects fail
//!   [`Builder::mark_down_after`] times in a row is skipped for
//!   [`Builder::probe_interval`], then one request probes it; a request whose
//!   connect fails (it never reached a server) fails over to another upstream.
//!   An upstream given as a host name stands for all its addresses, each an
//!   upstream of its own, resolved again every [`Builder::resolve_interval`];
//! - **tracing**: a `fcgi_request` span per request (upstream, request id,
//!   connection) with DEBUG events for the head, the end (status, bytes,
//!   duration) and failures; nothing is printed unless a subscriber is set.
//!
//! ```no_run
//! # async fn run() -> Result<(), fcgi::Error> {
//! use fcgi::nonblocking::{Client, Chunk};
//! use fcgi::Request;
//!
//! let client = Client::builder()
//!     .upstream("127.0.0.1:9000")
//!     .upstream("unix:/run/php/php8.2-fpm.sock")
//!     .max_connections(4)
//!     .build()?;
//! let response = client.execute(Request::get("/var/www/html/index.php")).await?;
//! println!("{} {}", response.status, response.body_text());
//!
//! // A large response, read as it arrives.
//! let mut stream = client.stream(Request::get("/var/www/html/export.php")).await?;
//! while let Some(chunk) = stream.next_chunk().await? {
//!     if let Chunk::Body(bytes) = chunk {
//!         // write `bytes` somewhere
//! #       let _ = bytes;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Memory per multiplexed connection: a 64 KiB read buffer, the write
//! queue (at most [`DEFAULT_MAX_REQUESTS_PER_CONNECTION`] preambles and 4
//! body records), and per request in flight at most
//! [`Builder::response_buffer_memory`] of unread response plus one read
//! chunk (64 KiB); a request that is read as fast as it arrives holds
//! next to nothing. So 64 stalled readers on one connection hold at most
//! 64 x (256 + 64) KiB = 20 MiB with the defaults; the rest waits in their
//! temporary files.
//!
//! # Layout
//!
//! A request takes one of two paths, named the same everywhere (files,
//! types, variants): **mux**, a connection shared by many requests and
//! driven by a task, and **single**, a connection that carries a single
//! request at a time and is read from the caller's task.
//!
//! - `mod.rs`: [`Builder`], [`Client`] and the public defaults.
//! - `settings.rs`: what the builder makes of its options (`Settings`).
//! - `slot.rs`: one upstream as given, an address or a host name.
//! - `resolve.rs`: host names resolved to upstreams, again and again.
//! - `pool.rs`: an upstream, its health, multiplexing discovery and the
//!   choice of path; the mux pool (`MuxPool`, `MuxLease`).
//! - `mux.rs`: a multiplexed connection (`MuxConn`) and its driver task.
//! - `single.rs`: the single path's pool (`SinglePool`, `SingleLease`) and
//!   one exchange on a connection of its own (`SingleExchange`).
//! - Shared by both paths: `frame.rs` (reading records into `Frame`s),
//!   `shared.rs` (activity and failure a request shares with its writer or
//!   driver), `body.rs` (the request body writer, to either path),
//!   `response.rs` ([`ResponseStream`] over either path), `alarm.rs` (the
//!   reused tokio timer), `socket.rs` (TCP and Unix sockets), `lock.rs`.
//! - `inbox.rs`: a mux request's unread response (memory, then a file).
//!
//! The protocol work (encoding, the response machine, limits, timers) is
//! the sans-IO `crate::exchange`, the same as the blocking client's.

mod alarm;
mod body;
mod frame;
mod inbox;
mod lock;
mod mux;
mod pool;
mod resolve;
mod response;
mod settings;
mod shared;
mod single;
mod slot;
mod socket;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::address::Address;
use crate::config::{Config, Limits, Timeouts};
use crate::error::{Error, TimeoutPhase};
pub(crate) use crate::exchange::Timer;
use crate::exchange::{
    encode_request_start, keep_conn_flag, readdress, Failure, ResponseMachine, SINGLE_REQUEST_ID,
};
use crate::request::{Body, Request, Role, PREAMBLE_CAPACITY};
use crate::response::Response;
use body::Sink;
use inbox::Inbox;
use mux::MuxStart;
use pool::{Availability, Lease, MuxLease, Upstream};
use resolve::{Named, Resolver};
use response::{Link, MuxLink, Outstanding, Parts};
use settings::Settings;
use shared::RequestShared;
use single::{SingleExchange, SingleLease, SingleStart};
use slot::Slot;

pub use crate::blocking::Trailer;
pub use crate::request::PreparedRequest;
pub use response::{Chunk, ResponseStream};

/// Default connections per upstream: 4. Keep it at or below php-fpm's
/// `pm.max_children`: an idle kept connection pins a worker.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;
/// Default longest wait for a free pooled connection: 10 seconds.
pub const DEFAULT_POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an unused pooled connection stays open: 10 seconds.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap of concurrent requests on one multiplexed connection: 64.
pub const DEFAULT_MAX_REQUESTS_PER_CONNECTION: usize = 64;
/// Default number of consecutive connect failures that mark an upstream down: 2.
pub const DEFAULT_MARK_DOWN_AFTER: u32 = 2;
/// Default time a down upstream is skipped before it is probed again: 2 seconds.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Default wait for the END_REQUEST of an aborted request on a multiplexed
/// connection: 10 seconds.
pub const DEFAULT_ABORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default unread response of one multiplexed request kept in memory:
/// 256 KiB.
pub const DEFAULT_RESPONSE_BUFFER_MEMORY: usize = 256 * 1024;
/// Default unread response of one multiplexed request kept in a temporary
/// file past the memory: 1 GiB (nginx's `fastcgi_max_temp_file_size`).
pub const DEFAULT_MAX_RESPONSE_TEMP_FILE: u64 = 1 << 30;
/// Default time after which an upstream given as a host name is resolved
/// again: 30 seconds.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default wait for a server's answer to FCGI_GET_VALUES: 2 seconds. No
/// request waits for it.
pub const DEFAULT_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether requests share connections (FastCGI multiplexing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Multiplexing {
    /// Ask each upstream once with FCGI_GET_VALUES (FCGI_MPXS_CONNS).
    #[default]
    Auto,
    /// One request per connection at a time; nothing is asked.
    Disabled,
    /// Many requests per connection; nothing is asked.
    Enabled,
}

/// Builds a [`Client`]: upstreams, [`Config`] and pool settings.
///
/// ```
/// use std::time::Duration;
/// use fcgi::nonblocking::{Client, Multiplexing};
/// let client = Client::builder()
///     .upstream("127.0.0.1:9000")
///     .upstream("127.0.0.1:9001")
///     .config(fcgi::Config::default().idle_timeout(Duration::from_secs(5)))
///     .max_connections(8)
///     .pool_wait_timeout(Duration::from_secs(2))
///     .multiplexing(Multiplexing::Disabled)
///     .build()
///     .unwrap();
/// assert_eq!(client.upstreams().len(), 2);
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    addresses: Vec<Address>,
    error: Option<Error>,
    settings: Settings,
}

impl Builder {
    /// Adds an upstream server (see [`Address`] for the forms accepted). An
    /// invalid address is reported by [`Builder::build`].
    pub fn upstream<A>(mut self, address: A) -> Builder
    where
        A: TryInto<Address>,
        Error: From<A::Error>,
    {
        crate::blocking::add_upstream(&mut self.addresses, &mut self.error, address);
        self
    }

    /// Adds several upstreams.
    pub fn upstreams<I, A>(mut self, addresses: I) -> Builder
    where
        I: IntoIterator<Item = A>,
        A: TryInto<Address>,
        Error: From<A::Error>,
    {
        for address in addresses {
            self = self.upstream(address);
        }
        self
    }

    /// All shared settings at once: time limits, size limits, parameter
    /// encoding and keep-alive ([`Config::keep_alive`], which this builder
    /// otherwise starts with on). Its `max_idle_connections` is not used
    /// here: see [`Builder::max_connections`]. A later setter changes one
    /// of them.
    pub fn config(mut self, config: Config) -> Builder {
        self.settings.config = config;
        self
    }

    /// Connections per upstream, at least 1 (default
    /// [`DEFAULT_MAX_CONNECTIONS`]). With php-fpm keep this at or below the
    /// pool's `pm.max_children`: each kept connection pins a worker.
    pub fn max_connections(mut self, max: usize) -> Builder {
        self.settings.max_connections = max.max(1);
        self
    }

    /// Longest wait for a free connection (default
    /// [`DEFAULT_POOL_WAIT_TIMEOUT`]); then [`TimeoutPhase::PoolWait`].
    pub fn pool_wait_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.pool_wait_timeout = timeout;
        self
    }

    /// How long an unused pooled connection stays open (default
    /// [`DEFAULT_POOL_IDLE_TIMEOUT`]).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.pool_idle_timeout = timeout;
        self
    }

    /// Whether to multiplex; [`Multiplexing::Auto`] (the default) asks each
    /// upstream once.
    pub fn multiplexing(mut self, multiplexing: Multiplexing) -> Builder {
        self.settings.multiplexing = multiplexing;
        self
    }

    /// Concurrent requests on one multiplexed connection, at least 1 (default
    /// [`DEFAULT_MAX_REQUESTS_PER_CONNECTION`]; a server's FCGI_MAX_REQS
    /// lowers it).
    pub fn max_requests_per_connection(mut self, max: usize) -> Builder {
        self.settings.max_requests_per_connection = max.max(1);
        self
    }

    /// Reuse connections (FCGI_KEEP_CONN), [`Config::keep_alive`]: on by
    /// default for the async client, and taken from the [`Config`] given to
    /// [`Builder::config`]. Off: one connection per request, closed by the
    /// server after it.
    pub fn keep_alive(mut self, on: bool) -> Builder {
        self.settings.config.keep_alive = on;
        self
    }

    /// Time limits of every request ([`Config::timeouts`]);
    /// [`Client::execute_with`] and [`Client::stream_with`] take others for
    /// one request.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Builder {
        self.settings.config.timeouts = timeouts;
        self
    }

    /// Size limits ([`Config::limits`]).
    pub fn limits(mut self, limits: Limits) -> Builder {
        self.settings.config.limits = limits;
        self
    }

    /// Consecutive connect failures that mark an upstream down, at least 1
    /// (default [`DEFAULT_MARK_DOWN_AFTER`]).
    pub fn mark_down_after(mut self, failures: u32) -> Builder {
        self.settings.mark_down_after = failures.max(1);
        self
    }

    /// How long a down upstream is skipped before one request probes it
    /// (default [`DEFAULT_PROBE_INTERVAL`]).
    pub fn probe_interval(mut self, interval: Duration) -> Builder {
        self.settings.probe_interval = interval;
        self
    }

    /// How long an aborted request on a multiplexed connection may wait for
    /// its END_REQUEST (default [`DEFAULT_ABORT_TIMEOUT`]). Its records are
    /// read and dropped meanwhile; past it the id is given up and the
    /// connection retired (no new requests; closed once its requests are
    /// over) and replaced. Records that come for a request id within this
    /// time after its request ended are dropped too (and counted in a DEBUG
    /// event), not taken as a protocol error.
    pub fn abort_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.abort_timeout = timeout;
        self
    }

    /// Unread response bytes of one request on a multiplexed connection
    /// kept in memory (default [`DEFAULT_RESPONSE_BUFFER_MEMORY`]); more go
    /// to a temporary file. A multiplexed connection never waits for a slow
    /// reader (that would stall the other requests on it).
    pub fn response_buffer_memory(mut self, bytes: usize) -> Builder {
        self.settings.buffer.memory = bytes;
        self
    }

    /// Unread response bytes of one request on a multiplexed connection
    /// kept in a temporary file past the memory (default
    /// [`DEFAULT_MAX_RESPONSE_TEMP_FILE`]; 0: none). Past it that request
    /// fails with [`Error::LimitExceeded`] ([`crate::Limit::ResponseBuffer`]),
    /// after its reader got what was buffered.
    pub fn max_response_temp_file(mut self, bytes: u64) -> Builder {
        self.settings.buffer.file = bytes;
        self
    }

    /// Where the temporary files of [`Builder::max_response_temp_file`] are
    /// made (default: the system's temporary directory). They have no name
    /// and vanish when closed.
    pub fn temp_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Builder {
        self.settings.buffer.dir = Some(dir.into());
        self
    }

    /// How long an answer to FCGI_GET_VALUES is waited for (default
    /// [`DEFAULT_DISCOVERY_TIMEOUT`]). No request waits for it: until an
    /// answer says FCGI_MPXS_CONNS=1 the upstream is used one request per
    /// connection.
    pub fn discovery_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.discovery_timeout = timeout;
        self
    }

    /// How often an upstream given as a host name is resolved again
    /// (default [`DEFAULT_RESOLVE_INTERVAL`]): each of its addresses is an
    /// upstream of its own, so servers that come and go behind one name
    /// are followed.
    pub fn resolve_interval(mut self, interval: Duration) -> Builder {
        self.settings.resolve_interval = interval;
        self
    }

    /// How host names are resolved (default: the system's resolver); for
    /// tests, and for service discovery of one's own.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// let client = fcgi::nonblocking::Client::builder()
    ///     .upstream("php.test:9000")
    ///     .resolver(|host: &str, port: u16| {
    ///         assert_eq!(host, "php.test");
    ///         Ok(vec![SocketAddr::from(([127, 0, 0, 2], port))])
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # let _ = client;
    /// ```
    pub fn resolver<F>(mut self, resolve: F) -> Builder
    where
        F: Fn(&str, u16) -> std::io::Result<Vec<std::net::SocketAddr>> + Send + Sync + 'static,
    {
        self.settings.resolver = Resolver::custom(resolve);
        self
    }

    /// The client; fails on an invalid address or when none was given.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.addresses.is_empty() {
            return Err(Error::InvalidRequest(
                "an async client needs at least one upstream address".into(),
            ));
        }
        let settings = Arc::new(self.settings);
        let slots: Vec<Slot> = self
            .addresses
            .into_iter()
            .map(|a| match Named::new(&a, &settings) {
                Some(named) => Slot::Named(Arc::new(named)),
                None => Slot::Fixed(Arc::new(Upstream::new(a, Arc::clone(&settings)))),
            })
            .collect();
        let fixed = slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Fixed(upstream) => Some(Arc::clone(upstream)),
                Slot::Named(_) => None,
            })
            .collect();
        let named = slots.iter().any(|slot| matches!(slot, Slot::Named(_)));
        Ok(Client {
            inner: Arc::new(Inner {
                slots,
                fixed,
                named,
                settings,
                rotation: AtomicUsize::new(0),
            }),
        })
    }
}

/// An async FastCGI client for one or more upstream servers, with a
/// connection pool per upstream (see the [module docs](self)). Cheap to
/// clone (clones share the pools); `Send + Sync`. Needs a tokio runtime.
///
/// ```no_run
/// # async fn run() -> Result<(), fcgi::Error> {
/// use fcgi::{AsyncClient, Request};
/// let client = AsyncClient::new("127.0.0.1:9000")?;
/// let response = client
///     .execute(Request::post("/srv/www/form.php", "application/x-www-form-urlencoded", "a=1"))
///     .await?;
/// assert_eq!(response.status, 200);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The upstreams as given.
    slots: Vec<Slot>,
    /// The upstreams given as addresses (all of them unless `named`).
    fixed: Vec<Arc<Upstream>>,
    /// Some upstream was given as a host name.
    named: bool,
    settings: Arc<Settings>,
    rotation: AtomicUsize,
}

/// Tells one request's messages from the next user of its request id.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl Client {
    /// A client for one upstream with default settings. Connects lazily.
    pub fn new<A>(address: A) -> Result<Client, Error>
    where
        A: TryInto<Address>,
        Error: From<A::Error>,
    {
        Client::builder().upstream(address).build()
    }

    /// A client for one upstream with the given [`Config`] (keep-alive
    /// included: `Config::default()` has it off, [`Client::new`] on).
    pub fn with_config<A>(address: A, config: Config) -> Result<Client, Error>
    where
        A: TryInto<Address>,
        Error: From<A::Error>,
    {
        Client::builder().upstream(address).config(config).build()
    }

    /// A builder, for several upstreams and pool settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The upstream addresses, in the order given.
    pub fn upstreams(&self) -> Vec<Address> {
        self.inner
            .slots
            .iter()
            .map(|slot| match slot {
                Slot::Fixed(upstream) => upstream.address.clone(),
                Slot::Named(named) => named.address.clone(),
            })
            .collect()
    }

    /// The shared settings.
    pub fn config(&self) -> &Config {
        &self.inner.settings.config
    }

    /// Whether the upstream at `index` multiplexes, once discovery has
    /// concluded ([`Client::discover`], or in the background after the
    /// first request); `None` before. For a host name, whether its first
    /// address multiplexes.
    pub fn is_multiplexed(&self, index: usize) -> Option<bool> {
        match self.inner.slots.get(index)? {
            Slot::Fixed(upstream) => upstream.multiplexed(),
            Slot::Named(named) => named.resolved_first()?.multiplexed(),
        }
    }

    /// Asks every upstream now whether it multiplexes (FCGI_GET_VALUES,
    /// see [`Multiplexing::Auto`]) and returns once each has answered or
    /// its wait ([`Builder::discovery_timeout`]) has passed; the first
    /// error when one cannot be reached. Optional: without it, each
    /// upstream is asked in the background after its first connection,
    /// and used one request per connection until it answers.
    pub async fn discover(&self) -> Result<(), Error> {
        let mut first_error = None;
        for slot in &self.inner.slots {
            let upstreams = match slot.upstreams().await {
                Ok(upstreams) => upstreams,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            for upstream in upstreams {
                if let Err(e) = upstream.discovered().await {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sends `request` and collects the whole response in memory (the body up
    /// to [`crate::Limits::max_body_bytes`]).
    pub async fn execute(&self, request: Request) -> Result<Response, Error> {
        self.execute_with(request, self.inner.settings.config.timeouts)
            .await
    }

    /// [`Client::execute`] with time limits for this request only.
    pub async fn execute_with(
        &self,
        request: Request,
        timeouts: Timeouts,
    ) -> Result<Response, Error> {
        let stream = self.stream_with(request, timeouts).await?;
        stream
            .into_response(self.inner.settings.config.limits.max_body_bytes)
            .await
    }

    /// Sends `request` and returns once the response head has arrived; read
    /// the body from the returned [`ResponseStream`].
    pub async fn stream(&self, request: Request) -> Result<ResponseStream, Error> {
        self.stream_with(request, self.inner.settings.config.timeouts)
            .await
    }

    /// [`Client::stream`] with time limits for this request only.
    pub async fn stream_with(
        &self,
        mut request: Request,
        timeouts: Timeouts,
    ) -> Result<ResponseStream, Error> {
        request.settle_content_length()?;
        let settings = &self.inner.settings;
        // Encoded once (which refuses a request that cannot be encoded
        // before connecting anywhere), then sent under each attempt's id.
        let mut records = Vec::with_capacity(PREAMBLE_CAPACITY);
        let complete = encode_request_start(
            SINGLE_REQUEST_ID,
            &request,
            &settings.config,
            settings.config.keep_alive,
            &mut records,
        )?;
        let outgoing = Outgoing {
            records: Bytes::from(records),
            complete,
            body: request.body,
            data: request.data,
            role: request.role,
        };
        self.send(outgoing, timeouts).await
    }

    /// Encodes `request` once for sending many times with
    /// [`Client::execute_prepared`] or [`Client::stream_prepared`] (its body
    /// must be in memory): for load generators and anything else that
    /// repeats one request. The same [`PreparedRequest`] also serves the
    /// blocking client.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), fcgi::Error> {
    /// use fcgi::{AsyncClient, Request};
    /// let client = AsyncClient::new("127.0.0.1:9000")?;
    /// let prepared = client.prepare(Request::get("/srv/www/ping.php"))?;
    /// for _ in 0..3 {
    ///     let response = client.execute_prepared(&prepared).await?;
    ///     assert_eq!(response.status, 200);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn prepare(&self, request: Request) -> Result<PreparedRequest, Error> {
        let settings = &self.inner.settings;
        PreparedRequest::new(request, &settings.config, settings.config.keep_alive)
    }

    /// Sends a request encoded by [`Client::prepare`] and collects the whole
    /// response, as [`Client::execute`] does.
    pub fn execute_prepared(
        &self,
        prepared: &PreparedRequest,
    ) -> impl Future<Output = Result<Response, Error>> + Send + '_ {
        let start = self.outgoing(prepared);
        let settings = &self.inner.settings;
        async move {
            let stream = match start {
                Ok(outgoing) => self.send(outgoing, settings.config.timeouts).await?,
                // Boxed: encoding afresh is rare, and its future would
                // otherwise grow (and be moved with) every request's.
                Err(request) => Box::pin(self.stream(request)).await?,
            };
            stream
                .into_response(settings.config.limits.max_body_bytes)
                .await
        }
    }

    /// Sends a request encoded by [`Client::prepare`], as [`Client::stream`]
    /// does. A client whose settings encode requests differently (keep-alive,
    /// parameter limits) than the preparing one encodes it afresh.
    pub fn stream_prepared(
        &self,
        prepared: &PreparedRequest,
    ) -> impl Future<Output = Result<ResponseStream, Error>> + Send + '_ {
        let start = self.outgoing(prepared);
        async move {
            match start {
                Ok(outgoing) => {
                    self.send(outgoing, self.inner.settings.config.timeouts)
                        .await
                }
                Err(request) => Box::pin(self.stream(request)).await,
            }
        }
    }

    /// What to send for `prepared`: its encoded records when this client
    /// encodes the same way, else the request to encode afresh.
    fn outgoing(&self, prepared: &PreparedRequest) -> Result<Outgoing, Request> {
        let settings = &self.inner.settings;
        match prepared.records_for(&settings.config, settings.config.keep_alive) {
            Some((records, complete)) => Ok(Outgoing {
                records: records.clone(),
                complete,
                body: prepared.body(),
                data: prepared.data(),
                role: prepared.role(),
            }),
            None => Err(prepared.request()),
        }
    }

    /// Sends an encoded request: picks an upstream, fails over to another
    /// when a connect fails.
    async fn send(
        &self,
        mut outgoing: Outgoing,
        timeouts: Timeouts,
    ) -> Result<ResponseStream, Error> {
        let timer = Timer::new(timeouts);
        let mut tried = Vec::new();
        let resolved;
        let upstreams = if self.inner.named {
            // Boxed: resolving would otherwise grow every request's future.
            resolved = Box::pin(self.current_upstreams()).await?;
            &resolved[..]
        } else {
            &self.inner.fixed[..]
        };
        loop {
            let Some(index) = self.choose(upstreams, &tried) else {
                return Err(Error::internal("no upstream left to try"));
            };
            let upstream = &upstreams[index];
            match self.attempt(upstream, &mut outgoing, &timer).await {
                Ok(stream) => return Ok(stream),
                Err(error) => {
                    let never_reached = matches!(
                        error,
                        Error::Connect { .. }
                            | Error::Timeout {
                                phase: TimeoutPhase::Connect,
                                ..
                            }
                    );
                    tried.push(index);
                    if never_reached
                        && tried.len() < upstreams.len()
                        && !timer.remaining().is_zero()
                    {
                        tracing::debug!(upstream = %upstream.address_text, %error, "failing over to another upstream");
                        continue;
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Asks the first upstream for management values (FCGI_GET_VALUES) over
    /// a connection of its own; returns the pairs it answered. Waits as the
    /// blocking client does: within the idle timeout and the deadline of
    /// [`Config::timeouts`] (not [`Builder::discovery_timeout`], which only
    /// bounds the background discovery).
    pub async fn get_values(&self, names: &[&str]) -> Result<Vec<(String, String)>, Error> {
        let timeouts = self.inner.settings.config.timeouts;
        let timer = Timer::new(timeouts);
        let upstreams = match self.inner.slots.first() {
            Some(slot) => slot.upstreams().await?,
            None => Vec::new(),
        };
        match upstreams.first() {
            Some(upstream) => upstream.get_values(&timer, names, timeouts.idle).await,
            None => Err(Error::internal("the first upstream stands for no address")),
        }
    }

    /// Every upstream now: those given as addresses and those of the
    /// addresses of the names given (resolved on first use); a name that
    /// cannot be resolved is an error only when no upstream is left.
    async fn current_upstreams(&self) -> Result<Vec<Arc<Upstream>>, Error> {
        let mut all = Vec::new();
        let mut failed = None;
        for slot in &self.inner.slots {
            match slot.upstreams().await {
                Ok(upstreams) => all.extend(upstreams),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(error) if all.is_empty() => Err(error),
            _ => Ok(all),
        }
    }

    /// The upstream for the next request: fewest outstanding requests among
    /// those up (ties go round), else one due for a probe, else the one
    /// down for the shortest time.
    fn choose(&self, upstreams: &[Arc<Upstream>], tried: &[usize]) -> Option<usize> {
        let n = upstreams.len();
        let offset = self.inner.rotation.fetch_add(1, Ordering::Relaxed);
        let order = (0..n)
            .map(|i| (i + offset) % n)
            .filter(|i| !tried.contains(i));
        let mut best: Option<(usize, usize)> = None;
        let mut probe = None;
        let mut soonest: Option<(usize, Instant)> = None;
        for i in order {
            match upstreams[i].availability() {
                Availability::Up => {
                    let load = upstreams[i].outstanding.load(Ordering::Relaxed);
                    if best.is_none_or(|(_, b)| load < b) {
                        best = Some((i, load));
                    }
                }
                Availability::ProbeDue => {
                    if probe.is_none() {
                        probe = Some(i);
                    }
                }
                Availability::Down(until) => {
                    if soonest.is_none_or(|(_, s)| until < s) {
                        soonest = Some((i, until));
                    }
                }
            }
        }
        if let Some(i) = probe {
            if upstreams[i].claim_probe() {
                return Some(i);
            }
        }
        best.map(|(i, _)| i).or(probe).or(soonest.map(|(i, _)| i))
    }

    /// One upstream: acquire a connection, send, wait for the head; once
    /// more on a fresh connection when a reused one turned out stale.
    async fn attempt(
        &self,
        upstream: &Arc<Upstream>,
        outgoing: &mut Outgoing,
        timer: &Timer,
    ) -> Result<ResponseStream, Error> {
        let replayable = outgoing.body.is_replayable() && outgoing.data.is_replayable();
        let mut outstanding = Some(Outstanding::new(upstream));
        let mut fresh = false;
        loop {
            let lease = upstream.acquire(timer, fresh).await?;
            let opened = match lease {
                Lease::Single(lease) => Ok(self.open_single(upstream, lease, outgoing, timer)),
                Lease::Mux(lease) => self.open_mux(upstream, lease, outgoing, timer),
            };
            let (failure, reused) = match opened {
                Ok(mut stream) => match std::future::poll_fn(|cx| stream.poll_head(cx)).await {
                    Ok(()) => {
                        stream.set_outstanding(outstanding.take());
                        return Ok(stream);
                    }
                    Err(failure) => (failure, stream.reused()),
                },
                Err(failed) => failed,
            };
            if failure.retry_on_fresh(reused, replayable) && !fresh {
                tracing::debug!(upstream = %upstream.address_text, error = %failure.error, "stale pooled connection; retrying on a fresh one");
                fresh = true;
                continue;
            }
            return Err(failure.error);
        }
    }

    /// Starts the request on a connection of its own.
    fn open_single(
        &self,
        upstream: &Arc<Upstream>,
        lease: SingleLease,
        outgoing: &mut Outgoing,
        timer: &Timer,
    ) -> ResponseStream {
        let id = lease.id();
        let span = tracing::debug_span!(
            "fcgi_request",
            upstream = %upstream.address_text,
            request_id = id,
            conn = lease.serial(),
        );
        span.in_scope(|| tracing::debug!(reused = lease.reused(), "request sent"));
        let keep_alive = self.inner.settings.config.keep_alive;
        let exchange = if outgoing.complete {
            SingleExchange::start(lease, SingleStart::Inline(&outgoing.records, keep_alive))
        } else {
            let records = outgoing.records_for(id, keep_alive);
            SingleExchange::start(
                lease,
                SingleStart::Streamed(records, outgoing.take_bodies()),
            )
        };
        self.new_stream(upstream, id, Link::Single(exchange), timer, span)
    }

    /// Starts the request on a multiplexed connection; the failure (and
    /// whether the connection was reused) when its driver is gone.
    fn open_mux(
        &self,
        upstream: &Arc<Upstream>,
        mut lease: MuxLease,
        outgoing: &mut Outgoing,
        timer: &Timer,
    ) -> Result<ResponseStream, (Failure, bool)> {
        let reused = lease.reused;
        let complete = outgoing.complete;
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(RequestShared::new());
        let inbox = Arc::new(Inbox::default());
        let span = tracing::debug_span!(
            "fcgi_request",
            upstream = %upstream.address_text,
            request_id = lease.id,
            conn = lease.conn.serial,
        );
        let started = lease.conn.start(MuxStart {
            id: lease.id,
            generation,
            preamble: outgoing.records_for(lease.id, true),
            complete,
            inbox: Arc::clone(&inbox),
            shared: Arc::clone(&shared),
        });
        if !started {
            let error = Error::ConnectionClosed {
                address: upstream.address_text.clone(),
                received: 0,
            };
            return Err((Failure::new(error, true, 0), reused));
        }
        lease.mark_started();
        span.in_scope(|| tracing::debug!(reused, "request sent"));
        let writer = if complete {
            None
        } else {
            let (body, data) = outgoing.take_bodies();
            let sink = Sink::Mux {
                conn: Arc::clone(&lease.conn),
                id: lease.id,
                generation,
            };
            Some(tokio::spawn(body::write_body(
                sink,
                None,
                body,
                data,
                Arc::clone(&shared),
            )))
        };
        let id = lease.id;
        let link = Link::Mux(MuxLink {
            generation,
            inbox,
            shared,
            lease,
            writer,
        });
        Ok(self.new_stream(upstream, id, link, timer, span))
    }

    /// The response stream of a request started on `link`.
    fn new_stream(
        &self,
        upstream: &Arc<Upstream>,
        id: u16,
        link: Link,
        timer: &Timer,
        span: tracing::Span,
    ) -> ResponseStream {
        ResponseStream::new(Parts {
            id,
            link,
            machine: ResponseMachine::new(
                id,
                self.inner.settings.config.limits,
                Arc::clone(&upstream.address_shared),
            ),
            timer: *timer,
            outstanding: None,
            alarm: None,
            address: Arc::clone(&upstream.address_shared),
            span,
        })
    }
}

/// A request on its way: its first records, encoded once under
/// [`SINGLE_REQUEST_ID`], and what follows them.
struct Outgoing {
    records: Bytes,
    /// The body (and DATA) is in `records` too.
    complete: bool,
    body: Body,
    data: Body,
    role: Role,
}

impl Outgoing {
    /// The records for one attempt under request id `id`, asking the server
    /// to keep the connection or not (a shared reference when nothing needs
    /// to change).
    fn records_for(&self, id: u16, keep_conn: bool) -> Bytes {
        if id == SINGLE_REQUEST_ID && keep_conn_flag(&self.records) == Some(keep_conn) {
            return self.records.clone();
        }
        let mut records = Vec::new();
        readdress(&self.records, id, keep_conn, &mut records);
        Bytes::from(records)
    }

    /// The body and DATA (when the role uses it) for one attempt.
    fn take_bodies(&mut self) -> (Body, Option<Body>) {
        let data = (self.role == Role::Filter).then(|| take_body(&mut self.data));
        (take_body(&mut self.body), data)
    }
}

/// The body for one attempt: a copy when it is in memory (so a retry can
/// send it again), else the body itself.
fn take_body(body: &mut Body) -> Body {
    match body {
        Body::Empty => Body::Empty,
        Body::Bytes(bytes) => Body::Bytes(bytes.clone()),
        other => std::mem::take(other),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<super::Client>();
    }

    #[test]
    fn response_stream_is_send() {
        fn check<T: Send + Unpin>() {}
        check::<super::ResponseStream>();
    }

    #[test]
    fn an_invalid_upstream_is_reported_by_build() {
        let err = super::Client::builder()
            .upstream("no-port")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("missing :port"), "{err}");
        assert!(super::Client::builder().build().is_err());
    }
}
