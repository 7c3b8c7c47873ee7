//! The datagram and plain-socket benchmarks, side by side with the peers in
//! one run: this project, raw Tokio (one current-thread runtime), CPython
//! 3.13 asyncio and uvloop, all driven by the same Rust load generator.
//!
//! `cargo bench --bench datagram` prints, for a UDP echo server
//! (`create_datagram_endpoint`; 512-byte datagrams, 10 clients) and a
//! `sock_recv`/`sock_sendall` ping-pong over TCP (1 KiB, 10 connections):
//! requests/s and p50/p99 round-trip latency, then the server's user-space
//! instructions per round trip counted by callgrind.
//!
//! The binary is also the servers and the load generator:
//! `datagram --server asyncio|tokio udp|sock`,
//! `datagram --client udp|sock PORT SIZE CONNS SECONDS|-ROUNDS`.

mod harness;

use std::cell::{OnceCell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncio::socket::{Socket, AF_INET, SOCK_STREAM};
use asyncio::{Address, BaseProtocol, DatagramProtocol, DatagramTransport};
use harness::Kind;

/// The Python peers' servers.
const SCRIPT: &str = "dgram_sock_server.py";

// ===== servers =====

#[derive(Default)]
struct Echo {
    transport: OnceCell<Rc<dyn DatagramTransport>>,
}

impl BaseProtocol for Echo {}

impl DatagramProtocol for Echo {
    fn connection_made(
        self: &Rc<Self>,
        transport: Rc<dyn DatagramTransport>,
    ) -> asyncio::Result<()> {
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn datagram_received(self: &Rc<Self>, data: &[u8], addr: Address) -> asyncio::Result<()> {
        match self.transport.get() {
            Some(t) => t.sendto(data, Some(addr)),
            None => Ok(()),
        }
    }
}

fn print_port(port: u16) -> std::io::Result<()> {
    println!("{port}");
    std::io::stdout().flush()
}

fn serve_asyncio_udp() -> asyncio::Result<()> {
    asyncio::run(async {
        let loop_ = asyncio::get_running_loop()?;
        let (transport, _) = loop_
            .create_datagram_endpoint(Echo::default)
            .local_addr(("127.0.0.1", 0))
            .await?;
        let port = transport
            .get_extra_info("sockname")
            .and_then(|a| a.as_address().and_then(Address::port))
            .unwrap_or(0);
        print_port(port)?;
        asyncio::Future::<()>::new(&loop_).await
    })
}

fn serve_asyncio_sock() -> asyncio::Result<()> {
    asyncio::run(async {
        let loop_ = asyncio::get_running_loop()?;
        let listener = Socket::new(AF_INET, SOCK_STREAM, 0)?;
        listener.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>()?.into())?;
        listener.listen(100)?;
        listener.setblocking(false)?;
        print_port(listener.getsockname()?.port().unwrap_or(0))?;
        loop {
            let (conn, _) = loop_.sock_accept(&listener).await?;
            conn.set_tcp_nodelay(true)?;
            let l = loop_.clone();
            asyncio::create_task(async move {
                loop {
                    let data = l.sock_recv(&conn, 65536).await?;
                    if data.is_empty() {
                        return Ok(());
                    }
                    l.sock_sendall(&conn, &data).await?;
                }
            })?;
        }
    })
}

fn tokio_runtime() -> std::io::Result<tokio::runtime::LocalRuntime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(tokio::runtime::LocalOptions::default())
}

fn serve_tokio_udp() -> std::io::Result<()> {
    tokio_runtime()?.block_on(async {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        print_port(sock.local_addr()?.port())?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await?;
            sock.send_to(&buf[..n], from).await?;
        }
    })
}

fn serve_tokio_sock() -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio_runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        print_port(listener.local_addr()?.port())?;
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

/// Each of `conns` clients sends `size` bytes and waits for the echo,
/// repeatedly: for `limit` seconds (positive) or `-limit` round trips in
/// all. A UDP datagram lost on the way is sent again after 200 ms (not
/// counted as a round trip).
fn run_client(udp: bool, port: u16, size: usize, conns: usize, limit: f64) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio_runtime()?.block_on(async move {
        let latencies = Rc::new(RefCell::new(Vec::<f64>::new()));
        let remaining = Rc::new(RefCell::new(if limit < 0.0 {
            -limit as i64
        } else {
            i64::MAX
        }));
        let deadline = (limit > 0.0).then(|| Instant::now() + Duration::from_secs_f64(limit));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..conns {
            let latencies = latencies.clone();
            let remaining = remaining.clone();
            let next = move || {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                let mut r = remaining.borrow_mut();
                *r -= 1;
                *r >= 0
            };
            let msg = vec![b'x'; size];
            let mut buf = vec![0u8; size.max(64 * 1024)];
            if udp {
                let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
                sock.connect(("127.0.0.1", port)).await?;
                handles.push(tokio::task::spawn_local(async move {
                    while next() {
                        let t0 = Instant::now();
                        loop {
                            sock.send(&msg).await?;
                            let wait = Duration::from_millis(200);
                            if let Ok(got) = tokio::time::timeout(wait, sock.recv(&mut buf)).await {
                                got?;
                                break;
                            }
                        }
                        latencies
                            .borrow_mut()
                            .push(t0.elapsed().as_secs_f64() * 1e6);
                    }
                    Ok::<(), std::io::Error>(())
                }));
            } else {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                stream.set_nodelay(true)?;
                handles.push(tokio::task::spawn_local(async move {
                    while next() {
                        let t0 = Instant::now();
                        stream.write_all(&msg).await?;
                        let mut got = 0;
                        while got < size {
                            let n = stream.read(&mut buf).await?;
                            if n == 0 {
                                return Err(std::io::Error::other("server closed"));
                            }
                            got += n;
                        }
                        latencies
                            .borrow_mut()
                            .push(t0.elapsed().as_secs_f64() * 1e6);
                    }
                    Ok::<(), std::io::Error>(())
                }));
            }
        }
        for h in handles {
            h.await.map_err(std::io::Error::other)??;
        }
        let seconds = start.elapsed().as_secs_f64();
        let latencies = std::mem::take(&mut *latencies.borrow_mut());
        harness::print_load(latencies.len() as u64, seconds, latencies);
        Ok(())
    })
}

// ===== driver =====

struct Test {
    name: &'static str,
    arg: &'static str,
    size: usize,
    conns: usize,
}

const TESTS: [Test; 2] = [
    Test {
        name: "UDP echo (create_datagram_endpoint), 512 B × 10 clients",
        arg: "udp",
        size: 512,
        conns: 10,
    },
    Test {
        name: "sock_recv/sock_sendall ping-pong, 1 KiB × 10 connections",
        arg: "sock",
        size: 1024,
        conns: 10,
    },
];

fn load(test: &Test, port: u16, limit: f64) -> Option<(f64, f64, f64, u64)> {
    harness::load(&[
        test.arg.to_owned(),
        port.to_string(),
        test.size.to_string(),
        test.conns.to_string(),
        limit.to_string(),
    ])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        "--server" => {
            let result = match (arg(1), arg(2)) {
                ("tokio", "udp") => serve_tokio_udp().map_err(asyncio::Error::from),
                ("tokio", _) => serve_tokio_sock().map_err(asyncio::Error::from),
                (_, "udp") => serve_asyncio_udp(),
                _ => serve_asyncio_sock(),
            };
            if let Err(e) = result {
                eprintln!("{}", e.traceback_line());
                std::process::exit(1);
            }
            return;
        }
        "--client" => {
            let parsed = (|| {
                Some((
                    arg(2).parse().ok()?,
                    arg(3).parse().ok()?,
                    arg(4).parse().ok()?,
                    arg(5).parse().ok()?,
                ))
            })();
            let Some((port, size, conns, limit)) = parsed else {
                eprintln!("usage: --client udp|sock PORT SIZE CONNS SECONDS|-ROUNDS");
                std::process::exit(2);
            };
            if let Err(e) = run_client(arg(1) == "udp", port, size, conns, limit) {
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
    let wrapper = harness::server_wrapper();
    let parts =
        std::env::var("BENCH_PARTS").unwrap_or_else(|_| "throughput,instructions".to_owned());

    if parts.contains("throughput") {
        println!("### Throughput and latency (best of 3 runs of {seconds} s; server and load generator on separate cores)\n");
        println!("| benchmark | server | requests/s | p50 µs | p99 µs | vs raw Tokio |");
        println!("|---|---|---:|---:|---:|---:|");
        for test in &TESTS {
            let mut tokio_rps = None;
            let mut rows = Vec::new();
            for kind in kinds {
                let Some(server) = kind.start(&wrapper, SCRIPT, &[test.arg]) else {
                    rows.push((kind, None));
                    continue;
                };
                let _ = load(test, server.port, -(test.conns as f64 * 20.0));
                let r = (0..3)
                    .filter_map(|_| load(test, server.port, seconds))
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                if kind == Kind::Tokio {
                    tokio_rps = r.map(|r| r.0);
                }
                rows.push((kind, r));
            }
            for (kind, r) in rows {
                match r {
                    Some((rps, p50, p99, _)) => println!(
                        "| {} | {} | {rps:.0} | {p50:.0} | {p99:.0} | {} |",
                        test.name,
                        kind.name(),
                        tokio_rps.map_or("—".to_owned(), |t| format!("{:.2}×", rps / t))
                    ),
                    None => println!("| {} | {} | — | — | — | — |", test.name, kind.name()),
                }
            }
        }
    }

    if parts.contains("instructions")
        && harness::which("valgrind")
        && harness::which("callgrind_control")
    {
        println!("\n### Server instructions per round trip (callgrind, user space)\n");
        println!("| benchmark | asyncio-rs | raw Tokio | uvloop | CPython asyncio | asyncio-rs / Tokio | asyncio-rs / uvloop |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for test in &TESTS {
            let counts: Vec<Option<f64>> = kinds
                .iter()
                .map(|k| {
                    harness::instructions_per_round_trip(
                        &format!("{}-{}", test.arg, k.name()),
                        |wrapper| k.start(wrapper, SCRIPT, &[test.arg]),
                        |port, rounds| load(test, port, -(rounds as f64)).map(|r| r.3),
                        4000,
                    )
                })
                .collect();
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                test.name,
                harness::cell(counts[0]),
                harness::cell(counts[1]),
                harness::cell(counts[2]),
                harness::cell(counts[3]),
                harness::ratio(counts[0], counts[1]),
                harness::ratio(counts[0], counts[2]),
            );
        }
    }
}
