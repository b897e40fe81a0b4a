//! `mcp-runtime registry`: push OCI images (a layout from `cargo xtask images`, a layout tar or
//! a `docker save` archive) to a registry over the distribution API, and check a registry.

use std::path::PathBuf;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, StatusCode, header};
use mcp_runtime_oci::Digest;
use mcp_runtime_oci::layout::Layout;
use serde::Serialize;
use serde_json::json;

use crate::commands::cluster::table;
use crate::distribution::{Challenge, ConfigLookup, Credentials, Registry, RegistryError};
use crate::error::{CliError, Result};
use crate::output::{Format, write_data, write_stdout};

/// Blobs are uploaded in chunks of this size (PATCH requests), so a large layer needs no
/// single huge request and a registry behind a proxy with a body limit still takes it.
const DEFAULT_CHUNK_BYTES: usize = 5 << 20;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Push an image (OCI layout or docker-save archive) to a registry.
    ///
    /// Reads an OCI image layout (a directory or tar, as `cargo xtask images` writes) or a
    /// `docker save` archive, then uploads what the registry lacks: each blob is checked
    /// first (HEAD) and skipped when present, otherwise uploaded in 5 MiB chunks; the
    /// manifest goes last, under TAG.
    ///
    /// Credentials come from the docker config file ($DOCKER_CONFIG/config.json, else
    /// ~/.docker/config.json: `auths.HOST.auth`, base64 of user:password), used for Basic
    /// authentication or to obtain a bearer token, whichever the registry asks for.
    /// Credential helpers (credsStore) are not called.
    ///
    /// Progress goes to stderr; the summary (digest, blobs pushed and skipped) to stdout.
    ///
    /// Exit codes: 0 pushed; 1 failure (bad input, IO, the registry refused); 4 the registry
    /// requires authentication and there are no credentials, or it refused them.
    #[command(verbatim_doc_comment)]
    Push(PushArgs),
    /// Check a registry: reachable, the distribution API, authentication.
    ///
    /// Asks GET /v2/ without credentials (to learn whether authentication is needed, and
    /// which), then with the docker config's credentials for the registry if it is.
    ///
    /// Exit codes: 0 reachable (and authenticated where needed); 1 unreachable or not a
    /// registry; 4 authentication required and there are no credentials, or they were refused.
    #[command(verbatim_doc_comment)]
    Status(StatusArgs),
    /// What `status` shows, plus the repositories and their tags.
    ///
    /// The list comes from the catalog (GET /v2/_catalog), which some registries do not offer
    /// or offer only to some users; that is reported, not an error.
    ///
    /// Exit codes: as `status`.
    #[command(verbatim_doc_comment)]
    Info(StatusArgs),
    /// Deploy a registry into the cluster (namespace `registry`) and wait until it serves.
    ///
    /// Server-side applies, through the kubeconfig, the objects of deploy/registry/: the
    /// namespace `registry`, a PersistentVolumeClaim for the blobs (the default StorageClass
    /// unless --storage-class), a Deployment of the distribution registry (registry:2, no TLS
    /// and no authentication: for development and single-tenant clusters) and a NodePort
    /// Service. Then waits until the registry is available, printing each change.
    ///
    /// Kubelets pull from it as localhost:NODE_PORT/NAME:TAG, so generate the manifests with
    /// `pipeline generate --registry localhost:30500`; push to it through a port-forward.
    /// --dry-run prints the manifests instead (no cluster needed).
    ///
    /// Exit codes: 0 available (or applied, with --no-wait or --dry-run); 1 not applied (no
    /// cluster, access denied, bad options); 5 applied, but not available within --timeout.
    #[command(verbatim_doc_comment)]
    Provision(crate::commands::provision::ProvisionArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image to write: [HOST[:PORT]/]REPOSITORY:TAG (e.g.
    /// localhost:5000/mcp-runtime/mcp-gateway:0.1.0). HOST may come from --registry instead.
    #[arg(long, value_name = "NAME:TAG")]
    pub image: String,
    /// The image to read: an OCI layout directory, a tar of one, or a `docker save` archive.
    /// Default: target/images/<last part of REPOSITORY> (what `cargo xtask images` writes).
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,
    /// The registry, HOST[:PORT], when --image does not start with it.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,
    /// Talk plain HTTP instead of HTTPS (a local or in-cluster registry without TLS).
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of a CA to trust besides the system's (a registry with a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Output format of the summary.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
    /// Upload chunk size in bytes (tests use small chunks).
    #[arg(long, hide = true, default_value_t = DEFAULT_CHUNK_BYTES)]
    pub chunk_bytes: usize,
}

/// Where the registry is (`status`, `info`).
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The registry, HOST[:PORT].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: String,
    /// Talk plain HTTP instead of HTTPS.
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of a CA to trust besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

/// `[HOST[:PORT]/]REPOSITORY:TAG`, split.
#[derive(Debug, PartialEq, Eq)]
pub struct Reference {
    pub host: Option<String>,
    pub repository: String,
    pub tag: String,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference> {
        let bad = |why: &str| {
            CliError::hint(
                format!("--image `{text}`: {why}"),
                "write [HOST[:PORT]/]REPOSITORY:TAG, e.g. localhost:5000/mcp-runtime/mcp-gateway:0.1.0",
            )
        };
        if text.contains('@') {
            return Err(bad("digest references cannot be pushed to; give a tag"));
        }
        let (first, rest) = text.split_once('/').unwrap_or(("", text));
        let is_host = first.contains(['.', ':']) || first == "localhost";
        let (host, name) = if is_host {
            (Some(first.to_owned()), rest)
        } else {
            (None, text)
        };
        let (repository, tag) = match name.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => return Err(bad("no tag (`:TAG` at the end)")),
        };
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !tag_ok {
            return Err(bad(&format!(
                "`{tag}` is not a tag (letters, digits, `_.-`, at most 128, not starting with \
                 `.` or `-`)"
            )));
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(&format!(
                "`{repository}` is not a repository name (lowercase letters, digits and `._-` \
                 between them, parts separated by `/`)"
            )));
        }
        Ok(Reference {
            host,
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

fn registry_error(e: RegistryError) -> CliError {
    match e {
        RegistryError::Unauthorized { message } => match message.split_once("\n  hint: ") {
            Some((m, h)) => CliError::not_authenticated(m, h),
            None => CliError::not_authenticated(
                message,
                "check the registry's credentials in the docker config",
            ),
        },
        other => CliError::Invalid(other.to_string()),
    }
}

fn credentials(host: &str) -> Result<Option<Credentials>> {
    match crate::distribution::credentials_for(host).map_err(CliError::Invalid)? {
        ConfigLookup::Found(c) => Ok(Some(c)),
        ConfigLookup::Missing {
            path,
            helper: Some(helper),
        } => {
            eprintln!(
                "note: {} has no `auths` entry for {host}; its credential helper `{helper}` is \
                 not called by mcp-runtime",
                path.display()
            );
            Ok(None)
        }
        _ => Ok(None),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the async runtime: {e}")))
}

fn check_host(host: &str) -> Result<String> {
    let host = host.trim().trim_end_matches('/');
    let ok = !host.is_empty()
        && !host.contains("://")
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if ok {
        Ok(host.to_owned())
    } else {
        Err(CliError::hint(
            format!("`{host}` is not a registry address"),
            "give HOST[:PORT] without a scheme (e.g. localhost:5000); --insecure selects plain HTTP",
        ))
    }
}

#[derive(Debug, Serialize)]
struct PushSummary {
    image: String,
    digest: String,
    media_type: String,
    pushed: Vec<String>,
    skipped: Vec<String>,
    bytes_pushed: u64,
}

pub fn push(args: PushArgs) -> Result<u8> {
    let reference = Reference::parse(&args.image)?;
    let host = match (&args.registry, &reference.host) {
        (Some(r), Some(h)) if r != h => {
            return Err(CliError::hint(
                format!("--image names registry {h} but --registry says {r}"),
                "drop one of them",
            ));
        }
        (Some(r), _) => check_host(r)?,
        (None, Some(h)) => check_host(h)?,
        (None, None) => {
            return Err(CliError::hint(
                format!("--image `{}` names no registry", args.image),
                "prefix it with HOST[:PORT]/ or pass --registry HOST[:PORT]",
            ));
        }
    };
    if args.chunk_bytes == 0 {
        return Err(CliError::Invalid("--chunk-bytes must be positive".into()));
    }
    let from = args.from.clone().unwrap_or_else(|| {
        let last = reference.repository.rsplit('/').next().unwrap_or_default();
        PathBuf::from("target/images").join(last)
    });
    if !from.exists() {
        return Err(CliError::hint(
            format!("no image at {}", from.display()),
            "build the images with `cargo xtask images`, or pass --from PATH (an OCI layout \
             directory or tar, or a `docker save` archive)",
        ));
    }
    let layout = Layout::read(&from).map_err(|e| CliError::Invalid(e.to_string()))?;
    let selected = layout
        .select(Some(&reference.tag))
        .map_err(|e| CliError::Invalid(format!("{}: {e}", from.display())))?;
    let set = layout
        .push_set(&selected)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", from.display())))?;
    let credentials = credentials(&host)?;
    let runtime = runtime()?;
    let summary = runtime.block_on(async {
        let mut registry = Registry::new(&host, args.insecure, args.ca_file.clone(), credentials)
            .map_err(CliError::Invalid)?;
        registry.set_scope(format!("repository:{}:pull,push", reference.repository));
        let mut summary = PushSummary {
            image: format!("{host}/{}:{}", reference.repository, reference.tag),
            digest: set.manifest_digest.to_string(),
            media_type: set.manifest_media_type.clone(),
            pushed: Vec::new(),
            skipped: Vec::new(),
            bytes_pushed: 0,
        };
        for (digest, bytes) in &set.blobs {
            let name = &reference.repository;
            if blob_exists(&mut registry, name, digest).await? {
                eprintln!("{}: exists, skipped", short(digest));
                summary.skipped.push(digest.to_string());
                continue;
            }
            upload_blob(&mut registry, name, digest, bytes, args.chunk_bytes).await?;
            summary.pushed.push(digest.to_string());
            summary.bytes_pushed += bytes.len() as u64;
        }
        let path = format!("/v2/{}/manifests/{}", reference.repository, reference.tag);
        let answer = registry
            .send(
                Method::PUT,
                &path,
                &[(header::CONTENT_TYPE, set.manifest_media_type.clone())],
                Bytes::copy_from_slice(set.manifest),
            )
            .await
            .map_err(registry_error)?;
        if answer.status != StatusCode::CREATED && !answer.status.is_success() {
            return Err(CliError::Invalid(format!(
                "PUT {path}: the registry refused the manifest ({}): {}",
                answer.status,
                answer.message()
            )));
        }
        if let Some(stored) = answer.header("docker-content-digest")
            && stored != summary.digest
        {
            return Err(CliError::Invalid(format!(
                "the registry stored the manifest as {stored}, not {} (it rewrote it?)",
                summary.digest
            )));
        }
        eprintln!(
            "manifest {}: pushed as {}",
            short(&set.manifest_digest),
            summary.image
        );
        Ok::<_, CliError>(summary)
    })?;
    let mut out = std::io::stdout().lock();
    if args.output == Format::Table {
        write_stdout(
            &mut out,
            &format!(
                "pushed {}@{} ({} blobs uploaded, {} already there)\n",
                summary.image,
                summary.digest,
                summary.pushed.len(),
                summary.skipped.len()
            ),
        )?;
    } else {
        write_data(&mut out, args.output, &summary)?;
    }
    Ok(0)
}

fn short(digest: &Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}

async fn blob_exists(registry: &mut Registry, name: &str, digest: &Digest) -> Result<bool> {
    let path = format!("/v2/{name}/blobs/{digest}");
    let answer = registry
        .send(Method::HEAD, &path, &[], Bytes::new())
        .await
        .map_err(registry_error)?;
    match answer.status {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        status => Err(CliError::Invalid(format!(
            "HEAD {path}: unexpected answer {status}"
        ))),
    }
}

/// POST an upload session, PATCH the chunks, PUT with the digest (distribution spec, "pushing
/// a blob in chunks").
async fn upload_blob(
    registry: &mut Registry,
    name: &str,
    digest: &Digest,
    bytes: &[u8],
    chunk: usize,
) -> Result<()> {
    let start_path = format!("/v2/{name}/blobs/uploads/");
    let answer = registry
        .send(Method::POST, &start_path, &[], Bytes::new())
        .await
        .map_err(registry_error)?;
    if answer.status != StatusCode::ACCEPTED {
        return Err(CliError::Invalid(format!(
            "POST {start_path}: the registry did not start an upload ({}): {}",
            answer.status,
            answer.message()
        )));
    }
    let mut location = location(&answer, &start_path)?;
    let total = bytes.len();
    let mut offset = 0;
    while offset < total {
        let end = (offset + chunk).min(total);
        let answer = registry
            .send(
                Method::PATCH,
                &location,
                &[
                    (header::CONTENT_TYPE, "application/octet-stream".into()),
                    (header::CONTENT_RANGE, format!("{offset}-{}", end - 1)),
                ],
                Bytes::copy_from_slice(&bytes[offset..end]),
            )
            .await
            .map_err(registry_error)?;
        if answer.status != StatusCode::ACCEPTED {
            return Err(CliError::Invalid(format!(
                "uploading {digest} bytes {offset}-{}: the registry answered {}: {}",
                end - 1,
                answer.status,
                answer.message()
            )));
        }
        location = location_of(&answer).unwrap_or(location);
        offset = end;
        eprintln!(
            "{}: {:.1}/{:.1} MiB",
            short(digest),
            offset as f64 / 1048576.0,
            total as f64 / 1048576.0
        );
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let finish = format!("{location}{sep}digest={digest}");
    let answer = registry
        .send(Method::PUT, &finish, &[], Bytes::new())
        .await
        .map_err(registry_error)?;
    if answer.status != StatusCode::CREATED {
        return Err(CliError::Invalid(format!(
            "finishing the upload of {digest}: the registry answered {}: {}",
            answer.status,
            answer.message()
        )));
    }
    if total == 0 {
        eprintln!("{}: uploaded (empty)", short(digest));
    }
    Ok(())
}

fn location_of(answer: &crate::distribution::Answer) -> Option<String> {
    answer.header("location").map(str::to_owned)
}

fn location(answer: &crate::distribution::Answer, path: &str) -> Result<String> {
    location_of(answer).ok_or_else(|| {
        CliError::Invalid(format!(
            "POST {path}: the registry started an upload without a Location header"
        ))
    })
}

#[derive(Debug, Serialize)]
struct Status {
    registry: String,
    url: String,
    reachable: bool,
    /// The `Docker-Distribution-API-Version` header (`registry/2.0`).
    api_version: Option<String>,
    /// `none`, or the scheme the registry challenges with (`basic`, `bearer`).
    authentication: String,
    /// Whose credentials were used (never the secret), if any.
    user: Option<String>,
    authenticated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    repositories: Option<Vec<RepositoryInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catalog_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct RepositoryInfo {
    name: String,
    tags: Vec<String>,
}

pub fn status(args: StatusArgs) -> Result<u8> {
    check(args, false)
}

pub fn info(args: StatusArgs) -> Result<u8> {
    check(args, true)
}

fn check(args: StatusArgs, with_catalog: bool) -> Result<u8> {
    let host = check_host(&args.registry)?;
    let credentials = credentials(&host)?;
    let user = credentials.as_ref().map(|c| c.user.clone());
    let runtime = runtime()?;
    let (status, failure) = runtime.block_on(async {
        let mut registry = Registry::new(&host, args.insecure, args.ca_file.clone(), credentials)
            .map_err(CliError::Invalid)?;
        registry.set_scope("registry:catalog:*".into());
        let mut status = Status {
            registry: host.clone(),
            url: format!("{}/v2/", registry.base()),
            reachable: false,
            api_version: None,
            authentication: "none".into(),
            user: user.clone(),
            authenticated: false,
            repositories: None,
            catalog_error: None,
        };
        let first = match registry
            .send_once(&Method::GET, "/v2/", &[], &Bytes::new())
            .await
        {
            Ok(a) => a,
            Err(e) => return Ok((status, Some(CliError::Invalid(e.to_string())))),
        };
        status.reachable = true;
        status.api_version = first
            .header("docker-distribution-api-version")
            .map(str::to_owned);
        if first.status == StatusCode::UNAUTHORIZED {
            status.authentication = first
                .header("www-authenticate")
                .and_then(Challenge::parse)
                .map(|c| c.scheme)
                .unwrap_or_else(|| "unknown".into());
        } else if !first.status.is_success() {
            let e = CliError::Invalid(format!(
                "GET {}: answered {} ({}): not an OCI distribution registry?",
                status.url,
                first.status,
                first.message()
            ));
            return Ok((status, Some(e)));
        }
        match registry.send(Method::GET, "/v2/", &[], Bytes::new()).await {
            Ok(a) if a.status.is_success() => status.authenticated = true,
            Ok(a) => {
                let e = CliError::Invalid(format!("GET {}: answered {}", status.url, a.status));
                return Ok((status, Some(e)));
            }
            Err(e) => return Ok((status, Some(registry_error(e)))),
        }
        if with_catalog {
            match catalog(&mut registry).await {
                Ok(repos) => status.repositories = Some(repos),
                Err(e) => status.catalog_error = Some(e),
            }
        }
        Ok::<_, CliError>((status, None))
    })?;
    let mut out = std::io::stdout().lock();
    if args.output == Format::Table {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let mut rows = vec![
            vec!["registry".to_owned(), status.registry.clone()],
            vec!["url".to_owned(), status.url.clone()],
            vec!["reachable".to_owned(), yes_no(status.reachable)],
            vec![
                "api version".to_owned(),
                status.api_version.clone().unwrap_or_else(|| "-".into()),
            ],
            vec!["authentication".to_owned(), status.authentication.clone()],
            vec![
                "credentials".to_owned(),
                status.user.clone().unwrap_or_else(|| "none".into()),
            ],
            vec!["authenticated".to_owned(), yes_no(status.authenticated)],
        ];
        if let Some(e) = &status.catalog_error {
            rows.push(vec!["catalog".to_owned(), e.clone()]);
        }
        let mut text = table(&["", ""], &rows);
        if let Some(repos) = &status.repositories {
            let rows: Vec<Vec<String>> = repos
                .iter()
                .map(|r| vec![r.name.clone(), r.tags.join(", ")])
                .collect();
            text.push('\n');
            text.push_str(&table(&["REPOSITORY", "TAGS"], &rows));
        }
        write_stdout(&mut out, &text)?;
    } else {
        write_data(&mut out, args.output, &json!(status))?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

async fn catalog(registry: &mut Registry) -> std::result::Result<Vec<RepositoryInfo>, String> {
    let answer = registry
        .send(Method::GET, "/v2/_catalog?n=1000", &[], Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    if !answer.status.is_success() {
        return Err(format!(
            "not listed ({}: {})",
            answer.status,
            answer.message()
        ));
    }
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let mut repos = Vec::new();
    for name in body["repositories"].as_array().into_iter().flatten() {
        let Some(name) = name.as_str() else { continue };
        let tags = registry
            .send(
                Method::GET,
                &format!("/v2/{name}/tags/list"),
                &[],
                Bytes::new(),
            )
            .await
            .ok()
            .filter(|a| a.status.is_success())
            .and_then(|a| serde_json::from_slice::<serde_json::Value>(&a.body).ok())
            .map(|v| {
                let list = v["tags"].as_array().cloned().unwrap_or_default();
                let mut tags: Vec<String> = list
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect();
                tags.sort();
                tags
            })
            .unwrap_or_default();
        repos.push(RepositoryInfo {
            name: name.to_owned(),
            tags,
        });
    }
    Ok(repos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r = Reference::parse("localhost:5000/mcp-runtime/mcp-gateway:0.1.0").unwrap();
        assert_eq!(r.host.as_deref(), Some("localhost:5000"));
        assert_eq!(
            (r.repository.as_str(), r.tag.as_str()),
            ("mcp-runtime/mcp-gateway", "0.1.0")
        );
        let r = Reference::parse("mcp-runtime/mcp-gateway:dev").unwrap();
        assert_eq!(r.host, None);
        let r = Reference::parse("reg.example.com/a:1").unwrap();
        assert_eq!(r.host.as_deref(), Some("reg.example.com"));
        for bad in [
            "a/b",
            "a/B:1",
            "a:",
            "a:-x",
            "x@sha256:00",
            "a//b:1",
            "_a:1",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
