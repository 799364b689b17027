//! Setting a full pull's unchanged users aside before its apply.
//!
//! A full re-run of a big tenant mostly finds users exactly as stored.
//! Held as records, they would sit beside the stored state the apply reads
//! (a million of each at the same time); compared with their stored content
//! hashes before the apply, the unchanged ones shrink to an external id and
//! a 16-byte hash each.
//!
//! The comparison is read outside the apply's transaction, so the diff
//! checks it again inside: an [`UnchangedUser`] whose stored hash is not
//! the one it was compared with fails the diff
//! ([`super::DiffError::StoredUserMoved`]), and nothing is applied. Only
//! [`set_aside`] makes an `UnchangedUser`, and only from a record whose
//! hash equals the stored one, so a set-aside user always stands for a
//! record the store holds.

use super::hash::ContentHash;
use super::input::Snapshot;
use crate::store::entity::source_user;
use futures_util::TryStreamExt;
use idpsync_driver::EdgeId;
use sea_orm::StreamTrait;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

/// A user of a snapshot whose record equalled the stored one when
/// compared: its external id and the content hash it was compared at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnchangedUser {
    /// The snapshot's own copy of the id when its edges name the user.
    external_id: EdgeId,
    content_hash: ContentHash,
}

impl UnchangedUser {
    pub fn external_id(&self) -> &str {
        &self.external_id
    }

    /// Whether `stored_hash` (a stored row's content hash) is the hash
    /// this user was compared at.
    pub(super) fn is_still(&self, stored_hash: Option<ContentHash>) -> bool {
        stored_hash == Some(self.content_hash)
    }

    /// For the pure diff's tests, which compare against a stored state
    /// they build themselves.
    #[cfg(test)]
    pub(super) fn compared_at(external_id: &str, stored_hash: Option<ContentHash>) -> Self {
        UnchangedUser {
            external_id: external_id.into(),
            content_hash: stored_hash.expect("a content hash"),
        }
    }
}

/// Why users could not be set aside.
#[derive(Debug, thiserror::Error)]
pub enum SetAsideError {
    #[error(transparent)]
    Db(#[from] DbErr),
    /// Reading back the staged users failed (a run reports it as
    /// [`super::ReconcileError::Staging`]).
    #[error(transparent)]
    Staging(std::io::Error),
}

/// Moves the users of `snapshot` whose record hashes as the stored row of
/// `connection` does from `snapshot.users` to `snapshot.unchanged_users`
/// and returns how many moved. The stored hashes are streamed, not held.
///
/// Staged users (`snapshot.staged_users`) stay staged when nothing is
/// stored (a first sync); otherwise each is compared as it is read back,
/// and the changed ones become the snapshot's records: a re-run holds the
/// records of what changed only.
pub(super) async fn set_aside<C>(
    db: &C,
    connection: &str,
    snapshot: &mut Snapshot,
) -> Result<usize, SetAsideError>
where
    C: ConnectionTrait + StreamTrait,
{
    let stored = source_user::Entity::find()
        .select_only()
        .columns([
            source_user::Column::ExternalId,
            source_user::Column::ContentHash,
        ])
        .filter(source_user::Column::ConnectionId.eq(connection))
        .into_tuple::<(String, String)>()
        .stream(db)
        .await?;
    let mut stored = std::pin::pin!(stored);
    // Nothing stored (a first sync): nothing to compare, and no index of a
    // million users built at the pull's peak for nothing. Staged users stay
    // staged: all of them are written.
    let Some(first) = stored.try_next().await? else {
        return Ok(0);
    };
    let before = snapshot.unchanged_users.len();
    if let Some(staged) = snapshot.staged_users.take() {
        let stored_hashes = by_position(first, stored, staged.positions(), |id| {
            staged.position_of(id).map(|position| position as usize)
        })
        .await?;
        for (position, user) in staged.read_positioned() {
            let user = user.map_err(SetAsideError::Staging)?;
            match stored_hashes[position as usize] {
                Some(stored_hash) if ContentHash::of_user(&user) == stored_hash => {
                    snapshot.unchanged_users.push(UnchangedUser {
                        external_id: snapshot.memberships.ids().shared_or_new(&user.external_id),
                        content_hash: stored_hash,
                    });
                }
                _ => snapshot.users.push(user),
            }
        }
        return Ok(snapshot.unchanged_users.len() - before);
    }
    let stored_hashes = {
        let position: foldhash::HashMap<&str, usize> = snapshot
            .users
            .iter()
            .enumerate()
            .map(|(index, user)| (user.external_id.as_str(), index))
            .collect();
        by_position(first, stored, snapshot.users.len(), |id| {
            position.get(id).copied()
        })
        .await?
    };
    let memberships = &snapshot.memberships;
    let set_aside = &mut snapshot.unchanged_users;
    let mut stored_hashes = stored_hashes.into_iter();
    snapshot
        .users
        .retain_mut(|user| match stored_hashes.next().flatten() {
            Some(stored_hash) if ContentHash::of_user(user) == stored_hash => {
                set_aside.push(UnchangedUser {
                    external_id: memberships.ids().shared_or_new(&user.external_id),
                    content_hash: stored_hash,
                });
                false
            }
            _ => true,
        });
    snapshot.users.shrink_to_fit();
    Ok(snapshot.unchanged_users.len() - before)
}

/// The stored hash of each of `n` users by their position (`position_of`
/// an external id), from the stored rows, `first` and the rest of `rows`.
async fn by_position<S>(
    first: (String, String),
    mut rows: S,
    n: usize,
    position_of: impl Fn(&str) -> Option<usize>,
) -> Result<Vec<Option<ContentHash>>, DbErr>
where
    S: futures_util::Stream<Item = Result<(String, String), DbErr>> + Unpin,
{
    let mut hashes = vec![None; n];
    let mut row = Some(first);
    while let Some((external_id, stored_hash)) = row {
        if let Some(position) = position_of(&external_id) {
            hashes[position] = ContentHash::parse(&stored_hash);
        }
        row = rows.try_next().await?;
    }
    Ok(hashes)
}
