//! `asyncio.Lock`, `Event`, `Condition`, `Semaphore`, `BoundedSemaphore`
//! and `Barrier`: CPython 3.13's `test_asyncio/test_locks.py`, test by
//! test (one module per test class, CPython's test names), then the
//! Rust-only behaviour (guards, futures dropped while waiting).
//!
//! Not ported (Python-only): `test_lock_doesnt_accept_loop_parameter`
//! (no `loop=` argument exists), and the `TypeError` halves of `test_lock`,
//! `test_lock_by_with_statement`, `test_semaphore` and `test_barrier`
//! (`await lock` / `with await lock` do not compile: the primitives are
//! not futures). `test_semaphore_value` (a negative value) cannot be
//! written: the value is a `usize`. CPython's tests that append
//! `mock.Mock()` waiters to `_waiters` use real waiting tasks here.

mod common;

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use asyncio::{
    Barrier, BoundedSemaphore, Condition, Error, ErrorKind, Event, Lock, Result, Semaphore, Task,
};
use common::repr;

// ----- helpers -----

/// CPython's `RGX_REPR`:
/// `^<(?P<class>.*?) object at (?P<address>.*?)\[(?P<extras>(set|unset|locked|unlocked|filling|draining|resetting|broken)(, value:\d)?(, waiters:\d+)?(, waiters:\d+\/\d+)?)\]>\Z`.
fn rgx_repr(r: &str) -> bool {
    let Some(rest) = r.strip_prefix('<') else {
        return false;
    };
    let Some((_class, rest)) = rest.split_once(" object at ") else {
        return false;
    };
    let Some((_address, extras)) = rest.split_once('[') else {
        return false;
    };
    let Some(extras) = extras.strip_suffix("]>") else {
        return false;
    };
    let mut parts = extras.split(", ");
    let state = parts.next().unwrap_or("");
    if ![
        "set",
        "unset",
        "locked",
        "unlocked",
        "filling",
        "draining",
        "resetting",
        "broken",
    ]
    .contains(&state)
    {
        return false;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // The optional parts, in order: value:\d, waiters:\d+, waiters:\d+/\d+.
    let mut stage = 0;
    for part in parts {
        let ok = if let Some(v) = part.strip_prefix("value:") {
            let ok = stage < 1 && v.len() == 1 && digits(v);
            stage = 1;
            ok
        } else if let Some(w) = part.strip_prefix("waiters:") {
            match w.split_once('/') {
                Some((a, b)) => {
                    let ok = stage < 3 && digits(a) && digits(b);
                    stage = 3;
                    ok
                }
                None => {
                    let ok = stage < 2 && digits(w);
                    stage = 2;
                    ok
                }
            }
        } else {
            false
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The results a test's tasks append to.
type Res<T = i32> = Rc<RefCell<Vec<T>>>;

fn res<T>() -> Res<T> {
    Rc::new(RefCell::new(Vec::new()))
}

fn got<T: Clone>(r: &Res<T>) -> Vec<T> {
    r.borrow().clone()
}

async fn sleep0() -> Result<()> {
    asyncio::sleep(0).await
}

fn spawn<T: 'static>(coro: impl std::future::Future<Output = Result<T>> + 'static) -> Task<T> {
    asyncio::create_task(coro).expect("create_task")
}

/// Python's `lock.acquire()` coroutine: acquires and keeps the lock.
fn lock_acquire(lock: &Lock) -> impl std::future::Future<Output = Result<bool>> {
    let acquire = lock.acquire();
    async move {
        acquire.await?.forget();
        Ok(true)
    }
}

/// Python's `sem.acquire()` coroutine: takes a slot and keeps it.
fn sem_acquire(sem: &Semaphore) -> impl std::future::Future<Output = Result<bool>> {
    let acquire = sem.acquire();
    async move {
        acquire.await?.forget();
        Ok(true)
    }
}

fn call_soon_cancel<T: 'static>(task: &Task<T>) {
    let t = task.clone();
    asyncio::get_running_loop()
        .unwrap()
        .call_soon(move || {
            t.cancel();
        })
        .unwrap();
}

/// Awaits `task` and returns its error.
async fn error_of<T: Clone + 'static>(task: &Task<T>) -> Error {
    match task.await {
        Ok(_) => panic!("the task succeeded"),
        Err(e) => e,
    }
}

fn assert_cancelled(e: &Error) {
    assert!(e.is_cancelled(), "expected CancelledError, got {e:?}");
}

// ===== LockTests =====

mod lock_tests {
    use super::*;

    #[asyncio::test]
    async fn test_repr() -> Result<()> {
        let lock = Lock::new();
        let r = repr(&lock);
        assert!(r.starts_with("<asyncio.locks.Lock object at 0x"), "{r}");
        assert!(r.ends_with("[unlocked]>"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        lock.acquire().await?.forget();
        let r = repr(&lock);
        assert!(r.ends_with("[locked]>"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        let waiter = spawn(lock_acquire(&lock));
        sleep0().await?;
        let r = repr(&lock);
        assert!(r.ends_with("[locked, waiters:1]>"), "{r}");
        assert!(rgx_repr(&r), "{r}");
        lock.release()?;
        waiter.await?;
        Ok(())
    }

    #[asyncio::test]
    async fn test_lock() -> Result<()> {
        // `await lock` (a TypeError in Python) does not compile.
        let lock = Lock::new();
        assert!(!lock.locked());
        Ok(())
    }

    #[asyncio::test]
    async fn test_lock_by_with_statement() -> Result<()> {
        // `with await lock` (a TypeError in Python) does not compile; the
        // primitives start unlocked.
        asyncio::sleep(0.01).await?;
        assert!(!Lock::new().locked());
        assert!(!Condition::new().locked());
        assert!(!Semaphore::default().locked());
        assert!(!BoundedSemaphore::default().locked());
        Ok(())
    }

    #[asyncio::test]
    async fn test_acquire() -> Result<()> {
        let lock = Lock::new();
        let result = res();

        lock.acquire().await?.forget();

        let c = |n: i32| {
            let (lock, result) = (lock.clone(), result.clone());
            async move {
                lock.acquire().await?.forget();
                result.borrow_mut().push(n);
                Ok(true)
            }
        };

        let t1 = spawn(c(1));
        let t2 = spawn(c(2));

        sleep0().await?;
        assert_eq!(got(&result), [] as [i32; 0]);

        lock.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [1]);

        sleep0().await?;
        assert_eq!(got(&result), [1]);

        let t3 = spawn(c(3));

        lock.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [1, 2]);

        lock.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [1, 2, 3]);

        for t in [&t1, &t2, &t3] {
            assert!(t.done());
            assert!(t.result()?);
        }
        Ok(())
    }

    #[asyncio::test]
    async fn test_acquire_cancel() -> Result<()> {
        let lock = Lock::new();
        lock.acquire().await?.forget();

        let task = spawn(lock_acquire(&lock));
        call_soon_cancel(&task);
        assert_cancelled(&error_of(&task).await);
        assert_eq!(lock._waiters_len(), 0);
        Ok(())
    }

    #[asyncio::test]
    async fn test_cancel_race() -> Result<()> {
        // Several tasks:
        // - A acquires the lock
        // - B is blocked in acquire()
        // - C is blocked in acquire()
        //
        // Now, concurrently:
        // - B is cancelled
        // - A releases the lock
        //
        // If B's waiter is marked cancelled but not yet removed from
        // _waiters, A's release() call must move on to C's waiter.
        let lock = Lock::new();

        let lockit = |blocker: Option<asyncio::Future<()>>| {
            let lock = lock.clone();
            async move {
                let _guard = lock.acquire().await?;
                if let Some(blocker) = blocker {
                    blocker.await?;
                }
                Ok(())
            }
        };

        let fa = asyncio::get_running_loop()?.create_future::<()>();
        let ta = spawn(lockit(Some(fa.clone())));
        sleep0().await?;
        assert!(lock.locked());
        let tb = spawn(lockit(None));
        sleep0().await?;
        assert_eq!(lock._waiters_len(), 1);
        let tc = spawn(lockit(None));
        sleep0().await?;
        assert_eq!(lock._waiters_len(), 2);

        // Create the race and check.
        fa.set_result(())?;
        tb.cancel();
        assert!(lock._waiters()[0].cancelled());
        sleep0().await?;
        assert!(!lock.locked());
        assert!(ta.done());
        assert!(tb.cancelled());
        tc.await
    }

    #[asyncio::test]
    async fn test_cancel_release_race() -> Result<()> {
        // Issue 32734: acquire 4 locks, cancel the second, release the
        // first, and 2 locks are taken at once.
        let loop_ = asyncio::get_running_loop()?;
        let lock = Lock::new();
        let lock_count = Rc::new(Cell::new(0));
        let call_count = Rc::new(Cell::new(0));

        let lockit = || {
            let (lock, lock_count, call_count) =
                (lock.clone(), lock_count.clone(), call_count.clone());
            async move {
                call_count.set(call_count.get() + 1);
                lock.acquire().await?.forget();
                lock_count.set(lock_count.get() + 1);
                Ok(())
            }
        };

        lock.acquire().await?.forget();

        let t1 = spawn(lockit());
        let t2 = spawn(lockit());
        let t3 = spawn(lockit());

        // Start scheduled tasks.
        sleep0().await?;

        let (t, l) = (t1.clone(), lock.clone());
        loop_.call_soon(move || {
            t.cancel();
            l.release()
        })?;
        // Wait for cancellation.
        assert_cancelled(&error_of(&t1).await);

        // Make sure only one lock was taken.
        assert_eq!(lock_count.get(), 1);
        // While 3 calls were made to lockit().
        assert_eq!(call_count.get(), 3);
        assert!(t1.cancelled() && t2.done());

        // Cleanup the task that is stuck on acquire.
        t3.cancel();
        sleep0().await?;
        assert!(t3.cancelled());
        Ok(())
    }

    #[asyncio::test]
    async fn test_finished_waiter_cancelled() -> Result<()> {
        let lock = Lock::new();

        lock.acquire().await?.forget();
        assert!(lock.locked());

        let tb = spawn(lock_acquire(&lock));
        sleep0().await?;
        assert_eq!(lock._waiters_len(), 1);

        // Create a second waiter, wake up the first, and cancel it.
        // Without the fix, the second was not woken up.
        let tc = spawn(lock_acquire(&lock));
        tb.cancel();
        lock.release()?;
        sleep0().await?;

        assert!(lock.locked());
        assert!(tb.cancelled());

        // Cleanup.
        tc.await?;
        Ok(())
    }

    #[asyncio::test]
    async fn test_release_not_acquired() -> Result<()> {
        let lock = Lock::new();
        let err = lock.release().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(err.to_string(), "Lock is not acquired.");
        Ok(())
    }

    #[asyncio::test]
    async fn test_release_no_waiters() -> Result<()> {
        let lock = Lock::new();
        lock.acquire().await?.forget();
        assert!(lock.locked());

        lock.release()?;
        assert!(!lock.locked());
        Ok(())
    }

    #[asyncio::test]
    async fn test_context_manager() -> Result<()> {
        let lock = Lock::new();
        assert!(!lock.locked());

        {
            let _guard = lock.acquire().await?;
            assert!(lock.locked());
        }

        assert!(!lock.locked());
        Ok(())
    }
}

// ===== EventTests =====

mod event_tests {
    use super::*;

    #[asyncio::test]
    async fn test_repr() -> Result<()> {
        let ev = Event::new();
        let r = repr(&ev);
        assert!(r.starts_with("<asyncio.locks.Event object at 0x"), "{r}");
        assert!(r.ends_with("[unset]>"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        ev.set();
        let r = repr(&ev);
        assert!(r.ends_with("[set]>"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        // CPython appends a mock waiter; a real one here.
        ev.clear();
        let waiter = spawn(ev.wait());
        sleep0().await?;
        let r = repr(&ev);
        assert!(r.contains("waiters:1"), "{r}");
        assert!(rgx_repr(&r), "{r}");
        ev.set();
        waiter.await?;
        Ok(())
    }

    #[asyncio::test]
    async fn test_wait() -> Result<()> {
        let ev = Event::new();
        assert!(!ev.is_set());

        let result = res();

        let c = |n: i32| {
            let (ev, result) = (ev.clone(), result.clone());
            async move {
                if ev.wait().await? {
                    result.borrow_mut().push(n);
                }
                Ok(())
            }
        };

        let t1 = spawn(c(1));
        let t2 = spawn(c(2));

        sleep0().await?;
        assert_eq!(got(&result), [] as [i32; 0]);

        let t3 = spawn(c(3));

        ev.set();
        sleep0().await?;
        assert_eq!(got(&result), [3, 1, 2]);

        for t in [&t1, &t2, &t3] {
            assert!(t.done());
            t.result()?;
        }
        Ok(())
    }

    #[asyncio::test]
    async fn test_wait_on_set() -> Result<()> {
        let ev = Event::new();
        ev.set();

        let res = ev.wait().await?;
        assert!(res);
        Ok(())
    }

    #[asyncio::test]
    async fn test_wait_cancel() -> Result<()> {
        let ev = Event::new();

        let wait = spawn(ev.wait());
        call_soon_cancel(&wait);
        assert_cancelled(&error_of(&wait).await);
        assert_eq!(ev._waiters_len(), 0);
        Ok(())
    }

    #[asyncio::test]
    async fn test_clear() -> Result<()> {
        let ev = Event::new();
        assert!(!ev.is_set());

        ev.set();
        assert!(ev.is_set());

        ev.clear();
        assert!(!ev.is_set());
        Ok(())
    }

    #[asyncio::test]
    async fn test_clear_with_waiters() -> Result<()> {
        let ev = Event::new();
        let result = res();

        let t = {
            let (ev, result) = (ev.clone(), result.clone());
            spawn(async move {
                if ev.wait().await? {
                    result.borrow_mut().push(1);
                }
                Ok(true)
            })
        };
        sleep0().await?;
        assert_eq!(got(&result), [] as [i32; 0]);

        ev.set();
        ev.clear();
        assert!(!ev.is_set());

        ev.set();
        ev.set();
        assert_eq!(ev._waiters_len(), 1);

        sleep0().await?;
        assert_eq!(got(&result), [1]);
        assert_eq!(ev._waiters_len(), 0);

        assert!(t.done());
        assert!(t.result()?);
        Ok(())
    }
}

// ===== ConditionTests =====

mod condition_tests {
    use super::*;

    /// `c1`/`c2`/`c3` of `test_wait`: acquire, wait, append (keeping the lock).
    fn waiter(cond: &Condition, result: &Res, n: i32, release: bool) -> Task<bool> {
        let (cond, result) = (cond.clone(), result.clone());
        spawn(async move {
            cond.acquire().await?.forget();
            if cond.wait().await? {
                result.borrow_mut().push(n);
                if release {
                    cond.release()?;
                }
            }
            Ok(true)
        })
    }

    #[asyncio::test]
    async fn test_wait() -> Result<()> {
        let cond = Condition::new();
        let result = res();

        let t1 = waiter(&cond, &result, 1, false);
        let t2 = waiter(&cond, &result, 2, false);
        let t3 = waiter(&cond, &result, 3, false);

        sleep0().await?;
        assert_eq!(got(&result), [] as [i32; 0]);
        assert!(!cond.locked());

        cond.acquire().await?.forget();
        cond.notify(1)?;
        sleep0().await?;
        assert_eq!(got(&result), [] as [i32; 0]);
        assert!(cond.locked());

        cond.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [1]);
        assert!(cond.locked());

        cond.notify(2)?;
        sleep0().await?;
        assert_eq!(got(&result), [1]);
        assert!(cond.locked());

        cond.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [1, 2]);
        assert!(cond.locked());

        cond.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [1, 2, 3]);
        assert!(cond.locked());

        for t in [&t1, &t2, &t3] {
            assert!(t.done());
            assert!(t.result()?);
        }
        Ok(())
    }

    #[asyncio::test]
    async fn test_wait_cancel() -> Result<()> {
        let cond = Condition::new();
        cond.acquire().await?.forget();

        let wait = spawn(cond.wait());
        call_soon_cancel(&wait);
        assert_cancelled(&error_of(&wait).await);
        assert_eq!(cond._waiters_len(), 0);
        assert!(cond.locked());
        Ok(())
    }

    #[asyncio::test]
    async fn test_wait_cancel_contested() -> Result<()> {
        let cond = Condition::new();

        cond.acquire().await?.forget();
        assert!(cond.locked());

        let wait_task = spawn(cond.wait());
        sleep0().await?;
        assert!(!cond.locked());

        // Notify, but contest the lock before cancelling.
        cond.acquire().await?.forget();
        assert!(cond.locked());
        cond.notify(1)?;
        call_soon_cancel(&wait_task);
        let c = cond.clone();
        asyncio::get_running_loop()?.call_soon(move || c.release())?;

        match (&wait_task).await {
            Ok(_) => {}
            // Should not happen, since no cancellation points.
            Err(e) => assert_cancelled(&e),
        }

        assert!(cond.locked());
        Ok(())
    }

    #[asyncio::test]
    async fn test_wait_cancel_after_notify() -> Result<()> {
        // See bpo-32841.
        let waited = Rc::new(Cell::new(false));

        let cond = Condition::new();

        let waiter = {
            let (cond, waited) = (cond.clone(), waited.clone());
            spawn(async move {
                let _guard = cond.acquire().await?;
                waited.set(true); // Make sure this area was reached.
                cond.wait().await?;
                Ok(())
            })
        };
        sleep0().await?; // Start waiting.

        cond.acquire().await?.forget();
        cond.notify(1)?;
        sleep0().await?; // Get to acquire().
        waiter.cancel();
        sleep0().await?; // Activate cancellation.
        cond.release()?;
        sleep0().await?; // Cancellation should occur.

        assert!(waiter.cancelled());
        assert!(waited.get());
        Ok(())
    }

    #[asyncio::test]
    async fn test_wait_unacquired() -> Result<()> {
        let cond = Condition::new();
        let err = cond.wait().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(err.to_string(), "cannot wait on un-acquired lock");
        Ok(())
    }

    #[asyncio::test]
    async fn test_wait_for() -> Result<()> {
        let cond = Condition::new();
        let presult = Rc::new(Cell::new(false));

        let result = res();

        let t = {
            let (cond, presult, result) = (cond.clone(), presult.clone(), result.clone());
            spawn(async move {
                cond.acquire().await?.forget();
                if cond.wait_for(|| presult.get()).await? {
                    result.borrow_mut().push(1);
                    cond.release()?;
                }
                Ok(true)
            })
        };

        sleep0().await?;
        assert_eq!(got(&result), [] as [i32; 0]);

        cond.acquire().await?.forget();
        cond.notify(1)?;
        cond.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [] as [i32; 0]);

        presult.set(true);
        cond.acquire().await?.forget();
        cond.notify(1)?;
        cond.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [1]);

        assert!(t.done());
        assert!(t.result()?);
        Ok(())
    }

    #[asyncio::test]
    async fn test_wait_for_unacquired() -> Result<()> {
        let cond = Condition::new();

        // The predicate can return true immediately (CPython returns the
        // predicate's value, `[1, 2, 3]`; a Rust predicate is a `bool`).
        let res = cond.wait_for(|| true).await?;
        assert!(res);

        let err = cond.wait_for(|| false).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(err.to_string(), "cannot wait on un-acquired lock");
        Ok(())
    }

    #[asyncio::test]
    async fn test_notify() -> Result<()> {
        let cond = Condition::new();
        let result = res();

        let t1 = waiter(&cond, &result, 1, true);
        let t2 = waiter(&cond, &result, 2, true);
        let t3 = waiter(&cond, &result, 3, true);

        sleep0().await?;
        assert_eq!(got(&result), [] as [i32; 0]);

        cond.acquire().await?.forget();
        cond.notify(1)?;
        cond.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [1]);

        cond.acquire().await?.forget();
        cond.notify(1)?;
        cond.notify(2048)?;
        cond.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [1, 2, 3]);

        for t in [&t1, &t2, &t3] {
            assert!(t.done());
            assert!(t.result()?);
        }
        Ok(())
    }

    #[asyncio::test]
    async fn test_notify_all() -> Result<()> {
        let cond = Condition::new();

        let result = res();

        let t1 = waiter(&cond, &result, 1, true);
        let t2 = waiter(&cond, &result, 2, true);

        sleep0().await?;
        assert_eq!(got(&result), [] as [i32; 0]);

        cond.acquire().await?.forget();
        cond.notify_all()?;
        cond.release()?;
        sleep0().await?;
        assert_eq!(got(&result), [1, 2]);

        for t in [&t1, &t2] {
            assert!(t.done());
            assert!(t.result()?);
        }
        Ok(())
    }

    #[test]
    fn test_notify_unacquired() {
        let cond = Condition::new();
        let err = cond.notify(1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(err.to_string(), "cannot notify on un-acquired lock");
    }

    #[test]
    fn test_notify_all_unacquired() {
        let cond = Condition::new();
        let err = cond.notify_all().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        assert_eq!(err.to_string(), "cannot notify on un-acquired lock");
    }

    #[asyncio::test]
    async fn test_repr() -> Result<()> {
        let cond = Condition::new();
        let r = repr(&cond);
        assert!(
            r.starts_with("<asyncio.locks.Condition object at 0x"),
            "{r}"
        );
        assert!(r.contains("unlocked"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        // Real waiters instead of CPython's mocks.
        let result = res();
        let t1 = waiter(&cond, &result, 1, true);
        sleep0().await?;
        cond.acquire().await?.forget();
        let r = repr(&cond);
        assert!(r.ends_with("[locked, waiters:1]>"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        cond.release()?;
        let t2 = waiter(&cond, &result, 2, true);
        sleep0().await?;
        cond.acquire().await?.forget();
        let r = repr(&cond);
        assert!(r.ends_with("[locked, waiters:2]>"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        cond.notify_all()?;
        cond.release()?;
        t1.await?;
        t2.await?;
        Ok(())
    }

    #[asyncio::test]
    async fn test_context_manager() -> Result<()> {
        let cond = Condition::new();
        assert!(!cond.locked());
        {
            let _guard = cond.acquire().await?;
            assert!(cond.locked());
        }
        assert!(!cond.locked());
        Ok(())
    }

    #[asyncio::test]
    async fn test_explicit_lock() -> Result<()> {
        async fn f(lock: Option<Lock>, cond: Option<Condition>) -> Result<()> {
            let lock = lock.unwrap_or_default();
            let cond = cond.unwrap_or_else(|| Condition::with_lock(lock.clone()));
            assert!(cond.lock().ptr_eq(&lock));
            assert!(!lock.locked());
            assert!(!cond.locked());
            {
                let _guard = cond.acquire().await?;
                assert!(lock.locked());
                assert!(cond.locked());
            }
            assert!(!lock.locked());
            assert!(!cond.locked());
            {
                let _guard = lock.acquire().await?;
                assert!(lock.locked());
                assert!(cond.locked());
            }
            assert!(!lock.locked());
            assert!(!cond.locked());
            Ok(())
        }

        // All should work in the same way.
        f(None, None).await?;
        f(Some(Lock::new()), None).await?;
        let lock = Lock::new();
        f(Some(lock.clone()), Some(Condition::with_lock(lock))).await
    }

    #[test]
    fn test_ambiguous_loops() {
        // CPython sets the private `_loop`; here the primitives are bound
        // to `other` by waiting on them there.
        let lock = Lock::new();
        let cond = Condition::new();
        let other = asyncio::new_event_loop().unwrap();
        {
            let (lock, cond) = (lock.clone(), cond.clone());
            other
                .run_until_complete(async move {
                    lock.acquire().await?.forget();
                    let t = spawn(lock_acquire(&lock));
                    sleep0().await?;
                    lock.release()?;
                    t.await?;
                    lock.release()?;

                    cond.acquire().await?.forget();
                    let w = spawn(cond.wait());
                    sleep0().await?;
                    w.cancel();
                    assert_cancelled(&error_of(&w).await);
                    cond.release()
                })
                .unwrap();
        }
        other.close().unwrap();

        asyncio::run(async move {
            // wrong_loop_in_lock
            {
                let _guard = lock.acquire().await?; // the fast path: no loop involved
                let cond = Condition::with_lock(lock.clone());
                // Waiting on the lock discovers the mismatch.
                let err = cond.acquire().await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::RuntimeError);
                let msg = err.to_string();
                assert!(msg.starts_with("<asyncio.locks.Lock object at 0x"), "{msg}");
                assert!(
                    msg.ends_with(" [locked]> is bound to a different event loop"),
                    "{msg}"
                );
            }
            // wrong_loop_in_cond
            {
                let _guard = cond.acquire().await?;
                let err = cond.wait().await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::RuntimeError);
                let msg = err.to_string();
                assert!(
                    msg.starts_with("<asyncio.locks.Condition object at 0x"),
                    "{msg}"
                );
                assert!(msg.ends_with("is bound to a different event loop"), "{msg}");
                // The lock was not released.
                assert!(cond.locked());
            }
            Ok(())
        })
        .unwrap();
    }

    #[asyncio::test]
    async fn test_timeout_in_block() -> Result<()> {
        let condition = Condition::new();
        let _guard = condition.acquire().await?;
        let err = asyncio::wait_for(condition.wait(), 0.05).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimeoutError);
        // The wait took the lock back.
        assert!(condition.locked());
        Ok(())
    }

    #[asyncio::test]
    async fn test_cancelled_error_wakeup() -> Result<()> {
        // A cancelled error, received when awaiting wakeup, is re-raised
        // unmodified.
        let wake = Rc::new(Cell::new(false));
        let raised: Rc<RefCell<Option<Error>>> = Rc::default();
        let cond = Condition::new();

        let task = {
            let (cond, wake, raised) = (cond.clone(), wake.clone(), raised.clone());
            spawn(async move {
                let _guard = cond.acquire().await?;
                let err = cond.wait_for(|| wake.get()).await.unwrap_err();
                assert_cancelled(&err);
                *raised.borrow_mut() = Some(err.clone());
                Err::<(), _>(err)
            })
        };
        sleep0().await?;
        // Task is waiting on the condition, cancel it there.
        task.cancel_with_message("foo");
        let err = error_of(&task).await;
        assert_cancelled(&err);
        assert_eq!(err.message(), "foo");
        // We should have got the _same_ exception instance as the one
        // originally raised.
        assert!(err.ptr_eq(raised.borrow().as_ref().unwrap()));
        Ok(())
    }

    #[asyncio::test]
    async fn test_cancelled_error_re_aquire() -> Result<()> {
        // A cancelled error, received when re-acquiring the lock, is
        // re-raised unmodified.
        let wake = Rc::new(Cell::new(false));
        let raised: Rc<RefCell<Option<Error>>> = Rc::default();
        let cond = Condition::new();

        let task = {
            let (cond, wake, raised) = (cond.clone(), wake.clone(), raised.clone());
            spawn(async move {
                let _guard = cond.acquire().await?;
                let err = cond.wait_for(|| wake.get()).await.unwrap_err();
                assert_cancelled(&err);
                *raised.borrow_mut() = Some(err.clone());
                Err::<(), _>(err)
            })
        };
        sleep0().await?;
        // Task is waiting on the condition.
        cond.acquire().await?.forget();
        wake.set(true);
        cond.notify(1)?;
        sleep0().await?;
        // Task is now trying to re-acquire the lock, cancel it there.
        task.cancel_with_message("foo");
        cond.release()?;
        let err = error_of(&task).await;
        assert_cancelled(&err);
        assert_eq!(err.message(), "foo");
        assert!(err.ptr_eq(raised.borrow().as_ref().unwrap()));
        Ok(())
    }

    /// The consumer of `test_cancelled_wakeup*`.
    fn consumer(condition: &Condition, state: &Rc<Cell<i32>>) -> Task<()> {
        let (condition, state) = (condition.clone(), state.clone());
        spawn(async move {
            let _guard = condition.acquire().await?;
            loop {
                condition.wait_for(|| state.get() != 0).await?;
                if state.get() < 0 {
                    return Ok(());
                }
                state.set(state.get() - 1);
            }
        })
    }

    /// `async with asyncio.timeout(0.01): await condition.wait_for(...)`,
    /// `TimeoutError` ignored.
    async fn wait_briefly_for_zero(condition: &Condition, state: &Rc<Cell<i32>>) -> Result<()> {
        let s = state.clone();
        match asyncio::timeout(0.01)
            .run(condition.wait_for(move || s.get() == 0))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_timeout() => Ok(()),
            Err(e) => Err(e),
        }
    }

    #[asyncio::test]
    async fn test_cancelled_wakeup() -> Result<()> {
        // A task cancelled at the "same" time as it is woken up by
        // notify() does not lose the wakeup; here the cancel comes while
        // the task awaits its initial wakeup.
        let condition = Condition::new();
        let state = Rc::new(Cell::new(0));

        // Create two consumers.
        let c = [consumer(&condition, &state), consumer(&condition, &state)];
        // Wait for them to settle.
        sleep0().await?;
        {
            let _guard = condition.acquire().await?;
            // Produce one item and wake up one.
            state.set(state.get() + 1);
            condition.notify(1)?;

            // Cancel it while it is awaiting to be run.
            c[0].cancel();

            // Now wait for the item to be consumed: if it isn't, our
            // notify() didn't take hold because it raced with a cancel().
            wait_briefly_for_zero(&condition, &state).await?;
            assert_eq!(state.get(), 0);

            // Clean up.
            state.set(-1);
            condition.notify_all()?;
        }
        (&c[1]).await
    }

    #[asyncio::test]
    async fn test_cancelled_wakeup_relock() -> Result<()> {
        // The same, with the cancel coming while the task re-acquires the
        // lock.
        let condition = Condition::new();
        let state = Rc::new(Cell::new(0));

        let c = [consumer(&condition, &state), consumer(&condition, &state)];
        sleep0().await?;
        {
            let _guard = condition.acquire().await?;
            state.set(state.get() + 1);
            condition.notify(1)?;

            // The target task wakes up and settles on re-acquiring the lock.
            sleep0().await?;

            // Cancel it while awaiting the lock.
            c[0].cancel();

            wait_briefly_for_zero(&condition, &state).await?;
            assert_eq!(state.get(), 0);

            state.set(-1);
            condition.notify_all()?;
        }
        (&c[1]).await
    }
}

// ===== SemaphoreTests =====

mod semaphore_tests {
    use super::*;

    #[test]
    fn test_initial_value_zero() {
        let sem = Semaphore::new(0);
        assert!(sem.locked());
    }

    #[asyncio::test]
    async fn test_repr() -> Result<()> {
        let sem = Semaphore::default();
        let r = repr(&sem);
        assert!(
            r.starts_with("<asyncio.locks.Semaphore object at 0x"),
            "{r}"
        );
        assert!(r.ends_with("[unlocked, value:1]>"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        sem.acquire().await?.forget();
        let r = repr(&sem);
        assert!(r.ends_with("[locked]>"), "{r}");
        assert!(!r.contains("waiters"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        // Real waiters instead of CPython's mocks.
        let t1 = spawn(sem_acquire(&sem));
        sleep0().await?;
        let r = repr(&sem);
        assert!(r.contains("waiters:1"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        let t2 = spawn(sem_acquire(&sem));
        sleep0().await?;
        let r = repr(&sem);
        assert!(r.contains("waiters:2"), "{r}");
        assert!(rgx_repr(&r), "{r}");

        sem.release();
        sem.release();
        t1.await?;
        t2.await?;

        let bounded = BoundedSemaphore::new(2);
        let r = repr(&bounded);
        assert!(
            r.starts_with("<asyncio.locks.BoundedSemaphore object at 0x"),
            "{r}"
        );
        assert!(r.ends_with("[unlocked, value:2]>"), "{r}");
        Ok(())
    }

    #[asyncio::test]
    async fn test_semaphore() -> Result<()> {
        // `await sem` (a TypeError in Python) does not compile.
        let sem = Semaphore::default();
        assert_eq!(sem._value(), 1);
        assert!(!sem.locked());
        assert_eq!(sem._value(), 1);
        Ok(())
    }

    #[asyncio::test]
    async fn test_acquire() -> Result<()> {
        let sem = Semaphore::new(3);
        let result = res();

        sem.acquire().await?.forget();
        sem.acquire().await?.forget();
        assert!(!sem.locked());

        let c = |n: i32| {
            let (sem, result) = (sem.clone(), result.clone());
            async move {
                sem.acquire().await?.forget();
                result.borrow_mut().push(n);
                Ok(true)
            }
        };

        let t1 = spawn(c(1));
        let t2 = spawn(c(2));
        let t3 = spawn(c(3));

        sleep0().await?;
        assert_eq!(got(&result), [1]);
        assert!(sem.locked());
        assert_eq!(sem._waiters_len(), 2);
        assert_eq!(sem._value(), 0);

        let t4 = spawn(c(4));

        sem.release();
        sem.release();
        assert_eq!(sem._value(), 0);

        sleep0().await?;
        assert_eq!(sem._value(), 0);
        assert_eq!(got(&result).len(), 3);
        assert!(sem.locked());
        assert_eq!(sem._waiters_len(), 1);
        assert_eq!(sem._value(), 0);

        assert!(t1.done());
        assert!(t1.result()?);
        let race_tasks = [t2, t3, t4];
        let done_tasks = race_tasks
            .iter()
            .filter(|t| t.done() && t.result().unwrap_or(false))
            .count();
        assert_eq!(done_tasks, 2);

        // Cleanup locked semaphore.
        sem.release();
        asyncio::gather(race_tasks).await?;
        Ok(())
    }

    #[asyncio::test]
    async fn test_acquire_cancel() -> Result<()> {
        let sem = Semaphore::default();
        sem.acquire().await?.forget();

        let acquire = spawn(sem_acquire(&sem));
        call_soon_cancel(&acquire);
        assert_cancelled(&error_of(&acquire).await);
        // CPython: no waiters, or only done ones; here the waiter is gone.
        assert_eq!(sem._waiters_len(), 0);
        Ok(())
    }

    #[asyncio::test]
    async fn test_acquire_cancel_before_awoken() -> Result<()> {
        let sem = Semaphore::new(0);

        let t1 = spawn(sem_acquire(&sem));
        let t2 = spawn(sem_acquire(&sem));
        let t3 = spawn(sem_acquire(&sem));
        let t4 = spawn(sem_acquire(&sem));

        sleep0().await?;

        t1.cancel();
        t2.cancel();
        sem.release();

        sleep0().await?;
        sleep0().await?;
        let num_done = [&t3, &t4].iter().filter(|t| t.done()).count();
        assert_eq!(num_done, 1);
        assert!(t3.done());
        assert!(!t4.done());

        t3.cancel();
        t4.cancel();
        sleep0().await
    }

    #[asyncio::test]
    async fn test_acquire_hang() -> Result<()> {
        let sem = Semaphore::new(0);

        let t1 = spawn(sem_acquire(&sem));
        let t2 = spawn(sem_acquire(&sem));
        sleep0().await?;

        t1.cancel();
        sem.release();
        sleep0().await?;
        sleep0().await?;
        assert!(sem.locked());
        assert!(t2.done());
        Ok(())
    }

    #[asyncio::test]
    async fn test_acquire_no_hang() -> Result<()> {
        let sem = Semaphore::new(1);
        let t2_slot: Rc<RefCell<Option<Task<()>>>> = Rc::default();

        let c1 = {
            let (sem, t2_slot) = (sem.clone(), t2_slot.clone());
            async move {
                {
                    let _guard = sem.acquire().await?;
                    sleep0().await?;
                }
                if let Some(t2) = t2_slot.borrow().as_ref() {
                    t2.cancel();
                }
                Ok(())
            }
        };

        let c2 = {
            let sem = sem.clone();
            async move {
                let _guard = sem.acquire().await?;
                Err(Error::runtime("c2 must not get the semaphore"))
            }
        };

        let t1 = spawn(c1);
        let t2 = spawn(c2);
        *t2_slot.borrow_mut() = Some(t2.clone());

        let results = asyncio::gather([t1, t2]).return_exceptions().await?;
        assert!(results[0].is_ok());
        assert_cancelled(results[1].as_ref().unwrap_err());

        asyncio::wait_for(sem.acquire(), 1.0).await?.forget();
        Ok(())
    }

    #[test]
    fn test_release_not_acquired() {
        let sem = BoundedSemaphore::default();
        let err = sem.release().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        assert_eq!(err.to_string(), "BoundedSemaphore released too many times");
    }

    #[asyncio::test]
    async fn test_release_no_waiters() -> Result<()> {
        let sem = Semaphore::default();
        sem.acquire().await?.forget();
        assert!(sem.locked());

        sem.release();
        assert!(!sem.locked());
        Ok(())
    }

    #[asyncio::test]
    async fn test_acquire_fifo_order() -> Result<()> {
        let sem = Semaphore::new(1);
        let result: Res<String> = res();

        let coro = |tag: &'static str| {
            let (sem, result) = (sem.clone(), result.clone());
            async move {
                sem.acquire().await?.forget();
                result.borrow_mut().push(format!("{tag}_1"));
                asyncio::sleep(0.01).await?;
                sem.release();

                sem.acquire().await?.forget();
                result.borrow_mut().push(format!("{tag}_2"));
                asyncio::sleep(0.01).await?;
                sem.release();
                Ok(())
            }
        };

        let tg = asyncio::TaskGroup::new();
        tg.run(async {
            tg.create_task(coro("c1"))?;
            tg.create_task(coro("c2"))?;
            tg.create_task(coro("c3"))?;
            Ok(())
        })
        .await?;

        assert_eq!(
            got(&result),
            ["c1_1", "c2_1", "c3_1", "c1_2", "c2_2", "c3_2"]
        );
        Ok(())
    }

    #[asyncio::test]
    async fn test_acquire_fifo_order_2() -> Result<()> {
        let sem = Semaphore::new(1);
        let result = res();

        let c1 = {
            let (sem, result) = (sem.clone(), result.clone());
            async move {
                sem.acquire().await?.forget();
                result.borrow_mut().push(1);
                Ok(true)
            }
        };

        let c2 = {
            let (sem, result) = (sem.clone(), result.clone());
            async move {
                sem.acquire().await?.forget();
                result.borrow_mut().push(2);
                sem.release();
                sem.acquire().await?.forget();
                result.borrow_mut().push(4);
                Ok(true)
            }
        };

        let c3 = {
            let (sem, result) = (sem.clone(), result.clone());
            async move {
                sem.acquire().await?.forget();
                result.borrow_mut().push(3);
                Ok(true)
            }
        };

        let t1 = spawn(c1);
        let t2 = spawn(c2);
        let t3 = spawn(c3);

        sleep0().await?;

        sem.release();
        sem.release();

        asyncio::gather([t1, t2, t3]).await?;
        assert_eq!(got(&result), [1, 2, 3, 4]);
        Ok(())
    }

    #[asyncio::test]
    async fn test_acquire_fifo_order_3() -> Result<()> {
        let sem = Semaphore::new(0);
        let result = res();

        let c = |n: i32| {
            let (sem, result) = (sem.clone(), result.clone());
            async move {
                sem.acquire().await?.forget();
                result.borrow_mut().push(n);
                Ok(true)
            }
        };

        let t1 = spawn(c(1));
        let t2 = spawn(c(2));
        let t3 = spawn(c(3));

        sleep0().await?;

        t1.cancel();

        sleep0().await?;

        sem.release();
        sem.release();

        asyncio::gather([t1, t2, t3]).return_exceptions().await?;
        assert_eq!(got(&result), [2, 3]);
        Ok(())
    }

    #[asyncio::test]
    async fn test_acquire_fifo_order_4() -> Result<()> {
        // A successful `acquire()` wakes up multiple tasks that were
        // waiting in the semaphore queue due to FIFO rules.
        let sem = Semaphore::new(0);
        let result = res();
        let t4: Rc<RefCell<Option<Task<bool>>>> = Rc::default();

        let c4 = |result: Res| async move {
            result.borrow_mut().push(4);
            Ok(true)
        };

        let c1 = {
            let (sem, result, t4) = (sem.clone(), result.clone(), t4.clone());
            async move {
                // The first task immediately waits for the semaphore; it
                // will be awoken by c2.
                assert_eq!(sem._value(), 0);
                sem.acquire().await?.forget();
                // We should have woken up all waiting tasks now.
                assert_eq!(sem._value(), 0);
                // Create a fourth task. It should run after c3, not c2.
                *t4.borrow_mut() = Some(spawn(c4(result.clone())));
                result.borrow_mut().push(1);
                Ok(true)
            }
        };

        let c2 = {
            let (sem, result) = (sem.clone(), result.clone());
            async move {
                // The second task begins by releasing the semaphore three
                // times, for c1, c2, and c3.
                sem.release();
                sem.release();
                sem.release();
                assert_eq!(sem._value(), 2);
                // It is locked, because c1 hasn't woken up yet.
                assert!(sem.locked());
                sem.acquire().await?.forget();
                result.borrow_mut().push(2);
                Ok(true)
            }
        };

        let c3 = {
            let (sem, result) = (sem.clone(), result.clone());
            async move {
                sem.acquire().await?.forget();
                assert!(sem.locked());
                result.borrow_mut().push(3);
                Ok(true)
            }
        };

        let t1 = spawn(c1);
        let t2 = spawn(c2);
        let t3 = spawn(c3);

        sleep0().await?;
        // Three tasks are in the queue, the first hasn't woken up yet.
        assert_eq!(sem._value(), 2);
        assert_eq!(sem._waiters_len(), 3);
        sleep0().await?;

        let t4 = t4.borrow().clone().expect("c1 created t4");
        asyncio::gather([t1, t2, t3, t4]).await?;
        assert_eq!(got(&result), [1, 2, 3, 4]);
        Ok(())
    }
}

// ===== BarrierTests =====

mod barrier_tests {
    use super::*;

    const N: usize = 5;

    fn make_tasks<T: 'static, F>(n: usize, coro: impl Fn() -> F) -> Vec<Task<T>>
    where
        F: std::future::Future<Output = Result<T>> + 'static,
    {
        (0..n).map(|_| spawn(coro())).collect()
    }

    async fn gather_tasks<T: Clone + 'static, F>(
        n: usize,
        coro: impl Fn() -> F,
    ) -> Result<(Vec<T>, Vec<Task<T>>)>
    where
        F: std::future::Future<Output = Result<T>> + 'static,
    {
        let tasks = make_tasks(n, coro);
        let res = asyncio::gather(tasks.clone()).await?;
        Ok((res, tasks))
    }

    fn broken_barrier(e: &Error) -> bool {
        e.kind() == ErrorKind::BrokenBarrierError
    }

    #[asyncio::test]
    async fn test_barrier() -> Result<()> {
        // `await barrier` (a TypeError in Python) does not compile.
        let barrier = Barrier::new(N)?;
        assert!(repr(&barrier).contains("filling"));
        Ok(())
    }

    #[asyncio::test]
    async fn test_repr() -> Result<()> {
        let barrier = Barrier::new(N)?;

        let r = repr(&barrier);
        assert!(r.starts_with("<asyncio.locks.Barrier object at 0x"), "{r}");
        assert!(r.ends_with(" [filling, waiters:0/5]>"), "{r}");
        assert!(rgx_repr(&r), "{r}");
        assert!(r.contains("filling"));

        let mut waiters = Vec::new();
        let wait = |barrier: &Barrier| {
            let w = barrier.wait();
            async move {
                w.await?;
                Ok(())
            }
        };

        let incr = 2;
        for _ in 0..incr {
            waiters.push(spawn(wait(&barrier)));
        }
        sleep0().await?;

        let r = repr(&barrier);
        assert!(rgx_repr(&r), "{r}");
        assert!(r.contains(&format!("waiters:{incr}/{N}")), "{r}");
        assert!(r.contains("filling"), "{r}");

        // Create the missing waiters.
        for _ in 0..(barrier.parties() - barrier.n_waiting()) {
            waiters.push(spawn(wait(&barrier)));
        }
        sleep0().await?;

        let r = repr(&barrier);
        assert!(rgx_repr(&r), "{r}");
        assert!(r.contains("draining"), "{r}");

        // Add a part of waiters.
        for _ in 0..incr {
            waiters.push(spawn(wait(&barrier)));
        }
        sleep0().await?;
        // And reset.
        barrier.reset().await?;

        let r = repr(&barrier);
        assert!(rgx_repr(&r), "{r}");
        assert!(r.contains("resetting"), "{r}");

        // Add a part of waiters again.
        for _ in 0..incr {
            waiters.push(spawn(wait(&barrier)));
        }
        sleep0().await?;
        // And abort.
        barrier.abort().await?;

        let r = repr(&barrier);
        assert!(rgx_repr(&r), "{r}");
        assert!(r.ends_with(" [broken]>"), "{r}");
        assert!(barrier.broken());

        // Suppress unhandled exceptions.
        asyncio::gather(waiters).return_exceptions().await?;
        Ok(())
    }

    #[asyncio::test]
    async fn test_barrier_parties() -> Result<()> {
        let err = Barrier::new(0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        assert_eq!(err.to_string(), "parties must be > 0");
        // Barrier(-4) cannot be written: `parties` is a `usize`.
        assert_eq!(Barrier::new(N)?.parties(), N);
        Ok(())
    }

    #[asyncio::test]
    async fn test_context_manager() -> Result<()> {
        const N: usize = 3;
        let barrier = Barrier::new(N)?;
        let results: Res<usize> = res();

        let coro = || {
            let (barrier, results) = (barrier.clone(), results.clone());
            async move {
                let i = barrier.wait().await?; // async with barrier as i:
                results.borrow_mut().push(i);
                Ok(())
            }
        };

        gather_tasks(N, coro).await?;

        let mut sorted = got(&results);
        sorted.sort();
        assert_eq!(sorted, (0..N).collect::<Vec<_>>());
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_filling_one_task() -> Result<()> {
        let barrier = Barrier::new(1)?;

        let f = || async {
            let _i = barrier.wait().await?;
            Ok::<_, Error>(true)
        };

        let ret = f().await?;

        assert!(ret);
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_filling_one_task_twice() -> Result<()> {
        let barrier = Barrier::new(1)?;

        let t1 = spawn(barrier.wait());
        sleep0().await?;
        assert_eq!(barrier.n_waiting(), 0);

        let t2 = spawn(barrier.wait());
        sleep0().await?;

        assert_eq!(t1.result()?, t2.result()?);
        assert_eq!(t1.done(), t2.done());

        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_filling_task_by_task() -> Result<()> {
        let barrier = Barrier::new(3)?;

        let t1 = spawn(barrier.wait());
        sleep0().await?;
        assert_eq!(barrier.n_waiting(), 1);
        assert!(repr(&barrier).contains("filling"));

        let t2 = spawn(barrier.wait());
        sleep0().await?;
        assert_eq!(barrier.n_waiting(), 2);
        assert!(repr(&barrier).contains("filling"));

        let t3 = spawn(barrier.wait());
        sleep0().await?;

        asyncio::wait([t1, t2, t3]).await?;

        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_filling_tasks_wait_twice() -> Result<()> {
        let barrier = Barrier::new(N)?;
        let results: Res<bool> = res();

        let coro = || {
            let (barrier, results) = (barrier.clone(), results.clone());
            async move {
                barrier.wait().await?;
                results.borrow_mut().push(true);

                barrier.wait().await?;
                results.borrow_mut().push(false);
                Ok(())
            }
        };

        gather_tasks(N, coro).await?;

        let results = got(&results);
        assert_eq!(results.len(), N * 2);
        assert_eq!(results.iter().filter(|r| **r).count(), N);
        assert_eq!(results.iter().filter(|r| !**r).count(), N);

        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_filling_tasks_check_return_value() -> Result<()> {
        let barrier = Barrier::new(N)?;
        let results1: Res<bool> = res();
        let results2: Res<bool> = res();

        let coro = || {
            let (barrier, results1, results2) =
                (barrier.clone(), results1.clone(), results2.clone());
            async move {
                barrier.wait().await?;
                results1.borrow_mut().push(true);

                let i = barrier.wait().await?;
                results2.borrow_mut().push(true);
                Ok(i)
            }
        };

        let (mut res, _) = gather_tasks(N, coro).await?;

        assert_eq!(got(&results1).len(), N);
        assert!(got(&results1).iter().all(|r| *r));
        assert_eq!(got(&results2).len(), N);
        assert!(got(&results2).iter().all(|r| *r));
        res.sort();
        assert_eq!(res, (0..N).collect::<Vec<_>>());

        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_draining_state() -> Result<()> {
        let barrier = Barrier::new(N)?;
        let results: Res<bool> = res();

        let coro = || {
            let (barrier, results) = (barrier.clone(), results.clone());
            async move {
                barrier.wait().await?;
                // The barrier state changes to filling for the last task's release.
                results
                    .borrow_mut()
                    .push(repr(&barrier).contains("draining"));
                Ok(())
            }
        };

        gather_tasks(N, coro).await?;

        let results = got(&results);
        assert_eq!(results.len(), N);
        assert!(!results[N - 1]);
        assert!(results[..N - 1].iter().all(|r| *r));

        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_blocking_tasks_while_draining() -> Result<()> {
        let rewait = 2;
        let barrier = Barrier::new(N)?;
        let barrier_nowaiting = Barrier::new(N - rewait)?;
        let rewait_n = Rc::new(Cell::new(rewait));

        let coro = || {
            let (barrier, barrier_nowaiting, rewait_n) =
                (barrier.clone(), barrier_nowaiting.clone(), rewait_n.clone());
            async move {
                // First time waiting.
                barrier.wait().await?;

                // After waiting once for all tasks.
                if rewait_n.get() > 0 {
                    rewait_n.set(rewait_n.get() - 1);
                    // Wait again only for rewait tasks.
                    barrier.wait().await?;
                } else {
                    // Wait for the end of the draining state.
                    barrier_nowaiting.wait().await?;
                    // Wait for the other waiting tasks.
                    barrier.wait().await?;
                }
                Ok(())
            }
        };

        // A success means that barrier_nowaiting was waited for exactly
        // N-rewait=3 times.
        gather_tasks(N, coro).await?;
        Ok(())
    }

    #[asyncio::test]
    async fn test_filling_tasks_cancel_one() -> Result<()> {
        const N: usize = 3;
        let barrier = Barrier::new(N)?;
        let results: Res<bool> = res();

        let coro = || {
            let (barrier, results) = (barrier.clone(), results.clone());
            async move {
                barrier.wait().await?;
                results.borrow_mut().push(true);
                Ok(())
            }
        };

        let t1 = spawn(coro());
        sleep0().await?;
        assert_eq!(barrier.n_waiting(), 1);

        let t2 = spawn(coro());
        sleep0().await?;
        assert_eq!(barrier.n_waiting(), 2);

        t1.cancel();
        sleep0().await?;
        assert_eq!(barrier.n_waiting(), 1);
        assert_cancelled(&error_of(&t1).await);
        assert!(t1.cancelled());

        let t3 = spawn(coro());
        sleep0().await?;
        assert_eq!(barrier.n_waiting(), 2);

        let t4 = spawn(coro());
        asyncio::gather([t2, t3, t4]).await?;

        assert_eq!(got(&results).len(), N);
        assert!(got(&results).iter().all(|r| *r));

        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_reset_barrier() -> Result<()> {
        let barrier = Barrier::new(1)?;

        spawn(barrier.reset());
        sleep0().await?;

        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_reset_barrier_while_tasks_waiting() -> Result<()> {
        let barrier = Barrier::new(N)?;
        let results: Res<bool> = res();

        let coro = || {
            let (barrier, results) = (barrier.clone(), results.clone());
            async move {
                match barrier.wait().await {
                    Err(e) if broken_barrier(&e) => results.borrow_mut().push(true),
                    other => {
                        other?;
                    }
                }
                Ok(())
            }
        };

        // N-1 tasks waiting on a barrier with N parties.
        let tasks = make_tasks(N - 1, coro);
        sleep0().await?;

        // Reset the barrier.
        spawn(barrier.reset());
        asyncio::gather(tasks).await?;

        assert_eq!(got(&results).len(), N - 1);
        assert!(got(&results).iter().all(|r| *r));
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!repr(&barrier).contains("resetting"));
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_reset_barrier_when_tasks_half_draining() -> Result<()> {
        let barrier = Barrier::new(N)?;
        let results1: Res<bool> = res();
        let rest_of_tasks = N / 2;

        let coro = || {
            let (barrier, results1) = (barrier.clone(), results1.clone());
            async move {
                match barrier.wait().await {
                    // Catch the waiting tasks here.
                    Err(e) if broken_barrier(&e) => results1.borrow_mut().push(true),
                    Err(e) => return Err(e),
                    Ok(_) => {
                        // Here a drained task is outside the barrier.
                        if rest_of_tasks == barrier._count() {
                            // Tasks outside the barrier.
                            barrier.reset().await?;
                        }
                    }
                }
                Ok(())
            }
        };

        gather_tasks(N, coro).await?;

        assert_eq!(got(&results1), vec![true; rest_of_tasks]);
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!repr(&barrier).contains("resetting"));
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_reset_barrier_when_tasks_half_draining_half_blocking() -> Result<()> {
        let barrier = Barrier::new(N)?;
        let results1: Res<bool> = res();
        let results2: Res<bool> = res();
        let blocking_tasks = N / 2;
        let count = Rc::new(Cell::new(0));

        let coro = || {
            let (barrier, results1, results2, count) = (
                barrier.clone(),
                results1.clone(),
                results2.clone(),
                count.clone(),
            );
            async move {
                match barrier.wait().await {
                    Err(e) if broken_barrier(&e) => {
                        // Here catch the still waiting tasks.
                        results1.borrow_mut().push(true);

                        // So now wait again to reach nb_parties.
                        barrier.wait().await?;
                    }
                    Err(e) => return Err(e),
                    Ok(_) => {
                        count.set(count.get() + 1);
                        if count.get() > blocking_tasks {
                            // Reset now: raise BrokenBarrierError for waiting tasks.
                            barrier.reset().await?;

                            // So now wait again to reach nb_parties.
                            barrier.wait().await?;
                        } else {
                            match barrier.wait().await {
                                // Here no catch - blocked tasks go to wait.
                                Err(e) if broken_barrier(&e) => results2.borrow_mut().push(true),
                                other => {
                                    other?;
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
        };

        gather_tasks(N, coro).await?;

        assert_eq!(got(&results1), vec![true; blocking_tasks]);
        assert_eq!(got(&results2), Vec::<bool>::new());
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!repr(&barrier).contains("resetting"));
        assert!(!barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_reset_barrier_while_tasks_waiting_and_waiting_again() -> Result<()> {
        let barrier = Barrier::new(N)?;
        let results1: Res<bool> = res();
        let results2: Res<bool> = res();

        let coro1 = || {
            let (barrier, results1, results2) =
                (barrier.clone(), results1.clone(), results2.clone());
            async move {
                let first = match barrier.wait().await {
                    Err(e) if broken_barrier(&e) => {
                        results1.borrow_mut().push(true);
                        Ok(())
                    }
                    other => other.map(|_| ()),
                };
                // finally:
                barrier.wait().await?;
                results2.borrow_mut().push(true);
                first
            }
        };

        let coro2 = {
            let (barrier, results2) = (barrier.clone(), results2.clone());
            async move {
                barrier.wait().await?;
                results2.borrow_mut().push(true);
                Ok(())
            }
        };

        let tasks = make_tasks(N - 1, coro1);

        // Reset the barrier: N-1 waiting tasks raise BrokenBarrierError.
        spawn(barrier.reset());
        sleep0().await?;

        // Complete the waiting tasks in the `finally`.
        spawn(coro2);

        asyncio::gather(tasks).await?;

        assert!(!barrier.broken());
        assert_eq!(got(&results1).len(), N - 1);
        assert!(got(&results1).iter().all(|r| *r));
        assert_eq!(got(&results2).len(), N);
        assert!(got(&results2).iter().all(|r| *r));

        assert_eq!(barrier.n_waiting(), 0);
        Ok(())
    }

    #[asyncio::test]
    async fn test_reset_barrier_while_tasks_draining() -> Result<()> {
        let barrier = Barrier::new(N)?;
        let results1: Res<bool> = res();
        let results2: Res<bool> = res();
        let results3: Res<bool> = res();
        let count = Rc::new(Cell::new(0));

        let coro = || {
            let (barrier, results1, results2, results3, count) = (
                barrier.clone(),
                results1.clone(),
                results2.clone(),
                results3.clone(),
                count.clone(),
            );
            async move {
                let _i = barrier.wait().await?;
                count.set(count.get() + 1);
                if count.get() == N {
                    // The last task exited from the barrier.
                    barrier.reset().await?;

                    // Wait here to reach the `parties`.
                    barrier.wait().await?;
                } else {
                    // Second waiting.
                    match barrier.wait().await {
                        // N-1 tasks here.
                        Ok(_) => results1.borrow_mut().push(true),
                        // Never goes here.
                        Err(_) => results2.borrow_mut().push(true),
                    }
                }

                // Now, pass the barrier again: the last wait must complete.
                let _k = barrier.wait().await?;
                results3.borrow_mut().push(true);
                Ok(())
            }
        };

        gather_tasks(N, coro).await?;

        assert!(!barrier.broken());
        assert!(got(&results1).iter().all(|r| *r));
        assert_eq!(got(&results1).len(), N - 1);
        assert_eq!(got(&results2).len(), 0);
        assert_eq!(got(&results3).len(), N);
        assert!(got(&results3).iter().all(|r| *r));

        assert_eq!(barrier.n_waiting(), 0);
        Ok(())
    }

    #[asyncio::test]
    async fn test_abort_barrier() -> Result<()> {
        let barrier = Barrier::new(1)?;

        spawn(barrier.abort());
        sleep0().await?;

        assert_eq!(barrier.n_waiting(), 0);
        assert!(barrier.broken());
        Ok(())
    }

    #[asyncio::test]
    async fn test_abort_barrier_when_tasks_half_draining_half_blocking() -> Result<()> {
        let barrier = Barrier::new(N)?;
        let results1: Res<bool> = res();
        let results2: Res<bool> = res();
        let blocking_tasks = N / 2;
        let count = Rc::new(Cell::new(0));

        let coro = || {
            let (barrier, results1, results2, count) = (
                barrier.clone(),
                results1.clone(),
                results2.clone(),
                count.clone(),
            );
            async move {
                match barrier.wait().await {
                    // Here catch the tasks waiting to drain.
                    Err(e) if broken_barrier(&e) => results1.borrow_mut().push(true),
                    Err(e) => return Err(e),
                    Ok(_) => {
                        count.set(count.get() + 1);
                        if count.get() > blocking_tasks {
                            // Abort now: raise BrokenBarrierError for all tasks.
                            barrier.abort().await?;
                        } else {
                            match barrier.wait().await {
                                // Here catch the blocked tasks (already drained).
                                Err(e) if broken_barrier(&e) => results2.borrow_mut().push(true),
                                other => {
                                    other?;
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
        };

        gather_tasks(N, coro).await?;

        assert!(barrier.broken());
        assert_eq!(got(&results1), vec![true; blocking_tasks]);
        assert_eq!(got(&results2), vec![true; N - blocking_tasks - 1]);
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!repr(&barrier).contains("resetting"));
        Ok(())
    }

    #[asyncio::test]
    async fn test_abort_barrier_when_exception() -> Result<()> {
        // From threading.Barrier: see `lock_tests.test_reset`.
        let barrier = Barrier::new(N)?;
        let results1: Res<bool> = res();
        let results2: Res<bool> = res();

        let coro = || {
            let (barrier, results1, results2) =
                (barrier.clone(), results1.clone(), results2.clone());
            async move {
                let body = async {
                    let i = barrier.wait().await?; // async with barrier as i:
                    if i == N / 2 {
                        return Err(Error::bare(ErrorKind::RuntimeError));
                    }
                    barrier.wait().await?;
                    results1.borrow_mut().push(true);
                    Ok(())
                };
                match body.await {
                    Err(e) if broken_barrier(&e) => results2.borrow_mut().push(true),
                    Err(e) if e.kind() == ErrorKind::RuntimeError => barrier.abort().await?,
                    other => other?,
                }
                Ok(())
            }
        };

        gather_tasks(N, coro).await?;

        assert!(barrier.broken());
        assert_eq!(got(&results1).len(), 0);
        assert_eq!(got(&results2).len(), N - 1);
        assert!(got(&results2).iter().all(|r| *r));
        assert_eq!(barrier.n_waiting(), 0);
        Ok(())
    }

    #[asyncio::test]
    async fn test_abort_barrier_when_exception_then_resetting() -> Result<()> {
        // From threading.Barrier: see `lock_tests.test_abort_and_reset`.
        let barrier1 = Barrier::new(N)?;
        let barrier2 = Barrier::new(N)?;
        let results1: Res<bool> = res();
        let results2: Res<bool> = res();
        let results3: Res<bool> = res();

        let coro = || {
            let (barrier1, barrier2, results1, results2, results3) = (
                barrier1.clone(),
                barrier2.clone(),
                results1.clone(),
                results2.clone(),
                results3.clone(),
            );
            async move {
                let body = async {
                    let i = barrier1.wait().await?;
                    if i == N / 2 {
                        return Err(Error::bare(ErrorKind::RuntimeError));
                    }
                    barrier1.wait().await?;
                    results1.borrow_mut().push(true);
                    Ok(())
                };
                match body.await {
                    Err(e) if broken_barrier(&e) => results2.borrow_mut().push(true),
                    Err(e) if e.kind() == ErrorKind::RuntimeError => barrier1.abort().await?,
                    other => other?,
                }

                // Synchronize and reset the barrier. Must synchronize first
                // so that everyone has left it when we reset, and after so
                // that no one enters it before the reset.
                let i = barrier2.wait().await?;
                if i == N / 2 {
                    barrier1.reset().await?;
                }
                barrier2.wait().await?;
                barrier1.wait().await?;
                results3.borrow_mut().push(true);
                Ok(())
            }
        };

        gather_tasks(N, coro).await?;

        assert!(!barrier1.broken());
        assert_eq!(got(&results1).len(), 0);
        assert_eq!(got(&results2).len(), N - 1);
        assert!(got(&results2).iter().all(|r| *r));
        assert_eq!(got(&results3).len(), N);
        assert!(got(&results3).iter().all(|r| *r));

        assert_eq!(barrier1.n_waiting(), 0);
        Ok(())
    }
}

// ===== Rust-only: guards and futures dropped while waiting =====

mod rust_guards_and_drops {
    use super::*;

    /// Polls `fut` once (registering it as a waiter) without awaiting it.
    async fn poll_once<F: std::future::Future>(fut: &mut Pin<Box<F>>) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
    }

    #[asyncio::test]
    async fn guard_releases_on_early_return() -> Result<()> {
        let lock = Lock::new();
        async fn fails(lock: &Lock) -> Result<()> {
            let _guard = lock.acquire().await?;
            Err(Error::value("boom"))
        }
        assert_eq!(fails(&lock).await.unwrap_err().to_string(), "boom");
        assert!(!lock.locked());
        Ok(())
    }

    #[asyncio::test]
    async fn guard_release_reports_a_lock_released_elsewhere() -> Result<()> {
        let lock = Lock::new();
        let guard = lock.acquire().await?;
        lock.release()?;
        let err = guard.release().unwrap_err();
        assert_eq!(err.to_string(), "Lock is not acquired.");
        Ok(())
    }

    #[asyncio::test]
    async fn guard_leaves_a_later_acquisition_alone() -> Result<()> {
        let lock = Lock::new();
        let stale = lock.acquire().await?;
        lock.release()?;
        let current = lock.acquire().await?;
        drop(stale);
        assert!(lock.locked(), "the stale guard released the new holder");
        drop(current);
        assert!(!lock.locked());
        Ok(())
    }

    #[asyncio::test]
    async fn guard_stays_valid_across_condition_wait() -> Result<()> {
        let cond = Condition::new();
        let notifier = {
            let cond = cond.clone();
            spawn(async move {
                let _guard = cond.acquire().await?;
                cond.notify_all()
            })
        };
        {
            let _guard = cond.acquire().await?;
            assert!(cond.wait().await?);
            assert!(cond.locked());
        }
        assert!(!cond.locked());
        notifier.await
    }

    #[asyncio::test]
    async fn semaphore_guard_release_and_forget() -> Result<()> {
        let sem = BoundedSemaphore::new(1);
        let guard = sem.acquire().await?;
        assert!(sem.locked());
        guard.release()?;
        assert!(!sem.locked());
        {
            let _guard = sem.acquire().await?;
            assert!(sem.locked());
        }
        assert!(!sem.locked());
        // Released twice: the guard's release reports it.
        let guard = sem.acquire().await?;
        sem.release()?;
        let err = guard.release().unwrap_err();
        assert_eq!(err.to_string(), "BoundedSemaphore released too many times");
        Ok(())
    }

    #[asyncio::test]
    async fn dropped_lock_acquire_passes_the_lock_on() -> Result<()> {
        // A Rust future dropped after it was handed the lock (the Python
        // equivalent of a waiter cancelled after its wake-up) wakes the
        // next waiter.
        let lock = Lock::new();
        lock.acquire().await?.forget();
        let mut first = Box::pin(lock.acquire());
        assert!(poll_once(&mut first).await.is_pending());
        let second = spawn(lock_acquire(&lock));
        sleep0().await?;
        assert_eq!(lock._waiters_len(), 2);
        lock.release()?; // wakes `first`
        drop(first);
        assert_eq!(lock._waiters_len(), 1);
        assert!(second.await?);
        assert!(lock.locked());
        Ok(())
    }

    #[asyncio::test]
    async fn dropped_semaphore_acquire_gives_its_slot_back() -> Result<()> {
        let sem = Semaphore::new(0);
        let mut first = Box::pin(sem.acquire());
        assert!(poll_once(&mut first).await.is_pending());
        let second = spawn(sem_acquire(&sem));
        sleep0().await?;
        sem.release(); // hands the slot to `first`
        assert_eq!(sem._value(), 0);
        drop(first);
        assert!(second.await?);
        assert_eq!(sem._value(), 0);
        assert_eq!(sem._waiters_len(), 0);
        Ok(())
    }

    #[asyncio::test]
    async fn dropped_event_wait_leaves_the_waiters() -> Result<()> {
        let ev = Event::new();
        let mut wait = Box::pin(ev.wait());
        assert!(poll_once(&mut wait).await.is_pending());
        assert_eq!(ev._waiters_len(), 1);
        drop(wait);
        assert_eq!(ev._waiters_len(), 0);
        Ok(())
    }

    #[asyncio::test]
    async fn dropped_condition_wait_leaves_the_lock_released() -> Result<()> {
        let cond = Condition::new();
        let result = res();
        let other = {
            let (cond, result) = (cond.clone(), result.clone());
            spawn(async move {
                let _guard = cond.acquire().await?;
                cond.wait().await?;
                result.borrow_mut().push(2);
                Ok(())
            })
        };
        sleep0().await?; // `other` waits on the condition
        let guard = cond.acquire().await?;
        let mut wait = Box::pin(cond.wait()); // second in line
        assert!(poll_once(&mut wait).await.is_pending());
        assert!(!cond.locked());
        cond.acquire().await?.forget();
        cond.notify(1)?; // wakes `other`
        cond.release()?;
        drop(wait);
        // The lock is not taken back by a dropped wait, so the guard does
        // not release it either.
        drop(guard);
        other.await?;
        assert_eq!(got(&result), [2]);
        Ok(())
    }

    #[asyncio::test]
    async fn dropped_condition_wait_after_notify_wakes_another() -> Result<()> {
        let cond = Condition::new();
        let result = res();
        let guard = cond.acquire().await?;
        let mut wait = Box::pin(cond.wait());
        assert!(poll_once(&mut wait).await.is_pending());
        drop(guard); // released by the wait: nothing to release
        let other = {
            let (cond, result) = (cond.clone(), result.clone());
            spawn(async move {
                let _guard = cond.acquire().await?;
                cond.wait().await?;
                result.borrow_mut().push(2);
                Ok(())
            })
        };
        sleep0().await?;
        assert_eq!(cond._waiters_len(), 2);
        {
            let _guard = cond.acquire().await?;
            cond.notify(1)?; // the dropped-to-be wait is first
        }
        drop(wait); // passes the notification on to `other`
        other.await?;
        assert_eq!(got(&result), [2]);
        Ok(())
    }

    #[asyncio::test]
    async fn dropped_barrier_wait_leaves_the_barrier() -> Result<()> {
        let barrier = Barrier::new(2)?;
        let mut wait = Box::pin(barrier.wait());
        assert!(poll_once(&mut wait).await.is_pending());
        assert_eq!(barrier.n_waiting(), 1);
        drop(wait);
        assert_eq!(barrier.n_waiting(), 0);
        let a = spawn(barrier.wait());
        let b = spawn(barrier.wait());
        let mut both = asyncio::gather([a, b]).await?;
        both.sort();
        assert_eq!(both, [0, 1]);
        Ok(())
    }

    #[asyncio::test]
    async fn primitives_work_across_tasks_as_clones() -> Result<()> {
        // A clone is the same primitive (Python's reference semantics).
        let lock = Lock::new();
        let clone = lock.clone();
        assert!(clone.ptr_eq(&lock));
        let _guard = clone.acquire().await?;
        assert!(lock.locked());
        assert_eq!(repr(&lock), repr(&clone));
        Ok(())
    }
}
