//! The directory pages: users and groups per connection with search and
//! keyset paging (by row id, so a page costs the same at 100k users as at
//! 100), a user's groups, ACL groups and devices, a group's direct and
//! effective members, and each ACL group's members with the source groups
//! they come from.

use super::html::{escape, page};
use super::{Page, Signed};
use crate::api::AppState;
use crate::store::entity::{
    acl_group, acl_group_member, device, effective_membership, group_membership, source_group,
    source_user, user_membership,
};
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;
use std::collections::HashMap;

/// Rows a directory page shows.
const PAGE: u64 = 50;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Search {
    #[serde(default)]
    connection: Option<String>,
    /// A prefix of the user name (users) or display name (groups), any case.
    #[serde(default)]
    q: Option<String>,
    /// The last row id of the previous page.
    #[serde(default)]
    after: Option<i64>,
}

impl Search {
    fn connection(&self) -> Option<&str> {
        self.connection.as_deref().filter(|c| !c.trim().is_empty())
    }

    fn prefix(&self) -> Option<String> {
        self.q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase)
    }

    /// The search form, keeping what was asked.
    fn form(&self, action: &str, what: &str) -> String {
        format!(
            "<form method=\"get\" action=\"{action}\"><label for=\"q\">{what} starts with</label> <input id=\"q\" name=\"q\" value=\"{}\"> <label for=\"connection\">Connection</label> <input id=\"connection\" name=\"connection\" value=\"{}\"> <button type=\"submit\">Search</button></form>",
            escape(self.q.as_deref().unwrap_or("")),
            escape(self.connection.as_deref().unwrap_or(""))
        )
    }

    /// The link to the page after `last`, when the page was full.
    fn next(&self, action: &str, last: Option<i64>, shown: usize) -> String {
        match last {
            Some(last) if shown as u64 == PAGE => {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                if let Some(q) = &self.q {
                    query.append_pair("q", q);
                }
                if let Some(connection) = &self.connection {
                    query.append_pair("connection", connection);
                }
                query.append_pair("after", &last.to_string());
                format!(
                    "<p><a rel=\"next\" href=\"{action}?{}\">Next {PAGE}</a></p>",
                    escape(&query.finish())
                )
            }
            _ => String::new(),
        }
    }
}

/// The keys of `prefix` as a range: `[prefix, prefix + U+10FFFF)`, which a
/// b-tree index on the folded name serves (a LIKE may not).
fn prefix_range(prefix: &str) -> (String, String) {
    (prefix.to_string(), format!("{prefix}\u{10FFFF}"))
}

pub(super) async fn users(
    State(state): State<AppState>,
    signed: Signed,
    Query(search): Query<Search>,
) -> Page {
    let mut query = source_user::Entity::find()
        .filter(source_user::Column::Id.gt(search.after.unwrap_or(0)))
        .order_by_asc(source_user::Column::Id)
        .limit(PAGE);
    if let Some(connection) = search.connection() {
        query = query.filter(source_user::Column::ConnectionId.eq(connection));
    }
    if let Some(prefix) = search.prefix() {
        let (from, to) = prefix_range(&prefix);
        query = query
            .filter(source_user::Column::UserNameKey.gte(from))
            .filter(source_user::Column::UserNameKey.lt(to));
    }
    let rows = query.all(state.store.db()).await?;
    let mut body = search.form("/console/users", "User name");
    body.push_str("<table><thead><tr><th scope=\"col\">User</th><th scope=\"col\">Name</th><th scope=\"col\">Connection</th><th scope=\"col\">Status</th></tr></thead><tbody>");
    for row in &rows {
        body.push_str(&format!(
            "<tr><th scope=\"row\"><a href=\"/console/users/{}\">{}</a></th><td>{}</td><td>{}</td><td>{}</td></tr>",
            row.id,
            escape(&row.user_name),
            escape(row.display_name.as_deref().unwrap_or("")),
            escape(&row.connection_id),
            if row.active { "active" } else { "inactive" }
        ));
    }
    body.push_str("</tbody></table>");
    body.push_str(&search.next("/console/users", rows.last().map(|r| r.id), rows.len()));
    Ok(Html(page("Users", signed.who(), &body)).into_response())
}

pub(super) async fn user(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<i64>,
) -> Page {
    let db = state.store.db();
    let Some(user) = source_user::Entity::find_by_id(id).one(db).await? else {
        return Ok(super::refused(
            axum::http::StatusCode::NOT_FOUND,
            "no such user",
        ));
    };
    let group_ids: Vec<i64> = effective_membership::Entity::find()
        .filter(effective_membership::Column::UserId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|row| row.group_id)
        .collect();
    let groups = source_group::Entity::find()
        .filter(source_group::Column::Id.is_in(group_ids))
        .order_by_asc(source_group::Column::DisplayName)
        .all(db)
        .await;
    let acl_ids: Vec<i64> = acl_group_member::Entity::find()
        .filter(acl_group_member::Column::UserId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|row| row.acl_group_id)
        .collect();
    let acl_groups = acl_group::Entity::find()
        .filter(acl_group::Column::Id.is_in(acl_ids))
        .order_by_asc(acl_group::Column::Name)
        .all(db)
        .await;
    let devices = device::Entity::find()
        .filter(device::Column::OwnerUserId.eq(id))
        .order_by_asc(device::Column::Id)
        .all(db)
        .await;
    let (groups, acl_groups, devices) = (groups?, acl_groups?, devices?);
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "<p class=\"muted\">none</p>".to_string()
        } else {
            format!("<ul>{}</ul>", items.join(""))
        }
    };
    let body = format!(
        "<dl><dt>Connection</dt><dd>{}</dd><dt>External id</dt><dd><code>{}</code></dd><dt>Name</dt><dd>{}</dd><dt>E-mail</dt><dd>{}</dd><dt>Status</dt><dd>{} ({})</dd></dl><h3>Groups (direct and through nesting)</h3>{}<h3>ACL groups</h3>{}<h3>Devices</h3>{}",
        escape(&user.connection_id),
        escape(&user.external_id),
        escape(user.display_name.as_deref().unwrap_or("")),
        escape(user.primary_email.as_deref().unwrap_or("")),
        if user.active { "active" } else { "inactive" },
        escape(user.raw_status.as_deref().unwrap_or("")),
        list(
            groups
                .iter()
                .map(|g| format!(
                    "<li><a href=\"/console/groups/{}\">{}</a></li>",
                    g.id,
                    escape(&g.display_name)
                ))
                .collect()
        ),
        list(
            acl_groups
                .iter()
                .map(|a| format!(
                    "<li><a href=\"/console/acl-groups/{}\">{}</a></li>",
                    escape(&a.name),
                    escape(&a.name)
                ))
                .collect()
        ),
        list(
            devices
                .iter()
                .map(|d| format!("<li>{} ({})</li>", escape(&d.name), escape(&d.status)))
                .collect()
        ),
    );
    Ok(Html(page(&user.user_name, signed.who(), &body)).into_response())
}

pub(super) async fn groups(
    State(state): State<AppState>,
    signed: Signed,
    Query(search): Query<Search>,
) -> Page {
    let mut query = source_group::Entity::find()
        .filter(source_group::Column::Id.gt(search.after.unwrap_or(0)))
        .order_by_asc(source_group::Column::Id)
        .limit(PAGE);
    if let Some(connection) = search.connection() {
        query = query.filter(source_group::Column::ConnectionId.eq(connection));
    }
    if let Some(prefix) = search.prefix() {
        // Display names are not folded in the store: match either case of
        // the prefix's first letters as written.
        query = query.filter(
            Condition::any()
                .add(source_group::Column::DisplayName.starts_with(&prefix))
                .add(source_group::Column::DisplayName.starts_with(capitalized(&prefix))),
        );
    }
    let rows = query.all(state.store.db()).await?;
    let mut body = search.form("/console/groups", "Group name");
    body.push_str("<table><thead><tr><th scope=\"col\">Group</th><th scope=\"col\">Connection</th><th scope=\"col\">External id</th></tr></thead><tbody>");
    for row in &rows {
        body.push_str(&format!(
            "<tr><th scope=\"row\"><a href=\"/console/groups/{}\">{}</a></th><td>{}</td><td><code>{}</code></td></tr>",
            row.id,
            escape(&row.display_name),
            escape(&row.connection_id),
            escape(&row.external_id)
        ));
    }
    body.push_str("</tbody></table>");
    body.push_str(&search.next("/console/groups", rows.last().map(|r| r.id), rows.len()));
    Ok(Html(page("Groups", signed.who(), &body)).into_response())
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct MemberPage {
    #[serde(default)]
    after: Option<i64>,
}

pub(super) async fn group(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<i64>,
    Query(paging): Query<MemberPage>,
) -> Page {
    let db = state.store.db();
    let Some(group) = source_group::Entity::find_by_id(id).one(db).await? else {
        return Ok(super::refused(
            axum::http::StatusCode::NOT_FOUND,
            "no such group",
        ));
    };
    let direct_users = user_membership::Entity::find()
        .filter(user_membership::Column::GroupId.eq(id))
        .order_by_asc(user_membership::Column::UserId)
        .limit(PAGE)
        .all(db)
        .await;
    let nested = group_membership::Entity::find()
        .filter(group_membership::Column::GroupId.eq(id))
        .all(db)
        .await;
    let effective = effective_membership::Entity::find()
        .filter(effective_membership::Column::GroupId.eq(id))
        .filter(effective_membership::Column::UserId.gt(paging.after.unwrap_or(0)))
        .order_by_asc(effective_membership::Column::UserId)
        .limit(PAGE)
        .all(db)
        .await;
    let (direct_users, nested, effective) = (direct_users?, nested?, effective?);
    let user_ids: Vec<i64> = direct_users
        .iter()
        .map(|m| m.user_id)
        .chain(effective.iter().map(|m| m.user_id))
        .collect();
    let names: HashMap<i64, String> = source_user::Entity::find()
        .filter(source_user::Column::Id.is_in(user_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.user_name))
        .collect();
    let children: Vec<source_group::Model> = source_group::Entity::find()
        .filter(source_group::Column::Id.is_in(nested.iter().map(|n| n.member_group_id)))
        .order_by_asc(source_group::Column::DisplayName)
        .all(db)
        .await?;
    let user_link = |user_id: i64| {
        format!(
            "<li><a href=\"/console/users/{user_id}\">{}</a></li>",
            escape(names.get(&user_id).map_or("(unknown)", String::as_str))
        )
    };
    let mut body = format!(
        "<p>{} group <code>{}</code></p><h3>Direct members</h3><ul>",
        escape(&group.connection_id),
        escape(&group.external_id)
    );
    for child in &children {
        body.push_str(&format!(
            "<li>group <a href=\"/console/groups/{}\">{}</a></li>",
            child.id,
            escape(&child.display_name)
        ));
    }
    for member in &direct_users {
        body.push_str(&user_link(member.user_id));
    }
    body.push_str("</ul><h3>Effective members (direct and through nested groups)</h3><ul>");
    for member in &effective {
        body.push_str(&user_link(member.user_id));
    }
    body.push_str("</ul>");
    if effective.len() as u64 == PAGE
        && let Some(last) = effective.last()
    {
        body.push_str(&format!(
            "<p><a rel=\"next\" href=\"/console/groups/{id}?after={}\">Next {PAGE}</a></p>",
            last.user_id
        ));
    }
    Ok(Html(page(&group.display_name, signed.who(), &body)).into_response())
}

pub(super) async fn acl_groups(State(state): State<AppState>, signed: Signed) -> Page {
    let rows = acl_group::Entity::find()
        .order_by_asc(acl_group::Column::Name)
        .all(state.store.db())
        .await?;
    let mut body = String::from("<ul>");
    for row in rows {
        body.push_str(&format!(
            "<li><a href=\"/console/acl-groups/{}\">{}</a> <span class=\"muted\">{}</span></li>",
            escape(&row.name),
            escape(&row.name),
            escape(row.description.as_deref().unwrap_or(""))
        ));
    }
    body.push_str("</ul>");
    for acl in &state.engine().config.acl_groups {
        body.push_str(&format!("<h3>Rules of {}</h3><ul>", escape(&acl.name)));
        for rule in &acl.from {
            let pattern = rule
                .group
                .as_deref()
                .map(|g| format!("group {}", escape(g)))
                .or_else(|| {
                    rule.group_glob
                        .as_deref()
                        .map(|g| format!("groups matching {}", escape(g)))
                })
                .or_else(|| {
                    rule.group_regex
                        .as_deref()
                        .map(|g| format!("groups matching /{}/", escape(g)))
                })
                .unwrap_or_default();
            body.push_str(&format!("<li>{}: {pattern}</li>", escape(&rule.connection)));
        }
        body.push_str("</ul>");
    }
    Ok(Html(page("ACL groups", signed.who(), &body)).into_response())
}

/// An ACL group's members, each with the source groups that put them in.
pub(super) async fn acl_group(
    State(state): State<AppState>,
    signed: Signed,
    Path(name): Path<String>,
    Query(paging): Query<MemberPage>,
) -> Page {
    let db = state.store.db();
    let Some(acl) = acl_group::Entity::find()
        .filter(acl_group::Column::Name.eq(&name))
        .one(db)
        .await?
    else {
        return Ok(super::refused(
            axum::http::StatusCode::NOT_FOUND,
            "no such ACL group",
        ));
    };
    let members = acl_group_member::Entity::find()
        .filter(acl_group_member::Column::AclGroupId.eq(acl.id))
        .filter(acl_group_member::Column::Id.gt(paging.after.unwrap_or(0)))
        .order_by_asc(acl_group_member::Column::Id)
        .limit(PAGE)
        .all(db)
        .await?;
    let user_ids: Vec<i64> = members.iter().map(|m| m.user_id).collect();
    let users: HashMap<i64, source_user::Model> = source_user::Entity::find()
        .filter(source_user::Column::Id.is_in(user_ids.clone()))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let memberships = effective_membership::Entity::find()
        .filter(effective_membership::Column::UserId.is_in(user_ids))
        .all(db)
        .await?;
    let groups: HashMap<i64, source_group::Model> = source_group::Entity::find()
        .filter(source_group::Column::Id.is_in(memberships.iter().map(|m| m.group_id)))
        .all(db)
        .await?
        .into_iter()
        .map(|g| (g.id, g))
        .collect();
    // The rules the reconciler applies, not a second compilation of them.
    let engine = state.engine();
    let Some(rules) = engine
        .reconciler
        .acl_rules()
        .groups
        .iter()
        .find(|g| g.name == acl.name)
    else {
        return Ok(super::refused(
            axum::http::StatusCode::NOT_FOUND,
            "this ACL group is no longer in the config",
        ));
    };
    let mut body = String::from(
        "<table><thead><tr><th scope=\"col\">Member</th><th scope=\"col\">Connection</th><th scope=\"col\">Comes from</th></tr></thead><tbody>",
    );
    for member in &members {
        let Some(user) = users.get(&member.user_id) else {
            continue;
        };
        let origins: Vec<String> = memberships
            .iter()
            .filter(|m| m.user_id == user.id)
            .filter_map(|m| groups.get(&m.group_id))
            .filter(|g| rules.selects(&g.connection_id, &g.display_name))
            .map(|g| {
                format!(
                    "<a href=\"/console/groups/{}\">{}</a>",
                    g.id,
                    escape(&g.display_name)
                )
            })
            .collect();
        body.push_str(&format!(
            "<tr><th scope=\"row\"><a href=\"/console/users/{}\">{}</a></th><td>{}</td><td>{}</td></tr>",
            user.id,
            escape(&user.user_name),
            escape(&user.connection_id),
            origins.join(", ")
        ));
    }
    body.push_str("</tbody></table>");
    if members.len() as u64 == PAGE
        && let Some(last) = members.last()
    {
        body.push_str(&format!(
            "<p><a rel=\"next\" href=\"/console/acl-groups/{}?after={}\">Next {PAGE}</a></p>",
            escape(&acl.name),
            last.id
        ));
    }
    Ok(Html(page(
        &format!("ACL group {}", acl.name),
        signed.who(),
        &body,
    ))
    .into_response())
}
