//! How a proxy governs each client→server MCP method (protocol versions 2024-11-05 to
//! 2026-07-28). Anything not listed here is not MCP and is refused by a governing proxy: deny by
//! default, so a server's private method cannot become a way around the policy.

/// What a method acts on, for the methods decided against a declared item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Tool,
    Prompt,
    Resource,
}

impl TargetKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetKind::Tool => "tool",
            TargetKind::Prompt => "prompt",
            TargetKind::Resource => "resource",
        }
    }
}

/// A list whose result is filtered to what the caller may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    /// The array in `result` holding the items.
    pub const fn result_field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The field of an item that names it for the policy.
    pub const fn item_key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }

    /// What the items are.
    pub const fn target(self) -> TargetKind {
        match self {
            ListKind::Tools => TargetKind::Tool,
            ListKind::Prompts => TargetKind::Prompt,
            ListKind::Resources | ListKind::ResourceTemplates => TargetKind::Resource,
        }
    }

    pub const fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::ResourceTemplates,
    ];
}

/// How a request method is governed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Governance {
    /// Decided against the named tool, prompt or resource (see [`crate::jsonrpc::Request::target`]).
    Target(TargetKind),
    /// Admitted (live session, a grant), then the result is filtered.
    List(ListKind),
    /// Admitted (live session, a grant); carries no item to decide on.
    Admission,
    /// Not a client→server MCP request method.
    Unknown,
}

/// The governance of request method `method`.
pub fn governance(method: &str) -> Governance {
    match method {
        "tools/call" => Governance::Target(TargetKind::Tool),
        "prompts/get" => Governance::Target(TargetKind::Prompt),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            Governance::Target(TargetKind::Resource)
        }
        // Decided against the prompt or resource its `ref` names.
        "completion/complete" => Governance::Target(TargetKind::Prompt),
        "tools/list" => Governance::List(ListKind::Tools),
        "prompts/list" => Governance::List(ListKind::Prompts),
        "resources/list" => Governance::List(ListKind::Resources),
        "resources/templates/list" => Governance::List(ListKind::ResourceTemplates),
        "initialize"
        | "ping"
        | "logging/setLevel"
        | "server/discover"
        | "subscriptions/listen"
        | "tasks/get"
        | "tasks/list"
        | "tasks/result"
        | "tasks/cancel" => Governance::Admission,
        _ => Governance::Unknown,
    }
}

/// Whether a message without an `id` may be a notification with this method. A request method
/// sent without an id (`tools/call` as a notification) would otherwise reach the server
/// undecided.
pub fn is_notification_method(method: &str) -> bool {
    method.starts_with("notifications/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_method_is_decided_and_every_list_filtered() {
        assert_eq!(
            governance("tools/call"),
            Governance::Target(TargetKind::Tool)
        );
        assert_eq!(
            governance("prompts/get"),
            Governance::Target(TargetKind::Prompt)
        );
        for m in [
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
        ] {
            assert_eq!(
                governance(m),
                Governance::Target(TargetKind::Resource),
                "{m}"
            );
        }
        for kind in ListKind::ALL {
            assert_eq!(governance(kind.method()), Governance::List(kind));
        }
        assert_eq!(governance("initialize"), Governance::Admission);
        assert_eq!(governance("tools/execute"), Governance::Unknown);
        assert_eq!(
            governance("Tools/Call"),
            Governance::Unknown,
            "methods are case-sensitive"
        );
    }

    #[test]
    fn request_methods_are_not_notifications() {
        assert!(is_notification_method("notifications/initialized"));
        assert!(!is_notification_method("tools/call"));
        assert!(!is_notification_method("notification/x"));
    }
}
