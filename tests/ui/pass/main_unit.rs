#[asyncio::main]
async fn main() {
    let task = asyncio::create_task(async { Ok(1) }).unwrap();
    assert_eq!(task.await.unwrap(), 1);
}
