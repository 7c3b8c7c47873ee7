//! The loop's timer heap: a 4-ary min-heap of `(when, seq)` keys.
//!
//! CPython keeps `loop._scheduled` as a binary `heapq`; four children per
//! node halve the depth and keep siblings in one or two cache lines, and a
//! single integer key replaces float comparisons.

use crate::events::Handle;
#[cfg(test)]
use std::rc::Rc;

/// A timer: its sort key and its callback.
pub(crate) struct TimerEntry {
    key: u128,
    pub(crate) handle: Handle,
}

/// Bits of the key's low half that hold the scheduling sequence number; the
/// 24 bits below are left free for the bulk drain's indexes.
const SEQ_BITS: u32 = 40;
const INDEX_BITS: u32 = 64 - SEQ_BITS;

impl TimerEntry {
    /// Orders by deadline, then by scheduling order: FIFO for equal
    /// deadlines (the sequence number wraps after 2^40 timers, where only
    /// the order of equal deadlines — which CPython does not define — could
    /// change).
    pub(crate) fn new(when: f64, seq: u64, handle: Handle) -> TimerEntry {
        let seq = seq & ((1 << SEQ_BITS) - 1);
        TimerEntry {
            key: ((ordered_bits(when) as u128) << 64) | ((seq as u128) << INDEX_BITS),
            handle,
        }
    }
}

/// Maps an `f64` to a `u64` with the same order (`f64::total_cmp`).
fn ordered_bits(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

const ARITY: usize = 4;

/// Keys and handles in separate arrays: the four keys a step compares
/// share one cache line.
#[derive(Default)]
pub(crate) struct TimerHeap {
    keys: Vec<u128>,
    handles: Vec<Handle>,
}

impl TimerHeap {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The handle with the earliest deadline.
    pub(crate) fn peek(&self) -> Option<&Handle> {
        self.handles.first()
    }

    /// Moves every timer due before `end_time` to `out`, earliest first
    /// (ties in scheduling order). Many due timers at once are sorted in
    /// bulk instead of popped one by one.
    pub(crate) fn drain_due(&mut self, end_time: f64, mut out: impl FnMut(Handle)) {
        let end_key = (ordered_bits(end_time) as u128) << 64;
        let mut popped = 0;
        while self.keys.first().is_some_and(|k| *k < end_key) {
            if popped == 32
                && self.keys.len() > 256
                && self.keys.iter().filter(|k| **k < end_key).count() < (1 << INDEX_BITS)
            {
                self.drain_due_bulk(end_key, out);
                return;
            }
            if let Some(h) = self.pop() {
                out(h);
            }
            popped += 1;
        }
    }

    fn drain_due_bulk(&mut self, end_key: u128, mut out: impl FnMut(Handle)) {
        let keys = std::mem::take(&mut self.keys);
        let handles = std::mem::take(&mut self.handles);
        // Sort only keys, each carrying its handle's index in the bits left
        // free below the sequence number.
        let mut due_keys: Vec<u128> = Vec::new();
        let mut due: Vec<Option<Handle>> = Vec::new();
        for (key, handle) in keys.into_iter().zip(handles) {
            if key < end_key {
                due_keys.push(key | due.len() as u128);
                due.push(Some(handle));
            } else {
                self.keys.push(key);
                self.handles.push(handle);
            }
        }
        let n = self.keys.len();
        if n > 1 {
            for i in (0..=(n - 2) / ARITY).rev() {
                self.sift_down(i);
            }
        }
        due_keys.sort_unstable();
        for key in due_keys {
            let index = (key as usize) & ((1 << INDEX_BITS) - 1);
            if let Some(handle) = due[index].take() {
                out(handle);
            }
        }
    }

    pub(crate) fn push(&mut self, entry: TimerEntry) {
        self.keys.push(entry.key);
        self.handles.push(entry.handle);
        self.sift_up(self.keys.len() - 1);
    }

    pub(crate) fn pop(&mut self) -> Option<Handle> {
        let last_key = self.keys.pop()?;
        let last_handle = self.handles.pop()?;
        if self.keys.is_empty() {
            return Some(last_handle);
        }
        self.keys[0] = last_key;
        let top = std::mem::replace(&mut self.handles[0], last_handle);
        // The former last entry usually belongs near the bottom: walk the
        // hole down along the smallest children, then sift back up.
        let n = self.keys.len();
        let mut i = 0;
        loop {
            let first = i * ARITY + 1;
            if first >= n {
                break;
            }
            let end = (first + ARITY).min(n);
            let mut min = first;
            let mut min_key = self.keys[first];
            for c in first + 1..end {
                if self.keys[c] < min_key {
                    min = c;
                    min_key = self.keys[c];
                }
            }
            self.keys.swap(i, min);
            self.handles.swap(i, min);
            i = min;
        }
        self.sift_up(i);
        Some(top)
    }

    /// Keeps the handles for which `keep` is true, then restores the heap.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Handle) -> bool) {
        let mut j = 0;
        for i in 0..self.keys.len() {
            if keep(&self.handles[i]) {
                self.keys.swap(i, j);
                self.handles.swap(i, j);
                j += 1;
            }
        }
        self.keys.truncate(j);
        self.handles.truncate(j);
        let n = self.keys.len();
        if n > 1 {
            for i in (0..=(n - 2) / ARITY).rev() {
                self.sift_down(i);
            }
        }
    }

    pub(crate) fn take(&mut self) -> Vec<Handle> {
        self.keys.clear();
        std::mem::take(&mut self.handles)
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if self.keys[parent] <= self.keys[i] {
                break;
            }
            self.keys.swap(parent, i);
            self.handles.swap(parent, i);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.keys.len();
        loop {
            let first = i * ARITY + 1;
            if first >= n {
                break;
            }
            let end = (first + ARITY).min(n);
            let mut min = first;
            for c in first + 1..end {
                if self.keys[c] < self.keys[min] {
                    min = c;
                }
            }
            if self.keys[i] <= self.keys[min] {
                break;
            }
            self.keys.swap(i, min);
            self.handles.swap(i, min);
            i = min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> Handle {
        Handle::new(|| (), false, None)
    }

    /// Pushes timers with these deadlines, then drains everything due before
    /// `end`; returns the deadlines in the order drained, with their
    /// scheduling order.
    fn drain(whens: &[f64], end: f64) -> (Vec<(f64, usize)>, usize) {
        let mut heap = TimerHeap::default();
        let mut order = std::collections::HashMap::new();
        for (seq, when) in whens.iter().enumerate() {
            let h = handle();
            h.cell.when.set(*when);
            order.insert(Rc::as_ptr(&h.cell) as *const () as usize, seq);
            heap.push(TimerEntry::new(*when, seq as u64, h));
        }
        let mut out = Vec::new();
        heap.drain_due(end, |h| {
            let seq = order[&(Rc::as_ptr(&h.cell) as *const () as usize)];
            out.push((h.cell.when.get(), seq));
        });
        (out, heap.len())
    }

    fn pseudo_random(n: usize) -> Vec<f64> {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % 1000) as f64) / 10.0 - 50.0
            })
            .collect()
    }

    #[test]
    fn drains_in_deadline_then_fifo_order() {
        for n in [5, 300, 5000] {
            let whens = pseudo_random(n);
            let (out, left) = drain(&whens, 0.0);
            let mut expected: Vec<(f64, usize)> = whens
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, w)| *w < 0.0)
                .map(|(i, w)| (w, i))
                .collect();
            expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            assert_eq!(out, expected, "n = {n}");
            assert_eq!(left, n - expected.len());
        }
    }

    #[test]
    fn pops_and_retain_keep_the_heap_ordered() {
        let whens = pseudo_random(1000);
        let mut heap = TimerHeap::default();
        for (seq, w) in whens.iter().enumerate() {
            let h = handle();
            h.cell.when.set(*w);
            heap.push(TimerEntry::new(*w, seq as u64, h));
        }
        heap.retain(|h| h.cell.when.get() >= -10.0);
        let mut last = f64::NEG_INFINITY;
        let mut count = 0;
        while let Some(h) = heap.pop() {
            let w = h.cell.when.get();
            assert!(w >= last && w >= -10.0);
            last = w;
            count += 1;
        }
        assert_eq!(count, whens.iter().filter(|w| **w >= -10.0).count());
    }

    #[test]
    fn orders_like_total_cmp() {
        let xs = [
            -1e300,
            -2.5,
            -0.0,
            0.0,
            1e-9,
            1.0,
            2.0,
            1e300,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(
                ordered_bits(w[0]) < ordered_bits(w[1]),
                "{} < {}",
                w[0],
                w[1]
            );
        }
        assert!(ordered_bits(f64::NEG_INFINITY) < ordered_bits(-1e300));
    }
}
