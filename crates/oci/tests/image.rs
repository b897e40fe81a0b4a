//! Images built from the same spec are identical, and what is written reads back as a valid
//! layout with the files, user and labels asked for.

use mcp_runtime_oci::layout::Layout;
use mcp_runtime_oci::{Digest, Entry, Image, ImageSpec, MEDIA_TYPE_MANIFEST, gunzip, tar};
use serde_json::Value;

fn spec(binary: &[u8]) -> ImageSpec {
    let mut spec = ImageSpec::nonroot(vec!["/usr/local/bin/demo".into()], 1_700_000_000);
    spec.entries.push(Entry::File {
        path: "usr/local/bin/demo".into(),
        mode: 0o755,
        uid: 0,
        gid: 0,
        data: binary.to_vec(),
    });
    spec.labels
        .insert("org.opencontainers.image.version".into(), "0.1.0".into());
    spec.labels
        .insert("org.opencontainers.image.revision".into(), "abc123".into());
    spec.tag = Some("0.1.0".into());
    spec
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn the_same_spec_gives_the_same_digests_and_a_changed_file_does_not() {
    let a = Image::build(&spec(b"binary v1")).unwrap();
    let b = Image::build(&spec(b"binary v1")).unwrap();
    assert_eq!(a.manifest.digest, b.manifest.digest);
    assert_eq!(a.manifest.bytes, b.manifest.bytes);
    assert_eq!(a.layer.bytes, b.layer.bytes);
    // The order entries are listed in does not matter either.
    let mut reversed = spec(b"binary v1");
    reversed.entries.reverse();
    assert_eq!(
        Image::build(&reversed).unwrap().manifest.digest,
        a.manifest.digest
    );

    let c = Image::build(&spec(b"binary v2")).unwrap();
    assert_ne!(a.manifest.digest, c.manifest.digest);
    let mut later = spec(b"binary v1");
    later.created += 1;
    assert_ne!(
        Image::build(&later).unwrap().manifest.digest,
        a.manifest.digest
    );
    // Layout tars are reproducible too.
    assert_eq!(
        Layout::from_image(&a).to_tar().unwrap(),
        Layout::from_image(&b).to_tar().unwrap()
    );
}

#[test]
fn config_runs_the_entrypoint_as_nonroot_with_labels_and_fixed_time() {
    let image = Image::build(&spec(b"x")).unwrap();
    let config = json(&image.config.bytes);
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/demo");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"],
        "abc123"
    );
    assert_eq!(config["rootfs"]["diff_ids"][0], image.diff_id.as_str());
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );

    let manifest = json(&image.manifest.bytes);
    assert_eq!(manifest["mediaType"], MEDIA_TYPE_MANIFEST);
    assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
    assert_eq!(manifest["layers"][0]["size"], image.layer.bytes.len());
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        "0.1.0"
    );
}

#[test]
fn the_layer_holds_the_files_with_owners_modes_and_parents() {
    let image = Image::build(&spec(b"ELF...")).unwrap();
    let layer = gunzip(&image.layer.bytes).unwrap();
    assert_eq!(Digest::of(&layer), image.diff_id);
    let entries = tar::read(&layer).unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "etc/",
            "etc/group",
            "etc/passwd",
            "home/",
            "home/nonroot/",
            "tmp/",
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "usr/local/bin/demo"
        ]
    );
    let by = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    assert_eq!(by("usr/local/bin/demo").data.unwrap(), b"ELF...");
    assert_eq!(by("usr/local/bin/demo").mode, 0o755);
    assert_eq!(by("tmp/").mode, 0o1777);
    assert_eq!(
        (by("home/nonroot/").uid, by("home/nonroot/").gid),
        (65532, 65532)
    );
    let passwd = String::from_utf8(by("etc/passwd").data.unwrap().to_vec()).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    assert!(entries.iter().all(|e| e.mtime == 1_700_000_000));
}

#[test]
fn bad_paths_are_refused() {
    for bad in ["../etc/passwd", "usr/./bin", "a//b"] {
        let mut s = spec(b"x");
        s.entries.push(Entry::Dir {
            path: bad.into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        });
        let err = Image::build(&s).unwrap_err().to_string();
        assert!(err.contains("not a plain relative path"), "{bad}: {err}");
    }
    let mut twice = spec(b"x");
    twice.entries.push(twice.entries[0].clone());
    assert!(
        Image::build(&twice)
            .unwrap_err()
            .to_string()
            .contains("listed twice")
    );
}

#[test]
fn layouts_read_back_from_a_directory_and_a_tar() {
    let image = Image::build(&spec(b"payload")).unwrap();
    let layout = Layout::from_image(&image);
    let dir = std::env::temp_dir().join(format!("oci-layout-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    layout.write_dir(&dir).unwrap();
    let tar_path = dir.with_extension("tar");
    std::fs::write(&tar_path, layout.to_tar().unwrap()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    for source in [&dir, &tar_path] {
        let back = Layout::read(source).unwrap();
        let selected = back.select(Some("0.1.0")).unwrap();
        assert_eq!(selected.digest, image.manifest.digest);
        assert_eq!(selected.tag.as_deref(), Some("0.1.0"));
        let push = back.push_set(&selected).unwrap();
        let digests: Vec<&Digest> = push.blobs.iter().map(|(d, _)| d).collect();
        assert_eq!(digests, [&image.layer.digest, &image.config.digest]);
        assert_eq!(push.manifest, image.manifest.bytes.as_slice());
        assert_eq!(push.manifest_media_type, MEDIA_TYPE_MANIFEST);
    }

    // A corrupted blob is caught before anything is pushed.
    std::fs::write(
        dir.join("blobs/sha256").join(image.layer.digest.hex()),
        b"tampered",
    )
    .unwrap();
    let back = Layout::read(&dir).unwrap();
    let err = back
        .push_set(&back.select(None).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("is corrupt"), "{err}");
    let err = Layout::read(&dir.join("blobs")).unwrap_err().to_string();
    assert!(err.contains("not an OCI image layout"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&tar_path).unwrap();
}

#[test]
fn docker_save_archives_read_as_a_docker_manifest() {
    // The shape `docker save` writes: manifest.json, a config, one uncompressed layer tar.
    let mut layer = tar::Writer::new(0);
    layer
        .append(&Entry::File {
            path: "hello".into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: b"hi".to_vec(),
        })
        .unwrap();
    let layer = layer.finish();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest =
        br#"[{"Config":"cfg.json","RepoTags":["example/hello:v1"],"Layers":["abc/layer.tar"]}]"#;
    let mut archive = tar::Writer::new(0);
    for (path, data) in [
        ("manifest.json", &manifest[..]),
        ("cfg.json", &config[..]),
        ("abc/layer.tar", &layer[..]),
    ] {
        archive
            .append(&Entry::File {
                path: path.into(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                data: data.to_vec(),
            })
            .unwrap();
    }
    let layout = Layout::from_tar(&archive.finish()).unwrap();
    let selected = layout.select(Some("v1")).unwrap();
    let push = layout.push_set(&selected).unwrap();
    assert_eq!(
        push.manifest_media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(push.blobs.len(), 2);
    assert_eq!(gunzip(push.blobs[0].1).unwrap(), layer);
    assert_eq!(push.blobs[1].1, config);
}
