//! The socket constants asyncio's APIs take (Python's `socket` module values,
//! as on Linux).

/// Any address family (`socket.AF_UNSPEC`).
pub const AF_UNSPEC: i32 = 0;
/// Unix sockets (`socket.AF_UNIX`).
pub const AF_UNIX: i32 = 1;
/// IPv4 (`socket.AF_INET`).
pub const AF_INET: i32 = 2;
/// IPv6 (`socket.AF_INET6`).
pub const AF_INET6: i32 = 10;

/// Stream sockets (`socket.SOCK_STREAM`).
pub const SOCK_STREAM: i32 = 1;
/// Datagram sockets (`socket.SOCK_DGRAM`).
pub const SOCK_DGRAM: i32 = 2;
/// Raw sockets (`socket.SOCK_RAW`).
pub const SOCK_RAW: i32 = 3;

/// TCP (`socket.IPPROTO_TCP`).
pub const IPPROTO_TCP: i32 = 6;
/// UDP (`socket.IPPROTO_UDP`).
pub const IPPROTO_UDP: i32 = 17;

/// `getaddrinfo` flag: addresses for binding (`socket.AI_PASSIVE`).
pub const AI_PASSIVE: i32 = 0x0001;
/// `getaddrinfo` flag: fill in the canonical name (`socket.AI_CANONNAME`).
pub const AI_CANONNAME: i32 = 0x0002;
/// `getaddrinfo` flag: the host is a numeric address (`socket.AI_NUMERICHOST`).
pub const AI_NUMERICHOST: i32 = 0x0004;
/// `getaddrinfo` flag: IPv4-mapped IPv6 addresses (`socket.AI_V4MAPPED`).
pub const AI_V4MAPPED: i32 = 0x0008;
/// `getaddrinfo` flag: all addresses (`socket.AI_ALL`).
pub const AI_ALL: i32 = 0x0010;
/// `getaddrinfo` flag: only families configured locally (`socket.AI_ADDRCONFIG`).
pub const AI_ADDRCONFIG: i32 = 0x0020;
/// `getaddrinfo` flag: the port is numeric (`socket.AI_NUMERICSERV`).
pub const AI_NUMERICSERV: i32 = 0x0400;

/// `getnameinfo` flag: numeric host (`socket.NI_NUMERICHOST`).
pub const NI_NUMERICHOST: i32 = 1;
/// `getnameinfo` flag: numeric service (`socket.NI_NUMERICSERV`).
pub const NI_NUMERICSERV: i32 = 2;
/// `getnameinfo` flag: host name only, no domain (`socket.NI_NOFQDN`).
pub const NI_NOFQDN: i32 = 4;
/// `getnameinfo` flag: fail if the name is unknown (`socket.NI_NAMEREQD`).
pub const NI_NAMEREQD: i32 = 8;
/// `getnameinfo` flag: datagram service (`socket.NI_DGRAM`).
pub const NI_DGRAM: i32 = 16;

/// The name Python gives an address family (`AddressFamily.AF_INET`).
pub fn family_name(family: i32) -> String {
    match family {
        AF_UNSPEC => "AddressFamily.AF_UNSPEC".to_owned(),
        AF_UNIX => "AddressFamily.AF_UNIX".to_owned(),
        AF_INET => "AddressFamily.AF_INET".to_owned(),
        AF_INET6 => "AddressFamily.AF_INET6".to_owned(),
        n => n.to_string(),
    }
}

/// The name Python gives a socket type (`SocketKind.SOCK_STREAM`).
pub fn kind_name(kind: i32) -> String {
    match kind {
        SOCK_STREAM => "SocketKind.SOCK_STREAM".to_owned(),
        SOCK_DGRAM => "SocketKind.SOCK_DGRAM".to_owned(),
        SOCK_RAW => "SocketKind.SOCK_RAW".to_owned(),
        0 => "0".to_owned(),
        n => n.to_string(),
    }
}

// ===== the socket type =====

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use crate::exceptions::{Error, Result};
use crate::transports::Address;

/// A socket (Python's `socket.socket`), for the loop's `sock_*` coroutines
/// (`sock_recv`, `sock_sendall`, `sock_connect`, `sock_accept`, …) and the
/// `sock=` arguments.
///
/// It owns its descriptor and derefs to [`socket2::Socket`] for everything
/// else (`bind`, `listen`, `set_reuse_address`, …). Make one with
/// [`Socket::new`] or [`Socket::pair`], or from any `std` or `socket2`
/// socket, or an `OwnedFd`. Like Python's, a new socket is blocking; the
/// loop's coroutines want it non-blocking (`setblocking(false)`: in debug
/// mode a blocking one is refused).
///
/// ```no_run
/// # async fn f() -> asyncio_core::Result<()> {
/// use asyncio_core::socket::{Socket, AF_UNIX, SOCK_STREAM};
/// let (a, b) = Socket::pair(AF_UNIX, SOCK_STREAM, 0)?;
/// a.setblocking(false)?;
/// b.setblocking(false)?;
/// let loop_ = asyncio_core::get_running_loop()?;
/// loop_.sock_sendall(&a, b"ping").await?;
/// assert_eq!(loop_.sock_recv(&b, 1024).await?, b"ping");
/// # Ok(()) }
/// ```
///
/// (The README runs this example.)
pub struct Socket {
    /// The loop's registration of this socket for the `sock_*` coroutines,
    /// made at their first wait and kept while the socket lives (declared
    /// first: it is dropped, and deregistered, before the socket closes).
    readiness: SocketReadiness,
    inner: socket2::Socket,
}

/// What a loop implementation keeps in a [`Socket`] to wait for it (see
/// [`AbstractNetwork::poll_sock_ready`](crate::AbstractNetwork::poll_sock_ready)).
pub type SocketReadiness = std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>;

impl Socket {
    /// `socket.socket(family, type, proto)`.
    pub fn new(family: i32, type_: i32, proto: i32) -> Result<Socket> {
        let proto = (proto != 0).then(|| socket2::Protocol::from(proto));
        let inner = socket2::Socket::new(
            socket2::Domain::from(family),
            socket2::Type::from(type_),
            proto,
        )
        .map_err(Error::from)?;
        Ok(Socket::from(inner))
    }

    /// `socket.socketpair(family, type, proto)`: two connected sockets.
    pub fn pair(family: i32, type_: i32, proto: i32) -> Result<(Socket, Socket)> {
        let proto = (proto != 0).then(|| socket2::Protocol::from(proto));
        let (a, b) = socket2::Socket::pair(
            socket2::Domain::from(family),
            socket2::Type::from(type_),
            proto,
        )
        .map_err(Error::from)?;
        Ok((Socket::from(a), Socket::from(b)))
    }

    /// `sock.fileno()`.
    pub fn fileno(&self) -> RawFd {
        self.inner.as_raw_fd()
    }

    /// `sock.family` (`AF_INET`, `AF_INET6`, `AF_UNIX`).
    pub fn family(&self) -> i32 {
        self.inner.domain().map(i32::from).unwrap_or(0)
    }

    /// `sock.type` (`SOCK_STREAM`, `SOCK_DGRAM`).
    pub fn type_(&self) -> i32 {
        self.inner.r#type().map(i32::from).unwrap_or(0)
    }

    /// `sock.proto`.
    pub fn proto(&self) -> i32 {
        self.inner
            .protocol()
            .ok()
            .flatten()
            .map(i32::from)
            .unwrap_or(0)
    }

    /// `sock.setblocking(flag)`.
    pub fn setblocking(&self, flag: bool) -> Result<()> {
        self.inner.set_nonblocking(!flag).map_err(Error::from)
    }

    /// `sock.gettimeout()`: `Some(0.0)` for a non-blocking socket, `None`
    /// for a blocking one.
    pub fn gettimeout(&self) -> Option<f64> {
        self.inner.nonblocking().unwrap_or(false).then_some(0.0)
    }

    /// `sock.getsockname()`.
    pub fn getsockname(&self) -> Result<Address> {
        let addr = self.inner.local_addr().map_err(Error::from)?;
        Ok(Address::from_sockaddr(&addr))
    }

    /// `sock.getpeername()`.
    pub fn getpeername(&self) -> Result<Address> {
        let addr = self.inner.peer_addr().map_err(Error::from)?;
        Ok(Address::from_sockaddr(&addr))
    }

    /// `sock.recv_into(buf)`: the number of bytes read (0 at EOF, or for
    /// an empty datagram).
    pub fn recv_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.recv(as_uninit(buf))
    }

    /// `sock.recvfrom_into(buf)`: a datagram read into `buf`, and its
    /// sender.
    pub fn recvfrom_into(&self, buf: &mut [u8]) -> io::Result<(usize, Address)> {
        let (n, addr) = self.inner.recv_from(as_uninit(buf))?;
        Ok((n, Address::from_sockaddr(&addr)))
    }

    /// `sock.sendto(data, address)`: the number of bytes sent.
    pub fn sendto(&self, data: &[u8], address: &Address) -> Result<usize> {
        let addr = address.to_sockaddr()?;
        self.inner.send_to(data, &addr).map_err(Error::from)
    }

    /// The `socket2` socket (also reachable through `Deref`).
    pub fn as_socket2(&self) -> &socket2::Socket {
        &self.inner
    }

    /// The `socket2` socket, by value.
    pub fn into_socket2(self) -> socket2::Socket {
        let Socket { readiness, inner } = self;
        // Deregistered while the descriptor is still open.
        drop(readiness);
        inner
    }

    /// The loop implementation's readiness state for this socket.
    pub fn readiness(&self) -> &SocketReadiness {
        &self.readiness
    }
}

impl std::ops::Deref for Socket {
    type Target = socket2::Socket;

    fn deref(&self) -> &socket2::Socket {
        &self.inner
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl IntoRawFd for Socket {
    fn into_raw_fd(self) -> RawFd {
        self.into_socket2().into_raw_fd()
    }
}

impl FromRawFd for Socket {
    /// # Safety
    /// `fd` must be an open socket that nothing else owns.
    unsafe fn from_raw_fd(fd: RawFd) -> Socket {
        // SAFETY: passed on from the caller.
        Socket::from(unsafe { socket2::Socket::from_raw_fd(fd) })
    }
}

impl From<Socket> for OwnedFd {
    fn from(sock: Socket) -> OwnedFd {
        sock.into_socket2().into()
    }
}

macro_rules! socket_from {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Socket {
            fn from(s: $t) -> Socket {
                Socket::from(socket2::Socket::from(OwnedFd::from(s)))
            }
        }
    )*};
}

socket_from!(
    OwnedFd,
    std::net::TcpStream,
    std::net::TcpListener,
    std::net::UdpSocket,
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixListener,
    std::os::unix::net::UnixDatagram,
);

impl From<socket2::Socket> for Socket {
    fn from(inner: socket2::Socket) -> Socket {
        Socket {
            readiness: SocketReadiness::default(),
            inner,
        }
    }
}

/// Python's `repr(sock)`: `<socket.socket fd=5, family=2, type=1, proto=0,
/// laddr=('127.0.0.1', 8888)>`.
impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<socket.socket fd={}, family={}, type={}, proto={}",
            self.fileno(),
            self.family(),
            self.type_(),
            self.proto()
        )?;
        if let Ok(l) = self.getsockname() {
            write!(f, ", laddr={}", l.socket_repr())?;
        }
        if let Ok(r) = self.getpeername() {
            write!(f, ", raddr={}", r.socket_repr())?;
        }
        f.write_str(">")
    }
}

/// `&mut [u8]` as the uninitialised buffer `socket2` reads into.
pub(crate) fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has `u8`'s layout, and the callee only
    // writes initialised bytes into it, so `buf` stays initialised.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}
