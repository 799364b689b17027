//! Hand-written SQL, for what sea-query does not say well (recursive
//! queries, `VALUES` lists, aggregates, translated SCIM filters): written
//! once with `?` placeholders, numbered `$1, $2, ...` for PostgreSQL.

use sea_orm::{DatabaseBackend, Statement, Value};

/// `text` with its `?` placeholders as `backend` wants them. The text holds
/// no literals (every value is bound), so each `?` is a placeholder.
pub fn placeholders_for(backend: DatabaseBackend, text: &str) -> String {
    if backend != DatabaseBackend::Postgres {
        return text.to_string();
    }
    let mut numbered = String::with_capacity(text.len() + 8);
    let mut count = 0;
    for c in text.chars() {
        if c == '?' {
            count += 1;
            numbered.push('$');
            numbered.push_str(&count.to_string());
        } else {
            numbered.push(c);
        }
    }
    numbered
}

/// A statement of `text` (with `?` placeholders) and its values.
pub fn statement(backend: DatabaseBackend, text: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, placeholders_for(backend, text), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_numbers_placeholders_in_order_and_sqlite_keeps_them() {
        let text = "SELECT ?, x FROM t WHERE a = ? AND b IN (?, ?)";
        assert_eq!(
            placeholders_for(DatabaseBackend::Postgres, text),
            "SELECT $1, x FROM t WHERE a = $2 AND b IN ($3, $4)"
        );
        assert_eq!(placeholders_for(DatabaseBackend::Sqlite, text), text);
    }
}
