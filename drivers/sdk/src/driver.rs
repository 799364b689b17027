//! The [`Driver`] trait and what crosses it. A driver is built by its kind's
//! [`DriverFactory`] from the connection's settings table, checks its
//! credentials on demand, and pulls pages of records into a [`RecordSink`]
//! owned by core, so memory is bounded by the page, not the tenant.

use crate::error::DriverError;
use crate::http::HttpKit;
use crate::records::{IdInterner, MembershipEdge, SourceGroup, SourceUser};
use serde::de::DeserializeOwned;
use std::fmt;

/// An IdP's opaque delta cursor (Graph deltaLink, a timestamp, ...).
#[derive(Clone, PartialEq, Eq)]
pub struct DeltaCursor(pub String);

impl fmt::Debug for DeltaCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cursors can embed tokens (Graph's $deltatoken): show only a prefix.
        let shown: String = self.0.chars().take(12).collect();
        write!(f, "DeltaCursor({shown}...)")
    }
}

/// What to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullMode {
    /// Everything the IdP has.
    Full,
    /// Only what changed since the cursor.
    Delta(DeltaCursor),
}

/// What a driver can do, for "Test connection" and for core's choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub delta: bool,
    pub nested_groups: bool,
    pub page_size: u32,
    /// A line for the admin, e.g. "realm acme: 5,000 users".
    pub summary: String,
}

/// Totals the IdP declared, when it does; core applies nothing if the
/// records received disagree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeclaredTotals {
    pub users: Option<u64>,
    pub groups: Option<u64>,
}

/// How a pull ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    /// The cursor for the next delta pull, where the IdP has one.
    pub next_cursor: Option<DeltaCursor>,
    pub declared: DeclaredTotals,
    /// `true` when the records are the whole tenant (a full pull, or a delta
    /// that fell back to one); `false` for a delta.
    pub complete_snapshot: bool,
}

/// Where a driver puts what it reads, page by page. Removals are only
/// meaningful in a delta pull.
#[async_trait::async_trait]
pub trait RecordSink: Send {
    async fn users(&mut self, page: Vec<SourceUser>) -> Result<(), DriverError>;
    async fn groups(&mut self, page: Vec<SourceGroup>) -> Result<(), DriverError>;
    async fn memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError>;
    async fn removed_users(&mut self, external_ids: Vec<String>) -> Result<(), DriverError>;
    async fn removed_groups(&mut self, external_ids: Vec<String>) -> Result<(), DriverError>;
    async fn removed_memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError>;
    /// The listed groups' members are exactly those sent for them in this
    /// pull (a delta that re-reads whole groups).
    async fn replaced_members(
        &mut self,
        group_external_ids: Vec<String>,
    ) -> Result<(), DriverError>;
    /// In a delta: a page of the ids of every user that exists at the source.
    /// Once a pull has sent any, stored users missing from all its pages are
    /// removed (a directory's "present" phase, for sources that can list ids
    /// cheaply but do not report deletions, like LDAP).
    async fn present_users(&mut self, external_ids: Vec<String>) -> Result<(), DriverError>;
    /// The same for groups.
    async fn present_groups(&mut self, external_ids: Vec<String>) -> Result<(), DriverError>;
}

/// A source of people.
#[async_trait::async_trait]
pub trait Driver: Send + Sync {
    /// Tests credentials and reachability, like an admin's "Test connection".
    async fn check(&self) -> Result<Capabilities, DriverError>;
    /// Streams records into `sink`.
    async fn pull(
        &self,
        mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError>;
}

/// What a factory gets besides the settings.
#[derive(Clone)]
pub struct DriverContext {
    pub http: HttpKit,
}

/// Builds drivers of one kind from a connection's settings table (TOML
/// converted to JSON). Unknown keys are errors.
pub trait DriverFactory: Send + Sync {
    /// The stable snake_case kind, as in `kind = "keycloak"`.
    fn kind(&self) -> &'static str;
    fn build(
        &self,
        settings: &serde_json::Value,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError>;
    /// Validates settings without building (for `check-config`).
    fn validate(&self, settings: &serde_json::Value) -> Result<(), DriverError>;
}

/// Deserializes a driver's settings; an error names the key path.
pub fn parse_settings<T: DeserializeOwned>(settings: &serde_json::Value) -> Result<T, DriverError> {
    serde_path_to_error::deserialize(settings).map_err(|error| {
        let key = error.path().to_string();
        let message = error.into_inner().to_string();
        DriverError::InvalidConfig {
            key: if key == "." { String::new() } else { key },
            message,
        }
    })
}

/// A sink that keeps everything in memory: core's staging area for one
/// pull, and what driver tests inspect.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectedRecords {
    pub users: Vec<SourceUser>,
    pub groups: Vec<SourceGroup>,
    pub memberships: Vec<MembershipEdge>,
    pub removed_users: Vec<String>,
    pub removed_groups: Vec<String>,
    pub removed_memberships: Vec<MembershipEdge>,
    pub replaced_members: Vec<String>,
    /// Every user id at the source, when the driver listed them (`None` if not).
    pub present_users: Option<Vec<String>>,
    /// Every group id at the source, when the driver listed them.
    pub present_groups: Option<Vec<String>>,
    /// Pages received, for tests of paging.
    pub n_pages: usize,
    /// Shares the ids of the edges received (a cache: equal in any two).
    ids: IdInterner,
}

#[async_trait::async_trait]
impl RecordSink for CollectedRecords {
    async fn users(&mut self, page: Vec<SourceUser>) -> Result<(), DriverError> {
        self.n_pages += 1;
        self.users.extend(page);
        Ok(())
    }

    async fn groups(&mut self, page: Vec<SourceGroup>) -> Result<(), DriverError> {
        self.n_pages += 1;
        self.groups.extend(page);
        Ok(())
    }

    async fn memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError> {
        self.n_pages += 1;
        let ids = &mut self.ids;
        self.memberships
            .extend(page.into_iter().map(|edge| ids.edge(edge)));
        Ok(())
    }

    async fn removed_users(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.removed_users.extend(external_ids);
        Ok(())
    }

    async fn removed_groups(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.removed_groups.extend(external_ids);
        Ok(())
    }

    async fn removed_memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError> {
        let ids = &mut self.ids;
        self.removed_memberships
            .extend(page.into_iter().map(|edge| ids.edge(edge)));
        Ok(())
    }

    async fn replaced_members(
        &mut self,
        group_external_ids: Vec<String>,
    ) -> Result<(), DriverError> {
        self.replaced_members.extend(group_external_ids);
        Ok(())
    }

    async fn present_users(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.present_users
            .get_or_insert_default()
            .extend(external_ids);
        Ok(())
    }

    async fn present_groups(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.present_groups
            .get_or_insert_default()
            .extend(external_ids);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{EdgeId, MemberRef};
    use std::sync::Arc;

    #[tokio::test]
    async fn collected_edges_share_one_copy_of_each_id_across_pages() {
        let mut collected = CollectedRecords::default();
        let page = |user: &str| {
            vec![
                MembershipEdge::user("g1", user.to_string()),
                MembershipEdge::group("g2", "g1".to_string()),
            ]
        };
        collected.memberships(page("u1")).await.unwrap();
        collected.memberships(page("u1")).await.unwrap();
        collected.removed_memberships(page("u1")).await.unwrap();

        let edges: Vec<&MembershipEdge> = collected
            .memberships
            .iter()
            .chain(&collected.removed_memberships)
            .collect();
        let first_g1 = &edges[0].group_external_id;
        for edge in &edges {
            match &edge.member {
                MemberRef::User(user) => {
                    assert!(Arc::ptr_eq(first_g1, &edge.group_external_id));
                    let MemberRef::User(first_u1) = &edges[0].member else {
                        unreachable!()
                    };
                    assert!(Arc::ptr_eq(first_u1, user));
                }
                // The nested group's id is the same text as the parent's
                // above: one copy for both.
                MemberRef::Group(nested) => assert!(Arc::ptr_eq(first_g1, nested)),
            }
        }
        // Interning changes no record.
        assert_eq!(collected.memberships, [page("u1"), page("u1")].concat());
    }

    #[tokio::test]
    async fn a_group_id_a_page_shares_among_its_edges_is_the_copy_seen_first() {
        let mut collected = CollectedRecords::default();
        collected
            .memberships(vec![MembershipEdge::user("g1", "u1")])
            .await
            .unwrap();
        // The next page's edges share one id of their own, equal in text.
        let g1: EdgeId = "g1".into();
        let page = ["u2", "u3", "u1"]
            .map(|user| MembershipEdge::user(g1.clone(), user))
            .to_vec();
        collected.memberships(page).await.unwrap();

        let first = &collected.memberships[0].group_external_id;
        assert!(!Arc::ptr_eq(first, &g1));
        for edge in &collected.memberships {
            assert!(Arc::ptr_eq(first, &edge.group_external_id));
        }
        assert_eq!(collected.memberships[3], MembershipEdge::user("g1", "u1"));
    }
}
