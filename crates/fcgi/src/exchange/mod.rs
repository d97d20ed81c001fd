//! The sans-IO half of one request/response exchange, shared by the blocking
//! and async transports. Nothing here reads a socket or a clock; the
//! transports feed bytes and times in and obey what comes out.
//!
//! What the two clients share outside it: `crate::response` (the head of a
//! streamed response and its accessors, `stream_head!`; the collected
//! body), `crate::error` (I/O and connect failures as [`crate::Error`]s),
//! `crate::request` (an in-memory body copied for a retry). Where a client
//! still has a loop of its own (a write-all, a body read, GET_VALUES, the
//! stale-connection retry), it is a thin one over these, blocking in one
//! client and awaiting in the other.
//!
//! - [`encode`]: the request's first records (BEGIN_REQUEST,
//!   PARAMS, an inline body), rewriting an encoded request's id and
//!   FCGI_KEEP_CONN flag, the inline-request limit and the kept send buffer.
//! - [`stream`]: STDIN/DATA records for a body sent piece by
//!   piece, held to its declared length; one read of a blocking body
//!   source.
//! - [`machine`]: [`ResponseMachine`], decoder events in,
//!   head / body / STDERR [`Step`]s out, with the limits applied.
//! - [`reuse`]: whether a connection may carry another request
//!   after END_REQUEST.
//! - [`request_id`]: which id a request gets.
//! - [`timer`]: the connect, idle and overall limits, for a
//!   time passed in, and [`Activity`], when a byte last moved.
//! - [`values`]: FCGI_GET_VALUES asked and answered.
//! - [`failure`]: why an exchange failed (an I/O failure included), and
//!   whether to send it again.
//! - [`trace`]: the record trace ([`RECORD_TRACE_TARGET`]).
//! - [`written`]: what is left after a vectored write (both clients'
//!   write-all loops).

mod encode;
mod failure;
mod machine;
mod request_id;
mod reuse;
mod stream;
mod timer;
mod trace;
mod values;
mod written;

#[cfg(test)]
mod tests;

pub(crate) use encode::{encode_request_start, kept_out, set_request_id};
#[cfg(feature = "tokio")]
pub(crate) use encode::{keep_conn_flag, readdress};
pub(crate) use failure::Failure;
pub(crate) use machine::{ResponseMachine, Step};
#[cfg(feature = "tokio")]
pub(crate) use request_id::first_free_request_id;
pub(crate) use request_id::{following_request_id, SINGLE_REQUEST_ID};
#[cfg(feature = "tokio")]
pub(crate) use reuse::reusable_after_end;
pub(crate) use stream::{read_body_source, StreamEncoder};
pub(crate) use timer::{Activity, Timer};
pub use trace::RECORD_TRACE_TARGET;
#[cfg(feature = "tokio")]
pub(crate) use trace::{trace_event, trace_sent_records};
pub(crate) use values::ValuesAnswer;
pub(crate) use written::advance_written;
