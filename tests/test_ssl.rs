//! TLS over real loopback sockets, after CPython's `test_asyncio/test_ssl.py`
//! and `test_sslproto.py`: handshakes both ways, verification failures,
//! STARTTLS, flow control, close_notify and abort, handshake timeouts,
//! large transfers, and the refusals. Certificates are made at test time.

mod common;
mod tls_common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;

use asyncio::protocols::{BaseProtocol, BufferedProtocol, Protocol};
use asyncio::ssl::{self, Protocol as TlsProtocol, SslContext, VerifyMode};
use asyncio::streams::{open_connection, open_unix_connection, start_server, start_unix_server};
use asyncio::transports::{ExtraInfo, Transport};
use asyncio::{Error, ErrorKind, EventLoop, Future, Result};
use common::{on_loop, record_exceptions};
use tls_common::{echo_server, pki, port_of};

#[test]
fn test_streams_echo_over_tls() {
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    on_loop(|_| async move {
        let server = echo_server(&server_ctx).await?;
        let port = port_of(&server);
        let (reader, writer) = open_connection("127.0.0.1", port)
            .ssl(&client_ctx)
            .server_hostname("localhost")
            .await?;
        writer.write(b"hello tls\n")?;
        writer.drain().await?;
        assert_eq!(reader.readline().await?, &b"hello tls\n"[..]);
        let transport = writer.transport();
        assert!(format!("{transport:?}").starts_with("<asyncio.sslproto._SSLProtocolTransport"));
        assert!(!transport.can_write_eof());
        let e = transport.write_eof().unwrap_err();
        assert_eq!(e.python_name(), "NotImplementedError");
        assert_eq!(e.kind(), ErrorKind::RuntimeError);
        let Some(ExtraInfo::PeerCert(cert)) = writer.get_extra_info("peercert") else {
            panic!("no peercert");
        };
        assert_eq!(cert.common_name(), Some("localhost"));
        let text = format!("{cert:?}");
        assert!(
            text.starts_with("{'subject': ((('commonName', 'localhost'),), (('organizationName', 'asyncio-rs tests'),)), 'issuer': ((('commonName', 'asyncio-rs test CA'),),), 'version': 3, 'serialNumber': '"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "'subjectAltName': (('DNS', 'localhost'), ('IP Address', '127.0.0.1'))}"
            ),
            "{text}"
        );
        assert!(text.contains(" GMT', 'notAfter': '"), "{text}");
        let Some(ExtraInfo::Cipher(cipher)) = writer.get_extra_info("cipher") else {
            panic!("no cipher");
        };
        assert_eq!(cipher.version, "TLSv1.3");
        assert!(cipher.name.starts_with("TLS_"), "{cipher:?}");
        let Some(ExtraInfo::SslObject(obj)) = writer.get_extra_info("ssl_object") else {
            panic!("no ssl_object");
        };
        assert_eq!(obj.version(), Some("TLSv1.3"));
        assert!(!obj.server_side());
        assert_eq!(obj.server_hostname(), Some("localhost"));
        assert!(obj.getpeercert_der().is_some());
        assert!(writer.get_extra_info("compression").is_none());
        assert!(matches!(
            writer.get_extra_info("sslcontext"),
            Some(ExtraInfo::SslContext(_))
        ));
        // The TCP transport's own information shows through.
        assert!(writer.get_extra_info("peername").is_some());
        assert!(writer.get_extra_info("socket").is_some());
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await
    });
}

/// The connection fails with `err`'s kind and message when made with
/// `client` to a TLS echo server using `server_ctx`.
fn connect_error(server_ctx: SslContext, client: SslContext, hostname: &str) -> Error {
    let hostname = hostname.to_owned();
    on_loop(move |loop_| async move {
        let seen = record_exceptions(&loop_);
        let server = echo_server(&server_ctx).await?;
        let port = port_of(&server);
        let err = open_connection("127.0.0.1", port)
            .ssl(&client)
            .server_hostname(hostname)
            .await
            .unwrap_err();
        server.close();
        server.wait_closed().await?;
        // Not in debug mode: a failed handshake is not reported (OSError).
        assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
        Ok(err)
    })
}

#[test]
fn test_untrusted_issuer() {
    let pki = pki();
    let e = connect_error(
        pki.server(),
        SslContext::new(TlsProtocol::TlsClient),
        "localhost",
    );
    assert_eq!(e.python_name(), "SSLCertVerificationError");
    assert_eq!(e.kind(), ErrorKind::OSError);
    assert!(ssl::is_ssl_error(&e));
    assert_eq!(
        e.message(),
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate"
    );
    // A certificate from a CA the client does not trust.
    let e = connect_error(
        pki.server_with(&pki.rogue_cert, &pki.rogue_key),
        pki.client(),
        "localhost",
    );
    assert!(ssl::is_cert_verification_error(&e));
}

/// CPython's `StreamReaderProtocol._over_ssl`: over TLS `eof_received`
/// returns false, so reading a TLS stream to its end logs nothing (a true
/// would make `sslproto` warn "returning true from eof_received() has no
/// effect when using ssl"), on either side, also after STARTTLS.
#[test]
fn test_streams_eof_over_tls_logs_nothing() {
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    let starttls_server = pki.server();
    let starttls_client = pki.client();
    let ((), logs) = common::capture_logs(|| {
        on_loop(|_| async move {
            // The server sees the client's close_notify as its EOF.
            let server = echo_server(&server_ctx).await?;
            let (reader, writer) = open_connection("127.0.0.1", port_of(&server))
                .ssl(&client_ctx)
                .server_hostname("localhost")
                .await?;
            writer.write(b"one\n")?;
            assert_eq!(reader.readline().await?, &b"one\n"[..]);
            writer.close();
            writer.wait_closed().await?;
            server.close();
            server.wait_closed().await?;

            // The client reads to the end of a STARTTLS stream the server
            // closed.
            let server = start_server(
                move |reader: asyncio::StreamReader, writer: asyncio::StreamWriter| {
                    let ctx = starttls_server.clone();
                    async move {
                        assert_eq!(reader.readline().await?, &b"STARTTLS\n"[..]);
                        writer.write(b"go\n")?;
                        writer.start_tls(&ctx, None).await?;
                        writer.write(b"bye\n")?;
                        writer.close();
                        writer.wait_closed().await
                    }
                },
                "127.0.0.1",
                0,
            )
            .await?;
            let (reader, writer) = open_connection("127.0.0.1", port_of(&server)).await?;
            writer.write(b"STARTTLS\n")?;
            assert_eq!(reader.readline().await?, &b"go\n"[..]);
            writer
                .start_tls(&starttls_client, Some("localhost"))
                .await?;
            assert_eq!(reader.read(-1).await?, &b"bye\n"[..]);
            assert!(reader.at_eof());
            writer.close();
            writer.wait_closed().await?;
            server.close();
            server.wait_closed().await
        })
    });
    let warnings: Vec<_> = logs
        .iter()
        .filter(|r| r.message.contains("eof_received"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn test_wrong_hostname() {
    let pki = pki();
    let e = connect_error(pki.server(), pki.client(), "wrong.example");
    assert_eq!(
        e.message(),
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, certificate is not valid for 'wrong.example'."
    );
    // check_hostname off: the chain is still checked, the name is not.
    let client = pki.client();
    client.set_check_hostname(false);
    let pki2 = pki;
    let server_ctx = pki2.server();
    on_loop(move |_| async move {
        let server = echo_server(&server_ctx).await?;
        let (reader, writer) = open_connection("127.0.0.1", port_of(&server))
            .ssl(&client)
            .server_hostname("wrong.example")
            .await?;
        writer.write(b"ok\n")?;
        assert_eq!(reader.readline().await?, &b"ok\n"[..]);
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_expired_certificate() {
    let pki = pki();
    let e = connect_error(
        pki.server_with(&pki.expired_cert, &pki.expired_key),
        pki.client(),
        "localhost",
    );
    assert_eq!(
        e.message(),
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired"
    );
}

#[test]
fn test_cert_none_accepts_anything() {
    let pki = pki();
    let client = SslContext::new(TlsProtocol::TlsClient);
    client.set_check_hostname(false);
    client.set_verify_mode(VerifyMode::CertNone).unwrap();
    let server_ctx = pki.server_with(&pki.rogue_cert, &pki.rogue_key);
    on_loop(move |_| async move {
        let server = echo_server(&server_ctx).await?;
        let (reader, writer) = open_connection("127.0.0.1", port_of(&server))
            .ssl(&client)
            .await?;
        writer.write(b"x\n")?;
        assert_eq!(reader.readline().await?, &b"x\n"[..]);
        // Not validated: Python's getpeercert() gives {}.
        let Some(ExtraInfo::PeerCert(cert)) = writer.get_extra_info("peercert") else {
            panic!("no peercert");
        };
        assert_eq!(format!("{cert:?}"), "{}");
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_client_certificate_required() {
    let pki = pki();
    let server_ctx = pki.server_requiring_clients();
    let with_cert = pki.client();
    with_cert
        .load_cert_chain(&pki.client_cert, Some(&pki.client_key), None)
        .unwrap();
    let without = pki.client();
    on_loop(move |_| async move {
        let peer: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
        let p = peer.clone();
        let server = start_server(
            move |reader: asyncio::StreamReader, writer: asyncio::StreamWriter| {
                if let Some(ExtraInfo::PeerCert(c)) = writer.get_extra_info("peercert") {
                    *p.borrow_mut() = c.common_name().map(str::to_owned);
                }
                async move {
                    let line = reader.readline().await?;
                    writer.write(&line)?;
                    writer.drain().await?;
                    writer.close();
                    Ok(())
                }
            },
            "127.0.0.1",
            0,
        )
        .ssl(&server_ctx)
        .await?;
        let port = port_of(&server);
        let (reader, writer) = open_connection("127.0.0.1", port)
            .ssl(&with_cert)
            .server_hostname("localhost")
            .await?;
        writer.write(b"me\n")?;
        assert_eq!(reader.readline().await?, &b"me\n"[..]);
        assert_eq!(peer.borrow().as_deref(), Some("client"));
        writer.close();
        writer.wait_closed().await?;
        // Without a certificate: TLS 1.3 clients finish their side of the
        // handshake first; the server's alert ends the connection.
        let outcome = async {
            let (reader, writer) = open_connection("127.0.0.1", port)
                .ssl(&without)
                .server_hostname("localhost")
                .await?;
            writer.write(b"anyone\n")?;
            reader.readline().await
        }
        .await;
        match outcome {
            Err(e) => assert!(
                e.message().contains("CERTIFICATE_REQUIRED") || ssl::is_ssl_error(&e),
                "{e}"
            ),
            Ok(line) => assert_eq!(line, &b""[..]),
        }
        server.close();
        server.wait_closed().await
    });
}

// ===== protocols =====

/// Records what a protocol is told.
#[derive(Default)]
struct Recorder {
    events: RefCell<Vec<String>>,
    data: RefCell<Vec<u8>>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    lost: RefCell<Option<Future<()>>>,
    eof_future: RefCell<Option<Future<()>>>,
    pause_on_connect: Cell<bool>,
}

impl Recorder {
    fn new(loop_: &EventLoop) -> Recorder {
        let r = Recorder::default();
        *r.lost.borrow_mut() = Some(Future::new(loop_));
        *r.eof_future.borrow_mut() = Some(Future::new(loop_));
        r
    }
    fn lost(&self) -> Future<()> {
        self.lost.borrow().clone().unwrap()
    }
    fn eof(&self) -> Future<()> {
        self.eof_future.borrow().clone().unwrap()
    }
}

impl BaseProtocol for Recorder {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        self.events.borrow_mut().push(match &exc {
            None => "lost".to_owned(),
            Some(e) => format!("lost {}: {}", e.python_name(), e.message()),
        });
        self.transport.borrow_mut().take();
        let _ = self.lost().set_result(());
        Ok(())
    }
    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        self.events.borrow_mut().push("pause_writing".into());
        Ok(())
    }
    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        self.events.borrow_mut().push("resume_writing".into());
        Ok(())
    }
}

impl Protocol for Recorder {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> Result<()> {
        self.events.borrow_mut().push("made".into());
        if self.pause_on_connect.get() {
            transport.pause_reading();
        }
        *self.transport.borrow_mut() = Some(transport);
        Ok(())
    }
    fn data_received(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        self.data.borrow_mut().extend_from_slice(data);
        Ok(())
    }
    fn eof_received(self: &Rc<Self>) -> Result<bool> {
        self.events.borrow_mut().push("eof".into());
        let _ = self.eof().set_result(());
        Ok(false)
    }
}

/// The last server-side [`Recorder`] a [`recorder_server`] made.
type Made = Rc<RefCell<Option<Rc<Recorder>>>>;

/// A TLS server of [`Recorder`]s (each pausing its reading at once with
/// `pause`), with the shutdown timeout given.
async fn recorder_server(
    loop_: &EventLoop,
    ctx: &SslContext,
    pause: bool,
    shutdown_timeout: Option<f64>,
) -> Result<(asyncio::Server, Made)> {
    let made: Made = Rc::new(RefCell::new(None));
    let (m, l) = (made.clone(), loop_.clone());
    let mut builder = loop_
        .create_server(move || {
            let r = Rc::new(Recorder::new(&l));
            r.pause_on_connect.set(pause);
            *m.borrow_mut() = Some(r.clone());
            r
        })
        .host("127.0.0.1")
        .port(0)
        .ssl(ctx);
    if let Some(t) = shutdown_timeout {
        builder = builder.ssl_shutdown_timeout(t);
    }
    Ok((builder.await?, made))
}

/// A TLS client [`Recorder`] connected to `port` (as `localhost`).
async fn recorder_client(
    loop_: &EventLoop,
    port: u16,
    ctx: &SslContext,
) -> Result<(Rc<dyn Transport>, Rc<Recorder>)> {
    let l = loop_.clone();
    loop_
        .create_connection(move || Recorder::new(&l))
        .host("127.0.0.1")
        .port(port)
        .ssl(ctx)
        .server_hostname("localhost")
        .await
}

#[test]
fn test_close_sends_close_notify() {
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    on_loop(move |loop_| async move {
        let (server, made) = recorder_server(&loop_, &server_ctx, false, None).await?;
        let port = port_of(&server);
        let (transport, client) = recorder_client(&loop_, port, &client_ctx).await?;
        assert_eq!(*client.events.borrow(), ["made"]);
        transport.write(b"bye")?;
        transport.close();
        assert!(transport.is_closing());
        client.lost().await?;
        while made.borrow().is_none() {
            asyncio::sleep(0.005).await?;
        }
        let server_side = made.borrow().clone().unwrap();
        server_side.lost().await?;
        assert_eq!(*server_side.data.borrow(), b"bye");
        assert_eq!(*server_side.events.borrow(), ["made", "eof", "lost"]);
        assert_eq!(*client.events.borrow(), ["made", "eof", "lost"]);
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_abort_sends_nothing() {
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    on_loop(move |loop_| async move {
        let (server, made) = recorder_server(&loop_, &server_ctx, false, None).await?;
        let port = port_of(&server);
        let (transport, client) = recorder_client(&loop_, port, &client_ctx).await?;
        while made
            .borrow()
            .as_ref()
            .is_none_or(|r| r.events.borrow().is_empty())
        {
            asyncio::sleep(0.005).await?;
        }
        transport.abort();
        client.lost().await?;
        assert_eq!(*client.events.borrow(), ["made", "lost"]);
        // The server sees the stream end without close_notify.
        let server_side = made.borrow().clone().unwrap();
        server_side.lost().await?;
        // As CPython: the end of the stream without close_notify is an
        // EOF, and nothing is sent back.
        assert_eq!(*server_side.events.borrow(), ["made", "eof", "lost"]);
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_flow_control_with_a_peer_that_does_not_read() {
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    on_loop(move |loop_| async move {
        let (server, made) = recorder_server(&loop_, &server_ctx, true, None).await?;
        let (transport, client) = recorder_client(&loop_, port_of(&server), &client_ctx).await?;
        assert_eq!(
            transport.get_write_buffer_limits(),
            (128 * 1024, 512 * 1024)
        );
        // Only `low` given: `high` is four times it (CPython's rule).
        transport.set_write_buffer_limits(None, Some(1024 * 1024))?;
        assert_eq!(
            transport.get_write_buffer_limits(),
            (1024 * 1024, 4096 * 1024)
        );
        transport.set_write_buffer_limits(None, None)?;
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        for _ in 0..400 {
            transport.write(&chunk)?;
            sent += chunk.len();
            asyncio::sleep(0.0).await?;
            if client.events.borrow().contains(&"pause_writing".to_owned()) {
                break;
            }
        }
        assert!(
            client.events.borrow().contains(&"pause_writing".to_owned()),
            "never paused after {sent} bytes"
        );
        assert!(transport.get_write_buffer_size() >= 512 * 1024);
        let server_side = made.borrow().clone().unwrap();
        assert!(server_side.data.borrow().is_empty());
        // Reading resumes: everything arrives, and the writer is resumed.
        let st = server_side.transport.borrow().clone().unwrap();
        assert!(!st.is_reading());
        st.resume_reading();
        while server_side.data.borrow().len() < sent {
            asyncio::sleep(0.001).await?;
        }
        assert_eq!(server_side.data.borrow().len(), sent);
        assert!(client
            .events
            .borrow()
            .contains(&"resume_writing".to_owned()));
        transport.close();
        client.lost().await?;
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_large_transfer_byte_for_byte() {
    const TOTAL: usize = 64 * 1024 * 1024;
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    on_loop(move |_| async move {
        let server = start_server(
            |reader: asyncio::StreamReader, writer: asyncio::StreamWriter| async move {
                let mut index = 0usize;
                let mut sum = 0u64;
                while index < TOTAL {
                    let data = reader.read(256 * 1024).await?;
                    assert!(!data.is_empty(), "the stream ended at {index}");
                    for b in &data {
                        // Each byte is the one the client wrote at that position.
                        assert_eq!(*b, (index % 251) as u8, "at {index}");
                        index += 1;
                        sum += u64::from(*b);
                    }
                }
                writer.write(format!("{index} {sum}\n").as_bytes())?;
                writer.drain().await?;
                writer.close();
                writer.wait_closed().await
            },
            "127.0.0.1",
            0,
        )
        .ssl(&server_ctx)
        .await?;
        let (reader, writer) = open_connection("127.0.0.1", port_of(&server))
            .ssl(&client_ctx)
            .server_hostname("localhost")
            .await?;
        let block: Vec<u8> = (0..251 * 1024).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        let mut expected_sum = 0u64;
        while sent < TOTAL {
            let n = block.len().min(TOTAL - sent);
            writer.write(&block[..n])?;
            expected_sum += block[..n].iter().map(|b| u64::from(*b)).sum::<u64>();
            sent += n;
            writer.drain().await?;
        }
        let answer = reader.readline().await?;
        assert_eq!(
            String::from_utf8(answer.to_vec()).unwrap(),
            format!("{TOTAL} {expected_sum}\n")
        );
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_buffered_protocol_over_tls() {
    struct Buf {
        buf: RefCell<Vec<u8>>,
        got: RefCell<Vec<u8>>,
        done: Future<()>,
    }
    impl BaseProtocol for Buf {}
    impl BufferedProtocol for Buf {
        fn get_buffer(
            self: &Rc<Self>,
            _hint: Option<usize>,
        ) -> Result<std::cell::RefMut<'_, [u8]>> {
            Ok(std::cell::RefMut::map(
                self.buf.borrow_mut(),
                |b| &mut b[..],
            ))
        }
        fn buffer_updated(self: &Rc<Self>, n: usize) -> Result<()> {
            let chunk = self.buf.borrow()[..n].to_vec();
            self.got.borrow_mut().extend_from_slice(&chunk);
            if self.got.borrow().ends_with(b"END\n") {
                let _ = self.done.set_result(());
            }
            Ok(())
        }
    }
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    on_loop(move |loop_| async move {
        let server = echo_server(&server_ctx).await?;
        let l = loop_.clone();
        let (transport, proto) = loop_
            .create_connection(move || {
                asyncio::protocols::Buffered(Buf {
                    buf: RefCell::new(vec![0; 7]),
                    got: RefCell::new(Vec::new()),
                    done: Future::new(&l),
                })
            })
            .host("127.0.0.1")
            .port(port_of(&server))
            .ssl(&client_ctx)
            .server_hostname("localhost")
            .await?;
        transport.write(b"a line through a small buffer\nEND\n")?;
        transport.write(b"")?;
        let done = proto.done.clone();
        done.await?;
        assert_eq!(
            *proto.got.borrow(),
            b"a line through a small buffer\nEND\n".to_vec()
        );
        transport.close();
        server.close();
        server.wait_closed().await
    });
}

// ===== STARTTLS =====

#[test]
fn test_start_tls_both_ends() {
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    on_loop(move |_| async move {
        let server = start_server(
            move |reader: asyncio::StreamReader, writer: asyncio::StreamWriter| {
                let ctx = server_ctx.clone();
                async move {
                    assert_eq!(reader.readline().await?, &b"STARTTLS\n"[..]);
                    writer.write(b"GO\n")?;
                    writer.start_tls(&ctx, None).await?;
                    assert!(writer.get_extra_info("ssl_object").is_some());
                    let line = reader.readline().await?;
                    writer.write(b"secret: ")?;
                    writer.write(&line)?;
                    writer.drain().await?;
                    writer.close();
                    writer.wait_closed().await
                }
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let (reader, writer) = open_connection("127.0.0.1", port_of(&server)).await?;
        assert!(writer.get_extra_info("sslcontext").is_none());
        writer.write(b"STARTTLS\n")?;
        assert_eq!(reader.readline().await?, &b"GO\n"[..]);
        writer.start_tls(&client_ctx, Some("localhost")).await?;
        assert!(matches!(
            writer.get_extra_info("sslcontext"),
            Some(ExtraInfo::SslContext(_))
        ));
        writer.write(b"over tls\n")?;
        assert_eq!(reader.readline().await?, &b"secret: over tls\n"[..]);
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_start_tls_failure_closes_transport() {
    let pki = pki();
    let server_ctx = pki.server();
    let untrusting = SslContext::new(TlsProtocol::TlsClient);
    on_loop(move |_| async move {
        let server = start_server(
            move |reader: asyncio::StreamReader, writer: asyncio::StreamWriter| {
                let ctx = server_ctx.clone();
                async move {
                    let _ = reader.readline().await?;
                    let _ = writer.start_tls(&ctx, None).await;
                    Ok(())
                }
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let (_reader, writer) = open_connection("127.0.0.1", port_of(&server)).await?;
        writer.write(b"STARTTLS\n")?;
        let e = writer
            .start_tls(&untrusting, Some("localhost"))
            .await
            .unwrap_err();
        assert!(ssl::is_cert_verification_error(&e), "{e}");
        assert!(writer.transport().is_closing());
        server.close();
        server.wait_closed().await
    });
}

// ===== timeouts =====

#[test]
fn test_client_handshake_timeout() {
    // A TCP server that accepts and never speaks TLS.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        // Read until the client gives up and closes.
        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
    });
    let pki = pki();
    let client_ctx = pki.client();
    let e = on_loop(move |_| async move {
        Ok(open_connection("127.0.0.1", port)
            .ssl(&client_ctx)
            .server_hostname("localhost")
            .ssl_handshake_timeout(0.2)
            .await
            .unwrap_err())
    });
    assert_eq!(e.python_name(), "ConnectionAbortedError");
    assert_eq!(
        e.message(),
        "SSL handshake is taking longer than 0.2 seconds: aborting the connection"
    );
    holder.join().unwrap();
}

#[test]
fn test_server_cuts_a_client_that_never_speaks_tls() {
    let pki = pki();
    let server_ctx = pki.server();
    let client_ctx = pki.client();
    on_loop(move |loop_| async move {
        let seen = record_exceptions(&loop_);
        let server = start_server(
            |reader: asyncio::StreamReader, writer: asyncio::StreamWriter| async move {
                let line = reader.readline().await?;
                writer.write(&line)?;
                writer.close();
                Ok(())
            },
            "127.0.0.1",
            0,
        )
        .ssl(&server_ctx)
        .ssl_handshake_timeout(0.2)
        .await?;
        let port = port_of(&server);
        // A silent TCP client, in a thread: it sees the end of the stream.
        let silent = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut buf = [0u8; 64];
            s.read(&mut buf).unwrap_or(0)
        });
        // A client speaking garbage: cut with an error, quietly.
        let garbage = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
        });
        // Meanwhile a real client is served.
        let (reader, writer) = open_connection("127.0.0.1", port)
            .ssl(&client_ctx)
            .server_hostname("localhost")
            .await?;
        writer.write(b"still served\n")?;
        assert_eq!(reader.readline().await?, &b"still served\n"[..]);
        while !silent.is_finished() || !garbage.is_finished() {
            asyncio::sleep(0.02).await?;
        }
        assert_eq!(silent.join().unwrap(), 0);
        garbage.join().unwrap();
        assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
        writer.close();
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_server_handshake_failure_reported_in_debug_mode() {
    let pki = pki();
    let server_ctx = pki.server();
    on_loop(move |loop_| async move {
        loop_.set_debug(true);
        let seen = record_exceptions(&loop_);
        let server = echo_server(&server_ctx).await?;
        let port = port_of(&server);
        let garbage = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"definitely not TLS\r\n\r\n").unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
        });
        while !garbage.is_finished() {
            asyncio::sleep(0.02).await?;
        }
        garbage.join().unwrap();
        asyncio::sleep(0.01).await?;
        let seen = seen.borrow().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            seen[0].message,
            "Error on transport creation for incoming connection"
        );
        assert!(ssl::is_ssl_error(
            seen[0].context.exception.as_ref().unwrap()
        ));
        server.close();
        server.wait_closed().await
    });
}

// ===== refusals =====

#[test]
fn test_refusals() {
    let pki = pki();
    let client_ctx = pki.client();
    let server_ctx = pki.server();
    on_loop(move |loop_| async move {
        let err = |r: Result<()>| r.unwrap_err().to_string();
        let l = loop_.clone();
        let connect = |ctx: Option<&SslContext>| {
            let mut b = l
                .create_connection(Recorder::default)
                .host("127.0.0.1")
                .port(1);
            if let Some(ctx) = ctx {
                b = b.ssl(ctx);
            }
            b
        };
        assert_eq!(
            err(connect(None).server_hostname("x").await.map(|_| ())),
            "server_hostname is only meaningful with ssl"
        );
        assert_eq!(
            err(connect(None).ssl_handshake_timeout(1.0).await.map(|_| ())),
            "ssl_handshake_timeout is only meaningful with ssl"
        );
        assert_eq!(
            err(connect(None).ssl_shutdown_timeout(1.0).await.map(|_| ())),
            "ssl_shutdown_timeout is only meaningful with ssl"
        );
        assert_eq!(
            err(connect(Some(&client_ctx))
                .ssl_handshake_timeout(0.0)
                .await
                .map(|_| ())),
            "ssl_handshake_timeout should be a positive number, got 0"
        );
        assert_eq!(
            err(connect(Some(&client_ctx))
                .ssl_shutdown_timeout(-1.0)
                .await
                .map(|_| ())),
            "ssl_shutdown_timeout should be a positive number, got -1"
        );
        assert_eq!(
            err(connect(Some(&server_ctx)).await.map(|_| ())),
            "Cannot create a client socket with a PROTOCOL_TLS_SERVER context"
        );
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(
            err(loop_
                .create_connection(Recorder::default)
                .sock(a)
                .ssl(&client_ctx)
                .await
                .map(|_| ())),
            "You must set server_hostname when using ssl without a host"
        );
        assert_eq!(
            err(loop_
                .create_unix_connection(Recorder::default)
                .path("/nonexistent/socket")
                .ssl(&client_ctx)
                .await
                .map(|_| ())),
            "you have to pass server_hostname when using ssl"
        );
        assert_eq!(
            err(loop_
                .create_server(Recorder::default)
                .host("127.0.0.1")
                .port(0)
                .ssl(&client_ctx)
                .await
                .map(|_| ())),
            "Cannot create a server socket with a PROTOCOL_TLS_CLIENT context"
        );
        assert_eq!(
            err(loop_
                .create_server(Recorder::default)
                .host("127.0.0.1")
                .port(0)
                .ssl(&SslContext::new(TlsProtocol::TlsServer))
                .await
                .map(|_| ())),
            "[SSL: NO_CERTIFICATE_SET] no certificate set (load_cert_chain() was not called)"
        );
        Ok(())
    });
}

#[test]
fn test_context_loading_errors() {
    let pki = pki();
    let ctx = SslContext::new(TlsProtocol::TlsClient);
    let e = ctx
        .load_verify_locations(Some(&pki.dir.join("missing.pem")), None, None)
        .unwrap_err();
    assert_eq!(e.python_name(), "FileNotFoundError");
    assert!(e.to_string().contains("No such file or directory"), "{e}");
    let e = ctx
        .load_verify_locations(None, None, Some(b"not pem"))
        .unwrap_err();
    assert_eq!(e.python_name(), "SSLError");
    ctx.load_verify_locations(None, None, Some(pki.ca_pem.as_bytes()))
        .unwrap();
    ctx.load_verify_locations(None, Some(&pki.dir), None)
        .unwrap();
    let server = SslContext::new(TlsProtocol::TlsServer);
    let e = server.load_cert_chain(&pki.key, None, None).unwrap_err();
    assert_eq!(e.python_name(), "SSLError");
    // The key in the certificate file itself.
    let both = pki.dir.join("both.pem");
    let text =
        std::fs::read_to_string(&pki.cert).unwrap() + &std::fs::read_to_string(&pki.key).unwrap();
    std::fs::write(&both, text).unwrap();
    server.load_cert_chain(&both, None, None).unwrap();
    server.server_config().unwrap();
    ssl::create_default_context().unwrap();
}

#[test]
fn test_encrypted_key_needs_its_password() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        return;
    }
    let pki = pki();
    let encrypted = pki.dir.join("encrypted.key");
    let status = std::process::Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:sesame",
            "-in",
        ])
        .arg(&pki.key)
        .arg("-out")
        .arg(&encrypted)
        .status()
        .unwrap();
    assert!(status.success());
    let ctx = SslContext::new(TlsProtocol::TlsServer);
    let e = ctx
        .load_cert_chain(&pki.cert, Some(&encrypted), Some("wrong"))
        .unwrap_err();
    assert_eq!(e.message(), "[SSL: BAD_DECRYPT] bad decrypt");
    assert!(ctx
        .load_cert_chain(&pki.cert, Some(&encrypted), None)
        .is_err());
    ctx.load_cert_chain(&pki.cert, Some(&encrypted), Some("sesame"))
        .unwrap();
    let client_ctx = pki.client();
    on_loop(move |_| async move {
        let server = echo_server(&ctx).await?;
        let (reader, writer) = open_connection("127.0.0.1", port_of(&server))
            .ssl(&client_ctx)
            .server_hostname("localhost")
            .await?;
        writer.write(b"unlocked\n")?;
        assert_eq!(reader.readline().await?, &b"unlocked\n"[..]);
        writer.close();
        server.close();
        server.wait_closed().await
    });
}

// ===== Unix sockets and accepted sockets =====

#[test]
fn test_unix_socket_tls() {
    let pki = pki();
    let path = pki.dir.join("tls.sock");
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    on_loop(move |_| async move {
        let server = start_unix_server(
            |reader: asyncio::StreamReader, writer: asyncio::StreamWriter| async move {
                let line = reader.readline().await?;
                writer.write(&line)?;
                writer.close();
                Ok(())
            },
            path.clone(),
        )
        .ssl(&server_ctx)
        .await?;
        let (reader, writer) = open_unix_connection(path.clone())
            .ssl(&client_ctx)
            .server_hostname("localhost")
            .await?;
        writer.write(b"unix\n")?;
        assert_eq!(reader.readline().await?, &b"unix\n"[..]);
        writer.close();
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_connect_accepted_socket_tls() {
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    on_loop(move |loop_| async move {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = std::thread::spawn(move || listener.accept().unwrap().0);
        let client = {
            let l = loop_.clone();
            loop_
                .create_connection(move || Recorder::new(&l))
                .host("127.0.0.1")
                .port(port)
                .ssl(&client_ctx)
                .server_hostname("localhost")
        };
        let client_task = asyncio::create_task(async move { client.await })?;
        while !accept.is_finished() {
            asyncio::sleep(0.01).await?;
        }
        let sock = accept.join().unwrap();
        let l = loop_.clone();
        let (server_transport, server_proto) = loop_
            .connect_accepted_socket(move || Recorder::new(&l), sock)
            .ssl(&server_ctx)
            .await?;
        let (client_transport, client_proto) = client_task.take().await?;
        client_transport.write(b"accepted")?;
        while server_proto.data.borrow().len() < 8 {
            asyncio::sleep(0.005).await?;
        }
        assert_eq!(*server_proto.data.borrow(), b"accepted");
        server_transport.close();
        client_proto.lost().await?;
        assert!(matches!(
            server_transport.get_extra_info("ssl_object"),
            Some(ExtraInfo::SslObject(o)) if o.server_side()
        ));
        Ok(())
    });
}

#[test]
fn test_alpn_and_versions() {
    let pki = pki();
    let server_ctx = pki.server();
    server_ctx.set_alpn_protocols(&["h2", "http/1.1"]);
    let client_ctx = pki.client();
    client_ctx.set_alpn_protocols(&["http/1.1"]);
    client_ctx.set_maximum_version(ssl::TlsVersion::Tlsv1_2);
    assert_eq!(client_ctx.maximum_version(), ssl::TlsVersion::Tlsv1_2);
    on_loop(move |_| async move {
        let server = echo_server(&server_ctx).await?;
        let (reader, writer) = open_connection("127.0.0.1", port_of(&server))
            .ssl(&client_ctx)
            .server_hostname("localhost")
            .await?;
        let info = writer.get_extra_info("ssl_object");
        let obj = info.as_ref().and_then(|i| i.as_ssl_object()).unwrap();
        assert_eq!(obj.selected_alpn_protocol(), Some("http/1.1"));
        assert_eq!(obj.version(), Some("TLSv1.2"));
        assert_eq!(obj.cipher().unwrap().version, "TLSv1.2");
        writer.write(b"v12\n")?;
        assert_eq!(reader.readline().await?, &b"v12\n"[..]);
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn test_ready_rustls_config() {
    let pki = pki();
    let server_ctx = pki.server();
    // Everything rustls offers: a ClientConfig made by hand.
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&pki.ca).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client_ctx = SslContext::from_client_config(std::sync::Arc::new(config));
    on_loop(move |_| async move {
        let server = echo_server(&server_ctx).await?;
        let (reader, writer) = open_connection("127.0.0.1", port_of(&server))
            .ssl(&client_ctx)
            .server_hostname("localhost")
            .await?;
        writer.write(b"hand-made\n")?;
        assert_eq!(reader.readline().await?, &b"hand-made\n"[..]);
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await
    });
}

/// A peer that never answers close_notify: `close()` gives up after the
/// shutdown timeout, and the protocol hears `TimeoutError`.
#[test]
fn test_shutdown_timeout() {
    let pki = pki();
    let server_ctx = pki.server();
    let ca = std::fs::read(&pki.ca).unwrap();
    on_loop(move |loop_| async move {
        let (server, made) = recorder_server(&loop_, &server_ctx, false, Some(0.2)).await?;
        let port = port_of(&server);
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        // A blocking rustls client: handshakes, sends a line, then goes quiet.
        let peer = std::thread::spawn(move || {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
                roots.add(c.unwrap()).unwrap();
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let conn = rustls::ClientConnection::new(
                std::sync::Arc::new(config),
                "localhost".try_into().unwrap(),
            )
            .unwrap();
            let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            tls.write_all(b"hi").unwrap();
            tls.flush().unwrap();
            // Keep the socket open, reading nothing, until told.
            let _ = stop_rx.recv();
        });
        while made
            .borrow()
            .as_ref()
            .is_none_or(|r| r.data.borrow().len() < 2)
        {
            asyncio::sleep(0.005).await?;
        }
        let server_side = made.borrow().clone().unwrap();
        let t = server_side.transport.borrow().clone().unwrap();
        let started = loop_.time();
        t.close();
        server_side.lost().await?;
        assert!(loop_.time() - started >= 0.2);
        assert_eq!(
            server_side.events.borrow().last().unwrap(),
            "lost TimeoutError: SSL shutdown timed out"
        );
        stop_tx.send(()).unwrap();
        peer.join().unwrap();
        server.close();
        server.wait_closed().await
    });
}

/// The client starts its handshake right behind its STARTTLS line, before
/// any answer: the ClientHello the server's reader already buffered is not
/// lost, it starts the server's TLS stream.
#[test]
fn test_start_tls_keeps_buffered_bytes() {
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    on_loop(move |_| async move {
        let server = start_server(
            move |reader: asyncio::StreamReader, writer: asyncio::StreamWriter| {
                let ctx = server_ctx.clone();
                async move {
                    assert_eq!(reader.readline().await?, &b"STARTTLS\n"[..]);
                    // Let the ClientHello arrive in the reader's buffer.
                    while reader.buffered() == 0 {
                        asyncio::sleep(0.001).await?;
                    }
                    writer.start_tls(&ctx, None).await?;
                    let line = reader.readline().await?;
                    writer.write(&line)?;
                    writer.drain().await?;
                    writer.close();
                    Ok(())
                }
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let (reader, writer) = open_connection("127.0.0.1", port_of(&server)).await?;
        writer.write(b"STARTTLS\n")?;
        writer.start_tls(&client_ctx, Some("localhost")).await?;
        writer.write(b"right away\n")?;
        assert_eq!(reader.readline().await?, &b"right away\n"[..]);
        writer.close();
        server.close();
        server.wait_closed().await
    });
}

/// TLS connections leave nothing behind: after 40 handshakes, echoes and
/// closes (clean, aborted, failed) on loops that then close, the process
/// has the descriptors it started with.
#[test]
fn test_no_descriptor_leaks() {
    // Alone in a child process: the other tests' sockets are not counted.
    if !common::in_child("test_no_descriptor_leaks") {
        return;
    }
    let pki = pki();
    let (server_ctx, client_ctx) = (pki.server(), pki.client());
    let untrusting = SslContext::new(TlsProtocol::TlsClient);
    // Warm-up: lazily made process-wide resources (executor threads' pipes).
    let (s, c) = (server_ctx.clone(), client_ctx.clone());
    on_loop(move |_| async move {
        let server = echo_server(&s).await?;
        let (_r, w) = open_connection("127.0.0.1", port_of(&server))
            .ssl(&c)
            .server_hostname("localhost")
            .await?;
        w.close();
        w.wait_closed().await?;
        server.close();
        server.wait_closed().await
    });
    let before = common::open_fds();
    for round in 0..4 {
        let (s, c, u) = (server_ctx.clone(), client_ctx.clone(), untrusting.clone());
        on_loop(move |_| async move {
            let server = echo_server(&s).await?;
            let port = port_of(&server);
            for i in 0..10 {
                let (reader, writer) = open_connection("127.0.0.1", port)
                    .ssl(&c)
                    .server_hostname("localhost")
                    .await?;
                writer.write(b"x\n")?;
                assert_eq!(reader.readline().await?, &b"x\n"[..]);
                if (i + round) % 2 == 0 {
                    writer.close();
                    writer.wait_closed().await?;
                } else {
                    writer.transport().abort();
                }
            }
            assert!(open_connection("127.0.0.1", port)
                .ssl(&u)
                .server_hostname("localhost")
                .await
                .is_err());
            server.close();
            server.wait_closed().await
        });
    }
    assert_eq!(common::open_fds(), before);
}
