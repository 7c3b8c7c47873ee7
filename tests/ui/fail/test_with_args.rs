#[asyncio::test]
async fn takes_args(_x: u8) {}

fn main() {}
