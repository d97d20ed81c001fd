//! [`Client`]: choosing an upstream and a path (mux or single) for each
//! request, stale-connection retry, fail-over, prepared requests and
//! GET_VALUES.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::body::{self, Sink};
use super::inbox::Inbox;
use super::mux::MuxStart;
use super::pool::{Availability, Lease, MuxLease, Upstream};
use super::resolve::Named;
use super::response::{Link, MuxLink, Outstanding, Parts};
use super::settings::Settings;
use super::shared::RequestShared;
use super::single::{SingleExchange, SingleLease, SingleStart};
use super::slot::Slot;
use super::{Builder, PreparedRequest, ResponseStream};

// Names the docs link to.
#[cfg(doc)]
use super::Multiplexing;
use crate::address::Address;
use crate::config::{Config, Timeouts};
use crate::error::{Error, TimeoutPhase};
use crate::exchange::Timer;
use crate::exchange::{
    encode_request_start, keep_conn_flag, readdress, Failure, ResponseMachine, SINGLE_REQUEST_ID,
};
use crate::request::{Body, Request, Role, PREAMBLE_CAPACITY};
use crate::response::Response;

/// An async FastCGI client for one or more upstream servers, with a
/// connection pool per upstream (see the [module docs](crate::nonblocking)). Cheap to
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
    /// A client for `addresses` (at least one, all valid) with `settings`:
    /// what [`Builder::build`] makes once it has checked its options.
    pub(super) fn from_parts(addresses: Vec<Address>, settings: Settings) -> Client {
        let settings = Arc::new(settings);
        let slots: Vec<Slot> = addresses
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
        Client {
            inner: Arc::new(Inner {
                slots,
                fixed,
                named,
                settings,
                rotation: AtomicUsize::new(0),
            }),
        }
    }

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
    /// (The blocking client's `send` loop runs the same rule where this one
    /// awaits: `Failure::retry_on_fresh`, `Body::take_for_attempt`.)
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
        let data = (self.role == Role::Filter).then(|| self.data.take_for_attempt());
        (self.body.take_for_attempt(), data)
    }
}

#[cfg(test)]
mod tests {
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
