//! End-to-end: `fcgi doctor` against php-fpm pools configured wrong on
//! purpose, an HTTP server and nothing at all. Each test checks the
//! finding and the configuration line offered as its fix.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use common::{fcgi, Run};
use fcgi_testkit::{PhpFpm, PhpFpmBuilder};
use serde_json::Value;

/// `fcgi doctor ADDR ARGS... --json`: the run and its findings.
fn doctor(addr: &str, args: &[&str]) -> (Run, Vec<Value>) {
    let mut all = vec!["doctor", addr, "--json"];
    all.extend_from_slice(args);
    let run = fcgi(&all);
    let findings = run.json()["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (run, findings)
}

/// The findings of `check`.
fn of<'a>(findings: &'a [Value], check: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["check"] == check).collect()
}

/// The one finding of `check` at `level`.
fn one<'a>(findings: &'a [Value], check: &str, level: &str) -> &'a Value {
    let found: Vec<&Value> = of(findings, check)
        .into_iter()
        .filter(|f| f["level"] == level)
        .collect();
    assert_eq!(found.len(), 1, "{check} {level} in {findings:#?}");
    found[0]
}

fn fix(finding: &Value) -> &str {
    finding["fix"]
        .as_str()
        .unwrap_or_else(|| panic!("a fix in {finding}"))
}

fn root(fpm: &PhpFpm) -> String {
    fpm.doc_root().display().to_string()
}

#[test]
fn a_sound_pool_passes_every_check() {
    let fpm = PhpFpm::start();
    let (run, findings) = doctor(&fpm.tcp_address(), &["--root", &root(&fpm)]);
    run.expect_code(0);
    for check in [
        "fastcgi",
        "ping",
        "status",
        "script",
        "limit_extensions",
        "body",
        "params",
        "keep_alive",
    ] {
        assert!(
            of(&findings, check).iter().any(|f| f["level"] == "ok"),
            "{check} ok in {findings:#?}"
        );
    }
    assert!(
        findings.iter().all(|f| f["level"] != "fail"),
        "{findings:#?}"
    );
    assert_eq!(run.json()["problems"], 0);
    // The probe files are gone.
    let left: Vec<_> = std::fs::read_dir(fpm.doc_root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("fcgi-doctor-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_text_report_has_a_fix_line_under_each_problem() {
    let fpm = PhpFpmBuilder::default().ping_path("").start();
    let run = fcgi(&["doctor", &fpm.unix_address()]);
    run.expect_code(1);
    let text = run.stdout_text();
    assert!(text.contains("FAIL  ping"), "{text}");
    assert!(
        text.contains("\n        fix: ping.path = /ping\n"),
        "{text}"
    );
    assert!(text.contains("skip  script"), "{text}");
}

#[test]
fn nothing_listening_is_a_failure_naming_the_listen_line() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (run, findings) = doctor(&port.to_string(), &[]);
    run.expect_code(1);
    let f = one(&findings, "fastcgi", "fail");
    assert!(
        f["message"].as_str().unwrap().contains("nothing answers"),
        "{f}"
    );
    assert_eq!(fix(f), format!("listen = {port}"));
    assert_eq!(findings.len(), 1, "nothing else is checked: {findings:#?}");
}

#[test]
fn an_http_server_is_told_apart_from_fastcgi() {
    // Answers anything as a web server answers garbage: 400.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 512];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let (run, findings) = doctor(&addr, &[]);
    run.expect_code(1);
    let f = one(&findings, "fastcgi", "fail");
    assert!(
        f["message"].as_str().unwrap().contains("is an HTTP server"),
        "{f}"
    );
    assert!(fix(f).starts_with("listen = "), "{f}");
    server.join().unwrap();
}

#[test]
fn missing_ping_and_status_pages_get_their_settings() {
    let fpm = PhpFpmBuilder::default()
        .ping_path("")
        .status_path("")
        .start();
    let (run, findings) = doctor(&fpm.unix_address(), &[]);
    run.expect_code(1);
    assert_eq!(fix(one(&findings, "ping", "fail")), "ping.path = /ping");
    assert_eq!(
        fix(one(&findings, "status", "fail")),
        "pm.status_path = /status"
    );
}

#[test]
fn a_chrooted_pool_is_explained() {
    let fpm = PhpFpmBuilder::default().chroot_to_doc_root(true).start();
    let (run, findings) = doctor(&fpm.unix_address(), &["--root", &root(&fpm)]);
    run.expect_code(1);
    let f = one(&findings, "script", "fail");
    let message = f["message"].as_str().unwrap();
    assert!(message.contains("Primary script unknown"), "{message}");
    assert!(
        message.contains(&format!("chrooted to {}", root(&fpm))),
        "{message}"
    );
    assert!(
        fix(f).starts_with(&format!("chroot = {}", root(&fpm))),
        "{f}"
    );
}

#[test]
fn open_basedir_without_the_root_is_explained() {
    let fpm = PhpFpmBuilder::default()
        .ini("open_basedir", "/nonexistent-basedir")
        .start();
    let (run, findings) = doctor(&fpm.unix_address(), &["--root", &root(&fpm)]);
    run.expect_code(1);
    let f = one(&findings, "script", "fail");
    assert!(
        f["message"].as_str().unwrap().contains("open_basedir"),
        "{f}"
    );
    assert_eq!(
        fix(f),
        format!(
            "php_admin_value[open_basedir] = /nonexistent-basedir:{}",
            root(&fpm)
        )
    );
}

#[test]
fn a_directory_the_pool_user_cannot_search_is_named() {
    let fpm = PhpFpmBuilder::default().user("nobody").start();
    let locked = fpm.doc_root().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let locked_text = locked.display().to_string();
    let (run, findings) = doctor(&fpm.unix_address(), &["--root", &locked_text]);
    run.expect_code(1);
    let f = one(&findings, "script", "fail");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("cannot be searched"),
        "{f}"
    );
    assert!(
        fix(f).starts_with(&format!("chmod o+x {locked_text}")),
        "{f}"
    );
}

#[test]
fn any_extension_running_as_php_is_a_warning() {
    let fpm = PhpFpmBuilder::default()
        .pool_config("security.limit_extensions", ".php .txt")
        .start();
    let (run, findings) = doctor(&fpm.unix_address(), &["--root", &root(&fpm)]);
    run.expect_code(0);
    let f = one(&findings, "limit_extensions", "warn");
    assert_eq!(fix(f), "security.limit_extensions = .php");
}

#[test]
fn keep_alive_survives_pm_max_requests() {
    let fpm = PhpFpmBuilder::default()
        .max_children(1)
        .max_requests(5)
        .start();
    let (run, findings) = doctor(&fpm.unix_address(), &["--root", &root(&fpm)]);
    run.expect_code(0);
    let f = one(&findings, "keep_alive", "ok");
    let message = f["message"].as_str().unwrap();
    assert!(
        message.starts_with("20 requests on one kept connection all answered"),
        "{message}"
    );
    assert!(
        message.contains("was replaced (pm.max_requests)"),
        "{message}"
    );
}

#[test]
fn a_small_listen_backlog_gets_a_larger_one() {
    let fpm = PhpFpmBuilder::default()
        .pool_config("listen.backlog", "16")
        .start();
    let (run, findings) = doctor(&fpm.tcp_address(), &[]);
    run.expect_code(0);
    let f = one(&findings, "pool", "warn");
    assert!(
        f["message"].as_str().unwrap().contains("backlog is 16"),
        "{f}"
    );
    assert!(fix(f).starts_with("listen.backlog = 511"), "{f}");
}

#[test]
fn the_operator_commands_explain_themselves_in_help() {
    for (args, needles) in [
        (
            vec!["doctor", "--help"],
            vec!["Examples:", "fcgi doctor", "fix:", "--root"],
        ),
        (
            vec!["health", "--help"],
            vec!["Examples:", "fcgi health", "exit 10", "listen queue len"],
        ),
        (
            vec!["exporter", "--help"],
            vec![
                "Examples:",
                "fcgi exporter",
                "pm.status_listen",
                "--scrape-timeout",
            ],
        ),
        (
            vec!["status", "--help"],
            vec!["Examples:", "--format", "prometheus"],
        ),
        (
            vec!["eval", "--help"],
            vec!["--all-workers", "rendezvous", "--dynamic"],
        ),
        (
            vec!["bench", "--help"],
            vec!["--rate", "abandoned", "500ms"],
        ),
    ] {
        let run = fcgi(&args);
        run.expect_code(0);
        let text = run.stdout_text();
        for needle in needles {
            assert!(text.contains(needle), "{needle:?} in {args:?}: {text}");
        }
    }
}
