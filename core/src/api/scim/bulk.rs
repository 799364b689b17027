//! `POST /Bulk` (RFC 7644 §3.7): operations in order, `bulkId:` references
//! resolved to the ids of resources created earlier in the request (an
//! operation whose reference is not yet known waits for a later pass; a
//! reference that never resolves is a 409), `failOnErrors` honoured, and the
//! advertised `maxOperations` and `maxPayloadSize` enforced with 413.

use super::service::{IfMatch, Projection, ResourceKind, ScimService};
use super::{AppState, authenticate, method_not_allowed, scim_json, service};
use crate::scim::{ScimError, ScimResult, schema};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;

pub async fn handle(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(connection): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    authenticate(&state, &headers, &connection).await?;
    if method != Method::POST {
        return Err(method_not_allowed());
    }
    let request = super::parse_body(&body, schema::BULK_MAX_PAYLOAD)?;
    let operations = request
        .get("Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a BulkRequest needs an \"Operations\" array"))?;
    if operations.len() > schema::BULK_MAX_OPERATIONS {
        return Err(ScimError::new(
            413,
            None,
            format!(
                "at most {} operations per bulk request",
                schema::BULK_MAX_OPERATIONS
            ),
        ));
    }
    let fail_on_errors = request
        .get("failOnErrors")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0);
    let scim = service(&state, &headers, &connection);

    let mut created: HashMap<String, String> = HashMap::new();
    let mut results: Vec<Option<Value>> = vec![None; operations.len()];
    let mut errors = 0u64;
    let mut pending: Vec<usize> = (0..operations.len()).collect();
    'passes: loop {
        let mut progressed = false;
        let mut waiting = Vec::new();
        for index in std::mem::take(&mut pending) {
            let operation = &operations[index];
            let resolved = resolve(operation, &created);
            let Some(operation) = resolved else {
                waiting.push(index);
                continue;
            };
            progressed = true;
            let result = run(&scim, &operation).await;
            if let Some(bulk_id) = operation.get("bulkId").and_then(Value::as_str)
                && let Ok((_, Some(resource))) = &result
                && let Some(id) = resource["id"].as_str()
            {
                created.insert(bulk_id.to_string(), id.to_string());
            }
            if result.is_err() {
                errors += 1;
            }
            results[index] = Some(response_entry(&operation, result));
            if fail_on_errors.is_some_and(|limit| errors >= limit) {
                pending = waiting;
                break 'passes;
            }
        }
        pending = waiting;
        if pending.is_empty() || !progressed {
            break;
        }
    }
    // References that never resolved (unknown or circular).
    for index in pending {
        if fail_on_errors.is_some_and(|limit| errors >= limit) {
            break;
        }
        errors += 1;
        results[index] = Some(response_entry(
            &operations[index],
            Err(ScimError::new(
                409,
                None,
                "a bulkId reference could not be resolved (unknown or circular)",
            )),
        ));
    }
    let body = json!({
        "schemas": [schema::BULK_RESPONSE_URN],
        "Operations": results.into_iter().flatten().collect::<Vec<_>>(),
    });
    Ok(scim_json(StatusCode::OK, &body))
}

/// The operation with `bulkId:x` references replaced, or `None` while one is unknown.
fn resolve(operation: &Value, created: &HashMap<String, String>) -> Option<Value> {
    fn walk(value: &Value, created: &HashMap<String, String>) -> Option<Value> {
        Some(match value {
            Value::String(text) => match text.find("bulkId:") {
                Some(at) => {
                    let key = &text[at + 7..];
                    let key = key.split('/').next().unwrap_or(key);
                    let id = created.get(key)?;
                    Value::String(text.replacen(&format!("bulkId:{key}"), id, 1))
                }
                None => value.clone(),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| walk(item, created))
                    .collect::<Option<_>>()?,
            ),
            Value::Object(fields) => {
                let mut out = serde_json::Map::new();
                for (key, field) in fields {
                    // The operation's own bulkId is a label, not a reference.
                    if key == "bulkId" {
                        out.insert(key.clone(), field.clone());
                    } else {
                        out.insert(key.clone(), walk(field, created)?);
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
    walk(operation, created)
}

/// Runs one operation: its status and, for writes, the resource.
async fn run(scim: &ScimService<'_>, operation: &Value) -> ScimResult<(u16, Option<Value>)> {
    let method = operation
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let path = operation
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::invalid_syntax("each operation needs a path"))?;
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let kind = match segments.next().unwrap_or_default() {
        "Users" => ResourceKind::User,
        "Groups" => ResourceKind::Group,
        other => {
            return Err(ScimError::invalid_path(format!(
                "bulk paths start with /Users or /Groups, not /{other}"
            )));
        }
    };
    let id = segments.next().filter(|id| !id.is_empty());
    let data = || {
        operation
            .get("data")
            .filter(|d| d.is_object())
            .ok_or_else(|| ScimError::invalid_syntax("this operation needs a data object"))
    };
    // The operation's `version` is its If-Match (RFC 7644 §3.7).
    let if_match = operation
        .get("version")
        .and_then(Value::as_str)
        .map(|version| IfMatch(version.to_string()));
    let if_match = if_match.as_ref();
    match (method.as_str(), id) {
        ("POST", None) => {
            if operation.get("bulkId").and_then(Value::as_str).is_none() {
                return Err(ScimError::invalid_syntax("POST operations need a bulkId"));
            }
            let (resource, _) = scim.create(kind, data()?, &Projection::default()).await?;
            Ok((201, Some(resource)))
        }
        ("PUT", Some(id)) => Ok((
            200,
            Some(
                scim.replace(kind, id, data()?, &Projection::default(), if_match)
                    .await?
                    .0,
            ),
        )),
        ("PATCH", Some(id)) => Ok((
            200,
            Some(
                scim.patch(kind, id, data()?, &Projection::default(), if_match)
                    .await?
                    .0,
            ),
        )),
        ("DELETE", Some(id)) => {
            scim.delete(kind, id, if_match).await?;
            Ok((204, None))
        }
        _ => Err(ScimError::invalid_syntax(format!(
            "unsupported bulk operation {method} {path}"
        ))),
    }
}

fn response_entry(operation: &Value, result: ScimResult<(u16, Option<Value>)>) -> Value {
    let mut entry = json!({"method": operation.get("method").cloned().unwrap_or(Value::Null)});
    if let Some(bulk_id) = operation.get("bulkId") {
        entry["bulkId"] = bulk_id.clone();
    }
    match result {
        Ok((status, resource)) => {
            entry["status"] = status.to_string().into();
            if let Some(meta) = resource.as_ref().map(|r| &r["meta"]) {
                // The resource's location and its version after the write.
                for key in ["location", "version"] {
                    if let Some(value) = meta[key].as_str() {
                        entry[key] = value.into();
                    }
                }
            }
        }
        Err(error) => {
            entry["status"] = error.status.to_string().into();
            entry["response"] = error.body();
        }
    }
    entry
}
