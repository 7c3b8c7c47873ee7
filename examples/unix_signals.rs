//! Set signal handlers for SIGINT and SIGTERM, from the CPython docs
//! (asyncio-eventloop.html#set-signal-handlers-for-sigint-and-sigterm).
//!
//! As in Python, the handler stops the loop under `asyncio.run`, which then
//! fails with "Event loop stopped before Future completed."

use asyncio::signal::{SIGINT, SIGTERM};
use asyncio::EventLoop;

fn ask_exit(signame: &str, loop_: &EventLoop) {
    println!("got signal {signame}: exit");
    loop_.stop();
}

async fn main_() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    for (signame, sig) in [("SIGINT", SIGINT), ("SIGTERM", SIGTERM)] {
        let l = loop_.clone();
        loop_.add_signal_handler(sig, move || ask_exit(signame, &l))?;
    }
    // Printed once the handlers are in place (the docs print them before
    // `asyncio.run`), so that a signal sent on reading them is handled.
    println!("Event loop running for 1 hour, press Ctrl+C to interrupt.");
    println!(
        "pid {}: send SIGINT or SIGTERM to exit.",
        std::process::id()
    );
    asyncio::sleep(3600.0).await
}

fn main() -> asyncio::Result<()> {
    asyncio::run(main_())
}
