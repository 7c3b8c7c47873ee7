//! `loop.connect_read_pipe` and `loop.connect_write_pipe` (CPython's
//! `base_events.py`; the transports are `unix_events.py`'s).

use std::os::fd::OwnedFd;
use std::rc::Rc;

use super::network::{connection_factory, take_protocol};
use super::EventLoop;
use crate::exceptions::Result;
use crate::protocols::IntoStreamProtocol;
use crate::transports::{ReadTransport, WriteTransport};

impl EventLoop {
    /// `await loop.connect_read_pipe(protocol_factory, pipe)`: reads the
    /// pipe (a pipe, FIFO, socket, character device or PTY; anything that
    /// converts into an `OwnedFd`: `File`, `ChildStdout`, `UnixStream`…)
    /// into the protocol's `data_received`, then `eof_received` and
    /// `connection_lost(None)` at its end. The transport owns the
    /// descriptor and sets it non-blocking.
    ///
    /// Errors: `ValueError("Pipe transport is for pipes/sockets only.")`
    /// for a regular file.
    ///
    /// The protocol's `connection_made` gets the transport as an
    /// `Rc<dyn Transport>`; its write half raises `AttributeError`, as the
    /// Python object has no such methods.
    ///
    /// ```no_run
    /// # async fn f(loop_: asyncio_core::EventLoop, file: std::fs::File) -> asyncio_core::Result<()> {
    /// # struct Reader;
    /// # impl asyncio_core::protocols::BaseProtocol for Reader {}
    /// # impl asyncio_core::protocols::Protocol for Reader {}
    /// let (transport, protocol) = loop_.connect_read_pipe(|| Reader, file).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_read_pipe<F, P>(
        &self,
        protocol_factory: F,
        pipe: impl Into<OwnedFd>,
    ) -> Result<(Rc<dyn ReadTransport>, Rc<P::Protocol>)>
    where
        F: FnOnce() -> P + 'static,
        P: IntoStreamProtocol,
    {
        let pipe = pipe.into();
        let (factory, slot) = connection_factory(protocol_factory);
        let transport = self
            .network()?
            .connect_read_pipe(self, factory, pipe)
            .await?;
        Ok((transport, take_protocol(&slot)?))
    }

    /// `await loop.connect_write_pipe(protocol_factory, pipe)`: a write
    /// transport on the pipe, buffering and flow-controlled like a
    /// socket's; `write_eof()` and `close()` close the pipe once the buffer
    /// is written, and the reader going away ends the transport
    /// (`connection_lost`, with `BrokenPipeError` if data was left).
    ///
    /// Errors: `ValueError("Pipe transport is only for pipes, sockets and
    /// character devices")` for a regular file.
    ///
    /// ```no_run
    /// # async fn f(loop_: asyncio_core::EventLoop, stdin: std::process::ChildStdin) -> asyncio_core::Result<()> {
    /// # struct Writer;
    /// # impl asyncio_core::protocols::BaseProtocol for Writer {}
    /// # impl asyncio_core::protocols::Protocol for Writer {}
    /// let (transport, _protocol) = loop_.connect_write_pipe(|| Writer, stdin).await?;
    /// transport.write(b"hello\n")?;
    /// transport.close();
    /// # Ok(()) }
    /// ```
    pub async fn connect_write_pipe<F, P>(
        &self,
        protocol_factory: F,
        pipe: impl Into<OwnedFd>,
    ) -> Result<(Rc<dyn WriteTransport>, Rc<P::Protocol>)>
    where
        F: FnOnce() -> P + 'static,
        P: IntoStreamProtocol,
    {
        let pipe = pipe.into();
        let (factory, slot) = connection_factory(protocol_factory);
        let transport = self
            .network()?
            .connect_write_pipe(self, factory, pipe)
            .await?;
        Ok((transport, take_protocol(&slot)?))
    }
}
