//! The floor of an async FastCGI client: the replay client's work (write
//! pre-encoded request bytes, scan the answer for END_REQUEST) on the same
//! tokio runtime the async contenders use, one task and one kept connection
//! per `--c`. What an async client costs beyond this is its own.
//!
//! replay-async ADDR REQUEST_FILE --c CONNS --n REQUESTS  → prints `requests N ok N`

use std::sync::Arc;

use fcgi_bench_helpers::{run_tasks, ClientArgs, EndScanner, Tally, READ_BUF};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

fn main() {
    let ClientArgs {
        addr,
        request,
        conns,
        total,
        ..
    } = ClientArgs::parse();
    let request: Arc<[u8]> = request.into();
    run_tasks(conns, total, |tally| {
        let (addr, request) = (addr.clone(), request.clone());
        async move {
            match addr.strip_prefix("unix:") {
                Some(path) => {
                    let conn = UnixStream::connect(path).await.expect("connect");
                    replay(conn, &request, &tally).await
                }
                None => {
                    let conn = tokio::net::TcpStream::connect(&addr)
                        .await
                        .expect("connect");
                    conn.set_nodelay(true).expect("nodelay");
                    replay(conn, &request, &tally).await
                }
            }
        }
    });
}

async fn replay<S: AsyncRead + AsyncWrite + Unpin>(mut conn: S, request: &[u8], tally: &Tally) {
    let mut buf = vec![0u8; READ_BUF];
    let mut scanner = EndScanner::default();
    while tally.next() {
        conn.write_all(request).await.expect("write");
        loop {
            let n = conn.read(&mut buf).await.expect("read");
            if n == 0 {
                return;
            }
            if scanner.feed(&buf[..n]) {
                tally.answered();
                break;
            }
        }
    }
}
