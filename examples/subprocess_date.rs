//! `loop.subprocess_exec()` and `SubprocessProtocol`, from the CPython docs
//! (asyncio-protocol.html#loop-subprocess-exec-and-subprocessprotocol):
//! read a child's output through a protocol and wait for it to exit. The
//! child here is `date` rather than `python -c 'print(datetime.now())'`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use asyncio::subprocess::Stdio;
use asyncio::{BaseProtocol, Error, Future, Result, SubprocessProtocol};

struct DateProtocol {
    exit_future: Future<bool>,
    output: RefCell<Vec<u8>>,
    pipe_closed: Cell<bool>,
    exited: Cell<bool>,
}

impl DateProtocol {
    fn check_for_exit(&self) -> Result<()> {
        if self.pipe_closed.get() && self.exited.get() {
            self.exit_future.set_result(true)?;
        }
        Ok(())
    }
}

impl BaseProtocol for DateProtocol {}

impl SubprocessProtocol for DateProtocol {
    fn pipe_connection_lost(self: &Rc<Self>, _fd: i32, _exc: Option<Error>) -> Result<()> {
        self.pipe_closed.set(true);
        self.check_for_exit()
    }

    fn pipe_data_received(self: &Rc<Self>, _fd: i32, data: &[u8]) -> Result<()> {
        self.output.borrow_mut().extend_from_slice(data);
        Ok(())
    }

    fn process_exited(self: &Rc<Self>) -> Result<()> {
        self.exited.set(true);
        self.check_for_exit()
    }
}

async fn get_date() -> Result<String> {
    let loop_ = asyncio::get_running_loop()?;

    // Create the subprocess controlled by DateProtocol;
    // redirect the standard output into a pipe.
    let exit_future = loop_.create_future::<bool>();
    let f = exit_future.clone();
    let (transport, protocol) = loop_
        .subprocess_exec(
            move || DateProtocol {
                exit_future: f,
                output: RefCell::new(Vec::new()),
                pipe_closed: Cell::new(false),
                exited: Cell::new(false),
            },
            "date",
        )
        .arg("+%Y-%m-%d %H:%M:%S")
        .stdin(None::<Stdio>)
        .stderr(None::<Stdio>)
        .await?;

    // Wait for the subprocess exit using the process_exited()
    // method of the protocol.
    exit_future.await?;

    // Close the stdout pipe.
    transport.close();

    // Read the output which was collected by the
    // pipe_data_received() method of the protocol.
    let data = protocol.output.borrow().clone();
    Ok(String::from_utf8_lossy(&data).trim_end().to_owned())
}

fn main() -> Result<()> {
    let date = asyncio::run(get_date())?;
    println!("Current date: {date}");
    Ok(())
}
