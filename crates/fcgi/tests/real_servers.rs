//! The compatibility matrix: the async client against real FastCGI servers
//! other than php-fpm (fcgiwrap, Go's `net/http/fcgi`, flup multiplexed,
//! uWSGI, php-cgi), each started by the test (one per server for this test
//! binary) and running the test application of `fcgi_testkit::servers`.
//! Every server gets the same checks; the multiplexing ones (Go, flup) also
//! get concurrency over one connection, cancellation mid-response, abort
//! mid-upload and a stalled reader next to fast requests.
#![cfg(feature = "tokio")]

use std::time::Duration;

use bytes::Bytes;
use fcgi::nonblocking::{Chunk, Client, Multiplexing, ResponseStream};
use fcgi::{Body, Request};
use fcgi_testkit::servers::{Kind, RealServer};
use fcgi_testkit::{pattern, pattern_sha256};
use sha2::{Digest, Sha256};

/// Fails a check that would otherwise hang.
async fn within<T>(limit: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

const LIMIT: Duration = Duration::from_secs(60);
const BIG: usize = 10 << 20;

/// A client for one server; the multiplexing ones over one connection.
fn client(server: &RealServer) -> Client {
    let builder = Client::builder()
        .upstream(server.address().as_str())
        .discovery_timeout(Duration::from_millis(300))
        .abort_timeout(Duration::from_millis(500));
    if server.kind().multiplexes() {
        builder
            .multiplexing(Multiplexing::Enabled)
            .max_connections(1)
    } else {
        builder.multiplexing(Multiplexing::Disabled)
    }
    .build()
    .unwrap()
}

async fn get(client: &Client, server: &RealServer, query: &str) -> fcgi::Response {
    within(LIMIT, client.execute(Request::get(&server.url(query))))
        .await
        .unwrap_or_else(|e| panic!("{}: GET ?{query}: {e}", server.kind().name()))
}

/// Reads the rest of a body; its length and SHA-256.
async fn drain(stream: &mut ResponseStream) -> (usize, String) {
    let mut hasher = Sha256::new();
    let mut len = 0;
    while let Some(chunk) = within(LIMIT, stream.next_chunk()).await.unwrap() {
        if let Chunk::Body(bytes) = chunk {
            len += bytes.len();
            hasher.update(&bytes);
        }
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (len, hex)
}

async fn get_with_query(server: &RealServer) {
    let client = client(server);
    let response = get(&client, server, "op=echo&a=1&b=x%20y").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body_text(), "op=echo&a=1&b=x%20y");
}

async fn post_of_1_mb_returns_its_hash(server: &RealServer) {
    let client = client(server);
    let body = pattern(1 << 20);
    let request = Request::post(&server.url("op=hash"), "application/octet-stream", body);
    let response = within(LIMIT, client.execute(request)).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert_eq!(response.body_text(), pattern_sha256(1 << 20));
}

async fn response_of_10_mb_arrives_whole(server: &RealServer) {
    let client = client(server);
    let request = Request::get(&server.url(&format!("op=big&bytes={BIG}")));
    let mut stream = within(LIMIT, client.stream(request)).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(drain(&mut stream).await, (BIG, pattern_sha256(BIG)));
}

async fn repeated_set_cookie_headers_are_kept(server: &RealServer) {
    let client = client(server);
    let response = get(&client, server, "op=cookies").await;
    let cookies: Vec<&[u8]> = response.headers.get_all("Set-Cookie").collect();
    assert_eq!(cookies, [&b"a=1"[..], &b"b=2"[..]]);
}

async fn status_404_arrives_with_its_reason(server: &RealServer) {
    let client = client(server);
    let response = get(&client, server, "op=notfound").await;
    assert_eq!(
        (response.status, response.reason.as_str()),
        (404, "Not Found")
    );
    assert_eq!(response.body_text(), "missing");
}

async fn stderr_arrives_where_the_server_forwards_it(server: &RealServer) {
    let client = client(server);
    let response = get(&client, server, "op=stderr").await;
    assert_eq!(response.body_text(), "ok");
    if server.kind().forwards_stderr() {
        assert!(
            response.stderr_text().contains("to-stderr"),
            "stderr: {:?}",
            response.stderr_text()
        );
    } else {
        assert_eq!(
            response.stderr_text(),
            "",
            "this server keeps stderr itself"
        );
    }
}

async fn discovery_finds_what_the_server_answers(server: &RealServer) {
    let client = Client::builder()
        .upstream(server.address().as_str())
        .discovery_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    within(LIMIT, client.discover()).await.unwrap();
    let expected = server.kind().mpxs_conns_answer() == Some("1");
    assert_eq!(client.is_multiplexed(0), Some(expected));
    // And requests work with what was found.
    assert_eq!(
        get(&client, server, "op=echo&x").await.body_text(),
        "op=echo&x"
    );
}

async fn concurrent_requests_share_one_connection(server: &RealServer) {
    let client = client(server);
    let group = format!("g{}", std::process::id());
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (
                client.clone(),
                server.url(&format!("op=barrier&group={group}&n=4")),
            );
            tokio::spawn(async move { client.execute(Request::get(&url)).await })
        })
        .collect();
    for task in tasks {
        // Each answers only once all four wait at the server at once.
        let response = within(LIMIT, task).await.unwrap().unwrap();
        assert_eq!(response.body_text(), "together");
    }
}

async fn cancellation_mid_response_leaves_the_connection_working(server: &RealServer) {
    let client = client(server);
    for _ in 0..2 {
        let request = Request::get(&server.url(&format!("op=big&bytes={BIG}")));
        let mut stream = within(LIMIT, client.stream(request)).await.unwrap();
        assert!(within(LIMIT, stream.next_chunk()).await.unwrap().is_some());
        drop(stream);
        for i in 0..3 {
            let query = format!("op=echo&after={i}");
            assert_eq!(get(&client, server, &query).await.body_text(), query);
        }
    }
}

async fn abort_mid_upload_leaves_the_connection_working(server: &RealServer) {
    let client = client(server);
    for _ in 0..2 {
        let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
        let first = Bytes::from(pattern(64 * 1024));
        // Sends 64 KiB of a 1 MB body, then nothing more.
        let body = futures_util::stream::unfold(Some((first, sent_tx)), |state| async move {
            match state {
                Some((chunk, sent)) => {
                    let _ = sent.send(());
                    Some((Ok::<Bytes, std::io::Error>(chunk), None))
                }
                None => std::future::pending().await,
            }
        });
        let request = Request::post(
            &server.url("op=hash"),
            "application/octet-stream",
            Body::from_stream(body, Some(1 << 20)),
        );
        let upload = tokio::spawn({
            let client = client.clone();
            async move { client.execute(request).await }
        });
        within(LIMIT, sent_rx).await.unwrap();
        upload.abort();
        let _ = upload.await;
        for i in 0..3 {
            let query = format!("op=echo&after={i}");
            assert_eq!(get(&client, server, &query).await.body_text(), query);
        }
    }
}

async fn stalled_reader_does_not_stall_fast_requests(server: &RealServer) {
    let client = client(server);
    let request = Request::get(&server.url(&format!("op=big&bytes={BIG}")));
    let mut stalled = within(LIMIT, client.stream(request)).await.unwrap();
    for i in 0..5 {
        let query = format!("op=echo&beside={i}");
        assert_eq!(get(&client, server, &query).await.body_text(), query);
    }
    assert_eq!(drain(&mut stalled).await, (BIG, pattern_sha256(BIG)));
}

/// One module of tests per server, all on the server shared by this binary.
macro_rules! matrix {
    ($name:ident, $kind:expr) => {
        mod $name {
            use super::*;

            fn server() -> &'static RealServer {
                RealServer::shared($kind)
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_with_query() {
                super::get_with_query(server()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn post_of_1_mb_returns_its_hash() {
                super::post_of_1_mb_returns_its_hash(server()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn response_of_10_mb_arrives_whole() {
                super::response_of_10_mb_arrives_whole(server()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn repeated_set_cookie_headers_are_kept() {
                super::repeated_set_cookie_headers_are_kept(server()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn status_404_arrives_with_its_reason() {
                super::status_404_arrives_with_its_reason(server()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stderr_arrives_where_the_server_forwards_it() {
                super::stderr_arrives_where_the_server_forwards_it(server()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn discovery_finds_what_the_server_answers() {
                super::discovery_finds_what_the_server_answers(server()).await;
            }
        }
    };
    ($name:ident, $kind:expr, multiplexed) => {
        matrix!($name, $kind);

        mod multiplexed {
            use super::*;

            fn server() -> &'static RealServer {
                RealServer::shared($kind)
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_requests_share_one_connection() {
                super::concurrent_requests_share_one_connection(server()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cancellation_mid_response_leaves_the_connection_working() {
                super::cancellation_mid_response_leaves_the_connection_working(server()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn abort_mid_upload_leaves_the_connection_working() {
                super::abort_mid_upload_leaves_the_connection_working(server()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stalled_reader_does_not_stall_fast_requests() {
                super::stalled_reader_does_not_stall_fast_requests(server()).await;
            }
        }
    };
}

mod go {
    use super::*;
    matrix!(all, Kind::Go, multiplexed);
}

mod flup {
    use super::*;
    matrix!(all, Kind::Flup, multiplexed);
}

matrix!(fcgiwrap, Kind::Fcgiwrap);
matrix!(uwsgi, Kind::Uwsgi);
matrix!(php_cgi, Kind::PhpCgi);
