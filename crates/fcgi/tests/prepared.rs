//! `Client::prepare` and `Client::stream_prepared`: a request encoded once
//! and sent many times, against the fake server.

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fcgi::{Body, Client, Config, Error, Request};
use fcgi_testkit::fake::{self, serve};
use fcgi_testkit::{FakeServer, ReceivedRequest};

const SCRIPT: &str = "/srv/www/test.php";

fn config() -> Config {
    Config::default()
        .connect_timeout(Duration::from_millis(500))
        .idle_timeout(Duration::from_millis(500))
        .deadline(Duration::from_secs(3))
}

/// A server that answers "ok" and records every request it received.
fn recording_server() -> (FakeServer, Arc<Mutex<Vec<ReceivedRequest>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let server = FakeServer::unix(serve(move |conn, req| {
        log.lock().unwrap().push(req.clone());
        conn.respond(req.id, b"Content-Type: text/plain\r\n\r\nok");
    }));
    (server, seen)
}

fn body_of(client: &Client, prepared: &fcgi::PreparedRequest) -> Vec<u8> {
    let mut stream = client.stream_prepared(prepared).unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = Vec::new();
    while let Some(chunk) = stream.next_chunk().unwrap() {
        if let fcgi::Chunk::Body(bytes) = chunk {
            body.extend_from_slice(bytes);
        }
    }
    body
}

#[test]
fn a_prepared_request_goes_out_as_the_request_would_with_a_new_id_each_time() {
    let (server, seen) = recording_server();
    let client = Client::with_config(server.address(), config().keep_alive(true)).unwrap();
    let request = || Request::get(SCRIPT).param("X_A", "1");
    client.execute(request()).unwrap();
    let prepared = client.prepare(request()).unwrap();
    for _ in 0..3 {
        assert_eq!(body_of(&client, &prepared), b"ok");
    }
    let seen = seen.lock().unwrap();
    let ids: Vec<u16> = seen.iter().map(|r| r.id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    for received in &seen[1..] {
        assert_eq!(received.params, seen[0].params);
        assert!(received.keep_conn);
    }
    assert_eq!(server.connections(), 1);
}

#[test]
fn a_prepared_body_is_sent_each_time_with_its_content_length() {
    let server = FakeServer::unix(fake::echo_stdin());
    let client = Client::with_config(server.address(), config().keep_alive(true)).unwrap();
    let prepared = client
        .prepare(Request::post(SCRIPT, "text/plain", "hello"))
        .unwrap();
    assert_eq!(
        prepared.request().params().get("CONTENT_LENGTH"),
        Some(&b"5"[..])
    );
    for _ in 0..2 {
        assert_eq!(body_of(&client, &prepared), b"hello");
    }
}

#[test]
fn a_client_with_other_settings_encodes_a_prepared_request_afresh() {
    let (server, seen) = recording_server();
    let keeping = Client::with_config(server.address(), config().keep_alive(true)).unwrap();
    let closing = Client::with_config(server.address(), config().keep_alive(false)).unwrap();
    let prepared = keeping.prepare(Request::get(SCRIPT)).unwrap();
    assert_eq!(body_of(&closing, &prepared), b"ok");
    assert!(!seen.lock().unwrap()[0].keep_conn);
}

#[test]
fn a_body_read_from_a_reader_cannot_be_prepared() {
    let client = Client::new("unix:/nonexistent/fcgi.sock").unwrap();
    let body = Body::from_reader(Cursor::new(b"once".to_vec()), Some(4));
    let error = client.prepare(Request::get(SCRIPT).body(body)).unwrap_err();
    assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
}
