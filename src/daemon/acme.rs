//! Certificates by ACME in the daemon: which domains want one (hosted ones by DNS-01,
//! external ones by HTTP-01 when `acme.http01` is on), the renewal job of each
//! (`Job::RenewCertificate`, keyed by the domain as a zone key), the challenge records
//! written through the single writer or the tokens put where the plain-HTTP listener
//! answers them, installing what was issued, forgetting a domain whose association went
//! (files, job, status, tokens), and the test clock shared with DNSSEC signing.
//!
//! This module owns when an order is due (renewal point, retry with backoff) and the
//! status of each domain. It must not speak ACME (`crate::acme` does) nor serve
//! certificates (`web::tls`); deadlines derive from the saved certificate and the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, RecordType};
use serde::Serialize;
use tokio::time::Instant;

use super::Shared;
use super::scheduler::{AssociationKey, Job};
use crate::acme::{ChallengeKind, Challenges, Proof};
use crate::zone::edit::{ChangeKind, RrsetChange};
use crate::zone::set::unix_now;

/// TTL of a challenge record: the CA asks mailzone directly; resolvers should not keep it.
const CHALLENGE_TTL: u32 = 60;
/// The longest wait between two tries of a failing order.
const MAX_RETRY_SECS: u64 = 86_400;

/// What the API says of one domain's certificate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CertificateStatus {
    pub domain: String,
    pub names: Vec<String>,
    /// How control of the names is proved: `dns-01` (hosted) or `http-01` (external).
    pub challenge: ChallengeKind,
    /// Of the certificate in use (unix seconds), if one was issued.
    pub not_after: Option<u64>,
    pub serial: Option<String>,
    /// When the next order is due (unix seconds, on the daemon's clock).
    pub next_order_at: Option<u64>,
    /// Orders failed in a row since the last success.
    pub failures: u32,
    /// Why the last order failed (a failed validation: the CA's problem of each failed
    /// challenge); the certificate in use, if any, is kept.
    pub last_error: Option<String>,
    /// The daemon's clock offset when the certificate was obtained: the CA's times are on
    /// the real clock, so a test clock moved forward later makes it due, and one moved
    /// before it does not make a fresh certificate look old (0 for one read from disk).
    #[serde(skip)]
    offset_at_issue: u64,
}

/// What one domain wants certified, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    names: Vec<String>,
    challenge: ChallengeKind,
}

/// The daemon's ACME state.
#[derive(Default)]
pub struct AcmeState {
    client: tokio::sync::Mutex<Option<Arc<crate::acme::Client>>>,
    status: std::sync::Mutex<BTreeMap<String, CertificateStatus>>,
    /// Domains whose order is under way: a job due again meanwhile (its association
    /// changed) is not a second order; the running one re-plans when it ends.
    in_flight: std::sync::Mutex<BTreeSet<String>>,
}

/// Challenge records written as any change is: journal, NOTIFY, DNSSEC follow.
struct ZoneChallenges<'a>(&'a Shared);

impl ZoneChallenges<'_> {
    /// The changes per zone: each record to the zone that holds its name.
    fn by_zone(
        &self,
        proofs: &[Proof],
        kind: ChangeKind,
    ) -> Result<BTreeMap<Name, Vec<RrsetChange>>, String> {
        let zones = self.0.zones.load();
        let mut out: BTreeMap<Name, Vec<RrsetChange>> = BTreeMap::new();
        for p in proofs {
            let owner = p.record_name();
            let name = Name::from_ascii(&owner).map_err(|e| format!("{owner}: {e}"))?;
            let origin = zones
                .find(&name)
                .map(|z| z.origin().clone())
                .ok_or_else(|| format!("{owner}: no hosted zone holds it"))?;
            out.entry(origin).or_default().push(RrsetChange {
                kind,
                name,
                rtype: RecordType::TXT,
                ttl: Some(CHALLENGE_TTL),
                records: vec![RData::TXT(TXT::new(vec![p.dns_value.clone()]))],
            });
        }
        Ok(out)
    }

    async fn apply(&self, proofs: &[Proof], kind: ChangeKind) -> Result<(), String> {
        let mut failed = Vec::new();
        for (origin, changes) in self.by_zone(proofs, kind)? {
            if let Err(e) = self.0.change_records(&origin, changes).await {
                failed.push(format!("{origin}: {e}"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}

impl Challenges for ZoneChallenges<'_> {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Dns01
    }

    async fn publish(&self, proofs: &[Proof]) -> Result<(), String> {
        self.apply(proofs, ChangeKind::Add).await
    }

    async fn withdraw(&self, proofs: &[Proof]) -> Result<(), String> {
        self.apply(proofs, ChangeKind::Delete).await
    }
}

/// HTTP-01 tokens of one external domain, answered by the plain-HTTP web listener while
/// the order runs.
struct WebChallenges<'a> {
    shared: &'a Shared,
    domain: &'a str,
}

impl Challenges for WebChallenges<'_> {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Http01
    }

    async fn publish(&self, proofs: &[Proof]) -> Result<(), String> {
        for p in proofs {
            self.shared
                .acme_tokens
                .insert(self.domain, &p.name, &p.token, &p.key_authorization)
                .map_err(|e| format!("{}: {e}", p.name))?;
        }
        Ok(())
    }

    async fn withdraw(&self, proofs: &[Proof]) -> Result<(), String> {
        for p in proofs {
            self.shared.acme_tokens.remove(&p.name, &p.token);
        }
        Ok(())
    }
}

impl Shared {
    /// The daemon's clock in unix seconds: the system's, moved forward by
    /// [`Shared::advance_clock`] in tests (DNSSEC signing and certificate renewal use it).
    pub fn clock_now(&self) -> u64 {
        unix_now() + self.clock_offset.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tests only: moves the clock forward by `secs` and re-plans every job that derives
    /// from it (re-signing, key rollovers, certificate renewals); what is due runs at once.
    pub fn advance_clock(&self, secs: u64) {
        self.clock_offset
            .fetch_add(secs, std::sync::atomic::Ordering::Relaxed);
        for (at, key, job) in self.resign_jobs() {
            self.scheduler.schedule(at, key, job);
        }
        for (at, key, job) in self.acme_jobs() {
            self.scheduler.schedule(at, key, job);
        }
    }

    /// The scheduler's instant for a time on the daemon's clock.
    fn clock_instant(&self, unix: u64) -> Instant {
        Instant::now() + Duration::from_secs(unix.saturating_sub(self.clock_now()))
    }

    /// Each domain that wants a certificate, with its names and challenge (none when ACME
    /// is off): hosted ones by DNS-01, external ones by HTTP-01 when `acme.http01` is on.
    fn acme_wanted(&self) -> BTreeMap<String, Wanted> {
        let mut out: BTreeMap<String, (BTreeSet<String>, bool)> = BTreeMap::new();
        if !self.config.acme.enabled {
            return BTreeMap::new();
        }
        for a in self.associations.load().all() {
            if !a.hosted && !self.config.acme.http01 {
                continue;
            }
            let names = crate::acme::names_for(&a.domain, &a.records, &self.config.acme.names);
            if !names.is_empty() {
                let entry = out
                    .entry(a.domain.trim_end_matches('.').to_string())
                    .or_default();
                entry.0.extend(names);
                entry.1 |= a.hosted;
            }
        }
        out.into_iter()
            .map(|(d, (names, hosted))| {
                let challenge = if hosted {
                    ChallengeKind::Dns01
                } else {
                    ChallengeKind::Http01
                };
                (
                    d,
                    Wanted {
                        names: names.into_iter().collect(),
                        challenge,
                    },
                )
            })
            .collect()
    }

    /// When the order of `domain` is due: now without a certificate covering `names`, at the
    /// retry time after a failure, else `renew_before_days` before expiry.
    fn acme_due(&self, domain: &str, wanted: &Wanted) -> u64 {
        let names = &wanted.names;
        let now = self.clock_now();
        let status = self
            .acme
            .status
            .lock()
            .ok()
            .and_then(|s| s.get(domain).cloned());
        if let Some(s) = &status
            && s.failures > 0
            && let Some(at) = s.next_order_at
        {
            return at;
        }
        match crate::acme::read_pair(&self.config.keys_dir, domain) {
            Ok(Some((chain, key, leaf))) if names.iter().all(|n| leaf.names.contains(n)) => {
                // A pair saved but not installed (stopped in between): installed now.
                self.install_missing(names, &chain, &key);
                let mut offset = 0;
                self.set_acme_status(domain, wanted, |s| {
                    if s.serial.as_deref() == Some(leaf.serial.as_str()) {
                        offset = s.offset_at_issue;
                    } else {
                        s.offset_at_issue = 0;
                    }
                    s.not_after = Some(leaf.not_after);
                    s.serial = Some(leaf.serial.clone());
                });
                crate::acme::renew_point(&leaf, self.config.acme.renew_before_days * 86_400)
                    + offset
            }
            _ => now,
        }
    }

    fn set_acme_status(
        &self,
        domain: &str,
        wanted: &Wanted,
        f: impl FnOnce(&mut CertificateStatus),
    ) {
        if let Ok(mut all) = self.acme.status.lock() {
            let s = all
                .entry(domain.to_string())
                .or_insert_with(|| CertificateStatus {
                    domain: domain.to_string(),
                    ..Default::default()
                });
            s.names = wanted.names.clone();
            s.challenge = wanted.challenge;
            f(s);
        }
    }

    /// The renewal job of every domain that wants a certificate (start, reload, clock
    /// moves); the state of domains that no longer want one (their association went) is
    /// removed.
    pub(super) fn acme_jobs(&self) -> Vec<(Instant, AssociationKey, Job)> {
        if !self.config.acme.enabled {
            return Vec::new();
        }
        let wanted = self.acme_wanted();
        // A domain whose association file does not load keeps its certificate: the file
        // is broken, not gone.
        let broken = self.associations.load().broken().clone();
        for domain in crate::acme::saved_domains(&self.config.keys_dir) {
            if !wanted.contains_key(&domain) && !broken.contains_key(&format!("{domain}.")) {
                self.acme_forget(&domain);
            }
        }
        let mut jobs = Vec::new();
        for (domain, w) in &wanted {
            let at = self.acme_due(domain, w);
            self.set_acme_status(domain, w, |s| s.next_order_at = Some(at));
            jobs.push((
                self.clock_instant(at),
                AssociationKey::zone(domain),
                Job::RenewCertificate,
            ));
        }
        jobs
    }

    /// Re-plans the certificate of one domain after its associations changed.
    pub(super) fn acme_replan(&self, domain: &str) {
        if !self.config.acme.enabled {
            return;
        }
        let domain = domain.trim_end_matches('.');
        let key = AssociationKey::zone(domain);
        match self.acme_wanted().get(domain) {
            Some(w) => {
                let at = self.acme_due(domain, w);
                self.set_acme_status(domain, w, |s| s.next_order_at = Some(at));
                self.scheduler
                    .schedule(self.clock_instant(at), key, Job::RenewCertificate);
            }
            None => self.acme_forget(domain),
        }
    }

    /// Removes what ACME kept for `domain`: its job, its status, its pending HTTP-01
    /// tokens, its pair under `keys/acme/` and the copies installed for the listener (only
    /// if they are still ACME's: an operator's own certificate stays).
    fn acme_forget(&self, domain: &str) {
        let domain = domain.trim_end_matches('.');
        self.scheduler
            .unschedule(&AssociationKey::zone(domain), Job::RenewCertificate);
        if let Ok(mut s) = self.acme.status.lock() {
            s.remove(domain);
        }
        self.acme_tokens.remove_domain(domain);
        let keys = &self.config.keys_dir;
        let (crt, _) = crate::acme::pair_files(keys, domain);
        let Ok(chain) = std::fs::read_to_string(&crt) else {
            return;
        };
        let names = crate::acme::read_leaf(&chain)
            .map(|l| l.names)
            .unwrap_or_default();
        let certs = keys.join("certs");
        for name in names {
            let installed = certs.join(format!("{name}.crt"));
            if std::fs::read_to_string(&installed).is_ok_and(|c| c == chain) {
                let _ = std::fs::remove_file(&installed);
                let _ = std::fs::remove_file(certs.join(format!("{name}.key")));
            }
        }
        let _ = crate::durable::sync_dir(&certs);
        crate::acme::remove_pair(keys, domain);
        if let Some(store) = self.web_certs.get() {
            for e in store.load() {
                tracing::error!(error = %e, "web certificate not reloaded");
            }
        }
        tracing::info!(%domain, "ACME certificate removed: the domain no longer wants one");
    }

    /// The store certificates are installed into: the listener's, or one on the folder.
    fn cert_store(&self) -> Arc<crate::web::tls::CertStore> {
        self.web_certs.get().cloned().unwrap_or_else(|| {
            Arc::new(crate::web::tls::CertStore::new(
                self.config.keys_dir.join("certs"),
            ))
        })
    }

    fn install(&self, names: &[String], chain: &str, key: &str) -> Result<(), String> {
        let store = self.cert_store();
        for name in names {
            store.install(name, chain, key).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn install_missing(&self, names: &[String], chain: &str, key: &str) {
        let certs = self.config.keys_dir.join("certs");
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !certs.join(format!("{n}.crt")).exists())
            .cloned()
            .collect();
        if !missing.is_empty()
            && let Err(e) = self.install(&missing, chain, key)
        {
            tracing::error!(error = %e, "ACME certificate not installed");
        }
    }

    async fn acme_client(&self) -> Result<Arc<crate::acme::Client>, crate::acme::AcmeError> {
        let mut client = self.acme.client.lock().await;
        if let Some(c) = client.as_ref() {
            return Ok(c.clone());
        }
        let made = Arc::new(crate::acme::Client::new(
            &self.config.acme,
            &self.config.keys_dir,
        )?);
        *client = Some(made.clone());
        Ok(made)
    }

    /// The job: orders a certificate for `domain`'s names, saves and installs it, and plans
    /// the next order (renewal, or a retry with backoff after a failure).
    pub(super) async fn renew_certificate(&self, domain: &str) {
        let started = self
            .acme
            .in_flight
            .lock()
            .map(|mut f| f.insert(domain.to_string()))
            .unwrap_or(false);
        if !started {
            return;
        }
        let ordered = self.order_certificate(domain).await;
        if let Ok(mut f) = self.acme.in_flight.lock() {
            f.remove(domain);
        }
        // The names may have changed while the order ran: a certificate that does not
        // cover them is due at once.
        if let Some(ordered) = ordered
            && self
                .acme_wanted()
                .get(domain)
                .is_some_and(|w| *w != ordered)
        {
            self.acme_replan(domain);
        }
    }

    /// One order; what it was for, when it succeeded.
    async fn order_certificate(&self, domain: &str) -> Option<Wanted> {
        let Some(wanted) = self.acme_wanted().get(domain).cloned() else {
            self.acme_forget(domain);
            return None;
        };
        let names = &wanted.names;
        let result = match self.acme_client().await {
            Ok(client) => match wanted.challenge {
                ChallengeKind::Dns01 => client.issue(names, &ZoneChallenges(self)).await,
                ChallengeKind::Http01 => {
                    let web = WebChallenges {
                        shared: self,
                        domain,
                    };
                    client.issue(names, &web).await
                }
            },
            Err(e) => Err(e),
        };
        let result = result.and_then(|issued| {
            crate::acme::save_pair(&self.config.keys_dir, domain, &issued)?;
            self.install(names, &issued.chain_pem, &issued.key_pem)
                .map_err(|reason| crate::acme::AcmeError::File {
                    path: self.config.keys_dir.join("certs").display().to_string(),
                    reason,
                })?;
            Ok(issued)
        });
        // The association may have gone while the order ran.
        if !self.acme_wanted().contains_key(domain) {
            self.acme_forget(domain);
            return None;
        }
        let key = AssociationKey::zone(domain);
        match result {
            Ok(issued) => {
                let offset = self.clock_offset.load(std::sync::atomic::Ordering::Relaxed);
                let at = crate::acme::renew_point(
                    &issued.leaf,
                    self.config.acme.renew_before_days * 86_400,
                ) + offset;
                self.set_acme_status(domain, &wanted, |s| {
                    s.offset_at_issue = offset;
                    s.not_after = Some(issued.leaf.not_after);
                    s.serial = Some(issued.leaf.serial.clone());
                    s.failures = 0;
                    s.last_error = None;
                    s.next_order_at = Some(at);
                });
                self.metrics.acme_orders.with_label_values(&["ok"]).inc();
                tracing::info!(%domain, names = %names.join(","), challenge = wanted.challenge.as_str(), serial = %issued.leaf.serial, not_after = issued.leaf.not_after, "ACME certificate issued and installed");
                self.scheduler
                    .schedule(self.clock_instant(at), key, Job::RenewCertificate);
                Some(wanted)
            }
            Err(e) => {
                let mut failures = 1;
                let message = e.to_string();
                let now = self.clock_now();
                let mut at = now;
                self.set_acme_status(domain, &wanted, |s| {
                    s.failures = s.failures.saturating_add(1);
                    failures = s.failures;
                    let wait = self
                        .config
                        .acme
                        .retry_secs
                        .saturating_mul(1 << (s.failures - 1).min(20))
                        .min(MAX_RETRY_SECS);
                    at = now + wait;
                    s.next_order_at = Some(at);
                    s.last_error = Some(message.clone());
                });
                self.metrics
                    .acme_orders
                    .with_label_values(&["failed"])
                    .inc();
                tracing::warn!(%domain, challenge = wanted.challenge.as_str(), failures, retry_in_secs = at - now, error = %message, "ACME order failed; the certificate in use (if any) is kept");
                self.scheduler
                    .schedule(self.clock_instant(at), key, Job::RenewCertificate);
                None
            }
        }
    }

    /// Every domain's certificate, for the API.
    pub fn acme_status(&self) -> Vec<CertificateStatus> {
        self.acme
            .status
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}
