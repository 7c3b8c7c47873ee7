//! `ssl=` on the connection and server calls, and `loop.start_tls`: the
//! loop-side half of [`sslproto`](crate::sslproto) (CPython's
//! `_make_ssl_transport` and `start_tls`).

use std::cell::RefCell;
use std::fmt;
use std::future::IntoFuture;
use std::rc::Rc;

use super::network::{
    ConnectionOptions, ConnectionProtocolFactory, ServerOptions, ServerProtocolFactory,
    UnixConnectionOptions, UnixServerOptions,
};
use super::{EventLoop, LocalBoxFuture};
use crate::exceptions::{Error, Result};
use crate::futures::{Awaitable, Future};
use crate::protocols::StreamProtocolRef;
use crate::ssl::SslContext;
use crate::sslproto::{
    check_timeout, SslProtocol, SslTransport, TlsParams, SSL_HANDSHAKE_TIMEOUT,
    SSL_SHUTDOWN_TIMEOUT,
};
use crate::transports::Transport;

/// The TLS side of one connection call or server, taken out of its options.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    context: SslContext,
    server_side: bool,
    server_hostname: Option<String>,
    handshake_timeout: f64,
    shutdown_timeout: f64,
}

impl TlsSetup {
    fn new(
        context: SslContext,
        server_side: bool,
        server_hostname: Option<String>,
        handshake: Option<f64>,
        shutdown: Option<f64>,
    ) -> Result<TlsSetup> {
        let handshake_timeout =
            check_timeout("ssl_handshake_timeout", handshake, SSL_HANDSHAKE_TIMEOUT)?;
        let shutdown_timeout =
            check_timeout("ssl_shutdown_timeout", shutdown, SSL_SHUTDOWN_TIMEOUT)?;
        // The context's errors (a server context for a client …) now,
        // before any connection is made.
        if server_side {
            context.server_config()?;
        } else {
            context.client_config()?;
        }
        Ok(TlsSetup {
            context,
            server_side,
            server_hostname,
            handshake_timeout,
            shutdown_timeout,
        })
    }

    fn params(&self, call_connection_made: bool) -> TlsParams {
        TlsParams {
            context: self.context.clone(),
            server_side: self.server_side,
            server_hostname: self.server_hostname.clone(),
            handshake_timeout: self.handshake_timeout,
            shutdown_timeout: self.shutdown_timeout,
            call_connection_made,
        }
    }

    /// A client connection's factory that puts the TLS layer between the
    /// transport and the application protocol, and what completes when the
    /// handshake did.
    pub(crate) fn wrap_connection(
        &self,
        loop_: &EventLoop,
        factory: ConnectionProtocolFactory,
    ) -> (ConnectionProtocolFactory, Handshake) {
        let waiter = Future::<Rc<SslTransport>>::new(loop_);
        let made: Rc<RefCell<Option<Rc<SslProtocol>>>> = Rc::new(RefCell::new(None));
        let (loop2, params, w, slot) = (
            loop_.non_owning(),
            self.params(true),
            waiter.clone(),
            made.clone(),
        );
        let wrapped: ConnectionProtocolFactory = Box::new(move || {
            let app = factory()?;
            let layer = SslProtocol::new(&loop2, app, params, Some(w))?;
            *slot.borrow_mut() = Some(layer.clone());
            Ok(StreamProtocolRef::new(layer))
        });
        (wrapped, Handshake { waiter, made })
    }

    /// A server's factory that puts a TLS layer on every connection.
    pub(crate) fn wrap_server(
        &self,
        loop_: &EventLoop,
        factory: ServerProtocolFactory,
    ) -> ServerProtocolFactory {
        let loop_ = loop_.non_owning();
        let setup = self.clone();
        Rc::new(move || {
            let app = factory()?;
            let layer = SslProtocol::new(&loop_, app, setup.params(true), None)?;
            Ok(StreamProtocolRef::new(layer))
        })
    }
}

/// The end of a client handshake (see [`TlsSetup::wrap_connection`]).
pub(crate) struct Handshake {
    waiter: Future<Rc<SslTransport>>,
    /// Keeps the layer alive until the caller has its transport.
    made: Rc<RefCell<Option<Rc<SslProtocol>>>>,
}

/// Aborts a connection whose handshake nobody awaits any more (the
/// connecting future was dropped).
struct AbortUnlessDone(Option<Rc<dyn Transport>>);

impl Drop for AbortUnlessDone {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

impl Handshake {
    /// Waits for the handshake over `plain`; the application's transport
    /// (also when the connection was lost right after its
    /// `connection_made`, as in CPython), or the handshake's error (the
    /// connection is then closed).
    pub(crate) async fn finish(self, plain: Rc<dyn Transport>) -> Result<Rc<dyn Transport>> {
        let mut guard = AbortUnlessDone(Some(plain));
        let outcome = self.waiter.clone().await;
        let plain = guard.0.take();
        drop(self.made.borrow_mut().take());
        match outcome {
            Ok(t) => Ok(t as Rc<dyn Transport>),
            Err(e) => {
                if let Some(plain) = plain {
                    plain.abort();
                }
                Err(e)
            }
        }
    }
}

/// Options that may carry `ssl=`: taking the TLS settings out leaves the
/// plain-transport call.
pub(crate) trait TlsOptions {
    /// The TLS settings (validated), or `None` without `ssl=`.
    fn take_tls(&mut self) -> Result<Option<TlsSetup>>;
}

impl TlsOptions for ConnectionOptions {
    fn take_tls(&mut self) -> Result<Option<TlsSetup>> {
        let Some(ctx) = self.ssl.take() else {
            return Ok(None);
        };
        let hostname = match self.server_hostname.take() {
            Some(h) => Some(h),
            None => match self.host.clone() {
                Some(h) if !h.is_empty() => Some(h),
                _ => {
                    return Err(Error::value(
                        "You must set server_hostname when using ssl without a host",
                    ))
                }
            },
        };
        TlsSetup::new(
            ctx,
            false,
            hostname,
            self.ssl_handshake_timeout.take(),
            self.ssl_shutdown_timeout.take(),
        )
        .map(Some)
    }
}

impl TlsOptions for UnixConnectionOptions {
    fn take_tls(&mut self) -> Result<Option<TlsSetup>> {
        let Some(ctx) = self.ssl.take() else {
            return Ok(None);
        };
        let Some(hostname) = self.server_hostname.take() else {
            return Err(Error::value(
                "you have to pass server_hostname when using ssl",
            ));
        };
        TlsSetup::new(
            ctx,
            false,
            Some(hostname),
            self.ssl_handshake_timeout.take(),
            self.ssl_shutdown_timeout.take(),
        )
        .map(Some)
    }
}

macro_rules! server_tls_options {
    ($($ty:ty),*) => {$(
        impl TlsOptions for $ty {
            fn take_tls(&mut self) -> Result<Option<TlsSetup>> {
                let Some(ctx) = self.ssl.take() else {
                    return Ok(None);
                };
                TlsSetup::new(
                    ctx,
                    true,
                    None,
                    self.ssl_handshake_timeout.take(),
                    self.ssl_shutdown_timeout.take(),
                )
                .map(Some)
            }
        }
    )*};
}

server_tls_options!(ServerOptions, UnixServerOptions, AcceptedSocketOptions);

/// The keyword arguments of `connect_accepted_socket`.
#[derive(Debug, Default)]
pub struct AcceptedSocketOptions {
    /// `ssl=`: serve TLS on the accepted connection (server side).
    pub ssl: Option<SslContext>,
    /// `ssl_handshake_timeout=` (TLS only).
    pub ssl_handshake_timeout: Option<f64>,
    /// `ssl_shutdown_timeout=` (TLS only).
    pub ssl_shutdown_timeout: Option<f64>,
}

// ===== start_tls =====

/// The builder of [`EventLoop::start_tls`]; await it for the new transport.
pub struct StartTls {
    loop_: EventLoop,
    transport: Rc<dyn Transport>,
    protocol: StreamProtocolRef,
    context: SslContext,
    server_side: bool,
    server_hostname: Option<String>,
    handshake_timeout: Option<f64>,
    shutdown_timeout: Option<f64>,
    /// Bytes already read off the connection that belong to the TLS stream.
    initial: Vec<u8>,
}

impl fmt::Debug for StartTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartTls")
            .field("transport", &self.transport)
            .field("server_side", &self.server_side)
            .field("server_hostname", &self.server_hostname)
            .finish_non_exhaustive()
    }
}

impl StartTls {
    /// `server_side=` (default `false`).
    pub fn server_side(mut self, on: bool) -> Self {
        self.server_side = on;
        self
    }

    /// `server_hostname=`: the name to check the server's certificate
    /// against (and to send as SNI).
    pub fn server_hostname(mut self, name: impl Into<String>) -> Self {
        self.server_hostname = Some(name.into());
        self
    }

    /// `ssl_handshake_timeout=` (default 60 s).
    pub fn ssl_handshake_timeout(mut self, t: f64) -> Self {
        self.handshake_timeout = Some(t);
        self
    }

    /// `ssl_shutdown_timeout=` (default 30 s).
    pub fn ssl_shutdown_timeout(mut self, t: f64) -> Self {
        self.shutdown_timeout = Some(t);
        self
    }

    /// Bytes the old protocol received but did not consume (a stream
    /// reader's buffer): the first bytes of the TLS stream.
    pub(crate) fn initial_data(mut self, data: Vec<u8>) -> Self {
        self.initial = data;
        self
    }
}

impl IntoFuture for StartTls {
    type Output = Result<Rc<dyn Transport>>;
    type IntoFuture = LocalBoxFuture<'static, Result<Rc<dyn Transport>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let setup = TlsSetup::new(
                self.context,
                self.server_side,
                if self.server_side {
                    None
                } else {
                    self.server_hostname
                },
                self.handshake_timeout,
                self.shutdown_timeout,
            )?;
            let loop_ = self.loop_;
            let waiter = Future::<Rc<SslTransport>>::new(&loop_);
            let layer = SslProtocol::new(
                &loop_,
                self.protocol,
                setup.params(false),
                Some(waiter.clone()),
            )?;
            let transport = self.transport;
            transport.pause_reading();
            transport.set_protocol(StreamProtocolRef::new(layer.clone()));
            let (l, t, initial) = (layer.clone(), transport.clone(), self.initial);
            let conmade = loop_.call_soon(move || {
                crate::protocols::Protocol::connection_made(&l, t)?;
                if initial.is_empty() {
                    Ok(())
                } else {
                    crate::protocols::Protocol::data_received(&l, &initial)
                }
            })?;
            let t = transport.clone();
            let resume = loop_.call_soon(move || t.resume_reading())?;
            let mut guard = AbortUnlessDone(Some(transport.clone()));
            let outcome = waiter.await;
            guard.0 = None;
            drop(layer);
            match outcome {
                Ok(t) => Ok(t as Rc<dyn Transport>),
                Err(e) => {
                    transport.close();
                    conmade.cancel();
                    resume.cancel();
                    Err(e)
                }
            }
        })
    }
}

super::awaitable_via_into_future!(impl<> StartTls => Rc<dyn Transport>);

impl EventLoop {
    /// `await loop.start_tls(transport, protocol, sslcontext, …)`: upgrades
    /// a live connection to TLS (STARTTLS). The handshake runs over
    /// `transport`, which from then on carries the TLS layer; the returned
    /// transport is the plaintext one for `protocol` (whose
    /// `connection_made` is not called again).
    ///
    /// Errors: the handshake's (`SSLCertVerificationError`, `SSLError`,
    /// `ConnectionAbortedError` at the timeout …), after which `transport`
    /// is closed; the context's (`ValueError("Cannot create a client
    /// socket with a PROTOCOL_TLS_SERVER context")`).
    pub fn start_tls(
        &self,
        transport: Rc<dyn Transport>,
        protocol: StreamProtocolRef,
        sslcontext: &SslContext,
    ) -> StartTls {
        StartTls {
            loop_: self.non_owning(),
            transport,
            protocol,
            context: sslcontext.clone(),
            server_side: false,
            server_hostname: None,
            handshake_timeout: None,
            shutdown_timeout: None,
            initial: Vec::new(),
        }
    }
}
