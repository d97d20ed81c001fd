//! Running `fcgi serve` as a child process and talking HTTP/1.1 to it with
//! hyper's client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// A running `fcgi serve`; SIGTERM and wait on drop.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `fcgi serve --listen 127.0.0.1:0 ARGS...` and waits for its
    /// "listening on" line.
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fcgi"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fcgi serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => addr.parse().expect("address"),
            Err(_) => {
                let _ = child.kill();
                panic!("fcgi serve did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Server {
            child: Some(child),
            addr,
            log,
        }
    }

    /// Everything it wrote on standard error so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (the access log line is written
    /// when the response body is done).
    pub fn wait_log(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) || start.elapsed() > Duration::from_secs(5) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Sends SIGTERM and waits for the exit status (at most 10 s).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
        if std::thread::panicking() {
            eprintln!("---- fcgi serve log ----\n{}", self.log());
        }
    }
}

/// Sends one request on a fresh connection; returns the response with its
/// body still streaming.
pub async fn send<B>(addr: SocketAddr, request: Request<B>) -> Response<Incoming>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .expect("response head in time")
        .expect("response")
}

/// A GET of `path` (with a Host header) and the whole response.
pub async fn get(addr: SocketAddr, path: &str) -> (http::response::Parts, Vec<u8>) {
    let request = Request::get(path)
        .header("host", format!("localhost:{}", addr.port()))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    collect(send(addr, request).await).await
}

/// The whole response.
pub async fn collect(response: Response<Incoming>) -> (http::response::Parts, Vec<u8>) {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes()
        .to_vec();
    (parts, body)
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// A raw HTTP/1.1 connection: bytes exactly as written (no client library
/// to normalise them), responses parsed by hand.
pub struct RawHttp {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

/// One response read by [`RawHttp::response`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines as sent, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl RawHttp {
    pub fn connect(addr: SocketAddr) -> RawHttp {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        RawHttp {
            stream,
            buf: Vec::new(),
        }
    }

    /// A second handle on the socket (for writing from another thread).
    pub fn try_clone_stream(&self) -> std::net::TcpStream {
        self.stream.try_clone().expect("clone")
    }

    /// True when nothing arrives (and the connection stays open) for
    /// `within`.
    pub fn nothing_within(&mut self, within: Duration) -> bool {
        use std::io::Read;
        if !self.buf.is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut chunk = [0u8; 4096];
        let quiet = match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                false
            }
            Err(e) => {
                e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut
            }
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        quiet
    }

    pub fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads more bytes; false at EOF (or a reset).
    fn fill(&mut self) -> bool {
        use std::io::Read;
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "no response bytes in time; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            }
            Err(_) => false,
        }
    }

    /// Takes `n` bytes, reading as needed; `None` if the connection ends
    /// first.
    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Takes a line (without its CRLF).
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(end + 2)?;
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next response (the body framed by Content-Length or chunked, or
    /// read to EOF); `None` when the connection ends before a whole head. A
    /// body cut short by EOF is returned as far as it came.
    pub fn response(&mut self) -> Option<RawResponse> {
        self.response_to(false)
    }

    /// The next response to a HEAD request (no body whatever the head says).
    pub fn head_response(&mut self) -> Option<RawResponse> {
        self.response_to(true)
    }

    fn response_to(&mut self, head: bool) -> Option<RawResponse> {
        let status_line = self.line()?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if head || status == 204 || status == 304 || (100..200).contains(&status) {
            return Some(response);
        }
        if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().expect("content-length");
            while self.buf.len() < len && self.fill() {}
            let n = len.min(self.buf.len());
            response.body = self.buf.drain(..n).collect();
        } else if response.header("transfer-encoding") == Some("chunked") {
            while let Some(size) = self.line() {
                let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                if size == 0 {
                    while self.line().is_some_and(|l| !l.is_empty()) {}
                    break;
                }
                let Some(data) = self.take(size + 2) else {
                    break;
                };
                response.body.extend_from_slice(&data[..size]);
            }
        } else {
            while self.fill() {}
            response.body = std::mem::take(&mut self.buf);
        }
        Some(response)
    }

    /// Whether the server closes the connection (EOF or reset) within
    /// `within`, with no further response bytes; panics on unexpected
    /// bytes.
    pub fn closes_within(&mut self, within: Duration) -> bool {
        use std::io::Read;
        assert!(
            self.buf.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut chunk = [0u8; 4096];
        let closed = match self.stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => panic!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                false
            }
            Err(_) => true,
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        closed
    }
}
