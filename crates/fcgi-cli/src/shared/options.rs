//! Options and help texts several subcommands share: the time limits and
//! `-v` every client command has ([`ConnArgs`]), how a request is built
//! ([`RequestShape`], [`RequestArgs`]: `fcgi request` and `fcgi bench`),
//! the address and exit-code paragraphs of `--help`, and the parsers of
//! seconds and durations.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

pub const ADDRESS_HELP: &str = "\
Addresses: host:port, [v6]:port, tcp://host:port, unix:/path, or a socket path.
When ADDR is left out, the first socket whose name starts with `php` under
/run/php/, then under /var/run/, is used, else 127.0.0.1:9000 (-v says which;
FCGI_DISCOVERY_DIRS, a :-separated list, replaces the two directories).";

pub const EXIT_HELP: &str = "\
Exit codes: 0 success, 1 unexpected answer (ping, status) or a local file error,
2 usage error, 3 cannot connect, 4 timed out, 5 protocol error or connection
closed early, 6 server rejected the request (CANT_MPX_CONN, OVERLOADED,
UNKNOWN_ROLE), 7 a limit was exceeded, 8 the authorizer denied the request
(--role authorizer), 9 PHP fatal error (eval), 10-14 `fcgi health`
thresholds (see its help), 22 --fail and status >= 400.
--spawn: an application that cannot start (or exits right away) is 3.";

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

/// The options of `fcgi request`, which the request builder
/// ([`crate::cgi::build_request`]) reads; `fcgi bench` fills them from its
/// own.
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

/// Largest accepted time limit: about 11.5 days, far below `Duration`'s range.
const MAX_SECS: f64 = 1_000_000.0;

pub fn parse_secs(text: &str) -> Result<Duration, String> {
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
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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
