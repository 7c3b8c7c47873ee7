//! CPython's `test_streams.py`, ported: the `StreamReader` unit tests, the
//! servers and clients over real loopback and Unix sockets, drain, close
//! and the writer's unclosed warnings. (`readexactly(-1)`'s `ValueError`
//! cannot be written: the size is a `usize`. Pickling and the
//! constructor-without-loop tests have no Rust counterpart.)

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;

use asyncio::streams::{
    open_connection, open_unix_connection, start_server, start_unix_server, StreamReader,
    StreamWriter,
};
use asyncio::{ErrorKind, EventLoop, Future, Result};
use common::{capture_logs, record_exceptions};

const DATA: &[u8] = b"line1\nline2\nline3\n";

fn with_loop<T: 'static, F>(body: impl FnOnce(EventLoop) -> F) -> T
where
    F: std::future::Future<Output = Result<T>> + 'static,
{
    common::on_loop(body)
}

fn reader(loop_: &EventLoop) -> StreamReader {
    StreamReader::new(loop_, asyncio::streams::DEFAULT_LIMIT).unwrap()
}

fn limited(loop_: &EventLoop, limit: usize) -> StreamReader {
    StreamReader::new(loop_, limit).unwrap()
}

/// Feeds `chunks` (then EOF if `eof`) from a `call_soon` callback.
fn feed_soon(loop_: &EventLoop, stream: &StreamReader, chunks: &[&[u8]], eof: bool) {
    let s = stream.clone();
    let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
    loop_
        .call_soon(move || {
            for c in &chunks {
                s.feed_data(c);
            }
            if eof {
                s.feed_eof();
            }
        })
        .unwrap();
}

#[test]
fn test_feed_empty_data() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"");
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_feed_nonempty_data() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(DATA);
        assert_eq!(stream.buffer(), DATA);
        Ok(())
    })
}

#[test]
fn test_read_zero() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(DATA);
        assert_eq!(stream.read(0).await?, &b""[..]);
        assert_eq!(stream.buffer(), DATA);
        Ok(())
    })
}

#[test]
fn test_read() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        feed_soon(&loop_, &stream, &[DATA], false);
        assert_eq!(stream.read(30).await?, DATA);
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_read_line_breaks() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"line1");
        stream.feed_data(b"line2");
        assert_eq!(stream.read(5).await?, &b"line1"[..]);
        assert_eq!(stream.buffer(), b"line2");
        Ok(())
    })
}

#[test]
fn test_read_eof() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        feed_soon(&loop_, &stream, &[], true);
        assert_eq!(stream.read(1024).await?, &b""[..]);
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_read_until_eof() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        feed_soon(&loop_, &stream, &[b"chunk1\n", b"chunk2"], true);
        assert_eq!(stream.read(-1).await?, &b"chunk1\nchunk2"[..]);
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_read_exception() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"line\n");
        assert_eq!(stream.read(2).await?, &b"li"[..]);
        stream.set_exception(asyncio::Error::bare(ErrorKind::ValueError));
        assert_eq!(
            stream.read(2).await.unwrap_err().kind(),
            ErrorKind::ValueError
        );
        Ok(())
    })
}

#[test]
fn test_invalid_limit() {
    with_loop(|loop_| async move {
        let err = StreamReader::new(&loop_, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        assert_eq!(err.to_string(), "Limit cannot be <= 0");
        Ok(())
    })
}

#[test]
fn test_read_limit() {
    with_loop(|loop_| async move {
        let stream = limited(&loop_, 3);
        stream.feed_data(b"chunk");
        assert_eq!(stream.read(5).await?, &b"chunk"[..]);
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_readline() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"chunk1 ");
        feed_soon(
            &loop_,
            &stream,
            &[b"chunk2 ", b"chunk3 ", b"\n chunk4"],
            false,
        );
        assert_eq!(stream.readline().await?, &b"chunk1 chunk2 chunk3 \n"[..]);
        assert_eq!(stream.buffer(), b" chunk4");
        Ok(())
    })
}

#[test]
fn test_readline_limit_with_existing_data() {
    with_loop(|loop_| async move {
        let stream = limited(&loop_, 3);
        stream.feed_data(b"li");
        stream.feed_data(b"ne1\nline2\n");
        let err = stream.readline().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        assert_eq!(stream.buffer(), b"line2\n");

        let stream = limited(&loop_, 3);
        stream.feed_data(b"li");
        stream.feed_data(b"ne1");
        stream.feed_data(b"li");
        let err = stream.readline().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        assert_eq!(
            err.to_string(),
            "Separator is not found, and chunk exceed the limit"
        );
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_at_eof() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        assert!(!stream.at_eof());
        stream.feed_data(b"some data\n");
        assert!(!stream.at_eof());
        stream.readline().await?;
        assert!(!stream.at_eof());
        stream.feed_data(b"some data\n");
        stream.feed_eof();
        stream.readline().await?;
        assert!(stream.at_eof());
        Ok(())
    })
}

#[test]
fn test_readline_limit() {
    with_loop(|loop_| async move {
        let stream = limited(&loop_, 7);
        feed_soon(&loop_, &stream, &[b"chunk1", b"chunk2", b"chunk3\n"], true);
        assert_eq!(
            stream.readline().await.unwrap_err().kind(),
            ErrorKind::ValueError
        );
        assert_eq!(stream.buffer(), b"");

        let stream = limited(&loop_, 7);
        feed_soon(
            &loop_,
            &stream,
            &[b"chunk1", b"chunk2\n", b"chunk3\n"],
            true,
        );
        assert_eq!(
            stream.readline().await.unwrap_err().kind(),
            ErrorKind::ValueError
        );
        assert_eq!(stream.buffer(), b"chunk3\n");

        // The limit is strict.
        let stream = limited(&loop_, 7);
        stream.feed_data(b"1234567\n");
        assert_eq!(stream.readline().await?, &b"1234567\n"[..]);
        assert_eq!(stream.buffer(), b"");
        stream.feed_data(b"12345678\n");
        let err = stream.readline().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Separator is found, but chunk is longer than limit"
        );
        assert_eq!(stream.buffer(), b"");
        stream.feed_data(b"12345678");
        assert_eq!(
            stream.readline().await.unwrap_err().kind(),
            ErrorKind::ValueError
        );
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_readline_nolimit_nowait() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(&DATA[..6]);
        stream.feed_data(&DATA[6..]);
        assert_eq!(stream.readline().await?, &b"line1\n"[..]);
        assert_eq!(stream.buffer(), b"line2\nline3\n");
        Ok(())
    })
}

#[test]
fn test_readline_eof() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"some data");
        stream.feed_eof();
        assert_eq!(stream.readline().await?, &b"some data"[..]);
        Ok(())
    })
}

#[test]
fn test_readline_empty_eof() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_eof();
        assert_eq!(stream.readline().await?, &b""[..]);
        assert_eq!(stream.next_line().await?, None);
        Ok(())
    })
}

#[test]
fn test_readline_read_byte_count() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(DATA);
        stream.readline().await?;
        assert_eq!(stream.read(7).await?, &b"line2\nl"[..]);
        assert_eq!(stream.buffer(), b"ine3\n");
        Ok(())
    })
}

#[test]
fn test_readline_exception() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"line\n");
        assert_eq!(stream.readline().await?, &b"line\n"[..]);
        stream.set_exception(asyncio::Error::bare(ErrorKind::ValueError));
        assert_eq!(
            stream.readline().await.unwrap_err().kind(),
            ErrorKind::ValueError
        );
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_readuntil_separator() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        let err = stream.readuntil(b"").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Separator should be at least one-byte string"
        );
        let err = stream.readuntil_any(&[b""]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Separator should be at least one-byte string"
        );
        let err = stream.readuntil_any(&[]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Separator should contain at least one element"
        );
        Ok(())
    })
}

#[test]
fn test_readuntil_multi_chunks() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"lineAAA");
        assert_eq!(stream.readuntil(&b"AAA"[..]).await?, &b"lineAAA"[..]);
        assert_eq!(stream.buffer(), b"");
        stream.feed_data(b"lineAAA");
        assert_eq!(stream.readuntil(&b"AAA"[..]).await?, &b"lineAAA"[..]);
        assert_eq!(stream.buffer(), b"");
        stream.feed_data(b"lineAAAxxx");
        assert_eq!(stream.readuntil(&b"AAA"[..]).await?, &b"lineAAA"[..]);
        assert_eq!(stream.buffer(), b"xxx");
        Ok(())
    })
}

#[test]
fn test_readuntil_multi_chunks_1() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        for (chunks, expected) in [
            (&[&b"QWEaa"[..], b"XYaa", b"a"][..], &b"QWEaaXYaaa"[..]),
            (&[b"QWEaa", b"XYa", b"aa"], b"QWEaaXYaaa"),
            (&[b"aaa"], b"aaa"),
            (&[b"Xaaa"], b"Xaaa"),
            (&[b"XXX", b"a", b"a", b"a"], b"XXXaaa"),
        ] {
            for c in chunks {
                stream.feed_data(c);
            }
            assert_eq!(stream.readuntil(b"aaa").await?, expected);
            assert_eq!(stream.buffer(), b"");
        }
        Ok(())
    })
}

#[test]
fn test_readuntil_eof() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"some dataAA");
        stream.feed_eof();
        let err = stream.readuntil(b"AAA").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IncompleteReadError);
        assert!(err.to_string().ends_with("undefined expected bytes"));
        assert_eq!(err.partial(), Some(&b"some dataAA"[..]));
        assert_eq!(err.expected(), None);
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_readuntil_limit_found_sep() {
    with_loop(|loop_| async move {
        let stream = limited(&loop_, 3);
        stream.feed_data(b"some dataAA");
        let err = stream.readuntil(b"AAA").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitOverrunError);
        assert!(err.to_string().contains("not found"));
        assert_eq!(stream.buffer(), b"some dataAA");
        stream.feed_data(b"A");
        let err = stream.readuntil(b"AAA").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitOverrunError);
        assert!(err.to_string().contains("is found"));
        assert_eq!(err.consumed(), Some(9));
        assert_eq!(stream.buffer(), b"some dataAAA");
        Ok(())
    })
}

#[test]
fn test_readuntil_multi_separator() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"line 1\nline 2\r");
        assert_eq!(
            stream.readuntil_any(&[&b"\r"[..], &b"\n"[..]]).await?,
            &b"line 1\n"[..]
        );
        assert_eq!(
            stream.readuntil_any(&[&b"\r"[..], &b"\n"[..]]).await?,
            &b"line 2\r"[..]
        );
        assert_eq!(stream.buffer(), b"");
        // The first end position wins, even for a longer separator.
        stream.feed_data(b"ABCDEFG");
        assert_eq!(
            stream.readuntil_any(&[&b"DEF"[..], &b"BCDE"[..]]).await?,
            &b"ABCDE"[..]
        );
        assert_eq!(stream.buffer(), b"FG");
        Ok(())
    })
}

#[test]
fn test_readuntil_multi_separator_limit() {
    with_loop(|loop_| async move {
        let stream = limited(&loop_, 3);
        stream.feed_data(b"some dataA");
        let err = stream
            .readuntil_any(&[b"A", b"ome dataA"])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is found"));
        assert_eq!(stream.buffer(), b"some dataA");
        Ok(())
    })
}

#[test]
fn test_readuntil_multi_separator_negative_offset() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"data");
        let s = stream.clone();
        let task =
            asyncio::create_task(async move { s.readuntil_any(&[b"A", b"long sep"]).await })?;
        feed_soon(&loop_, &stream, &[b"Z"], false);
        feed_soon(&loop_, &stream, &[b"Aaaa"], false);
        assert_eq!(task.await?, &b"dataZA"[..]);
        assert_eq!(stream.buffer(), b"aaa");
        Ok(())
    })
}

#[test]
fn test_readexactly_zero_or_less() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(DATA);
        assert_eq!(stream.readexactly(0).await?, &b""[..]);
        assert_eq!(stream.buffer(), DATA);
        Ok(())
    })
}

#[test]
fn test_readexactly() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        feed_soon(&loop_, &stream, &[DATA, DATA, DATA], false);
        let expected = [DATA, DATA].concat();
        assert_eq!(stream.readexactly(2 * DATA.len()).await?, expected);
        assert_eq!(stream.buffer(), DATA);
        Ok(())
    })
}

#[test]
fn test_readexactly_limit() {
    with_loop(|loop_| async move {
        let stream = limited(&loop_, 3);
        stream.feed_data(b"chunk");
        assert_eq!(stream.readexactly(5).await?, &b"chunk"[..]);
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_readexactly_eof() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        feed_soon(&loop_, &stream, &[DATA], true);
        let n = 2 * DATA.len();
        let err = stream.readexactly(n).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IncompleteReadError);
        assert_eq!(err.partial(), Some(DATA));
        assert_eq!(err.expected(), Some(n));
        assert_eq!(
            err.to_string(),
            "18 bytes read on a total of 36 expected bytes"
        );
        assert_eq!(stream.buffer(), b"");
        Ok(())
    })
}

#[test]
fn test_readexactly_exception() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        stream.feed_data(b"line\n");
        assert_eq!(stream.readexactly(2).await?, &b"li"[..]);
        stream.set_exception(asyncio::Error::bare(ErrorKind::ValueError));
        assert_eq!(
            stream.readexactly(2).await.unwrap_err().kind(),
            ErrorKind::ValueError
        );
        Ok(())
    })
}

#[test]
fn test_exception() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        assert!(stream.exception().is_none());
        stream.set_exception(asyncio::Error::bare(ErrorKind::ValueError));
        assert_eq!(stream.exception().unwrap().kind(), ErrorKind::ValueError);
        Ok(())
    })
}

#[test]
fn test_exception_waiter() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        let s = stream.clone();
        let t1 = asyncio::create_task(async move { s.readline().await })?;
        let s = stream.clone();
        let t2 = asyncio::create_task(async move {
            s.set_exception(asyncio::Error::bare(ErrorKind::ValueError));
            Ok(())
        })?;
        t2.await?;
        assert_eq!(t1.await.unwrap_err().kind(), ErrorKind::ValueError);
        Ok(())
    })
}

#[test]
fn test_exception_cancel() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        let s = stream.clone();
        let t = asyncio::create_task(async move { s.readline().await })?;
        asyncio::sleep(0.0).await?;
        t.cancel();
        asyncio::sleep(0.0).await?;
        // Fails if set_exception() is not careful.
        stream.set_exception(asyncio::Error::runtime("message"));
        asyncio::sleep(0.0).await?;
        assert!(t.cancelled());
        assert_eq!(
            format!("{stream:?}"),
            "<StreamReader exception=RuntimeError('message')>"
        );
        Ok(())
    })
}

#[test]
fn two_readers_at_once_are_refused() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        let s = stream.clone();
        let t = asyncio::create_task(async move { s.read(10).await })?;
        asyncio::sleep(0.0).await?;
        let err = stream.readline().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "readuntil() called while another coroutine is already waiting for incoming data"
        );
        stream.feed_data(b"x");
        assert_eq!(t.await?, &b"x"[..]);
        Ok(())
    })
}

async fn echo_line(reader: StreamReader, writer: StreamWriter) -> Result<()> {
    let data = reader.readline().await?;
    writer.write(&data)?;
    writer.drain().await?;
    writer.close();
    writer.wait_closed().await
}

async fn tcp_client(port: u16) -> Result<asyncio::Bytes> {
    let (reader, writer) = open_connection("127.0.0.1", port).await?;
    writer.write(b"hello world!\n")?;
    let back = reader.readline().await?;
    writer.close();
    writer.wait_closed().await?;
    Ok(back)
}

fn server_port(server: &asyncio::Server) -> u16 {
    match server.sockets()[0].getsockname() {
        Some(asyncio::Address::Inet(addr)) => addr.port(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn test_start_server() {
    with_loop(|loop_| async move {
        let seen = record_exceptions(&loop_);
        // A coroutine as the client handler, on a given socket.
        let sock = std::net::TcpListener::bind("127.0.0.1:0")?;
        let server = start_server(echo_line, "", 0).sock(sock).await?;
        let port = server_port(&server);
        assert_eq!(tcp_client(port).await?, &b"hello world!\n"[..]);
        server.close();
        server.wait_closed().await?;
        // A plain function that starts its own task.
        let server = start_server(
            |reader: StreamReader, writer: StreamWriter| -> Result<()> {
                asyncio::create_task(echo_line(reader, writer))?;
                Ok(())
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let port = server_port(&server);
        assert_eq!(tcp_client(port).await?, &b"hello world!\n"[..]);
        server.close();
        server.wait_closed().await?;
        assert!(seen.borrow().is_empty());
        Ok(())
    })
}

#[test]
fn test_start_unix_server() {
    with_loop(|loop_| async move {
        let seen = record_exceptions(&loop_);
        let dir = std::env::temp_dir().join(format!("asyncio-streams-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("sock");
        let server = start_unix_server(echo_line, &path).await?;
        let (reader, writer) = open_unix_connection(&path).await?;
        writer.write(b"hello world!\n")?;
        assert_eq!(reader.readline().await?, &b"hello world!\n"[..]);
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await?;
        std::fs::remove_dir_all(&dir)?;
        assert!(seen.borrow().is_empty());
        Ok(())
    })
}

#[test]
fn test_open_connection_error() {
    with_loop(|_loop| async move {
        // A port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let err = open_connection("127.0.0.1", port).await.err().unwrap();
        assert_eq!(err.python_name(), "ConnectionRefusedError");
        Ok(())
    })
}

#[test]
fn test_read_all_from_pipe_reader() {
    with_loop(|loop_| async move {
        let stream = reader(&loop_);
        let protocol = asyncio::StreamReaderProtocol::new(&loop_, Some(&stream), None);
        let child = std::process::Command::new("sh")
            .args(["-c", "printf data"])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut child = child;
        let stdout = child.stdout.take().unwrap();
        let p = protocol.clone();
        let (transport, _) = loop_.connect_read_pipe(move || p, stdout).await?;
        assert_eq!(stream.read(-1).await?, &b"data"[..]);
        transport.close();
        child.wait()?;
        Ok(())
    })
}

#[test]
fn test_multiple_drain() {
    with_loop(|_loop| async move {
        // Ten writers wait on a paused transport; all resume together.
        let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
        let (reader, writer) = asyncio::streams::open_connection("", 0).sock(a).await?;
        let writer = Rc::new(writer);
        writer.transport().set_write_buffer_limits(Some(1), None)?;
        writer.write(&vec![b'x'; 4 * 1024 * 1024])?;
        let drained = Rc::new(Cell::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let w = writer.clone();
            let d = drained.clone();
            tasks.push(asyncio::create_task(async move {
                w.drain().await?;
                d.set(d.get() + 1);
                Ok(())
            })?);
        }
        asyncio::sleep(0.01).await?;
        assert_eq!(drained.get(), 0);
        let sink = std::thread::spawn(move || {
            let mut buf = vec![0; 1 << 16];
            let mut total = 0;
            while total < 4 * 1024 * 1024 {
                total += b.read(&mut buf).unwrap();
            }
        });
        for t in tasks {
            t.await?;
        }
        assert_eq!(drained.get(), 10);
        sink.join().unwrap();
        drop(reader);
        writer.close();
        Ok(())
    })
}

#[test]
fn test_drain_raises() {
    with_loop(|loop_| async move {
        let seen = record_exceptions(&loop_);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let server = std::thread::spawn(move || {
            let (clt, _) = listener.accept().unwrap();
            drop(clt);
        });
        let (_reader, writer) = open_connection("127.0.0.1", port).await?;
        let err = loop {
            writer.write(b"foo\n")?;
            if let Err(e) = writer.drain().await {
                break e;
            }
        };
        assert!(
            [
                "ConnectionResetError",
                "ConnectionAbortedError",
                "BrokenPipeError"
            ]
            .contains(&err.python_name()),
            "{err:?}"
        );
        server.join().unwrap();
        assert!(seen.borrow().is_empty());
        Ok(())
    })
}

#[test]
#[allow(non_snake_case)]
fn test___repr__() {
    with_loop(|loop_| async move {
        assert_eq!(format!("{:?}", reader(&loop_)), "<StreamReader>");
        assert_eq!(
            format!("{:?}", limited(&loop_, 123)),
            "<StreamReader limit=123>"
        );
        let s = reader(&loop_);
        s.feed_eof();
        assert_eq!(format!("{s:?}"), "<StreamReader eof>");
        let s = reader(&loop_);
        s.feed_data(b"data");
        assert_eq!(format!("{s:?}"), "<StreamReader 4 bytes>");
        let s = reader(&loop_);
        s.set_exception(asyncio::Error::bare(ErrorKind::RuntimeError));
        assert_eq!(format!("{s:?}"), "<StreamReader exception=RuntimeError()>");
        let s = reader(&loop_);
        let r = s.clone();
        let t = asyncio::create_task(async move { r.read(1).await })?;
        asyncio::sleep(0.0).await?;
        assert!(format!("{s:?}").starts_with("<StreamReader waiter=<Future pending"));
        s.feed_data(b"x");
        t.await?;
        assert_eq!(format!("{s:?}"), "<StreamReader>");
        Ok(())
    })
}

/// `test_utils.run_test_server()`: answers one HTTP/1.0 request.
fn http_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let _ = conn.write_all(
            b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 12\r\n\r\nTest message",
        );
    });
    (port, handle)
}

#[test]
fn test_wait_closed_on_close() {
    with_loop(|_loop| async move {
        let (port, server) = http_server();
        let (rd, wr) = open_connection("127.0.0.1", port).await?;
        wr.write(b"GET / HTTP/1.0\r\n\r\n")?;
        assert_eq!(rd.readline().await?, &b"HTTP/1.0 200 OK\r\n"[..]);
        assert!(rd.read(-1).await?.ends_with(b"\r\n\r\nTest message"));
        assert!(!wr.is_closing());
        wr.close();
        assert!(wr.is_closing());
        wr.wait_closed().await?;
        server.join().unwrap();
        Ok(())
    })
}

#[test]
fn test_wait_closed_on_close_with_unread_data() {
    with_loop(|_loop| async move {
        let (port, server) = http_server();
        let (rd, wr) = open_connection("127.0.0.1", port).await?;
        wr.write(b"GET / HTTP/1.0\r\n\r\n")?;
        assert_eq!(rd.readline().await?, &b"HTTP/1.0 200 OK\r\n"[..]);
        wr.close();
        wr.wait_closed().await?;
        server.join().unwrap();
        Ok(())
    })
}

#[test]
fn test_async_writer_api_exception_after_close() {
    with_loop(|loop_| async move {
        let seen = record_exceptions(&loop_);
        let (port, server) = http_server();
        let (rd, wr) = open_connection("127.0.0.1", port).await?;
        wr.write(b"GET / HTTP/1.0\r\n\r\n")?;
        assert_eq!(rd.readline().await?, &b"HTTP/1.0 200 OK\r\n"[..]);
        assert!(rd.read(-1).await?.ends_with(b"Test message"));
        wr.close();
        wr.write(b"data")?;
        let err = wr.drain().await.unwrap_err();
        assert_eq!(err.python_name(), "ConnectionResetError");
        assert_eq!(err.to_string(), "Connection lost");
        server.join().unwrap();
        assert!(seen.borrow().is_empty());
        Ok(())
    })
}

#[test]
fn test_eof_feed_when_closing_writer() {
    with_loop(|loop_| async move {
        let seen = record_exceptions(&loop_);
        let (port, server) = http_server();
        let (rd, wr) = open_connection("127.0.0.1", port).await?;
        wr.close();
        wr.wait_closed().await?;
        assert!(rd.at_eof());
        assert_eq!(rd.read(-1).await?, &b""[..]);
        server.join().unwrap();
        assert!(seen.borrow().is_empty());
        Ok(())
    })
}

#[test]
fn test_unclosed_resource_warnings() {
    let ((), logs) = capture_logs(|| {
        with_loop(|loop_| async move {
            loop_.set_debug(true);
            let (port, server) = http_server();
            let (rd, wr) = open_connection("127.0.0.1", port).await?;
            wr.write(b"GET / HTTP/1.0\r\n\r\n")?;
            assert_eq!(rd.readline().await?, &b"HTTP/1.0 200 OK\r\n"[..]);
            assert!(rd.read(-1).await?.ends_with(b"Test message"));
            let transport = wr.transport();
            drop(wr);
            assert!(transport.is_closing(), "the dropped writer closed it");
            server.join().unwrap();
            Ok(())
        })
    });
    let unclosed: Vec<_> = logs
        .iter()
        .filter(|r| {
            r.message
                .starts_with("ResourceWarning: unclosed <StreamWriter")
        })
        .collect();
    assert_eq!(unclosed.len(), 1, "{logs:?}");
}

#[test]
fn test_unclosed_server_resource_warnings() {
    let ((), logs) = capture_logs(|| {
        with_loop(|loop_| async move {
            loop_.set_debug(true);
            let seen = record_exceptions(&loop_);
            let fut: Future<bool> = loop_.create_future();
            let f = fut.clone();
            let server = start_server(
                move |_reader: StreamReader, writer: StreamWriter| {
                    let f = f.clone();
                    async move {
                        let _ = f.set_result(true);
                        drop(writer);
                        Ok(())
                    }
                },
                "127.0.0.1",
                0,
            )
            .await?;
            let port = server_port(&server);
            let conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
            fut.clone().await?;
            drop(conn);
            server.close();
            server.wait_closed().await?;
            assert!(seen.borrow().is_empty());
            Ok(())
        })
    });
    assert!(
        logs.iter().any(|r| r
            .message
            .starts_with("ResourceWarning: unclosed <StreamWriter")),
        "{logs:?}"
    );
}

async fn unhandled(
    loop_: &EventLoop,
    handler: impl Fn(StreamReader, StreamWriter) -> asyncio::base_events::LocalBoxFuture<'static, Result<()>>
        + 'static,
) -> Result<Rc<RefCell<Vec<common::Seen>>>> {
    let seen = record_exceptions(loop_);
    let server = start_server(handler, "127.0.0.1", 0).await?;
    let port = server_port(&server);
    let (_rd, wr) = open_connection("127.0.0.1", port).await?;
    wr.write(b"test msg")?;
    wr.drain().await?;
    wr.close();
    wr.wait_closed().await?;
    // Let the handler's task end.
    for _ in 0..10 {
        asyncio::sleep(0.0).await?;
    }
    server.close();
    server.wait_closed().await?;
    Ok(seen)
}

#[test]
fn test_unhandled_exception() {
    with_loop(|loop_| async move {
        let seen = unhandled(&loop_, |_r, _w| {
            Box::pin(async { Err(asyncio::Error::new(ErrorKind::Exception, "test")) })
        })
        .await?;
        let seen = seen.borrow();
        assert_eq!(
            seen[0].message,
            "Unhandled exception in client_connected_cb"
        );
        assert_eq!(
            seen[0].exception,
            Some((ErrorKind::Exception, "test".into()))
        );
        assert!(seen[0].keys.contains(&"transport".to_owned()));
        Ok(())
    })
}

#[test]
fn test_unhandled_cancel() {
    with_loop(|loop_| async move {
        let seen = unhandled(&loop_, |_r, w| {
            Box::pin(async move {
                w.close();
                asyncio::current_task()?.unwrap().cancel();
                asyncio::sleep(0.0).await
            })
        })
        .await?;
        assert!(seen.borrow().is_empty());
        Ok(())
    })
}

#[test]
fn reading_pauses_above_twice_the_limit_and_resumes_below_it() {
    with_loop(|_loop| async move {
        let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
        let (reader, writer) = open_connection("", 0).sock(a).limit(16).await?;
        let transport = writer.transport();
        b.write_all(&[b'y'; 100])?;
        // Fed until above 2 × 16 bytes buffered, then paused.
        while transport.is_reading() {
            asyncio::sleep(0.001).await?;
        }
        assert!(reader.buffered() > 32);
        assert!(format!("{reader:?}").ends_with(" paused>"));
        // Reading down to the limit resumes.
        let first = reader.read(reader.buffered() as isize - 16).await?.len();
        assert!(transport.is_reading());
        // Everything left, more than the limit at once.
        assert_eq!(
            reader.readexactly(100 - first).await?,
            vec![b'y'; 100 - first]
        );
        writer.close();
        Ok(())
    })
}

/// The transport reads straight into the reader's buffer and reads hand
/// out pieces of it: pieces kept while later data arrives (in one block,
/// then in new ones) keep their bytes, and a 1 MiB stream comes through
/// whole, in order.
#[test]
fn pieces_read_from_a_connection_stay_intact_while_reading_goes_on() {
    with_loop(|_loop| async move {
        let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
        let (reader, writer) = open_connection("", 0).sock(a).await?;
        let mut lines = Vec::new();
        for i in 0..300 {
            // One line per transport read: the next is sent once this one is in.
            b.write_all(format!("line {i:04} {}\n", "x".repeat(i % 50)).as_bytes())?;
            lines.push(reader.readline().await?);
        }
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line, &format!("line {i:04} {}\n", "x".repeat(i % 50)));
        }
        let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let sender = std::thread::spawn(move || b.write_all(&big).map(|()| b));
        let mut got = Vec::new();
        let mut pieces = Vec::new();
        while got.len() < 1 << 20 {
            let piece = reader.read(65536).await?;
            assert!(!piece.is_empty());
            got.extend_from_slice(&piece);
            pieces.push(piece);
        }
        let b = sender.join().unwrap()?;
        drop(b);
        assert_eq!(reader.read(-1).await?, "");
        assert!(got.iter().enumerate().all(|(i, &v)| v == (i % 251) as u8));
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(joined, got);
        writer.close();
        Ok(())
    })
}

#[test]
fn dropping_the_reader_leaves_the_writer_working() {
    with_loop(|_loop| async move {
        // Data arriving after the caller dropped its reader is buffered
        // for the writer's copy (as in CPython, the writer keeps the
        // reader for drain()); writing goes on.
        let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
        let (reader, writer) = open_connection("", 0).sock(a).await?;
        drop(reader);
        b.write_all(b"ignored")?;
        writer.write(b"still writes")?;
        writer.drain().await?;
        // Read the other end without blocking the loop, which sends.
        b.set_nonblocking(true)?;
        let mut got = Vec::new();
        let deadline = asyncio::get_running_loop()?.time() + 20.0;
        while got.len() < 12 {
            assert!(
                asyncio::get_running_loop()?.time() < deadline,
                "nothing sent"
            );
            let mut buf = [0; 12];
            match b.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    asyncio::sleep(0.001).await?
                }
                Err(e) => return Err(e.into()),
            }
        }
        assert_eq!(got, b"still writes");
        writer.close();
        writer.wait_closed().await?;
        Ok(())
    })
}

#[test]
fn descriptors_come_back_after_many_connections() {
    if !common::in_child("descriptors_come_back_after_many_connections") {
        return;
    }
    async fn round(n: usize) -> Result<()> {
        let server = start_server(echo_line, "127.0.0.1", 0).await?;
        let port = server_port(&server);
        for _ in 0..n {
            assert_eq!(tcp_client(port).await?, &b"hello world!\n"[..]);
        }
        server.close();
        server.wait_closed().await?;
        Ok(())
    }
    // A warm-up loop, then loops whose sockets all close with them.
    with_loop(|_loop| async move { round(2).await });
    let before = common::open_fds();
    for _ in 0..3 {
        with_loop(|_loop| async move { round(50).await });
    }
    assert_eq!(common::open_fds(), before);
}

/// A read woken by data but cancelled before it resumed raises
/// `CancelledError` and leaves the data for the next read; the reader is
/// free to wait again at once (CPython clears `_waiter` when it wakes it).
#[test]
fn test_read_cancelled_after_wakeup_keeps_data() {
    with_loop(|loop_| async move {
        let s = reader(&loop_);
        let r = s.clone();
        let t = asyncio::create_task(async move { r.read(10).await })?;
        asyncio::sleep(0.0).await?;
        assert_eq!(
            format!("{s:?}"),
            "<StreamReader waiter=<Future pending cb=[Task.task_wakeup()]>>"
        );
        s.feed_data(b"abc");
        assert_eq!(format!("{s:?}"), "<StreamReader 3 bytes>");
        assert!(t.cancel());
        assert!(t.take().await.unwrap_err().is_cancelled());
        assert_eq!(s.buffer(), b"abc");
        assert_eq!(s.read(10).await?, &b"abc"[..]);
        Ok(())
    })
}

/// A read cancelled while it waits frees the reader for the next read.
#[test]
fn test_read_cancelled_while_waiting() {
    with_loop(|loop_| async move {
        let s = reader(&loop_);
        let r = s.clone();
        let t = asyncio::create_task(async move { r.read(10).await })?;
        asyncio::sleep(0.0).await?;
        t.cancel();
        assert!(t.take().await.unwrap_err().is_cancelled());
        assert_eq!(format!("{s:?}"), "<StreamReader>");
        feed_soon(&loop_, &s, &[b"late"], false);
        assert_eq!(s.read(10).await?, &b"late"[..]);
        Ok(())
    })
}

/// After the wake-up and before the woken read resumes, a second reader
/// may start waiting (no "already waiting" error), as in CPython.
#[test]
fn test_second_read_after_wakeup() {
    with_loop(|loop_| async move {
        let s = reader(&loop_);
        let r1 = s.clone();
        let t1 = asyncio::create_task(async move { r1.read(10).await })?;
        asyncio::sleep(0.0).await?;
        s.feed_data(b"one");
        let r2 = s.clone();
        let t2 = asyncio::create_task(async move { r2.read(10).await })?;
        asyncio::sleep(0.0).await?;
        assert_eq!(t1.take().await?, &b"one"[..]);
        assert!(!t2.done());
        s.feed_eof();
        assert_eq!(t2.take().await?, &b""[..]);
        Ok(())
    })
}

/// `set_exception` on a waiting read raises that error in the read.
#[test]
fn test_set_exception_wakes_waiting_read() {
    with_loop(|loop_| async move {
        let s = reader(&loop_);
        let r = s.clone();
        let t = asyncio::create_task(async move { r.readline().await })?;
        asyncio::sleep(0.0).await?;
        s.set_exception(asyncio::Error::value("boom"));
        let e = t.take().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueError);
        assert_eq!(e.message(), "boom");
        Ok(())
    })
}

/// Reading in a task of another loop is CPython's "attached to a
/// different loop" `RuntimeError`.
#[test]
fn test_read_from_other_loop() {
    let other = asyncio::new_event_loop().unwrap();
    let s = reader(&other);
    let err = with_loop(move |_loop| async move { Ok(s.read(1).await.unwrap_err()) });
    assert_eq!(err.kind(), ErrorKind::RuntimeError);
    let msg = err.message();
    assert!(msg.starts_with("Task <Task pending name="), "{msg}");
    assert!(
        msg.ends_with("got Future <Future pending> attached to a different loop"),
        "{msg}"
    );
    other.close().unwrap();
}
