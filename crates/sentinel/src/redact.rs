//! Redaction at ingest: personal data and secrets are replaced (or replaced by a keyed hash)
//! before anything is stored, so no query, export or backup can show them.
//!
//! Two rules: values of fields whose *name* says they are secret (`password`, `token`, …, plus
//! the names configured) are redacted whole; in every other string, substrings that *look like*
//! an email address, a phone number or a credential are redacted. Hash mode keeps values
//! countable and joinable (the same input gives the same HMAC-SHA256 tag under one key) without
//! being readable.

use std::borrow::Cow;
use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use regex::Regex;
use serde_json::Value;
use sha2::Sha256;

/// Field names always redacted whole (compared lowercased, `-` read as `_`).
pub const DEFAULT_SECRET_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set_cookie",
    "private_key",
];

/// What replaces a redacted value.
#[derive(Clone)]
pub enum Mode {
    /// `[REDACTED:<kind>]`.
    Replace,
    /// `[HASH:<kind>:<16 hex digits of HMAC-SHA256(key, value)>]`.
    Hash { key: Vec<u8> },
}

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Replace => f.write_str("Replace"),
            // Never print the key.
            Mode::Hash { .. } => f.write_str("Hash"),
        }
    }
}

#[derive(Debug)]
pub struct Redactor {
    mode: Mode,
    fields: BTreeSet<String>,
    patterns: Vec<(&'static str, Regex)>,
}

fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// The detectors, most specific first (a bearer token is a credential before it is anything
/// else). Each is a static pattern; a failure to compile is a programming error caught by tests.
fn patterns() -> Vec<(&'static str, Regex)> {
    let list: [(&'static str, &str); 8] = [
        (
            "private_key",
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        ),
        (
            "jwt",
            r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}",
        ),
        ("bearer", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{12,}"),
        (
            "secret",
            r"\b(?:sk|rk|pk)[-_](?:live[-_]|test[-_]|proj[-_])?[A-Za-z0-9]{16,}|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}|\bAKIA[0-9A-Z]{16}\b|\bxox[abposr]-[A-Za-z0-9-]{10,}|\bAIza[0-9A-Za-z_-]{35}",
        ),
        (
            "secret",
            r"(?i)\b(?:password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*[^\s,;&]{4,}",
        ),
        (
            "email",
            r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",
        ),
        // E.164 and grouped international numbers: +44 20 7946 0958, +15551234567.
        ("phone", r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}\d\b"),
        // North American style: (555) 123-4567, 555-123-4567, 555.123.4567.
        ("phone", r"(?:\(\d{3}\)\s?|\b\d{3}[.-])\d{3}[.-]\d{4}\b"),
    ];
    list.into_iter()
        .map(|(kind, re)| (kind, Regex::new(re).expect("redaction pattern compiles")))
        .collect()
}

impl Redactor {
    /// A redactor with the default secret field names plus `extra_fields`.
    pub fn new(mode: Mode, extra_fields: &[String]) -> Redactor {
        let fields = DEFAULT_SECRET_FIELDS
            .iter()
            .map(|f| normalise(f))
            .chain(extra_fields.iter().map(|f| normalise(f)))
            .collect();
        Redactor {
            mode,
            fields,
            patterns: patterns(),
        }
    }

    /// Whether a field of this name is redacted whole.
    pub fn is_secret_field(&self, name: &str) -> bool {
        self.fields.contains(&normalise(name))
    }

    fn token(&self, kind: &str, value: &str) -> String {
        match &self.mode {
            Mode::Replace => format!("[REDACTED:{kind}]"),
            Mode::Hash { key } => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts a key of any length");
                mac.update(value.as_bytes());
                let tag = mac.finalize().into_bytes();
                let hex: String = tag[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("[HASH:{kind}:{hex}]")
            }
        }
    }

    /// Whether equal values stay equal after redaction (hash mode), so a filter on a redacted
    /// field can still match.
    pub fn keeps_equality(&self) -> bool {
        matches!(self.mode, Mode::Hash { .. })
    }

    /// What a value of a secret field becomes (also used on query filters, so that in hash mode
    /// a filter on a redacted field still matches).
    pub fn redact_whole(&self, value: &str) -> String {
        self.token("field", value)
    }

    /// `text` with every detected email, phone number and credential redacted; borrowed when
    /// nothing was found (the common case costs no allocation).
    pub fn redact_text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for (kind, re) in &self.patterns {
            if re.is_match(&out) {
                let replaced = re
                    .replace_all(&out, |c: &regex::Captures<'_>| self.token(kind, &c[0]))
                    .into_owned();
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    /// Redacts `value` in place: secret-named fields whole (whatever their type), every other
    /// string by detection. Returns how many values were changed.
    pub fn redact_value(&self, value: &mut Value) -> usize {
        match value {
            Value::String(s) => match self.redact_text(s) {
                Cow::Borrowed(_) => 0,
                Cow::Owned(new) => {
                    *s = new;
                    1
                }
            },
            Value::Array(items) => items.iter_mut().map(|v| self.redact_value(v)).sum(),
            Value::Object(map) => {
                let mut changed = 0;
                for (name, v) in map.iter_mut() {
                    if self.is_secret_field(name) {
                        if !v.is_null() {
                            let text = match &mut *v {
                                Value::String(s) => std::mem::take(s),
                                other => other.to_string(),
                            };
                            *v = Value::String(self.redact_whole(&text));
                            changed += 1;
                        }
                    } else {
                        changed += self.redact_value(v);
                    }
                }
                changed
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn replace() -> Redactor {
        Redactor::new(Mode::Replace, &["customer-ref".to_owned()])
    }

    #[test]
    fn detects_emails_phones_and_credentials_in_free_text() {
        let r = replace();
        let cases = [
            (
                "mail alice.smith+x@example.co.uk now",
                "mail [REDACTED:email] now",
            ),
            ("call +44 20 7946 0958 today", "call [REDACTED:phone] today"),
            ("call (555) 123-4567", "call [REDACTED:phone]"),
            ("or 555-123-4567.", "or [REDACTED:phone]."),
            ("key AKIAABCDEFGHIJKLMNOP ok", "key [REDACTED:secret] ok"),
            (
                "gh ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "gh [REDACTED:secret]",
            ),
            (
                "Authorization: Bearer abc.def-ghi_jkl123456",
                "Authorization: [REDACTED:bearer]",
            ),
            (
                "tok eyJhbGciOi.eyJzdWIiOiJ4.c2lnbmF0dXJl end",
                "tok [REDACTED:jwt] end",
            ),
            ("password=hunter22 then", "[REDACTED:secret] then"),
            ("sk-proj-ABCDEFGHIJKLMNOPQRSTUV", "[REDACTED:secret]"),
        ];
        for (input, want) in cases {
            assert_eq!(r.redact_text(input), want, "input: {input}");
        }
    }

    #[test]
    fn leaves_ordinary_text_ids_and_times_alone() {
        let r = replace();
        for text in [
            "tools/call get_weather for Paris",
            "2026-11-27T10:30:00Z",
            "019abc12-3456-7def-8901-234567890abc",
            "order 12345678 shipped",
            "version 1.2.3",
            "latency 123.456 ms",
        ] {
            assert!(
                matches!(r.redact_text(text), Cow::Borrowed(_)),
                "changed: {text} -> {}",
                r.redact_text(text)
            );
        }
    }

    #[test]
    fn secret_named_fields_are_redacted_whole_at_any_depth_and_type() {
        let r = replace();
        let mut v = json!({
            "user": {"Password": "p", "API-Key": 12345, "name": "bob", "Customer_Ref": "C-1"},
            "items": [{"token": {"nested": true}}, "write to bob@example.com"],
            "empty": null, "secret": null
        });
        let changed = r.redact_value(&mut v);
        assert_eq!(
            v,
            json!({
                "user": {"Password": "[REDACTED:field]", "API-Key": "[REDACTED:field]",
                         "name": "bob", "Customer_Ref": "[REDACTED:field]"},
                "items": [{"token": "[REDACTED:field]"}, "write to [REDACTED:email]"],
                "empty": null, "secret": null
            })
        );
        assert_eq!(changed, 5);
    }

    #[test]
    fn hash_mode_is_keyed_stable_and_hides_the_value() {
        let a = Redactor::new(
            Mode::Hash {
                key: b"k1".to_vec(),
            },
            &[],
        );
        let b = Redactor::new(
            Mode::Hash {
                key: b"k2".to_vec(),
            },
            &[],
        );
        let x = a.redact_text("from carol@example.org");
        assert!(x.starts_with("from [HASH:email:"), "{x}");
        assert!(!x.contains("carol"));
        assert_eq!(x, a.redact_text("from carol@example.org"), "stable");
        assert_ne!(x, b.redact_text("from carol@example.org"), "keyed");
        assert_ne!(x, a.redact_text("from dave@example.org"));
        assert_eq!(a.redact_whole("s3cret"), a.redact_whole("s3cret"));
        assert!(
            !format!("{:?}", a).contains("k1"),
            "the key is never printed"
        );
    }
}
