//! Reading a connection's records on either path: the read buffer's sizing
//! and the [`Frame`]s decoded from it (STDOUT, STDERR, END_REQUEST, sharing
//! the read buffer rather than copying it). The multiplexed driver
//! ([`super::mux`]) routes frames by request id; a connection carrying a
//! single request ([`super::single`]) hands them to its reader directly.

use bytes::{Bytes, BytesMut};
use fcgi_proto::decode::{DecodeError, Decoder, EndRequest, Event};

use crate::exchange::trace_event;

/// Bytes asked of the socket per read: one full php-fpm record fits.
pub(crate) const READ_CHUNK_LEN: usize = 64 * 1024 + 64;

/// A piece of one request's answer, decoded from its connection.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    Stdout(Bytes),
    Stderr(Bytes),
    End(EndRequest),
}

/// Decodes the next event from `pending` (bytes read, not yet decoded) and
/// drops what it used; STDOUT and STDERR share `pending`'s buffer. Returns
/// the frame and its request id, or `None` when the bytes used made no
/// frame (a partial record, or a management answer, which is ignored).
#[inline]
pub(crate) fn next_frame(
    decoder: &mut Decoder,
    pending: &mut Bytes,
) -> Result<Option<(u16, Frame)>, DecodeError> {
    let input = std::mem::take(pending);
    let (used, event) = decoder.decode(&input)?;
    let frame = event.and_then(|event| {
        trace_event("recv", &event);
        match event {
            Event::Stdout(id, b) => Some((id, Frame::Stdout(input.slice_ref(b)))),
            Event::Stderr(id, b) => Some((id, Frame::Stderr(input.slice_ref(b)))),
            Event::End(id, end) => Some((id, Frame::End(end))),
            Event::Values(_) | Event::UnknownType(_) => None,
        }
    });
    *pending = input.slice(used..);
    Ok(frame)
}

/// Makes room in `rbuf` for one more read of up to [`READ_CHUNK_LEN`] bytes
/// when little is left.
#[inline]
pub(crate) fn reserve_read(rbuf: &mut BytesMut) {
    if rbuf.capacity() - rbuf.len() < READ_CHUNK_LEN / 4 {
        rbuf.reserve(READ_CHUNK_LEN);
    }
}
