//! Misbehaving peers: a client that never reads cannot grow a well-behaved
//! server's memory past the high-water mark, and one client's bad input or
//! reset does not disturb the others.

use std::cell::{Cell, OnceCell, RefCell};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use asyncio::{BaseProtocol, Error, Future, Protocol, Server, Transport};

const CHUNK: usize = 16 * 1024;

/// Streams data while the transport lets it, written as Python producers
/// are: `while not self.paused: transport.write(chunk)`. The `write()` that
/// crosses the high-water mark calls `pause_writing()` before it returns,
/// so the loop stops there.
struct Firehose {
    transport: OnceCell<Rc<dyn Transport>>,
    paused_at: Rc<Cell<Option<usize>>>,
    on_pause: Future<()>,
    paused: Cell<bool>,
    writes: Cell<usize>,
    /// The transport, for the test to watch.
    seen: Rc<RefCell<Option<Rc<dyn Transport>>>>,
}

impl Firehose {
    fn pump(self: &Rc<Self>) -> asyncio::Result<()> {
        let chunk = [b'x'; CHUNK];
        let Some(t) = self.transport.get() else {
            return Ok(());
        };
        while !self.paused.get() {
            t.write(&chunk)?;
            self.writes.set(self.writes.get() + 1);
        }
        Ok(())
    }
}

impl BaseProtocol for Firehose {
    fn pause_writing(self: &Rc<Self>) -> asyncio::Result<()> {
        self.paused.set(true);
        if let Some(t) = self.transport.get() {
            self.paused_at.set(Some(t.get_write_buffer_size()));
        }
        if !self.on_pause.done() {
            self.on_pause.set_result(())?;
        }
        Ok(())
    }

    fn resume_writing(self: &Rc<Self>) -> asyncio::Result<()> {
        self.paused.set(false);
        self.pump()
    }
}

impl Protocol for Firehose {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> asyncio::Result<()> {
        *self.seen.borrow_mut() = Some(transport.clone());
        let _ = self.transport.set(transport);
        self.pump()
    }
}

fn port_of(server: &Server) -> u16 {
    server.sockets()[0]
        .getsockname()
        .and_then(|a| a.port())
        .expect("a bound port")
}

#[asyncio::test]
async fn a_peer_that_never_reads_cannot_grow_the_buffer_past_the_high_water_mark(
) -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let paused_at = Rc::new(Cell::new(None));
    let on_pause = Future::<()>::new(&loop_);
    let seen = Rc::new(RefCell::new(None));
    let (p, f, s) = (paused_at.clone(), on_pause.clone(), seen.clone());
    let server = loop_
        .create_server(move || Firehose {
            transport: OnceCell::new(),
            paused_at: p.clone(),
            on_pause: f.clone(),
            paused: Cell::new(false),
            writes: Cell::new(0),
            seen: s.clone(),
        })
        .host("127.0.0.1")
        .port(0)
        .await?;
    // A client that connects and never reads.
    let idle = TcpStream::connect(("127.0.0.1", port_of(&server)))?;
    asyncio::wait_for(&on_pause, 20.0).await?;
    let high = 64 * 1024;
    let at_pause = paused_at.get().expect("paused");
    // CPython pauses as soon as the buffer passes the mark: one chunk over at most.
    assert!(at_pause > high && at_pause <= high + CHUNK, "{at_pause}");
    // Let the loop run on: the protocol honours pause_writing, so nothing
    // more is buffered.
    for _ in 0..200 {
        asyncio::sleep(0).await?;
    }
    asyncio::sleep(0.05).await?;
    let transport = seen.borrow().clone().expect("connection_made");
    // (The kernel may still take some of it, never more is buffered.)
    assert!(transport.get_write_buffer_size() <= at_pause);
    assert!(!transport.is_closing());
    drop(idle);
    server.close();
    server.abort_clients();
    server.wait_closed().await
}

/// Echoes, except that `boom` is a protocol error (a fatal error for that
/// connection only).
struct PickyEcho {
    transport: OnceCell<Rc<dyn Transport>>,
    errors: Rc<RefCell<Vec<String>>>,
}

impl BaseProtocol for PickyEcho {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> asyncio::Result<()> {
        if let Some(e) = exc {
            self.errors.borrow_mut().push(e.traceback_line());
        }
        Ok(())
    }
}

impl Protocol for PickyEcho {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> asyncio::Result<()> {
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> asyncio::Result<()> {
        if data.starts_with(b"boom") {
            return Err(Error::value("bad request"));
        }
        match self.transport.get() {
            Some(t) => t.write(data),
            None => Ok(()),
        }
    }
}

fn echo_once(port: u16, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

#[asyncio::test]
async fn one_misbehaving_client_does_not_disturb_the_others() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let reports: Rc<RefCell<Vec<String>>> = Rc::default();
    let r = reports.clone();
    loop_.set_exception_handler(Some(
        move |_: &asyncio::EventLoop, ctx: &asyncio::ExceptionContext| {
            r.borrow_mut().push(ctx.message.clone());
        },
    ));
    let e = errors.clone();
    let server = loop_
        .create_server(move || PickyEcho {
            transport: OnceCell::new(),
            errors: e.clone(),
        })
        .host("127.0.0.1")
        .port(0)
        .await?;
    let port = port_of(&server);
    // Blocking clients run on another thread while the loop serves.
    let clients = loop_.run_in_executor(None, move || -> std::io::Result<Vec<u8>> {
        // A client sending bad input: its connection is closed.
        let mut bad = TcpStream::connect(("127.0.0.1", port))?;
        bad.set_read_timeout(Some(Duration::from_secs(20)))?;
        bad.write_all(b"boom")?;
        let mut rest = Vec::new();
        let _ = bad.read_to_end(&mut rest);
        // A client that resets its connection mid-request.
        let rst = socket2::Socket::from(TcpStream::connect(("127.0.0.1", port))?);
        rst.set_linger(Some(Duration::ZERO))?;
        let mut rst = TcpStream::from(rst);
        rst.write_all(b"half a requ")?;
        drop(rst);
        // Everyone else is served as usual.
        let mut out = Vec::new();
        for i in 0..20u8 {
            out.extend(echo_once(port, &[b'a' + i; 100])?);
        }
        Ok(out)
    })?;
    let echoed = clients.take().await?.map_err(Error::from)?;
    assert_eq!(echoed.len(), 2000);
    assert!(echoed
        .chunks(100)
        .enumerate()
        .all(|(i, c)| c.iter().all(|b| *b == b'a' + i as u8)));
    assert!(server.is_serving());
    assert!(
        reports
            .borrow()
            .iter()
            .any(|m| m == "Fatal error: protocol.data_received() call failed."),
        "{:?}",
        reports.borrow()
    );
    server.close();
    server.close_clients();
    server.wait_closed().await?;
    assert!(
        errors
            .borrow()
            .iter()
            .any(|e| e == "ValueError: bad request"),
        "{:?}",
        errors.borrow()
    );
    Ok(())
}
