//! The blocking client's [`Builder`], and adding an upstream to a builder
//! (both clients' builders).

use super::client::Client;
use crate::address::Address;
use crate::config::{Config, Limits, Timeouts};
use crate::error::Error;

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
