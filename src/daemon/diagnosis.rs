//! Running diagnoses: on demand, right after an association changes, and on a schedule.
//!
//! This module owns when domains are checked (interval with jitter, a backoff for failing
//! domains), how many at once (a global limit and a per-nameserver limit), the no-flapping
//! rule (a new failure is re-checked at once and reported only if it is confirmed), and
//! keeping the results, their `since` times, the logs of status changes and the metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RecordType};
use tokio::sync::Semaphore;

use super::Shared;
use crate::diagnose::check::{Diagnosis, Finding, Overall, Severity};
use crate::diagnose::checks::{Subject, diagnosis};
use crate::provision::association::Association;
use crate::provision::dkim::SelectorState;
use crate::zone::set::unix_now;

/// An association: (domain, platform).
type Key = (String, String);

/// Diagnosis state kept by the daemon (not on the DNS path).
#[derive(Default)]
pub struct DiagnosisState {
    results: std::sync::Mutex<HashMap<(String, String), Arc<Diagnosis>>>,
    /// When each association is next due, and its consecutive failing runs.
    due: std::sync::Mutex<HashMap<(String, String), (u64, u32)>>,
    per_server: std::sync::Mutex<HashMap<SocketAddr, Arc<Semaphore>>>,
    /// One run at a time per association, so an older run never overwrites a newer one.
    running: std::sync::Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

impl DiagnosisState {
    pub fn get(&self, domain: &str, platform: &str) -> Option<Arc<Diagnosis>> {
        self.results
            .lock()
            .ok()?
            .get(&(domain.to_string(), platform.to_string()))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Diagnosis>> {
        self.results
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }
}

fn bad_codes(d: &Diagnosis) -> Vec<&str> {
    d.checks
        .iter()
        .filter(|f| f.is_red())
        .map(|f| f.code.as_str())
        .collect()
}

impl Shared {
    /// Makes an association due at the next scheduler pass.
    pub fn diagnose_soon(&self, domain: &str, platform: &str) {
        if let Ok(mut due) = self.diagnosis.due.lock() {
            let entry = due
                .entry((domain.to_string(), platform.to_string()))
                .or_insert((0, 0));
            entry.0 = 0;
        }
    }

    fn semaphore_for(&self, addr: SocketAddr) -> Arc<Semaphore> {
        let per = self.config.diagnosis.per_nameserver.max(1);
        match self.diagnosis.per_server.lock() {
            Ok(mut m) => m
                .entry(addr)
                .or_insert_with(|| Arc::new(Semaphore::new(per)))
                .clone(),
            Err(_) => Arc::new(Semaphore::new(per)),
        }
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
        subject.changed_ago = now.saturating_sub(association.updated_at);
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
                let lookup = zone.lookup(&target, RecordType::TXT);
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

    /// Diagnoses one association now, stores the result and returns it.
    pub async fn diagnose(&self, association: &Association) -> Arc<Diagnosis> {
        let key = (association.domain.clone(), association.platform.clone());
        let one_at_a_time = self
            .diagnosis
            .running
            .lock()
            .map(|mut m| m.entry(key.clone()).or_default().clone())
            .unwrap_or_default();
        let _running = one_at_a_time.lock().await;
        // The association may have changed while this run waited.
        let latest = self.associations.load().find(&key.0, &key.1).cloned();
        let association = latest.as_ref().unwrap_or(association);
        let previous = self.diagnosis.get(&key.0, &key.1);
        let mut result = self.run_checks(association).await;
        // No flapping: a failure not seen last time is re-checked before it is reported.
        let was_bad: Vec<String> = previous
            .as_ref()
            .map(|p| bad_codes(p).into_iter().map(str::to_string).collect())
            .unwrap_or_default();
        if bad_codes(&result)
            .iter()
            .any(|c| !was_bad.iter().any(|w| w == c))
        {
            result = self.run_checks(association).await;
        }
        let now = result.checked_at;
        for f in result.checks.iter_mut() {
            let before = previous.as_ref().and_then(|p| {
                p.checks
                    .iter()
                    .find(|o| o.code == f.code && o.status == f.status)
            });
            f.since = before.map_or(now, |o| o.since);
        }
        // Status changes are logged once each.
        let old_overall = previous.as_ref().map(|p| p.overall);
        if old_overall != Some(result.overall) {
            tracing::info!(domain = %key.0, platform = %key.1, overall = result.overall.as_str(), previous = old_overall.map(Overall::as_str).unwrap_or("none"), "diagnosis status changed");
        }
        for f in result
            .checks
            .iter()
            .filter(|f| f.since == now && f.status.is_bad())
        {
            tracing::info!(domain = %key.0, check = %f.check, code = %f.code, "{}", f.message);
        }
        self.metrics
            .diagnosis_runs
            .with_label_values(&[result.overall.as_str()])
            .inc();
        for check in [
            "delegation",
            "mx",
            "srv",
            "autoconfig",
            "spf",
            "dkim",
            "dmarc",
            "ownership",
        ] {
            if let Some(f) = result.worst(check) {
                let value = if f.is_red() {
                    3
                } else if f.status.is_bad() {
                    2
                } else if f.status == crate::diagnose::check::CheckStatus::Pending {
                    1
                } else {
                    0
                };
                self.metrics
                    .diagnosis_check_status
                    .with_label_values(&[&key.0, check])
                    .set(value);
            }
        }
        self.observe_dkim_now(association).await;
        let validated = result.checks.iter().any(|f| f.code == "ownership.ok");
        let result = Arc::new(result);
        if let Ok(mut r) = self.diagnosis.results.lock() {
            r.insert(key.clone(), result.clone());
        }
        self.refresh_overall_gauges();
        if validated && !association.validated {
            self.mark_validated(&key.0, &key.1).await;
        }
        result
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

    /// The scheduler: every association at start, after it changes, then every interval
    /// (with jitter; failing domains back off), a bounded number at a time.
    pub async fn diagnosis_loop(self: Arc<Self>) {
        let interval = self.config.diagnosis.interval_secs.max(1);
        let slots = Arc::new(Semaphore::new(self.config.diagnosis.concurrency.max(1)));
        let tick = Duration::from_millis((interval * 1000 / 10).clamp(50, 1000));
        loop {
            let now = unix_now();
            let all: Vec<Association> = self.associations.load().all().cloned().collect();
            let mut running = tokio::task::JoinSet::new();
            for a in all {
                let key = (a.domain.clone(), a.platform.clone());
                let due = self
                    .diagnosis
                    .due
                    .lock()
                    .ok()
                    .and_then(|d| d.get(&key).copied());
                if due.is_some_and(|(at, _)| at > now) {
                    continue;
                }
                let failures = due.map_or(0, |(_, f)| f);
                // Claim it now so the next pass does not start it again.
                if let Ok(mut d) = self.diagnosis.due.lock() {
                    d.insert(key.clone(), (u64::MAX, failures));
                }
                let shared = self.clone();
                let slots = slots.clone();
                running.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let result = shared.diagnose(&a).await;
                    let failures = if result.overall == Overall::Error {
                        failures.saturating_add(1)
                    } else {
                        0
                    };
                    let backoff = 1u64 << failures.min(3);
                    let jitter = jitter(interval / 10 + 1);
                    let next = unix_now() + interval * backoff + jitter;
                    if let Ok(mut d) = shared.diagnosis.due.lock() {
                        // A change made meanwhile (due = 0) keeps priority.
                        let entry = d.entry(key).or_insert((next, failures));
                        if entry.0 != 0 {
                            *entry = (next, failures);
                        }
                    }
                });
            }
            // Let this pass's runs go on while the next pass is prepared.
            tokio::spawn(async move { while running.join_next().await.is_some() {} });
            tokio::time::sleep(tick).await;
        }
    }
}

fn jitter(max: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_be_bytes(b) % max.max(1)
}
