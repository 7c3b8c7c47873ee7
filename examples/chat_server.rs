//! A chat server on streams with a broadcast queue per client: every line a
//! client sends goes to every other client, through that client's
//! `asyncio::Queue`, which a writer task of its own drains (so a slow
//! client holds only its own queue back). A client leaving shuts its queue
//! down (3.13's `Queue.shutdown`), which ends its writer task.
//!
//! `cargo run --example chat_server -- 127.0.0.1:8888` serves until killed;
//! try it with two `nc 127.0.0.1 8888`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use asyncio::streams::{start_server, StreamReader, StreamWriter};
use asyncio::{ErrorKind, Queue};

/// A message, shared by the queues it is put into.
type Message = Rc<[u8]>;

#[derive(Default)]
struct Room {
    next_id: Cell<u64>,
    clients: RefCell<Vec<(u64, Queue<Message>)>>,
}

impl Room {
    fn broadcast(&self, from: u64, message: Message) -> asyncio::Result<()> {
        for (id, queue) in self.clients.borrow().iter() {
            if *id != from {
                queue.put_nowait(message.clone())?;
            }
        }
        Ok(())
    }
}

/// Writes what the client's queue receives, until the queue shuts down.
async fn deliver(queue: Queue<Message>, writer: StreamWriter) -> asyncio::Result<()> {
    loop {
        let message = match queue.get().await {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::QueueShutDown => break,
            Err(e) => return Err(e),
        };
        writer.write(&message)?;
        writer.drain().await?;
    }
    writer.close();
    writer.wait_closed().await
}

async fn handle(reader: StreamReader, writer: StreamWriter, room: Rc<Room>) -> asyncio::Result<()> {
    let id = room.next_id.get() + 1;
    room.next_id.set(id);
    let queue = Queue::new(0);
    room.clients.borrow_mut().push((id, queue.clone()));
    writer.write(format!("welcome, you are {id}\n").as_bytes())?;
    let sender = asyncio::create_task(deliver(queue.clone(), writer))?;
    room.broadcast(id, format!("{id} joined\n").into_bytes().into())?;
    while let Some(line) = reader.next_line().await? {
        let mut message = format!("{id}: ").into_bytes();
        message.extend_from_slice(&line);
        room.broadcast(id, message.into())?;
    }
    room.clients.borrow_mut().retain(|(other, _)| *other != id);
    room.broadcast(id, format!("{id} left\n").into_bytes().into())?;
    queue.shutdown(false);
    sender.await
}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8888".to_owned());
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| asyncio::Error::value("expected HOST:PORT"))?;
    let room = Rc::new(Room::default());
    let server = start_server(
        move |reader, writer| handle(reader, writer, room.clone()),
        host,
        port.parse()?,
    )
    .await?;
    for sock in server.sockets() {
        if let Some(addr) = sock.getsockname() {
            println!("Serving on {addr}");
        }
    }
    server.run(server.serve_forever()).await
}
