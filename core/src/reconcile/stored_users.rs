//! A connection's stored users by external id, held in the stored edge
//! set's own id index: a full re-run of a million users looks them up by
//! the one index both share, where a map of its own held every id a second
//! time in a hash table of 2^21 buckets of 56 bytes (~114 MiB).
//!
//! Each index of a user has a slot (4 bytes): the position of the user's
//! row, or a mark that the user is set aside. A set-aside user's row was
//! checked as it was read (`unchanged::SetAsideCheck`) and is not kept, so
//! an unchanged re-run holds a slot for each stored user, not a 40-byte row.

use super::diff::StoredUser;
#[cfg(test)]
use super::unchanged::SetAsideCheck;
use idpsync_driver::EdgeId;
use idpsync_driver::edges::IdIndex;
use std::sync::Arc;

/// A slot of no stored user (an index of a group, or of an id not stored).
const NO_USER: u32 = u32::MAX;
/// A slot of a set-aside user.
const SET_ASIDE: u32 = u32::MAX - 1;

/// Stored users as they are read, by their index in an id index.
#[derive(Debug, Clone, Default)]
pub(super) struct UserRows {
    slots: Vec<u32>,
    rows: Vec<StoredUser>,
    n_set_aside: usize,
}

impl UserRows {
    /// Room for `indexes` ids, `rows` of them kept.
    pub(super) fn with_capacity(indexes: usize, rows: usize) -> Self {
        UserRows {
            slots: Vec::with_capacity(indexes),
            rows: Vec::with_capacity(rows),
            n_set_aside: 0,
        }
    }

    fn slot(&mut self, index: usize) -> &mut u32 {
        if self.slots.len() <= index {
            self.slots.resize(index + 1, NO_USER);
        }
        &mut self.slots[index]
    }

    /// Keeps `user` at `index`; a later user at an index replaces an
    /// earlier one.
    pub(super) fn put(&mut self, index: usize, user: StoredUser) {
        let position = self.rows.len() as u32;
        let slot = self.slot(index);
        match *slot {
            NO_USER => {
                *slot = position;
                self.rows.push(user);
            }
            SET_ASIDE => {
                *slot = position;
                self.rows.push(user);
                self.n_set_aside -= 1;
            }
            kept => self.rows[kept as usize] = user,
        }
    }

    /// Marks the user at `index` set aside (its row checked, not kept).
    pub(super) fn put_set_aside(&mut self, index: usize) {
        let slot = self.slot(index);
        if *slot != SET_ASIDE {
            *slot = SET_ASIDE;
            self.n_set_aside += 1;
        }
    }
}

/// Stored users by external id; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct StoredUsers {
    /// Every user's id, and maybe others' (the edge set interns what its
    /// edges name).
    ids: Arc<IdIndex>,
    rows: UserRows,
    /// Users with a row kept (a row replaced in place counts once).
    n_kept: usize,
}

impl StoredUsers {
    /// The users `rows` holds by their index in `ids`.
    pub(super) fn indexed(ids: Arc<IdIndex>, rows: UserRows) -> Self {
        let n_kept = rows.slots.iter().filter(|&&slot| slot < SET_ASIDE).count();
        StoredUsers { ids, rows, n_kept }
    }

    fn slot(&self, external_id: &str) -> Option<u32> {
        let index = self.ids.get(external_id)?;
        self.rows.slots.get(index as usize).copied()
    }

    /// The kept row of `external_id`: `None` for a set-aside user too.
    pub fn get(&self, external_id: &str) -> Option<&StoredUser> {
        let slot = self.slot(external_id).filter(|&slot| slot < SET_ASIDE)?;
        self.rows.rows.get(slot as usize)
    }

    pub fn get_mut(&mut self, external_id: &str) -> Option<&mut StoredUser> {
        let slot = self.slot(external_id).filter(|&slot| slot < SET_ASIDE)?;
        self.rows.rows.get_mut(slot as usize)
    }

    pub fn contains_key(&self, external_id: &str) -> bool {
        self.get(external_id).is_some()
    }

    /// Whether `external_id` is a set-aside user: stored, unchanged, its
    /// row not kept.
    pub fn is_set_aside(&self, external_id: &str) -> bool {
        self.slot(external_id) == Some(SET_ASIDE)
    }

    /// Users set aside.
    pub fn n_set_aside(&self) -> usize {
        self.rows.n_set_aside
    }

    /// Every stored user read: kept and set aside.
    pub fn len(&self) -> usize {
        self.n_kept + self.rows.n_set_aside
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every user with a kept row, with its id, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (&EdgeId, &StoredUser)> + '_ {
        self.rows
            .slots
            .iter()
            .enumerate()
            .filter(|&(_, &slot)| slot < SET_ASIDE)
            .map(|(index, &slot)| (self.ids.name(index as u32), &self.rows.rows[slot as usize]))
    }

    /// Runs `check` over every kept row and sets aside the users it takes,
    /// as reading the stored state does row by row (a stored state built
    /// whole: the pure diff's tests). `held_ids` are the ids `check` was
    /// made with.
    #[cfg(test)]
    pub(super) fn set_aside_by(&mut self, check: &mut SetAsideCheck<'_>, held_ids: &IdIndex) {
        for index in 0..self.rows.slots.len() {
            let slot = self.rows.slots[index];
            if slot >= SET_ASIDE {
                continue;
            }
            let id = self.ids.name(index as u32);
            let row = &self.rows.rows[slot as usize];
            if check.is_set_aside(id, held_ids.get(id), row) {
                self.rows.put_set_aside(index);
                self.n_kept -= 1;
            }
        }
    }

    /// Takes the user `external_id` out (tests of the pure diff).
    #[cfg(test)]
    pub fn remove(&mut self, external_id: &str) -> Option<StoredUser> {
        let index = self.ids.get(external_id)? as usize;
        let slot = *self.rows.slots.get(index)?;
        if slot >= SET_ASIDE {
            return None;
        }
        self.rows.slots[index] = NO_USER;
        self.n_kept -= 1;
        Some(self.rows.rows[slot as usize].clone())
    }
}

/// Users under ids of their own index (tests build stored states so).
impl FromIterator<(EdgeId, StoredUser)> for StoredUsers {
    fn from_iter<I: IntoIterator<Item = (EdgeId, StoredUser)>>(users: I) -> Self {
        let mut ids = IdIndex::default();
        let mut rows = UserRows::default();
        for (id, user) in users {
            rows.put(ids.intern_id(id) as usize, user);
        }
        StoredUsers::indexed(Arc::new(ids), rows)
    }
}

impl std::ops::Index<&str> for StoredUsers {
    type Output = StoredUser;

    fn index(&self, external_id: &str) -> &StoredUser {
        self.get(external_id).expect("a stored user")
    }
}

#[cfg(test)]
mod tests {
    use super::super::name_key::NameKey;
    use super::*;

    fn user(name: &str) -> StoredUser {
        StoredUser {
            content_hash: None,
            active: true,
            suspended: false,
            user_name_key: NameKey::of_folded(name),
        }
    }

    #[test]
    fn users_are_found_by_id_and_only_users_are() {
        let mut ids = IdIndex::default();
        for id in ["u1", "g1", "u2", "u3"] {
            ids.intern(id);
        }
        // "g1" is in the index (a group the edges name) but no user; "u3"
        // is set aside: stored, its row not kept.
        let mut rows = UserRows::default();
        rows.put(0, user("ann"));
        rows.put(2, user("bo"));
        rows.put_set_aside(3);
        let users = StoredUsers::indexed(Arc::new(ids), rows);
        assert_eq!(users.len(), 3);
        assert_eq!(users.n_set_aside(), 1);
        assert_eq!(users["u2"].user_name_key, NameKey::of_folded("bo"));
        assert!(users.get("g1").is_none());
        assert!(!users.is_set_aside("g1"));
        assert!(users.get("u3").is_none() && users.is_set_aside("u3"));
        assert!(!users.contains_key("u4"));
        let listed: Vec<&str> = users.iter().map(|(id, _)| &**id).collect();
        assert_eq!(listed, ["u1", "u2"]);
    }

    #[test]
    fn collected_users_keep_the_last_row_of_an_id_and_can_be_taken_out() {
        let mut users: StoredUsers = [
            (EdgeId::from("u1"), user("ann")),
            (EdgeId::from("u2"), user("bo")),
            (EdgeId::from("u1"), user("anna")),
        ]
        .into_iter()
        .collect();
        assert_eq!(users.len(), 2);
        assert_eq!(users["u1"].user_name_key, NameKey::of_folded("anna"));
        assert!(users.remove("u2").is_some());
        assert!(users.remove("u2").is_none());
        assert_eq!(users.len(), 1);
        assert!(users.get("u2").is_none());
    }
}
