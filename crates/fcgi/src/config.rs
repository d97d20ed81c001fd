//! Client settings: time limits, size limits and connection behaviour. Every
//! limit has a finite, documented default.

use std::time::Duration;

/// Default connect timeout: 5 seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default idle timeout (no byte moved in either direction): 30 seconds.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default overall deadline of one request: 120 seconds.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// Default limit on the response head: 64 KiB.
pub const DEFAULT_MAX_HEAD_BYTES: usize = fcgi_proto::head::DEFAULT_MAX_HEAD_LEN;
/// Default limit on a response body collected in memory: 512 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 512 * 1024 * 1024;
/// Default amount of STDERR kept per response: 1 MiB (the rest is counted
/// and dropped, and the response says so).
pub const DEFAULT_MAX_STDERR_BYTES: usize = 1024 * 1024;
/// Default limit on name-value pairs in one request: 10,000.
pub const DEFAULT_MAX_PARAMS: usize = 10_000;
/// Default number of idle kept connections a blocking client holds: 8.
pub const DEFAULT_MAX_IDLE_CONNECTIONS: usize = 8;

/// Time limits of a request: part of [`Config`], and the per-request
/// argument of `execute_with` and `stream_with` on both clients. Built from
/// [`Timeouts::default`] (or [`Timeouts::new`]) and its setters, since it
/// may grow:
///
/// ```
/// use std::time::Duration;
/// use fcgi::Timeouts;
/// let quick = Timeouts::default().deadline(Duration::from_secs(2));
/// assert_eq!(quick.deadline, Duration::from_secs(2));
/// assert_eq!(quick.idle, fcgi::DEFAULT_IDLE_TIMEOUT);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// Longest time without any byte sent or received.
    pub idle: Duration,
    /// The whole request, from connecting to END_REQUEST.
    pub deadline: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            idle: DEFAULT_IDLE_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
        }
    }
}

/// Size limits that keep memory bounded whatever the server sends. Built
/// from [`Limits::default`] and its setters (or through [`Config`]'s),
/// since it may grow:
///
/// ```
/// use fcgi::Limits;
/// let limits = Limits::default().max_body_bytes(1 << 20);
/// assert_eq!(limits.max_body_bytes, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest CGI response head (status line and headers).
    pub max_head_bytes: usize,
    /// Largest response body collected in memory by the non-streaming API.
    pub max_body_bytes: usize,
    /// STDERR bytes kept per response; more is dropped and flagged.
    pub max_stderr_bytes: usize,
    /// Largest number of parameters in one request.
    pub max_params: usize,
}

impl Timeouts {
    /// Time limits for connecting, for silence (no byte in either
    /// direction) and for the whole request.
    pub fn new(connect: Duration, idle: Duration, deadline: Duration) -> Timeouts {
        Timeouts {
            connect,
            idle,
            deadline,
        }
    }

    /// Sets the connect timeout.
    pub fn connect(mut self, timeout: Duration) -> Timeouts {
        self.connect = timeout;
        self
    }

    /// Sets the idle timeout.
    pub fn idle(mut self, timeout: Duration) -> Timeouts {
        self.idle = timeout;
        self
    }

    /// Sets the overall deadline.
    pub fn deadline(mut self, timeout: Duration) -> Timeouts {
        self.deadline = timeout;
        self
    }
}

impl Limits {
    /// Sets the response head limit.
    pub fn max_head_bytes(mut self, max: usize) -> Limits {
        self.max_head_bytes = max;
        self
    }

    /// Sets the in-memory response body limit.
    pub fn max_body_bytes(mut self, max: usize) -> Limits {
        self.max_body_bytes = max;
        self
    }

    /// Sets how much STDERR is kept.
    pub fn max_stderr_bytes(mut self, max: usize) -> Limits {
        self.max_stderr_bytes = max;
        self
    }

    /// Sets the parameter count limit.
    pub fn max_params(mut self, max: usize) -> Limits {
        self.max_params = max;
        self
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_stderr_bytes: DEFAULT_MAX_STDERR_BYTES,
            max_params: DEFAULT_MAX_PARAMS,
        }
    }
}

/// All client settings.
///
/// ```
/// use std::time::Duration;
/// use fcgi::Config;
/// let config = Config::default()
///     .keep_alive(true)
///     .idle_timeout(Duration::from_secs(5))
///     .max_head_bytes(16 * 1024);
/// assert!(config.keep_alive);
/// assert_eq!(config.limits.max_head_bytes, 16 * 1024);
/// ```
///
/// It may grow: build it from [`Config::default`] and its setters.
#[doc = include_str!("../doc/config.md")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Time limits.
    pub timeouts: Timeouts,
    /// Size limits.
    pub limits: Limits,
    /// Ask the server to keep the connection open (FCGI_KEEP_CONN) and reuse
    /// it for later requests; both clients go by it. Off in
    /// `Config::default()`: with php-fpm an idle kept connection pins a
    /// worker, and a blocking client may hold
    /// [`Config::max_idle_connections`] of them. The async client's builder
    /// starts with it on (its pool holds at most `max_connections` per
    /// upstream); `Builder::config` takes it from the `Config` given.
    pub keep_alive: bool,
    /// Idle kept connections a client holds at most.
    pub max_idle_connections: usize,
    /// Split a single parameter larger than one record across records, as the
    /// specification allows. php-fpm rejects such requests, so this is off
    /// and such a parameter is refused before anything is sent.
    pub split_oversized_params: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            keep_alive: false,
            max_idle_connections: DEFAULT_MAX_IDLE_CONNECTIONS,
            split_oversized_params: false,
        }
    }
}

impl Config {
    /// Sets all time limits at once.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Config {
        self.timeouts = timeouts;
        self
    }

    /// Sets all size limits at once.
    pub fn limits(mut self, limits: Limits) -> Config {
        self.limits = limits;
        self
    }

    /// Sets keep-alive.
    pub fn keep_alive(mut self, on: bool) -> Config {
        self.keep_alive = on;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Config {
        self.timeouts.connect = timeout;
        self
    }

    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> Config {
        self.timeouts.idle = timeout;
        self
    }

    /// Sets the overall deadline of a request.
    pub fn deadline(mut self, timeout: Duration) -> Config {
        self.timeouts.deadline = timeout;
        self
    }

    /// Sets the response head limit.
    pub fn max_head_bytes(mut self, max: usize) -> Config {
        self.limits.max_head_bytes = max;
        self
    }

    /// Sets the in-memory response body limit.
    pub fn max_body_bytes(mut self, max: usize) -> Config {
        self.limits.max_body_bytes = max;
        self
    }

    /// Sets how much STDERR is kept.
    pub fn max_stderr_bytes(mut self, max: usize) -> Config {
        self.limits.max_stderr_bytes = max;
        self
    }

    /// Sets the parameter count limit.
    pub fn max_params(mut self, max: usize) -> Config {
        self.limits.max_params = max;
        self
    }

    /// Sets how many idle kept connections are held.
    pub fn max_idle_connections(mut self, max: usize) -> Config {
        self.max_idle_connections = max;
        self
    }

    /// Allows splitting oversized parameters across records.
    pub fn split_oversized_params(mut self, on: bool) -> Config {
        self.split_oversized_params = on;
        self
    }
}
