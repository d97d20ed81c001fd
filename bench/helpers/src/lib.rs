//! Shared bits of the benchmark helpers: addresses, FastCGI record headers,
//! name-value pairs, the small argument parser they all use, and the
//! request tally and task runner of the client contenders.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const HEADER_LEN: usize = 8;
pub const BEGIN_REQUEST: u8 = 1;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
/// Largest content php-fpm puts in one record; the responder does the same.
pub const FPM_CHUNK: usize = 65528;
/// Read buffer of the clients: the same size as fcgi's blocking client.
pub const READ_BUF: usize = 64 * 1024 + 64;

/// A connected socket.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    pub fn connect(addr: &str) -> io::Result<Conn> {
        match addr.strip_prefix("unix:") {
            Some(path) => Ok(Conn::Unix(UnixStream::connect(path)?)),
            None => {
                let s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(s))
            }
        }
    }

    pub fn set_read_timeout(&self, t: std::time::Duration) {
        let _ = match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(t)),
            Conn::Unix(s) => s.set_read_timeout(Some(t)),
        };
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(b),
            Conn::Unix(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(b),
            Conn::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One record header.
pub fn header(kind: u8, id: u16, len: usize, padding: u8) -> [u8; HEADER_LEN] {
    let l = len as u16;
    [
        1,
        kind,
        (id >> 8) as u8,
        id as u8,
        (l >> 8) as u8,
        l as u8,
        padding,
        0,
    ]
}

/// (type, id, content length, padding length) of a header.
pub fn parse_header(h: &[u8]) -> (u8, u16, usize, usize) {
    (
        h[1],
        u16::from_be_bytes([h[2], h[3]]),
        u16::from_be_bytes([h[4], h[5]]) as usize,
        h[6] as usize,
    )
}

/// The name-value pairs of the PARAMS records in `request` (raw request
/// bytes as a client sent them).
pub fn params_of(request: &[u8]) -> Vec<(String, String)> {
    let mut content = Vec::new();
    let mut pos = 0;
    while pos + HEADER_LEN <= request.len() {
        let (kind, _, len, pad) = parse_header(&request[pos..]);
        let start = pos + HEADER_LEN;
        if kind == PARAMS {
            content.extend_from_slice(&request[start..start + len]);
        }
        pos = start + len + pad;
    }
    let mut pairs = Vec::new();
    let mut p = 0;
    let length = |p: &mut usize| -> usize {
        if content[*p] < 0x80 {
            *p += 1;
            content[*p - 1] as usize
        } else {
            let v = u32::from_be_bytes([
                content[*p] & 0x7f,
                content[*p + 1],
                content[*p + 2],
                content[*p + 3],
            ]);
            *p += 4;
            v as usize
        }
    };
    while p < content.len() {
        let n = length(&mut p);
        let v = length(&mut p);
        let name = String::from_utf8_lossy(&content[p..p + n]).into_owned();
        let value = String::from_utf8_lossy(&content[p + n..p + n + v]).into_owned();
        p += n + v;
        pairs.push((name, value));
    }
    pairs
}

/// `--name value` options and positionals, nothing fancier.
/// What every client contender takes: `ADDR REQUEST_FILE --c CONNS --n
/// REQUESTS`, the request file being one recorded by `mini-responder --dump`.
pub struct ClientArgs {
    pub addr: String,
    pub request: Vec<u8>,
    pub conns: u64,
    pub total: u64,
    /// Everything given, for options of one contender.
    pub args: Args,
}

impl ClientArgs {
    pub fn parse() -> ClientArgs {
        let args = Args::parse();
        ClientArgs {
            addr: args.positional[0].clone(),
            request: std::fs::read(&args.positional[1]).expect("request file"),
            conns: args.num("c", 1),
            total: args.num("n", 1000),
            args,
        }
    }
}

pub struct Args {
    pub positional: Vec<String>,
    pub options: Vec<(String, String)>,
}

impl Args {
    pub fn parse() -> Args {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                options.push((name.to_string(), it.next().unwrap_or_default()));
            } else {
                positional.push(a);
            }
        }
        Args {
            positional,
            options,
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn num(&self, name: &str, default: u64) -> u64 {
        self.get(name)
            .map(|v| v.parse().expect("a number"))
            .unwrap_or(default)
    }
}

/// A multi-threaded tokio runtime with one worker per core, as the async
/// contenders use.
pub fn runtime() -> tokio::runtime::Runtime {
    if std::env::var("BENCH_RUNTIME").as_deref() == Ok("current_thread") {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The request budget a contender's connections share: `total` requests
/// handed out one at a time, and the count of complete answers. Every client
/// contender pays the same two atomic additions per request for it.
#[derive(Clone)]
pub struct Tally {
    issued: Arc<AtomicU64>,
    ok: Arc<AtomicU64>,
    total: u64,
}

impl Tally {
    pub fn new(total: u64) -> Tally {
        Tally {
            issued: Arc::new(AtomicU64::new(0)),
            ok: Arc::new(AtomicU64::new(0)),
            total,
        }
    }

    /// Whether the caller may send one more request.
    pub fn next(&self) -> bool {
        self.issued.fetch_add(1, Ordering::Relaxed) < self.total
    }

    /// Counts one complete answer.
    pub fn answered(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Prints the line bench/run reads: `requests N ok N`.
    pub fn report(&self) {
        println!(
            "requests {} ok {}",
            self.total,
            self.ok.load(Ordering::Relaxed)
        );
    }
}

/// Runs `conns` tasks made by `task` on the benchmark [`runtime`], all
/// sharing one [`Tally`] of `total` requests, then prints the tally.
pub fn run_tasks<F, Fut>(conns: u64, total: u64, task: F)
where
    F: Fn(Tally) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tally = Tally::new(total);
    runtime().block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|_| tokio::spawn(task(tally.clone())))
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
    tally.report();
}

/// Scans a response's records for the end of END_REQUEST, skipping their
/// content unseen: the whole work of a replay client's reading side.
#[derive(Default)]
pub struct EndScanner {
    header: [u8; HEADER_LEN],
    header_len: usize,
    skip: usize,
    ended: bool,
}

impl EndScanner {
    /// Takes the next bytes read; true once END_REQUEST (with its padding)
    /// has been read whole, after which the scanner is ready for the next
    /// response. Bytes after it are not expected (one request at a time).
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        loop {
            let k = self.skip.min(bytes.len());
            bytes = &bytes[k..];
            self.skip -= k;
            if self.skip > 0 {
                return false;
            }
            if self.ended {
                *self = EndScanner::default();
                return true;
            }
            let take = (HEADER_LEN - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len < HEADER_LEN {
                return false;
            }
            self.header_len = 0;
            let (kind, _, len, pad) = parse_header(&self.header);
            self.skip = len + pad;
            self.ended = kind == END_REQUEST;
        }
    }
}
