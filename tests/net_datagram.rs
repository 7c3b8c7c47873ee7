//! Datagram endpoints on real sockets: CPython's `test_events.py`
//! (`test_create_datagram_endpoint*`), the datagram cases of
//! `test_base_events.py` (`BaseEventLoopWithSelectorTests
//! .test_create_datagram_endpoint_*`, run here against real sockets, not
//! mocks) and `test_selector_events.py`'s `SelectorDatagramTransportTests`
//! (reading, sending, buffering, errors, closing).

mod common;

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use asyncio::socket::{Socket, AF_INET, AF_UNIX, SOCK_DGRAM, SOCK_STREAM};
use asyncio::{
    Address, BaseProtocol, DatagramProtocol, DatagramTransport, Error, ErrorKind, EventLoop,
    ExtraInfo, Result,
};
use common::{capture_logs, in_child, open_fds, record_exceptions, repr};

/// The bound on every wait: far above what loopback needs.
const LIMIT: f64 = 20.0;

/// What a datagram protocol saw.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Made,
    Datagram(Vec<u8>, Address),
    Error(&'static str, Option<i32>),
    Lost(Option<String>),
    Pause(usize),
    Resume(usize),
}

/// Records every callback; optionally echoes, or fails on a datagram.
#[derive(Default)]
struct Rec {
    transport: RefCell<Option<Rc<dyn DatagramTransport>>>,
    events: RefCell<Vec<Ev>>,
    echo: bool,
    fail_on: Option<&'static [u8]>,
}

impl Rec {
    fn echo() -> Rec {
        Rec {
            echo: true,
            ..Rec::default()
        }
    }

    fn events(&self) -> Vec<Ev> {
        self.events.borrow().clone()
    }

    fn datagrams(&self) -> Vec<Vec<u8>> {
        self.events
            .borrow()
            .iter()
            .filter_map(|e| match e {
                Ev::Datagram(d, _) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    fn errors(&self) -> Vec<Ev> {
        self.events
            .borrow()
            .iter()
            .filter(|e| matches!(e, Ev::Error(..)))
            .cloned()
            .collect()
    }

    fn lost(&self) -> Option<Option<String>> {
        self.events.borrow().iter().find_map(|e| match e {
            Ev::Lost(x) => Some(x.clone()),
            _ => None,
        })
    }

    fn transport(&self) -> Rc<dyn DatagramTransport> {
        self.transport.borrow().clone().expect("connection_made")
    }
}

impl BaseProtocol for Rec {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        self.events
            .borrow_mut()
            .push(Ev::Lost(exc.map(|e| format!("{}: {e}", e.python_name()))));
        self.transport.borrow_mut().take();
        Ok(())
    }

    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        let size = self.transport().get_write_buffer_size();
        self.events.borrow_mut().push(Ev::Pause(size));
        Ok(())
    }

    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        let size = self.transport().get_write_buffer_size();
        self.events.borrow_mut().push(Ev::Resume(size));
        Ok(())
    }
}

impl DatagramProtocol for Rec {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn DatagramTransport>) -> Result<()> {
        *self.transport.borrow_mut() = Some(transport);
        self.events.borrow_mut().push(Ev::Made);
        Ok(())
    }

    fn datagram_received(self: &Rc<Self>, data: &[u8], addr: Address) -> Result<()> {
        self.events
            .borrow_mut()
            .push(Ev::Datagram(data.to_vec(), addr.clone()));
        if self.fail_on == Some(data) {
            return Err(Error::value("bad datagram"));
        }
        if self.echo {
            let mut reply = b"resp:".to_vec();
            reply.extend_from_slice(data);
            self.transport().sendto(&reply, Some(addr))?;
        }
        Ok(())
    }

    fn error_received(self: &Rc<Self>, exc: Error) -> Result<()> {
        self.events
            .borrow_mut()
            .push(Ev::Error(exc.python_name(), exc.raw_os_error()));
        Ok(())
    }
}

/// Waits (a loop iteration at a time, bounded) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let deadline = loop_.time() + LIMIT;
    while !cond() {
        if loop_.time() > deadline {
            panic!("timed out waiting until {what}");
        }
        asyncio::sleep(0.001).await?;
    }
    Ok(())
}

fn sockname(t: &Rc<dyn DatagramTransport>) -> Address {
    match t.get_extra_info("sockname") {
        Some(ExtraInfo::Address(a)) => a,
        other => panic!("sockname: {other:?}"),
    }
}

fn fd_of(t: &Rc<dyn DatagramTransport>) -> i32 {
    match t.get_extra_info("socket") {
        Some(ExtraInfo::Socket(s)) => s.fileno(),
        other => panic!("socket: {other:?}"),
    }
}

// ----- test_events.py -----

/// `test_create_datagram_endpoint`: an echo server and a connected client.
#[asyncio::test]
async fn echo_server_and_connected_client() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, sp) = loop_
        .create_datagram_endpoint(Rec::echo)
        .local_addr(("127.0.0.1", 0))
        .await?;
    let addr = sockname(&server);
    assert_eq!(server.get_extra_info("peername").map(|_| ()), None);
    let (client, cp) = loop_
        .create_datagram_endpoint(Rec::default)
        .remote_addr(addr.clone())
        .await?;
    assert_eq!(cp.events(), vec![Ev::Made]);
    match client.get_extra_info("peername") {
        Some(ExtraInfo::Address(a)) => assert_eq!(a, addr),
        other => panic!("peername: {other:?}"),
    }
    client.sendto(b"xxx", None)?;
    until("the echo", || !cp.datagrams().is_empty()).await?;
    assert_eq!(sp.datagrams(), vec![b"xxx".to_vec()]);
    assert_eq!(cp.datagrams(), vec![b"resp:xxx".to_vec()]);
    // The reply came from the server's address.
    assert!(matches!(&cp.events()[1], Ev::Datagram(_, from) if *from == addr));
    // The peer given explicitly is fine too.
    client.sendto(b"yyy", Some(addr.clone()))?;
    until("the second echo", || cp.datagrams().len() == 2).await?;
    assert_eq!(cp.datagrams()[1], b"resp:yyy");

    let fd = fd_of(&client);
    assert_eq!(
        repr(&client),
        format!("<_SelectorDatagramTransport fd={fd} read=polling write=<idle, bufsize=0>>")
    );
    client.close();
    assert!(client.is_closing());
    assert_eq!(
        repr(&client),
        format!("<_SelectorDatagramTransport closing fd={fd} read=idle write=<idle, bufsize=0>>")
    );
    until("connection_lost", || cp.lost().is_some()).await?;
    assert_eq!(cp.lost(), Some(None));
    assert_eq!(
        repr(&client),
        format!("<_SelectorDatagramTransport closed fd={fd}>")
    );
    // The socket extra info outlives the socket, as `fd=-1`.
    assert_eq!(fd_of(&client), -1);
    server.close();
    until("the server's connection_lost", || sp.lost().is_some()).await?;
    Ok(())
}

/// `test_create_datagram_endpoint_sock`: an existing socket.
#[asyncio::test]
async fn an_existing_socket() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = std_sock.local_addr().unwrap().port();
    let fd = std_sock.as_raw_fd();
    let (t, p) = loop_
        .create_datagram_endpoint(Rec::default)
        .sock(std_sock)
        .await?;
    assert_eq!(fd_of(&t), fd);
    assert_eq!(sockname(&t).port(), Some(port));
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(b"hello", ("127.0.0.1", port)).unwrap();
    until("the datagram", || !p.datagrams().is_empty()).await?;
    assert_eq!(
        p.events()[1],
        Ev::Datagram(b"hello".to_vec(), Address::Inet(peer.local_addr().unwrap()))
    );
    // An unconnected endpoint sends where it is told.
    t.sendto(b"back", Some(Address::Inet(peer.local_addr().unwrap())))?;
    let mut buf = [0u8; 16];
    peer.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"back");
    t.close();
    until("connection_lost", || p.lost().is_some()).await?;
    Ok(())
}

/// `test_create_datagram_endpoint_ipv6`.
#[asyncio::test]
async fn ipv6_endpoints() -> Result<()> {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        return Ok(()); // no IPv6 loopback here
    }
    let loop_ = asyncio::get_running_loop()?;
    let (server, sp) = loop_
        .create_datagram_endpoint(Rec::echo)
        .local_addr(("::1", 0))
        .await?;
    let addr = sockname(&server);
    assert!(repr(&addr).starts_with("('::1', "), "{addr:?}");
    let (client, cp) = loop_
        .create_datagram_endpoint(Rec::default)
        .remote_addr(addr)
        .await?;
    client.sendto(b"six", None)?;
    until("the echo", || !cp.datagrams().is_empty()).await?;
    assert_eq!(sp.datagrams(), vec![b"six".to_vec()]);
    client.close();
    server.close();
    until("both lost", || cp.lost().is_some() && sp.lost().is_some()).await?;
    Ok(())
}

/// An empty datagram is a datagram (not an end of file).
#[asyncio::test]
async fn empty_datagrams_are_delivered() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (server, sp) = loop_
        .create_datagram_endpoint(Rec::echo)
        .local_addr(("127.0.0.1", 0))
        .await?;
    let (client, cp) = loop_
        .create_datagram_endpoint(Rec::default)
        .remote_addr(sockname(&server))
        .await?;
    client.sendto(b"", None)?;
    until("the echo", || !cp.datagrams().is_empty()).await?;
    assert_eq!(sp.datagrams(), vec![Vec::<u8>::new()]);
    assert_eq!(cp.datagrams(), vec![b"resp:".to_vec()]);
    client.close();
    server.close();
    Ok(())
}

/// Unix datagram endpoints (`family=AF_UNIX`): a stale socket file at the
/// local path is removed first, as CPython does.
#[asyncio::test]
async fn unix_datagram_endpoints() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let dir = tempdir();
    let server_path = dir.join("server.sock");
    let client_path = dir.join("client.sock");
    // A stale socket file from an earlier run.
    drop(std::os::unix::net::UnixDatagram::bind(&server_path).unwrap());
    assert!(server_path.exists());
    let (server, sp) = loop_
        .create_datagram_endpoint(Rec::echo)
        .family(AF_UNIX)
        .local_addr(server_path.clone())
        .await?;
    assert_eq!(sockname(&server), Address::Unix(server_path.clone()));
    let (client, cp) = loop_
        .create_datagram_endpoint(Rec::default)
        .family(AF_UNIX)
        .local_addr(client_path.clone())
        .remote_addr(server_path.clone())
        .await?;
    client.sendto(b"unix", None)?;
    until("the echo", || !cp.datagrams().is_empty()).await?;
    assert_eq!(
        sp.events()[1],
        Ev::Datagram(b"unix".to_vec(), Address::Unix(client_path.clone()))
    );
    assert_eq!(cp.datagrams(), vec![b"resp:unix".to_vec()]);
    client.close();
    server.close();
    until("both lost", || cp.lost().is_some() && sp.lost().is_some()).await?;
    std::fs::remove_dir_all(&dir).unwrap();
    Ok(())
}

fn tempdir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("asyncio-dgram-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ----- test_base_events.py: argument errors -----

async fn refused<F>(build: F) -> Error
where
    F: FnOnce(&EventLoop) -> asyncio::base_events::CreateDatagramEndpoint<fn() -> Rec>,
{
    let loop_ = asyncio::get_running_loop().unwrap();
    match build(&loop_).await {
        Ok(_) => panic!("the endpoint was made"),
        Err(e) => e,
    }
}

fn rec() -> Rec {
    Rec::default()
}

#[asyncio::test]
async fn argument_errors_have_cpythons_messages() -> Result<()> {
    // test_create_datagram_endpoint_noaddr_nofamily
    let e = refused(|l| l.create_datagram_endpoint(rec as fn() -> Rec)).await;
    assert_eq!(e.kind(), ErrorKind::ValueError);
    assert_eq!(e.to_string(), "unexpected address family");

    // test_create_datagram_endpoint_wrong_sock
    let stream = Socket::new(AF_INET, SOCK_STREAM, 0)?;
    let fd = stream.fileno();
    let e = refused(|l| l.create_datagram_endpoint(rec as fn() -> Rec).sock(stream)).await;
    assert_eq!(e.kind(), ErrorKind::ValueError);
    assert_eq!(
        e.to_string(),
        format!(
            "A datagram socket was expected, got <socket.socket fd={fd}, family=2, type=1, proto=6, laddr=('0.0.0.0', 0)>"
        )
    );

    // test_create_datagram_endpoint_sockopts: modifiers with sock=
    let dgram = Socket::new(AF_INET, SOCK_DGRAM, 0)?;
    let e = refused(|l| {
        l.create_datagram_endpoint(rec as fn() -> Rec)
            .sock(dgram)
            .local_addr(("127.0.0.1", 0))
            .reuse_port(true)
    })
    .await;
    assert_eq!(
        e.to_string(),
        "socket modifier keyword arguments can not be used when sock is specified. \
         (local_addr=('127.0.0.1', 0), reuse_port=True)"
    );
    let dgram = Socket::new(AF_INET, SOCK_DGRAM, 0)?;
    let e = refused(|l| {
        l.create_datagram_endpoint(rec as fn() -> Rec)
            .sock(dgram)
            .family(AF_INET)
            .allow_broadcast(true)
    })
    .await;
    assert_eq!(
        e.to_string(),
        "socket modifier keyword arguments can not be used when sock is specified. \
         (family=2, allow_broadcast=True)"
    );

    // An AF_UNIX endpoint takes paths only; an internet one, (host, port).
    let e = refused(|l| {
        l.create_datagram_endpoint(rec as fn() -> Rec)
            .family(AF_UNIX)
            .local_addr(("127.0.0.1", 0))
    })
    .await;
    assert_eq!(
        (e.kind(), e.to_string()),
        (ErrorKind::TypeError, "string is expected".to_owned())
    );
    let e = refused(|l| {
        l.create_datagram_endpoint(rec as fn() -> Rec)
            .local_addr(std::path::PathBuf::from("/tmp/x.sock"))
    })
    .await;
    assert_eq!(
        (e.kind(), e.to_string()),
        (ErrorKind::TypeError, "2-tuple is expected".to_owned())
    );

    // test_create_datagram_endpoint_no_matching_family
    let e = refused(|l| {
        l.create_datagram_endpoint(rec as fn() -> Rec)
            .local_addr(("::1", 0))
            .remote_addr(("127.0.0.1", 9))
    })
    .await;
    assert_eq!(
        (e.kind(), e.to_string()),
        (
            ErrorKind::ValueError,
            "can not get address information".to_owned()
        )
    );

    // test_create_datagram_endpoint_cant_bind: the address is taken.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = refused(|l| {
        l.create_datagram_endpoint(rec as fn() -> Rec)
            .local_addr(("127.0.0.1", port))
    })
    .await;
    assert_eq!(e.kind(), ErrorKind::OSError);
    assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
    Ok(())
}

/// `test_create_datagram_endpoint_reuse_port` and `_allow_broadcast`:
/// the options reach the socket.
#[asyncio::test]
async fn reuse_port_and_allow_broadcast_set_their_options() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (a, _) = loop_
        .create_datagram_endpoint(rec)
        .local_addr(("127.0.0.1", 0))
        .reuse_port(true)
        .await?;
    let port = sockname(&a).port().unwrap();
    // A second socket on the same port: allowed by SO_REUSEPORT on both.
    let (b, _) = loop_
        .create_datagram_endpoint(rec)
        .local_addr(("127.0.0.1", port))
        .reuse_port(true)
        .await?;
    let fd = fd_of(&b);
    let borrowed = unsafe_borrowed(fd);
    let sock = socket2::SockRef::from(&borrowed);
    assert!(sock.reuse_port().unwrap());
    assert!(!sock.broadcast().unwrap());

    // allow_broadcast: SO_BROADCAST, and the remote address is not
    // connected to (sends go to it by address).
    let (c, cp) = loop_
        .create_datagram_endpoint(Rec::default)
        .remote_addr(("127.0.0.1", port))
        .allow_broadcast(true)
        .await?;
    let fd = fd_of(&c);
    let borrowed = unsafe_borrowed(fd);
    let sock = socket2::SockRef::from(&borrowed);
    assert!(sock.broadcast().unwrap());
    assert!(c.get_extra_info("peername").is_none());
    let e = c
        .sendto(b"x", Some(Address::Inet("127.0.0.1:1".parse().unwrap())))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("Invalid address: must be None or ('127.0.0.1', {port})")
    );
    c.sendto(b"to the remote", None)?;
    assert!(cp.errors().is_empty());
    for t in [a, b, c] {
        t.close();
    }
    Ok(())
}

fn unsafe_borrowed(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the transport keeps `fd` open for the rest of the test.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

// ----- test_selector_events.py: SelectorDatagramTransportTests -----

/// `test_sendto_connected_addr`: a connected endpoint takes only its peer.
#[asyncio::test]
async fn a_connected_endpoint_refuses_other_addresses() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (t, _) = loop_
        .create_datagram_endpoint(rec)
        .remote_addr(("127.0.0.1", 9))
        .await?;
    let e = t
        .sendto(b"x", Some(Address::Inet("127.0.0.1:10".parse().unwrap())))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ValueError);
    assert_eq!(
        e.to_string(),
        "Invalid address: must be None or ('127.0.0.1', 9)"
    );
    t.close();
    Ok(())
}

/// `test_sendto_error_received_connected` and `test_read_ready_oserr`:
/// the ICMP "port unreachable" for a send comes back as
/// `error_received(ConnectionRefusedError)`, and the endpoint stays open.
#[asyncio::test]
async fn refused_sends_reach_error_received() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let closed_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let (t, p) = loop_
        .create_datagram_endpoint(Rec::default)
        .remote_addr(("127.0.0.1", closed_port))
        .await?;
    t.sendto(b"anyone?", None)?;
    until("error_received", || !p.errors().is_empty()).await?;
    assert_eq!(
        p.errors()[0],
        Ev::Error("ConnectionRefusedError", Some(libc::ECONNREFUSED))
    );
    assert!(!t.is_closing());
    assert_eq!(p.lost(), None);
    t.close();
    until("connection_lost", || p.lost().is_some()).await?;
    assert_eq!(p.lost(), Some(None));
    Ok(())
}

/// A `datagram_received` that fails is logged as its callback's error (the
/// reader's `Handle` in CPython) and the endpoint goes on.
#[asyncio::test]
async fn a_failing_datagram_received_is_reported_and_reading_goes_on() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let seen = record_exceptions(&loop_);
    let (server, sp) = loop_
        .create_datagram_endpoint(|| Rec {
            fail_on: Some(b"boom"),
            ..Rec::default()
        })
        .local_addr(("127.0.0.1", 0))
        .await?;
    let (client, _) = loop_
        .create_datagram_endpoint(rec)
        .remote_addr(sockname(&server))
        .await?;
    client.sendto(b"boom", None)?;
    client.sendto(b"after", None)?;
    until("both datagrams", || sp.datagrams().len() == 2).await?;
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].message,
        "Exception in callback _SelectorDatagramTransport._read_ready()"
    );
    assert_eq!(
        seen[0].exception,
        Some((ErrorKind::ValueError, "bad datagram".to_owned()))
    );
    assert!(!server.is_closing());
    server.close();
    client.close();
    Ok(())
}

/// `test_sendto_closing` (connected) and, on an unconnected endpoint too:
/// sends after the endpoint is lost are dropped, warning from the fifth on.
#[test]
fn sends_after_close_are_dropped_with_warnings() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let ((), logs) = capture_logs(|| {
        loop_
            .run_until_complete(async {
                let loop_ = asyncio::get_running_loop()?;
                for remote in [true, false] {
                    let builder = loop_.create_datagram_endpoint(Rec::default);
                    let builder = if remote {
                        builder.remote_addr(("127.0.0.1", 9))
                    } else {
                        builder.local_addr(("127.0.0.1", 0))
                    };
                    let (t, p) = builder.await?;
                    t.abort();
                    for _ in 0..7 {
                        t.sendto(b"x", Some(Address::Inet("127.0.0.1:9".parse().unwrap())))?;
                    }
                    until("connection_lost", || p.lost().is_some()).await?;
                    assert_eq!(p.lost(), Some(None));
                }
                Ok(())
            })
            .unwrap();
    });
    loop_.close().unwrap();
    let warnings: Vec<_> = logs
        .iter()
        .filter(|r| r.message == "socket.send() raised exception.")
        .collect();
    // conn_lost goes 1 → 8: the sends at 5, 6 and 7 warn, per endpoint.
    assert_eq!(warnings.len(), 6, "{logs:?}");
}

/// `test_sendto_exception` / `test_fatal_error_connected_custom_error`: a
/// send that is not an `OSError` (here: no address on an unconnected
/// endpoint, a `TypeError` in Python) is fatal: reported, and the endpoint
/// is lost with it.
#[asyncio::test]
async fn sending_without_an_address_unconnected_is_fatal() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let seen = record_exceptions(&loop_);
    let (t, p) = loop_
        .create_datagram_endpoint(Rec::default)
        .local_addr(("127.0.0.1", 0))
        .await?;
    t.sendto(b"where to?", None)?;
    assert!(t.is_closing());
    until("connection_lost", || p.lost().is_some()).await?;
    assert_eq!(
        p.lost(),
        Some(Some(
            "TypeError: sendto(): AF_INET address must be tuple, not NoneType".to_owned()
        ))
    );
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].message, "Fatal write error on datagram transport");
    assert!(seen[0].keys.contains(&"transport".to_owned()));
    assert!(seen[0].keys.contains(&"protocol".to_owned()));
    Ok(())
}

/// `test_sendto_buffer`, `test_sendto_tryagain`, `test_sendto_ready*`: a
/// datagram the socket cannot take now is buffered (its length plus 8
/// bytes counted); the protocol is paused above the high-water mark and
/// resumed below the low one; the buffer drains when the peer reads; a
/// `close()` waits for it.
#[asyncio::test]
async fn a_full_socket_buffers_pauses_and_drains() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    // A Unix datagram pair: the sender blocks (EAGAIN) when the reader's
    // queue is full, where UDP would drop.
    let (ours, theirs) = Socket::pair(AF_UNIX, SOCK_DGRAM, 0)?;
    theirs.setblocking(false)?;
    let (t, p) = loop_
        .create_datagram_endpoint(Rec::default)
        .sock(ours)
        .await?;
    t.set_write_buffer_limits(Some(4096), Some(1024))?;
    assert_eq!(t.get_write_buffer_limits(), (1024, 4096));
    let chunk = [7u8; 1000];
    let mut sent = 0;
    while t.get_write_buffer_size() == 0 {
        t.sendto(&chunk, None)?;
        sent += 1;
        assert!(sent < 100_000, "the socket never filled");
    }
    assert_eq!(t.get_write_buffer_size(), 1008);
    assert!(repr(&t).contains("write=<polling, bufsize=1008>"), "{t:?}");
    for _ in 0..4 {
        t.sendto(&chunk, None)?;
        sent += 1;
    }
    assert_eq!(t.get_write_buffer_size(), 5 * 1008);
    assert_eq!(
        p.events()
            .iter()
            .filter(|e| matches!(e, Ev::Pause(_)))
            .count(),
        1
    );
    assert_eq!(p.events().last(), Some(&Ev::Pause(5 * 1008)));
    // close() with datagrams buffered: they still go out.
    t.close();
    assert_eq!(p.lost(), None);
    let mut received = 0;
    let mut buf = [0u8; 2048];
    while received < sent {
        match theirs.recv_into(&mut buf) {
            Ok(n) => {
                assert_eq!(n, 1000);
                received += 1;
            }
            Err(_) => asyncio::sleep(0.001).await?,
        }
    }
    until("connection_lost", || p.lost().is_some()).await?;
    assert_eq!(t.get_write_buffer_size(), 0);
    let events = p.events();
    assert!(events.contains(&Ev::Resume(0)), "{events:?}");
    assert_eq!(p.lost(), Some(None));
    Ok(())
}

/// `test_force_close`: `abort()` drops what is buffered.
#[asyncio::test]
async fn abort_drops_the_buffer() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (ours, theirs) = Socket::pair(AF_UNIX, SOCK_DGRAM, 0)?;
    let (t, p) = loop_
        .create_datagram_endpoint(Rec::default)
        .sock(ours)
        .await?;
    while t.get_write_buffer_size() == 0 {
        t.sendto(&[1u8; 512], None)?;
    }
    t.abort();
    assert_eq!(t.get_write_buffer_size(), 0);
    until("connection_lost", || p.lost().is_some()).await?;
    assert_eq!(p.lost(), Some(None));
    drop(theirs);
    Ok(())
}

#[asyncio::test]
async fn write_buffer_limits_are_checked() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (t, _) = loop_
        .create_datagram_endpoint(rec)
        .local_addr(("127.0.0.1", 0))
        .await?;
    assert_eq!(t.get_write_buffer_limits(), (16384, 65536));
    let e = t.set_write_buffer_limits(Some(1), Some(2)).unwrap_err();
    assert_eq!(e.to_string(), "high (1) must be >= low (2) must be >= 0");
    t.close();
    Ok(())
}

/// The loop's fd callbacks refuse an endpoint's descriptor while it is
/// open (CPython's `_ensure_fd_no_transport`).
#[asyncio::test]
async fn add_reader_refuses_an_endpoints_descriptor() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (t, p) = loop_
        .create_datagram_endpoint(rec)
        .local_addr(("127.0.0.1", 0))
        .await?;
    let fd = fd_of(&t);
    let e = loop_.add_reader(fd, || {}).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("File descriptor {fd} is used by transport {t:?}")
    );
    t.close();
    until("connection_lost", || p.lost().is_some()).await?;
    Ok(())
}

/// The protocol sees `connection_made` before any datagram, and the
/// awaiting caller gets the pair after it.
#[asyncio::test]
async fn connection_made_comes_before_the_caller_resumes() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (t, p) = loop_
        .create_datagram_endpoint(rec)
        .local_addr(("127.0.0.1", 0))
        .await?;
    assert_eq!(p.events(), vec![Ev::Made]);
    assert!(Rc::ptr_eq(&p.transport(), &t));
    t.close();
    Ok(())
}

/// A panicking protocol factory is an error; the socket is closed.
#[test]
fn a_panicking_factory_is_an_error_and_leaks_nothing() {
    if !in_child("a_panicking_factory_is_an_error_and_leaks_nothing") {
        return;
    }
    let attempt = || {
        let loop_ = asyncio::new_event_loop().unwrap();
        let e = loop_
            .run_until_complete(async {
                let loop_ = asyncio::get_running_loop()?;
                loop_
                    .create_datagram_endpoint(|| -> Rec { panic!("no protocol today") })
                    .local_addr(("127.0.0.1", 0))
                    .await
                    .map(drop)
            })
            .unwrap_err();
        assert!(e.to_string().contains("no protocol today"), "{e}");
        loop_.close().unwrap();
    };
    // Warm up (lazily made process-wide state).
    attempt();
    let before = open_fds();
    for _ in 0..10 {
        attempt();
    }
    assert_eq!(open_fds(), before);
}

// ----- robustness -----

/// Many endpoints opened and closed, and endpoints left open when the loop
/// closes: no descriptor outlives them.
#[test]
fn endpoints_leak_no_descriptors() {
    if !in_child("endpoints_leak_no_descriptors") {
        return;
    }
    let cycle = || {
        let loop_ = asyncio::new_event_loop().unwrap();
        loop_
            .run_until_complete(async {
                let loop_ = asyncio::get_running_loop()?;
                for _ in 0..100 {
                    let (t, p) = loop_
                        .create_datagram_endpoint(rec)
                        .local_addr(("127.0.0.1", 0))
                        .await?;
                    t.close();
                    until("connection_lost", || p.lost().is_some()).await?;
                }
                // Left open.
                for _ in 0..10 {
                    loop_
                        .create_datagram_endpoint(rec)
                        .local_addr(("127.0.0.1", 0))
                        .await?;
                }
                Ok(())
            })
            .unwrap();
        loop_.close().unwrap();
    };
    // Warm up (lazily made process-wide state).
    cycle();
    let before = open_fds();
    cycle();
    cycle();
    assert_eq!(open_fds(), before);
}

/// A flood of datagrams does not starve the loop: a timer fires while a
/// sender thread keeps the endpoint readable, and every datagram read is
/// intact.
#[asyncio::test]
async fn a_flood_does_not_starve_the_loop() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let (t, p) = loop_
        .create_datagram_endpoint(rec)
        .local_addr(("127.0.0.1", 0))
        .await?;
    let port = sockname(&t).port().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let flooder = std::thread::spawn(move || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut n = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = s.send_to(&n.to_le_bytes(), ("127.0.0.1", port));
            n += 1;
        }
        n
    });
    until("the flood arrives", || p.datagrams().len() > 1000).await?;
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    loop_.call_later(0.01, move || f.set(true))?;
    until("the timer fires during the flood", || fired.get()).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    let got = p.datagrams();
    assert!(got.len() as u64 <= sent);
    assert!(got.iter().all(|d| d.len() == 8));
    assert!(p.errors().is_empty());
    t.close();
    Ok(())
}

/// A transport handed to user code may outlive the loop: its methods then
/// do nothing harmful.
#[test]
fn a_transport_outliving_its_loop() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let (t, _p) = loop_
        .run_until_complete(async {
            let loop_ = asyncio::get_running_loop()?;
            loop_
                .create_datagram_endpoint(rec)
                .local_addr(("127.0.0.1", 0))
                .await
        })
        .unwrap();
    loop_.close().unwrap();
    drop(loop_);
    t.sendto(b"x", Some(Address::Inet("127.0.0.1:9".parse().unwrap())))
        .unwrap();
    t.close();
    t.abort();
    assert!(t.is_closing());
}

/// A flood that fills the socket's receive queue loses no datagram the
/// kernel delivered: on a Unix datagram pair the kernel drops nothing (the
/// sender waits for room), so every datagram arrives, in order. (The timer
/// side of a flood: `a_flood_does_not_starve_the_loop`.)
#[asyncio::test]
async fn a_flood_filling_the_receive_queue_loses_nothing() -> Result<()> {
    const COUNT: u32 = 50_000;
    let loop_ = asyncio::get_running_loop()?;
    let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let (t, p) = loop_.create_datagram_endpoint(rec).sock(ours).await?;
    let sender = std::thread::spawn(move || {
        for n in 0..COUNT {
            theirs.send(&n.to_le_bytes()).unwrap();
        }
    });
    until("every datagram", || p.datagrams().len() == COUNT as usize).await?;
    sender.join().unwrap();
    let got: Vec<u32> = p
        .datagrams()
        .iter()
        .map(|d| u32::from_le_bytes(d[..].try_into().unwrap()))
        .collect();
    assert!(got.iter().copied().eq(0..COUNT));
    t.close();
    Ok(())
}

/// Linux abstract Unix datagram addresses.
#[asyncio::test]
async fn abstract_unix_datagram_endpoints() -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let name = format!("asyncio-dgram-{}", std::process::id()).into_bytes();
    let (server, sp) = loop_
        .create_datagram_endpoint(Rec::echo)
        .family(AF_UNIX)
        .local_addr(Address::UnixAbstract(name.clone()))
        .await?;
    assert_eq!(sockname(&server), Address::UnixAbstract(name.clone()));
    let mut client_name = name.clone();
    client_name.extend_from_slice(b"-client");
    let (client, cp) = loop_
        .create_datagram_endpoint(Rec::default)
        .family(AF_UNIX)
        .local_addr(Address::UnixAbstract(client_name))
        .remote_addr(Address::UnixAbstract(name))
        .await?;
    client.sendto(b"abstract", None)?;
    until("the echo", || !cp.datagrams().is_empty()).await?;
    assert_eq!(sp.datagrams(), vec![b"abstract".to_vec()]);
    client.close();
    server.close();
    Ok(())
}

/// `proto=` and `flags=` reach the resolver and the socket; `family=`
/// narrows the addresses.
#[asyncio::test]
async fn proto_flags_and_family_keywords() -> Result<()> {
    use asyncio::socket::{AF_INET6, AI_NUMERICHOST, IPPROTO_UDP};
    let loop_ = asyncio::get_running_loop()?;
    let (t, _) = loop_
        .create_datagram_endpoint(rec)
        .local_addr(("127.0.0.1", 0))
        .proto(IPPROTO_UDP)
        .family(AF_INET)
        .await?;
    let fd = fd_of(&t);
    let borrowed = unsafe_borrowed(fd);
    let sock = socket2::SockRef::from(&borrowed);
    assert_eq!(sock.protocol().unwrap(), Some(socket2::Protocol::UDP));
    t.close();
    // AI_NUMERICHOST: a host name is not looked up.
    let e = loop_
        .create_datagram_endpoint(rec)
        .local_addr(("localhost", 0))
        .flags(AI_NUMERICHOST)
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(e.python_name(), "gaierror");
    // An IPv4 address with family=AF_INET6 does not resolve.
    let e = loop_
        .create_datagram_endpoint(rec)
        .local_addr(("127.0.0.1", 0))
        .family(AF_INET6)
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(e.python_name(), "gaierror");
    // family= alone (no address): an unbound socket of that family.
    let (t, p) = loop_
        .create_datagram_endpoint(Rec::default)
        .family(AF_INET)
        .await?;
    assert_eq!(p.events(), vec![Ev::Made]);
    assert!(t.get_extra_info("peername").is_none());
    t.close();
    Ok(())
}
