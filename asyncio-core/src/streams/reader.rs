//! `StreamReader` (CPython's `streams.StreamReader`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use crate::base_events::EventLoop;
use crate::exceptions::{Error, ErrorKind, Result};
use crate::transports::Transport;
use crate::wait_slot::WaitSlot;

/// `asyncio.streams._DEFAULT_LIMIT`: 64 KiB.
pub const DEFAULT_LIMIT: usize = 64 * 1024;

/// The bytes received and not read yet: a vector read from the front
/// (compacted as it empties, so reads are not quadratic).
#[derive(Default)]
struct Buffer {
    data: Vec<u8>,
    start: usize,
}

impl Buffer {
    fn bytes(&self) -> &[u8] {
        &self.data[self.start..]
    }
    fn len(&self) -> usize {
        self.data.len() - self.start
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn extend(&mut self, data: &[u8]) {
        if self.data.is_empty() {
            // The usual case (the last read took everything): one exact
            // allocation rather than a growth from zero.
            self.data = data.to_vec();
            self.start = 0;
            return;
        }
        if self.start > 0 && self.start >= self.data.len() / 2 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.extend_from_slice(data);
    }
    /// Removes and returns the first `n` bytes (at most all).
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.len());
        if self.start == 0 && n == self.data.len() {
            return std::mem::take(&mut self.data);
        }
        let out = self.data[self.start..self.start + n].to_vec();
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
        out
    }
    fn clear(&mut self) {
        self.data.clear();
        self.start = 0;
    }
    fn find(&self, needle: &[u8], from: usize) -> Option<usize> {
        let hay = self.bytes();
        if from > hay.len() || needle.len() > hay.len() - from {
            return None;
        }
        if needle.len() == 1 {
            return hay[from..]
                .iter()
                .position(|&b| b == needle[0])
                .map(|i| i + from);
        }
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    }
}

pub(crate) struct ReaderState {
    limit: usize,
    loop_: EventLoop,
    buffer: RefCell<Buffer>,
    eof: Cell<bool>,
    /// CPython's `_waiter`, without a future per wait.
    waiter: WaitSlot,
    exception: RefCell<Option<Error>>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    paused: Cell<bool>,
}

/// Reads from a connection (Python's `asyncio.StreamReader`): bytes fed by
/// its protocol, read with `read`, `readline`, `readexactly`, `readuntil`.
///
/// A cheap handle: clones share the reader. Only one coroutine may wait for
/// data at a time (`RuntimeError("read() called while another coroutine is
/// already waiting for incoming data")`). Reading pauses the transport
/// above twice the limit and resumes it below the limit.
///
/// ```
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let reader = asyncio_core::streams::StreamReader::new(&loop_, 1024)?;
/// reader.feed_data(b"line one\nline two\n");
/// reader.feed_eof();
/// let r = reader.clone();
/// let lines = loop_.run_until_complete(async move {
///     let mut lines = Vec::new();
///     while let Some(line) = r.next_line().await? {
///         lines.push(line);
///     }
///     Ok(lines)
/// })?;
/// assert_eq!(lines, [b"line one\n".to_vec(), b"line two\n".to_vec()]);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
#[derive(Clone)]
pub struct StreamReader {
    pub(crate) state: Rc<ReaderState>,
}

impl StreamReader {
    /// `StreamReader(limit=limit, loop=loop_)`.
    ///
    /// Errors: `ValueError("Limit cannot be <= 0")`.
    pub fn new(loop_: &EventLoop, limit: usize) -> Result<StreamReader> {
        if limit == 0 {
            return Err(Error::value("Limit cannot be <= 0"));
        }
        Ok(StreamReader::with_limit(loop_, limit))
    }

    /// A reader with a limit known to be positive.
    pub(crate) fn with_limit(loop_: &EventLoop, limit: usize) -> StreamReader {
        StreamReader {
            state: Rc::new(ReaderState {
                limit,
                loop_: loop_.non_owning(),
                buffer: RefCell::new(Buffer::default()),
                eof: Cell::new(false),
                waiter: WaitSlot::default(),
                exception: RefCell::new(None),
                transport: RefCell::new(None),
                paused: Cell::new(false),
            }),
        }
    }

    pub(crate) fn downgrade(&self) -> std::rc::Weak<ReaderState> {
        Rc::downgrade(&self.state)
    }

    pub(crate) fn from_state(state: Rc<ReaderState>) -> StreamReader {
        StreamReader { state }
    }

    /// The limit this reader was made with.
    pub fn limit(&self) -> usize {
        self.state.limit
    }

    /// `exception()`: the error set by [`set_exception`](StreamReader::set_exception).
    pub fn exception(&self) -> Option<Error> {
        self.state.exception.borrow().clone()
    }

    /// `set_exception(exc)`: every later read raises `exc`; a pending read
    /// raises it now.
    pub fn set_exception(&self, exc: Error) {
        *self.state.exception.borrow_mut() = Some(exc.clone());
        self.state.waiter.wake(Err(exc));
    }

    fn wakeup_waiter(&self) {
        self.state.waiter.wake(Ok(()));
    }

    /// `set_transport(transport)`: the transport to pause and resume.
    ///
    /// Errors: `RuntimeError("Transport already set")`.
    pub fn set_transport(&self, transport: Rc<dyn Transport>) -> Result<()> {
        let mut slot = self.state.transport.borrow_mut();
        if slot.is_some() {
            return Err(Error::runtime("Transport already set"));
        }
        *slot = Some(transport);
        Ok(())
    }

    fn maybe_resume_transport(&self) {
        if self.state.paused.get() && self.state.buffer.borrow().len() <= self.state.limit {
            self.state.paused.set(false);
            let transport = self.state.transport.borrow().clone();
            if let Some(t) = transport {
                t.resume_reading();
            }
        }
    }

    /// `feed_eof()`: the stream ended.
    pub fn feed_eof(&self) {
        self.state.eof.set(true);
        self.wakeup_waiter();
    }

    /// `at_eof()`: `true` once the stream ended and every byte was read.
    pub fn at_eof(&self) -> bool {
        self.state.eof.get() && self.state.buffer.borrow().is_empty()
    }

    /// `feed_data(data)`: bytes received (by the protocol). Pauses the
    /// transport's reading above twice the limit. Data after `feed_eof` is
    /// ignored (CPython asserts).
    pub fn feed_data(&self, data: &[u8]) {
        if data.is_empty() || self.state.eof.get() {
            return;
        }
        let buffered = {
            let mut buffer = self.state.buffer.borrow_mut();
            buffer.extend(data);
            buffer.len()
        };
        self.wakeup_waiter();
        if !self.state.paused.get() && buffered > 2 * self.state.limit {
            let transport = self.state.transport.borrow().clone();
            if let Some(transport) = transport {
                transport.pause_reading();
                self.state.paused.set(true);
            }
        }
    }

    /// CPython's `_wait_for_data`.
    async fn wait_for_data(&self, func_name: &str) -> Result<()> {
        if self.state.waiter.is_waiting() {
            return Err(Error::runtime(format!(
                "{func_name}() called while another coroutine is already waiting for incoming data"
            )));
        }
        // Waiting while paused would deadlock (readexactly(n > limit)).
        if self.state.paused.get() {
            self.state.paused.set(false);
            let transport = self.state.transport.borrow().clone();
            if let Some(t) = transport {
                t.resume_reading();
            }
        }
        self.state.waiter.wait(&self.state.loop_).await
    }

    fn check_exception(&self) -> Result<()> {
        match self.exception() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `await reader.readline()`: the next line with its `\n`; at the end,
    /// what is left (maybe without `\n`), then `b""`.
    ///
    /// Errors: `ValueError` with the `LimitOverrunError`'s message for a
    /// line longer than the limit (the line, or the buffer, is dropped).
    pub async fn readline(&self) -> Result<Vec<u8>> {
        let sep = b"\n";
        match self.readuntil(sep).await {
            Ok(line) => Ok(line),
            Err(e) if e.kind() == ErrorKind::IncompleteReadError => {
                Ok(e.partial().unwrap_or_default().to_vec())
            }
            Err(e) if e.kind() == ErrorKind::LimitOverrunError => {
                let consumed = e.consumed().unwrap_or(0);
                {
                    let mut buffer = self.state.buffer.borrow_mut();
                    if buffer.bytes()[consumed.min(buffer.len())..].starts_with(sep) {
                        buffer.take(consumed + sep.len());
                    } else {
                        buffer.clear();
                    }
                }
                self.maybe_resume_transport();
                Err(Error::value(e.message().to_owned()))
            }
            Err(e) => Err(e),
        }
    }

    /// `async for line in reader`: the next line, `None` at the end.
    pub async fn next_line(&self) -> Result<Option<Vec<u8>>> {
        let line = self.readline().await?;
        Ok((!line.is_empty()).then_some(line))
    }

    /// `await reader.readuntil(separator)`: the bytes up to and including
    /// `separator`.
    ///
    /// Errors: `IncompleteReadError` (with `partial`) at the end without
    /// the separator; `LimitOverrunError` (`"Separator is found, but chunk
    /// is longer than limit"`, `"Separator is not found, and chunk exceed
    /// the limit"`; the data stays buffered); `ValueError("Separator should
    /// be at least one-byte string")`.
    pub async fn readuntil(&self, separator: impl AsRef<[u8]>) -> Result<Vec<u8>> {
        self.readuntil_any(&[separator.as_ref()]).await
    }

    /// `await reader.readuntil((sep1, sep2, …))` (3.13): the shortest
    /// chunk that ends with any of the separators.
    ///
    /// Errors: as [`readuntil`](StreamReader::readuntil), and
    /// `ValueError("Separator should contain at least one element")`.
    pub async fn readuntil_any(&self, separators: &[&[u8]]) -> Result<Vec<u8>> {
        let mut separators: Vec<&[u8]> = separators.to_vec();
        separators.sort_by_key(|s| s.len());
        let (Some(first), Some(last)) = (separators.first(), separators.last()) else {
            return Err(Error::value(
                "Separator should contain at least one element",
            ));
        };
        let (min_seplen, max_seplen) = (first.len(), last.len());
        if min_seplen == 0 {
            return Err(Error::value("Separator should be at least one-byte string"));
        }
        self.check_exception()?;
        let limit = self.state.limit;
        let mut offset = 0;
        let (match_start, match_end) = loop {
            let found = {
                let buffer = self.state.buffer.borrow();
                let buflen = buffer.len();
                let mut found = None;
                if buflen - offset.min(buflen) >= min_seplen {
                    for sep in &separators {
                        if let Some(isep) = buffer.find(sep, offset) {
                            let end = isep + sep.len();
                            if found.is_none_or(|(_, e)| end < e) {
                                found = Some((isep, end));
                            }
                        }
                    }
                    if found.is_none() {
                        offset = (buflen + 1).saturating_sub(max_seplen);
                        if offset > limit {
                            return Err(Error::limit_overrun(
                                "Separator is not found, and chunk exceed the limit",
                                offset,
                            ));
                        }
                    }
                }
                found
            };
            if let Some(found) = found {
                break found;
            }
            if self.state.eof.get() {
                let chunk = self.state.buffer.borrow_mut().take(usize::MAX);
                return Err(Error::incomplete_read(chunk, None));
            }
            self.wait_for_data("readuntil").await?;
        };
        if match_start > limit {
            return Err(Error::limit_overrun(
                "Separator is found, but chunk is longer than limit",
                match_start,
            ));
        }
        let chunk = self.state.buffer.borrow_mut().take(match_end);
        self.maybe_resume_transport();
        Ok(chunk)
    }

    /// `await reader.read(n)`: up to `n` bytes as soon as any are there;
    /// `n < 0` (Python's `-1`) reads to the end; `b""` at the end.
    pub async fn read(&self, n: isize) -> Result<Vec<u8>> {
        self.check_exception()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        if n < 0 {
            // Chunks of the limit until the end, so that a paused
            // transport is resumed (CPython's loop of read(limit)).
            let mut all = Vec::new();
            loop {
                let block = Box::pin(self.read(self.state.limit as isize)).await?;
                if block.is_empty() {
                    return Ok(all);
                }
                all.extend_from_slice(&block);
            }
        }
        if self.state.buffer.borrow().is_empty() && !self.state.eof.get() {
            self.wait_for_data("read").await?;
        }
        let data = self.state.buffer.borrow_mut().take(n as usize);
        self.maybe_resume_transport();
        Ok(data)
    }

    /// `await reader.readexactly(n)`: exactly `n` bytes.
    ///
    /// Errors: `IncompleteReadError` (`partial`, `expected`) if the stream
    /// ends first.
    pub async fn readexactly(&self, n: usize) -> Result<Vec<u8>> {
        self.check_exception()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        while self.state.buffer.borrow().len() < n {
            if self.state.eof.get() {
                let incomplete = self.state.buffer.borrow_mut().take(usize::MAX);
                return Err(Error::incomplete_read(incomplete, Some(n)));
            }
            self.wait_for_data("readexactly").await?;
        }
        let data = self.state.buffer.borrow_mut().take(n);
        self.maybe_resume_transport();
        Ok(data)
    }

    /// Removes and returns everything buffered (for `start_tls`).
    #[cfg(feature = "tls")]
    pub(crate) fn take_buffered(&self) -> Vec<u8> {
        let data = self.state.buffer.borrow_mut().take(usize::MAX);
        self.maybe_resume_transport();
        data
    }

    /// How many bytes are buffered and not read yet.
    pub fn buffered(&self) -> usize {
        self.state.buffer.borrow().len()
    }

    /// A copy of the bytes buffered and not read yet (Python's private
    /// `_buffer`, for tests and debugging).
    pub fn buffer(&self) -> Vec<u8> {
        self.state.buffer.borrow().bytes().to_vec()
    }
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = &self.state;
        let mut info = vec!["StreamReader".to_owned()];
        let len = st.buffer.try_borrow().map_or(0, |b| b.len());
        if len > 0 {
            info.push(format!("{len} bytes"));
        }
        if st.eof.get() {
            info.push("eof".into());
        }
        if st.limit != DEFAULT_LIMIT {
            info.push(format!("limit={}", st.limit));
        }
        if st.waiter.is_waiting() {
            info.push("waiter=<Future pending cb=[Task.task_wakeup()]>".to_owned());
        }
        if let Ok(exc) = st.exception.try_borrow() {
            if let Some(e) = exc.as_ref() {
                info.push(format!("exception={e:?}"));
            }
        }
        if let Ok(t) = st.transport.try_borrow() {
            if let Some(t) = t.as_ref() {
                info.push(format!("transport={t:?}"));
            }
        }
        if st.paused.get() {
            info.push("paused".into());
        }
        write!(f, "<{}>", info.join(" "))
    }
}
