//! UDP echo server, from the CPython docs
//! (asyncio-protocol.html#udp-echo-server).
//!
//! `cargo run --release --example udp_echo_server -- 127.0.0.1:9999` serves
//! until killed (the docs' server stops after an hour). It prints the
//! address it serves on (useful with port 0), and each datagram unless
//! `--quiet`.

use std::cell::OnceCell;
use std::rc::Rc;

use asyncio::{Address, BaseProtocol, DatagramProtocol, DatagramTransport};

#[derive(Default)]
struct EchoServerProtocol {
    transport: OnceCell<Rc<dyn DatagramTransport>>,
    quiet: bool,
}

impl BaseProtocol for EchoServerProtocol {}

impl DatagramProtocol for EchoServerProtocol {
    fn connection_made(
        self: &Rc<Self>,
        transport: Rc<dyn DatagramTransport>,
    ) -> asyncio::Result<()> {
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn datagram_received(self: &Rc<Self>, data: &[u8], addr: Address) -> asyncio::Result<()> {
        if !self.quiet {
            let message = String::from_utf8_lossy(data);
            println!("Received '{message}' from {addr}");
            println!("Send '{message}' to {addr}");
        }
        match self.transport.get() {
            Some(t) => t.sendto(data, Some(addr)),
            None => Ok(()),
        }
    }
}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9999".to_owned());
    let quiet = args.any(|a| a == "--quiet");
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| asyncio::Error::value("expected HOST:PORT"))?;
    let port: u16 = port.parse()?;

    println!("Starting UDP server");

    // Get a reference to the event loop as we plan to use
    // low-level APIs.
    let loop_ = asyncio::get_running_loop()?;

    // One protocol instance will be created to serve all
    // client requests.
    let (transport, _protocol) = loop_
        .create_datagram_endpoint(move || EchoServerProtocol {
            quiet,
            ..EchoServerProtocol::default()
        })
        .local_addr((host, port))
        .await?;
    if let Some(addr) = transport.get_extra_info("sockname") {
        println!("Serving on {addr}");
    }
    // Serve until killed.
    let forever = asyncio::Future::<()>::new(&loop_);
    let served = (&forever).await;
    transport.close();
    served
}
