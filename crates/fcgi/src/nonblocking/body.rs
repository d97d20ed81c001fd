//! The request body writer: a task per request whose body is not sent with
//! its preamble. It turns the body (bytes, a blocking reader, an `AsyncRead`
//! or a `Stream`) into STDIN (and DATA) records and either hands them to a
//! multiplexed connection's driver (whose bounded write channel makes a slow
//! server slow the body source down) or writes them straight to the write
//! half of a connection the request has to itself.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fcgi_proto::record::{RecordType, STREAM_CHUNK_LEN};
use tokio::io::AsyncReadExt;

use super::mux::{MuxConn, WriteItem};
use super::shared::RequestShared;
use super::socket::{write_parts, WriteHalf};
use crate::error::{is_closed, Error};
use crate::exchange::{read_body_source, Failure, StreamEncoder};
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
    Mux {
        conn: Arc<MuxConn>,
        id: u16,
        generation: u64,
    },
    /// Straight to the socket of a connection this request has alone.
    Single {
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
            Sink::Mux { id, .. } | Sink::Single { id, .. } => *id,
        }
    }

    async fn record(&mut self, encoder: &mut StreamEncoder, data: Bytes) -> Result<(), Stop> {
        for start in (0..data.len()).step_by(STREAM_CHUNK_LEN) {
            let piece = data.slice(start..data.len().min(start + STREAM_CHUNK_LEN));
            let header = encoder.header(piece.len());
            self.send(vec![Bytes::copy_from_slice(&header), piece], false)
                .await?;
        }
        Ok(())
    }

    /// Ends the stream (refused when it is short of its declared length);
    /// `last`: nothing of the request follows.
    async fn end(&mut self, encoder: &StreamEncoder, last: bool) -> Result<(), Stop> {
        let end = encoder.end()?;
        self.send(vec![Bytes::copy_from_slice(&end)], last).await
    }

    async fn send(&mut self, parts: Vec<Bytes>, last: bool) -> Result<(), Stop> {
        match self {
            Sink::Mux {
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
            Sink::Single {
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
        write_stream(&mut sink, RecordType::Stdin, body, !data_follows).await?;
        if let Some(data) = data {
            write_stream(&mut sink, RecordType::Data, data, true).await?;
        }
        Ok::<(), Stop>(())
    }
    .await;
    match result {
        Ok(()) => Some(sink),
        Err(Stop::Gone) => {
            if let Sink::Single { half, .. } = sink {
                half.forget();
            }
            None
        }
        Err(Stop::Failed(error)) => {
            shared.fail(Failure::fatal(error));
            match sink {
                Sink::Mux {
                    conn,
                    id,
                    generation,
                } => conn.cancel(id, generation),
                // The request's reader closes the connection.
                Sink::Single { half, .. } => half.forget(),
            }
            None
        }
    }
}

/// Writes one stream (STDIN or DATA) of `body` and its end; `last`:
/// nothing of the request follows it.
async fn write_stream(
    sink: &mut Sink,
    record_type: RecordType,
    body: Body,
    last: bool,
) -> Result<(), Stop> {
    let mut encoder = StreamEncoder::new(record_type, sink.id(), body.len());
    write_content(sink, &mut encoder, body).await?;
    sink.end(&encoder, last).await
}

/// The records of `body`, up to its declared length or its end.
async fn write_content(
    sink: &mut Sink,
    encoder: &mut StreamEncoder,
    body: Body,
) -> Result<(), Stop> {
    match body {
        Body::Empty => Ok(()),
        Body::Bytes(bytes) => sink.record(encoder, bytes).await,
        Body::Reader { reader, .. } => write_reader(sink, encoder, reader).await,
        Body::Async(body) => match body.source {
            AsyncSource::Read(mut reader) => loop {
                let want = encoder.want();
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
                    return Ok(());
                }
                sink.record(encoder, buf.freeze()).await?;
            },
            AsyncSource::Stream(mut stream) => loop {
                if encoder.room() == Some(0) {
                    return Ok(());
                }
                let next = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await;
                match next {
                    Some(Ok(mut chunk)) => {
                        if let Some(room) = encoder.room() {
                            chunk.truncate(room.min(usize::MAX as u64) as usize);
                        }
                        if chunk.is_empty() {
                            continue;
                        }
                        sink.record(encoder, chunk).await?;
                    }
                    Some(Err(e)) => return Err(Stop::Failed(Error::Body(e))),
                    None => return Ok(()),
                }
            },
        },
    }
}

/// A blocking reader, read on tokio's blocking pool one record at a time.
async fn write_reader(
    sink: &mut Sink,
    encoder: &mut StreamEncoder,
    reader: Box<dyn Read + Send>,
) -> Result<(), Stop> {
    let mut reader = Some(reader);
    loop {
        let want = encoder.want();
        if want == 0 {
            return Ok(());
        }
        let Some(mut r) = reader.take() else {
            return Ok(());
        };
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; want];
            let result = read_body_source(&mut r, &mut buf);
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
        let n = result?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        sink.record(encoder, Bytes::from(buf)).await?;
    }
}
