//! Edge cases found in review: cancellation rings, reference cycles freed at
//! close, scopes dropped mid-way, self-cancellation order, handles that
//! outlive their loop.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use asyncio::{sleep, AsyncGenerator, Error, ErrorKind, EventLoop, Future, TaskGroup};

mod common;
use common::{entries, log, push};

#[test]
fn tasks_awaiting_each_other_can_be_cancelled() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let out = loop_
        .run_until_complete(async {
            let slot: Rc<RefCell<Option<asyncio::Task<()>>>> = Rc::default();
            let s = slot.clone();
            let a = asyncio::create_task(async move {
                sleep(0).await?;
                let b = s.borrow().clone().expect("b");
                b.await
            })?;
            let a2 = a.clone();
            let b = asyncio::create_task(async move { a2.await })?;
            *slot.borrow_mut() = Some(b.clone());
            sleep(0.01).await?;
            // A awaits B awaits A: the cancellation goes around the ring once.
            assert!(a.cancel());
            let ra = a.clone().await;
            let rb = b.clone().await;
            Ok((ra.unwrap_err().kind(), rb.unwrap_err().kind()))
        })
        .unwrap();
    assert_eq!(out, (ErrorKind::CancelledError, ErrorKind::CancelledError));
    loop_.close().unwrap();
}

/// A value whose drop can be observed through a `Weak`.
#[derive(Clone)]
struct Token(#[allow(dead_code)] Rc<()>);

#[test]
fn gather_frees_its_children_and_results_after_close() {
    let token = Rc::new(());
    let weak: Weak<()> = Rc::downgrade(&token);
    {
        let loop_ = asyncio::new_event_loop().unwrap();
        let t = Token(token);
        let results = loop_
            .run_until_complete(async move {
                let a = asyncio::create_task(async move { Ok(t) })?;
                asyncio::gather([a]).await
            })
            .unwrap();
        assert_eq!(results.len(), 1);
        drop(results);
        loop_.close().unwrap();
    }
    assert!(
        weak.upgrade().is_none(),
        "gather kept its child's result alive"
    );
}

#[test]
fn taskgroup_children_pending_at_close_are_freed() {
    let token = Rc::new(());
    let weak = Rc::downgrade(&token);
    {
        let loop_ = asyncio::new_event_loop().unwrap();
        let t = Token(token);
        let l = loop_.clone();
        // The group's body never ends: the loop is stopped with the child
        // pending, then closed.
        let _ = loop_.run_until_complete(async move {
            let tg = TaskGroup::new();
            let l2 = l.clone();
            tg.run(async {
                tg.create_task(async move {
                    let _keep = t;
                    sleep(3600).await
                })?;
                l2.call_later(0.01, {
                    let l3 = l2.clone();
                    move || l3.stop()
                })?;
                sleep(3600).await
            })
            .await
        });
        loop_.set_exception_handler(Some(|_: &EventLoop, _: &asyncio::ExceptionContext| {}));
        loop_.close().unwrap();
    }
    assert!(
        weak.upgrade().is_none(),
        "a TaskGroup child leaked after close"
    );
}

#[test]
fn asyncio_run_adds_no_task_of_its_own() {
    let (count, names) = asyncio::run(async {
        let tasks = asyncio::all_tasks()?;
        let me = asyncio::current_task()?.expect("main runs in a task");
        // The idiom "wait for every other task" must not wait for itself.
        let others: Vec<_> = tasks.iter().filter(|t| !t.ptr_eq(&me)).cloned().collect();
        for t in others {
            t.await?;
        }
        Ok((
            tasks.len(),
            tasks.iter().map(|t| t.get_name()).collect::<Vec<_>>(),
        ))
    })
    .unwrap();
    assert_eq!(count, 1, "{names:?}");
}

#[test]
fn a_timeout_scope_dropped_midway_does_not_cancel_the_task_later() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let out = loop_
        .run_until_complete(async {
            let cm = asyncio::timeout(0.01);
            {
                // `select!`-style: the short sleep wins, the scope is dropped.
                let scope = std::pin::pin!(cm.run(sleep(3600)));
                let short = std::pin::pin!(sleep(0.001));
                match futures_util::future::select(scope, short).await {
                    futures_util::future::Either::Right((r, _)) => r?,
                    futures_util::future::Either::Left(_) => panic!("the scope ended first"),
                }
            }
            // Past the dropped scope's deadline: nothing cancels us.
            sleep(0.05).await?;
            Ok(asyncio::current_task()?.expect("in a task").cancelling())
        })
        .unwrap();
    assert_eq!(out, 0);
    loop_.close().unwrap();
}

#[test]
fn a_task_cancelling_itself_resumes_after_callbacks_already_scheduled() {
    // CPython 3.13 prints A B C.
    let loop_ = asyncio::new_event_loop().unwrap();
    let events = log();
    let ev = events.clone();
    loop_
        .run_until_complete(async move {
            let l = asyncio::get_running_loop()?;
            let (a, b) = (ev.clone(), ev.clone());
            l.call_soon(move || push(&a, "A"))?;
            asyncio::current_task()?.expect("a task").cancel();
            l.call_soon(move || push(&b, "B"))?;
            match sleep(0.01).await {
                Err(e) if e.is_cancelled() => push(&ev, "C"),
                other => other?,
            }
            asyncio::current_task()?.expect("a task").uncancel();
            Ok(())
        })
        .unwrap();
    assert_eq!(entries(&events), ["A", "B", "C"]);
    loop_.close().unwrap();
}

#[test]
fn a_threadsafe_handle_outliving_its_dropped_loop_reports_it_closed() {
    let remote = {
        let loop_ = asyncio::new_event_loop().unwrap();
        loop_.threadsafe()
    };
    assert!(remote.is_closed());
    let err = remote.call_soon_threadsafe(|| ()).unwrap_err();
    assert_eq!(err.to_string(), "Event loop is closed");
}

#[test]
fn concurrent_future_result_with_an_unrepresentable_timeout_waits() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let remote = loop_.threadsafe();
    let fut = asyncio::run_coroutine_threadsafe(|| async { Ok(5) }, &remote).unwrap();
    let waiter = std::thread::spawn(move || {
        let v = fut.result(Some(Duration::MAX));
        remote.stop();
        v
    });
    loop_.run_forever().unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), 5);
    loop_.close().unwrap();
}

#[test]
fn a_panicking_async_generator_is_closed() {
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_
        .run_until_complete(async {
            let gen = AsyncGenerator::<i32>::new(|co| async move {
                co.yield_(1).await?;
                panic!("generator body failed");
            });
            assert_eq!(gen.anext().await?, Some(1));
            let err = gen.anext().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Panic);
            // Closed, not stuck "running".
            assert_eq!(gen.anext().await?, None);
            gen.aclose().await
        })
        .unwrap();
    loop_.close().unwrap();
}

#[test]
fn wait_for_and_timeout_take_none_for_no_limit() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let v = loop_
        .run_until_complete(async {
            let a = asyncio::wait_for(asyncio::sleep_with(0.001, 1), None).await?;
            let b = asyncio::timeout(None).run(async { Ok(2) }).await?;
            Ok(a + b)
        })
        .unwrap();
    assert_eq!(v, 3);
    loop_.close().unwrap();
}

#[test]
fn futures_created_for_a_closed_loop_fail_cleanly() {
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_.close().unwrap();
    let fut = Future::<i32>::new(&loop_);
    // Completing it schedules nothing on the closed loop, and nothing panics.
    fut.set_result(1).unwrap();
    assert_eq!(fut.result().unwrap(), 1);
    let err: Error = loop_.create_task(async { Ok(()) }).unwrap_err();
    assert_eq!(err.to_string(), "Event loop is closed");
}
