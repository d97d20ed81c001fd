//! End-to-end: `fcgi bench` against a private php-fpm and against a fake
//! server that fails some requests on purpose. Counts only, never timings.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::fcgi;
use fcgi_testkit::fake::{echo_stdin, serve};
use fcgi_testkit::{FakeServer, PhpFpm};
use serde_json::Value;

const SCRIPT: &str = "/srv/www/index.php";
/// php-fpm's and the fake server's protocol status OVERLOADED.
const OVERLOADED: u8 = 2;

fn n(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is not a count"))
}

/// Checks that the JSON report adds up: requests == successes + errors,
/// successes == sum of status counts, errors == sum of error kinds.
fn check_totals(report: &Value) {
    let requests = n(&report["requests"]);
    let successes = n(&report["successes"]);
    let errors = n(&report["errors"]);
    assert_eq!(requests, successes + errors, "{report}");
    let statuses: u64 = report["status_counts"]
        .as_object()
        .expect("status_counts")
        .values()
        .map(n)
        .sum();
    assert_eq!(statuses, successes, "{report}");
    let kinds: u64 = report["error_kinds"]
        .as_object()
        .expect("error_kinds")
        .values()
        .map(n)
        .sum();
    assert_eq!(kinds, errors, "{report}");
    for key in ["p50", "p90", "p99", "p999", "max", "min"] {
        assert!(report["latency_ms"][key].is_number(), "{key}: {report}");
    }
    assert!(report["rps"].is_number(), "{report}");
}

/// Runs `fcgi bench ARGS --json`, which must succeed, and gives its report
/// once [`check_totals`] found it adds up.
fn bench_json(args: &[&str]) -> Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = fcgi(&all);
    run.expect_code(0);
    let report = run.json();
    check_totals(&report);
    report
}

#[test]
fn bench_against_php_fpm_counts_every_request() {
    let fpm = PhpFpm::start();
    let script = fpm.script("hello.php").display().to_string();
    let report = bench_json(&[&fpm.unix_address(), &script, "-c", "2", "-n", "50"]);
    assert_eq!(n(&report["requests"]), 50);
    assert_eq!(n(&report["errors"]), 0);
    assert_eq!(n(&report["status_counts"]["200"]), 50);
    assert_eq!(n(&report["body_bytes"]), 50 * "Hello, World!".len() as u64);
}

#[test]
fn bench_counts_statuses_other_than_200_as_answered() {
    let fpm = PhpFpm::start();
    let missing = fpm.script("hello.php").with_file_name("missing.php");
    let report = bench_json(&[
        &fpm.tcp_address(),
        &missing.display().to_string(),
        "-c",
        "1",
        "-n",
        "5",
    ]);
    assert_eq!(n(&report["status_counts"]["404"]), 5);
}

#[test]
fn bench_text_report_names_the_figures() {
    let fpm = PhpFpm::start();
    let script = fpm.script("hello.php").display().to_string();
    let run = fcgi(&["bench", &fpm.unix_address(), &script, "-n", "10"]);
    run.expect_code(0);
    let text = run.stdout_text();
    for needle in [
        "10 requests in",
        "Requests/sec:",
        "Transfer/sec:",
        "p50",
        "p99.9",
        "Status codes: 200: 10",
        "Errors: 0",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
    // Not a terminal: no progress line on standard error.
    assert_eq!(run.stderr, "");
}

/// A keep-alive server whose answer depends on the request's number across
/// all connections: 0 mod 4 answers 200, 1 and 2 mod 4 end with OVERLOADED,
/// 3 mod 4 sends a record with a wrong protocol version.
fn flaky_server() -> FakeServer {
    let count = Arc::new(AtomicUsize::new(0));
    FakeServer::tcp(serve(move |conn, req| {
        match count.fetch_add(1, Ordering::SeqCst) % 4 {
            0 => conn.respond(req.id, b"Status: 200 OK\r\n\r\nok"),
            1 | 2 => conn.write_end(req.id, 0, OVERLOADED),
            _ => {
                conn.write_record(2, 6, req.id, b"Status: 200 OK\r\n\r\nhi", 0);
                conn.close();
            }
        }
    }))
}

#[test]
fn failed_requests_are_counted_by_kind() {
    let server = flaky_server();
    let report = bench_json(&[&server.address(), SCRIPT, "-c", "2", "-n", "16"]);
    assert_eq!(n(&report["requests"]), 16, "{report}");
    assert_eq!(n(&report["successes"]), 4, "{report}");
    assert_eq!(n(&report["status_counts"]["200"]), 4, "{report}");
    assert_eq!(n(&report["errors"]), 12, "{report}");
    assert_eq!(n(&report["error_kinds"]["rejected"]), 8, "{report}");
    assert_eq!(n(&report["error_kinds"]["protocol"]), 4, "{report}");
    let example = report["error_examples"]["rejected"].as_str().unwrap();
    assert!(example.contains("OVERLOADED"), "{example}");
}

#[test]
fn failures_show_in_the_text_report() {
    let server = flaky_server();
    let run = fcgi(&["bench", &server.address(), SCRIPT, "-n", "8"]);
    run.expect_code(0);
    let text = run.stdout_text();
    assert!(text.contains("Errors: 6"), "{text}");
    assert!(text.contains("rejected: 4 (first: "), "{text}");
    assert!(text.contains("protocol: 2 (first: "), "{text}");
}

#[test]
fn fail_on_error_exits_with_the_code_of_the_most_frequent_error() {
    let server = flaky_server();
    let run = fcgi(&[
        "bench",
        &server.address(),
        SCRIPT,
        "-n",
        "8",
        "--json",
        "--fail-on-error",
    ]);
    let line = run.expect_code(6);
    assert!(line.contains("6 of 8 requests failed"), "{line}");
    check_totals(&run.json());
}

#[test]
fn nothing_listening_is_counted_as_connect_errors() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:{}", dir.path().join("none.sock").display());
    let report = bench_json(&[&address, SCRIPT, "-c", "2", "-n", "6"]);
    assert_eq!(n(&report["error_kinds"]["connect"]), 6, "{report}");
}

#[test]
fn a_duration_bounds_the_run() {
    let server = FakeServer::unix(echo_stdin());
    let report = bench_json(&[&server.address(), SCRIPT, "-c", "2", "-d", "0.3"]);
    assert!(n(&report["requests"]) > 0, "{report}");
}

#[test]
fn the_body_options_of_request_are_sent_with_every_request() {
    let server = FakeServer::unix(echo_stdin());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.bin");
    std::fs::write(&file, vec![7u8; 100_000]).unwrap();
    let data = format!("@{}", file.display());
    let report = bench_json(&[
        &server.address(),
        SCRIPT,
        "--data",
        &data,
        "-c",
        "2",
        "-n",
        "6",
    ]);
    assert_eq!(n(&report["body_bytes"]), 6 * 100_000, "{report}");
}

#[test]
fn a_count_or_a_duration_is_required() {
    let run = fcgi(&["bench", "127.0.0.1:9", SCRIPT]);
    let line = run.expect_code(2);
    assert!(
        line.contains("--requests") || line.contains("--duration"),
        "{line}"
    );
}

#[test]
fn a_duration_takes_units() {
    let fpm = PhpFpm::start();
    let script = fpm.script("hello.php").display().to_string();
    let report = bench_json(&[&fpm.unix_address(), &script, "-d", "300ms"]);
    assert!(n(&report["requests"]) > 0, "{report}");
    assert!(report["duration_s"].as_f64().unwrap() <= 0.3, "{report}");
    let line = fcgi(&["bench", &fpm.unix_address(), &script, "-d", "10x"]).expect_code(2);
    assert!(line.contains("10x"), "{line}");
}

#[test]
fn requests_in_flight_at_the_end_are_abandoned_not_waited_for() {
    // One worker, two connections, a script that outlasts the run: the
    // first request holds the worker, the second waits behind it. A run
    // that waited for them would answer both (--timeout allows it).
    let fpm = PhpFpm::builder().max_children(1).start();
    let script = format!("{}?ms=3000", fpm.script("sleep.php").display());
    let report = bench_json(&[
        &fpm.tcp_address(),
        &script,
        "-c",
        "2",
        "-d",
        "500ms",
        "--timeout",
        "60",
    ]);
    assert_eq!(n(&report["abandoned"]), 2, "{report}");
    assert_eq!(n(&report["requests"]), 0, "{report}");
}

#[test]
fn rate_sends_on_schedule_and_counts_the_sends() {
    let fpm = PhpFpm::start();
    let script = fpm.script("hello.php").display().to_string();
    let report = bench_json(&[
        &fpm.unix_address(),
        &script,
        "-c",
        "2",
        "-n",
        "20",
        "--rate",
        "200",
    ]);
    assert_eq!(report["rate"], 200.0);
    assert_eq!(report["latency_from"], "intended send time");
    assert_eq!(n(&report["intended_requests"]), 20);
    assert_eq!(n(&report["missed_sends"]), 0);
    assert_eq!(n(&report["requests"]), 20);
    assert!(report["late_sends"].is_u64(), "{report}");
}

#[test]
fn rate_latency_includes_the_wait_for_a_busy_connection() {
    // 100 requests/s against one connection to a script that takes 100 ms:
    // the second request was due at 10 ms but could go out at 100 ms at
    // the earliest, so its latency is at least 190 ms, though the server
    // took 100 ms for it (no coordinated omission). Sends due when no
    // connection was free by the end are missed.
    let fpm = PhpFpm::builder().max_children(1).start();
    let script = format!("{}?ms=100", fpm.script("sleep.php").display());
    let report = bench_json(&[
        &fpm.unix_address(),
        &script,
        "-c",
        "1",
        "-d",
        "1s",
        "--rate",
        "100",
    ]);
    assert!(
        report["latency_ms"]["max"].as_f64().unwrap() >= 190.0,
        "{report}"
    );
    assert_eq!(n(&report["intended_requests"]), 100, "{report}");
    assert!(n(&report["missed_sends"]) >= 80, "{report}");
    assert!(n(&report["late_sends"]) >= 1, "{report}");
}

#[test]
fn the_json_report_without_rate_has_null_rate_fields() {
    let fpm = PhpFpm::start();
    let script = fpm.script("hello.php").display().to_string();
    let report = bench_json(&[&fpm.unix_address(), &script, "-n", "3"]);
    assert!(report["rate"].is_null());
    assert!(report["missed_sends"].is_null());
    assert_eq!(n(&report["abandoned"]), 0);
    assert_eq!(report["latency_from"], "send time");
}
