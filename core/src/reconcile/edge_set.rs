//! A compact set of membership edges, as diffing holds the stored ones:
//! every external id is interned once and an edge is one `u64`. A tenant's
//! million stored edges cost a few bytes each instead of two heap strings,
//! and are loaded and compared without allocating per edge. Its maps hash
//! with foldhash: a full re-read looks up two ids per edge, and SipHash
//! was a third of that.

use foldhash::{HashMap, HashSet};
use idpsync_driver::{MemberRef, MembershipEdge};

/// Set in a key's member half when the member is a group.
const GROUP_MEMBER: u64 = 1 << 31;

/// Edges by interned ids. Pure data; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct EdgeSet {
    users: Interner,
    groups: Interner,
    keys: HashSet<u64>,
}

/// External ids to dense indexes and back.
#[derive(Debug, Clone, Default)]
struct Interner {
    index: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&index) = self.index.get(name) {
            return index;
        }
        let index = u32::try_from(self.names.len())
            .ok()
            .filter(|index| u64::from(*index) < GROUP_MEMBER)
            .expect("fewer than 2^31 distinct ids in one connection");
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), index);
        index
    }

    fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    fn name(&self, index: u32) -> &str {
        &self.names[index as usize]
    }
}

fn key(group: u32, member: u32, member_is_group: bool) -> u64 {
    (u64::from(group) << 32) | u64::from(member) | if member_is_group { GROUP_MEMBER } else { 0 }
}

impl EdgeSet {
    /// Adds "user `user` is a direct member of group `group`".
    pub fn insert_user(&mut self, group: &str, user: &str) {
        let group = self.groups.intern(group);
        let user = self.users.intern(user);
        self.keys.insert(key(group, user, false));
    }

    /// Adds "group `member` is nested directly in group `group`".
    pub fn insert_group(&mut self, group: &str, member: &str) {
        let group = self.groups.intern(group);
        let member = self.groups.intern(member);
        self.keys.insert(key(group, member, true));
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
            MemberRef::User(user) => key(group, self.users.get(user)?, false),
            MemberRef::Group(member) => key(group, self.groups.get(member)?, true),
        })
    }

    pub fn contains_key(&self, key: u64) -> bool {
        self.keys.contains(&key)
    }

    pub fn contains(&self, edge: &MembershipEdge) -> bool {
        self.key_of(edge).is_some_and(|key| self.contains_key(key))
    }

    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().copied()
    }

    /// The edge of a key from [`EdgeSet::keys`] or [`EdgeSet::key_of`].
    pub fn edge(&self, key: u64) -> MembershipEdge {
        let group = self.groups.name((key >> 32) as u32);
        let member = (key & (GROUP_MEMBER - 1)) as u32;
        MembershipEdge {
            group_external_id: group.into(),
            member: if key & GROUP_MEMBER != 0 {
                MemberRef::Group(self.groups.name(member).into())
            } else {
                MemberRef::User(self.users.name(member).into())
            },
        }
    }

    /// The edges whose group is `group`.
    pub fn of_group(&self, group: &str) -> Vec<MembershipEdge> {
        let Some(group) = self.groups.get(group) else {
            return Vec::new();
        };
        self.keys()
            .filter(|key| (key >> 32) as u32 == group)
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
