//! A full pull's users, staged within a memory budget.
//!
//! Held as records, a million pulled users were the biggest part of a
//! pull's peak (~450 MB beside the edges and the diff's keys); staged,
//! they are held encoded, in memory up to a budget and in an unlinked
//! temporary file past it, and only their external ids are held whole. A
//! first sync writes every user, so its apply reads them back once, in the
//! order they came, a chunk at a time; a re-run compares each with its
//! stored hash as it reads them back (`unchanged`) and keeps the records
//! of the changed ones only.
//!
//! [`UserStaging`] takes the records as the pull sends them;
//! [`UserStaging::finish`] reads them back once to check them as the diff
//! checks records (and that no two share a userName), and is the only
//! maker of [`StagedUsers`]: a staged user set is always a checked one.
//! A user the pull sent more than once is staged each time; the last copy
//! is the one kept, as [`idpsync_driver::CollectedRecords::merge_repeats`]
//! keeps it.

use super::diff::{InputError, check_record, folded};
use foldhash::{HashMap, HashMapExt};
use idpsync_driver::SourceUser;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Bytes of staged records held in memory before the rest go to a file,
/// when the configuration does not say (`[sync] staging_memory_mib`).
pub const DEFAULT_STAGING_MEMORY: usize = 64 << 20;

/// Staging a pull's users: encoded records appended in memory until
/// `budget` bytes are held, then to an unlinked temporary file.
pub struct UserStaging {
    budget: usize,
    memory: Vec<u8>,
    spill: Option<BufWriter<File>>,
    spilled: u64,
    /// Each external id's last position.
    last: HashMap<Box<str>, u32>,
    len: u32,
}

impl UserStaging {
    pub fn new(budget: usize) -> Self {
        UserStaging {
            budget,
            memory: Vec::new(),
            spill: None,
            spilled: 0,
            last: HashMap::new(),
            len: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of encoded records held in memory: at most the budget (a
    /// record that would pass it goes to the file, and every one after).
    #[cfg(test)]
    fn bytes_in_memory(&self) -> usize {
        self.memory.len()
    }

    pub fn push(&mut self, user: &SourceUser) -> io::Result<()> {
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
                self.memory.extend_from_slice(&frame_len.to_le_bytes());
                self.memory.extend_from_slice(&encoded);
            }
        }
        let position = self.len;
        self.len = self
            .len
            .checked_add(1)
            .ok_or_else(|| io::Error::other("more than 4 billion users staged"))?;
        match self.last.get_mut(user.external_id.as_str()) {
            Some(last) => *last = position,
            None => {
                self.last.insert(user.external_id.as_str().into(), position);
            }
        }
        Ok(())
    }

    /// Reads the staged records back (in order, the last copy of each
    /// user only) and checks them: each record as the diff checks one, and
    /// no two sharing a userName.
    pub fn finish(mut self) -> Result<StagedUsers, StagingError> {
        let spool = self.freeze()?;
        let mut repeated: Vec<u32> = Vec::new();
        {
            let mut names: HashMap<Box<str>, u32> = HashMap::with_capacity(self.last.len());
            for (position, user) in spool.read().enumerate() {
                let user = user?;
                let position = position as u32;
                if self.last.get(user.external_id.as_str()) != Some(&position) {
                    repeated.push(position);
                    continue;
                }
                check_record(&user)?;
                let name: Box<str> = folded(&user.user_name).into();
                if let Some(first) = names.insert(name, position) {
                    return Err(StagingError::Input(InputError::DuplicateUserName {
                        user_name: user.user_name.clone(),
                        first: first_external_id(&spool, first)?,
                        second: user.external_id,
                    }));
                }
            }
        }
        let mut ids = self.last;
        ids.shrink_to_fit();
        Ok(StagedUsers {
            spool,
            repeated: repeated.into(),
            ids,
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
            records: self.len,
        }))
    }
}

/// The external id of the record at `position` (for an error message).
fn first_external_id(spool: &Arc<Spool>, position: u32) -> io::Result<String> {
    match spool.read().nth(position as usize) {
        Some(user) => Ok(user?.external_id),
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
}

/// A pull's users, staged and checked ([`UserStaging::finish`] makes
/// them): read back in the order they came, each user once. Cheap to
/// clone; clones read the same staging.
#[derive(Clone)]
pub struct StagedUsers {
    spool: Arc<Spool>,
    /// Positions of records a later copy of their user replaced, in order.
    repeated: Arc<[u32]>,
    ids: HashMap<Box<str>, u32>,
}

impl StagedUsers {
    /// Users, each once.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, external_id: &str) -> bool {
        self.ids.contains_key(external_id)
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
        self.ids.get(external_id).copied()
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
