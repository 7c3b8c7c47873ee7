//! Pipe transports on real pipes, socket pairs and PTYs: CPython's
//! `test_events.py` (`test_read_pipe`, `test_unclosed_pipe_transport`,
//! `test_read_pty_output`, `test_write_pipe`,
//! `test_write_pipe_disconnect_on_close`, `test_write_pty`,
//! `test_bidirectional_pty`) and `test_unix_events.py`'s
//! `UnixReadPipeTransportTests` / `UnixWritePipeTransportTests` (there on
//! mocks; here the real thing).

mod common;

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use asyncio::socket::{Socket, AF_UNIX, SOCK_STREAM};
use asyncio::{BaseProtocol, Error, ErrorKind, ExtraInfo, Protocol, Result, Transport};
use common::{capture_logs, in_child, open_fds, record_exceptions, repr};

const LIMIT: f64 = 20.0;

/// A protocol recording its callbacks as CPython's `MyReadPipeProto` /
/// `MyWritePipeProto` do.
#[derive(Default)]
struct Proto {
    state: RefCell<Vec<String>>,
    data: RefCell<Vec<u8>>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    fail_on: Option<&'static [u8]>,
}

impl Proto {
    fn state(&self) -> Vec<String> {
        self.state.borrow().clone()
    }
    fn nbytes(&self) -> usize {
        self.data.borrow().len()
    }
    fn closed(&self) -> bool {
        self.state.borrow().iter().any(|s| s.starts_with("CLOSED"))
    }
}

impl BaseProtocol for Proto {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        self.transport.borrow_mut().take();
        let what = match exc {
            None => "CLOSED".to_owned(),
            Some(e) => format!("CLOSED {}({:?})", e.python_name(), e.raw_os_error()),
        };
        self.state.borrow_mut().push(what);
        Ok(())
    }
    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        self.state.borrow_mut().push("PAUSE".into());
        Ok(())
    }
    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        self.state.borrow_mut().push("RESUME".into());
        Ok(())
    }
}

impl Protocol for Proto {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        *self.transport.borrow_mut() = Some(transport);
        self.state.borrow_mut().push("CONNECTED".into());
        Ok(())
    }
    fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        self.data.borrow_mut().extend_from_slice(data);
        if self.fail_on == Some(data) {
            return Err(Error::value("bad data"));
        }
        Ok(())
    }
    fn eof_received(self: &Rc<Self>) -> Result<bool> {
        self.state.borrow_mut().push("EOF".into());
        Ok(false)
    }
}

async fn until(what: &str, cond: impl Fn() -> bool) -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let deadline = loop_.time() + LIMIT;
    while !cond() {
        if loop_.time() > deadline {
            panic!("timed out waiting until {what}");
        }
        asyncio::sleep(0.001).await?;
    }
    Ok(())
}

fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are new and owned by nothing else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

fn openpty() -> (File, File) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes the two descriptors; the other arguments may
    // be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nothing else.
    unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) }
}

/// A blocking read of what is available (up to `n` bytes in total).
fn read_exactly(file: &mut File, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    file.read_exact(&mut out).unwrap();
    out
}

fn raw_mode(tty: &File) {
    // SAFETY: a termios struct filled by tcgetattr for a valid terminal.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(tty.as_raw_fd(), &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
}

// ----- test_events.py: read pipes -----

/// `test_read_pipe`.
#[asyncio::test]
async fn read_pipe() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (r, mut w) = pipe();
    let (transport, proto) = loop_.connect_read_pipe(Proto::default, r).await?;
    assert_eq!(proto.state(), ["CONNECTED"]);
    w.write_all(b"1").unwrap();
    until("1 byte", || proto.nbytes() >= 1).await?;
    assert_eq!(proto.nbytes(), 1);
    w.write_all(b"2345").unwrap();
    until("5 bytes", || proto.nbytes() >= 5).await?;
    assert_eq!(proto.state(), ["CONNECTED"]);
    assert_eq!(*proto.data.borrow(), b"12345");
    drop(w);
    until("closed", || proto.closed()).await?;
    assert_eq!(proto.state(), ["CONNECTED", "EOF", "CLOSED"]);
    // The extra info keeps its place, as `fd=-1` once closed.
    assert!(matches!(
        transport.get_extra_info("pipe"),
        Some(ExtraInfo::Pipe(-1))
    ));
    Ok(())
}

/// `test_unclosed_pipe_transport`: a transport dropped with its loop
/// warns in debug mode, and its descriptor is closed.
#[test]
fn unclosed_pipe_transports_warn_in_debug_mode() {
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_.set_debug(true);
    let (r, w) = pipe();
    let (r2, w2) = pipe();
    let ((), logs) = capture_logs(|| {
        let pair = loop_
            .run_until_complete(async move {
                let loop_ = asyncio::get_running_loop()?;
                let read = loop_.connect_read_pipe(Proto::default, r).await?;
                let write = loop_.connect_write_pipe(Proto::default, w2).await?;
                Ok((read, write))
            })
            .unwrap();
        loop_.close().unwrap();
        drop(pair);
    });
    let warnings: Vec<_> = logs
        .iter()
        .filter(|r| r.message.starts_with("ResourceWarning: unclosed transport"))
        .map(|r| r.message.clone())
        .collect();
    assert_eq!(warnings.len(), 2, "{logs:?}");
    assert!(
        warnings[0].contains("<_UnixReadPipeTransport fd=")
            || warnings[1].contains("<_UnixReadPipeTransport fd=")
    );
    // Both far ends see the transports' descriptors closed.
    let mut buf = [0u8; 1];
    assert_eq!((&r2).read(&mut buf).unwrap(), 0);
    let e = (&w).write(b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
}

/// `test_read_pty_output`.
#[asyncio::test]
async fn read_pty_output() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (master, mut slave) = openpty();
    raw_mode(&slave);
    let (_transport, proto) = loop_.connect_read_pipe(Proto::default, master).await?;
    assert_eq!(proto.state(), ["CONNECTED"]);
    slave.write_all(b"1").unwrap();
    until("1 byte", || proto.nbytes() >= 1).await?;
    slave.write_all(b"2345").unwrap();
    until("5 bytes", || proto.nbytes() >= 5).await?;
    assert_eq!(proto.nbytes(), 5);
    // The slave's last close: the master reads EIO, which ends the
    // transport quietly (no report), with the error.
    let seen = record_exceptions(&loop_);
    drop(slave);
    until("closed", || proto.closed()).await?;
    assert_eq!(
        proto.state(),
        [
            "CONNECTED",
            format!("CLOSED OSError(Some({}))", libc::EIO).as_str()
        ]
    );
    assert!(seen.borrow().is_empty());
    Ok(())
}

/// Read errors other than EIO are reported, then end the transport
/// (CPython's `test__read_ready_error`): reading a write end is EBADF.
#[asyncio::test]
async fn a_read_error_is_fatal_and_reported() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let seen = record_exceptions(&loop_);
    let (master, slave) = openpty();
    // A PTY master opened write-only cannot be read: EBADF on read.
    let path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).unwrap();
    let write_only = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let (_t, proto) = loop_.connect_read_pipe(Proto::default, write_only).await?;
    let mut m = &master;
    m.write_all(b"x\n").unwrap();
    until("closed", || proto.closed()).await?;
    assert_eq!(
        proto.state(),
        [
            "CONNECTED",
            format!("CLOSED OSError(Some({}))", libc::EBADF).as_str()
        ]
    );
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].message, "Fatal read error on pipe transport");
    drop(slave);
    Ok(())
}

/// A failing `data_received` is logged as the reader callback's error, and
/// reading goes on (as in CPython, where it escapes `_read_ready`).
#[asyncio::test]
async fn a_failing_data_received_is_reported_and_reading_goes_on() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let seen = record_exceptions(&loop_);
    let (r, mut w) = pipe();
    let (t, proto) = loop_
        .connect_read_pipe(
            || Proto {
                fail_on: Some(b"boom"),
                ..Proto::default()
            },
            r,
        )
        .await?;
    w.write_all(b"boom").unwrap();
    until("boom", || proto.nbytes() == 4).await?;
    w.write_all(b"more").unwrap();
    until("more", || proto.nbytes() == 8).await?;
    assert_eq!(seen.borrow().len(), 1);
    assert_eq!(
        seen.borrow()[0].message,
        "Exception in callback _UnixReadPipeTransport._read_ready()"
    );
    assert!(!t.is_closing());
    t.close();
    until("closed", || proto.closed()).await?;
    assert_eq!(proto.state(), ["CONNECTED", "CLOSED"]);
    Ok(())
}

/// `test_pause_reading`, `test_resume_reading`, `test_close`, the reprs.
#[asyncio::test]
async fn pause_resume_close_and_repr_of_a_read_pipe() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (r, mut w) = pipe();
    let fd = r.as_raw_fd();
    let (t, proto) = loop_.connect_read_pipe(Proto::default, r).await?;
    assert_eq!(
        repr(&t),
        format!("<_UnixReadPipeTransport fd={fd} polling>")
    );
    assert!(t.is_reading());
    t.pause_reading();
    assert!(!t.is_reading());
    assert_eq!(repr(&t), format!("<_UnixReadPipeTransport fd={fd} idle>"));
    w.write_all(b"held").unwrap();
    for _ in 0..5 {
        asyncio::sleep(0.001).await?;
    }
    assert_eq!(proto.nbytes(), 0);
    t.resume_reading();
    until("the held bytes", || proto.nbytes() == 4).await?;
    // A read pipe's transport, as its protocol holds it, has no write half.
    let whole = proto.transport.borrow().clone().unwrap();
    let e = whole.write(b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AttributeError);
    assert_eq!(
        e.to_string(),
        "'_UnixReadPipeTransport' object has no attribute 'write'"
    );
    t.close();
    assert!(t.is_closing());
    assert!(!t.is_reading());
    assert_eq!(
        repr(&t),
        format!("<_UnixReadPipeTransport closing fd={fd} idle>")
    );
    until("closed", || proto.closed()).await?;
    assert_eq!(
        repr(&t),
        format!("<_UnixReadPipeTransport closed fd={fd} closed>")
    );
    Ok(())
}

/// Regular files are refused, with CPython's messages.
#[asyncio::test]
async fn regular_files_are_refused() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let file = File::open("/proc/self/exe").unwrap();
    let e = loop_
        .connect_read_pipe(Proto::default, file)
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ValueError);
    assert_eq!(e.to_string(), "Pipe transport is for pipes/sockets only.");
    let file = File::open("/proc/self/exe").unwrap();
    let e = loop_
        .connect_write_pipe(Proto::default, file)
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Pipe transport is only for pipes, sockets and character devices"
    );
    Ok(())
}

// ----- test_events.py: write pipes -----

/// `test_write_pipe`.
#[asyncio::test]
async fn write_pipe() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (mut r, w) = pipe();
    let fd = w.as_raw_fd();
    let (t, proto) = loop_.connect_write_pipe(Proto::default, w).await?;
    assert_eq!(proto.state(), ["CONNECTED"]);
    assert!(t.can_write_eof());
    assert_eq!(
        repr(&t),
        format!("<_UnixWritePipeTransport fd={fd} idle bufsize=0>")
    );
    t.write(b"1")?;
    assert_eq!(read_exactly(&mut r, 1), b"1");
    t.write(b"2345")?;
    assert_eq!(read_exactly(&mut r, 4), b"2345");
    assert_eq!(proto.state(), ["CONNECTED"]);
    t.close();
    until("closed", || proto.closed()).await?;
    assert_eq!(proto.state(), ["CONNECTED", "CLOSED"]);
    // The pipe is closed: the reader sees its end.
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    Ok(())
}

/// `test_write_pipe_disconnect_on_close`: on a socket pair, the reader
/// closing ends the transport.
#[asyncio::test]
async fn write_pipe_disconnect_on_close() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (rsock, wsock) = Socket::pair(AF_UNIX, SOCK_STREAM, 0)?;
    rsock.setblocking(false)?;
    let (t, proto) = loop_
        .connect_write_pipe(Proto::default, OwnedFd::from(wsock))
        .await?;
    t.write(b"1")?;
    let data = loop_.sock_recv(&rsock, 1024).await?;
    assert_eq!(data, b"1");
    drop(rsock);
    until("closed", || proto.closed()).await?;
    assert_eq!(proto.state(), ["CONNECTED", "CLOSED"]);
    Ok(())
}

/// `test_write_pty`.
#[asyncio::test]
async fn write_pty() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (mut master, slave) = openpty();
    raw_mode(&slave);
    let (t, proto) = loop_.connect_write_pipe(Proto::default, slave).await?;
    t.write(b"1")?;
    assert_eq!(read_exactly(&mut master, 1), b"1");
    t.write(b"2345")?;
    assert_eq!(read_exactly(&mut master, 4), b"2345");
    t.close();
    until("closed", || proto.closed()).await?;
    assert_eq!(proto.state(), ["CONNECTED", "CLOSED"]);
    Ok(())
}

/// `test_bidirectional_pty`: one PTY master, read and written through two
/// transports.
#[asyncio::test]
async fn bidirectional_pty() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (master, mut slave) = openpty();
    raw_mode(&slave);
    let master_write = master.try_clone().unwrap();
    let (read_t, reader) = loop_.connect_read_pipe(Proto::default, master).await?;
    let (write_t, writer) = loop_
        .connect_write_pipe(Proto::default, master_write)
        .await?;
    slave.write_all(b"1").unwrap();
    until("1 byte", || reader.nbytes() >= 1).await?;
    write_t.write(b"a")?;
    assert_eq!(read_exactly(&mut slave, 1), b"a");
    slave.write_all(b"2345").unwrap();
    until("5 bytes", || reader.nbytes() >= 5).await?;
    write_t.write(b"bcde")?;
    assert_eq!(read_exactly(&mut slave, 4), b"bcde");
    write_t.close();
    until("writer closed", || writer.closed()).await?;
    read_t.close();
    until("reader closed", || reader.closed()).await?;
    assert_eq!(writer.state(), ["CONNECTED", "CLOSED"]);
    assert_eq!(reader.state(), ["CONNECTED", "CLOSED"]);
    Ok(())
}

// ----- test_unix_events.py: UnixWritePipeTransportTests -----

/// `test_write_again`, `test__write_ready*`, flow control: a full pipe
/// buffers, pauses the protocol above the high-water mark, drains as the
/// reader reads, resumes below the low one; `close()` waits for the
/// buffer.
#[asyncio::test]
async fn a_full_pipe_buffers_pauses_drains_and_close_waits() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (r, w) = pipe();
    let (t, proto) = loop_.connect_write_pipe(Proto::default, w).await?;
    t.set_write_buffer_limits(Some(100_000), Some(10_000))?;
    let chunk = vec![b'x'; 50_000];
    let mut sent = 0;
    while t.get_write_buffer_size() == 0 {
        t.write(&chunk)?;
        sent += chunk.len();
    }
    assert!(repr(&t).contains(" polling bufsize="), "{t:?}");
    while t.get_write_buffer_size() <= 100_000 {
        t.write(&chunk)?;
        sent += chunk.len();
    }
    assert_eq!(proto.state(), ["CONNECTED", "PAUSE"]);
    t.close();
    assert!(t.is_closing());
    // Writes after close() are dropped.
    t.write(b"dropped")?;
    // The reader takes everything, in a thread (blocking reads).
    let reader = std::thread::spawn(move || {
        let mut r = r;
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        all.len()
    });
    until("closed", || proto.closed()).await?;
    assert_eq!(proto.state(), ["CONNECTED", "PAUSE", "RESUME", "CLOSED"]);
    assert_eq!(reader.join().unwrap(), sent);
    Ok(())
}

/// `test_write_err` with EPIPE: writing after the reader is gone ends the
/// transport with `BrokenPipeError`, quietly (an `OSError`), and later
/// writes are dropped, warning from the fifth.
#[test]
fn writing_to_a_pipe_without_reader_loses_the_connection() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let seen = record_exceptions(&loop_);
    let (state, logs) = capture_logs(|| {
        loop_
            .run_until_complete(async {
                let loop_ = asyncio::get_running_loop()?;
                let (r, w) = pipe();
                let (t, proto) = loop_.connect_write_pipe(Proto::default, w).await?;
                drop(r);
                // Written before the loop runs the reader-gone watch.
                t.write(b"into the void")?;
                for _ in 0..7 {
                    t.write(b"x")?;
                }
                until("closed", || proto.closed()).await?;
                Ok(proto.state())
            })
            .unwrap()
    });
    loop_.close().unwrap();
    assert_eq!(
        state,
        [
            "CONNECTED".to_owned(),
            format!("CLOSED BrokenPipeError(Some({}))", libc::EPIPE)
        ]
    );
    assert!(seen.borrow().is_empty());
    let warnings = logs
        .iter()
        .filter(|r| r.message == "pipe closed by peer or os.write(pipe, data) raised exception.")
        .count();
    // conn_lost goes 1 → 8: the writes at 5, 6 and 7 warn.
    assert_eq!(warnings, 3, "{logs:?}");
}

/// `test__read_ready` of the write pipe: the reader closing while data
/// waits ends the transport with `BrokenPipeError`.
#[asyncio::test]
async fn the_reader_closing_with_data_buffered_is_a_broken_pipe() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (r, w) = pipe();
    let (t, proto) = loop_.connect_write_pipe(Proto::default, w).await?;
    let chunk = vec![0u8; 100_000];
    while t.get_write_buffer_size() == 0 {
        t.write(&chunk)?;
    }
    drop(r);
    until("closed", || proto.closed()).await?;
    assert_eq!(
        proto.state(),
        [
            "CONNECTED".to_owned(),
            format!("CLOSED BrokenPipeError(Some({}))", libc::EPIPE)
        ]
    );
    assert_eq!(t.get_write_buffer_size(), 0);
    Ok(())
}

/// The reader closing with nothing buffered ends the transport cleanly.
#[asyncio::test]
async fn the_reader_closing_with_nothing_buffered_closes() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (r, w) = pipe();
    let (_t, proto) = loop_.connect_write_pipe(Proto::default, w).await?;
    drop(r);
    until("closed", || proto.closed()).await?;
    assert_eq!(proto.state(), ["CONNECTED", "CLOSED"]);
    Ok(())
}

/// `test_abort`: the buffer is dropped and the connection lost at once.
#[asyncio::test]
async fn abort_drops_the_buffer() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (r, w) = pipe();
    let (t, proto) = loop_.connect_write_pipe(Proto::default, w).await?;
    while t.get_write_buffer_size() == 0 {
        t.write(&[1u8; 65536])?;
    }
    t.abort();
    assert_eq!(t.get_write_buffer_size(), 0);
    assert!(t.is_closing());
    until("closed", || proto.closed()).await?;
    assert_eq!(proto.state(), ["CONNECTED", "CLOSED"]);
    drop(r);
    Ok(())
}

/// `test_write_eof`, `test_write_eof_pending`.
#[asyncio::test]
async fn write_eof_closes_after_the_buffer() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (mut r, w) = pipe();
    let (t, proto) = loop_.connect_write_pipe(Proto::default, w).await?;
    t.write(b"last words")?;
    t.write_eof()?;
    assert!(t.is_closing());
    t.write_eof()?; // again: nothing
    until("closed", || proto.closed()).await?;
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"last words");
    Ok(())
}

/// Pipe transports leak no descriptor, closed or left open.
#[test]
fn pipe_transports_leak_no_descriptors() {
    if !in_child("pipe_transports_leak_no_descriptors") {
        return;
    }
    let cycle = || {
        let loop_ = asyncio::new_event_loop().unwrap();
        loop_
            .run_until_complete(async {
                let loop_ = asyncio::get_running_loop()?;
                for _ in 0..20 {
                    let (r, w) = pipe();
                    let (rt, rp) = loop_.connect_read_pipe(Proto::default, r).await?;
                    let (wt, wp) = loop_.connect_write_pipe(Proto::default, w).await?;
                    wt.write(b"x")?;
                    wt.close();
                    until("both closed", || rp.closed() && wp.closed()).await?;
                    rt.close();
                }
                // Left open.
                let (r, w) = pipe();
                loop_.connect_read_pipe(Proto::default, r).await?;
                loop_.connect_write_pipe(Proto::default, w).await?;
                Ok(())
            })
            .unwrap();
        loop_.close().unwrap();
    };
    cycle();
    let before = open_fds();
    cycle();
    cycle();
    assert_eq!(open_fds(), before);
}
