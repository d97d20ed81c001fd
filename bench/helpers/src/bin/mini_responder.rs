//! A minimal fast FastCGI responder: one thread per connection, keep-alive,
//! reads BEGIN_REQUEST, PARAMS and STDIN (discarding the body) and answers a
//! fixed small response in one write, or `--body-bytes N` of body in
//! php-fpm-sized records. Like php-fpm it answers FCGI_GET_VALUES with
//! FCGI_MPXS_CONNS=0 (no multiplexing), so clients that ask find out at once. `--dump FILE` saves the first request's bytes (for
//! the replay client). `--raw-send N` / `--raw-sink` are the plain socket
//! copy: send N bytes and close, or read to EOF and answer one byte.
//!
//! mini-responder LISTEN (unix:/path or 127.0.0.1:PORT) [options]

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use fcgi_bench_helpers::*;

const SMALL: &[u8] = b"Content-Type: text/plain\r\n\r\nHello, World!";
const BUF: usize = 256 * 1024;

#[derive(Clone)]
struct Mode {
    body_bytes: Option<u64>,
    raw_send: Option<u64>,
    raw_sink: bool,
    dump: Option<String>,
    dumped: Arc<AtomicBool>,
}

fn main() {
    let args = Args::parse();
    let listen = args.positional.first().expect("LISTEN address").clone();
    let mode = Mode {
        body_bytes: args.get("body-bytes").map(|v| v.parse().expect("N")),
        raw_send: args.get("raw-send").map(|v| v.parse().expect("N")),
        raw_sink: args.get("raw-sink").is_some(),
        dump: args.get("dump").map(str::to_string),
        dumped: Arc::new(AtomicBool::new(false)),
    };
    if let Some(path) = listen.strip_prefix("unix:") {
        let _ = fs::remove_file(path);
        let l = UnixListener::bind(path).expect("bind");
        for s in l.incoming().flatten() {
            let m = mode.clone();
            thread::spawn(move || serve(s, &m));
        }
    } else {
        let l = TcpListener::bind(&listen).expect("bind");
        for s in l.incoming().flatten() {
            let _ = s.set_nodelay(true);
            let m = mode.clone();
            thread::spawn(move || serve(s, &m));
        }
    }
}

fn serve<S: Read + Write>(mut s: S, mode: &Mode) {
    let _ = serve_conn(&mut s, mode);
}

fn zeros_block() -> Vec<u8> {
    vec![b'x'; 1 << 20]
}

/// Reads until `buf[pos..filled]` holds at least `need` bytes, moving what
/// is there to the front first; false when the peer closed.
fn fill<S: Read>(
    s: &mut S,
    buf: &mut [u8],
    pos: &mut usize,
    filled: &mut usize,
    need: usize,
) -> io::Result<bool> {
    while *filled - *pos < need {
        buf.copy_within(*pos..*filled, 0);
        *filled -= *pos;
        *pos = 0;
        let n = s.read(&mut buf[*filled..])?;
        if n == 0 {
            return Ok(false);
        }
        *filled += n;
    }
    Ok(true)
}

fn serve_conn<S: Read + Write>(s: &mut S, mode: &Mode) -> io::Result<()> {
    if let Some(n) = mode.raw_send {
        let block = zeros_block();
        let mut left = n;
        while left > 0 {
            let k = left.min(block.len() as u64) as usize;
            s.write_all(&block[..k])?;
            left -= k as u64;
        }
        return Ok(());
    }
    if mode.raw_sink {
        let mut buf = vec![0u8; BUF];
        while s.read(&mut buf)? > 0 {}
        return s.write_all(b"k");
    }
    let mut buf = vec![0u8; BUF];
    let (mut pos, mut filled) = (0usize, 0usize);
    let mut small = Vec::new();
    let mut big_block = Vec::new();
    let mut big_block_id = 0u16;
    loop {
        // One request: BEGIN_REQUEST, PARAMS..., STDIN... up to the empty STDIN.
        let mut id = 1u16;
        let mut keep = false;
        // Records before BEGIN_REQUEST (fastcgi-client 0.12 sends its empty
        // STDIN record twice) are skipped.
        let mut begun = false;
        let mut dump = if mode.dump.is_some() && !mode.dumped.load(Ordering::Relaxed) {
            Some(Vec::new())
        } else {
            None
        };
        loop {
            if !fill(s, &mut buf, &mut pos, &mut filled, HEADER_LEN)? {
                return Ok(());
            }
            let (kind, rid, len, pad) = parse_header(&buf[pos..pos + HEADER_LEN]);
            let mut skip = HEADER_LEN + len + pad;
            if kind == BEGIN_REQUEST || kind == PARAMS || kind == GET_VALUES {
                // Small records: keep them whole in the buffer.
                if !fill(s, &mut buf, &mut pos, &mut filled, skip)? {
                    return Ok(());
                }
                if kind == GET_VALUES && rid == 0 {
                    let pair = b"\x0f\x01FCGI_MPXS_CONNS0";
                    let mut answer = header(GET_VALUES_RESULT, 0, pair.len(), 0).to_vec();
                    answer.extend_from_slice(pair);
                    s.write_all(&answer)?;
                }
                if kind == BEGIN_REQUEST {
                    begun = true;
                    id = rid;
                    keep = buf[pos + HEADER_LEN + 2] & 1 == 1;
                }
            }
            let done = begun && kind == STDIN && len == 0;
            // Consume `skip` bytes (reading more as needed).
            loop {
                let have = (filled - pos).min(skip);
                if let Some(d) = dump.as_mut() {
                    d.extend_from_slice(&buf[pos..pos + have]);
                }
                pos += have;
                skip -= have;
                if skip == 0 {
                    break;
                }
                pos = 0;
                filled = s.read(&mut buf)?;
                if filled == 0 {
                    return Ok(());
                }
            }
            if done {
                break;
            }
        }
        if let (Some(d), Some(path)) = (dump, &mode.dump) {
            if !mode.dumped.swap(true, Ordering::Relaxed) {
                fs::write(path, d)?;
            }
        }
        match mode.body_bytes {
            None => {
                small.clear();
                small.extend_from_slice(&header(STDOUT, id, SMALL.len(), 0));
                small.extend_from_slice(SMALL);
                small.extend_from_slice(&header(STDOUT, id, 0, 0));
                small.extend_from_slice(&header(END_REQUEST, id, 8, 0));
                small.extend_from_slice(&[0; 8]);
                s.write_all(&small)?;
            }
            Some(n) => {
                let head = b"Content-Type: application/octet-stream\r\n\r\n";
                let mut first = header(STDOUT, id, head.len(), 0).to_vec();
                first.extend_from_slice(head);
                s.write_all(&first)?;
                if big_block.is_empty() || big_block_id != id {
                    big_block.clear();
                    big_block_id = id;
                    for _ in 0..16 {
                        big_block.extend_from_slice(&header(STDOUT, id, FPM_CHUNK, 0));
                        big_block.extend_from_slice(&vec![b'x'; FPM_CHUNK]);
                    }
                }
                let mut left = n;
                let per_block = 16 * FPM_CHUNK as u64;
                while left >= per_block {
                    s.write_all(&big_block)?;
                    left -= per_block;
                }
                while left > 0 {
                    let k = left.min(FPM_CHUNK as u64) as usize;
                    s.write_all(&header(STDOUT, id, k, 0))?;
                    s.write_all(&big_block[HEADER_LEN..HEADER_LEN + k])?;
                    left -= k as u64;
                }
                let mut end = header(END_REQUEST, id, 8, 0).to_vec();
                end.extend_from_slice(&[0; 8]);
                s.write_all(&end)?;
            }
        }
        if !keep {
            return Ok(());
        }
    }
}
