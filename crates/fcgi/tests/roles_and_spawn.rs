//! The Authorizer and Filter roles (against fakes that implement them and
//! against php-fpm), and spawning a FastCGI application (Debian's php-cgi).

use std::io::Write;
use std::time::{Duration, Instant};

use fcgi::spawn::{SpawnOptions, SpawnedApp};
use fcgi::{Authorization, Client, Error, Params, Request, Role};
use fcgi_testkit::fake;
use fcgi_testkit::{pattern, FakeServer, PhpFpm};

fn fake_authorizer() -> FakeServer {
    FakeServer::tcp(fake::authorizer())
}

fn fake_filter() -> FakeServer {
    FakeServer::tcp(fake::filter())
}

#[test]
fn authorizer_grants_and_returns_variables_for_the_next_request() {
    let server = fake_authorizer();
    let client = Client::new(server.address().as_str()).unwrap();
    let outcome = client
        .authorize(Request::get("/auth").param("REMOTE_USER", "ann"))
        .unwrap();
    let Authorization::Granted { variables, .. } = &outcome else {
        panic!("denied: {outcome:?}")
    };
    assert_eq!(
        variables,
        &[
            ("USER_ID".into(), b"42".to_vec()),
            ("ROLE".into(), b"admin".to_vec())
        ]
    );
    let mut next = Params::new();
    outcome.apply_to(&mut next);
    assert_eq!(next.get("ROLE"), Some(&b"admin"[..]));
    assert!(server.handler_panics().is_empty());
}

#[test]
fn authorizer_denial_returns_the_servers_response() {
    let server = fake_authorizer();
    let client = Client::new(server.address().as_str()).unwrap();
    match client
        .authorize(Request::get("/auth").param("REMOTE_USER", "bob"))
        .unwrap()
    {
        Authorization::Denied(response) => {
            assert_eq!(
                (response.status, response.body.as_slice()),
                (403, &b"not you"[..])
            );
        }
        granted => panic!("granted: {granted:?}"),
    }
}

#[test]
fn filter_sends_the_file_on_data_with_its_length_and_date() {
    let server = fake_filter();
    let client = Client::new(server.address().as_str()).unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = pattern(300_000).iter().map(|b| b'a' + b % 26).collect();
    file.write_all(&data).unwrap();
    let modified = std::fs::metadata(file.path()).unwrap().modified().unwrap();
    let since_epoch = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let request = Request::get("/filter")
        .into_filter_file(file.path())
        .unwrap();
    let response = client.execute(request).unwrap();
    assert_eq!(response.headers.get("X-Role"), Some("3"));
    assert_eq!(response.headers.get("X-Data-Length"), Some("300000"));
    assert_eq!(
        response.headers.get("X-Data-Last-Mod"),
        Some(since_epoch.to_string().as_str())
    );
    assert_eq!(response.headers.get("X-Stdin"), Some("0"));
    assert_eq!(response.body, data.to_ascii_uppercase());
}

#[test]
fn small_filter_data_in_memory_goes_inline() {
    let server = fake_filter();
    let client = Client::new(server.address().as_str()).unwrap();
    let request =
        Request::post("/filter", "text/plain", "in").into_filter("abc", 3, std::time::UNIX_EPOCH);
    let response = client.execute(request).unwrap();
    assert_eq!(response.body, b"ABC");
    assert_eq!(response.headers.get("X-Stdin"), Some("2"));
}

#[test]
fn php_fpm_runs_authorizer_requests_with_fcgi_role_set() {
    let fpm = PhpFpm::builder()
        .script("role.php", "<?php echo $_SERVER['FCGI_ROLE'];")
        .start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let script = fpm.script("role.php").to_string_lossy().into_owned();
    let outcome = client.authorize(Request::get(&script)).unwrap();
    let Authorization::Granted { response, .. } = outcome else {
        panic!("denied")
    };
    assert_eq!(response.body, b"AUTHORIZER");
    let responder = client
        .execute(Request::get(&script).role(Role::Responder))
        .unwrap();
    assert_eq!(responder.body, b"RESPONDER");
}

fn php_cgi() -> &'static str {
    if std::process::Command::new("php-cgi")
        .arg("-v")
        .output()
        .is_err()
    {
        panic!("php-cgi not found: install it with `apt-get install -y --no-install-recommends php-cgi` (scripts/test does)");
    }
    "php-cgi"
}

#[test]
fn spawned_php_cgi_runs_a_script_and_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hi.php");
    std::fs::write(
        &script,
        "<?php header('X-Sapi: ' . PHP_SAPI); echo 'hi from ', getenv('GREETING');",
    )
    .unwrap();
    let options = SpawnOptions::default()
        .env("PHP_FCGI_CHILDREN", "0")
        .env("GREETING", "spawn");
    let mut app = SpawnedApp::start(php_cgi(), &[] as &[&str], options).unwrap();
    let socket = app.socket_path().to_path_buf();
    let client = app.client().unwrap();
    for _ in 0..3 {
        let response = client
            .execute(Request::get(&script.to_string_lossy()))
            .unwrap();
        assert_eq!(response.headers.get("X-Sapi"), Some("cgi-fcgi"));
        assert_eq!(response.body, b"hi from spawn");
    }
    app.stop().unwrap();
    assert!(app.check_running().is_err());
    drop(app);
    assert!(!socket.exists(), "socket removed");
}

#[test]
fn a_command_that_cannot_start_says_so() {
    let err =
        SpawnedApp::start("/no/such/program", &[] as &[&str], SpawnOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("cannot start it"), "{err}");
}

#[test]
fn a_command_that_exits_at_once_is_not_taken_for_an_application() {
    let err = SpawnedApp::start("true", &[] as &[&str], SpawnOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("exited right after starting"),
        "{err}"
    );
}

#[test]
fn an_application_ignoring_sigterm_is_killed_after_the_grace_period() {
    let options = SpawnOptions::default().stop_grace(Duration::from_millis(300));
    let mut app = SpawnedApp::start("sh", &["-c", "trap '' TERM; sleep 30"], options).unwrap();
    let started = Instant::now();
    let status = app.stop().unwrap();
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(10), "stop hung");
}

#[test]
fn php_fpm_runs_filter_requests_with_fcgi_role_and_data_params() {
    let fpm = PhpFpm::builder()
        .script(
            "filter.php",
            "<?php echo $_SERVER['FCGI_ROLE'], ' ', $_SERVER['FCGI_DATA_LENGTH'], ' ', file_get_contents('php://input');",
        )
        .start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let script = fpm.script("filter.php").to_string_lossy().into_owned();
    let request = Request::post(&script, "text/plain", "stdin").into_filter(
        "file data",
        9,
        std::time::UNIX_EPOCH,
    );
    let response = client.execute(request).unwrap();
    // php-fpm runs the script in the Filter role; PHP reads STDIN only.
    assert_eq!(response.body_text(), "FILTER 9 stdin");
}
