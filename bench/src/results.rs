//! What a benchmark run produces, as data: one JSON file per run under
//! `bench/results/` (`<UTC start>-<command>.json`), from which
//! `idpsync-bench report` renders the figures in BENCHMARKS.md.
//!
//! A run is one invocation of the bench (`all` is one run of every table).
//! A table is one benchmark with its parameters; a figure is one measure in
//! it, a number with its unit where it has one.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How a pull's unchanged re-run says that it wrote nothing; the report's
/// target for unchanged runs looks for it.
pub const NOTHING_WRITTEN: &str = "0 (no state change, no event)";

/// Where runs are kept, relative to the workspace root.
pub const RESULTS_DIR: &str = "bench/results";

/// One invocation of `idpsync-bench`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    /// When it started, RFC 3339 UTC to the minute or finer.
    pub started: String,
    /// CPU count and model.
    pub host: String,
    /// The commit the binary was built from, `+changes` when the tree
    /// differed; absent for runs before 2026-11-29 17:00 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The arguments after `idpsync-bench`.
    pub command: String,
    pub tables: Vec<Table>,
}

/// One benchmark's figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Table {
    pub benchmark: Benchmark,
    /// What ran, in words (tenant size, database, clients).
    pub title: String,
    /// The parameters that tell tables of one benchmark apart
    /// (`database`, `idp`, `users`, `durability`, ...).
    pub parameters: std::collections::BTreeMap<String, String>,
    pub figures: Vec<Figure>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Benchmark {
    Revocation,
    Scim,
    Pull,
    /// API calls per full pull, per driver.
    Calls,
    /// Console page render times.
    Console,
    /// Offboarding at a pulled IdP to device.revoked, with and without
    /// the IdP's notifications.
    Notify,
}

/// One measure. `value` and `unit` are absent for a figure that is only
/// words (e.g. "0 (no state change, no event)").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    pub measure: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
    /// What the number alone does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Unit {
    #[serde(rename = "ms")]
    Millis,
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "MiB")]
    Mebibytes,
    #[serde(rename = "req/s")]
    PerSecond,
    /// idpsync's figure over the peer's.
    #[serde(rename = "x")]
    Ratio,
    #[serde(rename = "count")]
    Count,
}

impl Figure {
    pub fn number(measure: impl Into<String>, value: f64, unit: Unit) -> Figure {
        Figure {
            measure: measure.into(),
            value: Some(value),
            unit: Some(unit),
            note: None,
        }
    }

    pub fn words(measure: impl Into<String>, note: impl Into<String>) -> Figure {
        Figure {
            measure: measure.into(),
            value: None,
            unit: None,
            note: Some(note.into()),
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Figure {
        self.note = Some(note.into());
        self
    }

    /// The value as the tables show it: `8.3 s`, `11.2x`, `6154 req/s`.
    pub fn display_value(&self) -> String {
        let number = match (self.value, self.unit) {
            (Some(value), Some(unit)) => Some(unit.format(value)),
            (Some(value), None) => Some(format!("{value}")),
            _ => None,
        };
        match (number, &self.note) {
            (Some(number), Some(note)) => format!("{number} ({note})"),
            (Some(number), None) => number,
            (None, Some(note)) => note.clone(),
            (None, None) => String::new(),
        }
    }
}

impl Unit {
    /// What follows a number of this unit: ` ms`, `x`.
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Millis => " ms",
            Unit::Seconds => " s",
            Unit::Mebibytes => " MiB",
            Unit::PerSecond => " req/s",
            Unit::Ratio => "x",
            Unit::Count => "",
        }
    }

    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Millis => format!("{value:.2} ms"),
            Unit::Seconds if value < 1.0 => format!("{value:.2} s"),
            Unit::Seconds => format!("{value:.1} s"),
            Unit::Mebibytes => format!("{value:.0} MiB"),
            Unit::PerSecond => format!("{value:.0} req/s"),
            Unit::Ratio => format!("{value:.1}x"),
            Unit::Count => format!("{value:.0}"),
        }
    }
}

impl Table {
    pub fn new(benchmark: Benchmark, title: impl Into<String>) -> Table {
        Table {
            benchmark,
            title: title.into(),
            parameters: Default::default(),
            figures: Vec::new(),
        }
    }

    pub fn parameter(mut self, name: &str, value: impl ToString) -> Table {
        self.parameters.insert(name.to_string(), value.to_string());
        self
    }

    /// The table as printed to the terminal.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n\n| measure | value |\n|---|---|\n", self.title);
        for figure in &self.figures {
            out.push_str(&format!(
                "| {} | {} |\n",
                figure.measure,
                figure.display_value()
            ));
        }
        out
    }
}

impl Run {
    /// Writes the run as `<dir>/<started>-<first word of command>.json`.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("while creating {}", dir.display()))?;
        let stamp = self.started.replace([':', '-'], "");
        let word = self
            .command
            .split_whitespace()
            .find(|word| !word.starts_with('-'))
            .unwrap_or("run");
        let path = dir.join(format!("{stamp}-{word}.json"));
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("while writing {}", path.display()))?;
        Ok(path)
    }

    /// Every run in `dir`, oldest first.
    pub fn load_all(dir: &Path) -> Result<Vec<Run>> {
        let mut runs = Vec::new();
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("while reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "json") {
                let text = std::fs::read_to_string(&path)?;
                let run: Run = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a run", path.display()))?;
                runs.push(run);
            }
        }
        runs.sort_by(|a, b| a.started.cmp(&b.started));
        Ok(runs)
    }

    /// The first table of `benchmark` whose parameters include every pair
    /// of `with`.
    pub fn table(&self, benchmark: Benchmark, with: &[(&str, &str)]) -> Option<&Table> {
        self.tables.iter().find(|table| {
            table.benchmark == benchmark
                && with.iter().all(|(name, value)| {
                    table.parameters.get(*name).map(String::as_str) == Some(value)
                })
        })
    }

    /// A run of the whole suite (`idpsync-bench all`).
    pub fn is_full(&self) -> bool {
        self.command.split_whitespace().any(|word| word == "all")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_reads_back_as_written() {
        let figure = Figure::number(
            "PATCH active=false: idpsync / peer requests/s",
            11.2,
            Unit::Ratio,
        )
        .with_note("6154 vs 551");
        let text = serde_json::to_string(&figure).unwrap();
        assert_eq!(
            text,
            r#"{"measure":"PATCH active=false: idpsync / peer requests/s","value":11.2,"unit":"x","note":"6154 vs 551"}"#
        );
        assert_eq!(serde_json::from_str::<Figure>(&text).unwrap(), figure);
        assert_eq!(figure.display_value(), "11.2x (6154 vs 551)");
    }

    #[test]
    fn a_run_is_saved_under_its_start_and_command() {
        let dir = std::env::temp_dir().join(format!("idpsync-bench-{}", std::process::id()));
        let run = Run {
            started: "2026-12-05T02:30:00Z".into(),
            host: "2 cores, test".into(),
            revision: Some("abc1234".into()),
            command: "scim --users 2000".into(),
            tables: vec![Table::new(Benchmark::Scim, "SCIM").parameter("database", "sqlite")],
        };
        let path = run.save(&dir).unwrap();
        assert_eq!(path.file_name().unwrap(), "20261205T023000Z-scim.json");
        assert_eq!(Run::load_all(&dir).unwrap(), vec![run]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
