//! Login profiles: which platform, who, and the credential, in one file only its owner reads.
//!
//! `$MCP_RUNTIME_CONFIG_DIR/profiles.json`, else `$XDG_CONFIG_HOME/mcp-runtime/profiles.json`,
//! else `~/.config/mcp-runtime/profiles.json`. The directory is kept at mode 0700 and the file
//! is written with mode 0600 through a temporary file renamed over it, so a crash never leaves
//! half a file and the credential is never readable by others, not even for a moment. A file
//! that others can read is refused rather than used.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// Overrides the configuration directory (tests, several identities side by side).
pub const CONFIG_DIR_ENV: &str = "MCP_RUNTIME_CONFIG_DIR";
const FILE_NAME: &str = "profiles.json";
/// The profile `auth login` creates when none is named and none is current.
pub const DEFAULT_PROFILE: &str = "default";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    /// The profile used when `--profile` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The platform API's base URL, e.g. `https://platform.example.com`.
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// An extra CA certificate to trust for an https platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Absent after `auth logout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<StoredCredential>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoredCredential {
    /// From a password login: valid until `expires_at`.
    AccessToken {
        token: String,
        expires_at: Timestamp,
    },
    /// From `--api-key-stdin`: valid until revoked on the platform.
    ApiKey { key: String },
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AccessToken { expires_at, .. } => f
                .debug_struct("AccessToken")
                .field("expires_at", expires_at)
                .finish_non_exhaustive(),
            Self::ApiKey { key } => f
                .debug_struct("ApiKey")
                .field("prefix", &api_key_prefix(key))
                .finish_non_exhaustive(),
        }
    }
}

/// The public part of an API key (`mcpk_<8 hex>`, what the platform lists), never the secret.
pub fn api_key_prefix(key: &str) -> String {
    key.split('_').take(2).collect::<Vec<_>>().join("_")
}

/// Where profiles live.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("mcp-runtime"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config/mcp-runtime")),
        None => Err(CliError::hint(
            "cannot tell where to keep login profiles: neither $HOME nor $XDG_CONFIG_HOME is set",
            format!("set {CONFIG_DIR_ENV} to a directory of your own"),
        )),
    }
}

pub fn file_path() -> Result<PathBuf> {
    Ok(config_dir()?.join(FILE_NAME))
}

impl ProfileFile {
    /// The profiles, or none when the file does not exist yet.
    pub fn load() -> Result<(ProfileFile, PathBuf)> {
        let path = file_path()?;
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((ProfileFile::default(), path));
            }
            Err(source) => return Err(CliError::Read { path, source }),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CliError::hint(
                format!(
                    "{} holds credentials but others may read it (mode {mode:04o}); refusing to use it",
                    path.display()
                ),
                format!(
                    "run `chmod 600 {}` (and consider the credential exposed: log in again)",
                    path.display()
                ),
            ));
        }
        let text = crate::files::read(&path)?;
        let file = serde_json::from_str(&text).map_err(|e| {
            CliError::hint(
                format!("{}: not a profile file: {e}", path.display()),
                "fix or remove it, then run `mcp-runtime auth login` again",
            )
        })?;
        Ok((file, path))
    }

    /// Writes the file atomically with mode 0600, its directory with mode 0700.
    pub fn save(&self, path: &Path) -> Result<()> {
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| CliError::Write { path, source }
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        match std::fs::metadata(dir) {
            // An existing directory (perhaps one given by $MCP_RUNTIME_CONFIG_DIR) keeps its
            // mode, but one that others may write to could have the file swapped under us.
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o022 != 0 {
                    return Err(CliError::hint(
                        format!(
                            "{} is writable by others (mode {mode:04o}): not a place for credentials",
                            dir.display()
                        ),
                        format!(
                            "run `chmod 700 {}`, or point {CONFIG_DIR_ENV} at a directory of your own",
                            dir.display()
                        ),
                    ));
                }
            }
            Err(_) => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(write_error(dir))?,
        }
        let mut text =
            serde_json::to_string_pretty(self).map_err(|e| CliError::Invalid(e.to_string()))?;
        text.push('\n');
        let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(source) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(CliError::Write {
                path: path.to_owned(),
                source,
            });
        }
        Ok(())
    }

    /// The name of the profile to use: the one given, else the current one.
    pub fn resolve_name(&self, given: Option<&str>) -> Option<String> {
        given.map(str::to_owned).or_else(|| self.current.clone())
    }
}

/// A profile name is a file-safe word: it appears in commands people type.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CliError::hint(
            format!("--profile `{name}`: not a profile name"),
            "use 1-64 letters, digits, `-`, `_` or `.`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let key = StoredCredential::ApiKey {
            key: "mcpk_ab12cd34_SECRETSECRET".into(),
        };
        let shown = format!("{key:?}");
        assert!(shown.contains("mcpk_ab12cd34"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let token = StoredCredential::AccessToken {
            token: "eyJSECRET".into(),
            expires_at: Timestamp::UNIX_EPOCH,
        };
        assert!(!format!("{token:?}").contains("SECRET"));
    }

    #[test]
    fn profile_names_are_checked() {
        assert!(check_name("work-2.eu_1").is_ok());
        for bad in ["", "a/b", "../x", "with space", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
