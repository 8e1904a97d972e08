//! Prometheus metrics with bounded labels (Ready reasons, member states, failed operations;
//! OpenStack service, operation and status). No I/O; served by `http`.
//!
//! State gauges (ImageShares by Ready reason, member rows by state, leader, build) are in
//! blocks of their own below; [`objects`] computes the first two at each scrape. Their
//! labels are bounded too: Ready reasons, member states, and the build's version and commit
//! (one series).

pub mod objects;
#[cfg(test)]
mod reference_tests;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::api::Reason;
use crate::openstack::RequestMetrics;

/// Label set of pass counters: the Ready reason a pass ended with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A Ready reason (bounded set).
    pub reason: &'static str,
}

/// Label set of the reconcile error counter: the failed operation or kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// A bounded error label ([`crate::controller::error::Error::metric_label`]).
    pub error: &'static str,
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    // State gauges.
    /// The cache `imageshare_imageshares` and `imageshare_members` count.
    cache: objects::Cache,
    /// `imageshare_leader`: 1 while this replica holds the Lease (or runs without election).
    leader: Gauge,
    // Counters and histograms.
    passes: Family<ReasonLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
    duration: Histogram,
    keystone_authentications: Counter,
    /// OpenStack requests and Keystone tokens (families defined in `openstack::metrics`).
    openstack: RequestMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("imageshare");
        // State gauges.
        let cache = objects::Cache::default();
        registry.register_collector(Box::new(objects::ObjectGauges {
            cache: cache.clone(),
        }));
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (or runs without leader election)",
            leader.clone(),
        );
        registry.register(
            "build",
            "The operator's version and the git commit it was built from",
            Info::new([("version", crate::VERSION), ("commit", crate::COMMIT)]),
        );
        // Counters and histograms.
        let passes = Family::<ReasonLabel, Counter>::default();
        for reason in Reason::ALL {
            let _ = passes.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        let keystone_authentications = Counter::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles (retried with backoff) by the failed operation",
            errors.clone(),
        );
        registry.register(
            "reconcile_passes",
            "Reconcile passes by the Ready reason they ended with",
            passes.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes",
            duration.clone(),
        );
        registry.register(
            "keystone_authentications",
            "Keystone token requests made (token cache misses)",
            keystone_authentications.clone(),
        );
        // OpenStack requests and tokens, recorded by the sessions of `Clouds`.
        let openstack = RequestMetrics::default();
        openstack.register(&mut registry);
        Metrics {
            registry,
            cache,
            leader,
            passes,
            errors,
            duration,
            keystone_authentications,
            openstack,
        }
    }
}

impl Metrics {
    // State gauges.

    /// Counts the ImageShares of `store` (the controller's cache) that this installation
    /// `handles` (its shard) in `imageshare_imageshares` and `imageshare_members` at each
    /// scrape, until the returned guard is dropped.
    pub fn count_cache(
        &self,
        store: kube::runtime::reflector::Store<crate::api::ImageShare>,
        handles: objects::Handles,
    ) -> objects::Counting {
        self.cache.count(store, handles)
    }

    /// Sets `imageshare_leader`: whether this replica may reconcile now.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    // Counters and histograms.

    /// Counts one pass ending with `reason`.
    pub fn count_pass(&self, reason: Reason) {
        self.passes
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts one failed reconcile by its error's label.
    pub fn count_error(&self, error: &'static str) {
        self.errors.get_or_create(&ErrorLabel { error }).inc();
    }

    /// Brings the Keystone authentication counter up to `total` (the token cache's count).
    pub fn set_keystone_authentications(&self, total: u64) {
        let seen = self.keystone_authentications.get();
        if total > seen {
            self.keystone_authentications.inc_by(total - seen);
        }
    }

    /// Records the duration of one reconcile.
    pub fn observe_reconcile(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// The OpenStack request metrics, for `Clouds::with_metrics` (they share this registry).
    pub fn openstack(&self) -> RequestMetrics {
        self.openstack.clone()
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // State gauges.

    #[test]
    fn state_gauges_are_exported_from_the_start() {
        let metrics = Metrics::default();
        let text = metrics.encode();
        for line in [
            r#"imageshare_imageshares{reason="InSync"} 0"#,
            r#"imageshare_imageshares{reason="TransientError"} 0"#,
            r#"imageshare_imageshares{reason="Unknown"} 0"#,
            r#"imageshare_members{state="InSync"} 0"#,
            r#"imageshare_members{state="Contested"} 0"#,
            "imageshare_leader 0",
            &format!(
                r#"imageshare_build_info{{version="{}",commit="{}"}} 1"#,
                crate::VERSION,
                crate::COMMIT
            ),
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        metrics.set_leader(true);
        assert!(metrics.encode().contains("imageshare_leader 1"));
    }

    #[test]
    fn the_cache_is_counted_at_each_scrape_while_the_controller_runs() {
        use crate::api::{ImageShare, ImageShareStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let metrics = Metrics::default();
        let (store, mut writer) = kube::runtime::reflector::store();
        let counting = metrics.count_cache(store, Box::new(|_| true));
        let mut share = ImageShare::new("a", crate::controller::fixtures::spec());
        share.metadata.namespace = Some("ns".into());
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(share.clone()));
        assert!(
            metrics
                .encode()
                .contains(r#"imageshare_imageshares{reason="Unknown"} 1"#)
        );
        share.status = Some(ImageShareStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "InSync".into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            }],
            member_counts: [("InSync".to_string(), 300)].into(),
            ..Default::default()
        });
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(share));
        let text = metrics.encode();
        assert!(
            text.contains(r#"imageshare_imageshares{reason="InSync"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"imageshare_imageshares{reason="Unknown"} 0"#));
        assert!(text.contains(r#"imageshare_members{state="InSync"} 300"#));
        drop(counting);
        assert!(
            metrics
                .encode()
                .contains(r#"imageshare_imageshares{reason="InSync"} 0"#)
        );
    }

    // Counters and histograms.

    #[test]
    fn every_reason_is_exported_from_the_start() {
        let metrics = Metrics::default();
        metrics.count_pass(Reason::InSync);
        let text = metrics.encode();
        assert!(text.contains(r#"imageshare_reconcile_passes_total{reason="InSync"} 1"#));
        assert!(text.contains(r#"imageshare_reconcile_passes_total{reason="TransientError"} 0"#));
    }

    #[test]
    fn openstack_request_metrics_are_exported_from_this_registry() {
        // The request families have no series before the first request.
        let text = Metrics::default().encode();
        assert!(
            text.contains("imageshare_keystone_token_refreshes_total 0"),
            "{text}"
        );
    }
}
