//! "Watch a file descriptor for read events", from the CPython docs
//! (asyncio-eventloop.html#watch-a-file-descriptor-for-read-events): a
//! reader callback on one end of a socket pair, with the loop driven by
//! hand (`run_forever` / `stop`).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

fn main() -> asyncio::Result<()> {
    // Create an event loop
    let loop_ = asyncio::new_event_loop()?;

    // Create a pair of connected file descriptors
    let (rsock, mut wsock) = UnixStream::pair()?;
    let rsock = Rc::new(rsock);

    let l = loop_.clone();
    let r = rsock.clone();
    let reader = move || {
        let mut data = [0u8; 100];
        let n = (&*r).read(&mut data).expect("recv");
        println!("Received: {}", String::from_utf8_lossy(&data[..n]));

        // We are done: unregister the file descriptor
        l.remove_reader(r.as_raw_fd()).expect("remove_reader");

        // Stop the event loop
        l.stop();
    };

    // Register the file descriptor for read event
    loop_.add_reader(rsock.as_raw_fd(), reader)?;

    // Simulate the reception of data from the network
    loop_.call_soon(move || {
        wsock.write_all(b"abc").expect("send");
    })?;

    // Run the event loop
    loop_.run_forever()?;

    // We are done. Close sockets and the event loop.
    loop_.close()
}
