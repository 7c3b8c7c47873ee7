//! A TLS client on streams: `open_connection(..., ssl=ctx)`, send each
//! message, print the echo and what the connection negotiated.
//!
//! `cargo run --example tls_echo_client -- 127.0.0.1:8443 ca.pem localhost hello world`
//! verifies the server against `ca.pem` and the name `localhost`
//! (`-` as the CA file: the system's trust store, as
//! `ssl.create_default_context()`).

use asyncio::ssl;
use asyncio::streams::open_connection;

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, cafile, hostname, messages @ ..] = &args[..] else {
        return Err(asyncio::Error::value(
            "usage: tls_echo_client HOST:PORT CAFILE|- SERVER_HOSTNAME MESSAGE...",
        ));
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| asyncio::Error::value("expected HOST:PORT"))?;
    let ctx = if cafile == "-" {
        ssl::create_default_context()?
    } else {
        let ctx = ssl::SslContext::new(ssl::Protocol::TlsClient);
        ctx.load_verify_locations(Some(cafile.as_ref()), None, None)?;
        ctx
    };
    let (reader, writer) = open_connection(host, port.parse()?)
        .ssl(&ctx)
        .server_hostname(hostname.as_str())
        .await?;
    let info = writer.get_extra_info("ssl_object");
    if let Some(obj) = info.as_ref().and_then(|i| i.as_ssl_object()) {
        println!(
            "Connected with {} {:?}",
            obj.version().unwrap_or("?"),
            obj.cipher()
        );
        if let Some(cert) = obj.getpeercert() {
            println!("Server certificate: {cert:?}");
        }
    }
    for message in messages {
        writer.write(message.as_bytes())?;
        writer.drain().await?;
        let echo = reader.readexactly(message.len()).await?;
        println!("Received: {}", String::from_utf8_lossy(&echo));
    }
    writer.close();
    writer.wait_closed().await
}
