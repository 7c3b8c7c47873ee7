//! Register an open socket to wait for data using streams, from the CPython
//! docs (asyncio-stream.html#register-an-open-socket-to-wait-for-data-using-streams).

use std::io::Write;

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    // Get a reference to the current event loop because
    // we want to access low-level APIs.
    let loop_ = asyncio::get_running_loop()?;

    // Create a pair of connected sockets.
    let (rsock, mut wsock) = std::os::unix::net::UnixStream::pair()?;

    // Register the open socket to wait for data.
    let (reader, writer) = asyncio::open_connection("", 0).sock(rsock).await?;

    // Simulate the reception of data from the network
    let mut w = wsock.try_clone()?;
    loop_.call_soon(move || -> asyncio::Result<()> { Ok(w.write_all(b"abc")?) })?;

    // Wait for data
    let data = reader.read(100).await?;

    // Got data, we are done: close the socket
    println!("Received: {}", String::from_utf8_lossy(&data));
    writer.close();
    writer.wait_closed().await?;

    // Close the second socket
    wsock.flush()?;
    drop(wsock);
    Ok(())
}
