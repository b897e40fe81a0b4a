//! `mcp-runtime server init|generate`.

use std::path::{Path, PathBuf};

use mcp_runtime_api::ToolSpec;
use mcp_runtime_api::metadata::{MetadataFile, ServerEntry, is_dns_label};
use mcp_runtime_policy::{SideEffect, Trust};

use crate::cli::{ServerGenerateArgs, ServerInitArgs};
use crate::error::{CliError, Result};
use crate::files;

const METADATA_FILE: &str = "servers.yaml";

fn parse_tool(spec: &str) -> Result<ToolSpec> {
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default().trim();
    let bad = |what: String| {
        CliError::hint(
            format!("--tool `{spec}`: {what}"),
            "write NAME[:TRUST[:SIDE_EFFECT]], e.g. --tool refund:high:destructive",
        )
    };
    if name.is_empty() {
        return Err(bad("the tool name is empty".into()));
    }
    let required_trust: Trust = match parts.next() {
        Some(t) => t.parse().map_err(|e| bad(format!("trust {e}")))?,
        None => Trust::Low,
    };
    let side_effect: SideEffect = match parts.next() {
        Some(s) => s.parse().map_err(|e| bad(format!("side effect {e}")))?,
        None => SideEffect::Read,
    };
    if parts.next().is_some() {
        return Err(bad("too many `:`-separated parts".into()));
    }
    Ok(ToolSpec {
        name: name.to_owned(),
        description: None,
        required_trust,
        side_effect,
        risk_level: None,
        labels: Default::default(),
    })
}

pub fn init(args: ServerInitArgs) -> Result<()> {
    if !is_dns_label(&args.name) {
        return Err(CliError::hint(
            format!("server name `{}` is not a DNS label", args.name),
            "use lowercase letters, digits and '-', at most 63 characters",
        ));
    }
    let tools = args
        .tools
        .iter()
        .map(|t| parse_tool(t))
        .collect::<Result<Vec<_>>>()?;
    let path = args.metadata_dir.join(METADATA_FILE);
    let mut file = if path.exists() {
        MetadataFile::parse(&path.display().to_string(), &files::read(&path)?)?
    } else {
        MetadataFile::new()
    };
    let mut entry = ServerEntry::governed(
        &args.name,
        args.image.as_deref().unwrap_or(&args.name),
        args.port,
        tools,
    );
    entry.namespace = args.namespace;
    match file.servers.iter_mut().find(|s| s.name == args.name) {
        Some(existing) if args.force => *existing = entry,
        Some(_) => {
            return Err(CliError::hint(
                format!("{} already declares server `{}`", path.display(), args.name),
                "edit the file, or pass --force to replace the entry",
            ));
        }
        None => file.servers.push(entry),
    }
    files::write(&path, &file.to_yaml(), true)?;
    eprintln!("wrote {} (server `{}`)", path.display(), args.name);
    Ok(())
}

pub fn generate(args: ServerGenerateArgs) -> Result<()> {
    write_manifests(&args.metadata_dir, &args.output, None).map(drop)
}

/// Writes `<output>/<name>.yaml`, an MCPServer manifest, for each server of
/// `<metadata_dir>/servers.yaml` (`server generate`, `pipeline generate`). With `registry`,
/// each image is taken from that registry instead of the one it names. Returns the files.
pub fn write_manifests(
    metadata_dir: &Path,
    output: &Path,
    registry: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let path = metadata_dir.join(METADATA_FILE);
    let text = files::read(&path).map_err(|e| {
        CliError::hint(
            e.to_string(),
            format!(
                "create it with `mcp-runtime server init NAME --metadata-dir {}`",
                metadata_dir.display()
            ),
        )
    })?;
    let file = MetadataFile::parse(&path.display().to_string(), &text)?;
    if file.servers.is_empty() {
        return Err(CliError::hint(
            format!("{} declares no servers", path.display()),
            "add one with `mcp-runtime server init NAME`",
        ));
    }
    let mut written = Vec::new();
    for entry in &file.servers {
        let out = output.join(format!("{}.yaml", entry.name));
        let mut server = entry.to_manifest();
        if let Some(host) = registry {
            server.spec.image = with_registry(&server.spec.image, host);
        }
        let manifest =
            serde_yaml::to_string(&server).map_err(|e| CliError::Invalid(e.to_string()))?;
        files::write(&out, &manifest, true)?;
        eprintln!("wrote {} (image {})", out.display(), server.spec.image);
        written.push(out);
    }
    Ok(written)
}

/// `image` with its registry host replaced by (or, when it names none, prefixed with) `host`:
/// `ghcr.io/acme/hello:1` and `acme/hello:1` become `HOST/acme/hello:1`.
pub fn with_registry(image: &str, host: &str) -> String {
    let host = host.trim_end_matches('/');
    let path = match image.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => image,
    };
    format!("{host}/{path}")
}

#[cfg(test)]
mod tests {
    use super::with_registry;

    #[test]
    fn images_move_to_the_given_registry() {
        assert_eq!(
            with_registry("my-server:v1.0.0", "127.0.0.1:5000"),
            "127.0.0.1:5000/my-server:v1.0.0"
        );
        assert_eq!(
            with_registry("acme/hello:1", "r.example/"),
            "r.example/acme/hello:1"
        );
        assert_eq!(
            with_registry("ghcr.io/acme/hello:1", "r.example"),
            "r.example/acme/hello:1"
        );
        assert_eq!(
            with_registry("localhost/hello@sha256:ab", "r:1"),
            "r:1/hello@sha256:ab"
        );
    }
}
