//! A ClickHouse server (Debian's `clickhouse-server`) with a configuration of its own.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{Error, Result, Scratch, Server, free_ports, http, io, xml_escape};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server binary is looked for when neither the option nor
/// `$MCP_CLICKHOUSE_SERVER` names one. `/usr/bin/clickhouse` is the all-in-one binary of newer
/// packages (run as `clickhouse server`).
const SERVER_CANDIDATES: [&str; 3] = [
    "/usr/sbin/clickhouse-server",
    "/usr/bin/clickhouse-server",
    "/usr/bin/clickhouse",
];

/// How to start a server; `Default` is what [`ClickHouse::start`] uses.
#[derive(Clone, Debug)]
pub struct ClickHouseOptions {
    /// The server binary (default: `$MCP_CLICKHOUSE_SERVER`, else the first of
    /// `/usr/sbin/clickhouse-server`, `/usr/bin/clickhouse-server`, `/usr/bin/clickhouse`).
    pub server: Option<PathBuf>,
    /// The users file (profiles, the passwordless `default` user); the package's by default.
    pub users_config: PathBuf,
}

impl Default for ClickHouseOptions {
    fn default() -> Self {
        ClickHouseOptions {
            server: None,
            users_config: PathBuf::from("/etc/clickhouse-server/users.xml"),
        }
    }
}

/// A running (or killed) ClickHouse server on loopback, its data in a scratch directory.
/// Dropping it kills the server and removes the directory (kept when the thread panics).
#[derive(Debug)]
pub struct ClickHouse {
    server: Server,
    http_port: u16,
    tcp_port: u16,
    // Last: removed after the server is killed.
    dir: Scratch,
}

impl ClickHouse {
    /// Starts a server with default options; panics with the reason (naming
    /// `scripts/sentinel-deps.sh` when ClickHouse is missing).
    pub fn start() -> ClickHouse {
        Self::start_with(ClickHouseOptions::default())
            .unwrap_or_else(|e| panic!("ClickHouse::start: {e}"))
    }

    /// One server for the whole test binary, started on first use (a database or table per
    /// test keeps them apart). It is never dropped: its watchdog kills it and removes its
    /// directory once the test process has exited. Panics like [`ClickHouse::start`].
    pub fn shared() -> &'static ClickHouse {
        static SHARED: OnceLock<ClickHouse> = OnceLock::new();
        SHARED.get_or_init(ClickHouse::start)
    }

    /// Writes a `config.xml` (free HTTP and native ports on 127.0.0.1, every path under the
    /// scratch directory), runs `clickhouse-server --config-file=...` and waits until
    /// `GET /ping` answers `Ok.`.
    pub fn start_with(options: ClickHouseOptions) -> Result<ClickHouse> {
        let binary = resolve_server(options.server)?;
        if !options.users_config.is_file() {
            return Err(Error::NotInstalled {
                part: "ClickHouse",
                detail: format!(
                    "no users file at {} (the clickhouse-server package installs it)",
                    options.users_config.display()
                ),
            });
        }
        let dir = Scratch::new("clickhouse")?;
        let root = dir.path();
        let [http_port, tcp_port] = free_ports::<2>()?;
        let config = root.join("config.xml");
        std::fs::write(
            &config,
            config_xml(root, http_port, tcp_port, &options.users_config),
        )
        .map_err(io(format!("writing {}", config.display())))?;

        let mut command = vec![binary.to_string_lossy().into_owned()];
        if binary.file_name().is_some_and(|n| n == "clickhouse") {
            command.push("server".to_owned());
        }
        command.push(format!("--config-file={}", config.display()));
        let mut clickhouse = ClickHouse {
            server: Server::new("ClickHouse", command, root, &root.join("clickhouse.log")),
            http_port,
            tcp_port,
            dir,
        };
        match clickhouse
            .server
            .spawn()
            .and_then(|()| clickhouse.wait_ready("starting ClickHouse"))
        {
            Ok(()) => Ok(clickhouse),
            Err(e) => {
                // Keep the log the error points at.
                clickhouse.server.kill();
                clickhouse.dir.keep();
                Err(e)
            }
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The native protocol port (`clickhouse-client --port`).
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's stdout and stderr (it logs to the console here).
    pub fn log_path(&self) -> &Path {
        self.server.log()
    }

    /// Runs `sql` (POSTed as the body, so `INSERT ... FORMAT JSONEachRow` may carry its rows on
    /// the following lines) and returns the answer; panics with the server's message on error.
    pub fn query(&self, sql: &str) -> String {
        self.try_query(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`ClickHouse::query`], returning the error (e.g. to assert that SQL is refused).
    pub fn try_query(&self, sql: &str) -> Result<String> {
        let (status, body) =
            http(self.http_port, "POST", "/", sql.as_bytes(), QUERY_TIMEOUT).map_err(io(
                format!("POST {} ({})", self.http_url(), first_line(sql)),
            ))?;
        if status == 200 {
            Ok(body)
        } else {
            Err(Error::Query {
                status,
                sql: first_line(sql).to_owned(),
                body,
            })
        }
    }

    /// Kills the server hard (SIGKILL); [`ClickHouse::restart`] starts it again on the same
    /// ports and data.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// Starts the server again (killing it first if it runs) and waits for `/ping`; panics on
    /// failure.
    pub fn restart(&mut self) {
        self.try_restart()
            .unwrap_or_else(|e| panic!("ClickHouse::restart: {e}"));
    }

    pub fn try_restart(&mut self) -> Result<()> {
        self.server.kill();
        self.server.spawn()?;
        self.wait_ready("restarting ClickHouse")
    }

    fn wait_ready(&mut self, what: &str) -> Result<()> {
        let start = Instant::now();
        loop {
            self.server.check_alive(what)?;
            let last = match http(self.http_port, "GET", "/ping", b"", Duration::from_secs(2)) {
                Ok((200, body)) if body.trim_end() == "Ok." => return Ok(()),
                Ok((status, body)) => format!("HTTP {status}: {}", body.trim_end()),
                Err(e) => e.to_string(),
            };
            if start.elapsed() > START_TIMEOUT {
                return Err(self.server.start_error(
                    what,
                    format!(
                        "GET {}/ping did not answer `Ok.` within {START_TIMEOUT:?} (last: {last})",
                        self.http_url()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.server.kill();
    }
}

fn first_line(sql: &str) -> &str {
    sql.trim_start().lines().next().unwrap_or("")
}

fn resolve_server(option: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(server) = option.or_else(|| {
        std::env::var_os("MCP_CLICKHOUSE_SERVER")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }) {
        return if server.is_file() {
            Ok(server)
        } else {
            Err(Error::NotInstalled {
                part: "ClickHouse",
                detail: format!("no server binary at {}", server.display()),
            })
        };
    }
    SERVER_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::NotInstalled {
            part: "ClickHouse",
            detail: format!("no server binary at {}", SERVER_CANDIDATES.join(", ")),
        })
}

/// The server configuration: 18.16's `<yandex>` root (newer servers accept it too), loopback
/// only, every path in the scratch directory, small caches, logging to the console.
fn config_xml(root: &Path, http_port: u16, tcp_port: u16, users: &Path) -> String {
    let dir = |name: &str| xml_escape(&format!("{}/", root.join(name).display()));
    format!(
        r#"<?xml version="1.0"?>
<!-- written by mcp-runtime-sentinel-testenv -->
<yandex>
    <logger>
        <level>information</level>
        <console>1</console>
    </logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{data}</path>
    <tmp_path>{tmp}</tmp_path>
    <user_files_path>{user_files}</user_files_path>
    <format_schema_path>{format_schemas}</format_schema_path>
    <users_config>{users}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
"#,
        data = dir("data"),
        tmp = dir("tmp"),
        user_files = dir("user_files"),
        format_schemas = dir("format_schemas"),
        users = xml_escape(&users.display().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_names_the_install_script() {
        let e = ClickHouse::start_with(ClickHouseOptions {
            server: Some("/nonexistent/clickhouse-server".into()),
            ..ClickHouseOptions::default()
        })
        .unwrap_err();
        assert!(matches!(e, Error::NotInstalled { .. }), "{e}");
        assert!(e.to_string().contains("scripts/sentinel-deps.sh"), "{e}");
    }

    #[test]
    fn the_config_keeps_every_path_in_the_scratch_directory() {
        let xml = config_xml(
            Path::new("/tmp/ch"),
            8123,
            9000,
            Path::new("/etc/clickhouse-server/users.xml"),
        );
        assert!(xml.contains("<path>/tmp/ch/data/</path>"), "{xml}");
        assert!(xml.contains("<tmp_path>/tmp/ch/tmp/</tmp_path>"), "{xml}");
        assert!(
            xml.contains("<listen_host>127.0.0.1</listen_host>"),
            "{xml}"
        );
        assert!(!xml.contains("/var/lib/clickhouse"), "{xml}");
    }
}
