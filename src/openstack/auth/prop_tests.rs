//! Property tests of Keystone token answers (`proptest`, no I/O): any JSON or text gives a
//! token or an error of the two kinds token parsing may answer with; a well-typed answer
//! gives its project and the first matching image endpoint of its catalog; renewal is due
//! exactly at the refresh margin. Shared generators are in `prop_support`.

use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value, json};

use super::{
    CatalogEndpoint, CatalogService, REFRESH_MARGIN, needs_refresh, parse_token, select_endpoint,
};
use crate::openstack::prop_support::{any_text, arb_json, cases};
use crate::openstack::{Auth, CloudConfig, Error, Interface, Secret, TerminalKind};

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
