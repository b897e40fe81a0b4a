//! `mcp-runtime server init|generate`.

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
    let path = args.metadata_dir.join(METADATA_FILE);
    let text = files::read(&path).map_err(|e| {
        CliError::hint(
            e.to_string(),
            format!(
                "create it with `mcp-runtime server init NAME --metadata-dir {}`",
                args.metadata_dir.display()
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
    for entry in &file.servers {
        let out = args.output.join(format!("{}.yaml", entry.name));
        let manifest = serde_yaml::to_string(&entry.to_manifest())
            .map_err(|e| CliError::Invalid(e.to_string()))?;
        files::write(&out, &manifest, true)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
