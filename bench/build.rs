//! Records the source revision the benchmark binary is built from
//! (`IDPSYNC_BENCH_REVISION`: the short commit, `+changes` when the tree
//! differs from it), so each recorded figure names the code it measured,
//! not whatever the checkout holds when the binary runs.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn main() {
    let revision = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let changed = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty());
            if changed {
                format!("{commit}+changes")
            } else {
                commit
            }
        }
        None => "unknown revision".to_string(),
    };
    println!("cargo:rustc-env=IDPSYNC_BENCH_REVISION={revision}");
    // Asked again when the commit, the index or a source file changes (an
    // edit after a clean build must turn into `+changes`); not on every
    // build, which a watch of the whole tree (with target/) would cause.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for path in ["HEAD", "index", "refs"] {
            println!("cargo:rerun-if-changed={git_dir}/{path}");
        }
    }
    for source in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "src",
        "core",
        "drivers",
        "plugins",
        "migrations",
        "bench/src",
    ] {
        println!("cargo:rerun-if-changed=../{source}");
    }
}
