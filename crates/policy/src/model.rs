//! The vocabulary shared by manifests, the rendered document and the evaluator.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How far a caller is trusted. Ordered: `low < medium < high`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    #[default]
    Low,
    Medium,
    High,
}

/// What a tool does to the world. Unordered: a grant lists the ones it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum SideEffect {
    Read,
    Write,
    Destructive,
}

/// Informational risk label of a tool; it never gates a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

/// `allow-list` enforces decisions; `observe` records them and lets every call through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMode {
    #[default]
    AllowList,
    Observe,
}

/// Outcome of a tool rule, and the decision applied when no grant speaks for a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    #[default]
    Deny,
}

/// How the gateway learns who is calling.
///
/// `token` (signed session tokens) is the default. `header` trusts identity headers and is only
/// safe behind an authenticating proxy; `none` admits anonymous callers (every tool call is then
/// `missing_identity` unless the policy observes). `mtls` is accepted for manifest compatibility.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    None,
    Header,
    #[default]
    Token,
    Oauth,
    Mtls,
}

macro_rules! display_as_serde {
    ($($ty:ty => { $($variant:ident = $text:literal),+ $(,)? })+) => {$(
        impl $ty {
            /// The spelling used in manifests, documents and audit events.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $ty {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownValue { found: s.to_owned(), expected: &[$($text),+] }),
                }
            }
        }
    )+};
}

display_as_serde! {
    Trust => { Low = "low", Medium = "medium", High = "high" }
    SideEffect => { Read = "read", Write = "write", Destructive = "destructive" }
    RiskLevel => { Low = "low", Medium = "medium", High = "high" }
    PolicyMode => { AllowList = "allow-list", Observe = "observe" }
    Verdict => { Allow = "allow", Deny = "deny" }
    AuthMode => { None = "none", Header = "header", Token = "token", Oauth = "oauth", Mtls = "mtls" }
}

/// A string that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{found}` is not one of: {}", expected.join(", "))]
pub struct UnknownValue {
    pub found: String,
    pub expected: &'static [&'static str],
}

impl RiskLevel {
    /// Risk implied by a tool's side effect and required trust when none is declared.
    pub fn derived(side_effect: Option<SideEffect>, required: Trust) -> Option<Self> {
        match (side_effect, required) {
            (Some(SideEffect::Destructive), _) | (_, Trust::High) => Some(Self::High),
            (Some(SideEffect::Write), _) | (_, Trust::Medium) => Some(Self::Medium),
            (Some(SideEffect::Read), Trust::Low) => Some(Self::Low),
            (None, Trust::Low) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_is_ordered_low_medium_high() {
        assert!(Trust::Low < Trust::Medium && Trust::Medium < Trust::High);
        assert_eq!(Trust::High.min(Trust::Low), Trust::Low);
    }

    #[test]
    fn parse_rejects_unknown_spelling_and_lists_choices() {
        let err = "urgent".parse::<Trust>().unwrap_err();
        assert_eq!(err.to_string(), "`urgent` is not one of: low, medium, high");
        assert_eq!(
            "allow-list".parse::<PolicyMode>(),
            Ok(PolicyMode::AllowList)
        );
    }

    #[test]
    fn risk_is_derived_from_side_effect_and_trust() {
        use SideEffect::*;
        assert_eq!(
            RiskLevel::derived(Some(Destructive), Trust::Low),
            Some(RiskLevel::High)
        );
        assert_eq!(
            RiskLevel::derived(Some(Read), Trust::Medium),
            Some(RiskLevel::Medium)
        );
        assert_eq!(
            RiskLevel::derived(Some(Read), Trust::Low),
            Some(RiskLevel::Low)
        );
        assert_eq!(RiskLevel::derived(None, Trust::Low), None);
    }
}
