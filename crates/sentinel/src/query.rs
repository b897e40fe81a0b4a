//! The query strings of the analytics API, parsed strictly: an unknown, repeated, empty or
//! malformed parameter is named in the error rather than ignored.

use std::collections::HashSet;

use jiff::{SignedDuration, Timestamp};

use crate::store::{Bucket, EventFilter, PageCursor, UsageQuery};

/// Events per page when `limit` is not given, and the most a page may hold.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Rows per usage ranking when `limit` is not given, and the most.
pub const DEFAULT_USAGE_LIMIT: usize = 10;
pub const MAX_USAGE_LIMIT: usize = 100;
/// The usage window when neither `window` nor `since` is given, and the longest accepted.
pub const DEFAULT_WINDOW: SignedDuration = SignedDuration::from_hours(24);
pub const MAX_WINDOW: SignedDuration = SignedDuration::from_hours(366 * 24);

/// The filter parameters every read route accepts (the OpenAPI document lists the same).
pub const FILTER_PARAMETERS: &[&str] = &[
    "source",
    "event_type",
    "server",
    "namespace",
    "team",
    "human",
    "agent",
    "session",
    "tool",
    "decision",
    "reason",
    "trace_id",
    "since",
    "until",
];

/// A parameter that could not be used: its name and why.
#[derive(Debug, PartialEq, Eq)]
pub struct ParamError {
    pub name: String,
    pub message: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parameter `{}`: {}", self.name, self.message)
    }
}

fn param(name: &str, why: impl std::fmt::Display) -> ParamError {
    ParamError {
        name: name.to_owned(),
        message: why.to_string(),
    }
}

/// Decodes `%XX` and `+` of a query-string component.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The decoded `name=value` pairs; each name at most once, no empty value.
fn pairs(query: &str) -> Result<Vec<(String, String)>, ParamError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name =
            percent_decode(name).ok_or_else(|| param(name, "not valid percent-encoded UTF-8"))?;
        let value =
            percent_decode(value).ok_or_else(|| param(&name, "not valid percent-encoded UTF-8"))?;
        if !seen.insert(name.clone()) {
            return Err(param(&name, "given more than once"));
        }
        if value.is_empty() {
            return Err(param(&name, "empty value"));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// Applies a filter parameter; `Ok(false)` when `name` is not one.
fn filter_param(f: &mut EventFilter, name: &str, value: String) -> Result<bool, ParamError> {
    let time = |v: &str| {
        v.parse::<Timestamp>()
            .map_err(|e| param(name, format!("not an RFC 3339 time: {e}")))
    };
    let slot = match name {
        "source" => &mut f.source,
        "event_type" => &mut f.event_type,
        "server" => &mut f.server,
        "namespace" => &mut f.namespace,
        "team" => &mut f.team,
        "human" => &mut f.human,
        "agent" => &mut f.agent,
        "session" => &mut f.session,
        "tool" => &mut f.tool,
        "reason" => &mut f.reason,
        "trace_id" => &mut f.trace_id,
        "decision" => {
            if value != "allow" && value != "deny" {
                return Err(param(name, "must be allow or deny"));
            }
            &mut f.decision
        }
        "since" => {
            f.since = Some(time(&value)?);
            return Ok(true);
        }
        "until" => {
            f.until = Some(time(&value)?);
            return Ok(true);
        }
        _ => return Ok(false),
    };
    *slot = Some(value);
    Ok(true)
}

fn bounded(name: &str, value: &str, max: usize) -> Result<usize, ParamError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| param(name, format!("must be a whole number from 1 to {max}")))
}

/// `/v1/events`: filters, `limit`, `cursor`.
#[derive(Debug, Default, PartialEq)]
pub struct EventsQuery {
    pub filter: EventFilter,
    pub limit: usize,
    pub cursor: Option<PageCursor>,
}

impl EventsQuery {
    pub fn parse(query: &str) -> Result<EventsQuery, ParamError> {
        let mut q = EventsQuery {
            limit: DEFAULT_LIMIT,
            ..EventsQuery::default()
        };
        for (name, value) in pairs(query)? {
            match name.as_str() {
                "limit" => q.limit = bounded(&name, &value, MAX_LIMIT)?,
                "cursor" => {
                    q.cursor = Some(
                        PageCursor::decode(&value)
                            .ok_or_else(|| param(&name, "not a cursor from this API"))?,
                    )
                }
                _ if filter_param(&mut q.filter, &name, value)? => {}
                _ => return Err(param(&name, "unknown parameter")),
            }
        }
        Ok(q)
    }
}

/// `/v1/stats`: filters only.
pub fn parse_filter(query: &str) -> Result<EventFilter, ParamError> {
    let mut filter = EventFilter::default();
    for (name, value) in pairs(query)? {
        if !filter_param(&mut filter, &name, value)? {
            return Err(param(&name, "unknown parameter"));
        }
    }
    Ok(filter)
}

/// A duration such as `90m`, `24h`, `7d` (one number, one unit: `m`, `h` or `d`).
pub fn parse_window(text: &str) -> Option<SignedDuration> {
    let unit = text.chars().last()?;
    let n: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    if n <= 0 {
        return None;
    }
    let hours = match unit {
        'm' => return Some(SignedDuration::from_mins(n)),
        'h' => n,
        'd' => n.checked_mul(24)?,
        _ => return None,
    };
    Some(SignedDuration::from_hours(hours))
}

/// `/v1/usage`: filters, `window` (or `since`/`until`), `bucket`, `limit`.
pub fn parse_usage(query: &str, now: Timestamp) -> Result<UsageQuery, ParamError> {
    let mut filter = EventFilter::default();
    let mut window = None;
    let mut bucket = None;
    let mut limit = DEFAULT_USAGE_LIMIT;
    for (name, value) in pairs(query)? {
        match name.as_str() {
            "window" => {
                window = Some(
                    parse_window(&value)
                        .filter(|w| *w <= MAX_WINDOW)
                        .ok_or_else(|| {
                            param(
                                &name,
                                "must be a duration such as 90m, 24h or 7d, at most 366d",
                            )
                        })?,
                )
            }
            "bucket" => {
                bucket = Some(match value.as_str() {
                    "hour" => Bucket::Hour,
                    "day" => Bucket::Day,
                    _ => return Err(param(&name, "must be hour or day")),
                })
            }
            "limit" => limit = bounded(&name, &value, MAX_USAGE_LIMIT)?,
            _ if filter_param(&mut filter, &name, value)? => {}
            _ => return Err(param(&name, "unknown parameter")),
        }
    }
    if window.is_some() && filter.since.is_some() {
        return Err(param("window", "give either `window` or `since`, not both"));
    }
    let until = filter.until.unwrap_or(now);
    let since = match (filter.since, window) {
        (Some(since), _) => since,
        (None, w) => until
            .checked_sub(w.unwrap_or(DEFAULT_WINDOW))
            .map_err(|e| param("window", e))?,
    };
    if since >= until {
        return Err(param("since", "must be before `until` (or now)"));
    }
    if until.duration_since(since) > MAX_WINDOW {
        return Err(param("since", "the window may span at most 366 days"));
    }
    Ok(UsageQuery {
        bucket: bucket.unwrap_or_else(|| Bucket::for_window(since, until)),
        filter,
        since,
        until,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_error(q: &str) -> String {
        match EventsQuery::parse(q) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn event_parameters_are_parsed_and_bad_ones_named() {
        let q = EventsQuery::parse(
            "server=hello&decision=deny&since=2026-11-24T00:00:00Z&limit=5&tool=a%20b+c&event_type=pii.check",
        )
        .unwrap();
        assert_eq!(q.filter.server.as_deref(), Some("hello"));
        assert_eq!(q.filter.decision.as_deref(), Some("deny"));
        assert_eq!(q.filter.tool.as_deref(), Some("a b c"));
        assert_eq!(q.filter.event_type.as_deref(), Some("pii.check"));
        assert_eq!(q.limit, 5);
        assert!(events_error("limit=0").contains("`limit`"));
        assert!(events_error("decision=maybe").contains("`decision`"));
        assert!(events_error("since=yesterday").contains("`since`"));
        assert!(events_error("cursor=xyz").contains("`cursor`"));
        assert!(events_error("colour=red").contains("`colour`: unknown"));
        assert!(events_error("server=a&server=b").contains("more than once"));
        assert!(events_error("server=").contains("empty value"));
        assert_eq!(events_error(""), "ok");
        assert!(
            parse_filter("limit=5")
                .unwrap_err()
                .to_string()
                .contains("`limit`")
        );
    }

    #[test]
    fn usage_window_defaults_to_a_day_and_picks_the_bucket() {
        let now: Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
        let q = parse_usage("", now).unwrap();
        assert_eq!(q.until, now);
        assert_eq!(q.since.to_string(), "2026-11-26T12:00:00Z");
        assert_eq!(q.bucket, Bucket::Hour);
        assert_eq!(q.limit, DEFAULT_USAGE_LIMIT);
        let q = parse_usage("window=7d&server=hello&limit=3", now).unwrap();
        assert_eq!(q.since.to_string(), "2026-11-20T12:00:00Z");
        assert_eq!(q.bucket, Bucket::Day);
        assert_eq!(q.filter.server.as_deref(), Some("hello"));
        let q = parse_usage("window=7d&bucket=hour", now).unwrap();
        assert_eq!(q.bucket, Bucket::Hour);
        let q = parse_usage("since=2026-11-27T10:00:00Z&until=2026-11-27T11:00:00Z", now).unwrap();
        assert_eq!(q.until.to_string(), "2026-11-27T11:00:00Z");
        for (bad, name) in [
            ("window=7w", "`window`"),
            ("window=0h", "`window`"),
            ("window=400d", "`window`"),
            ("window=1d&since=2026-11-27T10:00:00Z", "`window`"),
            ("since=2026-11-28T10:00:00Z", "`since`"),
            ("bucket=week", "`bucket`"),
            ("limit=101", "`limit`"),
            ("cursor=abc", "`cursor`: unknown"),
        ] {
            let e = parse_usage(bad, now).unwrap_err().to_string();
            assert!(e.contains(name), "{bad}: {e}");
        }
    }
}
