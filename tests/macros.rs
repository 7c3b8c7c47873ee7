//! `#[asyncio::main]` / `#[asyncio::test]`: expansion behaviour and the
//! compile errors they give for misuse (pinned with trybuild).

#[asyncio::test]
async fn test_runs_inside_a_running_loop() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    assert!(loop_.is_running());
    assert!(asyncio::current_task()?.is_some());
    Ok(())
}

#[asyncio::test]
async fn test_without_return_type() {
    asyncio::sleep(0).await.unwrap();
}

#[asyncio::test(debug = true)]
async fn test_debug_option() -> asyncio::Result<()> {
    assert!(asyncio::get_running_loop()?.get_debug());
    Ok(())
}

#[asyncio::test]
async fn test_early_return_returns_from_the_body() -> Result<(), String> {
    if asyncio::get_running_loop().is_ok() {
        return Ok(());
    }
    Err("no running loop inside #[asyncio::test]".into())
}

// A panic in the body ends the main task with a `Panic` error; the
// generated function reports it as Python reports an uncaught exception.
#[asyncio::test]
#[should_panic(expected = "Panic: kaboom")]
async fn panicking_body_fails_the_test() {
    asyncio::sleep(0).await.unwrap();
    panic!("kaboom");
}

// The body's own `Result` is returned untouched.
#[test]
fn body_error_is_returned() {
    #[asyncio::main]
    async fn failing() -> asyncio::Result<()> {
        asyncio::sleep(0).await?;
        Err(asyncio::Error::value("boom"))
    }
    let err = failing().unwrap_err();
    assert_eq!(err.traceback_line(), "ValueError: boom");
}

#[test]
fn macro_misuse_is_a_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
