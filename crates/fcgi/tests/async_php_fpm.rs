//! The async client against a real php-fpm: pooling under load, keep-alive
//! with `pm.max_requests`, fail-over between two php-fpm instances,
//! cancellation, full duplex and async bodies.
#![cfg(feature = "tokio")]

use std::time::{Duration, Instant};

use bytes::Bytes;
use fcgi::nonblocking::{Chunk, Client};
use fcgi::{Body, Error, Request};
use fcgi_testkit::{pattern, sha256_hex, PhpFpm};

fn script(fpm: &PhpFpm, name: &str) -> String {
    fpm.script(name).to_string_lossy().into_owned()
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// Fails a test that would otherwise hang.
async fn within<T>(limit: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_world_over_both_transports_and_no_multiplexing_discovered() {
    let fpm = PhpFpm::start();
    for address in fpm.addresses() {
        let client = Client::new(address.as_str()).unwrap();
        let response = client
            .execute(Request::get(&script(&fpm, "hello.php")))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"Hello, World!");
        // Discovery runs in the background; wait for its answer.
        client.discover().await.unwrap();
        assert_eq!(
            client.is_multiplexed(0),
            Some(false),
            "php-fpm answers FCGI_MPXS_CONNS=0"
        );
        let values = client.get_values(&["FCGI_MPXS_CONNS"]).await.unwrap();
        assert_eq!(values, [("FCGI_MPXS_CONNS".to_string(), "0".to_string())]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_requests_through_a_pool_of_four_are_all_correct() {
    let fpm = PhpFpm::builder().max_children(4).start();
    let client = Client::builder()
        .upstream(fpm.unix_address())
        .max_connections(4)
        .build()
        .unwrap();
    let server = script(&fpm, "server.php");
    let input_hash = script(&fpm, "input_hash.php");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..1000usize {
        let client = client.clone();
        let (server, input_hash) = (server.clone(), input_hash.clone());
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                let body = pattern(1000 + i * 97);
                let response = client
                    .execute(Request::post(
                        &input_hash,
                        "application/octet-stream",
                        body.clone(),
                    ))
                    .await
                    .map_err(|e| format!("request {i}: {e}"))?;
                let v = json(&response.body);
                assert_eq!(v["len"], body.len(), "request {i}");
                assert_eq!(v["sha256"], sha256_hex(&body), "request {i}");
            } else {
                let response = client
                    .execute(Request::get(&format!("{server}?i={i}")))
                    .await
                    .map_err(|e| format!("request {i}: {e}"))?;
                assert_eq!(response.status, 200);
                assert_eq!(json(&response.body)["get"]["i"], i.to_string());
            }
            Ok::<(), String>(())
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = within(Duration::from_secs(60), task).await.unwrap() {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    eprintln!("1000 requests in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_three_closing_kept_connections_costs_no_request() {
    let fpm = PhpFpm::builder().max_children(4).max_requests(3).start();
    let client = Client::builder()
        .upstream(fpm.tcp_address())
        .max_connections(4)
        .build()
        .unwrap();
    let hello = script(&fpm, "hello.php");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = client.clone();
        let hello = hello.clone();
        tasks.push(tokio::spawn(async move {
            // Small waves keep kept connections cycling through max_requests.
            tokio::time::sleep(Duration::from_millis((i % 20) as u64)).await;
            client.execute(Request::get(&hello)).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let response = within(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert_eq!(response.body, b"Hello, World!");
    }
    // Sequential requests each meet a connection the worker may just have closed.
    for i in 0..30 {
        let response = client
            .execute(Request::post(&hello, "text/plain", "replayable"))
            .await
            .unwrap_or_else(|e| panic!("sequential request {i} failed: {e}"));
        assert_eq!(response.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upstreams_with_one_stopped_midway_fail_over_and_never_hang() {
    let a = PhpFpm::builder().max_children(3).start();
    let b = PhpFpm::builder().max_children(3).start();
    let client = Client::builder()
        .upstream(a.tcp_address())
        .upstream(b.tcp_address())
        .max_connections(3)
        .probe_interval(Duration::from_millis(300))
        .config(fcgi::Config::default().deadline(Duration::from_secs(10)))
        .build()
        .unwrap();
    // One script path valid on both servers.
    let shared = tempfile::tempdir().unwrap();
    let shared_script = shared.path().join("sleep.php");
    std::fs::copy(a.script("sleep.php"), &shared_script).unwrap();
    let shared_script = shared_script.to_string_lossy().into_owned();

    let mut tasks = Vec::new();
    for i in 0..120u32 {
        let client = client.clone();
        let path = shared_script.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(i) * 5)).await;
            let result = client.execute(Request::get(&format!("{path}?ms=20"))).await;
            (i, result)
        }));
    }
    // Stop `a` while requests are in flight.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let stopped_at = Instant::now();
    tokio::task::spawn_blocking(move || a.stop()).await.unwrap();
    let mut ok = 0;
    let mut failed = Vec::new();
    let mut late_failures = 0;
    for task in tasks {
        let (i, result) = within(Duration::from_secs(20), task).await.unwrap();
        match result {
            Ok(response) => {
                assert_eq!(response.body, b"slept", "request {i}");
                ok += 1;
            }
            Err(e) => {
                // In flight on `a` when it stopped: a clear error, not a hang.
                assert!(
                    matches!(e, Error::ConnectionClosed { .. } | Error::Io { .. }),
                    "request {i}: unexpected error {e:?}"
                );
                if i > 100 {
                    late_failures += 1;
                }
                failed.push((i, e.to_string()));
            }
        }
    }
    eprintln!(
        "ok {ok}, failed {} (stopped after {:?})",
        failed.len(),
        stopped_at.elapsed()
    );
    assert!(ok >= 100, "too few successes: {ok}; failures: {failed:?}");
    assert_eq!(
        late_failures, 0,
        "requests started after the stop must fail over: {failed:?}"
    );
    // Everything new goes to `b` now.
    for _ in 0..10 {
        let response = client
            .execute(Request::get(&format!("{shared_script}?ms=0")))
            .await
            .unwrap();
        assert_eq!(response.body, b"slept");
    }
    drop(b);
}

fn count_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Waits until `path` has `n` lines.
async fn wait_for_lines(path: &std::path::Path, n: usize) {
    within(Duration::from_secs(10), async {
        while count_lines(path) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Asserts the script writing `path` stopped within about a second.
async fn assert_stops_growing(path: &std::path::Path) {
    let at_drop = count_lines(path);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after_a_second = count_lines(path);
    assert!(
        after_a_second <= at_drop + 3,
        "script kept running: {at_drop} lines at the drop, {after_a_second} a second later"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count_lines(path), after_a_second, "script still writing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_response_stream_stops_the_script() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let file = fpm.temp_dir().join("ticks-stream.txt");
    let url = format!("{}?file={}", script(&fpm, "tick.php"), file.display());
    let mut stream = client.stream(Request::get(&url)).await.unwrap();
    let mut body = Vec::new();
    while !String::from_utf8_lossy(&body).contains("tick 3\n") {
        match stream.next_chunk().await.unwrap() {
            Some(Chunk::Body(bytes)) => body.extend_from_slice(&bytes),
            Some(Chunk::Stderr(_)) => {}
            None => panic!("tick.php ended early"),
        }
    }
    drop(stream);
    assert_stops_growing(&file).await;
    // The pool is still usable.
    let response = client
        .execute(Request::get(&script(&fpm, "hello.php")))
        .await
        .unwrap();
    assert_eq!(response.body, b"Hello, World!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_request_future_stops_the_script() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.tcp_address().as_str()).unwrap();
    let file = fpm.temp_dir().join("ticks-future.txt");
    let url = format!("{}?file={}", script(&fpm, "tick.php"), file.display());
    let request = client.execute(Request::get(&url));
    let outcome = tokio::time::timeout(Duration::from_millis(600), request).await;
    assert!(
        outcome.is_err(),
        "tick.php runs for 30 s; the future must still be pending"
    );
    wait_for_lines(&file, 1).await;
    assert_stops_growing(&file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_before_reading_the_body_does_not_deadlock() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let out = 3 * 1024 * 1024;
    let body = pattern(5 * 1024 * 1024 + 17);
    let request = Request::post(
        &format!("{}?out={out}", script(&fpm, "big_then_read.php")),
        "application/octet-stream",
        body.clone(),
    );
    let response = within(Duration::from_secs(20), client.execute(request))
        .await
        .unwrap();
    let tail = format!("\nINPUT len={} sha256={}", body.len(), sha256_hex(&body));
    assert_eq!(response.body.len(), out + tail.len());
    assert!(
        response.body[..out] == pattern(out)[..],
        "output pattern differs"
    );
    assert_eq!(String::from_utf8_lossy(&response.body[out..]), tail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_from_async_read_and_streams_arrive_whole() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let data = pattern(300_000);
    let input_hash = script(&fpm, "input_hash.php");

    let reader = std::io::Cursor::new(data.clone());
    let request = Request::post(
        &input_hash,
        "application/octet-stream",
        Body::from_async_read(reader, Some(data.len() as u64)),
    );
    let v = json(&client.execute(request).await.unwrap().body);
    assert_eq!(v["len"], data.len());
    assert_eq!(v["sha256"], sha256_hex(&data));

    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(7_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain(std::iter::once(Ok(Bytes::new())))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    let request = Request::post(
        &input_hash,
        "application/octet-stream",
        Body::from_stream(stream, None),
    )
    .param("CONTENT_LENGTH", data.len().to_string());
    let v = json(&client.execute(request).await.unwrap().body);
    assert_eq!(v["len"], data.len());
    assert_eq!(v["sha256"], sha256_hex(&data));

    let blocking = Body::from_reader(std::io::Cursor::new(data.clone()), Some(data.len() as u64));
    let request = Request::post(&input_hash, "application/octet-stream", blocking);
    let v = json(&client.execute(request).await.unwrap().body);
    assert_eq!(v["sha256"], sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_body_stream_is_reported_as_a_body_error() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let items: Vec<std::io::Result<Bytes>> = vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("disk on fire")),
    ];
    let request = Request::post(
        &script(&fpm, "input_hash.php"),
        "application/octet-stream",
        Body::from_stream(futures_util::stream::iter(items), Some(100)),
    );
    let err = within(Duration::from_secs(10), client.execute(request))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Body(_)), "{err:?}");
    assert!(err.to_string().contains("disk on fire"));
}

#[test]
fn the_blocking_client_refuses_an_async_body_before_sending() {
    let client = fcgi::Client::new("127.0.0.1:9").unwrap();
    let request = Request::post(
        "/x.php",
        "text/plain",
        Body::from_async_read(&b"x"[..], Some(1)),
    );
    let err = client.execute(request).unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_request_is_shared_by_tasks_and_sent_many_times() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    // Larger than what goes out with the params: the body is streamed.
    let data = pattern(200_000);
    let request = Request::post(
        &script(&fpm, "input_hash.php"),
        "application/octet-stream",
        data.clone(),
    );
    let prepared = std::sync::Arc::new(client.prepare(request).unwrap());
    assert_eq!(
        prepared.request().params().get("CONTENT_LENGTH"),
        Some(&b"200000"[..])
    );
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, prepared) = (client.clone(), prepared.clone());
        tasks.push(tokio::spawn(async move {
            let mut hashes = Vec::new();
            for _ in 0..5 {
                let response = client.execute_prepared(&prepared).await.unwrap();
                hashes.push(json(&response.body)["sha256"].as_str().unwrap().to_string());
            }
            hashes
        }));
    }
    for task in tasks {
        let hashes = within(Duration::from_secs(60), task).await.unwrap();
        assert_eq!(hashes, vec![sha256_hex(&data); 5]);
    }
    // A body that can be read only once cannot be prepared.
    let once = Body::from_reader(std::io::Cursor::new(data.clone()), Some(200_000));
    let err = client
        .prepare(Request::post("/x.php", "application/octet-stream", once))
        .unwrap_err();
    assert!(err.to_string().contains("body in memory"), "{err}");
    // Its kept connections pin php-fpm's workers: let them go.
    drop(client);
    // A client that encodes differently (no keep-alive) encodes it afresh.
    let other = Client::builder()
        .upstream(fpm.unix_address().as_str())
        .keep_alive(false)
        .build()
        .unwrap();
    let response = within(Duration::from_secs(10), other.execute_prepared(&prepared))
        .await
        .unwrap();
    assert_eq!(json(&response.body)["sha256"], sha256_hex(&data));
}

#[tokio::test]
async fn a_streamed_response_knows_when_its_request_began() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let before = std::time::Instant::now();
    let url = format!("{}?ms=150", script(&fpm, "sleep.php"));
    let stream = client.stream(Request::get(&url)).await.unwrap();
    let began = stream.started();
    stream.finish().await.unwrap();
    assert!(before <= began && began <= std::time::Instant::now());
    assert!(began.elapsed() >= std::time::Duration::from_millis(150));
}
