//! Getting loops: `get_running_loop`, `get_event_loop`, `set_event_loop`,
//! `new_event_loop`, policies, and `Runner` (CPython's `events.py` and
//! `runners.py`).
//!
//! The event-loop policy is process-wide (and `new_event_loop` goes through
//! it), so every test here holds [`POLICY_LOCK`].

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use asyncio::{
    AbstractEventLoopPolicy, DefaultEventLoopPolicy, Error, ErrorKind, EventLoop, Runner,
    TokioEventLoop,
};
use common::{new_loop, record_exceptions, stop_soon};

static POLICY_LOCK: Mutex<()> = Mutex::new(());

fn policy_lock() -> MutexGuard<'static, ()> {
    POLICY_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Restores the default policy and clears this thread's current loop, even
/// when the test fails.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        asyncio::set_event_loop_policy(None);
        let _ = asyncio::set_event_loop(None);
    }
}

fn assert_runtime_error(err: Error, message: &str) {
    assert_eq!(err.kind(), ErrorKind::RuntimeError, "{err:?}");
    assert_eq!(err.message(), message);
}

fn no_current_loop_message() -> String {
    format!(
        "There is no current event loop in thread '{}'.",
        std::thread::current().name().unwrap()
    )
}

fn same_policy(a: &Arc<dyn AbstractEventLoopPolicy>, b: &Arc<dyn AbstractEventLoopPolicy>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

// ===== get_running_loop =====

#[test]
fn get_running_loop_outside_a_loop_fails() {
    let _guard = policy_lock();
    assert_runtime_error(
        asyncio::get_running_loop().unwrap_err(),
        "no running event loop",
    );
}

#[test]
fn get_running_loop_returns_the_running_loop() {
    let _guard = policy_lock();
    let loop_ = new_loop();
    let l = loop_.clone();
    let in_task = loop_
        .run_until_complete(async move { Ok(asyncio::get_running_loop()?.ptr_eq(&l)) })
        .unwrap();
    assert!(in_task);

    let in_callback = Rc::new(Cell::new(false));
    let (l, seen) = (loop_.clone(), in_callback.clone());
    loop_
        .call_soon(move || seen.set(asyncio::get_running_loop().unwrap().ptr_eq(&l)))
        .unwrap();
    stop_soon(&loop_);
    loop_.run_forever().unwrap();
    assert!(in_callback.get());

    // Only in the loop's own thread, and only while it runs.
    let other_thread = loop_
        .run_until_complete(async {
            Ok(std::thread::spawn(|| asyncio::get_running_loop().is_err())
                .join()
                .unwrap())
        })
        .unwrap();
    assert!(other_thread);
    assert!(asyncio::get_running_loop().is_err());
    loop_.close().unwrap();
}

// ===== get_event_loop / set_event_loop =====

#[test]
fn get_event_loop_never_creates_a_loop() {
    let _guard = policy_lock();
    let _restore = Restore;
    asyncio::set_event_loop(None).unwrap();
    let message = no_current_loop_message();
    assert_runtime_error(asyncio::get_event_loop().unwrap_err(), &message);
    // Still none: the failed call did not make one.
    assert_runtime_error(asyncio::get_event_loop().unwrap_err(), &message);
    assert_runtime_error(
        asyncio::get_event_loop_policy()
            .get_event_loop()
            .unwrap_err(),
        &message,
    );
}

#[test]
fn get_event_loop_names_the_thread() {
    let _guard = policy_lock();
    let err = std::thread::Builder::new()
        .name("worker-7".into())
        .spawn(|| asyncio::get_event_loop().unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    assert_runtime_error(err, "There is no current event loop in thread 'worker-7'.");
}

#[test]
fn set_event_loop_sets_the_current_loop_of_this_thread_only() {
    let _guard = policy_lock();
    let _restore = Restore;
    let loop_ = asyncio::new_event_loop().unwrap();
    asyncio::set_event_loop(Some(loop_.clone())).unwrap();
    assert!(asyncio::get_event_loop().unwrap().ptr_eq(&loop_));
    assert!(asyncio::get_event_loop().unwrap().ptr_eq(&loop_));

    let err = std::thread::Builder::new()
        .name("other".into())
        .spawn(|| asyncio::get_event_loop().unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    assert_runtime_error(err, "There is no current event loop in thread 'other'.");

    // A closed current loop is still returned, as in CPython.
    loop_.close().unwrap();
    assert!(asyncio::get_event_loop().unwrap().ptr_eq(&loop_));

    asyncio::set_event_loop(None).unwrap();
    assert_runtime_error(
        asyncio::get_event_loop().unwrap_err(),
        &no_current_loop_message(),
    );
}

#[test]
fn get_event_loop_prefers_the_running_loop() {
    let _guard = policy_lock();
    let _restore = Restore;
    let current = asyncio::new_event_loop().unwrap();
    asyncio::set_event_loop(Some(current.clone())).unwrap();
    let running = asyncio::new_event_loop().unwrap();
    let r = running.clone();
    let got_running = running
        .run_until_complete(async move { Ok(asyncio::get_event_loop()?.ptr_eq(&r)) })
        .unwrap();
    assert!(got_running);
    // Outside, the current loop again.
    assert!(asyncio::get_event_loop().unwrap().ptr_eq(&current));
    running.close().unwrap();
    current.close().unwrap();
}

#[test]
fn get_event_loop_inside_a_running_loop_needs_no_current_loop() {
    let _guard = policy_lock();
    let _restore = Restore;
    asyncio::set_event_loop(None).unwrap();
    let loop_ = asyncio::new_event_loop().unwrap();
    let l = loop_.clone();
    let same = loop_
        .run_until_complete(async move { Ok(asyncio::get_event_loop()?.ptr_eq(&l)) })
        .unwrap();
    assert!(same);
    loop_.close().unwrap();
}

// ===== new_event_loop =====

#[test]
fn new_event_loop_makes_a_fresh_tokio_loop() {
    let _guard = policy_lock();
    let _restore = Restore;
    asyncio::set_event_loop(None).unwrap();
    let a = asyncio::new_event_loop().unwrap();
    let b = asyncio::new_event_loop().unwrap();
    assert!(!a.ptr_eq(&b));
    assert!(a.implementation::<TokioEventLoop>().is_some());
    assert!(!a.is_running() && !a.is_closed());
    // CPython: <_UnixSelectorEventLoop running=False closed=False debug=False>
    a.set_debug(false);
    assert_eq!(
        format!("{a:?}"),
        "<TokioEventLoop running=False closed=False debug=False>"
    );
    // Not made current.
    assert!(asyncio::get_event_loop().is_err());
    a.close().unwrap();
    assert_eq!(
        format!("{a:?}"),
        "<TokioEventLoop running=False closed=True debug=False>"
    );
    b.close().unwrap();
}

#[test]
fn tokio_apis_work_inside_the_loop() {
    let _guard = policy_lock();
    let loop_ = new_loop();
    let value = loop_
        .run_until_complete(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let local = tokio::task::spawn_local(async { 21 * 2 });
            Ok(local.await.unwrap())
        })
        .unwrap();
    assert_eq!(value, 42);
    loop_.close().unwrap();
}

// ===== policies =====

/// A policy delegating to the default one and counting calls.
#[derive(Default)]
struct CountingPolicy {
    base: DefaultEventLoopPolicy,
    new_calls: AtomicUsize,
    get_calls: AtomicUsize,
    set_calls: AtomicUsize,
}

impl AbstractEventLoopPolicy for CountingPolicy {
    fn get_event_loop(&self) -> asyncio::Result<EventLoop> {
        self.get_calls.fetch_add(1, Ordering::SeqCst);
        self.base.get_event_loop()
    }

    fn set_event_loop(&self, loop_: Option<EventLoop>) -> asyncio::Result<()> {
        self.set_calls.fetch_add(1, Ordering::SeqCst);
        self.base.set_event_loop(loop_)
    }

    fn new_event_loop(&self) -> asyncio::Result<EventLoop> {
        self.new_calls.fetch_add(1, Ordering::SeqCst);
        let loop_ = self.base.new_event_loop()?;
        loop_.set_debug(true); // a mark of this policy's loops
        Ok(loop_)
    }
}

#[test]
fn get_event_loop_policy_is_a_stable_default() {
    let _guard = policy_lock();
    let _restore = Restore;
    let a = asyncio::get_event_loop_policy();
    let b = asyncio::get_event_loop_policy();
    assert!(same_policy(&a, &b));
    let loop_ = a.new_event_loop().unwrap();
    assert!(loop_.implementation::<TokioEventLoop>().is_some());
    loop_.close().unwrap();
}

#[test]
fn a_custom_policy_serves_the_module_functions() {
    let _guard = policy_lock();
    let _restore = Restore;
    let policy = Arc::new(CountingPolicy::default());
    let as_dyn: Arc<dyn AbstractEventLoopPolicy> = policy.clone();
    asyncio::set_event_loop_policy(Some(as_dyn.clone()));
    assert!(same_policy(&asyncio::get_event_loop_policy(), &as_dyn));

    let loop_ = asyncio::new_event_loop().unwrap();
    assert!(loop_.get_debug(), "made by the custom policy");
    assert_eq!(policy.new_calls.load(Ordering::SeqCst), 1);

    asyncio::set_event_loop(Some(loop_.clone())).unwrap();
    assert_eq!(policy.set_calls.load(Ordering::SeqCst), 1);
    assert!(asyncio::get_event_loop().unwrap().ptr_eq(&loop_));
    assert_eq!(policy.get_calls.load(Ordering::SeqCst), 1);

    // The running loop is answered without asking the policy.
    let l = loop_.clone();
    loop_
        .run_until_complete(async move {
            assert!(asyncio::get_event_loop()?.ptr_eq(&l));
            Ok(())
        })
        .unwrap();
    assert_eq!(policy.get_calls.load(Ordering::SeqCst), 1);
    asyncio::set_event_loop(None).unwrap();
    loop_.close().unwrap();

    // asyncio.run makes its loop through the policy, sets it current while
    // it runs, and unsets it afterwards.
    let debug = asyncio::run(async { Ok(asyncio::get_running_loop()?.get_debug()) }).unwrap();
    assert!(debug);
    assert_eq!(policy.new_calls.load(Ordering::SeqCst), 2);
    assert_eq!(policy.set_calls.load(Ordering::SeqCst), 4);
    assert!(asyncio::get_event_loop().is_err());

    // None restores a default policy.
    asyncio::set_event_loop_policy(None);
    let restored = asyncio::get_event_loop_policy();
    assert!(!same_policy(&restored, &as_dyn));
    let plain = asyncio::new_event_loop().unwrap();
    assert_eq!(policy.new_calls.load(Ordering::SeqCst), 2);
    plain.close().unwrap();
}

/// A policy in the style of Python < 3.12: `get_event_loop` makes a loop.
struct ImplicitPolicy {
    base: DefaultEventLoopPolicy,
}

impl AbstractEventLoopPolicy for ImplicitPolicy {
    fn get_event_loop(&self) -> asyncio::Result<EventLoop> {
        match self.base.get_event_loop() {
            Ok(l) => Ok(l),
            Err(_) => {
                let l = self.base.new_event_loop()?;
                self.base.set_event_loop(Some(l.clone()))?;
                Ok(l)
            }
        }
    }

    fn set_event_loop(&self, loop_: Option<EventLoop>) -> asyncio::Result<()> {
        self.base.set_event_loop(loop_)
    }

    fn new_event_loop(&self) -> asyncio::Result<EventLoop> {
        self.base.new_event_loop()
    }
}

#[test]
fn get_event_loop_defers_to_the_policy() {
    let _guard = policy_lock();
    let _restore = Restore;
    asyncio::set_event_loop_policy(Some(Arc::new(ImplicitPolicy {
        base: DefaultEventLoopPolicy::new(),
    })));
    let a = asyncio::get_event_loop().unwrap();
    let b = asyncio::get_event_loop().unwrap();
    assert!(a.ptr_eq(&b));
    a.close().unwrap();
}

/// A policy whose loops cannot be made.
struct BrokenPolicy;

impl AbstractEventLoopPolicy for BrokenPolicy {
    fn get_event_loop(&self) -> asyncio::Result<EventLoop> {
        Err(Error::runtime("no loops here"))
    }

    fn set_event_loop(&self, _loop: Option<EventLoop>) -> asyncio::Result<()> {
        Ok(())
    }

    fn new_event_loop(&self) -> asyncio::Result<EventLoop> {
        Err(Error::runtime("cannot make loops"))
    }
}

#[test]
fn policy_errors_reach_the_caller() {
    let _guard = policy_lock();
    let _restore = Restore;
    asyncio::set_event_loop_policy(Some(Arc::new(BrokenPolicy)));
    assert_runtime_error(asyncio::new_event_loop().unwrap_err(), "cannot make loops");
    assert_runtime_error(asyncio::get_event_loop().unwrap_err(), "no loops here");
    assert_runtime_error(
        asyncio::run(async { Ok(()) }).unwrap_err(),
        "cannot make loops",
    );
}

#[test]
fn each_default_policy_has_its_own_current_loops() {
    let _guard = policy_lock();
    let _restore = Restore;
    let p1 = DefaultEventLoopPolicy::new();
    let p2 = DefaultEventLoopPolicy::new();
    let loop_ = p1.new_event_loop().unwrap();
    p1.set_event_loop(Some(loop_.clone())).unwrap();
    assert!(p1.get_event_loop().unwrap().ptr_eq(&loop_));
    assert_runtime_error(p2.get_event_loop().unwrap_err(), &no_current_loop_message());
    p1.set_event_loop(None).unwrap();
    loop_.close().unwrap();
}

// ===== asyncio.run / Runner =====

#[test]
fn asyncio_run_sets_and_clears_the_current_loop() {
    let _guard = policy_lock();
    let _restore = Restore;
    asyncio::set_event_loop(None).unwrap();
    let (same, closed_after) = {
        let seen: Rc<Cell<Option<bool>>> = Rc::default();
        let keep: Rc<std::cell::RefCell<Option<EventLoop>>> = Rc::default();
        let (s, k) = (seen.clone(), keep.clone());
        asyncio::run(async move {
            let running = asyncio::get_running_loop()?;
            let current = asyncio::get_event_loop_policy().get_event_loop()?;
            s.set(Some(running.ptr_eq(&current)));
            *k.borrow_mut() = Some(running);
            Ok(())
        })
        .unwrap();
        let closed = keep.borrow().as_ref().unwrap().is_closed();
        (seen.get(), closed)
    };
    assert_eq!(same, Some(true));
    assert!(closed_after);
    assert_runtime_error(
        asyncio::get_event_loop().unwrap_err(),
        &no_current_loop_message(),
    );
}

#[test]
fn asyncio_run_inside_a_running_loop_fails() {
    let _guard = policy_lock();
    let loop_ = new_loop();
    let (err_run, err_runner) = loop_
        .run_until_complete(async {
            let a = asyncio::run(async { Ok(()) }).unwrap_err();
            let b = Runner::new()
                .loop_factory(asyncio::new_event_loop)
                .run(async { Ok(()) })
                .unwrap_err();
            Ok((a, b))
        })
        .unwrap();
    assert_runtime_error(
        err_run,
        "asyncio.run() cannot be called from a running event loop",
    );
    assert_runtime_error(
        err_runner,
        "Runner.run() cannot be called from a running event loop",
    );
    loop_.close().unwrap();
}

static FACTORY_CALLS: AtomicUsize = AtomicUsize::new(0);

fn counting_factory() -> asyncio::Result<EventLoop> {
    FACTORY_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(EventLoop::new(TokioEventLoop::new()?))
}

#[test]
fn runner_with_a_loop_factory_does_not_touch_the_policy() {
    let _guard = policy_lock();
    let _restore = Restore;
    asyncio::set_event_loop(None).unwrap();
    let policy = Arc::new(CountingPolicy::default());
    asyncio::set_event_loop_policy(Some(policy.clone()));

    let made = Rc::new(Cell::new(0));
    let m = made.clone();
    let mut runner = Runner::new().loop_factory(move || {
        m.set(m.get() + 1);
        Ok(EventLoop::new(TokioEventLoop::new()?))
    });
    assert_eq!(made.get(), 0, "made lazily");
    let loop_ = runner.get_loop().unwrap();
    assert_eq!(made.get(), 1);
    let l = loop_.clone();
    let (same_running, current_err) = runner
        .run(async move {
            let running = asyncio::get_running_loop()?;
            let current = asyncio::get_event_loop_policy().get_event_loop();
            Ok((running.ptr_eq(&l), current.is_err()))
        })
        .unwrap();
    assert!(same_running);
    assert!(current_err, "the factory's loop is not made current");
    // The same loop serves a second run.
    let l = loop_.clone();
    assert!(runner
        .run(async move { Ok(asyncio::get_running_loop()?.ptr_eq(&l)) })
        .unwrap());
    assert_eq!(made.get(), 1);
    runner.close().unwrap();
    assert!(loop_.is_closed());
    assert_eq!(policy.new_calls.load(Ordering::SeqCst), 0);
    assert_eq!(policy.set_calls.load(Ordering::SeqCst), 0);
}

#[test]
fn runner_lifecycle() {
    let _guard = policy_lock();
    let _restore = Restore;
    let mut runner = Runner::new().debug(true);
    assert_eq!(runner.run(async { Ok(1) }).unwrap(), 1);
    let loop_ = runner.get_loop().unwrap();
    assert!(loop_.get_debug());
    // While the runner lives, its loop is this thread's current loop.
    assert!(asyncio::get_event_loop().unwrap().ptr_eq(&loop_));
    runner.close().unwrap();
    runner.close().unwrap(); // idempotent
    assert!(loop_.is_closed());
    assert!(asyncio::get_event_loop().is_err());
    assert_runtime_error(runner.run(async { Ok(2) }).unwrap_err(), "Runner is closed");
    assert_runtime_error(runner.get_loop().unwrap_err(), "Runner is closed");

    // Closing a runner that never ran leaves it usable (CPython returns
    // early unless initialized).
    let mut fresh = Runner::new().loop_factory(counting_factory);
    fresh.close().unwrap();
    assert_eq!(fresh.run(async { Ok(3) }).unwrap(), 3);
    fresh.close().unwrap();
}

#[test]
fn runner_close_cancels_the_tasks_left() {
    let _guard = policy_lock();
    let _restore = Restore;
    let mut runner = Runner::new().loop_factory(asyncio::new_event_loop);
    let loop_ = runner.get_loop().unwrap();
    let seen = record_exceptions(&loop_);
    let saw_cancel = Rc::new(Cell::new(false));
    let s = saw_cancel.clone();
    runner
        .run(async move {
            asyncio::create_task(async move {
                let r = asyncio::sleep(3600.0).await;
                s.set(r.as_ref().is_err_and(|e| e.is_cancelled()));
                r
            })?;
            asyncio::sleep(0.0).await
        })
        .unwrap();
    runner.close().unwrap();
    assert!(saw_cancel.get());
    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
}

#[test]
fn runner_reports_errors_of_tasks_failing_during_shutdown() {
    let _guard = policy_lock();
    // CPython's _cancel_all_tasks: "unhandled exception during asyncio.run() shutdown".
    let mut runner = Runner::new().loop_factory(asyncio::new_event_loop);
    let loop_ = runner.get_loop().unwrap();
    let seen = record_exceptions(&loop_);
    runner
        .run(async {
            asyncio::create_task(async {
                let _ = asyncio::sleep(3600.0).await;
                Err::<(), _>(Error::value("failed while cancelled"))
            })?;
            asyncio::sleep(0.0).await
        })
        .unwrap();
    runner.close().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].message,
        "unhandled exception during asyncio.run() shutdown"
    );
    assert_eq!(
        seen[0].exception,
        Some((ErrorKind::ValueError, "failed while cancelled".to_owned()))
    );
    assert_eq!(seen[0].keys, ["task"]);
}

#[asyncio::test(debug = true, loop_factory = counting_factory)]
async fn the_test_macro_takes_debug_and_loop_factory() {
    let loop_ = asyncio::get_running_loop().unwrap();
    assert!(loop_.get_debug());
    assert!(loop_.implementation::<TokioEventLoop>().is_some());
    assert!(FACTORY_CALLS.load(Ordering::SeqCst) >= 1);
}
