//! Leader election over a `coordination.k8s.io` Lease, with fencing, so two or more replicas
//! can run for availability while only one writes to Glance at a time. I/O at the edges; the
//! decisions ([`decide`], [`Renewals`]) are pure.
//!
//! The rules (the same as client-go's leader election):
//! - A candidate takes the Lease when it is free (no holder, released on shutdown) or when
//!   the record has not changed for the lease duration *as observed by the candidate's own
//!   clock* (never by comparing its clock with the holder's `renewTime`).
//! - The holder renews every [`Timing::renew_every`]. If it cannot renew for
//!   [`Timing::renew_deadline`] (shorter than the lease duration), it declares the Lease lost
//!   and must stop at once: a candidate can take over only after a full lease duration
//!   without a change, so the old leader has stopped before a new one starts.
//! - Every write is a replace with the record's resourceVersion, so two candidates cannot
//!   both win; a holder whose renewal meets a conflict has lost.
//! - On shutdown the holder releases the Lease (no holder), so a standby takes over at its
//!   next try instead of after the lease duration.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaderOptions {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub lease: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Timing of the election.
    pub timing: Timing,
}

/// Timing of the election. Defaults: 15 s lease, renew every 5 s, give up after 10 s without
/// a renewal, candidates try every 2 s; so a standby takes over at most about 17 s after a
/// leader died, and at once after it shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a Lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How long the holder goes on without a successful renewal before it stops; must be
    /// shorter than `lease_duration`.
    pub renew_deadline: Duration,
    /// How often a candidate (or a holder whose renewal failed) tries again.
    pub retry_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Lease could not be read or written.
    #[error("lease {namespace}/{lease}: {source}")]
    Lease {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        lease: String,
        /// What failed.
        #[source]
        source: kube::Error,
    },
    /// The timing cannot fence: the renew deadline must be shorter than the lease duration.
    #[error(
        "leader election: the renew deadline ({deadline:?}) must be shorter than the lease duration ({duration:?})"
    )]
    Timing {
        /// Renew deadline.
        deadline: Duration,
        /// Lease duration.
        duration: Duration,
    },
}

/// What a candidate does with the Lease record it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create the Lease (there is none).
    Create,
    /// Write ourselves as holder (it is free, expired, or already ours).
    Take,
    /// Someone else holds it: try again later.
    Wait,
}

/// The last change of the Lease record this replica saw, by its own clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The record's resourceVersion.
    pub version: String,
    /// When this replica first saw that version.
    pub at: Instant,
}

/// Decides what a candidate does. `spec` is the record (None: no Lease), `version` its
/// resourceVersion, `observed` the last version this replica saw and when.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    observed: Option<&Observed>,
    version: &str,
    now: Instant,
    duration: Duration,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => return Decision::Take,
        Some(holder) if holder == identity => return Decision::Take,
        Some(_) => {}
    }
    let unchanged_for = match observed {
        Some(o) if o.version == version => now.saturating_duration_since(o.at),
        _ => Duration::ZERO,
    };
    if unchanged_for >= duration {
        Decision::Take
    } else {
        Decision::Wait
    }
}

/// The holder's renewal clock: when it last renewed, and whether it must stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewals {
    last: Instant,
    deadline: Duration,
}

impl Renewals {
    /// A holder that has just written the Lease at `now`.
    pub fn new(now: Instant, deadline: Duration) -> Self {
        Renewals {
            last: now,
            deadline,
        }
    }

    /// Records a successful renewal at `now`.
    pub fn renewed(&mut self, now: Instant) {
        self.last = now;
    }

    /// Whether the holder must stop at `now`: it has not renewed for the deadline.
    pub fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= self.deadline
    }
}

/// A held leadership. [`Leadership::lost`] resolves when the Lease is lost (renewals failed
/// past the deadline, or another replica holds it); [`Leadership::release`] gives it up.
pub struct Leadership {
    api: Api<Lease>,
    name: String,
    identity: String,
    state: watch::Receiver<bool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Waits until this replica holds the Lease, then keeps renewing it in the background.
    pub async fn acquire(client: Client, options: &LeaderOptions) -> Result<Self, Error> {
        let timing = options.timing;
        if timing.renew_deadline >= timing.lease_duration {
            return Err(Error::Timing {
                deadline: timing.renew_deadline,
                duration: timing.lease_duration,
            });
        }
        let api: Api<Lease> = Api::namespaced(client, &options.namespace);
        let fail = |source| Error::Lease {
            namespace: options.namespace.clone(),
            lease: options.lease.clone(),
            source,
        };
        info!(lease = %options.lease, namespace = %options.namespace, identity = %options.identity, "waiting for the leader lease");
        let mut observed: Option<Observed> = None;
        loop {
            let now = Instant::now();
            let current = api.get_opt(&options.lease).await;
            let attempt = match current {
                Err(e) => Err(e),
                Ok(lease) => {
                    let version = lease
                        .as_ref()
                        .and_then(|l| l.metadata.resource_version.clone())
                        .unwrap_or_default();
                    if observed.as_ref().is_none_or(|o| o.version != version) {
                        observed = Some(Observed {
                            version: version.clone(),
                            at: now,
                        });
                    }
                    let spec = lease.as_ref().and_then(|l| l.spec.as_ref());
                    let decision = decide(
                        spec,
                        &options.identity,
                        observed.as_ref(),
                        &version,
                        now,
                        timing.lease_duration,
                    );
                    match decision {
                        Decision::Wait => Ok(false),
                        Decision::Create | Decision::Take => {
                            write(&api, options, lease.as_ref(), timing, true).await
                        }
                    }
                }
            };
            match attempt {
                Ok(true) => break,
                Ok(false) => {}
                // Someone else wrote it first: read again.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => warn!(error = %fail(e), "leader election: retrying"),
            }
            tokio::time::sleep(timing.retry_every).await;
        }
        info!(identity = %options.identity, "holding the leader lease");
        let (tx, state) = watch::channel(true);
        let renewer = tokio::spawn(renew(api.clone(), options.clone(), tx));
        Ok(Leadership {
            api,
            name: options.lease.clone(),
            identity: options.identity.clone(),
            state,
            renewer,
        })
    }

    /// Resolves when the Lease is lost: the caller must stop writing at once.
    pub async fn lost(&mut self) {
        while *self.state.borrow_and_update() {
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops renewing and releases the Lease (no holder), so a standby takes over at once.
    /// Only a Lease still held by this replica is released.
    pub async fn release(self) {
        self.renewer.abort();
        let Ok(mut lease) = self.api.get(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(identity = %self.identity, "released the leader lease"),
            Err(e) => {
                warn!(error = %e, "could not release the leader lease; a standby takes over when it expires")
            }
        }
    }
}

/// Renews the Lease until renewals have failed for the deadline or another replica holds
/// it; then reports the loss (`false`) and ends.
async fn renew(api: Api<Lease>, options: LeaderOptions, lost: watch::Sender<bool>) {
    let timing = options.timing;
    let mut renewals = Renewals::new(Instant::now(), timing.renew_deadline);
    let mut wait = timing.renew_every;
    loop {
        tokio::time::sleep(wait).await;
        let attempt = match api.get(&options.lease).await {
            Ok(lease) => {
                let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
                if holder.as_deref() != Some(options.identity.as_str()) {
                    warn!(holder = ?holder, "another replica holds the leader lease");
                    break;
                }
                write(&api, &options, Some(&lease), timing, false).await
            }
            Err(e) => Err(e),
        };
        let now = Instant::now();
        match attempt {
            Ok(_) => {
                renewals.renewed(now);
                wait = timing.renew_every;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                warn!("the leader lease changed under us; stopping");
                break;
            }
            Err(e) => {
                warn!(error = %e, "could not renew the leader lease; retrying");
                wait = timing.retry_every;
            }
        }
        // Checked after every attempt, also a slow one: past the deadline, stop.
        if renewals.expired(Instant::now()) {
            warn!(deadline = ?timing.renew_deadline, "no renewal of the leader lease within the deadline; stopping");
            break;
        }
    }
    let _ = lost.send(false);
}

/// Writes this replica as holder: creates the Lease, or replaces `current` under its
/// resourceVersion (`taking`: a new term, counted in leaseTransitions when the holder
/// changes). Returns whether it was written.
async fn write(
    api: &Api<Lease>,
    options: &LeaderOptions,
    current: Option<&Lease>,
    timing: Timing,
    taking: bool,
) -> Result<bool, kube::Error> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let seconds = i32::try_from(timing.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(current) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(options.lease.clone()),
                namespace: Some(options.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(options.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        api.create(&PostParams::default(), &lease).await?;
        return Ok(true);
    };
    let mut lease = current.clone();
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let ours = spec.holder_identity.as_deref() == Some(options.identity.as_str());
    if taking && !ours {
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        spec.acquire_time = Some(now.clone());
    }
    spec.holder_identity = Some(options.identity.clone());
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(now);
    api.replace(&options.lease, &PostParams::default(), &lease)
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn held_by(holder: Option<&str>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn no_lease_is_created_and_a_free_or_own_lease_is_taken() {
        let now = Instant::now();
        assert_eq!(
            decide(None, "me", None, "", now, DURATION),
            Decision::Create
        );
        for free in [None, Some(""), Some("me")] {
            let spec = held_by(free);
            assert_eq!(
                decide(Some(&spec), "me", None, "1", now, DURATION),
                Decision::Take,
                "{free:?}"
            );
        }
    }

    #[test]
    fn another_holders_lease_is_taken_only_after_it_went_unchanged_for_the_duration() {
        let start = Instant::now();
        let spec = held_by(Some("other"));
        let seen = Observed {
            version: "7".into(),
            at: start,
        };
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(
            decide(Some(&spec), "me", Some(&seen), "7", at(14), DURATION),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&spec), "me", Some(&seen), "7", at(15), DURATION),
            Decision::Take
        );
        // Renewed meanwhile (a new version): the clock starts over.
        assert_eq!(
            decide(Some(&spec), "me", Some(&seen), "8", at(30), DURATION),
            Decision::Wait
        );
    }

    #[test]
    fn a_holder_that_cannot_renew_stops_before_anyone_may_take_over() {
        let timing = Timing::default();
        let start = Instant::now();
        let mut renewals = Renewals::new(start, timing.renew_deadline);
        renewals.renewed(start + Duration::from_secs(5));
        // Last renewal at 5 s; the others see that version at 5 s at the earliest.
        let last_seen_by_others = start + Duration::from_secs(5);
        let stops_at = (0..=60)
            .map(|s| start + Duration::from_secs(s))
            .find(|t| renewals.expired(*t))
            .unwrap_or(start);
        let takeover_at = last_seen_by_others + timing.lease_duration;
        assert!(stops_at < takeover_at, "{stops_at:?} vs {takeover_at:?}");
        assert!(takeover_at - stops_at >= Duration::from_secs(5));
    }

    #[test]
    fn the_default_failover_after_a_crash_is_under_twenty_seconds() {
        let t = Timing::default();
        assert!(t.lease_duration + t.retry_every < Duration::from_secs(20));
        assert!(t.renew_deadline < t.lease_duration);
    }
}
