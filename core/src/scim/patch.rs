//! PATCH (RFC 7644 §3.5.2) applied to a resource's JSON, purely. Operations
//! apply in order, all or nothing. Group `members` operations are not applied
//! to the document: they come back as [`MemberOp`]s so a group of any size is
//! changed edge by edge, never loaded or rewritten whole.
//!
//! Tolerated client habits: capitalised op names (`Replace`), booleans sent
//! as strings (`"False"`), no-path values whose keys are paths
//! (`{"name.givenName": ...}`), Entra's `remove members` with a value list,
//! the resource's own `id` sent back (Okta's group rename), and filtered
//! paths that name an element not there yet: an `add` or `replace` creates
//! it when the filter describes one (`emails[type eq "work"].value`: Entra
//! relies on it), else answers `noTarget`.
//!
//! Refused with `mutability` (RFC 7643 §7, RFC 7644 §3.5.2): changing `id`
//! to another value, any operation on `meta`, on a User's `groups`, and
//! removing a required attribute.

use super::error::{ScimError, ScimResult};
use super::filter::{self, AttrPath, CompareOp, Filter};
use super::schema;
use serde_json::{Map, Value};

/// A change to a group's member list, by member id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOp {
    Add(Vec<String>),
    Remove(Vec<String>),
    RemoveAll,
    Replace(Vec<String>),
}

/// The document after the operations, and the member changes in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    pub resource: Value,
    pub members: Vec<MemberOp>,
    /// The member objects the operations sent, by id, as given.
    pub member_objects: std::collections::BTreeMap<String, Value>,
}

/// Whether the resource is a group (its `members` are handled as [`MemberOp`]s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// A PATCH path: `attr`, `attr.sub`, `attr[filter]`, `attr[filter].sub`, each
/// optionally URN-qualified.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attribute: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

pub fn parse_path(text: &str) -> ScimResult<PatchPath> {
    let text = text.trim();
    let invalid = |detail: String| ScimError::invalid_path(detail);
    if let Some(open) = text.find('[') {
        let close = text
            .rfind(']')
            .ok_or_else(|| invalid(format!("missing \"]\" in path \"{text}\"")))?;
        if close < open {
            return Err(invalid(format!("invalid path \"{text}\"")));
        }
        let attribute = filter::parse_attr_path(&text[..open]).map_err(|e| invalid(e.detail))?;
        let inner = filter::parse(&text[open + 1..close])
            .map_err(|e| invalid(format!("invalid value filter in path: {}", e.detail)))?;
        let rest = &text[close + 1..];
        let sub = match rest.strip_prefix('.') {
            Some(sub)
                if !sub.is_empty()
                    && sub
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$') =>
            {
                Some(sub.to_string())
            }
            None if rest.is_empty() => None,
            _ => return Err(invalid(format!("invalid path \"{text}\""))),
        };
        if attribute.sub.is_some() {
            return Err(invalid(format!("invalid path \"{text}\"")));
        }
        return Ok(PatchPath {
            attribute,
            filter: Some(inner),
            sub,
        });
    }
    // A bare extension URN names the whole extension object.
    if text.len() > 4 && text[..4].eq_ignore_ascii_case("urn:") && is_extension_urn(text) {
        return Ok(PatchPath {
            attribute: AttrPath {
                urn: None,
                name: text.to_string(),
                sub: None,
            },
            filter: None,
            sub: None,
        });
    }
    let attribute = filter::parse_attr_path(text).map_err(|e| invalid(e.detail))?;
    Ok(PatchPath {
        attribute,
        filter: None,
        sub: None,
    })
}

/// A whole schema extension (`urn:...:enterprise:2.0:User`), as opposed to an
/// attribute in one (`urn:...:enterprise:2.0:User:manager`): schema names
/// start with a capital letter, attribute names do not.
fn is_extension_urn(text: &str) -> bool {
    text.eq_ignore_ascii_case(schema::ENTERPRISE_URN)
        || (text.to_ascii_lowercase().contains(":extension:")
            && text
                .rsplit(':')
                .next()
                .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_uppercase())))
}

/// What a PATCH may do to an attribute the server owns (RFC 7643 §7:
/// `readOnly` and `immutable`).
enum Mutability {
    /// `schemas`: not an attribute to change; an operation on it is ignored.
    Ignored,
    /// `id`: an operation that sends the resource's own id changes nothing
    /// and is accepted (Okta's group rename sends it); any other is refused.
    OwnId,
    /// `meta`, and `groups` on a User: refused with `mutability`.
    ReadOnly,
    Writable,
}

fn mutability(kind: Kind, name: &str) -> Mutability {
    match name.to_ascii_lowercase().as_str() {
        "schemas" => Mutability::Ignored,
        "id" => Mutability::OwnId,
        "meta" => Mutability::ReadOnly,
        "groups" if kind == Kind::User => Mutability::ReadOnly,
        _ => Mutability::Writable,
    }
}

/// Attributes that must stay present.
fn required(kind: Kind, name: &str) -> bool {
    match kind {
        Kind::User => name.eq_ignore_ascii_case("userName"),
        Kind::Group => name.eq_ignore_ascii_case("displayName"),
    }
}

/// Applies a PatchOp body to `resource`.
pub fn apply(resource: &Value, body: &Value, kind: Kind) -> ScimResult<Patched> {
    let operations = filter::get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a PatchOp body needs an \"Operations\" array"))?;
    if let Some(schemas) = body.get("schemas").and_then(Value::as_array)
        && !schemas
            .iter()
            .any(|s| s.as_str() == Some(schema::PATCH_URN))
    {
        return Err(ScimError::invalid_syntax(format!(
            "schemas must contain {}",
            schema::PATCH_URN
        )));
    }
    let mut patched = Patched {
        resource: resource.clone(),
        members: Vec::new(),
        member_objects: Default::default(),
    };
    for (index, operation) in operations.iter().enumerate() {
        let op = match filter::get_ci(operation, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("add") => Op::Add,
            Some("replace") => Op::Replace,
            Some("remove") => Op::Remove,
            other => {
                return Err(ScimError::invalid_syntax(format!(
                    "operation {index}: op must be add, replace or remove, got {other:?}"
                )));
            }
        };
        let path = filter::get_ci(operation, "path")
            .and_then(Value::as_str)
            .filter(|p| !p.trim().is_empty());
        let value = filter::get_ci(operation, "value").cloned();
        match path {
            Some(path) => apply_with_path(&mut patched, kind, op, &parse_path(path)?, value)?,
            None => {
                if op == Op::Remove {
                    return Err(ScimError::no_target(format!(
                        "operation {index}: remove needs a path"
                    )));
                }
                let Some(Value::Object(fields)) = value else {
                    return Err(ScimError::invalid_value(format!(
                        "operation {index}: without a path the value must be an object"
                    )));
                };
                for (key, field_value) in fields {
                    if is_extension_urn(&key) && field_value.is_object() {
                        let path = PatchPath {
                            attribute: AttrPath {
                                urn: None,
                                name: key.clone(),
                                sub: None,
                            },
                            filter: None,
                            sub: None,
                        };
                        apply_with_path(&mut patched, kind, op, &path, Some(field_value))?;
                    } else {
                        apply_with_path(
                            &mut patched,
                            kind,
                            op,
                            &parse_path(&key)?,
                            Some(field_value),
                        )?;
                    }
                }
            }
        }
    }
    Ok(patched)
}

fn member_ids(value: &Value) -> ScimResult<Vec<String>> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![value],
        Value::Null => Vec::new(),
        _ => {
            return Err(ScimError::invalid_value(
                "members must be a list of {\"value\": id}",
            ));
        }
    };
    items
        .into_iter()
        .map(|item| match filter::get_ci(item, "value") {
            Some(Value::String(id)) => Ok(id.clone()),
            _ => Err(ScimError::invalid_value(
                "each member needs a string \"value\"",
            )),
        })
        .collect()
}

/// Ids named by `value eq "x" [or value eq "y" ...]`.
fn ids_in_member_filter(filter: &Filter) -> ScimResult<Vec<String>> {
    match filter {
        Filter::Compare(path, CompareOp::Eq, Value::String(id)) if path.key() == "value" => {
            Ok(vec![id.clone()])
        }
        Filter::Or(left, right) => {
            let mut ids = ids_in_member_filter(left)?;
            ids.extend(ids_in_member_filter(right)?);
            Ok(ids)
        }
        _ => Err(ScimError::invalid_path(
            "member filters may only use value eq \"<id>\", joined by or",
        )),
    }
}

fn apply_with_path(
    patched: &mut Patched,
    kind: Kind,
    op: Op,
    path: &PatchPath,
    value: Option<Value>,
) -> ScimResult<()> {
    let name = &path.attribute.name;
    if path.attribute.urn.is_none() {
        let refused = || {
            ScimError::mutability(format!(
                "{name} is read-only and cannot be changed by PATCH"
            ))
        };
        match mutability(kind, name) {
            Mutability::Ignored => return Ok(()),
            Mutability::OwnId => {
                let own = filter::get_ci(&patched.resource, "id");
                return match (op, &value) {
                    (Op::Add | Op::Replace, Some(sent)) if own == Some(sent) => Ok(()),
                    _ => Err(refused()),
                };
            }
            Mutability::ReadOnly => return Err(refused()),
            Mutability::Writable => {}
        }
    }
    if kind == Kind::Group && path.attribute.urn.is_none() && name.eq_ignore_ascii_case("members") {
        return member_operation(patched, op, path, value);
    }
    if op != Op::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "{op:?} of {name} needs a value"
        )));
    }
    let value = value.map(|v| normalise(&path.attribute, path.sub.as_deref(), v));
    let container = container_mut(&mut patched.resource, &path.attribute, op != Op::Remove)?;
    let Some(container) = container else {
        return Ok(());
    };
    let key = existing_key(container, name);

    match (&path.filter, &path.attribute.sub) {
        (None, None) => match op {
            Op::Remove => {
                if required(kind, name) && path.attribute.urn.is_none() {
                    return Err(ScimError::mutability(format!(
                        "{name} is required and cannot be removed"
                    )));
                }
                if let (Some(Value::Array(items)), Some(Value::Array(to_remove))) =
                    (container.get_mut(&key), value.as_ref())
                {
                    // Remove listed values only (a value list on remove).
                    items.retain(|item| !to_remove.iter().any(|r| same_value(item, r)));
                } else {
                    container.remove(&key);
                }
            }
            Op::Replace => {
                let value = value.unwrap_or(Value::Null);
                match (container.get_mut(&key), value) {
                    (Some(Value::Object(existing)), Value::Object(new)) => {
                        for (sub, sub_value) in new {
                            let sub_key = existing_key(existing, &sub);
                            existing.insert(sub_key, sub_value);
                        }
                    }
                    (_, value) => {
                        container.insert(key, value);
                    }
                }
            }
            Op::Add => {
                let value = value.unwrap_or(Value::Null);
                match (container.get_mut(&key), value) {
                    (Some(Value::Array(items)), Value::Array(new)) => {
                        for item in new {
                            if !items.iter().any(|existing| same_value(existing, &item)) {
                                items.push(item);
                            }
                        }
                    }
                    (Some(Value::Array(items)), item @ Value::Object(_)) => {
                        if !items.iter().any(|existing| same_value(existing, &item)) {
                            items.push(item);
                        }
                    }
                    (Some(Value::Object(existing)), Value::Object(new)) => {
                        for (sub, sub_value) in new {
                            let sub_key = existing_key(existing, &sub);
                            existing.insert(sub_key, sub_value);
                        }
                    }
                    (_, value) => {
                        container.insert(key, value);
                    }
                }
            }
        },
        (None, Some(sub)) => {
            // attr.sub: on a complex attribute, or on every value of a multi-valued one.
            match container.get_mut(&key) {
                Some(Value::Array(items)) => {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        set_or_remove(item, sub, op, value.clone());
                    }
                }
                Some(Value::Object(object)) => set_or_remove(object, sub, op, value),
                _ if op == Op::Remove => {}
                _ => {
                    let mut object = Map::new();
                    set_or_remove(&mut object, sub, op, value);
                    container.insert(key, Value::Object(object));
                }
            }
        }
        (Some(value_filter), _) => {
            let sub = path.sub.as_deref();
            let prefix = name.to_ascii_lowercase();
            let case_exact = |s: &str| schema::case_exact(&format!("{prefix}.{s}"));
            let items = match container.get_mut(&key) {
                Some(Value::Array(items)) => items,
                _ if op == Op::Remove => return Ok(()),
                _ => {
                    container.insert(key.clone(), Value::Array(Vec::new()));
                    match container.get_mut(&key) {
                        Some(Value::Array(items)) => items,
                        _ => unreachable!("just inserted an array"),
                    }
                }
            };
            let matching: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, item)| filter::matches(value_filter, item, &case_exact))
                .map(|(index, _)| index)
                .collect();
            match op {
                Op::Remove => {
                    if let Some(sub) = sub {
                        for index in matching {
                            if let Some(object) = items[index].as_object_mut() {
                                set_or_remove(object, sub, Op::Remove, None);
                            }
                        }
                    } else {
                        let mut index = 0;
                        items.retain(|_| {
                            let keep = !matching.contains(&index);
                            index += 1;
                            keep
                        });
                    }
                }
                Op::Add | Op::Replace => {
                    if matching.is_empty() {
                        // Entra: a filtered path to an element not there yet creates it.
                        let Some(mut element) = element_from_filter(value_filter) else {
                            return Err(ScimError::no_target(format!(
                                "no value of {name} matches the path filter"
                            )));
                        };
                        match (sub, value) {
                            (Some(sub), value) => {
                                set_or_remove(&mut element, sub, Op::Replace, value)
                            }
                            (None, Some(Value::Object(fields))) => element.extend(fields),
                            (None, _) => {
                                return Err(ScimError::invalid_value(
                                    "a filtered path without a sub-attribute needs an object value",
                                ));
                            }
                        }
                        items.push(Value::Object(element));
                    } else {
                        for index in matching {
                            match (sub, items[index].as_object_mut(), value.clone()) {
                                (Some(sub), Some(object), value) => {
                                    set_or_remove(object, sub, Op::Replace, value)
                                }
                                (None, Some(object), Some(Value::Object(fields))) => {
                                    if op == Op::Replace {
                                        object.clear();
                                    }
                                    object.extend(fields);
                                }
                                _ => {
                                    return Err(ScimError::invalid_value(format!(
                                        "cannot set a value of {name} from this operation"
                                    )));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn member_operation(
    patched: &mut Patched,
    op: Op,
    path: &PatchPath,
    value: Option<Value>,
) -> ScimResult<()> {
    if let Some(Value::Array(items)) = &value {
        for item in items {
            if let Some(id) = filter::get_ci(item, "value").and_then(Value::as_str) {
                patched.member_objects.insert(id.to_string(), item.clone());
            }
        }
    }
    let change = match (op, &path.filter, value) {
        (Op::Remove, Some(member_filter), _) => {
            MemberOp::Remove(ids_in_member_filter(member_filter)?)
        }
        (Op::Remove, None, Some(value)) if !value.is_null() => {
            MemberOp::Remove(member_ids(&value)?)
        }
        (Op::Remove, None, _) => MemberOp::RemoveAll,
        (Op::Add, None, Some(value)) => MemberOp::Add(member_ids(&value)?),
        (Op::Replace, None, Some(value)) => MemberOp::Replace(member_ids(&value)?),
        (_, None, None) => return Err(ScimError::invalid_value("member operations need a value")),
        (_, Some(_), _) => {
            return Err(ScimError::invalid_path(
                "add and replace of members take a list, not a filtered path",
            ));
        }
    };
    patched.members.push(change);
    Ok(())
}

/// For `emails[type eq "work"]` with no match: the element `{"type": "work"}`.
fn element_from_filter(value_filter: &Filter) -> Option<Map<String, Value>> {
    let mut element = Map::new();
    fn collect(filter: &Filter, element: &mut Map<String, Value>) -> bool {
        match filter {
            Filter::Compare(path, CompareOp::Eq, value)
                if path.sub.is_none() && path.urn.is_none() =>
            {
                element.insert(path.name.clone(), value.clone());
                true
            }
            Filter::And(left, right) => collect(left, element) && collect(right, element),
            _ => false,
        }
    }
    collect(value_filter, &mut element).then_some(element)
}

fn set_or_remove(object: &mut Map<String, Value>, sub: &str, op: Op, value: Option<Value>) {
    let key = existing_key(object, sub);
    match (op, value) {
        (Op::Remove, _) | (_, None) => {
            object.remove(&key);
        }
        (_, Some(value)) => {
            object.insert(key, value);
        }
    }
}

/// The object an attribute lives in: the resource, or its extension object.
fn container_mut<'a>(
    resource: &'a mut Value,
    attribute: &AttrPath,
    create: bool,
) -> ScimResult<Option<&'a mut Map<String, Value>>> {
    let root = resource
        .as_object_mut()
        .ok_or_else(|| ScimError::invalid_value("the resource is not an object"))?;
    let Some(urn) = &attribute.urn else {
        return Ok(Some(root));
    };
    if urn.eq_ignore_ascii_case(schema::USER_URN) || urn.eq_ignore_ascii_case(schema::GROUP_URN) {
        return Ok(Some(root));
    }
    let key = existing_key(root, urn);
    if !root.contains_key(&key) {
        if !create {
            return Ok(None);
        }
        root.insert(key.clone(), Value::Object(Map::new()));
    }
    match root.get_mut(&key) {
        Some(Value::Object(extension)) => Ok(Some(extension)),
        _ => Err(ScimError::invalid_path(format!("{urn} is not an object"))),
    }
}

/// The key as the resource spells it, else as given.
fn existing_key(object: &Map<String, Value>, name: &str) -> String {
    object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// Two values of a multi-valued attribute are the same if their `value`s are
/// (or, without `value`, if they are equal).
fn same_value(left: &Value, right: &Value) -> bool {
    match (
        filter::get_ci(left, "value"),
        filter::get_ci(right, "value"),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => left == right,
    }
}

/// Booleans sent as strings ("True", "false") become booleans, and a bare
/// manager id becomes `{"value": id}`.
pub fn normalise(attribute: &AttrPath, sub: Option<&str>, value: Value) -> Value {
    let leaf = sub
        .or(attribute.sub.as_deref())
        .unwrap_or(&attribute.name)
        .to_ascii_lowercase();
    match value {
        Value::String(text) if matches!(leaf.as_str(), "active" | "primary") => {
            match text.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text),
            }
        }
        Value::String(id) if leaf == "manager" && sub.is_none() => serde_json::json!({"value": id}),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, field)| {
                    let field = normalise(&AttrPath::simple(&key), None, field);
                    (key, field)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| normalise(&AttrPath::simple(&leaf), None, item))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "id": "2819c223",
            "userName": "bjensen",
            "active": true,
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Tour"}
        })
    }

    fn patch(resource: Value, operations: Value, kind: Kind) -> ScimResult<Patched> {
        apply(
            &resource,
            &json!({"schemas": [schema::PATCH_URN], "Operations": operations}),
            kind,
        )
    }

    fn check(operations: Value, expected: Value) {
        let patched = patch(user(), operations.clone(), Kind::User)
            .unwrap_or_else(|e| panic!("{operations}: {e}"));
        assert_eq!(patched.resource, expected, "{operations}");
    }

    #[test]
    fn entra_deactivation_with_capitalised_op_and_string_boolean() {
        let mut expected = user();
        expected["active"] = json!(false);
        check(
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
            expected,
        );
    }

    #[test]
    fn okta_deactivation_with_no_path() {
        let mut expected = user();
        expected["active"] = json!(false);
        check(
            json!([{"op": "replace", "value": {"active": false}}]),
            expected,
        );
    }

    #[test]
    fn no_path_values_with_path_keys_and_urns() {
        let mut expected = user();
        expected["name"]["givenName"] = json!("Babs");
        expected["displayName"] = json!("Babs J");
        expected["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"] =
            json!("42");
        check(
            json!([{"op": "replace", "value": {
                "name.givenName": "Babs",
                "displayName": "Babs J",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "42"
            }}]),
            expected,
        );
    }

    #[test]
    fn filtered_paths_replace_matching_values_and_create_missing_ones() {
        let mut expected = user();
        expected["emails"][0]["value"] = json!("babs@example.com");
        check(
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "babs@example.com"}]),
            expected,
        );

        let mut expected = user();
        expected["phoneNumbers"] = json!([{"type": "mobile", "value": "+1 555"}]);
        check(
            json!([{"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"}]),
            expected,
        );
    }

    #[test]
    fn add_merges_multi_valued_attributes_without_duplicates() {
        let mut expected = user();
        expected["emails"]
            .as_array_mut()
            .unwrap()
            .push(json!({"value": "b@home.org", "type": "home"}));
        check(
            json!([{"op": "add", "path": "emails", "value": [{"value": "bjensen@example.com", "type": "work"}, {"value": "b@home.org", "type": "home"}]}]),
            expected,
        );
    }

    #[test]
    fn remove_by_filter_by_sub_attribute_and_whole() {
        let mut expected = user();
        expected["emails"] = json!([]);
        check(
            json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
            expected,
        );
        let mut expected = user();
        expected["name"]
            .as_object_mut()
            .unwrap()
            .remove("familyName");
        check(
            json!([{"op": "remove", "path": "name.familyName"}]),
            expected,
        );
        let mut expected = user();
        expected["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] = json!({});
        check(
            json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]),
            expected,
        );
    }

    #[test]
    fn manager_as_a_bare_id_becomes_complex() {
        let mut expected = user();
        expected["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"] =
            json!({"value": "m-1"});
        check(
            json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "m-1"}]),
            expected,
        );
    }

    #[test]
    fn the_resources_own_id_is_accepted_and_schemas_ignored() {
        let own = user()["id"].clone();
        check(
            json!([{"op": "replace", "value": {"id": own, "schemas": [schema::USER_URN]}}]),
            user(),
        );
    }

    #[test]
    fn read_only_and_immutable_attributes_are_refused_with_mutability() {
        let refused = |ops: Value, kind: Kind| {
            patch(user(), ops, kind)
                .unwrap_err()
                .scim_type
                .map(|t| t.as_str())
        };
        for ops in [
            json!([{"op": "replace", "value": {"id": "someone-else"}}]),
            json!([{"op": "replace", "path": "id", "value": "someone-else"}]),
            json!([{"op": "remove", "path": "id"}]),
            json!([{"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"}]),
            json!([{"op": "add", "value": {"meta": {}}}]),
            json!([{"op": "add", "path": "groups", "value": [{"value": "g1"}]}]),
        ] {
            assert_eq!(
                refused(ops.clone(), Kind::User),
                Some("mutability"),
                "{ops}"
            );
        }
    }

    #[test]
    fn errors_carry_the_right_scim_type() {
        let kind = |ops: Value| {
            patch(user(), ops, Kind::User)
                .unwrap_err()
                .scim_type
                .map(|t| t.as_str())
        };
        assert_eq!(kind(json!([{"op": "remove"}])), Some("noTarget"));
        assert_eq!(
            kind(json!([{"op": "remove", "path": "userName"}])),
            Some("mutability")
        );
        assert_eq!(
            kind(json!([{"op": "jump", "path": "active", "value": 1}])),
            Some("invalidSyntax")
        );
        assert_eq!(
            kind(json!([{"op": "replace", "path": "emails[type eq", "value": 1}])),
            Some("invalidPath")
        );
        assert_eq!(
            kind(json!([{"op": "replace", "value": "x"}])),
            Some("invalidValue")
        );
        assert_eq!(
            kind(
                json!([{"op": "replace", "path": "emails[type eq \"x\" or type eq \"y\"].value", "value": "v"}])
            ),
            Some("noTarget")
        );
        let no_operations = apply(
            &user(),
            &json!({"schemas": [schema::PATCH_URN]}),
            Kind::User,
        )
        .unwrap_err();
        assert_eq!(
            no_operations.scim_type.map(|t| t.as_str()),
            Some("invalidSyntax")
        );
    }

    #[test]
    fn group_member_operations_come_back_as_edge_changes() {
        let group = json!({"id": "g1", "displayName": "Eng"});
        let patched = patch(
            group,
            json!([
                {"op": "Add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]},
                {"op": "Remove", "path": "members", "value": [{"value": "u3"}]},
                {"op": "remove", "path": "members[value eq \"u4\" or value eq \"u5\"]"},
                {"op": "replace", "value": {"id": "g1", "displayName": "Engineering"}},
                {"op": "replace", "path": "members", "value": []},
                {"op": "remove", "path": "members"}
            ]),
            Kind::Group,
        )
        .unwrap();
        assert_eq!(
            patched.resource,
            json!({"id": "g1", "displayName": "Engineering"})
        );
        assert_eq!(
            patched.members,
            vec![
                MemberOp::Add(vec!["u1".into(), "u2".into()]),
                MemberOp::Remove(vec!["u3".into()]),
                MemberOp::Remove(vec!["u4".into(), "u5".into()]),
                MemberOp::Replace(vec![]),
                MemberOp::RemoveAll,
            ]
        );
    }
}
