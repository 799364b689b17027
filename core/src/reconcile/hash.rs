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

/// A content hash as held in memory: 16 bytes, not the 32 hex digits a
/// row stores (a million stored users are compared by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash([u8; 16]);

impl ContentHash {
    pub fn of_user(user: &SourceUser) -> Self {
        ContentHash::of(&serde_json::to_vec(user).unwrap_or_default())
    }

    pub fn of_group(group: &SourceGroup) -> Self {
        ContentHash::of(&serde_json::to_vec(group).unwrap_or_default())
    }

    /// A stored hash's value; `None` for anything but 32 hex digits (such
    /// a row equals no record, so the next write replaces its hash).
    pub fn parse(hex_digits: &str) -> Option<Self> {
        if hex_digits.len() != 32 || !hex_digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(hex_digits, &mut bytes).ok()?;
        Some(ContentHash(bytes))
    }

    fn of(bytes: &[u8]) -> Self {
        let mut first = [0u8; 16];
        first.copy_from_slice(&Sha256::digest(bytes)[..16]);
        ContentHash(first)
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

fn digest(bytes: &[u8]) -> String {
    ContentHash::of(bytes).to_string()
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
    fn a_content_hash_is_32_hex_digits_and_nothing_else_is() {
        let user = SourceUser::new("u1", "alice");
        let hash = user_hash(&user);
        let value = ContentHash::parse(&hash).expect("a content hash");
        assert_eq!(value, ContentHash::of_user(&user));
        assert_eq!(value.to_string(), hash);
        assert_eq!(ContentHash::parse(&hash.to_uppercase()), Some(value));
        assert_eq!(ContentHash::parse(&hash[1..]), None);
        assert_eq!(ContentHash::parse(&format!("+{}", &hash[1..])), None);
        assert_eq!(ContentHash::parse(""), None);
    }
}
