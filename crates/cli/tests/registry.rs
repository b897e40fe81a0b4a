//! `mcp-runtime registry push|status|info` against a real registry (Debian's docker-registry,
//! crates/registry-testenv), through the real binary: an image built by crates/oci is pushed
//! in chunks, read back by tag with matching digests, pushed again with every blob skipped;
//! with Basic auth it is refused without credentials (exit 4) and accepted with a docker
//! config file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mcp_runtime_oci::layout::Layout;
use mcp_runtime_oci::{Digest, Entry, Image, ImageSpec};
use mcp_runtime_registry_testenv::Registry;
use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-registry-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An image whose layer is larger than two 64 KiB chunks (incompressible bytes), as a layout
/// directory in `dir`.
fn image_layout(dir: &Path) -> (PathBuf, Image) {
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut spec = ImageSpec::nonroot(vec!["/usr/local/bin/demo".into()], 0);
    spec.entries.push(Entry::File {
        path: "usr/local/bin/demo".into(),
        mode: 0o755,
        uid: 0,
        gid: 0,
        data: noise,
    });
    spec.tag = Some("0.1.0".into());
    let image = Image::build(&spec).unwrap();
    let layout = dir.join("layout");
    Layout::from_image(&image).write_dir(&layout).unwrap();
    (layout, image)
}

fn push(layout: &Path, image: &str, docker_config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-runtime"))
        .args([
            "registry",
            "push",
            "--insecure",
            "--chunk-bytes",
            "65536",
            "-o",
            "json",
        ])
        .args(["--image", image, "--from"])
        .arg(layout)
        .env("DOCKER_CONFIG", docker_config)
        .output()
        .unwrap()
}

fn registry_cmd(args: &[&str], docker_config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-runtime"))
        .arg("registry")
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn push_without_auth_reads_back_by_tag_and_a_second_push_skips_every_blob() {
    let registry = Registry::start();
    let dir = scratch("anon");
    let (layout, image) = image_layout(&dir);
    let reference = format!("{}/mcp-runtime/demo:0.1.0", registry.host());

    let first = json(&push(&layout, &reference, &dir));
    assert_eq!(first["digest"], image.manifest.digest.as_str());
    assert_eq!(
        strings(&first["pushed"]),
        [
            image.layer.digest.to_string(),
            image.config.digest.to_string()
        ]
    );
    assert!(strings(&first["skipped"]).is_empty());

    // The manifest by tag is byte for byte ours; its blobs are there with our digests.
    let manifest = registry.get("/v2/mcp-runtime/demo/manifests/0.1.0");
    assert_eq!(manifest.status, 200, "{}", registry.log());
    assert_eq!(Digest::of(&manifest.body), image.manifest.digest);
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(image.manifest.digest.as_str())
    );
    assert_eq!(
        manifest.header("content-type"),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    for blob in [&image.layer, &image.config] {
        let got = registry.get(&format!("/v2/mcp-runtime/demo/blobs/{}", blob.digest));
        assert_eq!(got.status, 200);
        assert_eq!(Digest::of(&got.body), blob.digest);
        assert_eq!(got.body, blob.bytes);
    }

    let second = json(&push(&layout, &reference, &dir));
    assert!(strings(&second["pushed"]).is_empty(), "{second}");
    assert_eq!(strings(&second["skipped"]).len(), 2);
    assert_eq!(second["digest"], first["digest"]);

    // `info` lists the repository with its tag; `status` says no authentication is needed.
    let host = registry.host();
    let info = json(&registry_cmd(
        &["info", "--registry", &host, "--insecure", "-o", "json"],
        &dir,
    ));
    assert_eq!(info["authentication"], "none");
    assert_eq!(info["authenticated"], true);
    assert_eq!(info["api_version"], "registry/2.0");
    assert_eq!(info["repositories"][0]["name"], "mcp-runtime/demo");
    assert_eq!(info["repositories"][0]["tags"][0], "0.1.0");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn basic_auth_is_refused_without_credentials_and_used_from_the_docker_config() {
    let registry = Registry::start_with_basic_auth("pusher", "s3cret-pass");
    let dir = scratch("auth");
    let (layout, image) = image_layout(&dir);
    let host = registry.host();
    let reference = format!("{host}/team/demo:0.1.0");

    // No docker config: exit 4 and a message that says where credentials go.
    let refused = push(&layout, &reference, &dir);
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("requires authentication"), "{stderr}");
    assert!(stderr.contains("config.json"), "{stderr}");
    let status = registry_cmd(&["status", "--registry", &host, "--insecure"], &dir);
    assert_eq!(status.status.code(), Some(4), "{status:?}");
    assert!(String::from_utf8_lossy(&status.stdout).contains("basic"));

    // A wrong password is refused too, and the password is never printed.
    let write_config = |password: &str| {
        let auth = base64_encode(&format!("pusher:{password}"));
        std::fs::write(
            dir.join("config.json"),
            format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
    };
    write_config("wrong-pass");
    let wrong = push(&layout, &reference, &dir);
    assert_eq!(wrong.status.code(), Some(4), "{wrong:?}");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("refused the credentials of `pusher`"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-pass"));

    write_config("s3cret-pass");
    let pushed = json(&push(&layout, &reference, &dir));
    assert_eq!(pushed["digest"], image.manifest.digest.as_str());
    assert_eq!(strings(&pushed["pushed"]).len(), 2);
    let manifest = registry.get("/v2/team/demo/manifests/0.1.0");
    assert_eq!(Digest::of(&manifest.body), image.manifest.digest);
    let status = json(&registry_cmd(
        &["status", "--registry", &host, "--insecure", "-o", "json"],
        &dir,
    ));
    assert_eq!(
        (
            status["authentication"].as_str(),
            status["authenticated"].as_bool()
        ),
        (Some("basic"), Some(true))
    );
    assert_eq!(status["user"], "pusher");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_is_refused_before_any_request() {
    let dir = scratch("bad");
    let run = |args: &[&str]| registry_cmd(args, &dir);
    let no_tag = run(&["push", "--image", "localhost:5000/demo"]);
    assert_eq!(no_tag.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_tag.stderr).contains("no tag"));
    let no_host = run(&["push", "--image", "demo:1"]);
    assert!(String::from_utf8_lossy(&no_host.stderr).contains("names no registry"));
    let missing = run(&[
        "push",
        "--image",
        "localhost:5000/demo:1",
        "--from",
        "/nonexistent/layout",
    ]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("no image at /nonexistent/layout") && stderr.contains("cargo xtask images"),
        "{stderr}"
    );
    // Nothing listens on this port: status says unreachable, exit 1.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = run(&[
        "status",
        "--registry",
        &format!("127.0.0.1:{port}"),
        "--insecure",
    ]);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach the registry"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn base64_encode(text: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
