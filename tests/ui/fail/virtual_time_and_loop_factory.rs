#[asyncio::main(virtual_time, loop_factory = asyncio::new_event_loop)]
async fn main() -> asyncio::Result<()> {
    Ok(())
}
