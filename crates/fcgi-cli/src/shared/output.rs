//! Writing what the commands print: standard output written and flushed,
//! the failure for a write that did not go through, and the server's
//! FastCGI stderr passed on to ours.

use std::io::{self, Write};

use crate::shared::failure::{Failure, OTHER};

/// The failure for a write of `what` (e.g. "the body to standard output")
/// that failed.
pub fn write_failure(what: &str) -> impl Fn(io::Error) -> Failure + '_ {
    move |e| Failure::new(OTHER, format!("cannot write {what}: {e}"))
}

/// Writes `bytes` to standard output and flushes it; `what` names them in
/// the failure ("the values to standard output").
pub fn write_stdout(bytes: &[u8], what: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(write_failure(what))
}

/// The server's FastCGI stderr, passed to standard error as it arrives
/// (unless silenced); a missing final line break is added at the end, so
/// that what follows starts on a line of its own.
pub struct ServerStderr {
    silent: bool,
    last: Option<u8>,
}

impl ServerStderr {
    pub fn new(silent: bool) -> ServerStderr {
        ServerStderr { silent, last: None }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        if self.silent || bytes.is_empty() {
            return;
        }
        // Nowhere left to report a failing standard error.
        let _ = io::stderr().lock().write_all(bytes);
        self.last = bytes.last().copied();
    }
}

impl Drop for ServerStderr {
    fn drop(&mut self) {
        if self.last.is_some_and(|b| b != b'\n') {
            let _ = io::stderr().lock().write_all(b"\n");
        }
    }
}
