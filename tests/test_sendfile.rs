//! `loop.sock_sendfile`: CPython's `test_sendfile.py` `SockSendfileMixin`
//! and `test_base_events.py`'s sendfile argument tests, over a real
//! loopback connection (the receiving end is a protocol server, as there).

mod common;

use std::cell::RefCell;
use std::io::{Seek, Write};
use std::rc::Rc;

use asyncio::socket::{Socket, AF_INET, SOCK_DGRAM, SOCK_STREAM};
use asyncio::{BaseProtocol, Error, ErrorKind, EventLoop, Future, Protocol, Result, Transport};

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
async fn prepare(loop_: &EventLoop) -> Result<(Socket, Rc<SendfileProto>, asyncio::Server)> {
    let sink = SendfileProto::new(loop_, 0);
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

// ===== loop.sendfile (CPython's `SendfileMixin`) =====

mod tls_common;

/// CPython's `MyProto` / `MySendfileProto`: collects what it receives,
/// `done` at the end, and with `close_after` closes once that much arrived.
struct SendfileProto {
    data: RefCell<Vec<u8>>,
    close_after: usize,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    done: Future<()>,
}

impl SendfileProto {
    fn new(loop_: &EventLoop, close_after: usize) -> Rc<SendfileProto> {
        Rc::new(SendfileProto {
            data: RefCell::new(Vec::new()),
            close_after,
            transport: RefCell::new(None),
            done: loop_.create_future(),
        })
    }
    fn transport(&self) -> Rc<dyn Transport> {
        self.transport.borrow().clone().unwrap()
    }
}

impl BaseProtocol for SendfileProto {
    fn connection_lost(self: &Rc<Self>, _exc: Option<Error>) -> Result<()> {
        let _ = self.done.set_result(());
        Ok(())
    }
}

impl Protocol for SendfileProto {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        *self.transport.borrow_mut() = Some(transport);
        Ok(())
    }
    fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        self.data.borrow_mut().extend_from_slice(data);
        if self.close_after > 0 && self.data.borrow().len() >= self.close_after {
            self.transport().close();
        }
        Ok(())
    }
}

/// 4 MiB: past any socket buffer, so flow control is exercised.
fn big_data() -> Vec<u8> {
    (0..4 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect()
}

/// CPython's `prepare_sendfile`: a server protocol and a client one,
/// connected (over TLS with `tls`).
async fn prepare_sendfile(
    loop_: &EventLoop,
    tls: Option<&tls_common::Pki>,
    close_after: usize,
) -> Result<(Rc<SendfileProto>, Rc<SendfileProto>, asyncio::Server)> {
    let srv = SendfileProto::new(loop_, close_after);
    let s = srv.clone();
    let mut server = loop_
        .create_server(move || s.clone())
        .host("127.0.0.1")
        .port(0);
    if let Some(pki) = tls {
        server = server.ssl(&pki.server());
    }
    let server = server.await?;
    let port = server.sockets()[0].getsockname().unwrap().port().unwrap();
    let cli = SendfileProto::new(loop_, 0);
    let c = cli.clone();
    let mut client = loop_
        .create_connection(move || c.clone())
        .host("127.0.0.1")
        .port(port);
    if let Some(pki) = tls {
        client = client.ssl(&pki.client()).server_hostname("localhost");
    }
    client.await?;
    // With TLS the server's side connects once its handshake ends.
    while srv.transport.borrow().is_none() {
        asyncio::sleep(0.001).await?;
    }
    Ok((srv, cli, server))
}

async fn cleanup(srv: &SendfileProto, cli: &SendfileProto, server: asyncio::Server) -> Result<()> {
    srv.transport().close();
    cli.transport().close();
    srv.done.clone().await?;
    cli.done.clone().await?;
    server.close();
    server.wait_closed().await
}

fn file_position(file: &mut std::fs::File) -> u64 {
    file.stream_position().unwrap()
}

#[test]
fn test_sendfile_not_supported() {
    struct Child;
    impl BaseProtocol for Child {}
    impl asyncio::protocols::SubprocessProtocol for Child {}
    run(|loop_| async move {
        let mut file = temp_file(&data());
        // A child's stdin pipe: no sendfile at all (CPython: UNSUPPORTED).
        let (proc_, _) = loop_.subprocess_exec(|| Child, "cat").await?;
        let stdin = proc_.get_pipe_transport(0).unwrap();
        let e = loop_.sendfile(&stdin, &file).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RuntimeError);
        assert!(
            e.message()
                .starts_with("sendfile is not supported for transport <"),
            "{e}"
        );
        assert_eq!(file_position(&mut file), 0);
        stdin.close();
        proc_.wait().await?;
        proc_.close();
        Ok(())
    });
}

fn sendfile_case(tls: bool, prefix: &'static [u8], suffix: &'static [u8]) {
    let pki = tls.then(tls_common::pki);
    run(move |loop_| async move {
        let content = big_data();
        let mut file = temp_file(&content);
        let (srv, cli, server) = prepare_sendfile(&loop_, pki.as_ref(), 0).await?;
        let tr = cli.transport();
        tr.write(prefix)?;
        let sent = loop_.sendfile(&tr, &file).await?;
        tr.write(suffix)?;
        tr.close();
        srv.done.clone().await?;
        assert_eq!(sent, content.len() as u64);
        let mut expected = prefix.to_vec();
        expected.extend_from_slice(&content);
        expected.extend_from_slice(suffix);
        assert!(*srv.data.borrow() == expected, "the bytes differ");
        assert_eq!(file_position(&mut file), content.len() as u64);
        cleanup(&srv, &cli, server).await
    });
}

#[test]
fn test_sendfile() {
    sendfile_case(false, b"", b"");
}

#[test]
fn test_sendfile_ssl() {
    sendfile_case(true, b"", b"");
}

#[test]
fn test_sendfile_pre_and_post_data() {
    sendfile_case(false, &[b'P'; 8192], &[b'S'; 8192]);
}

#[test]
fn test_sendfile_ssl_pre_and_post_data() {
    sendfile_case(true, b"zxcvbnm", b"0987654321");
}

fn partial_case(tls: bool) {
    let pki = tls.then(tls_common::pki);
    run(move |loop_| async move {
        let content = big_data();
        let mut file = temp_file(&content);
        let (srv, cli, server) = prepare_sendfile(&loop_, pki.as_ref(), 0).await?;
        let tr = cli.transport();
        let sent = loop_.sendfile(&tr, &file).offset(1000).count(100).await?;
        tr.close();
        srv.done.clone().await?;
        assert_eq!(sent, 100);
        assert_eq!(*srv.data.borrow(), content[1000..1100]);
        assert_eq!(file_position(&mut file), 1100);
        cleanup(&srv, &cli, server).await
    });
}

#[test]
fn test_sendfile_partial() {
    partial_case(false);
}

#[test]
fn test_sendfile_ssl_partial() {
    partial_case(true);
}

#[test]
fn test_sendfile_for_closing_transp() {
    run(|loop_| async move {
        let mut file = temp_file(&data());
        let (srv, cli, server) = prepare_sendfile(&loop_, None, 0).await?;
        let tr = cli.transport();
        tr.close();
        let e = loop_.sendfile(&tr, &file).await.unwrap_err();
        assert_eq!(e.to_string(), "Transport is closing");
        srv.done.clone().await?;
        assert!(srv.data.borrow().is_empty());
        assert_eq!(file_position(&mut file), 0);
        cleanup(&srv, &cli, server).await
    });
}

#[test]
fn test_sendfile_fallback_for_a_pipe_and_no_fallback() {
    run(|loop_| async move {
        let (srv, cli, server) = prepare_sendfile(&loop_, None, 0).await?;
        let tr = cli.transport();
        // A pipe is no regular file: sendfile(2) cannot serve, the fallback does.
        let pipe = pipe_file(b"through the fallback");
        let sent = loop_.sendfile(&tr, &pipe).await?;
        assert_eq!(sent, 20);
        let pipe = pipe_file(b"refused");
        let e = loop_
            .sendfile(&tr, &pipe)
            .fallback(false)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SendfileNotAvailableError);
        tr.close();
        srv.done.clone().await?;
        assert_eq!(*srv.data.borrow(), b"through the fallback");
        cleanup(&srv, &cli, server).await
    });
}

#[test]
fn test_sendfile_no_fallback_for_fallback_transport() {
    let pki = tls_common::pki();
    run(move |loop_| async move {
        let file = temp_file(&data());
        let (srv, cli, server) = prepare_sendfile(&loop_, Some(&pki), 0).await?;
        let tr = cli.transport();
        let e = loop_
            .sendfile(&tr, &file)
            .fallback(false)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RuntimeError);
        assert!(e.message().starts_with("fallback is disabled and native sendfile is not supported for transport <asyncio.sslproto._SSLProtocolTransport"), "{e}");
        cleanup(&srv, &cli, server).await
    });
}

#[test]
fn test_sendfile_close_peer_after_receiving() {
    run(|loop_| async move {
        let content = big_data();
        let mut file = temp_file(&content);
        let (srv, cli, server) = prepare_sendfile(&loop_, None, content.len()).await?;
        let sent = loop_.sendfile(&cli.transport(), &file).await?;
        cli.transport().close();
        srv.done.clone().await?;
        assert_eq!(sent, content.len() as u64);
        assert!(*srv.data.borrow() == content);
        assert_eq!(file_position(&mut file), content.len() as u64);
        cleanup(&srv, &cli, server).await
    });
}

#[test]
fn test_sendfile_close_peer_in_the_middle_of_receiving() {
    run(|loop_| async move {
        let content: Vec<u8> = big_data().repeat(8); // 32 MiB
        let mut file = temp_file(&content);
        let (srv, cli, server) = prepare_sendfile(&loop_, None, 1024).await?;
        let e = loop_.sendfile(&cli.transport(), &file).await.unwrap_err();
        assert!(
            matches!(
                e.python_name(),
                "BrokenPipeError" | "ConnectionResetError" | "ConnectionError"
            ),
            "{e:?}"
        );
        srv.done.clone().await?;
        let received = srv.data.borrow().len();
        assert!(1024 <= received && received < content.len(), "{received}");
        let pos = file_position(&mut file) as usize;
        assert!(1024 <= pos && pos < content.len(), "{pos}");
        cli.transport().close();
        cli.done.clone().await?;
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_sendfile_prevents_bare_write() {
    run(|loop_| async move {
        let content = big_data();
        let file = Rc::new(temp_file(&content));
        let (srv, cli, server) = prepare_sendfile(&loop_, None, 0).await?;
        let tr = cli.transport();
        let (l, t, f) = (loop_.clone(), tr.clone(), file.clone());
        let task = asyncio::create_task(async move { l.sendfile(&t, &f).await })?;
        asyncio::sleep(0.0).await?;
        let e = tr.write(b"data").unwrap_err();
        assert_eq!(e.to_string(), "unable to write; sendfile is in progress");
        assert_eq!(task.take().await?, content.len() as u64);
        tr.write(b"after")?;
        tr.close();
        srv.done.clone().await?;
        assert!(srv.data.borrow().ends_with(b"after"));
        assert_eq!(srv.data.borrow().len(), content.len() + 5);
        cleanup(&srv, &cli, server).await
    });
}

/// The protocol, set aside during the fallback, is resumed afterwards if
/// it was paused, and sees none of the file's flow control.
#[test]
fn test_sendfile_fallback_keeps_the_protocol() {
    let pki = tls_common::pki();
    run(move |loop_| async move {
        let content = big_data();
        let file = temp_file(&content);
        let (srv, cli, server) = prepare_sendfile(&loop_, Some(&pki), 0).await?;
        let tr = cli.transport();
        let before = tr.get_protocol().unwrap();
        loop_.sendfile(&tr, &file).await?;
        assert!(tr.get_protocol().unwrap().ptr_eq(&before));
        assert!(tr.is_reading());
        while srv.data.borrow().len() < content.len() {
            asyncio::sleep(0.001).await?;
        }
        assert!(*srv.data.borrow() == content);
        cleanup(&srv, &cli, server).await
    });
}
