//! A FastCGI client: send requests to FastCGI servers (above all php-fpm) and
//! get back status, headers, body and stderr, with typed errors, time limits
//! and bounded memory.
//!
//! The protocol itself lives in the sans-IO crate [`fcgi_proto`]; this crate
//! adds addresses, connections, time limits and response assembly.
//!
//! ```no_run
//! use fcgi::{Client, Config, Request};
//! let client = Client::with_config("unix:/run/php/php8.2-fpm.sock", Config::default().keep_alive(true))?;
//! let response = client.execute(
//!     Request::post("/var/www/html/form.php", "application/x-www-form-urlencoded", "name=world")
//!         .param("HTTP_ACCEPT", "text/html"),
//! )?;
//! assert_eq!(response.status, 200);
//! for cookie in response.headers.get_all("Set-Cookie") {
//!     println!("cookie: {}", String::from_utf8_lossy(cookie));
//! }
//! eprint!("{}", response.stderr_text());
//! # Ok::<(), fcgi::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

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

/// The README's Rust examples, compiled as doctests (they use every feature,
/// as `scripts/test` builds them: `--all-features`).
#[cfg(all(doctest, feature = "tokio", feature = "http"))]
#[doc = include_str!("../../../README.md")]
mod readme {}
