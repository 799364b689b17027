//! What a source hands the reconciler: a full [`Snapshot`], or a [`Delta`]
//! with explicit removals. A SCIM request becomes a small delta, and a SCIM
//! PATCH of a user a [`UserEdit`].

use crate::store::entity::source_user;
use idpsync_driver::{MemberRef, MembershipEdge, SourceGroup, SourceUser};
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
    #[serde(default)]
    pub memberships: Vec<MembershipEdge>,
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

/// A change to a stored user, computed from its row inside the transaction
/// that writes it (a SCIM PATCH): nothing is written between the read and
/// the write, so concurrent edits of one user all stand.
#[derive(Clone)]
pub struct UserEdit {
    pub external_id: String,
    pub edit: Arc<EditFn>,
}

/// The new record of a user from its stored row, or why not.
pub type EditFn = dyn Fn(&source_user::Model) -> Result<SourceUser, EditRejected> + Send + Sync;

/// Why an edit refused a user's row: the reconciliation fails with
/// [`super::ReconcileError::EditRejected`], and the caller, who wrote the
/// edit, turns it back into its own error.
pub type EditRejected = Arc<dyn std::error::Error + Send + Sync>;

impl std::fmt::Debug for UserEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEdit")
            .field("external_id", &self.external_id)
            .finish_non_exhaustive()
    }
}
