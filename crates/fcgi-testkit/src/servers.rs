//! Real FastCGI servers other than php-fpm, for the compatibility matrix:
//! fcgiwrap running a CGI script, Go's `net/http/fcgi`, flup multiplexed,
//! uWSGI with a Python app, and php-cgi. Each [`RealServer`] listens on a
//! Unix socket in a fresh temporary directory and runs the same small test
//! application (`servers/app.py`, `servers/server.go`, `servers/app.php`),
//! which answers the query strings listed in `servers/app.py` (`op=echo`,
//! `op=hash`, `op=big&bytes=N`, `op=cookies`, `op=notfound`,
//! `op=stderr`, `op=barrier&group=G&n=N`).
//!
//! A missing program is a panic that names the install command
//! (`scripts/ensure-deps.sh` installs them all); nothing is skipped.
//!
//! A server is started through a small shell wrapper in a process group of
//! its own: it ends when its [`RealServer`] is dropped, and also when the
//! test process exits without dropping it (the wrapper waits on a pipe from
//! the test process), so that [`RealServer::shared`] can keep one server per
//! test binary. The Go program is built once (`go build`) into a cache
//! directory under the system's temporary directory, keyed by its source.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The Python test application (WSGI app, CGI script, flup launcher).
pub const APP_PY: &str = include_str!("../servers/app.py");
/// The Go test application (`net/http/fcgi`).
pub const SERVER_GO: &str = include_str!("../servers/server.go");
/// The PHP test application (php-cgi).
pub const APP_PHP: &str = include_str!("../servers/app.php");

/// How long a server may take to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The servers of the compatibility matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// fcgiwrap (Debian `fcgiwrap`) running `app.py` as a CGI script, with
    /// `-f` (the script's stderr goes to FastCGI stderr).
    Fcgiwrap,
    /// Go's `net/http/fcgi` (Debian `golang-go`).
    Go,
    /// flup's `WSGIServer(multiplexed=True)` (PyPI `flup`).
    Flup,
    /// uWSGI's FastCGI socket with the Python plugin (Debian `uwsgi`,
    /// `uwsgi-plugin-python3`).
    Uwsgi,
    /// php-cgi in FastCGI mode (`-b`; Debian `php-cgi`).
    PhpCgi,
}

impl Kind {
    /// Every server of the matrix.
    pub const ALL: [Kind; 5] = [
        Kind::Fcgiwrap,
        Kind::Go,
        Kind::Flup,
        Kind::Uwsgi,
        Kind::PhpCgi,
    ];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fcgiwrap => "fcgiwrap",
            Kind::Go => "go",
            Kind::Flup => "flup",
            Kind::Uwsgi => "uwsgi",
            Kind::PhpCgi => "php-cgi",
        }
    }

    /// Runs several requests at once on one connection.
    pub fn multiplexes(self) -> bool {
        matches!(self, Kind::Go | Kind::Flup)
    }

    /// The application's error output reaches FastCGI stderr (Go's handlers
    /// cannot write it; uWSGI logs `wsgi.errors` itself).
    pub fn forwards_stderr(self) -> bool {
        matches!(self, Kind::Fcgiwrap | Kind::Flup | Kind::PhpCgi)
    }

    /// What the server answers to FCGI_GET_VALUES for FCGI_MPXS_CONNS, as
    /// measured: `None` when it gives no answer at all.
    pub fn mpxs_conns_answer(self) -> Option<&'static str> {
        match self {
            Kind::Go => Some("1"),
            Kind::PhpCgi => Some("0"),
            // flup answers with no pairs; fcgiwrap never answers; uWSGI
            // closes the connection.
            Kind::Flup | Kind::Fcgiwrap | Kind::Uwsgi => None,
        }
    }

    /// The install command for the server's program.
    pub fn install_hint(self) -> &'static str {
        match self {
            Kind::Fcgiwrap => "apt-get install -y --no-install-recommends fcgiwrap",
            Kind::Go => "apt-get install -y --no-install-recommends golang-go",
            Kind::Flup => "pip install flup",
            Kind::Uwsgi => "apt-get install -y --no-install-recommends uwsgi uwsgi-plugin-python3",
            Kind::PhpCgi => "apt-get install -y --no-install-recommends php-cgi",
        }
    }
}

/// A running real server (see the [module docs](self)).
#[derive(Debug)]
pub struct RealServer {
    kind: Kind,
    socket: PathBuf,
    script: PathBuf,
    child: Child,
    /// Closing it ends the wrapper, which ends the server.
    lifeline: Option<ChildStdin>,
    dir: TempDir,
}

impl RealServer {
    /// Starts a server of `kind` in a fresh temporary directory and waits
    /// until it accepts connections.
    pub fn start(kind: Kind) -> RealServer {
        let dir = tempfile::Builder::new()
            .prefix(&format!("fcgi-{}-", kind.name()))
            .tempdir()
            .expect("create a temporary directory for the server");
        let socket = dir.path().join("app.sock");
        let py = dir.path().join("app.py");
        write_executable(&py, APP_PY);
        let php = dir.path().join("app.php");
        std::fs::write(&php, APP_PHP).expect("write app.php");
        let sock = socket.display().to_string();
        let (program, args, script): (String, Vec<String>, PathBuf) = match kind {
            Kind::Fcgiwrap => (
                require("fcgiwrap", kind),
                vec![
                    "-f".into(),
                    "-c".into(),
                    "4".into(),
                    "-s".into(),
                    format!("unix:{sock}"),
                ],
                py,
            ),
            Kind::Go => (go_binary().display().to_string(), vec![sock], py),
            Kind::Flup => {
                let python = require("python3", kind);
                let found = Command::new(&python)
                    .args(["-c", "import flup.server.fcgi"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(
                    found,
                    "flup is not installed for {python}: run scripts/ensure-deps.sh ({})",
                    kind.install_hint()
                );
                (
                    python,
                    vec![py.display().to_string(), "flup".into(), sock],
                    py,
                )
            }
            Kind::Uwsgi => (
                require("uwsgi", kind),
                [
                    "--plugin",
                    "python3",
                    "--fastcgi-socket",
                    &sock,
                    "--wsgi-file",
                    &py.display().to_string(),
                    "--master",
                    "--processes",
                    "2",
                    "--threads",
                    "2",
                    "--die-on-term",
                    "--disable-logging",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                py,
            ),
            Kind::PhpCgi => (
                require("php-cgi", kind),
                vec![
                    "-d".into(),
                    "cgi.force_redirect=0".into(),
                    "-d".into(),
                    "output_buffering=0".into(),
                    "-b".into(),
                    sock,
                ],
                php,
            ),
        };
        let log = std::fs::File::create(dir.path().join("server.log")).expect("create server.log");
        // The wrapper starts the server with no standard input, waits for
        // its own standard input (a pipe from this process) to close, then
        // removes the directory (a shared server's is never dropped: the
        // test process just exits) and ends its whole process group (the
        // server and its workers).
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(r#""$@" </dev/null & read _unused; rm -rf "$FCGI_TESTKIT_DIR"; kill -TERM 0"#)
            .arg("fcgi-testkit-server")
            .arg(&program)
            .args(&args)
            .env("FCGI_TESTKIT_DIR", dir.path())
            .env("PHP_FCGI_CHILDREN", "4")
            .env("PHP_FCGI_MAX_REQUESTS", "0")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let lifeline = child.stdin.take();
        let mut server = RealServer {
            kind,
            socket,
            script,
            child,
            lifeline,
            dir,
        };
        server.wait_until_ready();
        server
    }

    /// One server of `kind` for the whole test process, started on first
    /// use; it ends when the process exits.
    pub fn shared(kind: Kind) -> &'static RealServer {
        static SERVERS: OnceLock<Mutex<Vec<&'static RealServer>>> = OnceLock::new();
        let servers = SERVERS.get_or_init(|| Mutex::new(Vec::new()));
        let mut servers = servers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(server) = servers.iter().find(|s| s.kind == kind) {
            return server;
        }
        let server: &'static RealServer = Box::leak(Box::new(RealServer::start(kind)));
        servers.push(server);
        server
    }

    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited at start ({status}); its output:\n{}",
                    self.kind.name(),
                    self.log()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "{} did not accept connections within {START_TIMEOUT:?}; its output:\n{}",
                    self.kind.name(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Which server this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The address to connect to (`unix:/...`).
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The application's path (SCRIPT_FILENAME; fcgiwrap and php-cgi run
    /// it, the others ignore it).
    pub fn script(&self) -> String {
        self.script.display().to_string()
    }

    /// The application's path with a query string.
    pub fn url(&self, query: &str) -> String {
        format!("{}?{query}", self.script())
    }

    /// What the server and its wrapper wrote to their own output so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("server.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        // Workers that outlived the wrapper.
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
}

/// The path of `program` on PATH; a panic naming the install command when
/// it is missing.
fn require(program: &str, kind: Kind) -> String {
    which(program)
        .unwrap_or_else(|| {
            panic!(
                "{program} not found (needed for the {} server): run scripts/ensure-deps.sh ({})",
                kind.name(),
                kind.install_hint()
            )
        })
        .display()
        .to_string()
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn write_executable(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("write the test application");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("make the test application executable");
}

/// The Go test application, built once per source text into a cache
/// directory under the system's temporary directory.
pub fn go_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_go).clone()
}

fn build_go() -> PathBuf {
    let go = require("go", Kind::Go);
    let digest = hex(&Sha256::digest(SERVER_GO.as_bytes()))[..16].to_string();
    let cache = std::env::temp_dir().join("fcgi-testkit-go");
    let binary = cache.join(format!("server-{digest}"));
    if binary.is_file() {
        return binary;
    }
    std::fs::create_dir_all(&cache).expect("create the Go build cache directory");
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&cache)
        .expect("create a Go build directory");
    std::fs::write(work.path().join("server.go"), SERVER_GO).expect("write server.go");
    let out = work.path().join("server");
    let output = Command::new(&go)
        .args(["build", "-o"])
        .arg(&out)
        .arg("server.go")
        .current_dir(work.path())
        .env("GO111MODULE", "off")
        .env("GOCACHE", cache.join("gocache"))
        .env("GOPATH", cache.join("gopath"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {go}: {e}"));
    assert!(
        output.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Renamed into place: concurrent builds (test binaries run at once)
    // each leave a whole file.
    std::fs::rename(&out, &binary)
        .or_else(|e| if binary.is_file() { Ok(()) } else { Err(e) })
        .unwrap_or_else(|e: io::Error| panic!("cannot move the Go binary into place: {e}"));
    binary
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
