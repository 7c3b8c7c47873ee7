//! `asyncio::run`, `asyncio::Runner`, `#[asyncio::main]` and
//! `#[asyncio::test]` against CPython 3.13 (`test_asyncio/test_runners.py`).

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use asyncio::{sleep, Error, ErrorKind, EventLoop, ExceptionContext, Result, RunOptions, Runner};
use common::{entries, log, push, repr};

// ===== asyncio::run =====

#[test]
fn run_returns_the_result() {
    let out = asyncio::run(async {
        sleep(0.001).await?;
        Ok("main result")
    })
    .unwrap();
    assert_eq!(out, "main result");
}

#[test]
fn run_returns_the_error() {
    // CPython: KeyError('k') propagates out of asyncio.run
    let err = asyncio::run(async { Err::<(), _>(Error::value("k")) }).unwrap_err();
    assert_eq!(repr(err), "ValueError('k')");
}

#[test]
fn run_uses_a_new_running_loop_and_closes_it() {
    let kept: Rc<RefCell<Option<EventLoop>>> = Rc::new(RefCell::new(None));
    let k = kept.clone();
    asyncio::run(async move {
        let l = asyncio::get_running_loop()?;
        assert!(l.is_running());
        *k.borrow_mut() = Some(l);
        Ok(())
    })
    .unwrap();
    let l = kept.borrow_mut().take().unwrap();
    assert!(l.is_closed());
    assert!(!l.is_running());
    // Nothing is running on this thread any more.
    assert!(asyncio::_get_running_loop().is_none());
}

#[test]
fn run_inside_a_running_loop_is_runtime_error() {
    // CPython: RuntimeError('asyncio.run() cannot be called from a running event loop')
    let err = asyncio::run(async {
        let inner = asyncio::run(async { Ok(1) }).unwrap_err();
        Ok(inner)
    })
    .unwrap();
    assert_eq!(
        repr(err),
        "RuntimeError('asyncio.run() cannot be called from a running event loop')"
    );
}

#[test]
fn run_inside_a_tokio_runtime_is_refused_without_a_pending_task() {
    // Refused before the coroutine becomes a task: nothing is reported as
    // "Task was destroyed but it is pending!" when the loop closes.
    let ran = Rc::new(Cell::new(false));
    let (err, logs) = common::capture_logs(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = ran.clone();
        rt.block_on(async move {
            asyncio::run(async move {
                r.set(true);
                Ok(1)
            })
            .unwrap_err()
        })
    });
    assert_eq!(
        repr(err),
        "RuntimeError('Cannot run the event loop while another loop is running')"
    );
    assert!(!ran.get());
    assert!(
        !logs
            .iter()
            .any(|r| r.message.contains("Task was destroyed")),
        "{logs:?}"
    );
    // The thread can run a loop once out of Tokio.
    assert_eq!(asyncio::run(async { Ok(5) }).unwrap(), 5);
}

#[test]
fn run_cancels_and_awaits_remaining_tasks() {
    // CPython: main result ['lingering cancelled', 'cleanup awaited']
    let order = log();
    let o = order.clone();
    let out = asyncio::run(async move {
        let o1 = o.clone();
        asyncio::create_task_named(
            async move {
                let r = sleep(10).await;
                if r.as_ref().is_err_and(Error::is_cancelled) {
                    push(&o1, "lingering cancelled");
                }
                r
            },
            "L",
        )?;
        let o2 = o.clone();
        asyncio::create_task(async move {
            let r = sleep(10).await;
            if r.is_err() {
                sleep(0.01).await?;
                push(&o2, "cleanup awaited");
            }
            r
        })?;
        sleep(0).await?;
        Ok("main result")
    })
    .unwrap();
    assert_eq!(out, "main result");
    assert_eq!(entries(&order), ["lingering cancelled", "cleanup awaited"]);
}

#[test]
fn run_cancels_remaining_tasks_even_when_main_fails() {
    let cancelled = Rc::new(Cell::new(false));
    let c = cancelled.clone();
    let err = asyncio::run(async move {
        asyncio::create_task(async move {
            let r = sleep(10).await;
            c.set(r.as_ref().is_err_and(Error::is_cancelled));
            r
        })?;
        sleep(0).await?;
        Err::<(), _>(Error::runtime("main failed"))
    })
    .unwrap_err();
    assert_eq!(repr(err), "RuntimeError('main failed')");
    assert!(cancelled.get());
}

#[test]
fn run_reports_task_errors_during_shutdown() {
    // CPython: unhandled exception during asyncio.run() shutdown
    //          ValueError('during shutdown') B
    let seen: Rc<RefCell<Vec<ExceptionContext>>> = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    asyncio::run(async move {
        let loop_ = asyncio::get_running_loop()?;
        loop_.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
            s.borrow_mut().push(ctx.clone());
        }));
        asyncio::create_task_named(
            async {
                match sleep(10).await {
                    Err(e) if e.is_cancelled() => Err::<(), _>(Error::value("during shutdown")),
                    other => other,
                }
            },
            "B",
        )?;
        // A task cancelled normally is not reported.
        asyncio::create_task_named(sleep(10), "quiet")?;
        sleep(0).await?;
        Ok(())
    })
    .unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].message,
        "unhandled exception during asyncio.run() shutdown"
    );
    assert_eq!(
        repr(seen[0].exception.as_ref().unwrap()),
        "ValueError('during shutdown')"
    );
    assert_eq!(seen[0].task().unwrap().get_name(), "B");
}

#[test]
fn run_does_not_report_pending_tasks_as_destroyed() {
    // asyncio.run cancels and awaits: no "Task was destroyed but it is pending!"
    let seen: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    asyncio::run(async move {
        let loop_ = asyncio::get_running_loop()?;
        loop_.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
            s.borrow_mut().push(ctx.message.clone());
        }));
        for _ in 0..3 {
            asyncio::create_task(sleep(10))?;
        }
        Ok(())
    })
    .unwrap();
    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
}

#[test]
fn run_twice_in_a_row_on_one_thread() {
    assert_eq!(asyncio::run(async { Ok(1) }).unwrap(), 1);
    assert_eq!(asyncio::run(async { Ok(2) }).unwrap(), 2);
}

#[test]
fn run_main_panicking_is_a_panic_error() {
    let err = asyncio::run(async {
        if true {
            panic!("main panicked");
        }
        Ok(())
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panic);
    assert_eq!(err.message(), "main panicked");
}

// ===== asyncio::run_with (asyncio.run's debug= and loop_factory=) =====

#[test]
fn run_with_debug_sets_the_loops_debug_mode() {
    // CPython: asyncio.run(main(), debug=True) -> get_running_loop().get_debug()
    let debug_of_main = |options: RunOptions| {
        asyncio::run_with(
            async { Ok(asyncio::get_running_loop()?.get_debug()) },
            options,
        )
        .unwrap()
    };
    assert!(debug_of_main(RunOptions::new().debug(true)));
    assert!(!debug_of_main(RunOptions::new().debug(false)));
}

#[test]
fn run_with_loop_factory_runs_main_on_the_factorys_loop() {
    // CPython: asyncio.run(main(), loop_factory=f): f is called once, main
    // runs on its loop, which is not made current and is closed after.
    let made: Rc<RefCell<Vec<EventLoop>>> = Rc::new(RefCell::new(Vec::new()));
    let m = made.clone();
    let options = RunOptions::new().loop_factory(move || {
        let l = asyncio::new_event_loop()?;
        m.borrow_mut().push(l.clone());
        Ok(l)
    });
    let (running, current_is_set) = asyncio::run_with(
        async {
            let running = asyncio::get_running_loop()?;
            let current = asyncio::get_event_loop_policy().get_event_loop();
            Ok((running, current.is_ok()))
        },
        options,
    )
    .unwrap();
    let made = made.borrow();
    assert_eq!(made.len(), 1, "the factory is called once");
    assert!(running.ptr_eq(&made[0]));
    assert!(!current_is_set, "the factory's loop is not made current");
    assert!(running.is_closed());
}

#[test]
fn run_with_both_options() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let options = RunOptions::new().debug(true).loop_factory(move || {
        c.set(c.get() + 1);
        let l = asyncio::new_event_loop()?;
        l.set_slow_callback_duration(7.0);
        Ok(l)
    });
    let (debug, slow) = asyncio::run_with(
        async {
            let l = asyncio::get_running_loop()?;
            Ok((l.get_debug(), l.slow_callback_duration()))
        },
        options,
    )
    .unwrap();
    assert_eq!(calls.get(), 1);
    assert!(debug, "debug= applies to the factory's loop");
    assert_eq!(slow, 7.0);
}

#[test]
fn run_with_returns_the_loop_factorys_error() {
    let options = RunOptions::new().loop_factory(|| Err(Error::runtime("no loop for you")));
    let err = asyncio::run_with(async { Ok(()) }, options).unwrap_err();
    assert_eq!(repr(err), "RuntimeError('no loop for you')");
}

#[test]
fn run_with_inside_a_running_loop_is_runtime_error() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let err = asyncio::run(async move {
        let options = RunOptions::new().loop_factory(move || {
            c.set(c.get() + 1);
            asyncio::new_event_loop()
        });
        Ok(asyncio::run_with(async { Ok(1) }, options).unwrap_err())
    })
    .unwrap();
    assert_eq!(
        repr(err),
        "RuntimeError('asyncio.run() cannot be called from a running event loop')"
    );
    assert_eq!(calls.get(), 0, "refused before any loop is made");
}

#[test]
fn run_with_no_options_is_plain_run() {
    let debug = asyncio::run_with(
        async { Ok(asyncio::get_running_loop()?.get_debug()) },
        RunOptions::new(),
    )
    .unwrap();
    let plain = asyncio::run(async { Ok(asyncio::get_running_loop()?.get_debug()) }).unwrap();
    assert_eq!(debug, plain);
    assert_eq!(
        format!("{:?}", RunOptions::new().debug(true)),
        "RunOptions { debug: Some(true), loop_factory: None }"
    );
}

// ===== Runner =====

#[test]
fn runner_runs_twice_on_the_same_loop() {
    // CPython: True 1 2 True; the loop is closed afterwards
    let mut runner = Runner::new().debug(true);
    let l1 = runner.get_loop().unwrap();
    assert!(l1.get_debug());
    let a = runner.run(async { sleep(0).await.map(|_| 1) }).unwrap();
    let l2 = runner.get_loop().unwrap();
    let b = runner
        .run(async {
            let l = asyncio::get_running_loop()?;
            Ok((2, l))
        })
        .unwrap();
    assert_eq!((a, b.0), (1, 2));
    assert!(l1.ptr_eq(&l2));
    assert!(l1.ptr_eq(&b.1));
    runner.close().unwrap();
    assert!(l1.is_closed());
}

#[test]
fn runner_debug_false() {
    let mut runner = Runner::new().debug(false);
    let dbg = runner
        .run(async { Ok(asyncio::get_running_loop()?.get_debug()) })
        .unwrap();
    assert!(!dbg);
    runner.close().unwrap();
}

#[test]
fn runner_close_is_idempotent_and_then_closed() {
    // CPython: RuntimeError('Runner is closed') for run() and get_loop()
    let mut runner = Runner::new();
    runner.run(async { Ok(()) }).unwrap();
    runner.close().unwrap();
    runner.close().unwrap();
    let err = runner.run(async { Ok(()) }).unwrap_err();
    assert_eq!(repr(err), "RuntimeError('Runner is closed')");
    let err = runner.get_loop().unwrap_err();
    assert_eq!(repr(err), "RuntimeError('Runner is closed')");
}

#[test]
fn runner_close_before_use_is_a_no_op() {
    // CPython: r = Runner(); r.close(); r.get_loop() works
    let mut runner = Runner::new();
    runner.close().unwrap();
    let l = runner.get_loop().unwrap();
    assert!(!l.is_closed());
    assert_eq!(runner.run(async { Ok(5) }).unwrap(), 5);
    runner.close().unwrap();
    assert!(l.is_closed());
}

#[test]
fn runner_run_inside_a_running_loop_is_runtime_error() {
    // CPython: RuntimeError('Runner.run() cannot be called from a running event loop')
    let err = asyncio::run(async {
        let mut inner = Runner::new();
        let err = inner.run(async { Ok(1) }).unwrap_err();
        Ok(err)
    })
    .unwrap();
    assert_eq!(
        repr(err),
        "RuntimeError('Runner.run() cannot be called from a running event loop')"
    );
}

#[test]
fn runner_sets_and_clears_the_current_loop() {
    // CPython: get_event_loop() is the runner's loop while it is open;
    // afterwards: RuntimeError("There is no current event loop in thread 'MainThread'.")
    let mut runner = Runner::new();
    let l = runner.get_loop().unwrap();
    assert!(asyncio::get_event_loop().unwrap().ptr_eq(&l));
    runner.close().unwrap();
    let err = asyncio::get_event_loop().unwrap_err();
    let name = std::thread::current().name().unwrap().to_owned();
    assert_eq!(
        err.to_string(),
        format!("There is no current event loop in thread '{name}'.")
    );
}

#[test]
fn runner_with_loop_factory() {
    // CPython: r.get_loop() is mine; no current loop is set; mine closed after
    let mine = asyncio::new_event_loop().unwrap();
    let m = mine.clone();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let mut runner = Runner::new().loop_factory(move || {
        c.set(c.get() + 1);
        Ok(m.clone())
    });
    assert!(runner.get_loop().unwrap().ptr_eq(&mine));
    assert!(asyncio::get_event_loop().is_err());
    let on_mine = runner.run(async { asyncio::get_running_loop() }).unwrap();
    assert!(on_mine.ptr_eq(&mine));
    runner.run(async { Ok(()) }).unwrap();
    assert_eq!(calls.get(), 1);
    runner.close().unwrap();
    assert!(mine.is_closed());
}

#[test]
fn runner_loop_factory_error_is_returned() {
    let mut runner = Runner::new().loop_factory(|| Err(Error::runtime("no loop for you")));
    let err = runner.run(async { Ok(()) }).unwrap_err();
    assert_eq!(repr(err), "RuntimeError('no loop for you')");
}

#[test]
fn runner_close_cancels_remaining_tasks() {
    let mut runner = Runner::new();
    let cancelled = Rc::new(Cell::new(false));
    let c = cancelled.clone();
    runner
        .run(async move {
            asyncio::create_task(async move {
                let r = sleep(10).await;
                c.set(r.as_ref().is_err_and(Error::is_cancelled));
                r
            })?;
            Ok(())
        })
        .unwrap();
    // A task left by the first run still runs in the second.
    assert!(!cancelled.get());
    runner.run(sleep(0)).unwrap();
    assert!(!cancelled.get());
    runner.close().unwrap();
    assert!(cancelled.get());
}

#[test]
fn dropping_a_runner_closes_its_loop() {
    let l = {
        let mut runner = Runner::new();
        runner.run(async { Ok(()) }).unwrap();
        runner.get_loop().unwrap()
    };
    assert!(l.is_closed());
}

#[test]
fn runner_run_returns_errors_and_stays_usable() {
    let mut runner = Runner::new();
    let err = runner
        .run(async { Err::<(), _>(Error::value("first")) })
        .unwrap_err();
    assert_eq!(repr(err), "ValueError('first')");
    assert_eq!(runner.run(async { Ok(2) }).unwrap(), 2);
    runner.close().unwrap();
}

#[test]
fn runner_run_with_non_clone_result() {
    struct NotClone(String);
    let mut runner = Runner::new();
    let v = runner.run(async { Ok(NotClone("moved".into())) }).unwrap();
    assert_eq!(v.0, "moved");
}

// ===== #[asyncio::main] / #[asyncio::test] =====

#[asyncio::main]
async fn main_like() -> i32 {
    sleep(0.001).await.unwrap();
    42
}

#[asyncio::main(debug = true)]
async fn main_in_debug_mode() -> bool {
    asyncio::get_running_loop().unwrap().get_debug()
}

#[asyncio::main]
async fn main_returning_result() -> asyncio::Result<&'static str> {
    sleep(0).await?;
    Ok("fine")
}

fn factory_loop() -> Result<EventLoop> {
    let l = asyncio::new_event_loop()?;
    l.set_slow_callback_duration(7.0);
    Ok(l)
}

#[asyncio::main(loop_factory = factory_loop)]
async fn main_with_loop_factory() -> f64 {
    asyncio::get_running_loop()
        .unwrap()
        .slow_callback_duration()
}

#[test]
fn main_macro_runs_like_asyncio_run() {
    assert_eq!(main_like(), 42);
    assert!(main_in_debug_mode());
    assert_eq!(main_returning_result().unwrap(), "fine");
    assert_eq!(main_with_loop_factory(), 7.0);
}

#[asyncio::test]
async fn test_macro_plain() {
    let loop_ = asyncio::get_running_loop().unwrap();
    assert!(loop_.is_running());
    assert!(asyncio::current_task().unwrap().is_some());
    sleep(0).await.unwrap();
}

#[asyncio::test]
async fn test_macro_returning_result() -> asyncio::Result<()> {
    let t = asyncio::create_task(async { Ok(3) })?;
    assert_eq!(t.await?, 3);
    Ok(())
}

#[asyncio::test(debug = true)]
async fn test_macro_debug() {
    assert!(asyncio::get_running_loop().unwrap().get_debug());
}

#[asyncio::test(loop_factory = factory_loop)]
async fn test_macro_loop_factory() {
    assert_eq!(
        asyncio::get_running_loop()
            .unwrap()
            .slow_callback_duration(),
        7.0
    );
}

#[asyncio::test]
#[should_panic(expected = "boom in test body")]
async fn test_macro_panicking_body_fails_the_test() {
    sleep(0).await.unwrap();
    panic!("boom in test body");
}

#[asyncio::test]
async fn test_macro_cancels_leftover_tasks() {
    // The task outlives the body; the runner cancels it at shutdown.
    asyncio::create_task(sleep(10)).unwrap();
}
