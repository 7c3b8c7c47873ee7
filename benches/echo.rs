//! The protocol echo server benchmark, side by side with the peers, in one
//! run: this project, raw Tokio (one current-thread runtime), CPython 3.13
//! asyncio and uvloop — all driven by the same Rust load generator.
//!
//! `cargo bench --bench echo` prints, for 1 KiB and 64 KiB messages over 10
//! and 100 connections: requests/s and p50/p99 round-trip latency; then the
//! server's user-space instructions per round trip, counted by
//! `valgrind --tool=callgrind` while a fixed number of round trips runs
//! (exact, unlike wall-clock figures on a shared machine); then the memory
//! 10,000 idle connections cost the server.
//!
//! The same binary is also the servers and the load generator:
//! `echo --server asyncio|tokio`, `echo --client PORT SIZE CONNS SECONDS|-ROUNDS`,
//! `echo --idle PORT CONNS`.

mod harness;

use std::cell::OnceCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncio::{BaseProtocol, Protocol, Transport};
use harness::{Echo, Kind};

// ===== servers =====

/// `examples/streams_echo_server.rs --quiet`: `start_server`, then read up
/// to 64 KiB, write, drain, until EOF.
fn serve_asyncio_streams() -> asyncio::Result<()> {
    use asyncio::streams::{start_server, StreamReader, StreamWriter};
    async fn handle(reader: StreamReader, writer: StreamWriter) -> asyncio::Result<()> {
        loop {
            let data = reader.read(65536).await?;
            if data.is_empty() {
                break;
            }
            writer.write(&data)?;
            writer.drain().await?;
        }
        writer.close();
        writer.wait_closed().await
    }
    asyncio::run(async {
        let server = start_server(handle, "127.0.0.1", 0).await?;
        let port = match server.sockets()[0].getsockname() {
            Some(asyncio::Address::Inet(addr)) => addr.port(),
            _ => return Err(asyncio::Error::runtime("no port")),
        };
        println!("{port}");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        server.serve_forever().await
    })
}

fn serve_asyncio() -> asyncio::Result<()> {
    asyncio::run(async {
        let loop_ = asyncio::get_running_loop()?;
        let server = loop_
            .create_server(Echo::default)
            .host("127.0.0.1")
            .port(0)
            .await?;
        let port = server.sockets()[0]
            .getsockname()
            .and_then(|a| a.port())
            .unwrap_or(0);
        println!("{port}");
        std::io::stdout().flush()?;
        server.serve_forever().await
    })
}

/// Connections accepted by each loop of the per-core server.
static PER_LOOP: [std::sync::atomic::AtomicUsize; 8] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; 8];

/// The echo protocol of the per-core server: counts its loop's
/// connections, and answers `STATS\n` (as a first message) with them.
struct CountingEcho {
    index: usize,
    transport: OnceCell<Rc<dyn Transport>>,
}

impl BaseProtocol for CountingEcho {}

impl Protocol for CountingEcho {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> asyncio::Result<()> {
        PER_LOOP[self.index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> asyncio::Result<()> {
        let Some(t) = self.transport.get() else {
            return Ok(());
        };
        if data == b"STATS\n" {
            let counts: Vec<String> = PER_LOOP
                .iter()
                .map(|c| c.load(std::sync::atomic::Ordering::Relaxed).to_string())
                .collect();
            return t.write(format!("{}\n", counts.join(" ")).as_bytes());
        }
        t.write(data)
    }
}

/// The protocol echo server on `n` loops (`asyncio::run_per_core`), all
/// bound to one port with `reuse_port`.
fn serve_per_core(n: usize) -> asyncio::Result<()> {
    use std::sync::{Arc, Condvar, Mutex};
    let port: Arc<(Mutex<Option<u16>>, Condvar)> = Arc::new((Mutex::new(None), Condvar::new()));
    let listening = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    asyncio::run_per_core(n, move |index| {
        let (port, listening) = (port.clone(), listening.clone());
        async move {
            let wanted = if index == 0 {
                0
            } else {
                let port = port.clone();
                asyncio::to_thread(move || {
                    let (lock, ready) = &*port;
                    let mut p = lock.lock().unwrap();
                    while p.is_none() {
                        p = ready.wait(p).unwrap();
                    }
                    p.unwrap()
                })?
                .await?
            };
            let loop_ = asyncio::get_running_loop()?;
            let server = loop_
                .create_server(move || CountingEcho {
                    index,
                    transport: OnceCell::new(),
                })
                .host("127.0.0.1")
                .port(wanted)
                .reuse_port(true)
                .await?;
            if index == 0 {
                let bound = server.sockets()[0]
                    .getsockname()
                    .and_then(|a| a.port())
                    .unwrap_or(0);
                let (lock, ready) = &*port;
                *lock.lock().unwrap() = Some(bound);
                ready.notify_all();
            }
            if listening.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n {
                let p = port.0.lock().unwrap().unwrap_or(0);
                println!("{p}");
                std::io::stdout().flush()?;
            }
            server.serve_forever().await
        }
    })
    .map(|_| ())
}

/// Asks a per-core server how many connections each loop accepted.
fn per_loop_counts(port: u16, n: usize) -> Option<Vec<usize>> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.write_all(b"STATS\n").ok()?;
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).ok()?;
    let counts: Vec<usize> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Some(counts.into_iter().take(n).collect())
}

fn serve_tokio() -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(tokio::runtime::LocalOptions::default())?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        std::io::stdout().flush()?;
        loop {
            let (mut stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::task::spawn_local(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}

// ===== load generator =====

struct LoadResult {
    requests: u64,
    seconds: f64,
    latencies_us: Vec<f64>,
}

/// Each connection sends `size` bytes, waits for all of them back, repeats:
/// for `seconds` (positive) or a fixed number of round trips in all
/// (negative).
fn run_client(port: u16, size: usize, conns: usize, limit: f64) -> std::io::Result<LoadResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(tokio::runtime::LocalOptions::default())?;
    rt.block_on(async move {
        let shared = harness::LoadShared::new(limit);
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..conns {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            let shared = shared.clone();
            handles.push(tokio::task::spawn_local(async move {
                harness::round_trips(&mut stream, size, &shared).await
            }));
        }
        for h in handles {
            h.await.map_err(std::io::Error::other)??;
        }
        let seconds = start.elapsed().as_secs_f64();
        let latencies_us = std::mem::take(&mut *shared.latencies_us.borrow_mut());
        Ok(LoadResult {
            requests: latencies_us.len() as u64,
            seconds,
            latencies_us,
        })
    })
}

fn client_main(args: &[String]) -> std::io::Result<()> {
    let port: u16 = args[0].parse().map_err(std::io::Error::other)?;
    let size: usize = args[1].parse().map_err(std::io::Error::other)?;
    let conns: usize = args[2].parse().map_err(std::io::Error::other)?;
    let limit: f64 = args[3].parse().map_err(std::io::Error::other)?;
    let r = run_client(port, size, conns, limit)?;
    harness::print_load(r.requests, r.seconds, r.latencies_us);
    Ok(())
}

/// Opens `conns` idle connections, prints `ready`, waits for stdin to close.
fn idle_main(args: &[String]) -> std::io::Result<()> {
    let port: u16 = args[0].parse().map_err(std::io::Error::other)?;
    let conns: usize = args[1].parse().map_err(std::io::Error::other)?;
    let mut held = Vec::with_capacity(conns);
    for _ in 0..conns {
        held.push(std::net::TcpStream::connect(("127.0.0.1", port))?);
    }
    println!("ready");
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(held);
    Ok(())
}

// ===== driver =====

/// Runs the load generator: `(req/s, p50 µs, p99 µs, requests)`.
fn load(port: u16, size: usize, conns: usize, limit: f64) -> Option<(f64, f64, f64, u64)> {
    harness::load(&[
        port.to_string(),
        size.to_string(),
        conns.to_string(),
        limit.to_string(),
    ])
}

/// Instructions per round trip of `kind`'s server under callgrind.
fn instructions_per_round_trip(
    kind: Kind,
    server_args: &[&str],
    size: usize,
    conns: usize,
    rounds: u64,
) -> Option<f64> {
    harness::instructions_per_round_trip(
        &format!("echo-{}-{size}-{}", kind.name(), server_args.join("-")),
        |wrapper| kind.start(wrapper, "echo_server.py", server_args),
        |port, rounds| load(port, size, conns, -(rounds as f64)).map(|r| r.3),
        rounds,
    )
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Server memory per idle connection, in bytes.
fn idle_cost(kind: Kind, conns: usize) -> Option<f64> {
    let server = kind.start(&[], "echo_server.py", &[])?;
    // One connection first, so that lazily made buffers exist already.
    load(server.port, 1024, 1, -10.0)?;
    let before = rss_kib(server.pid())?;
    let fds_before = fd_count(server.pid());
    let exe = std::env::current_exe().ok()?;
    let mut idle = Command::new(exe)
        .args(["--idle", &server.port.to_string(), &conns.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut line = String::new();
    BufReader::new(idle.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while fd_count(server.pid()) < fds_before + conns && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = rss_kib(server.pid())?;
    drop(idle.stdin.take());
    let _ = idle.wait();
    Some((after.saturating_sub(before)) as f64 * 1024.0 / conns as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--server") => {
            let streams = args.get(2).map(String::as_str) == Some("streams");
            let per_core = args.get(2).map(String::as_str) == Some("percore");
            let result = match args.get(1).map(String::as_str) {
                Some("tokio") => serve_tokio().map_err(asyncio::Error::from),
                _ if streams => serve_asyncio_streams(),
                _ if per_core => {
                    serve_per_core(args.get(3).and_then(|n| n.parse().ok()).unwrap_or(1))
                }
                _ => serve_asyncio(),
            };
            if let Err(e) = result {
                eprintln!("{}", e.traceback_line());
                std::process::exit(1);
            }
            return;
        }
        Some("--client") => {
            if let Err(e) = client_main(&args[1..]) {
                eprintln!("{e}");
                std::process::exit(1);
            }
            return;
        }
        Some("--idle") => {
            if let Err(e) = idle_main(&args[1..]) {
                eprintln!("{e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    let kinds = Kind::ALL;
    let configs = [
        (1024usize, 10usize),
        (1024, 100),
        (64 * 1024, 10),
        (64 * 1024, 100),
    ];
    let wrapper = harness::server_wrapper();
    // BENCH_PARTS=throughput,instructions,streams,memory (default: all four).
    let parts = std::env::var("BENCH_PARTS")
        .unwrap_or_else(|_| "throughput,instructions,streams,memory".to_owned());

    if parts.contains("throughput") {
        println!("### Throughput and latency (best of 3 runs of {seconds} s; server and load generator on separate cores)\n");
        println!(
            "| message × connections | server | requests/s | p50 µs | p99 µs | vs raw Tokio |"
        );
        println!("|---|---|---:|---:|---:|---:|");
        for (size, conns) in configs {
            let mut tokio_rps = None;
            let mut rows = Vec::new();
            for kind in kinds {
                let Some(server) = kind.start(&wrapper, "echo_server.py", &[]) else {
                    rows.push((kind, None));
                    continue;
                };
                let _ = load(server.port, size, conns, -(conns as f64 * 20.0));
                // The best of three runs: the machine is shared, so a slower run
                // measures a neighbour more than the server.
                let r = (0..3)
                    .filter_map(|_| load(server.port, size, conns, seconds))
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                if kind == Kind::Tokio {
                    tokio_rps = r.map(|r| r.0);
                }
                rows.push((kind, r));
            }
            for (kind, r) in rows {
                let label = format!("{} KiB × {conns}", size / 1024);
                match r {
                    Some((rps, p50, p99, _)) => println!(
                        "| {label} | {} | {rps:.0} | {p50:.0} | {p99:.0} | {} |",
                        kind.name(),
                        tokio_rps.map_or("—".to_owned(), |t| format!("{:.2}×", rps / t))
                    ),
                    None => println!("| {label} | {} | — | — | — | — |", kind.name()),
                }
            }
        }
    }

    if parts.contains("instructions")
        && harness::which("valgrind")
        && harness::which("callgrind_control")
    {
        println!(
            "\n### Server instructions per round trip (callgrind, user space, 10 connections)\n"
        );
        println!("| message | asyncio-rs | raw Tokio | uvloop | CPython asyncio | asyncio-rs / Tokio | asyncio-rs / uvloop |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for size in [1024usize, 64 * 1024] {
            let counts: Vec<Option<f64>> = kinds
                .iter()
                .map(|k| instructions_per_round_trip(*k, &[], size, 10, 4000))
                .collect();
            let (cell, ratio) = (harness::cell, harness::ratio);
            println!(
                "| {} KiB | {} | {} | {} | {} | {} | {} |",
                size / 1024,
                cell(counts[0]),
                cell(counts[1]),
                cell(counts[2]),
                cell(counts[3]),
                ratio(counts[0], counts[1]),
                ratio(counts[0], counts[2]),
            );
        }
    }

    if parts.contains("streams") {
        println!("\n### Streams echo server (`start_server`; read, write, drain), 1 KiB × 10 connections\n");
        println!("| server | requests/s | p50 µs | p99 µs | vs raw Tokio | instructions per round trip | vs raw Tokio | vs uvloop streams |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let (size, conns) = (1024usize, 10usize);
        let mut rows = Vec::new();
        for kind in kinds {
            let r = kind
                .start(&wrapper, "echo_server.py", &["streams"])
                .and_then(|server| {
                    let _ = load(server.port, size, conns, -(conns as f64 * 20.0));
                    (0..3)
                        .filter_map(|_| load(server.port, size, conns, seconds))
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                });
            let instr = if harness::which("valgrind") && harness::which("callgrind_control") {
                instructions_per_round_trip(kind, &["streams"], size, conns, 4000)
            } else {
                None
            };
            rows.push((kind, r, instr));
        }
        harness::print_peer_rows(&rows, |kind| match kind {
            Kind::Tokio => "raw Tokio".to_owned(),
            k => format!("{} streams", k.name()),
        });
    }

    if parts.contains("percore") {
        println!("\n### One loop per core (`asyncio::run_per_core` + `reuse_port`), 1 KiB × 100 connections\n");
        println!("| loops | requests/s | vs 1 loop | connections per loop |");
        println!("|---:|---:|---:|---|");
        let mut one = None;
        for n in [1usize, 2] {
            // Not pinned: the loops may use both cores (the load generator
            // runs on core 1 too).
            let n_arg = n.to_string();
            let Some(server) = Kind::Asyncio.start(&[], "echo_server.py", &["percore", &n_arg])
            else {
                println!("| {n} | — | — | — |");
                continue;
            };
            let _ = load(server.port, 1024, 100, -2000.0);
            let r = (0..3)
                .filter_map(|_| load(server.port, 1024, 100, seconds))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let spread =
                per_loop_counts(server.port, n).map_or("—".to_owned(), |c| format!("{c:?}"));
            let rps = r.map(|r| r.0);
            if n == 1 {
                one = rps;
            }
            println!(
                "| {n} | {} | {} | {spread} |",
                harness::cell(rps),
                harness::ratio(rps, one)
            );
        }
    }

    if !parts.contains("memory") {
        return;
    }
    println!("\n### Memory per idle connection (server RSS growth over 10,000 connections)\n");
    println!("| server | bytes per connection |");
    println!("|---|---:|");
    for kind in kinds {
        match idle_cost(kind, 10_000) {
            Some(b) => println!("| {} | {b:.0} |", kind.name()),
            None => println!("| {} | — |", kind.name()),
        }
    }
}
