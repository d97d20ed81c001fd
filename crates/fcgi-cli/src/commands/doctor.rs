//! `fcgi doctor`: one run that diagnoses a php-fpm pool and, for each
//! finding, prints the configuration line that fixes it.
//!
//! The checks, in order (a failure of the first stops the rest):
//!
//! 1. `fastcgi`: does the peer speak FastCGI at all? A raw
//!    FCGI_GET_VALUES on a fresh connection tells php-fpm (a GET_VALUES
//!    answer) from an HTTP server (`HTTP/...`), a server that never answers
//!    management records, and nothing listening.
//! 2. `ping` and `status`: are `ping.path` and `pm.status_path` set?
//! 3. `pool`: the status page against the pool's settings: `pm.max_children`
//!    reached, connections that waited (`max listen queue`), the listen
//!    backlog in effect, and whether the status page needs a free worker
//!    (`pm.status_listen`).
//! 4. With `--root DIR` (the pool's document root, writable here), a probe
//!    script written there: does it run ("Primary script unknown"
//!    explained: a chroot, a directory the pool's user cannot search, or a
//!    filesystem the pool does not see; `open_basedir`; file permissions;
//!    `security.limit_extensions`), is a non-.php file refused, do a body
//!    over 64 KiB and large params arrive whole, and does a kept
//!    connection survive `pm.max_requests`.
//!
//! Everything doctor writes under `--root` is removed afterwards.

use std::fs::{self, Permissions};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use fcgi::{Address, Client, Config, Request, Response};
use serde_json::{json, Value};

use crate::shared::client::{connect, VALUE_NAMES};
use crate::shared::failure::{Failure, OTHER};
use crate::shared::fpm_status::{self, FetchError, PageArgs, PageError, PoolStatus};
use crate::shared::options::{ConnArgs, ADDRESS_HELP};
use crate::shared::output::write_stdout;

/// Size of the request body sent to the probe (over one 64 KiB record).
pub const BODY_BYTES: usize = 100 * 1024;
/// Size of the large param sent to the probe (under php-fpm's one-record
/// limit for a pair).
pub const BIG_PARAM_BYTES: usize = 32 * 1024;
/// Number of small params sent with it.
pub const MANY_PARAMS: usize = 300;
/// Listen backlogs below this are reported as small.
pub const SMALL_BACKLOG: u64 = 128;
/// Default requests sent over one kept connection.
pub const DEFAULT_KEEPALIVE_REQUESTS: u32 = 20;
/// How long the raw FastCGI probe waits for an answer at most.
const RAW_PROBE_WAIT: Duration = Duration::from_secs(3);

const DOCTOR_HELP: &str = "\
Checks a php-fpm pool and prints one line per finding (ok, info, WARN, FAIL),
each problem with the configuration line that fixes it (`fix:`):

  fastcgi           the peer speaks FastCGI (FCGI_GET_VALUES answered), or is
                    an HTTP server, or nothing listens
  ping, status      ping.path and pm.status_path are set (--ping-path,
                    --status-path)
  pool              pm.max_children reached, connections that waited for a
                    worker, the listen backlog, pm.status_listen
  script            (--root) a probe script under DIR runs; \"Primary script
                    unknown\" explained: chroot, directory permissions, a
                    filesystem the pool does not see; open_basedir; file
                    permissions
  limit_extensions  (--root) a non-.php file is refused
  body, params      (--root) a 100 KiB body and a 32 KiB param plus 300 params
                    arrive whole
  keep_alive        (--root) requests over one kept connection survive
                    pm.max_requests (--keepalive-requests)

--root DIR is the pool's document root as this machine sees it; doctor
writes its probe files there (fcgi-doctor-*) and removes them. Exit 0 when
nothing failed (warnings allowed), 1 when something did; --json prints one
object with the findings.

Examples:
  fcgi doctor
  fcgi doctor 127.0.0.1:9000 --root /var/www/html
  fcgi doctor unix:/run/php/php8.2-fpm.sock --root /srv/app/public --json";

/// `fcgi doctor`.
#[derive(Debug, Args)]
#[command(after_help = format!("{DOCTOR_HELP}\n\n{ADDRESS_HELP}"))]
pub struct DoctorArgs {
    /// The server's address (discovered when left out).
    #[arg(value_name = "ADDR")]
    pub address: Option<String>,
    /// The pool's document root, writable here: enables the script checks.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub pages: PageArgs,
    /// Requests sent over one kept connection (to meet pm.max_requests).
    #[arg(long, default_value_t = DEFAULT_KEEPALIVE_REQUESTS, value_name = "N")]
    pub keepalive_requests: u32,
    /// Print one JSON object with the findings.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// How a finding weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// As it should be.
    Ok,
    /// Worth knowing.
    Info,
    /// Works, but will hurt.
    Warn,
    /// Broken.
    Fail,
    /// Not checked (says why).
    Skip,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
            Level::Skip => "skip",
        }
    }
}

/// One finding: the check, its level, what was found, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The check's name.
    pub check: &'static str,
    /// How it weighs.
    pub level: Level,
    /// What was found.
    pub message: String,
    /// The configuration line (or command) that fixes it.
    pub fix: Option<String>,
}

fn finding(check: &'static str, level: Level, message: impl Into<String>) -> Finding {
    Finding {
        check,
        level,
        message: message.into(),
        fix: None,
    }
}

impl Finding {
    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// What the raw FastCGI probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Nothing could be connected to.
    Unreachable(String),
    /// An HTTP server answered.
    Http(String),
    /// A FastCGI record came back.
    FastCgi,
    /// Connected, but no answer to FCGI_GET_VALUES.
    Silent,
    /// Something else came back.
    Other(String),
}

/// A FCGI_GET_VALUES record asking for [`VALUE_NAMES`].
fn get_values_record() -> Vec<u8> {
    let mut body = Vec::new();
    for name in VALUE_NAMES {
        body.push(name.len() as u8);
        body.push(0);
        body.extend_from_slice(name.as_bytes());
    }
    let len = body.len() as u16;
    let mut record = vec![1, 9, 0, 0, (len >> 8) as u8, len as u8, 0, 0];
    record.extend_from_slice(&body);
    record
}

/// Tells what the first bytes of an answer to FCGI_GET_VALUES are.
pub fn classify(answer: &[u8]) -> Peer {
    if answer.is_empty() {
        return Peer::Silent;
    }
    if answer.starts_with(b"HTTP/") {
        let line = String::from_utf8_lossy(answer);
        let first = line.lines().next().unwrap_or("").trim().to_string();
        return Peer::Http(first);
    }
    // version 1, then GET_VALUES_RESULT (10) or UNKNOWN_TYPE (11) or any
    // record type a FastCGI server might use.
    if answer[0] == 1 && answer.get(1).is_some_and(|t| (1..=11).contains(t)) {
        return Peer::FastCgi;
    }
    Peer::Other(fpm_status::snippet(answer))
}

/// Connects to `address` and sends FCGI_GET_VALUES; reads what comes back.
fn probe_peer(address: &Address, conn: &ConnArgs) -> Peer {
    let wait = conn.timeout.min(RAW_PROBE_WAIT);
    let exchange = |stream: &mut dyn ReadWrite| -> io::Result<Vec<u8>> {
        stream.write_all(&get_values_record())?;
        let mut buf = vec![0u8; 256];
        let mut got = 0;
        loop {
            match stream.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    if got >= 8 {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                // A reset after the garbage we sent still tells something.
                Err(e) if got > 0 || e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    };
    let result = match address {
        Address::Unix(path) => UnixStream::connect(path).and_then(|mut s| {
            s.set_read_timeout(Some(wait))?;
            exchange(&mut s)
        }),
        Address::Tcp { host, port } => {
            use std::net::ToSocketAddrs;
            (host.as_str(), *port)
                .to_socket_addrs()
                .and_then(|mut addrs| {
                    addrs.next().ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "the host name has no address")
                    })
                })
                .and_then(|addr| TcpStream::connect_timeout(&addr, conn.connect_timeout))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(wait))?;
                    exchange(&mut s)
                })
        }
        #[allow(unreachable_patterns)]
        _ => return Peer::Unreachable("unsupported address kind".into()),
    };
    match result {
        Ok(answer) => classify(&answer),
        Err(e) => Peer::Unreachable(e.to_string()),
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The findings of the peer probe; `false` when nothing more can be
/// checked.
fn check_peer(
    address: &Address,
    args: &DoctorArgs,
    client: &Client,
    out: &mut Vec<Finding>,
) -> bool {
    let listen_line = match address {
        Address::Unix(path) => format!("listen = {}", path.display()),
        other => format!("listen = {other}"),
    };
    match probe_peer(address, &args.conn) {
        Peer::Unreachable(why) => {
            out.push(
                finding(
                    "fastcgi",
                    Level::Fail,
                    format!("nothing answers at {address}: {why}; is php-fpm running, and does a pool listen there?"),
                )
                .fix(listen_line),
            );
            false
        }
        Peer::Http(line) => {
            out.push(
                finding(
                    "fastcgi",
                    Level::Fail,
                    format!("{address} is an HTTP server (it answered {line:?}), not FastCGI: give the address php-fpm listens on (nginx's fastcgi_pass), not the web server's"),
                )
                .fix(format!("{listen_line}   (in the php-fpm pool; and fastcgi_pass {address} in nginx only if it is php-fpm's)")),
            );
            false
        }
        Peer::Other(answer) => {
            out.push(finding(
                "fastcgi",
                Level::Fail,
                format!(
                    "{address} is not a FastCGI server: it answered FCGI_GET_VALUES with {answer}"
                ),
            ));
            false
        }
        Peer::Silent => {
            out.push(finding(
                "fastcgi",
                Level::Warn,
                format!("{address} accepts connections but did not answer FCGI_GET_VALUES (fcgiwrap and uWSGI never do; php-fpm does): checking with a request"),
            ));
            true
        }
        Peer::FastCgi => {
            let values = match client.get_values(&VALUE_NAMES) {
                Ok(values) if values.is_empty() => "no values".to_string(),
                Ok(values) => values
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => format!("values unreadable: {e}"),
            };
            out.push(finding(
                "fastcgi",
                Level::Ok,
                format!("{address} speaks FastCGI; FCGI_GET_VALUES answered {values}"),
            ));
            true
        }
    }
}

fn check_ping(args: &DoctorArgs, client: &Client, out: &mut Vec<Finding>) {
    match fpm_status::ping(client, &args.pages.ping_path, &args.pages.expect, false) {
        Ok(took) => out.push(finding(
            "ping",
            Level::Ok,
            format!(
                "{} answers {:?} in {:.1} ms",
                args.pages.ping_path,
                args.pages.expect,
                took.as_secs_f64() * 1000.0
            ),
        )),
        Err(FetchError::Page(PageError::WrongAnswer { answer })) if answer.starts_with("200 ") => {
            out.push(
                finding(
                    "ping",
                    Level::Fail,
                    format!(
                        "{} answered {answer}, not {:?}",
                        args.pages.ping_path, args.pages.expect
                    ),
                )
                .fix(format!("ping.response = {}", args.pages.expect)),
            )
        }
        Err(FetchError::Page(err)) => out.push(
            finding(
                "ping",
                Level::Fail,
                format!("no ping page at {}: it {err}", args.pages.ping_path),
            )
            .fix(format!("ping.path = {}", args.pages.ping_path)),
        ),
        Err(FetchError::Request(err)) => out.push(finding(
            "ping",
            Level::Fail,
            format!(
                "the ping request failed: {}",
                Failure::from_fcgi(&err).message
            ),
        )),
    }
}

fn check_status(args: &DoctorArgs, client: &Client, out: &mut Vec<Finding>) -> Option<PoolStatus> {
    match fpm_status::fetch(client, &args.pages.status_path, true, false) {
        Ok(page) => {
            let s = &page.status;
            out.push(finding(
                "status",
                Level::Ok,
                format!(
                    "{} answers: pool {}, pm = {}, {} workers ({} idle, {} active), up {} s",
                    args.pages.status_path,
                    s.pool,
                    s.process_manager,
                    s.total_processes,
                    s.idle_processes,
                    s.active_processes,
                    s.start_since
                ),
            ));
            Some(page.status)
        }
        Err(FetchError::Page(err)) => {
            out.push(
                finding(
                    "status",
                    Level::Fail,
                    format!("no status page at {}: it {err}", args.pages.status_path),
                )
                .fix(format!("pm.status_path = {}", args.pages.status_path)),
            );
            None
        }
        Err(FetchError::Request(err)) => {
            out.push(finding(
                "status",
                Level::Fail,
                format!(
                    "the status request failed: {}",
                    Failure::from_fcgi(&err).message
                ),
            ));
            None
        }
    }
}

/// The pool's figures against its settings.
pub fn check_pool(status: &PoolStatus, status_path: &str, unix: bool, out: &mut Vec<Finding>) {
    let more = (status.total_processes.max(status.max_active_processes) * 3 / 2)
        .max(status.total_processes + 1);
    if status.max_children_reached > 0 {
        out.push(
            finding(
                "pool",
                Level::Warn,
                format!(
                    "pm.max_children was reached {} times since the pool started ({} s ago): requests waited for a worker",
                    status.max_children_reached, status.start_since
                ),
            )
            .fix(format!("pm.max_children = {more}   (if memory allows: each worker can take up to memory_limit)")),
        );
    }
    if status.max_listen_queue > 0 {
        out.push(
            finding(
                "pool",
                Level::Warn,
                format!(
                    "up to {} connections waited for a free worker (max listen queue); {} wait now",
                    status.max_listen_queue, status.listen_queue
                ),
            )
            .fix(format!("pm.max_children = {more}   (or faster scripts)")),
        );
    }
    if unix || status.listen_queue_len == 0 {
        out.push(finding(
            "pool",
            Level::Info,
            "a Unix socket: php-fpm cannot report its listen queue (listen queue, listen queue len are 0)",
        ));
    } else if status.listen_queue_len < SMALL_BACKLOG {
        out.push(
            finding(
                "pool",
                Level::Warn,
                format!(
                    "the listen backlog is {}: a burst of more connections than workers plus {} is refused",
                    status.listen_queue_len, status.listen_queue_len
                ),
            )
            .fix("listen.backlog = 511   (and sysctl net.core.somaxconn at least as large)"),
        );
    } else {
        out.push(finding(
            "pool",
            Level::Ok,
            format!(
                "listen backlog {} (listen queue len)",
                status.listen_queue_len
            ),
        ));
    }
    let own = status
        .processes
        .iter()
        .any(|p| p.state == "Running" && p.request_uri.starts_with(&format!("{status_path}?")));
    if own {
        out.push(
            finding(
                "pool",
                Level::Info,
                "the status page is answered by one of the pool's workers: when all are busy, monitoring and health checks time out",
            )
            .fix("pm.status_listen = 127.0.0.1:9001   (a listener of its own for ping and status; php-fpm 8.0+)"),
        );
    }
    if status.is_static() {
        out.push(finding(
            "pool",
            Level::Ok,
            format!(
                "pm = static: pm.max_children = {} workers, all started",
                status.total_processes
            ),
        ));
    } else {
        out.push(finding(
            "pool",
            Level::Info,
            format!(
                "pm = {}: {} workers now, at most {} active at once so far (pm.max_children is not on the status page)",
                status.process_manager, status.total_processes, status.max_active_processes
            ),
        ));
    }
}

/// The probe script: checks what arrived against the lengths in its params
/// and answers one JSON object.
const PROBE: &str = r#"<?php
header('Content-Type: application/json');
$in = file_get_contents('php://input');
$body_len = (int) ($_SERVER['FCGI_DOCTOR_BODY_LEN'] ?? 0);
$big_len = (int) ($_SERVER['FCGI_DOCTOR_BIG_LEN'] ?? 0);
$seen = 0;
foreach ($_SERVER as $k => $v) {
    if (strncmp($k, 'FCGI_DOCTOR_P_', 14) === 0) { $seen++; }
}
$user = function_exists('posix_geteuid') ? (posix_getpwuid(posix_geteuid())['name'] ?? '') : '';
echo json_encode([
    'fcgi_doctor' => true,
    'pid' => getmypid(),
    'php' => PHP_VERSION,
    'user' => $user,
    'body_ok' => $in === str_repeat('fcgi-doctor-body', intdiv($body_len, 16)),
    'body_len' => strlen($in),
    'big_ok' => ($_SERVER['FCGI_DOCTOR_BIG'] ?? '') === str_repeat('x', $big_len),
    'params_seen' => $seen,
]);
"#;

/// A probe file under the root, removed on drop.
struct ProbeFile {
    path: PathBuf,
}

impl ProbeFile {
    fn write(root: &Path, suffix: &str) -> Result<ProbeFile, String> {
        let file = tempfile::Builder::new()
            .prefix("fcgi-doctor-")
            .suffix(suffix)
            .rand_bytes(16)
            .tempfile_in(root)
            .map_err(|e| format!("cannot write a probe file in {}: {e}", root.display()))?;
        let (_, path) = file.keep().map_err(|e| e.to_string())?;
        let probe = ProbeFile { path };
        fs::write(&probe.path, PROBE)
            .and_then(|()| fs::set_permissions(&probe.path, Permissions::from_mode(0o644)))
            .map_err(|e| format!("cannot write {}: {e}", probe.path.display()))?;
        Ok(probe)
    }
}

impl Drop for ProbeFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn probe_request(path: &Path, root: &Path) -> Request {
    let filename = path.display().to_string();
    let name = path
        .strip_prefix(root)
        .map(|rest| format!("/{}", rest.display()))
        .unwrap_or_else(|_| filename.clone());
    Request::get(&filename)
        .param("SCRIPT_NAME", &name)
        .param("REQUEST_URI", &name)
        .param("DOCUMENT_ROOT", root.display().to_string())
        .param("SERVER_SOFTWARE", crate::cgi::SERVER_SOFTWARE)
        .param("REMOTE_ADDR", "127.0.0.1")
        .param("SERVER_NAME", "localhost")
}

/// The probe's JSON, when the answer is one.
fn probe_answer(response: &Response) -> Option<Value> {
    let value: Value = serde_json::from_slice(&response.body).ok()?;
    (value["fcgi_doctor"] == true).then_some(value)
}

fn stderr_has(response: &Response, needle: &str) -> bool {
    String::from_utf8_lossy(&response.stderr).contains(needle)
}

/// The allowed paths php reports in an open_basedir warning.
fn open_basedir_paths(stderr: &str) -> Option<String> {
    let start = stderr.find("allowed path(s): (")? + "allowed path(s): (".len();
    let end = stderr[start..].find(')')? + start;
    Some(stderr[start..end].to_string())
}

/// The directories on the way to `path` that others cannot search.
fn unsearchable_dirs(path: &Path) -> Vec<(PathBuf, u32)> {
    path.ancestors()
        .skip(1)
        .filter_map(|dir| {
            let mode = fs::metadata(dir).ok()?.permissions().mode() & 0o777;
            (mode & 0o001 == 0).then(|| (dir.to_path_buf(), mode))
        })
        .collect()
}

/// Explains a probe that did not run; `false` stops the script checks.
fn explain_probe_failure(
    client: &Client,
    probe: &ProbeFile,
    root: &Path,
    response: &Response,
    out: &mut Vec<Finding>,
) {
    let stderr = String::from_utf8_lossy(&response.stderr).into_owned();
    let path = probe.path.display().to_string();
    if let Some(allowed) = open_basedir_paths(&stderr) {
        out.push(
            finding(
                "script",
                Level::Fail,
                format!("open_basedir ({allowed}) does not include {}: PHP refuses to open the script (\"No input file specified.\")", root.display()),
            )
            .fix(format!("php_admin_value[open_basedir] = {allowed}:{}", root.display())),
        );
        return;
    }
    if stderr.contains("Unable to open primary script") {
        let owner = fs::metadata(&probe.path)
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .ok();
        out.push(
            finding(
                "script",
                Level::Fail,
                format!("the pool's user cannot read the script: {}", stderr.trim()),
            )
            .fix(format!(
                "chmod o+r FILES, or run the pool as their owner: user = {}",
                owner.map_or("OWNER".into(), |uid| format!("(the user of uid {uid})"))
            )),
        );
        return;
    }
    if stderr.contains("security.limit_extensions") {
        out.push(
            finding(
                "script",
                Level::Fail,
                format!("a .php script is refused: {}", stderr.trim()),
            )
            .fix("security.limit_extensions = .php"),
        );
        return;
    }
    if stderr.contains("Primary script unknown") || response.status == 404 {
        // A chroot: the same file under a shorter path runs.
        let text = path.as_str();
        for (i, _) in text.match_indices('/').skip(1) {
            let inner = &text[i..];
            let request = Request::get(inner).param("DOCUMENT_ROOT", "/");
            if let Ok(answer) = client.execute(request) {
                if probe_answer(&answer).is_some() {
                    let prefix = &text[..i];
                    out.push(
                        finding(
                            "script",
                            Level::Fail,
                            format!("\"Primary script unknown\": the pool is chrooted to {prefix}; it finds the script as {inner}, so SCRIPT_FILENAME must be the path inside the chroot"),
                        )
                        .fix(format!("chroot = {prefix} is set in the pool: have the web server send paths without it (fastcgi_param SCRIPT_FILENAME {inner}); fcgi eval: --chroot-prefix {prefix}")),
                    );
                    return;
                }
            }
        }
        let dirs = unsearchable_dirs(&probe.path);
        if let Some((dir, mode)) = dirs.first() {
            out.push(
                finding(
                    "script",
                    Level::Fail,
                    format!("\"Primary script unknown\": the directory {} (mode {mode:o}) cannot be searched by other users, so the pool's user cannot reach {path}", dir.display()),
                )
                .fix(format!("chmod o+x {}   (or run the pool as the directory's owner: user = ...)", dir.display())),
            );
            return;
        }
        out.push(
            finding(
                "script",
                Level::Fail,
                format!("\"Primary script unknown\": php-fpm cannot find {path}, which exists here: the pool sees another filesystem (another host or container, or systemd's PrivateTmp) or runs in a chroot"),
            )
            .fix("give --root the document root as the pool sees it; check chroot = and the service's PrivateTmp/mounts"),
        );
        return;
    }
    out.push(finding(
        "script",
        Level::Fail,
        format!(
            "the probe script answered {} {} {} {}",
            response.status,
            response.reason,
            fpm_status::snippet(&response.body),
            fpm_status::snippet(&response.stderr)
        ),
    ));
}

fn check_scripts(args: &DoctorArgs, client: &Client, address: &Address, out: &mut Vec<Finding>) {
    let Some(root) = &args.root else {
        out.push(finding(
            "script",
            Level::Skip,
            "give --root DIR (the pool's document root, writable here) to check that scripts run, bodies, params and keep-alive",
        ));
        return;
    };
    let root = match fs::canonicalize(root) {
        Ok(root) => root,
        Err(e) => {
            out.push(finding(
                "script",
                Level::Fail,
                format!("--root {}: {e}", root.display()),
            ));
            return;
        }
    };
    let probe = match ProbeFile::write(&root, ".php") {
        Ok(probe) => probe,
        Err(e) => {
            out.push(finding("script", Level::Fail, e));
            return;
        }
    };
    let response = match client.execute(probe_request(&probe.path, &root)) {
        Ok(r) => r,
        Err(e) => {
            out.push(finding(
                "script",
                Level::Fail,
                format!(
                    "the probe request failed: {}",
                    Failure::from_fcgi(&e).message
                ),
            ));
            return;
        }
    };
    let Some(answer) = probe_answer(&response) else {
        explain_probe_failure(client, &probe, &root, &response, out);
        return;
    };
    let user = answer["user"].as_str().filter(|u| !u.is_empty());
    out.push(finding(
        "script",
        Level::Ok,
        format!(
            "a script under {} runs (PHP {}{})",
            root.display(),
            answer["php"].as_str().unwrap_or("?"),
            user.map_or(String::new(), |u| format!(", as user {u}"))
        ),
    ));
    check_extensions(client, &root, out);
    check_body_and_params(client, &probe, &root, out);
    check_keep_alive(args, address, &probe, &root, out);
}

fn check_extensions(client: &Client, root: &Path, out: &mut Vec<Finding>) {
    let Ok(txt) = ProbeFile::write(root, ".txt") else {
        return;
    };
    match client.execute(probe_request(&txt.path, root)) {
        Ok(r) if probe_answer(&r).is_some() => out.push(
            finding(
                "limit_extensions",
                Level::Warn,
                "a .txt file ran as PHP: any file can, an uploaded image with code in it too",
            )
            .fix("security.limit_extensions = .php"),
        ),
        Ok(r) if stderr_has(&r, "security.limit_extensions") => out.push(
            finding(
                "limit_extensions",
                Level::Ok,
                "a non-.php file (.txt) is refused (\"Access denied.\"); a script with another extension needs it listed",
            )
            .fix("security.limit_extensions = .php .phtml   (only if such scripts must run)"),
        ),
        Ok(r) => out.push(finding(
            "limit_extensions",
            Level::Info,
            format!("a .txt file answered {} {}", r.status, r.reason),
        )),
        Err(e) => out.push(finding(
            "limit_extensions",
            Level::Fail,
            format!("the request failed: {}", Failure::from_fcgi(&e).message),
        )),
    }
}

fn check_body_and_params(client: &Client, probe: &ProbeFile, root: &Path, out: &mut Vec<Finding>) {
    let body = "fcgi-doctor-body".repeat(BODY_BYTES / 16);
    let request = probe_request(&probe.path, root)
        .param("REQUEST_METHOD", "POST")
        .param("CONTENT_TYPE", "application/octet-stream")
        .param("FCGI_DOCTOR_BODY_LEN", body.len().to_string())
        .body(body.clone().into_bytes());
    match client.execute(request).map(|r| probe_answer(&r)) {
        Ok(Some(a)) if a["body_ok"] == true => out.push(finding(
            "body",
            Level::Ok,
            format!("a {} KiB body arrives whole (over one 64 KiB record)", body.len() / 1024),
        )),
        Ok(Some(a)) => out.push(
            finding(
                "body",
                Level::Fail,
                format!("a {}-byte body arrived as {} bytes", body.len(), a["body_len"]),
            )
            .fix("php_admin_value[post_max_size] = 16M   (and check what sits between: a proxy limit)"),
        ),
        Ok(None) => out.push(finding("body", Level::Fail, "the probe did not answer a POST")),
        Err(e) => out.push(finding(
            "body",
            Level::Fail,
            format!("a {}-byte body failed: {}", body.len(), Failure::from_fcgi(&e).message),
        )),
    }
    let mut request = probe_request(&probe.path, root)
        .param("FCGI_DOCTOR_BIG", "x".repeat(BIG_PARAM_BYTES))
        .param("FCGI_DOCTOR_BIG_LEN", BIG_PARAM_BYTES.to_string());
    for i in 0..MANY_PARAMS {
        request = request.param(format!("FCGI_DOCTOR_P_{i}"), "v");
    }
    match client.execute(request).map(|r| probe_answer(&r)) {
        Ok(Some(a)) if a["big_ok"] == true && a["params_seen"] == MANY_PARAMS => out.push(finding(
            "params",
            Level::Ok,
            format!(
                "a {} KiB param and {MANY_PARAMS} more arrive whole",
                BIG_PARAM_BYTES / 1024
            ),
        )),
        Ok(Some(a)) => out.push(finding(
            "params",
            Level::Fail,
            format!(
                "params arrived damaged: the large one {}, {} of {MANY_PARAMS} small ones",
                if a["big_ok"] == true { "whole" } else { "cut" },
                a["params_seen"]
            ),
        )),
        Ok(None) => out.push(finding(
            "params",
            Level::Fail,
            "the probe did not answer with large params",
        )),
        Err(e) => out.push(finding(
            "params",
            Level::Fail,
            format!("large params failed: {}", Failure::from_fcgi(&e).message),
        )),
    }
}

fn check_keep_alive(
    args: &DoctorArgs,
    address: &Address,
    probe: &ProbeFile,
    root: &Path,
    out: &mut Vec<Finding>,
) {
    let config = Config::default()
        .keep_alive(true)
        .connect_timeout(args.conn.connect_timeout)
        .deadline(args.conn.timeout)
        .idle_timeout(args.conn.timeout);
    let Ok(kept) = Client::with_config(address.clone(), config) else {
        return;
    };
    let mut pids: Vec<u64> = Vec::new();
    for i in 0..args.keepalive_requests {
        match kept
            .execute(probe_request(&probe.path, root))
            .map(|r| probe_answer(&r))
        {
            Ok(Some(a)) => pids.push(a["pid"].as_u64().unwrap_or(0)),
            Ok(None) => {
                out.push(finding(
                    "keep_alive",
                    Level::Fail,
                    format!(
                        "request {} on a kept connection was not answered by the probe",
                        i + 1
                    ),
                ));
                return;
            }
            Err(e) => {
                out.push(
                    finding(
                        "keep_alive",
                        Level::Fail,
                        format!(
                            "request {} on a kept connection failed: {}",
                            i + 1,
                            Failure::from_fcgi(&e).message
                        ),
                    )
                    .fix("clients must retry a kept connection the worker closed (pm.max_requests); or pm.max_requests = 0"),
                );
                return;
            }
        }
    }
    let first_change = pids.windows(2).position(|w| w[0] != w[1]);
    let message = match first_change {
        Some(i) => format!(
            "{} requests on one kept connection all answered; the worker closed it after {} and was replaced (pm.max_requests), and the client went on over a new connection",
            pids.len(),
            i + 1
        ),
        None => format!(
            "{} requests on one kept connection all answered by one worker",
            pids.len()
        ),
    };
    out.push(finding("keep_alive", Level::Ok, message));
}

/// `fcgi doctor`.
pub fn run(args: &DoctorArgs) -> Result<(), Failure> {
    let (target, client) = connect(args.address.as_deref(), &args.conn)?;
    let address = target.address.clone();
    let mut findings = Vec::new();
    if check_peer(&address, args, &client, &mut findings) {
        check_ping(args, &client, &mut findings);
        if let Some(status) = check_status(args, &client, &mut findings) {
            check_pool(
                &status,
                &args.pages.status_path,
                matches!(address, Address::Unix(_)),
                &mut findings,
            );
        }
        check_scripts(args, &client, &address, &mut findings);
    }
    let problems = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warnings = findings.iter().filter(|f| f.level == Level::Warn).count();
    let text = if args.json {
        let list: Vec<Value> = findings
            .iter()
            .map(|f| json!({"check": f.check, "level": f.level.as_str().to_lowercase(), "message": f.message, "fix": f.fix}))
            .collect();
        format!(
            "{}\n",
            json!({"address": address.to_string(), "problems": problems, "warnings": warnings, "findings": list})
        )
    } else {
        render(&address.to_string(), &findings, problems, warnings)
    };
    write_stdout(text.as_bytes(), "the findings to standard output")?;
    if problems > 0 {
        return Err(Failure::new(
            OTHER,
            format!("{problems} problem(s) found at {address}; the fix for each is above"),
        ));
    }
    Ok(())
}

/// The findings as text: one line each, `fix:` lines under them.
pub fn render(address: &str, findings: &[Finding], problems: usize, warnings: usize) -> String {
    let mut out = format!("fcgi doctor {address}\n");
    for f in findings {
        out.push_str(&format!(
            "  {:<5} {:<17} {}\n",
            f.level.as_str(),
            f.check,
            f.message
        ));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("        fix: {fix}\n"));
        }
    }
    out.push_str(&format!("{problems} problem(s), {warnings} warning(s)\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_the_peer() {
        assert_eq!(classify(b""), Peer::Silent);
        assert_eq!(
            classify(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            Peer::Http("HTTP/1.1 400 Bad Request".into())
        );
        assert_eq!(classify(&[1, 10, 0, 0, 0, 18, 6, 0]), Peer::FastCgi);
        assert!(matches!(classify(b"SSH-2.0-OpenSSH"), Peer::Other(_)));
    }

    #[test]
    fn the_get_values_record_is_well_formed() {
        let record = get_values_record();
        assert_eq!(&record[..2], &[1, 9]);
        let len = usize::from(u16::from_be_bytes([record[4], record[5]]));
        assert_eq!(record.len(), 8 + len);
    }

    #[test]
    fn open_basedir_paths_are_read_from_the_warning() {
        let stderr = "PHP Warning:  PHP Request Startup: open_basedir restriction in effect. File(/x.php) is not within the allowed path(s): (/srv/a:/tmp) in Unknown on line 0";
        assert_eq!(open_basedir_paths(stderr).as_deref(), Some("/srv/a:/tmp"));
        assert_eq!(open_basedir_paths("nothing"), None);
    }

    #[test]
    fn a_pool_that_reached_its_limit_gets_a_larger_max_children() {
        let (mut status, _) =
            fpm_status::parse_page(200, "OK", fpm_status::tests::SAMPLE.as_bytes()).unwrap();
        status.max_children_reached = 3;
        status.listen_queue_len = 16;
        let mut out = Vec::new();
        check_pool(&status, "/status", false, &mut out);
        let reached = out
            .iter()
            .find(|f| f.message.contains("reached 3 times"))
            .unwrap();
        assert_eq!(reached.level, Level::Warn);
        assert!(reached
            .fix
            .as_deref()
            .unwrap()
            .starts_with("pm.max_children = 3"));
        let backlog = out
            .iter()
            .find(|f| f.message.contains("backlog is 16"))
            .unwrap();
        assert!(backlog
            .fix
            .as_deref()
            .unwrap()
            .starts_with("listen.backlog = 511"));
        // SAMPLE has max listen queue 3 and the status request running.
        assert!(out
            .iter()
            .any(|f| f.message.contains("up to 3 connections waited")));
        assert!(out.iter().any(|f| f
            .fix
            .as_deref()
            .is_some_and(|x| x.starts_with("pm.status_listen"))));
    }
}
