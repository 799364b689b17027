//! The OpenAPI 3.1 document of `/api/v1`, served at `/api/v1/openapi.json`.
//! The schemas of requests and responses are derived from the handlers'
//! Rust types (utoipa `ToSchema`), the sets of names (event kinds, run
//! status, health) from their enums; the operations (summaries, scopes,
//! query parameters) are written here, and a test checks that the document
//! lists exactly the endpoints the router serves ([`super::endpoints`]).
//! The one hand-written schema is `Snapshot`, the driver SDK's records,
//! which do not depend on an OpenAPI crate.

use super::connections::ConnectionView;
use super::devices::{DeviceView, StatusChange};
use super::directory::{
    AclGroupView, AclMemberView, GroupRef, GroupView, MemberView, UserDetail, UserView,
};
use super::events::FeedPage;
use super::runs::RunView;
use crate::devices::NewDevice;
use crate::events::{Event, EventKind};
use crate::store::entity::status::{Health, RunStatus};
use crate::sync::{SyncReport, SyncStatus};
use axum::Json;
use serde_json::{Value, json};

/// The schemas of what the handlers take and answer, derived from the
/// Rust types themselves (utoipa), so a field cannot be added, renamed or
/// retyped without the document following.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    EventKind,
    RunStatus,
    Health,
    SyncStatus,
    Event,
    FeedPage,
    RunView,
    ConnectionView,
    SyncReport,
    UserView,
    UserDetail,
    GroupRef,
    GroupView,
    MemberView,
    AclGroupView,
    AclMemberView,
    DeviceView,
    NewDevice,
    StatusChange,
)))]
struct Schemas;

/// The derived schemas, with the event kinds' meanings added to `EventKind`.
fn derived_schemas() -> serde_json::Map<String, Value> {
    let components = <Schemas as utoipa::OpenApi>::openapi().components;
    let mut schemas = match serde_json::to_value(components.map(|c| c.schemas)) {
        Ok(Value::Object(schemas)) => schemas,
        _ => serde_json::Map::new(),
    };
    let kinds = EventKind::ALL
        .iter()
        .map(|kind| format!("`{kind}`: {}", kind.description()))
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(Value::Object(kind)) = schemas.get_mut("EventKind") {
        kind.insert(
            "description".into(),
            Value::String(format!("What an event records.\n{kinds}")),
        );
    }
    schemas
}

/// A `{"application/json": ...}` content of schema `name`.
fn body(name: &str) -> Value {
    json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}})
}

/// A page of `name`s: `{items, next_after}`.
fn page_of(name: &str) -> Value {
    json!({"application/json": {"schema": {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
        "next_after": {"type": ["integer", "null"], "description": "pass as `after` for the next page"}}}}})
}

/// A list of `name`s.
fn list_of(name: &str) -> Value {
    json!({"application/json": {"schema": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}}}})
}

fn page_params() -> Value {
    json!([
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
        {"name": "after", "in": "query", "description": "id of the last item of the previous page", "schema": {"type": "integer"}}
    ])
}

fn id_param(name: &str, kind: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": kind}})
}

fn op(summary: &str, scopes: &str, params: Value, response: &str) -> Value {
    json!({
        "summary": summary,
        "description": format!("Scopes: {scopes}."),
        "parameters": params,
        "responses": {
            "200": {"description": response, "content": {"application/json": {}}},
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "403": {"$ref": "#/components/responses/Forbidden"}
        }
    })
}

/// The document.
pub fn spec() -> Value {
    let read = "admin or read";
    let mut page = page_params();
    let with = |extra: Vec<Value>| {
        let mut params = page_params().as_array().cloned().unwrap_or_default();
        params.extend(extra);
        Value::Array(params)
    };
    let connection_filter =
        json!({"name": "connection", "in": "query", "schema": {"type": "string"}});
    let _ = &mut page;
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {"title": "idpsync admin API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an idps_ token from `idpsync token create`"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Snapshot": {"type": "object", "properties": {
                    "users": {"type": "array", "items": {"type": "object", "required": ["external_id", "user_name", "active"]}},
                    "groups": {"type": "array", "items": {"type": "object", "required": ["external_id", "display_name"]}},
                    "memberships": {"type": "array", "items": {"type": "object", "required": ["group_external_id", "member"]}}}}
            },
            "responses": {
                "Unauthorized": {"description": "missing, unknown, expired or revoked token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "Forbidden": {"description": "the token lacks the scope", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        },
        "paths": {
            "/connections": {"get": op("Connections with health and their last runs", read, json!([]), "list of connections")},
            "/connections/{id}": {"get": op("One connection", read, json!([id_param("id", "string")]), "the connection")},
            "/connections/{id}/import": {"post": {
                "summary": "Reconcile a posted snapshot into the connection (through the safety gate)",
                "description": "Scopes: admin. `dry_run=true` returns the plan and writes nothing.",
                "parameters": [id_param("id", "string"), {"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Snapshot"}}}},
                "responses": {"200": {"description": "outcome: applied, unchanged, held or planned"}}
            }},
            "/connections/{id}/sync": {"post": {
                "summary": "Run a pull sync of the connection now; answers with its report (status applied, unchanged, held, planned or failed)",
                "description": "Scopes: admin. `dry_run=true` plans without writing; `full=true` ignores the delta cursor. 409 if the connection is already syncing.",
                "parameters": [id_param("id", "string"), {"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}, {"name": "full", "in": "query", "schema": {"type": "boolean"}}],
                "responses": {"200": {"description": "the run's report"}, "409": {"description": "already syncing"}}
            }},
            "/connections/{id}/check": {"post": {
                "summary": "Test the connection's credentials and reachability",
                "description": "Scopes: admin.",
                "parameters": [id_param("id", "string")],
                "responses": {"200": {"description": "{ok, summary} or {ok: false, error}"}}
            }},
            "/runs": {"get": op("Sync runs, newest first", read, with(vec![connection_filter.clone(), json!({"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/RunStatus"}})]), "page of runs")},
            "/runs/{id}": {"get": op("One sync run", read, json!([id_param("id", "integer")]), "the run")},
            "/runs/{id}/approve": {"post": {
                "summary": "Apply a held run's change set if the stored state has not moved since",
                "description": "Scopes: admin. 409 if the run is not held or the state moved (the run is then superseded).",
                "parameters": [id_param("id", "integer")],
                "responses": {"200": {"description": "applied"}, "409": {"description": "not held, or superseded"}}
            }},
            "/runs/{id}/reject": {"post": {
                "summary": "Reject a held run: nothing of it is applied",
                "description": "Scopes: admin. 409 if the run is not held. Records sync.rejected.",
                "parameters": [id_param("id", "integer")],
                "responses": {"204": {"description": "rejected"}, "409": {"description": "not held"}}
            }},
            "/reload": {"post": {
                "summary": "Re-read the config file, as SIGHUP does",
                "description": "Scopes: admin. Validates the file, then applies connection, schedule, ACL group and webhook changes without stopping runs in flight. On any error the running configuration is kept: 422 with every problem and its line:column, 409 when [server] listen or [database] changed (a restart applies them).",
                "responses": {"200": {"description": "applied: connections added, removed and kept"}, "409": {"description": "needs a restart, or not started from a file"}, "422": {"description": "invalid config"}}
            }},
            "/users": {"get": op("Source users", read, with(vec![connection_filter.clone(), json!({"name": "status", "in": "query", "schema": {"enum": ["active", "inactive"]}})]), "page of users")},
            "/users/{id}": {"get": op("One user with effective groups and ACL groups", read, json!([id_param("id", "integer")]), "the user")},
            "/groups": {"get": op("Source groups", read, with(vec![connection_filter]), "page of groups")},
            "/groups/{id}/members": {"get": op("Direct members (users and groups), or effective user members with effective=true", read, with(vec![id_param("id", "integer"), json!({"name": "effective", "in": "query", "schema": {"type": "boolean"}})]), "page of members")},
            "/acl-groups": {"get": op("ACL groups with member counts", read, json!([]), "list of ACL groups")},
            "/acl-groups/{name}/members": {"get": op("Members of an ACL group", read, with(vec![id_param("name", "string")]), "page of members")},
            "/devices": {
                "get": op("Devices", "admin, read or devices", with(vec![json!({"name": "status", "in": "query", "schema": {"type": "string"}}), json!({"name": "owner_user_id", "in": "query", "schema": {"type": "integer"}})]), "page of devices"),
                "post": {
                    "summary": "Register a device of an active user (status pending)",
                    "description": "Scopes: admin or devices. 409 if the owner is not active or the node key is taken.",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewDevice"}}}},
                    "responses": {"201": {"description": "registered"}, "404": {"description": "owner not found"}, "409": {"description": "owner inactive or node key taken"}}
                }
            },
            "/devices/{id}": {"get": op("One device", "admin, read or devices", json!([id_param("id", "integer")]), "the device")},
            "/devices/{id}/{action}": {"post": {
                "summary": "Change a device's status: action is approve, quarantine, lock or revoke",
                "description": "Scopes: admin or devices. Revocation is final (409 afterwards); approval needs an active owner.",
                "parameters": [id_param("id", "integer"), {"name": "action", "in": "path", "required": true, "schema": {"enum": ["approve", "quarantine", "lock", "revoke"]}}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"reason": {"type": "string"}}}}}},
                "responses": {"200": {"description": "the device"}, "409": {"description": "revoked, or owner inactive"}}
            }},
            "/events": {"get": op(
                "The ordered event feed; long-polls up to `wait` seconds for an event after `after`",
                read,
                json!([
                    {"name": "after", "in": "query", "schema": {"type": "integer", "default": 0}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000, "default": 100}},
                    {"name": "wait", "in": "query", "schema": {"type": "integer", "maximum": 60, "default": 0}}
                ]),
                "events and the next cursor"
            )},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        }
    });
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        schemas.extend(derived_schemas());
    }
    let mut answers = |path: &str, method: &str, content: Value| {
        document["paths"][path][method]["responses"]["200"]["content"] = content;
    };
    answers("/connections", "get", list_of("ConnectionView"));
    answers("/connections/{id}", "get", body("ConnectionView"));
    answers("/connections/{id}/sync", "post", body("SyncReport"));
    answers("/runs", "get", page_of("RunView"));
    answers("/runs/{id}", "get", body("RunView"));
    answers("/users", "get", page_of("UserView"));
    answers("/users/{id}", "get", body("UserDetail"));
    answers("/groups", "get", page_of("GroupView"));
    answers("/groups/{id}/members", "get", page_of("MemberView"));
    answers("/acl-groups", "get", list_of("AclGroupView"));
    answers(
        "/acl-groups/{name}/members",
        "get",
        page_of("AclMemberView"),
    );
    answers("/devices", "get", page_of("DeviceView"));
    answers("/devices/{id}", "get", body("DeviceView"));
    answers("/devices/{id}/{action}", "post", body("DeviceView"));
    answers("/events", "get", body("FeedPage"));
    document["paths"]["/devices"]["post"]["responses"]["201"]["content"] = body("DeviceView");
    document["paths"]["/devices"]["post"]["requestBody"]["content"] = body("NewDevice");
    document["paths"]["/devices/{id}/{action}"]["post"]["requestBody"]["content"] =
        body("StatusChange");
    document
}

pub async fn document() -> Json<Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_document_lists_exactly_the_endpoints_the_router_serves() {
        let document = spec();
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, operations)| {
                operations
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(|method| (method.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let served: BTreeSet<(String, String)> = super::super::endpoints()
            .listed()
            .iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn every_reference_names_a_schema_of_the_document() {
        let document = spec();
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"#/components/").skip(1) {
            let target = &reference[..reference.find('"').unwrap()];
            let (section, name) = target.split_once('/').unwrap();
            assert!(
                document["components"][section][name].is_object(),
                "{target} is referenced but not defined"
            );
        }
        let kinds = document["components"]["schemas"]["EventKind"]["enum"]
            .as_array()
            .unwrap();
        assert_eq!(kinds.len(), EventKind::ALL.len());
    }
}
