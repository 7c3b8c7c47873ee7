//! `loop.sock_sendfile`: CPython's `test_sendfile.py` `SockSendfileMixin`
//! and `test_base_events.py`'s sendfile argument tests, over a real
//! loopback connection (the receiving end is a protocol server, as there).

mod common;

use std::cell::RefCell;
use std::io::{Seek, Write};
use std::rc::Rc;

use asyncio::socket::{Socket, AF_INET, SOCK_DGRAM, SOCK_STREAM};
use asyncio::{BaseProtocol, Error, ErrorKind, EventLoop, Future, Protocol, Result, Transport};

/// CPython's `MyProto`: collects what it receives, `done` at the end.
struct Sink {
    data: RefCell<Vec<u8>>,
    done: Future<()>,
}

impl BaseProtocol for Sink {
    fn connection_lost(self: &Rc<Self>, _exc: Option<Error>) -> Result<()> {
        let _ = self.done.set_result(());
        Ok(())
    }
}

impl Protocol for Sink {
    fn connection_made(self: &Rc<Self>, _transport: Rc<dyn Transport>) -> Result<()> {
        Ok(())
    }
    fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        self.data.borrow_mut().extend_from_slice(data);
        Ok(())
    }
}

/// 160,000 bytes, as CPython's `SendfileBase.DATA` (`b"SendfileBaseData" * (1024 * 8)`
/// is 128 KiB; any size past a socket buffer serves).
fn data() -> Vec<u8> {
    b"SendfileBaseData".repeat(10_000)
}

fn temp_file(content: &[u8]) -> std::fs::File {
    let path = std::env::temp_dir().join(format!(
        "asyncio-sendfile-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f.write_all(content).unwrap();
    f.rewind().unwrap();
    f
}

/// A connected non-blocking socket and the server-side sink.
async fn prepare(loop_: &EventLoop) -> Result<(Socket, Rc<Sink>, asyncio::Server)> {
    let sink = Rc::new(Sink {
        data: RefCell::new(Vec::new()),
        done: loop_.create_future(),
    });
    let s = sink.clone();
    let server = loop_
        .create_server(move || s.clone())
        .host("127.0.0.1")
        .port(0)
        .await?;
    let addr = server.sockets()[0].getsockname().unwrap();
    let sock = Socket::new(AF_INET, SOCK_STREAM, 0)?;
    sock.setblocking(false)?;
    loop_.sock_connect(&sock, addr).await?;
    Ok((sock, sink, server))
}

fn run<T: 'static, F>(body: impl FnOnce(EventLoop) -> F) -> T
where
    F: std::future::Future<Output = Result<T>> + 'static,
{
    common::on_loop(body)
}

#[test]
fn test_sock_sendfile_success() {
    run(|loop_| async move {
        let file = temp_file(&data());
        let (sock, sink, server) = prepare(&loop_).await?;
        let sent = loop_.sock_sendfile(&sock, &file).await?;
        drop(sock);
        sink.done.clone().await?;
        assert_eq!(sent, data().len() as u64);
        assert_eq!(*sink.data.borrow(), data());
        assert_eq!((&file).stream_position()?, data().len() as u64);
        server.close();
        Ok(())
    })
}

#[test]
fn test_sock_sendfile_with_offset_and_count() {
    run(|loop_| async move {
        let file = temp_file(&data());
        let (sock, sink, server) = prepare(&loop_).await?;
        let sent = loop_
            .sock_sendfile(&sock, &file)
            .offset(1000)
            .count(2000)
            .await?;
        drop(sock);
        sink.done.clone().await?;
        assert_eq!(sent, 2000);
        assert_eq!(*sink.data.borrow(), data()[1000..3000]);
        assert_eq!((&file).stream_position()?, 3000);
        server.close();
        Ok(())
    })
}

#[test]
fn test_sock_sendfile_zero_size() {
    run(|loop_| async move {
        let file = temp_file(b"");
        let (sock, sink, server) = prepare(&loop_).await?;
        assert_eq!(loop_.sock_sendfile(&sock, &file).await?, 0);
        drop(sock);
        sink.done.clone().await?;
        assert_eq!((&file).stream_position()?, 0);
        server.close();
        Ok(())
    })
}

#[test]
fn test_sock_sendfile_mix_with_regular_send() {
    run(|loop_| async move {
        let buf = b"mix_regular_send".repeat(4 * 1024);
        let file = temp_file(&data());
        let (sock, sink, server) = prepare(&loop_).await?;
        loop_.sock_sendall(&sock, &buf).await?;
        let sent = loop_.sock_sendfile(&sock, &file).await?;
        loop_.sock_sendall(&sock, &buf).await?;
        drop(sock);
        sink.done.clone().await?;
        assert_eq!(sent, data().len() as u64);
        assert_eq!(*sink.data.borrow(), [buf.clone(), data(), buf].concat());
        assert_eq!((&file).stream_position()?, data().len() as u64);
        server.close();
        Ok(())
    })
}

/// A pipe holding `content`, then closed: a file `sendfile(2)` cannot read.
fn pipe_file(content: &[u8]) -> std::fs::File {
    let mut fds = [0; 2];
    // SAFETY: fills a two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just made.
    let (r, mut w) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    w.write_all(content).unwrap();
    r
}

#[test]
fn test_sock_sendfile_fallback() {
    run(|loop_| async move {
        let content = b"through the fallback".repeat(100);
        let file = pipe_file(&content);
        let (sock, sink, server) = prepare(&loop_).await?;
        let sent = loop_.sock_sendfile(&sock, &file).await?;
        drop(sock);
        sink.done.clone().await?;
        assert_eq!(sent, content.len() as u64);
        assert_eq!(*sink.data.borrow(), content);
        server.close();
        Ok(())
    })
}

#[test]
fn test_sock_sendfile_fallback_count() {
    run(|loop_| async move {
        let content = b"0123456789".repeat(100);
        let file = pipe_file(&content);
        let (sock, sink, server) = prepare(&loop_).await?;
        let sent = loop_.sock_sendfile(&sock, &file).count(25).await?;
        drop(sock);
        sink.done.clone().await?;
        assert_eq!(sent, 25);
        assert_eq!(*sink.data.borrow(), content[..25]);
        server.close();
        Ok(())
    })
}

#[test]
fn test_sock_sendfile_no_fallback() {
    run(|loop_| async move {
        let file = pipe_file(b"data");
        let (sock, sink, server) = prepare(&loop_).await?;
        let err = loop_
            .sock_sendfile(&sock, &file)
            .fallback(false)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SendfileNotAvailableError);
        assert_eq!(err.to_string(), "not a regular file");
        drop(sock);
        sink.done.clone().await?;
        assert!(sink.data.borrow().is_empty());
        server.close();
        Ok(())
    })
}

#[test]
fn test_blocking_socket_and_bad_arguments() {
    run(|loop_| async move {
        let file = temp_file(&data());
        loop_.set_debug(true);
        let blocking = Socket::new(AF_INET, SOCK_STREAM, 0)?;
        let err = loop_.sock_sendfile(&blocking, &file).await.unwrap_err();
        assert_eq!(err.to_string(), "the socket must be non-blocking");
        loop_.set_debug(false);
        let dgram = Socket::new(AF_INET, SOCK_DGRAM, 0)?;
        dgram.setblocking(false)?;
        let err = loop_.sock_sendfile(&dgram, &file).await.unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            (
                ErrorKind::ValueError,
                "only SOCK_STREAM type sockets are supported"
            )
        );
        let (sock, _sink, server) = prepare(&loop_).await?;
        let err = loop_
            .sock_sendfile(&sock, &file)
            .count(0)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "count must be a positive integer (got 0)");
        // Nothing moved.
        assert_eq!((&file).stream_position()?, 0);
        server.close();
        Ok(())
    })
}

#[test]
fn a_large_file_goes_through_byte_for_byte() {
    run(|loop_| async move {
        let content: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let file = temp_file(&content);
        let (sock, sink, server) = prepare(&loop_).await?;
        let sent = loop_.sock_sendfile(&sock, &file).offset(5).await?;
        drop(sock);
        sink.done.clone().await?;
        assert_eq!(sent, content.len() as u64 - 5);
        assert!(*sink.data.borrow() == content[5..]);
        server.close();
        Ok(())
    })
}
