//! SCIM User and Group documents <-> the reconciler's records, and the
//! rendering of stored rows as SCIM resources (with `meta`, `schemas` and
//! `attributes`/`excludedAttributes` projection).
//!
//! The client's document (less `id`, `meta`, `schemas`, `password` and other
//! read-only or write-only parts) is kept whole in the record's attributes
//! under `scim`, so unknown extension attributes survive a round trip; the
//! fields core understands (userName, name, emails, active) are also mapped
//! to the record.

use super::error::{ScimError, ScimResult};
use super::filter::{self, AttrPath};
use super::patch;
use super::schema::{ENTERPRISE_URN, GROUP_URN, USER_URN};
use chrono::{DateTime, SecondsFormat, Utc};
use idpsync_driver::{Email, SourceGroup, SourceUser};
use serde_json::{Map, Value, json};

/// Where the client's document is kept in a record's attributes.
pub const DOCUMENT_KEY: &str = "scim";

/// Keys a client may send but that are never stored.
fn dropped(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "id" | "meta" | "schemas" | "password" | "groups"
    )
}

/// The storable part of a client's document, with string booleans and bare
/// manager ids normalised. For groups, `members` is returned apart.
fn clean(document: &Value, keep_members: bool) -> ScimResult<(Map<String, Value>, Option<Value>)> {
    let Value::Object(fields) = document else {
        return Err(ScimError::invalid_syntax(
            "the resource must be a JSON object",
        ));
    };
    let mut stored = Map::new();
    let mut members = None;
    for (key, value) in fields {
        if dropped(key) {
            continue;
        }
        if key.eq_ignore_ascii_case("members") && !keep_members {
            members = Some(value.clone());
            continue;
        }
        // "" from template-driven clients means "not set".
        if value.as_str() == Some("") {
            continue;
        }
        let value = patch::normalise(&AttrPath::simple(key), None, value.clone());
        stored.insert(key.clone(), value);
    }
    Ok((stored, members))
}

fn text(document: &Map<String, Value>, key: &str) -> ScimResult<Option<String>> {
    match document
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .map(|(_, value)| value)
    {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(ScimError::invalid_value(format!(
            "{key} must be a string, got {other}"
        ))),
    }
}

/// The User schema's string attributes (RFC 7643 §4.1.1): anything but a
/// string (or null) is `invalidValue`.
const USER_STRINGS: [&str; 10] = [
    "userName",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "externalId",
];

/// The User schema's multi-valued attributes (RFC 7643 §4.1.2): a list.
const USER_LISTS: [&str; 8] = [
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
];

/// Refuses a User document whose attributes have the wrong type, that
/// carries a Group's `members`, or that sets the read-only `groups`
/// (an empty list, as Okta sends on create, sets nothing).
fn check_user_document(document: &Value) -> ScimResult<()> {
    let Value::Object(fields) = document else {
        return Ok(());
    };
    for (key, value) in fields {
        let is = |names: &[&str]| names.iter().any(|name| name.eq_ignore_ascii_case(key));
        match value {
            Value::Null => {}
            Value::String(_) if is(&USER_STRINGS) => {}
            _ if is(&USER_STRINGS) => {
                return Err(ScimError::invalid_value(format!(
                    "{key} must be a string, got {value}"
                )));
            }
            Value::Array(_) if is(&USER_LISTS) => {}
            _ if is(&USER_LISTS) => {
                return Err(ScimError::invalid_value(format!("{key} must be a list")));
            }
            _ if key.eq_ignore_ascii_case("members") => {
                return Err(ScimError::invalid_value(
                    "members is an attribute of a Group, not of a User",
                ));
            }
            Value::Array(groups) if key.eq_ignore_ascii_case("groups") && groups.is_empty() => {}
            _ if key.eq_ignore_ascii_case("groups") => {
                return Err(ScimError::mutability(
                    "groups is read-only: change a group's members instead",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a document (PUT) whose `id` is not the resource's own: `id` is
/// immutable (RFC 7643 §3.1).
pub fn check_own_id(document: &Value, id: &str) -> ScimResult<()> {
    match filter::get_ci(document, "id") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(sent)) if sent == id => Ok(()),
        Some(other) => Err(ScimError::mutability(format!(
            "id is immutable: this resource is \"{id}\", the body says {other}"
        ))),
    }
}

/// A SCIM User document as the record the reconciler stores under `id`.
pub fn user_from_document(id: &str, document: &Value) -> ScimResult<SourceUser> {
    check_user_document(document)?;
    let (stored, _) = clean(document, true)?;
    let user_name = text(&stored, "userName")?
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("userName is required"))?;
    let active = match stored
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("active"))
        .map(|(_, v)| v)
    {
        None | Some(Value::Null) => true,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "active must be a boolean, got {other}"
            )));
        }
    };
    let object = Value::Object(stored.clone());
    let name = filter::get_ci(&object, "name")
        .cloned()
        .unwrap_or(Value::Null);
    if !(name.is_null() || name.is_object()) {
        return Err(ScimError::invalid_value("name must be an object"));
    }
    let name_part = |key: &str| {
        filter::get_ci(&name, key)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let emails = match filter::get_ci(&object, "emails") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match filter::get_ci(item, "value") {
                Some(Value::String(value)) => Ok(Email {
                    value: value.clone(),
                    kind: filter::get_ci(item, "type")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    primary: filter::get_ci(item, "primary")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                }),
                _ => Err(ScimError::invalid_value("each email needs a string value")),
            })
            .collect::<ScimResult<Vec<_>>>()?,
        Some(_) => return Err(ScimError::invalid_value("emails must be a list")),
    };
    let mut user = SourceUser::new(id, user_name);
    user.display_name = text(&stored, "displayName")?;
    user.given_name = name_part("givenName");
    user.family_name = name_part("familyName");
    user.emails = emails;
    user.active = active;
    user.raw_status = Some(if active { "active" } else { "inactive" }.into());
    user.attributes.insert(DOCUMENT_KEY.into(), object);
    Ok(user)
}

/// A SCIM Group document as a record, and its `members` (objects with a
/// string `value`) if it lists them.
pub fn group_from_document(
    id: &str,
    document: &Value,
) -> ScimResult<(SourceGroup, Option<Vec<Value>>)> {
    let (stored, members) = clean(document, false)?;
    let display_name = text(&stored, "displayName")?
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    let members = match members {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| match filter::get_ci(item, "value") {
                    Some(Value::String(_)) => Ok(item.clone()),
                    _ => Err(ScimError::invalid_value("each member needs a string value")),
                })
                .collect::<ScimResult<Vec<_>>>()?,
        ),
        Some(_) => return Err(ScimError::invalid_value("members must be a list")),
    };
    let mut group = SourceGroup::new(id, display_name);
    group
        .attributes
        .insert(DOCUMENT_KEY.into(), Value::Object(stored));
    Ok((group, members))
}

/// What a stored row needs to render.
pub struct Meta<'a> {
    pub id: &'a str,
    pub created: DateTime<Utc>,
    pub last_modified: DateTime<Utc>,
    pub version: i64,
    pub location: String,
}

/// The weak ETag of a version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn render(kind: &str, core_urn: &str, mut document: Map<String, Value>, meta: &Meta<'_>) -> Value {
    let mut schemas = vec![Value::String(core_urn.into())];
    for key in document.keys() {
        if key.len() > 4 && key[..4].eq_ignore_ascii_case("urn:") {
            schemas.push(Value::String(key.clone()));
        }
    }
    document.insert("schemas".into(), Value::Array(schemas));
    document.insert("id".into(), Value::String(meta.id.into()));
    document.insert(
        "meta".into(),
        json!({
            "resourceType": kind,
            "created": meta.created.to_rfc3339_opts(SecondsFormat::Millis, true),
            "lastModified": meta.last_modified.to_rfc3339_opts(SecondsFormat::Millis, true),
            "location": meta.location,
            "version": etag(meta.version),
        }),
    );
    Value::Object(document)
}

/// Renders a stored user's document (userName and active from the record).
pub fn render_user(
    document: Option<&Value>,
    user_name: &str,
    active: bool,
    meta: &Meta<'_>,
) -> Value {
    let mut fields = document
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let active_sent = fields.keys().any(|key| key.eq_ignore_ascii_case("active"));
    fields.retain(|key, _| {
        !key.eq_ignore_ascii_case("userName") && !key.eq_ignore_ascii_case("active")
    });
    fields.insert("userName".into(), Value::String(user_name.into()));
    // An unset `active` stays unset (the user counts as active); an inactive
    // user always says so.
    if active_sent || !active {
        fields.insert("active".into(), Value::Bool(active));
    }
    if fields.contains_key(ENTERPRISE_URN)
        && fields[ENTERPRISE_URN]
            .as_object()
            .is_some_and(|o| o.is_empty())
    {
        fields.remove(ENTERPRISE_URN);
    }
    render("User", USER_URN, fields, meta)
}

/// Member ids a client listed that name no User or Group of the connection.
/// They are kept on the group's document and shown back, but make no
/// membership: nothing exists to be a member.
pub fn unresolved_members(document: Option<&Value>) -> Vec<Value> {
    document
        .and_then(|doc| filter::get_ci(doc, "members"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The `value` of a member object.
pub fn member_id(member: &Value) -> Option<&str> {
    filter::get_ci(member, "value").and_then(Value::as_str)
}

/// Stores `members` (as the client sent them) as the group's unresolved members.
pub fn set_unresolved_members(group: &mut SourceGroup, members: &[Value]) {
    if let Some(Value::Object(document)) = group.attributes.get_mut(DOCUMENT_KEY) {
        if members.is_empty() {
            document.remove("members");
        } else {
            document.insert("members".into(), Value::Array(members.to_vec()));
        }
    }
}

/// One member as rendered.
pub struct MemberView {
    pub id: String,
    pub display: String,
    pub is_group: bool,
}

/// Renders a stored group; `members` is `None` when they were not loaded
/// (excluded by the client).
pub fn render_group(
    document: Option<&Value>,
    display_name: &str,
    members: Option<&[MemberView]>,
    base: &str,
    meta: &Meta<'_>,
) -> Value {
    let mut fields = document
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let unresolved = unresolved_members(document);
    fields.retain(|key, _| {
        !key.eq_ignore_ascii_case("displayName") && !key.eq_ignore_ascii_case("members")
    });
    fields.insert("displayName".into(), Value::String(display_name.into()));
    if let Some(members) = members {
        let mut rendered: Vec<Value> = members
            .iter()
            .map(|member| {
                let (kind, endpoint) = if member.is_group { ("Group", "Groups") } else { ("User", "Users") };
                json!({"value": member.id, "display": member.display, "type": kind, "$ref": format!("{base}/{endpoint}/{}", member.id)})
            })
            .collect();
        rendered.extend(unresolved);
        fields.insert("members".into(), Value::Array(rendered));
    }
    render("Group", GROUP_URN, fields, meta)
}

/// Applies `attributes` / `excludedAttributes` (RFC 7644 §3.9): `id` and
/// `schemas` are always returned.
pub fn project(resource: Value, attributes: &[String], excluded: &[String]) -> Value {
    let Value::Object(mut fields) = resource else {
        return resource;
    };
    let always = |key: &str| key == "id" || key == "schemas";
    let parsed = |list: &[String]| -> Vec<(Option<String>, String, Option<String>)> {
        list.iter()
            .filter_map(|item| filter::parse_attr_path(item.trim()).ok())
            .map(|path| {
                (
                    path.urn.map(|u| u.to_ascii_lowercase()),
                    path.name.to_ascii_lowercase(),
                    path.sub.map(|s| s.to_ascii_lowercase()),
                )
            })
            .collect()
    };
    // A path names a top-level key of the resource, or a key inside an extension.
    let top_key = |urn: &Option<String>, name: &str| -> String {
        match urn {
            Some(urn)
                if urn != &USER_URN.to_ascii_lowercase()
                    && urn != &GROUP_URN.to_ascii_lowercase() =>
            {
                urn.clone()
            }
            _ => name.to_string(),
        }
    };
    if !attributes.is_empty() {
        let wanted = parsed(attributes);
        let mut kept = Map::new();
        for (key, value) in fields {
            let lower = key.to_ascii_lowercase();
            // A bare URN in the list names the whole extension.
            let whole_extension = attributes
                .iter()
                .any(|a| a.trim().eq_ignore_ascii_case(&key));
            if always(&key) || whole_extension {
                kept.insert(key, value);
                continue;
            }
            let mut whole = false;
            let mut subs = Vec::new();
            for (urn, name, sub) in &wanted {
                if top_key(urn, name) != lower {
                    continue;
                }
                let in_extension = urn.is_some() && top_key(urn, name) != *name;
                match (in_extension, sub) {
                    (true, _) => subs.push(name.clone()),
                    (false, None) => whole = true,
                    (false, Some(sub)) => subs.push(sub.clone()),
                }
            }
            if whole {
                kept.insert(key, value);
            } else if !subs.is_empty() {
                kept.insert(key, keep_subs(value, &subs));
            }
        }
        return Value::Object(kept);
    }
    for (urn, name, sub) in parsed(excluded) {
        let key = top_key(&urn, &name);
        let Some(actual) = fields
            .keys()
            .find(|k| k.to_ascii_lowercase() == key)
            .cloned()
        else {
            continue;
        };
        if always(&actual) {
            continue;
        }
        let inner = if urn.is_some() && key != name {
            Some(name.clone())
        } else {
            sub
        };
        match inner {
            None => {
                fields.remove(&actual);
            }
            Some(inner) => {
                if let Some(value) = fields.get_mut(&actual) {
                    drop_subs(value, &inner);
                }
            }
        }
    }
    Value::Object(fields)
}

fn keep_subs(value: Value, subs: &[String]) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .filter(|(k, _)| subs.contains(&k.to_ascii_lowercase()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| keep_subs(item, subs))
                .collect(),
        ),
        other => other,
    }
}

fn drop_subs(value: &mut Value, sub: &str) {
    match value {
        Value::Object(object) => object.retain(|k, _| k.to_ascii_lowercase() != sub),
        Value::Array(items) => items.iter_mut().for_each(|item| drop_subs(item, sub)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta<'static> {
        Meta {
            id: "u-1",
            created: DateTime::UNIX_EPOCH,
            last_modified: DateTime::UNIX_EPOCH,
            version: 3,
            location: "http://x/Users/u-1".into(),
        }
    }

    #[test]
    fn a_user_document_maps_to_a_record_and_keeps_unknown_extensions() {
        let document = json!({
            "schemas": [USER_URN, ENTERPRISE_URN, "urn:example:custom:2.0:User"],
            "id": "ignored", "meta": {"resourceType": "User"}, "password": "secret!",
            "userName": "Ann@Example.com", "active": "True", "externalId": "ann-1",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"value": "ann@example.com", "type": "work", "primary": true}],
            ENTERPRISE_URN: {"department": "R&D", "manager": "m-9"},
            "urn:example:custom:2.0:User": {"badge": 7},
            "nickName": ""
        });
        let user = user_from_document("u-1", &document).unwrap();
        assert_eq!(user.user_name, "Ann@Example.com");
        assert!(user.active);
        assert_eq!(user.given_name.as_deref(), Some("Ann"));
        assert_eq!(user.primary_email(), Some("ann@example.com"));
        let stored = &user.attributes[DOCUMENT_KEY];
        assert!(
            stored.get("password").is_none()
                && stored.get("id").is_none()
                && stored.get("nickName").is_none()
        );
        assert_eq!(stored[ENTERPRISE_URN]["manager"], json!({"value": "m-9"}));

        let rendered = render_user(Some(stored), &user.user_name, user.active, &meta());
        assert_eq!(rendered["id"], "u-1");
        assert_eq!(rendered["urn:example:custom:2.0:User"]["badge"], 7);
        assert_eq!(rendered["meta"]["version"], "W/\"3\"");
        assert_eq!(
            rendered["schemas"],
            json!([USER_URN, "urn:example:custom:2.0:User", ENTERPRISE_URN])
        );
    }

    #[test]
    fn bad_documents_are_invalid_values() {
        let error = |doc: Value| {
            user_from_document("x", &doc)
                .unwrap_err()
                .scim_type
                .map(|t| t.as_str())
        };
        assert_eq!(error(json!({"active": true})), Some("invalidValue"));
        assert_eq!(error(json!({"userName": 5})), Some("invalidValue"));
        assert_eq!(
            error(json!({"userName": "a", "active": "maybe"})),
            Some("invalidValue")
        );
        assert_eq!(error(json!(["not", "an", "object"])), Some("invalidSyntax"));
    }

    #[test]
    fn projection_keeps_asked_attributes_and_drops_excluded_ones() {
        let user = render_user(
            Some(
                &json!({"name": {"givenName": "Ann", "familyName": "Lee"}, "emails": [{"value": "a@x", "type": "work"}], ENTERPRISE_URN: {"department": "R&D", "costCenter": "7"}}),
            ),
            "ann",
            true,
            &meta(),
        );
        let only = project(
            user.clone(),
            &[
                "userName".into(),
                "name.familyName".into(),
                format!("{ENTERPRISE_URN}:department"),
            ],
            &[],
        );
        assert_eq!(
            only,
            json!({"id": "u-1", "schemas": user["schemas"], "userName": "ann", "name": {"familyName": "Lee"}, ENTERPRISE_URN: {"department": "R&D"}})
        );
        let without = project(
            user.clone(),
            &[],
            &[
                "emails".into(),
                "meta".into(),
                "id".into(),
                "name.givenName".into(),
            ],
        );
        assert!(without.get("emails").is_none() && without.get("meta").is_none());
        assert_eq!(without["id"], "u-1");
        assert_eq!(without["name"], json!({"familyName": "Lee"}));
    }
}
