//! `asyncio.subprocess` (CPython's `subprocess.py`):
//! [`create_subprocess_exec`] and [`create_subprocess_shell`] give a
//! [`Process`] whose pipes are streams; `PIPE`, `DEVNULL` and `STDOUT`.
//!
//! ```no_run
//! # async fn f() -> asyncio_core::Result<()> {
//! use asyncio_core::subprocess::{create_subprocess_exec, PIPE};
//! let process = create_subprocess_exec("ls").arg("-l").stdout(PIPE).await?;
//! let (stdout, _) = process.communicate(None).await?;
//! assert_eq!(process.returncode(), Some(0));
//! # Ok(()) }
//! ```

use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::fmt;
use std::future::IntoFuture;
use std::rc::Rc;

use crate::base_events::{awaitable_via_into_future, EventLoop, LocalBoxFuture};
pub use crate::base_events::{Id, Stdio, SubprocessExec, DEVNULL, PIPE, STDOUT};
use crate::events::get_running_loop;
use crate::exceptions::{Error, Result};
use crate::futures::{Awaitable, Future};
use crate::protocols::{BaseProtocol, SubprocessProtocol};
use crate::streams::{
    FlowControl, StreamReader, StreamWriter, StreamWriterProtocol, DEFAULT_LIMIT,
};
use crate::transports::{SubprocessTransport, Transport};

/// `await asyncio.create_subprocess_exec(program, *args, stdin=…, …)`:
/// the builder of [`SubprocessExec`] (every keyword of
/// `loop.subprocess_exec`, plus [`limit`](SubprocessExec::limit)); the
/// streams are inherited unless set to [`PIPE`] (or a file, …), as in
/// Python.
pub fn create_subprocess_exec(program: impl AsRef<OsStr>) -> SubprocessExec<ProcessStreams> {
    SubprocessExec::detached(
        ProcessStreams {
            limit: DEFAULT_LIMIT,
        },
        program.as_ref(),
        false,
    )
}

/// `await asyncio.create_subprocess_shell(cmd, …)`: `cmd` run by
/// `/bin/sh -c`; otherwise as [`create_subprocess_exec`].
pub fn create_subprocess_shell(cmd: impl AsRef<OsStr>) -> SubprocessExec<ProcessStreams> {
    SubprocessExec::detached(
        ProcessStreams {
            limit: DEFAULT_LIMIT,
        },
        cmd.as_ref(),
        true,
    )
}

/// What [`create_subprocess_exec`] builds: a [`Process`] whose pipes are
/// streams with this limit.
#[derive(Debug)]
pub struct ProcessStreams {
    limit: usize,
}

impl SubprocessExec<ProcessStreams> {
    /// `limit=`: the stdout/stderr readers' limit (default 64 KiB).
    pub fn limit(mut self, limit: usize) -> Self {
        self.factory_mut().limit = limit;
        self
    }
}

impl IntoFuture for SubprocessExec<ProcessStreams> {
    type Output = Result<Process>;
    type IntoFuture = LocalBoxFuture<'static, Result<Process>>;

    fn into_future(mut self) -> Self::IntoFuture {
        Box::pin(async move {
            let loop_ = get_running_loop()?;
            let limit = self.factory_mut().limit;
            if limit == 0 {
                return Err(Error::value("Limit cannot be <= 0"));
            }
            let l = loop_.non_owning();
            let exec = self.map_factory(move |_| move || SubprocessStreamProtocol::new(&l, limit));
            let (transport, protocol) = exec.await?;
            Ok(Process::new(transport, protocol, &loop_))
        })
    }
}

awaitable_via_into_future!(impl<> SubprocessExec<ProcessStreams> => Process);

/// CPython's `SubprocessStreamProtocol`: feeds the child's stdout and
/// stderr into [`StreamReader`]s and gives its stdin [`StreamWriter`] flow
/// control.
pub struct SubprocessStreamProtocol {
    loop_: EventLoop,
    limit: usize,
    flow: FlowControl,
    transport: RefCell<Option<Rc<dyn SubprocessTransport>>>,
    stdin: RefCell<Option<Rc<dyn Transport>>>,
    stdout: RefCell<Option<StreamReader>>,
    stderr: RefCell<Option<StreamReader>>,
    pipe_fds: RefCell<Vec<i32>>,
    process_exited: Cell<bool>,
    stdin_closed: Future<()>,
}

impl SubprocessStreamProtocol {
    /// A protocol whose readers have `limit`.
    pub fn new(loop_: &EventLoop, limit: usize) -> Rc<SubprocessStreamProtocol> {
        Rc::new(SubprocessStreamProtocol {
            loop_: loop_.non_owning(),
            limit,
            flow: FlowControl::new(loop_),
            transport: RefCell::new(None),
            stdin: RefCell::new(None),
            stdout: RefCell::new(None),
            stderr: RefCell::new(None),
            pipe_fds: RefCell::new(Vec::new()),
            process_exited: Cell::new(false),
            stdin_closed: Future::new(loop_),
        })
    }

    fn reader(&self, fd: i32) -> Option<StreamReader> {
        match fd {
            1 => self.stdout.borrow().clone(),
            2 => self.stderr.borrow().clone(),
            _ => None,
        }
    }

    fn maybe_close_transport(&self) {
        if self.pipe_fds.borrow().is_empty() && self.process_exited.get() {
            let transport = self.transport.borrow_mut().take();
            if let Some(t) = transport {
                t.close();
            }
        }
    }
}

impl BaseProtocol for SubprocessStreamProtocol {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        self.flow.connection_lost(exc.as_ref());
        Ok(())
    }

    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        self.flow.pause_writing(&**self);
        Ok(())
    }

    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        self.flow.resume_writing(&**self);
        Ok(())
    }
}

impl SubprocessProtocol for SubprocessStreamProtocol {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn SubprocessTransport>) -> Result<()> {
        for (fd, slot) in [(1, &self.stdout), (2, &self.stderr)] {
            if let Some(pipe) = transport.get_pipe_transport(fd) {
                let reader = StreamReader::with_limit(&self.loop_, self.limit);
                reader.set_transport(pipe)?;
                *slot.borrow_mut() = Some(reader);
                self.pipe_fds.borrow_mut().push(fd);
            }
        }
        *self.stdin.borrow_mut() = transport.get_pipe_transport(0);
        *self.transport.borrow_mut() = Some(transport);
        Ok(())
    }

    fn pipe_data_received(self: &Rc<Self>, fd: i32, data: &[u8]) -> Result<()> {
        if let Some(reader) = self.reader(fd) {
            reader.feed_data(data);
        }
        Ok(())
    }

    fn pipe_connection_lost(self: &Rc<Self>, fd: i32, exc: Option<Error>) -> Result<()> {
        if fd == 0 {
            let stdin = self.stdin.borrow().clone();
            if let Some(pipe) = stdin {
                pipe.close();
            }
            self.connection_lost(exc.clone())?;
            let _ = match exc {
                None => self.stdin_closed.set_result(()),
                Some(e) => self.stdin_closed.set_exception(e),
            };
            return Ok(());
        }
        if let Some(reader) = self.reader(fd) {
            match exc {
                None => reader.feed_eof(),
                Some(e) => reader.set_exception(e),
            }
        }
        self.pipe_fds.borrow_mut().retain(|&f| f != fd);
        self.maybe_close_transport();
        Ok(())
    }

    fn process_exited(self: &Rc<Self>) -> Result<()> {
        self.process_exited.set(true);
        self.maybe_close_transport();
        Ok(())
    }
}

impl StreamWriterProtocol for SubprocessStreamProtocol {
    fn drain_ready(&self) -> Option<Result<()>> {
        self.flow.drain_ready()
    }

    fn drain(&self) -> LocalBoxFuture<'_, Result<()>> {
        Box::pin(self.flow.drain_helper())
    }

    fn close_waiter(&self) -> Future<()> {
        self.stdin_closed.clone()
    }
}

impl fmt::Debug for SubprocessStreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<asyncio.subprocess.SubprocessStreamProtocol object at {:p}>",
            self as *const _
        )
    }
}

/// A child process (Python's `asyncio.subprocess.Process`): its pipes as
/// streams, its pid, its return code once it exited.
pub struct Process {
    transport: Rc<dyn SubprocessTransport>,
    protocol: Rc<SubprocessStreamProtocol>,
    loop_: EventLoop,
    /// `process.stdin`: a writer to the child's stdin if it is a pipe.
    pub stdin: Option<StreamWriter>,
    /// `process.stdout`: a reader of the child's stdout if it is a pipe.
    pub stdout: Option<StreamReader>,
    /// `process.stderr`: a reader of the child's stderr if it is a pipe.
    pub stderr: Option<StreamReader>,
    /// `process.pid`.
    pub pid: u32,
}

impl Process {
    fn new(
        transport: Rc<dyn SubprocessTransport>,
        protocol: Rc<SubprocessStreamProtocol>,
        loop_: &EventLoop,
    ) -> Process {
        let stdin = protocol.stdin.borrow().clone().map(|pipe| {
            let p: Rc<dyn StreamWriterProtocol> = protocol.clone();
            StreamWriter::new(pipe, p, None, loop_)
        });
        let stdout = protocol.stdout.borrow().clone();
        let stderr = protocol.stderr.borrow().clone();
        let pid = transport.get_pid().unwrap_or(0);
        Process {
            transport,
            protocol,
            loop_: loop_.non_owning(),
            stdin,
            stdout,
            stderr,
            pid,
        }
    }

    /// `process.returncode`: `None` while it runs; negative for a signal.
    pub fn returncode(&self) -> Option<i32> {
        self.transport.get_returncode()
    }

    /// `await process.wait()`: the return code, once the process exited.
    ///
    /// As in CPython, a child writing much into a `PIPE` nobody reads
    /// blocks; use [`communicate`](Process::communicate).
    pub async fn wait(&self) -> Result<i32> {
        self.transport.wait().await
    }

    /// `send_signal(sig)`.
    pub fn send_signal(&self, signal: i32) -> Result<()> {
        self.transport.send_signal(signal)
    }

    /// `terminate()`: SIGTERM.
    pub fn terminate(&self) -> Result<()> {
        self.transport.terminate()
    }

    /// `kill()`: SIGKILL.
    pub fn kill(&self) -> Result<()> {
        self.transport.kill()
    }

    /// The subprocess transport under the process.
    pub fn transport(&self) -> &Rc<dyn SubprocessTransport> {
        &self.transport
    }

    /// The protocol under the process.
    pub fn protocol(&self) -> &Rc<SubprocessStreamProtocol> {
        &self.protocol
    }

    /// `await process.communicate(input)`: writes `input` to stdin and
    /// closes it, reads stdout and stderr to their ends (all at once, so
    /// that large inputs and outputs cannot deadlock), then waits for the
    /// exit. Gives `(stdout, stderr)`, each `None` unless that stream is a
    /// pipe. A child that stops reading (`BrokenPipeError`,
    /// `ConnectionResetError` on stdin) is not an error, as in CPython.
    pub async fn communicate(
        &self,
        input: Option<&[u8]>,
    ) -> Result<(Option<bytes::Bytes>, Option<bytes::Bytes>)> {
        let debug = self.loop_.get_debug();
        let read =
            |fd: i32, stream: &Option<StreamReader>| -> Result<Option<crate::Task<bytes::Bytes>>> {
                let Some(stream) = stream.clone() else {
                    return Ok(None);
                };
                let transport = self.transport.clone();
                let me = format!("{self:?}");
                let task = self.loop_.create_task(async move {
                    if debug {
                        crate::log::debug(format_args!("{me} communicate: read {}", fd_name(fd)));
                    }
                    let output = stream.read(-1).await?;
                    if debug {
                        crate::log::debug(format_args!("{me} communicate: close {}", fd_name(fd)));
                    }
                    if let Some(pipe) = transport.get_pipe_transport(fd) {
                        pipe.close();
                    }
                    Ok(output)
                })?;
                Ok(Some(task))
            };
        let stdout = read(1, &self.stdout)?;
        let stderr = read(2, &self.stderr)?;
        if let Some(stdin) = &self.stdin {
            self.feed_stdin(stdin, input, debug).await?;
        }
        let stdout = match stdout {
            Some(t) => Some(t.take().await?),
            None => None,
        };
        let stderr = match stderr {
            Some(t) => Some(t.take().await?),
            None => None,
        };
        self.wait().await?;
        Ok((stdout, stderr))
    }

    /// CPython's `_feed_stdin`.
    async fn feed_stdin(
        &self,
        stdin: &StreamWriter,
        input: Option<&[u8]>,
        debug: bool,
    ) -> Result<()> {
        let fed = async {
            if let Some(input) = input {
                stdin.write(input)?;
                if debug {
                    crate::log::debug(format_args!(
                        "{self:?} communicate: feed stdin ({} bytes)",
                        input.len()
                    ));
                }
            }
            stdin.drain().await
        };
        if let Err(e) = fed.await {
            if !matches!(e.python_name(), "BrokenPipeError" | "ConnectionResetError") {
                return Err(e);
            }
            if debug {
                crate::log::debug(format_args!("{self:?} communicate: stdin got {e:?}"));
            }
        }
        if debug {
            crate::log::debug(format_args!("{self:?} communicate: close stdin"));
        }
        stdin.close();
        Ok(())
    }
}

fn fd_name(fd: i32) -> &'static str {
    if fd == 1 {
        "stdout"
    } else {
        "stderr"
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Process {}>", self.pid)
    }
}
