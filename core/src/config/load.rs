//! Loading a config: TOML parse, `${ENV_VAR}` interpolation, typed decode and
//! validation. Every problem found becomes a [`ConfigError`] with the key path
//! (`connections[1].schedule`) and the line:column where it stands; all of them
//! are reported together.

use super::{Config, ConnectionConfig, DeletionLimit, SCIM_KIND};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

/// Where a key stands in the file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLocation {
    pub line: usize,
    pub column: usize,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `connections[1].schedule`; empty for the whole file.
    pub path: String,
    pub location: Option<KeyLocation>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = self.location {
            write!(f, "{}:{}: ", location.line, location.column)?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file name, or another label for where the text came from.
    pub origin: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        writeln!(
            f,
            "{}: {count} problem{}",
            self.origin,
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.errors {
            writeln!(f, "  {}:{error}", self.origin)?;
        }
        Ok(())
    }
}

/// What validation needs to know about connection kinds: which exist, and
/// how to check a kind's own settings table.
pub trait KindCatalog {
    fn kinds(&self) -> Vec<&str>;

    /// Checks `[connections.<kind>]`; an error is the key path inside the
    /// table (empty for the table itself) and a message.
    fn check_settings(&self, _kind: &str, _settings: &toml::Value) -> Result<(), (String, String)> {
        Ok(())
    }
}

impl KindCatalog for [&str] {
    fn kinds(&self) -> Vec<&str> {
        self.to_vec()
    }
}

impl<const N: usize> KindCatalog for [&str; N] {
    fn kinds(&self) -> Vec<&str> {
        self.to_vec()
    }
}

/// Reads and validates a config file. `known_kinds` are the connection kinds
/// this build can serve.
pub fn load_file<C: KindCatalog + ?Sized>(
    path: &Path,
    known_kinds: &C,
) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigErrors {
        origin: origin.clone(),
        errors: vec![ConfigError {
            path: String::new(),
            location: None,
            message: format!("cannot read the file: {error}"),
        }],
    })?;
    load_str(&text, &origin, known_kinds, &|name| {
        std::env::var(name).ok()
    })
}

/// Parses and validates config text. `env` resolves `${NAME}`.
pub fn load_str<C: KindCatalog + ?Sized>(
    text: &str,
    origin: &str,
    known_kinds: &C,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let fail = |errors: Vec<ConfigError>| ConfigErrors {
        origin: origin.to_string(),
        errors,
    };
    let lines = LineIndex::new(text);
    let spans = match toml::de::DeTable::parse(text) {
        Ok(table) => SpanIndex::build(table.get_ref()),
        Err(error) => {
            return Err(fail(vec![ConfigError {
                path: String::new(),
                location: error.span().map(|span| lines.locate(span.start)),
                message: format!("invalid TOML: {}", error.message()),
            }]));
        }
    };
    let mut report = Report {
        lines: &lines,
        spans: &spans,
        errors: Vec::new(),
    };

    let mut value = match toml::from_str::<toml::Table>(text) {
        Ok(table) => toml::Value::Table(table),
        Err(error) => {
            return Err(fail(vec![ConfigError {
                path: String::new(),
                location: error.span().map(|span| lines.locate(span.start)),
                message: format!("invalid TOML: {}", error.message()),
            }]));
        }
    };
    interpolate_env(&mut value, String::new(), env, &mut report);

    let mut unknown_keys = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown_keys.push(ignored_path(&path));
    let deserializer = serde_ignored::Deserializer::new(value, &mut on_unknown);
    let decoded: Result<Config, _> = serde_path_to_error::deserialize(deserializer);
    for key in unknown_keys {
        report.key(&key, "unknown key".to_string());
    }
    let config = match decoded {
        Ok(config) => config,
        Err(error) => {
            let path = error_path(error.path());
            let message = error.into_inner().message().to_string();
            report.value(&path, message);
            return Err(fail(report.errors));
        }
    };

    validate(&config, known_kinds, &mut report);
    report.errors.sort_by_key(|error| {
        error
            .location
            .map(|location| (location.line, location.column))
    });
    if report.errors.is_empty() {
        Ok(config)
    } else {
        Err(fail(report.errors))
    }
}

/// Collects errors and places them in the file.
struct Report<'a> {
    lines: &'a LineIndex,
    spans: &'a SpanIndex,
    errors: Vec<ConfigError>,
}

impl Report<'_> {
    /// An error about the key itself (unknown, duplicate).
    fn key(&mut self, path: &str, message: String) {
        let offset = self.spans.key_offset(path);
        self.push(path, offset, message);
    }

    /// An error about the value at `path`.
    fn value(&mut self, path: &str, message: String) {
        let offset = self.spans.value_offset(path);
        self.push(path, offset, message);
    }

    fn push(&mut self, path: &str, offset: Option<usize>, message: String) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            location: offset.map(|offset| self.lines.locate(offset)),
            message,
        });
    }
}

fn validate<C: KindCatalog + ?Sized>(config: &Config, known_kinds: &C, report: &mut Report<'_>) {
    if let Err(error) = config.server.listen_addr() {
        report.value(
            "server.listen",
            format!("expected an address like 127.0.0.1:8080: {error}"),
        );
    }
    if let Some(public_url) = &config.server.public_url {
        check_http_url("server.public_url", public_url, report);
    }
    let database_url = config.database.url.expose();
    if !(database_url.starts_with("sqlite:")
        || database_url.starts_with("postgres://")
        || database_url.starts_with("postgresql://"))
    {
        // The value may hold a password: never echo it.
        report.value(
            "database.url",
            "expected a sqlite://... or postgres://... URL".to_string(),
        );
    }
    if config.database.max_connections == 0 {
        report.value("database.max_connections", "must be at least 1".to_string());
    }

    check_notification_reach(config, report);
    let mut connection_ids = BTreeSet::new();
    for (index, connection) in config.connections.iter().enumerate() {
        let path = format!("connections[{index}]");
        validate_connection(&path, connection, known_kinds, report);
        if !connection_ids.insert(connection.id.as_str()) {
            report.value(
                &format!("{path}.id"),
                format!("duplicate connection id \"{}\"", connection.id),
            );
        }
    }

    let mut acl_names = BTreeSet::new();
    for (index, acl_group) in config.acl_groups.iter().enumerate() {
        let path = format!("acl_groups[{index}]");
        if acl_group.name.trim().is_empty() {
            report.value(&format!("{path}.name"), "must not be empty".to_string());
        } else if !acl_names.insert(acl_group.name.as_str()) {
            report.value(
                &format!("{path}.name"),
                format!("duplicate ACL group \"{}\"", acl_group.name),
            );
        }
        for (rule_index, rule) in acl_group.from.iter().enumerate() {
            let rule_path = format!("{path}.from[{rule_index}]");
            if !connection_ids.contains(rule.connection.as_str()) {
                report.value(
                    &format!("{rule_path}.connection"),
                    format!("unknown connection \"{}\"", rule.connection),
                );
            }
            let selectors = [&rule.group, &rule.group_glob, &rule.group_regex]
                .iter()
                .filter(|selector| selector.is_some())
                .count();
            if selectors != 1 {
                report.value(
                    &rule_path,
                    "set exactly one of group, group_glob or group_regex".to_string(),
                );
            }
            if let Some(glob) = &rule.group_glob
                && let Err(error) = globset::Glob::new(glob)
            {
                report.value(
                    &format!("{rule_path}.group_glob"),
                    format!("invalid glob: {}", error.kind()),
                );
            }
            if let Some(pattern) = &rule.group_regex
                && let Err(error) = regex::Regex::new(pattern)
            {
                let first_line = error.to_string();
                let first_line = first_line.lines().last().unwrap_or("").trim().to_string();
                report.value(
                    &format!("{rule_path}.group_regex"),
                    format!("invalid regex: {first_line}"),
                );
            }
        }
    }

    let mut webhook_names = BTreeSet::new();
    for (index, webhook) in config.webhooks.iter().enumerate() {
        let path = format!("webhooks[{index}]");
        if !webhook_names.insert(webhook.name.as_str()) {
            report.value(
                &format!("{path}.name"),
                format!("duplicate webhook \"{}\"", webhook.name),
            );
        }
        check_http_url(&format!("{path}.url"), &webhook.url, report);
        if webhook.secret.is_empty() {
            report.value(
                &format!("{path}.secret"),
                "must not be empty: receivers verify the signature with it".to_string(),
            );
        }
        if webhook.events.is_empty() {
            report.value(
                &format!("{path}.events"),
                "list at least one event pattern, or \"*\"".to_string(),
            );
        }
    }
}

fn validate_connection<C: KindCatalog + ?Sized>(
    path: &str,
    connection: &ConnectionConfig,
    known_kinds: &C,
    report: &mut Report<'_>,
) {
    let id_ok = !connection.id.is_empty()
        && connection
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !id_ok {
        report.value(
            &format!("{path}.id"),
            format!(
                "\"{}\" is not a valid id: use lowercase letters, digits, '-' and '_'",
                connection.id
            ),
        );
    }
    let kinds = known_kinds.kinds();
    let kind_known = kinds.contains(&connection.kind.as_str());
    if !kind_known {
        report.value(
            &format!("{path}.kind"),
            format!(
                "unknown kind \"{}\"; this build knows: {}",
                connection.kind,
                kinds.join(", ")
            ),
        );
    }
    for key in connection.settings.keys() {
        if *key != connection.kind {
            report.key(&format!("{path}.{key}"), "unknown key".to_string());
        } else if !connection.settings[key].is_table() {
            report.value(
                &format!("{path}.{key}"),
                format!("expected a table [connections.{key}]"),
            );
        }
    }
    if kind_known {
        let empty = toml::Value::Table(Default::default());
        let table = connection.settings.get(&connection.kind).unwrap_or(&empty);
        if let Err((key, message)) = known_kinds.check_settings(&connection.kind, table) {
            let at = if key.is_empty() {
                format!("{path}.{}", connection.kind)
            } else {
                format!("{path}.{}.{key}", connection.kind)
            };
            report.value(&at, message);
        }
    }
    if let Some(schedule) = &connection.schedule {
        if connection.kind == SCIM_KIND {
            report.value(
                &format!("{path}.schedule"),
                "scim connections receive pushes and have no schedule".to_string(),
            );
        } else if cron::Schedule::from_str(schedule).is_err() {
            let hint = if schedule.split_whitespace().count() == 5 {
                " (the seconds field comes first: prepend \"0 \")"
            } else {
                ""
            };
            report.value(
                &format!("{path}.schedule"),
                format!(
                    "invalid cron expression \"{schedule}\": expected \"sec min hour day-of-month month day-of-week [year]\"{hint}"
                ),
            );
        }
    }
    if connection.full_sync_every_hours == 0 {
        report.value(
            &format!("{path}.full_sync_every_hours"),
            "must be at least 1: the periodic full pull is how deletions a delta cannot see are caught".to_string(),
        );
    }
    if idpsync_driver::http::RateShare::new(connection.rate_limit_share).is_none() {
        report.value(
            &format!("{path}.rate_limit_share"),
            format!(
                "must be above 0 and at most 1 (a share of the IdP's rate limit), got {}",
                connection.rate_limit_share
            ),
        );
    }
    if let Err(message) = DeletionLimit::parse(&connection.safety.max_deletions) {
        report.value(&format!("{path}.safety.max_deletions"), message);
    }
}

/// A connection with a `notifications` table is called by its IdP at
/// `{public_url}/hooks/...`: the URL must be set, and https unless it is a
/// loopback address (IdPs deliver only to https; loopback is for tests).
fn check_notification_reach(config: &Config, report: &mut Report<'_>) {
    let notified = config.connections.iter().enumerate().find(|(_, c)| {
        c.kind_settings()
            .and_then(|table| table.get("notifications"))
            .is_some()
    });
    let Some((index, connection)) = notified else {
        return;
    };
    match &config.server.public_url {
        None => report.value(
            &format!("connections[{index}].{}.notifications", connection.kind),
            "needs [server] public_url: the URL the IdP delivers notifications to (https://...)"
                .to_string(),
        ),
        Some(public_url) => {
            if let Ok(url) = url::Url::parse(public_url) {
                let loopback = match url.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(name)) => name == "localhost",
                    None => false,
                };
                if url.scheme() != "https" && !loopback {
                    report.value(
                        "server.public_url",
                        "IdPs deliver notifications only to https:// URLs".to_string(),
                    );
                }
            }
        }
    }
}

fn check_http_url(path: &str, value: &str, report: &mut Report<'_>) {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
        Ok(url) => report.value(
            path,
            format!(
                "expected an http:// or https:// URL, got scheme \"{}\"",
                url.scheme()
            ),
        ),
        Err(error) => report.value(path, format!("invalid URL \"{value}\": {error}")),
    }
}

/// Replaces `${NAME}` in every string with the variable's value; `$${` stands
/// for a literal `${`. A missing variable is an error at that key.
fn interpolate_env(
    value: &mut toml::Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
    report: &mut Report<'_>,
) {
    match value {
        toml::Value::String(text) if text.contains("${") => match expand(text, env) {
            Ok(expanded) => *text = expanded,
            Err(message) => report.value(&path, message),
        },
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                interpolate_env(item, format!("{path}[{index}]"), env, report);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                interpolate_env(item, child, env, report);
            }
        }
        _ => {}
    }
}

fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut missing = Vec::new();
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                return Err("unterminated ${ in value".to_string());
            };
            let name = &body[..end];
            let valid_name =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(format!("invalid environment variable name \"{name}\""));
            }
            match env(name) {
                Some(value) => out.push_str(&value),
                None => missing.push(name.to_string()),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "environment variable{} {} not set",
            if missing.len() == 1 { "" } else { "s" },
            missing
                .iter()
                .map(|name| format!("${{{name}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() {
                key.to_string()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn error_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// Byte offsets of keys and values by key path.
struct SpanIndex {
    keys: HashMap<String, Range<usize>>,
    values: HashMap<String, Range<usize>>,
}

impl SpanIndex {
    fn build(root: &toml::de::DeTable<'_>) -> Self {
        let mut index = SpanIndex {
            keys: HashMap::new(),
            values: HashMap::new(),
        };
        index.walk_table(root, "");
        index
    }

    fn walk_table(&mut self, table: &toml::de::DeTable<'_>, prefix: &str) {
        for (key, value) in table.iter() {
            let path = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            self.keys.insert(path.clone(), key.span());
            self.values.insert(path.clone(), value.span());
            self.walk_value(value.get_ref(), &path);
        }
    }

    fn walk_value(&mut self, value: &toml::de::DeValue<'_>, path: &str) {
        match value {
            toml::de::DeValue::Table(table) => self.walk_table(table, path),
            toml::de::DeValue::Array(items) => {
                for (item_index, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{item_index}]");
                    self.keys.insert(item_path.clone(), item.span());
                    self.values.insert(item_path.clone(), item.span());
                    self.walk_value(item.get_ref(), &item_path);
                }
            }
            _ => {}
        }
    }

    fn key_offset(&self, path: &str) -> Option<usize> {
        self.lookup(&self.keys, path)
    }

    fn value_offset(&self, path: &str) -> Option<usize> {
        self.lookup(&self.values, path)
    }

    /// The span of `path`, or of its nearest parent that is in the file.
    fn lookup(&self, map: &HashMap<String, Range<usize>>, path: &str) -> Option<usize> {
        let mut current = path;
        loop {
            if let Some(span) = map.get(current) {
                return Some(span.start);
            }
            let cut = current.rfind(['.', '['])?;
            current = &current[..cut];
        }
    }
}

/// Turns byte offsets into 1-based line:column.
struct LineIndex {
    line_starts: Vec<usize>,
    text: String,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(offset, _)| offset + 1));
        LineIndex {
            line_starts,
            text: text.to_string(),
        }
    }

    fn locate(&self, offset: usize) -> KeyLocation {
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset.min(self.text.len())]
            .chars()
            .count()
            + 1;
        KeyLocation { line, column }
    }
}
