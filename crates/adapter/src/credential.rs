//! The credential the adapters add to every request toward the gateway, and how it stays fresh.
//!
//! The seam is [`CredentialSource`]: anything that can produce the current `Authorization`
//! value and say when it expires. [`Credentials`] holds the current one for the request path
//! (a cheap read per request) and refreshes it in the background:
//!
//! - before it expires (at expiry minus a margin, see [`RefreshOptions`]);
//! - every [`CredentialSource::recheck_every`], for sources that can change at any time (a token
//!   file that is re-minted);
//! - at once when the gateway refuses the credential itself (HTTP 401 `token_expired`,
//!   `invalid_token`, `missing_bearer_token`; see [`crate::upstream`]).
//!
//! A refresh that fails keeps the credential in use and is logged (once per distinct error): the
//! gateway stays the judge of whether it is still good. The first fetch must succeed, so an
//! adapter never starts without a credential (fail closed).
//!
//! Implementations here: [`TokenFile`] (a token minted by `mcp-runtime token mint` or printed by
//! `mcp-runtime dev`, re-read when the file changes) and [`StaticToken`] (a token from the
//! environment). The platform API's session issuance (`POST /v1/runtime/adapter/sessions`) is
//! one more, in the CLI next to its platform client and login profiles
//! (`PlatformSession` in `crates/cli/src/commands/adapter.rs`): its `fetch` calls the API and
//! returns the issued token with its `expires_at`; `recheck_every` stays `None`, so it is called
//! shortly before each expiry only.
//!
//! Secrets never reach a log: [`Credential`]'s `Debug` hides the value and the header value is
//! marked sensitive.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use http::HeaderValue;
use jiff::{SignedDuration, Timestamp};

/// A boxed future, as [`CredentialSource::fetch`] returns it (the trait stays object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An `Authorization` header value and, when known, when it stops being accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    authorization: HeaderValue,
    expires_at: Option<Timestamp>,
}

impl Credential {
    /// `Bearer <token>`, expiring at the token's `exp` claim when it is a JWT (read, not
    /// verified: the gateway verifies; the adapter only needs to know when to refresh).
    pub fn bearer(token: &str) -> Result<Self, CredentialError> {
        let token = token.trim();
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("bearer "))
            .unwrap_or(token)
            .trim();
        if token.is_empty() {
            return Err(CredentialError::Empty);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialError::NotHeaderSafe);
        }
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| CredentialError::NotHeaderSafe)?;
        Ok(Self::new(value, jwt_expiry(token)))
    }

    /// Any `Authorization` value, with its expiry if the source knows it.
    pub fn new(mut authorization: HeaderValue, expires_at: Option<Timestamp>) -> Self {
        authorization.set_sensitive(true);
        Self {
            authorization,
            expires_at,
        }
    }

    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("authorization", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The `exp` claim of a JWT, without verifying anything.
fn jwt_expiry(token: &str) -> Option<Timestamp> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: i64,
    }
    let claims: Exp = serde_json::from_slice(&bytes).ok()?;
    Timestamp::from_second(claims.exp).ok()
}

/// Why no credential could be produced.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the token file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token is empty")]
    Empty,
    #[error("the token holds characters a header cannot carry (expected visible ASCII)")]
    NotHeaderSafe,
    #[error("{what}: {source}")]
    Context {
        what: String,
        #[source]
        source: Box<CredentialError>,
    },
    /// A source's own failure (e.g. the platform API refused to issue a session).
    #[error("{0}")]
    Source(String),
}

impl CredentialError {
    fn context(self, what: impl Into<String>) -> Self {
        Self::Context {
            what: what.into(),
            source: Box::new(self),
        }
    }
}

/// Where credentials come from. See the module documentation for the contract.
pub trait CredentialSource: Send + Sync + 'static {
    /// What the source is, for logs (never the secret): "token file /path".
    fn describe(&self) -> String;

    /// The current credential. Called once at start (its failure stops the adapter), then
    /// before expiry, every [`Self::recheck_every`], and when the gateway refuses the
    /// credential.
    fn fetch(&self) -> BoxFuture<'_, Result<Credential, CredentialError>>;

    /// How often to fetch again regardless of expiry, for sources that change on their own.
    fn recheck_every(&self) -> Option<Duration> {
        None
    }
}

/// A token in a file, re-read every second so a re-minted token is used without a restart.
///
/// The file holds the token alone (`Bearer ` in front is accepted); surrounding whitespace is
/// ignored. Replace it atomically (write a temporary file, then rename it over the old one), so
/// the adapter never reads half a token; a half-written or empty file is a failed refresh and
/// the previous token stays in use.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

/// How often [`TokenFile`] looks at its file.
pub const TOKEN_FILE_RECHECK: Duration = Duration::from_secs(1);

/// A token file larger than this is not a token.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

impl TokenFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl CredentialSource for TokenFile {
    fn describe(&self) -> String {
        format!("token file {}", self.path.display())
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Credential, CredentialError>> {
        Box::pin(async move {
            let read_error = |source| CredentialError::Read {
                path: self.path.clone(),
                source,
            };
            let len = tokio::fs::metadata(&self.path)
                .await
                .map_err(read_error)?
                .len();
            if len > MAX_TOKEN_FILE_BYTES {
                return Err(CredentialError::Source(format!(
                    "the token file {} holds {len} bytes: not a token (at most {MAX_TOKEN_FILE_BYTES})",
                    self.path.display()
                )));
            }
            let text = tokio::fs::read(&self.path).await.map_err(read_error)?;
            let text = String::from_utf8(text).map_err(|_| {
                CredentialError::NotHeaderSafe
                    .context(format!("token file {}", self.path.display()))
            })?;
            Credential::bearer(&text)
                .map_err(|e| e.context(format!("token file {}", self.path.display())))
        })
    }

    fn recheck_every(&self) -> Option<Duration> {
        Some(TOKEN_FILE_RECHECK)
    }
}

/// A token given once (e.g. from the environment); it never changes while the adapter runs.
pub struct StaticToken {
    credential: Credential,
    origin: String,
}

impl StaticToken {
    /// `origin` says where the token came from, for logs (e.g. "$MCP_RUNTIME_TOKEN").
    pub fn new(token: &str, origin: impl Into<String>) -> Result<Self, CredentialError> {
        let origin = origin.into();
        let credential = Credential::bearer(token).map_err(|e| e.context(origin.clone()))?;
        Ok(Self { credential, origin })
    }
}

impl CredentialSource for StaticToken {
    fn describe(&self) -> String {
        format!("static token from {}", self.origin)
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Credential, CredentialError>> {
        let credential = self.credential.clone();
        Box::pin(async move { Ok(credential) })
    }
}

/// When a refresh happens relative to expiry.
#[derive(Clone, Debug)]
pub struct RefreshOptions {
    /// Refresh this long before expiry (at most half the credential's lifetime, so a short-lived
    /// credential is not refreshed continuously).
    pub margin: Duration,
    /// Never wait less than this between refreshes.
    pub min_wait: Duration,
    /// After a failed refresh, try again after this long (or sooner if the source rechecks more
    /// often).
    pub retry_after_failure: Duration,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        Self {
            margin: Duration::from_secs(5 * 60),
            min_wait: Duration::from_secs(1),
            retry_after_failure: Duration::from_secs(30),
        }
    }
}

/// The credential in use, shared by every request, refreshed in the background.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn CredentialSource>,
    options: RefreshOptions,
    state: RwLock<State>,
    /// One refresh at a time: a burst of refused requests causes one fetch, not one each.
    refreshing: tokio::sync::Mutex<()>,
}

struct State {
    current: Arc<Credential>,
    fetched_at: Timestamp,
    /// The last refresh error logged, so a persistent failure is logged once, not every second.
    last_error: Option<String>,
    warned_expired: bool,
}

impl Credentials {
    /// Fetches the first credential (an error here stops the adapter) and starts refreshing in
    /// the background on the current tokio runtime; the task ends with the last handle.
    pub async fn start(
        source: Arc<dyn CredentialSource>,
        options: RefreshOptions,
    ) -> Result<Self, CredentialError> {
        let first = source.fetch().await?;
        tracing::info!(
            source = %source.describe(),
            expires_at = ?first.expires_at().map(|t| t.to_string()),
            "credential loaded"
        );
        let inner = Arc::new(Inner {
            source,
            options,
            state: RwLock::new(State {
                current: Arc::new(first),
                fetched_at: Timestamp::now(),
                last_error: None,
                warned_expired: false,
            }),
            refreshing: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(refresh_loop(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// The credential to send now.
    pub fn current(&self) -> Arc<Credential> {
        self.inner
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .current
            .clone()
    }

    /// Fetches now; `true` when the credential changed (the caller may resend what the gateway
    /// refused). Concurrent callers wait for one fetch.
    pub async fn refresh_now(&self) -> bool {
        let before = self.current();
        let _one = self.inner.refreshing.lock().await;
        if *self.current() != *before {
            // Someone else refreshed while this caller waited.
            return true;
        }
        self.inner.refresh().await
    }
}

impl Inner {
    /// One fetch; `true` when the credential changed.
    async fn refresh(&self) -> bool {
        let fetched = self.source.fetch().await;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match fetched {
            Ok(credential) => {
                if state.last_error.take().is_some() {
                    tracing::info!(source = %self.source.describe(), "credential source readable again");
                }
                let changed = *state.current != credential;
                if changed {
                    tracing::info!(
                        source = %self.source.describe(),
                        expires_at = ?credential.expires_at().map(|t| t.to_string()),
                        "credential updated"
                    );
                    state.current = Arc::new(credential);
                    state.warned_expired = false;
                }
                state.fetched_at = Timestamp::now();
                changed
            }
            Err(e) => {
                let message = e.to_string();
                if state.last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(
                        source = %self.source.describe(),
                        error = %message,
                        "credential refresh failed; the current credential stays in use"
                    );
                    state.last_error = Some(message);
                }
                false
            }
        }
    }

    /// How long to wait before the next refresh.
    fn next_wait(&self, now: Timestamp) -> Duration {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let o = &self.options;
        let failing = state.last_error.is_some();
        let mut wait = match state.current.expires_at() {
            Some(expiry) if expiry <= now => {
                if !state.warned_expired {
                    tracing::warn!(
                        source = %self.source.describe(),
                        expired_at = %expiry,
                        "the credential has expired and no newer one is available; the gateway will refuse requests until there is"
                    );
                    state.warned_expired = true;
                }
                o.retry_after_failure
            }
            Some(expiry) => {
                let lifetime = expiry.duration_since(state.fetched_at);
                let margin = SignedDuration::try_from(o.margin)
                    .unwrap_or(SignedDuration::MAX)
                    .min(lifetime / 2);
                let at = expiry - margin;
                let until = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
                if failing {
                    until.min(o.retry_after_failure)
                } else {
                    until
                }
            }
            None if failing => o.retry_after_failure,
            None => Duration::MAX,
        };
        if let Some(every) = self.source.recheck_every() {
            wait = wait.min(every);
        }
        wait.max(o.min_wait)
    }
}

async fn refresh_loop(inner: Weak<Inner>) {
    loop {
        let wait = match inner.upgrade() {
            Some(inner) => inner.next_wait(Timestamp::now()),
            None => return,
        };
        // A year stands for "never": the loop still ends with the last handle.
        tokio::time::sleep(wait.min(Duration::from_secs(365 * 24 * 3600))).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let _one = inner.refreshing.lock().await;
        inner.refresh().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: i64) -> String {
        use base64::Engine;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            enc(r#"{"alg":"EdDSA"}"#),
            enc(&format!(r#"{{"exp":{exp},"sub":"alice"}}"#))
        )
    }

    #[test]
    fn bearer_reads_expiry_and_hides_the_token() {
        let c = Credential::bearer(&format!("  {}\n", jwt(2_000_000_000))).unwrap();
        assert_eq!(
            c.expires_at(),
            Some(Timestamp::from_second(2_000_000_000).unwrap())
        );
        assert!(c.authorization().to_str().unwrap().starts_with("Bearer ey"));
        assert!(c.authorization().is_sensitive());
        assert!(!format!("{c:?}").contains("ey"), "{c:?}");
        let opaque = Credential::bearer("Bearer opaque-token").unwrap();
        assert_eq!(opaque.authorization(), "Bearer opaque-token");
        assert_eq!(opaque.expires_at(), None);
        assert!(matches!(
            Credential::bearer(" \n"),
            Err(CredentialError::Empty)
        ));
        assert!(matches!(
            Credential::bearer("two words"),
            Err(CredentialError::NotHeaderSafe)
        ));
    }

    #[tokio::test]
    async fn a_rewritten_token_file_is_picked_up_and_a_broken_one_keeps_the_old() {
        let dir = std::env::temp_dir().join(format!("mcp-adapter-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first\n").unwrap();
        let creds = Credentials::start(Arc::new(TokenFile::new(&path)), RefreshOptions::default())
            .await
            .unwrap();
        assert_eq!(creds.current().authorization(), "Bearer first");
        std::fs::write(&path, "").unwrap();
        assert!(!creds.refresh_now().await, "an empty file changes nothing");
        assert_eq!(creds.current().authorization(), "Bearer first");
        std::fs::write(&path, "second").unwrap();
        assert!(creds.refresh_now().await);
        assert_eq!(creds.current().authorization(), "Bearer second");
        std::fs::remove_file(&path).unwrap();
        assert!(!creds.refresh_now().await);
        assert_eq!(creds.current().authorization(), "Bearer second");
        let missing = Credentials::start(
            Arc::new(TokenFile::new(dir.join("missing"))),
            RefreshOptions::default(),
        )
        .await;
        assert!(
            matches!(missing, Err(CredentialError::Read { .. })),
            "fails closed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refresh_comes_before_expiry_and_file_sources_recheck() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let inner = |exp: Option<i64>, source: Arc<dyn CredentialSource>| Inner {
            source,
            options: RefreshOptions::default(),
            state: RwLock::new(State {
                current: Arc::new(Credential::new(
                    HeaderValue::from_static("Bearer x"),
                    exp.map(|s| Timestamp::from_second(s).unwrap()),
                )),
                fetched_at: now,
                last_error: None,
                warned_expired: false,
            }),
            refreshing: tokio::sync::Mutex::new(()),
        };
        let fixed: Arc<dyn CredentialSource> = Arc::new(StaticToken::new("x", "test").unwrap());
        // One hour left: refresh five minutes before expiry.
        let w = inner(Some(1_000_000 + 3600), fixed.clone()).next_wait(now);
        assert_eq!(w, Duration::from_secs(3600 - 300));
        // Four minutes of lifetime: refresh at half of it, not at once.
        let w = inner(Some(1_000_000 + 240), fixed.clone()).next_wait(now);
        assert_eq!(w, Duration::from_secs(120));
        // Expired: retry after the failure delay.
        let w = inner(Some(1_000_000 - 1), fixed.clone()).next_wait(now);
        assert_eq!(w, Duration::from_secs(30));
        let w = inner(Some(1_000_000 + 3600), Arc::new(TokenFile::new("/x"))).next_wait(now);
        assert_eq!(w, TOKEN_FILE_RECHECK);
    }
}
