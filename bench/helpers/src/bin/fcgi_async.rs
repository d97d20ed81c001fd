//! Our async client (`fcgi::AsyncClient`) as a contender: one task per
//! `--c`, all sharing one client whose pool holds `--c` kept connections,
//! each looping requests with the same params as `fcgi bench` sends (read
//! from a request recorded by `mini-responder --dump`), prepared once as
//! `fcgi bench` prepares its request; a multi-threaded runtime with one
//! worker per core.
//!
//! fcgi-async ADDR REQUEST_FILE --c CONNS --n REQUESTS

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fcgi::{AsyncClient, Params, Request};
use fcgi_bench_helpers::{params_of, runtime, ClientArgs};

fn main() {
    let ClientArgs {
        addr,
        request: recorded,
        conns,
        total,
        ..
    } = ClientArgs::parse();
    let params: Params = params_of(&recorded).into_iter().collect();
    let rt = runtime();
    let issued = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let client = AsyncClient::builder()
            .upstream(addr.as_str())
            .max_connections(conns as usize)
            .build()
            .expect("client");
        let prepared = Arc::new(
            client
                .prepare(Request::new().params_from(params))
                .expect("prepare"),
        );
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (client, prepared) = (client.clone(), prepared.clone());
            let (issued, ok) = (issued.clone(), ok.clone());
            tasks.push(tokio::spawn(async move {
                while issued.fetch_add(1, Ordering::Relaxed) < total {
                    let response = client.execute_prepared(&prepared).await.expect("request");
                    if response.status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
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
