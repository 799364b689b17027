//! The row ids of the users an apply writes or deletes, by external id.
//!
//! A first sync of a million users looks up each user's row id by external
//! id as it writes the edges. In a map of owned ids they cost ~112 MiB
//! (2^21 buckets of 32 bytes, and a million strings). Most of those users
//! are named by the change set's added edges, whose id index holds each id
//! once already; their row ids go in a vector by that index (8 bytes an
//! id: see [`RowId`]), and only the others in a map.

use foldhash::HashMap;
use idpsync_driver::edges::IdIndex;
use sea_orm::DbErr;
use std::num::NonZeroI64;

/// A row id as vectors by id index hold it: an `Option<RowId>` takes 8
/// bytes where an `Option<i64>` takes 16 (a million ids: 8 MiB less per
/// vector). Row ids are handed out from 1 (SQLite's `INTEGER PRIMARY KEY`,
/// PostgreSQL's sequences), so none is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowId(NonZeroI64);

impl RowId {
    /// `row`, or an error if it is 0, which no table hands out: the apply
    /// fails (and its run is recorded as failed) rather than lose the row.
    pub(super) fn new(row: i64) -> Result<RowId, DbErr> {
        NonZeroI64::new(row)
            .map(RowId)
            .ok_or_else(|| DbErr::Custom("a row id of 0: row ids are handed out from 1".into()))
    }

    pub(super) fn get(self) -> i64 {
        self.0.get()
    }
}

/// Row ids by external id; see the module docs.
pub(super) struct UserIds<'a> {
    /// The added edges' ids (of users and of groups).
    indexed: &'a IdIndex,
    by_index: Vec<Option<RowId>>,
    others: HashMap<String, i64>,
}

impl<'a> UserIds<'a> {
    /// None yet; ids that `indexed` holds are kept by their index there.
    pub(super) fn new(indexed: &'a IdIndex) -> Self {
        UserIds {
            indexed,
            by_index: vec![None; indexed.len()],
            others: HashMap::default(),
        }
    }

    /// Files `row_id` under `external_id` (a later one replaces it).
    pub(super) fn insert(&mut self, external_id: String, row_id: i64) -> Result<(), DbErr> {
        match self.indexed.get(&external_id) {
            Some(index) => self.by_index[index as usize] = Some(RowId::new(row_id)?),
            None => {
                self.others.insert(external_id, row_id);
            }
        }
        Ok(())
    }

    pub(super) fn get(&self, external_id: &str) -> Option<i64> {
        match self.indexed.get(external_id) {
            Some(index) => self.by_index[index as usize].map(RowId::get),
            None => self.others.get(external_id).copied(),
        }
    }

    /// The row id filed under the id at `index` of `ids`, which must be
    /// the index these were made with (the added edges' ids): an edge's
    /// member is then found by the index in its key, not by hashing its id.
    ///
    /// # Panics
    /// If `ids` is another index: its `index` would name another user.
    pub(super) fn get_indexed(&self, ids: &IdIndex, index: u32) -> Option<i64> {
        assert!(
            std::ptr::eq(ids, self.indexed),
            "UserIds::get_indexed with another id index"
        );
        self.by_index
            .get(index as usize)
            .copied()
            .flatten()
            .map(RowId::get)
    }

    pub(super) fn contains(&self, external_id: &str) -> bool {
        self.get(external_id).is_some()
    }

    /// Every row id filed, each once per external id.
    pub(super) fn row_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.by_index
            .iter()
            .flatten()
            .map(|row| row.get())
            .chain(self.others.values().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idpsync_driver::{EdgeList, MembershipEdge};

    #[test]
    fn ids_named_by_the_edges_and_others_are_found_alike() {
        let edges = EdgeList::from(vec![
            MembershipEdge::user("g1", "u1"),
            MembershipEdge::user("g1", "x"),
        ]);
        let mut ids = UserIds::new(edges.ids());
        ids.insert("u1".into(), 10).unwrap();
        ids.insert("u9".into(), 90).unwrap();
        ids.insert("u1".into(), 11).unwrap();
        assert_eq!(ids.get("u1"), Some(11), "the later one");
        assert_eq!(ids.get("u9"), Some(90), "no edge names it");
        assert!(ids.contains("u9"));
        // Named by the edges, not filed: not found. Nor is a group's id.
        assert_eq!(ids.get("x"), None);
        assert_eq!(ids.get("g1"), None);
        assert!(!ids.contains("nobody"));
        let mut all: Vec<i64> = ids.row_ids().collect();
        all.sort();
        assert_eq!(all, [11, 90]);
    }

    #[test]
    fn a_member_is_found_by_its_index_in_the_edges_ids_and_only_in_theirs() {
        let edges = EdgeList::from(vec![
            MembershipEdge::user("g1", "u1"),
            MembershipEdge::user("g1", "u2"),
        ]);
        let mut ids = UserIds::new(edges.ids());
        ids.insert("u2".into(), 20).unwrap();
        for edge in edges.refs() {
            assert_eq!(
                ids.get_indexed(edges.ids(), edge.member_index),
                ids.get(edge.member),
                "{edge:?}"
            );
        }
        assert_eq!(
            ids.get_indexed(edges.ids(), edges.ids().get("g1").unwrap()),
            None
        );

        // An index of another list's ids names another id: refused.
        let other = EdgeList::from(vec![MembershipEdge::user("g1", "u2")]);
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ids.get_indexed(other.ids(), 0)
        }))
        .expect_err("an index of another list is refused");
        let message = refused.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(message.contains("another id index"), "{message}");
    }

    #[test]
    fn a_row_id_by_index_takes_eight_bytes_and_refuses_zero() {
        assert_eq!(std::mem::size_of::<Option<RowId>>(), 8);
        assert_eq!(RowId::new(-3).unwrap().get(), -3);
        assert_eq!(RowId::new(i64::MAX).unwrap().get(), i64::MAX);
        let refused = RowId::new(0).expect_err("0 is refused");
        assert!(refused.to_string().contains("row id of 0"), "{refused}");
        // Nor is it filed under an id the edges name.
        let edges = EdgeList::from(vec![MembershipEdge::user("g1", "u1")]);
        let mut ids = UserIds::new(edges.ids());
        assert!(ids.insert("u1".into(), 0).is_err());
        assert_eq!(ids.get("u1"), None);
    }
}
