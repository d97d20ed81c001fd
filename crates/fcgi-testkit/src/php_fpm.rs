//! [`PhpFpm`]: a private php-fpm per test.
//!
//! Every fixture runs `php-fpm -F -R -O -y CONF -d output_buffering=0` in a
//! fresh temporary directory with two pools:
//!
//! * `unix`: listens on `TMP/fpm.sock`,
//! * `tcp`: listens on `127.0.0.1:PORT` (a free port found by binding port 0).
//!
//! Both pools use `pm = static`, `clear_env = no`, `catch_workers_output = yes`,
//! the same `pm.max_children`, optional `pm.max_requests`, `pm.status_path`
//! and `ping.path`, and no `error_log` of their own, so PHP messages travel on
//! the FastCGI STDERR stream. Defaults set with `php_admin_value`:
//! `display_errors=Off`, `log_errors=On`, `error_reporting=E_ALL`,
//! `opcache.enable=0` (no stale scripts); [`PhpFpmBuilder::ini`] overrides them.
//!
//! The document root (`TMP/www`) holds every script of [`crate::scripts`] plus
//! the ones added with [`PhpFpmBuilder::script`]. Pools configured wrong on
//! purpose (for `fcgi doctor` and friends) come from the builder: no ping or
//! status page (an empty path), `dynamic` or `ondemand` process managers,
//! workers running as another user, a `pm.status_listen` of their own, and
//! any directive through [`PhpFpmBuilder::pool_config`]. The master's log (its
//! `error_log` is its own stderr) is captured, see [`PhpFpm::server_log`], and
//! printed when a fixture is dropped during a panic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::scripts;

/// Environment variable naming the php-fpm binary to use.
pub const ENV_PHP_FPM: &str = "FCGI_TEST_PHP_FPM";

/// How long startup may take before the fixture panics.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The master's log line announcing that every worker is forked.
const READY_LINE: &str = "ready to handle connections";

/// How long [`PhpFpm::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

const STATUS_LISTEN_OFF: &str =
    "the fixture has no status listener: build it with .status_listen(true)";

const NOT_FOUND: &str = "php-fpm not found: install it with `apt-get install -y --no-install-recommends php8.2-fpm php8.2-cli` (or `php-fpm`), or set FCGI_TEST_PHP_FPM";

/// Finds the php-fpm binary: `$FCGI_TEST_PHP_FPM`, then `php-fpm8.2` and
/// `php-fpm` on `PATH` (and in `/usr/sbin`, `/usr/local/sbin`), then any
/// `/usr/sbin/php-fpm*` (highest version first).
///
/// # Panics
/// With installation instructions when none is found.
pub fn find_php_fpm() -> PathBuf {
    try_find_php_fpm().expect(NOT_FOUND)
}

/// Like [`find_php_fpm`] but `None` instead of a panic.
pub fn try_find_php_fpm() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_PHP_FPM) {
        if !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/usr/local/sbin".into());
    for name in ["php-fpm8.2", "php-fpm"] {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/sbin")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("php-fpm"))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// Builder for [`PhpFpm`]; see [`PhpFpm::builder`].
#[derive(Debug, Clone)]
pub struct PhpFpmBuilder {
    max_children: usize,
    max_requests: Option<u32>,
    status_path: String,
    ping_path: String,
    ini: BTreeMap<String, String>,
    pool_config: Vec<(String, String)>,
    scripts: Vec<(String, Vec<u8>)>,
    env: Vec<(String, String)>,
    process_manager: String,
    status_listen: bool,
    user: Option<String>,
    chroot: bool,
}

impl Default for PhpFpmBuilder {
    fn default() -> Self {
        let mut ini = BTreeMap::new();
        for (k, v) in [
            ("display_errors", "Off"),
            ("log_errors", "On"),
            ("error_reporting", "E_ALL"),
            ("opcache.enable", "0"),
        ] {
            ini.insert(k.to_string(), v.to_string());
        }
        PhpFpmBuilder {
            max_children: 4,
            max_requests: None,
            status_path: "/status".into(),
            ping_path: "/ping".into(),
            ini,
            pool_config: Vec::new(),
            scripts: Vec::new(),
            env: Vec::new(),
            process_manager: "static".into(),
            status_listen: false,
            user: None,
            chroot: false,
        }
    }
}

impl PhpFpmBuilder {
    /// `pm.max_children` of each pool (default 4).
    pub fn max_children(mut self, n: usize) -> Self {
        self.max_children = n;
        self
    }

    /// `pm.max_requests` of each pool (default: unset, unlimited).
    pub fn max_requests(mut self, n: u32) -> Self {
        self.max_requests = Some(n);
        self
    }

    /// `pm` of each pool: `static` (the default), `dynamic` (one worker
    /// started, one to half of `pm.max_children` spare) or `ondemand`
    /// (none until a request comes; idle ones end after 10 s).
    pub fn process_manager(mut self, pm: &str) -> Self {
        self.process_manager = pm.into();
        self
    }

    /// Gives each pool a `pm.status_listen` of its own (php-fpm 8.0+): the
    /// TCP pool on another free port, the Unix pool on `TMP/status.sock`;
    /// see [`PhpFpm::tcp_status_address`] and [`PhpFpm::unix_status_address`].
    pub fn status_listen(mut self, on: bool) -> Self {
        self.status_listen = on;
        self
    }

    /// Runs the workers as `user` (`user = ...` in each pool; the master
    /// must run as root). The fixture's directories are then made
    /// readable and searchable by others (0755) so the workers can reach
    /// the scripts.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Chroots each pool to the document root (`chroot = TMP/www`): scripts
    /// are then found only by their path inside it (`/hello.php`).
    pub fn chroot_to_doc_root(mut self, on: bool) -> Self {
        self.chroot = on;
        self
    }

    /// `pm.status_path` (default `/status`; empty: not configured).
    pub fn status_path(mut self, path: &str) -> Self {
        self.status_path = path.into();
        self
    }

    /// `ping.path` (default `/ping`; empty: not configured).
    pub fn ping_path(mut self, path: &str) -> Self {
        self.ping_path = path.into();
        self
    }

    /// A `php_admin_value[name] = value` for both pools (overrides the defaults).
    pub fn ini(mut self, name: &str, value: &str) -> Self {
        self.ini.insert(name.into(), value.into());
        self
    }

    /// Any other pool directive, written verbatim as `key = value` in both pools.
    pub fn pool_config(mut self, key: &str, value: &str) -> Self {
        self.pool_config.push((key.into(), value.into()));
        self
    }

    /// An extra script `name` (may contain `/`) written into the document root
    /// before start; it replaces an embedded script of the same name.
    pub fn script(mut self, name: &str, content: impl AsRef<[u8]>) -> Self {
        self.scripts.push((name.into(), content.as_ref().to_vec()));
        self
    }

    /// An environment variable for php-fpm (workers see it: `clear_env = no`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts php-fpm and waits until both listeners accept and the master has
    /// logged `ready to handle connections` (all workers forked).
    ///
    /// # Panics
    /// If php-fpm is not installed, exits early or is not ready within
    /// [`START_TIMEOUT`]; the message carries its log.
    pub fn start(self) -> PhpFpm {
        let binary = find_php_fpm();
        let mut last_log = String::new();
        // A free port can be taken by someone else between our probe and
        // php-fpm's bind: retry with a new port in that case.
        for _ in 0..5 {
            match self.try_start(&binary) {
                Ok(fpm) => return fpm,
                Err(StartError::AddrInUse(log)) => last_log = log,
                Err(StartError::Fatal(msg)) => panic!("{msg}"),
            }
        }
        panic!("php-fpm could not bind a free port after 5 attempts; log:\n{last_log}");
    }

    fn config(&self, dir: &Path, port: u16, sock: &Path, status_port: u16) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "[global]");
        let _ = writeln!(c, "pid = {}", dir.join("php-fpm.pid").display());
        let _ = writeln!(c, "error_log = /proc/self/fd/2");
        let _ = writeln!(c, "daemonize = no");
        let _ = writeln!(c, "log_level = notice");
        for (name, listen) in [
            ("tcp", format!("127.0.0.1:{port}")),
            ("unix", sock.display().to_string()),
        ] {
            let _ = writeln!(c, "\n[{name}]");
            let _ = writeln!(c, "listen = {listen}");
            if name == "unix" {
                let _ = writeln!(c, "listen.mode = 0666");
            }
            let _ = writeln!(c, "pm = {}", self.process_manager);
            let _ = writeln!(c, "pm.max_children = {}", self.max_children);
            match self.process_manager.as_str() {
                "dynamic" => {
                    let spare = (self.max_children / 2).max(1);
                    let _ = writeln!(c, "pm.start_servers = 1");
                    let _ = writeln!(c, "pm.min_spare_servers = 1");
                    let _ = writeln!(c, "pm.max_spare_servers = {spare}");
                }
                "ondemand" => {
                    let _ = writeln!(c, "pm.process_idle_timeout = 10s");
                }
                _ => {}
            }
            if self.status_listen {
                let listen = if name == "unix" {
                    dir.join("status.sock").display().to_string()
                } else {
                    format!("127.0.0.1:{status_port}")
                };
                let _ = writeln!(c, "pm.status_listen = {listen}");
            }
            if let Some(user) = &self.user {
                let _ = writeln!(c, "user = {user}");
            }
            if self.chroot {
                let _ = writeln!(c, "chroot = {}", dir.join("www").display());
            }
            if let Some(n) = self.max_requests {
                let _ = writeln!(c, "pm.max_requests = {n}");
            }
            if !self.status_path.is_empty() {
                let _ = writeln!(c, "pm.status_path = {}", self.status_path);
            }
            if !self.ping_path.is_empty() {
                let _ = writeln!(c, "ping.path = {}", self.ping_path);
            }
            let _ = writeln!(c, "clear_env = no");
            let _ = writeln!(c, "catch_workers_output = yes");
            let _ = writeln!(c, "decorate_workers_output = no");
            for (k, v) in &self.ini {
                let _ = writeln!(c, "php_admin_value[{k}] = {v}");
            }
            for (k, v) in &self.pool_config {
                let _ = writeln!(c, "{k} = {v}");
            }
        }
        c
    }

    fn try_start(&self, binary: &Path) -> Result<PhpFpm, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("fcgi-fpm-")
            .tempdir()
            .expect("create a temporary directory for php-fpm");
        let root = dir.path().to_path_buf();
        let doc_root = root.join("www");
        fs::create_dir(&doc_root).expect("create the document root");
        for (name, src) in scripts::ALL {
            fs::write(doc_root.join(name), src).expect("write an embedded PHP script");
        }
        for (name, content) in &self.scripts {
            write_file(&doc_root, name, content);
        }
        if self.user.is_some() {
            use std::os::unix::fs::PermissionsExt;
            for d in [&root, &doc_root] {
                fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                    .expect("make the fixture's directories searchable");
            }
        }
        let sock = root.join("fpm.sock");
        let (port, status_port) = (free_port(), free_port());
        let conf = root.join("php-fpm.conf");
        fs::write(&conf, self.config(&root, port, &sock, status_port)).expect("write php-fpm.conf");

        let log = Arc::new(Mutex::new(Vec::new()));
        let child = spawn_master(binary, &conf, &root, &self.env, &log)?;
        let tcp_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let status_addrs = self.status_listen.then(|| {
            (
                SocketAddr::from(([127, 0, 0, 1], status_port)),
                root.join("status.sock"),
            )
        });
        let fpm = PhpFpm {
            status_addrs,
            child: Mutex::new(Some(child)),
            dir: Mutex::new(Some(dir)),
            root,
            doc_root,
            sock,
            tcp_addr,
            log,
            binary: binary.to_path_buf(),
            conf,
            env: self.env.clone(),
        };
        fpm.wait_ready(0)?;
        Ok(fpm)
    }
}

/// A TCP port that was free a moment ago (php-fpm binds it; a clash is
/// retried by [`PhpFpmBuilder::start`]).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    l.local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// Starts a php-fpm master in the foreground for `conf`, its output captured
/// into `log`.
fn spawn_master(
    binary: &Path,
    conf: &Path,
    root: &Path,
    env: &[(String, String)],
    log: &Arc<Mutex<Vec<u8>>>,
) -> Result<Child, StartError> {
    let mut cmd = Command::new(binary);
    cmd.arg("-F")
        .arg("-R")
        .arg("-O")
        .arg("-y")
        .arg(conf)
        .arg("-d")
        .arg("output_buffering=0")
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| {
        StartError::Fatal(format!(
            "{NOT_FOUND}\n(spawning {} failed: {e})",
            binary.display()
        ))
    })?;
    if let Some(out) = child.stdout.take() {
        capture(out, Arc::clone(log));
    }
    if let Some(err) = child.stderr.take() {
        capture(err, Arc::clone(log));
    }
    Ok(child)
}

impl PhpFpm {
    /// How many times the master has logged that it is ready.
    fn ready_count(&self) -> usize {
        self.server_log().matches(READY_LINE).count()
    }

    /// Waits until both listeners accept and the master has logged its
    /// readiness more than `ready_before` times.
    fn wait_ready(&self, ready_before: usize) -> Result<(), StartError> {
        let fpm = self;
        let binary = &self.binary;
        let tcp_addr = self.tcp_addr;
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut tcp_ok, mut unix_ok) = (false, false);
        loop {
            tcp_ok = tcp_ok || TcpStream::connect(tcp_addr).is_ok();
            unix_ok = unix_ok || UnixStream::connect(&fpm.sock).is_ok();
            // The listeners accept as soon as they are bound; the workers are
            // forked afterwards, and the master then logs this line.
            if tcp_ok && unix_ok && fpm.ready_count() > ready_before {
                return Ok(());
            }
            let exited = fpm
                .lock_child()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                // Give the log readers a moment to drain the pipes.
                thread::sleep(Duration::from_millis(50));
                let log = fpm.server_log();
                if log.contains("Address already in use") {
                    return Err(StartError::AddrInUse(log));
                }
                return Err(StartError::Fatal(format!(
                    "php-fpm ({}) exited during startup with {status}; log:\n{log}",
                    binary.display()
                )));
            }
            if Instant::now() >= deadline {
                let log = fpm.server_log();
                return Err(StartError::Fatal(format!(
                    "php-fpm ({}) not ready within {:?} (tcp {tcp_ok}, unix {unix_ok}, waiting for {READY_LINE:?}); log:\n{log}",
                    binary.display(),
                    START_TIMEOUT
                )));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

enum StartError {
    AddrInUse(String),
    Fatal(String),
}

impl StartError {
    fn message(self) -> String {
        match self {
            StartError::AddrInUse(log) => format!("address already in use; log:\n{log}"),
            StartError::Fatal(msg) => msg,
        }
    }
}

fn write_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name.trim_start_matches('/'));
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create the script's directory");
    }
    fs::write(&path, content).expect("write a PHP script into the document root");
    path
}

fn capture<R: Read + Send + 'static>(mut r: R, log: Arc<Mutex<Vec<u8>>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]),
            }
        }
    });
}

/// A running private php-fpm (see the [module docs](self)). Stopped on drop.
#[derive(Debug)]
pub struct PhpFpm {
    child: Mutex<Option<Child>>,
    dir: Mutex<Option<TempDir>>,
    root: PathBuf,
    doc_root: PathBuf,
    sock: PathBuf,
    tcp_addr: SocketAddr,
    status_addrs: Option<(SocketAddr, PathBuf)>,
    log: Arc<Mutex<Vec<u8>>>,
    binary: PathBuf,
    conf: PathBuf,
    env: Vec<(String, String)>,
}

impl PhpFpm {
    /// Starts a php-fpm with the default settings.
    ///
    /// # Panics
    /// See [`PhpFpmBuilder::start`].
    pub fn start() -> PhpFpm {
        PhpFpmBuilder::default().start()
    }

    /// A builder to configure the fixture before starting it.
    pub fn builder() -> PhpFpmBuilder {
        PhpFpmBuilder::default()
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The TCP pool's address, `127.0.0.1:PORT`.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The TCP pool's address as `"127.0.0.1:PORT"`.
    pub fn tcp_address(&self) -> String {
        self.tcp_addr.to_string()
    }

    /// The Unix pool's socket path.
    pub fn unix_path(&self) -> &Path {
        &self.sock
    }

    /// The Unix pool's address as `"unix:/path/to/fpm.sock"`.
    pub fn unix_address(&self) -> String {
        format!("unix:{}", self.sock.display())
    }

    /// The TCP pool's `pm.status_listen` address, `"127.0.0.1:PORT"`.
    ///
    /// # Panics
    /// Unless the fixture was built with [`PhpFpmBuilder::status_listen`].
    pub fn tcp_status_address(&self) -> String {
        let (addr, _) = self.status_addrs.as_ref().expect(STATUS_LISTEN_OFF);
        addr.to_string()
    }

    /// The Unix pool's `pm.status_listen` address, `"unix:TMP/status.sock"`.
    ///
    /// # Panics
    /// Unless the fixture was built with [`PhpFpmBuilder::status_listen`].
    pub fn unix_status_address(&self) -> String {
        let (_, path) = self.status_addrs.as_ref().expect(STATUS_LISTEN_OFF);
        format!("unix:{}", path.display())
    }

    /// Both addresses, `[tcp_address(), unix_address()]`.
    pub fn addresses(&self) -> [String; 2] {
        [self.tcp_address(), self.unix_address()]
    }

    /// The document root holding the scripts.
    pub fn doc_root(&self) -> &Path {
        &self.doc_root
    }

    /// The fixture's temporary directory (config, pid file, socket, doc root).
    /// Handy for files that scripts write, such as `tick.php?file=`.
    pub fn temp_dir(&self) -> &Path {
        &self.root
    }

    /// Absolute path of script `name` in the document root (for `SCRIPT_FILENAME`).
    pub fn script(&self, name: &str) -> PathBuf {
        self.doc_root.join(name.trim_start_matches('/'))
    }

    /// Writes (or replaces) a script while the server runs; returns its path.
    /// opcache is off by default, so the next request sees the new content.
    pub fn write_script(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        write_file(&self.doc_root, name, content.as_ref())
    }

    /// [`raw::php_params`](crate::raw::php_params) for script `name` of this
    /// fixture: the usual CGI params to run it.
    pub fn params(
        &self,
        name: &str,
        method: &str,
        query: &str,
        body_len: usize,
    ) -> Vec<(String, String)> {
        let path = self.script(name);
        crate::raw::php_params(&path.to_string_lossy(), method, query, body_len)
    }

    /// The php-fpm binary used.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Process id of the master (0 once stopped).
    pub fn master_pid(&self) -> u32 {
        self.lock_child().as_ref().map_or(0, |c| c.id())
    }

    /// Process ids of the master's children (the workers of both pools),
    /// read from `/proc/*/stat`, sorted.
    pub fn worker_pids(&self) -> Vec<u32> {
        match self.master_pid() {
            0 => Vec::new(),
            pid => children_of(pid),
        }
    }

    /// Whether the master is still running.
    pub fn is_running(&self) -> bool {
        self.lock_child()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Everything php-fpm wrote to its log (stderr/stdout) so far.
    pub fn server_log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits until the log contains `needle`; `false` after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.server_log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Graceful reload (SIGUSR2 to the master, as `systemctl reload` does);
    /// returns once the reloaded master is ready again.
    ///
    /// # Panics
    /// If php-fpm is not running or not ready again within [`START_TIMEOUT`].
    pub fn reload(&self) {
        let before = self.ready_count();
        self.signal_master(Signal::SIGUSR2);
        if let Err(e) = self.wait_ready(before) {
            panic!("php-fpm reload: {}", e.message());
        }
    }

    /// Kills one worker with SIGKILL (the master forks a replacement).
    /// Returns its pid, or `None` when there was no worker.
    pub fn kill_worker(&self) -> Option<u32> {
        let pid = *self.worker_pids().first()?;
        let _ = kill(Pid::from_raw(i32::try_from(pid).ok()?), Signal::SIGKILL);
        Some(pid)
    }

    /// Stops the master (SIGTERM, as [`PhpFpm::stop`]) and starts a new one
    /// on the same socket and port, with the same scripts; returns once it is
    /// ready.
    ///
    /// # Panics
    /// If the new master does not start.
    pub fn restart(&self) {
        let before = self.ready_count();
        if let Some(child) = self.lock_child().take() {
            terminate(child);
        }
        let child = spawn_master(&self.binary, &self.conf, &self.root, &self.env, &self.log)
            .unwrap_or_else(|e| panic!("php-fpm restart: {}", e.message()));
        *self.lock_child() = Some(child);
        if let Err(e) = self.wait_ready(before) {
            panic!("php-fpm restart: {}", e.message());
        }
    }

    fn signal_master(&self, signal: Signal) {
        let pid = self.master_pid();
        assert!(pid != 0, "php-fpm is not running");
        let raw = i32::try_from(pid).expect("pid fits in i32");
        kill(Pid::from_raw(raw), signal).expect("signal the php-fpm master");
    }

    /// Stops php-fpm: SIGTERM, up to [`STOP_TIMEOUT`] to exit, then SIGKILL
    /// (of the master and any leftover worker); removes the temporary
    /// directory. Idempotent; also done on drop.
    pub fn stop(&self) {
        let child = self.lock_child().take();
        if let Some(child) = child {
            terminate(child);
        }
        let dir = self.dir.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(dir);
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- php-fpm log ({} / {}) ----\n{}---- end of php-fpm log ----",
                self.tcp_address(),
                self.unix_address(),
                self.server_log()
            );
        }
        self.stop();
    }
}

/// SIGTERM to a master, up to [`STOP_TIMEOUT`] to exit, then SIGKILL of it
/// and of any leftover worker.
fn terminate(mut child: Child) {
    let pid = child.id();
    let workers = children_of(pid);
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    for w in workers {
        if let Ok(raw) = i32::try_from(w) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}

/// Pids whose parent is `parent`, from `/proc/*/stat`, sorted.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = read_small(&entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may contain spaces and parens.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid = after
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(parent) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

fn read_small(path: &Path) -> io::Result<String> {
    fs::read_to_string(path)
}
