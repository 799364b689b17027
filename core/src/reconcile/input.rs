//! What a source hands the reconciler: a full [`Snapshot`], or a [`Delta`]
//! with explicit removals. A SCIM request becomes a small delta, and a SCIM
//! PATCH an [`Edit`] of the stored row (with its member changes as edges).

use super::staged::StagedUsers;
use super::unchanged::UnchangedUser;
use crate::store::entity::{source_group, source_user};
use idpsync_driver::{EdgeList, MemberRef, MembershipEdge, SourceGroup, SourceUser, UserUpdate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything the source has, as it reports it. Whatever is stored but not in
/// the snapshot is removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(default)]
    pub users: Vec<SourceUser>,
    #[serde(default)]
    pub groups: Vec<SourceGroup>,
    /// Held compactly (8 bytes an edge, 4 once sorted); serialised as a
    /// list of edges.
    #[serde(default)]
    pub memberships: EdgeList,
    /// Users at the source exactly as stored, set aside by
    /// [`super::Reconciler::set_aside_unchanged`] (only it makes them):
    /// neither written nor removed. Never serialised.
    #[serde(skip)]
    pub unchanged_users: Vec<UnchangedUser>,
    /// A first sync's users, staged within a memory budget instead of held
    /// as records (see `staged`). Only for a connection with no stored
    /// users, beside no records and no set-aside users. Never serialised.
    #[serde(skip)]
    pub staged_users: Option<StagedUsers>,
}

/// Only what changed. Anything not mentioned stays as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Users created or changed (the whole record).
    #[serde(default)]
    pub upsert_users: Vec<SourceUser>,
    /// External ids of users removed at the source.
    #[serde(default)]
    pub remove_users: Vec<String>,
    #[serde(default)]
    pub upsert_groups: Vec<SourceGroup>,
    #[serde(default)]
    pub remove_groups: Vec<String>,
    #[serde(default)]
    pub add_memberships: Vec<MembershipEdge>,
    #[serde(default)]
    pub remove_memberships: Vec<MembershipEdge>,
    /// Groups whose whole member list is given (SCIM PUT, a full member page):
    /// members not listed are removed.
    #[serde(default)]
    pub replace_members: BTreeMap<String, Vec<MemberRef>>,
}

/// Input of one reconciliation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceInput {
    Snapshot(Snapshot),
    Delta(Delta),
}

/// A change to a stored user or group, computed from its row inside the
/// transaction that writes it (a SCIM PATCH): nothing is written between the
/// read and the write, so concurrent edits of one resource all stand.
pub struct Edit<Row, Record> {
    pub external_id: String,
    pub edit: Arc<EditFn<Row, Record>>,
}

/// The new record of a user or group from its stored row, or why not.
pub type EditFn<Row, Record> = dyn Fn(&Row) -> Result<Record, EditRejected> + Send + Sync;

/// A user's new record made from its stored row.
pub type UserEdit = Edit<source_user::Model, SourceUser>;

/// A group's new record (name and document; members go as edges) made from
/// its stored row.
pub type GroupEdit = Edit<source_group::Model, SourceGroup>;

/// The edit that applies a source's partial record of a user to the
/// stored user: what it left out stays as stored.
pub fn user_update_edit(update: UserUpdate) -> UserEdit {
    Edit::new(
        update.external_id.clone(),
        move |row: &source_user::Model| {
            let mut user = crate::store::rows::source_user(row);
            update.clone().apply_to(&mut user);
            Ok(user)
        },
    )
}

/// A condition on a stored user's row, checked in the writing transaction
/// before anything is written (a conditional or existence-checked delete):
/// an edit that makes nothing.
pub type UserCheck = Edit<source_user::Model, ()>;

/// A condition on a stored group's row; see [`UserCheck`].
pub type GroupCheck = Edit<source_group::Model, ()>;

/// A stored user or group row, as edits see it.
pub trait StoredRow {
    fn external_id(&self) -> &str;
    /// The resource's version (its ETag), bumped by every write.
    fn version(&self) -> i64;
}

impl StoredRow for source_user::Model {
    fn external_id(&self) -> &str {
        &self.external_id
    }
    fn version(&self) -> i64 {
        self.version
    }
}

impl StoredRow for source_group::Model {
    fn external_id(&self) -> &str {
        &self.external_id
    }
    fn version(&self) -> i64 {
        self.version
    }
}

/// Why an edit refused a row: the reconciliation fails with
/// [`super::ReconcileError::EditRejected`], and the caller, who wrote the
/// edit, turns it back into its own error.
pub type EditRejected = Arc<dyn std::error::Error + Send + Sync>;

impl<Row, Record> Edit<Row, Record> {
    pub fn new(
        external_id: impl Into<String>,
        edit: impl Fn(&Row) -> Result<Record, EditRejected> + Send + Sync + 'static,
    ) -> Self {
        Edit {
            external_id: external_id.into(),
            edit: Arc::new(edit),
        }
    }
}

impl<Row, Record> Clone for Edit<Row, Record> {
    fn clone(&self) -> Self {
        Edit {
            external_id: self.external_id.clone(),
            edit: Arc::clone(&self.edit),
        }
    }
}

impl<Row, Record> std::fmt::Debug for Edit<Row, Record> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edit")
            .field("external_id", &self.external_id)
            .finish_non_exhaustive()
    }
}

/// The edits and checks that go with a delta.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    pub users: Vec<UserEdit>,
    pub groups: Vec<GroupEdit>,
    pub user_checks: Vec<UserCheck>,
    pub group_checks: Vec<GroupCheck>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.groups.is_empty()
            && self.user_checks.is_empty()
            && self.group_checks.is_empty()
    }

    /// Only `edit`, of a user.
    pub fn user(edit: UserEdit) -> Self {
        Edits {
            users: vec![edit],
            ..Edits::default()
        }
    }

    /// Only `edit`, of a group.
    pub fn group(edit: GroupEdit) -> Self {
        Edits {
            groups: vec![edit],
            ..Edits::default()
        }
    }

    /// These edits and `other`'s.
    pub fn extend(&mut self, other: &Edits) {
        self.users.extend(other.users.iter().cloned());
        self.groups.extend(other.groups.iter().cloned());
        self.user_checks.extend(other.user_checks.iter().cloned());
        self.group_checks.extend(other.group_checks.iter().cloned());
    }

    /// The external ids of the users these edit or check.
    pub(crate) fn user_ids(&self) -> impl Iterator<Item = &str> {
        external_ids(&self.users).chain(external_ids(&self.user_checks))
    }

    /// The external ids of the groups these edit or check.
    pub(crate) fn group_ids(&self) -> impl Iterator<Item = &str> {
        external_ids(&self.groups).chain(external_ids(&self.group_checks))
    }
}

/// The external ids `edits` name, in order.
fn external_ids<Row, Record>(edits: &[Edit<Row, Record>]) -> impl Iterator<Item = &str> {
    edits.iter().map(|edit| edit.external_id.as_str())
}
