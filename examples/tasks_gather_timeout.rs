//! Tasks, `gather` and `timeout`, after the CPython "Coroutines and Tasks"
//! docs: a factorial race with `gather`, then a job cut short by `timeout`.

use asyncio::{ErrorKind, Result};

async fn factorial(name: &'static str, number: u64) -> Result<u64> {
    let mut f = 1;
    for i in 2..=number {
        println!("Task {name}: Compute factorial({number}), currently i={i}...");
        asyncio::sleep(0.1).await?;
        f *= i;
    }
    println!("Task {name}: factorial({number}) = {f}");
    Ok(f)
}

async fn long_running_task() -> Result<()> {
    asyncio::sleep(3600).await
}

#[asyncio::main]
async fn main() -> Result<()> {
    // Schedule three calls *concurrently*:
    let results =
        asyncio::gather([factorial("A", 2), factorial("B", 3), factorial("C", 4)]).await?;
    println!("{results:?}");

    // Tasks run concurrently once created.
    let task = asyncio::create_task_named(factorial("D", 3), "D")?;
    println!("created {:?}", task.get_name());
    println!("D returned {}", task.await?);

    // `async with asyncio.timeout(0.3):`
    match asyncio::timeout(0.3).run(long_running_task()).await {
        Err(e) if e.kind() == ErrorKind::TimeoutError => {
            println!("The long operation timed out, but we've handled it.")
        }
        other => other?,
    }
    println!("This statement will run regardless.");
    Ok(())
}
