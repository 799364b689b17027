//! A full run's stored edges, compared with the snapshot's edges as they
//! are read instead of held.
//!
//! A re-run of a big tenant lists ten million edges and finds almost all
//! of them stored. Held as an [`EdgeSet`] to be compared, the stored edges
//! cost another 8 bytes each beside the listed ones (80 MiB at ten
//! million) and a sort. Read instead one group's members at a time and
//! looked up in the snapshot's sorted edges ([`EdgeList::position`]), a
//! stored edge the snapshot lists leaves one bit ("this listed edge is
//! stored"); only the stored edges it does not list are kept, as values,
//! and they are as many as the run takes away (or the edges of the users
//! and groups it deletes).
//!
//! [`EdgeComparison`] takes the stored edges one at a time and is the only
//! maker of [`ComparedEdges`]. A `ComparedEdges` answers by position in
//! the one sorted list it was compared with, so the diff uses it only for
//! a list of that length that is still sorted
//! ([`ComparedEdges::compared_with`]): a list pushed to since is no longer
//! sorted, and one sorted again is the same list (sorting a sorted list
//! leaves it as it is).

use super::edge_set::EdgeSet;
use idpsync_driver::edges::{edge_key, key_parts};
use idpsync_driver::{EdgeList, MembershipEdge};

/// Stored edges being compared with a sorted [`EdgeList`].
pub struct EdgeComparison<'a> {
    listed: &'a EdgeList,
    /// Bit `i`: the listed edge at position `i` is stored.
    stored: Vec<u64>,
    unlisted: Vec<MembershipEdge>,
}

impl<'a> EdgeComparison<'a> {
    /// Compares stored edges with `listed`.
    ///
    /// # Panics
    /// If `listed` is not sorted ([`EdgeList::sort_and_dedup`]).
    pub fn new(listed: &'a EdgeList) -> Self {
        assert!(
            listed.is_sorted(),
            "stored edges are compared with a sorted list"
        );
        EdgeComparison {
            listed,
            stored: vec![0; listed.len().div_ceil(64)],
            unlisted: Vec::new(),
        }
    }

    /// A stored edge: its group and member by their index in the listed
    /// edges' ids where those name them (`None` where they do not), and
    /// the edge itself, asked for only when the list does not have it.
    pub fn stored(
        &mut self,
        group: Option<u32>,
        member: Option<u32>,
        member_is_group: bool,
        edge: impl FnOnce() -> MembershipEdge,
    ) {
        let position = match (group, member) {
            (Some(group), Some(member)) => {
                self.listed
                    .position(edge_key(group, member, member_is_group))
            }
            _ => None,
        };
        match position {
            Some(position) => self.stored[position / 64] |= 1 << (position % 64),
            None => self.unlisted.push(edge()),
        }
    }

    pub fn finish(self) -> ComparedEdges {
        ComparedEdges {
            listed: self.listed.len(),
            stored: self.stored,
            unlisted: self.unlisted,
        }
    }
}

/// Stored edges compared with a snapshot's sorted edges: which of those
/// are stored, and the stored edges the snapshot does not list.
#[derive(Debug, Clone, Default)]
pub struct ComparedEdges {
    /// The length of the list compared with.
    listed: usize,
    stored: Vec<u64>,
    unlisted: Vec<MembershipEdge>,
}

impl ComparedEdges {
    /// The edges of `set` compared with `listed` (sorted): for stored
    /// edges held whole, as the pure diff's tests hold them.
    pub fn of_set(listed: &EdgeList, set: &EdgeSet) -> Self {
        let ids = listed.ids();
        let mut comparison = EdgeComparison::new(listed);
        for key in set.keys() {
            let edge = set.edge(key);
            let (_, _, member_is_group) = key_parts(key);
            comparison.stored(
                ids.get(&edge.group_external_id),
                ids.get(edge.member.external_id()),
                member_is_group,
                || edge,
            );
        }
        comparison.finish()
    }

    /// Whether this is the comparison of `listed` as it is now.
    pub fn compared_with(&self, listed: &EdgeList) -> bool {
        listed.is_sorted() && listed.len() == self.listed
    }

    /// Whether the listed edge at `position` is stored.
    pub fn is_stored(&self, position: usize) -> bool {
        self.stored[position / 64] & (1 << (position % 64)) != 0
    }

    /// The stored edges the list does not have.
    pub fn into_unlisted(self) -> Vec<MembershipEdge> {
        self.unlisted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(edges: &[MembershipEdge]) -> EdgeList {
        let mut list = EdgeList::from(edges.to_vec());
        list.sort_and_dedup();
        list
    }

    #[test]
    fn a_stored_edge_the_list_has_marks_it_and_one_it_lacks_is_kept() {
        let list = listed(&[
            MembershipEdge::user("g2", "u1"),
            MembershipEdge::user("g1", "u1"),
            MembershipEdge::group("g1", "g2"),
        ]);
        let stored: EdgeSet = [
            MembershipEdge::user("g1", "u1"),
            // Known ends, not listed: a user "g2" is not the group "g2".
            MembershipEdge::user("g1", "g2"),
            // An end the list does not name at all.
            MembershipEdge::user("g1", "u9"),
        ]
        .iter()
        .collect();
        let compared = ComparedEdges::of_set(&list, &stored);
        assert!(compared.compared_with(&list));
        let marked: Vec<MembershipEdge> = list
            .to_vec()
            .into_iter()
            .enumerate()
            .filter(|(position, _)| compared.is_stored(*position))
            .map(|(_, edge)| edge)
            .collect();
        assert_eq!(marked, [MembershipEdge::user("g1", "u1")]);
        let mut unlisted = compared.into_unlisted();
        unlisted.sort();
        assert_eq!(
            unlisted,
            [
                MembershipEdge::user("g1", "g2"),
                MembershipEdge::user("g1", "u9")
            ]
        );
    }

    #[test]
    fn a_comparison_answers_only_for_the_list_it_was_made_with() {
        let mut list = listed(&[MembershipEdge::user("g1", "u1")]);
        let compared = ComparedEdges::of_set(&list, &EdgeSet::default());
        assert!(compared.compared_with(&list));
        list.push(MembershipEdge::user("g1", "u2"));
        assert!(!compared.compared_with(&list), "pushed to: unsorted");
        list.sort_and_dedup();
        assert!(!compared.compared_with(&list), "another length");
    }

    #[test]
    fn an_unsorted_list_is_refused() {
        let list = EdgeList::from(vec![MembershipEdge::user("g1", "u1")]);
        let refused = std::panic::catch_unwind(|| {
            EdgeComparison::new(&list);
        })
        .expect_err("an unsorted list is refused");
        let message = refused.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(message.contains("sorted list"), "{message}");
    }
}
