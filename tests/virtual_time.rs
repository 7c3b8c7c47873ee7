//! Virtual time (`asyncio::testing`): the loop's clock jumps to the next
//! timer when nothing else can happen, so programs full of long sleeps and
//! timeouts run in milliseconds with exact, repeatable traces — timers,
//! timeouts, task groups, and real TCP exchanges.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use asyncio::streams::{open_connection, start_server, StreamReader, StreamWriter};
use asyncio::testing::{new_virtual_time_loop, use_virtual_time};
use asyncio::{ErrorKind, EventLoop, Result};

type Trace = Rc<RefCell<Vec<String>>>;

fn note(trace: &Trace, loop_: &EventLoop, what: &str) {
    trace
        .borrow_mut()
        .push(format!("{:.3} {what}", loop_.time()));
}

/// Runs `body` on a fresh virtual-time loop (autojump at 0).
fn virtual_run<T: 'static, F>(body: impl FnOnce(EventLoop) -> F) -> T
where
    F: std::future::Future<Output = Result<T>> + 'static,
{
    let loop_ = new_virtual_time_loop().unwrap();
    let out = loop_.run_until_complete(body(loop_.clone())).unwrap();
    loop_.close().unwrap();
    out
}

#[test]
fn an_hour_of_sleep_takes_no_time() {
    let started = std::time::Instant::now();
    let elapsed = virtual_run(|loop_| async move {
        let t0 = loop_.time();
        asyncio::sleep(3600.0).await?;
        asyncio::sleep(0.25).await?;
        Ok(loop_.time() - t0)
    });
    assert_eq!(elapsed, 3600.25);
    // Real time: far below the hour (no bound tighter than that is asserted).
    assert!(started.elapsed() < std::time::Duration::from_secs(600));
}

/// The timers, timeouts and task group program of the trace tests, its
/// delays multiplied by `scale`.
async fn program(loop_: EventLoop, trace: Trace, scale: f64) -> Result<()> {
    let t0 = loop_.time();
    let at = {
        let (loop_, trace) = (loop_.clone(), trace.clone());
        move |what: &str| {
            trace
                .borrow_mut()
                .push(format!("{:.3} {what}", loop_.time() - t0));
        }
    };
    for (delay, name) in [(0.3, "c"), (0.1, "a"), (0.2, "b")] {
        let at = at.clone();
        loop_.call_later(delay * scale, move || at(&format!("call_later {name}")))?;
    }
    let tg = asyncio::TaskGroup::new();
    tg.run(async {
        for (i, delay) in [0.25, 0.05, 0.15].into_iter().enumerate() {
            let at = at.clone();
            tg.create_task(async move {
                asyncio::sleep(delay * scale).await?;
                at(&format!("task {i} woke"));
                Ok(())
            })?;
        }
        Ok(())
    })
    .await?;
    at("task group done");
    let slow = asyncio::wait_for(asyncio::sleep(10.0 * scale), 0.5 * scale).await;
    at(&format!(
        "wait_for: {}",
        slow.err()
            .map_or("ok".to_owned(), |e| e.python_name().to_owned())
    ));
    let quick = asyncio::wait_for(asyncio::sleep_with(0.1 * scale, "done"), scale).await?;
    at(&format!("wait_for: {quick}"));
    let timeout = asyncio::timeout(0.2 * scale);
    let outcome = timeout
        .run(async {
            asyncio::sleep(5.0 * scale).await?;
            Ok(())
        })
        .await;
    at(&format!("timeout: {}", outcome.is_err()));
    Ok(())
}

fn virtual_trace() -> Vec<String> {
    let trace: Trace = Rc::new(RefCell::new(Vec::new()));
    let t = trace.clone();
    virtual_run(move |loop_| program(loop_, t, 1.0));
    let out = trace.borrow().clone();
    out
}

#[test]
fn timers_timeouts_and_task_groups_give_an_exact_trace() {
    let trace = virtual_trace();
    assert_eq!(
        trace,
        [
            "0.050 task 1 woke",
            "0.100 call_later a",
            "0.150 task 2 woke",
            "0.200 call_later b",
            "0.250 task 0 woke",
            "0.250 task group done",
            "0.300 call_later c",
            "0.750 wait_for: TimeoutError",
            "0.850 wait_for: done",
            "1.050 timeout: true",
        ]
    );
    // The same trace on every run.
    assert_eq!(virtual_trace(), trace);
}

#[test]
fn the_same_program_under_real_time_gives_the_same_order() {
    let trace: Trace = Rc::new(RefCell::new(Vec::new()));
    let t = trace.clone();
    // Real time, with 200 ms between events: the order holds as long as
    // no timer fires that late.
    common::on_loop(move |loop_| program(loop_, t, 4.0));
    let real: Vec<String> = trace
        .borrow()
        .iter()
        .map(|l| l.split_once(' ').unwrap().1.to_owned())
        .collect();
    let virt: Vec<String> = virtual_trace()
        .iter()
        .map(|l| l.split_once(' ').unwrap().1.to_owned())
        .collect();
    assert_eq!(real, virt);
}

/// `reader.readline()` as a `'static` coroutine (for `wait_for`).
fn readline(
    reader: &StreamReader,
) -> impl std::future::Future<Output = Result<asyncio::Bytes>> + 'static {
    let reader = reader.clone();
    async move { reader.readline().await }
}

/// A TCP exchange under virtual time: the server answers after a
/// (virtual) 30 s pause; the client's 60 s `wait_for` does not fire early,
/// and an answer already on the wire wins over a timeout.
#[test]
fn tcp_exchange_under_virtual_time() {
    let trace: Trace = Rc::new(RefCell::new(Vec::new()));
    let t = trace.clone();
    virtual_run(move |loop_| async move {
        let server = start_server(
            |reader: StreamReader, writer: StreamWriter| async move {
                while let Some(line) = reader.next_line().await? {
                    if line == "slow\n" {
                        asyncio::sleep(30.0).await?;
                    }
                    writer.write(&line)?;
                    writer.drain().await?;
                }
                writer.close();
                Ok(())
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let port = server.sockets()[0].getsockname().unwrap().port().unwrap();
        let (reader, writer) = asyncio::wait_for(open_connection("127.0.0.1", port), 5.0).await?;
        note(&t, &loop_, "connected");
        for _ in 0..20 {
            writer.write(b"quick\n")?;
            let line = asyncio::wait_for(readline(&reader), 0.001).await?;
            assert_eq!(line, &b"quick\n"[..]);
        }
        note(&t, &loop_, "20 quick answers");
        writer.write(b"slow\n")?;
        let line = asyncio::wait_for(readline(&reader), 60.0).await?;
        assert_eq!(line, &b"slow\n"[..]);
        note(&t, &loop_, "slow answer");
        writer.write(b"slow\n")?;
        let e = asyncio::wait_for(readline(&reader), 10.0)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimeoutError);
        note(&t, &loop_, "timed out");
        writer.close();
        server.close();
        server.wait_closed().await
    });
    assert_eq!(
        *trace.borrow(),
        [
            "0.000 connected",
            "0.000 20 quick answers",
            "30.000 slow answer",
            "40.000 timed out",
        ]
    );
}

/// The clock does not jump while an executor job runs: a thread that
/// takes real time finishes inside a long virtual timeout.
#[test]
fn executor_jobs_hold_the_clock() {
    let value = virtual_run(|loop_| async move {
        let job = asyncio::to_thread(|| {
            std::thread::sleep(std::time::Duration::from_millis(30));
            7
        })?;
        let v = asyncio::wait_for(job, 1.0).await?;
        assert_eq!(loop_.time(), 0.0);
        Ok(v)
    });
    assert_eq!(value, 7);
}

/// Without autojump, only `advance()` moves the clock.
#[test]
fn advance_by_hand() {
    let loop_ = common::new_loop();
    let clock = use_virtual_time(&loop_, None).unwrap();
    assert_eq!(clock.autojump_threshold(), None);
    let clock2 = clock.clone();
    let woke = loop_
        .run_until_complete(async move {
            let sleeper = asyncio::create_task(async {
                asyncio::sleep(5.0).await?;
                asyncio::get_running_loop().map(|l| l.time())
            })?;
            asyncio::sleep(0.0).await?;
            clock2.advance(2.0);
            asyncio::sleep(0.0).await?;
            asyncio::sleep(0.0).await?;
            assert!(!sleeper.done());
            clock2.advance(3.0);
            sleeper.take().await
        })
        .unwrap();
    assert_eq!(woke, 5.0);
    assert_eq!(clock.time(), 5.0);
    loop_.close().unwrap();
}

#[test]
fn virtual_time_is_set_before_timers() {
    let loop_ = common::new_loop();
    let _h = loop_.call_later(1.0, || ()).unwrap();
    let e = use_virtual_time(&loop_, Some(0.0)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "virtual time must be set before the loop runs or schedules a timer"
    );
    assert!(loop_.virtual_clock().is_none());
    loop_.close().unwrap();
}

#[asyncio::test(virtual_time)]
async fn the_test_attribute_runs_on_virtual_time() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    assert!(loop_.virtual_clock().is_some());
    let t0 = loop_.time();
    asyncio::sleep(86_400.0).await?;
    assert_eq!(loop_.time() - t0, 86_400.0);
    Ok(())
}
