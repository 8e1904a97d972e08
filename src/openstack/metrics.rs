//! What is recorded about requests to OpenStack (no I/O): the bounded set of calls the
//! client makes ([`Operation`]), and [`RequestMetrics`], the Prometheus families every
//! request and every Keystone token obtained are counted in.
//!
//! The families live here, so this module needs nothing from the operator's own metrics:
//! the operator registers them in its registry ([`RequestMetrics::register`]) and hands
//! them to [`Clouds`](super::Clouds), whose sessions all record into them. Without that,
//! a session records into families nobody exports.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use reqwest::{Method, StatusCode};

/// Buckets of the request duration histogram, in seconds (requests time out at 30 s).
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One kind of request the client makes: its metric label, its service and its method.
/// Labels never carry IDs, so the number of series stays bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST /v3/auth/tokens`.
    Token,
    /// `GET /v3/projects`.
    ListProjects,
    /// `GET /v3/domains?name=`.
    ListDomains,
    /// `GET /v3/domains/{id}`.
    GetDomain,
    /// `GET /v2/images/{id}`.
    GetImage,
    /// `GET /v2/images` (a page of a listing, or a lookup by ID).
    ListImages,
    /// `GET /v2/images/{image}/members`.
    ListMembers,
    /// `GET /v2/images/{image}/members/{project}`.
    GetMember,
    /// `POST /v2/images/{image}/members`.
    CreateMember,
    /// `PUT /v2/images/{image}/members/{project}`.
    UpdateMember,
    /// `DELETE /v2/images/{image}/members/{project}`.
    DeleteMember,
}

impl Operation {
    /// The `operation` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Token => "token",
            Operation::ListProjects => "list_projects",
            Operation::ListDomains => "list_domains",
            Operation::GetDomain => "get_domain",
            Operation::GetImage => "get_image",
            Operation::ListImages => "list_images",
            Operation::ListMembers => "list_members",
            Operation::GetMember => "get_member",
            Operation::CreateMember => "create_member",
            Operation::UpdateMember => "update_member",
            Operation::DeleteMember => "delete_member",
        }
    }

    /// The `service` label: the catalog type of the service called (`identity` for
    /// Keystone, `image` for Glance).
    pub fn service(self) -> &'static str {
        match self {
            Operation::Token
            | Operation::ListProjects
            | Operation::ListDomains
            | Operation::GetDomain => "identity",
            _ => "image",
        }
    }

    /// The HTTP method of this request.
    pub fn method(self) -> Method {
        match self {
            Operation::Token | Operation::CreateMember => Method::POST,
            Operation::UpdateMember => Method::PUT,
            Operation::DeleteMember => Method::DELETE,
            _ => Method::GET,
        }
    }
}

/// The `code` label: the HTTP status of the answer, or `error` when none came (connection
/// refused or cut, timeout, TLS failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Code(Option<StatusCode>);

impl EncodeLabelValue for Code {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(status) => status.as_u16().encode(encoder),
            None => "error".encode(encoder),
        }
    }
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: &'static str,
    operation: &'static str,
    code: Code,
}

/// Labels of the request duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    service: &'static str,
    operation: &'static str,
}

/// The OpenStack request metrics. Clones share the same families.
#[derive(Clone)]
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<OperationLabels, Histogram, fn() -> Histogram>,
    token_refreshes: Counter,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            token_refreshes: Counter::default(),
        }
    }
}

impl RequestMetrics {
    /// Registers the families in `registry`, under its prefix: `openstack_requests`
    /// (counter), `openstack_request_duration_seconds` (histogram) and
    /// `keystone_token_refreshes` (counter).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "openstack_requests",
            "Requests to Keystone and Glance by service, operation and HTTP status (error: no answer)",
            self.requests.clone(),
        );
        registry.register(
            "openstack_request_duration_seconds",
            "Duration of requests to Keystone and Glance, the whole answer read",
            self.durations.clone(),
        );
        registry.register(
            "keystone_token_refreshes",
            "Keystone tokens obtained",
            self.token_refreshes.clone(),
        );
    }

    /// Records one request of `operation` that took `elapsed` and was answered with
    /// `status` (None: no answer).
    pub(crate) fn record(
        &self,
        operation: Operation,
        status: Option<StatusCode>,
        elapsed: Duration,
    ) {
        let (service, operation) = (operation.service(), operation.as_str());
        self.requests
            .get_or_create(&RequestLabels {
                service,
                operation,
                code: Code(status),
            })
            .inc();
        self.durations
            .get_or_create(&OperationLabels { service, operation })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one Keystone token obtained.
    pub(super) fn count_token(&self) {
        self.token_refreshes.inc();
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The text `metrics` export in a registry of prefix `imageshare`.
    pub(in crate::openstack) fn exported(metrics: &RequestMetrics) -> String {
        let mut registry = Registry::with_prefix("imageshare");
        metrics.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encoded");
        out
    }

    #[test]
    fn requests_are_counted_by_service_operation_and_code() {
        let metrics = RequestMetrics::default();
        let ms = Duration::from_millis(20);
        metrics.record(Operation::ListMembers, Some(StatusCode::OK), ms);
        metrics.record(Operation::ListMembers, Some(StatusCode::OK), ms);
        metrics.record(Operation::Token, Some(StatusCode::UNAUTHORIZED), ms);
        metrics.record(Operation::CreateMember, None, ms);
        metrics.count_token();
        let text = exported(&metrics);
        for line in [
            r#"imageshare_openstack_requests_total{service="image",operation="list_members",code="200"} 2"#,
            r#"imageshare_openstack_requests_total{service="identity",operation="token",code="401"} 1"#,
            r#"imageshare_openstack_requests_total{service="image",operation="create_member",code="error"} 1"#,
            r#"imageshare_openstack_request_duration_seconds_count{service="image",operation="list_members"} 2"#,
            r#"imageshare_openstack_request_duration_seconds_bucket{le="0.025",service="image",operation="list_members"} 2"#,
            "imageshare_keystone_token_refreshes_total 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn operations_name_their_service_and_method() {
        assert_eq!(Operation::ListProjects.service(), "identity");
        assert_eq!(Operation::GetDomain.service(), "identity");
        assert_eq!(Operation::DeleteMember.service(), "image");
        assert_eq!(Operation::Token.method(), Method::POST);
        assert_eq!(Operation::UpdateMember.method(), Method::PUT);
        assert_eq!(Operation::ListImages.method(), Method::GET);
    }
}
