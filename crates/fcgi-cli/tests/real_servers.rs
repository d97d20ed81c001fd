//! The compatibility matrix through the `fcgi` binary: `fcgi values` and
//! `fcgi bench -c 4` against each real server of `fcgi_testkit::servers`
//! (one per server for this test binary), and `fcgi serve` in front of Go:
//! an HTTP client that asks for 10 MB and disconnects without reading must
//! not break later requests.

mod common;
mod serve_support;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::fcgi;
use fcgi_testkit::servers::{Kind, RealServer};
use serve_support::{get, Server};

fn values(kind: Kind) -> common::Run {
    let server = RealServer::shared(kind);
    fcgi(&["values", "--timeout", "1", &server.address()])
}

#[test]
fn values_go_says_it_multiplexes() {
    let run = values(Kind::Go);
    run.expect_code(0);
    assert!(run.stdout_text().contains("FCGI_MPXS_CONNS=1"), "{run:?}");
}

#[test]
fn values_php_cgi_says_it_does_not_multiplex_and_its_limits() {
    let run = values(Kind::PhpCgi);
    run.expect_code(0);
    let out = run.stdout_text();
    assert!(out.contains("FCGI_MPXS_CONNS=0"), "{run:?}");
    assert!(out.contains("FCGI_MAX_CONNS=4"), "{run:?}");
}

#[test]
fn values_flup_answers_with_no_pairs() {
    let run = values(Kind::Flup);
    run.expect_code(0);
    let all = format!("{}{}", run.stdout_text(), run.stderr);
    assert!(
        all.contains("not answered: FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS"),
        "{run:?}"
    );
}

#[test]
fn values_fcgiwrap_never_answers_and_times_out() {
    values(Kind::Fcgiwrap).expect_code(4);
}

#[test]
fn values_uwsgi_never_answers_and_times_out() {
    // (It closes the connection after its socket timeout, 4 s by default.)
    values(Kind::Uwsgi).expect_code(4);
}

/// `fcgi bench -c 4` of a small GET: every request succeeds.
fn bench_has_no_errors(kind: Kind) {
    let server = RealServer::shared(kind);
    let url = server.url("op=echo&bench=1");
    let run = fcgi(&[
        "bench",
        &server.address(),
        &url,
        "-c",
        "4",
        "-n",
        "200",
        "--json",
        "--fail-on-error",
    ]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    assert_eq!(report["requests"].as_u64(), Some(200), "{report}");
}

#[test]
fn bench_go_has_no_errors() {
    bench_has_no_errors(Kind::Go);
}

#[test]
fn bench_flup_has_no_errors() {
    bench_has_no_errors(Kind::Flup);
}

#[test]
fn bench_fcgiwrap_has_no_errors() {
    bench_has_no_errors(Kind::Fcgiwrap);
}

#[test]
fn bench_uwsgi_has_no_errors() {
    bench_has_no_errors(Kind::Uwsgi);
}

#[test]
fn bench_php_cgi_has_no_errors() {
    bench_has_no_errors(Kind::PhpCgi);
}

/// Whether two requests sent at once run at the same time at the server
/// (then `fcgi serve`, with one connection, multiplexes).
async fn runs_two_at_once(addr: std::net::SocketAddr, round: usize) -> bool {
    static GROUP: AtomicUsize = AtomicUsize::new(0);
    let group = GROUP.fetch_add(1, Ordering::SeqCst);
    let path = format!("/app.php?op=barrier&group=serve{round}-{group}&n=2&ms=2000");
    let (a, b) = tokio::join!(get(addr, &path), get(addr, &path));
    a.1 == b"together" && b.1 == b"together"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_in_front_of_go_survives_a_client_that_leaves_a_10_mb_response_unread() {
    let go = RealServer::shared(Kind::Go);
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("app.php"), "").unwrap();
    let upstream = go.address();
    let serve = Server::start(&[
        "--root",
        root.path().to_str().unwrap(),
        "--upstream",
        &upstream,
        "--max-connections",
        "1",
        "--timeout",
        "20",
    ]);
    // Once discovery has answered, requests share the one connection.
    let mut multiplexed = false;
    for round in 0..20 {
        if runs_two_at_once(serve.addr, round).await {
            multiplexed = true;
            break;
        }
    }
    assert!(
        multiplexed,
        "fcgi serve never multiplexed over Go's connection"
    );
    for _ in 0..2 {
        // Asks for 10 MB, reads the head, leaves.
        let tcp = tokio::net::TcpStream::connect(serve.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util_io(tcp))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let request = http::Request::get("/app.php?op=big&bytes=10485760")
            .header("host", "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        drop(response);
        drop(sender);
        conn.abort();
        // Later requests are served, several at once on the connection.
        for i in 0..3 {
            let (parts, body) = get(serve.addr, &format!("/app.php?op=echo&after={i}")).await;
            assert_eq!(parts.status, 200);
            assert_eq!(body, format!("op=echo&after={i}").as_bytes());
        }
        assert!(runs_two_at_once(serve.addr, 99).await);
    }
}

/// `fcgi serve` in front of Go with one upstream connection and the given
/// `--multiplexing` mode.
fn serve_in_front_of_go(root: &std::path::Path, mode: &str) -> Server {
    let go = RealServer::shared(Kind::Go);
    std::fs::write(root.join("app.php"), "").unwrap();
    let upstream = go.address();
    Server::start(&[
        "--root",
        root.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--max-connections",
        "1",
        "--multiplexing",
        mode,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_multiplexing_on_shares_the_connection_from_the_first_request() {
    let root = tempfile::tempdir().unwrap();
    let serve = serve_in_front_of_go(root.path(), "on");
    assert!(runs_two_at_once(serve.addr, 1000).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_multiplexing_off_sends_one_request_per_connection() {
    let root = tempfile::tempdir().unwrap();
    let serve = serve_in_front_of_go(root.path(), "off");
    // Go would multiplex; with one connection and multiplexing off, the
    // second request waits until the first has ended.
    for round in 0..3 {
        assert!(!runs_two_at_once(serve.addr, 2000 + round).await);
    }
}

#[test]
fn serve_refuses_an_unknown_multiplexing_mode() {
    let run = fcgi(&["serve", "--root", ".", "--multiplexing", "sometimes"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("expected auto, on or off"),
        "{}",
        run.stderr
    );
}

/// A tokio stream for hyper's client.
fn hyper_util_io(tcp: tokio::net::TcpStream) -> hyper_util::rt::TokioIo<tokio::net::TcpStream> {
    hyper_util::rt::TokioIo::new(tcp)
}
