//! Protocols: the callbacks a transport calls (CPython's `protocols.py`).
//!
//! A protocol is a plain struct implementing these traits; the loop makes it
//! with the protocol factory given to `create_connection`/`create_server`
//! and keeps it in an `Rc<RefCell<_>>` shared by the transport and whoever
//! asked for it. Callbacks take `&mut self` and return `Result`: an error (or
//! a panic) in a callback is what an exception is in Python — the transport
//! reports it and closes, as CPython does.
//!
//! ```
//! use std::rc::Rc;
//! use asyncio_core::protocols::{BaseProtocol, Protocol};
//! use asyncio_core::transports::{Transport, WriteTransport};
//!
//! /// Echoes every byte back, like the echo server of the CPython docs.
//! #[derive(Default)]
//! struct EchoServerProtocol {
//!     transport: Option<Rc<dyn Transport>>,
//! }
//!
//! impl BaseProtocol for EchoServerProtocol {}
//!
//! impl Protocol for EchoServerProtocol {
//!     fn connection_made(&mut self, transport: Rc<dyn Transport>) -> asyncio_core::Result<()> {
//!         self.transport = Some(transport);
//!         Ok(())
//!     }
//!
//!     fn data_received(&mut self, data: &[u8]) -> asyncio_core::Result<()> {
//!         match &self.transport {
//!             Some(t) => t.write(data),
//!             None => Ok(()),
//!         }
//!     }
//! }
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use crate::exceptions::{Error, Result};
use crate::transports::{DatagramTransport, SubprocessTransport, Transport};
use crate::Address;

/// Callbacks every protocol has (Python's `BaseProtocol`).
pub trait BaseProtocol: 'static {
    /// The connection was lost or closed: `None` for a regular close or EOF,
    /// the error otherwise. Called once, last.
    fn connection_lost(&mut self, exc: Option<Error>) -> Result<()> {
        let _ = exc;
        Ok(())
    }

    /// The transport's write buffer went over the high-water mark.
    ///
    /// When a write made inside one of this protocol's own callbacks crosses
    /// the mark, the call arrives right after that callback returns (the
    /// protocol is borrowed until then); a callback that writes in a loop
    /// should also stop once `get_write_buffer_size()` passes the mark.
    fn pause_writing(&mut self) -> Result<()> {
        Ok(())
    }

    /// The transport's write buffer drained to the low-water mark.
    fn resume_writing(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A streaming protocol (TCP, Unix sockets, pipes; Python's `Protocol`).
///
/// Calls arrive in this order: `connection_made`, `data_received`*,
/// `eof_received` (at most once), `connection_lost`.
pub trait Protocol: BaseProtocol {
    /// The connection is set up; keep `transport` to write to it.
    fn connection_made(&mut self, transport: Rc<dyn Transport>) -> Result<()> {
        let _ = transport;
        Ok(())
    }

    /// Some data arrived. The slice is lent for the call only.
    fn data_received(&mut self, data: &[u8]) -> Result<()> {
        let _ = data;
        Ok(())
    }

    /// The peer closed its sending side. Return `true` to keep the
    /// transport open for writing; `false` (the default) closes it.
    fn eof_received(&mut self) -> Result<bool> {
        Ok(false)
    }
}

/// A streaming protocol that lends its own buffer to the transport, which
/// reads into it directly (Python's `BufferedProtocol`). Use it through
/// [`Buffered`].
pub trait BufferedProtocol: BaseProtocol {
    /// The connection is set up.
    fn connection_made(&mut self, transport: Rc<dyn Transport>) -> Result<()> {
        let _ = transport;
        Ok(())
    }

    /// The buffer for the next read; `sizehint` is the recommended minimum
    /// size (`None`: any). An empty buffer is a fatal error.
    fn get_buffer(&mut self, sizehint: Option<usize>) -> Result<&mut [u8]>;

    /// `nbytes` bytes were written into the buffer from `get_buffer`.
    fn buffer_updated(&mut self, nbytes: usize) -> Result<()>;

    /// The peer closed its sending side (see [`Protocol::eof_received`]).
    fn eof_received(&mut self) -> Result<bool> {
        Ok(false)
    }
}

/// A datagram protocol (UDP; Python's `DatagramProtocol`).
pub trait DatagramProtocol: BaseProtocol {
    /// The endpoint is set up.
    fn connection_made(&mut self, transport: Rc<dyn DatagramTransport>) -> Result<()> {
        let _ = transport;
        Ok(())
    }

    /// A datagram arrived from `addr`.
    fn datagram_received(&mut self, data: &[u8], addr: Address) -> Result<()> {
        let _ = (data, addr);
        Ok(())
    }

    /// A previous send or receive failed (e.g. ICMP port unreachable).
    fn error_received(&mut self, exc: Error) -> Result<()> {
        let _ = exc;
        Ok(())
    }
}

/// A protocol for a child process (Python's `SubprocessProtocol`).
pub trait SubprocessProtocol: BaseProtocol {
    /// The process started.
    fn connection_made(&mut self, transport: Rc<dyn SubprocessTransport>) -> Result<()> {
        let _ = transport;
        Ok(())
    }

    /// The child wrote `data` to its stdout (`fd` 1) or stderr (`fd` 2).
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) -> Result<()> {
        let _ = (fd, data);
        Ok(())
    }

    /// One of the child's pipes closed.
    fn pipe_connection_lost(&mut self, fd: i32, exc: Option<Error>) -> Result<()> {
        let _ = (fd, exc);
        Ok(())
    }

    /// The child exited.
    fn process_exited(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Marks a [`BufferedProtocol`] for a protocol factory:
/// `create_server(|| Buffered(MyProtocol::new()))`.
#[derive(Debug)]
pub struct Buffered<P>(pub P);

#[derive(Clone)]
enum Kind {
    Streaming(Rc<RefCell<dyn Protocol>>),
    Buffered(Rc<RefCell<dyn BufferedProtocol>>),
}

/// A streaming protocol as a transport holds it: a [`Protocol`] or a
/// [`BufferedProtocol`], shared, with its concrete type recoverable.
#[derive(Clone)]
pub struct StreamProtocolRef {
    kind: Kind,
    any: Rc<dyn Any>,
    name: &'static str,
}

impl StreamProtocolRef {
    /// Wraps a shared [`Protocol`].
    pub fn new<P: Protocol>(protocol: Rc<RefCell<P>>) -> StreamProtocolRef {
        StreamProtocolRef {
            kind: Kind::Streaming(protocol.clone()),
            any: protocol,
            name: std::any::type_name::<P>(),
        }
    }

    /// Wraps a shared [`BufferedProtocol`].
    pub fn buffered<P: BufferedProtocol>(protocol: Rc<RefCell<P>>) -> StreamProtocolRef {
        StreamProtocolRef {
            kind: Kind::Buffered(protocol.clone()),
            any: protocol,
            name: std::any::type_name::<P>(),
        }
    }

    /// The protocol as its concrete type, if it is a `P`.
    pub fn downcast<P: 'static>(&self) -> Option<Rc<RefCell<P>>> {
        self.any.clone().downcast::<RefCell<P>>().ok()
    }

    /// `true` for a [`BufferedProtocol`].
    pub fn is_buffered(&self) -> bool {
        matches!(self.kind, Kind::Buffered(_))
    }

    /// `true` if both refer to the same protocol object.
    pub fn ptr_eq(&self, other: &StreamProtocolRef) -> bool {
        Rc::ptr_eq(&self.any, &other.any)
    }

    /// The protocol's type name (for reprs and reports).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Calls `f` with the protocol borrowed mutably, as whichever kind it is.
    ///
    /// Errors: `RuntimeError` if the protocol is already borrowed (a callback
    /// re-entering its own protocol, see [`is_busy`](StreamProtocolRef::is_busy));
    /// a [`Panic`](crate::ErrorKind::Panic) error if `f` panics.
    pub fn with<R>(&self, f: impl FnOnce(ProtocolMut<'_>) -> R) -> Result<R> {
        let busy = || Error::runtime(format!("protocol {} is already in use", self.name));
        let outcome = match &self.kind {
            Kind::Streaming(p) => {
                let Ok(mut g) = p.try_borrow_mut() else {
                    return Err(busy());
                };
                catch_unwind(AssertUnwindSafe(|| f(ProtocolMut::Streaming(&mut *g))))
            }
            Kind::Buffered(p) => {
                let Ok(mut g) = p.try_borrow_mut() else {
                    return Err(busy());
                };
                catch_unwind(AssertUnwindSafe(|| f(ProtocolMut::Buffered(&mut *g))))
            }
        };
        outcome.map_err(|payload| Error::panic(&*payload))
    }

    /// `true` while the protocol is borrowed (inside one of its callbacks).
    pub fn is_busy(&self) -> bool {
        match &self.kind {
            Kind::Streaming(p) => p.try_borrow_mut().is_err(),
            Kind::Buffered(p) => p.try_borrow_mut().is_err(),
        }
    }
}

impl fmt::Debug for StreamProtocolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<{} object at {:p}>",
            self.name,
            Rc::as_ptr(&self.any) as *const ()
        )
    }
}

/// A borrowed streaming protocol of either kind.
pub enum ProtocolMut<'a> {
    /// A [`Protocol`].
    Streaming(&'a mut dyn Protocol),
    /// A [`BufferedProtocol`].
    Buffered(&'a mut dyn BufferedProtocol),
}

impl fmt::Debug for ProtocolMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolMut::Streaming(_) => f.write_str("ProtocolMut::Streaming"),
            ProtocolMut::Buffered(_) => f.write_str("ProtocolMut::Buffered"),
        }
    }
}

impl ProtocolMut<'_> {
    /// `BaseProtocol` view of the protocol.
    pub fn base(&mut self) -> &mut dyn BaseProtocol {
        match self {
            ProtocolMut::Streaming(p) => as_base(*p),
            ProtocolMut::Buffered(p) => as_base_buffered(*p),
        }
    }

    /// `connection_made`, for either kind.
    pub fn connection_made(&mut self, transport: Rc<dyn Transport>) -> Result<()> {
        match self {
            ProtocolMut::Streaming(p) => p.connection_made(transport),
            ProtocolMut::Buffered(p) => p.connection_made(transport),
        }
    }

    /// `eof_received`, for either kind.
    pub fn eof_received(&mut self) -> Result<bool> {
        match self {
            ProtocolMut::Streaming(p) => p.eof_received(),
            ProtocolMut::Buffered(p) => p.eof_received(),
        }
    }
}

fn as_base(p: &mut dyn Protocol) -> &mut dyn BaseProtocol {
    p
}

fn as_base_buffered(p: &mut dyn BufferedProtocol) -> &mut dyn BaseProtocol {
    p
}

/// What a stream protocol factory may return: any [`Protocol`], or a
/// [`BufferedProtocol`] wrapped in [`Buffered`].
pub trait IntoStreamProtocol: 'static {
    /// The protocol type the caller gets back.
    type Protocol: 'static;

    /// Shares the protocol: one handle for the transport, one for the caller.
    fn into_stream_protocol(self) -> (StreamProtocolRef, Rc<RefCell<Self::Protocol>>);
}

impl<P: Protocol> IntoStreamProtocol for P {
    type Protocol = P;

    fn into_stream_protocol(self) -> (StreamProtocolRef, Rc<RefCell<P>>) {
        let rc = Rc::new(RefCell::new(self));
        (StreamProtocolRef::new(rc.clone()), rc)
    }
}

impl<P: BufferedProtocol> IntoStreamProtocol for Buffered<P> {
    type Protocol = P;

    fn into_stream_protocol(self) -> (StreamProtocolRef, Rc<RefCell<P>>) {
        let rc = Rc::new(RefCell::new(self.0));
        (StreamProtocolRef::buffered(rc.clone()), rc)
    }
}
