//! Where a pull's records go while it runs: a full pull's whole users to
//! a [`UserStaging`] (encoded, within the `[sync]` memory budget),
//! everything else to [`CollectedRecords`].
//!
//! Staging needs every user of the pull to be whole: a pull that sends a
//! user in part, or turns out not to be a complete snapshot, has its
//! staged users read back into the collected records as if they had been
//! collected (nothing changes for it but the time spent staging).

use crate::reconcile::staged::{StagedUsers, StagingError, UserStaging};
use idpsync_driver::{
    CollectedRecords, DriverError, EdgeList, MembershipEdge, RecordSink, SourceGroup, SourceUser,
    UserUpdate,
};
use std::io;

pub(super) struct StagingSink<'a> {
    records: &'a mut CollectedRecords,
    users: Option<UserStaging>,
    /// Why staging stopped the pull (the driver saw it as cancelled).
    failed: Option<io::Error>,
}

impl<'a> StagingSink<'a> {
    /// Stages whole users within `budget` bytes when `stage` is true;
    /// otherwise collects everything.
    pub(super) fn new(records: &'a mut CollectedRecords, stage: bool, budget: usize) -> Self {
        StagingSink {
            records,
            users: stage.then(|| UserStaging::new(budget)),
            failed: None,
        }
    }

    /// The staged users once the pull ended: checked, when the pull was a
    /// complete snapshot; otherwise read back into the collected records.
    /// An error staging them (the temporary file) comes first.
    pub(super) fn finish(
        self,
        complete_snapshot: bool,
    ) -> Result<Option<StagedUsers>, StagingError> {
        if let Some(failed) = self.failed {
            return Err(StagingError::Io(failed));
        }
        match self.users {
            Some(staging) if complete_snapshot && !staging.is_empty() => staging.finish().map(Some),
            Some(staging) => {
                self.records.users.extend(staging.into_records()?);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Why staging stopped the pull, if it did (for a pull that failed:
    /// its staged users are let go unread).
    pub(super) fn into_failure(self) -> Option<io::Error> {
        self.failed
    }

    /// Stops staging: what was staged goes to the collected records, in
    /// the order it came (they hold no whole user yet).
    fn unstage(&mut self) -> Result<(), DriverError> {
        if let Some(staging) = self.users.take() {
            match staging.into_records() {
                Ok(users) => self.records.users.extend(users),
                Err(error) => return Err(self.fail(error)),
            }
        }
        Ok(())
    }

    fn fail(&mut self, error: io::Error) -> DriverError {
        self.failed = Some(error);
        DriverError::Cancelled
    }
}

#[async_trait::async_trait]
impl RecordSink for StagingSink<'_> {
    async fn users(&mut self, page: Vec<SourceUser>) -> Result<(), DriverError> {
        let Some(staging) = &mut self.users else {
            return self.records.users(page).await;
        };
        for user in &page {
            if let Err(error) = staging.push(user) {
                return Err(self.fail(error));
            }
        }
        Ok(())
    }

    async fn user_updates(&mut self, page: Vec<UserUpdate>) -> Result<(), DriverError> {
        if !page.is_empty() {
            // A user in part: merged with whole ones as collected records are.
            self.unstage()?;
        }
        self.records.user_updates(page).await
    }

    async fn groups(&mut self, page: Vec<SourceGroup>) -> Result<(), DriverError> {
        self.records.groups(page).await
    }

    async fn memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError> {
        self.records.memberships(page).await
    }

    async fn membership_list(&mut self, edges: EdgeList) -> Result<(), DriverError> {
        self.records.membership_list(edges).await
    }

    async fn removed_users(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.records.removed_users(external_ids).await
    }

    async fn removed_groups(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.records.removed_groups(external_ids).await
    }

    async fn removed_memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError> {
        self.records.removed_memberships(page).await
    }

    async fn replaced_members(
        &mut self,
        group_external_ids: Vec<String>,
    ) -> Result<(), DriverError> {
        self.records.replaced_members(group_external_ids).await
    }

    async fn present_users(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.records.present_users(external_ids).await
    }

    async fn present_groups(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.records.present_groups(external_ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(ids: &[&str]) -> Vec<SourceUser> {
        ids.iter()
            .map(|id| SourceUser::new(*id, format!("name-{id}")))
            .collect()
    }

    #[tokio::test]
    async fn a_full_pull_stages_whole_users_and_collects_the_rest() {
        let mut records = CollectedRecords::default();
        let mut sink = StagingSink::new(&mut records, true, 0);
        sink.users(users(&["u1", "u2"])).await.unwrap();
        sink.groups(vec![SourceGroup::new("g1", "Group")])
            .await
            .unwrap();
        let staged = sink.finish(true).unwrap().expect("staged users");
        assert_eq!(staged.len(), 2);
        assert!(staged.contains("u1") && staged.contains("u2"));
        assert!(records.users.is_empty(), "no record held");
        assert_eq!(records.groups.len(), 1);
    }

    #[tokio::test]
    async fn a_user_sent_in_part_reads_the_staged_users_back_in_order() {
        let mut records = CollectedRecords::default();
        let mut sink = StagingSink::new(&mut records, true, 0);
        sink.users(users(&["u1", "u2"])).await.unwrap();
        sink.user_updates(vec![UserUpdate::new("u1")])
            .await
            .unwrap();
        sink.users(users(&["u3"])).await.unwrap();
        assert_eq!(sink.finish(true).unwrap(), None);
        assert_eq!(records.users, users(&["u1", "u2", "u3"]));
        assert_eq!(records.user_updates.len(), 1);
    }

    #[tokio::test]
    async fn users_of_a_pull_that_is_not_a_complete_snapshot_are_collected() {
        let mut records = CollectedRecords::default();
        let mut sink = StagingSink::new(&mut records, true, 0);
        sink.users(users(&["u1"])).await.unwrap();
        assert_eq!(sink.finish(false).unwrap(), None);
        assert_eq!(records.users, users(&["u1"]));
    }

    #[tokio::test]
    async fn a_delta_stages_nothing() {
        let mut records = CollectedRecords::default();
        let mut sink = StagingSink::new(&mut records, false, 0);
        sink.users(users(&["u1"])).await.unwrap();
        assert_eq!(sink.finish(true).unwrap(), None);
        assert_eq!(records.users, users(&["u1"]));
    }
}
