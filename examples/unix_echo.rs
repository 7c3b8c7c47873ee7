//! A Unix-socket echo server and client in one program: the TCP echo
//! example of the CPython docs over `create_unix_server` /
//! `create_unix_connection`. The socket file is removed when the server
//! closes.

use std::cell::OnceCell;
use std::rc::Rc;

use asyncio::{BaseProtocol, Future, Protocol, Transport};

#[derive(Default)]
struct Echo {
    transport: OnceCell<Rc<dyn Transport>>,
}

impl BaseProtocol for Echo {}

impl Protocol for Echo {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> asyncio::Result<()> {
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> asyncio::Result<()> {
        match self.transport.get() {
            Some(t) => t.write(data),
            None => Ok(()),
        }
    }
}

struct Client {
    reply: Future<Vec<u8>>,
}

impl BaseProtocol for Client {}

impl Protocol for Client {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> asyncio::Result<()> {
        transport.write(b"Hello over a Unix socket!")
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> asyncio::Result<()> {
        if !self.reply.done() {
            self.reply.set_result(data.to_vec())?;
        }
        Ok(())
    }
}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let path = std::env::temp_dir().join(format!("asyncio-unix-echo-{}.sock", std::process::id()));

    let server = loop_.create_unix_server(Echo::default).path(&path).await?;
    println!("Serving on {}", path.display());

    let reply = Future::<Vec<u8>>::new(&loop_);
    let r = reply.clone();
    let (transport, _) = loop_
        .create_unix_connection(move || Client { reply: r })
        .path(&path)
        .await?;
    println!("Received: {:?}", String::from_utf8_lossy(&reply.await?));
    transport.close();

    server.close();
    server.wait_closed().await?;
    println!("Socket file removed: {}", !path.exists());
    Ok(())
}
