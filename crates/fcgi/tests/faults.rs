//! Fault cases of the blocking client, against a fake server that misbehaves
//! on purpose: silence, trickles, early closes, protocol violations, limits,
//! keep-alive and retries, and what the client itself puts on the wire.
//!
//! Every call is timed: a fault must end in a typed error (or a correct
//! response) well within [`HANG_BOUND`], never in a hang.

use std::io::{self, Cursor, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fcgi::{Body, Client, Config, Error, Limit, ProtocolStatus, Request, Response, TimeoutPhase};
use fcgi_testkit::fake::{self, Handler, GARBAGE};
use fcgi_testkit::{raw, FakeConn, FakeServer, ReceivedRequest};

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

fn client(server: &FakeServer, config: Config) -> Client {
    Client::with_config(server.address(), config).expect("the fake server's address parses")
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

fn execute(client: &Client, request: Request) -> Result<Response, Error> {
    timed(|| client.execute(request)).0
}

fn execute_err(client: &Client, request: Request) -> Error {
    match execute(client, request) {
        Ok(r) => panic!(
            "expected an error, got {} with body {:?}",
            r.status,
            r.body_text()
        ),
        Err(e) => e,
    }
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

fn closed_received(error: Error) -> u64 {
    match error {
        Error::ConnectionClosed { received, .. } => received,
        other => panic!("expected Error::ConnectionClosed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Silence and slowness

#[test]
fn silent_server_hits_the_idle_timeout() {
    on_both_transports(fake::silent, |server| {
        let client = client(
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

#[test]
fn silent_server_hits_the_deadline_when_it_is_shorter_than_idle() {
    let server = FakeServer::tcp(fake::silent());
    let client = client(
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

#[test]
fn trickled_response_within_the_idle_timeout_completes() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        trickle(
            conn,
            &response_bytes(req.id, b"\r\nok"),
            Duration::from_millis(50),
        )
    }));
    let client = client(
        &server,
        config()
            .idle_timeout(Duration::from_millis(300))
            .deadline(Duration::from_secs(4)),
    );
    let response = execute(&client, get()).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok");
}

#[test]
fn endless_trickle_still_hits_the_deadline() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_stdout(req.id, OK_HEAD);
        // One body byte every 50 ms, for far longer than the deadline.
        let endless: Vec<u8> = (0..200)
            .flat_map(|_| raw::record(raw::STDOUT, req.id, b"x"))
            .collect();
        trickle(conn, &endless, Duration::from_millis(50));
    }));
    let client = client(
        &server,
        config()
            .idle_timeout(Duration::from_millis(300))
            .deadline(Duration::from_millis(600)),
    );
    let (result, elapsed) = timed(|| client.execute(get()));
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Timeout {
                phase: TimeoutPhase::Deadline,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
}

// ---------------------------------------------------------------------------
// Early closes

#[test]
fn close_with_nothing_sent_is_connection_closed_with_zero_received() {
    on_both_transports(fake::close_immediately, |server| {
        let error = execute_err(&client(server, config()), get());
        let message = error.to_string();
        assert_eq!(closed_received(error), 0);
        assert!(message.contains("is this a FastCGI server"), "{message}");
    });
}

#[test]
fn close_inside_a_record_header_is_connection_closed() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_raw(&raw::record(raw::STDOUT, req.id, b"Status: 200 OK\r\n")[..5]);
    }));
    let error = execute_err(&client(&server, config()), get());
    assert_eq!(closed_received(error), 5);
}

#[test]
fn close_inside_a_record_that_claims_more_content_is_connection_closed() {
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
            let error = execute_err(&client(server, config()), get());
            let message = error.to_string();
            assert_eq!(closed_received(error), 8 + 20);
            assert!(
                message.contains("28 bytes of response received"),
                "{message}"
            );
        },
    );
}

#[test]
fn close_after_all_stdout_but_before_end_request_is_connection_closed() {
    let stdout = b"Status: 200 OK\r\n\r\nthe whole body";
    let server = FakeServer::tcp(after_request(move |conn, req| {
        conn.write_raw(&raw::record(raw::STDOUT, req.id, stdout));
    }));
    let error = execute_err(&client(&server, config()), get());
    assert_eq!(closed_received(error), (8 + stdout.len()) as u64);
}

// ---------------------------------------------------------------------------
// Protocol violations

#[test]
fn wrong_version_is_a_protocol_error_naming_it() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_record(2, raw::STDOUT, req.id, OK_HEAD, 0);
    }));
    let detail = protocol_detail(execute_err(&client(&server, config()), get()));
    assert!(detail.contains("version 2"), "{detail}");
}

#[test]
fn record_for_another_request_id_is_a_protocol_error_naming_it() {
    let server = FakeServer::tcp(after_request(|conn, _| {
        conn.write_record(raw::VERSION, raw::STDOUT, 7, OK_HEAD, 0);
    }));
    let detail = protocol_detail(execute_err(&client(&server, config()), get()));
    assert!(detail.contains("request id 7"), "{detail}");
    assert!(detail.contains("expected 1"), "{detail}");
}

#[test]
fn end_request_with_a_wrong_content_length_is_a_protocol_error() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_stdout(req.id, OK_HEAD);
        conn.write_record(raw::VERSION, raw::END_REQUEST, req.id, &[0; 5], 0);
    }));
    let detail = protocol_detail(execute_err(&client(&server, config()), get()));
    assert!(detail.contains("FCGI_END_REQUEST"), "{detail}");
    assert!(detail.contains("5 content bytes, expected 8"), "{detail}");
}

#[test]
fn unknown_record_type_is_a_protocol_error_naming_it() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_record(raw::VERSION, 42, req.id, b"????????", 0);
    }));
    let detail = protocol_detail(execute_err(&client(&server, config()), get()));
    assert!(detail.contains("unknown record type 42"), "{detail}");
}

#[test]
fn request_side_record_types_from_the_server_are_protocol_errors_naming_them() {
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
        let detail = protocol_detail(execute_err(&client(&server, config()), get()));
        assert!(detail.contains(name), "type {record_type}: {detail}");
    }
}

#[test]
fn end_request_before_the_head_is_complete_is_a_protocol_error() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_raw(&response_bytes(req.id, b"Status: 200 OK\r\nX-Cut"));
    }));
    let detail = protocol_detail(execute_err(&client(&server, config()), get()));
    assert!(detail.contains("inside the CGI header block"), "{detail}");
}

// ---------------------------------------------------------------------------
// Limits

#[test]
fn endless_response_head_stops_at_max_head_bytes_without_reading_on() {
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
    let error = execute_err(&client(&server, config().max_head_bytes(1024)), get());
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
        server.wait_for_finished(1, HANG_BOUND),
        "fake still writing"
    );
    assert!(
        !sent_everything.load(Ordering::SeqCst),
        "the client read the whole endless head instead of stopping"
    );
}

#[test]
fn stderr_over_the_limit_is_counted_and_dropped() {
    let flood = fcgi_testkit::pattern(100_000);
    let expected = flood.clone();
    let server = FakeServer::tcp(after_request(move |conn, req| {
        conn.write_stderr(req.id, &flood);
        conn.write_raw(&response_bytes(req.id, b"\r\nfine"));
    }));
    let response = execute(&client(&server, config().max_stderr_bytes(1000)), get()).unwrap();
    assert_eq!(response.body, b"fine");
    assert_eq!(response.stderr.len(), 1000);
    assert_eq!(response.stderr, expected[..1000]);
    assert_eq!(response.stderr_dropped, 99_000);
}

#[test]
fn body_over_max_body_bytes_is_limit_exceeded() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        let mut stdout = OK_HEAD.to_vec();
        stdout.extend(vec![b'b'; 10_000]);
        conn.write_raw(&response_bytes(req.id, &stdout));
    }));
    let error = execute_err(&client(&server, config().max_body_bytes(1000)), get());
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
}

#[test]
fn body_of_exactly_max_body_bytes_is_accepted() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        let mut stdout = OK_HEAD.to_vec();
        stdout.extend(vec![b'b'; 1000]);
        conn.write_raw(&response_bytes(req.id, &stdout));
    }));
    let response = execute(&client(&server, config().max_body_bytes(1000)), get()).unwrap();
    assert_eq!(response.body.len(), 1000);
}

// ---------------------------------------------------------------------------
// Rejections

#[test]
fn every_non_complete_protocol_status_is_rejected_with_its_raw_value() {
    for (raw_status, name) in [
        (raw::CANT_MPX_CONN, "FCGI_CANT_MPX_CONN"),
        (raw::OVERLOADED, "FCGI_OVERLOADED"),
        (raw::UNKNOWN_ROLE, "FCGI_UNKNOWN_ROLE"),
        (9, "undefined"),
    ] {
        let server = FakeServer::tcp(after_request(move |conn, req| {
            conn.write_end(req.id, 0, raw_status);
        }));
        let error = execute_err(&client(&server, config()), get());
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

#[test]
fn one_byte_records_with_padding_give_the_exact_response() {
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
    let response = execute(&client(&server, config()), get()).unwrap();
    assert_eq!(
        (response.status, response.reason.as_str()),
        (201, "Created")
    );
    let cookies: Vec<_> = response.headers.get_all("set-cookie").collect();
    assert_eq!(cookies, [&b"a=1"[..], b"b=2"]);
    assert_eq!(response.body, b"body in pieces");
}

#[test]
fn stderr_interleaved_with_stdout_keeps_both_streams_exact() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_stderr(req.id, b"warn 0;");
        conn.write_stdout(req.id, OK_HEAD);
        for i in 1..=5 {
            conn.write_stdout(req.id, format!("out {i};").as_bytes());
            conn.write_stderr(req.id, format!("warn {i};").as_bytes());
        }
        conn.write_end(req.id, 0, raw::REQUEST_COMPLETE);
    }));
    let response = execute(&client(&server, config()), get()).unwrap();
    assert_eq!(response.body_text(), "out 1;out 2;out 3;out 4;out 5;");
    assert_eq!(
        response.stderr_text(),
        "warn 0;warn 1;warn 2;warn 3;warn 4;warn 5;"
    );
    assert_eq!(response.stderr_dropped, 0);
}

#[test]
fn lf_only_head_is_parsed() {
    let server = FakeServer::tcp(answer(
        b"Status: 404 Not Found\nContent-Type: text/html\n\nmissing",
    ));
    let response = execute(&client(&server, config()), get()).unwrap();
    assert_eq!(
        (response.status, response.reason.as_str()),
        (404, "Not Found")
    );
    assert_eq!(response.headers.get("content-type"), Some("text/html"));
    assert_eq!(response.body, b"missing");
}

#[test]
fn empty_head_block_means_200_with_no_headers() {
    let server = FakeServer::tcp(answer(b"\r\njust a body"));
    let response = execute(&client(&server, config()), get()).unwrap();
    assert_eq!((response.status, response.reason.as_str()), (200, "OK"));
    assert!(response.headers.is_empty());
    assert_eq!(response.body, b"just a body");
}

#[test]
fn status_without_reason_gets_the_standard_reason() {
    let server = FakeServer::tcp(answer(b"Status: 404\r\n\r\n"));
    let response = execute(&client(&server, config()), get()).unwrap();
    assert_eq!(
        (response.status, response.reason.as_str()),
        (404, "Not Found")
    );
    assert!(response.body.is_empty());
}

#[test]
fn bare_location_means_302() {
    let server = FakeServer::tcp(answer(b"Location: /elsewhere\r\n\r\n"));
    let response = execute(&client(&server, config()), get()).unwrap();
    assert_eq!((response.status, response.reason.as_str()), (302, "Found"));
    assert_eq!(response.headers.get("location"), Some("/elsewhere"));
}

#[test]
fn management_records_before_the_response_are_ignored() {
    let server = FakeServer::tcp(after_request(|conn, req| {
        conn.write_values_result(&[("FCGI_MPXS_CONNS", "0")]);
        conn.write_unknown_type(42);
        conn.write_raw(&response_bytes(req.id, b"Status: 200 OK\r\n\r\nreal"));
    }));
    let response = execute(&client(&server, config()), get()).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"real");
}

#[test]
fn end_request_before_the_body_was_read_returns_the_response() {
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
    let client = client(&server, config().keep_alive(true));
    for _ in 0..2 {
        let request = Request::post(SCRIPT, "application/octet-stream", vec![7u8; 16 << 20]);
        let response = execute(&client, request).unwrap();
        assert_eq!(response.body, b"ignored your body");
    }
    // A connection with a half-sent body is never reused.
    assert_eq!(server.connections(), 2);
}

// ---------------------------------------------------------------------------
// Management requests

#[test]
fn get_values_returns_the_pairs_the_server_answered() {
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
    let client = client(&server, config());
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

#[test]
fn get_values_answered_with_unknown_type_is_an_error() {
    let server = FakeServer::tcp(|conn: &mut FakeConn| {
        if let Ok(Some(_)) = conn.read_record() {
            conn.write_unknown_type(raw::GET_VALUES);
        }
    });
    let client = client(&server, config());
    let (result, _) = timed(|| client.get_values(&["FCGI_MPXS_CONNS"]));
    let detail = protocol_detail(result.unwrap_err());
    assert!(
        detail.contains("does not understand management record type 9"),
        "{detail}"
    );
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

#[test]
fn params_are_split_into_records_only_between_pairs() {
    let (handler, requests) = recording();
    let server = FakeServer::tcp(handler);
    let request = big_params_request();
    let sent: Vec<(Vec<u8>, Vec<u8>)> = request
        .params()
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    execute(&client(&server, config()), request).unwrap();
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

#[test]
fn no_record_exceeds_65535_bytes_and_stdin_chunks_stay_within_65528() {
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
    execute(&client(&server, config()), request).unwrap();
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

#[test]
fn stdin_arrives_whole_in_chunks_of_at_most_65528_from_bytes_and_from_a_reader() {
    let (handler, requests) = recording();
    let server = FakeServer::tcp(handler);
    let client = client(&server, config());
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

#[test]
fn empty_params_and_stdin_terminators_are_always_sent() {
    // The fake's read_request waits for both empty records: without them it
    // would never answer and the client would time out.
    let (handler, requests) = recording();
    let server = FakeServer::tcp(handler);
    let client = client(&server, config());
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

#[test]
fn content_length_is_derived_from_the_body() {
    let (handler, requests) = recording();
    let server = FakeServer::tcp(handler);
    let client = client(&server, config());
    execute(&client, Request::post(SCRIPT, "text/plain", "hello")).unwrap();
    let reader = Body::from_reader(Cursor::new(b"twelve bytes".to_vec()), Some(12));
    execute(&client, Request::post(SCRIPT, "text/plain", reader)).unwrap();
    let requests = requests.lock().unwrap();
    assert_eq!(requests[0].param_str("CONTENT_LENGTH"), Some("5".into()));
    assert_eq!(requests[1].param_str("CONTENT_LENGTH"), Some("12".into()));
    assert_eq!(requests[1].stdin, b"twelve bytes");
}

#[test]
fn content_length_contradicting_the_body_is_refused_before_sending() {
    let server = FakeServer::tcp(fake::respond_ok("x"));
    let request = Request::post(SCRIPT, "text/plain", "hello").param("CONTENT_LENGTH", "9");
    let error = execute_err(&client(&server, config()), request);
    assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
    assert!(error.to_string().contains("CONTENT_LENGTH is 9"), "{error}");
    thread::sleep(Duration::from_millis(50));
    assert_eq!(server.connections(), 0);
}

#[test]
fn keep_conn_flag_is_set_only_with_keep_alive() {
    for keep_alive in [false, true] {
        let (handler, requests) = recording();
        let server = FakeServer::tcp(handler);
        execute(&client(&server, config().keep_alive(keep_alive)), get()).unwrap();
        let received = &requests.lock().unwrap()[0];
        assert_eq!(received.keep_conn, keep_alive);
        assert_eq!(received.flags, u8::from(keep_alive));
        assert_eq!((received.id, received.role), (1, raw::RESPONDER));
    }
}

// ---------------------------------------------------------------------------
// Keep-alive and retries

#[test]
fn keep_alive_reuses_one_connection() {
    on_both_transports(
        || fake::respond_ok("kept"),
        |server| {
            let client = client(server, config().keep_alive(true));
            for _ in 0..10 {
                assert_eq!(execute(&client, get()).unwrap().body, b"kept");
            }
            assert_eq!(server.connections(), 1);
        },
    );
}

#[test]
fn without_keep_alive_each_request_opens_its_own_connection() {
    let server = FakeServer::tcp(fake::respond_ok("single"));
    let client = client(&server, config());
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

#[test]
fn kept_connection_closed_by_the_server_is_retried_on_a_fresh_one() {
    on_both_transports(
        || serve_then_close(3),
        |server| {
            let client = client(server, config().keep_alive(true));
            for i in 0..20 {
                let response =
                    execute(&client, get()).unwrap_or_else(|e| panic!("request {i} failed: {e}"));
                assert_eq!(response.body, b"served");
            }
            assert_eq!(server.connections(), 7);
        },
    );
}

#[test]
fn streaming_body_is_not_sent_on_a_kept_connection_the_server_closed() {
    // A reader cannot be replayed, so the client must notice the close before
    // sending rather than retry after.
    let server = FakeServer::tcp(fake::serve(|conn, req| {
        let mut stdout = OK_HEAD.to_vec();
        stdout.extend_from_slice(&req.stdin);
        conn.respond(req.id, &stdout);
        conn.close();
    }));
    let client = client(&server, config().keep_alive(true));
    execute(&client, get()).unwrap();
    assert!(server.wait_for_finished(1, HANG_BOUND));
    thread::sleep(Duration::from_millis(50));
    let body = Body::from_reader(Cursor::new(b"streamed".to_vec()), Some(8));
    let response = execute(&client, Request::post(SCRIPT, "text/plain", body)).unwrap();
    assert_eq!(response.body, b"streamed");
    assert_eq!(server.connections(), 2);
}

#[test]
fn partial_response_on_a_kept_connection_is_never_retried() {
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
            let client = client(server, config().keep_alive(true));
            assert_eq!(execute(&client, get()).unwrap().body, b"first");
            let error = execute_err(&client, get());
            assert!(closed_received(error) > 0);
            thread::sleep(Duration::from_millis(100));
            assert_eq!(server.connections(), 1, "the request was sent twice");
        },
    );
}

#[test]
fn stderr_then_close_on_a_kept_connection_is_never_retried() {
    let server = FakeServer::tcp(|conn: &mut FakeConn| {
        if let Ok(req) = conn.read_request() {
            conn.respond(req.id, b"Status: 200 OK\r\n\r\nfirst");
        }
        if let Ok(req) = conn.read_request() {
            conn.write_stderr(req.id, b"PHP Fatal error: out of memory");
        }
    });
    let client = client(&server, config().keep_alive(true));
    execute(&client, get()).unwrap();
    let error = execute_err(&client, get());
    assert!(closed_received(error) > 0);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(server.connections(), 1, "the request was sent twice");
}

// ---------------------------------------------------------------------------
// Request bodies that fail

#[test]
fn body_shorter_than_its_declared_length_is_an_error_naming_it() {
    let server = FakeServer::tcp(fake::echo_stdin());
    let body = Body::from_reader(Cursor::new(vec![1u8; 10]), Some(100));
    let error = execute_err(
        &client(&server, config()),
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

#[test]
fn body_reader_error_is_a_body_error() {
    let server = FakeServer::tcp(fake::echo_stdin());
    let client = client(&server, config());
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

#[test]
fn nothing_listening_on_a_tcp_port_is_a_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address = format!("127.0.0.1:{port}");
    let client = Client::with_config(address.as_str(), config()).unwrap();
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

#[test]
fn missing_unix_socket_is_a_connect_error_with_a_path_hint() {
    let dir = std::env::temp_dir().join("fcgi-faults-no-such-dir");
    let path = dir.join("php-fpm.sock");
    let client = Client::with_config(path.to_str().unwrap(), config()).unwrap();
    let error = execute_err(&client, get());
    let message = error.to_string();
    assert!(
        matches!(&error, Error::Connect { source, .. } if source.kind() == io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    assert!(message.contains("check the path"), "{message}");
}

#[test]
fn invalid_address_strings_are_invalid_address_errors() {
    for (text, reason) in [
        ("localhost", "missing :port"),
        ("127.0.0.1:99999", "port must be"),
        ("::1:9000", "brackets"),
        ("http://example.com:9000", "unknown scheme"),
        ("", "empty"),
    ] {
        match Client::new(text) {
            Err(error @ Error::InvalidAddress(_)) => {
                let message = error.to_string();
                assert!(message.contains(reason), "{text:?}: {message}");
                assert!(message.contains(&format!("{text:?}")), "{message}");
            }
            other => panic!("{text:?}: expected InvalidAddress, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Invalid params are refused before anything is sent

#[test]
fn invalid_param_names_are_refused_before_connecting() {
    let server = FakeServer::tcp(fake::respond_ok("x"));
    let client = client(&server, config());
    for (name, what) in [(&b"A=B"[..], "'='"), (b"NUL\0NAME", "NUL"), (b"", "empty")] {
        let error = execute_err(&client, get().param(name, "v"));
        assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
        assert!(error.to_string().contains(what), "{error}");
    }
    thread::sleep(Duration::from_millis(50));
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_param_too_large_for_one_record_is_refused_before_connecting() {
    let server = FakeServer::tcp(fake::respond_ok("x"));
    let request = get().param("HTTP_COOKIE", "c".repeat(70_000));
    let error = execute_err(&client(&server, config()), request);
    assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
    assert!(error.to_string().contains("HTTP_COOKIE"), "{error}");
    thread::sleep(Duration::from_millis(50));
    assert_eq!(server.connections(), 0);
}

#[test]
fn more_params_than_max_params_is_limit_exceeded() {
    let server = FakeServer::tcp(fake::respond_ok("x"));
    let request = Request::new()
        .param("A", "1")
        .param("B", "2")
        .param("C", "3")
        .param("D", "4");
    let error = execute_err(&client(&server, config().max_params(3)), request);
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

#[test]
fn kept_connection_closed_by_the_server_is_retried_with_a_large_body() {
    // A body over the inline size goes through the writer thread, whose
    // write fails on the closed connection: still a safe, retryable close.
    on_both_transports(
        || serve_then_close(1),
        |server| {
            let client = client(server, config().keep_alive(true));
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

#[test]
fn server_closing_while_the_body_is_written_is_connection_closed() {
    on_both_transports(
        || {
            |conn: &mut FakeConn| {
                let _ = conn.read_begin_and_params();
            }
        },
        |server| {
            let request = Request::post(SCRIPT, "application/octet-stream", vec![0u8; 1 << 20]);
            let error = execute_err(&client(server, config()), request);
            let message = error.to_string();
            assert_eq!(closed_received(error), 0);
            assert!(message.contains(&server.address()), "{message}");
        },
    );
}

#[test]
fn stray_bytes_after_a_response_never_reach_the_next_request() {
    // A late record for the same id, after END_REQUEST.
    let server = FakeServer::tcp(fake::late_record_after_first(Arc::default()));
    let client = client(&server, config().keep_alive(true));
    assert_eq!(execute(&client, get()).unwrap().body, b"first");
    thread::sleep(Duration::from_millis(100));
    // The next request went out on the polluted connection (the server took
    // it), so it fails with a protocol error naming the stray record rather
    // than being sent a second time, and never returns the stale answer.
    let err = execute(&client, get()).unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("request id 1"), "{err}");
    // The polluted connection is dropped; a fresh one answers "first" again.
    let response = execute(&client, get()).unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"first"[..])
    );
    assert_eq!(server.connections(), 2);
}

#[test]
fn each_request_on_a_kept_connection_carries_a_new_request_id() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ids);
    let server = FakeServer::tcp(fake::serve(move |conn, req| {
        seen.lock().unwrap().push(req.id);
        conn.respond(req.id, b"Status: 200 OK\r\n\r\nok");
    }));
    let client = client(&server, config().keep_alive(true));
    for _ in 0..4 {
        assert_eq!(execute(&client, get()).unwrap().body, b"ok");
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(*ids.lock().unwrap(), [1, 2, 3, 4]);
}

#[test]
fn exactly_max_params_is_accepted() {
    let server = FakeServer::tcp(fake::respond_ok("x"));
    let request = Request::new()
        .param("A", "1")
        .param("B", "2")
        .param("C", "3");
    let response = execute(&client(&server, config().max_params(3)), request).unwrap();
    assert_eq!(response.body, b"x");
}

#[test]
fn stderr_of_exactly_max_stderr_bytes_is_kept_whole() {
    let server = FakeServer::tcp(fake::serve(|conn, req| {
        conn.write_stderr(req.id, &[b'e'; 1000]);
        conn.respond(req.id, b"Status: 200 OK\r\n\r\nbody");
    }));
    let response = execute(&client(&server, config().max_stderr_bytes(1000)), get()).unwrap();
    assert_eq!((response.stderr.len(), response.stderr_dropped), (1000, 0));
}
