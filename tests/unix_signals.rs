//! `loop.add_signal_handler` / `remove_signal_handler` with real signals:
//! CPython's `test_unix_events.py` `SelectorEventLoopSignalTests` (there on
//! mocks; here signals sent with `raise`/`kill`). Signals are process-wide,
//! so each test runs alone in a child process.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use asyncio::signal::{SIGINT, SIGKILL, SIGSTOP, SIGTERM, SIGUSR1, SIGUSR2};
use asyncio::{Error, ErrorKind, EventLoop, Result};
use common::{in_child, record_exceptions};

const LIMIT: f64 = 20.0;

async fn until(what: &str, cond: impl Fn() -> bool) -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let deadline = loop_.time() + LIMIT;
    while !cond() {
        if loop_.time() > deadline {
            panic!("timed out waiting until {what}");
        }
        asyncio::sleep(0.001).await?;
    }
    Ok(())
}

fn raise(sig: i32) {
    // SAFETY: sends a signal to the calling thread; its handler only
    // writes to a pipe.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

/// The signal's handler address (`SIG_DFL` is 0).
fn disposition(sig: i32) -> usize {
    // SAFETY: reads the current action into a zeroed struct.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut action), 0);
        action.sa_sigaction
    }
}

fn run<T: 'static, F>(body: impl FnOnce(EventLoop) -> F) -> T
where
    F: std::future::Future<Output = Result<T>> + 'static,
{
    common::on_loop(body)
}

#[test]
fn handler_runs_on_the_loop_once_per_signal() {
    if !in_child("handler_runs_on_the_loop_once_per_signal") {
        return;
    }
    run(|loop_| async move {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let c = calls.clone();
        let loop_thread = std::thread::current().id();
        let l = loop_.clone();
        loop_.add_signal_handler(SIGUSR1, move || {
            // A `call_soon` callback: on the loop's thread, with the loop running.
            assert_eq!(std::thread::current().id(), loop_thread);
            assert!(l.is_running());
            c.borrow_mut().push("usr1");
        })?;
        raise(SIGUSR1);
        raise(SIGUSR1);
        raise(SIGUSR1);
        until("three calls", || calls.borrow().len() == 3).await?;
        // No more than one per signal.
        asyncio::sleep(0.05).await?;
        assert_eq!(calls.borrow().len(), 3);
        assert!(loop_.remove_signal_handler(SIGUSR1)?);
        assert_eq!(disposition(SIGUSR1), libc::SIG_DFL);
        Ok(())
    })
}

#[test]
fn adding_again_replaces_and_remove_says_whether_there_was_one() {
    if !in_child("adding_again_replaces_and_remove_says_whether_there_was_one") {
        return;
    }
    run(|loop_| async move {
        let first = Rc::new(Cell::new(0));
        let second = Rc::new(Cell::new(0));
        let f = first.clone();
        loop_.add_signal_handler(SIGUSR1, move || f.set(f.get() + 1))?;
        let s = second.clone();
        loop_.add_signal_handler(SIGUSR1, move || s.set(s.get() + 1))?;
        raise(SIGUSR1);
        until("second handler", || second.get() == 1).await?;
        assert_eq!(first.get(), 0);
        assert!(loop_.remove_signal_handler(SIGUSR1)?);
        assert!(!loop_.remove_signal_handler(SIGUSR1)?);
        assert!(!loop_.remove_signal_handler(SIGUSR2)?);
        Ok(())
    })
}

#[test]
fn errors_as_cpython() {
    if !in_child("errors_as_cpython") {
        return;
    }
    let loop_ = asyncio::new_event_loop().unwrap();
    for (sig, kind, message) in [
        (0, ErrorKind::ValueError, "invalid signal number 0"),
        (32, ErrorKind::ValueError, "invalid signal number 32"),
        (65, ErrorKind::ValueError, "invalid signal number 65"),
        (-1, ErrorKind::ValueError, "invalid signal number -1"),
        (SIGKILL, ErrorKind::RuntimeError, "sig 9 cannot be caught"),
        (SIGSTOP, ErrorKind::RuntimeError, "sig 19 cannot be caught"),
    ] {
        let err = loop_.add_signal_handler(sig, || ()).unwrap_err();
        assert_eq!((err.kind(), err.to_string().as_str()), (kind, message));
    }
    let err = loop_.remove_signal_handler(0).unwrap_err();
    assert_eq!(err.to_string(), "invalid signal number 0");
    // A refused handler leaves nothing behind.
    assert!(!loop_.remove_signal_handler(SIGKILL).unwrap());
    loop_.close().unwrap();
    let err = loop_.add_signal_handler(SIGUSR1, || ()).unwrap_err();
    assert_eq!(err.to_string(), "Event loop is closed");
    // The signal check comes first, as in CPython.
    let err = loop_.add_signal_handler(0, || ()).unwrap_err();
    assert_eq!(err.to_string(), "invalid signal number 0");
    assert!(!loop_.remove_signal_handler(SIGUSR1).unwrap());
}

#[test]
fn a_failing_handler_is_reported_and_the_loop_goes_on() {
    if !in_child("a_failing_handler_is_reported_and_the_loop_goes_on") {
        return;
    }
    run(|loop_| async move {
        let seen = record_exceptions(&loop_);
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        loop_.add_signal_handler(SIGUSR2, move || -> Result<()> {
            c.set(c.get() + 1);
            Err(Error::value("boom"))
        })?;
        raise(SIGUSR2);
        until("reported", || !seen.borrow().is_empty()).await?;
        raise(SIGUSR2);
        until("second call", || calls.get() == 2).await?;
        let s = seen.borrow()[0].clone();
        assert!(
            s.message.starts_with("Exception in callback "),
            "{}",
            s.message
        );
        assert_eq!(s.exception, Some((ErrorKind::ValueError, "boom".into())));
        loop_.remove_signal_handler(SIGUSR2)?;
        Ok(())
    })
}

#[test]
fn signals_received_before_the_loop_runs_are_delivered() {
    if !in_child("signals_received_before_the_loop_runs_are_delivered") {
        return;
    }
    let loop_ = asyncio::new_event_loop().unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    loop_
        .add_signal_handler(SIGUSR1, move || c.set(c.get() + 1))
        .unwrap();
    raise(SIGUSR1);
    raise(SIGUSR1);
    assert_eq!(calls.get(), 0, "never inside the OS handler");
    let c = calls.clone();
    loop_
        .run_until_complete(async move { until("delivered", || c.get() == 2).await })
        .unwrap();
    loop_.close().unwrap();
    assert_eq!(
        disposition(SIGUSR1),
        libc::SIG_DFL,
        "close() removes handlers"
    );
}

#[test]
fn loops_on_several_threads_each_run_their_handler() {
    if !in_child("loops_on_several_threads_each_run_their_handler") {
        return;
    }
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let ready = ready_tx.clone();
            std::thread::spawn(move || {
                run(move |loop_| async move {
                    let mine = Rc::new(Cell::new(0));
                    let m = mine.clone();
                    loop_.add_signal_handler(SIGUSR2, move || {
                        m.set(m.get() + 1);
                        CALLS.fetch_add(1, Ordering::SeqCst);
                    })?;
                    ready.send(()).unwrap();
                    until("signalled", || mine.get() == 1).await?;
                    Ok(())
                })
            })
        })
        .collect();
    for _ in 0..3 {
        ready_rx.recv().unwrap();
    }
    raise(SIGUSR2);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    // Every loop closed: the default disposition is back.
    assert_eq!(disposition(SIGUSR2), libc::SIG_DFL);
}

static EARLIER: AtomicUsize = AtomicUsize::new(0);

extern "C" fn earlier_handler(_sig: libc::c_int) {
    EARLIER.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn an_earlier_handler_keeps_running_and_comes_back() {
    if !in_child("an_earlier_handler_keeps_running_and_comes_back") {
        return;
    }
    let earlier = earlier_handler as *const () as usize;
    // SAFETY: installs a handler that only bumps an atomic counter.
    unsafe { libc::signal(SIGUSR1, earlier) };
    run(|loop_| async move {
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        loop_.add_signal_handler(SIGUSR1, move || c.set(c.get() + 1))?;
        raise(SIGUSR1);
        until("handled", || calls.get() == 1).await?;
        assert_eq!(EARLIER.load(Ordering::SeqCst), 1, "chained");
        loop_.remove_signal_handler(SIGUSR1)?;
        Ok(())
    });
    assert_eq!(disposition(SIGUSR1), earlier);
}

/// Runs this test binary's test `name` in a child and returns how it ended.
fn run_self(name: &str) -> std::process::ExitStatus {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("ASYNCIO_TEST_CHILD", name)
        .output()
        .unwrap()
        .status
}

#[test]
fn a_removed_sigterm_handler_lets_sigterm_kill_again() {
    use std::os::unix::process::ExitStatusExt;
    let name = "a_removed_sigterm_handler_lets_sigterm_kill_again";
    if std::env::var("ASYNCIO_TEST_CHILD").as_deref() != Ok(name) {
        assert_eq!(run_self(name).signal(), Some(SIGTERM));
        return;
    }
    run(|loop_| async move {
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        loop_.add_signal_handler(SIGTERM, move || c.set(c.get() + 1))?;
        raise(SIGTERM);
        until("handled", || calls.get() == 1).await?;
        assert!(loop_.remove_signal_handler(SIGTERM)?);
        Ok(())
    });
    raise(SIGTERM);
    unreachable!("SIGTERM kills the process");
}

#[test]
fn a_removed_sigint_handler_lets_sigint_interrupt_again() {
    use std::os::unix::process::ExitStatusExt;
    let name = "a_removed_sigint_handler_lets_sigint_interrupt_again";
    if std::env::var("ASYNCIO_TEST_CHILD").as_deref() != Ok(name) {
        assert_eq!(run_self(name).signal(), Some(SIGINT));
        return;
    }
    run(|loop_| async move {
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        loop_.add_signal_handler(SIGINT, move || c.set(c.get() + 1))?;
        raise(SIGINT);
        until("handled", || calls.get() == 1).await?;
        assert!(loop_.remove_signal_handler(SIGINT)?);
        Ok(())
    });
    raise(SIGINT);
    unreachable!("SIGINT interrupts the process");
}

#[test]
fn process_directed_signals_reach_the_loop() {
    if !in_child("process_directed_signals_reach_the_loop") {
        return;
    }
    run(|loop_| async move {
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        loop_.add_signal_handler(SIGUSR2, move || c.set(c.get() + 1))?;
        // kill(getpid()): the kernel picks any thread of the process
        // (the loop's, the dispatcher's, a worker's) to run the OS handler.
        for n in 1..=5 {
            // SAFETY: signals this process, whose handler only writes to a pipe.
            assert_eq!(unsafe { libc::kill(libc::getpid(), SIGUSR2) }, 0);
            until("delivered", || calls.get() == n).await?;
        }
        assert!(loop_.remove_signal_handler(SIGUSR2)?);
        Ok(())
    })
}
