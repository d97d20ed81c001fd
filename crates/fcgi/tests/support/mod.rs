//! Test support shared by the integration tests of `fcgi`: one interface
//! over both clients, so that a fault case is written once and run against
//! the blocking [`fcgi::Client`] and the async [`fcgi::nonblocking::Client`].
//!
//! Why here and not in `fcgi-testkit`: the test kit cannot depend on `fcgi`
//! (fcgi's tests dev-depend on the test kit, and a dependency back would
//! build a second copy of `fcgi` whose types differ from the ones under
//! test). A module of `crates/fcgi/tests` is compiled into each test binary
//! that declares `mod support;`, against the one `fcgi` under test.
//!
//! - [`ClientUnderTest`]: what the cases need of a client: `execute`,
//!   `execute_with` (per-request [`Timeouts`]), `prepare` and
//!   `execute_prepared`, `stream` (read to the end as a [`Streamed`]),
//!   `stream_then_drop` and `get_values`, blocking calls whichever client
//!   runs them.
//! - [`Streamed`] and [`Reading`]: a streamed response read to its end,
//!   chunk by chunk or with `finish` alone, with the error that ended it.
//! - [`Which`]: names a client and builds it from an address and a
//!   [`Config`] (mapped to the async builder as described there).
//! - `both_clients!`: turns a case `fn case(which: Which)` into a test per
//!   client, named `case::blocking` and `case::nonblocking`, so that a
//!   failure says which client failed.

use std::fmt;

use fcgi::{Config, Error, Headers, PreparedRequest, Request, Response, Timeouts, Trailer};

/// One of the two clients, as the cases see them: every call blocks until
/// the client is done.
pub trait ClientUnderTest {
    /// Runs `request` to the end, collecting the response in memory.
    fn execute(&self, request: Request) -> Result<Response, Error>;

    /// [`ClientUnderTest::execute`] under `timeouts` for this request only.
    fn execute_with(&self, request: Request, timeouts: Timeouts) -> Result<Response, Error>;

    /// Encodes `request` once for [`ClientUnderTest::execute_prepared`].
    fn prepare(&self, request: Request) -> Result<PreparedRequest, Error>;

    /// Sends a prepared request and collects the response in memory.
    fn execute_prepared(&self, prepared: &PreparedRequest) -> Result<Response, Error>;

    /// Streams `request`: `Err` when the head never arrived, else the head
    /// and what [`Reading`] read after it, with how the response ended.
    fn stream(&self, request: Request, reading: Reading) -> Result<Streamed, Error>;

    /// Streams `request` and drops the stream once the head arrived,
    /// before the end of the body; gives the status.
    fn stream_then_drop(&self, request: Request) -> Result<u16, Error>;

    /// Asks the server for management values (FCGI_GET_VALUES).
    fn get_values(&self, names: &[&str]) -> Result<Vec<(String, String)>, Error>;
}

/// How a streamed response is read after its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// `next_chunk` until it returns `None` or fails; then `finish`, for
    /// the trailer (after a failure, `finish` must fail too).
    Chunks,
    /// `finish` straight away, which reads (and discards) the body itself.
    Finish,
}

/// A streamed response read to its end (see [`ClientUnderTest::stream`]).
#[derive(Debug)]
pub struct Streamed {
    /// The head, as the stream showed it once it arrived.
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    /// STDERR the stream held when the head arrived.
    pub stderr_before_body: Vec<u8>,
    /// Body chunks in order (empty with [`Reading::Finish`]).
    pub body: Vec<u8>,
    /// STDERR chunks in order (empty with [`Reading::Finish`]).
    pub stderr_chunks: Vec<u8>,
    /// The trailer, or the error from `next_chunk` or `finish` that ended
    /// the response.
    pub end: Result<Trailer, Error>,
}

impl Streamed {
    /// The error that ended the response, failing the test if it ended well.
    pub fn end_error(self) -> Error {
        match self.end {
            Ok(trailer) => panic!(
                "expected the stream to fail, it ended with {trailer:?} after {} body bytes",
                self.body.len()
            ),
            Err(error) => error,
        }
    }
}

/// Names one of the two clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// [`fcgi::Client`].
    Blocking,
    /// [`fcgi::nonblocking::Client`], driven on a runtime of its own.
    #[cfg(feature = "tokio")]
    Async,
}

impl fmt::Display for Which {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Which::Blocking => f.write_str("blocking client"),
            #[cfg(feature = "tokio")]
            Which::Async => f.write_str("async client"),
        }
    }
}

impl Which {
    /// This client for `address` with `config`.
    ///
    /// The async client takes `config` through [`fcgi::nonblocking::Builder::config`],
    /// with the two settings it keeps apart taken from it too: keep-alive
    /// ([`fcgi::nonblocking::Builder::keep_alive`], on by default there, off
    /// in [`Config`]) from `config.keep_alive`; and multiplexing is disabled,
    /// so that it asks nothing (FCGI_GET_VALUES) on a connection of its own
    /// and the fake server sees exactly the connections the blocking client
    /// would open.
    pub fn connect(self, address: &str, config: Config) -> Result<Box<dyn ClientUnderTest>, Error> {
        match self {
            Which::Blocking => Ok(Box::new(fcgi::Client::with_config(address, config)?)),
            #[cfg(feature = "tokio")]
            Which::Async => Ok(Box::new(AsyncUnderTest::new(address, config)?)),
        }
    }
}

/// A boxed client is one too (what [`Which::connect`] gives).
impl<C: ClientUnderTest + ?Sized> ClientUnderTest for Box<C> {
    fn execute(&self, request: Request) -> Result<Response, Error> {
        (**self).execute(request)
    }

    fn execute_with(&self, request: Request, timeouts: Timeouts) -> Result<Response, Error> {
        (**self).execute_with(request, timeouts)
    }

    fn prepare(&self, request: Request) -> Result<PreparedRequest, Error> {
        (**self).prepare(request)
    }

    fn execute_prepared(&self, prepared: &PreparedRequest) -> Result<Response, Error> {
        (**self).execute_prepared(prepared)
    }

    fn stream(&self, request: Request, reading: Reading) -> Result<Streamed, Error> {
        (**self).stream(request, reading)
    }

    fn stream_then_drop(&self, request: Request) -> Result<u16, Error> {
        (**self).stream_then_drop(request)
    }

    fn get_values(&self, names: &[&str]) -> Result<Vec<(String, String)>, Error> {
        (**self).get_values(names)
    }
}

impl ClientUnderTest for fcgi::Client {
    fn execute(&self, request: Request) -> Result<Response, Error> {
        fcgi::Client::execute(self, request)
    }

    fn execute_with(&self, request: Request, timeouts: Timeouts) -> Result<Response, Error> {
        fcgi::Client::execute_with(self, request, timeouts)
    }

    fn prepare(&self, request: Request) -> Result<PreparedRequest, Error> {
        fcgi::Client::prepare(self, request)
    }

    fn execute_prepared(&self, prepared: &PreparedRequest) -> Result<Response, Error> {
        fcgi::Client::execute_prepared(self, prepared)
    }

    fn stream(&self, request: Request, reading: Reading) -> Result<Streamed, Error> {
        let mut stream = fcgi::Client::stream(self, request)?;
        let mut so_far = SoFar::head(
            stream.status(),
            stream.reason(),
            stream.headers(),
            stream.stderr(),
        );
        while reading == Reading::Chunks && so_far.take(stream.next_chunk().map(Piece::from_chunk))
        {
        }
        Ok(so_far.ended(stream.finish()))
    }

    fn stream_then_drop(&self, request: Request) -> Result<u16, Error> {
        Ok(fcgi::Client::stream(self, request)?.status())
    }

    fn get_values(&self, names: &[&str]) -> Result<Vec<(String, String)>, Error> {
        fcgi::Client::get_values(self, names)
    }
}

/// A chunk of either client's stream: `B` is a slice (blocking) or
/// `Bytes` (async).
enum Piece<B> {
    Body(B),
    Stderr(B),
}

impl<'a> Piece<&'a [u8]> {
    fn from_chunk(chunk: Option<fcgi::Chunk<'a>>) -> Option<Piece<&'a [u8]>> {
        chunk.map(|chunk| match chunk {
            fcgi::Chunk::Body(bytes) => Piece::Body(bytes),
            fcgi::Chunk::Stderr(bytes) => Piece::Stderr(bytes),
        })
    }
}

#[cfg(feature = "tokio")]
impl Piece<bytes::Bytes> {
    fn from_async_chunk(chunk: Option<fcgi::nonblocking::Chunk>) -> Option<Piece<bytes::Bytes>> {
        chunk.map(|chunk| match chunk {
            fcgi::nonblocking::Chunk::Body(bytes) => Piece::Body(bytes),
            fcgi::nonblocking::Chunk::Stderr(bytes) => Piece::Stderr(bytes),
        })
    }
}

/// A [`Streamed`] while it is read: everything but its end.
struct SoFar {
    status: u16,
    reason: String,
    headers: Headers,
    stderr_before_body: Vec<u8>,
    body: Vec<u8>,
    stderr_chunks: Vec<u8>,
    /// The error `next_chunk` ended with.
    failed: Option<Error>,
}

impl SoFar {
    /// What a stream showed when its head arrived.
    fn head(status: u16, reason: &str, headers: &Headers, stderr: &[u8]) -> SoFar {
        SoFar {
            status,
            reason: reason.to_string(),
            headers: headers.clone(),
            stderr_before_body: stderr.to_vec(),
            body: Vec::new(),
            stderr_chunks: Vec::new(),
            failed: None,
        }
    }

    /// Keeps what `next_chunk` returned; false once the response ended
    /// (with `None`, or with an error, kept for [`SoFar::ended`]).
    fn take<B: AsRef<[u8]>>(&mut self, next: Result<Option<Piece<B>>, Error>) -> bool {
        match next {
            Ok(Some(Piece::Body(bytes))) => self.body.extend_from_slice(bytes.as_ref()),
            Ok(Some(Piece::Stderr(bytes))) => self.stderr_chunks.extend_from_slice(bytes.as_ref()),
            Ok(None) => return false,
            Err(error) => {
                self.failed = Some(error);
                return false;
            }
        }
        true
    }

    /// The response with its end: the error `next_chunk` failed with, else
    /// what `finish` returned. After a failed `next_chunk`, `finish` must
    /// fail too: a broken response never ends cleanly.
    fn ended(self, finish: Result<Trailer, Error>) -> Streamed {
        let end = match (self.failed, finish) {
            (Some(failed), Ok(trailer)) => {
                panic!("finish returned {trailer:?} after next_chunk failed with {failed:?}")
            }
            (Some(failed), Err(_)) => Err(failed),
            (None, finish) => finish,
        };
        Streamed {
            status: self.status,
            reason: self.reason,
            headers: self.headers,
            stderr_before_body: self.stderr_before_body,
            body: self.body,
            stderr_chunks: self.stderr_chunks,
            end,
        }
    }
}

/// The async client with the runtime that drives it: each call is a
/// `block_on`. The runtime has worker threads, so that what the client
/// spawns (body writers, the pool's reaper) runs between calls as it would
/// in a server.
#[cfg(feature = "tokio")]
pub struct AsyncUnderTest {
    // Dropped before the runtime, while its I/O driver still runs.
    client: fcgi::nonblocking::Client,
    runtime: tokio::runtime::Runtime,
}

#[cfg(feature = "tokio")]
impl AsyncUnderTest {
    fn new(address: &str, config: Config) -> Result<AsyncUnderTest, Error> {
        let keep_alive = config.keep_alive;
        let client = fcgi::nonblocking::Client::builder()
            .upstream(address)
            .config(config)
            .keep_alive(keep_alive)
            .multiplexing(fcgi::nonblocking::Multiplexing::Disabled)
            .build()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the async client");
        Ok(AsyncUnderTest { client, runtime })
    }
}

#[cfg(feature = "tokio")]
impl ClientUnderTest for AsyncUnderTest {
    fn execute(&self, request: Request) -> Result<Response, Error> {
        self.runtime.block_on(self.client.execute(request))
    }

    fn execute_with(&self, request: Request, timeouts: Timeouts) -> Result<Response, Error> {
        self.runtime
            .block_on(self.client.execute_with(request, timeouts))
    }

    fn prepare(&self, request: Request) -> Result<PreparedRequest, Error> {
        self.client.prepare(request)
    }

    fn execute_prepared(&self, prepared: &PreparedRequest) -> Result<Response, Error> {
        self.runtime
            .block_on(self.client.execute_prepared(prepared))
    }

    fn stream(&self, request: Request, reading: Reading) -> Result<Streamed, Error> {
        self.runtime.block_on(async {
            let mut stream = self.client.stream(request).await?;
            let mut so_far = SoFar::head(
                stream.status(),
                stream.reason(),
                stream.headers(),
                stream.stderr(),
            );
            while reading == Reading::Chunks
                && so_far.take(stream.next_chunk().await.map(Piece::from_async_chunk))
            {}
            Ok(so_far.ended(stream.finish().await))
        })
    }

    fn stream_then_drop(&self, request: Request) -> Result<u16, Error> {
        self.runtime
            .block_on(async { Ok(self.client.stream(request).await?.status()) })
    }

    fn get_values(&self, names: &[&str]) -> Result<Vec<(String, String)>, Error> {
        self.runtime.block_on(self.client.get_values(names))
    }
}

/// Runs cases against each client: `both_clients!(case);` next to
/// `fn case(which: Which)` makes a module `case` with the tests `blocking`
/// and `nonblocking` (the latter with the `tokio` feature), each calling
/// `case` with its [`Which`]; a failure's test name says which client failed.
macro_rules! both_clients {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[test]
                fn blocking() {
                    super::$case($crate::support::Which::Blocking);
                }

                #[cfg(feature = "tokio")]
                #[test]
                fn nonblocking() {
                    super::$case($crate::support::Which::Async);
                }
            }
        )+
    };
}
