//! Resource hygiene: many requests with connection churn, kept connections,
//! body-writer threads and abandoned streams leave no growth in open file
//! descriptors, threads or memory (measured before and after).

use std::io::Read;
use std::time::{Duration, Instant};

use fcgi::{Client, Config, Request};
use fcgi_testkit::fake::serve;
use fcgi_testkit::FakeServer;

const REQUESTS: usize = 100_000;
const CLIENT_THREADS: usize = 4;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /proc/self/status"))
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    threads: u64,
    rss_kb: u64,
}

fn usage() -> Usage {
    Usage {
        fds: open_fds(),
        threads: status_field("Threads:"),
        rss_kb: status_field("VmRSS:"),
    }
}

/// Waits until the fake server's handler threads have all finished, so that
/// its sockets and threads are not counted.
fn settle(server: &FakeServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.finished() < server.connections() {
        assert!(
            Instant::now() < deadline,
            "fake server handlers did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let exited handler threads be reaped by the kernel.
    std::thread::sleep(Duration::from_millis(100));
}

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
    let server = FakeServer::unix(serve(|conn, req| {
        let body = req.stdin.len().to_string();
        conn.respond(
            req.id,
            format!("Content-Type: text/plain\r\n\r\n{body}").as_bytes(),
        );
    }));
    let address = server.address();
    // Warm up: allocator arenas, thread-local buffers, lazily made statics.
    run(&address, 2_000);
    settle(&server);
    let before = usage();
    run(&address, REQUESTS);
    settle(&server);
    let after = usage();
    assert_eq!(
        after.fds, before.fds,
        "open file descriptors: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.threads, before.threads,
        "threads: {before:?} -> {after:?}"
    );
    let growth_kb = after.rss_kb.saturating_sub(before.rss_kb);
    assert!(
        growth_kb < 16 * 1024,
        "resident memory grew by {growth_kb} KiB: {before:?} -> {after:?}"
    );
    assert!(
        server.handler_panics().is_empty(),
        "{:?}",
        server.handler_panics()
    );
}
