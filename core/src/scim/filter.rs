//! The RFC 7644 §3.4.2.2 filter language: a parser to [`Filter`] and an
//! evaluator over JSON resources (used for PATCH value filters and tests; list
//! queries translate the same tree to SQL in `store::scim_query`).
//!
//! Precedence: parentheses, then `not`, then `and`, then `or`. Attribute names
//! and operators are case-insensitive; string comparison follows the
//! attribute's `caseExact` ([`super::schema::case_exact`]).

use super::error::{ScimError, ScimResult};
use serde_json::Value;
use std::fmt;

/// `[urn:...:]name[.sub]`, names kept as written (compare case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    pub fn simple(name: &str) -> Self {
        AttrPath {
            urn: None,
            name: name.to_string(),
            sub: None,
        }
    }

    /// Lowercased `name.sub` without the URN, e.g. `emails.value`.
    pub fn key(&self) -> String {
        match &self.sub {
            Some(sub) => format!(
                "{}.{}",
                self.name.to_ascii_lowercase(),
                sub.to_ascii_lowercase()
            ),
            None => self.name.to_ascii_lowercase(),
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        write!(f, "{}", self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }

    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, CompareOp, Value),
    Present(AttrPath),
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `attr[filter]`: some value of the multi-valued `attr` matches `filter`,
    /// whose paths are relative to that value.
    ValuePath(AttrPath, Box<Filter>),
}

impl CompareOp {
    /// The operator as the grammar spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

/// A filter in the grammar's own text, every group in parentheses: what
/// [`parse`] reads back as the same filter.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare(path, op, value) => write!(f, "{path} {} {value}", op.as_str()),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::And(left, right) => write!(f, "({left}) and ({right})"),
            Filter::Or(left, right) => write!(f, "({left}) or ({right})"),
            Filter::ValuePath(path, inner) => write!(f, "{path}[{inner}]"),
        }
    }
}

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// Parses a filter; any problem is a 400 `invalidFilter`.
pub fn parse(text: &str) -> ScimResult<Filter> {
    if text.len() > MAX_FILTER_LEN {
        return Err(ScimError::invalid_filter(format!(
            "filter longer than {MAX_FILTER_LEN} bytes"
        )));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        depth: 0,
    };
    let filter = parser.or_expr()?;
    if parser.position != parser.tokens.len() {
        return Err(ScimError::invalid_filter(format!(
            "unexpected {} at the end of the filter",
            parser.tokens[parser.position].describe()
        )));
    }
    Ok(filter)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Literal(Value),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    /// `].sub` after a value path.
    SubAfterBracket(String),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(word) => format!("\"{word}\""),
            Token::Literal(value) => value.to_string(),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::OpenBracket => "[".into(),
            Token::CloseBracket => "]".into(),
            Token::SubAfterBracket(sub) => format!(".{sub}"),
        }
    }
}

fn tokenize(text: &str) -> ScimResult<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        match c {
            ' ' | '\t' | '\n' | '\r' => index += 1,
            '(' => {
                tokens.push(Token::Open);
                index += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                index += 1;
            }
            '[' => {
                tokens.push(Token::OpenBracket);
                index += 1;
            }
            ']' => {
                tokens.push(Token::CloseBracket);
                index += 1;
                if chars.get(index) == Some(&'.') {
                    let start = index + 1;
                    let mut end = start;
                    while end < chars.len() && is_name_char(chars[end]) {
                        end += 1;
                    }
                    if end == start {
                        return Err(ScimError::invalid_filter(
                            "expected a sub-attribute after \"].\"",
                        ));
                    }
                    tokens.push(Token::SubAfterBracket(chars[start..end].iter().collect()));
                    index = end;
                }
            }
            '"' => {
                let start = index;
                index += 1;
                let mut escaped = false;
                while index < chars.len() {
                    match chars[index] {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                    index += 1;
                }
                if index >= chars.len() {
                    return Err(ScimError::invalid_filter("unterminated string"));
                }
                let literal: String = chars[start..=index].iter().collect();
                let value: Value = serde_json::from_str(&literal)
                    .map_err(|_| ScimError::invalid_filter(format!("invalid string {literal}")))?;
                tokens.push(Token::Literal(value));
                index += 1;
            }
            _ if c == '-' || c.is_ascii_digit() => {
                let start = index;
                index += 1;
                while index < chars.len()
                    && (chars[index].is_ascii_digit()
                        || matches!(chars[index], '.' | 'e' | 'E' | '+' | '-'))
                {
                    index += 1;
                }
                let literal: String = chars[start..index].iter().collect();
                let value: Value = serde_json::from_str(&literal)
                    .map_err(|_| ScimError::invalid_filter(format!("invalid number {literal}")))?;
                tokens.push(Token::Literal(value));
            }
            _ if c.is_ascii_alphabetic() || c == '$' => {
                let start = index;
                while index < chars.len()
                    && (is_name_char(chars[index]) || matches!(chars[index], ':' | '.' | '$'))
                {
                    index += 1;
                }
                let word: String = chars[start..index].iter().collect();
                match word.to_ascii_lowercase().as_str() {
                    "true" => tokens.push(Token::Literal(Value::Bool(true))),
                    "false" => tokens.push(Token::Literal(Value::Bool(false))),
                    "null" => tokens.push(Token::Literal(Value::Null)),
                    _ => tokens.push(Token::Word(word)),
                }
            }
            other => {
                return Err(ScimError::invalid_filter(format!(
                    "unexpected character '{other}'"
                )));
            }
        }
    }
    Ok(tokens)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Parses `[urn:...:]name[.sub]`.
pub fn parse_attr_path(word: &str) -> ScimResult<AttrPath> {
    let (urn, rest) = if word.len() > 4 && word[..4].eq_ignore_ascii_case("urn:") {
        match word.rfind(':') {
            Some(cut) => (Some(word[..cut].to_string()), &word[cut + 1..]),
            None => (None, word),
        }
    } else {
        (None, word)
    };
    let mut parts = rest.splitn(2, '.');
    let name = parts.next().unwrap_or_default();
    let sub = parts.next();
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && part.chars().all(|c| is_name_char(c) || c == '$')
    };
    if !valid(name) || sub.is_some_and(|sub| !valid(sub)) {
        return Err(ScimError::invalid_filter(format!(
            "invalid attribute path \"{word}\""
        )));
    }
    Ok(AttrPath {
        urn,
        name: name.to_string(),
        sub: sub.map(str::to_string),
    })
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    depth: usize,
}

/// Deepest nesting of parentheses and brackets accepted.
const MAX_DEPTH: usize = 32;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword))
    }

    fn enter(&mut self) -> ScimResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ScimError::invalid_filter("filter nested too deeply"));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> ScimResult<Filter> {
        let mut left = self.and_expr()?;
        while self.peek_keyword("or") {
            self.position += 1;
            let right = self.and_expr()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> ScimResult<Filter> {
        let mut left = self.unary()?;
        while self.peek_keyword("and") {
            self.position += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> ScimResult<Filter> {
        if self.peek_keyword("not") {
            self.position += 1;
            if self.peek() != Some(&Token::Open) {
                return Err(ScimError::invalid_filter(
                    "\"not\" must be followed by \"(\"",
                ));
            }
            return Ok(Filter::Not(Box::new(self.group()?)));
        }
        if self.peek() == Some(&Token::Open) {
            return self.group();
        }
        self.atom()
    }

    fn group(&mut self) -> ScimResult<Filter> {
        self.enter()?;
        self.position += 1;
        let inner = self.or_expr()?;
        match self.next() {
            Some(Token::Close) => {
                self.depth -= 1;
                Ok(inner)
            }
            _ => Err(ScimError::invalid_filter("missing \")\"")),
        }
    }

    fn atom(&mut self) -> ScimResult<Filter> {
        let word = match self.next() {
            Some(Token::Word(word)) => word,
            Some(other) => {
                return Err(ScimError::invalid_filter(format!(
                    "expected an attribute, found {}",
                    other.describe()
                )));
            }
            None => {
                return Err(ScimError::invalid_filter(
                    "the filter ends where an attribute was expected",
                ));
            }
        };
        let path = parse_attr_path(&word)?;
        if self.peek() == Some(&Token::OpenBracket) {
            self.enter()?;
            self.position += 1;
            let inner = self.or_expr()?;
            if self.next() != Some(Token::CloseBracket) {
                return Err(ScimError::invalid_filter("missing \"]\""));
            }
            self.depth -= 1;
            if path.sub.is_some() {
                return Err(ScimError::invalid_filter(
                    "a value filter follows an attribute, not a sub-attribute",
                ));
            }
            // `emails[type eq "work"].value eq "x"`: the sub-attribute
            // comparison joins the value filter.
            if let Some(Token::SubAfterBracket(sub)) = self.peek().cloned() {
                self.position += 1;
                let tail = self.comparison(AttrPath::simple(&sub))?;
                return Ok(Filter::ValuePath(
                    path,
                    Box::new(Filter::And(Box::new(inner), Box::new(tail))),
                ));
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: AttrPath) -> ScimResult<Filter> {
        let operator = match self.next() {
            Some(Token::Word(word)) => word,
            Some(other) => {
                return Err(ScimError::invalid_filter(format!(
                    "expected an operator after {path}, found {}",
                    other.describe()
                )));
            }
            None => {
                return Err(ScimError::invalid_filter(format!(
                    "expected an operator after {path}"
                )));
            }
        };
        if operator.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::parse(&operator) else {
            return Err(ScimError::invalid_filter(format!(
                "unknown operator \"{operator}\""
            )));
        };
        match self.next() {
            Some(Token::Literal(value)) => {
                if op.is_ordering() && matches!(value, Value::Bool(_) | Value::Null) {
                    return Err(ScimError::invalid_filter(format!(
                        "{operator} cannot compare {value}"
                    )));
                }
                if matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) && !value.is_string()
                {
                    return Err(ScimError::invalid_filter(format!(
                        "{operator} needs a string, got {value}"
                    )));
                }
                Ok(Filter::Compare(path, op, value))
            }
            Some(other) => Err(ScimError::invalid_filter(format!(
                "expected a value after {path} {operator}, found {}",
                other.describe()
            ))),
            None => Err(ScimError::invalid_filter(format!(
                "expected a value after {path} {operator}"
            ))),
        }
    }
}

/// Does `resource` (a SCIM JSON object) match `filter`? `case_exact` says
/// whether a path (lowercased `name.sub`) compares strings exactly.
pub fn matches(filter: &Filter, resource: &Value, case_exact: &dyn Fn(&str) -> bool) -> bool {
    match filter {
        Filter::And(left, right) => {
            matches(left, resource, case_exact) && matches(right, resource, case_exact)
        }
        Filter::Or(left, right) => {
            matches(left, resource, case_exact) || matches(right, resource, case_exact)
        }
        Filter::Not(inner) => !matches(inner, resource, case_exact),
        Filter::Present(path) => values_at(resource, path)
            .iter()
            .any(|value| is_present(value)),
        // `ne` holds when no value equals: absent attributes included.
        Filter::Compare(path, CompareOp::Ne, expected) => !matches(
            &Filter::Compare(path.clone(), CompareOp::Eq, expected.clone()),
            resource,
            case_exact,
        ),
        Filter::Compare(path, op, expected) => {
            let exact = case_exact(&path.key());
            values_at(resource, path)
                .iter()
                .any(|actual| compare(actual, *op, expected, exact))
        }
        Filter::ValuePath(path, inner) => {
            let attribute = AttrPath {
                urn: path.urn.clone(),
                name: path.name.clone(),
                sub: None,
            };
            let prefix = attribute.key();
            let element_case_exact = |sub: &str| case_exact(&format!("{prefix}.{sub}"));
            values_at(resource, &attribute)
                .iter()
                .any(|element| matches(inner, element, &element_case_exact))
        }
    }
}

fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        _ => true,
    }
}

/// Looks up a key case-insensitively.
pub fn get_ci<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    let fields = object.as_object()?;
    fields.get(key).or_else(|| {
        fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value)
    })
}

/// Every value at `path`, flattening multi-valued attributes.
pub fn values_at<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let base = match &path.urn {
        Some(urn) => match get_ci(resource, urn) {
            Some(extension) => extension,
            // A core URN prefix names the resource itself.
            None if urn.to_ascii_lowercase().contains(":core:") => resource,
            None => return Vec::new(),
        },
        None => resource,
    };
    let Some(value) = get_ci(base, &path.name) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    match &path.sub {
        None => items,
        Some(sub) => items
            .into_iter()
            .filter_map(|item| get_ci(item, sub))
            .collect(),
    }
}

fn compare(actual: &Value, op: CompareOp, expected: &Value, case_exact: bool) -> bool {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            if !case_exact {
                let (a, e) = (a.to_lowercase(), e.to_lowercase());
                return string_compare(&a, op, &e);
            }
            return string_compare(a, op, e);
        }
        (Value::Number(a), Value::Number(e)) => a
            .as_f64()
            .zip(e.as_f64())
            .and_then(|(a, e)| a.partial_cmp(&e)),
        (Value::Bool(a), Value::Bool(e)) => Some(a.cmp(e)),
        // Booleans sent as strings by some clients.
        (Value::Bool(a), Value::String(e)) => e
            .parse::<bool>()
            .ok()
            .or_else(|| e.to_ascii_lowercase().parse().ok())
            .map(|e| a.cmp(&e)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ordering) {
        (CompareOp::Eq, Some(order)) => order == Ordering::Equal,
        (CompareOp::Ne, Some(order)) => order != Ordering::Equal,
        (CompareOp::Ne, None) => true,
        (CompareOp::Gt, Some(order)) => order == Ordering::Greater,
        (CompareOp::Ge, Some(order)) => order != Ordering::Less,
        (CompareOp::Lt, Some(order)) => order == Ordering::Less,
        (CompareOp::Le, Some(order)) => order != Ordering::Greater,
        _ => false,
    }
}

fn string_compare(actual: &str, op: CompareOp, expected: &str) -> bool {
    match op {
        CompareOp::Eq => actual == expected,
        CompareOp::Ne => actual != expected,
        CompareOp::Co => actual.contains(expected),
        CompareOp::Sw => actual.starts_with(expected),
        CompareOp::Ew => actual.ends_with(expected),
        CompareOp::Gt => actual > expected,
        CompareOp::Ge => actual >= expected,
        CompareOp::Lt => actual < expected,
        CompareOp::Le => actual <= expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Renders a parsed filter with explicit grouping, to check precedence.
    fn show(filter: &Filter) -> String {
        match filter {
            Filter::Compare(path, op, value) => format!("{path} {op:?} {value}"),
            Filter::Present(path) => format!("{path} pr"),
            Filter::Not(inner) => format!("not({})", show(inner)),
            Filter::And(l, r) => format!("({} AND {})", show(l), show(r)),
            Filter::Or(l, r) => format!("({} OR {})", show(l), show(r)),
            Filter::ValuePath(path, inner) => format!("{path}[{}]", show(inner)),
        }
    }

    fn check(text: &str, expected: &str) {
        assert_eq!(
            show(&parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))),
            expected,
            "{text}"
        );
    }

    fn check_error(text: &str, detail_part: &str) {
        let error = parse(text).expect_err(text);
        assert_eq!(error.status, 400);
        assert_eq!(
            error.scim_type,
            Some(super::super::error::ScimType::InvalidFilter)
        );
        assert!(
            error.detail.contains(detail_part),
            "{text}: {}",
            error.detail
        );
    }

    #[test]
    fn the_grammar_parses_with_rfc_precedence() {
        check(r#"userName eq "bjensen""#, r#"userName Eq "bjensen""#);
        check(r#"USERNAME EQ "x""#, r#"USERNAME Eq "x""#);
        check("title pr", "title pr");
        check(
            r#"a eq 1 or b eq 2 and c eq 3"#,
            "(a Eq 1 OR (b Eq 2 AND c Eq 3))",
        );
        check(
            r#"(a eq 1 or b eq 2) and c eq 3"#,
            "((a Eq 1 OR b Eq 2) AND c Eq 3)",
        );
        check(r#"not (a eq 1) and b pr"#, "(not(a Eq 1) AND b pr)");
        check(
            r#"name.familyName co "O'Malley""#,
            r#"name.familyName Co "O'Malley""#,
        );
        check(
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"meta.lastModified Gt "2011-05-13T04:42:34Z""#,
        );
        check(
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp"]"#,
            r#"(emails[(type Eq "work" AND value Co "@example.com")] OR ims[type Eq "xmpp"])"#,
        );
        check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "R&D""#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department Eq "R&D""#,
        );
        check(
            r#"emails[type eq "work"].value eq "a@b.c""#,
            r#"emails[(type Eq "work" AND value Eq "a@b.c")]"#,
        );
        check(
            r#"active eq true and x eq null"#,
            "(active Eq true AND x Eq null)",
        );
        check(
            r#"userName eq "with \"quotes\"""#,
            r#"userName Eq "with \"quotes\"""#,
        );
    }

    #[test]
    fn bad_filters_are_invalid_filter_errors() {
        check_error("userName eq", "expected a value");
        check_error("userName zz \"x\"", "unknown operator");
        check_error("userName eq \"x", "unterminated string");
        check_error("(userName eq \"x\"", "missing \")\"");
        check_error("emails[type eq \"work\"", "missing \"]\"");
        check_error("active gt true", "cannot compare");
        check_error("userName co 3", "needs a string");
        check_error("userName eq \"x\" extra", "unexpected");
        check_error("not userName eq \"x\"", "must be followed");
        check_error("", "ends where an attribute");
        check_error("userName eq \"x\" %", "unexpected character");
        check_error(&"(".repeat(40), "nested too deeply");
    }

    #[test]
    fn evaluation_follows_case_exactness_and_multi_values() {
        let user = json!({
            "userName": "BJensen",
            "externalId": "AbC",
            "active": true,
            "name": {"familyName": "Jensen"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "home"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Tour Operations"}
        });
        let case_exact = |path: &str| matches!(path, "id" | "externalid");
        let eval = |text: &str| matches(&parse(text).unwrap(), &user, &case_exact);
        assert!(
            eval(r#"username eq "bjensen""#),
            "userName is not caseExact"
        );
        assert!(!eval(r#"externalId eq "abc""#), "externalId is caseExact");
        assert!(eval(r#"externalId eq "AbC""#));
        assert!(eval(
            r#"emails[type eq "work" and value co "@EXAMPLE.com"]"#
        ));
        assert!(!eval(r#"emails[type eq "home" and value co "example"]"#));
        assert!(
            eval(r#"emails.value ew ".org""#),
            "any value of a multi-valued attribute"
        );
        assert!(eval(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department sw "tour""#
        ));
        assert!(eval(r#"active eq true and not (title pr)"#));
        assert!(eval(r#"active eq "True""#), "string booleans from Entra");
        assert!(eval(r#"name.familyName gt "A" and name.familyName lt "K""#));
        assert!(!eval(r#"nickName pr"#));
    }
}
