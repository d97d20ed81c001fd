//! The blocking client against a real php-fpm, over TCP and a Unix socket.

use std::io::Read;

use fcgi::{Body, Client, Config, Error, Request};
use fcgi_testkit::{pattern, pattern_sha256, sha256_hex, PhpFpm};

fn script(fpm: &PhpFpm, name: &str) -> String {
    fpm.script(name).to_string_lossy().into_owned()
}

/// Runs `check` once per transport of `fpm`.
fn each_transport(fpm: &PhpFpm, check: impl Fn(&Client)) {
    for address in fpm.addresses() {
        check(&Client::new(address.as_str()).unwrap());
    }
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[test]
fn hello_world_over_both_transports() {
    let fpm = PhpFpm::start();
    each_transport(&fpm, |client| {
        let response = client
            .execute(Request::get(&script(&fpm, "hello.php")))
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.reason, "OK");
        assert_eq!(response.body, b"Hello, World!");
        assert!(response
            .headers
            .get("content-type")
            .unwrap()
            .starts_with("text/plain"));
        assert!(response.stderr.is_empty());
        assert_eq!(response.app_status, 0);
    });
}

#[test]
fn get_with_minimal_params_sees_query_and_method() {
    let fpm = PhpFpm::start();
    each_transport(&fpm, |client| {
        let request = Request::new()
            .param("REQUEST_METHOD", "GET")
            .param("SCRIPT_FILENAME", script(&fpm, "server.php"))
            .param("QUERY_STRING", "a=1&b=two");
        let response = client.execute(request).unwrap();
        let v = json(&response.body);
        assert_eq!(v["server"]["REQUEST_METHOD"], "GET");
        assert_eq!(v["get"]["a"], "1");
        assert_eq!(v["get"]["b"], "two");
    });
}

#[test]
fn post_form_data_arrives_in_post() {
    let fpm = PhpFpm::start();
    each_transport(&fpm, |client| {
        let request = Request::post(
            &script(&fpm, "server.php"),
            "application/x-www-form-urlencoded",
            "name=world&x=%26y",
        );
        let v = json(&client.execute(request).unwrap().body);
        assert_eq!(v["post"]["name"], "world");
        assert_eq!(v["post"]["x"], "&y");
        assert_eq!(v["server"]["CONTENT_LENGTH"], "17");
    });
}

#[test]
fn http_accept_header_is_seen_in_server() {
    let fpm = PhpFpm::start();
    each_transport(&fpm, |client| {
        let request =
            Request::get(&script(&fpm, "server.php")).param("HTTP_ACCEPT", "application/json");
        let v = json(&client.execute(request).unwrap().body);
        assert_eq!(v["server"]["HTTP_ACCEPT"], "application/json");
    });
}

#[test]
fn missing_script_gives_404_file_not_found_and_primary_script_unknown() {
    let fpm = PhpFpm::start();
    each_transport(&fpm, |client| {
        let response = client.execute(Request::get("/no/such/script.php")).unwrap();
        assert_eq!(response.status, 404);
        assert_eq!(response.reason, "Not Found");
        assert_eq!(response.body_text().trim_end(), "File not found.");
        assert!(
            response.stderr_text().contains("Primary script unknown"),
            "stderr: {:?}",
            response.stderr_text()
        );
    });
}

#[test]
fn repeated_set_cookie_headers_are_all_kept() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let response = client
        .execute(Request::get(&format!(
            "{}?status=201",
            script(&fpm, "headers.php")
        )))
        .unwrap();
    assert_eq!(response.status, 201);
    let cookies: Vec<_> = response.headers.get_all("set-cookie").collect();
    assert_eq!(cookies, [&b"a=1"[..], b"b=2"]);
    assert_eq!(response.headers.get("X-Custom"), Some("yes"));
}

#[test]
fn php_location_header_gives_302() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.tcp_address().as_str()).unwrap();
    let response = client
        .execute(Request::get(&format!(
            "{}?location=/next",
            script(&fpm, "headers.php")
        )))
        .unwrap();
    assert_eq!(response.status, 302);
    assert_eq!(response.headers.get("location"), Some("/next"));
}

#[test]
fn stderr_is_returned_beside_the_body() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let response = client
        .execute(Request::get(&script(&fpm, "stderr.php")))
        .unwrap();
    assert_eq!(response.body, b"ok");
    assert!(response.stderr_text().contains("message from stderr"));
    assert!(response.stderr_text().contains("warning from stderr"));
}

#[test]
fn body_of_32_mb_arrives_intact() {
    let fpm = PhpFpm::start();
    let body = pattern(32 * 1024 * 1024);
    let expected = sha256_hex(&body);
    let body = bytes::Bytes::from(body);
    each_transport(&fpm, |client| {
        let request = Request::with_method("PUT", &script(&fpm, "input_hash.php"))
            .param("CONTENT_TYPE", "application/octet-stream")
            .body(body.clone());
        let v = json(&client.execute(request).unwrap().body);
        assert_eq!(v["len"], 32 * 1024 * 1024);
        assert_eq!(v["sha256"], expected.as_str());
    });
}

#[test]
fn body_streamed_from_a_reader_arrives_intact() {
    let fpm = PhpFpm::start();
    let len = 5 * 1024 * 1024 + 3;
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let request = Request::with_method("PUT", &script(&fpm, "input_hash.php")).body(
        Body::from_reader(std::io::Cursor::new(pattern(len)), Some(len as u64)),
    );
    let v = json(&client.execute(request).unwrap().body);
    assert_eq!(v["len"], len);
    assert_eq!(v["sha256"], pattern_sha256(len).as_str());
}

#[test]
fn response_of_64_mb_streams_intact() {
    let fpm = PhpFpm::start();
    let len = 64 * 1024 * 1024;
    each_transport(&fpm, |client| {
        let mut stream = client
            .stream(Request::get(&format!(
                "{}?bytes={len}",
                script(&fpm, "output.php")
            )))
            .unwrap();
        assert_eq!(stream.status(), 200);
        let mut hasher = Sha256Writer::default();
        let copied = std::io::copy(&mut stream, &mut hasher).unwrap();
        assert_eq!(copied, len as u64);
        assert_eq!(hasher.hex(), pattern_sha256(len));
        stream.finish().unwrap();
    });
}

#[test]
fn large_output_before_reading_large_input_does_not_deadlock() {
    // 16 MB out before 16 MB in: a client that writes the whole body before
    // reading would block forever once both socket buffers are full.
    let fpm = PhpFpm::start();
    let len = 16 * 1024 * 1024;
    let input = pattern(len);
    let input_hash = sha256_hex(&input);
    let input = bytes::Bytes::from(input);
    each_transport(&fpm, |client| {
        let request = Request::with_method(
            "PUT",
            &format!("{}?out={len}", script(&fpm, "big_then_read.php")),
        )
        .body(input.clone());
        let response = client.execute(request).unwrap();
        let (out, trailer) = response.body.split_at(len);
        assert_eq!(sha256_hex(out), pattern_sha256(len));
        assert_eq!(
            std::str::from_utf8(trailer).unwrap(),
            format!("\nINPUT len={len} sha256={input_hash}")
        );
    });
}

#[test]
fn params_over_200_kb_with_large_pairs_arrive_intact() {
    let fpm = PhpFpm::start();
    let mut request = Request::get(&script(&fpm, "params.php"));
    let mut expected = serde_json::Map::new();
    let mut total = 0;
    for (i, len) in [
        60_000usize,
        60_000,
        60_000,
        0,
        127,
        128,
        65_000,
        1,
        255,
        256,
    ]
    .iter()
    .enumerate()
    {
        let name = format!("P_{i:02}");
        // PHP cuts $_SERVER values at NUL bytes, so the values stay printable.
        let value: Vec<u8> = pattern(*len).iter().map(|b| b'a' + b % 26).collect();
        total += len;
        expected.insert(name.clone(), serde_json::json!([len, sha256_hex(&value)]));
        request = request.param(&name, &value);
    }
    for i in 0..500 {
        let name = format!("X_{i:04}");
        let value = format!("value number {i}");
        total += value.len();
        expected.insert(
            name.clone(),
            serde_json::json!([value.len(), sha256_hex(value.as_bytes())]),
        );
        request = request.param(&name, &value);
    }
    assert!(total > 200_000);
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let response = client.execute(request).unwrap();
    let seen = json(&response.body);
    let seen = seen.as_object().expect("a JSON object");
    assert_eq!(seen.len(), expected.len(), "number of params PHP saw");
    for (name, want) in &expected {
        assert_eq!(seen.get(name), Some(want), "param {name}");
    }
}

#[test]
fn a_single_param_too_large_for_one_record_is_refused_before_sending() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let huge = vec![b'x'; 70_000];
    let err = client
        .execute(Request::get(&script(&fpm, "hello.php")).param("HTTP_HUGE", &huge))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    assert!(err.to_string().contains("HTTP_HUGE"), "{err}");
}

#[test]
fn keep_alive_survives_max_requests_with_zero_failures() {
    let fpm = PhpFpm::builder().max_children(2).max_requests(3).start();
    let config = Config::default().keep_alive(true);
    for address in fpm.addresses() {
        let client = Client::with_config(address.as_str(), config.clone()).unwrap();
        for i in 0..100 {
            let response = client
                .execute(Request::get(&format!(
                    "{}?i={i}",
                    script(&fpm, "server.php")
                )))
                .unwrap_or_else(|e| panic!("request {i} over {address}: {e}"));
            assert_eq!(json(&response.body)["get"]["i"], i.to_string());
        }
    }
}

#[test]
fn streamed_response_can_be_dropped_midway() {
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let mut stream = client
        .stream(Request::get(&format!(
            "{}?bytes={}",
            script(&fpm, "output.php"),
            50_000_000
        )))
        .unwrap();
    let mut first = vec![0u8; 100_000];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(first, pattern(100_000));
    drop(stream);
    // The pool still answers afterwards.
    assert_eq!(
        client
            .execute(Request::get(&script(&fpm, "hello.php")))
            .unwrap()
            .body,
        b"Hello, World!"
    );
}

/// Hashes what is written to it.
#[derive(Default)]
struct Sha256Writer(sha2::Sha256);

impl Sha256Writer {
    fn hex(self) -> String {
        use sha2::Digest;
        fcgi_testkit::pattern::hex(&self.0.finalize())
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_streamed_response_knows_when_its_request_began() {
    let fpm = PhpFpm::start();
    each_transport(&fpm, |client| {
        let before = std::time::Instant::now();
        let stream = client
            .stream(Request::get(&format!(
                "{}?ms=150",
                script(&fpm, "sleep.php")
            )))
            .unwrap();
        let began = stream.started();
        stream.finish().unwrap();
        let after = std::time::Instant::now();
        assert!(before <= began && began <= after);
        // The script's sleep lies between the start and the end.
        assert!(began.elapsed() >= std::time::Duration::from_millis(150));
    });
}

#[test]
fn stderr_stays_with_its_own_response_on_a_kept_connection() {
    // The response state is kept with the connection and restarted per
    // request: one request's STDERR must not show in the next one's.
    let fpm = PhpFpm::start();
    let client = Client::with_config(
        fpm.unix_address().as_str(),
        Config::default().keep_alive(true),
    )
    .unwrap();
    let noisy = client
        .execute(Request::get(&script(&fpm, "stderr.php")))
        .unwrap();
    assert!(noisy.stderr_text().contains("message from stderr"));
    let quiet = client
        .execute(Request::get(&script(&fpm, "hello.php")))
        .unwrap();
    assert!(quiet.stderr.is_empty(), "{}", quiet.stderr_text());
    let noisy = client
        .stream(Request::get(&script(&fpm, "stderr.php")))
        .unwrap()
        .finish()
        .unwrap();
    assert!(String::from_utf8_lossy(&noisy.stderr).contains("warning from stderr"));
    let quiet = client
        .stream(Request::get(&script(&fpm, "hello.php")))
        .unwrap();
    assert!(quiet.stderr().is_empty());
    assert!(quiet.finish().unwrap().stderr.is_empty());
}
