//! What a source hands the reconciler: a full [`Snapshot`], or a [`Delta`]
//! with explicit removals. A SCIM request becomes a small delta.

use idpsync_driver::{MemberRef, MembershipEdge, SourceGroup, SourceUser};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
