//! Which server to talk to: an address given on the command line, or one
//! discovered the way users expect (php-fpm sockets, then 127.0.0.1:9000),
//! and the rule that tells ADDR from SCRIPT among positional arguments.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use fcgi::Address;

use crate::shared::failure::Failure;

/// The address used when no socket is found.
pub const FALLBACK_ADDRESS: &str = "127.0.0.1:9000";

/// Directories searched for sockets whose names start with [`SOCKET_PREFIX`].
pub const DISCOVERY_DIRS: [&str; 2] = ["/run/php", "/var/run"];

/// Overrides [`DISCOVERY_DIRS`] (a `:`-separated list), for tests and unusual
/// layouts.
pub const DISCOVERY_DIRS_ENV: &str = "FCGI_DISCOVERY_DIRS";

/// The name prefix of discovered sockets.
pub const SOCKET_PREFIX: &str = "php";

/// The chosen address and how it was chosen (for `-v`).
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub address: Address,
    /// `given`, or how discovery found it.
    pub how: String,
}

/// The address given, or a discovered one.
pub fn resolve(given: Option<&str>) -> Result<Target, Failure> {
    match given {
        Some(text) => {
            let address = text
                .parse::<Address>()
                .map_err(|e| Failure::usage(format!("{e}")))?;
            Ok(Target {
                address,
                how: "given on the command line".into(),
            })
        }
        None => Ok(discover(&discovery_dirs())),
    }
}

fn discovery_dirs() -> Vec<PathBuf> {
    match std::env::var_os(DISCOVERY_DIRS_ENV) {
        Some(dirs) => std::env::split_paths(&dirs).collect(),
        None => DISCOVERY_DIRS.iter().map(PathBuf::from).collect(),
    }
}

/// The first socket (in name order) whose name starts with `php` in the
/// first directory that has one; else [`FALLBACK_ADDRESS`].
pub fn discover(dirs: &[PathBuf]) -> Target {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut found: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        let mut here: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(SOCKET_PREFIX))
            .map(|e| e.path())
            .filter(|p| is_socket(p))
            .collect();
        here.sort();
        for path in here {
            // /var/run is usually a link to /run: count each socket once.
            let real = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if !seen.contains(&real) {
                seen.push(real);
                found.push(path);
            }
        }
    }
    match found.first() {
        Some(first) => {
            let others = found.len() - 1;
            let how = if others == 0 {
                "discovered: the only php* socket found".to_string()
            } else {
                format!(
                    "discovered: the first of {} php* sockets found ({})",
                    found.len(),
                    found
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Target {
                address: Address::Unix(first.clone()),
                how,
            }
        }
        None => Target {
            address: Address::Tcp {
                host: "127.0.0.1".into(),
                port: 9000,
            },
            how: format!(
                "discovered: no php* socket in {}, so the default {FALLBACK_ADDRESS}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        },
    }
}

pub fn is_socket(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// True when `text` can only be an address, never a script: `unix:…`,
/// `tcp://…`, `host:port` without a query, or an existing socket file.
pub fn looks_like_address(text: &str) -> bool {
    if text.starts_with("unix:") || text.starts_with("tcp://") {
        return true;
    }
    if text.contains('?') {
        return false;
    }
    if matches!(text.parse::<Address>(), Ok(Address::Tcp { .. })) {
        return true;
    }
    is_socket(Path::new(text))
}

/// Splits `[ADDR] SCRIPT` positionals: two mean ADDR and SCRIPT; one is the
/// SCRIPT (refused when it can only be an address).
pub fn split_positionals(positional: &[String]) -> Result<(Option<&str>, &str), Failure> {
    match positional {
        [script] if looks_like_address(script) => Err(Failure::usage(format!(
            "{script:?} is an address, but the SCRIPT is missing: give both, as in `fcgi request {script} /var/www/html/index.php`"
        ))),
        [script] => Ok((None, script)),
        [address, script] => Ok((Some(address), script)),
        _ => Err(Failure::usage(
            "give [ADDR] SCRIPT[?QUERY] (see `fcgi request --help`)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn two_positionals_are_address_and_script() {
        let p = strings(&["127.0.0.1:9000", "/var/www/x.php"]);
        assert_eq!(
            split_positionals(&p).unwrap(),
            (Some("127.0.0.1:9000"), "/var/www/x.php")
        );
    }

    #[test]
    fn one_positional_is_the_script() {
        let p = strings(&["/var/www/x.php?a=1:2"]);
        assert_eq!(
            split_positionals(&p).unwrap(),
            (None, "/var/www/x.php?a=1:2")
        );
    }

    #[test]
    fn a_lone_address_is_refused() {
        for text in ["127.0.0.1:9000", "unix:/x.sock", "tcp://h:1", "[::1]:9000"] {
            let err = split_positionals(&strings(&[text])).unwrap_err();
            assert_eq!(err.code, crate::shared::failure::USAGE);
            assert!(err.message.contains("SCRIPT is missing"), "{}", err.message);
        }
    }

    #[test]
    fn discovery_falls_back_to_port_9000() {
        let dir = tempfile::tempdir().unwrap();
        let target = discover(&[dir.path().to_path_buf()]);
        assert_eq!(target.address.to_string(), FALLBACK_ADDRESS);
    }

    #[test]
    fn discovery_takes_the_first_php_socket_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let _a =
            std::os::unix::net::UnixListener::bind(dir.path().join("php8.3-fpm.sock")).unwrap();
        let _b =
            std::os::unix::net::UnixListener::bind(dir.path().join("php8.2-fpm.sock")).unwrap();
        let _c = std::os::unix::net::UnixListener::bind(dir.path().join("other.sock")).unwrap();
        std::fs::write(dir.path().join("php-not-a-socket"), "x").unwrap();
        let target = discover(&[dir.path().to_path_buf()]);
        assert_eq!(
            target.address,
            Address::Unix(dir.path().join("php8.2-fpm.sock"))
        );
        assert!(target.how.contains("first of 2"), "{}", target.how);
    }
}
