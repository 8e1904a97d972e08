//! Property tests of Glance bodies and URLs (`proptest`, no I/O): any JSON or text body
//! decodes or is an unexpected response; images, members and pages decode exactly when
//! their fields have the documented types; each id becomes one path segment or is refused;
//! any image endpoint gives a v2 base or a config error. Shared generators are in
//! `prop_support`.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

use super::{Image, ImagePage, Member, MemberList, MemberStatus, glance_base, next_page_query};
use crate::openstack::prop_support::{ODD_URLS, any_text, arb_json, cases};
use crate::openstack::transport::{decode, join};
use crate::openstack::{Error, TerminalKind};

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
