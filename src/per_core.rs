//! One loop per core: [`run_per_core`] runs `n` loops on `n` threads, each
//! its own copy of `main` — what a Python server does with `n` processes,
//! in one process. With `create_server(..).reuse_port(true)` every loop
//! binds the same port and the kernel spreads the connections.

use std::cell::RefCell;
use std::future::Future as StdFuture;
use std::sync::{Arc, Mutex};

use asyncio_core::{AnyTask, Error, Result, ThreadsafeLoop};

thread_local! {
    /// The `main` task of the loop on this thread, for cancellation by
    /// the other loops.
    static MAIN_TASK: RefCell<Option<AnyTask>> = const { RefCell::new(None) };
}

/// The loops of a [`run_per_core`] call, for stopping them all.
#[derive(Default)]
struct Loops {
    handles: Mutex<Vec<Option<ThreadsafeLoop>>>,
    stopping: std::sync::atomic::AtomicBool,
}

impl Loops {
    /// Cancels every loop's `main` (once).
    fn stop_all(&self) {
        if self
            .stopping
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        for h in handles.iter().flatten() {
            let _ = h.call_soon_threadsafe(|| {
                MAIN_TASK.with(|t| {
                    if let Some(task) = t.borrow().as_ref() {
                        task.cancel();
                    }
                });
            });
        }
    }
}

/// `asyncio.run(main(index))` on each of `n` loops at once, each on its own
/// thread (the first on the calling thread); the results in index order.
///
/// Everything in a loop stays on its thread (`!Send`, as always); `main`
/// itself is shared, so it must be `Send + Sync` and make each loop's
/// coroutine afresh. When one `main` fails, the others are cancelled and
/// the first error comes back. On the process's main thread, Ctrl-C
/// cancels the first loop's `main` (as `asyncio.run` does), which stops
/// them all: the call returns `KeyboardInterrupt`.
///
/// ```
/// let squares = asyncio::run_per_core(3, |index| async move {
///     asyncio::sleep(0.01).await?;
///     Ok(index * index)
/// })?;
/// assert_eq!(squares, [0, 1, 4]);
/// # Ok::<(), asyncio::Error>(())
/// ```
///
/// A server on every core:
///
/// ```no_run
/// # use std::rc::Rc;
/// # struct Echo;
/// # impl asyncio::BaseProtocol for Echo {}
/// # impl asyncio::Protocol for Echo {}
/// asyncio::run_per_core(2, |_| async {
///     let loop_ = asyncio::get_running_loop()?;
///     let server = loop_
///         .create_server(|| Echo)
///         .host("0.0.0.0")
///         .port(8888)
///         .reuse_port(true)
///         .await?;
///     server.serve_forever().await
/// })?;
/// # Ok::<(), asyncio::Error>(())
/// ```
///
/// Errors: `ValueError("n must be at least 1")`; the first error a `main`
/// ends with (`CancelledError`s of loops stopped because of it are not
/// errors of their own); `RuntimeError` if called inside a running loop.
pub fn run_per_core<F, Fut, T>(n: usize, main: F) -> Result<Vec<T>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: StdFuture<Output = Result<T>> + 'static,
    T: Send + 'static,
{
    if n == 0 {
        return Err(Error::value("n must be at least 1"));
    }
    if asyncio_core::_get_running_loop().is_some() {
        return Err(Error::runtime(
            "run_per_core() cannot be called from a running event loop",
        ));
    }
    let main = Arc::new(main);
    let loops = Arc::new(Loops::default());
    *loops.handles.lock().unwrap_or_else(|p| p.into_inner()) = (0..n).map(|_| None).collect();
    let mut threads = Vec::with_capacity(n - 1);
    for index in 1..n {
        let (main, loops) = (main.clone(), loops.clone());
        let thread = std::thread::Builder::new()
            .name(format!("asyncio-loop-{index}"))
            .spawn(move || run_one(index, &*main, &loops))
            .map_err(Error::from)?;
        threads.push(thread);
    }
    let first = run_one(0, &*main, &loops);
    let mut outcomes = vec![first];
    for thread in threads {
        outcomes.push(thread.join().unwrap_or_else(|p| Err(Error::panic(&*p))));
    }
    // The first real error; cancellations caused by it are not reported.
    let mut values = Vec::with_capacity(n);
    let mut cancelled = None;
    let mut failure = None;
    for outcome in outcomes {
        match outcome {
            Ok(v) => values.push(v),
            Err(e) if e.is_cancelled() => {
                cancelled.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(e) = cancelled {
        return Err(e);
    }
    Ok(values)
}

/// One loop: `asyncio.run(main(index))`, registered for [`Loops::stop_all`];
/// an error stops the others.
fn run_one<F, Fut, T>(index: usize, main: &F, loops: &Arc<Loops>) -> Result<T>
where
    F: Fn(usize) -> Fut,
    Fut: StdFuture<Output = Result<T>> + 'static,
    T: 'static,
{
    let coro = main(index);
    let registry = loops.clone();
    let outcome = crate::run(async move {
        let loop_ = asyncio_core::get_running_loop()?;
        MAIN_TASK.with(|t| *t.borrow_mut() = asyncio_core::current_task().ok().flatten());
        registry.handles.lock().unwrap_or_else(|p| p.into_inner())[index] =
            Some(loop_.threadsafe());
        if registry.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::cancelled(None));
        }
        coro.await
    });
    MAIN_TASK.with(|t| t.borrow_mut().take());
    loops.handles.lock().unwrap_or_else(|p| p.into_inner())[index] = None;
    if outcome.as_ref().is_err_and(|e| !e.is_cancelled()) {
        // KeyboardInterrupt (Ctrl-C) included.
        loops.stop_all();
    }
    outcome
}
