//! `fcgi serve`: an HTTP/1.1 server (hyper) for a PHP application, like
//! nginx with `fastcgi_pass`. Static files are served from `--root`
//! ([`static_files`]); scripts go through `fcgi::gateway` and the async
//! client's pool to the upstreams, with the front controller fallback of
//! `try_files $uri $uri/ /index.php?$query_string`. One access log line per
//! request on standard error; Ctrl-C or SIGTERM stops accepting, lets
//! in-flight requests finish (up to `--shutdown-timeout`), then exits.

mod access_log;
pub mod static_files;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use fcgi::gateway::{ConnectionInfo, Gateway, Route, DEFAULT_MAX_BODY_BYTES};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::args::parse_secs;
use crate::failure::{self, Failure};

/// The body of every response `fcgi serve` sends.
pub type ServeBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Longest wait for a client's request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

const SERVE_HELP: &str = "\
Serves DIR over HTTP/1.1: files from DIR as they are (content types, ranges,
ETag/Last-Modified and 304), files ending in --ext (.php) through FastCGI to the
upstreams (a pool of --max-connections kept connections per upstream; keep it
at or below php-fpm's pm.max_children). A path naming nothing goes to /--index
(nginx: try_files $uri $uri/ /index.php?$query_string); a missing *.php is 404.

Safe by default: no HTTP_PROXY (httpoxy), headers with underscores dropped,
no path outside DIR (.., %2e%2e, NUL, backslash: 400), no PATH_INFO trick
(/uploads/a.jpg/x.php is 404, never runs a.jpg), hidden files (.git, .env) 404,
upstream failures 502/504 with the detail in the log, bodies over
--max-body-size 413 (a chunked body is spooled, as php-fpm needs a length).

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
    /// Log the gateway's decisions (dropped headers, spooled bodies) too.
    #[arg(short, long)]
    pub verbose: bool,
}

/// What every request handler shares.
struct State {
    gateway: Gateway,
    access_log: bool,
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
    let state = Arc::new(State {
        gateway,
        access_log: !args.no_access_log,
    });
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
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
        let _ = tcp.set_nodelay(true);
        let info = ConnectionInfo {
            peer: Some(peer),
            local: tcp.local_addr().ok(),
            secure: false,
        };
        let state = Arc::clone(&state);
        let service = hyper::service::service_fn(move |request| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(handle(&state, info, request).await) }
        });
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let conn = http.serve_connection(TokioIo::new(tcp), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(target: "fcgi_cli", %peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => eprintln!("fcgi serve: all requests finished; bye"),
        _ = tokio::time::sleep(args.shutdown_timeout) => {
            eprintln!("fcgi serve: requests still running after {:?}; exiting", args.shutdown_timeout)
        }
    }
    Ok(())
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

async fn route(state: &State, request: Request<Incoming>) -> Response<ServeBody> {
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
