//! The blocking client: one thread per request, no runtime.
//!
//! A request is written while its response is read: small requests go out in
//! one write, larger bodies are written by a helper thread, so a script that
//! prints megabytes before reading its input never deadlocks the client.
//!
//! # Layout
//!
//! - `mod.rs`: this table of contents and the re-exports.
//! - `client.rs`: [`Client`]: the connection list (checkout, connect,
//!   check-in), sending with the stale-connection retry, GET_VALUES, and a
//!   connection with its buffers and response state (`Conn`).
//! - `builder.rs`: [`Builder`].
//! - `stream.rs`: [`ResponseStream`] (reading a response on demand),
//!   [`Chunk`] and [`Trailer`].
//! - `writer.rs`: the body writer thread (`BodyWriter`) and the records it
//!   writes.
//! - `conn.rs`: blocking TCP and Unix sockets, and connecting with a
//!   timeout.
//!
//! The protocol work (encoding, the response machine, limits, timers, the
//! activity counter, the retry rule, what is left after a partial write)
//! is the sans-IO `crate::exchange`, the same as the async client's; the
//! head accessors of [`ResponseStream`] come from `crate::response` and the
//! mapping of I/O failures to [`Error`]s from `crate::error`, for both
//! clients.

mod builder;
mod client;
mod conn;
mod stream;
mod writer;

use std::convert::Infallible;

use crate::error::Error;

pub use crate::request::PreparedRequest;
#[cfg(feature = "tokio")]
pub(crate) use builder::add_upstream;
pub use builder::Builder;
pub use client::Client;
pub use stream::{Chunk, ResponseStream, Trailer};

impl From<Infallible> for Error {
    fn from(never: Infallible) -> Error {
        match never {}
    }
}
