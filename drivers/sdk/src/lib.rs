//! `idpsync-driver`: what a driver needs and nothing more.
//!
//! * [`records`]: `SourceUser`, `SourceGroup`, `MembershipEdge`, exactly as an
//!   IdP reports them.
//! * [`driver`]: the [`Driver`] trait (`check`, `pull` into a [`RecordSink`]),
//!   its factory, pull modes, cursors and outcomes.
//! * [`edges`]: [`EdgeList`], a pull's membership edges at 8 bytes each.
//! * [`error`]: [`DriverError`], what core decides on (retry, fail, fix config).
//! * [`http`]: the HTTP kit: timeouts, retries with backoff and jitter,
//!   `Retry-After` and rate-limit headers, bounded concurrency, cached OAuth2
//!   client-credentials tokens refreshed once on 401.
//! * [`notify`]: change notifications: the [`notify::Notifier`] a driver
//!   offers when its IdP can tell us that something changed.
//! * [`secret`]: [`Secret`], a string that never prints itself.
//! * [`settings`]: [`Settings`] and the checks every driver's settings make.
//! * `fake` (feature `fake`): the kit for faithful fakes of IdP APIs.
//! * `compliance` (feature `compliance`): the one suite every driver's
//!   tests run against its fake.
//!
//! A driver never sees the database; deletions, revocation and ACL groups
//! are core's decisions.

#[cfg(feature = "compliance")]
pub mod compliance;
pub mod driver;
pub mod edges;
pub mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod http;
pub mod jwt;
pub mod notify;
pub mod records;
pub mod secret;
pub mod settings;

pub use driver::{
    Capabilities, CollectedRecords, DeclaredTotals, DeltaCursor, Driver, DriverContext,
    DriverFactory, DriverKind, PullMode, PullOutcome, RecordSink, parse_settings,
};
pub use edges::EdgeList;
pub use error::DriverError;
pub use records::{
    Access, EdgeId, Email, IdInterner, MemberRef, MembershipEdge, SourceGroup, SourceUser,
    StatePolicy, Update, UserRecord, UserUpdate,
};
pub use secret::Secret;
pub use settings::Settings;
