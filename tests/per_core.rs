//! `asyncio::run_per_core`: one loop per thread, each running its own copy
//! of `main`; errors stop them all; a `reuse_port` server on every loop
//! shares one port. (Ctrl-C is in `runner_sigint.rs`, on the main thread.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use asyncio::streams::{start_server, StreamReader, StreamWriter};
use asyncio::ErrorKind;

#[test]
fn results_come_back_in_index_order() {
    let out = asyncio::run_per_core(4, |index| async move {
        // Each loop is its own, on its own thread.
        let name = std::thread::current().name().map(str::to_owned);
        asyncio::sleep(0.001 * (4 - index) as f64).await?;
        Ok((index, name))
    })
    .unwrap();
    let indexes: Vec<usize> = out.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, [0, 1, 2, 3]);
    assert_eq!(out[2].1.as_deref(), Some("asyncio-loop-2"));
}

#[test]
fn an_error_in_one_loop_stops_the_others() {
    let cancelled = Arc::new(AtomicUsize::new(0));
    let c = cancelled.clone();
    let e = asyncio::run_per_core(3, move |index| {
        let cancelled = c.clone();
        async move {
            if index == 1 {
                asyncio::sleep(0.01).await?;
                return Err(asyncio::Error::value("loop 1 failed"));
            }
            match asyncio::sleep(3600.0).await {
                Err(e) if e.is_cancelled() => {
                    cancelled.fetch_add(1, Ordering::SeqCst);
                    Err(e)
                }
                other => other,
            }
        }
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ValueError);
    assert_eq!(e.message(), "loop 1 failed");
    assert_eq!(cancelled.load(Ordering::SeqCst), 2);
}

#[test]
fn misuse() {
    let e = asyncio::run_per_core(0, |_| async { Ok(()) }).unwrap_err();
    assert_eq!(e.to_string(), "n must be at least 1");
    let inner =
        asyncio::run(async { Ok(asyncio::run_per_core(1, |_| async { Ok(()) }).unwrap_err()) })
            .unwrap();
    assert_eq!(
        inner.to_string(),
        "run_per_core() cannot be called from a running event loop"
    );
}

/// Two loops serve one port (`reuse_port`); the kernel spreads the
/// connections between them.
#[test]
fn reuse_port_spreads_connections() {
    const CONNECTIONS: usize = 200;
    let port: Arc<(Mutex<Option<u16>>, Condvar)> = Arc::new((Mutex::new(None), Condvar::new()));
    let served: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let done = Arc::new(AtomicBool::new(false));
    let listening = Arc::new(AtomicUsize::new(0));
    let (p, sv, d, l) = (
        port.clone(),
        served.clone(),
        done.clone(),
        listening.clone(),
    );
    asyncio::run_per_core(2, move |index| {
        let (port, served, done, listening) = (p.clone(), sv.clone(), d.clone(), l.clone());
        async move {
            let wanted = if index == 0 {
                0
            } else {
                // The port loop 0 got.
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
            let counter = served.clone();
            let server = start_server(
                move |reader: StreamReader, writer: StreamWriter| {
                    counter[index].fetch_add(1, Ordering::SeqCst);
                    async move {
                        let data = reader.read(100).await?;
                        writer.write(&data)?;
                        writer.drain().await?;
                        writer.close();
                        Ok(())
                    }
                },
                "127.0.0.1",
                wanted,
            )
            .reuse_port(true)
            .await?;
            listening.fetch_add(1, Ordering::SeqCst);
            if index == 0 {
                let bound = server.sockets()[0].getsockname().unwrap().port().unwrap();
                let (lock, ready) = &*port;
                *lock.lock().unwrap() = Some(bound);
                ready.notify_all();
                // The clients, from a thread, once both loops listen.
                let done = done.clone();
                asyncio::to_thread(move || {
                    use std::io::{Read, Write};
                    while listening.load(Ordering::SeqCst) < 2 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    for _ in 0..CONNECTIONS {
                        let mut c = std::net::TcpStream::connect(("127.0.0.1", bound)).unwrap();
                        c.write_all(b"y").unwrap();
                        let mut b = [0u8; 1];
                        c.read_exact(&mut b).unwrap();
                        assert_eq!(&b, b"y");
                    }
                    done.store(true, Ordering::SeqCst);
                })?;
            }
            while !done.load(Ordering::SeqCst) {
                asyncio::sleep(0.01).await?;
            }
            server.close();
            server.wait_closed().await
        }
    })
    .unwrap();
    let counts: Vec<usize> = served.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    assert!(counts.iter().sum::<usize>() >= CONNECTIONS, "{counts:?}");
    // Not a timing assertion: with 200 connections hashed over two
    // sockets, each gets some (all on one has probability 2^-199).
    assert!(counts.iter().all(|c| *c > 0), "{counts:?}");
}
