//! `mcp-runtime server build image`: an OCI image layout of a server from a directory holding
//! its binary, built with crates/oci (no Docker, no daemon), ready for `registry push`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use mcp_runtime_oci::layout::Layout;
use mcp_runtime_oci::{Entry, Image, ImageSpec};
use serde::Serialize;

use crate::commands::cluster::table;
use crate::commands::registry::Reference;
use crate::error::{CliError, Result};
use crate::output::{Format, write_data, write_stdout};

#[derive(Debug, Subcommand)]
pub enum BuildCommand {
    /// Build an OCI image of a server from a directory holding its binary (no Docker).
    ///
    /// The image holds the binary at /usr/local/bin/NAME (its entrypoint), /etc/passwd and
    /// /etc/group with the non-root user 65532 it runs as, and /tmp. Nothing else is added: the
    /// binary should be statically linked (e.g. Rust with the musl target, Go with
    /// CGO_ENABLED=0). Its architecture (amd64, arm64) is read from the ELF header.
    ///
    /// The image is reproducible: every timestamp is $SOURCE_DATE_EPOCH (default 0), so the
    /// same binary gives the same digest. It is written as an OCI image layout to --out
    /// (default target/images/NAME, where `registry push --image NAME:TAG` looks). Then:
    ///
    ///   mcp-runtime registry push --image HOST/NAME:TAG --insecure
    ///
    /// Exit codes: 0 built; 1 failure (no or several binaries, not an ELF executable, IO).
    #[command(verbatim_doc_comment)]
    Image(BuildImageArgs),
}

#[derive(Debug, Args)]
pub struct BuildImageArgs {
    /// Directory holding the server's binary.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The binary, relative to DIR or absolute; default: the only executable file in DIR.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Image name (repository, e.g. my-server or acme/my-server); default: the binary's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Image tag, written into the layout's index.
    #[arg(long, default_value = "latest")]
    pub tag: String,
    /// Directory to write the OCI layout to (replaced); default: target/images/<last part of
    /// NAME>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Output format of the summary.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Serialize)]
struct Built {
    image: String,
    digest: String,
    layout: String,
    architecture: String,
    binary: String,
    bytes: usize,
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The binary to package: `--binary`, or the only executable file directly in `dir`.
fn find_binary(dir: &Path, binary: Option<&Path>) -> Result<PathBuf> {
    if let Some(b) = binary {
        let path = if b.is_absolute() {
            b.to_owned()
        } else {
            dir.join(b)
        };
        if !path.is_file() {
            return Err(CliError::hint(
                format!("--binary {}: no such file", path.display()),
                "give the binary's path relative to --dir, or an absolute path",
            ));
        }
        return Ok(path);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| CliError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_executable(p))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CliError::hint(
            format!("{} holds no executable file", dir.display()),
            "build the server into it first, or name the binary with --binary PATH",
        )),
        _ => Err(CliError::hint(
            format!(
                "{} holds several executable files: {}",
                dir.display(),
                found
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "pick one with --binary NAME",
        )),
    }
}

/// The image architecture of an ELF executable, from `e_machine`.
fn elf_architecture(path: &Path, bytes: &[u8]) -> Result<&'static str> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err(CliError::hint(
            format!("{} is not an ELF executable", path.display()),
            "images run Linux binaries: build the server for Linux (a script needs an \
             interpreter the image does not have)",
        ));
    }
    // e_machine is at offset 18, in the byte order EI_DATA (offset 5) names.
    let machine = if bytes[5] == 2 {
        u16::from_be_bytes([bytes[18], bytes[19]])
    } else {
        u16::from_le_bytes([bytes[18], bytes[19]])
    };
    match machine {
        62 => Ok("amd64"),
        183 => Ok("arm64"),
        other => Err(CliError::Invalid(format!(
            "{}: ELF machine {other} is not supported (amd64 or arm64)",
            path.display()
        ))),
    }
}

pub fn build_image(args: BuildImageArgs) -> Result<()> {
    let binary = find_binary(&args.dir, args.binary.as_deref())?;
    let file_name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = args.name.clone().unwrap_or_else(|| file_name.clone());
    // The same rules as `registry push --image`, so what is built can be pushed.
    let reference = Reference::parse(&format!("{name}:{}", args.tag))?;
    if reference.host.is_some() {
        return Err(CliError::hint(
            format!("--name {name}: names a registry host"),
            "give the repository only (e.g. my-server); the registry goes to `registry push`",
        ));
    }
    let data = std::fs::read(&binary).map_err(|source| CliError::Read {
        path: binary.clone(),
        source,
    })?;
    let architecture = elf_architecture(&binary, &data)?;
    let created = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse::<i64>().map_err(|_| {
            CliError::Invalid(format!(
                "SOURCE_DATE_EPOCH `{v}` is not a number of seconds"
            ))
        })?,
        Err(_) => 0,
    };
    let path_in_image = format!("usr/local/bin/{file_name}");
    let mut spec = ImageSpec::nonroot(vec![format!("/{path_in_image}")], created);
    let bytes = data.len();
    spec.entries.push(Entry::File {
        path: path_in_image,
        mode: 0o755,
        uid: 0,
        gid: 0,
        data,
    });
    spec.architecture = architecture.to_owned();
    spec.tag = Some(reference.tag.clone());
    spec.labels.insert(
        "org.opencontainers.image.title".to_owned(),
        reference.repository.clone(),
    );
    spec.labels.insert(
        "org.opencontainers.image.version".to_owned(),
        reference.tag.clone(),
    );
    let image = Image::build(&spec).map_err(|e| CliError::Invalid(e.to_string()))?;
    let last = reference
        .repository
        .rsplit('/')
        .next()
        .unwrap_or(&reference.repository);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/images").join(last));
    // A fresh directory: blobs of an earlier build must not linger in the layout.
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|source| CliError::Write {
            path: out.clone(),
            source,
        })?;
    }
    Layout::from_image(&image)
        .write_dir(&out)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let built = Built {
        image: format!("{}:{}", reference.repository, reference.tag),
        digest: image.manifest.digest.to_string(),
        layout: out.display().to_string(),
        architecture: architecture.to_owned(),
        binary: binary.display().to_string(),
        bytes,
    };
    eprintln!(
        "next: mcp-runtime registry push --image HOST/{} --from {} [--insecure]",
        built.image, built.layout
    );
    let mut stdout = std::io::stdout().lock();
    match args.output {
        Format::Table => write_stdout(
            &mut stdout,
            &table(
                &["IMAGE", "DIGEST", "ARCH", "LAYOUT"],
                &[vec![
                    built.image.clone(),
                    built.digest.clone(),
                    built.architecture.clone(),
                    built.layout.clone(),
                ]],
            ),
        ),
        format => write_data(&mut stdout, format, &built),
    }
}
