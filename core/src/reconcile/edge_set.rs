//! A compact set of membership edges, as diffing holds the stored ones:
//! every external id is interned once and an edge is one `u64`. A tenant's
//! million stored edges cost a few bytes each instead of two heap strings,
//! and are loaded and compared without allocating per edge. Its maps hash
//! with foldhash: a full re-read looks up two ids per edge, and SipHash
//! was a third of that.

use foldhash::HashSet;
use idpsync_driver::edges::{IdIndex, edge_key, key_parts};
use idpsync_driver::{EdgeId, MemberRef, MembershipEdge};

/// A user's index in one [`EdgeSet`], from [`EdgeSet::intern_user`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIndex(u32);

/// A group's index in one [`EdgeSet`], from [`EdgeSet::intern_group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupIndex(u32);

/// Edges by interned ids. Pure data; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct EdgeSet {
    users: IdIndex,
    groups: IdIndex,
    keys: HashSet<u64>,
}

impl EdgeSet {
    /// An empty set with room for `edges` edges.
    pub fn with_capacity(edges: usize) -> Self {
        EdgeSet {
            keys: HashSet::with_capacity_and_hasher(edges, Default::default()),
            ..EdgeSet::default()
        }
    }

    /// The index of user `user` here, given one if it has none.
    pub fn intern_user(&mut self, user: &str) -> UserIndex {
        UserIndex(self.users.intern(user))
    }

    /// The id of a user this set gave `index` (shared, not copied).
    pub fn user_id(&self, index: UserIndex) -> &EdgeId {
        self.users.name(index.0)
    }

    /// The index of group `group` here, given one if it has none.
    pub fn intern_group(&mut self, group: &str) -> GroupIndex {
        GroupIndex(self.groups.intern(group))
    }

    /// [`EdgeSet::insert_user`] by indexes this set gave.
    pub fn insert_user_at(&mut self, group: GroupIndex, user: UserIndex) {
        self.keys.insert(edge_key(group.0, user.0, false));
    }

    /// [`EdgeSet::insert_group`] by indexes this set gave.
    pub fn insert_group_at(&mut self, group: GroupIndex, member: GroupIndex) {
        self.keys.insert(edge_key(group.0, member.0, true));
    }

    /// Adds "user `user` is a direct member of group `group`".
    pub fn insert_user(&mut self, group: &str, user: &str) {
        let group = self.groups.intern(group);
        let user = self.users.intern(user);
        self.keys.insert(edge_key(group, user, false));
    }

    /// Adds "group `member` is nested directly in group `group`".
    pub fn insert_group(&mut self, group: &str, member: &str) {
        let group = self.groups.intern(group);
        let member = self.groups.intern(member);
        self.keys.insert(edge_key(group, member, true));
    }

    pub fn insert(&mut self, edge: &MembershipEdge) {
        match &edge.member {
            MemberRef::User(user) => self.insert_user(&edge.group_external_id, user),
            MemberRef::Group(member) => self.insert_group(&edge.group_external_id, member),
        }
    }

    /// The key `edge` would have here, if both its ends are known here
    /// (whether or not the edge itself is in the set).
    pub fn key_of(&self, edge: &MembershipEdge) -> Option<u64> {
        let group = self.groups.get(&edge.group_external_id)?;
        Some(match &edge.member {
            MemberRef::User(user) => edge_key(group, self.users.get(user)?, false),
            MemberRef::Group(member) => edge_key(group, self.groups.get(member)?, true),
        })
    }

    /// The index a user id has here, for [`edge_key`].
    pub fn user_index(&self, user: &str) -> Option<u32> {
        self.users.get(user)
    }

    /// The index a group id has here, for [`edge_key`].
    pub fn group_index(&self, group: &str) -> Option<u32> {
        self.groups.get(group)
    }

    pub fn contains_key(&self, key: u64) -> bool {
        self.keys.contains(&key)
    }

    /// Takes the edge of `key` out; whether it was here.
    pub fn remove_key(&mut self, key: u64) -> bool {
        self.keys.remove(&key)
    }

    pub fn contains(&self, edge: &MembershipEdge) -> bool {
        self.key_of(edge).is_some_and(|key| self.contains_key(key))
    }

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

    /// The edges whose group is `group`.
    pub fn of_group(&self, group: &str) -> Vec<MembershipEdge> {
        let Some(group) = self.groups.get(group) else {
            return Vec::new();
        };
        self.keys()
            .filter(|key| key_parts(*key).0 == group)
            .map(|key| self.edge(key))
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
        let mut set = EdgeSet::default();
        for edge in edges {
            set.insert(edge);
        }
        set
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
    fn inserting_twice_keeps_one() {
        let set: EdgeSet = [user("g1", "u1"), user("g1", "u1")].iter().collect();
        assert_eq!(set.len(), 1);
    }
}
