//! The real `mcp-platform` on a real PostgreSQL (crates/pg-testenv) for the CLI's tests, and
//! the `mcp-runtime` binary run with a configuration directory of the test's own.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mcp_runtime_pg_testenv::{Database, Postgres};
use serde_json::{Value, json};

pub const ADMIN: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "bootstrap password 1";
pub const PASSWORD: &str = "a long enough pass";
/// The seed of the platform's signing key (its public half verifies the session tokens).
pub const KEY_SEED: [u8; 32] = [41; 32];

pub fn signing_key() -> mcp_runtime_token::SigningKey {
    mcp_runtime_token::SigningKey::from_seed(&KEY_SEED)
}

pub fn mcp_runtime() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-runtime"))
}

/// A binary of the workspace beside `mcp-runtime`.
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = mcp_runtime().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build -p mcp-runtime-platform -p mcp-runtime-gateway -p hello-mcp-server`",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory, kept when the test fails (logs for the post-mortem).
pub struct TempDir(pub PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn tempdir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("mcp-cli-platform-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A child process killed on drop; its stderr goes to `log`.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        Proc {
            child: cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_port(&mut self, port: u16, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what} exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what} did not listen on {port}:\n{}", self.log());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request with curl: the status and the body as JSON (`{"raw": text}` otherwise).
pub fn http(method: &str, url: &str, headers: &[String], body: Option<&Value>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        url,
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary"])
            .arg(body.to_string());
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| json!({ "raw": body }))
    };
    (code.trim().parse().unwrap_or(0), json)
}

/// A running `mcp-platform` with a database of its own and the bootstrap admin [`ADMIN`].
pub struct Platform {
    pub url: String,
    pub dir: TempDir,
    pub db: Database,
    proc: Proc,
}

impl Platform {
    /// `extra` flags and environment, e.g. `--kube` with `KUBECONFIG`.
    pub fn start(name: &str, extra: &[&str], env: &[(&str, &str)]) -> Platform {
        let db = Postgres::shared().database(name);
        let dir = tempdir(&format!("platform-{name}"));
        std::fs::write(dir.join("signing.pem"), signing_key().to_pem()).unwrap();
        std::fs::write(dir.join("admin-password"), format!("{ADMIN_PASSWORD}\n")).unwrap();
        let port = free_port();
        let mut cmd = Command::new(workspace_binary("mcp-platform"));
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &db.url])
            .arg("--signing-key")
            .arg(dir.join("signing.pem"))
            .args(["--bootstrap-admin-email", ADMIN])
            .arg("--bootstrap-admin-password-file")
            .arg(dir.join("admin-password"))
            // Platforms of tests running at once must not share the default admin port.
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG");
        let mut proc = Proc::spawn(cmd, dir.join("platform.log"));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http("GET", &format!("{url}/healthz"), &[], None).0 == 200 {
                break;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("mcp-platform exited ({status}):\n{}", proc.log());
            }
            assert!(
                Instant::now() < deadline,
                "mcp-platform did not start:\n{}",
                proc.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Platform { url, dir, db, proc }
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// One API call, authenticated with `bearer` (an access token or an API key) when given.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let headers: Vec<String> = bearer
            .map(|b| format!("authorization: Bearer {b}"))
            .into_iter()
            .collect();
        http(
            method,
            &format!("{}{path}", self.url),
            &headers,
            body.as_ref(),
        )
    }

    pub fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self.api(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        );
        assert_eq!(status, 200, "login {email}: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a user with [`PASSWORD`] (as the admin).
    pub fn create_user(&self, email: &str) {
        let admin = self.login(ADMIN, ADMIN_PASSWORD);
        let (status, body) = self.api(
            "POST",
            "/v1/users",
            Some(&admin),
            Some(json!({"email": email, "password": PASSWORD})),
        );
        assert_eq!(status, 201, "create {email}: {body}");
    }
}

/// `mcp-runtime` with its own configuration directory (profiles), nothing from the caller's
/// environment that would pick a profile or platform.
pub struct Cli {
    pub config_dir: PathBuf,
}

impl Cli {
    pub fn new(dir: &Path) -> Cli {
        let config_dir = dir.join("config/mcp-runtime");
        Cli { config_dir }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(mcp_runtime());
        cmd.env("MCP_RUNTIME_CONFIG_DIR", &self.config_dir)
            .env("COLUMNS", "100")
            .env_remove("MCP_RUNTIME_PROFILE")
            .env_remove("MCP_RUNTIME_PLATFORM")
            .env_remove("MCP_RUNTIME_TOKEN")
            .env_remove("MCP_RUNTIME_TOKEN_FILE")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs with `stdin` as standard input.
    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        use std::io::Write as _;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let _ = input.write_all(stdin.as_bytes());
        drop(input);
        Run(child.wait_with_output().unwrap())
    }

    pub fn profile_file(&self) -> PathBuf {
        self.config_dir.join("profiles.json")
    }

    pub fn profiles(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.profile_file()).unwrap()).unwrap()
    }

    /// Replaces the profile file (keeping it 0600), e.g. to age a token.
    pub fn write_profiles(&self, value: &Value) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.profile_file();
        std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A finished run of `mcp-runtime`.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout(), self.stderr()))
    }

    /// Panics with the output unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self
    }
}
