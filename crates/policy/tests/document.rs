//! The rendered document's prompts and resources: canonical order, revision, validation, and
//! documents sealed before they existed.

use mcp_runtime_policy::{DocumentError, PolicyDocument, ServerRef, SideEffect, ToolPolicy, Trust};

/// Sealed by the build before prompts and resources were added to the document (main at c45746b).
const SEALED_BEFORE_PROMPTS: &str = include_str!("fixtures/v1-before-prompts.json");

fn item(name: &str) -> ToolPolicy {
    ToolPolicy {
        name: name.into(),
        required_trust: Trust::Low,
        side_effect: SideEffect::Read,
        risk_level: None,
    }
}

fn doc() -> PolicyDocument {
    PolicyDocument::new(ServerRef {
        name: "srv".into(),
        namespace: "ns".into(),
        ..Default::default()
    })
}

#[test]
fn a_document_sealed_before_prompts_and_resources_still_loads_unchanged() {
    let doc = PolicyDocument::from_json(SEALED_BEFORE_PROMPTS.as_bytes()).unwrap();
    assert!(doc.prompts.is_empty() && doc.resources.is_empty());
    assert_eq!(doc.compute_revision(), doc.revision);
    assert_eq!(
        doc.to_json_pretty(),
        SEALED_BEFORE_PROMPTS,
        "same bytes: empty lists are omitted"
    );
    let resealed = doc.clone().seal().unwrap();
    assert_eq!(
        resealed.revision, doc.revision,
        "same revision when re-sealed"
    );
}

#[test]
fn prompts_and_resources_are_sorted_and_part_of_the_revision() {
    let mut a = doc();
    a.prompts = vec![item("b"), item("a")];
    a.resources = vec![item("file:///z"), item("file:///a/*")];
    let a = a.seal().unwrap();
    let names = |v: &[ToolPolicy]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a.prompts), ["a", "b"]);
    assert_eq!(names(&a.resources), ["file:///a/*", "file:///z"]);
    let text = a.to_json_pretty();
    assert!(
        text.contains("\"prompts\": [") && text.contains("\"resources\": ["),
        "{text}"
    );
    assert_eq!(PolicyDocument::from_json(text.as_bytes()).unwrap(), a);

    let empty = doc().seal().unwrap();
    assert_ne!(a.revision, empty.revision);
    let mut changed = a.clone();
    changed.resources[0].required_trust = Trust::High;
    assert_ne!(changed.seal().unwrap().revision, a.revision);
    // Tampering with a resource is detected.
    let tampered = text.replacen(
        "\"required_trust\": \"low\"",
        "\"required_trust\": \"high\"",
        1,
    );
    assert!(matches!(
        PolicyDocument::from_json(tampered.as_bytes()),
        Err(DocumentError::RevisionMismatch { .. })
    ));
    // A prompt and a resource with the same name do not count as the same.
    let mut moved = doc();
    moved.prompts = vec![item("x")];
    let mut other = doc();
    other.resources = vec![item("x")];
    assert_ne!(
        moved.seal().unwrap().revision,
        other.seal().unwrap().revision
    );
}

#[test]
fn duplicate_or_empty_prompt_and_resource_names_are_invalid() {
    let mut d = doc();
    d.prompts = vec![item("p"), item("p")];
    d.resources = vec![item(""), item("r"), item("r")];
    let err = d.seal().unwrap_err().to_string();
    assert!(
        err.contains("prompts[1].name: duplicate prompt `p`"),
        "{err}"
    );
    assert!(
        err.contains("resources[0].name: must not be empty"),
        "{err}"
    );
    assert!(
        err.contains("resources[2].name: duplicate resource `r`"),
        "{err}"
    );
}
