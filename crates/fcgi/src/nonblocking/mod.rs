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
//! - `mod.rs`: this table of contents and the re-exports.
//! - `builder.rs`: [`Builder`].
//! - `client.rs`: [`Client`]: upstream and path choice, stale-connection
//!   retry, fail-over, prepared requests, GET_VALUES.
//! - `settings.rs`: the public defaults and what the builder makes of its
//!   options (`Settings`).
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
//! The protocol work (encoding, the response machine, limits, timers, the
//! activity counter, the retry rule, what is left after a partial write)
//! is the sans-IO `crate::exchange`, the same as the blocking client's;
//! the head accessors of [`ResponseStream`] come from `crate::response`
//! and the mapping of I/O failures to [`Error`]s from `crate::error`, for
//! both clients.

mod alarm;
mod body;
mod builder;
mod client;
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

pub use crate::blocking::Trailer;
pub use crate::request::PreparedRequest;
pub use builder::Builder;
pub use client::Client;
pub use response::{Chunk, ResponseStream};
pub use settings::{
    Multiplexing, DEFAULT_ABORT_TIMEOUT, DEFAULT_DISCOVERY_TIMEOUT, DEFAULT_MARK_DOWN_AFTER,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_REQUESTS_PER_CONNECTION, DEFAULT_MAX_RESPONSE_TEMP_FILE,
    DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_POOL_WAIT_TIMEOUT, DEFAULT_PROBE_INTERVAL,
    DEFAULT_RESOLVE_INTERVAL, DEFAULT_RESPONSE_BUFFER_MEMORY,
};

pub(crate) use crate::exchange::Timer;

// Names the module docs link to.
#[cfg(doc)]
use crate::{Config, Error, Request, Response, TimeoutPhase};
