//! Watching descriptors (`add_reader`/`add_writer`) and the `sock_*`
//! coroutines on real sockets (CPython's `test_sock_lowlevel.py`, and the
//! reader/writer tests of `test_events.py` and `test_selector_events.py`).

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use asyncio::socket::{Socket, AF_INET, AF_UNIX, SOCK_DGRAM, SOCK_STREAM};
use asyncio::{Address, ErrorKind, Result};
use common::{entries, log, push};

fn nonblocking_pair() -> (Socket, Socket) {
    let (a, b) = Socket::pair(AF_UNIX, SOCK_STREAM, 0).unwrap();
    a.setblocking(false).unwrap();
    b.setblocking(false).unwrap();
    (a, b)
}

fn run<T: 'static>(body: impl std::future::Future<Output = Result<T>> + 'static) -> T {
    let loop_ = asyncio::new_event_loop().unwrap();
    let out = loop_.run_until_complete(body).unwrap();
    loop_.close().unwrap();
    out
}

// ----- add_reader / add_writer -----

#[test]
fn a_reader_runs_while_data_waits_level_triggered() {
    // test_events.test_reader_callback: the reader is called in every
    // iteration while the descriptor is readable.
    let loop_ = common::new_loop();
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = b.as_raw_fd();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let l = loop_.clone();
    let reader = loop_
        .add_reader(fd, move || {
            c.set(c.get() + 1);
            if c.get() == 3 {
                l.stop();
            }
        })
        .unwrap();
    a.write_all(b"x").unwrap();
    loop_.run_forever().unwrap();
    // Not drained: called again and again.
    assert_eq!(calls.get(), 3);
    assert!(loop_.remove_reader(fd).unwrap());
    assert!(reader.cancelled());
    assert!(!loop_.remove_reader(fd).unwrap());
    loop_.close().unwrap();
}

#[test]
fn a_reader_that_drains_runs_once_per_arrival() {
    let loop_ = common::new_loop();
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let fd = b.as_raw_fd();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let b = Rc::new(RefCell::new(b));
    loop_
        .add_reader(fd, move || {
            let mut buf = [0u8; 64];
            while let Ok(n) = b.borrow_mut().read(&mut buf) {
                if n == 0 {
                    break;
                }
                g.borrow_mut().extend_from_slice(&buf[..n]);
            }
        })
        .unwrap();
    a.write_all(b"one").unwrap();
    wait_until(&loop_, &got, 3);
    a.write_all(b"two").unwrap();
    wait_until(&loop_, &got, 6);
    assert_eq!(&*got.borrow(), b"onetwo");
    assert!(loop_.remove_reader(fd).unwrap());
    loop_.close().unwrap();
}

/// Runs the loop until `got` holds `n` bytes (bounded: 20 s).
fn wait_until(loop_: &asyncio::EventLoop, got: &Rc<RefCell<Vec<u8>>>, n: usize) {
    let g = got.clone();
    loop_
        .run_until_complete(asyncio::wait_for(
            async move {
                while g.borrow().len() < n {
                    asyncio::sleep(0.001).await?;
                }
                Ok(())
            },
            20.0,
        ))
        .unwrap();
}

#[test]
fn a_writer_runs_while_the_descriptor_is_writable() {
    // test_events.test_writer_callback.
    let loop_ = common::new_loop();
    let (_a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = b.as_raw_fd();
    let events = log();
    let ev = events.clone();
    let l = loop_.clone();
    loop_
        .add_writer(fd, move || -> Result<()> {
            push(&ev, "writable");
            l.remove_writer(fd)?;
            l.stop();
            Ok(())
        })
        .unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(entries(&events), ["writable"]);
    assert!(!loop_.remove_writer(fd).unwrap());
    loop_.close().unwrap();
}

#[test]
fn a_second_reader_replaces_and_cancels_the_first() {
    let loop_ = common::new_loop();
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = b.as_raw_fd();
    let events = log();
    let ev = events.clone();
    let first = loop_.add_reader(fd, move || push(&ev, "first")).unwrap();
    let ev = events.clone();
    let l = loop_.clone();
    let second = loop_
        .add_reader(fd, move || {
            push(&ev, "second");
            l.stop();
        })
        .unwrap();
    assert!(first.cancelled() && !second.cancelled());
    // A writer on the same descriptor keeps the reader.
    let w = loop_.add_writer(fd, || ()).unwrap();
    assert!(loop_.remove_writer(fd).unwrap());
    assert!(w.cancelled());
    a.write_all(b"x").unwrap();
    loop_.run_forever().unwrap();
    assert_eq!(entries(&events), ["second"]);
    assert!(loop_.remove_reader(fd).unwrap());
    loop_.close().unwrap();
}

#[test]
fn a_failing_reader_is_reported_and_called_again() {
    let loop_ = common::new_loop();
    let seen = common::record_exceptions(&loop_);
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = b.as_raw_fd();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let l = loop_.clone();
    loop_
        .add_reader(fd, move || -> Result<()> {
            c.set(c.get() + 1);
            if c.get() == 2 {
                l.stop();
            }
            Err(asyncio::Error::value("bad"))
        })
        .unwrap();
    a.write_all(b"x").unwrap();
    loop_.run_forever().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].message.starts_with("Exception in callback "));
    assert!(seen[0].message.contains("<locals>.<closure>() at "));
    loop_.remove_reader(fd).unwrap();
    loop_.close().unwrap();
}

#[test]
fn readers_on_a_closed_loop_and_bad_descriptors() {
    // CPython: add_reader on a closed loop is "Event loop is closed";
    // remove_reader there returns False.
    let loop_ = common::new_loop();
    let err = loop_.add_reader(-1, || ()).unwrap_err();
    assert_eq!(err.python_name(), "OSError");
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    loop_.close().unwrap();
    let err = loop_.add_reader(0, || ()).unwrap_err();
    assert_eq!(err.message(), "Event loop is closed");
    assert!(!loop_.remove_reader(0).unwrap());
    assert!(!loop_.remove_writer(0).unwrap());
}

#[test]
fn a_transports_descriptor_is_refused_while_the_transport_is_open() {
    // test_selector_events: "File descriptor 5 is used by transport <...>".
    let loop_ = common::new_loop();
    loop_
        .run_until_complete(async {
            let loop_ = asyncio::get_running_loop()?;
            let (a, b) = std::os::unix::net::UnixStream::pair()?;
            let fd = a.as_raw_fd();
            let (t, _p) = loop_
                .create_unix_connection(|| NullProtocol)
                .sock(a)
                .await?;
            let err = loop_.add_reader(fd, || ()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::RuntimeError);
            assert!(
                err.message().starts_with(&format!(
                    "File descriptor {fd} is used by transport <_SelectorSocketTransport fd={fd}"
                )),
                "{}",
                err.message()
            );
            assert!(loop_.remove_writer(fd).is_err());
            t.close();
            // Closing: allowed again (as CPython's check of is_closing()).
            assert!(!loop_.remove_reader(fd)?);
            drop(b);
            Ok(())
        })
        .unwrap();
    loop_.close().unwrap();
}

struct NullProtocol;
impl asyncio::BaseProtocol for NullProtocol {}
impl asyncio::Protocol for NullProtocol {}

#[test]
fn a_reader_may_remove_itself_and_the_descriptor_may_close_after() {
    let loop_ = common::new_loop();
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = b.as_raw_fd();
    let l = loop_.clone();
    let b = RefCell::new(Some(b));
    loop_
        .add_reader(fd, move || -> Result<()> {
            assert!(l.remove_reader(fd)?);
            drop(b.borrow_mut().take()); // closed inside the callback
            l.stop();
            Ok(())
        })
        .unwrap();
    a.write_all(b"x").unwrap();
    loop_.run_forever().unwrap();
    loop_.close().unwrap();
}

// ----- sock_* -----

#[test]
fn sock_sendall_and_recv_on_a_socketpair() {
    // _basetest_sock_client_ops, on a connected pair.
    let (a, b) = nonblocking_pair();
    let got = run(async move {
        let loop_ = asyncio::get_running_loop()?;
        loop_.sock_sendall(&a, b"GET / HTTP/1.0\r\n\r\n").await?;
        let first = loop_.sock_recv(&b, 4).await?;
        let mut buf = [0u8; 64];
        let n = loop_.sock_recv_into(&b, &mut buf).await?;
        drop(a);
        let eof = loop_.sock_recv(&b, 10).await?;
        Ok((first, buf[..n].to_vec(), eof))
    });
    assert_eq!(got.0, b"GET ");
    assert_eq!(got.1, b"/ HTTP/1.0\r\n\r\n");
    assert!(got.2.is_empty());
}

#[test]
fn sock_recv_waits_for_data_and_a_cancelled_one_leaves_the_socket_usable() {
    // _basetest_sock_recv_racing.
    let (a, b) = nonblocking_pair();
    let (a, b) = (Rc::new(a), Rc::new(b));
    let got = run(async move {
        let loop_ = asyncio::get_running_loop()?;
        let (l, b2) = (loop_.clone(), b.clone());
        let pending = asyncio::create_task(async move { l.sock_recv(&b2, 1024).await })?;
        asyncio::sleep(0).await?;
        pending.cancel();
        assert!(pending.clone().await.unwrap_err().is_cancelled());
        let (l, a2) = (loop_.clone(), a.clone());
        asyncio::create_task(async move { l.sock_sendall(&a2, b"hello").await })?;
        let data = loop_.sock_recv(&b, 1024).await?;
        // Nothing left registered for the descriptor.
        assert!(!loop_.remove_reader(b.fileno())?);
        Ok(data)
    });
    assert_eq!(got, b"hello");
}

#[test]
fn two_concurrent_readers_the_later_one_gets_the_data() {
    // CPython: the second sock_recv's reader replaces the first's, whose
    // call waits until it is cancelled.
    let (a, b) = nonblocking_pair();
    let (a, b) = (Rc::new(a), Rc::new(b));
    run(async move {
        let loop_ = asyncio::get_running_loop()?;
        let (l, b1) = (loop_.clone(), b.clone());
        let first = asyncio::create_task(async move { l.sock_recv(&b1, 1024).await })?;
        asyncio::sleep(0).await?;
        let (l, b2) = (loop_.clone(), b.clone());
        let second = asyncio::create_task(async move { l.sock_recv(&b2, 1024).await })?;
        asyncio::sleep(0).await?;
        loop_.sock_sendall(&a, b"data").await?;
        assert_eq!(second.clone().await?, b"data");
        for _ in 0..5 {
            asyncio::sleep(0).await?;
        }
        assert!(!first.done());
        first.cancel();
        assert!(first.take().await.unwrap_err().is_cancelled());
        Ok(())
    });
}

#[test]
fn sock_sendall_waits_for_room_and_sends_everything() {
    // _basetest_huge_content: 1 MB through a small send buffer.
    let (a, b) = nonblocking_pair();
    a.set_send_buffer_size(4096).unwrap();
    let (a, b) = (Rc::new(a), Rc::new(b));
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let got = run(async move {
        let loop_ = asyncio::get_running_loop()?;
        let (l, a2) = (loop_.clone(), a.clone());
        let sender = asyncio::create_task(async move {
            l.sock_sendall(&a2, &payload).await?;
            a2.shutdown(std::net::Shutdown::Write)?;
            Ok(())
        })?;
        let mut got = Vec::new();
        loop {
            let chunk = loop_.sock_recv(&b, 65536).await?;
            if chunk.is_empty() {
                break;
            }
            got.extend_from_slice(&chunk);
        }
        sender.await?;
        Ok(got)
    });
    assert!(got == expected);
}

#[test]
fn sock_connect_and_sock_accept_over_tcp() {
    // test_sock_accept, test_sock_client_ops with a real listener.
    let listener = Socket::new(AF_INET, SOCK_STREAM, 0).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(10).unwrap();
    listener.setblocking(false).unwrap();
    let port = listener.getsockname().unwrap().port().unwrap();
    let (peer, accepted_addr, client_addr) = run(async move {
        let loop_ = asyncio::get_running_loop()?;
        let client = Rc::new(Socket::new(AF_INET, SOCK_STREAM, 0)?);
        client.setblocking(false)?;
        let (l, c) = (loop_.clone(), client.clone());
        let connect =
            asyncio::create_task(async move { l.sock_connect(&c, ("127.0.0.1", port)).await })?;
        let (conn, addr) = loop_.sock_accept(&listener).await?;
        connect.await?;
        // The accepted socket is non-blocking, as CPython sets it.
        assert_eq!(conn.gettimeout(), Some(0.0));
        loop_.sock_sendall(&conn, b"hi").await?;
        let got = loop_.sock_recv(&client, 10).await?;
        assert_eq!(got, b"hi");
        Ok((conn.getpeername()?, addr, client.getsockname()?))
    });
    assert_eq!(peer, accepted_addr);
    assert_eq!(accepted_addr, client_addr);
}

#[test]
fn sock_connect_failure_names_the_address() {
    // test_sock_client_fail: OSError "Connect call failed ('127.0.0.1', N)"
    // (ConnectionRefusedError on Linux).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = {
        let loop_ = common::new_loop();
        let err = loop_
            .run_until_complete(async move {
                let loop_ = asyncio::get_running_loop()?;
                let sock = Socket::new(AF_INET, SOCK_STREAM, 0)?;
                sock.setblocking(false)?;
                loop_.sock_connect(&sock, ("127.0.0.1", port)).await
            })
            .unwrap_err();
        loop_.close().unwrap();
        err
    };
    assert_eq!(err.python_name(), "ConnectionRefusedError");
    assert_eq!(
        err.to_string(),
        format!("[Errno 111] Connect call failed ('127.0.0.1', {port})")
    );
}

#[test]
fn sock_connect_resolves_host_names() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    run(async move {
        let loop_ = asyncio::get_running_loop()?;
        let sock = Socket::new(AF_INET, SOCK_STREAM, 0)?;
        sock.setblocking(false)?;
        loop_.sock_connect(&sock, ("localhost", port)).await?;
        assert_eq!(
            sock.getpeername()?,
            Address::Inet(([127, 0, 0, 1], port).into())
        );
        Ok(())
    });
}

#[test]
fn datagram_sock_sendto_and_recvfrom() {
    // test_recvfrom, test_recvfrom_into.
    let server = Socket::new(AF_INET, SOCK_DGRAM, 0).unwrap();
    server
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    server.setblocking(false).unwrap();
    let server_addr = server.getsockname().unwrap();
    run(async move {
        let loop_ = asyncio::get_running_loop()?;
        let client = Socket::new(AF_INET, SOCK_DGRAM, 0)?;
        client.setblocking(false)?;
        client.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )?;
        let sent = loop_
            .sock_sendto(&client, b"hello", server_addr.clone())
            .await?;
        assert_eq!(sent, 5);
        let (data, from) = loop_.sock_recvfrom(&server, 1024).await?;
        assert_eq!(data, b"hello");
        assert_eq!(from, client.getsockname()?);
        loop_.sock_sendto(&server, b"back again", from).await?;
        let mut buf = [0u8; 64];
        let (n, from) = loop_.sock_recvfrom_into(&client, &mut buf, 4).await?;
        // nbytes limits the read; the rest of the datagram is dropped.
        assert_eq!(&buf[..n], b"back");
        assert_eq!(from, server_addr);
        Ok(())
    });
}

#[test]
fn debug_mode_refuses_blocking_sockets() {
    // CPython: ValueError("the socket must be non-blocking").
    let loop_ = common::new_loop();
    loop_.set_debug(true);
    let (a, _b) = Socket::pair(AF_UNIX, SOCK_STREAM, 0).unwrap();
    assert_eq!(a.gettimeout(), None);
    let err = loop_
        .run_until_complete(async move {
            let loop_ = asyncio::get_running_loop()?;
            loop_.sock_recv(&a, 10).await
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "the socket must be non-blocking");
    loop_.close().unwrap();
}

#[test]
fn a_transports_socket_is_refused_by_the_sock_coroutines() {
    let loop_ = common::new_loop();
    loop_
        .run_until_complete(async {
            let loop_ = asyncio::get_running_loop()?;
            let (a, b) = std::os::unix::net::UnixStream::pair()?;
            let dup = Socket::from(a.try_clone()?);
            dup.setblocking(false)?;
            let (t, _p) = loop_
                .create_unix_connection(|| NullProtocol)
                .sock(a)
                .await?;
            // The duplicate is another descriptor: allowed. The transport's
            // own descriptor is refused.
            let own = t.get_extra_info("socket").unwrap();
            let fd = own.as_socket().unwrap().fileno();
            let err = loop_.add_writer(fd, || ()).unwrap_err();
            assert!(err
                .message()
                .starts_with(&format!("File descriptor {fd} is used by transport")));
            t.close();
            drop((b, dup));
            Ok(())
        })
        .unwrap();
    loop_.close().unwrap();
}

#[test]
fn socket_reprs_and_conversions() {
    // The protocol is the kernel's (SO_PROTOCOL: 6 for TCP), as CPython
    // shows for the sockets of its transports.
    let s = Socket::new(AF_INET, SOCK_STREAM, 0).unwrap();
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let port = s.getsockname().unwrap().port().unwrap();
    assert_eq!(
        format!("{s:?}"),
        format!(
            "<socket.socket fd={}, family=2, type=1, proto=6, laddr=('127.0.0.1', {port})>",
            s.fileno()
        )
    );
    assert_eq!((s.family(), s.type_()), (AF_INET, SOCK_STREAM));
    let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let from_std = Socket::from(std_sock);
    assert_eq!(from_std.type_(), SOCK_DGRAM);
    let fd: std::os::fd::OwnedFd = from_std.into();
    assert!(fd.as_raw_fd() >= 0);
}

/// The `sock_*` coroutines register a socket with the loop's reactor once
/// and keep it: the socket then works on another loop, and when given to a
/// transport (the registration goes with the conversion).
#[test]
fn a_socket_waited_on_moves_to_another_loop_and_into_a_transport() {
    let (a, b) = nonblocking_pair();
    let (a, b) = (Rc::new(a), Rc::new(b));
    for _ in 0..2 {
        // A fresh loop each time: the socket is registered again there.
        let (a, b) = (a.clone(), b.clone());
        let got = run(async move {
            let loop_ = asyncio::get_running_loop()?;
            let (l, b2) = (loop_.clone(), b.clone());
            let reader = asyncio::create_task(async move { l.sock_recv(&b2, 1024).await })?;
            asyncio::sleep(0).await?;
            loop_.sock_sendall(&a, b"again").await?;
            reader.take().await
        });
        assert_eq!(got, b"again");
    }
    // Into a transport: its own registration of the descriptor works.
    let Ok(b) = Rc::try_unwrap(b) else {
        panic!("one owner")
    };
    let got = run(async move {
        let loop_ = asyncio::get_running_loop()?;
        let received = asyncio::Future::<Vec<u8>>::new(&loop_);
        let r = received.clone();
        struct Once(asyncio::Future<Vec<u8>>);
        impl asyncio::BaseProtocol for Once {}
        impl asyncio::Protocol for Once {
            fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
                let _ = self.0.set_result(data.to_vec());
                Ok(())
            }
        }
        let (t, _) = loop_
            .create_connection(move || Once(r))
            .sock(std::os::fd::OwnedFd::from(b))
            .await?;
        loop_.sock_sendall(&a, b"to the transport").await?;
        let data = received.await?;
        t.close();
        Ok(data)
    });
    assert_eq!(got, b"to the transport");
}
