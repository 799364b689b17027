//! House rules checked as a test: every Rust source file of ours (not
//! `vendor/`'s) opens with a `//!` module doc, no test is `#[ignore]`d or
//! `#[should_panic]`, and the README
//! opens with the two commands, the second being the one CI runs, the first
//! being one `cargo run` can resolve to the daemon.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // Build output, hidden folders, and the published crates that
        // `vendor/` keeps as their authors wrote them (vendor/README.md).
        let vendored = path == Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor");
        if name == "target" || vendored || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_has_a_module_doc_and_no_test_is_skipped() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(files.len() > 10, "found only {} files", files.len());
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let relative = file.strip_prefix(root).unwrap().display().to_string();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{relative}: does not start with a //! module doc"));
        }
        for banned in ["#[ignore", "#[should_panic"] {
            if relative != "tests/tidy.rs" && text.contains(banned) {
                problems.push(format!("{relative}: uses {banned}]"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_opens_with_the_demo_and_the_test_command_that_ci_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let first_block: Vec<&str> = readme
        .split("```")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(
        first_block[0].starts_with("cargo run --release -- demo"),
        "{first_block:?}"
    );
    assert!(
        first_block[1].starts_with("bash scripts/test"),
        "{first_block:?}"
    );
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|line| line.trim() == "bash scripts/test"),
        "CI runs the README's test command"
    );
}

#[test]
fn cargo_run_at_the_root_runs_the_daemon() {
    // The README's first command is `cargo run --release -- demo`: with more
    // than one binary among the default members, cargo needs to be told.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let default_members = metadata["workspace_default_members"].as_array().unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let binaries: Vec<&str> = packages
        .iter()
        .filter(|package| default_members.contains(&package["id"]))
        .flat_map(|package| package["targets"].as_array().unwrap())
        .filter(|target| {
            target["kind"]
                .as_array()
                .unwrap()
                .iter()
                .any(|kind| kind == "bin")
        })
        .map(|target| target["name"].as_str().unwrap())
        .collect();
    let root_package = packages
        .iter()
        .find(|package| package["name"] == "idpsync")
        .unwrap();
    let runs = match binaries.as_slice() {
        [only] => *only,
        _ => root_package["default_run"]
            .as_str()
            .unwrap_or("(ambiguous)"),
    };
    assert_eq!(
        runs, "idpsync",
        "binaries of the default members: {binaries:?}"
    );
}

/// The README's table of event kinds is the webhook contract as admins read
/// it: exactly the kinds the code can emit, each in its own row.
#[test]
fn the_readme_lists_exactly_the_event_kinds() {
    use idpsync_core::events::EventKind;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let listed: Vec<&str> = readme
        .lines()
        .skip_while(|line| !line.starts_with("| kind | what happened |"))
        .skip(2)
        .take_while(|line| line.starts_with("| `"))
        .filter_map(|line| line.split('`').nth(1))
        .collect();
    let kinds: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
    assert_eq!(listed, kinds);
}

/// The fake IdPs reach the binary only through the demo: no other source
/// file of the binary names a fake, so what `serve` runs cannot touch one,
/// and a build without the `demo` feature (CI checks one) has none.
#[test]
fn only_the_demo_reaches_the_fakes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|path| path.file_name().is_some_and(|name| name != "demo.rs"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            text.contains("::fake") || text.contains("Fake")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "{offenders:?}");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap();
    assert!(
        !dependencies.contains("fake"),
        "a [dependencies] entry enables a fake outside the demo feature"
    );
}
