//! The record trace: one `tracing` event per record sent and per event
//! decoded, under [`RECORD_TRACE_TARGET`], for both clients. Costs one
//! `enabled!` check when nobody listens.

use fcgi_proto::decode::Event;
use fcgi_proto::record::{type_name, Header, RecordType, HEADER_LEN};

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
