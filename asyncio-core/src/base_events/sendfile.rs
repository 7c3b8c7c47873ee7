//! `loop.sock_sendfile` (CPython's `base_events.sock_sendfile` and the
//! Unix loop's `_sock_sendfile_native`): `sendfile(2)` on a stream socket,
//! else reading and sending in chunks.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::future::IntoFuture;
use std::io::{self, Seek, SeekFrom};
use std::num::NonZeroUsize;
use std::rc::Rc;

use super::network::LocalBoxFuture;
use super::sock::would_block;
use super::EventLoop;
use crate::exceptions::{Error, ErrorKind, Result};
use crate::futures::Future;
use crate::protocols::{BaseProtocol, Protocol, StreamProtocolRef};
use crate::socket::{Socket, SOCK_STREAM};
use crate::transports::{SendfileMode, Transport};

/// Linux's `ENOTCONN`.
const ENOTCONN: i32 = 107;

/// CPython's `constants.SENDFILE_FALLBACK_READBUFFER_SIZE`: 256 KiB.
pub const SENDFILE_FALLBACK_READBUFFER_SIZE: usize = 256 * 1024;

/// The builder of [`EventLoop::sock_sendfile`]; await it for the number of
/// bytes sent.
#[derive(Debug)]
pub struct SockSendfile<'a> {
    loop_: EventLoop,
    sock: &'a Socket,
    file: &'a File,
    offset: u64,
    count: Option<u64>,
    fallback: bool,
}

impl EventLoop {
    /// `await loop.sock_sendfile(sock, file, offset=0, count=None,
    /// fallback=True)`: sends `file` (from `offset`, `count` bytes or to
    /// its end) on the connected stream socket `sock`, with zero-copy
    /// `sendfile(2)`; the number of bytes sent. Where `sendfile(2)` cannot
    /// serve (the file is not a regular file, …) it reads and sends in
    /// 256 KiB chunks, or with `fallback(false)` fails with
    /// `SendfileNotAvailableError`. (CPython sends nothing at all for a
    /// pipe or another non-regular file, whose size is 0; here the
    /// fallback reads it to its end.) Afterwards the file's position is just
    /// past the last byte sent, as in CPython (unchanged if nothing was).
    ///
    /// Errors: `ValueError("only SOCK_STREAM type sockets are supported")`,
    /// `ValueError("count must be a positive integer (got 0)")`, the
    /// socket's errors; in debug mode `"the socket must be non-blocking"`.
    ///
    /// ```no_run
    /// # async fn f(loop_: asyncio_core::EventLoop, sock: asyncio_core::socket::Socket) -> asyncio_core::Result<()> {
    /// let file = std::fs::File::open("/etc/hosts")?;
    /// let sent = loop_.sock_sendfile(&sock, &file).offset(10).count(100).await?;
    /// # Ok(()) }
    /// ```
    pub fn sock_sendfile<'a>(&self, sock: &'a Socket, file: &'a File) -> SockSendfile<'a> {
        SockSendfile {
            loop_: self.non_owning(),
            sock,
            file,
            offset: 0,
            count: None,
            fallback: true,
        }
    }
}

/// The keyword arguments `offset=`, `count=`, `fallback=` of both
/// sendfile calls.
macro_rules! sendfile_setters {
    ($($builder:ident),*) => {$(
        impl $builder<'_> {
            /// `offset=`: where in the file to start.
            pub fn offset(mut self, offset: u64) -> Self {
                self.offset = offset;
                self
            }
            /// `count=`: how many bytes to send at most (default: to the end).
            pub fn count(mut self, count: u64) -> Self {
                self.count = Some(count);
                self
            }
            /// `fallback=` (default `true`): read and send when
            /// `sendfile(2)` cannot serve.
            pub fn fallback(mut self, fallback: bool) -> Self {
                self.fallback = fallback;
                self
            }
        }
    )*};
}

sendfile_setters!(SockSendfile, Sendfile);

impl<'a> IntoFuture for SockSendfile<'a> {
    type Output = Result<u64>;
    type IntoFuture = LocalBoxFuture<'a, Result<u64>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let loop_ = &self.loop_;
            loop_.check_sock(self.sock)?;
            if self.sock.type_() != SOCK_STREAM {
                return Err(Error::value("only SOCK_STREAM type sockets are supported"));
            }
            if self.count == Some(0) {
                return Err(Error::value("count must be a positive integer (got 0)"));
            }
            match native(&self).await {
                Err(e) if e.kind() == ErrorKind::SendfileNotAvailableError && self.fallback => {
                    fallback(&self).await
                }
                outcome => outcome,
            }
        })
    }
}

/// Puts the file's position just past what was sent, however the send
/// ends (CPython's `_sock_sendfile_update_filepos` in its `finally`s).
struct FilePosition<'a> {
    file: &'a File,
    end: u64,
    sent: u64,
}

impl Drop for FilePosition<'_> {
    fn drop(&mut self) {
        if self.sent > 0 {
            let mut file = self.file;
            let _ = file.seek(SeekFrom::Start(self.end));
        }
    }
}

fn not_available(message: &str) -> Error {
    Error::new(ErrorKind::SendfileNotAvailableError, message.to_owned())
}

/// CPython's `_sock_sendfile_native`.
async fn native(call: &SockSendfile<'_>) -> Result<u64> {
    sendfile_on(
        call.sock.as_socket2(),
        call.file,
        call.offset,
        call.count,
        || call.loop_.wait_sock(call.sock, false),
    )
    .await
}

/// Sends `count` bytes of `file` from `offset` (or to its end) on the
/// stream socket `sock` with `sendfile(2)`, awaiting `writable()` whenever
/// the socket is full; the number sent. The file's position ends just past
/// what was sent. For transports' [`sendfile_native`](crate::transports::WriteTransport::sendfile_native).
///
/// Errors: `SendfileNotAvailableError` when `file` is not a regular file
/// or `sendfile(2)` refuses it before anything was sent; the socket's
/// errors (`ConnectionError("socket is not connected")` for `ENOTCONN`).
pub async fn sendfile_on<W, F>(
    sock: &socket2::Socket,
    file: &File,
    offset: u64,
    count: Option<u64>,
    mut writable: W,
) -> Result<u64>
where
    W: FnMut() -> F,
    F: std::future::Future<Output = Result<()>>,
{
    if count == Some(0) {
        return Err(Error::value("count must be a positive integer (got 0)"));
    }
    let size = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        _ => return Err(not_available("not a regular file")),
    };
    let blocksize = count.unwrap_or(size);
    if blocksize == 0 {
        return Ok(0); // an empty file
    }
    let mut pos = FilePosition {
        file,
        end: offset,
        sent: 0,
    };
    loop {
        let want = match count {
            Some(count) => count - pos.sent,
            None => blocksize,
        };
        if want == 0 {
            return Ok(pos.sent);
        }
        let want =
            NonZeroUsize::new(want.min(1 << 30) as usize).ok_or_else(|| not_available("empty"))?;
        match sock.sendfile(file, pos.end as usize, Some(want)) {
            Ok(0) => return Ok(pos.sent), // the end of the file
            Ok(n) => {
                pos.end += n as u64;
                pos.sent += n as u64;
            }
            Err(e) if would_block(&e) => writable().await?,
            Err(e) => {
                if pos.sent == 0 {
                    // E.g. a file sendfile(2) cannot read: the fallback
                    // sends it.
                    return Err(not_available("os.sendfile call failed"));
                }
                if e.raw_os_error() == Some(ENOTCONN) {
                    return Err(
                        Error::os_subclass("ConnectionError", "socket is not connected")
                            .with_cause(Error::from(e)),
                    );
                }
                return Err(Error::from(e));
            }
        }
    }
}

/// Reads up to `len` bytes of `file` at its position, in the default
/// executor (sequential reads through a shared clone, as CPython's
/// `file.readinto`, so pipes work too).
async fn read_chunk(loop_: &EventLoop, file: &std::sync::Arc<File>, len: usize) -> Result<Vec<u8>> {
    let file = file.clone();
    loop_
        .run_in_executor(None, move || -> io::Result<Vec<u8>> {
            let mut buf = vec![0; len];
            let n = io::Read::read(&mut &*file, &mut buf)?;
            buf.truncate(n);
            Ok(buf)
        })?
        .take()
        .await?
        .map_err(Error::from)
}

/// CPython's `_sock_sendfile_fallback`: the file read in the default
/// executor, 256 KiB at a time, and sent with `sock_sendall`.
async fn fallback(call: &SockSendfile<'_>) -> Result<u64> {
    let loop_ = &call.loop_;
    let mut blocksize = match call.count {
        Some(count) => count.min(SENDFILE_FALLBACK_READBUFFER_SIZE as u64),
        None => SENDFILE_FALLBACK_READBUFFER_SIZE as u64,
    };
    let mut pos = FilePosition {
        file: call.file,
        end: call.offset,
        sent: 0,
    };
    if call.offset > 0 {
        // CPython seeks there first; the position ends past what was sent.
        let mut file = call.file;
        file.seek(SeekFrom::Start(call.offset))
            .map_err(Error::from)?;
    }
    let reader = call.file.try_clone().map_err(Error::from)?;
    let reader = std::sync::Arc::new(reader);
    loop {
        if let Some(count) = call.count {
            blocksize = blocksize.min(count - pos.sent);
            if blocksize == 0 {
                return Ok(pos.sent);
            }
        }
        let chunk = read_chunk(loop_, &reader, blocksize as usize).await?;
        if chunk.is_empty() {
            return Ok(pos.sent); // the end of the file
        }
        loop_.sock_sendall(call.sock, &chunk).await?;
        pos.end += chunk.len() as u64;
        pos.sent += chunk.len() as u64;
    }
}

// ===== loop.sendfile =====

/// The builder of [`EventLoop::sendfile`]; await it for the number of bytes
/// sent.
pub struct Sendfile<'a> {
    loop_: EventLoop,
    transport: &'a Rc<dyn Transport>,
    file: &'a File,
    offset: u64,
    count: Option<u64>,
    fallback: bool,
}

impl fmt::Debug for Sendfile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sendfile")
            .field("transport", self.transport)
            .field("offset", &self.offset)
            .field("count", &self.count)
            .field("fallback", &self.fallback)
            .finish()
    }
}

impl EventLoop {
    /// `await loop.sendfile(transport, file, offset=0, count=None,
    /// fallback=True)`: sends `file` (from `offset`, `count` bytes or to its
    /// end) over `transport`; the number of bytes sent. On TCP and Unix
    /// socket transports it waits until what was written before is sent,
    /// pauses reading and sends with zero-copy `sendfile(2)`; on TLS (and
    /// where `sendfile(2)` cannot serve) it reads the file in 256 KiB
    /// chunks and writes them, honouring the transport's flow control
    /// while the protocol is set aside (it sees no data meanwhile, and
    /// `resume_writing` afterwards if it was paused). While `sendfile(2)`
    /// runs, the transport's `write` fails with `RuntimeError("unable to
    /// write; sendfile is in progress")`, as in CPython. The file's
    /// position ends just past the last byte sent.
    ///
    /// Errors: `RuntimeError("Transport is closing")`, `RuntimeError("sendfile
    /// is not supported for transport …")` (pipes),
    /// `SendfileNotAvailableError` with `fallback(false)` where
    /// `sendfile(2)` cannot serve, `RuntimeError("fallback is disabled and
    /// native sendfile is not supported for transport …")` on TLS with
    /// `fallback(false)`, `ValueError("count must be a positive integer
    /// (got 0)")`, the connection's errors.
    ///
    /// ```no_run
    /// # async fn f(loop_: asyncio_core::EventLoop, transport: std::rc::Rc<dyn asyncio_core::transports::Transport>) -> asyncio_core::Result<()> {
    /// let file = std::fs::File::open("index.html")?;
    /// let sent = loop_.sendfile(&transport, &file).await?;
    /// # Ok(()) }
    /// ```
    pub fn sendfile<'a>(&self, transport: &'a Rc<dyn Transport>, file: &'a File) -> Sendfile<'a> {
        Sendfile {
            loop_: self.non_owning(),
            transport,
            file,
            offset: 0,
            count: None,
            fallback: true,
        }
    }
}

impl<'a> IntoFuture for Sendfile<'a> {
    type Output = Result<u64>;
    type IntoFuture = LocalBoxFuture<'a, Result<u64>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let transport = self.transport;
            if transport.is_closing() {
                return Err(Error::runtime("Transport is closing"));
            }
            if self.count == Some(0) {
                return Err(Error::value("count must be a positive integer (got 0)"));
            }
            match transport.sendfile_mode() {
                SendfileMode::Unsupported => {
                    return Err(Error::runtime(format!(
                        "sendfile is not supported for transport {transport:?}"
                    )))
                }
                SendfileMode::TryNative => {
                    match transport
                        .sendfile_native(self.file, self.offset, self.count)
                        .await
                    {
                        Err(e)
                            if e.kind() == ErrorKind::SendfileNotAvailableError
                                && self.fallback => {}
                        outcome => return outcome,
                    }
                }
                SendfileMode::Fallback => {}
            }
            if !self.fallback {
                return Err(Error::runtime(format!(
                    "fallback is disabled and native sendfile is not supported for transport {transport:?}"
                )));
            }
            transport_fallback(&self).await
        })
    }
}

/// CPython's `_sendfile_fallback`: the protocol set aside for
/// [`FallbackProtocol`], the file read in the executor and written.
async fn transport_fallback(call: &Sendfile<'_>) -> Result<u64> {
    let transport = call.transport;
    let Some(original) = transport.get_protocol() else {
        return Err(Error::runtime("Transport is closing"));
    };
    let proto = Rc::new(FallbackProtocol {
        loop_: call.loop_.non_owning(),
        original: original.clone(),
        write_ready: RefCell::new(None),
    });
    let should_resume_reading = transport.is_reading();
    let should_resume_writing = transport.is_protocol_paused();
    transport.pause_reading();
    transport.set_protocol(StreamProtocolRef::new(proto.clone()));
    if should_resume_writing {
        *proto.write_ready.borrow_mut() = Some(Future::new(&call.loop_));
    }
    let mut pos = FilePosition {
        file: call.file,
        end: call.offset,
        sent: 0,
    };
    let outcome = async {
        if call.offset > 0 {
            let mut file = call.file;
            file.seek(SeekFrom::Start(call.offset))
                .map_err(Error::from)?;
        }
        let reader = std::sync::Arc::new(call.file.try_clone().map_err(Error::from)?);
        let mut blocksize = SENDFILE_FALLBACK_READBUFFER_SIZE as u64;
        loop {
            if let Some(count) = call.count {
                blocksize = blocksize.min(count - pos.sent);
                if blocksize == 0 {
                    return Ok(pos.sent);
                }
            }
            let chunk = read_chunk(&call.loop_, &reader, blocksize as usize).await?;
            if chunk.is_empty() {
                return Ok(pos.sent); // EOF
            }
            proto.drain(&**transport).await?;
            transport.write(&chunk)?;
            pos.end += chunk.len() as u64;
            pos.sent += chunk.len() as u64;
        }
    }
    .await;
    // `restore()`.
    transport.set_protocol(original.clone());
    if should_resume_reading {
        transport.resume_reading();
    }
    let pending = proto.write_ready.borrow_mut().take();
    if let Some(f) = pending {
        f.cancel();
    }
    if should_resume_writing {
        if let Err(e) = original.resume_writing() {
            let mut ctx =
                crate::exception_context::ExceptionContext::new("protocol.resume_writing() failed");
            ctx.exception = Some(e);
            call.loop_.call_exception_handler(ctx);
        }
    }
    outcome
}

/// CPython's `_SendfileFallbackProtocol`: stands in for the protocol while
/// the fallback writes, to follow the transport's flow control.
struct FallbackProtocol {
    loop_: EventLoop,
    original: StreamProtocolRef,
    write_ready: RefCell<Option<Future<()>>>,
}

impl FallbackProtocol {
    async fn drain(&self, transport: &dyn Transport) -> Result<()> {
        if transport.is_closing() {
            return Err(Error::os_subclass(
                "ConnectionError",
                "Connection closed by peer",
            ));
        }
        let fut = self.write_ready.borrow().clone();
        match fut {
            Some(f) => f.await,
            None => Ok(()),
        }
    }
}

impl BaseProtocol for FallbackProtocol {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        let pending = self.write_ready.borrow_mut().take();
        if let Some(f) = pending {
            // Only a disconnection in the middle of the file gets here.
            let e = exc.clone().unwrap_or_else(|| {
                Error::os_subclass("ConnectionError", "Connection is closed by peer")
            });
            let _ = f.set_exception(e);
        }
        self.original.connection_lost(exc)
    }

    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        let mut slot = self.write_ready.borrow_mut();
        if slot.is_none() {
            *slot = Some(Future::new(&self.loop_));
        }
        Ok(())
    }

    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        let pending = self.write_ready.borrow_mut().take();
        if let Some(f) = pending {
            let _ = f.set_result(());
        }
        Ok(())
    }
}

impl Protocol for FallbackProtocol {
    fn connection_made(self: &Rc<Self>, _transport: Rc<dyn Transport>) -> Result<()> {
        Err(Error::runtime(
            "Invalid state: connection should have been established already.",
        ))
    }

    fn data_received(self: &Rc<Self>, _data: &[u8]) -> Result<()> {
        Err(Error::runtime("Invalid state: reading should be paused"))
    }

    fn eof_received(self: &Rc<Self>) -> Result<bool> {
        Err(Error::runtime("Invalid state: reading should be paused"))
    }
}
