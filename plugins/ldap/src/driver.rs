//! [`LdapFactory`] (`kind = "ldap"`) and its driver.
//!
//! A full pull reads every user under `user_base_dn`, then every group under
//! `group_base_dn` with its members, and resolves member DNs (or, for
//! `memberUid`, user names) to users and nested groups. The cursor is the
//! newest `modifyTimestamp` seen. A delta pull lists the ids of all users and
//! groups (the "present" lists, cheap: three attributes), which is how
//! deletions are seen, and reads in full only the entries modified since the
//! cursor; a changed group's member list replaces the stored one.

use crate::directory::Directory;
use crate::entry::{self, Entry, Skipped, dn_key, member_dn};
use crate::settings::{Flavor, LdapSettings};
use idpsync_driver::{
    Capabilities, DeclaredTotals, DeltaCursor, Driver, DriverContext, DriverError, DriverFactory,
    EdgeId, MemberRef, MembershipEdge, PullMode, PullOutcome, RecordSink, SourceGroup,
};
use std::collections::HashMap;
use std::sync::Arc;

/// Edges sent per page.
const EDGES_PER_PAGE: usize = 1000;
/// The cursor's format version, so a later format can refuse an old cursor.
const CURSOR_PREFIX: &str = "v1:";

/// Builds LDAP drivers.
pub struct LdapFactory;

impl DriverFactory for LdapFactory {
    fn kind(&self) -> &'static str {
        "ldap"
    }

    fn build(
        &self,
        settings: &serde_json::Value,
        _context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(LdapDriver {
            settings: Arc::new(LdapSettings::parse(settings)?),
        }))
    }

    fn validate(&self, settings: &serde_json::Value) -> Result<(), DriverError> {
        LdapSettings::parse(settings).map(drop)
    }
}

/// One directory connection's driver.
pub struct LdapDriver {
    settings: Arc<LdapSettings>,
}

impl LdapDriver {
    pub fn new(settings: LdapSettings) -> Self {
        LdapDriver {
            settings: Arc::new(settings),
        }
    }
}

#[async_trait::async_trait]
impl Driver for LdapDriver {
    async fn check(&self) -> Result<Capabilities, DriverError> {
        let s = &self.settings;
        let mut directory = Directory::connect(s.clone()).await?;
        for (key, base) in [
            ("user_base_dn", &s.user_base_dn),
            ("group_base_dn", &s.group_base_dn),
        ] {
            if directory
                .read(key, base, vec!["1.1".into()])
                .await?
                .is_none()
            {
                return Err(DriverError::config(
                    key,
                    format!(
                        "{base} does not exist on {} (or the bind DN cannot see it)",
                        s.url
                    ),
                ));
            }
        }
        directory.close().await;
        Ok(Capabilities {
            delta: s.incremental,
            nested_groups: true,
            page_size: s.page_size,
            summary: format!(
                "{} as {}: users under {}, groups under {}",
                s.url,
                s.bind_dn.as_deref().unwrap_or("anonymous"),
                s.user_base_dn,
                s.group_base_dn
            ),
        })
    }

    async fn pull(
        &self,
        mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let since = match &mode {
            PullMode::Delta(DeltaCursor(cursor)) if self.settings.incremental => {
                cursor.strip_prefix(CURSOR_PREFIX).and_then(entry::time_key)
            }
            _ => None,
        };
        let mut pull = Pull {
            settings: &self.settings,
            directory: Directory::connect(self.settings.clone()).await?,
            index: Index::default(),
            newest: None,
            members: Vec::new(),
        };
        match &since {
            None => {
                pull.full_users(sink).await?;
                pull.full_groups(sink).await?;
            }
            Some(since) => {
                pull.changed_users(since, sink).await?;
                pull.changed_groups(since, sink).await?;
            }
        }
        pull.memberships(sink).await?;
        let newest = pull.newest.take();
        pull.directory.close().await;
        Ok(PullOutcome {
            next_cursor: newest
                .filter(|_| self.settings.incremental)
                .map(|time| DeltaCursor(format!("{CURSOR_PREFIX}{time}"))),
            declared: DeclaredTotals::default(),
            complete_snapshot: since.is_none(),
        })
    }
}

/// Who a DN or a user name is, for resolving members.
#[derive(Default)]
struct Index {
    by_dn: HashMap<String, MemberRef>,
    user_by_name: HashMap<String, String>,
}

/// One pull's state.
struct Pull<'a> {
    settings: &'a LdapSettings,
    directory: Directory,
    index: Index,
    /// The newest `modifyTimestamp` seen (digits).
    newest: Option<String>,
    /// Groups whose members to send: (group id, member values).
    members: Vec<(String, Vec<String>)>,
}

impl Pull<'_> {
    fn user_attrs(&self) -> Vec<String> {
        let a = &self.settings.attributes;
        let mut attrs = vec![
            a.id.clone(),
            a.user_name.clone(),
            a.email.clone(),
            a.display_name.clone(),
            a.given_name.clone(),
            a.family_name.clone(),
            "modifyTimestamp".into(),
        ];
        attrs.extend(a.disabled.clone());
        if self.settings.flavor == Flavor::ActiveDirectory {
            attrs.push("userAccountControl".into());
        }
        attrs
    }

    fn group_attrs(&self) -> Vec<String> {
        let a = &self.settings.attributes;
        vec![
            a.id.clone(),
            a.group_name.clone(),
            a.member.clone(),
            "modifyTimestamp".into(),
        ]
    }

    /// The ids-only attributes read for the "present" lists.
    fn roster_attrs(&self) -> Vec<String> {
        let a = &self.settings.attributes;
        vec![a.id.clone(), a.user_name.clone(), "modifyTimestamp".into()]
    }

    fn saw(&mut self, entry: &Entry) {
        if let Some(modified) = entry.modified()
            && self.newest.as_ref().is_none_or(|newest| &modified > newest)
        {
            self.newest = Some(modified);
        }
    }

    fn index_user(&mut self, entry: &Entry, id: &str) {
        self.index
            .by_dn
            .insert(dn_key(&entry.dn), MemberRef::User(id.into()));
        if let Some(name) = entry.first(&self.settings.attributes.user_name) {
            self.index
                .user_by_name
                .insert(name.to_lowercase(), id.to_string());
        }
    }

    /// Reads users with `filter` in full, indexes and sends them.
    async fn read_users(
        &mut self,
        filter: &str,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DriverError> {
        let s = self.settings;
        let mut pages = self
            .directory
            .search("user_base_dn", &s.user_base_dn, filter, self.user_attrs())
            .await?;
        let mut skipped = Vec::new();
        while let Some(page) = pages.next_page().await? {
            let mut users = Vec::with_capacity(page.len());
            for entry in &page {
                self.saw(entry);
                match entry::to_user(entry, &s.attributes, s.flavor) {
                    Ok(user) => {
                        self.index_user(entry, &user.external_id);
                        users.push(user);
                    }
                    Err(reason) => skipped.push((entry.dn.clone(), reason)),
                }
            }
            sink.users(users).await?;
        }
        report_skipped(
            &s.user_base_dn,
            &skipped,
            &s.attributes.id,
            &s.attributes.user_name,
        );
        Ok(())
    }

    async fn full_users(&mut self, sink: &mut dyn RecordSink) -> Result<(), DriverError> {
        let filter = self.settings.user_filter.clone();
        self.read_users(&filter, sink).await
    }

    /// Lists every user's id (sent as present), then reads the changed ones.
    async fn changed_users(
        &mut self,
        since: &str,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DriverError> {
        let s = self.settings;
        let mut pages = self
            .directory
            .search(
                "user_base_dn",
                &s.user_base_dn,
                &s.user_filter,
                self.roster_attrs(),
            )
            .await?;
        // Presence is declared even when no entry comes back: a directory
        // whose people were all deleted lists nobody present, and core
        // must see that (and hold it at the safety gate), not read "no
        // presence list" and keep everyone.
        sink.present_users(Vec::new()).await?;
        while let Some(page) = pages.next_page().await? {
            let mut present = Vec::with_capacity(page.len());
            for entry in &page {
                self.saw(entry);
                if let Some(id) = entry.id(&s.attributes)
                    && entry.first(&s.attributes.user_name).is_some()
                {
                    self.index_user(entry, &id);
                    present.push(id);
                }
            }
            sink.present_users(present).await?;
        }
        let filter = modified_since(&s.user_filter, since);
        self.read_users(&filter, sink).await
    }

    /// Reads groups with `filter` in full, sends them and keeps their members.
    async fn read_groups(
        &mut self,
        filter: &str,
        sink: &mut dyn RecordSink,
    ) -> Result<Vec<String>, DriverError> {
        let s = self.settings;
        let mut pages = self
            .directory
            .search(
                "group_base_dn",
                &s.group_base_dn,
                filter,
                self.group_attrs(),
            )
            .await?;
        let mut ranged: Vec<(usize, String, u64)> = Vec::new();
        let mut ids = Vec::new();
        while let Some(page) = pages.next_page().await? {
            let mut groups: Vec<SourceGroup> = Vec::with_capacity(page.len());
            for entry in &page {
                self.saw(entry);
                let Some(group) = entry::to_group(entry, &s.attributes) else {
                    continue;
                };
                self.index.by_dn.insert(
                    dn_key(&entry.dn),
                    MemberRef::Group(group.external_id.as_str().into()),
                );
                let (values, next) = entry.ranged_values(&s.attributes.member);
                if let Some(start) = next {
                    ranged.push((self.members.len(), entry.dn.clone(), start));
                }
                self.members.push((group.external_id.clone(), values));
                ids.push(group.external_id.clone());
                groups.push(group);
            }
            sink.groups(groups).await?;
        }
        // Active Directory hands out big member lists in ranges.
        for (at, dn, mut start) in ranged {
            loop {
                let attr = format!("{};range={start}-*", s.attributes.member);
                let Some(entry) = self
                    .directory
                    .read("group_base_dn", &dn, vec![attr])
                    .await?
                else {
                    break;
                };
                let (values, next) = entry.ranged_values(&s.attributes.member);
                self.members[at].1.extend(values);
                match next {
                    Some(next) if next > start => start = next,
                    _ => break,
                }
            }
        }
        Ok(ids)
    }

    async fn full_groups(&mut self, sink: &mut dyn RecordSink) -> Result<(), DriverError> {
        let filter = self.settings.group_filter.clone();
        self.read_groups(&filter, sink).await.map(drop)
    }

    /// Lists every group's id (sent as present), then reads the changed ones;
    /// their member lists replace the stored ones.
    async fn changed_groups(
        &mut self,
        since: &str,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DriverError> {
        let s = self.settings;
        let attrs = vec![s.attributes.id.clone(), "modifyTimestamp".into()];
        let mut pages = self
            .directory
            .search("group_base_dn", &s.group_base_dn, &s.group_filter, attrs)
            .await?;
        // As for users: an empty directory is declared, not left unsaid.
        sink.present_groups(Vec::new()).await?;
        while let Some(page) = pages.next_page().await? {
            let mut present = Vec::with_capacity(page.len());
            for entry in &page {
                self.saw(entry);
                if let Some(id) = entry.id(&s.attributes) {
                    self.index
                        .by_dn
                        .insert(dn_key(&entry.dn), MemberRef::Group(id.as_str().into()));
                    present.push(id);
                }
            }
            sink.present_groups(present).await?;
        }
        let filter = modified_since(&s.group_filter, since);
        let changed = self.read_groups(&filter, sink).await?;
        sink.replaced_members(changed).await
    }

    /// Sends the kept groups' members that resolve to a user or group read in
    /// this pull; others (outside the bases, or dangling) are left out.
    async fn memberships(&mut self, sink: &mut dyn RecordSink) -> Result<(), DriverError> {
        let by_name = self.settings.attributes.members_are_names();
        let mut page = Vec::with_capacity(EDGES_PER_PAGE);
        for (group, values) in std::mem::take(&mut self.members) {
            let group: EdgeId = group.into();
            for value in values {
                let member = if by_name {
                    self.index
                        .user_by_name
                        .get(&value.trim().to_lowercase())
                        .map(|id| MemberRef::User(id.as_str().into()))
                } else {
                    self.index.by_dn.get(&dn_key(member_dn(&value))).cloned()
                };
                let Some(member) = member else { continue };
                page.push(MembershipEdge {
                    group_external_id: group.clone(),
                    member,
                });
                if page.len() == EDGES_PER_PAGE {
                    sink.memberships(std::mem::take(&mut page)).await?;
                }
            }
        }
        if !page.is_empty() {
            sink.memberships(page).await?;
        }
        Ok(())
    }
}

/// `filter` narrowed to entries modified at or after `since` (digits).
fn modified_since(filter: &str, since: &str) -> String {
    format!("(&{filter}(modifyTimestamp>={since}Z))")
}

/// Entries under the user base that are not users are left out; the host
/// logs the plugin's stderr, so the admin sees how many and an example.
fn report_skipped(base: &str, skipped: &[(String, Skipped)], id_attr: &str, name_attr: &str) {
    let Some((dn, reason)) = skipped.first() else {
        return;
    };
    let missing = match reason {
        Skipped::NoId => id_attr,
        Skipped::NoUserName => name_attr,
    };
    eprintln!(
        "ldap: left out {} entries under {base} that are not users (e.g. {dn}: no {missing})",
        skipped.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_narrows_the_configured_filter_by_modify_timestamp() {
        assert_eq!(
            modified_since("(objectClass=inetOrgPerson)", "20261124085705"),
            "(&(objectClass=inetOrgPerson)(modifyTimestamp>=20261124085705Z))"
        );
    }
}
