//! Membership edges held compactly: a pull of a million users carries ten
//! million edges, and as [`MembershipEdge`] values (two shared ids, 40 bytes
//! each, in a vector that grows by doubling) they alone cost ~650 MiB. An
//! [`EdgeList`] keeps every distinct id once and each edge as one `u64` key
//! (the two ids' indexes and the member's kind): 8 bytes an edge as pushed,
//! 4 once sorted, when each group's edges keep only their member halves
//! (see `keys`).
//!
//! An `EdgeList` behaves as the list of edges it was given, in order: it
//! compares, prints and serialises as that list, and hands edges out as
//! [`MembershipEdge`] values again.

mod keys;

use crate::records::{EdgeId, MemberRef, MembershipEdge};
use keys::{Keys, SortedKeys};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::hash::BuildHasher;

/// Set in a key's member half when the member is a group.
const GROUP_MEMBER: u64 = 1 << 31;

/// External ids to dense indexes (below 2^31) and back. Each id is held
/// once, in `names`; the lookup table holds only indexes into `names`,
/// hashed by the id each names: 4 bytes an id (5 with hashbrown's control
/// byte), where a map keyed by the shared id held 24 (a million ids: ~10
/// MiB of table in place of ~50).
#[derive(Clone, Default)]
pub struct IdIndex {
    /// Invariant: holds each index of `names` once, placed by the hash of
    /// the name it indexes.
    table: hashbrown::HashTable<u32>,
    names: Vec<EdgeId>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for IdIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdIndex({} ids)", self.names.len())
    }
}

impl IdIndex {
    /// Room for `ids` ids made at once: filled one by one, a million ids
    /// grew the names and the table by doubling, each holding its old
    /// half beside the new whole while it moved (~13 MiB at a million).
    pub fn with_capacity(ids: usize) -> Self {
        IdIndex {
            table: hashbrown::HashTable::with_capacity(ids),
            names: Vec::with_capacity(ids),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The index of `id`, given one if it has none.
    pub fn intern(&mut self, id: &str) -> u32 {
        self.intern_as(id, || id.into())
    }

    /// [`IdIndex::intern`] of an id already shared: held as it is, not
    /// copied, if it is new here.
    pub fn intern_id(&mut self, id: EdgeId) -> u32 {
        self.intern_as(&id, || id.clone())
    }

    /// The index of `id`, given one if it has none, holding `held()`.
    fn intern_as(&mut self, id: &str, held: impl FnOnce() -> EdgeId) -> u32 {
        let hash = self.hasher.hash_one(id);
        match self.find(hash, id) {
            Some(index) => index,
            None => self.insert(hash, held()),
        }
    }

    /// `id` as this index holds it when it has it (shared: no copy), else
    /// a new copy: for holding ids beside an index without a second copy
    /// of each.
    pub fn shared_or_new(&self, id: &str) -> EdgeId {
        match self.get(id) {
            Some(index) => self.names[index as usize].clone(),
            None => id.into(),
        }
    }

    /// The index of `id` under its `hash`, if it has one.
    fn find(&self, hash: u64, id: &str) -> Option<u32> {
        let names = &self.names;
        self.table
            .find(hash, |&index| *names[index as usize] == *id)
            .copied()
    }

    /// Gives `id`, not held, the next index; `hash` is its hash.
    fn insert(&mut self, hash: u64, id: EdgeId) -> u32 {
        let index = u32::try_from(self.names.len())
            .ok()
            .filter(|index| u64::from(*index) < GROUP_MEMBER)
            .expect("fewer than 2^31 distinct ids in one edge list");
        self.names.push(id);
        let IdIndex {
            table,
            names,
            hasher,
        } = self;
        table.insert_unique(hash, index, |&held| hasher.hash_one(&*names[held as usize]));
        index
    }

    /// Numbers the ids in name order; returns each old index's new one.
    /// The names move to their new places in `names` itself: besides the
    /// returned numbering this holds 5 bytes an id while it runs, where a
    /// second vector of names would hold 16 more.
    fn renumber_by_name(&mut self) -> Vec<u32> {
        let mut by_name: Vec<u32> = (0..self.names.len() as u32).collect();
        by_name.sort_unstable_by(|a, b| self.name(*a).cmp(self.name(*b)));
        let mut new_index = vec![0u32; by_name.len()];
        for (new, old) in by_name.iter().enumerate() {
            new_index[*old as usize] = new as u32;
        }
        drop(by_name);
        // Each entry keeps its place: it names the same id, which hashes
        // as before.
        for index in self.table.iter_mut() {
            *index = new_index[*index as usize];
        }
        move_to_new_places(&mut self.names, &new_index);
        new_index
    }

    /// The index of `id`, if it has one.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.find(self.hasher.hash_one(id), id)
    }

    /// The id of an index this handed out.
    pub fn name(&self, index: u32) -> &EdgeId {
        &self.names[index as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Moves each item of `items` from its place `old` to `new_place[old]`, in
/// place: each cycle of the moves is followed from its lowest place, which
/// holds in turn each item the cycle's next place must give up.
///
/// `new_place` must be a permutation of `0..items.len()`.
fn move_to_new_places<T>(items: &mut [T], new_place: &[u32]) {
    assert_eq!(items.len(), new_place.len(), "a new place for each item");
    let mut placed = vec![false; items.len()];
    for start in 0..items.len() {
        if placed[start] {
            continue;
        }
        // `items[start]` holds an item whose new place is `to`: the swap
        // puts it there and brings back the item `to` held, whose new
        // place is `new_place[to]`.
        let mut to = new_place[start] as usize;
        while to != start {
            assert!(!placed[to], "new places are a permutation");
            items.swap(start, to);
            placed[to] = true;
            to = new_place[to] as usize;
        }
        placed[start] = true;
    }
}

/// The key of an edge from its ends' indexes: the group in the high half,
/// the member and its kind in the low half.
pub fn edge_key(group: u32, member: u32, member_is_group: bool) -> u64 {
    (u64::from(group) << 32) | u64::from(member) | if member_is_group { GROUP_MEMBER } else { 0 }
}

/// The group's index, the member's index and whether the member is a group.
pub fn key_parts(key: u64) -> (u32, u32, bool) {
    (
        (key >> 32) as u32,
        (key & (GROUP_MEMBER - 1)) as u32,
        key & GROUP_MEMBER != 0,
    )
}

/// An edge of an [`EdgeList`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeRef<'a> {
    pub group: &'a EdgeId,
    pub member: &'a EdgeId,
    pub member_is_group: bool,
    /// The group's index in the list's [`EdgeList::ids`]: a caller that
    /// keeps what it knows of each id by index finds it without hashing
    /// the id.
    pub group_index: u32,
    /// The member's index in the list's [`EdgeList::ids`].
    pub member_index: u32,
}

impl EdgeRef<'_> {
    /// The member, as a value.
    pub fn member_ref(&self) -> MemberRef {
        if self.member_is_group {
            MemberRef::Group(self.member.clone())
        } else {
            MemberRef::User(self.member.clone())
        }
    }

    /// The edge, as a value.
    pub fn to_edge(&self) -> MembershipEdge {
        MembershipEdge {
            group_external_id: self.group.clone(),
            member: self.member_ref(),
        }
    }
}

/// The edge of `key`, its ends named by `ids`.
fn edge_ref(ids: &IdIndex, key: u64) -> EdgeRef<'_> {
    let (group, member, member_is_group) = key_parts(key);
    EdgeRef {
        group: ids.name(group),
        member: ids.name(member),
        member_is_group,
        group_index: group,
        member_index: member,
    }
}

/// A list of membership edges, 8 bytes an edge (4 once sorted); see the
/// module docs.
#[derive(Clone, Default)]
pub struct EdgeList {
    ids: IdIndex,
    /// Sorted by [`EdgeList::sort_and_dedup`], pushed again by a push;
    /// when sorted, the ids are numbered in name order and the keys are
    /// sorted and distinct.
    keys: Keys,
    /// The group id of the last edge pushed, as it came, and its index: a
    /// driver lists one group's edges in a row with one id between them,
    /// so most group ids need no lookup.
    last_group: Option<(EdgeId, u32)>,
}

impl EdgeList {
    /// Appends `edge`.
    pub fn push(&mut self, edge: MembershipEdge) {
        let group = match &self.last_group {
            Some((came, index)) if std::sync::Arc::ptr_eq(came, &edge.group_external_id) => *index,
            _ => {
                let index = self.ids.intern(&edge.group_external_id);
                self.last_group = Some((edge.group_external_id.clone(), index));
                index
            }
        };
        let key = match &edge.member {
            MemberRef::User(id) => edge_key(group, self.ids.intern(id), false),
            MemberRef::Group(id) => edge_key(group, self.ids.intern(id), true),
        };
        self.keys.pushed_mut().push(key);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }

    /// The ids this list's edges name, by index.
    pub fn ids(&self) -> &IdIndex {
        &self.ids
    }

    /// The edge of a key of this list.
    pub fn edge(&self, key: u64) -> MembershipEdge {
        edge_ref(&self.ids, key).to_edge()
    }

    /// The edges, in order, borrowed.
    pub fn refs(&self) -> impl ExactSizeIterator<Item = EdgeRef<'_>> + '_ {
        self.keys.iter().map(|key| edge_ref(&self.ids, key))
    }

    /// The edges, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = MembershipEdge> + '_ {
        self.keys.iter().map(|key| self.edge(key))
    }

    /// The edges, in order, as values (an allocation of 40 bytes each).
    pub fn to_vec(&self) -> Vec<MembershipEdge> {
        self.iter().collect()
    }

    /// Keeps the edges for which `keep` holds, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&MembershipEdge) -> bool) {
        let ids = &self.ids;
        self.keys
            .retain(|_, key| keep(&edge_ref(ids, key).to_edge()));
    }

    /// Sorts the edges as [`MembershipEdge`]'s order does (by group id, then
    /// users before groups, then member id) and drops repeats. The ids are
    /// numbered again in name order first, so the keys are then sorted as
    /// integers too: ten million edges sort without comparing a string, and
    /// a sorted list finds an edge by its key ([`EdgeList::position`]).
    /// Indexes taken from [`EdgeList::ids`] before the sort are stale after
    /// it. A sorted list is left as it is.
    pub fn sort_and_dedup(&mut self) {
        let Keys::Pushed(keys) = &mut self.keys else {
            return;
        };
        let mut keys = std::mem::take(keys);
        let new_index = self.ids.renumber_by_name();
        for key in keys.iter_mut() {
            let (group, member, member_is_group) = key_parts(*key);
            *key = edge_key(
                new_index[group as usize],
                new_index[member as usize],
                member_is_group,
            );
        }
        drop(new_index);
        self.keys = Keys::Sorted(SortedKeys::from_pushed(keys));
        self.last_group = None;
    }

    /// Whether the list is sorted ([`EdgeList::sort_and_dedup`]) and not
    /// pushed to since.
    pub fn is_sorted(&self) -> bool {
        matches!(self.keys, Keys::Sorted(_))
    }

    /// Where the edge of `key` (in this list's ids) is in this sorted list,
    /// if it is listed.
    ///
    /// # Panics
    /// If the list is not sorted: an unsorted list cannot answer, and a
    /// "not listed" it made up would read as an edge to take away.
    pub fn position(&self, key: u64) -> Option<usize> {
        match &self.keys {
            Keys::Sorted(sorted) => sorted.position(key),
            Keys::Pushed(_) => panic!("EdgeList::position on an unsorted list"),
        }
    }

    /// Keeps the edges for which `keep` holds, given each edge's position
    /// and key (see [`key_parts`]), in order: for callers that decide by id
    /// index, without an edge value.
    pub fn retain_positions(&mut self, keep: impl FnMut(usize, u64) -> bool) {
        self.keys.retain(keep);
    }
}

impl PartialEq for EdgeList {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for EdgeList {}

impl std::fmt::Debug for EdgeList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<MembershipEdge>> for EdgeList {
    fn from(edges: Vec<MembershipEdge>) -> Self {
        edges.into_iter().collect()
    }
}

impl FromIterator<MembershipEdge> for EdgeList {
    fn from_iter<I: IntoIterator<Item = MembershipEdge>>(edges: I) -> Self {
        let mut list = EdgeList::default();
        list.extend(edges);
        list
    }
}

impl Extend<MembershipEdge> for EdgeList {
    fn extend<I: IntoIterator<Item = MembershipEdge>>(&mut self, edges: I) {
        for edge in edges {
            self.push(edge);
        }
    }
}

impl Serialize for EdgeList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for EdgeList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<MembershipEdge>::deserialize(deserializer).map(EdgeList::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(edges: &[MembershipEdge]) -> EdgeList {
        edges.to_vec().into()
    }

    #[test]
    fn an_index_made_with_room_takes_its_ids_without_growing() {
        let mut ids = IdIndex::with_capacity(1000);
        let (names, table) = (ids.names.as_ptr(), ids.table.capacity());
        assert!(table >= 1000);
        for n in 0..1000 {
            assert_eq!(ids.intern(&format!("id{n}")), n);
        }
        assert_eq!(ids.intern("id7"), 7, "an id held has its index");
        assert_eq!((ids.names.as_ptr(), ids.table.capacity()), (names, table));
        assert_eq!(ids.len(), 1000);
        assert_eq!(ids.name(999).as_ref(), "id999");
    }

    #[test]
    fn gives_back_the_edges_it_was_given_in_order() {
        let edges = [
            MembershipEdge::user("g2", "u1"),
            MembershipEdge::group("g1", "g2"),
            MembershipEdge::user("g1", "u1"),
            MembershipEdge::user("g2", "u1"),
        ];
        let list = list(&edges);
        assert_eq!(list.len(), 4);
        assert_eq!(list.to_vec(), edges);
        // Three distinct ids, each held once.
        assert_eq!(list.ids().len(), 3);
    }

    #[test]
    fn a_user_and_a_group_with_the_same_id_stay_different_members() {
        let edges = [
            MembershipEdge::user("g1", "x"),
            MembershipEdge::group("g1", "x"),
        ];
        let mut list = list(&edges);
        assert_eq!(list.to_vec(), edges);
        list.sort_and_dedup();
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn sorts_as_membership_edges_sort_and_drops_repeats() {
        let edges = vec![
            MembershipEdge::user("b", "u9"),
            MembershipEdge::group("a", "b"),
            MembershipEdge::user("a", "u2"),
            MembershipEdge::user("b", "u1"),
            MembershipEdge::user("a", "u2"),
            MembershipEdge::user("a", "b"),
            MembershipEdge::group("b", "a"),
        ];
        let mut list = EdgeList::from(edges.clone());
        list.sort_and_dedup();
        let mut expected = edges;
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(list.to_vec(), expected);
    }

    #[test]
    fn a_sorted_list_finds_each_edge_by_key_and_no_edge_it_does_not_list() {
        let mut list = list(&[
            MembershipEdge::user("b", "u2"),
            MembershipEdge::group("a", "b"),
            MembershipEdge::user("a", "u1"),
            MembershipEdge::user("b", "u2"),
        ]);
        list.sort_and_dedup();
        let ids = list.ids().clone();
        let key = |group: &str, member: &str, member_is_group: bool| {
            edge_key(
                ids.get(group).unwrap(),
                ids.get(member).unwrap(),
                member_is_group,
            )
        };
        for (position, edge) in list.to_vec().iter().enumerate() {
            let member_is_group = matches!(edge.member, MemberRef::Group(_));
            let at = key(
                &edge.group_external_id,
                edge.member.external_id(),
                member_is_group,
            );
            assert_eq!(list.position(at), Some(position), "{edge:?}");
        }
        // Known ids, edges not listed: user "b" (group "b" is), and u1 in b.
        assert_eq!(list.position(key("a", "b", false)), None);
        assert_eq!(list.position(key("b", "u1", false)), None);
        // Sorting again changes nothing.
        let before = list.to_vec();
        list.sort_and_dedup();
        assert_eq!(list.to_vec(), before);
        assert_eq!(list.ids().get("u2"), ids.get("u2"));
    }

    #[test]
    fn a_list_pushed_to_after_its_sort_cannot_say_where_an_edge_is() {
        let mut list = list(&[MembershipEdge::user("g1", "u1")]);
        list.sort_and_dedup();
        assert!(list.is_sorted());
        let first = list.keys.iter().next().unwrap();
        assert_eq!(list.position(first), Some(0));
        list.push(MembershipEdge::user("g0", "u1"));
        assert!(!list.is_sorted());
        let refused = std::panic::catch_unwind(|| list.position(0))
            .expect_err("an unsorted list refuses to answer");
        let message = refused.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(message.contains("unsorted"), "{message}");
    }

    #[test]
    fn retains_by_position_in_order() {
        let mut list = list(&[
            MembershipEdge::user("g1", "u1"),
            MembershipEdge::user("g1", "u2"),
            MembershipEdge::user("g2", "u1"),
        ]);
        list.retain_positions(|position, _| position != 1);
        assert_eq!(
            list.to_vec(),
            [
                MembershipEdge::user("g1", "u1"),
                MembershipEdge::user("g2", "u1")
            ]
        );
    }

    #[test]
    fn retains_in_order() {
        let mut list = list(&[
            MembershipEdge::user("g1", "u1"),
            MembershipEdge::user("g1", "u2"),
            MembershipEdge::user("g2", "u1"),
        ]);
        list.retain(|edge| edge.member.external_id() == "u1");
        assert_eq!(
            list.to_vec(),
            [
                MembershipEdge::user("g1", "u1"),
                MembershipEdge::user("g2", "u1")
            ]
        );
    }

    #[test]
    fn serialises_as_the_list_of_edges() {
        let edges = vec![
            MembershipEdge::user("g1", "u1"),
            MembershipEdge::group("g1", "g2"),
        ];
        let json = serde_json::to_value(EdgeList::from(edges.clone())).unwrap();
        assert_eq!(json, serde_json::to_value(&edges).unwrap());
        let back: EdgeList = serde_json::from_value(json).unwrap();
        assert_eq!(back.to_vec(), edges);
    }

    #[test]
    fn lists_compare_by_their_edges_not_by_their_indexes() {
        // The same edges, ids met in another order.
        let mut one = list(&[MembershipEdge::user("g1", "u1")]);
        one.push(MembershipEdge::user("g2", "u2"));
        let other = list(&[
            MembershipEdge::user("g2", "u2"),
            MembershipEdge::user("g1", "u1"),
        ]);
        assert_ne!(one, other);
        let mut other = EdgeList::default();
        other.push(MembershipEdge::user("g1", "u1"));
        other.push(MembershipEdge::user("g2", "u2"));
        assert_eq!(one, other);
    }

    #[test]
    fn an_id_held_already_is_shared_not_copied() {
        let list = list(&[MembershipEdge::user("g1", "u1")]);
        let held = list.ids().name(list.ids().get("u1").unwrap());
        let shared = list.ids().shared_or_new("u1");
        assert!(std::sync::Arc::ptr_eq(held, &shared));
        let new = list.ids().shared_or_new("u2");
        assert_eq!(&*new, "u2");

        // Interned elsewhere, the shared id is held as it is.
        let mut other = IdIndex::default();
        let index = other.intern_id(shared.clone());
        assert!(std::sync::Arc::ptr_eq(other.name(index), held));
        assert_eq!(other.intern("u1"), index, "interned once");
        assert_eq!(other.intern_id(new), 1);
        assert_eq!(other.len(), 2);
    }

    #[test]
    fn every_id_keeps_its_index_as_the_table_grows_and_after_renumbering() {
        // Enough ids for the table to grow many times over.
        let names: Vec<String> = (0..20_000)
            .map(|n| format!("id-{:05}", 19_999 - n))
            .collect();
        let mut ids = IdIndex::default();
        for (n, name) in names.iter().enumerate() {
            assert_eq!(ids.intern(name), n as u32);
        }
        for (n, name) in names.iter().enumerate() {
            assert_eq!(ids.get(name), Some(n as u32), "{name}");
            assert_eq!(ids.intern(name), n as u32, "interned once: {name}");
            assert_eq!(&**ids.name(n as u32), name.as_str());
        }
        assert_eq!(ids.len(), names.len());
        assert_eq!(ids.get("id-20000"), None);
        assert_eq!(ids.get(""), None);

        // Numbered in name order: the names were given in reverse.
        let new_index = ids.renumber_by_name();
        for (old, name) in names.iter().enumerate() {
            let new = new_index[old];
            assert_eq!(new as usize, names.len() - 1 - old);
            assert_eq!(ids.get(name), Some(new), "{name}");
            assert_eq!(&**ids.name(new), name.as_str());
        }
        // New ids still go at the end, found with the old ones.
        assert_eq!(ids.intern("zz"), names.len() as u32);
        assert_eq!(ids.get("zz"), Some(names.len() as u32));
        assert_eq!(ids.get("id-00000"), Some(0));
    }

    #[test]
    fn renumbering_moves_every_id_to_its_place_in_name_order_whatever_the_cycles() {
        // Names met in an order whose moves to name order form cycles of
        // many lengths (7919 is prime to 20_000), not only swaps.
        let names: Vec<String> = (0..20_000)
            .map(|n| format!("id-{:05}", (n * 7919) % 20_000))
            .collect();
        let mut ids = IdIndex::default();
        for name in &names {
            ids.intern(name);
        }
        let new_index = ids.renumber_by_name();
        for (old, name) in names.iter().enumerate() {
            let new = name[3..].parse::<u32>().unwrap();
            assert_eq!(new_index[old], new, "{name}");
            assert_eq!(&**ids.name(new), name.as_str());
            assert_eq!(ids.get(name), Some(new), "{name}");
        }
        assert_eq!(ids.len(), names.len());
    }

    #[test]
    fn items_move_to_their_new_places_in_place() {
        let cases: [&[u32]; 5] = [&[], &[0], &[1, 0], &[1, 2, 0], &[2, 0, 1, 3, 5, 4]];
        for new_place in cases {
            let mut items: Vec<u32> = (0..new_place.len() as u32).collect();
            move_to_new_places(&mut items, new_place);
            for (old, &new) in new_place.iter().enumerate() {
                assert_eq!(items[new as usize], old as u32, "{new_place:?}");
            }
        }
    }
}
