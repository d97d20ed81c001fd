//! Self-tests of the fake FastCGI server.

use std::io::Read;
use std::time::{Duration, Instant};

use fcgi_testkit::fake::{self, FakeServer};
use fcgi_testkit::raw::{self, RawClient};

#[test]
fn answers_over_tcp_and_unix() {
    for server in [
        FakeServer::tcp(|conn| {
            let req = conn.read_request().expect("request");
            assert_eq!(req.param_str("SCRIPT_FILENAME").as_deref(), Some("/x.php"));
            conn.write_stdout(req.id, b"Status: 200 OK\r\n\r\nhi");
            conn.write_end(req.id, 0, 0);
        }),
        FakeServer::unix(fake::respond_ok("hi")),
    ] {
        let r =
            raw::request(&server.address(), [("SCRIPT_FILENAME", "/x.php")], b"").expect("request");
        assert_eq!(r.body_str(), "hi");
        assert_eq!(server.connections(), 1);
        assert!(server.wait_for_finished(1, Duration::from_secs(5)));
        assert!(
            server.handler_panics().is_empty(),
            "{:?}",
            server.handler_panics()
        );
    }
}

#[test]
fn receives_request_details() {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = FakeServer::tcp(move |conn| {
        let req = conn.read_request().expect("request");
        conn.respond(req.id, b"\r\n");
        let _ = tx.lock().expect("sender").send(req);
    });
    let big = "v".repeat(70_000);
    let mut bytes = raw::begin_request(9, raw::RESPONDER, true);
    bytes.extend(raw::params_records(9, [("A", "1"), ("B", big.as_str())]));
    bytes.extend(raw::stream_records(raw::STDIN, 9, &[7u8; 100_000], 65535));
    let mut c = RawClient::connect(&server.address()).expect("connect");
    c.send_and_read(9, bytes).expect("response");
    let req = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("request seen");
    assert_eq!(req.id, 9);
    assert!(req.keep_conn);
    assert_eq!(req.role, raw::RESPONDER);
    assert_eq!(req.param("A"), Some(&b"1"[..]));
    assert_eq!(req.param("B").map(<[u8]>::len), Some(70_000));
    assert!(req.pair_split_across_records);
    assert_eq!(req.params_records, 3);
    assert_eq!(req.stdin.len(), 100_000);
    assert_eq!(req.stdin_record_sizes, [65535, 34465]);
}

#[test]
fn keep_alive_loop_and_raw_records() {
    let server = FakeServer::tcp(fake::echo_stdin());
    let mut c = RawClient::connect(&server.address()).expect("connect");
    for id in 1..=3u16 {
        let r = c
            .request(id, true, [("A", "B")], &[id as u8; 10])
            .expect("echo");
        assert_eq!(r.body(), &[id as u8; 10]);
    }
    assert_eq!(server.connections(), 1);

    let server = FakeServer::tcp(|conn| {
        let req = conn.read_begin_and_params().expect("begin");
        conn.write_record(1, raw::STDOUT, req.id, b"\r\nbody", 255);
        conn.write_stderr(req.id, b"err");
        conn.write_end(req.id, 5, raw::REQUEST_COMPLETE);
        conn.reset();
    });
    let mut c = RawClient::connect(&server.address()).expect("connect");
    let r = c.request(1, false, [("A", "B")], b"").expect("response");
    assert_eq!(r.body(), b"body");
    assert_eq!(r.stderr, b"err");
    assert_eq!(r.app_status, 5);
    let end = r.records.last().expect("end record");
    assert_eq!(&end.content[5..], &[fake::GARBAGE; 3]);
    let mut rest = Vec::new();
    let err = c.stream().read_to_end(&mut rest).expect_err("reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[test]
fn drop_does_not_hang() {
    let t = Instant::now();
    let server = FakeServer::unix(fake::silent());
    let mut c = RawClient::connect(&server.address()).expect("connect");
    c.write_raw(&raw::build_request(1, false, [("A", "B")], b""))
        .expect("send");
    assert!(server.wait_for_connections(1, Duration::from_secs(5)));
    drop(server);
    // The connection is shut down by the drop: EOF, not a hang.
    assert!(matches!(c.read_record(), Ok(None) | Err(_)));
    assert!(t.elapsed() < Duration::from_secs(2));

    let server = FakeServer::tcp(fake::close_immediately());
    assert!(raw::request(&server.address(), [("A", "B")], b"").is_err());
}
