//! UDP echo client, from the CPython docs
//! (asyncio-protocol.html#udp-echo-client).
//!
//! `cargo run --example udp_echo_client -- 127.0.0.1:9999` sends one
//! datagram to `udp_echo_server` and prints the reply.

use std::cell::OnceCell;
use std::rc::Rc;

use asyncio::{Address, BaseProtocol, DatagramProtocol, DatagramTransport, Future};

struct EchoClientProtocol {
    message: String,
    on_con_lost: Future<bool>,
    transport: OnceCell<Rc<dyn DatagramTransport>>,
}

impl BaseProtocol for EchoClientProtocol {
    fn connection_lost(self: &Rc<Self>, _exc: Option<asyncio::Error>) -> asyncio::Result<()> {
        println!("Connection closed");
        let _ = self.on_con_lost.set_result(true);
        Ok(())
    }
}

impl DatagramProtocol for EchoClientProtocol {
    fn connection_made(
        self: &Rc<Self>,
        transport: Rc<dyn DatagramTransport>,
    ) -> asyncio::Result<()> {
        println!("Send: {}", self.message);
        transport.sendto(self.message.as_bytes(), None)?;
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn datagram_received(self: &Rc<Self>, data: &[u8], _addr: Address) -> asyncio::Result<()> {
        println!("Received: {}", String::from_utf8_lossy(data));

        println!("Close the socket");
        if let Some(t) = self.transport.get() {
            t.close();
        }
        Ok(())
    }

    fn error_received(self: &Rc<Self>, exc: asyncio::Error) -> asyncio::Result<()> {
        println!("Error received: {exc}");
        Ok(())
    }
}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9999".to_owned());
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| asyncio::Error::value("expected HOST:PORT"))?;
    let port: u16 = port.parse()?;

    // Get a reference to the event loop as we plan to use
    // low-level APIs.
    let loop_ = asyncio::get_running_loop()?;

    let on_con_lost = Future::<bool>::new(&loop_);
    let message = "Hello World!".to_owned();

    let lost = on_con_lost.clone();
    let (transport, _protocol) = loop_
        .create_datagram_endpoint(move || EchoClientProtocol {
            message,
            on_con_lost: lost,
            transport: OnceCell::new(),
        })
        .remote_addr((host, port))
        .await?;

    let done = on_con_lost.await;
    transport.close();
    done.map(drop)
}
