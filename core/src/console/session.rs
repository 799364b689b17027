//! Console sessions: a random id in an HttpOnly, SameSite=Strict cookie
//! (Secure when the console is reached over https), kept in memory by its
//! SHA-256 only, with the signed-in token's hash, whether it may change
//! anything, a CSRF token for its forms, and an absolute expiry. Each
//! request re-checks the token, so revoking or expiring it ends its
//! sessions at once. Sessions do not outlive the daemon: after a restart,
//! everyone signs in again.

use crate::auth::hash_token;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "idpsync_session";

/// How long a session lasts, whatever it does.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The hash of the token signed in with (never the token).
    pub token_hash: String,
    /// The token's name, shown in the header and recorded in reasons.
    pub token_name: String,
    /// `admin` scope: may change things. Otherwise read only.
    pub admin: bool,
    /// Every form carries it; a POST without it is refused.
    pub csrf: String,
    expires: Instant,
}

/// The daemon's sessions; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    by_id_hash: Arc<Mutex<HashMap<String, Session>>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    /// A new session for a verified token; returns the cookie's value.
    pub fn open(&self, token_hash: String, token_name: String, admin: bool) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            token_hash,
            token_name,
            admin,
            csrf: random_hex(),
            expires: Instant::now() + LIFETIME,
        };
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(hash_token(&id), session.clone());
        (id, session)
    }

    /// The live session with this cookie value.
    pub fn get(&self, id: &str) -> Option<Session> {
        let key = hash_token(id);
        let mut sessions = self.lock();
        match sessions.get(&key) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.lock().remove(&hash_token(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id_hash.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The session cookie's value in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that stores `id`.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_only_and_closes() {
        let sessions = Sessions::default();
        let (id, session) = sessions.open("hash".into(), "ops".into(), false);
        assert_eq!(sessions.get(&id).unwrap().csrf, session.csrf);
        assert!(sessions.get("someone-elses").is_none());
        assert!(
            !sessions.lock().contains_key(&id),
            "the id itself is not what is kept"
        );
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_the_console() {
        let cookie = set_cookie("abc", true);
        for part in ["HttpOnly", "SameSite=Strict", "Path=/console", "Secure"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert_eq!(cookie_value("a=1; idpsync_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("a=1"), None);
    }
}
