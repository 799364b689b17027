//! Keycloak representations -> driver records.

use crate::api::{GroupRepresentation, UserRepresentation};
use idpsync_driver::{DriverError, Email, SourceGroup, SourceUser};

pub fn user(user: UserRepresentation) -> Result<SourceUser, DriverError> {
    if user.id.is_empty() || user.username.is_empty() {
        return Err(DriverError::protocol("a user without id or username"));
    }
    let mut record = SourceUser::new(user.id, user.username);
    record.given_name = user.first_name;
    record.family_name = user.last_name;
    record.display_name = match (&record.given_name, &record.family_name) {
        (Some(given), Some(family)) => Some(format!("{given} {family}")),
        (Some(one), None) | (None, Some(one)) => Some(one.clone()),
        (None, None) => None,
    };
    if let Some(email) = user.email.filter(|e| !e.is_empty()) {
        record.emails.push(Email {
            value: email,
            kind: Some("work".into()),
            primary: true,
        });
    }
    record.active = user.enabled;
    record.raw_status = Some(if user.enabled { "enabled" } else { "disabled" }.into());
    Ok(record)
}

pub fn group(group: &GroupRepresentation) -> Result<SourceGroup, DriverError> {
    if group.id.is_empty() {
        return Err(DriverError::protocol("a group without id"));
    }
    let mut record = SourceGroup::new(group.id.clone(), group.name.clone());
    if let Some(path) = &group.path {
        record.attributes.insert("path".into(), path.clone().into());
    }
    Ok(record)
}
