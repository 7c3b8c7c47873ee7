//! TLS echo and `loop.sendfile`, side by side with the peers, in one run.
//!
//! `cargo bench --bench tls` prints:
//! - the TLS echo server (1 KiB, 10 connections, handshakes included:
//!   every measured run opens fresh connections) of this project, raw Tokio
//!   with tokio-rustls, uvloop and CPython asyncio (both OpenSSL):
//!   requests/s and the server's callgrind instructions per round trip;
//! - serving a 256 MiB file over loopback with `loop.sendfile`, a bare
//!   `sendfile(2)` loop on the same kind of socket, and a read/write copy
//!   loop, in MiB/s.
//!
//! The binary is also the servers and the load generator:
//! `tls --server asyncio|tokio tls CERT KEY`, `tls --client PORT SIZE CONNS
//! SECONDS|-ROUNDS CAFILE`, `tls --sendfile-server asyncio|bare|copy FILE`.

mod harness;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use harness::{Echo, Kind};

// ===== certificates =====

/// A CA and a `localhost` certificate it signs, as PEM files in `dir`:
/// `(ca, cert, key)`.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    std::fs::create_dir_all(dir).expect("cert dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bench CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    (
        write("ca.pem", ca.pem()),
        write("cert.pem", cert.pem()),
        write("key.pem", key.serialize_pem()),
    )
}

// ===== servers =====

fn print_port(port: u16) -> std::io::Result<()> {
    println!("{port}");
    std::io::stdout().flush()
}

fn serve_asyncio(cert: &str, key: &str) -> asyncio::Result<()> {
    let ctx = asyncio::ssl::SslContext::new(asyncio::ssl::Protocol::TlsServer);
    ctx.load_cert_chain(cert.as_ref(), Some(key.as_ref()), None)?;
    asyncio::run(async move {
        let loop_ = asyncio::get_running_loop()?;
        let server = loop_
            .create_server(Echo::default)
            .host("127.0.0.1")
            .port(0)
            .ssl(&ctx)
            .await?;
        let port = server.sockets()[0]
            .getsockname()
            .and_then(|a| a.port())
            .unwrap_or(0);
        print_port(port)?;
        server.serve_forever().await
    })
}

fn rustls_server_config(cert: &str, key: &str) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

fn serve_tokio(cert: &str, key: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = tokio_rustls::TlsAcceptor::from(rustls_server_config(cert, key));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(tokio::runtime::LocalOptions::default())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        print_port(listener.local_addr()?.port())?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let acceptor = acceptor.clone();
            tokio::task::spawn_local(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}

// ===== load generator =====

/// Each connection (TLS, verified against `cafile`) sends `size` bytes,
/// waits for all of them back, repeats: for `seconds` (positive) or a fixed
/// number of round trips in all (negative). Prints what `harness::load` reads.
fn client_main(args: &[String]) -> std::io::Result<()> {
    use rustls::pki_types::pem::PemObject;
    let port: u16 = args[0].parse().map_err(std::io::Error::other)?;
    let size: usize = args[1].parse().map_err(std::io::Error::other)?;
    let conns: usize = args[2].parse().map_err(std::io::Error::other)?;
    let limit: f64 = args[3].parse().map_err(std::io::Error::other)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in
        rustls::pki_types::CertificateDer::pem_file_iter(&args[4]).map_err(std::io::Error::other)?
    {
        roots
            .add(c.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(tokio::runtime::LocalOptions::default())?;
    let (requests, seconds, latencies) = rt.block_on(async move {
        let shared = harness::LoadShared::new(limit);
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..conns {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut stream = connector.connect(name, tcp).await?;
            let shared = shared.clone();
            handles.push(tokio::task::spawn_local(async move {
                harness::round_trips(&mut stream, size, &shared).await?;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                Ok::<(), std::io::Error>(())
            }));
        }
        for h in handles {
            h.await.map_err(std::io::Error::other)??;
        }
        let latencies = std::mem::take(&mut *shared.latencies_us.borrow_mut());
        Ok::<_, std::io::Error>((
            latencies.len() as u64,
            start.elapsed().as_secs_f64(),
            latencies,
        ))
    })?;
    harness::print_load(requests, seconds, latencies);
    Ok(())
}

// ===== sendfile =====

const SENDFILE_SIZE: u64 = 256 * 1024 * 1024;

/// Serves `file` to each connection, then closes it: through
/// `loop.sendfile` (`asyncio`), a bare `sendfile(2)` loop on a blocking
/// socket (`bare`), or a 256 KiB read/write loop (`copy`).
fn sendfile_server(mode: &str, file: &str) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    print_port(listener.local_addr()?.port())?;
    match mode {
        "asyncio" => {
            let file = file.to_owned();
            asyncio::run(async move {
                let loop_ = asyncio::get_running_loop()?;
                let listener = asyncio::socket::Socket::from(std::os::fd::OwnedFd::from(listener));
                listener.setblocking(false)?;
                loop {
                    let (conn, _) = loop_.sock_accept(&listener).await?;
                    let (transport, _) = loop_.connect_accepted_socket(Echo::default, conn).await?;
                    let f = std::fs::File::open(&file)?;
                    loop_.sendfile(&transport, &f).await?;
                    transport.close();
                }
            })
            .map_err(std::io::Error::other)
        }
        "bare" => loop {
            let (conn, _) = listener.accept()?;
            let f = std::fs::File::open(file)?;
            let sock = socket2::SockRef::from(&conn);
            let mut offset = 0usize;
            while (offset as u64) < SENDFILE_SIZE {
                let n = sock.sendfile(&f, offset, None)?;
                if n == 0 {
                    break;
                }
                offset += n;
            }
        },
        _ => loop {
            use std::io::Read;
            let (mut conn, _) = listener.accept()?;
            let mut f = std::fs::File::open(file)?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                conn.write_all(&buf[..n])?;
            }
        },
    }
}

/// MiB/s of downloading the whole file from a `sendfile_server` (best of 3).
fn sendfile_throughput(mode: &str, file: &Path, wrapper: &[&str]) -> Option<f64> {
    use std::io::Read;
    let argv = harness::this_binary(&["--sendfile-server", mode, &file.display().to_string()]);
    let server = harness::ServerProc::start(harness::wrapped(wrapper, &argv))?;
    let mut best: Option<f64> = None;
    for _ in 0..3 {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", server.port)).ok()?;
        let mut buf = vec![0u8; 1024 * 1024];
        let start = Instant::now();
        let mut total = 0u64;
        loop {
            let n = conn.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        if total != SENDFILE_SIZE {
            return None;
        }
        let mibs = total as f64 / (1024.0 * 1024.0) / secs;
        best = Some(best.map_or(mibs, |b: f64| b.max(mibs)));
    }
    best
}

// ===== driver =====

fn load(
    port: u16,
    size: usize,
    conns: usize,
    limit: f64,
    ca: &Path,
) -> Option<(f64, f64, f64, u64)> {
    harness::load(&[
        port.to_string(),
        size.to_string(),
        conns.to_string(),
        limit.to_string(),
        ca.display().to_string(),
    ])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--server") => {
            let (cert, key) = (&args[3], &args[4]);
            let result = match args[1].as_str() {
                "tokio" => serve_tokio(cert, key).map_err(asyncio::Error::from),
                _ => serve_asyncio(cert, key),
            };
            if let Err(e) = result {
                eprintln!("{}", e.traceback_line());
                std::process::exit(1);
            }
            return;
        }
        Some("--client") => {
            if let Err(e) = client_main(&args[1..]) {
                eprintln!("{e}");
                std::process::exit(1);
            }
            return;
        }
        Some("--sendfile-server") => {
            if let Err(e) = sendfile_server(&args[1], &args[2]) {
                eprintln!("{e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "echo,sendfile".to_owned());
    let dir = std::env::temp_dir().join(format!("asyncio-bench-tls-{}", std::process::id()));
    let (ca, cert, key) = make_certs(&dir);
    let tls_args = ["tls", cert.to_str().unwrap(), key.to_str().unwrap()];
    let wrapper = harness::server_wrapper();

    if parts.contains("echo") {
        println!("### TLS echo server, 1 KiB × 10 connections, handshakes included\n");
        println!("| server | requests/s | p50 µs | p99 µs | vs raw Tokio | instructions per round trip | vs tokio-rustls | vs uvloop |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let (size, conns) = (1024usize, 10usize);
        let mut rows = Vec::new();
        for kind in Kind::ALL {
            let r = kind
                .start(&wrapper, "echo_server.py", &tls_args)
                .and_then(|server| {
                    let _ = load(server.port, size, conns, -(conns as f64 * 20.0), &ca);
                    (0..3)
                        .filter_map(|_| load(server.port, size, conns, seconds, &ca))
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                });
            let instr = if harness::which("valgrind") && harness::which("callgrind_control") {
                harness::instructions_per_round_trip(
                    &format!("tls-echo-{}", kind.name()),
                    |w| kind.start(w, "echo_server.py", &tls_args),
                    |port, rounds| load(port, size, conns, -(rounds as f64), &ca).map(|r| r.3),
                    4000,
                )
            } else {
                None
            };
            rows.push((kind, r, instr));
        }
        harness::print_peer_rows(&rows, |kind| match kind {
            Kind::Tokio => "raw Tokio + tokio-rustls".to_owned(),
            Kind::Asyncio => "asyncio-rs (rustls)".to_owned(),
            k => format!("{} (OpenSSL)", k.name()),
        });
    }

    if parts.contains("sendfile") {
        let file = dir.join("payload.bin");
        {
            let mut f = std::fs::File::create(&file).expect("payload");
            let block: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
            for _ in 0..SENDFILE_SIZE / block.len() as u64 {
                f.write_all(&block).expect("payload");
            }
        }
        println!("\n### Serving a 256 MiB file over loopback TCP (best of 3)\n");
        println!("| server | MiB/s | vs bare sendfile(2) |");
        println!("|---|---:|---:|");
        let rows: Vec<(&str, Option<f64>)> = [
            ("asyncio-rs `loop.sendfile`", "asyncio"),
            ("bare `sendfile(2)` loop", "bare"),
            ("read/write copy loop (256 KiB)", "copy"),
        ]
        .into_iter()
        .map(|(name, mode)| (name, sendfile_throughput(mode, &file, &wrapper)))
        .collect();
        let bare = rows[1].1;
        for (name, r) in &rows {
            println!(
                "| {name} | {} | {} |",
                harness::cell(*r),
                harness::ratio(*r, bare)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
