//! The gateway's current policy: loaded from a file, reloaded when the file changes, and kept at
//! the last good document when a new one is invalid. Until a first valid document arrives every
//! MCP request is refused (fail closed).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use mcp_runtime_policy::{Policy, PolicyDocument};

/// How often the file's metadata is checked. Mounted ConfigMaps change by symlink swap, which a
/// metadata check (following links) sees; polling avoids inotify's blind spots on such mounts.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct State {
    policy: Option<Arc<Policy>>,
    last_error: Option<String>,
    loaded_at: Option<jiff::Timestamp>,
}

/// Shared handle to the current policy.
#[derive(Clone, Default)]
pub struct PolicyStore {
    state: Arc<RwLock<State>>,
}

/// Outcome of one load attempt, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    Loaded,
    Rejected,
    Unchanged,
}

impl PolicyStore {
    pub fn current(&self) -> Option<Arc<Policy>> {
        self.state.read().expect("policy lock").policy.clone()
    }

    pub fn last_error(&self) -> Option<String> {
        self.state.read().expect("policy lock").last_error.clone()
    }

    pub fn loaded_at(&self) -> Option<jiff::Timestamp> {
        self.state.read().expect("policy lock").loaded_at
    }

    /// Records why the source cannot deliver a document now (the current policy stays).
    pub fn set_error(&self, message: String) {
        self.state.write().expect("policy lock").last_error = Some(message);
    }

    /// Installs a document from bytes; an invalid one leaves the current policy in place.
    pub fn load_bytes(&self, bytes: &[u8]) -> Reload {
        match PolicyDocument::from_json(bytes) {
            Ok(doc) => {
                let mut state = self.state.write().expect("policy lock");
                if state
                    .policy
                    .as_ref()
                    .is_some_and(|p| p.revision() == doc.revision)
                {
                    state.last_error = None;
                    return Reload::Unchanged;
                }
                tracing::info!(revision = %doc.revision, grants = doc.grants.len(), sessions = doc.sessions.len(), "policy loaded");
                state.policy = Some(Arc::new(Policy::new(doc)));
                state.last_error = None;
                state.loaded_at = Some(jiff::Timestamp::now());
                Reload::Loaded
            }
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(error = %message, "policy rejected; keeping the last good one");
                self.set_error(message);
                Reload::Rejected
            }
        }
    }
}

/// Identity of a file version: changes whenever its content may have changed.
fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Length and keyed hash of a file's content (SipHash with a per-process random key, so content
/// cannot be crafted to collide with the previous version).
fn digest(bytes: &[u8]) -> (usize, u64) {
    use std::hash::{BuildHasher, Hasher};
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut hasher = KEYS.get_or_init(Default::default).build_hasher();
    hasher.write(bytes);
    (bytes.len(), hasher.finish())
}

/// Loads `path` now, then watches it until the process ends.
pub fn watch_file(store: PolicyStore, path: PathBuf, on_reload: impl Fn(Reload) + Send + 'static) {
    tokio::spawn(async move {
        let mut last = None;
        // A digest, not the bytes: a large policy would otherwise be held twice in memory.
        let mut last_digest: Option<(usize, u64)> = None;
        loop {
            let now = stamp(&path);
            if now != last || last.is_none() {
                match tokio::fs::read(&path).await {
                    Ok(bytes) => {
                        let now_digest = Some(digest(&bytes));
                        if now_digest != last_digest {
                            on_reload(store.load_bytes(&bytes));
                            last_digest = now_digest;
                        }
                    }
                    Err(e) => {
                        let message = format!("cannot read policy file {}: {e}", path.display());
                        if store.last_error().as_deref() != Some(&message) {
                            tracing::warn!("{message}");
                        }
                        store.set_error(message);
                    }
                }
                last = now;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    });
}
