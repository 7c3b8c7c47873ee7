//! Runs every example and checks what it prints (the CPython docs' output,
//! where the example comes from the docs).

mod tls_common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long an example may take: far above what any needs.
const LIMIT: Duration = Duration::from_secs(60);

/// `target/<profile>/examples/<name>`. `cargo build --examples` runs first
/// (once, and a no-op after `cargo test`, which builds them): running only
/// this test target must not run stale examples.
fn example(name: &str) -> Command {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--examples"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the examples");
    });
    let deps = std::env::current_exe()
        .expect("test executable")
        .parent()
        .expect("deps dir")
        .to_path_buf();
    let path: PathBuf = deps
        .parent()
        .expect("profile dir")
        .join("examples")
        .join(name);
    let mut cmd = Command::new(path);
    cmd.env_remove("ASYNCIO_DEBUG");
    cmd
}

/// Waits for `child`, killing it (and failing) after [`LIMIT`].
fn finish(mut child: Child, name: &str) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("example {name} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(name: &str, args: &[&str]) -> Vec<String> {
    let child = example(name)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = finish(child, name);
    assert!(
        out.status.success(),
        "{name}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn hello_world() {
    assert_eq!(run("hello_world", &[]), ["Hello World"]);
}

#[test]
fn display_date_prints_the_date_each_second_for_five_seconds() {
    let lines = run("display_date", &[]);
    // Five when the timers are on time; fewer only if they run very late.
    assert!((1..=5).contains(&lines.len()), "{lines:?}");
    let mut last = 0.0;
    for line in &lines {
        let secs: f64 = line
            .strip_suffix(" (seconds since the epoch)")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(secs > last, "{lines:?}");
        last = secs;
    }
}

#[test]
fn tasks_gather_timeout() {
    let lines = run("tasks_gather_timeout", &[]);
    for expected in [
        "[2, 6, 24]",
        "Task D: factorial(3) = 6",
        "D returned 6",
        "The long operation timed out, but we've handled it.",
        "This statement will run regardless.",
    ] {
        assert!(lines.iter().any(|l| l == expected), "{expected}: {lines:?}");
    }
}

#[test]
fn socketpair_wait_for_data() {
    assert_eq!(run("socketpair_wait_for_data", &[]), ["Received: \"abc\""]);
}

#[test]
fn unix_echo() {
    let lines = run("unix_echo", &[]);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("Serving on /"), "{lines:?}");
    assert_eq!(lines[1], "Received: \"Hello over a Unix socket!\"");
    assert_eq!(lines[2], "Socket file removed: true");
}

#[test]
fn tcp_echo_server_and_client() {
    let mut server = example("tcp_echo_server")
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("Serving on ...");
    let port = first
        .trim_end()
        .strip_prefix("Serving on ('127.0.0.1', ")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_owned();
    let client = run("tcp_echo_client", &[&format!("127.0.0.1:{port}")]);
    assert_eq!(
        client,
        [
            "Data sent: 'Hello World!'",
            "Data received: 'Hello World!'",
            "The connection is closed",
        ]
    );
    let _ = server.kill();
    let _ = server.wait();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("server output");
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("Connection from ('127.0.0.1', "),
        "{lines:?}"
    );
    assert_eq!(lines[1], "Data received: 'Hello World!'");
    assert_eq!(lines[2], "Send: 'Hello World!'");
}

#[test]
fn watch_fd_read_events() {
    assert_eq!(run("watch_fd_read_events", &[]), ["Received: abc"]);
}

#[test]
fn pipe_filter() {
    assert_eq!(
        run("pipe_filter", &[]),
        [
            "Send: 'hello pipes'",
            "Received: 'HELLO PIPES'",
            "Child exited with 0"
        ]
    );
}

#[test]
fn udp_echo_server_and_client() {
    let mut server = example("udp_echo_server")
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("Starting UDP server");
    assert_eq!(first, "Starting UDP server\n");
    let mut second = String::new();
    stdout.read_line(&mut second).expect("Serving on ...");
    let port = second
        .trim_end()
        .strip_prefix("Serving on ('127.0.0.1', ")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{second:?}"))
        .to_owned();
    let client = run("udp_echo_client", &[&format!("127.0.0.1:{port}")]);
    assert_eq!(
        client,
        [
            "Send: Hello World!",
            "Received: Hello World!",
            "Close the socket",
            "Connection closed",
        ]
    );
    let _ = server.kill();
    let _ = server.wait();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("server output");
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("Received 'Hello World!' from ('127.0.0.1', "),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("Send 'Hello World!' to ('127.0.0.1', "),
        "{lines:?}"
    );
}

#[test]
fn unix_signals_stops_the_loop_on_sigterm() {
    let mut child = example("unix_signals")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("first line");
    assert_eq!(
        first,
        "Event loop running for 1 hour, press Ctrl+C to interrupt.\n"
    );
    let mut second = String::new();
    stdout.read_line(&mut second).expect("second line");
    assert_eq!(
        second,
        format!("pid {}: send SIGINT or SIGTERM to exit.\n", child.id())
    );
    // SAFETY: signals the example's process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("rest");
    let out = finish(child, "unix_signals");
    assert_eq!(rest, "got signal SIGTERM: exit\n");
    // As in Python: asyncio.run fails once the loop was stopped.
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Event loop stopped before Future completed."),
        "{stderr}"
    );
}

#[test]
fn subprocess_date() {
    let lines = run("subprocess_date", &[]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let date = lines[0]
        .strip_prefix("Current date: ")
        .unwrap_or_else(|| panic!("{lines:?}"));
    // YYYY-MM-DD HH:MM:SS
    assert_eq!(date.len(), 19, "{date}");
    assert_eq!(&date[4..5], "-");
    assert_eq!(&date[13..14], ":");
}

#[test]
fn spawn_many() {
    let lines = run("spawn_many", &["40", "8"]);
    assert_eq!(lines[0], "spawns=40 concurrency=8");
    let rate: f64 = lines
        .last()
        .and_then(|l| l.strip_prefix("spawns_per_s="))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(rate > 0.0);
}

#[test]
fn streams_tcp_echo() {
    let lines = run("streams_tcp_echo", &[]);
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert!(
        lines[0].starts_with("Serving on ('127.0.0.1', "),
        "{lines:?}"
    );
    assert_eq!(lines[1], "Send: 'Hello World!'");
    assert!(
        lines[2].starts_with("Received 'Hello World!' from ('127.0.0.1', "),
        "{lines:?}"
    );
    assert_eq!(
        &lines[3..],
        [
            "Send: 'Hello World!'",
            "Close the connection",
            "Received: 'Hello World!'",
            "Close the connection"
        ]
    );
}

#[test]
fn socketpair_streams() {
    assert_eq!(run("socketpair_streams", &[]), ["Received: abc"]);
}

/// Python's own `http.server` when CPython is here, else a one-request
/// server in a thread; its port.
fn http_server() -> (u16, Box<dyn FnOnce()>) {
    let python = Command::new("python3")
        .args(["-m", "http.server", "0", "--bind", "127.0.0.1"])
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(mut child) = python {
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        if out.read_line(&mut line).is_ok() {
            // "Serving HTTP on 127.0.0.1 port 12345 (http://127.0.0.1:12345/) ..."
            if let Some(port) = line
                .split("port ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse().ok())
            {
                return (
                    port,
                    Box::new(move || {
                        let _ = child.kill();
                        let _ = child.wait();
                    }),
                );
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = [0; 1024];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nServer: test\r\nContent-Length: 0\r\n\r\n");
    });
    (
        port,
        Box::new(move || {
            let _ = server.join();
        }),
    )
}

#[test]
fn http_headers() {
    let (port, stop) = http_server();
    let lines = run("http_headers", &[&format!("http://127.0.0.1:{port}/")]);
    stop();
    assert_eq!(lines[0], "HTTP header> HTTP/1.0 200 OK", "{lines:?}");
    assert!(
        lines.iter().all(|l| l.starts_with("HTTP header> ")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("HTTP header> Server: ")));
}

#[test]
fn streams_echo_server() {
    let (mut server, port, mut stdout) = serving("streams_echo_server");
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    for message in ["one", "two"] {
        conn.write_all(message.as_bytes()).expect("write");
        let mut back = [0; 3];
        conn.read_exact(&mut back).expect("echo");
        assert_eq!(&back, message.as_bytes());
    }
    drop(conn);
    let mut line = String::new();
    stdout.read_line(&mut line).expect("line");
    assert!(
        line.starts_with("Received 'one' from ('127.0.0.1', "),
        "{line:?}"
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// Starts an example server that prints `Serving on ('127.0.0.1', PORT)`;
/// the rest of its output can be read from the reader given back.
fn serving(name: &str) -> (Child, u16, BufReader<std::process::ChildStdout>) {
    serving_with(name, &[])
}

/// [`serving`] with more arguments after the address.
fn serving_with(
    name: &str,
    args: &[&std::ffi::OsStr],
) -> (Child, u16, BufReader<std::process::ChildStdout>) {
    let mut server = example(name)
        .arg("127.0.0.1:0")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("Serving on ...");
    let port = first
        .trim_end()
        .strip_prefix("Serving on ('127.0.0.1', ")
        .and_then(|s| s.strip_suffix(')'))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{first:?}"));
    (server, port, stdout)
}

#[test]
fn http_server_answers_pipelined_requests() {
    use std::io::Write;
    let (mut server, port, _) = serving("http_server");
    // Three requests sent back to back on one connection, before any answer.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.write_all(
        b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read");
    let bodies: Vec<&str> = answer
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        bodies,
        ["Hello, World!\n", "hello", "path /last\n"],
        "{answer}"
    );
    // curl, a client this project did not write, where it is installed:
    // two URLs on one kept-alive connection, then a POST.
    if Command::new("curl").arg("--version").output().is_ok() {
        let out = Command::new("curl")
            .args(["-s", "-v"])
            .arg(format!("http://127.0.0.1:{port}/hello"))
            .arg(format!("http://127.0.0.1:{port}/again"))
            .output()
            .expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Hello, World!\npath /again\n"
        );
        let verbose = String::from_utf8_lossy(&out.stderr);
        assert!(
            verbose.contains("Re-using existing connection") || verbose.contains("left intact"),
            "{verbose}"
        );
        let out = Command::new("curl")
            .args(["-s", "-d", "some data"])
            .arg(format!("http://127.0.0.1:{port}/echo"))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "some data");
    }
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn hyper_server_and_client() {
    let (mut server, port, _) = serving("hyper_server");
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    assert_eq!(
        run("hyper_client", &[&url("/")]),
        ["HTTP/1.1 200 OK", "Hello from hyper inside asyncio!"]
    );
    // The service awaited asyncio.sleep inside the connection's task.
    let slept = run("hyper_client", &[&url("/sleep")]);
    assert_eq!(slept.len(), 2, "{slept:?}");
    assert_eq!(slept[0], "HTTP/1.1 200 OK");
    assert!(
        slept[1].starts_with("Slept 0.05 s in asyncio task Task-"),
        "{slept:?}"
    );
    assert_eq!(
        run("hyper_client", &[&url("/nope")]),
        ["HTTP/1.1 404 Not Found", "Not Found"]
    );
    // curl, a client this project did not write, where it is installed:
    // both paths on one kept-alive connection.
    if Command::new("curl").arg("--version").output().is_ok() {
        let out = Command::new("curl")
            .args(["-s", "-v"])
            .arg(url("/"))
            .arg(url("/sleep"))
            .output()
            .expect("curl");
        assert!(out.status.success(), "{out:?}");
        let body = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 2, "{body}");
        assert_eq!(lines[0], "Hello from hyper inside asyncio!");
        assert!(
            lines[1].starts_with("Slept 0.05 s in asyncio task Task-"),
            "{body}"
        );
        let verbose = String::from_utf8_lossy(&out.stderr);
        assert!(
            verbose.contains("Re-using existing connection") || verbose.contains("left intact"),
            "{verbose}"
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn chat_server_broadcasts_between_clients() {
    let (mut server, port, _) = serving("chat_server");
    // Two clients written in Python asyncio (streams), where CPython is
    // here; Rust clients otherwise.
    let python = format!(
        r#"
import asyncio
async def main():
    r1, w1 = await asyncio.open_connection("127.0.0.1", {port})
    assert (await r1.readline()) == b"welcome, you are 1\n"
    r2, w2 = await asyncio.open_connection("127.0.0.1", {port})
    assert (await r2.readline()) == b"welcome, you are 2\n"
    assert (await r1.readline()) == b"2 joined\n"
    w1.write(b"hello\n")
    await w1.drain()
    print((await r2.readline()).decode(), end="")
    w2.write(b"hi there\n")
    await w2.drain()
    print((await r1.readline()).decode(), end="")
    w2.close()
    await w2.wait_closed()
    print((await r1.readline()).decode(), end="")
    w1.close()
    await w1.wait_closed()
asyncio.run(main())
"#
    );
    let out = Command::new("python3").args(["-c", &python]).output();
    let lines: Vec<String> = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        _ => rust_chat_clients(port),
    };
    assert_eq!(lines, ["1: hello", "2: hi there", "2 left"]);
    let _ = server.kill();
    let _ = server.wait();
}

fn rust_chat_clients(port: u16) -> Vec<String> {
    use std::io::Write;
    let line = |r: &mut BufReader<std::net::TcpStream>| {
        let mut l = String::new();
        r.read_line(&mut l).expect("line");
        l.trim_end().to_owned()
    };
    let c1 = std::net::TcpStream::connect(("127.0.0.1", port)).expect("c1");
    let mut r1 = BufReader::new(c1.try_clone().expect("clone"));
    assert_eq!(line(&mut r1), "welcome, you are 1");
    let c2 = std::net::TcpStream::connect(("127.0.0.1", port)).expect("c2");
    let mut r2 = BufReader::new(c2.try_clone().expect("clone"));
    assert_eq!(line(&mut r2), "welcome, you are 2");
    assert_eq!(line(&mut r1), "2 joined");
    (&c1).write_all(b"hello\n").expect("write");
    let a = line(&mut r2);
    (&c2).write_all(b"hi there\n").expect("write");
    let b = line(&mut r1);
    drop(r2);
    drop(c2);
    let c = line(&mut r1);
    vec![a, b, c]
}

#[test]
fn tls_echo_server_and_client() {
    let pki = tls_common::pki();
    let (mut server, port, mut stdout) = serving_with(
        "tls_echo_server",
        &[pki.cert.as_os_str(), pki.key.as_os_str()],
    );
    let client = example("tls_echo_client")
        .arg(format!("127.0.0.1:{port}"))
        .arg(&pki.ca)
        .args(["localhost", "one", "two"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let out = finish(client, "tls_echo_client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Connected with TLSv1.3 Some(('TLS_"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("Server certificate: {'subject': ((('commonName', 'localhost'),)"),
        "{text}"
    );
    assert_eq!(lines[2..], ["Received: one", "Received: two"]);
    let mut line = String::new();
    stdout.read_line(&mut line).expect("line");
    assert!(
        line.starts_with("Received 'one' from ('127.0.0.1', "),
        "{line:?}"
    );

    // A client this project did not write: Python's asyncio with OpenSSL.
    if let Ok(python) = Command::new("python3")
        .arg("-c")
        .arg(PYTHON_TLS_CLIENT)
        .arg(port.to_string())
        .arg(&pki.ca)
        .output()
    {
        if python.status.success() {
            assert_eq!(String::from_utf8_lossy(&python.stdout), "b'from python'\n");
        } else {
            let err = String::from_utf8_lossy(&python.stderr);
            // Only a missing ssl module excuses it.
            assert!(err.contains("No module named"), "{err}");
        }
    }
    let _ = server.kill();
    let _ = server.wait();
}

const PYTHON_TLS_CLIENT: &str = r#"
import asyncio, ssl, sys
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]), ssl=ctx, server_hostname="localhost")
    w.write(b"from python")
    print(await r.readexactly(11))
    w.close()
    await w.wait_closed()
asyncio.run(main())
"#;

#[test]
fn echo_per_core_serves_one_port_from_two_loops() {
    use std::io::Write;
    // A free port (every loop binds this one with reuse_port).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = example("echo_per_core")
        .args([format!("127.0.0.1:{port}"), "2".to_owned()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let mut serving = Vec::new();
    while serving.len() < 2 {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("line");
        if line.contains("serving on") {
            serving.push(line);
        }
    }
    serving.sort();
    assert!(
        serving[0].starts_with("loop 0: serving on ('127.0.0.1', "),
        "{serving:?}"
    );
    assert!(
        serving[1].starts_with("loop 1: serving on ('127.0.0.1', "),
        "{serving:?}"
    );
    for _ in 0..50 {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.write_all(b"ping").expect("write");
        let mut back = [0; 4];
        conn.read_exact(&mut back).expect("echo");
        assert_eq!(&back, b"ping");
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// Ctrl-C ends an `#[asyncio::main]` server as it ends a Python one: the
/// main task is cancelled, `KeyboardInterrupt` is printed and the process
/// dies of SIGINT.
#[test]
fn ctrl_c_ends_a_server_like_python() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let mut cmd = example("streams_echo_server");
    cmd.arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only resets SIGINT to its default in the child before exec
    // (a background CI job may have it ignored, which the runner respects).
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut server = cmd.spawn().expect("spawn server");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("Serving on ...");
    assert!(first.starts_with("Serving on"), "{first:?}");
    // SAFETY: sends SIGINT to the child we spawned.
    assert_eq!(unsafe { libc::kill(server.id() as i32, libc::SIGINT) }, 0);
    let out = finish(server, "streams_echo_server");
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "KeyboardInterrupt\n");
}

#[test]
fn virtual_time_runs_an_hour_and_a_half_at_once() {
    let lines = run("virtual_time", &[]);
    assert_eq!(
        lines[..12],
        [
            "    0.0 attempt 1 failed, retrying in 60 s",
            "   60.0 attempt 2 failed, retrying in 120 s",
            "  180.0 attempt 3 failed, retrying in 240 s",
            "  420.0 attempt 4 failed, retrying in 480 s",
            "  600.0 heartbeat",
            " 1200.0 heartbeat",
            " 1800.0 heartbeat",
            " 2400.0 heartbeat",
            " 3000.0 heartbeat",
            " 3600.0 heartbeat",
            " 4200.0 heartbeat",
            " 4500.0 the slow call: TimeoutError",
        ]
    );
    assert!(
        lines[12].starts_with("virtual time 4500 s, real time under "),
        "{lines:?}"
    );
}
