//! An [`EdgeList`](super::EdgeList)'s edge keys: as they were pushed, one
//! `u64` each, or, once sorted, grouped by their group half.
//!
//! Pushed keys are held in blocks of at most [`BLOCK_KEYS`] ([`PushedKeys`]):
//! one vector that grew by doubling would copy every key at each doubling
//! and, for that moment, hold the old vector beside the new one (ten
//! million keys: 64 MiB beside 128, the highest point of a million-user
//! pull). A full block is never moved.
//!
//! A sorted list names each group once, with where its run of edges ends,
//! and keeps of each edge only the member half of its key (the member's
//! index and kind): 4 bytes an edge where the pushed keys took 8. Sorting
//! turns each block into grouped keys in place, word by word
//! ([`Halves::from_words`]), then merges the sorted blocks
//! ([`SortedKeys::merge`]): the list never holds more than the 8 bytes an
//! edge it held as pushed, besides the copy of the one block being halved
//! (at most 4 MiB).

use super::key_parts;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The most keys a block of [`PushedKeys`] holds: 8 MiB of keys, so a
/// list of up to a million edges is one block, as one vector was.
pub(super) const BLOCK_KEYS: usize = 1 << 20;

/// The keys of a list's edges.
#[derive(Clone)]
pub(super) enum Keys {
    /// As pushed, in order, repeats and all.
    Pushed(PushedKeys),
    /// Sorted and distinct, grouped.
    Sorted(SortedKeys),
}

impl Default for Keys {
    fn default() -> Self {
        Keys::Pushed(PushedKeys::default())
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
    pub(super) fn pushed_mut(&mut self) -> &mut PushedKeys {
        if let Keys::Sorted(sorted) = self {
            let mut pushed = PushedKeys::default();
            sorted.iter().for_each(|key| pushed.push(key));
            *self = Keys::Pushed(pushed);
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
    pub(super) fn retain(&mut self, keep: impl FnMut(usize, u64) -> bool) {
        match self {
            Keys::Pushed(keys) => keys.retain(keep),
            Keys::Sorted(sorted) => sorted.retain(keep),
        }
    }
}

/// Keys as pushed, in order, in blocks of at most `block_keys`.
///
/// Invariant: every block but the last holds exactly `block_keys` keys and
/// the last holds at least one, so position `p` is key `p % block_keys` of
/// block `p / block_keys`.
#[derive(Clone)]
pub(super) struct PushedKeys {
    blocks: Vec<Vec<u64>>,
    block_keys: usize,
}

impl Default for PushedKeys {
    fn default() -> Self {
        PushedKeys::with_block_keys(BLOCK_KEYS)
    }
}

impl PushedKeys {
    /// No keys, in blocks of `block_keys` (at least one).
    fn with_block_keys(block_keys: usize) -> Self {
        assert!(block_keys > 0, "a block holds at least one key");
        PushedKeys {
            blocks: Vec::new(),
            block_keys,
        }
    }

    pub(super) fn len(&self) -> usize {
        match self.blocks.last() {
            Some(last) => (self.blocks.len() - 1) * self.block_keys + last.len(),
            None => 0,
        }
    }

    /// Appends `key`. The first block grows as a vector does (a short
    /// list stays short); a new block is made whole.
    pub(super) fn push(&mut self, key: u64) {
        match self.blocks.last_mut() {
            Some(last) if last.len() < self.block_keys => last.push(key),
            Some(_) => {
                let mut block = Vec::with_capacity(self.block_keys);
                block.push(key);
                self.blocks.push(block);
            }
            None => self.blocks.push(vec![key]),
        }
    }

    pub(super) fn iter(&self) -> PushedIter<'_> {
        PushedIter {
            blocks: self.blocks.iter(),
            block: [].iter(),
            left: self.len(),
        }
    }

    /// Each key, to be changed in place.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut u64> {
        self.blocks.iter_mut().flatten()
    }

    /// Keeps the keys for which `keep(position, key)` holds, in order, in
    /// place: each kept key moves down to the next free position.
    fn retain(&mut self, mut keep: impl FnMut(usize, u64) -> bool) {
        let len = self.len();
        let block_keys = self.block_keys;
        let mut kept = 0;
        for position in 0..len {
            let key = self.blocks[position / block_keys][position % block_keys];
            if keep(position, key) {
                self.blocks[kept / block_keys][kept % block_keys] = key;
                kept += 1;
            }
        }
        // Back to the invariant: whole blocks up to `kept`, then the rest.
        let blocks = kept.div_ceil(block_keys);
        self.blocks.truncate(blocks);
        if let Some(last) = self.blocks.last_mut() {
            last.truncate(kept - (blocks - 1) * block_keys);
        }
    }
}

/// Pushed keys in order.
pub(super) struct PushedIter<'a> {
    blocks: std::slice::Iter<'a, Vec<u64>>,
    block: std::slice::Iter<'a, u64>,
    left: usize,
}

impl Iterator for PushedIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        loop {
            if let Some(key) = self.block.next() {
                self.left -= 1;
                return Some(*key);
            }
            self.block = self.blocks.next()?.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for PushedIter<'_> {}

/// A list's keys in order.
pub(super) enum KeysIter<'a> {
    Pushed(PushedIter<'a>),
    Sorted(SortedIter<'a>),
}

impl Iterator for KeysIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        match self {
            KeysIter::Pushed(keys) => keys.next(),
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

/// Counts the key at `position` into `runs`: the last run if it is of
/// `group`, else a new one. Keys come in increasing order.
fn extend_runs(runs: &mut Vec<GroupRun>, group: u32, position: usize) {
    match runs.last_mut() {
        Some(run) if run.group == group => run.end = position + 1,
        _ => runs.push(GroupRun {
            group,
            end: position + 1,
        }),
    }
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
    /// Sorts the pushed keys, drops repeats and groups them: each block
    /// in place ([`SortedKeys::new`]), then the sorted blocks merged.
    pub(super) fn from_pushed(pushed: PushedKeys) -> Self {
        let mut parts: Vec<SortedKeys> = pushed.blocks.into_iter().map(SortedKeys::new).collect();
        match parts.len() {
            0 => SortedKeys::new(Vec::new()),
            1 => parts.pop().expect("one part"),
            _ => SortedKeys::merge(&parts),
        }
    }

    /// Sorts `keys`, drops repeats and groups them, reusing their memory.
    fn new(mut keys: Vec<u64>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        let mut runs: Vec<GroupRun> = Vec::new();
        let members = Halves::from_words(keys, |position, key| {
            let (group, _, _) = key_parts(key);
            extend_runs(&mut runs, group, position);
            key as u32
        });
        runs.shrink_to_fit();
        SortedKeys { runs, members }
    }

    /// The distinct keys of all `parts`, sorted: a merge that reads each
    /// part once, in order, holding the next key of each.
    fn merge(parts: &[SortedKeys]) -> Self {
        let most = parts.iter().map(|part| part.members.len()).sum();
        let mut members = Halves::with_capacity(most);
        let mut runs: Vec<GroupRun> = Vec::new();
        let mut readers: Vec<SortedIter<'_>> = parts.iter().map(SortedKeys::iter).collect();
        let mut next: BinaryHeap<Reverse<(u64, usize)>> = readers
            .iter_mut()
            .enumerate()
            .filter_map(|(part, reader)| Some(Reverse((reader.next()?, part))))
            .collect();
        let mut last = None;
        while let Some(Reverse((key, part))) = next.pop() {
            if let Some(following) = readers[part].next() {
                next.push(Reverse((following, part)));
            }
            if last == Some(key) {
                continue;
            }
            last = Some(key);
            let (group, _, _) = key_parts(key);
            extend_runs(&mut runs, group, members.len());
            members.push(key as u32);
        }
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

    /// No halves, with room for `len`.
    fn with_capacity(len: usize) -> Self {
        Halves {
            words: Vec::with_capacity(len.div_ceil(2)),
            len: 0,
        }
    }

    /// Appends `value`.
    fn push(&mut self, value: u32) {
        if self.len.is_multiple_of(2) {
            self.words.push(0);
        }
        self.len += 1;
        set_half(&mut self.words, self.len - 1, value);
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

    /// `keys` pushed in blocks of `block_keys`.
    fn pushed(block_keys: usize, keys: &[u64]) -> PushedKeys {
        let mut pushed = PushedKeys::with_block_keys(block_keys);
        keys.iter().for_each(|key| pushed.push(*key));
        pushed
    }

    /// Every block but the last is full and the last is not empty.
    fn assert_blocks_whole(pushed: &PushedKeys) {
        if let Some((last, full)) = pushed.blocks.split_last() {
            assert!(full.iter().all(|block| block.len() == pushed.block_keys));
            assert!(!last.is_empty() && last.len() <= pushed.block_keys);
        }
    }

    #[test]
    fn pushed_keys_read_back_in_order_across_blocks() {
        for n in [0u64, 1, 3, 4, 5, 9, 12] {
            let keys: Vec<u64> = (0..n).map(|i| 1000 - i).collect();
            let pushed = pushed(4, &keys);
            assert_blocks_whole(&pushed);
            assert_eq!(pushed.len(), keys.len());
            assert_eq!(pushed.iter().len(), keys.len());
            assert_eq!(pushed.iter().collect::<Vec<_>>(), keys, "{n} keys");
        }
    }

    #[test]
    fn a_full_block_is_never_moved() {
        let mut keys = PushedKeys::default();
        (0..BLOCK_KEYS as u64).for_each(|key| keys.push(key));
        let first = keys.blocks[0].as_ptr();
        (0..BLOCK_KEYS as u64 + 3).for_each(|key| keys.push(key));
        assert_eq!(keys.blocks.len(), 3);
        assert_eq!(keys.blocks[0].as_ptr(), first, "the first block stayed");
        assert_eq!(keys.len(), 2 * BLOCK_KEYS + 3);
        assert_blocks_whole(&keys);
    }

    #[test]
    fn retained_pushed_keys_keep_their_order_across_blocks() {
        let keys: Vec<u64> = (0..11).collect();
        let mut kept = pushed(4, &keys);
        let mut seen = Vec::new();
        kept.retain(|position, key| {
            seen.push(position);
            assert_eq!(key, keys[position]);
            key % 3 != 0
        });
        assert_eq!(
            seen,
            keys.iter().map(|&key| key as usize).collect::<Vec<_>>()
        );
        assert_blocks_whole(&kept);
        assert_eq!(kept.iter().collect::<Vec<_>>(), [1, 2, 4, 5, 7, 8, 10]);
        // Pushes go on after the kept keys.
        kept.push(99);
        assert_eq!(kept.iter().collect::<Vec<_>>(), [1, 2, 4, 5, 7, 8, 10, 99]);
        assert_blocks_whole(&kept);

        kept.retain(|_, key| key == 99);
        assert_eq!(kept.iter().collect::<Vec<_>>(), [99]);
        kept.retain(|_, _| false);
        assert_eq!(kept.len(), 0);
        assert!(kept.blocks.is_empty());
    }

    #[test]
    fn keys_sorted_from_many_blocks_are_the_sorted_distinct_keys() {
        for n in [0u32, 1, 4, 5, 17, 100] {
            // Repeats within a block and across blocks, groups spread
            // over every block.
            let keys: Vec<u64> = (0..n)
                .map(|i| edge_key(i % 5, (i * 7) % 11, i % 4 == 0))
                .collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            expected.dedup();
            let sorted = SortedKeys::from_pushed(pushed(4, &keys));
            assert_eq!(sorted.iter().collect::<Vec<_>>(), expected, "{n} keys");
            assert_eq!(sorted.iter().len(), expected.len());
            for (position, key) in expected.iter().enumerate() {
                assert_eq!(sorted.position(*key), Some(position));
            }
            let groups: Vec<u32> = sorted.runs.iter().map(|run| run.group).collect();
            let mut distinct: Vec<u32> = expected.iter().map(|key| key_parts(*key).0).collect();
            distinct.dedup();
            assert_eq!(groups, distinct, "each group one run");
        }
    }

    #[test]
    fn pushed_halves_read_back_as_pushed() {
        let mut halves = Halves::with_capacity(5);
        for value in [7, 0, u32::MAX, 3, 9] {
            halves.push(value);
        }
        assert_eq!(halves.len(), 5);
        assert_eq!(halves.words.len(), 3);
        let read: Vec<u32> = (0..5).map(|n| halves.get(n)).collect();
        assert_eq!(read, [7, 0, u32::MAX, 3, 9]);
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
