//! `asyncio.Queue`, `PriorityQueue` and `LifoQueue` (CPython's
//! `queues.py`), with 3.13's `shutdown`.
//!
//! A queue is a cheap, cloneable handle (a clone is the same queue) bound
//! to one thread, like the loop. Blocked `get`s and `put`s are served in
//! FIFO order with CPython's algorithm: a waiter woken and then cancelled
//! passes its turn to the next one, so no item and no free slot is lost.
//! Items need no `Clone`: [`get`](Queue::get) moves them out.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;

use crate::exceptions::{Error, ErrorKind, Result};
use crate::locks::Event;
use crate::mixins::{remove_waiter, LoopBound, OnDrop, Waiters};

/// How a queue stores its items: CPython's overridable `_init`, `_put`
/// and `_get`.
trait Storage<T>: Default {
    /// The Python class name (`Queue`, `PriorityQueue`, `LifoQueue`).
    const NAME: &'static str;
    fn put(&mut self, item: T);
    fn get(&mut self) -> Option<T>;
    fn len(&self) -> usize;
    /// The items in storage order (`list(self._queue)`).
    fn items(&self) -> Vec<&T>;
}

/// `collections.deque`: first in, first out.
struct Fifo<T>(VecDeque<T>);

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo(VecDeque::new())
    }
}

impl<T> Storage<T> for Fifo<T> {
    const NAME: &'static str = "Queue";
    fn put(&mut self, item: T) {
        self.0.push_back(item);
    }
    fn get(&mut self) -> Option<T> {
        self.0.pop_front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn items(&self) -> Vec<&T> {
        self.0.iter().collect()
    }
}

/// A list used as a stack: last in, first out.
struct Lifo<T>(Vec<T>);

impl<T> Default for Lifo<T> {
    fn default() -> Self {
        Lifo(Vec::new())
    }
}

impl<T> Storage<T> for Lifo<T> {
    const NAME: &'static str = "LifoQueue";
    fn put(&mut self, item: T) {
        self.0.push(item);
    }
    fn get(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn items(&self) -> Vec<&T> {
        self.0.iter().collect()
    }
}

/// A list kept as a binary min-heap by `heapq.heappush`/`heappop`'s exact
/// algorithm (so items that compare equal come out in the same order as
/// in Python).
struct Heap<T>(Vec<T>);

impl<T> Default for Heap<T> {
    fn default() -> Self {
        Heap(Vec::new())
    }
}

impl<T: Ord> Heap<T> {
    /// `heapq._siftdown`: moves the item at `pos` up towards `start`.
    fn sift_down(&mut self, start: usize, mut pos: usize) {
        let heap = &mut self.0;
        while pos > start {
            let parent = (pos - 1) >> 1;
            if heap[pos] < heap[parent] {
                heap.swap(pos, parent);
                pos = parent;
                continue;
            }
            break;
        }
    }

    /// `heapq._siftup`: moves the smaller child up until a leaf is reached,
    /// then sifts the item placed at `pos` down to its place.
    fn sift_up(&mut self, mut pos: usize) {
        let end = self.0.len();
        let start = pos;
        let mut child = 2 * pos + 1;
        while child < end {
            let right = child + 1;
            if right < end && self.0[child] >= self.0[right] {
                child = right;
            }
            self.0.swap(pos, child);
            pos = child;
            child = 2 * pos + 1;
        }
        self.sift_down(start, pos);
    }
}

impl<T: Ord> Storage<T> for Heap<T> {
    const NAME: &'static str = "PriorityQueue";
    fn put(&mut self, item: T) {
        self.0.push(item);
        let last = self.0.len() - 1;
        self.sift_down(0, last);
    }
    fn get(&mut self) -> Option<T> {
        let last = self.0.pop()?;
        if self.0.is_empty() {
            return Some(last);
        }
        let first = std::mem::replace(&mut self.0[0], last);
        self.sift_up(0);
        Some(first)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn items(&self) -> Vec<&T> {
        self.0.iter().collect()
    }
}

/// The state every kind of queue shares.
struct Inner<T, S> {
    maxsize: usize,
    queue: RefCell<S>,
    getters: Waiters,
    putters: Waiters,
    unfinished_tasks: Cell<usize>,
    finished: Event,
    is_shutdown: Cell<bool>,
    bound: LoopBound,
    _items: std::marker::PhantomData<T>,
}

impl<T: 'static, S: Storage<T> + 'static> Inner<T, S> {
    fn new(maxsize: usize) -> Inner<T, S> {
        let finished = Event::new();
        finished.set();
        Inner {
            maxsize,
            queue: RefCell::new(S::default()),
            getters: Default::default(),
            putters: Default::default(),
            unfinished_tasks: Cell::new(0),
            finished,
            is_shutdown: Cell::new(false),
            bound: LoopBound::default(),
            _items: std::marker::PhantomData,
        }
    }

    /// `_wakeup_next`: wakes the next waiter that isn't cancelled.
    fn wakeup_next(waiters: &Waiters) {
        loop {
            let Some(waiter) = waiters.borrow_mut().pop_front() else {
                break;
            };
            if !waiter.done() {
                let _ = waiter.set_result(());
                break;
            }
        }
    }

    fn qsize(&self) -> usize {
        self.queue.borrow().len()
    }

    fn empty(&self) -> bool {
        self.qsize() == 0
    }

    fn full(&self) -> bool {
        self.maxsize != 0 && self.qsize() >= self.maxsize
    }

    fn shut_down() -> Error {
        Error::bare(ErrorKind::QueueShutDown)
    }

    async fn put(self: Rc<Self>, item: T, location: &'static Location<'static>) -> Result<()> {
        while self.full() {
            if self.is_shutdown.get() {
                return Err(Self::shut_down());
            }
            let putter = self.bound.create_future(|| self.short_repr(), location)?;
            self.putters.borrow_mut().push_back(putter.clone());
            let on_error = || {
                putter.cancel(); // Just in case putter is not done yet.
                                 // get_nowait() or shutdown() may have removed it already.
                remove_waiter(&self.putters, &putter);
                if !self.full() && !putter.cancelled() {
                    // We were woken up by get_nowait(), but can't take the
                    // call: wake up the next in line.
                    Self::wakeup_next(&self.putters);
                }
            };
            let cleanup = OnDrop::new(on_error);
            let waited = (&putter).await;
            if let Err(e) = waited {
                drop(cleanup);
                return Err(e);
            }
            cleanup.disarm();
        }
        self.put_nowait(item)
    }

    fn put_nowait(&self, item: T) -> Result<()> {
        if self.is_shutdown.get() {
            return Err(Self::shut_down());
        }
        if self.full() {
            return Err(Error::bare(ErrorKind::QueueFull));
        }
        self.queue.borrow_mut().put(item);
        self.unfinished_tasks.set(self.unfinished_tasks.get() + 1);
        self.finished.clear();
        Self::wakeup_next(&self.getters);
        Ok(())
    }

    async fn get(self: Rc<Self>, location: &'static Location<'static>) -> Result<T> {
        while self.empty() {
            if self.is_shutdown.get() && self.empty() {
                return Err(Self::shut_down());
            }
            let getter = self.bound.create_future(|| self.short_repr(), location)?;
            self.getters.borrow_mut().push_back(getter.clone());
            let on_error = || {
                getter.cancel(); // Just in case getter is not done yet.
                                 // put_nowait() or shutdown() may have removed it already.
                remove_waiter(&self.getters, &getter);
                if !self.empty() && !getter.cancelled() {
                    // We were woken up by put_nowait(), but can't take the
                    // call: wake up the next in line.
                    Self::wakeup_next(&self.getters);
                }
            };
            let cleanup = OnDrop::new(on_error);
            let waited = (&getter).await;
            if let Err(e) = waited {
                drop(cleanup);
                return Err(e);
            }
            cleanup.disarm();
        }
        self.get_nowait()
    }

    fn get_nowait(&self) -> Result<T> {
        let item = self.queue.borrow_mut().get();
        match item {
            None if self.is_shutdown.get() => Err(Self::shut_down()),
            None => Err(Error::bare(ErrorKind::QueueEmpty)),
            Some(item) => {
                Self::wakeup_next(&self.putters);
                Ok(item)
            }
        }
    }

    fn task_done(&self) -> Result<()> {
        let n = self.unfinished_tasks.get();
        if n == 0 {
            return Err(Error::value("task_done() called too many times"));
        }
        self.unfinished_tasks.set(n - 1);
        if n == 1 {
            self.finished.set();
        }
        Ok(())
    }

    async fn join(self: Rc<Self>, location: &'static Location<'static>) -> Result<()> {
        if self.unfinished_tasks.get() > 0 {
            self.finished.wait_raw(location).await?;
        }
        Ok(())
    }

    fn shutdown(&self, immediate: bool) {
        self.is_shutdown.set(true);
        if immediate {
            loop {
                // Each item is dropped outside the borrow.
                let Some(item) = self.queue.borrow_mut().get() else {
                    break;
                };
                drop(item);
                let n = self.unfinished_tasks.get();
                if n > 0 {
                    self.unfinished_tasks.set(n - 1);
                }
            }
            if self.unfinished_tasks.get() == 0 {
                self.finished.set();
            }
        }
        // All getters need to re-check queue-empty to raise ShutDown.
        for waiters in [&self.getters, &self.putters] {
            loop {
                let Some(waiter) = waiters.borrow_mut().pop_front() else {
                    break;
                };
                if !waiter.done() {
                    let _ = waiter.set_result(());
                }
            }
        }
    }

    /// The repr in a "bound to a different event loop" error: without the
    /// items, which need not be `Debug`.
    fn short_repr(&self) -> String {
        format!("<{} at {:p} maxsize={}>", S::NAME, self, self.maxsize)
    }

    /// `_format()`: `maxsize=0 _queue=[1, 2] _getters[1] tasks=2 shutdown`.
    fn format(&self) -> String
    where
        T: fmt::Debug,
    {
        let mut result = format!("maxsize={}", self.maxsize);
        if let Ok(queue) = self.queue.try_borrow() {
            let items = queue.items();
            if !items.is_empty() {
                result.push_str(&format!(" _queue={items:?}"));
            }
        }
        let getters = self.getters.try_borrow().map_or(0, |g| g.len());
        if getters > 0 {
            result.push_str(&format!(" _getters[{getters}]"));
        }
        let putters = self.putters.try_borrow().map_or(0, |p| p.len());
        if putters > 0 {
            result.push_str(&format!(" _putters[{putters}]"));
        }
        if self.unfinished_tasks.get() > 0 {
            result.push_str(&format!(" tasks={}", self.unfinished_tasks.get()));
        }
        if self.is_shutdown.get() {
            result.push_str(" shutdown");
        }
        result
    }
}

/// The methods of all three queues, written once (CPython's subclasses
/// override only the storage).
macro_rules! queue_api {
    ($name:ident, $storage:ident, [$($bound:tt)*]) => {
        impl<T: 'static $($bound)*> $name<T> {
            /// A new queue holding at most `maxsize` items; `0` means no
            /// limit (Python's `maxsize <= 0`).
            pub fn new(maxsize: usize) -> $name<T> {
                $name {
                    inner: Rc::new(Inner::new(maxsize)),
                }
            }

            /// The number of items allowed in the queue (`0`: no limit).
            pub fn maxsize(&self) -> usize {
                self.inner.maxsize
            }

            /// The number of items in the queue.
            pub fn qsize(&self) -> usize {
                self.inner.qsize()
            }

            /// `true` if the queue is empty.
            pub fn empty(&self) -> bool {
                self.inner.empty()
            }

            /// `true` if the queue holds `maxsize` items (never for
            /// `maxsize` 0).
            pub fn full(&self) -> bool {
                self.inner.full()
            }

            /// Puts `item` into the queue, waiting while it is full
            /// (`await queue.put(item)`). Blocked putters are served in
            /// FIFO order.
            ///
            /// Errors: `QueueShutDown` if the queue is shut down (before or
            /// while waiting; the item is dropped); `CancelledError`;
            /// `RuntimeError("… is bound to a different event loop")`.
            #[track_caller]
            pub fn put(&self, item: T) -> impl std::future::Future<Output = Result<()>> + 'static {
                self.inner.clone().put(item, Location::caller())
            }

            /// Puts `item` into the queue if it is not full
            /// (`queue.put_nowait(item)`).
            ///
            /// Errors: `QueueFull`; `QueueShutDown` (the item is dropped).
            pub fn put_nowait(&self, item: T) -> Result<()> {
                self.inner.put_nowait(item)
            }

            /// Removes and returns an item, waiting while the queue is
            /// empty (`await queue.get()`). Blocked getters are served in
            /// FIFO order.
            ///
            /// Errors: `QueueShutDown` once the queue is shut down and
            /// empty (at once after `shutdown(true)`); `CancelledError`
            /// (no item is lost: a woken getter passes the item on);
            /// `RuntimeError("… is bound to a different event loop")`.
            #[track_caller]
            pub fn get(&self) -> impl std::future::Future<Output = Result<T>> + 'static {
                self.inner.clone().get(Location::caller())
            }

            /// Removes and returns an item if one is there
            /// (`queue.get_nowait()`).
            ///
            /// Errors: `QueueEmpty`; `QueueShutDown` if the queue is shut
            /// down and empty.
            pub fn get_nowait(&self) -> Result<T> {
                self.inner.get_nowait()
            }

            /// Tells the queue that an item taken with `get` is processed:
            /// [`join`](Self::join) returns once every item put was
            /// marked done.
            ///
            /// Errors: `ValueError("task_done() called too many times")`.
            pub fn task_done(&self) -> Result<()> {
                self.inner.task_done()
            }

            /// Waits until every item put into the queue was gotten and
            /// marked done with [`task_done`](Self::task_done)
            /// (`await queue.join()`).
            ///
            /// Errors: `CancelledError`; `RuntimeError("… is bound to a
            /// different event loop")`.
            #[track_caller]
            pub fn join(&self) -> impl std::future::Future<Output = Result<()>> + 'static {
                self.inner.clone().join(Location::caller())
            }

            /// Shuts the queue down (`queue.shutdown(immediate)`, 3.13):
            /// `put`s fail with `QueueShutDown` from now on, and `get`s
            /// once the queue is empty. Blocked callers of `put` and `get`
            /// are woken to see it. With `immediate`, the items left are
            /// dropped, each marked done with [`task_done`](Self::task_done)
            /// (which may unblock [`join`](Self::join)), and `get`s fail at
            /// once.
            pub fn shutdown(&self, immediate: bool) {
                self.inner.shutdown(immediate)
            }

            /// `true` if both handles are the same queue (Python's `is`).
            pub fn ptr_eq(&self, other: &$name<T>) -> bool {
                Rc::ptr_eq(&self.inner, &other.inner)
            }

            /// `queue._format()`, for tests.
            #[doc(hidden)]
            pub fn _format(&self) -> String
            where
                T: fmt::Debug,
            {
                self.inner.format()
            }

            /// `len(queue._getters)`, for tests.
            #[doc(hidden)]
            pub fn _getters_len(&self) -> usize {
                self.inner.getters.borrow().len()
            }

            /// `len(queue._putters)`, for tests.
            #[doc(hidden)]
            pub fn _putters_len(&self) -> usize {
                self.inner.putters.borrow().len()
            }

            /// `queue._unfinished_tasks`, for tests.
            #[doc(hidden)]
            pub fn _unfinished_tasks(&self) -> usize {
                self.inner.unfinished_tasks.get()
            }
        }

        impl<T: 'static $($bound)*> Default for $name<T> {
            /// A queue without a size limit.
            fn default() -> Self {
                $name::new(0)
            }
        }

        impl<T: 'static> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name {
                    inner: self.inner.clone(),
                }
            }
        }

        /// Python's `repr(queue)`: `<Queue at 0x… maxsize=0 _queue=[1, 2]
        /// tasks=2>`.
        impl<T: fmt::Debug + 'static $($bound)*> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "<{} at {:p} {}>",
                    <$storage<T> as Storage<T>>::NAME,
                    Rc::as_ptr(&self.inner),
                    self.inner.format()
                )
            }
        }

        /// Python's `str(queue)`: `<Queue maxsize=0 _queue=[1, 2] tasks=2>`.
        impl<T: fmt::Debug + 'static $($bound)*> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "<{} {}>",
                    <$storage<T> as Storage<T>>::NAME,
                    self.inner.format()
                )
            }
        }
    };
}

/// A first-in, first-out queue for producer and consumer tasks (Python's
/// `asyncio.Queue`).
///
/// With a `maxsize`, [`put`](Queue::put) waits while the queue is full;
/// [`get`](Queue::get) waits while it is empty. [`task_done`](Queue::task_done)
/// and [`join`](Queue::join) track the items' processing;
/// [`shutdown`](Queue::shutdown) ends the queue (3.13).
///
/// ```
/// use asyncio_core::queues::Queue;
///
/// let loop_ = asyncio_core::testing::new_test_loop();
/// let total = loop_.run_until_complete(async {
///     let queue = Queue::new(2);
///     let consumer = {
///         let queue = queue.clone();
///         asyncio_core::create_task(async move {
///             let mut total = 0;
///             loop {
///                 match queue.get().await {
///                     Ok(n) => total += n,
///                     Err(e) if e.kind() == asyncio_core::ErrorKind::QueueShutDown => break,
///                     Err(e) => return Err(e),
///                 }
///                 queue.task_done()?;
///             }
///             Ok(total)
///         })?
///     };
///     for n in 1..=10 {
///         queue.put(n).await?; // waits while 2 items are queued
///     }
///     queue.join().await?;
///     queue.shutdown(false);
///     consumer.await
/// })?;
/// assert_eq!(total, 55);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub struct Queue<T: 'static> {
    inner: Rc<Inner<T, Fifo<T>>>,
}

queue_api!(Queue, Fifo, []);

/// A queue that hands out its smallest item first (Python's
/// `asyncio.PriorityQueue`, a `heapq` min-heap): put `(priority, data)`
/// tuples to order by priority.
///
/// Items that compare equal come out in the order `heapq` would give
/// (not necessarily the order they were put in).
///
/// ```
/// use asyncio_core::queues::PriorityQueue;
///
/// let loop_ = asyncio_core::testing::new_test_loop();
/// loop_.run_until_complete(async {
///     let queue = PriorityQueue::new(0);
///     for item in [(2, "b"), (1, "a"), (3, "c")] {
///         queue.put(item).await?;
///     }
///     assert_eq!(queue.get().await?, (1, "a"));
///     assert_eq!(queue.get_nowait()?, (2, "b"));
///     Ok(())
/// })?;
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub struct PriorityQueue<T: 'static> {
    inner: Rc<Inner<T, Heap<T>>>,
}

queue_api!(PriorityQueue, Heap, [+ Ord]);

/// A queue that hands out the most recently added item first (Python's
/// `asyncio.LifoQueue`).
///
/// ```
/// use asyncio_core::queues::LifoQueue;
///
/// let queue = LifoQueue::new(0);
/// for n in [1, 3, 2] {
///     queue.put_nowait(n)?;
/// }
/// assert_eq!(format!("{queue}"), "<LifoQueue maxsize=0 _queue=[1, 3, 2] tasks=3>");
/// assert_eq!(queue.get_nowait()?, 2);
/// # Ok::<(), asyncio_core::Error>(())
/// ```
pub struct LifoQueue<T: 'static> {
    inner: Rc<Inner<T, Lifo<T>>>,
}

queue_api!(LifoQueue, Lifo, []);
