//! Starting a child for `subprocess_exec`: `std::process::Command` with
//! the streams, ids, session and descriptor settings of CPython's `Popen`
//! keywords, and CPython's exec errors.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;

use asyncio_core::base_events::SubprocessOptions;
use asyncio_core::subprocess::{Id, Stdio};
use asyncio_core::{Error, ErrorKind, Result};

/// The parent's ends of the child's pipes.
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) stdin: Option<OwnedFd>,
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
}

fn os_error() -> Error {
    Error::from(io::Error::last_os_error())
}

/// `pipe2(O_CLOEXEC)`: `(read end, write end)`.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `pipe2` fills the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(os_error());
    }
    // SAFETY: both descriptors were just made and belong to nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec duplicate of a descriptor the caller keeps.
fn dup(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor or fails.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(os_error());
    }
    // SAFETY: the descriptor was just made.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The child's side of one stream, and the parent's pipe end if it is a pipe.
enum ChildSide {
    Std(std::process::Stdio),
    Fd(OwnedFd),
}

impl ChildSide {
    fn into_stdio(self) -> std::process::Stdio {
        match self {
            ChildSide::Std(s) => s,
            ChildSide::Fd(fd) => fd.into(),
        }
    }
}

/// Resolves one of the three streams (`reading`: the child's stdin).
fn redirect(stdio: Stdio, reading: bool, name: &str) -> Result<(ChildSide, Option<OwnedFd>)> {
    Ok(match stdio {
        Stdio::Pipe => {
            let (r, w) = pipe()?;
            if reading {
                // The child reads its stdin.
                (ChildSide::Fd(r), Some(w))
            } else {
                (ChildSide::Fd(w), Some(r))
            }
        }
        Stdio::DevNull => (ChildSide::Std(std::process::Stdio::null()), None),
        Stdio::Inherit => (ChildSide::Std(std::process::Stdio::inherit()), None),
        Stdio::Fd(fd) => (ChildSide::Fd(fd), None),
        Stdio::RawFd(fd) => (ChildSide::Fd(dup(fd)?), None),
        Stdio::Stdout => {
            return Err(Error::value(format!(
                "STDOUT can only be used for stderr, not for {name}"
            )))
        }
    })
}

fn lookup_id(id: &Id, user: bool) -> Result<u32> {
    let name = match id {
        Id::Number(n) => return Ok(*n),
        Id::Name(name) => name,
    };
    let c_name = std::ffi::CString::new(name.as_str())
        .map_err(|_| Error::value("embedded null character"))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let found = if user {
        // SAFETY: a zeroed passwd is a valid value for getpwnam_r to fill.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live value or buffer of the given size.
        unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        (!result.is_null()).then_some(pwd.pw_uid)
    } else {
        // SAFETY: as above, for a group.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as above.
        unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        (!result.is_null()).then_some(grp.gr_gid)
    };
    found.ok_or_else(|| {
        // CPython: KeyError from pwd/grp.
        Error::new(
            ErrorKind::LookupError,
            if user {
                format!("getpwnam(): name not found: {}", py_repr(OsStr::new(name)))
            } else {
                format!("getgrnam(): name not found: {}", py_repr(OsStr::new(name)))
            },
        )
    })
}

/// Python's `repr()` of a path or argument.
pub(crate) fn py_repr(s: &OsStr) -> String {
    asyncio_core::exceptions::py_str_repr(&s.to_string_lossy())
}

/// Marks every descriptor from 3 up close-on-exec (in the child, before
/// `exec`): CPython's `close_fds=True`.
fn mark_all_cloexec() {
    // SAFETY: close_range only changes descriptor flags.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    } == 0;
    if done {
        return;
    }
    // SAFETY: getrlimit fills a live struct; fcntl only changes flags.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur.min(1 << 20) as RawFd
        } else {
            1024
        };
        for fd in 3..max {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// Starts the child; its pipes' parent ends come back.
pub(crate) fn spawn(options: &mut SubprocessOptions) -> Result<Spawned> {
    let program = options.executable.as_ref().unwrap_or(&options.program);
    let mut command = std::process::Command::new(program);
    if options.executable.is_some() {
        command.arg0(&options.program);
    }
    command.args(&options.args);
    if let Some(cwd) = &options.cwd {
        command.current_dir(cwd);
    }
    if let Some(env) = &options.env {
        command.env_clear();
        command.envs(env.iter().map(|(k, v)| (k, v)));
    }
    if let Some(pgid) = options.process_group {
        command.process_group(pgid);
    }
    if let Some(user) = &options.user {
        command.uid(lookup_id(user, true)?);
    }
    if let Some(group) = &options.group {
        command.gid(lookup_id(group, false)?);
    }

    let stdout_to_null = matches!(options.stdout, Stdio::DevNull);
    let (stdin_child, stdin) = redirect(
        std::mem::replace(&mut options.stdin, Stdio::Inherit),
        true,
        "stdin",
    )?;
    let (stdout_child, stdout) = redirect(
        std::mem::replace(&mut options.stdout, Stdio::Inherit),
        false,
        "stdout",
    )?;
    let stderr_arg = std::mem::replace(&mut options.stderr, Stdio::Inherit);
    let (stderr_child, stderr) = if matches!(stderr_arg, Stdio::Stdout) {
        // Wherever stdout goes.
        let side = match &stdout_child {
            ChildSide::Fd(fd) => ChildSide::Fd(fd.try_clone().map_err(Error::from)?),
            ChildSide::Std(_) if stdout_to_null => ChildSide::Std(std::process::Stdio::null()),
            // The parent's stdout.
            ChildSide::Std(_) => ChildSide::Fd(dup(1)?),
        };
        (side, None)
    } else {
        redirect(stderr_arg, false, "stderr")?
    };
    command.stdin(stdin_child.into_stdio());
    command.stdout(stdout_child.into_stdio());
    command.stderr(stderr_child.into_stdio());

    let pass_fds = std::mem::take(&mut options.pass_fds);
    let sweep = options.close_fds == Some(true) || !pass_fds.is_empty();
    let setsid = options.start_new_session;
    let umask = options.umask;
    if sweep || setsid || umask >= 0 {
        let pre_exec = move || {
            // Only async-signal-safe calls: this runs between fork and exec.
            // SAFETY: plain system calls on the child's own state.
            unsafe {
                if setsid && libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if umask >= 0 {
                    libc::umask(umask as libc::mode_t);
                }
                if sweep {
                    mark_all_cloexec();
                }
                for &fd in &pass_fds {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags >= 0 {
                        libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                    }
                }
            }
            Ok(())
        };
        // SAFETY: the closure makes only async-signal-safe calls and does
        // not allocate (its vector was made before the fork).
        unsafe { command.pre_exec(pre_exec) };
    }

    let spawned = command.spawn();
    // Dropping the command closes the parent's copies of the child's ends.
    drop(command);
    let child = spawned.map_err(|e| spawn_error(e, options))?;
    Ok(Spawned {
        pid: child.id(),
        stdin,
        stdout,
        stderr,
    })
}

/// CPython's exec errors: `FileNotFoundError: [Errno 2] No such file or
/// directory: 'prog'` (naming the `cwd` when that is what is missing).
fn spawn_error(e: io::Error, options: &SubprocessOptions) -> Error {
    let Some(errno) = e.raw_os_error() else {
        return Error::from(e);
    };
    let filename = match &options.cwd {
        Some(cwd) if errno == libc::ENOENT && !cwd.is_dir() => cwd.as_os_str(),
        _ => options
            .executable
            .as_ref()
            .unwrap_or(&options.program)
            .as_os_str(),
    };
    let text = io::Error::from_raw_os_error(errno).to_string();
    let strerror = text.split(" (os error").next().unwrap_or(&text).to_owned();
    Error::os_with_message(e, format!("{strerror}: {}", py_repr(filename)))
}
