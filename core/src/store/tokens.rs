//! Persistence of API tokens (hash only) and their verification.
//!
//! A token found live is trusted for [`VERIFIED_FOR`] without reading it
//! again: every API and SCIM request authenticates, and reading the token
//! was a third of a SCIM write's statements. Expiry is still checked on
//! every request; a revocation through this store applies at once, one by
//! another process (the CLI, while the daemon runs) within that time.

use super::entity::api_token;
use super::{Result, Store, StoreError};
use crate::auth::{self, Scope};
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `last_used_at` is accurate to this many seconds.
const LAST_USED_RESOLUTION_SECS: i64 = 60;

/// How long a token found live is trusted without reading it again.
pub const VERIFIED_FOR: Duration = Duration::from_secs(1);

/// Tokens found live recently, by hash: at most one entry per live token
/// (unknown, revoked and expired tokens are never kept).
#[derive(Default)]
pub(super) struct VerifiedTokens {
    by_hash: Mutex<HashMap<String, Verified>>,
}

struct Verified {
    at: Instant,
    hash: String,
    record: TokenRecord,
}

impl VerifiedTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        self.by_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The record of a token verified less than [`VERIFIED_FOR`] ago.
    fn get(&self, presented_hash: &str) -> Option<TokenRecord> {
        let verified = self.lock();
        let entry = verified.get(presented_hash)?;
        (entry.at.elapsed() < VERIFIED_FOR && auth::hashes_match(&entry.hash, presented_hash))
            .then(|| entry.record.clone())
    }

    fn insert(&self, hash: String, record: TokenRecord) {
        let mut verified = self.lock();
        verified.retain(|_, entry| entry.at.elapsed() < VERIFIED_FOR);
        verified.insert(
            hash.clone(),
            Verified {
                at: Instant::now(),
                hash,
                record,
            },
        );
    }

    fn forget(&self, hash: &str) {
        self.lock().remove(hash);
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub connection_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A stored token as listings and authentication see it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub connection_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl TokenRecord {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|name| name == scope.as_str())
    }
}

impl From<api_token::Model> for TokenRecord {
    fn from(model: api_token::Model) -> Self {
        TokenRecord {
            id: model.id,
            name: model.name,
            prefix: model.prefix,
            scopes: auth::scopes_from_column(&model.scopes)
                .into_iter()
                .map(|scope| scope.as_str().to_string())
                .collect(),
            connection_id: model.connection_id,
            expires_at: model.expires_at,
            last_used_at: model.last_used_at,
            revoked_at: model.revoked_at,
            created_at: model.created_at,
        }
    }
}

impl Store {
    /// Creates a token; returns the plaintext (to show once) and its record.
    pub async fn create_token(&self, new: NewToken) -> Result<(String, TokenRecord)> {
        let exists = api_token::Entity::find()
            .filter(api_token::Column::Name.eq(&new.name))
            .one(self.db())
            .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict {
                what: format!("token \"{}\"", new.name),
            });
        }
        let generated = auth::generate_token();
        let write = self.begin_write().await?;
        let model = api_token::ActiveModel {
            name: Set(new.name),
            prefix: Set(generated.display_prefix.clone()),
            hash: Set(generated.hash.clone()),
            scopes: Set(auth::scopes_to_column(&new.scopes)),
            connection_id: Set(new.connection_id),
            expires_at: Set(new.expires_at),
            last_used_at: Set(None),
            revoked_at: Set(None),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&write.tx)
        .await?;
        write.commit().await?;
        Ok((generated.plaintext, model.into()))
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(api_token::Entity::find()
            .order_by_asc(api_token::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(TokenRecord::from)
            .collect())
    }

    /// Revokes the token with this name; revoking twice is not an error.
    pub async fn revoke_token(&self, name: &str) -> Result<TokenRecord> {
        let model = api_token::Entity::find()
            .filter(api_token::Column::Name.eq(name))
            .one(self.db())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("token \"{name}\""),
            })?;
        if model.revoked_at.is_some() {
            return Ok(model.into());
        }
        let hash = model.hash.clone();
        let write = self.begin_write().await?;
        let mut active: api_token::ActiveModel = model.into();
        active.revoked_at = Set(Some(Utc::now()));
        let revoked = active.update(&write.tx).await?;
        write.commit().await?;
        self.verified_tokens.forget(&hash);
        Ok(revoked.into())
    }

    /// The live token matching `presented`, or `None` if it is unknown,
    /// revoked or expired. Records the time of use. See the module docs for
    /// how long a verified token is trusted.
    pub async fn authenticate_token(&self, presented: &str) -> Result<Option<TokenRecord>> {
        if !presented.starts_with(auth::TOKEN_PREFIX) {
            return Ok(None);
        }
        self.authenticate_token_hash(&auth::hash_token(presented))
            .await
    }

    /// [`Store::authenticate_token`] for a token known by its hash: what a
    /// console session keeps, so a token revoked or expired ends its
    /// sessions at their next request.
    pub async fn authenticate_token_hash(
        &self,
        presented_hash: &str,
    ) -> Result<Option<TokenRecord>> {
        let presented_hash = presented_hash.to_string();
        let now = Utc::now();
        if let Some(record) = self.verified_tokens.get(&presented_hash) {
            if record.expires_at.is_some_and(|at| at <= now) {
                self.verified_tokens.forget(&presented_hash);
                return Ok(None);
            }
            return Ok(Some(record));
        }
        let Some(model) = api_token::Entity::find()
            .filter(api_token::Column::Hash.eq(&presented_hash))
            .one(self.db())
            .await?
        else {
            return Ok(None);
        };
        if !auth::hashes_match(&model.hash, &presented_hash) {
            return Ok(None);
        }
        if model.revoked_at.is_some() || model.expires_at.is_some_and(|at| at <= now) {
            self.verified_tokens.forget(&presented_hash);
            return Ok(None);
        }
        // Record use at most once a minute: a write per request would cost
        // every SCIM call a turn at the writer lock.
        let record: TokenRecord = if model
            .last_used_at
            .is_some_and(|at| now - at < chrono::Duration::seconds(LAST_USED_RESOLUTION_SECS))
        {
            model.into()
        } else {
            let write = self.begin_write().await?;
            let mut active: api_token::ActiveModel = model.into();
            active.last_used_at = Set(Some(now));
            let updated = active.update(&write.tx).await?;
            write.commit().await?;
            updated.into()
        };
        self.verified_tokens.insert(presented_hash, record.clone());
        Ok(Some(record))
    }
}
