//! `fcgi serve`: an HTTP/1.1 server (hyper) for a PHP application, like
//! nginx with `fastcgi_pass`. Static files are served from `--root`
//! ([`static_files`]); scripts go through `fcgi::gateway` and the async
//! client's pool to the upstreams, with the front controller fallback of
//! `try_files $uri $uri/ /index.php?$query_string`. Every client connection
//! has nginx's limits ([`conn`]); one access log line per request on
//! standard error; Ctrl-C or SIGTERM stops accepting, lets in-flight
//! requests finish (up to `--shutdown-timeout`), then exits.

mod access_log;
mod conn;
pub mod static_files;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use fcgi::gateway::{
    check_request_head, ConnectionInfo, Gateway, Route, DEFAULT_BUFFER_MEMORY_BYTES,
    DEFAULT_MAX_BODY_BYTES,
};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::args::parse_secs;
use crate::failure::{self, Failure};
use conn::{Activity, ConnLimits, Finishing, Watched};

/// The body of every response `fcgi serve` sends.
pub type ServeBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Smallest read buffer hyper accepts; the head limit is raised to it.
const HYPER_MIN_BUF: usize = 8192;

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
               a PHP worker; over --max-body-size 413 (at once when declared);
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
               in the listen queue)
  upstream     failures are 502 (504 after --timeout) with the detail in the log

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
    /// Largest request head (request line and headers) in bytes (431 above;
    /// at least 8192).
    #[arg(long, value_name = "BYTES", default_value_t = 32 * 1024)]
    pub max_header_size: usize,
    /// Most header lines in a request head (431 above).
    #[arg(long, value_name = "N", default_value_t = 100)]
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
    /// Runtime threads: 0 is one per core; 1 is a single-threaded event loop.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Log the gateway's decisions (dropped headers, buffered bodies) too.
    #[arg(short, long)]
    pub verbose: bool,
}

/// What every request handler shares.
struct State {
    gateway: Gateway,
    access_log: bool,
    max_uri_size: usize,
    limits: ConnLimits,
    http: http1::Builder,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let mut builder = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| Failure::new(failure::OTHER, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run(args))
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

async fn run(args: &ServeArgs) -> Result<(), Failure> {
    install_logging(args.verbose);
    if args.max_client_connections == 0 {
        return Err(Failure::usage(
            "--max-client-connections must be at least 1",
        ));
    }
    let mut builder = fcgi::AsyncClient::builder()
        .max_connections(args.max_connections)
        .config(fcgi::Config::default().deadline(args.timeout));
    if args.upstreams.is_empty() {
        let target = crate::target::resolve(None)?;
        builder = builder.upstream(target.address);
    }
    for upstream in &args.upstreams {
        builder = builder.upstream(upstream.as_str());
    }
    let client = builder.build().map_err(|e| Failure::from_fcgi(&e))?;
    let upstreams: Vec<String> = client.upstreams().iter().map(|a| a.to_string()).collect();
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
    let gateway = gateway
        .build(client)
        .map_err(|e| Failure::usage(format!("--root: {e}")))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(failure::OTHER, format!("listener: {e}")))?;
    eprintln!(
        "fcgi serve: listening on http://{local} (root {}, upstream {})",
        gateway.document_root().display(),
        upstreams.join(", ")
    );
    let head_limit = args.max_header_size.max(HYPER_MIN_BUF);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        // The watchdog in `conn` times heads and idle connections.
        .header_read_timeout(None)
        .max_header_size(head_limit)
        .max_buf_size(head_limit)
        .max_headers(args.max_headers);
    let state = Arc::new(State {
        gateway,
        access_log: !args.no_access_log,
        max_uri_size: args.max_uri_size,
        limits: ConnLimits {
            header_timeout: args.header_timeout,
            keepalive_timeout: args.keepalive_timeout,
        },
        http,
    });
    let slots = Arc::new(Semaphore::new(args.max_client_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut warned_full = false;
    loop {
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !warned_full {
                    warned_full = true;
                    tracing::warn!(target: "fcgi_cli", max = args.max_client_connections, "--max-client-connections reached: new connections wait in the listen queue");
                }
                tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    signal = &mut shutdown => {
                        eprintln!("fcgi serve: {signal}: no new connections; waiting for in-flight requests");
                        break;
                    }
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(target: "fcgi_cli", %error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            signal = &mut shutdown => {
                eprintln!("fcgi serve: {signal}: no new connections; waiting for in-flight requests");
                break;
            }
        };
        let state = Arc::clone(&state);
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection(&state, tcp, peer, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(args.max_client_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => eprintln!("fcgi serve: all requests finished; bye"),
        _ = tokio::time::sleep(args.shutdown_timeout) => {
            eprintln!("fcgi serve: requests still running after {:?}; exiting", args.shutdown_timeout)
        }
    }
    Ok(())
}

/// Serves one client connection until it ends, a limit of [`ConnLimits`]
/// passes, or the server stops (then the request in progress finishes and
/// the connection closes).
async fn connection(
    state: &Arc<State>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let info = ConnectionInfo {
        peer: Some(peer),
        local: tcp.local_addr().ok(),
        secure: false,
    };
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        io: tcp,
        activity: Arc::clone(&activity),
    });
    let service = {
        let state = Arc::clone(state);
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request| {
            let state = Arc::clone(&state);
            let activity = Arc::clone(&activity);
            activity.request_started();
            async move {
                let response = handle(&state, info, request).await;
                Ok::<_, Infallible>(response.map(|body| Finishing::wrap(body, activity)))
            }
        })
    };
    let conn = state.http.serve_connection(io, service);
    tokio::pin!(conn);
    let alarm = tokio::time::sleep(
        state
            .limits
            .keepalive_timeout
            .min(state.limits.header_timeout),
    );
    tokio::pin!(alarm);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(target: "fcgi_cli", %peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = &mut alarm => match activity.check(&state.limits, tokio::time::Instant::now()) {
                Ok(next) => alarm.as_mut().reset(next),
                Err(expired) => {
                    tracing::debug!(target: "fcgi_cli", %peer, ?expired, "closing the connection");
                    return;
                }
            },
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM; says which.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = ctrl_c => "interrupted",
            _ = term.recv() => "terminated",
        },
        Err(_) => {
            let _ = ctrl_c.await;
            "interrupted"
        }
    }
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

async fn handle(
    state: &State,
    info: ConnectionInfo,
    mut request: Request<Incoming>,
) -> Response<ServeBody> {
    let started = Instant::now();
    let line = state
        .access_log
        .then(|| access_log::Entry::new(&request, info.peer));
    request.extensions_mut().insert(info);
    let response = route(state, request).await;
    match line {
        Some(line) => line.attach(response, started),
        None => response,
    }
}

/// The length of the request target as it came (path and query, or the
/// whole absolute URI).
fn target_len(uri: &http::Uri) -> usize {
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    scheme + authority + uri.path_and_query().map_or(0, |pq| pq.as_str().len())
}

async fn route(state: &State, request: Request<Incoming>) -> Response<ServeBody> {
    if target_len(request.uri()) > state.max_uri_size {
        tracing::info!(target: fcgi::gateway::LOG_TARGET, max = state.max_uri_size, "request target too long");
        return plain(StatusCode::URI_TOO_LONG);
    }
    let (parts, body) = request.into_parts();
    if let Err(error) = check_request_head(&parts) {
        tracing::info!(target: fcgi::gateway::LOG_TARGET, uri = %parts.uri, %error, "bad request head");
        let mut response = plain(error.status());
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return response;
    }
    let request = Request::from_parts(parts, body);
    let gateway = &state.gateway;
    match gateway.resolve(request.uri().path()) {
        Ok(Route::Script(script)) => gateway.run(request, &script).await.map(boxed),
        Ok(Route::Static(path)) => {
            static_files::serve(request.method(), request.headers(), &path).await
        }
        // 400, 301 and 404 as the gateway words them.
        _ => gateway.handle(request).await.map(boxed),
    }
}
