//! The floor of a FastCGI client: writes pre-encoded request bytes (as
//! recorded by `mini-responder --dump`) and only scans record headers for
//! END_REQUEST; one thread and one kept connection per `--c`.
//!
//! replay ADDR REQUEST_FILE --c CONNS --n REQUESTS  → prints `requests N ok N`

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use fcgi_bench_helpers::*;

fn main() {
    let ClientArgs {
        addr,
        request,
        conns,
        total,
        args,
    } = ClientArgs::parse();
    // --timeout SECS: arm SO_RCVTIMEO like a client with time limits does.
    let timeout = args.num("timeout", 0);
    let issued = AtomicU64::new(0);
    let ok = AtomicU64::new(0);
    thread::scope(|scope| {
        for _ in 0..conns {
            scope.spawn(|| {
                let mut conn = Conn::connect(&addr).expect("connect");
                if timeout > 0 {
                    conn.set_read_timeout(std::time::Duration::from_secs(timeout));
                }
                let mut buf = vec![0u8; READ_BUF];
                while issued.fetch_add(1, Ordering::Relaxed) < total {
                    conn.write_all(&request).expect("write");
                    if until_end(&mut conn, &mut buf).expect("read") {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    println!("requests {} ok {}", total, ok.load(Ordering::Relaxed));
}

/// Reads until the end of END_REQUEST; false on EOF.
fn until_end(conn: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    let mut scanner = EndScanner::default();
    loop {
        let n = conn.read(buf)?;
        if n == 0 {
            return Ok(false);
        }
        if scanner.feed(&buf[..n]) {
            return Ok(true);
        }
    }
}
