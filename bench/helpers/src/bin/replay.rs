//! The floor of a FastCGI client: writes pre-encoded request bytes (as
//! recorded by `mini-responder --dump`) and only scans record headers for
//! END_REQUEST; one thread and one kept connection per `--c`.
//!
//! replay ADDR REQUEST_FILE --c CONNS --n REQUESTS  → prints `requests N ok N`

use std::io::{self, Read, Write};
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
    let tally = Tally::new(total);
    thread::scope(|scope| {
        for _ in 0..conns {
            scope.spawn(|| {
                let mut conn = Conn::connect(&addr).expect("connect");
                if timeout > 0 {
                    conn.set_read_timeout(std::time::Duration::from_secs(timeout));
                }
                let mut buf = vec![0u8; READ_BUF];
                while tally.next() {
                    conn.write_all(&request).expect("write");
                    if until_end(&mut conn, &mut buf).expect("read") {
                        tally.answered();
                    }
                }
            });
        }
    });
    tally.report();
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
