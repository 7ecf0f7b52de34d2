//! The one scheduler of background work, in the shape of mini-redis's purge task: a set of
//! `(deadline, association, job)` ordered by deadline, a `Notify` that wakes the one task
//! when an earlier deadline arrives, and `sleep_until(next)` otherwise.
//!
//! This module owns the ordering and cancelling of jobs (at most one entry per association
//! and job kind) and the loop that hands due jobs to the daemon. It must not decide *when*
//! a job is due (the daemon derives every deadline from saved timestamps) nor run the jobs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::Notify;
// Tokio's clock, so that tests may pause it.
use tokio::time::Instant;

/// An association: (domain, platform).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssociationKey {
    pub domain: String,
    pub platform: String,
}

impl AssociationKey {
    pub fn new(domain: &str, platform: &str) -> Self {
        Self {
            domain: domain.to_string(),
            platform: platform.to_string(),
        }
    }

    /// The key of a zone's own jobs (DNSSEC re-signing): the zone, no platform.
    pub fn zone(origin: &str) -> Self {
        Self::new(origin, "")
    }
}

/// What is due for an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Job {
    /// Check the domain as the world sees it (and look for its published DKIM keys).
    Diagnose,
    /// Let the successor key sign (at `active_since + rotate_after`).
    Rotate,
    /// Remove retired keys (at `retiring_since + keep_retired`).
    DropRetired,
    /// Re-sign a zone's DNSSEC signatures that enter the refresh window (at the earliest
    /// expiry minus `dnssec.refresh_secs`). Keyed by the zone, with an empty platform
    /// ([`AssociationKey::zone`]).
    Resign,
    /// The next step of a zone's key rollover (activate a pre-published key, remove a
    /// retired one), at the times derived from its keys' state.
    RollKeys,
    /// Order a domain's web certificate by ACME (none yet, renewal point reached, or a
    /// retry after a failure). Keyed by the domain with an empty platform.
    RenewCertificate,
}

#[derive(Default)]
struct Jobs {
    by_time: BTreeSet<(Instant, AssociationKey, Job)>,
    /// The deadline of each entry of `by_time`, to replace or cancel it.
    by_key: HashMap<(AssociationKey, Job), Instant>,
}

impl Jobs {
    fn remove(&mut self, key: &AssociationKey, job: Job) {
        if let Some(at) = self.by_key.remove(&(key.clone(), job)) {
            self.by_time.remove(&(at, key.clone(), job));
        }
    }

    fn insert(&mut self, at: Instant, key: AssociationKey, job: Job) {
        self.remove(&key, job);
        self.by_key.insert((key.clone(), job), at);
        self.by_time.insert((at, key, job));
    }

    fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _, _)| *at)
    }
}

/// The set of pending jobs. Cheap to share; every method takes a short lock.
#[derive(Default)]
pub struct Scheduler {
    jobs: Mutex<Jobs>,
    wake: Notify,
}

impl Scheduler {
    fn with<T>(&self, f: impl FnOnce(&mut Jobs) -> T) -> T {
        let mut jobs = match self.jobs.lock() {
            Ok(j) => j,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut jobs)
    }

    /// Sets the deadline of `job` for `key`, replacing any earlier or later one.
    pub fn schedule(&self, at: Instant, key: AssociationKey, job: Job) {
        let earliest = self.with(|j| {
            j.insert(at, key, job);
            j.next() == Some(at)
        });
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Like [`Scheduler::schedule`], but only moves the job earlier (or adds it).
    pub fn schedule_by(&self, at: Instant, key: AssociationKey, job: Job) {
        let sooner = self.with(|j| {
            j.by_key
                .get(&(key.clone(), job))
                .is_none_or(|current| at < *current)
        });
        if sooner {
            self.schedule(at, key, job);
        }
    }

    /// Removes a job (it is no longer due, e.g. no key waits to be rotated).
    pub fn unschedule(&self, key: &AssociationKey, job: Job) {
        self.with(|j| j.remove(key, job));
    }

    /// Removes every job of an association (it was dissociated).
    pub fn cancel(&self, key: &AssociationKey) {
        self.with(|j| {
            for job in [
                Job::Diagnose,
                Job::Rotate,
                Job::DropRetired,
                Job::Resign,
                Job::RollKeys,
                Job::RenewCertificate,
            ] {
                j.remove(key, job);
            }
        });
    }

    /// Replaces the whole set (start and reload: every deadline derived afresh).
    pub fn replace_all(&self, jobs: impl IntoIterator<Item = (Instant, AssociationKey, Job)>) {
        self.with(|j| {
            *j = Jobs::default();
            for (at, key, job) in jobs {
                j.insert(at, key, job);
            }
        });
        self.wake.notify_one();
    }

    /// When `job` of `key` is due, if it is scheduled.
    pub fn deadline(&self, key: &AssociationKey, job: Job) -> Option<Instant> {
        self.with(|j| j.by_key.get(&(key.clone(), job)).copied())
    }

    /// Every scheduled job, soonest first (for tests and the API).
    pub fn snapshot(&self) -> Vec<(Instant, AssociationKey, Job)> {
        self.with(|j| j.by_time.iter().cloned().collect())
    }

    /// Takes the jobs due at `now`, soonest first, and says when the next one is due.
    pub fn take_due(&self, now: Instant) -> (Vec<(AssociationKey, Job)>, Option<Instant>) {
        self.with(|j| {
            let mut due = Vec::new();
            while let Some((at, key, job)) = j.by_time.first().cloned() {
                if at > now {
                    break;
                }
                j.by_time.pop_first();
                j.by_key.remove(&(key.clone(), job));
                due.push((key, job));
            }
            (due, j.next())
        })
    }

    /// The one task: hands every due job to `run` (which must not block), then sleeps until
    /// the next deadline or until an earlier one is scheduled.
    pub async fn run(&self, mut run: impl FnMut(AssociationKey, Job)) {
        loop {
            let (due, next) = self.take_due(Instant::now());
            for (key, job) in due {
                run(key, job);
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(d: &str) -> AssociationKey {
        AssociationKey::new(d, "p")
    }

    #[test]
    fn jobs_come_out_in_deadline_order() {
        let s = Scheduler::default();
        let t = Instant::now();
        s.schedule(t + Duration::from_secs(3), key("c."), Job::Diagnose);
        s.schedule(t + Duration::from_secs(1), key("a."), Job::Rotate);
        s.schedule(t + Duration::from_secs(2), key("b."), Job::DropRetired);
        let (due, next) = s.take_due(t + Duration::from_secs(2));
        assert_eq!(
            due,
            vec![(key("a."), Job::Rotate), (key("b."), Job::DropRetired)]
        );
        assert_eq!(next, Some(t + Duration::from_secs(3)));
    }

    #[test]
    fn scheduling_a_job_again_replaces_its_deadline() {
        let s = Scheduler::default();
        let t = Instant::now();
        s.schedule(t + Duration::from_secs(1), key("a."), Job::Diagnose);
        s.schedule(t + Duration::from_secs(9), key("a."), Job::Diagnose);
        assert_eq!(s.snapshot().len(), 1);
        assert!(s.take_due(t + Duration::from_secs(5)).0.is_empty());
    }

    #[test]
    fn schedule_by_only_moves_a_job_earlier() {
        let s = Scheduler::default();
        let t = Instant::now();
        s.schedule(t + Duration::from_secs(5), key("a."), Job::Diagnose);
        s.schedule_by(t + Duration::from_secs(9), key("a."), Job::Diagnose);
        assert_eq!(
            s.deadline(&key("a."), Job::Diagnose),
            Some(t + Duration::from_secs(5))
        );
        s.schedule_by(t, key("a."), Job::Diagnose);
        assert_eq!(s.deadline(&key("a."), Job::Diagnose), Some(t));
    }

    #[test]
    fn cancelling_an_association_removes_all_its_jobs_and_only_those() {
        let s = Scheduler::default();
        let t = Instant::now();
        for job in [Job::Diagnose, Job::Rotate, Job::DropRetired] {
            s.schedule(t, key("gone."), job);
        }
        s.schedule(t, key("kept."), Job::Diagnose);
        s.cancel(&key("gone."));
        assert_eq!(s.take_due(t).0, vec![(key("kept."), Job::Diagnose)]);
        assert!(s.snapshot().is_empty());
    }

    #[test]
    fn replacing_the_set_forgets_the_old_jobs() {
        let s = Scheduler::default();
        let t = Instant::now();
        s.schedule(t, key("old."), Job::Rotate);
        s.replace_all([(t, key("new."), Job::Diagnose)]);
        assert_eq!(s.take_due(t).0, vec![(key("new."), Job::Diagnose)]);
    }

    #[tokio::test]
    async fn the_task_wakes_for_an_earlier_job_and_not_before_a_deadline() {
        let s = std::sync::Arc::new(Scheduler::default());
        s.schedule(
            Instant::now() + Duration::from_secs(3600),
            key("late."),
            Job::Diagnose,
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = {
            let s = s.clone();
            tokio::spawn(async move { s.run(|k, j| drop(tx.send((k, j)))).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.schedule(
            Instant::now() + Duration::from_millis(50),
            key("soon."),
            Job::Rotate,
        );
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got.ok().flatten(), Some((key("soon."), Job::Rotate)));
        let more = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await;
        assert!(more.is_err(), "the late job is not run early: {more:?}");
        task.abort();
    }
}
