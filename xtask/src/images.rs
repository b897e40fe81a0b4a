//! `cargo xtask images`: OCI images of the components, built without a container engine.
//!
//! Builds the release binaries (`cargo build --release --target TARGET`), puts each on a
//! minimal non-root base (crates/oci: `/etc/passwd` and `/etc/group` with user 65532, `/tmp`,
//! the binary at `/usr/local/bin/NAME`) and writes one OCI image layout per component under
//! `OUT/NAME/`, plus `OUT/images.json` (name, reference, digest, layout).
//!
//! Static binaries (the default target, `x86_64-unknown-linux-musl`) need nothing else. A
//! binary with an ELF interpreter (a glibc build, `--target x86_64-unknown-linux-gnu`) gets the
//! shared libraries `ldd` names copied from this machine into the image at the same paths:
//! that image is then only as reproducible as the machine's libraries (same Debian release and
//! updates, same digest).
//!
//! Reproducible: the config's `created` and every file's mtime are the source commit's time
//! (`SOURCE_DATE_EPOCH` if set), never the build time; with the same sources, toolchain and
//! target the images have the same digests.

use std::path::{Path, PathBuf};
use std::process::Command;

use mcp_runtime_oci::layout::Layout;
use mcp_runtime_oci::{Entry, Image, ImageSpec};
use serde::Serialize;

/// Where the manifests (deploy/, the operator's defaults) expect the images.
pub const REPOSITORY_PREFIX: &str = "ghcr.io/mcp-runtime";
const SOURCE: &str = "https://github.com/mcp-runtime/mcp-runtime";
const DEFAULT_TARGET: &str = "x86_64-unknown-linux-musl";

/// One image: its name under [`REPOSITORY_PREFIX`], the cargo package and binary it holds.
pub struct Component {
    pub image: &'static str,
    pub package: &'static str,
    pub binary: &'static str,
    pub title: &'static str,
}

pub const COMPONENTS: &[Component] = &[
    Component {
        image: "mcp-runtime-operator",
        package: "mcp-runtime-operator",
        binary: "mcp-runtime-operator",
        title: "mcp-runtime operator",
    },
    Component {
        image: "mcp-gateway",
        package: "mcp-runtime-gateway",
        binary: "mcp-gateway",
        title: "mcp-runtime governing gateway",
    },
    Component {
        image: "mcp-sentinel",
        package: "mcp-runtime-sentinel",
        binary: "mcp-sentinel",
        title: "mcp-runtime Sentinel (decision records)",
    },
    Component {
        image: "mcp-platform",
        package: "mcp-runtime-platform",
        binary: "mcp-platform",
        title: "mcp-runtime platform API",
    },
    Component {
        image: "example-hello",
        package: "hello-mcp-server",
        binary: "hello-mcp-server",
        title: "mcp-runtime example MCP server",
    },
];

pub const USAGE: &str = "\
usage: cargo xtask images [--out DIR] [--tag TAG] [--target TRIPLE] [--only IMAGE]... [--no-build]

Builds the release binaries and writes one OCI image layout per component (no container
engine needed) to DIR/IMAGE/ (default DIR: target/images), and DIR/images.json.

  --out DIR        where the layouts go (default target/images)
  --tag TAG        the tag in each layout's index (default: the workspace version)
  --target TRIPLE  rust target (default x86_64-unknown-linux-musl: static binaries; it needs
                   `rustup target add x86_64-unknown-linux-musl` and Debian's musl-tools).
                   A glibc target works too: the binary's shared libraries are then copied
                   from this machine into the image.
  --only IMAGE     build only this image (repeatable): mcp-runtime-operator, mcp-gateway,
                   mcp-sentinel, mcp-platform, example-hello
  --no-build       use the binaries already in target/TRIPLE/release
";

#[derive(Debug)]
pub struct Options {
    pub out: PathBuf,
    pub tag: String,
    pub target: String,
    pub only: Vec<String>,
    pub build: bool,
}

impl Options {
    pub fn parse(root: &Path, args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            out: root.join("target/images"),
            tag: env!("CARGO_PKG_VERSION").to_owned(),
            target: DEFAULT_TARGET.to_owned(),
            only: Vec::new(),
            build: true,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match arg.as_str() {
                "--out" => options.out = PathBuf::from(value("--out")?),
                "--tag" => options.tag = value("--tag")?,
                "--target" => options.target = value("--target")?,
                "--only" => options.only.push(value("--only")?),
                "--no-build" => options.build = false,
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        check_tag(&options.tag)?;
        for name in &options.only {
            if !COMPONENTS.iter().any(|c| c.image == name) {
                let known: Vec<&str> = COMPONENTS.iter().map(|c| c.image).collect();
                return Err(format!(
                    "--only {name}: no such image (known: {})",
                    known.join(", ")
                ));
            }
        }
        Ok(options)
    }

    fn components(&self) -> impl Iterator<Item = &'static Component> + '_ {
        COMPONENTS
            .iter()
            .filter(|c| self.only.is_empty() || self.only.iter().any(|o| o == c.image))
    }
}

/// A tag as the distribution spec allows it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--tag `{tag}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128; not \
             starting with `.` or `-`)"
        ))
    }
}

/// What the source is: version, revision and the time to stamp everything with.
#[derive(Clone, Debug)]
pub struct Provenance {
    pub version: String,
    pub revision: String,
    pub created: i64,
}

impl Provenance {
    /// The git HEAD (with `-dirty` when the work tree has changes, so a label never claims a
    /// commit the image was not built from) and its commit time; `SOURCE_DATE_EPOCH` overrides
    /// the time.
    pub fn of_checkout(root: &Path) -> Result<Provenance, String> {
        let git = |args: &[&str]| -> Result<String, String> {
            let out = Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
                .map_err(|e| format!("running git: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "git {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let mut revision = git(&["rev-parse", "HEAD"])?;
        if !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
            revision.push_str("-dirty");
        }
        let created = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(s) if !s.is_empty() => s
                .parse()
                .map_err(|_| format!("SOURCE_DATE_EPOCH `{s}` is not a number of seconds"))?,
            _ => git(&["log", "-1", "--format=%ct", "HEAD"])?
                .parse()
                .map_err(|e| format!("git commit time: {e}"))?,
        };
        Ok(Provenance {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            revision,
            created,
        })
    }
}

/// The image of `component` holding `binary` (its bytes) and the `libraries` it needs (path
/// in the image, bytes).
pub fn spec(
    component: &Component,
    binary: Vec<u8>,
    libraries: Vec<(String, Vec<u8>)>,
    provenance: &Provenance,
    tag: &str,
) -> ImageSpec {
    let path = format!("usr/local/bin/{}", component.binary);
    let mut spec = ImageSpec::nonroot(vec![format!("/{path}")], provenance.created);
    spec.entries.push(Entry::File {
        path,
        mode: 0o755,
        uid: 0,
        gid: 0,
        data: binary,
    });
    for (path, data) in libraries {
        spec.entries.push(Entry::File {
            path,
            mode: 0o755,
            uid: 0,
            gid: 0,
            data,
        });
    }
    let labels = [
        ("org.opencontainers.image.title", component.title),
        ("org.opencontainers.image.version", &provenance.version),
        ("org.opencontainers.image.revision", &provenance.revision),
        ("org.opencontainers.image.source", SOURCE),
        ("org.opencontainers.image.licenses", "Apache-2.0"),
    ];
    spec.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    spec.tag = Some(tag.to_owned());
    spec
}

/// The ELF interpreter a binary asks for (`PT_INTERP`), `None` for a static binary.
pub fn elf_interpreter(elf: &[u8]) -> Result<Option<String>, String> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let truncated = || "truncated ELF header".to_owned();
    let phoff = u64_at(0x20).ok_or_else(truncated)? as usize;
    let phentsize = u16_at(0x36).ok_or_else(truncated)? as usize;
    let phnum = u16_at(0x38).ok_or_else(truncated)? as usize;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        const PT_INTERP: u32 = 3;
        if u32_at(at).ok_or_else(truncated)? == PT_INTERP {
            let offset = u64_at(at + 8).ok_or_else(truncated)? as usize;
            let size = u64_at(at + 32).ok_or_else(truncated)? as usize;
            let bytes = elf.get(offset..offset + size).ok_or_else(truncated)?;
            let text = String::from_utf8_lossy(bytes);
            return Ok(Some(text.trim_end_matches('\0').to_owned()));
        }
    }
    Ok(None)
}

/// Paths compiled into the binaries (panic locations) made independent of where the checkout
/// and the cargo home are, so another machine's build gives the same bytes. With `--target`,
/// RUSTFLAGS reach only the target's crates, not build scripts.
fn remap_flags(root: &Path) -> String {
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    for (from, to) in [(root.to_path_buf(), "/src"), (cargo_home, "/cargo")] {
        flags.push_str(&format!(" --remap-path-prefix={}={to}", from.display()));
    }
    flags.trim().to_owned()
}

/// The shared libraries (and the interpreter) `ldd` resolves for `binary`: absolute paths.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("running ldd on {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut paths = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux... (0x...)`
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        match path {
            Some(p) if p.starts_with('/') => paths.push(PathBuf::from(p)),
            _ if line.contains("not found") => {
                return Err(format!("{}: {}", binary.display(), line.trim()));
            }
            _ => {} // linux-vdso.so.1: provided by the kernel
        }
    }
    Ok(paths)
}

#[derive(Debug, Serialize)]
struct Built {
    name: String,
    /// Where the manifests expect it: `ghcr.io/mcp-runtime/NAME:TAG`.
    reference: String,
    tag: String,
    digest: String,
    layout: PathBuf,
    /// `static`, or `dynamic` when host libraries were copied in.
    linking: &'static str,
    layer_bytes: usize,
    version: String,
    revision: String,
}

pub fn run(root: &Path, options: &Options) -> Result<(), String> {
    let provenance = Provenance::of_checkout(root)?;
    let components: Vec<&Component> = options.components().collect();
    if options.build {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(root)
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                &options.target,
            ])
            // Smaller images; symbol names stay, so panics still name functions.
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
            .env("RUSTFLAGS", remap_flags(root));
        // librdkafka's cmake project (mcp-sentinel) asks for a C++ compiler for the target even
        // though only its C library is built and linked; Debian's musl-tools has no musl g++, and
        // the host's g++ satisfies the check (nothing C++ ends up in the static binary).
        let musl_cxx = format!("CXX_{}", options.target.replace('-', "_"));
        if options.target.ends_with("-musl") && std::env::var_os(&musl_cxx).is_none() {
            cargo.env(&musl_cxx, "g++");
        }
        for c in &components {
            cargo.args(["-p", c.package, "--bin", c.binary]);
        }
        eprintln!("building: {cargo:?}");
        let status = cargo.status().map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() {
            return Err(format!(
                "cargo build failed ({status}); for the default static target install it once \
                 with `rustup target add {DEFAULT_TARGET}` and `apt-get install musl-tools`, or \
                 pass --target x86_64-unknown-linux-gnu (glibc; host libraries are copied in)"
            ));
        }
    }
    let bin_dir = root.join("target").join(&options.target).join("release");
    std::fs::create_dir_all(&options.out)
        .map_err(|e| format!("creating {}: {e}", options.out.display()))?;
    let mut summary = Vec::new();
    for c in components {
        let path = bin_dir.join(c.binary);
        let binary = std::fs::read(&path).map_err(|e| {
            format!(
                "reading {}: {e} (build it, or drop --no-build)",
                path.display()
            )
        })?;
        let interpreter =
            elf_interpreter(&binary).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut libraries = Vec::new();
        if interpreter.is_some() {
            for lib in shared_libraries(&path)? {
                // Read through symlinks: the image holds a plain file at the path ldd names.
                let data =
                    std::fs::read(&lib).map_err(|e| format!("reading {}: {e}", lib.display()))?;
                let in_image = lib.to_string_lossy().trim_start_matches('/').to_owned();
                libraries.push((in_image, data));
            }
        }
        let spec = spec(c, binary, libraries, &provenance, &options.tag);
        let image = Image::build(&spec).map_err(|e| format!("{}: {e}", c.image))?;
        let dir = options.out.join(c.image);
        // A fresh directory: blobs of an earlier build must not linger in the layout.
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("removing {}: {e}", dir.display()))?;
        }
        Layout::from_image(&image)
            .write_dir(&dir)
            .map_err(|e| format!("{}: {e}", c.image))?;
        let built = Built {
            name: c.image.to_owned(),
            reference: format!("{REPOSITORY_PREFIX}/{}:{}", c.image, options.tag),
            tag: options.tag.clone(),
            digest: image.manifest.digest.to_string(),
            layout: dir,
            linking: if interpreter.is_some() {
                "dynamic"
            } else {
                "static"
            },
            layer_bytes: image.layer.bytes.len(),
            version: provenance.version.clone(),
            revision: provenance.revision.clone(),
        };
        eprintln!(
            "{} {} ({}, layer {:.1} MiB) -> {}",
            built.reference,
            built.digest,
            built.linking,
            built.layer_bytes as f64 / 1048576.0,
            built.layout.display()
        );
        summary.push(built);
    }
    let path = options.out.join("images.json");
    // Entries of images not built this time (an earlier `--only` run, another target) stay.
    let mut entries: Vec<serde_json::Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for built in &summary {
        entries.retain(|e| e["name"] != built.name.as_str());
        entries.push(serde_json::to_value(built).map_err(|e| e.to_string())?);
    }
    let order = |e: &serde_json::Value| COMPONENTS.iter().position(|c| e["name"] == c.image);
    entries.sort_by_key(order);
    let mut text = serde_json::to_string_pretty(&entries).map_err(|e| e.to_string())?;
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_are_the_ones_the_manifests_use() {
        let reference =
            |image: &str| format!("{REPOSITORY_PREFIX}/{image}:{}", env!("CARGO_PKG_VERSION"));
        let built: Vec<String> = COMPONENTS.iter().map(|c| reference(c.image)).collect();
        for expected in [
            mcp_runtime_operator::manifests::IMAGE,
            mcp_runtime_operator::config::DEFAULT_GATEWAY_IMAGE,
            mcp_runtime_deploy::sentinel::IMAGE,
            mcp_runtime_deploy::platform::IMAGE,
        ] {
            assert!(
                built.iter().any(|b| b == expected),
                "{expected} is not built"
            );
        }
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/manifests/hello.yaml"),
        )
        .unwrap();
        assert!(example.contains(&format!("image: {}", reference("example-hello"))));
    }

    #[test]
    fn static_and_dynamic_binaries_are_told_apart() {
        // This test binary is a glibc build: it names the dynamic loader.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let interp = elf_interpreter(&me)
            .unwrap()
            .expect("a dynamic test binary");
        assert!(
            interp.starts_with('/') && interp.contains("ld-"),
            "{interp}"
        );
        let libs = shared_libraries(&std::env::current_exe().unwrap()).unwrap();
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn options_are_checked() {
        let root = Path::new("/r");
        let o = Options::parse(root, &[]).unwrap();
        assert_eq!(o.out, Path::new("/r/target/images"));
        assert_eq!(o.tag, env!("CARGO_PKG_VERSION"));
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Options::parse(root, &args(&["--tag", "-bad"])).is_err());
        assert!(
            Options::parse(root, &args(&["--only", "nope"]))
                .unwrap_err()
                .contains("known:")
        );
        assert!(
            Options::parse(root, &args(&["--tag"]))
                .unwrap_err()
                .contains("needs a value")
        );
        let o = Options::parse(root, &args(&["--only", "mcp-gateway", "--no-build"])).unwrap();
        assert_eq!(
            o.components().map(|c| c.image).collect::<Vec<_>>(),
            ["mcp-gateway"]
        );
        assert!(!o.build);
    }
}
