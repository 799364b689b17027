//! A compact set of membership edges, as a delta's diff holds the stored
//! ones it names: every external id is interned once and an edge is one
//! `u64`, looked up without allocating per edge. (A full run's stored
//! edges are not held at all: see `compared_edges`.)
//!
//! The keys are gathered by an [`EdgeSetBuilder`] and then sorted once into
//! an [`EdgeSet`]: eight bytes an edge, where a hash set of the same keys
//! held ~15. A key puts the group in its high half, so a group's edges
//! are one run of the sorted keys; a lookup is a binary search, and a diff
//! that looks up the edges of one group after another stays within a run.
//! The interned ids' maps hash with foldhash: a full re-read looks up two
//! ids per edge, and SipHash was a third of that.

use idpsync_driver::edges::{IdIndex, edge_key, key_parts};
use idpsync_driver::{EdgeId, MemberRef, MembershipEdge};
use std::sync::Arc;

/// A user's index in one [`EdgeSetBuilder`], from
/// [`EdgeSetBuilder::intern_user`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIndex(u32);

impl UserIndex {
    /// The index, for a vector kept beside the set by user.
    pub fn position(self) -> usize {
        self.0 as usize
    }
}

/// A group's index in one [`EdgeSetBuilder`], from
/// [`EdgeSetBuilder::intern_group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupIndex(u32);

/// Edges being gathered for an [`EdgeSet`]; the only maker of one
/// ([`EdgeSetBuilder::finish`]). Adding an edge twice keeps one.
#[derive(Debug, Default)]
pub struct EdgeSetBuilder {
    users: IdIndex,
    groups: IdIndex,
    /// In the order added, repeats and all.
    keys: Vec<u64>,
}

impl EdgeSetBuilder {
    /// Room for `users` user ids and `groups` group ids (a full run's
    /// stored ones, counted ahead), made at once.
    pub fn with_capacity(users: usize, groups: usize) -> Self {
        EdgeSetBuilder {
            users: IdIndex::with_capacity(users),
            groups: IdIndex::with_capacity(groups),
            keys: Vec::new(),
        }
    }

    /// The index of user `user` here, given one if it has none.
    pub fn intern_user(&mut self, user: &str) -> UserIndex {
        UserIndex(self.users.intern(user))
    }

    /// [`EdgeSetBuilder::intern_user`] of an id already shared (held as
    /// it is if new here, not copied).
    pub fn intern_user_id(&mut self, user: EdgeId) -> UserIndex {
        UserIndex(self.users.intern_id(user))
    }

    /// The index of group `group` here, given one if it has none.
    pub fn intern_group(&mut self, group: &str) -> GroupIndex {
        GroupIndex(self.groups.intern(group))
    }

    /// [`EdgeSetBuilder::intern_group`] of an id already shared.
    pub fn intern_group_id(&mut self, group: EdgeId) -> GroupIndex {
        GroupIndex(self.groups.intern_id(group))
    }

    /// The id of a user index this builder gave.
    pub fn user_id(&self, user: UserIndex) -> &EdgeId {
        self.users.name(user.0)
    }

    /// The id of a group index this builder gave.
    pub fn group_id(&self, group: GroupIndex) -> &EdgeId {
        self.groups.name(group.0)
    }

    /// [`EdgeSetBuilder::insert_user`] by indexes this builder gave.
    pub fn insert_user_at(&mut self, group: GroupIndex, user: UserIndex) {
        self.keys.push(edge_key(group.0, user.0, false));
    }

    /// [`EdgeSetBuilder::insert_group`] by indexes this builder gave.
    pub fn insert_group_at(&mut self, group: GroupIndex, member: GroupIndex) {
        self.keys.push(edge_key(group.0, member.0, true));
    }

    /// Adds "user `user` is a direct member of group `group`".
    pub fn insert_user(&mut self, group: &str, user: &str) {
        let (group, user) = (self.intern_group(group), self.intern_user(user));
        self.insert_user_at(group, user);
    }

    /// Adds "group `member` is nested directly in group `group`".
    pub fn insert_group(&mut self, group: &str, member: &str) {
        let (group, member) = (self.intern_group(group), self.intern_group(member));
        self.insert_group_at(group, member);
    }

    pub fn insert(&mut self, edge: &MembershipEdge) {
        match &edge.member {
            MemberRef::User(user) => self.insert_user(&edge.group_external_id, user),
            MemberRef::Group(member) => self.insert_group(&edge.group_external_id, member),
        }
    }

    /// The set of the edges added: sorted in place, repeats dropped.
    pub fn finish(self) -> EdgeSet {
        let EdgeSetBuilder {
            users,
            groups,
            mut keys,
        } = self;
        keys.sort_unstable();
        keys.dedup();
        EdgeSet {
            users: Arc::new(users),
            groups,
            keys,
        }
    }
}

/// Edges by interned ids, sorted; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct EdgeSet {
    /// Shared with the stored users (see `stored_users`).
    users: Arc<IdIndex>,
    groups: IdIndex,
    /// Every edge's key, sorted and distinct.
    keys: Vec<u64>,
}

impl EdgeSet {
    /// The key `edge` would have here, if both its ends are known here
    /// (whether or not the edge itself is in the set).
    pub fn key_of(&self, edge: &MembershipEdge) -> Option<u64> {
        let group = self.groups.get(&edge.group_external_id)?;
        Some(match &edge.member {
            MemberRef::User(user) => edge_key(group, self.users.get(user)?, false),
            MemberRef::Group(member) => edge_key(group, self.groups.get(member)?, true),
        })
    }

    /// The index of the users' ids, shared.
    pub fn user_ids(&self) -> &Arc<IdIndex> {
        &self.users
    }

    pub fn contains_key(&self, key: u64) -> bool {
        self.keys.binary_search(&key).is_ok()
    }

    pub fn contains(&self, edge: &MembershipEdge) -> bool {
        self.key_of(edge).is_some_and(|key| self.contains_key(key))
    }

    /// The keys of the edges here, in order.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().copied()
    }

    /// The edge of a key from [`EdgeSet::keys`] or [`EdgeSet::key_of`].
    pub fn edge(&self, key: u64) -> MembershipEdge {
        let (group, member, member_is_group) = key_parts(key);
        MembershipEdge {
            group_external_id: self.groups.name(group).clone(),
            member: if member_is_group {
                MemberRef::Group(self.groups.name(member).clone())
            } else {
                MemberRef::User(self.users.name(member).clone())
            },
        }
    }

    /// The edges whose group is `group`: one run of the sorted keys.
    pub fn of_group(&self, group: &str) -> Vec<MembershipEdge> {
        let Some(group) = self.groups.get(group) else {
            return Vec::new();
        };
        let start = self.keys.partition_point(|key| key_parts(*key).0 < group);
        let end = start + self.keys[start..].partition_point(|key| key_parts(*key).0 == group);
        self.keys[start..end]
            .iter()
            .map(|key| self.edge(*key))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl<'a> FromIterator<&'a MembershipEdge> for EdgeSet {
    fn from_iter<I: IntoIterator<Item = &'a MembershipEdge>>(edges: I) -> Self {
        let mut set = EdgeSetBuilder::default();
        for edge in edges {
            set.insert(edge);
        }
        set.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(group: &str, user: &str) -> MembershipEdge {
        MembershipEdge::user(group, user)
    }

    fn nested(group: &str, member: &str) -> MembershipEdge {
        MembershipEdge {
            group_external_id: group.into(),
            member: MemberRef::Group(member.into()),
        }
    }

    #[test]
    fn holds_what_was_inserted_and_nothing_else() {
        let set: EdgeSet = [user("g1", "u1"), nested("g1", "g2"), user("g2", "u1")]
            .iter()
            .collect();
        assert_eq!(set.len(), 3);
        assert!(set.contains(&user("g1", "u1")));
        assert!(set.contains(&nested("g1", "g2")));
        assert!(set.contains(&user("g2", "u1")));
        // Known ends, unknown edge; and an unknown end.
        assert!(!set.contains(&nested("g2", "g1")));
        assert!(set.key_of(&nested("g2", "g1")).is_some());
        assert!(!set.contains(&user("g1", "u9")));
        assert!(set.key_of(&user("g1", "u9")).is_none());
    }

    #[test]
    fn a_user_and_a_group_with_the_same_id_are_different_members() {
        let set: EdgeSet = [user("g1", "x")].iter().collect();
        assert!(set.contains(&user("g1", "x")));
        assert!(!set.contains(&nested("g1", "x")));
    }

    #[test]
    fn keys_turn_back_into_the_edges() {
        let edges = [user("g1", "u1"), nested("g1", "g2"), user("g2", "u3")];
        let set: EdgeSet = edges.iter().collect();
        let mut back: Vec<MembershipEdge> = set.keys().map(|key| set.edge(key)).collect();
        back.sort();
        let mut expected = edges.to_vec();
        expected.sort();
        assert_eq!(back, expected);
        let mut of_g1 = set.of_group("g1");
        of_g1.sort();
        assert_eq!(of_g1, [user("g1", "u1"), nested("g1", "g2")]);
        assert!(set.of_group("g9").is_empty());
    }

    #[test]
    fn a_group_s_edges_are_found_among_many_groups_whatever_the_order_added() {
        // Groups added interleaved.
        let mut builder = EdgeSetBuilder::default();
        for member in (0..100).rev() {
            for group in ["g3", "g1", "g2"] {
                builder.insert_user(group, &format!("u{member}"));
            }
        }
        let set = builder.finish();
        assert_eq!(set.len(), 300);
        for group in ["g1", "g2", "g3"] {
            let edges = set.of_group(group);
            assert_eq!(edges.len(), 100);
            assert!(
                edges
                    .iter()
                    .all(|edge| edge.group_external_id.as_ref() == group)
            );
        }
        for member in 0..100 {
            assert!(set.contains(&user("g2", &format!("u{member}"))));
        }
        assert!(!set.contains(&user("g2", "u100")));
    }

    #[test]
    fn inserting_twice_keeps_one() {
        let set: EdgeSet = [user("g1", "u1"), user("g1", "u1")].iter().collect();
        assert_eq!(set.len(), 1);
    }
}
