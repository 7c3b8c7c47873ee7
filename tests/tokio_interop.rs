//! Tokio crates inside asyncio tasks, and back: a `tokio_util::codec::Framed`
//! stream against an asyncio streams server, `tokio::sync` channels between
//! asyncio tasks and Tokio tasks (on the loop's runtime and on a separate
//! multi-thread one), `tokio::time::timeout` around asyncio futures and
//! `asyncio::wait_for` around Tokio futures, cancelling a task that waits in
//! a Tokio future, and what `tokio::spawn` and the other runtime-bound Tokio
//! calls do inside a loop.
//!
//! The loop runs on a current-thread Tokio `LocalRuntime` (one per loop),
//! entered only while the loop runs: Tokio's reactor, timers, blocking pool
//! and task scheduler work inside asyncio tasks and callbacks, on the
//! loop's thread; the calls that need a multi-thread runtime panic there.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use asyncio::{Error, ErrorKind, Future, StreamReader, StreamWriter};
use common::{entries, log, on_loop, push};
use futures_util::{SinkExt, StreamExt};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, LinesCodec};

/// A Tokio or tokio-util error as an asyncio one (for `?` in tasks).
fn err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::custom(e)
}

/// Sets its flag when dropped: tells whether a Tokio task was dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

// ===== tokio-util =====

#[test]
fn framed_lines_over_a_tokio_stream_against_an_asyncio_streams_server() {
    let replies = on_loop(|_| async {
        // The server: asyncio streams, each line sent back upper-cased.
        let server = asyncio::start_server(
            |reader: StreamReader, writer: StreamWriter| async move {
                while let Some(line) = reader.next_line().await? {
                    writer.write(&line.to_ascii_uppercase())?;
                    writer.drain().await?;
                }
                writer.close();
                writer.wait_closed().await
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let port = server.sockets()[0]
            .getsockname()
            .and_then(|a| a.port())
            .expect("port");
        // The client, in an asyncio task: Tokio's TcpStream framed by
        // tokio-util's LinesCodec, driven as a futures Sink and Stream.
        let client = asyncio::create_task(async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let mut lines = Framed::new(stream, LinesCodec::new());
            let mut replies = Vec::new();
            for word in ["hello", "from", "tokio-util"] {
                lines.send(word).await.map_err(err)?;
                let reply = lines
                    .next()
                    .await
                    .ok_or_else(|| Error::runtime("connection closed"))?;
                replies.push(reply.map_err(err)?);
            }
            Ok(replies)
        })?;
        let replies = client.await?;
        server.close();
        server.wait_closed().await?;
        Ok(replies)
    });
    assert_eq!(replies, ["HELLO", "FROM", "TOKIO-UTIL"]);
}

// ===== tokio::sync channels =====

#[test]
fn mpsc_and_oneshot_between_an_asyncio_task_and_a_tokio_local_task() {
    let sum = on_loop(|_| async {
        // Bounded: the asyncio producer waits in `send` for room.
        let (tx, mut rx) = mpsc::channel::<u32>(2);
        let (sum_tx, sum_rx) = oneshot::channel();
        // A Tokio task on the loop's runtime (`spawn_local`: no `Send`).
        let consumer = tokio::task::spawn_local(async move {
            let mut sum = 0;
            while let Some(n) = rx.recv().await {
                sum += n;
            }
            let _ = sum_tx.send(sum);
        });
        let producer = asyncio::create_task(async move {
            for n in 1..=10 {
                tx.send(n).await.map_err(err)?;
            }
            // `tx` dropped here: the consumer's `recv` ends.
            Ok(())
        })?;
        producer.await?;
        let sum = sum_rx.await.map_err(err)?;
        consumer.await.map_err(err)?;
        Ok(sum)
    });
    assert_eq!(sum, 55);
}

#[test]
fn a_tokio_local_task_can_await_asyncio_coroutines_but_is_no_asyncio_task() {
    let seen = on_loop(|_| async {
        let seen = log();
        let s = seen.clone();
        let tokio_task = tokio::task::spawn_local(async move {
            // Plain asyncio futures and the running loop work here...
            asyncio::sleep(0.001).await?;
            push(&s, format!("current_task: {:?}", asyncio::current_task()?));
            let t = asyncio::create_task(async { Ok(6 * 7) })?;
            push(&s, format!("task result: {}", t.await?));
            // ...but what needs the current asyncio task does not: run it
            // in one (`asyncio::create_task`) instead.
            let e = asyncio::timeout(1.0).run(async { Ok(()) }).await;
            push(&s, format!("timeout: {:?}", e.unwrap_err()));
            Ok::<_, Error>(())
        });
        tokio_task.await.map_err(err)??;
        Ok(entries(&seen))
    });
    assert_eq!(
        seen,
        [
            "current_task: None",
            "task result: 42",
            "timeout: RuntimeError('Timeout should be used inside a task')",
        ]
    );
}

#[test]
fn channels_to_a_tokio_task_on_a_separate_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("multi-thread runtime");
    let handle = runtime.handle().clone();
    let (answers, ran_elsewhere) = on_loop(|_| async move {
        let loop_thread = std::thread::current().id();
        // A worker on the other runtime answers requests through oneshots.
        let (requests, mut incoming) = mpsc::unbounded_channel::<(u32, oneshot::Sender<u32>)>();
        let worker = handle.spawn(async move {
            let mut threads = Vec::new();
            while let Some((n, reply)) = incoming.recv().await {
                threads.push(std::thread::current().id());
                let _ = reply.send(n * n);
            }
            // Allowed on a multi-thread runtime (it panics inside the loop).
            tokio::task::block_in_place(|| threads)
        });
        // Three asyncio tasks ask at once.
        let askers: Vec<_> = (1..=3)
            .map(|n| {
                let requests = requests.clone();
                asyncio::create_task(async move {
                    let (reply, answer) = oneshot::channel();
                    requests.send((n, reply)).map_err(err)?;
                    answer.await.map_err(err)
                })
            })
            .collect::<asyncio::Result<_>>()?;
        let answers: Vec<u32> = asyncio::gather(askers).await?;
        drop(requests);
        // Its JoinHandle wakes the loop from a worker thread.
        let threads = worker.await.map_err(err)?;
        Ok((answers, threads.iter().all(|t| *t != loop_thread)))
    });
    // Outside the loop: a runtime cannot be dropped inside another.
    drop(runtime);
    assert_eq!(answers, [1, 4, 9]);
    assert!(ran_elsewhere);
}

// ===== timeouts both ways =====

#[test]
fn tokio_timeout_around_asyncio_futures() {
    on_loop(|loop_| async move {
        // In time: an asyncio future resolved by a loop callback.
        let fut = Future::<u32>::new(&loop_);
        let f = fut.clone();
        loop_.call_soon(move || f.set_result(7))?;
        let v = tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .map_err(err)??;
        assert_eq!(v, 7);

        // Too late: Tokio's timeout drops the await and leaves the asyncio
        // future pending (`asyncio::wait_for` would cancel it).
        let never = Future::<u32>::new(&loop_);
        let late = tokio::time::timeout(Duration::from_millis(10), never.clone()).await;
        assert!(late.is_err());
        assert!(!never.done());

        // A task is not cancelled either (as a dropped Task handle is not).
        let task = asyncio::create_task(async {
            asyncio::sleep(60).await?;
            Ok(1)
        })?;
        let late = tokio::time::timeout(Duration::from_millis(10), task.clone()).await;
        assert!(late.is_err());
        assert!(!task.done());
        task.cancel();
        assert!(task.await.unwrap_err().is_cancelled());

        // A coroutine is dropped with the await: asyncio.sleep's timer too.
        let late = tokio::time::timeout(Duration::from_millis(10), asyncio::sleep(60)).await;
        assert!(late.is_err());
        Ok(())
    })
}

#[test]
fn wait_for_around_tokio_futures() {
    on_loop(|_| async {
        // In time: a oneshot filled by a Tokio task.
        let (tx, rx) = oneshot::channel();
        tokio::task::spawn_local(async move {
            tokio::task::yield_now().await;
            let _ = tx.send(5);
        });
        let v = asyncio::wait_for(async { rx.await.map_err(err) }, 60.0).await?;
        assert_eq!(v, 5);

        // Too late, made an asyncio await point with `cancellable`: the
        // deadline's cancellation ends the wait (dropping the Tokio future)
        // and wait_for fails with TimeoutError, caused by CancelledError.
        let (tx, rx) = oneshot::channel::<u32>();
        let e = asyncio::wait_for(asyncio::cancellable(rx), 0.01)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimeoutError);
        assert!(e.cause().is_some_and(Error::is_cancelled), "{e:?}");
        assert!(tx.is_closed());

        // Too late, not cancellable: a bare Tokio future cannot be
        // interrupted, so wait_for waits for it and returns its value (the
        // sender's 0.05 s timer runs after the 0.01 s deadline), as CPython's
        // returns a value the awaitable returned despite the cancellation;
        // the cancellation is taken back.
        let (tx, rx) = oneshot::channel();
        let sender = asyncio::create_task(async move {
            asyncio::sleep(0.05).await?;
            let _ = tx.send(9);
            Ok(())
        })?;
        let v = asyncio::wait_for(async { rx.await.map_err(err) }, 0.01).await?;
        assert_eq!(v, 9);
        let me = asyncio::current_task()?.expect("a task");
        assert_eq!(me.cancelling(), 0);
        asyncio::sleep(0).await?;
        sender.await
    })
}

// ===== cancellation =====

#[test]
fn cancelling_a_task_that_waits_in_a_tokio_future() {
    on_loop(|_| async {
        // Without `cancellable`: the request waits until the Tokio future
        // is ready, then arrives at the task's next asyncio await.
        let seen = log();
        let s = seen.clone();
        let (tx, rx) = oneshot::channel::<u32>();
        let task = asyncio::create_task(async move {
            let v = rx.await.map_err(err)?;
            push(&s, format!("got {v}"));
            asyncio::sleep(0).await?;
            push(&s, "not reached");
            Ok(())
        })?;
        asyncio::sleep(0).await?;
        assert!(task.cancel_with_message("stop"));
        for _ in 0..3 {
            asyncio::sleep(0).await?;
        }
        assert!(!task.done(), "still in the Tokio future");
        assert_eq!(task.cancelling(), 1);
        tx.send(1).expect("the task still waits");
        let e = task.clone().await.unwrap_err();
        assert_eq!(format!("{e:?}"), "CancelledError('stop')");
        assert!(task.cancelled());
        assert_eq!(entries(&seen), ["got 1"]);

        // A task that returns right after the Tokio future still ends
        // cancelled (CPython's "cancelled right before the coroutine
        // stops"): its value is dropped.
        let (tx, rx) = oneshot::channel::<u32>();
        let task = asyncio::create_task(async move { rx.await.map_err(err) })?;
        asyncio::sleep(0).await?;
        task.cancel();
        tx.send(2).expect("the task still waits");
        assert!(task.clone().await.unwrap_err().is_cancelled());
        assert!(task.cancelled());

        // With `cancellable`: the wait ends at once with CancelledError,
        // and the Tokio future is dropped (its sender sees it closed).
        let (tx, rx) = oneshot::channel::<u32>();
        let task =
            asyncio::create_task(async move { asyncio::cancellable(rx).await?.map_err(err) })?;
        asyncio::sleep(0).await?;
        task.cancel();
        for _ in 0..3 {
            asyncio::sleep(0).await?;
        }
        assert!(task.done());
        assert!(task.cancelled());
        assert!(tx.is_closed());

        // Caught, as `except CancelledError:` would: the task goes on.
        let (_tx, rx) = oneshot::channel::<u32>();
        let task = asyncio::create_task(async move {
            match asyncio::cancellable(rx).await {
                Err(e) if e.is_cancelled() => Ok("cleaned up"),
                _ => Ok("not cancelled"),
            }
        })?;
        asyncio::sleep(0).await?;
        task.cancel();
        assert_eq!(task.await?, "cleaned up");
        Ok(())
    })
}

#[test]
fn cancelling_a_task_that_awaits_a_tokio_join_handle_leaves_the_tokio_task_running() {
    let finished = on_loop(|_| async {
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<&str>();
        let tokio_task = tokio::task::spawn_local(async move {
            let _ = go_rx.await;
            let _ = done_tx.send("tokio task finished");
        });
        let waiter =
            asyncio::create_task(
                async move { asyncio::cancellable(tokio_task).await?.map_err(err) },
            )?;
        asyncio::sleep(0).await?;
        waiter.cancel();
        assert!(waiter.take().await.unwrap_err().is_cancelled());
        // Dropping a JoinHandle detaches the Tokio task; it is not aborted
        // (`JoinHandle::abort` does that).
        go_tx.send(()).expect("the Tokio task still waits");
        done_rx.await.map_err(err)
    });
    assert_eq!(finished, "tokio task finished");
}

// ===== tokio::spawn and the runtime flavour =====

#[test]
fn tokio_spawn_inside_a_loop_runs_on_the_loop_thread_while_the_loop_runs() {
    let loop_ = asyncio::new_event_loop().expect("new_event_loop");
    let loop_thread = std::thread::current().id();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let progressed = Arc::new(AtomicBool::new(false));
    let p = progressed.clone();
    let spawned = loop_
        .run_until_complete(async move {
            assert_eq!(
                tokio::runtime::Handle::current().runtime_flavor(),
                RuntimeFlavor::CurrentThread
            );
            // `tokio::spawn` works (the future must be `Send`) and puts
            // the task on the loop's own runtime.
            Ok(tokio::spawn(async move {
                let _ = go_rx.await;
                p.store(true, Ordering::SeqCst);
                std::thread::current().id()
            }))
        })
        .expect("run_until_complete");
    // The loop is stopped: its runtime runs no Tokio task either.
    go_tx.send(()).expect("the task waits");
    assert!(!progressed.load(Ordering::SeqCst));
    let thread = loop_
        .run_until_complete(async move { spawned.await.map_err(err) })
        .expect("run_until_complete");
    assert!(progressed.load(Ordering::SeqCst));
    assert_eq!(thread, loop_thread);
    loop_.close().expect("close");
}

#[test]
fn tokio_tasks_still_pending_when_the_loop_closes_are_dropped() {
    let spawned = Arc::new(AtomicBool::new(false));
    let local = Arc::new(AtomicBool::new(false));
    let (s, l) = (SetOnDrop(spawned.clone()), SetOnDrop(local.clone()));
    asyncio::run(async move {
        let (started_tx, started_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _guard = s;
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        });
        let (local_started_tx, local_started_rx) = oneshot::channel::<()>();
        tokio::task::spawn_local(async move {
            let _guard = l;
            let _ = local_started_tx.send(());
            std::future::pending::<()>().await;
        });
        started_rx.await.map_err(err)?;
        local_started_rx.await.map_err(err)?;
        Ok(())
    })
    .expect("run");
    // Not cancelled as asyncio tasks are (no code of theirs runs again):
    // dropped with the loop's runtime when `run` closes the loop.
    assert!(spawned.load(Ordering::SeqCst));
    assert!(local.load(Ordering::SeqCst));
}

#[test]
fn another_thread_spawns_onto_the_loop_through_its_runtime_handle() {
    on_loop(|loop_| async move {
        let handle = loop_
            .implementation::<asyncio::TokioEventLoop>()
            .and_then(asyncio::TokioEventLoop::runtime_handle)
            .expect("the loop's runtime");
        let loop_thread = std::thread::current().id();
        let join = std::thread::spawn(move || handle.spawn(async { std::thread::current().id() }))
            .join()
            .expect("thread");
        assert_eq!(join.await.map_err(err)?, loop_thread);
        Ok(())
    })
}

#[test]
fn blocking_tokio_calls_inside_the_loop() {
    on_loop(|_| async {
        // The blocking pool works: the closure runs on another thread.
        let loop_thread = std::thread::current().id();
        let elsewhere =
            tokio::task::spawn_blocking(move || std::thread::current().id() != loop_thread)
                .await
                .map_err(err)?;
        assert!(elsewhere);

        // block_in_place needs a multi-thread runtime, and no runtime can
        // be blocked on inside the loop's: both panic, which ends the task
        // with a Panic error (the loop goes on).
        let t = asyncio::create_task(async { Ok(tokio::task::block_in_place(|| 1)) })?;
        let e = t.await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panic);
        assert!(
            e.message()
                .contains("can call blocking only when running on the multi-threaded runtime"),
            "{e:?}"
        );
        let t = asyncio::create_task(async {
            Ok(tokio::runtime::Handle::current().block_on(async { 1 }))
        })?;
        let e = t.await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panic);
        assert!(
            e.message()
                .contains("Cannot start a runtime from within a runtime"),
            "{e:?}"
        );
        Ok(())
    })
}

#[test]
fn an_asyncio_loop_inside_a_tokio_program_needs_a_thread_of_its_own() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("multi-thread runtime");
    let coroutine = || async {
        asyncio::sleep(0.001).await?;
        Ok(5)
    };
    // The blocking pool's threads are inside the Tokio runtime: refused.
    let refused = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || asyncio::run(coroutine()))
            .await
            .expect("join")
    });
    assert_eq!(
        format!("{:?}", refused.unwrap_err()),
        "RuntimeError('Cannot run the event loop while another loop is running')"
    );
    // A plain thread is not.
    let ran = runtime.block_on(async move {
        std::thread::spawn(move || asyncio::run(coroutine()))
            .join()
            .expect("thread")
    });
    assert_eq!(ran.expect("run"), 5);
}
