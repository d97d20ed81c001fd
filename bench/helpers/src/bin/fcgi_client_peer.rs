//! The `fastcgi-client` crate (0.12, tokio) as a peer: one task and one
//! keep-alive connection per `--c`, each looping requests with the same
//! params as fcgi sends (read from a request recorded by
//! `mini-responder --dump`); a multi-threaded runtime with one worker per
//! core.
//!
//! fcgi-client-peer ADDR REQUEST_FILE --c CONNS --n REQUESTS

use std::borrow::Cow;

use fastcgi_client::{Client, Params, Request};
use fcgi_bench_helpers::{params_of, run_tasks, ClientArgs};

fn main() {
    let ClientArgs {
        addr,
        request: recorded,
        conns,
        total,
        ..
    } = ClientArgs::parse();
    let pairs = params_of(&recorded);
    run_tasks(conns, total, |tally| {
        let (addr, pairs) = (addr.clone(), pairs.clone());
        async move {
            let mut params = Params::default();
            params.clear();
            for (n, v) in pairs {
                params.insert(Cow::Owned(n), Cow::Owned(v));
            }
            macro_rules! run {
                ($stream:expr) => {{
                    let mut client = Client::new_keep_alive_tokio($stream);
                    while tally.next() {
                        let request = Request::new_tokio(params.clone(), tokio::io::empty());
                        let response = client.execute(request).await.expect("request");
                        if response.stdout.is_some() {
                            tally.answered();
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
        }
    });
}
