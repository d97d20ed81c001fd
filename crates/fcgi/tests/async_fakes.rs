//! The async client alone against fake servers: what only it has. A
//! multiplexing server whose records interleave and FCGI_ABORT_REQUEST on
//! cancel; async body sources (`Body::from_async_read`,
//! `Body::from_stream`); the pool (discovery, waits, fairness, idle
//! reaping, runtimes); several upstreams (fail-over, spreading, probing
//! back). The blocking client has none of these: one request per
//! connection, bodies from `Read`, a single upstream, and idle connections
//! kept without a waiting queue or reaper.
//!
//! Fault cases that apply to both clients (silence, early closes, protocol
//! violations, limits, OVERLOADED answers, stale and polluted kept
//! connections, request ids, padded END_REQUEST, early answers, per-request
//! time limits with `execute_with`, prepared requests, faults in the middle
//! of a streamed body) are in the shared table of `faults.rs`, run against
//! each client.
#![cfg(feature = "tokio")]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fcgi::nonblocking::{Builder, Client, Multiplexing};
use fcgi::{Body, Error, Request, TimeoutPhase};
use fcgi_testkit::fake::{respond_ok, respond_stdin_len, serve, silent, FakeConn};
use fcgi_testkit::raw::{self, RawRecord};
use fcgi_testkit::{pattern_at, FakeServer};

/// Fails a test that would otherwise hang.
async fn within<T>(limit: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// What the multiplexing fake saw.
#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    /// Most requests in flight at once on one connection.
    max_in_flight: AtomicUsize,
    /// Times a record went out for another id while an earlier response
    /// was still unfinished.
    interleaved: AtomicUsize,
    aborted: Mutex<Vec<u16>>,
    errors: Mutex<Vec<String>>,
}

/// A multiplexing FastCGI server: answers FCGI_GET_VALUES with
/// FCGI_MPXS_CONNS=1 and FCGI_MAX_REQS=`max_reqs`, serves every request on
/// its own thread, writing small STDOUT (and some STDERR) records with
/// pauses, so that the records of concurrent requests interleave.
///
/// A request's response body is `pattern_at(SEED, LEN)` followed by its
/// STDIN; with `SLOW=1` it writes a record every 50 ms until aborted.
struct MpxServer {
    address: String,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl MpxServer {
    fn start(max_reqs: usize) -> MpxServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&stats), Arc::clone(&stop));
        thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        s.connections.fetch_add(1, Ordering::SeqCst);
                        let (s, st) = (Arc::clone(&s), Arc::clone(&st));
                        thread::spawn(move || serve_mpx(stream, s, st, max_reqs));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        MpxServer {
            address,
            stats,
            stop,
        }
    }
}

impl Drop for MpxServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Pending {
    params: Vec<u8>,
    stdin: Vec<u8>,
}

/// The write side of a multiplexed connection, shared by response threads.
struct Writer {
    stream: TcpStream,
    last_id: u16,
    unfinished: HashSet<u16>,
}

fn send(writer: &Mutex<Writer>, stats: &Stats, id: u16, bytes: &[u8], finished: bool) -> bool {
    let mut w = writer.lock().unwrap();
    if w.last_id != id && w.unfinished.contains(&w.last_id) {
        stats.interleaved.fetch_add(1, Ordering::SeqCst);
    }
    w.last_id = id;
    if finished {
        w.unfinished.remove(&id);
    }
    w.stream.write_all(bytes).is_ok()
}

fn serve_mpx(stream: TcpStream, stats: Arc<Stats>, stop: Arc<AtomicBool>, max_reqs: usize) {
    let writer = Arc::new(Mutex::new(Writer {
        stream: stream.try_clone().unwrap(),
        last_id: 0,
        unfinished: HashSet::new(),
    }));
    let aborted: Arc<Mutex<HashSet<u16>>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut pending: HashMap<u16, Pending> = HashMap::new();
    let mut reader = stream;
    while !stop.load(Ordering::SeqCst) {
        let record: RawRecord = match raw::read_record(&mut reader) {
            Ok(Some(r)) => r,
            _ => return,
        };
        let id = record.request_id;
        match record.record_type {
            raw::GET_VALUES => {
                let body = raw::encode_pairs([
                    ("FCGI_MPXS_CONNS", "1".to_string()),
                    ("FCGI_MAX_REQS", max_reqs.to_string()),
                ]);
                let bytes = raw::record(raw::GET_VALUES_RESULT, 0, &body);
                send(&writer, &stats, 0, &bytes, false);
            }
            raw::BEGIN_REQUEST => {
                if pending.contains_key(&id) {
                    stats
                        .errors
                        .lock()
                        .unwrap()
                        .push(format!("id {id} reused while in flight"));
                }
                pending.insert(id, Pending::default());
                aborted.lock().unwrap().remove(&id);
                writer.lock().unwrap().unfinished.insert(id);
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
            }
            raw::PARAMS => {
                if let Some(p) = pending.get_mut(&id) {
                    p.params.extend_from_slice(&record.content);
                }
            }
            raw::ABORT_REQUEST => {
                stats.aborted.lock().unwrap().push(id);
                aborted.lock().unwrap().insert(id);
            }
            raw::STDIN if record.content.is_empty() => {
                let Some(p) = pending.remove(&id) else {
                    continue;
                };
                let params: HashMap<String, String> = raw::decode_pairs(&p.params)
                    .unwrap()
                    .into_iter()
                    .map(|(n, v)| {
                        (
                            String::from_utf8_lossy(&n).into_owned(),
                            String::from_utf8_lossy(&v).into_owned(),
                        )
                    })
                    .collect();
                let (writer, stats, aborted, in_flight) = (
                    Arc::clone(&writer),
                    Arc::clone(&stats),
                    Arc::clone(&aborted),
                    Arc::clone(&in_flight),
                );
                thread::spawn(move || {
                    respond(&writer, &stats, &aborted, id, &params, &p.stdin);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
            raw::STDIN => {
                if let Some(p) = pending.get_mut(&id) {
                    p.stdin.extend_from_slice(&record.content);
                }
            }
            other => stats
                .errors
                .lock()
                .unwrap()
                .push(format!("unexpected record type {other}")),
        }
    }
}

fn respond(
    writer: &Mutex<Writer>,
    stats: &Stats,
    aborted: &Mutex<HashSet<u16>>,
    id: u16,
    params: &HashMap<String, String>,
    stdin: &[u8],
) {
    let num = |name: &str| {
        params
            .get(name)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let end = raw::record(
        raw::END_REQUEST,
        id,
        &raw::end_request_body(0, raw::REQUEST_COMPLETE, [0; 3]),
    );
    let head = format!("Content-Type: text/plain\r\nX-Id: {id}\r\n\r\n");
    if !send(
        writer,
        stats,
        id,
        &raw::record(raw::STDERR, id, b"note "),
        false,
    ) {
        return;
    }
    if !send(
        writer,
        stats,
        id,
        &raw::record(raw::STDOUT, id, head.as_bytes()),
        false,
    ) {
        return;
    }
    if params.get("SLOW").is_some() {
        for i in 0..400 {
            if aborted.lock().unwrap().contains(&id) {
                send(writer, stats, id, &end, true);
                return;
            }
            let line = format!("slow {i}\n");
            if !send(
                writer,
                stats,
                id,
                &raw::record(raw::STDOUT, id, line.as_bytes()),
                false,
            ) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    let mut body = pattern_at(num("SEED"), num("LEN"));
    body.extend_from_slice(stdin);
    // Uneven record sizes, with pauses so that other responses get between.
    let sizes = [1, 700, 8192, 65528, 3000, 17];
    let mut at = 0;
    let mut k = id as usize;
    while at < body.len() {
        let len = sizes[k % sizes.len()].min(body.len() - at);
        k += 1;
        let record = raw::record_with(
            raw::VERSION,
            raw::STDOUT,
            id,
            &body[at..at + len],
            (k % 8) as u8,
        );
        if !send(writer, stats, id, &record, false) {
            return;
        }
        at += len;
        if k.is_multiple_of(3) {
            thread::sleep(Duration::from_millis(1));
        }
    }
    send(
        writer,
        stats,
        id,
        &raw::record(raw::STDERR, id, b"done"),
        false,
    );
    send(writer, stats, id, &end, true);
}

fn mpx_request(seed: usize, len: usize, body: Vec<u8>) -> Request {
    Request::post("/fake.php", "application/octet-stream", body)
        .param("SEED", seed.to_string())
        .param("LEN", len.to_string())
}

/// GET /x.php through `client`, failing the test after 10 s.
async fn get_x(client: &Client) -> Result<fcgi::Response, Error> {
    within(
        Duration::from_secs(10),
        client.execute(Request::get("/x.php")),
    )
    .await
}

/// A client for `server` that does not ask about multiplexing.
fn one_at_a_time(server: &FakeServer) -> Client {
    one_at_a_time_with(server, |builder| builder)
}

/// [`one_at_a_time`], with more settings from `configure`.
fn one_at_a_time_with(server: &FakeServer, configure: impl FnOnce(Builder) -> Builder) -> Client {
    let builder = Client::builder()
        .upstream(server.address().as_str())
        .multiplexing(Multiplexing::Disabled);
    configure(builder).build().unwrap()
}

// ---------------------------------------------------------------------------
// Multiplexing: records of concurrent requests interleave on one connection,
// and a dropped response is aborted (FCGI_ABORT_REQUEST) while others go on.
// The blocking client runs one request per connection.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_requests_interleave_and_every_byte_arrives() {
    let server = MpxServer::start(16);
    let client = Client::builder()
        .upstream(server.address.as_str())
        .max_connections(2)
        .build()
        .unwrap();
    client.discover().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let len = (i * 7919) % 150_000;
            let stdin = if i % 3 == 0 {
                pattern_at(i, i * 101)
            } else {
                Vec::new()
            };
            let response = client
                .execute(mpx_request(i, len, stdin.clone()))
                .await
                .map_err(|e| format!("request {i}: {e}"))?;
            let mut expected = pattern_at(i, len);
            expected.extend_from_slice(&stdin);
            if response.body != expected {
                return Err(format!(
                    "request {i}: body differs ({} bytes, expected {})",
                    response.body.len(),
                    expected.len()
                ));
            }
            if response.stderr != b"note done" {
                return Err(format!("request {i}: stderr {:?}", response.stderr_text()));
            }
            Ok(())
        }));
    }
    for task in tasks {
        within(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(client.is_multiplexed(0), Some(true));
    let stats = &server.stats;
    assert!(
        stats.errors.lock().unwrap().is_empty(),
        "{:?}",
        stats.errors.lock().unwrap()
    );
    // One connection for FCGI_GET_VALUES, at most two for the requests.
    assert!(
        stats.connections.load(Ordering::SeqCst) <= 3,
        "{} connections",
        stats.connections.load(Ordering::SeqCst)
    );
    let max = stats.max_in_flight.load(Ordering::SeqCst);
    assert!(max > 1, "requests never shared a connection");
    assert!(max <= 16, "FCGI_MAX_REQS=16 exceeded: {max}");
    // Usually about 500 switches between responses; the bound only makes
    // sure the demultiplexing above was exercised (it was twice below 50 on
    // a busy 2-core machine, which says nothing about the client).
    let interleaved = stats.interleaved.load(Ordering::SeqCst);
    assert!(
        interleaved > 10,
        "records hardly interleaved: {interleaved} switches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_multiplexed_response_sends_abort_request_and_others_go_on() {
    let server = MpxServer::start(8);
    let client = Client::builder()
        .upstream(server.address.as_str())
        .max_connections(1)
        .build()
        .unwrap();
    client.discover().await.unwrap();
    let mut slow = client
        .stream(mpx_request(0, 0, Vec::new()).param("SLOW", "1"))
        .await
        .unwrap();
    let first = slow.next_chunk().await.unwrap();
    assert!(first.is_some());
    let other = client.execute(mpx_request(5, 100_000, Vec::new()));
    let response = within(Duration::from_secs(10), other).await.unwrap();
    assert_eq!(response.body, pattern_at(5, 100_000));
    drop(slow);
    within(Duration::from_secs(2), async {
        while server.stats.aborted.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The connection stays in use for later requests.
    for i in 0..5 {
        let response = client
            .execute(mpx_request(i, 1000, Vec::new()))
            .await
            .unwrap();
        assert_eq!(response.body, pattern_at(i, 1000));
    }
    assert_eq!(
        server.stats.connections.load(Ordering::SeqCst),
        2,
        "discovery + one shared connection"
    );
    assert!(server.stats.errors.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// Async body sources (`Body::from_async_read`, `Body::from_stream`), which
// only the async client can send; the same cases with in-memory and
// `Body::from_reader` bodies are in the shared table of faults.rs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_kept_after_streamed_bodies() {
    let server = FakeServer::unix(respond_stdin_len());
    let client = one_at_a_time(&server);
    // Bodies larger than what goes out with the params are written by a
    // task of their own through the socket's write half; the halves are
    // put back together for the next request.
    let bodies = [
        Body::from(vec![b'x'; 300_000]),
        Body::from(vec![b'y'; 10]),
        Body::from_async_read(std::io::Cursor::new(vec![b'z'; 250_000]), Some(250_000)),
        Body::from(vec![b'x'; 300_000]),
    ];
    for body in bodies {
        let expected = body.len().unwrap().to_string();
        let request = Request::post("/x.php", "application/octet-stream", body);
        let response = within(Duration::from_secs(10), client.execute(request))
            .await
            .unwrap();
        assert_eq!(response.body, expected.as_bytes());
    }
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_server_closed_is_not_reused_even_for_a_streamed_body() {
    // Each connection serves one request and closes, as php-fpm does at
    // pm.max_requests; the answer is the length of the request body.
    let server = FakeServer::tcp(|conn: &mut FakeConn| {
        if let Ok(req) = conn.read_request() {
            let body = format!("Status: 200 OK\r\n\r\n{}", req.stdin.len());
            conn.respond(req.id, body.as_bytes());
        }
    });
    let client = one_at_a_time(&server);
    let response = get_x(&client).await.unwrap();
    assert_eq!(response.body, b"0");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A streamed body cannot be sent twice, so no retry could save it: the
    // closed connection must be noticed before it is used.
    let chunks: Vec<std::io::Result<bytes::Bytes>> = vec![Ok(bytes::Bytes::from_static(b"12345"))];
    let body = fcgi::Body::from_stream(futures_util::stream::iter(chunks), Some(5));
    let request = Request::post("/x.php", "text/plain", body);
    let response = within(Duration::from_secs(10), client.execute(request))
        .await
        .unwrap();
    assert_eq!(response.body, b"5");
    assert_eq!(server.connections(), 2);
}

// ---------------------------------------------------------------------------
// The pool: discovery (FCGI_GET_VALUES in the background), waiting for a
// connection, fairness, idle reaping, and outliving a runtime.

#[tokio::test]
async fn silence_during_discovery_does_not_hang_the_first_request() {
    // Never answers FCGI_GET_VALUES (nor anything else).
    let server = FakeServer::tcp(silent());
    let config = fcgi::Config::default().deadline(Duration::from_millis(3500));
    let client = Client::with_config(server.address().as_str(), config).unwrap();
    let err = within(
        Duration::from_secs(6),
        client.execute(Request::get("/x.php")),
    )
    .await
    .unwrap_err();
    assert!(err.timeout_phase().is_some(), "{err:?}");
    assert_eq!(client.is_multiplexed(0), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_makes_callers_wait_then_fail_with_pool_wait() {
    let server = FakeServer::tcp(silent());
    let client = one_at_a_time_with(&server, |builder| {
        builder
            .max_connections(1)
            .pool_wait_timeout(Duration::from_millis(200))
    });
    let holder = {
        let client = client.clone();
        tokio::spawn(async move { client.execute(Request::get("/hold.php")).await })
    };
    assert!(server.wait_for_connections(1, Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let err = within(
        Duration::from_secs(5),
        client.execute(Request::get("/x.php")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::PoolWait), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(180));
    holder.abort();
}

// One runtime thread: each spawned caller runs until it waits in the pool's
// queue before the next one is spawned, whatever the machine's load.
#[tokio::test(flavor = "current_thread")]
async fn waiting_callers_are_served_in_order() {
    let server = FakeServer::tcp(serve(|conn, req| {
        thread::sleep(Duration::from_millis(30));
        let tag = req.param_str("TAG").unwrap_or_default();
        conn.respond(
            req.id,
            format!("Content-Type: text/plain\r\n\r\n{tag}").as_bytes(),
        );
    }));
    let client = one_at_a_time_with(&server, |builder| builder.max_connections(1));
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (client, order) = (client.clone(), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let r = client
                .execute(Request::get("/x.php").param("TAG", i.to_string()))
                .await
                .unwrap();
            order.lock().unwrap().push(r.body_text().into_owned());
        }));
        // Queue up one after the other.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        within(Duration::from_secs(10), t).await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    let expected: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    assert_eq!(order, expected);
    assert_eq!(
        server.connections(),
        1,
        "one kept connection served them all"
    );
}

#[tokio::test]
async fn idle_pooled_connections_are_closed_after_the_pool_idle_timeout() {
    let server = FakeServer::tcp(respond_ok("hi"));
    let client = one_at_a_time_with(&server, |builder| {
        builder.pool_idle_timeout(Duration::from_millis(200))
    });
    client.execute(Request::get("/x.php")).await.unwrap();
    assert_eq!(server.finished(), 0, "the kept connection is open");
    within(Duration::from_secs(3), async {
        while server.finished() < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The next request opens a new one.
    client.execute(Request::get("/x.php")).await.unwrap();
    assert_eq!(server.connections(), 2);
}

#[test]
fn a_client_outlives_the_runtime_it_was_first_used_on() {
    let server = FakeServer::tcp(respond_ok("hi"));
    let client = one_at_a_time_with(&server, |builder| {
        builder.pool_idle_timeout(Duration::from_millis(200))
    });
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    for _ in 0..3 {
        // The connection parked under the previous runtime is not usable
        // under this one: it is closed and another opened.
        let response = runtime()
            .block_on(client.execute(Request::get("/x.php")))
            .unwrap();
        assert_eq!(response.body, b"hi");
    }
    assert_eq!(server.connections(), 3);
    // The last runtime is gone with its reaper; the next park starts one on
    // this runtime, which closes the idle connection after 200 ms.
    let rt = runtime();
    rt.block_on(async {
        client.execute(Request::get("/x.php")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
    });
    assert!(
        server.wait_for_finished(4, Duration::from_secs(5)),
        "idle connections left open: {} of {} closed",
        server.finished(),
        server.connections()
    );
}

// ---------------------------------------------------------------------------
// Several upstreams: fail-over, spreading by outstanding requests, marking
// down and probing back.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_over_from_an_upstream_that_refuses_connections() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let server = FakeServer::tcp(respond_ok("alive"));
    let client = Client::builder()
        .upstream(dead.as_str())
        .upstream(server.address().as_str())
        .multiplexing(Multiplexing::Disabled)
        .build()
        .unwrap();
    for _ in 0..20 {
        let response = within(
            Duration::from_secs(5),
            client.execute(Request::get("/x.php")),
        )
        .await
        .unwrap();
        assert_eq!(response.body, b"alive");
    }
    // Only the dead upstream left: a clear connect error.
    let only_dead = Client::new(dead.as_str()).unwrap();
    let err = only_dead.execute(Request::get("/x.php")).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_spread_over_upstreams_by_outstanding_requests() {
    let served = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let servers: Vec<FakeServer> = served
        .iter()
        .map(|count| {
            let count = Arc::clone(count);
            FakeServer::tcp(serve(move |conn, req| {
                count.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(40));
                conn.respond(req.id, b"Content-Type: text/plain\r\n\r\nok");
            }))
        })
        .collect();
    let client = Client::builder()
        .upstreams(servers.iter().map(|s| s.address()))
        .multiplexing(Multiplexing::Disabled)
        .max_connections(4)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.execute(Request::get("/x.php")).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            within(Duration::from_secs(10), t)
                .await
                .unwrap()
                .unwrap()
                .body,
            b"ok"
        );
    }
    let (a, b) = (
        served[0].load(Ordering::SeqCst),
        served[1].load(Ordering::SeqCst),
    );
    assert_eq!(a + b, 16);
    assert!(a >= 6 && b >= 6, "unbalanced: {a} and {b}");
}

/// A minimal FastCGI server on a given listener: answers every request
/// with `body`, one request per connection; counts the requests.
fn serve_on(listener: TcpListener, body: &'static [u8], count: Arc<AtomicUsize>) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let count = Arc::clone(&count);
            thread::spawn(move || {
                while let Ok(Some(record)) = raw::read_record(&mut stream) {
                    if record.record_type == raw::STDIN && record.content.is_empty() {
                        count.fetch_add(1, Ordering::SeqCst);
                        let mut out = b"Content-Type: text/plain\r\n\r\n".to_vec();
                        out.extend_from_slice(body);
                        let mut bytes = raw::record(raw::STDOUT, record.request_id, &out);
                        bytes.extend_from_slice(&raw::record(
                            raw::END_REQUEST,
                            record.request_id,
                            &raw::end_request_body(0, raw::REQUEST_COMPLETE, [0; 3]),
                        ));
                        let _ = stream.write_all(&bytes);
                        return;
                    }
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_upstream_is_skipped_then_probed_back() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener); // nothing listens: connects are refused
    let other = Arc::new(AtomicUsize::new(0));
    let other_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_address = other_listener.local_addr().unwrap().to_string();
    serve_on(other_listener, b"other", Arc::clone(&other));
    let client = Client::builder()
        .upstream(address.to_string())
        .upstream(other_address)
        .multiplexing(Multiplexing::Disabled)
        .keep_alive(false)
        .mark_down_after(1)
        .probe_interval(Duration::from_millis(300))
        .build()
        .unwrap();
    for _ in 0..10 {
        let r = within(
            Duration::from_secs(5),
            client.execute(Request::get("/x.php")),
        )
        .await
        .unwrap();
        assert_eq!(r.body, b"other");
    }
    // The first upstream comes back on the same port.
    let back = Arc::new(AtomicUsize::new(0));
    serve_on(
        TcpListener::bind(address).unwrap(),
        b"back",
        Arc::clone(&back),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..10 {
        within(
            Duration::from_secs(5),
            client.execute(Request::get("/x.php")),
        )
        .await
        .unwrap();
    }
    assert!(
        back.load(Ordering::SeqCst) >= 3,
        "the upstream was not probed back: {} requests",
        back.load(Ordering::SeqCst)
    );
}
