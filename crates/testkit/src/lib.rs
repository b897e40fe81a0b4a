//! Test support shared by the workspace's crates.

use std::path::Path;

pub mod fixed_upstream;

/// Environment variable that makes golden assertions rewrite their files instead of comparing.
pub const UPDATE_ENV: &str = "UPDATE_GOLDEN";

/// Compares `actual` with the file at `path` (relative to the workspace root). With
/// `UPDATE_GOLDEN=1` the file is (re)written instead. A mismatch fails with the first differing
/// line and how to accept the change.
pub fn assert_golden(path: impl AsRef<Path>, actual: &str) {
    let path = workspace_root().join(path);
    if std::env::var_os(UPDATE_ENV).is_some_and(|v| v == "1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create golden directory");
        }
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {} is unreadable ({e}); create it with {UPDATE_ENV}=1 cargo test",
            path.display()
        )
    });
    if expected != actual {
        let (line, want, got) = expected
            .lines()
            .chain(std::iter::repeat("<end of file>"))
            .zip(actual.lines().chain(std::iter::repeat("<end of output>")))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i + 1, a, b))
            .unwrap_or((0, "", ""));
        panic!(
            "{} is out of date (first difference at line {line}):\n  file:   {want}\n  actual: {got}\n\
             If the change is intended, run `{UPDATE_ENV}=1 cargo test` (or `cargo xtask generate` for deploy/) and review the diff.",
            path.display()
        );
    }
}

/// The workspace root: two levels above this crate's manifest.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("testkit lives at crates/testkit")
}
