//! The loop's exception handler, the default handler's report, and the
//! reports of futures and tasks that are dropped with something unsaid.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use asyncio::{ContextValue, Error, ErrorKind, EventLoop, ExceptionContext, Future};
use common::{capture_logs, new_loop, record_exceptions, stop_soon, LogRecord};
use tracing::Level;

fn errors(records: &[LogRecord]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.level == Level::ERROR && r.target == "asyncio")
        .map(|r| r.message.clone())
        .collect()
}

fn sample_context() -> ExceptionContext {
    let mut ctx = ExceptionContext::new("Something bad");
    ctx.exception = Some(Error::value("boom"));
    ctx.set("transport", ContextValue::Text("<T>".into()));
    ctx.set("protocol", ContextValue::Text("<P>".into()));
    ctx.set("future", ContextValue::Text("<F>".into()));
    ctx
}

// ===== set / get / call =====

#[test]
fn exception_handler_can_be_set_read_and_reset() {
    let loop_ = new_loop();
    assert!(loop_.get_exception_handler().is_none());

    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let expected_loop = loop_.clone();
    loop_.set_exception_handler(Some(move |l: &EventLoop, ctx: &ExceptionContext| {
        assert!(l.ptr_eq(&expected_loop));
        s.borrow_mut().push(ctx.message.clone());
    }));
    let handler = loop_.get_exception_handler().expect("a handler");
    loop_.call_exception_handler(ExceptionContext::new("one"));
    assert_eq!(*seen.borrow(), ["one"]);

    // The handler value can be installed elsewhere (Python passes the
    // function object around).
    loop_.set_exception_handler_rc(None);
    assert!(loop_.get_exception_handler().is_none());
    loop_.set_exception_handler_rc(Some(handler));
    loop_.call_exception_handler(ExceptionContext::new("two"));
    assert_eq!(*seen.borrow(), ["one", "two"]);

    loop_.set_exception_handler(None::<fn(&EventLoop, &ExceptionContext)>);
    assert!(loop_.get_exception_handler().is_none());
    let ((), records) = capture_logs(|| {
        loop_.call_exception_handler(ExceptionContext::new("three"));
    });
    assert_eq!(*seen.borrow(), ["one", "two"]);
    assert_eq!(errors(&records), ["three"]);
    loop_.close().unwrap();
}

#[test]
fn call_exception_handler_passes_the_whole_context() {
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    loop_.call_exception_handler(sample_context());
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].message, "Something bad");
    assert_eq!(
        seen[0].exception,
        Some((ErrorKind::ValueError, "boom".to_owned()))
    );
    assert_eq!(seen[0].keys, ["future", "protocol", "transport"]);
    assert!(matches!(
        seen[0].context.get("transport"),
        Some(ContextValue::Text(t)) if t == "<T>"
    ));
    loop_.close().unwrap();
}

// ===== the default handler =====

#[test]
fn default_handler_logs_message_sorted_keys_then_the_error() {
    // CPython:
    //   ERROR:asyncio:Something bad
    //   future: '<F>'          (Rust stores the repr itself)
    //   protocol: '<P>'
    //   transport: '<T>'
    //   ValueError: boom
    let loop_ = new_loop();
    let ((), records) = capture_logs(|| loop_.default_exception_handler(&sample_context()));
    let expected = "Something bad\nfuture: <F>\nprotocol: <P>\ntransport: <T>\nValueError: boom";
    assert_eq!(errors(&records), [expected]);
    // call_exception_handler without a custom handler logs the same.
    let ((), records) = capture_logs(|| loop_.call_exception_handler(sample_context()));
    assert_eq!(errors(&records), [expected]);
    loop_.close().unwrap();
}

#[test]
fn default_handler_message_and_error_line_defaults() {
    let loop_ = new_loop();
    let ((), records) = capture_logs(|| {
        loop_.default_exception_handler(&ExceptionContext::new(""));
        let mut bare = ExceptionContext::new("x");
        bare.exception = Some(Error::bare(ErrorKind::ValueError));
        loop_.default_exception_handler(&bare);
    });
    assert_eq!(
        errors(&records),
        ["Unhandled exception in event loop", "x\nValueError"]
    );
    loop_.close().unwrap();
}

#[test]

fn default_handler_error_line_is_the_python_traceback_line() {
    // CPython:
    //   ERROR:asyncio:m
    //   ConnectionRefusedError: [Errno 111] Connection refused
    //   ...
    //   | ExceptionGroup: eg (2 sub-exceptions)
    let loop_ = new_loop();
    let ((), records) = capture_logs(|| {
        let mut os = ExceptionContext::new("m");
        os.exception = Some(Error::from(std::io::Error::from_raw_os_error(111)));
        loop_.default_exception_handler(&os);
        let mut group = ExceptionContext::new("g");
        group.exception = Some(Error::group(
            "eg",
            vec![Error::value("a"), Error::type_error("b")],
        ));
        loop_.default_exception_handler(&group);
    });
    let logged = errors(&records);
    assert_eq!(
        logged[0],
        "m\nConnectionRefusedError: [Errno 111] Connection refused"
    );
    assert!(
        logged[1].contains("ExceptionGroup: eg (2 sub-exceptions)"),
        "{}",
        logged[1]
    );
    loop_.close().unwrap();
}

#[test]
fn a_failing_custom_handler_falls_back_to_the_default_handler() {
    // CPython:
    //   ERROR:asyncio:Unhandled error in exception handler
    //   context: {'message': 'original', 'exception': ValueError('boom')}
    //   Traceback ... ZeroDivisionError: in handler
    let loop_ = new_loop();
    loop_.set_exception_handler(Some(|_: &EventLoop, _: &ExceptionContext| {
        panic!("in handler");
    }));
    let ((), records) = capture_logs(|| {
        let mut ctx = ExceptionContext::new("original");
        ctx.exception = Some(Error::value("boom"));
        loop_.call_exception_handler(ctx);
    });
    let logged = errors(&records);
    assert_eq!(logged.len(), 1, "{records:?}");
    let lines: Vec<&str> = logged[0].lines().collect();
    assert_eq!(
        lines,
        [
            "Unhandled error in exception handler",
            "context: {'message': 'original', 'exception': ValueError('boom')}",
            "Panic: in handler",
        ]
    );
    // The custom handler stays installed.
    assert!(loop_.get_exception_handler().is_some());
    loop_.close().unwrap();
}

#[test]
fn failing_callbacks_in_debug_mode_report_where_they_were_scheduled() {
    let loop_ = new_loop();
    loop_.set_debug(true);
    let seen = record_exceptions(&loop_);
    let line = line!() + 2;
    loop_
        .call_soon(|| -> asyncio::Result<()> { Err(Error::value("boom")) })
        .unwrap();
    stop_soon(&loop_);
    loop_.run_forever().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].keys, ["handle", "source_traceback"]);
    let expected = format!(
        "source_traceback: Object created at (most recent call last):\n  File \"{}\", line {line}",
        file!()
    );
    assert!(
        seen[0].rendered.contains(&expected),
        "{}\n--- expected ---\n{expected}",
        seen[0].rendered
    );
    loop_.close().unwrap();
}

#[test]
fn default_handler_adds_the_running_handles_traceback_in_debug_mode() {
    let loop_ = new_loop();
    loop_.set_debug(true);
    let l = loop_.clone();
    let line = line!() + 2;
    loop_
        .call_soon(move || l.call_exception_handler(ExceptionContext::new("from a callback")))
        .unwrap();
    stop_soon(&loop_);
    let ((), records) = capture_logs(|| loop_.run_forever().unwrap());
    let logged = errors(&records);
    assert_eq!(logged.len(), 1, "{records:?}");
    let expected = format!(
        "from a callback\nhandle_traceback: Handle created at (most recent call last):\n  File \"{}\", line {line}",
        file!()
    );
    assert_eq!(logged[0], expected);
    loop_.close().unwrap();
}

// ===== never retrieved / destroyed pending =====

#[test]
fn future_exception_never_retrieved_is_reported_when_dropped() {
    // CPython:
    //   Future exception was never retrieved
    //   future: <Future finished exception=ValueError('boom')>
    //   ValueError: boom
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    let fut = Future::<i32>::new(&loop_);
    fut.set_exception(Error::value("boom")).unwrap();
    drop(fut);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].message, "Future exception was never retrieved");
    assert_eq!(
        seen[0].exception,
        Some((ErrorKind::ValueError, "boom".to_owned()))
    );
    assert_eq!(seen[0].keys, ["future"]);
    assert_eq!(
        seen[0].rendered,
        "Future exception was never retrieved\n\
         future: <Future finished exception=ValueError('boom')>\n\
         ValueError: boom"
    );
    drop(seen);
    loop_.close().unwrap();
}

#[test]
fn a_retrieved_or_cancelled_future_is_not_reported() {
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);

    let fut = Future::<i32>::new(&loop_);
    fut.set_exception(Error::value("a")).unwrap();
    assert!(fut.exception().unwrap().is_some());
    drop(fut);

    let fut = Future::<i32>::new(&loop_);
    fut.set_exception(Error::value("b")).unwrap();
    assert!(fut.result().is_err());
    drop(fut);

    let fut = Future::<i32>::new(&loop_);
    let f = fut.clone();
    loop_
        .call_soon(move || f.set_exception(Error::value("c")))
        .unwrap();
    assert!(loop_.run_until_complete(&fut).is_err());
    drop(fut);

    let fut = Future::<i32>::new(&loop_);
    fut.cancel();
    drop(fut);

    let fut = Future::<i32>::new(&loop_);
    fut.set_result(1).unwrap();
    drop(fut);

    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
    loop_.close().unwrap();
}

#[test]
fn task_exception_never_retrieved_is_reported() {
    // CPython:
    //   Task exception was never retrieved
    //   future: <Task finished name='Task-1' coro=<failing() …> exception=ValueError('task boom')>
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    // The handle is dropped at once: the loop owns the task until it ends.
    loop_
        .create_task(async { Err::<(), _>(Error::value("task boom")) })
        .unwrap();
    loop_
        .run_until_complete(async {
            asyncio::sleep(0.0).await?;
            asyncio::sleep(0.0).await
        })
        .unwrap();
    {
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].message, "Task exception was never retrieved");
        assert_eq!(
            seen[0].exception,
            Some((ErrorKind::ValueError, "task boom".to_owned()))
        );
        assert_eq!(seen[0].keys, ["future"]);
        let future_line = seen[0].rendered.lines().nth(1).unwrap().to_owned();
        assert!(
            future_line.starts_with("future: <Task finished name='Task-"),
            "{future_line}"
        );
        assert!(
            future_line.ends_with(" exception=ValueError('task boom')>"),
            "{future_line}"
        );
    }

    // A handle kept but never asked: reported when it goes.
    let task = loop_
        .create_task_named(async { Err::<(), _>(Error::runtime("kept")) }, "kept")
        .unwrap();
    loop_
        .run_until_complete(async { asyncio::sleep(0.0).await })
        .unwrap();
    assert!(task.done());
    assert_eq!(seen.borrow().len(), 1);
    drop(task);
    assert_eq!(seen.borrow().len(), 2);
    assert_eq!(
        seen.borrow()[1].message,
        "Task exception was never retrieved"
    );
    loop_.close().unwrap();
}

#[test]
fn a_pending_task_is_reported_when_the_loop_closes() {
    // CPython:
    //   Task was destroyed but it is pending!
    //   task: <Task pending name='pending-task' coro=<forever() …> wait_for=<Future pending …>>
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    loop_
        .create_task_named(
            async {
                asyncio::sleep(3600.0).await?;
                Ok(())
            },
            "pending-task",
        )
        .unwrap();
    let finished = loop_.create_task(async { Ok(1) }).unwrap();
    loop_
        .run_until_complete(async { asyncio::sleep(0.0).await })
        .unwrap();
    assert!(finished.done());
    assert!(seen.borrow().is_empty());
    loop_.close().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].message, "Task was destroyed but it is pending!");
    assert_eq!(seen[0].keys, ["task"]);
    assert!(seen[0].exception.is_none());
    let task_line = seen[0].rendered.lines().nth(1).unwrap();
    assert!(
        task_line.starts_with("task: <Task pending name='pending-task' coro=<"),
        "{task_line}"
    );
    assert!(seen[0].context.task().is_some());
}

#[test]
fn a_task_that_never_started_is_reported_when_the_loop_closes() {
    let loop_ = new_loop();
    let seen = record_exceptions(&loop_);
    let task = loop_.create_task(async { Ok(()) }).unwrap();
    loop_.close().unwrap();
    assert!(!task.done());
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].message, "Task was destroyed but it is pending!");
}

#[test]
fn a_handler_may_replace_itself_while_handling() {
    let loop_ = new_loop();
    let calls = Rc::new(RefCell::new(Vec::new()));
    let c = calls.clone();
    loop_.set_exception_handler(Some(move |l: &EventLoop, ctx: &ExceptionContext| {
        c.borrow_mut().push(ctx.message.clone());
        // Re-entrant use of the loop's handler slot from inside the handler.
        assert!(l.get_exception_handler().is_some());
        l.set_exception_handler(None::<fn(&EventLoop, &ExceptionContext)>);
    }));
    loop_.call_exception_handler(ExceptionContext::new("first"));
    assert!(loop_.get_exception_handler().is_none());
    let ((), records) = capture_logs(|| {
        loop_.call_exception_handler(ExceptionContext::new("second"));
    });
    assert_eq!(*calls.borrow(), ["first"]);
    assert_eq!(errors(&records), ["second"]);
    loop_.close().unwrap();
}
