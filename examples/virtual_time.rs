//! A program that waits an hour and a half — heartbeats, a back-off and a
//! timeout — run on a virtual clock: it finishes in milliseconds and
//! prints the same trace every time.
//!
//! `cargo run --example virtual_time`

use asyncio::testing::new_virtual_time_loop;
use asyncio::RunOptions;

async fn main_program() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let started = std::time::Instant::now();
    let heartbeat = asyncio::create_task(async {
        let loop_ = asyncio::get_running_loop()?;
        loop {
            asyncio::sleep(600.0).await?;
            println!("{:>7.1} heartbeat", loop_.time());
        }
        #[allow(unreachable_code)]
        Ok(())
    })?;
    for (attempt, delay) in [60.0, 120.0, 240.0, 480.0].into_iter().enumerate() {
        println!(
            "{:>7.1} attempt {} failed, retrying in {delay} s",
            loop_.time(),
            attempt + 1
        );
        asyncio::sleep(delay).await?;
    }
    let slow = asyncio::wait_for(asyncio::sleep(7200.0), 3600.0).await;
    println!(
        "{:>7.1} the slow call: {}",
        loop_.time(),
        slow.err()
            .map_or("done".to_owned(), |e| e.python_name().to_owned())
    );
    heartbeat.cancel();
    println!(
        "virtual time {:.0} s, real time under {} ms",
        loop_.time(),
        started.elapsed().as_millis() + 1
    );
    Ok(())
}

fn main() -> asyncio::Result<()> {
    asyncio::run_with(
        main_program(),
        RunOptions::new().loop_factory(new_virtual_time_loop),
    )
}
