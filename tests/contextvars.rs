//! Context variables with tasks and callbacks: CPython's `test_tasks.py`
//! `test_context_1` … `test_context_6` and `test_get_context`, the
//! `context=` arguments of `call_soon`/`call_later`/`call_at`/`create_task`,
//! `Runner`'s shared context, and `contextvars`' own errors (their messages
//! as CPython 3.13 prints them).

mod common;

use asyncio::contextvars::{copy_context, Context, ContextVar};
use asyncio::ErrorKind;
use common::{entries, log, push};

#[test]
fn test_context_1_a_task_does_not_see_later_changes_of_its_creator() {
    static CVAR: ContextVar<&str> = ContextVar::with_default("cvar", "nope");
    let loop_ = common::new_loop();
    loop_
        .run_until_complete(async {
            assert_eq!(CVAR.get()?, "nope");
            let sub = asyncio::create_task(async {
                asyncio::sleep(0.01).await?;
                assert_eq!(CVAR.get()?, "nope");
                CVAR.set("something else");
                Ok(())
            })?;
            CVAR.set("yes");
            assert_eq!(CVAR.get()?, "yes");
            sub.await?;
            assert_eq!(CVAR.get()?, "yes");
            Ok(())
        })
        .unwrap();
    loop_.close().unwrap();
    assert_eq!(CVAR.get().unwrap(), "nope");
}

#[test]
fn test_context_2_done_callbacks_and_timers_run_in_copies() {
    thread_local! {
        static CVAR: ContextVar<String> = ContextVar::with_default("cvar", "nope".into());
    }
    let get = || CVAR.with(|v| v.get().unwrap());
    let set = |s: String| CVAR.with(|v| drop(v.set(s)));
    let loop_ = common::new_loop();
    loop_
        .run_until_complete(async move {
            let loop_ = asyncio::get_running_loop()?;
            assert_eq!(get(), "nope");
            for j in 0..2 {
                let fut = loop_.create_future::<()>();
                // This change must not pollute the context of main().
                fut.add_done_callback(move |_| set("something else".into()));
                set(format!("yes{j}"));
                let f = fut.clone();
                loop_.call_soon(move || f.set_result(()))?;
                fut.await?;
                assert_eq!(get(), format!("yes{j}"));
                for i in 0..3 {
                    set(format!("yes{i}-{j}"));
                    asyncio::sleep(0.001).await?;
                    assert_eq!(get(), format!("yes{i}-{j}"));
                }
            }
            Ok(())
        })
        .unwrap();
    loop_.close().unwrap();
    assert_eq!(get(), "nope");
}

#[test]
fn test_context_3_many_tasks_each_keep_their_own_value() {
    static CVAR: ContextVar<i64> = ContextVar::with_default("cvar", -1);
    let loop_ = common::new_loop();
    loop_
        .run_until_complete(async {
            let tasks = (0..100i64).map(|n| {
                asyncio::create_task(async move {
                    for i in 0..10 {
                        CVAR.set(n + i);
                        // Interleave the tasks in a fixed, varied order.
                        asyncio::sleep(0.0001 * ((n * 7 + i * 3) % 11) as f64).await?;
                        assert_eq!(CVAR.get()?, n + i);
                    }
                    Ok(())
                })
                .unwrap()
            });
            asyncio::gather(tasks.collect::<Vec<_>>()).await?;
            Ok(())
        })
        .unwrap();
    loop_.close().unwrap();
    assert_eq!(CVAR.get().unwrap(), -1);
}

#[test]
fn test_context_4_to_6_create_task_with_a_context_uses_it_itself() {
    static CVAR: ContextVar<i32> = ContextVar::new("cvar");
    let coro = |val: i32| async move {
        asyncio::sleep(0).await?;
        CVAR.set(val);
        Ok(())
    };
    let loop_ = common::new_loop();
    let ret = loop_
        .run_until_complete(async move {
            let loop_ = asyncio::get_running_loop()?;
            let ctx = copy_context();
            let mut ret = vec![ctx.get(&CVAR)];
            // asyncio.create_task(context=), loop.create_task(context=),
            // TaskGroup.create_task(context=).
            asyncio::create_task_in(&ctx, coro(1))?.await?;
            ret.push(ctx.get(&CVAR));
            loop_.create_task_in(&ctx, coro(2))?.await?;
            ret.push(ctx.get(&CVAR));
            let tg = asyncio::TaskGroup::new();
            tg.run(async { tg.create_task_in(&ctx, coro(3)).map(drop) })
                .await?;
            ret.push(ctx.get(&CVAR));
            assert!(CVAR.get().is_err(), "the caller's context is untouched");
            Ok(ret)
        })
        .unwrap();
    assert_eq!(ret, [None, Some(1), Some(2), Some(3)]);
    loop_.close().unwrap();
}

#[test]
fn test_get_context_is_the_given_context_or_a_stable_copy() {
    let loop_ = common::new_loop();
    let context = copy_context();
    let task = loop_.create_task_in(&context, async { Ok(()) }).unwrap();
    loop_.run_until_complete(&task).unwrap();
    assert!(task.get_context().ptr_eq(&context));
    // Without one: a copy made at creation, the same object every time.
    static V: ContextVar<u8> = ContextVar::new("v");
    let t = loop_
        .create_task(async {
            V.set(9);
            asyncio::sleep(0).await
        })
        .unwrap();
    loop_.run_until_complete(&t).unwrap();
    assert!(t.get_context().ptr_eq(&t.get_context()));
    assert_eq!(t.get_context().get(&V), Some(9));
    assert!(t.as_any().get_context().ptr_eq(&t.get_context()));
    loop_.close().unwrap();
}

#[test]
fn call_soon_later_and_at_with_a_context_run_in_it() {
    // q11.py (a): cb sees v = in-ctx; after: outer v = dflt; ctx[v] = cb-set
    static V: ContextVar<&str> = ContextVar::with_default("v", "dflt");
    let loop_ = common::new_loop();
    let events = log();
    let ctx = copy_context();
    ctx.run(|| V.set("in-ctx")).unwrap();
    let ev = events.clone();
    loop_
        .call_soon_in(&ctx, move || {
            push(&ev, format!("soon sees {}", V.get().unwrap()));
            V.set("soon-set");
        })
        .unwrap();
    let ev = events.clone();
    loop_
        .call_later_in(&ctx, 0.0, move || {
            push(&ev, format!("later sees {}", V.get().unwrap()));
            V.set("later-set");
        })
        .unwrap();
    let ev = events.clone();
    let at = loop_.time();
    loop_
        .call_at_in(&ctx, at, move || {
            push(&ev, format!("at sees {}", V.get().unwrap()));
        })
        .unwrap();
    // Without a context: a copy, whose changes go nowhere.
    let ev = events.clone();
    loop_
        .call_soon(move || {
            push(&ev, format!("plain sees {}", V.get().unwrap()));
            V.set("lost");
        })
        .unwrap();
    common::stop_soon(&loop_);
    loop_.run_forever().unwrap();
    common::stop_soon(&loop_);
    loop_.run_forever().unwrap();
    assert_eq!(
        entries(&events),
        [
            "soon sees in-ctx",
            "plain sees dflt",
            "later sees soon-set",
            "at sees later-set"
        ]
    );
    assert_eq!(V.get().unwrap(), "dflt");
    assert_eq!(ctx.get(&V), Some("later-set"));
    loop_.close().unwrap();
}

#[test]
fn callbacks_see_the_context_current_when_they_were_scheduled() {
    static V: ContextVar<u32> = ContextVar::with_default("v", 0);
    let loop_ = common::new_loop();
    let events = log();
    let ev = events.clone();
    loop_
        .run_until_complete(async move {
            let loop_ = asyncio::get_running_loop()?;
            V.set(1);
            let e = ev.clone();
            loop_.call_soon(move || push(&e, format!("soon {}", V.get().unwrap())))?;
            let fut = loop_.create_future::<()>();
            let e = ev.clone();
            fut.add_done_callback(move |_| push(&e, format!("done {}", V.get().unwrap())));
            V.set(2);
            fut.set_result(())?;
            asyncio::sleep(0).await?;
            asyncio::sleep(0).await?;
            assert_eq!(V.get()?, 2);
            Ok(())
        })
        .unwrap();
    assert_eq!(entries(&events), ["soon 1", "done 1"]);
    loop_.close().unwrap();
}

#[test]
fn runner_runs_share_the_runners_context() {
    static V: ContextVar<u32> = ContextVar::new("v");
    let mut runner = asyncio::Runner::new();
    runner
        .run(async {
            V.set(5);
            Ok(())
        })
        .unwrap();
    assert_eq!(runner.run(async { V.get() }).unwrap(), 5);
    let other = Context::new();
    assert!(runner.run_in(&other, async { V.get() }).is_err());
    runner.close().unwrap();
    // asyncio.run makes a runner of its own each time.
    asyncio::run(async {
        V.set(6);
        Ok(())
    })
    .unwrap();
    assert!(asyncio::run(async { V.get() }).is_err());
}

#[test]
fn contextvars_errors_are_cpythons() {
    // q11.py (d), (e).
    static W: ContextVar<i32> = ContextVar::new("w");
    static V: ContextVar<i32> = ContextVar::with_default("v", 0);
    let ctx = copy_context();
    let inner = ctx.run(|| ctx.run(|| ())).unwrap().unwrap_err();
    assert_eq!(inner.kind(), ErrorKind::RuntimeError);
    assert_eq!(
        inner.message(),
        format!("cannot enter context: {ctx:?} is already entered")
    );
    assert!(format!("{ctx:?}").starts_with("<Context object at 0x"));

    let err = W.get().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LookupError);
    assert!(
        err.message().starts_with("<ContextVar name='w' at 0x"),
        "{}",
        err.message()
    );
    assert_eq!(W.get_or(3), 3);

    let tok = W.set(1);
    assert_eq!(tok.old_value(), None);
    W.reset(&tok).unwrap();
    assert!(W.get().is_err());
    let err = W.reset(&tok).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert!(err
        .message()
        .starts_with("<Token used var=<ContextVar name='w' at 0x"));
    assert!(err.message().ends_with("> has already been used once"));

    let tok = W.set(2);
    let err = V.reset(&tok).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert!(err
        .message()
        .starts_with("<Token var=<ContextVar name='w' at 0x"));
    assert!(err
        .message()
        .ends_with("> was created by a different ContextVar"));

    let tok = copy_context().run(|| W.set(3)).unwrap();
    let err = W.reset(&tok).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert!(err
        .message()
        .ends_with("> was created in a different Context"));
    assert_eq!(W.get().unwrap(), 2);

    // A context object as a mapping.
    let ctx = copy_context();
    assert!(ctx.contains(&W) && !ctx.contains(&V));
    assert_eq!(ctx.len(), 1);
    assert!(Context::new().is_empty());
    assert_eq!(ctx.copy().get(&W), Some(2));
}

#[test]
fn a_panicking_callback_leaves_the_context_as_it_was() {
    static V: ContextVar<u8> = ContextVar::with_default("v", 0);
    let ctx = Context::new();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.run(|| {
            V.set(7);
            panic!("boom");
        })
    }));
    assert!(caught.is_err());
    assert_eq!(V.get().unwrap(), 0);
    assert_eq!(ctx.get(&V), Some(7));
    // The context can be entered again.
    assert_eq!(ctx.run(|| V.get().unwrap()).unwrap(), 7);
}

#[test]
fn an_eager_first_step_runs_in_the_tasks_own_copy() {
    static V: ContextVar<u32> = ContextVar::with_default("v", 0);
    let loop_ = common::new_loop();
    loop_.set_task_factory(Some(asyncio::eager_task_factory()));
    let seen = loop_
        .run_until_complete(async {
            V.set(4);
            // The eager first step already runs in the task's copy.
            let t = asyncio::create_task(async {
                let first = V.get()?;
                V.set(5);
                asyncio::sleep(0).await?;
                Ok((first, V.get()?))
            })?;
            assert_eq!(V.get()?, 4);
            t.await
        })
        .unwrap();
    assert_eq!(seen, (4, 5));
    loop_.close().unwrap();
}
