//! The request's first bytes, for both clients: BEGIN_REQUEST, PARAMS and
//! (for a small body in memory) the whole STDIN/DATA streams in one buffer;
//! rewriting an encoded request's id and FCGI_KEEP_CONN flag so it can go out
//! again on another connection without being encoded again; and the send
//! buffer a connection keeps between requests.

use fcgi_proto::encode::{encode_begin_request, encode_params, encode_stream, ParamsOptions};
use fcgi_proto::record::{Header, RecordType, FLAG_KEEP_CONN, HEADER_LEN};

use super::trace::trace_sent_records;
use super::SINGLE_REQUEST_ID;
use crate::config::Config;
use crate::error::{Error, Limit};
use crate::request::{Body, Request};

/// Requests whose encoded form is at most this many bytes, body included, go
/// out in one write with no writer thread or task: a socket buffer holds them
/// whole, so the write cannot wait on the server.
pub(crate) const INLINE_REQUEST_MAX: usize = 64 * 1024;

/// Largest send buffer an idle connection keeps for its next request start
/// (both transports); larger ones (a request with an inline body) are freed.
const KEPT_OUT_CAPACITY: usize = 8 * 1024;

/// A send buffer to keep with a connection for its next request: emptied,
/// or freed when it grew past [`KEPT_OUT_CAPACITY`].
pub(crate) fn kept_out(mut out: Vec<u8>) -> Vec<u8> {
    if out.capacity() > KEPT_OUT_CAPACITY {
        return Vec::new();
    }
    out.clear();
    out
}

/// Encodes BEGIN_REQUEST and PARAMS into `out`, and the whole body with its
/// terminator when the body is in memory and the request stays within
/// [`INLINE_REQUEST_MAX`]. Returns true when the body was included (nothing
/// more to write) — the DATA stream too, when the role uses it.
pub(crate) fn encode_request_start(
    request_id: u16,
    request: &Request,
    config: &Config,
    keep_conn: bool,
    out: &mut Vec<u8>,
) -> Result<bool, Error> {
    if request.params.len() > config.limits.max_params {
        return Err(Error::LimitExceeded {
            limit: Limit::Params,
            max: config.limits.max_params,
        });
    }
    let start = out.len();
    encode_begin_request(request_id, request.role, keep_conn, out);
    let options = ParamsOptions {
        split_oversized: config.split_oversized_params,
        ..ParamsOptions::default()
    };
    encode_params(request_id, request.params.iter(), &options, out)?;
    let uses_data = request.role == fcgi_proto::record::Role::Filter;
    let body = in_memory(&request.body);
    let data = if uses_data {
        in_memory(&request.data)
    } else {
        Some(&[][..])
    };
    if let (Some(body), Some(data)) = (body, data) {
        if out.len() + body.len() + data.len() <= INLINE_REQUEST_MAX {
            encode_stream(RecordType::Stdin, request_id, body, true, out);
            if uses_data {
                encode_stream(RecordType::Data, request_id, data, true, out);
            }
            trace_sent_records(&out[start..]);
            return Ok(true);
        }
    }
    trace_sent_records(&out[start..]);
    Ok(false)
}

/// The bytes of a body held in memory, or `None` for a reader.
fn in_memory(body: &Body) -> Option<&[u8]> {
    match body {
        Body::Empty => Some(&[]),
        Body::Bytes(b) => Some(b),
        Body::Reader { .. } | Body::Async(_) => None,
    }
}

/// Rewrites the request id of every record in `records` (whole records, as
/// the encoder makes them), so one encoded request can go out under the id
/// its connection assigns.
pub(crate) fn set_request_id(records: &mut [u8], request_id: u16) {
    let id = request_id.to_be_bytes();
    let mut at = 0;
    while at + HEADER_LEN <= records.len() {
        let header = Header::parse(
            records[at..at + HEADER_LEN]
                .try_into()
                .unwrap_or(&[0; HEADER_LEN]),
        );
        records[at + 2..at + 4].copy_from_slice(&id);
        at += HEADER_LEN + header.body_len();
    }
}

/// Copies the encoded request `records` into `out` (cleared first) under
/// request id `id`, asking the server to keep the connection or not.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the async client's
pub(crate) fn readdress(records: &[u8], id: u16, keep_conn: bool, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(records);
    if id != SINGLE_REQUEST_ID {
        set_request_id(out, id);
    }
    if keep_conn_flag(out) != Some(keep_conn) {
        set_keep_conn(out, keep_conn);
    }
}

/// Byte of BEGIN_REQUEST's flags in an encoded request (its first record).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the async client's
const BEGIN_FLAGS_AT: usize = HEADER_LEN + 2;

/// Whether the encoded request `records` (BEGIN_REQUEST first) ask the
/// server to keep the connection; `None` when they do not start so.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the async client's
pub(crate) fn keep_conn_flag(records: &[u8]) -> Option<bool> {
    let begin = records.get(..HEADER_LEN + 8)?;
    (begin[1] == RecordType::BeginRequest as u8)
        .then(|| begin[BEGIN_FLAGS_AT] & FLAG_KEEP_CONN != 0)
}

/// Sets or clears FCGI_KEEP_CONN in the encoded request `records`.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the async client's
pub(crate) fn set_keep_conn(records: &mut [u8], keep_conn: bool) {
    if keep_conn_flag(records).is_some() {
        if keep_conn {
            records[BEGIN_FLAGS_AT] |= FLAG_KEEP_CONN;
        } else {
            records[BEGIN_FLAGS_AT] &= !FLAG_KEEP_CONN;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_readdressed_without_encoding_it_again() {
        let request = Request::get("/x.php").param("A", "1");
        let mut records = Vec::new();
        let complete = encode_request_start(
            SINGLE_REQUEST_ID,
            &request,
            &Config::default(),
            false,
            &mut records,
        )
        .unwrap();
        assert!(complete);
        assert_eq!(keep_conn_flag(&records), Some(false));
        set_keep_conn(&mut records, true);
        set_request_id(&mut records, 7);
        let mut expected = Vec::new();
        encode_request_start(7, &request, &Config::default(), true, &mut expected).unwrap();
        assert_eq!(records, expected);
        assert_eq!(keep_conn_flag(&records), Some(true));
        set_keep_conn(&mut records, false);
        assert_eq!(keep_conn_flag(&records), Some(false));
        // Bytes that do not start with BEGIN_REQUEST are left alone.
        let mut other = vec![1, 4, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
        set_keep_conn(&mut other, false);
        assert_eq!(other[10], 1);
        assert_eq!(keep_conn_flag(&other), None);
    }
}
