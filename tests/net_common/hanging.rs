//! A listener that never completes a connect (shared with asyncio-tokio's
//! unit tests).

/// A loopback listener whose accept queue is full: the kernel drops
/// further SYNs, so a connect to `addr` stays in progress (for seconds,
/// while SYNs are retried). Keep it alive for as long as that must hold.
pub struct Hanging {
    _listener: socket2::Socket,
    _queued: Vec<std::net::TcpStream>,
    pub addr: std::net::SocketAddr,
}

pub fn hanging_listener() -> Hanging {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&any.into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500)) {
            Ok(c) => queued.push(c),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the accept queue: {e}"),
        }
        assert!(queued.len() < 16, "the accept queue never filled");
    }
    Hanging {
        _listener: listener,
        _queued: queued,
        addr,
    }
}
