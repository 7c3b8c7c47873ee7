//! Watching file descriptors: `add_reader`, `add_writer` and their removal
//! (CPython's `selector_events._add_reader` and friends).
//!
//! One watcher per descriptor holds the reader and writer callbacks, and
//! registers the descriptor with the loop's Tokio reactor. Tokio reports
//! readiness edge-triggered; CPython's selector loop is level-triggered (a
//! reader is called every iteration while data waits), so after a callback
//! runs the watcher asks the descriptor itself (`poll(2)`, no wait) whether
//! it is still ready, and runs again next iteration if it is.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use asyncio_core::transports::BaseTransport;
use asyncio_core::{Error, EventLoop, Handle, Registration, Result, Schedulable};
use std::fmt::Debug;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The callbacks watching one descriptor. The reactor watches a duplicate
/// of it, owned here, so that it stays valid however long the caller keeps
/// (or closes) their own.
pub(crate) struct FdWatcher {
    loop_: EventLoop,
    registration: Registration,
    fd: AsyncFd<OwnedFd>,
    reader: RefCell<Option<Handle>>,
    writer: RefCell<Option<Handle>>,
}

/// `true` if `fd` is readable (`POLLIN`) or writable (`POLLOUT`) right now.
fn still_ready(fd: RawFd, events: i16) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, a zero timeout; `poll` only writes
    // `revents`.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & events != 0
}

impl FdWatcher {
    /// Runs the callback of one direction if the descriptor is ready for
    /// it, then re-arms: again next iteration while it stays ready
    /// (level-triggered), else when the reactor reports it.
    fn serve(&self, reading: bool, cx: &mut Context<'_>) {
        let handle = if reading {
            self.reader.borrow().clone()
        } else {
            self.writer.borrow().clone()
        };
        let Some(handle) = handle else {
            return;
        };
        let ready = if reading {
            self.fd.poll_read_ready(cx)
        } else {
            self.fd.poll_write_ready(cx)
        };
        let Poll::Ready(Ok(mut guard)) = ready else {
            return;
        };
        if !handle.cancelled() {
            self.loop_.run_handle(&handle);
        }
        let events = if reading { libc::POLLIN } else { libc::POLLOUT };
        if still_ready(self.fd.as_raw_fd(), events) {
            guard.retain_ready();
            self.registration.schedule();
        } else {
            guard.clear_ready();
            drop(guard);
            // Register interest again; ready meanwhile: next iteration.
            let again = if reading {
                self.fd.poll_read_ready(cx).is_ready()
            } else {
                self.fd.poll_write_ready(cx).is_ready()
            };
            if again {
                self.registration.schedule();
            }
        }
    }
}

impl Schedulable for FdWatcher {
    fn run(self: Rc<Self>) {
        let mut cx = Context::from_waker(self.registration.waker());
        self.serve(true, &mut cx);
        self.serve(false, &mut cx);
    }

    fn abandon(self: Rc<Self>) {
        let reader = self.reader.borrow_mut().take();
        let writer = self.writer.borrow_mut().take();
        drop((reader, writer));
    }
}

/// A map keyed by descriptor: descriptors are small distinct integers, so
/// the descriptor is its own hash (SipHash cost a tenth of a `sock_recv`
/// round trip).
type FdMap<V> = HashMap<RawFd, V, BuildHasherDefault<FdHasher>>;

#[derive(Default)]
struct FdHasher(u64);

impl Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_i32(&mut self, n: i32) {
        // Spread the low bits over the high ones that hashbrown's control
        // bytes use.
        self.0 = u64::from(n as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A transport as the descriptor table sees it: whether it is closing, and
/// its repr for the refusal's message.
pub(crate) trait FdOwner {
    fn owner_is_closing(&self) -> bool;
    fn owner_repr(&self) -> String;
}

impl<T: BaseTransport + Debug> FdOwner for T {
    fn owner_is_closing(&self) -> bool {
        self.is_closing()
    }

    fn owner_repr(&self) -> String {
        format!("{self:?}")
    }
}

/// The descriptors a loop watches, and the ones its transports own.
#[derive(Default)]
pub(crate) struct FdTable {
    watchers: RefCell<FdMap<Rc<FdWatcher>>>,
    transports: RefCell<FdMap<Weak<dyn FdOwner>>>,
}

impl FdTable {
    /// Records that a transport owns `fd` (until [`FdTable::forget_transport`]).
    pub(crate) fn add_transport(&self, fd: RawFd, transport: Weak<dyn FdOwner>) {
        self.transports.borrow_mut().insert(fd, transport);
    }

    /// The transport of `fd` is gone.
    pub(crate) fn forget_transport(&self, fd: RawFd) {
        self.transports.borrow_mut().remove(&fd);
    }

    /// CPython's `_ensure_fd_no_transport`: `"File descriptor N is used by
    /// transport <…>"` while a transport that is not closing owns `fd`.
    pub(crate) fn ensure_no_transport(&self, fd: RawFd) -> Result<()> {
        let transport = self.transports.borrow().get(&fd).and_then(Weak::upgrade);
        match transport {
            Some(t) if !t.owner_is_closing() => Err(Error::runtime(format!(
                "File descriptor {fd} is used by transport {}",
                t.owner_repr()
            ))),
            _ => Ok(()),
        }
    }

    /// `_add_reader` / `_add_writer`: replaces (and cancels) the callback of
    /// that direction, registering the descriptor on first use.
    pub(crate) fn add(
        &self,
        loop_: &EventLoop,
        fd: RawFd,
        handle: Handle,
        reading: bool,
    ) -> Result<()> {
        let existing = self.watchers.borrow().get(&fd).cloned();
        let watcher = match existing {
            Some(w) => w,
            None => {
                // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` reads no memory; on an
                // invalid descriptor it fails with EBADF.
                let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
                if dup < 0 {
                    return Err(Error::from(std::io::Error::last_os_error()));
                }
                // SAFETY: `dup` is a new descriptor that nothing else owns.
                let owned = unsafe { OwnedFd::from_raw_fd(dup) };
                let async_fd = crate::base_events::in_runtime(loop_, || {
                    // SAFETY: the `OwnedFd` keeps the descriptor open and
                    // the same for as long as the `AsyncFd` holds it.
                    unsafe {
                        AsyncFd::register_with_interest(
                            owned,
                            Interest::READABLE | Interest::WRITABLE,
                        )
                    }
                })
                .map_err(|e| Error::from(e.into_parts().1))?;
                let watcher = Rc::new(FdWatcher {
                    loop_: loop_.non_owning(),
                    registration: loop_.new_registration()?,
                    fd: async_fd,
                    reader: RefCell::new(None),
                    writer: RefCell::new(None),
                });
                watcher
                    .registration
                    .activate(watcher.clone() as Rc<dyn Schedulable>);
                self.watchers.borrow_mut().insert(fd, watcher.clone());
                watcher
            }
        };
        let slot = if reading {
            &watcher.reader
        } else {
            &watcher.writer
        };
        let old = slot.borrow_mut().replace(handle);
        if let Some(old) = old {
            old.cancel();
        }
        // Ready already (or not): look at it on the next iteration.
        watcher.registration.schedule();
        Ok(())
    }

    /// `_remove_reader` / `_remove_writer`: `true` if a callback was removed.
    pub(crate) fn remove(&self, fd: RawFd, reading: bool) -> bool {
        let Some(watcher) = self.watchers.borrow().get(&fd).cloned() else {
            return false;
        };
        let slot = if reading {
            &watcher.reader
        } else {
            &watcher.writer
        };
        let old = slot.borrow_mut().take();
        let empty = watcher.reader.borrow().is_none() && watcher.writer.borrow().is_none();
        if empty {
            let removed = self.watchers.borrow_mut().remove(&fd);
            watcher.registration.unregister();
            drop(removed);
        }
        match old {
            Some(h) => {
                h.cancel();
                true
            }
            None => false,
        }
    }

    /// The loop closes: every watcher goes (the descriptors stay open:
    /// they are the caller's).
    pub(crate) fn clear(&self) {
        let watchers = std::mem::take(&mut *self.watchers.borrow_mut());
        drop(watchers);
        self.transports.borrow_mut().clear();
    }
}

/// A socket's registration for the `sock_*` coroutines, kept in the
/// `Socket` (see `AbstractNetwork::poll_sock_ready`): on the socket's own
/// descriptor, which the `Socket` keeps open for as long as this lives.
pub(crate) struct SockRegistration {
    /// The loop implementation it was made in (its reactor).
    owner: usize,
    fd: AsyncFd<BorrowedSock>,
}

/// The descriptor of a `Socket`, not owned.
struct BorrowedSock(RawFd);

impl std::os::fd::AsRawFd for BorrowedSock {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// `poll_sock_ready` of the Tokio loop.
pub(crate) fn poll_sock_ready(
    implementation: &crate::TokioEventLoop,
    loop_: &EventLoop,
    sock: &asyncio_core::socket::Socket,
    reading: bool,
    stale: &mut bool,
    cx: &mut Context<'_>,
) -> Option<Poll<Result<()>>> {
    let owner = implementation as *const crate::TokioEventLoop as usize;
    let mut slot = sock.readiness().lock().unwrap_or_else(|e| e.into_inner());
    let current = slot
        .as_mut()
        .and_then(|state| state.downcast_mut::<SockRegistration>())
        .filter(|r| r.owner == owner);
    let registration = match current {
        Some(r) => r,
        None => {
            // A first wait, or on another loop than before.
            slot.take();
            let fd = BorrowedSock(sock.fileno());
            let registered = crate::base_events::in_runtime(loop_, || {
                // SAFETY: the `Socket` owns the descriptor and drops this
                // registration (its first field) before closing it, and
                // before giving the descriptor away (`into_socket2`, `From<Socket>
                // for OwnedFd`, `into_raw_fd`).
                unsafe {
                    AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE)
                }
            });
            // Registered elsewhere already (EEXIST): callbacks on a
            // duplicate descriptor instead.
            let fd = registered.ok()?;
            *slot = Some(Box::new(SockRegistration { owner, fd }));
            slot.as_mut()?.downcast_mut::<SockRegistration>()?
        }
    };
    // Only the first poll, in the step whose call would have blocked, may
    // see out-of-date readiness; what comes later is news.
    let mut clear = std::mem::replace(stale, false);
    loop {
        let ready = if reading {
            registration.fd.poll_read_ready(cx)
        } else {
            registration.fd.poll_write_ready(cx)
        };
        match ready {
            Poll::Pending => return Some(Poll::Pending),
            Poll::Ready(Err(e)) => {
                // The reactor it was made in is gone (a loop closed, and
                // another made at its address): register again next time.
                slot.take();
                drop(slot);
                if !clear {
                    return Some(Poll::Ready(Err(Error::from(e))));
                }
                // A new registration's readiness is current.
                return poll_sock_ready(implementation, loop_, sock, reading, &mut false, cx);
            }
            Poll::Ready(Ok(mut guard)) => {
                if clear {
                    // The call that would block came after this readiness.
                    guard.clear_ready();
                    clear = false;
                    continue;
                }
                return Some(Poll::Ready(Ok(())));
            }
        }
    }
}
