//! [`Settings`]: what the builder makes of its options, shared by every
//! upstream's pools: the [`Config`] both clients use and the async
//! client's own (pool sizes and waits, multiplexing, buffers, resolving).

use std::time::Duration;

use super::inbox::BufferLimits;
use super::resolve::Resolver;
use super::{
    Multiplexing, DEFAULT_ABORT_TIMEOUT, DEFAULT_DISCOVERY_TIMEOUT, DEFAULT_MARK_DOWN_AFTER,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_REQUESTS_PER_CONNECTION, DEFAULT_MAX_RESPONSE_TEMP_FILE,
    DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_POOL_WAIT_TIMEOUT, DEFAULT_PROBE_INTERVAL,
    DEFAULT_RESOLVE_INTERVAL, DEFAULT_RESPONSE_BUFFER_MEMORY,
};
use crate::config::Config;

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
