//! `loop.subprocess_exec` / `subprocess_shell` with real child processes:
//! CPython's `test_events.py` `SubprocessTestsMixin` (its `echo.py`,
//! `echo2.py` and `echo3.py` helpers are shell scripts here), the argument
//! checks of `test_base_events.py`, and what the issue adds: callback order,
//! `wait()` with a grandchild holding the pipes (gh-119710), reaping from
//! any thread, no zombie and no descriptor left after 1,000 spawns.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use asyncio::signal::{SIGHUP, SIGKILL, SIGTERM};
use asyncio::subprocess::{Stdio, DEVNULL, STDOUT};
use asyncio::{
    BaseProtocol, Error, ErrorKind, EventLoop, Result, SubprocessProtocol, SubprocessTransport,
};
use common::{capture_logs, in_child, open_fds, record_exceptions};

const LIMIT: f64 = 20.0;

/// `echo.py`: copies stdin to stdout.
const ECHO: &str = "cat";
/// `echo2.py`: one read, written to stdout and stderr.
const ECHO2: &str =
    r#"buf=$(dd bs=1024 count=1 2>/dev/null); printf 'OUT:%s' "$buf"; printf 'ERR:%s' "$buf" >&2"#;
/// `echo3.py`: copies stdin to stdout, reporting a broken stdout on stderr.
const ECHO3: &str = r#"trap '' PIPE
while true; do buf=$(dd bs=1024 count=1 2>/dev/null); [ -z "$buf" ] && break; printf 'OUT:%s' "$buf" 2>/dev/null || printf 'ERR:BrokenPipeError' >&2; done"#;

/// CPython's `MySubprocessProtocol`, recording every call in order.
#[derive(Default)]
struct Proto {
    events: RefCell<Vec<String>>,
    transport: RefCell<Option<Rc<dyn SubprocessTransport>>>,
    data: RefCell<BTreeMap<i32, Vec<u8>>>,
    disconnects: RefCell<BTreeMap<i32, Option<String>>>,
    returncode: Cell<Option<i32>>,
}

impl Proto {
    fn events(&self) -> Vec<String> {
        self.events.borrow().clone()
    }
    fn connected(&self) -> bool {
        self.events.borrow().iter().any(|e| e == "connection_made")
    }
    fn completed(&self) -> bool {
        self.events.borrow().iter().any(|e| e == "connection_lost")
    }
    fn data(&self, fd: i32) -> Vec<u8> {
        self.data.borrow().get(&fd).cloned().unwrap_or_default()
    }
    fn state_check(&self) -> Result<()> {
        let ev = self.events.borrow();
        if ev.first().map(String::as_str) != Some("connection_made")
            || ev.iter().any(|e| e == "connection_lost")
        {
            return Err(Error::runtime(format!("state: {ev:?}")));
        }
        Ok(())
    }
}

impl BaseProtocol for Proto {
    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) -> Result<()> {
        self.state_check()?;
        assert!(exc.is_none());
        self.events.borrow_mut().push("connection_lost".into());
        Ok(())
    }
    fn pause_writing(self: &Rc<Self>) -> Result<()> {
        self.events.borrow_mut().push("pause_writing".into());
        Ok(())
    }
    fn resume_writing(self: &Rc<Self>) -> Result<()> {
        self.events.borrow_mut().push("resume_writing".into());
        Ok(())
    }
}

impl SubprocessProtocol for Proto {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn SubprocessTransport>) -> Result<()> {
        assert!(self.events.borrow().is_empty(), "{:?}", self.events());
        *self.transport.borrow_mut() = Some(transport);
        self.events.borrow_mut().push("connection_made".into());
        Ok(())
    }
    fn pipe_data_received(self: &Rc<Self>, fd: i32, data: &[u8]) -> Result<()> {
        self.state_check()?;
        self.data
            .borrow_mut()
            .entry(fd)
            .or_default()
            .extend_from_slice(data);
        Ok(())
    }
    fn pipe_connection_lost(self: &Rc<Self>, fd: i32, exc: Option<Error>) -> Result<()> {
        self.state_check()?;
        self.events
            .borrow_mut()
            .push(format!("pipe_connection_lost({fd})"));
        self.disconnects
            .borrow_mut()
            .insert(fd, exc.map(|e| e.python_name().to_owned()));
        Ok(())
    }
    fn process_exited(self: &Rc<Self>) -> Result<()> {
        self.state_check()?;
        let code = self.transport.borrow().as_ref().unwrap().get_returncode();
        self.returncode.set(code);
        self.events.borrow_mut().push("process_exited".into());
        Ok(())
    }
}

async fn until(what: &str, cond: impl Fn() -> bool) -> Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let deadline = loop_.time() + LIMIT;
    while !cond() {
        if loop_.time() > deadline {
            panic!("timed out waiting until {what}");
        }
        asyncio::sleep(0.001).await?;
    }
    Ok(())
}

fn run<T: 'static, F>(body: impl FnOnce(EventLoop) -> F) -> T
where
    F: std::future::Future<Output = Result<T>> + 'static,
{
    common::on_loop(body)
}

type Pair = (Rc<dyn SubprocessTransport>, Rc<Proto>);

async fn sh(loop_: &EventLoop, script: &str) -> Result<Pair> {
    loop_
        .subprocess_exec(Proto::default, "sh")
        .args(["-c", script])
        .await
}

#[test]
fn test_subprocess_exec() {
    run(|loop_| async move {
        let (transp, proto) = loop_.subprocess_exec(Proto::default, ECHO).await?;
        until("connected", || proto.connected()).await?;
        let stdin = transp.get_pipe_transport(0).unwrap();
        stdin.write(b"Python The Winner")?;
        until("data", || !proto.data(1).is_empty()).await?;
        transp.close();
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(-SIGKILL));
        assert_eq!(proto.data(1), b"Python The Winner");
        Ok(())
    })
}

#[test]
fn test_subprocess_interactive() {
    run(|loop_| async move {
        let (transp, proto) = loop_.subprocess_exec(Proto::default, ECHO).await?;
        assert!(
            proto.connected(),
            "connection_made runs before the call returns"
        );
        let stdin = transp.get_pipe_transport(0).unwrap();
        stdin.write(b"Python ")?;
        until("data", || proto.data(1) == b"Python ").await?;
        stdin.write(b"The Winner")?;
        until("more data", || proto.data(1) == b"Python The Winner").await?;
        transp.close();
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(-SIGKILL));
        Ok(())
    })
}

#[test]
fn test_subprocess_shell() {
    run(|loop_| async move {
        let (transp, proto) = loop_
            .subprocess_shell(Proto::default, "echo Python")
            .await?;
        transp.get_pipe_transport(0).unwrap().close();
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(0));
        assert_eq!(proto.disconnects.borrow().len(), 3);
        assert_eq!(proto.data(1), b"Python\n");
        assert_eq!(proto.data(2), b"");
        transp.close();
        Ok(())
    })
}

#[test]
fn test_subprocess_exitcode() {
    run(|loop_| async move {
        let (transp, proto) = loop_
            .subprocess_shell(Proto::default, "exit 7")
            .stdin(None::<Stdio>)
            .stdout(None::<Stdio>)
            .stderr(None::<Stdio>)
            .await?;
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(7));
        assert_eq!(transp.get_returncode(), Some(7));
        transp.close();
        Ok(())
    })
}

#[test]
fn test_subprocess_close_after_finish() {
    run(|loop_| async move {
        let (transp, proto) = loop_
            .subprocess_shell(Proto::default, "exit 7")
            .stdin(None::<Stdio>)
            .stdout(None::<Stdio>)
            .stderr(None::<Stdio>)
            .await?;
        for fd in 0..3 {
            assert!(transp.get_pipe_transport(fd).is_none());
        }
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(7));
        transp.close();
        assert!(transp.is_closing());
        Ok(())
    })
}

#[test]
fn test_subprocess_kill() {
    run(|loop_| async move {
        let (transp, proto) = loop_.subprocess_exec(Proto::default, ECHO).await?;
        transp.kill()?;
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(-SIGKILL));
        transp.close();
        Ok(())
    })
}

#[test]
fn test_subprocess_terminate() {
    run(|loop_| async move {
        let (transp, proto) = loop_.subprocess_exec(Proto::default, ECHO).await?;
        transp.terminate()?;
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(-SIGTERM));
        transp.close();
        Ok(())
    })
}

#[test]
fn test_subprocess_send_signal() {
    run(|loop_| async move {
        let (transp, proto) = loop_.subprocess_exec(Proto::default, ECHO).await?;
        transp.send_signal(SIGHUP)?;
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(-SIGHUP));
        transp.close();
        Ok(())
    })
}

#[test]
fn test_subprocess_stderr() {
    run(|loop_| async move {
        let (transp, proto) = sh(&loop_, ECHO2).await?;
        transp.get_pipe_transport(0).unwrap().write(b"test")?;
        transp.get_pipe_transport(0).unwrap().close();
        until("completed", || proto.completed()).await?;
        transp.close();
        assert_eq!(proto.data(1), b"OUT:test");
        assert!(proto.data(2).starts_with(b"ERR:test"));
        assert_eq!(proto.returncode.get(), Some(0));
        Ok(())
    })
}

#[test]
fn test_subprocess_stderr_redirect_to_stdout() {
    run(|loop_| async move {
        let (transp, proto) = loop_
            .subprocess_exec(Proto::default, "sh")
            .args(["-c", ECHO2])
            .stderr(STDOUT)
            .await?;
        assert!(transp.get_pipe_transport(1).is_some());
        assert!(transp.get_pipe_transport(2).is_none());
        transp.get_pipe_transport(0).unwrap().write(b"test")?;
        transp.get_pipe_transport(0).unwrap().close();
        until("completed", || proto.completed()).await?;
        assert!(proto.data(1).starts_with(b"OUT:testERR:test"));
        assert_eq!(proto.data(2), b"");
        transp.close();
        assert_eq!(proto.returncode.get(), Some(0));
        // Only 0 and 1 were pipes.
        assert_eq!(
            proto
                .disconnects
                .borrow()
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            vec![0, 1]
        );
        Ok(())
    })
}

#[test]
fn test_subprocess_close_client_stream() {
    run(|loop_| async move {
        let (transp, proto) = sh(&loop_, ECHO3).await?;
        let stdin = transp.get_pipe_transport(0).unwrap();
        let stdout = transp.get_pipe_transport(1).unwrap();
        stdin.write(b"test")?;
        until("data", || proto.data(1) == b"OUT:test").await?;
        stdout.close();
        until("stdout lost", || {
            proto.disconnects.borrow().contains_key(&1)
        })
        .await?;
        stdin.write(b"xxx")?;
        until("stderr data", || !proto.data(2).is_empty()).await?;
        assert_eq!(proto.data(2), b"ERR:BrokenPipeError");
        transp.close();
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(-SIGKILL));
        Ok(())
    })
}

#[test]
fn test_subprocess_wait_no_same_group() {
    run(|loop_| async move {
        let (transp, proto) = loop_
            .subprocess_shell(Proto::default, "exit 7")
            .stdin(None::<Stdio>)
            .stdout(None::<Stdio>)
            .stderr(None::<Stdio>)
            .start_new_session(true)
            .await?;
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(7));
        transp.close();
        Ok(())
    })
}

async fn refused<F>(
    call: impl FnOnce() -> asyncio::base_events::SubprocessExec<F>,
) -> (ErrorKind, String, bool)
where
    F: FnOnce() -> Proto + 'static,
{
    match call().await {
        Ok(_) => panic!("not refused"),
        Err(e) => (e.kind(), e.to_string(), false),
    }
}

#[test]
fn test_subprocess_exec_invalid_args() {
    run(|loop_| async move {
        let made = Rc::new(Cell::new(0));
        let m = made.clone();
        let factory = move || {
            m.set(m.get() + 1);
            Proto::default()
        };
        let l = &loop_;
        let cases: Vec<(asyncio::base_events::SubprocessExec<_>, &str)> = vec![
            (
                l.subprocess_exec(factory.clone(), "pwd")
                    .universal_newlines(true),
                "universal_newlines must be False",
            ),
            (
                l.subprocess_exec(factory.clone(), "pwd").bufsize(4096),
                "bufsize must be 0",
            ),
            (
                l.subprocess_exec(factory.clone(), "pwd").shell(true),
                "shell must be False",
            ),
            (
                l.subprocess_exec(factory.clone(), "pwd").text(true),
                "text must be False",
            ),
            (
                l.subprocess_exec(factory.clone(), "pwd").encoding("utf-8"),
                "encoding must be None",
            ),
            (
                l.subprocess_exec(factory.clone(), "pwd").errors("strict"),
                "errors must be None",
            ),
            // CPython's order: universal_newlines, shell, bufsize, text, …
            (
                l.subprocess_exec(factory.clone(), "pwd")
                    .text(true)
                    .bufsize(1)
                    .shell(true),
                "shell must be False",
            ),
        ];
        for (call, message) in cases {
            let (kind, text, _) = refused(|| call).await;
            assert_eq!((kind, text.as_str()), (ErrorKind::ValueError, message));
        }
        // Checked before the protocol is made.
        assert_eq!(made.get(), 0);
        // The accepted values pass.
        let (transp, proto) = l
            .subprocess_exec(factory.clone(), "true")
            .shell(false)
            .bufsize(0)
            .text(false)
            .universal_newlines(false)
            .await?;
        until("completed", || proto.completed()).await?;
        transp.close();
        Ok(())
    })
}

#[test]
fn test_subprocess_shell_invalid_args() {
    run(|loop_| async move {
        let l = &loop_;
        for (call, message) in [
            (
                l.subprocess_shell(Proto::default, "pwd")
                    .universal_newlines(true),
                "universal_newlines must be False",
            ),
            (
                l.subprocess_shell(Proto::default, "pwd").bufsize(4096),
                "bufsize must be 0",
            ),
            (
                l.subprocess_shell(Proto::default, "pwd").shell(false),
                "shell must be True",
            ),
        ] {
            let (kind, text, _) = refused(|| call).await;
            assert_eq!((kind, text.as_str()), (ErrorKind::ValueError, message));
        }
        Ok(())
    })
}

#[test]
fn missing_program_is_file_not_found() {
    run(|loop_| async move {
        let err = loop_
            .subprocess_exec(Proto::default, "no-such-program-asyncio-rs")
            .await
            .err()
            .unwrap();
        assert_eq!(err.python_name(), "FileNotFoundError");
        assert_eq!(err.raw_os_error(), Some(2));
        assert_eq!(
            err.to_string(),
            "[Errno 2] No such file or directory: 'no-such-program-asyncio-rs'"
        );
        let err = loop_
            .subprocess_exec(Proto::default, "true")
            .cwd("/no/such/dir")
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "[Errno 2] No such file or directory: '/no/such/dir'"
        );
        let not_executable =
            std::env::temp_dir().join(format!("asyncio-noexec-{}", std::process::id()));
        std::fs::write(&not_executable, "#!/bin/sh\n")?;
        let err = loop_
            .subprocess_exec(Proto::default, &not_executable)
            .await
            .err()
            .unwrap();
        std::fs::remove_file(&not_executable)?;
        assert_eq!(err.python_name(), "PermissionError");
        assert_eq!(err.raw_os_error(), Some(13));
        Ok(())
    })
}

#[test]
fn callbacks_come_in_cpythons_order() {
    run(|loop_| async move {
        let (transp, proto) = sh(&loop_, "echo out; echo err >&2; exit 3").await?;
        transp.get_pipe_transport(0).unwrap().close();
        until("completed", || proto.completed()).await?;
        let events = proto.events();
        assert_eq!(events.first().unwrap(), "connection_made");
        assert_eq!(events.last().unwrap(), "connection_lost");
        let mut middle = events[1..events.len() - 1].to_vec();
        middle.sort();
        assert_eq!(
            middle,
            [
                "pipe_connection_lost(0)",
                "pipe_connection_lost(1)",
                "pipe_connection_lost(2)",
                "process_exited"
            ]
        );
        assert_eq!(proto.returncode.get(), Some(3));
        assert_eq!(proto.data(1), b"out\n");
        assert_eq!(proto.data(2), b"err\n");
        // After connection_lost the process is gone: ProcessLookupError.
        let err = transp.send_signal(SIGTERM).unwrap_err();
        assert_eq!(err.python_name(), "ProcessLookupError");
        assert_eq!(transp.wait().await?, 3);
        transp.close();
        Ok(())
    })
}

#[test]
fn signals_after_the_exit_are_ignored_until_connection_lost() {
    run(|loop_| async move {
        // The grandchild keeps stdout open, so connection_lost waits.
        let (transp, proto) = loop_
            .subprocess_shell(Proto::default, "sleep 30 & exit 4")
            .stdin(DEVNULL)
            .process_group(0)
            .await?;
        // wait() comes with the exit, not with the pipes (gh-119710).
        assert_eq!(transp.wait().await?, 4);
        assert!(!proto.completed());
        assert_eq!(transp.get_returncode(), Some(4));
        transp.send_signal(SIGTERM)?;
        // Kill the grandchild through the child's process group.
        let pgid = transp.get_pid().unwrap() as i32;
        // SAFETY: signals our own process group child.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
        until("completed", || proto.completed()).await?;
        transp.close();
        Ok(())
    })
}

#[test]
fn repr_shows_pid_state_and_pipes() {
    run(|loop_| async move {
        let (transp, proto) = loop_
            .subprocess_exec(Proto::default, ECHO)
            .stderr(DEVNULL)
            .await?;
        let pid = transp.get_pid().unwrap();
        let r = format!("{transp:?}");
        assert!(
            r.starts_with(&format!(
                "<_UnixSubprocessTransport pid={pid} running stdin=<_UnixWritePipeTransport fd="
            )),
            "{r}"
        );
        assert!(r.contains(" stdout=<_UnixReadPipeTransport fd="), "{r}");
        assert!(!r.contains("stderr="), "{r}");
        transp.close();
        until("completed", || proto.completed()).await?;
        let r = format!("{transp:?}");
        assert!(
            r.starts_with(&format!(
                "<_UnixSubprocessTransport closed pid={pid} returncode=-9"
            )),
            "{r}"
        );
        Ok(())
    })
}

#[test]
fn keywords_reach_the_child() {
    run(|loop_| async move {
        let dir = std::env::temp_dir();
        let (transp, proto) = loop_
            .subprocess_exec(Proto::default, "myname")
            .executable("/bin/sh")
            .args(["-c", "echo $0 $FOO $(pwd) $(umask) $(id -u):$(id -g)"])
            .env([("FOO", "bar"), ("PATH", "/usr/bin:/bin")])
            .cwd(&dir)
            .umask(0o27)
            .user(65534u32)
            .group("nogroup")
            .await?;
        until("completed", || proto.completed()).await?;
        let expected = format!("myname bar {} 0027 65534:65534\n", dir.display());
        assert_eq!(String::from_utf8_lossy(&proto.data(1)), expected);
        transp.close();
        let err = loop_
            .subprocess_exec(Proto::default, "true")
            .user("no-such-user-asyncio")
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::LookupError);
        Ok(())
    })
}

#[test]
fn pass_fds_and_close_fds() {
    run(|loop_| async move {
        // Descriptors made without O_CLOEXEC, as C code might.
        let mut fds = [0; 2];
        // SAFETY: fills a two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [a, b] = fds;
        let script = format!(
            "test -e /proc/self/fd/{a} && echo A; test -e /proc/self/fd/{b} && echo B; true"
        );
        let (_, proto) = loop_
            .subprocess_exec(Proto::default, "sh")
            .args(["-c", &script])
            .pass_fds([a])
            .await?;
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.data(1), b"A\n");
        let (_, proto) = loop_
            .subprocess_exec(Proto::default, "sh")
            .args(["-c", &script])
            .close_fds(false)
            .await?;
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.data(1), b"A\nB\n");
        let (_, proto) = loop_
            .subprocess_exec(Proto::default, "sh")
            .args(["-c", &script])
            .close_fds(true)
            .await?;
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.data(1), b"");
        // SAFETY: closes the two descriptors made above.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
        Ok(())
    })
}

#[test]
fn files_and_devnull_as_streams() {
    run(|loop_| async move {
        let dir = std::env::temp_dir().join(format!("asyncio-sub-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let input = dir.join("in");
        let output = dir.join("out");
        std::fs::write(&input, "from a file\n")?;
        let (transp, proto) = loop_
            .subprocess_exec(Proto::default, "cat")
            .stdin(std::fs::File::open(&input)?)
            .stdout(std::fs::File::create(&output)?)
            .stderr(DEVNULL)
            .await?;
        assert!(transp.get_pipe_transport(0).is_none());
        until("completed", || proto.completed()).await?;
        assert_eq!(std::fs::read_to_string(&output)?, "from a file\n");
        // A raw descriptor stays the caller's.
        let file = std::fs::File::create(&output)?;
        let (_, proto) = loop_
            .subprocess_shell(Proto::default, "echo raw")
            .stdout(Stdio::RawFd(std::os::fd::AsRawFd::as_raw_fd(&file)))
            .await?;
        until("completed", || proto.completed()).await?;
        drop(file);
        assert_eq!(std::fs::read_to_string(&output)?, "raw\n");
        let err = loop_
            .subprocess_exec(Proto::default, "true")
            .stdout(STDOUT)
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    })
}

#[test]
fn stdin_flow_control_reaches_the_protocol() {
    run(|loop_| async move {
        // The child never reads.
        let (transp, proto) = loop_
            .subprocess_exec(Proto::default, "sleep")
            .arg("30")
            .await?;
        let stdin = transp.get_pipe_transport(0).unwrap();
        stdin.set_write_buffer_limits(Some(1000), None)?;
        let chunk = vec![b'x'; 64 * 1024];
        while !proto.events().iter().any(|e| e == "pause_writing") {
            stdin.write(&chunk)?;
        }
        assert!(stdin.get_write_buffer_size() > 1000);
        transp.kill()?;
        until("completed", || proto.completed()).await?;
        // The reader went away with data left: BrokenPipeError.
        assert_eq!(
            proto
                .disconnects
                .borrow()
                .get(&0)
                .cloned()
                .flatten()
                .as_deref(),
            Some("BrokenPipeError")
        );
        transp.close();
        Ok(())
    })
}

#[test]
fn close_kills_a_running_child_and_warns_in_debug_mode() {
    let (pid, logs) = capture_logs(|| {
        run(|loop_| async move {
            loop_.set_debug(true);
            let (transp, proto) = loop_
                .subprocess_exec(Proto::default, "sleep")
                .arg("30")
                .await?;
            transp.close();
            transp.close();
            until("completed", || proto.completed()).await?;
            assert_eq!(proto.returncode.get(), Some(-SIGKILL));
            Ok(transp.get_pid().unwrap())
        })
    });
    let messages: Vec<String> = logs.iter().map(|r| r.message.clone()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m
                .starts_with("execute program 'sleep' stdin=<pipe> stdout=<pipe> stderr=<pipe>")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m == &format!("process 'sleep' created: pid {pid}")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with(&format!(
            "Close running child process: kill <_UnixSubprocessTransport closed pid={pid} running"
        ))),
        "{messages:?}"
    );
    assert!(
        // Logged before the return code is set, as CPython does.
        messages.iter().any(|m| m.starts_with(&format!(
            "<_UnixSubprocessTransport closed pid={pid} running"
        )) && m.ends_with("exited with return code -9")),
        "{messages:?}"
    );
}

#[test]
fn an_unclosed_transport_warns_in_debug_mode() {
    let ((), logs) = capture_logs(|| {
        run(|loop_| async move {
            loop_.set_debug(true);
            let (transp, proto) = loop_
                .subprocess_exec(Proto::default, "true")
                .stdin(DEVNULL)
                .await?;
            until("completed", || proto.completed()).await?;
            proto.transport.borrow_mut().take();
            drop(transp);
            Ok(())
        })
    });
    assert!(
        logs.iter().any(|r| r
            .message
            .starts_with("ResourceWarning: unclosed transport <_UnixSubprocessTransport pid=")),
        "{logs:?}"
    );
}

#[test]
fn protocol_errors_go_to_the_exception_handler() {
    struct Failing;
    impl BaseProtocol for Failing {}
    impl SubprocessProtocol for Failing {
        fn pipe_data_received(self: &Rc<Self>, _fd: i32, _data: &[u8]) -> Result<()> {
            Err(Error::value("boom"))
        }
    }
    run(|loop_| async move {
        let seen = record_exceptions(&loop_);
        let (transp, _) = loop_.subprocess_shell(|| Failing, "echo x").await?;
        assert_eq!(transp.wait().await?, 0);
        until("reported", || !seen.borrow().is_empty()).await?;
        let s = seen.borrow()[0].clone();
        assert!(
            s.message.starts_with("Exception in callback "),
            "{}",
            s.message
        );
        assert_eq!(s.exception, Some((ErrorKind::ValueError, "boom".into())));
        transp.close();
        Ok(())
    })
}

/// The children of this process that are zombies.
fn zombies() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid …
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 1 && fields[0] == "Z" && fields[1] == me
        })
        .count()
}

/// The children of this process, whatever their state.
fn children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            rest.split_whitespace().nth(1) == Some(me.as_str())
        })
        .count()
}

async fn spawn_many(loop_: &EventLoop, n: usize, conc: usize) -> Result<()> {
    let mut left = n;
    while left > 0 {
        let batch = left.min(conc);
        left -= batch;
        let mut running = Vec::new();
        for _ in 0..batch {
            running.push(loop_.subprocess_exec(Proto::default, "true").await?);
        }
        for (transp, proto) in running {
            assert_eq!(transp.wait().await?, 0);
            until("completed", || proto.completed()).await?;
            transp.close();
        }
    }
    Ok(())
}

#[test]
fn no_descriptor_or_zombie_left_after_1000_spawns() {
    if !in_child("no_descriptor_or_zombie_left_after_1000_spawns") {
        return;
    }
    run(|loop_| async move {
        spawn_many(&loop_, 10, 10).await?;
        let before = open_fds();
        spawn_many(&loop_, 1000, 50).await?;
        assert_eq!(open_fds(), before);
        assert_eq!(zombies(), 0);
        assert_eq!(children(), 0);
        Ok(())
    })
}

#[test]
fn closing_the_loop_leaves_no_zombie() {
    if !in_child("closing_the_loop_leaves_no_zombie") {
        return;
    }
    let loop_ = asyncio::new_event_loop().unwrap();
    let l = loop_.clone();
    loop_
        .run_until_complete(async move {
            // Dropped by the caller while running: the loop keeps it.
            let _ = l.subprocess_exec(Proto::default, "sleep").arg("30").await?;
            let (t, _) = l.subprocess_exec(Proto::default, "true").await?;
            drop(t);
            asyncio::sleep(0.05).await
        })
        .unwrap();
    assert!(children() >= 1);
    loop_.close().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while children() > 0 {
        assert!(std::time::Instant::now() < deadline, "children left");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn loops_in_other_threads_see_their_children_exit() {
    let workers: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                run(move |loop_| async move {
                    let (transp, proto) = loop_
                        .subprocess_shell(Proto::default, format!("exit {i}"))
                        .await?;
                    assert_eq!(transp.wait().await?, i);
                    until("completed", || proto.completed()).await?;
                    transp.close();
                    Ok(())
                })
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn a_user_sigchld_handler_does_not_break_reaping() {
    if !in_child("a_user_sigchld_handler_does_not_break_reaping") {
        return;
    }
    run(|loop_| async move {
        let seen = Rc::new(Cell::new(0));
        let s = seen.clone();
        loop_.add_signal_handler(libc::SIGCHLD, move || s.set(s.get() + 1))?;
        let (transp, proto) = loop_.subprocess_shell(Proto::default, "exit 5").await?;
        assert_eq!(transp.wait().await?, 5);
        until("completed", || proto.completed()).await?;
        until("SIGCHLD handled", || seen.get() >= 1).await?;
        transp.close();
        assert!(loop_.remove_signal_handler(libc::SIGCHLD)?);
        Ok(())
    })
}

#[test]
fn the_threaded_watcher_serves_when_there_is_no_pidfd() {
    if !in_child("the_threaded_watcher_serves_when_there_is_no_pidfd") {
        return;
    }
    asyncio_tokio::force_threaded_child_watcher(true);
    run(|loop_| async move {
        let (transp, proto) = loop_.subprocess_shell(Proto::default, "exit 9").await?;
        assert_eq!(transp.wait().await?, 9);
        until("completed", || proto.completed()).await?;
        transp.close();
        let (transp, proto) = loop_.subprocess_exec(Proto::default, ECHO).await?;
        transp.kill()?;
        until("completed", || proto.completed()).await?;
        assert_eq!(proto.returncode.get(), Some(-SIGKILL));
        Ok(())
    });
    assert_eq!(zombies(), 0);
}
