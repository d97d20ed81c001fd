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
//! - [`ClientUnderTest`]: what the cases need of a client: `execute` and
//!   `get_values`, blocking calls whichever client runs them.
//! - [`Which`]: names a client and builds it from an address and a
//!   [`Config`] (mapped to the async builder as described there).
//! - `both_clients!`: turns a case `fn case(which: Which)` into a test per
//!   client, named `case::blocking` and `case::nonblocking`, so that a
//!   failure says which client failed.

use std::fmt;

use fcgi::{Config, Error, Request, Response};

/// One of the two clients, as the cases see them: every call blocks until
/// the client is done.
pub trait ClientUnderTest {
    /// Runs `request` to the end, collecting the response in memory.
    fn execute(&self, request: Request) -> Result<Response, Error>;

    /// Asks the server for management values (FCGI_GET_VALUES).
    fn get_values(&self, names: &[&str]) -> Result<Vec<(String, String)>, Error>;
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

    fn get_values(&self, names: &[&str]) -> Result<Vec<(String, String)>, Error> {
        (**self).get_values(names)
    }
}

impl ClientUnderTest for fcgi::Client {
    fn execute(&self, request: Request) -> Result<Response, Error> {
        fcgi::Client::execute(self, request)
    }

    fn get_values(&self, names: &[&str]) -> Result<Vec<(String, String)>, Error> {
        fcgi::Client::get_values(self, names)
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
