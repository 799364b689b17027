//! API tokens: generation, hashing and constant-time verification, and the
//! scopes a token can carry. Tokens are random 256-bit values shown once;
//! only their SHA-256 hash is stored.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;

/// Every token starts with this, so a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "idps_";

/// How many characters of a token are stored in clear, to recognise it.
const DISPLAY_PREFIX_LEN: usize = TOKEN_PREFIX.len() + 8;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Push SCIM requests into one connection.
    Scim,
    /// Everything in the admin API.
    Admin,
    /// Read-only admin API.
    Read,
    /// Register and manage devices.
    Devices,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Scim, Scope::Admin, Scope::Read, Scope::Devices];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Scim => "scim",
            Scope::Admin => "admin",
            Scope::Read => "read",
            Scope::Devices => "devices",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
            .ok_or_else(|| {
                format!("unknown scope \"{text}\"; scopes are scim, admin, read, devices")
            })
    }
}

/// Formats scopes for the `scopes` column.
pub fn scopes_to_column(scopes: &[Scope]) -> String {
    let mut names: Vec<&str> = scopes.iter().map(|scope| scope.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

/// Reads the `scopes` column; unknown names are skipped.
pub fn scopes_from_column(column: &str) -> Vec<Scope> {
    column
        .split(',')
        .filter_map(|name| name.parse().ok())
        .collect()
}

/// A freshly generated token: the secret to show once, and what is stored.
pub struct GeneratedToken {
    /// The whole token. Print it once; never log or store it.
    pub plaintext: String,
    /// The recognisable start, safe to show in listings.
    pub display_prefix: String,
    /// Hex SHA-256 of `plaintext`.
    pub hash: String,
}

impl fmt::Debug for GeneratedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedToken")
            .field("display_prefix", &self.display_prefix)
            .finish_non_exhaustive()
    }
}

/// Generates a random 256-bit token.
pub fn generate_token() -> GeneratedToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let plaintext = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    GeneratedToken {
        display_prefix: plaintext[..DISPLAY_PREFIX_LEN].to_string(),
        hash: hash_token(&plaintext),
        plaintext,
    }
}

/// Hex SHA-256 of a presented token: the key it is looked up by.
pub fn hash_token(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// Compares two hashes in constant time.
pub fn hashes_match(stored_hash: &str, presented_hash: &str) -> bool {
    stored_hash
        .as_bytes()
        .ct_eq(presented_hash.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_prefixed_random_and_hash_to_their_stored_hash() {
        let first = generate_token();
        let second = generate_token();
        assert!(first.plaintext.starts_with("idps_"));
        assert_eq!(first.plaintext.len(), 5 + 64);
        assert_ne!(first.plaintext, second.plaintext);
        assert!(first.plaintext.starts_with(&first.display_prefix));
        assert!(hashes_match(&first.hash, &hash_token(&first.plaintext)));
        assert!(!hashes_match(&first.hash, &hash_token(&second.plaintext)));
        assert!(!format!("{first:?}").contains(&first.plaintext));
    }

    #[test]
    fn scopes_round_trip_through_the_column() {
        let column = scopes_to_column(&[Scope::Read, Scope::Admin, Scope::Read]);
        assert_eq!(column, "admin,read");
        assert_eq!(scopes_from_column(&column), vec![Scope::Admin, Scope::Read]);
        assert!("root".parse::<Scope>().is_err());
    }
}
