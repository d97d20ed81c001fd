//! php-fpm's status and ping pages: the requests that ask for them and the
//! status page's JSON read into typed figures ([`PoolStatus`]). One module
//! for every command that reads a pool: `status`, `health`, `exporter`,
//! `doctor` and `eval --all-workers`.
//!
//! What the figures mean (php-fpm 8.2, `pm.status_path`, `?json&full`):
//!
//! * `accepted conn`, `slow requests` and `max children reached` are
//!   **counters since the pool started** (`start since` seconds ago): they
//!   only grow, and a single reading says nothing about now;
//! * `listen queue` is the number of connections waiting for a worker now;
//!   `max listen queue` its highest value since start; `listen queue len` is
//!   the **size** of the queue (the listen backlog in effect, a setting, 0
//!   on Unix sockets where php-fpm cannot read it);
//! * `idle`, `active` and `total processes` are now; `max active
//!   processes` is the highest `active` since start. Without
//!   `pm.status_listen`, the worker answering the status request is one of
//!   the active processes.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use fcgi::{Client, Request, Response};

use crate::shared::failure::{Failure, OTHER};
use crate::shared::verbose::{print_head, print_params};

/// Default status page path (php-fpm's `pm.status_path`).
pub const DEFAULT_STATUS_PATH: &str = "/status";
/// Default ping page path (php-fpm's `ping.path`).
pub const DEFAULT_PING_PATH: &str = "/ping";
/// Default ping answer (php-fpm's `ping.response`).
pub const DEFAULT_PING_RESPONSE: &str = "pong";

/// Where a pool's ping and status pages are (`health`, `doctor`).
#[derive(Debug, Clone, clap::Args)]
pub struct PageArgs {
    /// The ping page (php-fpm's ping.path).
    #[arg(long, default_value = DEFAULT_PING_PATH, value_name = "PATH")]
    pub ping_path: String,
    /// The ping page's expected answer (php-fpm's ping.response).
    #[arg(long, default_value = DEFAULT_PING_RESPONSE, value_name = "TEXT")]
    pub expect: String,
    /// The status page (php-fpm's pm.status_path).
    #[arg(long, default_value = DEFAULT_STATUS_PATH, value_name = "PATH")]
    pub status_path: String,
}

/// One php-fpm pool's figures, read from its status page.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStatus {
    /// The pool's name (`[www]` in its configuration).
    pub pool: String,
    /// `static`, `dynamic` or `ondemand`.
    pub process_manager: String,
    /// When the pool started (seconds since 1970).
    pub start_time: u64,
    /// Seconds since the pool started.
    pub start_since: u64,
    /// Connections accepted since start (a counter).
    pub accepted_conn: u64,
    /// Connections waiting for a worker now.
    pub listen_queue: u64,
    /// Highest `listen_queue` since start.
    pub max_listen_queue: u64,
    /// Size of the listen queue (the backlog in effect; a setting).
    pub listen_queue_len: u64,
    /// Workers waiting for a request now.
    pub idle_processes: u64,
    /// Workers serving a request now.
    pub active_processes: u64,
    /// Workers now.
    pub total_processes: u64,
    /// Highest `active_processes` since start.
    pub max_active_processes: u64,
    /// How often the process manager wanted more workers than
    /// `pm.max_children` allows, since start (a counter; never grows in a
    /// static pool).
    pub max_children_reached: u64,
    /// Requests that ran past `request_slowlog_timeout`, since start (a
    /// counter).
    pub slow_requests: u64,
    /// Peak memory of the pool's workers, in bytes (php-fpm 8.4 and later).
    pub memory_peak: Option<u64>,
    /// The workers (with `full`), in php-fpm's order (its scoreboard slots).
    pub processes: Vec<ProcessStatus>,
}

/// One worker of a pool (the status page's `full` list).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStatus {
    /// Its process id.
    pub pid: u32,
    /// `Idle`, `Running`, `Reading headers`, `Getting request info`,
    /// `Finishing` or `Ending`.
    pub state: String,
    /// Seconds since it started.
    pub start_since: u64,
    /// Requests it served.
    pub requests: u64,
    /// Duration of its current or last request, in microseconds.
    pub request_duration_us: u64,
    /// Method of its current or last request (`-` when none).
    pub request_method: String,
    /// URI of its current or last request.
    pub request_uri: String,
    /// The script of its current or last request.
    pub script: String,
    /// CPU of its last request, in percent of one core.
    pub last_request_cpu: f64,
    /// Peak memory of its last request, in bytes.
    pub last_request_memory: u64,
}

/// The worker states php-fpm reports, in its order.
pub const PROCESS_STATES: [&str; 6] = [
    "Idle",
    "Running",
    "Reading headers",
    "Getting request info",
    "Finishing",
    "Ending",
];

/// Why a page's answer is not what was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// Not status 200: the page is not configured at that path (php-fpm
    /// then runs the path as a script: 404 "File not found.").
    Status {
        /// The status answered.
        status: u16,
        /// Its reason phrase.
        reason: String,
        /// The start of the body, for the message.
        body: String,
    },
    /// 200, but not php-fpm's JSON status (`field` names what was wrong).
    NotStatus {
        /// What is wrong with it.
        detail: String,
    },
    /// The ping page answered something other than the expected text.
    WrongAnswer {
        /// What it answered (trimmed, shortened).
        answer: String,
    },
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::Status {
                status,
                reason,
                body,
            } => write!(f, "answered {status} {reason} {body}"),
            PageError::NotStatus { detail } => {
                write!(f, "answered 200 but not php-fpm's JSON status: {detail}")
            }
            PageError::WrongAnswer { answer } => write!(f, "answered {answer}"),
        }
    }
}

/// Characters of a body quoted in a message.
const SNIPPET_LEN: usize = 80;

/// Text of a body for a message: trimmed, at most [`SNIPPET_LEN`]
/// characters, quoted.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(SNIPPET_LEN).collect();
    if text.chars().count() > SNIPPET_LEN {
        out.push('…');
    }
    format!("{out:?}")
}

/// A GET for a php-fpm page (ping or status), which php-fpm matches on
/// SCRIPT_NAME; SCRIPT_FILENAME must be present, and gets the same value.
/// `query` is appended after `?` when not empty.
pub fn page_request(path: &str, query: &str) -> Request {
    let uri = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    Request::get(&uri)
        .param("SERVER_SOFTWARE", crate::cgi::SERVER_SOFTWARE)
        .param("REMOTE_ADDR", "127.0.0.1")
        .param("SERVER_NAME", "localhost")
}

/// The status page request: `?json`, or `?json&full` for the workers too.
pub fn status_request(path: &str, full: bool) -> Request {
    page_request(path, if full { "json&full" } else { "json" })
}

/// The ping page's answer checked: `Ok` when it is 200 with `expect`.
pub fn check_ping(response: &Response, expect: &str) -> Result<(), PageError> {
    let answer = String::from_utf8_lossy(&response.body);
    if response.status == 200 && answer.trim() == expect {
        return Ok(());
    }
    Err(PageError::WrongAnswer {
        answer: format!(
            "{} {} {}",
            response.status,
            response.reason,
            snippet(&response.body)
        ),
    })
}

/// [`parse_page`] of a response.
pub fn parse_response(response: &Response) -> Result<(PoolStatus, Map<String, Value>), PageError> {
    parse_page(response.status, &response.reason, &response.body)
}

/// The status page's answer read: the figures, and the JSON object as
/// php-fpm sent it.
pub fn parse_page(
    status: u16,
    reason: &str,
    body: &[u8],
) -> Result<(PoolStatus, Map<String, Value>), PageError> {
    if status != 200 {
        return Err(PageError::Status {
            status,
            reason: reason.to_string(),
            body: snippet(body),
        });
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| PageError::NotStatus {
        detail: format!("not JSON ({e}): {}", snippet(body)),
    })?;
    let Value::Object(object) = value else {
        return Err(PageError::NotStatus {
            detail: format!("not a JSON object: {}", snippet(body)),
        });
    };
    let status =
        PoolStatus::from_json(&object).map_err(|detail| PageError::NotStatus { detail })?;
    Ok((status, object))
}

/// Why reading a page failed: the request itself, or what it answered.
#[derive(Debug)]
pub enum FetchError {
    /// The request failed (connect, time limit, protocol...).
    Request(fcgi::Error),
    /// It was answered, but not with what the page gives.
    Page(PageError),
}

impl FetchError {
    /// The failure to report for the page at `path` of `address`:
    /// request errors keep their exit codes; a wrong answer is exit 1 and
    /// names the pool setting to check (`pm.status_path` or `ping.path`).
    pub fn failure(self, page: &str, path: &str, address: &str) -> Failure {
        match self {
            FetchError::Request(err) => Failure::from_fcgi(&err),
            FetchError::Page(err) => {
                let setting = if page == "ping" {
                    "ping.path and ping.response"
                } else {
                    "pm.status_path"
                };
                Failure::new(
                    OTHER,
                    format!(
                        "{page} page {path} at {address} {err}; check {setting} in the pool configuration (and --path)"
                    ),
                )
            }
        }
    }
}

/// A status page read: the figures, php-fpm's JSON object, and the body as
/// it came.
#[derive(Debug, Clone)]
pub struct StatusPage {
    /// The figures.
    pub status: PoolStatus,
    /// The JSON object.
    pub object: Map<String, Value>,
    /// The body as php-fpm sent it.
    pub body: Vec<u8>,
}

/// Reads the status page at `path` through `client` (`full`: with the
/// workers); `verbose` prints the params and the response head (`-v`).
pub fn fetch(
    client: &Client,
    path: &str,
    full: bool,
    verbose: bool,
) -> Result<StatusPage, FetchError> {
    let request = status_request(path, full);
    if verbose {
        print_params(&request);
    }
    let response = client.execute(request).map_err(FetchError::Request)?;
    if verbose {
        print_head(response.status, &response.reason, &response.headers);
    }
    let (status, object) = parse_response(&response).map_err(FetchError::Page)?;
    Ok(StatusPage {
        status,
        object,
        body: response.body,
    })
}

/// Asks the ping page at `path` through `client` and checks that it
/// answers `expect`; returns how long it took.
pub fn ping(
    client: &Client,
    path: &str,
    expect: &str,
    verbose: bool,
) -> Result<Duration, FetchError> {
    let request = page_request(path, "");
    if verbose {
        print_params(&request);
    }
    let started = Instant::now();
    let response = client.execute(request).map_err(FetchError::Request)?;
    let elapsed = started.elapsed();
    if verbose {
        print_head(response.status, &response.reason, &response.headers);
    }
    check_ping(&response, expect).map_err(FetchError::Page)?;
    Ok(elapsed)
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a Value, String> {
    object
        .get(name)
        .ok_or_else(|| format!("the field {name:?} is missing"))
}

fn count(object: &Map<String, Value>, name: &str) -> Result<u64, String> {
    let value = field(object, name)?;
    value
        .as_u64()
        .ok_or_else(|| format!("the field {name:?} is {value}, not a count"))
}

fn text(object: &Map<String, Value>, name: &str) -> Result<String, String> {
    match field(object, name)? {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("the field {name:?} is {other}, not text")),
    }
}

impl PoolStatus {
    /// Reads php-fpm's JSON status object; the error names the field that
    /// is missing or of the wrong kind.
    pub fn from_json(object: &Map<String, Value>) -> Result<PoolStatus, String> {
        let processes = match object.get("processes") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Value::Object(p) => ProcessStatus::from_json(p)
                        .map_err(|e| format!("process {i} of the list: {e}")),
                    other => Err(format!("process {i} of the list is {other}, not an object")),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("the field \"processes\" is {other}, not a list")),
        };
        Ok(PoolStatus {
            pool: text(object, "pool")?,
            process_manager: text(object, "process manager")?,
            start_time: count(object, "start time")?,
            start_since: count(object, "start since")?,
            accepted_conn: count(object, "accepted conn")?,
            listen_queue: count(object, "listen queue")?,
            max_listen_queue: count(object, "max listen queue")?,
            listen_queue_len: count(object, "listen queue len")?,
            idle_processes: count(object, "idle processes")?,
            active_processes: count(object, "active processes")?,
            total_processes: count(object, "total processes")?,
            max_active_processes: count(object, "max active processes")?,
            max_children_reached: count(object, "max children reached")?,
            slow_requests: count(object, "slow requests")?,
            memory_peak: object.get("memory peak").and_then(Value::as_u64),
            processes,
        })
    }

    /// Whether workers can come and go (`dynamic`, `ondemand`).
    pub fn is_static(&self) -> bool {
        self.process_manager == "static"
    }
}

impl ProcessStatus {
    /// Reads one entry of the status page's `processes` list.
    pub fn from_json(object: &Map<String, Value>) -> Result<ProcessStatus, String> {
        let pid = count(object, "pid")?;
        let cpu = field(object, "last request cpu")?;
        Ok(ProcessStatus {
            pid: u32::try_from(pid).map_err(|_| format!("the pid {pid} is out of range"))?,
            state: text(object, "state")?,
            start_since: count(object, "start since")?,
            requests: count(object, "requests")?,
            request_duration_us: count(object, "request duration")?,
            request_method: text(object, "request method")?,
            request_uri: text(object, "request uri")?,
            script: text(object, "script")?,
            last_request_cpu: cpu
                .as_f64()
                .ok_or_else(|| format!("the field \"last request cpu\" is {cpu}, not a number"))?,
            last_request_memory: count(object, "last request memory")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A status page of php-fpm 8.2 (`?json&full`), as it came.
    pub(crate) const SAMPLE: &str = r#"{"pool":"www","process manager":"static","start time":1796123165,"start since":77,"accepted conn":12,"listen queue":1,"max listen queue":3,"listen queue len":4096,"idle processes":1,"active processes":1,"total processes":2,"max active processes":2,"max children reached":0,"slow requests":4, "processes":[{"pid":2687,"state":"Running","start time":1796123165,"start since":77,"requests":7,"request duration":351,"request method":"GET","request uri":"\/status?json&full","content length":0,"user":"-","script":"-","last request cpu":0.00,"last request memory":0},{"pid":2688,"state":"Idle","start time":1796123165,"start since":77,"requests":5,"request duration":293,"request method":"GET","request uri":"\/ping","content length":0,"user":"-","script":"-","last request cpu":12.5,"last request memory":2097152}]}"#;

    fn page(status: u16, body: &str) -> Result<(PoolStatus, Map<String, Value>), PageError> {
        parse_page(status, "X", body.as_bytes())
    }

    #[test]
    fn a_full_status_page_is_read_into_figures() {
        let (status, object) = page(200, SAMPLE).unwrap();
        assert_eq!(status.pool, "www");
        assert!(status.is_static());
        assert_eq!(status.accepted_conn, 12);
        assert_eq!(status.listen_queue, 1);
        assert_eq!(status.max_listen_queue, 3);
        assert_eq!(status.listen_queue_len, 4096);
        assert_eq!(status.slow_requests, 4);
        assert_eq!(status.memory_peak, None);
        assert_eq!(status.processes.len(), 2);
        assert_eq!(status.processes[1].pid, 2688);
        assert_eq!(status.processes[1].request_uri, "/ping");
        assert_eq!(status.processes[1].last_request_cpu, 12.5);
        assert_eq!(object["pool"], "www");
    }

    #[test]
    fn a_missing_field_is_named() {
        let body = SAMPLE.replace("\"slow requests\":4,", "");
        let err = page(200, &body).unwrap_err();
        assert!(err.to_string().contains("\"slow requests\""), "{err}");
    }

    #[test]
    fn a_404_is_a_status_error_with_the_body() {
        let err = page(404, "File not found.\n").unwrap_err();
        assert!(matches!(err, PageError::Status { status: 404, .. }));
        assert!(err.to_string().contains("File not found."), "{err}");
    }

    #[test]
    fn html_is_not_a_status_page() {
        let err = page(200, "<html>hi</html>").unwrap_err();
        assert!(matches!(err, PageError::NotStatus { .. }), "{err}");
    }
}
