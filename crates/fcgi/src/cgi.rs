//! The CGI environment a script expects (RFC 3875, in the order nginx's
//! `fastcgi_params` sends it): one builder, [`CgiParams`], used by
//! [`crate::Request::with_method`], the HTTP gateway and the `fcgi` CLI.

use std::net::SocketAddr;

use crate::request::Params;

/// The `SERVER_SOFTWARE` value this crate's callers send.
pub const SERVER_SOFTWARE: &str = concat!("fcgi/", env!("CARGO_PKG_VERSION"));

/// `GATEWAY_INTERFACE`: the CGI version spoken.
pub const GATEWAY_INTERFACE: &str = "CGI/1.1";

/// `SERVER_PROTOCOL` unless [`CgiParams::protocol`] sets another.
pub const DEFAULT_PROTOCOL: &str = "HTTP/1.1";

/// `REDIRECT_STATUS`: `php-cgi` refuses to run a script without it
/// (`cgi.force_redirect`).
pub const REDIRECT_STATUS: &str = "200";

/// The param name of an HTTP request header: `Content-Type` and
/// `Content-Length` (spelled so, in any case) are CONTENT_TYPE and
/// CONTENT_LENGTH, any other is `HTTP_` + the name in upper case with `-`
/// as `_`. A `Content_Length` header is HTTP_CONTENT_LENGTH: a header
/// that is not the body's length must never set the length PHP reads. The
/// caller decides which names may pass at all (see the gateway's header
/// rules).
///
/// ```
/// assert_eq!(fcgi::cgi::header_param_name("X-Trace-Id"), "HTTP_X_TRACE_ID");
/// assert_eq!(fcgi::cgi::header_param_name("content-type"), "CONTENT_TYPE");
/// assert_eq!(fcgi::cgi::header_param_name("Content_Length"), "HTTP_CONTENT_LENGTH");
/// ```
pub fn header_param_name(header: &str) -> String {
    let mut name = String::with_capacity("HTTP_".len() + header.len());
    let special = header.eq_ignore_ascii_case("content-type")
        || header.eq_ignore_ascii_case("content-length");
    if !special {
        name.push_str("HTTP_");
    }
    name.extend(header.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    name
}

/// The CGI variables of one request, built once and turned into [`Params`]
/// by [`CgiParams::build`]. Only the method and SCRIPT_FILENAME are needed;
/// everything else has a default (shown on each setter) or is left out
/// when not given.
///
/// ```
/// use fcgi::cgi::CgiParams;
/// let params = CgiParams::new("GET", "/srv/www/app/index.php")
///     .script_name("/app/index.php")
///     .document_root("/srv/www")
///     .query("page=2")
///     .build();
/// assert_eq!(params.get("REQUEST_URI"), Some(&b"/app/index.php?page=2"[..]));
/// assert_eq!(params.get("DOCUMENT_URI"), Some(&b"/app/index.php"[..]));
/// assert_eq!(params.get("REDIRECT_STATUS"), Some(&b"200"[..]));
/// assert_eq!(params.get("REMOTE_ADDR"), None);
/// ```
#[derive(Debug, Clone)]
pub struct CgiParams<'a> {
    method: &'a str,
    script_filename: &'a str,
    script_name: Option<&'a str>,
    query: &'a str,
    request_uri: Option<&'a str>,
    path_info: Option<&'a str>,
    document_root: Option<&'a str>,
    protocol: &'a str,
    content_type: Option<&'a [u8]>,
    content_length: Option<u64>,
    scheme: Option<&'a str>,
    https: bool,
    server_software: Option<&'a str>,
    remote: Option<SocketAddr>,
    server: Option<SocketAddr>,
    server_name: Option<&'a str>,
    host: Option<&'a [u8]>,
}

impl<'a> CgiParams<'a> {
    /// REQUEST_METHOD `method` for the script at `script_filename` on the
    /// server.
    pub fn new(method: &'a str, script_filename: &'a str) -> CgiParams<'a> {
        CgiParams {
            method,
            script_filename,
            script_name: None,
            query: "",
            request_uri: None,
            path_info: None,
            document_root: None,
            protocol: DEFAULT_PROTOCOL,
            content_type: None,
            content_length: None,
            scheme: None,
            https: false,
            server_software: None,
            remote: None,
            server: None,
            server_name: None,
            host: None,
        }
    }

    /// SCRIPT_NAME, the script's URI path (default: SCRIPT_FILENAME).
    pub fn script_name(mut self, name: &'a str) -> Self {
        self.script_name = Some(name);
        self
    }

    /// QUERY_STRING, without the `?` (default: empty).
    pub fn query(mut self, query: &'a str) -> Self {
        self.query = query;
        self
    }

    /// REQUEST_URI as the client sent it (default: SCRIPT_NAME, PATH_INFO
    /// and `?QUERY_STRING` when there is one).
    pub fn request_uri(mut self, uri: &'a str) -> Self {
        self.request_uri = Some(uri);
        self
    }

    /// PATH_INFO, the part of the URI path after the script (sent, even
    /// empty, once set); PATH_TRANSLATED is DOCUMENT_ROOT + PATH_INFO when
    /// both are known and PATH_INFO is not empty.
    pub fn path_info(mut self, path_info: &'a str) -> Self {
        self.path_info = Some(path_info);
        self
    }

    /// DOCUMENT_ROOT (default: not sent).
    pub fn document_root(mut self, root: &'a str) -> Self {
        self.document_root = Some(root);
        self
    }

    /// SERVER_PROTOCOL (default: [`DEFAULT_PROTOCOL`]).
    pub fn protocol(mut self, protocol: &'a str) -> Self {
        self.protocol = protocol;
        self
    }

    /// CONTENT_TYPE (default: not sent).
    pub fn content_type(mut self, content_type: &'a [u8]) -> Self {
        self.content_type = Some(content_type);
        self
    }

    /// CONTENT_LENGTH (default: not sent; the clients derive it from a body
    /// of known length).
    pub fn content_length(mut self, len: u64) -> Self {
        self.content_length = Some(len);
        self
    }

    /// REQUEST_SCHEME, and HTTPS=on when `secure` (default: neither sent).
    pub fn scheme(mut self, secure: bool) -> Self {
        self.scheme = Some(if secure { "https" } else { "http" });
        self.https = secure;
        self
    }

    /// SERVER_SOFTWARE (default: not sent; [`SERVER_SOFTWARE`] is ours).
    pub fn server_software(mut self, software: &'a str) -> Self {
        self.server_software = Some(software);
        self
    }

    /// REMOTE_ADDR and REMOTE_PORT: the HTTP client's address (an IPv4
    /// address mapped into IPv6 is sent as IPv4).
    pub fn remote(mut self, addr: SocketAddr) -> Self {
        self.remote = Some(addr);
        self
    }

    /// SERVER_ADDR and SERVER_PORT: the address the request came in on.
    pub fn server(mut self, addr: SocketAddr) -> Self {
        self.server = Some(addr);
        self
    }

    /// SERVER_NAME (default: not sent).
    pub fn server_name(mut self, name: &'a str) -> Self {
        self.server_name = Some(name);
        self
    }

    /// HTTP_HOST, the Host header (default: not sent).
    pub fn host(mut self, host: &'a [u8]) -> Self {
        self.host = Some(host);
        self
    }

    /// The params, in nginx's `fastcgi_params` order.
    pub fn build(self) -> Params {
        let mut params = Params::new();
        self.build_into(&mut params);
        params
    }

    /// Sets the params in `params` (a value already there is replaced in
    /// place; new names are appended in nginx's `fastcgi_params` order).
    pub fn build_into(self, params: &mut Params) {
        let script_name = self.script_name.unwrap_or(self.script_filename);
        let path_info = self.path_info.unwrap_or("");
        params.set("QUERY_STRING", self.query);
        params.set("REQUEST_METHOD", self.method);
        if let Some(content_type) = self.content_type {
            params.set("CONTENT_TYPE", content_type);
        }
        if let Some(len) = self.content_length {
            params.set("CONTENT_LENGTH", len.to_string());
        }
        params.set("SCRIPT_FILENAME", self.script_filename);
        params.set("SCRIPT_NAME", script_name);
        if self.path_info.is_some() {
            params.set("PATH_INFO", path_info);
        }
        if let (false, Some(root)) = (path_info.is_empty(), self.document_root) {
            params.set("PATH_TRANSLATED", format!("{root}{path_info}"));
        }
        let document_uri = format!("{script_name}{path_info}");
        match self.request_uri {
            Some(uri) => params.set("REQUEST_URI", uri),
            None if self.query.is_empty() => params.set("REQUEST_URI", &document_uri),
            None => params.set("REQUEST_URI", format!("{document_uri}?{}", self.query)),
        };
        params.set("DOCUMENT_URI", document_uri);
        if let Some(root) = self.document_root {
            params.set("DOCUMENT_ROOT", root);
        }
        params.set("SERVER_PROTOCOL", self.protocol);
        if let Some(scheme) = self.scheme {
            params.set("REQUEST_SCHEME", scheme);
        }
        if self.https {
            params.set("HTTPS", "on");
        }
        params.set("GATEWAY_INTERFACE", GATEWAY_INTERFACE);
        if let Some(software) = self.server_software {
            params.set("SERVER_SOFTWARE", software);
        }
        set_addr(params, "REMOTE_ADDR", "REMOTE_PORT", self.remote);
        set_addr(params, "SERVER_ADDR", "SERVER_PORT", self.server);
        if let Some(name) = self.server_name {
            params.set("SERVER_NAME", name);
        }
        params.set("REDIRECT_STATUS", REDIRECT_STATUS);
        if let Some(host) = self.host {
            params.set("HTTP_HOST", host);
        }
    }
}

fn set_addr(params: &mut Params, addr_name: &str, port_name: &str, addr: Option<SocketAddr>) {
    if let Some(addr) = addr {
        params.set(addr_name, addr.ip().to_canonical().to_string());
        params.set(port_name, addr.port().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(params: &Params) -> Vec<String> {
        params
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn the_minimum_is_what_every_cgi_script_expects() {
        let params = CgiParams::new("GET", "/srv/a.php").build();
        assert_eq!(
            names(&params),
            [
                "QUERY_STRING",
                "REQUEST_METHOD",
                "SCRIPT_FILENAME",
                "SCRIPT_NAME",
                "REQUEST_URI",
                "DOCUMENT_URI",
                "SERVER_PROTOCOL",
                "GATEWAY_INTERFACE",
                "REDIRECT_STATUS"
            ]
        );
        assert_eq!(params.get("SCRIPT_NAME"), Some(&b"/srv/a.php"[..]));
        assert_eq!(params.get("REQUEST_URI"), Some(&b"/srv/a.php"[..]));
    }

    #[test]
    fn everything_given_comes_out_in_nginx_order() {
        let params = CgiParams::new("POST", "/srv/www/index.php")
            .script_name("/index.php")
            .path_info("/a/b")
            .document_root("/srv/www")
            .query("x=1")
            .request_uri("/index.php/a/b?x=1")
            .content_type(b"text/plain")
            .content_length(5)
            .scheme(true)
            .server_software(SERVER_SOFTWARE)
            .remote("[::ffff:192.0.2.7]:5000".parse().unwrap())
            .server("192.0.2.1:443".parse().unwrap())
            .server_name("example.com")
            .host(b"example.com")
            .protocol("HTTP/2.0")
            .build();
        assert_eq!(
            names(&params),
            [
                "QUERY_STRING",
                "REQUEST_METHOD",
                "CONTENT_TYPE",
                "CONTENT_LENGTH",
                "SCRIPT_FILENAME",
                "SCRIPT_NAME",
                "PATH_INFO",
                "PATH_TRANSLATED",
                "REQUEST_URI",
                "DOCUMENT_URI",
                "DOCUMENT_ROOT",
                "SERVER_PROTOCOL",
                "REQUEST_SCHEME",
                "HTTPS",
                "GATEWAY_INTERFACE",
                "SERVER_SOFTWARE",
                "REMOTE_ADDR",
                "REMOTE_PORT",
                "SERVER_ADDR",
                "SERVER_PORT",
                "SERVER_NAME",
                "REDIRECT_STATUS",
                "HTTP_HOST"
            ]
        );
        assert_eq!(params.get("PATH_TRANSLATED"), Some(&b"/srv/www/a/b"[..]));
        assert_eq!(params.get("DOCUMENT_URI"), Some(&b"/index.php/a/b"[..]));
        assert_eq!(params.get("REMOTE_ADDR"), Some(&b"192.0.2.7"[..]));
        assert_eq!(params.get("SERVER_PORT"), Some(&b"443"[..]));
        assert_eq!(params.get("CONTENT_LENGTH"), Some(&b"5"[..]));
    }

    #[test]
    fn an_empty_path_info_is_sent_without_path_translated() {
        let params = CgiParams::new("GET", "/srv/www/index.php")
            .document_root("/srv/www")
            .path_info("")
            .build();
        assert_eq!(params.get("PATH_INFO"), Some(&b""[..]));
        assert_eq!(params.get("PATH_TRANSLATED"), None);
    }

    #[test]
    fn header_names_become_params() {
        assert_eq!(header_param_name("Accept"), "HTTP_ACCEPT");
        assert_eq!(header_param_name("x-real_ip"), "HTTP_X_REAL_IP");
        assert_eq!(header_param_name("Content-Length"), "CONTENT_LENGTH");
        assert_eq!(header_param_name("CONTENT-TYPE"), "CONTENT_TYPE");
        // Not the framing headers: they never set what PHP reads as such.
        assert_eq!(header_param_name("content_length"), "HTTP_CONTENT_LENGTH");
        assert_eq!(header_param_name("Content_Type"), "HTTP_CONTENT_TYPE");
    }
}
