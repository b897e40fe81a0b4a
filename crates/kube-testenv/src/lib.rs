//! A real Kubernetes control plane for integration tests.
//!
//! [`TestEnv::shared`] starts `scripts/testenv/start.sh` once per test binary (kube-apiserver,
//! etcd, controller-manager, scheduler and kwok on loopback; see `docs/testenv.md`) and stops it
//! when the test process exits (`MCP_TESTENV_WATCH_PID`). Tests get an admin [`kube::Client`]
//! with [`TestEnv::client`], a fresh namespace each with [`TestEnv::namespace`], and clients that
//! act as a ServiceAccount with [`TestEnv::service_account`], so RBAC is exercised for real.
//!
//! A [`kube::Client`] belongs to the tokio runtime it was made in, and every `#[tokio::test]`
//! has its own runtime, so the shared environment hands out a new client per call instead of
//! sharing one.
//!
//! When the binaries are missing the error names `scripts/testenv/install.sh`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};

/// Why the test environment could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control-plane binaries are not installed.
    #[error(
        "the Kubernetes test environment is not installed: {detail}\n  \
         run `scripts/testenv/install.sh` first (cached under ~/.cache/mcp-runtime; a cold build \
         takes ~7-15 min), or point MCP_TESTENV_BIN at a directory holding the binaries"
    )]
    NotInstalled { detail: String },
    /// `start.sh` failed; its stderr says which component and why.
    #[error("scripts/testenv/start.sh {dir} failed ({status}):\n{stderr}")]
    Start {
        dir: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Env(String),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: {message}")]
    Config { what: String, message: String },
    #[error("timed out after {timeout:?} waiting for {what}{}", last.as_ref().map(|l| format!(" (last: {l})")).unwrap_or_default())]
    Timeout {
        what: String,
        timeout: Duration,
        last: Option<String>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

/// The repository root (this crate lives at `crates/kube-testenv`).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("kube-testenv lives at crates/kube-testenv")
}

/// A running test control plane.
pub struct TestEnv {
    dir: PathBuf,
    vars: BTreeMap<String, String>,
    /// Stop the environment when this value is dropped (private environments only).
    stop_on_drop: bool,
    pids_lock: Mutex<()>,
}

static SHARED: OnceLock<std::result::Result<TestEnv, String>> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestEnv {
    /// The environment shared by every test of this test binary: started on first use, stopped
    /// by the testenv watchdog once the test process exits. Panics with the reason (e.g. "run
    /// scripts/testenv/install.sh") when it cannot start.
    pub fn shared() -> &'static TestEnv {
        let env = SHARED.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!(
                "mcp-testenv-{}-{}",
                std::process::id(),
                unique_suffix()
            ));
            Self::start_in(&dir, false).map_err(|e| e.to_string())
        });
        match env {
            Ok(env) => env,
            Err(e) => panic!("{e}"),
        }
    }

    /// A private environment (e.g. for a test that restarts the apiserver), stopped when the
    /// value is dropped, and by the watchdog if the process dies first.
    pub fn start() -> Result<TestEnv> {
        let dir = std::env::temp_dir().join(format!(
            "mcp-testenv-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        Self::start_in(&dir, true)
    }

    /// Like [`TestEnv::start`], with the binaries taken from `bin` (`MCP_TESTENV_BIN`).
    pub fn start_with_binaries(bin: &Path) -> Result<TestEnv> {
        let bin = bin.to_string_lossy();
        Self::start_with_env(&[("MCP_TESTENV_BIN", &bin)])
    }

    /// Like [`TestEnv::start`], with extra environment for `start.sh` (the knobs of
    /// docs/testenv.md, e.g. `MCP_TESTENV_NODES`, `MCP_TESTENV_TIMEOUT_SCALE`).
    pub fn start_with_env(vars: &[(&str, &str)]) -> Result<TestEnv> {
        let dir = std::env::temp_dir().join(format!(
            "mcp-testenv-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        Self::start_in_with(&dir, true, vars)
    }

    fn start_in(dir: &Path, stop_on_drop: bool) -> Result<TestEnv> {
        Self::start_in_with(dir, stop_on_drop, &[])
    }

    fn start_in_with(dir: &Path, stop_on_drop: bool, vars: &[(&str, &str)]) -> Result<TestEnv> {
        let script = repo_root().join("scripts/testenv/start.sh");
        let mut cmd = Command::new(&script);
        cmd.envs(vars.iter().copied());
        let out = cmd
            .arg(dir)
            .env("MCP_TESTENV_WATCH_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("running {}", script.display())))?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            if stderr.contains("missing binaries") || stderr.contains("install.sh") {
                return Err(Error::NotInstalled {
                    detail: stderr.trim().to_owned(),
                });
            }
            return Err(Error::Start {
                dir: dir.to_owned(),
                status: out.status.to_string(),
                stderr,
            });
        }
        let env_file = dir.join("env");
        let text = std::fs::read_to_string(&env_file)
            .map_err(io(format!("reading {}", env_file.display())))?;
        let vars = parse_env(&text)?;
        for key in [
            "KUBECONFIG",
            "MCP_TESTENV_API_URL",
            "MCP_TESTENV_CA_FILE",
            "MCP_TESTENV_APISERVER_PID",
            "MCP_TESTENV_LOG_DIR",
        ] {
            if !vars.contains_key(key) {
                return Err(Error::Env(format!("{} has no {key}", env_file.display())));
            }
        }
        Ok(TestEnv {
            dir: dir.to_owned(),
            vars,
            stop_on_drop,
            pids_lock: Mutex::new(()),
        })
    }

    /// The run directory (`DIR` of docs/testenv.md).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A value of `DIR/env`.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    fn required(&self, key: &str) -> &str {
        self.var(key).expect("checked at start")
    }

    /// The admin kubeconfig file (user in `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(self.required("KUBECONFIG"))
    }

    pub fn api_url(&self) -> &str {
        self.required("MCP_TESTENV_API_URL")
    }

    pub fn ca_file(&self) -> PathBuf {
        PathBuf::from(self.required("MCP_TESTENV_CA_FILE"))
    }

    pub fn log_dir(&self) -> PathBuf {
        PathBuf::from(self.required("MCP_TESTENV_LOG_DIR"))
    }

    /// An admin client, bound to the calling tokio runtime.
    pub async fn client(&self) -> Client {
        client_from_kubeconfig(&self.kubeconfig())
            .await
            .unwrap_or_else(|e| panic!("admin client: {e}"))
    }

    /// Creates a namespace with a unique name starting with `prefix` and returns its name.
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = format!(
            "{}-{}",
            prefix
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                })
                .take(40)
                .collect::<String>()
                .trim_matches('-'),
            unique_suffix()
        );
        let api: Api<Namespace> = Api::all(self.client().await);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("mcp-runtime.test/namespace".to_owned(), "true".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        name
    }

    /// Credentials of ServiceAccount `namespace/name` (created when missing): a token from the
    /// TokenRequest API and a kubeconfig file using it, so a client or a child process acts with
    /// exactly the RBAC granted to that account.
    pub async fn service_account(&self, namespace: &str, name: &str) -> Result<Credentials> {
        let client = self.client().await;
        let ns_api: Api<Namespace> = Api::all(client.clone());
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        ns_api
            .patch(
                namespace,
                &PatchParams::apply("mcp-runtime-kube-testenv"),
                &Patch::Apply(&ns),
            )
            .await
            .map_err(kube_err(format!("applying namespace {namespace}")))?;
        let api: Api<ServiceAccount> = Api::namespaced(client, namespace);
        if api
            .get_opt(name)
            .await
            .map_err(kube_err(format!(
                "reading ServiceAccount {namespace}/{name}"
            )))?
            .is_none()
        {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match api.create(&PostParams::default(), &sa).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    return Err(Error::Kube {
                        what: format!("creating ServiceAccount {namespace}/{name}"),
                        source: e,
                    });
                }
            }
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(6 * 3600),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        let token = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(kube_err(format!(
                "requesting a token for ServiceAccount {namespace}/{name}"
            )))?
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Env(format!(
                    "TokenRequest for {namespace}/{name} returned no token"
                ))
            })?;
        let user = format!("system:serviceaccount:{namespace}:{name}");
        // Under pki/ (mode 0700), which stop.sh removes.
        let kubeconfig = self.dir.join("pki").join(format!(
            "sa-{namespace}-{name}-{}.kubeconfig",
            unique_suffix()
        ));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: testenv\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: {user}\n  context:\n    cluster: testenv\n    user: {user}\n    namespace: {namespace}\n\
             current-context: {user}\n",
            self.api_url(),
            self.ca_file().display(),
        );
        std::fs::write(&kubeconfig, text)
            .map_err(io(format!("writing {}", kubeconfig.display())))?;
        Ok(Credentials {
            user,
            token,
            kubeconfig,
        })
    }

    /// Server-side applies CRDs and waits until the apiserver serves them (Established).
    pub async fn apply_crds(
        &self,
        crds: impl IntoIterator<Item = CustomResourceDefinition>,
    ) -> Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client().await);
        let pp = PatchParams::apply("mcp-runtime-kube-testenv").force();
        let mut names = Vec::new();
        for crd in crds {
            let name = crd.name_any();
            api.patch(&name, &pp, &Patch::Apply(&crd))
                .await
                .map_err(kube_err(format!("applying CRD {name}")))?;
            names.push(name);
        }
        for name in names {
            let api = api.clone();
            eventually(
                &format!("CRD {name} to be Established"),
                Duration::from_secs(30),
                || {
                    let api = api.clone();
                    let name = name.clone();
                    async move {
                        let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                        let established = crd
                            .status
                            .and_then(|s| s.conditions)
                            .unwrap_or_default()
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True");
                        if established {
                            Ok(())
                        } else {
                            Err("not Established yet".to_owned())
                        }
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Spawns `command` in its own process group, its output appended to `log`, and registers it
    /// in `DIR/pids` so `stop.sh` and the watchdog stop it with the environment (also when the
    /// test process dies). The returned handle kills it when dropped.
    pub fn spawn(&self, name: &str, mut command: Command, log: &Path) -> Result<Process> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(format!("opening {}", log.display())))?;
        let err = file
            .try_clone()
            .map_err(io(format!("opening {}", log.display())))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(io(format!("spawning {name}")))?;
        self.register_pid(name, child.id())?;
        Ok(Process {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    fn register_pid(&self, name: &str, pid: u32) -> Result<()> {
        let _guard = self.pids_lock.lock().unwrap_or_else(|e| e.into_inner());
        let start = proc_starttime(pid).unwrap_or_else(|| "-".to_owned());
        let path = self.dir.join("pids");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        writeln!(f, "{name} {pid} {start}").map_err(io(format!("writing {}", path.display())))
    }

    /// Stops kube-apiserver (SIGTERM to its process group, SIGKILL after 5 s) and starts it again
    /// with the same command line, port and etcd, then waits for `/readyz`. Everything else
    /// keeps running. `down` is how long it stays stopped.
    pub async fn restart_apiserver(&self, down: Duration) -> Result<()> {
        let pids_path = self.dir.join("pids");
        let pids = std::fs::read_to_string(&pids_path)
            .map_err(io(format!("reading {}", pids_path.display())))?;
        let old: u32 = pids
            .lines()
            .rev()
            .find_map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next() == Some("kube-apiserver"))
                    .then(|| parts.next().and_then(|p| p.parse().ok()))
                    .flatten()
            })
            .ok_or_else(|| Error::Env(format!("no kube-apiserver in {}", pids_path.display())))?;
        let log = self.log_dir().join("kube-apiserver.log");
        let text =
            std::fs::read_to_string(&log).map_err(io(format!("reading {}", log.display())))?;
        // First line: "# <timestamp> <argv joined by spaces>" (no argument contains spaces).
        let args: Vec<String> = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .map(|l| l.split_whitespace().skip(1).map(str::to_owned).collect())
            .filter(|a: &Vec<String>| !a.is_empty())
            .ok_or_else(|| Error::Env(format!("no command line in {}", log.display())))?;

        for (signal, grace) in [("TERM", 5), ("KILL", 5)] {
            if !process_alive(old) {
                break;
            }
            signal_group(old, signal);
            let deadline = Instant::now() + Duration::from_secs(grace);
            while process_alive(old) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if process_alive(old) {
            return Err(Error::Env(format!("kube-apiserver {old} survived SIGKILL")));
        }
        tokio::time::sleep(down).await;
        let pid = self.respawn_apiserver(&args, &log)?;

        let kubeconfig = self.kubeconfig();
        eventually(
            "the restarted kube-apiserver to answer /readyz",
            Duration::from_secs(90),
            || {
                let kubeconfig = kubeconfig.clone();
                async move {
                    if !process_alive(pid) {
                        return Err("kube-apiserver exited; see kube-apiserver.log".to_owned());
                    }
                    let client = client_from_kubeconfig(&kubeconfig)
                        .await
                        .map_err(|e| e.to_string())?;
                    let req = http::Request::get("/readyz")
                        .body(Vec::new())
                        .map_err(|e| e.to_string())?;
                    client
                        .request_text(req)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
        )
        .await
    }

    fn respawn_apiserver(&self, args: &[String], log: &Path) -> Result<u32> {
        let _guard = self.pids_lock.lock().unwrap_or_else(|e| e.into_inner());
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(log)
            .map_err(io(format!("opening {}", log.display())))?;
        let err = file.try_clone().map_err(io("dup log"))?;
        let child: Child = Command::new(&args[0])
            .args(&args[1..])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(io("respawning kube-apiserver"))?;
        let pid = child.id();
        // stop.sh owns its lifetime from here on (the pids file names it).
        drop(child);
        let pids_path = self.dir.join("pids");
        let pids = std::fs::read_to_string(&pids_path)
            .map_err(io(format!("reading {}", pids_path.display())))?;
        let start = proc_starttime(pid).unwrap_or_else(|| "-".to_owned());
        let mut updated = String::new();
        for line in pids.lines() {
            if line.starts_with("kube-apiserver ") {
                let _ = writeln!(updated, "kube-apiserver {pid} {start}");
            } else {
                let _ = writeln!(updated, "{line}");
            }
        }
        std::fs::write(&pids_path, updated)
            .map_err(io(format!("writing {}", pids_path.display())))?;
        Ok(pid)
    }

    /// Stops the environment now (`stop.sh DIR --keep-logs` when `keep_logs`).
    pub fn stop(&self, keep_logs: bool) -> Result<()> {
        let script = repo_root().join("scripts/testenv/stop.sh");
        let mut cmd = Command::new(&script);
        cmd.arg(&self.dir);
        if keep_logs {
            cmd.arg("--keep-logs");
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("running {}", script.display())))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Env(format!(
                "stop.sh {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.stop_on_drop {
            let keep = std::thread::panicking();
            if let Err(e) = self.stop(keep) {
                eprintln!("{e}");
            } else if keep {
                eprintln!(
                    "test failed: testenv logs kept in {}",
                    self.log_dir().display()
                );
            }
        }
    }
}

/// A ServiceAccount's token and a kubeconfig file that uses it.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// `system:serviceaccount:<namespace>:<name>`
    pub user: String,
    pub token: String,
    pub kubeconfig: PathBuf,
}

impl Credentials {
    /// A client acting as the ServiceAccount, bound to the calling tokio runtime.
    pub async fn client(&self) -> Client {
        client_from_kubeconfig(&self.kubeconfig)
            .await
            .unwrap_or_else(|e| panic!("client for {}: {e}", self.user))
    }
}

/// A child process started with [`TestEnv::spawn`]; killed (SIGKILL to its group) on drop.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM to its group and waits up to `grace` before SIGKILL.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        signal_group(self.child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(self.child.id(), "KILL");
        self.child.wait().ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            signal_group(self.child.id(), "KILL");
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail(60)
            );
        }
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `check` every 100 ms until it returns `Ok`, for at most `timeout`. The error names
/// `what` and the last reason `check` gave.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last: Option<String> = None;
    loop {
        // Each check gets at least 5 s (more if more is left), so one slow check at the end does
        // not hide the reason the previous ones gave.
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining.max(Duration::from_secs(5)), check()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(reason)) => last = Some(reason),
            Err(_) => {
                let why = "a check did not finish in time";
                last = Some(match last {
                    Some(previous) => format!("{previous}; then {why}"),
                    None => why.to_owned(),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Builds a client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Error::Config {
        what: format!("reading {}", path.display()),
        message: e.to_string(),
    })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Config {
            what: format!("loading {}", path.display()),
            message: e.to_string(),
        })?;
    Client::try_from(config).map_err(kube_err(format!("client from {}", path.display())))
}

/// Parses `DIR/env`: one `KEY=VALUE` per line, split at the first `=`.
pub fn parse_env(text: &str) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| Error::Env(format!("env line {}: no `=` in {line:?}", i + 1)))?;
        vars.insert(k.to_owned(), v.to_owned());
    }
    Ok(vars)
}

fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{n}{:04x}", nanos & 0xffff)
}

fn proc_starttime(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19).map(str::to_owned)
}

fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 2..].split_whitespace().next())
        .unwrap_or("X");
    !matches!(state, "Z" | "X")
}

/// `kill -SIG -- -PGID` (the process group), falling back to the process itself.
fn signal_group(pid: u32, signal: &str) {
    let group = Command::new("kill")
        .args([format!("-{signal}"), "--".to_owned(), format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
    if !group.is_ok_and(|s| s.success()) {
        let _ = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_split_at_the_first_equals_sign() {
        let vars = parse_env(
            "MCP_TESTENV_DIR=/tmp/kt\nKUBECONFIG=/tmp/kt/kubeconfig\nMCP_TESTENV_PIDS=1,2\n",
        )
        .unwrap();
        assert_eq!(vars["KUBECONFIG"], "/tmp/kt/kubeconfig");
        assert_eq!(vars["MCP_TESTENV_PIDS"], "1,2");
        assert!(parse_env("garbage\n").is_err());
    }

    #[test]
    fn missing_binaries_name_the_installer() {
        let e = Error::NotInstalled {
            detail: "missing binaries in /x".into(),
        };
        assert!(e.to_string().contains("scripts/testenv/install.sh"), "{e}");
    }
}
