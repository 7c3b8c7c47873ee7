//! TCP echo client and server using streams, from the CPython docs
//! (asyncio-stream.html#tcp-echo-client-using-streams and
//! #tcp-echo-server-using-streams), in one program: the server on a free
//! port, then the client talking to it.

use asyncio::streams::{open_connection, start_server, StreamReader, StreamWriter};

async fn handle_echo(reader: StreamReader, writer: StreamWriter) -> asyncio::Result<()> {
    let data = reader.read(100).await?;
    let message = String::from_utf8_lossy(&data).into_owned();
    if let Some(addr) = writer.get_extra_info("peername") {
        println!("Received '{message}' from {addr}");
    }
    println!("Send: '{message}'");
    writer.write(&data)?;
    writer.drain().await?;
    println!("Close the connection");
    writer.close();
    writer.wait_closed().await
}

async fn tcp_echo_client(message: &str, port: u16) -> asyncio::Result<()> {
    let (reader, writer) = open_connection("127.0.0.1", port).await?;
    println!("Send: '{message}'");
    writer.write(message.as_bytes())?;
    writer.drain().await?;
    let data = reader.read(100).await?;
    println!("Received: '{}'", String::from_utf8_lossy(&data));
    println!("Close the connection");
    writer.close();
    writer.wait_closed().await
}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let server = start_server(handle_echo, "127.0.0.1", 0).await?;
    let mut port = 0;
    for sock in server.sockets() {
        if let Some(addr) = sock.getsockname() {
            println!("Serving on {addr}");
            if let asyncio::Address::Inet(a) = addr {
                port = a.port();
            }
        }
    }
    tcp_echo_client("Hello World!", port).await?;
    // Let the handler finish before the server closes.
    server.close();
    server.wait_closed().await
}
