//! The `sock_*` coroutines: plain socket calls that wait on the loop
//! (CPython's `selector_events.sock_recv` and friends).
//!
//! Each tries the call at once; a socket that is not ready gets a reader
//! (or writer) callback that wakes the coroutine, which tries again. As in
//! CPython, the callback is removed when the call ends — unless another
//! call on the same socket has replaced it meanwhile (two concurrent
//! readers: the later one owns the descriptor's reader, and the earlier one
//! waits until it is cancelled).

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

use super::EventLoop;
use crate::exceptions::{Error, Result};
use crate::futures::Future;
use crate::socket::{as_uninit, Socket, AF_INET, AF_INET6};
use crate::transports::Address;

/// An address for `sock_connect` / `sock_sendto`: resolved already, or a
/// `(host, port)` pair resolved as CPython's `_ensure_resolved` does (a
/// numeric host without a lookup).
#[derive(Clone, Debug)]
pub enum SocketAddressArg {
    /// An address as it is.
    Address(Address),
    /// A host name (or numeric address) and a port.
    HostPort(String, u16),
}

/// Python's `str()` of the address (as error messages show it).
impl std::fmt::Display for SocketAddressArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddressArg::Address(a) => f.write_str(&a.socket_repr()),
            SocketAddressArg::HostPort(h, p) => {
                write!(f, "({}, {p})", crate::exceptions::py_str_repr(h))
            }
        }
    }
}

impl From<Address> for SocketAddressArg {
    fn from(a: Address) -> Self {
        SocketAddressArg::Address(a)
    }
}

impl From<SocketAddr> for SocketAddressArg {
    fn from(a: SocketAddr) -> Self {
        SocketAddressArg::Address(Address::Inet(a))
    }
}

impl From<(&str, u16)> for SocketAddressArg {
    fn from((h, p): (&str, u16)) -> Self {
        SocketAddressArg::HostPort(h.to_owned(), p)
    }
}

impl From<(String, u16)> for SocketAddressArg {
    fn from((h, p): (String, u16)) -> Self {
        SocketAddressArg::HostPort(h, p)
    }
}

impl From<&std::path::Path> for SocketAddressArg {
    fn from(p: &std::path::Path) -> Self {
        SocketAddressArg::Address(Address::Unix(p.to_path_buf()))
    }
}

impl From<std::path::PathBuf> for SocketAddressArg {
    fn from(p: std::path::PathBuf) -> Self {
        SocketAddressArg::Address(Address::Unix(p))
    }
}

pub(super) fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(115) // EINPROGRESS
}

/// The largest receive read through the per-thread scratch buffer.
const SCRATCH: usize = 256 * 1024;

thread_local! {
    static SCRATCH_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs a receive of up to `n` bytes and returns exactly what it read, as
/// Python's `bytes`: through a reused scratch buffer (a request as large
/// as the usual 64 KiB costs neither a large allocation nor zeroing), or
/// for larger requests into a buffer of its own.
fn received(
    n: usize,
    recv: impl FnOnce(&mut [MaybeUninit<u8>]) -> io::Result<usize>,
) -> io::Result<Vec<u8>> {
    if n <= SCRATCH {
        let scratch =
            SCRATCH_BUFFER.with(|s| s.try_borrow_mut().ok().map(|mut b| std::mem::take(&mut *b)));
        if let Some(mut scratch) = scratch {
            scratch.reserve(SCRATCH);
            let got = recv(&mut scratch.spare_capacity_mut()[..n]);
            let out = got.map(|len| {
                // SAFETY: the receive call initialised the first `len`
                // bytes of what it was given (socket2's contract).
                let read = unsafe { std::slice::from_raw_parts(scratch.as_ptr(), len) };
                read.to_vec()
            });
            SCRATCH_BUFFER.with(|s| *s.borrow_mut() = scratch);
            return out;
        }
    }
    let mut buf = Vec::with_capacity(n);
    let len = recv(buf.spare_capacity_mut())?;
    assert!(len <= n);
    // SAFETY: as above, within the capacity.
    unsafe { buf.set_len(len) };
    Ok(buf)
}

impl EventLoop {
    /// CPython's debug-mode check of the `sock_*` coroutines.
    pub(super) fn check_sock(&self, sock: &Socket) -> Result<()> {
        self.check_closed()?;
        if self.get_debug() && sock.gettimeout() != Some(0.0) {
            return Err(Error::value("the socket must be non-blocking"));
        }
        Ok(())
    }

    /// Waits until `sock` is readable (`reading`) or writable, after a call
    /// on it would have blocked: through the socket's own registration
    /// with the loop's reactor, else (a socket the implementation cannot
    /// register) a reader/writer callback as CPython's.
    pub(super) async fn wait_sock(&self, sock: &Socket, reading: bool) -> Result<()> {
        let network = self.network()?;
        network.ensure_fd_no_transport(sock.fileno())?;
        let mut stale = true;
        let mut fallback = false;
        // A task's cancellation ends the wait at once, as it ends CPython's
        // wait on a future.
        crate::cancellable(std::future::poll_fn(|cx| {
            match network.poll_sock_ready(self, sock, reading, &mut stale, cx) {
                Some(poll) => poll,
                None => {
                    fallback = true;
                    std::task::Poll::Ready(Ok(()))
                }
            }
        }))
        .await??;
        if fallback {
            self.wait_fd(sock.fileno(), reading).await?;
        }
        Ok(())
    }

    /// Waits until `fd` is readable (`reading`) or writable, with a reader
    /// (writer) callback removed once the wait ends, unless replaced.
    async fn wait_fd(&self, fd: RawFd, reading: bool) -> Result<()> {
        let ready = Future::<()>::new(self);
        let r = ready.clone();
        let handle = self.add_fd_internal(
            fd,
            move || {
                if !r.done() {
                    let _ = r.set_result(());
                }
            },
            reading,
        )?;
        let l = self.non_owning();
        ready.add_done_callback(move |_| {
            // CPython's `_sock_read_done`/`_sock_write_done`.
            if !handle.cancelled() {
                l.remove_fd_internal(fd, reading);
            }
        });
        (&ready).await
    }

    /// Retries `op` until it does not report "would block", waiting for
    /// the socket in between.
    async fn sock_op<T>(
        &self,
        sock: &Socket,
        reading: bool,
        mut op: impl FnMut(&Socket) -> io::Result<T>,
    ) -> Result<T> {
        self.check_sock(sock)?;
        loop {
            match op(sock) {
                Ok(v) => return Ok(v),
                Err(e) if would_block(&e) => self.wait_sock(sock, reading).await?,
                Err(e) => return Err(Error::from(e)),
            }
        }
    }

    /// `await loop.sock_recv(sock, n)`: up to `n` bytes (empty at EOF).
    pub async fn sock_recv(&self, sock: &Socket, n: usize) -> Result<Vec<u8>> {
        self.sock_op(sock, true, |s| received(n, |buf| s.recv(buf)))
            .await
    }

    /// `await loop.sock_recv_into(sock, buf)`: the number of bytes read.
    pub async fn sock_recv_into(&self, sock: &Socket, buf: &mut [u8]) -> Result<usize> {
        self.sock_op(sock, true, |s| s.recv(as_uninit(buf))).await
    }

    /// `await loop.sock_recvfrom(sock, bufsize)`: a datagram and its sender.
    pub async fn sock_recvfrom(&self, sock: &Socket, bufsize: usize) -> Result<(Vec<u8>, Address)> {
        let mut from = None;
        let data = self
            .sock_op(sock, true, |s| {
                received(bufsize, |buf| {
                    let (n, addr) = s.recv_from(buf)?;
                    from = Some(addr);
                    Ok(n)
                })
            })
            .await?;
        let from = from.map_or(Address::Unix(Default::default()), |a| {
            Address::from_sockaddr(&a)
        });
        Ok((data, from))
    }

    /// `await loop.sock_recvfrom_into(sock, buf, nbytes)`: a datagram read
    /// into `buf` (at most `nbytes` bytes; 0: the whole buffer) and its
    /// sender.
    pub async fn sock_recvfrom_into(
        &self,
        sock: &Socket,
        buf: &mut [u8],
        nbytes: usize,
    ) -> Result<(usize, Address)> {
        let limit = if nbytes == 0 {
            buf.len()
        } else {
            nbytes.min(buf.len())
        };
        let (got, addr) = self
            .sock_op(sock, true, |s| s.recv_from(as_uninit(&mut buf[..limit])))
            .await?;
        Ok((got, Address::from_sockaddr(&addr)))
    }

    /// `await loop.sock_sendall(sock, data)`: sends all of `data`.
    pub async fn sock_sendall(&self, sock: &Socket, data: &[u8]) -> Result<()> {
        self.check_sock(sock)?;
        let mut sent = 0;
        while sent < data.len() {
            match sock.send(&data[sent..]) {
                Ok(n) => sent += n,
                Err(e) if would_block(&e) => self.wait_sock(sock, false).await?,
                Err(e) => return Err(Error::from(e)),
            }
        }
        Ok(())
    }

    /// `await loop.sock_sendto(sock, data, address)`: the number of bytes
    /// sent (a datagram socket sends all or nothing).
    pub async fn sock_sendto(
        &self,
        sock: &Socket,
        data: &[u8],
        address: impl Into<SocketAddressArg>,
    ) -> Result<usize> {
        self.check_sock(sock)?;
        let address = self.resolve_for(sock, address.into()).await?;
        let addr = address.to_sockaddr()?;
        self.sock_op(sock, false, |s| s.send_to(data, &addr)).await
    }

    /// `await loop.sock_connect(sock, address)`: connects, resolving a host
    /// name for an internet socket first (CPython's `_ensure_resolved`).
    /// A failure once connecting has started is `OSError(errno, "Connect
    /// call failed ('host', port)")`.
    pub async fn sock_connect(
        &self,
        sock: &Socket,
        address: impl Into<SocketAddressArg>,
    ) -> Result<()> {
        self.check_sock(sock)?;
        let address = self.resolve_for(sock, address.into()).await?;
        let addr = address.to_sockaddr()?;
        match sock.connect(&addr) {
            Ok(()) => return Ok(()),
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(Error::from(e)),
        }
        loop {
            self.wait_sock(sock, false).await?;
            match sock.take_error() {
                Ok(None) => return Ok(()),
                Ok(Some(e)) | Err(e) if would_block(&e) => continue,
                Ok(Some(e)) | Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(0);
                    return Err(Error::os_with_message(
                        io::Error::from_raw_os_error(errno),
                        format!("Connect call failed {address:?}"),
                    ));
                }
            }
        }
    }

    /// `await loop.sock_accept(sock)`: a new connection (non-blocking, as
    /// CPython sets it) and its peer's address.
    pub async fn sock_accept(&self, sock: &Socket) -> Result<(Socket, Address)> {
        let (conn, addr) = self.sock_op(sock, true, |s| s.accept()).await?;
        conn.set_nonblocking(true).map_err(Error::from)?;
        Ok((Socket::from(conn), Address::from_sockaddr(&addr)))
    }

    /// CPython's `_ensure_resolved` for `sock_connect`/`sock_sendto`: an
    /// internet socket's `(host, port)` resolved for its family, type and
    /// protocol (a numeric host without a lookup).
    async fn resolve_for(&self, sock: &Socket, address: SocketAddressArg) -> Result<Address> {
        let (host, port) = match address {
            SocketAddressArg::Address(a) => return Ok(a),
            SocketAddressArg::HostPort(h, p) => (h, p),
        };
        let family = sock.family();
        if family != AF_INET && family != AF_INET6 {
            return Err(Error::type_error(format!(
                "a (host, port) address needs an internet socket, not family {family}"
            )));
        }
        if host.contains('\0') {
            return Err(Error::value("embedded null character"));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Address::Inet(SocketAddr::new(ip, port)));
        }
        let infos = self
            .getaddrinfo(host.as_str(), port)
            .family(family)
            .type_(sock.type_())
            .proto(sock.proto())
            .await?;
        infos.into_iter().next().map(|i| i.sockaddr).ok_or_else(|| {
            Error::new(
                crate::ErrorKind::OSError,
                "getaddrinfo() returned empty list",
            )
        })
    }
}
