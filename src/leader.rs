//! Leader election over a `coordination.k8s.io` Lease, with fencing, so two or more replicas
//! can run for availability while only one writes to Glance at a time. I/O at the edges; the
//! decisions ([`decide`], [`Renewals`], [`Fence`]) are pure or hold only a clock reading.
//!
//! The rules (the same as client-go's leader election):
//! - A candidate takes the Lease when it is free (no holder, released on shutdown) or when
//!   the record has not changed for the lease duration *as observed by the candidate's own
//!   clock* (never by comparing its clock with the holder's `renewTime`).
//! - The holder renews every [`Timing::renew_every`]; each attempt (read and write) is cut
//!   off after [`Timing::attempt_timeout`], so a stalled apiserver cannot hold a renewal
//!   open past the deadline. The renewal clock counts from the *start* of the last
//!   successful attempt: the write landed after that instant, so no candidate can have seen
//!   it earlier.
//! - If the holder cannot renew for [`Timing::renew_deadline`] (shorter than the lease
//!   duration), it has lost the Lease and must stop at once: a candidate can take over only
//!   after a full lease duration without a change, so the old leader has stopped before a
//!   new one starts.
//! - Writes are fenced: the [`Fence`] of a term answers `false` from the instant the deadline
//!   has passed (start of the last successful renewal + renew deadline), whatever the
//!   renewal task is doing at that moment; every Glance and status write asks it first.
//! - Every write is a replace with the record's resourceVersion, so two candidates cannot
//!   both win; a holder whose renewal meets a conflict has lost.
//! - On shutdown the holder releases the Lease (no holder), so a standby takes over at its
//!   next try instead of after the lease duration.

use std::sync::{Arc, Mutex, PoisonError};
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

/// Timing of the election. Defaults: 15 s lease, renew every 3 s (each attempt cut off after
/// 3 s), give up after 10 s without a renewal, candidates try every 2 s; so a standby takes
/// over at most about 17 s after a leader died, and at once after it shut down.
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
    /// How long one attempt (read and write of the Lease) may take before it counts as
    /// failed; must be shorter than `renew_deadline` (a renewal attempt is also cut off at
    /// the deadline itself).
    pub attempt_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(10),
            retry_every: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(3),
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
    /// The timing cannot fence: the attempt timeout must be shorter than the renew deadline,
    /// and the renew deadline shorter than the lease duration.
    #[error(
        "leader election: the attempt timeout ({attempt:?}) must be shorter than the renew deadline ({deadline:?}), and that shorter than the lease duration ({duration:?})"
    )]
    Timing {
        /// Attempt timeout.
        attempt: Duration,
        /// Renew deadline.
        deadline: Duration,
        /// Lease duration.
        duration: Duration,
    },
}

impl Timing {
    /// Whether this timing can fence: attempt timeout < renew deadline < lease duration.
    pub fn check(&self) -> Result<(), Error> {
        if self.attempt_timeout < self.renew_deadline && self.renew_deadline < self.lease_duration {
            Ok(())
        } else {
            Err(Error::Timing {
                attempt: self.attempt_timeout,
                deadline: self.renew_deadline,
                duration: self.lease_duration,
            })
        }
    }
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

/// The holder's renewal clock: when its last successful renewal *began*, and when it must
/// stop writing. Counting from the start of the attempt (not from the answer) is what makes
/// the fence safe: the write reached the apiserver after that instant, so a candidate saw the
/// new record later still, and waits a full lease duration from then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewals {
    last: Instant,
    deadline: Duration,
}

impl Renewals {
    /// A holder whose acquiring write began at `started`.
    pub fn new(started: Instant, deadline: Duration) -> Self {
        Renewals {
            last: started,
            deadline,
        }
    }

    /// Records a successful renewal whose attempt began at `started` (an older start than
    /// the one recorded changes nothing).
    pub fn renewed(&mut self, started: Instant) {
        self.last = self.last.max(started);
    }

    /// The instant the holder must stop writing: start of the last successful renewal +
    /// renew deadline.
    pub fn fence_time(&self) -> Instant {
        self.last + self.deadline
    }

    /// Whether the holder must stop at `now`: it has not renewed for the deadline.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.fence_time()
    }

    /// Time left before the fence at `now` (zero once expired).
    pub fn left(&self, now: Instant) -> Duration {
        self.fence_time().saturating_duration_since(now)
    }
}

/// Says whether this replica may still write (to Glance, to ImageShare status). A small
/// cloneable handle: the leader's renewal task moves it forward, every writer asks it.
/// Without leader election it always answers yes. With it, one fence belongs to one term of
/// leadership and only ever closes: from the instant the renewal clock expires it answers no,
/// and a renewal that succeeds after that instant does not open it again (the term is over;
/// a new term gets a new fence).
#[derive(Clone, Debug, Default)]
pub struct Fence(Option<Arc<Mutex<Term>>>);

#[derive(Debug)]
struct Term {
    renewals: Renewals,
    ended: bool,
}

impl Fence {
    /// The fence of a replica without leader election: every write is allowed.
    pub fn unfenced() -> Self {
        Fence(None)
    }

    /// The fence of a term that began with a write started at `renewals`' start.
    pub fn holding(renewals: Renewals) -> Self {
        Fence(Some(Arc::new(Mutex::new(Term {
            renewals,
            ended: false,
        }))))
    }

    /// Whether this replica may write now.
    pub fn may_write(&self) -> bool {
        self.may_write_at(Instant::now())
    }

    /// Whether this replica may write at `now`; once it has answered no, it always does.
    pub fn may_write_at(&self, now: Instant) -> bool {
        self.left(now).is_some()
    }

    /// Time left before the fence closes, at `now`; None once it is closed (and from then
    /// on). Always some time (a long one) without leader election.
    pub fn left(&self, now: Instant) -> Option<Duration> {
        let Some(term) = &self.0 else {
            return Some(Duration::MAX);
        };
        let mut term = term.lock().unwrap_or_else(PoisonError::into_inner);
        if term.ended || term.renewals.expired(now) {
            term.ended = true;
            return None;
        }
        Some(term.renewals.left(now))
    }

    /// Records a successful renewal whose attempt began at `started` and whose answer came
    /// at `now`. False when the fence had already closed by `now` (the term is over).
    pub fn renewed(&self, started: Instant, now: Instant) -> bool {
        let Some(term) = &self.0 else {
            return true;
        };
        let mut term = term.lock().unwrap_or_else(PoisonError::into_inner);
        if term.ended || term.renewals.expired(now) {
            term.ended = true;
            return false;
        }
        term.renewals.renewed(started);
        true
    }

    /// Closes the fence for good (the Lease was lost or released).
    pub fn close(&self) {
        if let Some(term) = &self.0 {
            term.lock().unwrap_or_else(PoisonError::into_inner).ended = true;
        }
    }
}

/// A held leadership. [`Leadership::lost`] resolves when the Lease is lost (renewals failed
/// past the deadline, or another replica holds it); [`Leadership::fence`] says at any instant
/// whether this replica may still write; [`Leadership::release`] gives it up.
pub struct Leadership {
    api: Api<Lease>,
    name: String,
    identity: String,
    state: watch::Receiver<bool>,
    renewer: tokio::task::JoinHandle<()>,
    fence: Fence,
}

impl Leadership {
    /// Waits until this replica holds the Lease, then keeps renewing it in the background.
    pub async fn acquire(client: Client, options: &LeaderOptions) -> Result<Self, Error> {
        let timing = options.timing;
        timing.check()?;
        let api: Api<Lease> = Api::namespaced(client, &options.namespace);
        let fail = |source| Error::Lease {
            namespace: options.namespace.clone(),
            lease: options.lease.clone(),
            source,
        };
        info!(lease = %options.lease, namespace = %options.namespace, identity = %options.identity, "waiting for the leader lease");
        let mut observed: Option<Observed> = None;
        let started = loop {
            // The term's renewal clock starts here, before the write can have landed.
            let attempt_start = Instant::now();
            let attempt = tokio::time::timeout(
                timing.attempt_timeout,
                try_acquire(&api, options, &mut observed),
            )
            .await;
            match attempt {
                Ok(Ok(true)) => break attempt_start,
                Ok(Ok(false)) => {}
                // Someone else wrote it first: read again.
                Ok(Err(kube::Error::Api(e))) if e.code == 409 => {}
                Ok(Err(e)) => warn!(error = %fail(e), "leader election: retrying"),
                Err(_) => {
                    warn!(timeout = ?timing.attempt_timeout, "leader election: the apiserver did not answer in time; retrying")
                }
            }
            tokio::time::sleep(timing.retry_every).await;
        };
        info!(identity = %options.identity, "holding the leader lease");
        let fence = Fence::holding(Renewals::new(started, timing.renew_deadline));
        let (tx, state) = watch::channel(true);
        let renewer = tokio::spawn(renew(api.clone(), options.clone(), fence.clone(), tx));
        Ok(Leadership {
            api,
            name: options.lease.clone(),
            identity: options.identity.clone(),
            state,
            renewer,
            fence,
        })
    }

    /// The fence of this term: whether this replica may still write.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
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
        self.fence.close();
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

/// One candidate attempt: reads the Lease, decides, and writes ourselves as holder when the
/// decision says so. Returns whether this replica now holds it. A version is counted as seen
/// when the answer came (not when the read began): a slow read must not make the record
/// look older than it is.
async fn try_acquire(
    api: &Api<Lease>,
    options: &LeaderOptions,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let lease = api.get_opt(&options.lease).await?;
    let now = Instant::now();
    let version = lease
        .as_ref()
        .and_then(|l| l.metadata.resource_version.clone())
        .unwrap_or_default();
    if observed.as_ref().is_none_or(|o| o.version != version) {
        *observed = Some(Observed {
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
        options.timing.lease_duration,
    );
    match decision {
        Decision::Wait => Ok(false),
        Decision::Create | Decision::Take => {
            write(api, options, lease.as_ref(), options.timing, true).await
        }
    }
}

/// What one renewal attempt found.
enum Renewal {
    /// The Lease was written with this replica as holder.
    Renewed,
    /// Another replica holds the Lease.
    Taken(Option<String>),
}

/// One renewal attempt: reads the Lease and, if still ours, writes it again.
async fn try_renew(api: &Api<Lease>, options: &LeaderOptions) -> Result<Renewal, kube::Error> {
    let lease = api.get(&options.lease).await?;
    let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
    if holder.as_deref() != Some(options.identity.as_str()) {
        return Ok(Renewal::Taken(holder));
    }
    write(api, options, Some(&lease), options.timing, false).await?;
    Ok(Renewal::Renewed)
}

/// Renews the Lease until renewals have failed for the deadline or another replica holds
/// it; then closes the fence, reports the loss (`false`) and ends. Every attempt is cut off
/// after the attempt timeout, and at the latest when the fence closes, so the loss is
/// reported at the fence time even while the apiserver hangs.
async fn renew(api: Api<Lease>, options: LeaderOptions, fence: Fence, lost: watch::Sender<bool>) {
    let timing = options.timing;
    let mut wait = timing.renew_every;
    loop {
        let Some(left) = fence.left(Instant::now()) else {
            warn!(deadline = ?timing.renew_deadline, "no renewal of the leader lease within the deadline; stopping");
            break;
        };
        if wait >= left {
            // The fence closes before the next attempt would begin: wake up when it does.
            tokio::time::sleep(left).await;
            continue;
        }
        tokio::time::sleep(wait).await;
        let started = Instant::now();
        let Some(left) = fence.left(started) else {
            continue;
        };
        let budget = timing.attempt_timeout.min(left);
        let attempt = tokio::time::timeout(budget, try_renew(&api, &options)).await;
        match attempt {
            Ok(Ok(Renewal::Renewed)) => {
                if !fence.renewed(started, Instant::now()) {
                    warn!(deadline = ?timing.renew_deadline, "no renewal of the leader lease within the deadline; stopping");
                    break;
                }
                wait = timing.renew_every;
            }
            Ok(Ok(Renewal::Taken(holder))) => {
                warn!(holder = ?holder, "another replica holds the leader lease");
                break;
            }
            Ok(Err(kube::Error::Api(e))) if e.code == 409 => {
                warn!("the leader lease changed under us; stopping");
                break;
            }
            Ok(Err(e)) => {
                warn!(error = %e, "could not renew the leader lease; retrying");
                wait = timing.retry_every;
            }
            Err(_) => {
                warn!(timeout = ?budget, "the apiserver did not answer the lease renewal in time; retrying");
                wait = timing.retry_every;
            }
        }
    }
    fence.close();
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
        let at = |millis: u64| start + Duration::from_millis(millis);
        let mut renewals = Renewals::new(start, timing.renew_deadline);
        // A renewal that began at 5 s; its write landed at 5.1 s, but the answer came back
        // only at 14 s (a stalled apiserver).
        renewals.renewed(at(5_000));
        let landed = at(5_100);
        let stops_at = (0..=60_000)
            .step_by(100)
            .map(at)
            .find(|t| renewals.expired(*t))
            .unwrap_or(start);
        assert_eq!(
            stops_at,
            at(15_000),
            "counted from the start of the attempt"
        );
        // Others saw the new record at the earliest when it landed.
        let takeover_at = landed + timing.lease_duration;
        assert!(takeover_at - stops_at >= Duration::from_secs(5));
        // Counted from the answer instead, the holder would go on writing past a takeover.
        let from_answer = Renewals::new(at(14_000), timing.renew_deadline);
        assert!(from_answer.fence_time() > takeover_at);
    }

    #[test]
    fn an_older_attempt_never_moves_the_clock_back() {
        let start = Instant::now();
        let mut renewals = Renewals::new(start + Duration::from_secs(6), Duration::from_secs(10));
        renewals.renewed(start + Duration::from_secs(3));
        assert_eq!(renewals.fence_time(), start + Duration::from_secs(16));
        assert_eq!(
            renewals.left(start + Duration::from_secs(12)),
            Duration::from_secs(4)
        );
        assert_eq!(
            renewals.left(start + Duration::from_secs(20)),
            Duration::ZERO
        );
    }

    #[test]
    fn without_leader_election_every_write_is_allowed() {
        let fence = Fence::unfenced();
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        assert!(fence.may_write() && fence.may_write_at(far));
        fence.close();
        assert!(fence.may_write(), "nothing to lose without an election");
        assert!(Fence::default().may_write());
    }

    #[test]
    fn the_fence_closes_at_the_start_of_the_last_renewal_plus_the_deadline() {
        let deadline = Duration::from_secs(10);
        let start = Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        let fence = Fence::holding(Renewals::new(start, deadline));
        let copy = fence.clone();
        assert!(fence.may_write_at(at(9_999)));
        assert_eq!(fence.left(at(4_000)), Some(Duration::from_secs(6)));
        // A renewal begun at 3 s, answered at 8 s: writes allowed until 13 s.
        assert!(fence.renewed(at(3_000), at(8_000)));
        assert!(copy.may_write_at(at(12_999)), "clones share the term");
        assert!(!copy.may_write_at(at(13_000)));
        assert!(!fence.may_write_at(at(13_000)));
    }

    #[test]
    fn a_closed_fence_stays_closed_even_if_a_late_renewal_succeeds() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let fence = Fence::holding(Renewals::new(start, Duration::from_secs(10)));
        // The answer to an attempt begun at 8 s came at 11 s: too late, the term is over.
        assert!(!fence.renewed(at(8), at(11)));
        assert!(!fence.may_write_at(at(11)));
        assert!(!fence.may_write_at(at(1)), "closed for good");
        // Once a writer was told no, no renewal opens it again.
        let fence = Fence::holding(Renewals::new(start, Duration::from_secs(10)));
        assert!(!fence.may_write_at(at(10)));
        assert!(!fence.renewed(at(9), at(9)));
        assert_eq!(fence.left(at(2)), None);
        // Lost or released: closed at once.
        let fence = Fence::holding(Renewals::new(start, Duration::from_secs(10)));
        fence.close();
        assert!(!fence.may_write_at(at(1)));
    }

    #[test]
    fn a_timing_that_cannot_fence_is_refused() {
        assert!(Timing::default().check().is_ok());
        let slow_attempts = Timing {
            attempt_timeout: Duration::from_secs(10),
            ..Timing::default()
        };
        assert!(slow_attempts.check().is_err());
        let long_deadline = Timing {
            renew_deadline: Duration::from_secs(15),
            ..Timing::default()
        };
        assert!(long_deadline.check().is_err());
    }

    #[test]
    fn a_stalled_apiserver_gets_two_renewal_attempts_before_the_deadline() {
        // Renew at 3 s, cut off at 6 s, retry at 8 s, cut off at the deadline (10 s).
        let t = Timing::default();
        let first_ends = t.renew_every + t.attempt_timeout;
        let second_starts = first_ends + t.retry_every;
        assert!(second_starts < t.renew_deadline, "{second_starts:?}");
        assert!(t.attempt_timeout < t.renew_deadline);
    }

    #[test]
    fn the_default_failover_after_a_crash_is_under_twenty_seconds() {
        let t = Timing::default();
        assert!(t.lease_duration + t.retry_every < Duration::from_secs(20));
        assert!(t.renew_deadline < t.lease_duration);
    }
}
