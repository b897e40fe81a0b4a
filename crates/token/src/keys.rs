//! Ed25519 key pairs of session tokens, in the PEM formats OpenSSL writes.
//!
//! - The issuer's private key: one `-----BEGIN PRIVATE KEY-----` block (PKCS#8, RFC 8410), as
//!   written by `mcp-runtime token keygen` or `openssl genpkey -algorithm ed25519`.
//! - A gateway's public keys: one or more `-----BEGIN PUBLIC KEY-----` blocks (SPKI) in one file,
//!   as written by `keygen` or `openssl pkey -pubout`; concatenating two files gives a key set.
//!
//! A key is named by its `kid`: the RFC 7638 JWK thumbprint of the public key (SHA-256,
//! base64url). It is derived, never configured, so the same key has the same `kid` everywhere
//! (a JWKS consumer computes the same one) and two different keys cannot share it.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::pkcs8::spki::DecodePublicKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

/// PKCS#8 v1 (RFC 8410) prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// SPKI prefix of an Ed25519 public key; the 32-byte key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no PEM key found: session tokens are signed with Ed25519 keys in PEM \
         (a shared HS256 secret, as earlier versions used, is no longer accepted)"
    )]
    NotPem,
    #[error("this is a public key: signing needs the private key (`-----BEGIN PRIVATE KEY-----`)")]
    PublicKeyGiven,
    #[error(
        "this file holds a private key: gateways verify with public keys only \
         (`-----BEGIN PUBLIC KEY-----`); never deploy the private key to a gateway"
    )]
    PrivateKeyGiven,
    #[error(
        "`-----BEGIN {0}-----` is not supported: expected an unencrypted Ed25519 key \
         (`PRIVATE KEY` or `PUBLIC KEY`)"
    )]
    UnsupportedBlock(String),
    #[error("not an Ed25519 key: {0}")]
    NotEd25519(String),
    #[error("malformed PEM: {0}")]
    Malformed(String),
    #[error("{0} private keys in one file: give exactly one")]
    SeveralPrivateKeys(usize),
}

struct Block {
    label: String,
    der: Vec<u8>,
}

/// The PEM blocks of `text`, in order; text around them is ignored.
fn pem_blocks(text: &[u8]) -> Result<Vec<Block>, KeyError> {
    let text = std::str::from_utf8(text).map_err(|_| KeyError::NotPem)?;
    let mut blocks = Vec::new();
    let mut open: Option<(&str, String)> = None;
    for line in text.lines().map(str::trim) {
        let marker = |kind: &str| {
            line.strip_prefix("-----")
                .and_then(|l| l.strip_prefix(kind))
                .and_then(|l| l.strip_suffix("-----"))
        };
        match (&mut open, marker("BEGIN "), marker("END ")) {
            (None, Some(label), _) => open = Some((label, String::new())),
            (Some((label, body)), _, Some(end)) => {
                if end != *label {
                    return Err(KeyError::Malformed(format!(
                        "`BEGIN {label}` ends with `END {end}`"
                    )));
                }
                let der = STANDARD
                    .decode(body.as_bytes())
                    .map_err(|e| KeyError::Malformed(format!("{label}: {e}")))?;
                blocks.push(Block {
                    label: (*label).to_owned(),
                    der,
                });
                open = None;
            }
            (Some((label, _)), Some(_), _) => {
                return Err(KeyError::Malformed(format!("`BEGIN {label}` has no END")));
            }
            (Some((_, body)), None, None) => body.push_str(line),
            (None, _, _) => {}
        }
    }
    if let Some((label, _)) = open {
        return Err(KeyError::Malformed(format!("`BEGIN {label}` has no END")));
    }
    if blocks.is_empty() {
        return Err(KeyError::NotPem);
    }
    Ok(blocks)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// RFC 7638 thumbprint of the Ed25519 public key `x`: the key's `kid`.
pub fn kid_of(public: &[u8; 32]) -> String {
    let jwk = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// The issuer's private key: signs tokens. Only the issuer (the CLI, the platform API) holds it.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    pub(crate) encoding: EncodingKey,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(kid {}, <redacted>)", self.kid)
    }
}

impl SigningKey {
    /// The key of a 32-byte seed; the caller supplies the randomness (this crate does no IO).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    fn from_dalek(key: ed25519_dalek::SigningKey) -> Self {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(key.as_bytes());
        let kid = kid_of(key.verifying_key().as_bytes());
        Self {
            encoding: EncodingKey::from_ed_der(&der),
            key,
            kid,
        }
    }

    /// Reads one PKCS#8 Ed25519 private key in PEM.
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        let blocks = pem_blocks(text)?;
        let private: Vec<&Block> = blocks.iter().filter(|b| b.label == "PRIVATE KEY").collect();
        match private.as_slice() {
            [one] => ed25519_dalek::SigningKey::from_pkcs8_der(&one.der)
                .map(Self::from_dalek)
                .map_err(|e| KeyError::NotEd25519(e.to_string())),
            [] => Err(match blocks.iter().find(|b| b.label != "PUBLIC KEY") {
                Some(other) => KeyError::UnsupportedBlock(other.label.clone()),
                None => KeyError::PublicKeyGiven,
            }),
            several => Err(KeyError::SeveralPrivateKeys(several.len())),
        }
    }

    /// The private key as PKCS#8 PEM (what [`SigningKey::from_pem`] and OpenSSL read).
    pub fn to_pem(&self) -> String {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(self.key.as_bytes());
        pem("PRIVATE KEY", &der)
    }

    /// The public key as SPKI PEM: what gateways are given.
    pub fn public_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key.verifying_key().as_bytes());
        pem("PUBLIC KEY", &der)
    }

    /// The key's id, written into the header of every token it signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A key set holding only this key's public half.
    pub fn verifying_keys(&self) -> VerifyingKeys {
        VerifyingKeys::from_pem(self.public_pem().as_bytes()).expect("own public key")
    }
}

/// Public keys a gateway accepts tokens from, by `kid`. Several at once, so that a rotation
/// (add the new key, move the issuer to it, remove the old key once its tokens expired) never
/// refuses a valid token.
#[derive(Clone)]
pub struct VerifyingKeys {
    pub(crate) keys: std::collections::BTreeMap<String, DecodingKey>,
}

impl std::fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

impl VerifyingKeys {
    /// Reads one or more SPKI Ed25519 public keys in PEM (a repeated key counts once). A private
    /// key anywhere in the text is refused.
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        let mut keys = std::collections::BTreeMap::new();
        for block in pem_blocks(text)? {
            match block.label.as_str() {
                "PUBLIC KEY" => {}
                // PKCS#8, encrypted, OpenSSH, SEC1 (`EC`), PKCS#1 (`RSA`): all say so.
                private if private.ends_with("PRIVATE KEY") => {
                    return Err(KeyError::PrivateKeyGiven);
                }
                other => return Err(KeyError::UnsupportedBlock(other.to_owned())),
            }
            let key = ed25519_dalek::VerifyingKey::from_public_key_der(&block.der)
                .map_err(|e| KeyError::NotEd25519(e.to_string()))?;
            keys.insert(
                kid_of(key.as_bytes()),
                DecodingKey::from_ed_der(key.as_bytes()),
            );
        }
        Ok(Self { keys })
    }

    /// The ids of the keys, sorted.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`.
    const OPENSSL_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKXGdINWfVWGBRyQCpSi3lc0gBJPuYcpfrDBAPLdTtwR\n-----END PRIVATE KEY-----\n";
    const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11rLqhqoAq1x/rVAkV9hmqPEMOJy0Oqm2HMgVx/ZTJ0=\n-----END PUBLIC KEY-----\n";
    const OTHER_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAud+fNO9g1vMU9HqqlI6pKcjjEKa6Mj0BUNmQ2wzn+oE=\n-----END PUBLIC KEY-----\n";
    const P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEK7pV08YqdEnWKDYxWBc56NNGga8W\nqaJcotIjVvRFdvlFxTrsE9r2a5VSLWcjjoJLMGomRc2MOMBiNSr7rXJHWQ==\n-----END PUBLIC KEY-----\n";

    #[test]
    fn openssl_keys_round_trip_and_agree_on_the_kid() {
        let key = SigningKey::from_pem(OPENSSL_PRIVATE.as_bytes()).unwrap();
        assert_eq!(key.to_pem(), OPENSSL_PRIVATE);
        assert_eq!(key.public_pem(), OPENSSL_PUBLIC);
        let set = VerifyingKeys::from_pem(OPENSSL_PUBLIC.as_bytes()).unwrap();
        assert_eq!(set.kids().collect::<Vec<_>>(), [key.kid()]);
        assert_eq!(key.kid().len(), 43, "base64url of SHA-256");
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            kid_of(&x.try_into().unwrap()),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn a_key_set_holds_several_keys_and_counts_a_repeat_once() {
        let text = format!("{OPENSSL_PUBLIC}\n# next key\n{OTHER_PUBLIC}{OPENSSL_PUBLIC}");
        assert_eq!(
            VerifyingKeys::from_pem(text.as_bytes())
                .unwrap()
                .kids()
                .count(),
            2
        );
    }

    #[test]
    fn the_wrong_kind_of_key_is_named() {
        assert_eq!(
            SigningKey::from_pem(OPENSSL_PUBLIC.as_bytes()).unwrap_err(),
            KeyError::PublicKeyGiven
        );
        let both = format!("{OPENSSL_PUBLIC}{OPENSSL_PRIVATE}");
        assert_eq!(
            VerifyingKeys::from_pem(both.as_bytes()).unwrap_err(),
            KeyError::PrivateKeyGiven
        );
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(
            VerifyingKeys::from_pem(sec1.as_bytes()).unwrap_err(),
            KeyError::PrivateKeyGiven
        );
        // The HS256 secret `mcp-runtime dev` used to write: 64 hex digits.
        let legacy = "9f".repeat(32);
        assert_eq!(
            SigningKey::from_pem(legacy.as_bytes()).unwrap_err(),
            KeyError::NotPem
        );
        assert_eq!(
            VerifyingKeys::from_pem(legacy.as_bytes()).unwrap_err(),
            KeyError::NotPem
        );
        assert!(matches!(
            VerifyingKeys::from_pem(P256_PUBLIC.as_bytes()),
            Err(KeyError::NotEd25519(_))
        ));
        assert!(matches!(
            SigningKey::from_pem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----\n"),
            Err(KeyError::UnsupportedBlock(l)) if l == "ENCRYPTED PRIVATE KEY"
        ));
        assert!(matches!(
            VerifyingKeys::from_pem(b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n"),
            Err(KeyError::Malformed(_))
        ));
    }

    #[test]
    fn generated_keys_differ_by_seed_and_read_back() {
        let a = SigningKey::from_seed(&[1; 32]);
        let b = SigningKey::from_seed(&[2; 32]);
        assert_ne!(a.kid(), b.kid());
        let again = SigningKey::from_pem(a.to_pem().as_bytes()).unwrap();
        assert_eq!(again.kid(), a.kid());
        assert!(format!("{a:?}").contains("redacted"));
    }
}
