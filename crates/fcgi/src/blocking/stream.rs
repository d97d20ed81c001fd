//! A blocking response read on demand: [`ResponseStream`] (through
//! [`Read`] or [`ResponseStream::next_chunk`]), its [`Chunk`]s and its
//! [`Trailer`]; opening the exchange (request start written, body writer
//! started, head read) and ending it (the connection kept or closed).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use fcgi_proto::record::Role;

use super::client::{Client, Conn};
use super::writer::{BodyWriter, WRITER_REPORT_WAIT};
use crate::error::{is_closed, Error};
use crate::exchange::{kept_out, Failure, Step, Timer};
use crate::request::Body;
use crate::response::{ResponseHead, StreamHead};

/// One chunk of a streamed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Body bytes (STDOUT after the head).
    Body(&'a [u8]),
    /// STDERR bytes.
    Stderr(&'a [u8]),
}

/// What remains known after a streamed response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Trailer {
    /// STDERR up to the limit.
    pub stderr: Vec<u8>,
    /// STDERR bytes dropped over the limit.
    pub stderr_dropped: u64,
    /// END_REQUEST's application status.
    pub app_status: u32,
}

/// A response whose head has arrived; the body is read on demand, through
/// [`Read`] or [`ResponseStream::next_chunk`]. Dropping it before the end
/// closes the connection, which stops a php-fpm script at its next output.
pub struct ResponseStream {
    client: Client,
    /// The connection, with the response state, until the response ends.
    conn: Option<Box<Conn>>,
    /// What the response state said when the connection was let go.
    detached: Detached,
    timer: Timer,
    /// Decoded input at `pos..filled` of the connection buffer.
    pos: usize,
    filled: usize,
    /// Body bytes in the buffer not yet handed out.
    pending: std::ops::Range<usize>,
    writer: Option<BodyWriter>,
    /// The request start went out whole (else the connection is not kept).
    request_sent: bool,
    pub(super) head: ResponseHead,
    app_status: Option<u32>,
}

crate::response::stream_head!(ResponseStream);

impl StreamHead for ResponseStream {
    fn response_head(&self) -> &ResponseHead {
        &self.head
    }

    fn request_started(&self) -> Instant {
        self.timer.started()
    }

    fn kept_stderr(&self) -> &[u8] {
        match &self.conn {
            Some(conn) => &conn.machine.stderr,
            None => &self.detached.stderr,
        }
    }
}

/// What a response still reports after its connection went back to the pool
/// or was closed.
#[derive(Default)]
struct Detached {
    stderr: Vec<u8>,
    stderr_dropped: u64,
    received: u64,
}

/// The result of one decoding step of [`ResponseStream::advance`].
enum Out {
    Body(std::ops::Range<usize>),
    Stderr(std::ops::Range<usize>),
    End,
}

impl ResponseStream {
    /// Writes the request start on `conn`, starts the body writer for
    /// `to_write` (body, DATA, role) if any, and reads until the head.
    pub(super) fn open(
        client: Client,
        timer: Timer,
        mut conn: Box<Conn>,
        request_id: u16,
        to_write: Option<(Body, Body, Role)>,
    ) -> Result<ResponseStream, Failure> {
        let written = conn.stream.write_all(&conn.out);
        // A large inline body: do not keep its buffer on an idle connection.
        conn.out = kept_out(std::mem::take(&mut conn.out));
        // The server may close while the request start is written, having
        // answered without reading it (a script that ignores its input):
        // that answer is read below, as the async client does; with nothing
        // to read it is ConnectionClosed as before. The body is not sent, and
        // the connection is not kept.
        let request_sent = match written {
            Ok(()) => true,
            Err(e) if is_closed(&e) => false,
            Err(e) => return Err(Failure::new(client.io_error(e, &timer, 0), false, 0)),
        };
        conn.progressed = true;
        let writer = match to_write {
            Some((body, data, role)) if request_sent => {
                let stream = conn.stream.try_clone().map_err(|source| {
                    Failure::fatal(Error::Io {
                        address: client.inner.address_text.clone(),
                        source,
                    })
                })?;
                let data = (role == Role::Filter).then_some(data);
                let progress = Arc::clone(&conn.progress);
                let address = client.inner.address_text.clone();
                let writer =
                    BodyWriter::spawn(stream, address, timer, progress, request_id, body, data)
                        .map_err(|source| {
                            Failure::fatal(Error::Io {
                                address: client.inner.address_text.clone(),
                                source,
                            })
                        })?;
                Some(writer)
            }
            _ => None,
        };
        let mut stream = ResponseStream {
            client,
            conn: Some(conn),
            detached: Detached::default(),
            timer,
            pos: 0,
            filled: 0,
            pending: 0..0,
            writer,
            request_sent,
            head: ResponseHead::default(),
            app_status: None,
        };
        // Read until the head is complete; STDERR before it is kept.
        loop {
            match stream.advance() {
                Ok(Out::Stderr(_)) => {}
                Ok(Out::Body(range)) => {
                    stream.pending = range;
                    break;
                }
                Ok(Out::End) => break,
                Err(error) => {
                    // Nothing arrived and the connection was closed: the
                    // server never took the request. (Records of an earlier
                    // request are a protocol error, not a reason to send
                    // again: this request was delivered.)
                    let closed = matches!(error, Error::ConnectionClosed { .. });
                    let received = stream.received();
                    let error = stream.abort(error);
                    return Err(Failure::new(error, closed, received));
                }
            }
            if stream.head.arrived() {
                break;
            }
        }
        Ok(stream)
    }

    /// The next body or STDERR chunk as it arrives; `None` after END_REQUEST.
    /// STDERR that arrived before the head is only in [`ResponseStream::stderr`].
    pub fn next_chunk(&mut self) -> Result<Option<Chunk<'_>>, Error> {
        if !self.pending.is_empty() {
            let range = std::mem::replace(&mut self.pending, 0..0);
            return Ok(Some(Chunk::Body(&self.buf()[range])));
        }
        match self.advance() {
            Ok(Out::Body(range)) => Ok(Some(Chunk::Body(&self.buf()[range]))),
            Ok(Out::Stderr(range)) => Ok(Some(Chunk::Stderr(&self.buf()[range]))),
            Ok(Out::End) => Ok(None),
            Err(e) => Err(self.abort(e)),
        }
    }

    /// Reads the rest of the response (discarding body bytes) and returns
    /// what END_REQUEST and STDERR said.
    pub fn finish(mut self) -> Result<Trailer, Error> {
        while self.next_chunk()?.is_some() {}
        // The end was reached: the connection has been let go.
        let detached = std::mem::take(&mut self.detached);
        Ok(Trailer {
            stderr: detached.stderr,
            stderr_dropped: detached.stderr_dropped,
            app_status: self.app_status.unwrap_or(0),
        })
    }

    /// Response bytes (records included) received so far.
    fn received(&self) -> u64 {
        match &self.conn {
            Some(conn) => conn.machine.received(),
            None => self.detached.received,
        }
    }

    /// The error for a connection that closed now.
    fn closed_error(&self) -> Error {
        Error::ConnectionClosed {
            address: self.client.inner.address_text.clone(),
            received: self.received(),
        }
    }

    /// Takes the connection from the response (to keep or to close it),
    /// keeping what the response still reports.
    fn detach(&mut self) -> Option<Box<Conn>> {
        let mut conn = self.conn.take()?;
        self.detached = Detached {
            stderr: std::mem::take(&mut conn.machine.stderr),
            stderr_dropped: conn.machine.stderr_dropped,
            received: conn.machine.received(),
        };
        Some(conn)
    }

    fn buf(&self) -> &[u8] {
        match &self.conn {
            Some(conn) => &conn.buf,
            None => &[],
        }
    }

    /// Decodes until body, STDERR or the end; reads from the socket as needed.
    fn advance(&mut self) -> Result<Out, Error> {
        loop {
            if self.app_status.is_some() {
                return Ok(Out::End);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Err(self.closed_error());
            };
            if self.pos == self.filled {
                let n = conn.read(&self.timer, &self.client.inner.address_text)?;
                if n == 0 {
                    // The writer's own I/O error (a broken pipe) is only a
                    // symptom of the close; its body errors are the cause.
                    return Err(match self.writer_error() {
                        Some(cause @ (Error::Body(_) | Error::InvalidRequest(_))) => cause,
                        _ => self.closed_error(),
                    });
                }
                self.pos = 0;
                self.filled = n;
            }
            let base = self.pos;
            let (used, step) = match conn.machine.feed(&conn.buf[base..self.filled]) {
                Ok(fed) => fed,
                Err(error) => return Err(self.after_feed_error(error)),
            };
            self.pos += used;
            let shift = |r: std::ops::Range<usize>| base + r.start..base + r.end;
            match step {
                Step::Nothing => {}
                Step::Head(range) => {
                    if let Some(head) = conn.machine.take_head() {
                        self.head.set(head);
                    }
                    return Ok(Out::Body(shift(range)));
                }
                Step::Body(range) => return Ok(Out::Body(shift(range))),
                Step::Stderr(range) => return Ok(Out::Stderr(shift(range))),
                Step::End(end) => {
                    self.app_status = Some(end.app_status);
                    self.complete();
                    return Ok(Out::End);
                }
            }
        }
    }

    /// After END_REQUEST: keep the connection when it is clean, else close it.
    fn complete(&mut self) {
        let writer_done = match self.writer.take() {
            None => true,
            Some(writer) => {
                let sent_all = writer.sent_all_after_end();
                if !sent_all {
                    // The server answered without reading all of the body:
                    // the connection cannot carry another request (and the
                    // writer, stuck or not, stops).
                    if let Some(conn) = &self.conn {
                        conn.stream.shutdown();
                    }
                }
                sent_all
            }
        };
        let keep_alive = self.client.inner.config.keep_alive;
        let (pos, filled) = (self.pos, self.filled);
        let Some(conn) = self.conn.as_deref_mut() else {
            return;
        };
        let sent = writer_done && self.request_sent;
        let reusable = conn
            .machine
            .reusable(&conn.buf[pos..filled], sent, keep_alive);
        if let Some(conn) = self.detach() {
            if reusable {
                self.client.checkin(conn);
            }
        }
    }

    /// A refusal (END_REQUEST with a protocol status other than
    /// FCGI_REQUEST_COMPLETE) still ends the exchange cleanly: the END_REQUEST
    /// record was consumed, so the connection is kept or closed as after any
    /// response, as the async client does. Any other error is returned as it
    /// is.
    #[cold]
    fn after_feed_error(&mut self, error: Error) -> Error {
        if let (Error::Rejected { .. }, Some(conn)) = (&error, &self.conn) {
            self.pos += conn.machine.used_before_refusal();
            self.complete();
        }
        error
    }

    /// Stops the exchange after an error: closes the connection, waits for
    /// the writer, and prefers the writer's error when it caused the failure.
    fn abort(&mut self, error: Error) -> Error {
        if let Some(conn) = self.detach() {
            conn.stream.shutdown();
        }
        match self.writer_error() {
            Some(writer_error @ Error::Body(_)) => writer_error,
            Some(writer_error @ Error::InvalidRequest(_)) => writer_error,
            _ => error,
        }
    }

    fn writer_error(&mut self) -> Option<Error> {
        let writer = self.writer.take()?;
        if let Some(conn) = &self.conn {
            conn.stream.shutdown();
        }
        writer.error_within(WRITER_REPORT_WAIT)
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        // Closing the socket stops the script and unblocks the writer.
        if let Some(conn) = self.conn.take() {
            conn.stream.shutdown();
        }
    }
}

impl Read for ResponseStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(out.len());
                let start = self.pending.start;
                out[..n].copy_from_slice(&self.buf()[start..start + n]);
                self.pending.start += n;
                return Ok(n);
            }
            match self.advance() {
                Ok(Out::Body(range)) => self.pending = range,
                Ok(Out::Stderr(_)) => {}
                Ok(Out::End) => return Ok(0),
                Err(e) => {
                    let e = self.abort(e);
                    return Err(io::Error::other(e));
                }
            }
        }
    }
}
