//! `fcgi exporter`: a Prometheus exporter for php-fpm pools. An HTTP
//! endpoint (`/metrics`, hyper) that reads every pool's status page when it
//! is scraped and answers in the text format of [`crate::shared::prometheus`].
//!
//! Each scrape reads all pools at once (one task each, a fresh connection
//! each, never kept: an idle kept connection would pin a worker), each
//! bounded by `--scrape-timeout`; a pool that fails or is too slow is
//! `phpfpm_up 0` and one log line on standard error says why. Scrapes
//! share nothing but the last pool name seen per address, so a slow scrape
//! never holds up the next; at most `--max-scrapes` run at once (more are
//! answered 503). Sockets named by `--discover` are looked up again at
//! every scrape, so pools that come and go are followed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use fcgi::nonblocking::Multiplexing;
use fcgi::{Address, AsyncClient, Config};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::shared::failure::{self, Failure};
use crate::shared::fpm_status::{self, DEFAULT_STATUS_PATH};
use crate::shared::options::parse_duration;
use crate::shared::prometheus::{self, PoolScrape, DEFAULT_MAX_PROCESSES};
use crate::shared::target::{is_socket, SOCKET_PREFIX};

/// Default address of the endpoint (php-fpm_exporter's port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9253";
/// Default time limit of one pool's scrape.
pub const DEFAULT_SCRAPE_TIMEOUT: &str = "1s";
/// Default number of scrapes served at once.
pub const DEFAULT_MAX_SCRAPES: usize = 8;
/// Time a client has to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const EXPORTER_HELP: &str = "\
Serves /metrics in the Prometheus text format. Each scrape reads the status
page (--status-path, php-fpm's pm.status_path, with ?json, and ?json&full
with --per-process) of every --upstream and of every socket matched by
--discover, all at once, each within --scrape-timeout (default 1s). A pool
that cannot be read in time is phpfpm_up 0, with one line on standard error
saying why; the other pools are unaffected, and a slow scrape never holds up
the next one.

--discover DIR takes every socket whose name starts with `php` in DIR;
--discover '/run/php/php*-fpm.sock' takes the sockets matching the pattern
(* and ? in the file name). Both are looked up again at each scrape.

When every worker of a pool is busy, its status page waits in the listen
queue like any request and the scrape times out: give the pool a status
listener of its own, which answers while the workers are busy:
  pm.status_listen = 127.0.0.1:9001     (or a socket path)
and scrape that address instead (php-fpm 8.0 and later).

Metrics (labels address and pool): phpfpm_up, phpfpm_scrape_duration_seconds,
phpfpm_start_since_seconds, phpfpm_start_time_seconds,
phpfpm_accepted_connections_total, phpfpm_listen_queue,
phpfpm_max_listen_queue, phpfpm_listen_queue_length, phpfpm_idle_processes,
phpfpm_active_processes, phpfpm_total_processes,
phpfpm_max_active_processes, phpfpm_max_children_reached_total,
phpfpm_slow_requests_total; with --per-process (label child: the worker's
slot, 0 to pm.max_children - 1, so recycled workers add no series; at most
--max-processes per pool): phpfpm_process_pid, phpfpm_process_requests_total,
phpfpm_process_start_since_seconds, phpfpm_process_request_duration_seconds,
phpfpm_process_last_request_cpu_ratio,
phpfpm_process_last_request_memory_bytes, phpfpm_process_state (label state).
The names of hipages' php-fpm_exporter, with _total on counters and units in
the name; crates/fcgi-cli/README.md has the mapping.

Examples:
  fcgi exporter --upstream unix:/run/php/php8.2-fpm.sock
  fcgi exporter --listen 0.0.0.0:9253 --discover /run/php --per-process
  fcgi exporter --upstream 127.0.0.1:9001 --upstream 127.0.0.1:9011 --scrape-timeout 500ms";

/// `fcgi exporter`.
#[derive(Debug, Args)]
#[command(after_help = EXPORTER_HELP)]
pub struct ExporterArgs {
    /// Where to serve /metrics.
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "HOST:PORT")]
    pub listen: SocketAddr,
    /// A pool's address (repeatable): host:port, unix:/path or a socket path.
    #[arg(long = "upstream", value_name = "ADDR")]
    pub upstreams: Vec<String>,
    /// A directory (its php* sockets) or a pattern of socket paths
    /// (repeatable), looked up at every scrape.
    #[arg(long, value_name = "DIR-OR-GLOB")]
    pub discover: Vec<String>,
    /// The status page (php-fpm's pm.status_path).
    #[arg(long, default_value = DEFAULT_STATUS_PATH, value_name = "PATH")]
    pub status_path: String,
    /// Time limit of one pool's scrape (500ms, 1s, 2.5s...).
    #[arg(long, default_value = DEFAULT_SCRAPE_TIMEOUT, value_name = "DURATION", value_parser = parse_duration)]
    pub scrape_timeout: Duration,
    /// Export per-process series too (reads the status page with ?full).
    #[arg(long)]
    pub per_process: bool,
    /// At most this many workers per pool in the per-process series.
    #[arg(long, default_value_t = DEFAULT_MAX_PROCESSES, value_name = "N",
          value_parser = positive)]
    pub max_processes: usize,
    /// Scrapes served at once; more are answered 503.
    #[arg(long, default_value_t = DEFAULT_MAX_SCRAPES, value_name = "N",
          value_parser = positive)]
    pub max_scrapes: usize,
    /// Print the metric table (name, type, status page field,
    /// php-fpm_exporter's name) as Markdown and exit.
    #[arg(long)]
    pub print_mapping: bool,
}

/// A count of at least 1.
fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?}: give a whole number of at least 1")),
    }
}

/// Where pools are found: a directory, or a directory and a file-name
/// pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    dir: PathBuf,
    /// `None`: names starting with [`SOCKET_PREFIX`].
    pattern: Option<String>,
}

impl Discovery {
    /// `--discover TEXT`: an existing directory, or a path whose file name
    /// may hold `*` and `?` (its directory may not).
    pub fn parse(text: &str) -> Result<Discovery, Failure> {
        let path = Path::new(text);
        if path.is_dir() {
            return Ok(Discovery {
                dir: path.to_path_buf(),
                pattern: None,
            });
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Failure::usage(format!(
                "--discover {text:?}: give a directory or a pattern such as /run/php/php*.sock"
            )));
        };
        let dir_text = dir.to_string_lossy();
        if dir_text.contains(['*', '?']) {
            return Err(Failure::usage(format!(
                "--discover {text:?}: * and ? work in the file name only, not in the directory {dir_text:?}"
            )));
        }
        let dir = if dir_text.is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        Ok(Discovery {
            dir,
            pattern: Some(name.to_string_lossy().into_owned()),
        })
    }

    /// The sockets it matches now, sorted (none when the directory is
    /// missing: pools may come later).
    pub fn sockets(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                match &self.pattern {
                    Some(pattern) => glob_match(pattern.as_bytes(), name.as_bytes()),
                    None => name.starts_with(SOCKET_PREFIX),
                }
            })
            .map(|e| e.path())
            .filter(|p| is_socket(p))
            .collect();
        found.sort();
        found
    }
}

/// Whether `name` matches `pattern` (`*`: any run of characters, `?`: one).
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative, with one backtrack point: linear in practice.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// What every scrape needs.
struct State {
    upstreams: Vec<Address>,
    discover: Vec<Discovery>,
    status_path: String,
    timeout: Duration,
    per_process: Option<usize>,
    /// The last pool name seen per address, so that a failing pool keeps
    /// its series' labels.
    pool_names: Mutex<HashMap<String, String>>,
    scrapes: Semaphore,
}

impl State {
    /// Every pool to scrape now: the upstreams, then the discovered
    /// sockets not already among them.
    fn addresses(&self) -> Vec<Address> {
        let mut all = self.upstreams.clone();
        for discovery in &self.discover {
            for path in discovery.sockets() {
                let address = Address::Unix(path);
                if !all.contains(&address) {
                    all.push(address);
                }
            }
        }
        all
    }
}

/// `fcgi exporter`.
pub fn run(args: &ExporterArgs) -> Result<(), Failure> {
    if args.print_mapping {
        print!("{}", prometheus::mapping_table());
        return Ok(());
    }
    if args.upstreams.is_empty() && args.discover.is_empty() {
        return Err(Failure::usage(
            "give the pools to scrape: --upstream ADDR (repeatable) or --discover DIR-OR-GLOB",
        ));
    }
    let upstreams = args
        .upstreams
        .iter()
        .map(|text| {
            text.parse::<Address>()
                .map_err(|e| Failure::usage(format!("--upstream {text:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let discover = args
        .discover
        .iter()
        .map(|text| Discovery::parse(text))
        .collect::<Result<Vec<_>, _>>()?;
    let state = Arc::new(State {
        upstreams,
        discover,
        status_path: args.status_path.clone(),
        timeout: args.scrape_timeout,
        per_process: args.per_process.then_some(args.max_processes),
        pool_names: Mutex::new(HashMap::new()),
        scrapes: Semaphore::new(args.max_scrapes),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(failure::OTHER, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(args, state))
}

async fn serve(args: &ExporterArgs, state: Arc<State>) -> Result<(), Failure> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(failure::OTHER, format!("listener: {e}")))?;
    let mut pools: Vec<String> = args.upstreams.clone();
    pools.extend(args.discover.iter().map(|d| format!("discover {d}")));
    eprintln!(
        "fcgi exporter: listening on http://{local}/metrics (pools: {}; scrape timeout {:?})",
        pools.join(", "),
        args.scrape_timeout
    );
    let shutdown = crate::shared::signals::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    eprintln!("fcgi exporter: accept failed: {error}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            signal = &mut shutdown => {
                eprintln!("fcgi exporter: {signal}; bye");
                return Ok(());
            }
        };
        let state = Arc::clone(&state);
        let service = hyper::service::service_fn(move |request| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(handle(&state, request).await) }
        });
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let conn = http.serve_connection(TokioIo::new(tcp), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn text_response(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "only GET /metrics\n".into(),
        );
    }
    match request.uri().path() {
        "/metrics" => {
            let Ok(_permit) = state.scrapes.try_acquire() else {
                return text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    "too many scrapes at once (--max-scrapes)\n".into(),
                );
            };
            let body = scrape(state).await;
            text_response(StatusCode::OK, prometheus::CONTENT_TYPE, body)
        }
        "/" => text_response(
            StatusCode::OK,
            PLAIN,
            "fcgi exporter: php-fpm metrics at /metrics\n".into(),
        ),
        _ => text_response(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: the metrics are at /metrics\n".into(),
        ),
    }
}

/// One scrape: every pool at once, then the text.
async fn scrape(state: &State) -> String {
    let addresses = state.addresses();
    let full = state.per_process.is_some();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, address) in addresses.iter().enumerate() {
        let address = address.clone();
        let path = state.status_path.clone();
        let timeout = state.timeout;
        tasks.spawn(async move { (index, scrape_pool(address, &path, full, timeout).await) });
    }
    let mut results: Vec<Option<(Result<fpm_status::PoolStatus, String>, Duration)>> =
        vec![None; addresses.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, result)) = joined {
            results[index] = Some(result);
        }
    }
    let mut names = state.pool_names.lock().unwrap_or_else(|e| e.into_inner());
    let scrapes: Vec<PoolScrape> = addresses
        .iter()
        .zip(results)
        .map(|(address, result)| {
            let address = address.to_string();
            let (result, duration) = result
                .unwrap_or_else(|| (Err("the scrape task failed".to_string()), state.timeout));
            match &result {
                Ok(status) => {
                    names.insert(address.clone(), status.pool.clone());
                }
                Err(reason) => eprintln!("fcgi exporter: {address}: scrape failed: {reason}"),
            }
            let pool = names.get(&address).cloned().unwrap_or_default();
            PoolScrape {
                address,
                pool,
                result,
                duration,
            }
        })
        .collect();
    drop(names);
    prometheus::render(&scrapes, state.per_process)
}

/// Reads one pool's status page within `timeout`.
async fn scrape_pool(
    address: Address,
    path: &str,
    full: bool,
    timeout: Duration,
) -> (Result<fpm_status::PoolStatus, String>, Duration) {
    let started = Instant::now();
    let config = Config::default()
        .connect_timeout(timeout)
        .idle_timeout(timeout)
        .deadline(timeout);
    let client = AsyncClient::builder()
        .upstream(address)
        .config(config)
        .keep_alive(false)
        .multiplexing(Multiplexing::Disabled)
        .build();
    let result = match client {
        Err(e) => Err(e.to_string()),
        Ok(client) => {
            let request = fpm_status::status_request(path, full);
            let timed_out = || {
                format!(
                    "timed out after {timeout:?} (--scrape-timeout); when every worker is busy the status page waits too: set pm.status_listen"
                )
            };
            match tokio::time::timeout(timeout, client.execute(request)).await {
                Err(_) | Ok(Err(fcgi::Error::Timeout { .. })) => Err(timed_out()),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(response)) => fpm_status::parse_response(&response)
                    .map(|(status, _)| status)
                    .map_err(|e| {
                        format!("status page {path} {e}; check pm.status_path (--status-path)")
                    }),
            }
        }
    };
    (result, started.elapsed())
}

impl std::fmt::Display for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pattern {
            Some(p) => write!(f, "{}", self.dir.join(p).display()),
            None => write!(f, "{}/{SOCKET_PREFIX}*", self.dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns_match_file_names() {
        let m = |p: &str, n: &str| glob_match(p.as_bytes(), n.as_bytes());
        assert!(m("php*.sock", "php8.2-fpm.sock"));
        assert!(m("php*-fpm.sock", "php8.2-fpm.sock"));
        assert!(m("php?.sock", "php8.sock"));
        assert!(m("*", "anything"));
        assert!(!m("php*.sock", "php8.2-fpm.pid"));
        assert!(!m("php?.sock", "php82.sock"));
        assert!(!m("php*.sock", "other.sock"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
    }

    #[test]
    fn discovery_takes_php_sockets_of_a_directory_or_a_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let bind =
            |name: &str| std::os::unix::net::UnixListener::bind(dir.path().join(name)).unwrap();
        let _a = bind("php8.2-fpm.sock");
        let _b = bind("php-www.sock");
        let _c = bind("other.sock");
        std::fs::write(dir.path().join("php-file.sock"), "not a socket").unwrap();
        let all = Discovery::parse(&dir.path().display().to_string()).unwrap();
        let names: Vec<String> = all
            .sockets()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["php-www.sock", "php8.2-fpm.sock"]);
        let pattern = format!("{}/php*-fpm.sock", dir.path().display());
        let some = Discovery::parse(&pattern).unwrap();
        assert_eq!(some.sockets(), [dir.path().join("php8.2-fpm.sock")]);
    }

    #[test]
    fn a_wildcard_in_the_directory_is_refused() {
        let err = Discovery::parse("/run/*/php.sock").unwrap_err();
        assert_eq!(err.code, crate::shared::failure::USAGE);
    }
}
