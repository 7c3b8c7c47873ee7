//! An echo server on streams: `start_server`, then for each connection read
//! up to 64 KiB, write it back and drain, until EOF.
//!
//! `cargo run --release --example streams_echo_server -- 127.0.0.1:8888`
//! serves until killed; it prints each message unless `--quiet`.

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
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8888".to_owned());
    let quiet = args.any(|a| a == "--quiet");
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| asyncio::Error::value("expected HOST:PORT"))?;
    let port: u16 = port.parse()?;

    let server = start_server(
        move |reader, writer| handle_echo(reader, writer, quiet),
        host,
        port,
    )
    .await?;
    for sock in server.sockets() {
        if let Some(addr) = sock.getsockname() {
            println!("Serving on {addr}");
        }
    }
    server.run(server.serve_forever()).await
}
