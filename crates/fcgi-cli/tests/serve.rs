//! `fcgi serve` end to end: the binary, a real php-fpm, and hyper's HTTP
//! client.

mod serve_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use fcgi_testkit::{pattern, sha256_hex, PhpFpm};
use http::Request;
use http_body_util::{BodyExt, Full};
use serve_support::{collect, get, json, send, Server};

/// Larger than what `fcgi serve` reads at once: it streams.
const BIG_STATIC: usize = 1_000_000;

const EVIL: &str = "<?php echo 'PW' . 'NED';";

const UPLOAD: &str = r#"<?php
header('Content-Type: application/json');
$f = $_FILES['file'] ?? null;
echo json_encode([
    'error' => $f ? $f['error'] : 'no file',
    'name' => $f ? $f['name'] : null,
    'size' => $f ? filesize($f['tmp_name']) : 0,
    'sha256' => $f ? hash_file('sha256', $f['tmp_name']) : null,
    'note' => $_POST['note'] ?? null,
]);
"#;

fn fpm() -> PhpFpm {
    PhpFpm::builder()
        .script("upload.php", UPLOAD)
        .script("uploads/evil.jpg", EVIL)
        .script("lib/secret.inc", EVIL)
        .script("static/hello.txt", "Hello, static!\n")
        .script("static/big.bin", pattern(BIG_STATIC))
        .script(".env", "SECRET=1")
        .ini("upload_max_filesize", "64M")
        .ini("post_max_size", "64M")
        .start()
}

fn serve(fpm: &PhpFpm, extra: &[&str]) -> Server {
    let root = fpm.doc_root().to_str().unwrap().to_string();
    let upstream = fpm.tcp_address();
    let mut args = vec!["--root", root.as_str(), "--upstream", upstream.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test]
async fn get_with_a_query_reaches_php_with_the_cgi_params() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let (head, body) = get(server.addr, "/server.php?a=1&b=x%20y").await;
    assert_eq!(head.status, 200);
    let v = json(&body);
    assert_eq!(v["get"]["a"], "1");
    assert_eq!(v["get"]["b"], "x y");
    let s = &v["server"];
    assert_eq!(s["REQUEST_URI"], "/server.php?a=1&b=x%20y");
    assert_eq!(s["SCRIPT_NAME"], "/server.php");
    assert_eq!(s["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(s["SERVER_PORT"], server.addr.port().to_string());
    assert_eq!(s["SERVER_NAME"], "localhost");
    assert_eq!(s["REQUEST_SCHEME"], "http");
    let log = server.wait_log("\"GET /server.php?a=1&b=x%20y HTTP/1.1\" 200");
    assert!(
        log.contains("\"GET /server.php?a=1&b=x%20y HTTP/1.1\" 200"),
        "{log}"
    );
}

#[tokio::test]
async fn a_posted_form_reaches_post() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let request = Request::post("/server.php")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from("name=J%C3%BCrgen&n=42")))
        .unwrap();
    let (head, body) = collect(send(server.addr, request).await).await;
    assert_eq!(head.status, 200);
    let v = json(&body);
    assert_eq!(v["post"]["name"], "Jürgen");
    assert_eq!(v["post"]["n"], "42");
    assert_eq!(v["server"]["CONTENT_LENGTH"], "21");
}

fn multipart(file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----fcgi-test-boundary-7d2c";
    let mut body = Vec::with_capacity(file.len() + 512);
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nbig one\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A body sent in 256 KiB frames without a size hint (hyper sends it
/// chunked unless a Content-Length header is given).
struct Chunks {
    data: Bytes,
    at: usize,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.at >= self.data.len() {
            return std::task::Poll::Ready(None);
        }
        let end = (self.at + 256 * 1024).min(self.data.len());
        let chunk = self.data.slice(self.at..end);
        self.at = end;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }
}

fn chunks(body: Vec<u8>) -> Chunks {
    Chunks {
        data: Bytes::from(body),
        at: 0,
    }
}

#[tokio::test]
async fn a_20_mb_multipart_upload_arrives_intact_with_and_without_a_length() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let file = pattern(20 * 1024 * 1024);
    let expected = sha256_hex(&file);
    let (content_type, body) = multipart(&file);
    for with_length in [true, false] {
        let request = Request::post("/upload.php")
            .header("host", "localhost")
            .header("content-type", &content_type);
        let response = if with_length {
            let request = request
                .header("content-length", body.len())
                .body(chunks(body.clone()))
                .unwrap();
            send(server.addr, request).await
        } else {
            send(server.addr, request.body(chunks(body.clone())).unwrap()).await
        };
        let (head, answer) = collect(response).await;
        assert_eq!(head.status, 200, "with_length {with_length}");
        let v = json(&answer);
        assert_eq!(v["error"], 0, "{v}");
        assert_eq!(v["name"], "big.bin");
        assert_eq!(v["size"], file.len());
        assert_eq!(v["sha256"], expected.as_str());
        assert_eq!(v["note"], "big one");
    }
}

#[tokio::test]
async fn cookies_set_twice_arrive_as_two_headers_and_redirects_keep_location() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let (head, body) = get(server.addr, "/headers.php").await;
    assert_eq!(head.status, 200);
    let cookies: Vec<_> = head.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(body, b"headers");

    let (head, _) = get(server.addr, "/headers.php?location=/hello.php").await;
    assert_eq!(head.status, 302);
    assert_eq!(head.headers["location"], "/hello.php");
    assert_eq!(head.headers.get_all("set-cookie").iter().count(), 2);
}

#[tokio::test]
async fn a_missing_script_is_404() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let (head, _) = get(server.addr, "/no-such-script.php").await;
    assert_eq!(head.status, 404);
    let (head, _) = get(server.addr, "/no/such/page").await;
    assert_eq!(head.status, 404, "no index.php, so no front controller");
}

#[tokio::test]
async fn the_front_controller_gets_paths_that_name_nothing() {
    let fpm = PhpFpm::builder()
        .script(
            "index.php",
            "<?php echo $_SERVER['SCRIPT_NAME'], '|', $_SERVER['REQUEST_URI'];",
        )
        .start();
    let server = serve(&fpm, &[]);
    let (head, body) = get(server.addr, "/blog/hello-world?page=2").await;
    assert_eq!(head.status, 200);
    assert_eq!(body, b"/index.php|/blog/hello-world?page=2");
    let (head, body) = get(server.addr, "/").await;
    assert_eq!(
        (head.status.as_u16(), body.as_slice()),
        (200, &b"/index.php|/"[..])
    );
}

#[tokio::test]
async fn static_files_have_types_lengths_ranges_and_conditional_get() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let (head, body) = get(server.addr, "/static/hello.txt").await;
    assert_eq!(head.status, 200);
    assert_eq!(body, b"Hello, static!\n");
    assert_eq!(head.headers["content-length"], "15");
    assert_eq!(head.headers["content-type"], "text/plain; charset=utf-8");
    let etag = head.headers["etag"].clone();
    let last_modified = head.headers["last-modified"].clone();

    let conditional = |name: &'static str, value: http::HeaderValue| {
        Request::get("/static/hello.txt")
            .header("host", "localhost")
            .header(name, value)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap()
    };
    let (head, body) =
        collect(send(server.addr, conditional("if-none-match", etag.clone())).await).await;
    assert_eq!(head.status, 304);
    assert!(body.is_empty());
    let (head, _) =
        collect(send(server.addr, conditional("if-modified-since", last_modified)).await).await;
    assert_eq!(head.status, 304);
    let (head, _) = collect(
        send(
            server.addr,
            conditional("if-none-match", "\"other\"".parse().unwrap()),
        )
        .await,
    )
    .await;
    assert_eq!(head.status, 200);

    let (head, body) = collect(
        send(
            server.addr,
            conditional("range", "bytes=7-12".parse().unwrap()),
        )
        .await,
    )
    .await;
    assert_eq!(head.status, 206);
    assert_eq!(body, b"static");
    assert_eq!(head.headers["content-range"], "bytes 7-12/15");
    let (head, _) = collect(
        send(
            server.addr,
            conditional("range", "bytes=99-".parse().unwrap()),
        )
        .await,
    )
    .await;
    assert_eq!(head.status, 416);
    assert_eq!(head.headers["content-range"], "bytes */15");
}

#[tokio::test]
async fn streamed_output_arrives_in_chunks_before_the_script_ends() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let started = Instant::now();
    let response = send(
        server.addr,
        Request::get("/tick.php?count=6")
            .header("host", "localhost")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    let (head, mut body) = response.into_parts();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            arrivals.push(started.elapsed());
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let total = started.elapsed();
    assert!(
        head.headers.get("content-length").is_none(),
        "streamed, not buffered"
    );
    assert!(
        text.starts_with("tick 1\ntick 2\n") && text.ends_with("done"),
        "{text}"
    );
    assert!(arrivals.len() >= 4, "{arrivals:?}");
    // The script takes 600 ms; the first tick must not wait for its end.
    assert!(total >= Duration::from_millis(550), "{total:?}");
    assert!(
        arrivals[0] + Duration::from_millis(300) < total,
        "first chunk at {:?}, end at {total:?}",
        arrivals[0]
    );
}

#[tokio::test]
async fn security_rules_hold_end_to_end() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    // httpoxy and underscores.
    let request = Request::get("/server.php")
        .header("host", "localhost")
        .header("proxy", "http://evil.example:3128")
        .header("x_forwarded_user", "admin")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let (_, body) = collect(send(server.addr, request).await).await;
    let s = json(&body)["server"].clone();
    assert!(s.get("HTTP_PROXY").is_none(), "{s}");
    assert!(s.get("HTTP_X_FORWARDED_USER").is_none(), "{s}");

    // Nothing outside the root.
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/static/%2E%2E/%2e%2e/%2e%2e/etc/passwd",
        "/hello.php%00.txt",
        "/static%5c..%5c..%5cetc%5cpasswd",
    ] {
        let (head, body) = get(server.addr, path).await;
        assert_eq!(head.status, 400, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{path}");
    }

    // No PATH_INFO trick, no other extension run, no hidden files.
    let (head, body) = get(server.addr, "/uploads/evil.jpg/x.php").await;
    assert_eq!(head.status, 404);
    assert!(!String::from_utf8_lossy(&body).contains("PWNED"));
    let (head, body) = get(server.addr, "/uploads/evil.jpg").await;
    assert_eq!(head.status, 200, "served as a file");
    assert_eq!(body, EVIL.as_bytes(), "never executed");
    assert_eq!(head.headers["content-type"], "image/jpeg");
    let (_, body) = get(server.addr, "/lib/secret.inc").await;
    assert_eq!(body, EVIL.as_bytes(), "never executed");
    let (head, _) = get(server.addr, "/.env").await;
    assert_eq!(head.status, 404);
}

#[tokio::test]
async fn upstream_failures_are_502_and_504_with_the_detail_only_in_the_log() {
    let fpm = fpm();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let root = fpm.doc_root().to_str().unwrap().to_string();
    let server = Server::start(&["--root", &root, "--upstream", &dead_addr]);
    let (head, body) = get(server.addr, "/hello.php").await;
    assert_eq!(head.status, 502);
    assert_eq!(body, b"502 Bad Gateway\n");
    let log = server.wait_log("cannot connect");
    assert!(
        log.contains("cannot connect") && log.contains(&dead_addr),
        "{log}"
    );

    let server = serve(&fpm, &["--timeout", "0.3"]);
    let (head, body) = get(server.addr, "/sleep.php?ms=2000").await;
    assert_eq!(head.status, 504);
    assert_eq!(body, b"504 Gateway Timeout\n");
    assert!(server.wait_log("timed out").contains("timed out"));
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let fpm = fpm();
    let mut server = serve(&fpm, &[]);
    let response = send(
        server.addr,
        Request::get("/tick.php?count=8")
            .header("host", "localhost")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    let pid = server.pid();
    let addr = server.addr;
    let terminator = std::thread::spawn(move || server.terminate());
    let mut rest = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the response finishes").into_data() {
            rest.extend_from_slice(&data);
        }
    }
    assert!(String::from_utf8_lossy(&rest).ends_with("done"));
    let status = terminator.join().unwrap().expect("exited");
    assert!(status.success(), "{status:?} (pid {pid})");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn large_static_files_stream_whole_or_by_range() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let (head, body) = get(server.addr, "/static/big.bin").await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.headers["content-length"],
        BIG_STATIC.to_string().as_str()
    );
    assert_eq!(head.headers["content-type"], "application/octet-stream");
    assert_eq!(sha256_hex(&body), sha256_hex(&pattern(BIG_STATIC)));
    let request = Request::get("/static/big.bin")
        .header("host", "localhost")
        .header("range", "bytes=300000-")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let (head, body) = collect(send(server.addr, request).await).await;
    assert_eq!(head.status, 206);
    assert_eq!(body, &pattern(BIG_STATIC)[300_000..]);
}

#[tokio::test]
async fn the_single_threaded_runtime_serves_the_same() {
    let fpm = fpm();
    let server = serve(&fpm, &["--threads", "1"]);
    let (head, body) = get(server.addr, "/hello.php").await;
    assert_eq!(
        (head.status.as_u16(), body.as_slice()),
        (200, &b"Hello, World!"[..])
    );
    // A response complete with its head is sent whole, with its length.
    assert_eq!(head.headers["content-length"], "13");
    assert!(head.headers.get("transfer-encoding").is_none());
    let (head, body) = get(server.addr, "/static/hello.txt").await;
    assert_eq!(
        (head.status.as_u16(), body.as_slice()),
        (200, &b"Hello, static!\n"[..])
    );
}

#[tokio::test]
async fn bodies_over_max_body_size_get_413_with_or_without_a_length() {
    let fpm = fpm();
    let server = serve(&fpm, &["--max-body-size", "1000"]);
    for with_length in [true, false] {
        let request = Request::post("/input_hash.php").header("host", "localhost");
        let request = if with_length {
            request.header("content-length", "5000")
        } else {
            request
        };
        let (head, body) =
            collect(send(server.addr, request.body(chunks(pattern(5000))).unwrap()).await).await;
        assert_eq!(head.status, 413, "with_length {with_length}");
        assert_eq!(body, b"413 Payload Too Large\n");
    }
    let request = Request::post("/input_hash.php")
        .header("host", "localhost")
        .body(chunks(pattern(1000)))
        .unwrap();
    let (head, body) = collect(send(server.addr, request).await).await;
    assert_eq!(head.status, 200);
    assert_eq!(json(&body)["len"], 1000);
}

#[tokio::test]
async fn a_client_that_goes_away_stops_the_script() {
    let fpm = fpm();
    let server = serve(&fpm, &[]);
    let ticks = fpm.temp_dir().join("ticks.txt");
    let uri = format!("/tick.php?count=50&file={}", ticks.display());
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let response = sender
        .send_request(
            Request::get(uri.as_str())
                .header("host", "localhost")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    // Hang up.
    drop(body);
    drop(sender);
    conn.abort();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let lines = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let after_hangup = lines(&ticks);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = lines(&ticks);
    assert_eq!(after_hangup, later, "the script kept running");
    assert!(later < 20, "{later} ticks");
}
