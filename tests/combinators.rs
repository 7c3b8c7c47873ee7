//! `sleep`, `gather`, `shield`, `wait_for`, `wait`, `as_completed`,
//! `timeout`/`timeout_at`, `TaskGroup` and `run_coroutine_threadsafe` on
//! the Tokio-backed loop, against CPython 3.13 (`test_tasks.py`,
//! `test_waitfor.py`, `test_timeouts.py`, `test_taskgroups.py`).

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use asyncio::{
    sleep, sleep_with, timeout, timeout_at, wait_for, Error, ErrorKind, EventLoop, Future, Result,
    ReturnWhen, Task, TaskGroup, Timeout,
};
use common::{entries, log, on_loop, push, repr, Log};
use futures_util::FutureExt;

/// `v(x, d)`: sleeps `d` seconds and returns `x`.
async fn v<T>(x: T, d: f64) -> Result<T> {
    sleep(d).await?;
    Ok(x)
}

/// `bad(m, d)`: sleeps `d` seconds and fails with `ValueError(m)`.
async fn bad<T>(m: &'static str, d: f64) -> Result<T> {
    sleep(d).await?;
    Err(Error::value(m))
}

// ===== sleep =====

#[test]
fn sleep_zero_yields_exactly_one_iteration() {
    // CPython: ['a0', 'b0', 'a1', 'b1', 'a2', 'b2']
    let out = on_loop(|_| async {
        let order = log();
        let spin = |n: &'static str, order: Log| async move {
            for i in 0..3 {
                push(&order, format!("{n}{i}"));
                sleep(0).await?;
            }
            Ok(())
        };
        let a = asyncio::create_task(spin("a", order.clone()))?;
        let b = asyncio::create_task(spin("b", order.clone()))?;
        a.await?;
        b.await?;
        Ok(entries(&order))
    });
    assert_eq!(out, ["a0", "b0", "a1", "b1", "a2", "b2"]);
}

#[test]
fn sleep_zero_interleaves_with_call_soon_callbacks() {
    // CPython: ['a0', 'b0', 'cba0', 'a1', 'cbb0', 'b1', 'cba1', 'a2', 'cbb1',
    //           'b2', 'cba2', 'cbb2']
    let out = on_loop(|loop_| async move {
        let order = log();
        let spin = |n: &'static str, order: Log, loop_: EventLoop| async move {
            for i in 0..3 {
                push(&order, format!("{n}{i}"));
                let o = order.clone();
                loop_.call_soon(move || push(&o, format!("cb{n}{i}")))?;
                sleep(0).await?;
            }
            Ok(())
        };
        let a = asyncio::create_task(spin("a", order.clone(), loop_.clone()))?;
        let b = asyncio::create_task(spin("b", order.clone(), loop_.clone()))?;
        asyncio::gather([a, b]).await?;
        Ok(entries(&order))
    });
    assert_eq!(
        out,
        ["a0", "b0", "cba0", "a1", "cbb0", "b1", "cba1", "a2", "cbb1", "b2", "cba2", "cbb2"]
    );
}

#[test]
fn negative_sleep_is_like_sleep_zero() {
    // CPython: ['a0', 'b0', 'a1', 'b1'] with sleep(-1) and sleep(0)
    let out = on_loop(|_| async {
        let order = log();
        let spin = |n: &'static str, d: f64, order: Log| async move {
            for i in 0..2 {
                push(&order, format!("{n}{i}"));
                sleep(d).await?;
            }
            Ok(())
        };
        let a = asyncio::create_task(spin("a", -1.0, order.clone()))?;
        let b = asyncio::create_task(spin("b", 0.0, order.clone()))?;
        asyncio::gather([a, b]).await?;
        Ok(entries(&order))
    });
    assert_eq!(out, ["a0", "b0", "a1", "b1"]);
}

#[test]
fn sleep_nan_is_value_error() {
    // CPython: ValueError('Invalid delay: NaN (not a number)')
    let err = on_loop(|_| async { Ok(sleep(f64::NAN).await.unwrap_err()) });
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(
        repr(&err),
        "ValueError('Invalid delay: NaN (not a number)')"
    );
}

#[test]
fn sleep_waits_at_least_the_delay_and_accepts_duration() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let t0 = loop_.time();
    loop_
        .run_until_complete(async {
            sleep(Duration::from_millis(10)).await?;
            sleep(0.01).await
        })
        .unwrap();
    assert!(loop_.time() - t0 >= 0.02);
    loop_.close().unwrap();
}

#[test]
fn sleep_with_returns_the_result() {
    // CPython: await asyncio.sleep(0.001, 'res') -> 'res'
    let out = on_loop(|_| async { sleep_with(0.001, "res").await });
    assert_eq!(out, "res");
    let out = on_loop(|_| async { sleep_with(0, 5).await });
    assert_eq!(out, 5);
}

#[test]
fn sleeps_wake_in_deadline_order() {
    let out = on_loop(|_| async {
        let order = log();
        let mk = |d: f64, n: &'static str, o: Log| async move {
            sleep(d).await?;
            push(&o, n);
            Ok(())
        };
        let a = asyncio::create_task(mk(0.05, "slow", order.clone()))?;
        let b = asyncio::create_task(mk(0.01, "fast", order.clone()))?;
        asyncio::gather([a, b]).await?;
        Ok(entries(&order))
    });
    assert_eq!(out, ["fast", "slow"]);
}

#[test]
fn cancelling_a_sleeping_task() {
    // CPython: CancelledError('s')
    let err = on_loop(|_| async {
        let t = asyncio::create_task(sleep(10))?;
        sleep(0).await?;
        t.cancel_with_message("s");
        Ok(t.await.unwrap_err())
    });
    assert_eq!(repr(err), "CancelledError('s')");
}

#[test]
fn sleep_infinity_sleeps_until_cancelled_or_timed_out() {
    // CPython 3.13: wait_for(sleep(float('inf')), 0.05) -> TimeoutError();
    // a task in sleep(float('inf')) stays pending until cancelled.
    let (timed_out, scoped, cancelled) = on_loop(|loop_| async move {
        let t0 = loop_.time();
        let timed_out = wait_for(sleep(f64::INFINITY), 0.05).await.unwrap_err();
        assert!(loop_.time() - t0 >= 0.05);
        let scoped = timeout(0.01)
            .run(sleep_with(f64::INFINITY, 1))
            .await
            .unwrap_err();
        let t = asyncio::create_task(sleep_with(f64::INFINITY, "never"))?;
        sleep(0.02).await?;
        assert!(!t.done());
        assert!(t.cancel());
        Ok((timed_out, scoped, t.await.unwrap_err()))
    });
    assert_eq!(repr(timed_out), "TimeoutError()");
    assert_eq!(repr(scoped), "TimeoutError()");
    assert_eq!(cancelled.kind(), ErrorKind::CancelledError);
}

// ===== gather =====

#[test]
fn gather_results_in_argument_order() {
    // CPython: [1, 2, 3]
    let out = on_loop(|_| async { asyncio::gather([v(1, 0.02), v(2, 0.01), v(3, 0.0)]).await });
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn gather_empty_is_empty_list() {
    // CPython: []
    let out = on_loop(|_| async {
        let none: Vec<Task<i32>> = Vec::new();
        asyncio::gather(none).await
    });
    assert!(out.is_empty());
}

#[test]
fn gather_first_error_is_the_outcome_and_others_keep_running() {
    // CPython: first err ValueError('b1'); a running sibling is not cancelled.
    on_loop(|_| async {
        let slow = asyncio::create_task(v("slow done", 0.03))?;
        let b1 = asyncio::create_task(bad::<&str>("b1", 0.01))?;
        let b2 = asyncio::create_task(bad::<&str>("b2", 0.02))?;
        let err = asyncio::gather([slow.clone(), b1, b2.clone()])
            .await
            .unwrap_err();
        assert_eq!(repr(err), "ValueError('b1')");
        assert!(!slow.done());
        assert!(!slow.cancelled());
        assert_eq!((&slow).await?, "slow done");
        let _ = (&b2).await;
        Ok(())
    })
}

#[test]
fn gather_return_exceptions() {
    // CPython: [1, ValueError('b')]
    let out = on_loop(|_| async {
        let a = asyncio::create_task(v(1, 0.0))?;
        let b = asyncio::create_task(bad::<i32>("b", 0.0))?;
        asyncio::gather([a, b]).return_exceptions().await
    });
    assert_eq!(out.len(), 2);
    assert_eq!(*out[0].as_ref().unwrap(), 1);
    assert_eq!(repr(out[1].as_ref().unwrap_err()), "ValueError('b')");
}

#[test]
fn gather_cancel_cancels_the_children() {
    // CPython: g.cancel('gm') True, again True; await g -> CancelledError('gm');
    // children cancelled; g.cancelled() False
    on_loop(|_| async {
        let c1 = asyncio::create_task(sleep(10))?;
        let c2 = asyncio::create_task(sleep(10))?;
        let g = asyncio::gather([c1.clone(), c2.clone()]);
        sleep(0).await?;
        assert!(g.cancel_with_message("gm"));
        let err = g.await.unwrap_err();
        assert_eq!(repr(err), "CancelledError('gm')");
        assert!(c1.cancelled());
        assert!(c2.cancelled());
        Ok(())
    })
}

#[test]

fn gather_cancel_twice_keeps_the_first_message() {
    // CPython: g.cancel('gm') True, g.cancel() True; await g -> CancelledError('gm')
    on_loop(|_| async {
        let c1 = asyncio::create_task(sleep(10))?;
        let c2 = asyncio::create_task(sleep(10))?;
        let g = asyncio::gather([c1.clone(), c2.clone()]);
        sleep(0).await?;
        assert!(g.cancel_with_message("gm"));
        assert!(g.cancel());
        let err = g.await.unwrap_err();
        assert_eq!(repr(err), "CancelledError('gm')");
        Ok(())
    })
}

#[test]
fn gather_cancelled_state_after_cancel() {
    // CPython: after `await g` fails, g.cancelled() is False (the outer
    // future got the child's CancelledError as its exception).
    on_loop(|_| async {
        let c1 = asyncio::create_task(sleep(10))?;
        let g = asyncio::gather([c1.clone()]);
        sleep(0).await?;
        assert!(g.cancel());
        while !g.done() {
            sleep(0).await?;
        }
        assert!(!g.cancelled());
        Ok(())
    })
}

#[test]
fn cancelling_the_task_awaiting_gather_cancels_the_children() {
    // CPython: waiter CancelledError('w') True
    on_loop(|_| async {
        let c1 = asyncio::create_task(sleep(10))?;
        let c = c1.clone();
        let w = asyncio::create_task(async move {
            asyncio::gather![c, v(1, 0.0)].await?;
            Ok(())
        })?;
        sleep(0).await?;
        w.cancel_with_message("w");
        let err = (&w).await.unwrap_err();
        assert_eq!(repr(err), "CancelledError('w')");
        assert!(w.cancelled());
        assert!(c1.cancelled());
        Ok(())
    })
}

#[test]
fn gather_cancellation_broadcast() {
    // test_cancellation_broadcast: cancelling outer() cancels all children;
    // gatherer.cancel() afterwards is False; proof == 0.
    on_loop(|loop_| async move {
        let proof = Rc::new(Cell::new(0));
        let waiter = Future::<()>::new(&loop_);
        let inner = |w: Future<()>, p: Rc<Cell<i32>>| async move {
            w.await?;
            p.set(p.get() + 1);
            Ok(())
        };
        let child1 = asyncio::create_task(inner(waiter.clone(), proof.clone()))?;
        let child2 = asyncio::create_task(inner(waiter.clone(), proof.clone()))?;
        let (c1, c2, p) = (child1.clone(), child2.clone(), proof.clone());
        let f = asyncio::create_task(async move {
            asyncio::gather([c1, c2]).await?;
            p.set(p.get() + 100);
            Ok(())
        })?;
        sleep(0).await?;
        assert!(f.cancel());
        assert!((&f).await.unwrap_err().is_cancelled());
        assert!(waiter.cancelled());
        assert!(child1.cancelled());
        assert!(child2.cancelled());
        sleep(0).await?;
        assert_eq!(proof.get(), 0);
        Ok(())
    })
}

#[test]
fn gather_cancelled_child_is_cancelled_error_outcome() {
    // CPython: child cancel CancelledError('child'); g not cancelled; sibling done
    on_loop(|_| async {
        let c1 = asyncio::create_task(sleep(10))?;
        let c2 = asyncio::create_task(v((), 0.0))?;
        let g = asyncio::gather([c1.clone(), c2.clone()]);
        sleep(0).await?;
        c1.cancel_with_message("child");
        let err = g.await.unwrap_err();
        assert_eq!(repr(err), "CancelledError('child')");
        assert!(c2.done());
        Ok(())
    })
}

#[test]
fn gather_return_exceptions_with_cancelled_future_child() {
    // CPython: [CancelledError('fm')]
    let out = on_loop(|loop_| async move {
        let f = Future::<i32>::new(&loop_);
        let g = asyncio::gather([f.clone()]).return_exceptions();
        f.cancel_with_message("fm");
        g.await
    });
    assert_eq!(repr(out[0].as_ref().unwrap_err()), "CancelledError('fm')");
}

#[test]

fn gather_return_exceptions_with_cancelled_task_child() {
    // CPython: re [CancelledError(''), 5] -- `_cancel_message` of a task
    // cancelled through the future it awaited is None, so gather builds
    // CancelledError('').
    let out = on_loop(|_| async {
        let c1 = asyncio::create_task(async {
            sleep(10).await?;
            Ok(0)
        })?;
        let c2 = asyncio::create_task(v(5, 0.0))?;
        let g = asyncio::gather([c1.clone(), c2]).return_exceptions();
        sleep(0).await?;
        c1.cancel_with_message("child");
        g.await
    });
    assert_eq!(repr(out[0].as_ref().unwrap_err()), "CancelledError('')");
    assert_eq!(*out[1].as_ref().unwrap(), 5);
}

#[test]
fn gather_return_exceptions_cancel_still_propagates() {
    // CPython: outer cancel re CancelledError()
    let err = on_loop(|_| async {
        let c1 = asyncio::create_task(sleep(10))?;
        let g = asyncio::gather([c1]).return_exceptions();
        sleep(0).await?;
        assert!(g.cancel());
        Ok(g.await.unwrap_err())
    });
    assert_eq!(repr(err), "CancelledError()");
}

#[test]
fn gather_cancel_after_done_is_false() {
    on_loop(|_| async {
        let t = asyncio::create_task(v(1, 0.0))?;
        (&t).await?;
        let g = asyncio::gather([t]);
        // Children already done: the gather is done at once (CPython: g.done() True).
        assert!(g.done());
        assert!(!g.cancel());
        assert_eq!(g.await?, [1]);
        Ok(())
    })
}

#[test]
fn gather_duplicates_are_gathered_once() {
    // CPython: [7, 7, 8, 7]
    let out = on_loop(|_| async {
        let t = asyncio::create_task(v(7, 0.0))?;
        let u = asyncio::create_task(v(8, 0.0))?;
        asyncio::gather([t.clone(), t.clone(), u, t]).await
    });
    assert_eq!(out, [7, 7, 8, 7]);
}

#[test]
fn gather_mixed_tasks_futures_and_coroutines_with_macro() {
    let out = on_loop(|loop_| async move {
        let t = asyncio::create_task(v(String::from("task"), 0.01))?;
        let f = Future::<u8>::new(&loop_);
        let setter = f.clone();
        loop_.call_soon(move || setter.set_result(3))?;
        asyncio::gather!(t, f, v(1.5_f64, 0.0), async { Ok("coro") }).await
    });
    assert_eq!(out, (String::from("task"), 3, 1.5, "coro"));
}

#[test]
fn gather_macro_first_error() {
    let err = on_loop(|_| async {
        Ok(asyncio::gather!(v(1, 0.01), bad::<&str>("macro", 0.0))
            .await
            .unwrap_err())
    });
    assert_eq!(repr(err), "ValueError('macro')");
}

#[test]
fn gather_macro_return_exceptions() {
    let (a, b, c) = on_loop(|_| async {
        asyncio::gather!(v(1, 0.0), bad::<String>("b", 0.0), v("c", 0.0); return_exceptions).await
    });
    assert_eq!(a.unwrap(), 1);
    assert_eq!(repr(b.unwrap_err()), "ValueError('b')");
    assert_eq!(c.unwrap(), "c");
}

#[test]
fn gather_outside_running_loop_is_runtime_error() {
    let g = asyncio::gather([async { Ok(1) }]);
    let loop_ = asyncio::new_event_loop().unwrap();
    // The error surfaces when awaited.
    let err = loop_
        .run_until_complete(async move { g.await })
        .unwrap_err();
    assert_eq!(err.to_string(), "no running event loop");
    loop_.close().unwrap();
}

#[test]
fn gather_exception_marking() {
    // test_exception_marking: both errors are retrieved, none reported.
    let loop_ = asyncio::new_event_loop().unwrap();
    let reports = Rc::new(Cell::new(0));
    let r = reports.clone();
    loop_.set_exception_handler(Some(move |_: &EventLoop, _: &asyncio::ExceptionContext| {
        r.set(r.get() + 1)
    }));
    let err = loop_
        .run_until_complete(async {
            asyncio::gather([bad::<()>("should not be ignored", 0.0), bad("x", 0.01)]).await
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    loop_.run_until_complete(sleep(0.02)).unwrap();
    loop_.close().unwrap();
    assert_eq!(reports.get(), 0);
}

// ===== shield =====

#[test]
fn shield_outer_cancel_leaves_inner_running() {
    // CPython: outer cancelled False False; then 5
    on_loop(|_| async {
        let inner = asyncio::create_task(v(5, 0.01))?;
        let i = inner.clone();
        let t = asyncio::create_task(async move { asyncio::shield(&i)?.await })?;
        sleep(0).await?;
        t.cancel();
        assert!((&t).await.unwrap_err().is_cancelled());
        assert!(!inner.cancelled());
        assert!(!inner.done());
        assert_eq!(inner.await?, 5);
        Ok(())
    })
}

#[test]
fn shield_copies_result_and_exception() {
    // CPython: 4; ValueError('sh')
    on_loop(|_| async {
        assert_eq!(asyncio::shield(v(4, 0.0))?.await?, 4);
        let err = asyncio::shield(bad::<i32>("sh", 0.0))?.await.unwrap_err();
        assert_eq!(repr(err), "ValueError('sh')");
        Ok(())
    })
}

#[test]
fn shield_inner_cancelled_cancels_outer() {
    // CPython: inner cancelled -> outer True CancelledError()
    on_loop(|_| async {
        let inner = asyncio::create_task(sleep(10))?;
        let outer = asyncio::shield(&inner)?;
        sleep(0).await?;
        inner.cancel();
        let err = (&outer).await.unwrap_err();
        assert_eq!(repr(err), "CancelledError()");
        assert!(outer.cancelled());
        Ok(())
    })
}

#[test]
fn shield_of_a_done_future_is_the_future() {
    // CPython: asyncio.shield(f) is f -> True
    on_loop(|loop_| async move {
        let f = Future::<i32>::new(&loop_);
        f.set_result(3)?;
        let s = asyncio::shield(&f)?;
        assert!(s.ptr_eq(&f));
        Ok(())
    })
}

#[test]
fn shield_outer_future_cancel_directly() {
    // test_shield_cancel_outer: cancelling the shield's future leaves inner alone.
    on_loop(|loop_| async move {
        let inner = Future::<i32>::new(&loop_);
        let outer = asyncio::shield(&inner)?;
        assert!(outer.cancel());
        sleep(0).await?;
        assert!(!inner.cancelled());
        inner.set_result(1)?;
        sleep(0).await?;
        assert!(outer.cancelled());
        Ok(())
    })
}

// ===== wait_for =====

#[test]
fn wait_for_timeout_cancels_the_inner_task() {
    // CPython: wait_for timeout TimeoutError() True
    on_loop(|_| async {
        let inner = asyncio::create_task(sleep(10))?;
        let err = wait_for(inner.clone(), 0.01).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimeoutError);
        assert_eq!(repr(err), "TimeoutError()");
        assert!(inner.cancelled());
        Ok(())
    })
}

#[test]
fn wait_for_non_positive_timeout_cancels_without_starting() {
    // CPython: t0 TimeoutError() []; t-1 TimeoutError() []
    on_loop(|_| async {
        let started = Rc::new(Cell::new(0));
        for t in [0.0, -1.0] {
            let s = started.clone();
            let err = wait_for(
                async move {
                    s.set(s.get() + 1);
                    Ok(1)
                },
                t,
            )
            .await
            .unwrap_err();
            assert_eq!(repr(err), "TimeoutError()");
        }
        assert_eq!(started.get(), 0);
        Ok(())
    })
}

#[test]
fn wait_for_zero_timeout_with_done_future_returns_result() {
    // CPython: done t0 9
    let out = on_loop(|loop_| async move {
        let f = Future::<i32>::new(&loop_);
        f.set_result(9)?;
        wait_for(f, 0).await
    });
    assert_eq!(out, 9);
}

#[test]
fn wait_for_returns_value_produced_despite_cancellation() {
    // CPython: despite stubborn; despite0 started stubborn
    async fn stubborn() -> Result<&'static str> {
        match sleep(10).await {
            Err(e) if e.is_cancelled() => Ok("stubborn"),
            _ => Ok("slept"),
        }
    }
    on_loop(|_| async {
        assert_eq!(wait_for(stubborn(), 0.01).await?, "stubborn");
        let t = asyncio::create_task(stubborn())?;
        sleep(0).await?;
        assert_eq!(wait_for(t, 0).await?, "stubborn");
        Ok(())
    })
}

#[test]
fn wait_for_result_and_error_within_timeout() {
    // CPython: ok 4; ValueError('wf')
    on_loop(|_| async {
        assert_eq!(wait_for(v(4, 0.001), 10).await?, 4);
        assert_eq!(wait_for(v(4, 0.0), Duration::from_secs(10)).await?, 4);
        let err = wait_for(bad::<i32>("wf", 0.0), 10.0).await.unwrap_err();
        assert_eq!(repr(err), "ValueError('wf')");
        Ok(())
    })
}

#[test]
fn wait_for_outer_cancel_cancels_inner_and_stays_cancelled_error() {
    // CPython: wf outer cancel CancelledError('o') True
    on_loop(|_| async {
        let inner = asyncio::create_task(sleep(10))?;
        let i = inner.clone();
        let t = asyncio::create_task(async move { wait_for(i, 10).await })?;
        sleep(0).await?;
        t.cancel_with_message("o");
        let err = (&t).await.unwrap_err();
        assert_eq!(repr(err), "CancelledError('o')");
        assert!(inner.cancelled());
        Ok(())
    })
}

#[test]
fn wait_for_nan_timeout_is_value_error() {
    let err = on_loop(|_| async { Ok(wait_for(v(1, 0.0), f64::NAN).await.unwrap_err()) });
    assert_eq!(err.kind(), ErrorKind::ValueError);
}

// ===== wait =====

#[test]
fn wait_empty_is_value_error() {
    // CPython: ValueError('Set of Tasks/Futures is empty.')
    let err = on_loop(|_| async {
        let none: Vec<Task<()>> = Vec::new();
        Ok(asyncio::wait(none).await.unwrap_err())
    });
    assert_eq!(repr(err), "ValueError('Set of Tasks/Futures is empty.')");
}

#[test]
fn wait_first_completed() {
    // CPython: done == {a}, pending == {b}
    on_loop(|_| async {
        let a = asyncio::create_task(v("a", 0.01))?;
        let b = asyncio::create_task(v("b", 0.2))?;
        let (done, pending) = asyncio::wait([a.clone(), b.clone()])
            .return_when(ReturnWhen::FirstCompleted)
            .await?;
        assert_eq!(done.len(), 1);
        assert!(done[0].ptr_eq(&a));
        assert_eq!(done[0].result()?, "a");
        assert_eq!(pending.len(), 1);
        assert!(pending[0].ptr_eq(&b));
        b.cancel();
        Ok(())
    })
}

#[test]
fn wait_first_exception() {
    // CPython: done == {c}, pending == {b}; without failures it waits for all.
    on_loop(|_| async {
        let b = asyncio::create_task(v("b", 0.2))?;
        let c = asyncio::create_task(bad::<&str>("c", 0.01))?;
        let (done, pending) = asyncio::wait([b.clone(), c.clone()])
            .return_when(ReturnWhen::FirstException)
            .await?;
        assert_eq!(done.len(), 1);
        assert!(done[0].ptr_eq(&c));
        assert_eq!(repr(done[0].exception()?.unwrap()), "ValueError('c')");
        assert!(pending[0].ptr_eq(&b));
        b.cancel();

        let d = asyncio::create_task(v("d", 0.01))?;
        let e = asyncio::create_task(v("e", 0.02))?;
        let (done, pending) = asyncio::wait([d, e])
            .return_when(ReturnWhen::FirstException)
            .await?;
        assert_eq!((done.len(), pending.len()), (2, 0));
        Ok(())
    })
}

#[test]
fn wait_all_completed_and_errors_stay_in_futures() {
    on_loop(|_| async {
        let a = asyncio::create_task(v(1, 0.01))?;
        let b = asyncio::create_task(bad::<i32>("kept", 0.0))?;
        let (done, pending) = asyncio::wait([a, b]).await?;
        assert_eq!((done.len(), pending.len()), (2, 0));
        // Order given is kept.
        assert_eq!(done[0].result()?, 1);
        assert_eq!(repr(done[1].exception()?.unwrap()), "ValueError('kept')");
        Ok(())
    })
}

#[test]
fn wait_timeout_returns_pending_without_cancelling() {
    // CPython: done == {a}, pending == {b}, b.cancelled() False; timeout=0 -> 0 1
    on_loop(|_| async {
        let a = asyncio::create_task(v("a", 0.0))?;
        let b = asyncio::create_task(v("b", 10.0))?;
        let (done, pending) = asyncio::wait([b.clone(), a.clone()]).timeout(0.01).await?;
        assert_eq!(done.len(), 1);
        assert!(done[0].ptr_eq(&a));
        assert!(pending[0].ptr_eq(&b));
        assert!(!b.cancelled());
        let (done, pending) = asyncio::wait([b.clone()]).timeout(0).await?;
        assert_eq!((done.len(), pending.len()), (0, 1));
        let (done, pending) = asyncio::wait([b.clone()])
            .timeout(Duration::from_millis(1))
            .await?;
        assert_eq!((done.len(), pending.len()), (0, 1));
        b.cancel();
        Ok(())
    })
}

#[test]
fn wait_first_completed_with_done_future_returns_at_once() {
    on_loop(|_| async {
        let d = asyncio::create_task(v((), 0.0))?;
        (&d).await?;
        let slow = asyncio::create_task(sleep(10))?;
        let (done, pending) = asyncio::wait([d.as_future().clone(), Future::from(slow.clone())])
            .return_when(ReturnWhen::FirstCompleted)
            .await?;
        let (done, pending) = (done.len(), pending.len());
        assert_eq!((done, pending), (1, 1));
        slow.cancel();
        Ok(())
    })
}

#[test]
fn wait_duplicates_are_deduplicated() {
    on_loop(|_| async {
        let a = asyncio::create_task(v(1, 0.0))?;
        let (done, pending) = asyncio::wait([a.clone(), a.clone()]).await?;
        assert_eq!((done.len(), pending.len()), (1, 0));
        Ok(())
    })
}

// ===== as_completed =====

#[test]
fn as_completed_yields_in_completion_order() {
    // CPython: [1, 2, 3]
    let out = on_loop(|_| async {
        let mut out = Vec::new();
        for f in asyncio::as_completed([v(3, 0.03), v(1, 0.01), v(2, 0.02)]) {
            out.push(f.await?);
        }
        Ok(out)
    });
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn as_completed_timeout() {
    // CPython: ac 1; ac timeout TimeoutError()
    let (got, err) = on_loop(|_| async {
        let mut got = Vec::new();
        let mut err = None;
        for f in asyncio::as_completed([v(1, 0.01), v(2, 10.0)]).timeout(0.05) {
            match f.await {
                Ok(x) => got.push(x),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        Ok((got, err))
    });
    assert_eq!(got, [1]);
    assert_eq!(repr(err.unwrap()), "TimeoutError()");
}

#[test]
fn as_completed_next_future_yields_the_original_tasks() {
    // CPython 3.13 `async for`: the original tasks, t2 first.
    on_loop(|_| async {
        let t1 = asyncio::create_task(v(1, 0.02))?;
        let t2 = asyncio::create_task(v(2, 0.01))?;
        let mut it = asyncio::as_completed([t1.clone(), t2.clone()]);
        let first = it.next_future().await.unwrap()?;
        assert!(first.ptr_eq(&t2));
        assert_eq!(first.result()?, 2);
        let second = it.next_future().await.unwrap()?;
        assert!(second.ptr_eq(&t1));
        assert!(it.next_future().await.is_none());
        Ok(())
    })
}

#[test]
fn as_completed_errors_come_out_of_their_awaitable() {
    // CPython: ValueError('acb')
    let err = on_loop(|_| async {
        let mut it = asyncio::as_completed([bad::<i32>("acb", 0.0)]);
        Ok(it.next().unwrap().await.unwrap_err())
    });
    assert_eq!(repr(err), "ValueError('acb')");
}

#[test]
fn as_completed_empty() {
    // CPython: list(as_completed([])) -> []
    on_loop(|_| async {
        let none: Vec<Task<i32>> = Vec::new();
        assert_eq!(asyncio::as_completed(none).count(), 0);
        Ok(())
    })
}

// ===== timeout / timeout_at =====

#[test]
fn timeout_expires_into_timeout_error() {
    // CPython: to TimeoutError() True <Timeout [expired]>
    on_loop(|_| async {
        let cm = timeout(0.01);
        let err = cm.run(sleep(10)).await.unwrap_err();
        assert_eq!(repr(err), "TimeoutError()");
        assert!(cm.expired());
        assert_eq!(repr(&cm), "<Timeout [expired]>");
        // The task is not left cancelled.
        assert_eq!(asyncio::current_task()?.unwrap().cancelling(), 0);
        Ok(())
    })
}

#[test]
fn timeout_not_reached() {
    // CPython: <Timeout [finished]> False
    on_loop(|_| async {
        let cm = timeout(10);
        assert_eq!(cm.run(v(3, 0.0)).await?, 3);
        assert!(!cm.expired());
        assert_eq!(repr(&cm), "<Timeout [finished]>");
        Ok(())
    })
}

#[test]
fn timeout_states_and_messages() {
    // CPython: <Timeout [created]>; reschedule before enter:
    // RuntimeError('Timeout has not been entered'); inside:
    // '<Timeout [active] when=…>'; re-entering: 'Timeout has already been
    // entered'; after: 'Cannot change state of finished Timeout'
    on_loop(|loop_| async move {
        let cm = timeout(10);
        assert_eq!(repr(&cm), "<Timeout [created]>");
        let err = cm.reschedule(Some(1.0)).unwrap_err();
        assert_eq!(repr(err), "RuntimeError('Timeout has not been entered')");
        let inner = cm.clone();
        let l = loop_.clone();
        cm.run(async move {
            let r = repr(&inner);
            let when = inner.when().unwrap();
            assert!(r.starts_with("<Timeout [active] when="), "{r}");
            let shown: f64 = r
                .trim_start_matches("<Timeout [active] when=")
                .trim_end_matches('>')
                .parse()
                .unwrap();
            assert!((shown - when).abs() < 0.001, "{r} vs {when}");
            assert!(when > l.time());
            assert!(!inner.expired());
            let err = inner.run(async { Ok(()) }).await.unwrap_err();
            assert_eq!(
                repr(err),
                "RuntimeError('Timeout has already been entered')"
            );
            Ok(())
        })
        .await?;
        assert_eq!(repr(&cm), "<Timeout [finished]>");
        let err = cm.reschedule(Some(1.0)).unwrap_err();
        assert_eq!(
            repr(err),
            "RuntimeError('Cannot change state of finished Timeout')"
        );
        let err = cm.run(async { Ok(()) }).await.unwrap_err();
        assert_eq!(
            repr(err),
            "RuntimeError('Timeout has already been entered')"
        );
        Ok(())
    })
}

#[test]
fn reschedule_after_expiry_is_runtime_error() {
    // CPython: RuntimeError('Cannot change state of expired Timeout')
    on_loop(|_| async {
        let cm = timeout(0.01);
        assert!(cm.run(sleep(10)).await.unwrap_err().is_timeout());
        let err = cm.reschedule(Some(1.0)).unwrap_err();
        assert_eq!(
            repr(err),
            "RuntimeError('Cannot change state of expired Timeout')"
        );
        Ok(())
    })
}

#[test]
fn timeout_none_then_reschedule() {
    // CPython: <Timeout [active] when=None> None
    on_loop(|loop_| async move {
        let cm = Timeout::new(None);
        let inner = cm.clone();
        let l = loop_.clone();
        cm.run(async move {
            assert_eq!(repr(&inner), "<Timeout [active] when=None>");
            assert_eq!(inner.when(), None);
            inner.reschedule(Some(l.time() + 10.0))?;
            assert!(inner.when().is_some());
            sleep(0).await
        })
        .await?;
        assert!(!cm.expired());
        // Rescheduling to a past deadline expires the block.
        let cm = Timeout::new(None);
        let inner = cm.clone();
        let l = loop_.clone();
        let err = cm
            .run(async move {
                inner.reschedule(Some(l.time() - 1.0))?;
                sleep(10).await
            })
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert!(cm.expired());
        Ok(())
    })
}

#[test]
fn reschedule_pushes_the_deadline_back() {
    // CPython: rescheduled ok False
    on_loop(|loop_| async move {
        let cm = timeout(0.01);
        let inner = cm.clone();
        let l = loop_.clone();
        cm.run(async move {
            inner.reschedule(Some(l.time() + 1.0))?;
            sleep(0.03).await
        })
        .await?;
        assert!(!cm.expired());
        Ok(())
    })
}

#[test]
fn reschedule_nan_is_value_error() {
    on_loop(|_| async {
        let cm = timeout(10);
        let inner = cm.clone();
        cm.run(async move {
            let err = inner.reschedule(Some(f64::NAN)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueError);
            Ok(())
        })
        .await
    })
}

#[test]
fn timeout_at_past_deadline() {
    // CPython: past deadline (TimeoutError); without an await: no expiry.
    on_loop(|loop_| async move {
        let err = timeout_at(loop_.time() - 1.0)
            .run(sleep(10))
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        let cm = timeout(-1);
        cm.run(async { Ok(()) }).await?;
        assert!(!cm.expired());
        Ok(())
    })
}

#[test]
fn timeout_body_error_is_untouched() {
    // CPython: ValueError('body')
    let err =
        on_loop(|_| async { Ok(timeout(0.01).run(bad::<()>("body", 0.0)).await.unwrap_err()) });
    assert_eq!(repr(err), "ValueError('body')");
}

#[test]
fn timeout_nested_inner_fires() {
    // CPython: inner timed out True False
    on_loop(|_| async {
        let outer = timeout(10);
        let inner = timeout(0.01);
        let i = inner.clone();
        outer
            .run(async move {
                let err = i.run(sleep(10)).await.unwrap_err();
                assert!(err.is_timeout());
                sleep(0).await
            })
            .await?;
        assert!(inner.expired());
        assert!(!outer.expired());
        Ok(())
    })
}

#[test]
fn timeout_nested_outer_fires() {
    // CPython: outer fired True False
    on_loop(|_| async {
        let outer = timeout(0.01);
        let inner = timeout(10);
        let i = inner.clone();
        let err = outer
            .run(async move { i.run(sleep(10)).await })
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert!(outer.expired());
        assert!(!inner.expired());
        Ok(())
    })
}

#[test]
fn timeout_nested_both_expire() {
    // CPython: the inner block lets CancelledError through (the outer
    // cancellation is still pending) and the outer converts: outer True True
    on_loop(|loop_| async move {
        let when = loop_.time() + 0.01;
        let outer = timeout_at(when);
        let inner = timeout_at(when);
        let i = inner.clone();
        let caught_inner = Rc::new(Cell::new(false));
        let c = caught_inner.clone();
        let err = outer
            .run(async move {
                match i.run(sleep(10)).await {
                    Err(e) if e.is_timeout() => {
                        c.set(true);
                        Ok(())
                    }
                    other => other,
                }
            })
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert!(!caught_inner.get());
        assert!(outer.expired());
        assert!(inner.expired());
        assert_eq!(asyncio::current_task()?.unwrap().cancelling(), 0);
        Ok(())
    })
}

#[test]
fn timeout_outside_cancellation_stays_cancelled_error() {
    // CPython: outside cancel stays CancelledError
    on_loop(|_| async {
        let t = asyncio::create_task(async { timeout(10).run(sleep(10)).await })?;
        sleep(0).await?;
        t.cancel();
        let err = (&t).await.unwrap_err();
        assert!(err.is_cancelled());
        assert!(t.cancelled());
        Ok(())
    })
}

#[test]
fn timeout_outside_a_task_is_runtime_error() {
    // CPython: RuntimeError('Timeout should be used inside a task') from a callback
    let out = on_loop(|loop_| async move {
        let seen = Rc::new(RefCell::new(None));
        let s = seen.clone();
        loop_.call_soon(move || {
            let cm = timeout(1);
            let polled = cm.run(async { Ok(()) }).now_or_never();
            *s.borrow_mut() = Some(polled.map(|r| r.map_err(|e| repr(&e))));
        })?;
        sleep(0.001).await?;
        let out = seen.borrow_mut().take();
        Ok(out)
    });
    assert_eq!(
        out,
        Some(Some(Err(
            "RuntimeError('Timeout should be used inside a task')".to_owned()
        )))
    );
    // Without a running loop at all: CPython says 'no running event loop'.
    let err = timeout(1)
        .run(async { Ok(()) })
        .now_or_never()
        .unwrap()
        .unwrap_err();
    assert_eq!(repr(err), "RuntimeError('no running event loop')");
}

// ===== TaskGroup =====

#[test]
fn task_group_awaits_all_tasks() {
    // CPython: 1 2 <TaskGroup entered>; repr inside: <TaskGroup tasks=2 entered>
    on_loop(|_| async {
        let tg = TaskGroup::new();
        assert_eq!(repr(&tg), "<TaskGroup>");
        let (a, b) = tg
            .run(async {
                let a = tg.create_task(v(1, 0.01))?;
                let b = tg.create_task(v(2, 0.02))?;
                assert_eq!(repr(&tg), "<TaskGroup tasks=2 entered>");
                Ok((a, b))
            })
            .await?;
        assert_eq!((a.result()?, b.result()?), (1, 2));
        assert_eq!(repr(&tg), "<TaskGroup entered>");
        Ok(())
    })
}

#[test]
fn task_group_create_task_errors() {
    // CPython: 'TaskGroup <TaskGroup> has not been entered';
    // 'TaskGroup <TaskGroup entered> is finished'
    on_loop(|_| async {
        let tg = TaskGroup::new();
        let err = tg.create_task(v(1, 0.0)).unwrap_err();
        assert_eq!(
            repr(err),
            "RuntimeError('TaskGroup <TaskGroup> has not been entered')"
        );
        tg.run(async { Ok(()) }).await?;
        let err = tg.create_task(v(1, 0.0)).unwrap_err();
        assert_eq!(
            repr(err),
            "RuntimeError('TaskGroup <TaskGroup entered> is finished')"
        );
        // Re-entering a used group.
        let err = tg.run(async { Ok(()) }).await.unwrap_err();
        assert_eq!(
            repr(err),
            "RuntimeError('TaskGroup <TaskGroup entered> has already been entered')"
        );
        Ok(())
    })
}

#[test]
fn task_group_first_failure_cancels_siblings_and_body() {
    // CPython: eg (ValueError('boom'),) True ['body cancelled']
    on_loop(|_| async {
        let order = log();
        let tg = TaskGroup::new();
        let sibling: Rc<RefCell<Option<Task<()>>>> = Rc::new(RefCell::new(None));
        let err = tg
            .run(async {
                *sibling.borrow_mut() = Some(tg.create_task(sleep(10))?);
                tg.create_task(bad::<()>("boom", 0.01))?;
                if let Err(e) = sleep(10).await {
                    if e.is_cancelled() {
                        push(&order, "body cancelled");
                    }
                    return Err(e);
                }
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ExceptionGroup);
        assert_eq!(
            repr(&err),
            "ExceptionGroup('unhandled errors in a TaskGroup', [ValueError('boom')])"
        );
        assert_eq!(
            err.to_string(),
            "unhandled errors in a TaskGroup (1 sub-exception)"
        );
        assert!(sibling.borrow().as_ref().unwrap().cancelled());
        assert_eq!(entries(&order), ["body cancelled"]);
        // The parent task is not left cancelled (CPython: cancelling 0).
        assert_eq!(asyncio::current_task()?.unwrap().cancelling(), 0);
        Ok(())
    })
}

#[test]
fn task_group_collects_several_errors() {
    // CPython: ExceptionGroup('unhandled errors in a TaskGroup', [ValueError('e1'), ValueError('e2')])
    let err = on_loop(|_| async {
        let tg = TaskGroup::new();
        Ok(tg
            .run(async {
                tg.create_task(bad::<()>("e1", 0.01))?;
                tg.create_task(bad::<()>("e2", 0.01))?;
                Ok(())
            })
            .await
            .unwrap_err())
    });
    assert_eq!(
        repr(err),
        "ExceptionGroup('unhandled errors in a TaskGroup', [ValueError('e1'), ValueError('e2')])"
    );
}

#[test]
fn task_group_body_error_cancels_children() {
    // CPython: body+child ExceptionGroup('unhandled errors in a TaskGroup', [RuntimeError('body')])
    on_loop(|_| async {
        let tg = TaskGroup::new();
        let child: Rc<RefCell<Option<Task<()>>>> = Rc::new(RefCell::new(None));
        let err = tg
            .run(async {
                *child.borrow_mut() = Some(tg.create_task(bad::<()>("child", 0.01))?);
                Err::<(), _>(Error::runtime("body"))
            })
            .await
            .unwrap_err();
        assert_eq!(
            repr(err),
            "ExceptionGroup('unhandled errors in a TaskGroup', [RuntimeError('body')])"
        );
        assert!(child.borrow().as_ref().unwrap().cancelled());
        Ok(())
    })
}

#[test]
fn task_group_body_error_plus_child_error() {
    // CPython: ExceptionGroup('unhandled errors in a TaskGroup',
    //          [ValueError('child'), RuntimeError('body')])
    let err = on_loop(|_| async {
        let tg = TaskGroup::new();
        Ok(tg
            .run(async {
                tg.create_task(bad::<()>("child", 0.0))?;
                match sleep(1).await {
                    Err(e) if e.is_cancelled() => Err::<(), _>(Error::runtime("body")),
                    other => other,
                }
            })
            .await
            .unwrap_err())
    });
    assert_eq!(
        repr(err),
        "ExceptionGroup('unhandled errors in a TaskGroup', [ValueError('child'), RuntimeError('body')])"
    );
}

#[test]
fn task_group_is_shutting_down() {
    // CPython: RuntimeError('TaskGroup <TaskGroup errors=1 cancelling> is shutting down')
    let msg = on_loop(|_| async {
        let tg = TaskGroup::new();
        let msg = Rc::new(RefCell::new(String::new()));
        let err = tg
            .run(async {
                tg.create_task(bad::<()>("x", 0.0))?;
                if let Err(e) = sleep(1).await {
                    *msg.borrow_mut() = repr(tg.create_task(v(1, 0.0)).unwrap_err());
                    return Err(e);
                }
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ExceptionGroup);
        let out = msg.borrow().clone();
        Ok(out)
    });
    assert_eq!(
        msg,
        "RuntimeError('TaskGroup <TaskGroup errors=1 cancelling> is shutting down')"
    );
}

#[test]
fn task_group_task_may_spawn_while_group_exits() {
    // CPython: spawned (a child creates another task after the body ended)
    on_loop(|_| async {
        let tg = TaskGroup::new();
        let tg2 = tg.clone();
        let spawned: Rc<RefCell<Option<Task<i32>>>> = Rc::new(RefCell::new(None));
        let s = spawned.clone();
        let sp = tg
            .run(async {
                tg.create_task(async move {
                    sleep(0.01).await?;
                    *s.borrow_mut() = Some(tg2.create_task(v(5, 0.0))?);
                    Ok("spawned")
                })
            })
            .await?;
        assert_eq!(sp.result()?, "spawned");
        assert_eq!(spawned.borrow().as_ref().unwrap().result()?, 5);
        Ok(())
    })
}

#[test]
fn task_group_child_cancelled_alone_is_not_an_error() {
    // CPython: child cancel ok True
    on_loop(|_| async {
        let tg = TaskGroup::new();
        let t = tg
            .run(async {
                let t = tg.create_task(sleep(10))?;
                sleep(0).await?;
                t.cancel();
                Ok(t)
            })
            .await?;
        assert!(t.cancelled());
        Ok(())
    })
}

#[test]
fn task_group_outer_cancellation_propagates_cancelled_error() {
    // CPython: tg outer cancelled True
    on_loop(|_| async {
        let child: Rc<RefCell<Option<Task<()>>>> = Rc::new(RefCell::new(None));
        let c = child.clone();
        let t = asyncio::create_task(async move {
            let tg = TaskGroup::new();
            tg.run(async {
                *c.borrow_mut() = Some(tg.create_task(sleep(10))?);
                sleep(10).await
            })
            .await
        })?;
        sleep(0.01).await?;
        t.cancel();
        let err = (&t).await.unwrap_err();
        assert!(err.is_cancelled());
        assert!(t.cancelled());
        assert!(child.borrow().as_ref().unwrap().cancelled());
        Ok(())
    })
}

#[test]
fn task_group_outside_a_task_is_runtime_error() {
    // CPython: RuntimeError('TaskGroup <TaskGroup> cannot determine the parent task')
    let out = on_loop(|loop_| async move {
        let seen = Rc::new(RefCell::new(None));
        let s = seen.clone();
        loop_.call_soon(move || {
            let tg = TaskGroup::new();
            let polled = tg.run(async { Ok(()) }).now_or_never();
            *s.borrow_mut() = polled.map(|r| r.map_err(|e| repr(&e)));
        })?;
        sleep(0.001).await?;
        let out = seen.borrow_mut().take();
        Ok(out)
    });
    assert_eq!(
        out,
        Some(Err(
            "RuntimeError('TaskGroup <TaskGroup> cannot determine the parent task')".to_owned()
        ))
    );
}

// ===== run_coroutine_threadsafe =====

#[test]
fn run_coroutine_threadsafe_result_from_another_thread() {
    // CPython: 42
    let out = on_loop(|loop_| async move {
        let remote = loop_.threadsafe();
        asyncio::to_thread(move || {
            let f = asyncio::run_coroutine_threadsafe(
                || async {
                    sleep(0.01).await?;
                    Ok(21 * 2)
                },
                &remote,
            )
            .unwrap();
            f.result(None)
        })?
        .await?
    });
    assert_eq!(out, 42);
}

#[test]
fn run_coroutine_threadsafe_error_propagates() {
    // CPython: ValueError('remote')
    let err = on_loop(|loop_| async move {
        let remote = loop_.threadsafe();
        asyncio::to_thread(move || {
            let f = remote
                .run_coroutine_threadsafe(|| async { Err::<i32, _>(Error::value("remote")) })
                .unwrap();
            let err = f.result(None).unwrap_err();
            assert_eq!(
                repr(f.exception(None).unwrap().unwrap()),
                "ValueError('remote')"
            );
            err
        })?
        .await
    });
    assert_eq!(repr(err), "ValueError('remote')");
}

#[test]
fn run_coroutine_threadsafe_cancel_cancels_the_task() {
    // CPython: f.cancel() -> True; f.result() -> CancelledError(); the task is cancelled.
    let (cancelled, result, seen) = on_loop(|loop_| async move {
        let remote = loop_.threadsafe();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (seen_tx, seen_rx) = mpsc::channel::<String>();
        let (cancelled, result) = asyncio::to_thread(move || {
            let f = remote
                .run_coroutine_threadsafe(move || async move {
                    started_tx.send(()).unwrap();
                    let out = sleep(10).await;
                    let e = out.as_ref().unwrap_err();
                    seen_tx.send(repr(e)).unwrap();
                    out
                })
                .unwrap();
            started_rx.recv().unwrap();
            let cancelled = f.cancel();
            (cancelled, f.result(None).map_err(|e| repr(&e)))
        })?
        .await?;
        let seen = asyncio::to_thread(move || seen_rx.recv().unwrap())?.await?;
        Ok((cancelled, result, seen))
    });
    assert!(cancelled);
    assert_eq!(result, Err("CancelledError()".to_owned()));
    assert_eq!(seen, "CancelledError()");
}

#[test]
fn run_coroutine_threadsafe_cancelled_before_start_never_runs() {
    on_loop(|loop_| async move {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ran.clone();
        let f = loop_
            .threadsafe()
            .run_coroutine_threadsafe(move || async move {
                r.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(1)
            })?;
        assert!(f.cancel());
        assert!(f.cancelled());
        sleep(0.001).await?;
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        assert!(f.result(None).unwrap_err().is_cancelled());
        Ok(())
    })
}

#[test]
fn run_coroutine_threadsafe_result_timeout() {
    // concurrent.futures: result(timeout=…) -> TimeoutError
    on_loop(|loop_| async move {
        let remote = loop_.threadsafe();
        let err = asyncio::to_thread(move || {
            let f = remote.run_coroutine_threadsafe(|| sleep(10)).unwrap();
            let err = f.result(Some(Duration::from_millis(10))).unwrap_err();
            f.cancel();
            err
        })?
        .await?;
        assert_eq!(err.kind(), ErrorKind::TimeoutError);
        Ok(())
    })
}

#[test]
fn concurrent_future_is_awaitable_on_the_loop() {
    let out = on_loop(|loop_| async move {
        let f = loop_
            .threadsafe()
            .run_coroutine_threadsafe(|| async { Ok(String::from("via await")) })?;
        f.await
    });
    assert_eq!(out, "via await");
}

// ===== ported from test_waitfor.py =====

#[test]
fn wait_for_race_condition() {
    // test_wait_for_race_condition: "ok"
    let out = on_loop(|loop_| async move {
        let fut = Future::<&'static str>::new(&loop_);
        let setter = fut.clone();
        loop_.call_soon(move || setter.set_result("ok"))?;
        wait_for(fut, 0.2).await
    });
    assert_eq!(out, "ok");
}

#[test]
fn wait_for_cancellation_race_condition() {
    // test_wait_for_cancellation_race_condition: 1
    let out = on_loop(|_| async {
        wait_for(
            async {
                assert!(sleep(1).await.unwrap_err().is_cancelled());
                Ok(1)
            },
            0.01,
        )
        .await
    });
    assert_eq!(out, 1);
}

#[test]
fn wait_for_waits_for_task_cancellation() {
    // test_wait_for_waits_for_task_cancellation: TimeoutError, task_done True
    on_loop(|_| async {
        let task_done = Rc::new(Cell::new(false));
        let d = task_done.clone();
        let inner_task = asyncio::create_task(async move {
            let out = match sleep(10).await {
                Err(e) if e.is_cancelled() => {
                    sleep(0.001).await?;
                    Err(e)
                }
                other => other,
            };
            d.set(true);
            out
        })?;
        let err = wait_for(inner_task, 0.001).await.unwrap_err();
        assert!(err.is_timeout());
        assert!(task_done.get());
        Ok(())
    })
}

#[test]
fn wait_for_waits_for_task_cancellation_with_timeout_0() {
    // test_wait_for_waits_for_task_cancellation_w_timeout_0
    on_loop(|_| async {
        let task_done = Rc::new(Cell::new(false));
        let d = task_done.clone();
        let inner_task = asyncio::create_task(async move {
            let out = match sleep(10).await {
                Err(e) if e.is_cancelled() => {
                    sleep(0.001).await?;
                    Err(e)
                }
                other => other,
            };
            d.set(true);
            out
        })?;
        sleep(0.001).await?;
        let err = wait_for(inner_task, 0).await.unwrap_err();
        assert!(err.is_timeout());
        assert!(task_done.get());
        Ok(())
    })
}

#[test]
fn wait_for_reraises_exception_during_cancellation() {
    // test_wait_for_reraises_exception_during_cancellation: FooException
    let err = on_loop(|_| async {
        let inner_task = asyncio::create_task(async {
            let _ = sleep(0.2).await;
            Err::<(), _>(Error::runtime("FooException"))
        })?;
        Ok(wait_for(inner_task, 0.001).await.unwrap_err())
    });
    assert_eq!(repr(err), "RuntimeError('FooException')");
}

#[test]
fn cancel_wait_for_cancels_the_waited_task() {
    // _test_cancel_wait_for (Python issue #23219)
    on_loop(|loop_| async move {
        let l = loop_.clone();
        let task = asyncio::create_task(async move { Future::<()>::new(&l).await })?;
        let t = task.clone();
        let wait = asyncio::create_task(async move { wait_for(t, 10).await })?;
        let w = wait.clone();
        loop_.call_soon(move || {
            w.cancel();
        })?;
        assert!((&wait).await.unwrap_err().is_cancelled());
        assert!(task.cancelled());
        Ok(())
    })
}

#[test]
fn wait_for_issue86296() {
    // test_wait_for_issue86296: the task is cancelled, inner_task is 'done',
    // reached_end False
    on_loop(|_| async {
        let inner_task = asyncio::create_task(async { Ok("done") })?;
        let reached_end = Rc::new(Cell::new(false));
        let (i, r) = (inner_task.clone(), reached_end.clone());
        let task = asyncio::create_task(async move {
            wait_for(i, 100).await?;
            sleep(1).await?;
            r.set(true);
            Ok(())
        })?;
        assert!(!task.done());
        sleep(0).await?;
        task.cancel();
        assert!((&task).await.unwrap_err().is_cancelled());
        assert!(inner_task.done());
        assert_eq!(inner_task.await?, "done");
        assert!(!reached_end.get());
        Ok(())
    })
}

#[test]
fn wait_for_shield_zero_timeout() {
    // WaitForShieldTests.test_zero_timeout
    on_loop(|_| async {
        let task = asyncio::create_task(v("done", 0.01))?;
        let shielded = asyncio::shield(&task)?;
        let err = wait_for(shielded.clone(), 0).await.unwrap_err();
        assert!(err.is_timeout());
        assert!(!task.done());
        assert!(!task.cancelled());
        assert!(shielded.cancelled());
        assert_eq!((&task).await?, "done");
        Ok(())
    })
}

#[test]
fn wait_for_shielded_timeout() {
    // WaitForShieldTests.test_shielded_timeout
    on_loop(|_| async {
        let task = asyncio::create_task(v("done", 0.05))?;
        let err = wait_for(asyncio::shield(&task)?, 0.01).await.unwrap_err();
        assert!(err.is_timeout());
        assert!(!task.done());
        assert!(!task.cancelled());
        assert_eq!(task.await?, "done");
        Ok(())
    })
}

// ===== ported from test_timeouts.py =====

#[test]

fn timeout_zero_sleep_zero() {
    // test_timeout_zero_sleep_zero
    on_loop(|loop_| async move {
        let t0 = loop_.time();
        let cm = timeout(0);
        assert!(cm.run(sleep(0)).await.unwrap_err().is_timeout());
        let t1 = loop_.time();
        assert!(cm.expired());
        let when = cm.when().unwrap();
        assert!(t0 <= when && when <= t1, "{t0} {when} {t1}");
        Ok(())
    })
}

#[test]

fn timeout_in_the_past_sleep_zero() {
    // test_timeout_in_the_past_sleep_zero
    on_loop(|loop_| async move {
        let t0 = loop_.time();
        let cm = timeout(-11);
        assert!(cm.run(sleep(0)).await.unwrap_err().is_timeout());
        assert!(cm.expired());
        assert!(cm.when().unwrap() <= t0);
        Ok(())
    })
}

#[test]
fn foreign_cancel_doesnt_timeout_if_not_expired() {
    // test_foreign_cancel_doesnt_timeout_if_not_expired
    on_loop(|_| async {
        let t = asyncio::create_task(async {
            let cm = timeout(10);
            let out = cm
                .run(async {
                    asyncio::current_task()?.unwrap().cancel();
                    sleep(10).await
                })
                .await;
            assert!(!cm.expired());
            out
        })?;
        assert!((&t).await.unwrap_err().is_cancelled());
        assert!(t.cancelled());
        Ok(())
    })
}

#[test]
fn outer_task_is_not_cancelled_by_timeout() {
    // test_outer_task_is_not_cancelled
    on_loop(|_| async {
        let task = asyncio::create_task(async {
            assert!(timeout(0.001)
                .run(sleep(10))
                .await
                .unwrap_err()
                .is_timeout());
            Ok(())
        })?;
        (&task).await?;
        assert!(!task.cancelled());
        assert!(task.done());
        Ok(())
    })
}

#[test]
fn nested_timeout_in_finally() {
    // test_nested_timeout_in_finally (without the exception chaining)
    on_loop(|_| async {
        let err = timeout(0.01)
            .run(async {
                let first = sleep(1).await;
                assert!(first.as_ref().unwrap_err().is_cancelled());
                // `finally:` block with its own timeout
                let err2 = timeout(0.01).run(sleep(10)).await.unwrap_err();
                assert!(err2.is_timeout());
                first
            })
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        Ok(())
    })
}

#[test]
fn timeout_after_cancellation() {
    // test_timeout_after_cancellation
    let t = on_loop(|_| async {
        let t = asyncio::create_task(async {
            asyncio::current_task()?.unwrap().cancel();
            assert!(sleep(1).await.unwrap_err().is_cancelled());
            let err = timeout(0.0).run(sleep(1)).await.unwrap_err();
            assert!(err.is_timeout());
            Ok(())
        })?;
        (&t).await?;
        Ok(t)
    });
    assert!(!t.cancelled());
}

#[test]
fn cancel_in_timeout_after_cancellation() {
    // test_cancel_in_timeout_after_cancellation
    on_loop(|_| async {
        let t = asyncio::create_task(async {
            asyncio::current_task()?.unwrap().cancel();
            assert!(sleep(1).await.unwrap_err().is_cancelled());
            let err = timeout(1.0)
                .run(async {
                    asyncio::current_task()?.unwrap().cancel();
                    sleep(2).await
                })
                .await
                .unwrap_err();
            assert!(err.is_cancelled());
            Ok(())
        })?;
        (&t).await?;
        Ok(())
    })
}

#[test]
fn timeout_inside_task_group() {
    // test_timeout_taskgroup: the timeout cancels the group's body, the
    // group cancels its children, and TimeoutError comes out.
    on_loop(|_| async {
        let err = timeout(0.01)
            .run(async {
                let tg = TaskGroup::new();
                tg.run(async {
                    tg.create_task(sleep(10))?;
                    sleep(10).await
                })
                .await
            })
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        Ok(())
    })
}

// ===== ported from test_taskgroups.py =====

#[test]
fn task_group_nested_groups_both_cancelled() {
    // test_nested_groups_both_cancelled
    on_loop(|_| async {
        let outer_tg = TaskGroup::new();
        let err = outer_tg
            .run(async {
                let inner_tg = TaskGroup::new();
                let inner_err = inner_tg
                    .run(async {
                        inner_tg.create_task(bad::<()>("runtime", 0.0))?;
                        outer_tg.create_task(bad::<()>("value", 0.0))?;
                        Ok(())
                    })
                    .await
                    .unwrap_err();
                assert_eq!(
                    repr(&inner_err),
                    "ExceptionGroup('unhandled errors in a TaskGroup', [ValueError('runtime')])"
                );
                assert_eq!(asyncio::current_task()?.unwrap().cancelling(), 1);
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(
            repr(err),
            "ExceptionGroup('unhandled errors in a TaskGroup', [ValueError('value')])"
        );
        assert_eq!(asyncio::current_task()?.unwrap().cancelling(), 0);
        Ok(())
    })
}

#[test]
fn task_group_error_and_cancel() {
    // test_error_and_cancel
    on_loop(|loop_| async move {
        let event = Future::<()>::new(&loop_);
        let ev = event.clone();
        let t = asyncio::create_task(async move {
            let tg = TaskGroup::new();
            let err = tg
                .run(async {
                    let ev = ev.clone();
                    tg.create_task(async move {
                        ev.set_result(())?;
                        sleep(0).await?;
                        Err::<(), _>(Error::runtime("raise_error"))
                    })?;
                    sleep(1).await?;
                    panic!("Sleep in group should have been cancelled");
                    #[allow(unreachable_code)]
                    Ok(())
                })
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ExceptionGroup);
            assert_eq!(asyncio::current_task()?.unwrap().cancelling(), 1);
            sleep(1).await?;
            panic!("Sleep after group should have been cancelled");
            #[allow(unreachable_code)]
            Ok(())
        })?;
        event.await?;
        assert_eq!(t.cancelling(), 0);
        t.cancel();
        assert_eq!(t.cancelling(), 1);
        let err = (&t).await.unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
        assert!(t.cancelled());
        Ok(())
    })
}

#[test]
fn task_group_children_spawning_children() {
    // test_taskgroup_24
    on_loop(|_| async {
        let count = Rc::new(Cell::new(0));
        let tg = TaskGroup::new();
        let (g, c) = (tg.clone(), count.clone());
        tg.run(async {
            tg.create_task(async move {
                sleep(0.01).await?;
                for d in [0.01, 0.02] {
                    let c = c.clone();
                    g.create_task(async move {
                        sleep(d).await?;
                        c.set(c.get() + 1);
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            Ok(())
        })
        .await?;
        assert_eq!(count.get(), 2);
        Ok(())
    })
}

#[test]
fn task_group_hydra() {
    // test_taskgroup_25: ZeroDivisionError-like error only; nhydras >= 10
    fn hydra(
        g: TaskGroup,
        n: Rc<Cell<u32>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>>>> {
        Box::pin(async move {
            n.set(n.get() + 1);
            sleep(0.01).await?;
            g.create_task(hydra(g.clone(), n.clone()))?;
            g.create_task(hydra(g.clone(), n.clone()))?;
            Ok(())
        })
    }
    on_loop(|_| async {
        let n = Rc::new(Cell::new(0));
        let tg = TaskGroup::new();
        let n2 = n.clone();
        let err = tg
            .run(async {
                tg.create_task(hydra(tg.clone(), n.clone()))?;
                tg.create_task(async move {
                    while n2.get() < 10 {
                        sleep(0.015).await?;
                    }
                    Err::<(), _>(Error::new(ErrorKind::Exception, "division by zero"))
                })?;
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(
            repr(err),
            "ExceptionGroup('unhandled errors in a TaskGroup', [Exception('division by zero')])"
        );
        assert!(n.get() >= 10);
        Ok(())
    })
}

#[test]
fn task_group_with_eager_child_failing_in_create_task() {
    on_loop(|loop_| async move {
        loop_.set_task_factory(Some(asyncio::eager_task_factory()));
        let tg = TaskGroup::new();
        let reached = Rc::new(Cell::new(false));
        let r = reached.clone();
        let err = tg
            .run(async {
                let t = tg.create_task(async { Err::<(), _>(Error::value("eager")) })?;
                assert!(t.done());
                sleep(1).await?;
                r.set(true);
                Ok(())
            })
            .await
            .unwrap_err();
        loop_.set_task_factory(None);
        assert_eq!(
            repr(err),
            "ExceptionGroup('unhandled errors in a TaskGroup', [ValueError('eager')])"
        );
        assert!(!reached.get());
        assert_eq!(asyncio::current_task()?.unwrap().cancelling(), 0);
        Ok(())
    })
}

// ===== ported from test_tasks.py: as_completed =====

#[test]
fn as_completed_reverse_wait() {
    // test_as_completed_reverse_wait: the first awaitable awaited gets the
    // first completion, whatever its position.
    on_loop(|_| async {
        let futs: Vec<_> =
            asyncio::as_completed([sleep_with(0.01, "a"), sleep_with(0.03, "b")]).collect();
        assert_eq!(futs.len(), 2);
        let mut futs = futs.into_iter();
        let f0 = futs.next().unwrap();
        let f1 = futs.next().unwrap();
        assert_eq!(f1.await?, "a");
        assert_eq!(f0.await?, "b");
        Ok(())
    })
}

#[test]
fn as_completed_resume_iterator() {
    // test_as_completed_resume_iterator
    let mut out = on_loop(|_| async {
        let mut it = asyncio::as_completed([v(0, 0.0), v(1, 0.0), v(2, 0.0), v(3, 0.0)]);
        let mut collected = Vec::new();
        for f in it.by_ref().take(2) {
            collected.push(f.await?);
        }
        assert_eq!(collected.len(), 2);
        for f in it {
            collected.push(f.await?);
        }
        Ok(collected)
    });
    out.sort();
    assert_eq!(out, [0, 1, 2, 3]);
}

#[test]
fn as_completed_concurrent() {
    // test_as_completed_concurrent: the awaitables may be awaited concurrently.
    let mut out = on_loop(|_| async {
        let mut it = asyncio::as_completed([sleep_with(0.01, "a"), sleep_with(0.01, "b")]);
        let a = it.next().unwrap();
        let b = it.next().unwrap();
        assert!(it.next().is_none());
        let (x, y) = asyncio::gather!(a, b).await?;
        Ok(vec![x, y])
    });
    out.sort();
    assert_eq!(out, ["a", "b"]);
}

#[test]
fn run_coroutine_threadsafe_task_cancelled_on_the_loop() {
    // test_run_coroutine_threadsafe_task_cancelled: CancelledError
    on_loop(|loop_| async move {
        let remote = loop_.threadsafe();
        let err = asyncio::to_thread(move || {
            let f = remote
                .run_coroutine_threadsafe(|| async {
                    let me = asyncio::current_task()?.unwrap();
                    me.cancel();
                    sleep(10).await
                })
                .unwrap();
            let err = f.result(None).unwrap_err();
            assert!(f.cancelled());
            err
        })?
        .await?;
        assert!(err.is_cancelled());
        Ok(())
    })
}

#[test]

fn run_coroutine_threadsafe_task_factory_exception() {
    // test_run_coroutine_threadsafe_task_factory_exception: the future fails
    // with the factory's error AND the exception handler is called once with
    // that same exception (the loop callback re-raises it).
    let loop_ = asyncio::new_event_loop().unwrap();
    let seen: Rc<RefCell<Vec<asyncio::ExceptionContext>>> = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    loop_.set_exception_handler(Some(
        move |_: &EventLoop, ctx: &asyncio::ExceptionContext| s.borrow_mut().push(ctx.clone()),
    ));
    let refuse = |_: &EventLoop, _: &mut asyncio::TaskInit| -> Result<()> {
        Err(Error::new(ErrorKind::Exception, "NameError"))
    };
    let remote = loop_.threadsafe();
    let err = loop_
        .run_until_complete(async move {
            asyncio::get_running_loop()?.set_task_factory(Some(Rc::new(refuse)));
            // Submitted through the thread-safe handle; made on the loop thread.
            let f = remote.run_coroutine_threadsafe(|| async { Ok(1) })?;
            Ok(f.await.unwrap_err())
        })
        .unwrap();
    loop_.set_task_factory(None);
    assert_eq!(err.message(), "NameError");
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].exception.as_ref().unwrap().ptr_eq(&err));
    drop(seen);
    loop_.close().unwrap();
}

#[test]
fn run_coroutine_threadsafe_on_a_closed_loop_is_runtime_error() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let remote = loop_.threadsafe();
    loop_.close().unwrap();
    let err = std::thread::spawn(move || {
        remote
            .run_coroutine_threadsafe(|| async { Ok(()) })
            .unwrap_err()
    })
    .join()
    .unwrap();
    assert_eq!(repr(err), "RuntimeError('Event loop is closed')");
}

#[test]
fn as_completed_timeout_does_not_cancel_the_rest() {
    on_loop(|_| async {
        let slow = asyncio::create_task(v(2, 0.05))?;
        let mut it = asyncio::as_completed([slow.clone()]).timeout(0.001);
        let err = it.next().unwrap().await.unwrap_err();
        assert!(err.is_timeout());
        assert!(!slow.cancelled());
        assert_eq!(slow.await?, 2);
        Ok(())
    })
}

#[test]
fn timeout_reschedule_none_disables_it() {
    // test_timeout_disabled
    on_loop(|_| async {
        let cm = timeout(0.01);
        let inner = cm.clone();
        cm.run(async move {
            inner.reschedule(None)?;
            assert_eq!(inner.when(), None);
            sleep(0.03).await
        })
        .await?;
        assert!(!cm.expired());
        Ok(())
    })
}

#[test]
fn task_group_create_task_named() {
    on_loop(|_| async {
        let tg = TaskGroup::new();
        let t = tg
            .run(async { tg.create_task_named(v(1, 0.0), "child") })
            .await?;
        assert_eq!(t.get_name(), "child");
        assert_eq!(t.result()?, 1);
        Ok(())
    })
}

// ===== ported from test_tasks.py: cancellation through await, wait, shield =====

#[test]
fn yield_future_passes_cancel() {
    // test_yield_future_passes_cancel: proof == 101, waiter cancelled
    on_loop(|loop_| async move {
        let proof = Rc::new(Cell::new(0));
        let waiter = Future::<()>::new(&loop_);
        let (p, w) = (proof.clone(), waiter.clone());
        let inner = async move {
            match w.await {
                Err(e) if e.is_cancelled() => {
                    p.set(p.get() + 1);
                    Err::<(), _>(e)
                }
                _ => panic!("got past sleep() in inner()"),
            }
        };
        let p = proof.clone();
        let f = asyncio::create_task(async move {
            match inner.await {
                Err(e) if e.is_cancelled() => p.set(p.get() + 100),
                _ => p.set(p.get() + 10),
            }
            Ok(())
        })?;
        sleep(0).await?;
        f.cancel();
        (&f).await?;
        assert_eq!(proof.get(), 101);
        assert!(waiter.cancelled());
        Ok(())
    })
}

#[test]
fn yield_wait_does_not_shield_cancel() {
    // test_yield_wait_does_not_shield_cancel: proof == 1
    on_loop(|loop_| async move {
        let proof = Rc::new(Cell::new(0));
        let waiter = Future::<()>::new(&loop_);
        let (p, w) = (proof.clone(), waiter.clone());
        let p2 = proof.clone();
        let f = asyncio::create_task(async move {
            let inner = asyncio::create_task(async move {
                w.await?;
                p.set(p.get() + 1);
                Ok(())
            })?;
            asyncio::wait([inner]).await?;
            p2.set(p2.get() + 100);
            Ok(())
        })?;
        sleep(0).await?;
        f.cancel();
        assert!((&f).await.unwrap_err().is_cancelled());
        waiter.set_result(())?;
        sleep(0).await?;
        sleep(0).await?;
        assert_eq!(proof.get(), 1);
        Ok(())
    })
}

#[test]
fn shield_effect() {
    // test_shield_effect: cancelling outer() does not affect inner(): proof == 1
    on_loop(|loop_| async move {
        let proof = Rc::new(Cell::new(0));
        let waiter = Future::<()>::new(&loop_);
        let (p, w) = (proof.clone(), waiter.clone());
        let p2 = proof.clone();
        let f = asyncio::create_task(async move {
            asyncio::shield(async move {
                w.await?;
                p.set(p.get() + 1);
                Ok(())
            })?
            .await?;
            p2.set(p2.get() + 100);
            Ok(())
        })?;
        sleep(0).await?;
        f.cancel();
        assert!((&f).await.unwrap_err().is_cancelled());
        waiter.set_result(())?;
        sleep(0).await?;
        sleep(0).await?;
        assert_eq!(proof.get(), 1);
        Ok(())
    })
}

#[test]
fn gather_shield() {
    // test_gather_shield: cancelling the gather cancels the shields, not the children.
    on_loop(|loop_| async move {
        let child1 = Future::<i32>::new(&loop_);
        let child2 = Future::<i32>::new(&loop_);
        let inner1 = asyncio::shield(&child1)?;
        let inner2 = asyncio::shield(&child2)?;
        let parent = asyncio::gather([inner1.clone(), inner2.clone()]);
        sleep(0).await?;
        assert!(parent.cancel());
        sleep(0).await?;
        assert!(inner1.cancelled());
        assert!(inner2.cancelled());
        assert!(parent.await.unwrap_err().is_cancelled());
        assert!(!child1.cancelled());
        assert!(!child2.cancelled());
        child1.set_result(1)?;
        child2.set_result(2)?;
        sleep(0).await?;
        Ok(())
    })
}

#[test]
fn shield_cancelled_outer_leaves_inner_error_unretrieved() {
    // CPython: cancelling the outer removes the inner callback, so a later
    // inner failure is never retrieved: ['Task exception was never retrieved']
    let loop_ = asyncio::new_event_loop().unwrap();
    let reports = Rc::new(RefCell::new(Vec::<String>::new()));
    let r = reports.clone();
    loop_.set_exception_handler(Some(
        move |_: &EventLoop, ctx: &asyncio::ExceptionContext| {
            r.borrow_mut().push(ctx.message.clone())
        },
    ));
    loop_
        .run_until_complete(async {
            let outer = asyncio::shield(bad::<()>("inner failed", 0.01))?;
            outer.cancel();
            sleep(0.03).await
        })
        .unwrap();
    loop_.close().unwrap();
    assert_eq!(*reports.borrow(), ["Task exception was never retrieved"]);
}

#[test]

fn cancelling_a_task_waiting_in_as_completed() {
    // CPython: True True False (done, cancelled; the awaited future untouched)
    on_loop(|loop_| async move {
        for use_next_future in [false, true] {
            let f = Future::<i32>::new(&loop_);
            let f2 = f.clone();
            let t = asyncio::create_task(async move {
                let mut it = asyncio::as_completed([f2]);
                if use_next_future {
                    it.next_future().await.unwrap()?.result()
                } else {
                    it.next().unwrap().await
                }
            })?;
            sleep(0).await?;
            t.cancel();
            sleep(0).await?;
            sleep(0).await?;
            let state = (t.done(), t.cancelled(), f.cancelled());
            // Let a buggy task finish so that nothing is left behind.
            if !f.done() {
                f.set_result(0)?;
            }
            let _ = (&t).await;
            assert_eq!(state, (true, true, false), "next_future={use_next_future}");
        }
        Ok(())
    })
}
