//! Content hashes of source records: equal hash, nothing to write.

use idpsync_driver::{SourceGroup, SourceUser};
use sha2::{Digest, Sha256};

/// SHA-256 over the record's canonical JSON (fields in declaration order,
/// attributes sorted by key), as 32 hex characters.
pub fn user_hash(user: &SourceUser) -> String {
    digest(&serde_json::to_vec(user).unwrap_or_default())
}

pub fn group_hash(group: &SourceGroup) -> String {
    digest(&serde_json::to_vec(group).unwrap_or_default())
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_changes_with_content_and_not_with_attribute_order() {
        let mut alice = SourceUser::new("u1", "alice");
        let before = user_hash(&alice);
        alice.active = false;
        assert_ne!(before, user_hash(&alice));

        let mut first = SourceUser::new("u1", "alice");
        first.attributes.insert("b".into(), 1.into());
        first.attributes.insert("a".into(), 2.into());
        let mut second = SourceUser::new("u1", "alice");
        second.attributes.insert("a".into(), 2.into());
        second.attributes.insert("b".into(), 1.into());
        assert_eq!(user_hash(&first), user_hash(&second));
    }
}
