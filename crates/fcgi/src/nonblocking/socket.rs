//! Sockets of either kind (TCP, Unix), whole or split into halves, and
//! connecting within a time limit.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{tcp, unix, TcpStream, UnixStream};

use crate::address::Address;
use crate::error::{connect_failed, connect_timed_out, Error};
use crate::exchange::advance_written;

/// A connected socket of either kind.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The reading half of a split [`Socket`].
#[derive(Debug)]
pub(crate) enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

/// The writing half of a split [`Socket`]; dropping it shuts the socket's
/// write side down.
#[derive(Debug)]
pub(crate) enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

/// Runs `$body` with `$s` bound to the pinned inner stream of whichever
/// variant `$value` is.
macro_rules! each_kind {
    ($kind:ident, $value:expr, $s:ident => $body:expr) => {
        match $value {
            $kind::Tcp($s) => {
                let $s = Pin::new($s);
                $body
            }
            $kind::Unix($s) => {
                let $s = Pin::new($s);
                $body
            }
        }
    };
}

impl Socket {
    /// Splits into halves that can be used from different tasks.
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Socket::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Socket::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
        }
    }

    /// Puts halves of one socket back together; `None` when they are not
    /// from the same socket (which the callers never do).
    pub(crate) fn reunite(read: ReadHalf, write: WriteHalf) -> Option<Socket> {
        match (read, write) {
            (ReadHalf::Tcp(r), WriteHalf::Tcp(w)) => r.reunite(w).ok().map(Socket::Tcp),
            (ReadHalf::Unix(r), WriteHalf::Unix(w)) => r.reunite(w).ok().map(Socket::Unix),
            _ => None,
        }
    }
}

impl Socket {
    /// Whether a kept connection is still fit for a request: the server has
    /// neither closed it nor sent anything since the last answer, and the
    /// runtime it was registered with still runs. Costs no system call
    /// unless the runtime has seen the socket become readable. (A pending
    /// check leaves `cx`'s waker registered for readability; a later wake
    /// is spurious and harmless.)
    pub(crate) fn still_idle(&self, cx: &mut Context<'_>) -> bool {
        let readiness = match self {
            Socket::Tcp(s) => s.poll_read_ready(cx),
            Socket::Unix(s) => s.poll_read_ready(cx),
        };
        match readiness {
            // Nothing to read, and its runtime is alive.
            Poll::Pending => true,
            // Its runtime is gone (or the socket failed).
            Poll::Ready(Err(_)) => false,
            // Readable: closed, bytes nobody asked for, or a stale event.
            Poll::Ready(Ok(())) => {
                let mut byte = [0u8; 1];
                let probe = match self {
                    Socket::Tcp(s) => s.try_read(&mut byte),
                    Socket::Unix(s) => s.try_read(&mut byte),
                };
                matches!(probe, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

impl WriteHalf {
    /// Drops the half without shutting the write side down, so that the
    /// server does not see the end of input (and answer as if the body were
    /// complete) before the request is failed and its socket closed with
    /// the read half. (php-fpm may still run the script with the body cut
    /// short; the caller gets the body's error either way.)
    pub(crate) fn forget(self) {
        match self {
            WriteHalf::Tcp(w) => w.forget(),
            WriteHalf::Unix(w) => w.forget(),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_kind!(Socket, self.get_mut(), s => s.poll_read(cx, buf))
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_kind!(ReadHalf, self.get_mut(), s => s.poll_read(cx, buf))
    }
}

/// [`AsyncWrite`] by delegation to the inner stream of each variant.
macro_rules! delegate_write {
    ($kind:ident) => {
        impl AsyncWrite for $kind {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                each_kind!($kind, self.get_mut(), s => s.poll_write(cx, buf))
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                each_kind!($kind, self.get_mut(), s => s.poll_write_vectored(cx, bufs))
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                each_kind!($kind, self.get_mut(), s => s.poll_flush(cx))
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                each_kind!($kind, self.get_mut(), s => s.poll_shutdown(cx))
            }
        }
    };
}

delegate_write!(Socket);
delegate_write!(WriteHalf);

/// Connects within `timeout`, with TCP_NODELAY on TCP.
pub(crate) async fn connect(address: &Address, timeout: Duration) -> Result<Socket, Error> {
    let attempt = async {
        match address {
            Address::Unix(path) => UnixStream::connect(path).await.map(Socket::Unix),
            Address::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Ok(Socket::Tcp(stream))
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(socket)) => Ok(socket),
        Ok(Err(source)) => Err(connect_failed(&address.to_string(), timeout, source)),
        Err(_) => Err(connect_timed_out(address, timeout)),
    }
}

/// Writes all of `parts` (a record header and its content, say) with
/// vectored writes (the blocking body writer's `write_all_vectored` blocks
/// where this awaits; both advance with [`advance_written`]).
pub(crate) async fn write_parts<W: AsyncWrite + Unpin>(
    writer: &mut W,
    parts: &[bytes::Bytes],
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = writer.write_vectored(rest).await?;
        advance_written(&mut rest, n)?;
    }
    Ok(())
}
