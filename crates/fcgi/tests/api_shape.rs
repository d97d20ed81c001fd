//! Both clients have the same shape (issue 16): a builder, `execute_with`
//! with per-request time limits, `execute_prepared`, `authorize`, and one
//! keep-alive setting ([`Config::keep_alive`]) that both honour. Against
//! the fake server, which records what it received, and php-fpm.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fcgi::{Authorization, Config, Error, Request, TimeoutPhase, Timeouts};
use fcgi_testkit::fake::{serve, silent};
use fcgi_testkit::{FakeServer, ReceivedRequest};

const SCRIPT: &str = "/srv/www/test.php";
/// FCGI_AUTHORIZER.
const AUTHORIZER_ROLE: u16 = 2;

/// Limits long enough that only a per-request one can fire in these tests.
fn config() -> Config {
    Config::default()
        .connect_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(20))
        .deadline(Duration::from_secs(20))
}

/// A per-request deadline much shorter than [`config`]'s.
fn short_deadline() -> Timeouts {
    config().timeouts.deadline(Duration::from_millis(200))
}

type Log = Arc<Mutex<Vec<ReceivedRequest>>>;

/// Answers "ok" to every request, and as an authorizer grants REMOTE_USER
/// "ann" (with a variable) and denies anyone else; records what it got.
fn recording_server() -> (FakeServer, Log) {
    let seen = Log::default();
    let log = Arc::clone(&seen);
    let server = FakeServer::tcp(serve(move |conn, req| {
        log.lock().unwrap().push(req.clone());
        let stdout: &[u8] = match (req.role, req.param_str("REMOTE_USER").as_deref()) {
            (AUTHORIZER_ROLE, Some("ann")) => b"Status: 200 OK\r\nVariable-USER_ID: 42\r\n\r\n",
            (AUTHORIZER_ROLE, _) => b"Status: 403 Forbidden\r\n\r\nno",
            _ => b"Content-Type: text/plain\r\n\r\nok",
        };
        conn.respond(req.id, stdout);
    }));
    (server, seen)
}

fn received(log: &Log) -> Vec<ReceivedRequest> {
    log.lock().unwrap().clone()
}

/// Fails an async test that would otherwise hang.
#[cfg(feature = "tokio")]
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("finished within 10 s")
}

/// `err` is the deadline of [`short_deadline`] passing.
fn assert_short_deadline_fired(err: &Error) {
    assert!(
        matches!(
            err,
            Error::Timeout { phase: TimeoutPhase::Deadline, after, .. }
                if *after == Duration::from_millis(200)
        ),
        "{err:?}"
    );
}

fn assert_granted_then_denied(granted: &Authorization, denied: &Authorization) {
    let Authorization::Granted { variables, .. } = granted else {
        panic!("ann was denied: {granted:?}");
    };
    assert_eq!(variables, &[("USER_ID".to_string(), b"42".to_vec())]);
    assert!(
        matches!(denied, Authorization::Denied(response) if response.status == 403),
        "{denied:?}"
    );
}

mod blocking {
    use super::*;
    use fcgi::blocking::Client;

    #[test]
    fn a_builder_built_client_executes_with_the_settings_given() {
        let (server, seen) = recording_server();
        let client = Client::builder()
            .upstream(server.address().as_str())
            .config(config())
            .keep_alive(true)
            .build()
            .unwrap();
        assert!(client.config().keep_alive);
        assert_eq!(client.config().timeouts, config().timeouts);
        for _ in 0..2 {
            let response = client.execute(Request::get(SCRIPT)).unwrap();
            assert_eq!(response.body, b"ok");
        }
        assert_eq!(server.connections(), 1);
        assert!(received(&seen).iter().all(|r| r.keep_conn));
    }

    #[test]
    fn a_builder_needs_exactly_one_valid_upstream() {
        assert!(matches!(
            Client::builder().build(),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            Client::builder().upstream("no-port").build(),
            Err(Error::InvalidAddress(_))
        ));
        let two = Client::builder()
            .upstream("127.0.0.1:9000")
            .upstream("127.0.0.1:9001")
            .build()
            .unwrap_err();
        assert!(two.to_string().contains("one upstream"), "{two}");
    }

    #[test]
    fn execute_with_applies_its_own_deadline() {
        let server = FakeServer::tcp(silent());
        let client = Client::with_config(server.address().as_str(), config()).unwrap();
        let err = client
            .execute_with(Request::get(SCRIPT), short_deadline())
            .unwrap_err();
        assert_short_deadline_fired(&err);
    }

    #[test]
    fn stream_with_applies_its_own_deadline() {
        let server = FakeServer::tcp(silent());
        let client = Client::with_config(server.address().as_str(), config()).unwrap();
        let err = client
            .stream_with(Request::get(SCRIPT), short_deadline())
            .unwrap_err();
        assert_short_deadline_fired(&err);
    }

    #[test]
    fn execute_prepared_sends_the_request_again_and_again() {
        let (server, seen) = recording_server();
        let client =
            Client::with_config(server.address().as_str(), config().keep_alive(true)).unwrap();
        let prepared = client
            .prepare(Request::get(SCRIPT).param("X_A", "1"))
            .unwrap();
        for _ in 0..2 {
            assert_eq!(client.execute_prepared(&prepared).unwrap().body, b"ok");
        }
        let seen = received(&seen);
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|r| r.param("X_A") == Some(&b"1"[..])));
        assert_ne!(
            seen[0].id, seen[1].id,
            "a new request id on the kept connection"
        );
        assert_eq!(server.connections(), 1);
    }

    #[test]
    fn authorize_grants_and_denies() {
        let (server, seen) = recording_server();
        let client = Client::with_config(server.address().as_str(), config()).unwrap();
        let granted = client
            .authorize(Request::get(SCRIPT).param("REMOTE_USER", "ann"))
            .unwrap();
        let denied = client
            .authorize(Request::get(SCRIPT).param("REMOTE_USER", "bob"))
            .unwrap();
        assert_granted_then_denied(&granted, &denied);
        assert!(received(&seen).iter().all(|r| r.role == AUTHORIZER_ROLE));
    }

    #[test]
    fn keep_alive_off_opens_a_connection_per_request() {
        let (server, seen) = recording_server();
        let client = Client::builder()
            .upstream(server.address().as_str())
            .config(config().keep_alive(false))
            .build()
            .unwrap();
        for _ in 0..3 {
            client.execute(Request::get(SCRIPT)).unwrap();
        }
        assert_eq!(server.connections(), 3);
        assert!(received(&seen).iter().all(|r| !r.keep_conn));
    }
}

#[cfg(feature = "tokio")]
mod nonblocking {
    use super::*;
    use fcgi::nonblocking::{Builder, Client, Multiplexing};

    /// A builder for `server`, one request per connection (no discovery
    /// connection to count).
    fn builder(server: &FakeServer) -> Builder {
        Client::builder()
            .upstream(server.address().as_str())
            .multiplexing(Multiplexing::Disabled)
    }

    async fn three_requests(client: &Client) {
        for _ in 0..3 {
            let response = within(client.execute(Request::get(SCRIPT))).await.unwrap();
            assert_eq!(response.body, b"ok");
        }
    }

    #[tokio::test]
    async fn keep_alive_off_in_the_config_opens_a_connection_per_request() {
        let (server, seen) = recording_server();
        let client = builder(&server)
            .config(config().keep_alive(false))
            .build()
            .unwrap();
        assert!(!client.config().keep_alive);
        three_requests(&client).await;
        assert_eq!(server.connections(), 3);
        let seen = received(&seen);
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|r| !r.keep_conn), "FCGI_KEEP_CONN was set");
    }

    #[tokio::test]
    async fn keep_alive_is_on_by_default_and_off_with_the_builder_setter() {
        let (kept, kept_seen) = recording_server();
        let client = builder(&kept).build().unwrap();
        assert!(client.config().keep_alive);
        three_requests(&client).await;
        assert_eq!(kept.connections(), 1);
        assert!(received(&kept_seen).iter().all(|r| r.keep_conn));

        let (closed, closed_seen) = recording_server();
        let client = builder(&closed)
            .config(config().keep_alive(true))
            .keep_alive(false)
            .build()
            .unwrap();
        three_requests(&client).await;
        assert_eq!(closed.connections(), 3);
        assert!(received(&closed_seen).iter().all(|r| !r.keep_conn));
    }

    #[tokio::test]
    async fn prepared_requests_follow_the_config_keep_alive() {
        let (server, seen) = recording_server();
        let client = builder(&server)
            .config(config().keep_alive(false))
            .build()
            .unwrap();
        let prepared = client.prepare(Request::get(SCRIPT)).unwrap();
        for _ in 0..2 {
            let response = within(client.execute_prepared(&prepared)).await.unwrap();
            assert_eq!(response.body, b"ok");
        }
        assert_eq!(server.connections(), 2);
        assert!(received(&seen).iter().all(|r| !r.keep_conn));
    }

    #[tokio::test]
    async fn the_builder_sets_time_and_size_limits() {
        let timeouts = short_deadline();
        let limits = fcgi::Limits::default().max_params(7);
        let client = Client::builder()
            .upstream("127.0.0.1:9000")
            .timeouts(timeouts)
            .limits(limits)
            .build()
            .unwrap();
        assert_eq!(client.config().timeouts, timeouts);
        assert_eq!(client.config().limits, limits);
    }

    #[tokio::test]
    async fn execute_with_applies_its_own_deadline() {
        let server = FakeServer::tcp(silent());
        let client = builder(&server).config(config()).build().unwrap();
        let err = within(client.execute_with(Request::get(SCRIPT), short_deadline()))
            .await
            .unwrap_err();
        assert_short_deadline_fired(&err);
    }

    #[tokio::test]
    async fn authorize_grants_and_denies() {
        let (server, seen) = recording_server();
        let client = builder(&server).config(config()).build().unwrap();
        let granted = within(client.authorize(Request::get(SCRIPT).param("REMOTE_USER", "ann")))
            .await
            .unwrap();
        let denied = within(client.authorize(Request::get(SCRIPT).param("REMOTE_USER", "bob")))
            .await
            .unwrap();
        assert_granted_then_denied(&granted, &denied);
        assert!(received(&seen).iter().all(|r| r.role == AUTHORIZER_ROLE));
    }
}

/// Both clients against php-fpm: the same authorizer script grants and
/// denies through `authorize`, and a prepared request goes out twice.
mod php_fpm {
    use super::*;
    use fcgi_testkit::PhpFpm;

    const AUTHORIZER: &str = r#"<?php
if (($_SERVER['REMOTE_USER'] ?? '') === 'ann') {
    header('Variable-USER_ID: 42');
    echo $_SERVER['FCGI_ROLE'];
} else {
    http_response_code(403);
}
"#;

    fn fpm() -> (PhpFpm, String) {
        let fpm = PhpFpm::builder().script("auth.php", AUTHORIZER).start();
        let script = fpm.script("auth.php").to_string_lossy().into_owned();
        (fpm, script)
    }

    fn as_user(script: &str, user: &str) -> Request {
        Request::get(script).param("REMOTE_USER", user)
    }

    #[test]
    fn the_blocking_client_authorizes_and_repeats_prepared_requests() {
        let (fpm, script) = fpm();
        let client = fcgi::blocking::Client::builder()
            .upstream(fpm.unix_address().as_str())
            .config(config())
            .keep_alive(true)
            .build()
            .unwrap();
        let granted = client.authorize(as_user(&script, "ann")).unwrap();
        let denied = client.authorize(as_user(&script, "bob")).unwrap();
        assert_granted_then_denied(&granted, &denied);
        let prepared = client
            .prepare(as_user(&script, "ann").into_authorizer())
            .unwrap();
        for _ in 0..2 {
            let response = client.execute_prepared(&prepared).unwrap();
            assert_eq!(response.body, b"AUTHORIZER");
        }
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn the_async_client_authorizes_and_repeats_prepared_requests() {
        let (fpm, script) = fpm();
        let client = fcgi::nonblocking::Client::builder()
            .upstream(fpm.unix_address().as_str())
            .config(config())
            .build()
            .unwrap();
        let granted = within(client.authorize(as_user(&script, "ann")))
            .await
            .unwrap();
        let denied = within(client.authorize(as_user(&script, "bob")))
            .await
            .unwrap();
        assert_granted_then_denied(&granted, &denied);
        let prepared = client
            .prepare(as_user(&script, "ann").into_authorizer())
            .unwrap();
        for _ in 0..2 {
            let response = within(client.execute_prepared(&prepared)).await.unwrap();
            assert_eq!(response.body, b"AUTHORIZER");
        }
    }
}
