//! The HTTP gateway (feature `http`): run PHP applications behind a Rust
//! HTTP server the way nginx's `fastcgi_pass` does.
//!
//! [`Gateway`] turns an [`http::Request`] into a FastCGI request for the
//! async client ([`crate::AsyncClient`]) and the FastCGI response into an
//! [`http::Response`] whose body streams ([`GatewayBody`]). It is a
//! [`tower_service::Service`], so it plugs into hyper (through
//! `hyper_util::service::TowerToHyperService`) or axum (as a fallback
//! service) directly.
//!
//! What it sends: CGI parameters as RFC 3875 and nginx's `fastcgi_params`
//! give them: every request header as `HTTP_*` (repeats joined with
//! `", "`, `Cookie` with `"; "`), CONTENT_TYPE, CONTENT_LENGTH, REQUEST_URI,
//! QUERY_STRING, SCRIPT_NAME, SCRIPT_FILENAME, PATH_INFO, PATH_TRANSLATED,
//! DOCUMENT_ROOT, DOCUMENT_URI, REQUEST_SCHEME, HTTPS, SERVER_* and REMOTE_*
//! (from a [`ConnectionInfo`] in the request's extensions),
//! GATEWAY_INTERFACE, SERVER_PROTOCOL, REDIRECT_STATUS. A path that names
//! nothing goes to `/index.php` like nginx's `try_files $uri $uri/
//! /index.php?$query_string`; a missing `*.php` is a 404.
//!
//! # Safety table
//!
//! Safe by default; each rule is pinned by a test (`tests/gateway.rs`
//! against php-fpm, and `fcgi serve`'s raw-socket tests). nginx, as Debian
//! configures it, is the reference; where it is unsafe the gateway is not.
//!
//! | rule | behaviour | nginx |
//! |---|---|---|
//! | httpoxy | a `Proxy` request header is never passed (no HTTP_PROXY) | passed |
//! | underscores | header names with `_` are dropped (`X_A` and `X-A` would both be HTTP_X_A), unless [`GatewayBuilder::allow_underscore_headers`] | same |
//! | document root | the path is decoded once and normalized before any file is looked at; `..` above the root (plain or `%2e%2e`), NUL bytes and backslashes are 400 ([`Route`]) | same |
//! | PATH_INFO | the script is the first path prefix ending in a script extension **that exists as a file**: `/uploads/evil.jpg/x.php` is 404, never runs `evil.jpg` | depends on `try_files` |
//! | extensions | only files ending in a configured extension (default `.php`) go to FastCGI; others are [`Route::Static`] (404 here) | same |
//! | hidden files | `/.git/…`, `/.env`, `/.htaccess` are 404 ([`GatewayBuilder::deny_hidden`]; `/.well-known` allowed) | served |
//! | Host | an HTTP/1.1 request needs exactly one Host, `host[:port]` (no spaces, path, user information): else 400; an absolute target's authority wins; HTTP_HOST and SERVER_NAME come from that one value ([`check_request_head`]) | same |
//! | request transfer coding | `Transfer-Encoding` other than `chunked` alone (`gzip, chunked`) is 501 | same |
//! | request bodies | read whole before the request goes upstream (memory up to [`DEFAULT_BUFFER_MEMORY_BYTES`], then a temporary file), so a slow client never holds a PHP worker; [`GatewayBuilder::stream_request_bodies`] streams them instead (documented risk) | same (`client_body_buffer_size`) |
//! | body size | over [`GatewayBuilder::max_body_bytes`] (default [`DEFAULT_MAX_BODY_BYTES`]) 413, at once when declared (a `Content-Length`, or a body ending with [`DeclaredTooLarge`]: `fcgi serve` reads chunk sizes off the socket, since hyper does not expose them, so a chunk that announces too much is refused before its bytes), else when the bytes pass it | same |
//! | body read timeout | no body bytes for [`GatewayBuilder::body_read_timeout`] (default [`DEFAULT_BODY_READ_TIMEOUT`]): 408 and `Connection: close` | same (`client_body_timeout`) |
//! | response framing | the script's `Content-Length` (one valid value) is the length: a longer body is cut there, a shorter one ends in an error so the server closes the connection ([`GatewayBody`]); an invalid or conflicting one is dropped and the gateway frames the body | same, but nginx 502s invalid ones |
//! | response headers | `Transfer-Encoding`, `Connection` (and the headers it names), `Keep-Alive`, `Proxy-Connection`, `Upgrade`, `TE`, `Trailer` and `X-Accel-*` from the script are dropped; a 1xx status (`101 Switching Protocols`) is 502 | same |
//! | HEAD, 204, 304 | no body is sent; the script's length stays for HEAD and 304 | same |
//! | upstream errors | 502 Bad Gateway (504 for time limits) with a generic body; the detail goes to the log (`tracing` target `fcgi::gateway`); STDERR is logged as WARN | same |
//!
//! The HTTP server in front enforces the connection limits: `fcgi serve`
//! has a head size limit (431), a target length limit (414), header and
//! keep-alive timeouts and a connection cap, each a setting (see `fcgi
//! serve --help`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use fcgi::gateway::{ConnectionInfo, Gateway};
//! use http_body_util::Full;
//! use tower_service::Service;
//!
//! let client = fcgi::AsyncClient::new("unix:/run/php/php8.2-fpm.sock")?;
//! let mut gateway = Gateway::builder("/var/www/html").build(client)?;
//! let mut request = http::Request::get("/index.php?page=2")
//!     .header("host", "example.com")
//!     .body(Full::new(bytes::Bytes::new()))?;
//! request.extensions_mut().insert(ConnectionInfo::new(
//!     Some("192.0.2.7:50000".parse()?),
//!     Some("192.0.2.1:80".parse()?),
//! ));
//! let response = gateway.call(request).await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```
#![doc = include_str!("../../doc/gateway.md")]

mod body;
mod head;
mod params;
mod route;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Request, Response, StatusCode};

use crate::error::Error;
use crate::nonblocking::{Client, ResponseStream};
use crate::request::Params;

pub use crate::cgi::SERVER_SOFTWARE;
pub use body::{DeclaredTooLarge, GatewayBody};
pub use head::{check_request_head, RequestError};
pub use route::{PathError, Route, Script};

/// The tracing target of the gateway's log events.
pub const LOG_TARGET: &str = "fcgi::gateway";
/// Default largest request body: 64 MiB (413 above).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Default part of a request body kept in memory while it is read before
/// the request: 1 MiB; the rest goes to a temporary file.
pub const DEFAULT_BUFFER_MEMORY_BYTES: usize = 1024 * 1024;
/// Default longest wait for the next bytes of a request body: 60 s (nginx's
/// `client_body_timeout`).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Response body bytes already there when the head arrives that are sent
/// with it (a response that fits is sent whole, with Content-Length):
/// 64 KiB. Nothing waits for more: later bytes stream as they come.
pub const EAGER_BODY_BYTES: usize = 64 * 1024;
/// Default directory index and front controller: `index.php`.
pub const DEFAULT_INDEX: &str = "index.php";
/// Default script extension: `.php`.
pub const DEFAULT_EXTENSION: &str = ".php";

/// A boxed error, as `http_body` bodies report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Facts about the client's connection, put in the request's extensions by
/// the server (`request.extensions_mut().insert(info)`). Without it REMOTE_*
/// and SERVER_ADDR/SERVER_PORT are left out and the scheme is `http`. Made
/// with [`ConnectionInfo::new`] (more facts may come, so it is not built
/// field by field).
///
/// ```
/// use fcgi::gateway::ConnectionInfo;
/// let info = ConnectionInfo::new(Some("192.0.2.7:50000".parse().unwrap()), None).secure(true);
/// assert_eq!(info.peer.map(|peer| peer.port()), Some(50000));
/// assert!(info.secure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The client's address (REMOTE_ADDR, REMOTE_PORT).
    pub peer: Option<SocketAddr>,
    /// The address the client connected to (SERVER_ADDR, SERVER_PORT).
    pub local: Option<SocketAddr>,
    /// The connection is TLS (HTTPS=on, REQUEST_SCHEME=https).
    pub secure: bool,
}

impl ConnectionInfo {
    /// A plain (not TLS) connection from `peer` to `local`.
    pub fn new(peer: Option<SocketAddr>, local: Option<SocketAddr>) -> ConnectionInfo {
        ConnectionInfo {
            peer,
            local,
            secure: false,
        }
    }

    /// Sets whether the connection is TLS.
    pub fn secure(mut self, secure: bool) -> ConnectionInfo {
        self.secure = secure;
        self
    }
}

/// The gateway's settings (see [`GatewayBuilder`]).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) document_root: PathBuf,
    pub(crate) index: Option<String>,
    pub(crate) front_controller: bool,
    pub(crate) extensions: Vec<String>,
    pub(crate) allow_underscore_headers: bool,
    pub(crate) deny_hidden: bool,
    pub(crate) max_body_bytes: u64,
    pub(crate) buffer_memory_bytes: usize,
    pub(crate) stream_request_bodies: bool,
    pub(crate) body_read_timeout: Duration,
    pub(crate) spool_dir: Option<PathBuf>,
    pub(crate) server_name: Option<String>,
    pub(crate) extra_params: Params,
}

impl Settings {
    pub(crate) fn is_script_name(&self, name: &str) -> bool {
        self.extensions
            .iter()
            .any(|ext| name.len() > ext.len() && name.ends_with(ext.as_str()))
    }
}

/// Builds a [`Gateway`].
///
/// ```
/// use fcgi::gateway::Gateway;
/// let dir = tempfile::tempdir().unwrap();
/// let client = fcgi::AsyncClient::new("127.0.0.1:9000").unwrap();
/// let gateway = Gateway::builder(dir.path())
///     .index("app.php")
///     .extensions([".php", ".phtml"])
///     .max_body_bytes(8 * 1024 * 1024)
///     .param("APP_ENV", "prod")
///     .build(client)
///     .unwrap();
/// assert!(gateway.document_root().is_absolute());
/// ```
#[derive(Debug, Clone)]
pub struct GatewayBuilder {
    settings: Settings,
}

impl GatewayBuilder {
    /// The directory index and front controller file name (default
    /// [`DEFAULT_INDEX`]); it must have a script extension.
    pub fn index(mut self, name: impl Into<String>) -> GatewayBuilder {
        self.settings.index = Some(name.into());
        self
    }

    /// No directory index and no front controller.
    pub fn no_index(mut self) -> GatewayBuilder {
        self.settings.index = None;
        self
    }

    /// Send paths that name nothing to the index at the root (default on).
    pub fn front_controller(mut self, on: bool) -> GatewayBuilder {
        self.settings.front_controller = on;
        self
    }

    /// The extensions of files sent to FastCGI (default
    /// [`DEFAULT_EXTENSION`]); a missing leading dot is added (`php` is
    /// `.php`, so `xphp` does not match), empty ones are ignored. Matching
    /// is case-sensitive, like nginx's `location ~ \.php$`.
    pub fn extensions<I, S>(mut self, extensions: I) -> GatewayBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings.extensions = extensions
            .into_iter()
            .map(Into::into)
            .filter(|e: &String| !e.trim_start_matches('.').is_empty())
            .map(|e| {
                if e.starts_with('.') {
                    e
                } else {
                    format!(".{e}")
                }
            })
            .collect();
        self
    }

    /// Pass request headers whose names contain underscores (default off:
    /// they are dropped, as nginx's `underscores_in_headers off`).
    pub fn allow_underscore_headers(mut self, on: bool) -> GatewayBuilder {
        self.settings.allow_underscore_headers = on;
        self
    }

    /// Answer 404 for paths with a segment starting with `.` (except
    /// `.well-known`): `.git`, `.env`, `.htaccess` (default on).
    pub fn deny_hidden(mut self, on: bool) -> GatewayBuilder {
        self.settings.deny_hidden = on;
        self
    }

    /// Largest request body (default [`DEFAULT_MAX_BODY_BYTES`]); larger
    /// ones get 413 Payload Too Large, before anything is sent upstream when
    /// the length is declared.
    pub fn max_body_bytes(mut self, max: u64) -> GatewayBuilder {
        self.settings.max_body_bytes = max;
        self
    }

    /// How much of a request body is kept in memory while it is read before
    /// the request (default [`DEFAULT_BUFFER_MEMORY_BYTES`]); the rest goes
    /// to a temporary file (in [`GatewayBuilder::spool_dir`]).
    pub fn buffer_memory_bytes(mut self, max: usize) -> GatewayBuilder {
        self.settings.buffer_memory_bytes = max;
        self
    }

    /// Stream request bodies with a declared length straight to the
    /// application instead of reading them whole first (default off).
    ///
    /// **Risk**: a client that sends its body slowly then holds a PHP
    /// worker for as long as it takes (up to the body read timeout between
    /// two reads, and the request's time limit overall); a few such clients
    /// can occupy a whole pool. Turn it on only behind a front server that
    /// buffers bodies itself, or for uploads too large to keep on disk.
    /// Bodies without a length are always read first (PHP needs
    /// CONTENT_LENGTH).
    pub fn stream_request_bodies(mut self, on: bool) -> GatewayBuilder {
        self.settings.stream_request_bodies = on;
        self
    }

    /// The longest wait for the next bytes of a request body (default
    /// [`DEFAULT_BODY_READ_TIMEOUT`], as nginx's `client_body_timeout`);
    /// past it the request is answered 408 Request Timeout and the
    /// connection closed.
    pub fn body_read_timeout(mut self, timeout: Duration) -> GatewayBuilder {
        self.settings.body_read_timeout = timeout;
        self
    }

    /// Where request bodies larger than [`GatewayBuilder::buffer_memory_bytes`]
    /// are kept while they are read (default: the system's temporary
    /// directory).
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> GatewayBuilder {
        self.settings.spool_dir = Some(dir.into());
        self
    }

    /// SERVER_NAME (default: the request's Host without its port, else the
    /// local address).
    pub fn server_name(mut self, name: impl Into<String>) -> GatewayBuilder {
        self.settings.server_name = Some(name.into());
        self
    }

    /// A parameter added to every request (after the computed ones, so it
    /// can override them).
    pub fn param(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> GatewayBuilder {
        self.settings.extra_params.set(name, value);
        self
    }

    /// The gateway over `client`. Fails when the document root is not a
    /// directory; the root is made absolute (symbolic links resolved).
    pub fn build(mut self, client: Client) -> io::Result<Gateway> {
        let root = std::fs::canonicalize(&self.settings.document_root).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "document root {}: {e}",
                    self.settings.document_root.display()
                ),
            )
        })?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("document root {} is not a directory", root.display()),
            ));
        }
        self.settings.document_root = root;
        Ok(Gateway {
            client,
            settings: Arc::new(self.settings),
        })
    }
}

/// Runs HTTP requests as FastCGI requests (see the [module docs](self)).
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    client: Client,
    settings: Arc<Settings>,
}

impl Gateway {
    /// A builder for a gateway serving `document_root`.
    pub fn builder(document_root: impl Into<PathBuf>) -> GatewayBuilder {
        GatewayBuilder {
            settings: Settings {
                document_root: document_root.into(),
                index: Some(DEFAULT_INDEX.to_string()),
                front_controller: true,
                extensions: vec![DEFAULT_EXTENSION.to_string()],
                allow_underscore_headers: false,
                deny_hidden: true,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                buffer_memory_bytes: DEFAULT_BUFFER_MEMORY_BYTES,
                stream_request_bodies: false,
                body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
                spool_dir: None,
                server_name: None,
                extra_params: Params::new(),
            },
        }
    }

    /// The (absolute) document root.
    pub fn document_root(&self) -> &Path {
        &self.settings.document_root
    }

    /// The async client requests go through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Where a URI path (percent-encoded, without the query) leads.
    ///
    /// ```
    /// use fcgi::gateway::{Gateway, PathError, Route};
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(dir.path().join("index.php"), "<?php").unwrap();
    /// std::fs::write(dir.path().join("logo.png"), "png").unwrap();
    /// let gateway = Gateway::builder(dir.path())
    ///     .build(fcgi::AsyncClient::new("127.0.0.1:9000").unwrap())
    ///     .unwrap();
    /// let Route::Script(script) = gateway.resolve("/index.php/a/b").unwrap() else { panic!() };
    /// assert_eq!((script.script_name.as_str(), script.path_info.as_str()), ("/index.php", "/a/b"));
    /// assert!(matches!(gateway.resolve("/logo.png").unwrap(), Route::Static(_)));
    /// assert!(matches!(gateway.resolve("/blog/post/1").unwrap(), Route::Script(s) if s.front_controller));
    /// assert_eq!(gateway.resolve("/logo.png/x.php").unwrap(), Route::NotFound);
    /// assert_eq!(gateway.resolve("/%2e%2e/etc/passwd"), Err(PathError::OutsideRoot));
    /// ```
    pub fn resolve(&self, path: &str) -> Result<Route, PathError> {
        route::resolve(&self.settings, path)
    }

    /// The CGI parameters for running `script` for this request, with a body
    /// of `content_length` bytes (`None`: no body).
    pub fn params(
        &self,
        parts: &http::request::Parts,
        conn: &ConnectionInfo,
        script: &Script,
        content_length: Option<u64>,
    ) -> Params {
        params::build(&self.settings, parts, conn, script, content_length)
    }

    /// Checks the request head ([`check_request_head`]), resolves its path
    /// and answers it: runs the script, or answers 400 (bad head or path),
    /// 501 (a transfer coding other than chunked), 301 (directory without
    /// its slash) or 404 (nothing there, or a file that is not a script).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<GatewayBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if let Some(refused) = refuse_bad_head(&request) {
            return refused;
        }
        let route = match self.resolve(request.uri().path()) {
            Ok(route) => route,
            Err(error) => {
                tracing::info!(target: LOG_TARGET, uri = %request.uri(), %error, "bad request path");
                return plain(StatusCode::BAD_REQUEST);
            }
        };
        match route {
            Route::Script(script) => self.run_checked(request, &script).await,
            Route::AddSlash => add_slash(request.uri()),
            Route::Static(_) | Route::NotFound => plain(StatusCode::NOT_FOUND),
        }
    }

    /// Runs `script` (from [`Gateway::resolve`]) for this request: the head
    /// is checked ([`check_request_head`]), the body read whole (or
    /// streamed, see [`GatewayBuilder::stream_request_bodies`]), the
    /// response streams back framed by what the gateway knows (see
    /// [`GatewayBody`]).
    pub async fn run<B>(&self, request: Request<B>, script: &Script) -> Response<GatewayBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if let Some(refused) = refuse_bad_head(&request) {
            return refused;
        }
        self.run_checked(request, script).await
    }

    /// [`Gateway::run`] for a request whose head was checked.
    async fn run_checked<B>(&self, request: Request<B>, script: &Script) -> Response<GatewayBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let conn = parts
            .extensions
            .get::<ConnectionInfo>()
            .copied()
            .unwrap_or_default();
        let declared = match parts.headers.get(CONTENT_LENGTH) {
            Some(value) => match value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(len) => Some(len),
                None => return closing(plain(StatusCode::BAD_REQUEST)),
            },
            None => None,
        };
        let (body, len) = match body::prepare(&self.settings, body, declared).await {
            Ok(prepared) => prepared,
            Err(body::BodyError::TooLarge) => {
                tracing::info!(target: LOG_TARGET, uri = %parts.uri, max = self.settings.max_body_bytes, "request body too large");
                return closing(plain(StatusCode::PAYLOAD_TOO_LARGE));
            }
            Err(body::BodyError::TimedOut(error)) => {
                tracing::info!(target: LOG_TARGET, uri = %parts.uri, %error, "the client stopped sending its request body");
                return closing(plain(StatusCode::REQUEST_TIMEOUT));
            }
            Err(body::BodyError::Read(error)) => {
                tracing::info!(target: LOG_TARGET, uri = %parts.uri, %error, "reading the request body failed");
                return closing(plain(StatusCode::BAD_REQUEST));
            }
        };
        let params = self.params(&parts, &conn, script, len);
        let request = crate::Request::new().params_from(params).body(body);
        let stream = match self.client.stream(request).await {
            Ok(stream) => stream,
            Err(error) => return upstream_error(&error, &parts),
        };
        let Some((mut response, framing)) = into_http_parts(&stream) else {
            return plain(StatusCode::BAD_GATEWAY);
        };
        let body = match body::gather(stream, EAGER_BODY_BYTES, framing.content_length).await {
            Ok(body) => body,
            Err(error) => return upstream_error(&error, &parts),
        };
        let status = response.status();
        let bodiless = parts.method == http::Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if bodiless {
            // No body goes out; a declared length still describes the
            // representation (HEAD, 304), as the script meant it.
            if let Some(len) = framing
                .content_length
                .filter(|_| status != StatusCode::NO_CONTENT)
            {
                response
                    .headers_mut()
                    .insert(CONTENT_LENGTH, HeaderValue::from(len));
            }
            return response.map(|()| GatewayBody::empty());
        }
        response.map(|()| body.framed(framing.content_length))
    }
}

impl<B> tower_service::Service<Request<B>> for Gateway
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<GatewayBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let gateway = self.clone();
        Box::pin(async move { Ok(gateway.handle(request).await) })
    }
}

/// Response headers that describe the connection, not the response: the
/// HTTP server frames the body itself, so none of these is ever taken from
/// the script (nor any header the script's `Connection` names).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// The FastCGI response as an HTTP response: status from `Status` (302 for
/// a bare `Location`), every header line kept in order with its
/// repetitions, the body streaming and framed as [`Framing`] says.
pub fn into_http(stream: ResponseStream) -> Response<GatewayBody> {
    match into_http_parts(&stream) {
        Some((response, framing)) => {
            response.map(|()| GatewayBody::stream(stream).framed(framing.content_length))
        }
        None => plain(StatusCode::BAD_GATEWAY),
    }
}

/// How a response body from the script is framed: by the script's own
/// `Content-Length` when it sent exactly one valid value (the body is then
/// cut at that length, and a body that ends short is an error that makes
/// the HTTP server close the connection, as nginx does), else by the
/// gateway (the real length of a body that is complete when the head is
/// sent, chunked otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Framing {
    /// The script's `Content-Length`, when valid.
    pub content_length: Option<u64>,
}

/// The status and headers of [`into_http`], and the script's declared
/// length; `None` for a status the gateway does not pass on (invalid, or
/// 1xx: a script cannot switch protocols).
fn into_http_parts(stream: &ResponseStream) -> Option<(Response<()>, Framing)> {
    body::log_stderr(stream.stderr());
    let status = match StatusCode::from_u16(stream.status()) {
        Ok(status) if !status.is_informational() => status,
        _ => {
            tracing::error!(target: LOG_TARGET, status = stream.status(), "upstream sent a status the gateway does not pass on");
            return None;
        }
    };
    let headers = stream.headers();
    let named_by_connection: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .map(|token| String::from_utf8_lossy(token).trim().to_ascii_lowercase())
        .collect();
    let mut lengths = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| {
            std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
        });
    let first = lengths.next();
    let content_length = match first {
        None => None,
        Some(first) if lengths.all(|other| other.is_some() && other == first) => first,
        Some(_) => None,
    };
    if first.is_some() && content_length.is_none() {
        tracing::warn!(target: LOG_TARGET, "upstream sent an invalid or conflicting Content-Length; dropped, the gateway frames the body");
    }
    let mut builder = Response::builder().status(status);
    if let Some(map) = builder.headers_mut() {
        for (name, value) in headers.iter() {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) else {
                tracing::warn!(target: LOG_TARGET, header = name, "upstream sent an invalid response header; dropped");
                continue;
            };
            let text = name.as_str();
            if name == CONTENT_LENGTH
                || HOP_BY_HOP.contains(&text)
                || text.starts_with("x-accel-")
                || named_by_connection.iter().any(|n| n == text)
            {
                continue;
            }
            map.append(name, value);
        }
    }
    let response = builder.body(()).ok()?;
    Some((response, Framing { content_length }))
}

/// The status a failed upstream request is answered with: 504 for a time
/// limit, 408 and 400 for the client's request body or a request that
/// cannot be sent, 500 for a fault of fcgi itself ([`Error::Internal`]: the
/// gateway failed, not the upstream), and 502 for everything the upstream
/// did wrong or could not do (unreachable, closed, broke the protocol,
/// rejected the request, sent more than a limit allows).
pub fn error_status(error: &Error) -> StatusCode {
    match error {
        Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        Error::Body(e) if e.kind() == io::ErrorKind::TimedOut => StatusCode::REQUEST_TIMEOUT,
        Error::Body(_) | Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        Error::InvalidAddress(_)
        | Error::Connect { .. }
        | Error::ConnectionClosed { .. }
        | Error::Protocol { .. }
        | Error::Rejected { .. }
        | Error::LimitExceeded { .. }
        | Error::Spawn { .. }
        | Error::Io { .. } => StatusCode::BAD_GATEWAY,
    }
}

fn upstream_error(error: &Error, parts: &http::request::Parts) -> Response<GatewayBody> {
    let status = error_status(error);
    tracing::error!(target: LOG_TARGET, method = %parts.method, uri = %parts.uri, status = status.as_u16(), %error, "upstream request failed");
    let response = plain(status);
    if matches!(error, Error::Body(_)) {
        // The client's body was not read to its end.
        closing(response)
    } else {
        response
    }
}

/// The answer to a request whose head fails [`check_request_head`] (400,
/// or 501 for a transfer coding other than chunked, with `Connection:
/// close`), logged; `None` for a sound head. [`Gateway::handle`] and
/// [`Gateway::run`] call it; a server that answers some paths itself
/// (static files) calls it for those.
pub fn refuse_bad_head<B>(request: &Request<B>) -> Option<Response<GatewayBody>> {
    let error = head::check_head(request.version(), request.uri(), request.headers()).err()?;
    tracing::info!(target: LOG_TARGET, uri = %request.uri(), %error, "bad request head");
    Some(closing(plain(error.status())))
}

/// `response` with `Connection: close`: for answers given before the
/// request's body was read to its end, after which the connection cannot
/// carry another request.
fn closing(mut response: Response<GatewayBody>) -> Response<GatewayBody> {
    response
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A short text response of the gateway's own: `"404 Not Found\n"`.
pub fn plain(status: StatusCode) -> Response<GatewayBody> {
    let text = format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(GatewayBody::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// 301 to the same path with a `/` added (query kept).
fn add_slash(uri: &http::Uri) -> Response<GatewayBody> {
    // One leading slash only: `//host/dir` must not become a redirect to
    // another host.
    let mut location = format!("/{}/", uri.path().trim_start_matches('/'));
    if let Some(query) = uri.query() {
        location.push('?');
        location.push_str(query);
    }
    let mut response = plain(StatusCode::MOVED_PERMANENTLY);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::Gateway;

    #[test]
    fn extensions_get_their_dot_and_empty_ones_are_ignored() {
        let b = Gateway::builder("/").extensions(["php", ".inc", ".", ""]);
        assert_eq!(b.settings.extensions, [".php", ".inc"]);
        assert!(b.settings.is_script_name("a.php"));
        assert!(!b.settings.is_script_name("axphp"));
        assert!(!b.settings.is_script_name(".php"));
    }
}
