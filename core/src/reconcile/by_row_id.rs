//! Values by row id, for the rows a stored state reads.
//!
//! A re-run reads a million stored users and looks two row ids up for each
//! of ten million stored edges. In a hash map the users cost 2^21 buckets
//! of 16 bytes (~34 MiB). A connection's rows are written in bulk, so
//! their ids are mostly one dense run, read in order: a vector over that
//! run, from the first id read, holds them in 12 bytes each and finds one
//! without hashing. An id the run cannot take without leaving more than
//! half of it empty (ids before the first, or far past the end) goes to a
//! map instead, so any order and any spread of ids stays correct and costs
//! at most what the map alone did.

use foldhash::HashMap;

/// See the module docs.
#[derive(Debug)]
pub(super) struct ByRowId<T> {
    /// The row id of `run[0]`: the first id inserted.
    first: Option<i64>,
    run: Vec<Option<T>>,
    /// Values in `run`.
    in_run: usize,
    others: HashMap<i64, T>,
}

impl<T> Default for ByRowId<T> {
    fn default() -> Self {
        ByRowId {
            first: None,
            run: Vec::new(),
            in_run: 0,
            others: HashMap::default(),
        }
    }
}

/// Slack the run may grow by before half of it must be filled.
const SLACK: usize = 1024;

impl<T: Copy> ByRowId<T> {
    /// Room for `n` rows in the run, read from the first id on.
    pub(super) fn with_capacity(n: usize) -> Self {
        ByRowId {
            run: Vec::with_capacity(n),
            ..ByRowId::default()
        }
    }

    /// Files `value` under `id` (a later one replaces it).
    pub(super) fn insert(&mut self, id: i64, value: T) {
        let first = *self.first.get_or_insert(id);
        let offset = id
            .checked_sub(first)
            .and_then(|offset| usize::try_from(offset).ok());
        match offset {
            Some(offset) if offset < self.run.len() => {
                let slot = &mut self.run[offset];
                self.in_run += usize::from(slot.is_none());
                *slot = Some(value);
            }
            // The run grows only while at least half of it is filled.
            Some(offset) if offset < 2 * (self.in_run + 1) + SLACK => {
                self.run.resize(offset + 1, None);
                self.run[offset] = Some(value);
                self.in_run += 1;
            }
            _ => {
                self.others.insert(id, value);
            }
        }
    }

    pub(super) fn get(&self, id: i64) -> Option<T> {
        let in_run = self
            .first
            .and_then(|first| id.checked_sub(first))
            .and_then(|offset| usize::try_from(offset).ok())
            .and_then(|offset| self.run.get(offset).copied().flatten());
        in_run.or_else(|| self.others.get(&id).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_a_run_before_it_and_far_past_it_are_all_found() {
        let mut values = ByRowId::with_capacity(4);
        for id in 100..200 {
            values.insert(id, id * 10);
        }
        values.insert(50, 500); // before the first
        values.insert(i64::MAX, 1); // far past the end
        values.insert(i64::MIN, 2);
        values.insert(150, 1501); // again: replaced
        for id in 100..200 {
            let expected = if id == 150 { 1501 } else { id * 10 };
            assert_eq!(values.get(id), Some(expected), "{id}");
        }
        assert_eq!(values.get(50), Some(500));
        assert_eq!(values.get(i64::MAX), Some(1));
        assert_eq!(values.get(i64::MIN), Some(2));
        for absent in [0, 99, 200, 201, 5_000, -1] {
            assert_eq!(values.get(absent), None, "{absent}");
        }
        assert_eq!(values.others.len(), 3);
    }

    #[test]
    fn spread_out_ids_leave_the_run_at_most_half_empty() {
        let mut values = ByRowId::default();
        // Every 1000th id, then every id of a dense stretch, in a mixed order.
        for id in (0..1_000i64).rev().map(|k| k * 1000) {
            values.insert(id, id);
        }
        for id in 0..5_000 {
            values.insert(id, id);
        }
        assert!(
            values.run.len() <= 2 * values.in_run + SLACK,
            "{} slots for {} values",
            values.run.len(),
            values.in_run
        );
        for id in (0..1_000_000).step_by(1000).chain(0..5_000) {
            assert_eq!(values.get(id), Some(id), "{id}");
        }
        assert_eq!(values.get(5_001), None);
        assert_eq!(values.get(999_999), None);
    }
}
