//! Protocols (CPython's `test_protocols.py`: the default methods do
//! nothing), and the Python protocol patterns that ported code relies on
//! (issue 7, point 24), on real loopback connections:
//!
//! - a producer writing `while not self.paused` inside a callback is paused
//!   from inside the `write()` that crosses the high-water mark, so a peer
//!   that never reads cannot grow the buffer past the mark plus one write;
//! - a protocol schedules its own methods (`loop.call_later(d, self.finish)`);
//! - a task started in `data_received`, eager ones included, uses the
//!   protocol;
//! - a protocol that holds a `RefCell` borrow across a re-entrant call gets
//!   a reported error, not a crash.

mod net_common;

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

use asyncio::{
    BaseProtocol, BufferedProtocol, DatagramProtocol, Error, Protocol, Result, SubprocessProtocol,
    Transport,
};
use net_common::*;

// ----- test_protocols.py: the defaults do nothing -----

struct Plain;
impl BaseProtocol for Plain {}
impl Protocol for Plain {}
impl DatagramProtocol for Plain {}
impl SubprocessProtocol for Plain {}

struct PlainBuffered(RefCell<Vec<u8>>);
impl BaseProtocol for PlainBuffered {}
impl BufferedProtocol for PlainBuffered {
    fn get_buffer(self: &Rc<Self>, _hint: Option<usize>) -> Result<std::cell::RefMut<'_, [u8]>> {
        Ok(std::cell::RefMut::map(self.0.borrow_mut(), |v| &mut v[..]))
    }
    fn buffer_updated(self: &Rc<Self>, _n: usize) -> Result<()> {
        Ok(())
    }
}

#[test]
fn default_methods_do_nothing() {
    let p = Rc::new(Plain);
    assert!(BaseProtocol::connection_lost(&p, None).is_ok());
    assert!(p.pause_writing().is_ok());
    assert!(p.resume_writing().is_ok());
    assert!(p.data_received(b"x").is_ok());
    assert!(!Protocol::eof_received(&p).unwrap());
    assert!(p
        .datagram_received(b"x", asyncio::Address::Unix("/x".into()))
        .is_ok());
    assert!(p.error_received(Error::value("e")).is_ok());
    assert!(p.pipe_data_received(1, b"x").is_ok());
    assert!(p.pipe_connection_lost(1, None).is_ok());
    assert!(p.process_exited().is_ok());
    let b = Rc::new(PlainBuffered(RefCell::new(vec![0; 4])));
    assert_eq!(b.get_buffer(Some(100)).unwrap().len(), 4);
    assert!(b.buffer_updated(150).is_ok());
    assert!(!BufferedProtocol::eof_received(&b).unwrap());
}

// ----- a producer inside data_received -----

const CHUNK: usize = 4096;

/// On each request, streams `replies` chunks back Python-style:
/// `while not self.paused and self.left: write(chunk)`; `resume_writing`
/// goes on. Records when `pause_writing` came relative to the writes.
struct Producer {
    transport: OnceCell<Rc<dyn Transport>>,
    paused: Cell<bool>,
    left: Cell<usize>,
    writes: Cell<usize>,
    trace: Rc<RefCell<Vec<String>>>,
    buffered_at_pause: Rc<Cell<usize>>,
    /// The server side's transport, for the test to watch.
    seen: Rc<RefCell<Option<Rc<dyn Transport>>>>,
}

impl Producer {
    fn produce(self: &Rc<Self>) -> Result<()> {
        let t = self.transport.get().expect("connected");
        while !self.paused.get() && self.left.get() > 0 {
            t.write(&[b'p'; CHUNK])?;
            self.left.set(self.left.get() - 1);
            self.writes.set(self.writes.get() + 1);
        }
        Ok(())
    }
}

impl BaseProtocol for Producer {
    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        // Called inside the write() that crossed the mark: that write has
        // not been counted yet.
        self.trace
            .borrow_mut()
            .push(format!("pause after {} writes", self.writes.get()));
        self.buffered_at_pause
            .set(self.transport.get().unwrap().get_write_buffer_size());
        self.paused.set(true);
        Ok(())
    }

    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        self.trace.borrow_mut().push("resume".into());
        self.paused.set(false);
        self.produce()
    }
}

impl Protocol for Producer {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        transport.set_write_buffer_limits(Some(8 * CHUNK), None)?;
        // A small kernel buffer, so that the transport's own fills fast.
        set_sndbuf(&transport, CHUNK);
        *self.seen.borrow_mut() = Some(transport.clone());
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, _data: &[u8]) -> Result<()> {
        self.left.set(1000);
        self.produce()
    }
}

#[asyncio::test]
async fn a_producer_in_data_received_is_paused_inside_the_write_that_crosses_the_mark() -> Result<()>
{
    let loop_ = asyncio::get_running_loop()?;
    let trace: Rc<RefCell<Vec<String>>> = Rc::default();
    let at_pause = Rc::new(Cell::new(0));
    let seen: Rc<RefCell<Option<Rc<dyn Transport>>>> = Rc::default();
    let (tr, ap, sn) = (trace.clone(), at_pause.clone(), seen.clone());
    let server = loop_
        .create_server(move || Producer {
            transport: OnceCell::new(),
            paused: Cell::new(false),
            left: Cell::new(0),
            writes: Cell::new(0),
            trace: tr.clone(),
            buffered_at_pause: ap.clone(),
            seen: sn.clone(),
        })
        .host("127.0.0.1")
        .port(0)
        .await?;
    let port = server_port(&server);
    // A client that asks, then reads nothing for a while.
    let (client, log) = connect(port, Rec::new).await?;
    set_rcvbuf(&client, 64 * 1024);
    client.pause_reading();
    client.write(b"go")?;
    let ap = at_pause.clone();
    within(async move {
        while ap.get() == 0 {
            asyncio::sleep(0.001).await?;
        }
        Ok(())
    })
    .await?;
    let high = 8 * CHUNK;
    // The write that crossed the mark paused the producer before returning.
    let buffered = at_pause.get();
    assert!(buffered > high && buffered <= high + CHUNK, "{buffered}");
    assert!(trace.borrow()[0].starts_with("pause after "), "{trace:?}");
    // Never more than that, however long the peer does not read.
    iterations(50).await?;
    let transport = seen.borrow().clone().expect("connected");
    assert!(transport.get_write_buffer_size() <= high + CHUNK);
    // Reading again lets it go on to the end.
    client.resume_reading();

    let total = 1000 * CHUNK;
    let got = log.wait_data(total).await?;
    assert_eq!(got.len(), total);
    assert!(trace.borrow().iter().any(|e| e == "resume"));
    client.close();
    server.close();
    Ok(())
}

// ----- a protocol scheduling its own methods -----

/// Python: `loop.call_later(0.02, self.finish)` in `data_received`, and a
/// task (eager or not) that uses the protocol.
struct Scheduler {
    transport: OnceCell<Rc<dyn Transport>>,
    received: RefCell<Vec<u8>>,
    events: Rc<RefCell<Vec<String>>>,
}

impl Scheduler {
    fn finish(self: &Rc<Self>) -> Result<()> {
        self.events.borrow_mut().push("finish".into());
        let reply = self.received.borrow().to_ascii_uppercase();
        let t = self.transport.get().expect("connected");
        t.write(&reply)?;
        t.close();
        Ok(())
    }

    async fn acknowledge(self: Rc<Self>) -> Result<()> {
        // Runs its first step inside data_received with the eager factory:
        // the protocol is not borrowed, so it can be used here.
        self.events
            .borrow_mut()
            .push(format!("task sees {} bytes", self.received.borrow().len()));
        self.transport.get().expect("connected").write(b"ack:")?;
        asyncio::sleep(0).await?;
        self.events.borrow_mut().push("task done".into());
        Ok(())
    }
}

impl BaseProtocol for Scheduler {}

impl Protocol for Scheduler {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        self.received.borrow_mut().extend_from_slice(data);
        self.events.borrow_mut().push("data".into());
        asyncio::create_task(self.clone().acknowledge())?;
        self.events.borrow_mut().push("task created".into());
        let me = self.clone();
        asyncio::get_running_loop()?.call_later(0.02, move || me.finish())?;
        Ok(())
    }
}

async fn scheduler_exchange(eager: bool) -> Result<(Vec<u8>, Vec<String>)> {
    let loop_ = asyncio::get_running_loop()?;
    if eager {
        loop_.set_task_factory(Some(asyncio::eager_task_factory()));
    }
    let events: Rc<RefCell<Vec<String>>> = Rc::default();
    let ev = events.clone();
    let server = loop_
        .create_server(move || Scheduler {
            transport: OnceCell::new(),
            received: RefCell::new(Vec::new()),
            events: ev.clone(),
        })
        .host("127.0.0.1")
        .port(0)
        .await?;
    let (client, log) = connect(server_port(&server), Rec::new).await?;
    client.write(b"hello")?;
    log.wait_lost().await?;
    server.close();
    loop_.set_task_factory(None);
    let events = events.borrow().clone();
    Ok((log.data(), events))
}

#[asyncio::test]
async fn a_protocol_schedules_its_own_methods_and_tasks_that_use_it() -> Result<()> {
    let (reply, events) = scheduler_exchange(false).await?;
    assert_eq!(reply, b"ack:HELLO");
    assert_eq!(
        events,
        [
            "data",
            "task created",
            "task sees 5 bytes",
            "task done",
            "finish"
        ]
    );
    Ok(())
}

#[asyncio::test]
async fn an_eager_task_started_in_data_received_uses_its_protocol() -> Result<()> {
    let (reply, events) = scheduler_exchange(true).await?;
    assert_eq!(reply, b"ack:HELLO");
    // The eager first step ran inside data_received, before create_task
    // returned.
    assert_eq!(
        events,
        [
            "data",
            "task sees 5 bytes",
            "task created",
            "task done",
            "finish"
        ]
    );
    Ok(())
}

// ----- misuse is reported, never a crash -----

/// Holds a `RefCell` borrow across a `write()` that calls `pause_writing`,
/// which borrows the same cell: a panic, caught and reported as the
/// callback's error.
struct HoldsBorrow {
    transport: OnceCell<Rc<dyn Transport>>,
    state: RefCell<u32>,
}

impl BaseProtocol for HoldsBorrow {
    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        *self.state.borrow_mut() += 1;
        Ok(())
    }
}

impl Protocol for HoldsBorrow {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        transport.set_write_buffer_limits(Some(1), Some(0))?;
        set_sndbuf(&transport, 4096);
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, _data: &[u8]) -> Result<()> {
        let t = self.transport.get().expect("connected");
        let mut state = self.state.borrow_mut();
        for _ in 0..64 {
            t.write(&[0u8; 65536])?;
            *state += 1;
        }
        Ok(())
    }
}

#[asyncio::test]
async fn a_borrow_held_across_a_reentrant_call_is_a_reported_error() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let handled = record_handler(&loop_);
    let server = loop_
        .create_server(|| HoldsBorrow {
            transport: OnceCell::new(),
            state: RefCell::new(0),
        })
        .host("127.0.0.1")
        .port(0)
        .await?;
    let (client, log) = connect(server_port(&server), Rec::new).await?;
    client.pause_reading();
    client.write(b"go")?;
    within(async move {
        while handled.borrow().is_empty() {
            asyncio::sleep(0.001).await?;
        }
        let seen = handled.borrow().clone();
        assert_eq!(seen[0].0, "protocol.pause_writing() failed");
        let exc = seen[0].1.clone().expect("an error");
        assert_eq!(exc.kind, asyncio::ErrorKind::Panic);
        assert!(exc.text.contains("already borrowed"), "{exc:?}");
        Ok(())
    })
    .await?;
    client.close();
    log.wait_lost().await?;
    server.close();
    Ok(())
}

// ----- KeyboardInterrupt from a protocol -----

#[test]
fn keyboard_interrupt_from_data_received_leaves_the_loop_and_the_transport_open() {
    // CPython's `_read_ready__data_received`: `except (SystemExit,
    // KeyboardInterrupt): raise` — out of run_forever, nothing closed.
    let loop_ = asyncio::new_event_loop().unwrap();
    let (server, client, log) = loop_
        .run_until_complete(async {
            let (server, port, accepted) = serve_on_loopback(|log| Rec {
                on_data: Some(Box::new(|_, data| {
                    if data == b"interrupt" {
                        return Err(Error::bare(asyncio::ErrorKind::KeyboardInterrupt));
                    }
                    Ok(())
                })),
                ..Rec::new(log)
            })
            .await?;
            let (client, _) = connect(port, Rec::new).await?;
            let log = accepted.next().await?;
            Ok((server, client, log))
        })
        .unwrap();
    client.write(b"interrupt").unwrap();
    let err = loop_
        .run_until_complete(async { asyncio::sleep(30).await })
        .unwrap_err();
    assert_eq!(err.kind(), asyncio::ErrorKind::KeyboardInterrupt);
    assert!(!log.is_lost());
    // The connection goes on.
    client.write(b"more").unwrap();
    let l = log.clone();
    let data = loop_
        .run_until_complete(async move { l.wait_data(13).await })
        .unwrap();
    assert_eq!(data, b"interruptmore");
    server.close();
    client.close();
    loop_.close().unwrap();
}
