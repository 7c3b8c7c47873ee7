//! Display the current date every second for 5 seconds with `call_later`,
//! from the CPython docs (asyncio-eventloop.html#display-the-current-date-with-call-later).

use std::time::{SystemTime, UNIX_EPOCH};

use asyncio::EventLoop;

fn display_date(end_time: f64, loop_: EventLoop) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    println!("{now:.6} (seconds since the epoch)");
    if loop_.time() + 1.0 < end_time {
        let l = loop_.clone();
        // Errors only if the loop is closed, which cannot happen while it runs.
        let _ = loop_.call_later(1.0, move || display_date(end_time, l));
    } else {
        loop_.stop();
    }
}

fn main() -> asyncio::Result<()> {
    let loop_ = asyncio::new_event_loop()?;

    // Schedule the first call to display_date()
    let end_time = loop_.time() + 5.0;
    let l = loop_.clone();
    loop_.call_soon(move || display_date(end_time, l))?;

    // Blocking call interrupted by loop.stop()
    let result = loop_.run_forever();
    loop_.close()?;
    result
}
