//! `fcgi serve` against lying scripts and hostile clients, over raw sockets
//! (an HTTP client library would normalise what these tests send): the
//! script never frames HTTP, slow clients never reach PHP, request heads
//! follow RFC 9112, and every connection limit holds. Each rule is also a
//! line of the gateway's safety table (`fcgi::gateway` docs).

mod serve_support;

use std::time::Duration;

use fcgi_testkit::PhpFpm;
use serve_support::{RawHttp, Server};

fn fpm() -> PhpFpm {
    PhpFpm::builder()
        .script("static/hello.txt", "Hello, static!\n")
        .max_children(2)
        .start()
}

fn serve(fpm: &PhpFpm, extra: &[&str]) -> Server {
    let root = fpm.doc_root().to_str().unwrap().to_string();
    let upstream = fpm.tcp_address();
    let mut args = vec![
        "--root",
        root.as_str(),
        "--upstream",
        upstream.as_str(),
        "--max-connections",
        "2",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

// ---- Response framing --------------------------------------------------

#[test]
fn a_lying_content_length_never_spills_into_the_next_pipelined_response() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    for query in ["cl=5", "cl=5&body=x&repeat=200000"] {
        let mut raw = RawHttp::connect(server.addr);
        let mut pipelined = get(&format!("/careless.php?{query}"));
        pipelined.extend(get("/hello.php"));
        raw.send(&pipelined);
        let first = raw.response().expect("first response");
        assert_eq!(first.status, 200, "{query}");
        assert_eq!(first.header("content-length"), Some("5"));
        assert_eq!(first.body.len(), 5);
        let second = raw.response().expect("second response");
        assert_eq!(second.status, 200, "{query}: {second:?}");
        assert_eq!(second.body, b"Hello, World!", "{query}");
    }
}

#[test]
fn a_body_shorter_than_its_content_length_closes_the_connection() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let mut raw = RawHttp::connect(server.addr);
    let mut pipelined = get("/careless.php?cl=100");
    pipelined.extend(get("/hello.php"));
    raw.send(&pipelined);
    let first = raw.response().expect("head");
    assert_eq!(first.header("content-length"), Some("100"));
    assert_eq!(first.body, b"0123456789", "what came, then the close");
    assert!(
        raw.response().is_none(),
        "no second response on a broken framing"
    );
}

#[test]
fn framing_and_hop_by_hop_headers_from_the_script_never_reach_the_client() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let lines = [
        "Transfer-Encoding:%20chunked",
        "Connection:%20close,%20X-Named",
        "X-Named:%20secret",
        "Keep-Alive:%20timeout=1",
        "Upgrade:%20websocket",
        "Trailer:%20X-Sum",
        "X-Accel-Redirect:%20/internal",
        "X-Kept:%20yes",
    ];
    let query: Vec<String> = lines.iter().map(|l| format!("h[]={l}")).collect();
    let mut raw = RawHttp::connect(server.addr);
    let mut pipelined = get(&format!("/careless.php?{}", query.join("&")));
    pipelined.extend(get("/hello.php"));
    raw.send(&pipelined);
    let first = raw.response().expect("response");
    assert_eq!(first.body, b"0123456789");
    assert_eq!(first.header("content-length"), Some("10"));
    for gone in [
        "transfer-encoding",
        "connection",
        "x-named",
        "keep-alive",
        "upgrade",
        "trailer",
        "x-accel-redirect",
    ] {
        assert_eq!(first.header(gone), None, "{gone}: {first:?}");
    }
    assert_eq!(first.header("x-kept"), Some("yes"));
    let second = raw.response().expect("the connection was kept");
    assert_eq!(second.body, b"Hello, World!");
}

#[test]
fn a_script_cannot_switch_protocols() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let mut raw = RawHttp::connect(server.addr);
    raw.send(&get("/careless.php?status=101%20Switching%20Protocols&h[]=Upgrade:%20websocket&h[]=Connection:%20upgrade"));
    let response = raw.response().expect("response");
    assert_eq!(response.status, 502);
}

#[test]
fn head_gets_the_declared_length_and_no_body() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let mut raw = RawHttp::connect(server.addr);
    raw.send(b"HEAD /careless.php?cl=1234 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    raw.send(&get("/hello.php"));
    let head = raw.head_response().expect("head");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1234"));
    let next = raw.response().expect("next response right after the head");
    assert_eq!(next.body, b"Hello, World!");
}

// ---- Request heads ------------------------------------------------------

#[test]
fn host_rules_hold_for_scripts_and_static_files_alike() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let cases: [(&str, u16); 9] = [
        ("GET /hello.php HTTP/1.1\r\n\r\n", 400),
        ("GET /static/hello.txt HTTP/1.1\r\n\r\n", 400),
        ("GET /hello.php HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (
            "GET /static/hello.txt HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            400,
        ),
        ("GET /hello.php HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (
            "GET /hello.php HTTP/1.1\r\nHost: evil.example/x\r\n\r\n",
            400,
        ),
        (
            "GET /hello.php HTTP/1.1\r\nHost: user@evil.example\r\n\r\n",
            400,
        ),
        ("GET /hello.php HTTP/1.0\r\n\r\n", 200),
        (
            "GET /static/hello.txt HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            200,
        ),
    ];
    for (request, want) in cases {
        let mut raw = RawHttp::connect(server.addr);
        raw.send(request.as_bytes());
        let response = raw.response().expect("response");
        assert_eq!(response.status, want, "{request:?}");
    }
}

#[test]
fn php_sees_exactly_the_one_valid_host() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let mut raw = RawHttp::connect(server.addr);
    raw.send(b"GET http://app.example:8080/server.php HTTP/1.1\r\nHost: other.example\r\n\r\n");
    let response = raw.response().expect("response");
    assert_eq!(response.status, 200);
    let v = serve_support::json(&response.body);
    assert_eq!(v["server"]["HTTP_HOST"], "app.example:8080");
    assert_eq!(v["server"]["SERVER_NAME"], "app.example");
}

#[test]
fn a_head_over_the_limit_is_431_and_a_long_target_is_414() {
    let fpm = fpm();
    let server = serve(
        &fpm,
        &["--max-header-size", "16384", "--max-uri-size", "4096"],
    );
    for path in ["/hello.php", "/static/hello.txt"] {
        let mut raw = RawHttp::connect(server.addr);
        let big = "x".repeat(20_000);
        raw.send(format!("GET {path} HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes());
        assert_eq!(raw.response().expect("response").status, 431, "{path}");

        let mut raw = RawHttp::connect(server.addr);
        let long = "a".repeat(5000);
        raw.send(format!("GET {path}?{long} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        assert_eq!(raw.response().expect("response").status, 414, "{path}");

        let mut raw = RawHttp::connect(server.addr);
        let many: String = (0..150).map(|i| format!("X-H{i}: {i}\r\n")).collect();
        raw.send(format!("GET {path} HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes());
        assert_eq!(
            raw.response().expect("response").status,
            431,
            "{path}: more than --max-headers lines"
        );

        // Just under every limit: served.
        let mut raw = RawHttp::connect(server.addr);
        let fits = "a".repeat(4000);
        raw.send(
            format!(
                "GET {path}?{fits} HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
                "x".repeat(10_000)
            )
            .as_bytes(),
        );
        assert_eq!(raw.response().expect("response").status, 200, "{path}");
    }
}

#[test]
fn transfer_codings_other_than_chunked_are_refused() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let mut raw = RawHttp::connect(server.addr);
    raw.send(b"POST /input_hash.php HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(raw.response().expect("response").status, 501);
    // Chunked not last: the length cannot be known (RFC 9112 6.3): 400.
    let mut raw = RawHttp::connect(server.addr);
    raw.send(b"POST /input_hash.php HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello");
    assert_eq!(raw.response().expect("response").status, 400);
}

// ---- Request bodies -----------------------------------------------------

#[test]
fn a_declared_body_over_the_limit_is_413_before_its_bytes_and_closes() {
    let fpm = fpm();
    let server = serve(&fpm, &["--max-body-size", "1000"]);
    let mut raw = RawHttp::connect(server.addr);
    raw.send(b"POST /input_hash.php HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000\r\n\r\n");
    let response = raw.response().expect("413 without sending the body");
    assert_eq!(response.status, 413);
    assert!(raw.closes_within(Duration::from_secs(10)));
}

#[test]
fn a_413_reaches_a_client_that_keeps_sending_its_body() {
    // Closing at once with the client's bytes unread makes the kernel
    // reset the connection: a client still writing its body gets an error
    // and (curl does) never reads the 413. The server closes lingering
    // instead: it reads and drops the rest until the client is done.
    let fpm = fpm();
    let server = serve(&fpm, &["--max-body-size", "1000"]);
    for round in 0..10 {
        let mut raw = RawHttp::connect(server.addr);
        raw.send(b"POST /hello.php HTTP/1.1\r\nHost: a\r\nContent-Length: 20971520\r\n\r\n");
        // Like curl without Expect: the whole body first, then the answer.
        let mut writer = raw.try_clone_stream();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..320 {
            use std::io::Write;
            if let Err(error) = writer.write_all(&chunk) {
                // curl gives up here and never reads the answer.
                panic!("round {round}: the server reset the upload: {error}");
            }
        }
        let response = raw
            .response()
            .unwrap_or_else(|| panic!("round {round}: no answer (reset?)"));
        assert_eq!(response.status, 413, "round {round}");
    }
}

#[test]
fn chunk_sizes_that_overflow_are_400_and_chunks_past_the_limit_413() {
    let fpm = fpm();
    let server = serve(&fpm, &["--max-body-size", "1000"]);
    let mut raw = RawHttp::connect(server.addr);
    raw.send(b"POST /input_hash.php HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nabc");
    assert_eq!(raw.response().expect("response").status, 400);
    // A chunk size over the limit is 413 at once, before its bytes (the
    // body timeout is 60 s: the answer cannot come from it).
    let mut raw = RawHttp::connect(server.addr);
    raw.send(
        b"POST /input_hash.php HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n",
    );
    assert_eq!(raw.response().expect("413 before the chunk").status, 413);
    assert!(raw.closes_within(Duration::from_secs(10)));
    // So is a chunk whose size takes the body's sum over the limit, on a
    // kept connection after a request that stays within it.
    let mut raw = RawHttp::connect(server.addr);
    raw.send(b"POST /input_hash.php HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    let first = raw.response().expect("the first answer");
    assert_eq!(first.status, 200);
    raw.send(
        b"POST /input_hash.php HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n",
    );
    raw.send(&[b'x'; 500]);
    raw.send(b"\r\n1f5;name=value\r\n");
    assert_eq!(raw.response().expect("413 before the chunk").status, 413);
}

#[test]
fn a_stalled_body_is_408_and_closed_with_or_without_a_length() {
    let fpm = fpm();
    let server = serve(&fpm, &["--body-timeout", "0.5"]);
    for request in [
        &b"POST /input_hash.php HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789"[..],
        &b"POST /input_hash.php HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"[..],
    ] {
        let mut raw = RawHttp::connect(server.addr);
        raw.send(request);
        let response = raw.response().expect("408");
        assert_eq!(response.status, 408, "{:?}", String::from_utf8_lossy(request));
        assert!(raw.closes_within(Duration::from_secs(10)));
    }
}

#[test]
fn slow_uploads_do_not_hold_php_workers() {
    // Two php-fpm workers, two upstream connections, and four clients
    // sending their bodies slowly: a normal request is still answered.
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let slow: Vec<RawHttp> = (0..4)
        .map(|_| {
            let mut raw = RawHttp::connect(server.addr);
            raw.send(b"POST /input_hash.php HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nfirst bytes");
            raw
        })
        .collect();
    let mut raw = RawHttp::connect(server.addr);
    raw.send(&get("/hello.php"));
    let response = raw.response().expect("answered while uploads stall");
    assert_eq!(response.body, b"Hello, World!");
    drop(slow);
}

// ---- Connection limits --------------------------------------------------

#[test]
fn an_idle_kept_connection_is_closed_after_the_keepalive_timeout() {
    let fpm = fpm();
    let server = serve(
        &fpm,
        &["--keepalive-timeout", "0.5", "--header-timeout", "30"],
    );
    let mut raw = RawHttp::connect(server.addr);
    raw.send(&get("/static/hello.txt"));
    assert_eq!(raw.response().expect("response").status, 200);
    assert!(
        raw.closes_within(Duration::from_secs(10)),
        "idle connection kept open"
    );
}

#[test]
fn a_head_sent_byte_by_byte_is_cut_off_by_the_header_timeout() {
    let fpm = fpm();
    let server = serve(
        &fpm,
        &["--header-timeout", "0.5", "--keepalive-timeout", "30"],
    );
    let mut raw = RawHttp::connect(server.addr);
    // A slowloris client: a byte every 100 ms, never finishing the head.
    let drip = std::thread::spawn({
        let mut writer = raw.try_clone_stream();
        move || {
            use std::io::Write;
            for b in b"GET /hello.php HTTP/1.1\r\nX-Slow: "
                .iter()
                .chain(std::iter::repeat(&b'a'))
                .take(200)
            {
                if writer.write_all(&[*b]).is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        }
    });
    assert!(
        raw.closes_within(Duration::from_secs(15)),
        "slowloris connection kept open"
    );
    assert!(
        drip.join().unwrap(),
        "the server stopped reading before the client stopped"
    );
}

#[test]
fn at_most_max_client_connections_are_served_at_once() {
    let fpm = fpm();
    let server = serve(&fpm, &["--max-client-connections", "2"]);
    let mut first = RawHttp::connect(server.addr);
    first.send(&get("/static/hello.txt"));
    assert_eq!(first.response().expect("first").status, 200);
    let mut second = RawHttp::connect(server.addr);
    second.send(&get("/static/hello.txt"));
    assert_eq!(second.response().expect("second").status, 200);
    let mut third = RawHttp::connect(server.addr);
    third.send(&get("/static/hello.txt"));
    assert!(
        third.nothing_within(Duration::from_millis(500)),
        "a third connection was served while two were open"
    );
    drop(first);
    assert_eq!(
        third.response().expect("served once a slot is free").status,
        200
    );
}
