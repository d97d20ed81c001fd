//! The gateway's request checks and CGI params from arbitrary request
//! heads: nothing panics; every param name is a CGI name; a request header
//! only ever becomes an `HTTP_*` param (or CONTENT_TYPE / CONTENT_LENGTH),
//! so no header can set a param the gateway owns (SCRIPT_FILENAME,
//! PATH_INFO, DOCUMENT_ROOT, ...); and an accepted head gives PHP exactly
//! one Host.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use fcgi::gateway::{check_request_head, ConnectionInfo, Gateway, Script};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Head {
    method: String,
    uri: String,
    http10: bool,
    headers: Vec<(String, Vec<u8>)>,
    body_len: Option<u64>,
    underscores: bool,
}

/// The params only the gateway sets (never from a header).
const OWNED: &[&str] = &[
    "GATEWAY_INTERFACE",
    "SERVER_SOFTWARE",
    "SERVER_PROTOCOL",
    "REQUEST_METHOD",
    "REQUEST_URI",
    "QUERY_STRING",
    "DOCUMENT_ROOT",
    "DOCUMENT_URI",
    "SCRIPT_NAME",
    "SCRIPT_FILENAME",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "CONTENT_LENGTH",
    "REQUEST_SCHEME",
    "HTTPS",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_ADDR",
    "SERVER_PORT",
    "SERVER_NAME",
    "REDIRECT_STATUS",
];

fn gateways() -> &'static [Gateway; 2] {
    static GATEWAYS: OnceLock<(tempfile::TempDir, [Gateway; 2])> = OnceLock::new();
    &GATEWAYS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let build = |underscores| {
                let client = fcgi::AsyncClient::new("127.0.0.1:9").unwrap();
                Gateway::builder(dir.path())
                    .allow_underscore_headers(underscores)
                    .build(client)
                    .unwrap()
            };
            let gateways = [build(false), build(true)];
            (dir, gateways)
        })
        .1
}

fuzz_target!(|head: Head| {
    let mut builder = http::Request::builder()
        .method(head.method.as_str())
        .uri(head.uri.as_str())
        .version(if head.http10 { http::Version::HTTP_10 } else { http::Version::HTTP_11 });
    for (name, value) in &head.headers {
        builder = builder.header(name.as_str(), &value[..]);
    }
    let Ok(request) = builder.body(()) else { return };
    let (parts, ()) = request.into_parts();
    let accepted = check_request_head(&parts).is_ok();
    let gateway = &gateways()[usize::from(head.underscores)];
    let script =
        Script::new("/index.php", gateway.document_root().join("index.php")).path_info("/p");
    let conn = ConnectionInfo::new(
        Some("192.0.2.1:1234".parse().unwrap()),
        Some("192.0.2.2:80".parse().unwrap()),
    );
    let params = gateway.params(&parts, &conn, &script, head.body_len);
    for (name, _) in params.iter() {
        assert!(!name.is_empty(), "empty param name");
        assert!(
            name.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_'),
            "param name {:?}",
            String::from_utf8_lossy(name)
        );
        let name = std::str::from_utf8(name).unwrap();
        assert!(
            name.starts_with("HTTP_") || name == "CONTENT_TYPE" || OWNED.contains(&name),
            "unexpected param {name}"
        );
    }
    let get = |name: &str| params.get(name).map(|v| v.to_vec());
    assert_eq!(get("SCRIPT_FILENAME").unwrap(), script.filename.to_str().unwrap().as_bytes());
    assert_eq!(get("SCRIPT_NAME").unwrap(), b"/index.php");
    assert_eq!(get("PATH_INFO").unwrap(), b"/p");
    assert_eq!(get("DOCUMENT_ROOT").unwrap(), gateway.document_root().to_str().unwrap().as_bytes());
    assert_eq!(get("REQUEST_METHOD").unwrap(), parts.method.as_str().as_bytes());
    assert_eq!(get("CONTENT_LENGTH"), head.body_len.map(|l| l.to_string().into_bytes()));
    assert_eq!(get("REMOTE_ADDR").unwrap(), b"192.0.2.1");
    assert!(get("HTTP_PROXY").is_none(), "httpoxy");
    if accepted {
        let hosts: Vec<_> = parts.headers.get_all(http::header::HOST).iter().collect();
        assert!(hosts.len() <= 1);
        let host = parts.uri.authority().map(|a| a.as_str().as_bytes().to_vec())
            .or_else(|| hosts.first().map(|h| h.as_bytes().to_vec()));
        assert_eq!(get("HTTP_HOST"), host, "PHP sees exactly the one Host");
    }
});
