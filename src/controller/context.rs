//! What every reconcile shares: the clients, the memory between passes, the cache of
//! ImageShares and the leader fence.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::reflector::Store;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;

use super::credentials::{Known, SecretCache};
use super::guard;
use super::memory::Memory;
use super::ports::KubeWriter;
use crate::api::ImageShare;
use crate::metrics::Metrics;
use crate::openstack::Clouds;

/// Shared state of all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Status and Event writes.
    pub writer: KubeWriter,
    /// OpenStack sessions, one per distinct credential.
    pub clouds: Clouds,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// What the operator remembers about each object between passes.
    pub memory: Memory,
    /// Resync period when the spec sets none.
    pub default_resync: Duration,
    /// The controller's cache of all ImageShares (for overlaps).
    pub store: Store<ImageShare>,
    /// When this operator started (cleanup retries count from here at the earliest).
    pub started: k8s_openapi::jiff::Timestamp,
    /// Secret versions the deletion guard wrote (their events trigger no pass).
    pub guard_writes: guard::OwnWrites,
    /// The operator's cache of Secret metadata (a metadata-only watch).
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// The Secrets passes have read, reused while their resourceVersion stays.
    pub secret_cache: SecretCache,
    /// Whether this replica may still write to Glance and to status (leader election).
    pub fence: crate::leader::Fence,
    /// The ImageShares this installation reconciles.
    pub shard: super::shard::Shard,
}

impl Context {
    /// What passes know of Secrets without reading them.
    pub fn known_secrets(&self) -> Known<'_> {
        Known {
            metadata: &self.secrets,
            read: &self.secret_cache,
        }
    }
}
