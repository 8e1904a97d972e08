//! Property tests of the decoding layer (no I/O, `proptest`): whatever clouds.yaml text,
//! Keystone token answer, Glance JSON body, status code or `Retry-After` header arrives, the
//! result is a value or an error, never a panic; and well-formed inputs decode to exactly
//! what they say (clouds.yaml fields, token project and endpoint, images and members).
//!
//! Inputs are arbitrary strings and bytes, random YAML and JSON trees, and near-valid
//! documents: valid ones with fields removed, retyped or added. Each property runs 256
//! cases (64 for the token-lifetime one; `PROPTEST_CASES=10000 cargo test prop_tests` for a
//! longer run), without regression files: a failure found here becomes a unit test next to
//! the code it fixes.

use std::time::{Duration, Instant};

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value, json};

use super::clouds::tests::TEST_PEM;
use super::error::{MAX_DETAIL_CHARS, MAX_RETRY_AFTER, parse_retry_after, summarise_body};
use super::glance::{ImagePage, MemberList, decode, glance_base, join, next_page_query};
use super::keystone::{
    CatalogEndpoint, CatalogService, REFRESH_MARGIN, needs_refresh, parse_token, select_endpoint,
};
use super::{
    Auth, CloudConfig, CloudsError, Domain, Error, Image, Interface, Member, MemberStatus, Project,
    Secret, TerminalKind, User, classify,
};

/// `cases` cases per property (`PROPTEST_CASES` overrides it, for a longer run), no
/// regression files written next to the sources.
fn cases(cases: u32) -> ProptestConfig {
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
fn any_text(len: std::ops::Range<usize>) -> BoxedStrategy<String> {
    vec(any::<char>(), len).prop_map(String::from_iter).boxed()
}

/// Text that is not blank (blank clouds.yaml values count as unset).
fn non_blank_text() -> BoxedStrategy<String> {
    any_text(1..20)
        .prop_filter("blank", |s| !s.trim().is_empty())
        .boxed()
}

// ---------------------------------------------------------------------------------------
// A small YAML writer, so generated documents are valid YAML with known contents.
// ---------------------------------------------------------------------------------------

/// A YAML node to render.
#[derive(Clone, Debug)]
enum Y {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string, always written double-quoted with escapes.
    Str(String),
    /// Written as it is (a plain scalar, or deliberately odd text).
    Raw(String),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
}

fn map(entries: Vec<(&str, Y)>) -> Y {
    Y::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// Whether `c` may appear unescaped in a double-quoted scalar (YAML's printable set, less
/// the characters YAML 1.1 treats as line breaks and the BOM).
fn yaml_printable(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}

/// A double-quoted YAML scalar for `text`.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if yaml_printable(c) => out.push(c),
            c if (c as u32) <= 0xFF => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// A node that fits on one line after `key: ` (scalars and empty collections).
fn inline(y: &Y) -> Option<String> {
    Some(match y {
        Y::Null => "null".to_owned(),
        Y::Bool(b) => b.to_string(),
        Y::Int(i) => i.to_string(),
        Y::Float(f) => format!("{f:?}"),
        Y::Str(s) => quote(s),
        Y::Raw(s) => s.clone(),
        Y::Seq(items) if items.is_empty() => "[]".to_owned(),
        Y::Map(entries) if entries.is_empty() => "{}".to_owned(),
        Y::Seq(_) | Y::Map(_) => return None,
    })
}

/// Block style: `key: value` lines and `- item` lines, indented by two per level.
fn block(y: &Y, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let line = |head: String, value: &Y, out: &mut String| match inline(value) {
        Some(text) => out.push_str(&format!("{pad}{head} {text}\n")),
        None => {
            out.push_str(&format!("{pad}{head}\n"));
            block(value, indent + 2, out);
        }
    };
    match y {
        Y::Map(entries) => {
            for (key, value) in entries {
                line(format!("{}:", quote(key)), value, out);
            }
        }
        Y::Seq(items) => {
            for item in items {
                line("-".to_owned(), item, out);
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", inline(scalar).unwrap_or_default())),
    }
}

/// Flow style: `{"key": value, ...}` and `[a, b]` on one line.
fn flow(y: &Y) -> String {
    match y {
        Y::Map(entries) => {
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}: {}", quote(k), flow(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Y::Seq(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        scalar => inline(scalar).unwrap_or_default(),
    }
}

/// The document as YAML text, block or flow style.
fn render(doc: &Y, flow_style: bool) -> String {
    if flow_style {
        flow(doc)
    } else {
        let mut out = String::from("# clouds.yaml\n---\n");
        block(doc, 0, &mut out);
        out
    }
}

/// Plain scalars YAML reads in surprising ways, and text that is not YAML at all.
#[rustfmt::skip]
const ODD_PLAIN: &[&str] = &[
    "~", "null", "Null", "yes", "No", "on", "OFF", "y", "0x1F", "0o17", "0b101", "1_000", "007",
    "-0", "+12", "1e3", "1e400", "-1e400", ".inf", "-.inf", ".nan", "0.1e-400",
    "123456789012345678901234567890", "-9223372036854775809", "18446744073709551616",
    "2001-12-14", "2001-12-14t21:59:43.10-05:00", "!!str 123", "!!int 12", "!!int abc",
    "!!float x", "!!binary aGVsbG8=", "!!binary ***", "!!null ''", "!!bool maybe", "!!map {}",
    "!!seq []", "!custom x", "&anchor value", "*undefined", "<<", "=", "@reserved", "`tick",
    "%percent", "|", ">", "? q", "- a", "a: b", "#", "'open", "\"open", "[", "]", "{", "}",
    "{a: [}", "&a [*a]", "\u{0}", "\u{85}", "\u{2028}", "\u{FEFF}x", "\u{202E}evil", "é\u{301}",
    "💥",
];

/// URLs that are odd, wrong, or carry what an auth_url must not.
#[rustfmt::skip]
const ODD_URLS: &[&str] = &[
    "http://user:pass@host:5000/v3", "https://[::1]:99999/", "https://[::1]:5000/identity",
    "https://ké.example/v3", "https://xn--k-9fa.example/v3", "file:///etc/passwd",
    "keystone:5000", "//host/v3", "http://", "http:///v3", "https://h/v2.0/", "https://h/v2",
    "https://h/v3?x=1", "https://h/v3#frag", "mailto:a@b", "data:text/plain,x",
    "javascript:alert(1)", "http://h/%zz", "https://h:0/", "HTTPS://H.EXAMPLE:443/V3",
    " https://h/v3 ", "https://h/v3/../v2", "https://h/\tv3", "https://h\\v3", "http://1.2.3/",
    "http://999.1.1.1/", "",
];

/// Keys clouds.yaml parsing looks at (top level of an entry, and under `auth`).
#[rustfmt::skip]
const TOP_KEYS: &[&str] = &[
    "auth", "auth_type", "region_name", "interface", "verify", "cacert",
    "image_endpoint_override",
];
#[rustfmt::skip]
const AUTH_KEYS: &[&str] = &[
    "auth_url", "auth_type", "username", "user_id", "password", "user_domain_name",
    "user_domain_id", "project_name", "project_id", "project_domain_name", "project_domain_id",
    "domain_name", "domain_id", "application_credential_id", "application_credential_name",
    "application_credential_secret",
];

/// Any key: one that parsing reads, or any text.
fn yaml_key() -> BoxedStrategy<String> {
    prop_oneof![
        select(TOP_KEYS).prop_map(str::to_owned),
        select(AUTH_KEYS).prop_map(str::to_owned),
        Just("clouds".to_owned()),
        any_text(0..8),
    ]
    .boxed()
}

/// Plain scalars of [`ODD_PLAIN`] that still parse: what an ignored key may hold in a
/// valid document. (Left out: malformed ones, and non-finite floats such as `1e400`, which
/// make the whole document invalid even under an ignored key.)
#[rustfmt::skip]
const PARSEABLE_PLAIN: &[&str] = &[
    "~", "null", "Null", "yes", "No", "on", "OFF", "y", "0x1F", "0o17", "0b101", "1_000", "007",
    "-0", "+12", "1e3", "123456789012345678901234567890", "-9223372036854775809",
    "18446744073709551616", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "!!str 123",
    "!!int 12", "!!binary aGVsbG8=", "!!null ''", "!!map {}", "!!seq []", "!custom x",
    "é\u{301}", "💥",
];

/// Any YAML tree: scalars of every type, odd plain scalars and URLs, nested lists and maps.
fn arb_yaml() -> BoxedStrategy<Y> {
    yaml_tree(ODD_PLAIN)
}

/// Any YAML tree that parses (see [`PARSEABLE_PLAIN`]), with unique keys.
fn parseable_yaml() -> BoxedStrategy<Y> {
    yaml_tree(PARSEABLE_PLAIN)
}

fn yaml_tree(plain: &'static [&'static str]) -> BoxedStrategy<Y> {
    let leaf = prop_oneof![
        Just(Y::Null),
        any::<bool>().prop_map(Y::Bool),
        any::<i64>().prop_map(Y::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Y::Float),
        any_text(0..12).prop_map(Y::Str),
        select(plain).prop_map(|s| Y::Raw(s.to_owned())),
        select(ODD_URLS).prop_map(|s| Y::Str(s.to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Y::Seq),
            btree_map(yaml_key(), inner, 0..6).prop_map(|m| Y::Map(m.into_iter().collect())),
        ]
    })
    .boxed()
}

// ---------------------------------------------------------------------------------------
// Valid clouds.yaml entries, with the CloudConfig they must give.
// ---------------------------------------------------------------------------------------

/// A text value and how it is written: quoted, as a plain word, or as plain digits (which
/// YAML reads as a number, and which must still come back as the same text).
fn text_value() -> BoxedStrategy<(String, Y)> {
    const KEYWORDS: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf", "infinity",
    ];
    prop_oneof![
        3 => non_blank_text().prop_map(|s| (s.clone(), Y::Str(s))),
        1 => "[A-Za-z][A-Za-z0-9_.-]{0,15}"
            .prop_filter("yaml keyword", |s| !KEYWORDS.contains(&s.to_ascii_lowercase().as_str()))
            .prop_map(|s| (s.clone(), Y::Raw(s))),
        1 => "[0-9]{1,18}".prop_map(|s| (s.clone(), Y::Raw(s))),
    ]
    .boxed()
}

/// A domain as `<prefix>_domain_id`, `<prefix>_domain_name`, or both (the id wins).
#[derive(Clone, Debug)]
enum DomainSpec {
    Id((String, Y)),
    Name((String, Y)),
    Both((String, Y), (String, Y)),
}

impl DomainSpec {
    fn expected(&self) -> Domain {
        match self {
            DomainSpec::Id((id, _)) | DomainSpec::Both((id, _), _) => Domain::Id(id.clone()),
            DomainSpec::Name((name, _)) => Domain::Name(name.clone()),
        }
    }

    /// The fields; `prefix` is `user_`, `project_` or empty (the shared default).
    fn fields(&self, prefix: &str) -> Vec<(String, Y)> {
        let id = |v: &(String, Y)| (format!("{prefix}domain_id"), v.1.clone());
        let name = |v: &(String, Y)| (format!("{prefix}domain_name"), v.1.clone());
        match self {
            DomainSpec::Id(v) => vec![id(v)],
            DomainSpec::Name(v) => vec![name(v)],
            DomainSpec::Both(i, n) => vec![id(i), name(n)],
        }
    }
}

fn domain_spec() -> BoxedStrategy<DomainSpec> {
    prop_oneof![
        text_value().prop_map(DomainSpec::Id),
        text_value().prop_map(DomainSpec::Name),
        (text_value(), text_value()).prop_map(|(i, n)| DomainSpec::Both(i, n)),
    ]
    .boxed()
}

/// A user or project by ID (with an ignored name beside it, maybe) or by name.
#[derive(Clone, Debug)]
enum Who {
    Id((String, Y), Option<(String, Y)>),
    Name((String, Y)),
}

fn who() -> BoxedStrategy<Who> {
    prop_oneof![
        (text_value(), proptest::option::of(text_value())).prop_map(|(i, n)| Who::Id(i, n)),
        text_value().prop_map(Who::Name),
    ]
    .boxed()
}

/// The `auth` fields of a valid entry, the auth_type to write (if any) and the [`Auth`].
#[derive(Clone, Debug)]
struct AuthCase {
    fields: Vec<(String, Y)>,
    auth_type: Option<String>,
    expected: Auth,
}

/// `user_id`/`username` fields and the expected [`User`]; a name takes its domain from
/// `specific` (`user_domain_*`) or else `shared` (`domain_*`).
fn user_fields(
    who: &Who,
    specific: &Option<DomainSpec>,
    shared: &DomainSpec,
) -> (Vec<(String, Y)>, User) {
    let mut fields = specific
        .iter()
        .flat_map(|d| d.fields("user_"))
        .collect::<Vec<_>>();
    let user = match who {
        Who::Id(id, name) => {
            fields.push(("user_id".into(), id.1.clone()));
            if let Some(name) = name {
                fields.push(("username".into(), name.1.clone()));
            }
            User::Id(id.0.clone())
        }
        Who::Name(name) => {
            fields.push(("username".into(), name.1.clone()));
            User::Name {
                name: name.0.clone(),
                domain: specific.as_ref().unwrap_or(shared).expected(),
            }
        }
    };
    (fields, user)
}

fn password_auth() -> BoxedStrategy<AuthCase> {
    let spelling = select(&["password", "v3password", "Password", "V3PASSWORD"][..]);
    (
        who(),
        who(),
        proptest::option::of(domain_spec()),
        proptest::option::of(domain_spec()),
        domain_spec(),
        text_value(),
        proptest::option::of(spelling),
    )
        .prop_map(
            |(user, project, user_domain, project_domain, shared, password, auth_type)| {
                let (mut fields, expected_user) = user_fields(&user, &user_domain, &shared);
                fields.extend(project_domain.iter().flat_map(|d| d.fields("project_")));
                fields.extend(shared.fields(""));
                let expected_project = match &project {
                    Who::Id(id, name) => {
                        fields.push(("project_id".into(), id.1.clone()));
                        if let Some(name) = name {
                            fields.push(("project_name".into(), name.1.clone()));
                        }
                        Project::Id(id.0.clone())
                    }
                    Who::Name(name) => {
                        fields.push(("project_name".into(), name.1.clone()));
                        Project::Name {
                            name: name.0.clone(),
                            domain: project_domain.as_ref().unwrap_or(&shared).expected(),
                        }
                    }
                };
                fields.push(("password".into(), password.1));
                AuthCase {
                    fields,
                    auth_type: auth_type.map(str::to_owned),
                    expected: Auth::Password {
                        user: expected_user,
                        password: Secret::new(password.0),
                        project: expected_project,
                    },
                }
            },
        )
        .boxed()
}

fn application_credential_auth() -> BoxedStrategy<AuthCase> {
    let spelling = select(
        &[
            "v3applicationcredential",
            "applicationcredential",
            "V3ApplicationCredential",
        ][..],
    );
    (
        text_value(),
        text_value(),
        proptest::option::of(text_value()),
        who(),
        proptest::option::of(domain_spec()),
        domain_spec(),
        spelling,
    )
        .prop_map(|(secret, by, id, user, user_domain, shared, auth_type)| {
            let mut fields = vec![("application_credential_secret".to_owned(), secret.1.clone())];
            let secret = Secret::new(secret.0);
            let expected = match id {
                // By ID: a name and a user beside it are ignored.
                Some(id) => {
                    fields.push(("application_credential_id".into(), id.1));
                    fields.push(("application_credential_name".into(), by.1));
                    Auth::ApplicationCredentialId { id: id.0, secret }
                }
                None => {
                    let (user_fields, user) = user_fields(&user, &user_domain, &shared);
                    fields.extend(user_fields);
                    fields.extend(shared.fields(""));
                    fields.push(("application_credential_name".into(), by.1));
                    Auth::ApplicationCredentialName {
                        name: by.0,
                        user,
                        secret,
                    }
                }
            };
            AuthCase {
                fields,
                auth_type: Some(auth_type.to_owned()),
                expected,
            }
        })
        .boxed()
}

/// An auth_url as written and as normalised: scheme, host (name, IPv4 or IPv6), port
/// (dropped when it is the scheme's default), path, optional `/v3`, trailing slash and
/// surrounding whitespace.
fn auth_url() -> BoxedStrategy<(String, String)> {
    let host = prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,5}){0,3}",
        "[A-Z][A-Za-z0-9]{0,8}\\.[a-z]{2,4}",
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("[::1]".to_owned()),
    ];
    let segment = "[a-z0-9_-]{1,8}".prop_filter("version segment", |s| s != "v2" && s != "v3");
    (
        select(&["http", "https", "HTTPS"][..]),
        host,
        proptest::option::of(1u16..=65535),
        vec(segment, 0..3),
        any::<bool>(),
        any::<bool>(),
        select(&["", " ", "\t", "\n"][..]),
    )
        .prop_map(|(scheme, host, port, path, v3, slash, pad)| {
            let scheme_lower = scheme.to_ascii_lowercase();
            let default = if scheme_lower == "https" { 443 } else { 80 };
            let port_text = port.map(|p| format!(":{p}")).unwrap_or_default();
            let expected_port = port
                .filter(|p| *p != default)
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let path: String = path.iter().map(|s| format!("/{s}")).collect();
            let version = if v3 { "/v3" } else { "" };
            let trailing = if slash { "/" } else { "" };
            let raw = format!("{pad}{scheme}://{host}{port_text}{path}{version}{trailing}{pad}");
            let expected = format!(
                "{scheme_lower}://{}{expected_port}{path}/v3",
                host.to_ascii_lowercase()
            );
            (raw, expected)
        })
        .boxed()
}

/// A valid clouds.yaml entry: the entry node, its cloud name, whether the Secret's cacert
/// is given, and the expected config (with `cacert: None`; checked apart).
#[derive(Clone, Debug)]
struct ValidCloud {
    name: String,
    entry: Vec<(String, Y)>,
    pem: bool,
    expected: CloudConfig,
}

impl ValidCloud {
    /// The whole document, with other clouds and top-level keys beside the entry.
    fn doc(&self, others: &[(String, Y)]) -> Y {
        let mut clouds = vec![(self.name.clone(), Y::Map(self.entry.clone()))];
        clouds.extend(others.iter().filter(|(k, _)| *k != self.name).cloned());
        Y::Map(vec![
            ("clouds".into(), Y::Map(clouds)),
            ("x-extra".into(), Y::Int(1)),
        ])
    }

    fn parse(&self, doc: &Y, flow_style: bool) -> Result<CloudConfig, CloudsError> {
        let pem = self.pem.then_some(TEST_PEM.as_bytes());
        CloudConfig::from_clouds_yaml(&render(doc, flow_style), &self.name, pem)
    }
}

/// Unknown keys (ignored by the parser) with any values.
fn unknown_fields() -> BoxedStrategy<Vec<(String, Y)>> {
    btree_map("x_[a-z]{1,8}", parseable_yaml(), 0..3)
        .prop_map(|m| m.into_iter().collect())
        .boxed()
}

/// Reorders `fields` by `seed` (deterministic, so proptest can shrink it).
fn shuffle<T>(fields: &mut [T], mut seed: u64) {
    for i in (1..fields.len()).rev() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        fields.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

fn valid_cloud() -> BoxedStrategy<ValidCloud> {
    let interface = prop_oneof![
        Just(None),
        (
            select(&[Interface::Public, Interface::Internal, Interface::Admin][..]),
            select(&["", "URL", "url"][..]),
            any::<bool>(),
            select(&["", " "][..]),
        )
            .prop_map(|(i, suffix, upper, pad)| {
                let name = if upper {
                    i.as_str().to_ascii_uppercase()
                } else {
                    i.as_str().to_owned()
                };
                Some((i, format!("{pad}{name}{suffix}{pad}")))
            }),
    ];
    let verify = prop_oneof![
        Just(None),
        any::<bool>().prop_map(|b| Some((b, Y::Bool(b)))),
        select(
            &[
                (true, "yes"),
                (true, "True"),
                (false, "no"),
                (false, "FALSE")
            ][..]
        )
        .prop_map(|(b, s)| Some((b, Y::Raw(s.to_owned())))),
        select(
            &[
                (true, " YES "),
                (true, "true"),
                (false, "No"),
                (false, " false")
            ][..]
        )
        .prop_map(|(b, s)| Some((b, Y::Str(s.to_owned())))),
    ];
    let region = prop_oneof![
        Just(None),
        text_value().prop_map(Some),
        // Blank counts as unset.
        select(&["", " ", "\t"][..]).prop_map(|s| Some((String::new(), Y::Str(s.to_owned())))),
    ];
    (
        any_text(0..12),
        auth_url(),
        prop_oneof![password_auth(), application_credential_auth()],
        select(&["top", "auth", "both"][..]),
        region,
        interface,
        verify,
        (
            any::<bool>(),
            proptest::option::of("https?://[a-z]{1,8}(:[0-9]{2,5})?(/[a-z]{0,5})?"),
        ),
        (unknown_fields(), unknown_fields(), any::<u64>()),
    )
        .prop_map(
            |(name, (raw_url, url), auth, place, region, interface, verify, more, extra)| {
                let (pem, image_endpoint_override) = more;
                let (top_extra, auth_extra, seed) = extra;
                let mut auth_fields = auth.fields;
                auth_fields.push(("auth_url".into(), Y::Str(raw_url)));
                auth_fields.extend(auth_extra);
                let mut top = top_extra;
                if let Some(auth_type) = &auth.auth_type {
                    if place != "auth" {
                        top.push(("auth_type".into(), Y::Str(auth_type.clone())));
                    }
                    if place != "top" {
                        auth_fields.push(("auth_type".into(), Y::Str(auth_type.clone())));
                    }
                }
                if let Some((_, y)) = &region {
                    top.push(("region_name".into(), y.clone()));
                }
                if let Some((_, spelled)) = &interface {
                    top.push(("interface".into(), Y::Str(spelled.clone())));
                }
                if let Some((_, y)) = &verify {
                    top.push(("verify".into(), y.clone()));
                }
                if let Some(url) = &image_endpoint_override {
                    top.push(("image_endpoint_override".into(), Y::Str(url.clone())));
                }
                let verify = verify.is_none_or(|(b, _)| b);
                if !verify {
                    // Ignored when verification is off.
                    top.push(("cacert".into(), Y::Str("/etc/ssl/corp.pem".into())));
                }
                shuffle(&mut auth_fields, seed);
                top.push(("auth".into(), Y::Map(auth_fields)));
                shuffle(&mut top, seed.rotate_left(17));
                ValidCloud {
                    expected: CloudConfig {
                        cloud_name: name.clone(),
                        auth_url: url,
                        auth: auth.expected,
                        region_name: region.map(|(r, _)| r).filter(|r| !r.is_empty()),
                        interface: interface.map_or(Interface::Public, |(i, _)| i),
                        image_endpoint_override,
                        verify,
                        cacert: None,
                    },
                    name,
                    entry: top,
                    pem,
                }
            },
        )
        .boxed()
}

/// One change that makes a valid entry near-valid.
#[derive(Clone, Debug)]
enum Mutation {
    Remove(Index),
    RemoveInAuth(Index),
    Retype(Index, Y),
    RetypeInAuth(Index, Y),
    Add(&'static str, Y),
    AddToAuth(&'static str, Y),
    ReplaceAuth(Y),
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::RemoveInAuth),
        (any::<Index>(), arb_yaml()).prop_map(|(i, y)| Mutation::Retype(i, y)),
        (any::<Index>(), arb_yaml()).prop_map(|(i, y)| Mutation::RetypeInAuth(i, y)),
        (select(TOP_KEYS), arb_yaml()).prop_map(|(k, y)| Mutation::Add(k, y)),
        (select(AUTH_KEYS), arb_yaml()).prop_map(|(k, y)| Mutation::AddToAuth(k, y)),
        arb_yaml().prop_map(Mutation::ReplaceAuth),
    ]
    .boxed()
}

/// Applies `mutation` to an entry's fields.
fn mutate(entry: &mut Vec<(String, Y)>, mutation: Mutation) {
    fn in_auth(entry: &mut [(String, Y)], f: impl FnOnce(&mut Vec<(String, Y)>)) {
        if let Some((_, Y::Map(auth))) = entry.iter_mut().find(|(k, _)| k == "auth") {
            f(auth);
        }
    }
    match mutation {
        Mutation::Remove(i) if !entry.is_empty() => {
            entry.remove(i.index(entry.len()));
        }
        Mutation::RemoveInAuth(i) => in_auth(entry, |auth| {
            if !auth.is_empty() {
                auth.remove(i.index(auth.len()));
            }
        }),
        Mutation::Retype(i, y) if !entry.is_empty() => {
            let at = i.index(entry.len());
            entry[at].1 = y;
        }
        Mutation::RetypeInAuth(i, y) => in_auth(entry, |auth| {
            if !auth.is_empty() {
                let at = i.index(auth.len());
                auth[at].1 = y;
            }
        }),
        Mutation::Add(key, y) => entry.push((key.to_owned(), y)),
        Mutation::AddToAuth(key, y) => in_auth(entry, |auth| auth.push((key.to_owned(), y))),
        Mutation::ReplaceAuth(y) => {
            entry.retain(|(k, _)| k != "auth");
            entry.push(("auth".into(), y));
        }
        Mutation::Remove(_) | Mutation::Retype(..) => {}
    }
}

/// What every successful parse must satisfy, whatever the input.
fn assert_sane(cfg: &CloudConfig, cloud: &str) {
    assert_eq!(cfg.cloud_name, cloud);
    assert!(
        cfg.auth_url.starts_with("http://") || cfg.auth_url.starts_with("https://"),
        "{}",
        cfg.auth_url
    );
    assert!(cfg.auth_url.ends_with("/v3"), "{}", cfg.auth_url);
    assert!(!cfg.auth.secret().expose().trim().is_empty());
    if let Some(region) = &cfg.region_name {
        assert!(!region.trim().is_empty());
    }
    if let Some(url) = &cfg.image_endpoint_override {
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "{url}"
        );
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_text_as_clouds_yaml_gives_a_config_or_an_error(
        text in any_text(0..200),
        cloud in prop_oneof![Just("openstack".to_owned()), any_text(0..6)],
    ) {
        if let Ok(cfg) = CloudConfig::from_clouds_yaml(&text, &cloud, None) {
            assert_sane(&cfg, &cloud);
        }
    }

    #[test]
    fn any_bytes_as_clouds_yaml_and_cacert_give_a_config_or_an_error(
        yaml in vec(any::<u8>(), 0..300),
        pem in proptest::option::of(vec(any::<u8>(), 0..300)),
    ) {
        let text = String::from_utf8_lossy(&yaml);
        let _ = CloudConfig::from_clouds_yaml(&text, "openstack", pem.as_deref());
    }

    #[test]
    fn yaml_token_soup_gives_a_config_or_an_error(
        tokens in vec(select(&[
            "clouds:", "openstack:", "auth:", "auth_url:", " http://k/v3", "password:", " pw",
            "\n", "  ", "    ", "- ", "{", "}", "[", "]", ", ", ": ", "&a ", "*a", "<<: *a",
            "!!str ", "!!binary ", "'", "\"", "|", ">-", "---", "...", "# c", "? ", "\t",
            "%YAML 1.2",
            "\u{FEFF}", "\\", "~", "1e400", "0x", "é", "\u{0}",
        ][..]), 0..60),
    ) {
        let text: String = tokens.concat();
        if let Ok(cfg) = CloudConfig::from_clouds_yaml(&text, "openstack", None) {
            assert_sane(&cfg, "openstack");
        }
    }

    #[test]
    fn random_yaml_trees_anywhere_in_the_document_give_a_config_or_an_error(
        tree in arb_yaml(),
        place in 0..5usize,
        auth in vec((select(AUTH_KEYS), arb_yaml()), 0..8),
        top in vec((select(TOP_KEYS), arb_yaml()), 0..4),
        flow_style in any::<bool>(),
    ) {
        let doc = match place {
            0 => tree,
            1 => map(vec![("clouds", tree)]),
            2 => map(vec![("clouds", map(vec![("openstack", tree)]))]),
            3 => map(vec![("clouds", map(vec![("openstack", map(vec![("auth", tree)]))]))]),
            // Known keys with random values of random types.
            _ => {
                let mut entry: Vec<(String, Y)> =
                    top.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                entry.push((
                    "auth".into(),
                    Y::Map(auth.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
                ));
                map(vec![("clouds", map(vec![("openstack", Y::Map(entry))]))])
            }
        };
        let text = render(&doc, flow_style);
        if let Ok(cfg) = CloudConfig::from_clouds_yaml(&text, "openstack", None) {
            assert_sane(&cfg, "openstack");
        }
    }

    #[test]
    fn valid_clouds_yaml_gives_exactly_the_config_it_describes(
        cloud in valid_cloud(),
        others in btree_map(any_text(0..8), parseable_yaml(), 0..3),
        flow_style in any::<bool>(),
    ) {
        let others: Vec<(String, Y)> = others.into_iter().collect();
        let doc = cloud.doc(&others);
        let parsed = cloud.parse(&doc, flow_style).map_err(|err| {
            TestCaseError::fail(format!("{err}\n{}", render(&doc, flow_style)))
        })?;
        prop_assert_eq!(
            parsed.cacert.as_ref().map(|c| c.pem().to_vec()),
            cloud.pem.then(|| TEST_PEM.as_bytes().to_vec())
        );
        prop_assert_eq!(CloudConfig { cacert: None, ..parsed }, cloud.expected);
    }

    #[test]
    fn near_valid_clouds_yaml_gives_a_config_or_an_error_that_never_shows_the_secret(
        cloud in valid_cloud(),
        mutations in vec(mutation(), 1..4),
        flow_style in any::<bool>(),
    ) {
        let mut cloud = cloud;
        for m in mutations {
            mutate(&mut cloud.entry, m);
        }
        match cloud.parse(&cloud.doc(&[]), flow_style) {
            Ok(cfg) => assert_sane(&cfg, &cloud.name),
            Err(err) => {
                let secret = cloud.expected.auth.secret().expose();
                // Short secrets can match any message by chance.
                if secret.chars().count() >= 8 {
                    prop_assert!(!err.to_string().contains(secret), "{}", err);
                }
            }
        }
    }

    #[test]
    fn a_truncated_clouds_yaml_never_shows_the_password_in_its_error(
        cloud in valid_cloud(),
        password in "pw-[A-Za-z0-9]{16}",
        cut in any::<Index>(),
        flow_style in any::<bool>(),
    ) {
        let mut cloud = cloud;
        // Every auth has exactly one secret field: make it the marker.
        if let Some((_, Y::Map(auth))) = cloud.entry.iter_mut().find(|(k, _)| k == "auth") {
            for (key, value) in auth.iter_mut() {
                if key == "password" || key == "application_credential_secret" {
                    *value = Y::Str(password.clone());
                }
            }
        }
        let text = render(&cloud.doc(&[]), flow_style);
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        let end = boundaries.get(cut.index(boundaries.len().max(1))).copied().unwrap_or(0);
        let pem = cloud.pem.then_some(TEST_PEM.as_bytes());
        if let Err(err) = CloudConfig::from_clouds_yaml(&text[..end], &cloud.name, pem) {
            prop_assert!(!err.to_string().contains(&password), "{}", err);
        }
    }

    #[test]
    fn plain_digit_values_keep_their_text(digits in "[0-9]{1,18}") {
        let auth = format!("user_id: {digits}, password: {digits}, project_id: {digits}");
        let yaml = format!("clouds: {{c: {{auth: {{auth_url: 'http://k', {auth}}}}}}}");
        let cfg = CloudConfig::from_clouds_yaml(&yaml, "c", None).expect("valid");
        prop_assert_eq!(cfg.auth.secret().expose(), digits.as_str());
    }

    #[test]
    fn odd_auth_urls_are_normalised_or_refused_without_echoing_credentials(
        url in prop_oneof![
            select(ODD_URLS).prop_map(str::to_owned),
            any_text(0..30),
            (select(&["http://", "https://", "ftp://", ""][..]), any_text(0..20))
                .prop_map(|(s, rest)| format!("{s}{rest}")),
        ],
    ) {
        let yaml = format!(
            "clouds: {{c: {{auth: {{auth_url: {}, user_id: u, password: p, project_id: x}}}}}}",
            quote(&url)
        );
        match CloudConfig::from_clouds_yaml(&yaml, "c", None) {
            Ok(cfg) => {
                assert_sane(&cfg, "c");
                let parsed = reqwest::Url::parse(&cfg.auth_url).expect("normalised url parses");
                prop_assert!(parsed.username().is_empty() && parsed.password().is_none());
                prop_assert!(parsed.query().is_none() && parsed.fragment().is_none());
            }
            Err(err) => {
                let text = err.to_string();
                let field = match &err {
                    CloudsError::Invalid { field, .. } | CloudsError::Missing { field, .. } => {
                        field.as_str()
                    }
                    _ => "",
                };
                prop_assert_eq!(field, "auth.auth_url", "{}", text);
                prop_assert!(!text.contains("pass@"), "{}", text);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Keystone token answers.
// ---------------------------------------------------------------------------------------

/// Keys that JSON trees draw from, so random bodies hit the fields decoders read.
#[rustfmt::skip]
const JSON_KEYS: &[&str] = &[
    "token", "expires_at", "issued_at", "project", "id", "catalog", "type", "endpoints",
    "interface", "region_id", "region", "url", "images", "next", "members", "image_id",
    "member_id", "status", "name", "visibility", "owner", "error", "message", "title",
    "description", "errors", "detail",
];

/// Any JSON value, with keys drawn from [`JSON_KEYS`] or any text.
fn arb_json() -> BoxedStrategy<Value> {
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

/// A `CloudConfig` for token parsing: any region (or none) and interface.
fn token_config() -> BoxedStrategy<CloudConfig> {
    (
        proptest::option::weighted(
            0.7,
            prop_oneof![
                4 => select(&["RegionOne", "RegionTwo"][..]).prop_map(str::to_owned),
                1 => any_text(0..6),
            ],
        ),
        select(&[Interface::Public, Interface::Internal, Interface::Admin][..]),
        proptest::option::weighted(0.2, "https://override[0-9]\\.example"),
    )
        .prop_map(
            |(region_name, interface, image_endpoint_override)| CloudConfig {
                region_name,
                interface,
                image_endpoint_override,
                ..token_config_fixed()
            },
        )
        .boxed()
}

/// An `X-Subject-Token` header: absent, a token, or any bytes a header can hold.
fn subject_header() -> BoxedStrategy<Option<HeaderValue>> {
    prop_oneof![
        1 => Just(None),
        3 => "[A-Za-z0-9_-]{1,40}".prop_map(|s| HeaderValue::from_str(&s).ok()),
        1 => vec(any::<u8>(), 0..20).prop_map(|b| HeaderValue::from_bytes(&b).ok()),
    ]
    .boxed()
}

/// A timestamp as Keystone might write it, or not: RFC 3339 with `Z`, microseconds or an
/// offset, and malformed, out-of-range and non-timestamp text.
fn timestamp_text() -> BoxedStrategy<String> {
    let min = jiff::Timestamp::MIN.as_second();
    let max = jiff::Timestamp::MAX.as_second();
    prop_oneof![
        4 => (min..=max, 0..1_000_000_000i32, -86_399..=86_399i32, 0..3usize).prop_map(
            |(secs, nanos, offset, style)| {
                let ts = jiff::Timestamp::new(secs, nanos)
                    .or_else(|_| jiff::Timestamp::new(secs, 0))
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                let utc = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
                match style {
                    0 => ts.to_string(),
                    // Keystone's own style: microseconds and `Z`.
                    1 => format!(
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                        utc.year(), utc.month(), utc.day(), utc.hour(), utc.minute(),
                        utc.second(), utc.subsec_nanosecond() / 1000
                    ),
                    _ => jiff::tz::Offset::from_seconds(offset)
                        .map(|o| ts.display_with_offset(o).to_string())
                        .unwrap_or_else(|_| ts.to_string()),
                }
            }
        ),
        1 => select(&[
            "", "tomorrow", "2026-11-23 13:06:06", "2026-11-23T13:06:06",
            "2026-11-23T13:06:06.000000", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
            "2026-11-23T24:00:00Z", "2026-11-23T23:59:60Z", "1700000000",
            "2026-11-23T13:06:06+25:00", "+10000-01-01T00:00:00Z", "-009999-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z", "2026-11-23T13:06:06.1234567890Z",
        ][..]).prop_map(str::to_owned),
        1 => any_text(0..30),
    ]
    .boxed()
}

/// A catalog endpoint as JSON fields: `None` means the key is absent, `Some(None)` null.
#[derive(Clone, Debug)]
struct EndpointCase {
    interface: String,
    region_id: Option<Option<String>>,
    region: Option<Option<String>>,
    url: String,
}

fn endpoint_case() -> BoxedStrategy<EndpointCase> {
    let interface = prop_oneof![
        4 => select(
            &[
                "public",
                "internal",
                "admin",
                "publicURL",
                "Internal",
                "ADMIN",
                "private",
                ""
            ][..]
        )
        .prop_map(str::to_owned),
        1 => any_text(0..8),
    ];
    // Mostly values that match, so selection has choices to get wrong.
    let region = proptest::option::weighted(
        0.8,
        proptest::option::weighted(
            0.8,
            prop_oneof![
                4 => select(&["RegionOne", "RegionTwo", "regionone"][..]).prop_map(str::to_owned),
                1 => any_text(0..6),
            ],
        ),
    );
    let url = prop_oneof![
        Just("https://glance.example:9292".to_owned()),
        "https://g[0-9]{1,3}\\.example/image",
        any_text(0..20),
    ];
    (interface, region.clone(), region, url)
        .prop_map(|(interface, region_id, region, url)| EndpointCase {
            interface,
            region_id,
            region,
            url,
        })
        .boxed()
}

/// A service: its type, and its endpoints (`None`: the key is absent).
fn service_case() -> BoxedStrategy<(String, Option<Vec<EndpointCase>>)> {
    (
        prop_oneof![
            3 => Just("image".to_owned()),
            1 => select(&["identity", "compute", "IMAGE", "image "][..]).prop_map(str::to_owned),
            1 => any_text(0..6),
        ],
        proptest::option::of(vec(endpoint_case(), 0..4)),
    )
        .boxed()
}

/// A well-typed token body: every field has the type the decoder expects, the values vary.
#[derive(Clone, Debug)]
struct TokenCase {
    expires_at: String,
    /// `None`: absent; `Some(None)`: null.
    issued_at: Option<Option<String>>,
    /// `None`: absent; `Some(None)`: null.
    project: Option<Option<String>>,
    /// `None`: absent.
    catalog: Option<Vec<(String, Option<Vec<EndpointCase>>)>>,
}

impl TokenCase {
    fn json(&self) -> Value {
        let mut token = Map::new();
        token.insert("expires_at".into(), self.expires_at.clone().into());
        token.insert("methods".into(), json!(["password"]));
        if let Some(issued) = &self.issued_at {
            token.insert("issued_at".into(), issued.clone().into());
        }
        if let Some(project) = &self.project {
            let project = project.as_ref().map_or(
                Value::Null,
                |id| json!({"id": id, "name": "golden", "domain": {"id": "default"}}),
            );
            token.insert("project".into(), project);
        }
        if let Some(catalog) = &self.catalog {
            let services: Vec<Value> = catalog
                .iter()
                .map(|(kind, endpoints)| {
                    let mut service = Map::new();
                    service.insert("type".into(), kind.clone().into());
                    service.insert("name".into(), "svc".into());
                    if let Some(endpoints) = endpoints {
                        let list: Vec<Value> = endpoints.iter().map(endpoint_json).collect();
                        service.insert("endpoints".into(), list.into());
                    }
                    Value::Object(service)
                })
                .collect();
            token.insert("catalog".into(), services.into());
        }
        json!({ "token": token })
    }

    /// The endpoint the token must carry: the config's override, or else the catalog's.
    fn expected_endpoint(&self, config: &CloudConfig) -> Option<String> {
        config
            .image_endpoint_override
            .clone()
            .or_else(|| self.catalog_endpoint(config))
    }

    /// The endpoint a correct selection picks: the first image endpoint with the config's
    /// interface, in its region (by `region_id` or `region`) when one is set.
    fn catalog_endpoint(&self, config: &CloudConfig) -> Option<String> {
        let region = config.region_name.as_deref();
        self.catalog
            .iter()
            .flatten()
            .filter(|(kind, _)| kind == "image")
            .flat_map(|(_, endpoints)| endpoints.iter().flatten())
            .find(|e| {
                Interface::parse(&e.interface) == Some(config.interface)
                    && region.is_none_or(|r| {
                        e.region_id.clone().flatten().as_deref() == Some(r)
                            || e.region.clone().flatten().as_deref() == Some(r)
                    })
            })
            .map(|e| e.url.clone())
    }
}

fn endpoint_json(e: &EndpointCase) -> Value {
    let mut endpoint = Map::new();
    endpoint.insert("interface".into(), e.interface.clone().into());
    endpoint.insert("url".into(), e.url.clone().into());
    endpoint.insert("id".into(), "e1".into());
    if let Some(r) = &e.region_id {
        endpoint.insert("region_id".into(), r.clone().into());
    }
    if let Some(r) = &e.region {
        endpoint.insert("region".into(), r.clone().into());
    }
    Value::Object(endpoint)
}

fn token_case() -> BoxedStrategy<TokenCase> {
    (
        timestamp_text(),
        proptest::option::of(proptest::option::of(timestamp_text())),
        proptest::option::of(proptest::option::of(prop_oneof![
            "[0-9a-f]{32}",
            any_text(0..10)
        ])),
        proptest::option::of(vec(service_case(), 0..4)),
    )
        .prop_map(|(expires_at, issued_at, project, catalog)| TokenCase {
            expires_at,
            issued_at,
            project,
            catalog,
        })
        .boxed()
}

/// The message of a [`TerminalKind::Config`] error.
fn config_error<T>(result: &Result<T, Error>) -> Option<&str> {
    match result {
        Err(Error::Terminal {
            kind: TerminalKind::Config,
            message,
        }) => Some(message),
        _ => None,
    }
}

/// The only two kinds `parse_token` may answer with.
fn assert_token_error_kind(err: &Error) {
    assert!(
        err.is_transient()
            || matches!(
                err,
                Error::Terminal {
                    kind: TerminalKind::Config,
                    ..
                }
            ),
        "{err:?}"
    );
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_json_as_a_token_answer_gives_a_token_or_an_error(
        body in prop_oneof![arb_json(), arb_json().prop_map(|v| json!({ "token": v }))],
        header in subject_header(),
        config in token_config(),
    ) {
        match parse_token(header.as_ref(), &body.to_string(), &config, Instant::now()) {
            Ok(token) => prop_assert!(!token.secret().expose().is_empty()),
            Err(err) => assert_token_error_kind(&err),
        }
    }

    #[test]
    fn any_text_as_a_token_answer_gives_an_error(
        body in any_text(0..100),
        header in subject_header(),
        config in token_config(),
    ) {
        if let Err(err) = parse_token(header.as_ref(), &body, &config, Instant::now()) {
            assert_token_error_kind(&err);
        }
    }

    #[test]
    fn a_retyped_token_field_gives_a_token_or_an_error(
        case in token_case(),
        path in select(&[
            "/token", "/token/expires_at", "/token/issued_at", "/token/project",
            "/token/project/id", "/token/catalog", "/token/catalog/0",
            "/token/catalog/0/type", "/token/catalog/0/endpoints",
            "/token/catalog/0/endpoints/0", "/token/catalog/0/endpoints/0/url",
            "/token/catalog/0/endpoints/0/interface", "/token/catalog/0/endpoints/0/region_id",
        ][..]),
        value in arb_json(),
        config in token_config(),
    ) {
        let mut body = case.json();
        if let Some(slot) = body.pointer_mut(path) {
            *slot = value;
        }
        let header = HeaderValue::from_static("gAAAA-token");
        if let Err(err) = parse_token(Some(&header), &body.to_string(), &config, Instant::now()) {
            assert_token_error_kind(&err);
        }
    }

    #[test]
    fn a_well_typed_token_answer_gives_its_project_and_the_first_matching_image_endpoint(
        case in token_case(),
        header in subject_header(),
        config in token_config(),
    ) {
        let body = case.json().to_string();
        let result = parse_token(header.as_ref(), &body, &config, Instant::now());
        let token_text = header.as_ref().and_then(|h| h.to_str().ok()).filter(|t| !t.is_empty());
        let endpoint = case.expected_endpoint(&config);
        let expires_ok = case.expires_at.parse::<jiff::Timestamp>().is_ok();
        match (token_text, case.project.clone().flatten(), endpoint) {
            (None, ..) => prop_assert!(result.expect_err("no header").is_transient()),
            (Some(_), None, _) => prop_assert!(
                config_error(&result).is_some_and(|m| m.contains("not scoped to a project")),
                "{:?}", result
            ),
            (Some(_), Some(_), None) => prop_assert!(
                config_error(&result).is_some_and(|m| m.contains("no image endpoint")),
                "{:?}", result
            ),
            (Some(_), Some(_), Some(_)) if !expires_ok => {
                prop_assert!(result.expect_err("bad expires_at").is_transient());
            }
            (Some(value), Some(project), Some(endpoint)) => {
                let token = result.expect("valid token answer");
                prop_assert_eq!(token.secret().expose(), value);
                prop_assert_eq!(token.project_id(), project.as_str());
                prop_assert_eq!(token.image_endpoint(), endpoint.as_str());
            }
        }
    }

    #[test]
    fn the_first_matching_endpoint_is_selected_from_any_catalog(
        catalog in vec(service_case(), 0..5),
        config in token_config(),
    ) {
        let case = TokenCase {
            expires_at: String::new(),
            issued_at: None,
            project: None,
            catalog: Some(catalog.clone()),
        };
        let services: Vec<CatalogService> = catalog
            .into_iter()
            .map(|(service_type, endpoints)| CatalogService {
                service_type,
                endpoints: endpoints
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| CatalogEndpoint {
                        interface: e.interface,
                        region_id: e.region_id.flatten(),
                        region: e.region.flatten(),
                        url: e.url,
                    })
                    .collect(),
            })
            .collect();
        let selected = select_endpoint(
            &services,
            "image",
            config.interface,
            config.region_name.as_deref(),
        );
        prop_assert_eq!(selected.map(str::to_owned), case.catalog_endpoint(&config));
    }

    #[test]
    fn renewal_is_due_exactly_when_the_refresh_margin_is_reached(
        age_ms in any::<u64>(),
        lifetime_ms in prop_oneof![0..10_000_000u64, any::<u64>()],
    ) {
        let (age, lifetime) = (Duration::from_millis(age_ms), Duration::from_millis(lifetime_ms));
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        prop_assert_eq!(needs_refresh(age, lifetime), age + margin >= lifetime);
        prop_assert!(needs_refresh(lifetime, lifetime));
        prop_assert!(needs_refresh(Duration::MAX, lifetime));
        prop_assert_eq!(needs_refresh(Duration::ZERO, lifetime), lifetime.is_zero());
    }
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn a_token_lives_from_issued_at_to_expires_at_and_a_backwards_one_is_renewed_at_once(
        issued in 0..4_000_000_000i64,
        lifetime_s in prop_oneof![-100_000..100_000i64, -4_000_000_000..4_000_000_000i64],
        offset_minutes in -1439..=1439i32,
    ) {
        let issued_at = jiff::Timestamp::from_second(issued).expect("in range");
        let expires_at = jiff::Timestamp::from_second(issued + lifetime_s).expect("in range");
        let offset = jiff::tz::Offset::from_seconds(offset_minutes * 60).expect("offset");
        let case = TokenCase {
            expires_at: expires_at.display_with_offset(offset).to_string(),
            issued_at: Some(Some(issued_at.to_string())),
            project: Some(Some("p1".into())),
            catalog: Some(vec![(
                "image".into(),
                Some(vec![EndpointCase {
                    interface: "public".into(),
                    region_id: None,
                    region: None,
                    url: "http://g".into(),
                }]),
            )]),
        };
        let config = token_config_fixed();
        let obtained = Instant::now();
        let header = HeaderValue::from_static("t");
        let token = parse_token(Some(&header), &case.json().to_string(), &config, obtained)
            .expect("valid token answer");
        let lifetime = Duration::from_secs(u64::try_from(lifetime_s).unwrap_or(0));
        let due = lifetime - REFRESH_MARGIN.min(lifetime / 2);
        prop_assert!(token.needs_refresh(obtained + due));
        if !lifetime.is_zero() {
            prop_assert!(!token.needs_refresh(obtained + due - Duration::from_millis(1)));
            prop_assert!(!token.needs_refresh(obtained));
        } else {
            prop_assert!(token.needs_refresh(obtained));
        }
    }
}

/// A config for token parsing: public interface, no region, no override.
fn token_config_fixed() -> CloudConfig {
    CloudConfig {
        cloud_name: "c1".into(),
        auth_url: "http://k/v3".into(),
        auth: Auth::ApplicationCredentialId {
            id: "ac".into(),
            secret: Secret::new("s"),
        },
        region_name: None,
        interface: Interface::Public,
        image_endpoint_override: None,
        verify: true,
        cacert: None,
    }
}

// ---------------------------------------------------------------------------------------
// Glance bodies and URLs.
// ---------------------------------------------------------------------------------------

/// A JSON field as a decoder sees it.
#[derive(Clone, Debug)]
enum Field {
    Missing,
    Null,
    Text(String),
    Number(i64),
    Object,
}

impl Field {
    fn insert(&self, key: &str, into: &mut Map<String, Value>) {
        let value = match self {
            Field::Missing => return,
            Field::Null => Value::Null,
            Field::Text(s) => s.clone().into(),
            Field::Number(n) => (*n).into(),
            Field::Object => json!({"a": [1]}),
        };
        into.insert(key.to_owned(), value);
    }

    /// The value of a required string field, if it has one.
    fn required(&self) -> Option<String> {
        match self {
            Field::Text(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The value of an optional string field (absent and null are `None`), if valid.
    fn optional(&self) -> Option<Option<String>> {
        match self {
            Field::Missing | Field::Null => Some(None),
            Field::Text(s) => Some(Some(s.clone())),
            Field::Number(_) | Field::Object => None,
        }
    }
}

fn field(text: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Field> {
    prop_oneof![
        1 => Just(Field::Missing),
        1 => Just(Field::Null),
        6 => text.prop_map(Field::Text),
        1 => any::<i64>().prop_map(Field::Number),
        1 => Just(Field::Object),
    ]
    .boxed()
}

/// Fields Glance sends that the decoders ignore (`keys`), with any values.
fn extra_fields(keys: &'static [&'static str]) -> BoxedStrategy<Vec<(String, Value)>> {
    vec((select(keys), arb_json()), 0..3)
        .prop_map(|v| v.into_iter().map(|(k, j)| (k.to_owned(), j)).collect())
        .boxed()
}

#[derive(Clone, Debug)]
struct ImageCase {
    id: Field,
    name: Field,
    visibility: Field,
    owner: Field,
    extra: Vec<(String, Value)>,
}

impl ImageCase {
    fn json(&self) -> Value {
        let mut object: Map<String, Value> = self.extra.iter().cloned().collect();
        self.id.insert("id", &mut object);
        self.name.insert("name", &mut object);
        self.visibility.insert("visibility", &mut object);
        self.owner.insert("owner", &mut object);
        Value::Object(object)
    }

    fn expected(&self) -> Option<Image> {
        Some(Image {
            id: self.id.required()?,
            name: self.name.optional()?,
            visibility: self.visibility.required()?,
            owner: self.owner.optional()?,
            created_at: None,
        })
    }
}

fn image_case() -> BoxedStrategy<ImageCase> {
    let visibility = prop_oneof![
        select(&["shared", "private", "public", "community"][..]).prop_map(str::to_owned),
        any_text(0..8),
    ];
    (
        field(prop_oneof!["[0-9a-f-]{36}", any_text(0..12)]),
        field(any_text(0..16)),
        field(visibility),
        field("[0-9a-f]{32}"),
        extra_fields(&["tags", "status", "min_disk", "locations", "schema", "x-odd"]),
    )
        .prop_map(|(id, name, visibility, owner, extra)| ImageCase {
            id,
            name,
            visibility,
            owner,
            extra,
        })
        .boxed()
}

#[derive(Clone, Debug)]
struct MemberCase {
    image_id: Field,
    member_id: Field,
    status: Field,
    extra: Vec<(String, Value)>,
}

impl MemberCase {
    fn json(&self) -> Value {
        let mut object: Map<String, Value> = self.extra.iter().cloned().collect();
        self.image_id.insert("image_id", &mut object);
        self.member_id.insert("member_id", &mut object);
        self.status.insert("status", &mut object);
        Value::Object(object)
    }

    fn expected(&self) -> Option<Member> {
        let status = match self.status.required()?.as_str() {
            "pending" => MemberStatus::Pending,
            "accepted" => MemberStatus::Accepted,
            "rejected" => MemberStatus::Rejected,
            _ => return None,
        };
        Some(Member {
            image_id: self.image_id.required()?,
            member_id: self.member_id.required()?,
            status,
        })
    }
}

fn member_case() -> BoxedStrategy<MemberCase> {
    let status = prop_oneof![
        4 => select(&["pending", "accepted", "rejected"][..]).prop_map(str::to_owned),
        1 => select(&["Accepted", "PENDING", "", " rejected", "all"][..]).prop_map(str::to_owned),
        1 => any_text(0..8),
    ];
    (
        field(prop_oneof!["[0-9a-f-]{36}", any_text(0..12)]),
        field(prop_oneof!["[0-9a-f]{32}", any_text(0..12)]),
        field(status),
        extra_fields(&["schema", "created_at", "updated_at", "x-odd"]),
    )
        .prop_map(|(image_id, member_id, status, extra)| MemberCase {
            image_id,
            member_id,
            status,
            extra,
        })
        .boxed()
}

/// A next link as Glance writes it, or odd text.
fn next_link() -> BoxedStrategy<String> {
    prop_oneof![
        "/v2/images\\?limit=100&marker=[0-9a-f-]{36}",
        (any_text(0..10), any_text(0..10)).prop_map(|(a, b)| format!("{a}?{b}")),
        any_text(0..20),
    ]
    .boxed()
}

/// Percent-decodes a URL path segment.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_json_as_a_glance_body_decodes_or_is_an_unexpected_response(body in arb_json()) {
        let text = body.to_string();
        let errors = [
            decode::<Image>(&text, "get image i1").err(),
            decode::<Member>(&text, "get member").err(),
            decode::<ImagePage>(&text, "list images").map(|_| ()).err(),
            decode::<MemberList>(&text, "list members").map(|_| ()).err(),
        ];
        for err in errors.into_iter().flatten() {
            prop_assert!(err.is_transient(), "{:?}", err);
            prop_assert!(err.to_string().contains(": unexpected response: "), "{}", err);
        }
    }

    #[test]
    fn any_text_as_a_glance_body_decodes_or_is_an_unexpected_response(body in any_text(0..80)) {
        for err in [
            decode::<Image>(&body, "get image i1").err(),
            decode::<ImagePage>(&body, "list images").map(|_| ()).err(),
            decode::<MemberList>(&body, "list members").map(|_| ()).err(),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(err.is_transient(), "{:?}", err);
        }
    }

    #[test]
    fn an_image_decodes_exactly_when_its_fields_have_the_documented_types(case in image_case()) {
        let decoded = decode::<Image>(&case.json().to_string(), "get image").ok();
        prop_assert_eq!(decoded, case.expected());
    }

    #[test]
    fn a_member_row_decodes_exactly_when_its_status_is_one_glance_defines(case in member_case()) {
        let decoded = decode::<Member>(&case.json().to_string(), "get member").ok();
        prop_assert_eq!(decoded, case.expected());
    }

    #[test]
    fn an_image_page_decodes_with_all_its_images_and_its_next_page_query(
        images in proptest::option::of(vec(image_case(), 0..4)),
        next in field(next_link()),
    ) {
        let mut page = Map::new();
        if let Some(images) = &images {
            page.insert("images".into(), images.iter().map(ImageCase::json).collect());
        }
        next.insert("next", &mut page);
        page.insert("schema".into(), "/v2/schemas/images".into());
        page.insert("first".into(), "/v2/images".into());
        let decoded = decode::<ImagePage>(&Value::Object(page).to_string(), "list images");
        let expected_images: Option<Vec<Image>> =
            images.and_then(|i| i.iter().map(ImageCase::expected).collect());
        match (decoded, expected_images, next.optional()) {
            (Ok(page), Some(images), Some(next)) => {
                prop_assert_eq!(&page.images, &images);
                prop_assert_eq!(&page.next, &next);
                // Followed only on the endpoint itself, to /v2/images, with a query.
                let base = glance_base("http://g:9292/image").expect("valid");
                match (next_page_query(page.next.as_deref(), &base), next.as_deref()) {
                    (Ok(None), link) => prop_assert_eq!(link, None),
                    (Ok(Some(query)), Some(link)) => {
                        let url = base.join(link).expect("a followed link is a url");
                        prop_assert_eq!(url.origin(), base.origin());
                        prop_assert!(url.path().trim_end_matches('/').ends_with("/v2/images"));
                        prop_assert_eq!(url.query(), Some(query.as_str()));
                        prop_assert!(!query.is_empty());
                    }
                    (Ok(Some(query)), None) => prop_assert!(false, "followed {query} without a link"),
                    (Err(_), link) => {
                        prop_assert!(link.is_some());
                        // What Glance writes is always followed.
                        let glance_shaped = link.is_some_and(|l| {
                            l.strip_prefix("/v2/images?limit=100&marker=").is_some_and(|m| {
                                m.len() == 36 && m.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                            })
                        });
                        prop_assert!(!glance_shaped, "refused {:?}", link);
                    }
                }
            }
            (Err(err), None, _) | (Err(err), _, None) => prop_assert!(err.is_transient()),
            (decoded, images, next) => {
                prop_assert!(false, "decoded {:?}, expected images {:?} next {:?}",
                    decoded.map(|p| (p.images, p.next)), images, next);
            }
        }
    }

    #[test]
    fn a_member_list_decodes_exactly_when_every_row_does(
        members in proptest::option::of(vec(member_case(), 0..4)),
    ) {
        let body = match &members {
            Some(members) => json!({
                "members": members.iter().map(MemberCase::json).collect::<Vec<_>>(),
                "schema": "/v2/schemas/members",
            }),
            None => json!({"schema": "/v2/schemas/members"}),
        };
        let decoded = decode::<MemberList>(&body.to_string(), "list members")
            .ok()
            .map(|l| l.members);
        let expected: Option<Vec<Member>> =
            members.and_then(|m| m.iter().map(MemberCase::expected).collect());
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn each_id_becomes_exactly_one_path_segment_or_is_refused(
        segments in vec(
            prop_oneof![
                3 => any_text(0..10),
                1 => select(&[
                    "", ".", "..", "...", ".\t.", "%2e%2e", "%2E.", "a/b", "?", "#", "%", "\\",
                    " ", "a\nb", "\r", "%zz", "é", "\u{0}", "\u{7f}",
                ][..]).prop_map(str::to_owned),
            ],
            1..5,
        ),
    ) {
        let base = glance_base("http://g:9292/image").expect("valid");
        let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let refused = refs
            .iter()
            .any(|s| matches!(*s, "" | "." | "..") || s.contains(['\t', '\n', '\r']));
        match join(base, &refs, "remove member") {
            Ok(url) => {
                prop_assert!(!refused, "{:?} was accepted as {}", refs, url);
                let path: Vec<&str> = url.path_segments().expect("base").collect();
                prop_assert_eq!(&path[..2], &["image", "v2"]);
                let decoded: Vec<Option<String>> =
                    path[2..].iter().map(|s| percent_decode(s)).collect();
                let expected: Vec<Option<String>> = segments.iter().cloned().map(Some).collect();
                prop_assert_eq!(decoded, expected);
                prop_assert!(url.query().is_none() && url.fragment().is_none());
            }
            Err(err) => {
                prop_assert!(refused, "{:?} was refused: {}", refs, err);
                let is_bad_request =
                    matches!(err, Error::Terminal { kind: TerminalKind::BadRequest, .. });
                prop_assert!(is_bad_request);
            }
        }
    }

    #[test]
    fn any_image_endpoint_gives_a_v2_base_or_a_config_error(
        endpoint in prop_oneof![
            select(ODD_URLS).prop_map(str::to_owned),
            any_text(0..30),
            (select(&["http://g", "https://g:9292", "http://g/image"][..]),
             vec(select(&["", "v2", "v1", "image", "?", "#f", "/", "//"][..]), 0..4))
                .prop_map(|(base, parts)| format!("{base}/{}", parts.join("/"))),
        ],
    ) {
        match glance_base(&endpoint) {
            Ok(url) => {
                // The endpoint's path without trailing slashes, `/v2` appended unless it is
                // already the last segment; no query.
                let given = reqwest::Url::parse(&endpoint).expect("glance_base parsed it");
                let path = given.path().trim_end_matches('/');
                let expected = if path.rsplit('/').next() == Some("v2") {
                    path.to_owned()
                } else {
                    format!("{path}/v2")
                };
                prop_assert_eq!(url.path(), expected.as_str(), "{} -> {}", endpoint, url);
                prop_assert!(url.query().is_none(), "{} -> {}", endpoint, url);
            }
            Err(err) => {
                let is_config = matches!(err, Error::Terminal { kind: TerminalKind::Config, .. });
                prop_assert!(is_config);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Error classification and Retry-After.
// ---------------------------------------------------------------------------------------

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
