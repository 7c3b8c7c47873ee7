//! TCP echo client with protocols, from the CPython docs
//! (asyncio-protocol.html#tcp-echo-client). Run `tcp_echo_server` first.
//!
//! The docs' server closes the connection after echoing; ours keeps it
//! open (for load generators), so this client closes it once the echo is
//! back.

use std::cell::OnceCell;
use std::rc::Rc;

use asyncio::{BaseProtocol, Future, Protocol, Transport};

struct EchoClientProtocol {
    message: String,
    on_con_lost: Future<()>,
    transport: OnceCell<Rc<dyn Transport>>,
}

impl BaseProtocol for EchoClientProtocol {
    fn connection_lost(self: &Rc<Self>, _exc: Option<asyncio::Error>) -> asyncio::Result<()> {
        println!("The connection is closed");
        let _ = self.on_con_lost.set_result(());
        Ok(())
    }
}

impl Protocol for EchoClientProtocol {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> asyncio::Result<()> {
        transport.write(self.message.as_bytes())?;
        println!("Data sent: '{}'", self.message);
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> asyncio::Result<()> {
        println!("Data received: '{}'", String::from_utf8_lossy(data));
        if let Some(transport) = self.transport.get() {
            transport.close();
        }
        Ok(())
    }
}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8888".to_owned());
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| asyncio::Error::value("expected HOST:PORT"))?;

    // Get a reference to the event loop as we plan to use
    // low-level APIs.
    let loop_ = asyncio::get_running_loop()?;

    let on_con_lost = Future::<()>::new(&loop_);
    let message = "Hello World!".to_owned();

    let lost = on_con_lost.clone();
    let (transport, _protocol) = loop_
        .create_connection(move || EchoClientProtocol {
            message,
            on_con_lost: lost,
            transport: OnceCell::new(),
        })
        .host(host)
        .port(port.parse()?)
        .await?;

    // Wait until the protocol signals that the connection
    // is lost and close the transport.
    let lost = on_con_lost.await;
    transport.close();
    lost
}
