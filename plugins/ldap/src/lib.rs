//! `idpsync-plugin-ldap`: people from an LDAP directory or Active Directory,
//! as an idpsync plugin (`libidpsync_plugin_ldap.so`, `kind = "ldap"`).
//!
//! * [`settings`]: the connection's table, with OpenLDAP and AD defaults.
//! * [`entry`]: entries to records (pure): attributes, AD's GUIDs and
//!   disabled bit, ranged member lists, DN comparison.
//! * [`directory`]: connect, TLS, bind, paged searches (RFC 2696).
//! * [`driver`]: full and incremental pulls, nested groups.
//! * `testing` (feature): a real slapd on loopback for tests.

pub mod directory;
pub mod driver;
pub mod entry;
pub mod settings;
#[cfg(feature = "testing")]
pub mod testing;

pub use driver::{LdapDriver, LdapFactory};

idpsync_plugin::export_plugin!(driver::LdapFactory, version = env!("CARGO_PKG_VERSION"));
