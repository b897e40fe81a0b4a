//! API keys: kept as SHA-256 hashes only, compared in constant time, each with what it may
//! see (every namespace, or a scope of namespaces and teams).

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::Scope;

/// What a key grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every event (an operator's key).
    All,
    /// Events of these namespaces or teams only.
    Scoped(Scope),
}

/// A set of accepted API keys, as SHA-256 hashes.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    keys: Vec<([u8; 32], Access)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: `sha256:` must be followed by 64 hex digits")]
    BadHash { path: String, line: usize },
    #[error("{path}: no key (every line is empty or a # comment)")]
    Empty { path: String },
    #[error(
        "{path} line {line}: `{word}` is not a scope; write `namespaces=a,b` and/or `teams=x,y` after the key"
    )]
    BadScope {
        path: String,
        line: usize,
        word: String,
    },
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

impl ApiKeys {
    /// Parses a key file: one key a line, either `sha256:<64 hex digits>` (the hash of a key)
    /// or the key itself (hashed here, the text then dropped), optionally followed by a scope:
    /// `namespaces=a,b` and/or `teams=x,y` (the key then sees only those). Blank lines and lines
    /// starting with `#` are skipped; surrounding whitespace is ignored.
    pub fn parse(text: &str, path: &str) -> Result<ApiKeys, KeysError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let key = words.next().unwrap_or_default();
            let hash = match key.strip_prefix("sha256:") {
                Some(hex) => hex32(hex).ok_or_else(|| KeysError::BadHash {
                    path: path.to_owned(),
                    line: i + 1,
                })?,
                None => Sha256::digest(key.as_bytes()).into(),
            };
            let mut access = Access::All;
            for word in words {
                let bad = || KeysError::BadScope {
                    path: path.to_owned(),
                    line: i + 1,
                    word: word.to_owned(),
                };
                let (kind, list) = word.split_once('=').ok_or_else(bad)?;
                let names: Vec<String> = list
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                if names.is_empty() {
                    return Err(bad());
                }
                let scope = match &mut access {
                    Access::Scoped(scope) => scope,
                    all @ Access::All => {
                        *all = Access::Scoped(Scope::default());
                        let Access::Scoped(scope) = all else {
                            unreachable!()
                        };
                        scope
                    }
                };
                match kind {
                    "namespaces" => scope.namespaces.extend(names),
                    "teams" => scope.teams.extend(names),
                    _ => return Err(bad()),
                }
            }
            keys.push((hash, access));
        }
        if keys.is_empty() {
            return Err(KeysError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(ApiKeys { keys })
    }

    pub fn load(path: &Path) -> Result<ApiKeys, KeysError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: shown.clone(),
            source,
        })?;
        ApiKeys::parse(&text, &shown)
    }

    /// What `presented` grants, or `None` when it is not one of the keys. Its hash is compared
    /// with every stored hash in constant time, without stopping at a match.
    pub fn access(&self, presented: &[u8]) -> Option<Access> {
        let hash: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for (known, access) in &self.keys {
            if bool::from(known.ct_eq(&hash)) && found.is_none() {
                found = Some(access.clone());
            }
        }
        found
    }

    /// Whether `presented` is one of the keys.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        self.access(presented).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_keys_are_accepted_others_not() {
        // sha256("hashed-key")
        let hash: [u8; 32] = Sha256::digest(b"hashed-key").into();
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let keys =
            ApiKeys::parse(&format!("# comment\n\nplain-key\n sha256:{hex} \n"), "f").unwrap();
        assert!(keys.accepts(b"plain-key"));
        assert!(keys.accepts(b"hashed-key"));
        assert!(!keys.accepts(b"other"));
        assert!(!keys.accepts(b""));
        assert!(!keys.accepts(format!("sha256:{hex}").as_bytes()));
    }

    #[test]
    fn a_scope_after_the_key_limits_what_it_sees() {
        let keys = ApiKeys::parse(
            "admin\nteam-a-key namespaces=mcp-team-a teams=a,a2\nns-only namespaces=x\n",
            "f",
        )
        .unwrap();
        assert_eq!(keys.access(b"admin"), Some(Access::All));
        let Some(Access::Scoped(scope)) = keys.access(b"team-a-key") else {
            panic!("scoped")
        };
        assert_eq!(scope.namespaces.iter().collect::<Vec<_>>(), ["mcp-team-a"]);
        assert_eq!(scope.teams.iter().collect::<Vec<_>>(), ["a", "a2"]);
        assert!(matches!(keys.access(b"ns-only"), Some(Access::Scoped(s)) if s.teams.is_empty()));
        assert_eq!(keys.access(b"nobody"), None);
        for bad in ["k colour=red", "k namespaces=", "k teams"] {
            assert!(
                matches!(
                    ApiKeys::parse(bad, "f"),
                    Err(KeysError::BadScope { line: 1, .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(matches!(
            ApiKeys::parse("sha256:abc\n", "f"),
            Err(KeysError::BadHash { line: 1, .. })
        ));
        assert!(matches!(
            ApiKeys::parse("# only\n\n", "f"),
            Err(KeysError::Empty { .. })
        ));
    }
}
