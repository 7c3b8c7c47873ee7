#[asyncio::main(loop_factory = 1)]
async fn main() {}
