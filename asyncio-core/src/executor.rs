//! Executors for `run_in_executor` (Python's `concurrent.futures` executors).

use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle, ThreadId};

use crate::exceptions::{Error, Result};

/// A unit of work for an [`Executor`].
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Something that runs blocking jobs off the loop thread (Python's
/// `concurrent.futures.Executor`). Implement it to plug any pool into
/// `run_in_executor`.
pub trait Executor: Send + Sync + 'static {
    /// Queues `job`. Errors after [`shutdown`](Executor::shutdown):
    /// `RuntimeError("cannot schedule new futures after shutdown")`.
    fn submit(&self, job: Job) -> Result<()>;

    /// Stops accepting jobs; queued jobs still run. With `wait`, returns once
    /// every worker has exited.
    fn shutdown(&self, wait: bool);
}

struct PoolState {
    queue: VecDeque<Job>,
    idle: usize,
    workers: Vec<JoinHandle<()>>,
    worker_ids: Vec<ThreadId>,
    shutdown: bool,
}

struct Pool {
    max_workers: usize,
    prefix: String,
    state: Mutex<PoolState>,
    work: Condvar,
}

/// A pool of threads started on demand (Python's `ThreadPoolExecutor`).
///
/// It starts a new worker for a job when no worker is idle, up to
/// `max_workers` — by default `min(32, cpus + 4)` as in CPython.
///
/// ```
/// use asyncio_core::{Executor, ThreadPoolExecutor};
/// let pool = ThreadPoolExecutor::new(Some(2));
/// let (tx, rx) = std::sync::mpsc::channel();
/// pool.submit(Box::new(move || tx.send(6 * 7).unwrap()))?;
/// assert_eq!(rx.recv().unwrap(), 42);
/// pool.shutdown(true);
/// assert!(pool.submit(Box::new(|| ())).is_err());
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub struct ThreadPoolExecutor {
    pool: Arc<Pool>,
}

impl ThreadPoolExecutor {
    /// A pool of up to `max_workers` threads (`None`: `min(32, cpus + 4)`).
    pub fn new(max_workers: Option<usize>) -> ThreadPoolExecutor {
        ThreadPoolExecutor::with_thread_name_prefix(max_workers, "ThreadPoolExecutor")
    }

    /// [`new`](ThreadPoolExecutor::new) with worker threads named `{prefix}_{n}`.
    pub fn with_thread_name_prefix(max_workers: Option<usize>, prefix: &str) -> ThreadPoolExecutor {
        let max_workers = max_workers.unwrap_or_else(default_max_workers).max(1);
        ThreadPoolExecutor {
            pool: Arc::new(Pool {
                max_workers,
                prefix: prefix.to_owned(),
                state: Mutex::new(PoolState {
                    queue: VecDeque::new(),
                    idle: 0,
                    workers: Vec::new(),
                    worker_ids: Vec::new(),
                    shutdown: false,
                }),
                work: Condvar::new(),
            }),
        }
    }

    /// The largest number of worker threads.
    pub fn max_workers(&self) -> usize {
        self.pool.max_workers
    }

    /// How many worker threads exist now.
    pub fn num_threads(&self) -> usize {
        self.pool.lock().workers.len()
    }
}

/// CPython's default: `min(32, (os.process_cpu_count() or 1) + 4)`.
pub fn default_max_workers() -> usize {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    (cpus + 4).min(32)
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worker(self: Arc<Self>) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                // A panicking job must not take the worker down; the job
                // reports its own outcome.
                let _ = catch_unwind(AssertUnwindSafe(job));
                state = self.lock();
                continue;
            }
            if state.shutdown {
                return;
            }
            state.idle += 1;
            state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
    }
}

impl Executor for ThreadPoolExecutor {
    fn submit(&self, job: Job) -> Result<()> {
        let mut state = self.pool.lock();
        if state.shutdown {
            return Err(Error::runtime("cannot schedule new futures after shutdown"));
        }
        state.queue.push_back(job);
        if state.idle >= state.queue.len() {
            self.pool.work.notify_one();
            return Ok(());
        }
        if state.workers.len() < self.pool.max_workers {
            let pool = self.pool.clone();
            let name = format!("{}_{}", self.pool.prefix, state.workers.len());
            match thread::Builder::new()
                .name(name)
                .spawn(move || pool.worker())
            {
                Ok(handle) => {
                    state.worker_ids.push(handle.thread().id());
                    state.workers.push(handle);
                }
                Err(e) if state.workers.is_empty() => {
                    state.queue.pop_back();
                    return Err(Error::from(e));
                }
                Err(_) => {}
            }
        } else {
            self.pool.work.notify_one();
        }
        Ok(())
    }

    fn shutdown(&self, wait: bool) {
        let workers = {
            let mut state = self.pool.lock();
            state.shutdown = true;
            self.pool.work.notify_all();
            if !wait {
                return;
            }
            let me = thread::current().id();
            if state.worker_ids.contains(&me) {
                // Joining from a worker would deadlock.
                return;
            }
            state.worker_ids.clear();
            std::mem::take(&mut state.workers)
        };
        for w in workers {
            let _ = w.join();
        }
    }
}

impl Drop for ThreadPoolExecutor {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.lock();
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.pool.max_workers)
            .field("threads", &state.workers.len())
            .field("queued", &state.queue.len())
            .field("shutdown", &state.shutdown)
            .finish()
    }
}
