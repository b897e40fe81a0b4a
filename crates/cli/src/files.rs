//! File input and output, with the path in every error.

use std::path::{Path, PathBuf};

use mcp_runtime_api::manifest::{self, Manifest};

use crate::error::{CliError, Result};

pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `text` to `path`, or to standard output for `-`. Refuses to overwrite unless `force`.
pub fn write(path: &Path, text: &str, force: bool) -> Result<()> {
    if path == Path::new("-") {
        return crate::output::write_stdout(&mut std::io::stdout().lock(), text);
    }
    if !force && path.exists() {
        return Err(CliError::hint(
            format!("{} already exists", path.display()),
            "pass --force to overwrite it",
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| CliError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| CliError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Every `*.yaml`/`*.yml` under the given files and directories, in a stable order.
fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir).map_err(|source| CliError::Read {
                    path: dir.clone(),
                    source,
                })?;
                let mut found: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                found.sort();
                for p in found {
                    if p.is_dir() {
                        stack.push(p);
                    } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                    {
                        out.push(p);
                    }
                }
            }
        } else {
            out.push(path.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Reads every manifest under `paths`; the first bad file stops with its location.
pub fn load_manifests(paths: &[PathBuf], default_namespace: &str) -> Result<Vec<Manifest>> {
    let mut all = Vec::new();
    for file in manifest_files(paths)? {
        let text = read(&file)?;
        all.extend(manifest::parse(
            &file.display().to_string(),
            &text,
            default_namespace,
        )?);
    }
    Ok(all)
}
