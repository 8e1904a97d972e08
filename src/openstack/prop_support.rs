//! Shared generators of the property tests (`proptest`, no I/O), used by the `prop_tests`
//! module beside each module they test (`clouds`, `auth`, `glance`, `error`).
//!
//! Those tests check that whatever clouds.yaml text, Keystone token answer, Glance JSON
//! body, status code or `Retry-After` header arrives, the result is a value or an error,
//! never a panic; and that well-formed inputs decode to exactly what they say. Each
//! property runs 256 cases (64 for the token-lifetime one; `PROPTEST_CASES=10000 cargo test
//! prop_tests` for a longer run), without regression files: a failure found there becomes a
//! unit test next to the code it fixes.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

/// `cases` cases per property (`PROPTEST_CASES` overrides it, for a longer run), no
/// regression files written next to the sources.
pub(super) fn cases(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any characters (proptest favours ASCII, controls and odd Unicode), `len` of them.
pub(super) fn any_text(len: std::ops::Range<usize>) -> BoxedStrategy<String> {
    vec(any::<char>(), len).prop_map(String::from_iter).boxed()
}

/// URLs that are odd, wrong, or carry what an auth_url must not.
#[rustfmt::skip]
pub(super) const ODD_URLS: &[&str] = &[
    "http://user:pass@host:5000/v3", "https://[::1]:99999/", "https://[::1]:5000/identity",
    "https://ké.example/v3", "https://xn--k-9fa.example/v3", "file:///etc/passwd",
    "keystone:5000", "//host/v3", "http://", "http:///v3", "https://h/v2.0/", "https://h/v2",
    "https://h/v3?x=1", "https://h/v3#frag", "mailto:a@b", "data:text/plain,x",
    "javascript:alert(1)", "http://h/%zz", "https://h:0/", "HTTPS://H.EXAMPLE:443/V3",
    " https://h/v3 ", "https://h/v3/../v2", "https://h/\tv3", "https://h\\v3", "http://1.2.3/",
    "http://999.1.1.1/", "",
];

/// Keys that JSON trees draw from, so random bodies hit the fields decoders read.
#[rustfmt::skip]
const JSON_KEYS: &[&str] = &[
    "token", "expires_at", "issued_at", "project", "id", "catalog", "type", "endpoints",
    "interface", "region_id", "region", "url", "images", "next", "members", "image_id",
    "member_id", "status", "name", "visibility", "owner", "error", "message", "title",
    "description", "errors", "detail",
];

/// Any JSON value, with keys drawn from [`JSON_KEYS`] or any text.
pub(super) fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any_text(0..16).prop_map(Value::from),
        select(
            &[
                "image",
                "public",
                "pending",
                "accepted",
                "shared",
                "2026-11-23T13:06:06Z"
            ][..]
        )
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![select(JSON_KEYS).prop_map(str::to_owned), any_text(0..8)];
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}
