//! `StreamWriter` (CPython's `streams.StreamWriter`).

use std::fmt;
use std::rc::Rc;

use super::protocol::StreamWriterProtocol;
use super::reader::StreamReader;
use crate::base_events::EventLoop;
use crate::exceptions::Result;
use crate::transports::{ExtraInfo, Transport};

/// Writes to a connection (Python's `asyncio.StreamWriter`): `write` then
/// `drain().await` for flow control; `close()` then `wait_closed().await`.
///
/// A writer dropped while its transport is still open closes it and, in
/// debug mode, warns `ResourceWarning: unclosed <StreamWriter …>` as
/// CPython's `__del__` does. To share a writer between tasks, put it in an
/// `Rc`.
pub struct StreamWriter {
    transport: std::cell::RefCell<Rc<dyn Transport>>,
    protocol: Rc<dyn StreamWriterProtocol>,
    reader: Option<StreamReader>,
    loop_: EventLoop,
}

impl StreamWriter {
    /// `StreamWriter(transport, protocol, reader, loop)`.
    pub fn new(
        transport: Rc<dyn Transport>,
        protocol: Rc<dyn StreamWriterProtocol>,
        reader: Option<StreamReader>,
        loop_: &EventLoop,
    ) -> StreamWriter {
        StreamWriter {
            transport: std::cell::RefCell::new(transport),
            protocol,
            reader,
            loop_: loop_.non_owning(),
        }
    }

    /// `writer.transport`.
    pub fn transport(&self) -> Rc<dyn Transport> {
        self.transport.borrow().clone()
    }

    /// The protocol under the writer.
    pub fn protocol(&self) -> &Rc<dyn StreamWriterProtocol> {
        &self.protocol
    }

    /// `write(data)`: at once if the buffer is empty, else buffered; follow
    /// with [`drain`](StreamWriter::drain).
    #[inline]
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.transport.borrow().write(data)
    }

    /// `writelines(chunks)`.
    pub fn writelines(&self, chunks: &[&[u8]]) -> Result<()> {
        self.transport().writelines(chunks)
    }

    /// `write_eof()`: closes the write half once the buffer is sent.
    pub fn write_eof(&self) -> Result<()> {
        self.transport().write_eof()
    }

    /// `can_write_eof()`.
    pub fn can_write_eof(&self) -> bool {
        self.transport().can_write_eof()
    }

    /// `close()`: closes the transport (after its buffer is sent).
    pub fn close(&self) {
        self.transport().close();
    }

    /// `is_closing()`.
    pub fn is_closing(&self) -> bool {
        self.transport().is_closing()
    }

    /// `await writer.wait_closed()`: until the connection is lost; raises
    /// its error if it was lost with one.
    pub async fn wait_closed(&self) -> Result<()> {
        self.protocol.close_waiter().await
    }

    /// `get_extra_info(name)`.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        self.transport().get_extra_info(name)
    }

    /// `await writer.drain()`: waits while the transport's buffer is above
    /// its high-water mark.
    ///
    /// Errors: the reader's error if it has one; the connection's error, or
    /// `ConnectionResetError("Connection lost")`, once the connection is
    /// lost. Several tasks may drain at once; all wait.
    pub async fn drain(&self) -> Result<()> {
        if let Some(reader) = &self.reader {
            reader.check_exception()?;
        }
        if self.transport.borrow().is_closing() {
            // Let connection_lost run, so that its error is seen.
            crate::tasks::sleep(0.0).await?;
        }
        match self.protocol.drain_ready() {
            Some(outcome) => outcome,
            None => self.protocol.drain().await,
        }
    }

    /// `await writer.start_tls(sslcontext, server_hostname=…)`: upgrades
    /// the connection to TLS (STARTTLS) after draining what was written;
    /// the writer (and its reader) then carry plaintext over TLS. A
    /// server's stream is the TLS server side.
    ///
    /// Unlike CPython, bytes the reader has buffered and not read yet are
    /// handed to the handshake rather than left in the reader: a peer may
    /// send its ClientHello right behind the STARTTLS line (in CPython that
    /// handshake stalls), but plaintext pipelined after the STARTTLS line
    /// fails the handshake instead of staying readable. Read the plaintext
    /// phase to its end first.
    ///
    /// Errors: those of [`EventLoop::start_tls`].
    #[cfg(feature = "tls")]
    pub async fn start_tls(
        &self,
        sslcontext: &crate::ssl::SslContext,
        server_hostname: Option<&str>,
    ) -> Result<()> {
        self.drain().await?;
        let transport = self.transport();
        let Some(protocol) = transport.get_protocol() else {
            return Err(crate::exceptions::Error::os_subclass(
                "ConnectionResetError",
                "Connection lost",
            ));
        };
        let server_side = protocol
            .downcast::<super::StreamReaderProtocol>()
            .is_some_and(|p| p.is_server_side());
        let mut start = self
            .loop_
            .start_tls(transport, protocol, sslcontext)
            .server_side(server_side);
        if let Some(name) = server_hostname {
            start = start.server_hostname(name);
        }
        // What the peer sent after its last plaintext line is already the
        // start of its TLS stream (a ClientHello right behind STARTTLS).
        if let Some(reader) = &self.reader {
            start = start.initial_data(reader.take_buffered());
        }
        let new_transport = start.await?;
        self.replace_transport(new_transport);
        Ok(())
    }

    /// Switches the writer to another transport (after `start_tls`).
    pub fn replace_transport(&self, transport: Rc<dyn Transport>) {
        self.protocol.replace_transport(transport.clone());
        *self.transport.borrow_mut() = transport;
    }
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = self.transport.try_borrow().map(|t| format!("{t:?}"));
        write!(
            f,
            "<StreamWriter transport={}",
            transport.as_deref().unwrap_or("…")
        )?;
        if let Some(reader) = &self.reader {
            write!(f, " reader={reader:?}")?;
        }
        f.write_str(">")
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let transport = self.transport.get_mut().clone();
        if transport.is_closing() {
            return;
        }
        if self.loop_.is_closed() {
            if self.loop_.get_debug() {
                crate::log::warning(format_args!("ResourceWarning: loop is closed"));
            }
            return;
        }
        transport.close();
        if self.loop_.get_debug() {
            crate::log::warning(format_args!("ResourceWarning: unclosed {self:?}"));
        }
    }
}
