//! Child processes: `loop.subprocess_exec`/`subprocess_shell` and their
//! transport (CPython's `base_subprocess.py` and `_UnixSubprocessTransport`).
//!
//! The child is started with `std::process::Command` (posix_spawn where it
//! can) and watched directly with a pidfd registered with the loop, as
//! CPython's `PidfdChildWatcher` does, rather than through
//! `tokio::process`: Tokio's `Child::wait` is a future that some task must
//! poll (a task per child, against the loop's design) and reaps through a
//! SIGCHLD handler; a pidfd wakes exactly this loop when exactly this child
//! exits, from a loop on any thread, whatever the user does with SIGCHLD.
//! Without pidfds (Linux before 5.3, some sandboxes), a thread per child
//! waits for it, as CPython's `ThreadedChildWatcher`.
//!
//! The child's pipes are the loop's pipe transports, with protocols that
//! forward to the subprocess protocol.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};

use asyncio_core::base_events::{LocalBoxFuture, SubprocessOptions, SubprocessProtocolFactory};
use asyncio_core::protocols::{BaseProtocol, Protocol, StreamProtocolRef, SubprocessProtocolRef};
use asyncio_core::subprocess::Stdio;
use asyncio_core::transports::{BaseTransport, ExtraInfo, SubprocessTransport, Transport};
use asyncio_core::{Error, EventLoop, Future, Result};

use crate::transport_support::warn_unclosed;
use crate::unix_spawn::{py_repr, spawn, Spawned};

/// Forces the thread-per-child watcher (for tests of the fallback).
static THREADED_WATCHER: AtomicBool = AtomicBool::new(false);

/// Makes new children be watched by a thread each instead of a pidfd, as
/// on systems without pidfds; for tests of that path.
#[doc(hidden)]
pub fn force_threaded_child_watcher(on: bool) {
    THREADED_WATCHER.store(on, Ordering::Relaxed);
}

// ----- the transport -----

/// A protocol call waiting for `connection_made`.
type ProtocolCall = Box<dyn FnOnce() -> Result<()>>;

struct State {
    closed: bool,
    protocol: Option<SubprocessProtocolRef>,
    /// CPython's `_proc is not None`: until `connection_lost`.
    alive: bool,
    returncode: Option<i32>,
    exit_waiters: Vec<Future<i32>>,
    /// Protocol calls made before `connection_made` (CPython's
    /// `_pending_calls`), replayed after it.
    pending: Option<Vec<ProtocolCall>>,
    /// The pipes by child descriptor; `None` until connected.
    pipes: BTreeMap<i32, Option<Rc<PipeProto>>>,
    finished: bool,
}

/// CPython's `_UnixSubprocessTransport`.
pub(crate) struct UnixSubprocessTransport {
    this: Weak<UnixSubprocessTransport>,
    loop_: EventLoop,
    pid: u32,
    state: RefCell<State>,
}

impl UnixSubprocessTransport {
    /// CPython's `_call`: a protocol call, soon, or after `connection_made`.
    fn call(&self, f: impl FnOnce() -> Result<()> + 'static) {
        let mut st = self.state.borrow_mut();
        if let Some(pending) = st.pending.as_mut() {
            pending.push(Box::new(f));
        } else {
            drop(st);
            let _ = self.loop_.call_soon(f);
        }
    }

    fn pipe_data_received(&self, fd: i32, data: &[u8]) {
        let Some(protocol) = self.state.borrow().protocol.clone() else {
            return;
        };
        let data = data.to_vec();
        self.call(move || protocol.pipe_data_received(fd, &data));
    }

    fn pipe_connection_lost(&self, fd: i32, exc: Option<Error>) {
        let Some(protocol) = self.state.borrow().protocol.clone() else {
            return;
        };
        self.call(move || protocol.pipe_connection_lost(fd, exc));
        self.try_finish();
    }

    /// CPython's `_process_exited`; also wakes `wait()` at once (gh-119710).
    fn process_exited(&self, returncode: i32) {
        if self.state.borrow().returncode.is_some() {
            return;
        }
        if self.loop_.get_debug() {
            asyncio_core::log::info(format_args!(
                "{self:?} exited with return code {returncode}"
            ));
        }
        let (protocol, waiters) = {
            let mut st = self.state.borrow_mut();
            st.returncode = Some(returncode);
            (st.protocol.clone(), std::mem::take(&mut st.exit_waiters))
        };
        for waiter in waiters {
            if !waiter.done() {
                let _ = waiter.set_result(returncode);
            }
        }
        if let Some(protocol) = protocol {
            self.call(move || protocol.process_exited());
        }
        self.try_finish();
    }

    /// CPython's `_try_finish`: `connection_lost` once the process exited
    /// and every pipe is closed.
    fn try_finish(&self) {
        let ready = {
            let st = self.state.borrow();
            !st.finished
                && st.returncode.is_some()
                && st
                    .pipes
                    .values()
                    .all(|p| p.as_ref().is_some_and(|p| p.disconnected.get()))
        };
        if !ready {
            return;
        }
        self.state.borrow_mut().finished = true;
        if let Some(me) = self.this.upgrade() {
            self.call(move || me.call_connection_lost());
        }
    }

    fn call_connection_lost(&self) -> Result<()> {
        let protocol = self.state.borrow().protocol.clone();
        let outcome = protocol.map_or(Ok(()), |p| p.connection_lost(None));
        let mut st = self.state.borrow_mut();
        st.alive = false;
        st.protocol = None;
        outcome
    }

    /// At the loop's `close()`: closes the transport (killing a child
    /// still running) and breaks the transport ↔ pipe-protocol cycle that
    /// would otherwise keep it, as Python's garbage collector would.
    pub(crate) fn release(&self) {
        self.close();
        let pipes: Vec<Rc<PipeProto>> = {
            let mut st = self.state.borrow_mut();
            st.protocol = None;
            st.pending = None;
            st.exit_waiters.clear();
            st.pipes.values().flatten().cloned().collect()
        };
        for pipe in pipes {
            pipe.proc.borrow_mut().take();
        }
    }

    fn pipe_transport(&self, fd: i32) -> Option<Rc<dyn Transport>> {
        let proto = self.state.borrow().pipes.get(&fd)?.clone()?;
        let pipe = proto.pipe.borrow().clone();
        pipe
    }

    fn pipe_repr(&self, fd: i32) -> Option<String> {
        self.pipe_transport(fd).map(|t| format!("{t:?}"))
    }
}

impl BaseTransport for UnixSubprocessTransport {
    fn get_extra_info(&self, _name: &str) -> Option<ExtraInfo> {
        None
    }

    fn is_closing(&self) -> bool {
        self.state.borrow().closed
    }

    fn close(&self) {
        let pipes: Vec<Rc<dyn Transport>> = {
            let mut st = self.state.borrow_mut();
            if st.closed {
                return;
            }
            st.closed = true;
            st.pipes
                .values()
                .flatten()
                .filter_map(|p| p.pipe.borrow().clone())
                .collect()
        };
        for pipe in pipes {
            pipe.close();
        }
        let running = {
            let st = self.state.borrow();
            st.alive && st.returncode.is_none()
        };
        if running {
            if self.loop_.get_debug() {
                asyncio_core::log::warning(format_args!(
                    "Close running child process: kill {self:?}"
                ));
            }
            // The child is not reaped before its exit is seen, so the pid
            // is still its own.
            // SAFETY: kill(2) with a pid we own.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

impl SubprocessTransport for UnixSubprocessTransport {
    fn get_pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn get_returncode(&self) -> Option<i32> {
        self.state.borrow().returncode
    }

    fn get_pipe_transport(&self, fd: i32) -> Option<Rc<dyn Transport>> {
        self.pipe_transport(fd)
    }

    fn send_signal(&self, signal: i32) -> Result<()> {
        let (alive, exited) = {
            let st = self.state.borrow();
            (st.alive, st.returncode.is_some())
        };
        if !alive {
            return Err(Error::from(io::Error::from_raw_os_error(libc::ESRCH)));
        }
        if exited {
            return Ok(());
        }
        // SAFETY: kill(2) with a pid that is still ours (not yet reaped).
        if unsafe { libc::kill(self.pid as libc::pid_t, signal) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(Error::from(e));
            }
        }
        Ok(())
    }

    fn terminate(&self) -> Result<()> {
        self.send_signal(libc::SIGTERM)
    }

    fn kill(&self) -> Result<()> {
        self.send_signal(libc::SIGKILL)
    }

    fn wait(&self) -> LocalBoxFuture<'static, Result<i32>> {
        let waiter = {
            let mut st = self.state.borrow_mut();
            if let Some(code) = st.returncode {
                return Box::pin(async move { Ok(code) });
            }
            let waiter = Future::<i32>::new(&self.loop_);
            st.exit_waiters.push(waiter.clone());
            waiter
        };
        Box::pin(async move { waiter.await })
    }
}

impl fmt::Debug for UnixSubprocessTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(st) = self.state.try_borrow() else {
            return write!(f, "<_UnixSubprocessTransport pid={}>", self.pid);
        };
        let mut info = vec!["_UnixSubprocessTransport".to_owned()];
        if st.closed {
            info.push("closed".into());
        }
        info.push(format!("pid={}", self.pid));
        match st.returncode {
            Some(code) => info.push(format!("returncode={code}")),
            None => info.push("running".into()),
        }
        drop(st);
        for (fd, name) in [(0, "stdin"), (1, "stdout"), (2, "stderr")] {
            if let Some(pipe) = self.pipe_repr(fd) {
                info.push(format!("{name}={pipe}"));
            }
        }
        write!(f, "<{}>", info.join(" "))
    }
}

impl Drop for UnixSubprocessTransport {
    fn drop(&mut self) {
        if !self.state.get_mut().closed {
            warn_unclosed(&self.loop_, self);
            self.close();
        }
    }
}

// ----- the pipes' protocols -----

/// CPython's `WriteSubprocessPipeProto`/`ReadSubprocessPipeProto`.
struct PipeProto {
    proc: RefCell<Option<Rc<UnixSubprocessTransport>>>,
    fd: i32,
    pipe: RefCell<Option<Rc<dyn Transport>>>,
    disconnected: Cell<bool>,
}

impl fmt::Debug for PipeProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = if self.fd == 0 {
            "WriteSubprocessPipeProto"
        } else {
            "ReadSubprocessPipeProto"
        };
        match self.pipe.try_borrow().ok().and_then(|p| p.clone()) {
            Some(pipe) => write!(f, "<{class} fd={} pipe={pipe:?}>", self.fd),
            None => write!(f, "<{class} fd={} pipe=None>", self.fd),
        }
    }
}

impl PipeProto {
    fn subprocess_protocol(&self) -> Option<SubprocessProtocolRef> {
        let proc = self.proc.borrow().clone()?;
        let protocol = proc.state.borrow().protocol.clone();
        protocol
    }
}

impl BaseProtocol for PipeProto {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        self.disconnected.set(true);
        let proc = self.proc.borrow_mut().take();
        if let Some(proc) = proc {
            proc.pipe_connection_lost(self.fd, exc);
        }
        Ok(())
    }

    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        self.subprocess_protocol()
            .map_or(Ok(()), |p| p.pause_writing())
    }

    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        self.subprocess_protocol()
            .map_or(Ok(()), |p| p.resume_writing())
    }
}

impl Protocol for PipeProto {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        *self.pipe.borrow_mut() = Some(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        let proc = self.proc.borrow().clone();
        if let Some(proc) = proc {
            proc.pipe_data_received(self.fd, data);
        }
        Ok(())
    }
}

// ----- watching the child -----

/// `os.waitstatus_to_exitcode`.
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// Reaps `pid` (blocking until it exits); 255 if somebody else did, as
/// CPython reports it.
fn reap(pid: u32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child, into a live int.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if r >= 0 {
            return exit_code(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        asyncio_core::log::warning(format_args!(
            "child process pid {pid} exit status already read:  will report returncode 255"
        ));
        return 255;
    }
}

/// A child not reaped yet: dropped with its loop (closed, or the watch
/// ended some other way), it is reaped by a thread of its own, so that no
/// zombie is left.
struct Reaper {
    /// `None` once reaped.
    pid: Option<u32>,
    pidfd: Option<OwnedFd>,
}

impl Reaper {
    /// Reaps the child (which exited: its pidfd is readable); its code,
    /// or `None` if it was reaped already.
    fn reap_now(&mut self) -> Option<i32> {
        let code = reap(self.pid.take()?);
        self.pidfd = None;
        Some(code)
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        let pidfd = self.pidfd.take();
        let _ = std::thread::Builder::new()
            .name("asyncio-reaper".into())
            .spawn(move || {
                reap(pid);
                drop(pidfd);
            });
    }
}

/// What the pidfd's reader holds: the transport first, so that a child
/// still running when the loop closes is killed before it is reaped.
struct Watch {
    transport: Option<Rc<UnixSubprocessTransport>>,
    reaper: Reaper,
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    if THREADED_WATCHER.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: pidfd_open(2) makes a new descriptor or fails.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just made (and is close-on-exec).
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Calls `transport.process_exited` when the child exits: a pidfd
/// reader, or else a waiting thread.
fn watch(loop_: &EventLoop, transport: &Rc<UnixSubprocessTransport>) -> Result<()> {
    let pid = transport.pid;
    if let Some(pidfd) = pidfd_open(pid) {
        let raw = pidfd.as_raw_fd();
        let mut watch = Watch {
            transport: Some(transport.clone()),
            reaper: Reaper {
                pid: Some(pid),
                pidfd: Some(pidfd),
            },
        };
        let l = loop_.clone();
        loop_.add_reader(raw, move || {
            let _ = l.remove_reader(raw);
            // The pidfd is readable: the child exited, so this does not block.
            let Some(code) = watch.reaper.reap_now() else {
                return;
            };
            if let Some(transport) = watch.transport.take() {
                let _ = l.call_soon(move || transport.process_exited(code));
            }
        })?;
        return Ok(());
    }
    // CPython's ThreadedChildWatcher.
    let implementation = loop_
        .implementation::<crate::TokioEventLoop>()
        .ok_or_else(|| Error::runtime("not a TokioEventLoop"))?;
    implementation.watch_child(pid, transport.clone());
    let remote = loop_.threadsafe();
    std::thread::Builder::new()
        .name(format!("asyncio-waitpid-{pid}"))
        .spawn(move || {
            let code = reap(pid);
            let _ = remote.call_soon_threadsafe(move || child_exited(pid, code));
        })
        .map_err(Error::from)?;
    Ok(())
}

/// On the loop's thread: the threaded watcher saw `pid` exit.
fn child_exited(pid: u32, code: i32) {
    let Ok(loop_) = asyncio_core::get_running_loop() else {
        return;
    };
    let transport = loop_
        .implementation::<crate::TokioEventLoop>()
        .and_then(|t| t.unwatch_child(pid));
    if let Some(transport) = transport {
        transport.process_exited(code);
    }
}

// ----- subprocess_exec -----

/// CPython's `_log_subprocess`.
fn log_subprocess(what: &str, options: &SubprocessOptions) {
    let mut info = vec![what.to_owned()];
    for (name, stdio) in [
        ("stdin", &options.stdin),
        ("stdout", &options.stdout),
        ("stderr", &options.stderr),
    ] {
        if !matches!(stdio, Stdio::Inherit) {
            info.push(format!("{name}={}", stdio.describe()));
        }
    }
    asyncio_core::log::debug(format_args!("{}", info.join(" ")));
}

pub(crate) async fn subprocess_exec(
    loop_: EventLoop,
    factory: SubprocessProtocolFactory,
    mut options: SubprocessOptions,
) -> Result<Rc<dyn SubprocessTransport>> {
    let protocol = factory()?;
    let debug_log = loop_.get_debug().then(|| {
        let what = if options.shell {
            format!("run shell command {}", py_repr(&options.args[1]))
        } else {
            format!("execute program {}", py_repr(&options.program))
        };
        log_subprocess(&what, &options);
        what
    });
    let mut pipes = BTreeMap::new();
    for (fd, stdio) in [
        (0, &options.stdin),
        (1, &options.stdout),
        (2, &options.stderr),
    ] {
        if matches!(stdio, Stdio::Pipe) {
            pipes.insert(fd, None);
        }
    }
    let spawned = spawn(&mut options)?;
    let transport = Rc::new_cyclic(|this| UnixSubprocessTransport {
        this: this.clone(),
        loop_: loop_.clone(),
        pid: spawned.pid,
        state: RefCell::new(State {
            closed: false,
            protocol: Some(protocol.clone()),
            alive: true,
            returncode: None,
            exit_waiters: Vec::new(),
            pending: Some(Vec::new()),
            pipes,
            finished: false,
        }),
    });
    if loop_.get_debug() {
        let program = if options.shell {
            &options.args[1]
        } else {
            &options.program
        };
        asyncio_core::log::debug(format_args!(
            "process {} created: pid {}",
            py_repr(program),
            spawned.pid
        ));
    }
    if let Some(implementation) = loop_.implementation::<crate::TokioEventLoop>() {
        implementation.track_subprocess(&transport);
    }
    if let Err(e) = watch(&loop_, &transport) {
        transport.close();
        return Err(e);
    }
    if let Err(e) = connect_pipes(&loop_, &transport, spawned).await {
        transport.close();
        let _ = transport.wait().await;
        return Err(e);
    }
    // CPython's `_connect_pipes` ends: connection_made, then the calls
    // made before it, then the caller resumes.
    let pending = transport
        .state
        .borrow_mut()
        .pending
        .take()
        .unwrap_or_default();
    let t = transport.clone();
    loop_.call_soon(move || protocol.connection_made(t))?;
    for call in pending {
        loop_.call_soon(call)?;
    }
    let waiter = Future::<()>::new(&loop_);
    let w = waiter.clone();
    loop_.call_soon(move || {
        if !w.done() {
            let _ = w.set_result(());
        }
    })?;
    waiter.await?;
    if let Some(what) = debug_log {
        asyncio_core::log::info(format_args!("{what}: {transport:?}"));
    }
    Ok(transport)
}

async fn connect_pipes(
    loop_: &EventLoop,
    transport: &Rc<UnixSubprocessTransport>,
    spawned: Spawned,
) -> Result<()> {
    for (fd, pipe) in [(0, spawned.stdin), (1, spawned.stdout), (2, spawned.stderr)] {
        let Some(pipe) = pipe else {
            continue;
        };
        let proto = Rc::new(PipeProto {
            proc: RefCell::new(Some(transport.clone())),
            fd,
            pipe: RefCell::new(None),
            disconnected: Cell::new(false),
        });
        let p = proto.clone();
        let factory = Box::new(move || Ok(StreamProtocolRef::new(p)));
        if fd == 0 {
            crate::unix_pipes::connect_write_pipe(loop_.clone(), factory, pipe).await?;
        } else {
            crate::unix_pipes::connect_read_pipe(loop_.clone(), factory, pipe).await?;
        }
        transport.state.borrow_mut().pipes.insert(fd, Some(proto));
    }
    Ok(())
}
