//! The request body writer: a task per request whose body is not sent with
//! its preamble. It turns the body (bytes, a blocking reader, an `AsyncRead`
//! or a `Stream`) into STDIN (and DATA) records and hands them to the
//! connection, which writes them as the server takes them: the bounded write
//! channel makes a slow server slow the body source down.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fcgi_proto::encode::{encode_stream, stream_record_header};
use fcgi_proto::record::{RecordType, STREAM_CHUNK_LEN};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::conn::{ConnHandle, Failure, RequestShared, WriteItem};
use crate::error::Error;
use crate::exchange::trace_sent_records;
use crate::request::{AsyncSource, Body};

/// Why writing stopped early.
enum Stop {
    /// The connection is gone; its driver reports why.
    Gone,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

/// Where body records go.
struct Sink<'a> {
    writes: &'a mpsc::Sender<WriteItem>,
    id: u16,
    generation: u64,
}

impl Sink<'_> {
    async fn record(&self, record_type: RecordType, data: Bytes) -> Result<(), Stop> {
        for start in (0..data.len()).step_by(STREAM_CHUNK_LEN) {
            let piece = data.slice(start..data.len().min(start + STREAM_CHUNK_LEN));
            let header = stream_record_header(record_type, self.id, piece.len());
            trace_sent_records(&header);
            self.send(vec![Bytes::copy_from_slice(&header), piece], false)
                .await?;
        }
        Ok(())
    }

    async fn end(&self, record_type: RecordType, last: bool) -> Result<(), Stop> {
        let mut end = Vec::with_capacity(8);
        encode_stream(record_type, self.id, &[], true, &mut end);
        trace_sent_records(&end);
        self.send(vec![Bytes::from(end)], last).await
    }

    async fn send(&self, parts: Vec<Bytes>, last: bool) -> Result<(), Stop> {
        let item = WriteItem {
            id: self.id,
            generation: self.generation,
            parts,
            last,
        };
        self.writes.send(item).await.map_err(|_| Stop::Gone)
    }
}

/// Writes the body (and DATA when given) of request `id`; on failure tells
/// the request why and cancels it on its connection.
pub(crate) async fn write_body(
    conn: Arc<ConnHandle>,
    id: u16,
    generation: u64,
    body: Body,
    data: Option<Body>,
    shared: Arc<RequestShared>,
) {
    let sink = Sink {
        writes: &conn.writes,
        id,
        generation,
    };
    let result = async {
        let data_follows = data.is_some();
        write_stream(&sink, RecordType::Stdin, body).await?;
        sink.end(RecordType::Stdin, !data_follows).await?;
        if let Some(data) = data {
            write_stream(&sink, RecordType::Data, data).await?;
            sink.end(RecordType::Data, true).await?;
        }
        Ok::<(), Stop>(())
    }
    .await;
    if let Err(Stop::Failed(error)) = result {
        shared.fail(Failure {
            error,
            retryable: false,
        });
        conn.cancel(id, generation);
    }
}

fn short_body(sent: u64, len: u64) -> Error {
    Error::InvalidRequest(format!(
        "request body ended after {sent} bytes but its length was given as {len}"
    ))
}

/// How much more to read: up to one record, within the declared length.
fn want(len: Option<u64>, sent: u64) -> usize {
    match len {
        Some(len) => len.saturating_sub(sent).min(STREAM_CHUNK_LEN as u64) as usize,
        None => STREAM_CHUNK_LEN,
    }
}

async fn write_stream(sink: &Sink<'_>, record_type: RecordType, body: Body) -> Result<(), Stop> {
    match body {
        Body::Empty => Ok(()),
        Body::Bytes(bytes) => sink.record(record_type, bytes).await,
        Body::Reader { reader, len } => write_reader(sink, record_type, reader, len).await,
        Body::Async(body) => {
            let len = body.len;
            let mut sent: u64 = 0;
            match body.source {
                AsyncSource::Read(mut reader) => loop {
                    let want = want(len, sent);
                    if want == 0 {
                        return Ok(());
                    }
                    let mut buf = BytesMut::with_capacity(want);
                    let n = loop {
                        match reader.read_buf(&mut buf).await {
                            Ok(n) => break n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(Stop::Failed(Error::Body(e))),
                        }
                    };
                    if n == 0 {
                        return match len {
                            Some(len) => Err(short_body(sent, len).into()),
                            None => Ok(()),
                        };
                    }
                    sent += n as u64;
                    sink.record(record_type, buf.freeze()).await?;
                },
                AsyncSource::Stream(mut stream) => loop {
                    if len.is_some_and(|len| sent >= len) {
                        return Ok(());
                    }
                    let next = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await;
                    match next {
                        Some(Ok(mut chunk)) => {
                            if let Some(len) = len {
                                let room = (len - sent).min(usize::MAX as u64) as usize;
                                chunk.truncate(room);
                            }
                            if chunk.is_empty() {
                                continue;
                            }
                            sent += chunk.len() as u64;
                            sink.record(record_type, chunk).await?;
                        }
                        Some(Err(e)) => return Err(Stop::Failed(Error::Body(e))),
                        None => {
                            return match len {
                                Some(len) => Err(short_body(sent, len).into()),
                                None => Ok(()),
                            }
                        }
                    }
                },
            }
        }
    }
}

/// A blocking reader, read on tokio's blocking pool one record at a time.
async fn write_reader(
    sink: &Sink<'_>,
    record_type: RecordType,
    reader: Box<dyn Read + Send>,
    len: Option<u64>,
) -> Result<(), Stop> {
    let mut reader = Some(reader);
    let mut sent: u64 = 0;
    loop {
        let want = want(len, sent);
        if want == 0 {
            return Ok(());
        }
        let Some(mut r) = reader.take() else {
            return Ok(());
        };
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; want];
            let result = loop {
                match r.read(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other,
                }
            };
            (r, buf, result)
        })
        .await;
        let (r, mut buf, result) = match read {
            Ok(done) => done,
            Err(join) => {
                return Err(Stop::Failed(Error::Body(io::Error::other(format!(
                    "the request body reader panicked: {join}"
                )))))
            }
        };
        reader = Some(r);
        let n = result.map_err(Error::Body)?;
        if n == 0 {
            return match len {
                Some(len) => Err(short_body(sent, len).into()),
                None => Ok(()),
            };
        }
        buf.truncate(n);
        sent += n as u64;
        sink.record(record_type, Bytes::from(buf)).await?;
    }
}
