//! Blocking sockets: connecting with a timeout over TCP or a Unix socket, and
//! the small set of operations the client needs from either.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::address::Address;
use crate::error::{connect_failed, Error};

/// Read buffer size: one full php-fpm record (65528 content bytes + header)
/// fits, and the buffer stays below the allocator's mmap threshold.
pub(crate) const READ_BUFFER_LEN: usize = 64 * 1024 + 64;

/// A connected socket of either kind.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(timeout),
            Stream::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    pub(crate) fn shutdown(&self) {
        // The peer may already be gone; there is nothing to do about it.
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }

    fn sock(&self) -> SockRef<'_> {
        match self {
            Stream::Tcp(s) => SockRef::from(s),
            Stream::Unix(s) => SockRef::from(s),
        }
    }

    /// True when the peer has closed or sent unexpected bytes: a kept
    /// connection in that state must not carry another request.
    /// One non-blocking peek (a single system call): only "would block"
    /// means the connection is idle and clean.
    pub(crate) fn is_stale(&self) -> bool {
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        let flags = nix::libc::MSG_PEEK | nix::libc::MSG_DONTWAIT;
        !matches!(self.sock().recv_with_flags(&mut probe, flags), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connects to `address` within `timeout`, with TCP_NODELAY on TCP and the
/// write timeout set to `idle`.
pub(crate) fn connect(
    address: &Address,
    timeout: Duration,
    idle: Duration,
) -> Result<Stream, Error> {
    let display = address.to_string();
    let connect_error = |source: io::Error| connect_failed(&display, timeout, source);
    let stream = match address {
        Address::Unix(path) => {
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(connect_error)?;
            let addr = SockAddr::unix(path).map_err(connect_error)?;
            socket
                .connect_timeout(&addr, timeout)
                .map_err(connect_error)?;
            Stream::Unix(socket.into())
        }
        Address::Tcp { host, port } => {
            let addrs: Vec<_> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(connect_error)?
                .collect();
            let mut last =
                io::Error::new(io::ErrorKind::NotFound, "host name resolved to no address");
            let mut connected = None;
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(s) => {
                        connected = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let stream = connected.ok_or_else(|| connect_error(last))?;
            stream.set_nodelay(true).map_err(connect_error)?;
            Stream::Tcp(stream)
        }
    };
    stream
        .set_write_timeout(Some(idle))
        .map_err(connect_error)?;
    Ok(stream)
}
