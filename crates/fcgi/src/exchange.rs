//! The sans-IO half of one request/response exchange, shared by the blocking
//! and async transports: encoding the request's first bytes, and turning
//! decoder events into head, body and stderr with the limits applied.

use std::ops::Range;
use std::sync::Arc;

use fcgi_proto::decode::{Decoder, EndRequest, Event};
use fcgi_proto::encode::{encode_begin_request, encode_params, encode_stream, ParamsOptions};
use fcgi_proto::head::{Head, HeadParser};
use fcgi_proto::record::{type_name, Header, RecordType, FLAG_KEEP_CONN, HEADER_LEN};

use crate::config::{Config, Limits};
use crate::error::{Error, Limit};
use crate::request::{Body, Request};

mod failure;
mod request_id;
mod reuse;
mod stream;
mod timer;
mod values;

pub(crate) use failure::Failure;
#[cfg(feature = "tokio")]
pub(crate) use request_id::first_free_request_id;
pub(crate) use request_id::{following_request_id, SINGLE_REQUEST_ID};
pub(crate) use reuse::reusable_after_end;
pub(crate) use stream::StreamEncoder;
pub(crate) use timer::Timer;
pub(crate) use values::ValuesAnswer;

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

/// The `tracing` target of the record trace: one TRACE event per record
/// encoded for sending and per event decoded from the server (record type,
/// request id, content length). `fcgi -v` prints them.
pub const RECORD_TRACE_TARGET: &str = "fcgi::record";

/// Emits one [`RECORD_TRACE_TARGET`] event per whole record in `bytes`
/// (encoded output about to be sent). Costs nothing when nobody listens.
pub(crate) fn trace_sent_records(bytes: &[u8]) {
    if !tracing::enabled!(target: RECORD_TRACE_TARGET, tracing::Level::TRACE) {
        return;
    }
    let mut rest = bytes;
    while let Some(head) = rest.get(..HEADER_LEN) {
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(head);
        let header = Header::parse(&raw);
        trace_record(
            "send",
            header.record_type,
            header.request_id,
            header.content_length.into(),
        );
        rest = rest.get(HEADER_LEN + header.body_len()..).unwrap_or(&[]);
    }
}

/// One [`RECORD_TRACE_TARGET`] event: direction, record type, id, length.
pub(crate) fn trace_record(direction: &str, record_type: u8, request_id: u16, len: usize) {
    let name = type_name(record_type);
    let name = name.strip_prefix("FCGI_").unwrap_or(&name);
    tracing::trace!(target: RECORD_TRACE_TARGET, "{direction} {name} id={request_id} len={len}");
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

/// What one call to [`ResponseMachine::feed`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The input was used up without a visible result.
    Nothing,
    /// The head is complete ([`ResponseMachine::take_head`]); the range of the
    /// input that follows it in the same record is body (maybe empty).
    Head(Range<usize>),
    /// Body bytes at this range of the input.
    Body(Range<usize>),
    /// STDERR bytes at this range of the input (already kept, up to the limit).
    Stderr(Range<usize>),
    /// END_REQUEST with FCGI_REQUEST_COMPLETE arrived.
    End(EndRequest),
}

/// Response state of one exchange: decoder, head parser, kept STDERR.
pub(crate) struct ResponseMachine {
    decoder: Decoder,
    head_parser: Option<HeadParser>,
    head: Option<Head>,
    limits: Limits,
    pub(crate) stderr: Vec<u8>,
    pub(crate) stderr_dropped: u64,
    end: Option<EndRequest>,
    address: Arc<str>,
    /// Input the last [`ResponseMachine::feed`] consumed when it returned
    /// [`Error::Rejected`]: the refused END_REQUEST, and what came before it
    /// in that input (set only then: nothing on the way of a response).
    used_before_refusal: usize,
}

impl ResponseMachine {
    /// The machine for one response. The address (for error messages) is
    /// shared: a transport that keeps it as an `Arc<str>` pays no copy.
    pub(crate) fn new(
        request_id: u16,
        limits: Limits,
        address: impl Into<Arc<str>>,
    ) -> ResponseMachine {
        ResponseMachine {
            decoder: Decoder::for_request(request_id),
            head_parser: Some(HeadParser::new(limits.max_head_bytes)),
            head: None,
            limits,
            stderr: Vec::new(),
            stderr_dropped: 0,
            end: None,
            address: address.into(),
            used_before_refusal: 0,
        }
    }

    /// Makes the machine ready for the response to request `request_id` on
    /// the same connection, keeping its address and limits.
    pub(crate) fn restart(&mut self, request_id: u16) {
        self.decoder = Decoder::for_request(request_id);
        self.head_parser = Some(HeadParser::new(self.limits.max_head_bytes));
        self.head = None;
        self.stderr.clear();
        self.stderr_dropped = 0;
        self.end = None;
    }

    /// Response bytes (records included) consumed so far.
    pub(crate) fn received(&self) -> u64 {
        self.decoder.position()
    }

    /// Whether the connection may carry another request now that the
    /// response has ended, `rest` having been read after END_REQUEST (see
    /// [`reusable_after_end`]).
    pub(crate) fn reusable(&mut self, rest: &[u8], request_sent: bool, keep_alive: bool) -> bool {
        reusable_after_end(&mut self.decoder, rest, request_sent, keep_alive)
    }

    /// Input consumed by the [`ResponseMachine::feed`] that returned
    /// [`Error::Rejected`], END_REQUEST included: what follows it is the
    /// rest for [`ResponseMachine::reusable`].
    pub(crate) fn used_before_refusal(&self) -> usize {
        self.used_before_refusal
    }

    /// The head, once, after [`Step::Head`].
    pub(crate) fn take_head(&mut self) -> Option<Head> {
        self.head.take()
    }

    /// Consumes input until something happens; returns bytes used and what.
    #[inline(always)]
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<(usize, Step), Error> {
        let (used, event) = self
            .decoder
            .decode(input)
            .map_err(|e| Error::from_decode(&self.address, e))?;
        if let Some(event) = &event {
            trace_event("recv", event);
        }
        let Some(event) = event else {
            return Ok((used, Step::Nothing));
        };
        // Stream content always ends exactly where the decoder stopped, so
        // ranges within the event's content shift by `used - len`.
        let shift = match &event {
            Event::Stdout(_, bytes) | Event::Stderr(_, bytes) => used - bytes.len(),
            _ => 0,
        };
        let moved = |r: Range<usize>| r.start + shift..r.end + shift;
        let step = match self.on_event(event) {
            Ok(step) => step,
            Err(error) => {
                if matches!(error, Error::Rejected { .. }) {
                    self.used_before_refusal = used;
                }
                return Err(error);
            }
        };
        let step = match step {
            Step::Head(r) => Step::Head(moved(r)),
            Step::Body(r) => Step::Body(moved(r)),
            Step::Stderr(r) => Step::Stderr(moved(r)),
            other => other,
        };
        Ok((used, step))
    }

    /// Handles one event already decoded elsewhere (the async client decodes
    /// a whole multiplexed connection and routes events by request id).
    /// Ranges in the returned step index the event's own content bytes.
    #[inline(always)]
    pub(crate) fn on_event(&mut self, event: Event<'_>) -> Result<Step, Error> {
        let range_of = |len: usize| 0..len;
        let step = match event {
            Event::Values(_) | Event::UnknownType(_) => Step::Nothing,
            Event::Stderr(_, bytes) => {
                let room = self
                    .limits
                    .max_stderr_bytes
                    .saturating_sub(self.stderr.len());
                let keep = room.min(bytes.len());
                self.stderr.extend_from_slice(&bytes[..keep]);
                self.stderr_dropped += (bytes.len() - keep) as u64;
                Step::Stderr(range_of(bytes.len()))
            }
            Event::Stdout(_, bytes) => match self.head_parser.as_mut() {
                None => Step::Body(range_of(bytes.len())),
                Some(parser) => match parser.push(bytes) {
                    Ok(None) => Step::Nothing,
                    Ok(Some((head, head_len))) => {
                        self.head = Some(head);
                        self.head_parser = None;
                        let body = range_of(bytes.len());
                        Step::Head(body.start + head_len..body.end)
                    }
                    Err(e) => {
                        return Err(Error::from_head(
                            &self.address,
                            e,
                            self.limits.max_head_bytes,
                        ))
                    }
                },
            },
            Event::End(_, end) => {
                if !end.protocol_status.is_complete() {
                    return Err(Error::Rejected {
                        address: self.address.to_string(),
                        status: end.protocol_status,
                    });
                }
                if let Some(parser) = &self.head_parser {
                    return Err(Error::protocol(&self.address, parser.finish()));
                }
                self.end = Some(end);
                Step::End(end)
            }
        };
        Ok(step)
    }
}

/// One [`RECORD_TRACE_TARGET`] event for a decoded event. The check is
/// inlined where events are decoded; the tracing itself is not.
#[inline]
pub(crate) fn trace_event(direction: &str, event: &Event<'_>) {
    if tracing::enabled!(target: RECORD_TRACE_TARGET, tracing::Level::TRACE) {
        trace_decoded(direction, event);
    }
}

#[cold]
fn trace_decoded(direction: &str, event: &Event<'_>) {
    let (record_type, id, len) = match event {
        Event::Stdout(id, bytes) => (RecordType::Stdout, *id, bytes.len()),
        Event::Stderr(id, bytes) => (RecordType::Stderr, *id, bytes.len()),
        Event::End(id, _) => (RecordType::EndRequest, *id, 8),
        Event::Values(pairs) => {
            tracing::trace!(
                target: RECORD_TRACE_TARGET,
                "{direction} GET_VALUES_RESULT id=0 pairs={}",
                pairs.len()
            );
            return;
        }
        Event::UnknownType(_) => (RecordType::UnknownType, 0, 8),
    };
    trace_record(direction, record_type as u8, id, len);
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
