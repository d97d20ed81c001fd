//! Self-tests of the php-fpm fixture and of every PHP test script, using the
//! independent raw client of the testkit.

use std::time::{Duration, Instant};

use fcgi_testkit::raw::{self, RawClient};
use fcgi_testkit::{pattern_sha256, scripts, sha256_hex, PhpFpm};

fn get(fpm: &PhpFpm, address: &str, script: &str, query: &str) -> raw::RawResponse {
    raw::request(address, fpm.params(script, "GET", query, 0), b"")
        .unwrap_or_else(|e| panic!("request {script}?{query} to {address}: {e}"))
}

#[test]
fn hello_over_both_transports() {
    let fpm = PhpFpm::start();
    assert!(fpm.tcp_address().starts_with("127.0.0.1:"));
    assert!(fpm.unix_address().starts_with("unix:/"));
    for address in fpm.addresses() {
        // Minimal request: only SCRIPT_FILENAME and REQUEST_METHOD.
        let script = fpm.script("hello.php").to_string_lossy().into_owned();
        let params = [
            ("SCRIPT_FILENAME", script.as_str()),
            ("REQUEST_METHOD", "GET"),
        ];
        let resp = raw::request(&address, params, b"").expect("hello request");
        assert_eq!(resp.body_str(), "Hello, World!", "via {address}");
        assert_eq!(
            resp.header_values("Content-Type"),
            ["text/plain;charset=UTF-8"]
        );
        assert_eq!(resp.protocol_status, raw::REQUEST_COMPLETE);
    }
    let workers = fpm.worker_pids();
    assert_eq!(workers.len(), 8, "2 pools x 4 children: {workers:?}");
    assert!(fpm.master_pid() > 0);
}

#[test]
fn stop_kills_and_cleans_up() {
    let fpm = PhpFpm::builder().max_children(1).start();
    let dir = fpm.temp_dir().to_path_buf();
    let pid = fpm.master_pid();
    assert!(fpm.is_running());
    assert!(
        fpm.server_log().contains("ready to handle connections"),
        "{}",
        fpm.server_log()
    );
    let t = Instant::now();
    fpm.stop();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(!dir.exists());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(raw::request(&fpm.tcp_address(), [("A", "B")], b"").is_err());
    fpm.stop(); // idempotent
}

#[test]
fn max_requests_closes_kept_connection() {
    let fpm = PhpFpm::builder().max_children(1).max_requests(2).start();
    for address in fpm.addresses() {
        let mut c = RawClient::connect(&address).expect("connect");
        for id in 1..=2 {
            let r = c
                .request(id, true, fpm.params("hello.php", "GET", "", 0), b"")
                .expect("kept request");
            assert_eq!(r.body_str(), "Hello, World!");
        }
        // The worker is recycled: the kept connection is closed.
        match c.read_record() {
            Ok(None) | Err(_) => {}
            Ok(Some(r)) => panic!("unexpected record {r:?}"),
        }
    }
}

#[test]
fn custom_script_and_ini() {
    let fpm = PhpFpm::builder()
        .max_children(1)
        .script(
            "sub/x.php",
            "<?php echo ini_get('memory_limit'), ' ', getenv('FCGI_T');",
        )
        .ini("memory_limit", "77M")
        .env("FCGI_T", "env-ok")
        .start();
    let r = get(&fpm, &fpm.unix_address(), "sub/x.php", "");
    assert_eq!(r.body_str(), "77M env-ok");
    fpm.write_script("sub/x.php", "<?php echo 'rewritten';");
    let r = get(&fpm, &fpm.tcp_address(), "sub/x.php", "");
    assert_eq!(r.body_str(), "rewritten");
    let r = get(&fpm, &fpm.tcp_address(), "missing.php", "");
    assert_eq!(r.status(), 404);
    assert!(r.stderr_str().contains("Primary script unknown"));
}

#[test]
fn all_scripts_behave() {
    let fpm = PhpFpm::builder().max_children(2).start();
    let a = fpm.tcp_address();
    assert_eq!(scripts::ALL.len(), 14);

    // server.php: $_SERVER, $_GET, $_POST, input length.
    let body = b"a=1&b=two";
    let mut params = fpm.params("server.php", "POST", "q=1", body.len());
    params.retain(|(k, _)| k != "CONTENT_TYPE");
    params.push((
        "CONTENT_TYPE".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    let r = raw::request(&a, params, body).expect("server.php");
    let s = r.body_str();
    assert!(s.starts_with("{\"server\":{"), "{s}");
    assert!(s.contains("\"get\":{\"q\":\"1\"}"), "{s}");
    assert!(s.contains("\"post\":{\"a\":\"1\",\"b\":\"two\"}"), "{s}");
    assert!(s.contains("\"input_len\":9"), "{s}");
    assert!(s.contains("\"REQUEST_METHOD\":\"POST\""), "{s}");
    let r = get(&fpm, &a, "server.php", "");
    assert!(
        r.body_str()
            .contains("\"get\":{},\"post\":{},\"input_len\":0"),
        "{}",
        r.body_str()
    );

    // input_hash.php
    let input = fcgi_testkit::pattern(300_000);
    let r = raw::request(
        &a,
        fpm.params("input_hash.php", "PUT", "", input.len()),
        &input,
    )
    .expect("input_hash.php");
    assert_eq!(
        r.body_str(),
        format!("{{\"len\":300000,\"sha256\":\"{}\"}}", sha256_hex(&input))
    );

    // output.php
    for n in [0usize, 1, 65536, 1_000_003] {
        let r = get(&fpm, &a, "output.php", &format!("bytes={n}"));
        assert_eq!(r.body().len(), n);
        assert_eq!(sha256_hex(r.body()), pattern_sha256(n), "bytes={n}");
        assert_eq!(r.header_values("X-Bytes"), [n.to_string()]);
    }

    // big_then_read.php (PUT: PHP does not read the body before the script).
    let input = vec![b'z'; 1_500_000];
    let r = raw::request(
        &a,
        fpm.params("big_then_read.php", "PUT", "out=2000000", input.len()),
        &input,
    )
    .expect("big_then_read.php");
    let body = r.body();
    assert_eq!(sha256_hex(&body[..2_000_000]), pattern_sha256(2_000_000));
    assert_eq!(
        String::from_utf8_lossy(&body[2_000_000..]),
        format!("\nINPUT len=1500000 sha256={}", sha256_hex(&input))
    );

    // headers.php
    let r = get(&fpm, &a, "headers.php", "");
    assert_eq!(r.header_values("Set-Cookie"), ["a=1", "b=2"]);
    assert_eq!(r.header_values("X-Custom"), ["yes"]);
    assert_eq!(r.body_str(), "headers");
    let r = get(&fpm, &a, "headers.php", "status=418");
    assert_eq!(r.status(), 418);
    let r = get(&fpm, &a, "headers.php", "location=/next");
    assert_eq!(r.status(), 302);
    assert_eq!(r.header_values("Location"), ["/next"]);

    // stderr.php
    let r = get(&fpm, &a, "stderr.php", "");
    assert_eq!(r.body_str(), "ok");
    let e = r.stderr_str();
    assert!(e.contains("message from stderr"), "{e}");
    assert!(e.contains("warning from stderr"), "{e}");

    // sleep.php
    let t = Instant::now();
    let r = get(&fpm, &a, "sleep.php", "ms=150");
    assert_eq!(r.body_str(), "slept");
    assert!(t.elapsed() >= Duration::from_millis(150));

    // tick.php
    let file = fpm.temp_dir().join("ticks.txt");
    let r = get(
        &fpm,
        &a,
        "tick.php",
        &format!("file={}&count=3", file.display()),
    );
    assert_eq!(r.body_str(), "tick 1\ntick 2\ntick 3\ndone");
    assert_eq!(
        std::fs::read_to_string(&file).expect("tick file"),
        "tick 1\ntick 2\ntick 3\n"
    );

    // exit.php
    let r = get(&fpm, &a, "exit.php", "code=3");
    assert_eq!(r.body_str(), "exiting with 3");

    // fatal.php
    let r = get(&fpm, &a, "fatal.php", "");
    assert_eq!(r.status(), 500);
    assert!(
        r.stderr_str().contains("fcgi_testkit_undefined_function"),
        "{}",
        r.stderr_str()
    );

    // params.php
    let big = "v".repeat(5000);
    let mut params = fpm.params("params.php", "GET", "", 0);
    params.push(("X_BIG".into(), big.clone()));
    params.push(("P_SMALL".into(), "s".into()));
    params.push(("OTHER".into(), "o".into()));
    let r = raw::request(&a, params, b"").expect("params.php");
    assert_eq!(
        r.body_str(),
        format!(
            "{{\"P_SMALL\":[1,\"{}\"],\"X_BIG\":[5000,\"{}\"]}}",
            sha256_hex(b"s"),
            sha256_hex(big.as_bytes())
        )
    );

    // careless.php: says what it is told, lies included.
    let r = get(
        &fpm,
        &a,
        "careless.php",
        "status=299%20Odd&h[]=X-A:%201&h[]=X-A:%202&cl=5&body=ab&repeat=3",
    );
    assert_eq!(r.status(), 299);
    assert_eq!(r.header_values("X-A"), ["1", "2"]);
    assert_eq!(r.header_values("Content-Length"), ["5"]);
    assert_eq!(r.body_str(), "ababab");
}

#[test]
fn ping_and_status() {
    let fpm = PhpFpm::builder().max_children(1).start();
    let params = [
        ("SCRIPT_FILENAME", "/ping"),
        ("SCRIPT_NAME", "/ping"),
        ("REQUEST_METHOD", "GET"),
    ];
    let r = raw::request(&fpm.unix_address(), params, b"").expect("ping");
    assert_eq!(r.body_str(), "pong");
}

#[test]
fn tick_stops_when_client_goes_away() {
    let fpm = PhpFpm::builder().max_children(1).start();
    let file = fpm.temp_dir().join("ticks.txt");
    let mut c = RawClient::connect(&fpm.tcp_address()).expect("connect");
    let params = fpm.params("tick.php", "GET", &format!("file={}", file.display()), 0);
    c.write_raw(&raw::build_request(1, false, params, b""))
        .expect("send");
    let first = c.read_record().expect("read").expect("a record");
    assert_eq!(first.record_type, raw::STDOUT);
    drop(c);
    std::thread::sleep(Duration::from_millis(500));
    let n1 = std::fs::read_to_string(&file)
        .expect("tick file")
        .lines()
        .count();
    std::thread::sleep(Duration::from_millis(300));
    let n2 = std::fs::read_to_string(&file)
        .expect("tick file")
        .lines()
        .count();
    assert_eq!(n1, n2, "script still running after the client left");
    assert!(n1 < 6, "{n1} ticks");
}
