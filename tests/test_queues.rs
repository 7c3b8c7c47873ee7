//! `asyncio.Queue`, `PriorityQueue` and `LifoQueue`: CPython 3.13's
//! `test_asyncio/test_queues.py`, test by test (one module per test
//! class, CPython's test names; the join and shutdown mixins run for all
//! three queues), then the Rust-only behaviour.
//!
//! Not ported (Python-only): `test_generic_alias` (`Queue[int]` is a
//! typing construct) and `test_float_maxsize` (`maxsize` is a `usize`).
//! `test_get_with_putters` appends a bare future to the private
//! `_putters`; here a real putter task waits there.

mod common;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use asyncio::{Error, ErrorKind, Event, LifoQueue, PriorityQueue, Queue, Result, Task, TaskGroup};
use common::repr;

async fn sleep0() -> Result<()> {
    asyncio::sleep(0).await
}

fn spawn<T: 'static>(coro: impl std::future::Future<Output = Result<T>> + 'static) -> Task<T> {
    asyncio::create_task(coro).expect("create_task")
}

/// Awaits `task` and returns its error.
async fn error_of<T: Clone + 'static>(task: &Task<T>) -> Error {
    match task.await {
        Ok(_) => panic!("the task succeeded"),
        Err(e) => e,
    }
}

fn assert_kind<T: fmt::Debug>(r: Result<T>, kind: ErrorKind) {
    match r {
        Ok(v) => panic!("expected {kind}, got Ok({v:?})"),
        Err(e) => assert_eq!(e.kind(), kind, "{e:?}"),
    }
}

// ===== QueueBasicTests =====

mod queue_basic_tests {
    use super::*;

    /// `_test_repr_or_str`: `fn_` is repr or str; `expect_id` is true if
    /// the queue's address appears in `fn_(queue)`.
    async fn test_repr_or_str(fn_: fn(&Queue<i32>) -> String, expect_id: bool) -> Result<()> {
        let q = Queue::<i32>::new(0);
        assert!(fn_(&q).starts_with("<Queue"), "{}", fn_(&q));
        let id_is_present = fn_(&q).starts_with("<Queue at 0x");
        assert_eq!(expect_id, id_is_present, "{}", fn_(&q));

        // getters
        let q = Queue::<i32>::new(0);
        let tg = TaskGroup::new();
        let getter = tg
            .run(async {
                // Start a task that waits to get.
                let getter = tg.create_task(q.get())?;
                // Let it start waiting.
                sleep0().await?;
                assert!(fn_(&q).contains("_getters[1]"), "{}", fn_(&q));
                // Resume the q.get coroutine to finish it.
                q.put_nowait(0)?;
                Ok(getter)
            })
            .await?;
        assert_eq!(getter.await?, 0);

        // putters
        let q = Queue::<i32>::new(1);
        let tg = TaskGroup::new();
        let putter = tg
            .run(async {
                q.put_nowait(1)?;
                // Start a task that waits to put.
                let putter = tg.create_task(q.put(2))?;
                // Let it start waiting.
                sleep0().await?;
                assert!(fn_(&q).contains("_putters[1]"), "{}", fn_(&q));
                // Resume the q.put coroutine to finish it.
                q.get_nowait()?;
                Ok(putter)
            })
            .await?;
        assert!(putter.done());

        let q = Queue::<i32>::new(0);
        q.put_nowait(1)?;
        assert!(fn_(&q).contains("_queue=[1]"), "{}", fn_(&q));
        Ok(())
    }

    #[asyncio::test]
    async fn test_repr() -> Result<()> {
        test_repr_or_str(|q| format!("{q:?}"), true).await
    }

    #[asyncio::test]
    async fn test_str() -> Result<()> {
        test_repr_or_str(|q| format!("{q}"), false).await
    }

    #[asyncio::test]
    async fn test_empty() -> Result<()> {
        let q = Queue::new(0);
        assert!(q.empty());
        q.put(1).await?;
        assert!(!q.empty());
        assert_eq!(q.get().await?, 1);
        assert!(q.empty());
        Ok(())
    }

    #[asyncio::test]
    async fn test_full() -> Result<()> {
        let q = Queue::<i32>::new(0);
        assert!(!q.full());

        let q = Queue::new(1);
        q.put(1).await?;
        assert!(q.full());
        Ok(())
    }

    #[asyncio::test]
    async fn test_order() -> Result<()> {
        let q = Queue::new(0);
        for i in [1, 3, 2] {
            q.put(i).await?;
        }

        let mut items = Vec::new();
        for _ in 0..3 {
            items.push(q.get().await?);
        }
        assert_eq!(items, [1, 3, 2]);
        Ok(())
    }

    #[asyncio::test]
    async fn test_maxsize() -> Result<()> {
        let q = Queue::new(2);
        assert_eq!(q.maxsize(), 2);
        let have_been_put = Rc::new(RefCell::new(Vec::new()));

        let t = {
            let (q, have_been_put) = (q.clone(), have_been_put.clone());
            spawn(async move {
                for i in 0..3 {
                    q.put(i).await?;
                    have_been_put.borrow_mut().push(i);
                }
                Ok(true)
            })
        };
        for _ in 0..2 {
            sleep0().await?;
        }

        // The putter is blocked after putting two items.
        assert_eq!(*have_been_put.borrow(), [0, 1]);
        assert_eq!(q.get().await?, 0);

        // Let the putter resume and put the last item.
        sleep0().await?;
        assert_eq!(*have_been_put.borrow(), [0, 1, 2]);
        assert_eq!(q.get().await?, 1);
        assert_eq!(q.get().await?, 2);

        assert!(t.done());
        assert!(t.result()?);
        Ok(())
    }
}

// ===== QueueGetTests =====

mod queue_get_tests {
    use super::*;

    #[asyncio::test]
    async fn test_blocking_get() -> Result<()> {
        let q = Queue::new(0);
        q.put_nowait(1)?;

        assert_eq!(q.get().await?, 1);
        Ok(())
    }

    #[asyncio::test]
    async fn test_get_with_putters() -> Result<()> {
        let q = Queue::new(1);
        q.put(1).await?;

        // A real putter waits in `_putters` (CPython appends a future).
        let putter = spawn(q.put(2));
        sleep0().await?;
        assert_eq!(q._putters_len(), 1);

        assert_eq!(q.get().await?, 1);
        // get() woke the putter: it left `_putters`.
        assert_eq!(q._putters_len(), 0);
        putter.await?;
        assert_eq!(q.get_nowait()?, 2);
        Ok(())
    }

    #[asyncio::test]
    async fn test_blocking_get_wait() -> Result<()> {
        let loop_ = asyncio::get_running_loop()?;
        let q = Queue::new(0);
        let started = Event::new();
        let finished = Rc::new(Cell::new(false));

        let queue_get_task = {
            let (q, started, finished) = (q.clone(), started.clone(), finished.clone());
            spawn(async move {
                started.set();
                let res = q.get().await?;
                finished.set(true);
                Ok(res)
            })
        };
        started.wait().await?;
        assert!(!finished.get());
        let q2 = q.clone();
        loop_.call_later(0.01, move || q2.put_nowait(1))?;
        let res = queue_get_task.await?;
        assert!(finished.get());
        assert_eq!(res, 1);
        Ok(())
    }

    #[test]
    fn test_nonblocking_get() {
        let q = Queue::new(0);
        q.put_nowait(1).unwrap();
        assert_eq!(q.get_nowait().unwrap(), 1);
    }

    #[test]
    fn test_nonblocking_get_exception() {
        let q = Queue::<i32>::new(0);
        let err = q.get_nowait().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::QueueEmpty);
        assert_eq!(format!("{err:?}"), "QueueEmpty()");
    }

    #[asyncio::test]
    async fn test_get_cancelled_race() -> Result<()> {
        let q = Queue::new(0);

        let t1 = spawn(q.get());
        let t2 = spawn(q.get());

        sleep0().await?;
        t1.cancel();
        sleep0().await?;
        assert!(t1.done());
        q.put("a").await?;
        sleep0().await?;
        assert_eq!(t2.await?, "a");
        Ok(())
    }

    #[asyncio::test]
    async fn test_get_with_waiting_putters() -> Result<()> {
        let q = Queue::new(1);
        spawn(q.put("a"));
        spawn(q.put("b"));
        assert_eq!(q.get().await?, "a");
        assert_eq!(q.get().await?, "b");
        Ok(())
    }

    #[asyncio::test]
    async fn test_why_are_getters_waiting() -> Result<()> {
        async fn consumer(queue: Queue<usize>, num_expected: usize) -> Result<()> {
            for _ in 0..num_expected {
                queue.get().await?;
            }
            Ok(())
        }

        async fn producer(queue: Queue<usize>, num_items: usize) -> Result<()> {
            for i in 0..num_items {
                queue.put(i).await?;
            }
            Ok(())
        }

        let producer_num_items = 5;

        let q = Queue::new(1);
        let tg = TaskGroup::new();
        tg.run(async {
            tg.create_task(producer(q.clone(), producer_num_items))?;
            tg.create_task(consumer(q.clone(), producer_num_items))?;
            Ok(())
        })
        .await
    }

    #[asyncio::test]
    async fn test_cancelled_getters_not_being_held_in_self_getters() -> Result<()> {
        let queue = Queue::<i32>::new(5);

        let err = asyncio::wait_for(queue.get(), 0.01).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimeoutError);

        assert_eq!(queue._getters_len(), 0);
        Ok(())
    }
}

// ===== QueuePutTests =====

mod queue_put_tests {
    use super::*;

    #[asyncio::test]
    async fn test_blocking_put() -> Result<()> {
        let q = Queue::new(0);

        // No maxsize, won't block.
        q.put(1).await?;
        assert_eq!(q.get().await?, 1);
        Ok(())
    }

    #[asyncio::test]
    async fn test_blocking_put_wait() -> Result<()> {
        let q = Queue::new(1);
        let started = Event::new();
        let finished = Rc::new(Cell::new(false));

        let loop_ = asyncio::get_running_loop()?;
        let q2 = q.clone();
        loop_.call_later(0.01, move || q2.get_nowait().map(drop))?;
        let queue_put_task = {
            let (q, started, finished) = (q.clone(), started.clone(), finished.clone());
            spawn(async move {
                started.set();
                q.put(1).await?;
                q.put(2).await?;
                finished.set(true);
                Ok(())
            })
        };
        started.wait().await?;
        assert!(!finished.get());
        queue_put_task.await?;
        assert!(finished.get());
        Ok(())
    }

    #[test]
    fn test_nonblocking_put() {
        let q = Queue::new(0);
        q.put_nowait(1).unwrap();
        assert_eq!(q.get_nowait().unwrap(), 1);
    }

    #[asyncio::test]
    async fn test_get_cancel_drop_one_pending_reader() -> Result<()> {
        let q = Queue::new(0);

        let mut reader = spawn(q.get());

        sleep0().await?;

        q.put_nowait(1)?;
        q.put_nowait(2)?;
        reader.cancel();

        if let Err(e) = (&reader).await {
            assert!(e.is_cancelled());
            // Try again.
            reader = spawn(q.get());
            (&reader).await?;
        }

        let result = reader.result()?;
        // If we get 2, it means 1 got dropped!
        assert_eq!(result, 1);
        Ok(())
    }

    #[asyncio::test]
    async fn test_get_cancel_drop_many_pending_readers() -> Result<()> {
        let q = Queue::new(0);

        let tg = TaskGroup::new();
        let (reader2, reader3) = tg
            .run(async {
                let reader1 = tg.create_task(q.get())?;
                let reader2 = tg.create_task(q.get())?;
                let reader3 = tg.create_task(q.get())?;

                sleep0().await?;

                q.put_nowait(1)?;
                q.put_nowait(2)?;
                reader1.cancel();

                assert!(error_of(&reader1).await.is_cancelled());

                (&reader3).await?;
                Ok((reader2, reader3))
            })
            .await?;

        // It is undefined in which order concurrent readers receive results.
        let mut got = [reader2.result()?, reader3.result()?];
        got.sort();
        assert_eq!(got, [1, 2]);
        Ok(())
    }

    #[asyncio::test]
    async fn test_put_cancel_drop() -> Result<()> {
        let q = Queue::new(1);

        q.put_nowait(1)?;

        // Putting a second item in the queue has to block (qsize=1).
        let mut writer = spawn(q.put(2));
        sleep0().await?;

        let value1 = q.get_nowait()?;
        assert_eq!(value1, 1);

        writer.cancel();
        if let Err(e) = (&writer).await {
            assert!(e.is_cancelled());
            // Try again.
            writer = spawn(q.put(2));
            (&writer).await?;
        }

        let value2 = q.get_nowait()?;
        assert_eq!(value2, 2);
        assert_eq!(q.qsize(), 0);
        Ok(())
    }

    #[test]
    fn test_nonblocking_put_exception() {
        let q = Queue::new(1);
        q.put_nowait(1).unwrap();
        let err = q.put_nowait(2).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::QueueFull);
        assert_eq!(format!("{err:?}"), "QueueFull()");
    }

    #[asyncio::test]
    async fn test_put_cancelled() -> Result<()> {
        let q = Queue::new(0);

        let t = {
            let q = q.clone();
            spawn(async move {
                q.put(1).await?;
                Ok(true)
            })
        };

        assert_eq!(q.get().await?, 1);
        assert!(t.done());
        assert!(t.result()?);
        Ok(())
    }

    #[asyncio::test]
    async fn test_put_cancelled_race() -> Result<()> {
        let q = Queue::new(1);

        let put_a = spawn(q.put("a"));
        let put_b = spawn(q.put("b"));
        let put_c = spawn(q.put("X"));

        sleep0().await?;
        assert!(put_a.done());
        assert!(!put_b.done());

        put_c.cancel();
        sleep0().await?;
        assert!(put_c.done());
        assert_eq!(q.get_nowait()?, "a");
        sleep0().await?;
        assert_eq!(q.get_nowait()?, "b");

        put_b.await
    }

    #[asyncio::test]
    async fn test_put_with_waiting_getters() -> Result<()> {
        let q = Queue::new(0);
        let t = spawn(q.get());
        sleep0().await?;
        q.put("a").await?;
        assert_eq!(t.await?, "a");
        Ok(())
    }

    #[asyncio::test]
    async fn test_why_are_putters_waiting() -> Result<()> {
        let queue = Queue::new(2);

        let putter = |item: i32| queue.put(item);

        let getter = {
            let queue = queue.clone();
            async move {
                sleep0().await?;
                let num = queue.qsize();
                for _ in 0..num {
                    queue.get_nowait()?;
                }
                Ok(())
            }
        };

        let tg = TaskGroup::new();
        tg.run(async {
            tg.create_task(getter)?;
            tg.create_task(putter(0))?;
            tg.create_task(putter(1))?;
            tg.create_task(putter(2))?;
            tg.create_task(putter(3))?;
            Ok(())
        })
        .await
    }

    #[asyncio::test]
    async fn test_cancelled_puts_not_being_held_in_self_putters() -> Result<()> {
        // Full queue.
        let queue = Queue::new(1);
        queue.put_nowait(1)?;

        // Task waiting for space to put an item in the queue.
        let put_task = spawn(queue.put(1));
        sleep0().await?;

        // The putter is removed from queue._putters when the task is
        // cancelled.
        assert_eq!(queue._putters_len(), 1);
        put_task.cancel();
        assert!(error_of(&put_task).await.is_cancelled());
        assert_eq!(queue._putters_len(), 0);
        Ok(())
    }

    #[asyncio::test]
    async fn test_cancelled_put_silence_value_error_exception() -> Result<()> {
        // Full queue.
        let queue = Queue::new(1);
        queue.put_nowait(1)?;

        // Task waiting for space to put an item in the queue.
        let put_task = spawn(queue.put(1));
        sleep0().await?;

        // get_nowait() removes the future of put_task from queue._putters.
        queue.get_nowait()?;
        // When cancelled, queue.put removes its future from _putters, but
        // get_nowait() removed it already: no error from that.
        put_task.cancel();

        // The error is the CancelledError.
        assert!(error_of(&put_task).await.is_cancelled());
        Ok(())
    }
}

// ===== LifoQueueTests / PriorityQueueTests =====

mod lifo_queue_tests {
    use super::*;

    #[asyncio::test]
    async fn test_order() -> Result<()> {
        let q = LifoQueue::new(0);
        for i in [1, 3, 2] {
            q.put(i).await?;
        }

        let mut items = Vec::new();
        for _ in 0..3 {
            items.push(q.get().await?);
        }
        assert_eq!(items, [2, 3, 1]);
        Ok(())
    }
}

mod priority_queue_tests {
    use super::*;

    #[asyncio::test]
    async fn test_order() -> Result<()> {
        let q = PriorityQueue::new(0);
        for i in [1, 3, 2] {
            q.put(i).await?;
        }

        let mut items = Vec::new();
        for _ in 0..3 {
            items.push(q.get().await?);
        }
        assert_eq!(items, [1, 2, 3]);
        Ok(())
    }
}

// ===== _QueueJoinTestMixin and _QueueShutdownTestMixin, for each queue =====

macro_rules! queue_mixin_tests {
    ($join:ident, $shutdown:ident, $Q:ident) => {
        mod $join {
            use super::*;

            #[test]
            fn test_task_done_underflow() {
                let q = $Q::<i32>::new(0);
                let err = q.task_done().unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ValueError);
                assert_eq!(err.to_string(), "task_done() called too many times");
            }

            #[asyncio::test]
            async fn test_task_done() -> Result<()> {
                let q = $Q::new(0);
                for i in 0..100 {
                    q.put_nowait(i)?;
                }

                let accumulator = Rc::new(Cell::new(0));

                // Two workers get items from the queue and call task_done
                // after each. Join the queue and assert all items have been
                // processed.
                let running = Rc::new(Cell::new(true));

                let worker = || {
                    let (q, accumulator, running) =
                        (q.clone(), accumulator.clone(), running.clone());
                    async move {
                        while running.get() {
                            let item = q.get().await?;
                            accumulator.set(accumulator.get() + item);
                            q.task_done()?;
                        }
                        Ok(())
                    }
                };

                let tg = TaskGroup::new();
                tg.run(async {
                    let tasks = [tg.create_task(worker())?, tg.create_task(worker())?];

                    q.join().await?;
                    assert_eq!(accumulator.get(), (0..100).sum::<i32>());

                    // Close the running workers.
                    running.set(false);
                    for _ in 0..tasks.len() {
                        q.put_nowait(0)?;
                    }
                    Ok(())
                })
                .await
            }

            #[asyncio::test]
            async fn test_join_empty_queue() -> Result<()> {
                let q = $Q::<i32>::new(0);

                // A queue join()s successfully, and before anything else
                // (done twice for insurance).
                q.join().await?;
                q.join().await
            }

            #[asyncio::test]
            async fn test_format() -> Result<()> {
                let q = $Q::<i32>::new(0);
                assert_eq!(q._format(), "maxsize=0");

                // CPython sets `_unfinished_tasks = 2`; two items put and
                // gotten leave the same state.
                q.put_nowait(1)?;
                q.put_nowait(2)?;
                q.get_nowait()?;
                q.get_nowait()?;
                assert_eq!(q._unfinished_tasks(), 2);
                assert_eq!(q._format(), "maxsize=0 tasks=2");
                Ok(())
            }
        }

        mod $shutdown {
            use super::*;

            fn assert_shutdown<T: fmt::Debug>(r: Result<T>) {
                assert_kind(r, ErrorKind::QueueShutDown);
            }

            #[asyncio::test]
            async fn test_format() -> Result<()> {
                let q = $Q::<i32>::new(0);
                q.shutdown(false);
                assert_eq!(q._format(), "maxsize=0 shutdown");
                Ok(())
            }

            #[asyncio::test]
            async fn test_shutdown_empty() -> Result<()> {
                // Shutting down an empty queue.

                // Set up an empty queue, and join() and get() tasks.
                let q = $Q::<&str>::new(0);
                let loop_ = asyncio::get_running_loop()?;
                let get_task = loop_.create_task(q.get())?;
                sleep0().await?; // want the get task pending before shutdown

                // Perform shut-down.
                q.shutdown(false); // unfinished tasks: 0 -> 0

                assert_eq!(q.qsize(), 0);

                // The join() task successfully finishes.
                q.join().await?;

                // The get() task is finished, and raised ShutDown.
                sleep0().await?;
                assert!(get_task.done());
                assert_shutdown((&get_task).await);

                // put() and get() raise ShutDown.
                assert_shutdown(q.put("data").await);
                assert_shutdown(q.put_nowait("data"));

                assert_shutdown(q.get().await);
                assert_shutdown(q.get_nowait());
                Ok(())
            }

            #[asyncio::test]
            async fn test_shutdown_nonempty() -> Result<()> {
                // Shutting down a non-empty queue.

                // Set up a full queue with 1 item, and join() and put() tasks.
                let q = $Q::new(1);
                let loop_ = asyncio::get_running_loop()?;

                q.put_nowait("data")?;
                let join_task = loop_.create_task(q.join())?;
                let put_task = loop_.create_task(q.put("data2"))?;

                // The put() task is not finished.
                sleep0().await?;
                assert!(!put_task.done());

                // Perform shut-down.
                q.shutdown(false); // unfinished tasks: 1 -> 1

                assert_eq!(q.qsize(), 1);

                // The put() task is finished, and raised ShutDown.
                sleep0().await?;
                assert!(put_task.done());
                assert_shutdown((&put_task).await);

                // get() succeeds on the enqueued item.
                assert_eq!(q.get().await?, "data");

                // The join() task is not finished.
                sleep0().await?;
                assert!(!join_task.done());

                // put() and get() raise ShutDown.
                assert_shutdown(q.put("data").await);
                assert_shutdown(q.put_nowait("data"));

                assert_shutdown(q.get().await);
                assert_shutdown(q.get_nowait());

                // There is 1 unfinished task, and the join() task succeeds.
                q.task_done()?;

                sleep0().await?;
                assert!(join_task.done());
                join_task.await?;

                let err = q.task_done().unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ValueError);
                Ok(())
            }

            #[asyncio::test]
            async fn test_shutdown_immediate() -> Result<()> {
                // Immediately shutting down a queue.

                // Set up a queue with 1 item, and a join() task.
                let q = $Q::new(0);
                let loop_ = asyncio::get_running_loop()?;
                q.put_nowait("data")?;
                let join_task = loop_.create_task(q.join())?;

                // Perform shut-down.
                q.shutdown(true); // unfinished tasks: 1 -> 0

                assert_eq!(q.qsize(), 0);

                // The join() task has successfully finished.
                sleep0().await?;
                assert!(join_task.done());
                join_task.await?;

                // put() and get() raise ShutDown.
                assert_shutdown(q.put("data").await);
                assert_shutdown(q.put_nowait("data"));

                assert_shutdown(q.get().await);
                assert_shutdown(q.get_nowait());

                // There are no unfinished tasks.
                let err = q.task_done().unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ValueError);
                Ok(())
            }

            #[asyncio::test]
            async fn test_shutdown_immediate_with_unfinished() -> Result<()> {
                // Immediately shutting down a queue with unfinished tasks.

                // Set up a queue with 2 items (1 retrieved), and a join() task.
                let q = $Q::new(0);
                let loop_ = asyncio::get_running_loop()?;
                q.put_nowait("data")?;
                q.put_nowait("data")?;
                let join_task = loop_.create_task(q.join())?;
                assert_eq!(q.get().await?, "data");

                // Perform shut-down.
                q.shutdown(true); // unfinished tasks: 2 -> 1

                assert_eq!(q.qsize(), 0);

                // The join() task is not finished.
                sleep0().await?;
                assert!(!join_task.done());

                // put() and get() raise ShutDown.
                assert_shutdown(q.put("data").await);
                assert_shutdown(q.put_nowait("data"));

                assert_shutdown(q.get().await);
                assert_shutdown(q.get_nowait());

                // There is 1 unfinished task.
                q.task_done()?;
                let err = q.task_done().unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ValueError);

                // The join() task has successfully finished.
                sleep0().await?;
                assert!(join_task.done());
                join_task.await
            }
        }
    };
}

queue_mixin_tests!(queue_join_tests, queue_shutdown_tests, Queue);
queue_mixin_tests!(lifo_queue_join_tests, lifo_queue_shutdown_tests, LifoQueue);
queue_mixin_tests!(
    priority_queue_join_tests,
    priority_queue_shutdown_tests,
    PriorityQueue
);

// ===== Rust-only =====

mod rust_queues {
    use super::*;

    /// Polls `fut` once (registering it as a waiter) without awaiting it.
    async fn poll_once<F: std::future::Future>(fut: &mut Pin<Box<F>>) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
    }

    /// Orders by `p` only, like a Python class whose `__lt__` compares one
    /// field: equal items are told apart by `l`.
    #[derive(Debug)]
    struct It {
        p: i32,
        l: char,
    }

    impl PartialEq for It {
        fn eq(&self, other: &It) -> bool {
            self.p == other.p
        }
    }
    impl Eq for It {}
    impl PartialOrd for It {
        fn partial_cmp(&self, other: &It) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for It {
        fn cmp(&self, other: &It) -> std::cmp::Ordering {
            self.p.cmp(&other.p)
        }
    }

    #[test]
    fn priority_queue_orders_equal_items_as_heapq() {
        // CPython 3.13 (`heapq`), for the same items:
        //   q._queue == [1b, 1d, 1f, 1i, 2e, 3c, 3g, 3a, 2h]
        //   gets     == 1b 1f 1d 1i 2h 2e 3c 3a 3g
        let q = PriorityQueue::new(0);
        for (p, l) in [
            (3, 'a'),
            (1, 'b'),
            (3, 'c'),
            (1, 'd'),
            (2, 'e'),
            (1, 'f'),
            (3, 'g'),
            (2, 'h'),
            (1, 'i'),
        ] {
            q.put_nowait(It { p, l }).unwrap();
        }
        let heap = q._format();
        assert_eq!(
            heap,
            "maxsize=0 _queue=[It { p: 1, l: 'b' }, It { p: 1, l: 'd' }, It { p: 1, l: 'f' }, \
             It { p: 1, l: 'i' }, It { p: 2, l: 'e' }, It { p: 3, l: 'c' }, It { p: 3, l: 'g' }, \
             It { p: 3, l: 'a' }, It { p: 2, l: 'h' }] tasks=9"
        );
        let mut out = String::new();
        while let Ok(it) = q.get_nowait() {
            out.push_str(&format!("{}{} ", it.p, it.l));
        }
        assert_eq!(out.trim_end(), "1b 1f 1d 1i 2h 2e 3c 3a 3g");
    }

    #[test]
    fn priority_queue_repr_shows_the_heap() {
        // CPython: <PriorityQueue maxsize=0 _queue=[1, 3, 8, 5, 4] tasks=5>
        let q = PriorityQueue::new(0);
        for i in [5, 3, 8, 1, 4] {
            q.put_nowait(i).unwrap();
        }
        assert_eq!(
            format!("{q}"),
            "<PriorityQueue maxsize=0 _queue=[1, 3, 8, 5, 4] tasks=5>"
        );
        assert!(format!("{q:?}").starts_with("<PriorityQueue at 0x"));
    }

    #[test]
    fn queue_repr_matches_python() {
        // CPython: <Queue at 0x… maxsize=0 _queue=[1, 2] tasks=2>, then
        // `shutdown` at the end once shut down.
        let q = Queue::new(0);
        q.put_nowait(1).unwrap();
        q.put_nowait(2).unwrap();
        let r = repr(&q);
        assert!(r.starts_with("<Queue at 0x"), "{r}");
        assert!(r.ends_with(" maxsize=0 _queue=[1, 2] tasks=2>"), "{r}");
        q.shutdown(false);
        assert_eq!(
            format!("{q}"),
            "<Queue maxsize=0 _queue=[1, 2] tasks=2 shutdown>"
        );
        let err = q.put_nowait(3).unwrap_err();
        assert_eq!(format!("{err:?}"), "QueueShutDown()");
        assert_eq!(err.python_name(), "QueueShutDown");
        assert_eq!(err.to_string(), "");
    }

    #[asyncio::test]
    async fn items_need_not_be_clone() -> Result<()> {
        struct Job(String);
        let q = Queue::new(1);
        let consumer = {
            let q = q.clone();
            spawn(async move {
                let Job(name) = q.get().await?;
                Ok(name)
            })
        };
        q.put(Job("one".to_owned())).await?;
        assert_eq!(consumer.await?, "one");
        Ok(())
    }

    #[asyncio::test]
    async fn dropped_get_passes_the_item_on() -> Result<()> {
        // A get future dropped after put_nowait() woke it (the Rust form of
        // a getter cancelled after its wake-up) wakes the next getter.
        let q = Queue::new(0);
        let mut first = Box::pin(q.get());
        assert!(poll_once(&mut first).await.is_pending());
        let second = spawn(q.get());
        sleep0().await?;
        assert_eq!(q._getters_len(), 2);
        q.put_nowait(7)?; // wakes `first`
        drop(first);
        assert_eq!(second.await?, 7);
        assert_eq!(q._getters_len(), 0);
        Ok(())
    }

    #[asyncio::test]
    async fn dropped_put_passes_the_slot_on() -> Result<()> {
        let q = Queue::new(1);
        q.put_nowait(0)?;
        let mut first = Box::pin(q.put(1));
        assert!(poll_once(&mut first).await.is_pending());
        let second = spawn(q.put(2));
        sleep0().await?;
        assert_eq!(q._putters_len(), 2);
        assert_eq!(q.get_nowait()?, 0); // wakes `first`
        drop(first);
        second.await?;
        assert_eq!(q.get_nowait()?, 2);
        Ok(())
    }

    #[asyncio::test]
    async fn shutdown_drops_items_at_once() -> Result<()> {
        let dropped = Rc::new(Cell::new(0));
        struct Counted(Rc<Cell<i32>>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let q = LifoQueue::new(0);
        for _ in 0..3 {
            q.put_nowait(Counted(dropped.clone()))?;
        }
        q.shutdown(true);
        assert_eq!(dropped.get(), 3);
        assert_eq!(q._unfinished_tasks(), 0);
        Ok(())
    }

    #[test]
    fn queue_bound_to_another_loop() {
        let q = Queue::<i32>::new(0);
        let first = asyncio::new_event_loop().unwrap();
        {
            let q = q.clone();
            first
                .run_until_complete(async move {
                    let t = spawn(q.get());
                    sleep0().await?;
                    q.put_nowait(1)?;
                    t.await
                })
                .unwrap();
        }
        first.close().unwrap();
        let err = asyncio::run(async move { q.get().await }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeError);
        let msg = err.to_string();
        assert!(msg.starts_with("<Queue at 0x"), "{msg}");
        assert!(
            msg.ends_with(" maxsize=0> is bound to a different event loop"),
            "{msg}"
        );
    }
}
