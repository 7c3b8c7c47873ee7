//! Loops, servers and connections that outlive or miss their `close()`
//! (issue 7, points 1–3 and 22–23): objects register with their own loop
//! whatever loop runs; a loop dropped without `close()` releases its
//! runtime, sockets and descriptors and reports what CPython's garbage
//! collector would; `close()` breaks the cycles a user's handler, factory or
//! protocol makes; futures crossing threads end instead of hanging.
//!
//! Descriptor counts are process-wide, so those tests run again in a child
//! process that runs only them.

mod net_common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use asyncio::{BaseProtocol, ErrorKind, EventLoop, ExceptionContext, Protocol, Result, Transport};
use net_common::*;

fn new_loop() -> EventLoop {
    asyncio::new_event_loop().unwrap()
}

// ----- 1. objects live on their own loop's reactor -----

#[test]
fn p1_a_server_started_from_another_loop_accepts_on_its_own() {
    // Loop B's server (start_serving=False) is started by a task of loop A;
    // B must accept, before and after A is closed.
    let b = new_loop();
    let accepted = Accepted::new(&b);
    let acc = accepted.clone();
    let server = b
        .run_until_complete(
            b.create_server(move || Rec::echo(&acc.log()))
                .host("127.0.0.1")
                .port(0)
                .start_serving(false),
        )
        .unwrap();
    let port = server_port(&server);
    let a = new_loop();
    let s2 = server.clone();
    a.run_until_complete(async move { s2.start_serving().await })
        .unwrap();
    assert!(server.is_serving());
    a.close().unwrap();
    drop(a);
    let handled = record_handler(&b);
    let echoed = b
        .run_until_complete(async move {
            let (t, log) = connect(port, Rec::new).await?;
            t.write(b"ping")?;
            let data = log.wait_data(4).await?;
            t.close();
            log.wait_lost().await?;
            Ok(data)
        })
        .unwrap();
    assert_eq!(echoed, b"ping");
    assert_eq!(accepted.count(), 1);
    assert!(handled.borrow().is_empty(), "{:?}", handled.borrow());
    server.close();
    b.run_until_complete(async move { server.wait_closed().await })
        .unwrap();
    b.close().unwrap();
}

#[test]
fn p1_a_broken_listener_is_retried_after_a_delay_not_in_a_tight_loop() {
    // accept() on a listening socket shut down for reading fails with
    // EINVAL every time: reported, then retried after ACCEPT_RETRY_DELAY
    // (1 s), as CPython does for errors that would repeat.
    let loop_ = new_loop();
    let handled = record_handler(&loop_);
    loop_
        .run_until_complete(async {
            let (server, _port, _accepted) = serve_on_loopback(Rec::new).await?;
            let sock = server.sockets()[0].clone();
            sock.with_fd(|fd| socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Read))?
                .map_err(asyncio::Error::from)?;
            asyncio::sleep(0.3).await?;
            server.close();
            Ok(())
        })
        .unwrap();
    let handled = handled.borrow();
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert_eq!(
        handled[0].0,
        "Exception in callback BaseSelectorEventLoop._accept_connection()"
    );
    assert_eq!(handled[0].1.as_ref().unwrap().errno, Some(libc::EINVAL));
    drop(handled);
    loop_.close().unwrap();
}

// ----- 2. a loop dropped without close() -----

/// One loop with a pending task, a server and a connection, dropped without
/// `close()`; returns what its exception handler saw.
fn drop_busy_loop() -> Vec<String> {
    let loop_ = new_loop();
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let s = seen.clone();
    loop_.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        s.borrow_mut().push(ctx.message.clone());
    }));
    loop_
        .create_task(async {
            let loop_ = asyncio::get_running_loop()?;
            // The task holds its loop, as ported code does.
            loop_.create_future::<()>().await
        })
        .unwrap();
    loop_
        .run_until_complete(async {
            let pair = pair(Rec::new, Rec::new).await?;
            std::mem::forget(pair);
            Ok(())
        })
        .unwrap();
    drop(loop_);
    let seen = seen.borrow().clone();
    seen
}

#[test]
fn p2_a_loop_dropped_without_close_releases_its_descriptors() {
    if !in_child("p2_a_loop_dropped_without_close_releases_its_descriptors") {
        return;
    }
    // Warm up (lazily made process-wide state).
    drop_busy_loop();
    let before = open_fds();
    for _ in 0..30 {
        let seen = drop_busy_loop();
        // CPython's GC: Task.__del__ of the pending task.
        assert!(
            seen.iter()
                .any(|m| m == "Task was destroyed but it is pending!"),
            "{seen:?}"
        );
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
}

#[test]
fn p2_dropping_the_last_owning_handle_closes_the_loop_and_warns_in_debug_mode() {
    let loop_ = new_loop();
    loop_.set_debug(true);
    let inner = loop_.non_owning();
    assert!(loop_.is_owning() && !inner.is_owning());
    let (_, logs) = capture_logs(|| {
        loop_
            .run_until_complete(async {
                let (_server, _, _) = serve_on_loopback(Rec::new).await?;
                let pair = pair(Rec::new, Rec::new).await?;
                std::mem::forget(pair);
                Ok(())
            })
            .unwrap();
        drop(loop_);
    });
    assert!(inner.is_closed());
    let warnings: Vec<&str> = logs
        .iter()
        .filter(|r| r.message.starts_with("ResourceWarning: "))
        .map(|r| r.message.as_str())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("ResourceWarning: unclosed event loop <TokioEventLoop ")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("ResourceWarning: unclosed transport <_SelectorSocketTransport")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("ResourceWarning: unclosed <socket.socket ")),
        "{warnings:?}"
    );
}

#[test]
fn p2_a_loop_whose_owner_is_dropped_while_it_runs_closes_when_it_stops() {
    let loop_ = new_loop();
    let inner = loop_.non_owning();
    let owner = Rc::new(RefCell::new(Some(loop_)));
    let o = owner.clone();
    inner
        .call_soon(move || {
            o.borrow_mut().take();
        })
        .unwrap();
    let l = inner.clone();
    inner.call_soon(move || l.stop()).unwrap();
    inner.run_forever().unwrap();
    assert!(inner.is_closed());
    // Handles the loop gave out keep working as handles of a closed loop.
    assert_eq!(
        inner.call_soon(|| ()).unwrap_err().message(),
        "Event loop is closed"
    );
}

#[test]
fn p2_handles_given_out_by_the_loop_do_not_own_it() {
    let loop_ = new_loop();
    let from_task = loop_
        .run_until_complete(async { asyncio::get_running_loop() })
        .unwrap();
    assert!(!from_task.is_owning());
    let fut = loop_.create_future::<()>();
    assert!(!fut.get_loop().is_owning());
    // A clone of an owning handle owns it too.
    let clone = loop_.clone();
    drop(loop_);
    assert!(!clone.is_closed());
    drop(clone);
    assert!(from_task.is_closed());
}

// ----- 3. close() breaks the user's cycles -----

struct HoldsFuture {
    _fut: asyncio::Future<()>,
    _witness: Rc<()>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
}

impl BaseProtocol for HoldsFuture {}

impl Protocol for HoldsFuture {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        *self.transport.borrow_mut() = Some(transport);
        Ok(())
    }
}

#[test]
fn p3_close_breaks_cycles_through_handlers_factories_and_protocols() {
    // Each of these holds a future of the loop, so the loop holds itself
    // through them; close() must let go of all of them.
    let loop_ = new_loop();
    let held = loop_.create_future::<()>();
    let witness = Rc::new(());
    let (w1, h1) = (witness.clone(), held.clone());
    loop_.set_exception_handler(Some(move |_: &EventLoop, _: &ExceptionContext| {
        let _ = (&w1, &h1);
    }));
    let (w2, h2) = (witness.clone(), held.clone());
    let factory = move |_: &EventLoop, _: &mut asyncio::TaskInit| -> Result<()> {
        let _ = (&w2, &h2);
        Ok(())
    };
    loop_.set_task_factory(Some(Rc::new(factory)));
    let (w3, h3) = (witness.clone(), held.clone());
    loop_
        .run_until_complete(async move {
            let loop_ = asyncio::get_running_loop()?;
            let server = loop_
                .create_server(move || HoldsFuture {
                    _fut: h3.clone(),
                    _witness: w3.clone(),
                    transport: RefCell::new(None),
                })
                .host("127.0.0.1")
                .port(0)
                .await?;
            let port = server_port(&server);
            let (t, _log) = connect(port, Rec::new).await?;
            iterations(3).await?;
            // Neither the server nor the connection is closed: the handles
            // are just dropped.
            drop((t, server));
            Ok(())
        })
        .unwrap();
    // Handler, factory, the server's factory and one protocol.
    assert_eq!(Rc::strong_count(&witness), 5);
    loop_.close().unwrap();
    assert_eq!(Rc::strong_count(&witness), 1, "close() kept something");
    assert!(loop_.get_exception_handler().is_none());
    assert!(loop_.get_task_factory().is_none());
}

#[test]
fn p3_set_protocol_after_connection_lost_keeps_no_cycle() {
    on_loop_net(|| async {
        let p = pair(Rec::new, Rec::new).await?;
        p.client.close();
        p.client_log.wait_lost().await?;
        let late = Rc::new(HoldsFuture {
            _fut: asyncio::get_running_loop()?.create_future(),
            _witness: Rc::new(()),
            transport: RefCell::new(Some(p.client.clone())),
        });
        let weak = Rc::downgrade(&late);
        p.client
            .set_protocol(asyncio::StreamProtocolRef::new(late.clone()));
        drop(late);
        assert!(weak.upgrade().is_none(), "the transport kept the protocol");
        assert!(p.client.get_protocol().is_none());
        p.server.close();
        Ok(())
    });
}

/// Runs `body` on a new loop, closes it.
fn on_loop_net<F, Fut>(body: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>> + 'static,
{
    let loop_ = new_loop();
    loop_.run_until_complete(body()).unwrap();
    loop_.close().unwrap();
}

// ----- 22. wrap_future -----

#[test]
fn p22_wrap_future_follows_a_concurrent_future_through_the_loop() {
    on_loop_net(|| async {
        // Completed in another thread.
        let cf = asyncio::ConcurrentFuture::new();
        let setter = cf.clone();
        let worker = std::thread::spawn(move || setter.set_result(7));
        assert_eq!(asyncio::wrap_future(cf)?.await?, 7);
        worker.join().unwrap();
        // Already done: the outcome still arrives through the loop.
        let cf = asyncio::ConcurrentFuture::<i32>::new();
        cf.set_exception(asyncio::Error::value("v"));
        let fut = asyncio::wrap_future(cf)?;
        assert!(!fut.done());
        assert_eq!(fut.clone().await.unwrap_err().message(), "v");
        // Cancelling the asyncio future cancels the concurrent one.
        let cf = asyncio::ConcurrentFuture::<i32>::new();
        let fut = asyncio::wrap_future(cf.clone())?;
        assert!(fut.cancel());
        asyncio::sleep(0).await?;
        assert!(cf.cancelled());
        // A cancelled concurrent future cancels the asyncio one.
        let cf = asyncio::ConcurrentFuture::<i32>::new();
        let fut = asyncio::wrap_future(cf.clone())?;
        cf.cancel();
        assert!(fut.clone().await.unwrap_err().is_cancelled());
        assert!(fut.cancelled());
        Ok(())
    });
    // Outside a running loop: the error CPython's get_running_loop gives.
    let err = asyncio::wrap_future(asyncio::ConcurrentFuture::<i32>::new()).unwrap_err();
    assert_eq!(err.message(), "no running event loop");
}

// ----- 23. run_coroutine_threadsafe and a closing loop -----

#[test]
fn p23_futures_of_run_coroutine_threadsafe_end_cancelled_when_the_loop_closes() {
    let loop_ = new_loop();
    let remote = loop_.threadsafe();
    let started = Rc::new(Cell::new(false));
    // One coroutine that starts and never finishes.
    let (tx, rx) = std::sync::mpsc::channel();
    let r2 = remote.clone();
    let worker = std::thread::spawn(move || {
        let running = asyncio::run_coroutine_threadsafe(
            || async {
                asyncio::sleep(3600).await?;
                Ok(1)
            },
            &r2,
        )
        .unwrap();
        tx.send(()).unwrap();
        running.result(Some(Duration::from_secs(30)))
    });
    rx.recv().unwrap();
    let s = started.clone();
    loop_
        .run_until_complete(async move {
            asyncio::sleep(0.01).await?;
            s.set(true);
            Ok(())
        })
        .unwrap();
    assert!(started.get());
    // One submitted that never gets to start.
    let never = asyncio::run_coroutine_threadsafe(|| async { Ok(2) }, &remote).unwrap();
    let (_, logs) = capture_logs(|| loop_.close().unwrap());
    let err = worker.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CancelledError);
    assert!(never.cancelled());
    assert!(never
        .result(Some(Duration::from_secs(30)))
        .unwrap_err()
        .is_cancelled());
    // The task it ran is reported as CPython's GC would.
    assert!(
        logs.iter().any(|r| r
            .message
            .starts_with("Task was destroyed but it is pending!")),
        "{logs:?}"
    );
}
