//! The event-loop benchmarks, side by side with the peers, in one run:
//! this project, raw Tokio (current-thread `LocalRuntime`), CPython 3.13
//! asyncio and uvloop (through `benches/peers/loop_bench.py`).
//!
//! `cargo bench --bench loop` prints a Markdown table of the best of three
//! rounds of five runs per row (the rounds alternate this project and raw
//! Tokio), in nanoseconds per operation, with ratios. Set
//! `BENCH_SCALE=0.1` for a quick run.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::process::Command;
use std::rc::Rc;
use std::time::Instant;

use asyncio::{EventLoop, Future};

const REPEAT: usize = 5;

fn best(ops: usize, mut run: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..REPEAT {
        let t0 = Instant::now();
        run();
        best = best.min(t0.elapsed().as_secs_f64());
    }
    best / ops as f64 * 1e9
}

fn new_loop() -> EventLoop {
    asyncio::new_event_loop().expect("a new loop")
}

// ----- asyncio (this project) -----

fn call_soon_chained(n: usize) -> f64 {
    fn step(loop_: EventLoop, left: usize) {
        if left == 0 {
            loop_.stop();
        } else {
            let l = loop_.clone();
            loop_.call_soon(move || step(l, left - 1)).unwrap();
        }
    }
    best(n, || {
        let loop_ = new_loop();
        let l = loop_.clone();
        loop_.call_soon(move || step(l, n - 1)).unwrap();
        loop_.run_forever().unwrap();
        loop_.close().unwrap();
    })
}

fn call_soon_batched(n: usize) -> f64 {
    best(n, || {
        let loop_ = new_loop();
        let count = Rc::new(Cell::new(0usize));
        for _ in 0..n {
            let c = count.clone();
            loop_.call_soon(move || c.set(c.get() + 1)).unwrap();
        }
        let l = loop_.clone();
        loop_.call_soon(move || l.stop()).unwrap();
        loop_.run_forever().unwrap();
        assert_eq!(count.get(), n);
        loop_.close().unwrap();
    })
}

fn call_later_firing(n: usize) -> f64 {
    best(n, || {
        let loop_ = new_loop();
        let left = Rc::new(Cell::new(n));
        for i in 0..n {
            let left = left.clone();
            let l = loop_.clone();
            loop_
                .call_later((i % 100) as f64 * 1e-5, move || {
                    left.set(left.get() - 1);
                    if left.get() == 0 {
                        l.stop();
                    }
                })
                .unwrap();
        }
        loop_.run_forever().unwrap();
        loop_.close().unwrap();
    })
}

fn call_later_cancel(n: usize) -> f64 {
    best(n, || {
        let loop_ = new_loop();
        for _ in 0..n {
            loop_.call_later(10.0, || ()).unwrap().cancel();
        }
        let l = loop_.clone();
        loop_.call_soon(move || l.stop()).unwrap();
        loop_.run_forever().unwrap();
        loop_.close().unwrap();
    })
}

fn tasks_gather(n: usize) -> f64 {
    best(n, || {
        let loop_ = new_loop();
        let results = loop_
            .run_until_complete(async move {
                let tasks: Vec<_> = (0..n)
                    .map(|_| asyncio::create_task(async { Ok(1u32) }).unwrap())
                    .collect();
                asyncio::gather(tasks).await
            })
            .unwrap();
        assert_eq!(results.len(), n);
        loop_.close().unwrap();
    })
}

fn sleep0_switches(n: usize) -> f64 {
    let ntasks = 100;
    let rounds = n / ntasks;
    best(ntasks * rounds, || {
        let loop_ = new_loop();
        loop_
            .run_until_complete(async move {
                let workers = (0..ntasks).map(|_| async move {
                    for _ in 0..rounds {
                        asyncio::sleep(0).await?;
                    }
                    Ok(())
                });
                asyncio::gather(workers).await
            })
            .unwrap();
        loop_.close().unwrap();
    })
}

fn future_round_trip(n: usize) -> f64 {
    best(n, || {
        let loop_ = new_loop();
        loop_
            .run_until_complete(async move {
                let loop_ = asyncio::get_running_loop()?;
                for i in 0..n {
                    let fut = Future::<usize>::new(&loop_);
                    let setter = fut.clone();
                    loop_.call_soon(move || setter.set_result(i))?;
                    assert_eq!(fut.await?, i);
                }
                Ok(())
            })
            .unwrap();
        loop_.close().unwrap();
    })
}

fn lock_uncontended(n: usize) -> f64 {
    best(n, || {
        let loop_ = new_loop();
        loop_
            .run_until_complete(async move {
                let lock = asyncio::Lock::new();
                for _ in 0..n {
                    let _guard = lock.acquire().await?;
                }
                Ok(())
            })
            .unwrap();
        loop_.close().unwrap();
    })
}

fn lock_contended(n: usize) -> f64 {
    let ntasks = 10;
    let rounds = n / ntasks;
    best(ntasks * rounds, || {
        let loop_ = new_loop();
        loop_
            .run_until_complete(async move {
                let lock = asyncio::Lock::new();
                let workers = (0..ntasks).map(|_| {
                    let lock = lock.clone();
                    async move {
                        for _ in 0..rounds {
                            let _guard = lock.acquire().await?;
                            asyncio::sleep(0).await?;
                        }
                        Ok(())
                    }
                });
                asyncio::gather(workers).await
            })
            .unwrap();
        loop_.close().unwrap();
    })
}

fn queue_producer_consumer(n: usize, maxsize: usize) -> f64 {
    best(n, || {
        let loop_ = new_loop();
        loop_
            .run_until_complete(async move {
                let queue = asyncio::Queue::new(maxsize);
                let producer = {
                    let queue = queue.clone();
                    asyncio::create_task(async move {
                        for i in 0..n {
                            queue.put(i).await?;
                        }
                        Ok(())
                    })?
                };
                let mut total = 0;
                for _ in 0..n {
                    total += queue.get().await?;
                }
                producer.await?;
                assert_eq!(total, n * (n - 1) / 2);
                Ok(())
            })
            .unwrap();
        loop_.close().unwrap();
    })
}

fn queue_unbounded(n: usize) -> f64 {
    queue_producer_consumer(n, 0)
}

fn queue_bounded(n: usize) -> f64 {
    queue_producer_consumer(n, 10)
}

// ----- raw Tokio -----

fn tokio_runtime() -> tokio::runtime::LocalRuntime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(tokio::runtime::LocalOptions::default())
        .unwrap()
}

fn tokio_tasks_join(n: usize) -> f64 {
    best(n, || {
        let rt = tokio_runtime();
        rt.block_on(async move {
            let handles: Vec<_> = (0..n)
                .map(|_| tokio::task::spawn_local(async { 1u32 }))
                .collect();
            let mut results = Vec::with_capacity(n);
            for h in handles {
                results.push(h.await.unwrap());
            }
            assert_eq!(results.len(), n);
        });
    })
}

fn tokio_yield_switches(n: usize) -> f64 {
    let ntasks = 100;
    let rounds = n / ntasks;
    best(ntasks * rounds, || {
        let rt = tokio_runtime();
        rt.block_on(async move {
            let handles: Vec<_> = (0..ntasks)
                .map(|_| {
                    tokio::task::spawn_local(async move {
                        for _ in 0..rounds {
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
    })
}

fn tokio_oneshot_round_trip(n: usize) -> f64 {
    best(n, || {
        let rt = tokio_runtime();
        rt.block_on(async move {
            for i in 0..n {
                let (tx, rx) = tokio::sync::oneshot::channel();
                tokio::task::spawn_local(async move {
                    let _ = tx.send(i);
                });
                assert_eq!(rx.await.unwrap(), i);
            }
        });
    })
}

fn tokio_mutex_uncontended(n: usize) -> f64 {
    best(n, || {
        let rt = tokio_runtime();
        rt.block_on(async move {
            let mutex = tokio::sync::Mutex::new(());
            for _ in 0..n {
                let _guard = mutex.lock().await;
            }
        });
    })
}

fn tokio_mutex_contended(n: usize) -> f64 {
    let ntasks = 10;
    let rounds = n / ntasks;
    best(ntasks * rounds, || {
        let rt = tokio_runtime();
        rt.block_on(async move {
            let mutex = Rc::new(tokio::sync::Mutex::new(()));
            let handles: Vec<_> = (0..ntasks)
                .map(|_| {
                    let mutex = mutex.clone();
                    tokio::task::spawn_local(async move {
                        for _ in 0..rounds {
                            let _guard = mutex.lock().await;
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
    })
}

fn tokio_channel_unbounded(n: usize) -> f64 {
    best(n, || {
        let rt = tokio_runtime();
        rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let producer = tokio::task::spawn_local(async move {
                for i in 0..n {
                    tx.send(i).unwrap();
                }
            });
            let mut total = 0;
            for _ in 0..n {
                total += rx.recv().await.unwrap();
            }
            producer.await.unwrap();
            assert_eq!(total, n * (n - 1) / 2);
        });
    })
}

fn tokio_channel_bounded(n: usize) -> f64 {
    best(n, || {
        let rt = tokio_runtime();
        rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(10);
            let producer = tokio::task::spawn_local(async move {
                for i in 0..n {
                    tx.send(i).await.unwrap();
                }
            });
            let mut total = 0;
            for _ in 0..n {
                total += rx.recv().await.unwrap();
            }
            producer.await.unwrap();
            assert_eq!(total, n * (n - 1) / 2);
        });
    })
}

// ----- peers -----

fn python_peer(which: &str, scale: f64) -> Option<BTreeMap<String, f64>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/loop_bench.py");
    let output = Command::new("python3")
        .env("PYENV_VERSION", "3.13.0")
        .arg(script)
        .arg(which)
        .arg(scale.to_string())
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "{which}: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
        );
        return None;
    }
    parse_json_numbers(&String::from_utf8_lossy(&output.stdout))
}

/// Parses the flat `{"name": number, ...}` object the peer script prints.
fn parse_json_numbers(text: &str) -> Option<BTreeMap<String, f64>> {
    let body = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = BTreeMap::new();
    for item in body.split(", \"") {
        let item = item.trim_start_matches('"');
        let (name, value) = item.split_once("\": ")?;
        out.insert(name.to_owned(), value.trim().parse().ok()?);
    }
    Some(out)
}

fn ratio(peer: Option<f64>, ours: f64) -> String {
    match peer {
        Some(p) => format!("{:.1}×", p / ours),
        None => "—".to_owned(),
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:.0}"),
        None => "—".to_owned(),
    }
}

type Row = (
    &'static str,
    fn(usize) -> f64,
    Option<fn(usize) -> f64>,
    usize,
);

fn main() {
    // `cargo bench` passes `--bench`; there are no options to parse.
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let rows: [Row; 11] = [
        ("call_soon chained", call_soon_chained, None, 1_000_000),
        ("call_soon batched", call_soon_batched, None, 1_000_000),
        ("call_later firing", call_later_firing, None, 200_000),
        ("call_later + cancel", call_later_cancel, None, 200_000),
        (
            "create_task + gather (200k)",
            tasks_gather,
            Some(tokio_tasks_join),
            200_000,
        ),
        (
            "sleep(0) switches, 100 tasks",
            sleep0_switches,
            Some(tokio_yield_switches),
            1_000_000,
        ),
        (
            "future round trip",
            future_round_trip,
            Some(tokio_oneshot_round_trip),
            500_000,
        ),
        (
            "Lock acquire/release, uncontended",
            lock_uncontended,
            Some(tokio_mutex_uncontended),
            1_000_000,
        ),
        (
            "Lock contended, 10 tasks",
            lock_contended,
            Some(tokio_mutex_contended),
            500_000,
        ),
        (
            "Queue put/get, unbounded",
            queue_unbounded,
            Some(tokio_channel_unbounded),
            500_000,
        ),
        (
            "Queue put/get, maxsize 10",
            queue_bounded,
            Some(tokio_channel_bounded),
            500_000,
        ),
    ];
    // BENCH_ONLY=substring runs only the matching rows (and no peers).
    let only = std::env::var("BENCH_ONLY").ok();
    let mut ours = Vec::new();
    for (name, f, tokio_f, n) in &rows {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let n = ((*n as f64 * scale) as usize).max(100);
        // BENCH_SIDE=ours|tokio runs one side only (for callgrind).
        let side = std::env::var("BENCH_SIDE").ok();
        // Three rounds, alternating the two sides, so that a noisy spell
        // on the shared machine does not fall on one side only.
        let rounds = if side.is_some() { 1 } else { 3 };
        let mut a = f64::INFINITY;
        let mut t: Option<f64> = None;
        for _ in 0..rounds {
            if side.as_deref() != Some("tokio") {
                a = a.min(f(n));
            }
            if side.as_deref() != Some("ours") {
                if let Some(tf) = tokio_f {
                    let v = tf(n);
                    t = Some(t.map_or(v, |t| t.min(v)));
                }
            }
        }
        eprintln!("{name}: asyncio-rs {a:.0} ns, tokio {t:?}");
        ours.push((*name, a, t));
    }
    if only.is_some() {
        return;
    }
    let uvloop = python_peer("uvloop", scale);
    let cpython = python_peer("asyncio", scale);
    println!("| benchmark (ns/op, best of 3 × {REPEAT}) | asyncio-rs | raw Tokio | uvloop | CPython asyncio | vs uvloop | vs CPython | vs Tokio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, a, t) in ours {
        let u = uvloop.as_ref().and_then(|m| m.get(name).copied());
        let c = cpython.as_ref().and_then(|m| m.get(name).copied());
        println!(
            "| {name} | {a:.0} | {} | {} | {} | {} | {} | {} |",
            cell(t),
            cell(u),
            cell(c),
            ratio(u, a),
            ratio(c, a),
            ratio(t, a),
        );
    }
    println!();
    println!("Ratios are peer time / asyncio-rs time: above 1× means asyncio-rs is faster.");
}
