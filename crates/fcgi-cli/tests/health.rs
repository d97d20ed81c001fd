//! End-to-end: `fcgi health` against private php-fpm pools, healthy and
//! made unhealthy on purpose (busy workers, slow requests, missing pages).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{fcgi, Run};
use fcgi_testkit::PhpFpm;

/// How long a setup condition (a busy worker, a queued request) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `fcgi request ADDR sleep.php?ms=MS` in a thread.
fn sleep_request(fpm: &PhpFpm, addr: String, ms: u32) -> thread::JoinHandle<Run> {
    let script = format!("{}?ms={ms}", fpm.script("sleep.php").display());
    thread::spawn(move || fcgi(&["request", &addr, &script]))
}

/// Waits until the status page at `addr` shows `field` at least `value`.
fn wait_for(addr: &str, field: &str, value: u64) {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let run = fcgi(&["status", addr, "--format", "json"]);
        run.expect_code(0);
        if run.json()[field].as_u64().unwrap_or(0) >= value {
            return;
        }
        assert!(Instant::now() < deadline, "{field} never reached {value}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_healthy_pool_exits_0_with_one_line_of_figures() {
    let fpm = PhpFpm::start();
    for addr in fpm.addresses() {
        let run = fcgi(&[
            "health",
            &addr,
            "--max-listen-queue",
            "0",
            "--min-idle",
            "1",
            // The status request itself is not counted as active.
            "--max-active-ratio",
            "0",
        ]);
        run.expect_code(0);
        let text = run.stdout_text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("healthy: "), "{text}");
        assert!(text.contains("idle 4 of 4"), "{text}");
    }
}

#[test]
fn too_few_idle_workers_is_exit_11() {
    let fpm = PhpFpm::builder().max_children(2).start();
    let line = fcgi(&["health", &fpm.unix_address(), "--min-idle", "3"]).expect_code(11);
    assert!(
        line.contains("unhealthy: idle processes 2 < --min-idle 3"),
        "{line}"
    );
}

#[test]
fn a_busy_share_over_the_ratio_is_exit_12() {
    let fpm = PhpFpm::builder()
        .max_children(2)
        .status_listen(true)
        .start();
    let busy = sleep_request(&fpm, fpm.unix_address(), 2000);
    let status = fpm.unix_status_address();
    wait_for(&status, "active processes", 1);
    let line = fcgi(&["health", &status, "--max-active-ratio", "0.4"]).expect_code(12);
    assert!(line.contains("active processes 1/2"), "{line}");
    fcgi(&["health", &status, "--max-active-ratio", "0.5"]).expect_code(0);
    busy.join().unwrap().expect_code(0);
}

#[test]
fn connections_waiting_for_a_worker_are_exit_10() {
    // One worker, busy; a second request waits in the TCP listen queue. The
    // status page answers through pm.status_listen all the same.
    let fpm = PhpFpm::builder()
        .max_children(1)
        .status_listen(true)
        .start();
    let first = sleep_request(&fpm, fpm.tcp_address(), 2000);
    let status = fpm.tcp_status_address();
    wait_for(&status, "active processes", 1);
    let queued = sleep_request(&fpm, fpm.tcp_address(), 0);
    wait_for(&status, "listen queue", 1);
    let line = fcgi(&["health", &status, "--max-listen-queue", "0"]).expect_code(10);
    assert!(
        line.contains("listen queue 1 > --max-listen-queue 0"),
        "{line}"
    );
    first.join().unwrap().expect_code(0);
    queued.join().unwrap().expect_code(0);
}

#[test]
fn new_slow_requests_since_the_last_check_are_exit_13() {
    let fpm = PhpFpm::builder()
        .pool_config("request_slowlog_timeout", "1s")
        .pool_config("slowlog", "/proc/self/fd/2")
        .start();
    let state = fpm.temp_dir().join("health.state");
    let state = state.display().to_string();
    let addr = fpm.unix_address();
    let check = || {
        fcgi(&[
            "health",
            &addr,
            "--max-slow-requests",
            "0",
            "--state-file",
            &state,
        ])
    };
    // The first check records the counters.
    let first = check();
    first.expect_code(0);
    assert!(
        first.stdout_text().contains("counters recorded"),
        "{}",
        first.stdout_text()
    );
    sleep_request(&fpm, addr.clone(), 1500)
        .join()
        .unwrap()
        .expect_code(0);
    let line = check().expect_code(13);
    assert!(
        line.contains("1 new slow requests since the last check"),
        "{line}"
    );
    // The same slow request does not fail the next check.
    let calm = check();
    calm.expect_code(0);
    assert!(
        calm.stdout_text().contains("slow requests +0"),
        "{}",
        calm.stdout_text()
    );
}

#[test]
fn a_pool_without_ping_or_status_page_is_exit_1_naming_the_setting() {
    let no_ping = PhpFpm::builder().ping_path("").start();
    let line = fcgi(&["health", &no_ping.unix_address()]).expect_code(1);
    assert!(line.contains("ping.path"), "{line}");
    let no_status = PhpFpm::builder().status_path("").start();
    let line = fcgi(&["health", &no_status.unix_address()]).expect_code(1);
    assert!(line.contains("pm.status_path"), "{line}");
}

#[test]
fn health_json_reports_the_failed_checks() {
    let fpm = PhpFpm::builder().max_children(2).start();
    let run = fcgi(&["health", &fpm.tcp_address(), "--min-idle", "5", "--json"]);
    run.expect_code(11);
    let json = run.json();
    assert_eq!(json["healthy"], false);
    assert_eq!(json["total"], 2);
    assert_eq!(json["failed"][0]["code"], 11);
}
