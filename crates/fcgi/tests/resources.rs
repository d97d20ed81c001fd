//! Resource hygiene: many requests with connection churn, kept connections,
//! body-writer threads and abandoned streams leave no growth in open file
//! descriptors, threads or memory (measured before and after).

use std::io::Read;

use fcgi::{Client, Config, Request};
use fcgi_testkit::fake::respond_stdin_len;
use fcgi_testkit::FakeServer;

const REQUESTS: usize = 100_000;
const CLIENT_THREADS: usize = 4;

/// One round of mixed traffic from `CLIENT_THREADS` threads.
fn run(address: &str, requests: usize) {
    std::thread::scope(|scope| {
        for t in 0..CLIENT_THREADS {
            scope.spawn(move || {
                let churn = Client::new(address).unwrap();
                let kept =
                    Client::with_config(address, Config::default().keep_alive(true)).unwrap();
                let big = bytes::Bytes::from(vec![7u8; 100_000]);
                for i in 0..requests / CLIENT_THREADS {
                    let client = if i % 2 == 0 { &churn } else { &kept };
                    match (i + t) % 50 {
                        // A body large enough for the writer thread.
                        0 => {
                            let r = client
                                .execute(Request::post(
                                    "/x",
                                    "application/octet-stream",
                                    big.clone(),
                                ))
                                .unwrap();
                            assert_eq!(r.body, b"100000");
                        }
                        // A stream abandoned after its head.
                        1 => {
                            let mut stream = client.stream(Request::get("/x")).unwrap();
                            let mut first = [0u8; 1];
                            stream.read_exact(&mut first).unwrap();
                        }
                        _ => {
                            let r = client.execute(Request::get("/x")).unwrap();
                            assert_eq!(r.body, b"0");
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn a_hundred_thousand_requests_leave_no_fd_thread_or_memory_growth() {
    // Unix socket: connection churn on TCP loopback would run out of ports
    // (TIME_WAIT) long before 100,000 connections.
    let server = FakeServer::unix(respond_stdin_len());
    let address = server.address();
    server.assert_load_leaves_no_growth(|n| run(&address, n), 2_000, REQUESTS, 16 * 1024);
}
