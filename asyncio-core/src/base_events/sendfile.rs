//! `loop.sock_sendfile` (CPython's `base_events.sock_sendfile` and the
//! Unix loop's `_sock_sendfile_native`): `sendfile(2)` on a stream socket,
//! else reading and sending in chunks.

use std::fs::File;
use std::future::IntoFuture;
use std::io::{self, Seek, SeekFrom};
use std::num::NonZeroUsize;

use super::network::LocalBoxFuture;
use super::sock::would_block;
use super::EventLoop;
use crate::exceptions::{Error, ErrorKind, Result};
use crate::socket::{Socket, SOCK_STREAM};

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

impl SockSendfile<'_> {
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
    /// `fallback=` (default `true`): read and send when `sendfile(2)`
    /// cannot serve.
    pub fn fallback(mut self, fallback: bool) -> Self {
        self.fallback = fallback;
        self
    }
}

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
    let size = match call.file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        _ => return Err(not_available("not a regular file")),
    };
    let blocksize = call.count.unwrap_or(size);
    if blocksize == 0 {
        return Ok(0); // an empty file
    }
    let mut pos = FilePosition {
        file: call.file,
        end: call.offset,
        sent: 0,
    };
    loop {
        let want = match call.count {
            Some(count) => count - pos.sent,
            None => blocksize,
        };
        if want == 0 {
            return Ok(pos.sent);
        }
        let want =
            NonZeroUsize::new(want.min(1 << 30) as usize).ok_or_else(|| not_available("empty"))?;
        match call
            .sock
            .as_socket2()
            .sendfile(call.file, pos.end as usize, Some(want))
        {
            Ok(0) => return Ok(pos.sent), // the end of the file
            Ok(n) => {
                pos.end += n as u64;
                pos.sent += n as u64;
            }
            Err(e) if would_block(&e) => call.loop_.wait_sock(call.sock, false).await?,
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
        let (file, len) = (reader.clone(), blocksize as usize);
        let chunk = loop_
            .run_in_executor(None, move || -> io::Result<Vec<u8>> {
                // The clone shares the file's position: sequential reads,
                // as CPython's `file.readinto`, so pipes work too.
                let mut buf = vec![0; len];
                let n = io::Read::read(&mut &*file, &mut buf)?;
                buf.truncate(n);
                Ok(buf)
            })?
            .take()
            .await?
            .map_err(Error::from)?;
        if chunk.is_empty() {
            return Ok(pos.sent); // the end of the file
        }
        loop_.sock_sendall(call.sock, &chunk).await?;
        pos.end += chunk.len() as u64;
        pos.sent += chunk.len() as u64;
    }
}
