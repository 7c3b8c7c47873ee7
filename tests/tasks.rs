//! `asyncio.Task`, `create_task`, `current_task`, `all_tasks`, cancellation
//! and task factories on the Tokio-backed loop, against CPython 3.13
//! (`test_asyncio/test_tasks.py`, `test_eager_task_factory.py`).

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use asyncio::{
    AnyTask, Error, ErrorKind, EventLoop, ExceptionContext, Future, Result, Task, TaskInit,
};
use common::{entries, log, on_loop, push};

fn task_number(name: &str) -> u64 {
    name.strip_prefix("Task-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a default task name: {name}"))
}

/// Awaits `t` and returns its error (panics if it succeeded).
async fn error_of<T: Clone + 'static>(t: &Task<T>) -> Error {
    match t.await {
        Ok(_) => panic!("task succeeded"),
        Err(e) => e,
    }
}

// ----- creation and names -----

#[test]
fn create_task_runs_the_coroutine() {
    let v = on_loop(|_| async {
        let t = asyncio::create_task(async {
            asyncio::sleep(0).await?;
            Ok(6 * 7)
        })?;
        assert!(!t.done());
        let v = (&t).await?;
        assert!(t.done());
        assert!(!t.cancelled());
        assert_eq!(t.result()?, 42);
        assert!(t.exception()?.is_none());
        Ok(v)
    });
    assert_eq!(v, 42);
}

#[test]
fn create_task_does_not_start_the_body_synchronously() {
    let order = on_loop(|_| async {
        let order = log();
        let o = order.clone();
        let t = asyncio::create_task(async move {
            push(&o, "body");
            Ok(())
        })?;
        push(&order, "after create_task");
        t.await?;
        Ok(entries(&order))
    });
    assert_eq!(order, ["after create_task", "body"]);
}

#[test]
fn create_task_outside_a_running_loop_is_runtime_error() {
    let err = asyncio::create_task(async { Ok(()) }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert_eq!(err.to_string(), "no running event loop");
}

#[test]
fn loop_create_task_on_closed_loop_is_runtime_error() {
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_.close().unwrap();
    let err = loop_.create_task(async { Ok(()) }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert_eq!(err.to_string(), "Event loop is closed");
}

#[test]
fn loop_create_task_before_run_is_scheduled() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let t = loop_
        .create_task(async {
            asyncio::sleep(0).await?;
            Ok("done")
        })
        .unwrap();
    assert!(!t.done());
    assert_eq!(loop_.run_until_complete(t.clone()).unwrap(), "done");
    loop_.close().unwrap();
}

#[test]
fn task_names_default_and_given() {
    on_loop(|_| async {
        let a = asyncio::create_task(async { Ok(()) })?;
        let b = asyncio::create_task(async { Ok(()) })?;
        let na = task_number(&a.get_name());
        let nb = task_number(&b.get_name());
        assert!(nb > na, "{na} then {nb}");
        let c = asyncio::create_task_named(async { Ok(()) }, "worker")?;
        assert_eq!(c.get_name(), "worker");
        c.set_name("renamed");
        assert_eq!(c.get_name(), "renamed");
        assert_eq!(c.as_any().get_name(), "renamed");
        a.await?;
        b.await?;
        c.await?;
        Ok(())
    })
}

#[test]
fn task_repr_follows_python() {
    // CPython: <Task pending name='nm' coro=<sleep() running at …>>,
    // then wait_for=<Future pending cb=[Task.task_wakeup()]>,
    // <Task cancelling name='nm' … wait_for=<Future cancelled>>,
    // <Task cancelled name='nm' coro=<…>>,
    // <Task finished name='Task-10' coro=<…> exception=ValueError('v')>
    on_loop(|loop_| async move {
        loop_.set_debug(false);
        let t = asyncio::create_task_named(asyncio::sleep(10), "nm")?;
        let r = format!("{t:?}");
        assert!(r.starts_with("<Task pending name='nm' coro=<"), "{r}");
        assert!(!r.contains("wait_for="), "{r}");
        asyncio::sleep(0).await?;
        let r = format!("{t:?}");
        assert!(r.starts_with("<Task pending name='nm' coro=<"), "{r}");
        assert!(
            r.ends_with(" wait_for=<Future pending cb=[Task.task_wakeup()]>>"),
            "{r}"
        );
        t.cancel();
        let r = format!("{t:?}");
        assert!(r.starts_with("<Task cancelling name='nm' coro=<"), "{r}");
        assert!(r.ends_with(" wait_for=<Future cancelled>>"), "{r}");
        let _ = (&t).await;
        let r = format!("{t:?}");
        assert!(r.starts_with("<Task cancelled name='nm' coro=<"), "{r}");
        assert!(!r.contains("wait_for"), "{r}");

        let bad = asyncio::create_task_named(async { Err::<(), _>(Error::value("v")) }, "bad")?;
        let _ = (&bad).await;
        let r = format!("{bad:?}");
        assert!(r.starts_with("<Task finished name='bad' coro=<"), "{r}");
        assert!(r.ends_with("> exception=ValueError('v')>"), "{r}");
        Ok(())
    })
}

// ----- get_coro -----

async fn coro_worker() -> Result<i32> {
    asyncio::sleep(0).await?;
    Ok(1)
}

async fn other_worker() -> Result<i32> {
    Ok(2)
}

#[test]
fn get_coro_names_the_coroutine_type() {
    // CPython: task.get_coro() is the coroutine object, e.g.
    // <coroutine object worker at 0x…>; a Rust future has only its type,
    // so get_coro() gives the type's name.
    on_loop(|_| async {
        let coro = coro_worker();
        let expected = std::any::type_name_of_val(&coro);
        let t = asyncio::create_task(coro)?;
        assert_eq!(t.get_coro(), expected);
        assert!(t.get_coro().contains("coro_worker"), "{}", t.get_coro());
        // The type-erased handle says the same; the repr names the
        // coroutine as CPython does: `coro=<coro_worker()>`.
        assert_eq!(t.as_any().get_coro(), expected);
        assert!(format!("{t:?}").contains(" coro=<coro_worker()>"), "{t:?}");
        // Still the same coroutine once the task is done (as in CPython).
        assert_eq!((&t).await?, 1);
        assert_eq!(t.get_coro(), expected);
        Ok(())
    })
}

#[test]
fn get_coro_tells_coroutines_apart() {
    on_loop(|_| async {
        let a = asyncio::create_task(coro_worker())?;
        let b = asyncio::create_task(other_worker())?;
        let block = async { Ok(3) };
        let block_name = std::any::type_name_of_val(&block);
        let c = asyncio::create_task(block)?;
        assert!(a.get_coro().contains("coro_worker"), "{}", a.get_coro());
        assert!(b.get_coro().contains("other_worker"), "{}", b.get_coro());
        assert_eq!(c.get_coro(), block_name);
        assert_ne!(a.get_coro(), b.get_coro());
        assert_ne!(a.get_coro(), c.get_coro());
        // Two tasks of the same coroutine function share the name.
        let a2 = asyncio::create_task(coro_worker())?;
        assert_eq!(a.get_coro(), a2.get_coro());
        assert_eq!(a.await? + b.await? + c.await? + a2.await?, 7);
        Ok(())
    })
}

#[test]
fn get_coro_of_current_task_all_tasks_and_task_factory_agree() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let seen_by_factory = Rc::new(RefCell::new(Vec::new()));
    let s = seen_by_factory.clone();
    let factory = move |_: &EventLoop, init: &mut TaskInit| -> Result<()> {
        s.borrow_mut().push(init.coro_name());
        Ok(())
    };
    loop_.set_task_factory(Some(Rc::new(factory)));
    let coro = async {
        let me = asyncio::current_task()?.expect("inside a task");
        let listed: Vec<&'static str> = asyncio::all_tasks()?
            .iter()
            .filter(|t| t.get_name() == me.get_name())
            .map(AnyTask::get_coro)
            .collect();
        Ok((me.get_coro(), listed))
    };
    let expected = std::any::type_name_of_val(&coro);
    let t = loop_.create_task(coro).unwrap();
    assert_eq!(t.get_coro(), expected);
    let (from_current, from_all) = loop_.run_until_complete(t).unwrap();
    assert_eq!(from_current, expected);
    assert_eq!(from_all, [expected]);
    assert_eq!(*seen_by_factory.borrow(), [expected]);
    loop_.close().unwrap();
}

// ----- results -----

#[test]
fn result_of_pending_task_is_invalid_state() {
    on_loop(|_| async {
        let t = asyncio::create_task(asyncio::sleep(0))?;
        let err = t.result().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidStateError);
        assert_eq!(err.to_string(), "Result is not set.");
        assert_eq!(
            t.exception().unwrap_err().to_string(),
            "Exception is not set."
        );
        t.await
    })
}

#[test]
fn failing_task_ends_finished_with_its_error() {
    on_loop(|_| async {
        let t = asyncio::create_task(async { Err::<i32, _>(Error::value("bad")) })?;
        let err = error_of(&t).await;
        assert_eq!(format!("{err:?}"), "ValueError('bad')");
        assert!(t.done());
        assert!(!t.cancelled());
        assert_eq!(
            format!("{:?}", t.exception()?.unwrap()),
            "ValueError('bad')"
        );
        assert_eq!(
            format!("{:?}", t.result().unwrap_err()),
            "ValueError('bad')"
        );
        Ok(())
    })
}

#[test]
fn task_take_moves_a_non_clone_result() {
    struct Big(Vec<u8>);
    let n = on_loop(|_| async {
        let t = asyncio::create_task(async { Ok(Big(vec![1, 2, 3])) })?;
        let big = t.take().await?;
        Ok(big.0.len())
    });
    assert_eq!(n, 3);
}

#[test]
fn awaiting_a_task_from_several_tasks() {
    let out = on_loop(|_| async {
        let shared = asyncio::create_task(async {
            asyncio::sleep(0.01).await?;
            Ok(String::from("v"))
        })?;
        let mut waiters = Vec::new();
        for i in 0..3 {
            let s = shared.clone();
            waiters.push(asyncio::create_task(async move {
                Ok(format!("{i}{}", s.await?))
            })?);
        }
        asyncio::gather(waiters).await
    });
    assert_eq!(out, ["0v", "1v", "2v"]);
}

#[test]
fn dropped_task_handle_still_runs_and_is_listed_in_all_tasks() {
    let ran = on_loop(|_| async {
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        let t = asyncio::create_task_named(
            async move {
                asyncio::sleep(0.01).await?;
                r.set(true);
                Ok(())
            },
            "orphan",
        )?;
        drop(t);
        let names: Vec<String> = asyncio::all_tasks()?
            .iter()
            .map(AnyTask::get_name)
            .collect();
        assert!(names.contains(&"orphan".to_owned()), "{names:?}");
        asyncio::sleep(0.05).await?;
        // Done tasks are not listed.
        let names: Vec<String> = asyncio::all_tasks()?
            .iter()
            .map(AnyTask::get_name)
            .collect();
        assert!(!names.contains(&"orphan".to_owned()), "{names:?}");
        Ok(ran.get())
    });
    assert!(ran);
}

#[test]
fn all_tasks_includes_the_current_task_and_excludes_done_ones() {
    on_loop(|_| async {
        let me = asyncio::current_task()?.expect("inside a task");
        let all = asyncio::all_tasks()?;
        assert!(all.iter().any(|t| t.ptr_eq(&me)));
        let done = asyncio::create_task(async { Ok(()) })?;
        (&done).await?;
        assert!(!asyncio::all_tasks()?.iter().any(|t| t.is(&done)));
        Ok(())
    })
}

#[test]
fn all_tasks_without_running_loop_is_runtime_error() {
    let err = asyncio::all_tasks().unwrap_err();
    assert_eq!(err.to_string(), "no running event loop");
}

// ----- current_task -----

#[test]
fn current_task_inside_and_outside_tasks() {
    on_loop(|loop_| async move {
        let t = asyncio::create_task(async {
            let me = asyncio::current_task()?.expect("inside a task");
            Ok(me.get_name())
        })?;
        let name = (&t).await?;
        assert_eq!(name, t.get_name());
        // A plain callback runs outside any task (CPython: None).
        let seen = Rc::new(RefCell::new(None));
        let s = seen.clone();
        loop_.call_soon(move || {
            *s.borrow_mut() = Some(asyncio::current_task().map(|t| t.is_none()));
        })?;
        asyncio::sleep(0).await?;
        assert!(seen.borrow().clone().unwrap().unwrap());
        Ok(())
    })
}

#[test]
fn current_task_without_running_loop_is_runtime_error() {
    // CPython: RuntimeError('no running event loop')
    let err = asyncio::current_task().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert_eq!(err.to_string(), "no running event loop");
    let loop_ = asyncio::new_event_loop().unwrap();
    assert!(asyncio::current_task_of(&loop_).is_none());
    loop_.close().unwrap();
}

// ----- cancellation -----

#[test]
fn cancel_delivers_cancelled_error_at_the_awaited_future() {
    // CPython: t.cancel('msg') -> True; the awaited future is cancelled; the
    // task catches CancelledError('msg') and returns: FINISHED, cancelling()==1.
    on_loop(|loop_| async move {
        let fut = Future::<i32>::new(&loop_);
        let f = fut.clone();
        let t = asyncio::create_task(async move {
            match f.await {
                Err(e) if e.is_cancelled() => Ok(format!("caught {e:?}")),
                other => Ok(format!("unexpected {other:?}")),
            }
        })?;
        asyncio::sleep(0).await?;
        assert!(t.cancel_with_message("msg"));
        assert!(fut.cancelled());
        assert_eq!((&t).await?, "caught CancelledError('msg')");
        assert!(!t.cancelled());
        assert_eq!(t.cancelling(), 1);
        Ok(())
    })
}

#[test]
fn task_letting_cancelled_error_out_ends_cancelled() {
    on_loop(|_| async {
        let t = asyncio::create_task(asyncio::sleep(10))?;
        asyncio::sleep(0).await?;
        assert!(t.cancel_with_message("stop"));
        let err = error_of(&t).await;
        assert_eq!(format!("{err:?}"), "CancelledError('stop')");
        assert!(t.cancelled());
        assert!(t.done());
        // CPython hands the CancelledError the coroutine raised out once
        // (`_make_cancelled_error`); the task's own cancel() had no message,
        // so later ones are bare: result CancelledError(), exception
        // CancelledError().
        assert_eq!(format!("{:?}", t.result().unwrap_err()), "CancelledError()");
        assert_eq!(
            format!("{:?}", t.exception().unwrap_err()),
            "CancelledError()"
        );
        Ok(())
    })
}

#[test]
fn cancel_counts_requests_and_returns_false_when_done() {
    // CPython: True True 2 / CancelledError() / False 2
    on_loop(|_| async {
        let t = asyncio::create_task(asyncio::sleep(10))?;
        asyncio::sleep(0).await?;
        assert!(t.cancel());
        assert!(t.cancel());
        assert_eq!(t.cancelling(), 2);
        let err = error_of(&t).await;
        assert_eq!(format!("{err:?}"), "CancelledError()");
        assert!(!t.cancel());
        assert_eq!(t.cancelling(), 2);
        Ok(())
    })
}

#[test]

fn second_cancel_keeps_the_message_of_the_cancelled_waiter() {
    // CPython: t.cancel('first'); t.cancel() -> CancelledError('first'), cancelling() 2
    // (Task.__step keeps the CancelledError it was woken with).
    on_loop(|_| async {
        let t = asyncio::create_task(asyncio::sleep(10))?;
        asyncio::sleep(0).await?;
        t.cancel_with_message("first");
        t.cancel();
        let err = error_of(&t).await;
        assert_eq!(format!("{err:?}"), "CancelledError('first')");
        assert_eq!(t.cancelling(), 2);
        Ok(())
    })
}

#[test]

fn second_cancel_with_message_after_plain_cancel() {
    // CPython: t.cancel(); t.cancel('second') -> CancelledError()
    on_loop(|_| async {
        let t = asyncio::create_task(asyncio::sleep(10))?;
        asyncio::sleep(0).await?;
        t.cancel();
        t.cancel_with_message("second");
        let err = error_of(&t).await;
        assert_eq!(format!("{err:?}"), "CancelledError()");
        Ok(())
    })
}

#[test]
fn task_returning_cancelled_error_itself_ends_cancelled() {
    // CPython: raise CancelledError('own') -> cancelled() True, cancelling() 0
    on_loop(|_| async {
        let t = asyncio::create_task(async { Err::<(), _>(Error::cancelled(Some("own"))) })?;
        let err = error_of(&t).await;
        assert_eq!(format!("{err:?}"), "CancelledError('own')");
        assert!(t.cancelled());
        assert_eq!(t.cancelling(), 0);
        Ok(())
    })
}

#[test]
fn task_cancelled_before_first_step_never_runs_its_body() {
    // CPython: early CancelledError('early') [] True
    on_loop(|_| async {
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        let t = asyncio::create_task(async move {
            r.set(true);
            Ok(1)
        })?;
        assert!(t.cancel_with_message("early"));
        let err = error_of(&t).await;
        assert_eq!(format!("{err:?}"), "CancelledError('early')");
        assert!(t.cancelled());
        assert!(!ran.get());
        Ok(())
    })
}

#[test]
fn uncancel_to_zero_clears_a_pending_cancel() {
    // CPython 3.13: cancel() -> True 1; uncancel() -> 0 0; the body runs: 'ran'
    on_loop(|_| async {
        let t = asyncio::create_task(async {
            asyncio::sleep(0).await?;
            Ok("ran")
        })?;
        assert!(t.cancel());
        assert_eq!(t.cancelling(), 1);
        assert_eq!(t.uncancel(), 0);
        assert_eq!(t.cancelling(), 0);
        assert_eq!((&t).await?, "ran");
        assert!(!t.cancelled());
        Ok(())
    })
}

#[test]
fn uncancel_after_the_waited_future_was_cancelled_does_not_undo_it() {
    // CPython: the future the task waits on is already cancelled: 'still cancelled', 0
    on_loop(|_| async {
        let t = asyncio::create_task(asyncio::sleep_with(0.01, "slept"))?;
        asyncio::sleep(0).await?;
        t.cancel();
        assert_eq!(t.uncancel(), 0);
        let err = error_of(&t).await;
        assert!(err.is_cancelled());
        assert_eq!(t.cancelling(), 0);
        Ok(())
    })
}

#[test]
fn uncancel_never_goes_below_zero() {
    on_loop(|_| async {
        let t = asyncio::create_task(async { Ok(()) })?;
        assert_eq!(t.uncancel(), 0);
        assert_eq!(t.cancelling(), 0);
        t.await
    })
}

#[test]
fn task_cancelling_itself_then_returning_ends_cancelled() {
    // CPython: sc CancelledError('me') True
    on_loop(|_| async {
        let t = asyncio::create_task(async {
            asyncio::current_task()?.unwrap().cancel_with_message("me");
            Ok(5)
        })?;
        let err = error_of(&t).await;
        assert_eq!(format!("{err:?}"), "CancelledError('me')");
        assert!(t.cancelled());
        Ok(())
    })
}

#[test]
fn task_cancelling_itself_gets_cancelled_error_at_next_await() {
    // CPython: 'caught at sleep0'
    let v = on_loop(|_| async {
        let t = asyncio::create_task(async {
            asyncio::current_task()?.unwrap().cancel();
            match asyncio::sleep(0).await {
                Err(e) if e.is_cancelled() => Ok("caught at sleep0"),
                _ => Ok("not cancelled"),
            }
        })?;
        t.await
    });
    assert_eq!(v, "caught at sleep0");
}

#[test]
fn cancel_while_in_a_tokio_future_arrives_at_next_asyncio_await() {
    let out = on_loop(|_| async {
        let order = log();
        let o = order.clone();
        let t = asyncio::create_task(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            push(&o, "tokio sleep finished");
            match asyncio::sleep(0.01).await {
                Err(e) if e.is_cancelled() => {
                    push(&o, format!("asyncio await: {e:?}"));
                    Err(e)
                }
                _ => Ok(()),
            }
        })?;
        asyncio::sleep(0).await?;
        t.cancel_with_message("late");
        let err = error_of(&t).await;
        assert!(t.cancelled());
        assert_eq!(format!("{err:?}"), "CancelledError('late')");
        Ok(entries(&order))
    });
    assert_eq!(
        out,
        [
            "tokio sleep finished",
            "asyncio await: CancelledError('late')"
        ]
    );
}

#[test]
fn cancelling_an_awaiting_task_cancels_the_awaited_task() {
    // CPython: outer CancelledError('x') True
    on_loop(|_| async {
        let inner = asyncio::create_task(asyncio::sleep(10))?;
        let i = inner.clone();
        let outer = asyncio::create_task(async move { i.await })?;
        asyncio::sleep(0).await?;
        assert!(outer.cancel_with_message("x"));
        let err = error_of(&outer).await;
        assert_eq!(format!("{err:?}"), "CancelledError('x')");
        assert!(outer.cancelled());
        assert!(inner.cancelled());
        Ok(())
    })
}

#[test]
fn cancelled_awaited_task_gives_cancelled_error_to_the_awaiter() {
    // CPython: ('outer caught', "CancelledError('i')", 0)
    let out = on_loop(|_| async {
        let inner = asyncio::create_task(asyncio::sleep(10))?;
        let i = inner.clone();
        let outer = asyncio::create_task(async move {
            match i.await {
                Err(e) if e.is_cancelled() => Ok(format!(
                    "outer caught {e:?} {}",
                    asyncio::current_task()?.unwrap().cancelling()
                )),
                other => Ok(format!("{other:?}")),
            }
        })?;
        asyncio::sleep(0).await?;
        inner.cancel_with_message("i");
        outer.await
    });
    assert_eq!(out, "outer caught CancelledError('i') 0");
}

#[test]
fn task_awaiting_itself_is_runtime_error() {
    // CPython: RuntimeError("Task cannot await on itself: <Task pending
    // name='Task-6' coro=<…> cb=[Task.task_wakeup()]>")
    on_loop(|_| async {
        let t = asyncio::create_task_named(
            async {
                let me = asyncio::current_task()?.unwrap();
                me.await
            },
            "selfish",
        )?;
        let err = error_of(&t).await;
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        let msg = err.to_string();
        assert!(
            msg.starts_with("Task cannot await on itself: <Task pending name='selfish' coro=<"),
            "{msg}"
        );
        assert!(t.done());
        assert!(!t.cancelled());
        Ok(())
    })
}

#[test]
fn awaiting_a_task_of_another_loop_is_runtime_error() {
    let other = asyncio::new_event_loop().unwrap();
    let foreign = other.create_task(async { Ok(1) }).unwrap();
    let err = on_loop(move |_| async move { Ok(foreign.await.unwrap_err()) });
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    let msg = err.to_string();
    assert!(msg.starts_with("Task <Task pending name="), "{msg}");
    assert!(msg.contains(" got Future <Task pending name="), "{msg}");
    assert!(msg.ends_with(" attached to a different loop"), "{msg}");
    other.close().unwrap();
}

#[test]
fn cancel_of_a_done_task_returns_false() {
    on_loop(|_| async {
        let t = asyncio::create_task(async { Ok(3) })?;
        assert_eq!((&t).await?, 3);
        assert!(!t.cancel());
        assert_eq!(t.cancelling(), 0);
        assert_eq!(t.result()?, 3);
        Ok(())
    })
}

#[test]
fn any_task_cancel_and_inspection() {
    on_loop(|_| async {
        let t = asyncio::create_task_named(asyncio::sleep(10), "any")?;
        asyncio::sleep(0).await?;
        let any = t.as_any();
        assert!(any.is(&t));
        assert!(!any.done());
        assert!(any.cancel_with_message("via any"));
        assert_eq!(any.cancelling(), 1);
        let err = (&any).await.unwrap_err();
        assert_eq!(format!("{err:?}"), "CancelledError('via any')");
        assert!(any.cancelled());
        assert!(t.cancelled());
        // Handed out once, as CPython's `_make_cancelled_error` does.
        assert_eq!(
            format!("{:?}", any.exception().unwrap()),
            "CancelledError()"
        );
        Ok(())
    })
}

// ----- panics -----

#[test]
fn panic_in_a_task_ends_it_with_panic_error_and_the_loop_goes_on() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let out = loop_
        .run_until_complete(async {
            let t = asyncio::create_task(async {
                asyncio::sleep(0).await?;
                if true {
                    panic!("task exploded");
                }
                Ok(1)
            })?;
            let err = error_of(&t).await;
            assert_eq!(err.kind(), ErrorKind::Panic);
            assert_eq!(err.message(), "task exploded");
            assert!(t.done());
            assert!(!t.cancelled());
            // The loop keeps running tasks.
            let after = asyncio::create_task(async { Ok("still running") })?;
            after.await
        })
        .unwrap();
    assert_eq!(out, "still running");
    // And can be used again.
    assert_eq!(loop_.run_until_complete(async { Ok(2) }).unwrap(), 2);
    loop_.close().unwrap();
}

#[test]
fn panic_in_main_task_is_returned_by_run_until_complete() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let err = loop_
        .run_until_complete(async {
            if true {
                panic!("main exploded");
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panic);
    assert_eq!(err.message(), "main exploded");
    loop_.close().unwrap();
}

// ----- eager tasks and task factories -----

#[test]
fn eager_task_first_step_runs_inside_create_task() {
    // CPython: 8 ['start', ('after', False), 'resumed']
    let out = on_loop(|loop_| async move {
        loop_.set_task_factory(Some(asyncio::eager_task_factory()));
        let order = log();
        let o = order.clone();
        let t = asyncio::create_task(async move {
            push(&o, "start");
            asyncio::sleep(0).await?;
            push(&o, "resumed");
            Ok(8)
        })?;
        push(&order, format!("after done={}", t.done()));
        let v = t.await?;
        loop_.set_task_factory(None);
        Ok((v, entries(&order)))
    });
    assert_eq!(out.0, 8);
    assert_eq!(out.1, ["start", "after done=false", "resumed"]);
}

#[test]
fn eager_task_finishing_in_first_step_is_done_before_create_task_returns() {
    // CPython: ['before', ('body', …), ('after', True)] 7; not in all_tasks()
    on_loop(|loop_| async move {
        loop_.set_task_factory(Some(asyncio::eager_task_factory()));
        let order = log();
        push(&order, "before");
        let o = order.clone();
        let t = asyncio::create_task(async move {
            push(&o, "body");
            Ok(7)
        })?;
        push(&order, format!("after done={}", t.done()));
        assert_eq!(entries(&order), ["before", "body", "after done=true"]);
        assert_eq!(t.result()?, 7);
        assert!(!asyncio::all_tasks()?.iter().any(|a| a.is(&t)));
        loop_.set_task_factory(None);
        Ok(())
    })
}

#[test]
fn eager_task_current_task_is_the_new_task_and_is_restored() {
    on_loop(|loop_| async move {
        let outer = asyncio::current_task()?.unwrap();
        loop_.set_task_factory(Some(asyncio::eager_task_factory()));
        let seen: Rc<RefCell<Option<AnyTask>>> = Rc::new(RefCell::new(None));
        let s = seen.clone();
        let t = asyncio::create_task(async move {
            *s.borrow_mut() = asyncio::current_task()?;
            Ok(())
        })?;
        let inside = seen
            .borrow()
            .clone()
            .expect("a current task in the eager step");
        assert!(inside.is(&t));
        // CPython: after create_task returns, the caller is current again.
        assert!(asyncio::current_task()?.unwrap().ptr_eq(&outer));
        loop_.set_task_factory(None);
        Ok(())
    })
}

#[test]
fn eager_task_failing_in_first_step_is_done_with_the_error() {
    // CPython: True ValueError('e')
    on_loop(|loop_| async move {
        loop_.set_task_factory(Some(asyncio::eager_task_factory()));
        let t = asyncio::create_task(async { Err::<(), _>(Error::value("e")) })?;
        assert!(t.done());
        assert_eq!(format!("{:?}", t.exception()?.unwrap()), "ValueError('e')");
        loop_.set_task_factory(None);
        Ok(())
    })
}

#[test]
fn eager_factory_outside_running_loop_schedules_normally() {
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_.set_task_factory(Some(asyncio::eager_task_factory()));
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let t = loop_
        .create_task(async move {
            r.set(true);
            Ok(1)
        })
        .unwrap();
    assert!(!ran.get());
    assert!(!t.done());
    assert_eq!(loop_.run_until_complete(t).unwrap(), 1);
    assert!(ran.get());
    loop_.close().unwrap();
}

#[test]
fn get_and_set_task_factory() {
    let loop_ = asyncio::new_event_loop().unwrap();
    assert!(loop_.get_task_factory().is_none());
    let f = asyncio::eager_task_factory();
    loop_.set_task_factory(Some(f.clone()));
    assert!(Rc::ptr_eq(&loop_.get_task_factory().unwrap(), &f));
    loop_.set_task_factory(None);
    assert!(loop_.get_task_factory().is_none());
    loop_.close().unwrap();
}

#[test]
fn custom_task_factory_renames_tasks() {
    on_loop(|loop_| async move {
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        let factory = move |_: &EventLoop, init: &mut TaskInit| -> Result<()> {
            c.set(c.get() + 1);
            let name = format!("renamed-{}", init.name().unwrap_or("anon"));
            init.set_name(name);
            Ok(())
        };
        loop_.set_task_factory(Some(Rc::new(factory)));
        let a = asyncio::create_task_named(async { Ok(1) }, "x")?;
        let b = asyncio::create_task(async { Ok(2) })?;
        loop_.set_task_factory(None);
        assert_eq!(a.get_name(), "renamed-x");
        assert_eq!(b.get_name(), "renamed-anon");
        assert_eq!(calls.get(), 2);
        assert_eq!(a.await? + b.await?, 3);
        Ok(())
    })
}

#[test]
fn custom_task_factory_refusing_makes_create_task_fail() {
    // CPython: RuntimeError('refused') from create_task; the coroutine never runs.
    on_loop(|loop_| async move {
        let refuse =
            |_: &EventLoop, _: &mut TaskInit| -> Result<()> { Err(Error::runtime("refused")) };
        loop_.set_task_factory(Some(Rc::new(refuse)));
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        let err = asyncio::create_task(async move {
            r.set(true);
            Ok(())
        })
        .unwrap_err();
        loop_.set_task_factory(None);
        assert_eq!(format!("{err:?}"), "RuntimeError('refused')");
        asyncio::sleep(0).await?;
        assert!(!ran.get());
        Ok(())
    })
}

#[test]
fn custom_factory_making_tasks_eager() {
    on_loop(|loop_| async move {
        let factory = |_: &EventLoop, init: &mut TaskInit| -> Result<()> {
            assert!(!init.eager_start());
            init.set_eager_start(true);
            Ok(())
        };
        loop_.set_task_factory(Some(Rc::new(factory)));
        let t = asyncio::create_task(async { Ok(5) })?;
        loop_.set_task_factory(None);
        assert!(t.done());
        assert_eq!(t.result()?, 5);
        Ok(())
    })
}

// ----- reporting -----

#[test]
fn pending_task_dropped_at_close_is_reported() {
    // CPython: "Task was destroyed but it is pending!"
    let loop_ = asyncio::new_event_loop().unwrap();
    let seen = Rc::new(RefCell::new(Vec::<ExceptionContext>::new()));
    let s = seen.clone();
    loop_.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        s.borrow_mut().push(ctx.clone());
    }));
    let t = loop_.create_task_named(asyncio::sleep(10), "left").unwrap();
    loop_
        .run_until_complete(async { asyncio::sleep(0).await })
        .unwrap();
    assert!(!t.done());
    loop_.close().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].message, "Task was destroyed but it is pending!");
    assert_eq!(seen[0].task().unwrap().get_name(), "left");
}

// ----- ported from test_tasks.py -----

#[test]
fn cancel_after_awaited_future_finished_but_before_resumption_wins() {
    // CPython: fut1.set_result(1); t.cancel('c') -> the task resumes with
    // CancelledError at `await fut1`: 'cancelled at fut1', cancelling() 1.
    let out = on_loop(|loop_| async move {
        let fut1 = Future::<i32>::new(&loop_);
        let f = fut1.clone();
        let t = asyncio::create_task(async move {
            match f.await {
                Err(e) if e.is_cancelled() => Ok(format!("cancelled at fut1 {e:?}")),
                Err(e) => Err(e),
                Ok(_) => Ok("got result".to_owned()),
            }
        })?;
        asyncio::sleep(0).await?;
        fut1.set_result(1)?;
        assert!(t.cancel_with_message("c"));
        let v = (&t).await?;
        Ok((v, t.cancelling()))
    });
    assert_eq!(out, ("cancelled at fut1 CancelledError('c')".to_owned(), 1));
}

#[test]
fn cancel_inner_future_cancels_the_task() {
    // test_cancel_inner_future
    on_loop(|loop_| async move {
        let f = Future::<i32>::new(&loop_);
        let f2 = f.clone();
        let t = asyncio::create_task(async move {
            f2.await?;
            Ok(12)
        })?;
        asyncio::sleep(0).await?;
        f.cancel();
        let err = error_of(&t).await;
        assert!(err.is_cancelled());
        assert!(f.cancelled());
        assert!(t.cancelled());
        Ok(())
    })
}

#[test]
fn cancel_both_task_and_inner_future() {
    // test_cancel_both_task_and_inner_future
    on_loop(|loop_| async move {
        let f = Future::<i32>::new(&loop_);
        let f2 = f.clone();
        let t = asyncio::create_task(async move {
            f2.await?;
            Ok(12)
        })?;
        asyncio::sleep(0).await?;
        f.cancel();
        t.cancel();
        let err = error_of(&t).await;
        assert!(err.is_cancelled());
        assert!(t.done());
        assert!(f.cancelled());
        assert!(t.cancelled());
        Ok(())
    })
}

#[test]
fn cancel_yield() {
    // test_cancel_yield: a task between two sleep(0)s ends cancelled.
    on_loop(|_| async {
        let t = asyncio::create_task(async {
            asyncio::sleep(0).await?;
            asyncio::sleep(0).await?;
            Ok(12)
        })?;
        asyncio::sleep(0).await?;
        t.cancel();
        assert!(error_of(&t).await.is_cancelled());
        assert!(t.done());
        assert!(t.cancelled());
        assert!(!t.cancel());
        Ok(())
    })
}

#[test]
fn cancel_current_task_cancels_its_next_sleep_at_once() {
    // test_cancel_current_task: `await asyncio.sleep(100)` is cancelled immediately.
    let loop_ = asyncio::new_event_loop().unwrap();
    let t0 = loop_.time();
    let t = loop_
        .create_task(async {
            asyncio::current_task()?.unwrap().cancel();
            asyncio::sleep(100).await?;
            Ok(12)
        })
        .unwrap();
    let err = loop_.run_until_complete(t.clone()).unwrap_err();
    assert!(err.is_cancelled());
    assert!(t.cancelled());
    assert!(!t.cancel());
    assert!(loop_.time() - t0 < 100.0);
    loop_.close().unwrap();
}

#[test]
fn cancel_task_catching() {
    // test_cancel_task_catching: 42, not cancelled.
    on_loop(|loop_| async move {
        let fut1 = Future::<()>::new(&loop_);
        let fut2 = Future::<()>::new(&loop_);
        let (f1, f2) = (fut1.clone(), fut2.clone());
        let t = asyncio::create_task(async move {
            f1.await?;
            match f2.await {
                Err(e) if e.is_cancelled() => Ok(42),
                _ => Ok(0),
            }
        })?;
        asyncio::sleep(0).await?;
        fut1.set_result(())?;
        asyncio::sleep(0).await?;
        t.cancel();
        assert!(fut2.cancelled());
        assert_eq!((&t).await?, 42);
        assert!(!t.cancelled());
        Ok(())
    })
}

#[test]
fn cancel_task_ignoring() {
    // test_cancel_task_ignoring: the task swallows the cancellation and goes
    // on to await fut3, which is not cancelled: 42.
    on_loop(|loop_| async move {
        let fut1 = Future::<()>::new(&loop_);
        let fut2 = Future::<()>::new(&loop_);
        let fut3 = Future::<i32>::new(&loop_);
        let (f1, f2, f3) = (fut1.clone(), fut2.clone(), fut3.clone());
        let t = asyncio::create_task(async move {
            f1.await?;
            let _ = f2.await;
            f3.await
        })?;
        asyncio::sleep(0).await?;
        fut1.set_result(())?;
        asyncio::sleep(0).await?;
        t.cancel();
        assert!(fut2.cancelled());
        asyncio::sleep(0).await?;
        fut3.set_result(42)?;
        assert_eq!((&t).await?, 42);
        assert!(!fut3.cancelled());
        assert!(!t.cancelled());
        Ok(())
    })
}

#[test]
fn cancel_awaited_task_requested_while_not_blocked() {
    // test_cancel_awaited_task (bpo-34872)
    on_loop(|loop_| async move {
        let fut = Future::<()>::new(&loop_);
        let nested: Rc<RefCell<Option<Task<()>>>> = Rc::new(RefCell::new(None));
        let (f, n) = (fut.clone(), nested.clone());
        let task = asyncio::create_task(async move {
            let nested_task = asyncio::create_task(async move { f.await })?;
            *n.borrow_mut() = Some(nested_task.clone());
            asyncio::sleep(0).await?;
            asyncio::current_task()?.unwrap().cancel();
            nested_task.await
        })?;
        assert!(error_of(&task).await.is_cancelled());
        assert!(task.cancelled());
        assert!(nested.borrow().as_ref().unwrap().cancelled());
        assert!(fut.cancelled());
        Ok(())
    })
}

#[test]
fn uncancel_basic() {
    // test_uncancel_basic
    let loop_ = asyncio::new_event_loop().unwrap();
    let t = loop_
        .create_task(async {
            if let Err(e) = asyncio::sleep(10).await {
                assert!(e.is_cancelled());
                asyncio::current_task()?.unwrap().uncancel();
                asyncio::sleep(10).await?;
            }
            Ok(())
        })
        .unwrap();
    loop_.run_until_complete(asyncio::sleep(0.01)).unwrap();
    assert!(t.cancel());
    assert!(format!("{t:?}").starts_with("<Task cancelling "));
    assert_eq!(t.cancelling(), 1);
    assert!(!t.cancelled());
    loop_.run_until_complete(asyncio::sleep(0.01)).unwrap();
    assert!(!format!("{t:?}").contains("cancelling"));
    assert_eq!(t.cancelling(), 0);
    assert!(!t.cancelled());
    assert!(t.cancel());
    assert_eq!(t.cancelling(), 1);
    let err = loop_.run_until_complete(t.clone()).unwrap_err();
    assert!(err.is_cancelled());
    assert!(t.cancelled());
    // uncancel is no longer effective after the task is complete
    t.uncancel();
    assert!(t.cancelled());
    assert!(t.done());
    loop_.close().unwrap();
}

#[test]
fn uncancel_resets_must_cancel() {
    // test_uncancel_resets_must_cancel: 42
    let loop_ = asyncio::new_event_loop().unwrap();
    let fut = Future::<()>::new(&loop_);
    let f = fut.clone();
    let task = loop_
        .create_task(async move {
            f.await?;
            Ok(42)
        })
        .unwrap();
    loop_.run_until_complete(asyncio::sleep(0)).unwrap();
    fut.set_result(()).unwrap();
    task.cancel();
    assert_eq!(task.cancelling(), 1);
    task.uncancel();
    assert_eq!(task.cancelling(), 0);
    assert_eq!(loop_.run_until_complete(task).unwrap(), 42);
    loop_.close().unwrap();
}

#[test]
fn uncancel_structured_blocks() {
    // test_uncancel_structured_blocks, the pattern `asyncio.timeout` uses.
    async fn make_request_with_timeout(sleep: f64, timeout: f64) -> Result<(bool, bool, bool)> {
        let task = asyncio::current_task()?.unwrap();
        let loop_ = task.get_loop();
        let timed_out = Rc::new(Cell::new(false));
        let (to, t2) = (timed_out.clone(), task.clone());
        let handle = loop_.call_later(timeout, move || {
            to.set(true);
            t2.cancel();
        })?;
        let mut structured_block_finished = false;
        let outcome = asyncio::sleep(sleep).await;
        if outcome.is_ok() {
            structured_block_finished = true;
        }
        handle.cancel();
        let converted = match outcome {
            Err(e) if timed_out.get() && task.uncancel() == 0 && e.is_cancelled() => {
                Err(Error::timeout())
            }
            other => other,
        };
        match converted {
            Err(e) if e.is_timeout() => assert!(timed_out.get()),
            other => other?,
        }
        let outer_code_reached = true;
        asyncio::sleep(0).await?;
        Ok((
            timed_out.get(),
            structured_block_finished,
            outer_code_reached,
        ))
    }
    let loop_ = asyncio::new_event_loop().unwrap();
    let t1 = loop_
        .create_task(make_request_with_timeout(10.0, 0.05))
        .unwrap();
    assert_eq!(
        loop_.run_until_complete(t1.clone()).unwrap(),
        (true, false, true)
    );
    assert_eq!(t1.cancelling(), 0);
    let t2 = loop_
        .create_task(make_request_with_timeout(0.0, 10.0))
        .unwrap();
    assert_eq!(
        loop_.run_until_complete(t2.clone()).unwrap(),
        (false, true, true)
    );
    assert_eq!(t2.cancelling(), 0);
    loop_.close().unwrap();
}

#[test]
fn current_task_with_interleaving_tasks() {
    // test_current_task_with_interleaving_tasks: [True, True, True, True]
    let out = on_loop(|loop_| async move {
        let order = Rc::new(RefCell::new(Vec::new()));
        let f1 = Future::<bool>::new(&loop_);
        let f2 = Future::<bool>::new(&loop_);
        let slot1: Rc<RefCell<Option<AnyTask>>> = Rc::new(RefCell::new(None));
        let slot2: Rc<RefCell<Option<AnyTask>>> = Rc::new(RefCell::new(None));
        let is_current = |slot: &Rc<RefCell<Option<AnyTask>>>| -> bool {
            let cur = asyncio::current_task().unwrap().unwrap();
            slot.borrow().as_ref().unwrap().ptr_eq(&cur)
        };
        let (o, s, a, b) = (order.clone(), slot1.clone(), f1.clone(), f2.clone());
        let t1 = asyncio::create_task(async move {
            o.borrow_mut().push(is_current(&s));
            a.await?;
            o.borrow_mut().push(is_current(&s));
            b.set_result(true)?;
            Ok(())
        })?;
        let (o, s, a, b) = (order.clone(), slot2.clone(), f1.clone(), f2.clone());
        let t2 = asyncio::create_task(async move {
            o.borrow_mut().push(is_current(&s));
            a.set_result(true)?;
            b.await?;
            o.borrow_mut().push(is_current(&s));
            Ok(())
        })?;
        *slot1.borrow_mut() = Some(t1.as_any());
        *slot2.borrow_mut() = Some(t2.as_any());
        asyncio::gather([t1, t2]).await?;
        let out = order.borrow().clone();
        Ok(out)
    });
    assert_eq!(out, [true, true, true, true]);
}

#[test]
fn log_destroyed_pending_task_not_reported_for_finished_tasks() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    loop_.set_exception_handler(Some(move |_: &EventLoop, _: &ExceptionContext| {
        s.set(s.get() + 1);
    }));
    let t = loop_.create_task(async { Ok(1) }).unwrap();
    loop_.run_until_complete(t).unwrap();
    loop_.close().unwrap();
    assert_eq!(seen.get(), 0);
}

#[test]
fn task_woken_from_another_thread_through_a_tokio_channel() {
    let out = on_loop(|_| async {
        let (tx, rx) = tokio::sync::oneshot::channel::<&'static str>();
        let t =
            asyncio::create_task(
                async move { rx.await.map_err(|e| Error::runtime(e.to_string())) },
            )?;
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            tx.send("from thread").unwrap();
        });
        let v = t.await?;
        sender.join().unwrap();
        Ok(v)
    });
    assert_eq!(out, "from thread");
}

#[test]
fn tokio_spawn_local_and_tokio_time_work_inside_tasks() {
    let out = on_loop(|_| async {
        let h = tokio::task::spawn_local(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            5
        });
        let v = h.await.map_err(|e| Error::runtime(e.to_string()))?;
        Ok(v)
    });
    assert_eq!(out, 5);
}

#[test]
fn run_until_complete_with_a_task_of_another_loop_is_value_error() {
    let other = asyncio::new_event_loop().unwrap();
    let foreign = other.create_task(async { Ok(1) }).unwrap();
    let loop_ = asyncio::new_event_loop().unwrap();
    let err = loop_.run_until_complete(foreign.clone()).unwrap_err();
    assert_eq!(
        format!("{err:?}"),
        "ValueError('The future belongs to a different loop than the one specified as the loop argument')"
    );
    loop_.close().unwrap();
    assert_eq!(other.run_until_complete(foreign).unwrap(), 1);
    other.close().unwrap();
}

#[test]
fn cancel_requested_while_in_a_tokio_future_then_returning_ends_cancelled() {
    // CPython's rule "Task is cancelled right before coro stops": a task
    // that returns without reaching an asyncio await after cancel() ends CANCELLED.
    on_loop(|_| async {
        let t = asyncio::create_task(async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(5)
        })?;
        asyncio::sleep(0).await?;
        assert!(t.cancel_with_message("while in tokio"));
        let err = error_of(&t).await;
        assert_eq!(format!("{err:?}"), "CancelledError('while in tokio')");
        assert!(t.cancelled());
        Ok(())
    })
}

#[test]
fn awaiting_a_done_future_after_cancel_does_not_raise() {
    // CPython: `await fut` on a done future does not suspend, so a pending
    // cancellation is only delivered at the next real suspension.
    let out = on_loop(|loop_| async move {
        let done = Future::<i32>::new(&loop_);
        done.set_result(1)?;
        let d = done.clone();
        let t = asyncio::create_task(async move {
            asyncio::current_task()?.unwrap().cancel();
            let v = d.await?;
            match asyncio::sleep(0).await {
                Err(e) if e.is_cancelled() => Ok(format!("got {v}, then cancelled")),
                _ => Ok("not cancelled".to_owned()),
            }
        })?;
        t.await
    });
    assert_eq!(out, "got 1, then cancelled");
}
