//! Real parts for Sentinel's scale path, started per test on loopback: a Kafka KRaft broker
//! ([`KafkaBroker`], broker and controller in one JVM, from the jars that
//! `scripts/sentinel-deps.sh` caches), a ClickHouse server ([`ClickHouse`], Debian's
//! `clickhouse-server`, 18.16 on bookworm), and an OpenTelemetry Collector ([`Collector`], built
//! from Go modules by `scripts/otel/install.sh`) that traces are exported to.
//!
//! Each part gets free ports, a scratch directory of its own (configuration, data, and a log file
//! that takes the process's stdout and stderr) and a watchdog. Dropping the value kills the
//! process and removes the directory; on a panic, or when the start failed, the directory is kept
//! (a `keep` file marks it) and its log path printed. When the test process ends without dropping
//! the value (`shared()` instances in a `static`, a crash, a SIGKILL) the watchdog kills the
//! process and removes the directory unless it is marked `keep`.
//!
//! A missing part is an error that names the install script ([`INSTALL_SCRIPT`]); the panicking
//! constructors (`start`) turn it into a panic, so a test never passes by skipping.
//!
//! The API is blocking (plain `#[test]`s, or `spawn_blocking` from async code): starting and
//! stopping real servers is slow next to anything a runtime would save.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod clickhouse;
mod kafka;
mod otel;

pub use clickhouse::{ClickHouse, ClickHouseOptions};
pub use kafka::{KAFKA_VERSION, KafkaBroker, KafkaOptions};
pub use otel::{Collector, CollectorOptions, OTEL_INSTALL_SCRIPT, OTELCOL_VERSION, ReceivedSpan};

/// The script that installs both parts (relative to the repository root).
pub const INSTALL_SCRIPT: &str = "scripts/sentinel-deps.sh";

/// Why a part could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The part (or what runs it, e.g. `java`) is not on this machine.
    #[error(
        "{part} is not installed: {detail}\n  run `{INSTALL_SCRIPT}` first (as root; it caches \
         the Kafka jars under ~/.cache/mcp-runtime/kafka and apt-installs clickhouse-server)"
    )]
    NotInstalled { part: &'static str, detail: String },
    /// A part this repository builds itself is not built yet.
    #[error("{part} is not built: {detail}\n  run `{script}` first (it builds and caches it)")]
    NotBuilt {
        part: &'static str,
        detail: String,
        script: &'static str,
    },
    /// The process started but did not become ready, or exited.
    #[error("{what}: {detail}\n  log: {}\n--- last lines of the log ---\n{tail}", log.display())]
    Start {
        what: String,
        detail: String,
        log: PathBuf,
        tail: String,
    },
    /// A command-line tool (e.g. Kafka's TopicCommand) failed.
    #[error("{what} failed ({status}):\n{output}")]
    Tool {
        what: String,
        status: String,
        output: String,
    },
    /// ClickHouse answered a query with an error.
    #[error("ClickHouse answered HTTP {status} to `{sql}`:\n{body}")]
    Query {
        status: u16,
        sql: String,
        body: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The cache root of `scripts/`: `$MCP_RUNTIME_CACHE`, else `~/.cache/mcp-runtime`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("MCP_RUNTIME_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache").join("mcp-runtime")
}

// ---- scratch directories ------------------------------------------------------------------

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A directory under the system temp dir, removed on drop unless the thread is panicking or
/// [`Scratch::keep`] was called (then it is kept for its logs and its path printed).
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    pub(crate) fn new(kind: &str) -> Result<Scratch> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "mcp-sentinel-{kind}-{}-{n}{:04x}",
            std::process::id(),
            nanos & 0xffff
        ));
        std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
        Ok(Scratch { path, keep: false })
    }

    /// Keep the directory when dropped, and mark it (a `keep` file) so a watchdog leaves it
    /// too: a start failed, and its error names the log in here.
    pub(crate) fn keep(&mut self) {
        self.keep = true;
        let _ = std::fs::write(self.path.join("keep"), b"");
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() {
            let _ = std::fs::write(self.path.join("keep"), b"");
            eprintln!("kept {} for its logs", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// ---- ports --------------------------------------------------------------------------------

/// `N` distinct free loopback ports (all bound at once, then released).
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io("binding a free loopback port"))?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(io("reading a bound port"))?
            .port();
    }
    Ok(ports)
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub(crate) fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

// ---- processes ----------------------------------------------------------------------------

/// The watchdog: `$1` is the test process, `$2` the server, `$3` its scratch directory. It exits
/// when the server is gone. When the test process is gone first (its end, with the value in a
/// `static` that is never dropped; a crash; a SIGKILL) it kills the server and removes the
/// scratch directory, unless a `keep` file marks it as holding the log of a failure.
const WATCHDOG: &str = r#"while kill -0 "$2" 2>/dev/null; do
  if ! kill -0 "$1" 2>/dev/null; then
    kill -KILL "$2" 2>/dev/null
    if [ -n "$3" ] && [ -d "$3" ] && [ ! -e "$3/keep" ]; then sleep 0.2; rm -rf "$3"; fi
    exit 0
  fi
  sleep 1
done"#;

/// A server process: its command line, its log file (stdout and stderr, appended across
/// restarts), and while it runs, the child and its watchdog. Killed on drop.
#[derive(Debug)]
pub(crate) struct Server {
    name: &'static str,
    command: Vec<String>,
    cwd: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl Server {
    pub(crate) fn new(name: &'static str, command: Vec<String>, cwd: &Path, log: &Path) -> Server {
        Server {
            name,
            command,
            cwd: cwd.to_owned(),
            log: log.to_owned(),
            child: None,
            watchdog: None,
        }
    }

    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// Starts the process (its own process group, so a Ctrl-C of the test run reaches the
    /// watchdog's kill instead of half the processes).
    pub(crate) fn spawn(&mut self) -> Result<()> {
        use std::os::unix::process::CommandExt;
        self.kill();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("opening {}", self.log.display())))?;
        let _ = writeln!(
            file,
            "# mcp-runtime-sentinel-testenv: {}",
            self.command.join(" ")
        );
        let err = file
            .try_clone()
            .map_err(io(format!("opening {}", self.log.display())))?;
        let child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::NotInstalled {
                        part: self.name,
                        detail: format!("cannot run {}: {e}", self.command[0]),
                    }
                } else {
                    Error::Io {
                        what: format!("spawning {} ({})", self.name, self.command[0]),
                        source: e,
                    }
                }
            })?;
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            .arg(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        self.child = Some(child);
        match watchdog {
            Ok(w) => self.watchdog = Some(w),
            Err(e) => {
                self.kill();
                return Err(Error::Io {
                    what: format!("spawning the watchdog of {}", self.name),
                    source: e,
                });
            }
        }
        Ok(())
    }

    /// The exit status, if the process was started and has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// SIGKILL (no clean shutdown) and reap; the watchdog too.
    pub(crate) fn kill(&mut self) {
        for child in [self.child.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Fails with the log's tail when the process has exited.
    pub(crate) fn check_alive(&mut self, what: &str) -> Result<()> {
        match self.exited() {
            Some(status) => Err(self.start_error(what, format!("{} exited ({status})", self.name))),
            None => Ok(()),
        }
    }

    pub(crate) fn start_error(&self, what: &str, detail: String) -> Error {
        Error::Start {
            what: what.to_owned(),
            detail,
            log: self.log.clone(),
            tail: tail(&self.log, 40),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "--- {} log {} (last lines) ---\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 40)
            );
        }
        self.kill();
    }
}

/// The last `lines` lines of a file (lossy UTF-8).
pub fn tail(path: &Path, lines: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a finished tool run printed.
#[derive(Debug)]
pub(crate) struct ToolOutput {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `command` with its output in files under `dir` (no pipes to fill up), killing it after
/// `timeout`.
pub(crate) fn run_tool(
    what: &str,
    mut command: Command,
    dir: &Path,
    timeout: Duration,
) -> Result<ToolOutput> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let out_path = dir.join(format!("tool-{n}.out"));
    let err_path = dir.join(format!("tool-{n}.err"));
    let out =
        std::fs::File::create(&out_path).map_err(io(format!("creating {}", out_path.display())))?;
    let err =
        std::fs::File::create(&err_path).map_err(io(format!("creating {}", err_path.display())))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io(format!("running {what}")))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io(format!("waiting for {what}")))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Tool {
                what: what.to_owned(),
                status: format!("killed after {timeout:?}"),
                output: tail(&err_path, 20),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let output = ToolOutput {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    Ok(output)
}

// ---- HTTP (ClickHouse's interface; HTTP/1.0 so the answer is the body up to EOF) -----------

/// One HTTP/1.0 request to `127.0.0.1:port`; returns the status and the body.
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = String::new();
    let _ = write!(
        request,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no end of headers in {} bytes", answer.len()),
        )
    })?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line in {head:?}"),
            )
        })?;
    Ok((status, body.to_owned()))
}

/// Escapes text for an XML element.
pub(crate) fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_installed_names_the_install_script() {
        let e = Error::NotInstalled {
            part: "Kafka",
            detail: "no jars".into(),
        };
        assert!(e.to_string().contains(INSTALL_SCRIPT), "{e}");
    }

    #[test]
    fn free_ports_are_distinct() {
        let [a, b, c] = free_ports::<3>().unwrap();
        assert!(a != b && b != c && a != c);
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml_escape("/tmp/a&b<c>"), "/tmp/a&amp;b&lt;c&gt;");
    }

    #[test]
    fn a_tool_is_killed_after_its_timeout() {
        let dir = Scratch::new("tool").unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let t0 = Instant::now();
        let e = run_tool("sleep", cmd, dir.path(), Duration::from_millis(200)).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("killed after"), "{e}");
    }

    #[test]
    fn the_watchdog_kills_the_server_when_its_parent_is_gone() {
        // Stand-in for "the test process died": a watchdog told to watch a pid that has exited.
        let mut gone = Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let dir = Scratch::new("watchdog").unwrap();
        std::fs::write(dir.path().join("data"), b"x").unwrap();
        let mut server = Command::new("sleep").arg("30").spawn().unwrap();
        let mut watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(gone_pid.to_string())
            .arg(server.id().to_string())
            .arg(dir.path())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = server.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the watchdog did not kill the server within 10 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(!status.success());
        watchdog.wait().unwrap();
        assert!(
            !dir.path().exists(),
            "the watchdog removes the scratch directory"
        );
    }

    #[test]
    fn the_watchdog_leaves_a_directory_marked_keep() {
        let mut gone = Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let mut dir = Scratch::new("watchdog-keep").unwrap();
        dir.keep();
        let mut server = Command::new("sleep").arg("30").spawn().unwrap();
        let status = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(gone_pid.to_string())
            .arg(server.id().to_string())
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        assert!(server.wait().is_ok());
        assert!(dir.path().join("keep").exists());
        dir.keep = false;
    }
}
