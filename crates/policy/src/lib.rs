//! The policy core of mcp-runtime: the trust model, the rendered policy document, and the
//! evaluation against it of a call of a tool, prompt or resource, or of a request's admission.
//!
//! This crate does no IO and knows nothing of Kubernetes, so the gateway stays small and the
//! operator, the CLI and the gateway decide with one implementation.

mod document;
mod engine;
mod explain;
mod model;
pub mod report;

pub use document::{
    AuthSettings, DocumentError, GrantPolicy, IdentityHeaders, PolicyDocument, PolicySettings,
    SCHEMA_VERSION, ServerRef, SessionPolicy, SessionSettings, Subject, ToolPolicy, ToolRule,
    Violation,
};
pub use engine::{
    Admission, Decision, GrantVerdict, Identity, Policy, Reason, Step, TargetCall, TargetKind,
    ToolCall, ToolFacts,
};
pub use explain::describe_step;
pub use model::{AuthMode, PolicyMode, RiskLevel, SideEffect, Trust, UnknownValue, Verdict};
