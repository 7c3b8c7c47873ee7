#[asyncio::main]
async fn main<T>() {}
