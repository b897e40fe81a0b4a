//! `cargo xtask generate`: writes the generated files under `deploy/` from the Rust types
//! (`deploy/crds/` from crates/api, `deploy/operator/` from crates/operator, `deploy/sentinel/`,
//! `deploy/registry/` and `deploy/platform/` from crates/deploy) and code (`deploy/grafana/`, the
//! dashboard, from [`dashboard`]), and the Helm chart `deploy/helm/mcp-runtime/` from the same
//! objects ([`helm`]).
//! `cargo xtask images` builds the components' OCI images without a container engine
//! ([`images`]).
//! Tests compare the committed files with the same generators, so CI fails on drift.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod dashboard;
mod helm;
mod images;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn generate() -> std::io::Result<()> {
    let dir = root().join("deploy/crds");
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in mcp_runtime_api::crd::all() {
        let path = dir.join(file);
        std::fs::write(&path, mcp_runtime_api::crd::to_yaml(&crd))?;
        eprintln!("wrote {}", path.display());
    }
    let dir = root().join("deploy/operator");
    std::fs::create_dir_all(&dir)?;
    for (file, text) in mcp_runtime_operator::manifests::files() {
        let path = dir.join(file);
        std::fs::write(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    let dir = root().join("deploy/sentinel");
    std::fs::create_dir_all(&dir)?;
    for (file, text) in mcp_runtime_deploy::sentinel::files() {
        let path = dir.join(file);
        std::fs::write(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    let dir = root().join("deploy/registry");
    std::fs::create_dir_all(&dir)?;
    for (file, text) in mcp_runtime_deploy::registry::files() {
        let path = dir.join(file);
        std::fs::write(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    let dir = root().join("deploy/platform");
    std::fs::create_dir_all(&dir)?;
    for (file, text) in mcp_runtime_deploy::platform::files() {
        let path = dir.join(file);
        std::fs::write(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    let dir = root().join("deploy/grafana");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(dashboard::FILE);
    std::fs::write(&path, dashboard::render())?;
    eprintln!("wrote {}", path.display());
    let dir = root().join(helm::DIR);
    // Rewritten whole, so a template the generator no longer writes does not linger.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    for (file, text) in helm::files() {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("chart files are in a directory"))?;
        std::fs::write(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("generate") => match generate() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some("images") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            if args.iter().any(|a| a == "--help" || a == "-h") {
                eprint!("{}", images::USAGE);
                return ExitCode::SUCCESS;
            }
            let result = images::Options::parse(&root(), &args)
                .map_err(|e| format!("{e}\n\n{}", images::USAGE))
                .and_then(|options| images::run(&root(), &options));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!(
                "usage: cargo xtask generate   # write deploy/ from the Rust types\n       \
                 cargo xtask images     # OCI images of the components (--help)"
            );
            ExitCode::from(2)
        }
    }
}
