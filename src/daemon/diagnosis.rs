//! Running diagnoses and the other background jobs of associations, through the one
//! [`super::scheduler::Scheduler`].
//!
//! This module owns when each job of an association is due (derived from saved timestamps:
//! the last result and its backoff, `active_since + rotate_after`, `retiring_since +
//! keep_retired`), how many diagnoses run at once (a global and a per-nameserver limit),
//! and keeping the results with their metrics and logs. It removes all of an association's
//! state when the association goes. The verdict (pending, no flapping, `since`) is made by
//! [`crate::diagnose::verdict`]; this module only stores it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use hickory_proto::rr::{Name, RData, RecordType};
use tokio::sync::Semaphore;

use super::Shared;
use super::scheduler::{AssociationKey, Job};
use crate::config::DiagnosisConfig;
use crate::config::PerDomain;
use crate::diagnose::check::{Diagnosis, Finding, Overall, Severity};
use crate::diagnose::checks::{Subject, diagnosis};
use crate::diagnose::verdict::{self, Recent};
use crate::provision::association::Association;
use crate::provision::dkim::{SelectorState, active};
use crate::zone::set::unix_now;

/// The checks shown as boxes and exported as `mailzone_diagnosis_check_status`.
const CHECKS: [&str; 11] = [
    "delegation",
    "mx",
    "srv",
    "autoconfig",
    "spf",
    "dkim",
    "dmarc",
    "ownership",
    "mta-sts",
    "tls-rpt",
    "dnssec",
];

/// A check's value in `mailzone_diagnosis_check_status`: 0 ok, 1 pending, 2 notice, 3 red.
fn check_value(f: &crate::diagnose::check::Finding) -> i64 {
    if f.is_red() {
        3
    } else if f.status.is_bad() {
        2
    } else if f.status == crate::diagnose::check::CheckStatus::Pending {
        1
    } else {
        0
    }
}

/// Whether a diagnosis has a red check (`metrics.per_domain: failing`); a notice alone
/// (e.g. a DMARC policy of none) leaves the overall status ok, so it does not count.
fn failing(d: &Diagnosis) -> bool {
    CHECKS
        .iter()
        .any(|c| d.worst(c).is_some_and(|f| f.is_red()))
}

/// Diagnosis state kept by the daemon (not on the DNS path).
pub struct DiagnosisState {
    results: std::sync::Mutex<HashMap<AssociationKey, Arc<Diagnosis>>>,
    /// Consecutive failing runs of each association (for the backoff).
    failures: std::sync::Mutex<HashMap<AssociationKey, u32>>,
    per_server: std::sync::Mutex<HashMap<SocketAddr, Arc<Semaphore>>>,
    /// One run at a time per association, so an older run never overwrites a newer one.
    running: std::sync::Mutex<HashMap<AssociationKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Scheduled diagnoses running at once.
    slots: Arc<Semaphore>,
}

impl DiagnosisState {
    pub fn new(config: &DiagnosisConfig) -> Self {
        Self {
            results: Default::default(),
            failures: Default::default(),
            per_server: Default::default(),
            running: Default::default(),
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
        }
    }

    pub fn get(&self, domain: &str, platform: &str) -> Option<Arc<Diagnosis>> {
        self.results
            .lock()
            .ok()?
            .get(&AssociationKey::new(domain, platform))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Diagnosis>> {
        self.results
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Seconds from now to a unix time, as an instant (past times are now).
fn instant_at(unix: u64) -> Instant {
    Instant::now() + Duration::from_secs(unix.saturating_sub(unix_now()))
}

impl Shared {
    pub(super) fn semaphore_for(&self, addr: SocketAddr) -> Arc<Semaphore> {
        let per = self.config.diagnosis.per_nameserver.max(1);
        match self.diagnosis.per_server.lock() {
            Ok(mut m) => m
                .entry(addr)
                .or_insert_with(|| Arc::new(Semaphore::new(per)))
                .clone(),
            Err(_) => Arc::new(Semaphore::new(per)),
        }
    }

    /// A permit of the per-nameserver limit (waits while the server is busy).
    pub(super) async fn nameserver_permit(
        &self,
        addr: SocketAddr,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.semaphore_for(addr).acquire_owned().await.ok()
    }

    /// One gather-and-judge pass.
    async fn run_checks(&self, association: &Association) -> Diagnosis {
        let now = unix_now();
        let platform = match self.platform(&association.platform) {
            Ok(p) => p,
            Err(e) => {
                let f = Finding::new(
                    "delegation",
                    "platform.unknown",
                    crate::diagnose::check::CheckStatus::Error,
                    Severity::Error,
                    e.to_string(),
                );
                return Diagnosis {
                    domain: association.domain.clone(),
                    platform: association.platform.clone(),
                    checked_at: now,
                    overall: Overall::Error,
                    checks: vec![f],
                    queries: 0,
                };
            }
        };
        let Some(prober) = crate::diagnose::prober(&self.config.diagnosis) else {
            let f = Finding::new(
                "delegation",
                "diagnosis.no_resolver",
                crate::diagnose::check::CheckStatus::Error,
                Severity::Error,
                "no resolver: set diagnosis.resolver",
            );
            return Diagnosis {
                domain: association.domain.clone(),
                platform: platform.id.clone(),
                checked_at: now,
                overall: Overall::Error,
                checks: vec![f],
                queries: 0,
            };
        };
        let mut subject = Subject::new(association, &platform);
        subject.dnssec_expected = self.dnssec_expected(&association.domain);
        subject.dnssec_refresh_secs = self.config.dnssec.refresh_secs;
        for g in association
            .dkim
            .iter()
            .filter(|g| g.state != SelectorState::Generated)
        {
            for k in &g.keys {
                if let Ok(key) = self.signing_key(&association.domain, &k.selector) {
                    subject.keys.insert(k.selector.clone(), key);
                }
            }
        }
        // Delegated DKIM: the TXT the CNAMEs lead to is in a zone we serve.
        let zones = self.zones.load();
        for e in subject
            .expected
            .iter()
            .filter(|e| e.rtype == "CNAME" && e.name.contains("._domainkey."))
        {
            if let Ok(target) = Name::from_ascii(&e.value)
                && let Some(zone) = zones.find(&target)
            {
                let view = zone.view();
                let lookup = view.lookup(&target, RecordType::TXT);
                let values: Vec<String> = lookup
                    .answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_proto::rr::RData::TXT(t) => Some(
                            t.txt_data
                                .iter()
                                .map(|s| String::from_utf8_lossy(s))
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect();
                subject
                    .delegated_txt
                    .insert(e.value.to_ascii_lowercase(), values);
            }
        }
        let started = Instant::now();
        let outcome =
            crate::diagnose::check_once(&prober, &subject, &|addr| self.semaphore_for(addr)).await;
        self.metrics
            .diagnosis_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .diagnosis_queries
            .inc_by(u64::from(outcome.queries));
        self.metrics
            .nameserver_errors
            .inc_by(u64::from(outcome.failures));
        for (rcode, n) in &outcome.rcodes {
            self.metrics
                .diagnosis_rcodes
                .with_label_values(&[rcode])
                .inc_by(u64::from(*n));
        }
        diagnosis(&subject, outcome.findings, outcome.queries, now)
    }

    /// What the verdict needs about recent changes: per-family change times, and how long a
    /// change of a hosted zone may take to reach its secondaries (SOA refresh, at most the
    /// records' TTL).
    fn recent(&self, association: &Association) -> Recent {
        let ttl = self
            .platform(&association.platform)
            .map_or(0, |p| u64::from(p.ttl));
        let refresh = Name::from_ascii(&association.domain)
            .ok()
            .and_then(|d| self.zones.load().find(&d))
            .and_then(|z| match &z.soa().data {
                RData::SOA(soa) => Some(u64::try_from(soa.refresh).unwrap_or(0)),
                _ => None,
            });
        Recent {
            hosted: association.hosted,
            changed_at: association.changed_at.clone(),
            window: refresh.map_or(ttl, |r| r.min(ttl)),
        }
    }

    /// Diagnoses one association now (the scheduler's job, and `POST …/diagnose`): looks
    /// for its published DKIM keys, runs the checks, has the verdict made, stores it and
    /// schedules the next run. `None` when the association is gone.
    pub async fn diagnose(&self, key: &AssociationKey) -> Option<Arc<Diagnosis>> {
        let one_at_a_time = self
            .diagnosis
            .running
            .lock()
            .map(|mut m| m.entry(key.clone()).or_default().clone())
            .unwrap_or_default();
        let _running = one_at_a_time.lock().await;
        let find = || {
            self.associations
                .load()
                .find(&key.domain, &key.platform)
                .cloned()
        };
        let association = find()?;
        // Watching for the customer's DKIM keys is part of the run: a key seen everywhere
        // starts signing, and is then judged as published.
        self.observe_dkim_now(&association).await;
        let association = find()?;
        let previous = self.diagnosis.get(&key.domain, &key.platform);
        let recent = self.recent(&association);
        let result = verdict::decide(previous.as_deref(), &recent, || {
            self.run_checks(&association)
        })
        .await;

        // Status changes are logged once each.
        let old_overall = previous.as_ref().map(|p| p.overall);
        if old_overall != Some(result.overall) {
            tracing::info!(domain = %key.domain, platform = %key.platform, overall = result.overall.as_str(), previous = old_overall.map(Overall::as_str).unwrap_or("none"), "diagnosis status changed");
        }
        for f in result
            .checks
            .iter()
            .filter(|f| f.since == result.checked_at && f.status.is_bad())
        {
            tracing::info!(domain = %key.domain, check = %f.check, code = %f.code, "{}", f.message);
        }
        self.metrics
            .diagnosis_runs
            .with_label_values(&[result.overall.as_str()])
            .inc();
        let validated = result.checks.iter().any(|f| f.code == "ownership.ok");
        let failing = result.overall == Overall::Error;
        let stored = self.store(key, result)?;
        if validated && !association.validated {
            self.mark_validated(&key.domain, &key.platform).await;
        }
        self.check_keys_of(&association);
        let failures = self
            .diagnosis
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key.clone()).or_insert(0);
                *n = if failing { n.saturating_add(1) } else { 0 };
                *n
            })
            .unwrap_or(0);
        self.scheduler.schedule(
            self.next_diagnosis(&association, unix_now(), failures),
            key.clone(),
            Job::Diagnose,
        );
        Some(stored)
    }

    /// When an association is next diagnosed after a run at `at`: the interval, doubled per
    /// failing run (up to 8×), plus jitter; sooner while its DKIM keys wait to be seen.
    fn next_diagnosis(&self, a: &Association, at: u64, failures: u32) -> Instant {
        let interval = self.config.diagnosis.interval_secs.max(1);
        let backoff = 1u64 << failures.min(3);
        let secs = interval * backoff + jitter(interval / 10 + 1);
        let mut next = Duration::from_secs((at + secs).saturating_sub(unix_now()));
        if !a.hosted && a.dkim.iter().any(|g| g.state == SelectorState::Generated) {
            next = next.min(Duration::from_millis(
                self.config.dkim_check_interval_ms.max(10),
            ));
        }
        Instant::now() + next
    }

    /// Keeps a result and its metric series, unless the association went meanwhile.
    fn store(&self, key: &AssociationKey, result: Diagnosis) -> Option<Arc<Diagnosis>> {
        let result = Arc::new(result);
        {
            let mut results = self.diagnosis.results.lock().ok()?;
            // Under the results lock: `forget` runs after the association left the set, so
            // either it sees this result and removes it, or this sees the association gone.
            let association = self
                .associations
                .load()
                .find(&key.domain, &key.platform)?
                .clone();
            results.insert(key.clone(), result.clone());
            // `metrics.per_domain`: a domain that stops qualifying loses its series.
            let wanted = match self.config.metrics.per_domain {
                PerDomain::All => true,
                PerDomain::None => false,
                PerDomain::Failing => results
                    .iter()
                    .filter(|(k, _)| k.domain == key.domain)
                    .any(|(_, d)| failing(d)),
            };
            for check in CHECKS {
                let labels = [key.domain.as_str(), check];
                match result.worst(check) {
                    Some(f) if wanted => self
                        .metrics
                        .diagnosis_check_status
                        .with_label_values(&labels)
                        .set(check_value(f)),
                    _ if !wanted => {
                        let _ = self
                            .metrics
                            .diagnosis_check_status
                            .remove_label_values(&labels);
                    }
                    _ => {}
                }
            }
            let now = unix_now();
            for g in &association.dkim {
                for k in &g.keys {
                    let labels = [association.domain.as_str(), k.selector.as_str()];
                    if wanted {
                        self.metrics
                            .dkim_key_age
                            .with_label_values(&labels)
                            .set(now.saturating_sub(g.created_at) as i64);
                    } else {
                        let _ = self.metrics.dkim_key_age.remove_label_values(&labels);
                    }
                }
            }
        }
        self.refresh_overall_gauges();
        Some(result)
    }

    /// Drops everything kept about an association that is gone: its result, counts, metric
    /// series, key errors and scheduled jobs.
    pub(super) fn forget(&self, gone: &Association) {
        let selectors: Vec<&str> = gone
            .dkim
            .iter()
            .flat_map(|g| g.keys.iter())
            .map(|k| k.selector.as_str())
            .collect();
        self.forget_key(
            &AssociationKey::new(&gone.domain, &gone.platform),
            &selectors,
        );
        self.acme_replan(&gone.domain);
    }

    fn forget_key(&self, key: &AssociationKey, selectors: &[&str]) {
        self.scheduler.cancel(key);
        let others = self.associations.load().for_domain(&key.domain).count();
        if let Ok(mut results) = self.diagnosis.results.lock() {
            results.remove(key);
            // The series are by domain: they go with the domain's last association.
            if others == 0 {
                for check in CHECKS {
                    let _ = self
                        .metrics
                        .diagnosis_check_status
                        .remove_label_values(&[&key.domain, check]);
                }
            }
        }
        for selector in selectors {
            let _ = self
                .metrics
                .dkim_key_age
                .remove_label_values(&[key.domain.as_str(), selector]);
        }
        if others == 0
            && let Ok(mut errors) = self.dkim_errors.lock()
        {
            errors.remove(&key.domain);
        }
        if let Ok(mut f) = self.diagnosis.failures.lock() {
            f.remove(key);
        }
        if let Ok(mut r) = self.diagnosis.running.lock() {
            r.remove(key);
        }
        self.refresh_overall_gauges();
    }

    fn refresh_overall_gauges(&self) {
        let all = self.diagnosis.all();
        for overall in [
            Overall::Ok,
            Overall::Pending,
            Overall::Warning,
            Overall::Error,
        ] {
            let n = all.iter().filter(|d| d.overall == overall).count();
            self.metrics
                .domains_by_status
                .with_label_values(&[overall.as_str()])
                .set(n as i64);
        }
    }

    async fn mark_validated(&self, domain: &str, platform: &str) {
        let _writer = self.writer.lock().await;
        let Some(current) = self.associations.load().find(domain, platform).cloned() else {
            return;
        };
        let mut next = current.clone();
        next.validated = true;
        let Ok(platform) = self.platform(platform) else {
            return;
        };
        match self.commit(next, Some(&current), &platform, false).await {
            Ok(_) => tracing::info!(%domain, "ownership token seen: domain validated"),
            Err(e) => tracing::error!(%domain, error = %e, "validation not saved"),
        }
    }

    /// The key jobs of an association, from its saved timestamps: `Rotate` when the active
    /// key is old enough and a published successor can take over, `DropRetired` when the
    /// oldest retired key has been kept long enough.
    fn key_jobs(&self, a: &Association) -> Vec<(Instant, Job)> {
        let Some(policy) = self.platform(&a.platform).ok().and_then(|p| p.dkim) else {
            return vec![];
        };
        let mut jobs = Vec::new();
        if let Some(since) = active(&a.dkim).and_then(|g| g.active_since)
            && a.dkim.iter().any(|g| g.state == SelectorState::Published)
        {
            jobs.push((
                instant_at(since.saturating_add(policy.rotate_after_secs)),
                Job::Rotate,
            ));
        }
        if let Some(since) = a
            .dkim
            .iter()
            .filter(|g| g.state == SelectorState::Retiring)
            .filter_map(|g| g.retiring_since)
            .min()
        {
            jobs.push((
                instant_at(since.saturating_add(policy.keep_retired_secs)),
                Job::DropRetired,
            ));
        }
        jobs
    }

    /// Re-derives the jobs of an association that was just saved; `soon` (a new or changed
    /// association) diagnoses it right away.
    pub(super) fn reschedule(&self, a: &Association, soon: bool) {
        let key = AssociationKey::new(&a.domain, &a.platform);
        self.scheduler.unschedule(&key, Job::Rotate);
        self.scheduler.unschedule(&key, Job::DropRetired);
        for (at, job) in self.key_jobs(a) {
            self.scheduler.schedule(at, key.clone(), job);
        }
        if soon {
            self.scheduler
                .schedule_by(Instant::now(), key.clone(), Job::Diagnose);
        } else if self.scheduler.deadline(&key, Job::Diagnose).is_none() {
            let failures = self.failures_of(&key);
            let at = self
                .diagnosis
                .get(&a.domain, &a.platform)
                .map_or(Instant::now(), |d| {
                    self.next_diagnosis(a, d.checked_at, failures)
                });
            self.scheduler.schedule(at, key, Job::Diagnose);
        }
        self.check_keys_of(a);
        self.acme_replan(&a.domain);
    }

    fn failures_of(&self, key: &AssociationKey) -> u32 {
        self.diagnosis
            .failures
            .lock()
            .ok()
            .and_then(|f| f.get(key).copied())
            .unwrap_or(0)
    }

    /// Rebuilds the whole set of jobs from the associations (start and reload), and drops
    /// the state of associations that are no longer there.
    pub(crate) fn rebuild_schedule(&self) {
        let set = self.associations.load_full();
        let gone: Vec<AssociationKey> = self
            .diagnosis
            .all()
            .iter()
            .filter(|d| set.find(&d.domain, &d.platform).is_none())
            .map(|d| AssociationKey::new(&d.domain, &d.platform))
            .collect();
        for key in &gone {
            self.forget_key(key, &[]);
        }
        let mut jobs = Vec::new();
        for a in set.all() {
            let key = AssociationKey::new(&a.domain, &a.platform);
            let at = self
                .diagnosis
                .get(&a.domain, &a.platform)
                .map_or(Instant::now(), |d| {
                    self.next_diagnosis(a, d.checked_at, self.failures_of(&key))
                });
            jobs.push((at, key.clone(), Job::Diagnose));
            for (at, job) in self.key_jobs(a) {
                jobs.push((at, key.clone(), job));
            }
        }
        jobs.extend(self.resign_jobs());
        jobs.extend(self.acme_jobs());
        self.scheduler.replace_all(jobs);
    }

    /// Runs one due job: diagnoses within the global limit, key jobs under the writer.
    fn start_job(self: &Arc<Self>, key: AssociationKey, job: Job) {
        let shared = self.clone();
        tokio::spawn(async move {
            match job {
                Job::Diagnose => {
                    let _slot = shared.diagnosis.slots.clone().acquire_owned().await;
                    shared.diagnose(&key).await;
                }
                Job::Rotate => shared.rotate_due(&key).await,
                Job::DropRetired => shared.drop_retired(&key).await,
                Job::Resign => shared.resign_due(&key.domain).await,
                Job::RollKeys => shared.roll_due(&key.domain).await,
                Job::RenewCertificate => shared.renew_certificate(&key.domain).await,
            }
        });
    }

    /// The scheduler's task: runs every job when it is due.
    pub async fn run_scheduler(self: Arc<Self>) {
        let shared = self.clone();
        self.scheduler
            .run(move |key, job| shared.start_job(key, job))
            .await;
    }
}

fn jitter(max: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_be_bytes(b) % max.max(1)
}
