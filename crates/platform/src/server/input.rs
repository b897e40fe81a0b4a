//! Checks of request values; every refusal names the field.

use super::envelope::ApiError;

pub(super) fn normalize_email(email: &str, field: &str) -> Result<String, ApiError> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(e)
    } else {
        Err(ApiError::bad_request(format!(
            "{field}: `{}` is not an email address",
            email.chars().take(80).collect::<String>()
        )))
    }
}

pub(super) fn check_slug(slug: &str) -> Result<(), ApiError> {
    let ok = (1..=40).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "slug: `{}` must be 1-40 characters of a-z, 0-9 and `-`, not starting or ending \
             with `-` (it names the namespace mcp-team-<slug>)",
            slug.chars().take(60).collect::<String>()
        )))
    }
}

pub(super) fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field}: must be 1-{max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field}: control characters are not allowed"
        )));
    }
    Ok(())
}

pub(super) fn trust_name(t: mcp_runtime_policy::Trust) -> &'static str {
    match t {
        mcp_runtime_policy::Trust::Low => "low",
        mcp_runtime_policy::Trust::Medium => "medium",
        mcp_runtime_policy::Trust::High => "high",
    }
}

/// A Kubernetes object name (DNS-1123 label).
pub(super) fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field}: `{}` is not a Kubernetes name (a-z, 0-9, `-`, at most 63)",
            name.chars().take(80).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ", "email").unwrap(),
            "ann@example.com"
        );
        for bad in ["", "ann", "@x", "a@", "a b@c", "a@b@c"] {
            let e = normalize_email(bad, "email").unwrap_err();
            assert!(e.message.starts_with("email:"), "{bad}: {}", e.message);
        }
    }
}
