//! Setting a full pull's unchanged users aside before its apply.
//!
//! A full re-run of a big tenant mostly finds users exactly as stored.
//! Held as records, they would sit beside the stored state the apply reads
//! (a million of each at the same time); compared with their stored content
//! hashes before the apply, the unchanged ones shrink to an external id and
//! a 16-byte hash each.
//!
//! The comparison is read outside the apply's transaction, so it is
//! checked again inside, as the apply reads the stored rows
//! ([`SetAsideCheck`], after which a set-aside user's row is not kept): an
//! [`UnchangedUser`] whose stored hash is not the one it was compared with
//! fails the diff ([`super::DiffError::StoredUserMoved`]), and nothing is
//! applied. Only
//! [`set_aside`] makes an `UnchangedUser`, and only from a record whose
//! hash equals the stored one, so a set-aside user always stands for a
//! record the store holds.

use super::diff::{DiffError, InputError, StoredUser};
use super::hash::ContentHash;
use super::input::Snapshot;
use super::name_key::NameKey;
use crate::store::entity::source_user;
use futures_util::TryStreamExt;
use idpsync_driver::edges::IdIndex;
use idpsync_driver::{EdgeId, SourceUser};
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
///
/// The snapshot's edges are sorted first
/// ([`idpsync_driver::edges::EdgeList::sort_and_dedup`],
/// which the apply needs anyway): sorted, they take 4 bytes an edge where
/// pushed ones take 8, and the stored hashes are read beside them.
pub(super) async fn set_aside<C>(
    db: &C,
    connection: &str,
    snapshot: &mut Snapshot,
) -> Result<usize, SetAsideError>
where
    C: ConnectionTrait + StreamTrait,
{
    snapshot.memberships.sort_and_dedup();
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
        reserve_for_stored(&mut snapshot.unchanged_users, &stored_hashes);
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
    reserve_for_stored(set_aside, &stored_hashes);
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

/// Makes room in `set_aside` for every user with a stored hash, the most
/// that can be set aside, at once: grown by doubling, a million set-aside
/// users (32 MiB) held the half-size vector beside the full one while it
/// was copied, at the top of a re-run's peak. Room no user takes is never
/// written, so it is not resident.
fn reserve_for_stored(set_aside: &mut Vec<UnchangedUser>, stored_hashes: &[Option<ContentHash>]) {
    set_aside.reserve(stored_hashes.iter().flatten().count());
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

/// Where [`SetAsideCheck`] has no set-aside user.
const NOT_SET_ASIDE: u32 = u32::MAX;

/// A snapshot's set-aside users checked against the stored rows as these
/// are read, so that a set-aside user's row is checked and then not held:
/// an unchanged re-run of a million users holds no row of theirs beside
/// the pulled tenant, only which stored users they are.
///
/// Each set-aside user must be stored still at the hash it was compared
/// at ([`super::DiffError::StoredUserMoved`] otherwise, also when its row
/// is gone), and no record (a changed user of the snapshot) may have its
/// id or the stored folded userName it keeps. `finish` gives the first
/// refusal met, or how many users were set aside.
pub(super) struct SetAsideCheck<'a> {
    unchanged: &'a [UnchangedUser],
    /// Position in `unchanged` by the index of the user's id in the ids
    /// the check was made with (`NOT_SET_ASIDE` where none).
    by_held: Vec<u32>,
    /// Positions of the set-aside users those ids do not hold.
    not_held: foldhash::HashMap<&'a str, u32>,
    met: Vec<bool>,
    n_met: usize,
    record_ids: foldhash::HashSet<&'a str>,
    /// Records by the key of their folded userName, as stored rows keep
    /// theirs.
    record_names: foldhash::HashMap<NameKey, &'a SourceUser>,
    refusal: Option<DiffError>,
}

impl<'a> SetAsideCheck<'a> {
    /// The check of `unchanged` against stored rows, beside the snapshot's
    /// `records`; `held_ids` is the snapshot's edges' id index (sorted
    /// already: indexes change when sorted).
    pub(super) fn new(
        unchanged: &'a [UnchangedUser],
        records: &'a [SourceUser],
        held_ids: &IdIndex,
    ) -> Self {
        let mut by_held = vec![NOT_SET_ASIDE; held_ids.len()];
        let mut not_held = foldhash::HashMap::default();
        let mut met = vec![false; unchanged.len()];
        let mut n_met = 0;
        for (position, user) in unchanged.iter().enumerate() {
            let slot = match held_ids.get(user.external_id()) {
                Some(index) => &mut by_held[index as usize],
                None => not_held.entry(user.external_id()).or_insert(NOT_SET_ASIDE),
            };
            if *slot == NOT_SET_ASIDE {
                *slot = position as u32;
            } else {
                // Listed twice: one row stands for both, checked through
                // the first.
                met[position] = true;
                n_met += 1;
            }
        }
        SetAsideCheck {
            unchanged,
            by_held,
            not_held,
            met,
            n_met,
            record_ids: records.iter().map(|r| r.external_id.as_str()).collect(),
            record_names: records
                .iter()
                .map(|record| (NameKey::of(&record.user_name), record))
                .collect(),
            refusal: None,
        }
    }

    /// Whether the stored user `external_id`, at index `held` of the ids
    /// the check was made with when they hold it, is a set-aside user; if
    /// so its stored `row` is checked, and need not be kept.
    pub(super) fn is_set_aside(
        &mut self,
        external_id: &str,
        held: Option<u32>,
        row: &StoredUser,
    ) -> bool {
        let position = held
            .and_then(|index| self.by_held.get(index as usize).copied())
            .filter(|&position| {
                position != NOT_SET_ASIDE
                    && self.unchanged[position as usize].external_id() == external_id
            })
            .or_else(|| self.not_held.get(external_id).copied());
        let Some(position) = position else {
            return false;
        };
        let position = position as usize;
        if !std::mem::replace(&mut self.met[position], true) {
            self.n_met += 1;
        }
        if self.refusal.is_none() {
            self.refusal = self.refusal_of(&self.unchanged[position], row);
        }
        true
    }

    fn refusal_of(&self, user: &UnchangedUser, row: &StoredUser) -> Option<DiffError> {
        let external_id = user.external_id();
        if !user.is_still(row.content_hash) {
            return Some(DiffError::StoredUserMoved(external_id.into()));
        }
        if self.record_ids.contains(external_id) {
            return Some(InputError::DuplicateUser(external_id.into()).into());
        }
        let record = self.record_names.get(&row.user_name_key)?;
        Some(
            InputError::DuplicateUserName {
                user_name: record.user_name.clone(),
                first: external_id.into(),
                second: record.external_id.clone(),
            }
            .into(),
        )
    }

    /// How many users were set aside, or the first refusal met: a
    /// set-aside user with no stored row left is one.
    pub(super) fn finish(self) -> Result<usize, DiffError> {
        if let Some(refusal) = self.refusal {
            return Err(refusal);
        }
        match self.met.iter().position(|met| !met) {
            Some(gone) => Err(DiffError::StoredUserMoved(
                self.unchanged[gone].external_id().into(),
            )),
            None => Ok(self.n_met),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user_name: &str, hash: u8) -> StoredUser {
        StoredUser {
            content_hash: Some(content_hash(hash)),
            active: true,
            suspended: false,
            user_name_key: NameKey::of(user_name),
        }
    }

    fn unchanged(id: &str, hash: u8) -> UnchangedUser {
        UnchangedUser::compared_at(id, Some(content_hash(hash)))
    }

    /// The `n`th of some distinct content hashes.
    fn content_hash(n: u8) -> ContentHash {
        ContentHash::of_user(&SourceUser::new(format!("h{n}"), "x"))
    }

    /// The snapshot's edges name g1 and u1; u5 has no edge.
    fn held() -> IdIndex {
        let mut ids = IdIndex::default();
        ids.intern("g1");
        ids.intern("u1");
        ids
    }

    #[test]
    fn set_aside_users_are_found_by_their_edges_index_or_by_id_and_the_rest_are_not() {
        let ids = held();
        let set_aside = [unchanged("u1", 1), unchanged("u5", 5)];
        let mut check = SetAsideCheck::new(&set_aside, &[], &ids);
        assert!(check.is_set_aside("u1", ids.get("u1"), &row("ann", 1)));
        assert!(!check.is_set_aside("u2", None, &row("bo", 2)));
        // An index that names another id finds nothing under it.
        assert!(!check.is_set_aside("u3", ids.get("g1"), &row("cy", 3)));
        assert!(check.is_set_aside("u5", None, &row("eve", 5)));
        assert_eq!(check.finish(), Ok(2));
    }

    #[test]
    fn a_set_aside_user_stored_otherwise_or_no_longer_stored_is_refused() {
        let ids = held();
        let set_aside = [unchanged("u1", 1), unchanged("u5", 5)];
        let moved = |id: &str| Err(DiffError::StoredUserMoved(id.into()));

        let mut check = SetAsideCheck::new(&set_aside, &[], &ids);
        assert!(check.is_set_aside("u1", ids.get("u1"), &row("ann", 9)));
        assert!(check.is_set_aside("u5", None, &row("eve", 5)));
        assert_eq!(check.finish(), moved("u1"));

        let mut check = SetAsideCheck::new(&set_aside, &[], &ids);
        assert!(check.is_set_aside("u1", ids.get("u1"), &row("ann", 1)));
        assert_eq!(check.finish(), moved("u5"), "u5's row is gone");
    }

    #[test]
    fn no_record_may_take_a_set_aside_users_id_or_stored_user_name() {
        let ids = held();
        let set_aside = [unchanged("u1", 1)];
        let same_id = [SourceUser::new("u1", "someone")];
        let mut check = SetAsideCheck::new(&set_aside, &same_id, &ids);
        assert!(check.is_set_aside("u1", ids.get("u1"), &row("ann", 1)));
        assert_eq!(
            check.finish(),
            Err(InputError::DuplicateUser("u1".into()).into())
        );

        let same_name = [SourceUser::new("u9", "ANN")];
        let mut check = SetAsideCheck::new(&set_aside, &same_name, &ids);
        assert!(check.is_set_aside("u1", ids.get("u1"), &row("ann", 1)));
        assert_eq!(
            check.finish(),
            Err(InputError::DuplicateUserName {
                user_name: "ANN".into(),
                first: "u1".into(),
                second: "u9".into(),
            }
            .into())
        );
    }

    #[test]
    fn a_user_set_aside_twice_stands_on_its_one_row() {
        let ids = held();
        let set_aside = [unchanged("u1", 1), unchanged("u1", 1)];
        let mut check = SetAsideCheck::new(&set_aside, &[], &ids);
        assert!(check.is_set_aside("u1", ids.get("u1"), &row("ann", 1)));
        assert_eq!(check.finish(), Ok(2));
    }
}
