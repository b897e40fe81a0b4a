//! The CLI's one error type: every variant is a message for a person, often with a hint.

use std::path::PathBuf;

use mcp_runtime_api::manifest::ManifestError;

/// Exit codes scripts can rely on.
pub mod exit {
    /// The command ran into a problem (bad input, IO).
    pub const FAILURE: u8 = 1;
    /// The command line is wrong (what clap reports, and combinations it cannot check).
    pub const USAGE: u8 = 2;
    /// `policy explain`: the call would be denied.
    pub const DENIED: u8 = 3;
    /// Not logged in, or the platform refused the credential: `auth login` again.
    pub const NOT_AUTHENTICATED: u8 = 4;
    /// `status`: a component is missing or not ready (the report is still printed).
    pub const NOT_READY: u8 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Invalid(String),
    #[error("{message}\n  hint: {hint}")]
    WithHint { message: String, hint: String },
    /// Options that do not go together; exits 2 like clap's usage errors.
    #[error("{message}\n  hint: {hint}")]
    Usage { message: String, hint: String },
    /// No usable platform credential (none, expired, refused); the hint says how to log in.
    #[error("{message}\n  hint: {hint}")]
    NotAuthenticated { message: String, hint: String },
}

impl CliError {
    pub fn hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::WithHint {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn not_authenticated(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::NotAuthenticated {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotAuthenticated { .. } => exit::NOT_AUTHENTICATED,
            Self::Usage { .. } => exit::USAGE,
            _ => exit::FAILURE,
        }
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
