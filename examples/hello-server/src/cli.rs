//! Command line and environment. Three options do not justify a parser dependency.

use std::net::{Ipv4Addr, SocketAddr};

pub const USAGE: &str = "\
Usage: hello-mcp-server [--listen ADDR] [--path PATH] [--allowed-host HOST]... [--json-response]

Example MCP server over Streamable HTTP (both protocol eras on one endpoint).

Options:
  --listen ADDR        address to listen on [default: 127.0.0.1:8088, or 127.0.0.1:$PORT]
  --path PATH          MCP endpoint path [env: MCP_PATH] [default: /mcp]
  --allowed-host HOST  accept this Host header (name or name:port); repeatable; `*` accepts any
                       [env: MCP_ALLOWED_HOSTS, comma-separated]
                       [default: localhost, 127.0.0.1, ::1]
  --json-response      answer stateless (2026-07-28) requests with application/json when no
                       notification precedes the reply (SSE otherwise) [env: MCP_JSON_RESPONSE=1]
  -h, --help           print this help
  -V, --version        print the version

Logs go to stderr, one line per request (method only). RUST_LOG overrides the levels.
";

const DEFAULT_PORT: u16 = 8088;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// rmcp's default: loopback names only (DNS-rebinding protection).
    LoopbackDefault,
    /// No Host check at all.
    Any,
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub listen: SocketAddr,
    pub path: String,
    pub allowed_hosts: AllowedHosts,
    pub json_response: bool,
}

#[derive(Debug)]
pub enum Command {
    Run(Options),
    Help(String),
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    parse_with_env(args, |name| std::env::var(name).ok())
}

fn parse_with_env(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut listen = None;
    let mut path = None;
    let mut hosts: Vec<String> = Vec::new();
    let mut json_response = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help(USAGE.to_owned())),
            "-V" | "--version" => {
                return Ok(Command::Help(format!(
                    "hello-mcp-server {}\n",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            "--listen" => listen = Some(value("--listen")?),
            "--path" => path = Some(value("--path")?),
            "--allowed-host" => hosts.push(value("--allowed-host")?),
            "--json-response" if inline.is_none() => json_response = true,
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }

    let listen = match listen {
        Some(text) => text
            .parse::<SocketAddr>()
            .map_err(|_| format!("--listen `{text}` is not an address like 127.0.0.1:8088"))?,
        None => {
            let port = match env("PORT") {
                Some(text) => text
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| format!("PORT `{text}` is not a port number"))?,
                None => DEFAULT_PORT,
            };
            SocketAddr::from((Ipv4Addr::LOCALHOST, port))
        }
    };

    let path = path
        .or_else(|| env("MCP_PATH"))
        .unwrap_or_else(|| "/mcp".to_owned());
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err(format!("--path `{path}` must be a path starting with `/`"));
    }

    if hosts.is_empty()
        && let Some(list) = env("MCP_ALLOWED_HOSTS")
    {
        hosts = list
            .split(',')
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let allowed_hosts = if hosts.is_empty() {
        AllowedHosts::LoopbackDefault
    } else if hosts.iter().any(|host| host == "*") {
        AllowedHosts::Any
    } else {
        AllowedHosts::List(hosts)
    };

    let json_response = json_response
        || env("MCP_JSON_RESPONSE").is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));

    Ok(Command::Run(Options {
        listen,
        path,
        allowed_hosts,
        json_response,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Options, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let command = parse_with_env(args.iter().map(|a| (*a).to_owned()), |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })?;
        match command {
            Command::Run(options) => Ok(options),
            Command::Help(_) => Err("help".to_owned()),
        }
    }

    #[test]
    fn defaults() {
        let options = run(&[], &[]).unwrap();
        assert_eq!(options.listen, "127.0.0.1:8088".parse().unwrap());
        assert_eq!(options.path, "/mcp");
        assert_eq!(options.allowed_hosts, AllowedHosts::LoopbackDefault);
        assert!(!options.json_response);
        assert!(run(&["--json-response"], &[]).unwrap().json_response);
        assert!(
            run(&[], &[("MCP_JSON_RESPONSE", "1")])
                .unwrap()
                .json_response
        );
    }

    #[test]
    fn env_port_and_path() {
        let options = run(&[], &[("PORT", "9001"), ("MCP_PATH", "/x")]).unwrap();
        assert_eq!(options.listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(options.path, "/x");
    }

    #[test]
    fn flags_win_over_env() {
        let options = run(
            &["--listen", "0.0.0.0:7000", "--path=/api/mcp"],
            &[("PORT", "9001"), ("MCP_PATH", "/x")],
        )
        .unwrap();
        assert_eq!(options.listen, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(options.path, "/api/mcp");
    }

    #[test]
    fn allowed_hosts() {
        let options = run(&["--allowed-host", "hello.svc", "--allowed-host=a:1"], &[]).unwrap();
        assert_eq!(
            options.allowed_hosts,
            AllowedHosts::List(vec!["hello.svc".into(), "a:1".into()])
        );
        let options = run(&[], &[("MCP_ALLOWED_HOSTS", "*")]).unwrap();
        assert_eq!(options.allowed_hosts, AllowedHosts::Any);
    }

    #[test]
    fn errors() {
        assert!(run(&["--listen", "nope"], &[]).is_err());
        assert!(run(&["--path", "mcp"], &[]).is_err());
        assert!(run(&["--listen"], &[]).is_err());
        assert!(run(&["--bogus"], &[]).is_err());
        assert!(run(&[], &[("PORT", "x")]).is_err());
        assert_eq!(run(&["--help"], &[]), Err("help".to_owned()));
    }
}
