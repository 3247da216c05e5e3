//! Parsing of the `Link` and `Retry-After` response headers.

use std::time::{Duration, SystemTime};

use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

/// Returns the target of the `rel="next"` link in a `Link` header value (RFC 8288), if any.
///
/// Registries send `</v2/name/tags/list?last=x&n=100>; rel="next"`; the target may be relative.
pub fn next_link(header: &str) -> Option<String> {
    for link in split_links(header) {
        let link = link.trim();
        let Some(rest) = link.strip_prefix('<') else {
            continue;
        };
        let Some(end) = rest.find('>') else {
            continue;
        };
        let target = &rest[..end];
        let params = &rest[end + 1..];

        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            let value = value.trim().trim_matches('"');
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_string());
        }
    }
    None
}

/// Splits a `Link` header into its links at the commas outside `<...>` and quotes.
fn split_links(header: &str) -> Vec<&str> {
    let mut links = Vec::new();
    let mut in_target = false;
    let mut in_quotes = false;
    let mut start = 0;
    for (index, character) in header.char_indices() {
        match character {
            '<' if !in_quotes => in_target = true,
            '>' if !in_quotes => in_target = false,
            '"' if !in_target => in_quotes = !in_quotes,
            ',' if !in_target && !in_quotes => {
                links.push(&header[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    links.push(&header[start..]);
    links
}

/// Parses a `Retry-After` value: delay seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), measured from `now`. A date in the past gives zero.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }

    let date = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let now = OffsetDateTime::from(now);
    let delay = date - now;
    Some(Duration::from_secs(delay.whole_seconds().max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_relative() {
        let header = r#"</v2/node/tags/list?last=v1.2.3&n=50>; rel="next""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("/v2/node/tags/list?last=v1.2.3&n=50")
        );
    }

    #[test]
    fn next_link_among_others() {
        let header = r#"<https://r.example/v2/a?x=1,2>; rel="prev", <https://r.example/v2/a?last=b>; rel=next"#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://r.example/v2/a?last=b")
        );
    }

    #[test]
    fn next_link_absent() {
        assert_eq!(next_link(r#"</v2/a>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn next_link_multiple_rel_values() {
        let header = r#"</v2/a?last=z>; title="a;b"; rel="last next""#;
        assert_eq!(next_link(header).as_deref(), Some("/v2/a?last=z"));
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_http_date() {
        // 2015-10-21T07:28:00Z is Unix second 1445412480.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480 - 30);
        let delay = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now);
        assert_eq!(delay, Some(Duration::from_secs(30)));
    }

    #[test]
    fn retry_after_past_date_is_zero() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480 + 30);
        let delay = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now);
        assert_eq!(delay, Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_invalid() {
        assert_eq!(parse_retry_after("soon", SystemTime::UNIX_EPOCH), None);
        assert_eq!(parse_retry_after("-5", SystemTime::UNIX_EPOCH), None);
    }
}
