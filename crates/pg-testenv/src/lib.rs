//! A real PostgreSQL server for tests: Debian's `postgresql-15` started per test binary on
//! loopback, with a database per test ([`Postgres::database`]).
//!
//! [`Postgres::start`] runs `initdb` into a scratch directory (as the `postgres` user when the
//! test runs as root: initdb and the server refuse root), then the `postgres` server itself as a
//! child process, listening on a free port on 127.0.0.1 only, with its Unix socket in the scratch
//! directory. Running the server directly (not through `pg_ctl start`, which daemonizes) keeps it
//! a child of the test: it is stopped on drop, and a watchdog stops it and removes the directory
//! when the test process dies without dropping it (a value in a `static`, a crash, a SIGKILL).
//! On a panic, or when the start failed, the directory is kept (a `keep` file marks it) for its
//! log.
//!
//! The cluster is throwaway: `trust` authentication for the superuser [`SUPERUSER`] on loopback,
//! `fsync=off`. Never point anything but tests at it.
//!
//! A missing PostgreSQL is an error naming the install script ([`INSTALL_SCRIPT`]); the
//! panicking constructors turn it into a panic, so a test never passes by skipping.
//!
//! The API is blocking (plain `#[test]`s, or `spawn_blocking` from async code).

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The script that installs PostgreSQL (relative to the repository root).
pub const INSTALL_SCRIPT: &str = "scripts/platform-deps.sh";

/// The major version looked for under `/usr/lib/postgresql/` (Debian bookworm's).
pub const PG_MAJOR: &str = "15";

/// The superuser `initdb` creates; tests connect as this role without a password.
pub const SUPERUSER: &str = "mcp";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why PostgreSQL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No PostgreSQL binaries on this machine.
    #[error(
        "PostgreSQL {PG_MAJOR} is not installed: {detail}\n  run `{INSTALL_SCRIPT}` first (as \
         root; it apt-installs Debian's postgresql package)"
    )]
    NotInstalled { detail: String },
    /// `initdb` or the server failed, or the server did not become ready.
    #[error("{what}: {detail}\n  log: {}\n--- last lines of the log ---\n{tail}", log.display())]
    Start {
        what: String,
        detail: String,
        log: PathBuf,
        tail: String,
    },
    /// `psql` failed (an SQL error, or the server is gone).
    #[error("psql failed ({status}) on `{sql}`:\n{output}")]
    Psql {
        sql: String,
        status: String,
        output: String,
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

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where the server binaries are: `$MCP_PG_BINDIR` if set, else
/// `/usr/lib/postgresql/15/bin` (Debian keeps `initdb` and `postgres` off `PATH` there).
pub fn bin_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("MCP_PG_BINDIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/postgresql/{PG_MAJOR}/bin")));
    check_bin_dir(dir)
}

fn check_bin_dir(dir: PathBuf) -> Result<PathBuf> {
    for tool in ["initdb", "postgres", "psql"] {
        if !dir.join(tool).is_file() {
            return Err(Error::NotInstalled {
                detail: format!("no {tool} in {}", dir.display()),
            });
        }
    }
    Ok(dir)
}

/// The uid and gid to run `initdb` and the server as: the `postgres` user when this process
/// runs as root, else `None` (run as ourselves).
fn run_as() -> Result<Option<(u32, u32)>> {
    // The owner of /proc/self is this process's effective uid (no libc call needed).
    let euid = std::fs::metadata("/proc/self")
        .map_err(io("reading /proc/self"))?
        .uid();
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(io("reading /etc/passwd"))?;
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[0] == "postgres")
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .map(Some)
        .ok_or_else(|| Error::NotInstalled {
            detail: "this test runs as root and there is no `postgres` user to run the server \
                     as (the postgresql package creates it)"
                .to_owned(),
        })
}

/// A free loopback port (bound, then released).
fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("binding a free loopback port"))
}

/// The last `lines` lines of a file (lossy UTF-8).
pub fn tail(path: &Path, lines: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The watchdog: `$1` is the test process, `$2` the server (leader of its own process group),
/// `$3` the scratch directory, `$4` the grace in tenths of a second. It exits when the server is
/// gone. When the test process is gone first it asks the server for a fast shutdown (SIGINT:
/// backends end, shared memory is released), kills the whole group after the grace, and removes the directory unless a `keep` file
/// marks it as holding the log of a failure.
const WATCHDOG: &str = r#"while kill -0 "$2" 2>/dev/null; do
  if ! kill -0 "$1" 2>/dev/null; then
    kill -INT "$2" 2>/dev/null
    i=0
    while kill -0 "$2" 2>/dev/null && [ $i -lt "$4" ]; do sleep 0.1; i=$((i+1)); done
    kill -KILL "-$2" 2>/dev/null
    if [ -n "$3" ] && [ -d "$3" ] && [ ! -e "$3/keep" ]; then sleep 0.2; rm -rf "$3"; fi
    exit 0
  fi
  sleep 1
done"#;

/// A running PostgreSQL server on `127.0.0.1`, its cluster in a scratch directory. Dropping it
/// stops the server and removes the directory (kept when the thread panics).
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
    keep: bool,
}

impl Postgres {
    /// Starts a server; panics with the reason (naming [`INSTALL_SCRIPT`] when PostgreSQL is
    /// missing).
    pub fn start() -> Postgres {
        Self::try_start().unwrap_or_else(|e| panic!("Postgres::start: {e}"))
    }

    /// One server for the whole test binary, started on first use; give each test its own
    /// [`Postgres::database`]. Never dropped: the watchdog stops it once the tests have ended.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// `initdb` (UTF-8, `trust` auth, superuser [`SUPERUSER`], no fsync) into a new scratch
    /// directory, then the server on a free port; returns once it accepts connections.
    pub fn try_start() -> Result<Postgres> {
        Self::try_start_in(bin_dir()?)
    }

    /// Like [`Postgres::try_start`] with the binaries of `bin` (`initdb`, `postgres`, `psql`).
    pub fn try_start_in(bin: PathBuf) -> Result<Postgres> {
        let bin = check_bin_dir(bin)?;
        let owner = run_as()?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "mcp-pg-{}-{n}{:04x}",
            std::process::id(),
            nanos & 0xffff
        ));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut pg = Postgres {
            bin,
            port: 0,
            log: dir.join("postgres.log"),
            dir,
            child: None,
            watchdog: None,
            keep: false,
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&pg.dir, Some(uid), Some(gid)).map_err(io(format!(
                "handing {} to the postgres user",
                pg.dir.display()
            )))?;
        }
        match pg.init(owner).and_then(|()| pg.spawn(owner)) {
            Ok(()) => Ok(pg),
            Err(e) => {
                pg.stop();
                pg.keep();
                Err(e)
            }
        }
    }

    fn command(&self, tool: &str, owner: Option<(u32, u32)>) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        c.current_dir(&self.dir).stdin(Stdio::null());
        if let Some((uid, gid)) = owner {
            c.uid(uid).gid(gid);
        }
        c
    }

    fn log_file(&self) -> Result<(std::fs::File, std::fs::File)> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("opening {}", self.log.display())))?;
        let err = file
            .try_clone()
            .map_err(io(format!("opening {}", self.log.display())))?;
        Ok((file, err))
    }

    fn init(&mut self, owner: Option<(u32, u32)>) -> Result<()> {
        let (out, err) = self.log_file()?;
        let mut initdb = self.command("initdb", owner);
        initdb
            .arg("-D")
            .arg(self.data())
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .stdout(out)
            .stderr(err);
        let status = wait_for(initdb, "initdb", TOOL_TIMEOUT)?;
        if !status.success() {
            return Err(self.start_error("initdb", format!("initdb exited ({status})")));
        }
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts `postgres` on a free port (a new one on every call) and waits until it accepts
    /// connections.
    fn spawn(&mut self, owner: Option<(u32, u32)>) -> Result<()> {
        self.port = free_port()?;
        let (mut out, err) = self.log_file()?;
        let _ = writeln!(
            out,
            "# mcp-runtime-pg-testenv: postgres on port {}",
            self.port
        );
        let mut postgres = self.command("postgres", owner);
        postgres
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            // Throwaway data: no durability, quick checkpoints.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = postgres.spawn().map_err(|e| Error::Io {
            what: format!("running {}", self.bin.join("postgres").display()),
            source: e,
        })?;
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            .arg(&self.dir)
            .arg("100")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        self.child = Some(child);
        self.watchdog = Some(watchdog.map_err(io("spawning the watchdog"))?);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(self.start_error("starting postgres", format!("exited ({status})")));
            }
            // Accepting TCP is not enough (the startup phase refuses sessions): ask psql.
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && self.psql("postgres", "SELECT 1").is_ok()
            {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(self.start_error(
                    "starting postgres",
                    format!(
                        "no session on 127.0.0.1:{} within {START_TIMEOUT:?}",
                        self.port
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn start_error(&self, what: &str, detail: String) -> Error {
        Error::Start {
            what: what.to_owned(),
            detail,
            log: self.log.clone(),
            tail: tail(&self.log, 40),
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scratch directory (cluster in `data/`, socket, `postgres.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// A connection URL for `database` as [`SUPERUSER`] over TCP.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new, empty database named after `hint` (letters, digits and `_` kept) and a
    /// per-process counter; panics on failure.
    pub fn database(&self, hint: &str) -> Database {
        self.try_database(hint)
            .unwrap_or_else(|e| panic!("Postgres::database({hint}): {e}"))
    }

    pub fn try_database(&self, hint: &str) -> Result<Database> {
        let clean: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!(
            "t_{clean}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(Database {
            url: self.url(&name),
            name,
            port: self.port,
            bin: self.bin.clone(),
        })
    }

    /// Runs `sql` with `psql` in `database` and returns its unaligned, tuples-only output
    /// (`|` between columns, a line per row).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        psql(&self.bin, self.port, database, sql)
    }

    /// Stops the server: a fast shutdown (SIGINT), then SIGKILL to its process group after
    /// [`STOP_TIMEOUT`].
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Keep the directory (and mark it for the watchdog) when dropped.
    fn keep(&mut self) {
        self.keep = true;
        let _ = std::fs::write(self.dir.join("keep"), b"");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "--- postgres log {} (last lines) ---\n{}",
                self.log.display(),
                tail(&self.log, 40)
            );
        }
        self.stop();
        if self.keep || std::thread::panicking() {
            let _ = std::fs::write(self.dir.join("keep"), b"");
            eprintln!("kept {} for its logs", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A database of a [`Postgres`] server (not dropped with the value: the cluster goes with the
/// server).
#[derive(Clone, Debug)]
pub struct Database {
    pub name: String,
    /// `postgres://mcp@127.0.0.1:PORT/NAME`
    pub url: String,
    port: u16,
    bin: PathBuf,
}

impl Database {
    /// Runs `sql` here (see [`Postgres::psql`]); panics with psql's message on failure.
    pub fn query(&self, sql: &str) -> String {
        self.try_query(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_query(&self, sql: &str) -> Result<String> {
        psql(&self.bin, self.port, &self.name, sql)
    }
}

fn psql(bin: &Path, port: u16, database: &str, sql: &str) -> Result<String> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let out_path = std::env::temp_dir().join(format!("mcp-pg-psql-{}-{n}", std::process::id()));
    let out =
        std::fs::File::create(&out_path).map_err(io(format!("creating {}", out_path.display())))?;
    let err = out
        .try_clone()
        .map_err(io(format!("creating {}", out_path.display())))?;
    let mut c = Command::new(bin.join("psql"));
    c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", SUPERUSER])
        .args(["-d", database, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let status = wait_for(c, "psql", TOOL_TIMEOUT);
    let output =
        String::from_utf8_lossy(&std::fs::read(&out_path).unwrap_or_default()).into_owned();
    let _ = std::fs::remove_file(&out_path);
    let status = status?;
    if status.success() {
        Ok(output.trim_end_matches('\n').to_owned())
    } else {
        Err(Error::Psql {
            sql: sql.lines().next().unwrap_or("").to_owned(),
            status: status.to_string(),
            output,
        })
    }
}

/// Runs a command to its end, killing it after `timeout`.
fn wait_for(
    mut command: Command,
    what: &str,
    timeout: Duration,
) -> Result<std::process::ExitStatus> {
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotInstalled {
                detail: format!("cannot run {what}: {e}"),
            }
        } else {
            Error::Io {
                what: format!("running {what}"),
                source: e,
            }
        }
    })?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io(format!("waiting for {what}")))?
        {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Io {
                what: format!("{what} did not finish"),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("killed after {timeout:?}"),
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_installed_names_the_install_script() {
        let e = Error::NotInstalled {
            detail: "no initdb".into(),
        };
        assert!(e.to_string().contains(INSTALL_SCRIPT), "{e}");
    }

    #[test]
    fn the_watchdog_stops_the_server_group_when_its_parent_is_gone() {
        let mut gone = Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let dir = std::env::temp_dir().join(format!("mcp-pg-watchdog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A stand-in server that ignores SIGINT, so the group kill is what ends it.
        let mut server = Command::new("sh")
            .args(["-c", "trap '' INT; sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let mut watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(gone_pid.to_string())
            .arg(server.id().to_string())
            .arg(&dir)
            .arg("5")
            .spawn()
            .unwrap();
        // Well under the stand-in's 30 s: only the group kill ends it in time.
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the watchdog did not stop the server"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        watchdog.wait().unwrap();
        assert!(!dir.exists(), "the watchdog removes the scratch directory");
    }
}
