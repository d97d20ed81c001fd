//! An independent FastCGI record codec and a tiny blocking client.
//!
//! The encoders are deliberately separate from `fcgi-proto`, so that tests of
//! the production crates check the wire bytes against a second implementation
//! (name-value decoding uses `fcgi_proto::nv::PairIter`). Everything here works
//! on raw bytes: [`record_with`] can produce any header, including wrong
//! versions and odd padding.

use std::io::{self, Read, Write};
use std::thread;
use std::time::Duration;

use crate::stream::Stream;

/// Protocol version 1.
pub const VERSION: u8 = 1;
/// Record type `FCGI_BEGIN_REQUEST`.
pub const BEGIN_REQUEST: u8 = 1;
/// Record type `FCGI_ABORT_REQUEST`.
pub const ABORT_REQUEST: u8 = 2;
/// Record type `FCGI_END_REQUEST`.
pub const END_REQUEST: u8 = 3;
/// Record type `FCGI_PARAMS`.
pub const PARAMS: u8 = 4;
/// Record type `FCGI_STDIN`.
pub const STDIN: u8 = 5;
/// Record type `FCGI_STDOUT`.
pub const STDOUT: u8 = 6;
/// Record type `FCGI_STDERR`.
pub const STDERR: u8 = 7;
/// Record type `FCGI_DATA`.
pub const DATA: u8 = 8;
/// Record type `FCGI_GET_VALUES`.
pub const GET_VALUES: u8 = 9;
/// Record type `FCGI_GET_VALUES_RESULT`.
pub const GET_VALUES_RESULT: u8 = 10;
/// Record type `FCGI_UNKNOWN_TYPE`.
pub const UNKNOWN_TYPE: u8 = 11;

/// Role `FCGI_RESPONDER`.
pub const RESPONDER: u16 = 1;
/// Role `FCGI_AUTHORIZER`.
pub const AUTHORIZER: u16 = 2;
/// Role `FCGI_FILTER`.
pub const FILTER: u16 = 3;

/// Flag bit `FCGI_KEEP_CONN` of BEGIN_REQUEST.
pub const KEEP_CONN: u8 = 1;

/// Protocol status `FCGI_REQUEST_COMPLETE`.
pub const REQUEST_COMPLETE: u8 = 0;
/// Protocol status `FCGI_CANT_MPX_CONN`.
pub const CANT_MPX_CONN: u8 = 1;
/// Protocol status `FCGI_OVERLOADED`.
pub const OVERLOADED: u8 = 2;
/// Protocol status `FCGI_UNKNOWN_ROLE`.
pub const UNKNOWN_ROLE: u8 = 3;

/// Largest record content.
pub const MAX_CONTENT: usize = 65535;
/// Content size php-fpm uses for its own STDOUT records (65535 rounded down to 8).
pub const FPM_CHUNK: usize = 65528;

/// Default read timeout of [`RawClient`], so a broken test fails instead of hanging.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One record exactly as read from the wire (padding bytes dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Version byte of the header.
    pub version: u8,
    /// Record type byte.
    pub record_type: u8,
    /// Request id.
    pub request_id: u16,
    /// Content bytes.
    pub content: Vec<u8>,
    /// Padding length announced by the header.
    pub padding_len: u8,
}

/// Encodes a record with version 1 and no padding.
///
/// # Panics
/// If `content` is longer than 65535 bytes.
pub fn record(record_type: u8, request_id: u16, content: &[u8]) -> Vec<u8> {
    record_with(VERSION, record_type, request_id, content, 0)
}

/// Encodes a record with any version and `padding` garbage padding bytes
/// (`0xA5`); the header's reserved byte is 0.
///
/// # Panics
/// If `content` is longer than 65535 bytes (use raw bytes for impossible lengths).
pub fn record_with(
    version: u8,
    record_type: u8,
    request_id: u16,
    content: &[u8],
    padding: u8,
) -> Vec<u8> {
    let len = u16::try_from(content.len()).expect("record content must be at most 65535 bytes");
    let mut out = Vec::with_capacity(8 + content.len() + usize::from(padding));
    out.push(version);
    out.push(record_type);
    out.extend_from_slice(&request_id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.push(padding);
    out.push(0);
    out.extend_from_slice(content);
    out.resize(out.len() + usize::from(padding), 0xA5);
    out
}

/// BEGIN_REQUEST record for `role`, with `FCGI_KEEP_CONN` if `keep_conn`.
pub fn begin_request(request_id: u16, role: u16, keep_conn: bool) -> Vec<u8> {
    let mut body = [0u8; 8];
    body[..2].copy_from_slice(&role.to_be_bytes());
    body[2] = if keep_conn { KEEP_CONN } else { 0 };
    record(BEGIN_REQUEST, request_id, &body)
}

/// END_REQUEST body: appStatus, protocolStatus and the 3 reserved bytes given.
pub fn end_request_body(app_status: u32, protocol_status: u8, reserved: [u8; 3]) -> [u8; 8] {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&app_status.to_be_bytes());
    body[4] = protocol_status;
    body[5..].copy_from_slice(&reserved);
    body
}

/// Appends the length of a name or value: one byte below 128, else four bytes
/// big-endian with the top bit set.
pub fn encode_len(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        let len = u32::try_from(len).expect("name-value length must fit 31 bits");
        out.extend_from_slice(&(len | 0x8000_0000).to_be_bytes());
    }
}

/// Encodes one name-value pair.
pub fn encode_pair(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + value.len() + 8);
    encode_len(&mut out, name.len());
    encode_len(&mut out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    out
}

/// Encodes name-value pairs back to back.
pub fn encode_pairs<I, K, V>(pairs: I) -> Vec<u8>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(&encode_pair(k.as_ref(), v.as_ref()));
    }
    out
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Decodes back-to-back name-value pairs with `fcgi_proto::nv::PairIter`.
/// Truncated input is an `InvalidData` error.
pub fn decode_pairs(buf: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    fcgi_proto::nv::PairIter::new(buf)
        .map(|pair| {
            pair.map(|(n, v)| (n.to_vec(), v.to_vec()))
                .map_err(|e| invalid(e.to_string()))
        })
        .collect()
}

/// Encodes a whole stream (PARAMS, STDIN or DATA): records of at most `chunk`
/// content bytes, then the empty terminating record.
pub fn stream_records(record_type: u8, request_id: u16, data: &[u8], chunk: usize) -> Vec<u8> {
    let chunk = chunk.clamp(1, MAX_CONTENT);
    let mut out = Vec::with_capacity(data.len() + 8 * (data.len() / chunk + 2));
    for part in data.chunks(chunk) {
        out.extend_from_slice(&record(record_type, request_id, part));
    }
    out.extend_from_slice(&record(record_type, request_id, &[]));
    out
}

/// Encodes PARAMS records php-fpm accepts: every pair whole inside one record
/// (records up to 65535 bytes), then the empty PARAMS record. A single pair
/// larger than one record is split across records (legal FastCGI, but php-fpm
/// resets the connection).
pub fn params_records<I, K, V>(request_id: u16, pairs: I) -> Vec<u8>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut out = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for (k, v) in pairs {
        let pair = encode_pair(k.as_ref(), v.as_ref());
        if current.len() + pair.len() > MAX_CONTENT && !current.is_empty() {
            out.extend_from_slice(&record(PARAMS, request_id, &current));
            current.clear();
        }
        if pair.len() > MAX_CONTENT {
            for part in pair.chunks(MAX_CONTENT) {
                out.extend_from_slice(&record(PARAMS, request_id, part));
            }
        } else {
            current.extend_from_slice(&pair);
        }
    }
    if !current.is_empty() {
        out.extend_from_slice(&record(PARAMS, request_id, &current));
    }
    out.extend_from_slice(&record(PARAMS, request_id, &[]));
    out
}

/// A whole RESPONDER request: BEGIN_REQUEST, PARAMS (see [`params_records`]),
/// STDIN in 65528-byte records and the empty STDIN record.
pub fn build_request<I, K, V>(request_id: u16, keep_conn: bool, params: I, stdin: &[u8]) -> Vec<u8>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut out = begin_request(request_id, RESPONDER, keep_conn);
    out.extend_from_slice(&params_records(request_id, params));
    out.extend_from_slice(&stream_records(STDIN, request_id, stdin, FPM_CHUNK));
    out
}

/// The usual CGI params for running `script_filename` on php-fpm:
/// `SCRIPT_FILENAME`, `SCRIPT_NAME` (`/` + file name), `REQUEST_URI`,
/// `DOCUMENT_URI`, `REQUEST_METHOD`, `QUERY_STRING`, `SERVER_PROTOCOL`,
/// `GATEWAY_INTERFACE`, `SERVER_NAME`, `SERVER_PORT`, `REMOTE_ADDR`, and
/// `CONTENT_LENGTH` + `CONTENT_TYPE: application/octet-stream` when
/// `body_len` is non-zero.
pub fn php_params(
    script_filename: &str,
    method: &str,
    query: &str,
    body_len: usize,
) -> Vec<(String, String)> {
    let name = script_filename
        .rsplit('/')
        .next()
        .unwrap_or(script_filename);
    let script_name = format!("/{name}");
    let uri = if query.is_empty() {
        script_name.clone()
    } else {
        format!("{script_name}?{query}")
    };
    let mut p = vec![
        ("SCRIPT_FILENAME".to_string(), script_filename.to_string()),
        ("SCRIPT_NAME".to_string(), script_name.clone()),
        ("DOCUMENT_URI".to_string(), script_name),
        ("REQUEST_URI".to_string(), uri),
        ("REQUEST_METHOD".to_string(), method.to_string()),
        ("QUERY_STRING".to_string(), query.to_string()),
        ("SERVER_PROTOCOL".to_string(), "HTTP/1.1".to_string()),
        ("GATEWAY_INTERFACE".to_string(), "CGI/1.1".to_string()),
        ("SERVER_NAME".to_string(), "localhost".to_string()),
        ("SERVER_PORT".to_string(), "80".to_string()),
        ("REMOTE_ADDR".to_string(), "127.0.0.1".to_string()),
    ];
    if body_len > 0 {
        p.push(("CONTENT_LENGTH".to_string(), body_len.to_string()));
        p.push((
            "CONTENT_TYPE".to_string(),
            "application/octet-stream".to_string(),
        ));
    }
    p
}

/// Reads one record. `Ok(None)` on a clean EOF before the first header byte;
/// EOF inside a record is `UnexpectedEof`.
pub fn read_record<R: Read>(r: &mut R) -> io::Result<Option<RawRecord>> {
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {got} bytes of a record header"),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let content_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let padding_len = header[6];
    let mut content = vec![0u8; content_len];
    r.read_exact(&mut content)?;
    let mut padding = vec![0u8; usize::from(padding_len)];
    r.read_exact(&mut padding)?;
    Ok(Some(RawRecord {
        version: header[0],
        record_type: header[1],
        request_id: u16::from_be_bytes([header[2], header[3]]),
        content,
        padding_len,
    }))
}

/// A response collected by [`RawClient`].
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// Concatenated STDOUT content (CGI head and body).
    pub stdout: Vec<u8>,
    /// Concatenated STDERR content.
    pub stderr: Vec<u8>,
    /// appStatus of END_REQUEST.
    pub app_status: u32,
    /// protocolStatus of END_REQUEST.
    pub protocol_status: u8,
    /// Every record of the request, END_REQUEST included, in arrival order.
    pub records: Vec<RawRecord>,
}

impl RawResponse {
    fn split(&self) -> (&[u8], &[u8]) {
        // The head ends at the first empty line (CRLF or LF line endings).
        let s = &self.stdout;
        let mut start = 0;
        while let Some(nl) = s[start..].iter().position(|&b| b == b'\n') {
            let line = &s[start..start + nl];
            if line.is_empty() || line == b"\r" {
                return (&s[..start], &s[start + nl + 1..]);
            }
            start += nl + 1;
        }
        (&s[..], &[])
    }

    /// The CGI head (before the first blank line), lossily decoded.
    pub fn head(&self) -> String {
        String::from_utf8_lossy(self.split().0).into_owned()
    }

    /// The body (after the first blank line).
    pub fn body(&self) -> &[u8] {
        self.split().1
    }

    /// The body, lossily decoded.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }

    /// STDERR, lossily decoded.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Values of every head line named `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.head()
            .lines()
            .filter_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .collect()
    }

    /// The `Status:` code of the head, 200 if there is none.
    pub fn status(&self) -> u16 {
        self.header_values("Status")
            .first()
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(200)
    }
}

/// A blocking FastCGI client on one connection, for tests of the server side.
#[derive(Debug)]
pub struct RawClient {
    stream: Stream,
}

impl RawClient {
    /// Connects to `address` (`"unix:/path"` or `"host:port"`), with read and
    /// write timeouts of [`DEFAULT_TIMEOUT`].
    pub fn connect(address: &str) -> io::Result<RawClient> {
        let stream = Stream::connect(address)?;
        stream.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        stream.set_write_timeout(Some(DEFAULT_TIMEOUT))?;
        Ok(RawClient { stream })
    }

    /// The underlying stream.
    pub fn stream(&mut self) -> &mut Stream {
        &mut self.stream
    }

    /// Writes raw bytes.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads one record (`None` on EOF).
    pub fn read_record(&mut self) -> io::Result<Option<RawRecord>> {
        read_record(&mut self.stream)
    }

    /// Sends a RESPONDER request and reads its response. The request bytes are
    /// written from a second thread while the response is read, so large
    /// bodies and large outputs cannot deadlock.
    pub fn request<I, K, V>(
        &mut self,
        request_id: u16,
        keep_conn: bool,
        params: I,
        stdin: &[u8],
    ) -> io::Result<RawResponse>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let bytes = build_request(request_id, keep_conn, params, stdin);
        self.send_and_read(request_id, bytes)
    }

    /// Writes `bytes` (from a second thread) and reads the response to
    /// `request_id` until its END_REQUEST.
    pub fn send_and_read(&mut self, request_id: u16, bytes: Vec<u8>) -> io::Result<RawResponse> {
        let mut writer = self.stream.try_clone()?;
        let handle = thread::spawn(move || -> io::Result<()> {
            writer.write_all(&bytes)?;
            writer.flush()
        });
        let result = self.read_response(request_id);
        if result.is_err() {
            // Unblock a writer stuck on a server that stopped reading.
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
        }
        // A write error (the server closed early) only matters if the
        // response could not be read, and then the read error says more.
        let _ = handle.join();
        result
    }

    /// Reads records until the END_REQUEST of `request_id`. EOF before it is
    /// an `UnexpectedEof` error.
    pub fn read_response(&mut self, request_id: u16) -> io::Result<RawResponse> {
        let mut resp = RawResponse::default();
        loop {
            let rec = read_record(&mut self.stream)?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF before END_REQUEST; stdout so far: {:?}, stderr: {:?}",
                        String::from_utf8_lossy(&resp.stdout),
                        String::from_utf8_lossy(&resp.stderr)
                    ),
                )
            })?;
            let mine = rec.request_id == request_id;
            match rec.record_type {
                STDOUT if mine => resp.stdout.extend_from_slice(&rec.content),
                STDERR if mine => resp.stderr.extend_from_slice(&rec.content),
                END_REQUEST if mine => {
                    if rec.content.len() >= 5 {
                        let c = &rec.content;
                        resp.app_status = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                        resp.protocol_status = c[4];
                    }
                    resp.records.push(rec);
                    return Ok(resp);
                }
                _ => {}
            }
            resp.records.push(rec);
        }
    }
}

/// One-shot request on a fresh connection (no keep-alive), request id 1.
pub fn request<I, K, V>(address: &str, params: I, stdin: &[u8]) -> io::Result<RawResponse>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    RawClient::connect(address)?.request(1, false, params, stdin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_lengths_127_128() {
        for n in [0usize, 1, 127, 128, 300, 70_000] {
            let name = vec![b'N'; n];
            let value = vec![b'v'; n + 1];
            let enc = encode_pair(&name, &value);
            let hdr = (if n < 128 { 1 } else { 4 }) + (if n + 1 < 128 { 1 } else { 4 });
            assert_eq!(enc.len(), hdr + 2 * n + 1, "n={n}");
            assert_eq!(
                decode_pairs(&enc).expect("valid pairs"),
                vec![(name, value)]
            );
        }
        assert!(decode_pairs(&[5, 1, b'a']).is_err());
        assert!(decode_pairs(&[0x80, 0]).is_err());
    }

    #[test]
    fn record_roundtrip() {
        let bytes = record_with(1, STDOUT, 7, b"hello", 3);
        assert_eq!(bytes.len(), 8 + 5 + 3);
        let rec = read_record(&mut &bytes[..])
            .expect("read ok")
            .expect("one record");
        assert_eq!(rec.content, b"hello");
        assert_eq!(rec.padding_len, 3);
        assert_eq!(rec.request_id, 7);
        assert!(read_record(&mut &bytes[..4]).is_err());
        assert!(read_record(&mut &b""[..]).expect("clean EOF").is_none());
    }

    #[test]
    fn params_records_keep_pairs_whole() {
        let big = "x".repeat(40_000);
        let pairs = vec![("A", big.as_str()), ("B", big.as_str())];
        let bytes = params_records(1, pairs.clone());
        let mut r = &bytes[..];
        let mut n = 0;
        while let Some(rec) = read_record(&mut r).expect("valid records") {
            if rec.content.is_empty() {
                break;
            }
            assert_eq!(decode_pairs(&rec.content).expect("whole pairs").len(), 1);
            n += 1;
        }
        assert_eq!(n, 2);
    }
}
