//! Many connections at once, and descriptor hygiene: after a loop that
//! served, connected, failed and aborted is closed, no file descriptor is
//! left open. The tests of this file share the process's descriptor table,
//! so they run one at a time.

mod net_common;

use std::io::Write;
use std::rc::Rc;
use std::sync::Mutex;

use asyncio::{EventLoop, Transport};

use net_common::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok())
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!("{} -> {target}", e.file_name().to_string_lossy())
        })
        .collect();
    v.sort();
    v
}

const CONNECTIONS: usize = 1000;

#[test]
fn a_thousand_concurrent_connections_echo() {
    let _serial = serial();
    let loop_ = asyncio::new_event_loop().unwrap();
    let l = loop_.clone();
    loop_
        .run_until_complete(async move {
            let accepted = Accepted::new(&l);
            let acc = accepted.clone();
            let server = l
                .create_server(move || Rec::echo(&acc.log()))
                .host("127.0.0.1")
                .port(0)
                .backlog(CONNECTIONS as i32)
                .await?;
            let port = server_port(&server);
            let mut tasks = Vec::with_capacity(CONNECTIONS);
            for i in 0..CONNECTIONS {
                tasks.push(l.create_task(async move {
                    let (t, log) = connect(port, Rec::new).await?;
                    let msg = format!("connection {i} says hello;").repeat(4);
                    t.write(msg.as_bytes())?;
                    let got = log.wait_data(msg.len()).await?;
                    assert_eq!(got, msg.as_bytes(), "connection {i}");
                    Ok((t, log))
                })?);
            }
            let mut open: Vec<(Rc<dyn Transport>, Log)> = Vec::with_capacity(CONNECTIONS);
            for t in tasks {
                open.push(within(async move { t.await }).await?);
            }
            // All of them were open at the same time.
            assert_eq!(open.len(), CONNECTIONS);
            assert!(open
                .iter()
                .all(|(t, log)| !t.is_closing() && !log.is_lost()));
            assert_eq!(accepted.count(), CONNECTIONS);
            server.close();
            for (t, _) in &open {
                t.close();
            }
            for (_, log) in &open {
                assert!(log.wait_lost().await?.is_none());
            }
            within({
                let s = server.clone();
                async move { s.wait_closed().await }
            })
            .await?;
            assert!(accepted.all().iter().all(Log::is_lost));
            Ok(())
        })
        .unwrap();
    loop_.close().unwrap();
}

/// Servers, connections closed / aborted / reset, failures, DNS and Unix
/// sockets, all cleaned up properly, under `asyncio.run` (which joins the
/// default executor's threads before closing the loop).
fn busy_loop_closed_cleanly() {
    asyncio::run(async {
        let loop_ = asyncio::get_running_loop()?;
        exercise(&loop_, true).await
    })
    .unwrap();
}

/// The same, but a server and connections are still open when
/// `asyncio.run` closes the loop.
fn busy_loop_abandoned() {
    asyncio::run(async {
        let loop_ = asyncio::get_running_loop()?;
        exercise(&loop_, false).await
    })
    .unwrap();
}

async fn exercise(loop_: &EventLoop, tidy: bool) -> asyncio::Result<()> {
    // TCP: echo, close, abort, peer reset.
    let (server, port, accepted) = serve_on_loopback(Rec::echo).await?;
    for i in 0..10 {
        let (t, log) = connect(port, Rec::new).await?;
        t.write(b"ping")?;
        log.wait_data(4).await?;
        if i % 2 == 0 {
            t.close();
        } else {
            t.abort();
        }
        log.wait_lost().await?;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let (_t, log) = connect(listener.local_addr()?.port(), Rec::new).await?;
    let (peer, _) = listener.accept()?;
    socket2::SockRef::from(&peer).set_linger(Some(std::time::Duration::ZERO))?;
    drop(peer);
    assert!(log.wait_lost().await?.is_some());
    drop(listener);
    // A refused connection and a failed lookup.
    let (reserved, rport) = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )?;
        let p = s.local_addr()?.as_socket().map(|a| a.port()).unwrap_or(0);
        (s, p)
    };
    let l = loop_.clone();
    assert!(loop_
        .create_connection(move || Rec::new(&Log::new(&l)))
        .host("127.0.0.1")
        .port(rport)
        .await
        .is_err());
    drop(reserved);
    let l = loop_.clone();
    assert!(loop_
        .create_connection(move || Rec::new(&Log::new(&l)))
        .host("nonexistent.invalid")
        .port(80)
        .await
        .is_err());
    loop_.getaddrinfo("localhost", 80).await?;
    // Dual-stack server.
    let l = loop_.clone();
    let dual = loop_
        .create_server(move || Rec::echo(&Log::new(&l)))
        .port(0)
        .await?;
    // Unix server and connection.
    let path = std::env::temp_dir().join(format!(
        "aio-{}-fd-{}.sock",
        std::process::id(),
        if tidy { "tidy" } else { "left" }
    ));
    let _ = std::fs::remove_file(&path);
    let l = loop_.clone();
    let unix = loop_
        .create_unix_server(move || Rec::echo(&Log::new(&l)))
        .path(path.clone())
        .await?;
    let ulog = Log::new(loop_);
    let ul = ulog.clone();
    let (ut, _) = loop_
        .create_unix_connection(move || Rec::new(&ul))
        .path(path.clone())
        .await?;
    ut.write(b"u")?;
    ulog.wait_data(1).await?;
    // connect_accepted_socket and sock=.
    let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    let plog = Log::new(loop_);
    let pl = plog.clone();
    let (pt, _) = loop_
        .create_connection(move || Rec::new(&pl))
        .sock(a)
        .await?;
    b.write_all(b"x")?;
    plog.wait_data(1).await?;
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = std::net::TcpStream::connect(std_listener.local_addr()?)?;
    let (acc, _) = std_listener.accept()?;
    let alog = Log::new(loop_);
    let al = alog.clone();
    let (at, _) = loop_
        .connect_accepted_socket(move || Rec::new(&al), acc)
        .await?;
    drop(std_listener);
    // One more connection that stays open in the untidy case.
    let (open_t, open_log) = connect(port, Rec::new).await?;
    open_t.write(b"still open")?;
    open_log.wait_data(10).await?;

    if tidy {
        for t in [&ut, &pt, &at, &open_t] {
            t.close();
        }
        for log in [&ulog, &plog, &alog, &open_log] {
            log.wait_lost().await?;
        }
        for s in [&server, &dual, &unix] {
            s.close();
        }
        for s in [&server, &dual, &unix] {
            let s = s.clone();
            within(async move { s.wait_closed().await }).await?;
        }
        assert!(accepted.all().iter().all(Log::is_lost));
    }
    drop((b, client));
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn no_descriptor_is_left_open_after_a_clean_loop_is_closed() {
    let _serial = serial();
    // A first run opens whatever is opened once per process.
    busy_loop_closed_cleanly();
    let before = open_fds();
    for _ in 0..3 {
        busy_loop_closed_cleanly();
    }
    let after = open_fds();
    assert_eq!(after, before, "descriptors left open");
}

#[test]
fn no_descriptor_is_left_open_when_the_loop_closes_with_open_transports() {
    let _serial = serial();
    busy_loop_closed_cleanly();
    let before = open_fds();
    for _ in 0..3 {
        busy_loop_abandoned();
    }
    let after = open_fds();
    assert_eq!(after, before, "descriptors left open");
}

#[test]
fn close_releases_the_loop_descriptors_even_with_a_threadsafe_handle_alive() {
    let _serial = serial();
    busy_loop_closed_cleanly();
    let before = open_fds();
    let loop_ = asyncio::new_event_loop().unwrap();
    let handle = loop_.threadsafe();
    loop_
        .run_until_complete(async { asyncio::sleep(0).await })
        .unwrap();
    loop_.close().unwrap();
    drop(loop_);
    // CPython's close() closes the selector and the self-pipe at once,
    // whoever still refers to the loop.
    let after = open_fds();
    drop(handle);
    assert_eq!(after, before, "descriptors left open after close()");
}
