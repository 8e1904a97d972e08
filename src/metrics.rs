//! Prometheus metrics with bounded labels (Ready reasons; OpenStack service, operation and
//! status). No I/O; served by `http`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
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
            passes,
            errors,
            duration,
            keystone_authentications,
            openstack,
        }
    }
}

impl Metrics {
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
