//! The `mcp-runtime` binary end to end: goldens for every `--help` and for generated files, and
//! behaviour on good and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mcp_runtime_testkit::{assert_golden, workspace_root};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-runtime"));
    cmd.env("COLUMNS", "100").env_remove("RUST_LOG");
    cmd
}

fn run(args: &[&str], dir: &Path) -> Output {
    bin()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run mcp-runtime")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-runtime-cli-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every command path, found by walking `--help` output's command list.
fn command_paths() -> Vec<Vec<String>> {
    let mut out = vec![vec![]];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = text(&run(&args, Path::new(".")).stdout);
        if let Some(section) = help.split("Commands:\n").nth(1) {
            for line in section.lines().take_while(|l| l.starts_with("  ")) {
                let name = line.split_whitespace().next().unwrap();
                if name != "help" {
                    let mut child = path.clone();
                    child.push(name.to_owned());
                    out.push(child);
                }
            }
        }
        i += 1;
    }
    out
}

#[test]
fn help_of_every_command_matches_its_golden() {
    let paths = command_paths();
    assert!(paths.len() >= 11, "found only {paths:?}");
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = run(&args, Path::new("."));
        assert!(out.status.success());
        let name = if path.is_empty() {
            "mcp-runtime".to_owned()
        } else {
            format!("mcp-runtime-{}", path.join("-"))
        };
        assert_golden(
            format!("crates/cli/tests/golden/help/{name}.txt"),
            &text(&out.stdout),
        );
    }
}

#[test]
fn example_manifests_are_what_server_generate_writes() {
    let example = workspace_root().join("examples/hello");
    let out_dir = tempdir("generate");
    let out = run(
        &[
            "server",
            "generate",
            "--metadata-dir",
            example.join(".mcp").to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ],
        Path::new("."),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let generated = std::fs::read_to_string(out_dir.join("hello.yaml")).unwrap();
    assert_golden("examples/hello/manifests/hello.yaml", &generated);
}

#[test]
fn init_then_generate_round_trip() {
    let dir = tempdir("init");
    let out = run(
        &[
            "server",
            "init",
            "notes",
            "--tool",
            "read_note",
            "--tool",
            "wipe:high:destructive",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = run(&["server", "init", "notes"], &dir);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already declares server `notes`"));
    assert!(run(&["server", "init", "second"], &dir).status.success());
    assert!(run(&["server", "generate"], &dir).status.success());
    let notes = std::fs::read_to_string(dir.join("manifests/notes.yaml")).unwrap();
    assert!(
        notes.contains("name: wipe") && notes.contains("sideEffect: destructive"),
        "{notes}"
    );
    assert!(dir.join("manifests/second.yaml").exists());
}

#[test]
fn malformed_metadata_is_reported_with_file_line_and_field() {
    let dir = tempdir("malformed");
    std::fs::create_dir_all(dir.join(".mcp")).unwrap();
    std::fs::write(
        dir.join(".mcp/servers.yaml"),
        "version: v1\nservers:\n  - name: x\n    spec:\n      image: x\n      tools:\n        - name: t\n          sideEffect: maybe\n",
    )
    .unwrap();
    let out = run(&["server", "generate"], &dir);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(".mcp/servers.yaml:8:23: servers[0].spec.tools[0].sideEffect: unknown variant `maybe`, expected one of `read`, `write`, `destructive`"),
        "{err}"
    );
    assert!(!dir.join("manifests").exists(), "nothing written on error");
}

#[test]
fn malformed_manifest_is_reported_with_file_line_and_field() {
    let dir = tempdir("bad-manifest");
    std::fs::write(
        dir.join("grant.yaml"),
        "apiVersion: mcpruntime.org/v1alpha1\nkind: MCPAccessGrant\nmetadata: {name: g}\nspec:\n  serverRef: {name: s}\n  subject: {humanID: a}\n  maxTrust: total\n",
    )
    .unwrap();
    let out = run(&["policy", "render", "-f", "grant.yaml"], &dir);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("grant.yaml:7:13: spec.maxTrust: unknown variant `total`, expected one of `low`, `medium`, `high`"), "{err}");
}

fn explain(args: &[&str]) -> Output {
    let example = workspace_root().join("examples/hello");
    let mut all = vec![
        "policy",
        "explain",
        "-f",
        "manifests",
        "-f",
        "access",
        "--at",
        "2026-11-24T12:00:00Z",
    ];
    all.extend_from_slice(args);
    bin().args(&all).current_dir(example).output().unwrap()
}

#[test]
fn explain_allowed_call_exits_zero_with_reasoning() {
    let out = explain(&[
        "--human",
        "alice",
        "--agent",
        "claude",
        "--session",
        "alice-claude",
        "--tool",
        "echo",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("Decision:  ALLOWED\n"), "{stdout}");
    assert!(
        stdout.contains("Matched:   grant demo/alice-hello · session demo/alice-claude"),
        "{stdout}"
    );
}

#[test]
fn explain_denials_exit_three_with_reason_and_hint() {
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &[
                "--human",
                "alice",
                "--agent",
                "claude",
                "--session",
                "alice-claude",
                "--tool",
                "upper",
            ],
            "DENIED: trust_too_low",
            "raise the session's consentedTrust to medium",
        ),
        (
            &[
                "--human",
                "alice",
                "--agent",
                "claude",
                "--session",
                "alice-claude",
                "--tool",
                "delete_note",
            ],
            "DENIED: tool_denied",
            "has a deny rule for `delete_note`",
        ),
        (
            &["--human", "alice", "--agent", "claude", "--tool", "echo"],
            "DENIED: missing_session",
            "access session init",
        ),
        (
            &[
                "--human",
                "mallory",
                "--session",
                "alice-claude",
                "--tool",
                "echo",
            ],
            "DENIED: session_not_found",
            "NAMESPACE/NAME",
        ),
    ];
    for (args, verdict, hint) in cases {
        let out = explain(args);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stdout}");
        assert!(
            stdout.contains(verdict) && stdout.contains(hint),
            "{args:?}:\n{stdout}"
        );
    }
}

#[test]
fn explain_json_carries_attribution_and_steps() {
    let out = explain(&[
        "--human",
        "alice",
        "--agent",
        "claude",
        "--session",
        "alice-claude",
        "--tool",
        "upper",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"]["reason"], "trust_too_low");
    assert_eq!(v["decision"]["required_trust"], "medium");
    assert_eq!(v["decision"]["effective_trust"], "low");
    assert_eq!(v["decision"]["grant"]["name"], "alice-hello");
    assert!(
        v["decision"]["policy_revision"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(v["steps"].as_array().unwrap().len(), 4);
    assert_eq!(v["steps"][3]["outcome"]["verdict"], "trust_too_low");
    assert_eq!(v["steps"][3]["grant"]["name"], "alice-hello");
}

#[test]
fn rendered_policy_is_stable_and_reusable_for_explain() {
    let example = workspace_root().join("examples/hello");
    let render = || {
        bin()
            .args(["policy", "render", "-f", "manifests", "-f", "access"])
            .current_dir(&example)
            .output()
            .unwrap()
    };
    let (a, b) = (render(), render());
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert_eq!(a.stdout, b.stdout, "deterministic bytes");
    let dir = tempdir("render");
    std::fs::write(dir.join("policy.json"), &a.stdout).unwrap();
    let out = run(
        &[
            "policy",
            "explain",
            "--policy",
            "policy.json",
            "--human",
            "alice",
            "--agent",
            "claude",
            "--session",
            "alice-claude",
            "--tool",
            "echo",
            "--at",
            "2026-11-24T12:00:00Z",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A tampered document is refused, not used.
    let tampered = text(&a.stdout).replace(
        "\"consented_trust\": \"low\"",
        "\"consented_trust\": \"high\"",
    );
    std::fs::write(dir.join("policy.json"), tampered).unwrap();
    let out = run(
        &[
            "policy",
            "explain",
            "--policy",
            "policy.json",
            "--human",
            "alice",
            "--tool",
            "echo",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("policy revision mismatch"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_two() {
    let out = run(&["policy", "explain", "--tool", "x"], Path::new("."));
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &[
            "access",
            "grant",
            "init",
            "g",
            "--server",
            "s",
            "--trust",
            "extreme",
            "--human-id",
            "a",
        ],
        Path::new("."),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`extreme` is not one of: low, medium, high"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn token_keygen_writes_a_private_key_only_its_owner_reads_and_mint_signs_with_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("keygen");
    let out = run(&["token", "keygen", "--out", "keys"], &dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kid = text(&out.stdout).trim().to_owned();
    let mode = |f: &str| {
        std::fs::metadata(dir.join("keys").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("token.key"), 0o600);
    assert_eq!(mode("token.pub") & 0o077, 0o044, "public: world-readable");
    let public = std::fs::read(dir.join("keys/token.pub")).unwrap();
    let keys = mcp_runtime_token::VerifyingKeys::from_pem(&public).unwrap();
    assert_eq!(keys.kids().collect::<Vec<_>>(), [kid.as_str()]);

    // An existing pair is not replaced by accident; --force replaces it (still 0600).
    let again = run(&["token", "keygen", "--out", "keys"], &dir);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    std::fs::set_permissions(
        dir.join("keys/token.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let forced = run(&["token", "keygen", "--out", "keys", "--force"], &dir);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_eq!(mode("token.key"), 0o600);
    let kid = text(&forced.stdout).trim().to_owned();
    let public = std::fs::read(dir.join("keys/token.pub")).unwrap();
    let keys = mcp_runtime_token::VerifyingKeys::from_pem(&public).unwrap();

    let mint = |key: &str| {
        run(
            &[
                "token",
                "mint",
                "--key",
                key,
                "--server",
                "demo/hello",
                "--human",
                "alice",
            ],
            &dir,
        )
    };
    let out = mint("keys/token.key");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let verified = keys
        .verify(&token, "demo/hello", jiff::Timestamp::now())
        .unwrap();
    assert_eq!(
        (verified.kid.as_str(), verified.claims.sub.as_deref()),
        (kid.as_str(), Some("alice"))
    );
}

#[test]
fn token_mint_explains_a_public_key_and_an_old_hs256_secret() {
    let dir = tempdir("mint-mixups");
    assert!(
        run(&["token", "keygen", "--out", "."], &dir)
            .status
            .success()
    );
    std::fs::write(dir.join("old.key"), "9f".repeat(32)).unwrap();
    for (key, expected) in [
        ("token.pub", "this is a public key"),
        ("token.pub", "writes it as token.key"),
        ("old.key", "HS256"),
        ("old.key", "mcp-runtime token keygen --out DIR"),
    ] {
        let out = run(
            &[
                "token",
                "mint",
                "--key",
                key,
                "--server",
                "demo/hello",
                "--human",
                "alice",
            ],
            &dir,
        );
        assert_eq!(out.status.code(), Some(1), "{key}");
        assert!(out.stdout.is_empty(), "{key}: no token");
        assert!(
            text(&out.stderr).contains(expected),
            "{key}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn explain_decides_prompts_and_resources() {
    let dir = tempdir("explain-targets");
    std::fs::write(
        dir.join("docs.yaml"),
        "apiVersion: mcpruntime.org/v1alpha1
kind: MCPServer
metadata: {name: docs, namespace: team-a}
spec:
  image: ghcr.io/acme/docs:1
  prompts: [{name: summarise, sideEffect: read}]
  mcpResources: [{name: 'file:///docs/*', sideEffect: read, requiredTrust: medium}]
---
apiVersion: mcpruntime.org/v1alpha1
kind: MCPAccessGrant
metadata: {name: alice, namespace: team-a}
spec:
  serverRef: {name: docs}
  subject: {humanID: alice}
  allowedSideEffects: [read]
",
    )
    .unwrap();
    let explain = |target: &[&str]| {
        let mut args = vec!["policy", "explain", "-f", "docs.yaml", "--human", "alice"];
        args.extend_from_slice(target);
        run(&args, &dir)
    };
    let out = explain(&["--prompt", "summarise"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("Call:      prompt `summarise` on team-a/docs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("prompt `summarise` is declared: side effect read"),
        "{stdout}"
    );

    let out = explain(&["--resource", "file:///docs/a.md"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("DENIED: trust_too_low"), "{stdout}");
    assert!(
        stdout.contains("resource `file:///docs/a.md` is declared (as `file:///docs/*`)"),
        "{stdout}"
    );

    let out = explain(&["--prompt", "other", "-o", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "prompt");
    assert_eq!(v["name"], "other");
    assert_eq!(v["decision"]["reason"], "tool_side_effect_unknown");
    assert_eq!(v["steps"][0]["kind"], "prompt");
    let hint = v["hint"].as_str().unwrap();
    assert!(hint.contains("spec.prompts"), "{hint}");

    // Exactly one of --tool, --prompt, --resource.
    let out = explain(&["--prompt", "summarise", "--tool", "echo"]);
    assert_eq!(out.status.code(), Some(2));
    let out = explain(&[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn pipeline_generate_is_server_generate_with_the_images_moved_to_the_registry() {
    let example = workspace_root().join("examples/hello/.mcp");
    let dir = tempdir("pipeline-generate");
    let out = run(
        &[
            "pipeline",
            "generate",
            "--dir",
            example.to_str().unwrap(),
            "--output",
            "same",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let same = std::fs::read_to_string(dir.join("same/hello.yaml")).unwrap();
    assert_golden("examples/hello/manifests/hello.yaml", &same);

    let out = run(
        &[
            "pipeline",
            "generate",
            "--dir",
            example.to_str().unwrap(),
            "--output",
            "moved",
            "--registry",
            "127.0.0.1:5000",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let moved = std::fs::read_to_string(dir.join("moved/hello.yaml")).unwrap();
    let image_line = |t: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with("image:"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let original = image_line(&same);
    let repository = original
        .trim_start_matches("image: ")
        .split_once('/')
        .map_or(original.as_str(), |(_, rest)| rest)
        .to_owned();
    assert_eq!(
        image_line(&moved),
        format!("image: 127.0.0.1:5000/{repository}")
    );
    // Nothing but the image differs.
    assert_eq!(moved.replace(&image_line(&moved), &original), same);

    let missing = run(&["pipeline", "generate", "--dir", "nowhere"], &dir);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("server init"),
        "{}",
        text(&missing.stderr)
    );
}

/// A tiny ELF header: enough for `server build image` to read the architecture.
fn fake_elf(machine: u16) -> Vec<u8> {
    let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
    bytes.resize(18, 0);
    bytes.extend_from_slice(&machine.to_le_bytes());
    bytes.resize(64, 0);
    bytes
}

fn executable(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn server_build_image_writes_a_reproducible_layout_and_refuses_what_it_cannot_package() {
    let dir = tempdir("build-image");
    executable(&dir.join("bin/my-server"), &fake_elf(183));
    std::fs::write(dir.join("bin/README"), "not executable").unwrap();
    let build = |extra: &[&str]| {
        let mut args = vec!["server", "build", "image", "--dir", "bin", "-o", "json"];
        args.extend_from_slice(extra);
        run(&args, &dir)
    };
    let first = build(&["--tag", "v1.0.0"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let built: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(built["image"], "my-server:v1.0.0");
    assert_eq!(built["architecture"], "arm64");
    assert_eq!(built["layout"], "target/images/my-server");
    let index = std::fs::read_to_string(dir.join("target/images/my-server/index.json")).unwrap();
    assert!(
        index.contains("\"org.opencontainers.image.ref.name\":\"v1.0.0\""),
        "{index}"
    );
    assert!(
        text(&first.stderr).contains("mcp-runtime registry push --image HOST/my-server:v1.0.0")
    );

    // The same binary gives the same digest.
    let second = build(&["--tag", "v1.0.0"]);
    let again: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(again["digest"], built["digest"]);

    let fails = |out: Output, want: &str| {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(text(&out.stderr).contains(want), "{}", text(&out.stderr));
    };
    executable(&dir.join("bin/other"), &fake_elf(62));
    fails(build(&[]), "several executable files: my-server, other");
    let picked = build(&["--binary", "other", "--name", "acme/other"]);
    assert!(picked.status.success(), "{}", text(&picked.stderr));
    let picked: serde_json::Value = serde_json::from_slice(&picked.stdout).unwrap();
    assert_eq!(picked["architecture"], "amd64");
    assert_eq!(picked["layout"], "target/images/other");
    executable(&dir.join("script/run.sh"), b"#!/bin/sh\necho hi\n");
    fails(
        run(&["server", "build", "image", "--dir", "script"], &dir),
        "is not an ELF executable",
    );
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    fails(
        run(&["server", "build", "image", "--dir", "empty"], &dir),
        "holds no executable file",
    );
    fails(
        build(&["--binary", "other", "--name", "ghcr.io/acme/other"]),
        "names a registry host",
    );
}
