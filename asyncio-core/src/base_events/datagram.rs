//! `loop.create_datagram_endpoint` (the datagram half of CPython's
//! `base_events.py`): the builder and its options; the loop implementation
//! makes the socket and the transport.

use std::fmt;
use std::future::IntoFuture;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use super::network::{take_protocol, typed_factory, LocalBoxFuture};
use super::sock::SocketAddressArg;
use super::EventLoop;
use crate::exceptions::Result;
use crate::futures::{Awaitable, Future};
use crate::protocols::{DatagramProtocolRef, IntoDatagramProtocol};
use crate::transports::DatagramTransport;

/// Makes the protocol of a datagram endpoint.
pub type DatagramProtocolFactory = Box<dyn FnOnce() -> Result<DatagramProtocolRef>>;

/// What awaiting `create_datagram_endpoint` yields.
pub type DatagramPair<P> = (Rc<dyn DatagramTransport>, Rc<P>);

/// The arguments of `create_datagram_endpoint`.
#[derive(Debug, Default)]
pub struct DatagramEndpointOptions {
    /// `local_addr=`: `(host, port)`, or a path for `AF_UNIX`.
    pub local_addr: Option<SocketAddressArg>,
    /// `remote_addr=`: the peer (the socket is connected unless
    /// `allow_broadcast`).
    pub remote_addr: Option<SocketAddressArg>,
    /// `family=`.
    pub family: i32,
    /// `proto=`.
    pub proto: i32,
    /// `flags=`.
    pub flags: i32,
    /// `reuse_port=`.
    pub reuse_port: Option<bool>,
    /// `allow_broadcast=`.
    pub allow_broadcast: Option<bool>,
    /// `sock=`: an existing datagram socket.
    pub sock: Option<OwnedFd>,
}

/// The builder of [`EventLoop::create_datagram_endpoint`]; await it for
/// `(transport, protocol)`.
///
/// There is no `reuse_address`: CPython 3.13 refuses the keyword (it took
/// `SO_REUSEADDR` for UDP, a security hazard), and here it does not compile.
pub struct CreateDatagramEndpoint<F> {
    loop_: EventLoop,
    factory: F,
    options: DatagramEndpointOptions,
}

impl<F> fmt::Debug for CreateDatagramEndpoint<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateDatagramEndpoint")
            .field("options", &self.options)
            .finish()
    }
}

impl EventLoop {
    /// `await loop.create_datagram_endpoint(protocol_factory, ...)`: a UDP
    /// (or Unix datagram) endpoint; keyword arguments are builder methods.
    ///
    /// Errors as CPython's: `ValueError("unexpected address family")`
    /// without any address, family or socket; `"socket modifier keyword
    /// arguments can not be used when sock is specified. (…)"`; `"A
    /// datagram socket was expected, got <socket.socket …>"`;
    /// `TypeError("2-tuple is expected")` / `("string is expected")` for an
    /// address of the wrong kind.
    ///
    /// ```no_run
    /// # async fn f(loop_: asyncio_core::EventLoop) -> asyncio_core::Result<()> {
    /// # struct Echo;
    /// # impl asyncio_core::protocols::BaseProtocol for Echo {}
    /// # impl asyncio_core::protocols::DatagramProtocol for Echo {}
    /// let (transport, protocol) = loop_
    ///     .create_datagram_endpoint(|| Echo)
    ///     .local_addr(("127.0.0.1", 9999))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn create_datagram_endpoint<F, P>(&self, protocol_factory: F) -> CreateDatagramEndpoint<F>
    where
        F: FnOnce() -> P + 'static,
        P: IntoDatagramProtocol,
    {
        CreateDatagramEndpoint {
            loop_: self.non_owning(),
            factory: protocol_factory,
            options: DatagramEndpointOptions::default(),
        }
    }
}

impl<F> CreateDatagramEndpoint<F> {
    /// `local_addr=`: `("host", port)`, a `SocketAddr`, or a path with
    /// `family(AF_UNIX)`.
    pub fn local_addr(mut self, addr: impl Into<SocketAddressArg>) -> Self {
        self.options.local_addr = Some(addr.into());
        self
    }
    /// `remote_addr=`.
    pub fn remote_addr(mut self, addr: impl Into<SocketAddressArg>) -> Self {
        self.options.remote_addr = Some(addr.into());
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
    /// `reuse_port=`.
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.options.reuse_port = Some(reuse);
        self
    }
    /// `allow_broadcast=`.
    pub fn allow_broadcast(mut self, allow: bool) -> Self {
        self.options.allow_broadcast = Some(allow);
        self
    }
    /// `sock=`: an existing datagram socket (the transport owns it).
    pub fn sock(mut self, sock: impl Into<OwnedFd>) -> Self {
        self.options.sock = Some(sock.into());
        self
    }
}

impl<F, P> IntoFuture for CreateDatagramEndpoint<F>
where
    F: FnOnce() -> P + 'static,
    P: IntoDatagramProtocol,
{
    type Output = Result<DatagramPair<P::Protocol>>;
    type IntoFuture = LocalBoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (factory, slot) = typed_factory(self.factory, P::into_datagram_protocol);
            let transport = self
                .loop_
                .network()?
                .create_datagram_endpoint(&self.loop_, factory, self.options)
                .await?;
            Ok((transport, take_protocol(&slot)?))
        })
    }
}

awaitable_via_into_future!(impl<F, P> CreateDatagramEndpoint<F> => DatagramPair<P::Protocol>
    where F: FnOnce() -> P + 'static, P: IntoDatagramProtocol);
