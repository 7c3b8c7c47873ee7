//! Pipes as transports: a child process's stdin and stdout connected with
//! `connect_write_pipe` and `connect_read_pipe` (the pattern behind
//! asyncio's subprocess transports). The child, `tr a-z A-Z`, upper-cases
//! what it reads; we write a line, close its stdin, and read to the end.

use std::process::{Command, Stdio};
use std::rc::Rc;

use asyncio::{BaseProtocol, Future, Protocol};

/// Collects the child's output; resolves `done` at its end.
struct Collect {
    output: std::cell::RefCell<Vec<u8>>,
    done: Future<()>,
}

impl BaseProtocol for Collect {
    fn connection_lost(self: &Rc<Self>, _exc: Option<asyncio::Error>) -> asyncio::Result<()> {
        let _ = self.done.set_result(());
        Ok(())
    }
}

impl Protocol for Collect {
    fn data_received(self: &Rc<Self>, data: &[u8]) -> asyncio::Result<()> {
        self.output.borrow_mut().extend_from_slice(data);
        Ok(())
    }
}

/// The write side needs no callbacks but the defaults.
struct Feed;
impl BaseProtocol for Feed {}
impl Protocol for Feed {}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let mut child = Command::new("tr")
        .args(["a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");

    let done = Future::<()>::new(&loop_);
    let d = done.clone();
    let (_reader, collected) = loop_
        .connect_read_pipe(
            move || Collect {
                output: Default::default(),
                done: d,
            },
            stdout,
        )
        .await?;
    let (writer, _) = loop_.connect_write_pipe(|| Feed, stdin).await?;

    let message = "hello pipes";
    println!("Send: '{message}'");
    writer.write(message.as_bytes())?;
    // write_eof() (or close()) closes the child's stdin once written.
    writer.write_eof()?;

    done.await?;
    println!(
        "Received: '{}'",
        String::from_utf8_lossy(&collected.output.borrow())
    );
    let code = asyncio::to_thread(move || {
        child
            .wait()
            .map(|status| status.code().unwrap_or(-1))
            .map_err(asyncio::Error::from)
    })?
    .await??;
    println!("Child exited with {code}");
    Ok(())
}
