//! A TLS echo server on streams: `start_server(..., ssl=ctx)`, then for each
//! connection read up to 64 KiB, write it back and drain, until the client
//! closes.
//!
//! `cargo run --release --example tls_echo_server -- 127.0.0.1:8443 cert.pem key.pem`
//! serves until killed; it prints each message unless `--quiet`. Any PEM
//! certificate chain and key will do, e.g. from
//! `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
//! -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout key.pem
//! -out cert.pem`.

use asyncio::ssl::{Protocol, SslContext};
use asyncio::streams::{start_server, StreamReader, StreamWriter};

async fn handle_echo(
    reader: StreamReader,
    writer: StreamWriter,
    quiet: bool,
) -> asyncio::Result<()> {
    let peer = writer.get_extra_info("peername");
    loop {
        let data = reader.read(65536).await?;
        if data.is_empty() {
            break;
        }
        if !quiet {
            if let Some(peer) = &peer {
                println!("Received '{}' from {peer}", String::from_utf8_lossy(&data));
            }
        }
        writer.write(&data)?;
        writer.drain().await?;
    }
    writer.close();
    writer.wait_closed().await
}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quiet = args.iter().any(|a| a == "--quiet");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [addr, certfile, keyfile] = positional[..] else {
        return Err(asyncio::Error::value(
            "usage: tls_echo_server HOST:PORT CERTFILE KEYFILE [--quiet]",
        ));
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| asyncio::Error::value("expected HOST:PORT"))?;
    let port: u16 = port.parse()?;

    let ctx = SslContext::new(Protocol::TlsServer);
    ctx.load_cert_chain(certfile.as_ref(), Some(keyfile.as_ref()), None)?;
    let server = start_server(
        move |reader, writer| handle_echo(reader, writer, quiet),
        host,
        port,
    )
    .ssl(&ctx)
    .await?;
    for sock in server.sockets() {
        if let Some(addr) = sock.getsockname() {
            println!("Serving on {addr}");
        }
    }
    server.run(server.serve_forever()).await
}
