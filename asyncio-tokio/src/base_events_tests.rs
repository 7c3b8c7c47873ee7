//! `create_connection`'s address loop with several addresses, which DNS on
//! a test machine (one `localhost` address) cannot produce.

use std::net::SocketAddr;

use super::*;

fn info(addr: SocketAddr) -> AddrInfo {
    AddrInfo {
        family: if addr.is_ipv4() { AF_INET } else { AF_INET6 },
        type_: SOCK_STREAM,
        proto: libc::IPPROTO_TCP,
        canonname: String::new(),
        sockaddr: Address::Inet(addr),
    }
}

fn loopback_socket() -> Socket {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    sock.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
        .expect("bind");
    sock
}

fn local_addr(sock: &Socket) -> SocketAddr {
    sock.local_addr()
        .expect("local_addr")
        .as_socket()
        .expect("inet")
}

/// A bound socket that does not listen: connecting to it is refused.
fn refusing() -> (Socket, SocketAddr) {
    let sock = loopback_socket();
    let addr = local_addr(&sock);
    (sock, addr)
}

#[path = "../../tests/net_common/hanging.rs"]
mod hanging;
use hanging::hanging_listener as hanging;

fn listening() -> (std::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("local_addr");
    (l, addr)
}

type Errors = Rc<RefCell<Vec<Error>>>;

fn run_connect_any(
    infos: Vec<AddrInfo>,
    delay: Option<f64>,
    timeout: Option<f64>,
) -> (Result<Option<TcpStream>>, Vec<Error>) {
    let loop_ = crate::new_event_loop().expect("loop");
    let errors: Errors = Rc::default();
    let l = loop_.clone();
    let errs = errors.clone();
    let outcome = loop_.run_until_complete(async move {
        let attempt = async move { connect_any(&l, infos, None, delay, errs).await };
        match timeout {
            Some(t) => asyncio_core::wait_for(attempt, t).await,
            None => attempt.await,
        }
    });
    loop_.close().expect("close");
    let errors = errors.borrow().clone();
    (outcome, errors)
}

fn peer(stream: Option<TcpStream>) -> SocketAddr {
    stream.expect("connected").peer_addr().expect("peer_addr")
}

#[test]
fn a_refused_address_falls_through_to_the_next() {
    let (_refusing, refused) = refusing();
    let (_listener, good) = listening();
    let (outcome, errors) = run_connect_any(vec![info(refused), info(good)], None, None);
    assert_eq!(peer(outcome.expect("no error")), good);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        format!(
            "[Errno 111] Connect call failed ('127.0.0.1', {})",
            refused.port()
        )
    );
}

#[test]
fn cancellation_ends_the_attempt_instead_of_trying_the_next_address() {
    let hang = hanging();
    let (listener, good) = listening();
    let (outcome, errors) = run_connect_any(vec![info(hang.addr), info(good)], None, Some(0.2));
    let err = outcome.expect_err("timed out");
    assert_eq!(err.kind(), ErrorKind::TimeoutError);
    assert!(errors.is_empty(), "{errors:?}");
    listener.set_nonblocking(true).expect("nonblocking");
    assert_eq!(
        listener.accept().expect_err("nothing connected").kind(),
        io::ErrorKind::WouldBlock
    );
}

#[test]
fn happy_eyeballs_starts_the_next_address_after_the_delay() {
    let hang = hanging();
    let (_listener, good) = listening();
    let (outcome, errors) = run_connect_any(vec![info(hang.addr), info(good)], Some(0.05), None);
    assert_eq!(peer(outcome.expect("no error")), good);
    // The hanging attempt lost the race and was cancelled: not an error.
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn happy_eyeballs_cancelled_from_outside_connects_nowhere() {
    let hang = hanging();
    let hang2 = hanging();
    let (outcome, _) = run_connect_any(
        vec![info(hang.addr), info(hang2.addr)],
        Some(0.05),
        Some(0.2),
    );
    assert_eq!(
        outcome.expect_err("timed out").kind(),
        ErrorKind::TimeoutError
    );
}

#[test]
fn every_failure_is_kept_and_combined_as_cpython_does() {
    let (_a, refused_a) = refusing();
    let (_b, refused_b) = refusing();
    for delay in [None, Some(0.05)] {
        let (outcome, errors) =
            run_connect_any(vec![info(refused_a), info(refused_b)], delay, None);
        assert!(outcome.expect("no error").is_none());
        assert_eq!(errors.len(), 2, "delay {delay:?}");
        let expected = format!(
            "Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', {}), \
             [Errno 111] Connect call failed ('127.0.0.1', {})",
            refused_a.port(),
            refused_b.port()
        );
        let combined = combine_connect_errors(errors.clone(), false);
        assert_eq!(combined.kind(), ErrorKind::OSError);
        assert_eq!(combined.to_string(), expected);
        let group = combine_connect_errors(errors, true);
        assert_eq!(group.kind(), ErrorKind::ExceptionGroup);
        assert_eq!(group.exceptions().len(), 2);
    }
}

#[test]
fn identical_failures_are_raised_once() {
    let (_a, refused) = refusing();
    let (outcome, errors) = run_connect_any(vec![info(refused), info(refused)], None, None);
    assert!(outcome.expect("no error").is_none());
    let combined = combine_connect_errors(errors, false);
    assert_eq!(
        combined.to_string(),
        format!(
            "[Errno 111] Connect call failed ('127.0.0.1', {})",
            refused.port()
        )
    );
}

#[test]
fn interleave_matches_cpython() {
    // (family, tag) as CPython's `_interleave_addrinfos` orders them:
    // f(a, 1) -> a c b d g e; f(a, 2) -> a b c g d e; f(a, 5) -> a b g c d e.
    let v6 = |port| info(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)));
    let v4 = |port| info(SocketAddr::from(([127, 0, 0, 1], port)));
    let infos = vec![v6(1), v6(2), v4(3), v4(4), v4(5), v6(7)];
    let ports = |n| -> Vec<u16> {
        interleave_addrinfos(infos.clone(), n)
            .iter()
            .map(|i| match &i.sockaddr {
                Address::Inet(a) => a.port(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(ports(1), [1, 3, 2, 4, 7, 5]);
    assert_eq!(ports(2), [1, 2, 3, 7, 4, 5]);
    assert_eq!(ports(5), [1, 2, 7, 3, 4, 5]);
}
