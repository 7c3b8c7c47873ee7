#[asyncio::main(debug)]
async fn main() {}
