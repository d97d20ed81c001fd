//! The blocking client's body writer: the request body (and DATA) written
//! as STDIN (DATA) records on a thread of its own, while the response is
//! read.

use std::io::{self, Write};
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
        std::thread::Builder::new()
            .name("fcgi-body-writer".into())
            .spawn(move || {
                // The receiver may be gone when the exchange ended first.
                let result =
                    write_body(stream, &address, &timer, &progress, request_id, body, data);
                let _ = report.send(result);
            })?;
        Ok(BodyWriter { done })
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
    address: &str,
    timer: &Timer,
    progress: &Activity,
    id: u16,
    body: Body,
    data: Option<Body>,
) -> Result<(), Error> {
    let to = (address, timer, progress);
    let result =
        write_stream(&mut stream, to, id, RecordType::Stdin, body).and_then(|()| match data {
            Some(data) => write_stream(&mut stream, to, id, RecordType::Data, data),
            None => Ok(()),
        });
    if result.is_err() {
        // Make the reading side fail fast instead of waiting for a body
        // that will never come.
        stream.shutdown();
    }
    result
}

fn write_stream(
    stream: &mut Stream,
    (address, timer, progress): (&str, &Timer, &Activity),
    id: u16,
    record_type: RecordType,
    body: Body,
) -> Result<(), Error> {
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
    stream.write_all(&encoder.end()?).map_err(io_err)?;
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
