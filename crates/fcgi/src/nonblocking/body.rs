//! The request body writer: a task per request whose body is not sent with
//! its preamble. It turns the body (bytes, a blocking reader, an `AsyncRead`
//! or a `Stream`) into STDIN (and DATA) records and either hands them to a
//! multiplexed connection's driver (whose bounded write channel makes a slow
//! server slow the body source down) or writes them straight to the write
//! half of a connection the request has to itself.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fcgi_proto::encode::{encode_stream, stream_record_header};
use fcgi_proto::record::{RecordType, STREAM_CHUNK_LEN};
use tokio::io::AsyncReadExt;

use super::conn::{ConnHandle, RequestShared, WriteItem};
use super::socket::{write_parts, WriteHalf};
use crate::error::{is_closed, Error};
use crate::exchange::{trace_sent_records, Failure};
use crate::request::{AsyncSource, Body};

/// Why writing stopped early.
enum Stop {
    /// The connection is gone; its reading side reports why.
    Gone,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

/// Where body records go.
pub(crate) enum Sink {
    /// To the driver of a multiplexed connection.
    Driver {
        conn: Arc<ConnHandle>,
        id: u16,
        generation: u64,
    },
    /// Straight to the socket of a connection this request has alone.
    Direct {
        half: WriteHalf,
        id: u16,
        shared: Arc<RequestShared>,
        /// The server's address, for errors.
        address: String,
    },
}

impl Sink {
    fn id(&self) -> u16 {
        match self {
            Sink::Driver { id, .. } | Sink::Direct { id, .. } => *id,
        }
    }

    async fn record(&mut self, record_type: RecordType, data: Bytes) -> Result<(), Stop> {
        for start in (0..data.len()).step_by(STREAM_CHUNK_LEN) {
            let piece = data.slice(start..data.len().min(start + STREAM_CHUNK_LEN));
            let header = stream_record_header(record_type, self.id(), piece.len());
            trace_sent_records(&header);
            self.send(vec![Bytes::copy_from_slice(&header), piece], false)
                .await?;
        }
        Ok(())
    }

    async fn end(&mut self, record_type: RecordType, last: bool) -> Result<(), Stop> {
        let mut end = Vec::with_capacity(8);
        encode_stream(record_type, self.id(), &[], true, &mut end);
        trace_sent_records(&end);
        self.send(vec![Bytes::from(end)], last).await
    }

    async fn send(&mut self, parts: Vec<Bytes>, last: bool) -> Result<(), Stop> {
        match self {
            Sink::Driver {
                conn,
                id,
                generation,
            } => {
                let item = WriteItem {
                    id: *id,
                    generation: *generation,
                    parts,
                    last,
                };
                conn.writes.send(item).await.map_err(|_| Stop::Gone)
            }
            Sink::Direct {
                half,
                shared,
                address,
                ..
            } => {
                if let Err(e) = write_parts(half, &parts).await {
                    // The server closing shows on the reading side (which
                    // may still get its answer); any other error is the
                    // request's.
                    if !is_closed(&e) {
                        shared.fail(Failure::fatal(Error::Io {
                            address: address.clone(),
                            source: e,
                        }));
                    }
                    return Err(Stop::Gone);
                }
                shared.touch();
                Ok(())
            }
        }
    }
}

/// Writes `preamble` (when given), then the body (and DATA when given) of
/// the sink's request; returns the sink when everything went out. On a
/// body failure tells the request why (and cancels it on a driver).
pub(crate) async fn write_body(
    mut sink: Sink,
    preamble: Option<Bytes>,
    body: Body,
    data: Option<Body>,
    shared: Arc<RequestShared>,
) -> Option<Sink> {
    let result = async {
        if let Some(preamble) = preamble {
            sink.send(vec![preamble], false).await?;
        }
        let data_follows = data.is_some();
        write_stream(&mut sink, RecordType::Stdin, body).await?;
        sink.end(RecordType::Stdin, !data_follows).await?;
        if let Some(data) = data {
            write_stream(&mut sink, RecordType::Data, data).await?;
            sink.end(RecordType::Data, true).await?;
        }
        Ok::<(), Stop>(())
    }
    .await;
    match result {
        Ok(()) => Some(sink),
        Err(Stop::Gone) => {
            if let Sink::Direct { half, .. } = sink {
                half.forget();
            }
            None
        }
        Err(Stop::Failed(error)) => {
            shared.fail(Failure::fatal(error));
            match sink {
                Sink::Driver {
                    conn,
                    id,
                    generation,
                } => conn.cancel(id, generation),
                // The request's reader closes the connection.
                Sink::Direct { half, .. } => half.forget(),
            }
            None
        }
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

async fn write_stream(sink: &mut Sink, record_type: RecordType, body: Body) -> Result<(), Stop> {
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
    sink: &mut Sink,
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
