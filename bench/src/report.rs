//! Renders the figures in BENCHMARKS.md from the runs in `bench/results/`:
//! the latest full run against the targets, and a history line per full
//! run. The rendered parts sit between marker comments; the prose around
//! them is written by hand. `idpsync-bench report` rewrites them, and a
//! test fails when BENCHMARKS.md differs from what the results render.

use crate::results::{Benchmark, Figure, NOTHING_WRITTEN, Run, Table, Unit};
use anyhow::{Result, bail};

const CURRENT: (&str, &str) = ("<!-- current:begin -->", "<!-- current:end -->");
const HISTORY: (&str, &str) = ("<!-- history:begin -->", "<!-- history:end -->");
const CALLS: (&str, &str) = ("<!-- calls:begin -->", "<!-- calls:end -->");
const CONSOLE: (&str, &str) = ("<!-- console:begin -->", "<!-- console:end -->");
const NOTIFY: (&str, &str) = ("<!-- notify:begin -->", "<!-- notify:end -->");
const SCALE: (&str, &str) = ("<!-- scale:begin -->", "<!-- scale:end -->");
const SCALE_ACL: (&str, &str) = ("<!-- scale-acl:begin -->", "<!-- scale-acl:end -->");

/// `document` with its rendered parts replaced by what `runs` give.
pub fn rewrite(document: &str, runs: &[Run]) -> Result<String> {
    let full_runs: Vec<&Run> = runs.iter().filter(|run| run.is_full()).collect();
    let Some(latest) = full_runs.last() else {
        bail!("no full run (`idpsync-bench all`) among the results");
    };
    let document = replace_between(document, CURRENT, &current(latest))?;
    let document = replace_between(&document, CALLS, &calls(runs))?;
    let document = replace_between(&document, CONSOLE, &console(runs))?;
    let document = replace_between(&document, NOTIFY, &notify(runs))?;
    let document = replace_between(&document, SCALE, &scale(runs, ScaleTenant::Plain))?;
    let document = replace_between(
        &document,
        SCALE_ACL,
        &scale(runs, ScaleTenant::WithAclRules),
    )?;
    replace_between(&document, HISTORY, &history(&full_runs))
}

/// The latest console render run of each database, against the target.
fn console(runs: &[Run]) -> String {
    latest_per_database(
        runs,
        Benchmark::Console,
        Target::Below(100.0, Unit::Millis),
        |figure| figure.measure.ends_with("p99"),
        "No run of `idpsync-bench console` yet.\n",
    )
}

/// Which tenant a scale block shows: the generated one alone, or with the
/// bench's ACL rules (`scale --acl-rules`), which place its users in ACL
/// groups too. Each block shows only its own runs, so a run of one kind
/// never replaces the other's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScaleTenant {
    Plain,
    WithAclRules,
}

impl ScaleTenant {
    fn of(table: &Table) -> ScaleTenant {
        if table.parameters.contains_key("acl_rules") {
            ScaleTenant::WithAclRules
        } else {
            ScaleTenant::Plain
        }
    }

    /// The block's text before any run of this tenant.
    fn none_yet(self) -> &'static str {
        match self {
            ScaleTenant::Plain => "No run of `idpsync-bench scale` yet.\n",
            ScaleTenant::WithAclRules => "No run of `idpsync-bench scale --acl-rules` yet.\n",
        }
    }

    /// What the tenant holds beyond users, groups and memberships, for a
    /// table's caption.
    fn caption_extra(self) -> &'static str {
        match self {
            ScaleTenant::Plain => "",
            ScaleTenant::WithAclRules => {
                "; two ACL groups fed by every group and by the Engineering groups"
            }
        }
    }

    /// The line under the block's tables.
    fn footnote(self) -> &'static str {
        match self {
            ScaleTenant::Plain => {
                "\nTargets: at 1,000,000 users, a full pull on SQLite < 90 s and on PostgreSQL < 120 s, and every peak RSS < 1024 MiB; at 100,000 users, PostgreSQL < 10 s. The re-run's peak is the process's since it started, so never below the full pull's.\n"
            }
            ScaleTenant::WithAclRules => {
                "\nThe targets above are set for the tenant without ACL rules. The re-run's peak is the process's since it started, so never below the full pull's.\n"
            }
        }
    }
}

/// For each database, its latest `idpsync-bench scale` run of `tenant`:
/// wall time and peak RSS of the full pull and of its unchanged re-run per
/// tenant size, and the time of a delta of 1% of the users, for each IdP,
/// with the growth per 100,000 users between the smallest and the largest
/// size.
fn scale(runs: &[Run], tenant: ScaleTenant) -> String {
    let is_scale = |run: &&Run| run.command.split_whitespace().any(|word| word == "scale");
    let tables: Vec<String> = ["sqlite", "postgres"]
        .into_iter()
        .filter_map(|database| {
            let run = runs.iter().rev().filter(is_scale).find(|run| {
                run.tables.iter().any(|t| {
                    t.parameters.get("database").map(String::as_str) == Some(database)
                        && ScaleTenant::of(t) == tenant
                })
            })?;
            Some(scale_table(run, database, tenant))
        })
        .collect();
    if tables.is_empty() {
        return tenant.none_yet().into();
    }
    let mut out = tables.join("\n");
    out.push_str(tenant.footnote());
    out
}

/// One scale run's rows for `database` and `tenant`.
fn scale_table(run: &Run, database: &str, tenant: ScaleTenant) -> String {
    let of_database = |t: &&Table| {
        t.benchmark == Benchmark::Pull
            && t.parameters.get("database").map(String::as_str) == Some(database)
            && ScaleTenant::of(t) == tenant
    };
    let number = |table: &Table, key: &str| -> Option<f64> {
        table.parameters.get(key).and_then(|v| v.parse().ok())
    };
    let figure = |table: &Table, prefix: &str| -> Option<f64> {
        table
            .figures
            .iter()
            .find(|f| f.measure.starts_with(prefix))
            .and_then(|f| f.value)
    };
    let mut sizes: Vec<f64> = run
        .tables
        .iter()
        .filter(of_database)
        .filter_map(|table| number(table, "users"))
        .collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    let counted = run.tables.iter().filter(of_database).any(|t| {
        t.figures
            .iter()
            .any(|f| f.measure == crate::pull::ROWS_WRITTEN)
    });
    let mut out = format!(
        "Full pull, its unchanged re-run (read in full again) and a delta of 1% of the users, wall time / peak RSS of idpsync{}, by tenant size (users; a tenth as many groups; ten memberships each{}) ({} on {}, built from {}).\n\n| IdP | database | run |",
        if counted {
            ", with the rows the full pull wrote and the API calls of the full pull and the delta (requests the fake IdP answered, token requests aside)"
        } else {
            ""
        },
        tenant.caption_extra(),
        run.started,
        run.host,
        run.revision.as_deref().unwrap_or("an unrecorded revision")
    );
    for size in &sizes {
        out.push_str(&format!(" {} users |", *size as u64));
    }
    out.push_str(" growth per 100k users |\n|---|---|---|");
    for _ in &sizes {
        out.push_str("---|");
    }
    out.push_str("---|\n");
    let mut idps: Vec<&String> = run
        .tables
        .iter()
        .filter(of_database)
        .filter_map(|t| t.parameters.get("idp"))
        .collect();
    idps.dedup();
    for idp in idps {
        // The IdP's pull table at each size, where the run has one.
        let tables: Vec<Option<&Table>> = sizes
            .iter()
            .map(|size| {
                run.tables.iter().filter(of_database).find(|t| {
                    t.parameters.get("idp") == Some(idp) && number(t, "users") == Some(*size)
                })
            })
            .collect();
        for row in SCALE_ROWS {
            let cells: Vec<Option<ScaleCell>> = tables
                .iter()
                .map(|table| table.and_then(|t| row.cell(|prefix| figure(t, prefix))))
                .collect();
            // Runs from before a row's figures were measured leave it out.
            if !row.always_shown() && cells.iter().all(Option::is_none) {
                continue;
            }
            out.push_str(&format!("| {idp} | {database} | {} |", row.name()));
            // (users, the cell) of each size the run has the row's figures for
            let mut points: Vec<(f64, ScaleCell)> = Vec::new();
            for (size, cell) in sizes.iter().zip(cells) {
                match cell {
                    Some(cell) => {
                        out.push_str(&format!(" {cell} |"));
                        points.push((*size, cell));
                    }
                    None => out.push_str(" - |"),
                }
            }
            match (points.first(), points.last()) {
                (Some((small, first)), Some((large, last))) if large > small => {
                    let per = 100_000.0 / (large - small);
                    out.push_str(&format!(" {} |\n", first.growth_to(*last, per)));
                }
                _ => out.push_str(" - |\n"),
            }
        }
    }
    out
}

/// The rows of a scale table, for each IdP: what each shows of a size's
/// pull table, found by the prefixes of its figures' measures.
const SCALE_ROWS: [ScaleRow; 6] = [
    ScaleRow::Timed {
        name: "full pull",
        wall: "full pull: wall time",
        peak: Some("full pull: peak RSS"),
    },
    ScaleRow::Timed {
        name: "unchanged re-run",
        wall: "unchanged re-run (full): wall time",
        peak: Some("unchanged re-run (full): peak RSS"),
    },
    // A delta's peak is not its own (the process's so far), so it has none.
    ScaleRow::Timed {
        name: "1% delta",
        wall: "delta after 1% of users changed",
        peak: None,
    },
    ScaleRow::Counted {
        name: "full pull: rows written",
        figure: crate::pull::ROWS_WRITTEN,
    },
    ScaleRow::Counted {
        name: "full pull: API calls",
        figure: crate::pull::CALLS_OF_FULL_PULL,
    },
    ScaleRow::Counted {
        name: "1% delta: API calls",
        figure: crate::pull::CALLS_OF_DELTA,
    },
];

/// A row of a scale table.
#[derive(Clone, Copy)]
enum ScaleRow {
    /// Wall time, and the peak RSS where the run has one of its own.
    Timed {
        name: &'static str,
        wall: &'static str,
        peak: Option<&'static str>,
    },
    /// A count (rows, calls).
    Counted {
        name: &'static str,
        figure: &'static str,
    },
}

impl ScaleRow {
    fn name(self) -> &'static str {
        match self {
            ScaleRow::Timed { name, .. } | ScaleRow::Counted { name, .. } => name,
        }
    }

    /// Timed rows are shown even where a run lacks their figures (a dash
    /// says so); counted ones only where some size has them.
    fn always_shown(self) -> bool {
        matches!(self, ScaleRow::Timed { .. })
    }

    /// This row's cell of a pull table whose figures `figure` finds by
    /// prefix, if the table has them all.
    fn cell(self, figure: impl Fn(&str) -> Option<f64>) -> Option<ScaleCell> {
        match self {
            ScaleRow::Timed { wall, peak, .. } => Some(ScaleCell::Timed {
                seconds: figure(wall)?,
                mib: match peak {
                    Some(peak) => Some(figure(peak)?),
                    None => None,
                },
            }),
            ScaleRow::Counted {
                figure: measure, ..
            } => Some(ScaleCell::Count(figure(measure)?)),
        }
    }
}

/// A cell of a scale table.
#[derive(Clone, Copy)]
enum ScaleCell {
    Timed { seconds: f64, mib: Option<f64> },
    Count(f64),
}

impl ScaleCell {
    /// The growth from `self` to `to`, `per` times the difference (the
    /// difference's share of 100,000 users).
    fn growth_to(self, to: ScaleCell, per: f64) -> String {
        match (self, to) {
            (
                ScaleCell::Timed {
                    seconds: a,
                    mib: Some(a_mib),
                },
                ScaleCell::Timed {
                    seconds: b,
                    mib: Some(b_mib),
                },
            ) => format!("{:.1} s, {:.0} MiB", (b - a) * per, (b_mib - a_mib) * per),
            (ScaleCell::Timed { seconds: a, .. }, ScaleCell::Timed { seconds: b, .. }) => {
                format!("{:.2} s", (b - a) * per)
            }
            (ScaleCell::Count(a), ScaleCell::Count(b)) => thousands((b - a) * per),
            _ => "-".into(),
        }
    }
}

impl std::fmt::Display for ScaleCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScaleCell::Timed {
                seconds,
                mib: Some(mib),
            } => write!(f, "{seconds:.1} s / {mib:.0} MiB"),
            ScaleCell::Timed { seconds, mib: None } => write!(f, "{seconds:.2} s"),
            ScaleCell::Count(count) => f.write_str(&thousands(*count)),
        }
    }
}

/// `n` rounded to a whole number, its thousands set apart by commas.
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if n.round() < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// The latest notification latency run of each database; the target is
/// for the runs with notifications.
fn notify(runs: &[Run]) -> String {
    latest_per_database(
        runs,
        Benchmark::Notify,
        Target::Below(2000.0, Unit::Millis),
        |figure| figure.measure.contains("with notifications") && figure.measure.ends_with("p99"),
        "No run of `idpsync-bench notify` yet.\n",
    )
}

/// The latest run of `benchmark` on each database as a table, each figure
/// that `targeted` picks set against `target`.
fn latest_per_database(
    runs: &[Run],
    benchmark: Benchmark,
    target: Target,
    targeted: fn(&Figure) -> bool,
    none_yet: &str,
) -> String {
    let mut out = String::new();
    for database in ["sqlite", "postgres"] {
        let Some((run, table)) = runs.iter().rev().find_map(|run| {
            run.table(benchmark, &[("database", database)])
                .map(|table| (run, table))
        }) else {
            continue;
        };
        out.push_str(&format!(
            "{} ({}, built from {}).\n\n| figure | value | target | |\n|---|---|---|---|\n",
            table.title,
            run.started,
            run.revision.as_deref().unwrap_or("an unrecorded revision"),
        ));
        for figure in &table.figures {
            let (goal, verdict) = if targeted(figure) {
                (
                    target.describe(),
                    match target.met(figure) {
                        Some(true) => "met",
                        Some(false) => "**missed**",
                        None => "",
                    },
                )
            } else {
                (String::new(), "")
            };
            out.push_str(&format!(
                "| {} | {} | {goal} | {verdict} |\n",
                figure.measure,
                figure.display_value()
            ));
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str(none_yet);
    }
    out
}

/// The latest `idpsync-bench calls` run: each driver's API calls per full
/// pull next to its API's minimum.
fn calls(runs: &[Run]) -> String {
    let Some((run, table)) = runs
        .iter()
        .rev()
        .find_map(|run| run.table(Benchmark::Calls, &[]).map(|table| (run, table)))
    else {
        return "No run of `idpsync-bench calls` yet.\n".into();
    };
    let mut out = format!(
        "{} ({}, built from {}).\n\n| driver | API calls | API minimum | calls / minimum | token requests, time |\n|---|---|---|---|---|\n",
        table.title,
        run.started,
        run.revision.as_deref().unwrap_or("an unrecorded revision"),
    );
    for figure in &table.figures {
        let Some(kind) = figure.measure.strip_suffix(": API calls") else {
            continue;
        };
        let minimum = starting(Some(table), &format!("{kind}: API minimum"));
        let (calls, minimum) = (figure.value.unwrap_or(0.0), minimum.and_then(|m| m.value));
        out.push_str(&format!(
            "| {kind} | {calls:.0} | {} | {} | {} |\n",
            minimum.map_or("-".into(), |m| format!("{m:.0}")),
            minimum
                .filter(|&m| m > 0.0)
                .map_or("-".into(), |m| format!("{:.2}x", calls / m)),
            figure.note.as_deref().unwrap_or("")
        ));
    }
    for figure in &table.figures {
        if let Some(what) = figure.measure.strip_prefix("rate share: ") {
            out.push_str(&format!(
                "\nRate share: {what}: {}.\n",
                figure.display_value()
            ));
        }
    }
    out
}

fn replace_between(document: &str, (begin, end): (&str, &str), body: &str) -> Result<String> {
    let (Some(start), Some(stop)) = (document.find(begin), document.find(end)) else {
        bail!("BENCHMARKS.md lacks the markers {begin} and {end}");
    };
    if stop < start {
        bail!("{end} comes before {begin}");
    }
    Ok(format!(
        "{}{begin}\n{body}{}",
        &document[..start],
        &document[stop..]
    ))
}

/// What a figure is held to.
#[derive(Debug, Clone, Copy)]
enum Target {
    Below(f64, Unit),
    /// Below, and the run wrote nothing (its note says so).
    BelowWritingNothing(f64, Unit),
    AtLeast(f64, Unit),
}

impl Target {
    fn met(self, figure: &Figure) -> Option<bool> {
        let value = figure.value?;
        Some(match self {
            Target::Below(limit, unit) => figure.unit == Some(unit) && value < limit,
            Target::BelowWritingNothing(limit, unit) => {
                figure.unit == Some(unit)
                    && value < limit
                    && figure
                        .note
                        .as_deref()
                        .is_some_and(|note| note.contains(NOTHING_WRITTEN))
            }
            Target::AtLeast(limit, unit) => figure.unit == Some(unit) && value >= limit,
        })
    }

    fn describe(self) -> String {
        match self {
            // 300 MB, the memory target, is 286 MiB.
            Target::Below(limit, Unit::Mebibytes) => format!("< {limit} MiB (300 MB)"),
            Target::Below(limit, unit) => format!("< {limit}{}", unit.suffix()),
            Target::BelowWritingNothing(limit, unit) => {
                format!("< {limit}{}, nothing written", unit.suffix())
            }
            Target::AtLeast(limit, unit) => format!(">= {limit}{}", unit.suffix()),
        }
    }
}

/// One line of the current-figures table.
struct Line<'a> {
    what: String,
    figure: Option<&'a Figure>,
    target: Option<Target>,
}

const PULL_100K: [(&str, &str); 3] = [
    ("users", "100000"),
    ("groups", "10000"),
    ("memberships_per_user", "10"),
];

fn pull<'a>(run: &'a Run, idp: &str, database: &str) -> Option<&'a Table> {
    let mut with = vec![("idp", idp), ("database", database)];
    with.extend(PULL_100K);
    run.table(Benchmark::Pull, &with)
}

fn starting<'a>(table: Option<&'a Table>, prefix: &str) -> Option<&'a Figure> {
    table?
        .figures
        .iter()
        .find(|figure| figure.measure.starts_with(prefix))
}

/// The SCIM table of `database`; on SQLite, the one with `durability`
/// (`full` or `relaxed`), or `normal` for the runs before durability was a
/// parameter, which committed with `synchronous=NORMAL`.
fn scim<'a>(run: &'a Run, database: &str, durability: &str) -> Option<&'a Table> {
    run.tables.iter().find(|table| {
        table.benchmark == Benchmark::Scim
            && table.parameters.get("database").map(String::as_str) == Some(database)
            && (database != "sqlite"
                || table
                    .parameters
                    .get("durability")
                    .map_or("normal", String::as_str)
                    == durability)
    })
}

fn current(run: &Run) -> String {
    let mut lines: Vec<Line> = Vec::new();
    let mut push = |what: String, figure, target| {
        lines.push(Line {
            what,
            figure,
            target,
        })
    };
    for (idp, label) in [("okta", "Okta"), ("entra", "Entra")] {
        let table = pull(run, idp, "sqlite");
        push(
            format!("full pull 100k / 10k / 1M, {label}, SQLite: wall time"),
            starting(table, "full pull: wall time"),
            Some(Target::Below(10.0, Unit::Seconds)),
        );
        push(
            format!("full pull 100k / 10k / 1M, {label}, SQLite: peak RSS"),
            starting(table, "full pull: peak RSS"),
            Some(Target::Below(286.0, Unit::Mebibytes)),
        );
    }
    for (database, db_label) in [("sqlite", "SQLite"), ("postgres", "PostgreSQL")] {
        for (idp, label) in [("okta", "Okta"), ("entra", "Entra")] {
            let table = pull(run, idp, database);
            push(
                format!("unchanged run as scheduled, {label}, {db_label}: wall time, writes"),
                starting(table, "unchanged re-run as scheduled"),
                Some(Target::BelowWritingNothing(3.0, Unit::Seconds)),
            );
        }
    }
    for (idp, label) in [("okta", "Okta"), ("entra", "Entra")] {
        push(
            format!("full pull 100k / 10k / 1M, {label}, PostgreSQL: wall time"),
            starting(pull(run, idp, "postgres"), "full pull: wall time"),
            None,
        );
    }
    for (durability, label, target) in [
        (
            "full",
            "durable commits (the default)",
            Some(Target::AtLeast(10.0, Unit::Ratio)),
        ),
        ("relaxed", "relaxed commits", None),
    ] {
        let table = scim(run, "sqlite", durability);
        for phase in ["POST /Users", "PATCH active=false"] {
            push(
                format!("SCIM {phase} vs the peer, SQLite, {label}"),
                starting(table, &format!("{phase}: idpsync / peer")),
                target,
            );
        }
    }
    push(
        "SCIM reads (filter userName eq) vs the peer, SQLite".into(),
        starting(
            scim(run, "sqlite", "full"),
            "GET filter userName eq: idpsync / peer",
        ),
        None,
    );
    for phase in ["POST /Users", "PATCH active=false"] {
        push(
            format!("SCIM {phase}, PostgreSQL"),
            starting(
                scim(run, "postgres", "full"),
                &format!("{phase}: requests/s"),
            ),
            None,
        );
    }
    for (database, label) in [("sqlite", "SQLite"), ("postgres", "PostgreSQL")] {
        push(
            format!("SCIM PATCH -> `device.revoked` at a long-polling consumer, p99, {label}"),
            starting(
                run.table(Benchmark::Revocation, &[("database", database)]),
                "SCIM PATCH active=false -> device.revoked at consumer, p99",
            ),
            Some(Target::Below(50.0, Unit::Millis)),
        );
    }

    let mut out = format!(
        "The latest full run: {} on {}, built from {}.\n\n| figure | value | target | |\n|---|---|---|---|\n",
        run.started,
        run.host,
        run.revision.as_deref().unwrap_or("an unrecorded revision")
    );
    for line in lines {
        let value = line
            .figure
            .map_or("(not measured)".to_string(), Figure::display_value);
        let (target, verdict) = match (line.target, line.figure) {
            (Some(target), Some(figure)) => (
                target.describe(),
                match target.met(figure) {
                    Some(true) => "met",
                    Some(false) => "**missed**",
                    None => "",
                },
            ),
            (Some(target), None) => (target.describe(), ""),
            (None, _) => (String::new(), ""),
        };
        out.push_str(&format!(
            "| {} | {} | {target} | {verdict} |\n",
            line.what,
            value.replace('|', "/")
        ));
    }
    out
}

fn history(runs: &[&Run]) -> String {
    let mut out = String::from(
        "| run (UTC) | built from | host | pull SQLite, Okta / Entra | peak RSS, Okta / Entra | pull PostgreSQL, Okta / Entra | SCIM vs peer, POST / PATCH | revocation p99, SQLite / PostgreSQL |\n|---|---|---|---|---|---|---|---|\n",
    );
    let short = |figure: Option<&Figure>| match figure {
        Some(Figure {
            value: Some(value),
            unit: Some(unit),
            ..
        }) => unit.format(*value),
        _ => "-".to_string(),
    };
    for run in runs.iter().rev() {
        let pair = |left: String, right: String| format!("{left} / {right}");
        let pulls = |database: &str, prefix: &str| {
            pair(
                short(starting(pull(run, "okta", database), prefix)),
                short(starting(pull(run, "entra", database), prefix)),
            )
        };
        let scim_table = scim(run, "sqlite", "full").or_else(|| scim(run, "sqlite", "normal"));
        let revocation = |database: &str| {
            short(starting(
                run.table(Benchmark::Revocation, &[("database", database)]),
                "SCIM PATCH active=false -> device.revoked at consumer, p99",
            ))
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            run.started.replace('T', " ").trim_end_matches('Z'),
            run.revision.as_deref().unwrap_or("-"),
            run.host,
            pulls("sqlite", "full pull: wall time"),
            pulls("sqlite", "full pull: peak RSS"),
            pulls("postgres", "full pull: wall time"),
            pair(
                short(starting(scim_table, "POST /Users: idpsync / peer")),
                short(starting(scim_table, "PATCH active=false: idpsync / peer")),
            ),
            pair(revocation("sqlite"), revocation("postgres")),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(tables: Vec<Table>) -> Run {
        Run {
            started: "2026-12-05T06:00Z".into(),
            host: "2 cores".into(),
            revision: Some("abc1234".into()),
            command: "calls".into(),
            tables,
        }
    }

    #[test]
    fn the_calls_section_sets_each_drivers_calls_against_its_minimum() {
        let mut table = Table::new(Benchmark::Calls, "API calls per full pull");
        table.figures = vec![
            Figure::number("okta: API calls", 300.0, Unit::Count).with_note("1 token requests"),
            Figure::number("okta: API minimum", 200.0, Unit::Count),
            Figure::number("auth0: API calls", 7.0, Unit::Count),
            Figure::number("auth0: API minimum", 7.0, Unit::Count),
        ];
        let older = run_with(vec![]);
        let rendered = calls(&[run_with(vec![table]), older]);
        assert!(
            rendered.contains("| okta | 300 | 200 | 1.50x | 1 token requests |"),
            "{rendered}"
        );
        assert!(rendered.contains("| auth0 | 7 | 7 | 1.00x |"), "{rendered}");
        assert_eq!(calls(&[]), "No run of `idpsync-bench calls` yet.\n");
    }

    /// A pull table of a scale run: (wall time, peak) of the full pull and
    /// of its re-run, and the 1% delta's time.
    fn scale_pull(users: u64, first: (f64, f64), again: (f64, f64), delta: f64) -> Table {
        let mut table = Table::new(Benchmark::Pull, "pull")
            .parameter("idp", "okta")
            .parameter("database", "sqlite")
            .parameter("users", users);
        table.figures = vec![
            Figure::number("full pull: wall time", first.0, Unit::Seconds),
            Figure::number("full pull: peak RSS of idpsync", first.1, Unit::Mebibytes),
            Figure::number("unchanged re-run (full): wall time", again.0, Unit::Seconds),
            Figure::number(
                "unchanged re-run (full): peak RSS of idpsync so far",
                again.1,
                Unit::Mebibytes,
            ),
            Figure::number(
                "delta after 1% of users changed (delta mode)",
                delta,
                Unit::Seconds,
            ),
        ];
        table
    }

    /// The scale section (no ACL rules) of one `scale` run of `tables`.
    fn plain_scale_of(tables: Vec<Table>) -> String {
        let mut run = run_with(tables);
        run.command = "scale --databases sqlite".into();
        scale(&[run], ScaleTenant::Plain)
    }

    #[test]
    fn the_scale_table_has_a_row_for_the_full_pull_its_re_run_and_a_delta() {
        let rendered = plain_scale_of(vec![
            scale_pull(100_000, (6.0, 180.0), (3.0, 300.0), 0.1),
            scale_pull(1_000_000, (87.0, 900.0), (30.0, 960.0), 1.0),
        ]);
        assert!(
            rendered.contains(
                "| okta | sqlite | full pull | 6.0 s / 180 MiB | 87.0 s / 900 MiB | 9.0 s, 80 MiB |"
            ),
            "{rendered}"
        );
        assert!(
            rendered.contains("| okta | sqlite | unchanged re-run | 3.0 s / 300 MiB | 30.0 s / 960 MiB | 3.0 s, 73 MiB |"),
            "{rendered}"
        );
        assert!(
            rendered.contains("| okta | sqlite | 1% delta | 0.10 s | 1.00 s | 0.10 s |"),
            "{rendered}"
        );
    }

    #[test]
    fn the_scale_table_counts_rows_written_and_api_calls_where_the_run_has_them() {
        let with_counts = |users: u64, rows: f64, calls: f64, delta_calls: f64| {
            let mut table = scale_pull(users, (6.0, 180.0), (3.0, 300.0), 0.1);
            table.figures.extend([
                Figure::number(crate::pull::ROWS_WRITTEN, rows, Unit::Count),
                Figure::number(crate::pull::CALLS_OF_FULL_PULL, calls, Unit::Count),
                Figure::number(crate::pull::CALLS_OF_DELTA, delta_calls, Unit::Count),
            ]);
            table
        };
        let rendered = plain_scale_of(vec![
            with_counts(100_000, 1_234_567.0, 1_100.0, 12.0),
            with_counts(1_000_000, 12_345_670.0, 11_000.0, 102.0),
        ]);
        assert!(
            rendered.contains(
                "| okta | sqlite | full pull: rows written | 1,234,567 | 12,345,670 | 1,234,567 |"
            ),
            "{rendered}"
        );
        assert!(
            rendered.contains("| okta | sqlite | full pull: API calls | 1,100 | 11,000 | 1,100 |"),
            "{rendered}"
        );
        assert!(
            rendered.contains("| okta | sqlite | 1% delta: API calls | 12 | 102 | 10 |"),
            "{rendered}"
        );
        // A run from before the counts has no rows of them.
        let rendered = plain_scale_of(vec![scale_pull(100_000, (6.0, 180.0), (3.0, 300.0), 0.1)]);
        assert!(!rendered.contains("API calls"), "{rendered}");
        assert!(!rendered.contains("rows written"), "{rendered}");
    }

    #[test]
    fn counts_are_whole_with_their_thousands_set_apart() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(10_005_000.0), "10,005,000");
        assert_eq!(thousands(-12_345.0), "-12,345");
    }

    #[test]
    fn scale_runs_with_acl_rules_have_a_table_of_their_own() {
        let mut plain = run_with(vec![scale_pull(100_000, (6.0, 180.0), (3.0, 300.0), 0.1)]);
        plain.command = "scale --databases sqlite".into();
        let mut with_rules = run_with(vec![
            scale_pull(100_000, (9.0, 200.0), (4.0, 310.0), 0.2)
                .parameter("acl_rules", "everyone, engineering"),
        ]);
        with_rules.command = "scale --databases sqlite --acl-rules".into();
        // The later run has ACL rules: it does not replace the plain table.
        let runs = [plain, with_rules];
        let rendered = scale(&runs, ScaleTenant::Plain);
        assert!(
            rendered.contains("| full pull | 6.0 s / 180 MiB |"),
            "{rendered}"
        );
        assert!(!rendered.contains("9.0 s"), "{rendered}");
        let rendered = scale(&runs, ScaleTenant::WithAclRules);
        assert!(
            rendered.contains("| full pull | 9.0 s / 200 MiB |"),
            "{rendered}"
        );
        assert!(rendered.contains("ACL groups"), "{rendered}");
        assert!(!rendered.contains("6.0 s"), "{rendered}");
        assert_eq!(
            scale(&runs[..1], ScaleTenant::WithAclRules),
            "No run of `idpsync-bench scale --acl-rules` yet.\n"
        );
    }
}
