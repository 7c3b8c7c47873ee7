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

/// Something the loop can run when its key comes off the ready queue.
pub(crate) trait Runnable {
    /// Runs one step (a task step, a transport's readiness handler …).
    fn run(self: Rc<Self>);
    /// The object as a task, if it is one (for `all_tasks()`).
    fn as_task(&self) -> Option<crate::tasks::AnyTask>;
    /// Called when the loop closes with the object still registered:
    /// report it and drop what it holds.
    fn abandon(self: Rc<Self>);
}

/// A key into [`Slots`]: index in the low 32 bits, generation in the high 32.
pub(crate) type SlotKey = u64;

struct Entry {
    generation: u32,
    value: Option<Rc<dyn Runnable>>,
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
                });
                (self.entries.len() - 1) as u32
            }
        };
        let generation = self.entries[index as usize].generation;
        ((generation as u64) << 32) | index as u64
    }

    pub(crate) fn fill(&mut self, key: SlotKey, value: Rc<dyn Runnable>) {
        let entry = &mut self.entries[(key as u32) as usize];
        debug_assert_eq!(entry.generation, (key >> 32) as u32);
        entry.value = Some(value);
        self.len += 1;
    }

    pub(crate) fn get(&self, key: SlotKey) -> Option<Rc<dyn Runnable>> {
        let entry = self.entries.get((key as u32) as usize)?;
        if entry.generation != (key >> 32) as u32 {
            return None;
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
