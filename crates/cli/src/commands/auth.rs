//! `mcp-runtime auth login|logout|status`, and the logged-in session other platform commands
//! (`team`, the adapters' platform session) use.

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::{AuthLoginArgs, AuthLogoutArgs, AuthStatusArgs};
use crate::error::{CliError, Result};
use crate::output::{Format, write_data, write_stdout};
use crate::platform::{PlatformAuth, PlatformClient, PlatformError};
use crate::profiles::{
    self, DEFAULT_PROFILE, Profile, ProfileFile, StoredCredential, api_key_prefix,
};

/// Passwords and keys longer than this are not typed or pasted by a person.
const MAX_SECRET_BYTES: usize = 4096;

fn login_hint(name: &str) -> String {
    format!("log in again: mcp-runtime auth login --profile {name}")
}

/// A profile with a usable credential, and a client of its platform.
pub struct LoggedIn {
    pub name: String,
    pub profile: Profile,
    pub auth: PlatformAuth,
}

/// The profile named (or the current one) with its credential; refuses with a hint when there
/// is none or the access token has expired.
pub fn logged_in(given: Option<&str>) -> Result<LoggedIn> {
    if let Some(name) = given {
        profiles::check_name(name)?;
    }
    let (file, path) = ProfileFile::load()?;
    let Some(name) = file.resolve_name(given) else {
        return Err(CliError::not_authenticated(
            format!("not logged in (no current profile in {})", path.display()),
            "log in: mcp-runtime auth login --platform URL --email EMAIL",
        ));
    };
    let Some(profile) = file.profiles.get(&name).cloned() else {
        return Err(CliError::not_authenticated(
            format!(
                "not logged in: no profile `{name}` in {}{}",
                path.display(),
                known(&file)
            ),
            format!("log in: mcp-runtime auth login --profile {name} --platform URL"),
        ));
    };
    let auth = match &profile.credential {
        None => {
            return Err(CliError::not_authenticated(
                format!("profile `{name}` is logged out"),
                login_hint(&name),
            ));
        }
        Some(StoredCredential::AccessToken { expires_at, .. })
            if *expires_at <= Timestamp::now() =>
        {
            return Err(CliError::not_authenticated(
                format!(
                    "the access token of profile `{name}` expired at {}",
                    expires_at.round(jiff::Unit::Second).unwrap_or(*expires_at)
                ),
                login_hint(&name),
            ));
        }
        Some(StoredCredential::AccessToken { token, .. }) => PlatformAuth::Bearer(token.clone()),
        Some(StoredCredential::ApiKey { key }) => PlatformAuth::ApiKey(key.clone()),
    };
    Ok(LoggedIn {
        name,
        profile,
        auth,
    })
}

fn known(file: &ProfileFile) -> String {
    if file.profiles.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
        format!(" (profiles: {})", names.join(", "))
    }
}

impl LoggedIn {
    /// A client for this profile; call inside a tokio runtime.
    pub fn client(&self) -> Result<PlatformClient> {
        PlatformClient::new(
            &self.profile.platform,
            self.profile.ca_file.clone(),
            self.auth.clone(),
        )
        .map_err(|e| {
            CliError::hint(
                format!("profile `{}`: {e}", self.name),
                login_hint(&self.name),
            )
        })
    }

    /// A platform error as the CLI reports it for this profile.
    pub fn error(&self, e: PlatformError) -> CliError {
        platform_error(e, &self.name)
    }
}

/// Turns a platform failure into a message with what to do next.
pub fn platform_error(e: PlatformError, profile: &str) -> CliError {
    match &e {
        _ if e.is_unauthenticated() => CliError::not_authenticated(
            format!(
                "the platform refused the credential of profile `{profile}`: {}",
                e.message()
            ),
            login_hint(profile),
        ),
        PlatformError::Refused {
            status,
            code,
            message,
        } => {
            let code = if code.is_empty() {
                String::new()
            } else {
                format!(", {code}")
            };
            CliError::Invalid(format!(
                "the platform refused: {message} (HTTP {}{code})",
                status.as_u16()
            ))
        }
        PlatformError::Unreachable { .. } => CliError::hint(
            e.to_string(),
            format!(
                "check that mcp-platform runs there, or log in with another --platform: mcp-runtime auth login --profile {profile} --platform URL"
            ),
        ),
        PlatformError::BadAnswer { .. } => CliError::Invalid(e.to_string()),
    }
}

/// Runs `work` on a small runtime of its own (the commands are otherwise synchronous).
pub fn block_on<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot start the async runtime: {e}")))?
        .block_on(work)
}

pub fn login(args: AuthLoginArgs) -> Result<()> {
    let (mut file, path) = ProfileFile::load()?;
    let name = args
        .profile
        .clone()
        .or_else(|| file.current.clone())
        .unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
    profiles::check_name(&name)?;
    let existing = file.profiles.get(&name);
    let platform = match args.platform.as_deref().or(existing.map(|p| p.platform.as_str())) {
        Some(url) => crate::platform::check_url(url).map_err(|e| {
            CliError::hint(
                format!("--platform: {e}"),
                "give the platform API's base URL, e.g. https://platform.example.com or http://127.0.0.1:8090",
            )
        })?,
        None => {
            return Err(CliError::hint(
                format!("which platform? profile `{name}` does not exist yet"),
                "give --platform URL (the platform API's base URL) or $MCP_RUNTIME_PLATFORM",
            ));
        }
    };
    let ca_file = args
        .ca_file
        .clone()
        .or_else(|| existing.and_then(|p| p.ca_file.clone()));
    let existing_email = existing.and_then(|p| p.email.clone());

    let (email, credential) = if args.api_key_stdin {
        let key = read_stdin_secret("API key")?;
        if !key.starts_with("mcpk_") {
            return Err(CliError::hint(
                "--api-key-stdin: standard input does not hold a platform API key (they start with `mcpk_`)",
                "pipe the key the platform showed once at creation (POST /v1/api-keys)",
            ));
        }
        let me = block_on(async {
            let client = PlatformClient::new(
                &platform,
                ca_file.clone(),
                PlatformAuth::ApiKey(key.clone()),
            )
            .map_err(CliError::Invalid)?;
            client
                .get("/v1/auth/me")
                .await
                .map_err(|e| login_error(e, &name))
        })?;
        let email = me["user"]["email"].as_str().map(str::to_owned);
        (email, StoredCredential::ApiKey { key })
    } else {
        let email = match args.email.clone().or(existing_email) {
            Some(email) => email,
            None => ask_email()?,
        };
        let password = if args.password_stdin {
            read_stdin_secret("password")?
        } else {
            ask_password(&email)?
        };
        let answer = block_on(async {
            let client = PlatformClient::new(&platform, ca_file.clone(), PlatformAuth::None)
                .map_err(CliError::Invalid)?;
            client
                .post(
                    "/v1/auth/login",
                    &json!({"email": email, "password": password}),
                )
                .await
                .map_err(|e| login_error(e, &name))
        })?;
        let (Some(token), Some(expires_in)) = (
            answer["access_token"].as_str(),
            answer["expires_in"].as_i64(),
        ) else {
            return Err(CliError::Invalid(format!(
                "unexpected login answer from {platform}: no access_token or expires_in"
            )));
        };
        let email = answer["user"]["email"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or(email);
        let credential = StoredCredential::AccessToken {
            token: token.to_owned(),
            expires_at: Timestamp::now() + SignedDuration::from_secs(expires_in),
        };
        (Some(email), credential)
    };

    file.profiles.insert(
        name.clone(),
        Profile {
            platform: platform.clone(),
            email: email.clone(),
            ca_file,
            credential: Some(credential.clone()),
        },
    );
    file.current = Some(name.clone());
    file.save(&path)?;
    let what = match &credential {
        StoredCredential::AccessToken { expires_at, .. } => format!(
            "access token until {}",
            expires_at.round(jiff::Unit::Second).unwrap_or(*expires_at)
        ),
        StoredCredential::ApiKey { key } => format!("API key {}", api_key_prefix(key)),
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "logged in to {platform} as {} (profile `{name}`, {what})",
        email.as_deref().unwrap_or("?")
    );
    Ok(())
}

/// A refused login says so plainly (the platform does not tell a wrong email from a wrong
/// password, on purpose).
fn login_error(e: PlatformError, profile: &str) -> CliError {
    match &e {
        PlatformError::Refused {
            status, message, ..
        } if status.as_u16() == 401 => CliError::not_authenticated(
            format!("login refused: {message}"),
            "check the email and the password (or key); after repeated failures the platform locks the login out for a while",
        ),
        PlatformError::Refused {
            status, message, ..
        } if status.as_u16() == 429 => CliError::not_authenticated(
            format!("login refused: {message}"),
            "too many failed logins from here: wait, then try again",
        ),
        _ => platform_error(e, profile),
    }
}

/// The first line of standard input, without its line end; never echoed or logged.
fn read_stdin_secret(what: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_SECRET_BYTES as u64 + 1)
        .read_line(&mut line)
        .map_err(|source| CliError::Read {
            path: "<stdin>".into(),
            source,
        })?;
    if line.len() > MAX_SECRET_BYTES {
        return Err(CliError::Invalid(format!(
            "the {what} on standard input is longer than {MAX_SECRET_BYTES} bytes"
        )));
    }
    let secret = line.trim_end_matches(['\n', '\r']).to_owned();
    if secret.is_empty() {
        return Err(CliError::hint(
            format!("no {what} on standard input"),
            format!("pipe the {what} as the first line, e.g. from a file or a password manager"),
        ));
    }
    Ok(secret)
}

/// The terminal, for prompts that must not go through stdin or stdout.
fn tty() -> Result<std::fs::File> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::hint(
            "standard input is not a terminal, so there is nobody to ask",
            "give --email EMAIL and --password-stdin (the password as the first line of standard input), or --api-key-stdin",
        ));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|source| CliError::Read {
            path: "/dev/tty".into(),
            source,
        })
}

fn ask_email() -> Result<String> {
    let mut tty = tty()?;
    let _ = write!(tty, "Email: ");
    let mut line = String::new();
    std::io::BufReader::new(&tty)
        .read_line(&mut line)
        .map_err(|source| CliError::Read {
            path: "/dev/tty".into(),
            source,
        })?;
    let email = line.trim().to_owned();
    if email.is_empty() {
        return Err(CliError::Invalid("no email given".into()));
    }
    Ok(email)
}

/// Asks on the terminal with echo turned off (through `stty`, restored afterwards).
fn ask_password(email: &str) -> Result<String> {
    let mut tty = tty()?;
    let _ = write!(tty, "Password for {email}: ");
    let _ = tty.flush();
    let stty = |arg: &str| -> bool {
        std::fs::File::open("/dev/tty")
            .ok()
            .and_then(|t| {
                std::process::Command::new("stty")
                    .arg(arg)
                    .stdin(t)
                    .status()
                    .ok()
            })
            .is_some_and(|s| s.success())
    };
    if !stty("-echo") {
        return Err(CliError::hint(
            "cannot turn off the terminal's echo (`stty -echo` failed), so the password is not asked for",
            "pipe it instead: --password-stdin",
        ));
    }
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty)
        .take(MAX_SECRET_BYTES as u64 + 1)
        .read_line(&mut line);
    stty("echo");
    let _ = writeln!(tty);
    read.map_err(|source| CliError::Read {
        path: "/dev/tty".into(),
        source,
    })?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(CliError::Invalid("no password given".into()));
    }
    Ok(password)
}

pub fn logout(args: AuthLogoutArgs) -> Result<()> {
    let (mut file, path) = ProfileFile::load()?;
    let Some(name) = file.resolve_name(args.profile.profile.as_deref()) else {
        return Err(CliError::Invalid(format!(
            "no profile to log out of (no current profile in {})",
            path.display()
        )));
    };
    profiles::check_name(&name)?;
    let known = known(&file);
    let Some(profile) = file.profiles.get_mut(&name) else {
        return Err(CliError::Invalid(format!(
            "no profile `{name}` in {}{known}",
            path.display()
        )));
    };
    let mut err = std::io::stderr().lock();
    match profile.credential.take() {
        None => {
            let _ = writeln!(err, "profile `{name}` was not logged in");
            return Ok(());
        }
        Some(StoredCredential::AccessToken { .. }) => {
            let _ = writeln!(
                err,
                "logged out of profile `{name}` (the access token was forgotten; it stays valid on the platform until it expires)"
            );
        }
        Some(StoredCredential::ApiKey { key }) => {
            let _ = writeln!(
                err,
                "logged out of profile `{name}` (API key {} forgotten; it stays valid until revoked: DELETE /v1/api-keys/ID)",
                api_key_prefix(&key)
            );
        }
    }
    file.save(&path)
}

#[derive(Serialize)]
struct Status {
    profile: String,
    platform: String,
    user: Value,
    role: Value,
    auth: &'static str,
    /// For an API key, its public prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    teams: Vec<Value>,
}

pub fn status(args: AuthStatusArgs) -> Result<()> {
    let session = logged_in(args.profile.profile.as_deref())?;
    let me = block_on(async {
        let client = session.client()?;
        client
            .get("/v1/auth/me")
            .await
            .map_err(|e| session.error(e))
    })?;
    let (auth, api_key, expires_at) = match &session.profile.credential {
        Some(StoredCredential::AccessToken { expires_at, .. }) => (
            "access_token",
            None,
            Some(
                expires_at
                    .round(jiff::Unit::Second)
                    .unwrap_or(*expires_at)
                    .to_string(),
            ),
        ),
        Some(StoredCredential::ApiKey { key }) => ("api_key", Some(api_key_prefix(key)), None),
        None => unreachable!("logged_in checked the credential"),
    };
    let teams: Vec<Value> = me["teams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|t| json!({"slug": t["slug"], "role": t["role"]}))
        .collect();
    let status = Status {
        profile: session.name.clone(),
        platform: session.profile.platform.clone(),
        user: me["user"]["email"].clone(),
        role: me["user"]["role"].clone(),
        auth,
        api_key,
        expires_at,
        teams,
    };
    let mut out = std::io::stdout().lock();
    if args.output != Format::Table {
        return write_data(&mut out, args.output, &status);
    }
    let str_of = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let credential = match (&status.api_key, &status.expires_at) {
        (Some(prefix), _) => format!("API key {prefix}"),
        (None, Some(at)) => {
            let left = at
                .parse::<Timestamp>()
                .map(|t| t.duration_since(Timestamp::now()).as_secs() / 60)
                .unwrap_or(0);
            format!("access token, expires {at} (in {left} min)")
        }
        (None, None) => "-".to_owned(),
    };
    let teams: Vec<String> = status
        .teams
        .iter()
        .map(|t| match t["role"].as_str() {
            Some(role) => format!("{} ({role})", str_of(&t["slug"])),
            None => str_of(&t["slug"]),
        })
        .collect();
    let rows = [
        ("Profile", status.profile.clone()),
        ("Platform", status.platform.clone()),
        (
            "User",
            format!("{} ({})", str_of(&status.user), str_of(&status.role)),
        ),
        ("Credential", credential),
        (
            "Teams",
            if teams.is_empty() {
                "-".to_owned()
            } else {
                teams.join(", ")
            },
        ),
    ];
    let text: String = rows
        .iter()
        .map(|(k, v)| format!("{:<12}{v}\n", format!("{k}:")))
        .collect();
    write_stdout(&mut out, &text)
}
