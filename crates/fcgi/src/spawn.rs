//! Starting a FastCGI application the way the specification describes:
//! the application inherits a listening socket as file descriptor 0
//! (`FCGI_LISTENSOCK_FILENO`), as web servers once did for `php-cgi`.
//!
//! [`SpawnedApp`] creates a Unix socket in a private temporary directory,
//! starts the command with the socket as its standard input, hands out the
//! address to send requests to, and on [`SpawnedApp::stop`] (or drop) sends
//! SIGTERM, then SIGKILL after a grace period, and removes the socket.
//!
//! ```no_run
//! use fcgi::spawn::{SpawnOptions, SpawnedApp};
//! use fcgi::Request;
//! let app = SpawnedApp::start("php-cgi", &[] as &[&str], SpawnOptions::default())?;
//! let response = app.client()?.execute(Request::get("/srv/hello.php"))?;
//! println!("{}", response.body_text());
//! # Ok::<(), fcgi::Error>(())
//! ```

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::address::Address;
use crate::blocking::Client;
use crate::config::Config;
use crate::error::Error;

/// Default time between SIGTERM and SIGKILL when stopping: 3 seconds.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(3);
/// Default time the application must survive after starting: 100 ms. An
/// application that exits sooner (not a FastCGI program, bad arguments) is
/// reported as failing to start.
pub const DEFAULT_STARTUP_CHECK: Duration = Duration::from_millis(100);
/// Interval at which a stopping application is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How to start and stop the application: [`SpawnOptions::default`], then
/// its setters (more settings may come, so it is not built field by field).
///
/// ```
/// use std::time::Duration;
/// use fcgi::spawn::SpawnOptions;
/// let options = SpawnOptions::default()
///     .env("PHP_FCGI_CHILDREN", "2")
///     .stop_grace(Duration::from_secs(10));
/// assert_eq!(options.stop_grace, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SpawnOptions {
    /// Extra environment variables (the client's environment is inherited),
    /// e.g. `PHP_FCGI_CHILDREN`.
    pub env: Vec<(OsString, OsString)>,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Time the application must survive right after starting.
    pub startup_check: Duration,
    /// Directory for the socket's private directory (the system's temporary
    /// directory when `None`).
    pub socket_parent: Option<PathBuf>,
    /// Client settings for [`SpawnedApp::client`].
    pub config: Config,
}

impl Default for SpawnOptions {
    fn default() -> SpawnOptions {
        SpawnOptions {
            env: Vec::new(),
            stop_grace: DEFAULT_STOP_GRACE,
            startup_check: DEFAULT_STARTUP_CHECK,
            socket_parent: None,
            config: Config::default(),
        }
    }
}

impl SpawnOptions {
    /// Adds an environment variable for the application.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> SpawnOptions {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets the time between SIGTERM and SIGKILL when stopping (default
    /// [`DEFAULT_STOP_GRACE`]).
    pub fn stop_grace(mut self, grace: Duration) -> SpawnOptions {
        self.stop_grace = grace;
        self
    }

    /// Sets the time the application must survive right after starting
    /// (default [`DEFAULT_STARTUP_CHECK`]).
    pub fn startup_check(mut self, check: Duration) -> SpawnOptions {
        self.startup_check = check;
        self
    }

    /// Puts the socket's private directory in `parent` instead of the
    /// system's temporary directory.
    pub fn socket_parent(mut self, parent: impl Into<PathBuf>) -> SpawnOptions {
        self.socket_parent = Some(parent.into());
        self
    }

    /// Sets the client settings for [`SpawnedApp::client`].
    pub fn config(mut self, config: Config) -> SpawnOptions {
        self.config = config;
        self
    }
}

/// A running FastCGI application listening on a socket this process made.
#[derive(Debug)]
pub struct SpawnedApp {
    child: Option<Child>,
    command: String,
    socket: PathBuf,
    options: SpawnOptions,
    // Removed (with the socket) when the app is dropped.
    _dir: tempfile::TempDir,
}

impl SpawnedApp {
    /// Starts `program` with `args`, listening socket on standard input.
    pub fn start<S: AsRef<OsStr>>(
        program: impl AsRef<OsStr>,
        args: &[S],
        options: SpawnOptions,
    ) -> Result<SpawnedApp, Error> {
        let command = std::iter::once(program.as_ref())
            .chain(args.iter().map(AsRef::as_ref))
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let fail = |detail: String| Error::Spawn {
            command: command.clone(),
            detail,
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix("fcgi-spawn-");
        let dir = match &options.socket_parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .map_err(|e| fail(format!("cannot create a directory for the socket: {e}")))?;
        let socket = dir.path().join("app.sock");
        let listener = UnixListener::bind(&socket)
            .map_err(|e| fail(format!("cannot listen on {}: {e}", socket.display())))?;
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args)
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(Stdio::null());
        for (name, value) in &options.env {
            cmd.env(name, value);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot start it: {e}")))?;
        let started = Instant::now();
        while started.elapsed() < options.startup_check {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(fail(format!(
                    "it exited right after starting ({status}); is it a FastCGI application that accepts on file descriptor 0?"
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Ok(SpawnedApp {
            child: Some(child),
            command,
            socket,
            options,
            _dir: dir,
        })
    }

    /// Where the application listens.
    pub fn address(&self) -> Address {
        Address::Unix(self.socket.clone())
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// A client for the application, with the options' settings.
    pub fn client(&self) -> Result<Client, Error> {
        Client::with_config(self.address(), self.options.config.clone())
    }

    /// The application's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// An error when the application has exited, saying how.
    pub fn check_running(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.stopped_error("it was stopped".into()));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.stopped_error(format!("it exited ({status})"))),
            Err(e) => Err(self.stopped_error(format!("cannot check it: {e}"))),
        }
    }

    fn stopped_error(&self, detail: String) -> Error {
        Error::Spawn {
            command: self.command.clone(),
            detail,
        }
    }

    /// Stops the application: SIGTERM, then SIGKILL after the grace period.
    /// Returns its exit status.
    pub fn stop(&mut self) -> Result<ExitStatus, Error> {
        let Some(mut child) = self.child.take() else {
            return Err(self.stopped_error("it was already stopped".into()));
        };
        let wait_err = |e: std::io::Error| self.stopped_error(format!("cannot wait for it: {e}"));
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            return Ok(status);
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            // It may exit between the check and the signal; that is fine.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let asked = Instant::now();
        while asked.elapsed() < self.options.stop_grace {
            if let Some(status) = child.try_wait().map_err(wait_err)? {
                return Ok(status);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let _ = child.kill();
        child.wait().map_err(wait_err)
    }
}

impl Drop for SpawnedApp {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}
