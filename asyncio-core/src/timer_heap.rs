//! The loop's timer heap: a 4-ary min-heap of `(when, seq)` keys.
//!
//! CPython keeps `loop._scheduled` as a binary `heapq`; four children per
//! node halve the depth and keep siblings in one or two cache lines, and a
//! single integer key replaces float comparisons.

use crate::events::Handle;

/// A timer: its sort key and its callback.
pub(crate) struct TimerEntry {
    key: u128,
    pub(crate) handle: Handle,
}

impl TimerEntry {
    /// Orders by deadline, then by scheduling order (FIFO for equal deadlines).
    pub(crate) fn new(when: f64, seq: u64, handle: Handle) -> TimerEntry {
        TimerEntry {
            key: ((ordered_bits(when) as u128) << 64) | seq as u128,
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
            if popped == 32 && self.keys.len() > 256 {
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
        let mut due = Vec::new();
        for (key, handle) in keys.into_iter().zip(handles) {
            if key < end_key {
                due.push((key, handle));
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
        due.sort_unstable_by_key(|(key, _)| *key);
        for (_, handle) in due {
            out(handle);
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
