// The library guide is `doc/guide.md`, included below so that rustdoc
// shows it as the crate's front page and its examples run as doctests.
#![doc = include_str!("../doc/guide.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// docs.rs (and `RUSTDOCFLAGS="--cfg docsrs" cargo +nightly doc`): every
// feature-gated item says which feature enables it.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(unix))]
compile_error!(
    "the fcgi crate supports Unix only (Unix sockets, MSG_PEEK on kept connections, \
     spawning on an inherited socket, signals); see the crate documentation"
);

mod address;
pub mod blocking;
pub mod cgi;
mod config;
mod error;
mod exchange;
#[cfg(feature = "http")]
pub mod gateway;
#[cfg(feature = "tokio")]
pub mod nonblocking;
mod request;
mod response;
pub mod roles;
pub mod spawn;

pub use address::{Address, AddressError};
pub use blocking::{Chunk, Client, ResponseStream, Trailer};
pub use config::*;
pub use error::{Error, Limit, TimeoutPhase};
pub use exchange::RECORD_TRACE_TARGET;
pub use fcgi_proto;
pub use fcgi_proto::head::Headers;
pub use fcgi_proto::record::{ProtocolStatus, Role};
#[cfg(feature = "tokio")]
pub use nonblocking::Client as AsyncClient;
pub use request::{AsyncBody, Body, Params, PreparedRequest, Request};
pub use response::Response;
pub use roles::Authorization;

#[cfg(test)]
mod tests {
    /// Both clients are handles to share between threads.
    #[test]
    fn clients_are_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<crate::blocking::Client>();
        #[cfg(feature = "tokio")]
        check::<crate::nonblocking::Client>();
    }
}

/// The crate's README (shown on crates.io): its example compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
