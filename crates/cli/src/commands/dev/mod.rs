//! `mcp-runtime dev`: a governed MCP endpoint on a laptop.

mod dashboard;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use mcp_runtime_api::access::{MCPAccessGrant, MCPAgentSession};
use mcp_runtime_api::manifest::Manifest;
use mcp_runtime_api::metadata::{MetadataFile, ServerEntry};
use mcp_runtime_api::render::{RenderOptions, Skipped, render_policy};
use mcp_runtime_policy::PolicyDocument;
use mcp_runtime_token::{Identity, SigningKey};

use crate::cli::DevArgs;
use crate::commands::token::{self, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE};
use crate::error::{CliError, Result};
use crate::files;

/// Kills its processes when dropped, so a failing `dev` leaves nothing behind.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A binary shipped with mcp-runtime: next to this executable, else on PATH.
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn wait_ready(url: &str, children: &mut Children) -> Result<()> {
    let (host, path) = url
        .trim_start_matches("http://")
        .split_once('/')
        .unwrap_or((url, ""));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(host) {
            use std::io::{Read, Write};
            let _ = write!(
                s,
                "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            );
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok() && &head[9..12] == b"200" {
                return Ok(());
            }
        }
        for (name, child) in &mut children.0 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(CliError::Invalid(format!(
                    "{name} exited ({status}) before becoming ready"
                )));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(CliError::Invalid(format!(
        "{url} did not become ready within 20 s"
    )))
}

fn wait_port(port: u16, children: &mut Children, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        for (name, child) in &mut children.0 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(CliError::Invalid(format!(
                    "{name} exited ({status}) before listening"
                )));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(CliError::Invalid(format!(
        "{what} did not listen on port {port} within 20 s"
    )))
}

struct Project {
    metadata: PathBuf,
    access: Vec<PathBuf>,
    wanted: Option<String>,
}

impl Project {
    fn entry(&self) -> Result<ServerEntry> {
        let path = self.metadata.join("servers.yaml");
        let file = MetadataFile::parse(&path.display().to_string(), &files::read(&path)?)?;
        let entries = file.servers;
        match (&self.wanted, entries.len()) {
            (None, 1) => Ok(entries.into_iter().next().expect("one entry")),
            (None, n) => Err(CliError::hint(
                format!("{} declares {n} servers", path.display()),
                "name the one to run: mcp-runtime dev NAME",
            )),
            (Some(w), _) => entries.into_iter().find(|e| &e.name == w).ok_or_else(|| {
                CliError::Invalid(format!("{} declares no server `{w}`", path.display()))
            }),
        }
    }

    /// Renders the policy from the manifests, with the sessions named in `revoked`
    /// (`namespace/name`, the dashboard's revocations) revoked on top of them.
    fn render(&self, entry: &ServerEntry, revoked: &BTreeSet<String>) -> Result<Rendering> {
        let server = entry.to_manifest();
        let namespace = server.metadata.namespace.clone().unwrap_or_default();
        let (mut grants, mut sessions) = (Vec::new(), Vec::new());
        if !self.access.is_empty() {
            for m in files::load_manifests(&self.access, &namespace)? {
                match m {
                    Manifest::Grant(g) => grants.push(g),
                    Manifest::Session(s) => sessions.push(s),
                    Manifest::Server(_) => {}
                }
            }
        }
        for s in &mut sessions {
            if revoked.contains(&object_key(
                s.metadata.namespace.as_deref(),
                s.metadata.name.as_deref(),
            )) {
                s.spec.revoked = true;
            }
        }
        let rendered = render_policy(
            &server,
            &grants,
            &sessions,
            &RenderOptions {
                cluster: Some("dev".into()),
            },
        )
        .map_err(|e| CliError::Invalid(e.to_string()))?;
        for s in &rendered.skipped {
            eprintln!(
                "warning: {} {}/{} left out of the policy",
                s.kind, s.namespace, s.name
            );
        }
        let mut left_out = rendered.skipped;
        left_out.extend(rendered.refused);
        Ok(Rendering {
            entry: entry.clone(),
            document: rendered.document,
            grants,
            sessions,
            left_out,
            revoked_here: revoked.clone(),
        })
    }

    fn newest_change(&self) -> Option<SystemTime> {
        let mut paths = vec![self.metadata.join("servers.yaml")];
        for p in &self.access {
            paths.push(p.clone());
            if let Ok(dir) = std::fs::read_dir(p) {
                paths.extend(dir.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
        paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .max()
    }
}

/// `namespace/name` of a manifest's object.
fn object_key(namespace: Option<&str>, name: Option<&str>) -> String {
    format!(
        "{}/{}",
        namespace.unwrap_or_default(),
        name.unwrap_or_default()
    )
}

/// One rendering of the project: the policy document and what it was made of.
pub(crate) struct Rendering {
    pub entry: ServerEntry,
    pub document: PolicyDocument,
    pub grants: Vec<MCPAccessGrant>,
    pub sessions: Vec<MCPAgentSession>,
    /// Grants and sessions that grant nothing (invalid, or from a refused namespace), with why.
    pub left_out: Vec<Skipped>,
    /// The sessions revoked from the dashboard (`namespace/name`), not in the files.
    pub revoked_here: BTreeSet<String>,
}

impl Rendering {
    /// The sessions to mint tokens for: `namespace/name` and the identity it is for.
    fn identities(&self) -> Vec<(String, Identity)> {
        self.document
            .sessions
            .iter()
            .map(|s| {
                (
                    format!("{}/{}", s.namespace, s.name),
                    Identity {
                        human: s.subject.human_id.clone(),
                        agent: s.subject.agent_id.clone(),
                        team: s.subject.team_id.clone(),
                        session: Some(format!("{}/{}", s.namespace, s.name)),
                    },
                )
            })
            .collect()
    }
}

/// The policy `dev` serves: the project's manifests as rendered, with the dashboard's
/// revocations on top (in memory only: a restart of `dev` forgets them). Every change is written
/// to the policy file the gateway watches, so its next decision follows.
pub(crate) struct LivePolicy {
    project: Project,
    policy_file: PathBuf,
    state: Mutex<LiveState>,
}

struct LiveState {
    revoked: BTreeSet<String>,
    current: Arc<Rendering>,
}

impl LivePolicy {
    /// Renders the project once and writes the policy file; fails if the manifests do not render.
    fn start(project: Project, policy_file: PathBuf) -> Result<LivePolicy> {
        let revoked = BTreeSet::new();
        let rendering = project.render(&project.entry()?, &revoked)?;
        files::write(&policy_file, &rendering.document.to_json_pretty(), true)?;
        Ok(LivePolicy {
            project,
            policy_file,
            state: Mutex::new(LiveState {
                revoked,
                current: Arc::new(rendering),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        // A panic while holding it left a consistent state (it is replaced whole): go on.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last rendering that succeeded (the one the gateway enforces).
    pub(crate) fn current(&self) -> Arc<Rendering> {
        Arc::clone(&self.lock().current)
    }

    fn render_and_write(&self, state: &mut LiveState) -> Result<()> {
        let rendering = self
            .project
            .render(&self.project.entry()?, &state.revoked)?;
        files::write(
            &self.policy_file,
            &rendering.document.to_json_pretty(),
            true,
        )?;
        state.current = Arc::new(rendering);
        Ok(())
    }

    /// Renders the manifests anew (they changed); on error the previous policy stays.
    fn refresh(&self) -> Result<()> {
        let mut state = self.lock();
        self.render_and_write(&mut state)
    }

    /// Revokes (or unrevokes) the session `namespace/name` on top of the manifests and rewrites
    /// the policy; on error nothing changes.
    pub(crate) fn set_revoked(&self, key: &str, revoked: bool) -> Result<Arc<Rendering>> {
        let mut state = self.lock();
        let before = state.revoked.clone();
        if revoked {
            state.revoked.insert(key.to_owned());
        } else {
            state.revoked.remove(key);
        }
        if let Err(e) = self.render_and_write(&mut state) {
            state.revoked = before;
            return Err(e);
        }
        Ok(Arc::clone(&state.current))
    }
}

/// The project's state directory, outside the project (its key must never land in a tree that
/// may be committed): `$XDG_STATE_HOME/mcp-runtime/dev/<dir name>-<hash of its path>`, default
/// `~/.local/state/...`. Created with mode 0700.
fn state_dir(metadata_dir: &Path) -> Result<PathBuf> {
    use sha2::Digest;
    let project = std::fs::canonicalize(metadata_dir)
        .map_err(|source| CliError::Read {
            path: metadata_dir.to_owned(),
            source,
        })?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let base = dev_base()?;
    let hash = sha2::Sha256::digest(project.as_os_str().as_encoded_bytes());
    let hex: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    let name = project
        .file_name()
        .map_or_else(|| "project".into(), |n| n.to_string_lossy().into_owned());
    let dir = base.join(format!("{name}-{hex}"));
    private_dir(&dir)?;
    Ok(dir)
}

fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CliError::Write {
            path: dir.to_owned(),
            source,
        })
}

/// Where every project's dev state lives: `$XDG_STATE_HOME/mcp-runtime/dev`, default
/// `~/.local/state/mcp-runtime/dev`.
fn dev_base() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".local/state"))
            .ok_or_else(|| {
                CliError::Invalid("neither XDG_STATE_HOME nor HOME is set".to_owned())
            })?,
    };
    Ok(base.join("mcp-runtime/dev"))
}

/// File name of the API key of `dev`'s Sentinel, in [`dev_base`]: one per user, so that the
/// `sentinel` commands find it whichever project `dev` runs.
const SENTINEL_KEY_FILE: &str = "sentinel.key";

/// The key file `dev` gives its Sentinel, if `dev` has run: the `sentinel` commands' default.
pub(crate) fn dev_sentinel_key() -> Option<PathBuf> {
    dev_base()
        .ok()
        .map(|b| b.join(SENTINEL_KEY_FILE))
        .filter(|p| p.exists())
}

/// The key of `dev`'s Sentinel, created (random, mode 0600) on first use.
fn ensure_dev_sentinel_key() -> Result<PathBuf> {
    use std::io::Read as _;
    let base = dev_base()?;
    private_dir(&base)?;
    let path = base.join(SENTINEL_KEY_FILE);
    if !path.exists() {
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|source| CliError::Read {
                path: "/dev/urandom".into(),
                source,
            })?;
        let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        token::write_private(&path, &format!("dev-{key}\n"), false)?;
    }
    Ok(path)
}

/// The project's signing key, created on first use (and its public half for the gateway).
fn dev_key(state: &Path) -> Result<SigningKey> {
    let path = state.join(PRIVATE_KEY_FILE);
    let key = if path.exists() {
        token::read_signing_key(&path)?
    } else {
        let key = token::generate()?;
        token::write_private(&path, &key.to_pem(), false)?;
        key
    };
    files::write(&state.join(PUBLIC_KEY_FILE), &key.public_pem(), true)?;
    Ok(key)
}

pub fn run(args: DevArgs) -> Result<u8> {
    let access = if args.files.is_empty() {
        [PathBuf::from("access")]
            .into_iter()
            .filter(|p| p.exists())
            .collect()
    } else {
        args.files.clone()
    };
    let project = Project {
        metadata: args.metadata_dir.clone(),
        access,
        wanted: args.server.clone(),
    };
    let entry = project.entry()?;
    let state = state_dir(&args.metadata_dir)?;
    let legacy = args.metadata_dir.join("dev");
    if legacy.join(PRIVATE_KEY_FILE).exists() {
        eprintln!(
            "warning: {} holds the state (and signing key) of an older `mcp-runtime dev`; it is \
             no longer used: delete it, and make sure it was never committed",
            legacy.display()
        );
    }
    let key = dev_key(&state)?;
    let policy_file = state.join("policy.json");
    let live = Arc::new(LivePolicy::start(project, policy_file.clone())?);
    let sessions = live.current().identities();

    let mut children = Children(Vec::new());
    let upstream = match &args.upstream {
        Some(url) => url.clone(),
        None => {
            let command = entry.dev.as_ref().map(|d| d.command.clone()).filter(|c| !c.is_empty()).ok_or_else(|| {
                CliError::hint(
                    format!("server `{}` has no dev.command in servers.yaml", entry.name),
                    "add `dev: {command: [my-server, --port, \"{port}\"]}` to the entry, or pass --upstream URL",
                )
            })?;
            let port = args
                .server_port
                .map_or(entry.spec.port, i32::from)
                .to_string();
            let argv: Vec<String> = command.iter().map(|a| a.replace("{port}", &port)).collect();
            let program = if argv[0].contains('/') {
                PathBuf::from(&argv[0])
            } else {
                sibling(&argv[0])
            };
            eprintln!("starting {} on port {port}", argv[0]);
            let child = Command::new(&program)
                .args(&argv[1..])
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| {
                    CliError::hint(
                        format!("cannot start {}: {e}", program.display()),
                        "build it (cargo build) or fix dev.command",
                    )
                })?;
            children.0.push((argv[0].clone(), child));
            wait_port(port.parse().unwrap_or_default(), &mut children, &argv[0])?;
            format!("http://127.0.0.1:{port}")
        }
    };
    let sentinel_url = format!("http://127.0.0.1:{}", args.sentinel_port);
    let sentinel_key = if args.no_sentinel {
        None
    } else {
        let key = ensure_dev_sentinel_key()?;
        let sentinel = Command::new(sibling("mcp-sentinel"))
            .args(["--listen", &format!("127.0.0.1:{}", args.sentinel_port)])
            // Its metrics are not needed here: any free port, so two projects' dev never
            // collide on it.
            .args(["--admin-listen", "127.0.0.1:0"])
            .arg("--db")
            .arg(state.join("sentinel.db"))
            .arg("--api-keys-file")
            .arg(&key)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                CliError::hint(
                    format!("cannot start mcp-sentinel: {e}"),
                    "build it with `cargo build` (it is installed next to mcp-runtime), or pass --no-sentinel",
                )
            })?;
        children.0.push(("mcp-sentinel".into(), sentinel));
        wait_ready(&format!("{sentinel_url}/healthz"), &mut children)?;
        Some(key)
    };
    let mut gateway = Command::new(sibling("mcp-gateway"));
    if let Some(key) = &sentinel_key {
        gateway
            .args([
                "--audit-ingest-url",
                &format!("{sentinel_url}/v1/ingest/events"),
            ])
            .arg("--audit-api-key-file")
            .arg(key);
    }
    let gateway = gateway
        .args([
            "--listen",
            &format!("127.0.0.1:{}", args.port),
            "--admin-listen",
            &format!("127.0.0.1:{}", args.admin_port),
        ])
        .args(["--upstream", &upstream])
        .arg("--policy-file")
        .arg(&policy_file)
        .arg("--token-public-keys-file")
        .arg(state.join(PUBLIC_KEY_FILE))
        .arg("--audit-file")
        .arg(state.join("audit.jsonl"))
        .arg("--audit-spool-dir")
        .arg(state.join("spool"))
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            CliError::hint(
                format!("cannot start mcp-gateway: {e}"),
                "build it with `cargo build` (it is installed next to mcp-runtime)",
            )
        })?;
    children.0.push(("mcp-gateway".into(), gateway));
    wait_ready(
        &format!("http://127.0.0.1:{}/ready", args.admin_port),
        &mut children,
    )?;

    let audience = format!(
        "{}/{}",
        entry
            .namespace
            .as_deref()
            .unwrap_or(mcp_runtime_api::metadata::DEFAULT_NAMESPACE),
        entry.name
    );
    let url = format!("http://127.0.0.1:{}{}", args.port, "/mcp");
    let dashboard_url = if args.no_dashboard {
        None
    } else {
        Some(dashboard::start(
            args.dashboard_port,
            Arc::clone(&live),
            sentinel_key
                .as_ref()
                .map(|key| (sentinel_url.clone(), key.clone())),
        )?)
    };
    let mut out = format!(
        "MCP endpoint: {url}\nserver: {audience} (policy {})\naudit log: {}\nsigning key: {} (kid {})\n",
        state.join("policy.json").display(),
        state.join("audit.jsonl").display(),
        state.join(PRIVATE_KEY_FILE).display(),
        key.kid()
    );
    for (name, identity) in sessions {
        let token = key
            .mint(
                &audience,
                identity,
                Timestamp::now(),
                jiff::SignedDuration::from_secs(12 * 3600),
            )
            .map_err(|e| CliError::Invalid(e.to_string()))?;
        out.push_str(&format!("token for session {name}: {token}\n"));
    }
    if sentinel_key.is_some() {
        out.push_str(&format!(
            "decisions: Sentinel at {sentinel_url}; see them with `mcp-runtime sentinel events` (or tail, usage, stats)\n"
        ));
    }
    out.push_str("call it with: Authorization: Bearer <token>   (Ctrl-C stops everything)\n");
    if let Some(url) = &dashboard_url {
        // Last, so the first command of the README ends with where to look.
        out.push_str(&format!("dashboard: {url}\n"));
    }
    crate::output::write_stdout(&mut std::io::stdout().lock(), &out)?;

    // Keep the policy in step with the manifests until a process ends.
    let mut seen = live.project.newest_change();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        for (name, child) in &mut children.0 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(CliError::Invalid(format!("{name} exited ({status})")));
            }
        }
        let now = live.project.newest_change();
        if now != seen {
            seen = now;
            match live.refresh() {
                Ok(()) => eprintln!("policy re-rendered"),
                Err(e) => eprintln!("error: {e} (the gateway keeps the previous policy)"),
            }
        }
    }
}
