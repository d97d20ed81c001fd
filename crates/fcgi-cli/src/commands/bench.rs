//! `fcgi bench`: a FastCGI load generator. Builds the request exactly as
//! `fcgi request` does ([`crate::cgi::build_request`]), sends it again and
//! again over kept connections (one thread and one blocking client per
//! connection), and reports throughput, latency percentiles from an HDR
//! histogram, status codes and errors by kind.

mod engine;
mod report;

use std::io::{self, IsTerminal, Read};
use std::time::Duration;

use clap::Args;
use fcgi::{Body, Config, Params, Request};

use crate::cgi::{build_request_with, prepare_body, PreparedBody};
use crate::shared::failure::{Failure, OTHER};
use crate::shared::options::{ConnArgs, RequestArgs, RequestShape};
use crate::shared::spawn::{Server, SpawnArgs};
use crate::shared::target::split_positionals;
use crate::shared::verbose;

pub use engine::Plan;

/// Most connections `-c` accepts (one thread each).
pub const MAX_CONNECTIONS: u64 = 4096;

/// Largest request body a benchmark holds in memory and sends each time.
pub const MAX_BENCH_BODY: u64 = 256 * 1024 * 1024;

const BENCH_HELP: &str = "\
Sends the request that `fcgi request` would send for the same options, again
and again, over -c kept connections (FCGI_KEEP_CONN; one thread each), for -n
requests in all or for -d DURATION (10s, 2m, 500ms; a plain number is
seconds), then prints requests/s, transfer rate, latency percentiles, status
codes and errors by kind. Requests that fail are counted by kind, never
hidden; the exit code is 0 even then, unless --fail-on-error. Every request
is bounded by --timeout.

A run with -d ends when the duration is up, as wrk's does: requests still in
flight then are abandoned and counted (`abandoned` in --json), not waited
for.

Closed model by default: each connection sends its next request as soon as
the last one is answered. --rate N is the open model (as wrk2): requests are
due every 1/N s whatever happens, whichever connection is free sends the
next one, and latency counts from when a request was due, so a slow server
shows as latency instead of as fewer requests (no coordinated omission).
Sends due before the end that no connection was free to make are reported as
missed; sends made more than one interval (at least 1 ms) after they were
due, as late. Use enough connections (-c) for the rate times the latency.

With php-fpm, an idle kept connection pins a worker: use at most
pm.max_children connections.

The body is given with --data (not -d, which is the duration here).

--spawn 'CMD ARGS' starts the application itself (no ADDR then); for php-cgi,
PHP_FCGI_CHILDREN defaults to -c and PHP_FCGI_MAX_REQUESTS to 0 (no restarts).

Examples:
  fcgi bench /var/www/html/index.php -c 4 -d 10s
  fcgi bench 127.0.0.1:9000 /srv/app/index.php -c 8 -d 2m --rate 500
  fcgi bench 127.0.0.1:9000 /srv/app/index.php?page=2 -c 8 -n 100000 --json
  fcgi bench unix:/run/php/php8.2-fpm.sock /srv/www/api.php --json-body '{\"a\":1}' -c 2 -n 1000
  fcgi bench --spawn php-cgi hello.php -c 4 -n 10000";

/// Highest `--rate` accepted, in requests per second.
pub const MAX_RATE: f64 = 10_000_000.0;

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= MAX_RATE => Ok(rate),
        _ => Err(format!(
            "{text:?}: give requests per second above 0 and at most {MAX_RATE}"
        )),
    }
}

/// `fcgi bench`.
#[derive(Debug, Args)]
#[command(
    override_usage = "fcgi bench [OPTIONS] [ADDR] SCRIPT[?QUERY] -c CONNS (-n REQUESTS | -d DURATION) [--rate N]",
    after_help = BENCH_HELP
)]
#[command(group(clap::ArgGroup::new("bound").required(true).args(["requests", "duration"])))]
pub struct BenchArgs {
    /// [ADDR] SCRIPT[?QUERY], as for `fcgi request`.
    #[arg(value_name = "ARGS", required = true, num_args = 1..=2)]
    pub positional: Vec<String>,

    /// Connections (and threads) sending requests at the same time.
    #[arg(short = 'c', long = "connections", value_name = "CONNS", default_value = "1",
          value_parser = clap::value_parser!(u64).range(1..=MAX_CONNECTIONS))]
    pub connections: u64,

    /// Number of requests to send in all.
    #[arg(short = 'n', long = "requests", value_name = "REQUESTS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// How long to send requests: 10s, 2m, 500ms, 1h (a plain number is
    /// seconds). Requests still in flight at the end are abandoned.
    #[arg(short = 'd', long = "duration", value_name = "DURATION", value_parser = crate::shared::options::parse_duration)]
    pub duration: Option<Duration>,

    /// Send N requests per second on a fixed schedule (open model, as
    /// wrk2), spread over the connections; latency counts from each
    /// request's intended send time. Decimals allowed.
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Print one JSON object with the figures instead of the text report.
    #[arg(long)]
    pub json: bool,

    /// Exit non-zero (with the exit code of the most frequent error) when
    /// any request failed.
    #[arg(long)]
    pub fail_on_error: bool,

    #[command(flatten)]
    pub shape: RequestShape,

    /// The body: DATA as given, @FILE or @- (read once into memory, at most
    /// 256 MiB, and sent with every request).
    #[arg(long = "data", value_name = "DATA", group = "body")]
    pub data: Option<String>,

    #[command(flatten)]
    pub spawn: SpawnArgs,

    #[command(flatten)]
    pub conn: ConnArgs,
}

impl BenchArgs {
    /// The same options as `fcgi request` takes them, for the one request
    /// builder.
    fn request_args(&self) -> RequestArgs {
        RequestArgs {
            positional: self.positional.clone(),
            shape: self.shape.clone(),
            data: self.data.clone(),
            include: false,
            output: None,
            silent: true,
            json: false,
            fail: false,
            conn: self.conn.clone(),
        }
    }
}

/// The request every benchmark request repeats: its params and its body.
/// Each connection thread makes one [`Request`] of it and sends that again
/// and again with [`fcgi::Client::stream_again`].
#[derive(Debug, Clone)]
pub struct Template {
    /// The params, in the order they are sent (CONTENT_LENGTH included).
    pub params: Params,
    /// The body, in memory and shared by every request (none: no body).
    pub body: Option<bytes::Bytes>,
}

impl Template {
    /// A request with the template's params and body.
    pub fn request(&self) -> Request {
        let request = Request::new().params_from(self.params.clone());
        match &self.body {
            Some(bytes) => request.body(bytes.clone()),
            None => request,
        }
    }
}

/// Reads a body given as a file or standard input into memory (once).
fn body_in_memory(prepared: PreparedBody) -> Result<PreparedBody, Failure> {
    let PreparedBody {
        body,
        len,
        content_type,
    } = prepared;
    let body = match body {
        Body::Reader { reader, .. } => {
            if len > MAX_BENCH_BODY {
                return Err(Failure::usage(format!(
                    "the body is {len} bytes; fcgi bench sends at most {MAX_BENCH_BODY} bytes (use fcgi request for larger bodies)"
                )));
            }
            let mut bytes = Vec::with_capacity(len as usize);
            reader
                .take(len)
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::new(OTHER, format!("cannot read the body: {e}")))?;
            Body::from(bytes)
        }
        other => other,
    };
    Ok(PreparedBody {
        body,
        len,
        content_type,
    })
}

/// For a spawned php-cgi: one child per connection (a kept connection
/// holds a child) and no restart after 500 requests, unless the
/// environment sets them.
fn spawn_env(args: &BenchArgs) -> Vec<(&'static str, String)> {
    vec![
        ("PHP_FCGI_CHILDREN", args.connections.to_string()),
        ("PHP_FCGI_MAX_REQUESTS", "0".to_string()),
    ]
}

/// `fcgi bench`.
pub fn run(args: &BenchArgs) -> Result<(), Failure> {
    let request_args = args.request_args();
    let (address, script) = split_positionals(&args.positional)?;
    let script = args
        .spawn
        .script(address, script, args.shape.document_root.as_deref())?;
    let body = prepare_body(&request_args)?
        .map(body_in_memory)
        .transpose()?;
    let request = build_request_with(&request_args, &script, body)?;
    let mut server = Server::open_with(&args.spawn, address, &spawn_env(args))?;
    let target = server.target.clone();
    if args.conn.verbose {
        verbose::info(&format!("address {} ({})", target.address, target.how));
    }
    let mut config = Config::default()
        .keep_alive(true)
        .connect_timeout(args.conn.connect_timeout)
        .deadline(args.conn.timeout)
        .idle_timeout(args.conn.timeout);
    config.max_idle_connections = 1;
    if let Some(max) = args.shape.max_header_bytes {
        config = config.max_head_bytes(usize::try_from(max).unwrap_or(usize::MAX));
    }
    let body = match request.get_body() {
        Body::Bytes(bytes) => Some(bytes.clone()),
        _ => None,
    };
    let template = Template {
        params: request.params().clone(),
        body,
    };
    let plan = Plan {
        connections: args.connections,
        requests: args.requests,
        duration: args.duration,
        rate: args.rate,
        progress: !args.json && io::stderr().is_terminal(),
    };
    let outcome = engine::run(&target.address, config, &template, &plan)?;
    server.stop();
    let address = target.address.to_string();
    let summary = report::Summary::new(&outcome, &address, &plan);
    let text = if args.json {
        format!("{}\n", summary.json())
    } else {
        summary.text()
    };
    report::print(&text)?;
    if args.fail_on_error {
        if let Some(failure) = summary.failure() {
            return Err(failure);
        }
    }
    Ok(())
}
