//! Reading directory entries, purely: an entry's attributes become
//! idpsync records. Also the directory's odd corners: DN comparison,
//! Active Directory's binary `objectGUID` and `userAccountControl` bits,
//! ranged values (`member;range=0-1499`), and generalized time.

use crate::settings::{Attributes, Flavor};
use idpsync_driver::{Email, SourceGroup, SourceUser};
use std::collections::{BTreeMap, HashMap};

/// `userAccountControl` bit: the account is disabled.
pub const ACCOUNTDISABLE: i64 = 0x2;

/// One entry as the server returned it. Attribute names are matched
/// case-insensitively, as LDAP does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attrs: HashMap<String, Vec<String>>,
    pub bin_attrs: HashMap<String, Vec<Vec<u8>>>,
}

impl From<ldap3::SearchEntry> for Entry {
    fn from(entry: ldap3::SearchEntry) -> Self {
        Entry {
            dn: entry.dn,
            attrs: entry.attrs,
            bin_attrs: entry.bin_attrs,
        }
    }
}

impl Entry {
    /// The text values of `name`.
    pub fn values(&self, name: &str) -> &[String] {
        self.attrs
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, values)| values.as_slice())
            .unwrap_or(&[])
    }

    /// The first non-empty text value of `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.values(name)
            .iter()
            .map(|value| value.trim())
            .find(|value| !value.is_empty())
    }

    /// The first value of `name` as bytes, wherever the client put it (a
    /// binary value that happens to be valid UTF-8 arrives as text).
    pub fn first_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.bin_attrs
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first().cloned())
            .or_else(|| self.values(name).first().map(|v| v.as_bytes().to_vec()))
    }

    /// The values of a possibly ranged attribute (AD returns at most 1,500
    /// values of `member` at a time, as `member;range=0-1499`), and where the
    /// next range starts if there is one.
    pub fn ranged_values(&self, name: &str) -> (Vec<String>, Option<u64>) {
        let plain = self.values(name);
        if !plain.is_empty() {
            return (plain.to_vec(), None);
        }
        let prefix = format!("{};range=", name.to_ascii_lowercase());
        for (key, values) in &self.attrs {
            let lower = key.to_ascii_lowercase();
            if let Some(range) = lower.strip_prefix(&prefix) {
                let next = match range.split_once('-') {
                    Some((_, "*")) | None => None,
                    Some((_, end)) => end.parse::<u64>().ok().map(|end| end + 1),
                };
                return (values.clone(), next);
            }
        }
        (Vec::new(), None)
    }

    /// The entry's id: the configured attribute, as a GUID string for AD.
    pub fn id(&self, attributes: &Attributes) -> Option<String> {
        if attributes.id_is_guid() {
            self.first_bytes(&attributes.id)
                .and_then(|bytes| guid_string(&bytes))
        } else {
            self.first(&attributes.id).map(str::to_string)
        }
    }

    /// `modifyTimestamp` as comparable digits (`YYYYMMDDHHMMSS`).
    pub fn modified(&self) -> Option<String> {
        self.first("modifyTimestamp").and_then(time_key)
    }
}

/// A DN in the form used to compare DNs: lower case, no spaces around `,`
/// and `=`. Enough for the DNs one server writes about its own entries.
pub fn dn_key(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// AD's 16-byte `objectGUID` as the string AD tools show: the first three
/// fields are little-endian.
pub fn guid_string(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// The sortable digits of a generalized time (`20261124085705Z`,
/// `20261124085705.0Z`): the first 14, which both forms share.
pub fn time_key(time: &str) -> Option<String> {
    let digits: String = time.chars().take_while(char::is_ascii_digit).collect();
    (digits.len() >= 14).then(|| digits[..14].to_string())
}

/// Why an entry under the user base is not a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    NoId,
    NoUserName,
}

/// An entry under the user base as a user.
pub fn to_user(
    entry: &Entry,
    attributes: &Attributes,
    flavor: Flavor,
) -> Result<SourceUser, Skipped> {
    let id = entry.id(attributes).ok_or(Skipped::NoId)?;
    let user_name = entry
        .first(&attributes.user_name)
        .ok_or(Skipped::NoUserName)?;
    let mut user = SourceUser::new(id, user_name);
    let text = |name: &str| entry.first(name).map(str::to_string);
    user.display_name = text(&attributes.display_name);
    user.given_name = text(&attributes.given_name);
    user.family_name = text(&attributes.family_name);
    user.emails = entry
        .values(&attributes.email)
        .iter()
        .filter(|value| !value.trim().is_empty())
        .enumerate()
        .map(|(n, value)| Email {
            value: value.trim().to_string(),
            kind: Some("work".into()),
            primary: n == 0,
        })
        .collect();
    if let Some(reason) = disabled(entry, attributes, flavor) {
        user.active = false;
        user.raw_status = Some(reason);
    }
    user.attributes = BTreeMap::from([("dn".to_string(), entry.dn.clone().into())]);
    Ok(user)
}

/// Why the account is disabled, if it is.
fn disabled(entry: &Entry, attributes: &Attributes, flavor: Flavor) -> Option<String> {
    if flavor == Flavor::ActiveDirectory
        && let Some(control) = entry.first("userAccountControl")
        && let Ok(bits) = control.parse::<i64>()
        && bits & ACCOUNTDISABLE != 0
    {
        return Some(format!("ACCOUNTDISABLE (userAccountControl {bits})"));
    }
    let name = attributes.disabled.as_deref()?;
    let values = entry.values(name);
    let matched = if attributes.disabled_values.is_empty() {
        values.first()
    } else {
        values.iter().find(|value| {
            attributes
                .disabled_values
                .iter()
                .any(|wanted| wanted.eq_ignore_ascii_case(value.trim()))
        })
    };
    matched.map(|value| format!("{name}={value}"))
}

/// An entry under the group base as a group (without its members).
pub fn to_group(entry: &Entry, attributes: &Attributes) -> Option<SourceGroup> {
    let id = entry.id(attributes)?;
    let name = entry
        .first(&attributes.group_name)
        .map(str::to_string)
        .unwrap_or_else(|| entry.dn.clone());
    let mut group = SourceGroup::new(id, name);
    group.attributes = BTreeMap::from([("dn".to_string(), entry.dn.clone().into())]);
    Some(group)
}

/// A `uniqueMember` value may carry an optional uid (`dn#'0101'B`).
pub fn member_dn(value: &str) -> &str {
    match value.rfind("#'") {
        Some(at) if value.ends_with("'B") => &value[..at],
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::LdapSettings;
    use serde_json::json;

    fn attributes(flavor: &str) -> Attributes {
        LdapSettings::parse(&json!({
            "url": "ldap://127.0.0.1", "flavor": flavor,
            "user_base_dn": "ou=people,dc=example,dc=com",
            "group_base_dn": "ou=groups,dc=example,dc=com",
            "attributes": {"disabled": "employeeType", "disabled_values": ["disabled"]},
        }))
        .unwrap()
        .attributes
    }

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> Entry {
        Entry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn an_openldap_person_becomes_a_user_with_every_mapped_field() {
        let person = entry(
            "uid=ada,ou=people,dc=example,dc=com",
            &[
                ("entryUUID", &["2f1c0e7a-0000-4000-8000-000000000001"]),
                ("uid", &["ada"]),
                ("cn", &["Ada Lovelace"]),
                ("givenName", &["Ada"]),
                ("sn", &["Lovelace"]),
                ("mail", &["ada@example.com", "countess@example.com"]),
            ],
        );
        let user = to_user(&person, &attributes("openldap"), Flavor::Openldap).unwrap();
        assert_eq!(user.external_id, "2f1c0e7a-0000-4000-8000-000000000001");
        assert_eq!(user.user_name, "ada");
        assert_eq!(user.display_name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(user.primary_email(), Some("ada@example.com"));
        assert_eq!(user.emails.len(), 2);
        assert!(user.active);
        assert_eq!(user.attributes["dn"], "uid=ada,ou=people,dc=example,dc=com");
    }

    #[test]
    fn attribute_names_match_whatever_case_the_server_uses() {
        let person = entry(
            "uid=bo,ou=people,dc=example,dc=com",
            &[("entryuuid", &["id-bo"]), ("UID", &["bo"])],
        );
        let user = to_user(&person, &attributes("openldap"), Flavor::Openldap).unwrap();
        assert_eq!(
            (user.external_id.as_str(), user.user_name.as_str()),
            ("id-bo", "bo")
        );
    }

    #[test]
    fn a_configured_disabled_attribute_deactivates_and_says_why() {
        let person = entry(
            "uid=cy,ou=people,dc=example,dc=com",
            &[
                ("entryUUID", &["id-cy"]),
                ("uid", &["cy"]),
                ("employeeType", &["Disabled"]),
            ],
        );
        let user = to_user(&person, &attributes("openldap"), Flavor::Openldap).unwrap();
        assert!(!user.active);
        assert_eq!(user.raw_status.as_deref(), Some("employeeType=Disabled"));
        let contractor = entry(
            "uid=di,ou=people,dc=example,dc=com",
            &[
                ("entryUUID", &["id-di"]),
                ("uid", &["di"]),
                ("employeeType", &["contractor"]),
            ],
        );
        assert!(
            to_user(&contractor, &attributes("openldap"), Flavor::Openldap)
                .unwrap()
                .active
        );
    }

    #[test]
    fn an_ad_account_with_the_disable_bit_is_inactive_and_its_guid_reads_like_ad_tools() {
        let mut account = entry(
            "CN=Eve,OU=Staff,DC=corp,DC=example,DC=com",
            &[
                ("sAMAccountName", &["eve"]),
                ("userAccountControl", &["514"]),
            ],
        );
        account.bin_attrs.insert(
            "objectGUID".into(),
            vec![vec![
                0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34,
                0x56, 0x78,
            ]],
        );
        let user = to_user(
            &account,
            &attributes("active_directory"),
            Flavor::ActiveDirectory,
        )
        .unwrap();
        assert_eq!(user.external_id, "12345678-1234-5678-9abc-def012345678");
        assert!(!user.active);
        assert_eq!(
            user.raw_status.as_deref(),
            Some("ACCOUNTDISABLE (userAccountControl 514)")
        );
        account
            .attrs
            .insert("userAccountControl".into(), vec!["512".into()]);
        assert!(
            to_user(
                &account,
                &attributes("active_directory"),
                Flavor::ActiveDirectory
            )
            .unwrap()
            .active
        );
    }

    #[test]
    fn entries_without_an_id_or_a_user_name_are_skipped_with_the_reason() {
        let no_uid = entry("cn=svc,dc=example,dc=com", &[("entryUUID", &["x"])]);
        assert_eq!(
            to_user(&no_uid, &attributes("openldap"), Flavor::Openldap),
            Err(Skipped::NoUserName)
        );
        let no_id = entry("cn=svc,dc=example,dc=com", &[("uid", &["svc"])]);
        assert_eq!(
            to_user(&no_id, &attributes("openldap"), Flavor::Openldap),
            Err(Skipped::NoId)
        );
    }

    #[test]
    fn ranged_member_values_say_where_the_next_range_starts() {
        let first = entry("cn=big", &[("member;range=0-1499", &["a", "b"])]);
        assert_eq!(
            first.ranged_values("member"),
            (vec!["a".into(), "b".into()], Some(1500))
        );
        let last = entry("cn=big", &[("member;range=1500-*", &["c"])]);
        assert_eq!(last.ranged_values("member"), (vec!["c".into()], None));
        let plain = entry("cn=small", &[("member", &["d"])]);
        assert_eq!(plain.ranged_values("member"), (vec!["d".into()], None));
    }

    #[test]
    fn dns_compare_without_case_or_spaces_and_unique_member_uids_are_dropped() {
        assert_eq!(
            dn_key("UID=Ada, OU=People,dc=Example, dc = com"),
            "uid=ada,ou=people,dc=example,dc=com"
        );
        assert_eq!(
            member_dn("uid=ada,dc=example#'0101'B"),
            "uid=ada,dc=example"
        );
        assert_eq!(member_dn("uid=ada,dc=example"), "uid=ada,dc=example");
    }

    #[test]
    fn generalized_times_of_both_servers_compare_by_their_digits() {
        assert_eq!(
            time_key("20261124085705Z").as_deref(),
            Some("20261124085705")
        );
        assert_eq!(
            time_key("20261124085705.0Z").as_deref(),
            Some("20261124085705")
        );
        assert_eq!(time_key("2026"), None);
    }
}
