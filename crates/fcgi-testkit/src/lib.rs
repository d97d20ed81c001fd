//! Test support for the `fcgi` workspace.
//!
//! * [`PhpFpm`]: a private php-fpm with two pools (Unix socket and TCP), started
//!   in a fresh temporary directory per fixture, with the test scripts of
//!   [`scripts`] in its document root.
//! * [`FakeServer`]: a FastCGI server whose per-connection behaviour is written
//!   by the test, byte by byte if needed, to produce any malformed stream.
//! * [`raw`]: a tiny independent FastCGI client and record codec, to talk to
//!   php-fpm or to check what a client sent without using the crates under test.
//! * [`Usage`]: open file descriptors, threads and resident memory of the
//!   test process, to check that nothing leaks.
//! * [`servers`]: real FastCGI servers other than php-fpm (fcgiwrap, Go,
//!   flup, uWSGI, php-cgi) running one small test application, for the
//!   compatibility matrix.
//! * [`pattern()`]: the deterministic byte pattern written by `output.php` and
//!   `big_then_read.php`, and SHA-256 helpers to compare checksums.

pub mod fake;
pub mod pattern;
pub mod php_fpm;
pub mod raw;
pub mod scripts;
pub mod servers;
pub mod stream;
pub mod usage;

pub use fake::{FakeConn, FakeServer, ReceivedRequest};
pub use pattern::{pattern, pattern_at, pattern_byte, pattern_sha256, sha256_hex};
pub use php_fpm::{PhpFpm, PhpFpmBuilder};
pub use raw::{RawClient, RawRecord, RawResponse};
pub use stream::Stream;
pub use usage::Usage;
