//! Command-line definitions. The doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mcp_runtime_policy::{SideEffect, Trust};

use crate::commands::cluster::{ApplyArgs, GetArgs, ListArgs, NameArgs};
use crate::output::Format;

/// mcp-runtime: publish MCP servers on Kubernetes and govern who may call which tool.
///
/// Offline, on files: scaffold server metadata, generate MCPServer manifests, write access
/// grants and agent sessions, render a server's policy document and explain a decision before
/// anything reaches a cluster. Against a cluster (kubeconfig): apply, list, inspect and delete
/// servers, grants and sessions.
///
/// With the platform API (mcp-platform): log in (`auth`), manage teams (`team`) and their servers,
/// grants and sessions (`server ... --team SLUG`, `access ... --team SLUG`), and let the adapters
/// obtain agent sessions from it.
///
/// Install the platform with `setup`, check it with `status` and `cluster doctor`.
///
/// Exit codes: 0 success; 1 failure (bad input, IO); 2 usage error; 3 `policy explain` denied;
/// 4 not logged in, or the platform refused the credential (log in again); 5 `status`: a
/// component is missing or not ready; `pipeline deploy` and `registry provision`: applied,
/// but not Ready (available) in time.
#[derive(Debug, Parser)]
#[command(
    name = "mcp-runtime",
    version,
    max_term_width = 100,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Describe and generate MCP servers; apply, inspect and delete them on a cluster.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Write access grants and sessions, manage them on a cluster or through the platform.
    ///
    /// Without --team the commands work on the cluster of the kubeconfig (for cluster admins);
    /// with --team SLUG they go through the platform API as the logged-in user (`auth login`),
    /// on the grants and sessions of that team, with the team's rules: members read, owners
    /// change.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Render a server's policy document and explain decisions.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Create token signing keys and mint signed session tokens for the gateway.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Query the decisions recorded by Sentinel (mcp-sentinel's API).
    #[command(subcommand)]
    Sentinel(SentinelCommand),
    /// Run a server from .mcp/servers.yaml locally behind the governing gateway.
    ///
    /// Starts the server (its `dev.command`), renders its policy from the access manifests,
    /// starts mcp-gateway in front of it, prints the endpoint, a token per session and the
    /// dashboard's URL (127.0.0.1 only, no login), and re-renders the policy whenever a manifest
    /// changes. Stop with Ctrl-C.
    ///
    /// Its state (signing key, policy, audit log) lives outside the project, in
    /// $XDG_STATE_HOME/mcp-runtime/dev/NAME-HASH (default ~/.local/state/...), one directory per
    /// project; the key is kept across runs, so printed tokens stay valid.
    Dev(DevArgs),
    /// Reach a governed server from an agent that cannot attach credentials itself.
    ///
    /// The adapters add your session token to every request on the way to mcp-gateway: `stdio`
    /// for agents that launch MCP servers as processes (IDEs, desktop apps), `proxy` for agents
    /// that speak HTTP but cannot set an Authorization header.
    #[command(subcommand)]
    Adapter(AdapterCommand),
    /// Log in to the platform API (mcp-platform), see who you are, log out.
    ///
    /// Credentials are kept per profile in $XDG_CONFIG_HOME/mcp-runtime/profiles.json (default
    /// ~/.config/...; $MCP_RUNTIME_CONFIG_DIR overrides the directory), a file only you can read
    /// (mode 0600). Passwords are never stored; tokens and keys are never printed.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Create teams and manage their members on the platform (as the logged-in user).
    #[command(subcommand)]
    Team(TeamCommand),
    /// Push images to a container registry (distribution API, no Docker needed); check one.
    #[command(subcommand)]
    Registry(crate::commands::registry::RegistryCommand),
    /// Generate the manifests of .mcp/servers.yaml for a registry, deploy them and wait.
    ///
    /// The quickstart: `server build image` -> `registry push` -> `pipeline generate
    /// --registry HOST` -> `pipeline deploy` (see docs/install.md).
    #[command(subcommand)]
    Pipeline(crate::commands::pipeline::PipelineCommand),
    /// Install the platform into the kubeconfig's cluster, or upgrade it (run it again).
    ///
    /// Applies, in order and by server-side apply (field manager mcp-runtime-setup): the
    /// mcpruntime.org CRDs (then waits until they are Established), the namespaces, the
    /// operator with its RBAC, the generated Secrets, Sentinel (embedded, SQLite on a volume)
    /// and the platform API with its PostgreSQL; then waits until every Deployment and
    /// StatefulSet is ready, and on timeout says which is not and why (conditions, pod states,
    /// events). Progress goes to stderr.
    ///
    /// Idempotent: a second run changes nothing and says so; with a newer CLI it upgrades.
    /// Secrets (the platform's signing key and its public half for gateways, the database
    /// password, Sentinel's keys) are generated only when absent and never replaced or printed.
    ///
    /// Exit codes: 0 installed and ready; 1 failure or timeout; 2 usage error.
    Setup(crate::commands::setup::SetupArgs),
    /// Health of the installed components and of every MCPServer.
    ///
    /// The components: the operator, Sentinel, the platform API and its PostgreSQL (ready
    /// replicas, image, version); then every MCPServer of the cluster (phase, Ready, gateway,
    /// policy revision).
    ///
    /// Exit codes: 0 every component is ready; 5 a component is missing or not ready (the
    /// report says why); 1 the cluster cannot be reached.
    Status(crate::commands::status::StatusArgs),
    /// Check a cluster for mcp-runtime.
    #[command(subcommand)]
    Cluster(crate::commands::status::ClusterCommand),
}

/// Which login profile to use.
#[derive(Debug, Args)]
pub struct ProfileArg {
    /// The login profile (see `auth login`); default: the current one.
    #[arg(long, env = "MCP_RUNTIME_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Log in to the platform and keep the credential in a profile, which becomes the current one.
    ///
    /// With a password (asked on the terminal without echo, or read from the first line of
    /// standard input with --password-stdin) the profile keeps a short-lived access token
    /// (15 min by default): log in again when it expires. With --api-key-stdin it keeps the API
    /// key, valid until revoked. Examples:
    ///
    ///   mcp-runtime auth login --platform https://platform.example.com --email me@example.com
    ///
    ///   printf '%s\n' "$PASSWORD" | mcp-runtime auth login --email me@example.com --password-stdin
    ///
    ///   mcp-runtime auth login --profile ci --platform URL --api-key-stdin < key-file
    Login(AuthLoginArgs),
    /// Forget the credential of a profile (its platform and email stay for the next login).
    ///
    /// An access token stays valid on the platform until it expires; an API key until it is
    /// revoked on the platform.
    Logout(AuthLogoutArgs),
    /// Who you are on the platform: profile, platform, user, role, teams, credential expiry.
    ///
    /// Exits 0 when the platform accepts the profile's credential, 4 when there is none, it
    /// expired or the platform refuses it, 1 when the platform cannot be reached.
    Status(AuthStatusArgs),
}

#[derive(Debug, Args)]
pub struct AuthLoginArgs {
    /// The platform API's base URL, e.g. https://platform.example.com; default: the profile's.
    #[arg(long, env = "MCP_RUNTIME_PLATFORM", value_name = "URL")]
    pub platform: Option<String>,
    /// The profile to keep the credential in; default: the current one, else `default`.
    #[arg(long, env = "MCP_RUNTIME_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Your email; asked on the terminal when missing (default: the profile's).
    #[arg(long, value_name = "EMAIL", conflicts_with = "api_key_stdin")]
    pub email: Option<String>,
    /// Read the password from the first line of standard input instead of the terminal.
    #[arg(long)]
    pub password_stdin: bool,
    /// Log in with an API key (mcpk_...) read from standard input instead of a password.
    #[arg(long, conflicts_with = "password_stdin")]
    pub api_key_stdin: bool,
    /// A CA certificate (PEM) to trust for an https platform, besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AuthLogoutArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
}

#[derive(Debug, Args)]
pub struct AuthStatusArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Create a team (platform admins only).
    ///
    /// A platform running with --kube also creates the team's namespace mcp-team-SLUG, where
    /// the team's MCPServers and MCPAccessGrants live.
    Create(TeamCreateArgs),
    /// List the teams you may see (admins: every team) with your role in each.
    List(TeamListArgs),
    /// Show a team and its members.
    Show(TeamShowArgs),
    /// Add, change or remove members (admins and the team's owners).
    #[command(subcommand)]
    Member(TeamMemberCommand),
}

#[derive(Debug, Args)]
pub struct TeamCreateArgs {
    /// The team's slug: 1-40 of a-z, 0-9 and `-`, not starting or ending with `-`.
    pub slug: String,
    /// The name shown to people; default: the slug.
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// The first owner: the email of an existing user.
    #[arg(long, value_name = "EMAIL")]
    pub owner: Option<String>,
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct TeamListArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct TeamShowArgs {
    /// The team's slug.
    pub slug: String,
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Subcommand)]
pub enum TeamMemberCommand {
    /// Add a user to a team, or change their role.
    ///
    /// The last owner cannot be demoted except by an admin.
    Add(TeamMemberAddArgs),
    /// Remove a user from a team.
    ///
    /// The last owner cannot be removed except by an admin.
    Remove(TeamMemberRemoveArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TeamRole {
    Owner,
    Member,
}

impl TeamRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
        }
    }
}

#[derive(Debug, Args)]
pub struct TeamMemberAddArgs {
    /// The team's slug.
    pub slug: String,
    /// The user's email (an existing user).
    pub email: String,
    /// The role in the team.
    #[arg(long, value_enum, default_value = "member")]
    pub role: TeamRole,
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct TeamMemberRemoveArgs {
    /// The team's slug.
    pub slug: String,
    /// The member's email.
    pub email: String,
    #[command(flatten)]
    pub profile: ProfileArg,
}

#[derive(Debug, Subcommand)]
pub enum AdapterCommand {
    /// Be a stdio MCP server that forwards to the gateway with your credential.
    ///
    /// Reads newline-delimited JSON-RPC on stdin, sends each message to the gateway over
    /// Streamable HTTP with `Authorization: Bearer <token>`, and writes every answer and
    /// notification as one line on stdout (logs go to stderr). Handles both protocol eras:
    /// `initialize` sessions (Mcp-Session-Id, ended with DELETE at end of input) and stateless
    /// 2026-07-28 requests. Configure it as the MCP server command of a stdio client, e.g.:
    ///
    ///   mcp-runtime adapter stdio --url http://127.0.0.1:8091/mcp --token-file ~/.mcp/token
    ///
    /// or, with the session obtained from the platform (after `mcp-runtime auth login`):
    ///
    ///   mcp-runtime adapter stdio --url URL --platform-session --server hello --agent claude
    Stdio(AdapterStdioArgs),
    /// Serve a local HTTP endpoint that forwards to the gateway with your credential.
    ///
    /// MCP clients point at http://LISTEN/mcp; every request goes to --url with the
    /// credential instead of any Authorization the client sent, and event streams pass through
    /// as they arrive. Lists and ping are retried on 502/503/504 or connection failures (3
    /// attempts); tools/call never is. GET /healthz answers 200. Requests from web pages
    /// (an Origin header) are refused unless --allow-origin names the origin.
    Proxy(AdapterProxyArgs),
}

/// Where the gateway is and which credential to add.
#[derive(Debug, Args)]
pub struct AdapterConnection {
    /// The gateway's MCP endpoint (what `mcp-runtime dev` prints as "MCP endpoint").
    #[arg(long, env = "MCP_RUNTIME_URL", value_name = "URL")]
    pub url: String,
    /// File holding the session token (from `token mint`, or the one `dev` prints). It is
    /// re-read when it changes, so a re-minted token is used without a restart. Without it (and
    /// without --platform-session), the token is taken from $MCP_RUNTIME_TOKEN (read once).
    #[arg(
        long,
        env = "MCP_RUNTIME_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "platform_session"
    )]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub platform: PlatformSessionArgs,
    /// A CA certificate (PEM) to trust for an https gateway, besides the system's.
    #[arg(long, env = "MCP_RUNTIME_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Largest message accepted from the agent (a line, or a request body), in bytes.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub max_message_bytes: usize,
    /// What is logged on stderr (never tokens or tool arguments).
    #[arg(long, env = "MCP_RUNTIME_LOG", value_enum, default_value = "info")]
    pub log_level: LogLevel,
}

/// Obtaining the session from the platform instead of a token file.
#[derive(Debug, Args)]
pub struct PlatformSessionArgs {
    /// Obtain the session token from the platform (POST /v1/runtime/adapter/sessions) with the
    /// login profile's credential (`mcp-runtime auth login`), and obtain a new one before it
    /// expires. Needs --server and --agent; the adapter does not start when the platform
    /// refuses (e.g. no MCPAccessGrant matches). A password login's access token expires (15 min
    /// by default) and with it the renewals: for an adapter that runs longer, log in with an
    /// API key (`auth login --api-key-stdin`).
    #[arg(long, requires_all = ["server", "agent"], help_heading = "Platform session")]
    pub platform_session: bool,
    /// The MCPServer's name in the team's namespace (mcp-team-SLUG).
    #[arg(
        long,
        value_name = "NAME",
        requires = "platform_session",
        help_heading = "Platform session"
    )]
    pub server: Option<String>,
    /// The agent's id, as the grants name it (e.g. claude-code).
    #[arg(
        long,
        value_name = "ID",
        requires = "platform_session",
        help_heading = "Platform session"
    )]
    pub agent: Option<String>,
    /// The team's slug; default: your only team.
    #[arg(
        long,
        value_name = "SLUG",
        requires = "platform_session",
        help_heading = "Platform session"
    )]
    pub team: Option<String>,
    /// The trust to ask for; the platform grants at most the grant's maxTrust.
    #[arg(
        long,
        value_enum,
        requires = "platform_session",
        help_heading = "Platform session"
    )]
    pub trust: Option<SessionTrust>,
    /// The session's lifetime in seconds (at least 60; the platform may cut it).
    #[arg(long, value_name = "SECONDS", requires = "platform_session", value_parser = clap::value_parser!(u32).range(60..), help_heading = "Platform session")]
    pub ttl: Option<u32>,
    /// The login profile whose credential asks for the session; default: the current one.
    #[arg(
        long,
        env = "MCP_RUNTIME_PROFILE",
        value_name = "NAME",
        help_heading = "Platform session"
    )]
    pub profile: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SessionTrust {
    Low,
    Medium,
    High,
}

impl SessionTrust {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Args)]
pub struct AdapterStdioArgs {
    #[command(flatten)]
    pub connection: AdapterConnection,
}

#[derive(Debug, Args)]
pub struct AdapterProxyArgs {
    #[command(flatten)]
    pub connection: AdapterConnection,
    /// Address to listen on; keep it on loopback: whoever reaches it calls as you.
    #[arg(
        long,
        env = "MCP_RUNTIME_LISTEN_ADDR",
        default_value = "127.0.0.1:8099",
        value_name = "ADDR"
    )]
    pub listen: std::net::SocketAddr,
    /// A web origin (scheme://host[:port]) whose pages may use the proxy; repeat for more.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum SentinelCommand {
    /// List recorded decisions, newest first, one page at a time (--cursor for the next).
    Events(SentinelEventsArgs),
    /// Count recorded decisions by decision and by reason.
    Stats(SentinelStatsArgs),
    /// Usage over a window: totals, top servers, callers, tools, reasons, and a time series.
    Usage(SentinelUsageArgs),
    /// Print the latest decisions, then each new one as it is recorded (until Ctrl-C).
    ///
    /// With `-o json`, one JSON event per line (for scripts and `jq`).
    Tail(SentinelTailArgs),
    /// Whether Sentinel is up, its version, store, retention and how much it holds.
    ///
    /// Exits 0 when Sentinel answers and accepts the key, 1 otherwise.
    Status(SentinelStatusArgs),
}

/// Where Sentinel is and how to authenticate to it.
#[derive(Debug, Args)]
pub struct SentinelConnection {
    /// Base URL of mcp-sentinel.
    #[arg(
        long,
        env = "MCP_SENTINEL_URL",
        default_value = "http://127.0.0.1:8095"
    )]
    pub url: String,
    /// File holding the read API key (sent as x-api-key); default: the key of the Sentinel
    /// `mcp-runtime dev` starts, once it has run.
    #[arg(long, env = "MCP_SENTINEL_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
}

/// Which decisions: every given filter must match.
#[derive(Debug, Args)]
pub struct SentinelFilter {
    /// The emitting component (e.g. hello-gateway, or another producer's name).
    #[arg(long)]
    pub source: Option<String>,
    /// The event type (mcp.request for the gateways' decisions).
    #[arg(long)]
    pub event_type: Option<String>,
    /// A W3C trace id (32 hex digits).
    #[arg(long)]
    pub trace_id: Option<String>,
    /// The MCPServer's name.
    #[arg(long)]
    pub server: Option<String>,
    /// The MCPServer's namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// The caller's human identity.
    #[arg(long)]
    pub human: Option<String>,
    /// The caller's agent identity.
    #[arg(long)]
    pub agent: Option<String>,
    /// The caller's team.
    #[arg(long)]
    pub team: Option<String>,
    /// The agent session presented.
    #[arg(long)]
    pub session: Option<String>,
    /// The tool called.
    #[arg(long)]
    pub tool: Option<String>,
    /// allow or deny.
    #[arg(long)]
    pub decision: Option<String>,
    /// A reason code, e.g. trust_too_low.
    #[arg(long)]
    pub reason: Option<String>,
    /// From this instant (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this instant (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct SentinelEventsArgs {
    #[command(flatten)]
    pub connection: SentinelConnection,
    #[command(flatten)]
    pub filter: SentinelFilter,
    /// Events per page (1-1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// The next page: the cursor printed with the previous one.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct SentinelUsageArgs {
    #[command(flatten)]
    pub connection: SentinelConnection,
    #[command(flatten)]
    pub filter: SentinelFilter,
    /// How far back: 90m, 24h, 7d, … (at most 366d). Not with --since.
    #[arg(long, conflicts_with = "since")]
    pub window: Option<String>,
    /// Width of a point of the time series: hour or day (default: hour up to 2 days).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Rows per ranking (1-100).
    #[arg(long, default_value_t = 10)]
    pub limit: u32,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct SentinelTailArgs {
    #[command(flatten)]
    pub connection: SentinelConnection,
    #[command(flatten)]
    pub filter: SentinelFilter,
    /// How many recent decisions to print first.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub lines: u32,
    /// Seconds between polls for new decisions.
    #[arg(long, default_value_t = 2)]
    pub interval: u64,
    /// Print the recent decisions and exit instead of following.
    #[arg(long)]
    pub no_follow: bool,
    /// Output format: table (a row per decision) or json (one event per line).
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct SentinelStatusArgs {
    #[command(flatten)]
    pub connection: SentinelConnection,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct SentinelStatsArgs {
    #[command(flatten)]
    pub connection: SentinelConnection,
    #[command(flatten)]
    pub filter: SentinelFilter,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an Ed25519 key pair: token.key signs tokens, token.pub goes to gateways.
    ///
    /// Writes DIR/token.key (private, PKCS#8 PEM, created with mode 0600: keep it with the
    /// issuer) and DIR/token.pub (public: the gateways' --token-public-keys-file). Prints the
    /// key id (`kid`) that tokens signed with it carry.
    ///
    /// To rotate: create a new pair, append its token.pub to the gateways' key file, mint with
    /// the new key, and remove the old public key once the tokens it signed have expired.
    Keygen(TokenKeygenArgs),
    /// Mint a session token (JWT, EdDSA) that mcp-gateway verifies with the public key.
    Mint(TokenMintArgs),
}

#[derive(Debug, Args)]
pub struct TokenKeygenArgs {
    /// Directory to write token.key and token.pub to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace an existing key pair.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct TokenMintArgs {
    /// The private signing key (PEM, as `token keygen` writes it).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The server the token is for, as NAMESPACE/NAME.
    #[arg(long)]
    pub server: String,
    /// Human the agent acts for.
    #[arg(long)]
    pub human: Option<String>,
    /// The agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// The team.
    #[arg(long)]
    pub team: Option<String>,
    /// The MCPAgentSession: NAME (in the server's namespace) or NAMESPACE/NAME.
    #[arg(long)]
    pub session: Option<String>,
    /// Lifetime, e.g. 15m, 1h, 1d.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Server to run; optional when servers.yaml declares one.
    pub server: Option<String>,
    /// Directory holding servers.yaml.
    #[arg(long, default_value = ".mcp")]
    pub metadata_dir: PathBuf,
    /// Access manifests (grants and sessions): files or directories; default `access` if present.
    #[arg(long = "filename", short = 'f', value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Port of the gateway's MCP listener.
    #[arg(long, default_value_t = 8091)]
    pub port: u16,
    /// Port of the gateway's admin listener (/metrics, /ready).
    #[arg(long, default_value_t = 9103)]
    pub admin_port: u16,
    /// Port the server listens on (replaces `{port}` in `dev.command`); default `spec.port`.
    #[arg(long)]
    pub server_port: Option<u16>,
    /// Use an already running server at this URL instead of starting `dev.command`.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Port of the Sentinel that records the decisions (queried by `mcp-runtime sentinel`).
    #[arg(long, default_value_t = 8095)]
    pub sentinel_port: u16,
    /// Do not start Sentinel; decisions go to the audit log file only.
    #[arg(long)]
    pub no_sentinel: bool,
    /// Port of the dashboard (on 127.0.0.1 only, without login: the local user is its admin).
    #[arg(long, default_value_t = 8096)]
    pub dashboard_port: u16,
    /// Do not serve the dashboard.
    #[arg(long)]
    pub no_dashboard: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Add a governed server to .mcp/servers.yaml (creating the file with `version: v1`).
    ///
    /// The entry has the gateway enabled, token authentication, an allow-list policy that
    /// denies by default, and required agent sessions. Edit the file to change any of it.
    Init(ServerInitArgs),
    /// Write one MCPServer manifest per server of .mcp/servers.yaml.
    Generate(ServerGenerateArgs),
    /// Validate MCPServer manifests and server-side apply them to the cluster.
    ///
    /// With --team, through the platform API instead (owners of the team and admins): each
    /// server is created in the team's namespace mcp-team-SLUG, or its spec replaced when it
    /// exists; a manifest that names another namespace is refused. Labels and annotations are
    /// not sent. The platform refuses a spec.teamID other than the team's, and
    /// spec.access.allowedNamespaces beyond the team's namespace unless an admin applies it.
    Apply(ServerApplyArgs),
    /// List MCPServers with their phase, gateway, route and policy revision.
    ///
    /// With --team, the servers of the team through the platform API (every member may);
    /// -o json|yaml prints the platform's answer ({"servers": [...]}).
    List(ServerListArgs),
    /// Show one MCPServer (-o yaml|json for the whole object).
    ///
    /// With --team, through the platform API (every member may): what the platform shows of
    /// a server (phase, gateway, tools, conditions), not its whole spec.
    Get(ServerGetArgs),
    /// Show an MCPServer's phase, message and conditions as the operator reports them.
    Status(GetArgs),
    /// Delete an MCPServer; the operator's objects for it are garbage-collected.
    ///
    /// With --team, through the platform API (owners of the team and admins).
    Delete(ServerNameArgs),
    /// Build a server's container image without Docker (`server build image`).
    #[command(subcommand)]
    Build(crate::commands::image::BuildCommand),
}

/// `--team` and `--profile` of the `server` commands.
#[derive(Debug, Args)]
pub struct ServerTeamArgs {
    /// Go through the platform API as the logged-in user (`mcp-runtime auth login`) instead of
    /// the kubeconfig: the servers of team SLUG, in its namespace mcp-team-SLUG. Not with
    /// the kubeconfig options --namespace, --all-namespaces or --force-conflicts.
    #[arg(long, value_name = "SLUG", help_heading = "Through the platform")]
    pub team: Option<String>,
    /// With --team: the login profile; default: the current one.
    #[arg(
        long,
        env = "MCP_RUNTIME_PROFILE",
        value_name = "NAME",
        help_heading = "Through the platform"
    )]
    pub profile: Option<String>,
}

/// `server apply`: the kubeconfig's cluster, or the platform with --team.
#[derive(Debug, Args)]
pub struct ServerApplyArgs {
    #[command(flatten)]
    pub cluster: ApplyArgs,
    #[command(flatten)]
    pub platform: ServerTeamArgs,
}

/// `server list`: the kubeconfig's cluster, or the platform with --team.
#[derive(Debug, Args)]
pub struct ServerListArgs {
    #[command(flatten)]
    pub cluster: ListArgs,
    #[command(flatten)]
    pub platform: ServerTeamArgs,
}

/// `server get`: the kubeconfig's cluster, or the platform with --team.
#[derive(Debug, Args)]
pub struct ServerGetArgs {
    #[command(flatten)]
    pub cluster: GetArgs,
    #[command(flatten)]
    pub platform: ServerTeamArgs,
}

/// `server delete`: the kubeconfig's cluster, or the platform with --team.
#[derive(Debug, Args)]
pub struct ServerNameArgs {
    #[command(flatten)]
    pub cluster: NameArgs,
    #[command(flatten)]
    pub platform: ServerTeamArgs,
}

#[derive(Debug, Args)]
pub struct ServerInitArgs {
    /// Server name (a DNS label; also the default route `/{name}/mcp`).
    pub name: String,
    /// Container image; default: the server name.
    #[arg(long)]
    pub image: Option<String>,
    /// Port the MCP server listens on inside its container.
    #[arg(long, default_value_t = 8088)]
    pub port: i32,
    /// Namespace the server is deployed to; default: mcp-servers.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// A tool as NAME[:TRUST[:SIDE_EFFECT]] (default low:read); repeat for more tools.
    #[arg(long = "tool", value_name = "NAME[:TRUST[:SIDE_EFFECT]]")]
    pub tools: Vec<String>,
    /// Directory holding servers.yaml.
    #[arg(long, default_value = ".mcp")]
    pub metadata_dir: PathBuf,
    /// Replace an existing entry of the same name.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ServerGenerateArgs {
    /// Directory holding servers.yaml.
    #[arg(long, default_value = ".mcp")]
    pub metadata_dir: PathBuf,
    /// Directory the manifests are written to, one `<name>.yaml` per server.
    #[arg(long, short = 'o', default_value = "manifests")]
    pub output: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Write MCPAccessGrant manifests; manage grants on a cluster or through the platform.
    ///
    /// Apply, list, disable, enable and delete grants: on the kubeconfig's cluster, or with
    /// --team SLUG through the platform API as the logged-in user.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Write MCPAgentSession manifests; manage sessions on a cluster or through the platform.
    ///
    /// Apply, list, revoke, unrevoke and delete sessions: on the kubeconfig's cluster, or (all
    /// but apply) with --team SLUG through the platform API as the logged-in user.
    #[command(subcommand)]
    Session(SessionCommand),
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Write a grant: who may call which tools of a server, up to what trust.
    ///
    /// Without --tool-rule the grant covers every tool of the server whose side effect it
    /// allows. With rules it covers only the tools named; a deny rule always wins.
    Init(GrantInitArgs),
    /// Validate MCPAccessGrant manifests and server-side apply them to the cluster.
    ///
    /// With --team, through the platform API instead (owners of the team and admins): each grant
    /// is created in the team's namespace mcp-team-SLUG; a manifest that names another namespace
    /// is refused. A grant that exists with the same spec is left unchanged, one that differs
    /// only in spec.disabled is disabled or enabled; the platform does not edit grants
    /// otherwise: delete it and apply again. Labels and annotations are not sent.
    Apply(GrantApplyArgs),
    /// List grants with their server, subject, trust, whether disabled, and phase.
    ///
    /// With --team, the grants of the team through the platform API (every member may);
    /// -o json|yaml prints the platform's answer ({"grants": [...]}).
    List(AccessListArgs),
    /// Delete a grant; the policies of its server are re-rendered without it.
    ///
    /// With --team, through the platform API (owners of the team and admins).
    Delete(AccessNameArgs),
    /// Disable a grant (sets spec.disabled): it stops counting from the next policy on.
    ///
    /// The platform issues no session through a disabled grant. With --team, through the
    /// platform API (owners of the team and admins).
    Disable(AccessNameArgs),
    /// Enable a disabled grant again (clears spec.disabled).
    ///
    /// With --team, through the platform API (owners of the team and admins).
    Enable(AccessNameArgs),
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Write an agent session: the trust a human consented to for an agent, until it expires.
    Init(SessionInitArgs),
    /// Validate MCPAgentSession manifests and server-side apply them to the cluster.
    ///
    /// On the kubeconfig's cluster only: through the platform, sessions are issued to the
    /// adapters (`mcp-runtime adapter stdio|proxy --platform-session`), not applied.
    Apply(ApplyArgs),
    /// List sessions with their server, subject, trust, whether revoked, expiry and phase.
    ///
    /// With --team, the sessions of the team through the platform API: owners and admins see
    /// every session, members their own; -o json|yaml prints the platform's answer
    /// ({"sessions": [...]}).
    List(AccessListArgs),
    /// Revoke a session (sets spec.revoked): the gateway refuses it from the next policy on.
    ///
    /// With --team, through the platform API (the session's own human, owners of the team,
    /// admins). The platform never revives a revoked session: unrevoke it, or delete it so that
    /// the next request of the adapter gets a fresh one.
    Revoke(AccessNameArgs),
    /// Undo a revocation (clears spec.revoked).
    ///
    /// With --team, through the platform API (owners of the team and admins: a member may end
    /// their session, not undo what an owner ended).
    Unrevoke(AccessNameArgs),
    /// Delete a session; the policies of its server are re-rendered without it.
    ///
    /// With --team, through the platform API (owners of the team and admins).
    Delete(AccessNameArgs),
}

/// `access grant apply`: the kubeconfig's cluster, or the platform with --team.
#[derive(Debug, Args)]
pub struct GrantApplyArgs {
    #[command(flatten)]
    pub cluster: ApplyArgs,
    /// Go through the platform API as the logged-in user (`mcp-runtime auth login`) instead of
    /// the kubeconfig: the objects of team SLUG, in its namespace mcp-team-SLUG. Not with
    /// --namespace or --force-conflicts.
    #[arg(long, value_name = "SLUG", help_heading = "Through the platform")]
    pub team: Option<String>,
    /// With --team: the login profile; default: the current one.
    #[arg(
        long,
        env = "MCP_RUNTIME_PROFILE",
        value_name = "NAME",
        help_heading = "Through the platform"
    )]
    pub profile: Option<String>,
}

/// `access grant|session list`: the kubeconfig's cluster, or the platform with --team.
#[derive(Debug, Args)]
pub struct AccessListArgs {
    #[command(flatten)]
    pub cluster: ListArgs,
    /// Go through the platform API as the logged-in user (`mcp-runtime auth login`) instead of
    /// the kubeconfig: the objects of team SLUG, in its namespace mcp-team-SLUG. Not with
    /// --namespace or --all-namespaces.
    #[arg(long, value_name = "SLUG", help_heading = "Through the platform")]
    pub team: Option<String>,
    /// With --team: the login profile; default: the current one.
    #[arg(
        long,
        env = "MCP_RUNTIME_PROFILE",
        value_name = "NAME",
        help_heading = "Through the platform"
    )]
    pub profile: Option<String>,
}

/// `access grant delete|disable|enable`, `access session revoke|unrevoke|delete`.
#[derive(Debug, Args)]
pub struct AccessNameArgs {
    #[command(flatten)]
    pub cluster: NameArgs,
    /// Go through the platform API as the logged-in user (`mcp-runtime auth login`) instead of
    /// the kubeconfig: the objects of team SLUG, in its namespace mcp-team-SLUG. Not with
    /// --namespace.
    #[arg(long, value_name = "SLUG", help_heading = "Through the platform")]
    pub team: Option<String>,
    /// With --team: the login profile; default: the current one.
    #[arg(
        long,
        env = "MCP_RUNTIME_PROFILE",
        value_name = "NAME",
        help_heading = "Through the platform"
    )]
    pub profile: Option<String>,
}

/// Who a grant or session is for; at least one is required.
#[derive(Debug, Args)]
pub struct SubjectArgs {
    /// Human the grant or session is for.
    #[arg(long)]
    pub human_id: Option<String>,
    /// Agent the grant or session is for.
    #[arg(long)]
    pub agent_id: Option<String>,
    /// Team the grant or session is for.
    #[arg(long)]
    pub team_id: Option<String>,
}

/// Where the object lives and which server it targets.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Name of the MCPServer.
    #[arg(long)]
    pub server: String,
    /// Namespace of the MCPServer, when it differs from the object's.
    #[arg(long)]
    pub server_namespace: Option<String>,
    /// Namespace of the object.
    #[arg(long, short = 'n', default_value = "mcp-servers")]
    pub namespace: String,
    /// File to write; `-` for standard output.
    #[arg(long, short = 'o', default_value = "-")]
    pub output: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct GrantInitArgs {
    /// Grant name.
    pub name: String,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub subject: SubjectArgs,
    /// Highest trust the grant confers.
    #[arg(long, default_value = "low", value_parser = parse_trust)]
    pub trust: Trust,
    /// Side effect the grant allows (read, write, destructive); repeat for more.
    #[arg(long = "side-effect", default_values = ["read"], value_parser = parse_side_effect)]
    pub side_effects: Vec<SideEffect>,
    /// A rule as NAME:allow|deny[:TRUST], NAME a tool, `prompt:NAME` or `resource:URI` (a URI
    /// ending in `*` is a prefix); repeat for more.
    #[arg(long = "tool-rule", value_name = "NAME:allow|deny[:TRUST]")]
    pub tool_rules: Vec<String>,
    /// Write the grant disabled.
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Debug, Args)]
pub struct SessionInitArgs {
    /// Session name (what the agent presents as its session id).
    pub name: String,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub subject: SubjectArgs,
    /// Trust the human consents to; it caps the grant's maximum.
    #[arg(long, default_value = "low", value_parser = parse_trust)]
    pub trust: Trust,
    /// Lifetime from now, e.g. 90m, 24h, 7d.
    #[arg(long, default_value = "24h", conflicts_with = "expires_at")]
    pub expires_in: String,
    /// Absolute expiry (RFC 3339), e.g. 2026-12-31T23:59:59Z.
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Write the session already revoked.
    #[arg(long)]
    pub revoked: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Render the policy document of a server from manifests.
    ///
    /// Reads MCPServer, MCPAccessGrant and MCPAgentSession manifests, keeps the grants and
    /// sessions that target the server, and prints the sealed document the gateway enforces.
    Render(RenderArgs),
    /// Explain how a tool call, prompt fetch or resource read would be decided, step by step.
    ///
    /// Exits 0 when the call would be allowed and 3 when it would be denied.
    Explain(ExplainArgs),
}

/// Where the policy comes from.
#[derive(Debug, Args)]
pub struct PolicySourceArgs {
    /// Manifest files or directories (searched for *.yaml, *.yml); repeat for more.
    #[arg(
        long = "filename",
        short = 'f',
        value_name = "PATH",
        required_unless_present = "policy"
    )]
    pub files: Vec<PathBuf>,
    /// A rendered policy document (JSON) instead of manifests.
    #[arg(long, conflicts_with = "files")]
    pub policy: Option<PathBuf>,
    /// The server, as NAME or NAMESPACE/NAME; optional when the manifests hold one server.
    #[arg(long)]
    pub server: Option<String>,
    /// Namespace for manifests that name none.
    #[arg(long, short = 'n', default_value = "mcp-servers")]
    pub namespace: String,
    /// Cluster name recorded in the document.
    #[arg(long)]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub source: PolicySourceArgs,
    /// Output format of the document.
    #[arg(long, short = 'o', value_enum, default_value = "json")]
    pub output: RenderFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RenderFormat {
    Json,
    Yaml,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["tool", "prompt", "resource"]))]
pub struct ExplainArgs {
    #[command(flatten)]
    pub source: PolicySourceArgs,
    /// Tool being called (`tools/call`).
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,
    /// Prompt being fetched (`prompts/get`).
    #[arg(long, value_name = "NAME")]
    pub prompt: Option<String>,
    /// Resource being read (`resources/read`).
    #[arg(long, value_name = "URI")]
    pub resource: Option<String>,
    /// Calling human.
    #[arg(long)]
    pub human: Option<String>,
    /// Calling agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Calling team.
    #[arg(long)]
    pub team: Option<String>,
    /// Session the agent presents: NAME (in the server's namespace) or NAMESPACE/NAME.
    #[arg(long)]
    pub session: Option<String>,
    /// Evaluate at this instant (RFC 3339) instead of now.
    #[arg(long)]
    pub at: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

fn parse_trust(s: &str) -> Result<Trust, String> {
    s.parse()
        .map_err(|e: mcp_runtime_policy::UnknownValue| e.to_string())
}

fn parse_side_effect(s: &str) -> Result<SideEffect, String> {
    s.parse()
        .map_err(|e: mcp_runtime_policy::UnknownValue| e.to_string())
}
