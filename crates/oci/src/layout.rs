//! OCI image layouts (image-layout spec v1.0): `oci-layout`, `index.json` and
//! `blobs/sha256/<hex>`, as a directory or as a tar of one; and `docker save` archives, read
//! as if they were layouts so the same push path serves both.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::{
    ANNOTATION_REF_NAME, Blob, Digest, Error, Image, MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, tar,
};

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// An image layout held in memory: `index.json` (its bytes, as read) and every blob.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    index: Vec<u8>,
    blobs: BTreeMap<Digest, Vec<u8>>,
}

/// One image manifest a layout's index names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRef {
    pub digest: Digest,
    pub media_type: String,
    /// Its `org.opencontainers.image.ref.name`, if any.
    pub tag: Option<String>,
}

/// What pushing one image takes: its blobs (layers, then config) and then its manifest.
#[derive(Debug)]
pub struct PushSet<'a> {
    pub blobs: Vec<(Digest, &'a [u8])>,
    pub manifest: &'a [u8],
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("{what} is not JSON: {e}")))
}

impl Layout {
    /// The layout of one built image.
    pub fn from_image(image: &Image) -> Self {
        let mut layout = Layout {
            index: image.index_json(),
            blobs: BTreeMap::new(),
        };
        for blob in image.blobs() {
            layout.insert(blob);
        }
        layout
    }

    fn insert(&mut self, blob: &Blob) {
        self.blobs.insert(blob.digest.clone(), blob.bytes.clone());
    }

    /// The files of the layout: relative paths, in a fixed order.
    pub fn files(&self) -> Vec<(String, &[u8])> {
        let mut files = vec![
            ("oci-layout".to_owned(), OCI_LAYOUT),
            ("index.json".to_owned(), self.index.as_slice()),
        ];
        for (digest, bytes) in &self.blobs {
            files.push((format!("blobs/sha256/{}", digest.hex()), bytes.as_slice()));
        }
        files
    }

    /// Writes the layout as a directory (created if missing; files of an earlier layout with
    /// other blobs are left, as in any layout that holds several images).
    pub fn write_dir(&self, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(io(format!(
            "creating {}",
            dir.join("blobs/sha256").display()
        )))?;
        for (path, bytes) in self.files() {
            let path = dir.join(path);
            std::fs::write(&path, bytes).map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(())
    }

    /// The layout as one tar archive (an `oci-archive`), byte for byte reproducible.
    pub fn to_tar(&self) -> Result<Vec<u8>, Error> {
        let mut writer = tar::Writer::new(0);
        for dir in ["blobs", "blobs/sha256"] {
            writer.append(&tar::Entry::Dir {
                path: dir.into(),
                mode: 0o755,
                uid: 0,
                gid: 0,
            })?;
        }
        for (path, bytes) in self.files() {
            writer.append(&tar::Entry::File {
                path,
                mode: 0o644,
                uid: 0,
                gid: 0,
                data: bytes.to_vec(),
            })?;
        }
        Ok(writer.finish())
    }

    /// Reads a layout directory, a tar of one, or a `docker save` archive.
    pub fn read(path: &Path) -> Result<Layout, Error> {
        let meta = std::fs::metadata(path).map_err(io(format!("reading {}", path.display())))?;
        if meta.is_dir() {
            Self::read_dir(path)
        } else {
            let bytes = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
            Self::from_tar(&bytes).map_err(|e| match e {
                Error::Invalid(m) => Error::Invalid(format!("{}: {m}", path.display())),
                other => other,
            })
        }
    }

    fn read_dir(dir: &Path) -> Result<Layout, Error> {
        let marker = dir.join("oci-layout");
        if !marker.is_file() {
            return Err(Error::Invalid(format!(
                "{} is not an OCI image layout (no oci-layout file); build one with `cargo \
                 xtask images` or give a layout tar or `docker save` archive",
                dir.display()
            )));
        }
        let index_path = dir.join("index.json");
        let index =
            std::fs::read(&index_path).map_err(io(format!("reading {}", index_path.display())))?;
        let mut layout = Layout {
            index,
            blobs: BTreeMap::new(),
        };
        let blob_dir = dir.join("blobs/sha256");
        let listing =
            std::fs::read_dir(&blob_dir).map_err(io(format!("listing {}", blob_dir.display())))?;
        for entry in listing {
            let entry = entry.map_err(io(format!("listing {}", blob_dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else {
                continue;
            };
            let bytes = std::fs::read(entry.path())
                .map_err(io(format!("reading {}", entry.path().display())))?;
            layout.blobs.insert(digest, bytes);
        }
        layout.check_index()?;
        Ok(layout)
    }

    /// Reads a tar holding an OCI layout, or else a `docker save` archive (`manifest.json`).
    pub fn from_tar(archive: &[u8]) -> Result<Layout, Error> {
        let entries = tar::read(archive)?;
        let files: BTreeMap<&str, &[u8]> = entries
            .iter()
            .filter_map(|e| Some((e.path.as_str(), e.data?)))
            .collect();
        if let (Some(_), Some(index)) = (files.get("oci-layout"), files.get("index.json")) {
            let mut layout = Layout {
                index: index.to_vec(),
                blobs: BTreeMap::new(),
            };
            for (path, bytes) in &files {
                if let Some(hex) = path.strip_prefix("blobs/sha256/")
                    && let Ok(digest) = Digest::parse(&format!("sha256:{hex}"))
                {
                    layout.blobs.insert(digest, bytes.to_vec());
                }
            }
            layout.check_index()?;
            return Ok(layout);
        }
        if let Some(manifest) = files.get("manifest.json") {
            return Self::from_docker_archive(manifest, &files);
        }
        Err(Error::Invalid(
            "the archive holds neither an OCI image layout (oci-layout, index.json) nor a \
             `docker save` image (manifest.json)"
                .into(),
        ))
    }

    /// A `docker save` archive (`manifest.json` naming a config and uncompressed layer tars)
    /// turned into a Docker v2 manifest. Layers are gzip-compressed the way this crate
    /// compresses its own, so the result is the same on every run.
    fn from_docker_archive(
        manifest: &[u8],
        files: &BTreeMap<&str, &[u8]>,
    ) -> Result<Layout, Error> {
        let list = parse_json(manifest, "manifest.json")?;
        let images = list.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
            Error::Invalid("manifest.json of the docker archive lists no image".into())
        })?;
        let file = |name: &str| -> Result<&[u8], Error> {
            files.get(name).copied().ok_or_else(|| {
                Error::Invalid(format!(
                    "the docker archive names `{name}` but does not hold it"
                ))
            })
        };
        let mut layout = Layout::default();
        let mut descriptors = Vec::new();
        for image in images {
            let config_name = image["Config"]
                .as_str()
                .ok_or_else(|| Error::Invalid("manifest.json: an image without `Config`".into()))?;
            let config = Blob::new(DOCKER_CONFIG, file(config_name)?.to_vec());
            let mut layers = Vec::new();
            for layer in image["Layers"].as_array().into_iter().flatten() {
                let name = layer.as_str().unwrap_or_default();
                let bytes = file(name)?;
                let gz = if bytes.starts_with(&[0x1f, 0x8b]) {
                    bytes.to_vec()
                } else {
                    crate::gzip(bytes)?
                };
                let blob = Blob::new(DOCKER_LAYER_GZIP, gz);
                layers.push(blob.descriptor());
                layout.insert(&blob);
            }
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
                "config": config.descriptor(),
                "layers": layers,
            });
            let manifest = Blob::new(MEDIA_TYPE_DOCKER_MANIFEST, crate::canonical(&manifest));
            layout.insert(&config);
            layout.insert(&manifest);
            let tags = image["RepoTags"].as_array().into_iter().flatten();
            let tags: Vec<&str> = tags.filter_map(Value::as_str).collect();
            if tags.is_empty() {
                descriptors.push(manifest.descriptor());
            }
            for tag in tags {
                let mut d = manifest.descriptor();
                // `repo:tag` (the tag is after the last colon that follows the last slash).
                let tag = tag.rsplit_once(':').filter(|(_, t)| !t.contains('/'));
                if let Some((_, tag)) = tag {
                    d["annotations"] = json!({ ANNOTATION_REF_NAME: tag });
                }
                descriptors.push(d);
            }
        }
        layout.index = crate::canonical(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": descriptors,
        }));
        Ok(layout)
    }

    fn check_index(&self) -> Result<(), Error> {
        let index = parse_json(&self.index, "index.json")?;
        if index["schemaVersion"] != 2 {
            return Err(Error::Invalid(
                "index.json: schemaVersion is not 2 (not an OCI image index)".into(),
            ));
        }
        self.manifests().map(|_| ())
    }

    /// The manifests the index names, in index order.
    pub fn manifests(&self) -> Result<Vec<ManifestRef>, Error> {
        let index = parse_json(&self.index, "index.json")?;
        let Some(list) = index["manifests"].as_array() else {
            return Err(Error::Invalid("index.json has no `manifests` list".into()));
        };
        list.iter()
            .map(|d| {
                Ok(ManifestRef {
                    digest: Digest::parse(d["digest"].as_str().unwrap_or_default())
                        .map_err(|e| Error::Invalid(format!("index.json: {e}")))?,
                    media_type: d["mediaType"].as_str().unwrap_or_default().to_owned(),
                    tag: d["annotations"][ANNOTATION_REF_NAME]
                        .as_str()
                        .map(str::to_owned),
                })
            })
            .collect()
    }

    /// The manifest tagged `tag` in the index, or the only one when the index names one (or
    /// none is tagged `tag` and `tag` is `None`).
    pub fn select(&self, tag: Option<&str>) -> Result<ManifestRef, Error> {
        let all = self.manifests()?;
        if let Some(tag) = tag
            && let Some(found) = all.iter().find(|m| m.tag.as_deref() == Some(tag))
        {
            return Ok(found.clone());
        }
        match all.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(Error::Invalid("the layout's index names no image".into())),
            many => {
                let tags: Vec<&str> = many.iter().filter_map(|m| m.tag.as_deref()).collect();
                Err(Error::Invalid(format!(
                    "the layout holds {} images and none is tagged `{}` (its tags: {})",
                    many.len(),
                    tag.unwrap_or(""),
                    if tags.is_empty() {
                        "none".to_owned()
                    } else {
                        tags.join(", ")
                    }
                )))
            }
        }
    }

    /// A blob's bytes, checked against its digest.
    pub fn blob(&self, digest: &Digest) -> Result<&[u8], Error> {
        let bytes = self.blobs.get(digest).ok_or_else(|| {
            Error::Invalid(format!(
                "the layout lacks blob {digest} (blobs/sha256/{})",
                digest.hex()
            ))
        })?;
        if Digest::of(bytes) != *digest {
            return Err(Error::Invalid(format!(
                "blob {digest} is corrupt: its content hashes to {}",
                Digest::of(bytes)
            )));
        }
        Ok(bytes)
    }

    /// The blobs and manifest to push for `manifest`, all present and matching their digests.
    pub fn push_set(&self, manifest: &ManifestRef) -> Result<PushSet<'_>, Error> {
        if matches!(
            manifest.media_type.as_str(),
            MEDIA_TYPE_INDEX | MEDIA_TYPE_DOCKER_LIST
        ) {
            return Err(Error::Invalid(format!(
                "{} is a multi-platform index; pushing those is not supported, only single \
                 image manifests",
                manifest.digest
            )));
        }
        let bytes = self.blob(&manifest.digest)?;
        let parsed = parse_json(bytes, &format!("manifest {}", manifest.digest))?;
        let media_type = parsed["mediaType"]
            .as_str()
            .map(str::to_owned)
            .filter(|m| !m.is_empty())
            .or_else(|| Some(manifest.media_type.clone()).filter(|m| !m.is_empty()))
            .unwrap_or_else(|| MEDIA_TYPE_MANIFEST.to_owned());
        let mut blobs = Vec::new();
        let descriptors = parsed["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&parsed["config"]));
        for d in descriptors {
            let digest = Digest::parse(d["digest"].as_str().unwrap_or_default())
                .map_err(|e| Error::Invalid(format!("manifest {}: {e}", manifest.digest)))?;
            let content = self.blob(&digest)?;
            if d["size"].as_u64() != Some(content.len() as u64) {
                return Err(Error::Invalid(format!(
                    "manifest {} gives blob {digest} size {}, but it has {} bytes",
                    manifest.digest,
                    d["size"],
                    content.len()
                )));
            }
            blobs.push((digest, content));
        }
        Ok(PushSet {
            blobs,
            manifest: bytes,
            manifest_digest: manifest.digest.clone(),
            manifest_media_type: media_type,
        })
    }
}
