#[asyncio::test(virtual_time = true)]
async fn t() -> asyncio::Result<()> {
    Ok(())
}

fn main() {}
