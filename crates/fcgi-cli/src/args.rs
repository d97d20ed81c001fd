//! The command line: subcommands, options and their `--help` texts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub(crate) const ADDRESS_HELP: &str = "\
Addresses: host:port, [v6]:port, tcp://host:port, unix:/path, or a socket path.
When ADDR is left out, the first socket whose name starts with `php` under
/run/php/, then under /var/run/, is used, else 127.0.0.1:9000 (-v says which;
FCGI_DISCOVERY_DIRS, a :-separated list, replaces the two directories).";

pub(crate) const EXIT_HELP: &str = "\
Exit codes: 0 success, 1 unexpected answer (ping, status) or a local file error,
2 usage error, 3 cannot connect, 4 timed out, 5 protocol error or connection
closed early, 6 server rejected the request (CANT_MPX_CONN, OVERLOADED,
UNKNOWN_ROLE), 7 a limit was exceeded, 8 the authorizer denied the request
(--role authorizer), 9 PHP fatal error (eval), 10-14 `fcgi health`
thresholds (see its help), 22 --fail and status >= 400.
--spawn: an application that cannot start (or exits right away) is 3.";

/// `fcgi`: curl for FastCGI.
#[derive(Debug, Parser)]
#[command(
    name = "fcgi",
    version,
    about = "curl for FastCGI: requests, php-fpm health checks and status, management values",
    after_help = format!("{ADDRESS_HELP}\n\n{EXIT_HELP}\n\nExamples:\n  fcgi request /var/www/html/index.php\n  fcgi request 127.0.0.1:9000 /var/www/html/info.php?x=1 -i\n  fcgi ping unix:/run/php/php8.2-fpm.sock\n  fcgi status --full\n  fcgi values 127.0.0.1:9000"),
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a request for a script and print the response.
    Request(RequestCmd),
    /// Check php-fpm's ping page (ping.path); exits 0 on the expected answer.
    Ping(PingArgs),
    /// Show php-fpm's pool status page (pm.status_path).
    Status(crate::status::StatusArgs),
    /// Container probe: ping plus thresholds on the status page, with an
    /// exit code per failed check.
    Health(crate::health::HealthArgs),
    /// Diagnose a php-fpm pool: each finding with the configuration line
    /// that fixes it.
    Doctor(crate::doctor::DoctorArgs),
    /// Ask the server for FCGI_MAX_CONNS, FCGI_MAX_REQS and FCGI_MPXS_CONNS.
    Values(ValuesArgs),
    /// Run PHP code inside the php-fpm pool (where opcache and APCu live).
    Eval(crate::eval::EvalArgs),
    /// Load-test a script: the request of `fcgi request`, repeated over kept
    /// connections; prints requests/s, latency percentiles, statuses, errors.
    Bench(crate::bench::BenchArgs),
    /// Serve a PHP application over HTTP/1.1: static files from --root, scripts
    /// through FastCGI to the upstreams (like nginx with fastcgi_pass).
    Serve(crate::serve::ServeArgs),
    /// Serve php-fpm pools' status as Prometheus metrics on /metrics.
    Exporter(crate::exporter::ExporterArgs),
}

/// Options every subcommand has: time limits and verbosity.
#[derive(Debug, Args, Clone)]
pub struct ConnArgs {
    /// Time limit for the whole request, in seconds (decimals allowed).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Time limit for connecting, in seconds (decimals allowed).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub connect_timeout: Duration,
    /// Say which address is used, print the params sent, the response head,
    /// and one line per FastCGI record, on standard error.
    #[arg(short, long)]
    pub verbose: bool,
}

const REQUEST_HELP: &str = "\
ADDR or not: with two positional arguments the first is ADDR and the second
SCRIPT; with one, it is SCRIPT and ADDR is discovered (a lone argument that
can only be an address, such as 127.0.0.1:9000 or unix:/x.sock, is refused).

SCRIPT is the script's path on the server (SCRIPT_FILENAME). With
--document-root ROOT, SCRIPT may be a path under ROOT (/var/www/app/x.php) or
a URI path (/app/x.php); SCRIPT_NAME is then the part below ROOT.

Params sent, like nginx's fastcgi_params: QUERY_STRING, REQUEST_METHOD,
CONTENT_TYPE and CONTENT_LENGTH (with a body), SCRIPT_FILENAME, SCRIPT_NAME,
REQUEST_URI, DOCUMENT_URI, DOCUMENT_ROOT (ROOT, else /), SERVER_PROTOCOL,
REQUEST_SCHEME, GATEWAY_INTERFACE, SERVER_SOFTWARE, REMOTE_ADDR, REMOTE_PORT,
SERVER_ADDR, SERVER_PORT, SERVER_NAME, REDIRECT_STATUS, HTTP_HOST; then -H
headers, then -p params, then --unset-param removals.

Examples:
  fcgi request /var/www/html/index.php
  fcgi request 127.0.0.1:9000 /srv/app/public/index.php?page=2 -i
  fcgi request unix:/run/php/php8.2-fpm.sock /srv/www/api.php --json-body '{\"a\":1}'
  fcgi request /srv/www/form.php --form name=world --form lang=en
  fcgi request /srv/www/upload.php -X PUT -d @big.iso -H 'Content-Type: application/octet-stream'
  tar c dir | fcgi request /srv/www/upload.php -d @-
  fcgi request --document-root /srv/www /index.php -H 'Host: example.com' -p HTTPS=on
  fcgi request /srv/www/index.php --json | jq .status
  fcgi request /srv/www/health.php --fail -s -o /dev/null
  fcgi request --spawn php-cgi hello.php
  fcgi request --role authorizer /srv/auth.php -H 'Authorization: Bearer x'
  fcgi request --role filter --filter-data page.html /srv/filter.php

Roles: --role authorizer sends no body; granted (status 200) prints the
Variable-NAME headers as NAME=value lines (--json: a `variables` array) and
exits 0; denied prints the response as a responder's would and exits 8.
--role filter sends --filter-data FILE on the DATA stream, with
FCGI_DATA_LENGTH and FCGI_DATA_LAST_MOD taken from the file.

--spawn 'CMD ARGS' starts the FastCGI application itself (its listening
socket as file descriptor 0, as web servers did for php-cgi), sends the
request to it and stops it; no ADDR then. A relative SCRIPT is made absolute.";

/// `fcgi request`: the options of [`RequestArgs`] (shared with `fcgi
/// bench`), the role and `--spawn`.
#[derive(Debug, Args)]
#[command(
    override_usage = "fcgi request [OPTIONS] [ADDR] SCRIPT[?QUERY]",
    after_help = format!("{REQUEST_HELP}\n\n{ADDRESS_HELP}\n\n{EXIT_HELP}")
)]
pub struct RequestCmd {
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub roles: RoleArgs,
    #[command(flatten)]
    pub spawn: crate::spawn::SpawnArgs,
}

/// The FastCGI role of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RoleName {
    /// An ordinary request: the application answers it.
    #[default]
    Responder,
    /// The application decides whether the request may proceed.
    Authorizer,
    /// The application filters the file given with --filter-data.
    Filter,
}

/// `--role` and `--filter-data`.
#[derive(Debug, Args, Clone, Default)]
pub struct RoleArgs {
    /// The FastCGI role: responder, authorizer (no body; exit 8 when denied)
    /// or filter (needs --filter-data).
    #[arg(long, value_enum, value_name = "ROLE", default_value_t = RoleName::Responder)]
    pub role: RoleName,
    /// With --role filter: the file sent on the DATA stream (streamed from
    /// disk), with FCGI_DATA_LENGTH and FCGI_DATA_LAST_MOD from the file.
    #[arg(long, value_name = "FILE")]
    pub filter_data: Option<PathBuf>,
}

/// How the request is built: the options `fcgi request` and `fcgi bench`
/// share (the body option apart, as `-d` is the duration in `bench`).
#[derive(Debug, Args, Clone)]
pub struct RequestShape {
    /// Request method (default GET, or POST when a body is given).
    #[arg(short = 'X', long, value_name = "METHOD")]
    pub method: Option<String>,

    /// A request header 'Name: value' (repeatable): becomes HTTP_NAME;
    /// Content-Type and Content-Length become CONTENT_TYPE and CONTENT_LENGTH.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// A raw param NAME=VALUE (repeatable), set after the derived ones and
    /// the headers; `NAME=` sets an empty value.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,

    /// Do not send param NAME (repeatable), even a derived one.
    #[arg(long = "unset-param", value_name = "NAME")]
    pub unset_params: Vec<String>,

    /// A form field name=value (repeatable), url-encoded into an
    /// application/x-www-form-urlencoded body.
    #[arg(long = "form", value_name = "NAME=VALUE", group = "body")]
    pub form: Vec<String>,

    /// A JSON body (checked to be valid JSON), sent as application/json.
    #[arg(long = "json-body", value_name = "JSON", group = "body")]
    pub json_body: Option<String>,

    /// The document root on the server: SCRIPT_NAME becomes the script's path
    /// below it, DOCUMENT_ROOT is set to it.
    #[arg(long = "document-root", value_name = "ROOT")]
    pub document_root: Option<String>,

    /// Largest response head (status and headers) accepted, in bytes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_header_bytes: Option<u64>,
}

/// The options of `fcgi request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// [ADDR] SCRIPT[?QUERY]: the server's address (optional) and the
    /// script's path on the server, with an optional query string.
    #[arg(value_name = "ARGS", required = true, num_args = 1..=2)]
    pub positional: Vec<String>,

    #[command(flatten)]
    pub shape: RequestShape,

    /// The body: DATA as given, @FILE for a file, @- for standard input
    /// (streamed; a pipe is spooled to a temporary file to learn its length).
    /// Content type application/x-www-form-urlencoded unless -H sets one.
    #[arg(short = 'd', long = "data", value_name = "DATA", group = "body")]
    pub data: Option<String>,

    /// Print `STATUS REASON` and the response headers before the body.
    #[arg(short = 'i', long)]
    pub include: bool,

    /// Write the body to FILE instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Do not print the server's FastCGI stderr.
    #[arg(short = 's', long)]
    pub silent: bool,

    /// Print one JSON object instead: status, status_text, headers, body (or
    /// body_base64), stderr (or stderr_base64), app_status, duration_ms.
    #[arg(long, conflicts_with_all = ["include", "output"])]
    pub json: bool,

    /// Exit with 22 (and print no body) when the status is 400 or more.
    #[arg(long)]
    pub fail: bool,

    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `fcgi ping`.
#[derive(Debug, Args)]
#[command(after_help = format!("Sends a GET for --path (SCRIPT_NAME; php-fpm's ping.path) and compares the
answer with --expect (php-fpm's ping.response, `pong` by default). Fit for
container health checks: exit 0 on the expected answer, else non-zero.

Examples:
  fcgi ping
  fcgi ping 127.0.0.1:9000 --timeout 2
  fcgi ping unix:/run/php/php8.2-fpm.sock --path /fpm-ping --expect ok
  HEALTHCHECK CMD [\"fcgi\", \"ping\", \"127.0.0.1:9000\"]

{ADDRESS_HELP}

{EXIT_HELP}"))]
pub struct PingArgs {
    /// The server's address (discovered when left out).
    #[arg(value_name = "ADDR")]
    pub address: Option<String>,
    /// The ping page (php-fpm's ping.path).
    #[arg(long, default_value = "/ping", value_name = "PATH")]
    pub path: String,
    /// The expected answer (php-fpm's ping.response).
    #[arg(long, default_value = "pong", value_name = "TEXT")]
    pub expect: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `fcgi values`.
#[derive(Debug, Args)]
#[command(after_help = format!("Sends FCGI_GET_VALUES for FCGI_MAX_CONNS, FCGI_MAX_REQS and FCGI_MPXS_CONNS
and prints NAME=VALUE for each answered name, then the names left out.
(php-fpm answers only FCGI_MPXS_CONNS=0.)

Examples:
  fcgi values
  fcgi values 127.0.0.1:9000 --json

{ADDRESS_HELP}

{EXIT_HELP}"))]
pub struct ValuesArgs {
    /// The server's address (discovered when left out).
    #[arg(value_name = "ADDR")]
    pub address: Option<String>,
    /// Print {"values": {NAME: VALUE, ...}, "missing": [NAME, ...]}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Largest accepted time limit: about 11.5 days, far below `Duration`'s range.
const MAX_SECS: f64 = 1_000_000.0;

pub(crate) fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= MAX_SECS) {
        return Err(format!(
            "{text:?}: give a number of seconds above 0 and at most {MAX_SECS}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Units of [`parse_duration`], longest suffix first, with their length in
/// seconds.
const DURATION_UNITS: [(&str, f64); 5] = [
    ("ms", 0.001),
    ("us", 0.000_001),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

/// A duration as load generators take them: `10s`, `2m`, `500ms`, `1h`,
/// `250us`, decimals allowed (`1.5s`); a plain number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let (number, scale) = DURATION_UNITS
        .iter()
        .find_map(|(unit, scale)| trimmed.strip_suffix(unit).map(|n| (n, *scale)))
        .unwrap_or((trimmed, 1.0));
    let value: f64 = number.trim().parse().map_err(|_| {
        format!("{text:?} is not a duration: give a number with a unit (500ms, 10s, 2m, 1h) or plain seconds")
    })?;
    let secs = value * scale;
    if !(secs > 0.0 && secs <= MAX_SECS) {
        return Err(format!(
            "{text:?}: give a duration above 0 and at most {MAX_SECS} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_accept_decimals_and_refuse_nonsense() {
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("NaN").is_err());
        assert!(parse_secs("inf").is_err());
        assert!(parse_secs("abc").is_err());
    }

    #[test]
    fn durations_take_units_and_plain_numbers_are_seconds() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration(" 0.5s "), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn durations_refuse_nonsense() {
        for text in ["", "s", "0s", "-1s", "10x", "ten", "1d", "NaNs", "infs"] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }
}
