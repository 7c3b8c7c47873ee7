//! `asyncio::run` / `Runner` and Ctrl-C, on the process's main thread
//! (this test has no libtest harness): CPython's `test_runners.py`
//! `test_signal_install_not_supported_ok`, `test_interrupt_call_soon`,
//! `test_interrupt_wait`, `test_interrupt_cancelled_task`, with real
//! SIGINTs.

use std::cell::Cell;
use std::rc::Rc;

use asyncio::signal::SIGINT;
use asyncio::{ErrorKind, Result, Runner};

fn raise(sig: i32) {
    // SAFETY: sends a signal to this thread; the handler only writes to a pipe.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

fn disposition(sig: i32) -> usize {
    // SAFETY: reads the current action into a zeroed struct.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut action), 0);
        action.sa_sigaction
    }
}

/// The first Ctrl-C cancels the main task, and `run` gives
/// `KeyboardInterrupt`.
fn first_ctrl_c_cancels_the_main_task() {
    let saw_cancel = Rc::new(Cell::new(false));
    let s = saw_cancel.clone();
    let out = asyncio::run(async move {
        assert_ne!(
            disposition(SIGINT),
            libc::SIG_DFL,
            "installed while running"
        );
        raise(SIGINT);
        match asyncio::sleep(30.0).await {
            Err(e) if e.kind() == ErrorKind::CancelledError => {
                s.set(true);
                Err(e)
            }
            other => other,
        }
    });
    assert!(saw_cancel.get());
    assert_eq!(out.unwrap_err().kind(), ErrorKind::KeyboardInterrupt);
    assert_eq!(
        disposition(SIGINT),
        libc::SIG_DFL,
        "default again after run"
    );
}

/// A second Ctrl-C while the main task is being cancelled interrupts at once.
fn second_ctrl_c_interrupts_at_once() {
    let cleanup_done = Rc::new(Cell::new(false));
    let c = cleanup_done.clone();
    let out = asyncio::run(async move {
        raise(SIGINT);
        if let Err(e) = asyncio::sleep(30.0).await {
            assert_eq!(e.kind(), ErrorKind::CancelledError);
            // A slow cleanup, interrupted.
            raise(SIGINT);
            asyncio::sleep(30.0).await?;
            c.set(true);
        }
        Ok(())
    });
    assert_eq!(out.unwrap_err().kind(), ErrorKind::KeyboardInterrupt);
    assert!(!cleanup_done.get());
    assert_eq!(disposition(SIGINT), libc::SIG_DFL);
}

/// A main task that swallows the cancellation (and uncancels) returns its
/// value, as in CPython.
fn a_task_that_uncancels_returns_its_value() {
    let out = asyncio::run(async move {
        raise(SIGINT);
        if asyncio::sleep(30.0).await.is_err() {
            asyncio::current_task()?.unwrap().uncancel();
            return Ok(5);
        }
        Ok(0)
    });
    assert_eq!(out.unwrap(), 5);
}

/// A loop's own SIGINT handler takes precedence; once removed, the
/// runner's handling is back.
fn a_loop_handler_overrides_the_runner() {
    let mut runner = Runner::new();
    let out: Result<i32> = runner.run(async move {
        let loop_ = asyncio::get_running_loop()?;
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        loop_.add_signal_handler(SIGINT, move || c.set(c.get() + 1))?;
        raise(SIGINT);
        while calls.get() == 0 {
            asyncio::sleep(0.001).await?;
        }
        assert!(loop_.remove_signal_handler(SIGINT)?);
        raise(SIGINT);
        asyncio::sleep(30.0).await?;
        Ok(1)
    });
    assert_eq!(out.unwrap_err().kind(), ErrorKind::KeyboardInterrupt);
    runner.close().unwrap();
    assert_eq!(disposition(SIGINT), libc::SIG_DFL);
}

/// Not the default disposition: the runner leaves SIGINT alone
/// (`test_signal_install_not_supported_ok`).
fn an_ignored_sigint_is_left_alone() {
    // SAFETY: ignores SIGINT for the duration of this check.
    unsafe { libc::signal(SIGINT, libc::SIG_IGN) };
    let out = asyncio::run(async move {
        assert_eq!(disposition(SIGINT), libc::SIG_IGN);
        raise(SIGINT);
        asyncio::sleep(0.01).await?;
        Ok(3)
    });
    assert_eq!(out.unwrap(), 3);
    // SAFETY: restores the default.
    unsafe { libc::signal(SIGINT, libc::SIG_DFL) };
}

/// Only the main thread's runner handles Ctrl-C.
fn other_threads_do_not_install() {
    std::thread::spawn(|| {
        asyncio::run(async move {
            assert_eq!(disposition(SIGINT), libc::SIG_DFL);
            Ok(())
        })
        .unwrap();
    })
    .join()
    .unwrap();
}

/// `run_per_core`: Ctrl-C cancels the first loop's main, which stops the
/// other loops; the call gives `KeyboardInterrupt`.
fn ctrl_c_stops_every_loop() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let started = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (s, c) = (started.clone(), cancelled.clone());
    let out = asyncio::run_per_core(3, move |index| {
        let (started, cancelled) = (s.clone(), c.clone());
        async move {
            if index == 0 {
                while started.load(Ordering::SeqCst) < 2 {
                    asyncio::sleep(0.005).await?;
                }
                raise(SIGINT);
            } else {
                started.fetch_add(1, Ordering::SeqCst);
            }
            match asyncio::sleep(30.0).await {
                Err(e) if e.is_cancelled() => {
                    cancelled.fetch_add(1, Ordering::SeqCst);
                    Err(e)
                }
                other => other,
            }
        }
    });
    assert_eq!(out.unwrap_err().kind(), ErrorKind::KeyboardInterrupt);
    assert_eq!(cancelled.load(Ordering::SeqCst), 3);
    assert_eq!(disposition(SIGINT), libc::SIG_DFL);
}

fn main() {
    let tests: [(&str, fn()); 7] = [
        ("ctrl_c_stops_every_loop", ctrl_c_stops_every_loop),
        (
            "first_ctrl_c_cancels_the_main_task",
            first_ctrl_c_cancels_the_main_task,
        ),
        (
            "second_ctrl_c_interrupts_at_once",
            second_ctrl_c_interrupts_at_once,
        ),
        (
            "a_task_that_uncancels_returns_its_value",
            a_task_that_uncancels_returns_its_value,
        ),
        (
            "a_loop_handler_overrides_the_runner",
            a_loop_handler_overrides_the_runner,
        ),
        (
            "an_ignored_sigint_is_left_alone",
            an_ignored_sigint_is_left_alone,
        ),
        ("other_threads_do_not_install", other_threads_do_not_install),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        test();
        println!("test {name} ... ok");
    }
}
