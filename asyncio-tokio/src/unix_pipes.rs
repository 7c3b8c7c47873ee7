//! The pipe transports (CPython's `_UnixReadPipeTransport` and
//! `_UnixWritePipeTransport` in `unix_events.py`).
//!
//! Driven like the socket transports: Tokio's reactor wakes the
//! transport's loop registration, and `run` reads one chunk per iteration
//! or writes the buffer. A write pipe also watches for its reader going
//! away (the write end of a pipe reports an error then; a socket, that it
//! is readable), which CPython's selector sees as the descriptor becoming
//! readable.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use asyncio_core::base_events::ConnectionProtocolFactory;
use asyncio_core::protocols::StreamProtocolRef;
use asyncio_core::transports::{
    BaseTransport, ExtraInfo, ReadTransport, Transport, WriteTransport,
};
use asyncio_core::{Error, ErrorKind, EventLoop, Future, Registration, Result, Schedulable};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};

use crate::selector_events::{ReadBuffer, MAX_READ};
use crate::transport_support::{
    callback_failed, flow_called, io_when_ready, report, warn_unclosed, FlowControl,
};

/// Writes dropped after the pipe is lost start warning at this count.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// What kind of file a pipe transport was given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PipeKind {
    Fifo,
    Socket,
    CharDevice,
}

fn pipe_kind(file: &File) -> Result<Option<PipeKind>> {
    let kind = file.metadata().map_err(Error::from)?.file_type();
    Ok(if kind.is_fifo() {
        Some(PipeKind::Fifo)
    } else if kind.is_socket() {
        Some(PipeKind::Socket)
    } else if kind.is_char_device() {
        Some(PipeKind::CharDevice)
    } else {
        None
    })
}

/// `os.set_blocking(fd, False)`.
fn set_nonblocking(fd: RawFd) -> Result<()> {
    // SAFETY: plain fcntl calls on a descriptor the caller owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(Error::from(io::Error::last_os_error()));
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(Error::from(io::Error::last_os_error()));
    }
    Ok(())
}

/// The pipe registered with the loop's reactor.
fn register(loop_: &EventLoop, file: File) -> Result<Rc<AsyncFd<File>>> {
    crate::base_events::in_runtime(loop_, || {
        // SAFETY: the `File` owns its descriptor, open for as long as the
        // `AsyncFd` holds it.
        unsafe { AsyncFd::register(file) }
    })
    .map(Rc::new)
    .map_err(|e| Error::from(e.into_parts().1))
}

fn no_attribute(class: &str, name: &str) -> Error {
    Error::new(
        ErrorKind::AttributeError,
        format!("'{class}' object has no attribute '{name}'"),
    )
}

/// What both pipe transports share: the loop, the pipe, the protocol.
struct PipeBase {
    loop_: EventLoop,
    registration: Registration,
    /// `None` once closed (CPython's `_pipe = None`).
    pipe: RefCell<Option<Rc<AsyncFd<File>>>>,
    protocol: RefCell<Option<StreamProtocolRef>>,
    fd: RawFd,
    class: &'static str,
}

impl PipeBase {
    fn new(
        loop_: &EventLoop,
        pipe: Rc<AsyncFd<File>>,
        protocol: StreamProtocolRef,
        class: &'static str,
    ) -> Result<PipeBase> {
        Ok(PipeBase {
            loop_: loop_.non_owning(),
            registration: loop_.new_registration()?,
            fd: pipe.get_ref().as_raw_fd(),
            pipe: RefCell::new(Some(pipe)),
            protocol: RefCell::new(Some(protocol)),
            class,
        })
    }

    fn pipe(&self) -> Option<Rc<AsyncFd<File>>> {
        self.pipe.borrow().clone()
    }

    fn is_open(&self) -> bool {
        self.pipe.borrow().is_some()
    }

    fn protocol(&self) -> Option<StreamProtocolRef> {
        self.protocol.borrow().clone()
    }

    fn set_protocol(&self, protocol: StreamProtocolRef) {
        if self.is_open() {
            *self.protocol.borrow_mut() = Some(protocol);
        }
    }

    fn extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "pipe" => Some(ExtraInfo::Pipe(if self.is_open() { self.fd } else { -1 })),
            _ => None,
        }
    }

    fn callback_failed(&self, callback: &str, exc: Error) {
        callback_failed(&self.loop_, self.class, callback, exc);
    }

    /// The reporting half of CPython's `_fatal_error`.
    fn report_fatal(&self, transport: &dyn fmt::Debug, exc: &Error, message: &str, quiet: bool) {
        if quiet {
            if self.loop_.get_debug() {
                tracing::debug!(target: "asyncio", "{:?}: {}", transport, message);
            }
            return;
        }
        let protocol = self.protocol();
        let protocol = protocol.as_ref().map(|p| p as &dyn fmt::Debug);
        report(&self.loop_, message, exc.clone(), transport, protocol);
    }

    /// `call_soon(_call_connection_lost, exc)` of `transport`; on a closed
    /// loop, the pipe is released now.
    fn schedule_connection_lost<T: PipeTransport>(
        &self,
        transport: Option<Rc<T>>,
        exc: Option<Error>,
    ) {
        if let Some(t) = transport {
            if self
                .loop_
                .call_soon(move || t.call_connection_lost(exc))
                .is_err()
            {
                self.release();
            }
        }
    }

    /// CPython's `_call_connection_lost`: the protocol's last call, then
    /// the pipe closed and the protocol forgotten.
    fn finish(&self, exc: Option<Error>) -> Result<()> {
        if !self.is_open() {
            return Ok(());
        }
        let outcome = match self.protocol() {
            Some(p) => p.connection_lost(exc),
            None => Ok(()),
        };
        self.release();
        outcome
    }

    fn release(&self) {
        let pipe = self.pipe.borrow_mut().take();
        drop(pipe);
        let protocol = self.protocol.borrow_mut().take();
        drop(protocol);
        self.registration.unregister();
    }

    /// The loop closed with the transport open: CPython's `__del__`.
    fn abandon(&self, transport: &dyn fmt::Debug) {
        if self.is_open() {
            warn_unclosed(&self.loop_, transport);
        }
    }

    /// The reprs' common head (`_UnixReadPipeTransport closing fd=5`), and
    /// the state word of a pipe not open or on a closed loop.
    fn repr_head(&self, closing: bool) -> (Vec<String>, Option<&'static str>) {
        let mut info = vec![self.class.to_owned()];
        if !self.is_open() {
            info.push("closed".to_owned());
        } else if closing {
            info.push("closing".to_owned());
        }
        info.push(format!("fd={}", self.fd));
        let state = match (self.is_open(), self.loop_.is_closed()) {
            (false, _) => Some("closed"),
            (true, true) => Some("open"),
            (true, false) => None,
        };
        (info, state)
    }
}

/// A pipe transport, as [`PipeBase`] schedules its end.
trait PipeTransport: 'static {
    fn call_connection_lost(&self, exc: Option<Error>) -> Result<()>;
}

// ----- the read pipe -----

struct ReadState {
    closing: bool,
    paused: bool,
    /// The reader was added (after `connection_made`).
    reader_added: bool,
}

impl ReadState {
    fn reader_active(&self) -> bool {
        self.reader_added && !self.closing && !self.paused
    }
}

/// CPython's `_UnixReadPipeTransport`.
pub(crate) struct ReadPipeTransport {
    this: Weak<ReadPipeTransport>,
    base: PipeBase,
    read_buffer: ReadBuffer,
    state: RefCell<ReadState>,
}

impl ReadPipeTransport {
    fn start(
        loop_: &EventLoop,
        pipe: Rc<AsyncFd<File>>,
        protocol: StreamProtocolRef,
        read_buffer: ReadBuffer,
        waiter: Future<()>,
    ) -> Result<Rc<ReadPipeTransport>> {
        let base = PipeBase::new(loop_, pipe, protocol, "_UnixReadPipeTransport")?;
        let transport = Rc::new_cyclic(|this| ReadPipeTransport {
            this: this.clone(),
            base,
            read_buffer,
            state: RefCell::new(ReadState {
                closing: false,
                paused: false,
                reader_added: false,
            }),
        });
        transport
            .base
            .registration
            .activate(transport.clone() as Rc<dyn Schedulable>);
        let t = transport.clone();
        loop_.call_soon(move || t.connection_made())?;
        let t = transport.clone();
        loop_.call_soon(move || {
            let mut st = t.state.borrow_mut();
            if !st.closing && !st.paused {
                st.reader_added = true;
                drop(st);
                t.base.registration.schedule();
            }
        })?;
        loop_.call_soon(move || {
            if !waiter.done() {
                let _ = waiter.set_result(());
            }
        })?;
        Ok(transport)
    }

    fn connection_made(&self) -> Result<()> {
        let (Some(protocol), Some(me)) = (self.base.protocol(), self.this.upgrade()) else {
            return Ok(());
        };
        protocol.connection_made(me)
    }

    fn read_ready(&self) {
        if !self.state.borrow().reader_active() {
            return;
        }
        let mut shared = self.read_buffer.try_borrow_mut().ok();
        let mut fallback = Vec::new();
        let buf: &mut [u8] = match shared.as_mut() {
            Some(b) => b.as_mut_slice(),
            None => {
                fallback.resize(MAX_READ, 0);
                &mut fallback[..]
            }
        };
        let read = {
            let Some(pipe) = self.base.pipe() else {
                return;
            };
            let mut cx = Context::from_waker(self.base.registration.waker());
            io_when_ready(&pipe, &mut cx, true, |mut file| file.read(buf))
        };
        match read {
            None => {}
            Some(Err(e)) => {
                drop(shared);
                // A PTY whose other side closed reads EIO: an end, not a
                // failure worth reporting.
                let quiet = e.raw_os_error() == Some(libc::EIO);
                let exc = Error::from(e);
                self.base
                    .report_fatal(self, &exc, "Fatal read error on pipe transport", quiet);
                self.close_with(Some(exc));
            }
            Some(Ok(0)) => {
                drop(shared);
                if self.base.loop_.get_debug() {
                    asyncio_core::log::info(format_args!("{self:?} was closed by peer"));
                }
                self.state.borrow_mut().closing = true;
                if let Some(protocol) = self.base.protocol() {
                    // `eof_received`'s answer does not matter: a pipe's
                    // end is its end.
                    let _ = self
                        .base
                        .loop_
                        .call_soon(move || protocol.eof_received().map(drop));
                }
                self.base
                    .schedule_connection_lost(self.this.upgrade(), None);
            }
            Some(Ok(n)) => {
                let delivered = match self.base.protocol() {
                    Some(p) => p.data_received(&buf[..n]),
                    None => Ok(()),
                };
                drop(shared);
                if let Err(e) = delivered {
                    self.base.callback_failed("_read_ready", e);
                }
                // More to read: the next iteration reads it.
                if self.state.borrow().reader_active() {
                    if let Some(pipe) = self.base.pipe() {
                        let mut cx = Context::from_waker(self.base.registration.waker());
                        if pipe.poll_read_ready(&mut cx).is_ready() {
                            self.base.registration.schedule();
                        }
                    }
                }
            }
        }
    }

    /// CPython's `_close`.
    fn close_with(&self, exc: Option<Error>) {
        self.state.borrow_mut().closing = true;
        self.base.schedule_connection_lost(self.this.upgrade(), exc);
    }
}

impl PipeTransport for ReadPipeTransport {
    fn call_connection_lost(&self, exc: Option<Error>) -> Result<()> {
        self.base.finish(exc)
    }
}

impl Schedulable for ReadPipeTransport {
    fn run(self: Rc<Self>) {
        self.read_ready();
    }

    fn abandon(self: Rc<Self>) {
        self.base.abandon(&*self);
        self.base.release();
    }
}

impl BaseTransport for ReadPipeTransport {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        self.base.extra_info(name)
    }

    fn is_closing(&self) -> bool {
        self.state.borrow().closing
    }

    fn close(&self) {
        if !self.state.borrow().closing {
            self.close_with(None);
        }
    }
}

impl ReadTransport for ReadPipeTransport {
    fn is_reading(&self) -> bool {
        let st = self.state.borrow();
        !st.paused && !st.closing
    }

    fn pause_reading(&self) {
        let mut st = self.state.borrow_mut();
        if st.paused || st.closing {
            return;
        }
        st.paused = true;
        drop(st);
        if self.base.loop_.get_debug() {
            tracing::debug!(target: "asyncio", "{:?} pauses reading", self);
        }
    }

    fn resume_reading(&self) {
        {
            let mut st = self.state.borrow_mut();
            if st.closing || !st.paused {
                return;
            }
            st.paused = false;
            st.reader_added = true;
        }
        if self.base.loop_.get_debug() {
            tracing::debug!(target: "asyncio", "{:?} resumes reading", self);
        }
        self.base.registration.schedule();
    }
}

/// The write half is not there: Python's read pipe transport has no such
/// methods (`AttributeError`), and reaching them takes the `Transport` a
/// protocol's `connection_made` gets.
impl WriteTransport for ReadPipeTransport {
    fn set_write_buffer_limits(&self, _high: Option<usize>, _low: Option<usize>) -> Result<()> {
        Err(no_attribute(self.base.class, "set_write_buffer_limits"))
    }

    fn get_write_buffer_size(&self) -> usize {
        0
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        (0, 0)
    }

    fn write(&self, _data: &[u8]) -> Result<()> {
        Err(no_attribute(self.base.class, "write"))
    }

    fn writelines(&self, _chunks: &[&[u8]]) -> Result<()> {
        Err(no_attribute(self.base.class, "writelines"))
    }

    fn write_eof(&self) -> Result<()> {
        Err(no_attribute(self.base.class, "write_eof"))
    }

    fn can_write_eof(&self) -> bool {
        false
    }

    fn abort(&self) {
        self.close();
    }
}

impl Transport for ReadPipeTransport {
    fn set_protocol(&self, protocol: StreamProtocolRef) {
        self.base.set_protocol(protocol);
    }

    fn get_protocol(&self) -> Option<StreamProtocolRef> {
        self.base.protocol()
    }
}

impl fmt::Debug for ReadPipeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(st) = self.state.try_borrow() else {
            return f.write_str("<_UnixReadPipeTransport>");
        };
        let (mut info, state) = self.base.repr_head(st.closing);
        let polling = if st.reader_active() {
            "polling"
        } else {
            "idle"
        };
        info.push(state.unwrap_or(polling).to_owned());
        write!(f, "<{}>", info.join(" "))
    }
}

// ----- the write pipe -----

/// Resolves when the reader of a write pipe has gone away.
type PeerWatch = Pin<Box<dyn std::future::Future<Output = ()>>>;

struct WriteState {
    buffer: Vec<u8>,
    closing: bool,
    conn_lost: u32,
}

/// CPython's `_UnixWritePipeTransport`.
pub(crate) struct WritePipeTransport {
    this: Weak<WritePipeTransport>,
    base: PipeBase,
    state: RefCell<WriteState>,
    peer_watch: RefCell<Option<PeerWatch>>,
    flow: FlowControl,
}

impl WritePipeTransport {
    fn start(
        loop_: &EventLoop,
        pipe: Rc<AsyncFd<File>>,
        kind: PipeKind,
        protocol: StreamProtocolRef,
        waiter: Future<()>,
    ) -> Result<Rc<WritePipeTransport>> {
        let base = PipeBase::new(loop_, pipe, protocol, "_UnixWritePipeTransport")?;
        let transport = Rc::new_cyclic(|this| WritePipeTransport {
            this: this.clone(),
            base,
            state: RefCell::new(WriteState {
                buffer: Vec::new(),
                closing: false,
                conn_lost: 0,
            }),
            peer_watch: RefCell::new(None),
            flow: FlowControl::default(),
        });
        transport
            .base
            .registration
            .activate(transport.clone() as Rc<dyn Schedulable>);
        let t = transport.clone();
        loop_.call_soon(move || t.connection_made())?;
        if kind != PipeKind::CharDevice {
            // CPython's reader on the write end: it fires when the reader
            // goes away.
            let t = transport.clone();
            loop_.call_soon(move || {
                t.watch_peer();
                t.base.registration.schedule();
            })?;
        }
        loop_.call_soon(move || {
            if !waiter.done() {
                let _ = waiter.set_result(());
            }
        })?;
        Ok(transport)
    }

    fn connection_made(&self) -> Result<()> {
        let (Some(protocol), Some(me)) = (self.base.protocol(), self.this.upgrade()) else {
            return Ok(());
        };
        protocol.connection_made(me)
    }

    fn watch_peer(&self) {
        let Some(pipe) = self.base.pipe() else {
            return;
        };
        let watch: PeerWatch = Box::pin(async move {
            let _ = pipe
                .ready(Interest::READABLE | Interest::ERROR)
                .await
                .map(|mut guard| guard.clear_ready_matching(Ready::ERROR));
        });
        *self.peer_watch.borrow_mut() = Some(watch);
    }

    /// CPython's `_read_ready` of the write pipe: the peer closed.
    fn peer_ready(&self) {
        let fired = {
            let mut watch = self.peer_watch.borrow_mut();
            let Some(w) = watch.as_mut() else {
                return;
            };
            let mut cx = Context::from_waker(self.base.registration.waker());
            w.as_mut().poll(&mut cx).is_ready()
        };
        if !fired {
            return;
        }
        self.peer_watch.borrow_mut().take();
        if !self.base.is_open() {
            return;
        }
        if self.base.loop_.get_debug() {
            asyncio_core::log::info(format_args!("{self:?} was closed by peer"));
        }
        let exc = (!self.state.borrow().buffer.is_empty())
            .then(|| Error::from(io::Error::from_raw_os_error(libc::EPIPE)));
        self.close_with(exc);
    }

    /// Registers write interest; `true` if writable already.
    fn arm_writer(&self, pipe: &AsyncFd<File>) -> bool {
        let mut cx = Context::from_waker(self.base.registration.waker());
        pipe.poll_write_ready(&mut cx).is_ready()
    }

    /// One non-blocking `write`; `Ok(0)` when the pipe is full (readiness
    /// cleared, so that a wake means room).
    fn write_now(&self, pipe: &AsyncFd<File>, data: &[u8]) -> io::Result<usize> {
        loop {
            match pipe.get_ref().write(data) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut cx = Context::from_waker(self.base.registration.waker());
                    if let Poll::Ready(Ok(mut guard)) = pipe.poll_write_ready(&mut cx) {
                        guard.clear_ready_matching(Ready::WRITABLE);
                    }
                    return Ok(0);
                }
                other => return other,
            }
        }
    }

    /// CPython's `_write_ready`.
    fn write_ready(&self) {
        let written = {
            let st = self.state.borrow();
            // Not `conn_lost`: writes after `close()` count there, and the
            // buffer still drains.
            if st.buffer.is_empty() {
                return;
            }
            let Some(pipe) = self.base.pipe() else {
                return;
            };
            if !self.arm_writer(&pipe) {
                return;
            }
            self.write_now(&pipe, &st.buffer)
        };
        match written {
            Err(e) => {
                {
                    let mut st = self.state.borrow_mut();
                    st.buffer.clear();
                    st.conn_lost += 1;
                }
                self.fatal_error(Error::from(e), "Fatal write error on pipe transport");
            }
            Ok(n) => {
                let (empty, closing) = {
                    let mut st = self.state.borrow_mut();
                    st.buffer.drain(..n);
                    (st.buffer.is_empty(), st.closing)
                };
                if empty {
                    self.maybe_resume_protocol();
                    if closing && self.state.borrow().buffer.is_empty() {
                        if let Err(e) = self.call_connection_lost(None) {
                            self.base.callback_failed("_write_ready", e);
                        }
                    }
                } else if let Some(pipe) = self.base.pipe() {
                    if self.arm_writer(&pipe) {
                        self.base.registration.schedule();
                    }
                }
            }
        }
    }

    fn fatal_error(&self, exc: Error, message: &str) {
        if exc.kind().is_exit() {
            self.base.loop_.raise_base_exception(exc);
            return;
        }
        let quiet = exc.kind() == ErrorKind::OSError;
        self.base.report_fatal(self, &exc, message, quiet);
        self.close_with(Some(exc));
    }

    /// CPython's `_close`.
    fn close_with(&self, exc: Option<Error>) {
        {
            let mut st = self.state.borrow_mut();
            st.closing = true;
            st.buffer.clear();
        }
        self.peer_watch.borrow_mut().take();
        self.base.schedule_connection_lost(self.this.upgrade(), exc);
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
        if let Some(p) = self.base.protocol() {
            let called = if pause {
                p.pause_writing()
            } else {
                p.resume_writing()
            };
            flow_called(&self.base.loop_, pause, called, self, &p);
        }
    }
}

impl PipeTransport for WritePipeTransport {
    fn call_connection_lost(&self, exc: Option<Error>) -> Result<()> {
        // The watch holds the pipe too.
        self.peer_watch.borrow_mut().take();
        self.base.finish(exc)
    }
}

impl Schedulable for WritePipeTransport {
    fn run(self: Rc<Self>) {
        self.peer_ready();
        self.write_ready();
    }

    fn abandon(self: Rc<Self>) {
        self.base.abandon(&*self);
        self.peer_watch.borrow_mut().take();
        self.base.release();
    }
}

impl BaseTransport for WritePipeTransport {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        self.base.extra_info(name)
    }

    fn is_closing(&self) -> bool {
        self.state.borrow().closing
    }

    /// `write_eof()`: the pipe closes once the buffer is written.
    fn close(&self) {
        if self.base.is_open() && !self.state.borrow().closing {
            let _ = self.write_eof();
        }
    }
}

impl WriteTransport for WritePipeTransport {
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        self.flow.set_limits(high, low)?;
        self.maybe_pause_protocol();
        Ok(())
    }

    fn get_write_buffer_size(&self) -> usize {
        self.state.borrow().buffer.len()
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.flow.limits()
    }

    fn write(&self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut st = self.state.borrow_mut();
        if st.conn_lost > 0 || st.closing {
            if st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                asyncio_core::log::warning(format_args!(
                    "pipe closed by peer or os.write(pipe, data) raised exception."
                ));
            }
            st.conn_lost += 1;
            return Ok(());
        }
        let mut rest = data;
        if st.buffer.is_empty() {
            let Some(pipe) = self.base.pipe() else {
                return Ok(());
            };
            match self.write_now(&pipe, data) {
                Ok(n) if n == data.len() => return Ok(()),
                Ok(n) => {
                    rest = &data[n..];
                    if self.arm_writer(&pipe) {
                        self.base.registration.schedule();
                    }
                }
                Err(e) => {
                    st.conn_lost += 1;
                    drop(st);
                    self.fatal_error(Error::from(e), "Fatal write error on pipe transport");
                    return Ok(());
                }
            }
        }
        st.buffer.extend_from_slice(rest);
        drop(st);
        self.maybe_pause_protocol();
        Ok(())
    }

    fn write_eof(&self) -> Result<()> {
        let lost = {
            let mut st = self.state.borrow_mut();
            if st.closing || !self.base.is_open() {
                return Ok(());
            }
            st.closing = true;
            st.buffer.is_empty()
        };
        if lost {
            self.peer_watch.borrow_mut().take();
            self.base
                .schedule_connection_lost(self.this.upgrade(), None);
        }
        Ok(())
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn abort(&self) {
        self.close_with(None);
    }
}

/// The read half is not there (Python's write pipe transport has no such
/// methods): it never reads.
impl ReadTransport for WritePipeTransport {
    fn is_reading(&self) -> bool {
        false
    }

    fn pause_reading(&self) {}

    fn resume_reading(&self) {}
}

impl Transport for WritePipeTransport {
    fn set_protocol(&self, protocol: StreamProtocolRef) {
        self.base.set_protocol(protocol);
    }

    fn get_protocol(&self) -> Option<StreamProtocolRef> {
        self.base.protocol()
    }
}

impl fmt::Debug for WritePipeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(st) = self.state.try_borrow() else {
            return f.write_str("<_UnixWritePipeTransport>");
        };
        let (mut info, state) = self.base.repr_head(st.closing);
        match state {
            Some(state) => info.push(state.to_owned()),
            None => {
                let polling = !st.buffer.is_empty();
                info.push(if polling { "polling" } else { "idle" }.to_owned());
                info.push(format!("bufsize={}", st.buffer.len()));
            }
        }
        write!(f, "<{}>", info.join(" "))
    }
}

// ----- connect_read_pipe / connect_write_pipe -----

/// Checks the pipe's kind and makes it non-blocking; the protocol is made
/// first, as CPython's `connect_*_pipe` does.
fn open_pipe(pipe: OwnedFd, read: bool) -> Result<(File, PipeKind)> {
    let file = File::from(pipe);
    let Some(kind) = pipe_kind(&file)? else {
        return Err(Error::value(if read {
            "Pipe transport is for pipes/sockets only."
        } else {
            "Pipe transport is only for pipes, sockets and character devices"
        }));
    };
    set_nonblocking(file.as_raw_fd())?;
    Ok((file, kind))
}

pub(crate) async fn connect_read_pipe(
    loop_: EventLoop,
    factory: ConnectionProtocolFactory,
    pipe: OwnedFd,
) -> Result<Rc<dyn ReadTransport>> {
    let protocol = factory()?;
    let (file, _) = open_pipe(pipe, true)?;
    let pipe = register(&loop_, file)?;
    let waiter = Future::<()>::new(&loop_);
    let read_buffer = crate::base_events::read_buffer_of(&loop_)?;
    let transport = ReadPipeTransport::start(&loop_, pipe, protocol, read_buffer, waiter.clone())?;
    if let Err(e) = (&waiter).await {
        transport.close();
        return Err(e);
    }
    if loop_.get_debug() {
        asyncio_core::log::debug(format_args!(
            "Read pipe {} connected: ({transport:?}, {:?})",
            transport.base.fd,
            transport.base.protocol()
        ));
    }
    Ok(transport)
}

pub(crate) async fn connect_write_pipe(
    loop_: EventLoop,
    factory: ConnectionProtocolFactory,
    pipe: OwnedFd,
) -> Result<Rc<dyn WriteTransport>> {
    let protocol = factory()?;
    let (file, kind) = open_pipe(pipe, false)?;
    let pipe = register(&loop_, file)?;
    let waiter = Future::<()>::new(&loop_);
    let transport = WritePipeTransport::start(&loop_, pipe, kind, protocol, waiter.clone())?;
    if let Err(e) = (&waiter).await {
        transport.close();
        return Err(e);
    }
    if loop_.get_debug() {
        asyncio_core::log::debug(format_args!(
            "Write pipe {} connected: ({transport:?}, {:?})",
            transport.base.fd,
            transport.base.protocol()
        ));
    }
    Ok(transport)
}
