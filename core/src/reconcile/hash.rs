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

/// A content hash as a number: how a set-aside user keeps it (16 bytes,
/// not a 32-character string). `None` for anything but a content hash.
pub fn hash_value(hash: &str) -> Option<u128> {
    if hash.len() != 32 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(hash, 16).ok()
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

    #[test]
    fn a_content_hash_is_a_number_and_nothing_else_is() {
        let hash = user_hash(&SourceUser::new("u1", "alice"));
        let value = hash_value(&hash).expect("a content hash");
        assert_eq!(format!("{value:032x}"), hash);
        assert_eq!(hash_value(&hash[1..]), None);
        assert_eq!(hash_value(&format!("+{}", &hash[1..])), None);
        assert_eq!(hash_value(""), None);
    }
}
