fn make_loop() -> asyncio::Result<asyncio::EventLoop> {
    asyncio::new_event_loop()
}

#[asyncio::main(debug = true, loop_factory = make_loop)]
async fn main() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    assert!(loop_.get_debug());
    asyncio::sleep(0).await
}
