//! The datagram transport (CPython's `_SelectorDatagramTransport`).
//!
//! Driven like the stream transport: readiness from Tokio's reactor wakes
//! the transport's loop registration, and `run` reads the datagrams waiting
//! (up to 32, as libuv does; CPython's selector loop reads one per
//! iteration) and flushes the send buffer.
//! Datagrams are read into the loop's shared read buffer and lent to
//! `datagram_received`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use asyncio_core::base_events::{
    DatagramEndpointOptions, DatagramProtocolFactory, SocketAddressArg,
};
use asyncio_core::protocols::DatagramProtocolRef;
use asyncio_core::socket::{
    family_name, Socket, AF_INET, AF_INET6, AF_UNIX, IPPROTO_UDP, SOCK_DGRAM, SOCK_STREAM,
};
use asyncio_core::transports::{Address, BaseTransport, DatagramTransport, ExtraInfo};
use asyncio_core::{Error, ErrorKind, EventLoop, Future, Registration, Result, Schedulable};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};

use crate::selector_events::{ReadBuffer, SocketInfo, MAX_READ};
use crate::transport_support::{
    callback_failed, flow_called, io_when_ready, report, warn_unclosed, FlowControl,
};

/// The most datagrams read at one wake-up (libuv's `uv__udp_recvmsg`
/// bound).
const MAX_DATAGRAMS_PER_WAKE: usize = 32;
/// glibc's `EAI_ADDRFAMILY` (not in the `libc` crate).
const EAI_ADDRFAMILY: i32 = -9;
/// Sends dropped after the endpoint is lost start warning at this count.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;
/// What a buffered datagram adds to the buffer size besides its bytes
/// (CPython's "include header bytes").
const DATAGRAM_HEADER: usize = 8;

/// Resolves when the socket has a pending error (`EPOLLERR` without
/// `EPOLLIN`: the ICMP error of a connected UDP socket).
type ErrorWatch = Pin<Box<dyn std::future::Future<Output = ()>>>;

struct State {
    sock: Option<Rc<AsyncFd<Socket>>>,
    /// The socket's liveness token for `TransportSocket`s handed out.
    alive: Option<Rc<()>>,
    buffer: VecDeque<(Vec<u8>, Option<Address>)>,
    buffer_size: usize,
    closing: bool,
    conn_lost: u32,
    /// The reader was added (after `connection_made`).
    reader_added: bool,
    protocol_connected: bool,
}

impl State {
    fn reader_active(&self) -> bool {
        self.reader_added && !self.closing && self.conn_lost == 0 && self.sock.is_some()
    }
}

/// The transport of a UDP or Unix datagram socket.
pub(crate) struct DatagramSocketTransport {
    this: Weak<DatagramSocketTransport>,
    loop_: EventLoop,
    registration: Registration,
    read_buffer: ReadBuffer,
    state: RefCell<State>,
    protocol: RefCell<Option<DatagramProtocolRef>>,
    info: SocketInfo,
    /// The remote address of an endpoint made with `remote_addr`.
    address: Option<Address>,
    /// Set for a connected socket once reading starts.
    error_watch: RefCell<Option<ErrorWatch>>,
    flow: FlowControl,
}

impl DatagramSocketTransport {
    /// Wraps `sock` (non-blocking already); `connection_made` is
    /// scheduled, reading starts after it, then `waiter` gets its result.
    pub(crate) fn start(
        loop_: &EventLoop,
        sock: Socket,
        protocol: DatagramProtocolRef,
        address: Option<Address>,
        read_buffer: ReadBuffer,
        waiter: Option<Future<()>>,
    ) -> Result<Rc<DatagramSocketTransport>> {
        let info = SocketInfo::of(&sock);
        let sock = crate::base_events::in_runtime(loop_, || {
            // SAFETY: the `Socket` owns its descriptor, open for as long as
            // the `AsyncFd` holds it.
            unsafe { AsyncFd::register(sock) }
        })
        .map_err(|e| Error::from(e.into_parts().1))?;
        let registration = loop_.new_registration()?;
        let transport = Rc::new_cyclic(|this| DatagramSocketTransport {
            this: this.clone(),
            loop_: loop_.non_owning(),
            registration,
            read_buffer,
            state: RefCell::new(State {
                sock: Some(Rc::new(sock)),
                alive: Some(Rc::new(())),
                buffer: VecDeque::new(),
                buffer_size: 0,
                closing: false,
                conn_lost: 0,
                reader_added: false,
                protocol_connected: true,
            }),
            flow: FlowControl::default(),
            protocol: RefCell::new(Some(protocol)),
            info,
            address,
            error_watch: RefCell::new(None),
        });
        transport
            .registration
            .activate(transport.clone() as Rc<dyn Schedulable>);
        if let Some(t) = loop_.implementation::<crate::TokioEventLoop>() {
            let owner: Weak<dyn crate::fd_events::FdOwner> = transport.this.clone();
            t.fds().add_transport(transport.info.fd, owner);
        }
        let t = transport.clone();
        loop_.call_soon(move || t.connection_made())?;
        let t = transport.clone();
        loop_.call_soon(move || t.add_reader())?;
        if let Some(waiter) = waiter {
            loop_.call_soon(move || {
                if !waiter.done() {
                    let _ = waiter.set_result(());
                }
            })?;
        }
        Ok(transport)
    }

    fn current_protocol(&self) -> Option<DatagramProtocolRef> {
        self.protocol.borrow().clone()
    }

    fn connection_made(&self) -> Result<()> {
        let (Some(protocol), Some(me)) = (self.current_protocol(), self.this.upgrade()) else {
            return Ok(());
        };
        protocol.connection_made(me)
    }

    fn add_reader(&self) {
        {
            let mut st = self.state.borrow_mut();
            if st.closing {
                return;
            }
            st.reader_added = true;
        }
        self.watch_errors();
        self.registration.schedule();
    }

    /// Readiness tells reads from errors apart, and a connected UDP
    /// socket's ICMP error ("port unreachable") raises `EPOLLERR` only: it
    /// is read (and given to `error_received`) when it comes, as CPython's
    /// selector, which takes an error for readability, does.
    fn watch_errors(&self) {
        if self.info.peername.is_none() {
            return;
        }
        let Some(sock) = self.state.borrow().sock.clone() else {
            return;
        };
        let watch: ErrorWatch = Box::pin(async move {
            if let Ok(mut guard) = sock.ready(Interest::ERROR).await {
                guard.clear_ready_matching(Ready::ERROR);
            }
        });
        *self.error_watch.borrow_mut() = Some(watch);
    }

    /// Polls the error watch; on a pending error, reads it.
    fn error_ready(&self) {
        let fired = {
            let mut watch = self.error_watch.borrow_mut();
            let Some(w) = watch.as_mut() else {
                return;
            };
            let mut cx = Context::from_waker(self.registration.waker());
            w.as_mut().poll(&mut cx).is_ready()
        };
        if !fired || !self.state.borrow().reader_active() {
            return;
        }
        self.watch_errors();
        // SO_ERROR takes the error as the next receive would, and leaves
        // any queued datagram alone.
        let pending = {
            let st = self.state.borrow();
            let Some(sock) = st.sock.as_ref() else {
                return;
            };
            sock.get_ref().take_error()
        };
        if let Ok(Some(e)) | Err(e) = pending {
            if let Some(p) = self.current_protocol() {
                if let Err(e) = p.error_received(Error::from(e)) {
                    self.callback_failed("_read_ready", e);
                }
            }
        }
        self.registration.schedule();
    }

    // ----- errors and closing -----

    fn callback_failed(&self, callback: &str, exc: Error) {
        callback_failed(&self.loop_, "_SelectorDatagramTransport", callback, exc);
    }

    /// CPython's `_fatal_error`: report (unless an `OSError`), then
    /// force-close.
    fn fatal_error(&self, exc: Error, message: &str) {
        if exc.kind() == ErrorKind::OSError {
            if self.loop_.get_debug() {
                tracing::debug!(target: "asyncio", "{:?}: {}", self, message);
            }
        } else {
            let protocol = self.current_protocol();
            let protocol = protocol.as_ref().map(|p| p as &dyn fmt::Debug);
            report(&self.loop_, message, exc.clone(), self, protocol);
        }
        self.force_close(Some(exc));
    }

    fn force_close(&self, exc: Option<Error>) {
        {
            let mut st = self.state.borrow_mut();
            if st.conn_lost > 0 {
                return;
            }
            st.buffer.clear();
            st.buffer_size = 0;
            st.closing = true;
            st.conn_lost += 1;
        }
        self.schedule_connection_lost(exc);
    }

    fn schedule_connection_lost(&self, exc: Option<Error>) {
        if let Some(me) = self.this.upgrade() {
            if self
                .loop_
                .call_soon(move || me.call_connection_lost(exc))
                .is_err()
            {
                self.release();
            }
        }
    }

    fn call_connection_lost(&self, exc: Option<Error>) -> Result<()> {
        let connected = self.state.borrow().protocol_connected;
        let outcome = match (connected, self.current_protocol()) {
            (true, Some(p)) => p.connection_lost(exc),
            _ => Ok(()),
        };
        self.release();
        outcome
    }

    /// Closes the socket and forgets the protocol.
    fn release(&self) {
        let (sock, alive) = {
            let mut st = self.state.borrow_mut();
            st.protocol_connected = false;
            (st.sock.take(), st.alive.take())
        };
        drop(alive);
        if sock.is_some() {
            if let Some(t) = self.loop_.implementation::<crate::TokioEventLoop>() {
                t.fds().forget_transport(self.info.fd);
            }
        }
        // The error watch holds the socket too.
        self.error_watch.borrow_mut().take();
        drop(sock);
        let protocol = self.protocol.borrow_mut().take();
        drop(protocol);
        self.registration.unregister();
    }

    // ----- reading -----

    /// CPython's `_read_ready`, draining: every datagram ready at a wake-up
    /// is read, up to [`MAX_DATAGRAMS_PER_WAKE`] (libuv's bound), so that
    /// one busy socket cannot starve the loop; the rest waits for the next
    /// iteration.
    fn read_ready(&self) {
        for _ in 0..MAX_DATAGRAMS_PER_WAKE {
            if !self.state.borrow().reader_active() {
                return;
            }
            if !self.read_one() {
                return;
            }
        }
        let st = self.state.borrow();
        if st.reader_active() {
            if let Some(sock) = st.sock.as_ref() {
                let mut cx = Context::from_waker(self.registration.waker());
                if sock.poll_read_ready(&mut cx).is_ready() {
                    drop(st);
                    self.registration.schedule();
                }
            }
        }
    }

    /// One `recvfrom` and its callback; `false` when the socket had
    /// nothing (the waker is registered then).
    fn read_one(&self) -> bool {
        let mut shared = self.read_buffer.try_borrow_mut().ok();
        let mut fallback = Vec::new();
        let buf: &mut [u8] = match shared.as_mut() {
            Some(b) => b.as_mut_slice(),
            None => {
                fallback.resize(MAX_READ, 0);
                &mut fallback[..]
            }
        };
        let received = {
            let st = self.state.borrow();
            let Some(sock) = st.sock.as_ref() else {
                return false;
            };
            let mut cx = Context::from_waker(self.registration.waker());
            io_when_ready(sock, &mut cx, true, |s| s.recvfrom_into(buf))
        };
        let Some(received) = received else {
            return false;
        };
        let Some(protocol) = self.current_protocol() else {
            return false;
        };
        let outcome = match received {
            Ok((n, addr)) => protocol.datagram_received(&buf[..n], addr),
            Err(e) => {
                drop(shared);
                protocol.error_received(Error::from(e))
            }
        };
        if let Err(e) = outcome {
            self.callback_failed("_read_ready", e);
        }
        true
    }

    // ----- writing -----

    /// Sends one datagram: to the peer on a connected endpoint, else to
    /// `addr`.
    fn send_one(&self, sock: &Socket, data: &[u8], addr: Option<&Address>) -> Result<()> {
        match addr {
            _ if self.info.peername.is_some() => sock.send(data).map(drop).map_err(Error::from),
            Some(addr) => sock.sendto(data, addr).map(drop),
            None => Err(self.missing_address()),
        }
    }

    /// Python's `sock.sendto(data, None)` on an unconnected socket.
    fn missing_address(&self) -> Error {
        let message = if self.info.family == AF_UNIX {
            "a bytes-like object is required, not 'NoneType'".to_owned()
        } else {
            let family = family_name(self.info.family);
            let family = family.trim_start_matches("AddressFamily.");
            format!("sendto(): {family} address must be tuple, not NoneType")
        };
        Error::type_error(message)
    }

    /// Sends one datagram if the socket is writable: `None` when it is not
    /// (the waker is registered then).
    fn send_ready(
        &self,
        sock: &AsyncFd<Socket>,
        data: &[u8],
        addr: Option<&Address>,
    ) -> Option<Result<()>> {
        let mut cx = Context::from_waker(self.registration.waker());
        loop {
            let mut guard = match sock.poll_write_ready(&mut cx) {
                Poll::Pending => return None,
                Poll::Ready(Err(e)) => return Some(Err(Error::from(e))),
                Poll::Ready(Ok(guard)) => guard,
            };
            match self.send_one(sock.get_ref(), data, addr) {
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => guard.clear_ready(),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                outcome => return Some(outcome),
            }
        }
    }

    /// CPython's `_sendto_ready`: sends the buffered datagrams while the
    /// socket takes them.
    fn write_ready(&self) {
        loop {
            let sent = {
                let mut st = self.state.borrow_mut();
                if st.conn_lost > 0 {
                    return;
                }
                let Some((data, addr)) = st.buffer.pop_front() else {
                    break;
                };
                st.buffer_size -= (data.len() + DATAGRAM_HEADER).min(st.buffer_size);
                let Some(sock) = st.sock.as_ref() else {
                    return;
                };
                let sent = self.send_ready(sock, &data, addr.as_ref());
                if sent.is_none() {
                    // Not writable: back in front until the wake.
                    st.buffer_size += data.len() + DATAGRAM_HEADER;
                    st.buffer.push_front((data, addr));
                    return;
                }
                sent
            };
            match sent {
                None | Some(Ok(())) => {}
                Some(Err(e)) if e.kind() == ErrorKind::OSError => {
                    if let Some(p) = self.current_protocol() {
                        if let Err(e) = p.error_received(e) {
                            self.callback_failed("_sendto_ready", e);
                        }
                    }
                    return;
                }
                Some(Err(e)) => {
                    self.fatal_error(e, "Fatal write error on datagram transport");
                    return;
                }
            }
        }
        self.maybe_resume_protocol();
        let finish = {
            let mut st = self.state.borrow_mut();
            let finish = st.buffer.is_empty() && st.closing && st.conn_lost == 0;
            if finish {
                st.conn_lost += 1;
            }
            finish
        };
        if finish {
            if let Err(e) = self.call_connection_lost(None) {
                self.callback_failed("_sendto_ready", e);
            }
        }
    }

    fn maybe_pause_protocol(&self) {
        if self.flow.should_pause(self.get_write_buffer_size()) {
            self.deliver_flow(true);
        }
    }

    fn maybe_resume_protocol(&self) {
        if self.flow.should_resume(self.get_write_buffer_size()) {
            self.deliver_flow(false);
        }
    }

    fn deliver_flow(&self, pause: bool) {
        if let Some(p) = self.current_protocol() {
            let called = if pause {
                p.pause_writing()
            } else {
                p.resume_writing()
            };
            flow_called(&self.loop_, pause, called, self, &p);
        }
    }
}

impl Schedulable for DatagramSocketTransport {
    fn run(self: Rc<Self>) {
        self.error_ready();
        self.read_ready();
        if !self.state.borrow().buffer.is_empty() {
            self.write_ready();
        }
    }

    fn abandon(self: Rc<Self>) {
        let open = self
            .state
            .try_borrow()
            .map(|st| st.sock.is_some())
            .unwrap_or(false);
        if open {
            warn_unclosed(&self.loop_, &*self);
        }
        self.release();
    }
}

impl BaseTransport for DatagramSocketTransport {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        self.info
            .extra_info(name, self.state.borrow().alive.as_ref())
    }

    fn is_closing(&self) -> bool {
        self.state.borrow().closing
    }

    fn close(&self) {
        let lost = {
            let mut st = self.state.borrow_mut();
            if st.closing {
                return;
            }
            st.closing = true;
            if st.buffer.is_empty() {
                st.conn_lost += 1;
                true
            } else {
                false
            }
        };
        if lost {
            self.schedule_connection_lost(None);
        }
    }
}

impl DatagramTransport for DatagramSocketTransport {
    fn sendto(&self, data: &[u8], addr: Option<Address>) -> Result<()> {
        let mut addr = addr;
        if let Some(peer) = &self.address {
            if addr.as_ref().is_some_and(|a| a != peer) {
                return Err(Error::value(format!(
                    "Invalid address: must be None or {peer:?}"
                )));
            }
            addr = Some(peer.clone());
        }
        let mut st = self.state.borrow_mut();
        if st.conn_lost > 0 {
            if st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                asyncio_core::log::warning(format_args!("socket.send() raised exception."));
            }
            st.conn_lost += 1;
            return Ok(());
        }
        if st.buffer.is_empty() {
            let Some(sock) = st.sock.as_ref() else {
                return Ok(());
            };
            match self.send_one(sock.get_ref(), data, addr.as_ref()) {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.raw_os_error()
                        .is_some_and(|n| n == libc::EAGAIN || n == libc::EINTR) =>
                {
                    // Buffer it; the registration's wake sends it. Tokio's
                    // readiness is cleared so that the wake is for new room.
                    let mut cx = Context::from_waker(self.registration.waker());
                    if let Poll::Ready(Ok(mut guard)) = sock.poll_write_ready(&mut cx) {
                        guard.clear_ready();
                        if sock.poll_write_ready(&mut cx).is_ready() {
                            self.registration.schedule();
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::OSError => {
                    drop(st);
                    return match self.current_protocol() {
                        Some(p) => p.error_received(e),
                        None => Ok(()),
                    };
                }
                Err(e) if e.kind() == ErrorKind::TypeError => {
                    drop(st);
                    self.fatal_error(e, "Fatal write error on datagram transport");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        st.buffer.push_back((data.to_vec(), addr));
        st.buffer_size += data.len() + DATAGRAM_HEADER;
        drop(st);
        self.maybe_pause_protocol();
        Ok(())
    }

    fn abort(&self) {
        self.force_close(None);
    }

    fn get_write_buffer_size(&self) -> usize {
        self.state.borrow().buffer_size
    }

    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        self.flow.set_limits(high, low)?;
        self.maybe_pause_protocol();
        Ok(())
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.flow.limits()
    }
}

impl fmt::Debug for DatagramSocketTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(st) = self.state.try_borrow() else {
            return f.write_str("<_SelectorDatagramTransport>");
        };
        let mut info = vec!["_SelectorDatagramTransport".to_owned()];
        if st.sock.is_none() {
            info.push("closed".to_owned());
        } else if st.closing {
            info.push("closing".to_owned());
        }
        info.push(format!("fd={}", self.info.fd));
        if st.sock.is_some() && !self.loop_.is_closed() {
            let reading = if st.reader_active() {
                "polling"
            } else {
                "idle"
            };
            info.push(format!("read={reading}"));
            let writing = if st.buffer.is_empty() {
                "idle"
            } else {
                "polling"
            };
            info.push(format!("write=<{writing}, bufsize={}>", st.buffer_size));
        }
        write!(f, "<{}>", info.join(" "))
    }
}

/// `loop.create_datagram_endpoint(...)`: the algorithm of CPython's
/// `base_events.py`.
pub(crate) async fn create_datagram_endpoint(
    loop_: EventLoop,
    factory: DatagramProtocolFactory,
    opts: DatagramEndpointOptions,
) -> Result<Rc<dyn DatagramTransport>> {
    let (sock, r_addr) = match opts.sock {
        Some(fd) => {
            let sock = Socket::from(fd);
            let info = SocketInfo::of(&sock);
            if info.kind == SOCK_STREAM {
                return Err(Error::value(format!(
                    "A datagram socket was expected, got {}",
                    crate::base_events::socket_repr(&info)
                )));
            }
            let mut problems = Vec::new();
            if let Some(a) = &opts.local_addr {
                problems.push(format!("local_addr={a}"));
            }
            if let Some(a) = &opts.remote_addr {
                problems.push(format!("remote_addr={a}"));
            }
            for (name, value) in [
                ("family", opts.family),
                ("proto", opts.proto),
                ("flags", opts.flags),
            ] {
                if value != 0 {
                    problems.push(format!("{name}={value}"));
                }
            }
            for (name, value) in [
                ("reuse_port", opts.reuse_port),
                ("allow_broadcast", opts.allow_broadcast),
            ] {
                if value == Some(true) {
                    problems.push(format!("{name}=True"));
                }
            }
            if !problems.is_empty() {
                return Err(Error::value(format!(
                    "socket modifier keyword arguments can not be used when sock is specified. ({})",
                    problems.join(", ")
                )));
            }
            sock.setblocking(false)?;
            (sock, None)
        }
        None => open_endpoint_socket(&loop_, &opts).await?,
    };
    let protocol = factory()?;
    let waiter = Future::<()>::new(&loop_);
    let read_buffer = crate::base_events::read_buffer_of(&loop_)?;
    let transport = DatagramSocketTransport::start(
        &loop_,
        sock,
        protocol.clone(),
        r_addr,
        read_buffer,
        Some(waiter.clone()),
    )?;
    if loop_.get_debug() {
        let remote = opts
            .remote_addr
            .as_ref()
            .map_or("None".to_owned(), |a| format!("{a:?}"));
        match &opts.local_addr {
            Some(local) => asyncio_core::log::info(format_args!(
                "Datagram endpoint local_addr={local:?} remote_addr={remote} created: ({transport:?}, {protocol:?})"
            )),
            None => asyncio_core::log::debug(format_args!(
                "Datagram endpoint remote_addr={remote} created: ({transport:?}, {protocol:?})"
            )),
        }
    }
    if let Err(e) = (&waiter).await {
        transport.close();
        return Err(e);
    }
    Ok(transport)
}

/// Makes, configures, binds and connects the socket of an endpoint given
/// by addresses: CPython's grouping of the resolved addresses by family
/// and protocol, tried in turn (the first error raised if none works).
async fn open_endpoint_socket(
    loop_: &EventLoop,
    opts: &DatagramEndpointOptions,
) -> Result<(Socket, Option<Address>)> {
    type Pair = ((i32, i32), (Option<Address>, Option<Address>));
    let pairs: Vec<Pair> = if opts.local_addr.is_none() && opts.remote_addr.is_none() {
        if opts.family == 0 {
            return Err(Error::value("unexpected address family"));
        }
        vec![((opts.family, opts.proto), (None, None))]
    } else if opts.family == AF_UNIX {
        let mut paths = [None, None];
        for (slot, addr) in paths.iter_mut().zip([&opts.local_addr, &opts.remote_addr]) {
            match addr {
                None => {}
                Some(SocketAddressArg::Address(
                    a @ (Address::Unix(_) | Address::UnixAbstract(_)),
                )) => *slot = Some(a.clone()),
                Some(_) => return Err(Error::type_error("string is expected")),
            }
        }
        if let Some(Address::Unix(path)) = &paths[0] {
            remove_stale_socket(path);
        }
        let [local, remote] = paths;
        vec![((opts.family, opts.proto), (local, remote))]
    } else {
        let mut groups: Vec<Pair> = Vec::new();
        for (idx, addr) in [&opts.local_addr, &opts.remote_addr]
            .into_iter()
            .enumerate()
        {
            let Some(addr) = addr else {
                continue;
            };
            for (key, address) in resolve_datagram_address(loop_, addr, opts).await? {
                let at = match groups.iter().position(|(k, _)| *k == key) {
                    Some(at) => at,
                    None => {
                        groups.push((key, (None, None)));
                        groups.len() - 1
                    }
                };
                let pair = &mut groups[at].1;
                if idx == 0 {
                    pair.0 = Some(address);
                } else {
                    pair.1 = Some(address);
                }
            }
        }
        groups.retain(|(_, (local, remote))| {
            !(opts.local_addr.is_some() && local.is_none()
                || opts.remote_addr.is_some() && remote.is_none())
        });
        if groups.is_empty() {
            return Err(Error::value("can not get address information"));
        }
        groups
    };
    let mut first_error = None;
    for ((family, proto), (local, remote)) in pairs {
        match open_one(loop_, family, proto, local, remote.as_ref(), opts).await {
            Ok(sock) => return Ok((sock, remote)),
            Err(e) if e.kind() == ErrorKind::OSError => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(first_error.unwrap_or_else(|| Error::value("can not get address information")))
}

async fn open_one(
    loop_: &EventLoop,
    family: i32,
    proto: i32,
    local: Option<Address>,
    remote: Option<&Address>,
    opts: &DatagramEndpointOptions,
) -> Result<Socket> {
    let sock = Socket::new(family, SOCK_DGRAM, proto)?;
    if opts.reuse_port == Some(true) {
        sock.set_reuse_port(true).map_err(Error::from)?;
    }
    if opts.allow_broadcast == Some(true) {
        sock.set_broadcast(true).map_err(Error::from)?;
    }
    sock.setblocking(false)?;
    if let Some(local) = &local {
        sock.bind(&local.to_sockaddr()?).map_err(Error::from)?;
    }
    if let Some(remote) = remote {
        if opts.allow_broadcast != Some(true) {
            loop_.sock_connect(&sock, remote.clone()).await?;
        }
    }
    Ok(sock)
}

/// `_ensure_resolved` of one endpoint address, as `((family, proto),
/// address)` keys; an address that is not `(host, port)` is
/// `TypeError("2-tuple is expected")`.
async fn resolve_datagram_address(
    loop_: &EventLoop,
    addr: &SocketAddressArg,
    opts: &DatagramEndpointOptions,
) -> Result<Vec<((i32, i32), Address)>> {
    let (host, port) = match addr {
        SocketAddressArg::HostPort(h, p) => (h.clone(), *p),
        SocketAddressArg::Address(Address::Inet(a)) => {
            let family = if a.is_ipv4() { AF_INET } else { AF_INET6 };
            if opts.family != 0 && opts.family != family {
                return Err(Error::gaierror(
                    EAI_ADDRFAMILY,
                    "Address family for hostname not supported",
                ));
            }
            let proto = if opts.proto == 0 {
                IPPROTO_UDP
            } else {
                opts.proto
            };
            return Ok(vec![((family, proto), Address::Inet(*a))]);
        }
        SocketAddressArg::Address(_) => return Err(Error::type_error("2-tuple is expected")),
    };
    let infos = crate::dns::ensure_resolved(
        loop_,
        Some(&host),
        Some(port),
        opts.family,
        SOCK_DGRAM,
        opts.proto,
        opts.flags,
    )
    .await?;
    if infos.is_empty() {
        return Err(Error::new(
            ErrorKind::OSError,
            "getaddrinfo() returned empty list",
        ));
    }
    Ok(infos
        .into_iter()
        .map(|i| ((i.family, i.proto), i.sockaddr))
        .collect())
}

/// Removes a stale Unix socket file at `path` before binding (a failure
/// other than "not found" is logged, as CPython does).
fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    if path.as_os_str().is_empty() {
        return;
    }
    let outcome = std::fs::metadata(path).and_then(|m| {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)
        } else {
            Ok(())
        }
    });
    match outcome {
        Err(e) if e.kind() != io::ErrorKind::NotFound => asyncio_core::log::error(format_args!(
            "Unable to check or remove stale UNIX socket {:?}: {}",
            Address::Unix(path.to_path_buf()),
            crate::base_events::os_error_repr(&e)
        )),
        _ => {}
    }
}
