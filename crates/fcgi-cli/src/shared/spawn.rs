//! `--spawn 'CMD ARGS'`: the zero-setup path. Instead of talking to a
//! running server, start the FastCGI application ourselves on a private Unix
//! socket handed to it as file descriptor 0 ([`fcgi::spawn::SpawnedApp`]),
//! send the request(s) to it, and stop it afterwards.

use clap::Args;
use fcgi::spawn::{SpawnOptions, SpawnedApp};

use crate::shared::failure::{Failure, OTHER};
use crate::shared::target::{resolve, Target};

/// The `--spawn` option (shared by the commands that send requests).
#[derive(Debug, Args, Clone, Default)]
pub struct SpawnArgs {
    /// Start this FastCGI application (a command line, split as a shell
    /// would, e.g. 'php-cgi -d display_errors=1') on a private socket, send
    /// the request to it and stop it afterwards. ADDR must not be given.
    #[arg(long, value_name = "'CMD ARGS'")]
    pub spawn: Option<String>,
}

impl SpawnArgs {
    /// SCRIPT as the request names it. Without `--spawn`, as given; with
    /// it, ADDR is refused (before anything is read or started) and a
    /// relative SCRIPT is made absolute unless `--document-root` is given.
    pub fn script(
        &self,
        address: Option<&str>,
        script: &str,
        document_root: Option<&str>,
    ) -> Result<String, Failure> {
        if self.spawn.is_none() {
            return Ok(script.to_string());
        }
        if let Some(address) = address {
            return Err(address_with_spawn(address));
        }
        if document_root.is_some() {
            return Ok(script.to_string());
        }
        absolute_script(script)
    }
}

/// ADDR and `--spawn` together.
fn address_with_spawn(address: &str) -> Failure {
    Failure::usage(format!(
        "ADDR {address:?} cannot be given with --spawn (the spawned application listens on a socket of its own)"
    ))
}

/// SCRIPT (with its query) made absolute against the current directory: a
/// spawned application runs here, and php-cgi wants a full path.
pub fn absolute_script(script: &str) -> Result<String, Failure> {
    let (path, query) = match script.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (script, None),
    };
    if path.is_empty() || path.starts_with('/') {
        return Ok(script.to_string());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        Failure::new(
            OTHER,
            format!("cannot find the current directory to locate {path:?}: {e}"),
        )
    })?;
    let full = cwd.join(path).display().to_string();
    Ok(match query {
        Some(query) => format!("{full}?{query}"),
        None => full,
    })
}

/// The server requests go to: an address, and the application behind it
/// when `--spawn` started one (stopped when this is dropped).
#[derive(Debug)]
pub struct Server {
    /// Where to connect.
    pub target: Target,
    /// The spawned application, if any.
    pub app: Option<SpawnedApp>,
}

impl Server {
    /// The address given or discovered, or an application started with
    /// `--spawn` (then `address` must be `None`).
    pub fn open(spawn: &SpawnArgs, address: Option<&str>) -> Result<Server, Failure> {
        Server::open_with(spawn, address, &[])
    }

    /// [`Server::open`], with environment variables for the application
    /// that apply unless the caller's environment already sets them.
    pub fn open_with(
        spawn: &SpawnArgs,
        address: Option<&str>,
        env_defaults: &[(&str, String)],
    ) -> Result<Server, Failure> {
        let Some(command) = spawn.spawn.as_deref() else {
            return Ok(Server {
                target: resolve(address)?,
                app: None,
            });
        };
        if let Some(address) = address {
            return Err(address_with_spawn(address));
        }
        let app = start(command, env_defaults)?;
        let target = Target {
            address: app.address(),
            how: format!("spawned: {command}"),
        };
        Ok(Server {
            target,
            app: Some(app),
        })
    }

    /// Stops the spawned application (if any) now; errors are ignored, as
    /// the request's outcome is what matters.
    pub fn stop(&mut self) {
        if let Some(mut app) = self.app.take() {
            let _ = app.stop();
        }
    }
}

/// Splits `command` as a shell would and starts it, with environment
/// defaults (see [`Server::open_with`]).
pub fn start(command: &str, env_defaults: &[(&str, String)]) -> Result<SpawnedApp, Failure> {
    let words = shell_words::split(command).map_err(|e| {
        Failure::usage(format!(
            "--spawn {command:?} is not a valid command line: {e}"
        ))
    })?;
    let Some((program, args)) = words.split_first() else {
        return Err(Failure::usage(
            "--spawn needs a command, e.g. --spawn php-cgi",
        ));
    };
    let mut options = SpawnOptions::default();
    for (name, value) in env_defaults {
        if std::env::var_os(name).is_none() {
            options = options.env(*name, value);
        }
    }
    Ok(SpawnedApp::start(program, args, options)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_with_an_address_is_a_usage_error() {
        let spawn = SpawnArgs {
            spawn: Some("php-cgi".into()),
        };
        let err = Server::open(&spawn, Some("127.0.0.1:9000")).unwrap_err();
        assert_eq!(err.code, crate::shared::failure::USAGE);
    }

    #[test]
    fn with_spawn_a_relative_script_becomes_absolute_unless_under_a_root() {
        let spawn = SpawnArgs {
            spawn: Some("php-cgi".into()),
        };
        let cwd = std::env::current_dir().unwrap().display().to_string();
        assert_eq!(
            spawn.script(None, "hello.php?x=1", None).unwrap(),
            format!("{cwd}/hello.php?x=1")
        );
        assert_eq!(
            spawn.script(None, "/srv/a.php", None).unwrap(),
            "/srv/a.php"
        );
        assert_eq!(spawn.script(None, "a.php", Some("/srv")).unwrap(), "a.php");
        let err = spawn
            .script(Some("127.0.0.1:9000"), "a.php", None)
            .unwrap_err();
        assert_eq!(err.code, crate::shared::failure::USAGE);
        let without = SpawnArgs::default();
        assert_eq!(
            without
                .script(Some("127.0.0.1:9000"), "a.php", None)
                .unwrap(),
            "a.php"
        );
    }

    #[test]
    fn a_bad_or_empty_command_line_is_a_usage_error() {
        for command in ["", "  ", "php-cgi 'unclosed"] {
            let err = start(command, &[]).unwrap_err();
            assert_eq!(err.code, crate::shared::failure::USAGE, "{command:?}");
        }
    }

    #[test]
    fn a_missing_program_cannot_start() {
        let err = start("/no/such/program -x", &[]).unwrap_err();
        assert_eq!(err.code, crate::shared::failure::CONNECT);
        assert!(err.message.contains("cannot start"), "{}", err.message);
    }
}
