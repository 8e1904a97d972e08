//! The errors that make a reconcile fail and be retried with backoff: Kubernetes API calls
//! (named by the operation that failed) and an unfinished cleanup. OpenStack problems of a
//! live object are not errors here: a pass reports them in status ([`super::model::Failure`]).

use std::time::Duration;

use kube::runtime::finalizer;

/// A Kubernetes write the controller makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// The ledger recorded ahead of the first adds of a pass.
    RecordLedger,
    /// The status written at the end of a pass.
    UpdateStatus,
}

impl Operation {
    /// Bounded name (log lines, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::RecordLedger => "record_ledger",
            Operation::UpdateStatus => "update_status",
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{}: {source}", operation.as_str())]
    Kube {
        /// The call.
        operation: Operation,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The finalizer machinery failed, or the pass or cleanup inside it.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// Removing members on deletion failed transiently or waits for another object; the
    /// finalizer stays and it is retried (after the server's Retry-After, if it sent one).
    #[error("cleanup not finished, retrying: {0}")]
    CleanupPending(String, Option<Duration>),
    /// Removals on deletion wait for another ImageShare that may declare the members to be
    /// processed: not a failure, so it is retried soon without backing off.
    #[error("cleanup waits: {0}")]
    CleanupDeferred(String),
    /// The object has no namespace (ImageShare is namespaced, so this is a bug elsewhere).
    #[error("imageshare {0} has no namespace")]
    NoNamespace(String),
}

impl Error {
    /// The delay the server asked for, also when the error comes wrapped by the finalizer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.inner() {
            Error::CleanupPending(_, retry_after) => *retry_after,
            _ => None,
        }
    }

    /// Bounded label for the reconcile error metric: the failed operation, or the kind.
    pub fn metric_label(&self) -> &'static str {
        match self.inner() {
            Error::Kube { operation, .. } => operation.as_str(),
            Error::Finalizer(_) => "finalizer",
            Error::CleanupPending(..) => "cleanup_pending",
            Error::CleanupDeferred(_) => "cleanup_deferred",
            Error::NoNamespace(_) => "no_namespace",
        }
    }

    /// Whether the reconcile only waits for another object (no backoff).
    pub fn is_deferral(&self) -> bool {
        matches!(self.inner(), Error::CleanupDeferred(_))
    }

    /// The error the finalizer wraps (the pass's or the cleanup's), else this one.
    fn inner(&self) -> &Error {
        match self {
            Error::Finalizer(wrapped) => match wrapped.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.inner(),
                _ => self,
            },
            _ => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_error_keeps_its_retry_after_and_its_label() {
        let pending = || Error::CleanupPending("503".into(), Some(Duration::from_secs(120)));
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::CleanupFailed(pending())));
        assert_eq!(wrapped.retry_after(), Some(Duration::from_secs(120)));
        assert_eq!(wrapped.metric_label(), "cleanup_pending");
        let write = Error::Kube {
            operation: Operation::UpdateStatus,
            source: kube::Error::LinesCodecMaxLineLengthExceeded,
        };
        assert!(write.to_string().starts_with("update_status: "));
        assert_eq!(write.metric_label(), "update_status");
    }
}
