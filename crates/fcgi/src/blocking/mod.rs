//! The blocking client: one thread per request, no runtime.
//!
//! A request is written while its response is read: small requests go out in
//! one write, larger bodies are written by a helper thread, so a script that
//! prints megabytes before reading its input never deadlocks the client.

mod conn;

use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use fcgi_proto::head::Headers;
use fcgi_proto::record::{RecordType, Role, HEADER_LEN, STREAM_CHUNK_LEN};

use crate::address::Address;
use crate::config::{Config, Limits, Timeouts};
use crate::error::{is_closed, Error, TimeoutPhase};
use crate::exchange::{
    encode_request_start, following_request_id, kept_out, set_request_id, Failure, ResponseMachine,
    Step, StreamEncoder, Timer, ValuesAnswer, SINGLE_REQUEST_ID,
};
use crate::request::{Body, Request, PREAMBLE_CAPACITY};
use crate::response::{BodyCollector, Response, ResponseHead};
use conn::{connect, Stream, READ_BUFFER_LEN};

pub use crate::request::PreparedRequest;

impl From<Infallible> for Error {
    fn from(never: Infallible) -> Error {
        match never {}
    }
}

/// A blocking FastCGI client for one server. Cheap to clone; clones share
/// kept connections. `Send + Sync`. Made with [`Client::new`],
/// [`Client::with_config`] or [`Client::builder`]; it has the same methods
/// as the async client, [`crate::nonblocking::Client`], without `async`.
///
/// ```no_run
/// use fcgi::{Client, Request};
/// let client = Client::new("127.0.0.1:9000")?;
/// let response = client.execute(Request::get("/var/www/html/index.php"))?;
/// println!("{} {}", response.status, response.body_text());
/// # Ok::<(), fcgi::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    address: Address,
    address_text: String,
    /// `address_text` again, shared with each response (its error messages).
    address_shared: Arc<str>,
    config: Config,
    /// Boxed: a connection moves between this list and a response.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Conn>>>,
}

/// A connection with its buffers and its response state, kept together
/// between requests (boxed: a pointer moves between the pool and a response
/// cheaper than the whole).
struct Conn {
    stream: Stream,
    buf: Box<[u8]>,
    armed_read_timeout: Option<Duration>,
    /// The request start as sent on this connection (its records carry this
    /// connection's request id); reused from one request to the next.
    out: Vec<u8>,
    /// Microseconds since the exchange's start of the last byte moved on
    /// this connection, by the reader or the body writer (see [`Timer`]).
    progress: Arc<AtomicU64>,
    /// Bytes moved on this connection since the reader last looked at the
    /// clock: recorded as progress at the next wait, which reads the clock
    /// anyway (the idle limit counts time spent waiting for the server).
    progressed: bool,
    /// Request id of the next request on this connection. Each request on a
    /// kept connection gets a new id, so that records a misbehaving server
    /// sends late for an earlier request are recognised as not ours.
    next_request_id: u16,
    /// Decoder, head parser and kept STDERR of the current response; made
    /// ready again for each request, keeping its allocations.
    machine: ResponseMachine,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("stream", &self.stream)
            .field("next_request_id", &self.next_request_id)
            .finish_non_exhaustive()
    }
}

/// Builds a blocking [`Client`]: its server and its [`Config`], with the
/// setters the async client's builder ([`crate::nonblocking::Builder`])
/// has where they apply to a client of one server without a pool.
///
/// ```
/// use std::time::Duration;
/// use fcgi::blocking::Client;
/// let client = Client::builder()
///     .upstream("127.0.0.1:9000")
///     .config(fcgi::Config::default().idle_timeout(Duration::from_secs(5)))
///     .keep_alive(true)
///     .max_idle_connections(2)
///     .build()?;
/// assert!(client.config().keep_alive);
/// assert_eq!(client.config().timeouts.idle, Duration::from_secs(5));
/// # Ok::<(), fcgi::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    addresses: Vec<Address>,
    error: Option<Error>,
    config: Config,
}

/// Adds `address` to a builder's `addresses`, or keeps its parse error in
/// `error` (the first one) for `build` to report: both clients' builders.
pub(crate) fn add_upstream<A>(addresses: &mut Vec<Address>, error: &mut Option<Error>, address: A)
where
    A: TryInto<Address>,
    Error: From<A::Error>,
{
    match address.try_into() {
        Ok(address) => addresses.push(address),
        Err(e) => {
            error.get_or_insert(Error::from(e));
        }
    }
}

impl Builder {
    /// The server (see [`Address`] for the forms accepted). A blocking
    /// client talks to one server: a second call makes [`Builder::build`]
    /// fail (the async client balances several). An invalid address is
    /// reported by [`Builder::build`] too.
    pub fn upstream<A>(mut self, address: A) -> Builder
    where
        A: TryInto<Address>,
        Error: From<A::Error>,
    {
        add_upstream(&mut self.addresses, &mut self.error, address);
        self
    }

    /// All settings at once, keep-alive included (a later setter changes
    /// one of them).
    pub fn config(mut self, config: Config) -> Builder {
        self.config = config;
        self
    }

    /// Reuse connections (FCGI_KEEP_CONN), [`Config::keep_alive`]: off by
    /// default for the blocking client.
    pub fn keep_alive(mut self, on: bool) -> Builder {
        self.config.keep_alive = on;
        self
    }

    /// Time limits of every request ([`Config::timeouts`]); `execute_with`
    /// and `stream_with` take others for one request.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Builder {
        self.config.timeouts = timeouts;
        self
    }

    /// Size limits ([`Config::limits`]).
    pub fn limits(mut self, limits: Limits) -> Builder {
        self.config.limits = limits;
        self
    }

    /// Idle kept connections held at most ([`Config::max_idle_connections`]).
    pub fn max_idle_connections(mut self, max: usize) -> Builder {
        self.config.max_idle_connections = max;
        self
    }

    /// The client; fails on an invalid address, or when none or more than
    /// one was given. Connects lazily.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut addresses = self.addresses.into_iter();
        match (addresses.next(), addresses.next()) {
            (Some(address), None) => Client::with_config(address, self.config),
            (None, _) => Err(Error::InvalidRequest(
                "a client needs an upstream address (Builder::upstream)".into(),
            )),
            (Some(_), Some(_)) => Err(Error::InvalidRequest(
                "a blocking client has one upstream; fcgi::nonblocking::Client balances several"
                    .into(),
            )),
        }
    }
}

impl Client {
    /// A builder, for settings one by one.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A client for `address` with default settings. Connects lazily.
    pub fn new<A>(address: A) -> Result<Client, Error>
    where
        A: TryInto<Address>,
        Error: From<A::Error>,
    {
        Client::with_config(address, Config::default())
    }

    /// A client for `address` with the given settings.
    pub fn with_config<A>(address: A, config: Config) -> Result<Client, Error>
    where
        A: TryInto<Address>,
        Error: From<A::Error>,
    {
        let address = address.try_into()?;
        Ok(Client {
            inner: Arc::new(Inner {
                address_text: address.to_string(),
                address_shared: address.to_string().into(),
                address,
                config,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.inner.address
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Sends `request` and collects the whole response in memory (the body up
    /// to [`crate::Limits::max_body_bytes`]).
    #[inline]
    pub fn execute(&self, request: Request) -> Result<Response, Error> {
        self.execute_with(request, self.inner.config.timeouts)
    }

    /// [`Client::execute`] with time limits for this request only.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use fcgi::{Client, Request};
    /// let client = Client::new("127.0.0.1:9000")?;
    /// let quick = client.config().timeouts.deadline(Duration::from_secs(1));
    /// let response = client.execute_with(Request::get("/srv/www/ping.php"), quick)?;
    /// println!("{}", response.status);
    /// # Ok::<(), fcgi::Error>(())
    /// ```
    pub fn execute_with(&self, request: Request, timeouts: Timeouts) -> Result<Response, Error> {
        self.collect(self.stream_with(request, timeouts)?)
    }

    /// Sends a request encoded by [`Client::prepare`] and collects the whole
    /// response, as [`Client::execute`] does.
    ///
    /// ```no_run
    /// use fcgi::{Client, Request};
    /// let client = Client::builder().upstream("127.0.0.1:9000").keep_alive(true).build()?;
    /// let prepared = client.prepare(Request::get("/srv/www/ping.php"))?;
    /// for _ in 0..3 {
    ///     assert_eq!(client.execute_prepared(&prepared)?.status, 200);
    /// }
    /// # Ok::<(), fcgi::Error>(())
    /// ```
    pub fn execute_prepared(&self, prepared: &PreparedRequest) -> Result<Response, Error> {
        self.collect(self.stream_prepared(prepared)?)
    }

    /// Reads a response to its end, the body into memory.
    fn collect(&self, mut stream: ResponseStream) -> Result<Response, Error> {
        let mut body = BodyCollector::new(self.inner.config.limits.max_body_bytes);
        while let Some(chunk) = stream.next_chunk()? {
            if let Chunk::Body(bytes) = chunk {
                body.push(bytes)?;
            }
        }
        let head = std::mem::take(&mut stream.head);
        Ok(body.into_response(head, stream.finish()?))
    }

    /// Sends `request` and returns once the response head has arrived; the
    /// body is then read from the returned stream with constant memory.
    #[inline]
    pub fn stream(&self, request: Request) -> Result<ResponseStream, Error> {
        self.stream_with(request, self.inner.config.timeouts)
    }

    /// [`Client::stream`] with time limits for this request only (the
    /// rest of the response is read within them too).
    pub fn stream_with(
        &self,
        mut request: Request,
        timeouts: Timeouts,
    ) -> Result<ResponseStream, Error> {
        if matches!(request.body, Body::Async(_)) || matches!(request.data, Body::Async(_)) {
            return Err(Error::InvalidRequest(
                "an async body (Body::from_async_read / Body::from_stream) needs the async client, fcgi::nonblocking".into(),
            ));
        }
        request.settle_content_length()?;
        let (preamble, inline) = self.encode_start(&request)?;
        let replayable = request.body.is_replayable() && request.data.is_replayable();
        let bodies = (!inline).then(|| {
            (
                std::mem::take(&mut request.body),
                std::mem::take(&mut request.data),
                request.role,
            )
        });
        self.send(&preamble, bodies, replayable, timeouts)
    }

    /// Sends `request` again without consuming it, as [`Client::stream`]
    /// does: for load generators and retries that repeat one request. The
    /// params are encoded straight from `request` (nothing is cloned but
    /// the in-memory body, which is reference-counted). A body read from a
    /// reader cannot be sent twice and is refused.
    ///
    /// ```no_run
    /// use fcgi::{Client, Config, Request};
    /// let client = Client::with_config("127.0.0.1:9000", Config::default().keep_alive(true))?;
    /// let request = Request::get("/var/www/html/index.php");
    /// for _ in 0..3 {
    ///     client.stream_again(&request)?.finish()?;
    /// }
    /// # Ok::<(), fcgi::Error>(())
    /// ```
    pub fn stream_again(&self, request: &Request) -> Result<ResponseStream, Error> {
        if !(request.body.is_replayable() && request.data.is_replayable()) {
            return Err(Error::InvalidRequest(
                "stream_again needs a request whose body is in memory (a reader can be sent once)"
                    .into(),
            ));
        }
        let settled = match (request.params.get("CONTENT_LENGTH"), request.body.len()) {
            (None, Some(0)) => true,
            (Some(given), Some(len)) => given == len.to_string().as_bytes(),
            _ => false,
        };
        if !settled {
            // CONTENT_LENGTH still to derive (or wrong): the owned path
            // fills it in or reports the mismatch.
            return self.stream_with(
                Request {
                    role: request.role,
                    params: request.params.clone(),
                    body: clone_replayable(&request.body),
                    data: clone_replayable(&request.data),
                },
                self.inner.config.timeouts,
            );
        }
        let (preamble, inline) = self.encode_start(request)?;
        let bodies = (!inline).then(|| {
            (
                clone_replayable(&request.body),
                clone_replayable(&request.data),
                request.role,
            )
        });
        self.send(&preamble, bodies, true, self.inner.config.timeouts)
    }

    /// Encodes `request` once for sending many times with
    /// [`Client::stream_prepared`]: for load generators and anything else
    /// that repeats one request. Its params are checked and encoded here, so
    /// each send only copies the encoded bytes (and stamps the connection's
    /// request id on them). The body must be in memory.
    ///
    /// ```no_run
    /// use fcgi::{Client, Config, Request};
    /// let client = Client::with_config("127.0.0.1:9000", Config::default().keep_alive(true))?;
    /// let prepared = client.prepare(Request::get("/var/www/html/index.php"))?;
    /// for _ in 0..3 {
    ///     let response = client.stream_prepared(&prepared)?;
    ///     assert_eq!(response.status(), 200);
    ///     response.finish()?;
    /// }
    /// # Ok::<(), fcgi::Error>(())
    /// ```
    pub fn prepare(&self, request: Request) -> Result<PreparedRequest, Error> {
        let config = &self.inner.config;
        PreparedRequest::new(request, config, config.keep_alive)
    }

    /// Sends a request encoded by [`Client::prepare`], as [`Client::stream`]
    /// does. A client whose settings encode requests differently (keep-alive,
    /// parameter limits) than the preparing one encodes it afresh.
    pub fn stream_prepared(&self, prepared: &PreparedRequest) -> Result<ResponseStream, Error> {
        let bodies =
            |inline: bool| (!inline).then(|| (prepared.body(), prepared.data(), prepared.role()));
        let config = &self.inner.config;
        if let Some((preamble, inline)) = prepared.records_for(config, config.keep_alive) {
            return self.send(preamble, bodies(inline), true, config.timeouts);
        }
        let (preamble, inline) = self.encode_start(&prepared.request())?;
        self.send(&preamble, bodies(inline), true, config.timeouts)
    }

    /// BEGIN_REQUEST, PARAMS and (when it fits) the body, encoded in one
    /// buffer; true when the body is included.
    fn encode_start(&self, request: &Request) -> Result<(Vec<u8>, bool), Error> {
        let config = &self.inner.config;
        let mut preamble = Vec::with_capacity(PREAMBLE_CAPACITY);
        let inline = encode_request_start(
            SINGLE_REQUEST_ID,
            request,
            config,
            config.keep_alive,
            &mut preamble,
        )?;
        Ok((preamble, inline))
    }

    /// Sends an encoded request start and the bodies still to write after it
    /// (`None` when they went out with it), with one retry on a fresh
    /// connection when a kept one turns out closed (replayable only).
    fn send(
        &self,
        preamble: &[u8],
        mut bodies: Option<(Body, Body, Role)>,
        replayable: bool,
        timeouts: Timeouts,
    ) -> Result<ResponseStream, Error> {
        let timer = Timer::new(timeouts);
        let inline = bodies.is_none();
        loop {
            // A body that cannot be sent again needs a connection known to
            // be open; an in-memory body is simply retried if it is not.
            let (mut conn, reused) = self.checkout(&timer, !replayable)?;
            let request_id = conn.begin_exchange();
            conn.out.clear();
            conn.out.extend_from_slice(preamble);
            set_request_id(&mut conn.out, request_id);
            let to_write = match &bodies {
                None if inline => None,
                Some((Body::Bytes(b), d, role)) if replayable => {
                    Some((Body::Bytes(b.clone()), clone_replayable(d), *role))
                }
                Some((Body::Empty, d, role)) if replayable => {
                    Some((Body::Empty, clone_replayable(d), *role))
                }
                _ => Some(bodies.take().ok_or_else(|| {
                    Error::internal("a request body was sent twice (a retry of one read once)")
                })?),
            };
            let outcome = ResponseStream::open(self.clone(), timer, conn, request_id, to_write);
            match outcome {
                Ok(stream) => return Ok(stream),
                Err(failure) => {
                    if failure.retry_on_fresh(reused, replayable) {
                        // A kept connection the server had closed: one more
                        // try on a fresh one (the checkout skips idle ones).
                        self.discard_idle();
                        continue;
                    }
                    return Err(failure.error);
                }
            }
        }
    }

    /// Asks the server for management values (FCGI_GET_VALUES), e.g.
    /// [`fcgi_proto::record::MPXS_CONNS`]. Returns the pairs it answered, in
    /// its order; names it left out are simply absent.
    pub fn get_values(&self, names: &[&str]) -> Result<Vec<(String, String)>, Error> {
        let config = &self.inner.config;
        let timer = Timer::new(config.timeouts);
        let address = &self.inner.address_text;
        let mut conn = self.connect(&timer)?;
        let mut out = Vec::new();
        let mut answer = ValuesAnswer::ask(names, &mut out);
        conn.stream
            .write_all(&out)
            .map_err(|e| self.io_error(e, &timer, 0))?;
        loop {
            let n = conn.read(&timer, address)?;
            if let Some(pairs) = answer.feed(&conn.buf[..n], address)? {
                return Ok(pairs);
            }
        }
    }

    /// An idle kept connection, or a new one. With `check_stale` (a body
    /// that cannot be replayed) idle connections that the server closed, or
    /// that hold bytes nobody asked for (a stray record after END_REQUEST),
    /// are dropped first: such a request must not be lost. Without it no
    /// check is made (it costs a system call per request): a closed
    /// connection is retried on a fresh one, and a stray record fails that
    /// one request with a protocol error naming it (never its answer, never
    /// sent twice) and the connection is closed.
    fn checkout(&self, timer: &Timer, check_stale: bool) -> Result<(Box<Conn>, bool), Error> {
        if self.inner.config.keep_alive {
            while let Some(conn) = self.lock_idle().pop() {
                if check_stale && conn.stream.is_stale() {
                    continue;
                }
                return Ok((conn, true));
            }
        }
        Ok((self.connect(timer)?, false))
    }

    fn connect(&self, timer: &Timer) -> Result<Box<Conn>, Error> {
        let timeouts = &timer.timeouts;
        let limit = timeouts.connect.min(timer.remaining());
        if limit.is_zero() {
            return Err(timer.expired(&self.inner.address_text, TimeoutPhase::Deadline));
        }
        let stream = connect(&self.inner.address, limit, timeouts.idle)?;
        Ok(Box::new(Conn {
            stream,
            buf: vec![0; READ_BUFFER_LEN].into_boxed_slice(),
            armed_read_timeout: None,
            out: Vec::new(),
            progress: Arc::new(AtomicU64::new(0)),
            progressed: false,
            next_request_id: SINGLE_REQUEST_ID,
            machine: ResponseMachine::new(
                SINGLE_REQUEST_ID,
                self.inner.config.limits,
                self.inner.address_shared.clone(),
            ),
        }))
    }

    #[allow(clippy::vec_box)]
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Box<Conn>>> {
        // A panic while holding the lock leaves only a list of sockets behind.
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn discard_idle(&self) {
        self.lock_idle().clear();
    }

    fn checkin(&self, conn: Box<Conn>) {
        let mut idle = self.lock_idle();
        if idle.len() < self.inner.config.max_idle_connections {
            idle.push(conn);
        }
    }

    fn io_error(&self, source: io::Error, timer: &Timer, received: u64) -> Error {
        let address = self.inner.address_text.clone();
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                timer.expired(&address, TimeoutPhase::Idle)
            }
            _ if is_closed(&source) => Error::ConnectionClosed { address, received },
            _ => Error::Io { address, source },
        }
    }
}

impl Conn {
    /// Starts an exchange on this connection: takes its request id (1 to
    /// 65535, then 1 again), and makes progress and response state fresh. A
    /// connection is reused only after its body writer has finished, so no
    /// earlier exchange touches them any more.
    fn begin_exchange(&mut self) -> u16 {
        let id = self.next_request_id;
        self.next_request_id = following_request_id(id);
        self.progress.store(0, Ordering::Relaxed);
        self.machine.restart(id);
        id
    }

    /// Reads into the buffer within the time limits; 0 means end of stream.
    fn read(&mut self, timer: &Timer, address: &str) -> Result<usize, Error> {
        loop {
            // One clock reading for both limits; bytes moved since the last
            // wait count as moved now.
            let elapsed = timer.started().elapsed();
            if std::mem::take(&mut self.progressed) {
                timer.record_activity(&self.progress, elapsed);
            }
            let wait = timer
                .wait_after(elapsed, timer.last_activity(&self.progress))
                .map_err(|phase| timer.expired(address, phase))?;
            // Re-arm only when the limit shrinks noticeably: a read that wakes
            // early simply loops, one that would overrun cannot happen.
            let rearm = match self.armed_read_timeout {
                None => true,
                Some(armed) => wait + Duration::from_millis(2) < armed,
            };
            if rearm {
                let wait = wait.max(Duration::from_millis(1));
                self.stream
                    .set_read_timeout(Some(wait))
                    .map_err(|source| Error::Io {
                        address: address.to_string(),
                        source,
                    })?;
                self.armed_read_timeout = Some(wait);
            }
            match self.stream.read(&mut self.buf) {
                Ok(n) => {
                    self.progressed = true;
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // Loop: wait_limit tells whether a limit really passed
                    // (the writer may have made progress meanwhile).
                    if self
                        .armed_read_timeout
                        .is_some_and(|a| a < Duration::from_millis(1))
                    {
                        self.armed_read_timeout = None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_closed(&e) => return Ok(0),
                Err(source) => {
                    return Err(Error::Io {
                        address: address.to_string(),
                        source,
                    })
                }
            }
        }
    }
}

/// One chunk of a streamed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Body bytes (STDOUT after the head).
    Body(&'a [u8]),
    /// STDERR bytes.
    Stderr(&'a [u8]),
}

/// What remains known after a streamed response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Trailer {
    /// STDERR up to the limit.
    pub stderr: Vec<u8>,
    /// STDERR bytes dropped over the limit.
    pub stderr_dropped: u64,
    /// END_REQUEST's application status.
    pub app_status: u32,
}

/// How long a failing exchange waits for the body writer to say why it
/// stopped (its error, such as a failing body reader, explains the failure).
const WRITER_REPORT_WAIT: Duration = Duration::from_millis(200);

/// The request body (and DATA) being written on its own thread. The thread is
/// never joined: it may be blocked reading the caller's body, so it is left
/// to finish on its own once its socket is shut down.
struct BodyWriter {
    done: mpsc::Receiver<Result<(), Error>>,
}

impl BodyWriter {
    fn spawn(
        stream: Stream,
        address: String,
        timer: Timer,
        progress: Arc<AtomicU64>,
        request_id: u16,
        body: Body,
        data: Option<Body>,
    ) -> io::Result<BodyWriter> {
        let (report, done) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("fcgi-body-writer".into())
            .spawn(move || {
                // The receiver may be gone when the exchange ended first.
                let result =
                    write_body(stream, &address, &timer, &progress, request_id, body, data);
                let _ = report.send(result);
            })?;
        Ok(BodyWriter { done })
    }

    /// The writer's result if it has finished, without waiting.
    fn finished(&self) -> Option<Result<(), Error>> {
        match self.done.try_recv() {
            Ok(result) => Some(result),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(Error::internal(
                "the body writer thread stopped without a result (it panicked)",
            ))),
        }
    }

    /// The writer's error, waiting at most `limit` for it to finish.
    fn error_within(&self, limit: Duration) -> Option<Error> {
        self.done.recv_timeout(limit).ok().and_then(Result::err)
    }
}

/// A response whose head has arrived; the body is read on demand, through
/// [`Read`] or [`ResponseStream::next_chunk`]. Dropping it before the end
/// closes the connection, which stops a php-fpm script at its next output.
pub struct ResponseStream {
    client: Client,
    /// The connection, with the response state, until the response ends.
    conn: Option<Box<Conn>>,
    /// What the response state said when the connection was let go.
    detached: Detached,
    timer: Timer,
    /// Decoded input at `pos..filled` of the connection buffer.
    pos: usize,
    filled: usize,
    /// Body bytes in the buffer not yet handed out.
    pending: std::ops::Range<usize>,
    writer: Option<BodyWriter>,
    /// The request start went out whole (else the connection is not kept).
    request_sent: bool,
    head: ResponseHead,
    app_status: Option<u32>,
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.head.debug_stream(f)
    }
}

/// What a response still reports after its connection went back to the pool
/// or was closed.
#[derive(Default)]
struct Detached {
    stderr: Vec<u8>,
    stderr_dropped: u64,
    received: u64,
}

/// The result of one decoding step of [`ResponseStream::advance`].
enum Out {
    Body(std::ops::Range<usize>),
    Stderr(std::ops::Range<usize>),
    End,
}

impl ResponseStream {
    /// Writes the request start on `conn`, starts the body writer for
    /// `to_write` (body, DATA, role) if any, and reads until the head.
    fn open(
        client: Client,
        timer: Timer,
        mut conn: Box<Conn>,
        request_id: u16,
        to_write: Option<(Body, Body, Role)>,
    ) -> Result<ResponseStream, Failure> {
        let written = conn.stream.write_all(&conn.out);
        // A large inline body: do not keep its buffer on an idle connection.
        conn.out = kept_out(std::mem::take(&mut conn.out));
        // The server may close while the request start is written, having
        // answered without reading it (a script that ignores its input):
        // that answer is read below, as the async client does; with nothing
        // to read it is ConnectionClosed as before. The body is not sent, and
        // the connection is not kept.
        let request_sent = match written {
            Ok(()) => true,
            Err(e) if is_closed(&e) => false,
            Err(e) => return Err(Failure::new(client.io_error(e, &timer, 0), false, 0)),
        };
        conn.progressed = true;
        let writer = match to_write {
            Some((body, data, role)) if request_sent => {
                let stream = conn.stream.try_clone().map_err(|source| {
                    Failure::fatal(Error::Io {
                        address: client.inner.address_text.clone(),
                        source,
                    })
                })?;
                let data = (role == Role::Filter).then_some(data);
                let progress = Arc::clone(&conn.progress);
                let address = client.inner.address_text.clone();
                let writer =
                    BodyWriter::spawn(stream, address, timer, progress, request_id, body, data)
                        .map_err(|source| {
                            Failure::fatal(Error::Io {
                                address: client.inner.address_text.clone(),
                                source,
                            })
                        })?;
                Some(writer)
            }
            _ => None,
        };
        let mut stream = ResponseStream {
            client,
            conn: Some(conn),
            detached: Detached::default(),
            timer,
            pos: 0,
            filled: 0,
            pending: 0..0,
            writer,
            request_sent,
            head: ResponseHead::default(),
            app_status: None,
        };
        // Read until the head is complete; STDERR before it is kept.
        loop {
            match stream.advance() {
                Ok(Out::Stderr(_)) => {}
                Ok(Out::Body(range)) => {
                    stream.pending = range;
                    break;
                }
                Ok(Out::End) => break,
                Err(error) => {
                    // Nothing arrived and the connection was closed: the
                    // server never took the request. (Records of an earlier
                    // request are a protocol error, not a reason to send
                    // again: this request was delivered.)
                    let closed = matches!(error, Error::ConnectionClosed { .. });
                    let received = stream.received();
                    let error = stream.abort(error);
                    return Err(Failure::new(error, closed, received));
                }
            }
            if stream.head.arrived() {
                break;
            }
        }
        Ok(stream)
    }

    /// When the client began this request (before it took a connection):
    /// `started().elapsed()` at the end is the request's whole duration.
    pub fn started(&self) -> Instant {
        self.timer.started()
    }

    /// HTTP status code.
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// Reason phrase.
    pub fn reason(&self) -> &str {
        &self.head.reason
    }

    /// Response headers.
    pub fn headers(&self) -> &Headers {
        &self.head.headers
    }

    /// STDERR received so far (up to the limit).
    pub fn stderr(&self) -> &[u8] {
        match &self.conn {
            Some(conn) => &conn.machine.stderr,
            None => &self.detached.stderr,
        }
    }

    /// The next body or STDERR chunk as it arrives; `None` after END_REQUEST.
    /// STDERR that arrived before the head is only in [`ResponseStream::stderr`].
    pub fn next_chunk(&mut self) -> Result<Option<Chunk<'_>>, Error> {
        if !self.pending.is_empty() {
            let range = std::mem::replace(&mut self.pending, 0..0);
            return Ok(Some(Chunk::Body(&self.buf()[range])));
        }
        match self.advance() {
            Ok(Out::Body(range)) => Ok(Some(Chunk::Body(&self.buf()[range]))),
            Ok(Out::Stderr(range)) => Ok(Some(Chunk::Stderr(&self.buf()[range]))),
            Ok(Out::End) => Ok(None),
            Err(e) => Err(self.abort(e)),
        }
    }

    /// Reads the rest of the response (discarding body bytes) and returns
    /// what END_REQUEST and STDERR said.
    pub fn finish(mut self) -> Result<Trailer, Error> {
        while self.next_chunk()?.is_some() {}
        // The end was reached: the connection has been let go.
        let detached = std::mem::take(&mut self.detached);
        Ok(Trailer {
            stderr: detached.stderr,
            stderr_dropped: detached.stderr_dropped,
            app_status: self.app_status.unwrap_or(0),
        })
    }

    /// Response bytes (records included) received so far.
    fn received(&self) -> u64 {
        match &self.conn {
            Some(conn) => conn.machine.received(),
            None => self.detached.received,
        }
    }

    /// The error for a connection that closed now.
    fn closed_error(&self) -> Error {
        Error::ConnectionClosed {
            address: self.client.inner.address_text.clone(),
            received: self.received(),
        }
    }

    /// Takes the connection from the response (to keep or to close it),
    /// keeping what the response still reports.
    fn detach(&mut self) -> Option<Box<Conn>> {
        let mut conn = self.conn.take()?;
        self.detached = Detached {
            stderr: std::mem::take(&mut conn.machine.stderr),
            stderr_dropped: conn.machine.stderr_dropped,
            received: conn.machine.received(),
        };
        Some(conn)
    }

    fn buf(&self) -> &[u8] {
        match &self.conn {
            Some(conn) => &conn.buf,
            None => &[],
        }
    }

    /// Decodes until body, STDERR or the end; reads from the socket as needed.
    fn advance(&mut self) -> Result<Out, Error> {
        loop {
            if self.app_status.is_some() {
                return Ok(Out::End);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Err(self.closed_error());
            };
            if self.pos == self.filled {
                let n = conn.read(&self.timer, &self.client.inner.address_text)?;
                if n == 0 {
                    // The writer's own I/O error (a broken pipe) is only a
                    // symptom of the close; its body errors are the cause.
                    return Err(match self.writer_error() {
                        Some(cause @ (Error::Body(_) | Error::InvalidRequest(_))) => cause,
                        _ => self.closed_error(),
                    });
                }
                self.pos = 0;
                self.filled = n;
            }
            let base = self.pos;
            let (used, step) = match conn.machine.feed(&conn.buf[base..self.filled]) {
                Ok(fed) => fed,
                Err(error) => return Err(self.after_feed_error(error)),
            };
            self.pos += used;
            let shift = |r: std::ops::Range<usize>| base + r.start..base + r.end;
            match step {
                Step::Nothing => {}
                Step::Head(range) => {
                    if let Some(head) = conn.machine.take_head() {
                        self.head.set(head);
                    }
                    return Ok(Out::Body(shift(range)));
                }
                Step::Body(range) => return Ok(Out::Body(shift(range))),
                Step::Stderr(range) => return Ok(Out::Stderr(shift(range))),
                Step::End(end) => {
                    self.app_status = Some(end.app_status);
                    self.complete();
                    return Ok(Out::End);
                }
            }
        }
    }

    /// After END_REQUEST: keep the connection when it is clean, else close it.
    fn complete(&mut self) {
        let writer_done = match self.writer.take() {
            None => true,
            Some(writer) => match writer.finished() {
                Some(result) => result.is_ok(),
                None => {
                    // The server answered without reading all of the body:
                    // the connection cannot carry another request.
                    if let Some(conn) = &self.conn {
                        conn.stream.shutdown();
                    }
                    false
                }
            },
        };
        let keep_alive = self.client.inner.config.keep_alive;
        let (pos, filled) = (self.pos, self.filled);
        let Some(conn) = self.conn.as_deref_mut() else {
            return;
        };
        let sent = writer_done && self.request_sent;
        let reusable = conn
            .machine
            .reusable(&conn.buf[pos..filled], sent, keep_alive);
        if let Some(conn) = self.detach() {
            if reusable {
                self.client.checkin(conn);
            }
        }
    }

    /// A refusal (END_REQUEST with a protocol status other than
    /// FCGI_REQUEST_COMPLETE) still ends the exchange cleanly: the END_REQUEST
    /// record was consumed, so the connection is kept or closed as after any
    /// response, as the async client does. Any other error is returned as it
    /// is.
    #[cold]
    fn after_feed_error(&mut self, error: Error) -> Error {
        if let (Error::Rejected { .. }, Some(conn)) = (&error, &self.conn) {
            self.pos += conn.machine.used_before_refusal();
            self.complete();
        }
        error
    }

    /// Stops the exchange after an error: closes the connection, waits for
    /// the writer, and prefers the writer's error when it caused the failure.
    fn abort(&mut self, error: Error) -> Error {
        if let Some(conn) = self.detach() {
            conn.stream.shutdown();
        }
        match self.writer_error() {
            Some(writer_error @ Error::Body(_)) => writer_error,
            Some(writer_error @ Error::InvalidRequest(_)) => writer_error,
            _ => error,
        }
    }

    fn writer_error(&mut self) -> Option<Error> {
        let writer = self.writer.take()?;
        if let Some(conn) = &self.conn {
            conn.stream.shutdown();
        }
        writer.error_within(WRITER_REPORT_WAIT)
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        // Closing the socket stops the script and unblocks the writer.
        if let Some(conn) = self.conn.take() {
            conn.stream.shutdown();
        }
    }
}

impl Read for ResponseStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(out.len());
                let start = self.pending.start;
                out[..n].copy_from_slice(&self.buf()[start..start + n]);
                self.pending.start += n;
                return Ok(n);
            }
            match self.advance() {
                Ok(Out::Body(range)) => self.pending = range,
                Ok(Out::Stderr(_)) => {}
                Ok(Out::End) => return Ok(0),
                Err(e) => {
                    let e = self.abort(e);
                    return Err(io::Error::other(e));
                }
            }
        }
    }
}

/// Writes the body as STDIN records (and DATA for the Filter role), each
/// terminated by its empty record. Runs on the writer thread.
fn write_body(
    mut stream: Stream,
    address: &str,
    timer: &Timer,
    progress: &AtomicU64,
    id: u16,
    body: Body,
    data: Option<Body>,
) -> Result<(), Error> {
    let to = (address, timer, progress);
    let result =
        write_stream(&mut stream, to, id, RecordType::Stdin, body).and_then(|()| match data {
            Some(data) => write_stream(&mut stream, to, id, RecordType::Data, data),
            None => Ok(()),
        });
    if result.is_err() {
        // Make the reading side fail fast instead of waiting for a body
        // that will never come.
        stream.shutdown();
    }
    result
}

fn write_stream(
    stream: &mut Stream,
    (address, timer, progress): (&str, &Timer, &AtomicU64),
    id: u16,
    record_type: RecordType,
    body: Body,
) -> Result<(), Error> {
    let io_err = |source: io::Error| Error::Io {
        address: address.to_string(),
        source,
    };
    let mut encoder = StreamEncoder::new(record_type, id, body.len());
    match body {
        Body::Empty => {}
        // Refused by `Client::stream` before anything is sent.
        Body::Async(_) => {
            return Err(Error::internal(
                "an async body reached the blocking client's body writer",
            ))
        }
        Body::Bytes(bytes) => {
            for chunk in bytes.chunks(STREAM_CHUNK_LEN) {
                let header = encoder.header(chunk.len());
                write_all_vectored(stream, &header, chunk).map_err(io_err)?;
                timer.record_activity(progress, timer.started().elapsed());
            }
        }
        Body::Reader { mut reader, .. } => {
            let mut buf = vec![0u8; HEADER_LEN + STREAM_CHUNK_LEN];
            loop {
                let want = encoder.want();
                if want == 0 {
                    break;
                }
                let n = match reader.read(&mut buf[HEADER_LEN..HEADER_LEN + want]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::Body(e)),
                };
                if n == 0 {
                    break;
                }
                buf[..HEADER_LEN].copy_from_slice(&encoder.header(n));
                stream.write_all(&buf[..HEADER_LEN + n]).map_err(io_err)?;
                timer.record_activity(progress, timer.started().elapsed());
            }
        }
    }
    stream.write_all(&encoder.end()?).map_err(io_err)?;
    timer.record_activity(progress, timer.started().elapsed());
    Ok(())
}

fn write_all_vectored(stream: &mut Stream, header: &[u8], data: &[u8]) -> io::Result<()> {
    let total = header.len() + data.len();
    let mut written = 0;
    while written < total {
        let n = if written < header.len() {
            stream.write_vectored(&[io::IoSlice::new(&header[written..]), io::IoSlice::new(data)])
        } else {
            stream.write(&data[written - header.len()..])
        };
        match n {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A copy of a body held in memory (cheap: bytes are shared); other bodies
/// give [`Body::Empty`].
fn clone_replayable(body: &Body) -> Body {
    match body {
        Body::Bytes(b) => Body::Bytes(b.clone()),
        _ => Body::Empty,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<super::Client>();
    }
}
