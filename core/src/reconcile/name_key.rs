//! A stored user's folded userName as diffing holds it: 16 bytes in the
//! stored row's record, where the name itself was a string of its own (a
//! million stored users: ~30 MiB of strings at a full re-run's peak).
//!
//! A [`NameKey`] is SipHash-1-3's 128-bit hash of the folded name under two
//! keys drawn at random once per process, so names cannot be chosen from
//! outside to share one. The diff compares stored names only with the
//! names of the records it holds (the changed users of a re-run), so two
//! different names with one key, odds of about 2^-128 a pair, can only make
//! it see a conflict that is not there: a set-aside user's stored name read
//! as a record's (the run is refused with `DuplicateUserName`, recorded as
//! every refused run is), or a name parked and written again in one apply
//! (`names_to_free`; no change to what is stored). It never hides one.

use super::diff::folded;
use siphasher::sip128::SipHasher13;
use std::sync::OnceLock;

/// A folded userName's key; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NameKey([u64; 2]);

impl NameKey {
    /// The key of `user_name`, folded as the store folds it.
    pub fn of(user_name: &str) -> Self {
        NameKey::of_folded(&folded(user_name))
    }

    /// The key of a name folded already: a stored `user_name_key`.
    pub fn of_folded(folded_name: &str) -> Self {
        static KEYS: OnceLock<(u64, u64)> = OnceLock::new();
        let &(k0, k1) = KEYS.get_or_init(|| (rand::random(), rand::random()));
        let hash = SipHasher13::new_with_keys(k0, k1).hash(folded_name.as_bytes());
        NameKey([hash.h1, hash.h2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_has_the_key_of_its_folded_form_and_other_names_others() {
        assert_eq!(
            NameKey::of("Anna@Example.com"),
            NameKey::of_folded("anna@example.com")
        );
        assert_eq!(NameKey::of("ÅSA"), NameKey::of_folded("åsa"));
        assert_ne!(NameKey::of("anna"), NameKey::of("anna "));
        assert_ne!(NameKey::of("anna"), NameKey::of("bo"));
    }

    #[test]
    fn a_stored_user_with_its_name_key_is_forty_bytes_and_holds_no_string() {
        assert_eq!(std::mem::size_of::<NameKey>(), 16);
        assert_eq!(std::mem::size_of::<super::super::diff::StoredUser>(), 40);
    }
}
