//! The one error classifier for everything that talks to Keystone and Glance (no I/O).
//!
//! Every non-success HTTP answer and every transport failure becomes one [`Error`] here, in
//! four kinds the controller can act on without looking at HTTP codes: not found, conflict,
//! terminal (needs a person) and transient (retry with backoff, honouring `Retry-After`).
//! Messages carry what was being done (with the ids) and a short summary of the server's
//! answer; they never contain request headers, tokens or passwords.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderValue;

/// Longest server message kept in an error, in characters.
pub(super) const MAX_DETAIL_CHARS: usize = 200;
/// Longest `Retry-After` honoured; a larger value is clamped to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// Why an error needs a person rather than a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TerminalKind {
    /// Keystone or Glance refused the credentials (HTTP 401 after a fresh token).
    CredentialsInvalid,
    /// The credential is valid but not allowed to do this (HTTP 403).
    Forbidden,
    /// Glance's per-image member limit is reached (HTTP 413).
    MemberQuotaExceeded,
    /// The request was refused as invalid (HTTP 400 and other 4xx), or cannot be answered
    /// in full as asked (a Keystone list cut short by its `list_limit`).
    BadRequest,
    /// The cloud configuration cannot work: bad URL, no image endpoint in the catalog,
    /// unusable CA bundle, unexpected redirect.
    Config,
}

/// A failed Keystone or Glance call, classified once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The thing does not exist or is not visible to this credential (HTTP 404).
    #[error("{what}: not found")]
    NotFound {
        /// What was being done, with the ids involved.
        what: String,
    },
    /// The change conflicts with the current state, e.g. the member already exists (HTTP 409).
    #[error("{what}: conflict")]
    Conflict {
        /// What was being done, with the ids involved.
        what: String,
    },
    /// Retrying will not help until a person changes something.
    #[error("{message}")]
    Terminal {
        /// Which kind of person-needed problem this is.
        kind: TerminalKind,
        /// Readable detail with the ids involved.
        message: String,
    },
    /// A passing fault (5xx, 429, timeout, connection error): retry with backoff.
    #[error("{message}")]
    Transient {
        /// Readable detail with the ids involved.
        message: String,
        /// How long the server asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
}

impl Error {
    /// The server-requested delay before retrying, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether retrying soon may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }

    /// A terminal configuration error.
    pub fn config(message: impl Into<String>) -> Error {
        Error::Terminal {
            kind: TerminalKind::Config,
            message: message.into(),
        }
    }

    /// A transient error without a server-requested delay.
    pub fn transient(message: impl Into<String>) -> Error {
        Error::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// Classifies a reqwest failure (no HTTP status reached us): timeouts, connection and
    /// body errors are transient; a request that could not even be built is a config error.
    pub fn transport(what: &str, err: &reqwest::Error) -> Error {
        let kind = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "connection failed"
        } else if err.is_builder() {
            "invalid request"
        } else if err.is_redirect() {
            "too many redirects"
        } else if err.is_body() || err.is_decode() {
            "reading the response failed"
        } else {
            "request failed"
        };
        let message = format!("{what}: {kind}: {}", error_chain(err));
        if err.is_builder() {
            Error::config(message)
        } else {
            Error::transient(message)
        }
    }

    /// A 2xx answer whose body is not what the API documents: treated as transient (a proxy
    /// or a half-started service), so it is retried with backoff. The detail (a decoding
    /// error may quote the body) is kept to one line of at most [`MAX_DETAIL_CHARS`].
    pub fn unexpected(what: &str, detail: impl std::fmt::Display) -> Error {
        let detail: String = detail
            .to_string()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let detail = truncate(&collapse_whitespace(&detail), MAX_DETAIL_CHARS);
        Error::transient(format!("{what}: unexpected response: {detail}"))
    }

    /// Replaces every occurrence of `secret` in the message with `***` (defence in depth for
    /// servers that echo input back in validation errors).
    pub fn redact(self, secret: &str) -> Error {
        if secret.is_empty() {
            return self;
        }
        let clean = |s: String| s.replace(secret, "***");
        match self {
            Error::NotFound { what } => Error::NotFound { what: clean(what) },
            Error::Conflict { what } => Error::Conflict { what: clean(what) },
            Error::Terminal { kind, message } => Error::Terminal {
                kind,
                message: clean(message),
            },
            Error::Transient {
                message,
                retry_after,
            } => Error::Transient {
                message: clean(message),
                retry_after,
            },
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(err: reqwest::Error) -> Self {
        Error::transport("openstack request", &err)
    }
}

/// Classifies a non-success HTTP answer. `what` says what was being done, with the ids
/// involved (e.g. `add member 3f2e… to image 1c77…`); `body` is the raw response body.
pub fn classify(
    status: StatusCode,
    retry_after_header: Option<&HeaderValue>,
    body: &str,
    what: &str,
) -> Error {
    let detail = summarise_body(body);
    let message = |label: &str| {
        let code = status.as_u16();
        if detail.is_empty() {
            format!("{what}: {label} (http {code})")
        } else {
            format!("{what}: {label} (http {code}): {detail}")
        }
    };
    let retry_after = retry_after_header.and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
    let terminal = |kind, label: &str| Error::Terminal {
        kind,
        message: message(label),
    };
    match status.as_u16() {
        404 => Error::NotFound {
            what: what.to_owned(),
        },
        409 => Error::Conflict {
            what: what.to_owned(),
        },
        401 => terminal(TerminalKind::CredentialsInvalid, "credentials rejected"),
        403 => terminal(TerminalKind::Forbidden, "forbidden"),
        // Some rate limiters answer 413 with Retry-After; Glance's member quota does not.
        413 if retry_after.is_some() => Error::Transient {
            message: message("rate limited"),
            retry_after,
        },
        413 => terminal(TerminalKind::MemberQuotaExceeded, "member quota exceeded"),
        429 => Error::Transient {
            message: message("rate limited"),
            retry_after,
        },
        400..=499 => terminal(TerminalKind::BadRequest, "request rejected"),
        500..=599 => Error::Transient {
            message: message("server error"),
            retry_after,
        },
        300..=399 => terminal(TerminalKind::Config, "unexpected redirect; check the url"),
        _ => Error::Transient {
            message: message("unexpected status"),
            retry_after,
        },
    }
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP-date (relative to `now`; a date
/// in the past means no wait). Values above [`MAX_RETRY_AFTER`] are clamped.
pub fn parse_retry_after(value: &HeaderValue, now: jiff::Timestamp) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    let delay = if let Ok(seconds) = text.parse::<u64>() {
        Duration::from_secs(seconds)
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // More seconds than a u64 holds: above the cap all the same.
        MAX_RETRY_AFTER
    } else {
        let at = jiff::fmt::rfc2822::DateTimeParser::new()
            .parse_timestamp(text)
            .ok()?;
        let millis = at.as_millisecond().saturating_sub(now.as_millisecond());
        Duration::from_millis(u64::try_from(millis).unwrap_or(0))
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// A short, single-line summary of an error body: the message from the JSON shapes Keystone
/// and Glance use, or the text of an HTML page, or the trimmed raw text; at most
/// [`MAX_DETAIL_CHARS`] characters.
pub fn summarise_body(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(json) => json_message(&json).unwrap_or_else(|| json.to_string()),
        Err(_) if looks_like_html(body) => html_text(body),
        Err(_) => body.to_owned(),
    };
    truncate(&collapse_whitespace(&strip_tags(&text)), MAX_DETAIL_CHARS)
}

/// The message inside the JSON error shapes OpenStack services use.
fn json_message(json: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let obj = json.as_object()?;
    // Keystone: {"error": {"code", "title", "message"}}; some services: {"error": "..."}.
    if let Some(err) = obj.get("error") {
        if let Some(s) = err.as_str() {
            return Some(s.to_owned());
        }
        if let Some(m) = text(err.get("message")).or_else(|| text(err.get("title"))) {
            return Some(m);
        }
    }
    // Glance/webob: {"message", "code", "title"}; falcon style: {"title", "description"}.
    if let Some(m) = text(obj.get("message")).or_else(|| text(obj.get("description"))) {
        return Some(m);
    }
    // API-SIG: {"errors": [{"title", "detail"}]}.
    let first = obj
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    if let Some(m) = first.and_then(|f| text(f.get("detail")).or_else(|| text(f.get("title")))) {
        return Some(m);
    }
    // Nova style: {"itemNotFound": {"message", "code"}}.
    obj.values()
        .find_map(|v| text(v.get("message")))
        .or_else(|| text(obj.get("title")))
}

fn looks_like_html(body: &str) -> bool {
    let head: String = body
        .chars()
        .take(200)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with('<') || head.contains("<html") || head.contains("<body")
}

/// The visible text of an HTML page, without its `<head>` (the title repeats the status).
fn html_text(body: &str) -> String {
    let lower = body.to_ascii_lowercase();
    match (lower.find("<head"), lower.find("</head>")) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{}", &body[..start], &body[end + "</head>".len()..])
        }
        _ => body.to_owned(),
    }
}

/// Removes `<...>` tags (Glance puts `<br />` even in JSON messages).
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// An error and its sources, joined with `: ` (reqwest keeps the useful part in sources).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).expect("valid status")
    }

    fn classify_plain(code: u16, body: &str) -> Error {
        classify(status(code), None, body, "add member p1 to image i1")
    }

    #[test]
    fn not_found_names_the_operation() {
        let err = classify_plain(404, "");
        assert_eq!(
            err,
            Error::NotFound {
                what: "add member p1 to image i1".into()
            }
        );
        assert_eq!(err.to_string(), "add member p1 to image i1: not found");
    }

    #[test]
    fn conflict_is_its_own_kind() {
        assert!(matches!(classify_plain(409, "{}"), Error::Conflict { .. }));
    }

    #[test]
    fn each_terminal_status_maps_to_its_kind() {
        let kind = |code| match classify_plain(code, "") {
            Error::Terminal { kind, .. } => Some(kind),
            _ => None,
        };
        assert_eq!(kind(401), Some(TerminalKind::CredentialsInvalid));
        assert_eq!(kind(403), Some(TerminalKind::Forbidden));
        assert_eq!(kind(413), Some(TerminalKind::MemberQuotaExceeded));
        assert_eq!(kind(400), Some(TerminalKind::BadRequest));
        assert_eq!(kind(422), Some(TerminalKind::BadRequest));
        assert_eq!(kind(300), Some(TerminalKind::Config));
    }

    #[test]
    fn server_errors_and_rate_limits_are_transient() {
        for code in [500, 502, 503, 504, 429] {
            let err = classify_plain(code, "");
            assert!(err.is_transient(), "{code} should be transient");
        }
    }

    #[test]
    fn retry_after_seconds_is_honoured() {
        let header = HeaderValue::from_static("17");
        let err = classify(status(503), Some(&header), "", "list images");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(17)));
    }

    #[test]
    fn retry_after_http_date_is_relative_to_now() {
        let now: jiff::Timestamp = "2015-10-21T07:28:00Z".parse().expect("timestamp");
        let header = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:30 GMT");
        assert_eq!(
            parse_retry_after(&header, now),
            Some(Duration::from_secs(30))
        );
        let past = HeaderValue::from_static("Wed, 21 Oct 2015 07:00:00 GMT");
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn absurd_retry_after_is_clamped_and_garbage_ignored() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let huge = HeaderValue::from_static("999999999");
        assert_eq!(parse_retry_after(&huge, now), Some(MAX_RETRY_AFTER));
        let garbage = HeaderValue::from_static("soon");
        assert_eq!(parse_retry_after(&garbage, now), None);
        // Found by a property test: a count too large for a u64 was ignored, not clamped.
        let beyond_u64 = HeaderValue::from_static("100000000000000000000");
        assert_eq!(parse_retry_after(&beyond_u64, now), Some(MAX_RETRY_AFTER));
        let negative = HeaderValue::from_static("-5");
        assert_eq!(parse_retry_after(&negative, now), None);
    }

    #[test]
    fn rate_limit_on_413_with_retry_after_is_transient() {
        let header = HeaderValue::from_static("5");
        let err = classify(status(413), Some(&header), "", "list images");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn terminal_errors_have_no_retry_after() {
        let header = HeaderValue::from_static("5");
        let err = classify(status(403), Some(&header), "", "x");
        assert_eq!(err.retry_after(), None);
        assert!(!err.is_transient());
    }

    #[test]
    fn keystone_json_error_message_is_extracted() {
        let body = r#"{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}"#;
        let err = classify(
            status(401),
            None,
            body,
            "keystone authentication for cloud c1",
        );
        assert_eq!(
            err.to_string(),
            "keystone authentication for cloud c1: credentials rejected (http 401): \
             The request you have made requires authentication."
        );
    }

    #[test]
    fn glance_json_error_message_loses_its_html_breaks() {
        let body = r#"{"message": "You are not authorized to complete add_member action.<br /><br />\n\n\n", "code": "403 Forbidden", "title": "Forbidden"}"#;
        let err = classify_plain(403, body);
        assert_eq!(
            err.to_string(),
            "add member p1 to image i1: forbidden (http 403): \
             You are not authorized to complete add_member action."
        );
    }

    #[test]
    fn glance_html_error_body_is_summarised() {
        let body = "<html>\n <head>\n  <title>413 Request Entity Too Large</title>\n </head>\n \
                    <body>\n  <h1>413 Request Entity Too Large</h1>\n  The limit has been exceeded \
                    on the number of allowed image members for this image. Attempted: 129, \
                    Maximum: 128<br /><br />\n\n\n\n </body>\n</html>";
        let err = classify_plain(413, body);
        assert_eq!(
            err.to_string(),
            "add member p1 to image i1: member quota exceeded (http 413): 413 Request Entity \
             Too Large The limit has been exceeded on the number of allowed image members for \
             this image. Attempted: 129, Maximum: 128"
        );
    }

    #[test]
    fn other_json_error_shapes_are_understood() {
        assert_eq!(
            summarise_body(r#"{"errors":[{"title":"Bad","detail":"marker is invalid"}]}"#),
            "marker is invalid"
        );
        assert_eq!(
            summarise_body(r#"{"itemNotFound":{"message":"gone","code":404}}"#),
            "gone"
        );
        assert_eq!(summarise_body(r#"{"error":"plain"}"#), "plain");
        assert_eq!(summarise_body(r#"{"odd":1}"#), r#"{"odd":1}"#);
    }

    #[test]
    fn long_plain_text_body_is_truncated() {
        let body = format!("  {}  ", "x".repeat(1000));
        let summary = summarise_body(&body);
        assert_eq!(summary.chars().count(), MAX_DETAIL_CHARS);
        assert!(summary.ends_with('…'));
    }

    #[test]
    fn empty_body_gives_message_without_detail() {
        let err = classify(status(502), None, "   ", "list members of image i1");
        assert_eq!(
            err.to_string(),
            "list members of image i1: server error (http 502)"
        );
    }

    #[test]
    fn redact_removes_an_echoed_secret() {
        let err = classify_plain(400, r#"{"error":{"message":"hunter2 is not valid"}}"#);
        assert_eq!(
            err.redact("hunter2").to_string(),
            "add member p1 to image i1: request rejected (http 400): *** is not valid"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        crate::openstack::install_crypto_provider();
        let client = reqwest::Client::new();
        // Port 9 on loopback (discard) is closed on test machines.
        let err = client
            .get("http://127.0.0.1:9/")
            .send()
            .await
            .expect_err("nothing listens on port 9");
        let err = Error::transport("get image i1", &err);
        assert!(err.is_transient(), "{err}");
        assert!(
            err.to_string()
                .starts_with("get image i1: connection failed")
        );
    }
}
