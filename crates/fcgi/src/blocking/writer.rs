//! The blocking client's body writer: the request body (and DATA) written
//! as STDIN (DATA) records on a thread of its own, while the response is
//! read.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use fcgi_proto::record::{RecordType, HEADER_LEN, STREAM_CHUNK_LEN};

use super::conn::Stream;
use crate::error::Error;
use crate::exchange::{advance_written, read_body_source, Activity, StreamEncoder, Timer};
use crate::request::Body;

/// How long a failing exchange waits for the body writer to say why it
/// stopped (its error, such as a failing body reader, explains the failure).
pub(super) const WRITER_REPORT_WAIT: Duration = Duration::from_millis(200);

/// The request body (and DATA) being written on its own thread. The thread is
/// never joined: it may be blocked reading the caller's body, so it is left
/// to finish on its own once its socket is shut down.
pub(super) struct BodyWriter {
    done: mpsc::Receiver<Result<(), Error>>,
    /// Set once the thread has begun the write of the last record (the
    /// empty one that ends the last stream): the server cannot have read the
    /// whole request before that.
    ending: Arc<AtomicBool>,
}

impl BodyWriter {
    pub(super) fn spawn(
        stream: Stream,
        address: String,
        timer: Timer,
        progress: Arc<Activity>,
        request_id: u16,
        body: Body,
        data: Option<Body>,
    ) -> io::Result<BodyWriter> {
        let (report, done) = mpsc::sync_channel(1);
        let ending = Arc::new(AtomicBool::new(false));
        let last_record = Arc::clone(&ending);
        std::thread::Builder::new()
            .name("fcgi-body-writer".into())
            .spawn(move || {
                let to = Destination {
                    address: &address,
                    timer: &timer,
                    progress: &progress,
                    last_record: &last_record,
                };
                // The receiver may be gone when the exchange ended first.
                let _ = report.send(write_body(stream, to, request_id, body, data));
            })?;
        Ok(BodyWriter { done, ending })
    }

    /// The writer's result once the server has ended the request: whether
    /// all of the body went out (the connection can then carry another
    /// request). The server may read the last record and answer before the
    /// writer thread has returned from that write, so a writer already
    /// writing it is given [`WRITER_REPORT_WAIT`] to say so; one that has
    /// not begun it has not sent the whole body, which the server then did
    /// not read: no wait.
    pub(super) fn sent_all_after_end(&self) -> bool {
        match self.finished() {
            Some(result) => result.is_ok(),
            None if self.ending.load(Ordering::Acquire) => {
                matches!(self.done.recv_timeout(WRITER_REPORT_WAIT), Ok(Ok(())))
            }
            None => false,
        }
    }

    /// The writer's result if it has finished, without waiting.
    pub(super) fn finished(&self) -> Option<Result<(), Error>> {
        match self.done.try_recv() {
            Ok(result) => Some(result),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(Error::internal(
                "the body writer thread stopped without a result (it panicked)",
            ))),
        }
    }

    /// The writer's error, waiting at most `limit` for it to finish.
    pub(super) fn error_within(&self, limit: Duration) -> Option<Error> {
        self.done.recv_timeout(limit).ok().and_then(Result::err)
    }
}

/// Writes the body as STDIN records (and DATA for the Filter role), each
/// terminated by its empty record. Runs on the writer thread.
fn write_body(
    mut stream: Stream,
    to: Destination<'_>,
    id: u16,
    body: Body,
    data: Option<Body>,
) -> Result<(), Error> {
    let stdin_is_last = data.is_none();
    let result = write_stream(&mut stream, to, id, RecordType::Stdin, body, stdin_is_last)
        .and_then(|()| match data {
            Some(data) => write_stream(&mut stream, to, id, RecordType::Data, data, true),
            None => Ok(()),
        });
    if result.is_err() {
        // Make the reading side fail fast instead of waiting for a body
        // that will never come.
        stream.shutdown();
    }
    result
}

/// Where a body goes and what the writer reports on the way.
#[derive(Clone, Copy)]
struct Destination<'a> {
    address: &'a str,
    timer: &'a Timer,
    progress: &'a Activity,
    /// See [`BodyWriter`]'s `ending`.
    last_record: &'a AtomicBool,
}

fn write_stream(
    stream: &mut Stream,
    to: Destination<'_>,
    id: u16,
    record_type: RecordType,
    body: Body,
    is_last: bool,
) -> Result<(), Error> {
    let Destination {
        address,
        timer,
        progress,
        last_record,
    } = to;
    let io_err = |source: io::Error| Error::Io {
        address: address.to_string(),
        source,
    };
    let mut encoder = StreamEncoder::new(record_type, id, body.len());
    match body {
        Body::Empty => {}
        // Refused by `Client::stream` before anything is sent.
        Body::Async(_) => {
            return Err(Error::internal(
                "an async body reached the blocking client's body writer",
            ))
        }
        Body::Bytes(bytes) => {
            for chunk in bytes.chunks(STREAM_CHUNK_LEN) {
                let header = encoder.header(chunk.len());
                write_all_vectored(stream, &header, chunk).map_err(io_err)?;
                progress.record(timer.started().elapsed());
            }
        }
        Body::Reader { mut reader, .. } => {
            let mut buf = vec![0u8; HEADER_LEN + STREAM_CHUNK_LEN];
            loop {
                let want = encoder.want();
                if want == 0 {
                    break;
                }
                let n = read_body_source(&mut reader, &mut buf[HEADER_LEN..HEADER_LEN + want])?;
                if n == 0 {
                    break;
                }
                buf[..HEADER_LEN].copy_from_slice(&encoder.header(n));
                stream.write_all(&buf[..HEADER_LEN + n]).map_err(io_err)?;
                progress.record(timer.started().elapsed());
            }
        }
    }
    let end = encoder.end()?;
    if is_last {
        last_record.store(true, Ordering::Release);
    }
    stream.write_all(&end).map_err(io_err)?;
    progress.record(timer.started().elapsed());
    Ok(())
}

/// Writes a record header and its content with vectored writes (the async
/// body writer's `write_parts` awaits where this blocks; both advance with
/// [`advance_written`]).
fn write_all_vectored(stream: &mut Stream, header: &[u8], data: &[u8]) -> io::Result<()> {
    let mut slices = [io::IoSlice::new(header), io::IoSlice::new(data)];
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match stream.write_vectored(rest) {
            Ok(n) => advance_written(&mut rest, n)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
