#[asyncio::main(debug(true))]
async fn main() {}
