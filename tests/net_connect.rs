//! `create_connection` (errors, `local_addr`, happy eyeballs, `sock=`) and
//! `connect_accepted_socket`, on real loopback sockets.

mod net_common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use asyncio::{ErrorKind, EventLoop};
use net_common::*;

/// A port bound on 127.0.0.1 but not listening: connecting is refused.
/// Keep the socket for as long as the port must stay reserved.
fn closed_port() -> (socket2::Socket, u16) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let port = sock
        .local_addr()
        .unwrap()
        .as_socket()
        .map(|a| a.port())
        .unwrap();
    (sock, port)
}

fn factory(loop_: &EventLoop) -> impl FnOnce() -> Rec + 'static {
    let l = loop_.clone();
    move || Rec::new(&Log::new(&l))
}

// ===== errors =====

#[asyncio::test]
async fn connection_refused_is_a_connection_refused_error() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (_reserved, port) = closed_port();
    let err = loop_
        .create_connection(factory(&loop_))
        .host("127.0.0.1")
        .port(port)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::OSError);
    assert_eq!(err.python_name(), "ConnectionRefusedError");
    assert_eq!(err.raw_os_error(), Some(111));
    assert_eq!(
        err.to_string(),
        format!("[Errno 111] Connect call failed ('127.0.0.1', {port})")
    );
    Ok(())
}

/// A broadcast or multicast address has no TCP route: the connect fails at
/// once, and CPython raises the plain `OSError` (no "Connect call failed").
#[asyncio::test]
async fn an_unreachable_network_is_an_os_error_with_its_errno() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    for host in ["255.255.255.255", "224.0.0.1"] {
        let err = loop_
            .create_connection(factory(&loop_))
            .host(host)
            .port(80)
            .await
            .failure();
        assert_eq!(err.kind(), ErrorKind::OSError, "{host}");
        assert_eq!(err.python_name(), "OSError", "{host}");
        assert_eq!(err.raw_os_error(), Some(101), "{host}");
        assert_eq!(
            err.to_string(),
            "[Errno 101] Network is unreachable",
            "{host}"
        );
    }
    Ok(())
}

#[asyncio::test]
async fn all_errors_raises_an_exception_group() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (_reserved, port) = closed_port();
    let err = loop_
        .create_connection(factory(&loop_))
        .host("127.0.0.1")
        .port(port)
        .all_errors(true)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::ExceptionGroup);
    assert_eq!(err.message(), "create_connection failed");
    assert_eq!(
        err.to_string(),
        "create_connection failed (1 sub-exception)"
    );
    let subs = err.exceptions();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].python_name(), "ConnectionRefusedError");
    assert_eq!(
        subs[0].to_string(),
        format!("[Errno 111] Connect call failed ('127.0.0.1', {port})")
    );
    Ok(())
}

#[asyncio::test]
async fn unknown_host_is_a_gaierror() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let err = loop_
        .create_connection(factory(&loop_))
        .host("nonexistent.invalid")
        .port(80)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::OSError);
    assert_eq!(err.python_name(), "gaierror");
    let errno = err.raw_os_error().expect("an EAI_* code");
    // EAI_NONAME, or EAI_AGAIN when no resolver answers.
    assert!(errno == -2 || errno == -3, "{errno}");
    if errno == -2 {
        assert_eq!(err.to_string(), "[Errno -2] Name or service not known");
    } else {
        assert_eq!(
            err.to_string(),
            "[Errno -3] Temporary failure in name resolution"
        );
    }
    Ok(())
}

#[asyncio::test]
async fn wait_for_on_a_connect_in_progress_is_a_timeout_error() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let hang = hanging_listener();
    let connecting = loop_
        .create_connection(factory(&loop_))
        .host("127.0.0.1")
        .port(hang.addr.port());
    let err = asyncio::wait_for(connecting, 0.2).await.failure();
    assert_eq!(err.kind(), ErrorKind::TimeoutError);
    // With all_errors too: the cancellation is not turned into a group.
    let connecting = loop_
        .create_connection(factory(&loop_))
        .host("127.0.0.1")
        .port(hang.addr.port())
        .all_errors(true);
    let err = asyncio::wait_for(connecting, 0.2).await.failure();
    assert_eq!(err.kind(), ErrorKind::TimeoutError);
    Ok(())
}

#[asyncio::test]
async fn builders_go_into_gather_and_shield_as_coroutines_do() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, port, _accepted) = serve_on_loopback(Rec::new).await?;
    let connect = || {
        loop_
            .create_connection(factory(&loop_))
            .host("127.0.0.1")
            .port(port)
    };
    let pairs = asyncio::gather([connect(), connect()]).await?;
    assert_eq!(pairs.len(), 2);
    let (transport, _) = asyncio::shield(connect())?.await?;
    for t in pairs.iter().map(|(t, _)| t).chain([&transport]) {
        assert_eq!(
            t.get_extra_info("peername").map(|p| p.to_string()),
            Some(format!("('127.0.0.1', {port})"))
        );
        t.close();
    }
    server.close();
    Ok(())
}

#[asyncio::test]
async fn cancelling_a_connect_in_progress_cancels_the_task() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let hang = hanging_listener();
    let connecting = loop_
        .create_connection(factory(&loop_))
        .host("127.0.0.1")
        .port(hang.addr.port());
    let task = asyncio::create_task(async move { connecting.await.map(|_| ()) })?;
    asyncio::sleep(0.05).await?;
    assert!(!task.done());
    task.cancel();
    let err = task.as_any().await.failure();
    assert!(err.is_cancelled(), "{err}");
    assert!(task.cancelled());
    Ok(())
}

/// `family=`, `proto=` and `flags=` reach `getaddrinfo` as in CPython
/// (outcomes from CPython 3.13 on the same inputs).
#[asyncio::test]
async fn family_proto_and_flags_select_addresses_as_cpython() -> asyncio::Result<()> {
    use asyncio::socket::{AF_INET, AF_INET6, AI_NUMERICHOST, IPPROTO_TCP, IPPROTO_UDP};
    let loop_ = asyncio::get_running_loop()?;
    let (server, port, _accepted) = serve_on_loopback(Rec::new).await?;
    /// (host, family, proto, flags) -> Ok(the socket's proto) or Err(message)
    type Case = (&'static str, i32, i32, i32, Result<i32, &'static str>);
    let cases: [Case; 7] = [
        (
            "127.0.0.1",
            AF_INET6,
            0,
            0,
            Err("[Errno -9] Address family for hostname not supported"),
        ),
        (
            "localhost",
            AF_INET6,
            0,
            0,
            Err("[Errno -2] Name or service not known"),
        ),
        (
            "localhost",
            0,
            0,
            AI_NUMERICHOST,
            Err("[Errno -2] Name or service not known"),
        ),
        ("127.0.0.1", 0, IPPROTO_UDP, 0, Ok(IPPROTO_TCP)),
        (
            "localhost",
            0,
            IPPROTO_UDP,
            0,
            Err("[Errno -7] ai_socktype not supported"),
        ),
        ("localhost", AF_INET, IPPROTO_TCP, 0, Ok(IPPROTO_TCP)),
        (
            "::1",
            AF_INET,
            0,
            0,
            Err("[Errno -9] Address family for hostname not supported"),
        ),
    ];
    for (host, family, proto, flags, expected) in cases {
        let outcome = loop_
            .create_connection(factory(&loop_))
            .host(host)
            .port(port)
            .family(family)
            .proto(proto)
            .flags(flags)
            .await;
        let case = format!("{host} family={family} proto={proto} flags={flags}");
        match (outcome, expected) {
            (Ok((transport, _)), Ok(want)) => {
                let info = transport.get_extra_info("socket");
                let sock = info.as_ref().and_then(|i| i.as_socket()).expect(&case);
                assert_eq!(sock.proto(), want, "{case}");
                transport.close();
            }
            (Err(e), Err(want)) => {
                assert_eq!(e.python_name(), "gaierror", "{case}");
                assert_eq!(e.to_string(), want, "{case}");
            }
            (Ok(_), Err(want)) => panic!("{case}: connected, expected {want}"),
            (Err(e), Ok(_)) => panic!("{case}: {e}"),
        }
    }
    server.close();
    Ok(())
}

#[asyncio::test]
async fn argument_errors() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;

    let err = loop_.create_connection(factory(&loop_)).await.failure();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(
        err.to_string(),
        "host and port was not specified and no sock specified"
    );

    let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    let err = loop_
        .create_connection(factory(&loop_))
        .host("127.0.0.1")
        .port(1)
        .sock(a)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(
        err.to_string(),
        "host/port and sock can not be specified at the same time"
    );

    let err = loop_
        .create_connection(factory(&loop_))
        .host("127.0.0.1")
        .port(1)
        .server_hostname("example.com")
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(
        err.to_string(),
        "server_hostname is only meaningful with ssl"
    );

    let err = loop_
        .create_connection(factory(&loop_))
        .host("127.0.0.1")
        .port(1)
        .ssl_handshake_timeout(1.0)
        .await
        .failure();
    assert_eq!(
        err.to_string(),
        "ssl_handshake_timeout is only meaningful with ssl"
    );

    let udp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let fd = udp.as_raw_fd();
    let err = loop_
        .create_connection(factory(&loop_))
        .sock(udp)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "A Stream Socket was expected, got <socket.socket fd={fd}, family=2, type=2, "
        )) && text.ends_with(", laddr=('0.0.0.0', 0)>"),
        "{text}"
    );
    Ok(())
}

#[asyncio::test]
async fn udp_sock_message_matches_python() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let udp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let fd = udp.as_raw_fd();
    let err = loop_
        .create_connection(factory(&loop_))
        .sock(udp)
        .await
        .failure();
    assert_eq!(
        err.to_string(),
        format!(
            // The message is CPython's. Only the socket's descriptor reaches
            // the loop, so `proto` is what the kernel reports for it (17, as
            // Python's `socket.socket(fileno=fd)` shows too), not the 0 a
            // Python socket object remembers from its constructor.
            "A Stream Socket was expected, got <socket.socket fd={fd}, family=2, type=2, proto=17, laddr=('0.0.0.0', 0)>"
        )
    );
    Ok(())
}

// ===== local_addr =====

#[asyncio::test]
async fn local_addr_binds_the_client_socket() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, port, accepted) = serve_on_loopback(Rec::echo).await?;
    let log = Log::new(&loop_);
    let l = log.clone();
    let (t, _) = loop_
        .create_connection(move || Rec::new(&l))
        .host("127.0.0.1")
        .port(port)
        .local_addr("127.0.0.2", 0)
        .await?;
    let sockname = t
        .get_extra_info("sockname")
        .and_then(|i| i.as_address().cloned())
        .expect("sockname");
    let sockname = sockname.as_inet().expect("inet");
    assert_eq!(sockname.ip().to_string(), "127.0.0.2");
    let server_log = accepted.next().await?;
    let peer = server_log
        .transport()
        .and_then(|t| t.get_extra_info("peername"))
        .and_then(|i| i.as_address().cloned())
        .expect("peername");
    assert_eq!(peer.as_inet(), Some(sockname));
    t.write(b"from 127.0.0.2")?;
    assert_eq!(log.wait_data(14).await?, b"from 127.0.0.2");
    t.close();
    server_log.wait_lost().await?;
    server.close();
    Ok(())
}

#[asyncio::test]
async fn local_addr_bind_error_names_the_address() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, port, _) = serve_on_loopback(Rec::echo).await?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let tp = taken.local_addr()?.port();
    let want = format!(
        "[Errno 98] error while attempting to bind on address ('127.0.0.1', {tp}): [errno 98] address already in use"
    );
    let err = loop_
        .create_connection(factory(&loop_))
        .host("127.0.0.1")
        .port(port)
        .local_addr("127.0.0.1", tp)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::OSError);
    assert_eq!(err.raw_os_error(), Some(98));
    assert_eq!(err.to_string(), want);

    let err = loop_
        .create_connection(factory(&loop_))
        .host("127.0.0.1")
        .port(port)
        .local_addr("127.0.0.1", tp)
        .all_errors(true)
        .await
        .failure();
    assert_eq!(
        err.to_string(),
        "create_connection failed (1 sub-exception)"
    );
    assert_eq!(err.exceptions().len(), 1);
    assert_eq!(err.exceptions()[0].to_string(), want);
    server.close();
    Ok(())
}

#[asyncio::test]
async fn local_addr_of_another_family_is_an_error() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let err = loop_
        .create_connection(factory(&loop_))
        .host("::1")
        .port(1)
        .local_addr("127.0.0.1", 0)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::OSError);
    assert_eq!(
        err.to_string(),
        "no matching local address with family=<AddressFamily.AF_INET6: 10> found"
    );
    Ok(())
}

// ===== happy eyeballs =====

#[asyncio::test]
async fn happy_eyeballs_delay_connects_to_localhost() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    // A dual-stack server: whichever addresses "localhost" has, one listens.
    let accepted = Accepted::new(&loop_);
    let acc = accepted.clone();
    let server = loop_
        .create_server(move || Rec::echo(&acc.log()))
        .hosts(["127.0.0.1", "::1"])
        .port(0)
        .await?;
    let socks = server.sockets();
    // Both families on the same port, so that every address of localhost
    // is a candidate (bind ::1 on the IPv4 socket's port).
    let port = socks
        .iter()
        .find(|s| s.family() == 2)
        .and_then(|s| s.getsockname())
        .and_then(|a| a.port())
        .expect("ipv4 socket");
    server.close();
    let server = loop_
        .create_server({
            let acc = accepted.clone();
            move || Rec::echo(&acc.log())
        })
        .hosts(["127.0.0.1", "::1"])
        .port(port)
        .await?;
    for (delay, interleave) in [(0.25, None), (0.0, Some(2)), (10.0, None)] {
        let log = Log::new(&loop_);
        let l = log.clone();
        let mut b = loop_
            .create_connection(move || Rec::new(&l))
            .host("localhost")
            .port(port)
            .happy_eyeballs_delay(delay);
        if let Some(n) = interleave {
            b = b.interleave(n);
        }
        let (t, _) = b.await?;
        t.write(b"eyeballs")?;
        assert_eq!(log.wait_data(8).await?, b"eyeballs");
        t.close();
        log.wait_lost().await?;
    }
    assert_eq!(accepted.count(), 3);
    server.close();
    server.wait_closed().await?;
    Ok(())
}

#[asyncio::test]
async fn happy_eyeballs_with_only_ipv4_listening() -> asyncio::Result<()> {
    // Only IPv4 listens; where "localhost" also gives ::1, that one is refused
    // and the IPv4 attempt wins.
    let loop_ = asyncio::get_running_loop()?;
    let (server, port, accepted) = serve_on_loopback(Rec::echo).await?;
    let log = Log::new(&loop_);
    let l = log.clone();
    let (t, _) = loop_
        .create_connection(move || Rec::new(&l))
        .host("localhost")
        .port(port)
        .happy_eyeballs_delay(0.05)
        .await?;
    let peer = t
        .get_extra_info("peername")
        .and_then(|i| i.as_address().cloned())
        .expect("peername");
    assert_eq!(format!("{peer:?}"), format!("('127.0.0.1', {port})"));
    t.close();
    accepted.next().await?.wait_lost().await?;
    server.close();
    Ok(())
}

// ===== existing sockets =====

#[asyncio::test]
async fn create_connection_with_a_unix_socketpair_end() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair()?;
    theirs.set_read_timeout(Some(Duration::from_secs(20)))?;
    let log = Log::new(&loop_);
    let l = log.clone();
    let (t, _) = loop_
        .create_connection(move || Rec::new(&l))
        .sock(ours)
        .await?;
    assert_eq!(log.summary(), ["made"]);
    let info = t.get_extra_info("socket").expect("socket");
    assert_eq!(info.as_socket().map(|s| s.family()), Some(1));
    theirs.write_all(b"abc")?;
    assert_eq!(log.wait_data(3).await?, b"abc");
    t.write(b"xyz")?;
    let mut buf = [0u8; 3];
    theirs.read_exact(&mut buf)?;
    assert_eq!(&buf, b"xyz");
    drop(theirs);
    assert!(log.wait_lost().await?.is_none());
    assert_eq!(log.summary(), ["made", "data", "eof", "lost"]);
    Ok(())
}

#[asyncio::test]
async fn create_connection_with_a_connected_tcp_stream() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, port, accepted) = serve_on_loopback(Rec::echo).await?;
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let local = stream.local_addr()?;
    let log = Log::new(&loop_);
    let l = log.clone();
    let (t, _) = loop_
        .create_connection(move || Rec::new(&l))
        .sock(stream)
        .await?;
    let sockname = t
        .get_extra_info("sockname")
        .and_then(|i| i.as_address().cloned());
    assert_eq!(sockname.and_then(|a| a.as_inet()), Some(local));
    t.write(b"over sock")?;
    assert_eq!(log.wait_data(9).await?, b"over sock");
    t.close();
    accepted.next().await?.wait_lost().await?;
    server.close();
    Ok(())
}

#[asyncio::test]
async fn connect_accepted_socket_wraps_an_accepted_stream() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port))?;
    client.set_read_timeout(Some(Duration::from_secs(20)))?;
    let (accepted, peer) = listener.accept()?;
    let log = Log::new(&loop_);
    let l = log.clone();
    let (t, proto) = loop_
        .connect_accepted_socket(move || Rec::echo(&l), accepted)
        .await?;
    assert_eq!(log.summary(), ["made"]);
    assert!(proto.transport.borrow().is_some());
    let peername = t
        .get_extra_info("peername")
        .and_then(|i| i.as_address().cloned());
    assert_eq!(peername.and_then(|a| a.as_inet()), Some(peer));
    client.write_all(b"ping")?;
    assert_eq!(log.wait_data(4).await?, b"ping");
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf)?;
    assert_eq!(&buf, b"ping");
    client.shutdown(std::net::Shutdown::Write)?;
    assert!(log.wait_lost().await?.is_none());
    assert_eq!(log.summary(), ["made", "data", "eof", "lost"]);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest)?;
    assert!(rest.is_empty());
    Ok(())
}

#[asyncio::test]
async fn connect_accepted_socket_rejects_a_datagram_socket() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let udp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let err = loop_
        .connect_accepted_socket(factory(&loop_), udp)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert!(
        err.to_string()
            .starts_with("A Stream Socket was expected, got <socket.socket fd="),
        "{err}"
    );
    Ok(())
}
