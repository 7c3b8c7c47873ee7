//! Helpers for the networking tests: a protocol that records every callback
//! (with futures to wait on), server/client set-up on loopback, and bounded
//! waits so that a hang fails instead of blocking the test run.

#![allow(dead_code)]

mod hanging;
#[allow(unused_imports)]
pub use hanging::{hanging_listener, Hanging};
#[path = "../common/child.rs"]
mod child;
#[allow(unused_imports)]
pub use child::{in_child, open_fds};
#[path = "../common/logs.rs"]
mod logs;
#[allow(unused_imports)]
pub use logs::{capture_logs, LogRecord};

use std::cell::{RefCell, RefMut};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use asyncio::{
    BaseProtocol, BufferedProtocol, Error, ErrorKind, EventLoop, Future, Protocol, Result, Server,
    Transport,
};

/// The bound on every wait in these tests: far above what loopback needs,
/// small enough that a hang fails quickly.
pub const LIMIT: f64 = 20.0;

/// Awaits `fut`, failing with `TimeoutError` after [`LIMIT`] seconds.
pub async fn within<T: 'static>(
    fut: impl std::future::Future<Output = Result<T>> + 'static,
) -> Result<T> {
    asyncio::wait_for(fut, LIMIT).await
}

/// Lets `n` loop iterations pass.
pub async fn iterations(n: usize) -> Result<()> {
    for _ in 0..n {
        asyncio::sleep(0).await?;
    }
    Ok(())
}

/// An error as the tests compare it: its Python class, `str()` and errno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exc {
    pub kind: ErrorKind,
    pub name: &'static str,
    pub text: String,
    pub errno: Option<i32>,
}

impl Exc {
    pub fn of(e: &Error) -> Exc {
        Exc {
            kind: e.kind(),
            name: e.python_name(),
            text: e.to_string(),
            errno: e.raw_os_error(),
        }
    }
}

/// One protocol callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Made,
    Data(Vec<u8>),
    Eof,
    Lost(Option<Exc>),
    PauseWriting { buffered: usize },
    ResumeWriting { buffered: usize },
    GetBuffer,
    BufferUpdated(usize),
}

struct LogInner {
    events: RefCell<Vec<Ev>>,
    data: RefCell<Vec<u8>>,
    made: Future<()>,
    eof: Future<()>,
    lost: Future<Option<Error>>,
    data_waiters: RefCell<Vec<(usize, Future<()>)>>,
    resumed: RefCell<Option<Future<()>>>,
    paused: RefCell<bool>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
}

/// What a connection's protocol saw, shared with the test.
#[derive(Clone)]
pub struct Log(Rc<LogInner>);

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Log({:?})", self.summary())
    }
}

impl Log {
    pub fn new(loop_: &EventLoop) -> Log {
        Log(Rc::new(LogInner {
            events: RefCell::new(Vec::new()),
            data: RefCell::new(Vec::new()),
            made: Future::new(loop_),
            eof: Future::new(loop_),
            lost: Future::new(loop_),
            data_waiters: RefCell::new(Vec::new()),
            resumed: RefCell::new(None),
            paused: RefCell::new(false),
            transport: RefCell::new(None),
        }))
    }

    pub fn push(&self, ev: Ev) {
        match &ev {
            Ev::Made => {
                let _ = self.0.made.set_result(());
            }
            Ev::Eof => {
                let _ = self.0.eof.set_result(());
            }
            Ev::PauseWriting { .. } => *self.0.paused.borrow_mut() = true,
            Ev::ResumeWriting { .. } => {
                *self.0.paused.borrow_mut() = false;
                if let Some(f) = self.0.resumed.borrow_mut().take() {
                    let _ = f.set_result(());
                }
            }
            _ => {}
        }
        self.0.events.borrow_mut().push(ev);
    }

    pub fn add_data(&self, data: &[u8]) {
        self.0.data.borrow_mut().extend_from_slice(data);
        let len = self.0.data.borrow().len();
        self.0.data_waiters.borrow_mut().retain(|(n, f)| {
            if len >= *n {
                let _ = f.set_result(());
                false
            } else {
                true
            }
        });
    }

    /// The transport given to `connection_made` (until `connection_lost`).
    pub fn transport(&self) -> Option<Rc<dyn Transport>> {
        self.0.transport.borrow().clone()
    }

    pub fn set_transport(&self, t: &Rc<dyn Transport>) {
        *self.0.transport.borrow_mut() = Some(t.clone());
    }

    pub fn lost(&self, exc: Option<Error>) {
        self.0.transport.borrow_mut().take();
        self.push(Ev::Lost(exc.as_ref().map(Exc::of)));
        let _ = self.0.lost.set_result(exc);
        // Nothing more can arrive: wake data waiters so they see the shortfall.
        for (_, f) in self.0.data_waiters.borrow_mut().drain(..) {
            let _ = f.set_result(());
        }
        if let Some(f) = self.0.resumed.borrow_mut().take() {
            let _ = f.set_result(());
        }
    }

    pub fn events(&self) -> Vec<Ev> {
        self.0.events.borrow().clone()
    }

    /// Callback names in order, consecutive `data` merged.
    pub fn summary(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for ev in self.0.events.borrow().iter() {
            let name = match ev {
                Ev::Made => "made".to_owned(),
                Ev::Data(_) => "data".to_owned(),
                Ev::Eof => "eof".to_owned(),
                Ev::Lost(None) => "lost".to_owned(),
                Ev::Lost(Some(e)) => format!("lost({})", e.name),
                Ev::PauseWriting { .. } => "pause_writing".to_owned(),
                Ev::ResumeWriting { .. } => "resume_writing".to_owned(),
                Ev::GetBuffer => "get_buffer".to_owned(),
                Ev::BufferUpdated(_) => "buffer_updated".to_owned(),
            };
            if name == "data" && out.last().map(String::as_str) == Some("data") {
                continue;
            }
            out.push(name);
        }
        out
    }

    pub fn data(&self) -> Vec<u8> {
        self.0.data.borrow().clone()
    }

    pub fn data_len(&self) -> usize {
        self.0.data.borrow().len()
    }

    pub fn is_lost(&self) -> bool {
        self.0.lost.done()
    }

    pub fn is_paused(&self) -> bool {
        *self.0.paused.borrow()
    }

    /// Waits (bounded) until `connection_made`.
    pub async fn wait_made(&self) -> Result<()> {
        within(self.0.made.clone().into_future_owned()).await
    }

    /// Waits (bounded) until `eof_received`.
    pub async fn wait_eof(&self) -> Result<()> {
        within(self.0.eof.clone().into_future_owned()).await
    }

    /// Waits (bounded) until `connection_lost`, returning its argument.
    pub async fn wait_lost(&self) -> Result<Option<Error>> {
        within(self.0.lost.clone().into_future_owned()).await
    }

    /// Waits (bounded) until `n` bytes arrived (or the connection is lost),
    /// returning all the data so far.
    pub async fn wait_data(&self, n: usize) -> Result<Vec<u8>> {
        if self.data_len() < n && !self.is_lost() {
            let loop_ = asyncio::get_running_loop()?;
            let f = Future::<()>::new(&loop_);
            self.0.data_waiters.borrow_mut().push((n, f.clone()));
            within(f.into_future_owned()).await?;
        }
        Ok(self.data())
    }

    /// Waits (bounded) for `resume_writing` if paused.
    pub async fn wait_resumed(&self) -> Result<()> {
        if !self.is_paused() || self.is_lost() {
            return Ok(());
        }
        let loop_ = asyncio::get_running_loop()?;
        let f = Future::<()>::new(&loop_);
        *self.0.resumed.borrow_mut() = Some(f.clone());
        within(f.into_future_owned()).await
    }
}

/// `async move { fut.await }` for a future handle.
pub trait IntoOwned<T> {
    fn into_future_owned(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>>>>;
}

impl<T: Clone + 'static> IntoOwned<T> for Future<T> {
    fn into_future_owned(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>>>> {
        Box::pin(async move { self.await })
    }
}

pub type Hook = Box<dyn Fn(&Rc<dyn Transport>) -> Result<()>>;
pub type DataHook = Box<dyn Fn(&Rc<dyn Transport>, &[u8]) -> Result<()>>;
pub type LostHook = Box<dyn Fn(&Option<Error>)>;
pub type EofHook = Box<dyn Fn(&Rc<dyn Transport>) -> Result<bool>>;

/// A protocol that records its callbacks in a [`Log`] and runs optional hooks.
pub struct Rec {
    pub log: Log,
    pub transport: RefCell<Option<Rc<dyn Transport>>>,
    /// `eof_received`'s answer when there is no `on_eof` hook.
    pub keep_open: bool,
    /// Writes every chunk back.
    pub echo: bool,
    pub on_made: Option<Hook>,
    pub on_data: Option<DataHook>,
    pub on_eof: Option<EofHook>,
    pub on_pause: Option<Hook>,
    pub on_resume: Option<Hook>,
    pub on_lost: Option<LostHook>,
}

impl Rec {
    pub fn new(log: &Log) -> Rec {
        Rec {
            log: log.clone(),
            transport: RefCell::new(None),
            keep_open: false,
            echo: false,
            on_made: None,
            on_data: None,
            on_eof: None,
            on_pause: None,
            on_resume: None,
            on_lost: None,
        }
    }

    pub fn echo(log: &Log) -> Rec {
        Rec {
            echo: true,
            ..Rec::new(log)
        }
    }

    fn t(&self) -> Rc<dyn Transport> {
        self.transport
            .borrow()
            .clone()
            .expect("connection_made was called")
    }
}

impl BaseProtocol for Rec {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        if let Some(h) = &self.on_lost {
            h(&exc);
        }
        self.log.lost(exc);
        Ok(())
    }

    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        let t = self.t();
        self.log.push(Ev::PauseWriting {
            buffered: t.get_write_buffer_size(),
        });
        match &self.on_pause {
            Some(h) => h(&t),
            None => Ok(()),
        }
    }

    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        let t = self.t();
        self.log.push(Ev::ResumeWriting {
            buffered: t.get_write_buffer_size(),
        });
        match &self.on_resume {
            Some(h) => h(&t),
            None => Ok(()),
        }
    }
}

impl Protocol for Rec {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        *self.transport.borrow_mut() = Some(transport.clone());
        self.log.set_transport(&transport);
        self.log.push(Ev::Made);
        match &self.on_made {
            Some(h) => h(&transport),
            None => Ok(()),
        }
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        self.log.push(Ev::Data(data.to_vec()));
        self.log.add_data(data);
        let t = self.t();
        if self.echo {
            t.write(data)?;
        }
        match &self.on_data {
            Some(h) => h(&t, data),
            None => Ok(()),
        }
    }

    fn eof_received(self: &Rc<Self>) -> Result<bool> {
        self.log.push(Ev::Eof);
        let t = self.t();
        match &self.on_eof {
            Some(h) => h(&t),
            None => Ok(self.keep_open),
        }
    }
}

/// A [`BufferedProtocol`] recording into a [`Log`], lending a buffer of
/// `chunk` bytes (0: an empty buffer, which is a fatal error).
pub struct BufRec {
    pub log: Log,
    pub buf: RefCell<Vec<u8>>,
    pub transport: RefCell<Option<Rc<dyn Transport>>>,
    pub keep_open: bool,
}

impl BufRec {
    pub fn new(log: &Log, chunk: usize) -> BufRec {
        BufRec {
            log: log.clone(),
            buf: RefCell::new(vec![0; chunk]),
            transport: RefCell::new(None),
            keep_open: false,
        }
    }
}

impl BaseProtocol for BufRec {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        self.log.lost(exc);
        Ok(())
    }
}

impl BufferedProtocol for BufRec {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        self.log.set_transport(&transport);
        *self.transport.borrow_mut() = Some(transport);
        self.log.push(Ev::Made);
        Ok(())
    }

    fn get_buffer(self: &Rc<Self>, _sizehint: Option<usize>) -> Result<RefMut<'_, [u8]>> {
        self.log.push(Ev::GetBuffer);
        Ok(RefMut::map(self.buf.borrow_mut(), |b| &mut b[..]))
    }

    fn buffer_updated(self: &Rc<Self>, nbytes: usize) -> Result<()> {
        self.log.push(Ev::BufferUpdated(nbytes));
        let chunk = self.buf.borrow()[..nbytes].to_vec();
        self.log.add_data(&chunk);
        Ok(())
    }

    fn eof_received(self: &Rc<Self>) -> Result<bool> {
        self.log.push(Ev::Eof);
        Ok(self.keep_open)
    }
}

/// The logs of the connections a server accepted, in order.
#[derive(Clone)]
pub struct Accepted {
    loop_: EventLoop,
    logs: Rc<RefCell<VecDeque<Log>>>,
    all: Rc<RefCell<Vec<Log>>>,
    waiter: Rc<RefCell<Option<Future<()>>>>,
}

impl Accepted {
    pub fn new(loop_: &EventLoop) -> Accepted {
        Accepted {
            loop_: loop_.clone(),
            logs: Rc::new(RefCell::new(VecDeque::new())),
            all: Rc::new(RefCell::new(Vec::new())),
            waiter: Rc::new(RefCell::new(None)),
        }
    }

    /// A new log for an accepted connection.
    pub fn log(&self) -> Log {
        let log = Log::new(&self.loop_);
        self.logs.borrow_mut().push_back(log.clone());
        self.all.borrow_mut().push(log.clone());
        if let Some(w) = self.waiter.borrow_mut().take() {
            let _ = w.set_result(());
        }
        log
    }

    pub fn count(&self) -> usize {
        self.all.borrow().len()
    }

    pub fn all(&self) -> Vec<Log> {
        self.all.borrow().clone()
    }

    /// The next accepted connection's log, once its `connection_made` ran.
    pub async fn next(&self) -> Result<Log> {
        loop {
            let next = self.logs.borrow_mut().pop_front();
            if let Some(log) = next {
                log.wait_made().await?;
                return Ok(log);
            }
            let f = Future::<()>::new(&self.loop_);
            *self.waiter.borrow_mut() = Some(f.clone());
            within(f.into_future_owned()).await?;
        }
    }
}

/// A server on `127.0.0.1`, port 0, whose connections use `make(log)`.
pub async fn serve_on_loopback(
    make: impl Fn(&Log) -> Rec + 'static,
) -> Result<(Server, u16, Accepted)> {
    let loop_ = asyncio::get_running_loop()?;
    let accepted = Accepted::new(&loop_);
    let acc = accepted.clone();
    let server = loop_
        .create_server(move || make(&acc.log()))
        .host("127.0.0.1")
        .port(0)
        .await?;
    let port = server_port(&server);
    Ok((server, port, accepted))
}

/// The port of a server's first socket.
pub fn server_port(server: &Server) -> u16 {
    server.sockets()[0]
        .getsockname()
        .and_then(|a| a.port())
        .expect("an inet socket")
}

/// A client connection to `127.0.0.1:port` with a recording protocol.
pub async fn connect(
    port: u16,
    make: impl FnOnce(&Log) -> Rec + 'static,
) -> Result<(Rc<dyn Transport>, Log)> {
    let loop_ = asyncio::get_running_loop()?;
    let log = Log::new(&loop_);
    let l = log.clone();
    let (t, _p) = loop_
        .create_connection(move || make(&l))
        .host("127.0.0.1")
        .port(port)
        .await?;
    Ok((t, log))
}

/// A server and one connection to it: `(client transport, client log,
/// server transport's log, server, accepted)`.
pub struct Pair {
    pub client: Rc<dyn Transport>,
    pub client_log: Log,
    pub server_log: Log,
    pub server: Server,
    pub accepted: Accepted,
}

impl Pair {
    /// The server side's transport.
    pub fn server_transport(&self) -> Rc<dyn Transport> {
        self.server_log.transport().expect("server side connected")
    }
}

/// Connects a client (`client(log)`) to a fresh loopback server
/// (`server(log)`), both sides' `connection_made` done.
pub async fn pair(
    server: impl Fn(&Log) -> Rec + 'static,
    client: impl FnOnce(&Log) -> Rec + 'static,
) -> Result<Pair> {
    let (srv, port, accepted) = serve_on_loopback(server).await?;
    let (client, client_log) = connect(port, client).await?;
    let server_log = accepted.next().await?;
    Ok(Pair {
        client,
        client_log,
        server_log,
        server: srv,
        accepted,
    })
}

/// A data pattern that detects lost, duplicated or reordered bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ ((i / 251) % 256) as u8)
        .collect()
}

/// What reached a loop's exception handler: `(message, exception)`.
pub type Handled = Rc<RefCell<Vec<(String, Option<Exc>)>>>;

thread_local! {
    static HANDLED_KEYS: RefCell<Vec<Vec<String>>> = const { RefCell::new(Vec::new()) };
}

/// Installs an exception handler on `loop_` that records every call.
pub fn record_handler(loop_: &EventLoop) -> Handled {
    HANDLED_KEYS.with(|k| k.borrow_mut().clear());
    let seen: Handled = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    loop_.set_exception_handler(Some(
        move |_: &EventLoop, ctx: &asyncio::ExceptionContext| {
            HANDLED_KEYS.with(|k| k.borrow_mut().push(ctx.keys().map(str::to_owned).collect()));
            sink.borrow_mut()
                .push((ctx.message.clone(), ctx.exception.as_ref().map(Exc::of)));
        },
    ));
    seen
}

/// The context keys (other than `message` and `exception`) of each call
/// recorded by [`record_handler`] on this thread.
pub fn handled_keys() -> Vec<Vec<String>> {
    HANDLED_KEYS.with(|k| k.borrow().clone())
}

/// Sets the kernel send buffer of a transport's socket (to make writes
/// buffer in the transport quickly and deterministically).
pub fn set_sndbuf(t: &Rc<dyn Transport>, size: usize) {
    let info = t.get_extra_info("socket").expect("a socket");
    let sock = info.as_socket().expect("a socket").clone();
    sock.with_fd(|fd| socket2::SockRef::from(&fd).set_send_buffer_size(size))
        .expect("socket open")
        .expect("setsockopt");
}

/// Sets the kernel receive buffer of a transport's socket.
pub fn set_rcvbuf(t: &Rc<dyn Transport>, size: usize) {
    let info = t.get_extra_info("socket").expect("a socket");
    let sock = info.as_socket().expect("a socket").clone();
    sock.with_fd(|fd| socket2::SockRef::from(&fd).set_recv_buffer_size(size))
        .expect("socket open")
        .expect("setsockopt");
}

/// Bytes waiting in the kernel receive queue of a transport's socket.
pub fn pending_input(t: &Rc<dyn Transport>) -> usize {
    use std::os::fd::AsRawFd;
    let info = t.get_extra_info("socket").expect("a socket");
    let sock = info.as_socket().expect("a socket").clone();
    sock.with_fd(|fd| {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int into `n`; `fd` is open.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0, "ioctl(FIONREAD)");
        n as usize
    })
    .expect("socket open")
}

/// `unwrap_err()` for results whose value is not `Debug`.
pub trait FailWith {
    fn failure(self) -> Error;
}

impl<T> FailWith for Result<T> {
    #[track_caller]
    fn failure(self) -> Error {
        match self {
            Ok(_) => panic!("expected an error, got a value"),
            Err(e) => e,
        }
    }
}
