//! `fcgi serve`: an HTTP/1.1 server (hyper) for a PHP application, like
//! nginx with `fastcgi_pass`. Static files are served from `--root`
//! ([`static_files`]); scripts go through `fcgi::gateway` and the async
//! client's pool to the upstreams, with the front controller fallback of
//! `try_files $uri $uri/ /index.php?$query_string`. Every client connection
//! has nginx's limits ([`conn`]); one access log line per request on
//! standard error; Ctrl-C or SIGTERM stops accepting, lets in-flight
//! requests finish (up to `--shutdown-timeout`), then exits.

mod access_log;
mod chunk_sizes;
mod conn;
mod loops;
pub mod static_files;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use fcgi::gateway::{
    ConnectionInfo, Gateway, Route, DEFAULT_BUFFER_MEMORY_BYTES, DEFAULT_MAX_BODY_BYTES,
};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// A request as `fcgi serve` hands it on: its body ends at once when a
/// chunk size declares too much ([`chunk_sizes`]).
pub type ServeRequest = Request<chunk_sizes::Guarded<Incoming>>;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;

use crate::shared::failure::{self, Failure};
use crate::shared::options::parse_secs;
use conn::ConnLimits;
use fcgi::nonblocking::Multiplexing;

/// The body of every response `fcgi serve` sends.
pub type ServeBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Smallest read buffer hyper accepts; the head limit is raised to it.
const HYPER_MIN_BUF: usize = 8192;
/// hyper's own limit on header lines, the default of `--max-headers`.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

const SERVE_HELP: &str = "\
Serves DIR over HTTP/1.1: files from DIR as they are (content types, ranges,
ETag/Last-Modified and 304), files ending in --ext (.php) through FastCGI to the
upstreams (a pool of --max-connections kept connections per upstream; keep it
at or below php-fpm's pm.max_children). A path naming nothing goes to /--index
(nginx: try_files $uri $uri/ /index.php?$query_string); a missing *.php is 404.

Safe by default:
  paths        no path outside DIR (.., %2e%2e, NUL, backslash: 400), no
               PATH_INFO trick (/uploads/a.jpg/x.php is 404, never runs a.jpg),
               hidden files (.git, .env) 404
  headers      no HTTP_PROXY (httpoxy); names with underscores dropped
  Host         HTTP/1.1 needs exactly one valid Host (host[:port]): else 400
  bodies       read whole before PHP sees the request (--body-buffer-size in
               memory, the rest in a temporary file), so slow clients never hold
               a PHP worker; over --max-body-size 413 (at once when declared
               by Content-Length or by the chunk sizes so far);
               no bytes for --body-timeout: 408 and close; Transfer-Encoding
               other than chunked: 501
  responses    the script never frames HTTP: its Content-Length is enforced
               (extra bytes dropped, a short body closes the connection), its
               Transfer-Encoding, Connection, Keep-Alive, Upgrade, Trailer and
               X-Accel-* headers are dropped, a 1xx status is 502
  connections  head over --max-header-size or --max-headers lines: 431; target
               over --max-uri-size: 414; --header-timeout from the first byte
               of a head, --keepalive-timeout between requests (then closed
               silently); at most --max-client-connections at once (more wait
               in the listen queue); a connection closed while the client may
               still send is closed lingering (--lingering-time), so the client
               reads the answer instead of a reset
  upstream     failures are 502 (504 after --timeout) with the detail in the log
               --multiplexing auto asks each upstream in the background and
               shares connections only once it says yes; on a shared
               connection a slow client's unread response is buffered
               (--response-buffer-size, then a temporary file up to
               --max-response-temp-file) so the others keep flowing, and a
               request the client gave up on is waited for --abort-timeout

One access log line per request on standard error. Ctrl-C or SIGTERM: stop
accepting, let in-flight requests finish, exit 0.

Example:
  fcgi serve --root /usr/share/dokuwiki --upstream unix:/run/php/php8.2-fpm.sock";

/// `fcgi serve` options.
#[derive(Debug, Args, Clone)]
#[command(after_help = SERVE_HELP)]
pub struct ServeArgs {
    /// The document root.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is logged).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A FastCGI upstream (repeat for several); default: discovered like
    /// `fcgi request` does.
    #[arg(long = "upstream", value_name = "ADDR")]
    pub upstreams: Vec<String>,
    /// Directory index and front controller.
    #[arg(long, value_name = "FILE", default_value = fcgi::gateway::DEFAULT_INDEX)]
    pub index: String,
    /// No front controller: a path naming nothing is 404.
    #[arg(long)]
    pub no_front_controller: bool,
    /// Extension of files run through FastCGI (repeat for several).
    #[arg(long = "ext", value_name = ".EXT", default_value = fcgi::gateway::DEFAULT_EXTENSION)]
    pub extensions: Vec<String>,
    /// Kept connections per upstream.
    #[arg(long, value_name = "N", default_value_t = fcgi::nonblocking::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Several requests on one upstream connection: auto asks each upstream
    /// (FCGI_GET_VALUES, in the background; one request per connection
    /// until it says yes); on and off decide without asking. php-fpm never
    /// multiplexes; Go's net/http/fcgi and flup do.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_multiplexing)]
    pub multiplexing: Multiplexing,
    /// On a multiplexed connection: longest wait for the end of a request
    /// the client gave up on, in seconds; past it the connection is retired
    /// and replaced.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub abort_timeout: Duration,
    /// On a multiplexed connection: response bytes a slow client has not
    /// read yet, kept in memory per request (then a temporary file), so the
    /// other requests on the connection keep flowing.
    #[arg(long, value_name = "BYTES", default_value_t = fcgi::nonblocking::DEFAULT_RESPONSE_BUFFER_MEMORY)]
    pub response_buffer_size: usize,
    /// On a multiplexed connection: largest temporary file of unread
    /// response per request (0: none); past it that request fails.
    #[arg(long, value_name = "BYTES", default_value_t = fcgi::nonblocking::DEFAULT_MAX_RESPONSE_TEMP_FILE)]
    pub max_response_temp_file: u64,
    /// Largest request body in bytes (413 above).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_size: u64,
    /// Part of a request body kept in memory while it is read; the rest
    /// goes to a temporary file.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_BUFFER_MEMORY_BYTES)]
    pub body_buffer_size: usize,
    /// Send request bodies with a Content-Length to PHP as they arrive
    /// instead of reading them first. Risk: a slow client then holds a PHP
    /// worker for as long as it takes to send; a few can occupy the pool.
    #[arg(long)]
    pub stream_request_bodies: bool,
    /// Longest wait for the next bytes of a request body, in seconds (408
    /// and close after it).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub body_timeout: Duration,
    /// Longest time from the first byte of a request head to its end, in
    /// seconds (the connection is closed after it).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub header_timeout: Duration,
    /// Longest idle time of a client connection between requests, in
    /// seconds.
    #[arg(long, value_name = "SECS", default_value = "75", value_parser = parse_secs)]
    pub keepalive_timeout: Duration,
    /// When the server closes a connection the client may still be
    /// sending on (413, 408, 431), the longest time it reads and drops what
    /// comes before closing, in seconds (nginx's lingering_time).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub lingering_time: Duration,
    /// The longest wait for more bytes while lingering, in seconds (nginx's
    /// lingering_timeout).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub lingering_timeout: Duration,
    /// Largest request head (request line and headers) in bytes (431 above;
    /// at least 8192).
    #[arg(long, value_name = "BYTES", default_value_t = 32 * 1024)]
    pub max_header_size: usize,
    /// Most header lines in a request head (431 above).
    #[arg(long, value_name = "N", default_value_t = HYPER_DEFAULT_MAX_HEADERS)]
    pub max_headers: usize,
    /// Longest request target (path and query) in bytes (414 above).
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024)]
    pub max_uri_size: usize,
    /// Most client connections open at once; more wait in the listen queue.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_client_connections: usize,
    /// Pass request headers whose names contain underscores.
    #[arg(long)]
    pub allow_underscore_headers: bool,
    /// Time limit of one upstream request, in seconds (504 after it).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub timeout: Duration,
    /// How long in-flight requests may take to finish after Ctrl-C/SIGTERM.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub shutdown_timeout: Duration,
    /// No access log.
    #[arg(long)]
    pub no_access_log: bool,
    /// Event loops (threads): 0 is one per two cores (the PHP workers need
    /// the others), at most --max-connections (each loop keeps its share of
    /// the upstream pool).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Log the gateway's decisions (dropped headers, buffered bodies) too.
    #[arg(short, long)]
    pub verbose: bool,
}

/// What every connection and request handler of every event loop shares.
pub(crate) struct Common {
    access_log: bool,
    max_uri_size: usize,
    /// `--max-body-size`, for the chunk sizes read off the socket.
    max_body_size: u64,
    /// The longest request head hyper reads.
    head_limit: usize,
    limits: ConnLimits,
    http: http1::Builder,
}

/// What one event loop's requests share.
pub(crate) struct State {
    gateway: Gateway,
    common: Arc<Common>,
}

/// Runs the server until Ctrl-C or SIGTERM: the listener, one event loop
/// per `--threads` (see [`loops`]), each with its own gateway and share of
/// the upstream pool.
pub fn run(args: &ServeArgs) -> Result<(), Failure> {
    install_logging(args.verbose);
    if args.max_client_connections == 0 {
        return Err(Failure::usage(
            "--max-client-connections must be at least 1",
        ));
    }
    if args.max_connections == 0 {
        return Err(Failure::usage("--max-connections must be at least 1"));
    }
    let upstreams: Vec<String> = if args.upstreams.is_empty() {
        vec![crate::shared::target::resolve(None)?.address.to_string()]
    } else {
        args.upstreams.clone()
    };
    let loops = loops::count(args.threads, args.max_connections);
    let gateways = (0..loops)
        .map(|i| {
            gateway(
                args,
                &upstreams,
                loops::share(args.max_connections, loops, i),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let listener = std::net::TcpListener::bind(args.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Failure::usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(failure::OTHER, format!("listener: {e}")))?;
    eprintln!(
        "fcgi serve: listening on http://{local} (root {}, upstream {}, {loops} event loop{})",
        gateways[0].document_root().display(),
        upstreams.join(", "),
        if loops == 1 { "" } else { "s" },
    );
    let head_limit = args.max_header_size.max(HYPER_MIN_BUF);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        // The watchdog in `conn` times heads and idle connections.
        .header_read_timeout(None)
        .max_header_size(head_limit)
        .max_buf_size(head_limit);
    if args.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        // Set only when it differs: with it set, hyper sizes its header
        // array for every request instead of using its inline default.
        http.max_headers(args.max_headers);
    }
    let shared = loops::Shared::new(
        Common {
            access_log: !args.no_access_log,
            max_uri_size: args.max_uri_size,
            max_body_size: args.max_body_size,
            head_limit,
            limits: ConnLimits {
                header_timeout: args.header_timeout,
                keepalive_timeout: args.keepalive_timeout,
                lingering_time: args.lingering_time,
                lingering_timeout: args.lingering_timeout,
            },
            http,
        },
        args.max_client_connections,
        loops,
    );
    loops::run(listener, gateways, shared, args.shutdown_timeout)
}

/// `--multiplexing auto|on|off`.
fn parse_multiplexing(text: &str) -> Result<Multiplexing, String> {
    match text {
        "auto" => Ok(Multiplexing::Auto),
        "on" => Ok(Multiplexing::Enabled),
        "off" => Ok(Multiplexing::Disabled),
        other => Err(format!("{other:?}: expected auto, on or off")),
    }
}

/// One event loop's gateway, over its own client with `pool` of the
/// `--max-connections` upstream connections.
fn gateway(args: &ServeArgs, upstreams: &[String], pool: usize) -> Result<Gateway, Failure> {
    let mut client = fcgi::AsyncClient::builder()
        .max_connections(pool)
        .multiplexing(args.multiplexing)
        .abort_timeout(args.abort_timeout)
        .response_buffer_memory(args.response_buffer_size)
        .max_response_temp_file(args.max_response_temp_file)
        .timeouts(fcgi::Timeouts::default().deadline(args.timeout));
    for upstream in upstreams {
        client = client.upstream(upstream.as_str());
    }
    let client = client.build().map_err(|e| Failure::from_fcgi(&e))?;
    let mut gateway = Gateway::builder(&args.root)
        .index(args.index.as_str())
        .front_controller(!args.no_front_controller)
        .extensions(args.extensions.iter().cloned())
        .max_body_bytes(args.max_body_size)
        .buffer_memory_bytes(args.body_buffer_size)
        .stream_request_bodies(args.stream_request_bodies)
        .body_read_timeout(args.body_timeout)
        .allow_underscore_headers(args.allow_underscore_headers);
    if args.index.is_empty() {
        gateway = gateway.no_index();
    }
    gateway
        .build(client)
        .map_err(|e| Failure::usage(format!("--root: {e}")))
}

fn install_logging(verbose: bool) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let gateway_level = if verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    let filter = Targets::new()
        .with_target(fcgi::gateway::LOG_TARGET, gateway_level)
        .with_target("fcgi", tracing::Level::WARN)
        .with_target("fcgi_cli", tracing::Level::INFO);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(filter);
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

/// Boxes a body for [`ServeBody`].
pub fn boxed<B>(body: B) -> ServeBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A short text response of the server's own.
pub fn plain(status: StatusCode) -> Response<ServeBody> {
    fcgi::gateway::plain(status).map(boxed)
}

/// The response to `request`, and its access log line (written when the
/// body is done) unless the log is off.
async fn handle(
    state: &State,
    info: ConnectionInfo,
    mut request: ServeRequest,
) -> (Response<ServeBody>, Option<access_log::Pending>) {
    let started = Instant::now();
    let line = state
        .common
        .access_log
        .then(|| access_log::Entry::new(&request, info.peer));
    request.extensions_mut().insert(info);
    let response = route(state, request).await;
    let pending = line.map(|line| line.pending(&response, started));
    (response, pending)
}

/// The length of the request target as it came (path and query, or the
/// whole absolute URI).
fn target_len(uri: &http::Uri) -> usize {
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    scheme + authority + uri.path_and_query().map_or(0, |pq| pq.as_str().len())
}

async fn route(state: &State, request: ServeRequest) -> Response<ServeBody> {
    let max_uri_size = state.common.max_uri_size;
    if target_len(request.uri()) > max_uri_size {
        tracing::info!(target: fcgi::gateway::LOG_TARGET, max = max_uri_size, "request target too long");
        return plain(StatusCode::URI_TOO_LONG);
    }
    let gateway = &state.gateway;
    match gateway.resolve(request.uri().path()) {
        // The gateway checks the head (Host, transfer coding) itself.
        Ok(Route::Script(script)) => gateway.run(request, &script).await.map(boxed),
        Ok(Route::Static(path)) => match fcgi::gateway::refuse_bad_head(&request) {
            Some(refused) => refused.map(boxed),
            None => static_files::serve(request.method(), request.headers(), &path).await,
        },
        // 400, 301 and 404 as the gateway words them (after its checks).
        _ => gateway.handle(request).await.map(boxed),
    }
}
