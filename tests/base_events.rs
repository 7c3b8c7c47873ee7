//! The event loop's lifecycle and callback scheduling (CPython's
//! `base_events.py`), against the real Tokio-backed loop.

mod common;

use std::cell::{Cell, RefCell};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use asyncio::{Error, ErrorKind, EventLoop, Future};
use common::{capture_logs, new_loop, record_exceptions, stop_soon};
use tracing::Level;

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// A callback that appends `what` to `log`.
fn push(log: &Log, what: &str) -> impl FnOnce() + 'static {
    let log = log.clone();
    let what = what.to_owned();
    move || log.borrow_mut().push(what)
}

fn snapshot(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

fn assert_runtime_error(err: Error, message: &str) {
    assert_eq!(err.kind(), ErrorKind::RuntimeError, "{err:?}");
    assert_eq!(err.message(), message);
}

// ===== run_until_complete =====

#[test]
fn run_until_complete_returns_the_result() {
    let loop_ = new_loop();
    assert_eq!(loop_.run_until_complete(async { Ok(42) }).unwrap(), 42);

    let fut = Future::<&'static str>::new(&loop_);
    let setter = fut.clone();
    loop_.call_soon(move || setter.set_result("done")).unwrap();
    assert_eq!(loop_.run_until_complete(&fut).unwrap(), "done");
    assert!(fut.done());
    assert!(!loop_.is_running());
    loop_.close().unwrap();
}

#[test]
fn run_until_complete_propagates_the_error() {
    let loop_ = new_loop();
    let err = loop_
        .run_until_complete(async { Err::<(), _>(Error::value("boom")) })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "boom");

    let err = loop_
        .run_until_complete(async {
            if true {
                panic!("kaboom");
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panic);
    assert_eq!(err.message(), "kaboom");

    // The loop is still usable.
    assert_eq!(loop_.run_until_complete(async { Ok(1) }).unwrap(), 1);
    loop_.close().unwrap();
}

#[test]
fn run_until_complete_inside_the_running_loop_fails() {
    let loop_ = new_loop();
    let errors = Rc::new(RefCell::new(Vec::new()));
    let (l, e) = (loop_.clone(), errors.clone());
    loop_
        .call_soon(move || {
            e.borrow_mut()
                .push(l.run_until_complete(async { Ok(1) }).unwrap_err());
            e.borrow_mut().push(l.run_forever().unwrap_err());
            l.stop();
        })
        .unwrap();
    loop_.run_forever().unwrap();
    let errors = errors.borrow();
    assert_eq!(errors.len(), 2);
    for err in errors.iter() {
        assert_runtime_error(err.clone(), "This event loop is already running");
    }
    // No task was left behind by the refused call.
    assert!(asyncio::all_tasks_of(&loop_).is_empty());
    loop_.close().unwrap();
}

#[test]
fn running_a_second_loop_inside_the_first_fails() {
    let outer = new_loop();
    let inner = new_loop();
    let errors = Rc::new(RefCell::new(Vec::new()));
    let (o, i, e) = (outer.clone(), inner.clone(), errors.clone());
    outer
        .call_soon(move || {
            e.borrow_mut()
                .push(i.run_until_complete(async { Ok(1) }).unwrap_err());
            e.borrow_mut().push(i.run_forever().unwrap_err());
            assert!(!i.is_running());
            o.stop();
        })
        .unwrap();
    outer.run_forever().unwrap();
    for err in errors.borrow().iter() {
        assert_runtime_error(
            err.clone(),
            "Cannot run the event loop while another loop is running",
        );
    }
    assert_eq!(errors.borrow().len(), 2);
    // Both loops still work afterwards.
    assert_eq!(inner.run_until_complete(async { Ok(2) }).unwrap(), 2);
    assert_eq!(outer.run_until_complete(async { Ok(3) }).unwrap(), 3);
    inner.close().unwrap();
    outer.close().unwrap();
}

#[test]
fn run_until_complete_inside_a_tokio_runtime_is_refused_before_anything_is_created() {
    // The loop cannot block inside another (Tokio) runtime. As CPython's
    // `_check_running` runs before `ensure_future`, the refusal comes before
    // the coroutine is wrapped in a task: nothing is left pending.
    let ((), logs) = capture_logs(|| {
        let loop_ = new_loop();
        let seen = record_exceptions(&loop_);
        let ran = Rc::new(Cell::new(false));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = ran.clone();
        let err = rt.block_on(async {
            loop_
                .run_until_complete(async move {
                    r.set(true);
                    Ok(1)
                })
                .unwrap_err()
        });
        assert_runtime_error(
            err,
            "Cannot run the event loop while another loop is running",
        );
        assert!(asyncio::all_tasks_of(&loop_).is_empty(), "no task was made");
        assert_eq!(loop_.ready_len(), 0);
        let err = rt.block_on(async { loop_.run_forever().unwrap_err() });
        assert_runtime_error(
            err,
            "Cannot run the event loop while another loop is running",
        );
        assert!(!loop_.is_running());
        drop(rt);
        assert!(!ran.get());

        // Outside Tokio the loop works as usual, and closes without a
        // "Task was destroyed but it is pending!" report.
        assert_eq!(loop_.run_until_complete(async { Ok(2) }).unwrap(), 2);
        let l = loop_.clone();
        let v = loop_
            .run_until_complete(async move {
                let t = l.create_task(async {
                    asyncio::sleep(0.001).await?;
                    Ok(3)
                })?;
                t.await
            })
            .unwrap();
        assert_eq!(v, 3);
        loop_.close().unwrap();
        let seen = seen.borrow();
        assert!(
            seen.is_empty(),
            "{:?}",
            seen.iter().map(|s| &s.rendered).collect::<Vec<_>>()
        );
    });
    assert!(
        !logs
            .iter()
            .any(|r| r.message.contains("Task was destroyed")),
        "{logs:?}"
    );
}

#[test]
fn a_loop_closed_or_dropped_inside_a_tokio_runtime_does_not_panic() {
    // Dropping a Tokio runtime inside another one panics in Tokio; the
    // loop's own runtime is shut down without waiting there instead.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let closed = new_loop();
    assert_eq!(closed.run_until_complete(async { Ok(1) }).unwrap(), 1);
    let dropped = new_loop();
    rt.block_on(async {
        closed.close().unwrap();
        drop(dropped);
        let made_here = new_loop();
        made_here.close().unwrap();
    });
    assert!(closed.is_closed());
}

#[test]
fn run_until_complete_stopped_before_the_future_completed() {
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    let fut = Future::<i32>::new(&loop_);
    stop_soon(&loop_);
    let err = loop_.run_until_complete(&fut).unwrap_err();
    assert_runtime_error(err, "Event loop stopped before Future completed.");
    assert!(!fut.done());

    // Same with a coroutine: the task made for it stays pending and, as in
    // CPython (`_log_destroy_pending = False`), is not reported at close.
    stop_soon(&loop_);
    let err = loop_
        .run_until_complete(async {
            asyncio::sleep(3600.0).await?;
            Ok(())
        })
        .unwrap_err();
    assert_runtime_error(err, "Event loop stopped before Future completed.");
    loop_.close().unwrap();
    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
}

#[test]
fn run_until_complete_removes_its_done_callback() {
    // After an early stop, completing the future later must not stop a
    // later run of the loop (CPython removes `_run_until_complete_cb`).
    let loop_ = new_loop();
    let fut = Future::<i32>::new(&loop_);
    stop_soon(&loop_);
    assert!(loop_.run_until_complete(&fut).is_err());

    let events = log();
    let setter = fut.clone();
    loop_.call_soon(move || setter.set_result(1)).unwrap();
    loop_.call_later(0.01, push(&events, "late")).unwrap();
    let l = loop_.clone();
    loop_.call_later(0.02, move || l.stop()).unwrap();
    loop_.run_forever().unwrap();
    assert!(fut.done());
    assert_eq!(snapshot(&events), ["late"]);
    loop_.close().unwrap();
}

#[test]
fn run_until_complete_rejects_a_future_of_another_loop() {
    let a = new_loop();
    let b = new_loop();
    let fut = Future::<i32>::new(&a);
    let err = b.run_until_complete(&fut).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(
        err.message(),
        "The future belongs to a different loop than the one specified as the loop argument"
    );
    a.close().unwrap();
    b.close().unwrap();
}

// ===== run_forever / stop =====

#[test]
fn run_forever_runs_until_stop() {
    let loop_ = new_loop();
    let events = log();
    let (l, ev) = (loop_.clone(), events.clone());
    loop_
        .call_soon(move || {
            ev.borrow_mut().push("first".into());
            assert!(l.is_running());
            let (l2, ev2) = (l.clone(), ev.clone());
            l.call_later(0.01, move || {
                ev2.borrow_mut().push("timer".into());
                l2.stop();
            })
            .unwrap();
        })
        .unwrap();
    assert!(!loop_.is_running());
    loop_.run_forever().unwrap();
    assert!(!loop_.is_running());
    assert_eq!(snapshot(&events), ["first", "timer"]);
    loop_.close().unwrap();
}

#[test]
fn stop_lets_the_current_iteration_finish() {
    // CPython: [1, 2] after the first run, [1, 2, 3] after the next.
    let loop_ = new_loop();
    let events = log();
    let (l, ev) = (loop_.clone(), events.clone());
    loop_
        .call_soon(move || {
            ev.borrow_mut().push("1".into());
            l.call_soon(push(&ev, "3")).unwrap();
            l.stop();
        })
        .unwrap();
    loop_.call_soon(push(&events, "2")).unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["1", "2"]);
    assert_eq!(loop_.ready_len(), 1);

    loop_.stop();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["1", "2", "3"]);
    loop_.close().unwrap();
}

#[test]
fn stop_before_run_forever_runs_exactly_one_iteration() {
    // CPython: ['a'] then ['a', 'b'].
    let loop_ = new_loop();
    let events = log();
    let (l, ev) = (loop_.clone(), events.clone());
    loop_
        .call_soon(move || {
            ev.borrow_mut().push("a".into());
            l.call_soon(push(&ev, "b")).unwrap();
        })
        .unwrap();
    loop_.stop();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["a"]);

    loop_.stop();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["a", "b"]);
    loop_.close().unwrap();
}

#[test]
fn stop_before_run_forever_does_not_wait_for_timers() {
    let loop_ = new_loop();
    let events = log();
    loop_.call_later(3600.0, push(&events, "timer")).unwrap();
    loop_.stop();
    loop_.run_forever().unwrap(); // returns at once: zero poll timeout
    assert!(events.borrow().is_empty());
    assert_eq!(loop_.scheduled_len(), 1);
    loop_.close().unwrap();
}

#[test]
fn the_stop_flag_is_reset_after_run_forever() {
    let loop_ = new_loop();
    let events = log();
    loop_.stop();
    loop_.run_forever().unwrap();
    // A second run is not stopped by the old flag: the timer fires.
    let ev = events.clone();
    let l = loop_.clone();
    loop_
        .call_later(0.01, move || {
            ev.borrow_mut().push("timer".into());
            l.stop();
        })
        .unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["timer"]);
    loop_.close().unwrap();
}

// ===== close =====

#[test]
fn closing_a_running_loop_fails() {
    let loop_ = new_loop();
    let result = Rc::new(RefCell::new(None));
    let (l, r) = (loop_.clone(), result.clone());
    loop_
        .call_soon(move || {
            *r.borrow_mut() = Some(l.close());
            l.stop();
        })
        .unwrap();
    loop_.run_forever().unwrap();
    let err = result.borrow_mut().take().unwrap().unwrap_err();
    assert_runtime_error(err, "Cannot close a running event loop");
    assert!(!loop_.is_closed());
    loop_.close().unwrap();
    assert!(loop_.is_closed());
}

#[test]
fn close_is_idempotent() {
    let loop_ = new_loop();
    assert!(!loop_.is_closed());
    loop_.close().unwrap();
    assert!(loop_.is_closed());
    loop_.close().unwrap();
    loop_.close().unwrap();
    assert!(loop_.is_closed());
}

#[test]
fn a_closed_loop_refuses_all_work() {
    let loop_ = new_loop();
    loop_.close().unwrap();
    let closed = "Event loop is closed";
    assert_runtime_error(loop_.call_soon(|| ()).unwrap_err(), closed);
    assert_runtime_error(loop_.call_later(1.0, || ()).unwrap_err(), closed);
    assert_runtime_error(
        loop_.call_later(Duration::from_secs(1), || ()).unwrap_err(),
        closed,
    );
    assert_runtime_error(loop_.call_at(1.0, || ()).unwrap_err(), closed);
    assert_runtime_error(loop_.create_task(async { Ok(()) }).unwrap_err(), closed);
    assert_runtime_error(loop_.run_in_executor(None, || 1).unwrap_err(), closed);
    assert_runtime_error(loop_.run_forever().unwrap_err(), closed);
    assert_runtime_error(
        loop_.run_until_complete(async { Ok(()) }).unwrap_err(),
        closed,
    );
    assert_runtime_error(loop_.call_soon_threadsafe(|| ()).unwrap_err(), closed);
    assert!(loop_.threadsafe().is_closed());
}

#[test]
fn close_drops_pending_callbacks_and_timers() {
    let loop_ = new_loop();
    let marker = Rc::new(());
    let ran = Rc::new(Cell::new(0));
    for _ in 0..3 {
        let (m, r) = (marker.clone(), ran.clone());
        let _ = loop_.call_soon(move || {
            let _keep = m;
            r.set(r.get() + 1);
        });
    }
    for delay in [0.0, 10.0, 3600.0] {
        let (m, r) = (marker.clone(), ran.clone());
        let _ = loop_.call_later(delay, move || {
            let _keep = m;
            r.set(r.get() + 1);
        });
    }
    let sent = Arc::new(());
    let s = sent.clone();
    std::thread::spawn({
        let remote = loop_.threadsafe();
        move || {
            let _ = remote.call_soon_threadsafe(move || drop(s));
        }
    })
    .join()
    .unwrap();
    assert_eq!(Rc::strong_count(&marker), 7);
    assert_eq!(Arc::strong_count(&sent), 2);
    assert_eq!(loop_.ready_len(), 3);
    assert_eq!(loop_.scheduled_len(), 3);
    loop_.close().unwrap();
    assert_eq!(Rc::strong_count(&marker), 1, "callbacks were not dropped");
    assert_eq!(
        Arc::strong_count(&sent),
        1,
        "threadsafe callback not dropped"
    );
    assert_eq!(loop_.ready_len(), 0);
    assert_eq!(loop_.scheduled_len(), 0);
    assert_eq!(ran.get(), 0);
}

#[test]
fn is_running_and_is_closed() {
    let loop_ = new_loop();
    assert!(!loop_.is_running());
    assert!(!loop_.is_closed());
    let inside = Rc::new(Cell::new(false));
    let (l, i) = (loop_.clone(), inside.clone());
    loop_
        .run_until_complete(async move {
            i.set(l.is_running() && !l.is_closed());
            Ok(())
        })
        .unwrap();
    assert!(inside.get());
    assert!(!loop_.is_running());
    loop_.close().unwrap();
    assert!(loop_.is_closed());
    assert!(!loop_.is_running());
}

// ===== debug mode =====

#[test]
fn set_debug_and_get_debug() {
    let loop_ = new_loop();
    let from_env = std::env::var_os("ASYNCIO_DEBUG").is_some_and(|v| !v.is_empty() && v != "0");
    assert_eq!(loop_.get_debug(), from_env);
    loop_.set_debug(true);
    assert!(loop_.get_debug());
    loop_.set_debug(false);
    assert!(!loop_.get_debug());
    loop_.close().unwrap();
}

#[test]
fn debug_mode_handle_reprs_give_file_and_line_without_column() {
    // CPython 3.13 (debug): <Handle print() created at /tmp/x.py:23>, and
    // for a lambda <Handle <lambda>() at /tmp/x.py:23 created at /tmp/x.py:23>.
    fn ping() {}
    let loop_ = new_loop();
    loop_.set_debug(true);
    let h = loop_.call_soon(ping).unwrap();
    let line = line!() - 1;
    assert_eq!(
        format!("{h:?}"),
        format!("<Handle ping() created at {}:{line}>", file!())
    );
    let t = loop_.call_at(5.5, || ()).unwrap();
    let line = line!() - 1;
    let closure = "debug_mode_handle_reprs_give_file_and_line_without_column.<locals>.<closure>";
    assert_eq!(t.as_handle().callback_name(), closure);
    assert_eq!(
        format!("{t:?}"),
        format!(
            "<TimerHandle when=5.5 {closure}() at {file}:{line} created at {file}:{line}>",
            file = file!()
        )
    );
    // Outside debug mode only a closure's own location is shown.
    loop_.set_debug(false);
    let plain = loop_.call_soon(ping).unwrap();
    assert_eq!(format!("{plain:?}"), "<Handle ping()>");
    let lambda = loop_.call_soon(|| ()).unwrap();
    let line = line!() - 1;
    assert_eq!(
        format!("{lambda:?}"),
        format!("<Handle {closure}() at {}:{line}>", file!())
    );
    loop_.close().unwrap();
}

const CHILD_EXPECT_DEBUG: &str = "ASYNCIO_TEST_CHILD_EXPECT_DEBUG";

#[test]
fn asyncio_debug_env_var_turns_debug_mode_on() {
    // Environment variables are process-global: each case runs this very
    // test again in a child process with its own environment.
    if let Ok(expect) = std::env::var(CHILD_EXPECT_DEBUG) {
        let loop_ = new_loop();
        assert_eq!(loop_.get_debug(), expect == "1");
        loop_.close().unwrap();
        return;
    }
    let cases: [(Option<&str>, bool); 5] = [
        (Some("1"), true),
        (Some("yes"), true),
        (Some(""), false),
        (Some("0"), false), // documented: "a non-empty value other than 0"
        (None, false),
    ];
    for (value, expect) in cases {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "asyncio_debug_env_var_turns_debug_mode_on",
            "--test-threads=1",
        ]);
        cmd.env(CHILD_EXPECT_DEBUG, if expect { "1" } else { "0" });
        match value {
            Some(v) => cmd.env("ASYNCIO_DEBUG", v),
            None => cmd.env_remove("ASYNCIO_DEBUG"),
        };
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "ASYNCIO_DEBUG={value:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn slow_callback_duration_defaults_to_a_tenth_of_a_second() {
    let loop_ = new_loop();
    assert_eq!(loop_.slow_callback_duration(), 0.1);
    loop_.set_slow_callback_duration(0.25);
    assert_eq!(loop_.slow_callback_duration(), 0.25);
    loop_.set_slow_callback_duration(Duration::from_millis(500));
    assert_eq!(loop_.slow_callback_duration(), 0.5);
    loop_.close().unwrap();
}

/// Checks `Executing <Handle …> took 0.123 seconds`.
fn assert_slow_callback_message(message: &str) {
    let rest = message
        .strip_prefix("Executing <Handle ")
        .unwrap_or_else(|| panic!("unexpected message: {message}"));
    let (handle, took) = rest
        .rsplit_once("> took ")
        .unwrap_or_else(|| panic!("unexpected message: {message}"));
    assert!(!handle.is_empty(), "{message}");
    let seconds = took
        .strip_suffix(" seconds")
        .unwrap_or_else(|| panic!("unexpected message: {message}"));
    let (whole, frac) = seconds.split_once('.').expect("a decimal number");
    assert!(
        !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()),
        "{message}"
    );
    assert!(
        frac.len() == 3 && frac.bytes().all(|b| b.is_ascii_digit()),
        "{message}"
    );
}

fn run_one_slow_callback(debug: bool, threshold: f64) -> Vec<common::LogRecord> {
    let ((), records) = capture_logs(|| {
        let loop_ = new_loop();
        loop_.set_debug(debug);
        loop_.set_slow_callback_duration(threshold);
        loop_
            .call_soon(|| std::thread::sleep(Duration::from_millis(150)))
            .unwrap();
        stop_soon(&loop_);
        loop_.run_forever().unwrap();
        loop_.close().unwrap();
    });
    records
        .into_iter()
        .filter(|r| r.message.starts_with("Executing "))
        .collect()
}

#[test]
fn slow_callbacks_are_logged_in_debug_mode() {
    let records = run_one_slow_callback(true, 0.1);
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record.level, Level::WARN);
    assert_eq!(record.target, "asyncio");
    assert_slow_callback_message(&record.message);
}

#[test]
fn slow_callbacks_are_not_logged_outside_debug_mode_or_under_the_threshold() {
    assert!(run_one_slow_callback(false, 0.1).is_empty());
    assert!(run_one_slow_callback(true, 3600.0).is_empty());
}

// ===== callbacks =====

#[test]
fn call_soon_runs_callbacks_in_fifo_order() {
    let loop_ = new_loop();
    let seen = Rc::new(RefCell::new(Vec::new()));
    for i in 0..200 {
        let s = seen.clone();
        loop_.call_soon(move || s.borrow_mut().push(i)).unwrap();
    }
    stop_soon(&loop_);
    loop_.run_forever().unwrap();
    assert_eq!(*seen.borrow(), (0..200).collect::<Vec<_>>());
    loop_.close().unwrap();
}

#[test]
fn callbacks_scheduled_by_callbacks_run_in_the_next_iteration() {
    // Each callback reschedules itself; per iteration every chain advances by
    // exactly one step, so the steps interleave: a0 b0 a1 b1 a2 b2.
    let loop_ = new_loop();
    let events = log();
    fn chain(l: EventLoop, ev: Log, name: &'static str, step: u32) {
        ev.borrow_mut().push(format!("{name}{step}"));
        if step < 2 {
            let l2 = l.clone();
            l.call_soon(move || chain(l2, ev, name, step + 1)).unwrap();
        }
    }
    for name in ["a", "b"] {
        let (l, ev) = (loop_.clone(), events.clone());
        loop_.call_soon(move || chain(l, ev, name, 0)).unwrap();
    }
    // Stop in the second iteration: the third steps wait for the next run.
    let l = loop_.clone();
    loop_
        .call_soon(move || {
            let l2 = l.clone();
            l.call_soon(move || l2.stop()).unwrap();
        })
        .unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["a0", "b0", "a1", "b1"]);
    loop_.stop();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["a0", "b0", "a1", "b1", "a2", "b2"]);
    loop_.close().unwrap();
}

#[test]
fn timers_fire_in_deadline_order_after_ready_callbacks() {
    // CPython: ['soon', 't-2', 't-1', 't10', 't20'].
    let loop_ = new_loop();
    let events = log();
    loop_.call_later(-1.0, push(&events, "t-1")).unwrap();
    loop_.call_later(-2.0, push(&events, "t-2")).unwrap();
    loop_.call_soon(push(&events, "soon")).unwrap();
    loop_.call_later(0.02, push(&events, "t20")).unwrap();
    loop_.call_later(0.01, push(&events, "t10")).unwrap();
    let l = loop_.clone();
    loop_.call_later(0.03, move || l.stop()).unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["soon", "t-2", "t-1", "t10", "t20"]);
    loop_.close().unwrap();
}

#[test]
fn call_at_uses_the_loop_clock() {
    let loop_ = new_loop();
    let events = log();
    let now = loop_.time();
    loop_.call_at(now + 0.02, push(&events, "b")).unwrap();
    loop_.call_at(now + 0.01, push(&events, "a")).unwrap();
    loop_.call_at(now - 5.0, push(&events, "past")).unwrap();
    let fired_at = Rc::new(Cell::new(0.0));
    let (l, f) = (loop_.clone(), fired_at.clone());
    loop_
        .call_at(now + 0.03, move || {
            f.set(l.time());
            l.stop();
        })
        .unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["past", "a", "b"]);
    assert!(fired_at.get() >= now + 0.03);
    loop_.close().unwrap();
}

#[test]
fn timer_handle_when_is_the_deadline() {
    let loop_ = new_loop();
    let h = loop_.call_at(5.5, || ()).unwrap();
    assert_eq!(h.when(), 5.5);
    let before = loop_.time();
    let h2 = loop_.call_later(10.0, || ()).unwrap();
    let after = loop_.time();
    assert!(h2.when() >= before + 10.0 && h2.when() <= after + 10.0);
    let h3 = loop_.call_later(Duration::from_secs(20), || ()).unwrap();
    assert!(h3.when() >= before + 20.0);
    assert!(!h.cancelled());
    h.cancel();
    assert!(h.cancelled());
    assert!(h.as_handle().cancelled());
    loop_.close().unwrap();
}

#[test]
fn delays_may_be_durations_floats_or_integers() {
    let loop_ = new_loop();
    let events = log();
    let t0 = loop_.time();
    loop_
        .call_later(Duration::from_millis(30), push(&events, "30ms"))
        .unwrap();
    loop_.call_later(0.01, push(&events, "10ms")).unwrap();
    loop_.call_later(0, push(&events, "0")).unwrap();
    loop_
        .call_later(Duration::from_millis(20), push(&events, "20ms"))
        .unwrap();
    let l = loop_.clone();
    loop_
        .call_later(Duration::from_millis(40), move || l.stop())
        .unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["0", "10ms", "20ms", "30ms"]);
    assert!(loop_.time() - t0 >= 0.04);
    loop_.close().unwrap();
}

#[test]
fn a_cancelled_handle_never_runs() {
    let loop_ = new_loop();
    let events = log();
    let h = loop_.call_soon(push(&events, "soon")).unwrap();
    let t = loop_.call_later(0.0, push(&events, "timer")).unwrap();
    assert!(!h.cancelled());
    h.cancel();
    t.cancel();
    assert!(h.cancelled() && t.cancelled());
    // Cancelled by an earlier callback of the same iteration (CPython: the
    // ready queue skips it), both for a plain handle and a due timer.
    let later = Rc::new(RefCell::new(None::<asyncio::Handle>));
    let due_timer = Rc::new(RefCell::new(None::<asyncio::TimerHandle>));
    let (lt, dt, ev) = (later.clone(), due_timer.clone(), events.clone());
    loop_
        .call_soon(move || {
            ev.borrow_mut().push("canceller".into());
            lt.borrow().as_ref().unwrap().cancel();
            dt.borrow().as_ref().unwrap().cancel();
        })
        .unwrap();
    *later.borrow_mut() = Some(loop_.call_soon(push(&events, "victim")).unwrap());
    *due_timer.borrow_mut() = Some(loop_.call_later(-1.0, push(&events, "due")).unwrap());
    stop_soon(&loop_);
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["canceller"]);

    // Cancelling after the callback ran is a no-op that still marks it.
    let ran = loop_.call_soon(push(&events, "ran")).unwrap();
    stop_soon(&loop_);
    loop_.run_forever().unwrap();
    ran.cancel();
    assert!(ran.cancelled());
    assert_eq!(snapshot(&events), ["canceller", "ran"]);
    loop_.close().unwrap();
}

#[test]
fn cancel_drops_the_callback_at_once() {
    let loop_ = new_loop();
    let marker = Rc::new(());
    let m = marker.clone();
    let h = loop_.call_later(3600.0, move || drop(m)).unwrap();
    assert_eq!(Rc::strong_count(&marker), 2);
    h.cancel();
    assert_eq!(Rc::strong_count(&marker), 1);
    loop_.close().unwrap();
}

#[test]
fn nan_delays_are_value_errors() {
    let loop_ = new_loop();
    let err = loop_.call_later(f64::NAN, || ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "Invalid delay: NaN (not a number)");
    let err = loop_.call_at(f64::NAN, || ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert!(err.message().contains("NaN (not a number)"), "{err:?}");
    assert_eq!(loop_.scheduled_len(), 0);
    loop_.close().unwrap();
}

#[test]
fn call_later_infinity_never_fires_and_can_be_cancelled() {
    // CPython 3.13: h = loop.call_later(float('inf'), f) -> h.when() == inf,
    // repr <TimerHandle when=inf f()>; after h.cancel():
    // <TimerHandle cancelled when=inf>. call_at(float('inf')) likewise.
    let loop_ = new_loop();
    let events = log();
    let h = loop_
        .call_later(f64::INFINITY, push(&events, "later inf"))
        .unwrap();
    assert_eq!(h.when(), f64::INFINITY);
    assert_eq!(
        format!("{h:?}"),
        format!("<TimerHandle when=inf {}>", h.as_handle().callback_repr())
    );
    let at = loop_
        .call_at(f64::INFINITY, push(&events, "at inf"))
        .unwrap();
    assert_eq!(at.when(), f64::INFINITY);
    // Other timers fire as usual meanwhile; the infinite ones never do.
    loop_.call_later(0.02, push(&events, "20ms")).unwrap();
    let l = loop_.clone();
    loop_.call_later(0.05, move || l.stop()).unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["20ms"]);
    assert!(!h.cancelled() && !at.cancelled());
    assert_eq!(loop_.scheduled_len(), 2);
    h.cancel();
    at.cancel();
    assert!(h.cancelled() && at.cancelled());
    assert_eq!(format!("{h:?}"), "<TimerHandle cancelled when=inf>");
    // The next iteration drops them from the heap.
    loop_.stop();
    loop_.run_forever().unwrap();
    assert_eq!(loop_.scheduled_len(), 0);
    assert_eq!(snapshot(&events), ["20ms"]);
    loop_.close().unwrap();
}

#[test]
fn failing_callbacks_are_reported_and_the_loop_goes_on() {
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    let events = log();
    loop_
        .call_soon(|| -> asyncio::Result<()> { Err(Error::value("boom")) })
        .unwrap();
    loop_.call_soon(push(&events, "after error")).unwrap();
    loop_
        .call_soon(|| {
            if true {
                panic!("callback panicked");
            }
        })
        .unwrap();
    loop_.call_soon(push(&events, "after panic")).unwrap();
    loop_
        .call_later(0.0, || -> asyncio::Result<()> {
            Err(Error::runtime("timer failed"))
        })
        .unwrap();
    let l = loop_.clone();
    loop_.call_later(0.01, move || l.stop()).unwrap();
    loop_.run_forever().unwrap();

    assert_eq!(snapshot(&events), ["after error", "after panic"]);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let expected = [
        (ErrorKind::ValueError, "boom"),
        (ErrorKind::Panic, "callback panicked"),
        (ErrorKind::RuntimeError, "timer failed"),
    ];
    for (s, (kind, message)) in seen.iter().zip(expected) {
        assert!(
            s.message.starts_with("Exception in callback "),
            "{}",
            s.message
        );
        assert_eq!(s.exception, Some((kind, message.to_owned())));
        assert!(s.keys.iter().any(|k| k == "handle"), "{:?}", s.keys);
    }
    loop_.close().unwrap();
}

#[test]
fn failing_callbacks_are_logged_by_the_default_handler() {
    let ((), records) = capture_logs(|| {
        let loop_ = new_loop();
        loop_
            .call_soon(|| -> asyncio::Result<()> { Err(Error::value("boom")) })
            .unwrap();
        stop_soon(&loop_);
        loop_.run_forever().unwrap();
        loop_.close().unwrap();
    });
    let errors: Vec<_> = records.iter().filter(|r| r.level == Level::ERROR).collect();
    assert_eq!(errors.len(), 1, "{records:?}");
    assert_eq!(errors[0].target, "asyncio");
    let lines: Vec<&str> = errors[0].message.lines().collect();
    assert!(lines[0].starts_with("Exception in callback "), "{lines:?}");
    assert!(lines[1].starts_with("handle: <Handle "), "{lines:?}");
    assert_eq!(*lines.last().unwrap(), "ValueError: boom");
}

#[test]
fn a_busy_call_soon_chain_does_not_starve_timers() {
    let loop_ = new_loop();
    let spins = Rc::new(Cell::new(0u64));
    fn spin(l: EventLoop, spins: Rc<Cell<u64>>) {
        spins.set(spins.get() + 1);
        let l2 = l.clone();
        let _ = l.call_soon(move || spin(l2, spins));
    }
    let (l, s) = (loop_.clone(), spins.clone());
    loop_.call_soon(move || spin(l, s)).unwrap();
    let l = loop_.clone();
    loop_.call_later(0.02, move || l.stop()).unwrap();
    loop_.run_forever().unwrap();
    assert!(spins.get() > 1);
    loop_.close().unwrap();
}

// ===== timer purge =====

#[test]
fn cancelled_timers_are_purged_when_they_are_more_than_half() {
    // CPython (len(loop._scheduled)): 150, then 149, then 40.
    let loop_ = new_loop();
    let handles: Vec<_> = (0..150)
        .map(|i| loop_.call_later(1000.0 + i as f64, || ()).unwrap())
        .collect();
    for h in &handles[100..] {
        h.cancel();
    }
    loop_.stop();
    loop_.run_forever().unwrap();
    assert_eq!(loop_.scheduled_len(), 150, "a third cancelled: no purge");

    handles[0].cancel();
    loop_.stop();
    loop_.run_forever().unwrap();
    assert_eq!(loop_.scheduled_len(), 149, "a cancelled head is popped");

    for h in &handles[1..60] {
        h.cancel();
    }
    loop_.stop();
    loop_.run_forever().unwrap();
    assert_eq!(loop_.scheduled_len(), 40, "more than half cancelled: purge");
    loop_.close().unwrap();
}

// ===== call_soon_threadsafe =====

#[test]
fn call_soon_threadsafe_from_many_threads_loses_nothing() {
    const THREADS: usize = 8;
    const CALLS: usize = 100_000;
    let loop_ = new_loop();
    let remote = loop_.threadsafe();
    assert!(remote.is_loop(&loop_));
    let count = Arc::new(AtomicUsize::new(0));
    let out_of_order = Arc::new(AtomicUsize::new(0));
    let wrong_thread = Arc::new(AtomicUsize::new(0));
    let next: Arc<Vec<AtomicUsize>> = Arc::new((0..THREADS).map(|_| AtomicUsize::new(0)).collect());
    let loop_thread = std::thread::current().id();

    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let remote = remote.clone();
            let (count, ooo, wt, next) = (
                count.clone(),
                out_of_order.clone(),
                wrong_thread.clone(),
                next.clone(),
            );
            std::thread::spawn(move || {
                for seq in 0..CALLS {
                    let (count, ooo, wt, next) =
                        (count.clone(), ooo.clone(), wt.clone(), next.clone());
                    remote
                        .call_soon_threadsafe(move || {
                            if std::thread::current().id() != loop_thread {
                                wt.fetch_add(1, Ordering::Relaxed);
                            }
                            if next[t].swap(seq + 1, Ordering::Relaxed) != seq {
                                ooo.fetch_add(1, Ordering::Relaxed);
                            }
                            count.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    let stopper = std::thread::spawn(move || {
        for p in producers {
            p.join().unwrap();
        }
        remote.stop();
    });
    loop_.run_forever().unwrap();
    stopper.join().unwrap();
    assert_eq!(count.load(Ordering::Relaxed), THREADS * CALLS);
    assert_eq!(out_of_order.load(Ordering::Relaxed), 0, "per-thread FIFO");
    assert_eq!(wrong_thread.load(Ordering::Relaxed), 0);
    assert!(!loop_.is_running());
    loop_.close().unwrap();
}

#[test]
fn threadsafe_stop_stops_the_loop_from_another_thread() {
    let loop_ = new_loop();
    let remote = loop_.threadsafe();
    let (tx, rx) = mpsc::channel::<()>();
    // The loop is idle (no timers, nothing ready) when the stop arrives.
    loop_
        .call_soon(move || {
            tx.send(()).unwrap();
        })
        .unwrap();
    let t = std::thread::spawn(move || {
        rx.recv().unwrap();
        remote.stop();
    });
    loop_.run_forever().unwrap();
    t.join().unwrap();
    assert!(!loop_.is_running());
    loop_.close().unwrap();
}

#[test]
fn call_soon_threadsafe_on_a_closed_loop_fails() {
    let loop_ = new_loop();
    let remote = loop_.threadsafe();
    assert!(!remote.is_closed());
    loop_.close().unwrap();
    assert!(remote.is_closed());
    let err = std::thread::spawn(move || remote.call_soon_threadsafe(|| ()).unwrap_err())
        .join()
        .unwrap();
    assert_runtime_error(err, "Event loop is closed");
    assert_runtime_error(
        loop_.call_soon_threadsafe(|| ()).unwrap_err(),
        "Event loop is closed",
    );
}

#[test]
fn threadsafe_handle_cancel_prevents_the_call() {
    let loop_ = new_loop();
    let remote = loop_.threadsafe();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let handle = std::thread::spawn(move || {
        let h = remote
            .call_soon_threadsafe(move || r.store(true, Ordering::SeqCst))
            .unwrap();
        assert!(!h.cancelled());
        h.cancel();
        assert!(h.cancelled());
        h
    })
    .join()
    .unwrap();
    assert!(handle.cancelled());
    let r2 = Arc::new(AtomicBool::new(false));
    let r3 = r2.clone();
    loop_
        .call_soon_threadsafe(move || r3.store(true, Ordering::SeqCst))
        .unwrap();
    stop_soon(&loop_);
    loop_.run_forever().unwrap();
    assert!(!ran.load(Ordering::SeqCst));
    assert!(r2.load(Ordering::SeqCst));
    loop_.close().unwrap();
}

#[test]
fn failing_threadsafe_callbacks_are_reported() {
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    loop_
        .call_soon_threadsafe(|| -> asyncio::Result<()> { Err(Error::value("boom")) })
        .unwrap();
    loop_
        .call_soon_threadsafe(|| {
            if true {
                panic!("threadsafe panic");
            }
        })
        .unwrap();
    let ran_after = Arc::new(AtomicBool::new(false));
    let r = ran_after.clone();
    loop_
        .call_soon_threadsafe(move || r.store(true, Ordering::SeqCst))
        .unwrap();
    stop_soon(&loop_);
    loop_.run_forever().unwrap();
    assert!(ran_after.load(Ordering::SeqCst));
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].message.starts_with("Exception in callback "));
    assert_eq!(
        seen[0].exception,
        Some((ErrorKind::ValueError, "boom".to_owned()))
    );
    assert!(seen[1].message.starts_with("Exception in callback "));
    assert_eq!(
        seen[1].exception,
        Some((ErrorKind::Panic, "threadsafe panic".to_owned()))
    );
    loop_.close().unwrap();
}

#[test]

fn failing_threadsafe_callbacks_report_their_handle() {
    // CPython: handler ['exception', 'handle', 'message'] for
    // loop.call_soon_threadsafe(boom), exactly as for call_soon.
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    loop_
        .call_soon_threadsafe(|| -> asyncio::Result<()> { Err(Error::value("boom")) })
        .unwrap();
    loop_
        .call_soon_threadsafe(|| {
            if true {
                panic!("threadsafe panic");
            }
        })
        .unwrap();
    stop_soon(&loop_);
    loop_.run_forever().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in seen.iter() {
        assert!(s.keys.iter().any(|k| k == "handle"), "{:?}", s.keys);
    }
    loop_.close().unwrap();
}

#[test]

fn slow_task_steps_are_logged_as_the_task() {
    // CPython 3.13, debug mode, a task body blocking 0.15 s:
    //   WARNING:asyncio:Executing <Task pending name='Task-1' coro=<main() running at …> …> took 0.151 seconds
    let ((), records) = capture_logs(|| {
        let loop_ = new_loop();
        loop_.set_debug(true);
        let task = loop_
            .create_task_named(
                async {
                    std::thread::sleep(Duration::from_millis(150));
                    asyncio::sleep(0.0).await
                },
                "slow-task",
            )
            .unwrap();
        loop_.run_until_complete(task).unwrap();
        loop_.close().unwrap();
    });
    let slow: Vec<_> = records
        .iter()
        .filter(|r| r.message.starts_with("Executing "))
        .collect();
    assert_eq!(slow.len(), 1, "{records:?}");
    assert!(
        slow[0].message.starts_with("Executing <Task ")
            && slow[0].message.contains(" name='slow-task' "),
        "{}",
        slow[0].message
    );
}

#[test]
fn work_scheduled_from_tokio_tasks_wakes_the_loop() {
    // A Tokio task (not an asyncio callback) schedules a callback and stops
    // the loop; the idle loop must wake up for it. A 10 s safety timer
    // tells a missed wake-up apart.
    let loop_ = new_loop();
    let events = log();
    let l = loop_.clone();
    let ev = events.clone();
    loop_
        .call_later(10.0, move || {
            ev.borrow_mut().push("safety timer".into());
            l.stop();
        })
        .unwrap();
    let l = loop_.clone();
    let ev = events.clone();
    loop_
        .call_soon(move || {
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let l2 = l.clone();
                l.call_soon(move || {
                    ev.borrow_mut().push("from tokio".into());
                    l2.stop();
                })
                .unwrap();
            });
        })
        .unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["from tokio"]);

    // stop() itself, called from a Tokio task.
    let l = loop_.clone();
    loop_
        .call_soon(move || {
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                l.stop();
            });
        })
        .unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(snapshot(&events), ["from tokio"]);
    loop_.close().unwrap();
}
