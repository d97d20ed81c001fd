//! The blocking [`Client`]: its kept connections (checkout, connect,
//! check-in), sending a request with one retry on a fresh connection when a
//! kept one turns out closed, GET_VALUES; and `Conn`, a connection with its
//! buffers and response state, reading within the time limits.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fcgi_proto::record::Role;

use super::builder::Builder;
use super::conn::{connect, Stream, READ_BUFFER_LEN};
use super::stream::{Chunk, ResponseStream};
use crate::address::Address;
use crate::config::{Config, Timeouts};
use crate::error::{connection_error, is_closed, Error, TimeoutPhase};
use crate::exchange::{
    encode_request_start, following_request_id, set_request_id, Activity, ResponseMachine, Timer,
    ValuesAnswer, SINGLE_REQUEST_ID,
};
use crate::request::{Body, PreparedRequest, Request, PREAMBLE_CAPACITY};
use crate::response::{BodyCollector, Response};

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
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) address: Address,
    pub(super) address_text: String,
    /// `address_text` again, shared with each response (its error messages).
    pub(super) address_shared: Arc<str>,
    pub(super) config: Config,
    /// Boxed: a connection moves between this list and a response.
    #[allow(clippy::vec_box)]
    pub(super) idle: Mutex<Vec<Box<Conn>>>,
}

/// A connection with its buffers and its response state, kept together
/// between requests (boxed: a pointer moves between the pool and a response
/// cheaper than the whole).
pub(super) struct Conn {
    pub(super) stream: Stream,
    pub(super) buf: Box<[u8]>,
    pub(super) armed_read_timeout: Option<Duration>,
    /// The request start as sent on this connection (its records carry this
    /// connection's request id); reused from one request to the next.
    pub(super) out: Vec<u8>,
    /// Microseconds since the exchange's start of the last byte moved on
    /// this connection, by the reader or the body writer (see [`Timer`]).
    pub(super) progress: Arc<Activity>,
    /// Bytes moved on this connection since the reader last looked at the
    /// clock: recorded as progress at the next wait, which reads the clock
    /// anyway (the idle limit counts time spent waiting for the server).
    pub(super) progressed: bool,
    /// Request id of the next request on this connection. Each request on a
    /// kept connection gets a new id, so that records a misbehaving server
    /// sends late for an earlier request are recognised as not ours.
    pub(super) next_request_id: u16,
    /// Decoder, head parser and kept STDERR of the current response; made
    /// ready again for each request, keeping its allocations.
    pub(super) machine: ResponseMachine,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("stream", &self.stream)
            .field("next_request_id", &self.next_request_id)
            .finish_non_exhaustive()
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
                    body: request.body.replay_copy(),
                    data: request.data.replay_copy(),
                },
                self.inner.config.timeouts,
            );
        }
        let (preamble, inline) = self.encode_start(request)?;
        let bodies = (!inline).then(|| {
            (
                request.body.replay_copy(),
                request.data.replay_copy(),
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
        // The same rule as the async client's `attempt` loop, which waits
        // where this one blocks: `Failure::retry_on_fresh` decides, and
        // `Body::take_for_attempt` keeps an in-memory body for the retry.
        let mut fresh = false;
        loop {
            // A body that cannot be sent again needs a connection known to
            // be open; an in-memory body is simply retried if it is not. The
            // retry connects: another thread may have put a connection back
            // meanwhile, and a retry must not land on a kept one again.
            let (mut conn, reused) = if fresh {
                (self.connect(&timer)?, false)
            } else {
                self.checkout(&timer, !replayable)?
            };
            let request_id = conn.begin_exchange();
            conn.out.clear();
            conn.out.extend_from_slice(preamble);
            set_request_id(&mut conn.out, request_id);
            let to_write = bodies.as_mut().map(|(body, data, role)| {
                (body.take_for_attempt(), data.take_for_attempt(), *role)
            });
            let outcome = ResponseStream::open(self.clone(), timer, conn, request_id, to_write);
            match outcome {
                Ok(stream) => return Ok(stream),
                Err(failure) => {
                    if failure.retry_on_fresh(reused, replayable) && !fresh {
                        // A kept connection the server had closed: one more
                        // try on a fresh one; the other idle ones are likely
                        // as stale.
                        self.discard_idle();
                        fresh = true;
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
        // The question and the reading of the answer are `ValuesAnswer`'s,
        // as in the async `Upstream::get_values`; this loop only moves bytes.
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
            progress: Arc::new(Activity::default()),
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

    pub(super) fn checkin(&self, conn: Box<Conn>) {
        let mut idle = self.lock_idle();
        if idle.len() < self.inner.config.max_idle_connections {
            idle.push(conn);
        }
    }

    pub(super) fn io_error(&self, source: io::Error, timer: &Timer, received: u64) -> Error {
        let address = &self.inner.address_text;
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                timer.expired(address, TimeoutPhase::Idle)
            }
            _ => connection_error(address.clone(), received, source),
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
        self.progress.reset();
        self.machine.restart(id);
        id
    }

    /// Reads into the buffer within the time limits; 0 means end of stream.
    pub(super) fn read(&mut self, timer: &Timer, address: &str) -> Result<usize, Error> {
        loop {
            // One clock reading for both limits; bytes moved since the last
            // wait count as moved now.
            let elapsed = timer.started().elapsed();
            if std::mem::take(&mut self.progressed) {
                self.progress.record(elapsed);
            }
            let wait = timer
                .wait_after(elapsed, self.progress.last())
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
