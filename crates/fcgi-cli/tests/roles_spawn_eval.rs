//! End-to-end: `fcgi request --role authorizer|filter`, `--spawn`, and
//! `fcgi eval`, against fakes implementing the roles, a private php-fpm,
//! and Debian's php-cgi.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fcgi, Run};
use fcgi_testkit::fake;
use fcgi_testkit::{FakeServer, PhpFpm};

/// Exit code of a denied authorization.
const DENIED: i32 = 8;
/// Exit code of a PHP fatal error in `fcgi eval`.
const PHP_FATAL: i32 = 9;

fn fake_authorizer() -> FakeServer {
    FakeServer::tcp(fake::authorizer())
}

fn fake_filter() -> FakeServer {
    FakeServer::tcp(fake::filter())
}

/// Runs `fcgi ARGS` in directory `dir`.
fn fcgi_in(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run the fcgi binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `fcgi request ADDRESS SCRIPT --role ROLE EXTRA...`.
fn request_as(role: &str, address: &str, script: &str, extra: &[&str]) -> Run {
    let mut args = vec!["request", address, script, "--role", role];
    args.extend_from_slice(extra);
    fcgi(&args)
}

/// `fcgi eval ADDRESS ARGS... --tmp-dir TMP_DIR`: the code (or `-f FILE`)
/// and any other option in `args`.
fn eval_via(address: &str, tmp_dir: &str, args: &[&str]) -> Run {
    let mut all = vec!["eval", address];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--tmp-dir", tmp_dir]);
    fcgi(&all)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---- Authorizer ----

#[test]
fn authorizer_granted_prints_the_variables_and_exits_0() {
    let server = fake_authorizer();
    let run = request_as(
        "authorizer",
        &server.address(),
        "/auth.php",
        &["-p", "REMOTE_USER=ann"],
    );
    run.expect_code(0);
    assert_eq!(run.stdout_text(), "USER_ID=42\nROLE=admin\n");
    assert!(server.handler_panics().is_empty());
}

#[test]
fn authorizer_granted_json_has_a_variables_array() {
    let server = fake_authorizer();
    let run = request_as(
        "authorizer",
        &server.address(),
        "/auth.php",
        &["-p", "REMOTE_USER=ann", "--json"],
    );
    run.expect_code(0);
    let json = run.json();
    assert_eq!(json["authorized"], true);
    assert_eq!(json["status"], 200);
    assert_eq!(
        json["variables"],
        serde_json::json!([["USER_ID", "42"], ["ROLE", "admin"]])
    );
}

#[test]
fn authorizer_denied_prints_the_response_and_exits_8() {
    let server = fake_authorizer();
    let run = request_as(
        "authorizer",
        &server.address(),
        "/auth.php",
        &["-p", "REMOTE_USER=bob", "-i"],
    );
    let line = run.expect_code(DENIED);
    assert!(line.contains("denied") && line.contains("403"), "{line}");
    let text = run.stdout_text();
    assert!(text.starts_with("403 Forbidden\n"), "{text}");
    assert!(text.ends_with("\n\nnot you"), "{text}");
}

#[test]
fn authorizer_denied_json_says_not_authorized() {
    let server = fake_authorizer();
    let run = request_as("authorizer", &server.address(), "/auth.php", &["--json"]);
    run.expect_code(DENIED);
    let json = run.json();
    assert_eq!(json["authorized"], false);
    assert_eq!(json["status"], 403);
    assert_eq!(json["body"], "not you");
    assert!(json.get("variables").is_none());
}

#[test]
fn authorizer_with_a_body_is_a_usage_error() {
    let run = request_as("authorizer", "127.0.0.1:1", "/auth.php", &["-d", "x=1"]);
    let line = run.expect_code(2);
    assert!(line.contains("no body"), "{line}");
}

#[test]
fn php_fpm_sees_fcgi_role_authorizer() {
    let fpm = PhpFpm::builder()
        .script(
            "auth.php",
            "<?php if (($_SERVER['REMOTE_USER'] ?? '') === 'ann') { header('Variable-ROLE: ' . $_SERVER['FCGI_ROLE']); } else { http_response_code(401); echo 'denied in ', $_SERVER['FCGI_ROLE']; }",
        )
        .start();
    let script = fpm.script("auth.php").display().to_string();
    let granted = request_as(
        "authorizer",
        &fpm.unix_address(),
        &script,
        &["-p", "REMOTE_USER=ann"],
    );
    granted.expect_code(0);
    assert_eq!(granted.stdout_text(), "ROLE=AUTHORIZER\n");

    let denied = request_as("authorizer", &fpm.unix_address(), &script, &[]);
    denied.expect_code(DENIED);
    assert_eq!(denied.stdout_text(), "denied in AUTHORIZER");
}

// ---- Filter ----

#[test]
fn filter_streams_the_file_on_data_with_its_length_and_date() {
    let server = fake_filter();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    file.write_all(&data).unwrap();
    let modified = fs::metadata(file.path())
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let path = file.path().display().to_string();
    let run = request_as(
        "filter",
        &server.address(),
        "/filter.php",
        &["--filter-data", &path, "-i"],
    );
    run.expect_code(0);
    let text = run.stdout_text();
    let (head, body) = text.split_once("\n\n").expect("a head");
    assert!(head.contains("\nX-Role: 3"), "{head}");
    assert!(head.contains("\nX-Data-Length: 200000"), "{head}");
    assert!(
        head.contains(&format!("\nX-Data-Last-Mod: {modified}")),
        "{head}"
    );
    assert!(head.contains("\nX-Stdin: 0"), "{head}");
    assert_eq!(body.as_bytes(), data.to_ascii_uppercase());
}

#[test]
fn php_fpm_sees_fcgi_role_filter_and_the_data_length() {
    let fpm = PhpFpm::builder()
        .script(
            "filter.php",
            "<?php echo $_SERVER['FCGI_ROLE'], ' ', $_SERVER['FCGI_DATA_LENGTH'];",
        )
        .start();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"twelve bytes").unwrap();
    let run = request_as(
        "filter",
        &fpm.unix_address(),
        &fpm.script("filter.php").display().to_string(),
        &["--filter-data", &file.path().display().to_string()],
    );
    run.expect_code(0);
    assert_eq!(run.stdout_text(), "FILTER 12");
}

#[test]
fn filter_options_must_go_together() {
    let line = fcgi(&["request", "127.0.0.1:1", "/f.php", "--role", "filter"]).expect_code(2);
    assert!(line.contains("--filter-data"), "{line}");
    let line = fcgi(&[
        "request",
        "127.0.0.1:1",
        "/f.php",
        "--filter-data",
        "/etc/hostname",
    ])
    .expect_code(2);
    assert!(line.contains("--role filter"), "{line}");
    let line = request_as(
        "filter",
        "127.0.0.1:1",
        "/f.php",
        &["--filter-data", "/no/such/file"],
    )
    .expect_code(2);
    assert!(line.contains("/no/such/file"), "{line}");
}

// ---- --spawn ----

#[test]
fn spawn_php_cgi_runs_a_script_with_no_daemon() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("hello.php"),
        "<?php echo 'hello from ', PHP_SAPI, ' ', $_GET['x'] ?? '';",
    )
    .unwrap();
    // A relative SCRIPT is found in the current directory.
    let run = fcgi_in(
        dir.path(),
        &["request", "--spawn", "php-cgi", "hello.php?x=1"],
    );
    run.expect_code(0);
    assert_eq!(run.stdout_text(), "hello from cgi-fcgi 1");
}

#[test]
fn spawn_splits_the_command_line_as_a_shell_would() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ini.php");
    fs::write(&script, "<?php echo ini_get('memory_limit');").unwrap();
    let run = fcgi(&[
        "request",
        "--spawn",
        "php-cgi -d 'memory_limit=77M'",
        &script.display().to_string(),
    ]);
    run.expect_code(0);
    assert_eq!(run.stdout_text(), "77M");
}

#[test]
fn spawn_of_a_missing_program_exits_3() {
    let line = fcgi(&["request", "--spawn", "/no/such/program", "/x.php"]).expect_code(3);
    assert!(line.contains("cannot start"), "{line}");
    let line = fcgi(&["request", "--spawn", "true", "/x.php"]).expect_code(3);
    assert!(line.contains("exited right after starting"), "{line}");
}

#[test]
fn spawn_with_an_address_is_a_usage_error() {
    let line = fcgi(&["request", "127.0.0.1:9000", "/x.php", "--spawn", "php-cgi"]).expect_code(2);
    assert!(line.contains("--spawn"), "{line}");
}

// ---- eval ----

#[test]
fn eval_prints_what_the_code_printed() {
    let fpm = PhpFpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let tmp_dir = tmp.path().display().to_string();
    for address in [fpm.unix_address(), fpm.tcp_address()] {
        let run = eval_via(&address, &tmp_dir, &["echo PHP_SAPI, ' ', 6 * 7;"]);
        run.expect_code(0);
        assert_eq!(run.stdout_text(), "fpm-fcgi 42", "{address}");
    }
}

#[test]
fn eval_runs_a_file_and_keeps_its_opening_tag() {
    let fpm = PhpFpm::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("code.php");
    fs::write(&file, "<?php\necho 'from a file';\n").unwrap();
    let run = eval_via(
        &fpm.unix_address(),
        &dir.path().display().to_string(),
        &["-f", &file.display().to_string()],
    );
    run.expect_code(0);
    assert_eq!(run.stdout_text(), "from a file");
}

#[test]
fn eval_fatal_error_exits_9_with_the_message_on_stderr() {
    let fpm = PhpFpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let run = eval_via(
        &fpm.unix_address(),
        &tmp.path().display().to_string(),
        &["echo 'before'; undefined_function();"],
    );
    let line = run.expect_code(PHP_FATAL);
    assert!(line.contains("fatal error"), "{line}");
    assert!(
        run.stderr
            .contains("Call to undefined function undefined_function()"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout_text().contains("Call to undefined"));
    assert!(names_in(tmp.path()).is_empty(), "temporary script left");
}

#[test]
fn eval_fatal_error_shown_in_the_output_exits_9_too() {
    let fpm = PhpFpm::builder()
        .ini("display_errors", "On")
        .ini("log_errors", "Off")
        .start();
    let tmp = tempfile::tempdir().unwrap();
    let run = eval_via(
        &fpm.unix_address(),
        &tmp.path().display().to_string(),
        &["undefined_function();"],
    );
    run.expect_code(PHP_FATAL);
}

#[test]
fn eval_parse_error_exits_9() {
    let fpm = PhpFpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let run = eval_via(
        &fpm.unix_address(),
        &tmp.path().display().to_string(),
        &["echo 'unclosed;"],
    );
    run.expect_code(PHP_FATAL);
    assert!(run.stderr.contains("Parse error"), "{}", run.stderr);
}

#[test]
fn eval_removes_its_temporary_script() {
    let fpm = PhpFpm::start();
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("keep.txt"), "x").unwrap();
    let before = names_in(tmp.path());
    let run = eval_via(
        &fpm.unix_address(),
        &tmp.path().display().to_string(),
        &["echo basename(__FILE__), ' ', decoct(fileperms(__FILE__) & 0777);"],
    );
    run.expect_code(0);
    let text = run.stdout_text();
    let (name, mode) = text.split_once(' ').unwrap();
    assert!(
        name.starts_with("fcgi-eval-") && name.ends_with(".php"),
        "{text}"
    );
    assert_eq!(mode, "644");
    assert_eq!(names_in(tmp.path()), before);
}

#[test]
fn eval_removes_its_temporary_script_after_a_timeout() {
    let fpm = PhpFpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let run = eval_via(
        &fpm.unix_address(),
        &tmp.path().display().to_string(),
        &["sleep(3);", "--timeout", "0.5"],
    );
    run.expect_code(4);
    assert!(names_in(tmp.path()).is_empty(), "temporary script left");
}

#[test]
fn eval_interrupted_removes_its_temporary_script_and_exits_130() {
    let fpm = PhpFpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fcgi"))
        .args([
            "eval",
            &fpm.unix_address(),
            "sleep(20);",
            "--tmp-dir",
            &tmp.path().display().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the fcgi binary");
    let deadline = Instant::now() + Duration::from_secs(10);
    while names_in(tmp.path()).is_empty() {
        assert!(Instant::now() < deadline, "no temporary script appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The request is under way (the script sleeps); then Ctrl-C.
    std::thread::sleep(Duration::from_millis(300));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "fcgi eval did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(130));
    assert!(names_in(tmp.path()).is_empty(), "temporary script left");
}

#[test]
fn eval_strips_the_chroot_prefix_from_script_filename() {
    let fpm = PhpFpm::start();
    let root = tempfile::tempdir().unwrap();
    let real = tempfile::tempdir().unwrap();
    // A "chroot" that is the real root seen through a link: the file is
    // written under PREFIX/real, and the pool reads /real.
    let prefix = root.path().join("jail");
    std::os::unix::fs::symlink("/", &prefix).unwrap();
    let tmp_dir = format!("{}{}", prefix.display(), real.path().display());
    let run = eval_via(
        &fpm.unix_address(),
        &tmp_dir,
        &[
            "echo __FILE__;",
            "--chroot-prefix",
            &prefix.display().to_string(),
        ],
    );
    run.expect_code(0);
    let file = run.stdout_text();
    assert!(
        file.starts_with(&format!("{}/fcgi-eval-", real.path().display())),
        "{file}"
    );
    assert!(names_in(real.path()).is_empty());
}

#[test]
fn eval_says_when_the_pool_cannot_see_the_script() {
    let fpm = PhpFpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let sub = tmp.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let run = eval_via(
        &fpm.unix_address(),
        &sub.display().to_string(),
        &[
            "echo 1;",
            "--chroot-prefix",
            &tmp.path().display().to_string(),
        ],
    );
    let line = run.expect_code(1);
    assert!(line.contains("cannot find the temporary script"), "{line}");
    assert!(line.contains("--tmp-dir"), "{line}");
    assert!(names_in(&sub).is_empty());
}

#[test]
fn eval_with_spawn_runs_php_cgi() {
    let run = fcgi(&["eval", "--spawn", "php-cgi", "echo PHP_SAPI;"]);
    run.expect_code(0);
    assert_eq!(run.stdout_text(), "cgi-fcgi");
}

#[test]
fn eval_usage_errors() {
    let line = fcgi(&["eval"]).expect_code(2);
    assert!(line.contains("PHP code"), "{line}");
    let line = fcgi(&["eval", "127.0.0.1:9000"]).expect_code(2);
    assert!(line.contains("PHP CODE is missing"), "{line}");
    let line = fcgi(&["eval", "127.0.0.1:9000", "echo 1;", "-f", "/x.php"]).expect_code(2);
    assert!(line.contains("-f"), "{line}");
    let line = fcgi(&["eval", "-f", "/no/such.php", "127.0.0.1:1"]).expect_code(2);
    assert!(line.contains("/no/such.php"), "{line}");
    let line = fcgi(&["eval", "127.0.0.1:1", "echo 1;", "--spawn", "php-cgi"]).expect_code(2);
    assert!(line.contains("--spawn"), "{line}");
}

// ---- bench --spawn ----

#[test]
fn bench_with_spawn_drives_php_cgi_over_several_connections() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hi.php");
    fs::write(&script, "<?php echo 'hi';").unwrap();
    let run = fcgi(&[
        "bench",
        "--spawn",
        "php-cgi",
        &script.display().to_string(),
        "-c",
        "3",
        "-n",
        "600",
        "--json",
        "--fail-on-error",
        "--timeout",
        "10",
    ]);
    run.expect_code(0);
    let json = run.json();
    assert_eq!(json["successes"], 600, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    assert_eq!(json["status_counts"]["200"], 600, "{json}");
}

#[test]
fn bench_with_spawn_and_an_address_is_a_usage_error() {
    let line = fcgi(&[
        "bench",
        "127.0.0.1:9000",
        "/x.php",
        "--spawn",
        "php-cgi",
        "-n",
        "1",
    ])
    .expect_code(2);
    assert!(line.contains("--spawn"), "{line}");
}
