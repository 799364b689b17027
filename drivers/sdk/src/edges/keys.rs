//! An [`EdgeList`](super::EdgeList)'s edge keys: as they were pushed, one
//! `u64` each, or, once sorted, grouped by their group half.
//!
//! A sorted list names each group once, with where its run of edges ends,
//! and keeps of each edge only the member half of its key (the member's
//! index and kind): 4 bytes an edge where the pushed keys took 8. Sorting
//! turns the pushed keys into the grouped ones in place, word by word
//! ([`Halves::from_words`]), so ten million keys are never held twice.

use super::key_parts;

/// The keys of a list's edges.
#[derive(Clone)]
pub(super) enum Keys {
    /// As pushed, in order, repeats and all.
    Pushed(Vec<u64>),
    /// Sorted and distinct, grouped.
    Sorted(SortedKeys),
}

impl Default for Keys {
    fn default() -> Self {
        Keys::Pushed(Vec::new())
    }
}

impl Keys {
    pub(super) fn len(&self) -> usize {
        match self {
            Keys::Pushed(keys) => keys.len(),
            Keys::Sorted(sorted) => sorted.members.len(),
        }
    }

    /// The pushed keys, to push to: a sorted list goes back to pushed
    /// keys first (still in order: a push appends).
    pub(super) fn pushed_mut(&mut self) -> &mut Vec<u64> {
        if let Keys::Sorted(sorted) = self {
            *self = Keys::Pushed(sorted.iter().collect());
        }
        match self {
            Keys::Pushed(keys) => keys,
            Keys::Sorted(_) => unreachable!("made pushed above"),
        }
    }

    /// The keys in order.
    pub(super) fn iter(&self) -> KeysIter<'_> {
        match self {
            Keys::Pushed(keys) => KeysIter::Pushed(keys.iter()),
            Keys::Sorted(sorted) => KeysIter::Sorted(sorted.iter()),
        }
    }

    /// Keeps the keys for which `keep(position, key)` holds, in order.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(usize, u64) -> bool) {
        match self {
            Keys::Pushed(keys) => {
                let mut position = 0;
                keys.retain(|&key| {
                    let kept = keep(position, key);
                    position += 1;
                    kept
                });
            }
            Keys::Sorted(sorted) => sorted.retain(keep),
        }
    }
}

/// A list's keys in order.
pub(super) enum KeysIter<'a> {
    Pushed(std::slice::Iter<'a, u64>),
    Sorted(SortedIter<'a>),
}

impl Iterator for KeysIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        match self {
            KeysIter::Pushed(keys) => keys.next().copied(),
            KeysIter::Sorted(keys) => keys.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            KeysIter::Pushed(keys) => keys.size_hint(),
            KeysIter::Sorted(keys) => keys.size_hint(),
        }
    }
}

impl ExactSizeIterator for KeysIter<'_> {}

/// One group's run of a sorted list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GroupRun {
    /// The group half of the run's keys.
    group: u32,
    /// Where the run ends in the members: the next run's start.
    end: usize,
}

/// Sorted, distinct keys: each group once, with the member halves of its
/// edges in order.
///
/// Invariants: `runs` are in increasing `group` order, each non-empty,
/// their `end`s increasing up to `members.len()`; within a run the member
/// halves increase. So the keys, read in order, increase.
#[derive(Clone)]
pub(super) struct SortedKeys {
    runs: Vec<GroupRun>,
    members: Halves,
}

impl SortedKeys {
    /// Sorts `keys`, drops repeats and groups them, reusing their memory.
    pub(super) fn new(mut keys: Vec<u64>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        let mut runs: Vec<GroupRun> = Vec::new();
        let members = Halves::from_words(keys, |position, key| {
            let (group, _, _) = key_parts(key);
            match runs.last_mut() {
                Some(run) if run.group == group => run.end = position + 1,
                _ => runs.push(GroupRun {
                    group,
                    end: position + 1,
                }),
            }
            key as u32
        });
        runs.shrink_to_fit();
        SortedKeys { runs, members }
    }

    /// Where the run of `index` starts.
    fn start(&self, index: usize) -> usize {
        index
            .checked_sub(1)
            .map_or(0, |before| self.runs[before].end)
    }

    /// Where `key` is, if it is here.
    pub(super) fn position(&self, key: u64) -> Option<usize> {
        let (group, _, _) = key_parts(key);
        let index = self
            .runs
            .binary_search_by_key(&group, |run| run.group)
            .ok()?;
        let start = self.start(index);
        let member = key as u32;
        let run = start..self.runs[index].end;
        // Within a run the member halves increase.
        let (mut low, mut high) = (run.start, run.end);
        while low < high {
            let middle = low + (high - low) / 2;
            match self.members.get(middle).cmp(&member) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some(middle),
            }
        }
        None
    }

    pub(super) fn iter(&self) -> SortedIter<'_> {
        SortedIter {
            keys: self,
            position: 0,
            run: 0,
        }
    }

    /// Keeps the keys for which `keep(position, key)` holds, in order: a
    /// part of a sorted list is sorted.
    fn retain(&mut self, mut keep: impl FnMut(usize, u64) -> bool) {
        let mut kept = 0;
        let mut runs_kept = 0;
        let mut start = 0;
        for index in 0..self.runs.len() {
            let GroupRun { group, end } = self.runs[index];
            let run_start = kept;
            for position in start..end {
                let member = self.members.get(position);
                if keep(position, edge_key_of_halves(group, member)) {
                    self.members.set(kept, member);
                    kept += 1;
                }
            }
            start = end;
            if kept > run_start {
                self.runs[runs_kept] = GroupRun { group, end: kept };
                runs_kept += 1;
            }
        }
        self.runs.truncate(runs_kept);
        self.members.truncate(kept);
    }
}

/// The key of a group half and a member half (the low half of a key:
/// the member's index and kind, as `edge_key` lays them out).
fn edge_key_of_halves(group: u32, member: u32) -> u64 {
    (u64::from(group) << 32) | u64::from(member)
}

/// A sorted list's keys in order.
pub(super) struct SortedIter<'a> {
    keys: &'a SortedKeys,
    position: usize,
    /// The run `position` is in, or past the last.
    run: usize,
}

impl Iterator for SortedIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.position == self.keys.members.len() {
            return None;
        }
        while self.keys.runs[self.run].end <= self.position {
            self.run += 1;
        }
        let key = edge_key_of_halves(
            self.keys.runs[self.run].group,
            self.keys.members.get(self.position),
        );
        self.position += 1;
        Some(key)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.keys.members.len() - self.position;
        (left, Some(left))
    }
}

impl ExactSizeIterator for SortedIter<'_> {}

/// `u32`s held two to a `u64` word: what lets a vector of keys become
/// their member halves without a second vector.
#[derive(Clone)]
struct Halves {
    words: Vec<u64>,
    len: usize,
}

impl Halves {
    /// `half(position, word)` of each word in order, in place of the
    /// words: the word read at `position` is read before any half is
    /// written over it (half `position` lives in word `position / 2`).
    fn from_words(mut words: Vec<u64>, mut half: impl FnMut(usize, u64) -> u32) -> Self {
        let len = words.len();
        for position in 0..len {
            let value = half(position, words[position]);
            set_half(&mut words, position, value);
        }
        words.truncate(len.div_ceil(2));
        words.shrink_to_fit();
        Halves { words, len }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, position: usize) -> u32 {
        assert!(position < self.len, "half {position} of {}", self.len);
        (self.words[position / 2] >> (32 * (position % 2))) as u32
    }

    fn set(&mut self, position: usize, value: u32) {
        assert!(position < self.len, "half {position} of {}", self.len);
        set_half(&mut self.words, position, value);
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        self.words.truncate(self.len.div_ceil(2));
    }
}

/// Writes half `position` of `words`.
fn set_half(words: &mut [u64], position: usize, value: u32) {
    let shift = 32 * (position % 2);
    let word = &mut words[position / 2];
    *word = (*word & !(u64::from(u32::MAX) << shift)) | (u64::from(value) << shift);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edges::edge_key;

    /// Keys of `(group, member, member_is_group)`.
    fn keys(edges: &[(u32, u32, bool)]) -> Vec<u64> {
        edges
            .iter()
            .map(|&(group, member, is_group)| edge_key(group, member, is_group))
            .collect()
    }

    #[test]
    fn sorted_keys_read_back_as_the_sorted_distinct_keys() {
        // Odd and even lengths: the last word holds one half or two.
        for n in [0usize, 1, 2, 7, 64, 1001] {
            let pushed: Vec<u64> = (0..n as u32)
                .rev()
                .map(|i| edge_key(i % 13, (i * 7919) % 500, i % 3 == 0))
                .collect();
            let mut expected = pushed.clone();
            expected.sort_unstable();
            expected.dedup();
            let sorted = SortedKeys::new(pushed);
            assert_eq!(sorted.iter().collect::<Vec<_>>(), expected, "{n} keys");
            assert_eq!(sorted.iter().len(), expected.len());
            for (position, key) in expected.iter().enumerate() {
                assert_eq!(sorted.position(*key), Some(position));
            }
        }
    }

    #[test]
    fn a_key_not_held_has_no_position_though_its_group_or_member_is_held() {
        let sorted = SortedKeys::new(keys(&[(1, 5, false), (1, 9, false), (3, 5, true)]));
        for absent in keys(&[
            (0, 5, false),
            (1, 5, true),
            (1, 7, false),
            (1, 10, false),
            (2, 5, false),
            (3, 5, false),
            (4, 5, true),
        ]) {
            assert_eq!(sorted.position(absent), None, "{:?}", key_parts(absent));
        }
    }

    #[test]
    fn a_member_that_is_a_group_keeps_its_kind_and_sorts_after_users() {
        let sorted = SortedKeys::new(keys(&[(1, 2, true), (1, 3, false)]));
        let parts: Vec<_> = sorted.iter().map(key_parts).collect();
        assert_eq!(parts, [(1, 3, false), (1, 2, true)]);
    }

    #[test]
    fn retained_keys_stay_sorted_and_findable_and_empty_runs_go() {
        let mut sorted = SortedKeys::new(keys(&[
            (1, 1, false),
            (1, 2, false),
            (2, 1, false),
            (3, 1, false),
            (3, 4, false),
        ]));
        let mut seen = Vec::new();
        sorted.retain(|position, key| {
            seen.push(position);
            let (group, member, _) = key_parts(key);
            // Drops all of group 2 and the first edge of each other group.
            group != 2 && member != 1
        });
        assert_eq!(
            seen,
            [0, 1, 2, 3, 4],
            "each position offered once, in order"
        );
        let left = keys(&[(1, 2, false), (3, 4, false)]);
        assert_eq!(sorted.iter().collect::<Vec<_>>(), left);
        assert_eq!(sorted.runs.len(), 2);
        assert_eq!(sorted.position(left[1]), Some(1));
        assert_eq!(sorted.position(edge_key(2, 1, false)), None);

        sorted.retain(|_, _| false);
        assert_eq!(sorted.iter().count(), 0);
        assert!(sorted.runs.is_empty());
    }

    #[test]
    fn pushing_to_sorted_keys_appends_to_them_in_order() {
        let mut keys_now = Keys::Sorted(SortedKeys::new(keys(&[(2, 1, false), (1, 1, false)])));
        keys_now.pushed_mut().push(edge_key(0, 0, false));
        assert!(matches!(keys_now, Keys::Pushed(_)));
        assert_eq!(
            keys_now.iter().collect::<Vec<_>>(),
            keys(&[(1, 1, false), (2, 1, false), (0, 0, false)])
        );
    }

    #[test]
    fn halves_take_the_place_of_the_words_they_came_from() {
        let words: Vec<u64> = (0..5).map(|n| (n << 32) | (100 + n)).collect();
        let halves = Halves::from_words(words, |position, word| {
            assert_eq!(
                word >> 32,
                position as u64,
                "each word read before it is written over"
            );
            word as u32
        });
        assert_eq!(halves.len(), 5);
        assert_eq!(halves.words.len(), 3);
        let read: Vec<u32> = (0..5).map(|n| halves.get(n)).collect();
        assert_eq!(read, [100, 101, 102, 103, 104]);
    }
}
