//! A real container registry for tests: Debian's `docker-registry` (the CNCF distribution v2
//! registry) run as a child process on a free loopback port, its storage and config in a
//! scratch directory, stopped and removed on drop.
//!
//! [`Registry::start`] runs it without authentication; [`Registry::start_with_basic_auth`] with
//! an htpasswd file (bcrypt, written by `htpasswd` from apache2-utils) holding one user. A
//! missing binary is a panic naming [`INSTALL_SCRIPT`]: a test never passes by skipping.
//!
//! [`Registry::get`] is a tiny blocking HTTP/1.1 client (plain HTTP, one request per
//! connection) for tests to read back what was pushed.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The script that installs the registry and htpasswd (relative to the repository root).
pub const INSTALL_SCRIPT: &str = "scripts/registry-deps.sh";

const START_TIMEOUT: Duration = Duration::from_secs(30);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The registry binary: `$MCP_REGISTRY_BIN`, else Debian's `/usr/bin/docker-registry`.
pub fn binary() -> PathBuf {
    std::env::var_os("MCP_REGISTRY_BIN")
        .filter(|b| !b.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"))
}

/// A running registry. Dropping it kills the process and removes its directory.
#[derive(Debug)]
pub struct Registry {
    port: u16,
    dir: PathBuf,
    child: Child,
    /// `(user, password)` when started with basic auth.
    credentials: Option<(String, String)>,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Registry {
    /// A registry that needs no authentication.
    pub fn start() -> Registry {
        Self::launch(None)
    }

    /// A registry that requires Basic authentication as `user` / `password`.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Registry {
        Self::launch(Some((user.to_owned(), password.to_owned())))
    }

    fn launch(credentials: Option<(String, String)>) -> Registry {
        let bin = binary();
        assert!(
            bin.is_file(),
            "no registry binary at {} (Debian's docker-registry): run `{INSTALL_SCRIPT}` first \
             (as root; it apt-installs docker-registry and apache2-utils)",
            bin.display()
        );
        let dir = std::env::temp_dir().join(format!(
            "mcp-registry-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("storage")).expect("creating the registry directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  \
             filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: \
             127.0.0.1:{port}\n",
            dir.join("storage").display()
        );
        if let Some((user, password)) = &credentials {
            let htpasswd = dir.join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .unwrap_or_else(|e| {
                    panic!("running htpasswd: {e} (run `{INSTALL_SCRIPT}`: apache2-utils)")
                });
            assert!(out.status.success(), "htpasswd failed: {out:?}");
            std::fs::write(&htpasswd, &out.stdout).expect("writing htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: mcp-runtime-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).expect("writing the registry config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("creating the log");
        let child = Command::new(&bin)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        let mut registry = Registry {
            port,
            dir,
            child,
            credentials,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the registry exited ({status}) before answering; log:\n{}",
                    self.log()
                );
            }
            if let Ok(answer) = self.get_as("/v2/", None)
                && matches!(answer.status, 200 | 401)
            {
                return;
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "the registry did not answer on 127.0.0.1:{} within {START_TIMEOUT:?}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`, the address to push to (plain HTTP).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// GET `path` with the registry's own credentials (if it has any).
    pub fn get(&self, path: &str) -> Answer {
        let auth = self
            .credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()));
        self.get_as(path, auth)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// GET `path` with `Accept` for OCI and Docker manifests, as `auth` (user, password).
    pub fn get_as(&self, path: &str, auth: Option<(&str, &str)>) -> std::io::Result<Answer> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: \
             application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json\r\n",
            self.host()
        );
        if let Some((user, password)) = auth {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request.push_str(&format!("Authorization: Basic {encoded}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_answer(&raw)
    }
}

fn parse_answer(raw: &[u8]) -> std::io::Result<Answer> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "registry log ({}):\n{}",
                self.dir.join("registry.log").display(),
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
