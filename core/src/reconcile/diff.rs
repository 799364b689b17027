//! The pure part of reconciliation: stored state + input -> [`ChangeSet`].
//! No IO here; `apply` writes a change set and derives its effects.

use super::compared_edges::ComparedEdges;
use super::edge_set::EdgeSet;
use super::hash::ContentHash;
use super::input::{Delta, Snapshot, SourceInput};
use super::name_key::NameKey;
use super::staged::StagedUsers;
use super::stored_users::StoredUsers;
use idpsync_driver::edges::key_parts;
use idpsync_driver::{Access, EdgeList, MemberRef, MembershipEdge, SourceGroup, SourceUser};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

/// What is stored of a user, as far as diffing needs it (its external id
/// is the key it is held under in [`StoredState::users`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// `None` when the stored hash is unreadable: equal to no record.
    pub content_hash: Option<ContentHash>,
    pub active: bool,
    pub suspended: bool,
    /// The key of the folded userName the user holds (see `name_key`).
    pub user_name_key: NameKey,
}

/// What is stored of a group (held under its external id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub content_hash: Option<ContentHash>,
}

/// What a snapshot's diff knows of one id its edges name: whether the
/// snapshot has a user and a group of that id.
struct IdFacts {
    is_user: bool,
    is_group: bool,
}

/// The stored state of one connection, or the part of it an input touches.
#[derive(Debug, Clone, Default)]
pub struct StoredState {
    /// In the edge set's index of user ids (shared with it).
    pub users: StoredUsers,
    pub groups: HashMap<String, StoredGroup>,
    pub edges: StoredEdges,
    /// What reading the rows found of the snapshot's set-aside users
    /// (`unchanged::SetAsideCheck::finish`): how many stand for their
    /// stored rows, or why they cannot (the diff fails with it). `None`
    /// when no check ran.
    pub(super) set_aside_checked: Option<Result<usize, DiffError>>,
}

/// A stored state's direct edges: held as a set, or compared with a
/// snapshot's edges as they were read and not held (`compared_edges`).
/// `stored::load` compares them for a snapshot and holds them for a delta
/// (the edges its groups and members name).
#[derive(Debug, Clone)]
pub enum StoredEdges {
    Held(EdgeSet),
    Compared(ComparedEdges),
}

impl Default for StoredEdges {
    fn default() -> Self {
        StoredEdges::Held(EdgeSet::default())
    }
}

/// What applying an input changes, before effects. Serialisable so a held
/// run can be approved later exactly as computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeSet {
    pub users_created: Vec<SourceUser>,
    /// More created users, still staged (a first sync's, see `staged`):
    /// the apply writes them after `users_created`, reading them back a
    /// chunk at a time. Never serialised, and never in a held change set:
    /// a first sync removes no user, so the safety gate never holds it.
    #[serde(skip)]
    pub users_created_staged: Option<StagedUsers>,
    /// Users whose content changed (deactivations included).
    pub users_updated: Vec<SourceUser>,
    /// External ids of updated users that are now deprovisioned and were
    /// not (from active or suspended): their devices are revoked.
    pub users_deactivated: Vec<String>,
    /// External ids of updated users whose access is now suspended and was
    /// not (from active): out of ACL groups, devices kept.
    #[serde(default)]
    pub users_suspended: Vec<String>,
    /// External ids of updated users that go from inactive to active
    /// (absent from change sets held before it was recorded).
    #[serde(default)]
    pub users_reactivated: Vec<String>,
    pub users_deleted: Vec<String>,
    /// Deleted or updated users whose stored userName another user of this
    /// change set takes: the apply frees those names first (a deleted
    /// account's name given to a new hire, a swap, a chain of renames).
    #[serde(default)]
    pub names_to_free: Vec<String>,
    pub groups_created: Vec<SourceGroup>,
    pub groups_updated: Vec<SourceGroup>,
    pub groups_deleted: Vec<String>,
    /// Sorted (by group, then member): the apply announces each group's
    /// new members as one run.
    pub memberships_added: EdgeList,
    pub memberships_removed: Vec<MembershipEdge>,
    /// Edges that name a user or group the source does not have; not applied.
    pub memberships_skipped: usize,
}

/// Counts of a change set, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCounts {
    pub users_created: usize,
    pub users_updated: usize,
    pub users_deactivated: usize,
    #[serde(default)]
    pub users_suspended: usize,
    pub users_deleted: usize,
    pub groups_created: usize,
    pub groups_updated: usize,
    pub groups_deleted: usize,
    pub memberships_added: usize,
    pub memberships_removed: usize,
    pub memberships_skipped: usize,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.users_created.is_empty()
            && self.users_created_staged.is_none()
            && self.users_updated.is_empty()
            && self.users_deleted.is_empty()
            && self.groups_created.is_empty()
            && self.groups_updated.is_empty()
            && self.groups_deleted.is_empty()
            && self.memberships_added.is_empty()
            && self.memberships_removed.is_empty()
    }

    /// What the safety gate counts: deletions plus deactivations of users.
    pub fn n_user_removals(&self) -> usize {
        self.users_deleted.len() + self.users_deactivated.len()
    }

    pub fn counts(&self) -> ChangeCounts {
        ChangeCounts {
            users_created: self.users_created.len()
                + self
                    .users_created_staged
                    .as_ref()
                    .map_or(0, StagedUsers::len),
            users_updated: self.users_updated.len(),
            users_deactivated: self.users_deactivated.len(),
            users_suspended: self.users_suspended.len(),
            users_deleted: self.users_deleted.len(),
            groups_created: self.groups_created.len(),
            groups_updated: self.groups_updated.len(),
            groups_deleted: self.groups_deleted.len(),
            memberships_added: self.memberships_added.len(),
            memberships_removed: self.memberships_removed.len(),
            memberships_skipped: self.memberships_skipped,
        }
    }
}

/// Errors in an input that make it impossible to apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("user external id \"{0}\" appears more than once")]
    DuplicateUser(String),
    #[error("group external id \"{0}\" appears more than once")]
    DuplicateGroup(String),
    #[error("userName \"{user_name}\" is used by both \"{first}\" and \"{second}\"")]
    DuplicateUserName {
        user_name: String,
        first: String,
        second: String,
    },
    #[error("a user has an empty external id or userName")]
    EmptyUserKey,
    /// A control character in a userName (one is how the apply parks a
    /// name that moves between users, see `apply::PARKED_NAME`).
    #[error("the userName of user \"{0}\" contains a control character")]
    ControlCharacterInUserName(String),
    #[error("user \"{0}\" is both active and suspended")]
    ActiveAndSuspended(String),
    #[error("a group has an empty external id")]
    EmptyGroupKey,
}

/// Why an input has no change set: it is inconsistent in itself, or the
/// store moved under a part of it that stands for stored rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// A user set aside as unchanged is no longer stored as it was when
    /// compared: something wrote it between the pull and its apply. Not
    /// the source's doing; the next pull compares it again.
    #[error(
        "user \"{0}\" changed in the store while the pull was read; nothing was applied, and the next pull reads it again"
    )]
    StoredUserMoved(String),
    /// A first sync's users were staged because the connection had no
    /// stored users, and by its apply it had some: a concurrent writer.
    #[error(
        "users were stored for this connection while its first pull was read; nothing was applied, and the next pull compares them"
    )]
    StagedOverStoredUsers,
}

/// Computes the change set of `input` against `stored`, which it consumes.
/// For a delta, `stored` must hold at least the users, groups and edges
/// the delta names (and, for `replace_members`, every stored edge of those
/// groups).
///
/// # Panics
/// If a delta comes with stored edges compared with a snapshot's (only a
/// snapshot's are compared: `stored::load`).
pub fn diff(stored: StoredState, input: SourceInput) -> Result<ChangeSet, DiffError> {
    match input {
        SourceInput::Snapshot(snapshot) => diff_snapshot(stored, snapshot),
        SourceInput::Delta(delta) => match &stored.edges {
            StoredEdges::Held(edges) => Ok(diff_delta(&stored, edges, delta)?),
            StoredEdges::Compared(_) => {
                panic!("a delta is diffed against stored edges held, not compared")
            }
        },
    }
}

/// The external ids and folded userNames of checked records, to check
/// other users against. Made at their size at once: a first sync's
/// million records are checked at the pull's peak.
struct UserKeys<'a> {
    ids: HashSet<&'a str>,
    /// Folded userName -> the record.
    names: HashMap<Cow<'a, str>, &'a SourceUser>,
}

/// Checks the records of `users`, and that no two of them share an
/// external id or a userName.
fn check_users(users: &[SourceUser]) -> Result<UserKeys<'_>, InputError> {
    let mut keys = UserKeys {
        ids: HashSet::with_capacity(users.len()),
        names: HashMap::with_capacity(users.len()),
    };
    for user in users {
        check_record(user)?;
        if !keys.ids.insert(user.external_id.as_str()) {
            return Err(InputError::DuplicateUser(user.external_id.clone()));
        }
        if let Some(first) = keys.names.insert(folded(&user.user_name), user) {
            return Err(InputError::DuplicateUserName {
                user_name: user.user_name.clone(),
                first: first.external_id.clone(),
                second: user.external_id.clone(),
            });
        }
    }
    Ok(keys)
}

/// Checks one user's record on its own: its keys, its state, its name.
pub(super) fn check_record(user: &SourceUser) -> Result<(), InputError> {
    if user.external_id.is_empty() || user.user_name.is_empty() {
        return Err(InputError::EmptyUserKey);
    }
    if user.active && user.suspended {
        return Err(InputError::ActiveAndSuspended(user.external_id.clone()));
    }
    if user.user_name.chars().any(char::is_control) {
        return Err(InputError::ControlCharacterInUserName(
            user.external_id.clone(),
        ));
    }
    Ok(())
}

/// `user_name` compared case-insensitively, as `str::to_lowercase` folds
/// it; borrowed when folding changes nothing (most names), so a million
/// names are not copied to be compared.
pub(super) fn folded(user_name: &str) -> Cow<'_, str> {
    let unchanged = user_name
        .chars()
        .all(|c| c.to_lowercase().eq(std::iter::once(c)));
    if unchanged {
        Cow::Borrowed(user_name)
    } else {
        Cow::Owned(user_name.to_lowercase())
    }
}

fn check_groups<'a>(groups: impl Iterator<Item = &'a SourceGroup>) -> Result<(), InputError> {
    let mut ids = HashSet::new();
    for group in groups {
        if group.external_id.is_empty() {
            return Err(InputError::EmptyGroupKey);
        }
        if !ids.insert(group.external_id.as_str()) {
            return Err(InputError::DuplicateGroup(group.external_id.clone()));
        }
    }
    Ok(())
}

/// The deleted or updated users whose stored userName a different created
/// or updated user claims. Every user a change set deletes or updates is in
/// `stored` (a delta loads the users it names), so this is exact: a name
/// held by a user the change set does not touch is not freed, and its
/// claimant fails on the unique index as it should. (Stored names are
/// compared by their keys, `name_key`: a collision frees a name the apply
/// writes again anyway, since every holder here is deleted or rewritten.)
fn names_to_free(stored: &StoredState, changes: &ChangeSet) -> Vec<String> {
    if changes.users_deleted.is_empty() && changes.users_updated.is_empty() {
        return Vec::new();
    }
    let claims: HashMap<NameKey, &str> = changes
        .users_created
        .iter()
        .chain(&changes.users_updated)
        .map(|user| (NameKey::of(&user.user_name), user.external_id.as_str()))
        .collect();
    let freeing = changes
        .users_deleted
        .iter()
        .map(String::as_str)
        .chain(changes.users_updated.iter().map(|u| u.external_id.as_str()));
    let mut to_free: Vec<String> = freeing
        .filter(|holder| {
            stored.users.get(holder).is_some_and(|user| {
                claims
                    .get(&user.user_name_key)
                    .is_some_and(|claimant| claimant != holder)
            })
        })
        .map(str::to_string)
        .collect();
    to_free.sort_unstable();
    to_free.dedup();
    to_free
}

/// Sorts user and group changes into created / updated, and the updated
/// users whose access changed into deactivated (now deprovisioned),
/// suspended and reactivated.
///
/// In place: unchanged records are dropped from the input's own vector and
/// the new ones stay in it, so a first sync's million users are not moved
/// into a second vector of the same size; only the updated ones move.
fn sort_upserts(
    stored: &StoredState,
    mut users: Vec<SourceUser>,
    mut groups: Vec<SourceGroup>,
    changes: &mut ChangeSet,
) {
    users.retain(|user| {
        stored
            .users
            .get(user.external_id.as_str())
            .is_none_or(|existing| existing.content_hash != Some(ContentHash::of_user(user)))
    });
    let updated: Vec<SourceUser> = users
        .extract_if(.., |user| {
            stored.users.contains_key(user.external_id.as_str())
        })
        .collect();
    for user in &updated {
        let Some(existing) = stored.users.get(user.external_id.as_str()) else {
            continue;
        };
        let was = match (existing.active, existing.suspended) {
            (true, _) => Access::Active,
            (false, true) => Access::Suspended,
            (false, false) => Access::Deprovisioned,
        };
        match (was, user.access()) {
            (Access::Active | Access::Suspended, Access::Deprovisioned) => {
                changes.users_deactivated.push(user.external_id.clone())
            }
            (Access::Active, Access::Suspended) => {
                changes.users_suspended.push(user.external_id.clone())
            }
            (Access::Suspended | Access::Deprovisioned, Access::Active) => {
                changes.users_reactivated.push(user.external_id.clone())
            }
            _ => {}
        }
    }
    changes.users_created = shrunk(users);
    changes.users_updated = updated;

    groups.retain(|group| {
        stored
            .groups
            .get(&group.external_id)
            .is_none_or(|existing| existing.content_hash != Some(ContentHash::of_group(group)))
    });
    changes.groups_updated = groups
        .extract_if(.., |group| stored.groups.contains_key(&group.external_id))
        .collect();
    changes.groups_created = shrunk(groups);
}

/// `records` without spare capacity when it is mostly spare: an unchanged
/// re-run keeps none of a million users and should not keep their vector.
fn shrunk<T>(mut records: Vec<T>) -> Vec<T> {
    if records.len() < records.capacity() / 2 {
        records.shrink_to_fit();
    }
    records
}

/// Takes the snapshot by value: its records move into the change set, so a
/// tenant of a million edges is not held twice. The stored edges come
/// compared with the snapshot's (see `compared_edges`): each listed edge
/// is new unless marked stored, and the stored edges it does not list are
/// taken away, except those that go with a deleted user or group.
///
/// # Panics
/// If the stored edges were compared with another list than the
/// snapshot's edges.
fn diff_snapshot(mut stored: StoredState, snapshot: Snapshot) -> Result<ChangeSet, DiffError> {
    let Snapshot {
        users,
        groups,
        memberships,
        unchanged_users,
        staged_users,
    } = snapshot;
    // Staged users are all new: they come only when nothing is stored, and
    // alone (the staging checked them as `check_users` checks records).
    if staged_users.is_some()
        && !(stored.users.is_empty() && users.is_empty() && unchanged_users.is_empty())
    {
        return Err(DiffError::StagedOverStoredUsers);
    }
    let staged_ids = |id: &str| staged_users.as_ref().is_some_and(|s| s.contains(id));
    // A set-aside user stands for its stored row: that row must still be
    // the one it was compared with (see `unchanged`).
    // Reading the stored state checked the set-aside users against their
    // rows (see `unchanged::SetAsideCheck`) and kept only their slots.
    let records = check_users(&users)?;
    let checked = stored.set_aside_checked.take().transpose()?.unwrap_or(0);
    if let Some(unchecked) = unchanged_users.get(checked) {
        // Fewer set aside than listed: a stored state not read with them.
        return Err(DiffError::StoredUserMoved(unchecked.external_id().into()));
    }
    drop(unchanged_users);
    check_groups(groups.iter())?;
    let mut changes = ChangeSet::default();

    // First everything that only needs to look at the records (borrows
    // end with this block), and the edges kept in place. Sorted first: the
    // plan is deterministic, and an edge the snapshot lists twice is one
    // edge below.
    let mut memberships = memberships;
    memberships.sort_and_dedup();
    let compared = match std::mem::take(&mut stored.edges) {
        StoredEdges::Held(set) => ComparedEdges::of_set(&memberships, &set),
        StoredEdges::Compared(compared) => compared,
    };
    assert!(
        compared.compared_with(&memberships),
        "the stored edges were compared with the snapshot's edges"
    );
    {
        // The records' ids, checked above; the set-aside users are the
        // stored ones marked so.
        let UserKeys {
            ids: user_ids,
            names,
        } = records;
        drop(names);
        let is_user =
            |id: &str| user_ids.contains(id) || staged_ids(id) || stored.users.is_set_aside(id);
        let group_ids: HashSet<&str> = groups.iter().map(|g| g.external_id.as_str()).collect();
        changes.users_deleted = sorted(
            stored
                .users
                .iter()
                .filter(|(id, _)| !user_ids.contains(&***id))
                .map(|(id, _)| id.to_string()),
        );
        changes.groups_deleted = sorted(
            stored
                .groups
                .keys()
                .filter(|id| !group_ids.contains(id.as_str()))
                .cloned(),
        );
        // A listed edge whose ends the snapshot has is new unless it is
        // stored; one with an end it lacks is skipped (and, stored, it goes
        // with the deleted user or group). Each distinct id is looked up
        // once, not once per edge.
        let facts: Vec<IdFacts> = (0..memberships.ids().len() as u32)
            .map(|index| {
                let id = memberships.ids().name(index).as_ref();
                IdFacts {
                    is_user: is_user(id),
                    is_group: group_ids.contains(id),
                }
            })
            .collect();
        let mut skipped_but_stored: Vec<u64> = Vec::new();
        memberships.retain_positions(|position, key| {
            let (group, member, member_is_group) = key_parts(key);
            let (group, member) = (&facts[group as usize], &facts[member as usize]);
            let member_known = if member_is_group {
                member.is_group
            } else {
                member.is_user
            };
            let stored = compared.is_stored(position);
            if !(group.is_group && member_known) {
                changes.memberships_skipped += 1;
                if stored {
                    skipped_but_stored.push(key);
                }
                return false;
            }
            !stored
        });
        let mut unlisted = compared.into_unlisted();
        unlisted.extend(
            skipped_but_stored
                .into_iter()
                .map(|key| memberships.edge(key)),
        );
        // Edges of deleted users and groups go with them; list only the others.
        let deleted_users: HashSet<&str> =
            changes.users_deleted.iter().map(String::as_str).collect();
        let deleted_groups: HashSet<&str> =
            changes.groups_deleted.iter().map(String::as_str).collect();
        changes.memberships_removed = sorted(
            unlisted
                .into_iter()
                .filter(|edge| !touches(edge, &deleted_users, &deleted_groups)),
        );
    }

    // Then move what changed.
    sort_upserts(&stored, users, groups, &mut changes);
    changes.users_created_staged = staged_users;
    changes.memberships_added = memberships;
    changes.names_to_free = names_to_free(&stored, &changes);
    Ok(changes)
}

/// Takes the delta by value: its records move into the change set.
fn diff_delta(
    stored: &StoredState,
    stored_edges: &EdgeSet,
    delta: Delta,
) -> Result<ChangeSet, InputError> {
    check_users(&delta.upsert_users)?;
    check_groups(delta.upsert_groups.iter())?;
    let Delta {
        upsert_users,
        remove_users,
        upsert_groups,
        remove_groups,
        add_memberships,
        remove_memberships,
        replace_members,
    } = delta;
    let mut changes = ChangeSet::default();
    let removed_users: BTreeSet<&str> = remove_users.iter().map(String::as_str).collect();
    let removed_groups: BTreeSet<&str> = remove_groups.iter().map(String::as_str).collect();
    let upsert_users: Vec<SourceUser> = upsert_users
        .into_iter()
        .filter(|user| !removed_users.contains(user.external_id.as_str()))
        .collect();
    let upsert_groups: Vec<SourceGroup> = upsert_groups
        .into_iter()
        .filter(|group| !removed_groups.contains(group.external_id.as_str()))
        .collect();
    let new_users: HashSet<String> = upsert_users.iter().map(|u| u.external_id.clone()).collect();
    let new_groups: HashSet<String> = upsert_groups
        .iter()
        .map(|g| g.external_id.clone())
        .collect();
    sort_upserts(stored, upsert_users, upsert_groups, &mut changes);
    changes.users_deleted = removed_users
        .iter()
        .filter(|id| stored.users.contains_key(id))
        .map(|id| id.to_string())
        .collect();
    changes.groups_deleted = removed_groups
        .iter()
        .filter(|id| stored.groups.contains_key(**id))
        .map(|id| id.to_string())
        .collect();

    let deleted_users: HashSet<&str> = changes.users_deleted.iter().map(String::as_str).collect();
    let deleted_groups: HashSet<&str> = changes.groups_deleted.iter().map(String::as_str).collect();
    let user_exists = |id: &str| {
        !removed_users.contains(id) && (stored.users.contains_key(id) || new_users.contains(id))
    };
    let group_exists = |id: &str| {
        !removed_groups.contains(id) && (stored.groups.contains_key(id) || new_groups.contains(id))
    };
    let edge_valid = |edge: &MembershipEdge| {
        group_exists(&edge.group_external_id)
            && match &edge.member {
                MemberRef::User(id) => user_exists(id),
                MemberRef::Group(id) => group_exists(id),
            }
    };

    let mut add = BTreeSet::new();
    let mut remove = BTreeSet::new();
    for (group, members) in &replace_members {
        let wanted: BTreeSet<MembershipEdge> = members
            .iter()
            .map(|member| MembershipEdge {
                group_external_id: group.as_str().into(),
                member: member.clone(),
            })
            .collect();
        for edge in stored_edges.of_group(group) {
            if !wanted.contains(&edge) {
                remove.insert(edge);
            }
        }
        add.extend(wanted);
    }
    add.extend(add_memberships);
    remove.extend(remove_memberships);

    for edge in add {
        if remove.contains(&edge) {
            continue;
        }
        if !edge_valid(&edge) {
            changes.memberships_skipped += 1;
        } else if !stored_edges.contains(&edge) {
            changes.memberships_added.push(edge);
        }
    }
    changes.memberships_removed = remove
        .into_iter()
        .filter(|edge| stored_edges.contains(edge))
        .filter(|edge| !touches(edge, &deleted_users, &deleted_groups))
        .collect();
    changes.names_to_free = names_to_free(stored, &changes);
    Ok(changes)
}

fn touches(edge: &MembershipEdge, users: &HashSet<&str>, groups: &HashSet<&str>) -> bool {
    groups.contains(edge.group_external_id.as_ref())
        || match &edge.member {
            MemberRef::User(id) => users.contains(id.as_ref()),
            MemberRef::Group(id) => groups.contains(id.as_ref()),
        }
}

fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.collect();
    items.sort();
    items
}

/// The stored state a snapshot leaves behind, for tests of the pure diff.
#[cfg(test)]
pub fn stored_from_snapshot(snapshot: &Snapshot) -> StoredState {
    StoredState {
        users: snapshot
            .users
            .iter()
            .map(|user| {
                (
                    user.external_id.as_str().into(),
                    StoredUser {
                        content_hash: Some(ContentHash::of_user(user)),
                        active: user.active,
                        suspended: user.suspended,
                        user_name_key: NameKey::of(&user.user_name),
                    },
                )
            })
            .collect(),
        groups: snapshot
            .groups
            .iter()
            .map(|group| {
                (
                    group.external_id.clone(),
                    StoredGroup {
                        content_hash: Some(ContentHash::of_group(group)),
                    },
                )
            })
            .collect(),
        edges: StoredEdges::Held(snapshot.memberships.to_vec().iter().collect()),
        set_aside_checked: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::input::Delta;
    use crate::reconcile::unchanged::{SetAsideCheck, UnchangedUser};

    #[test]
    fn names_are_freed_only_where_they_move_between_users() {
        let stored = stored_from_snapshot(&tenant());
        let delta = |users: Vec<SourceUser>, removed: Vec<&str>| Delta {
            upsert_users: users,
            remove_users: removed.into_iter().map(String::from).collect(),
            ..Delta::default()
        };
        let freed = |input: Delta| {
            diff(stored.clone(), SourceInput::Delta(input))
                .unwrap()
                .names_to_free
        };
        // A deactivation (SCIM's PATCH active=false): the name stays put.
        let mut alice = SourceUser::new("u1", "alice");
        alice.active = false;
        assert!(freed(delta(vec![alice], vec![])).is_empty());
        // A swap frees both; a leaver's name given to a hire frees theirs.
        let swap = vec![SourceUser::new("u1", "BOB"), SourceUser::new("u2", "alice")];
        assert_eq!(freed(delta(swap, vec![])), ["u1", "u2"]);
        let rehire = vec![SourceUser::new("u9", "carol")];
        assert_eq!(freed(delta(rehire, vec!["u3"])), ["u3"]);
        // A name still held by someone the change set leaves alone is not
        // freed: the claim fails on the unique index.
        assert!(freed(delta(vec![SourceUser::new("u9", "carol")], vec![])).is_empty());
    }

    /// The named fixture tenant: alice, bob, carol; Engineering contains
    /// alice and the nested group Platform, which contains bob.
    fn tenant() -> Snapshot {
        let mut carol = SourceUser::new("u3", "carol");
        carol.display_name = Some("Carol".into());
        Snapshot {
            users: vec![
                SourceUser::new("u1", "alice"),
                SourceUser::new("u2", "bob"),
                carol,
            ],
            groups: vec![
                SourceGroup::new("g1", "Engineering"),
                SourceGroup::new("g2", "Platform"),
                SourceGroup::new("g3", "Everyone"),
            ],
            memberships: vec![
                MembershipEdge::user("g1", "u1"),
                MembershipEdge::group("g1", "g2"),
                MembershipEdge::user("g2", "u2"),
                MembershipEdge::user("g3", "u1"),
                MembershipEdge::user("g3", "u2"),
                MembershipEdge::user("g3", "u3"),
            ]
            .into(),
            ..Snapshot::default()
        }
    }

    fn check(stored: &Snapshot, input: SourceInput) -> ChangeSet {
        diff(stored_from_snapshot(stored), input).expect("valid input")
    }

    /// The diff of `snapshot` against `stored` read as `stored::load`
    /// reads it: the set-aside users checked against their rows, which are
    /// then not kept.
    fn diff_read(mut stored: StoredState, mut snapshot: Snapshot) -> Result<ChangeSet, DiffError> {
        snapshot.memberships.sort_and_dedup();
        let ids = snapshot.memberships.ids();
        let mut check = SetAsideCheck::new(&snapshot.unchanged_users, &snapshot.users, ids);
        stored.users.set_aside_by(&mut check, ids);
        stored.set_aside_checked = Some(check.finish());
        diff(stored, SourceInput::Snapshot(snapshot))
    }

    /// `snapshot` with the users `ids` set aside as `stored` holds them.
    fn set_aside(snapshot: &mut Snapshot, stored: &StoredState, ids: &[&str]) {
        snapshot
            .users
            .retain(|user| !ids.contains(&user.external_id.as_str()));
        for id in ids {
            let hash = stored.users[*id].content_hash;
            let unchanged = UnchangedUser::compared_at(id, hash);
            snapshot.unchanged_users.push(unchanged);
        }
    }

    #[test]
    fn users_set_aside_as_unchanged_are_neither_written_nor_removed() {
        let stored = stored_from_snapshot(&tenant());
        let mut snapshot = tenant();
        set_aside(&mut snapshot, &stored, &["u1", "u2"]);
        snapshot.users[0].display_name = Some("Carol Q".into());
        let changes = diff_read(stored.clone(), snapshot).unwrap();
        let only_carol_updated = ChangeCounts {
            users_updated: 1,
            ..ChangeCounts::default()
        };
        // No deletion, and their edges neither skipped nor removed.
        assert_eq!(changes.counts(), only_carol_updated);

        // Beside them, a stored user the snapshot no longer lists is
        // removed, and only that user.
        let mut snapshot = tenant();
        set_aside(&mut snapshot, &stored, &["u1", "u2"]);
        snapshot.users.clear();
        snapshot
            .memberships
            .retain(|edge| edge.member != MemberRef::User("u3".into()));
        let changes = diff_read(stored.clone(), snapshot).unwrap();
        assert_eq!(changes.users_deleted, ["u3"]);
        assert_eq!(changes.memberships_skipped, 0);
        assert!(changes.memberships_removed.is_empty(), "go with u3");
        assert_eq!(
            changes.counts(),
            ChangeCounts {
                users_deleted: 1,
                ..ChangeCounts::default()
            }
        );
    }

    /// `snapshot` with its users staged (budget 0: all on disk).
    fn staged(mut snapshot: Snapshot) -> Snapshot {
        let mut staging = crate::reconcile::staged::UserStaging::new(0);
        for user in std::mem::take(&mut snapshot.users) {
            staging.push(&user).unwrap();
        }
        snapshot.staged_users = Some(staging.finish().unwrap());
        snapshot
    }

    #[test]
    fn a_first_sync_of_staged_users_creates_them_staged_with_their_edges() {
        let from_records = diff(StoredState::default(), SourceInput::Snapshot(tenant())).unwrap();
        let changes = diff(
            StoredState::default(),
            SourceInput::Snapshot(staged(tenant())),
        )
        .unwrap();
        assert_eq!(changes.counts(), from_records.counts());
        assert!(changes.users_created.is_empty());
        let created = changes.users_created_staged.clone().unwrap();
        assert_eq!(created.into_records().unwrap(), tenant().users);
        assert_eq!(changes.memberships_added, from_records.memberships_added);
    }

    #[test]
    fn staged_users_over_stored_users_fail_the_diff() {
        let stored = stored_from_snapshot(&tenant());
        assert_eq!(
            diff(stored, SourceInput::Snapshot(staged(tenant()))),
            Err(DiffError::StagedOverStoredUsers)
        );
    }

    #[test]
    fn a_user_stored_otherwise_than_when_set_aside_fails_the_diff() {
        let mut stored = stored_from_snapshot(&tenant());
        let mut snapshot = tenant();
        set_aside(&mut snapshot, &stored, &["u1"]);
        let moved = Err(DiffError::StoredUserMoved("u1".into()));
        let written = ContentHash::of_user(&SourceUser::new("u1", "alicia"));
        stored.users.get_mut("u1").unwrap().content_hash = Some(written);
        assert_eq!(diff_read(stored.clone(), snapshot.clone()), moved);
        stored.users.remove("u1");
        assert_eq!(diff_read(stored.clone(), snapshot), moved);
    }

    #[test]
    fn a_user_set_aside_twice_is_one_unchanged_user() {
        let stored = stored_from_snapshot(&tenant());
        let mut snapshot = tenant();
        set_aside(&mut snapshot, &stored, &["u1"]);
        let again = snapshot.unchanged_users[0].clone();
        snapshot.unchanged_users.push(again);
        let changes = diff_read(stored, snapshot).unwrap();
        assert!(changes.is_empty(), "{changes:#?}");
    }

    #[test]
    fn a_set_aside_user_keeps_its_id_and_user_name_from_the_records() {
        let stored = stored_from_snapshot(&tenant());
        let mut snapshot = tenant();
        set_aside(&mut snapshot, &stored, &["u1"]);
        let mut name_taken = snapshot.clone();
        name_taken.users.push(SourceUser::new("u9", "ALICE"));
        assert!(matches!(
            diff_read(stored.clone(), name_taken),
            Err(DiffError::Input(InputError::DuplicateUserName { first, second, .. })) if first == "u1" && second == "u9"
        ));
        snapshot.users.push(SourceUser::new("u1", "alice"));
        assert_eq!(
            diff_read(stored.clone(), snapshot),
            Err(InputError::DuplicateUser("u1".into()).into())
        );
    }

    #[test]
    fn the_same_snapshot_twice_is_no_change() {
        let changes = check(&tenant(), SourceInput::Snapshot(tenant()));
        assert!(changes.is_empty(), "{changes:#?}");
    }

    #[test]
    fn an_edge_listed_twice_is_added_once() {
        let mut twice = tenant();
        twice.memberships.push(MembershipEdge::user("g3", "u1"));
        // Ends not stored yet (a first sync)...
        let first = check(&Snapshot::default(), SourceInput::Snapshot(twice.clone()));
        assert_eq!(first.memberships_added.len(), 6);
        // ...and ends already stored, with the edge new.
        let mut stored = tenant();
        stored
            .memberships
            .retain(|edge| edge != &MembershipEdge::user("g3", "u1"));
        let later = check(&stored, SourceInput::Snapshot(twice));
        assert_eq!(
            later.memberships_added.to_vec(),
            [MembershipEdge::user("g3", "u1")]
        );
    }

    #[test]
    fn a_first_snapshot_creates_everything() {
        let changes = check(&Snapshot::default(), SourceInput::Snapshot(tenant()));
        assert_eq!(
            changes.counts(),
            ChangeCounts {
                users_created: 3,
                groups_created: 3,
                memberships_added: 6,
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_user_missing_from_the_snapshot_is_deleted_with_only_their_edges_implied() {
        let mut next = tenant();
        next.users.retain(|user| user.external_id != "u2");
        next.memberships
            .retain(|edge| edge.member != MemberRef::User("u2".into()));
        let changes = check(&tenant(), SourceInput::Snapshot(next));
        assert_eq!(changes.users_deleted, vec!["u2"]);
        assert!(
            changes.memberships_removed.is_empty(),
            "edges go with the user"
        );
        assert_eq!(changes.n_user_removals(), 1);
    }

    #[test]
    fn deactivation_is_an_update_counted_as_a_removal() {
        let mut next = tenant();
        next.users[0].active = false;
        next.users[0].raw_status = Some("SUSPENDED".into());
        let changes = check(&tenant(), SourceInput::Snapshot(next));
        assert_eq!(changes.users_updated.len(), 1);
        assert_eq!(changes.users_deactivated, vec!["u1"]);
        assert_eq!(changes.n_user_removals(), 1);
    }

    #[test]
    fn edges_to_unknown_members_are_skipped_not_applied() {
        let mut next = tenant();
        next.memberships.push(MembershipEdge::user("g1", "ghost"));
        next.memberships.push(MembershipEdge::user("nope", "u1"));
        let changes = check(&tenant(), SourceInput::Snapshot(next));
        assert!(changes.memberships_added.is_empty());
        assert_eq!(changes.memberships_skipped, 2);
    }

    #[test]
    fn duplicate_ids_and_case_insensitive_duplicate_user_names_are_rejected() {
        let mut next = tenant();
        next.users.push(SourceUser::new("u9", "ALICE"));
        assert!(matches!(
            diff(StoredState::default(), SourceInput::Snapshot(next)),
            Err(DiffError::Input(InputError::DuplicateUserName { .. }))
        ));
        let mut next = tenant();
        next.groups.push(SourceGroup::new("g1", "again"));
        assert_eq!(
            diff(StoredState::default(), SourceInput::Snapshot(next)),
            Err(InputError::DuplicateGroup("g1".into()).into())
        );
    }

    #[test]
    fn a_user_name_folds_as_to_lowercase_folds_it() {
        for name in [
            "alice",
            "ALICE",
            "Åsa",
            "ǅenan",
            "ΟΔΥΣΣΕΥΣ",
            "σς",
            "straße",
            "İlker",
        ] {
            assert_eq!(folded(name), name.to_lowercase(), "{name}");
        }
        assert!(matches!(folded("alice@example.com"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_snapshot_keeps_the_order_of_created_and_updated_records() {
        let mut next = tenant();
        next.users.reverse();
        for user in &mut next.users[..2] {
            user.display_name = Some(format!("{} again", user.user_name));
        }
        let (first_new, second_new) = (SourceUser::new("u9", "zed"), SourceUser::new("u0", "amy"));
        next.users.insert(0, first_new.clone());
        next.users.insert(2, second_new.clone());
        // Now: u9 (new), u3 (changed), u0 (new), u2 (changed), u1 (as stored).
        let changes = check(&tenant(), SourceInput::Snapshot(next));
        assert_eq!(changes.users_created, vec![first_new, second_new]);
        let updated: Vec<&str> = changes
            .users_updated
            .iter()
            .map(|user| user.external_id.as_str())
            .collect();
        assert_eq!(updated, ["u3", "u2"]);
    }

    #[test]
    fn a_delta_changes_only_what_it_names() {
        let mut bob = SourceUser::new("u2", "bob");
        bob.display_name = Some("Bob".into());
        let delta = Delta {
            upsert_users: vec![bob, SourceUser::new("u4", "dave")],
            remove_users: vec!["u3".into(), "never-existed".into()],
            add_memberships: vec![
                MembershipEdge::user("g2", "u4"),
                MembershipEdge::user("g1", "u1"),
            ],
            remove_memberships: vec![MembershipEdge::user("g3", "u1")],
            ..Default::default()
        };
        let changes = check(&tenant(), SourceInput::Delta(delta));
        assert_eq!(changes.users_created.len(), 1);
        assert_eq!(changes.users_updated.len(), 1);
        assert_eq!(changes.users_deleted, vec!["u3"]);
        assert_eq!(
            changes.memberships_added.to_vec(),
            vec![MembershipEdge::user("g2", "u4")]
        );
        assert_eq!(
            changes.memberships_removed,
            vec![MembershipEdge::user("g3", "u1")]
        );
    }

    #[test]
    fn replace_members_removes_the_unlisted_and_adds_the_new() {
        let delta = Delta {
            replace_members: [(
                "g3".to_string(),
                vec![MemberRef::User("u1".into()), MemberRef::Group("g2".into())],
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let changes = check(&tenant(), SourceInput::Delta(delta));
        assert_eq!(
            changes.memberships_added.to_vec(),
            vec![MembershipEdge::group("g3", "g2")]
        );
        assert_eq!(
            changes.memberships_removed,
            vec![
                MembershipEdge::user("g3", "u2"),
                MembershipEdge::user("g3", "u3")
            ]
        );
    }
}
