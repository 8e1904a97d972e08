//! Property tests of error classification and `Retry-After` (`proptest`, no I/O): any
//! status, header and body are classified by the status table; `Retry-After` is read
//! exactly and capped; error summaries are one short line; redaction removes every
//! occurrence of a secret. Shared generators are in `prop_support`.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::json;

use super::{
    Error, MAX_DETAIL_CHARS, MAX_RETRY_AFTER, TerminalKind, classify, parse_retry_after,
    summarise_body,
};
use crate::openstack::prop_support::{any_text, arb_json, cases};

/// `Retry-After` values: seconds (padded, signed, huge), HTTP dates in all three of
/// RFC 9110's formats, and any text.
fn retry_after_text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<u64>().prop_map(|s| s.to_string()),
        (0..100_000u64, select(&["", " ", "\t"][..])).prop_map(|(s, p)| format!("{p}{s}{p}")),
        (1..u64::MAX).prop_map(|s| format!("-{s}")),
        "[1-9][0-9]{20,40}",
        Just("+5".to_owned()),
        (0..253_402_300_799i64).prop_map(|s| {
            let ts = jiff::Timestamp::from_second(s).expect("in range");
            jiff::fmt::rfc2822::DateTimePrinter::new()
                .timestamp_to_rfc9110_string(&ts)
                .expect("printable")
        }),
        Just("Wednesday, 21-Oct-15 07:28:00 GMT".to_owned()),
        Just("Wed Oct 21 07:28:00 2015".to_owned()),
        Just("Wed, 21 Oct 2015 07:28:00 +0200".to_owned()),
        any_text(0..30),
    ]
    .boxed()
}

fn retry_after_header() -> BoxedStrategy<Option<HeaderValue>> {
    prop_oneof![
        1 => Just(None),
        3 => retry_after_text().prop_map(|t| HeaderValue::from_str(&t).ok()),
        1 => vec(any::<u8>(), 0..30).prop_map(|b| HeaderValue::from_bytes(&b).ok()),
    ]
    .boxed()
}

/// Bodies error answers carry: JSON error shapes, HTML pages, any JSON, any text.
fn error_body() -> BoxedStrategy<String> {
    prop_oneof![
        any_text(0..300),
        arb_json().prop_map(|v| v.to_string()),
        any_text(0..60).prop_map(|m| json!({"error": {"message": m, "code": 400}}).to_string()),
        any_text(0..60).prop_map(|m| {
            json!({"message": format!("{m}<br /><br />\n"), "code": "403"}).to_string()
        }),
        (any_text(0..30), any_text(0..300)).prop_map(|(t, b)| format!(
            "<html><head><title>{t}</title></head><body><h1>{t}</h1>{b}</body></html>"
        )),
        "[<>a-zA-Z /\n\t]{0,300}",
    ]
    .boxed()
}

/// The kind the status table gives (see [`classify`]).
#[derive(Debug, PartialEq)]
enum Kind {
    NotFound,
    Conflict,
    Terminal(TerminalKind),
    Transient,
}

fn kind_of(err: &Error) -> Kind {
    match err {
        Error::NotFound { .. } => Kind::NotFound,
        Error::Conflict { .. } => Kind::Conflict,
        Error::Terminal { kind, .. } => Kind::Terminal(*kind),
        Error::Transient { .. } => Kind::Transient,
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_status_header_and_body_are_classified_by_the_status_table(
        code in prop_oneof![100..=999u16, select(&[401u16, 403, 404, 409, 413, 429, 500, 503][..])],
        header in retry_after_header(),
        body in error_body(),
        what in any_text(0..20),
    ) {
        let status = StatusCode::from_u16(code).expect("100..=999");
        let err = classify(status, header.as_ref(), &body, &what);
        let has_delay = header
            .as_ref()
            .and_then(|h| parse_retry_after(h, jiff::Timestamp::UNIX_EPOCH))
            .is_some();
        let expected = match code {
            404 => Kind::NotFound,
            409 => Kind::Conflict,
            401 => Kind::Terminal(TerminalKind::CredentialsInvalid),
            403 => Kind::Terminal(TerminalKind::Forbidden),
            413 if has_delay => Kind::Transient,
            413 => Kind::Terminal(TerminalKind::MemberQuotaExceeded),
            429 => Kind::Transient,
            400..=499 => Kind::Terminal(TerminalKind::BadRequest),
            300..=399 => Kind::Terminal(TerminalKind::Config),
            _ => Kind::Transient,
        };
        prop_assert_eq!(kind_of(&err), expected);
        prop_assert_eq!(err.retry_after().is_some(), err.is_transient() && has_delay);
        prop_assert!(err.retry_after().is_none_or(|d| d <= MAX_RETRY_AFTER));
        if let Error::Terminal { message, .. } | Error::Transient { message, .. } = &err {
            prop_assert!(message.starts_with(&format!("{what}: ")), "{}", message);
            prop_assert!(message.contains(&format!("(http {code})")), "{}", message);
            prop_assert!(message.ends_with(&summarise_body(&body)), "{}", message);
        }
    }

    #[test]
    fn retry_after_is_at_most_the_cap_and_seconds_are_read_exactly(text in retry_after_text()) {
        let Ok(header) = HeaderValue::from_str(&text) else { return Ok(()) };
        let now = jiff::Timestamp::UNIX_EPOCH;
        let delay = parse_retry_after(&header, now);
        prop_assert!(delay.is_none_or(|d| d <= MAX_RETRY_AFTER));
        let trimmed = text.trim();
        if text.is_ascii() && !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            // Any count of seconds, even one too large for a u64, waits at most the cap.
            let expected = trimmed
                .parse::<u64>()
                .map_or(MAX_RETRY_AFTER, |s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
            prop_assert_eq!(delay, Some(expected));
        }
        if trimmed.starts_with('-') {
            prop_assert_eq!(delay, None, "a negative delay is ignored");
        }
    }

    #[test]
    fn an_http_date_waits_until_that_moment_and_not_at_all_once_past(
        at in 0..253_402_300_799i64,
        now_ms in 0..253_402_300_799_000i64,
    ) {
        let at = jiff::Timestamp::from_second(at).expect("in range");
        let now = jiff::Timestamp::from_millisecond(now_ms).expect("in range");
        let text = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&at)
            .expect("printable");
        let header = HeaderValue::from_str(&text).expect("ascii");
        let wait_ms = u64::try_from(at.as_millisecond() - now.as_millisecond()).unwrap_or(0);
        prop_assert_eq!(
            parse_retry_after(&header, now),
            Some(Duration::from_millis(wait_ms).min(MAX_RETRY_AFTER))
        );
    }

    #[test]
    fn an_error_body_summary_is_one_short_line(body in error_body()) {
        let summary = summarise_body(&body);
        prop_assert!(summary.chars().count() <= MAX_DETAIL_CHARS);
        prop_assert!(!summary.chars().any(|c| c.is_whitespace() && c != ' '), "{:?}", summary);
        prop_assert!(!summary.contains("  ") && summary.trim() == summary, "{:?}", summary);
    }

    #[test]
    fn redaction_removes_every_occurrence_of_a_secret(
        parts in vec(prop_oneof![Just(None), any_text(0..8).prop_map(Some)], 0..8),
        secret in any_text(1..8).prop_filter("no star", |s| !s.contains('*')),
    ) {
        let message: String = parts
            .iter()
            .map(|p| p.clone().unwrap_or_else(|| secret.clone()))
            .collect();
        for err in [
            Error::transient(message.clone()),
            Error::config(message.clone()),
            Error::NotFound { what: message.clone() },
            Error::Conflict { what: message },
        ] {
            let (Error::NotFound { what: text } | Error::Conflict { what: text }
            | Error::Terminal { message: text, .. } | Error::Transient { message: text, .. }) =
                err.redact(&secret);
            prop_assert!(!text.contains(&secret), "{:?}", text);
        }
    }
}
