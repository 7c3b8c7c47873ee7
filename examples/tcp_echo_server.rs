//! TCP echo server with protocols, from the CPython docs
//! (asyncio-protocol.html#tcp-echo-server).
//!
//! `cargo run --release --example tcp_echo_server -- 127.0.0.1:8888` serves
//! until killed. Unlike the docs' server, it keeps each connection open
//! after echoing, so that a load generator can send many messages on one
//! connection (`tcp_echo_client` closes its end itself). With `--quiet` it
//! prints nothing per connection.

use std::cell::OnceCell;
use std::rc::Rc;

use asyncio::{BaseProtocol, Protocol, Transport};

#[derive(Default)]
struct EchoServerProtocol {
    transport: OnceCell<Rc<dyn Transport>>,
    quiet: bool,
}

impl BaseProtocol for EchoServerProtocol {}

impl Protocol for EchoServerProtocol {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> asyncio::Result<()> {
        if !self.quiet {
            if let Some(peername) = transport.get_extra_info("peername") {
                println!("Connection from {peername}");
            }
        }
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> asyncio::Result<()> {
        if !self.quiet {
            let message = String::from_utf8_lossy(data);
            println!("Data received: '{message}'");
            println!("Send: '{message}'");
        }
        match self.transport.get() {
            Some(t) => t.write(data),
            None => Ok(()),
        }
    }
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

    // Get a reference to the event loop as we plan to use
    // low-level APIs.
    let loop_ = asyncio::get_running_loop()?;

    let server = loop_
        .create_server(move || EchoServerProtocol {
            quiet,
            ..EchoServerProtocol::default()
        })
        .host(host)
        .port(port)
        .await?;
    for sock in server.sockets() {
        if let Some(addr) = sock.getsockname() {
            println!("Serving on {addr}");
        }
    }
    server.run(server.serve_forever()).await
}
