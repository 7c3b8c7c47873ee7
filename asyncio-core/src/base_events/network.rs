//! The loop's networking methods: `getaddrinfo`, `create_connection`,
//! `create_server` and their Unix-socket variants (the networking half of
//! CPython's `base_events.py`).
//!
//! Keyword arguments are builder methods; the builder is awaited.
//! The work is done by the loop implementation's [`AbstractNetwork`].

use std::cell::RefCell;
use std::fmt;
use std::future::{Future as StdFuture, IntoFuture};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;

use super::server::Server;
use super::EventLoop;
use crate::exceptions::{Error, Result};
use crate::futures::{Awaitable, Future};
use crate::protocols::{IntoStreamProtocol, StreamProtocolRef};
use crate::socket::{self, AF_UNSPEC, AI_PASSIVE};
use crate::transports::{Address, Transport};

/// A boxed, non-`Send` future.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn StdFuture<Output = T> + 'a>>;

/// Makes one protocol for a new connection.
pub type ConnectionProtocolFactory = Box<dyn FnOnce() -> Result<StreamProtocolRef>>;

/// Makes a protocol for every connection a server accepts.
pub type ServerProtocolFactory = Rc<dyn Fn() -> Result<StreamProtocolRef>>;

/// One result of `getaddrinfo`: Python's `(family, type, proto, canonname,
/// sockaddr)` 5-tuple.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AddrInfo {
    /// Address family (`AF_INET`, `AF_INET6`).
    pub family: i32,
    /// Socket type (`SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_RAW`).
    pub type_: i32,
    /// Protocol number.
    pub proto: i32,
    /// The canonical name (with `AI_CANONNAME`, on the first result), else `""`.
    pub canonname: String,
    /// The address.
    pub sockaddr: Address,
}

impl fmt::Debug for AddrInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(<{}: {}>, <{}: {}>, {}, {}, {:?})",
            socket::family_name(self.family),
            self.family,
            socket::kind_name(self.type_),
            self.type_,
            self.proto,
            crate::exceptions::py_str_repr(&self.canonname),
            self.sockaddr
        )
    }
}

/// The arguments of `getaddrinfo`.
#[derive(Clone, Debug, Default)]
pub struct AddrInfoQuery {
    /// The host name or numeric address (`None`: any / loopback).
    pub host: Option<String>,
    /// The port number or service name.
    pub port: Option<String>,
    /// `family=`.
    pub family: i32,
    /// `type=`.
    pub type_: i32,
    /// `proto=`.
    pub proto: i32,
    /// `flags=`.
    pub flags: i32,
}

/// The arguments of `create_connection`.
#[derive(Debug, Default)]
pub struct ConnectionOptions {
    /// `host`.
    pub host: Option<String>,
    /// `port`.
    pub port: Option<u16>,
    /// `family=`.
    pub family: i32,
    /// `proto=`.
    pub proto: i32,
    /// `flags=`.
    pub flags: i32,
    /// `sock=`: an already connected stream socket.
    pub sock: Option<OwnedFd>,
    /// `local_addr=`.
    pub local_addr: Option<(String, u16)>,
    /// `server_hostname=` (TLS only).
    pub server_hostname: Option<String>,
    /// `happy_eyeballs_delay=`.
    pub happy_eyeballs_delay: Option<f64>,
    /// `interleave=`.
    pub interleave: Option<usize>,
    /// `all_errors=`.
    pub all_errors: bool,
    /// `ssl_handshake_timeout=` (TLS only).
    pub ssl_handshake_timeout: Option<f64>,
    /// `ssl_shutdown_timeout=` (TLS only).
    pub ssl_shutdown_timeout: Option<f64>,
    /// `ssl=`: a TLS context (`None`: plain TCP).
    #[cfg(feature = "tls")]
    pub ssl: Option<crate::ssl::SslContext>,
}

/// The arguments of `create_server`.
#[derive(Debug)]
pub struct ServerOptions {
    /// `host`: `None` (or `""`) binds all interfaces, one socket per family;
    /// several hosts bind each.
    pub hosts: Option<Vec<String>>,
    /// `port` (0: any free port).
    pub port: Option<u16>,
    /// `family=`.
    pub family: i32,
    /// `flags=` (default `AI_PASSIVE`).
    pub flags: i32,
    /// `sock=`: an already bound stream socket.
    pub sock: Option<OwnedFd>,
    /// `backlog=` (default 100).
    pub backlog: i32,
    /// `reuse_address=` (default: on, as on Unix).
    pub reuse_address: Option<bool>,
    /// `reuse_port=`.
    pub reuse_port: Option<bool>,
    /// `keep_alive=`.
    pub keep_alive: Option<bool>,
    /// `start_serving=` (default `true`).
    pub start_serving: bool,
    /// `ssl_handshake_timeout=` (TLS only).
    pub ssl_handshake_timeout: Option<f64>,
    /// `ssl_shutdown_timeout=` (TLS only).
    pub ssl_shutdown_timeout: Option<f64>,
    /// `ssl=`: a TLS context (`None`: plain TCP).
    #[cfg(feature = "tls")]
    pub ssl: Option<crate::ssl::SslContext>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            hosts: None,
            port: None,
            family: AF_UNSPEC,
            flags: AI_PASSIVE,
            sock: None,
            backlog: 100,
            reuse_address: None,
            reuse_port: None,
            keep_alive: None,
            start_serving: true,
            ssl_handshake_timeout: None,
            ssl_shutdown_timeout: None,
            #[cfg(feature = "tls")]
            ssl: None,
        }
    }
}

/// The arguments of `create_unix_connection`.
#[derive(Debug, Default)]
pub struct UnixConnectionOptions {
    /// `path`.
    pub path: Option<PathBuf>,
    /// `sock=`: an already connected Unix stream socket.
    pub sock: Option<OwnedFd>,
    /// `server_hostname=` (TLS only).
    pub server_hostname: Option<String>,
    /// `ssl_handshake_timeout=` (TLS only).
    pub ssl_handshake_timeout: Option<f64>,
    /// `ssl_shutdown_timeout=` (TLS only).
    pub ssl_shutdown_timeout: Option<f64>,
    /// `ssl=`: a TLS context (`None`: plain TCP).
    #[cfg(feature = "tls")]
    pub ssl: Option<crate::ssl::SslContext>,
}

/// The arguments of `create_unix_server`.
#[derive(Debug)]
pub struct UnixServerOptions {
    /// `path`.
    pub path: Option<PathBuf>,
    /// `sock=`: an already bound Unix stream socket.
    pub sock: Option<OwnedFd>,
    /// `backlog=` (default 100).
    pub backlog: i32,
    /// `start_serving=` (default `true`).
    pub start_serving: bool,
    /// `cleanup_socket=` (default `true`): remove the socket file on close.
    pub cleanup_socket: bool,
    /// `ssl_handshake_timeout=` (TLS only).
    pub ssl_handshake_timeout: Option<f64>,
    /// `ssl_shutdown_timeout=` (TLS only).
    pub ssl_shutdown_timeout: Option<f64>,
    /// `ssl=`: a TLS context (`None`: plain TCP).
    #[cfg(feature = "tls")]
    pub ssl: Option<crate::ssl::SslContext>,
}

impl Default for UnixServerOptions {
    fn default() -> Self {
        UnixServerOptions {
            path: None,
            sock: None,
            backlog: 100,
            start_serving: true,
            cleanup_socket: true,
            ssl_handshake_timeout: None,
            ssl_shutdown_timeout: None,
            #[cfg(feature = "tls")]
            ssl: None,
        }
    }
}

/// The networking a loop implementation provides (the socket methods of
/// Python's `AbstractEventLoop`). `asyncio-tokio` implements it.
pub trait AbstractNetwork {
    /// `loop.getaddrinfo(...)`.
    fn getaddrinfo(
        &self,
        loop_: &EventLoop,
        query: AddrInfoQuery,
    ) -> LocalBoxFuture<'static, Result<Vec<AddrInfo>>>;

    /// `loop.getnameinfo(sockaddr, flags)`.
    fn getnameinfo(
        &self,
        loop_: &EventLoop,
        sockaddr: SocketAddr,
        flags: i32,
    ) -> LocalBoxFuture<'static, Result<(String, String)>>;

    /// `loop.create_connection(...)`.
    fn create_connection(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
        options: ConnectionOptions,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn Transport>>>;

    /// `loop.create_server(...)`.
    fn create_server(
        &self,
        loop_: &EventLoop,
        factory: ServerProtocolFactory,
        options: ServerOptions,
    ) -> LocalBoxFuture<'static, Result<Server>>;

    /// `loop.create_unix_connection(...)`.
    fn create_unix_connection(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
        options: UnixConnectionOptions,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn Transport>>>;

    /// `loop.create_unix_server(...)`.
    fn create_unix_server(
        &self,
        loop_: &EventLoop,
        factory: ServerProtocolFactory,
        options: UnixServerOptions,
    ) -> LocalBoxFuture<'static, Result<Server>>;

    /// `loop.connect_accepted_socket(protocol_factory, sock)`.
    fn connect_accepted_socket(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
        sock: OwnedFd,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn Transport>>>;

    /// `loop.create_datagram_endpoint(...)`.
    fn create_datagram_endpoint(
        &self,
        loop_: &EventLoop,
        factory: super::DatagramProtocolFactory,
        options: super::DatagramEndpointOptions,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn crate::transports::DatagramTransport>>>;

    /// `loop.connect_read_pipe(protocol_factory, pipe)`.
    fn connect_read_pipe(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
        pipe: OwnedFd,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn crate::transports::ReadTransport>>>;

    /// `loop.connect_write_pipe(protocol_factory, pipe)`.
    fn connect_write_pipe(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
        pipe: OwnedFd,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn crate::transports::WriteTransport>>>;

    /// Waits, for the `sock_*` coroutines, until `sock` is readable
    /// (`reading`) or writable, through a registration the implementation
    /// keeps in [`Socket::readiness`](crate::socket::Socket::readiness)
    /// (none per call, unlike a reader callback). `*stale` is set when the
    /// caller's last call on the socket would have blocked: readiness
    /// recorded before then is out of date; the implementation clears it.
    /// `None`: the socket cannot be registered so (the caller falls back to
    /// reader/writer callbacks).
    fn poll_sock_ready(
        &self,
        loop_: &EventLoop,
        sock: &crate::socket::Socket,
        reading: bool,
        stale: &mut bool,
        cx: &mut std::task::Context<'_>,
    ) -> Option<std::task::Poll<Result<()>>>;

    /// CPython's `_add_reader` (`reading`) or `_add_writer`: `handle` runs
    /// (through [`EventLoop::run_handle`]) in every iteration in which `fd`
    /// is ready, level-triggered, replacing and cancelling the previous
    /// callback of that direction.
    fn add_fd_callback(
        &self,
        loop_: &EventLoop,
        fd: std::os::fd::RawFd,
        handle: crate::events::Handle,
        reading: bool,
    ) -> Result<()>;

    /// CPython's `_remove_reader` / `_remove_writer`: `true` if a callback
    /// was removed (and cancelled).
    fn remove_fd_callback(&self, fd: std::os::fd::RawFd, reading: bool) -> bool;

    /// CPython's `_ensure_fd_no_transport`: `RuntimeError("File descriptor
    /// N is used by transport …")` while a transport that is not closing
    /// owns `fd`.
    fn ensure_fd_no_transport(&self, fd: std::os::fd::RawFd) -> Result<()>;

    /// CPython's `_check_signal`: `ValueError("invalid signal number N")`.
    fn check_signal(&self, sig: i32) -> Result<()>;

    /// `loop.add_signal_handler(sig, …)` once checked: `handle` runs
    /// (through [`EventLoop::run_handle`]) for every `sig` received,
    /// replacing the previous handler of `sig`.
    fn add_signal_handler(
        &self,
        loop_: &EventLoop,
        sig: i32,
        handle: crate::events::Handle,
    ) -> Result<()>;

    /// `loop.remove_signal_handler(sig)` once checked.
    fn remove_signal_handler(&self, sig: i32) -> bool;

    /// `loop.subprocess_exec(...)` / `loop.subprocess_shell(...)` once the
    /// arguments are checked: starts the child and connects its pipes.
    fn subprocess_exec(
        &self,
        loop_: &EventLoop,
        factory: super::SubprocessProtocolFactory,
        options: super::SubprocessOptions,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn crate::transports::SubprocessTransport>>>;
}

impl EventLoop {
    pub(crate) fn network(&self) -> Result<&dyn AbstractNetwork> {
        self.check_closed()?;
        self.inner.backend().network().ok_or_else(|| {
            Error::runtime(format!(
                "{} has no reactor for sockets; use asyncio::new_event_loop()",
                self.inner.backend().name()
            ))
        })
    }

    /// `await loop.getaddrinfo(host, port, family=, type=, proto=, flags=)`:
    /// name resolution in the default executor. Returns Python's 5-tuples;
    /// failures are `socket.gaierror`s (`OSError` with an `EAI_*` errno).
    pub fn getaddrinfo(&self, host: impl Into<HostArg>, port: impl Into<PortArg>) -> GetAddrInfo {
        GetAddrInfo {
            loop_: self.non_owning(),
            query: AddrInfoQuery {
                host: host.into().0,
                port: port.into().0,
                ..AddrInfoQuery::default()
            },
        }
    }

    /// `await loop.getnameinfo(sockaddr, flags)`: `(host, port)` as text.
    pub fn getnameinfo(
        &self,
        sockaddr: SocketAddr,
        flags: i32,
    ) -> LocalBoxFuture<'static, Result<(String, String)>> {
        match self.network() {
            Ok(net) => net.getnameinfo(self, sockaddr, flags),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    /// `await loop.create_connection(protocol_factory, host, port, ...)`:
    /// opens a TCP connection and returns `(transport, protocol)`.
    ///
    /// ```no_run
    /// # async fn f(loop_: asyncio_core::EventLoop) -> asyncio_core::Result<()> {
    /// # #[derive(Default)] struct Client;
    /// # impl asyncio_core::protocols::BaseProtocol for Client {}
    /// # impl asyncio_core::protocols::Protocol for Client {}
    /// let (transport, protocol) = loop_
    ///     .create_connection(Client::default)
    ///     .host("127.0.0.1")
    ///     .port(8888)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn create_connection<F, P>(&self, protocol_factory: F) -> CreateConnection<F>
    where
        F: FnOnce() -> P + 'static,
        P: IntoStreamProtocol,
    {
        CreateConnection::new(self, protocol_factory)
    }

    /// `await loop.create_server(protocol_factory, host, port, ...)`: a TCP
    /// server making one protocol per connection.
    pub fn create_server<F, P>(&self, protocol_factory: F) -> CreateServer<F>
    where
        F: Fn() -> P + 'static,
        P: IntoStreamProtocol,
    {
        CreateServer::new(self, protocol_factory)
    }

    /// `await loop.create_unix_connection(protocol_factory, path, ...)`.
    pub fn create_unix_connection<F, P>(&self, protocol_factory: F) -> CreateUnixConnection<F>
    where
        F: FnOnce() -> P + 'static,
        P: IntoStreamProtocol,
    {
        CreateUnixConnection::new(self, protocol_factory)
    }

    /// `await loop.create_unix_server(protocol_factory, path, ...)`.
    pub fn create_unix_server<F, P>(&self, protocol_factory: F) -> CreateUnixServer<F>
    where
        F: Fn() -> P + 'static,
        P: IntoStreamProtocol,
    {
        CreateUnixServer::new(self, protocol_factory)
    }

    /// `await loop.connect_accepted_socket(protocol_factory, sock)`: wraps a
    /// connection accepted elsewhere (with `.ssl(ctx)`, as the TLS server
    /// side).
    pub fn connect_accepted_socket<F, P>(
        &self,
        protocol_factory: F,
        sock: impl Into<OwnedFd>,
    ) -> ConnectAcceptedSocket<F>
    where
        F: FnOnce() -> P + 'static,
        P: IntoStreamProtocol,
    {
        ConnectAcceptedSocket {
            loop_: self.non_owning(),
            factory: protocol_factory,
            sock: sock.into(),
            options: AcceptedSocketOptions::default(),
        }
    }
}

/// The keyword arguments of `connect_accepted_socket` (without TLS, none).
#[cfg(not(feature = "tls"))]
#[derive(Debug, Default)]
pub struct AcceptedSocketOptions {
    /// `ssl_handshake_timeout=` (TLS only).
    pub ssl_handshake_timeout: Option<f64>,
    /// `ssl_shutdown_timeout=` (TLS only).
    pub ssl_shutdown_timeout: Option<f64>,
}

#[cfg(feature = "tls")]
pub use super::tls::AcceptedSocketOptions;

/// The builder of [`EventLoop::connect_accepted_socket`]; await it for
/// `(transport, protocol)`.
pub struct ConnectAcceptedSocket<F> {
    loop_: EventLoop,
    factory: F,
    sock: OwnedFd,
    options: AcceptedSocketOptions,
}

impl<F> fmt::Debug for ConnectAcceptedSocket<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectAcceptedSocket")
            .field("sock", &self.sock)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<F, P> IntoFuture for ConnectAcceptedSocket<F>
where
    F: FnOnce() -> P + 'static,
    P: IntoStreamProtocol,
{
    type Output = Result<ConnectionPair<P::Protocol>>;
    type IntoFuture = LocalBoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            #[allow(unused_mut)]
            let mut options = self.options;
            let (factory, slot) = connection_factory(self.factory);
            #[cfg(feature = "tls")]
            if let Some(tls) = super::tls::TlsOptions::take_tls(&mut options)? {
                let (factory, handshake) = tls.wrap_connection(&self.loop_, factory);
                let plain = self
                    .loop_
                    .network()?
                    .connect_accepted_socket(&self.loop_, factory, self.sock)
                    .await?;
                let transport = handshake.finish(plain).await?;
                return Ok((transport, take_protocol(&slot)?));
            }
            if options.ssl_handshake_timeout.is_some() {
                return Err(Error::value(
                    "ssl_handshake_timeout is only meaningful with ssl",
                ));
            }
            if options.ssl_shutdown_timeout.is_some() {
                return Err(Error::value(
                    "ssl_shutdown_timeout is only meaningful with ssl",
                ));
            }
            let transport = self
                .loop_
                .network()?
                .connect_accepted_socket(&self.loop_, factory, self.sock)
                .await?;
            Ok((transport, take_protocol(&slot)?))
        })
    }
}

awaitable_via_into_future!(impl<F, P> ConnectAcceptedSocket<F> => ConnectionPair<P::Protocol>
    where F: FnOnce() -> P + 'static, P: IntoStreamProtocol);

/// A `getaddrinfo` host: `&str`, `String`, or `None`.
#[derive(Debug)]
pub struct HostArg(Option<String>);

impl From<&str> for HostArg {
    fn from(s: &str) -> Self {
        HostArg(Some(s.to_owned()))
    }
}
impl From<String> for HostArg {
    fn from(s: String) -> Self {
        HostArg(Some(s))
    }
}
impl From<Option<&str>> for HostArg {
    fn from(s: Option<&str>) -> Self {
        HostArg(s.map(str::to_owned))
    }
}

/// A `getaddrinfo` port: a number, a service name, or `None`.
#[derive(Debug)]
pub struct PortArg(Option<String>);

impl From<u16> for PortArg {
    fn from(p: u16) -> Self {
        PortArg(Some(p.to_string()))
    }
}
impl From<&str> for PortArg {
    fn from(s: &str) -> Self {
        PortArg(Some(s.to_owned()))
    }
}
impl From<Option<u16>> for PortArg {
    fn from(p: Option<u16>) -> Self {
        PortArg(p.map(|p| p.to_string()))
    }
}
impl From<Option<&str>> for PortArg {
    fn from(p: Option<&str>) -> Self {
        PortArg(p.map(str::to_owned))
    }
}

/// The builder of [`EventLoop::getaddrinfo`].
#[derive(Debug)]
pub struct GetAddrInfo {
    loop_: EventLoop,
    query: AddrInfoQuery,
}

impl GetAddrInfo {
    /// `family=`.
    pub fn family(mut self, family: i32) -> Self {
        self.query.family = family;
        self
    }
    /// `type=`.
    pub fn type_(mut self, type_: i32) -> Self {
        self.query.type_ = type_;
        self
    }
    /// `proto=`.
    pub fn proto(mut self, proto: i32) -> Self {
        self.query.proto = proto;
        self
    }
    /// `flags=`.
    pub fn flags(mut self, flags: i32) -> Self {
        self.query.flags = flags;
        self
    }
}

impl IntoFuture for GetAddrInfo {
    type Output = Result<Vec<AddrInfo>>;
    type IntoFuture = LocalBoxFuture<'static, Result<Vec<AddrInfo>>>;

    fn into_future(self) -> Self::IntoFuture {
        match self.loop_.network() {
            Ok(net) => net.getaddrinfo(&self.loop_, self.query),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

pub(super) type ProtocolSlot<P> = Rc<RefCell<Option<Rc<P>>>>;

pub(super) fn connection_factory<F, P>(
    f: F,
) -> (ConnectionProtocolFactory, ProtocolSlot<P::Protocol>)
where
    F: FnOnce() -> P + 'static,
    P: IntoStreamProtocol,
{
    typed_factory(f, P::into_stream_protocol)
}

/// The loop-facing factory of a builder's protocol factory `f`: calls it
/// (a panic becomes an error), shares its protocol through `share`, and
/// keeps the typed `Rc` in the slot for the caller.
pub(super) fn typed_factory<F, P, R, T>(
    f: F,
    share: fn(P) -> (R, Rc<T>),
) -> (Box<dyn FnOnce() -> Result<R>>, ProtocolSlot<T>)
where
    F: FnOnce() -> P + 'static,
    P: 'static,
    R: 'static,
    T: 'static,
{
    let slot: ProtocolSlot<T> = Rc::new(RefCell::new(None));
    let out = slot.clone();
    let factory: Box<dyn FnOnce() -> Result<R>> = Box::new(move || {
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .map_err(|p| Error::panic(&*p))?;
        let (protocol, typed) = share(made);
        *out.borrow_mut() = Some(typed);
        Ok(protocol)
    });
    (factory, slot)
}

pub(super) fn take_protocol<P>(slot: &ProtocolSlot<P>) -> Result<Rc<P>> {
    slot.borrow_mut()
        .take()
        .ok_or_else(|| Error::runtime("the protocol factory was not called"))
}

fn server_factory<F, P>(f: F) -> ServerProtocolFactory
where
    F: Fn() -> P + 'static,
    P: IntoStreamProtocol,
{
    Rc::new(move || {
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&f))
            .map_err(|p| Error::panic(&*p))?;
        Ok(made.into_stream_protocol().0)
    })
}

awaitable_via_into_future!(impl<> GetAddrInfo => Vec<AddrInfo>);

/// Declares a builder that holds the loop, the protocol factory and the
/// options, and on `.await` hands them to the loop's network backend.
macro_rules! network_builder {
    ($(#[$doc:meta])* $name:ident($options:ty) connects via $method:ident) => {
        network_builder!(@struct $(#[$doc])* $name($options));

        impl<F, P> IntoFuture for $name<F>
        where
            F: FnOnce() -> P + 'static,
            P: IntoStreamProtocol,
        {
            type Output = Result<ConnectionPair<P::Protocol>>;
            type IntoFuture = LocalBoxFuture<'static, Self::Output>;

            fn into_future(self) -> Self::IntoFuture {
                Box::pin(async move {
                    #[allow(unused_mut)]
                    let mut options = self.options;
                    let (factory, slot) = connection_factory(self.factory);
                    #[cfg(feature = "tls")]
                    if let Some(tls) = super::tls::TlsOptions::take_tls(&mut options)? {
                        let (factory, handshake) = tls.wrap_connection(&self.loop_, factory);
                        let plain = self
                            .loop_
                            .network()?
                            .$method(&self.loop_, factory, options)
                            .await?;
                        let transport = handshake.finish(plain).await?;
                        return Ok((transport, take_protocol(&slot)?));
                    }
                    let transport = self
                        .loop_
                        .network()?
                        .$method(&self.loop_, factory, options)
                        .await?;
                    Ok((transport, take_protocol(&slot)?))
                })
            }
        }

        awaitable_via_into_future!(impl<F, P> $name<F> => ConnectionPair<P::Protocol>
            where F: FnOnce() -> P + 'static, P: IntoStreamProtocol);
    };
    ($(#[$doc:meta])* $name:ident($options:ty) serves via $method:ident) => {
        network_builder!(@struct $(#[$doc])* $name($options));

        impl<F, P> IntoFuture for $name<F>
        where
            F: Fn() -> P + 'static,
            P: IntoStreamProtocol,
        {
            type Output = Result<Server>;
            type IntoFuture = LocalBoxFuture<'static, Result<Server>>;

            fn into_future(self) -> Self::IntoFuture {
                Box::pin(async move {
                    #[allow(unused_mut)]
                    let mut options = self.options;
                    #[allow(unused_mut)]
                    let mut factory = server_factory(self.factory);
                    #[cfg(feature = "tls")]
                    if let Some(tls) = super::tls::TlsOptions::take_tls(&mut options)? {
                        factory = tls.wrap_server(&self.loop_, factory);
                    }
                    self.loop_
                        .network()?
                        .$method(&self.loop_, factory, options)
                        .await
                })
            }
        }

        awaitable_via_into_future!(impl<F, P> $name<F> => Server
            where F: Fn() -> P + 'static, P: IntoStreamProtocol);
    };
    (@struct $(#[$doc:meta])* $name:ident($options:ty)) => {
        $(#[$doc])*
        pub struct $name<F> {
            loop_: EventLoop,
            factory: F,
            options: $options,
        }

        impl<F> $name<F> {
            fn new(loop_: &EventLoop, factory: F) -> Self {
                $name {
                    loop_: loop_.non_owning(),
                    factory,
                    options: <$options>::default(),
                }
            }

            /// All the keyword arguments at once (for the streams API).
            pub(crate) fn with_options(mut self, options: $options) -> Self {
                self.options = options;
                self
            }
        }

        impl<F> fmt::Debug for $name<F> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("options", &self.options)
                    .finish()
            }
        }
    };
}

network_builder!(
    /// The builder of [`EventLoop::create_connection`]; await it for
    /// `(transport, protocol)`.
    CreateConnection(ConnectionOptions) connects via create_connection
);
network_builder!(
    /// The builder of [`EventLoop::create_server`]; await it for the [`Server`].
    CreateServer(ServerOptions) serves via create_server
);
network_builder!(
    /// The builder of [`EventLoop::create_unix_connection`]; await it for
    /// `(transport, protocol)`.
    CreateUnixConnection(UnixConnectionOptions) connects via create_unix_connection
);
network_builder!(
    /// The builder of [`EventLoop::create_unix_server`]; await it for the
    /// [`Server`].
    CreateUnixServer(UnixServerOptions) serves via create_unix_server
);

/// The TLS keyword arguments shared by the connection and server builders.
macro_rules! tls_timeouts {
    ($([$($gen:tt)*] $builder:ty),*) => {$(
        impl<$($gen)*> $builder {
            /// `ssl_handshake_timeout=` (needs TLS).
            pub fn ssl_handshake_timeout(mut self, t: f64) -> Self {
                self.options.ssl_handshake_timeout = Some(t);
                self
            }
            /// `ssl_shutdown_timeout=` (needs TLS).
            pub fn ssl_shutdown_timeout(mut self, t: f64) -> Self {
                self.options.ssl_shutdown_timeout = Some(t);
                self
            }
            /// `ssl=`: speak TLS with this context.
            #[cfg(feature = "tls")]
            pub fn ssl(mut self, context: &$crate::ssl::SslContext) -> Self {
                self.options.ssl = Some(context.clone());
                self
            }
        }
    )*};
}

pub(crate) use tls_timeouts;

tls_timeouts!(
    [F] ConnectAcceptedSocket<F>,
    [F] CreateConnection<F>,
    [F] CreateServer<F>,
    [F] CreateUnixConnection<F>,
    [F] CreateUnixServer<F>
);

/// The setters of [`CreateConnection`]'s keyword arguments, shared with the
/// streams builders that wrap it.
macro_rules! connection_setters {
    ([$($gen:tt)*] $ty:ty) => {
        impl<$($gen)*> $ty {
    /// The host to connect to.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.options.host = Some(host.into());
        self
    }
    /// The port to connect to.
    pub fn port(mut self, port: u16) -> Self {
        self.options.port = Some(port);
        self
    }
    /// `family=`.
    pub fn family(mut self, family: i32) -> Self {
        self.options.family = family;
        self
    }
    /// `proto=`.
    pub fn proto(mut self, proto: i32) -> Self {
        self.options.proto = proto;
        self
    }
    /// `flags=`.
    pub fn flags(mut self, flags: i32) -> Self {
        self.options.flags = flags;
        self
    }
    /// `sock=`: use this connected stream socket (the transport owns it).
    pub fn sock(mut self, sock: impl Into<std::os::fd::OwnedFd>) -> Self {
        self.options.sock = Some(sock.into());
        self
    }
    /// `local_addr=(host, port)`: bind the socket locally first.
    pub fn local_addr(mut self, host: impl Into<String>, port: u16) -> Self {
        self.options.local_addr = Some((host.into(), port));
        self
    }
    /// `server_hostname=` (needs TLS).
    pub fn server_hostname(mut self, name: impl Into<String>) -> Self {
        self.options.server_hostname = Some(name.into());
        self
    }
    /// `happy_eyeballs_delay=`: start the next address after this delay.
    pub fn happy_eyeballs_delay(mut self, delay: f64) -> Self {
        self.options.happy_eyeballs_delay = Some(delay);
        self
    }
    /// `interleave=`: reorder addresses by family.
    pub fn interleave(mut self, interleave: usize) -> Self {
        self.options.interleave = Some(interleave);
        self
    }
    /// `all_errors=`: report every address's failure as an exception group.
    pub fn all_errors(mut self, all: bool) -> Self {
        self.options.all_errors = all;
        self
    }
        }
    };
}
pub(crate) use connection_setters;

connection_setters!([F] CreateConnection<F>);

/// What awaiting a connection builder yields.
pub type ConnectionPair<P> = (Rc<dyn Transport>, Rc<P>);

/// The setters of [`CreateServer`]'s keyword arguments, shared with the
/// streams builders that wrap it.
macro_rules! server_setters {
    ([$($gen:tt)*] $ty:ty) => {
        impl<$($gen)*> $ty {
    /// The host to bind (`""`: all interfaces, as `None`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        let host = host.into();
        self.options.hosts = if host.is_empty() {
            None
        } else {
            Some(vec![host])
        };
        self
    }
    /// Several hosts to bind.
    pub fn hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }
    /// The port (0: a free port).
    pub fn port(mut self, port: u16) -> Self {
        self.options.port = Some(port);
        self
    }
    /// `family=`.
    pub fn family(mut self, family: i32) -> Self {
        self.options.family = family;
        self
    }
    /// `flags=`.
    pub fn flags(mut self, flags: i32) -> Self {
        self.options.flags = flags;
        self
    }
    /// `sock=`: listen on this bound stream socket.
    pub fn sock(mut self, sock: impl Into<std::os::fd::OwnedFd>) -> Self {
        self.options.sock = Some(sock.into());
        self
    }
    /// `backlog=` (default 100).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.options.backlog = backlog;
        self
    }
    /// `reuse_address=`.
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.options.reuse_address = Some(on);
        self
    }
    /// `reuse_port=`.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.options.reuse_port = Some(on);
        self
    }
    /// `keep_alive=`.
    pub fn keep_alive(mut self, on: bool) -> Self {
        self.options.keep_alive = Some(on);
        self
    }
    /// `start_serving=` (default `true`).
    pub fn start_serving(mut self, on: bool) -> Self {
        self.options.start_serving = on;
        self
    }
        }
    };
}
pub(crate) use server_setters;

server_setters!([F] CreateServer<F>);

/// The setters of [`CreateUnixConnection`]'s keyword arguments, shared with the
/// streams builders that wrap it.
macro_rules! unix_connection_setters {
    ([$($gen:tt)*] $ty:ty) => {
        impl<$($gen)*> $ty {
    /// The socket path.
    pub fn path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.options.path = Some(path.into());
        self
    }
    /// `sock=`: a connected Unix stream socket.
    pub fn sock(mut self, sock: impl Into<std::os::fd::OwnedFd>) -> Self {
        self.options.sock = Some(sock.into());
        self
    }
    /// `server_hostname=` (needs TLS).
    pub fn server_hostname(mut self, name: impl Into<String>) -> Self {
        self.options.server_hostname = Some(name.into());
        self
    }
        }
    };
}
pub(crate) use unix_connection_setters;

unix_connection_setters!([F] CreateUnixConnection<F>);

/// The setters of [`CreateUnixServer`]'s keyword arguments, shared with the
/// streams builders that wrap it.
macro_rules! unix_server_setters {
    ([$($gen:tt)*] $ty:ty) => {
        impl<$($gen)*> $ty {
    /// The socket path (a stale socket file there is replaced).
    pub fn path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.options.path = Some(path.into());
        self
    }
    /// `sock=`: listen on this bound Unix stream socket.
    pub fn sock(mut self, sock: impl Into<std::os::fd::OwnedFd>) -> Self {
        self.options.sock = Some(sock.into());
        self
    }
    /// `backlog=` (default 100).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.options.backlog = backlog;
        self
    }
    /// `start_serving=` (default `true`).
    pub fn start_serving(mut self, on: bool) -> Self {
        self.options.start_serving = on;
        self
    }
    /// `cleanup_socket=` (default `true`).
    pub fn cleanup_socket(mut self, on: bool) -> Self {
        self.options.cleanup_socket = on;
        self
    }
        }
    };
}
pub(crate) use unix_server_setters;

unix_server_setters!([F] CreateUnixServer<F>);
