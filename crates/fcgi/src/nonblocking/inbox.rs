//! The response buffer of one request on a multiplexed connection.
//!
//! FastCGI has no per-request flow control: a connection's driver that
//! stopped reading the socket for one slow reader would stall every other
//! request on the connection. So the driver never waits for a reader; it
//! hands each request's records to that request's [`Inbox`], which keeps up
//! to [`BufferLimits::memory`] bytes in memory, then appends the rest to an
//! unnamed temporary file (like nginx's `fastcgi_buffers` and
//! `fastcgi_max_temp_file_size`). Past [`BufferLimits::file`] bytes waiting
//! in the file the request fails with [`Limit::ResponseBuffer`]; the other
//! requests on the connection are not touched.
//!
//! Memory per request is at most `memory` bytes of copies plus one chunk of
//! the connection's read buffer (the first record queued for a reader is a
//! slice of it, not a copy; every later one is copied while the reader is
//! behind, so a stalled reader never pins more than one read chunk).
//!
//! The file is written and read with plain (blocking) system calls from the
//! driver and the reader: they go to the page cache, as nginx's temporary
//! files do.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use fcgi_proto::decode::EndRequest;
use fcgi_proto::record::ProtocolStatus;

use super::frame::Frame;
use super::lock::lock;
use crate::error::{Error, Limit};

/// How much of one request's unread response a multiplexed connection
/// keeps, and where.
#[derive(Debug, Clone)]
pub(crate) struct BufferLimits {
    /// Bytes kept in memory before the rest goes to a temporary file.
    pub(crate) memory: usize,
    /// Bytes waiting in the temporary file before the request fails
    /// (0: no file; the request fails once memory is full).
    pub(crate) file: u64,
    /// Where temporary files are made (`None`: the system's directory).
    pub(crate) dir: Option<PathBuf>,
}

/// Kinds of entries in a spill file: a one-byte kind, a four-byte length,
/// then the bytes.
const KIND_STDOUT: u8 = 1;
const KIND_STDERR: u8 = 2;
const KIND_END: u8 = 3;
/// Bytes before each entry's content in a spill file.
const ENTRY_HEADER_LEN: u64 = 5;

/// A request's buffered response, shared by its connection's driver (which
/// adds) and its reader (which takes).
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// In memory, in order, before anything in the file.
    frames: VecDeque<Frame>,
    /// Bytes of STDOUT and STDERR in `frames`.
    memory: usize,
    spill: Option<Spill>,
    /// The driver will add nothing more (the request ended, failed or was
    /// cancelled); the reader takes what is left, then the end.
    closed: bool,
    waker: Option<Waker>,
}

#[derive(Debug)]
struct Spill {
    file: File,
    /// Entries are read from `read_at` up to `write_at`.
    read_at: u64,
    write_at: u64,
}

impl Spill {
    fn unread(&self) -> u64 {
        self.write_at - self.read_at
    }
}

impl Inbox {
    /// Adds a frame from the driver; the error (the buffer is over its
    /// limit, or the temporary file failed) ends the request.
    pub(crate) fn push(
        &self,
        frame: Frame,
        limits: &BufferLimits,
        address: &str,
    ) -> Result<(), Error> {
        let mut state = lock(&self.state);
        let len = match &frame {
            Frame::Stdout(b) | Frame::Stderr(b) => b.len(),
            Frame::End(_) => 0,
        };
        let spilling = state.spill.as_ref().is_some_and(|s| s.unread() > 0);
        if !spilling && state.memory + len <= limits.memory {
            // Only the frame a waiting reader takes next stays a slice of
            // the read buffer; one queued behind others is copied, so a
            // reader that is behind pins no read buffer.
            let frame = if state.frames.is_empty() {
                frame
            } else {
                match frame {
                    Frame::Stdout(b) => Frame::Stdout(Bytes::copy_from_slice(&b)),
                    Frame::Stderr(b) => Frame::Stderr(Bytes::copy_from_slice(&b)),
                    end => end,
                }
            };
            state.memory += len;
            state.frames.push_back(frame);
        } else {
            let waiting = state.spill.as_ref().map_or(0, Spill::unread);
            if waiting + len as u64 + ENTRY_HEADER_LEN > limits.file {
                return Err(Error::LimitExceeded {
                    limit: Limit::ResponseBuffer,
                    max: usize::try_from(limits.file).unwrap_or(usize::MAX),
                });
            }
            spill(&mut state, &frame, limits).map_err(|source| Error::Io {
                address: format!("{address} (response buffer file)"),
                source,
            })?;
        }
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
        Ok(())
    }

    /// The driver adds nothing more; a waiting reader wakes.
    pub(crate) fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        if let Some(waker) = state.waker.take() {
            drop(state);
            waker.wake();
        }
    }

    /// The next frame, `Ready(None)` once closed and empty; a file that
    /// cannot be read back is an error.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, io::Error>> {
        let mut state = lock(&self.state);
        if let Some(frame) = state.frames.pop_front() {
            if let Frame::Stdout(b) | Frame::Stderr(b) = &frame {
                state.memory -= b.len();
            }
            return Poll::Ready(Ok(Some(frame)));
        }
        if let Some(spill) = state.spill.as_mut().filter(|s| s.unread() > 0) {
            let frame = read_entry(spill)?;
            if spill.unread() == 0 {
                // Drained: the next frames go to memory again, and the
                // file's blocks are given back.
                spill.read_at = 0;
                spill.write_at = 0;
                spill.file.set_len(0)?;
            }
            return Poll::Ready(Ok(Some(frame)));
        }
        if state.closed {
            return Poll::Ready(Ok(None));
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Appends `frame` to the request's temporary file, made on first use.
fn spill(state: &mut State, frame: &Frame, limits: &BufferLimits) -> io::Result<()> {
    if state.spill.is_none() {
        let file = match &limits.dir {
            Some(dir) => tempfile::tempfile_in(dir)?,
            None => tempfile::tempfile()?,
        };
        state.spill = Some(Spill {
            file,
            read_at: 0,
            write_at: 0,
        });
    }
    let Some(spill) = state.spill.as_mut() else {
        return Ok(());
    };
    let mut end = [0u8; 5];
    let (kind, content): (u8, &[u8]) = match frame {
        Frame::Stdout(b) => (KIND_STDOUT, b),
        Frame::Stderr(b) => (KIND_STDERR, b),
        Frame::End(e) => {
            end[..4].copy_from_slice(&e.app_status.to_be_bytes());
            end[4] = e.protocol_status.to_u8();
            (KIND_END, &end)
        }
    };
    let mut entry = Vec::with_capacity(ENTRY_HEADER_LEN as usize + content.len());
    entry.push(kind);
    entry.extend_from_slice(&(content.len() as u32).to_be_bytes());
    entry.extend_from_slice(content);
    spill.file.write_all_at(&entry, spill.write_at)?;
    spill.write_at += entry.len() as u64;
    Ok(())
}

/// Reads the entry at `spill.read_at`.
fn read_entry(spill: &mut Spill) -> io::Result<Frame> {
    let mut header = [0u8; ENTRY_HEADER_LEN as usize];
    spill.file.read_exact_at(&mut header, spill.read_at)?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut content = vec![0u8; len];
    spill
        .file
        .read_exact_at(&mut content, spill.read_at + ENTRY_HEADER_LEN)?;
    spill.read_at += ENTRY_HEADER_LEN + len as u64;
    match header[0] {
        KIND_STDOUT => Ok(Frame::Stdout(Bytes::from(content))),
        KIND_STDERR => Ok(Frame::Stderr(Bytes::from(content))),
        KIND_END if len == 5 => Ok(Frame::End(EndRequest {
            app_status: u32::from_be_bytes([content[0], content[1], content[2], content[3]]),
            protocol_status: ProtocolStatus::from_u8(content[4]),
        })),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "response buffer file damaged",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    fn limits(memory: usize, file: u64) -> BufferLimits {
        BufferLimits {
            memory,
            file,
            dir: None,
        }
    }

    fn drain(inbox: &Inbox) -> Vec<Frame> {
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut frames = Vec::new();
        while let Poll::Ready(Ok(Some(frame))) = inbox.poll_next(&mut cx) {
            frames.push(frame);
        }
        frames
    }

    fn end() -> Frame {
        Frame::End(EndRequest {
            app_status: 7,
            protocol_status: ProtocolStatus::RequestComplete,
        })
    }

    #[test]
    fn frames_past_the_memory_bound_come_back_from_the_file_in_order() {
        let inbox = Inbox::default();
        let limits = limits(10, 1 << 20);
        for i in 0..5u8 {
            inbox
                .push(Frame::Stdout(Bytes::from(vec![i; 6])), &limits, "a")
                .unwrap();
            inbox
                .push(Frame::Stderr(Bytes::from(vec![i + 100; 1])), &limits, "a")
                .unwrap();
        }
        inbox.push(end(), &limits, "a").unwrap();
        assert!(lock(&inbox.state).spill.is_some(), "spilled to a file");
        let frames = drain(&inbox);
        assert_eq!(frames.len(), 11);
        for i in 0..5u8 {
            assert_eq!(
                frames[2 * i as usize],
                Frame::Stdout(Bytes::from(vec![i; 6]))
            );
            assert_eq!(
                frames[2 * i as usize + 1],
                Frame::Stderr(Bytes::from(vec![i + 100; 1]))
            );
        }
        assert_eq!(frames[10], end());
    }

    #[test]
    fn past_the_file_bound_the_push_fails_with_the_buffer_limit() {
        let inbox = Inbox::default();
        let limits = limits(4, 20);
        inbox
            .push(Frame::Stdout(Bytes::from_static(b"abcd")), &limits, "a")
            .unwrap();
        inbox
            .push(
                Frame::Stdout(Bytes::from_static(b"0123456789")),
                &limits,
                "a",
            )
            .unwrap();
        let err = inbox
            .push(
                Frame::Stdout(Bytes::from_static(b"0123456789")),
                &limits,
                "a",
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    limit: Limit::ResponseBuffer,
                    max: 20
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_drained_file_is_emptied_and_memory_is_used_again() {
        let inbox = Inbox::default();
        let limits = limits(4, 1 << 20);
        inbox
            .push(Frame::Stdout(Bytes::from_static(b"abcdef")), &limits, "a")
            .unwrap();
        assert_eq!(
            drain(&inbox),
            [Frame::Stdout(Bytes::from_static(b"abcdef"))]
        );
        inbox
            .push(Frame::Stdout(Bytes::from_static(b"xy")), &limits, "a")
            .unwrap();
        let state = lock(&inbox.state);
        assert_eq!(state.frames.len(), 1, "back in memory");
        assert_eq!(state.spill.as_ref().map(|s| s.write_at), Some(0));
    }

    #[test]
    fn a_closed_inbox_gives_what_is_left_then_none() {
        let inbox = Inbox::default();
        let limits = limits(100, 0);
        inbox
            .push(Frame::Stdout(Bytes::from_static(b"x")), &limits, "a")
            .unwrap();
        inbox.close();
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(matches!(inbox.poll_next(&mut cx), Poll::Ready(Ok(Some(_)))));
        assert!(matches!(inbox.poll_next(&mut cx), Poll::Ready(Ok(None))));
    }
}
