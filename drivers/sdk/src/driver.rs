//! The [`Driver`] trait and what crosses it. A driver is built by its kind's
//! [`DriverFactory`] from the connection's settings table, checks its
//! credentials on demand, and pulls pages of records into a [`RecordSink`]
//! owned by core, so memory is bounded by the page, not the tenant.

use crate::edges::EdgeList;
use crate::error::DriverError;
use crate::http::HttpKit;
use crate::records::{IdInterner, MembershipEdge, SourceGroup, SourceUser, UserUpdate};
use crate::settings::Settings;
use serde::de::DeserializeOwned;
use std::fmt;

/// Edges per page when [`RecordSink::membership_list`] hands a list on as
/// pages.
pub const EDGE_LIST_PAGE: usize = 10_000;

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
    /// Users of which the source sent only some fields (a delta record that
    /// carries what changed): core applies each to the user as stored.
    async fn user_updates(&mut self, page: Vec<UserUpdate>) -> Result<(), DriverError>;
    async fn groups(&mut self, page: Vec<SourceGroup>) -> Result<(), DriverError>;
    async fn memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError>;
    /// Edges a driver gathered into an [`EdgeList`] before sending (one
    /// that buffers a whole round, like Graph's delta): a sink that keeps
    /// an `EdgeList` takes it as it is, so a tenant's edges are not held
    /// twice while they are handed over. Otherwise they go to
    /// [`RecordSink::memberships`] in pages of [`EDGE_LIST_PAGE`].
    async fn membership_list(&mut self, edges: EdgeList) -> Result<(), DriverError> {
        let mut page = Vec::with_capacity(EDGE_LIST_PAGE.min(edges.len()));
        for edge in edges.refs() {
            page.push(edge.to_edge());
            if page.len() == EDGE_LIST_PAGE {
                self.memberships(std::mem::take(&mut page)).await?;
            }
        }
        if !page.is_empty() {
            self.memberships(page).await?;
        }
        Ok(())
    }
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
    /// The IdP's change notifications, when it has them (whether the
    /// connection configured them is the notifier's
    /// [`resources`](crate::notify::Notifier::resources)).
    fn notifier(&self) -> Option<&dyn crate::notify::Notifier> {
        None
    }
}

/// What a factory gets besides the settings.
#[derive(Clone)]
pub struct DriverContext {
    pub http: HttpKit,
}

/// A kind of driver: its name, its settings, and how a driver is built
/// from them. Implementing it is all a driver does to get its
/// [`DriverFactory`]: every kind's settings are parsed the same way (the key
/// path named on a type error, unknown keys refused when the settings type
/// says `deny_unknown_fields`), then [`Settings::validate`]d, then built.
pub trait DriverKind: Send + Sync {
    /// The stable snake_case kind, as in `kind = "keycloak"`.
    const KIND: &'static str;
    type Settings: Settings;
    /// A driver for settings that passed [`Settings::validate`].
    fn build(
        &self,
        settings: Self::Settings,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError>;
}

impl<K: DriverKind> DriverFactory for K {
    fn kind(&self) -> &'static str {
        K::KIND
    }

    fn build(
        &self,
        settings: &serde_json::Value,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        let settings: K::Settings = parse_settings(settings)?;
        settings.validate()?;
        DriverKind::build(self, settings, context)
    }

    fn validate(&self, settings: &serde_json::Value) -> Result<(), DriverError> {
        parse_settings::<K::Settings>(settings)?.validate()
    }
}

/// Builds drivers of one kind from a connection's settings table (TOML
/// converted to JSON). Unknown keys are errors. Compiled-in drivers get it
/// from [`DriverKind`]; the plugin host implements it itself.
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
/// pull, and what driver tests inspect. A source may send one object more
/// than once in a pull (Graph repeats a big group on every page that lists
/// more of its members, and may repeat any object); [`CollectedRecords::merge_repeats`]
/// folds the repeats in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectedRecords {
    pub users: Vec<SourceUser>,
    /// Users sent in part ([`RecordSink::user_updates`]).
    pub user_updates: Vec<UserUpdate>,
    /// For each of `user_updates`, how many whole users had arrived before
    /// it: which of a whole record and an update of one user came later.
    update_positions: Vec<usize>,
    pub groups: Vec<SourceGroup>,
    /// Held compactly: a big tenant's edges outnumber its users tenfold.
    pub memberships: EdgeList,
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
    /// Shares the ids of the removed edges received (a cache: equal in any
    /// two).
    ids: IdInterner,
}

impl CollectedRecords {
    /// Folds what the source sent more than once, in the order it came:
    /// of two whole records of one user or group the later wins; updates of
    /// one user merge field by field ([`UserUpdate::then`]); an update that
    /// came after a whole record of its user is applied to it, one that
    /// came before is superseded by it. Edges and removals need nothing:
    /// repeated edges are one edge to the reconciler, repeated removals
    /// one removal. Afterwards `user_updates` holds only users the pull
    /// sent in part alone.
    pub fn merge_repeats(&mut self) {
        let last_user = last_positions(self.users.iter().map(|u| u.external_id.as_str()));
        let mut kept_updates: Vec<UserUpdate> = Vec::new();
        let mut update_of: foldhash::HashMap<String, usize> = Default::default();
        let mut onto_users: Vec<(usize, UserUpdate)> = Vec::new();
        let positions = std::mem::take(&mut self.update_positions);
        for (update, arrived_after) in std::mem::take(&mut self.user_updates)
            .into_iter()
            .zip(positions)
        {
            match last_user.get(update.external_id.as_str()) {
                Some(&whole) if whole < arrived_after => onto_users.push((whole, update)),
                Some(_) => {} // the whole record came later
                None => match update_of.get(&update.external_id) {
                    Some(&index) => {
                        let earlier = std::mem::take(&mut kept_updates[index]);
                        kept_updates[index] = earlier.then(update);
                    }
                    None => {
                        update_of.insert(update.external_id.clone(), kept_updates.len());
                        kept_updates.push(update);
                    }
                },
            }
        }
        let keep: Vec<bool> = self
            .users
            .iter()
            .enumerate()
            .map(|(index, user)| last_user.get(user.external_id.as_str()) == Some(&index))
            .collect();
        drop(last_user);
        for (index, update) in onto_users {
            update.apply_to(&mut self.users[index]);
        }
        let mut keep = keep.into_iter();
        self.users.retain(|_| keep.next().unwrap_or(true));
        self.user_updates = kept_updates;

        let last_group = last_positions(self.groups.iter().map(|g| g.external_id.as_str()));
        let keep: Vec<bool> = self
            .groups
            .iter()
            .enumerate()
            .map(|(index, group)| last_group.get(group.external_id.as_str()) == Some(&index))
            .collect();
        drop(last_group);
        let mut keep = keep.into_iter();
        self.groups.retain(|_| keep.next().unwrap_or(true));
    }
}

/// Each id's last position in `ids`.
fn last_positions<'a>(ids: impl Iterator<Item = &'a str>) -> foldhash::HashMap<&'a str, usize> {
    let mut last = foldhash::HashMap::default();
    for (index, id) in ids.enumerate() {
        last.insert(id, index);
    }
    last
}

#[async_trait::async_trait]
impl RecordSink for CollectedRecords {
    async fn users(&mut self, page: Vec<SourceUser>) -> Result<(), DriverError> {
        self.n_pages += 1;
        // A driver that buffered a whole round sends it as one page: taken,
        // not copied.
        if self.users.is_empty() {
            self.users = page;
        } else {
            self.users.extend(page);
        }
        Ok(())
    }

    async fn user_updates(&mut self, page: Vec<UserUpdate>) -> Result<(), DriverError> {
        self.n_pages += 1;
        let position = self.users.len();
        self.update_positions
            .extend(std::iter::repeat_n(position, page.len()));
        self.user_updates.extend(page);
        Ok(())
    }

    async fn groups(&mut self, page: Vec<SourceGroup>) -> Result<(), DriverError> {
        self.n_pages += 1;
        if self.groups.is_empty() {
            self.groups = page;
        } else {
            self.groups.extend(page);
        }
        Ok(())
    }

    async fn memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError> {
        self.n_pages += 1;
        self.memberships.extend(page);
        Ok(())
    }

    async fn membership_list(&mut self, edges: EdgeList) -> Result<(), DriverError> {
        self.n_pages += 1;
        if self.memberships.is_empty() {
            self.memberships = edges;
        } else {
            self.memberships.extend(edges.iter());
        }
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
        collected.removed_memberships(page("u1")).await.unwrap();

        // Three ids, each held once, whatever the number of edges.
        assert_eq!(collected.memberships.ids().len(), 3);
        for edges in [
            collected.memberships.to_vec(),
            collected.removed_memberships.clone(),
        ] {
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
            assert_eq!(edges, [page("u1"), page("u1")].concat());
        }
    }

    /// A sink that keeps only the pages of edges it was sent.
    #[derive(Default)]
    struct EdgePages(Vec<Vec<MembershipEdge>>);

    #[async_trait::async_trait]
    impl RecordSink for EdgePages {
        async fn users(&mut self, _: Vec<SourceUser>) -> Result<(), DriverError> {
            Ok(())
        }
        async fn user_updates(&mut self, _: Vec<UserUpdate>) -> Result<(), DriverError> {
            Ok(())
        }
        async fn groups(&mut self, _: Vec<SourceGroup>) -> Result<(), DriverError> {
            Ok(())
        }
        async fn memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError> {
            self.0.push(page);
            Ok(())
        }
        async fn removed_users(&mut self, _: Vec<String>) -> Result<(), DriverError> {
            Ok(())
        }
        async fn removed_groups(&mut self, _: Vec<String>) -> Result<(), DriverError> {
            Ok(())
        }
        async fn removed_memberships(&mut self, _: Vec<MembershipEdge>) -> Result<(), DriverError> {
            Ok(())
        }
        async fn replaced_members(&mut self, _: Vec<String>) -> Result<(), DriverError> {
            Ok(())
        }
        async fn present_users(&mut self, _: Vec<String>) -> Result<(), DriverError> {
            Ok(())
        }
        async fn present_groups(&mut self, _: Vec<String>) -> Result<(), DriverError> {
            Ok(())
        }
    }

    fn edges(n: usize) -> Vec<MembershipEdge> {
        (0..n)
            .map(|i| MembershipEdge::user(format!("g{}", i % 7), format!("u{i}")))
            .collect()
    }

    #[tokio::test]
    async fn an_edge_list_reaches_a_sink_of_pages_as_full_pages_in_order() {
        let sent = edges(2 * EDGE_LIST_PAGE + 3);
        let mut sink = EdgePages::default();
        sink.membership_list(EdgeList::from(sent.clone()))
            .await
            .unwrap();
        let sizes: Vec<usize> = sink.0.iter().map(Vec::len).collect();
        assert_eq!(sizes, [EDGE_LIST_PAGE, EDGE_LIST_PAGE, 3]);
        assert_eq!(sink.0.concat(), sent);

        let mut empty = EdgePages::default();
        empty.membership_list(EdgeList::default()).await.unwrap();
        assert!(empty.0.is_empty(), "no empty page is sent");
    }

    #[tokio::test]
    async fn collected_records_take_an_edge_list_after_any_pages_already_sent() {
        let mut whole = CollectedRecords::default();
        whole
            .membership_list(EdgeList::from(edges(5)))
            .await
            .unwrap();
        assert_eq!(whole.memberships.to_vec(), edges(5));

        let mut after_pages = CollectedRecords::default();
        after_pages.memberships(edges(2)).await.unwrap();
        after_pages
            .membership_list(EdgeList::from(edges(5)))
            .await
            .unwrap();
        assert_eq!(
            after_pages.memberships.to_vec(),
            [edges(2), edges(5)].concat()
        );
    }

    #[tokio::test]
    async fn repeated_records_of_a_pull_fold_in_the_order_they_came() {
        use crate::records::{Access, Update, UserUpdate};
        let mut collected = CollectedRecords::default();
        let mut ann = SourceUser::new("u1", "ann");
        collected.users(vec![ann.clone()]).await.unwrap();
        // An update after ann's record applies to it.
        collected
            .user_updates(vec![UserUpdate {
                display_name: Update::Set("Ann".into()),
                ..UserUpdate::new("u1")
            }])
            .await
            .unwrap();
        // bob: an update, superseded by his whole record that came later.
        collected
            .user_updates(vec![UserUpdate {
                access: Some(Access::Deprovisioned),
                ..UserUpdate::new("u2")
            }])
            .await
            .unwrap();
        collected
            .users(vec![SourceUser::new("u2", "bob")])
            .await
            .unwrap();
        // cat: two updates only, merged.
        collected
            .user_updates(vec![
                UserUpdate {
                    access: Some(Access::Deprovisioned),
                    ..UserUpdate::new("u3")
                },
                UserUpdate {
                    display_name: Update::Set("Cat".into()),
                    ..UserUpdate::new("u3")
                },
            ])
            .await
            .unwrap();
        // A group repeated with a new name: the later one wins.
        collected
            .groups(vec![SourceGroup::new("g1", "Old")])
            .await
            .unwrap();
        collected
            .groups(vec![SourceGroup::new("g1", "New")])
            .await
            .unwrap();

        collected.merge_repeats();
        ann.display_name = Some("Ann".into());
        assert_eq!(collected.users, [ann, SourceUser::new("u2", "bob")]);
        assert_eq!(
            collected.user_updates,
            [UserUpdate {
                access: Some(Access::Deprovisioned),
                display_name: Update::Set("Cat".into()),
                ..UserUpdate::new("u3")
            }]
        );
        assert_eq!(collected.groups, [SourceGroup::new("g1", "New")]);
    }

    #[tokio::test]
    async fn a_whole_record_repeated_later_in_a_pull_replaces_the_first() {
        let mut collected = CollectedRecords::default();
        let mut disabled = SourceUser::new("u1", "ann");
        disabled.active = false;
        collected
            .users(vec![
                SourceUser::new("u1", "ann"),
                SourceUser::new("u2", "bob"),
            ])
            .await
            .unwrap();
        collected.users(vec![disabled.clone()]).await.unwrap();
        collected.merge_repeats();
        assert_eq!(collected.users, [SourceUser::new("u2", "bob"), disabled]);
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

        let edges = collected.memberships.to_vec();
        let first = &edges[0].group_external_id;
        assert!(!Arc::ptr_eq(first, &g1));
        for edge in &edges {
            assert!(Arc::ptr_eq(first, &edge.group_external_id));
        }
        assert_eq!(edges[3], MembershipEdge::user("g1", "u1"));
    }
}
