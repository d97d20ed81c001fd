//! [`Settings`]: what the builder makes of its options, shared by every
//! upstream's pools: the [`Config`] both clients use and the async
//! client's own (pool sizes and waits, multiplexing, buffers, resolving).

use std::time::Duration;

use super::inbox::BufferLimits;
use super::resolve::Resolver;
use crate::config::Config;

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

/// Settings of an async client: the shared [`Config`] and the pool's own.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) max_connections: usize,
    pub(crate) pool_wait_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) multiplexing: Multiplexing,
    pub(crate) max_requests_per_connection: usize,
    pub(crate) mark_down_after: u32,
    pub(crate) probe_interval: Duration,
    pub(crate) abort_timeout: Duration,
    pub(crate) buffer: BufferLimits,
    pub(crate) resolve_interval: Duration,
    pub(crate) discovery_timeout: Duration,
    pub(crate) resolver: Resolver,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            // Keep-alive on: the pool bounds the kept connections.
            config: Config::default().keep_alive(true),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            pool_wait_timeout: DEFAULT_POOL_WAIT_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            multiplexing: Multiplexing::Auto,
            max_requests_per_connection: DEFAULT_MAX_REQUESTS_PER_CONNECTION,
            mark_down_after: DEFAULT_MARK_DOWN_AFTER,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            abort_timeout: DEFAULT_ABORT_TIMEOUT,
            buffer: BufferLimits {
                memory: DEFAULT_RESPONSE_BUFFER_MEMORY,
                file: DEFAULT_MAX_RESPONSE_TEMP_FILE,
                dir: None,
            },
            resolve_interval: DEFAULT_RESOLVE_INTERVAL,
            discovery_timeout: DEFAULT_DISCOVERY_TIMEOUT,
            resolver: Resolver::default(),
        }
    }
}
