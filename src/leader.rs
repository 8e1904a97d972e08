//! Leader election over a `coordination.k8s.io` Lease (through kube-lease-manager), so two or
//! more replicas can run for availability while only the holder reconciles. I/O.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::info;

/// Where the Lease lives and who we are.
pub struct LeaderOptions {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub lease: String,
    /// This replica's identity (the pod name).
    pub identity: String,
}

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Lease could not be read, created or renewed.
    #[error("lease {namespace}/{lease}: {source}")]
    Lease {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        lease: String,
        /// What failed.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// The election task stopped.
    #[error("leader election stopped")]
    Stopped,
}

/// A held leadership: resolves [`Leadership::lost`] when another replica takes over.
pub struct Leadership {
    state: watch::Receiver<bool>,
}

impl Leadership {
    /// Waits until this replica holds the Lease.
    pub async fn acquire(client: Client, options: &LeaderOptions) -> Result<Self, Error> {
        let manager = LeaseManagerBuilder::new(client, options.lease.clone())
            .with_namespace(options.namespace.clone())
            .with_identity(options.identity.clone())
            .with_duration(15)
            .with_grace(5)
            .build()
            .await
            .map_err(|source| Error::Lease {
                namespace: options.namespace.clone(),
                lease: options.lease.clone(),
                source,
            })?;
        let (mut state, _task) = manager.watch().await;
        info!(lease = %options.lease, namespace = %options.namespace, identity = %options.identity, "waiting for the leader lease");
        while !*state.borrow_and_update() {
            state.changed().await.map_err(|_| Error::Stopped)?;
        }
        info!(identity = %options.identity, "holding the leader lease");
        Ok(Leadership { state })
    }

    /// Resolves when the Lease is lost (or the election task stops).
    pub async fn lost(mut self) {
        while *self.state.borrow_and_update() {
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }
}
