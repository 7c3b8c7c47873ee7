//! "Connect existing sockets" from the CPython docs
//! (asyncio-protocol.html#connecting-existing-sockets): a socket pair,
//! one end wrapped with `create_connection(sock=…)`, waits for data.

use std::cell::OnceCell;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use asyncio::{BaseProtocol, Future, Protocol, Transport};

struct MyProtocol {
    transport: OnceCell<Rc<dyn Transport>>,
    on_con_lost: Future<()>,
}

impl BaseProtocol for MyProtocol {
    fn connection_lost(self: &Rc<Self>, _exc: Option<asyncio::Error>) -> asyncio::Result<()> {
        // The socket has been closed
        let _ = self.on_con_lost.set_result(());
        Ok(())
    }
}

impl Protocol for MyProtocol {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> asyncio::Result<()> {
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> asyncio::Result<()> {
        println!("Received: {:?}", String::from_utf8_lossy(data));

        // We are done: close the transport;
        // connection_lost() will be called automatically.
        if let Some(t) = self.transport.get() {
            t.close();
        }
        Ok(())
    }
}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    // Get a reference to the current event loop
    let loop_ = asyncio::get_running_loop()?;
    let on_con_lost = Future::<()>::new(&loop_);

    // Create a pair of connected sockets
    let (rsock, mut wsock) = UnixStream::pair()?;

    // Register the socket to wait for data.
    let lost = on_con_lost.clone();
    let (transport, _protocol) = loop_
        .create_connection(move || MyProtocol {
            transport: OnceCell::new(),
            on_con_lost: lost,
        })
        .sock(rsock)
        .await?;

    // Simulate the reception of data from the network.
    loop_.call_soon(move || -> asyncio::Result<()> {
        wsock.write_all(b"abc")?;
        Ok(())
    })?;

    // Wait for the protocol to signal that the connection
    // is lost and close the transport.
    let waited = on_con_lost.await;
    transport.close();
    waited
}
