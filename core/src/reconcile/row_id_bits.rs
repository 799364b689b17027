//! A set of one connection's user row ids, one bit each.
//!
//! Recomputing every user's ACL groups (a first sync, or a group created,
//! renamed or deleted) needs, per ACL group, the users its source groups
//! hold and the users it holds now. A million users are one run of row
//! ids, so a bit over that run (125 KiB) holds each such set, where a set
//! of pairs held 40 bytes an entry. The run is the connection's, from its
//! least user id to its greatest, and the set is asked only about the
//! connection's users: an id outside the run is no user of the connection,
//! and the set neither takes nor holds one (an ACL group may hold users of
//! other connections; they are not this apply's to judge).
//! Row ids are handed out in order, so the run is as long as the user ids
//! handed out from the connection's first user to its last: the users of
//! every connection written in between, and on PostgreSQL the ids of
//! rolled-back inserts too (a sequence does not roll back). A run of ten
//! million ids is 1.2 MiB a set.

/// See the module docs.
#[derive(Debug, Clone)]
pub(super) struct RowIdBits {
    /// The row id of bit 0.
    first: i64,
    /// Ids in the run.
    len: u64,
    bits: Vec<u64>,
}

impl RowIdBits {
    /// An empty set over the ids `first..=last` (none if `last < first`).
    pub(super) fn over(first: i64, last: i64) -> Self {
        let len = last.saturating_sub(first).saturating_add(1).max(0) as u64;
        RowIdBits {
            first,
            len,
            bits: vec![0; len.div_ceil(64) as usize],
        }
    }

    /// The bit of `id`, if the run holds it.
    fn bit(&self, id: i64) -> Option<(usize, u64)> {
        let offset = u64::try_from(id.checked_sub(self.first)?).ok()?;
        (offset < self.len).then_some(((offset / 64) as usize, 1 << (offset % 64)))
    }

    /// Adds `id`; an id outside the run is left out (see the module docs).
    pub(super) fn insert(&mut self, id: i64) {
        if let Some((word, bit)) = self.bit(id) {
            self.bits[word] |= bit;
        }
    }

    pub(super) fn contains(&self, id: i64) -> bool {
        self.bit(id)
            .is_some_and(|(word, bit)| self.bits[word] & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_ids_of_its_run_that_were_inserted() {
        let mut set = RowIdBits::over(1_000, 1_129);
        for id in [1_000, 1_063, 1_064, 1_129] {
            set.insert(id);
        }
        for id in [1_000, 1_063, 1_064, 1_129] {
            assert!(set.contains(id), "{id}");
        }
        for id in [1_001, 1_065, 1_128] {
            assert!(!set.contains(id), "{id}");
        }
    }

    #[test]
    fn an_id_outside_the_run_is_neither_taken_nor_held() {
        let mut set = RowIdBits::over(10, 20);
        for id in [9, 21, 200, -5, i64::MIN, i64::MAX] {
            set.insert(id);
            assert!(!set.contains(id), "{id}");
        }
        // The last word's spare bits are no ids of the run.
        set.insert(70);
        assert!(!set.contains(70));
    }

    #[test]
    fn an_empty_run_holds_nothing() {
        let mut set = RowIdBits::over(5, 4);
        set.insert(5);
        assert!(!set.contains(5) && !set.contains(4));
        let mut extreme = RowIdBits::over(i64::MAX, i64::MAX);
        extreme.insert(i64::MAX);
        assert!(extreme.contains(i64::MAX));
    }
}
