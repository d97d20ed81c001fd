//! End-to-end: the built `fcgi` binary against a private php-fpm.

mod common;

use std::fs;
use std::process::Stdio;

use base64::Engine as _;
use common::{fcgi, fcgi_with};
use fcgi_testkit::{pattern, sha256_hex, PhpFpm};
use serde_json::Value;

fn script(fpm: &PhpFpm, name: &str) -> String {
    fpm.script(name).display().to_string()
}

/// `fcgi request ADDR TARGET EXTRA...` against php-fpm's Unix socket.
fn request(fpm: &PhpFpm, target: &str, extra: &[&str]) -> common::Run {
    let address = fpm.unix_address();
    let mut args = vec!["request", address.as_str(), target];
    args.extend_from_slice(extra);
    fcgi(&args)
}

/// `$_SERVER` of server.php for a run.
fn server_vars(run: &common::Run) -> Value {
    run.expect_code(0);
    run.json()["server"].clone()
}

#[test]
fn request_prints_the_body_on_stdout() {
    let fpm = PhpFpm::start();
    let run = request(&fpm, &script(&fpm, "hello.php"), &[]);
    run.expect_code(0);
    assert_eq!(run.stdout, b"Hello, World!");
}

#[test]
fn request_works_over_tcp_too() {
    let fpm = PhpFpm::start();
    let run = fcgi(&[
        "request",
        &fpm.tcp_address(),
        &script(&fpm, "hello.php"),
        "--connect-timeout",
        "2",
    ]);
    run.expect_code(0);
    assert_eq!(run.stdout, b"Hello, World!");
}

#[test]
fn include_prints_status_and_headers_first_with_repeats_kept() {
    let fpm = PhpFpm::start();
    let run = request(&fpm, &script(&fpm, "headers.php"), &["-i"]);
    run.expect_code(0);
    let text = run.stdout_text();
    assert!(text.starts_with("200 OK\n"), "{text}");
    assert!(
        text.contains("\nSet-Cookie: a=1\nSet-Cookie: b=2\n"),
        "{text}"
    );
    assert!(text.contains("\nX-Custom: yes\n"), "{text}");
    assert!(text.ends_with("\n\nheaders"), "{text}");
}

#[test]
fn include_shows_a_redirect_status() {
    let fpm = PhpFpm::start();
    let target = format!("{}?location=/elsewhere", script(&fpm, "headers.php"));
    let run = request(&fpm, &target, &["--include"]);
    run.expect_code(0);
    let text = run.stdout_text();
    assert!(text.starts_with("302 Found\n"), "{text}");
    assert!(text.contains("\nLocation: /elsewhere\n"), "{text}");
}

#[test]
fn derived_params_follow_nginx_fastcgi_params() {
    let fpm = PhpFpm::start();
    let path = script(&fpm, "server.php");
    let run = request(&fpm, &format!("{path}?x=1&y=two"), &[]);
    let server = server_vars(&run);
    let expect = [
        ("REQUEST_METHOD", "GET".to_string()),
        ("SCRIPT_FILENAME", path.clone()),
        ("SCRIPT_NAME", path.clone()),
        ("REQUEST_URI", format!("{path}?x=1&y=two")),
        ("DOCUMENT_URI", path.clone()),
        ("DOCUMENT_ROOT", "/".to_string()),
        ("QUERY_STRING", "x=1&y=two".to_string()),
        ("SERVER_PROTOCOL", "HTTP/1.1".to_string()),
        ("GATEWAY_INTERFACE", "CGI/1.1".to_string()),
        ("REMOTE_ADDR", "127.0.0.1".to_string()),
        ("REMOTE_PORT", "0".to_string()),
        ("SERVER_ADDR", "127.0.0.1".to_string()),
        ("SERVER_PORT", "80".to_string()),
        ("SERVER_NAME", "localhost".to_string()),
        ("REDIRECT_STATUS", "200".to_string()),
        ("HTTP_HOST", "localhost".to_string()),
    ];
    for (name, value) in expect {
        assert_eq!(server[name], Value::from(value), "{name}");
    }
    assert!(server["SERVER_SOFTWARE"]
        .as_str()
        .unwrap()
        .starts_with("fcgi/"));
    assert!(server.get("CONTENT_LENGTH").is_none());
    assert!(server.get("CONTENT_TYPE").is_none());
    assert_eq!(run.json()["get"]["y"], "two");
}

#[test]
fn query_string_is_present_even_when_empty() {
    let fpm = PhpFpm::start();
    let run = request(&fpm, &script(&fpm, "server.php"), &[]);
    assert_eq!(server_vars(&run)["QUERY_STRING"], "");
}

#[test]
fn document_root_makes_script_name_relative() {
    let fpm = PhpFpm::start();
    let root = fpm.doc_root().display().to_string();
    // A full path under the root, and a URI path below it: the same script.
    for target in [script(&fpm, "server.php"), "/server.php?a=1".to_string()] {
        let run = request(&fpm, &target, &["--document-root", &root]);
        let server = server_vars(&run);
        assert_eq!(server["SCRIPT_NAME"], "/server.php");
        assert_eq!(server["DOCUMENT_URI"], "/server.php");
        assert_eq!(server["SCRIPT_FILENAME"], script(&fpm, "server.php"));
        assert_eq!(server["DOCUMENT_ROOT"], Value::from(root.clone()));
        assert!(server["REQUEST_URI"]
            .as_str()
            .unwrap()
            .starts_with("/server.php"));
    }
}

#[test]
fn headers_become_http_params_and_content_type() {
    let fpm = PhpFpm::start();
    let run = request(
        &fpm,
        &script(&fpm, "server.php"),
        &[
            "-H",
            "X-Trace-Id: 42",
            "--header",
            "Host: example.org",
            "-H",
            "Content-Type: text/plain",
            "-d",
            "hello",
        ],
    );
    let server = server_vars(&run);
    assert_eq!(server["HTTP_X_TRACE_ID"], "42");
    assert_eq!(server["HTTP_HOST"], "example.org");
    assert_eq!(server["CONTENT_TYPE"], "text/plain");
    assert_eq!(server["CONTENT_LENGTH"], "5");
    assert_eq!(run.json()["input_len"], 5);
}

#[test]
fn params_override_derived_ones_and_can_be_unset_or_empty() {
    let fpm = PhpFpm::start();
    let run = request(
        &fpm,
        &script(&fpm, "server.php"),
        &[
            "-p",
            "SERVER_NAME=example.org",
            "--param",
            "P_EMPTY=",
            "-p",
            "HTTPS=on",
            "--unset-param",
            "REMOTE_PORT",
            "--unset-param",
            "HTTP_HOST",
        ],
    );
    let server = server_vars(&run);
    assert_eq!(server["SERVER_NAME"], "example.org");
    assert_eq!(server["P_EMPTY"], "");
    assert_eq!(server["HTTPS"], "on");
    assert!(server.get("REMOTE_PORT").is_none());
    assert!(server.get("HTTP_HOST").is_none());
}

#[test]
fn method_is_get_by_default_post_with_a_body_and_x_overrides() {
    let fpm = PhpFpm::start();
    let addr = fpm.unix_address();
    let path = script(&fpm, "server.php");
    let method = |extra: &[&str]| {
        let mut args = vec!["request", addr.as_str(), path.as_str()];
        args.extend_from_slice(extra);
        server_vars(&fcgi(&args))["REQUEST_METHOD"].clone()
    };
    assert_eq!(method(&[]), "GET");
    assert_eq!(method(&["-d", "a=1"]), "POST");
    assert_eq!(method(&["-X", "DELETE"]), "DELETE");
    assert_eq!(method(&["--method", "PUT", "-d", "a=1"]), "PUT");
}

#[test]
fn data_is_posted_as_a_form_by_default() {
    let fpm = PhpFpm::start();
    let run = request(&fpm, &script(&fpm, "server.php"), &["-d", "a=1&b=two"]);
    let server = server_vars(&run);
    assert_eq!(server["CONTENT_TYPE"], "application/x-www-form-urlencoded");
    assert_eq!(server["CONTENT_LENGTH"], "9");
    assert_eq!(run.json()["post"]["a"], "1");
    assert_eq!(run.json()["post"]["b"], "two");
}

#[test]
fn form_fields_are_url_encoded() {
    let fpm = PhpFpm::start();
    let run = request(
        &fpm,
        &script(&fpm, "server.php"),
        &["--form", "name=hello world", "--form", "x=a&b=c"],
    );
    run.expect_code(0);
    let post = &run.json()["post"];
    assert_eq!(post["name"], "hello world");
    assert_eq!(post["x"], "a&b=c");
}

#[test]
fn json_body_is_sent_as_application_json() {
    let fpm = PhpFpm::start();
    let body = r#"{"a":[1,2]}"#;
    let run = request(&fpm, &script(&fpm, "server.php"), &["--json-body", body]);
    let server = server_vars(&run);
    assert_eq!(server["CONTENT_TYPE"], "application/json");
    assert_eq!(server["REQUEST_METHOD"], "POST");
    assert_eq!(run.json()["input_len"], body.len());
}

#[test]
fn data_from_a_file_is_streamed_whole() {
    let fpm = PhpFpm::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.bin");
    let body = pattern(3 * 1024 * 1024 + 17);
    fs::write(&file, &body).unwrap();
    let run = request(
        &fpm,
        &script(&fpm, "input_hash.php"),
        &[
            "-X",
            "PUT",
            "-d",
            &format!("@{}", file.display()),
            "-H",
            "Content-Type: application/octet-stream",
        ],
    );
    run.expect_code(0);
    let json = run.json();
    assert_eq!(json["len"], body.len());
    assert_eq!(json["sha256"], Value::from(sha256_hex(&body)));
}

#[test]
fn data_from_a_piped_stdin_is_spooled_and_sent_with_its_length() {
    let fpm = PhpFpm::start();
    let body = pattern(2 * 1024 * 1024 + 5);
    let run = fcgi_with(
        &[
            "request",
            &fpm.unix_address(),
            &script(&fpm, "input_hash.php"),
            "-X",
            "PUT",
            "-d",
            "@-",
        ],
        Stdio::piped(),
        Some(body.clone()),
        &[],
    );
    run.expect_code(0);
    let json = run.json();
    assert_eq!(json["len"], body.len());
    assert_eq!(json["sha256"], Value::from(sha256_hex(&body)));
}

#[test]
fn data_from_stdin_redirected_from_a_file_is_sent() {
    let fpm = PhpFpm::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.bin");
    let body = pattern(100_000);
    fs::write(&file, &body).unwrap();
    let run = fcgi_with(
        &[
            "request",
            &fpm.unix_address(),
            &script(&fpm, "input_hash.php"),
            "-X",
            "PUT",
            "-d",
            "@-",
        ],
        Stdio::from(fs::File::open(&file).unwrap()),
        None,
        &[],
    );
    run.expect_code(0);
    assert_eq!(run.json()["sha256"], Value::from(sha256_hex(&body)));
}

#[test]
fn a_missing_data_file_is_a_usage_error() {
    let fpm = PhpFpm::start();
    let run = request(
        &fpm,
        &script(&fpm, "hello.php"),
        &["-d", "@/nonexistent/body.bin"],
    );
    let line = run.expect_code(2);
    assert!(line.contains("/nonexistent/body.bin"), "{line}");
}

#[test]
fn a_large_body_streams_to_stdout() {
    let fpm = PhpFpm::start();
    let n = 6 * 1024 * 1024 + 3;
    let run = request(
        &fpm,
        &format!("{}?bytes={n}", script(&fpm, "output.php")),
        &[],
    );
    run.expect_code(0);
    assert_eq!(run.stdout.len(), n);
    assert!(run.stdout == pattern(n));
}

#[test]
fn output_writes_the_body_to_a_file() {
    let fpm = PhpFpm::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.bin");
    let run = request(
        &fpm,
        &format!("{}?bytes=300000", script(&fpm, "output.php")),
        &["-o", &file.display().to_string()],
    );
    run.expect_code(0);
    assert!(run.stdout.is_empty());
    assert!(fs::read(&file).unwrap() == pattern(300_000));
}

#[test]
fn output_to_an_unwritable_place_fails_clearly() {
    let fpm = PhpFpm::start();
    let run = request(
        &fpm,
        &script(&fpm, "hello.php"),
        &["--output", "/nonexistent/dir/out.txt"],
    );
    let line = run.expect_code(1);
    assert!(line.contains("/nonexistent/dir/out.txt"), "{line}");
}

#[test]
fn server_stderr_goes_to_stderr_and_silent_hides_it() {
    let fpm = PhpFpm::start();
    let path = script(&fpm, "stderr.php");
    let run = request(&fpm, &path, &[]);
    run.expect_code(0);
    assert_eq!(run.stdout, b"ok");
    assert!(run.stderr.contains("message from stderr"), "{}", run.stderr);
    assert!(run.stderr.contains("warning from stderr"), "{}", run.stderr);
    assert!(run.stderr.ends_with('\n'));

    let run = request(&fpm, &path, &["-s"]);
    run.expect_code(0);
    assert_eq!(run.stdout, b"ok");
    assert_eq!(run.stderr, "");
    let run = request(&fpm, &path, &["--silent"]);
    assert_eq!(run.stderr, "");
}

#[test]
fn json_prints_one_object_with_ordered_repeated_headers() {
    let fpm = PhpFpm::start();
    let run = request(&fpm, &script(&fpm, "headers.php"), &["--json"]);
    run.expect_code(0);
    let text = run.stdout_text();
    assert_eq!(text.lines().count(), 1, "{text}");
    let json = run.json();
    assert_eq!(json["status"], 200);
    assert_eq!(json["status_text"], "OK");
    let headers = json["headers"].as_array().unwrap();
    let cookies: Vec<&Value> = headers.iter().filter(|h| h[0] == "Set-Cookie").collect();
    assert_eq!(cookies.len(), 2);
    assert_eq!(cookies[0][1], "a=1");
    assert_eq!(cookies[1][1], "b=2");
    assert_eq!(json["body"], "headers");
    assert_eq!(json["stderr"], "");
    assert_eq!(json["app_status"], 0);
    assert!(json["duration_ms"].as_f64().unwrap() >= 0.0);
}

#[test]
fn json_carries_stderr_and_base64_for_binary_bodies() {
    let fpm = PhpFpm::start();
    let run = request(&fpm, &script(&fpm, "stderr.php"), &["--json"]);
    run.expect_code(0);
    let json = run.json();
    assert!(json["stderr"]
        .as_str()
        .unwrap()
        .contains("message from stderr"));
    assert_eq!(
        run.stderr, "",
        "with --json the server's stderr is in the object"
    );

    let run = request(
        &fpm,
        &format!("{}?bytes=1000", script(&fpm, "output.php")),
        &["--json"],
    );
    run.expect_code(0);
    let json = run.json();
    assert!(json.get("body").is_none());
    let body = base64::engine::general_purpose::STANDARD
        .decode(json["body_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(body, pattern(1000));
}

#[test]
fn missing_script_is_404_and_fail_makes_it_exit_22() {
    let fpm = PhpFpm::start();
    let missing = script(&fpm, "missing.php");
    let run = request(&fpm, &missing, &["-i"]);
    run.expect_code(0);
    assert!(run.stdout_text().starts_with("404 Not Found\n"));
    assert!(run.stderr.contains("Primary script unknown"));

    let run = request(&fpm, &missing, &["--fail"]);
    let line = run.expect_code(22);
    assert!(line.contains("404"), "{line}");
    assert!(run.stdout.is_empty(), "--fail prints no body");

    let run = request(&fpm, &missing, &["--fail", "--json"]);
    run.expect_code(22);
    assert_eq!(run.json()["status"], 404);

    let ok = request(&fpm, &script(&fpm, "hello.php"), &["--fail"]);
    ok.expect_code(0);
}

#[test]
fn fatal_error_is_a_500_with_the_message_on_stderr() {
    let fpm = PhpFpm::start();
    let run = request(&fpm, &script(&fpm, "fatal.php"), &["--fail"]);
    let line = run.expect_code(22);
    assert!(line.contains("500"), "{line}");
    assert!(
        run.stderr.contains("fcgi_testkit_undefined_function"),
        "{}",
        run.stderr
    );
}

#[test]
fn verbose_prints_address_params_head_and_one_line_per_record() {
    let fpm = PhpFpm::start();
    let path = script(&fpm, "hello.php");
    let run = request(&fpm, &path, &["-v"]);
    run.expect_code(0);
    assert_eq!(run.stdout, b"Hello, World!");
    let err = &run.stderr;
    assert!(
        err.contains(&format!("* address {}", fpm.unix_address())),
        "{err}"
    );
    assert!(
        err.contains(&format!("> SCRIPT_FILENAME={path}\n")),
        "{err}"
    );
    assert!(err.contains("> QUERY_STRING=\n"), "{err}");
    assert!(
        err.contains("* record: send BEGIN_REQUEST id=1 len=8\n"),
        "{err}"
    );
    assert!(err.contains("* record: send PARAMS id=1 len=0\n"), "{err}");
    assert!(err.contains("* record: send STDIN id=1 len=0\n"), "{err}");
    assert!(err.contains("* record: recv STDOUT id=1 len="), "{err}");
    assert!(
        err.contains("* record: recv END_REQUEST id=1 len=8\n"),
        "{err}"
    );
    assert!(err.contains("< 200 OK\n"), "{err}");
}

#[test]
fn timeout_limits_the_whole_request() {
    let fpm = PhpFpm::start();
    let started = std::time::Instant::now();
    let run = request(
        &fpm,
        &format!("{}?ms=3000", script(&fpm, "sleep.php")),
        &["--timeout", "0.4"],
    );
    let line = run.expect_code(4);
    assert!(line.contains("timed out"), "{line}");
    assert!(line.contains("--timeout"), "{line}");
    assert!(started.elapsed() < std::time::Duration::from_millis(2500));
    let run = request(
        &fpm,
        &format!("{}?ms=50", script(&fpm, "sleep.php")),
        &["--timeout", "5"],
    );
    run.expect_code(0);
    assert_eq!(run.stdout, b"slept");
}

#[test]
fn max_header_bytes_limits_the_head() {
    let fpm = PhpFpm::start();
    let path = script(&fpm, "headers.php");
    let run = request(&fpm, &path, &["--max-header-bytes", "20"]);
    let line = run.expect_code(7);
    assert!(line.contains("--max-header-bytes"), "{line}");
    let run = request(&fpm, &path, &["--max-header-bytes", "4096"]);
    run.expect_code(0);
}

#[test]
fn ping_answers_pong() {
    let fpm = PhpFpm::start();
    for addr in fpm.addresses() {
        let run = fcgi(&["ping", &addr]);
        run.expect_code(0);
        assert!(
            run.stdout_text().starts_with("pong from "),
            "{}",
            run.stdout_text()
        );
    }
}

#[test]
fn ping_fails_on_a_wrong_path_or_answer() {
    let fpm = PhpFpm::start();
    let run = fcgi(&["ping", &fpm.unix_address(), "--path", "/nope"]);
    let line = run.expect_code(1);
    assert!(line.contains("404"), "{line}");
    assert!(line.contains("ping.path"), "{line}");
    let run = fcgi(&["ping", &fpm.unix_address(), "--expect", "ok"]);
    let line = run.expect_code(1);
    assert!(line.contains("\"pong\""), "{line}");
    let run = fcgi(&[
        "ping",
        &fpm.unix_address(),
        "--path",
        "/ping",
        "--expect",
        "pong",
        "-v",
    ]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("> SCRIPT_NAME=/ping\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn status_shows_the_pool_figures() {
    let fpm = PhpFpm::start();
    let run = fcgi(&["status", &fpm.unix_address()]);
    run.expect_code(0);
    let text = run.stdout_text();
    for figure in [
        "pool:",
        "process manager:",
        "accepted conn:",
        "idle processes:",
        "total processes:",
    ] {
        assert!(text.contains(figure), "{figure} in {text}");
    }
    assert!(!text.contains("processes ("), "{text}");

    let run = fcgi(&["status", &fpm.unix_address(), "--full"]);
    run.expect_code(0);
    assert!(
        run.stdout_text().contains("processes (4):\npid"),
        "{}",
        run.stdout_text()
    );
}

#[test]
fn status_json_passes_php_fpm_json_through() {
    let fpm = PhpFpm::start();
    let run = fcgi(&["status", &fpm.tcp_address(), "--json"]);
    run.expect_code(0);
    let json = run.json();
    assert_eq!(json["pool"], "tcp");
    assert_eq!(json["total processes"], 4);
    assert!(json.get("processes").is_none());
    let run = fcgi(&["status", &fpm.tcp_address(), "--json", "--full"]);
    run.expect_code(0);
    assert_eq!(run.json()["processes"].as_array().unwrap().len(), 4);
}

#[test]
fn status_on_a_wrong_path_fails_clearly() {
    let fpm = PhpFpm::start();
    let run = fcgi(&["status", &fpm.unix_address(), "--path", "/nope"]);
    let line = run.expect_code(1);
    assert!(line.contains("pm.status_path"), "{line}");
}

#[test]
fn values_shows_what_php_fpm_answered_and_left_out() {
    let fpm = PhpFpm::start();
    let run = fcgi(&["values", &fpm.unix_address()]);
    run.expect_code(0);
    assert_eq!(
        run.stdout_text(),
        "FCGI_MPXS_CONNS=0\nnot answered: FCGI_MAX_CONNS, FCGI_MAX_REQS\n"
    );
    let run = fcgi(&["values", &fpm.unix_address(), "--json", "-v"]);
    run.expect_code(0);
    let json = run.json();
    assert_eq!(json["values"]["FCGI_MPXS_CONNS"], "0");
    assert_eq!(
        json["missing"],
        serde_json::json!(["FCGI_MAX_CONNS", "FCGI_MAX_REQS"])
    );
    assert!(
        run.stderr.contains("* record: send GET_VALUES id=0"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("* record: recv GET_VALUES_RESULT id=0 pairs=1"),
        "{}",
        run.stderr
    );
}

#[test]
fn discovery_finds_a_php_socket_and_says_so() {
    let fpm = PhpFpm::start();
    let dir = tempfile::tempdir().unwrap();
    let sock = fpm.unix_address();
    let sock = sock.strip_prefix("unix:").unwrap();
    std::os::unix::fs::symlink(sock, dir.path().join("php8.2-fpm.sock")).unwrap();
    let dirs = dir.path().display().to_string();
    let env = [("FCGI_DISCOVERY_DIRS", dirs.as_str())];
    let run = fcgi_with(
        &["request", &script(&fpm, "hello.php"), "-v"],
        Stdio::null(),
        None,
        &env,
    );
    run.expect_code(0);
    assert_eq!(run.stdout, b"Hello, World!");
    assert!(
        run.stderr.contains("php8.2-fpm.sock (discovered"),
        "{}",
        run.stderr
    );
    for sub in ["ping", "status", "values"] {
        fcgi_with(&[sub], Stdio::null(), None, &env).expect_code(0);
    }
}

#[test]
fn a_large_param_reaches_the_script_whole() {
    let fpm = PhpFpm::start();
    let value = "x".repeat(60_000);
    let run = request(
        &fpm,
        &script(&fpm, "params.php"),
        &["-p", &format!("P_BIG={value}")],
    );
    run.expect_code(0);
    assert_eq!(run.json()["P_BIG"][0], 60_000);
    assert_eq!(
        run.json()["P_BIG"][1],
        Value::from(sha256_hex(value.as_bytes()))
    );
}
