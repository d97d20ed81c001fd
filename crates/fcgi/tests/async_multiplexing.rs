//! The async client's multiplexed connections against a scripted fake
//! server: cancellation never wedges a connection, late records of aborted
//! requests are dropped, aborted ids that never end are given up, a slow
//! reader does not stall the others, discovery delays no request, and a
//! host name stands for the upstreams of all its addresses.
#![cfg(feature = "tokio")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fcgi::nonblocking::{Client, Multiplexing};
use fcgi::{Error, Limit, Request};
use fcgi_testkit::raw;
use fcgi_testkit::{pattern_at, FakeConn, FakeServer};

/// Fails a test that would otherwise hang.
async fn within<T>(limit: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// What the scripted server does when a request is aborted.
#[derive(Clone, Copy)]
enum OnAbort {
    /// As Go's `net/http/fcgi`: END_REQUEST, then more STDOUT and a second
    /// END_REQUEST for the same id.
    EndThenLate,
    /// As flup with an application waiting for the body: nothing.
    Ignore,
}

/// A multiplexing server that reads one connection's records in order and
/// answers each request once its STDIN is complete, by its params:
/// `BIG=n` sends a head and `pattern_at(0, n)` in 32 KiB records; `HANG=1`
/// sends a head only and waits for FCGI_ABORT_REQUEST; otherwise "ok".
fn scripted(on_abort: OnAbort) -> impl Fn(&mut FakeConn) + Send + Sync + 'static {
    move |conn: &mut FakeConn| {
        let mut params: HashMap<u16, Vec<u8>> = HashMap::new();
        while let Ok(Some(record)) = conn.read_record() {
            let id = record.request_id;
            match record.record_type {
                raw::GET_VALUES => {
                    conn.write_values_result(&[("FCGI_MPXS_CONNS", "1")]);
                }
                raw::BEGIN_REQUEST => {
                    params.insert(id, Vec::new());
                }
                raw::PARAMS => {
                    if let Some(p) = params.get_mut(&id) {
                        p.extend_from_slice(&record.content);
                    }
                }
                raw::STDIN if record.content.is_empty() => {
                    let pairs = raw::decode_pairs(&params.remove(&id).unwrap_or_default())
                        .unwrap_or_default();
                    let get = |name: &str| {
                        pairs
                            .iter()
                            .find(|(n, _)| n == name.as_bytes())
                            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    };
                    if let Some(big) = get("BIG") {
                        let len: usize = big.parse().unwrap();
                        conn.write_stdout(id, b"Content-Type: text/plain\r\n\r\n");
                        for chunk in pattern_at(0, len).chunks(32 * 1024) {
                            conn.write_stdout(id, chunk);
                        }
                        conn.write_end(id, 0, raw::REQUEST_COMPLETE);
                    } else if get("HANG").is_some() {
                        conn.write_stdout(id, b"Content-Type: text/plain\r\n\r\nstarted");
                    } else {
                        conn.respond(id, b"Content-Type: text/plain\r\n\r\nok");
                    }
                }
                raw::ABORT_REQUEST => match on_abort {
                    OnAbort::EndThenLate => {
                        conn.write_end(id, 0, raw::REQUEST_COMPLETE);
                        conn.write_stdout(id, b"late output");
                        conn.write_end(id, 0, raw::REQUEST_COMPLETE);
                    }
                    OnAbort::Ignore => {}
                },
                _ => {}
            }
        }
    }
}

fn mpx_client(server: &FakeServer) -> fcgi::nonblocking::Builder {
    Client::builder()
        .upstream(server.address().as_str())
        .multiplexing(Multiplexing::Enabled)
        .max_connections(1)
}

fn big(len: usize) -> Request {
    Request::get("/big").param("BIG", len.to_string())
}

async fn ok(client: &Client) -> Result<(), Error> {
    let response = client.execute(Request::get("/ok")).await?;
    assert_eq!(response.body, b"ok");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_dropped_mid_body_does_not_wedge_its_connection() {
    let server = FakeServer::tcp(scripted(OnAbort::Ignore));
    let client = mpx_client(&server).build().unwrap();
    for _ in 0..3 {
        let mut stream = client.stream(big(2 << 20)).await.unwrap();
        assert!(stream.next_chunk().await.unwrap().is_some());
        drop(stream);
        within(Duration::from_secs(10), ok(&client)).await.unwrap();
    }
    assert_eq!(server.connections(), 1, "one connection carried everything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_records_of_an_aborted_request_are_dropped_not_fatal() {
    let server = FakeServer::tcp(scripted(OnAbort::EndThenLate));
    let client = mpx_client(&server).build().unwrap();
    // A request in flight on the same connection while the late records come.
    let mut neighbour = client.stream(big(300_000)).await.unwrap();
    let hanging = client
        .stream(Request::get("/hang").param("HANG", "1"))
        .await
        .unwrap();
    drop(hanging);
    within(Duration::from_secs(10), ok(&client)).await.unwrap();
    let mut body = Vec::new();
    while let Some(chunk) = neighbour.next_chunk().await.unwrap() {
        if let fcgi::nonblocking::Chunk::Body(bytes) = chunk {
            body.extend_from_slice(&bytes);
        }
    }
    assert_eq!(body, pattern_at(0, 300_000));
    within(Duration::from_secs(10), ok(&client)).await.unwrap();
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_for_an_id_never_used_is_a_protocol_error() {
    let server = FakeServer::tcp(|conn: &mut FakeConn| {
        if let Ok(request) = conn.read_request() {
            conn.write_stdout(request.id + 7, b"Status: 200\r\n\r\nstray");
            conn.respond(request.id, b"Content-Type: text/plain\r\n\r\nok");
        }
        let _ = conn.read_to_eof();
    });
    let client = mpx_client(&server).build().unwrap();
    let err = within(Duration::from_secs(10), ok(&client))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { detail, .. } if detail.contains("not in progress")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_ids_that_never_end_are_given_up_and_the_connection_replaced() {
    let server = FakeServer::tcp(scripted(OnAbort::Ignore));
    let client = mpx_client(&server)
        .max_requests_per_connection(2)
        .abort_timeout(Duration::from_millis(200))
        .pool_wait_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // Fill the connection's two ids with aborted requests that never end.
    for _ in 0..2 {
        let hanging = client
            .stream(Request::get("/hang").param("HANG", "1"))
            .await
            .unwrap();
        drop(hanging);
    }
    // Served once the ids are given up: on a new connection.
    for _ in 0..3 {
        within(Duration::from_secs(15), ok(&client)).await.unwrap();
    }
    assert_eq!(server.connections(), 2, "the stuck connection was replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_does_not_stall_other_requests_on_its_connection() {
    let server = FakeServer::tcp(scripted(OnAbort::Ignore));
    let temp = tempfile::tempdir().unwrap();
    let client = mpx_client(&server)
        .response_buffer_memory(64 * 1024)
        .temp_dir(temp.path())
        .build()
        .unwrap();
    let len = 3 << 20;
    let mut stalled = client.stream(big(len)).await.unwrap();
    // Served while nobody reads the 3 MB in front of them on the connection.
    for _ in 0..5 {
        within(Duration::from_secs(10), ok(&client)).await.unwrap();
    }
    let mut body = Vec::new();
    while let Some(chunk) = stalled.next_chunk().await.unwrap() {
        if let fcgi::nonblocking::Chunk::Body(bytes) = chunk {
            body.extend_from_slice(&bytes);
        }
    }
    assert_eq!(body.len(), len);
    assert!(body == pattern_at(0, len), "the buffered body is intact");
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_buffer_bound_only_the_stalled_request_fails() {
    let server = FakeServer::tcp(scripted(OnAbort::Ignore));
    let client = mpx_client(&server)
        .response_buffer_memory(64 * 1024)
        .max_response_temp_file(256 * 1024)
        .build()
        .unwrap();
    let mut stalled = client.stream(big(2 << 20)).await.unwrap();
    within(Duration::from_secs(10), ok(&client)).await.unwrap();
    let failure = loop {
        match stalled.next_chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stalled response ended without its limit"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            failure,
            Error::LimitExceeded {
                limit: Limit::ResponseBuffer,
                ..
            }
        ),
        "{failure:?}"
    );
    within(Duration::from_secs(10), ok(&client)).await.unwrap();
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_does_not_wait_for_an_unanswered_get_values() {
    // Holds every FCGI_GET_VALUES connection unanswered until the test ends;
    // answers requests on other connections.
    let held = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&held);
    let server = FakeServer::tcp(move |conn: &mut FakeConn| {
        let Ok(Some(first)) = conn.read_record() else {
            return;
        };
        // (The first record of a request is its BEGIN_REQUEST.)
        if first.record_type == raw::GET_VALUES {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = conn.read_to_eof();
            return;
        }
        while let Ok(Some(record)) = conn.read_record() {
            if record.record_type == raw::STDIN && record.content.is_empty() {
                conn.respond(record.request_id, b"Content-Type: text/plain\r\n\r\nok");
            }
        }
    });
    let client = Client::builder()
        .upstream(server.address().as_str())
        .discovery_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    for _ in 0..3 {
        within(Duration::from_secs(10), ok(&client)).await.unwrap();
    }
    assert_eq!(client.is_multiplexed(0), None, "discovery is still waiting");
    assert!(
        server.wait_for_connections(2, Duration::from_secs(10)),
        "discovery asked on a connection of its own"
    );
    within(Duration::from_secs(10), async {
        while held.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A server on `ip` (a loopback address) that answers with its own address.
fn server_on(ip: &str) -> FakeServer {
    FakeServer::tcp_on(ip, |conn: &mut FakeConn| {
        let me = match conn.stream() {
            fcgi_testkit::Stream::Tcp(s) => s.local_addr().unwrap().to_string(),
            fcgi_testkit::Stream::Unix(_) => unreachable!("a TCP server"),
        };
        let body = format!("Content-Type: text/plain\r\n\r\n{me}");
        while let Ok(request) = conn.read_request() {
            conn.respond(request.id, body.as_bytes());
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_is_balanced_over_all_its_addresses_and_followed_when_they_change() {
    let a = server_on("127.0.0.2");
    let b = server_on("127.0.0.3");
    let answer: Arc<Mutex<Vec<SocketAddr>>> = Arc::new(Mutex::new(vec![
        a.tcp_addr().unwrap(),
        b.tcp_addr().unwrap(),
    ]));
    let resolves = Arc::new(AtomicUsize::new(0));
    let (hook_answer, hook_count) = (Arc::clone(&answer), Arc::clone(&resolves));
    let client = Client::builder()
        .upstream("php.test:9000")
        .multiplexing(Multiplexing::Disabled)
        .resolve_interval(Duration::from_millis(50))
        .resolver(move |host: &str, _port: u16| {
            assert_eq!(host, "php.test");
            hook_count.fetch_add(1, Ordering::SeqCst);
            Ok(hook_answer.lock().unwrap().clone())
        })
        .build()
        .unwrap();
    let answered_by = |client: Client| async move {
        let response = client.execute(Request::get("/x")).await.unwrap();
        String::from_utf8(response.body).unwrap()
    };
    // Concurrent requests go to both addresses (fewest outstanding first).
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let tasks: Vec<_> = (0..4)
            .map(|_| tokio::spawn(answered_by(client.clone())))
            .collect();
        for task in tasks {
            seen.insert(task.await.unwrap());
        }
    }
    let both: std::collections::HashSet<String> = [a.address(), b.address()].into();
    assert_eq!(seen, both);
    // The name now stands for `b` alone: followed once resolved again.
    *answer.lock().unwrap() = vec![b.tcp_addr().unwrap()];
    let before = resolves.load(Ordering::SeqCst);
    within(Duration::from_secs(10), async {
        loop {
            let by = answered_by(client.clone()).await;
            if resolves.load(Ordering::SeqCst) > before + 1 && by == b.address() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for _ in 0..10 {
        assert_eq!(answered_by(client.clone()).await, b.address());
    }
}

#[tokio::test]
async fn a_host_name_that_resolves_to_nothing_is_a_connect_error_naming_it() {
    let client = Client::builder()
        .upstream("nowhere.test:9000")
        .resolver(|_: &str, _: u16| Ok(Vec::new()))
        .build()
        .unwrap();
    let err = client.execute(Request::get("/x")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Connect { .. }) && err.to_string().contains("nowhere.test"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_hold_bounded_memory_the_rest_waits_in_files() {
    const READERS: usize = 32;
    const LEN: usize = 2 << 20;
    let server = FakeServer::tcp(scripted(OnAbort::Ignore));
    let client = mpx_client(&server).build().unwrap();
    within(Duration::from_secs(10), ok(&client)).await.unwrap();
    let before = fcgi_testkit::Usage::now();
    let mut stalled = Vec::new();
    for _ in 0..READERS {
        stalled.push(client.stream(big(LEN)).await.unwrap());
    }
    // The server answers in order: this one comes after every big body
    // was read off the connection.
    within(Duration::from_secs(30), ok(&client)).await.unwrap();
    let grown_kb = fcgi_testkit::Usage::now()
        .rss_kb
        .saturating_sub(before.rss_kb);
    // Per reader: the memory buffer (256 KiB by default) and one read
    // chunk (64 KiB); 8 MiB of slack for the allocator and the fake.
    let bound_kb = (READERS * (256 + 64) + 8 * 1024) as u64;
    eprintln!(
        "{READERS} stalled readers of {LEN} bytes each on one connection: resident memory grew {grown_kb} KiB (bound {bound_kb} KiB; {} KiB were unread)",
        READERS * LEN / 1024
    );
    assert!(grown_kb < bound_kb, "grew {grown_kb} KiB");
    for mut stream in stalled {
        let mut len = 0;
        while let Some(chunk) = stream.next_chunk().await.unwrap() {
            if let fcgi::nonblocking::Chunk::Body(bytes) = chunk {
                len += bytes.len();
            }
        }
        assert_eq!(len, LEN);
    }
}
