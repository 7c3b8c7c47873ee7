//! Spawning children: the `spawn_many` example (`/bin/echo x`, N times,
//! CONC at a time, stdout read through a protocol, each exit awaited)
//! beside raw `tokio::process`, uvloop and CPython asyncio, each in its own
//! process. Reports spawns per second (best of 3 interleaved rounds) and
//! the spawning process's own CPU time per spawn (the children's excluded).
//!
//! `cargo bench --bench subprocess`; `BENCH_SPAWNS` (default 2000) and
//! `BENCH_CONC` (default 50) change the load.

mod harness;

#[allow(dead_code)]
#[path = "../examples/spawn_many.rs"]
mod spawn_many_example;

use std::process::Stdio;
use std::time::Instant;

use harness::Kind;

/// Raw Tokio: `tokio::process::Command`, stdout read to its end, then
/// `wait()`, on a current-thread runtime with local tasks.
fn tokio_spawn_many(n: usize, conc: usize) -> f64 {
    use tokio::io::AsyncReadExt;
    async fn one() {
        let mut child = tokio::process::Command::new("/bin/echo")
            .arg("x")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut out = Vec::new();
        let mut stdout = child.stdout.take().expect("stdout");
        stdout.read_to_end(&mut out).await.expect("read");
        let status = child.wait().await.expect("wait");
        assert!(status.success() && out == b"x\n");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let started = Instant::now();
        let left = std::rc::Rc::new(std::cell::Cell::new(n));
        let workers: Vec<_> = (0..conc)
            .map(|_| {
                let left = left.clone();
                tokio::task::spawn_local(async move {
                    while left.get() > 0 {
                        left.set(left.get() - 1);
                        one().await;
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.expect("worker");
        }
        n as f64 / started.elapsed().as_secs_f64()
    })
}

fn measure(kind: Kind, n: usize, conc: usize) -> Option<(f64, f64)> {
    let (n_s, c_s) = (n.to_string(), conc.to_string());
    let argv = match kind {
        Kind::Asyncio => harness::this_binary(&["--run", "asyncio", &n_s, &c_s]),
        Kind::Tokio => harness::this_binary(&["--run", "tokio", &n_s, &c_s]),
        Kind::Uvloop => harness::python_script("spawn_many.py", &[&n_s, &c_s, "uvloop"]),
        Kind::CPython => harness::python_script("spawn_many.py", &[&n_s, &c_s, "asyncio"]),
    };
    let out = harness::wrapped(&[], &argv).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("spawns_per_s=")?, field("cpu_us_per_spawn=")?))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--run") {
        let n: usize = args[2].parse().expect("N");
        let conc: usize = args[3].parse().expect("CONC");
        let cpu_before = spawn_many_example::cpu_seconds();
        let rate = if args[1] == "tokio" {
            tokio_spawn_many(n, conc)
        } else {
            asyncio::run(spawn_many_example::spawn_many(n, conc)).expect("spawn_many")
        };
        let cpu = spawn_many_example::cpu_seconds() - cpu_before;
        println!("cpu_us_per_spawn={:.1}", cpu * 1e6 / n as f64);
        println!("spawns_per_s={rate:.0}");
        return;
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (n, conc) = (env("BENCH_SPAWNS", 2000), env("BENCH_CONC", 50));
    let mut best: Vec<Option<(f64, f64)>> = vec![None; Kind::ALL.len()];
    for _ in 0..3 {
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            if let Some((rate, cpu)) = measure(kind, n, conc) {
                let b = best[i].get_or_insert((rate, cpu));
                b.0 = b.0.max(rate);
                b.1 = b.1.min(cpu);
            }
        }
    }
    println!("### Spawning /bin/echo x ({n} children, {conc} at a time; best of 3 rounds)\n");
    println!(
        "| runner | spawns/s | parent CPU µs per spawn | spawns/s vs raw Tokio | vs CPython |"
    );
    println!("|---|---:|---:|---:|---:|");
    let tokio_rate = best[1].map(|b| b.0);
    let cpython_rate = best[3].map(|b| b.0);
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        match best[i] {
            Some((rate, cpu)) => println!(
                "| {} | {rate:.0} | {cpu:.0} | {} | {} |",
                kind.name(),
                harness::ratio(Some(rate), tokio_rate),
                harness::ratio(Some(rate), cpython_rate),
            ),
            None => println!("| {} | — | — | — | — |", kind.name()),
        }
    }
}
