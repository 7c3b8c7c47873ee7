//! `create_connection`, `create_server` and their Unix variants (the
//! algorithms of CPython's `base_events.py` and `unix_events.py`), and the
//! accept loop of a listening socket.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Context, Poll};

use asyncio_core::base_events::{
    AddrInfo, ConnectionOptions, ConnectionProtocolFactory, Listener, ServerOptions,
    ServerProtocolFactory, UnixConnectionOptions, UnixServerOptions,
};
use asyncio_core::exception_context::{ContextValue, ExceptionContext};
use asyncio_core::socket::{AF_INET, AF_INET6, AF_UNIX, SOCK_STREAM};
use asyncio_core::transports::{Address, Transport, TransportSocket};
use asyncio_core::{
    Error, ErrorKind, EventLoop, Future, Registration, Result, ReturnWhen, Schedulable, Server,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::dns::ensure_resolved;
use crate::selector_events::{ReadBuffer, SocketInfo, SocketTransport, Stream};

/// How long accepting pauses after running out of descriptors, or after
/// any error but a pending connection's own (CPython's
/// `constants.ACCEPT_RETRY_DELAY`).
const ACCEPT_RETRY_DELAY: f64 = 1.0;

/// Errors `accept(2)` returns on Linux for the pending connection only
/// (its man page: "pass these errors through"): the listener is fine.
const PER_CONNECTION_ERRORS: [i32; 9] = [
    libc::ENETDOWN,
    libc::EPROTO,
    libc::ENOPROTOOPT,
    libc::EHOSTDOWN,
    libc::ENONET,
    libc::EHOSTUNREACH,
    libc::EOPNOTSUPP,
    libc::ENETUNREACH,
    libc::EPERM,
];

/// The loop implementation's shared parts a transport needs.
pub(crate) fn read_buffer_of(loop_: &EventLoop) -> Result<ReadBuffer> {
    let implementation = loop_
        .implementation::<crate::TokioEventLoop>()
        .ok_or_else(|| Error::runtime("not a TokioEventLoop"))?;
    implementation
        .read_buffer()
        .ok_or_else(|| Error::runtime("Event loop is closed"))
}

/// Runs `f` inside the loop's own Tokio runtime, so that sockets made there
/// register with its reactor — whatever loop is running at the time (a
/// server of loop B started from a task of loop A must accept on B).
pub(crate) fn in_runtime<R>(loop_: &EventLoop, f: impl FnOnce() -> R) -> R {
    let handle = loop_
        .implementation::<crate::TokioEventLoop>()
        .and_then(|t| t.runtime_handle());
    match handle {
        Some(h) => {
            let _guard = h.enter();
            f()
        }
        None => f(),
    }
}

/// The address of a Unix socket path. A NUL byte inside a file path is
/// `ValueError("embedded null byte")`, as Python's path functions say (the
/// C calls would silently use the part before it); a Linux abstract name
/// (a leading NUL) may contain any byte.
pub(crate) fn unix_sockaddr(path: &std::path::Path) -> Result<SockAddr> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.first() != Some(&0) && bytes.contains(&0) {
        return Err(Error::value("embedded null byte"));
    }
    SockAddr::unix(path).map_err(Error::from)
}

/// Python's `repr()` of a socket, for error messages.
pub(crate) fn socket_repr(info: &SocketInfo) -> String {
    let mut s = format!(
        "<socket.socket fd={}, family={}, type={}, proto={}",
        info.fd, info.family, info.kind, info.proto
    );
    if let Some(l) = &info.sockname {
        s.push_str(&format!(", laddr={}", l.socket_repr()));
    }
    if let Some(r) = &info.peername {
        s.push_str(&format!(", raddr={}", r.socket_repr()));
    }
    s.push('>');
    s
}

fn check_no_tls(
    server_hostname: &Option<String>,
    handshake: Option<f64>,
    shutdown: Option<f64>,
) -> Result<()> {
    if server_hostname.is_some() {
        return Err(Error::value("server_hostname is only meaningful with ssl"));
    }
    if handshake.is_some() {
        return Err(Error::value(
            "ssl_handshake_timeout is only meaningful with ssl",
        ));
    }
    if shutdown.is_some() {
        return Err(Error::value(
            "ssl_shutdown_timeout is only meaningful with ssl",
        ));
    }
    Ok(())
}

/// `OSError(errno, message)` keeping the original errno.
fn os_error(e: &io::Error, message: String) -> Error {
    match e.raw_os_error() {
        Some(errno) => Error::os_with_message(io::Error::from_raw_os_error(errno), message),
        None => Error::os_with_message(io::Error::new(e.kind(), e.to_string()), message),
    }
}

/// Python's `str(exc.strerror).lower()` with its `[errno N]` prefix, as
/// 3.13 prints it in bind errors.
/// Python's `repr()` of the `OSError` for `e`: `NotADirectoryError(20, 'Not a directory')`.
pub(crate) fn os_error_repr(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let err = Error::from(io::Error::from_raw_os_error(n));
            let text = err.to_string();
            let strerror = text.split_once("] ").map_or(text.as_str(), |(_, t)| t);
            format!("{}({n}, '{strerror}')", err.python_name())
        }
        None => format!("OSError('{e}')"),
    }
}

/// `except FileNotFoundError: pass`.
trait FilterNotFound {
    fn filter_not_found(self) -> io::Result<()>;
}

impl FilterNotFound for io::Result<()> {
    fn filter_not_found(self) -> io::Result<()> {
        match self {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

fn lower_os_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!(
            "[errno {n}] {}",
            Error::from(io::Error::from_raw_os_error(n))
                .to_string()
                .split_once("] ")
                .map(|(_, t)| t.to_lowercase())
                .unwrap_or_default()
        ),
        None => e.to_string().to_lowercase(),
    }
}

fn stream_from_fd(fd: OwnedFd) -> Result<(Stream, SocketInfo)> {
    let sock = Socket::from(fd);
    let info = SocketInfo::of(&sock);
    if info.kind != SOCK_STREAM {
        return Err(Error::value(format!(
            "A Stream Socket was expected, got {}",
            socket_repr(&info)
        )));
    }
    sock.set_nonblocking(true).map_err(Error::from)?;
    let stream = if info.family == AF_UNIX {
        let std: std::os::unix::net::UnixStream = OwnedFd::from(sock).into();
        Stream::Unix(UnixStream::from_std(std).map_err(Error::from)?)
    } else {
        let std: std::net::TcpStream = OwnedFd::from(sock).into();
        Stream::Tcp(TcpStream::from_std(std).map_err(Error::from)?)
    };
    Ok((stream, info))
}

/// Makes the protocol and transport for a connected stream and waits for
/// `connection_made` (CPython's `_create_connection_transport`).
pub(crate) async fn connection_transport(
    loop_: &EventLoop,
    stream: Stream,
    factory: ConnectionProtocolFactory,
) -> Result<Rc<dyn Transport>> {
    let protocol = factory()?;
    let waiter = Future::<()>::new(loop_);
    let transport = SocketTransport::start(
        loop_,
        stream,
        protocol,
        read_buffer_of(loop_)?,
        Some(waiter.clone()),
        None,
    )?;
    match waiter.await {
        Ok(()) => Ok(transport),
        Err(e) => {
            asyncio_core::transports::BaseTransport::close(&*transport);
            Err(e)
        }
    }
}

/// CPython's `_interleave_addrinfos`.
fn interleave_addrinfos(infos: Vec<AddrInfo>, first_family_count: usize) -> Vec<AddrInfo> {
    let mut order: Vec<i32> = Vec::new();
    let mut by_family: BTreeMap<i32, Vec<AddrInfo>> = BTreeMap::new();
    for info in infos {
        if !by_family.contains_key(&info.family) {
            order.push(info.family);
        }
        by_family.entry(info.family).or_default().push(info);
    }
    let mut lists: Vec<std::collections::VecDeque<AddrInfo>> = order
        .iter()
        .map(|f| by_family.remove(f).unwrap_or_default().into())
        .collect();
    let mut out = Vec::new();
    if first_family_count > 1 {
        if let Some(first) = lists.first_mut() {
            for _ in 0..(first_family_count - 1) {
                match first.pop_front() {
                    Some(a) => out.push(a),
                    None => break,
                }
            }
        }
    }
    loop {
        let mut any = false;
        for list in &mut lists {
            if let Some(a) = list.pop_front() {
                out.push(a);
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    out
}

/// CPython's `_connect_sock`: create, bind and connect one socket; its
/// errors are appended to `errors`.
async fn connect_sock(
    loop_: EventLoop,
    info: AddrInfo,
    local: Option<Vec<AddrInfo>>,
    errors: Rc<RefCell<Vec<Error>>>,
) -> Result<TcpStream> {
    let outcome = connect_sock_inner(&loop_, &info, local.as_deref(), &errors).await;
    if let Err(e) = &outcome {
        if e.kind() == ErrorKind::OSError {
            errors.borrow_mut().push(e.clone());
        }
    }
    outcome
}

async fn connect_sock_inner(
    loop_: &EventLoop,
    info: &AddrInfo,
    local: Option<&[AddrInfo]>,
    errors: &Rc<RefCell<Vec<Error>>>,
) -> Result<TcpStream> {
    let Address::Inet(addr) = &info.sockaddr else {
        return Err(Error::value("not an internet address"));
    };
    let domain = Domain::from(info.family);
    let sock =
        Socket::new(domain, Type::STREAM, Some(Protocol::from(info.proto))).map_err(Error::from)?;
    sock.set_nonblocking(true).map_err(Error::from)?;
    if let Some(local) = local {
        let mut bound = false;
        let mut last = None;
        for l in local.iter().filter(|l| l.family == info.family) {
            let Address::Inet(laddr) = &l.sockaddr else {
                continue;
            };
            match sock.bind(&SockAddr::from(*laddr)) {
                Ok(()) => {
                    bound = true;
                    break;
                }
                Err(e) => {
                    let msg = format!(
                        "error while attempting to bind on address {:?}: {}",
                        Address::Inet(*laddr),
                        lower_os_text(&e)
                    );
                    last = Some(os_error(&e, msg));
                    if let Some(err) = &last {
                        errors.borrow_mut().push(err.clone());
                    }
                }
            }
        }
        if !bound {
            return Err(match last {
                Some(e) => {
                    // Reported through `errors` already; raise it once.
                    errors.borrow_mut().pop();
                    e
                }
                None => Error::new(
                    ErrorKind::OSError,
                    format!(
                        "no matching local address with family=<{}: {}> found",
                        asyncio_core::socket::family_name(info.family),
                        info.family
                    ),
                ),
            });
        }
    }
    // CPython's `sock_connect`: an error from `connect()` itself is raised
    // as it is; one that arrives later names the address.
    let in_progress = match sock.connect(&SockAddr::from(*addr)) {
        Ok(()) => false,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
        Err(e) => return Err(Error::from(e)),
    };
    let std: std::net::TcpStream = OwnedFd::from(sock).into();
    let stream = in_runtime(loop_, || TcpStream::from_std(std)).map_err(Error::from)?;
    if in_progress {
        let failed = |e: io::Error| {
            os_error(
                &e,
                format!("Connect call failed {:?}", Address::Inet(*addr)),
            )
        };
        asyncio_core::cancellable(stream.writable())
            .await?
            .map_err(failed)?;
        if let Some(e) = stream.take_error().map_err(failed)? {
            return Err(failed(e));
        }
    }
    Ok(stream)
}

/// Tries `infos` in turn, or staggered with `delay` (happy eyeballs:
/// CPython's `staggered_race`); the first connection wins.
async fn connect_any(
    loop_: &EventLoop,
    infos: Vec<AddrInfo>,
    local: Option<Vec<AddrInfo>>,
    delay: Option<f64>,
    errors: Rc<RefCell<Vec<Error>>>,
) -> Result<Option<TcpStream>> {
    let Some(delay) = delay else {
        for info in infos {
            match connect_sock(loop_.non_owning(), info, local.clone(), errors.clone()).await {
                Ok(s) => return Ok(Some(s)),
                // Already in `errors`; try the next address.
                Err(e) if e.kind() == ErrorKind::OSError => {}
                // Cancellation (and anything else) ends the attempt, as
                // CPython's `except OSError: continue` lets it through.
                Err(e) => return Err(e),
            }
        }
        return Ok(None);
    };
    let mut pending: Vec<asyncio_core::Task<Rc<RefCell<Option<TcpStream>>>>> = Vec::new();
    let mut infos = infos.into_iter();
    let mut winner = None;
    let cancel_all = |tasks: &[asyncio_core::Task<Rc<RefCell<Option<TcpStream>>>>]| {
        for t in tasks {
            t.cancel();
        }
    };
    loop {
        if let Some(info) = infos.next() {
            let local = local.clone();
            let errors = errors.clone();
            let owner = loop_.non_owning();
            pending.push(loop_.create_task(async move {
                let s = connect_sock(owner, info, local, errors).await?;
                Ok(Rc::new(RefCell::new(Some(s))))
            })?);
        } else if pending.is_empty() {
            break;
        }
        let more = infos.len() > 0;
        let waiting = asyncio_core::wait(pending.clone()).return_when(ReturnWhen::FirstCompleted);
        let waited = if more {
            waiting.timeout(delay).await
        } else {
            waiting.await
        };
        let (done, rest) = match waited {
            Ok(v) => v,
            Err(e) => {
                cancel_all(&pending);
                return Err(e);
            }
        };
        for d in &done {
            if let Ok(slot) = d.result() {
                if winner.is_none() {
                    winner = slot.borrow_mut().take();
                }
            }
        }
        pending = rest
            .into_iter()
            .filter_map(|f| pending.iter().find(|t| t.ptr_eq(&f)).cloned())
            .collect();
        if winner.is_some() {
            cancel_all(&pending);
            for t in &pending {
                let _ = t.as_any().await;
            }
            break;
        }
    }
    Ok(winner)
}

pub(crate) async fn create_connection(
    loop_: EventLoop,
    factory: ConnectionProtocolFactory,
    opts: ConnectionOptions,
) -> Result<Rc<dyn Transport>> {
    check_no_tls(
        &opts.server_hostname,
        opts.ssl_handshake_timeout,
        opts.ssl_shutdown_timeout,
    )?;
    let mut interleave = opts.interleave;
    if opts.happy_eyeballs_delay.is_some() && interleave.is_none() {
        interleave = Some(1);
    }
    let stream = if opts.host.is_some() || opts.port.is_some() {
        if opts.sock.is_some() {
            return Err(Error::value(
                "host/port and sock can not be specified at the same time",
            ));
        }
        // CPython's `_ensure_resolved` for a stream socket, where an empty
        // answer is an error.
        let resolve = |host: Option<&str>, port: Option<u16>| {
            let loop_ = loop_.clone();
            let host = host.map(str::to_owned);
            async move {
                let infos = ensure_resolved(
                    &loop_,
                    host.as_deref(),
                    port,
                    opts.family,
                    SOCK_STREAM,
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
                Ok(infos)
            }
        };
        let mut infos = resolve(opts.host.as_deref(), opts.port).await?;
        let local = match &opts.local_addr {
            Some((host, port)) => Some(resolve(Some(host), Some(*port)).await?),
            None => None,
        };
        if let Some(n) = interleave.filter(|n| *n > 0) {
            infos = interleave_addrinfos(infos, n);
        }
        let errors = Rc::new(RefCell::new(Vec::new()));
        let connected = connect_any(
            &loop_,
            infos,
            local,
            opts.happy_eyeballs_delay,
            errors.clone(),
        )
        .await?;
        match connected {
            Some(s) => Stream::Tcp(s),
            None => {
                let errors = std::mem::take(&mut *errors.borrow_mut());
                return Err(combine_connect_errors(errors, opts.all_errors));
            }
        }
    } else {
        let Some(sock) = opts.sock else {
            return Err(Error::value(
                "host and port was not specified and no sock specified",
            ));
        };
        in_runtime(&loop_, || stream_from_fd(sock))?.0
    };
    connection_transport(&loop_, stream, factory).await
}

fn combine_connect_errors(errors: Vec<Error>, all_errors: bool) -> Error {
    if all_errors {
        return Error::group("create_connection failed", errors);
    }
    match errors.len() {
        0 => Error::new(ErrorKind::OSError, "create_connection failed"),
        1 => errors.into_iter().next().unwrap_or_else(Error::timeout),
        _ => {
            let model = errors[0].to_string();
            if errors.iter().all(|e| e.to_string() == model) {
                return errors[0].clone();
            }
            let joined: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            Error::new(
                ErrorKind::OSError,
                format!("Multiple exceptions: {}", joined.join(", ")),
            )
        }
    }
}

// ===== servers =====

enum Listening {
    Bound(Socket),
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A listening socket and its accept loop (CPython's `_accept_connection`).
pub(crate) struct AcceptLoop {
    loop_: EventLoop,
    registration: Registration,
    socket: RefCell<Option<Listening>>,
    factory: ServerProtocolFactory,
    server: RefCell<Option<Server>>,
    backlog: i32,
    info: SocketInfo,
    alive: RefCell<Option<Rc<()>>>,
    /// A Unix socket file to remove on close, with its inode.
    cleanup: Option<(PathBuf, u64)>,
}

struct ListenerHandle(Rc<AcceptLoop>);

impl AcceptLoop {
    fn boxed(
        loop_: &EventLoop,
        sock: Socket,
        factory: ServerProtocolFactory,
        backlog: i32,
        cleanup: Option<(PathBuf, u64)>,
    ) -> Result<Box<dyn Listener>> {
        let info = SocketInfo::of(&sock);
        let registration = loop_.new_registration()?;
        let acceptor = Rc::new(AcceptLoop {
            loop_: loop_.non_owning(),
            registration,
            socket: RefCell::new(Some(Listening::Bound(sock))),
            factory,
            server: RefCell::new(None),
            backlog,
            info,
            alive: RefCell::new(Some(Rc::new(()))),
            cleanup,
        });
        acceptor
            .registration
            .activate(acceptor.clone() as Rc<dyn Schedulable>);
        Ok(Box::new(ListenerHandle(acceptor)))
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Stream>> {
        let socket = self.socket.borrow();
        match socket.as_ref() {
            Some(Listening::Tcp(l)) => l.poll_accept(cx).map_ok(|(s, _)| Stream::Tcp(s)),
            Some(Listening::Unix(l)) => l.poll_accept(cx).map_ok(|(s, _)| Stream::Unix(s)),
            _ => Poll::Pending,
        }
    }

    fn accept_one(&self, stream: Stream) {
        let Some(server) = self.server.borrow().clone() else {
            return;
        };
        let made = (self.factory)().and_then(|protocol| {
            SocketTransport::start(
                &self.loop_,
                stream,
                protocol,
                read_buffer_of(&self.loop_)?,
                None,
                Some(&server),
            )
        });
        if let Err(e) = made {
            if self.loop_.get_debug() {
                let mut ctx =
                    ExceptionContext::new("Error on transport creation for incoming connection");
                ctx.exception = Some(e);
                self.loop_.call_exception_handler(ctx);
            }
        }
    }

    fn socket_value(&self) -> TransportSocket {
        self.info.transport_socket(self.alive.borrow().as_ref())
    }
}

impl Schedulable for AcceptLoop {
    fn run(self: Rc<Self>) {
        let mut cx = Context::from_waker(self.registration.waker());
        for _ in 0..self.backlog.max(1) {
            match self.poll_accept(&mut cx) {
                Poll::Pending => return,
                Poll::Ready(Ok(stream)) => self.accept_one(stream),
                Poll::Ready(Err(e)) => {
                    let errno = e.raw_os_error().unwrap_or(0);
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) {
                        // Tokio registered no waker for an error: look again
                        // next iteration, as CPython's level-triggered reader does.
                        self.registration.schedule();
                        return;
                    }
                    if PER_CONNECTION_ERRORS.contains(&errno) {
                        // Linux reports the pending connection's network
                        // error through accept(): try the next one.
                        self.registration.schedule();
                        return;
                    }
                    let message = if [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM]
                        .contains(&errno)
                    {
                        "socket.accept() out of system resource"
                    } else {
                        "Exception in callback BaseSelectorEventLoop._accept_connection()"
                    };
                    let mut ctx = ExceptionContext::new(message);
                    ctx.exception = Some(Error::from(e));
                    ctx.set(
                        "socket",
                        ContextValue::Text(format!("{:?}", self.socket_value())),
                    );
                    self.loop_.call_exception_handler(ctx);
                    // CPython's `ACCEPT_RETRY_DELAY`: an error that would
                    // repeat at once (no descriptors left, a broken
                    // listener) must not spin the loop.
                    let me = Rc::downgrade(&self);
                    let _ = self.loop_.call_later(ACCEPT_RETRY_DELAY, move || {
                        if let Some(me) = me.upgrade() {
                            me.registration.schedule();
                        }
                    });
                    return;
                }
            }
        }
        // More connections may be waiting: accept again next iteration.
        self.registration.schedule();
    }

    /// The loop closed (or was dropped) with the server open: the listening
    /// socket is closed, with the `ResourceWarning` CPython's socket gives
    /// (shown in debug mode).
    fn abandon(self: Rc<Self>) {
        let open = self
            .socket
            .try_borrow()
            .map(|s| s.is_some())
            .unwrap_or(false);
        if open && self.loop_.get_debug() {
            asyncio_core::log::warning(format_args!(
                "ResourceWarning: unclosed {}",
                socket_repr(&self.info)
            ));
        }
        ListenerHandle(self).stop_serving();
    }
}

impl Listener for ListenerHandle {
    fn start_serving(&self, server: &Server) -> Result<()> {
        let acceptor = &self.0;
        *acceptor.server.borrow_mut() = Some(server.clone());
        let mut socket = acceptor.socket.borrow_mut();
        if let Some(Listening::Bound(sock)) = socket.take() {
            sock.listen(acceptor.backlog).map_err(Error::from)?;
            sock.set_nonblocking(true).map_err(Error::from)?;
            let unix = acceptor.info.family == AF_UNIX;
            let listening = in_runtime(&acceptor.loop_, || -> Result<Listening> {
                Ok(if unix {
                    let std: std::os::unix::net::UnixListener = OwnedFd::from(sock).into();
                    Listening::Unix(UnixListener::from_std(std).map_err(Error::from)?)
                } else {
                    let std: std::net::TcpListener = OwnedFd::from(sock).into();
                    Listening::Tcp(TcpListener::from_std(std).map_err(Error::from)?)
                })
            })?;
            *socket = Some(listening);
        }
        drop(socket);
        acceptor.registration.schedule();
        Ok(())
    }

    fn stop_serving(&self) {
        let acceptor = &self.0;
        acceptor.registration.unregister();
        // The token goes before the descriptor (see `TransportSocket`).
        let alive = acceptor.alive.borrow_mut().take();
        drop(alive);
        let socket = acceptor.socket.borrow_mut().take();
        drop(socket);
        acceptor.server.borrow_mut().take();
        if let Some((path, ino)) = &acceptor.cleanup {
            let removed = std::fs::metadata(path).and_then(|m| {
                if m.ino() == *ino {
                    std::fs::remove_file(path)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = removed.filter_not_found() {
                asyncio_core::log::error(format_args!(
                    "Unable to clean up listening UNIX socket '{}': {}",
                    path.display(),
                    os_error_repr(&e)
                ));
            }
        }
    }

    fn socket(&self) -> TransportSocket {
        self.0.socket_value()
    }
}

impl fmt::Debug for AcceptLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<accept loop {}>", socket_repr(&self.info))
    }
}

fn new_server(
    loop_: &EventLoop,
    socks: Vec<(Socket, Option<(PathBuf, u64)>)>,
    factory: ServerProtocolFactory,
    backlog: i32,
) -> Result<Server> {
    let mut listeners = Vec::with_capacity(socks.len());
    for (sock, cleanup) in socks {
        listeners.push(AcceptLoop::boxed(
            loop_,
            sock,
            factory.clone(),
            backlog,
            cleanup,
        )?);
    }
    Ok(Server::new(loop_, listeners))
}

async fn serve(server: Server, start_serving: bool) -> Result<Server> {
    if start_serving {
        server.start_serving_now()?;
        // Skip one loop iteration so that the sockets listen.
        asyncio_core::sleep(0).await?;
    }
    Ok(server)
}

pub(crate) async fn create_server(
    loop_: EventLoop,
    factory: ServerProtocolFactory,
    opts: ServerOptions,
) -> Result<Server> {
    check_no_tls(&None, opts.ssl_handshake_timeout, opts.ssl_shutdown_timeout)?;
    let has_address = opts.hosts.is_some() || opts.port.is_some();
    let socks = if has_address {
        if opts.sock.is_some() {
            return Err(Error::value(
                "host/port and sock can not be specified at the same time",
            ));
        }
        let reuse_address = opts.reuse_address.unwrap_or(true);
        let hosts: Vec<Option<String>> = match &opts.hosts {
            None => vec![None],
            Some(h) => h.iter().map(|h| Some(h.clone())).collect(),
        };
        let mut infos: Vec<AddrInfo> = Vec::new();
        for host in &hosts {
            let found = ensure_resolved(
                &loop_,
                host.as_deref(),
                opts.port,
                opts.family,
                SOCK_STREAM,
                0,
                opts.flags,
            )
            .await?;
            for info in found {
                if !infos.contains(&info) {
                    infos.push(info);
                }
            }
        }
        let mut socks = Vec::new();
        for info in &infos {
            let Address::Inet(addr) = &info.sockaddr else {
                continue;
            };
            let sock = match Socket::new(
                Domain::from(info.family),
                Type::from(info.type_),
                Some(Protocol::from(info.proto)),
            ) {
                Ok(s) => s,
                Err(_) => continue, // a family or protocol this host lacks
            };
            if reuse_address {
                sock.set_reuse_address(true).map_err(Error::from)?;
            }
            if opts.reuse_port == Some(true) && matches!(info.family, AF_INET | AF_INET6) {
                sock.set_reuse_port(true).map_err(Error::from)?;
            }
            if opts.keep_alive == Some(true) {
                sock.set_keepalive(true).map_err(Error::from)?;
            }
            if info.family == AF_INET6 {
                sock.set_only_v6(true).map_err(Error::from)?;
            }
            if let Err(e) = sock.bind(&SockAddr::from(*addr)) {
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                    // The family is not enabled here (bpo-30945).
                    continue;
                }
                let msg = format!(
                    "error while attempting to bind on address {:?}: {}",
                    Address::Inet(*addr),
                    lower_os_text(&e)
                );
                return Err(os_error(&e, msg));
            }
            socks.push((sock, None));
        }
        if socks.is_empty() {
            let addrs: Vec<String> = infos.iter().map(|i| format!("{:?}", i.sockaddr)).collect();
            return Err(Error::new(
                ErrorKind::OSError,
                format!(
                    "could not bind on any address out of [{}]",
                    addrs.join(", ")
                ),
            ));
        }
        socks
    } else {
        let Some(fd) = opts.sock else {
            return Err(Error::value("Neither host/port nor sock were specified"));
        };
        let sock = Socket::from(fd);
        let info = SocketInfo::of(&sock);
        if info.kind != SOCK_STREAM {
            return Err(Error::value(format!(
                "A Stream Socket was expected, got {}",
                socket_repr(&info)
            )));
        }
        vec![(sock, None)]
    };
    for (sock, _) in &socks {
        sock.set_nonblocking(true).map_err(Error::from)?;
    }
    let server = new_server(&loop_, socks, factory, opts.backlog)?;
    serve(server, opts.start_serving).await
}

pub(crate) async fn create_unix_connection(
    loop_: EventLoop,
    factory: ConnectionProtocolFactory,
    opts: UnixConnectionOptions,
) -> Result<Rc<dyn Transport>> {
    check_no_tls(
        &opts.server_hostname,
        opts.ssl_handshake_timeout,
        opts.ssl_shutdown_timeout,
    )?;
    let stream = match (opts.path, opts.sock) {
        (Some(_), Some(_)) => {
            return Err(Error::value(
                "path and sock can not be specified at the same time",
            ))
        }
        (None, None) => return Err(Error::value("no path and sock were specified")),
        (Some(path), None) => {
            let addr = unix_sockaddr(&path)?;
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(Error::from)?;
            sock.set_nonblocking(true).map_err(Error::from)?;
            let waiting = match sock.connect(&addr) {
                Ok(()) => false,
                // A full listen queue: wait until the socket is writable,
                // as CPython's `sock_connect` does.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINPROGRESS)) => {
                    true
                }
                Err(e) => return Err(Error::from(e)),
            };
            let std: std::os::unix::net::UnixStream = OwnedFd::from(sock).into();
            let s = in_runtime(&loop_, || UnixStream::from_std(std)).map_err(Error::from)?;
            if waiting {
                asyncio_core::cancellable(s.writable())
                    .await?
                    .map_err(Error::from)?;
                if let Some(e) = s.take_error().map_err(Error::from)? {
                    return Err(Error::from(e));
                }
            }
            Stream::Unix(s)
        }
        (None, Some(fd)) => {
            let sock = Socket::from(fd);
            let info = SocketInfo::of(&sock);
            if info.family != AF_UNIX || info.kind != SOCK_STREAM {
                return Err(Error::value(format!(
                    "A UNIX Domain Stream Socket was expected, got {}",
                    socket_repr(&info)
                )));
            }
            in_runtime(&loop_, || stream_from_fd(OwnedFd::from(sock)))?.0
        }
    };
    connection_transport(&loop_, stream, factory).await
}

pub(crate) async fn create_unix_server(
    loop_: EventLoop,
    factory: ServerProtocolFactory,
    opts: UnixServerOptions,
) -> Result<Server> {
    check_no_tls(&None, opts.ssl_handshake_timeout, opts.ssl_shutdown_timeout)?;
    let sock = match (opts.path, opts.sock) {
        (Some(_), Some(_)) => {
            return Err(Error::value(
                "path and sock can not be specified at the same time",
            ))
        }
        (None, None) => {
            return Err(Error::value(
                "path was not specified, and no sock specified",
            ))
        }
        (Some(path), None) => {
            // Refused before the stale-file check can touch a truncated path.
            unix_sockaddr(&path)?;
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(Error::from)?;
            let is_abstract = path.as_os_str().as_encoded_bytes().first() == Some(&0);
            if !is_abstract {
                // A stale socket file of an earlier server goes; a failure
                // other than "not found" is logged, and bind() reports it.
                let removed = std::fs::metadata(&path).and_then(|m| {
                    if m.file_type().is_socket() {
                        std::fs::remove_file(&path)
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = removed.filter_not_found() {
                    asyncio_core::log::error(format_args!(
                        "Unable to check or remove stale UNIX socket '{}': {}",
                        path.display(),
                        os_error_repr(&e)
                    ));
                }
            }
            let addr = unix_sockaddr(&path)?;
            if let Err(e) = sock.bind(&addr) {
                if e.raw_os_error() == Some(libc::EADDRINUSE) {
                    let msg = format!(
                        "Address {:?} is already in use",
                        Address::Unix(path.clone())
                    );
                    return Err(os_error(&e, msg));
                }
                return Err(Error::from(e));
            }
            sock
        }
        (None, Some(fd)) => {
            let sock = Socket::from(fd);
            let info = SocketInfo::of(&sock);
            if info.family != AF_UNIX || info.kind != SOCK_STREAM {
                return Err(Error::value(format!(
                    "A UNIX Domain Stream Socket was expected, got {}",
                    socket_repr(&info)
                )));
            }
            sock
        }
    };
    let cleanup = if opts.cleanup_socket {
        sock.local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.to_path_buf()))
            .and_then(|p| std::fs::metadata(&p).ok().map(|m| (p, m.ino())))
    } else {
        None
    };
    sock.set_nonblocking(true).map_err(Error::from)?;
    let server = new_server(&loop_, vec![(sock, cleanup)], factory, opts.backlog)?;
    serve(server, opts.start_serving).await
}

pub(crate) async fn connect_accepted_socket(
    loop_: EventLoop,
    factory: ConnectionProtocolFactory,
    sock: OwnedFd,
) -> Result<Rc<dyn Transport>> {
    let stream = in_runtime(&loop_, || stream_from_fd(sock))?.0;
    connection_transport(&loop_, stream, factory).await
}

#[cfg(test)]
#[path = "base_events_tests.rs"]
mod tests;
