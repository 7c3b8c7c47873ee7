//! Behaviours that once differed from CPython 3.13 (issue 7's list), each
//! pinned against the trace CPython prints for the same program. The Python
//! programs are quoted in the comments; their output is what the
//! assertions expect.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use asyncio::{Error, ErrorKind, EventLoop, Future, Result};
use common::{entries, log, on_loop, push, record_exceptions, Log};

/// A callback that records `s`.
fn note(events: &Log, s: &'static str) -> impl FnOnce() + 'static {
    let events = events.clone();
    move || push(&events, s)
}

// ----- 4. a recursive exception handler -----

#[test]
fn p4_recursive_exception_handler_is_stopped_reported_once_and_the_loop_goes_on() {
    // CPython ends such a handler with an error (RecursionError, or in
    // 3.13 "cannot enter context") caught by `call_exception_handler`,
    // reported once as "Unhandled error in exception handler", and the loop
    // runs the callbacks after the failing one.
    let loop_ = common::new_loop();
    let entered = Rc::new(Cell::new(0u32));
    let reports: Rc<RefCell<Vec<String>>> = Rc::default();
    let (e2, r2) = (entered.clone(), reports.clone());
    loop_.set_exception_handler(Some(
        move |l: &EventLoop, ctx: &asyncio::ExceptionContext| {
            e2.set(e2.get() + 1);
            r2.borrow_mut().push(ctx.message.clone());
            l.call_exception_handler(ctx.clone());
        },
    ));
    let events = log();
    loop_
        .call_soon(|| -> Result<()> { Err(Error::value("x")) })
        .unwrap();
    loop_
        .call_soon(note(&events, "later callback ran"))
        .unwrap();
    common::stop_soon(&loop_);
    let ((), logs) = common::capture_logs(|| loop_.run_forever().unwrap());
    assert_eq!(entries(&events), ["later callback ran"]);
    assert_eq!(entered.get(), asyncio::base_events::MAX_HANDLER_DEPTH);
    let errors: Vec<_> = logs
        .iter()
        .filter(|r| r.level == tracing::Level::ERROR)
        .collect();
    assert_eq!(errors.len(), 1, "{logs:?}");
    let text = &errors[0].message;
    assert!(
        text.starts_with("Unhandled error in exception handler\n"),
        "{text}"
    );
    assert!(text.contains("context: {'message': 'Exception in callback "));
    assert!(
        text.ends_with(
            "RecursionError: maximum recursion depth exceeded while calling the exception handler"
        ),
        "{text}"
    );
    loop_.close().unwrap();
}

#[test]
fn p4_a_handler_reporting_once_from_inside_itself_is_entered_twice() {
    let loop_ = common::new_loop();
    let entered = Rc::new(Cell::new(0u32));
    let e2 = entered.clone();
    loop_.set_exception_handler(Some(
        move |l: &EventLoop, ctx: &asyncio::ExceptionContext| {
            e2.set(e2.get() + 1);
            if e2.get() == 1 {
                l.call_exception_handler(ctx.clone());
            }
        },
    ));
    loop_
        .call_soon(|| -> Result<()> { Err(Error::value("x")) })
        .unwrap();
    common::stop_soon(&loop_);
    let ((), logs) = common::capture_logs(|| loop_.run_forever().unwrap());
    assert_eq!(entered.get(), 2);
    assert!(logs.is_empty(), "{logs:?}");
    loop_.close().unwrap();
}

// ----- 5. a panicking task factory -----

#[test]
fn p5_a_panicking_task_factory_is_an_error_of_create_task() {
    let loop_ = common::new_loop();
    let factory = |_: &EventLoop, _: &mut asyncio::TaskInit| -> Result<()> {
        panic!("factory broke");
    };
    loop_.set_task_factory(Some(Rc::new(factory)));
    let err = loop_.create_task(async { Ok(1) }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panic);
    assert_eq!(err.message(), "factory broke");
    // run_until_complete reports it instead of unwinding.
    let err = loop_.run_until_complete(async { Ok(1) }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panic);
    // And the loop still works once the factory is gone.
    loop_.set_task_factory(None);
    assert_eq!(loop_.run_until_complete(async { Ok(2) }).unwrap(), 2);
    loop_.close().unwrap();
}

// ----- 6. KeyboardInterrupt and SystemExit -----

#[test]
fn p6_keyboard_interrupt_in_a_task_escapes_run_until_complete() {
    // q2a.py: main step 1 / other step 1 / main step 2: raising
    // KeyboardInterrupt / escaped: KeyboardInterrupt('kbi') / t.done() True
    // t.cancelled() False / t.exception() KeyboardInterrupt('kbi') /
    // o.done() False / (again) other step 2 / cb scheduled by main ...
    let loop_ = common::new_loop();
    let events = log();
    let ev = events.clone();
    let l2 = loop_.clone();
    let main = loop_
        .create_task(async move {
            push(&ev, "main step 1");
            asyncio::sleep(0).await?;
            push(&ev, "main step 2: raising KeyboardInterrupt");
            l2.call_soon(note(&ev, "cb scheduled by main before raise"))?;
            Err::<(), _>(Error::new(ErrorKind::KeyboardInterrupt, "kbi"))
        })
        .unwrap();
    let ev = events.clone();
    let other = loop_
        .create_task(async move {
            push(&ev, "other step 1");
            asyncio::sleep(0).await?;
            push(&ev, "other step 2");
            Ok(())
        })
        .unwrap();
    let err = loop_.run_until_complete(&main).unwrap_err();
    assert_eq!(format!("{err:?}"), "KeyboardInterrupt('kbi')");
    assert!(main.done() && !main.cancelled());
    assert_eq!(
        main.exception().unwrap().unwrap().kind(),
        ErrorKind::KeyboardInterrupt
    );
    assert!(!other.done());
    assert!(!loop_.is_running());
    assert_eq!(
        entries(&events),
        [
            "main step 1",
            "other step 1",
            "main step 2: raising KeyboardInterrupt"
        ]
    );
    // The rest of that iteration runs on the next run, in order.
    loop_.run_until_complete(&other).unwrap();
    assert_eq!(
        entries(&events)[3..],
        ["other step 2", "cb scheduled by main before raise"]
    );
    loop_.close().unwrap();
}

#[test]
fn p6_a_callback_raising_keyboard_interrupt_or_system_exit_escapes_run_forever() {
    // q2b.py: A / raiser / escaped: KeyboardInterrupt('k') / (again) B
    for kind in [ErrorKind::KeyboardInterrupt, ErrorKind::SystemExit] {
        let loop_ = common::new_loop();
        let seen = record_exceptions(&loop_);
        let events = log();
        loop_.call_soon(note(&events, "A")).unwrap();
        let ev = events.clone();
        loop_
            .call_soon(move || -> Result<()> {
                push(&ev, "raiser");
                Err(Error::new(kind, "k"))
            })
            .unwrap();
        loop_.call_soon(note(&events, "B")).unwrap();
        common::stop_soon(&loop_);
        let err = loop_.run_forever().unwrap_err();
        assert_eq!(err.kind(), kind);
        assert_eq!(entries(&events), ["A", "raiser"]);
        assert!(!loop_.is_running());
        loop_.run_forever().unwrap();
        assert_eq!(entries(&events), ["A", "raiser", "B"]);
        // Never the exception handler's business.
        assert!(seen.borrow().is_empty());
        loop_.close().unwrap();
    }
}

#[test]
fn p6_system_exit_from_main_leaves_asyncio_run_after_the_other_tasks_are_cancelled() {
    // q2c.py: t2 cancelled / t1 cancelled / escaped: SystemExit(3)
    let events = log();
    let ev = events.clone();
    let err = asyncio::run(async move {
        for name in ["t1", "t2"] {
            let ev = ev.clone();
            asyncio::create_task(async move {
                match asyncio::sleep(10).await {
                    Err(e) if e.is_cancelled() => {
                        push(&ev, format!("{name} cancelled"));
                        Err(e)
                    }
                    other => other,
                }
            })?;
        }
        asyncio::sleep(0).await?;
        Err::<(), _>(Error::new(ErrorKind::SystemExit, "3"))
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SystemExit);
    let mut seen = entries(&events);
    seen.sort();
    assert_eq!(seen, ["t1 cancelled", "t2 cancelled"]);
}

#[test]
fn p6_groups_holding_base_exceptions_are_base_exception_groups() {
    // BaseExceptionGroup('m', [ValueError('v')]) is an ExceptionGroup;
    // with a CancelledError, KeyboardInterrupt, SystemExit or GeneratorExit
    // member it stays a BaseExceptionGroup.
    let plain = Error::group("m", vec![Error::value("v")]);
    assert_eq!(plain.kind(), ErrorKind::ExceptionGroup);
    for base in [
        ErrorKind::KeyboardInterrupt,
        ErrorKind::SystemExit,
        ErrorKind::GeneratorExit,
        ErrorKind::CancelledError,
    ] {
        let g = Error::group("m", vec![Error::value("v"), Error::bare(base)]);
        assert_eq!(g.kind(), ErrorKind::BaseExceptionGroup, "{base:?}");
        assert!(g.is_group());
        assert!(format!("{g:?}").starts_with("BaseExceptionGroup('m', [ValueError('v'), "));
    }
}

#[test]
fn p6_task_group_child_raising_system_exit_escapes_then_the_group_raises_it_bare() {
    // q2d.py: the child's exception first leaves the loop; run again, the
    // `async with` raises the bare exception (no group) and the siblings
    // are cancelled.
    let loop_ = common::new_loop();
    let events = log();
    let ev = events.clone();
    let main = loop_
        .create_task(async move {
            let tg = asyncio::TaskGroup::new();
            let body = tg.run(async {
                tg.create_task(async {
                    asyncio::sleep(0).await?;
                    Err::<(), _>(Error::new(ErrorKind::SystemExit, "2"))
                })?;
                let ev = ev.clone();
                tg.create_task(async move {
                    match asyncio::sleep(10).await {
                        Err(e) => {
                            push(&ev, "sleeper cancelled");
                            Err(e)
                        }
                        ok => ok,
                    }
                })?;
                Ok(())
            });
            body.await
        })
        .unwrap();
    let first = loop_.run_until_complete(&main).unwrap_err();
    assert_eq!(first.kind(), ErrorKind::SystemExit);
    assert!(!main.done());
    let again = loop_.run_until_complete(&main).unwrap_err();
    assert_eq!(format!("{again:?}"), "SystemExit('2')");
    assert_eq!(entries(&events), ["sleeper cancelled"]);
    loop_.close().unwrap();
}

// ----- 7. call_soon_threadsafe from the loop's thread -----

#[test]
fn p7_call_soon_threadsafe_on_the_loop_thread_keeps_fifo_order_with_call_soon() {
    // q3.py: hello, world — before run_forever and inside a callback.
    let loop_ = common::new_loop();
    let order = Rc::new(RefCell::new(Vec::new()));
    // A `Send` callback cannot capture the `Rc`: it sends through a
    // channel drained by the plain callbacks, which run on the same thread.
    let (tx, rx) = std::sync::mpsc::channel::<&'static str>();
    let rx = Rc::new(rx);
    let drain = {
        let order = order.clone();
        let rx = rx.clone();
        move |label: &'static str| {
            while let Ok(s) = rx.try_recv() {
                order.borrow_mut().push(s);
            }
            order.borrow_mut().push(label);
        }
    };
    let d = drain.clone();
    let tx2 = tx.clone();
    let tx3 = tx.clone();
    loop_
        .call_soon_threadsafe(move || tx2.send("hello").unwrap())
        .unwrap();
    loop_.call_soon(move || d("world")).unwrap();
    let d = drain.clone();
    loop_
        .call_soon_threadsafe(move || tx.send("again").unwrap())
        .unwrap();
    loop_.call_soon(move || d("end")).unwrap();
    // Inside a callback, through the `Send` handle as well.
    let (l, remote) = (loop_.clone(), loop_.threadsafe());
    let (tx, d) = (tx3, drain.clone());
    loop_
        .call_soon(move || {
            remote
                .call_soon_threadsafe(move || tx.send("hello 2").unwrap())
                .unwrap();
            l.call_soon(move || d("world 2")).unwrap();
        })
        .unwrap();
    common::stop_soon(&loop_);
    loop_.run_forever().unwrap();
    common::stop_soon(&loop_);
    loop_.run_forever().unwrap();
    assert_eq!(
        *order.borrow(),
        ["hello", "world", "again", "end", "hello 2", "world 2"]
    );
    loop_.close().unwrap();
}

// ----- 8. a future completed while its loop is not running -----

/// q4.py: `fut` has a done callback, then a waiting task, then another
/// done callback; completing it prints cb1 / task resumed / cb2 whether
/// the loop runs or not.
fn completion_order(complete_inside: bool) -> Vec<String> {
    let loop_ = common::new_loop();
    let events = log();
    let fut = loop_.create_future::<i32>();
    let ev = events.clone();
    fut.add_done_callback(move |_| push(&ev, "cb1"));
    let ev = events.clone();
    let f2 = fut.clone();
    let t = loop_
        .create_task(async move {
            let r = f2.await?;
            push(&ev, format!("task resumed with {r}"));
            Ok(())
        })
        .unwrap();
    loop_.run_until_complete(asyncio::sleep(0)).unwrap();
    let ev = events.clone();
    fut.add_done_callback(move |_| push(&ev, "cb2"));
    if complete_inside {
        let f3 = fut.clone();
        loop_.call_soon(move || f3.set_result(42)).unwrap();
    } else {
        fut.set_result(42).unwrap();
    }
    loop_.call_soon(note(&events, "plain call_soon")).unwrap();
    loop_.run_until_complete(&t).unwrap();
    loop_.close().unwrap();
    entries(&events)
}

#[test]
fn p8_a_future_completed_outside_the_loop_wakes_its_task_in_callback_order() {
    assert_eq!(
        completion_order(false),
        ["cb1", "task resumed with 42", "cb2", "plain call_soon"]
    );
    assert_eq!(
        completion_order(true),
        ["plain call_soon", "cb1", "task resumed with 42", "cb2"]
    );
}

// ----- 9. shield() and gather() outside a running loop -----

#[test]
fn p9_shield_and_gather_outside_a_running_loop_use_the_futures_loop() {
    let loop_ = common::new_loop();
    let a = loop_.create_future::<i32>();
    let b = loop_.create_future::<i32>();
    let shielded = asyncio::shield(a.clone()).unwrap();
    assert!(shielded.get_loop().ptr_eq(&loop_));
    let g = asyncio::gather([a.clone(), b.clone()]);
    assert!(g.get_loop().unwrap().ptr_eq(&loop_));
    let (a2, b2) = (a.clone(), b.clone());
    loop_
        .call_soon(move || {
            a2.set_result(1).unwrap();
            b2.set_result(2).unwrap();
        })
        .unwrap();
    assert_eq!(loop_.run_until_complete(shielded).unwrap(), 1);
    assert_eq!(
        loop_.run_until_complete(async move { g.await }).unwrap(),
        [1, 2]
    );
    // gather! too.
    let c = loop_.create_future::<&str>();
    c.set_result("c").unwrap();
    let both = asyncio::gather!(a.clone(), c.clone());
    assert_eq!(loop_.run_until_complete(both).unwrap(), (1, "c"));

    // Futures of two loops: CPython's ValueError.
    let other = common::new_loop();
    let foreign = other.create_future::<i32>();
    let err = loop_
        .run_until_complete(async move { asyncio::gather([b, foreign]).await })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(
        err.message(),
        "The future belongs to a different loop than the one specified as the loop argument"
    );
    other.close().unwrap();
    loop_.close().unwrap();
}

// ----- 11. callback names -----

fn boom() -> Result<()> {
    Err(Error::value("x"))
}

#[test]
fn p11_callbacks_are_named_as_cpython_names_functions() {
    // CPython: "Exception in callback boom() at x.py:3" / handle:
    // <Handle boom() at x.py:3>; a lambda: <lambda>() at x.py:5.
    let loop_ = common::new_loop();
    let seen = record_exceptions(&loop_);
    loop_.call_soon(boom).unwrap();
    loop_
        .call_soon(|| -> Result<()> { Err(Error::value("y")) })
        .unwrap();
    let line = line!() - 2;
    common::stop_soon(&loop_);
    loop_.run_forever().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen[0].message, "Exception in callback boom()");
    assert!(seen[0].rendered.contains("\nhandle: <Handle boom()>\n"));
    let closure = format!(
        "p11_callbacks_are_named_as_cpython_names_functions.<locals>.<closure>() at {}:{line}",
        file!()
    );
    assert_eq!(seen[1].message, format!("Exception in callback {closure}"));
    // Tasks name their coroutine: coro=<worker()>.
    async fn worker() -> Result<()> {
        Ok(())
    }
    let t = loop_.create_task(worker()).unwrap();
    assert!(format!("{t:?}").contains(" coro=<worker()>"), "{t:?}");
    let f = loop_.create_future::<()>();
    f.add_done_callback(|_| ());
    assert!(
        format!("{f:?}").starts_with(
            "<Future pending cb=[p11_callbacks_are_named_as_cpython_names_functions.<locals>.<closure>()]"
        ),
        "{f:?}"
    );
    drop(seen);
    loop_.run_until_complete(t).unwrap();
    loop_.close().unwrap();
}

// ----- 12. error names and cause chains -----

#[derive(Debug)]
struct ParseFailure;

impl std::fmt::Display for ParseFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad header")
    }
}

impl std::error::Error for ParseFailure {}

#[test]
fn p12_custom_errors_report_their_type_name() {
    let e = Error::custom(ParseFailure);
    assert_eq!(e.kind(), ErrorKind::Exception);
    assert_eq!(e.python_name(), "ParseFailure");
    assert_eq!(format!("{e:?}"), "ParseFailure('bad header')");
    assert_eq!(e.traceback_line(), "ParseFailure: bad header");
    // Through `?` from a boxed error it is the box's type that is known.
    let loop_ = common::new_loop();
    let seen = record_exceptions(&loop_);
    loop_
        .call_soon(|| -> Result<()> { Err(Error::custom(ParseFailure)) })
        .unwrap();
    common::stop_soon(&loop_);
    loop_.run_forever().unwrap();
    assert!(
        seen.borrow()[0]
            .rendered
            .ends_with("\nParseFailure: bad header"),
        "{}",
        seen.borrow()[0].rendered
    );
    loop_.close().unwrap();
}

#[test]
fn p12_timeout_errors_are_caused_by_the_cancellation() {
    // q5.py: TimeoutError() with __cause__ = __context__ = CancelledError().
    on_loop(|_| async {
        let e = asyncio::wait_for(asyncio::sleep(10), 0.001)
            .await
            .unwrap_err();
        assert!(e.is_timeout());
        let cause = e.cause().expect("wait_for's TimeoutError has a cause");
        assert_eq!(format!("{cause:?}"), "CancelledError()");
        assert!(e.context().unwrap().ptr_eq(cause));
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(source.to_string(), "");

        let e = asyncio::timeout(0.001)
            .run(asyncio::sleep(10))
            .await
            .unwrap_err();
        assert!(e.cause().unwrap().is_cancelled());

        // wait_for(timeout <= 0) too.
        let e = asyncio::wait_for(asyncio::sleep(10), 0.0)
            .await
            .unwrap_err();
        assert!(e.cause().unwrap().is_cancelled());
        Ok(())
    })
}

// ----- 13. a GatheringFuture after it was awaited -----

#[test]
fn p13_a_gathering_future_stays_a_future_after_it_was_awaited() {
    on_loop(|_| async {
        let g = asyncio::gather([asyncio::sleep_with(0.0, 1), asyncio::sleep_with(0.0, 2)]);
        assert!(!g.done());
        let results = (&g).await?;
        assert_eq!(results, [1, 2]);
        assert!(g.done() && !g.cancelled());
        assert_eq!(g.result()?, [1, 2]);
        assert!(g.exception()?.is_none());
        assert!(!g.cancel(), "nothing left to cancel");
        // Done callbacks still run (scheduled at once).
        let called = Rc::new(Cell::new(false));
        let c = called.clone();
        g.add_done_callback(move |g| {
            assert_eq!(g.result().unwrap(), [1, 2]);
            c.set(true);
        });
        asyncio::sleep(0).await?;
        assert!(called.get());
        // A clone awaited by value leaves the results for the others.
        assert_eq!(g.clone().await?, [1, 2]);
        assert_eq!(g.result()?, [1, 2]);
        // Awaiting the last handle moves them out.
        assert_eq!(g.await?, [1, 2]);

        // A pending one: result() is CPython's InvalidStateError.
        let f = asyncio::get_running_loop()?.create_future::<i32>();
        let g = asyncio::gather([f.clone()]);
        assert_eq!(g.result().unwrap_err().message(), "Result is not set.");
        let removed = g.add_done_callback(|_| panic!("removed"));
        assert_eq!(g.remove_done_callback(removed), 1);
        f.set_result(5)?;
        assert_eq!((&g).await?, [5]);
        asyncio::sleep(0).await?;

        // With return_exceptions.
        let bad = asyncio::get_running_loop()?.create_future::<i32>();
        bad.set_exception(Error::value("v"))?;
        let all = asyncio::gather([bad]).return_exceptions();
        let outcomes = (&all).await?;
        assert_eq!(outcomes[0].as_ref().unwrap_err().message(), "v");
        assert_eq!(all.result()?[0].as_ref().unwrap_err().message(), "v");
        Ok(())
    })
}

// ----- 14. as_completed(..).timeout(NaN) -----

#[test]
fn p14_as_completed_refuses_a_nan_timeout_before_any_task_exists() {
    on_loop(|_| async {
        let started = Rc::new(Cell::new(false));
        let s = started.clone();
        let mut it = asyncio::as_completed([async move {
            s.set(true);
            Ok(1)
        }])
        .timeout(f64::NAN);
        let first = it.next().expect("one item carrying the error");
        let err = first.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        assert_eq!(err.message(), "Invalid delay: NaN (not a number)");
        asyncio::sleep(0).await?;
        assert!(!started.get(), "no task was made");
        assert!(it.next().is_none());
        assert_eq!(asyncio::all_tasks()?.len(), 1, "only the main task");
        Ok(())
    })
}

// ----- 16. as_completed keeps a cancellation -----

#[test]
fn p16_as_completed_delivers_a_cancellation_that_arrives_after_the_wake_up() {
    // q6.py: T: awaiting next() / set a result / cancel T -> True /
    // T: CancelledError CancelledError() / t.cancelled() True
    for async_for in [false, true] {
        let loop_ = common::new_loop();
        let events = log();
        let a = loop_.create_future::<&'static str>();
        let ev = events.clone();
        let a2 = a.clone();
        let t = loop_
            .create_task(async move {
                let outcome: Result<()> = async {
                    if async_for {
                        let mut it = asyncio::as_completed([a2]);
                        while let Some(f) = it.next_future().await {
                            push(&ev, format!("T: got {}", f?.result()?));
                        }
                    } else {
                        for f in asyncio::as_completed([a2]) {
                            push(&ev, "T: awaiting next()");
                            let r = f.await?;
                            push(&ev, format!("T: got result {r}"));
                        }
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = &outcome {
                    push(&ev, format!("T: {e:?}"));
                }
                outcome
            })
            .unwrap();
        let ev = events.clone();
        let (a3, t2) = (a.clone(), t.clone());
        loop_
            .call_soon(move || {
                push(&ev, "set a result");
                a3.set_result("A").unwrap();
                let ev = ev.clone();
                // Runs right after as_completed's own done callback.
                a3.add_done_callback(move |_| push(&ev, format!("cancel T -> {}", t2.cancel())));
            })
            .unwrap();
        let err = loop_.run_until_complete(&t).unwrap_err();
        assert!(err.is_cancelled());
        assert!(t.cancelled());
        let mut expected = vec![];
        if !async_for {
            expected.push("T: awaiting next()");
        }
        expected.extend(["set a result", "cancel T -> true", "T: CancelledError()"]);
        assert_eq!(entries(&events), expected, "async_for={async_for}");
        loop_.close().unwrap();
    }
}

// ----- 17. a cancel a gather refuses -----

#[test]
fn p17_a_task_whose_gather_refuses_the_cancel_gets_it_when_the_gather_completes() {
    // q7.py case B: children done, gather's callbacks not run yet;
    // g.cancel() -> False; t.cancel() -> True; T is woken only when the
    // gather completes, and gets CancelledError() then.
    let loop_ = common::new_loop();
    let events = log();
    let a = loop_.create_future::<i32>();
    let b = loop_.create_future::<i32>();
    let holder: Rc<RefCell<Option<asyncio::GatheringFuture<i32>>>> = Rc::default();
    let (a2, b2, h2, ev) = (a.clone(), b.clone(), holder.clone(), events.clone());
    let t = loop_
        .create_task(async move {
            let g = asyncio::gather([a2, b2]);
            *h2.borrow_mut() = Some(g.clone());
            push(&ev, "T: awaiting gather");
            match (&g).await {
                Ok(r) => push(&ev, format!("T: gather returned {r:?}")),
                Err(e) => {
                    push(&ev, format!("T: {e:?}; g done: {}", g.done()));
                    return Err(e);
                }
            }
            Ok(())
        })
        .unwrap();
    let (ev, t2) = (events.clone(), t.clone());
    loop_
        .call_soon(move || {
            a.set_result(1).unwrap();
            b.set_result(2).unwrap();
            let g = holder.borrow().clone().unwrap();
            push(
                &ev,
                format!(
                    "g.cancel() -> {}; t.cancel() -> {}; cancelling {}",
                    g.cancel(),
                    t2.cancel(),
                    t2.cancelling()
                ),
            );
            let ev = ev.clone();
            // Queued after the gather's own callbacks: T must not have
            // run before this.
            let l = asyncio::get_running_loop().unwrap();
            l.call_soon(move || push(&ev, "next iteration")).unwrap();
        })
        .unwrap();
    let err = loop_.run_until_complete(&t).unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        entries(&events),
        [
            "T: awaiting gather",
            "g.cancel() -> false; t.cancel() -> true; cancelling 1",
            "next iteration",
            "T: CancelledError(); g done: true",
        ]
    );
    assert_eq!(t.cancelling(), 1);
    loop_.close().unwrap();
}

// ----- 18. which CancelledError a cancelled gather raises -----

#[test]
fn p18_a_cancelled_gather_raises_the_last_childs_cancelled_error_in_argument_order() {
    // q8.py, return_exceptions=True with outer.cancel(): children finish
    // t1, t3, t2; the gather raises CancelledError('msg-t3').
    on_loop(|_| async {
        let child = |name: &'static str, delay: f64| async move {
            if let Err(e) = asyncio::sleep(10).await {
                assert!(e.is_cancelled());
                asyncio::sleep(delay).await?;
                return Err::<(), _>(Error::cancelled(Some(&format!("msg-{name}"))));
            }
            Ok(())
        };
        let t1 = asyncio::create_task(child("t1", 0.01))?;
        let t2 = asyncio::create_task(child("t2", 0.03))?;
        let t3 = asyncio::create_task(child("t3", 0.02))?;
        let g = asyncio::gather([t1, t2, t3]).return_exceptions();
        asyncio::sleep(0).await?;
        assert!(g.cancel_with_message("outer-msg"));
        let err = g.await.unwrap_err();
        assert_eq!(format!("{err:?}"), "CancelledError('msg-t3')");

        // Without return_exceptions the first child to finish wins.
        let t1 = asyncio::create_task(child("t1", 0.01))?;
        let t2 = asyncio::create_task(child("t2", 0.03))?;
        let g = asyncio::gather([t1, t2.clone()]);
        asyncio::sleep(0).await?;
        g.cancel();
        assert_eq!(
            format!("{:?}", g.await.unwrap_err()),
            "CancelledError('msg-t1')"
        );
        let _ = t2.as_any().await;

        // q8b.py: the last argument suppressed its cancellation: a bare
        // CancelledError().
        let plain = asyncio::create_task(asyncio::sleep(10))?;
        let suppress = asyncio::create_task(async {
            match asyncio::sleep(10).await {
                Err(_) => Ok(()),
                ok => ok,
            }
        })?;
        let g = asyncio::gather([plain, suppress]).return_exceptions();
        asyncio::sleep(0).await?;
        assert!(g.cancel_with_message("outer-msg"));
        assert_eq!(format!("{:?}", g.await.unwrap_err()), "CancelledError()");
        Ok(())
    })
}

#[test]
fn p18_a_task_gathered_twice_is_cancelled_once_per_occurrence() {
    // q8b.py: g.cancel() -> True ; t.cancelling() = 2
    on_loop(|_| async {
        let t = asyncio::create_task(asyncio::sleep(10))?;
        let g = asyncio::gather([t.clone(), t.clone()]);
        asyncio::sleep(0).await?;
        assert!(g.cancel());
        assert_eq!(t.cancelling(), 2);
        assert!(g.await.unwrap_err().is_cancelled());
        assert!(t.cancelled());
        // Not cancelled: the result appears twice.
        let t = asyncio::create_task(asyncio::sleep_with(0.001, 7))?;
        assert_eq!(asyncio::gather([t.clone(), t]).await?, [7, 7]);
        Ok(())
    })
}

// ----- 19. eager tasks with shield and gather -----

#[test]
fn p19_shield_returns_a_task_that_finished_eagerly() {
    // q9.py (a), (b): shield(inner) is inner; shield(quick(2)) is the done
    // Task; (b2) a coroutine that suspends gets the usual outer future.
    let loop_ = common::new_loop();
    loop_.set_task_factory(Some(asyncio::eager_task_factory()));
    loop_
        .run_until_complete(async {
            let inner = asyncio::create_task(async { Ok(1) })?;
            assert!(inner.done());
            let s = asyncio::shield(&inner)?;
            assert!(s.ptr_eq(&inner));
            let s = asyncio::shield(async { Ok(2) })?;
            assert!(s.done());
            assert!(format!("{s:?}").starts_with("<Task finished "), "{s:?}");
            assert_eq!(s.result()?, 2);
            let s = asyncio::shield(async {
                asyncio::sleep(0).await?;
                Ok(3)
            })?;
            assert!(format!("{s:?}").starts_with("<Future pending"), "{s:?}");
            assert_eq!(s.await?, 3);
            Ok(())
        })
        .unwrap();
    loop_.close().unwrap();
}

#[test]
fn p19_gather_registers_each_callback_before_the_next_eager_argument_starts() {
    // q9.py (c): gather(c1(), c2()) where c2's eager step completes the
    // future c1 awaits is not settled synchronously; gather(c2(), c1()) is.
    let loop_ = common::new_loop();
    loop_.set_task_factory(Some(asyncio::eager_task_factory()));
    let events = log();
    let ev = events.clone();
    loop_
        .run_until_complete(async move {
            let l = asyncio::get_running_loop()?;
            let c1 = |f: Future<&'static str>, ev: Log| async move {
                push(&ev, "c1: awaiting f");
                let r = f.await?;
                push(&ev, format!("c1: resumed with {r}"));
                Ok(r.to_owned())
            };
            let c2 = |f: Future<&'static str>, ev: Log| async move {
                push(&ev, "c2: f.set_result");
                f.set_result("F")?;
                Ok("c2".to_owned())
            };
            let f = l.create_future();
            let g = asyncio::gather!(c1(f.clone(), ev.clone()), c2(f, ev.clone()));
            push(&ev, "gather returned");
            let r = g.await?;
            push(&ev, format!("result {r:?}"));

            let f = l.create_future();
            let g = asyncio::gather([
                Box::pin(c2(f.clone(), ev.clone()))
                    as std::pin::Pin<Box<dyn std::future::Future<Output = Result<String>>>>,
                Box::pin(c1(f, ev.clone())),
            ]);
            push(&ev, format!("gather returned; done = {}", g.done()));
            let r = g.await?;
            push(&ev, format!("result {r:?}"));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        entries(&events),
        [
            "c1: awaiting f",
            "c2: f.set_result",
            "gather returned",
            "c1: resumed with F",
            "result (\"F\", \"c2\")",
            "c2: f.set_result",
            "c1: awaiting f",
            "c1: resumed with F",
            "gather returned; done = true",
            "result [\"c2\", \"F\"]",
        ]
    );
    loop_.close().unwrap();
}

// ----- 20. Task-N names -----

#[test]
fn p20_named_tasks_do_not_use_up_task_numbers() {
    // q10.py: ['Task-2', 'x', 'Task-3'] (main is Task-1).
    on_loop(|_| async {
        let a = asyncio::create_task(async { Ok(()) })?;
        let b = asyncio::create_task_named(async { Ok(()) }, "x")?;
        let c = asyncio::create_task(async { Ok(()) })?;
        let n = |name: String| -> u64 { name.strip_prefix("Task-").unwrap().parse().unwrap() };
        assert_eq!(b.get_name(), "x");
        assert_eq!(n(c.get_name()), n(a.get_name()) + 1);
        Ok(())
    })
}

// ----- 25. reports reach stderr without a `tracing` subscriber -----

const LAST_RESORT_CHILD: &str = "ASYNCIO_TEST_LAST_RESORT_CHILD";

#[test]
fn p25_reports_reach_stderr_when_no_subscriber_is_installed() {
    // CPython with logging unconfigured: the last-resort handler prints the
    // message alone ("Exception in callback boom() at …", "handle: …", the
    // traceback ending "ValueError: x"), and so for "Task exception was
    // never retrieved".
    if std::env::var(LAST_RESORT_CHILD).is_ok() {
        let loop_ = common::new_loop();
        loop_.call_soon(boom).unwrap();
        let t = loop_
            .create_task(async { Err::<(), _>(Error::value("task-x")) })
            .unwrap();
        common::stop_soon(&loop_);
        loop_.run_forever().unwrap();
        loop_.run_until_complete(asyncio::sleep(0)).unwrap();
        drop(t);
        loop_.close().unwrap();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "p25_reports_reach_stderr_when_no_subscriber_is_installed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LAST_RESORT_CHILD, "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Exception in callback boom()\nhandle: <Handle boom()>\nValueError: x\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Task exception was never retrieved\nfuture: <Task finished name='Task-"),
        "{stderr}"
    );
    assert!(
        stderr.contains(" exception=ValueError('task-x')>\nValueError: task-x\n"),
        "{stderr}"
    );
}

#[test]
fn p6_a_task_group_holding_a_base_exception_raises_a_base_exception_group() {
    // q2d.py: a child raising a BaseException that is not KeyboardInterrupt
    // or SystemExit: BaseExceptionGroup('unhandled errors in a TaskGroup',
    // [ValueError('v'), MyBase('b')]).
    let err = on_loop(|_| async {
        let tg = asyncio::TaskGroup::new();
        let outcome = tg
            .run(async {
                tg.create_task(async {
                    asyncio::sleep(0).await?;
                    Err::<(), _>(Error::value("v"))
                })?;
                tg.create_task(async {
                    asyncio::sleep(0).await?;
                    Err::<(), _>(Error::new(ErrorKind::GeneratorExit, "b"))
                })?;
                Ok(())
            })
            .await;
        Ok(outcome.unwrap_err())
    });
    assert_eq!(err.kind(), ErrorKind::BaseExceptionGroup);
    assert_eq!(
        format!("{err:?}"),
        "BaseExceptionGroup('unhandled errors in a TaskGroup', [ValueError('v'), GeneratorExit('b')])"
    );
}
