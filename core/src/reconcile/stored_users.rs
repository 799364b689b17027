//! A connection's stored users by external id, held in the stored edge
//! set's own id index: a full re-run of a million users looks them up by
//! the one index both share, and keeps each user's row in a vector by its
//! index, where a map of its own held every id a second time in a hash
//! table of 2^21 buckets of 56 bytes (~114 MiB).

use super::diff::StoredUser;
use idpsync_driver::EdgeId;
use idpsync_driver::edges::IdIndex;
use std::sync::Arc;

/// Stored users by external id; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct StoredUsers {
    /// Every user's id, and maybe others' (the edge set interns what its
    /// edges name).
    ids: Arc<IdIndex>,
    /// The user at each index of `ids` that is a stored user.
    rows: Vec<Option<StoredUser>>,
    len: usize,
}

impl StoredUsers {
    /// The users `rows` holds by their index in `ids`.
    pub(super) fn indexed(ids: Arc<IdIndex>, rows: Vec<Option<StoredUser>>) -> Self {
        let len = rows.iter().filter(|row| row.is_some()).count();
        StoredUsers { ids, rows, len }
    }

    pub fn get(&self, external_id: &str) -> Option<&StoredUser> {
        let index = self.ids.get(external_id)?;
        self.rows.get(index as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, external_id: &str) -> Option<&mut StoredUser> {
        let index = self.ids.get(external_id)?;
        self.rows.get_mut(index as usize)?.as_mut()
    }

    pub fn contains_key(&self, external_id: &str) -> bool {
        self.get(external_id).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every user with its id, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (&EdgeId, &StoredUser)> + '_ {
        self.rows
            .iter()
            .enumerate()
            .filter_map(|(index, row)| row.as_ref().map(|row| (self.ids.name(index as u32), row)))
    }

    /// Takes the user `external_id` out (tests of the pure diff).
    #[cfg(test)]
    pub fn remove(&mut self, external_id: &str) -> Option<StoredUser> {
        let index = self.ids.get(external_id)?;
        let removed = self.rows.get_mut(index as usize)?.take();
        self.len -= usize::from(removed.is_some());
        removed
    }
}

/// Puts `user` at `index` of `rows` (the users by their index in an id
/// index), making room as needed; a later user at an index replaces an
/// earlier one.
pub(super) fn put_row(rows: &mut Vec<Option<StoredUser>>, index: usize, user: StoredUser) {
    if rows.len() <= index {
        rows.resize(index + 1, None);
    }
    rows[index] = Some(user);
}

/// Users under ids of their own index (tests build stored states so).
impl FromIterator<(EdgeId, StoredUser)> for StoredUsers {
    fn from_iter<I: IntoIterator<Item = (EdgeId, StoredUser)>>(users: I) -> Self {
        let mut ids = IdIndex::default();
        let mut rows: Vec<Option<StoredUser>> = Vec::new();
        for (id, user) in users {
            put_row(&mut rows, ids.intern_id(id) as usize, user);
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
            set_aside: false,
        }
    }

    #[test]
    fn users_are_found_by_id_and_only_users_are() {
        let mut ids = IdIndex::default();
        for id in ["u1", "g1", "u2"] {
            ids.intern(id);
        }
        // "g1" is in the index (a group the edges name) but no user.
        let users = StoredUsers::indexed(
            Arc::new(ids),
            vec![Some(user("ann")), None, Some(user("bo"))],
        );
        assert_eq!(users.len(), 2);
        assert_eq!(users["u2"].user_name_key, NameKey::of_folded("bo"));
        assert!(users.get("g1").is_none());
        assert!(!users.contains_key("u3"));
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
        users.get_mut("u2").unwrap().set_aside = true;
        assert!(users["u2"].set_aside);
        assert!(users.remove("u2").is_some());
        assert!(users.remove("u2").is_none());
        assert_eq!(users.len(), 1);
        assert!(users.get("u2").is_none());
    }
}
