//! A full pull's users, staged within a memory budget.
//!
//! Held as records, a million pulled users were the biggest part of a
//! pull's peak (~450 MB beside the edges and the diff's keys); staged,
//! they are held encoded, in memory up to a budget and in an unlinked
//! temporary file past it. A first sync writes every user, so its apply
//! reads them back once, in the order they came, a chunk at a time; a
//! re-run compares each with its stored hash as it reads them back
//! (`unchanged`) and keeps the records of the changed ones only.
//!
//! [`UserStaging`] takes the records as the pull sends them;
//! [`UserStaging::finish`] reads them back once to check them as the diff
//! checks records (and that no two share a userName), and is the only
//! maker of [`StagedUsers`]: a staged user set is always a checked one.
//! A user the pull sent more than once is staged each time; the last copy
//! is the one kept, as [`idpsync_driver::CollectedRecords::merge_repeats`]
//! keeps it.
//!
//! Ids are not held as strings: each is known by a 128-bit key, SipHash-1-3
//! under two keys drawn at random for the one staging ([`IdHasher`]), in a
//! table sorted by key: 24 bytes a user, where a map of the ids held ~100
//! (a million users: 23 MiB against 98). `finish` checks userNames the same
//! way, sorting keys of the folded names instead of a second map of them.
//! Two different ids (or names) of one staging with one key, odds of about
//! 2^-128 a pair and not to be chosen from outside, would read as one:
//! `finish` compares the records behind every key it meets twice, and
//! refuses the staging ([`StagingError::KeyCollision`]) if they differ;
//! the next pull draws other keys. An id asked about that was never staged
//! answers as staged only on such a collision with a staged one.

use super::diff::{InputError, check_record, folded};
use foldhash::{HashMap, HashMapExt};
use idpsync_driver::SourceUser;
use siphasher::sip128::SipHasher13;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Bytes of staged records held in memory before the rest go to a file,
/// when the configuration does not say (`[sync] staging_memory_mib`):
/// ~70,000 users of a pull. Past that, the file's pages sit in the OS's
/// cache, off the process's heap (at 1M users a first sync peaked 47 MiB
/// lower at 16 than at 64; see BENCHMARKS.md).
pub const DEFAULT_STAGING_MEMORY: usize = 16 << 20;

/// An id's (or a folded userName's) key in one staging; see the module
/// docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct IdKey(u64, u64);

/// Gives ids their [`IdKey`] under keys of its own, drawn at random.
#[derive(Clone, Copy)]
struct IdHasher {
    k0: u64,
    k1: u64,
    /// Tests only: the key is the first byte, so that tests can make ids
    /// and names collide at will.
    #[cfg(test)]
    first_byte_only: bool,
}

impl IdHasher {
    fn random() -> Self {
        IdHasher {
            k0: rand::random(),
            k1: rand::random(),
            #[cfg(test)]
            first_byte_only: false,
        }
    }

    fn key(&self, id: &str) -> IdKey {
        #[cfg(test)]
        if self.first_byte_only {
            return IdKey(id.bytes().next().map_or(0, u64::from), 0);
        }
        let hash = SipHasher13::new_with_keys(self.k0, self.k1).hash(id.as_bytes());
        IdKey(hash.h1, hash.h2)
    }
}

/// Staging a pull's users: encoded records appended in memory until
/// `budget` bytes are held, then to an unlinked temporary file.
pub struct UserStaging {
    budget: usize,
    memory: Vec<u8>,
    spill: Option<BufWriter<File>>,
    spilled: u64,
    hasher: IdHasher,
    /// Each record's id key, by position.
    keys: Vec<IdKey>,
}

impl UserStaging {
    pub fn new(budget: usize) -> Self {
        UserStaging {
            budget,
            memory: Vec::new(),
            spill: None,
            spilled: 0,
            hasher: IdHasher::random(),
            keys: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes held in memory for encoded records, spare room included: at
    /// most the budget (a record that would pass it goes to the file, and
    /// every one after).
    #[cfg(test)]
    fn bytes_in_memory(&self) -> usize {
        self.memory.capacity()
    }

    pub fn push(&mut self, user: &SourceUser) -> io::Result<()> {
        if self.keys.len() >= u32::MAX as usize {
            return Err(io::Error::other("more than 4 billion users staged"));
        }
        let encoded = serde_json::to_vec(user)?;
        let frame_len = u32::try_from(encoded.len())
            .map_err(|_| io::Error::other("a user record over 4 GiB"))?;
        if self.spill.is_none() && self.memory.len() + encoded.len() + 4 > self.budget {
            self.spill = Some(BufWriter::with_capacity(1 << 16, tempfile::tempfile()?));
        }
        match &mut self.spill {
            Some(file) => {
                file.write_all(&frame_len.to_le_bytes())?;
                file.write_all(&encoded)?;
                self.spilled += 4 + encoded.len() as u64;
            }
            None => {
                let frame = 4 + encoded.len();
                if self.memory.capacity() - self.memory.len() < frame {
                    // Room grows as a vector's does, but never past the
                    // budget: doubling alone took a 64 MiB budget to a
                    // 117 MiB buffer.
                    let room = (self.memory.capacity() * 2)
                        .max(self.memory.len() + frame)
                        .min(self.budget);
                    self.memory.reserve_exact(room - self.memory.len());
                }
                self.memory.extend_from_slice(&frame_len.to_le_bytes());
                self.memory.extend_from_slice(&encoded);
            }
        }
        self.keys.push(self.hasher.key(&user.external_id));
        Ok(())
    }

    /// Reads the staged records back (in order, the last copy of each
    /// user only) and checks them: each record as the diff checks one, and
    /// no two sharing a userName.
    pub fn finish(mut self) -> Result<StagedUsers, StagingError> {
        let spool = self.freeze()?;
        let hasher = self.hasher;
        let keys = std::mem::take(&mut self.keys);
        let (ids, repeated, keys_met_again) = StagedIds::of(hasher, keys);
        // The records behind a key met more than once: all one user's
        // copies, or a collision.
        let mut copies_of: HashMap<IdKey, String> = HashMap::new();
        let mut names: Vec<(IdKey, u32)> = Vec::with_capacity(ids.len());
        let mut next_repeat = 0;
        for (position, user) in spool.read().enumerate() {
            let user = user?;
            let position = position as u32;
            let key = hasher.key(&user.external_id);
            if keys_met_again.contains(&key) {
                match copies_of.get(&key) {
                    Some(first) if *first != user.external_id => {
                        return Err(StagingError::KeyCollision);
                    }
                    Some(_) => {}
                    None => {
                        copies_of.insert(key, user.external_id.clone());
                    }
                }
            }
            if repeated.get(next_repeat) == Some(&position) {
                next_repeat += 1;
                continue;
            }
            check_record(&user)?;
            names.push((hasher.key(&folded(&user.user_name)), position));
        }
        drop(copies_of);
        names.sort_unstable();
        for pair in names.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(same_name(&spool, pair[0].1, pair[1].1));
            }
        }
        Ok(StagedUsers {
            spool,
            repeated: repeated.into(),
            ids: Arc::new(ids),
        })
    }
}

impl UserStaging {
    /// Every record staged, repeats included, in the order they came,
    /// unchecked: for a pull whose users cannot be staged after all.
    pub fn into_records(mut self) -> io::Result<Vec<SourceUser>> {
        self.freeze()?.read().collect()
    }

    /// The records staged so far, readable.
    fn freeze(&mut self) -> io::Result<Arc<Spool>> {
        let file = match self.spill.take() {
            Some(writer) => Some(writer.into_inner().map_err(|e| e.into_error())?),
            None => None,
        };
        let mut memory = std::mem::take(&mut self.memory);
        memory.shrink_to_fit();
        Ok(Arc::new(Spool {
            memory,
            file,
            spilled: self.spilled,
            records: self.keys.len() as u32,
        }))
    }
}

/// Why the users at `first` and `second` (kept copies, `first` earlier)
/// share a userName key: the same folded name, or a collision.
fn same_name(spool: &Arc<Spool>, first: u32, second: u32) -> StagingError {
    let (first, second) = match (record_at(spool, first), record_at(spool, second)) {
        (Ok(first), Ok(second)) => (first, second),
        (Err(error), _) | (_, Err(error)) => return StagingError::Io(error),
    };
    if folded(&first.user_name) != folded(&second.user_name) {
        return StagingError::KeyCollision;
    }
    StagingError::Input(InputError::DuplicateUserName {
        user_name: second.user_name,
        first: first.external_id,
        second: second.external_id,
    })
}

/// The record at `position` (for an error: a read of the spool so far).
fn record_at(spool: &Arc<Spool>, position: u32) -> io::Result<SourceUser> {
    match spool.read().nth(position as usize) {
        Some(user) => user,
        None => Err(io::Error::other("a staged position past the end")),
    }
}

/// Why staged users could not be read back, or were refused.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The temporary file (a run reports it as [`super::ReconcileError::Staging`]).
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Input(#[from] InputError),
    /// Two different ids or userNames of one staging drew one key (see the
    /// module docs); the next pull draws other keys.
    #[error(
        "two different user ids or userNames of this pull drew the same 128-bit staging key; nothing was applied, and the next pull draws other keys"
    )]
    KeyCollision,
}

/// The staged users' ids: each one's key and the position of its kept
/// copy, sorted by key.
struct StagedIds {
    hasher: IdHasher,
    by_key: Vec<(IdKey, u32)>,
}

impl StagedIds {
    /// The ids of records with `keys` (by position): the table, the
    /// positions of the copies a later one replaced (in order), and the
    /// keys met at more than one position.
    fn of(hasher: IdHasher, keys: Vec<IdKey>) -> (Self, Vec<u32>, foldhash::HashSet<IdKey>) {
        let mut by_key: Vec<(IdKey, u32)> = keys
            .into_iter()
            .enumerate()
            .map(|(position, key)| (key, position as u32))
            .collect();
        by_key.sort_unstable();
        let mut repeated = Vec::new();
        let mut met_again = foldhash::HashSet::default();
        by_key.dedup_by(|later, earlier| {
            // Sorted by position within a key: keep the last copy.
            if later.0 != earlier.0 {
                return false;
            }
            repeated.push(earlier.1);
            met_again.insert(earlier.0);
            *earlier = *later;
            true
        });
        by_key.shrink_to_fit();
        repeated.sort_unstable();
        (StagedIds { hasher, by_key }, repeated, met_again)
    }

    fn len(&self) -> usize {
        self.by_key.len()
    }

    fn position_of(&self, external_id: &str) -> Option<u32> {
        let key = self.hasher.key(external_id);
        self.by_key
            .binary_search_by(|(at, _)| at.cmp(&key))
            .ok()
            .map(|found| self.by_key[found].1)
    }
}

/// A pull's users, staged and checked ([`UserStaging::finish`] makes
/// them): read back in the order they came, each user once. Cheap to
/// clone; clones read the same staging.
#[derive(Clone)]
pub struct StagedUsers {
    spool: Arc<Spool>,
    /// Positions of records a later copy of their user replaced, in order.
    repeated: Arc<[u32]>,
    ids: Arc<StagedIds>,
}

impl StagedUsers {
    /// Users, each once.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.len() == 0
    }

    pub fn contains(&self, external_id: &str) -> bool {
        self.ids.position_of(external_id).is_some()
    }

    /// The users, in the order the pull sent them (a repeated user where
    /// its last copy came), decoded one at a time.
    pub fn read(&self) -> impl Iterator<Item = io::Result<SourceUser>> + Send + use<> {
        self.read_positioned().map(|(_, user)| user)
    }

    /// [`StagedUsers::read`], each user with its [`StagedUsers::position_of`].
    pub fn read_positioned(
        &self,
    ) -> impl Iterator<Item = (u32, io::Result<SourceUser>)> + Send + use<> {
        let repeated = self.repeated.clone();
        let mut next_repeat = 0;
        self.spool
            .read()
            .enumerate()
            .map(|(position, user)| (position as u32, user))
            .filter(move |(position, _)| {
                if repeated.get(next_repeat) == Some(position) {
                    next_repeat += 1;
                    false
                } else {
                    true
                }
            })
    }

    /// Where the user `external_id` is staged: below [`StagedUsers::positions`].
    pub fn position_of(&self, external_id: &str) -> Option<u32> {
        self.ids.position_of(external_id)
    }

    /// Records staged, repeats included: the bound of every position.
    pub fn positions(&self) -> usize {
        self.spool.records as usize
    }

    /// Every user, decoded (for tests, which compare records).
    #[cfg(test)]
    pub fn into_records(self) -> io::Result<Vec<SourceUser>> {
        self.read().collect()
    }
}

impl std::fmt::Debug for StagedUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedUsers")
            .field("users", &self.len())
            .field("bytes_in_memory", &self.spool.memory.len())
            .field("bytes_spilled", &self.spool.spilled)
            .finish()
    }
}

/// Two staged user sets are equal when they are the same staging.
impl PartialEq for StagedUsers {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.spool, &other.spool)
    }
}

/// The encoded records: `memory`'s first, then the file's. Each is a
/// little-endian `u32` length and the record's JSON. Read with positional
/// reads, so any number of readers share it.
struct Spool {
    memory: Vec<u8>,
    file: Option<File>,
    spilled: u64,
    records: u32,
}

impl Spool {
    fn read(self: &Arc<Self>) -> impl Iterator<Item = io::Result<SourceUser>> + Send + use<> {
        let source = SpoolReader {
            spool: self.clone(),
            offset: 0,
        };
        let mut frames = BufReader::with_capacity(1 << 16, source);
        let mut left = self.records;
        let mut buffer = Vec::new();
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let mut length = [0u8; 4];
            let read = frames
                .read_exact(&mut length)
                .and_then(|()| {
                    buffer.resize(u32::from_le_bytes(length) as usize, 0);
                    frames.read_exact(&mut buffer)
                })
                .and_then(|()| serde_json::from_slice(&buffer).map_err(io::Error::from));
            if read.is_err() {
                left = 0;
            }
            Some(read)
        })
    }
}

/// Reads a spool's bytes from `offset`: its memory, then its file.
struct SpoolReader {
    spool: Arc<Spool>,
    offset: u64,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let in_memory = self.spool.memory.len() as u64;
        let read = if self.offset < in_memory {
            let mut rest = &self.spool.memory[self.offset as usize..];
            rest.read(buf)?
        } else {
            let at = self.offset - in_memory;
            match &self.spool.file {
                Some(file) if at < self.spool.spilled => {
                    let n = buf.len().min((self.spool.spilled - at) as usize);
                    file.read_at(&mut buf[..n], at)?
                }
                _ => 0,
            }
        };
        self.offset += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: &str) -> SourceUser {
        let mut user = SourceUser::new(id, name);
        user.display_name = Some(format!("{name} (display)"));
        user
    }

    fn staged(budget: usize, users: &[SourceUser]) -> Result<StagedUsers, StagingError> {
        let mut staging = UserStaging::new(budget);
        for user in users {
            staging.push(user).unwrap();
        }
        staging.finish()
    }

    fn tenant(n: usize) -> Vec<SourceUser> {
        (0..n)
            .map(|i| user(&format!("u{i}"), &format!("user{i}")))
            .collect()
    }

    #[test]
    fn staged_users_come_back_in_the_order_they_came_within_and_past_the_budget() {
        let users = tenant(1000);
        for budget in [0, 1 << 10, 1 << 30] {
            let staged = staged(budget, &users).unwrap();
            assert_eq!(staged.len(), 1000);
            assert_eq!(staged.clone().into_records().unwrap(), users, "{budget}");
            // Read again, by a clone: the staging is read, not used up.
            assert_eq!(staged.into_records().unwrap(), users, "{budget}");
        }
    }

    #[test]
    fn memory_holds_at_most_the_budget() {
        let users = tenant(1000);
        let mut staging = UserStaging::new(4096);
        let mut largest = 0;
        for user in &users {
            staging.push(user).unwrap();
            largest = largest.max(staging.bytes_in_memory());
        }
        assert!(largest <= 4096, "{largest}");
        let staged = staging.finish().unwrap();
        assert!(staged.spool.spilled > 0, "the rest went to the file");
    }

    #[test]
    fn a_repeated_user_is_kept_once_where_its_last_copy_came() {
        let mut users = tenant(3);
        let mut again = user("u0", "renamed");
        again.active = false;
        users.push(again.clone());
        let staged = staged(64, &users).unwrap();
        assert_eq!(staged.len(), 3);
        assert_eq!(
            staged.into_records().unwrap(),
            vec![users[1].clone(), users[2].clone(), again]
        );
    }

    #[test]
    fn staged_users_are_checked_as_the_diff_checks_records() {
        let mut clash = tenant(3);
        clash.push(user("u9", "USER1"));
        assert!(matches!(
            staged(64, &clash),
            Err(StagingError::Input(InputError::DuplicateUserName { first, second, .. }))
                if first == "u1" && second == "u9"
        ));
        // A name freed by a user's later copy may be taken by another.
        let mut moved = tenant(2);
        moved.push(user("u1", "someone-else"));
        moved.push(user("u9", "user1"));
        assert_eq!(staged(64, &moved).unwrap().len(), 3);
        let mut both = user("u1", "x");
        both.suspended = true;
        assert!(matches!(
            staged(64, &[both]),
            Err(StagingError::Input(InputError::ActiveAndSuspended(id))) if id == "u1"
        ));
        assert!(matches!(
            staged(64, &[user("", "x")]),
            Err(StagingError::Input(InputError::EmptyUserKey))
        ));
    }

    /// Stages `users` under a hasher that keys each id and name by its
    /// first byte.
    fn staged_by_first_byte(users: &[SourceUser]) -> Result<StagedUsers, StagingError> {
        let mut staging = UserStaging::new(64);
        staging.hasher.first_byte_only = true;
        for user in users {
            staging.push(user).unwrap();
        }
        staging.finish()
    }

    #[test]
    fn two_ids_with_one_key_refuse_the_staging_and_one_id_sent_twice_does_not() {
        let twice = [user("a1", "x"), user("b1", "y"), user("a1", "z")];
        let staged = staged_by_first_byte(&twice).unwrap();
        assert_eq!(staged.len(), 2);
        assert_eq!(staged.position_of("a1"), Some(2), "its last copy");

        let collide = [user("a1", "x"), user("a2", "y")];
        assert!(matches!(
            staged_by_first_byte(&collide),
            Err(StagingError::KeyCollision)
        ));
    }

    #[test]
    fn two_user_names_with_one_key_refuse_the_staging_and_one_name_twice_is_a_duplicate() {
        let collide = [user("a1", "xavier"), user("b1", "xena")];
        assert!(matches!(
            staged_by_first_byte(&collide),
            Err(StagingError::KeyCollision)
        ));
        let clash = [user("a1", "xavier"), user("b1", "XAVIER")];
        assert!(matches!(
            staged_by_first_byte(&clash),
            Err(StagingError::Input(InputError::DuplicateUserName { user_name, first, second }))
                if user_name == "XAVIER" && first == "a1" && second == "b1"
        ));
    }

    #[test]
    fn unstaged_records_are_every_copy_in_order_unchecked() {
        let mut users = tenant(3);
        users.push(user("u0", "USER1"));
        let mut staging = UserStaging::new(0);
        for user in &users {
            staging.push(user).unwrap();
        }
        assert_eq!(staging.into_records().unwrap(), users);
    }

    #[test]
    fn staged_ids_are_the_users_ids() {
        let staged = staged(0, &tenant(5)).unwrap();
        assert!(staged.contains("u4"));
        assert!(!staged.contains("u5"));
        assert_eq!(staged.len(), 5);
        assert!(
            ["u0", "u1", "u2", "u3"]
                .iter()
                .all(|id| staged.contains(id))
        );
    }
}
