//! The public keys that verify session tokens (`--token-public-keys`): read at start, then
//! followed while the gateway runs, so keys rotate without a restart. A rotation is: add the new
//! key to the file, move the issuer to it, remove the old key once its tokens have expired. A
//! file that cannot be read or holds no valid key leaves the current keys in place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mcp_runtime_token::VerifyingKeys;

/// How often the key file is re-read (it is a few hundred bytes; reading it is cheaper than
/// reasoning about mtimes of mounted Secrets, which change by symlink swap).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Shared handle to the current key set; `None` when the gateway has no key file.
#[derive(Clone, Default)]
pub struct TokenKeys {
    current: Arc<RwLock<Option<Arc<VerifyingKeys>>>>,
    /// Bumped after every change of the key set (0: never set). A verified token remembers the
    /// generation it was checked under, so a cache hit needs one atomic load, not the lock.
    generation: Arc<AtomicU64>,
}

impl TokenKeys {
    pub fn new(keys: VerifyingKeys) -> Self {
        let this = Self::default();
        this.set(keys);
        this
    }

    pub fn current(&self) -> Option<Arc<VerifyingKeys>> {
        self.current.read().expect("token keys lock").clone()
    }

    /// The generation of the key set; read it before [`Self::current`], so a change in
    /// between shows as a newer generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn set(&self, keys: VerifyingKeys) {
        *self.current.write().expect("token keys lock") = Some(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// Reads and parses the key file; the message names the file and what is wrong with it.
pub fn load(path: &Path) -> Result<(VerifyingKeys, Vec<u8>), String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read token public keys {}: {e}", path.display()))?;
    let keys = VerifyingKeys::from_pem(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((keys, bytes))
}

/// Follows `path` until the process ends; `loaded` is the content `keys` were loaded from.
pub fn watch_file(keys: TokenKeys, path: PathBuf, mut loaded: Vec<u8>) {
    tokio::spawn(async move {
        let mut last_error = None;
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) => {
                    let message = format!("cannot read token public keys {}: {e}", path.display());
                    if last_error.as_ref() != Some(&message) {
                        tracing::warn!("{message}; keeping the current keys");
                        last_error = Some(message);
                    }
                    continue;
                }
            };
            if bytes == loaded {
                continue;
            }
            match VerifyingKeys::from_pem(&bytes) {
                Ok(new) => {
                    let kids: Vec<&str> = new.kids().collect();
                    tracing::info!(?kids, "token public keys reloaded");
                    keys.set(new);
                    last_error = None;
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "token public keys rejected; keeping the current keys");
                }
            }
            loaded = bytes;
        }
    });
}
