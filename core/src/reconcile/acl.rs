//! `[[acl_groups]]` rules, compiled: which source groups feed which ACL group.

use crate::config::AclGroupConfig;
use regex::Regex;

/// How a rule selects source groups by display name.
#[derive(Debug, Clone)]
enum NameMatcher {
    Exact(String),
    Glob(globset::GlobMatcher),
    Regex(Regex),
}

impl NameMatcher {
    fn matches(&self, name: &str) -> bool {
        match self {
            NameMatcher::Exact(exact) => exact == name,
            NameMatcher::Glob(glob) => glob.is_match(name),
            NameMatcher::Regex(regex) => regex.is_match(name),
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledRule {
    connection: String,
    matcher: NameMatcher,
}

/// One ACL group and its compiled rules.
#[derive(Debug, Clone)]
pub struct AclGroupRules {
    pub name: String,
    rules: Vec<CompiledRule>,
}

impl AclGroupRules {
    /// Whether a source group of `connection` named `group_name` feeds this ACL group.
    pub fn selects(&self, connection: &str, group_name: &str) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.connection == connection && rule.matcher.matches(group_name))
    }

    pub fn reads_connection(&self, connection: &str) -> bool {
        self.rules.iter().any(|rule| rule.connection == connection)
    }
}

/// Every ACL group's rules.
#[derive(Debug, Clone, Default)]
pub struct AclRules {
    pub groups: Vec<AclGroupRules>,
}

impl AclRules {
    /// Compiles validated config. A pattern that does not compile (config
    /// validation rejects those) selects nothing.
    pub fn compile(config: &[AclGroupConfig]) -> AclRules {
        let groups = config
            .iter()
            .map(|acl_group| AclGroupRules {
                name: acl_group.name.clone(),
                rules: acl_group
                    .from
                    .iter()
                    .filter_map(|rule| {
                        let matcher = if let Some(exact) = &rule.group {
                            NameMatcher::Exact(exact.clone())
                        } else if let Some(glob) = &rule.group_glob {
                            NameMatcher::Glob(globset::Glob::new(glob).ok()?.compile_matcher())
                        } else {
                            NameMatcher::Regex(Regex::new(rule.group_regex.as_deref()?).ok()?)
                        };
                        Some(CompiledRule {
                            connection: rule.connection.clone(),
                            matcher,
                        })
                    })
                    .collect(),
            })
            .collect();
        AclRules { groups }
    }

    /// The ACL groups a source group feeds.
    pub fn acl_groups_for<'a>(
        &'a self,
        connection: &'a str,
        group_name: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.groups
            .iter()
            .filter(move |acl| acl.selects(connection, group_name))
            .map(|acl| acl.name.as_str())
    }

    pub fn any_for_connection(&self, connection: &str) -> bool {
        self.groups
            .iter()
            .any(|acl| acl.reads_connection(connection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AclSourceRule;

    fn rule(
        connection: &str,
        group: Option<&str>,
        glob: Option<&str>,
        regex: Option<&str>,
    ) -> AclSourceRule {
        AclSourceRule {
            connection: connection.into(),
            group: group.map(Into::into),
            group_glob: glob.map(Into::into),
            group_regex: regex.map(Into::into),
        }
    }

    #[test]
    fn rules_select_by_connection_and_exact_glob_or_regex() {
        let rules = AclRules::compile(&[
            AclGroupConfig {
                name: "engineering".into(),
                description: None,
                from: vec![
                    rule("entra", Some("Engineering"), None, None),
                    rule("okta", None, Some("eng-*"), None),
                ],
            },
            AclGroupConfig {
                name: "contractors".into(),
                description: None,
                from: vec![rule(
                    "okta",
                    None,
                    None,
                    Some("^(contractors|vendors)-[a-z]+$"),
                )],
            },
        ]);
        let for_group =
            |c: &'static str, g: &'static str| rules.acl_groups_for(c, g).collect::<Vec<_>>();
        assert_eq!(for_group("entra", "Engineering"), vec!["engineering"]);
        assert_eq!(
            for_group("entra", "engineering"),
            Vec::<&str>::new(),
            "exact is exact"
        );
        assert_eq!(
            for_group("okta", "Engineering"),
            Vec::<&str>::new(),
            "rules are per connection"
        );
        assert_eq!(for_group("okta", "eng-backend"), vec!["engineering"]);
        assert_eq!(for_group("okta", "vendors-acme"), vec!["contractors"]);
        assert_eq!(for_group("okta", "vendors-ACME"), Vec::<&str>::new());
        assert!(rules.any_for_connection("okta") && !rules.any_for_connection("google"));
    }
}
