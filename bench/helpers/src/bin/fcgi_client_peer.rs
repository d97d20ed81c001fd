//! The `fastcgi-client` crate (0.12, tokio) as a peer: one task and one
//! keep-alive connection per `--c`, each looping requests with the same
//! params as fcgi sends (read from a request recorded by
//! `mini-responder --dump`); a multi-threaded runtime with one worker per
//! core.
//!
//! fcgi-client-peer ADDR REQUEST_FILE --c CONNS --n REQUESTS

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fastcgi_client::{Client, Params, Request};
use fcgi_bench_helpers::{params_of, runtime, ClientArgs};

fn main() {
    let ClientArgs {
        addr,
        request: recorded,
        conns,
        total,
        ..
    } = ClientArgs::parse();
    let pairs = params_of(&recorded);
    let rt = runtime();
    let issued = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (addr, pairs) = (addr.clone(), pairs.clone());
            let (issued, ok) = (issued.clone(), ok.clone());
            tasks.push(tokio::spawn(async move {
                let mut params = Params::default();
                params.clear();
                for (n, v) in pairs {
                    params.insert(Cow::Owned(n), Cow::Owned(v));
                }
                macro_rules! run {
                    ($stream:expr) => {{
                        let mut client = Client::new_keep_alive_tokio($stream);
                        while issued.fetch_add(1, Ordering::Relaxed) < total {
                            let request = Request::new_tokio(params.clone(), tokio::io::empty());
                            let response = client.execute(request).await.expect("request");
                            if response.stdout.is_some() {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }};
                }
                match addr.strip_prefix("unix:") {
                    Some(path) => run!(tokio::net::UnixStream::connect(path)
                        .await
                        .expect("connect")),
                    None => {
                        let s = tokio::net::TcpStream::connect(&addr)
                            .await
                            .expect("connect");
                        s.set_nodelay(true).expect("nodelay");
                        run!(s)
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    println!("requests {} ok {}", total, ok.load(Ordering::Relaxed));
}
