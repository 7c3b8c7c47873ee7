//! `asyncio.create_subprocess_exec` / `create_subprocess_shell` and
//! `Process`: CPython's `test_subprocess.py` `SubprocessMixin`, ported
//! with `cat`/`sh` in place of `python -c` children.

mod common;

use asyncio::signal::{SIGHUP, SIGKILL, SIGTERM};
use asyncio::subprocess::{create_subprocess_exec, create_subprocess_shell, DEVNULL, PIPE};
use asyncio::{ErrorKind, EventLoop, Result};

fn with_loop<T: 'static, F>(body: impl FnOnce(EventLoop) -> F) -> T
where
    F: std::future::Future<Output = Result<T>> + 'static,
{
    common::on_loop(body)
}

#[test]
fn test_stdin_stdout() {
    with_loop(|_l| async move {
        let proc = create_subprocess_exec("cat")
            .stdin(PIPE)
            .stdout(PIPE)
            .await?;
        let stdin = proc.stdin.as_ref().unwrap();
        stdin.write(b"some data")?;
        stdin.drain().await?;
        stdin.close();
        let data = proc.stdout.as_ref().unwrap().read(-1).await?;
        assert_eq!(proc.wait().await?, 0);
        assert_eq!(data, &b"some data"[..]);
        Ok(())
    })
}

#[test]
fn test_communicate() {
    with_loop(|_l| async move {
        let proc = create_subprocess_exec("cat")
            .stdin(PIPE)
            .stdout(PIPE)
            .await?;
        let (stdout, stderr) = proc.communicate(Some(b"some data")).await?;
        assert_eq!(proc.returncode(), Some(0));
        assert_eq!(stdout.as_deref(), Some(&b"some data"[..]));
        assert_eq!(stderr, None);
        Ok(())
    })
}

#[test]
fn test_communicate_none_input() {
    with_loop(|_l| async move {
        let proc = create_subprocess_exec("cat")
            .stdin(PIPE)
            .stdout(PIPE)
            .await?;
        let (stdout, _) = proc.communicate(None).await?;
        assert_eq!(proc.returncode(), Some(0));
        assert_eq!(stdout.as_deref(), Some(&b""[..]));
        Ok(())
    })
}

#[test]
fn communicate_moves_large_inputs_and_outputs_without_deadlock() {
    with_loop(|_l| async move {
        let input: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let proc = create_subprocess_shell("cat; cat /dev/zero | head -c 1000000 >&2")
            .stdin(PIPE)
            .stdout(PIPE)
            .stderr(PIPE)
            .await?;
        let (stdout, stderr) = proc.communicate(Some(&input)).await?;
        assert_eq!(stdout.unwrap(), input);
        assert_eq!(stderr.unwrap().len(), 1_000_000);
        assert_eq!(proc.returncode(), Some(0));
        Ok(())
    })
}

#[test]
fn test_shell() {
    with_loop(|_l| async move {
        let proc = create_subprocess_shell("exit 7").await?;
        assert_eq!(proc.wait().await?, 7);
        assert_eq!(format!("{proc:?}"), format!("<Process {}>", proc.pid));
        Ok(())
    })
}

#[test]
fn test_start_new_session() {
    with_loop(|_l| async move {
        let proc = create_subprocess_shell("exit 8")
            .start_new_session(true)
            .await?;
        assert_eq!(proc.wait().await?, 8);
        Ok(())
    })
}

#[test]
fn test_kill() {
    with_loop(|_l| async move {
        let proc = create_subprocess_exec("sleep").arg("3600").await?;
        proc.kill()?;
        assert_eq!(proc.wait().await?, -SIGKILL);
        Ok(())
    })
}

#[test]
fn test_kill_issue43884() {
    with_loop(|_l| async move {
        let proc = create_subprocess_shell("sleep 1; sleep 1")
            .stdout(PIPE)
            .process_group(0)
            .await?;
        asyncio::sleep(0.1).await?;
        proc.kill()?;
        assert_eq!(proc.wait().await?, -SIGKILL);
        // The grandchild `sleep` keeps the pipe: end it too.
        // SAFETY: signals the child's own process group.
        unsafe { libc::killpg(proc.pid as i32, libc::SIGKILL) };
        Ok(())
    })
}

#[test]
fn test_terminate() {
    with_loop(|_l| async move {
        let proc = create_subprocess_exec("sleep").arg("3600").await?;
        proc.terminate()?;
        assert_eq!(proc.wait().await?, -SIGTERM);
        Ok(())
    })
}

#[test]
fn test_send_signal() {
    with_loop(|_l| async move {
        let proc = create_subprocess_shell("echo sleeping; exec sleep 3600")
            .stdout(PIPE)
            .await?;
        let line = proc.stdout.as_ref().unwrap().readline().await?;
        assert_eq!(line, &b"sleeping\n"[..]);
        proc.send_signal(SIGHUP)?;
        assert_eq!(proc.wait().await?, -SIGHUP);
        Ok(())
    })
}

#[test]
fn test_stdin_broken_pipe() {
    with_loop(|loop_| async move {
        let mut fds = [0; 2];
        // SAFETY: fills a two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [rfd, wfd] = fds;
        // The child ends before its stdin can be fed. (`; exit 0` keeps the
        // shell, and its stdin, until `head` is done: a shell that execs
        // `head` would close the pipe at once; dash's `<&N` takes one digit.)
        let proc = create_subprocess_exec("sh")
            .args(["-c", &format!("head -c 1 /dev/fd/{rfd} >/dev/null; exit 0")])
            .stdin(PIPE)
            .pass_fds([rfd])
            .await?;
        loop_.set_exception_handler(Some(|_: &EventLoop, _: &asyncio::ExceptionContext| {}));
        let stdin = proc.stdin.as_ref().unwrap();
        stdin.write(&vec![b'x'; 4 * 1024 * 1024])?;
        // SAFETY: writes to our own pipe.
        unsafe { libc::write(wfd, b"go".as_ptr().cast(), 2) };
        let err = stdin.drain().await.unwrap_err();
        assert!(
            ["BrokenPipeError", "ConnectionResetError"].contains(&err.python_name()),
            "{err:?}"
        );
        proc.wait().await?;
        // SAFETY: closes the pipe made above.
        unsafe {
            libc::close(rfd);
            libc::close(wfd);
        }
        Ok(())
    })
}

#[test]
fn test_communicate_ignore_broken_pipe() {
    with_loop(|loop_| async move {
        let proc = create_subprocess_exec("true").stdin(PIPE).await?;
        loop_.set_exception_handler(Some(|_: &EventLoop, _: &asyncio::ExceptionContext| {}));
        proc.communicate(Some(&vec![b'x'; 4 * 1024 * 1024])).await?;
        assert_eq!(proc.wait().await?, 0);
        Ok(())
    })
}

#[test]
fn test_pause_reading() {
    with_loop(|_l| async move {
        let limit = 10;
        let size = limit * 2 + 1;
        let proc = create_subprocess_shell(format!("head -c {size} /dev/zero | tr '\\0' x"))
            .stdin(PIPE)
            .stdout(PIPE)
            .limit(limit)
            .await?;
        let (stdout, _) = proc.communicate(None).await?;
        assert_eq!(stdout.unwrap(), vec![b'x'; size]);
        Ok(())
    })
}

#[test]
fn test_stdin_not_inheritable() {
    with_loop(|_l| async move {
        let proc = create_subprocess_shell("wc -c")
            .stdin(PIPE)
            .stdout(PIPE)
            .stderr(PIPE)
            .close_fds(false)
            .await?;
        let (stdout, _) = proc.communicate(Some(b"abc")).await?;
        assert_eq!(
            String::from_utf8(stdout.unwrap().to_vec()).unwrap().trim(),
            "3"
        );
        assert_eq!(proc.wait().await?, 0);
        Ok(())
    })
}

#[test]
fn test_empty_input() {
    with_loop(|_l| async move {
        let proc = create_subprocess_shell("wc -c")
            .stdin(PIPE)
            .stdout(PIPE)
            .stderr(PIPE)
            .await?;
        let (stdout, _) = proc.communicate(Some(b"")).await?;
        assert_eq!(
            String::from_utf8(stdout.unwrap().to_vec()).unwrap().trim(),
            "0"
        );
        assert_eq!(proc.wait().await?, 0);
        Ok(())
    })
}

#[test]
fn test_devnull_input_output_error() {
    with_loop(|_l| async move {
        let proc = create_subprocess_shell("wc -c")
            .stdin(DEVNULL)
            .stdout(PIPE)
            .await?;
        let (stdout, _) = proc.communicate(None).await?;
        assert_eq!(
            String::from_utf8(stdout.unwrap().to_vec()).unwrap().trim(),
            "0"
        );
        assert!(proc.stdin.is_none());
        let proc = create_subprocess_shell("echo out; echo err >&2")
            .stdin(PIPE)
            .stdout(DEVNULL)
            .stderr(PIPE)
            .await?;
        let (stdout, stderr) = proc.communicate(Some(b"abc")).await?;
        assert_eq!(stdout, None);
        assert_eq!(stderr.as_deref(), Some(&b"err\n"[..]));
        let proc = create_subprocess_shell("echo err >&2")
            .stderr(DEVNULL)
            .await?;
        assert_eq!(proc.communicate(None).await?, (None, None));
        assert_eq!(proc.returncode(), Some(0));
        Ok(())
    })
}

#[test]
fn test_cancel_process_wait() {
    with_loop(|_l| async move {
        let proc = std::rc::Rc::new(create_subprocess_exec("sleep").arg("3600").await?);
        let p = proc.clone();
        let task = asyncio::create_task(async move { p.wait().await })?;
        let t = task.clone();
        asyncio::get_running_loop()?.call_soon(move || {
            t.cancel();
        })?;
        assert_eq!(task.await.unwrap_err().kind(), ErrorKind::CancelledError);
        proc.kill()?;
        assert_eq!(proc.wait().await?, -SIGKILL);
        Ok(())
    })
}

#[test]
fn test_cancel_make_subprocess_transport_exec() {
    with_loop(|_l| async move {
        let task =
            asyncio::create_task(async move { create_subprocess_exec("sleep").arg("3600").await })?;
        asyncio::sleep(0.0).await?;
        task.cancel();
        assert_eq!(
            task.take().await.unwrap_err().kind(),
            ErrorKind::CancelledError
        );
        Ok(())
    })
}

#[test]
fn test_popen_error() {
    with_loop(|_l| async move {
        for stdin in [asyncio::subprocess::Stdio::Inherit, PIPE] {
            let err = create_subprocess_exec("no-such-program-asyncio-rs")
                .stdin(stdin)
                .await
                .err()
                .unwrap();
            assert_eq!(err.python_name(), "FileNotFoundError");
        }
        Ok(())
    })
}

#[test]
fn test_read_stdout_after_process_exit() {
    with_loop(|_l| async move {
        let proc = create_subprocess_shell("head -c 262144 /dev/zero; exit 1")
            .stdout(PIPE)
            .await?;
        let stdout = proc.stdout.as_ref().unwrap();
        let mut total = 0;
        loop {
            let data = stdout.read(65536).await?;
            if data.is_empty() {
                break;
            }
            total += data.len();
            asyncio::sleep(0.01).await?;
        }
        assert_eq!(total, 262144);
        assert_eq!(proc.wait().await?, 1);
        Ok(())
    })
}

#[test]
fn test_create_subprocess_text_mode_fails() {
    with_loop(|_l| async move {
        for (exec, message) in [
            (
                create_subprocess_exec("true").text(true),
                "text must be False",
            ),
            (
                create_subprocess_exec("true").encoding("utf-8"),
                "encoding must be None",
            ),
            (
                create_subprocess_exec("true").errors("strict"),
                "errors must be None",
            ),
            (
                create_subprocess_shell("true").text(true),
                "text must be False",
            ),
            (
                create_subprocess_shell("true").encoding("utf-8"),
                "encoding must be None",
            ),
            (
                create_subprocess_shell("true").errors("strict"),
                "errors must be None",
            ),
        ] {
            let err = exec.await.err().unwrap();
            assert_eq!(
                (err.kind(), err.to_string().as_str()),
                (ErrorKind::ValueError, message)
            );
        }
        Ok(())
    })
}

#[test]
fn test_create_subprocess_env() {
    with_loop(|_l| async move {
        let mut env: Vec<(String, String)> = std::env::vars().collect();
        env.push(("FOO".into(), "bar".into()));
        let proc = create_subprocess_shell("printf %s \"$FOO\"")
            .env(env.clone())
            .stdout(PIPE)
            .await?;
        let (stdout, _) = proc.communicate(None).await?;
        assert_eq!(stdout.as_deref(), Some(&b"bar"[..]));
        assert_eq!(proc.returncode(), Some(0));
        env.pop();
        env.push(("FOO".into(), "baz".into()));
        let proc = create_subprocess_exec("sh")
            .args(["-c", "printf %s \"$FOO\""])
            .env(env)
            .stdout(PIPE)
            .await?;
        let (stdout, _) = proc.communicate(None).await?;
        assert_eq!(stdout.as_deref(), Some(&b"baz"[..]));
        // wait() after the exit is immediate.
        assert_eq!(proc.wait().await?, 0);
        Ok(())
    })
}

#[test]
fn test_subprocess_concurrent_wait() {
    with_loop(|_l| async move {
        let proc = std::rc::Rc::new(
            create_subprocess_exec("cat")
                .stdin(PIPE)
                .stdout(PIPE)
                .await?,
        );
        let (stdout, _) = proc.communicate(Some(b"some data")).await?;
        assert_eq!(stdout.as_deref(), Some(&b"some data"[..]));
        let mut waits = Vec::new();
        for _ in 0..10 {
            let p = proc.clone();
            waits.push(asyncio::create_task(async move { p.wait().await })?);
        }
        for w in waits {
            assert_eq!(w.await?, 0);
        }
        Ok(())
    })
}

#[test]
fn test_subprocess_communicate_stdout() {
    with_loop(|_l| async move {
        let mut tasks = Vec::new();
        for i in 0..10 {
            tasks.push(asyncio::create_task(async move {
                let proc = create_subprocess_exec("echo")
                    .arg(format!("foo{i}"))
                    .stdout(PIPE)
                    .await?;
                let (stdout, _) = proc.communicate(None).await?;
                Ok(String::from_utf8(stdout.unwrap().to_vec())
                    .unwrap()
                    .trim()
                    .to_owned())
            })?);
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await?, format!("foo{i}"));
        }
        Ok(())
    })
}

#[test]
fn wait_comes_at_the_exit_even_if_a_grandchild_keeps_stdout() {
    with_loop(|_l| async move {
        let proc = create_subprocess_shell("sleep 30 & exit 3")
            .stdout(PIPE)
            .process_group(0)
            .await?;
        assert_eq!(proc.wait().await?, 3);
        // SAFETY: ends the grandchild through the child's process group.
        unsafe { libc::killpg(proc.pid as i32, libc::SIGKILL) };
        Ok(())
    })
}

#[test]
fn no_running_loop_is_an_error() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let exec = create_subprocess_exec("true");
    // Awaited inside the loop, it works.
    let proc = loop_.run_until_complete(async move { exec.await }).unwrap();
    loop_
        .run_until_complete(async move { proc.wait().await })
        .unwrap();
    loop_.close().unwrap();
}

#[test]
fn descriptors_and_children_come_back() {
    if !common::in_child("descriptors_and_children_come_back") {
        return;
    }
    async fn round(n: usize) -> Result<()> {
        for _ in 0..n {
            let proc = create_subprocess_exec("cat")
                .stdin(PIPE)
                .stdout(PIPE)
                .stderr(PIPE)
                .await?;
            let (out, _) = proc.communicate(Some(b"x")).await?;
            assert_eq!(out.as_deref(), Some(&b"x"[..]));
        }
        Ok(())
    }
    with_loop(|_l| async move { round(2).await });
    let before = common::open_fds();
    for _ in 0..3 {
        with_loop(|_l| async move { round(50).await });
    }
    // A child still running when its loop closes is killed and reaped.
    let loop_ = asyncio::new_event_loop().unwrap();
    loop_
        .run_until_complete(async {
            let _running = create_subprocess_exec("sleep").arg("3600").await?;
            Ok(())
        })
        .unwrap();
    loop_.close().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let children = || {
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
    };
    while children() > 0 || common::open_fds() != before {
        assert!(
            std::time::Instant::now() < deadline,
            "children {} fds {} (before {before})",
            children(),
            common::open_fds()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
