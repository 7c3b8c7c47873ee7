//! Unix signals for `loop.add_signal_handler` and the runner's Ctrl-C
//! handling: one process-wide OS handler per signal, shared by every loop.
//!
//! Built on `sigaction` rather than `tokio::signal`: Tokio's handlers are
//! never uninstalled, but `remove_signal_handler` must give the signal its
//! previous disposition back (a removed SIGTERM handler means SIGTERM kills
//! the process again), and CPython delivers one callback per signal received
//! where Tokio coalesces.
//!
//! The OS handler only writes the signal's number into a pipe (and calls a
//! handler that was installed before ours, so that e.g. Tokio's SIGCHLD
//! handling keeps working). A dispatcher thread reads the pipe and hands each
//! signal to every loop subscribed to it through `call_soon_threadsafe`, so
//! loops on any thread may handle signals, and several loops may handle the
//! same one.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use asyncio_core::{Error, Result};

/// One more than the highest signal number (Linux's `_NSIG`).
const NSIG: usize = 65;

/// What a subscriber is told: the signal's number, on the dispatcher thread.
pub(crate) type Notify = Arc<dyn Fn(i32) + Send + Sync>;

/// The write end of the pipe the OS handler writes to (`-1`: none yet).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Per signal, the handler that was installed before ours, if it is a
/// function (`sa_sigaction`, with `SA_SIGINFO` in `CHAINED_SIGINFO`).
static CHAINED: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];
static CHAINED_SIGINFO: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];

#[derive(Default)]
struct Slot {
    /// The disposition before ours; `Some` while ours is installed.
    previous: Option<libc::sigaction>,
    /// Loops with a handler for the signal.
    loops: Vec<(u64, Notify)>,
    /// Told only when no loop has a handler (the runner's SIGINT handling,
    /// which `add_signal_handler(SIGINT, …)` overrides as in CPython).
    fallback: Option<(u64, Notify)>,
}

// SAFETY: `libc::sigaction` is plain data (a function address, a mask and
// flags); it is only read or written under the registry's lock.
unsafe impl Send for Slot {}

struct Registry {
    slots: Vec<Slot>,
    dispatcher_started: bool,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Option<Registry>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// CPython's `signal.valid_signals()` check: `ValueError("invalid signal
/// number N")` for 0, numbers past `SIGRTMAX` and the two real-time signals
/// the C library keeps for itself.
pub(crate) fn check_signal(sig: i32) -> Result<()> {
    let valid = (1..NSIG as i32).contains(&sig) && (sig < 32 || sig >= libc::SIGRTMIN());
    if valid {
        Ok(())
    } else {
        Err(Error::value(format!("invalid signal number {sig}")))
    }
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // Only async-signal-safe calls here: write(2) and the chained handler.
    // SAFETY: `__errno_location` is the thread's errno; saved and restored
    // so that the interrupted code does not see our write's errno.
    let errno = unsafe { *libc::__errno_location() };
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: writes one byte from a live stack variable; a full pipe
        // (EAGAIN) drops the byte: signals may coalesce, never all of them.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
    let index = sig as usize;
    if index < NSIG {
        let chained = CHAINED[index].load(Ordering::Relaxed);
        if chained != 0 {
            if CHAINED_SIGINFO[index].load(Ordering::Relaxed) != 0 {
                // SAFETY: the address came from the `sa_sigaction` of a
                // handler installed with SA_SIGINFO, so it has this type.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(chained) };
                f(sig, info, context);
            } else {
                // SAFETY: a handler installed without SA_SIGINFO takes the
                // signal's number only.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(chained) };
                f(sig);
            }
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Makes the pipe and starts the dispatcher thread, once per process.
fn start_dispatcher(registry: &mut Registry) -> Result<()> {
    if registry.dispatcher_started {
        return Ok(());
    }
    let mut fds = [0; 2];
    // SAFETY: `pipe2` fills the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::from(io::Error::last_os_error()));
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    // The handler must never block: a full pipe drops the signal's byte.
    // SAFETY: fcntl on the descriptor just made.
    unsafe { libc::fcntl(write_fd, libc::F_SETFL, libc::O_NONBLOCK) };
    let spawned = std::thread::Builder::new()
        .name("asyncio-signals".into())
        .spawn(move || dispatch(read_fd));
    if let Err(e) = spawned {
        // SAFETY: closing the descriptors just made, which nothing else has.
        unsafe {
            libc::close(read_fd);
            libc::close(write_fd);
        }
        return Err(Error::from(e));
    }
    WAKE_FD.store(write_fd, Ordering::Relaxed);
    registry.dispatcher_started = true;
    Ok(())
}

/// The dispatcher thread: each byte is one signal received.
fn dispatch(read_fd: RawFd) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reads into a live buffer of the given length.
        let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        for &sig in &buf[..n as usize] {
            let notify: Vec<Notify> = {
                let guard = registry();
                let Some(slot) = guard.as_ref().and_then(|r| r.slots.get(sig as usize)) else {
                    continue;
                };
                if slot.loops.is_empty() {
                    slot.fallback.iter().map(|(_, n)| n.clone()).collect()
                } else {
                    slot.loops.iter().map(|(_, n)| n.clone()).collect()
                }
            };
            for n in notify {
                n(sig as i32);
            }
        }
    }
}

/// Installs our OS handler for `sig` unless it is there already.
fn install(slot: &mut Slot, sig: i32) -> Result<()> {
    if slot.previous.is_some() {
        return Ok(());
    }
    // SAFETY: a zeroed sigaction is a valid value to fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as *const () as usize;
    // SA_RESTART: CPython's `siginterrupt(sig, False)`.
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: `sa_mask` is a sigset_t inside `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: as above.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live sigaction values.
    if unsafe { libc::sigaction(sig, &action, &mut previous) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Err(Error::runtime(format!("sig {sig} cannot be caught")));
        }
        return Err(Error::from(e));
    }
    let handler = previous.sa_sigaction;
    let chained = if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        0
    } else {
        handler
    };
    CHAINED_SIGINFO[sig as usize].store(
        usize::from(previous.sa_flags & libc::SA_SIGINFO != 0),
        Ordering::Relaxed,
    );
    CHAINED[sig as usize].store(chained, Ordering::Relaxed);
    slot.previous = Some(previous);
    Ok(())
}

/// Gives `sig` back its disposition from before ours, unless somebody
/// installed another handler over ours since (then theirs stays; it may
/// chain to ours, which then only writes to the pipe).
fn restore(slot: &mut Slot, sig: i32) {
    let Some(previous) = slot.previous.take() else {
        return;
    };
    // SAFETY: a zeroed sigaction is a valid value to fill in.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one.
    unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) };
    if current.sa_sigaction != on_signal as *const () as usize {
        slot.previous = Some(previous);
        return;
    }
    // SAFETY: restores a sigaction value the kernel gave us.
    unsafe { libc::sigaction(sig, &previous, std::ptr::null_mut()) };
    CHAINED[sig as usize].store(0, Ordering::Relaxed);
}

/// Tells `notify` of every `sig` received from now on, until
/// [`unsubscribe`]; `fallback` subscribers only hear of signals no loop
/// subscribed to. Replaces an earlier subscription of `id`.
pub(crate) fn subscribe(sig: i32, id: u64, notify: Notify, fallback: bool) -> Result<()> {
    check_signal(sig)?;
    let mut guard = registry();
    let registry = guard.get_or_insert_with(|| Registry {
        slots: (0..NSIG).map(|_| Slot::default()).collect(),
        dispatcher_started: false,
    });
    start_dispatcher(registry)?;
    let slot = &mut registry.slots[sig as usize];
    install(slot, sig)?;
    if fallback {
        slot.fallback = Some((id, notify));
    } else {
        slot.loops.retain(|(i, _)| *i != id);
        slot.loops.push((id, notify));
    }
    Ok(())
}

/// Ends the subscription of `id` to `sig`; with no subscriber left, the
/// signal's earlier disposition is back. `true` if there was one.
pub(crate) fn unsubscribe(sig: i32, id: u64, fallback: bool) -> bool {
    let mut guard = registry();
    let Some(slot) = guard.as_mut().and_then(|r| r.slots.get_mut(sig as usize)) else {
        return false;
    };
    let found = if fallback {
        let found = matches!(&slot.fallback, Some((i, _)) if *i == id);
        if found {
            slot.fallback = None;
        }
        found
    } else {
        let before = slot.loops.len();
        slot.loops.retain(|(i, _)| *i != id);
        slot.loops.len() != before
    };
    if slot.loops.is_empty() && slot.fallback.is_none() {
        restore(slot, sig);
    }
    found
}

/// `true` if `sig` has its default disposition (for the runner, which
/// handles SIGINT only then, as CPython does only for
/// `default_int_handler`).
pub fn has_default_disposition(sig: i32) -> bool {
    // SAFETY: a zeroed sigaction is a valid value to fill in.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one.
    let ok = unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) } == 0;
    ok && current.sa_sigaction == libc::SIG_DFL
}

/// A subscriber id, unique in the process.
pub(crate) fn new_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The runner's Ctrl-C handling (CPython's `Runner._on_sigint`), for the
/// facade's `Runner`: while the guard lives, a SIGINT that no loop handles
/// calls `on_sigint` on the dispatcher thread; the disposition from before
/// comes back when it is dropped.
#[derive(Debug)]
pub struct SigintGuard {
    id: u64,
}

impl SigintGuard {
    /// Subscribes `on_sigint` as the fallback SIGINT handler.
    pub fn install(on_sigint: impl Fn() + Send + Sync + 'static) -> Result<SigintGuard> {
        let id = new_id();
        subscribe(libc::SIGINT, id, Arc::new(move |_| on_sigint()), true)?;
        Ok(SigintGuard { id })
    }
}

impl Drop for SigintGuard {
    fn drop(&mut self) {
        unsubscribe(libc::SIGINT, self.id, true);
    }
}

/// `true` on the process's main thread (CPython handles Ctrl-C in
/// `asyncio.run` only there).
pub fn is_main_thread() -> bool {
    // SAFETY: gettid and getpid only read the caller's ids.
    unsafe { libc::gettid() == libc::getpid() }
}

/// Signal numbers, as Python's `signal` module names them.
pub mod consts {
    pub use libc::{
        SIGABRT, SIGALRM, SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGQUIT, SIGSTOP,
        SIGTERM, SIGTSTP, SIGUSR1, SIGUSR2, SIGWINCH,
    };
}
