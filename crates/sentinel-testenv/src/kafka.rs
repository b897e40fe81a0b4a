//! A single-node Kafka (KRaft: broker and controller in one JVM) from the cached jars.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{Error, Result, Scratch, Server, cache_root, free_ports, io, port_accepts, run_tool};

/// The Kafka version `scripts/sentinel-deps.sh` installs (a unit test checks both agree).
pub const KAFKA_VERSION: &str = "4.4.0";

const START_TIMEOUT: Duration = Duration::from_secs(90);
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start a broker; `Default` is what [`KafkaBroker::start`] uses.
#[derive(Clone, Debug, Default)]
pub struct KafkaOptions {
    /// The directory of jars (default: `$MCP_KAFKA_LIBS`, else the install script's cache
    /// `~/.cache/mcp-runtime/kafka/<KAFKA_VERSION>/libs`).
    pub libs: Option<PathBuf>,
    /// The `java` to run (default: `$JAVA_HOME/bin/java` when set, else `java` on `PATH`).
    pub java: Option<PathBuf>,
    /// Extra `server.properties` entries; they replace the defaults of the same key.
    pub properties: Vec<(String, String)>,
}

/// A running (or killed, see [`KafkaBroker::kill`]) single-node KRaft broker on loopback.
/// Dropping it kills the JVM and removes its directory (kept when the thread panics).
#[derive(Debug)]
pub struct KafkaBroker {
    server: Server,
    libs: PathBuf,
    java: PathBuf,
    port: u16,
    controller_port: u16,
    // Last: removed after the server is killed.
    dir: Scratch,
}

impl KafkaBroker {
    /// Starts a broker with default options; panics with the reason (naming
    /// `scripts/sentinel-deps.sh` when Kafka or Java is missing).
    pub fn start() -> KafkaBroker {
        Self::start_with(KafkaOptions::default())
            .unwrap_or_else(|e| panic!("KafkaBroker::start: {e}"))
    }

    /// One broker for the whole test binary, started on first use (a topic or group per test
    /// keeps them apart; tests that kill or restart a broker start their own). It is never
    /// dropped: its watchdog kills it and removes its directory once the test process has
    /// exited. Panics like [`KafkaBroker::start`].
    pub fn shared() -> &'static KafkaBroker {
        static SHARED: OnceLock<KafkaBroker> = OnceLock::new();
        SHARED.get_or_init(KafkaBroker::start)
    }

    /// Starts a broker: free ports, `server.properties`, storage formatted with a fresh cluster
    /// id, `java -Xmx512m -cp 'libs/*' kafka.Kafka`, then waits until the listener accepts and
    /// an admin client lists topics.
    pub fn start_with(options: KafkaOptions) -> Result<KafkaBroker> {
        let libs = resolve_libs(options.libs)?;
        let java = resolve_java(options.java);
        let dir = Scratch::new("kafka")?;
        let [port, controller_port] = free_ports::<2>()?;
        let root = dir.path().to_owned();
        let root = root.as_path();
        let data = root.join("data");
        std::fs::create_dir_all(&data).map_err(io(format!("creating {}", data.display())))?;

        let mut props = default_properties(port, controller_port, &data);
        for (key, value) in options.properties {
            match props.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => props.push((key, value)),
            }
        }
        let mut text = String::from("# written by mcp-runtime-sentinel-testenv\n");
        for (key, value) in &props {
            text.push_str(&format!("{key}={value}\n"));
        }
        write(&root.join("server.properties"), &text)?;
        write(&root.join("log4j.properties"), &log4j("INFO", "System.out"))?;
        write(
            &root.join("tools-log4j.properties"),
            &log4j("WARN", "System.err"),
        )?;

        let mut broker = KafkaBroker {
            server: Server::new("Kafka", Vec::new(), root, &root.join("kafka.log")),
            libs,
            java,
            port,
            controller_port,
            dir,
        };
        if let Err(e) = broker.format_storage() {
            broker.dir.keep();
            return Err(e);
        }
        broker.server = Server::new(
            "Kafka",
            broker.java_command(
                "-Xmx512m",
                "log4j.properties",
                &[
                    "kafka.Kafka",
                    &root.join("server.properties").to_string_lossy(),
                ],
            ),
            root,
            &root.join("kafka.log"),
        );
        match broker
            .server
            .spawn()
            .and_then(|()| broker.wait_ready("starting the Kafka broker"))
        {
            Ok(()) => Ok(broker),
            Err(e) => {
                // Keep the log the error points at.
                broker.server.kill();
                broker.dir.keep();
                Err(e)
            }
        }
    }

    /// `127.0.0.1:PORT` of the PLAINTEXT listener (clients' `bootstrap.servers`).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn controller_port(&self) -> u16 {
        self.controller_port
    }

    /// The broker's scratch directory (`server.properties`, `data/`, `kafka.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's stdout and stderr (appended across restarts).
    pub fn log_path(&self) -> &Path {
        self.server.log()
    }

    /// Creates a topic (replication factor 1); panics on failure.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        self.topic_command(&[
            "--create",
            "--topic",
            name,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "1",
        ])
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
    }

    /// The topics the broker lists (internal ones excluded), sorted; panics on failure.
    pub fn list_topics(&self) -> Vec<String> {
        let out = self
            .topic_command(&["--list"])
            .unwrap_or_else(|e| panic!("listing topics: {e}"));
        let mut topics: Vec<String> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("__"))
            .map(str::to_owned)
            .collect();
        topics.sort();
        topics
    }

    /// The number of partitions of `topic` (from `--describe`); panics on failure.
    pub fn partition_count(&self, topic: &str) -> u32 {
        let out = self
            .topic_command(&["--describe", "--topic", topic])
            .unwrap_or_else(|e| panic!("describing topic {topic}: {e}"));
        out.split_whitespace()
            .skip_while(|w| *w != "PartitionCount:")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no PartitionCount in the description of {topic}:\n{out}"))
    }

    /// Runs `org.apache.kafka.tools.TopicCommand --bootstrap-server <this> ARGS` and returns
    /// its stdout.
    pub fn topic_command(&self, args: &[&str]) -> Result<String> {
        let bootstrap = self.bootstrap();
        let mut full = vec!["--bootstrap-server", bootstrap.as_str()];
        full.extend_from_slice(args);
        self.tool("org.apache.kafka.tools.TopicCommand", &full)
    }

    /// Runs a Kafka command-line class (e.g. `org.apache.kafka.tools.consumer.group.ConsumerGroupCommand`)
    /// on the broker's classpath; returns its stdout, or an error with its stderr.
    pub fn tool(&self, class: &str, args: &[&str]) -> Result<String> {
        let mut argv = vec![class];
        argv.extend_from_slice(args);
        let command = self.java_command("-Xmx256m", "tools-log4j.properties", &argv);
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..]).current_dir(self.dir.path());
        let what = format!("{class} {}", args.join(" "));
        let out = run_tool(&what, cmd, self.dir.path(), TOOL_TIMEOUT)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(Error::Tool {
                what,
                status: out.status.to_string(),
                output: format!("{}{}", out.stdout, out.stderr),
            })
        }
    }

    /// Kills the broker hard (SIGKILL: no controlled shutdown, no clean-shutdown marker), as a
    /// crash would. Ports and data stay reserved for [`KafkaBroker::restart`].
    pub fn kill(&mut self) {
        self.server.kill();
    }

    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// Starts the broker again on the same ports and data (killing it first if it runs) and
    /// waits until it serves; panics on failure. After a hard kill the controller waits for the
    /// old broker session to expire (`broker.session.timeout.ms`, 4 s here) before the broker
    /// registers and its listener opens.
    pub fn restart(&mut self) {
        self.try_restart()
            .unwrap_or_else(|e| panic!("KafkaBroker::restart: {e}"));
    }

    pub fn try_restart(&mut self) -> Result<()> {
        self.server.kill();
        self.server.spawn()?;
        self.wait_ready("restarting the Kafka broker")
    }

    fn format_storage(&self) -> Result<()> {
        let root = self.dir.path();
        let properties = root.join("server.properties");
        let cluster_id = random_cluster_id();
        let command = self.java_command(
            "-Xmx256m",
            "tools-log4j.properties",
            &[
                "kafka.tools.StorageTool",
                "format",
                "-t",
                &cluster_id,
                "-c",
                &properties.to_string_lossy(),
            ],
        );
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..]).current_dir(root);
        let out = run_tool("kafka.tools.StorageTool format", cmd, root, TOOL_TIMEOUT).map_err(
            |e| match e {
                Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    Error::NotInstalled {
                        part: "Java (for Kafka)",
                        detail: format!("cannot run {}: {source}", self.java.display()),
                    }
                }
                other => other,
            },
        )?;
        if !out.status.success() {
            return Err(Error::Tool {
                what: format!("formatting the Kafka storage in {}", root.display()),
                status: out.status.to_string(),
                output: format!("{}{}", out.stdout, out.stderr),
            });
        }
        Ok(())
    }

    fn wait_ready(&mut self, what: &str) -> Result<()> {
        let start = Instant::now();
        // The PLAINTEXT listener opens once the broker has registered with the controller.
        loop {
            self.server.check_alive(what)?;
            if port_accepts(self.port) {
                break;
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(self.server.start_error(
                    what,
                    format!(
                        "port {} did not accept connections within {START_TIMEOUT:?}",
                        self.port
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Then a real admin client round trip.
        loop {
            match self.topic_command(&["--list"]) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    self.server.check_alive(what)?;
                    if start.elapsed() > START_TIMEOUT {
                        return Err(self.server.start_error(
                            what,
                            format!("the broker did not answer TopicCommand --list: {e}"),
                        ));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `java <heap> -Dlog4j.configuration=file:<dir>/<log4j> -cp '<libs>/*' ARGS`.
    fn java_command(&self, heap: &str, log4j: &str, args: &[&str]) -> Vec<String> {
        let mut command = vec![
            self.java.to_string_lossy().into_owned(),
            heap.to_owned(),
            "-Djava.awt.headless=true".to_owned(),
            format!(
                "-Dlog4j.configuration=file:{}",
                self.dir.path().join(log4j).display()
            ),
            // log4j-core is on the classpath too (Kafka's logger controller) and complains that
            // it has no configuration; the logging itself goes through reload4j.
            "-Dlog4j2.statusLoggerLevel=OFF".to_owned(),
            "-cp".to_owned(),
            format!("{}/*", self.libs.display()),
        ];
        command.extend(args.iter().map(|a| (*a).to_owned()));
        command
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        // Kill before the directory goes (fields drop in order, but be explicit).
        self.server.kill();
    }
}

fn default_properties(port: u16, controller_port: u16, data: &Path) -> Vec<(String, String)> {
    let pairs: [(&str, String); 23] = [
        ("process.roles", "broker,controller".into()),
        ("node.id", "1".into()),
        (
            "controller.quorum.voters",
            format!("1@127.0.0.1:{controller_port}"),
        ),
        (
            "listeners",
            format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"),
        ),
        (
            "advertised.listeners",
            format!("PLAINTEXT://127.0.0.1:{port}"),
        ),
        ("controller.listener.names", "CONTROLLER".into()),
        ("inter.broker.listener.name", "PLAINTEXT".into()),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
        ),
        ("log.dirs", data.to_string_lossy().into_owned()),
        ("num.partitions", "1".into()),
        ("default.replication.factor", "1".into()),
        ("min.insync.replicas", "1".into()),
        ("offsets.topic.replication.factor", "1".into()),
        // Internal topics with few partitions: created at first use, fast on 2 cores.
        ("offsets.topic.num.partitions", "4".into()),
        ("transaction.state.log.replication.factor", "1".into()),
        ("transaction.state.log.min.isr", "1".into()),
        ("transaction.state.log.num.partitions", "4".into()),
        (
            "share.coordinator.state.topic.replication.factor",
            "1".into(),
        ),
        ("share.coordinator.state.topic.min.isr", "1".into()),
        // Consumer groups start at once instead of after 3 s.
        ("group.initial.rebalance.delay.ms", "0".into()),
        // After a hard kill the controller keeps the old broker registration until its session
        // expires (9 s by default); shorter makes restart() faster.
        ("broker.session.timeout.ms", "4000".into()),
        ("broker.heartbeat.interval.ms", "500".into()),
        ("auto.create.topics.enable", "false".into()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn log4j(level: &str, target: &str) -> String {
    format!(
        "# written by mcp-runtime-sentinel-testenv\n\
         log4j.rootLogger={level}, out\n\
         log4j.appender.out=org.apache.log4j.ConsoleAppender\n\
         log4j.appender.out.Target={target}\n\
         log4j.appender.out.layout=org.apache.log4j.PatternLayout\n\
         log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n\n\
         # the full configuration dump of every client and server is noise here\n\
         log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN\n"
    )
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
}

/// The jar directory: the option, `$MCP_KAFKA_LIBS`, or the install script's cache.
fn resolve_libs(option: Option<PathBuf>) -> Result<PathBuf> {
    let (libs, from) = match option {
        Some(libs) => (libs, "KafkaOptions::libs"),
        None => match std::env::var_os("MCP_KAFKA_LIBS").filter(|v| !v.is_empty()) {
            Some(libs) => (PathBuf::from(libs), "$MCP_KAFKA_LIBS"),
            None => (
                cache_root().join("kafka").join(KAFKA_VERSION).join("libs"),
                "the install cache",
            ),
        },
    };
    let has = |prefix: &str| {
        std::fs::read_dir(&libs).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with(prefix) && name.ends_with(".jar")
            })
        })
    };
    if !has("kafka_2.13-") || !has("kafka-tools-") {
        return Err(Error::NotInstalled {
            part: "Kafka",
            detail: format!(
                "no kafka_2.13 and kafka-tools jars in {} ({from})",
                libs.display()
            ),
        });
    }
    Ok(libs)
}

fn resolve_java(option: Option<PathBuf>) -> PathBuf {
    option
        .or_else(|| {
            std::env::var_os("JAVA_HOME")
                .filter(|v| !v.is_empty())
                .map(|home| Path::new(&home).join("bin").join("java"))
                .filter(|java| java.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// A KRaft cluster id: 16 random bytes in URL-safe base64 without padding (22 characters), as
/// `kafka-storage random-uuid` prints (saves a JVM start).
fn random_cluster_id() -> String {
    loop {
        let id = random_base64_16();
        // Kafka's own generator avoids a leading '-' too: it reads like an option.
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn random_base64_16() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 16];
    for half in bytes.chunks_mut(8) {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    let mut out = String::with_capacity(22);
    let mut bits = 0u32;
    let mut nbits = 0;
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(ALPHABET[((bits >> nbits) & 63) as usize]));
        }
    }
    if nbits > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - nbits)) & 63) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_script_pins_the_same_kafka_version() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/sentinel-deps.sh");
        let text = std::fs::read_to_string(&script).unwrap();
        let pin = text
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_VERSION=\""))
            .and_then(|l| l.split('"').next())
            .expect("KAFKA_VERSION=\"...\" in scripts/sentinel-deps.sh");
        assert_eq!(
            pin, KAFKA_VERSION,
            "scripts/sentinel-deps.sh and kafka.rs disagree"
        );
    }

    #[test]
    fn missing_jars_name_the_install_script() {
        let e = KafkaBroker::start_with(KafkaOptions {
            libs: Some("/nonexistent/kafka/libs".into()),
            ..KafkaOptions::default()
        })
        .unwrap_err();
        assert!(matches!(e, Error::NotInstalled { .. }), "{e}");
        assert!(e.to_string().contains("scripts/sentinel-deps.sh"), "{e}");
    }

    #[test]
    fn cluster_ids_are_22_url_safe_characters_and_differ() {
        let a = random_cluster_id();
        let b = random_cluster_id();
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{a}"
        );
        assert_ne!(a, b);
    }
}
