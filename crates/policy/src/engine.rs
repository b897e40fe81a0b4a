//! Evaluation of one call of a tool, prompt or resource against a compiled policy, and admission
//! of a request that names none (steps 1-3 only).
//!
//! Order (first failing step decides; "tool" stands for the called tool, prompt or resource):
//! 1. the caller has an identity (`missing_identity`);
//! 2. a session is presented when required (`missing_session`); a presented session must exist
//!    for this caller (`session_not_found`), not be revoked (`session_revoked`) and not have
//!    reached `expires_at` (`session_expired`) — checked even when sessions are optional, so a
//!    revoked consent never silently falls back to the grant's full trust;
//! 3. some enabled grant names the caller (`no_matching_grant`, subject to the default
//!    decision);
//! 4. no enabled matching grant denies the tool (`tool_denied`: a deny rule always wins);
//! 5. some enabled grant allows the tool (`tool_not_granted`, subject to the default decision);
//! 6. the tool's side effect is known (`tool_side_effect_unknown`) and allowed by a grant that
//!    allows the tool (`side_effect_not_allowed`);
//! 7. for one such grant, `min(grant max trust, session consented trust)` reaches the trust the
//!    tool and the grant's rule require (`trust_too_low`).
//!
//! In `observe` mode the same evaluation runs and the call is let through, keeping the reason it
//! would have been denied for.
//!
//! A grant's rules name tools by name, prompts as `prompt:<name>` and resources as
//! `resource:<uri>`, where a resource rule ending in `*` names every URI it prefixes. The
//! server declares prompts and resources as it declares tools; a declared resource ending in `*`
//! covers every URI it prefixes (an exact declaration wins, then the longest prefix).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::ops::ControlFlow;

use jiff::Timestamp;
use serde::Serialize;

use crate::document::{GrantPolicy, PolicyDocument, SessionPolicy, Subject, ToolPolicy, ToolRule};
use crate::model::{PolicyMode, RiskLevel, SideEffect, Trust, Verdict};

/// Why a decision came out the way it did. Stable strings: audit events and clients match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Allowed,
    MissingIdentity,
    MissingSession,
    SessionNotFound,
    SessionRevoked,
    SessionExpired,
    NoMatchingGrant,
    ToolDenied,
    ToolNotGranted,
    ToolSideEffectUnknown,
    SideEffectNotAllowed,
    TrustTooLow,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::Allowed,
        Reason::MissingIdentity,
        Reason::MissingSession,
        Reason::SessionNotFound,
        Reason::SessionRevoked,
        Reason::SessionExpired,
        Reason::NoMatchingGrant,
        Reason::ToolDenied,
        Reason::ToolNotGranted,
        Reason::ToolSideEffectUnknown,
        Reason::SideEffectNotAllowed,
        Reason::TrustTooLow,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::MissingIdentity => "missing_identity",
            Reason::MissingSession => "missing_session",
            Reason::SessionNotFound => "session_not_found",
            Reason::SessionRevoked => "session_revoked",
            Reason::SessionExpired => "session_expired",
            Reason::NoMatchingGrant => "no_matching_grant",
            Reason::ToolDenied => "tool_denied",
            Reason::ToolNotGranted => "tool_not_granted",
            Reason::ToolSideEffectUnknown => "tool_side_effect_unknown",
            Reason::SideEffectNotAllowed => "side_effect_not_allowed",
            Reason::TrustTooLow => "trust_too_low",
        }
    }

    /// True when the caller must (re)authenticate or obtain a session rather than more access.
    pub const fn is_credential_problem(self) -> bool {
        matches!(
            self,
            Reason::MissingIdentity
                | Reason::MissingSession
                | Reason::SessionNotFound
                | Reason::SessionRevoked
                | Reason::SessionExpired
        )
    }

    /// One sentence for humans, used by `policy explain` and denial messages.
    pub const fn summary(self) -> &'static str {
        match self {
            Reason::Allowed => "the call is allowed",
            Reason::MissingIdentity => "the caller presented no human, agent or team identity",
            Reason::MissingSession => {
                "this server requires an agent session and none was presented"
            }
            Reason::SessionNotFound => {
                "the presented session does not exist for this caller on this server"
            }
            Reason::SessionRevoked => "the presented session has been revoked",
            Reason::SessionExpired => "the presented session has expired",
            Reason::NoMatchingGrant => "no enabled access grant names this caller",
            Reason::ToolDenied => {
                "a grant for this caller explicitly denies this tool, prompt or resource"
            }
            Reason::ToolNotGranted => {
                "no enabled grant for this caller allows this tool, prompt or resource"
            }
            Reason::ToolSideEffectUnknown => {
                "the tool, prompt or resource is not declared with a side effect, so it cannot be authorised"
            }
            Reason::SideEffectNotAllowed => {
                "no grant that allows this tool, prompt or resource allows its side effect"
            }
            Reason::TrustTooLow => {
                "the caller's effective trust is below what the tool, prompt or resource requires"
            }
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling, as verified by the gateway. Empty strings count as absent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity<'a> {
    pub human: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub team: Option<&'a str>,
    /// `name` (in the server's namespace) or `namespace/name`.
    pub session: Option<&'a str>,
}

impl<'a> Identity<'a> {
    pub fn new(
        human: Option<&'a str>,
        agent: Option<&'a str>,
        team: Option<&'a str>,
        session: Option<&'a str>,
    ) -> Self {
        let keep = |v: Option<&'a str>| v.filter(|s| !s.is_empty());
        Self {
            human: keep(human),
            agent: keep(agent),
            team: keep(team),
            session: keep(session),
        }
    }

    fn is_anonymous(&self) -> bool {
        self.human.is_none() && self.agent.is_none() && self.team.is_none()
    }
}

/// One tool call to decide.
#[derive(Clone, Copy, Debug)]
pub struct ToolCall<'a> {
    pub identity: Identity<'a>,
    pub tool: &'a str,
    pub now: Timestamp,
}

/// What a call names: a tool (`tools/call`), a prompt (`prompts/get`) or a resource
/// (`resources/read`, `resources/subscribe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Tool,
    Prompt,
    Resource,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [TargetKind::Tool, TargetKind::Prompt, TargetKind::Resource];

    pub const fn as_str(self) -> &'static str {
        match self {
            TargetKind::Tool => "tool",
            TargetKind::Prompt => "prompt",
            TargetKind::Resource => "resource",
        }
    }

    /// What a grant's rule puts before the name: nothing for tools, `prompt:`, `resource:`.
    pub const fn rule_prefix(self) -> &'static str {
        match self {
            TargetKind::Tool => "",
            TargetKind::Prompt => "prompt:",
            TargetKind::Resource => "resource:",
        }
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call of a tool, prompt or resource to decide.
#[derive(Clone, Copy, Debug)]
pub struct TargetCall<'a> {
    pub identity: Identity<'a>,
    pub kind: TargetKind,
    /// The tool or prompt name, or the resource URI.
    pub name: &'a str,
    pub now: Timestamp,
}

impl<'a> From<&ToolCall<'a>> for TargetCall<'a> {
    #[inline]
    fn from(call: &ToolCall<'a>) -> Self {
        TargetCall {
            identity: call.identity,
            kind: TargetKind::Tool,
            name: call.tool,
            now: call.now,
        }
    }
}

/// A request that names no tool, prompt or resource (`initialize`, the list methods, a GET
/// stream, a DELETE...): only the caller is decided, by steps 1-3.
#[derive(Clone, Copy, Debug)]
pub struct Admission<'a> {
    pub identity: Identity<'a>,
    pub now: Timestamp,
}

/// What the policy knows about the called tool, prompt or resource.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ToolFacts {
    pub declared: bool,
    pub required_trust: Trust,
    pub side_effect: Option<SideEffect>,
    pub risk_level: Option<RiskLevel>,
}

impl ToolFacts {
    /// Facts of something undeclared: it requires `low` and its side effect is unknown. Also the
    /// facts of an admission, which decides no item.
    pub const UNDECLARED: ToolFacts = ToolFacts {
        declared: false,
        required_trust: Trust::Low,
        side_effect: None,
        risk_level: None,
    };

    fn of(t: &ToolPolicy) -> Self {
        ToolFacts {
            declared: true,
            required_trust: t.required_trust,
            side_effect: Some(t.side_effect),
            risk_level: t
                .risk_level
                .or_else(|| RiskLevel::derived(Some(t.side_effect), t.required_trust)),
        }
    }
}

/// The outcome of one evaluation, with everything needed to audit it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Decision<'p> {
    pub allowed: bool,
    pub reason: Reason,
    /// False in observe mode: `allowed` is true whatever `reason` says.
    pub enforced: bool,
    /// The server's default decision settled the call (no grant spoke for it).
    pub default_applied: bool,
    /// Facts of the decided tool, prompt or resource ([`ToolFacts::UNDECLARED`] for an
    /// admission).
    pub tool: ToolFacts,
    /// The trust the call needs: the tool's requirement raised by the matched grant's rule.
    pub required_trust: Option<Trust>,
    /// The matched grant's `maxTrust`.
    pub admin_trust: Option<Trust>,
    /// The matched session's `consentedTrust`.
    pub consented_trust: Option<Trust>,
    /// `min(admin, consented)`.
    pub effective_trust: Option<Trust>,
    #[serde(serialize_with = "ser_grant")]
    pub grant: Option<&'p GrantPolicy>,
    #[serde(serialize_with = "ser_session")]
    pub session: Option<&'p SessionPolicy>,
    pub policy_revision: &'p str,
    pub policy_version: Option<&'p str>,
}

impl Decision<'_> {
    /// `namespace/name` of the matched grant.
    pub fn grant_ref(&self) -> Option<String> {
        self.grant.map(|g| namespaced(&g.namespace, &g.name))
    }
    pub fn session_ref(&self) -> Option<String> {
        self.session.map(|s| namespaced(&s.namespace, &s.name))
    }
}

/// `namespace/name`, sized once: the gateway writes two per audited call, and `format!`'s
/// machinery showed in its profile.
fn namespaced(namespace: &str, name: &str) -> String {
    let mut s = String::with_capacity(namespace.len() + 1 + name.len());
    s.push_str(namespace);
    s.push('/');
    s.push_str(name);
    s
}

#[derive(Serialize)]
struct ObjectRef<'a> {
    namespace: &'a str,
    name: &'a str,
}

fn ser_grant<S: serde::Serializer>(g: &Option<&GrantPolicy>, s: S) -> Result<S::Ok, S::Error> {
    g.map(|g| ObjectRef {
        namespace: &g.namespace,
        name: &g.name,
    })
    .serialize(s)
}

fn ser_session<S: serde::Serializer>(v: &Option<&SessionPolicy>, s: S) -> Result<S::Ok, S::Error> {
    v.map(|v| ObjectRef {
        namespace: &v.namespace,
        name: &v.name,
    })
    .serialize(s)
}

/// How one grant related to the call, for explanations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum GrantVerdict {
    Disabled,
    /// Admission only: the grant names the caller and is enabled.
    Enabled,
    DeniesTool,
    DoesNotCoverTool,
    SideEffectNotAllowed,
    SideEffectUnknown,
    TrustSufficient {
        effective: Trust,
        required: Trust,
    },
    TrustTooLow {
        effective: Trust,
        required: Trust,
    },
}

/// One step of an evaluation, recorded only when explaining.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step<'p> {
    /// The decided tool, prompt or resource.
    Tool {
        kind: TargetKind,
        name: String,
        /// The declaration that matched, when it is not `name` itself (a resource prefix).
        #[serde(skip_serializing_if = "Option::is_none")]
        declared_as: Option<String>,
        facts: ToolFacts,
    },
    Identity {
        human: Option<String>,
        agent: Option<String>,
        team: Option<String>,
    },
    NoSessionPresented {
        required: bool,
    },
    SessionFound {
        #[serde(serialize_with = "ser_session_ref")]
        session: &'p SessionPolicy,
        live: bool,
    },
    SessionMissing {
        presented: String,
    },
    Grant {
        #[serde(serialize_with = "ser_grant_ref")]
        grant: &'p GrantPolicy,
        outcome: GrantVerdict,
    },
    DefaultDecision {
        decision: Verdict,
    },
    Observed {
        would_allow: bool,
    },
}

fn ser_session_ref<S: serde::Serializer>(v: &&SessionPolicy, s: S) -> Result<S::Ok, S::Error> {
    ObjectRef {
        namespace: &v.namespace,
        name: &v.name,
    }
    .serialize(s)
}

fn ser_grant_ref<S: serde::Serializer>(g: &&GrantPolicy, s: S) -> Result<S::Ok, S::Error> {
    ObjectRef {
        namespace: &g.namespace,
        name: &g.name,
    }
    .serialize(s)
}

/// Receives steps while evaluating. The no-op implementation compiles away.
trait Trace<'p> {
    /// Explanations consider every grant naming the caller, not only those about the tool.
    const FULL: bool;
    fn record(&mut self, step: impl FnOnce() -> Step<'p>);
}

struct NoTrace;

impl<'p> Trace<'p> for NoTrace {
    const FULL: bool = false;
    #[inline(always)]
    fn record(&mut self, _: impl FnOnce() -> Step<'p>) {}
}

impl<'p> Trace<'p> for Vec<Step<'p>> {
    const FULL: bool = true;
    fn record(&mut self, step: impl FnOnce() -> Step<'p>) {
        self.push(step());
    }
}

/// Grant or session ids, in 16 bytes. Most subjects have a single grant, kept inline: a large
/// policy then costs no allocation per subject for its index.
#[derive(Debug)]
enum Ids {
    One(u32),
    /// None (empty, which allocates nothing) or several.
    Many(Box<[u32]>),
}

impl Default for Ids {
    fn default() -> Self {
        Ids::Many(Box::default())
    }
}

impl Ids {
    fn push(&mut self, id: u32) {
        *self = match std::mem::take(self) {
            Ids::Many(ids) if ids.is_empty() => Ids::One(id),
            Ids::One(first) => Ids::Many(Box::new([first, id])),
            // Only while compiling, and only for subjects with several grants.
            Ids::Many(ids) => {
                let mut ids = ids.into_vec();
                ids.push(id);
                Ids::Many(ids.into_boxed_slice())
            }
        };
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Ids::One(id) => std::slice::from_ref(id),
            Ids::Many(ids) => ids,
        }
    }
}

/// The grants indexed under one subject value, further split by the tools they speak about, so a
/// decision touches only grants that can both name the caller and cover the tool. Kept small (40
/// bytes): a policy has one per subject.
#[derive(Debug, Default)]
struct Bucket {
    /// Grants without tool rules: they cover every tool.
    every_tool: Ids,
    /// Grants with rules, under each tool they name (`None` when no grant has rules).
    #[expect(
        clippy::box_collection,
        reason = "8 bytes per bucket instead of an empty map's 48: most buckets have no rules"
    )]
    by_tool: Option<Box<HashMap<String, Vec<u32>>>>,
    /// Every grant of the bucket.
    all: Ids,
}

/// Hashes a [`Key`] to itself: keys already are hashes.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in rather than fail.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// An index by [`Key`]. Keys are the (keyed) hashes of the strings they stand for, so the index
/// stores no copy of 10 000 subject or session names. Two strings can share a key: a lookup
/// therefore checks what it finds (grants with `subject_matches`, sessions by namespace and
/// name), and a collision costs a comparison, never a wrong decision.
type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// How strings become index keys.
#[derive(Debug)]
enum Keys {
    /// A keyed hash, random per policy (so nobody can aim names at one key).
    Seeded(RandomState),
    /// Every string on the same key: tests that collisions cannot change a decision.
    #[cfg(test)]
    Colliding,
}

impl Keys {
    /// The key of a string, or of a (namespace, name) pair.
    fn of(&self, parts: &[&str]) -> u64 {
        match self {
            Keys::Seeded(seed) => {
                let mut h = seed.build_hasher();
                for part in parts {
                    part.hash(&mut h);
                }
                h.finish()
            }
            #[cfg(test)]
            Keys::Colliding => 0,
        }
    }
}

/// A policy document compiled for fast decisions: tools, prompts and resources by name, grants
/// indexed by subject, sessions by namespace and name.
#[derive(Debug)]
pub struct Policy {
    doc: PolicyDocument,
    tools: HashMap<String, u32>,
    prompts: HashMap<String, u32>,
    /// Resources declared by exact URI.
    resources: HashMap<String, u32>,
    /// Resources declared by a prefix (a name ending in `*`), longest first.
    resource_prefixes: Vec<u32>,
    keys: Keys,
    by_human: KeyMap<Bucket>,
    by_agent: KeyMap<Bucket>,
    by_team: KeyMap<Bucket>,
    /// Sessions by the key of (namespace, name).
    sessions: KeyMap<Ids>,
}

impl Policy {
    /// Compiles a validated document. Each grant is indexed once, under its most specific subject
    /// field, so a lookup touches only grants that can name the caller.
    pub fn new(doc: PolicyDocument) -> Self {
        Self::compile(doc, Keys::Seeded(RandomState::new()))
    }

    fn compile(doc: PolicyDocument, keys: Keys) -> Self {
        let by_name = |items: &[ToolPolicy], keep: fn(&str) -> bool| {
            (0u32..)
                .zip(items)
                .filter(|(_, t)| keep(&t.name))
                .map(|(i, t)| (t.name.clone(), i))
                .collect::<HashMap<_, _>>()
        };
        let tools = by_name(&doc.tools, |_| true);
        let prompts = by_name(&doc.prompts, |_| true);
        let resources = by_name(&doc.resources, |n| !n.ends_with('*'));
        let mut resource_prefixes: Vec<u32> = (0u32..)
            .zip(&doc.resources)
            .filter(|(_, r)| r.name.ends_with('*'))
            .map(|(i, _)| i)
            .collect();
        resource_prefixes.sort_by_key(|&i| std::cmp::Reverse(doc.resources[i as usize].name.len()));
        let (mut by_human, mut by_agent, mut by_team) =
            (KeyMap::default(), KeyMap::default(), KeyMap::default());
        for (i, grant) in (0u32..).zip(&doc.grants) {
            let s = &grant.subject;
            let (index, key): (&mut KeyMap<Bucket>, _) =
                match (&s.human_id, &s.agent_id, &s.team_id) {
                    (Some(h), _, _) => (&mut by_human, h),
                    (None, Some(a), _) => (&mut by_agent, a),
                    (None, None, Some(t)) => (&mut by_team, t),
                    // Validation rejects empty subjects; an empty one could never match anyway.
                    (None, None, None) => continue,
                };
            let bucket = index.entry(keys.of(&[key])).or_default();
            bucket.all.push(i);
            if grant.tool_rules.is_empty() {
                bucket.every_tool.push(i);
            }
            for rule in &grant.tool_rules {
                bucket
                    .by_tool
                    .get_or_insert_default()
                    .entry(rule.name.clone())
                    .or_default()
                    .push(i);
            }
        }
        let mut sessions = KeyMap::<Ids>::default();
        for (i, s) in (0u32..).zip(&doc.sessions) {
            sessions
                .entry(keys.of(&[&s.namespace, &s.name]))
                .or_default()
                .push(i);
        }
        Self {
            doc,
            tools,
            prompts,
            resources,
            resource_prefixes,
            keys,
            by_human,
            by_agent,
            by_team,
            sessions,
        }
    }

    pub fn document(&self) -> &PolicyDocument {
        &self.doc
    }

    pub fn revision(&self) -> &str {
        &self.doc.revision
    }

    /// Decides one tool call.
    pub fn evaluate(&self, call: &ToolCall<'_>) -> Decision<'_> {
        self.evaluate_with(&TargetCall::from(call), &mut NoTrace)
    }

    /// Decides one call of a tool, prompt or resource.
    pub fn evaluate_target(&self, call: &TargetCall<'_>) -> Decision<'_> {
        self.evaluate_with(call, &mut NoTrace)
    }

    /// Decides one tool call and returns the steps that led there.
    pub fn explain(&self, call: &ToolCall<'_>) -> (Decision<'_>, Vec<Step<'_>>) {
        self.explain_target(&TargetCall::from(call))
    }

    /// Decides one call of a tool, prompt or resource and returns the steps that led there.
    pub fn explain_target(&self, call: &TargetCall<'_>) -> (Decision<'_>, Vec<Step<'_>>) {
        let mut steps = Vec::new();
        let decision = self.evaluate_with(call, &mut steps);
        (decision, steps)
    }

    /// Decides a request that names no tool, prompt or resource: steps 1-3 of every evaluation
    /// (identity, session, an enabled grant naming the caller), with the same default decision,
    /// observe mode and attribution (session, consented trust, revision; no grant). Whenever it
    /// refuses for a reason, every [`Policy::evaluate_target`] of that caller at that instant
    /// refuses for the same reason.
    pub fn admit(&self, admission: &Admission<'_>) -> Decision<'_> {
        self.admit_with(admission, &mut NoTrace)
    }

    /// [`Policy::admit`] with the steps that led there.
    pub fn explain_admission(&self, admission: &Admission<'_>) -> (Decision<'_>, Vec<Step<'_>>) {
        let mut steps = Vec::new();
        let decision = self.admit_with(admission, &mut steps);
        (decision, steps)
    }

    /// Whether a list result (`tools/list`, `prompts/list`, `resources/list`) may show an item to
    /// this caller: exactly when calling it would be allowed (so in observe mode, always).
    pub fn visible(
        &self,
        identity: &Identity<'_>,
        kind: TargetKind,
        name: &str,
        now: Timestamp,
    ) -> bool {
        self.evaluate_target(&TargetCall {
            identity: *identity,
            kind,
            name,
            now,
        })
        .allowed
    }

    /// What the policy knows about a tool (undeclared tools need `low` and have no side effect).
    pub fn tool_facts(&self, tool: &str) -> ToolFacts {
        self.facts(TargetKind::Tool, tool)
    }

    /// What the policy knows about a tool, prompt or resource.
    pub fn facts(&self, kind: TargetKind, name: &str) -> ToolFacts {
        self.declaration(kind, name)
            .map_or(ToolFacts::UNDECLARED, ToolFacts::of)
    }

    /// The server's declaration of a tool, prompt or resource. A resource is declared by its
    /// exact URI, else by the longest declared prefix (a name ending in `*`) that starts it.
    #[inline]
    fn declaration(&self, kind: TargetKind, name: &str) -> Option<&ToolPolicy> {
        let (index, items) = match kind {
            TargetKind::Tool => (&self.tools, &self.doc.tools),
            TargetKind::Prompt => (&self.prompts, &self.doc.prompts),
            TargetKind::Resource => (&self.resources, &self.doc.resources),
        };
        let found = index.get(name).copied().or_else(|| {
            (kind == TargetKind::Resource)
                .then(|| {
                    self.resource_prefixes.iter().copied().find(|&i| {
                        let pattern = &items[i as usize].name;
                        name.starts_with(&pattern[..pattern.len() - 1])
                    })
                })
                .flatten()
        });
        found.map(|i| &items[i as usize])
    }

    fn find_session(&self, id: &str, who: &Identity<'_>) -> Option<&SessionPolicy> {
        let (namespace, name) = id
            .split_once('/')
            .unwrap_or((self.doc.server.namespace.as_str(), id));
        let ids = self.sessions.get(&self.keys.of(&[namespace, name]))?;
        // The last of equal names wins, as in a map filled in document order (validation rejects
        // duplicates anyway).
        let session = ids
            .as_slice()
            .iter()
            .rev()
            .map(|&i| &self.doc.sessions[i as usize])
            .find(|s| s.namespace == namespace && s.name == name)?;
        subject_matches(&session.subject, who).then_some(session)
    }

    /// Grants that name the caller: all of them (`full`), or only those covering `tool`.
    fn matching_grants<'s, 'w>(
        &'s self,
        who: &'w Identity<'w>,
        tool: &'w str,
        full: bool,
    ) -> impl Iterator<Item = &'s GrantPolicy> + use<'s, 'w> {
        let ids = move |index: &'s KeyMap<Bucket>, key: Option<&'w str>| {
            let bucket = key
                .filter(|_| !index.is_empty())
                .and_then(|k| index.get(&self.keys.of(&[k])));
            let (first, second): (&'s [u32], &'s [u32]) = match bucket {
                None => (&[], &[]),
                Some(b) if full => (b.all.as_slice(), &[]),
                Some(b) => (
                    b.every_tool.as_slice(),
                    b.by_tool
                        .as_ref()
                        .and_then(|m| m.get(tool))
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                ),
            };
            first.iter().chain(second)
        };
        ids(&self.by_human, who.human)
            .chain(ids(&self.by_agent, who.agent))
            .chain(ids(&self.by_team, who.team))
            .map(|&i| &self.doc.grants[i as usize])
            .filter(move |g| subject_matches(&g.subject, who))
    }

    /// Inlined into each entry point, so the decision is built where it is returned.
    #[inline(always)]
    fn evaluate_with<'p, T: Trace<'p>>(
        &'p self,
        call: &TargetCall<'_>,
        trace: &mut T,
    ) -> Decision<'p> {
        let declared = self.declaration(call.kind, call.name);
        let facts = declared.map_or(ToolFacts::UNDECLARED, ToolFacts::of);
        trace.record(|| Step::Tool {
            kind: call.kind,
            name: call.name.to_owned(),
            declared_as: declared
                .filter(|t| t.name != call.name)
                .map(|t| t.name.clone()),
            facts,
        });
        let mut d = self.fresh(facts);
        self.decide(call, facts, &mut d, trace);
        self.observe(d, trace)
    }

    fn admit_with<'p, T: Trace<'p>>(
        &'p self,
        admission: &Admission<'_>,
        trace: &mut T,
    ) -> Decision<'p> {
        let who = &admission.identity;
        let mut d = self.fresh(ToolFacts::UNDECLARED);
        if self
            .check_caller(who, admission.now, &mut d, trace)
            .is_continue()
        {
            if T::FULL {
                for grant in self.matching_grants(who, "", true) {
                    let outcome = if grant.disabled {
                        GrantVerdict::Disabled
                    } else {
                        GrantVerdict::Enabled
                    };
                    trace.record(|| Step::Grant { grant, outcome });
                }
            }
            if self.names_caller(who) {
                d.allowed = true;
                d.reason = Reason::Allowed;
            } else {
                self.by_default(&mut d, Reason::NoMatchingGrant, trace);
            }
        }
        self.observe(d, trace)
    }

    /// A decision before any step: denied, attributed to the document only.
    #[inline(always)]
    fn fresh(&self, facts: ToolFacts) -> Decision<'_> {
        Decision {
            allowed: false,
            reason: Reason::Allowed,
            enforced: self.doc.policy.mode == PolicyMode::AllowList,
            default_applied: false,
            tool: facts,
            required_trust: None,
            admin_trust: None,
            consented_trust: None,
            effective_trust: None,
            grant: None,
            session: None,
            policy_revision: &self.doc.revision,
            policy_version: self.doc.policy.policy_version.as_deref(),
        }
    }

    /// Observe mode lets every decided request through, keeping its reason.
    #[inline(always)]
    fn observe<'p>(&self, mut d: Decision<'p>, trace: &mut impl Trace<'p>) -> Decision<'p> {
        if !d.enforced {
            trace.record(|| Step::Observed {
                would_allow: d.allowed,
            });
            d.allowed = true;
        }
        d
    }

    /// Steps 1 and 2, shared by every evaluation and admission: the caller has an identity, and
    /// presents a live session when one is required or presented at all. `Break` once the
    /// decision is made; otherwise the consented trust of the session presented.
    #[inline(always)]
    fn check_caller<'p>(
        &'p self,
        who: &Identity<'_>,
        now: Timestamp,
        d: &mut Decision<'p>,
        trace: &mut impl Trace<'p>,
    ) -> ControlFlow<(), Option<Trust>> {
        trace.record(|| Step::Identity {
            human: who.human.map(str::to_owned),
            agent: who.agent.map(str::to_owned),
            team: who.team.map(str::to_owned),
        });
        if who.is_anonymous() {
            d.deny(Reason::MissingIdentity);
            return ControlFlow::Break(());
        }
        match who.session {
            None => {
                let required = self.doc.session.required;
                trace.record(|| Step::NoSessionPresented { required });
                if required {
                    d.deny(Reason::MissingSession);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(None)
            }
            Some(id) => match self.find_session(id, who) {
                None => {
                    trace.record(|| Step::SessionMissing {
                        presented: id.to_owned(),
                    });
                    d.deny(Reason::SessionNotFound);
                    ControlFlow::Break(())
                }
                Some(s) => {
                    let expired = s.expires_at.is_some_and(|at| now >= at);
                    trace.record(|| Step::SessionFound {
                        session: s,
                        live: !s.revoked && !expired,
                    });
                    d.session = Some(s);
                    d.consented_trust = Some(s.consented_trust);
                    if let Some(v) = s.policy_version.as_deref() {
                        d.policy_version = Some(v);
                    }
                    if s.revoked {
                        d.deny(Reason::SessionRevoked);
                        return ControlFlow::Break(());
                    }
                    if expired {
                        d.deny(Reason::SessionExpired);
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(Some(s.consented_trust))
                }
            },
        }
    }

    /// Step 3: some enabled grant names the caller.
    fn names_caller(&self, who: &Identity<'_>) -> bool {
        self.matching_grants(who, "", true).any(|g| !g.disabled)
    }

    /// Inlined too: for `evaluate` the kind is then a constant, and the tool path is what it
    /// was before prompts and resources.
    #[inline(always)]
    fn decide<'p, T: Trace<'p>>(
        &'p self,
        call: &TargetCall<'_>,
        facts: ToolFacts,
        d: &mut Decision<'p>,
        trace: &mut T,
    ) {
        let who = &call.identity;
        let ControlFlow::Continue(consented) = self.check_caller(who, call.now, d, trace) else {
            return;
        };

        // Only tools are indexed by the rules naming them; prompts and resources (rare, and
        // resource rules may be prefixes) look at every grant naming the caller.
        let full = T::FULL || call.kind != TargetKind::Tool;
        let mut matched_any = false;
        let mut denied_by: Option<&GrantPolicy> = None;
        let mut covers_tool = false;
        let mut side_effect_ok = false;
        // Best grant that authorises the call, and best one that falls short on trust.
        let mut best_pass: Option<Candidate<'p>> = None;
        let mut best_fail: Option<Candidate<'p>> = None;

        for grant in self.matching_grants(who, call.name, full) {
            if grant.disabled {
                trace.record(|| Step::Grant {
                    grant,
                    outcome: GrantVerdict::Disabled,
                });
                continue;
            }
            matched_any = true;
            let rule = rule_for(&grant.tool_rules, call.kind, call.name);
            let covered = match rule {
                Some(r) if r.decision == Verdict::Deny => {
                    trace.record(|| Step::Grant {
                        grant,
                        outcome: GrantVerdict::DeniesTool,
                    });
                    if denied_by.is_none_or(|g| key(grant) < key(g)) {
                        denied_by = Some(grant);
                    }
                    continue;
                }
                Some(_) => true,
                None => grant.tool_rules.is_empty(),
            };
            if !covered {
                trace.record(|| Step::Grant {
                    grant,
                    outcome: GrantVerdict::DoesNotCoverTool,
                });
                continue;
            }
            covers_tool = true;
            let Some(side_effect) = facts.side_effect else {
                trace.record(|| Step::Grant {
                    grant,
                    outcome: GrantVerdict::SideEffectUnknown,
                });
                continue;
            };
            if !grant.allowed_side_effects.contains(&side_effect) {
                trace.record(|| Step::Grant {
                    grant,
                    outcome: GrantVerdict::SideEffectNotAllowed,
                });
                continue;
            }
            side_effect_ok = true;
            let required = facts
                .required_trust
                .max(rule.and_then(|r| r.required_trust).unwrap_or(Trust::Low));
            let effective = consented.map_or(grant.max_trust, |c| c.min(grant.max_trust));
            let candidate = Candidate {
                grant,
                required,
                effective,
            };
            if effective >= required {
                trace.record(|| Step::Grant {
                    grant,
                    outcome: GrantVerdict::TrustSufficient {
                        effective,
                        required,
                    },
                });
                if best_pass.is_none_or(|b| candidate.better_than(&b)) {
                    best_pass = Some(candidate);
                }
            } else {
                trace.record(|| Step::Grant {
                    grant,
                    outcome: GrantVerdict::TrustTooLow {
                        effective,
                        required,
                    },
                });
                if best_fail.is_none_or(|b| candidate.better_than(&b)) {
                    best_fail = Some(candidate);
                }
            }
        }

        if let Some(grant) = denied_by {
            d.attribute(grant);
            return d.deny(Reason::ToolDenied);
        }
        // Grants that do not speak about the tool were skipped; they still decide between
        // `no_matching_grant` and `tool_not_granted`.
        if !matched_any && !full {
            matched_any = self.names_caller(who);
        }
        if !matched_any {
            return self.by_default(d, Reason::NoMatchingGrant, trace);
        }
        if !covers_tool {
            return self.by_default(d, Reason::ToolNotGranted, trace);
        }
        if facts.side_effect.is_none() {
            return d.deny(Reason::ToolSideEffectUnknown);
        }
        if !side_effect_ok {
            return d.deny(Reason::SideEffectNotAllowed);
        }
        match (best_pass, best_fail) {
            (Some(c), _) => {
                c.apply(d);
                d.allowed = true;
                d.reason = Reason::Allowed;
            }
            (None, Some(c)) => {
                c.apply(d);
                d.deny(Reason::TrustTooLow);
            }
            (None, None) => unreachable!("a side-effect-permitting grant is always a candidate"),
        }
    }

    fn by_default<'p>(&self, d: &mut Decision<'p>, reason: Reason, trace: &mut impl Trace<'p>) {
        let decision = self.doc.policy.default_decision;
        trace.record(|| Step::DefaultDecision { decision });
        d.reason = reason;
        d.default_applied = true;
        d.allowed = decision == Verdict::Allow;
    }
}

impl<'p> Decision<'p> {
    fn deny(&mut self, reason: Reason) {
        self.allowed = false;
        self.reason = reason;
    }

    fn attribute(&mut self, grant: &'p GrantPolicy) {
        self.grant = Some(grant);
        self.admin_trust = Some(grant.max_trust);
        if let Some(v) = grant.policy_version.as_deref() {
            self.policy_version = Some(v);
        }
    }
}

#[derive(Clone, Copy)]
struct Candidate<'p> {
    grant: &'p GrantPolicy,
    required: Trust,
    effective: Trust,
}

impl<'p> Candidate<'p> {
    /// Prefers the widest margin, then the lower requirement, then namespace/name order, so the
    /// attribution does not depend on index order.
    fn better_than(&self, other: &Self) -> bool {
        let margin = |c: &Self| c.effective as i8 - c.required as i8;
        (
            margin(self),
            std::cmp::Reverse(self.required),
            std::cmp::Reverse(key(self.grant)),
        ) > (
            margin(other),
            std::cmp::Reverse(other.required),
            std::cmp::Reverse(key(other.grant)),
        )
    }

    fn apply(self, d: &mut Decision<'p>) {
        d.attribute(self.grant);
        d.required_trust = Some(self.required);
        d.effective_trust = Some(self.effective);
    }
}

fn key(g: &GrantPolicy) -> (&str, &str) {
    (&g.namespace, &g.name)
}

/// What a grant's rules (sorted by name) say about a call, when some rule names it.
#[derive(Clone, Copy)]
struct RuleSays {
    decision: Verdict,
    required_trust: Option<Trust>,
}

impl From<&ToolRule> for RuleSays {
    fn from(r: &ToolRule) -> Self {
        RuleSays {
            decision: r.decision,
            required_trust: r.required_trust,
        }
    }
}

/// The rules naming a tool (`name`), a prompt (`prompt:name`) or a resource (`resource:uri`,
/// or `resource:prefix*`). Several rules of one grant can name a resource: a deny among them
/// wins, otherwise the highest required trust applies.
#[inline(always)]
fn rule_for(rules: &[ToolRule], kind: TargetKind, name: &str) -> Option<RuleSays> {
    if kind == TargetKind::Tool {
        // The hot path, inlined into the grant loop: one exact name, no prefix to compare.
        return rules
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
            .map(|i| RuleSays::from(&rules[i]));
    }
    prompt_or_resource_rule(rules, kind, name)
}

#[inline(never)]
fn prompt_or_resource_rule(rules: &[ToolRule], kind: TargetKind, name: &str) -> Option<RuleSays> {
    let prefix = kind.rule_prefix();
    let exact = |r: &ToolRule| cmp_prefixed(&r.name, prefix, name);
    let found = rules
        .binary_search_by(exact)
        .ok()
        .map(|i| RuleSays::from(&rules[i]));
    if kind != TargetKind::Resource {
        return found;
    }
    let first = rules.partition_point(|r| r.name.as_str() < prefix);
    rules[first..]
        .iter()
        .take_while(|r| r.name.starts_with(prefix))
        .filter(|r| {
            r.name
                .strip_prefix(prefix)
                .and_then(|p| p.strip_suffix('*'))
                .is_some_and(|p| name.starts_with(p))
        })
        .map(RuleSays::from)
        .fold(found, |acc, r| {
            Some(match acc {
                None => r,
                Some(a) if a.decision == Verdict::Deny => a,
                Some(_) if r.decision == Verdict::Deny => r,
                Some(a) => RuleSays {
                    decision: Verdict::Allow,
                    required_trust: a.required_trust.max(r.required_trust),
                },
            })
        })
}

/// Compares `rule` with `prefix` followed by `name`, without building that string.
fn cmp_prefixed(rule: &str, prefix: &str, name: &str) -> Ordering {
    rule.bytes().cmp(prefix.bytes().chain(name.bytes()))
}

fn subject_matches(subject: &Subject, who: &Identity<'_>) -> bool {
    let field =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == have);
    !subject.is_empty()
        && field(&subject.human_id, who.human)
        && field(&subject.agent_id, who.agent)
        && field(&subject.team_id, who.team)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_order_and_a_single_id_inline() {
        let mut ids = Ids::default();
        assert!(ids.as_slice().is_empty());
        ids.push(7);
        assert!(matches!(ids, Ids::One(7)));
        ids.push(3);
        assert!(matches!(&ids, Ids::Many(many) if many.len() == 2));
        let mut ids = Ids::One(7);
        assert_eq!(ids.as_slice(), &[7]);
        ids.push(3);
        ids.push(9);
        assert_eq!(ids.as_slice(), &[7, 3, 9]);
    }

    #[test]
    fn colliding_keys_never_mix_callers() {
        // Every subject and every session on one key: decisions must not change.
        let doc: PolicyDocument = serde_json::from_value(serde_json::json!({
            "schema_version": crate::document::SCHEMA_VERSION,
            "server": {"name": "s", "namespace": "ns"},
            "policy": {"mode": "allow-list", "default_decision": "deny"},
            "tools": [
                {"name": "echo", "required_trust": "low", "side_effect": "read"},
                {"name": "wipe", "required_trust": "high", "side_effect": "destructive"}
            ],
            "grants": [
                {"namespace": "ns", "name": "g-alice", "subject": {"human_id": "alice"},
                 "max_trust": "high", "allowed_side_effects": ["read", "destructive"]},
                {"namespace": "ns", "name": "g-bob", "subject": {"human_id": "bob"},
                 "max_trust": "high", "allowed_side_effects": ["read"], "disabled": true},
                {"namespace": "ns", "name": "g-claude", "subject": {"agent_id": "claude"},
                 "max_trust": "low", "allowed_side_effects": ["read"],
                 "tool_rules": [{"name": "echo", "decision": "allow"}]},
                {"namespace": "ns", "name": "g-team", "subject": {"team_id": "alice"},
                 "max_trust": "medium", "allowed_side_effects": ["read"]}
            ],
            "sessions": [
                {"namespace": "ns", "name": "s-alice", "subject": {"human_id": "alice"},
                 "consented_trust": "high"},
                {"namespace": "ns", "name": "s-bob", "subject": {"human_id": "bob"},
                 "consented_trust": "high"},
                {"namespace": "other", "name": "s-alice", "subject": {"human_id": "bob"},
                 "consented_trust": "low", "revoked": true}
            ]
        }))
        .unwrap();
        let normal = Policy::new(doc.clone());
        let colliding = Policy::compile(doc, Keys::Colliding);
        let people = [None, Some("alice"), Some("bob"), Some("carol")];
        let agents = [None, Some("claude")];
        let sessions = [
            None,
            Some("s-alice"),
            Some("s-bob"),
            Some("other/s-alice"),
            Some("x"),
        ];
        let now = Timestamp::now();
        let mut calls = 0;
        for human in people {
            for agent in agents {
                for team in people {
                    for session in sessions {
                        for tool in ["echo", "wipe", "nope"] {
                            let call = ToolCall {
                                identity: Identity::new(human, agent, team, session),
                                tool,
                                now,
                            };
                            let (a, b) = (normal.evaluate(&call), colliding.evaluate(&call));
                            let seen = |d: &Decision<'_>| {
                                (d.allowed, d.reason, d.grant_ref(), d.session_ref())
                            };
                            assert_eq!(seen(&a), seen(&b), "{call:?}");
                            let (_, steps_a) = normal.explain(&call);
                            let (_, steps_b) = colliding.explain(&call);
                            assert_eq!(
                                serde_json::to_string(&steps_a).unwrap(),
                                serde_json::to_string(&steps_b).unwrap()
                            );
                            calls += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(calls, 4 * 2 * 4 * 5 * 3);
    }

    #[test]
    fn a_bucket_stays_small() {
        // One per subject: 10 000 single-grant subjects must not cost a megabyte more each field.
        assert_eq!(std::mem::size_of::<Ids>(), 16);
        assert_eq!(std::mem::size_of::<Bucket>(), 40);
    }
}
