//! Where a FastCGI server listens: a TCP host and port, or a Unix socket path.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The address of a FastCGI server.
///
/// Accepted forms: `host:port`, `[v6]:port`, `tcp://host:port`,
/// `unix:/path`, `unix:///path`, and a bare path (anything containing `/`)
/// meaning a Unix socket.
///
/// ```
/// use fcgi::Address;
/// let tcp: Address = "127.0.0.1:9000".parse().unwrap();
/// assert_eq!(tcp, Address::Tcp { host: "127.0.0.1".into(), port: 9000 });
/// let v6: Address = "tcp://[::1]:9000".parse().unwrap();
/// assert_eq!(v6, Address::Tcp { host: "::1".into(), port: 9000 });
/// let unix: Address = "/run/php/php8.2-fpm.sock".parse().unwrap();
/// assert_eq!(unix, Address::Unix("/run/php/php8.2-fpm.sock".into()));
/// assert!("localhost".parse::<Address>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP endpoint; `host` is a name or an IP literal (IPv6 without brackets).
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A Unix domain socket.
    Unix(PathBuf),
}

/// Why an address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {reason}")]
#[non_exhaustive]
pub struct AddressError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Address, AddressError> {
        let fail = |reason: &str| AddressError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("empty address; expected host:port or a socket path"));
        }
        if let Some(path) = text.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(fail(
                    "unix: needs a socket path, as in unix:/run/php/php-fpm.sock",
                ));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let (text, explicit_tcp) = match text.strip_prefix("tcp://") {
            Some(rest) => (rest.trim_end_matches('/'), true),
            None => (text, false),
        };
        // Checked before the bare-path rule: "http://host:1" contains '/'
        // but is a mistaken URL, not a socket path.
        let has_scheme = text.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        });
        if has_scheme {
            return Err(fail("unknown scheme; use tcp://host:port or unix:/path"));
        }
        if !explicit_tcp && text.contains('/') {
            return Ok(Address::Unix(PathBuf::from(text)));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| fail("missing ']' after the IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| fail("missing :port after the IPv6 address, as in [::1]:9000"))?;
            (host, port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or_else(|| {
                fail("missing :port (for a Unix socket give a path or unix:/path)")
            })?;
            if host.contains(':') {
                return Err(fail("an IPv6 address needs brackets, as in [::1]:9000"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(fail("missing host before :port"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| fail("port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(fail("port must be a number from 1 to 65535"));
        }
        Ok(Address::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl Address {
    /// The host name and port of a TCP address whose host is a name rather
    /// than an IP address (`None` for IP addresses and Unix sockets): the
    /// async client resolves such a name to all its addresses.
    ///
    /// ```
    /// use fcgi::Address;
    /// let named: Address = "php.default.svc.cluster.local:9000".parse().unwrap();
    /// assert_eq!(named.host_name(), Some(("php.default.svc.cluster.local", 9000)));
    /// let ip: Address = "127.0.0.1:9000".parse().unwrap();
    /// assert_eq!(ip.host_name(), None);
    /// ```
    pub fn host_name(&self) -> Option<(&str, u16)> {
        match self {
            Address::Tcp { host, port } if host.parse::<std::net::IpAddr>().is_err() => {
                Some((host.as_str(), *port))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl TryFrom<&str> for Address {
    type Error = AddressError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<std::net::SocketAddr> for Address {
    fn from(addr: std::net::SocketAddr) -> Address {
        Address::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Address {
        Address::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn all_documented_forms_parse() {
        assert_eq!("localhost:9000".parse(), Ok(tcp("localhost", 9000)));
        assert_eq!("tcp://10.0.0.1:9001".parse(), Ok(tcp("10.0.0.1", 9001)));
        assert_eq!("[::1]:9000".parse(), Ok(tcp("::1", 9000)));
        assert_eq!(
            "unix:/tmp/a.sock".parse(),
            Ok(Address::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            "unix:///tmp/a.sock".parse(),
            Ok(Address::Unix("/tmp/a.sock".into()))
        );
        assert_eq!("./php.sock".parse(), Ok(Address::Unix("./php.sock".into())));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let reason = |s: &str| s.parse::<Address>().unwrap_err().reason;
        assert!(reason("localhost").contains("missing :port"));
        assert!(reason("host:99999").contains("port must be"));
        assert!(reason("host:0").contains("port must be"));
        assert!(reason("::1:9000").contains("brackets"));
        assert!(reason("[::1]9000").contains("missing :port"));
        assert!(reason("http://x:1").contains("unknown scheme"));
        assert!(reason("").contains("empty"));
        assert!(reason("unix:").contains("socket path"));
    }

    #[test]
    fn only_tcp_addresses_with_a_name_have_a_host_name() {
        assert_eq!(
            tcp("localhost", 9000).host_name(),
            Some(("localhost", 9000))
        );
        assert_eq!(tcp("::1", 9000).host_name(), None);
        assert_eq!(tcp("10.1.2.3", 9000).host_name(), None);
        assert_eq!(Address::Unix("/x.sock".into()).host_name(), None);
    }

    #[test]
    fn display_round_trips() {
        for text in ["127.0.0.1:9000", "[::1]:9000", "unix:/run/php.sock"] {
            let addr: Address = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
            assert_eq!(addr.to_string().parse::<Address>().unwrap(), addr);
        }
    }
}
