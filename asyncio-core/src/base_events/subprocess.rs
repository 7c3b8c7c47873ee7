//! `loop.subprocess_exec` and `loop.subprocess_shell` (CPython's
//! `base_events.py`): the builders and their options; the loop
//! implementation starts the child and makes the transport.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::future::IntoFuture;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;

use super::network::{take_protocol, typed_factory, LocalBoxFuture};
use super::EventLoop;
use crate::exceptions::{Error, Result};
use crate::futures::{Awaitable, Future};
use crate::protocols::{IntoSubprocessProtocol, SubprocessProtocolRef};
use crate::transports::SubprocessTransport;

/// Makes the protocol of a child process.
pub type SubprocessProtocolFactory = Box<dyn FnOnce() -> Result<SubprocessProtocolRef>>;

/// What awaiting `subprocess_exec`/`subprocess_shell` yields.
pub type SubprocessPair<P> = (Rc<dyn SubprocessTransport>, Rc<P>);

/// Where a child's stdin, stdout or stderr goes (the values Python's
/// `stdin=`/`stdout=`/`stderr=` take).
#[derive(Debug)]
pub enum Stdio {
    /// `subprocess.PIPE`: a pipe to the loop, served by a pipe transport
    /// (the default for all three).
    Pipe,
    /// `subprocess.DEVNULL`: `/dev/null`.
    DevNull,
    /// `subprocess.STDOUT`, for stderr only: wherever stdout goes.
    Stdout,
    /// `None`: the parent's own stream.
    Inherit,
    /// An open file or descriptor, given to the child (closed in the parent
    /// once the child started).
    Fd(OwnedFd),
    /// A descriptor number that stays the caller's (Python's `stdout=fd`):
    /// the child gets a duplicate.
    RawFd(RawFd),
}

/// `asyncio.subprocess.PIPE`.
pub const PIPE: Stdio = Stdio::Pipe;
/// `asyncio.subprocess.DEVNULL`.
pub const DEVNULL: Stdio = Stdio::DevNull;
/// `asyncio.subprocess.STDOUT`.
pub const STDOUT: Stdio = Stdio::Stdout;

impl From<OwnedFd> for Stdio {
    fn from(fd: OwnedFd) -> Stdio {
        Stdio::Fd(fd)
    }
}

impl From<File> for Stdio {
    fn from(file: File) -> Stdio {
        Stdio::Fd(file.into())
    }
}

impl<T: Into<Stdio>> From<Option<T>> for Stdio {
    /// `None` is Python's `None`: inherit the parent's stream.
    fn from(value: Option<T>) -> Stdio {
        value.map_or(Stdio::Inherit, Into::into)
    }
}

impl Stdio {
    /// CPython's `_format_pipe`, for debug logs.
    pub fn describe(&self) -> String {
        match self {
            Stdio::Pipe => "<pipe>".into(),
            Stdio::Stdout => "<stdout>".into(),
            Stdio::DevNull => "-3".into(),
            Stdio::Inherit => "None".into(),
            Stdio::Fd(fd) => format!("{fd:?}"),
            Stdio::RawFd(fd) => fd.to_string(),
        }
    }
}

/// A user or group, by name or number (Python's `user=`/`group=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    /// A name, looked up in the user or group database.
    Name(String),
    /// A number.
    Number(u32),
}

impl From<u32> for Id {
    fn from(id: u32) -> Id {
        Id::Number(id)
    }
}

impl From<&str> for Id {
    fn from(name: &str) -> Id {
        Id::Name(name.to_owned())
    }
}

impl From<String> for Id {
    fn from(name: String) -> Id {
        Id::Name(name)
    }
}

/// The arguments of `subprocess_exec`/`subprocess_shell`, once checked.
#[derive(Debug)]
pub struct SubprocessOptions {
    /// The program to run (`/bin/sh` for `subprocess_shell`).
    pub program: OsString,
    /// Its arguments after the program (`["-c", cmd]` for the shell).
    pub args: Vec<OsString>,
    /// `true` for `subprocess_shell` (for logs: CPython says "run shell
    /// command" then).
    pub shell: bool,
    /// `executable=`: the file to run, `program` being then only `argv[0]`.
    pub executable: Option<OsString>,
    /// `stdin=`.
    pub stdin: Stdio,
    /// `stdout=`.
    pub stdout: Stdio,
    /// `stderr=`.
    pub stderr: Stdio,
    /// `cwd=`.
    pub cwd: Option<PathBuf>,
    /// `env=`: the child's whole environment (`None`: the parent's).
    pub env: Option<Vec<(OsString, OsString)>>,
    /// `start_new_session=`.
    pub start_new_session: bool,
    /// `process_group=`.
    pub process_group: Option<i32>,
    /// `pass_fds=`.
    pub pass_fds: Vec<RawFd>,
    /// `close_fds=` (`None`: not given, see [`SubprocessExec::close_fds`]).
    pub close_fds: Option<bool>,
    /// `user=`.
    pub user: Option<Id>,
    /// `group=`.
    pub group: Option<Id>,
    /// `umask=` (`-1`: unchanged).
    pub umask: i32,
}

impl SubprocessOptions {
    fn new(program: OsString, args: Vec<OsString>, shell: bool) -> SubprocessOptions {
        SubprocessOptions {
            program,
            args,
            shell,
            executable: None,
            stdin: Stdio::Pipe,
            stdout: Stdio::Pipe,
            stderr: Stdio::Pipe,
            cwd: None,
            env: None,
            start_new_session: false,
            process_group: None,
            pass_fds: Vec::new(),
            close_fds: None,
            user: None,
            group: None,
            umask: -1,
        }
    }
}

/// The keywords CPython accepts only to refuse other values.
#[derive(Debug, Default)]
struct Refused {
    universal_newlines: bool,
    shell: Option<bool>,
    bufsize: i64,
    text: bool,
    encoding: Option<String>,
    errors: Option<String>,
}

impl Refused {
    /// CPython's checks, in its order; `shell` is what the call needs.
    fn check(&self, shell: bool) -> Result<()> {
        if self.universal_newlines {
            return Err(Error::value("universal_newlines must be False"));
        }
        match (shell, self.shell) {
            (false, Some(true)) => return Err(Error::value("shell must be False")),
            (true, Some(false)) => return Err(Error::value("shell must be True")),
            _ => {}
        }
        if self.bufsize != 0 {
            return Err(Error::value("bufsize must be 0"));
        }
        if self.text {
            return Err(Error::value("text must be False"));
        }
        if self.encoding.is_some() {
            return Err(Error::value("encoding must be None"));
        }
        if self.errors.is_some() {
            return Err(Error::value("errors must be None"));
        }
        Ok(())
    }
}

/// The builder of [`EventLoop::subprocess_exec`] and
/// [`EventLoop::subprocess_shell`]; await it for `(transport, protocol)`.
///
/// `cmd` of `subprocess_shell` is a string by its type, so CPython's "cmd
/// must be a string" cannot happen.
pub struct SubprocessExec<F> {
    /// `None` for `asyncio.create_subprocess_*`: the running loop, when
    /// awaited.
    loop_: Option<EventLoop>,
    factory: F,
    options: SubprocessOptions,
    refused: Refused,
}

impl<F> fmt::Debug for SubprocessExec<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubprocessExec")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// `await loop.subprocess_exec(protocol_factory, program, *args, ...)`:
    /// starts `program` (looked up in `PATH`) with the arguments given by
    /// [`arg`](SubprocessExec::arg)/[`args`](SubprocessExec::args); keyword
    /// arguments are builder methods. stdin, stdout and stderr are pipes
    /// unless set otherwise; the protocol gets `pipe_data_received(fd,
    /// data)`, `pipe_connection_lost(fd, exc)`, `process_exited()` and, once
    /// the process exited and every pipe closed, `connection_lost(None)`.
    ///
    /// The exit is seen through a pidfd registered with the loop (no
    /// polling, no SIGCHLD handler, from a loop on any thread); the child is
    /// reaped as soon as it exits, and never left a zombie: a child still
    /// running when its transport is dropped or its loop closed is killed
    /// and reaped (CPython's transport `__del__`).
    ///
    /// Errors: CPython's `ValueError`s for the refused keywords
    /// (`"universal_newlines must be False"`, `"shell must be False"`,
    /// `"bufsize must be 0"`, `"text must be False"`, `"encoding must be
    /// None"`, `"errors must be None"`), checked before the protocol is
    /// made; `FileNotFoundError` (errno 2) for a missing program;
    /// `PermissionError` for one that cannot be run.
    ///
    /// ```no_run
    /// # async fn f(loop_: asyncio_core::EventLoop) -> asyncio_core::Result<()> {
    /// # struct Echo;
    /// # impl asyncio_core::protocols::BaseProtocol for Echo {}
    /// # impl asyncio_core::protocols::SubprocessProtocol for Echo {}
    /// use asyncio_core::subprocess::DEVNULL;
    /// let (transport, protocol) = loop_
    ///     .subprocess_exec(|| Echo, "echo")
    ///     .arg("hello")
    ///     .stdin(DEVNULL)
    ///     .await?;
    /// let code = transport.wait().await?;
    /// # Ok(()) }
    /// ```
    pub fn subprocess_exec<F, P>(
        &self,
        protocol_factory: F,
        program: impl AsRef<OsStr>,
    ) -> SubprocessExec<F>
    where
        F: FnOnce() -> P + 'static,
        P: IntoSubprocessProtocol,
    {
        SubprocessExec {
            loop_: Some(self.non_owning()),
            factory: protocol_factory,
            options: SubprocessOptions::new(program.as_ref().to_owned(), Vec::new(), false),
            refused: Refused::default(),
        }
    }

    /// `await loop.subprocess_shell(protocol_factory, cmd, ...)`: runs `cmd`
    /// with `/bin/sh -c`; otherwise as [`subprocess_exec`](EventLoop::subprocess_exec)
    /// (also refusing `shell(false)`: `"shell must be True"`).
    pub fn subprocess_shell<F, P>(
        &self,
        protocol_factory: F,
        cmd: impl AsRef<OsStr>,
    ) -> SubprocessExec<F>
    where
        F: FnOnce() -> P + 'static,
        P: IntoSubprocessProtocol,
    {
        SubprocessExec {
            loop_: Some(self.non_owning()),
            factory: protocol_factory,
            options: SubprocessOptions::new(
                "/bin/sh".into(),
                vec!["-c".into(), cmd.as_ref().to_owned()],
                true,
            ),
            refused: Refused::default(),
        }
    }
}

impl<F> SubprocessExec<F> {
    /// `asyncio.create_subprocess_exec`/`_shell`'s builder: no loop yet
    /// (the running one when awaited), and the three streams inherited.
    pub(crate) fn detached(factory: F, program: &OsStr, shell: bool) -> SubprocessExec<F> {
        let mut options = if shell {
            SubprocessOptions::new(
                "/bin/sh".into(),
                vec!["-c".into(), program.to_owned()],
                true,
            )
        } else {
            SubprocessOptions::new(program.to_owned(), Vec::new(), false)
        };
        options.stdin = Stdio::Inherit;
        options.stdout = Stdio::Inherit;
        options.stderr = Stdio::Inherit;
        SubprocessExec {
            loop_: None,
            factory,
            options,
            refused: Refused::default(),
        }
    }

    pub(crate) fn factory_mut(&mut self) -> &mut F {
        &mut self.factory
    }

    /// The same call with another protocol factory.
    pub(crate) fn map_factory<G>(self, f: impl FnOnce(F) -> G) -> SubprocessExec<G> {
        SubprocessExec {
            loop_: self.loop_,
            factory: f(self.factory),
            options: self.options,
            refused: self.refused,
        }
    }

    /// One more argument (`*args`).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.options.args.push(arg.as_ref().to_owned());
        self
    }
    /// More arguments (`*args`).
    pub fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        self.options
            .args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    /// `stdin=`: [`PIPE`] (default), [`DEVNULL`], `None` (inherit), a file…
    pub fn stdin(mut self, stdin: impl Into<Stdio>) -> Self {
        self.options.stdin = stdin.into();
        self
    }
    /// `stdout=`.
    pub fn stdout(mut self, stdout: impl Into<Stdio>) -> Self {
        self.options.stdout = stdout.into();
        self
    }
    /// `stderr=` ([`STDOUT`]: merged into stdout; its data then comes as fd 1).
    pub fn stderr(mut self, stderr: impl Into<Stdio>) -> Self {
        self.options.stderr = stderr.into();
        self
    }
    /// `executable=`: runs this file, the program name being only `argv[0]`.
    pub fn executable(mut self, executable: impl AsRef<OsStr>) -> Self {
        self.options.executable = Some(executable.as_ref().to_owned());
        self
    }
    /// `cwd=`.
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.options.cwd = Some(cwd.into());
        self
    }
    /// `env=`: the child's whole environment.
    pub fn env<I, K, V>(mut self, env: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.options.env = Some(
            env.into_iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
                .collect(),
        );
        self
    }
    /// `start_new_session=`: the child calls `setsid()`.
    pub fn start_new_session(mut self, yes: bool) -> Self {
        self.options.start_new_session = yes;
        self
    }
    /// `process_group=`: `setpgid(0, pgid)` in the child (0: a new group).
    pub fn process_group(mut self, pgid: i32) -> Self {
        self.options.process_group = Some(pgid);
        self
    }
    /// `pass_fds=`: descriptors the child inherits (as in CPython, this
    /// implies `close_fds(true)` for all others).
    pub fn pass_fds(mut self, fds: impl IntoIterator<Item = RawFd>) -> Self {
        self.options.pass_fds.extend(fds);
        self
    }
    /// `close_fds=`. Descriptors opened by Rust (and by this crate) are
    /// close-on-exec, so by default the child inherits only its three
    /// streams and `pass_fds`, as with CPython's default `close_fds=True`,
    /// without a sweep; `close_fds(true)` also marks close-on-exec every
    /// other descriptor (e.g. opened by C code without `O_CLOEXEC`) in the
    /// child before it runs the program; `false` leaves them.
    pub fn close_fds(mut self, close: bool) -> Self {
        self.options.close_fds = Some(close);
        self
    }
    /// `user=`: run as this user (a name or a uid).
    pub fn user(mut self, user: impl Into<Id>) -> Self {
        self.options.user = Some(user.into());
        self
    }
    /// `group=`: run with this group (a name or a gid).
    pub fn group(mut self, group: impl Into<Id>) -> Self {
        self.options.group = Some(group.into());
        self
    }
    /// `umask=`.
    pub fn umask(mut self, umask: i32) -> Self {
        self.options.umask = umask;
        self
    }
    /// `universal_newlines=`: only `false` is accepted, as in CPython
    /// (the pipes carry bytes).
    pub fn universal_newlines(mut self, yes: bool) -> Self {
        self.refused.universal_newlines = yes;
        self
    }
    /// `shell=`: `false` for `subprocess_exec`, `true` for
    /// `subprocess_shell`; the other value is CPython's `ValueError`.
    pub fn shell(mut self, shell: bool) -> Self {
        self.refused.shell = Some(shell);
        self
    }
    /// `bufsize=`: only 0 is accepted.
    pub fn bufsize(mut self, bufsize: i64) -> Self {
        self.refused.bufsize = bufsize;
        self
    }
    /// `text=`: only `false` is accepted.
    pub fn text(mut self, text: bool) -> Self {
        self.refused.text = text;
        self
    }
    /// `encoding=`: refused (only `None` is accepted).
    pub fn encoding(mut self, encoding: impl Into<String>) -> Self {
        self.refused.encoding = Some(encoding.into());
        self
    }
    /// `errors=`: refused (only `None` is accepted).
    pub fn errors(mut self, errors: impl Into<String>) -> Self {
        self.refused.errors = Some(errors.into());
        self
    }
}

impl<F, P> IntoFuture for SubprocessExec<F>
where
    F: FnOnce() -> P + 'static,
    P: IntoSubprocessProtocol,
{
    type Output = Result<SubprocessPair<P::Protocol>>;
    type IntoFuture = LocalBoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.refused.check(self.options.shell)?;
            let (factory, slot) = typed_factory(self.factory, P::into_subprocess_protocol);
            let loop_ = match self.loop_ {
                Some(loop_) => loop_,
                None => crate::events::get_running_loop()?,
            };
            let transport = loop_
                .network()?
                .subprocess_exec(&loop_, factory, self.options)
                .await?;
            Ok((transport, take_protocol(&slot)?))
        })
    }
}

awaitable_via_into_future!(impl<F, P> SubprocessExec<F> => SubprocessPair<P::Protocol>
    where F: FnOnce() -> P + 'static, P: IntoSubprocessProtocol);
