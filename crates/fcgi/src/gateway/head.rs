//! What a request head must satisfy before anything is done for it (RFC
//! 9112 §3.2 and §6): one valid Host, no user information in the target, no
//! transfer coding the gateway cannot undo. A request that fails is
//! answered with the status of its [`RequestError`] and is never routed, so
//! static files and scripts get the same rules.

use std::fmt;

use http::header::{HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{StatusCode, Version};

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// An HTTP/1.1 request without a Host header (400).
    MissingHost,
    /// More than one Host header (400).
    DuplicateHost,
    /// A Host value that is not `host[:port]` (spaces, a path, user
    /// information, an empty value...) (400).
    InvalidHost,
    /// The request target carries user information (`http://user@host/`)
    /// (400).
    UserinfoInTarget,
    /// A Transfer-Encoding other than `chunked` alone, e.g. `gzip, chunked`
    /// (501: the gateway would pass the body on with its coding silently
    /// dropped).
    UnsupportedTransferCoding,
}

impl RequestError {
    /// The status the request is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            RequestError::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::MissingHost => "HTTP/1.1 request without a Host header",
            RequestError::DuplicateHost => "more than one Host header",
            RequestError::InvalidHost => "invalid Host header value",
            RequestError::UserinfoInTarget => "user information in the request target",
            RequestError::UnsupportedTransferCoding => {
                "Transfer-Encoding other than chunked (not implemented)"
            }
        })
    }
}

impl std::error::Error for RequestError {}

/// Checks a request head before anything is done for it (RFC 9112 §3.2
/// and §6): an HTTP/1.1 request needs exactly one Host, `host[:port]`; the
/// target carries no user information; a `Transfer-Encoding` is `chunked`
/// alone. A request that fails is answered with [`RequestError::status`]
/// and never routed.
///
/// ```
/// use fcgi::gateway::{check_request_head, RequestError};
/// let ok = http::Request::get("/").header("host", "example.com:8080").body(()).unwrap();
/// assert_eq!(check_request_head(&ok.into_parts().0), Ok(()));
/// let bad = http::Request::get("/").header("host", "a b").body(()).unwrap();
/// assert_eq!(check_request_head(&bad.into_parts().0), Err(RequestError::InvalidHost));
/// ```
pub fn check_request_head(parts: &Parts) -> Result<(), RequestError> {
    check_head(parts.version, &parts.uri, &parts.headers)
}

/// [`check_request_head`] over the pieces of a head, so that a whole
/// `Request` can be checked without taking it apart.
pub(crate) fn check_head(
    version: Version,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<(), RequestError> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(RequestError::DuplicateHost);
    }
    if let Some(authority) = uri.authority() {
        if authority.as_str().contains('@') {
            return Err(RequestError::UserinfoInTarget);
        }
    }
    match host {
        Some(value) if !is_valid_host(value.as_bytes()) => return Err(RequestError::InvalidHost),
        Some(_) => {}
        // HTTP/1.0 may omit Host; HTTP/2 and later carry :authority instead.
        None if version == Version::HTTP_11 => return Err(RequestError::MissingHost),
        None => {}
    }
    if let Some(coding) = headers.get(TRANSFER_ENCODING) {
        let only_chunked = headers.get_all(TRANSFER_ENCODING).iter().count() == 1
            && coding
                .to_str()
                .is_ok_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        if !only_chunked {
            return Err(RequestError::UnsupportedTransferCoding);
        }
    }
    Ok(())
}

/// The Host the application sees: the target's authority for an
/// absolute-form request (RFC 9112 §3.2.2: it wins over the Host header),
/// else the Host header. `None` when the request names no host (HTTP/1.0).
pub(crate) fn effective_host(parts: &Parts) -> Option<&[u8]> {
    match parts.uri.authority() {
        Some(authority) => Some(authority.as_str().as_bytes()),
        None => parts.headers.get(HOST).map(|h| h.as_bytes()),
    }
}

/// `host[:port]` as RFC 3986 allows it in a Host header, restricted to what
/// names a host in practice: a registered name of letters, digits, `-`,
/// `.`, `_` and `~`, or an IP literal in brackets; an optional port of one
/// to five digits.
pub(crate) fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..end];
        let literal_ok = !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !literal_ok {
            return false;
        }
        (&value[..=end], &value[end + 1..])
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        }
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => {
            (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    let name_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)));
    port_ok && name_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(build: http::request::Builder) -> Parts {
        build.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hosts_are_host_and_optional_port() {
        for good in [
            "example.com",
            "example.com:8080",
            "localhost",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "my_host.internal",
        ] {
            assert!(is_valid_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "a b",
            "example.com/path",
            "user@example.com",
            "example.com:",
            "example.com:123456",
            "example.com:80:80",
            "example.com:http",
            "[::1",
            "[]",
            "[::1]x",
            "[zz]",
            ":80",
            "a\tb",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn http_1_1_needs_exactly_one_valid_host() {
        let no_host = head(http::Request::get("/"));
        assert_eq!(check_request_head(&no_host), Err(RequestError::MissingHost));
        let two = head(
            http::Request::get("/")
                .header("host", "a")
                .header("host", "b"),
        );
        assert_eq!(check_request_head(&two), Err(RequestError::DuplicateHost));
        let old = head(http::Request::get("/").version(Version::HTTP_10));
        assert_eq!(check_request_head(&old), Ok(()));
    }

    #[test]
    fn an_absolute_target_names_the_host_and_may_not_carry_userinfo() {
        let absolute = head(http::Request::get("http://example.com/x").header("host", "other"));
        assert_eq!(check_request_head(&absolute), Ok(()));
        assert_eq!(effective_host(&absolute), Some(&b"example.com"[..]));
        let userinfo = head(http::Request::get("http://u:p@example.com/x").header("host", "a"));
        assert_eq!(
            check_request_head(&userinfo),
            Err(RequestError::UserinfoInTarget)
        );
    }

    #[test]
    fn only_plain_chunked_transfer_coding_is_accepted() {
        let te = |v: &str| {
            head(
                http::Request::post("/")
                    .header("host", "a")
                    .header("transfer-encoding", v),
            )
        };
        assert_eq!(check_request_head(&te("chunked")), Ok(()));
        assert_eq!(check_request_head(&te("Chunked ")), Ok(()));
        let err = check_request_head(&te("gzip, chunked")).unwrap_err();
        assert_eq!(err.status(), StatusCode::NOT_IMPLEMENTED);
    }
}
