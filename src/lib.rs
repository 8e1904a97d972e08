//! ImageShare: a Kubernetes operator that keeps OpenStack Glance image members and member
//! statuses equal to a declarative `ImageShare` object.
//!
//! Module map:
//! - [`api`]: the `ImageShare` custom resource (spec, status, conditions).
//! - [`openstack`]: clouds.yaml parsing, Keystone auth with a shared token cache, a typed
//!   Glance client and the one error classifier. All OpenStack I/O lives here.
//! - [`controller`]: reconcile (finalizer dispatch), the pure plan and status builder, apply,
//!   cleanup and per-object backoff.
//! - [`dryrun`]: the `plan` command's report, from the cluster or from manifest files.
//! - [`metrics`], [`http`], [`telemetry`]: Prometheus metrics, health endpoints, logging.
//! - [`leader`]: Lease-based leader election for running several replicas.

pub mod api;
pub mod controller;
pub mod dryrun;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod openstack;
pub mod telemetry;

/// Version of this build (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git commit this build was made from (build.rs; "unknown" outside a git checkout).
pub const COMMIT: &str = env!("IMAGESHARE_GIT_COMMIT");
