//! What the server benchmarks share: starting a server process (ours, raw
//! Tokio, or a Python peer) that prints its port, running the load
//! generator in its own process on the other core, and counting a server's
//! instructions per round trip with callgrind.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Whether `tool` is on the `PATH`.
pub fn which(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The real CPython 3.13 binary (not pyenv's shim, which valgrind would
/// profile instead of the interpreter it execs).
pub fn python() -> String {
    Command::new("pyenv")
        .args(["which", "python3"])
        .env("PYENV_VERSION", "3.13.0")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "python3".to_owned())
}

/// Pins servers to core 0 (the load generator gets core 1), if `taskset`
/// is there.
pub fn server_wrapper() -> Vec<&'static str> {
    if which("taskset") {
        vec!["taskset", "-c", "0"]
    } else {
        vec![]
    }
}

/// `wrapper… argv…` as a command, with pyenv set to CPython 3.13.
pub fn wrapped(wrapper: &[&str], argv: &[String]) -> Command {
    let mut all: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
    all.extend(argv.iter().cloned());
    let mut cmd = Command::new(&all[0]);
    cmd.args(&all[1..]).env("PYENV_VERSION", "3.13.0");
    cmd
}

/// This bench binary with `args`.
pub fn this_binary(args: &[&str]) -> Vec<String> {
    let exe = std::env::current_exe().expect("the bench binary");
    let mut argv = vec![exe.display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv
}

/// A Python peer script from `benches/peers` with `args`.
pub fn python_script(script: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        python(),
        format!("{}/benches/peers/{script}", env!("CARGO_MANIFEST_DIR")),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv
}

/// A server process that printed its port.
pub struct ServerProc {
    pub child: Child,
    pub port: u16,
}

impl ServerProc {
    /// Starts `cmd` and reads the port from its first line.
    pub fn start(mut cmd: Command) -> Option<ServerProc> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        match line.trim().parse() {
            Ok(port) => Some(ServerProc { child, port }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs this binary's load generator (`--client` + `args`) in its own
/// process (on core 1, if `taskset` is there); returns the four numbers it
/// prints: `(req/s, p50 µs, p99 µs, requests)`.
pub fn load(args: &[String]) -> Option<(f64, f64, f64, u64)> {
    let exe = std::env::current_exe().ok()?;
    let mut cmd = if which("taskset") {
        let mut c = Command::new("taskset");
        c.arg("-c").arg("1").arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd.arg("--client").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.len() == 4).then(|| (v[0], v[1], v[2], v[3] as u64))
}

/// The `p` quantile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Prints a load generator's result as [`load`] reads it.
pub fn print_load(requests: u64, seconds: f64, mut latencies_us: Vec<f64>) {
    latencies_us.sort_by(f64::total_cmp);
    println!(
        "{} {} {} {}",
        requests as f64 / seconds,
        percentile(&latencies_us, 0.5),
        percentile(&latencies_us, 0.99),
        requests
    );
}

/// The server's user-space instructions per round trip under callgrind:
/// `start` starts the server with the given wrapper, `drive(port, rounds)`
/// runs that many round trips (negative: a fixed count) and returns how
/// many were done. A warm-up of a tenth as many runs uncounted first.
pub fn instructions_per_round_trip(
    name: &str,
    start: impl Fn(&[&str]) -> Option<ServerProc>,
    drive: impl Fn(u16, u64) -> Option<u64>,
    rounds: u64,
) -> Option<f64> {
    let out_file = std::env::temp_dir().join(format!(
        "asyncio-bench-{}-{}.callgrind",
        name.replace(' ', "_"),
        std::process::id()
    ));
    let out_arg = format!("--callgrind-out-file={}", out_file.display());
    let wrapper = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        out_arg.as_str(),
    ];
    let server = start(&wrapper)?;
    drive(server.port, (rounds / 10).max(100))?;
    let pid = server.pid().to_string();
    Command::new("callgrind_control")
        .args(["-i", "on", &pid])
        .output()
        .ok()?;
    let done = drive(server.port, rounds)?;
    Command::new("callgrind_control")
        .args(["-i", "off", &pid])
        .output()
        .ok()?;
    // SIGTERM, not SIGKILL: callgrind writes its counts on the way out.
    let mut server = server;
    Command::new("kill").args(["-TERM", &pid]).output().ok()?;
    let _ = server.child.wait();
    drop(server);
    let text = std::fs::read_to_string(&out_file).ok()?;
    let _ = std::fs::remove_file(&out_file);
    // `summary:` covers the whole run (0 with --instr-atstart=no) and
    // `totals:` the instrumented part; take the larger.
    let total: f64 = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    if total == 0.0 || done == 0 {
        return None;
    }
    Some(total / done as f64)
}

/// `12345` or `—`.
pub fn cell(v: Option<f64>) -> String {
    v.map_or("—".to_owned(), |v| format!("{v:.0}"))
}

/// `a / b` as `0.12×`, or `—`.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}×", a / b),
        _ => "—".to_owned(),
    }
}

/// The servers compared.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Asyncio,
    Tokio,
    Uvloop,
    CPython,
}

impl Kind {
    /// All four, in the tables' order.
    pub const ALL: [Kind; 4] = [Kind::Asyncio, Kind::Tokio, Kind::Uvloop, Kind::CPython];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Asyncio => "asyncio-rs",
            Kind::Tokio => "raw Tokio",
            Kind::Uvloop => "uvloop",
            Kind::CPython => "CPython asyncio",
        }
    }

    /// Starts this kind's server under `wrapper`: this binary's
    /// `--server asyncio|tokio ARGS…`, or the Python `script` with
    /// `uvloop|asyncio ARGS…`.
    pub fn start(self, wrapper: &[&str], script: &str, args: &[&str]) -> Option<ServerProc> {
        fn with<'a>(first: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
            first.iter().chain(args).copied().collect()
        }
        let argv = match self {
            Kind::Asyncio => this_binary(&with(&["--server", "asyncio"], args)),
            Kind::Tokio => this_binary(&with(&["--server", "tokio"], args)),
            Kind::Uvloop => python_script(script, &with(&["uvloop"], args)),
            Kind::CPython => python_script(script, &with(&["asyncio"], args)),
        };
        ServerProc::start(wrapped(wrapper, &argv))
    }
}

/// One row per peer: `(kind, (req/s, p50, p99, requests), instructions)`.
pub type PeerRow = (Kind, Option<(f64, f64, f64, u64)>, Option<f64>);

/// Prints the rows of a "server | requests/s | p50 | p99 | vs raw Tokio |
/// instructions | vs raw Tokio | vs uvloop" table, each server named by
/// `name`.
pub fn print_peer_rows(rows: &[PeerRow], name: impl Fn(Kind) -> String) {
    let tokio = rows.iter().find(|r| r.0 == Kind::Tokio).cloned();
    let uvloop = rows.iter().find(|r| r.0 == Kind::Uvloop).and_then(|r| r.2);
    for (kind, r, instr) in rows {
        let (rps, p50, p99) = r.map_or((None, None, None), |r| (Some(r.0), Some(r.1), Some(r.2)));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            name(*kind),
            cell(rps),
            cell(p50),
            cell(p99),
            ratio(rps, tokio.as_ref().and_then(|t| t.1.map(|x| x.0))),
            cell(*instr),
            ratio(*instr, tokio.as_ref().and_then(|t| t.2)),
            ratio(*instr, uvloop),
        );
    }
}

/// What the load generators' connections share: the round trips left (a
/// fixed number in all, or unbounded until `deadline`) and the latencies.
pub struct LoadShared {
    pub remaining: std::cell::RefCell<i64>,
    pub deadline: Option<std::time::Instant>,
    pub latencies_us: std::cell::RefCell<Vec<f64>>,
}

impl LoadShared {
    /// For `limit` seconds (positive) or `-limit` round trips in all.
    pub fn new(limit: f64) -> std::rc::Rc<LoadShared> {
        std::rc::Rc::new(LoadShared {
            remaining: std::cell::RefCell::new(if limit < 0.0 { -limit as i64 } else { i64::MAX }),
            deadline: (limit > 0.0)
                .then(|| std::time::Instant::now() + std::time::Duration::from_secs_f64(limit)),
            latencies_us: std::cell::RefCell::new(Vec::new()),
        })
    }
}

/// One load-generator connection: sends `size` bytes, waits for all of
/// them back, records the latency, repeats while `shared` allows.
pub async fn round_trips<S>(stream: &mut S, size: usize, shared: &LoadShared) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let msg = vec![b'x'; size];
    let mut buf = vec![0u8; size.max(64 * 1024)];
    loop {
        if shared
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return Ok(());
        }
        {
            let mut r = shared.remaining.borrow_mut();
            if *r <= 0 {
                return Ok(());
            }
            *r -= 1;
        }
        let t0 = std::time::Instant::now();
        stream.write_all(&msg).await?;
        let mut got = 0;
        while got < size {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("server closed"));
            }
            got += n;
        }
        shared
            .latencies_us
            .borrow_mut()
            .push(t0.elapsed().as_secs_f64() * 1e6);
    }
}

/// The protocol echo server's protocol: writes back what it receives.
#[derive(Default)]
pub struct Echo {
    transport: std::cell::OnceCell<std::rc::Rc<dyn asyncio::Transport>>,
}

impl asyncio::BaseProtocol for Echo {}

impl asyncio::Protocol for Echo {
    fn connection_made(
        self: &std::rc::Rc<Self>,
        transport: std::rc::Rc<dyn asyncio::Transport>,
    ) -> asyncio::Result<()> {
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &std::rc::Rc<Self>, data: &[u8]) -> asyncio::Result<()> {
        match self.transport.get() {
            Some(t) => t.write(data),
            None => Ok(()),
        }
    }
}
