//! The checks every driver's settings make, written once: each error names
//! the key the admin must fix, and a secret's value never appears in one.
//!
//! A settings type implements [`Settings`]; [`crate::DriverKind`] parses it
//! with the key path of any type error and then calls
//! [`Settings::validate`].

use crate::error::DriverError;
use crate::secret::Secret;
use serde::de::DeserializeOwned;

/// A driver's `[connections.<kind>]` table, parsed.
pub trait Settings: DeserializeOwned + Send {
    /// What parsing cannot check: URLs, ranges, combinations. The error
    /// names the key.
    fn validate(&self) -> Result<(), DriverError>;
}

/// `value` is an absolute http(s) URL with a host.
pub fn http_url(key: &str, value: &str) -> Result<url::Url, DriverError> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        _ => Err(DriverError::config(
            key,
            format!("\"{value}\" is not an http(s) URL"),
        )),
    }
}

/// `value` has something besides white space.
pub fn not_empty(key: &str, value: &str) -> Result<(), DriverError> {
    if value.trim().is_empty() {
        return Err(DriverError::config(key, "must not be empty"));
    }
    Ok(())
}

/// The secret is set (its value is never shown).
pub fn secret_set(key: &str, secret: &Secret) -> Result<(), DriverError> {
    if secret.is_empty() {
        return Err(DriverError::config(key, "must not be empty"));
    }
    Ok(())
}

/// `page_size` is between 1 and the API's maximum page size.
pub fn page_size(value: u32, api_maximum: u32) -> Result<(), DriverError> {
    if !(1..=api_maximum).contains(&value) {
        return Err(DriverError::config(
            "page_size",
            format!("must be between 1 and {api_maximum}, got {value}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(result: Result<impl std::fmt::Debug, DriverError>) -> (String, String) {
        match result {
            Err(DriverError::InvalidConfig { key, message }) => (key, message),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn each_check_names_its_key_and_says_what_is_expected() {
        assert!(http_url("base_url", "https://sso.acme.test/auth").is_ok());
        let (key, message) = key_of(http_url("base_url", "ftp://x"));
        assert_eq!(key, "base_url");
        assert!(message.contains("not an http(s) URL"), "{message}");
        assert_eq!(key_of(http_url("api_url", "/relative")).0, "api_url");

        assert_eq!(key_of(not_empty("realm", "  ")).0, "realm");
        assert!(not_empty("realm", "acme").is_ok());

        let secret = Secret::new("");
        assert_eq!(
            key_of(secret_set("client_secret", &secret)).0,
            "client_secret"
        );

        assert!(page_size(1, 100).is_ok() && page_size(100, 100).is_ok());
        let (key, message) = key_of(page_size(101, 100));
        assert_eq!(key, "page_size");
        assert_eq!(message, "must be between 1 and 100, got 101");
        assert_eq!(key_of(page_size(0, 100)).0, "page_size");
    }
}
