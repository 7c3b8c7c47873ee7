//! `asyncio.Future` on the Tokio-backed loop, against CPython 3.13's
//! behaviour (`test_asyncio/test_futures.py`).

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use asyncio::{Error, ErrorKind, EventLoop, ExceptionContext, Future};
use common::{entries, log, on_loop, push, Log};

/// Collects the messages of the loop's exception handler.
fn capture_reports(loop_: &EventLoop) -> Rc<RefCell<Vec<ExceptionContext>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    loop_.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        s.borrow_mut().push(ctx.clone());
    }));
    seen
}

// ----- state and results -----

#[test]
fn initial_state_is_pending() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    assert!(!f.done());
    assert!(!f.cancelled());
    loop_.close().unwrap();
}

#[test]
fn result_before_done_is_invalid_state() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    let err = f.result().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidStateError);
    assert_eq!(err.to_string(), "Result is not set.");
    assert_eq!(
        format!("{err:?}"),
        "InvalidStateError('Result is not set.')"
    );
    loop_.close().unwrap();
}

#[test]
fn exception_before_done_is_invalid_state() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    let err = f.exception().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidStateError);
    assert_eq!(err.to_string(), "Exception is not set.");
    assert_eq!(
        format!("{err:?}"),
        "InvalidStateError('Exception is not set.')"
    );
    loop_.close().unwrap();
}

#[test]
fn set_result_then_result() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    f.set_result(42).unwrap();
    assert!(f.done());
    assert!(!f.cancelled());
    assert_eq!(f.result().unwrap(), 42);
    // result() may be called again.
    assert_eq!(f.result().unwrap(), 42);
    assert!(f.exception().unwrap().is_none());
    loop_.close().unwrap();
}

#[test]
fn set_result_twice_is_invalid_state() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    f.set_result(1).unwrap();
    let err = f.set_result(2).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidStateError);
    assert_eq!(err.to_string(), "invalid state");
    let err = f.set_exception(Error::value("late")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidStateError);
    assert_eq!(err.to_string(), "invalid state");
    assert_eq!(f.result().unwrap(), 1);
    loop_.close().unwrap();
}

#[test]
fn set_result_after_cancel_is_invalid_state() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    assert!(f.cancel());
    let err = f.set_result(2).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidStateError);
    assert_eq!(err.to_string(), "invalid state");
    loop_.close().unwrap();
}

#[test]
fn set_exception_then_result_and_exception() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    f.set_exception(Error::value("x")).unwrap();
    assert!(f.done());
    assert!(!f.cancelled());
    let err = f.result().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(format!("{err:?}"), "ValueError('x')");
    let exc = f.exception().unwrap().expect("an exception");
    assert_eq!(format!("{exc:?}"), "ValueError('x')");
    // The same error object reaches every caller.
    assert!(exc.ptr_eq(&err));
    loop_.close().unwrap();
}

#[test]
fn cancel_pending_then_done() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    assert!(f.cancel());
    assert!(f.cancelled());
    assert!(f.done());
    // Cancelling again (or a finished future) returns false.
    assert!(!f.cancel());
    let g = Future::<i32>::new(&loop_);
    g.set_result(1).unwrap();
    assert!(!g.cancel());
    assert!(!g.cancelled());
    assert_eq!(g.result().unwrap(), 1);
    loop_.close().unwrap();
}

#[test]
fn cancelled_future_result_and_exception_raise_cancelled_error() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    assert!(f.cancel_with_message("bye"));
    let err = f.result().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CancelledError);
    assert_eq!(err.to_string(), "bye");
    assert_eq!(format!("{err:?}"), "CancelledError('bye')");
    let err = f.exception().unwrap_err();
    assert_eq!(format!("{err:?}"), "CancelledError('bye')");

    let g = Future::<i32>::new(&loop_);
    g.cancel();
    assert_eq!(format!("{:?}", g.result().unwrap_err()), "CancelledError()");
    loop_.close().unwrap();
}

#[test]
fn set_result_on_task_is_runtime_error() {
    on_loop(|_| async {
        let t = asyncio::create_task(async { Ok(1) })?;
        let err = t.set_result(2).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(
            err.to_string(),
            "Task does not support set_result operation"
        );
        let err = t.set_exception(Error::value("x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Task does not support set_exception operation"
        );
        assert_eq!(t.await?, 1);
        Ok(())
    })
}

// ----- done callbacks -----

#[test]
fn done_callbacks_are_scheduled_not_called_inline() {
    // CPython: ['after set', 'cb', 'soon']
    let order = on_loop(|loop_| async move {
        let order = log();
        let f = Future::<i32>::new(&loop_);
        let o = order.clone();
        f.add_done_callback(move |_| push(&o, "cb"));
        f.set_result(1)?;
        push(&order, "after set");
        let o = order.clone();
        loop_.call_soon(move || push(&o, "soon"))?;
        asyncio::sleep(0).await?;
        Ok(entries(&order))
    });
    assert_eq!(order, ["after set", "cb", "soon"]);
}

#[test]
fn done_callback_receives_the_future() {
    let seen = on_loop(|loop_| async move {
        let seen = Rc::new(RefCell::new(None));
        let f = Future::<i32>::new(&loop_);
        let s = seen.clone();
        let f2 = f.clone();
        f.add_done_callback(move |fut: &Future<i32>| {
            assert!(fut.ptr_eq(&f2));
            *s.borrow_mut() = Some(fut.result());
        });
        f.set_result(7)?;
        asyncio::sleep(0).await?;
        let out = seen.borrow_mut().take();
        Ok(out)
    });
    assert_eq!(seen.unwrap().unwrap(), 7);
}

#[test]
fn done_callbacks_run_in_registration_order_each_in_its_own_turn() {
    // CPython: ['cb1', 'cb2', 'x'] -- a call_soon made by cb1 runs after cb2.
    let order = on_loop(|loop_| async move {
        let order = log();
        let f = Future::<()>::new(&loop_);
        let (o, l) = (order.clone(), loop_.clone());
        f.add_done_callback(move |_| {
            push(&o, "cb1");
            let o2 = o.clone();
            l.call_soon(move || push(&o2, "x")).unwrap();
        });
        let o = order.clone();
        f.add_done_callback(move |_| push(&o, "cb2"));
        f.set_result(())?;
        asyncio::sleep(0).await?;
        asyncio::sleep(0).await?;
        Ok(entries(&order))
    });
    assert_eq!(order, ["cb1", "cb2", "x"]);
}

#[test]
fn callback_added_to_done_future_is_scheduled_at_once_not_inline() {
    // CPython: ['inline?', 'cb', 'soon']
    let order = on_loop(|loop_| async move {
        let order = log();
        let f = Future::<i32>::new(&loop_);
        f.set_result(2)?;
        let o = order.clone();
        f.add_done_callback(move |_| push(&o, "cb"));
        push(&order, "inline?");
        let o = order.clone();
        loop_.call_soon(move || push(&o, "soon"))?;
        asyncio::sleep(0).await?;
        Ok(entries(&order))
    });
    assert_eq!(order, ["inline?", "cb", "soon"]);
}

#[test]
fn cancel_schedules_callbacks() {
    // CPython: h.cancel() -> True, again False; callback sees cancelled() True.
    let out = on_loop(|loop_| async move {
        let order = Rc::new(RefCell::new(Vec::new()));
        let f = Future::<i32>::new(&loop_);
        let o = order.clone();
        f.add_done_callback(move |f: &Future<i32>| o.borrow_mut().push(f.cancelled()));
        assert!(f.cancel());
        assert!(order.borrow().is_empty());
        asyncio::sleep(0).await?;
        let out = order.borrow().clone();
        Ok(out)
    });
    assert_eq!(out, [true]);
}

#[test]
fn set_exception_schedules_callbacks() {
    let out = on_loop(|loop_| async move {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let f = Future::<i32>::new(&loop_);
        let s = seen.clone();
        f.add_done_callback(move |f: &Future<i32>| {
            s.borrow_mut().push(format!("{:?}", f.exception().unwrap()));
        });
        f.set_exception(Error::runtime("boom"))?;
        asyncio::sleep(0).await?;
        let out = seen.borrow().clone();
        Ok(out)
    });
    assert_eq!(out, ["Some(RuntimeError('boom'))"]);
}

#[test]
fn remove_done_callback_returns_the_count() {
    // CPython test_remove_done_callback: removed callbacks never run.
    let order = on_loop(|loop_| async move {
        let order = log();
        let f = Future::<i32>::new(&loop_);
        let o = order.clone();
        let a = f.add_done_callback(move |_| push(&o, "a"));
        let o = order.clone();
        let b = f.add_done_callback(move |_| push(&o, "b"));
        let o = order.clone();
        f.add_done_callback(move |_| push(&o, "c"));
        assert_eq!(f.remove_done_callback(b), 1);
        assert_eq!(f.remove_done_callback(b), 0);
        f.set_result(1)?;
        // Once done, the callbacks are scheduled: nothing left to remove (CPython: 0).
        assert_eq!(f.remove_done_callback(a), 0);
        asyncio::sleep(0).await?;
        Ok(entries(&order))
    });
    assert_eq!(order, ["a", "c"]);
}

#[test]
fn panicking_done_callback_goes_to_exception_handler_and_loop_goes_on() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let reports = capture_reports(&loop_);
    let order = log();
    let f = Future::<i32>::new(&loop_);
    f.add_done_callback(|_| panic!("callback failed"));
    let o = order.clone();
    f.add_done_callback(move |_| push(&o, "second"));
    f.set_result(1).unwrap();
    loop_
        .run_until_complete(async { asyncio::sleep(0).await })
        .unwrap();
    assert_eq!(entries(&order), ["second"]);
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0].message.starts_with("Exception in callback "),
        "{}",
        reports[0].message
    );
    let exc = reports[0].exception.as_ref().unwrap();
    assert_eq!(exc.kind(), ErrorKind::Panic);
    assert_eq!(exc.message(), "callback failed");
    drop(reports);
    loop_.close().unwrap();
}

// ----- awaiting -----

#[test]
fn await_future_set_by_call_soon() {
    let v = on_loop(|loop_| async move {
        let f = Future::<i32>::new(&loop_);
        let setter = f.clone();
        loop_.call_soon(move || setter.set_result(42))?;
        f.await
    });
    assert_eq!(v, 42);
}

#[test]
fn await_done_future_returns_at_once() {
    let v = on_loop(|loop_| async move {
        let f = Future::<&str>::new(&loop_);
        f.set_result("ready")?;
        let a = (&f).await?;
        let b = f.await?;
        Ok((a, b))
    });
    assert_eq!(v, ("ready", "ready"));
}

#[test]
fn await_failed_future_returns_its_error() {
    let err = on_loop(|loop_| async move {
        let f = Future::<i32>::new(&loop_);
        let setter = f.clone();
        loop_.call_soon(move || setter.set_exception(Error::value("bad")))?;
        Ok(f.await.unwrap_err())
    });
    assert_eq!(format!("{err:?}"), "ValueError('bad')");
}

#[test]
fn awaiting_from_several_tasks() {
    // CPython: [(0, 'v'), (1, 'v'), (2, 'v')]
    let out = on_loop(|loop_| async move {
        let m = Future::<&'static str>::new(&loop_);
        let mut tasks = Vec::new();
        for i in 0..3 {
            let m = m.clone();
            tasks.push(asyncio::create_task(async move { Ok((i, m.await?)) })?);
        }
        asyncio::sleep(0).await?;
        assert!(tasks.iter().all(|t| !t.done()));
        m.set_result("v")?;
        asyncio::gather(tasks).await
    });
    assert_eq!(out, [(0, "v"), (1, "v"), (2, "v")]);
}

#[test]
fn awaiting_a_cancelled_future_returns_cancelled_error() {
    // CPython: CancelledError('m')
    let out = on_loop(|loop_| async move {
        let n = Future::<i32>::new(&loop_);
        let n2 = n.clone();
        let t = asyncio::create_task(async move {
            match n2.await {
                Err(e) if e.is_cancelled() => Ok(format!("{e:?}")),
                other => Ok(format!("unexpected {other:?}")),
            }
        })?;
        asyncio::sleep(0).await?;
        n.cancel_with_message("m");
        t.await
    });
    assert_eq!(out, "CancelledError('m')");
}

#[test]
fn take_moves_a_non_clone_result_out() {
    #[derive(Debug, PartialEq)]
    struct NotClone(u32);
    let v = on_loop(|loop_| async move {
        let f = Future::<NotClone>::new(&loop_);
        let setter = f.clone();
        let keep = f.clone();
        loop_.call_soon(move || setter.set_result(NotClone(9)))?;
        let v = f.take().await?;
        // Moved out: later reads fail (Rust-specific message).
        let err = keep.take_result().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidStateError);
        assert_eq!(err.to_string(), "Result has been taken.");
        Ok(v)
    });
    assert_eq!(v, NotClone(9));
}

#[test]
fn take_result_of_pending_future_is_invalid_state() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<String>::new(&loop_);
    let err = f.take_result().unwrap_err();
    assert_eq!(err.to_string(), "Result is not set.");
    loop_.close().unwrap();
}

#[test]
fn run_until_complete_with_a_future() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    let setter = f.clone();
    loop_.call_soon(move || setter.set_result(5)).unwrap();
    assert_eq!(loop_.run_until_complete(f.clone()).unwrap(), 5);
    assert!(f.done());
    loop_.close().unwrap();
}

#[test]
fn ensure_future_returns_the_same_future() {
    on_loop(|loop_| async move {
        let f = Future::<i32>::new(&loop_);
        let g = asyncio::ensure_future(f.clone())?;
        assert!(g.ptr_eq(&f));
        let h = asyncio::ensure_future(async { Ok(3) })?;
        assert!(!h.ptr_eq(&f));
        assert_eq!(h.await?, 3);
        Ok(())
    })
}

#[test]

fn ensure_future_of_another_loop_returns_it_unchanged() {
    // CPython: `asyncio.ensure_future(foreign) is foreign` -> True (no `loop=`
    // argument: the future's own loop is used; only awaiting it fails).
    let other = asyncio::new_event_loop().unwrap();
    let foreign = Future::<i32>::new(&other);
    let f2 = foreign.clone();
    let same = on_loop(move |_| async move {
        let g = asyncio::ensure_future(f2.clone());
        Ok(matches!(g, Ok(g) if g.ptr_eq(&f2)))
    });
    assert!(same);
    other.close().unwrap();
}

#[test]
fn awaiting_a_future_of_another_loop_is_runtime_error() {
    // CPython: "Task <Task pending name='Task-1' coro=<...>> got Future
    // <Future pending> attached to a different loop"
    let other = asyncio::new_event_loop().unwrap();
    let foreign = Future::<i32>::new(&other);
    let err = on_loop(move |_| async move { Ok(foreign.await.unwrap_err()) });
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    let msg = err.to_string();
    assert!(msg.starts_with("Task <Task pending name="), "{msg}");
    assert!(
        msg.ends_with(" got Future <Future pending> attached to a different loop"),
        "{msg}"
    );
    other.close().unwrap();
}

#[test]
fn get_loop_returns_the_loop() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let other = asyncio::new_event_loop().unwrap();
    let f = Future::<i32>::new(&loop_);
    assert!(f.get_loop().ptr_eq(&loop_));
    assert!(!f.get_loop().ptr_eq(&other));
    other.close().unwrap();
    loop_.close().unwrap();
}

// ----- reprs -----

#[test]
fn repr_pending_finished_cancelled() {
    // CPython: <Future pending>, <Future finished exception=ValueError('x')>,
    // <Future cancelled>
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_.set_debug(false);
    let f = Future::<i32>::new(&loop_);
    assert_eq!(format!("{f:?}"), "<Future pending>");
    f.set_exception(Error::value("x")).unwrap();
    assert_eq!(
        format!("{f:?}"),
        "<Future finished exception=ValueError('x')>"
    );
    let _ = f.exception();
    let g = Future::<i32>::new(&loop_);
    g.cancel();
    assert_eq!(format!("{g:?}"), "<Future cancelled>");
    // CPython: `result=5`, the value's repr (its `Debug`), shortened by reprlib.
    let h = Future::<i32>::new(&loop_);
    h.set_result(5).unwrap();
    assert_eq!(format!("{h:?}"), "<Future finished result=5>");
    let long = Future::<Vec<u32>>::new(&loop_);
    long.set_result((0..100).collect()).unwrap();
    assert_eq!(
        format!("{long:?}"),
        "<Future finished result=[0, 1, 2, 3, ...6, 97, 98, 99]>"
    );
    loop_.close().unwrap();
}

#[test]
fn repr_with_callbacks() {
    // CPython: <Future pending cb=[cb() at …]>, two: cb=[cb(), cb2()],
    // three or more: cb=[cb(), <1 more>, cb3()]
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_.set_debug(false);
    let f = Future::<i32>::new(&loop_);
    let a = f.add_done_callback(|_| {});
    let r = format!("{f:?}");
    assert!(r.starts_with("<Future pending cb=["), "{r}");
    assert!(r.ends_with("()]>"), "{r}");
    assert!(!r.contains(", "), "{r}");
    f.add_done_callback(|_| {});
    let r = format!("{f:?}");
    assert_eq!(r.matches("()").count(), 2, "{r}");
    assert!(!r.contains("more>"), "{r}");
    f.add_done_callback(|_| {});
    let r = format!("{f:?}");
    assert!(r.starts_with("<Future pending cb=["), "{r}");
    assert!(r.contains("(), <1 more>, "), "{r}");
    f.add_done_callback(|_| {});
    let r = format!("{f:?}");
    assert!(r.contains("(), <2 more>, "), "{r}");
    f.remove_done_callback(a);
    assert!(format!("{f:?}").contains("<1 more>"));
    loop_.close().unwrap();
}

#[test]
fn repr_in_debug_mode_shows_creation_location() {
    // CPython (debug): <Future pending created at /path/file.py:LINE>
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_.set_debug(true);
    let f = Future::<i32>::new(&loop_);
    let line = line!() - 1;
    // file:line, without Rust's column (CPython has none).
    assert_eq!(
        format!("{f:?}"),
        format!("<Future pending created at {}:{line}>", file!())
    );
    // A task's repr ends the same way.
    let task = loop_.create_task(async { Ok(()) }).unwrap();
    let line = line!() - 1;
    let r = format!("{task:?}");
    assert!(r.starts_with("<Task pending name="), "{r}");
    assert!(
        r.ends_with(&format!(" created at {}:{line}>", file!())),
        "{r}"
    );
    loop_.run_until_complete(task).unwrap();
    loop_.close().unwrap();
}

// ----- loop.create_future() -----

#[test]
fn create_future_gives_a_pending_future_of_that_loop() {
    // The loop is not running: create_future needs no running loop.
    let loop_ = asyncio::new_event_loop().unwrap();
    let other = asyncio::new_event_loop().unwrap();
    let f = loop_.create_future::<i32>();
    assert!(!loop_.is_running());
    assert!(f.get_loop().ptr_eq(&loop_));
    assert!(!f.get_loop().ptr_eq(&other));
    assert!(!f.done());
    assert_eq!(format!("{f:?}"), "<Future pending>");
    let setter = f.clone();
    loop_.call_soon(move || setter.set_result(7)).unwrap();
    assert_eq!(loop_.run_until_complete(f.clone()).unwrap(), 7);
    loop_.close().unwrap();
    other.close().unwrap();
}

#[test]
fn create_future_inside_the_running_loop() {
    let value = on_loop(|_| async {
        let loop_ = asyncio::get_running_loop()?;
        let f = loop_.create_future::<String>();
        assert!(f.get_loop().ptr_eq(&loop_));
        let setter = f.clone();
        loop_.call_later(0.001, move || setter.set_result("late".to_owned()))?;
        f.await
    });
    assert_eq!(value, "late");
}

#[test]
fn create_future_records_the_caller_in_debug_mode() {
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_.set_debug(true);
    let f = loop_.create_future::<()>();
    let line = line!() - 1;
    let r = format!("{f:?}");
    assert_eq!(
        r,
        format!("<Future pending created at {}:{line}>", file!()),
        "the caller's line, not the library's"
    );
    loop_.close().unwrap();
}

#[test]
fn create_future_on_a_closed_loop_succeeds() {
    // CPython: loop.close(); loop.create_future() -> <Future pending>,
    // attached to the closed loop; set_result()/result() still work.
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_.close().unwrap();
    let f = loop_.create_future::<i32>();
    assert!(f.get_loop().ptr_eq(&loop_));
    assert!(f.get_loop().is_closed());
    assert!(!f.done());
    f.set_result(3).unwrap();
    assert_eq!(f.result().unwrap(), 3);
}

// ----- exception never retrieved -----

#[test]
fn unretrieved_exception_is_reported_when_dropped() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let reports = capture_reports(&loop_);
    let f = Future::<i32>::new(&loop_);
    f.set_exception(Error::value("lost")).unwrap();
    drop(f);
    {
        let reports = reports.borrow();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].message, "Future exception was never retrieved");
        assert_eq!(
            format!("{:?}", reports[0].exception.as_ref().unwrap()),
            "ValueError('lost')"
        );
        match reports[0].get("future") {
            Some(v) => assert_eq!(
                format!("{v:?}"),
                "<Future finished exception=ValueError('lost')>"
            ),
            None => panic!("no `future` key"),
        }
    }
    loop_.close().unwrap();
}

#[test]
fn retrieved_exception_is_not_reported() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let reports = capture_reports(&loop_);
    let f = Future::<i32>::new(&loop_);
    f.set_exception(Error::value("seen")).unwrap();
    assert!(f.exception().unwrap().is_some());
    drop(f);
    let g = Future::<i32>::new(&loop_);
    g.set_exception(Error::value("seen")).unwrap();
    assert!(g.result().is_err());
    drop(g);
    // A cancelled future has nothing to report.
    let h = Future::<i32>::new(&loop_);
    h.cancel();
    drop(h);
    assert!(reports.borrow().is_empty());
    loop_.close().unwrap();
}

#[test]
fn unretrieved_task_exception_is_reported() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let reports = capture_reports(&loop_);
    loop_
        .run_until_complete(async {
            let t = asyncio::create_task(async { Err::<(), _>(Error::runtime("task failed")) })?;
            asyncio::sleep(0).await?;
            assert!(t.done());
            drop(t);
            Ok(())
        })
        .unwrap();
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].message, "Task exception was never retrieved");
    assert_eq!(
        format!("{:?}", reports[0].exception.as_ref().unwrap()),
        "RuntimeError('task failed')"
    );
    drop(reports);
    loop_.close().unwrap();
}

#[test]
fn task_wakeups_and_done_callbacks_share_one_fifo() {
    // CPython: ['task resumed', 'cb'] when the task awaited first,
    //          ['cb', 'task resumed'] when the callback was added first.
    let out = on_loop(|loop_| async move {
        let mut results = Vec::new();
        for callback_first in [false, true] {
            let order = log();
            let f = Future::<i32>::new(&loop_);
            let add_cb = |f: &Future<i32>, o: &Log| {
                let o = o.clone();
                f.add_done_callback(move |_| push(&o, "cb"));
            };
            if callback_first {
                add_cb(&f, &order);
            }
            let (f2, o) = (f.clone(), order.clone());
            let t = asyncio::create_task(async move {
                f2.await?;
                push(&o, "task resumed");
                Ok(())
            })?;
            asyncio::sleep(0).await?;
            if !callback_first {
                add_cb(&f, &order);
            }
            f.set_result(1)?;
            t.await?;
            asyncio::sleep(0).await?;
            results.push(entries(&order));
        }
        Ok(results)
    });
    assert_eq!(out[0], ["task resumed", "cb"]);
    assert_eq!(out[1], ["cb", "task resumed"]);
}
