#[asyncio::main(loop_factory)]
async fn main() {}
