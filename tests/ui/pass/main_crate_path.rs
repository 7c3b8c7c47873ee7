extern crate asyncio as renamed;

#[renamed::main(crate = "renamed")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    renamed::sleep(0).await?;
    Ok(())
}
