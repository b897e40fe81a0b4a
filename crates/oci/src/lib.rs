//! Reproducible OCI images without a container engine.
//!
//! [`ImageSpec`] lists what goes into the image (files, the user, the entrypoint, labels, one
//! fixed creation time); [`Image::build`] turns it, in memory, into the three blobs of a
//! single-layer image: the gzip-compressed layer tar, the image config and the manifest
//! (OCI image spec v1.1 media types). Nothing in the bytes depends on the machine or the clock:
//! entries are sorted, owners are numeric, every mtime is [`ImageSpec::created`], the gzip
//! header carries no time or name, and JSON is written with sorted keys. The same spec
//! therefore gives the same manifest digest, on any machine.
//!
//! [`layout`] writes an image as an OCI image layout (a directory or a tar of one) and reads
//! layouts back, for pushing them to a registry.

use std::collections::BTreeMap;
use std::io::Write as _;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub mod layout;
pub mod tar;

pub use tar::Entry;

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker's manifest types, accepted when reading (a `docker save` archive, another tool's
/// layout) so such images can be pushed too.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// The annotation an image layout's index uses for a manifest's tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The non-root user (and group) images run as by default: distroless's `nonroot`.
pub const NONROOT_ID: u32 = 65532;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A `sha256:<hex>` content digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        let hash = Sha256::digest(bytes);
        let mut hex = String::with_capacity(64);
        for b in hash {
            hex.push_str(&format!("{b:02x}"));
        }
        Digest(format!("sha256:{hex}"))
    }

    /// Parses `sha256:<64 lowercase hex>`, the only algorithm this crate writes or checks.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let hex = text.strip_prefix("sha256:").unwrap_or("");
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Digest(text.to_owned()))
        } else {
            Err(Error::Invalid(format!(
                "`{text}` is not a sha256 digest (sha256:<64 lowercase hex digits>)"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits, the blob's file name under `blobs/sha256/`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blob with its media type; its digest is computed from the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: Digest::of(&bytes),
            bytes,
        }
    }

    /// The OCI descriptor of this blob.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest.as_str(),
            "size": self.bytes.len(),
        })
    }
}

/// What an image holds and how it runs.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// Files, directories and symlinks of the single layer. Parent directories that are not
    /// listed are added (root-owned, 0755); the order given does not matter.
    pub entries: Vec<Entry>,
    /// `uid:gid` the container runs as.
    pub user: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    /// Seconds since the epoch: the config's `created` and every file's mtime. Use the source
    /// commit's time (or 0), never the build time, so that rebuilds are identical.
    pub created: i64,
    /// The tag written into the layout's index (`org.opencontainers.image.ref.name`).
    pub tag: Option<String>,
    pub architecture: String,
    pub os: String,
}

impl ImageSpec {
    /// An image running `entrypoint` as [`NONROOT_ID`], with `/etc/passwd`, `/etc/group` (root
    /// and `nonroot`), a world-writable sticky `/tmp` and a home directory for the user.
    pub fn nonroot(entrypoint: Vec<String>, created: i64) -> Self {
        let id = NONROOT_ID;
        let file = |path: &str, text: String| Entry::File {
            path: path.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: text.into_bytes(),
        };
        Self {
            entries: vec![
                file(
                    "etc/passwd",
                    format!(
                        "root:x:0:0:root:/root:/sbin/nologin\n\
                         nonroot:x:{id}:{id}:nonroot:/home/nonroot:/sbin/nologin\n"
                    ),
                ),
                file("etc/group", format!("root:x:0:\nnonroot:x:{id}:\n")),
                Entry::Dir {
                    path: "tmp".into(),
                    mode: 0o1777,
                    uid: 0,
                    gid: 0,
                },
                Entry::Dir {
                    path: "home/nonroot".into(),
                    mode: 0o700,
                    uid: id,
                    gid: id,
                },
            ],
            user: format!("{id}:{id}"),
            entrypoint,
            cmd: Vec::new(),
            env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
            working_dir: "/".into(),
            labels: BTreeMap::new(),
            created,
            tag: None,
            architecture: "amd64".into(),
            os: "linux".into(),
        }
    }
}

/// A built single-layer image: its blobs, ready to be written as a layout or pushed.
#[derive(Clone, Debug)]
pub struct Image {
    pub layer: Blob,
    /// The digest of the uncompressed layer tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    pub config: Blob,
    pub manifest: Blob,
    pub tag: Option<String>,
}

impl Image {
    pub fn build(spec: &ImageSpec) -> Result<Image, Error> {
        let created = jiff::Timestamp::from_second(spec.created)
            .map_err(|e| Error::Invalid(format!("creation time {}: {e}", spec.created)))?
            .to_string();
        let mtime = u64::try_from(spec.created).map_err(|_| {
            Error::Invalid(format!(
                "creation time {} is before 1970 (tar mtimes cannot be negative)",
                spec.created
            ))
        })?;
        let layer_tar = layer_tar(&spec.entries, mtime)?;
        let diff_id = Digest::of(&layer_tar);
        let layer = Blob::new(MEDIA_TYPE_LAYER_GZIP, gzip(&layer_tar)?);

        let mut config = json!({
            "User": spec.user,
            "Env": spec.env,
            "WorkingDir": spec.working_dir,
            "Labels": spec.labels,
        });
        if !spec.entrypoint.is_empty() {
            config["Entrypoint"] = json!(spec.entrypoint);
        }
        if !spec.cmd.is_empty() {
            config["Cmd"] = json!(spec.cmd);
        }
        let config = json!({
            "created": created,
            "architecture": spec.architecture,
            "os": spec.os,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id.as_str()]},
            "history": [{"created": created, "created_by": "mcp-runtime-oci (no container engine)"}],
        });
        let config = Blob::new(MEDIA_TYPE_CONFIG, canonical(&config));

        let mut annotations: BTreeMap<String, String> = spec
            .labels
            .iter()
            .filter(|(k, _)| k.starts_with("org.opencontainers.image."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        annotations.insert("org.opencontainers.image.created".into(), created.clone());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
            "annotations": annotations,
        });
        let manifest = Blob::new(MEDIA_TYPE_MANIFEST, canonical(&manifest));
        Ok(Image {
            layer,
            diff_id,
            config,
            manifest,
            tag: spec.tag.clone(),
        })
    }

    /// The layout's `index.json`: this image's manifest, tagged when [`Image::tag`] is set.
    pub fn index_json(&self) -> Vec<u8> {
        let mut descriptor = self.manifest.descriptor();
        if let Some(tag) = &self.tag {
            descriptor["annotations"] = json!({ ANNOTATION_REF_NAME: tag });
        }
        canonical(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [descriptor],
        }))
    }

    /// The blobs, in the order a registry needs them (layers and config before the manifest).
    pub fn blobs(&self) -> [&Blob; 3] {
        [&self.layer, &self.config, &self.manifest]
    }
}

/// JSON with object keys in sorted order (serde_json's default map is a BTreeMap) and no
/// insignificant whitespace: stable bytes for a stable digest.
pub(crate) fn canonical(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value always serializes")
}

/// The layer tar: `entries` plus their missing parent directories, sorted by path (parents
/// sort before their children), every mtime `mtime`.
fn layer_tar(entries: &[Entry], mtime: u64) -> Result<Vec<u8>, Error> {
    let mut by_path: BTreeMap<String, Entry> = BTreeMap::new();
    let mut listed = std::collections::BTreeSet::new();
    for entry in entries {
        let path = entry.path().trim_matches('/').to_owned();
        if path.is_empty()
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::Invalid(format!(
                "layer path `{}` is not a plain relative path (no `.`, `..` or empty parts)",
                entry.path()
            )));
        }
        if !listed.insert(path.clone()) {
            return Err(Error::Invalid(format!(
                "layer path `{path}` is listed twice"
            )));
        }
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            by_path.entry(up.to_owned()).or_insert(Entry::Dir {
                path: up.to_owned(),
                mode: 0o755,
                uid: 0,
                gid: 0,
            });
            parent = up;
        }
        let mut entry = entry.clone();
        match &mut entry {
            Entry::Dir { path: p, .. }
            | Entry::File { path: p, .. }
            | Entry::Symlink { path: p, .. } => *p = path.clone(),
        }
        // An explicit entry replaces the default parent directory added for an earlier one.
        by_path.insert(path, entry);
    }
    // Sorting by path components keeps `a/b` right after `a` (a plain string sort would put
    // `a-b` between them; harmless for extraction, but components read better).
    let mut sorted: Vec<&Entry> = by_path.values().collect();
    sorted.sort_by(|a, b| a.path().split('/').cmp(b.path().split('/')));
    let mut writer = tar::Writer::new(mtime);
    for entry in sorted {
        writer.append(entry)?;
    }
    Ok(writer.finish())
}

/// gzip with a zeroed header time, no file name and a fixed OS byte.
pub(crate) fn gzip(data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::new(6));
    let io = |source| Error::Io {
        what: "compressing the layer".into(),
        source,
    };
    encoder.write_all(data).map_err(io)?;
    encoder.finish().map_err(io)
}

/// Decompresses a gzip blob (a layer), for checks and tests.
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(data), &mut out).map_err(
        |source| Error::Io {
            what: "decompressing a gzip blob".into(),
            source,
        },
    )?;
    Ok(out)
}
