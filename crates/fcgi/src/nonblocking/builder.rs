//! [`Builder`]: upstreams, the shared [`Config`] and the pool settings of an
//! async [`Client`].

use std::time::Duration;

use super::resolve::Resolver;
use super::settings::Settings;
use super::{Client, Multiplexing};
use crate::address::Address;
use crate::config::{Config, Limits, Timeouts};
use crate::error::Error;

// Names the docs link to.
#[cfg(doc)]
use super::settings::*;
#[cfg(doc)]
use crate::error::TimeoutPhase;

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
        Ok(Client::from_parts(self.addresses, self.settings))
    }
}
