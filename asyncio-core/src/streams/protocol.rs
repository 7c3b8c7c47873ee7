//! `StreamReaderProtocol` and its flow control (CPython's
//! `streams.StreamReaderProtocol` and `FlowControlMixin`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::{Rc, Weak};

use super::reader::{ReaderState, StreamReader};
use super::writer::StreamWriter;
use crate::base_events::{EventLoop, LocalBoxFuture};
use crate::exception_context::{ContextValue, ExceptionContext};
use crate::exceptions::{Error, Result};
use crate::futures::Future;
use crate::protocols::{BaseProtocol, Protocol};
use crate::tasks::Task;
use crate::transports::Transport;

/// What a `client_connected_cb` gave back: done, or a coroutine to run as
/// a task.
pub enum ClientStart {
    /// A plain function's result.
    Done(Result<()>),
    /// A coroutine, run as a task tracked by the protocol.
    Coroutine(LocalBoxFuture<'static, Result<()>>),
}

impl fmt::Debug for ClientStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientStart::Done(r) => f.debug_tuple("Done").field(r).finish(),
            ClientStart::Coroutine(_) => f.write_str("Coroutine(..)"),
        }
    }
}

/// CPython's `FlowControlMixin`: the state `drain()` waits on, shared by
/// the stream protocols.
pub(crate) struct FlowControl {
    loop_: EventLoop,
    paused: Cell<bool>,
    drain_waiters: RefCell<VecDeque<Future<()>>>,
    connection_lost: Cell<bool>,
}

impl FlowControl {
    pub(crate) fn new(loop_: &EventLoop) -> FlowControl {
        FlowControl {
            loop_: loop_.non_owning(),
            paused: Cell::new(false),
            drain_waiters: RefCell::new(VecDeque::new()),
            connection_lost: Cell::new(false),
        }
    }

    pub(crate) fn pause_writing(&self, protocol: &dyn fmt::Debug) {
        self.paused.set(true);
        if self.loop_.get_debug() {
            crate::log::debug(format_args!("{protocol:?} pauses writing"));
        }
    }

    pub(crate) fn resume_writing(&self, protocol: &dyn fmt::Debug) {
        self.paused.set(false);
        if self.loop_.get_debug() {
            crate::log::debug(format_args!("{protocol:?} resumes writing"));
        }
        let waiters: Vec<Future<()>> = self.drain_waiters.borrow().iter().cloned().collect();
        for waiter in waiters {
            if !waiter.done() {
                let _ = waiter.set_result(());
            }
        }
    }

    /// Wakes the paused writers: with `exc`, or normally.
    pub(crate) fn connection_lost(&self, exc: Option<&Error>) {
        self.connection_lost.set(true);
        if !self.paused.get() {
            return;
        }
        let waiters: Vec<Future<()>> = self.drain_waiters.borrow().iter().cloned().collect();
        for waiter in waiters {
            if !waiter.done() {
                let _ = match exc {
                    None => waiter.set_result(()),
                    Some(e) => waiter.set_exception(e.clone()),
                };
            }
        }
    }

    /// What `_drain_helper` gives without waiting, if it need not wait.
    pub(crate) fn drain_ready(&self) -> Option<Result<()>> {
        if self.connection_lost.get() {
            return Some(Err(Error::os_subclass(
                "ConnectionResetError",
                "Connection lost",
            )));
        }
        (!self.paused.get()).then_some(Ok(()))
    }

    /// CPython's `_drain_helper`: waits while writing is paused.
    ///
    /// Errors: `ConnectionResetError("Connection lost")` once the connection
    /// is lost; the connection's error if it is lost while waiting.
    pub(crate) async fn drain_helper(&self) -> Result<()> {
        if self.connection_lost.get() {
            return Err(Error::os_subclass(
                "ConnectionResetError",
                "Connection lost",
            ));
        }
        if !self.paused.get() {
            return Ok(());
        }
        let waiter = Future::<()>::new(&self.loop_);
        self.drain_waiters.borrow_mut().push_back(waiter.clone());
        struct Remove<'a>(&'a FlowControl, Future<()>);
        impl Drop for Remove<'_> {
            fn drop(&mut self) {
                self.0
                    .drain_waiters
                    .borrow_mut()
                    .retain(|w| !w.ptr_eq(&self.1));
            }
        }
        let _remove = Remove(self, waiter.clone());
        waiter.await
    }
}

/// What a [`StreamWriter`] needs from the protocol under it (CPython's
/// `FlowControlMixin._drain_helper` and `_get_close_waiter`).
pub trait StreamWriterProtocol: fmt::Debug {
    /// `drain()`'s outcome when it need not wait (writing not paused, or
    /// the connection lost); `None` when [`drain`](StreamWriterProtocol::drain)
    /// must wait.
    fn drain_ready(&self) -> Option<Result<()>>;

    /// Waits while the transport's writing is paused.
    fn drain(&self) -> LocalBoxFuture<'_, Result<()>>;

    /// The future `wait_closed()` waits for.
    fn close_waiter(&self) -> Future<()>;

    /// The writer moved to another transport (`start_tls`).
    fn replace_transport(&self, transport: Rc<dyn Transport>) {
        let _ = transport;
    }
}

/// The server's `client_connected_cb`, shared by its connections.
pub type ClientConnected = Rc<dyn Fn(StreamReader, StreamWriter) -> ClientStart>;

/// The protocol under a stream pair (Python's `StreamReaderProtocol`):
/// feeds its [`StreamReader`] and gives [`StreamWriter::drain`] its flow
/// control. As in CPython 3.12+, it holds its reader weakly (strongly only
/// until a server's callback has it), so a reader nobody keeps is dropped.
pub struct StreamReaderProtocol {
    this: Weak<StreamReaderProtocol>,
    loop_: EventLoop,
    flow: FlowControl,
    reader: RefCell<Option<Weak<ReaderState>>>,
    strong_reader: RefCell<Option<StreamReader>>,
    client_connected: Option<ClientConnected>,
    task: RefCell<Option<Task<()>>>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    closed: Future<()>,
    /// CPython's `_over_ssl`: over TLS, `eof_received` returns false (TLS
    /// has no half-close, and `sslproto` warns about a true).
    over_ssl: Cell<bool>,
}

impl StreamReaderProtocol {
    /// `StreamReaderProtocol(reader, client_connected_cb, loop=loop_)`.
    pub fn new(
        loop_: &EventLoop,
        reader: Option<&StreamReader>,
        client_connected: Option<ClientConnected>,
    ) -> Rc<StreamReaderProtocol> {
        let strong = if client_connected.is_some() {
            reader.cloned()
        } else {
            None
        };
        Rc::new_cyclic(|this| StreamReaderProtocol {
            this: this.clone(),
            loop_: loop_.non_owning(),
            flow: FlowControl::new(loop_),
            reader: RefCell::new(reader.map(StreamReader::downgrade)),
            strong_reader: RefCell::new(strong),
            client_connected,
            task: RefCell::new(None),
            transport: RefCell::new(None),
            closed: Future::new(loop_),
            over_ssl: Cell::new(false),
        })
    }

    /// `data_received` without the copy: `read` appends to the reader's
    /// buffer (or to a scratch buffer, dropped, when there is no reader).
    pub(crate) fn read_into_reader(
        &self,
        read: &mut dyn FnMut(&mut crate::protocols::ReadRoom) -> crate::protocols::ReadOutcome,
    ) -> crate::protocols::ReadOutcome {
        let reader = self.reader.borrow().as_ref().and_then(Weak::upgrade);
        match reader {
            Some(state) => StreamReader::from_state(state).read_into_buffer(read),
            None => read(&mut bytes::BytesMut::with_capacity(4096)),
        }
    }

    fn stream_reader(&self) -> Option<StreamReader> {
        let weak = self.reader.borrow().clone()?;
        weak.upgrade().map(StreamReader::from_state)
    }

    /// `true` for a server's protocol (`start_tls` is then server-side).
    pub fn is_server_side(&self) -> bool {
        self.client_connected.is_some()
    }

    /// The task running a server's coroutine callback, while it runs.
    pub fn task(&self) -> Option<Task<()>> {
        self.task.borrow().clone()
    }

    fn start_client(
        &self,
        transport: &Rc<dyn Transport>,
        reader: Option<StreamReader>,
    ) -> Result<()> {
        let (Some(callback), Some(me)) = (self.client_connected.clone(), self.this.upgrade())
        else {
            return Ok(());
        };
        let Some(reader) = reader else {
            return Ok(());
        };
        let writer = StreamWriter::new(transport.clone(), me, Some(reader.clone()), &self.loop_);
        let started = callback(reader, writer);
        self.strong_reader.borrow_mut().take();
        match started {
            ClientStart::Done(outcome) => outcome,
            ClientStart::Coroutine(coro) => {
                let task = self.loop_.create_task(coro)?;
                let t = transport.clone();
                let l = self.loop_.clone();
                task.as_future().add_done_callback(move |fut| {
                    if fut.cancelled() {
                        t.close();
                        return;
                    }
                    if let Ok(Some(exc)) = fut.exception() {
                        let mut ctx =
                            ExceptionContext::new("Unhandled exception in client_connected_cb");
                        ctx.exception = Some(exc);
                        ctx.set("transport", ContextValue::Text(format!("{t:?}")));
                        l.call_exception_handler(ctx);
                        t.close();
                    }
                });
                *self.task.borrow_mut() = Some(task);
                Ok(())
            }
        }
    }
}

impl BaseProtocol for StreamReaderProtocol {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        if let Some(reader) = self.stream_reader() {
            match &exc {
                None => reader.feed_eof(),
                Some(e) => reader.set_exception(e.clone()),
            }
        }
        if !self.closed.done() {
            let _ = match &exc {
                None => self.closed.set_result(()),
                Some(e) => self.closed.set_exception(e.clone()),
            };
        }
        self.flow.connection_lost(exc.as_ref());
        self.reader.borrow_mut().take();
        self.task.borrow_mut().take();
        self.transport.borrow_mut().take();
        Ok(())
    }

    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        self.flow.pause_writing(&**self);
        Ok(())
    }

    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        self.flow.resume_writing(&**self);
        Ok(())
    }
}

impl Protocol for StreamReaderProtocol {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        self.over_ssl.set(is_over_ssl(&*transport));
        *self.transport.borrow_mut() = Some(transport.clone());
        let reader = self.stream_reader();
        if let Some(reader) = &reader {
            reader.set_transport(transport.clone())?;
        }
        self.start_client(&transport, reader)
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        if let Some(reader) = self.stream_reader() {
            reader.feed_data(data);
        }
        Ok(())
    }

    fn eof_received(self: &Rc<Self>) -> Result<bool> {
        if let Some(reader) = self.stream_reader() {
            reader.feed_eof();
        }
        Ok(!self.over_ssl.get())
    }
}

impl StreamWriterProtocol for StreamReaderProtocol {
    fn drain_ready(&self) -> Option<Result<()>> {
        self.flow.drain_ready()
    }

    fn drain(&self) -> LocalBoxFuture<'_, Result<()>> {
        Box::pin(self.flow.drain_helper())
    }

    fn close_waiter(&self) -> Future<()> {
        self.closed.clone()
    }

    fn replace_transport(&self, transport: Rc<dyn Transport>) {
        self.over_ssl.set(is_over_ssl(&*transport));
        *self.transport.borrow_mut() = Some(transport);
    }
}

/// `transport.get_extra_info('sslcontext') is not None`.
fn is_over_ssl(transport: &dyn Transport) -> bool {
    transport.get_extra_info("sslcontext").is_some()
}

impl fmt::Debug for StreamReaderProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<asyncio.streams.StreamReaderProtocol object at {:p}>",
            self as *const _
        )
    }
}
