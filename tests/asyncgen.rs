//! Async generators: iteration, `aclose()`, and their shutdown by the loop
//! (`loop.shutdown_asyncgens()`, `asyncio.run`).

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use asyncio::{AsyncGenerator, ContextValue, Error, ErrorKind, EventLoop};
use common::{capture_logs, new_loop, record_exceptions};
use futures_util::StreamExt;
use tracing::Level;

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn snapshot(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

/// Python:
/// ```python
/// async def gen():
///     try:
///         for i in range(n):
///             yield i
///     except GeneratorExit:
///         log.append('GeneratorExit'); await asyncio.sleep(0); log.append('cleaned'); raise
/// ```
fn counting(n: i32, log: &Log) -> AsyncGenerator<i32> {
    let log = log.clone();
    AsyncGenerator::new(move |co| async move {
        for i in 0..n {
            if let Err(exit) = co.yield_(i).await {
                assert_eq!(exit.kind(), ErrorKind::GeneratorExit);
                log.borrow_mut().push("GeneratorExit".into());
                asyncio::sleep(0.0).await?;
                log.borrow_mut().push("cleaned".into());
                return Err(exit);
            }
        }
        log.borrow_mut().push("exhausted".into());
        Ok(())
    })
}

/// Python: `try: yield 1 finally: raise ValueError('cleanup failed')`.
fn failing_close() -> AsyncGenerator<i32> {
    AsyncGenerator::new(|co| async move {
        match co.yield_(1).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::value("cleanup failed")),
        }
    })
}

fn run<T: 'static>(
    loop_: &EventLoop,
    f: impl std::future::Future<Output = asyncio::Result<T>> + 'static,
) -> T {
    loop_.run_until_complete(f).unwrap()
}

#[test]
fn anext_yields_the_values_then_none() {
    let loop_ = new_loop();
    let events = log();
    let gen = counting(3, &events);
    let values = run(&loop_, async move {
        let mut values = Vec::new();
        while let Some(v) = gen.anext().await? {
            values.push(v);
        }
        // Exhausted: StopAsyncIteration from then on (Ok(None) here).
        assert_eq!(gen.anext().await?, None);
        Ok(values)
    });
    assert_eq!(values, [0, 1, 2]);
    assert_eq!(snapshot(&events), ["exhausted"]);
    loop_.close().unwrap();
}

#[test]
fn an_async_generator_is_a_stream() {
    let loop_ = new_loop();
    let events = log();
    let mut gen = counting(4, &events);
    let values = run(&loop_, async move {
        let first = gen.next().await.transpose()?;
        let rest: Vec<asyncio::Result<i32>> = gen.collect().await;
        Ok((
            first,
            rest.into_iter().collect::<asyncio::Result<Vec<_>>>()?,
        ))
    });
    assert_eq!(values, (Some(0), vec![1, 2, 3]));
    loop_.close().unwrap();
}

#[test]
fn a_generator_body_may_await_between_yields() {
    let loop_ = new_loop();
    let gen = AsyncGenerator::new(|co| async move {
        for i in 0..3 {
            asyncio::sleep(0.001).await?;
            co.yield_(i * 10).await?;
        }
        Ok(())
    });
    let values = run(&loop_, async move {
        let mut values = Vec::new();
        while let Some(v) = gen.anext().await? {
            values.push(v);
        }
        Ok(values)
    });
    assert_eq!(values, [0, 10, 20]);
    loop_.close().unwrap();
}

#[test]
fn an_error_of_the_body_comes_out_once() {
    let loop_ = new_loop();
    let gen = AsyncGenerator::new(|co| async move {
        co.yield_(1).await?;
        Err(Error::value("body failed"))
    });
    let (first, err, after) = run(&loop_, async move {
        let first = gen.anext().await?;
        let err = gen.anext().await.unwrap_err();
        let after = gen.anext().await?;
        Ok((first, err, after))
    });
    assert_eq!(first, Some(1));
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "body failed");
    assert_eq!(after, None);
    loop_.close().unwrap();
}

#[test]
fn aclose_throws_generator_exit_and_allows_async_cleanup() {
    // CPython: 0, ['GeneratorExit', 'cleaned'], StopAsyncIteration after close.
    let loop_ = new_loop();
    let events = log();
    let gen = counting(3, &events);
    let (first, after) = run(&loop_, async move {
        let first = gen.anext().await?;
        gen.aclose().await?;
        gen.aclose().await?; // closing twice is fine
        Ok((first, gen.anext().await?))
    });
    assert_eq!(first, Some(0));
    assert_eq!(after, None);
    assert_eq!(snapshot(&events), ["GeneratorExit", "cleaned"]);
    loop_.close().unwrap();
}

#[test]
fn aclose_of_a_fresh_generator_never_runs_the_body() {
    let loop_ = new_loop();
    let events = log();
    let gen = counting(3, &events);
    let after = run(&loop_, async move {
        gen.aclose().await?;
        gen.anext().await
    });
    assert_eq!(after, None);
    assert!(events.borrow().is_empty());
    loop_.close().unwrap();
}

#[test]
fn aclose_of_an_exhausted_generator_is_a_no_op() {
    let loop_ = new_loop();
    let events = log();
    let gen = counting(1, &events);
    run(&loop_, async move {
        while gen.anext().await?.is_some() {}
        gen.aclose().await
    });
    assert_eq!(snapshot(&events), ["exhausted"]);
    loop_.close().unwrap();
}

#[test]
fn aclose_returns_the_error_of_the_cleanup() {
    // CPython: ValueError('cleanup failed').
    let loop_ = new_loop();
    let gen = failing_close();
    let err = run(&loop_, async move {
        gen.anext().await?;
        Ok(gen.aclose().await.unwrap_err())
    });
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "cleanup failed");
    loop_.close().unwrap();
}

#[test]

fn aclose_of_a_generator_that_yields_again_fails() {
    // CPython:
    //   async def stubborn():
    //       try: yield 1
    //       except GeneratorExit: pass
    //       yield 2
    //   await s.aclose()  ->  RuntimeError('async generator ignored GeneratorExit')
    let loop_ = new_loop();
    let gen = AsyncGenerator::new(|co| async move {
        let _ = co.yield_(1).await; // swallows GeneratorExit
        co.yield_(2).await?;
        Ok(())
    });
    let result = run(&loop_, async move {
        gen.anext().await?;
        Ok(gen.aclose().await)
    });
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert_eq!(err.message(), "async generator ignored GeneratorExit");
    loop_.close().unwrap();
}

#[test]
fn shutdown_asyncgens_closes_live_generators() {
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    let (a_log, b_log, fresh_log) = (log(), log(), log());
    let keep: Rc<RefCell<Vec<AsyncGenerator<i32>>>> = Rc::default();
    let (k, a, b, fresh) = (
        keep.clone(),
        a_log.clone(),
        b_log.clone(),
        fresh_log.clone(),
    );
    run(&loop_, async move {
        for gen_log in [&a, &b] {
            let gen = counting(5, gen_log);
            gen.anext().await?;
            k.borrow_mut().push(gen);
        }
        // Never iterated: not tracked, never run.
        k.borrow_mut().push(counting(5, &fresh));
        Ok(())
    });
    assert!(a_log.borrow().is_empty());
    let l = loop_.clone();
    run(&loop_, async move { l.shutdown_asyncgens().await });
    assert_eq!(snapshot(&a_log), ["GeneratorExit", "cleaned"]);
    assert_eq!(snapshot(&b_log), ["GeneratorExit", "cleaned"]);
    assert!(fresh_log.borrow().is_empty());
    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
    // The generators are closed now.
    let gens = keep.borrow().clone();
    let after = run(&loop_, async move { gens[0].anext().await });
    assert_eq!(after, None);
    loop_.close().unwrap();
}

#[test]
fn shutdown_asyncgens_reports_failures_with_the_asyncgen_key() {
    // CPython: handler gets ['asyncgen', 'exception', 'message'] with
    // "an error occurred during closing of asynchronous generator <…>".
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    let events = log();
    let keep: Rc<RefCell<Vec<AsyncGenerator<i32>>>> = Rc::default();
    let (k, ev) = (keep.clone(), events.clone());
    run(&loop_, async move {
        let bad = failing_close();
        bad.anext().await?;
        k.borrow_mut().push(bad);
        let good = counting(2, &ev);
        good.anext().await?;
        k.borrow_mut().push(good);
        Ok(())
    });
    let l = loop_.clone();
    run(&loop_, async move { l.shutdown_asyncgens().await });
    // The failure does not stop the other generator from being closed.
    assert_eq!(snapshot(&events), ["GeneratorExit", "cleaned"]);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let prefix = "an error occurred during closing of asynchronous generator ";
    let repr = seen[0]
        .message
        .strip_prefix(prefix)
        .expect("CPython's message");
    assert!(repr.starts_with("<async_generator object "), "{repr}");
    assert_eq!(seen[0].keys, ["asyncgen"]);
    assert!(matches!(
        seen[0].context.get("asyncgen"),
        Some(ContextValue::Text(t)) if t == repr
    ));
    assert_eq!(
        seen[0].exception,
        Some((ErrorKind::ValueError, "cleanup failed".to_owned()))
    );
    loop_.close().unwrap();
}

#[test]
fn a_generator_first_iterated_after_shutdown_asyncgens_is_warned_about() {
    let loop_ = new_loop();
    let l = loop_.clone();
    let events = log();
    let ev = events.clone();
    let (value, records) = capture_logs(|| {
        run(&loop_, async move {
            l.shutdown_asyncgens().await?;
            let gen = counting(2, &ev);
            let v = gen.anext().await?;
            gen.aclose().await?;
            Ok(v)
        })
    });
    assert_eq!(value, Some(0));
    let warnings: Vec<_> = records
        .iter()
        .filter(|r| r.level == Level::WARN && r.target == "asyncio")
        .collect();
    assert_eq!(warnings.len(), 1, "{records:?}");
    let message = &warnings[0].message;
    assert!(
        message.starts_with("asynchronous generator <async_generator object "),
        "{message}"
    );
    assert!(
        message.ends_with(" was scheduled after loop.shutdown_asyncgens() call"),
        "{message}"
    );
    loop_.close().unwrap();
}

#[test]
fn a_suspended_generator_dropped_in_a_running_loop_is_closed() {
    // Python's asyncgen finalizer hook schedules aclose() as a task.
    let loop_ = new_loop();
    let events = log();
    let ev = events.clone();
    run(&loop_, async move {
        let gen = counting(5, &ev);
        gen.anext().await?;
        drop(gen);
        for _ in 0..10 {
            if ev.borrow().len() == 2 {
                break;
            }
            asyncio::sleep(0.0).await?;
        }
        Ok(())
    });
    assert_eq!(snapshot(&events), ["GeneratorExit", "cleaned"]);
    loop_.close().unwrap();
}

#[test]
fn asyncio_run_closes_generators_left_open() {
    // CPython: asyncio.run(m3()) leaves log == ['GeneratorExit', 'cleaned'].
    let events = log();
    let keep: Rc<RefCell<Vec<AsyncGenerator<i32>>>> = Rc::default();
    let (ev, k) = (events.clone(), keep.clone());
    let first = asyncio::run(async move {
        let gen = counting(5, &ev);
        let first = gen.anext().await?;
        k.borrow_mut().push(gen);
        Ok(first)
    })
    .unwrap();
    assert_eq!(first, Some(0));
    assert_eq!(snapshot(&events), ["GeneratorExit", "cleaned"]);
    assert_eq!(keep.borrow().len(), 1);
}

#[asyncio::test]
async fn asyncio_test_macro_runs_generators() {
    let gen = AsyncGenerator::new(|co| async move {
        co.yield_("a").await?;
        co.yield_("b").await?;
        Ok(())
    });
    let mut out = Vec::new();
    while let Some(v) = gen.anext().await.unwrap() {
        out.push(v);
    }
    assert_eq!(out, ["a", "b"]);
}

#[test]
fn a_second_anext_while_the_body_runs_fails() {
    // CPython:
    //   async def g(): await asyncio.sleep(0.05); yield 1; yield 2
    //   t1 = create_task(anext(gen)); t2 = create_task(anext(gen))
    //   gather(t1, t2, return_exceptions=True)
    //     -> [1, RuntimeError('anext(): asynchronous generator is already running')]
    //   await anext(gen) -> 2
    let loop_ = new_loop();
    let gen = AsyncGenerator::new(|co| async move {
        asyncio::sleep(0.05).await?;
        co.yield_(1).await?;
        co.yield_(2).await?;
        Ok(())
    });
    let (first, second, next) = run(&loop_, async move {
        let (g1, g2) = (gen.clone(), gen.clone());
        let t1 = asyncio::create_task(async move { g1.anext().await })?;
        let t2 = asyncio::create_task(async move { g2.anext().await })?;
        // Bounded, so that a lost wake-up fails instead of hanging.
        let first = asyncio::wait_for(t1, 5.0).await;
        let second = asyncio::wait_for(t2, 5.0).await;
        let next = asyncio::wait_for(async move { gen.anext().await }, 5.0).await;
        Ok((first, second, next))
    });
    assert_eq!(first.unwrap(), Some(1));
    let err = second.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert_eq!(
        err.message(),
        "anext(): asynchronous generator is already running"
    );
    assert_eq!(next.unwrap(), Some(2));
    loop_.close().unwrap();
}
