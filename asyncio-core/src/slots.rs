//! The loop's table of schedulable objects (tasks, transports, listeners)
//! and the waker that puts them on the ready queue.
//!
//! A `std::task::Waker` must be `Send + Sync`, but tasks are `Rc`-based and
//! live on the loop thread. So a waker holds no pointer at all: its data word
//! is the object's address in this table (the loop's tag and the slot key).
//! Cloning or dropping a waker costs nothing; on the loop thread a wake is a
//! push of the key onto the ready queue (no allocation, no lock); from
//! another thread it goes through the loop's injection queue, found through
//! a process-wide table of loops.

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{RawWaker, RawWakerVTable, Waker};

use crate::base_events::{LoopInner, LoopShared};
use crate::events::with_running_inner;

/// Something the loop runs when its waker fires: a task step, a transport's
/// readiness handler, a listening socket's accept loop.
///
/// Loop implementations register such objects with
/// [`EventLoop::new_registration`](crate::EventLoop::new_registration); the
/// registration's [`Waker`] handed to a reactor (e.g.
/// Tokio's `poll_read`) schedules [`run`](Schedulable::run) on the loop's
/// ready queue, in FIFO order with `call_soon` callbacks. Waking it on the
/// loop thread neither allocates nor locks.
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

/// A key into [`Slots`]: index in the low 24 bits, generation in the next 16.
pub(crate) type SlotKey = u64;

const SLOT_INDEX_BITS: u32 = 24;
const SLOT_GEN_BITS: u32 = 16;
/// The most objects one loop holds at once (16 million).
pub(crate) const MAX_SLOTS: usize = 1 << SLOT_INDEX_BITS;

fn key_of(index: u32, generation: u16) -> SlotKey {
    ((generation as u64) << SLOT_INDEX_BITS) | index as u64
}

fn index_of(key: SlotKey) -> usize {
    (key & ((1 << SLOT_INDEX_BITS) - 1)) as usize
}

fn generation_of(key: SlotKey) -> u16 {
    ((key >> SLOT_INDEX_BITS) & ((1 << SLOT_GEN_BITS) - 1)) as u16
}

struct Entry {
    generation: u16,
    value: Option<Rc<dyn Runnable>>,
    /// Set while the key sits in the ready queue, so a burst of wakes
    /// schedules one run. Cleared when the run starts.
    scheduled: bool,
}

/// A generational slab: keys of removed entries do not match a new entry
/// (until the 16-bit generation wraps; a stale wake then only causes a
/// spurious run, which every `Schedulable` tolerates).
#[derive(Default)]
pub(crate) struct Slots {
    entries: Vec<Entry>,
    free: Vec<u32>,
    len: usize,
}

impl Slots {
    /// Reserves a key; the entry stays empty until [`Slots::fill`]. `None`
    /// when the loop already holds [`MAX_SLOTS`] objects.
    pub(crate) fn reserve(&mut self) -> Option<SlotKey> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.entries.len() >= MAX_SLOTS {
                    return None;
                }
                self.entries.push(Entry {
                    generation: 0,
                    value: None,
                    scheduled: false,
                });
                (self.entries.len() - 1) as u32
            }
        };
        Some(key_of(index, self.entries[index as usize].generation))
    }

    fn entry(&self, key: SlotKey) -> Option<&Entry> {
        let entry = self.entries.get(index_of(key))?;
        (entry.generation == generation_of(key)).then_some(entry)
    }

    fn entry_mut(&mut self, key: SlotKey) -> Option<&mut Entry> {
        let entry = self.entries.get_mut(index_of(key))?;
        (entry.generation == generation_of(key)).then_some(entry)
    }

    pub(crate) fn fill(&mut self, key: SlotKey, value: Rc<dyn Runnable>) {
        let Some(entry) = self.entry_mut(key) else {
            return;
        };
        let was_empty = entry.value.is_none();
        entry.value = Some(value);
        if was_empty {
            self.len += 1;
        }
    }

    pub(crate) fn get(&self, key: SlotKey) -> Option<Rc<dyn Runnable>> {
        self.entry(key)?.value.clone()
    }

    /// Marks the object scheduled; `false` if it already was (or is gone).
    pub(crate) fn mark_scheduled(&mut self, key: SlotKey) -> bool {
        match self.entry_mut(key) {
            Some(e) if e.value.is_some() && !e.scheduled => {
                e.scheduled = true;
                true
            }
            // A reserved slot not filled yet (a task being made): schedule it.
            Some(e) if e.value.is_none() && !e.scheduled => {
                e.scheduled = true;
                true
            }
            _ => false,
        }
    }

    /// The object under `key`, with its scheduled mark cleared: it is about
    /// to run, so wakes from now on schedule it again.
    pub(crate) fn take_for_run(&mut self, key: SlotKey) -> Option<Rc<dyn Runnable>> {
        let entry = self.entry_mut(key)?;
        entry.scheduled = false;
        entry.value.clone()
    }

    /// Frees the key (and returns the value, to be dropped by the caller
    /// after it released the table).
    pub(crate) fn remove(&mut self, key: SlotKey) -> Option<Rc<dyn Runnable>> {
        let index = index_of(key);
        let entry = self.entry_mut(key)?;
        let value = entry.value.take();
        entry.scheduled = false;
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

// ===== the process-wide table of loops =====

/// A loop's tag: its index in [`LOOPS`] (16 bits) and that entry's
/// generation (8 bits).
pub(crate) type LoopTag = u32;

const LOOP_INDEX_BITS: u32 = 16;

/// The tag of a loop that found the table full: its own thread's wakes
/// still reach it (they compare tags), other threads' do not. Index 0xFFFF
/// is never handed out, so no registered loop has this tag.
pub(crate) const UNREGISTERED: LoopTag = 0x00FF_FFFF;

struct LoopEntry {
    generation: u8,
    shared: Option<Arc<LoopShared>>,
}

#[derive(Default)]
struct LoopTable {
    entries: Vec<LoopEntry>,
    free: Vec<u16>,
}

static LOOPS: Mutex<LoopTable> = Mutex::new(LoopTable {
    entries: Vec::new(),
    free: Vec::new(),
});

/// Enters a loop in the table; [`UNREGISTERED`] when 65,535 loops are open
/// at once.
pub(crate) fn register_loop(shared: Arc<LoopShared>) -> LoopTag {
    let mut loops = LOOPS.lock().unwrap_or_else(|p| p.into_inner());
    let index = match loops.free.pop() {
        Some(i) => i as usize,
        None => {
            if loops.entries.len() >= (1 << LOOP_INDEX_BITS) - 1 {
                return UNREGISTERED;
            }
            loops.entries.push(LoopEntry {
                generation: 0,
                shared: None,
            });
            loops.entries.len() - 1
        }
    };
    let entry = &mut loops.entries[index];
    entry.shared = Some(shared);
    ((entry.generation as u32) << LOOP_INDEX_BITS) | index as u32
}

/// Removes a loop from the table (its wakers then do nothing). Idempotent.
pub(crate) fn unregister_loop(tag: LoopTag) {
    if tag == UNREGISTERED {
        return;
    }
    let mut loops = LOOPS.lock().unwrap_or_else(|p| p.into_inner());
    let index = (tag & ((1 << LOOP_INDEX_BITS) - 1)) as usize;
    let Some(entry) = loops.entries.get_mut(index) else {
        return;
    };
    if entry.generation as u32 == tag >> LOOP_INDEX_BITS && entry.shared.is_some() {
        entry.shared = None;
        entry.generation = entry.generation.wrapping_add(1);
        loops.free.push(index as u16);
    }
}

fn lookup_loop(tag: LoopTag) -> Option<Arc<LoopShared>> {
    let loops = LOOPS.lock().unwrap_or_else(|p| p.into_inner());
    let entry = loops
        .entries
        .get((tag & ((1 << LOOP_INDEX_BITS) - 1)) as usize)?;
    if entry.generation as u32 != tag >> LOOP_INDEX_BITS {
        return None;
    }
    entry.shared.clone()
}

// ===== the waker =====

/// The data word of a slot's waker: `[loop tag: 24 bits | slot key: 40 bits]`.
fn pack(tag: LoopTag, key: SlotKey) -> usize {
    (((tag as u64) << (SLOT_INDEX_BITS + SLOT_GEN_BITS)) | key) as usize
}

fn unpack(data: usize) -> (LoopTag, SlotKey) {
    let data = data as u64;
    let key_bits = SLOT_INDEX_BITS + SLOT_GEN_BITS;
    ((data >> key_bits) as LoopTag, data & ((1 << key_bits) - 1))
}

// ===== the loops of this thread =====

thread_local! {
    /// The open loops made on this thread, by id, with their tags. A wake or
    /// `call_soon_threadsafe` on a loop's own thread goes straight onto its
    /// ready queue, in FIFO order with `call_soon`, even when the loop is
    /// not running (CPython schedules both with `call_soon`).
    static THREAD_LOOPS: std::cell::RefCell<Vec<(u64, LoopTag, std::rc::Weak<LoopInner>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Records a loop made on this thread.
pub(crate) fn register_thread_loop(id: u64, tag: LoopTag, inner: std::rc::Weak<LoopInner>) {
    let _ = THREAD_LOOPS.try_with(|l| l.borrow_mut().push((id, tag, inner)));
}

/// Forgets a loop of this thread (at close or drop). Idempotent.
pub(crate) fn unregister_thread_loop(id: u64) {
    let _ = THREAD_LOOPS.try_with(|l| {
        if let Ok(mut loops) = l.try_borrow_mut() {
            loops.retain(|(i, ..)| *i != id);
        }
    });
}

/// The open loop of this thread with `id`, if any.
pub(crate) fn thread_loop_by_id(id: u64) -> Option<Rc<LoopInner>> {
    THREAD_LOOPS
        .try_with(|l| {
            l.borrow()
                .iter()
                .find(|(i, ..)| *i == id)
                .and_then(|(.., w)| w.upgrade())
        })
        .ok()
        .flatten()
}

fn thread_loop_by_tag(tag: LoopTag) -> Option<Rc<LoopInner>> {
    THREAD_LOOPS
        .try_with(|l| {
            l.borrow()
                .iter()
                .find(|(_, t, _)| *t == tag)
                .and_then(|(.., w)| w.upgrade())
        })
        .ok()
        .flatten()
}

/// Schedules the object at `key` of the loop tagged `tag`.
pub(crate) fn schedule(tag: LoopTag, key: SlotKey) {
    let local = with_running_inner(|running| match running {
        Some(inner) if inner.tag == tag => {
            inner.schedule_slot(key);
            true
        }
        _ => false,
    });
    if local {
        return;
    }
    // The loop's own thread, while it is not running (or another loop
    // runs): still straight onto its ready queue.
    if tag != UNREGISTERED {
        if let Some(inner) = thread_loop_by_tag(tag) {
            inner.schedule_slot(key);
            return;
        }
    }
    if let Some(shared) = lookup_loop(tag) {
        shared.inject_wake(key);
    }
}

const VTABLE: RawWakerVTable = RawWakerVTable::new(waker_clone, waker_wake, waker_wake, waker_drop);

// The data word is a plain integer (never dereferenced), so the vtable
// functions are safe to call from any thread, any number of times.
fn waker_clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn waker_wake(data: *const ()) {
    let (tag, key) = unpack(data as usize);
    schedule(tag, key);
}

fn waker_drop(_data: *const ()) {}

/// The waker of the object at `key` on the loop tagged `tag`.
pub(crate) fn slot_waker(tag: LoopTag, key: SlotKey) -> Waker {
    let data = pack(tag, key) as *const ();
    // SAFETY: the vtable's functions never dereference `data` (it is a
    // packed integer) and only use thread-safe state (the running loop of
    // the calling thread, a mutex-guarded table), which satisfies the
    // `RawWaker` contract: clone/wake/drop are sound from any thread.
    unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) }
}

/// An object's place on a loop (see [`Schedulable`]): its waker, and the
/// handle to schedule or unregister it. Dropping the registration
/// unregisters the object.
pub struct Registration {
    key: SlotKey,
    waker: Waker,
    loop_: std::rc::Weak<LoopInner>,
}

impl Registration {
    pub(crate) fn new(inner: &Rc<LoopInner>) -> crate::Result<Registration> {
        let key = inner.reserve_slot()?;
        Ok(Registration {
            key,
            waker: slot_waker(inner.tag, key),
            loop_: Rc::downgrade(inner),
        })
    }

    /// The waker that schedules the object's `run()` on its loop; give it to
    /// the reactor.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Puts `object` in the registration's place; wakes from now on run it.
    pub fn activate(&self, object: Rc<dyn Schedulable>) {
        if let Some(inner) = self.loop_.upgrade() {
            inner.slots.borrow_mut().fill(self.key, object);
        }
    }

    /// Schedules a run now (as a wake would).
    pub fn schedule(&self) {
        self.waker.wake_by_ref();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waker_words_round_trip() {
        let tag: LoopTag = (7 << LOOP_INDEX_BITS) | 513;
        let key = key_of(0x00AB_CDEF, 0xFFFF);
        assert_eq!(unpack(pack(tag, key)), (tag, key));
        assert_eq!(index_of(key), 0x00AB_CDEF);
        assert_eq!(generation_of(key), 0xFFFF);
    }

    #[test]
    fn removed_keys_do_not_match_new_entries() {
        let mut slots = Slots::default();
        let a = slots.reserve().unwrap();
        slots.remove(a);
        let b = slots.reserve().unwrap();
        assert_eq!(index_of(a), index_of(b));
        assert_ne!(a, b);
        assert!(!slots.mark_scheduled(a));
        assert!(slots.mark_scheduled(b));
        assert!(!slots.mark_scheduled(b));
    }
}
