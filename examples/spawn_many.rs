//! Spawns `/bin/echo x` N times, CONC at a time, reading each child's
//! stdout through a `SubprocessProtocol`, waiting for each exit and checking
//! its output and status; the last line is `spawns_per_s=<rate>`.
//!
//! `cargo run --release --example spawn_many -- 2000 50`

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use asyncio::subprocess::DEVNULL;
use asyncio::{BaseProtocol, Error, Future, Result, SubprocessProtocol};

/// Collects stdout; `done` resolves at `connection_lost` (every pipe
/// closed and the process exited).
struct Collect {
    output: RefCell<Vec<u8>>,
    done: Future<()>,
}

impl BaseProtocol for Collect {
    fn connection_lost(self: &Rc<Self>, _exc: Option<Error>) -> Result<()> {
        self.done.set_result(())
    }
}

impl SubprocessProtocol for Collect {
    fn pipe_data_received(self: &Rc<Self>, _fd: i32, data: &[u8]) -> Result<()> {
        self.output.borrow_mut().extend_from_slice(data);
        Ok(())
    }
}

/// Runs `/bin/echo x` once and checks what it did.
async fn spawn_one() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let done = loop_.create_future::<()>();
    let d = done.clone();
    let (transport, protocol) = loop_
        .subprocess_exec(
            move || Collect {
                output: RefCell::new(Vec::new()),
                done: d,
            },
            "/bin/echo",
        )
        .arg("x")
        .stdin(DEVNULL)
        .stderr(DEVNULL)
        .await?;
    done.await?;
    transport.close();
    let status = transport.get_returncode();
    let output = protocol.output.borrow();
    if status != Some(0) || output.as_slice() != b"x\n" {
        return Err(Error::runtime(format!(
            "unexpected child result: status {status:?}, output {:?}",
            String::from_utf8_lossy(&output)
        )));
    }
    Ok(())
}

/// Spawns `n` children, `conc` at a time; returns spawns per second.
pub async fn spawn_many(n: usize, conc: usize) -> Result<f64> {
    let started = Instant::now();
    let next = Rc::new(std::cell::Cell::new(0));
    let mut workers = Vec::new();
    for _ in 0..conc.max(1) {
        let next = next.clone();
        workers.push(asyncio::create_task(async move {
            while next.get() < n {
                next.set(next.get() + 1);
                spawn_one().await?;
            }
            Ok(())
        })?);
    }
    for worker in workers {
        worker.await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// User and system CPU seconds this process used so far.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // pid (comm) state … utime stime: fields 14 and 15, in clock ticks.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11..13]
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(conc)) = (
        args.first().and_then(|a| a.parse().ok()),
        args.get(1).and_then(|a| a.parse().ok()),
    ) else {
        eprintln!("usage: spawn_many N CONC");
        std::process::exit(2);
    };
    let cpu_before = cpu_seconds();
    let rate = asyncio::run(spawn_many(n, conc))?;
    let cpu = cpu_seconds() - cpu_before;
    println!("spawns={n} concurrency={conc}");
    // This process's own CPU time (not the children's) per spawn.
    println!("cpu_us_per_spawn={:.1}", cpu * 1e6 / n as f64);
    println!("spawns_per_s={rate:.0}");
    Ok(())
}
