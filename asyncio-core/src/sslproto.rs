//! TLS over any stream transport (CPython's `sslproto.py`): [`SslProtocol`]
//! sits on the plain transport as its protocol, runs a rustls connection
//! over the bytes it receives and sends, and gives the application protocol
//! an [`SslTransport`] of plaintext.
//!
//! Layering TLS as a protocol rather than a socket wrapper is what makes one
//! code path serve `create_connection(ssl=…)`, servers, Unix sockets,
//! `connect_accepted_socket` and `start_tls` on a live connection, with
//! CPython's states (`UNWRAPPED → DO_HANDSHAKE → WRAPPED → FLUSHING →
//! SHUTDOWN`), flow control and error reports.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io::{Read, Write};
use std::rc::{Rc, Weak};

use crate::base_events::EventLoop;
use crate::events::TimerHandle;
use crate::exception_context::{ContextValue, ExceptionContext};
use crate::exceptions::{Error, ErrorKind, Result};
use crate::futures::Future;
use crate::protocols::{BaseProtocol, Protocol, ReadOutcome, StreamProtocolRef};
use crate::ssl::{tls_error, SslContext, SslObject};
use crate::transports::{
    check_write_buffer_limits, BaseTransport, ExtraInfo, ReadTransport, Transport, WriteTransport,
};

/// `constants.SSL_HANDSHAKE_TIMEOUT`.
pub const SSL_HANDSHAKE_TIMEOUT: f64 = 60.0;
/// `constants.SSL_SHUTDOWN_TIMEOUT`.
pub const SSL_SHUTDOWN_TIMEOUT: f64 = 30.0;
/// `constants.FLOW_CONTROL_HIGH_WATER_SSL_WRITE`: 512 KiB.
const HIGH_WATER_SSL_WRITE: usize = 512 * 1024;
/// `constants.FLOW_CONTROL_HIGH_WATER_SSL_READ`: 256 KiB.
const HIGH_WATER_SSL_READ: usize = 256 * 1024;
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;
/// A TLS record's plaintext at most.
const MAX_PLAINTEXT: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Unwrapped,
    DoHandshake,
    Wrapped,
    Flushing,
    Shutdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AppState {
    Init,
    ConMade,
    Eof,
    ConLost,
}

/// Checks a TLS timeout as `SSLProtocol.__init__` does.
pub(crate) fn check_timeout(name: &str, value: Option<f64>, default: f64) -> Result<f64> {
    match value {
        None => Ok(default),
        Some(t) if t > 0.0 => Ok(t),
        Some(t) => Err(Error::value(format!(
            "{name} should be a positive number, got {t}"
        ))),
    }
}

/// The settings of one TLS connection.
pub(crate) struct TlsParams {
    pub(crate) context: SslContext,
    pub(crate) server_side: bool,
    pub(crate) server_hostname: Option<String>,
    pub(crate) handshake_timeout: f64,
    pub(crate) shutdown_timeout: f64,
    /// `false` for `start_tls`: the application protocol is already connected.
    pub(crate) call_connection_made: bool,
}

/// CPython's `SSLProtocol`: the plain transport's protocol during TLS.
pub struct SslProtocol {
    loop_: EventLoop,
    this: Weak<SslProtocol>,
    params: TlsParams,
    conn: RefCell<Option<rustls::Connection>>,
    state: Cell<State>,
    app_state: Cell<AppState>,
    app_protocol: RefCell<Option<StreamProtocolRef>>,
    app_transport: RefCell<Option<Rc<SslTransport>>>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    /// Completes with the application's transport when the handshake did.
    waiter: RefCell<Option<Future<Rc<SslTransport>>>>,
    /// The handshake's outcome was given (to the waiter, or reported).
    handshake_settled: Cell<bool>,
    /// What the handshake negotiated; shared with the application's
    /// transport, which answers `get_extra_info` from it after the
    /// connection is gone (CPython's `_extra`).
    ssl_object: Rc<RefCell<Option<SslObject>>>,
    handshake_timer: RefCell<Option<TimerHandle>>,
    shutdown_timer: RefCell<Option<TimerHandle>>,
    handshake_start: Cell<f64>,
    /// Ciphertext received and not handed to rustls yet.
    incoming: RefCell<Vec<u8>>,
    /// The plaintext buffer handed to `data_received` (kept between reads).
    plain_buf: RefCell<Vec<u8>>,
    /// Ciphertext made by rustls and not handed to the transport yet.
    outgoing: RefCell<Vec<u8>>,
    /// Plaintext written before the handshake finished.
    write_backlog: RefCell<VecDeque<Vec<u8>>>,
    write_backlog_size: Cell<usize>,
    app_reading_paused: Cell<bool>,
    ssl_reading_paused: Cell<bool>,
    app_writing_paused: Cell<bool>,
    ssl_writing_paused: Cell<bool>,
    outgoing_high: Cell<usize>,
    outgoing_low: Cell<usize>,
    incoming_high: Cell<usize>,
    incoming_low: Cell<usize>,
    peer_closed: Cell<bool>,
    plain_eof: Cell<bool>,
    close_notify_sent: Cell<bool>,
    reading: Cell<bool>,
    conn_lost: Cell<u32>,
    /// The error the plain transport was aborted with (its
    /// `connection_lost` comes without one).
    fatal_exc: RefCell<Option<Error>>,
}

impl SslProtocol {
    /// A TLS layer for `app_protocol`; `waiter` completes when the
    /// handshake did (with its error if it failed).
    pub(crate) fn new(
        loop_: &EventLoop,
        app_protocol: StreamProtocolRef,
        params: TlsParams,
        waiter: Option<Future<Rc<SslTransport>>>,
    ) -> Result<Rc<SslProtocol>> {
        let conn: rustls::Connection = if params.server_side {
            let config = params.context.server_config()?;
            rustls::ServerConnection::new(config)
                .map_err(|e| tls_error(&e, None))?
                .into()
        } else {
            let config = params.context.client_config()?;
            let host = params.server_hostname.clone().unwrap_or_default();
            let name = if host.is_empty() {
                if params.context.check_hostname() {
                    return Err(Error::value("check_hostname requires server_hostname"));
                }
                // No name to check or send as SNI.
                rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())
            } else {
                rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| {
                    Error::value(format!(
                        "invalid server_hostname: {}",
                        crate::exceptions::py_str_repr(&host)
                    ))
                })?
            };
            rustls::ClientConnection::new(config, name)
                .map_err(|e| tls_error(&e, Some(&host)))?
                .into()
        };
        let mut conn = conn;
        // Flow control is this layer's (CPython's water marks), not rustls's.
        conn.set_buffer_limit(None);
        let (high, low) = check_write_buffer_limits(Some(HIGH_WATER_SSL_WRITE), None)?;
        let (rhigh, rlow) = check_write_buffer_limits(Some(HIGH_WATER_SSL_READ), None)?;
        let app_state = if params.call_connection_made {
            AppState::Init
        } else {
            AppState::ConMade
        };
        Ok(Rc::new_cyclic(|this| SslProtocol {
            loop_: loop_.non_owning(),
            this: this.clone(),
            params,
            conn: RefCell::new(Some(conn)),
            state: Cell::new(State::Unwrapped),
            app_state: Cell::new(app_state),
            app_protocol: RefCell::new(Some(app_protocol)),
            app_transport: RefCell::new(None),
            transport: RefCell::new(None),
            waiter: RefCell::new(waiter),
            handshake_settled: Cell::new(false),
            ssl_object: Rc::new(RefCell::new(None)),
            handshake_timer: RefCell::new(None),
            shutdown_timer: RefCell::new(None),
            handshake_start: Cell::new(0.0),
            incoming: RefCell::new(Vec::new()),
            plain_buf: RefCell::new(Vec::new()),
            outgoing: RefCell::new(Vec::new()),
            write_backlog: RefCell::new(VecDeque::new()),
            write_backlog_size: Cell::new(0),
            app_reading_paused: Cell::new(false),
            ssl_reading_paused: Cell::new(false),
            app_writing_paused: Cell::new(false),
            ssl_writing_paused: Cell::new(false),
            outgoing_high: Cell::new(high),
            outgoing_low: Cell::new(low),
            incoming_high: Cell::new(rhigh),
            incoming_low: Cell::new(rlow),
            peer_closed: Cell::new(false),
            plain_eof: Cell::new(false),
            close_notify_sent: Cell::new(false),
            reading: Cell::new(false),
            conn_lost: Cell::new(0),
            fatal_exc: RefCell::new(None),
        }))
    }

    /// The transport the application protocol sees (made once).
    pub(crate) fn app_transport(&self) -> Option<Rc<SslTransport>> {
        if let Some(t) = self.app_transport.borrow().as_ref() {
            return Some(t.clone());
        }
        if self.state.get() == State::Unwrapped && self.conn_lost.get() > 0 {
            return None;
        }
        let t = Rc::new(SslTransport {
            protocol: self.this.clone(),
            closed: Cell::new(false),
            context: self.params.context.clone(),
            ssl_object: self.ssl_object.clone(),
        });
        *self.app_transport.borrow_mut() = Some(t.clone());
        Some(t)
    }

    fn plain(&self) -> Option<Rc<dyn Transport>> {
        self.transport.borrow().clone()
    }

    fn app(&self) -> Option<StreamProtocolRef> {
        self.app_protocol.borrow().clone()
    }

    fn wakeup_waiter(&self, exc: Option<Error>) {
        let first = !self.handshake_settled.replace(true);
        if let Some(e) = &exc {
            if first
                && self.params.server_side
                && self.params.call_connection_made
                && self.loop_.get_debug()
            {
                // CPython's `_accept_connection2` on a failed waiter.
                let mut ctx =
                    ExceptionContext::new("Error on transport creation for incoming connection");
                ctx.exception = Some(e.clone());
                ctx.set("protocol", ContextValue::Text(format!("{self:?}")));
                if let Some(t) = self.plain() {
                    ctx.set("transport", ContextValue::Text(format!("{t:?}")));
                }
                self.loop_.call_exception_handler(ctx);
            }
        }
        let waiter = self.waiter.borrow_mut().take();
        if let Some(w) = waiter {
            if !w.done() {
                let _ = match (exc, self.app_transport()) {
                    (Some(e), _) => w.set_exception(e),
                    (None, Some(t)) => w.set_result(t),
                    (None, None) => w.set_exception(Error::os_subclass(
                        "ConnectionResetError",
                        "Connection lost",
                    )),
                };
            }
        }
    }

    fn report(&self, message: &str, exc: Error) {
        let mut ctx = ExceptionContext::new(message);
        ctx.exception = Some(exc);
        if let Some(t) = self.plain() {
            ctx.set("transport", ContextValue::Text(format!("{t:?}")));
        }
        ctx.set("protocol", ContextValue::Text(format!("{self:?}")));
        self.loop_.call_exception_handler(ctx);
    }

    /// `_fatal_error`: aborts the plain transport; an `OSError` (TLS
    /// errors are) is only logged in debug mode.
    fn fatal_error(&self, exc: Error, message: &str) {
        *self.fatal_exc.borrow_mut() = Some(exc.clone());
        if exc.kind() == ErrorKind::OSError {
            if self.loop_.get_debug() {
                crate::log::debug(format_args!("{self:?}: {message}: {exc}"));
            }
        } else if !exc.is_cancelled() {
            self.report(message, exc);
        }
        if let Some(t) = self.plain() {
            t.abort();
        }
    }

    // ===== handshake =====

    fn start_handshake(&self) {
        if self.loop_.get_debug() {
            crate::log::debug(format_args!("{self:?} starts SSL handshake"));
            self.handshake_start.set(self.loop_.time());
        }
        self.state.set(State::DoHandshake);
        let weak = self.this.clone();
        let timeout = self.params.handshake_timeout;
        if let Ok(h) = self.loop_.call_later(timeout, move || {
            if let Some(p) = weak.upgrade() {
                p.check_handshake_timeout();
            }
        }) {
            *self.handshake_timer.borrow_mut() = Some(h);
        }
        self.do_handshake();
    }

    fn check_handshake_timeout(&self) {
        if self.state.get() == State::DoHandshake {
            let msg = format!(
                "SSL handshake is taking longer than {} seconds: aborting the connection",
                self.params.handshake_timeout
            );
            let exc = Error::os_subclass("ConnectionAbortedError", msg);
            self.fatal_error(exc.clone(), "Fatal error on transport");
            self.wakeup_waiter(Some(exc));
        }
    }

    fn do_handshake(&self) {
        if let Err(e) = self.feed() {
            self.on_handshake_complete(Some(e));
            return;
        }
        self.flush_outgoing();
        let handshaking = self
            .conn
            .borrow()
            .as_ref()
            .is_some_and(|c| c.is_handshaking());
        if !handshaking && self.state.get() == State::DoHandshake {
            self.on_handshake_complete(None);
        }
    }

    fn on_handshake_complete(&self, exc: Option<Error>) {
        let timer = self.handshake_timer.borrow_mut().take();
        if let Some(t) = timer {
            t.cancel();
        }
        if let Some(exc) = exc {
            self.state.set(State::Unwrapped);
            let msg = if crate::ssl::is_cert_verification_error(&exc) {
                "SSL handshake failed on verifying the certificate"
            } else {
                "SSL handshake failed"
            };
            self.fatal_error(exc.clone(), msg);
            self.wakeup_waiter(Some(exc));
            return;
        }
        self.state.set(State::Wrapped);
        {
            let conn = self.conn.borrow();
            if let Some(conn) = conn.as_ref() {
                let verified =
                    self.params.context.verify_mode() != crate::ssl::VerifyMode::CertNone;
                *self.ssl_object.borrow_mut() = Some(SslObject::capture(
                    conn,
                    &self.params.context,
                    self.params.server_hostname.as_deref(),
                    verified,
                ));
            }
        }
        if self.loop_.get_debug() {
            let dt = self.loop_.time() - self.handshake_start.get();
            crate::log::debug(format_args!(
                "{self:?}: SSL handshake took {:.1} ms",
                dt * 1e3
            ));
        }
        if self.app_state.get() == AppState::Init {
            self.app_state.set(AppState::ConMade);
            if let (Some(app), Some(t)) = (self.app(), self.app_transport()) {
                if let Err(e) = app.connection_made(t) {
                    if e.kind().is_exit() {
                        self.loop_.inner.escape(e.clone());
                    }
                    self.fatal_error(e.clone(), "Error calling connection_made()");
                    self.wakeup_waiter(Some(e));
                    return;
                }
            }
        }
        self.wakeup_waiter(None);
        self.do_write();
        self.do_read();
    }

    // ===== bytes in =====

    /// Hands received ciphertext to rustls (not while the application
    /// paused reading after the handshake: it waits in `incoming`).
    fn feed(&self) -> Result<()> {
        loop {
            if self.app_reading_paused.get()
                && matches!(self.state.get(), State::Wrapped | State::Flushing)
            {
                return Ok(());
            }
            let mut incoming = self.incoming.borrow_mut();
            if incoming.is_empty() {
                return Ok(());
            }
            let mut conn_slot = self.conn.borrow_mut();
            let Some(conn) = conn_slot.as_mut() else {
                incoming.clear();
                return Ok(());
            };
            let mut src: &[u8] = &incoming;
            let n = match conn.read_tls(&mut src) {
                Ok(n) => n,
                // rustls holds as much plaintext as it will: read it first.
                Err(_) => return Ok(()),
            };
            incoming.drain(..n);
            drop(incoming);
            match conn.process_new_packets() {
                Ok(io) => {
                    if io.peer_has_closed() {
                        self.peer_closed.set(true);
                    }
                }
                Err(e) => {
                    // Send the alert that tells the peer why.
                    let mut out = self.outgoing.borrow_mut();
                    while conn.wants_write() {
                        if conn.write_tls(&mut *out).is_err() {
                            break;
                        }
                    }
                    drop(out);
                    drop(conn_slot);
                    self.flush_outgoing();
                    let host = self.params.server_hostname.as_deref();
                    return Err(tls_error(&e, host));
                }
            }
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// `_do_read`: plaintext to the application protocol.
    fn do_read(&self) {
        if !matches!(self.state.get(), State::Wrapped | State::Flushing) {
            return;
        }
        if self.reading.replace(true) {
            return;
        }
        let outcome = self.read_plaintext();
        self.reading.set(false);
        match outcome {
            Err(e) => {
                if e.kind().is_exit() {
                    // KeyboardInterrupt / SystemExit leave the loop (CPython
                    // catches only `Exception` here); the connection stays.
                    self.loop_.inner.escape(e);
                    return;
                }
                self.fatal_error(e, "Fatal error on SSL protocol")
            }
            Ok(eof) => {
                if self.write_backlog_size.get() > 0 {
                    self.do_write();
                } else {
                    self.flush_outgoing();
                }
                self.control_ssl_reading();
                if eof {
                    self.call_eof_received();
                    self.start_shutdown();
                }
            }
        }
    }

    /// Delivers plaintext until none is left or the application pauses;
    /// `Ok(true)` when the peer's close_notify was reached.
    fn read_plaintext(&self) -> Result<bool> {
        loop {
            if self.app_reading_paused.get()
                || !matches!(self.state.get(), State::Wrapped | State::Flushing)
            {
                return Ok(false);
            }
            self.feed()?;
            let Some(app) = self.app() else {
                return Ok(false);
            };
            let got = if app.is_buffered() {
                let mut got = Ok(0);
                let outcome = app.read_into(Some(MAX_PLAINTEXT), |buf| {
                    got = self.read_some(buf);
                    match &got {
                        Ok(n) => ReadOutcome::Read(*n),
                        Err(_) => ReadOutcome::Pending,
                    }
                })?;
                match (got, outcome) {
                    (Ok(n), ReadOutcome::Read(_)) if n > 0 => {
                        app.buffer_updated(n)?;
                        Ok(n)
                    }
                    (other, _) => other,
                }
            } else {
                // All the plaintext there is, in one `data_received` (as
                // CPython joins its reads).
                let mut chunk = std::mem::take(&mut *self.plain_buf.borrow_mut());
                chunk.clear();
                let mut eof = false;
                let mut last_err = None;
                loop {
                    let got = {
                        let mut conn = self.conn.borrow_mut();
                        match conn.as_mut() {
                            Some(c) => c.reader().read_to_end(&mut chunk),
                            None => Err(std::io::ErrorKind::WouldBlock.into()),
                        }
                    };
                    match got {
                        Ok(_) => {
                            eof = true;
                            break;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            // More ciphertext may fit into rustls now.
                            if self.incoming.borrow().is_empty() || self.feed().is_err() {
                                last_err = Some(e);
                                break;
                            }
                        }
                        Err(e) => {
                            last_err = Some(e);
                            break;
                        }
                    }
                }
                let outcome = if !chunk.is_empty() {
                    app.data_received(&chunk).map(|()| chunk.len())?;
                    // The end (close_notify) is seen on the next turn.
                    Ok(chunk.len())
                } else if eof {
                    Ok(0)
                } else {
                    Err(last_err.unwrap_or_else(|| std::io::ErrorKind::WouldBlock.into()))
                };
                if chunk.capacity() <= 4 * MAX_PLAINTEXT {
                    *self.plain_buf.borrow_mut() = chunk;
                }
                outcome
            };
            match got {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.incoming.borrow().is_empty() {
                        return Ok(false);
                    }
                }
                // The peer closed the connection without close_notify.
                Err(_) => return Ok(false),
            }
        }
    }

    fn read_some(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut conn = self.conn.borrow_mut();
        match conn.as_mut() {
            Some(c) => c.reader().read(buf),
            None => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn call_eof_received(&self) {
        if self.app_state.get() != AppState::ConMade {
            return;
        }
        self.app_state.set(AppState::Eof);
        let Some(app) = self.app() else { return };
        match app.eof_received() {
            Ok(true) => crate::log::warning(format_args!(
                "returning true from eof_received() has no effect when using ssl"
            )),
            Ok(false) => {}
            Err(e) if e.kind().is_exit() => self.loop_.inner.escape(e),
            Err(e) => self.fatal_error(e, "Error calling eof_received()"),
        }
    }

    fn control_ssl_reading(&self) {
        let size = self.incoming.borrow().len();
        if size >= self.incoming_high.get() && !self.ssl_reading_paused.get() {
            self.ssl_reading_paused.set(true);
            if let Some(t) = self.plain() {
                t.pause_reading();
            }
        } else if size <= self.incoming_low.get() && self.ssl_reading_paused.get() {
            self.ssl_reading_paused.set(false);
            if let Some(t) = self.plain() {
                t.resume_reading();
            }
        }
    }

    // ===== bytes out =====

    /// Moves rustls's pending records to the transport (kept while the
    /// transport paused writing), then applies the application's marks.
    fn flush_outgoing(&self) {
        {
            let mut conn = self.conn.borrow_mut();
            if let Some(conn) = conn.as_mut() {
                let mut out = self.outgoing.borrow_mut();
                while conn.wants_write() {
                    if conn.write_tls(&mut *out).is_err() {
                        break;
                    }
                }
            }
        }
        if !self.ssl_writing_paused.get() && !self.outgoing.borrow().is_empty() {
            let data = std::mem::take(&mut *self.outgoing.borrow_mut());
            if let Some(t) = self.plain() {
                if let Err(e) = t.write(&data) {
                    self.fatal_error(e, "Fatal error on SSL protocol");
                }
            }
            let mut out = self.outgoing.borrow_mut();
            if out.is_empty() {
                // Keep the allocation for the next records.
                let mut data = data;
                data.clear();
                *out = data;
            }
        }
        self.control_app_writing();
    }

    fn write_appdata(&self, data: &[u8]) {
        if matches!(
            self.state.get(),
            State::Flushing | State::Shutdown | State::Unwrapped
        ) {
            if self.conn_lost.get() >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                crate::log::warning(format_args!("SSL connection is closed"));
            }
            self.conn_lost.set(self.conn_lost.get() + 1);
            return;
        }
        if self.state.get() == State::Wrapped && self.write_backlog_size.get() == 0 {
            let written = self
                .conn
                .borrow_mut()
                .as_mut()
                .map(|c| c.writer().write_all(data));
            if let Some(Err(e)) = written {
                self.fatal_error(Error::from(e), "Fatal error on SSL protocol");
                return;
            }
            self.flush_outgoing();
            return;
        }
        self.write_backlog.borrow_mut().push_back(data.to_vec());
        self.write_backlog_size
            .set(self.write_backlog_size.get() + data.len());
        if self.state.get() == State::Wrapped {
            self.do_write();
        } else {
            self.control_app_writing();
        }
    }

    /// `_do_write`: the backlog into rustls, then out.
    fn do_write(&self) {
        let chunks: Vec<Vec<u8>> = self.write_backlog.borrow_mut().drain(..).collect();
        self.write_backlog_size.set(0);
        {
            let mut conn = self.conn.borrow_mut();
            if let Some(conn) = conn.as_mut() {
                for chunk in &chunks {
                    let _ = conn.writer().write_all(chunk);
                }
            }
        }
        self.flush_outgoing();
    }

    fn write_buffer_size(&self) -> usize {
        self.outgoing.borrow().len() + self.write_backlog_size.get()
    }

    fn control_app_writing(&self) {
        let size = self.write_buffer_size();
        if size >= self.outgoing_high.get() && !self.app_writing_paused.get() {
            self.app_writing_paused.set(true);
            if let Some(app) = self.app() {
                if let Err(e) = app.pause_writing() {
                    self.report_flow_error("protocol.pause_writing() failed", e);
                }
            }
        } else if size <= self.outgoing_low.get() && self.app_writing_paused.get() {
            self.app_writing_paused.set(false);
            if let Some(app) = self.app() {
                if let Err(e) = app.resume_writing() {
                    self.report_flow_error("protocol.resume_writing() failed", e);
                }
            }
        }
    }

    fn report_flow_error(&self, message: &str, e: Error) {
        if e.kind().is_exit() {
            self.loop_.inner.escape(e);
            return;
        }
        let mut ctx = ExceptionContext::new(message);
        ctx.exception = Some(e);
        if let Some(t) = self.app_transport.borrow().as_ref() {
            ctx.set("transport", ContextValue::Text(format!("{t:?}")));
        }
        ctx.set("protocol", ContextValue::Text(format!("{self:?}")));
        self.loop_.call_exception_handler(ctx);
    }

    // ===== shutdown =====

    fn start_shutdown(&self) {
        if matches!(
            self.state.get(),
            State::Flushing | State::Shutdown | State::Unwrapped
        ) {
            return;
        }
        if let Some(t) = self.app_transport.borrow().as_ref() {
            t.closed.set(true);
        }
        if self.state.get() == State::DoHandshake {
            self.abort(None);
            return;
        }
        self.state.set(State::Flushing);
        let weak = self.this.clone();
        if let Ok(h) = self
            .loop_
            .call_later(self.params.shutdown_timeout, move || {
                if let Some(p) = weak.upgrade() {
                    p.check_shutdown_timeout();
                }
            })
        {
            *self.shutdown_timer.borrow_mut() = Some(h);
        }
        self.do_flush();
    }

    fn check_shutdown_timeout(&self) {
        if matches!(self.state.get(), State::Flushing | State::Shutdown) {
            *self.fatal_exc.borrow_mut() = Some(Error::new(
                ErrorKind::TimeoutError,
                "SSL shutdown timed out",
            ));
            if let Some(t) = self.plain() {
                t.abort();
            }
        }
    }

    fn do_flush(&self) {
        self.do_read();
        if self.state.get() == State::Unwrapped {
            return;
        }
        self.do_write();
        self.state.set(State::Shutdown);
        self.do_shutdown();
    }

    /// Sends close_notify; done once the peer's came (or the stream ended).
    fn do_shutdown(&self) {
        // What already arrived may hold the peer's close_notify; records
        // after our own shutdown started are dropped (CPython's unwrap()).
        loop {
            if let Err(e) = self.feed() {
                self.on_shutdown_complete(Some(e));
                return;
            }
            while matches!(self.read_some(&mut [0u8; 4096]), Ok(n) if n > 0) {}
            if self.incoming.borrow().is_empty() || self.peer_closed.get() {
                break;
            }
        }
        self.incoming.borrow_mut().clear();
        self.control_ssl_reading();
        // After the peer's EOF nothing is sent (CPython skips unwrap()).
        if !self.plain_eof.get() && !self.close_notify_sent.replace(true) {
            if let Some(c) = self.conn.borrow_mut().as_mut() {
                c.send_close_notify();
            }
            self.flush_outgoing();
        }
        if self.peer_closed.get() || self.plain_eof.get() {
            self.call_eof_received();
            self.on_shutdown_complete(None);
        }
    }

    fn on_shutdown_complete(&self, exc: Option<Error>) {
        let timer = self.shutdown_timer.borrow_mut().take();
        if let Some(t) = timer {
            t.cancel();
        }
        if let Some(e) = exc {
            self.fatal_error(e, "Fatal error on SSL protocol");
        } else if let Some(t) = self.plain() {
            let _ = self.loop_.call_soon(move || t.close());
        }
    }

    fn abort(&self, exc: Option<Error>) {
        self.state.set(State::Unwrapped);
        if let Some(e) = exc {
            *self.fatal_exc.borrow_mut() = Some(e);
        }
        if let Some(t) = self.plain() {
            t.abort();
        }
    }
}

impl fmt::Debug for SslProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<asyncio.sslproto.SSLProtocol object at {:p}>",
            self as *const SslProtocol
        )
    }
}

impl BaseProtocol for SslProtocol {
    /// The plain connection is gone: the application protocol hears of it
    /// (if it was connected), and a pending handshake fails.
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        let exc = exc.or_else(|| self.fatal_exc.borrow_mut().take());
        self.write_backlog.borrow_mut().clear();
        self.write_backlog_size.set(0);
        self.outgoing.borrow_mut().clear();
        self.conn_lost.set(self.conn_lost.get() + 1);
        if let Some(t) = self.app_transport.borrow().as_ref() {
            t.closed.set(true);
        }
        let handshaking = self.state.get() == State::DoHandshake;
        if !handshaking && matches!(self.app_state.get(), AppState::ConMade | AppState::Eof) {
            self.app_state.set(AppState::ConLost);
            if let Some(app) = self.app() {
                let e = exc.clone();
                let _ = self.loop_.call_soon(move || app.connection_lost(e));
            }
        }
        self.state.set(State::Unwrapped);
        let transport = self.transport.borrow_mut().take();
        let app_transport = self.app_transport.borrow_mut().take();
        let app = self.app_protocol.borrow_mut().take();
        drop((transport, app_transport, app));
        let lost =
            exc.unwrap_or_else(|| Error::os_subclass("ConnectionResetError", "Connection lost"));
        self.wakeup_waiter(Some(lost));
        for timer in [&self.handshake_timer, &self.shutdown_timer] {
            let t = timer.borrow_mut().take();
            if let Some(t) = t {
                t.cancel();
            }
        }
        *self.conn.borrow_mut() = None;
        Ok(())
    }

    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        self.ssl_writing_paused.set(true);
        Ok(())
    }

    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        self.ssl_writing_paused.set(false);
        self.flush_outgoing();
        Ok(())
    }
}

impl Protocol for SslProtocol {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        *self.transport.borrow_mut() = Some(transport);
        self.start_handshake();
        Ok(())
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        self.incoming.borrow_mut().extend_from_slice(data);
        match self.state.get() {
            State::DoHandshake => self.do_handshake(),
            State::Wrapped | State::Flushing => self.do_read(),
            State::Shutdown => self.do_shutdown(),
            State::Unwrapped => self.incoming.borrow_mut().clear(),
        }
        self.control_ssl_reading();
        Ok(())
    }

    fn eof_received(self: &Rc<Self>) -> Result<bool> {
        self.plain_eof.set(true);
        if self.loop_.get_debug() {
            crate::log::debug(format_args!("{self:?} received EOF"));
        }
        match self.state.get() {
            State::DoHandshake => {
                self.on_handshake_complete(Some(Error::os_subclass("ConnectionResetError", "")));
            }
            State::Wrapped => {
                self.state.set(State::Flushing);
                if self.app_reading_paused.get() {
                    return Ok(true);
                }
                self.do_flush();
            }
            State::Flushing => {
                self.do_write();
                self.state.set(State::Shutdown);
                self.do_shutdown();
            }
            State::Shutdown => self.do_shutdown(),
            State::Unwrapped => {}
        }
        Ok(false)
    }
}

/// CPython's `_SSLProtocolTransport`: the plaintext transport the
/// application protocol of a TLS connection gets.
///
/// It reaches its TLS layer weakly: the layer lives as long as the plain
/// transport holds it, so an application protocol that keeps its transport
/// makes no reference cycle; once the connection is gone the calls do
/// nothing. What the TLS layer itself tells (`sslcontext`, `ssl_object`,
/// `peercert`, `cipher`) it keeps, as CPython's `_extra`: it is still there
/// in `connection_lost` and after.
pub struct SslTransport {
    protocol: Weak<SslProtocol>,
    closed: Cell<bool>,
    context: SslContext,
    ssl_object: Rc<RefCell<Option<SslObject>>>,
}

impl fmt::Debug for SslTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<asyncio.sslproto._SSLProtocolTransport object at {:p}>",
            self as *const SslTransport
        )
    }
}

/// CPython's `add_flowcontrol_defaults`: `default` when neither mark is given.
fn marks(high: Option<usize>, low: Option<usize>, default: usize) -> Result<(usize, usize)> {
    let high = if high.is_none() && low.is_none() {
        Some(default)
    } else {
        high
    };
    check_write_buffer_limits(high, low)
}

impl SslTransport {
    fn layer(&self) -> Option<Rc<SslProtocol>> {
        self.protocol.upgrade()
    }

    /// `get_read_buffer_size()`: ciphertext received and not decrypted yet.
    pub fn get_read_buffer_size(&self) -> usize {
        self.layer().map_or(0, |p| p.incoming.borrow().len())
    }

    /// `set_read_buffer_limits(high, low)`: when the plain transport's
    /// reading pauses (default 256 KiB and a quarter).
    ///
    /// Errors: as [`WriteTransport::set_write_buffer_limits`].
    pub fn set_read_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let (high, low) = marks(high, low, HIGH_WATER_SSL_READ)?;
        if let Some(p) = self.layer() {
            p.incoming_high.set(high);
            p.incoming_low.set(low);
            p.control_ssl_reading();
        }
        Ok(())
    }

    /// `get_read_buffer_limits()`: `(low, high)`.
    pub fn get_read_buffer_limits(&self) -> (usize, usize) {
        self.layer()
            .map_or((0, 0), |p| (p.incoming_low.get(), p.incoming_high.get()))
    }
}

impl BaseTransport for SslTransport {
    /// The TLS layer's own information (kept after the connection is
    /// gone), then the plain transport's (`None` once it is gone).
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        let ssl_object = self.ssl_object.borrow();
        match name {
            "sslcontext" => Some(ExtraInfo::SslContext(self.context.clone())),
            "ssl_object" => ssl_object.clone().map(ExtraInfo::SslObject),
            "peercert" => ssl_object
                .as_ref()
                .and_then(|o| o.getpeercert().cloned())
                .map(ExtraInfo::PeerCert),
            "cipher" => ssl_object
                .as_ref()
                .and_then(|o| o.cipher().cloned())
                .map(ExtraInfo::Cipher),
            "compression" => None,
            _ => self
                .layer()
                .and_then(|p| p.plain())
                .and_then(|t| t.get_extra_info(name)),
        }
    }

    fn is_closing(&self) -> bool {
        self.closed.get()
    }

    /// Flushes what was written, sends close_notify and closes the
    /// connection once the peer answered (or the shutdown timeout passed).
    fn close(&self) {
        if !self.closed.replace(true) {
            if let Some(p) = self.layer() {
                p.start_shutdown();
            }
        }
    }
}

impl ReadTransport for SslTransport {
    fn is_reading(&self) -> bool {
        self.layer().is_some_and(|p| !p.app_reading_paused.get())
    }

    fn pause_reading(&self) {
        if let Some(p) = self.layer() {
            p.app_reading_paused.set(true);
        }
    }

    fn resume_reading(&self) {
        let Some(p) = self.layer() else { return };
        if p.app_reading_paused.replace(false) {
            let weak = p.this.clone();
            let _ = p.loop_.call_soon(move || {
                if let Some(p) = weak.upgrade() {
                    p.do_read();
                    match p.state.get() {
                        State::Flushing if p.plain_eof.get() => p.do_flush(),
                        State::Shutdown => p.do_shutdown(),
                        _ => {}
                    }
                }
            });
        }
    }
}

impl WriteTransport for SslTransport {
    /// The marks of the plaintext side (default 512 KiB and a quarter),
    /// counting what waits in this layer and ciphertext the plain transport
    /// did not take yet.
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let (high, low) = marks(high, low, HIGH_WATER_SSL_WRITE)?;
        if let Some(p) = self.layer() {
            p.outgoing_high.set(high);
            p.outgoing_low.set(low);
            p.control_app_writing();
        }
        Ok(())
    }

    fn get_write_buffer_size(&self) -> usize {
        self.layer().map_or(0, |p| p.write_buffer_size())
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.layer()
            .map_or((0, 0), |p| (p.outgoing_low.get(), p.outgoing_high.get()))
    }

    fn write(&self, data: &[u8]) -> Result<()> {
        if !data.is_empty() {
            if let Some(p) = self.layer() {
                p.write_appdata(data);
            }
        }
        Ok(())
    }

    /// Errors: a bare `NotImplementedError` (a `RuntimeError`), as in
    /// CPython: TLS has no half-close.
    fn write_eof(&self) -> Result<()> {
        Err(Error::bare(ErrorKind::RuntimeError).named("NotImplementedError"))
    }

    fn can_write_eof(&self) -> bool {
        false
    }

    /// Closes at once: no close_notify.
    fn abort(&self) {
        self.closed.set(true);
        if let Some(p) = self.layer() {
            p.abort(None);
        }
    }

    /// TLS cannot use `sendfile(2)`: `loop.sendfile` reads and writes.
    fn sendfile_mode(&self) -> crate::transports::SendfileMode {
        crate::transports::SendfileMode::Fallback
    }

    fn is_protocol_paused(&self) -> bool {
        self.layer().is_some_and(|p| p.app_writing_paused.get())
    }
}

impl Transport for SslTransport {
    fn set_protocol(&self, protocol: StreamProtocolRef) {
        if let Some(p) = self.layer() {
            *p.app_protocol.borrow_mut() = Some(protocol);
        }
    }

    fn get_protocol(&self) -> Option<StreamProtocolRef> {
        self.layer().and_then(|p| p.app())
    }
}
