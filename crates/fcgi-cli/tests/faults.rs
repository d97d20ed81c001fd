//! End-to-end: exit codes and messages of the built `fcgi` binary against a
//! fake server that misbehaves, against nothing at all, and on bad usage.

mod common;

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fcgi, fcgi_with};
use fcgi_testkit::fake::{close_immediately, respond_raw, silent};
use fcgi_testkit::FakeServer;

const SCRIPT: &str = "/srv/www/index.php";

/// A server that answers every request with END_REQUEST and `status`.
fn ending_with(protocol_status: u8) -> FakeServer {
    FakeServer::tcp(move |conn| {
        if let Ok(req) = conn.read_request() {
            conn.write_end(req.id, 0, protocol_status);
        }
    })
}

#[test]
fn silence_times_out_with_exit_4() {
    let server = FakeServer::tcp(silent());
    let started = Instant::now();
    let run = fcgi(&["request", &server.address(), SCRIPT, "--timeout", "0.3"]);
    let line = run.expect_code(4);
    assert!(line.contains("timed out"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn ping_status_and_values_time_out_too() {
    let server = FakeServer::unix(silent());
    for sub in ["ping", "status", "values"] {
        let run = fcgi(&[sub, &server.address(), "--timeout", "0.2"]);
        run.expect_code(4);
    }
}

#[test]
fn a_wrong_protocol_version_is_exit_5() {
    let server = FakeServer::tcp(|conn| {
        if let Ok(req) = conn.read_request() {
            conn.write_record(2, 6, req.id, b"Status: 200 OK\r\n\r\nhi", 0);
        }
    });
    let run = fcgi(&["request", &server.address(), SCRIPT]);
    let line = run.expect_code(5);
    assert!(line.contains("version 2"), "{line}");
    assert!(line.contains("FastCGI server"), "{line}");
}

#[test]
fn an_http_server_is_reported_as_not_fastcgi() {
    let server = FakeServer::tcp(|conn| {
        let _ = conn.read_request();
        conn.write_raw(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let line = fcgi(&["request", &server.address(), SCRIPT]).expect_code(5);
    assert!(line.contains("FastCGI server"), "{line}");
}

#[test]
fn a_close_before_the_end_is_exit_5() {
    let server = FakeServer::tcp(close_immediately());
    let line = fcgi(&["request", &server.address(), SCRIPT]).expect_code(5);
    assert!(line.contains("closed the connection"), "{line}");

    let server = FakeServer::tcp(|conn| {
        if let Ok(req) = conn.read_request() {
            conn.write_stdout(req.id, b"Status: 200 OK\r\n\r\npartial body");
            conn.close();
        }
    });
    let run = fcgi(&["request", &server.address(), SCRIPT]);
    run.expect_code(5);
    assert_eq!(run.stdout, b"partial body");
}

#[test]
fn rejections_are_exit_6() {
    for (status, word) in [(1, "MPX"), (2, "OVERLOADED"), (3, "ROLE")] {
        let server = ending_with(status);
        let line = fcgi(&["request", &server.address(), SCRIPT]).expect_code(6);
        assert!(line.to_uppercase().contains(word), "{line}");
    }
}

#[test]
fn an_oversized_head_is_exit_7() {
    let mut head = b"Status: 200 OK\r\n".to_vec();
    for i in 0..2000 {
        head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "x".repeat(40)).as_bytes());
    }
    head.extend_from_slice(b"\r\nbody");
    let server = FakeServer::tcp(respond_raw(head));
    let line = fcgi(&["request", &server.address(), SCRIPT]).expect_code(7);
    assert!(line.contains("--max-header-bytes"), "{line}");
    let run = fcgi(&[
        "request",
        &server.address(),
        SCRIPT,
        "--max-header-bytes",
        "1000000",
    ]);
    run.expect_code(0);
    assert_eq!(run.stdout, b"body");
}

#[test]
fn nothing_listening_is_exit_3() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let line = fcgi(&["request", &addr, SCRIPT]).expect_code(3);
    assert!(line.contains("cannot connect"), "{line}");
    assert!(line.contains("is the server running"), "{line}");
    for sub in ["ping", "status", "values"] {
        fcgi(&[sub, &addr, "--connect-timeout", "1"]).expect_code(3);
    }
}

#[test]
fn a_missing_socket_is_exit_3_and_says_to_check_the_path() {
    let line = fcgi(&["request", "unix:/nonexistent/php-fpm.sock", SCRIPT]).expect_code(3);
    assert!(line.contains("check the path"), "{line}");
}

#[test]
fn discovery_falls_back_to_port_9000() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = dir.path().display().to_string();
    let run = fcgi_with(
        &["ping", "-v", "--timeout", "1", "--connect-timeout", "0.5"],
        Stdio::null(),
        None,
        &[("FCGI_DISCOVERY_DIRS", &dirs)],
    );
    assert!(
        run.stderr
            .contains("* address 127.0.0.1:9000 (discovered: no php* socket"),
        "{}",
        run.stderr
    );
}

#[test]
fn values_lists_every_answer_from_a_server_that_knows_them() {
    let server = FakeServer::tcp(|conn| {
        let _ = conn.read_record();
        conn.write_values_result(&[
            ("FCGI_MAX_CONNS", "10"),
            ("FCGI_MAX_REQS", "50"),
            ("FCGI_MPXS_CONNS", "1"),
        ]);
    });
    let run = fcgi(&["values", &server.address()]);
    run.expect_code(0);
    assert_eq!(
        run.stdout_text(),
        "FCGI_MAX_CONNS=10\nFCGI_MAX_REQS=50\nFCGI_MPXS_CONNS=1\n"
    );
}

#[test]
fn bad_usage_is_exit_2_with_one_line() {
    let server = FakeServer::tcp(respond_raw(b"Status: 200 OK\r\n\r\nok".to_vec()));
    let addr = server.address();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["nonsense"],
        vec!["request"],
        vec!["request", "--no-such-option", SCRIPT],
        vec!["request", &addr, SCRIPT, "extra"],
        vec!["request", "127.0.0.1:9000"],
        vec!["request", "nohost", SCRIPT],
        vec!["request", &addr, SCRIPT, "--timeout", "abc"],
        vec!["request", &addr, SCRIPT, "--timeout", "0"],
        vec!["request", &addr, SCRIPT, "--connect-timeout", "-1"],
        vec!["request", &addr, SCRIPT, "--max-header-bytes", "0"],
        vec!["request", &addr, SCRIPT, "-H", "no colon"],
        vec!["request", &addr, SCRIPT, "-p", "NOVALUE"],
        vec!["request", &addr, SCRIPT, "--form", "novalue"],
        vec!["request", &addr, SCRIPT, "-d", "a", "--form", "b=c"],
        vec!["request", &addr, SCRIPT, "--json-body", "{not json"],
        vec!["request", &addr, SCRIPT, "--json", "-i"],
        vec![
            "request",
            &addr,
            SCRIPT,
            "-d",
            "abc",
            "-H",
            "Content-Length: 9",
        ],
        vec!["ping", &addr, "extra"],
        vec!["values", "localhost"],
    ];
    for args in cases {
        let run = fcgi(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        run.expect_code(2);
        assert!(run.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(server.connections(), 0, "no usage error reaches the server");
}

#[test]
fn help_has_examples_for_every_subcommand() {
    for sub in ["request", "ping", "status", "values"] {
        let run = fcgi(&[sub, "--help"]);
        run.expect_code(0);
        let text = run.stdout_text();
        assert!(text.contains("Examples:"), "{sub}: {text}");
        assert!(text.contains(&format!("fcgi {sub}")), "{sub}: {text}");
        assert!(text.contains("Exit codes"), "{sub}: {text}");
    }
    fcgi(&["--help"]).expect_code(0);
    fcgi(&["--version"]).expect_code(0);
}

#[test]
fn request_sends_the_derived_params_and_body_to_the_wire() {
    let server = FakeServer::tcp(|conn| {
        if let Ok(req) = conn.read_request() {
            let mut out = b"Content-Type: text/plain\r\n\r\n".to_vec();
            for (n, v) in &req.params {
                out.extend_from_slice(n);
                out.push(b'=');
                out.extend_from_slice(v);
                out.push(b'\n');
            }
            out.extend_from_slice(b"stdin=");
            out.extend_from_slice(&req.stdin);
            conn.respond(req.id, &out);
        }
    });
    let run = fcgi(&["request", &server.address(), "/srv/a.php?q=1", "-d", "xyz"]);
    run.expect_code(0);
    let text = run.stdout_text();
    let names: Vec<&str> = text.lines().filter_map(|l| l.split('=').next()).collect();
    assert_eq!(
        &names[..5],
        &[
            "QUERY_STRING",
            "REQUEST_METHOD",
            "CONTENT_TYPE",
            "CONTENT_LENGTH",
            "SCRIPT_FILENAME"
        ]
    );
    assert!(text.contains("CONTENT_LENGTH=3\n"));
    assert!(text.ends_with("stdin=xyz"), "{text}");
}

#[test]
fn a_param_too_large_for_one_record_is_refused_before_connecting() {
    let server = FakeServer::tcp(respond_raw(b"Status: 200 OK\r\n\r\nok".to_vec()));
    let big = format!("P_BIG={}", "x".repeat(70_000));
    let line = fcgi(&["request", &server.address(), SCRIPT, "-p", &big]).expect_code(2);
    assert!(line.contains("P_BIG"), "{line}");
    assert_eq!(server.connections(), 0);
}
