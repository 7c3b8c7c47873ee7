//! Transport interfaces (CPython's `transports.py`), socket addresses and
//! the `socket` extra info.
//!
//! Transports are shared as `Rc<dyn Transport>` (streams),
//! `Rc<dyn DatagramTransport>` and `Rc<dyn SubprocessTransport>`; all methods
//! take `&self`, so a protocol may call them from inside its own callbacks.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::path::PathBuf;
use std::rc::{Rc, Weak};

use crate::exceptions::{Error, Result};
use crate::protocols::StreamProtocolRef;

/// The default high-water mark of write buffers (64 KiB).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// Base of all transports (Python's `BaseTransport`); `{:?}` is Python's
/// `repr()` (`<_SelectorSocketTransport fd=7 read=polling write=<idle,
/// bufsize=0>>`).
pub trait BaseTransport: fmt::Debug {
    /// Transport information by name (`peername`, `sockname`, `socket`, …);
    /// `None` for an unknown name (Python's `default`).
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo>;

    /// `true` once the transport is closing or closed.
    fn is_closing(&self) -> bool;

    /// Closes the transport: buffered data is flushed asynchronously, then
    /// `connection_lost(None)` is called. Idempotent.
    fn close(&self);
}

/// The read side of a transport (Python's `ReadTransport`).
pub trait ReadTransport: BaseTransport {
    /// `true` while the transport delivers data.
    fn is_reading(&self) -> bool;

    /// Stops `data_received` until [`resume_reading`](ReadTransport::resume_reading).
    /// No-op if already paused or closing.
    fn pause_reading(&self);

    /// Resumes reading. No-op if not paused or closing.
    fn resume_reading(&self);
}

/// The write side of a transport (Python's `WriteTransport`).
pub trait WriteTransport: BaseTransport {
    /// Sets the flow-control marks: `pause_writing` is called when the buffer
    /// goes over `high`, `resume_writing` when it drains to `low`. Defaults:
    /// 64 KiB and `high / 4`; only `low` given → `high = 4 × low`.
    ///
    /// Errors: `ValueError("high (…) must be >= low (…) must be >= 0")`.
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()>;

    /// Bytes waiting in the write buffer.
    fn get_write_buffer_size(&self) -> usize;

    /// `(low, high)`, as Python returns them.
    fn get_write_buffer_limits(&self) -> (usize, usize);

    /// Writes `data`: sent at once if the buffer is empty, the rest buffered.
    /// Empty data is a no-op. After the connection is lost, data is dropped
    /// (with a warning from the fifth write on).
    ///
    /// Errors: `RuntimeError("Cannot call write() after write_eof()")`.
    fn write(&self, data: &[u8]) -> Result<()>;

    /// Writes each chunk in turn.
    fn writelines(&self, chunks: &[&[u8]]) -> Result<()> {
        for chunk in chunks {
            self.write(chunk)?;
        }
        Ok(())
    }

    /// Closes the write side after the buffered data is flushed.
    fn write_eof(&self) -> Result<()>;

    /// `true` if [`write_eof`](WriteTransport::write_eof) is supported.
    fn can_write_eof(&self) -> bool;

    /// Closes at once: buffered data is lost; `connection_lost(None)` follows.
    fn abort(&self);

    /// How [`EventLoop::sendfile`](crate::EventLoop::sendfile) may use this
    /// transport (CPython's `_sendfile_compatible`); by default not at all.
    fn sendfile_mode(&self) -> SendfileMode {
        SendfileMode::Unsupported
    }

    /// The zero-copy path of `loop.sendfile` (CPython's `_sendfile_native`)
    /// for [`SendfileMode::TryNative`] transports: once the write buffer is
    /// empty, sends `count` bytes of `file` from `offset` (or to its end)
    /// with `sendfile(2)` while reading is paused; the number sent.
    ///
    /// Errors: `SendfileNotAvailableError` where `sendfile(2)` cannot serve
    /// (the default), else the connection's.
    fn sendfile_native<'a>(
        &'a self,
        file: &'a std::fs::File,
        offset: u64,
        count: Option<u64>,
    ) -> crate::base_events::LocalBoxFuture<'a, Result<u64>> {
        let _ = (file, offset, count);
        Box::pin(async {
            Err(Error::new(
                crate::ErrorKind::SendfileNotAvailableError,
                "sendfile syscall is not supported",
            ))
        })
    }

    /// `true` while the protocol was told to pause writing and not yet to
    /// resume (CPython's `_protocol_paused`).
    fn is_protocol_paused(&self) -> bool {
        false
    }
}

/// How a transport supports `loop.sendfile` (CPython's `_SendfileMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendfileMode {
    /// `sendfile` raises `RuntimeError` (pipes, subprocess pipes).
    Unsupported,
    /// `sendfile(2)` first, then the read-and-write fallback (TCP, Unix sockets).
    TryNative,
    /// Only the read-and-write fallback (TLS).
    Fallback,
}

/// A bidirectional stream transport (Python's `Transport`): TCP, Unix
/// sockets, TLS, pipes.
pub trait Transport: ReadTransport + WriteTransport {
    /// Switches to another protocol; its `connection_made` is not called.
    /// A [`BufferedProtocol`](crate::protocols::BufferedProtocol) switches
    /// the transport to reading into the protocol's buffers.
    fn set_protocol(&self, protocol: StreamProtocolRef);

    /// The current protocol (`None` once the connection is lost).
    fn get_protocol(&self) -> Option<StreamProtocolRef>;
}

/// A datagram transport (Python's `DatagramTransport`).
pub trait DatagramTransport: BaseTransport {
    /// Sends `data` to `addr` (`None` for a connected endpoint's peer): at
    /// once if nothing is buffered, else after the buffered datagrams. A
    /// send that fails with an `OSError` goes to the protocol's
    /// `error_received`.
    ///
    /// Errors: on a connected endpoint, an address other than the peer's is
    /// `ValueError("Invalid address: must be None or ('…', …)")`.
    fn sendto(&self, data: &[u8], addr: Option<Address>) -> Result<()>;

    /// Closes at once, dropping buffered datagrams.
    fn abort(&self);

    /// Bytes waiting in the send buffer (each datagram counts its length
    /// plus 8 header bytes, as in CPython).
    fn get_write_buffer_size(&self) -> usize;

    /// Sets the flow-control marks (see [`WriteTransport::set_write_buffer_limits`]).
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()>;

    /// `(low, high)`.
    fn get_write_buffer_limits(&self) -> (usize, usize);
}

/// A child process's transport (Python's `SubprocessTransport`).
pub trait SubprocessTransport: BaseTransport {
    /// The child's process id.
    fn get_pid(&self) -> Option<u32>;

    /// The exit status, once the child exited (negative: killed by signal).
    fn get_returncode(&self) -> Option<i32>;

    /// The transport of the child's pipe `fd` (0: a write pipe, 1 and 2:
    /// read pipes), if that stream is a pipe; `None` before it is connected
    /// and for other numbers.
    fn get_pipe_transport(&self, fd: i32) -> Option<Rc<dyn Transport>>;

    /// Sends `signal` to the child; nothing once its exit was seen.
    ///
    /// Errors: `ProcessLookupError` after `connection_lost`.
    fn send_signal(&self, signal: i32) -> Result<()>;

    /// `SIGTERM` (see [`send_signal`](SubprocessTransport::send_signal)).
    fn terminate(&self) -> Result<()>;

    /// `SIGKILL` (see [`send_signal`](SubprocessTransport::send_signal)).
    fn kill(&self) -> Result<()>;

    /// The return code once the child exits (CPython's `_wait()`, which
    /// `Process.wait()` uses). It comes as soon as the exit is seen, even
    /// while a grandchild keeps the child's pipes open (CPython gh-119710).
    fn wait(&self) -> crate::base_events::LocalBoxFuture<'static, Result<i32>>;
}

/// Checks flow-control marks as CPython does; returns `(high, low)`.
///
/// ```
/// use asyncio_core::transports::check_write_buffer_limits;
/// assert_eq!(check_write_buffer_limits(None, None)?, (65536, 16384));
/// assert_eq!(check_write_buffer_limits(None, Some(100))?, (400, 100));
/// assert_eq!(
///     check_write_buffer_limits(Some(1), Some(2)).unwrap_err().to_string(),
///     "high (1) must be >= low (2) must be >= 0"
/// );
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub fn check_write_buffer_limits(
    high: Option<usize>,
    low: Option<usize>,
) -> Result<(usize, usize)> {
    let high = match (high, low) {
        (Some(h), _) => h,
        (None, None) => DEFAULT_HIGH_WATER,
        (None, Some(l)) => l.saturating_mul(4),
    };
    let low = low.unwrap_or(high / 4);
    if high < low {
        return Err(Error::value(format!(
            "high ({high}) must be >= low ({low}) must be >= 0"
        )));
    }
    Ok((high, low))
}

// ===== addresses =====

/// A socket address as Python shows it: `('127.0.0.1', 8888)` for IPv4,
/// `('::1', 8888, 0, 0)` for IPv6, a path for Unix sockets.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address.
    Inet(SocketAddr),
    /// A Unix socket path (empty for an unnamed socket).
    Unix(PathBuf),
    /// A Linux abstract Unix socket name (without the leading NUL).
    UnixAbstract(Vec<u8>),
}

impl Address {
    /// The address of a `socket2` address, as Python shows it (an unnamed
    /// Unix socket: an empty path).
    pub fn from_sockaddr(addr: &socket2::SockAddr) -> Address {
        if let Some(inet) = addr.as_socket() {
            return Address::Inet(inet);
        }
        if let Some(path) = addr.as_pathname() {
            return Address::Unix(path.to_path_buf());
        }
        if let Some(name) = addr.as_abstract_namespace() {
            return Address::UnixAbstract(name.to_vec());
        }
        Address::Unix(Default::default())
    }

    /// The `socket2` address; a NUL inside a file path is
    /// `ValueError("embedded null byte")`.
    pub fn to_sockaddr(&self) -> Result<socket2::SockAddr> {
        match self {
            Address::Inet(a) => Ok(socket2::SockAddr::from(*a)),
            Address::Unix(p) => {
                let bytes = p.as_os_str().as_encoded_bytes();
                if bytes.first() != Some(&0) && bytes.contains(&0) {
                    return Err(Error::value("embedded null byte"));
                }
                socket2::SockAddr::unix(p).map_err(Error::from)
            }
            Address::UnixAbstract(name) => {
                let mut bytes = vec![0u8];
                bytes.extend_from_slice(name);
                let path = PathBuf::from(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&bytes),
                );
                socket2::SockAddr::unix(path).map_err(Error::from)
            }
        }
    }

    /// The IP address and port, for `Inet`.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(a) => Some(*a),
            _ => None,
        }
    }

    /// The port, for `Inet`.
    pub fn port(&self) -> Option<u16> {
        self.as_inet().map(|a| a.port())
    }

    /// The form Python's socket reprs use: addresses as tuples, Unix paths
    /// unquoted (`laddr=/tmp/x.sock`).
    pub fn socket_repr(&self) -> String {
        match self {
            Address::Unix(p) => p.to_string_lossy().into_owned(),
            other => format!("{other:?}"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Inet(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Address {
        Address::Unix(path)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(SocketAddr::V4(a)) => write!(f, "('{}', {})", a.ip(), a.port()),
            Address::Inet(SocketAddr::V6(a)) => write!(
                f,
                "('{}', {}, {}, {})",
                a.ip(),
                a.port(),
                a.flowinfo(),
                a.scope_id()
            ),
            Address::Unix(p) => write!(
                f,
                "{}",
                crate::exceptions::py_str_repr(&p.to_string_lossy())
            ),
            Address::UnixAbstract(name) => {
                f.write_str("b'\\x00")?;
                for b in name {
                    if b.is_ascii_graphic() && *b != b'\'' && *b != b'\\' {
                        write!(f, "{}", *b as char)?;
                    } else {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
                f.write_str("'")
            }
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

// ===== extra info =====

/// A value of [`BaseTransport::get_extra_info`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ExtraInfo {
    /// `peername`, `sockname`.
    Address(Address),
    /// `socket`.
    Socket(TransportSocket),
    /// Text values (e.g. TLS `cipher` names, `compression`).
    Text(String),
    /// Numbers (e.g. a child's `pid`).
    Int(i64),
    /// `pipe`: a pipe transport's descriptor (Python gives the file object;
    /// `-1` once the transport closed it).
    Pipe(std::os::fd::RawFd),
    /// `sslcontext`: a TLS connection's context.
    #[cfg(feature = "tls")]
    SslContext(crate::ssl::SslContext),
    /// `ssl_object`: what the TLS connection negotiated.
    #[cfg(feature = "tls")]
    SslObject(crate::ssl::SslObject),
    /// `peercert`: the peer's certificate, as Python's dict.
    #[cfg(feature = "tls")]
    PeerCert(crate::ssl::PeerCert),
    /// `cipher`: `(name, version, bits)`.
    #[cfg(feature = "tls")]
    Cipher(crate::ssl::Cipher),
}

impl ExtraInfo {
    /// The address, for `peername`/`sockname`.
    pub fn as_address(&self) -> Option<&Address> {
        match self {
            ExtraInfo::Address(a) => Some(a),
            _ => None,
        }
    }

    /// The socket, for `socket`.
    pub fn as_socket(&self) -> Option<&TransportSocket> {
        match self {
            ExtraInfo::Socket(s) => Some(s),
            _ => None,
        }
    }

    /// The TLS connection's details, for `ssl_object`.
    #[cfg(feature = "tls")]
    pub fn as_ssl_object(&self) -> Option<&crate::ssl::SslObject> {
        match self {
            ExtraInfo::SslObject(o) => Some(o),
            _ => None,
        }
    }

    /// The peer's certificate, for `peercert`.
    #[cfg(feature = "tls")]
    pub fn as_peercert(&self) -> Option<&crate::ssl::PeerCert> {
        match self {
            ExtraInfo::PeerCert(c) => Some(c),
            _ => None,
        }
    }

    /// The negotiated cipher, for `cipher`.
    #[cfg(feature = "tls")]
    pub fn as_cipher(&self) -> Option<&crate::ssl::Cipher> {
        match self {
            ExtraInfo::Cipher(c) => Some(c),
            _ => None,
        }
    }
}

/// Python's `str()` of the value: `('127.0.0.1', 8888)` for an address.
impl fmt::Display for ExtraInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtraInfo::Address(a) => fmt::Display::fmt(a, f),
            ExtraInfo::Socket(s) => fmt::Debug::fmt(s, f),
            ExtraInfo::Text(t) => f.write_str(t),
            ExtraInfo::Int(i) => fmt::Display::fmt(i, f),
            ExtraInfo::Pipe(fd) => write!(f, "<_io.FileIO name={fd}>"),
            #[cfg(feature = "tls")]
            ExtraInfo::SslContext(c) => fmt::Debug::fmt(c, f),
            #[cfg(feature = "tls")]
            ExtraInfo::SslObject(o) => write!(f, "<ssl.SSLObject object at {:p}>", o),
            #[cfg(feature = "tls")]
            ExtraInfo::PeerCert(c) => fmt::Debug::fmt(c, f),
            #[cfg(feature = "tls")]
            ExtraInfo::Cipher(c) => fmt::Debug::fmt(c, f),
        }
    }
}

/// The socket under a transport (Python's `trsock.TransportSocket`): its
/// descriptor, family and type, for inspection and socket options. It does
/// not own the socket; once the transport closed it, `fileno()` is -1.
#[derive(Clone)]
pub struct TransportSocket {
    fd: RawFd,
    family: i32,
    kind: i32,
    proto: i32,
    sockname: Option<Address>,
    peername: Option<Address>,
    alive: Weak<()>,
}

impl TransportSocket {
    /// Describes the socket `fd`, valid while `alive` can be upgraded (the
    /// owner keeps the `Rc` for as long as the descriptor is open).
    pub fn new(
        fd: RawFd,
        (family, kind, proto): (i32, i32, i32),
        sockname: Option<Address>,
        peername: Option<Address>,
        alive: Weak<()>,
    ) -> TransportSocket {
        TransportSocket {
            fd,
            family,
            kind,
            proto,
            sockname,
            peername,
            alive,
        }
    }

    /// The descriptor, or -1 once closed.
    pub fn fileno(&self) -> RawFd {
        if self.alive.strong_count() > 0 {
            self.fd
        } else {
            -1
        }
    }

    /// The address family (`AF_INET` = 2, `AF_INET6` = 10, `AF_UNIX` = 1).
    pub fn family(&self) -> i32 {
        self.family
    }

    /// The socket type (`SOCK_STREAM` = 1, `SOCK_DGRAM` = 2).
    pub fn type_(&self) -> i32 {
        self.kind
    }

    /// The protocol number.
    pub fn proto(&self) -> i32 {
        self.proto
    }

    /// The local address.
    pub fn getsockname(&self) -> Option<Address> {
        self.sockname.clone()
    }

    /// The remote address, for connected sockets.
    pub fn getpeername(&self) -> Option<Address> {
        self.peername.clone()
    }

    /// Calls `f` with the socket's descriptor (e.g. to set an option through
    /// `socket2::SockRef`). `f` gets a duplicate of the descriptor, valid for
    /// the whole call even if the transport closes meanwhile. Errors once
    /// the socket is closed (`EBADF`).
    pub fn with_fd<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Result<R> {
        let closed = || Error::from(std::io::Error::from_raw_os_error(9));
        if self.alive.strong_count() == 0 {
            return Err(closed());
        }
        // SAFETY: the owner closes the descriptor only after dropping the
        // `alive` token, and nothing runs between the check above and the
        // `dup` below (the loop is single-threaded), so `fd` is open here.
        let borrowed = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let dup = borrowed.try_clone_to_owned().map_err(Error::from)?;
        Ok(f(dup.as_fd()))
    }
}

impl fmt::Debug for TransportSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fd = self.fileno();
        if fd < 0 {
            return write!(
                f,
                "<asyncio.TransportSocket fd=-1, family={}, type={}, proto={}>",
                self.family, self.kind, self.proto
            );
        }
        write!(
            f,
            "<asyncio.TransportSocket fd={fd}, family={}, type={}, proto={}",
            self.family, self.kind, self.proto
        )?;
        if let Some(l) = &self.sockname {
            write!(f, ", laddr={}", l.socket_repr())?;
        }
        if let Some(r) = &self.peername {
            write!(f, ", raddr={}", r.socket_repr())?;
        }
        f.write_str(">")
    }
}
