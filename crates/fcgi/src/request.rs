//! What a caller sends: ordered parameters, a role, and a body.

use std::fmt;
use std::io::Read;

use bytes::Bytes;

use crate::cgi::CgiParams;
use crate::config::Config;
use crate::error::Error;
use crate::exchange::{encode_request_start, SINGLE_REQUEST_ID};
pub use fcgi_proto::record::Role;

/// Ordered FastCGI parameters (the CGI environment). Names are kept in
/// insertion order; [`Params::set`] replaces an existing value in place.
///
/// ```
/// use fcgi::Params;
/// let mut params = Params::new();
/// params.set("REQUEST_METHOD", "GET");
/// params.set("QUERY_STRING", "");
/// params.set("REQUEST_METHOD", "POST");
/// params.remove("QUERY_STRING");
/// assert_eq!(params.get("REQUEST_METHOD"), Some(&b"POST"[..]));
/// assert_eq!(params.len(), 1);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Params {
    /// No parameters.
    pub fn new() -> Params {
        Params::default()
    }

    /// Sets `name` to `value`, replacing an earlier value of the same name
    /// (names are case-sensitive, as in a CGI environment).
    pub fn set(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Params {
        let (name, value) = (name.as_ref(), value.as_ref());
        match self.pairs.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value.to_vec(),
            None => self.pairs.push((name.to_vec(), value.to_vec())),
        }
        self
    }

    /// Sets `name` only when it is not set yet.
    pub fn set_default(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Params {
        if self.get(name.as_ref()).is_none() {
            self.set(name, value);
        }
        self
    }

    /// Removes `name`; returns its value if it was set.
    pub fn remove(&mut self, name: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let name = name.as_ref();
        let at = self.pairs.iter().position(|(n, _)| n == name)?;
        Some(self.pairs.remove(at).1)
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        let name = name.as_ref();
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// All pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pairs.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when no pair is set.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(N, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Params {
        let mut params = Params::new();
        for (n, v) in iter {
            params.set(n, v);
        }
        params
    }
}

/// A request body: nothing, bytes in memory (which can be sent again when a
/// stale kept connection forces a retry), a reader streamed as it is read, or
/// (for the async client only) an async source, see [`AsyncBody`].
#[derive(Default)]
pub enum Body {
    /// No body; the empty STDIN record is still sent.
    #[default]
    Empty,
    /// Bytes in memory; replayable.
    Bytes(Bytes),
    /// A reader and, when known, its exact length (used for CONTENT_LENGTH).
    Reader {
        /// The source of the body.
        reader: Box<dyn Read + Send>,
        /// Its length in bytes, when known.
        len: Option<u64>,
    },
    /// An async source (an `AsyncRead` or a `Stream` of `Bytes`), made with
    /// `Body::from_async_read` or `Body::from_stream` (feature `tokio`).
    /// Only the async client ([`crate::nonblocking`]) can send it; the
    /// blocking client refuses it before sending anything.
    Async(AsyncBody),
}

/// An async request body source: not replayable, read once as it is sent.
/// Built by `Body::from_async_read` / `Body::from_stream` (feature `tokio`).
pub struct AsyncBody {
    // Only the async client reads it; without the feature it cannot exist.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) source: AsyncSource,
    pub(crate) len: Option<u64>,
}

/// Where an [`AsyncBody`] comes from. Without the `tokio` feature it has no
/// variant, so an `AsyncBody` cannot exist.
pub(crate) enum AsyncSource {
    #[cfg(feature = "tokio")]
    Read(std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>),
    #[cfg(feature = "tokio")]
    Stream(std::pin::Pin<Box<dyn futures_core::Stream<Item = std::io::Result<Bytes>> + Send>>),
}

impl AsyncBody {
    /// Its length in bytes, when known.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// True when the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }
}

impl fmt::Debug for AsyncBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AsyncBody(len: {:?})", self.len)
    }
}

impl Body {
    /// A body streamed from `reader`, `len` bytes long when known. Without a
    /// length, no CONTENT_LENGTH can be derived and PHP will not see the body
    /// unless the caller sets CONTENT_LENGTH itself.
    pub fn from_reader(reader: impl Read + Send + 'static, len: Option<u64>) -> Body {
        Body::Reader {
            reader: Box::new(reader),
            len,
        }
    }

    /// A body read from an async reader, `len` bytes long when known (see
    /// [`Body::from_reader`] about the length). Only the async client can
    /// send it. Not replayable.
    ///
    /// ```
    /// let body = fcgi::Body::from_async_read(&b"a=1"[..], Some(3));
    /// assert_eq!(body.len(), Some(3));
    /// ```
    #[cfg(feature = "tokio")]
    pub fn from_async_read(
        reader: impl tokio::io::AsyncRead + Send + 'static,
        len: Option<u64>,
    ) -> Body {
        Body::Async(AsyncBody {
            source: AsyncSource::Read(Box::pin(reader)),
            len,
        })
    }

    /// A body from a stream of byte chunks, `len` bytes long when known.
    /// Empty chunks are skipped; an `Err` item fails the request with
    /// [`crate::Error::Body`]. Only the async client can send it. Not
    /// replayable.
    #[cfg(feature = "tokio")]
    pub fn from_stream<S>(stream: S, len: Option<u64>) -> Body
    where
        S: futures_core::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        Body::Async(AsyncBody {
            source: AsyncSource::Stream(Box::pin(stream)),
            len,
        })
    }

    /// The length, when known.
    pub fn len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Reader { len, .. } => *len,
            Body::Async(body) => body.len,
        }
    }

    /// True for a body known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// True when the body can be sent again (it is in memory).
    pub fn is_replayable(&self) -> bool {
        !matches!(self, Body::Reader { .. } | Body::Async(_))
    }

    /// A copy of a body held in memory (cheap: the bytes are shared), to
    /// send it again; a body read from a reader gives [`Body::Empty`].
    pub(crate) fn replay_copy(&self) -> Body {
        match self {
            Body::Bytes(bytes) => Body::Bytes(bytes.clone()),
            _ => Body::Empty,
        }
    }

    /// The body for one attempt at sending a request (both clients): a
    /// copy when it is in memory, so that a retry on a fresh connection can
    /// send it again; else the body itself, which can be sent once.
    pub(crate) fn take_for_attempt(&mut self) -> Body {
        if self.is_replayable() {
            self.replay_copy()
        } else {
            std::mem::take(self)
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Body::Reader { len, .. } => write!(f, "Body::Reader(len: {len:?})"),
            Body::Async(body) => write!(f, "Body::Async(len: {:?})", body.len),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::Bytes(Bytes::from(v))
    }
}

impl From<Bytes> for Body {
    fn from(v: Bytes) -> Body {
        Body::Bytes(v)
    }
}

impl From<String> for Body {
    fn from(v: String) -> Body {
        Body::Bytes(Bytes::from(v))
    }
}

impl From<&'static str> for Body {
    fn from(v: &'static str) -> Body {
        Body::Bytes(Bytes::from_static(v.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(v: &'static [u8]) -> Body {
        Body::Bytes(Bytes::from_static(v))
    }
}

/// A FastCGI request: role, parameters and body.
///
/// ```
/// use fcgi::Request;
/// let request = Request::post("/srv/www/form.php", "application/x-www-form-urlencoded", "a=1&b=2")
///     .param("HTTP_ACCEPT", "text/html");
/// assert_eq!(request.params().get("REQUEST_METHOD"), Some(&b"POST"[..]));
/// assert_eq!(request.params().get("CONTENT_TYPE"), Some(&b"application/x-www-form-urlencoded"[..]));
/// ```
#[derive(Debug, Default)]
pub struct Request {
    pub(crate) role: Role,
    pub(crate) params: Params,
    pub(crate) body: Body,
    pub(crate) data: Body,
}

impl Request {
    /// A Responder request with no parameters and no body.
    pub fn new() -> Request {
        Request::default()
    }

    /// A request for `script_filename` with the method and the parameters
    /// every CGI script expects (REQUEST_METHOD, SCRIPT_FILENAME, SCRIPT_NAME,
    /// REQUEST_URI, DOCUMENT_URI, QUERY_STRING, SERVER_PROTOCOL,
    /// GATEWAY_INTERFACE, and REDIRECT_STATUS, which `php-cgi` requires).
    /// A `?query` suffix becomes QUERY_STRING. Built by
    /// [`crate::cgi::CgiParams`], which has the other CGI variables.
    pub fn with_method(method: &str, script_filename: &str) -> Request {
        Request::for_script(method, script_filename, None)
    }

    /// [`Request::with_method`] with CONTENT_TYPE when given.
    fn for_script(method: &str, script_filename: &str, content_type: Option<&str>) -> Request {
        let (path, query) = script_filename
            .split_once('?')
            .unwrap_or((script_filename, ""));
        let mut cgi = CgiParams::new(method, path).query(query);
        if let Some(content_type) = content_type {
            cgi = cgi.content_type(content_type.as_bytes());
        }
        Request::new().params_from(cgi.build())
    }

    /// A GET request for `script_filename` (see [`Request::with_method`]).
    pub fn get(script_filename: &str) -> Request {
        Request::with_method("GET", script_filename)
    }

    /// A POST request for `script_filename` with a body and its content type.
    pub fn post(script_filename: &str, content_type: &str, body: impl Into<Body>) -> Request {
        Request::for_script("POST", script_filename, Some(content_type)).body(body)
    }

    /// Sets a parameter (replacing one of the same name).
    pub fn param(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Request {
        self.params.set(name, value);
        self
    }

    /// Removes a parameter.
    pub fn without_param(mut self, name: impl AsRef<[u8]>) -> Request {
        self.params.remove(name);
        self
    }

    /// Replaces all parameters.
    pub fn params_from(mut self, params: Params) -> Request {
        self.params = params;
        self
    }

    /// Sets the body. CONTENT_LENGTH is derived from its length when known
    /// and not set explicitly.
    pub fn body(mut self, body: impl Into<Body>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the role (Responder by default).
    pub fn role(mut self, role: Role) -> Request {
        self.role = role;
        self
    }

    /// Sets the DATA stream (the file to filter, for the Filter role).
    pub fn data(mut self, data: impl Into<Body>) -> Request {
        self.data = data.into();
        self
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The parameters, for changing them in place.
    pub fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// The role.
    pub fn get_role(&self) -> Role {
        self.role
    }

    /// The body.
    pub fn get_body(&self) -> &Body {
        &self.body
    }

    /// Fills in CONTENT_LENGTH from the body and checks a given one against
    /// it. Called by the clients before anything is sent.
    pub(crate) fn settle_content_length(&mut self) -> Result<(), crate::Error> {
        let known = self.body.len();
        match (self.params.get("CONTENT_LENGTH"), known) {
            (None, Some(0)) => {}
            (None, Some(len)) => {
                self.params.set("CONTENT_LENGTH", len.to_string());
            }
            (None, None) => {}
            (Some(given), known) => {
                let text = String::from_utf8_lossy(given);
                let given: u64 = text.trim().parse().map_err(|_| {
                    crate::Error::InvalidRequest(format!("CONTENT_LENGTH {text:?} is not a number"))
                })?;
                if let Some(len) = known {
                    if given != len {
                        return Err(crate::Error::InvalidRequest(format!(
                            "CONTENT_LENGTH is {given} but the body is {len} bytes"
                        )));
                    }
                } else if let Body::Reader { len, .. } = &mut self.body {
                    *len = Some(given);
                } else if let Body::Async(body) = &mut self.body {
                    body.len = Some(given);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_derived_from_a_known_body() {
        let mut r = Request::post("/x.php", "text/plain", "hello");
        r.settle_content_length().unwrap();
        assert_eq!(r.params().get("CONTENT_LENGTH"), Some(&b"5"[..]));
    }

    #[test]
    fn empty_body_sets_no_content_length() {
        let mut r = Request::get("/x.php");
        r.settle_content_length().unwrap();
        assert_eq!(r.params().get("CONTENT_LENGTH"), None);
    }

    #[test]
    fn disagreeing_content_length_is_refused() {
        let mut r = Request::post("/x.php", "text/plain", "hello").param("CONTENT_LENGTH", "4");
        let err = r.settle_content_length().unwrap_err();
        assert!(err
            .to_string()
            .contains("CONTENT_LENGTH is 4 but the body is 5 bytes"));
    }

    #[test]
    fn given_content_length_sizes_an_unknown_reader() {
        let mut r = Request::get("/x.php")
            .body(Body::from_reader(&b"abc"[..], None))
            .param("CONTENT_LENGTH", "3");
        r.settle_content_length().unwrap();
        assert_eq!(r.get_body().len(), Some(3));
    }

    #[test]
    fn query_suffix_becomes_query_string() {
        let r = Request::get("/srv/a.php?x=1&y=2");
        assert_eq!(r.params().get("SCRIPT_FILENAME"), Some(&b"/srv/a.php"[..]));
        assert_eq!(r.params().get("QUERY_STRING"), Some(&b"x=1&y=2"[..]));
        assert_eq!(
            r.params().get("REQUEST_URI"),
            Some(&b"/srv/a.php?x=1&y=2"[..])
        );
    }
}

/// Initial capacity of the buffer a request start is encoded into: typical
/// CGI params fit without growing it.
pub(crate) const PREAMBLE_CAPACITY: usize = 1024;

/// A request encoded once by [`crate::Client::prepare`] or
/// [`crate::AsyncClient::prepare`], sent any number of times with
/// [`crate::Client::stream_prepared`] or
/// [`crate::AsyncClient::execute_prepared`]: its params are checked and
/// encoded once, not per request. `Send + Sync`, so tasks and threads can
/// share one.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    role: Role,
    params: Params,
    body: Option<Bytes>,
    data: Option<Bytes>,
    /// BEGIN_REQUEST, PARAMS and, when `inline`, the body with its end.
    preamble: Bytes,
    inline: bool,
    encoding: Encoding,
}

impl PreparedRequest {
    /// Encodes `request` (whose bodies must be in memory) as a client with
    /// `config` and `keep_alive` sends it.
    pub(crate) fn new(
        mut request: Request,
        config: &Config,
        keep_alive: bool,
    ) -> Result<PreparedRequest, Error> {
        request.settle_content_length()?;
        let mut preamble = Vec::with_capacity(PREAMBLE_CAPACITY);
        let inline = encode_request_start(
            SINGLE_REQUEST_ID,
            &request,
            config,
            keep_alive,
            &mut preamble,
        )?;
        let in_memory = |body: Body| match body {
            Body::Empty => Ok(None),
            Body::Bytes(bytes) => Ok(Some(bytes)),
            Body::Reader { .. } | Body::Async(_) => Err(Error::InvalidRequest(
                "a prepared request needs a body in memory (a reader can be sent once)".into(),
            )),
        };
        Ok(PreparedRequest {
            role: request.role,
            body: in_memory(request.body)?,
            data: in_memory(request.data)?,
            params: request.params,
            encoding: Encoding::of(config, keep_alive),
            preamble: Bytes::from(preamble),
            inline,
        })
    }

    /// A copy of the request as prepared (CONTENT_LENGTH filled in).
    pub fn request(&self) -> Request {
        Request {
            role: self.role,
            params: self.params.clone(),
            body: self.body(),
            data: self.data(),
        }
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Its body, sharing the prepared bytes.
    pub fn body(&self) -> Body {
        self.body.clone().map_or(Body::Empty, Body::Bytes)
    }

    /// Its DATA stream (filter role), sharing the prepared bytes.
    pub fn data(&self) -> Body {
        self.data.clone().map_or(Body::Empty, Body::Bytes)
    }

    /// The encoded records (under request id 1) and whether they hold the
    /// body, when they were encoded with these settings; `None` when a
    /// client with other settings must encode the request afresh.
    pub(crate) fn records_for(&self, config: &Config, keep_alive: bool) -> Option<(&Bytes, bool)> {
        (self.encoding == Encoding::of(config, keep_alive)).then_some((&self.preamble, self.inline))
    }
}

/// The settings that shape an encoded request start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Encoding {
    keep_alive: bool,
    split_oversized_params: bool,
    max_params: usize,
}

impl Encoding {
    fn of(config: &Config, keep_alive: bool) -> Encoding {
        Encoding {
            keep_alive,
            split_oversized_params: config.split_oversized_params,
            max_params: config.limits.max_params,
        }
    }
}
