//! SCIM filters and sorting as SQL, so a list query is answered by the
//! database and never by loading every row. One translation serves SQLite
//! and PostgreSQL; only the JSON accessors differ.
//!
//! Attributes with a column (`id`, `userName`, `displayName`,
//! `name.givenName`, `name.familyName`, `active`, `meta.created`,
//! `meta.lastModified`, group `members`) compare on the column; every other
//! attribute is read from the stored SCIM document (`attributes.scim`), with
//! any-value semantics for multi-valued attributes. Values are always bound as
//! parameters; attribute names only reach SQL inside bound JSON paths.

use crate::scim::filter::{AttrPath, CompareOp, Filter};
use crate::scim::{ScimError, ScimResult, schema};
use sea_orm::DatabaseBackend;
use sea_orm::sea_query::{Expr, Value as SqlValue};
use serde_json::Value;

/// Which resource table a filter runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceTable {
    Users,
    Groups,
}

/// A SQL fragment with `?` placeholders and its values, in order.
#[derive(Debug, Clone, Default)]
struct Sql {
    text: String,
    values: Vec<SqlValue>,
}

impl Sql {
    fn new(text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            values: Vec::new(),
        }
    }

    fn bind(mut self, value: impl Into<SqlValue>) -> Self {
        self.values.push(value.into());
        self
    }

    fn join(parts: Vec<Sql>, separator: &str) -> Sql {
        let mut out = Sql::default();
        for (index, part) in parts.into_iter().enumerate() {
            if index > 0 {
                out.text.push_str(separator);
            }
            out.text.push('(');
            out.text.push_str(&part.text);
            out.text.push(')');
            out.values.extend(part.values);
        }
        out
    }

    fn wrap(self, before: &str, after: &str) -> Sql {
        Sql {
            text: format!("{before}{}{after}", self.text),
            values: self.values,
        }
    }

    /// The negation of this predicate in SCIM's two-valued logic: a
    /// comparison on an absent attribute is false, never SQL's unknown, so
    /// its negation is true (`NOT NULL` would be unknown, and drop the
    /// resource).
    fn negated(self) -> Sql {
        self.wrap("NOT COALESCE((", "), FALSE)")
    }

    /// The fragment as a sea-query expression for `backend`.
    fn into_expr(self, backend: DatabaseBackend) -> Expr {
        let text = super::raw_sql::placeholders_for(backend, &self.text);
        Expr::cust_with_values(text, self.values)
    }
}

/// The WHERE condition for `filter` on `table`.
pub fn condition(
    backend: DatabaseBackend,
    table: ResourceTable,
    filter: &Filter,
) -> ScimResult<Expr> {
    let translator = Translator { backend, table };
    Ok(translator.filter(filter)?.into_expr(backend))
}

/// The ORDER BY expression for `sortBy`.
pub fn sort_expression(backend: DatabaseBackend, table: ResourceTable, sort_by: &AttrPath) -> Expr {
    let translator = Translator { backend, table };
    let key = sort_by.key();
    if sort_by.urn.is_none()
        && let Some(column) = translator.column(&key)
    {
        return Expr::cust(match column.kind {
            ColumnKind::CaseInsensitive => format!("lower({})", column.name),
            _ => column.name.to_string(),
        });
    }
    let path = json_path(sort_by);
    match backend {
        DatabaseBackend::Postgres => {
            Sql::new("lower(CAST(attributes AS jsonb) #>> CAST(? AS text[]))").bind(pg_path(&path))
        }
        _ => Sql::new("lower(json_extract(attributes, ?))").bind(sqlite_path(&path)),
    }
    .into_expr(backend)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Exact,
    CaseInsensitive,
    /// Already stored lowercased.
    Folded,
    Boolean,
    Timestamp,
}

struct Column {
    name: &'static str,
    kind: ColumnKind,
}

struct Translator {
    backend: DatabaseBackend,
    table: ResourceTable,
}

/// Multi-valued complex attributes whose bare name means their `value`.
fn has_value_sub(name: &str) -> bool {
    matches!(
        name,
        "emails"
            | "phonenumbers"
            | "ims"
            | "photos"
            | "entitlements"
            | "roles"
            | "x509certificates"
            | "members"
            | "groups"
    )
}

/// Canonical spelling of known attribute names (JSON keys are case-sensitive).
fn canonical(name: &str) -> String {
    const KNOWN: &[&str] = &[
        "userName",
        "externalId",
        "displayName",
        "nickName",
        "profileUrl",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "active",
        "emails",
        "phoneNumbers",
        "ims",
        "photos",
        "addresses",
        "groups",
        "entitlements",
        "roles",
        "x509Certificates",
        "name",
        "formatted",
        "familyName",
        "givenName",
        "middleName",
        "honorificPrefix",
        "honorificSuffix",
        "value",
        "display",
        "type",
        "primary",
        "streetAddress",
        "locality",
        "region",
        "postalCode",
        "country",
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
        "members",
    ];
    KNOWN
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .map(|known| known.to_string())
        .unwrap_or_else(|| name.to_string())
}

/// JSON path segments under the stored document: `scim`, [urn], name, [sub].
fn json_path(path: &AttrPath) -> Vec<String> {
    let mut segments = vec!["scim".to_string()];
    if let Some(urn) = &path.urn {
        let core = urn.eq_ignore_ascii_case(schema::USER_URN)
            || urn.eq_ignore_ascii_case(schema::GROUP_URN);
        if !core {
            let urn = if urn.eq_ignore_ascii_case(schema::ENTERPRISE_URN) {
                schema::ENTERPRISE_URN.to_string()
            } else {
                urn.clone()
            };
            segments.push(urn);
        }
    }
    segments.push(canonical(&path.name));
    if let Some(sub) = &path.sub {
        segments.push(canonical(sub));
    }
    segments
}

fn sqlite_path(segments: &[String]) -> String {
    let mut out = String::from("$");
    for segment in segments {
        if segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            out.push('.');
            out.push_str(segment);
        } else {
            out.push_str(&format!(".\"{}\"", segment.replace('"', "")));
        }
    }
    out
}

fn pg_path(segments: &[String]) -> String {
    let quoted: Vec<String> = segments
        .iter()
        .map(|s| format!("\"{}\"", s.replace(['"', '\\'], "")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// How to read a JSON value's type and text in SQL.
struct Accessor {
    type_expr: Sql,
    value_expr: Sql,
}

impl Translator {
    fn postgres(&self) -> bool {
        self.backend == DatabaseBackend::Postgres
    }

    fn column(&self, key: &str) -> Option<Column> {
        use ColumnKind::*;
        let column = |name, kind| Some(Column { name, kind });
        match (self.table, key) {
            (_, "id") => column("external_id", Exact),
            (ResourceTable::Users, "username") => column("user_name_key", Folded),
            (_, "displayname") => column("display_name", CaseInsensitive),
            (ResourceTable::Users, "name.givenname") => column("given_name", CaseInsensitive),
            (ResourceTable::Users, "name.familyname") => column("family_name", CaseInsensitive),
            (ResourceTable::Users, "active") => column("active", Boolean),
            (_, "meta.created") => column("created_at", Timestamp),
            (_, "meta.lastmodified") => column("updated_at", Timestamp),
            _ => None,
        }
    }

    fn filter(&self, filter: &Filter) -> ScimResult<Sql> {
        match filter {
            Filter::And(left, right) => Ok(Sql::join(
                vec![self.filter(left)?, self.filter(right)?],
                " AND ",
            )),
            Filter::Or(left, right) => Ok(Sql::join(
                vec![self.filter(left)?, self.filter(right)?],
                " OR ",
            )),
            Filter::Not(inner) => Ok(self.filter(inner)?.negated()),
            Filter::Present(path) => self.attribute(path, None),
            Filter::Compare(path, CompareOp::Ne, value) => Ok(self
                .attribute(path, Some((CompareOp::Eq, value)))?
                .negated()),
            Filter::Compare(path, op, value) => self.attribute(path, Some((*op, value))),
            Filter::ValuePath(path, inner) => self.value_path(path, inner),
        }
    }

    /// `Present` when `comparison` is `None`.
    fn attribute(
        &self,
        path: &AttrPath,
        comparison: Option<(CompareOp, &Value)>,
    ) -> ScimResult<Sql> {
        let key = path.key();
        let core_urn = path.urn.as_ref().is_none_or(|urn| {
            urn.eq_ignore_ascii_case(schema::USER_URN)
                || urn.eq_ignore_ascii_case(schema::GROUP_URN)
        });
        if core_urn && let Some(column) = self.column(&key) {
            return column_predicate(self.postgres(), &column, comparison);
        }
        if self.table == ResourceTable::Groups
            && core_urn
            && (key == "members" || key == "members.value")
        {
            return self.members_predicate(comparison);
        }
        if let Some((op, Value::Null)) = comparison {
            if op != CompareOp::Eq {
                return Err(ScimError::invalid_filter(
                    "null can only be compared with eq or ne",
                ));
            }
            return Ok(self.attribute(path, None)?.negated());
        }
        let name = path.name.to_ascii_lowercase();
        let mut element_sub = path.sub.clone();
        if element_sub.is_none() && has_value_sub(&name) {
            element_sub = Some("value".to_string());
        }
        let case_exact = schema::case_exact(&match &element_sub {
            Some(sub) => format!("{name}.{}", sub.to_ascii_lowercase()),
            None => name.clone(),
        });
        let attribute_only = AttrPath {
            urn: path.urn.clone(),
            name: path.name.clone(),
            sub: None,
        };
        let attribute_path = json_path(&attribute_only);
        let element = self.element_accessor(element_sub.as_deref());
        let element_predicate = predicate(self.postgres(), &element, comparison, case_exact)?;
        let mut full = attribute_only.clone();
        full.sub = element_sub;
        let root = self.root_accessor(&json_path(&full));
        let root_predicate = predicate(self.postgres(), &root, comparison, case_exact)?;
        Ok(self.any_value(&attribute_path, element_predicate, root_predicate))
    }

    /// `attr[filter]`: some element of `attr` matches `filter`.
    fn value_path(&self, path: &AttrPath, inner: &Filter) -> ScimResult<Sql> {
        let attribute_path = json_path(&AttrPath {
            urn: path.urn.clone(),
            name: path.name.clone(),
            sub: None,
        });
        let prefix = path.name.to_ascii_lowercase();
        let element_predicate = self.element_filter(inner, &prefix)?;
        let exists = self.elements_exist(&attribute_path, element_predicate);
        Ok(exists)
    }

    /// A filter whose paths are sub-attributes of one element.
    fn element_filter(&self, filter: &Filter, prefix: &str) -> ScimResult<Sql> {
        match filter {
            Filter::And(left, right) => Ok(Sql::join(
                vec![
                    self.element_filter(left, prefix)?,
                    self.element_filter(right, prefix)?,
                ],
                " AND ",
            )),
            Filter::Or(left, right) => Ok(Sql::join(
                vec![
                    self.element_filter(left, prefix)?,
                    self.element_filter(right, prefix)?,
                ],
                " OR ",
            )),
            Filter::Not(inner) => Ok(self.element_filter(inner, prefix)?.negated()),
            Filter::ValuePath(..) => Err(ScimError::invalid_filter("value filters cannot nest")),
            Filter::Present(path) => {
                let sub = canonical(&path.name);
                predicate(
                    self.postgres(),
                    &self.element_accessor(Some(&sub)),
                    None,
                    false,
                )
            }
            Filter::Compare(path, op, value) => {
                let sub = canonical(&path.name);
                let case_exact =
                    schema::case_exact(&format!("{prefix}.{}", sub.to_ascii_lowercase()));
                let accessor = self.element_accessor(Some(&sub));
                if *op == CompareOp::Ne {
                    return Ok(predicate(
                        self.postgres(),
                        &accessor,
                        Some((CompareOp::Eq, value)),
                        case_exact,
                    )?
                    .negated());
                }
                predicate(self.postgres(), &accessor, Some((*op, value)), case_exact)
            }
        }
    }

    fn element_accessor(&self, sub: Option<&str>) -> Accessor {
        match (self.postgres(), sub) {
            (true, Some(sub)) => Accessor {
                type_expr: Sql::new("jsonb_typeof(e.v -> ?)").bind(canonical(sub)),
                value_expr: Sql::new("(e.v ->> ?)").bind(canonical(sub)),
            },
            (true, None) => Accessor {
                type_expr: Sql::new("jsonb_typeof(e.v)"),
                value_expr: Sql::new("(e.v #>> '{}')"),
            },
            (false, Some(sub)) => {
                let path = sqlite_path(&[canonical(sub)]);
                Accessor {
                    type_expr: Sql::new(
                        "(CASE WHEN e.type = 'object' THEN json_type(e.value, ?) END)",
                    )
                    .bind(path.clone()),
                    value_expr: Sql::new(
                        "(CASE WHEN e.type = 'object' THEN json_extract(e.value, ?) END)",
                    )
                    .bind(path),
                }
            }
            (false, None) => Accessor {
                type_expr: Sql::new("e.type"),
                value_expr: Sql::new("e.atom"),
            },
        }
    }

    fn root_accessor(&self, segments: &[String]) -> Accessor {
        if self.postgres() {
            Accessor {
                type_expr: Sql::new("jsonb_typeof(CAST(attributes AS jsonb) #> CAST(? AS text[]))")
                    .bind(pg_path(segments)),
                value_expr: Sql::new("(CAST(attributes AS jsonb) #>> CAST(? AS text[]))")
                    .bind(pg_path(segments)),
            }
        } else {
            Accessor {
                type_expr: Sql::new("json_type(attributes, ?)").bind(sqlite_path(segments)),
                value_expr: Sql::new("json_extract(attributes, ?)").bind(sqlite_path(segments)),
            }
        }
    }

    /// Elements of the array at `segments` of which one satisfies `element`.
    fn elements_exist(&self, segments: &[String], element: Sql) -> Sql {
        let (head, bind) = if self.postgres() {
            (
                "jsonb_typeof(CAST(attributes AS jsonb) #> CAST(? AS text[])) = 'array' AND EXISTS (SELECT 1 FROM jsonb_array_elements(CAST(attributes AS jsonb) #> CAST(? AS text[])) AS e(v) WHERE ",
                pg_path(segments),
            )
        } else {
            (
                "json_type(attributes, ?) = 'array' AND EXISTS (SELECT 1 FROM json_each(attributes, ?) AS e WHERE ",
                sqlite_path(segments),
            )
        };
        let mut sql = Sql::new(head).bind(bind.clone()).bind(bind);
        sql.text.push_str(&element.text);
        sql.values.extend(element.values);
        sql.text.push(')');
        sql
    }

    /// Any value of a possibly multi-valued attribute: the array branch
    /// tests elements, the other branch the single value.
    fn any_value(&self, segments: &[String], element: Sql, root: Sql) -> Sql {
        let array = self.elements_exist(segments, element);
        let not_array = if self.postgres() {
            Sql::new("COALESCE(jsonb_typeof(CAST(attributes AS jsonb) #> CAST(? AS text[])), '') <> 'array'").bind(pg_path(segments))
        } else {
            Sql::new("COALESCE(json_type(attributes, ?), '') <> 'array'")
                .bind(sqlite_path(segments))
        };
        Sql::join(
            vec![array, Sql::join(vec![not_array, root], " AND ")],
            " OR ",
        )
    }

    fn members_predicate(&self, comparison: Option<(CompareOp, &Value)>) -> ScimResult<Sql> {
        let users = "SELECT 1 FROM user_memberships m JOIN source_users mu ON mu.id = m.user_id \
                     WHERE m.group_id = source_groups.id";
        let nested = "SELECT 1 FROM group_memberships m \
                      JOIN source_groups mg ON mg.id = m.member_group_id \
                      WHERE m.group_id = source_groups.id";
        match comparison {
            None => Ok(Sql::new(format!(
                "(EXISTS ({users}) OR EXISTS ({nested}))"
            ))),
            Some((CompareOp::Eq, Value::String(id))) => Ok(Sql::new(format!(
                "(EXISTS ({users} AND mu.external_id = ?) OR EXISTS ({nested} AND mg.external_id = ?))"
            ))
            .bind(id.clone())
            .bind(id.clone())),
            _ => Err(ScimError::invalid_filter(
                "members can be filtered with pr or value eq \"<id>\" only",
            )),
        }
    }
}

fn column_predicate(
    postgres: bool,
    column: &Column,
    comparison: Option<(CompareOp, &Value)>,
) -> ScimResult<Sql> {
    let name = column.name;
    let Some((op, value)) = comparison else {
        return Ok(match column.kind {
            ColumnKind::Boolean | ColumnKind::Timestamp => Sql::new(format!("{name} IS NOT NULL")),
            _ => Sql::new(format!("{name} IS NOT NULL AND {name} <> ''")),
        });
    };
    match column.kind {
        ColumnKind::Boolean => {
            let flag = match value {
                Value::Bool(flag) => *flag,
                Value::String(text) if text.eq_ignore_ascii_case("true") => true,
                Value::String(text) if text.eq_ignore_ascii_case("false") => false,
                Value::Null => return Ok(Sql::new("1 = 0")),
                _ => {
                    return Err(ScimError::invalid_filter(format!(
                        "{value} is not a boolean"
                    )));
                }
            };
            match op {
                CompareOp::Eq => Ok(Sql::new(format!("{name} = ?")).bind(flag)),
                _ => Err(ScimError::invalid_filter(
                    "booleans compare with eq or ne only",
                )),
            }
        }
        ColumnKind::Timestamp => {
            let Value::String(text) = value else {
                return Err(ScimError::invalid_filter(format!(
                    "{value} is not a dateTime"
                )));
            };
            let at = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|error| {
                    ScimError::invalid_filter(format!("\"{text}\" is not a dateTime: {error}"))
                })?
                .with_timezone(&chrono::Utc);
            let symbol = match op {
                CompareOp::Eq => "=",
                CompareOp::Gt => ">",
                CompareOp::Ge => ">=",
                CompareOp::Lt => "<",
                CompareOp::Le => "<=",
                _ => {
                    return Err(ScimError::invalid_filter(
                        "dateTimes compare with eq, ne, gt, ge, lt or le",
                    ));
                }
            };
            Ok(Sql::new(format!("{name} {symbol} ?")).bind(at))
        }
        kind => {
            let Value::String(text) = value else {
                if value.is_null() {
                    return Ok(Sql::new(format!("({name} IS NULL OR {name} = '')")));
                }
                return Err(ScimError::invalid_filter(format!(
                    "{value} is not a string"
                )));
            };
            let (expr, needle) = match kind {
                ColumnKind::CaseInsensitive => (format!("lower({name})"), text.to_lowercase()),
                ColumnKind::Folded => (name.to_string(), text.to_lowercase()),
                _ => (name.to_string(), text.clone()),
            };
            Ok(string_predicate(postgres, &Sql::new(expr), op, needle))
        }
    }
}

/// A comparison of a text expression with a string.
fn string_predicate(postgres: bool, expr: &Sql, op: CompareOp, needle: String) -> Sql {
    let mut out = Sql::default();
    let push_expr = |out: &mut Sql| {
        out.text.push_str(&expr.text);
        out.values.extend(expr.values.iter().cloned());
    };
    if needle.is_empty() && matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
        push_expr(&mut out);
        out.text.push_str(" IS NOT NULL");
        return out;
    }
    let symbol = match op {
        CompareOp::Eq => Some("="),
        CompareOp::Ne => Some("<>"),
        CompareOp::Gt => Some(">"),
        CompareOp::Ge => Some(">="),
        CompareOp::Lt => Some("<"),
        CompareOp::Le => Some("<="),
        _ => None,
    };
    if let Some(symbol) = symbol {
        push_expr(&mut out);
        out.text.push_str(&format!(" {symbol} ?"));
        return out.bind(needle);
    }
    match (op, postgres) {
        (CompareOp::Co, true) => {
            out.text.push_str("strpos(");
            push_expr(&mut out);
            out.text.push_str(", ?) > 0");
            out.bind(needle)
        }
        (CompareOp::Co, false) => {
            out.text.push_str("instr(");
            push_expr(&mut out);
            out.text.push_str(", ?) > 0");
            out.bind(needle)
        }
        (CompareOp::Sw, true) | (CompareOp::Ew, true) => {
            out.text.push_str(if op == CompareOp::Sw {
                "left("
            } else {
                "right("
            });
            push_expr(&mut out);
            out.text.push_str(", length(?)) = ?");
            out.bind(needle.clone()).bind(needle)
        }
        (CompareOp::Sw, false) => {
            out.text.push_str("substr(");
            push_expr(&mut out);
            out.text.push_str(", 1, length(?)) = ?");
            out.bind(needle.clone()).bind(needle)
        }
        _ => {
            out.text.push_str("substr(");
            push_expr(&mut out);
            out.text.push_str(", -length(?)) = ?");
            out.bind(needle.clone()).bind(needle)
        }
    }
}

/// A predicate on one JSON value given by `accessor`.
fn predicate(
    postgres: bool,
    accessor: &Accessor,
    comparison: Option<(CompareOp, &Value)>,
    case_exact: bool,
) -> ScimResult<Sql> {
    let (string_type, boolean_true, boolean_false) = if postgres {
        ("'string'", None, None)
    } else {
        ("'text'", Some("'true'"), Some("'false'"))
    };
    let t = &accessor.type_expr;
    let v = &accessor.value_expr;
    let combine = |parts: Vec<Sql>| Sql::join(parts, " AND ");
    let Some((op, value)) = comparison else {
        // Present: not null, not an empty string.
        return Ok(combine(vec![
            Sql {
                text: format!("{} IS NOT NULL", t.text),
                values: t.values.clone(),
            },
            Sql {
                text: format!("{} <> 'null'", t.text),
                values: t.values.clone(),
            },
            Sql {
                text: format!("{} <> {string_type} OR {} <> ''", t.text, v.text),
                values: [t.values.clone(), v.values.clone()].concat(),
            },
        ]));
    };
    match value {
        Value::String(text) => {
            let (expr, needle) = if case_exact {
                (
                    Sql {
                        text: v.text.clone(),
                        values: v.values.clone(),
                    },
                    text.clone(),
                )
            } else {
                (
                    Sql {
                        text: format!("lower({})", v.text),
                        values: v.values.clone(),
                    },
                    text.to_lowercase(),
                )
            };
            let type_check = Sql {
                text: format!("{} = {string_type}", t.text),
                values: t.values.clone(),
            };
            Ok(combine(vec![
                type_check,
                string_predicate(postgres, &expr, op, needle),
            ]))
        }
        Value::Bool(flag) => {
            if op != CompareOp::Eq {
                return Err(ScimError::invalid_filter(
                    "booleans compare with eq or ne only",
                ));
            }
            Ok(if postgres {
                combine(vec![
                    Sql {
                        text: format!("{} = 'boolean'", t.text),
                        values: t.values.clone(),
                    },
                    Sql {
                        text: format!("{} = ?", v.text),
                        values: v.values.clone(),
                    }
                    .bind(flag.to_string()),
                ])
            } else {
                let word = if *flag { boolean_true } else { boolean_false }.unwrap_or("'true'");
                Sql {
                    text: format!("{} = {word}", t.text),
                    values: t.values.clone(),
                }
            })
        }
        Value::Number(number) => {
            let Some(number) = number.as_f64() else {
                return Err(ScimError::invalid_filter("number out of range"));
            };
            let symbol = match op {
                CompareOp::Eq => "=",
                CompareOp::Gt => ">",
                CompareOp::Ge => ">=",
                CompareOp::Lt => "<",
                CompareOp::Le => "<=",
                _ => {
                    return Err(ScimError::invalid_filter(
                        "numbers compare with eq, ne, gt, ge, lt or le",
                    ));
                }
            };
            Ok(if postgres {
                Sql {
                    text: format!("(CASE WHEN {} = 'number' THEN CAST({} AS double precision) END) {symbol} ?", t.text, v.text),
                    values: [t.values.clone(), v.values.clone()].concat(),
                }
                .bind(number)
            } else {
                combine(vec![
                    Sql {
                        text: format!("{} IN ('integer', 'real')", t.text),
                        values: t.values.clone(),
                    },
                    Sql {
                        text: format!("{} {symbol} ?", v.text),
                        values: v.values.clone(),
                    }
                    .bind(number),
                ])
            })
        }
        Value::Null => Ok(predicate(postgres, accessor, None, case_exact)?.negated()),
        _ => Err(ScimError::invalid_filter(format!(
            "cannot compare with {value}"
        ))),
    }
}
