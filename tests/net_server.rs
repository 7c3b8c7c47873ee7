//! `create_server` and `asyncio.Server` on real loopback sockets: binding
//! (one host, all interfaces, several hosts), socket options, backlog,
//! start_serving, close / wait_closed / close_clients / abort_clients,
//! serve_forever, `async with` (`Server::run`), and argument errors.

mod net_common;

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, BorrowedFd};

use asyncio::{ErrorKind, Server, TransportSocket};
use net_common::*;
use socket2::SockRef;

fn family_and_addr(s: &TransportSocket) -> (i32, String) {
    let addr = s.getsockname().expect("bound");
    let ip = addr.as_inet().expect("inet").ip().to_string();
    (s.family(), ip)
}

fn opt(s: &TransportSocket, f: impl FnOnce(SockRef<'_>) -> std::io::Result<bool>) -> bool {
    s.with_fd(|fd| f(SockRef::from(&fd)))
        .expect("socket open")
        .expect("getsockopt")
}

/// `listen()` backlog of a listening TCP socket (Linux reports it in
/// `tcp_info.tcpi_sacked`).
fn listen_backlog(s: &TransportSocket) -> u32 {
    s.with_fd(|fd: BorrowedFd<'_>| {
        // SAFETY: zeroed tcp_info is a valid value; getsockopt fills it.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` and `len` are valid for writes; `fd` is open.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                &mut info as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt(TCP_INFO)");
        info.tcpi_sacked
    })
    .expect("socket open")
}

fn port_of(s: &TransportSocket) -> u16 {
    s.getsockname().and_then(|a| a.port()).expect("inet")
}

async fn echo_once(host: &str, port: u16, msg: &[u8]) -> asyncio::Result<Vec<u8>> {
    let loop_ = asyncio::get_running_loop()?;
    let log = Log::new(&loop_);
    let l = log.clone();
    let (t, _) = loop_
        .create_connection(move || Rec::new(&l))
        .host(host)
        .port(port)
        .await?;
    t.write(msg)?;
    let got = log.wait_data(msg.len()).await?;
    t.close();
    log.wait_lost().await?;
    Ok(got)
}

async fn refused(port: u16) -> asyncio::Result<asyncio::Error> {
    let loop_ = asyncio::get_running_loop()?;
    let l = loop_.clone();
    match loop_
        .create_connection(move || Rec::new(&Log::new(&l)))
        .host("127.0.0.1")
        .port(port)
        .await
    {
        Ok(_) => panic!("connected to port {port}"),
        Err(e) => Ok(e),
    }
}

async fn echo_server(
    configure: impl FnOnce(
        asyncio::base_events::CreateServer<Box<dyn Fn() -> Rec>>,
    ) -> asyncio::base_events::CreateServer<Box<dyn Fn() -> Rec>>,
) -> asyncio::Result<(Server, Accepted)> {
    let loop_ = asyncio::get_running_loop()?;
    let accepted = Accepted::new(&loop_);
    let acc = accepted.clone();
    let factory: Box<dyn Fn() -> Rec> = Box::new(move || Rec::echo(&acc.log()));
    let server = configure(loop_.create_server(factory)).await?;
    Ok((server, accepted))
}

// ===== binding =====

#[asyncio::test]
async fn create_server_on_127_0_0_1_port_0() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, accepted) = echo_server(|b| b.host("127.0.0.1").port(0)).await?;
    assert!(server.is_serving());
    assert!(server.get_loop().ptr_eq(&loop_));
    let socks = server.sockets();
    assert_eq!(socks.len(), 1);
    let s = &socks[0];
    assert_eq!(family_and_addr(s), (2, "127.0.0.1".to_owned()));
    assert_eq!((s.type_(), s.proto()), (1, 6));
    assert_ne!(port_of(s), 0);
    assert!(s.fileno() >= 0);
    assert_eq!(
        echo_once("127.0.0.1", port_of(s), b"hello").await?,
        b"hello"
    );
    assert_eq!(accepted.count(), 1);
    server.close();
    server.wait_closed().await?;
    Ok(())
}

#[asyncio::test]
async fn server_repr_matches_python() -> asyncio::Result<()> {
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0)).await?;
    let s = server.sockets()[0].clone();
    assert_eq!(
        format!("{server:?}"),
        format!(
            "<Server sockets=(<asyncio.TransportSocket fd={}, family=2, type=1, proto=6, laddr=('127.0.0.1', {})>,)>",
            s.fileno(),
            port_of(&s)
        )
    );
    server.close();
    assert_eq!(format!("{server:?}"), "<Server sockets=()>");
    Ok(())
}

fn assert_dual_stack(server: &Server) {
    let socks = server.sockets();
    let got: BTreeSet<(i32, String)> = socks.iter().map(family_and_addr).collect();
    let want: BTreeSet<(i32, String)> = [(2, "0.0.0.0".to_owned()), (10, "::".to_owned())].into();
    assert_eq!(got, want);
    assert_eq!(socks.len(), 2);
    for s in &socks {
        assert_ne!(port_of(s), 0);
        assert!(opt(s, |r| r.reuse_address()), "SO_REUSEADDR");
        if s.family() == 10 {
            assert!(opt(s, |r| r.only_v6()), "IPV6_V6ONLY on the IPv6 socket");
        }
    }
}

fn port_for(server: &Server, family: i32) -> u16 {
    let socks = server.sockets();
    port_of(socks.iter().find(|s| s.family() == family).expect("family"))
}

#[asyncio::test]
async fn host_none_binds_one_socket_per_family() -> asyncio::Result<()> {
    let (server, _) = echo_server(|b| b.port(0)).await?;
    assert_dual_stack(&server);
    assert_eq!(
        echo_once("127.0.0.1", port_for(&server, 2), b"v4").await?,
        b"v4"
    );
    assert_eq!(echo_once("::1", port_for(&server, 10), b"v6").await?, b"v6");
    server.close();
    server.wait_closed().await?;
    Ok(())
}

#[asyncio::test]
async fn empty_host_binds_one_socket_per_family() -> asyncio::Result<()> {
    let (server, _) = echo_server(|b| b.host("").port(0)).await?;
    assert_dual_stack(&server);
    assert_eq!(echo_once("::1", port_for(&server, 10), b"v6").await?, b"v6");
    server.close();
    server.wait_closed().await?;
    Ok(())
}

/// `family=` and `flags=` reach `getaddrinfo` (outcomes from CPython 3.13).
#[asyncio::test]
async fn family_and_flags_select_the_bound_addresses() -> asyncio::Result<()> {
    use asyncio::socket::{AF_INET, AF_INET6, AI_NUMERICHOST};
    let (server, _) = echo_server(|b| b.port(0).family(AF_INET6)).await?;
    let got: Vec<(i32, String)> = server.sockets().iter().map(family_and_addr).collect();
    assert_eq!(got, [(10, "::".to_owned())]);
    server.close();
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0).family(AF_INET)).await?;
    let got: Vec<(i32, String)> = server.sockets().iter().map(family_and_addr).collect();
    assert_eq!(got, [(2, "127.0.0.1".to_owned())]);
    server.close();
    for configure in [
        (|b: asyncio::base_events::CreateServer<Box<dyn Fn() -> Rec>>| {
            b.host("localhost").port(0).family(AF_INET6)
        }) as fn(_) -> _,
        |b| b.host("localhost").port(0).flags(AI_NUMERICHOST),
    ] {
        let err = echo_server(configure).await.failure();
        assert_eq!(err.python_name(), "gaierror");
        assert_eq!(err.to_string(), "[Errno -2] Name or service not known");
    }
    Ok(())
}

#[asyncio::test]
async fn a_list_of_hosts_binds_each_once() -> asyncio::Result<()> {
    let (server, _) = echo_server(|b| b.hosts(["127.0.0.1", "::1", "127.0.0.1"]).port(0)).await?;
    let got: BTreeSet<(i32, String)> = server.sockets().iter().map(family_and_addr).collect();
    let want: BTreeSet<(i32, String)> =
        [(2, "127.0.0.1".to_owned()), (10, "::1".to_owned())].into();
    assert_eq!(got, want);
    assert_eq!(server.sockets().len(), 2);
    assert_eq!(
        echo_once("127.0.0.1", port_for(&server, 2), b"a").await?,
        b"a"
    );
    assert_eq!(echo_once("::1", port_for(&server, 10), b"b").await?, b"b");
    server.close();
    server.wait_closed().await?;
    Ok(())
}

#[asyncio::test]
async fn socket_options_reuse_address_reuse_port_keep_alive() -> asyncio::Result<()> {
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0)).await?;
    let s = &server.sockets()[0];
    // reuse_address defaults to true on Unix.
    assert!(opt(s, |r| r.reuse_address()));
    assert!(!opt(s, |r| r.reuse_port()));
    assert!(!opt(s, |r| r.keepalive()));
    server.close();

    let (server, _) = echo_server(|b| {
        b.host("127.0.0.1")
            .port(0)
            .reuse_address(false)
            .reuse_port(true)
            .keep_alive(true)
    })
    .await?;
    let s = &server.sockets()[0];
    assert!(!opt(s, |r| r.reuse_address()));
    assert!(opt(s, |r| r.reuse_port()));
    assert!(opt(s, |r| r.keepalive()));
    server.close();
    Ok(())
}

#[asyncio::test]
async fn backlog_defaults_to_100_and_is_passed_to_listen() -> asyncio::Result<()> {
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0)).await?;
    assert_eq!(listen_backlog(&server.sockets()[0]), 100);
    server.close();
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0).backlog(7)).await?;
    assert_eq!(listen_backlog(&server.sockets()[0]), 7);
    server.close();
    Ok(())
}

#[asyncio::test]
async fn create_server_with_a_bound_sock() -> asyncio::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (server, _) = echo_server(move |b| b.sock(listener)).await?;
    assert_eq!(port_of(&server.sockets()[0]), port);
    assert_eq!(echo_once("127.0.0.1", port, b"sock").await?, b"sock");
    server.close();
    server.wait_closed().await?;
    Ok(())
}

// ===== start_serving =====

#[asyncio::test]
async fn start_serving_false_then_start_serving() -> asyncio::Result<()> {
    let (server, accepted) =
        echo_server(|b| b.host("127.0.0.1").port(0).start_serving(false)).await?;
    assert!(!server.is_serving());
    let port = server_port(&server);
    // Bound but not listening: connections are refused.
    let err = refused(port).await?;
    assert_eq!(err.python_name(), "ConnectionRefusedError");
    server.start_serving().await?;
    assert!(server.is_serving());
    // Idempotent.
    server.start_serving().await?;
    assert!(server.is_serving());
    assert_eq!(echo_once("127.0.0.1", port, b"now").await?, b"now");
    assert_eq!(accepted.count(), 1);
    server.close();
    assert!(!server.is_serving());
    server.wait_closed().await?;
    Ok(())
}

/// The same server through `&dyn AbstractServer` (code generic over
/// server kinds).
#[asyncio::test]
async fn the_abstract_server_interface_drives_a_server() -> asyncio::Result<()> {
    use asyncio::AbstractServer;
    let (server, accepted) =
        echo_server(|b| b.host("127.0.0.1").port(0).start_serving(false)).await?;
    let port = server_port(&server);
    let abstract_server: &dyn AbstractServer = &server;
    assert!(!abstract_server.is_serving());
    abstract_server.start_serving().await?;
    assert!(abstract_server.is_serving());
    assert!(abstract_server
        .get_loop()
        .ptr_eq(&asyncio::get_running_loop()?));
    let (client, client_log) = connect(port, Rec::new).await?;
    let server_log = accepted.next().await?;
    server_log.wait_made().await?;
    abstract_server.close_clients();
    client_log.wait_lost().await?;
    drop(client);
    let (_client, client_log) = connect(port, Rec::new).await?;
    accepted.next().await?.wait_made().await?;
    abstract_server.abort_clients();
    client_log.wait_lost().await?;
    // serve_forever ends (cancelled) when the server closes.
    let serving = {
        let server = server.clone();
        asyncio::create_task(async move {
            let s: &dyn AbstractServer = &server;
            s.serve_forever().await
        })?
    };
    asyncio::sleep(0).await?;
    abstract_server.close();
    assert!(!abstract_server.is_serving());
    assert!(serving.as_any().await.failure().is_cancelled());
    abstract_server.wait_closed().await?;
    Ok(())
}

// ===== close / wait_closed / close_clients / abort_clients =====

#[asyncio::test]
async fn close_stops_listening_and_leaves_connections_open() -> asyncio::Result<()> {
    let p = pair(Rec::echo, Rec::new).await?;
    let port = server_port(&p.server);
    p.server.close();
    assert!(!p.server.is_serving());
    assert!(p.server.sockets().is_empty());
    // Idempotent.
    p.server.close();
    // New connections are refused...
    let err = refused(port).await?;
    assert_eq!(err.raw_os_error(), Some(111));
    // ...the existing one still echoes.
    p.client.write(b"still here")?;
    assert_eq!(p.client_log.wait_data(10).await?, b"still here");
    assert!(!p.server_log.is_lost());
    p.client.close();
    p.server_log.wait_lost().await?;
    p.server.wait_closed().await?;
    Ok(())
}

#[asyncio::test]
async fn wait_closed_returns_after_close_and_the_last_connection() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let p = pair(Rec::echo, Rec::new).await?;
    let (second, second_log) = connect(server_port(&p.server), Rec::new).await?;
    let second_server = p.accepted.next().await?;
    let server = p.server.clone();
    let waiting = loop_.create_task(async move { server.wait_closed().await })?;
    iterations(5).await?;
    assert!(!waiting.done(), "returned before close()");
    p.server.close();
    iterations(5).await?;
    assert!(!waiting.done(), "returned with two connections open");
    p.client.close();
    p.server_log.wait_lost().await?;
    iterations(5).await?;
    assert!(!waiting.done(), "returned with one connection open");
    second.close();
    second_server.wait_lost().await?;
    second_log.wait_lost().await?;
    within(async move { waiting.await }).await?;
    // Once closed and empty, wait_closed returns at once.
    within({
        let s = p.server.clone();
        async move { s.wait_closed().await }
    })
    .await?;
    Ok(())
}

#[asyncio::test]
async fn wait_closed_without_connections_returns_after_close() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0)).await?;
    let s = server.clone();
    let waiting = loop_.create_task(async move { s.wait_closed().await })?;
    iterations(3).await?;
    assert!(!waiting.done());
    server.close();
    within(async move { waiting.await }).await?;
    Ok(())
}

#[asyncio::test]
async fn close_clients_closes_every_connection_and_flushes() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    let (second, second_log) = connect(server_port(&p.server), Rec::new).await?;
    let second_server = p.accepted.next().await?;
    let st = p.server_transport();
    set_sndbuf(&st, 16 * 1024);
    st.set_write_buffer_limits(Some(16 << 20), None)?;
    let data = pattern(2 << 20);
    st.write(&data)?;
    assert!(st.get_write_buffer_size() > 0, "data must be buffered");
    p.server.close();
    p.server.close_clients();
    assert!(st.is_closing());
    assert!(p.server_log.wait_lost().await?.is_none());
    assert!(second_server.wait_lost().await?.is_none());
    assert!(p.client_log.wait_lost().await?.is_none());
    assert!(second_log.wait_lost().await?.is_none());
    // close() flushed the buffered data first.
    assert!(p.client_log.data() == data);
    assert_eq!(p.client_log.summary(), ["made", "data", "eof", "lost"]);
    assert_eq!(second_log.summary(), ["made", "eof", "lost"]);
    assert!(second.is_closing());
    within({
        let s = p.server.clone();
        async move { s.wait_closed().await }
    })
    .await?;
    Ok(())
}

#[asyncio::test]
async fn abort_clients_aborts_every_connection_and_drops_buffers() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    let (_second, second_log) = connect(server_port(&p.server), Rec::new).await?;
    let second_server = p.accepted.next().await?;
    let st = p.server_transport();
    set_sndbuf(&st, 16 * 1024);
    st.set_write_buffer_limits(Some(16 << 20), None)?;
    let data = pattern(4 << 20);
    st.write(&data)?;
    let buffered = st.get_write_buffer_size();
    assert!(buffered > 0, "data must be buffered");
    p.server.abort_clients();
    assert_eq!(st.get_write_buffer_size(), 0);
    assert!(p.server_log.wait_lost().await?.is_none());
    assert!(second_server.wait_lost().await?.is_none());
    p.client_log.wait_lost().await?;
    second_log.wait_lost().await?;
    assert!(p.client_log.data_len() <= data.len() - buffered);
    // The server itself keeps listening.
    assert!(p.server.is_serving());
    assert_eq!(
        echo_once("127.0.0.1", server_port(&p.server), b"").await?,
        b""
    );
    p.server.close();
    Ok(())
}

// ===== serve_forever =====

#[asyncio::test]
async fn serve_forever_serves_until_cancelled_then_closes() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0).start_serving(false)).await?;
    let port = server_port(&server);
    let s = server.clone();
    let forever = loop_.create_task(async move { s.serve_forever().await })?;
    iterations(2).await?;
    assert!(server.is_serving(), "serve_forever starts serving");
    assert_eq!(echo_once("127.0.0.1", port, b"hi").await?, b"hi");

    let err = server.serve_forever().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    let text = err.to_string();
    assert!(
        text.starts_with("server <Server sockets=")
            && text.ends_with("> is already being awaited on serve_forever()"),
        "{text}"
    );
    assert!(!forever.done());

    forever.cancel();
    let outcome = within(async move {
        match forever.await {
            Err(e) if e.is_cancelled() => Ok(()),
            other => panic!("serve_forever ended with {other:?}"),
        }
    })
    .await;
    outcome?;
    assert!(!server.is_serving());
    assert!(server.sockets().is_empty());
    assert_eq!(refused(port).await?.raw_os_error(), Some(111));

    let err = server.serve_forever().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    assert!(err.to_string().ends_with("> is closed"), "{err}");
    Ok(())
}

#[asyncio::test]
async fn serve_forever_error_messages_match_python() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0)).await?;
    let sock = server.sockets()[0].clone();
    let s = server.clone();
    let forever = loop_.create_task(async move { s.serve_forever().await })?;
    iterations(2).await?;
    let err = server.serve_forever().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "server <Server sockets=(<asyncio.TransportSocket fd={}, family=2, type=1, proto=6, laddr=('127.0.0.1', {})>,)> is already being awaited on serve_forever()",
            sock.fileno(),
            port_of(&sock)
        )
    );
    forever.cancel();
    let _ = within(async move { forever.await }).await;
    let err = server.serve_forever().await.unwrap_err();
    assert_eq!(err.to_string(), "server <Server sockets=()> is closed");
    Ok(())
}

#[asyncio::test]
async fn server_close_ends_serve_forever() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0)).await?;
    let s = server.clone();
    let forever = loop_.create_task(async move { s.serve_forever().await })?;
    iterations(2).await?;
    server.close();
    // CPython's close() cancels the serve_forever future.
    let outcome = within(async move { forever.await }).await;
    assert!(outcome.is_err_and(|e| e.is_cancelled()));
    assert!(!server.is_serving());
    Ok(())
}

// ===== async with =====

#[asyncio::test]
async fn run_closes_the_server_and_waits_for_it() -> asyncio::Result<()> {
    let (server, accepted) = echo_server(|b| b.host("127.0.0.1").port(0)).await?;
    let port = server_port(&server);
    let got = server
        .run(async move {
            let got = echo_once("127.0.0.1", port, b"inside").await?;
            Ok(got)
        })
        .await?;
    assert_eq!(got, b"inside");
    assert!(!server.is_serving());
    assert!(server.sockets().is_empty());
    assert!(accepted.all().iter().all(Log::is_lost));
    // An error from the body is returned after closing.
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0)).await?;
    let err = server
        .run(async { Err::<(), _>(asyncio::Error::value("body failed")) })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "body failed");
    assert!(!server.is_serving());
    Ok(())
}

#[asyncio::test]
async fn run_waits_for_open_connections() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let p = pair(Rec::echo, Rec::new).await?;
    let server = p.server.clone();
    let running = loop_.create_task(async move { server.run(async { Ok(()) }).await })?;
    iterations(5).await?;
    assert!(!running.done(), "async with exited with a connection open");
    assert!(!p.server.is_serving());
    p.client.close();
    within(async move { running.await }).await?;
    Ok(())
}

// ===== errors =====

#[asyncio::test]
async fn create_server_argument_errors() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let l = loop_.clone();
    let make = move || Rec::new(&Log::new(&l));

    let err = loop_.create_server(make.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.to_string(), "Neither host/port nor sock were specified");

    let err = loop_
        .create_server(make.clone())
        .host("127.0.0.1")
        .port(0)
        .sock(std::net::TcpListener::bind("127.0.0.1:0")?)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(
        err.to_string(),
        "host/port and sock can not be specified at the same time"
    );

    let udp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let fd = udp.as_raw_fd();
    let err = loop_
        .create_server(make.clone())
        .sock(udp)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    let text = err.to_string();
    let prefix =
        format!("A Stream Socket was expected, got <socket.socket fd={fd}, family=2, type=2, ");
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.ends_with(", laddr=('0.0.0.0', 0)>"), "{text}");

    let err = loop_
        .create_server(make.clone())
        .host("127.0.0.1")
        .port(0)
        .ssl_handshake_timeout(1.0)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ssl_handshake_timeout is only meaningful with ssl"
    );
    let err = loop_
        .create_server(make)
        .host("127.0.0.1")
        .port(0)
        .ssl_shutdown_timeout(1.0)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ssl_shutdown_timeout is only meaningful with ssl"
    );
    Ok(())
}

#[asyncio::test]
async fn bind_error_names_the_address() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let l = loop_.clone();
    let err = loop_
        .create_server(move || Rec::new(&Log::new(&l)))
        .host("127.0.0.1")
        .port(port)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OSError);
    assert_eq!(err.raw_os_error(), Some(98));
    assert_eq!(
        err.to_string(),
        format!(
            "[Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): [errno 98] address already in use"
        )
    );
    Ok(())
}

#[asyncio::test]
async fn closed_server_sockets_report_fileno_minus_one() -> asyncio::Result<()> {
    let (server, _) = echo_server(|b| b.host("127.0.0.1").port(0)).await?;
    let s: Vec<TransportSocket> = server.sockets();
    assert!(s[0].fileno() >= 0);
    server.close();
    assert_eq!(s[0].fileno(), -1);
    Ok(())
}

#[asyncio::test]
async fn create_server_udp_sock_message_matches_python() -> asyncio::Result<()> {
    // Python: socket.socket(type=SOCK_DGRAM) has proto 0 and its repr says so.
    let loop_ = asyncio::get_running_loop()?;
    let l = loop_.clone();
    let udp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let fd = udp.as_raw_fd();
    let err = loop_
        .create_server(move || Rec::new(&Log::new(&l)))
        .sock(udp)
        .await
        .unwrap_err();
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
