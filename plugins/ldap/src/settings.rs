//! The plugin's table, `[connections.plugin.settings]`. `flavor` picks the
//! defaults of a directory type (OpenLDAP or Active Directory); every
//! attribute and filter can still be set by hand.

use idpsync_driver::{DriverError, Secret, parse_settings};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The directory's dialect: its default filters and attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    #[default]
    Openldap,
    ActiveDirectory,
}

/// The settings as written (every default still `None`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    url: String,
    #[serde(default)]
    starttls: bool,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    danger_skip_tls_verify: bool,
    bind_dn: Option<String>,
    bind_password: Option<Secret>,
    #[serde(default)]
    flavor: Flavor,
    user_base_dn: String,
    user_filter: Option<String>,
    group_base_dn: String,
    group_filter: Option<String>,
    #[serde(default = "default_page_size")]
    page_size: u32,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: u64,
    #[serde(default = "default_true")]
    incremental: bool,
    #[serde(default)]
    attributes: RawAttributes,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAttributes {
    id: Option<String>,
    user_name: Option<String>,
    email: Option<String>,
    display_name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    group_name: Option<String>,
    member: Option<String>,
    disabled: Option<String>,
    #[serde(default)]
    disabled_values: Vec<String>,
}

fn default_page_size() -> u32 {
    500
}

fn default_timeout_secs() -> u64 {
    30
}

fn default_true() -> bool {
    true
}

/// Which attribute holds what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// The immutable id: `entryUUID` (OpenLDAP) or `objectGUID` (AD).
    pub id: String,
    pub user_name: String,
    pub email: String,
    pub display_name: String,
    pub given_name: String,
    pub family_name: String,
    pub group_name: String,
    /// On groups: `member`, `uniqueMember` (values are DNs) or `memberUid`
    /// (values are user names).
    pub member: String,
    /// An attribute whose presence (or one of `disabled_values`) marks a
    /// disabled user. Active Directory's `userAccountControl` is always read.
    pub disabled: Option<String>,
    pub disabled_values: Vec<String>,
}

impl Attributes {
    /// Whether member values are user names rather than DNs.
    pub fn members_are_names(&self) -> bool {
        self.member.eq_ignore_ascii_case("memberUid")
    }

    /// Whether the id attribute is a binary GUID (AD's objectGUID).
    pub fn id_is_guid(&self) -> bool {
        self.id.eq_ignore_ascii_case("objectGUID")
    }
}

/// Validated settings.
#[derive(Clone)]
pub struct LdapSettings {
    pub url: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub danger_skip_tls_verify: bool,
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    pub flavor: Flavor,
    pub user_base_dn: String,
    pub user_filter: String,
    pub group_base_dn: String,
    pub group_filter: String,
    pub page_size: u32,
    pub timeout: Duration,
    pub incremental: bool,
    pub attributes: Attributes,
}

impl std::fmt::Debug for LdapSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSettings")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &self.bind_password)
            .field("user_base_dn", &self.user_base_dn)
            .field("group_base_dn", &self.group_base_dn)
            .finish_non_exhaustive()
    }
}

impl LdapSettings {
    pub fn parse(settings: &serde_json::Value) -> Result<Self, DriverError> {
        let raw: RawSettings = parse_settings(settings)?;
        let scheme = raw.url.split("://").next().unwrap_or_default();
        if !matches!(scheme, "ldap" | "ldaps") || !raw.url.contains("://") {
            return Err(DriverError::config(
                "url",
                "must be ldap://host[:port] or ldaps://host[:port]",
            ));
        }
        if raw.starttls && scheme == "ldaps" {
            return Err(DriverError::config(
                "starttls",
                "ldaps:// is already TLS; use starttls with ldap:// only",
            ));
        }
        if let Some(ca_file) = &raw.ca_file
            && !ca_file.is_file()
        {
            return Err(DriverError::config(
                "ca_file",
                format!("{}: no such file", ca_file.display()),
            ));
        }
        if raw.bind_dn.is_some() != raw.bind_password.is_some() {
            return Err(DriverError::config(
                "bind_password",
                "bind_dn and bind_password go together (leave both out for an anonymous bind)",
            ));
        }
        for (key, dn) in [
            ("user_base_dn", &raw.user_base_dn),
            ("group_base_dn", &raw.group_base_dn),
        ] {
            if !dn.contains('=') {
                return Err(DriverError::config(
                    key,
                    "must be a DN, like ou=people,dc=example,dc=com",
                ));
            }
        }
        idpsync_driver::settings::page_size(raw.page_size, 10_000)?;
        if raw.timeout_secs == 0 {
            return Err(DriverError::config("timeout_secs", "must be at least 1"));
        }
        let ad = raw.flavor == Flavor::ActiveDirectory;
        let pick = |set: Option<String>, openldap: &str, active_directory: &str| {
            set.unwrap_or_else(|| if ad { active_directory } else { openldap }.to_string())
        };
        let user_filter = pick(
            raw.user_filter,
            "(objectClass=inetOrgPerson)",
            "(&(objectCategory=person)(objectClass=user))",
        );
        let group_filter = pick(
            raw.group_filter,
            "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
            "(objectClass=group)",
        );
        for (key, filter) in [
            ("user_filter", &user_filter),
            ("group_filter", &group_filter),
        ] {
            if ldap3::parse_filter(filter).is_err() {
                return Err(DriverError::config(
                    key,
                    format!("{filter:?} is not an LDAP filter (RFC 4515)"),
                ));
            }
        }
        let a = raw.attributes;
        let attributes = Attributes {
            id: pick(a.id, "entryUUID", "objectGUID"),
            user_name: pick(a.user_name, "uid", "sAMAccountName"),
            email: pick(a.email, "mail", "mail"),
            display_name: pick(a.display_name, "cn", "displayName"),
            given_name: pick(a.given_name, "givenName", "givenName"),
            family_name: pick(a.family_name, "sn", "sn"),
            group_name: pick(a.group_name, "cn", "cn"),
            member: pick(a.member, "member", "member"),
            disabled: a.disabled,
            disabled_values: a.disabled_values,
        };
        Ok(LdapSettings {
            url: raw.url,
            starttls: raw.starttls,
            ca_file: raw.ca_file,
            danger_skip_tls_verify: raw.danger_skip_tls_verify,
            bind_dn: raw.bind_dn,
            bind_password: raw.bind_password,
            flavor: raw.flavor,
            user_base_dn: raw.user_base_dn,
            user_filter,
            group_base_dn: raw.group_base_dn,
            group_filter,
            page_size: raw.page_size,
            timeout: Duration::from_secs(raw.timeout_secs),
            incremental: raw.incremental,
            attributes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> serde_json::Value {
        json!({
            "url": "ldap://127.0.0.1:389",
            "user_base_dn": "ou=people,dc=example,dc=com",
            "group_base_dn": "ou=groups,dc=example,dc=com",
        })
    }

    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut settings = minimal();
        settings[key] = value;
        settings
    }

    #[test]
    fn the_flavor_chooses_the_default_filters_and_attributes() {
        let openldap = LdapSettings::parse(&minimal()).unwrap();
        assert_eq!(openldap.attributes.id, "entryUUID");
        assert_eq!(openldap.attributes.user_name, "uid");
        assert_eq!(openldap.user_filter, "(objectClass=inetOrgPerson)");
        let ad = LdapSettings::parse(&with("flavor", json!("active_directory"))).unwrap();
        assert_eq!(ad.attributes.id, "objectGUID");
        assert!(ad.attributes.id_is_guid());
        assert_eq!(ad.attributes.user_name, "sAMAccountName");
        assert_eq!(
            ad.user_filter,
            "(&(objectCategory=person)(objectClass=user))"
        );
        let mut custom = with("flavor", json!("active_directory"));
        custom["attributes"] = json!({"user_name": "userPrincipalName"});
        let custom = LdapSettings::parse(&custom).unwrap();
        assert_eq!(custom.attributes.user_name, "userPrincipalName");
        assert_eq!(custom.attributes.id, "objectGUID");
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            (with("url", json!("http://dc1")), "url"),
            (
                {
                    let mut s = with("url", json!("ldaps://dc1"));
                    s["starttls"] = json!(true);
                    s
                },
                "starttls",
            ),
            (
                with("user_filter", json!("(objectClass=user")),
                "user_filter",
            ),
            (with("group_base_dn", json!("groups")), "group_base_dn"),
            (with("page_size", json!(0)), "page_size"),
            (
                with("bind_dn", json!("cn=idpsync,dc=example,dc=com")),
                "bind_password",
            ),
            (with("ca_file", json!("/nonexistent/ca.pem")), "ca_file"),
            (with("attributes", json!({"uid": "x"})), "attributes"),
        ];
        for (settings, key) in cases {
            match LdapSettings::parse(&settings) {
                Err(DriverError::InvalidConfig { key: got, .. }) => {
                    assert!(got.starts_with(key), "{key}: got {got}")
                }
                other => panic!("{key}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn debug_never_shows_the_bind_password() {
        let mut settings = with("bind_dn", json!("cn=idpsync,dc=example,dc=com"));
        settings["bind_password"] = json!("hunter2-very-secret");
        let settings = LdapSettings::parse(&settings).unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
