//! The loop's table of schedulable objects (tasks, and later transports) and
//! the waker that puts them on the ready queue.
//!
//! A `std::task::Waker` must be `Send + Sync`, but tasks are `Rc`-based and
//! live on the loop thread. So a waker holds no pointer to its task: it holds
//! the task's key in this table. On the loop thread a wake is a push of that
//! key onto the ready queue (no allocation, no lock); from another thread it
//! goes through the loop's injection queue.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Wake;

use crate::base_events::{LoopShared, Ready};
use crate::events::with_running_loop;

/// Something the loop runs when its waker fires: a task step, a transport's
/// readiness handler, a listening socket's accept loop.
///
/// Loop implementations register such objects with
/// [`EventLoop::new_registration`](crate::EventLoop::new_registration); the
/// registration's [`Waker`](std::task::Waker) handed to a reactor (e.g. Tokio's `poll_read`)
/// schedules [`run`](Schedulable::run) on the loop's ready queue, in FIFO
/// order with `call_soon` callbacks. Waking it on the loop thread neither
/// allocates nor locks.
pub trait Schedulable: 'static {
    /// Runs one step.
    fn run(self: Rc<Self>);

    /// The loop closes with the object still registered: drop what it holds
    /// (sockets, protocols), reporting what Python would report.
    fn abandon(self: Rc<Self>) {}

    /// The object as a task, if it is one (for `all_tasks()`).
    #[doc(hidden)]
    fn as_task(&self) -> Option<crate::tasks::AnyTask> {
        None
    }
}

pub(crate) use Schedulable as Runnable;

/// A key into [`Slots`]: index in the low 32 bits, generation in the high 32.
pub(crate) type SlotKey = u64;

struct Entry {
    generation: u32,
    value: Option<Rc<dyn Runnable>>,
    waker: Option<Arc<SlotWaker>>,
}

/// A generational slab: keys of removed entries never match a new entry.
#[derive(Default)]
pub(crate) struct Slots {
    entries: Vec<Entry>,
    free: Vec<u32>,
    len: usize,
}

impl Slots {
    /// Reserves a key; the entry stays empty until [`Slots::fill`].
    pub(crate) fn reserve(&mut self) -> SlotKey {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    value: None,
                    waker: None,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let generation = self.entries[index as usize].generation;
        ((generation as u64) << 32) | index as u64
    }

    pub(crate) fn fill(&mut self, key: SlotKey, value: Rc<dyn Runnable>, waker: Arc<SlotWaker>) {
        let Some(entry) = self.entries.get_mut((key as u32) as usize) else {
            return;
        };
        if entry.generation != (key >> 32) as u32 {
            return;
        }
        if entry.value.is_none() {
            self.len += 1;
        }
        entry.value = Some(value);
        entry.waker = Some(waker);
    }

    pub(crate) fn get(&self, key: SlotKey) -> Option<Rc<dyn Runnable>> {
        let entry = self.entries.get((key as u32) as usize)?;
        if entry.generation != (key >> 32) as u32 {
            return None;
        }
        entry.value.clone()
    }

    /// The object under `key`, with its scheduled mark cleared: it is about
    /// to run, so wakes from now on schedule it again.
    pub(crate) fn take_for_run(&self, key: SlotKey) -> Option<Rc<dyn Runnable>> {
        let entry = self.entries.get((key as u32) as usize)?;
        if entry.generation != (key >> 32) as u32 {
            return None;
        }
        if let Some(w) = &entry.waker {
            w.scheduled.store(false, Ordering::Relaxed);
        }
        entry.value.clone()
    }

    /// Frees the key (and returns the value, to be dropped by the caller
    /// after it released the table).
    pub(crate) fn remove(&mut self, key: SlotKey) -> Option<Rc<dyn Runnable>> {
        let index = (key as u32) as usize;
        let entry = self.entries.get_mut(index)?;
        if entry.generation != (key >> 32) as u32 {
            return None;
        }
        let value = entry.value.take();
        entry.waker = None;
        entry.generation = entry.generation.wrapping_add(1);
        if value.is_some() {
            self.len -= 1;
        }
        self.free.push(index as u32);
        value
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Rc<dyn Runnable>> {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }

    pub(crate) fn take_all(&mut self) -> Vec<Rc<dyn Runnable>> {
        let mut out = Vec::with_capacity(self.len);
        for entry in &mut self.entries {
            entry.waker = None;
            if let Some(v) = entry.value.take() {
                out.push(v);
            }
        }
        self.entries.clear();
        self.free.clear();
        self.len = 0;
        out
    }
}

/// The waker of a slot: schedules the slot's object on its loop.
pub(crate) struct SlotWaker {
    pub(crate) loop_id: u64,
    pub(crate) key: SlotKey,
    /// Set while the key sits in the ready queue, so a burst of wakes
    /// schedules one step. Cleared when the step starts.
    pub(crate) scheduled: AtomicBool,
    pub(crate) shared: Arc<LoopShared>,
}

impl SlotWaker {
    pub(crate) fn schedule(&self) {
        let local = with_running_loop(|running| match running {
            Some(inner) if inner.id == self.loop_id => {
                // A racing wake from another thread at worst schedules a
                // second, harmless step, so plain loads and stores suffice.
                if !self.scheduled.load(Ordering::Relaxed) {
                    self.scheduled.store(true, Ordering::Relaxed);
                    inner.push_ready(Ready::Slot(self.key));
                }
                true
            }
            _ => false,
        });
        if !local && !self.scheduled.swap(true, Ordering::AcqRel) {
            self.shared.inject_wake(self.key);
        }
    }
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.schedule();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.schedule();
    }
}

/// An object's place on a loop (see [`Schedulable`]): its waker, and the
/// handle to schedule or unregister it. Dropping the registration
/// unregisters the object.
pub struct Registration {
    key: SlotKey,
    waker: std::task::Waker,
    slot: Arc<SlotWaker>,
    loop_: std::rc::Weak<crate::base_events::LoopInner>,
}

impl Registration {
    pub(crate) fn new(inner: &Rc<crate::base_events::LoopInner>) -> Registration {
        let (key, slot) = inner.reserve_slot();
        Registration {
            key,
            waker: std::task::Waker::from(slot.clone()),
            slot,
            loop_: Rc::downgrade(inner),
        }
    }

    /// The waker that schedules the object's `run()` on its loop; give it to
    /// the reactor.
    pub fn waker(&self) -> &std::task::Waker {
        &self.waker
    }

    /// Puts `object` in the registration's place; wakes from now on run it.
    pub fn activate(&self, object: Rc<dyn Schedulable>) {
        if let Some(inner) = self.loop_.upgrade() {
            inner
                .slots
                .borrow_mut()
                .fill(self.key, object, self.slot.clone());
        }
    }

    /// Schedules a run now (as a wake would).
    pub fn schedule(&self) {
        self.slot.schedule();
    }

    /// Removes the object from its loop; wakes do nothing afterwards.
    pub fn unregister(&self) {
        if let Some(inner) = self.loop_.upgrade() {
            let removed = inner.slots.borrow_mut().remove(self.key);
            // Dropped after the table is released: it may be the last
            // reference to the object.
            drop(removed);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(inner) = self.loop_.upgrade() {
            if let Ok(mut slots) = inner.slots.try_borrow_mut() {
                let removed = slots.remove(self.key);
                drop(slots);
                drop(removed);
            }
        }
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("key", &self.key)
            .finish()
    }
}
