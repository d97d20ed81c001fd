//! [`FakeServer`]: a FastCGI server that misbehaves on purpose.
//!
//! The server listens on `127.0.0.1:0` or on a Unix socket in a temporary
//! directory, and runs the test's handler for every accepted connection in a
//! thread of its own. [`FakeConn`] reads records and writes raw bytes, so a
//! handler can produce any stream: wrong versions, odd padding, truncated
//! records, early closes, interleaved STDERR...
//!
//! Write methods never fail: they return `()` and, once a write has failed
//! (typically because the client went away, which many tests provoke), later
//! writes are skipped; see [`FakeConn::write_error`].
//!
//! Dropping the server stops the accept loop and shuts down every accepted
//! connection, which unblocks handlers waiting on reads; it never hangs.
//!
//! ```no_run
//! use fcgi_testkit::FakeServer;
//! let server = FakeServer::tcp(|conn| {
//!     let req = conn.read_request().expect("a request");
//!     conn.write_stdout(req.id, b"Status: 200 OK\r\n\r\nhi");
//!     conn.write_end(req.id, 0, 0);
//! });
//! let _address = server.address(); // "127.0.0.1:PORT"
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::raw::{self, RawRecord};
use crate::stream::Stream;

/// A connection handler: runs once per accepted connection, in its own thread.
pub trait Handler: Fn(&mut FakeConn) + Send + Sync + 'static {}
impl<F: Fn(&mut FakeConn) + Send + Sync + 'static> Handler for F {}

/// Garbage used for padding bytes and END_REQUEST reserved bytes.
pub const GARBAGE: u8 = 0xA5;

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                Ok(Stream::Unix(s))
            }
        }
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    connections: AtomicUsize,
    finished: AtomicUsize,
    open: Mutex<HashMap<usize, Stream>>,
    panics: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A FastCGI server driven by a test-supplied handler. Stops on drop.
pub struct FakeServer {
    address: String,
    tcp_addr: Option<SocketAddr>,
    unix_path: Option<PathBuf>,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
    _dir: Option<TempDir>,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("address", &self.address)
            .field("connections", &self.connections())
            .finish()
    }
}

impl FakeServer {
    /// Listens on `127.0.0.1:0` and runs `handler` for every connection.
    pub fn tcp(handler: impl Handler) -> FakeServer {
        Self::tcp_on("127.0.0.1", handler)
    }

    /// Listens on a free port of `ip` (another loopback address such as
    /// `127.0.0.2`, to stand for another host) and runs `handler` for every
    /// connection.
    pub fn tcp_on(ip: &str, handler: impl Handler) -> FakeServer {
        let l = TcpListener::bind((ip, 0)).expect("bind a free port for the fake server");
        let addr = l.local_addr().expect("local address of the fake server");
        l.set_nonblocking(true)
            .expect("make the fake listener non-blocking");
        Self::run(
            Listener::Tcp(l),
            addr.to_string(),
            Some(addr),
            None,
            None,
            handler,
        )
    }

    /// Listens on a Unix socket in a fresh temporary directory and runs
    /// `handler` for every connection.
    pub fn unix(handler: impl Handler) -> FakeServer {
        let dir = tempfile::Builder::new()
            .prefix("fcgi-fake-")
            .tempdir()
            .expect("create a temporary directory for the fake server");
        let path = dir.path().join("fake.sock");
        let l = UnixListener::bind(&path).expect("bind the fake server's Unix socket");
        l.set_nonblocking(true)
            .expect("make the fake listener non-blocking");
        let address = format!("unix:{}", path.display());
        Self::run(
            Listener::Unix(l),
            address,
            None,
            Some(path),
            Some(dir),
            handler,
        )
    }

    fn run(
        listener: Listener,
        address: String,
        tcp_addr: Option<SocketAddr>,
        unix_path: Option<PathBuf>,
        dir: Option<TempDir>,
        handler: impl Handler,
    ) -> FakeServer {
        let shared = Arc::new(Shared::default());
        let handler = Arc::new(handler);
        let s = Arc::clone(&shared);
        let accept_thread = thread::spawn(move || accept_loop(listener, s, handler));
        FakeServer {
            address,
            tcp_addr,
            unix_path,
            shared,
            accept_thread: Some(accept_thread),
            _dir: dir,
        }
    }

    /// `"127.0.0.1:PORT"` or `"unix:/path"`.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// The TCP address, for a TCP server.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The socket path, for a Unix server.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many handlers have returned (or panicked) so far.
    pub fn finished(&self) -> usize {
        self.shared.finished.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` connections were accepted; `false` on timeout.
    pub fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.connections() >= n)
    }

    /// Waits until at least `n` handlers have returned; `false` on timeout.
    pub fn wait_for_finished(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.finished() >= n)
    }

    /// Waits until every accepted connection's handler has returned (panics
    /// after 30 s), then 100 ms for their threads to be reaped: for tests
    /// that count this process's threads and file descriptors.
    pub fn settle(&self) {
        assert!(
            wait_until(Duration::from_secs(30), || self.finished()
                >= self.connections()),
            "fake server handlers did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Checks that a load against this server leaves nothing behind in this
    /// process: runs `load(warm_up)` first (allocator arenas, runtime
    /// threads, lazily made statics), then `load(requests)` between two
    /// measurements, letting the handlers finish after each; panics if the
    /// measured round left open file descriptors or threads, more than
    /// `max_rss_growth_kb` KiB of resident memory, or a handler panicked.
    pub fn assert_load_leaves_no_growth(
        &self,
        mut load: impl FnMut(usize),
        warm_up: usize,
        requests: usize,
        max_rss_growth_kb: u64,
    ) {
        load(warm_up);
        self.settle();
        let before = crate::usage::Usage::now();
        load(requests);
        self.settle();
        let after = crate::usage::Usage::now();
        crate::usage::assert_no_growth(before, after, max_rss_growth_kb);
        let panics = self.handler_panics();
        assert!(panics.is_empty(), "{panics:?}");
    }

    /// Panic messages of handlers that panicked (an assertion in a handler
    /// does not fail the test by itself: check this).
    pub fn handler_panics(&self) -> Vec<String> {
        lock(&self.shared.panics).clone()
    }

    /// Stops accepting and shuts down every accepted connection. Idempotent;
    /// also done on drop.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        for (_, s) in lock(&self.shared.open).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn accept_loop<H: Handler>(listener: Listener, shared: Arc<Shared>, handler: Arc<H>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok(stream) => {
                let index = shared.connections.fetch_add(1, Ordering::SeqCst);
                if let Ok(clone) = stream.try_clone() {
                    lock(&shared.open).insert(index, clone);
                }
                let handler = Arc::clone(&handler);
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let mut conn = FakeConn::new(stream, Some((Arc::clone(&shared), index)));
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        handler(&mut conn)
                    }));
                    if let Err(p) = result {
                        let msg = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "non-string panic".to_string());
                        lock(&shared.panics).push(msg);
                    }
                    // The connection closes when the handler returns.
                    conn.unregister();
                    drop(conn);
                    shared.finished.fetch_add(1, Ordering::SeqCst);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// What [`FakeConn::read_request`] received for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// Request id of BEGIN_REQUEST.
    pub id: u16,
    /// Role of BEGIN_REQUEST (1 responder, 2 authorizer, 3 filter).
    pub role: u16,
    /// Whether `FCGI_KEEP_CONN` was set.
    pub keep_conn: bool,
    /// The raw flags byte of BEGIN_REQUEST.
    pub flags: u8,
    /// Decoded params, in order.
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
    /// The whole STDIN stream.
    pub stdin: Vec<u8>,
    /// The whole DATA stream (FILTER role only).
    pub data: Vec<u8>,
    /// How many PARAMS records carried content.
    pub params_records: usize,
    /// Content length of every non-empty PARAMS record, in order.
    pub params_record_sizes: Vec<usize>,
    /// Content length of every non-empty STDIN record, in order.
    pub stdin_record_sizes: Vec<usize>,
    /// Whether some name-value pair was split across two PARAMS records
    /// (legal FastCGI, but php-fpm resets the connection).
    pub pair_split_across_records: bool,
    /// Records received with other types or ids while reading this request
    /// (ABORT_REQUEST, management records, other request ids...).
    pub other_records: Vec<RawRecord>,
}

impl ReceivedRequest {
    /// The value of the first param named `name`.
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The value of param `name`, lossily decoded.
    pub fn param_str(&self, name: &str) -> Option<String> {
        self.param(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// One accepted connection, handed to the handler.
pub struct FakeConn {
    stream: Stream,
    write_error: Option<io::Error>,
    registry: Option<(Arc<Shared>, usize)>,
}

impl std::fmt::Debug for FakeConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeConn")
            .field("stream", &self.stream)
            .field("write_failed", &self.write_failed())
            .finish()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn eof(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg.to_string())
}

impl FakeConn {
    fn new(stream: Stream, registry: Option<(Arc<Shared>, usize)>) -> FakeConn {
        FakeConn {
            stream,
            write_error: None,
            registry,
        }
    }

    /// Drops the server's extra handle on this connection, so that dropping
    /// the stream really closes the socket.
    fn unregister(&mut self) {
        if let Some((shared, index)) = self.registry.take() {
            drop(lock(&shared.open).remove(&index));
        }
    }

    /// The raw stream, for any Read/Write the helpers do not cover.
    pub fn stream(&mut self) -> &mut Stream {
        &mut self.stream
    }

    /// The first write error, if a write failed (later writes were skipped).
    pub fn write_error(&self) -> Option<&io::Error> {
        self.write_error.as_ref()
    }

    /// Whether a write failed.
    pub fn write_failed(&self) -> bool {
        self.write_error.is_some()
    }

    /// Sets a read timeout for the following reads.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        let _ = self.stream.set_read_timeout(timeout);
    }

    /// Reads one record; `Ok(None)` on EOF at a record boundary.
    pub fn read_record(&mut self) -> io::Result<Option<RawRecord>> {
        raw::read_record(&mut self.stream)
    }

    /// Reads every byte until the client closes (or the server stops).
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.stream.read_to_end(&mut out);
        out
    }

    /// Reads BEGIN_REQUEST, PARAMS until the empty PARAMS record, STDIN until
    /// the empty STDIN record, and for FILTER also DATA until the empty DATA
    /// record. Streams may arrive in any order. Records of other types or
    /// request ids are kept in [`ReceivedRequest::other_records`]. EOF before
    /// the end is `UnexpectedEof`; a first record that is not BEGIN_REQUEST or
    /// undecodable params are `InvalidData`.
    pub fn read_request(&mut self) -> io::Result<ReceivedRequest> {
        let mut req = self.read_begin_and_params()?;
        let id = req.id;
        let (mut stdin_done, mut data_done) = (false, req.role != raw::FILTER);
        while !(stdin_done && data_done) {
            let rec = self
                .read_record()?
                .ok_or_else(|| eof("EOF before the end of STDIN/DATA"))?;
            match rec.record_type {
                raw::STDIN if rec.request_id == id && !stdin_done => {
                    if rec.content.is_empty() {
                        stdin_done = true;
                    } else {
                        req.stdin_record_sizes.push(rec.content.len());
                        req.stdin.extend_from_slice(&rec.content);
                    }
                }
                raw::DATA if rec.request_id == id && !data_done => {
                    if rec.content.is_empty() {
                        data_done = true;
                    } else {
                        req.data.extend_from_slice(&rec.content);
                    }
                }
                _ => req.other_records.push(rec),
            }
        }
        Ok(req)
    }

    /// Reads BEGIN_REQUEST and PARAMS up to the empty PARAMS record, and stops
    /// there (STDIN is left unread: see [`FakeConn::read_stdin`]). Other
    /// records met on the way (STDIN sent early...) are kept in
    /// `other_records`.
    pub fn read_begin_and_params(&mut self) -> io::Result<ReceivedRequest> {
        let begin = self
            .read_record()?
            .ok_or_else(|| eof("EOF before BEGIN_REQUEST"))?;
        if begin.record_type != raw::BEGIN_REQUEST || begin.content.len() < 3 {
            return Err(invalid(format!(
                "expected BEGIN_REQUEST, got type {} with {} content bytes",
                begin.record_type,
                begin.content.len()
            )));
        }
        let c = &begin.content;
        let mut req = ReceivedRequest {
            id: begin.request_id,
            role: u16::from_be_bytes([c[0], c[1]]),
            flags: c[2],
            keep_conn: c[2] & raw::KEEP_CONN != 0,
            ..ReceivedRequest::default()
        };
        let mut all = Vec::new();
        let mut per_record_ok = true;
        loop {
            let rec = self
                .read_record()?
                .ok_or_else(|| eof("EOF before the empty PARAMS record"))?;
            if rec.record_type == raw::PARAMS && rec.request_id == req.id {
                if rec.content.is_empty() {
                    break;
                }
                per_record_ok &= raw::decode_pairs(&rec.content).is_ok();
                req.params_records += 1;
                req.params_record_sizes.push(rec.content.len());
                all.extend_from_slice(&rec.content);
            } else {
                req.other_records.push(rec);
            }
        }
        req.params =
            raw::decode_pairs(&all).map_err(|e| invalid(format!("bad PARAMS stream: {e}")))?;
        req.pair_split_across_records = !per_record_ok;
        Ok(req)
    }

    /// After [`FakeConn::read_begin_and_params`]: reads STDIN records of
    /// request `id` until the empty one; returns the body. Other records are
    /// skipped.
    pub fn read_stdin(&mut self, id: u16) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let rec = self
                .read_record()?
                .ok_or_else(|| eof("EOF before the empty STDIN record"))?;
            if rec.record_type == raw::STDIN && rec.request_id == id {
                if rec.content.is_empty() {
                    return Ok(out);
                }
                out.extend_from_slice(&rec.content);
            }
        }
    }

    /// Writes `bytes` as they are (skipped after an earlier write error).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        if self.write_error.is_some() {
            return;
        }
        if let Err(e) = self
            .stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush())
        {
            self.write_error = Some(e);
        }
    }

    /// Writes `bytes`, reporting the error (ignores an earlier write error).
    pub fn try_write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Writes one record with any version and type, and `padding` garbage
    /// padding bytes.
    ///
    /// # Panics
    /// If `content` exceeds 65535 bytes (use [`FakeConn::write_raw`] for that).
    pub fn write_record(
        &mut self,
        version: u8,
        record_type: u8,
        request_id: u16,
        content: &[u8],
        padding: u8,
    ) {
        let bytes = raw::record_with(version, record_type, request_id, content, padding);
        self.write_raw(&bytes);
    }

    fn write_stream(&mut self, record_type: u8, id: u16, data: &[u8]) {
        let mut bytes = Vec::with_capacity(data.len() + 16 * (data.len() / raw::FPM_CHUNK + 1));
        if data.is_empty() {
            bytes = raw::record(record_type, id, &[]);
        }
        for part in data.chunks(raw::FPM_CHUNK) {
            // Pad to a multiple of 8 like php-fpm does.
            let padding = ((8 - part.len() % 8) % 8) as u8;
            bytes.extend_from_slice(&raw::record_with(
                raw::VERSION,
                record_type,
                id,
                part,
                padding,
            ));
        }
        self.write_raw(&bytes);
    }

    /// Writes `data` as STDOUT records of at most 65528 bytes, padded to 8
    /// bytes like php-fpm, in one write. An empty `data` writes the empty
    /// STDOUT record (the stream terminator php-fpm never sends).
    pub fn write_stdout(&mut self, id: u16, data: &[u8]) {
        self.write_stream(raw::STDOUT, id, data);
    }

    /// Like [`FakeConn::write_stdout`], for STDERR.
    pub fn write_stderr(&mut self, id: u16, data: &[u8]) {
        self.write_stream(raw::STDERR, id, data);
    }

    /// Writes END_REQUEST with garbage in the reserved bytes, like php-fpm.
    pub fn write_end(&mut self, id: u16, app_status: u32, protocol_status: u8) {
        let body = raw::end_request_body(app_status, protocol_status, [GARBAGE; 3]);
        self.write_raw(&raw::record(raw::END_REQUEST, id, &body));
    }

    /// Writes a GET_VALUES_RESULT record (request id 0) with `pairs`.
    pub fn write_values_result(&mut self, pairs: &[(&str, &str)]) {
        let body = raw::encode_pairs(pairs.iter().copied());
        self.write_raw(&raw::record(raw::GET_VALUES_RESULT, 0, &body));
    }

    /// Writes an UNKNOWN_TYPE record (request id 0) naming `unknown_type`.
    pub fn write_unknown_type(&mut self, unknown_type: u8) {
        let body = [unknown_type, 0, 0, 0, 0, 0, 0, 0];
        self.write_raw(&raw::record(raw::UNKNOWN_TYPE, 0, &body));
    }

    /// A complete response: `stdout` in STDOUT records, then END_REQUEST
    /// (appStatus 0, REQUEST_COMPLETE), in a single write.
    pub fn respond(&mut self, id: u16, stdout: &[u8]) {
        let mut bytes = Vec::new();
        for part in stdout.chunks(raw::FPM_CHUNK) {
            bytes.extend_from_slice(&raw::record(raw::STDOUT, id, part));
        }
        let body = raw::end_request_body(0, raw::REQUEST_COMPLETE, [GARBAGE; 3]);
        bytes.extend_from_slice(&raw::record(raw::END_REQUEST, id, &body));
        self.write_raw(&bytes);
    }

    /// Shuts down both directions (the peer sees EOF; further writes fail).
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Shuts down the write direction only (the peer sees EOF, reads still work).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Closes the connection with a TCP RST (SO_LINGER 0), like php-fpm does on
    /// a protocol error. On a Unix socket this is a plain close.
    pub fn reset(&mut self) {
        if let Stream::Tcp(s) = &self.stream {
            let linger = nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            let _ = nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::Linger, &linger);
        }
        // Drop every handle so the socket is really closed (RST) now.
        self.unregister();
        if let Ok(dead) = dead_stream() {
            drop(std::mem::replace(&mut self.stream, dead));
        } else {
            self.close();
        }
    }
}

fn dead_stream() -> io::Result<Stream> {
    let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    a.shutdown(Shutdown::Both)?;
    Ok(Stream::Unix(a))
}

/// Serves requests on a connection in a loop until EOF: for each request,
/// calls `respond(conn, &request)`; the connection is closed after a request
/// without `FCGI_KEEP_CONN`. Read errors end the loop.
pub fn serve<F>(respond: F) -> impl Handler
where
    F: Fn(&mut FakeConn, &ReceivedRequest) + Send + Sync + 'static,
{
    move |conn: &mut FakeConn| loop {
        let Ok(req) = conn.read_request() else {
            return;
        };
        respond(conn, &req);
        if !req.keep_conn || conn.write_failed() {
            return;
        }
    }
}

/// Answers every request with `Status: 200 OK`, `Content-Type: text/plain`
/// and `body`, honouring keep-alive ([`serve`]).
pub fn respond_ok(body: impl Into<Vec<u8>>) -> impl Handler {
    let body = body.into();
    let mut stdout = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    stdout.extend_from_slice(&body);
    respond_raw(stdout)
}

/// Answers every request with exactly `stdout` (CGI head included) and a
/// REQUEST_COMPLETE END_REQUEST, honouring keep-alive ([`serve`]).
pub fn respond_raw(stdout: impl Into<Vec<u8>>) -> impl Handler {
    let stdout = stdout.into();
    serve(move |conn, req| conn.respond(req.id, &stdout))
}

/// Answers every request with its STDIN as the body (`Content-Type:
/// application/octet-stream`), honouring keep-alive ([`serve`]).
pub fn echo_stdin() -> impl Handler {
    serve(|conn, req| {
        let mut out = b"Content-Type: application/octet-stream\r\n\r\n".to_vec();
        out.extend_from_slice(&req.stdin);
        conn.respond(req.id, &out);
    })
}

/// Answers every request with the length of its STDIN in decimal as the body
/// (`Content-Type: text/plain`), honouring keep-alive ([`serve`]).
pub fn respond_stdin_len() -> impl Handler {
    serve(|conn, req| {
        let body = req.stdin.len().to_string();
        conn.respond(
            req.id,
            format!("Content-Type: text/plain\r\n\r\n{body}").as_bytes(),
        );
    })
}

/// A server that misbehaves after its first answer: it answers the first
/// request on a connection with `first`, then 20 ms later writes a late
/// STDOUT record for the same request id (`Status: 500 Stale`). A second
/// request on that polluted connection is answered `second` and counted in
/// `second_requests`.
pub fn late_record_after_first(second_requests: Arc<AtomicUsize>) -> impl Handler {
    move |conn: &mut FakeConn| {
        if let Ok(req) = conn.read_request() {
            conn.respond(req.id, b"Status: 200 OK\r\n\r\nfirst");
            std::thread::sleep(Duration::from_millis(20));
            conn.write_stdout(req.id, b"Status: 500 Stale\r\n\r\nstale");
        }
        if let Ok(req) = conn.read_request() {
            conn.respond(req.id, b"Status: 200 OK\r\n\r\nsecond");
            second_requests.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Reads the request, never answers, and holds the connection open until the
/// client closes it (or the server is dropped): for timeout tests.
pub fn silent() -> impl Handler {
    |conn: &mut FakeConn| {
        let _ = conn.read_to_eof();
    }
}

/// Accepts and closes at once without reading anything.
pub fn close_immediately() -> impl Handler {
    |conn: &mut FakeConn| conn.close()
}

/// An Authorizer: grants `REMOTE_USER=ann` (200 with the variables
/// `Variable-USER_ID: 42` and `Variable-ROLE: admin`, plus an ordinary
/// `X-Other` header), denies everyone else (403, body `not you`); a request
/// in another role gets a 500.
pub fn authorizer() -> impl Handler {
    serve(|conn, req| {
        let answer: &[u8] = if req.role != 2 {
            b"Status: 500 Wrong Role\r\n\r\n"
        } else if req.param("REMOTE_USER") == Some(b"ann") {
            b"Status: 200 OK\r\nVariable-USER_ID: 42\r\nVariable-ROLE: admin\r\nX-Other: 1\r\n\r\n"
        } else {
            b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nnot you"
        };
        conn.respond(req.id, answer);
    })
}

/// A Filter: answers the DATA stream upper-cased, with the role, the
/// `FCGI_DATA_LENGTH` and `FCGI_DATA_LAST_MOD` params and the STDIN length in
/// the headers `X-Role`, `X-Data-Length`, `X-Data-Last-Mod` and `X-Stdin`.
pub fn filter() -> impl Handler {
    serve(|conn, req| {
        let mut out = format!(
            "Content-Type: text/plain\r\nX-Role: {}\r\nX-Data-Length: {}\r\nX-Data-Last-Mod: {}\r\nX-Stdin: {}\r\n\r\n",
            req.role,
            req.param_str("FCGI_DATA_LENGTH").unwrap_or_default(),
            req.param_str("FCGI_DATA_LAST_MOD").unwrap_or_default(),
            req.stdin.len(),
        )
        .into_bytes();
        out.extend(req.data.iter().map(u8::to_ascii_uppercase));
        conn.respond(req.id, &out);
    })
}
