//! Our async client (`fcgi::AsyncClient`) as a contender: one task per
//! `--c`, all sharing one client whose pool holds `--c` kept connections,
//! each looping requests with the same params as `fcgi bench` sends (read
//! from a request recorded by `mini-responder --dump`), prepared once as
//! `fcgi bench` prepares its request; a multi-threaded runtime with one
//! worker per core.
//!
//! fcgi-async ADDR REQUEST_FILE --c CONNS --n REQUESTS

use std::sync::Arc;

use fcgi::{AsyncClient, Params, Request};
use fcgi_bench_helpers::{params_of, run_tasks, ClientArgs};

fn main() {
    let ClientArgs {
        addr,
        request: recorded,
        conns,
        total,
        ..
    } = ClientArgs::parse();
    let params: Params = params_of(&recorded).into_iter().collect();
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
    run_tasks(conns, total, |tally| {
        let (client, prepared) = (client.clone(), prepared.clone());
        async move {
            while tally.next() {
                let response = client.execute_prepared(&prepared).await.expect("request");
                if response.status == 200 {
                    tally.answered();
                }
            }
        }
    });
}
