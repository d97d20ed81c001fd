//! The FastCGI 1.0 protocol without any I/O.
//!
//! This crate turns requests into bytes and bytes into response events. It owns
//! no sockets, threads or runtimes: the blocking and async clients of the `fcgi`
//! crate move the bytes and both drive the same [`decode::Decoder`].
//!
//! - [`record`]: the 8-byte record header, record types, roles and statuses.
//! - [`nv`]: name-value pair encoding and a decoder that never over-allocates.
//! - [`encode`]: the request encoder (BEGIN_REQUEST, PARAMS, STDIN, DATA, ...).
//! - [`decode`]: an incremental response decoder fed arbitrary byte slices.
//! - [`head`]: the incremental CGI response head parser (`Status`, headers).
//!
//! Nothing here panics on input from the network: every malformed byte sequence
//! is reported as an error value that names what arrived.
//!
//! ```
//! use fcgi_proto::decode::{Decoder, Event};
//! use fcgi_proto::encode::{encode_begin_request, encode_params, encode_stream, ParamsOptions};
//! use fcgi_proto::record::Role;
//!
//! // Encode a minimal request with request id 1.
//! let mut out = Vec::new();
//! encode_begin_request(1, Role::Responder, false, &mut out);
//! let params = [(&b"REQUEST_METHOD"[..], &b"GET"[..])];
//! encode_params(1, params.iter().copied(), &ParamsOptions::default(), &mut out).unwrap();
//! encode_stream(fcgi_proto::record::RecordType::Stdin, 1, b"", true, &mut out);
//! assert_eq!(&out[..8], &[1, 1, 0, 1, 0, 8, 0, 0]);
//!
//! // Decode a response: one STDOUT record, then END_REQUEST.
//! let response = [
//!     1, 6, 0, 1, 0, 2, 0, 0, b'h', b'i',
//!     1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
//! ];
//! let mut decoder = Decoder::for_request(1);
//! let mut input = &response[..];
//! let mut stdout = Vec::new();
//! let mut ended = false;
//! while !input.is_empty() {
//!     let (used, event) = decoder.decode(input).unwrap();
//!     input = &input[used..];
//!     match event {
//!         Some(Event::Stdout(_, bytes)) => stdout.extend_from_slice(bytes),
//!         Some(Event::End(_, end)) => ended = end.protocol_status.is_complete(),
//!         _ => {}
//!     }
//! }
//! assert_eq!(stdout, b"hi");
//! assert!(ended);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod decode;
pub mod encode;
pub mod head;
pub mod nv;
pub mod record;
