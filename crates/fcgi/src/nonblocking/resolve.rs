//! Upstreams given as a host name (`php.default.svc.cluster.local:9000`):
//! the name is resolved to all its addresses, each address is an upstream
//! of its own (its own pool, health and load count, balanced with the
//! others), and the name is resolved again once
//! [`super::Builder::resolve_interval`] has passed, in the background, so
//! that servers that come and go behind the name are followed without a
//! restart. An address that is still there keeps its upstream (and its
//! pooled connections); one that went away leaves the balancing (requests
//! on it finish). A failed re-resolution keeps the addresses known.
//!
//! Upstreams given as an IP address or a Unix socket are not resolved.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::lock::lock;
use super::pool::Upstream;
use super::settings::Settings;
use crate::address::Address;
use crate::error::Error;

type ResolveFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// How host names become addresses: the system's resolver, or a function
/// given to [`super::Builder::resolver`].
#[derive(Clone, Default)]
pub(crate) struct Resolver(Option<Arc<ResolveFn>>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Resolver(custom)"
        } else {
            "Resolver(system)"
        })
    }
}

impl Resolver {
    pub(crate) fn custom<F>(resolve: F) -> Resolver
    where
        F: Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    {
        Resolver(Some(Arc::new(resolve)))
    }

    /// The addresses of `host` (on a blocking thread: resolvers block).
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let custom = self.0.clone();
        let host = host.to_string();
        let lookup = tokio::task::spawn_blocking(move || match custom {
            Some(resolve) => resolve(&host, port),
            None => (host.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.collect()),
        });
        let mut addrs = lookup.await.map_err(io::Error::other)??;
        addrs.sort();
        addrs.dedup();
        Ok(addrs)
    }
}

/// An upstream given as a host name, and the upstreams of its addresses.
#[derive(Debug)]
pub(crate) struct Named {
    pub(crate) address: Address,
    host: String,
    port: u16,
    settings: Arc<Settings>,
    state: Mutex<State>,
    /// Makes concurrent first requests share one resolution.
    first: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    upstreams: Vec<Arc<Upstream>>,
    resolved_at: Option<Instant>,
    refreshing: bool,
}

impl Named {
    /// `None` when `address` needs no resolving (an IP address or a path).
    pub(crate) fn new(address: &Address, settings: &Arc<Settings>) -> Option<Named> {
        let (host, port) = address.host_name()?;
        Some(Named {
            address: address.clone(),
            host: host.to_string(),
            port,
            settings: Arc::clone(settings),
            state: Mutex::new(State::default()),
            first: tokio::sync::Mutex::new(()),
        })
    }

    /// The upstreams of the name's addresses: resolved on first use (the
    /// request waits for that one), then again in the background when the
    /// last resolution is older than the resolve interval.
    pub(crate) async fn upstreams(self: &Arc<Self>) -> Result<Vec<Arc<Upstream>>, Error> {
        if let Some(known) = self.known() {
            return Ok(known);
        }
        let _first = self.first.lock().await;
        if let Some(known) = self.known() {
            return Ok(known);
        }
        self.refresh().await?;
        Ok(lock(&self.state).upstreams.clone())
    }

    /// The upstream of the first address, once resolved.
    pub(crate) fn resolved_first(&self) -> Option<Arc<Upstream>> {
        lock(&self.state).upstreams.first().cloned()
    }

    /// The upstreams known, once resolved; starts a re-resolution when due.
    fn known(self: &Arc<Self>) -> Option<Vec<Arc<Upstream>>> {
        let mut state = lock(&self.state);
        let at = state.resolved_at?;
        if at.elapsed() >= self.settings.resolve_interval && !state.refreshing {
            state.refreshing = true;
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let _ = me.refresh().await;
            });
        }
        Some(state.upstreams.clone())
    }

    /// Resolves the name and updates the upstreams.
    async fn refresh(&self) -> Result<(), Error> {
        let resolved = self.settings.resolver.resolve(&self.host, self.port).await;
        let mut state = lock(&self.state);
        state.refreshing = false;
        let addrs = match resolved {
            Ok(addrs) if !addrs.is_empty() => addrs,
            failed => {
                let source = failed
                    .err()
                    .unwrap_or_else(|| io::Error::other("the name resolved to no address"));
                if state.resolved_at.is_some() {
                    // Keep what is known; try again after the interval.
                    tracing::debug!(upstream = %self.address, error = %source, "resolving again failed; keeping the addresses known");
                    state.resolved_at = Some(Instant::now());
                    return Ok(());
                }
                return Err(Error::Connect {
                    address: self.address.to_string(),
                    source: io::Error::new(
                        source.kind(),
                        format!("cannot resolve {}: {source}", self.host),
                    ),
                });
            }
        };
        let upstreams = addrs
            .iter()
            .map(|&addr| {
                state
                    .upstreams
                    .iter()
                    .find(|u| u.address == Address::from(addr))
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Upstream::with_label(
                            Address::from(addr),
                            format!("{} ({addr})", self.address),
                            Arc::clone(&self.settings),
                        ))
                    })
            })
            .collect::<Vec<_>>();
        if state.resolved_at.is_none() || upstreams.len() != state.upstreams.len() {
            tracing::debug!(upstream = %self.address, addresses = ?addrs, "resolved");
        }
        state.upstreams = upstreams;
        state.resolved_at = Some(Instant::now());
        Ok(())
    }
}
