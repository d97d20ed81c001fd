//! The CGI environment of an HTTP request (RFC 3875, as nginx's
//! `fastcgi_params` fills it).

use http::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, TRANSFER_ENCODING};
use http::request::Parts;
use http::Version;

use super::head::effective_host;
use super::route::Script;
use super::{ConnectionInfo, Settings};
use crate::cgi::{header_param_name, CgiParams, SERVER_SOFTWARE};
use crate::request::Params;

/// What became of a request header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderFate {
    /// Passed as this HTTP_* name.
    Param(String),
    /// Sent as CONTENT_TYPE / CONTENT_LENGTH, or describes framing the
    /// gateway has already undone (Transfer-Encoding).
    Special,
    /// Dropped for safety: `Proxy` (httpoxy), a name with an underscore (it
    /// would be indistinguishable from a dash), or a name with characters
    /// other than letters, digits and dashes.
    Dropped(&'static str),
}

pub(crate) fn header_fate(name: &HeaderName, allow_underscores: bool) -> HeaderFate {
    if name == CONTENT_TYPE || name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
        return HeaderFate::Special;
    }
    let text = name.as_str();
    if text == "proxy" {
        return HeaderFate::Dropped("Proxy header (httpoxy)");
    }
    if text.contains('_') && !allow_underscores {
        return HeaderFate::Dropped("underscore in the header name");
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return HeaderFate::Dropped("invalid character in the header name");
    }
    HeaderFate::Param(header_param_name(text))
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The host part of a Host header (`example.com:8080` → `example.com`,
/// `[::1]:80` → `[::1]`), when it is a plausible host name.
fn host_name(host: &[u8]) -> Option<&str> {
    let host = std::str::from_utf8(host).ok()?.trim();
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let plausible = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b));
    plausible.then_some(name)
}

/// The CGI parameters of a request for `script`. `content_length` is the
/// body's length as it will be sent (`None`: no body).
pub(crate) fn build(
    settings: &Settings,
    parts: &Parts,
    conn: &ConnectionInfo,
    script: &Script,
    content_length: Option<u64>,
) -> Params {
    let root = settings.document_root.to_string_lossy();
    let filename = script.filename.to_string_lossy();
    let request_uri = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let host = effective_host(parts);
    let server_name = settings
        .server_name
        .clone()
        .or_else(|| host.and_then(host_name).map(String::from))
        .or_else(|| conn.local.map(|a| a.ip().to_canonical().to_string()));
    let mut cgi = CgiParams::new(parts.method.as_str(), &filename)
        .script_name(&script.script_name)
        .path_info(&script.path_info)
        .document_root(&root)
        .query(parts.uri.query().unwrap_or(""))
        .request_uri(request_uri)
        .protocol(protocol(parts.version))
        .scheme(conn.secure)
        .server_software(SERVER_SOFTWARE);
    if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
        cgi = cgi.content_type(content_type.as_bytes());
    }
    if let Some(len) = content_length {
        cgi = cgi.content_length(len);
    }
    if let Some(peer) = conn.peer {
        cgi = cgi.remote(peer);
    }
    if let Some(local) = conn.local {
        cgi = cgi.server(local);
    }
    if let Some(name) = &server_name {
        cgi = cgi.server_name(name);
    }
    let mut params = cgi.build();

    // Every request header as HTTP_*, repeats joined (Cookie with "; ").
    for name in parts.headers.keys() {
        let param = match header_fate(name, settings.allow_underscore_headers) {
            HeaderFate::Param(param) => param,
            HeaderFate::Special => continue,
            HeaderFate::Dropped(why) => {
                tracing::debug!(target: super::LOG_TARGET, header = name.as_str(), why, "request header not passed");
                continue;
            }
        };
        let separator: &[u8] = if name == COOKIE { b"; " } else { b", " };
        let mut value = match params.get(&param) {
            // Two names mapping to one parameter (only with underscores allowed).
            Some(earlier) => {
                let mut v = earlier.to_vec();
                v.extend_from_slice(separator);
                v
            }
            None => Vec::new(),
        };
        for (i, v) in parts.headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(separator);
            }
            value.extend_from_slice(v.as_bytes());
        }
        params.set(param, value);
    }
    // One Host: the target's authority wins over the header (absolute form).
    if let Some(host) = host {
        params.set("HTTP_HOST", host);
    }
    for (name, value) in settings.extra_params.iter() {
        params.set(name, value);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_map_like_nginx() {
        let fate = |n: &str, u| header_fate(&HeaderName::from_bytes(n.as_bytes()).unwrap(), u);
        assert_eq!(
            fate("x-forwarded-for", false),
            HeaderFate::Param("HTTP_X_FORWARDED_FOR".into())
        );
        assert!(matches!(fate("proxy", true), HeaderFate::Dropped(_)));
        assert!(matches!(fate("x_real_ip", false), HeaderFate::Dropped(_)));
        assert_eq!(
            fate("x_real_ip", true),
            HeaderFate::Param("HTTP_X_REAL_IP".into())
        );
        assert!(matches!(fate("x.dot", false), HeaderFate::Dropped(_)));
        assert_eq!(fate("content-type", false), HeaderFate::Special);
        // Found by the gateway_params fuzz target: with underscores
        // allowed, `content_length` once became CONTENT_LENGTH and was
        // joined to the real length PHP reads.
        assert_eq!(
            fate("content_length", true),
            HeaderFate::Param("HTTP_CONTENT_LENGTH".into())
        );
        assert_eq!(
            fate("content_type", true),
            HeaderFate::Param("HTTP_CONTENT_TYPE".into())
        );
    }

    #[test]
    fn host_name_drops_the_port() {
        assert_eq!(host_name(b"example.com:8080"), Some("example.com"));
        assert_eq!(host_name(b"example.com"), Some("example.com"));
        assert_eq!(host_name(b"[::1]:80"), Some("[::1]"));
        assert_eq!(host_name(b"bad host/"), None);
        assert_eq!(host_name(b""), None);
    }
}
