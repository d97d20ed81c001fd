//! One table of fault cases, each run against both clients: the blocking
//! [`fcgi::Client`] and the async `fcgi::nonblocking::Client` (through
//! [`support::ClientUnderTest`]; `both_clients!(case)` makes the tests
//! `case::blocking` and `case::nonblocking`). The fake server misbehaves on
//! purpose: silence, trickles, early closes, protocol violations, limits,
//! keep-alive and retries, and what the client itself puts on the wire;
//! cases marked `on_both_transports` run over TCP and a Unix socket.
//!
//! Every call is timed: a fault must end in a typed error (or a correct
//! response) well within [`HANG_BOUND`], never in a hang.
//!
//! Where the two clients differ on purpose, the case asserts what each
//! does and says why: stray records on a kept connection (the blocking
//! client does not pay a system call per request to look for them before
//! reuse; it skips them after).
//!
//! No case differs by accident: the drifts this table found (a refusal
//! costing the blocking client its connection, an early answer lost, a
//! connection not kept after a body its writer thread wrote, GET_VALUES
//! failures read differently) were fixed in the library.
//!
//! Every case that was the blocking client's here applies to both; the
//! async client's cases that apply to both came from `async_fakes.rs` (the
//! kept connection section, the per-request time limits, and the merged
//! request id and stray record cases). Streamed responses go through the
//! same table: the cases with a fault after the head also stream the
//! response, chunk by chunk and with `finish` alone, so that a fault in
//! the middle of a body must surface from `next_chunk` or `finish` of each
//! client ([`support::Streamed`]).
//!
//! Cases that stay with one client, and why:
//! - `async_fakes.rs`: multiplexing and FCGI_ABORT_REQUEST, async body
//!   sources (`from_async_read`, `from_stream`), the pool (discovery,
//!   waits, fairness, reaping, runtimes) and several upstreams: none of
//!   them exists in the blocking client.
//! - The blocking client's own API and threads (`prepared.rs`,
//!   `resources.rs`) and the async client's (`async_*.rs`) have files of
//!   their own; none of their cases is a fault case of the fake server.
#[macro_use]
mod support;

use std::io::{self, Cursor, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fcgi::{Body, Config, Error, Limit, ProtocolStatus, Request, Response, TimeoutPhase, Timeouts};
use fcgi_testkit::fake::{self, Handler, GARBAGE};
use fcgi_testkit::{raw, usage, FakeConn, FakeServer, ReceivedRequest};
use support::{ClientUnderTest, Reading, Streamed, Which};

/// Longest any single call may take: a hang check, not a speed check.
const HANG_BOUND: Duration = Duration::from_secs(5);
const SCRIPT: &str = "/srv/www/test.php";
const OK_HEAD: &[u8] = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n";

/// Short limits so that every fault ends quickly.
fn config() -> Config {
    Config::default()
        .connect_timeout(Duration::from_millis(500))
        .idle_timeout(Duration::from_millis(500))
        .deadline(Duration::from_secs(3))
}

fn client(which: Which, server: &FakeServer, config: Config) -> Box<dyn ClientUnderTest> {
    which
        .connect(&server.address(), config)
        .expect("the fake server's address parses")
}

fn get() -> Request {
    Request::get(SCRIPT)
}

/// Runs `f`, asserting it returns within [`HANG_BOUND`].
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    assert!(elapsed < HANG_BOUND, "call took {elapsed:?}: a hang");
    (out, elapsed)
}

fn execute(client: &dyn ClientUnderTest, request: Request) -> Result<Response, Error> {
    timed(|| client.execute(request)).0
}

fn execute_err(client: &dyn ClientUnderTest, request: Request) -> Error {
    match execute(client, request) {
        Ok(r) => panic!(
            "expected an error, got {} with body {:?}",
            r.status,
            r.body_text()
        ),
        Err(e) => e,
    }
}

/// Streams a fresh `request()` twice, chunk by chunk and with `finish`
/// alone, each call within [`HANG_BOUND`]; the head must arrive. Gives each
/// way's reading, what it read and how long it took.
fn stream_both_ways(
    client: &dyn ClientUnderTest,
    request: impl Fn() -> Request,
) -> [(Reading, Streamed, Duration); 2] {
    [Reading::Chunks, Reading::Finish].map(|reading| {
        let (streamed, elapsed) = timed(|| client.stream(request(), reading));
        let streamed =
            streamed.unwrap_or_else(|e| panic!("{reading:?}: the head did not arrive: {e:?}"));
        (reading, streamed, elapsed)
    })
}

/// A handler that reads one request and then runs `then`.
fn after_request(
    then: impl Fn(&mut FakeConn, &ReceivedRequest) + Send + Sync + 'static,
) -> impl Handler {
    move |conn: &mut FakeConn| {
        if let Ok(req) = conn.read_request() {
            then(conn, &req);
        }
    }
}

/// A handler that answers every request with exactly `stdout` and
/// END_REQUEST, written in one go.
fn answer(stdout: &'static [u8]) -> impl Handler {
    fake::respond_raw(stdout)
}

fn end_record(id: u16, protocol_status: u8) -> Vec<u8> {
    raw::record(
        raw::END_REQUEST,
        id,
        &raw::end_request_body(0, protocol_status, [GARBAGE; 3]),
    )
}

/// STDOUT records carrying `stdout`, then a REQUEST_COMPLETE END_REQUEST.
fn response_bytes(id: u16, stdout: &[u8]) -> Vec<u8> {
    let mut out = raw::record(raw::STDOUT, id, stdout);
    out.extend(end_record(id, raw::REQUEST_COMPLETE));
    out
}

/// Writes `bytes` one at a time, `every` apart, until done or a write fails.
fn trickle(conn: &mut FakeConn, bytes: &[u8], every: Duration) {
    for b in bytes {
        conn.write_raw(&[*b]);
        if conn.write_failed() {
            return;
        }
        thread::sleep(every);
    }
}

/// Runs `check` against a TCP and a Unix fake server built by `make`.
fn on_both_transports<H: Handler>(make: impl Fn() -> H, check: impl Fn(&FakeServer)) {
    for server in [FakeServer::tcp(make()), FakeServer::unix(make())] {
        check(&server);
        assert_eq!(server.handler_panics(), Vec::<String>::new());
    }
}

fn protocol_detail(error: Error) -> String {
    match error {
        Error::Protocol { ref detail, .. } => {
            assert!(error.to_string().contains("protocol error from"), "{error}");
            detail.clone()
        }
        other => panic!("expected Error::Protocol, got {other:?}"),
    }
}

/// `err` is the server's FCGI_OVERLOADED refusal, named in its message;
/// `context` says which call gave it.
fn assert_overloaded(err: &Error, context: &str) {
    assert!(
        matches!(
            err,
            Error::Rejected {
                status: ProtocolStatus::Overloaded,
                ..
            }
        ),
        "{context}: {err:?}"
    );
    assert!(
        err.to_string().contains("FCGI_OVERLOADED"),
        "{context}: {err}"
    );
}

fn closed_received(error: Error) -> u64 {
    match error {
        Error::ConnectionClosed { received, .. } => received,
        other => panic!("expected Error::ConnectionClosed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Silence and slowness

both_clients!(silent_server_hits_the_idle_timeout);
fn silent_server_hits_the_idle_timeout(which: Which) {
    on_both_transports(fake::silent, |server| {
        let client = client(
            which,
            server,
            config()
                .idle_timeout(Duration::from_millis(300))
                .deadline(Duration::from_secs(10)),
        );
        let (result, elapsed) = timed(|| client.execute(get()));
        let error = result.unwrap_err();
        match &error {
            Error::Timeout {
                phase: TimeoutPhase::Idle,
                after,
                address,
            } => {
                assert_eq!(*after, Duration::from_millis(300));
                assert_eq!(*address, server.address());
            }
            other => panic!("expected an idle timeout, got {other:?}"),
        }
        assert!(
            elapsed >= Duration::from_millis(300),
            "fired early: {elapsed:?}"
        );
        assert!(error.to_string().contains("idle timeout"), "{error}");
    });
}

both_clients!(silent_server_hits_the_deadline_when_it_is_shorter_than_idle);
fn silent_server_hits_the_deadline_when_it_is_shorter_than_idle(which: Which) {
    let server = FakeServer::tcp(fake::silent());
    let client = client(
        which,
        &server,
        config()
            .idle_timeout(Duration::from_secs(10))
            .deadline(Duration::from_millis(300)),
    );
    let error = execute_err(&client, get());
    assert!(
        matches!(
            error,
            Error::Timeout { phase: TimeoutPhase::Deadline, after, .. } if after == Duration::from_millis(300)
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("overall deadline"), "{error}");
}

both_clients!(trickled_response_within_the_idle_timeout_completes);
fn trickled_response_within_the_idle_timeout_completes(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        trickle(
            conn,
            &response_bytes(req.id, b"\r\nok"),
            Duration::from_millis(50),
        )
    }));
    let client = client(
        which,
        &server,
        config()
            .idle_timeout(Duration::from_millis(300))
            .deadline(Duration::from_secs(4)),
    );
    let response = execute(&client, get()).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok");
    let streamed = timed(|| client.stream(get(), Reading::Chunks)).0.unwrap();
    assert_eq!(
        (streamed.status, streamed.body.as_slice()),
        (200, &b"ok"[..])
    );
    assert!(streamed.end.is_ok(), "{:?}", streamed.end);
}

/// Answers with a head, then one body byte every 50 ms for far longer than
/// any deadline here.
fn endless_trickle() -> impl Handler {
    after_request(|conn, req| {
        conn.write_stdout(req.id, OK_HEAD);
        let endless: Vec<u8> = (0..200)
            .flat_map(|_| raw::record(raw::STDOUT, req.id, b"x"))
            .collect();
        trickle(conn, &endless, Duration::from_millis(50));
    })
}

fn is_deadline(error: &Error) -> bool {
    matches!(
        error,
        Error::Timeout {
            phase: TimeoutPhase::Deadline,
            ..
        }
    )
}

both_clients!(endless_trickle_still_hits_the_deadline);
fn endless_trickle_still_hits_the_deadline(which: Which) {
    let server = FakeServer::tcp(endless_trickle());
    let client = client(
        which,
        &server,
        config()
            .idle_timeout(Duration::from_millis(300))
            .deadline(Duration::from_millis(600)),
    );
    let (result, elapsed) = timed(|| client.execute(get()));
    let error = result.unwrap_err();
    assert!(is_deadline(&error), "{error:?}");
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    // Streamed, the head arrives and the deadline ends the body: from
    // `next_chunk`, or from `finish` reading the body itself.
    for (reading, streamed, elapsed) in stream_both_ways(&client, get) {
        assert_eq!(streamed.status, 200, "{reading:?}");
        assert!(streamed.body.iter().all(|&b| b == b'x'), "{reading:?}");
        let error = streamed.end_error();
        assert!(is_deadline(&error), "{reading:?}: {error:?}");
        assert!(
            elapsed >= Duration::from_millis(600),
            "{reading:?}: {elapsed:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Early closes

both_clients!(close_with_nothing_sent_is_connection_closed_with_zero_received);
fn close_with_nothing_sent_is_connection_closed_with_zero_received(which: Which) {
    on_both_transports(fake::close_immediately, |server| {
        let error = execute_err(&client(which, server, config()), get());
        let message = error.to_string();
        assert_eq!(closed_received(error), 0);
        assert!(message.contains("is this a FastCGI server"), "{message}");
    });
}

both_clients!(close_inside_a_record_header_is_connection_closed);
fn close_inside_a_record_header_is_connection_closed(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_raw(&raw::record(raw::STDOUT, req.id, b"Status: 200 OK\r\n")[..5]);
    }));
    let error = execute_err(&client(which, &server, config()), get());
    assert_eq!(closed_received(error), 5);
}

both_clients!(close_inside_a_record_that_claims_more_content_is_connection_closed);
fn close_inside_a_record_that_claims_more_content_is_connection_closed(which: Which) {
    on_both_transports(
        || {
            after_request(|conn, req| {
                let mut record = raw::record(raw::STDOUT, req.id, &[b'.'; 100]);
                record.truncate(8);
                record.extend_from_slice(b"Status: 200 OK\r\n\r\nab");
                conn.write_raw(&record);
            })
        },
        |server| {
            let error = execute_err(&client(which, server, config()), get());
            let message = error.to_string();
            assert_eq!(closed_received(error), 8 + 20);
            assert!(
                message.contains("28 bytes of response received"),
                "{message}"
            );
        },
    );
}

both_clients!(close_after_all_stdout_but_before_end_request_is_connection_closed);
fn close_after_all_stdout_but_before_end_request_is_connection_closed(which: Which) {
    let stdout = b"Status: 200 OK\r\n\r\nthe whole body";
    let server = FakeServer::tcp(after_request(move |conn, req| {
        conn.write_raw(&raw::record(raw::STDOUT, req.id, stdout));
    }));
    let client = client(which, &server, config());
    let error = execute_err(&client, get());
    assert_eq!(closed_received(error), (8 + stdout.len()) as u64);
    // Streamed, the whole body arrives and the close then surfaces from
    // `next_chunk` (or `finish`), never as a clean end.
    for (reading, streamed, _) in stream_both_ways(&client, get) {
        let expected_body: &[u8] = match reading {
            Reading::Chunks => b"the whole body",
            Reading::Finish => b"",
        };
        assert_eq!(streamed.body, expected_body, "{reading:?}");
        let error = streamed.end_error();
        assert!(
            matches!(error, Error::ConnectionClosed { .. }),
            "{reading:?}: {error:?}"
        );
    }
}

both_clients!(close_in_the_middle_of_a_streamed_body_surfaces_from_the_stream);
fn close_in_the_middle_of_a_streamed_body_surfaces_from_the_stream(which: Which) {
    // The head and a first part arrive; the rest of the body comes later,
    // inside a record cut short by the close (its header and 10 bytes).
    const FIRST: &[u8] = b"Status: 200 OK\r\n\r\nfirst part;";
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_raw(&raw::record(raw::STDOUT, req.id, FIRST));
        thread::sleep(Duration::from_millis(50));
        let mut record = raw::record(raw::STDOUT, req.id, &[b's'; 1000]);
        record.truncate(8 + 10);
        conn.write_raw(&record);
    }));
    // Padding included.
    let received = (raw::record(raw::STDOUT, 1, FIRST).len() + 8 + 10) as u64;
    let client = client(which, &server, config());
    let error = execute_err(&client, get());
    assert_eq!(closed_received(error), received);
    for (reading, streamed, _) in stream_both_ways(&client, get) {
        assert_eq!(streamed.status, 200, "{reading:?}");
        if reading == Reading::Chunks {
            assert!(
                streamed.body.starts_with(b"first part;"),
                "{:?}",
                String::from_utf8_lossy(&streamed.body)
            );
            assert!(streamed.body[11..].iter().all(|&b| b == b's'));
        }
        assert_eq!(
            closed_received(streamed.end_error()),
            received,
            "{reading:?}"
        );
    }
}

both_clients!(silence_in_the_middle_of_a_streamed_body_hits_the_idle_timeout);
fn silence_in_the_middle_of_a_streamed_body_hits_the_idle_timeout(which: Which) {
    // The head and part of the body, then nothing, the connection open.
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_stdout(req.id, b"Status: 200 OK\r\n\r\npart");
        // Until the client gives up and closes.
        let _ = conn.read_to_eof();
    }));
    let client = client(
        which,
        &server,
        config()
            .idle_timeout(Duration::from_millis(300))
            .deadline(Duration::from_secs(10)),
    );
    for (reading, streamed, elapsed) in stream_both_ways(&client, get) {
        if reading == Reading::Chunks {
            assert_eq!(streamed.body, b"part");
        }
        let error = streamed.end_error();
        assert!(
            matches!(
                error,
                Error::Timeout { phase: TimeoutPhase::Idle, after, .. }
                    if after == Duration::from_millis(300)
            ),
            "{reading:?}: {error:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(300),
            "{reading:?}: {elapsed:?}"
        );
    }
}

both_clients!(a_record_for_another_id_in_the_middle_of_a_streamed_body_is_a_protocol_error);
fn a_record_for_another_id_in_the_middle_of_a_streamed_body_is_a_protocol_error(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_stdout(req.id, b"Status: 200 OK\r\n\r\nbefore;");
        thread::sleep(Duration::from_millis(50));
        conn.write_record(raw::VERSION, raw::STDOUT, 7, b"stray", 0);
        conn.write_raw(&response_bytes(req.id, b"after"));
    }));
    let client = client(which, &server, config());
    let detail = protocol_detail(execute_err(&client, get()));
    assert!(detail.contains("request id 7"), "{detail}");
    for (reading, streamed, _) in stream_both_ways(&client, get) {
        if reading == Reading::Chunks {
            assert_eq!(streamed.body, b"before;");
        }
        let detail = protocol_detail(streamed.end_error());
        assert!(detail.contains("request id 7"), "{reading:?}: {detail}");
        assert!(detail.contains("expected 1"), "{reading:?}: {detail}");
    }
}

// ---------------------------------------------------------------------------
// Protocol violations

both_clients!(wrong_version_is_a_protocol_error_naming_it);
fn wrong_version_is_a_protocol_error_naming_it(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_record(2, raw::STDOUT, req.id, OK_HEAD, 0);
    }));
    let detail = protocol_detail(execute_err(&client(which, &server, config()), get()));
    assert!(detail.contains("version 2"), "{detail}");
}

both_clients!(record_for_another_request_id_is_a_protocol_error_naming_it);
fn record_for_another_request_id_is_a_protocol_error_naming_it(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, _| {
        conn.write_record(raw::VERSION, raw::STDOUT, 7, OK_HEAD, 0);
    }));
    let detail = protocol_detail(execute_err(&client(which, &server, config()), get()));
    assert!(detail.contains("request id 7"), "{detail}");
    assert!(detail.contains("expected 1"), "{detail}");
}

both_clients!(end_request_with_a_wrong_content_length_is_a_protocol_error);
fn end_request_with_a_wrong_content_length_is_a_protocol_error(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_stdout(req.id, OK_HEAD);
        conn.write_record(raw::VERSION, raw::END_REQUEST, req.id, &[0; 5], 0);
    }));
    let detail = protocol_detail(execute_err(&client(which, &server, config()), get()));
    assert!(detail.contains("FCGI_END_REQUEST"), "{detail}");
    assert!(detail.contains("5 content bytes, expected 8"), "{detail}");
}

both_clients!(unknown_record_type_is_a_protocol_error_naming_it);
fn unknown_record_type_is_a_protocol_error_naming_it(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_record(raw::VERSION, 42, req.id, b"????????", 0);
    }));
    let detail = protocol_detail(execute_err(&client(which, &server, config()), get()));
    assert!(detail.contains("unknown record type 42"), "{detail}");
}

both_clients!(request_side_record_types_from_the_server_are_protocol_errors_naming_them);
fn request_side_record_types_from_the_server_are_protocol_errors_naming_them(which: Which) {
    let cases = [
        (raw::BEGIN_REQUEST, "FCGI_BEGIN_REQUEST"),
        (raw::ABORT_REQUEST, "FCGI_ABORT_REQUEST"),
        (raw::PARAMS, "FCGI_PARAMS"),
        (raw::STDIN, "FCGI_STDIN"),
        (raw::DATA, "FCGI_DATA"),
        (raw::GET_VALUES, "FCGI_GET_VALUES"),
    ];
    for (record_type, name) in cases {
        let server = FakeServer::tcp(after_request(move |conn, req| {
            conn.write_record(
                raw::VERSION,
                record_type,
                req.id,
                &[0, 1, 0, 0, 0, 0, 0, 0],
                0,
            );
        }));
        let detail = protocol_detail(execute_err(&client(which, &server, config()), get()));
        assert!(detail.contains(name), "type {record_type}: {detail}");
    }
}

both_clients!(end_request_before_the_head_is_complete_is_a_protocol_error);
fn end_request_before_the_head_is_complete_is_a_protocol_error(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_raw(&response_bytes(req.id, b"Status: 200 OK\r\nX-Cut"));
    }));
    let detail = protocol_detail(execute_err(&client(which, &server, config()), get()));
    assert!(detail.contains("inside the CGI header block"), "{detail}");
}

// ---------------------------------------------------------------------------
// Limits

both_clients!(endless_response_head_stops_at_max_head_bytes_without_reading_on);
fn endless_response_head_stops_at_max_head_bytes_without_reading_on(which: Which) {
    let sent_everything = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&sent_everything);
    let server = FakeServer::tcp(after_request(move |conn, req| {
        // Up to 64 MiB of header lines, far beyond any socket buffer.
        let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
        let chunk: Vec<u8> = line.as_bytes().repeat(60);
        for _ in 0..(64 << 20) / chunk.len() {
            conn.write_raw(&raw::record(raw::STDOUT, req.id, &chunk));
            if conn.write_failed() {
                return;
            }
        }
        flag.store(true, Ordering::SeqCst);
    }));
    let client = client(which, &server, config().max_head_bytes(1024));
    // Collected, then streamed: the head never ends, so `stream` fails too.
    let errors = [
        execute_err(&client, get()),
        timed(|| client.stream(get(), Reading::Chunks))
            .0
            .unwrap_err(),
    ];
    for (error, finished) in errors.into_iter().zip([1, 2]) {
        assert!(
            matches!(
                error,
                Error::LimitExceeded {
                    limit: Limit::HeadBytes,
                    max: 1024
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("max_head_bytes"), "{error}");
        assert!(
            server.wait_for_finished(finished, HANG_BOUND),
            "fake still writing"
        );
        assert!(
            !sent_everything.load(Ordering::SeqCst),
            "the client read the whole endless head instead of stopping"
        );
    }
}

both_clients!(stderr_over_the_limit_is_counted_and_dropped);
fn stderr_over_the_limit_is_counted_and_dropped(which: Which) {
    let flood = fcgi_testkit::pattern(100_000);
    let expected = flood.clone();
    let server = FakeServer::tcp(after_request(move |conn, req| {
        conn.write_stderr(req.id, &flood);
        conn.write_raw(&response_bytes(req.id, b"\r\nfine"));
    }));
    let response = execute(
        &client(which, &server, config().max_stderr_bytes(1000)),
        get(),
    )
    .unwrap();
    assert_eq!(response.body, b"fine");
    assert_eq!(response.stderr.len(), 1000);
    assert_eq!(response.stderr, expected[..1000]);
    assert_eq!(response.stderr_dropped, 99_000);
}

both_clients!(stderr_over_the_limit_is_counted_and_dropped_when_streamed_too);
fn stderr_over_the_limit_is_counted_and_dropped_when_streamed_too(which: Which) {
    let flood = fcgi_testkit::pattern(100_000);
    let expected = flood.clone();
    let server = FakeServer::tcp(after_request(move |conn, req| {
        conn.write_stdout(req.id, OK_HEAD);
        conn.write_stderr(req.id, &flood);
        conn.write_raw(&response_bytes(req.id, b"fine"));
    }));
    let client = client(which, &server, config().max_stderr_bytes(1000));
    for (reading, streamed, _) in stream_both_ways(&client, get) {
        if reading == Reading::Chunks {
            assert_eq!(streamed.body, b"fine");
            // The chunks hand out all of it; the limit bounds what is kept.
            assert!(streamed.stderr_chunks == expected, "STDERR chunks differ");
        }
        let trailer = streamed
            .end
            .unwrap_or_else(|e| panic!("{reading:?}: {e:?}"));
        assert_eq!(trailer.stderr, expected[..1000], "{reading:?}");
        assert_eq!(trailer.stderr_dropped, 99_000, "{reading:?}");
    }
}

both_clients!(body_over_max_body_bytes_is_limit_exceeded);
fn body_over_max_body_bytes_is_limit_exceeded(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        let mut stdout = OK_HEAD.to_vec();
        stdout.extend(vec![b'b'; 10_000]);
        conn.write_raw(&response_bytes(req.id, &stdout));
    }));
    let client = client(which, &server, config().max_body_bytes(1000));
    let error = execute_err(&client, get());
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                limit: Limit::BodyBytes,
                max: 1000
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("stream large responses"),
        "{error}"
    );
    // As the message says: streamed, the whole body arrives.
    let streamed = timed(|| client.stream(get(), Reading::Chunks)).0.unwrap();
    assert_eq!(streamed.body.len(), 10_000);
    assert!(streamed.body.iter().all(|&b| b == b'b'));
    assert!(streamed.end.is_ok(), "{:?}", streamed.end);
}

both_clients!(body_of_exactly_max_body_bytes_is_accepted);
fn body_of_exactly_max_body_bytes_is_accepted(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        let mut stdout = OK_HEAD.to_vec();
        stdout.extend(vec![b'b'; 1000]);
        conn.write_raw(&response_bytes(req.id, &stdout));
    }));
    let response = execute(
        &client(which, &server, config().max_body_bytes(1000)),
        get(),
    )
    .unwrap();
    assert_eq!(response.body.len(), 1000);
}

// ---------------------------------------------------------------------------
// Rejections

both_clients!(every_non_complete_protocol_status_is_rejected_with_its_raw_value);
fn every_non_complete_protocol_status_is_rejected_with_its_raw_value(which: Which) {
    for (raw_status, name) in [
        (raw::CANT_MPX_CONN, "FCGI_CANT_MPX_CONN"),
        (raw::OVERLOADED, "FCGI_OVERLOADED"),
        (raw::UNKNOWN_ROLE, "FCGI_UNKNOWN_ROLE"),
        (9, "undefined"),
    ] {
        let server = FakeServer::tcp(after_request(move |conn, req| {
            conn.write_end(req.id, 0, raw_status);
        }));
        let error = execute_err(&client(which, &server, config()), get());
        let message = error.to_string();
        match error {
            Error::Rejected { status, .. } => {
                assert_eq!(status.to_u8(), raw_status);
                assert_eq!(status, ProtocolStatus::from_u8(raw_status));
            }
            other => panic!("status {raw_status}: expected Rejected, got {other:?}"),
        }
        assert!(message.contains(name), "{message}");
        assert!(message.contains(&format!("({raw_status})")), "{message}");
    }
}

// ---------------------------------------------------------------------------
// Odd but valid responses

both_clients!(one_byte_records_with_padding_give_the_exact_response);
fn one_byte_records_with_padding_give_the_exact_response(which: Which) {
    let stdout = b"Status: 201 Created\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nbody in pieces";
    let server = FakeServer::tcp(after_request(move |conn, req| {
        let mut bytes = Vec::new();
        for b in stdout {
            bytes.extend(raw::record_with(
                raw::VERSION,
                raw::STDOUT,
                req.id,
                &[*b],
                7,
            ));
        }
        bytes.extend(end_record(req.id, raw::REQUEST_COMPLETE));
        conn.write_raw(&bytes);
    }));
    let response = execute(&client(which, &server, config()), get()).unwrap();
    assert_eq!(
        (response.status, response.reason.as_str()),
        (201, "Created")
    );
    let cookies: Vec<_> = response.headers.get_all("set-cookie").collect();
    assert_eq!(cookies, [&b"a=1"[..], b"b=2"]);
    assert_eq!(response.body, b"body in pieces");
}

both_clients!(stderr_interleaved_with_stdout_keeps_both_streams_exact);
fn stderr_interleaved_with_stdout_keeps_both_streams_exact(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_stderr(req.id, b"warn 0;");
        conn.write_stdout(req.id, OK_HEAD);
        for i in 1..=5 {
            conn.write_stdout(req.id, format!("out {i};").as_bytes());
            conn.write_stderr(req.id, format!("warn {i};").as_bytes());
        }
        conn.write_end(req.id, 0, raw::REQUEST_COMPLETE);
    }));
    let client = client(which, &server, config());
    let response = execute(&client, get()).unwrap();
    assert_eq!(response.body_text(), "out 1;out 2;out 3;out 4;out 5;");
    assert_eq!(
        response.stderr_text(),
        "warn 0;warn 1;warn 2;warn 3;warn 4;warn 5;"
    );
    assert_eq!(response.stderr_dropped, 0);
    // Streamed: STDERR before the head is in the stream's stderr, the rest
    // comes as chunks, and the trailer holds all of it.
    for (reading, streamed, _) in stream_both_ways(&client, get) {
        assert_eq!(
            (streamed.status, streamed.reason.as_str()),
            (200, "OK"),
            "{reading:?}"
        );
        assert_eq!(streamed.headers.get("content-type"), Some("text/plain"));
        assert_eq!(streamed.stderr_before_body, b"warn 0;", "{reading:?}");
        if reading == Reading::Chunks {
            assert_eq!(streamed.body, b"out 1;out 2;out 3;out 4;out 5;");
            assert_eq!(
                streamed.stderr_chunks,
                b"warn 1;warn 2;warn 3;warn 4;warn 5;"
            );
        }
        let trailer = streamed
            .end
            .unwrap_or_else(|e| panic!("{reading:?}: {e:?}"));
        assert_eq!(
            trailer.stderr, b"warn 0;warn 1;warn 2;warn 3;warn 4;warn 5;",
            "{reading:?}"
        );
    }
}

both_clients!(lf_only_head_is_parsed);
fn lf_only_head_is_parsed(which: Which) {
    let server = FakeServer::tcp(answer(
        b"Status: 404 Not Found\nContent-Type: text/html\n\nmissing",
    ));
    let response = execute(&client(which, &server, config()), get()).unwrap();
    assert_eq!(
        (response.status, response.reason.as_str()),
        (404, "Not Found")
    );
    assert_eq!(response.headers.get("content-type"), Some("text/html"));
    assert_eq!(response.body, b"missing");
}

both_clients!(empty_head_block_means_200_with_no_headers);
fn empty_head_block_means_200_with_no_headers(which: Which) {
    let server = FakeServer::tcp(answer(b"\r\njust a body"));
    let response = execute(&client(which, &server, config()), get()).unwrap();
    assert_eq!((response.status, response.reason.as_str()), (200, "OK"));
    assert!(response.headers.is_empty());
    assert_eq!(response.body, b"just a body");
}

both_clients!(status_without_reason_gets_the_standard_reason);
fn status_without_reason_gets_the_standard_reason(which: Which) {
    let server = FakeServer::tcp(answer(b"Status: 404\r\n\r\n"));
    let response = execute(&client(which, &server, config()), get()).unwrap();
    assert_eq!(
        (response.status, response.reason.as_str()),
        (404, "Not Found")
    );
    assert!(response.body.is_empty());
}

both_clients!(bare_location_means_302);
fn bare_location_means_302(which: Which) {
    let server = FakeServer::tcp(answer(b"Location: /elsewhere\r\n\r\n"));
    let response = execute(&client(which, &server, config()), get()).unwrap();
    assert_eq!((response.status, response.reason.as_str()), (302, "Found"));
    assert_eq!(response.headers.get("location"), Some("/elsewhere"));
}

both_clients!(management_records_before_the_response_are_ignored);
fn management_records_before_the_response_are_ignored(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_values_result(&[("FCGI_MPXS_CONNS", "0")]);
        conn.write_unknown_type(42);
        conn.write_raw(&response_bytes(req.id, b"Status: 200 OK\r\n\r\nreal"));
    }));
    let response = execute(&client(which, &server, config()), get()).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"real");
}

both_clients!(management_records_in_the_middle_of_a_body_are_ignored);
fn management_records_in_the_middle_of_a_body_are_ignored(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_stdout(req.id, b"Status: 200 OK\r\n\r\nbefore;");
        conn.write_values_result(&[("FCGI_MPXS_CONNS", "0")]);
        conn.write_unknown_type(42);
        conn.write_raw(&response_bytes(req.id, b"after"));
    }));
    let client = client(which, &server, config());
    assert_eq!(execute(&client, get()).unwrap().body, b"before;after");
    let streamed = timed(|| client.stream(get(), Reading::Chunks)).0.unwrap();
    assert_eq!(streamed.body, b"before;after");
    assert!(streamed.end.is_ok(), "{:?}", streamed.end);
}

both_clients!(end_request_before_the_body_was_read_returns_the_response);
fn end_request_before_the_body_was_read_returns_the_response(which: Which) {
    // The script ignores its input: the answer comes right after PARAMS while
    // a body far larger than any socket buffer is pending, unread for a while.
    let server = FakeServer::tcp(|conn: &mut FakeConn| {
        let Ok(req) = conn.read_begin_and_params() else {
            return;
        };
        conn.respond(req.id, b"Status: 200 OK\r\n\r\nignored your body");
        thread::sleep(Duration::from_secs(1));
        let _ = conn.read_to_eof();
    });
    let client = client(which, &server, config().keep_alive(true));
    for _ in 0..2 {
        let request = Request::post(SCRIPT, "application/octet-stream", vec![7u8; 16 << 20]);
        let response = execute(&client, request).unwrap();
        assert_eq!(response.body, b"ignored your body");
    }
    // A connection with a half-sent body is never reused.
    assert_eq!(server.connections(), 2);
    // Streamed, the same: the answer, a clean end, a fresh connection.
    let request = Request::post(SCRIPT, "application/octet-stream", vec![7u8; 16 << 20]);
    let streamed = timed(|| client.stream(request, Reading::Chunks)).0.unwrap();
    assert_eq!(streamed.body, b"ignored your body");
    assert!(streamed.end.is_ok(), "{:?}", streamed.end);
    assert_eq!(execute(&client, get()).unwrap().body, b"ignored your body");
    assert_eq!(server.connections(), 4);
}

// ---------------------------------------------------------------------------
// Management requests

both_clients!(get_values_returns_the_pairs_the_server_answered);
fn get_values_returns_the_pairs_the_server_answered(which: Which) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    let server = FakeServer::tcp(move |conn: &mut FakeConn| {
        if let Ok(Some(record)) = conn.read_record() {
            let names = raw::decode_pairs(&record.content).unwrap_or_default();
            seen.lock()
                .unwrap()
                .push((record.record_type, record.request_id, names));
            conn.write_values_result(&[("FCGI_MPXS_CONNS", "0")]);
        }
    });
    let client = client(which, &server, config());
    let (values, _) = timed(|| client.get_values(&["FCGI_MPXS_CONNS", "FCGI_MAX_CONNS"]));
    assert_eq!(
        values.unwrap(),
        [("FCGI_MPXS_CONNS".to_string(), "0".to_string())]
    );
    let asked = asked.lock().unwrap();
    let (record_type, request_id, names) = &asked[0];
    assert_eq!((*record_type, *request_id), (raw::GET_VALUES, 0));
    let names: Vec<_> = names.iter().map(|(n, v)| (&n[..], v.len())).collect();
    assert_eq!(
        names,
        [(&b"FCGI_MPXS_CONNS"[..], 0), (b"FCGI_MAX_CONNS", 0)]
    );
}

both_clients!(get_values_answered_with_unknown_type_is_an_error);
fn get_values_answered_with_unknown_type_is_an_error(which: Which) {
    let server = FakeServer::tcp(|conn: &mut FakeConn| {
        if let Ok(Some(_)) = conn.read_record() {
            conn.write_unknown_type(raw::GET_VALUES);
        }
    });
    let client = client(which, &server, config());
    let (result, _) = timed(|| client.get_values(&["FCGI_MPXS_CONNS"]));
    let detail = protocol_detail(result.unwrap_err());
    assert!(
        detail.contains("does not understand management record type 9"),
        "{detail}"
    );
}

both_clients!(get_values_with_no_answer_before_the_close_is_connection_closed);
fn get_values_with_no_answer_before_the_close_is_connection_closed(which: Which) {
    // The server closes instead of answering: after reading the question,
    // after half a record header, or without reading it (the unread
    // question makes the close a reset). Each client says the connection
    // closed, with the bytes received, not a bare I/O error.
    let cases: [(bool, &[u8]); 3] = [(true, b""), (true, b"\x01\x0a\x00"), (false, b"")];
    for (read_question, answered) in cases {
        let server = FakeServer::tcp(move |conn: &mut FakeConn| {
            if read_question {
                if let Ok(Some(_)) = conn.read_record() {
                    conn.write_raw(answered);
                }
            } else {
                // Long enough for the question to arrive unread.
                thread::sleep(Duration::from_millis(100));
            }
        });
        let client = client(which, &server, config());
        let (result, _) = timed(|| client.get_values(&["FCGI_MPXS_CONNS"]));
        match result.unwrap_err() {
            Error::ConnectionClosed { address, received } => {
                assert_eq!(address, server.address());
                assert_eq!(received, answered.len() as u64);
            }
            other => {
                panic!("read_question={read_question}: expected ConnectionClosed, got {other:?}")
            }
        }
    }
}

// ---------------------------------------------------------------------------
// What the client sends

/// A handler that records every request it reads (answering with OK).
fn recording() -> (impl Handler, Arc<Mutex<Vec<ReceivedRequest>>>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&requests);
    let handler = fake::serve(move |conn, req| {
        store.lock().unwrap().push(req.clone());
        let mut stdout = OK_HEAD.to_vec();
        stdout.extend_from_slice(&req.stdin);
        conn.respond(req.id, &stdout);
    });
    (handler, requests)
}

fn big_params_request() -> Request {
    // 127/128 straddle the one-byte/four-byte length boundary.
    let mut request = get()
        .param("LEN_127", "v".repeat(127))
        .param("LEN_128", "v".repeat(128))
        .param("N".repeat(128), "name of 128 bytes");
    for i in 0..30 {
        request = request.param(format!("HTTP_X_BIG_{i}"), format!("{i}").repeat(6000));
    }
    request
}

both_clients!(params_are_split_into_records_only_between_pairs);
fn params_are_split_into_records_only_between_pairs(which: Which) {
    let (handler, requests) = recording();
    let server = FakeServer::tcp(handler);
    let request = big_params_request();
    let sent: Vec<(Vec<u8>, Vec<u8>)> = request
        .params()
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    execute(&client(which, &server, config()), request).unwrap();
    let received = &requests.lock().unwrap()[0];
    assert_eq!(received.params, sent);
    assert!(
        received.params_records > 1,
        "{:?}",
        received.params_record_sizes
    );
    assert!(!received.pair_split_across_records);
    assert!(received.params_record_sizes.iter().all(|&n| n <= 65535));
}

both_clients!(no_record_exceeds_65535_bytes_and_stdin_chunks_stay_within_65528);
fn no_record_exceeds_65535_bytes_and_stdin_chunks_stay_within_65528(which: Which) {
    let records = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&records);
    let server = FakeServer::tcp(move |conn: &mut FakeConn| {
        while let Ok(Some(record)) = conn.read_record() {
            let end = record.record_type == raw::STDIN && record.content.is_empty();
            store.lock().unwrap().push((
                record.record_type,
                record.content.len(),
                record.padding_len,
            ));
            if end {
                conn.respond(1, OK_HEAD);
                return;
            }
        }
    });
    let body = fcgi_testkit::pattern(300_000);
    let request = big_params_request()
        .param("REQUEST_METHOD", "POST")
        .body(body);
    execute(&client(which, &server, config()), request).unwrap();
    let records = records.lock().unwrap();
    for &(record_type, len, padding) in records.iter() {
        assert!(
            len + padding as usize <= 65535,
            "type {record_type}: {len}+{padding}"
        );
        if record_type == raw::STDIN {
            assert!(len <= 65528, "STDIN record of {len} bytes");
        }
    }
    let stdin: usize = records
        .iter()
        .filter(|r| r.0 == raw::STDIN)
        .map(|r| r.1)
        .sum();
    assert_eq!(stdin, 300_000);
}

both_clients!(stdin_arrives_whole_in_chunks_of_at_most_65528_from_bytes_and_from_a_reader);
fn stdin_arrives_whole_in_chunks_of_at_most_65528_from_bytes_and_from_a_reader(which: Which) {
    let (handler, requests) = recording();
    let server = FakeServer::tcp(handler);
    let client = client(which, &server, config());
    let body = fcgi_testkit::pattern(200_000);
    let from_bytes = Request::post(SCRIPT, "application/octet-stream", body.clone());
    let from_reader = Request::post(
        SCRIPT,
        "application/octet-stream",
        Body::from_reader(Cursor::new(body.clone()), Some(body.len() as u64)),
    );
    for request in [from_bytes, from_reader] {
        let response = execute(&client, request).unwrap();
        assert!(response.body == body, "echoed body differs");
    }
    for received in requests.lock().unwrap().iter() {
        assert!(received.stdin == body);
        assert!(received.stdin_record_sizes.iter().all(|&n| n <= 65528));
        assert_eq!(received.param_str("CONTENT_LENGTH"), Some("200000".into()));
    }
}

both_clients!(empty_params_and_stdin_terminators_are_always_sent);
fn empty_params_and_stdin_terminators_are_always_sent(which: Which) {
    // The fake's read_request waits for both empty records: without them it
    // would never answer and the client would time out.
    let (handler, requests) = recording();
    let server = FakeServer::tcp(handler);
    let client = client(which, &server, config());
    execute(&client, Request::new()).unwrap();
    execute(&client, get().body(Body::from_reader(io::empty(), Some(0)))).unwrap();
    execute(&client, get().body(Vec::new())).unwrap();
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 3);
    assert!(requests[0].params.is_empty());
    assert_eq!(requests[0].params_records, 0);
    for received in requests.iter() {
        assert!(received.stdin.is_empty());
        assert!(received.stdin_record_sizes.is_empty());
        assert!(
            received.other_records.is_empty(),
            "{:?}",
            received.other_records
        );
    }
}

both_clients!(content_length_is_derived_from_the_body);
fn content_length_is_derived_from_the_body(which: Which) {
    let (handler, requests) = recording();
    let server = FakeServer::tcp(handler);
    let client = client(which, &server, config());
    execute(&client, Request::post(SCRIPT, "text/plain", "hello")).unwrap();
    let reader = Body::from_reader(Cursor::new(b"twelve bytes".to_vec()), Some(12));
    execute(&client, Request::post(SCRIPT, "text/plain", reader)).unwrap();
    let requests = requests.lock().unwrap();
    assert_eq!(requests[0].param_str("CONTENT_LENGTH"), Some("5".into()));
    assert_eq!(requests[1].param_str("CONTENT_LENGTH"), Some("12".into()));
    assert_eq!(requests[1].stdin, b"twelve bytes");
}

both_clients!(content_length_contradicting_the_body_is_refused_before_sending);
fn content_length_contradicting_the_body_is_refused_before_sending(which: Which) {
    let server = FakeServer::tcp(fake::respond_ok("x"));
    let request = Request::post(SCRIPT, "text/plain", "hello").param("CONTENT_LENGTH", "9");
    let error = execute_err(&client(which, &server, config()), request);
    assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
    assert!(error.to_string().contains("CONTENT_LENGTH is 9"), "{error}");
    thread::sleep(Duration::from_millis(50));
    assert_eq!(server.connections(), 0);
}

both_clients!(keep_conn_flag_is_set_only_with_keep_alive);
fn keep_conn_flag_is_set_only_with_keep_alive(which: Which) {
    for keep_alive in [false, true] {
        let (handler, requests) = recording();
        let server = FakeServer::tcp(handler);
        execute(
            &client(which, &server, config().keep_alive(keep_alive)),
            get(),
        )
        .unwrap();
        let received = &requests.lock().unwrap()[0];
        assert_eq!(received.keep_conn, keep_alive);
        assert_eq!(received.flags, u8::from(keep_alive));
        assert_eq!((received.id, received.role), (1, raw::RESPONDER));
    }
}

// ---------------------------------------------------------------------------
// Keep-alive and retries

both_clients!(keep_alive_reuses_one_connection);
fn keep_alive_reuses_one_connection(which: Which) {
    on_both_transports(
        || fake::respond_ok("kept"),
        |server| {
            let client = client(which, server, config().keep_alive(true));
            for _ in 0..10 {
                assert_eq!(execute(&client, get()).unwrap().body, b"kept");
            }
            assert_eq!(server.connections(), 1);
        },
    );
}

both_clients!(without_keep_alive_each_request_opens_its_own_connection);
fn without_keep_alive_each_request_opens_its_own_connection(which: Which) {
    let server = FakeServer::tcp(fake::respond_ok("single"));
    let client = client(which, &server, config());
    for _ in 0..10 {
        assert_eq!(execute(&client, get()).unwrap().body, b"single");
    }
    assert_eq!(server.connections(), 10);
}

/// Serves `n` requests on a kept connection, then closes it (like php-fpm
/// after `pm.max_requests`).
fn serve_then_close(n: usize) -> impl Handler {
    move |conn: &mut FakeConn| {
        for _ in 0..n {
            let Ok(req) = conn.read_request() else {
                return;
            };
            conn.respond(req.id, b"Status: 200 OK\r\n\r\nserved");
        }
    }
}

both_clients!(kept_connection_closed_by_the_server_is_retried_on_a_fresh_one);
fn kept_connection_closed_by_the_server_is_retried_on_a_fresh_one(which: Which) {
    on_both_transports(
        || serve_then_close(3),
        |server| {
            let client = client(which, server, config().keep_alive(true));
            for i in 0..20 {
                let response =
                    execute(&client, get()).unwrap_or_else(|e| panic!("request {i} failed: {e}"));
                assert_eq!(response.body, b"served");
            }
            assert_eq!(server.connections(), 7);
        },
    );
}

both_clients!(streaming_body_is_not_sent_on_a_kept_connection_the_server_closed);
fn streaming_body_is_not_sent_on_a_kept_connection_the_server_closed(which: Which) {
    // A reader cannot be replayed, so the client must notice the close before
    // sending rather than retry after.
    let server = FakeServer::tcp(fake::serve(|conn, req| {
        let mut stdout = OK_HEAD.to_vec();
        stdout.extend_from_slice(&req.stdin);
        conn.respond(req.id, &stdout);
        conn.close();
    }));
    let client = client(which, &server, config().keep_alive(true));
    execute(&client, get()).unwrap();
    assert!(server.wait_for_finished(1, HANG_BOUND));
    thread::sleep(Duration::from_millis(50));
    let body = Body::from_reader(Cursor::new(b"streamed".to_vec()), Some(8));
    let response = execute(&client, Request::post(SCRIPT, "text/plain", body)).unwrap();
    assert_eq!(response.body, b"streamed");
    assert_eq!(server.connections(), 2);
}

both_clients!(partial_response_on_a_kept_connection_is_never_retried);
fn partial_response_on_a_kept_connection_is_never_retried(which: Which) {
    on_both_transports(
        || {
            |conn: &mut FakeConn| {
                if let Ok(req) = conn.read_request() {
                    conn.respond(req.id, b"Status: 200 OK\r\n\r\nfirst");
                }
                if let Ok(req) = conn.read_request() {
                    conn.write_stdout(req.id, b"Status: 200 OK\r\nX-Half");
                }
            }
        },
        |server| {
            let client = client(which, server, config().keep_alive(true));
            assert_eq!(execute(&client, get()).unwrap().body, b"first");
            let error = execute_err(&client, get());
            assert!(closed_received(error) > 0);
            thread::sleep(Duration::from_millis(100));
            assert_eq!(server.connections(), 1, "the request was sent twice");
            // Streamed (the head never completes): not sent twice either.
            let streaming = crate::client(which, server, config().keep_alive(true));
            assert_eq!(execute(&streaming, get()).unwrap().body, b"first");
            let error = timed(|| streaming.stream(get(), Reading::Chunks))
                .0
                .unwrap_err();
            assert!(closed_received(error) > 0);
            thread::sleep(Duration::from_millis(100));
            assert_eq!(server.connections(), 2, "the request was sent twice");
        },
    );
}

both_clients!(stderr_then_close_on_a_kept_connection_is_never_retried);
fn stderr_then_close_on_a_kept_connection_is_never_retried(which: Which) {
    let server = FakeServer::tcp(|conn: &mut FakeConn| {
        if let Ok(req) = conn.read_request() {
            conn.respond(req.id, b"Status: 200 OK\r\n\r\nfirst");
        }
        if let Ok(req) = conn.read_request() {
            conn.write_stderr(req.id, b"PHP Fatal error: out of memory");
        }
    });
    let client = client(which, &server, config().keep_alive(true));
    execute(&client, get()).unwrap();
    let error = execute_err(&client, get());
    assert!(closed_received(error) > 0);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(server.connections(), 1, "the request was sent twice");
}

// ---------------------------------------------------------------------------
// Request bodies that fail

both_clients!(body_shorter_than_its_declared_length_is_an_error_naming_it);
fn body_shorter_than_its_declared_length_is_an_error_naming_it(which: Which) {
    let server = FakeServer::tcp(fake::echo_stdin());
    let body = Body::from_reader(Cursor::new(vec![1u8; 10]), Some(100));
    let error = execute_err(
        &client(which, &server, config()),
        Request::post(SCRIPT, "application/octet-stream", body),
    );
    assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("after 10 bytes"), "{message}");
    assert!(message.contains("100"), "{message}");
}

/// Yields `good` bytes, then fails.
struct FailingReader {
    good: usize,
}

impl Read for FailingReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::Error::other("upload source vanished"));
        }
        let n = self.good.min(out.len());
        out[..n].fill(b'u');
        self.good -= n;
        Ok(n)
    }
}

both_clients!(body_reader_error_is_a_body_error);
fn body_reader_error_is_a_body_error(which: Which) {
    let server = FakeServer::tcp(fake::echo_stdin());
    let client = client(which, &server, config());
    for len in [Some(1000), None] {
        let body = Body::from_reader(FailingReader { good: 100 }, len);
        let error = execute_err(
            &client,
            Request::post(SCRIPT, "application/octet-stream", body),
        );
        assert!(matches!(error, Error::Body(_)), "{error:?}");
        assert!(
            error.to_string().contains("upload source vanished"),
            "{error}"
        );
    }
}

// ---------------------------------------------------------------------------
// Connecting and addresses

both_clients!(nothing_listening_on_a_tcp_port_is_a_connect_error);
fn nothing_listening_on_a_tcp_port_is_a_connect_error(which: Which) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address = format!("127.0.0.1:{port}");
    let client = which.connect(address.as_str(), config()).unwrap();
    let error = execute_err(&client, get());
    let message = error.to_string();
    match error {
        Error::Connect { address: a, source } => {
            assert_eq!(a, address);
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(message.contains(&address), "{message}");
    assert!(message.contains("nothing listens there"), "{message}");
}

both_clients!(missing_unix_socket_is_a_connect_error_with_a_path_hint);
fn missing_unix_socket_is_a_connect_error_with_a_path_hint(which: Which) {
    let dir = std::env::temp_dir().join("fcgi-faults-no-such-dir");
    let path = dir.join("php-fpm.sock");
    let client = which.connect(path.to_str().unwrap(), config()).unwrap();
    let error = execute_err(&client, get());
    let message = error.to_string();
    assert!(
        matches!(&error, Error::Connect { source, .. } if source.kind() == io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    assert!(message.contains("check the path"), "{message}");
}

both_clients!(invalid_address_strings_are_invalid_address_errors);
fn invalid_address_strings_are_invalid_address_errors(which: Which) {
    for (text, reason) in [
        ("localhost", "missing :port"),
        ("127.0.0.1:99999", "port must be"),
        ("::1:9000", "brackets"),
        ("http://example.com:9000", "unknown scheme"),
        ("", "empty"),
    ] {
        match which.connect(text, Config::default()) {
            Err(error @ Error::InvalidAddress(_)) => {
                let message = error.to_string();
                assert!(message.contains(reason), "{text:?}: {message}");
                assert!(message.contains(&format!("{text:?}")), "{message}");
            }
            Err(other) => panic!("{text:?}: expected InvalidAddress, got {other:?}"),
            Ok(_) => panic!("{text:?}: expected InvalidAddress, got a client"),
        }
    }
}

// ---------------------------------------------------------------------------
// Invalid params are refused before anything is sent

both_clients!(invalid_param_names_are_refused_before_connecting);
fn invalid_param_names_are_refused_before_connecting(which: Which) {
    let server = FakeServer::tcp(fake::respond_ok("x"));
    let client = client(which, &server, config());
    for (name, what) in [(&b"A=B"[..], "'='"), (b"NUL\0NAME", "NUL"), (b"", "empty")] {
        let error = execute_err(&client, get().param(name, "v"));
        assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
        assert!(error.to_string().contains(what), "{error}");
    }
    thread::sleep(Duration::from_millis(50));
    assert_eq!(server.connections(), 0);
}

both_clients!(a_param_too_large_for_one_record_is_refused_before_connecting);
fn a_param_too_large_for_one_record_is_refused_before_connecting(which: Which) {
    let server = FakeServer::tcp(fake::respond_ok("x"));
    let request = get().param("HTTP_COOKIE", "c".repeat(70_000));
    let error = execute_err(&client(which, &server, config()), request);
    assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
    assert!(error.to_string().contains("HTTP_COOKIE"), "{error}");
    thread::sleep(Duration::from_millis(50));
    assert_eq!(server.connections(), 0);
}

both_clients!(more_params_than_max_params_is_limit_exceeded);
fn more_params_than_max_params_is_limit_exceeded(which: Which) {
    let server = FakeServer::tcp(fake::respond_ok("x"));
    let request = Request::new()
        .param("A", "1")
        .param("B", "2")
        .param("C", "3")
        .param("D", "4");
    let error = execute_err(&client(which, &server, config().max_params(3)), request);
    assert!(
        matches!(
            error,
            Error::LimitExceeded {
                limit: Limit::Params,
                max: 3
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("max_params"), "{error}");
    thread::sleep(Duration::from_millis(50));
    assert_eq!(server.connections(), 0);
}

both_clients!(kept_connection_closed_by_the_server_is_retried_with_a_large_body);
fn kept_connection_closed_by_the_server_is_retried_with_a_large_body(which: Which) {
    // A body over the inline size is written apart (the blocking client's
    // writer thread, the async client's body task), and that write fails
    // on the closed connection: still a safe, retryable close.
    on_both_transports(
        || serve_then_close(1),
        |server| {
            let client = client(which, server, config().keep_alive(true));
            for i in 0..4 {
                let body = vec![b'p'; 200_000];
                let request = Request::post(SCRIPT, "application/octet-stream", body);
                let response =
                    execute(&client, request).unwrap_or_else(|e| panic!("request {i} failed: {e}"));
                assert_eq!(response.body, b"served");
            }
            assert_eq!(server.connections(), 4);
        },
    );
}

both_clients!(server_closing_while_the_body_is_written_is_connection_closed);
fn server_closing_while_the_body_is_written_is_connection_closed(which: Which) {
    on_both_transports(
        || {
            |conn: &mut FakeConn| {
                let _ = conn.read_begin_and_params();
            }
        },
        |server| {
            let request = Request::post(SCRIPT, "application/octet-stream", vec![0u8; 1 << 20]);
            let error = execute_err(&client(which, server, config()), request);
            let message = error.to_string();
            assert_eq!(closed_received(error), 0);
            assert!(message.contains(&server.address()), "{message}");
        },
    );
}

both_clients!(stray_records_after_a_response_never_reach_the_next_request);
fn stray_records_after_a_response_never_reach_the_next_request(which: Which) {
    // A late record for the same id, 20 ms after END_REQUEST: that kept
    // connection is polluted; whatever happens, the next request never gets
    // the stale answer.
    let sent_on_polluted = Arc::new(AtomicUsize::new(0));
    let server = FakeServer::tcp(fake::late_record_after_first(Arc::clone(&sent_on_polluted)));
    let client = client(which, &server, config().keep_alive(true));
    assert_eq!(execute(&client, get()).unwrap().body, b"first");
    thread::sleep(Duration::from_millis(100));
    let next = execute(&client, get());
    let expected_on_polluted = match which {
        // The correct behaviour: the polluted connection is seen to hold
        // bytes before it is reused and is dropped; the request goes out
        // once, on a fresh connection, which answers "first" again.
        #[cfg(feature = "tokio")]
        Which::Async => {
            let response = next.unwrap();
            assert_eq!(
                (response.status, response.body.as_slice()),
                (200, &b"first"[..])
            );
            0
        }
        // The blocking client does not look at a kept connection before
        // reuse when the body can be sent again (`Client::checkout`'s
        // `check_stale`; the look is a system call per request, which the
        // async client gets from its reactor for free). So the request goes
        // out on the polluted connection once; the stray record of request 1
        // is skipped and the answer to request 2 is returned; the connection
        // is not reused after that, and the next request gets a fresh one.
        Which::Blocking => {
            let response = next.unwrap();
            assert_eq!(
                (response.status, response.body.as_slice()),
                (200, &b"second"[..])
            );
            let response = execute(&client, get()).unwrap();
            assert_eq!(
                (response.status, response.body.as_slice()),
                (200, &b"first"[..])
            );
            1
        }
    };
    assert_eq!(server.connections(), 2);
    // Closing the client's connections lets the handlers finish.
    drop(client);
    assert!(server.wait_for_finished(2, HANG_BOUND));
    assert_eq!(
        sent_on_polluted.load(Ordering::SeqCst),
        expected_on_polluted
    );
}

both_clients!(each_request_on_a_kept_connection_carries_a_new_request_id);
fn each_request_on_a_kept_connection_carries_a_new_request_id(which: Which) {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ids);
    let server = FakeServer::tcp(fake::serve(move |conn, req| {
        seen.lock().unwrap().push(req.id);
        conn.respond(req.id, b"Status: 200 OK\r\n\r\nok");
    }));
    let client = client(which, &server, config().keep_alive(true));
    for _ in 0..4 {
        assert_eq!(execute(&client, get()).unwrap().body, b"ok");
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(*ids.lock().unwrap(), [1, 2, 3, 4]);
}

both_clients!(exactly_max_params_is_accepted);
fn exactly_max_params_is_accepted(which: Which) {
    let server = FakeServer::tcp(fake::respond_ok("x"));
    let request = Request::new()
        .param("A", "1")
        .param("B", "2")
        .param("C", "3");
    let response = execute(&client(which, &server, config().max_params(3)), request).unwrap();
    assert_eq!(response.body, b"x");
}

both_clients!(stderr_of_exactly_max_stderr_bytes_is_kept_whole);
fn stderr_of_exactly_max_stderr_bytes_is_kept_whole(which: Which) {
    let server = FakeServer::tcp(fake::serve(|conn, req| {
        conn.write_stderr(req.id, &[b'e'; 1000]);
        conn.respond(req.id, b"Status: 200 OK\r\n\r\nbody");
    }));
    let response = execute(
        &client(which, &server, config().max_stderr_bytes(1000)),
        get(),
    )
    .unwrap();
    assert_eq!((response.stderr.len(), response.stderr_dropped), (1000, 0));
}

// ---------------------------------------------------------------------------
// Kept connections (cases that were the async client's alone before)

both_clients!(overloaded_answer_is_rejected_and_the_connection_is_kept);
fn overloaded_answer_is_rejected_and_the_connection_is_kept(which: Which) {
    let server = FakeServer::tcp(fake::serve(|conn, req| {
        conn.write_end(req.id, 0, raw::OVERLOADED)
    }));
    let client = client(which, &server, config().keep_alive(true));
    let prepared = client.prepare(get()).unwrap();
    // Twice as a request, twice prepared (`execute_prepared`).
    for i in 0..4 {
        let err = match i {
            0 | 1 => execute_err(&client, get()),
            _ => timed(|| client.execute_prepared(&prepared)).0.unwrap_err(),
        };
        assert_overloaded(&err, &format!("call {i}"));
    }
    // A clean END_REQUEST, even a refusal, leaves the connection reusable.
    // (The blocking client closed it until the shared table showed the
    // drift.)
    assert_eq!(server.connections(), 1);
}

both_clients!(stale_kept_connection_is_retried_once_on_a_fresh_one);
fn stale_kept_connection_is_retried_once_on_a_fresh_one(which: Which) {
    // Serves one request per connection although asked to keep it, then
    // closes, after leaving the client time to keep the connection.
    let server = FakeServer::tcp(|conn: &mut FakeConn| {
        if let Ok(req) = conn.read_request() {
            conn.respond(req.id, b"Content-Type: text/plain\r\n\r\nfresh");
            thread::sleep(Duration::from_millis(50));
        }
    });
    let client = client(which, &server, config().keep_alive(true));
    assert_eq!(execute(&client, get()).unwrap().body, b"fresh");
    thread::sleep(Duration::from_millis(100));
    let second = execute(&client, Request::post(SCRIPT, "text/plain", "again")).unwrap();
    assert_eq!(second.body, b"fresh");
    assert_eq!(server.connections(), 2);
    // Streamed, the same: the in-memory request goes out again, once.
    thread::sleep(Duration::from_millis(100));
    let third = timed(|| client.stream(get(), Reading::Chunks)).0.unwrap();
    assert_eq!(third.body, b"fresh");
    assert!(third.end.is_ok(), "{:?}", third.end);
    assert_eq!(server.connections(), 3);
}

both_clients!(padded_end_request_leaves_the_connection_reusable);
fn padded_end_request_leaves_the_connection_reusable(which: Which) {
    let server = FakeServer::tcp(fake::serve(|conn, req| {
        let mut bytes = raw::record(raw::STDOUT, req.id, b"Status: 200 OK\r\n\r\nok");
        let end = raw::end_request_body(0, raw::REQUEST_COMPLETE, [0; 3]);
        bytes.extend_from_slice(&raw::record_with(
            raw::VERSION,
            raw::END_REQUEST,
            req.id,
            &end,
            8,
        ));
        conn.write_raw(&bytes);
    }));
    let client = client(which, &server, config().keep_alive(true));
    for _ in 0..3 {
        assert_eq!(execute(&client, get()).unwrap().body, b"ok");
    }
    assert_eq!(server.connections(), 1);
}

both_clients!(answer_given_before_the_params_were_read_is_returned);
fn answer_given_before_the_params_were_read_is_returned(which: Which) {
    // The server reads BEGIN_REQUEST only, answers and closes, while the
    // client still has megabytes of params to write.
    let server = FakeServer::unix(|conn: &mut FakeConn| {
        if let Ok(Some(begin)) = conn.read_record() {
            conn.respond(begin.request_id, b"Status: 403 Forbidden\r\n\r\nno");
            conn.close();
        }
    });
    let client = client(which, &server, config().keep_alive(true));
    let mut request = get();
    for i in 0..40 {
        request = request.param(format!("HTTP_X_FILLER_{i}"), "v".repeat(60_000));
    }
    // The answer is there to read, so it is returned although the request
    // could not be written whole. (The blocking client returned
    // ConnectionClosed until the shared table showed the drift.)
    let response = execute(&client, request).unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (403, &b"no"[..])
    );
    // That connection is not kept: the next request opens another.
    assert_eq!(execute(&client, get()).unwrap().status, 403);
    assert_eq!(server.connections(), 2);
}

both_clients!(a_connection_is_kept_after_large_and_streamed_bodies);
fn a_connection_is_kept_after_large_and_streamed_bodies(which: Which) {
    // Bodies larger than what goes out with the params are written apart
    // (the blocking client's writer thread, the async client's body task);
    // the connection still serves the next request.
    let server = FakeServer::unix(fake::respond_stdin_len());
    let client = client(which, &server, config().keep_alive(true));
    let bodies = [
        Body::from(vec![b'x'; 300_000]),
        Body::from(vec![b'y'; 10]),
        Body::from_reader(Cursor::new(vec![b'z'; 250_000]), Some(250_000)),
        Body::from(vec![b'x'; 300_000]),
    ];
    for body in bodies {
        let expected = body.len().unwrap().to_string();
        let request = Request::post(SCRIPT, "application/octet-stream", body);
        assert_eq!(execute(&client, request).unwrap().body, expected.as_bytes());
    }
    // One connection served all four. The server may read the last
    // record and answer before the blocking client's writer thread returns
    // from writing it: a writer already at its last record is waited for.
    assert_eq!(server.connections(), 1);
}

// ---------------------------------------------------------------------------
// Per-request time limits (`execute_with` and `Timeouts`; these cases were
// the async client's alone until the blocking client had `execute_with`)

both_clients!(silent_server_hits_the_idle_timeout_then_a_per_request_deadline);
fn silent_server_hits_the_idle_timeout_then_a_per_request_deadline(which: Which) {
    let server = FakeServer::tcp(fake::silent());
    let config = Config::default()
        .idle_timeout(Duration::from_millis(300))
        .keep_alive(true);
    let client = client(which, &server, config);
    let (result, elapsed) = timed(|| client.execute(get()));
    let err = result.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Idle), "{err:?}");
    assert!(elapsed >= Duration::from_millis(280));
    assert!(elapsed < Duration::from_secs(2));

    let timeouts = Timeouts::default().deadline(Duration::from_millis(200));
    let (result, elapsed) = timed(|| client.execute_with(get(), timeouts));
    let err = result.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Deadline), "{err:?}");
    assert!(elapsed < Duration::from_secs(1));
}

both_clients!(a_kept_connection_applies_each_requests_own_time_limits);
fn a_kept_connection_applies_each_requests_own_time_limits(which: Which) {
    // Answers after WAIT_MS milliseconds, or not at all when it is "never".
    let server = FakeServer::tcp(fake::serve(|conn, req| {
        let wait = req.param_str("WAIT_MS");
        if wait.as_deref() == Some("never") {
            return;
        }
        if let Some(ms) = wait {
            thread::sleep(Duration::from_millis(ms.parse().unwrap()));
        }
        conn.respond(req.id, b"Status: 200 OK\r\n\r\nok");
    }));
    let client = client(which, &server, Config::default().keep_alive(true));
    let short = Timeouts::default().deadline(Duration::from_millis(300));
    // Answered at once under a short deadline: the connection's alarm (the
    // async client's) or its socket timeouts (the blocking client's) are
    // left set for that deadline.
    let response = timed(|| client.execute_with(get(), short)).0.unwrap();
    assert_eq!(response.body, b"ok");
    // A slower answer under the default limits: the limit set for the first
    // request's deadline passes, and the wait goes on, asleep (a wait that
    // kept waking for the passed limit would use the CPU for most of the
    // 600 ms; the async client's future is polled on this thread too).
    let cpu = usage::thread_cpu_time();
    let response = execute(&client, get().param("WAIT_MS", "600")).unwrap();
    assert_eq!(response.body, b"ok");
    let busy = usage::thread_cpu_time() - cpu;
    assert!(
        busy < Duration::from_millis(200),
        "waiting used {busy:?} of CPU"
    );
    // No answer under a short deadline, after the limits were last set for
    // the default ones: the short deadline still ends the wait.
    let (result, elapsed) = timed(|| client.execute_with(get().param("WAIT_MS", "never"), short));
    let err = result.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Deadline), "{err:?}");
    assert!(elapsed < Duration::from_secs(2));
    assert_eq!(server.connections(), 1);
}

// ---------------------------------------------------------------------------
// Prepared requests (`prepare` and `execute_prepared`) on kept connections

both_clients!(a_prepared_request_on_a_stale_kept_connection_is_retried_on_a_fresh_one);
fn a_prepared_request_on_a_stale_kept_connection_is_retried_on_a_fresh_one(which: Which) {
    // Two requests per connection, then a close: every third send finds its
    // kept connection closed, and the prepared request (in memory, so safe
    // to send again) goes out on a fresh one.
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ids);
    let server = FakeServer::tcp(move |conn: &mut FakeConn| {
        for _ in 0..2 {
            let Ok(req) = conn.read_request() else {
                return;
            };
            seen.lock().unwrap().push((req.id, req.stdin.clone()));
            conn.respond(req.id, b"Status: 200 OK\r\n\r\nprepared");
        }
    });
    let client = client(which, &server, config().keep_alive(true));
    let prepared = client
        .prepare(Request::post(SCRIPT, "text/plain", "same body"))
        .unwrap();
    for i in 0..6 {
        let response = timed(|| client.execute_prepared(&prepared))
            .0
            .unwrap_or_else(|e| panic!("send {i} failed: {e}"));
        assert_eq!(response.body, b"prepared");
    }
    assert_eq!(server.connections(), 3);
    // Each send carried the body, and a kept connection's second request a
    // new request id.
    let ids = ids.lock().unwrap();
    assert_eq!(ids.len(), 6);
    assert!(ids.iter().all(|(_, stdin)| stdin == b"same body"));
    let ids: Vec<u16> = ids.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [1, 2, 1, 2, 1, 2]);
}

// ---------------------------------------------------------------------------
// Streamed responses: a dropped stream, a late refusal, the trailer

both_clients!(a_stream_dropped_before_its_end_leaves_nothing_for_the_next_request);
fn a_stream_dropped_before_its_end_leaves_nothing_for_the_next_request(which: Which) {
    // Each response is a head and three body records with pauses between;
    // the first request's stream is dropped after the head. Its connection
    // still has body records coming, so it must not be kept: the next
    // request goes out on a fresh one and gets its own whole answer.
    let server = FakeServer::tcp(fake::serve(|conn, req| {
        let tag = req.param_str("TAG").unwrap_or_default();
        conn.write_stdout(req.id, OK_HEAD);
        for part in 0..3 {
            thread::sleep(Duration::from_millis(20));
            conn.write_stdout(req.id, format!("{tag}{part};").as_bytes());
        }
        conn.write_end(req.id, 0, raw::REQUEST_COMPLETE);
    }));
    let client = client(which, &server, config().keep_alive(true));
    let (status, _) = timed(|| client.stream_then_drop(get().param("TAG", "dropped")));
    assert_eq!(status.unwrap(), 200);
    let response = execute(&client, get().param("TAG", "next")).unwrap();
    assert_eq!(response.body, b"next0;next1;next2;");
    assert_eq!(server.connections(), 2);
    // Read to its end, a streamed response leaves its connection for the
    // next request.
    let streamed = timed(|| client.stream(get().param("TAG", "read"), Reading::Chunks))
        .0
        .unwrap();
    assert_eq!(streamed.body, b"read0;read1;read2;");
    assert_eq!(streamed.end.unwrap().app_status, 0);
    assert_eq!(execute(&client, get()).unwrap().body, b"0;1;2;");
    assert_eq!(server.connections(), 2);
}

both_clients!(a_refusal_after_part_of_a_streamed_body_is_rejected);
fn a_refusal_after_part_of_a_streamed_body_is_rejected(which: Which) {
    // The head and part of the body, then END_REQUEST with FCGI_OVERLOADED
    // (and application status 3).
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_stdout(req.id, b"Status: 200 OK\r\n\r\npartial");
        conn.write_end(req.id, 3, raw::OVERLOADED);
    }));
    let client = client(which, &server, config());
    assert_overloaded(&execute_err(&client, get()), "execute");
    for (reading, streamed, _) in stream_both_ways(&client, get) {
        if reading == Reading::Chunks {
            assert_eq!(streamed.body, b"partial");
        }
        assert_overloaded(&streamed.end_error(), &format!("{reading:?}"));
    }
}

both_clients!(the_application_status_arrives_with_the_response_and_the_trailer);
fn the_application_status_arrives_with_the_response_and_the_trailer(which: Which) {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_stdout(req.id, b"Status: 200 OK\r\n\r\nx");
        conn.write_end(req.id, 7, raw::REQUEST_COMPLETE);
    }));
    let client = client(which, &server, config());
    assert_eq!(execute(&client, get()).unwrap().app_status, 7);
    for (reading, streamed, _) in stream_both_ways(&client, get) {
        let trailer = streamed
            .end
            .unwrap_or_else(|e| panic!("{reading:?}: {e:?}"));
        assert_eq!(trailer.app_status, 7, "{reading:?}");
    }
}
