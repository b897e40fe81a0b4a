//! API keys: kept as SHA-256 hashes only, compared in constant time.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A set of accepted API keys, as SHA-256 hashes.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    hashes: Vec<[u8; 32]>,
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
    /// or the key itself (hashed here, the text then dropped). Blank lines and lines starting
    /// with `#` are skipped; surrounding whitespace is ignored.
    pub fn parse(text: &str, path: &str) -> Result<ApiKeys, KeysError> {
        let mut hashes = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let hash = match line.strip_prefix("sha256:") {
                Some(hex) => hex32(hex).ok_or_else(|| KeysError::BadHash {
                    path: path.to_owned(),
                    line: i + 1,
                })?,
                None => Sha256::digest(line.as_bytes()).into(),
            };
            hashes.push(hash);
        }
        if hashes.is_empty() {
            return Err(KeysError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(ApiKeys { hashes })
    }

    pub fn load(path: &Path) -> Result<ApiKeys, KeysError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: shown.clone(),
            source,
        })?;
        ApiKeys::parse(&text, &shown)
    }

    /// Whether `presented` is one of the keys. Its hash is compared with every stored hash in
    /// constant time, without stopping at a match.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let hash: [u8; 32] = Sha256::digest(presented).into();
        let mut found = subtle::Choice::from(0);
        for known in &self.hashes {
            found |= known.ct_eq(&hash);
        }
        found.into()
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
