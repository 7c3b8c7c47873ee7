//! Protocols: the callbacks a transport calls (CPython's `protocols.py`).
//!
//! A protocol is a plain struct implementing these traits. The loop makes
//! it with the protocol factory given to `create_connection` /
//! `create_server` and shares it as an `Rc<P>` between the transport and
//! whoever asked for it. Its callbacks take `self: &Rc<Self>`, as a Python
//! method gets `self`:
//!
//! - a callback can be re-entered: a `transport.write()` inside
//!   `data_received` that crosses the high-water mark calls
//!   `pause_writing()` before it returns, exactly as in CPython, so the
//!   producer loop `while !self.paused.get() { transport.write(chunk) }`
//!   stops in time (the buffer never holds more than the high-water mark
//!   plus one write);
//! - a callback can hand its protocol on: `let me = self.clone();
//!   loop_.call_later(0.02, move || me.finish())`, or a task (eager ones
//!   included) that uses it.
//!
//! State the protocol changes lives in `Cell`s and `RefCell`s. Keep a
//! `RefCell` borrow only for a statement or two: a borrow held across a
//! call into the transport (which may call the protocol back) fails with a
//! "already borrowed" panic, which is reported like any callback error.
//!
//! Callbacks return `Result`: an error (or a panic) is what an exception is
//! in Python — the transport reports it and closes, as CPython does.
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use asyncio_core::protocols::{BaseProtocol, Protocol};
//! use asyncio_core::transports::{Transport, WriteTransport};
//!
//! /// Echoes every byte back, like the echo server of the CPython docs.
//! #[derive(Default)]
//! struct EchoServerProtocol {
//!     transport: RefCell<Option<Rc<dyn Transport>>>,
//! }
//!
//! impl BaseProtocol for EchoServerProtocol {}
//!
//! impl Protocol for EchoServerProtocol {
//!     fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> asyncio_core::Result<()> {
//!         *self.transport.borrow_mut() = Some(transport);
//!         Ok(())
//!     }
//!
//!     fn data_received(self: &Rc<Self>, data: &[u8]) -> asyncio_core::Result<()> {
//!         let transport = self.transport.borrow().clone();
//!         match transport {
//!             Some(t) => t.write(data),
//!             None => Ok(()),
//!         }
//!     }
//! }
//! ```

use std::any::{Any, TypeId};
use std::cell::RefMut;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use bytes::BytesMut;

use crate::exceptions::{Error, Result};
use crate::streams::StreamReaderProtocol;
use crate::transports::{DatagramTransport, SubprocessTransport, Transport};
use crate::Address;

/// Callbacks every protocol has (Python's `BaseProtocol`).
pub trait BaseProtocol: 'static {
    /// The connection was lost or closed: `None` for a regular close or EOF,
    /// the error otherwise. Called once, last.
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        let _ = exc;
        Ok(())
    }

    /// The transport's write buffer went over the high-water mark. Called
    /// from inside the `write()` that crossed it, as in CPython.
    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        Ok(())
    }

    /// The transport's write buffer drained to the low-water mark.
    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        Ok(())
    }
}

/// A streaming protocol (TCP, Unix sockets, pipes; Python's `Protocol`).
///
/// Calls arrive in this order: `connection_made`, `data_received`*,
/// `eof_received` (at most once), `connection_lost`.
pub trait Protocol: BaseProtocol {
    /// The connection is set up; keep `transport` to write to it.
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        let _ = transport;
        Ok(())
    }

    /// Some data arrived. The slice is lent for the call only.
    fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        let _ = data;
        Ok(())
    }

    /// The peer closed its sending side. Return `true` to keep the
    /// transport open for writing; `false` (the default) closes it.
    fn eof_received(self: &Rc<Self>) -> Result<bool> {
        Ok(false)
    }
}

/// A streaming protocol that lends its own buffer to the transport, which
/// reads into it directly (Python's `BufferedProtocol`). Use it through
/// [`Buffered`].
pub trait BufferedProtocol: BaseProtocol {
    /// The connection is set up.
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        let _ = transport;
        Ok(())
    }

    /// The buffer for the next read; `sizehint` is the recommended minimum
    /// size (`None`: any). An empty buffer is a fatal error. The buffer is
    /// borrowed (typically from a `RefCell<Vec<u8>>` of the protocol) only
    /// while the transport reads into it.
    fn get_buffer(self: &Rc<Self>, sizehint: Option<usize>) -> Result<RefMut<'_, [u8]>>;

    /// `nbytes` bytes were written into the buffer from `get_buffer`.
    fn buffer_updated(self: &Rc<Self>, nbytes: usize) -> Result<()>;

    /// The peer closed its sending side (see [`Protocol::eof_received`]).
    fn eof_received(self: &Rc<Self>) -> Result<bool> {
        Ok(false)
    }
}

/// A datagram protocol (UDP; Python's `DatagramProtocol`).
pub trait DatagramProtocol: BaseProtocol {
    /// The endpoint is set up.
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn DatagramTransport>) -> Result<()> {
        let _ = transport;
        Ok(())
    }

    /// A datagram arrived from `addr`.
    fn datagram_received(self: &Rc<Self>, data: &[u8], addr: Address) -> Result<()> {
        let _ = (data, addr);
        Ok(())
    }

    /// A previous send or receive failed (e.g. ICMP port unreachable).
    fn error_received(self: &Rc<Self>, exc: Error) -> Result<()> {
        let _ = exc;
        Ok(())
    }
}

/// A protocol for a child process (Python's `SubprocessProtocol`).
pub trait SubprocessProtocol: BaseProtocol {
    /// The process started.
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn SubprocessTransport>) -> Result<()> {
        let _ = transport;
        Ok(())
    }

    /// The child wrote `data` to its stdout (`fd` 1) or stderr (`fd` 2).
    fn pipe_data_received(self: &Rc<Self>, fd: i32, data: &[u8]) -> Result<()> {
        let _ = (fd, data);
        Ok(())
    }

    /// One of the child's pipes closed.
    fn pipe_connection_lost(self: &Rc<Self>, fd: i32, exc: Option<Error>) -> Result<()> {
        let _ = (fd, exc);
        Ok(())
    }

    /// The child exited.
    fn process_exited(self: &Rc<Self>) -> Result<()> {
        Ok(())
    }
}

/// Marks a [`BufferedProtocol`] for a protocol factory:
/// `create_server(|| Buffered(MyProtocol::new()))`.
#[derive(Debug)]
pub struct Buffered<P>(pub P);

/// The calls a transport makes, on a protocol of either kind (the traits
/// above take `self: &Rc<Self>`, so the protocol is reached through this
/// object-safe view of its `Rc`).
trait StreamCalls {
    fn connection_made(&self, transport: Rc<dyn Transport>) -> Result<()>;
    fn data_received(&self, data: &[u8]) -> Result<()>;
    fn read_into(
        &self,
        sizehint: Option<usize>,
        read: &mut dyn FnMut(&mut [u8]) -> ReadOutcome,
    ) -> Result<ReadOutcome>;
    fn buffer_updated(&self, nbytes: usize) -> Result<()>;
    fn read_into_bytes(
        &self,
        _read: &mut dyn FnMut(&mut ReadRoom) -> ReadOutcome,
    ) -> Result<ReadOutcome> {
        Ok(ReadOutcome::Pending)
    }
    fn eof_received(&self) -> Result<bool>;
    fn connection_lost(&self, exc: Option<Error>) -> Result<()>;
    fn pause_writing(&self) -> Result<()>;
    fn resume_writing(&self) -> Result<()>;
}

/// The room one read straight into a stream reader may fill (see
/// [`StreamProtocolRef::read_into_bytes`]): the reader's buffer, whose spare
/// capacity is the size the reader wants the read to be (at most 256 KiB,
/// CPython's `max_size`). Read into `chunk_mut()` and `advance_mut(n)`, or
/// hand it to Tokio's `try_read_buf`.
pub type ReadRoom = BytesMut;

/// What a read into a protocol's buffer gave (see [`StreamProtocolRef::read_into`]).
#[derive(Debug)]
pub enum ReadOutcome {
    /// Nothing to read now.
    Pending,
    /// Try again soon.
    Retry,
    /// This many bytes (0: end of stream).
    Read(usize),
    /// The read failed.
    Failed(std::io::Error),
}

impl ReadOutcome {
    /// The outcome of a non-blocking read: `WouldBlock` is `Pending`,
    /// `Interrupted` is `Retry`.
    #[inline]
    pub fn from_io(read: std::io::Result<usize>) -> ReadOutcome {
        match read {
            Ok(n) => ReadOutcome::Read(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ReadOutcome::Pending,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => ReadOutcome::Retry,
            Err(e) => ReadOutcome::Failed(e),
        }
    }
}

struct Streaming<P>(Rc<P>);
struct BufferedShim<P>(Rc<P>);
impl<P: Protocol> StreamCalls for Streaming<P> {
    fn connection_made(&self, transport: Rc<dyn Transport>) -> Result<()> {
        Protocol::connection_made(&self.0, transport)
    }
    fn data_received(&self, data: &[u8]) -> Result<()> {
        self.0.data_received(data)
    }
    fn read_into(
        &self,
        _sizehint: Option<usize>,
        _read: &mut dyn FnMut(&mut [u8]) -> ReadOutcome,
    ) -> Result<ReadOutcome> {
        Ok(ReadOutcome::Pending)
    }
    fn buffer_updated(&self, _nbytes: usize) -> Result<()> {
        Ok(())
    }
    /// The streams' protocol takes reads straight into its reader (the
    /// type test is resolved at compile time for each `P`).
    fn read_into_bytes(
        &self,
        read: &mut dyn FnMut(&mut ReadRoom) -> ReadOutcome,
    ) -> Result<ReadOutcome> {
        match (&*self.0 as &dyn Any).downcast_ref::<StreamReaderProtocol>() {
            Some(streams) => Ok(streams.read_into_reader(read)),
            None => Ok(ReadOutcome::Pending),
        }
    }
    fn eof_received(&self) -> Result<bool> {
        Protocol::eof_received(&self.0)
    }
    fn connection_lost(&self, exc: Option<Error>) -> Result<()> {
        self.0.connection_lost(exc)
    }
    fn pause_writing(&self) -> Result<()> {
        self.0.pause_writing()
    }
    fn resume_writing(&self) -> Result<()> {
        self.0.resume_writing()
    }
}

impl<P: BufferedProtocol> StreamCalls for BufferedShim<P> {
    fn connection_made(&self, transport: Rc<dyn Transport>) -> Result<()> {
        BufferedProtocol::connection_made(&self.0, transport)
    }
    /// Data read before a switch to this protocol: copied into its buffers.
    fn data_received(&self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = {
                let mut buf = self.0.get_buffer(Some(data.len()))?;
                if buf.is_empty() {
                    return Err(Error::runtime("get_buffer() returned an empty buffer"));
                }
                let n = buf.len().min(data.len());
                buf[..n].copy_from_slice(&data[..n]);
                n
            };
            self.0.buffer_updated(n)?;
            data = &data[n..];
        }
        Ok(())
    }
    fn read_into(
        &self,
        sizehint: Option<usize>,
        read: &mut dyn FnMut(&mut [u8]) -> ReadOutcome,
    ) -> Result<ReadOutcome> {
        let mut buf = self.0.get_buffer(sizehint)?;
        if buf.is_empty() {
            return Err(Error::runtime("get_buffer() returned an empty buffer"));
        }
        Ok(read(&mut buf))
    }
    fn buffer_updated(&self, nbytes: usize) -> Result<()> {
        self.0.buffer_updated(nbytes)
    }
    fn eof_received(&self) -> Result<bool> {
        BufferedProtocol::eof_received(&self.0)
    }
    fn connection_lost(&self, exc: Option<Error>) -> Result<()> {
        self.0.connection_lost(exc)
    }
    fn pause_writing(&self) -> Result<()> {
        self.0.pause_writing()
    }
    fn resume_writing(&self) -> Result<()> {
        self.0.resume_writing()
    }
}

/// A streaming protocol as a transport holds it: a [`Protocol`] or a
/// [`BufferedProtocol`], shared, with its concrete type recoverable.
///
/// Every call catches a panic of the protocol and returns it as an error of
/// kind [`Panic`](crate::ErrorKind::Panic). Calls may nest (a `write()`
/// inside `data_received` calls `pause_writing`): nothing is borrowed.
#[derive(Clone)]
pub struct StreamProtocolRef {
    calls: Rc<dyn StreamCalls>,
    any: Rc<dyn Any>,
    buffered: bool,
    reads_into_bytes: bool,
    name: &'static str,
}

fn guarded<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(Error::panic(&*payload)))
}

impl StreamProtocolRef {
    /// Wraps a shared [`Protocol`].
    pub fn new<P: Protocol>(protocol: Rc<P>) -> StreamProtocolRef {
        StreamProtocolRef {
            calls: Rc::new(Streaming(protocol.clone())),
            any: protocol,
            buffered: false,
            reads_into_bytes: TypeId::of::<P>() == TypeId::of::<StreamReaderProtocol>(),
            name: std::any::type_name::<P>(),
        }
    }

    /// Wraps a shared [`BufferedProtocol`].
    pub fn buffered<P: BufferedProtocol>(protocol: Rc<P>) -> StreamProtocolRef {
        StreamProtocolRef {
            calls: Rc::new(BufferedShim(protocol.clone())),
            any: protocol,
            buffered: true,
            reads_into_bytes: false,
            name: std::any::type_name::<P>(),
        }
    }

    /// The protocol as its concrete type, if it is a `P`.
    pub fn downcast<P: 'static>(&self) -> Option<Rc<P>> {
        self.any.clone().downcast::<P>().ok()
    }

    /// `true` for a [`BufferedProtocol`].
    pub fn is_buffered(&self) -> bool {
        self.buffered
    }

    /// `true` for a protocol that takes its bytes through
    /// [`read_into_bytes`](StreamProtocolRef::read_into_bytes) (the streams'
    /// [`StreamReaderProtocol`]) rather than `data_received`.
    pub fn reads_into_bytes(&self) -> bool {
        self.reads_into_bytes
    }

    /// For a protocol that [`reads_into_bytes`](StreamProtocolRef::reads_into_bytes):
    /// `read` appends to the protocol's own buffer (with room reserved), so
    /// the bytes are not copied (what `data_received` does, minus the copy).
    /// Other protocols: `Pending`.
    pub fn read_into_bytes(
        &self,
        mut read: impl FnMut(&mut ReadRoom) -> ReadOutcome,
    ) -> Result<ReadOutcome> {
        guarded(|| self.calls.read_into_bytes(&mut read))
    }

    /// `true` if both refer to the same protocol object.
    pub fn ptr_eq(&self, other: &StreamProtocolRef) -> bool {
        Rc::ptr_eq(&self.any, &other.any)
    }

    /// The protocol's type name (for reprs and reports).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `connection_made(transport)`.
    pub fn connection_made(&self, transport: Rc<dyn Transport>) -> Result<()> {
        guarded(|| self.calls.connection_made(transport))
    }

    /// `data_received(data)`; a [`BufferedProtocol`] gets the bytes copied
    /// into its buffers (data read just before `set_protocol` switched to one).
    pub fn data_received(&self, data: &[u8]) -> Result<()> {
        guarded(|| self.calls.data_received(data))
    }

    /// For a [`BufferedProtocol`]: `get_buffer(sizehint)`, then `read` into
    /// the buffer while it is lent. Not a buffered protocol: `Pending`.
    /// Errors: the protocol's, and `"get_buffer() returned an empty buffer"`.
    pub fn read_into(
        &self,
        sizehint: Option<usize>,
        mut read: impl FnMut(&mut [u8]) -> ReadOutcome,
    ) -> Result<ReadOutcome> {
        guarded(|| self.calls.read_into(sizehint, &mut read))
    }

    /// `buffer_updated(nbytes)` of a [`BufferedProtocol`].
    pub fn buffer_updated(&self, nbytes: usize) -> Result<()> {
        guarded(|| self.calls.buffer_updated(nbytes))
    }

    /// `eof_received()`.
    pub fn eof_received(&self) -> Result<bool> {
        guarded(|| self.calls.eof_received())
    }

    /// `connection_lost(exc)`.
    pub fn connection_lost(&self, exc: Option<Error>) -> Result<()> {
        guarded(|| self.calls.connection_lost(exc))
    }

    /// `pause_writing()`.
    pub fn pause_writing(&self) -> Result<()> {
        guarded(|| self.calls.pause_writing())
    }

    /// `resume_writing()`.
    pub fn resume_writing(&self) -> Result<()> {
        guarded(|| self.calls.resume_writing())
    }
}

impl fmt::Debug for StreamProtocolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<{} object at {:p}>",
            crate::format_helpers::callable_name(self.name),
            Rc::as_ptr(&self.any) as *const ()
        )
    }
}

/// What a stream protocol factory may return: any [`Protocol`], or a
/// [`BufferedProtocol`] wrapped in [`Buffered`], made by the loop into an
/// `Rc`; or such an `Rc` already (for a protocol made with
/// `Rc::new_cyclic` that keeps a `Weak` of itself).
pub trait IntoStreamProtocol: 'static {
    /// The protocol type the caller gets back.
    type Protocol: 'static;

    /// Shares the protocol: one handle for the transport, one for the caller.
    fn into_stream_protocol(self) -> (StreamProtocolRef, Rc<Self::Protocol>);
}

impl<P: Protocol> IntoStreamProtocol for P {
    type Protocol = P;

    fn into_stream_protocol(self) -> (StreamProtocolRef, Rc<P>) {
        Rc::new(self).into_stream_protocol()
    }
}

impl<P: Protocol> IntoStreamProtocol for Rc<P> {
    type Protocol = P;

    fn into_stream_protocol(self) -> (StreamProtocolRef, Rc<P>) {
        (StreamProtocolRef::new(self.clone()), self)
    }
}

impl<P: BufferedProtocol> IntoStreamProtocol for Buffered<P> {
    type Protocol = P;

    fn into_stream_protocol(self) -> (StreamProtocolRef, Rc<P>) {
        Buffered(Rc::new(self.0)).into_stream_protocol()
    }
}

impl<P: BufferedProtocol> IntoStreamProtocol for Buffered<Rc<P>> {
    type Protocol = P;

    fn into_stream_protocol(self) -> (StreamProtocolRef, Rc<P>) {
        (StreamProtocolRef::buffered(self.0.clone()), self.0)
    }
}

/// The calls a datagram transport makes on its protocol.
trait DatagramCalls {
    fn connection_made(&self, transport: Rc<dyn DatagramTransport>) -> Result<()>;
    fn datagram_received(&self, data: &[u8], addr: Address) -> Result<()>;
    fn error_received(&self, exc: Error) -> Result<()>;
    fn connection_lost(&self, exc: Option<Error>) -> Result<()>;
    fn pause_writing(&self) -> Result<()>;
    fn resume_writing(&self) -> Result<()>;
}

struct DatagramShim<P>(Rc<P>);

impl<P: DatagramProtocol> DatagramCalls for DatagramShim<P> {
    fn connection_made(&self, transport: Rc<dyn DatagramTransport>) -> Result<()> {
        self.0.connection_made(transport)
    }
    fn datagram_received(&self, data: &[u8], addr: Address) -> Result<()> {
        self.0.datagram_received(data, addr)
    }
    fn error_received(&self, exc: Error) -> Result<()> {
        self.0.error_received(exc)
    }
    fn connection_lost(&self, exc: Option<Error>) -> Result<()> {
        self.0.connection_lost(exc)
    }
    fn pause_writing(&self) -> Result<()> {
        self.0.pause_writing()
    }
    fn resume_writing(&self) -> Result<()> {
        self.0.resume_writing()
    }
}

/// A datagram protocol as its transport holds it (see [`StreamProtocolRef`]:
/// every call catches a panic as an error, and calls may nest).
#[derive(Clone)]
pub struct DatagramProtocolRef {
    calls: Rc<dyn DatagramCalls>,
    any: Rc<dyn Any>,
    name: &'static str,
}

impl DatagramProtocolRef {
    /// Wraps a shared [`DatagramProtocol`].
    pub fn new<P: DatagramProtocol>(protocol: Rc<P>) -> DatagramProtocolRef {
        DatagramProtocolRef {
            calls: Rc::new(DatagramShim(protocol.clone())),
            any: protocol,
            name: std::any::type_name::<P>(),
        }
    }

    /// The protocol as its concrete type, if it is a `P`.
    pub fn downcast<P: 'static>(&self) -> Option<Rc<P>> {
        self.any.clone().downcast::<P>().ok()
    }

    /// `connection_made(transport)`.
    pub fn connection_made(&self, transport: Rc<dyn DatagramTransport>) -> Result<()> {
        guarded(|| self.calls.connection_made(transport))
    }

    /// `datagram_received(data, addr)`.
    pub fn datagram_received(&self, data: &[u8], addr: Address) -> Result<()> {
        guarded(|| self.calls.datagram_received(data, addr))
    }

    /// `error_received(exc)`.
    pub fn error_received(&self, exc: Error) -> Result<()> {
        guarded(|| self.calls.error_received(exc))
    }

    /// `connection_lost(exc)`.
    pub fn connection_lost(&self, exc: Option<Error>) -> Result<()> {
        guarded(|| self.calls.connection_lost(exc))
    }

    /// `pause_writing()`.
    pub fn pause_writing(&self) -> Result<()> {
        guarded(|| self.calls.pause_writing())
    }

    /// `resume_writing()`.
    pub fn resume_writing(&self) -> Result<()> {
        guarded(|| self.calls.resume_writing())
    }
}

impl fmt::Debug for DatagramProtocolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<{} object at {:p}>",
            crate::format_helpers::callable_name(self.name),
            Rc::as_ptr(&self.any) as *const ()
        )
    }
}

/// What a datagram protocol factory may return: a [`DatagramProtocol`]
/// (made into an `Rc` by the loop), or such an `Rc`.
pub trait IntoDatagramProtocol: 'static {
    /// The protocol type the caller gets back.
    type Protocol: 'static;

    /// Shares the protocol: one handle for the transport, one for the caller.
    fn into_datagram_protocol(self) -> (DatagramProtocolRef, Rc<Self::Protocol>);
}

impl<P: DatagramProtocol> IntoDatagramProtocol for P {
    type Protocol = P;

    fn into_datagram_protocol(self) -> (DatagramProtocolRef, Rc<P>) {
        Rc::new(self).into_datagram_protocol()
    }
}

impl<P: DatagramProtocol> IntoDatagramProtocol for Rc<P> {
    type Protocol = P;

    fn into_datagram_protocol(self) -> (DatagramProtocolRef, Rc<P>) {
        (DatagramProtocolRef::new(self.clone()), self)
    }
}

/// The calls a subprocess transport makes on its protocol.
trait SubprocessCalls {
    fn connection_made(&self, transport: Rc<dyn SubprocessTransport>) -> Result<()>;
    fn pipe_data_received(&self, fd: i32, data: &[u8]) -> Result<()>;
    fn pipe_connection_lost(&self, fd: i32, exc: Option<Error>) -> Result<()>;
    fn process_exited(&self) -> Result<()>;
    fn connection_lost(&self, exc: Option<Error>) -> Result<()>;
    fn pause_writing(&self) -> Result<()>;
    fn resume_writing(&self) -> Result<()>;
}

struct SubprocessShim<P>(Rc<P>);

impl<P: SubprocessProtocol> SubprocessCalls for SubprocessShim<P> {
    fn connection_made(&self, transport: Rc<dyn SubprocessTransport>) -> Result<()> {
        self.0.connection_made(transport)
    }
    fn pipe_data_received(&self, fd: i32, data: &[u8]) -> Result<()> {
        self.0.pipe_data_received(fd, data)
    }
    fn pipe_connection_lost(&self, fd: i32, exc: Option<Error>) -> Result<()> {
        self.0.pipe_connection_lost(fd, exc)
    }
    fn process_exited(&self) -> Result<()> {
        self.0.process_exited()
    }
    fn connection_lost(&self, exc: Option<Error>) -> Result<()> {
        self.0.connection_lost(exc)
    }
    fn pause_writing(&self) -> Result<()> {
        self.0.pause_writing()
    }
    fn resume_writing(&self) -> Result<()> {
        self.0.resume_writing()
    }
}

/// A subprocess protocol as its transport holds it (see
/// [`StreamProtocolRef`]: every call catches a panic as an error).
#[derive(Clone)]
pub struct SubprocessProtocolRef {
    calls: Rc<dyn SubprocessCalls>,
    any: Rc<dyn Any>,
    name: &'static str,
}

impl SubprocessProtocolRef {
    /// Wraps a shared [`SubprocessProtocol`].
    pub fn new<P: SubprocessProtocol>(protocol: Rc<P>) -> SubprocessProtocolRef {
        SubprocessProtocolRef {
            calls: Rc::new(SubprocessShim(protocol.clone())),
            any: protocol,
            name: std::any::type_name::<P>(),
        }
    }

    /// The protocol as its concrete type, if it is a `P`.
    pub fn downcast<P: 'static>(&self) -> Option<Rc<P>> {
        self.any.clone().downcast::<P>().ok()
    }

    /// `connection_made(transport)`.
    pub fn connection_made(&self, transport: Rc<dyn SubprocessTransport>) -> Result<()> {
        guarded(|| self.calls.connection_made(transport))
    }

    /// `pipe_data_received(fd, data)`.
    pub fn pipe_data_received(&self, fd: i32, data: &[u8]) -> Result<()> {
        guarded(|| self.calls.pipe_data_received(fd, data))
    }

    /// `pipe_connection_lost(fd, exc)`.
    pub fn pipe_connection_lost(&self, fd: i32, exc: Option<Error>) -> Result<()> {
        guarded(|| self.calls.pipe_connection_lost(fd, exc))
    }

    /// `process_exited()`.
    pub fn process_exited(&self) -> Result<()> {
        guarded(|| self.calls.process_exited())
    }

    /// `connection_lost(exc)`.
    pub fn connection_lost(&self, exc: Option<Error>) -> Result<()> {
        guarded(|| self.calls.connection_lost(exc))
    }

    /// `pause_writing()` (the child's stdin pipe is full).
    pub fn pause_writing(&self) -> Result<()> {
        guarded(|| self.calls.pause_writing())
    }

    /// `resume_writing()`.
    pub fn resume_writing(&self) -> Result<()> {
        guarded(|| self.calls.resume_writing())
    }
}

impl fmt::Debug for SubprocessProtocolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<{} object at {:p}>",
            crate::format_helpers::callable_name(self.name),
            Rc::as_ptr(&self.any) as *const ()
        )
    }
}

/// What a subprocess protocol factory may return: a [`SubprocessProtocol`]
/// (made into an `Rc` by the loop), or such an `Rc`.
pub trait IntoSubprocessProtocol: 'static {
    /// The protocol type the caller gets back.
    type Protocol: 'static;

    /// Shares the protocol: one handle for the transport, one for the caller.
    fn into_subprocess_protocol(self) -> (SubprocessProtocolRef, Rc<Self::Protocol>);
}

impl<P: SubprocessProtocol> IntoSubprocessProtocol for P {
    type Protocol = P;

    fn into_subprocess_protocol(self) -> (SubprocessProtocolRef, Rc<P>) {
        Rc::new(self).into_subprocess_protocol()
    }
}

impl<P: SubprocessProtocol> IntoSubprocessProtocol for Rc<P> {
    type Protocol = P;

    fn into_subprocess_protocol(self) -> (SubprocessProtocolRef, Rc<P>) {
        (SubprocessProtocolRef::new(self.clone()), self)
    }
}
