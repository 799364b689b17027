//! The TOML configuration: its schema ([`Config`] and the structs below it),
//! loading with `${ENV_VAR}` interpolation ([`load`]) and validation that
//! reports every problem at once with its key path and line:column.
//!
//! Every field is documented here because `examples/idpsync.toml` mirrors this
//! file; a test keeps the two in step.

mod load;

pub use idpsync_driver::Secret;
pub use load::{ConfigError, ConfigErrors, KeyLocation, KindCatalog, load_file, load_str};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The connection kind served by the SCIM endpoint instead of a pull driver.
pub const SCIM_KIND: &str = "scim";

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    #[serde(default)]
    pub acl_groups: Vec<AclGroupConfig>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// `[server]`: the HTTP listener of `idpsync serve`.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    /// Address and port to listen on, e.g. `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The URL clients use to reach this server; used in SCIM `meta.location`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How long a graceful shutdown waits for requests in flight.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// A SCIM filter that matches more resources than this is refused with
    /// 400 `tooMany` (RFC 7644 §3.4.2.2), e.g. a bare `userName pr`.
    #[serde(default = "default_scim_max_filter_matches")]
    pub scim_max_filter_matches: u64,
}

fn default_scim_max_filter_matches() -> u64 {
    100_000
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_shutdown_grace_secs() -> u64 {
    10
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            public_url: None,
            shutdown_grace_secs: default_shutdown_grace_secs(),
            scim_max_filter_matches: default_scim_max_filter_matches(),
        }
    }
}

impl ServerConfig {
    /// The listen address; valid once [`Config::validate`] passed.
    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.listen.parse()
    }
}

/// `[sync]`: how pull syncs use memory.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncConfig {
    /// A full pull's users are staged encoded: this many MiB in memory,
    /// the rest in an unlinked temporary file (under `TMPDIR`). A first
    /// sync reads them back a chunk at a time as it writes them; a re-run
    /// compares them with the stored users as it reads them back and holds
    /// the changed ones only. 0 stages every user on disk.
    #[serde(default = "default_staging_memory_mib")]
    pub staging_memory_mib: u64,
}

fn default_staging_memory_mib() -> u64 {
    (crate::reconcile::staged::DEFAULT_STAGING_MEMORY >> 20) as u64
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            staging_memory_mib: default_staging_memory_mib(),
        }
    }
}

impl SyncConfig {
    /// The staging budget in bytes.
    pub fn staging_memory(&self) -> usize {
        usize::try_from(self.staging_memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// `[database]`: where the store lives.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (created on first start) or
    /// `postgres://user:password@host:port/database`.
    #[serde(default = "default_database_url")]
    pub url: Secret,
    /// Size of the connection pool (PostgreSQL; SQLite readers).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// What an acknowledged write survives (SQLite).
    #[serde(default)]
    pub durability: Durability,
}

/// What a committed write survives, on SQLite. (PostgreSQL commits as its
/// own `synchronous_commit` says, `on` by default: like [`Durability::Full`].)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Every commit reaches the disk before it is acknowledged (WAL with
    /// `synchronous=FULL`): a SCIM write answered 2xx, a recorded run,
    /// survive a power cut or an OS crash.
    #[default]
    Full,
    /// Commits are written to the WAL but synced only at checkpoints
    /// (`synchronous=NORMAL`): a crash of the daemon loses nothing, but a
    /// power cut or an OS crash may roll back the latest acknowledged
    /// commits, which an IdP will not send again.
    Relaxed,
}

/// The SQLite file used when the config names no database.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/idpsync.db";

fn default_database_url() -> Secret {
    Secret::new(DEFAULT_DATABASE_URL)
}

fn default_max_connections() -> u32 {
    8
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: default_database_url(),
            max_connections: default_max_connections(),
            durability: Durability::default(),
        }
    }
}

/// `[[connections]]`: one configured source of people.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionConfig {
    /// Stable id, used in URLs (`/scim/v2/<id>/`) and the store: lowercase
    /// letters, digits, `-` and `_`.
    pub id: String,
    /// Which driver reads this source (`scim` for SCIM push).
    pub kind: String,
    /// Set `false` to keep the connection's data but stop syncing it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Cron expression with a seconds field first, e.g. `0 */15 * * * *`.
    /// Pull connections only; without it the connection syncs on demand.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Up to this many seconds of random delay before each scheduled run.
    #[serde(default)]
    pub schedule_jitter_secs: u64,
    /// A pull that would be incremental reads everything instead when the
    /// last full pull is older than this: what a source's deltas cannot
    /// report (a deletion they never list) is caught within this time.
    #[serde(default = "default_full_sync_every_hours")]
    pub full_sync_every_hours: u64,
    /// The share of the IdP's rate limit this connection may use, above 0
    /// and at most 1 ([`idpsync_driver::http::RateShare`]).
    #[serde(default = "default_rate_limit_share")]
    pub rate_limit_share: f64,
    /// Deletion safety gate.
    #[serde(default)]
    pub safety: SafetyConfig,
    /// The kind-specific table (`[connections.okta]` for `kind = "okta"`),
    /// handed to the driver as it is.
    #[serde(flatten)]
    pub settings: BTreeMap<String, toml::Value>,
}

fn default_rate_limit_share() -> f64 {
    1.0
}

impl ConnectionConfig {
    /// The share of the IdP's rate limit its driver may use.
    pub fn rate_share(&self) -> idpsync_driver::http::RateShare {
        idpsync_driver::http::RateShare::new(self.rate_limit_share)
            .unwrap_or(idpsync_driver::http::RateShare::WHOLE)
    }

    /// The kind-specific table, if any.
    pub fn kind_settings(&self) -> Option<&toml::Value> {
        self.settings.get(&self.kind)
    }
}

fn default_true() -> bool {
    true
}

fn default_full_sync_every_hours() -> u64 {
    24
}

/// `[connections.safety]`: how much one change set may delete before an admin
/// must approve it.
#[derive(Debug, Clone, Deserialize)]
pub struct SafetyConfig {
    /// A count (`25`) or a percentage of the connection's users (`"10%"`).
    /// Deactivations count as deletions.
    #[serde(default = "default_max_deletions")]
    pub max_deletions: toml::Value,
}

fn default_max_deletions() -> toml::Value {
    toml::Value::String("10%".into())
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            max_deletions: default_max_deletions(),
        }
    }
}

/// A parsed `max_deletions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionLimit {
    Count(u64),
    Percent(u8),
}

impl DeletionLimit {
    /// Parses `25` or `"10%"`.
    pub fn parse(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Integer(count) if *count >= 0 => Ok(DeletionLimit::Count(*count as u64)),
            toml::Value::String(text) => {
                let Some(number) = text.trim().strip_suffix('%') else {
                    return Err(format!(
                        "expected a count like 25 or a percentage like \"10%\", got \"{text}\""
                    ));
                };
                match number.trim().parse::<u8>() {
                    Ok(percent) if percent <= 100 => Ok(DeletionLimit::Percent(percent)),
                    _ => Err(format!(
                        "percentage must be between 0% and 100%, got \"{text}\""
                    )),
                }
            }
            other => Err(format!(
                "expected a count like 25 or a percentage like \"10%\", got {}",
                other.type_str()
            )),
        }
    }

    /// The largest number of deletions allowed for a connection with `n_users`
    /// users; a percentage rounds up, so a small tenant can always lose one.
    pub fn allowed(self, n_users: u64) -> u64 {
        match self {
            DeletionLimit::Count(count) => count,
            DeletionLimit::Percent(percent) => (n_users * percent as u64).div_ceil(100),
        }
    }
}

impl SafetyConfig {
    /// The parsed limit; valid once [`Config::validate`] passed.
    pub fn limit(&self) -> DeletionLimit {
        DeletionLimit::parse(&self.max_deletions).unwrap_or(DeletionLimit::Percent(10))
    }
}

/// `[[acl_groups]]`: a group used by access policies and the rules that fill it.
#[derive(Debug, Clone, Deserialize)]
pub struct AclGroupConfig {
    /// The name access policies refer to.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Source groups whose effective members become members of this ACL group.
    #[serde(default)]
    pub from: Vec<AclSourceRule>,
}

/// `[[acl_groups.from]]`: selects source groups of one connection by exactly
/// one of `group` (exact name), `group_glob` or `group_regex`.
#[derive(Debug, Clone, Deserialize)]
pub struct AclSourceRule {
    pub connection: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub group_glob: Option<String>,
    #[serde(default)]
    pub group_regex: Option<String>,
}

/// `[[webhooks]]`: where events are POSTed, signed with HMAC-SHA256.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookConfig {
    pub name: String,
    /// `http://` or `https://` URL that receives each event as JSON.
    pub url: String,
    /// Key of the `X-Idpsync-Signature` HMAC-SHA256 header.
    pub secret: Secret,
    /// Event kinds to send; `*` matches any run of characters (`device.*`).
    #[serde(default = "default_event_patterns")]
    pub events: Vec<String>,
    /// Per-delivery timeout.
    #[serde(default = "default_webhook_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_event_patterns() -> Vec<String> {
    vec!["*".into()]
}

fn default_webhook_timeout_secs() -> u64 {
    10
}

impl Config {
    /// The connection with this id.
    pub fn connection(&self, id: &str) -> Option<&ConnectionConfig> {
        self.connections
            .iter()
            .find(|connection| connection.id == id)
    }
}
