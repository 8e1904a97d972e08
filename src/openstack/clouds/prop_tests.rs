//! Property tests of clouds.yaml parsing (`proptest`, no I/O): any text, bytes or YAML tree
//! gives a config or an error, never a panic; a valid entry gives exactly the config it
//! describes; errors never show the secret. Generators shared with the other property
//! tests are in `prop_support`.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::tests::TEST_PEM;
use super::{Auth, CloudConfig, CloudsError, Domain, Interface, Project, Secret, User};
use crate::openstack::prop_support::{ODD_URLS, any_text, cases};

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
