//! Passwords (argon2id) and API keys (random, stored as SHA-256): how they are made, stored and
//! checked. Nothing here logs or formats a secret.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// argon2id with 19 MiB of memory, 2 passes, 1 lane: the OWASP password-storage minimum
/// (about 25 ms per hash on one core of the test machine, see docs/platform.md). The
/// parameters are stored in each hash, so raising them later re-hashes nothing.
pub fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Shortest password accepted when one is set.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (hashing cost grows with it; nobody types more).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password cannot be set.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "password: at least {MIN_PASSWORD_CHARS} characters are required"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "password: at most {MAX_PASSWORD_BYTES} bytes are accepted"
        ));
    }
    Ok(())
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
}

/// The argon2id PHC string of `password` with a fresh salt.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&random::<16>()).expect("16 bytes make a valid salt");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashing with valid parameters")
        .to_string()
}

/// Whether `password` matches the stored PHC string (argon2's own comparison is constant-time).
/// A malformed stored hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody knows, verified when the email is unknown so that a login
/// for a missing user costs the same time as one with a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&URL_SAFE_NO_PAD.encode(random::<24>())))
}

/// What starts every API key.
pub const KEY_PREFIX: &str = "mcpk_";

/// A new API key: the raw value (shown once), its visible prefix (`mcpk_` and 8 hex digits,
/// unique: it finds the row) and the SHA-256 of the whole key (what is stored).
pub struct NewKey {
    pub raw: String,
    pub prefix: String,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// `mcpk_<8 hex>_<43 base64url characters: 256 random bits>`.
pub fn new_api_key() -> NewKey {
    let id = random::<4>();
    let prefix = format!(
        "{KEY_PREFIX}{}",
        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let raw = format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(random::<32>()));
    let sha256 = sha256(&raw);
    NewKey {
        raw,
        prefix,
        sha256,
    }
}

pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The prefix of a presented key (`None` when it does not have the shape of one).
pub fn key_prefix(raw: &str) -> Option<&str> {
    let rest = raw.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43)
        .then(|| &raw[..KEY_PREFIX.len() + 8])
}

/// Whether the presented key hashes to the stored hash, in constant time.
pub fn key_matches(raw: &str, stored: &[u8]) -> bool {
    bool::from(sha256(raw).ct_eq(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_and_a_wrong_one_does_not() {
        let t0 = std::time::Instant::now();
        let h = hash_password("correct horse battery");
        eprintln!("argon2id hash: {:?}", t0.elapsed());
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterz", &h));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery"), "salted");
    }

    #[test]
    fn keys_have_a_visible_prefix_and_only_their_hash_matches() {
        let k = new_api_key();
        assert_eq!(key_prefix(&k.raw), Some(k.prefix.as_str()));
        assert_eq!(k.prefix.len(), 13);
        assert!(key_matches(&k.raw, &k.sha256));
        let mut other = k.raw.clone();
        other.pop();
        other.push('x');
        assert!(!key_matches(&other, &k.sha256) || other == k.raw);
        assert!(
            !format!("{k:?}").contains(&k.raw[14..]),
            "Debug hides the key"
        );
        for bad in ["", "mcpk_", "mcpk_zzzzzzzz_x", "mcpk_ab12cd34", "key"] {
            assert_eq!(key_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn short_passwords_are_refused_naming_the_field() {
        assert!(
            check_new_password("short")
                .unwrap_err()
                .starts_with("password:")
        );
        assert!(check_new_password("twelve chars").is_ok());
    }
}
