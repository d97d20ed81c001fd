//! The HTTP gateway (feature `http`) against a real php-fpm, called as a
//! tower `Service`: CGI parameters, response conversion, bodies with and
//! without a length, and every safety rule.
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use fcgi::gateway::{ConnectionInfo, Gateway, GatewayBody};
use fcgi_testkit::{pattern, sha256_hex, PhpFpm};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tower_service::Service;

const EVIL: &str = "<?php echo 'PWNED';";

fn fpm() -> PhpFpm {
    PhpFpm::builder()
        .script("uploads/evil.jpg", EVIL)
        .script("secret.inc", EVIL)
        .script("app/index.php", "<?php echo 'app index';")
        .start()
}

fn gateway(fpm: &PhpFpm) -> fcgi::gateway::GatewayBuilder {
    Gateway::builder(fpm.doc_root())
}

fn client(fpm: &PhpFpm) -> fcgi::AsyncClient {
    fcgi::AsyncClient::new(fpm.tcp_address().as_str()).unwrap()
}

fn info() -> ConnectionInfo {
    ConnectionInfo::new(
        Some("192.0.2.7:50123".parse().unwrap()),
        Some("127.0.0.1:8443".parse().unwrap()),
    )
    .secure(true)
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    let mut request = Request::get(uri)
        .header("host", "example.com:8443")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request.extensions_mut().insert(info());
    request
}

async fn call<B>(
    gateway: &mut Gateway,
    request: Request<B>,
) -> (StatusCode, http::HeaderMap, Vec<u8>)
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let response: Response<GatewayBody> =
        tokio::time::timeout(Duration::from_secs(20), gateway.call(request))
            .await
            .expect("answered in time")
            .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn cgi_params_follow_rfc_3875_and_nginx() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let mut request = get("/server.php/extra/path?a=1&b=two");
    let headers = request.headers_mut();
    headers.append("cookie", "a=1".parse().unwrap());
    headers.append("cookie", "b=2".parse().unwrap());
    headers.append("x-multi", "one".parse().unwrap());
    headers.append("x-multi", "two".parse().unwrap());
    headers.append("accept", "text/html".parse().unwrap());
    let (status, _, body) = call(&mut gw, request).await;
    assert_eq!(status, 200);
    let v = json(&body);
    let s = &v["server"];
    let root = fpm.doc_root().canonicalize().unwrap();
    let root = root.to_str().unwrap();
    assert_eq!(s["HTTP_COOKIE"], "a=1; b=2");
    assert_eq!(s["HTTP_X_MULTI"], "one, two");
    assert_eq!(s["HTTP_ACCEPT"], "text/html");
    assert_eq!(s["HTTP_HOST"], "example.com:8443");
    assert_eq!(s["SERVER_NAME"], "example.com");
    assert_eq!(s["SERVER_PORT"], "8443");
    assert_eq!(s["SERVER_ADDR"], "127.0.0.1");
    assert_eq!(s["REMOTE_ADDR"], "192.0.2.7");
    assert_eq!(s["REMOTE_PORT"], "50123");
    assert_eq!(s["HTTPS"], "on");
    assert_eq!(s["REQUEST_SCHEME"], "https");
    assert_eq!(s["REQUEST_METHOD"], "GET");
    assert_eq!(s["REQUEST_URI"], "/server.php/extra/path?a=1&b=two");
    assert_eq!(s["QUERY_STRING"], "a=1&b=two");
    assert_eq!(s["SCRIPT_NAME"], "/server.php");
    assert_eq!(s["SCRIPT_FILENAME"], format!("{root}/server.php"));
    assert_eq!(s["PATH_INFO"], "/extra/path");
    assert_eq!(s["PATH_TRANSLATED"], format!("{root}/extra/path"));
    assert_eq!(s["DOCUMENT_ROOT"], root);
    assert_eq!(s["DOCUMENT_URI"], "/server.php/extra/path");
    assert_eq!(s["GATEWAY_INTERFACE"], "CGI/1.1");
    assert_eq!(s["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(s["REDIRECT_STATUS"], "200");
    assert!(
        s.get("CONTENT_LENGTH").is_none(),
        "no body, no CONTENT_LENGTH"
    );
    assert!(s.get("CONTENT_TYPE").is_none());
    assert_eq!(v["get"]["b"], "two");
}

#[tokio::test]
async fn the_proxy_header_never_becomes_http_proxy() {
    let fpm = fpm();
    let mut gw = gateway(&fpm)
        .allow_underscore_headers(true)
        .build(client(&fpm))
        .unwrap();
    let mut request = get("/server.php");
    request
        .headers_mut()
        .insert("proxy", "http://evil.example:3128".parse().unwrap());
    let (status, _, body) = call(&mut gw, request).await;
    assert_eq!(status, 200);
    let s = &json(&body)["server"];
    assert!(s.get("HTTP_PROXY").is_none(), "{s}");
}

#[tokio::test]
async fn headers_with_underscores_are_dropped_unless_enabled() {
    let fpm = fpm();
    let request = || {
        let mut r = get("/server.php");
        r.headers_mut()
            .insert("x_remote_user", "admin".parse().unwrap());
        r.headers_mut().insert("x-dash", "ok".parse().unwrap());
        r
    };
    let mut strict = gateway(&fpm).build(client(&fpm)).unwrap();
    let s = json(&call(&mut strict, request()).await.2)["server"].clone();
    assert!(s.get("HTTP_X_REMOTE_USER").is_none(), "{s}");
    assert_eq!(s["HTTP_X_DASH"], "ok");

    let mut lenient = gateway(&fpm)
        .allow_underscore_headers(true)
        .build(client(&fpm))
        .unwrap();
    let s = json(&call(&mut lenient, request()).await.2)["server"].clone();
    assert_eq!(s["HTTP_X_REMOTE_USER"], "admin");
}

#[tokio::test]
async fn paths_outside_the_document_root_are_refused() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    for uri in [
        "/../server.php",
        "/app/../../server.php",
        "/%2e%2e/server.php",
        "/app/%2E%2E/%2e%2e/etc/passwd",
        "/server.php%00.jpg",
        "/..%5cserver.php",
        "/app%5c..%5c..%5cetc%5cpasswd",
    ] {
        let (status, _, body) = call(&mut gw, get(uri)).await;
        assert_eq!(status, 400, "{uri}: {}", String::from_utf8_lossy(&body));
    }
    // `..` that stays inside the root is fine.
    let (status, _, body) = call(&mut gw, get("/app/../hello.php")).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"Hello, World!"[..])
    );
}

#[tokio::test]
async fn a_path_info_split_never_runs_a_non_php_file() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    for uri in [
        "/uploads/evil.jpg/x.php",
        "/uploads/evil.jpg/.php",
        "/uploads/evil.jpg%2fx.php",
        "/uploads/evil.jpg",
    ] {
        let (status, _, body) = call(&mut gw, get(uri)).await;
        assert_eq!(status, 404, "{uri}");
        assert!(!String::from_utf8_lossy(&body).contains("PWNED"), "{uri}");
    }
    let route = gw.resolve("/uploads/evil.jpg/x.php").unwrap();
    assert_eq!(route, fcgi::gateway::Route::NotFound);
}

#[tokio::test]
async fn only_files_with_configured_extensions_go_to_fastcgi() {
    // php-fpm's own guard (security.limit_extensions) opened up, so that the
    // gateway's rule is what is tested.
    let fpm = PhpFpm::builder()
        .script("secret.inc", EVIL)
        .pool_config("security.limit_extensions", ".php .inc")
        .start();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let (status, _, body) = call(&mut gw, get("/secret.inc")).await;
    assert_eq!(status, 404);
    assert!(!String::from_utf8_lossy(&body).contains("PWNED"));
    assert!(matches!(
        gw.resolve("/secret.inc").unwrap(),
        fcgi::gateway::Route::Static(_)
    ));
    // With `.inc` configured it runs.
    let mut gw = gateway(&fpm)
        .extensions([".php", ".inc"])
        .build(client(&fpm))
        .unwrap();
    let (status, _, body) = call(&mut gw, get("/secret.inc")).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"PWNED"[..]));
}

#[tokio::test]
async fn directories_use_their_index_and_need_a_trailing_slash() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let (status, headers, _) = call(&mut gw, get("/app?x=1")).await;
    assert_eq!(status, 301);
    assert_eq!(headers["location"], "/app/?x=1");
    let (status, _, body) = call(&mut gw, get("/app/")).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"app index"[..])
    );
}

#[tokio::test]
async fn paths_naming_nothing_go_to_the_front_controller_but_missing_scripts_are_404() {
    let fpm = PhpFpm::builder()
        .script("index.php", "<?php echo $_SERVER['SCRIPT_NAME'], ' ', $_SERVER['REQUEST_URI'], ' ', $_GET['q'] ?? '';")
        .start();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let (status, _, body) = call(&mut gw, get("/blog/2024/hello?q=7")).await;
    assert_eq!(status, 200);
    assert_eq!(body, b"/index.php /blog/2024/hello?q=7 7");
    let (status, _, _) = call(&mut gw, get("/missing.php")).await;
    assert_eq!(status, 404);
    let mut no_front = gateway(&fpm)
        .front_controller(false)
        .build(client(&fpm))
        .unwrap();
    let (status, _, _) = call(&mut no_front, get("/blog/2024/hello")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn response_status_location_and_repeated_headers_are_kept() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let (status, headers, body) = call(&mut gw, get("/headers.php?status=418")).await;
    assert_eq!(status, 418);
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(headers["x-custom"], "yes");
    assert_eq!(body, b"headers");
    let (status, headers, _) = call(&mut gw, get("/headers.php?location=/next")).await;
    assert_eq!(status, 302);
    assert_eq!(headers["location"], "/next");
}

fn chunked(
    data: Vec<u8>,
) -> StreamBody<impl futures_core::Stream<Item = Result<http_body::Frame<Bytes>, Infallible>>> {
    let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> = data
        .chunks(100_000)
        .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn a_body_without_a_length_is_read_first_and_php_sees_all_of_it() {
    let fpm = fpm();
    let mut gw = gateway(&fpm)
        .buffer_memory_bytes(64 * 1024)
        .build(client(&fpm))
        .unwrap();
    for len in [10_000usize, 3_000_000] {
        let data = pattern(len);
        let mut request = Request::post("/input_hash.php")
            .header("host", "example.com")
            .body(chunked(data.clone()))
            .unwrap();
        request.extensions_mut().insert(info());
        let (status, _, body) = call(&mut gw, request).await;
        assert_eq!(status, 200);
        let v = json(&body);
        assert_eq!(v["len"], len);
        assert_eq!(v["sha256"], sha256_hex(&data));
    }
}

#[tokio::test]
async fn a_body_with_a_length_arrives_whole_read_first_or_streamed() {
    let fpm = fpm();
    for stream in [false, true] {
        let mut gw = gateway(&fpm)
            .stream_request_bodies(stream)
            .build(client(&fpm))
            .unwrap();
        let data = pattern(2_000_000);
        let mut request = Request::post("/input_hash.php")
            .header("host", "example.com")
            .header("content-length", data.len())
            .body(chunked(data.clone()))
            .unwrap();
        request.extensions_mut().insert(info());
        let (status, _, body) = call(&mut gw, request).await;
        assert_eq!(status, 200, "stream_request_bodies({stream})");
        assert_eq!(json(&body)["sha256"], sha256_hex(&data));
    }
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_with_or_without_a_length() {
    let fpm = fpm();
    let mut gw = gateway(&fpm)
        .max_body_bytes(1000)
        .build(client(&fpm))
        .unwrap();
    let request = Request::post("/input_hash.php")
        .header("host", "example.com")
        .body(chunked(pattern(5000)))
        .unwrap();
    assert_eq!(call(&mut gw, request).await.0, 413);
    let request = Request::post("/input_hash.php")
        .header("host", "example.com")
        .header("content-length", "5000")
        .body(chunked(pattern(5000)))
        .unwrap();
    assert_eq!(call(&mut gw, request).await.0, 413);
    let request = Request::post("/input_hash.php")
        .header("host", "example.com")
        .body(chunked(pattern(1000)))
        .unwrap();
    assert_eq!(call(&mut gw, request).await.0, 200);
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_without_the_detail() {
    let fpm = fpm();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = fcgi::AsyncClient::new(format!("127.0.0.1:{port}").as_str()).unwrap();
    let mut gw = gateway(&fpm).build(client).unwrap();
    let (status, _, body) = call(&mut gw, get("/hello.php")).await;
    assert_eq!(status, 502);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(text, "502 Bad Gateway\n");
}

#[tokio::test]
async fn an_upstream_time_limit_is_504_without_the_detail() {
    let fpm = fpm();
    let client = fcgi::AsyncClient::with_config(
        fpm.tcp_address().as_str(),
        fcgi::Config::default().deadline(Duration::from_millis(300)),
    )
    .unwrap();
    let mut gw = gateway(&fpm).build(client).unwrap();
    let (status, _, body) = call(&mut gw, get("/sleep.php?ms=3000")).await;
    assert_eq!(status, 504);
    assert_eq!(String::from_utf8_lossy(&body), "504 Gateway Timeout\n");
}

#[test]
fn the_gateway_is_a_service_hyper_and_axum_accept() {
    fn check<S>()
    where
        S: Service<Request<hyper::body::Incoming>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Response: Send + 'static,
    {
    }
    check::<Gateway>();
}

// ---- Response framing: the script never controls HTTP framing ----------

/// GET `careless.php` with this query; the response with its body
/// collected (or the body's error).
async fn careless(
    gw: &mut Gateway,
    method: http::Method,
    query: &str,
) -> (http::response::Parts, Result<Vec<u8>, fcgi::Error>) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("/careless.php?{query}"))
        .header("host", "example.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request.extensions_mut().insert(info());
    let response = tokio::time::timeout(Duration::from_secs(20), gw.call(request))
        .await
        .expect("answered in time")
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("body in time")
        .map(|b| b.to_bytes().to_vec());
    (parts, body)
}

fn content_length(parts: &http::response::Parts) -> Option<&str> {
    parts
        .headers
        .get("content-length")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_content_length_shorter_than_the_body_cuts_the_body_there() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let (parts, body) = careless(&mut gw, http::Method::GET, "cl=5").await;
    assert_eq!(parts.status, 200);
    assert_eq!(
        content_length(&parts),
        None,
        "the gateway frames; the header is not copied"
    );
    let body = body.unwrap();
    assert_eq!(body, b"01234");
    // A streamed response (past what is gathered before the head goes out).
    let (parts, body) =
        careless(&mut gw, http::Method::GET, "cl=100000&body=x&repeat=300000").await;
    assert_eq!(parts.status, 200);
    assert_eq!(body.unwrap().len(), 100_000);
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_ends_in_an_error() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let (parts, body) = careless(&mut gw, http::Method::GET, "cl=100").await;
    assert_eq!(parts.status, 200);
    let error = body.expect_err("10 bytes of 100 must not look like a whole body");
    assert!(error.to_string().contains("90 bytes short"), "{error}");
}

#[tokio::test]
async fn a_true_content_length_frames_small_and_streamed_bodies_exactly() {
    use http_body::Body as _;
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    for (query, len) in [
        ("cl=10", 10usize),
        ("cl=3000000&body=y&repeat=3000000", 3_000_000),
    ] {
        let mut request = Request::get(format!("/careless.php?{query}"))
            .header("host", "example.com")
            .body(Full::new(Bytes::new()))
            .unwrap();
        request.extensions_mut().insert(info());
        let response = gw.call(request).await.unwrap();
        assert_eq!(
            response.body().size_hint().exact(),
            Some(len as u64),
            "{query}"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), len);
    }
}

#[tokio::test]
async fn an_invalid_or_conflicting_content_length_is_dropped_and_the_real_length_used() {
    use http_body::Body as _;
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    for query in [
        "cl=abc",
        "cl=-1",
        "h[]=Content-Length:%203&h[]=Content-Length:%207",
        "cl=1e3",
    ] {
        let mut request = Request::get(format!("/careless.php?{query}"))
            .header("host", "example.com")
            .body(Full::new(Bytes::new()))
            .unwrap();
        request.extensions_mut().insert(info());
        let response = gw.call(request).await.unwrap();
        assert_eq!(response.body().size_hint().exact(), Some(10), "{query}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"0123456789", "{query}");
    }
}

#[tokio::test]
async fn head_and_304_keep_the_declared_length_without_a_body() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let (parts, body) = careless(&mut gw, http::Method::HEAD, "cl=1234").await;
    assert_eq!(content_length(&parts), Some("1234"));
    assert_eq!(body.unwrap(), b"");
    let (parts, body) = careless(&mut gw, http::Method::GET, "status=304&cl=1234").await;
    assert_eq!(parts.status, 304);
    assert_eq!(content_length(&parts), Some("1234"));
    assert_eq!(body.unwrap(), b"");
    let (parts, body) = careless(&mut gw, http::Method::GET, "status=204&cl=10").await;
    assert_eq!(parts.status, 204);
    assert_eq!(content_length(&parts), None);
    assert_eq!(body.unwrap(), b"");
}

#[tokio::test]
async fn hop_by_hop_and_proxy_headers_from_the_script_never_pass() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let lines = [
        "Transfer-Encoding: chunked",
        "Connection: close, X-Named",
        "X-Named: secret",
        "Keep-Alive: timeout=5",
        "Upgrade: h2c",
        "Trailer: X-Checksum",
        "Proxy-Connection: keep-alive",
        "TE: trailers",
        "X-Accel-Redirect: /internal/secret",
        "X-Accel-Buffering: no",
        "X-Kept: yes",
    ];
    let query: Vec<String> = lines
        .iter()
        .map(|l| format!("h[]={}", l.replace(' ', "%20")))
        .collect();
    let (parts, body) = careless(&mut gw, http::Method::GET, &query.join("&")).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body.unwrap(), b"0123456789");
    for gone in [
        "transfer-encoding",
        "connection",
        "x-named",
        "keep-alive",
        "upgrade",
        "trailer",
        "proxy-connection",
        "te",
        "x-accel-redirect",
        "x-accel-buffering",
    ] {
        assert!(
            !parts.headers.contains_key(gone),
            "{gone} passed: {:?}",
            parts.headers
        );
    }
    assert_eq!(parts.headers["x-kept"], "yes");
}

#[tokio::test]
async fn an_informational_status_from_the_script_is_502() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    for status in ["101%20Switching%20Protocols", "100%20Continue"] {
        let (parts, _) = careless(&mut gw, http::Method::GET, &format!("status={status}")).await;
        assert_eq!(parts.status, 502, "{status}");
    }
}

// ---- Request heads ------------------------------------------------------

#[tokio::test]
async fn requests_need_exactly_one_valid_host_and_no_foreign_transfer_coding() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let cases: Vec<(http::request::Builder, u16)> = vec![
        (Request::get("/hello.php"), 400),
        (
            Request::get("/hello.php")
                .header("host", "a")
                .header("host", "b"),
            400,
        ),
        (Request::get("/hello.php").header("host", "a b"), 400),
        (Request::get("/hello.php").header("host", "a/b"), 400),
        (Request::get("/hello.php").header("host", "user@a"), 400),
        (
            Request::get("/missing/static.png").header("host", "a b"),
            400,
        ),
        (
            Request::post("/hello.php")
                .header("host", "a")
                .header("transfer-encoding", "gzip, chunked"),
            501,
        ),
        (
            Request::get("/hello.php").version(http::Version::HTTP_10),
            200,
        ),
        (Request::get("/hello.php").header("host", "[::1]:8080"), 200),
    ];
    for (builder, want) in cases {
        let mut request = builder.body(Full::new(Bytes::new())).unwrap();
        request.extensions_mut().insert(info());
        let shown = format!("{:?} {:?}", request.uri(), request.headers());
        let (status, headers, _) = call(&mut gw, request).await;
        assert_eq!(status.as_u16(), want, "{shown}");
        if want >= 400 {
            assert_eq!(headers["connection"], "close", "{shown}");
        }
    }
}

#[tokio::test]
async fn an_absolute_target_names_the_host_php_sees() {
    let fpm = fpm();
    let mut gw = gateway(&fpm).build(client(&fpm)).unwrap();
    let mut request = Request::get("http://app.example:8080/server.php")
        .header("host", "other.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request.extensions_mut().insert(info());
    let (status, _, body) = call(&mut gw, request).await;
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["server"]["HTTP_HOST"], "app.example:8080");
    assert_eq!(v["server"]["SERVER_NAME"], "app.example");
}

// ---- Request bodies: slow clients never reach PHP ---------------------

/// A body that sends `first` and then nothing, ever.
fn stalling(
    first: &'static [u8],
) -> StreamBody<impl futures_core::Stream<Item = Result<http_body::Frame<Bytes>, Infallible>>> {
    use futures_util::StreamExt;
    let head = futures_util::stream::iter([Ok(http_body::Frame::data(Bytes::from_static(first)))]);
    StreamBody::new(head.chain(futures_util::stream::pending()))
}

fn fake_client(fake: &fcgi_testkit::FakeServer) -> fcgi::AsyncClient {
    fcgi::AsyncClient::builder()
        .upstream(fake.address().as_str())
        .multiplexing(fcgi::nonblocking::Multiplexing::Disabled)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_stalled_body_never_reaches_the_application_and_is_408() {
    let fake = fcgi_testkit::FakeServer::tcp(fcgi_testkit::fake::respond_ok("ok"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("upload.php"), "<?php").unwrap();
    let mut gw = Gateway::builder(dir.path())
        .body_read_timeout(Duration::from_millis(300))
        .build(fake_client(&fake))
        .unwrap();
    for length in [Some(1000u64), None] {
        let mut request = Request::post("/upload.php").header("host", "example.com");
        if let Some(len) = length {
            request = request.header("content-length", len);
        }
        let mut request = request.body(stalling(b"first bytes")).unwrap();
        request.extensions_mut().insert(info());
        let (status, headers, _) = call(&mut gw, request).await;
        assert_eq!(status, 408, "length {length:?}");
        assert_eq!(headers["connection"], "close");
    }
    assert_eq!(fake.connections(), 0, "the application saw a slow client");
}

#[tokio::test]
async fn a_streamed_body_reaches_the_application_at_once_and_still_times_out() {
    let fake = fcgi_testkit::FakeServer::tcp(fcgi_testkit::fake::echo_stdin());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("upload.php"), "<?php").unwrap();
    let mut gw = Gateway::builder(dir.path())
        .stream_request_bodies(true)
        .body_read_timeout(Duration::from_millis(300))
        .build(fake_client(&fake))
        .unwrap();
    let mut request = Request::post("/upload.php")
        .header("host", "example.com")
        .header("content-length", 1000)
        .body(stalling(b"first bytes"))
        .unwrap();
    request.extensions_mut().insert(info());
    let (status, headers, _) = call(&mut gw, request).await;
    assert_eq!(
        fake.connections(),
        1,
        "streamed: the application is reached before the body ends"
    );
    assert_eq!(status, 408);
    assert_eq!(headers["connection"], "close");
}

#[tokio::test]
async fn a_body_ending_with_declared_too_large_is_413_and_never_reaches_the_application() {
    use futures_util::StreamExt;
    let fake = fcgi_testkit::FakeServer::tcp(fcgi_testkit::fake::respond_ok("ok"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("upload.php"), "<?php").unwrap();
    let mut gw = Gateway::builder(dir.path())
        .build(fake_client(&fake))
        .unwrap();
    let first = futures_util::stream::iter([Ok::<_, fcgi::gateway::DeclaredTooLarge>(
        http_body::Frame::data(Bytes::from_static(b"first bytes")),
    )]);
    let refused = futures_util::stream::iter([Err(fcgi::gateway::DeclaredTooLarge)]);
    let mut request = Request::post("/upload.php")
        .header("host", "example.com")
        .body(StreamBody::new(first.chain(refused)))
        .unwrap();
    request.extensions_mut().insert(info());
    let (status, headers, _) = call(&mut gw, request).await;
    assert_eq!(status, 413);
    assert_eq!(headers["connection"], "close");
    assert_eq!(fake.connections(), 0, "the application saw the request");
}

// ---- Errors of the response body name the upstream --------------------

#[tokio::test]
async fn a_small_body_short_of_its_content_length_names_the_upstream_in_its_error() {
    let fake = fcgi_testkit::FakeServer::tcp(fcgi_testkit::fake::respond_raw(
        "Content-Type: text/plain\r\nContent-Length: 10\r\n\r\nabc",
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.php"), "<?php").unwrap();
    let mut gw = Gateway::builder(dir.path())
        .build(fake_client(&fake))
        .unwrap();
    let request = Request::get("/short.php")
        .header("host", "example.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), gw.call(request))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body
        .frame()
        .await
        .expect("a frame")
        .expect("the bytes sent");
    assert_eq!(first.into_data().unwrap(), "abc");
    let error = body
        .frame()
        .await
        .expect("an error, not the end")
        .expect_err("3 bytes of 10 must not look like a whole body");
    assert!(
        matches!(&error, fcgi::Error::Protocol { address, .. } if *address == fake.address()),
        "{error:?} names {}",
        fake.address()
    );
    assert!(error.to_string().contains("7 bytes short"), "{error}");
}

#[test]
fn a_body_of_bytes_is_never_held_to_more_than_it_has() {
    use http_body::Body as _;
    let body = GatewayBody::full("abc").framed(Some(10));
    assert_eq!(body.size_hint().exact(), Some(3));
    let body = GatewayBody::full("abcdef").framed(Some(4));
    assert_eq!(body.size_hint().exact(), Some(4));
}

// ---- The gateway's own faults are 500, the upstream's 502 ------------

#[test]
fn a_fault_of_the_gateway_is_500_and_a_fault_of_the_upstream_502() {
    use fcgi::gateway::error_status;
    let internal = fcgi::Error::Internal {
        detail: "a connection's driver is gone".into(),
    };
    assert_eq!(error_status(&internal), StatusCode::INTERNAL_SERVER_ERROR);
    let protocol = fcgi::Error::Protocol {
        address: "127.0.0.1:9000".into(),
        detail: "a record of an unknown type".into(),
    };
    assert_eq!(error_status(&protocol), StatusCode::BAD_GATEWAY);
}
