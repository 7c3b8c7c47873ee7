//! "Hello World" with `call_soon` and `run_forever`, from the CPython docs
//! (asyncio-eventloop.html#hello-world-with-call-soon).

use asyncio::EventLoop;

fn hello_world(loop_: &EventLoop) {
    println!("Hello World");
    loop_.stop();
}

fn main() -> asyncio::Result<()> {
    let loop_ = asyncio::new_event_loop()?;

    // Schedule a call to hello_world()
    let l = loop_.clone();
    loop_.call_soon(move || hello_world(&l))?;

    // Blocking call interrupted by loop.stop()
    let result = loop_.run_forever();
    loop_.close()?;
    result
}
