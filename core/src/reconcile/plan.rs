//! A dry run's result: counts, the gate's verdict and every event the apply
//! would have written; rendered as a table for people or as JSON.

use super::{ChangeCounts, EffectCounts, GateVerdict};
use crate::events::{EventKind, NewEvent};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub connection_id: String,
    pub changes: ChangeCounts,
    pub effects: EffectCounts,
    pub gate: GateVerdict,
    /// Every event the apply would write, in order.
    pub events: Vec<NewEvent>,
}

impl Plan {
    pub fn new(
        connection_id: &str,
        changes: ChangeCounts,
        effects: EffectCounts,
        gate: GateVerdict,
        events: Vec<NewEvent>,
    ) -> Self {
        Plan {
            connection_id: connection_id.to_string(),
            changes,
            effects,
            gate,
            events,
        }
    }

    /// Events grouped by kind, in order of first appearance.
    pub fn events_by_kind(&self) -> Vec<(EventKind, Vec<&NewEvent>)> {
        let mut order: Vec<EventKind> = Vec::new();
        let mut by_kind: BTreeMap<EventKind, Vec<&NewEvent>> = BTreeMap::new();
        for event in &self.events {
            if !by_kind.contains_key(&event.kind) {
                order.push(event.kind);
            }
            by_kind.entry(event.kind).or_default().push(event);
        }
        order
            .into_iter()
            .map(|kind| (kind, by_kind.remove(&kind).unwrap_or_default()))
            .collect()
    }

    /// A table for a terminal: one row per kind of change with its count and
    /// the first `n_examples` subjects.
    pub fn render_table(&self, n_examples: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan for connection \"{}\" (nothing written)",
            self.connection_id
        );
        if self.events.is_empty() {
            let _ = writeln!(out, "no changes: the source matches the stored state");
            return out;
        }
        let _ = writeln!(out, "{:<26} {:>7}  EXAMPLES", "CHANGE", "COUNT");
        for (kind, events) in self.events_by_kind() {
            let examples: Vec<String> = events
                .iter()
                .take(n_examples)
                .map(|event| describe(event))
                .collect();
            let more = events.len().saturating_sub(n_examples);
            let mut line = examples.join(", ");
            if more > 0 {
                let _ = write!(line, ", ... {more} more");
            }
            let _ = writeln!(out, "{kind:<26} {:>7}  {line}", events.len());
        }
        if self.changes.memberships_skipped > 0 {
            let _ = writeln!(
                out,
                "{:<26} {:>7}  edges naming users or groups the source does not list",
                "membership.skipped", self.changes.memberships_skipped
            );
        }
        let _ = writeln!(
            out,
            "safety gate: {} user removal(s), {} allowed: {}",
            self.gate.removals,
            self.gate.allowed,
            if self.gate.held {
                "WOULD BE HELD for approval"
            } else {
                "would apply"
            }
        );
        out
    }
}

fn describe(event: &NewEvent) -> String {
    let payload = &event.payload;
    let text = |key: &str| {
        payload
            .get(key)
            .and_then(|value| value.as_str())
            .map(str::to_string)
    };
    if event.kind == EventKind::DeviceRevoked {
        return format!(
            "{} of {}",
            text("name").unwrap_or_default(),
            text("owner_external_id").unwrap_or_default()
        );
    }
    match event.kind.noun() {
        "user" => text("user_name").unwrap_or_else(|| event.subject_id.clone()),
        "group" => text("display_name").unwrap_or_else(|| event.subject_id.clone()),
        "membership" => format!(
            "{} -> {}",
            text("group_name").unwrap_or_else(|| event.subject_id.clone()),
            members_summary(payload)
        ),
        "acl_group" => format!(
            "{} -> {}",
            text("acl_group").unwrap_or_default(),
            text("user_name").unwrap_or_default()
        ),
        _ => event.subject_id.clone(),
    }
}

/// The members of a `membership.added|removed` event, for people: the first
/// few external ids and how many more.
pub fn members_summary(payload: &serde_json::Value) -> String {
    const SHOWN: usize = 3;
    let members = payload["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut text: Vec<&str> = members
        .iter()
        .take(SHOWN)
        .filter_map(|member| member["external_id"].as_str())
        .collect();
    let more = format!("(+{} more)", members.len().saturating_sub(SHOWN));
    if members.len() > SHOWN {
        text.push(&more);
    }
    text.join(", ")
}
