//! `StreamReader` (CPython's `streams.StreamReader`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::base_events::EventLoop;
use crate::exceptions::{Error, ErrorKind, Result};
use crate::protocols::{ReadOutcome, ReadRoom};
use crate::transports::Transport;
use crate::wait_slot::{SlotWait, WaitSlot};

/// `asyncio.streams._DEFAULT_LIMIT`: 64 KiB.
pub const DEFAULT_LIMIT: usize = 64 * 1024;

/// The smallest and largest room made for one read straight into the
/// buffer. The room adapts to what reads bring (doubling while they fill
/// it), so a reader of small messages reserves little, and a held chunk pins
/// at most a few times its own size.
const READ_ROOM_MIN: usize = 4 * 1024;
const READ_ROOM_MAX: usize = 64 * 1024;
/// The most one read may bring (CPython's `max_size`, 256 KiB).
const READ_MAX: usize = 256 * 1024;

/// The bytes received and not read yet. Reads split their bytes off its
/// front without copying (a [`Bytes`] sharing the allocation); once those
/// are dropped, the space is reused for the next read.
struct Buffer {
    data: BytesMut,
    read_room: usize,
    /// The most bytes buffered since the current block was made.
    peak: usize,
}

impl Default for Buffer {
    fn default() -> Buffer {
        Buffer {
            data: BytesMut::new(),
            read_room: READ_ROOM_MIN,
            peak: 0,
        }
    }
}

impl Buffer {
    fn bytes(&self) -> &[u8] {
        &self.data
    }
    fn len(&self) -> usize {
        self.data.len()
    }
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    fn extend(&mut self, data: &[u8]) {
        self.leave_oversized_block(data.len());
        self.data.extend_from_slice(data);
        self.peak = self.peak.max(self.data.len());
    }
    /// A block grown for far more than the buffer now holds (a large
    /// `readexactly`, a consumer that fell behind) is left once the buffer
    /// is nearly empty, so that it is neither kept for the life of the
    /// connection nor pinned by the small pieces read after it. Returns
    /// whether a fresh block (with room for `room` more bytes) was made.
    #[inline]
    fn leave_oversized_block(&mut self, room: usize) -> bool {
        if self.peak <= READ_ROOM_MAX || self.data.len() > READ_ROOM_MIN {
            return false;
        }
        self.move_to_fresh_block(room);
        true
    }
    #[cold]
    fn move_to_fresh_block(&mut self, room: usize) {
        let len = self.data.len();
        let mut fresh = BytesMut::with_capacity(len + room);
        fresh.extend_from_slice(&self.data);
        self.data = fresh;
        self.peak = len;
    }
    /// Makes room for a read straight into the buffer: at least half the
    /// read room (so the space freed by reads is reclaimed only every few
    /// reads), a full room when it has to be made; an oversized block is
    /// left first.
    fn reserve_for_read(&mut self) -> &mut ReadRoom {
        if !self.leave_oversized_block(self.read_room)
            && self.data.capacity() - self.data.len() < self.read_room / 2
        {
            self.data.reserve(self.read_room);
        }
        // A read fills the spare capacity: no more than CPython's
        // `max_size` of a big block (its tail is let go, not the block).
        if self.data.capacity() - self.data.len() > READ_MAX {
            let end = self.data.len() + self.read_room;
            drop(self.data.split_off(end));
        }
        &mut self.data
    }
    /// A read brought `n` bytes: the room grows while reads fill it and
    /// shrinks when they bring far less.
    fn note_read(&mut self, n: usize) {
        if n >= self.read_room {
            self.read_room = (self.read_room * 2).min(READ_ROOM_MAX);
        } else if n < self.read_room / 4 {
            self.read_room = (self.read_room / 2).max(READ_ROOM_MIN);
        }
        self.peak = self.peak.max(self.data.len());
    }
    /// Removes and returns the first `n` bytes (at most all).
    #[inline]
    fn take(&mut self, n: usize) -> Bytes {
        let n = n.min(self.len());
        if n == 0 {
            return Bytes::new();
        }
        self.data.split_to(n).freeze()
    }
    fn clear(&mut self) {
        self.data.clear();
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
/// Reads give [`Bytes`] (Python's `bytes`): pieces split off the reader's
/// buffer, which the transport reads into directly, so no byte is copied
/// between the socket and the caller. A piece keeps alive the block of the
/// buffer it came from (4 to 64 KiB for pieces of a stream read as it
/// comes, shared with their neighbours; a large read's piece is most of its
/// own block); copy it (`to_vec()`) to hold many small pieces for long.
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
/// assert_eq!(lines, [&b"line one\n"[..], &b"line two\n"[..]]);
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

    #[inline]
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

    #[inline]
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
        self.data_added(buffered);
    }

    /// For a transport reading straight into this reader (as `feed_data`
    /// without the copy): `read` gets the buffer with room reserved and
    /// appends what it reads. Bytes read after `feed_eof` are dropped.
    pub(crate) fn read_into_buffer(
        &self,
        read: &mut dyn FnMut(&mut ReadRoom) -> ReadOutcome,
    ) -> ReadOutcome {
        if self.state.eof.get() {
            return read(&mut BytesMut::with_capacity(READ_ROOM_MIN));
        }
        let (outcome, buffered) = {
            let mut buffer = self.state.buffer.borrow_mut();
            let outcome = read(buffer.reserve_for_read());
            if let ReadOutcome::Read(n) = outcome {
                buffer.note_read(n);
            }
            (outcome, buffer.len())
        };
        if matches!(outcome, ReadOutcome::Read(n) if n > 0) {
            self.data_added(buffered);
        }
        outcome
    }

    /// Bytes were appended (`buffered` in all): wakes the waiting read,
    /// pauses the transport above twice the limit.
    #[inline]
    fn data_added(&self, buffered: usize) {
        self.wakeup_waiter();
        if !self.state.paused.get() && buffered > 2 * self.state.limit {
            let transport = self.state.transport.borrow().clone();
            if let Some(transport) = transport {
                transport.pause_reading();
                self.state.paused.set(true);
            }
        }
    }

    /// CPython's `_wait_for_data`: the wait to await (not itself a
    /// coroutine, so that a read's state machine has one level less).
    #[inline]
    fn wait_for_data(&self, func_name: &str) -> Result<SlotWait<'_>> {
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
        Ok(self.state.waiter.wait(&self.state.loop_))
    }

    #[inline]
    pub(crate) fn check_exception(&self) -> Result<()> {
        match &*self.state.exception.borrow() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// `await reader.readline()`: the next line with its `\n`; at the end,
    /// what is left (maybe without `\n`), then `b""`.
    ///
    /// Errors: `ValueError` with the `LimitOverrunError`'s message for a
    /// line longer than the limit (the line, or the buffer, is dropped).
    pub async fn readline(&self) -> Result<Bytes> {
        let sep = b"\n";
        match self.readuntil(sep).await {
            Ok(line) => Ok(line),
            Err(e) if e.kind() == ErrorKind::IncompleteReadError => {
                Ok(Bytes::copy_from_slice(e.partial().unwrap_or_default()))
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
    pub async fn next_line(&self) -> Result<Option<Bytes>> {
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
    pub async fn readuntil(&self, separator: impl AsRef<[u8]>) -> Result<Bytes> {
        self.readuntil_any(&[separator.as_ref()]).await
    }

    /// `await reader.readuntil((sep1, sep2, …))` (3.13): the shortest
    /// chunk that ends with any of the separators.
    ///
    /// Errors: as [`readuntil`](StreamReader::readuntil), and
    /// `ValueError("Separator should contain at least one element")`.
    pub async fn readuntil_any(&self, separators: &[&[u8]]) -> Result<Bytes> {
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
                return Err(Error::incomplete_read(chunk.into(), None));
            }
            self.wait_for_data("readuntil")?.await?;
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
    pub async fn read(&self, n: isize) -> Result<Bytes> {
        self.check_exception()?;
        if n == 0 {
            return Ok(Bytes::new());
        }
        if n < 0 {
            // Chunks of the limit until the end, so that a paused
            // transport is resumed (CPython's loop of read(limit)).
            let mut all = BytesMut::new();
            loop {
                let block = Box::pin(self.read(self.state.limit as isize)).await?;
                if block.is_empty() {
                    return Ok(all.freeze());
                }
                all.extend_from_slice(&block);
            }
        }
        if self.state.buffer.borrow().is_empty() && !self.state.eof.get() {
            self.wait_for_data("read")?.await?;
        }
        let data = self.state.buffer.borrow_mut().take(n as usize);
        self.maybe_resume_transport();
        Ok(data)
    }

    /// `await reader.readexactly(n)`: exactly `n` bytes.
    ///
    /// Errors: `IncompleteReadError` (`partial`, `expected`) if the stream
    /// ends first.
    pub async fn readexactly(&self, n: usize) -> Result<Bytes> {
        self.check_exception()?;
        if n == 0 {
            return Ok(Bytes::new());
        }
        while self.state.buffer.borrow().len() < n {
            if self.state.eof.get() {
                let incomplete = self.state.buffer.borrow_mut().take(usize::MAX);
                return Err(Error::incomplete_read(incomplete.into(), Some(n)));
            }
            self.wait_for_data("readexactly")?.await?;
        }
        let data = self.state.buffer.borrow_mut().take(n);
        self.maybe_resume_transport();
        Ok(data)
    }

    /// Removes and returns everything buffered (for `start_tls`).
    #[cfg(feature = "tls")]
    pub(crate) fn take_buffered(&self) -> Vec<u8> {
        let data = self.state.buffer.borrow_mut().take(usize::MAX).into();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A read of `data` into the buffer, as the transport makes it.
    fn read_in(buffer: &mut Buffer, data: &[u8]) -> usize {
        let room = buffer.reserve_for_read();
        let n = data.len().min(room.capacity() - room.len());
        room.extend_from_slice(&data[..n]);
        buffer.note_read(n);
        n
    }

    #[test]
    fn small_reads_share_one_block_and_reuse_it_once_dropped() {
        let mut buffer = Buffer::default();
        read_in(&mut buffer, &[1; 100]);
        let first = buffer.take(usize::MAX);
        read_in(&mut buffer, &[2; 100]);
        let second = buffer.take(usize::MAX);
        // Held pieces are neighbours in one block: no block per piece.
        assert_eq!(second.as_ptr(), first[100..].as_ptr());
        assert_eq!((&first[..], &second[..]), (&[1; 100][..], &[2; 100][..]));
        let block = buffer.data.as_ptr() as usize - 200;
        drop((first, second));
        // Once the pieces are dropped, the block is reclaimed, not replaced.
        for _ in 0..100 {
            read_in(&mut buffer, &[3; 1000]);
            assert_eq!(buffer.take(usize::MAX), &[3; 1000][..]);
        }
        assert!((block..block + READ_ROOM_MIN).contains(&(buffer.data.as_ptr() as usize)));
    }

    #[test]
    fn the_read_room_grows_while_reads_fill_it_and_shrinks_after() {
        let mut buffer = Buffer::default();
        let big = vec![7u8; 1 << 20];
        let mut sizes = Vec::new();
        for _ in 0..8 {
            sizes.push(read_in(&mut buffer, &big));
            buffer.take(usize::MAX);
        }
        assert_eq!(sizes[0], READ_ROOM_MIN);
        assert_eq!(buffer.read_room, READ_ROOM_MAX);
        assert!(sizes[7] >= READ_ROOM_MAX / 2, "{sizes:?}");
        for _ in 0..8 {
            read_in(&mut buffer, &[1; 10]);
            buffer.take(usize::MAX);
        }
        assert_eq!(buffer.read_room, READ_ROOM_MIN);
    }

    #[test]
    fn a_block_grown_for_a_large_read_is_left_once_the_buffer_drains() {
        let mut buffer = Buffer::default();
        // A megabyte buffered before it is read (a `readexactly(1 << 20)`).
        let big = vec![5u8; 1 << 20];
        let mut buffered = 0;
        while buffered < big.len() {
            buffered += read_in(&mut buffer, &big[buffered..]);
        }
        assert!(buffer.data.capacity() >= 1 << 20);
        let body = buffer.take(usize::MAX);
        assert_eq!(body.len(), 1 << 20);
        // The body still holds the big block; small reads after it use a
        // block of their own, so a kept line does not pin the megabyte.
        read_in(&mut buffer, b"line\n");
        let line = buffer.take(usize::MAX);
        assert_eq!(line, "line\n");
        assert!(buffer.data.capacity() <= 2 * READ_ROOM_MAX);
        let in_body = body.as_ptr_range();
        assert!(!in_body.contains(&line.as_ptr()));
        drop(body);
        for _ in 0..50 {
            read_in(&mut buffer, &[1; 100]);
            buffer.take(usize::MAX);
        }
        assert!(buffer.data.capacity() <= 2 * READ_ROOM_MAX);
    }

    #[test]
    fn fed_bytes_leave_an_oversized_block_too() {
        // The TLS and pipe transports feed copies: the same rule applies.
        let mut buffer = Buffer::default();
        let big = vec![5u8; 1 << 20];
        buffer.extend(&big);
        let body = buffer.take(usize::MAX);
        buffer.extend(b"line\n");
        let line = buffer.take(usize::MAX);
        assert_eq!(line, "line\n");
        assert_eq!(body.len(), 1 << 20);
        assert!(!body.as_ptr_range().contains(&line.as_ptr()));
        assert!(buffer.data.capacity() <= 2 * READ_ROOM_MAX);
    }

    #[test]
    fn one_read_brings_at_most_256_kib() {
        let mut buffer = Buffer::default();
        let big = vec![9u8; 1 << 20];
        // Kept, not read: the buffer grows to megabytes, each read does not.
        let sizes: Vec<usize> = (0..40).map(|_| read_in(&mut buffer, &big)).collect();
        assert!(buffer.len() > 2 << 20);
        assert!(sizes.iter().all(|&n| n <= READ_MAX), "{sizes:?}");
        assert_eq!(sizes[0], READ_ROOM_MIN);
    }

    #[test]
    fn a_held_piece_does_not_pin_more_than_a_block() {
        // 200 pieces of 100 bytes, each read alone and all kept: the blocks
        // they keep alive add up to a few times their 20,000 bytes (a block
        // per piece would be 800 KiB).
        let mut buffer = Buffer::default();
        let mut held = Vec::new();
        let mut blocks = std::collections::HashSet::new();
        for i in 0..200u8 {
            read_in(&mut buffer, &[i; 100]);
            let piece = buffer.take(usize::MAX);
            blocks.insert(piece.as_ptr() as usize / READ_ROOM_MIN);
            held.push(piece);
        }
        assert!(
            blocks.len() * READ_ROOM_MIN <= 4 * 200 * 100,
            "{} blocks",
            blocks.len()
        );
        for (i, piece) in held.iter().enumerate() {
            assert_eq!(piece, &[i as u8; 100][..]);
        }
    }
}
