//! The writer's side of DKIM: making keys, publishing and rotating selectors, signing.
//!
//! Keys are generated on blocking threads before the writer lock is taken (the key pool);
//! key files are written with the association that names them, all or nothing, and removed
//! only after the association and zone no longer publish them. A key file that cannot be
//! used (missing, unreadable, readable by others, corrupt) is reported in `/v1/status` and
//! the log, and its domain stops signing; no key is ever regenerated over a file an
//! association names. A key file no association names is reported, never used, and replaced
//! by a new key that takes its name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::{Name, RData, RecordType};

use super::Shared;
use super::associations::{AssociationError, AssociationReport};
use super::scheduler::{AssociationKey, Job};
use crate::dkim::key::{self, SigningKey};
use crate::dkim::message::{Message, MessageError, sign};
use crate::durable::FileChange;
use crate::provision::association::Association;
use crate::provision::dkim::{
    DkimGeneration, DkimKey, SelectorState, active, delegated, delegated_name, selector_names,
};
use crate::provision::platform::Platform;
use crate::zone::Zone;
use crate::zone::edit::{ChangeKind, RrsetChange};
use crate::zone::serial::next_serial;
use crate::zone::set::{unix_now, zone_file};

/// Why a message was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{0}")]
    Message(#[from] MessageError),
    #[error("{0} has no association that signs with DKIM")]
    NotFound(String),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Key(String),
}

impl Shared {
    fn key_file(&self, domain: &str, selector: &str) -> PathBuf {
        key::key_path(&self.config.keys_dir, domain, selector)
    }

    /// The key kinds one generation under `platform`'s policy needs.
    pub(super) fn generation_kinds(platform: &Platform) -> Vec<key::KeyKind> {
        platform
            .dkim
            .as_ref()
            .map(|p| {
                p.algorithms
                    .iter()
                    .map(|a| key::kind(*a, p.rsa_bits))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Generates, before the writer lock is taken, the keys of `generations` generations of
    /// `platform` that the pool lacks.
    pub(super) async fn fill_key_pool(
        &self,
        platform: &Platform,
        generations: usize,
    ) -> Result<(), AssociationError> {
        let wanted = Self::generation_kinds(platform).repeat(generations);
        self.key_pool
            .fill(&wanted)
            .await
            .map_err(|e| AssociationError::Unprocessable {
                field: "records.dkim",
                message: e.to_string(),
            })
    }

    /// Makes generation `n` from keys of the pool: no key is generated here (the writer lock
    /// is held), and no file is written (the key files go into `files`, written with the
    /// association all or nothing). A key file already at a selector's place is replaced
    /// only when no association names it: it is a leftover of an interrupted change, never
    /// published nor used to sign.
    fn make_generation(
        &self,
        domain: &str,
        platform: &Platform,
        n: u32,
        state: SelectorState,
        files: &mut Vec<FileChange>,
    ) -> Result<DkimGeneration, AssociationError> {
        let Some(policy) = &platform.dkim else {
            return Err(AssociationError::Unprocessable {
                field: "records.dkim",
                message: format!("platform {} has no dkim policy", platform.id),
            });
        };
        let now = unix_now();
        let names = selector_names(policy, &platform.id, n, now);
        let kinds: Vec<key::KeyKind> = names
            .iter()
            .map(|(a, _)| key::kind(*a, policy.rsa_bits))
            .collect();
        let made = self
            .key_pool
            .take(&kinds)
            .ok_or(AssociationError::KeysPending)?;
        let set = self.associations.load();
        let mut keys = Vec::new();
        for ((algorithm, selector), generated) in names.into_iter().zip(made) {
            let path = self.key_file(domain, &selector);
            let named = set
                .for_domain(domain)
                .flat_map(|a| a.dkim.iter())
                .flat_map(|g| g.keys.iter())
                .any(|k| k.selector == selector);
            if path.exists() {
                if named {
                    return Err(AssociationError::Unprocessable {
                        field: "records.dkim",
                        message: format!(
                            "{}: a key file already exists there; it is not replaced",
                            path.display()
                        ),
                    });
                }
                tracing::warn!(file = %path.display(), "replacing a leftover DKIM key file that no association names");
            }
            files.push(FileChange::write(
                &path,
                key::to_pem(&generated.pkcs8).into_bytes(),
                crate::durable::PRIVATE_FILE_MODE,
            ));
            self.metrics
                .dkim_events
                .with_label_values(&["generated"])
                .inc();
            tracing::info!(%domain, %selector, algorithm = algorithm.key_type(), "DKIM key generated");
            keys.push(DkimKey {
                selector,
                algorithm,
                public: generated.public,
            });
        }
        let published =
            matches!(state, SelectorState::Published | SelectorState::Active).then_some(now);
        Ok(DkimGeneration {
            n,
            keys,
            state,
            created_at: now,
            published_at: published,
            active_since: (state == SelectorState::Active).then_some(now),
            retiring_since: None,
        })
    }

    /// Whether records of `association` are served by us (hosted zone or delegation zone).
    fn serves_dkim(association: &Association, platform: &Platform) -> bool {
        association.hosted || delegated(platform, false).is_some()
    }

    /// Gives an association with DKIM on an active key and a successor (from the key pool,
    /// [`AssociationError::KeysPending`] when it lacks them), or drops its keys when DKIM is
    /// off. Returns the key files to write with the association.
    pub(super) fn prepare_dkim(
        &self,
        association: &mut Association,
        platform: &Platform,
    ) -> Result<Vec<FileChange>, AssociationError> {
        let mut files = Vec::new();
        if !association.records.dkim {
            association.dkim.clear();
            return Ok(files);
        }
        if !association.dkim.is_empty() {
            return Ok(files);
        }
        let kinds = Self::generation_kinds(platform).repeat(2);
        if !self.key_pool.missing(&kinds).is_empty() {
            return Err(AssociationError::KeysPending);
        }
        let served = Self::serves_dkim(association, platform);
        let (first, second) = if served {
            (SelectorState::Active, SelectorState::Published)
        } else {
            (SelectorState::Generated, SelectorState::Generated)
        };
        let domain = association.domain.clone();
        let a = self.make_generation(&domain, platform, 1, first, &mut files)?;
        let b = self.make_generation(&domain, platform, 2, second, &mut files)?;
        association.dkim = vec![a, b];
        Ok(files)
    }

    /// The delegation zone serving the TXT of every selector of a delegated (cname)
    /// association, without those of selectors that went; `None` when nothing changes.
    pub(super) fn delegated_dkim_zone(
        &self,
        association: &Association,
        previous: Option<&Association>,
        platform: &Platform,
    ) -> Result<Option<(Arc<Zone>, PathBuf)>, AssociationError> {
        let Some(zone_name) = delegated(platform, association.hosted) else {
            return Ok(None);
        };
        if self.catalog_name().as_ref() == Some(&zone_name) {
            return Err(AssociationError::Unprocessable {
                field: "records.dkim",
                message: format!(
                    "the DKIM delegation zone {zone_name} of platform {} is the catalog zone (transfer.catalog), which takes no other records",
                    platform.id
                ),
            });
        }
        let Some(zone) = self.zones.load().get(&zone_name) else {
            return Err(AssociationError::Unprocessable {
                field: "records.dkim",
                message: format!(
                    "the DKIM delegation zone {zone_name} of platform {} is not hosted here",
                    platform.id
                ),
            });
        };
        let domain = Name::from_ascii(&association.domain).unwrap_or_else(|_| Name::root());
        let wanted: Vec<&DkimKey> = association
            .dkim
            .iter()
            .flat_map(|g| g.keys.iter())
            .collect();
        let mut changes = Vec::new();
        for k in &wanted {
            let name = Name::from_ascii(delegated_name(&k.selector, &domain, &zone_name))
                .unwrap_or_else(|_| Name::root());
            let value = crate::dkim::key_record(k.algorithm, &k.public);
            let chunks: Vec<&[u8]> = value.as_bytes().chunks(255).collect();
            changes.push(RrsetChange {
                kind: ChangeKind::Replace,
                name,
                rtype: RecordType::TXT,
                ttl: Some(platform.ttl),
                records: vec![RData::TXT(hickory_proto::rr::rdata::TXT::from_bytes(
                    chunks,
                ))],
            });
        }
        for old in previous
            .into_iter()
            .flat_map(|p| p.dkim.iter())
            .flat_map(|g| g.keys.iter())
        {
            if !wanted.iter().any(|k| k.selector == old.selector) {
                changes.push(RrsetChange {
                    kind: ChangeKind::Delete,
                    name: Name::from_ascii(delegated_name(&old.selector, &domain, &zone_name))
                        .unwrap_or_else(|_| Name::root()),
                    rtype: RecordType::TXT,
                    ttl: None,
                    records: vec![],
                });
            }
        }
        let serial = next_serial(self.config.zone_defaults.serial, zone.serial(), unix_now());
        let next = zone
            .with_changes(&changes, serial, platform.ttl)
            .map_err(AssociationError::Zone)?;
        let (next_view, view) = (next.view(), zone.view());
        let same = next_view.records().count() == view.records().count()
            && view
                .records()
                .all(|r| r.record_type() == RecordType::SOA || next_view.records().any(|n| n == r));
        if same {
            return Ok(None);
        }
        let file = zone_file(&self.config.zones_dir, next.origin());
        Ok(Some((Arc::new(next), file)))
    }

    /// Deletes the key files of selectors `previous` had and `association` no longer has.
    pub(super) fn remove_dropped_keys(
        &self,
        association: &Association,
        previous: Option<&Association>,
    ) {
        for old in previous
            .into_iter()
            .flat_map(|p| p.dkim.iter())
            .flat_map(|g| g.keys.iter())
        {
            let kept = association
                .dkim
                .iter()
                .flat_map(|g| g.keys.iter())
                .any(|k| k.selector == old.selector);
            if !kept {
                let path = self.key_file(&association.domain, &old.selector);
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        self.metrics
                            .dkim_events
                            .with_label_values(&["removed"])
                            .inc();
                        self.metrics
                            .dkim_key_age
                            .remove_label_values(&[&association.domain, &old.selector])
                            .ok();
                        tracing::info!(domain = %association.domain, selector = %old.selector, "DKIM selector removed with its key");
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e, "cannot remove a retired DKIM key")
                    }
                }
                self.dkim_keys.lock().map(|mut c| c.remove(&path)).ok();
            }
        }
    }

    /// Rotates now: the successor signs, the active key retires, a new successor is made.
    pub async fn rotate_dkim(
        &self,
        domain: &Name,
        platform: Option<&str>,
    ) -> Result<AssociationReport, AssociationError> {
        let domain_text = domain.to_lowercase().to_ascii();
        let find = || {
            self.associations
                .load()
                .for_domain(&domain_text)
                .find(|a| a.records.dkim && platform.is_none_or(|p| a.platform == p))
                .cloned()
                .ok_or_else(|| AssociationError::NotFound {
                    domain: domain_text.clone(),
                    platform: platform.unwrap_or("(any with dkim)").to_string(),
                })
        };
        let mut attempts = 0;
        loop {
            // The new successor's keys are made before the writer lock is taken.
            let p = self.platform(&find()?.platform)?;
            self.fill_key_pool(&p, 1).await?;
            let _writer = self.writer.lock().await;
            match self.rotate_locked(&find()?).await {
                Err(AssociationError::KeysPending) if attempts < 4 => attempts += 1,
                outcome => return outcome,
            }
        }
    }

    async fn rotate_locked(
        &self,
        existing: &Association,
    ) -> Result<AssociationReport, AssociationError> {
        let platform = self.platform(&existing.platform)?;
        let mut next = existing.clone();
        let successor = next
            .dkim
            .iter()
            .position(|g| g.state == SelectorState::Published)
            .ok_or_else(|| AssociationError::Unprocessable {
                field: "dkim",
                message: format!(
                    "{} has no published successor key yet (an external domain's record must be seen first)",
                    existing.domain
                ),
            })?;
        let now = unix_now();
        for g in next.dkim.iter_mut() {
            if g.state == SelectorState::Active {
                g.state = SelectorState::Retiring;
                g.retiring_since = Some(now);
            }
        }
        next.dkim[successor].state = SelectorState::Active;
        next.dkim[successor].active_since = Some(now);
        let n = next.dkim.iter().map(|g| g.n).max().unwrap_or(0) + 1;
        let state = if Self::serves_dkim(&next, &platform) {
            SelectorState::Published
        } else {
            SelectorState::Generated
        };
        let mut files = Vec::new();
        let fresh = match self.make_generation(&next.domain, &platform, n, state, &mut files) {
            Err(AssociationError::KeysPending) => {
                // Called by the DKIM clock with the writer held: the keys are made in the
                // background and the rotation happens at a next tick.
                self.key_pool
                    .fill_in_background(Self::generation_kinds(&platform));
                return Err(AssociationError::KeysPending);
            }
            made => made?,
        };
        next.dkim.push(fresh);
        let outcome = self
            .commit_with_keys(next, Some(existing), &platform, false, files)
            .await;
        if outcome.is_ok() {
            self.metrics
                .dkim_events
                .with_label_values(&["activated"])
                .inc();
            self.metrics
                .dkim_events
                .with_label_values(&["retiring"])
                .inc();
            tracing::info!(domain = %existing.domain, platform = %existing.platform, "DKIM rotated: the successor signs, the old key retires");
        }
        outcome
    }

    /// The `Rotate` job: when the active key is `rotate_after` old and a published
    /// successor exists, the successor signs and the old key retires.
    pub(super) async fn rotate_due(&self, key: &AssociationKey) {
        let _writer = self.writer.lock().await;
        let Some(a) = self
            .associations
            .load()
            .find(&key.domain, &key.platform)
            .cloned()
        else {
            return;
        };
        let Some(policy) = self.platform(&a.platform).ok().and_then(|p| p.dkim) else {
            return;
        };
        let due = active(&a.dkim)
            .and_then(|g| g.active_since)
            .is_some_and(|since| unix_now().saturating_sub(since) >= policy.rotate_after_secs)
            && a.dkim.iter().any(|g| g.state == SelectorState::Published);
        if !due {
            // Woken early (the association changed meanwhile): the deadlines are derived again.
            self.reschedule(&a, false);
            return;
        }
        if let Err(e) = self.rotate_locked(&a).await {
            let retry = if matches!(e, AssociationError::KeysPending) {
                // The successor's key is being generated outside the lock: try again soon.
                std::time::Duration::from_secs(1)
            } else {
                tracing::error!(domain = %a.domain, error = %e, "DKIM rotation failed; retried later");
                std::time::Duration::from_secs(self.config.diagnosis.interval_secs.max(1))
            };
            self.scheduler.schedule(
                tokio::time::Instant::now() + retry,
                key.clone(),
                Job::Rotate,
            );
        }
    }

    /// The `DropRetired` job: keys retired longer than `keep_retired` go, record first.
    pub(super) async fn drop_retired(&self, key: &AssociationKey) {
        let _writer = self.writer.lock().await;
        let Some(current) = self
            .associations
            .load()
            .find(&key.domain, &key.platform)
            .cloned()
        else {
            return;
        };
        let Ok(platform) = self.platform(&current.platform) else {
            return;
        };
        let Some(policy) = platform.dkim.clone() else {
            return;
        };
        let now = unix_now();
        let expired = |g: &DkimGeneration| {
            g.state == SelectorState::Retiring
                && g.retiring_since
                    .is_some_and(|s| now.saturating_sub(s) >= policy.keep_retired_secs)
        };
        if !current.dkim.iter().any(expired) {
            self.reschedule(&current, false);
            return;
        }
        let mut next = current.clone();
        next.dkim.retain(|g| !expired(g));
        if let Err(e) = self.commit(next, Some(&current), &platform, false).await {
            tracing::error!(domain = %current.domain, error = %e, "retired DKIM key not removed; retried later");
            let retry = std::time::Duration::from_secs(self.config.diagnosis.interval_secs.max(1));
            self.scheduler.schedule(
                tokio::time::Instant::now() + retry,
                key.clone(),
                Job::DropRetired,
            );
        }
    }

    /// For one external association: the generations not yet published that every
    /// authoritative nameserver now serves with our key (keys compared as bytes).
    async fn observe_dkim(&self, a: &Association) -> Option<(String, String, Vec<u32>)> {
        let prober = crate::diagnose::prober(&self.config.diagnosis)?;
        let platform = self.platform(&a.platform).ok()?;
        if a.hosted || delegated(&platform, false).is_some() {
            return None;
        }
        let domain = Name::from_ascii(&a.domain).ok()?;
        let nameservers = match prober.nameservers(&domain).await {
            Ok(ns) => ns,
            Err(e) => {
                tracing::debug!(domain = %a.domain, error = %e, "nameservers not found");
                return None;
            }
        };
        let addresses: Vec<std::net::SocketAddr> = nameservers
            .iter()
            .flat_map(|n| n.addresses.iter().copied())
            .collect();
        if addresses.is_empty() {
            return None;
        }
        let mut seen = Vec::new();
        for g in a
            .dkim
            .iter()
            .filter(|g| g.state == SelectorState::Generated)
        {
            let mut everywhere = true;
            'keys: for k in &g.keys {
                let Ok(name) = Name::from_ascii(format!("{}._domainkey.{}", k.selector, a.domain))
                else {
                    everywhere = false;
                    break;
                };
                for server in &addresses {
                    let _permit = self.nameserver_permit(*server).await;
                    let served = match prober.query(*server, &name, RecordType::TXT, false).await {
                        Ok(m) => {
                            m.metadata.authoritative
                                && crate::diagnose::probe::txt_values(&m)
                                    .iter()
                                    .any(|v| crate::dkim::same_key(v, &k.public))
                        }
                        Err(_) => false,
                    };
                    if !served {
                        everywhere = false;
                        break 'keys;
                    }
                }
            }
            if everywhere {
                seen.push(g.n);
            }
        }
        (!seen.is_empty()).then(|| (a.domain.clone(), a.platform.clone(), seen))
    }

    /// Part of an external association's diagnosis: keys now served everywhere are marked
    /// published, and the first one starts signing.
    pub(super) async fn observe_dkim_now(&self, a: &Association) {
        if a.hosted || !a.dkim.iter().any(|g| g.state == SelectorState::Generated) {
            return;
        }
        if let Some(seen) = self.observe_dkim(a).await {
            let _writer = self.writer.lock().await;
            self.apply_observed(vec![seen]).await;
        }
    }

    /// Marks observed generations published, and lets the oldest published one sign when
    /// none does yet. Call with the writer lock held.
    async fn apply_observed(&self, observed: Vec<(String, String, Vec<u32>)>) {
        let now = unix_now();
        for (domain, platform_id, generations) in observed {
            let Some(current) = self
                .associations
                .load()
                .find(&domain, &platform_id)
                .cloned()
            else {
                continue;
            };
            let Ok(platform) = self.platform(&platform_id) else {
                continue;
            };
            let mut next = current.clone();
            for g in next
                .dkim
                .iter_mut()
                .filter(|g| generations.contains(&g.n) && g.state == SelectorState::Generated)
            {
                g.state = SelectorState::Published;
                g.published_at = Some(now);
                tracing::info!(%domain, generation = g.n, "DKIM key record seen on every nameserver");
            }
            if active(&next.dkim).is_none()
                && let Some(first) = next
                    .dkim
                    .iter_mut()
                    .filter(|g| g.state == SelectorState::Published)
                    .min_by_key(|g| g.n)
            {
                first.state = SelectorState::Active;
                first.active_since = Some(now);
                self.metrics
                    .dkim_events
                    .with_label_values(&["activated"])
                    .inc();
                tracing::info!(%domain, generation = first.n, "DKIM signing starts");
            }
            if next != current
                && let Err(e) = self.commit(next, Some(&current), &platform, false).await
            {
                tracing::error!(%domain, error = %e, "observed DKIM state not saved");
            }
        }
    }

    /// Sets the key-age gauges of an association's keys and says why its signing key
    /// cannot be used, if it cannot.
    fn key_error_of(&self, a: &Association, now: u64) -> Option<String> {
        let mut error = None;
        // Under `metrics.per_domain: failing` the diagnosis decides (it sets and removes
        // the domain's series); `none` has none.
        let series = self.config.metrics.per_domain == crate::config::PerDomain::All;
        for g in &a.dkim {
            for k in &g.keys {
                if series {
                    self.metrics
                        .dkim_key_age
                        .with_label_values(&[&a.domain, &k.selector])
                        .set(now.saturating_sub(g.created_at) as i64);
                }
                if g.state == SelectorState::Active
                    && let Err(e) = self.signing_key(&a.domain, &k.selector)
                {
                    error = Some(e);
                }
            }
        }
        error
    }

    /// Checks the signing keys of one association (like [`Shared::check_dkim_keys`]).
    pub(super) fn check_keys_of(&self, a: &Association) {
        let error = self.key_error_of(a, unix_now());
        if let Ok(mut errors) = self.dkim_errors.lock() {
            match error {
                Some(e) => {
                    if errors.get(&a.domain) != Some(&e) {
                        tracing::error!(domain = %a.domain, error = %e, "DKIM key unusable: this domain does not sign until it is fixed");
                    }
                    errors.insert(a.domain.clone(), e);
                }
                None if !a.dkim.is_empty() => {
                    errors.remove(&a.domain);
                }
                None => {}
            }
        }
    }

    /// Loads every signing key once, recording those that cannot be used, and sets the
    /// key-age gauges.
    pub fn check_dkim_keys(&self) {
        let now = unix_now();
        let mut errors = BTreeMap::new();
        for a in self.associations.load().all() {
            if let Some(e) = self.key_error_of(a, now) {
                errors.insert(a.domain.clone(), e);
            }
        }
        for (domain, e) in &errors {
            tracing::error!(%domain, error = %e, "DKIM key unusable: this domain does not sign until it is fixed");
        }
        let leftovers = self.leftover_key_files();
        if let Ok(mut current) = self.dkim_errors.lock() {
            for file in &leftovers {
                let shown = file.display().to_string();
                if !current.contains_key(&shown) {
                    tracing::warn!(file = %shown, "DKIM key file that no association names: never used to sign; remove it (a new key taking its name replaces it)");
                }
                errors.insert(shown, LEFTOVER_KEY.to_string());
            }
            *current = errors;
        }
    }

    /// Key files (`keys/dkim/<domain>/<selector>.pem`) that no association names: left by a
    /// change interrupted before its association was written, by an older version, or by a
    /// removal that failed. Domains whose association file does not load are not judged.
    fn leftover_key_files(&self) -> Vec<PathBuf> {
        let set = self.associations.load();
        let mut out = Vec::new();
        let Ok(domains) = std::fs::read_dir(self.config.keys_dir.join("dkim")) else {
            return out;
        };
        for dir in domains.filter_map(Result::ok) {
            let domain = format!("{}.", dir.file_name().to_string_lossy());
            if set.broken().contains_key(&domain) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for f in files.filter_map(Result::ok) {
                let name = f.file_name().to_string_lossy().into_owned();
                let Some(selector) = name.strip_suffix(".pem") else {
                    continue;
                };
                let named = set
                    .for_domain(&domain)
                    .flat_map(|a| a.dkim.iter())
                    .flat_map(|g| g.keys.iter())
                    .any(|k| k.selector == selector);
                if !named && !name.starts_with('.') {
                    out.push(f.path());
                }
            }
        }
        out.sort();
        out
    }

    /// Key files just written by a change are no longer leftovers.
    pub(super) fn forget_leftovers(&self, written: &[PathBuf]) {
        if let Ok(mut errors) = self.dkim_errors.lock() {
            for file in written {
                errors.remove(&file.display().to_string());
            }
        }
    }

    /// At start, before anything reads a key: a key file a crash left as a temp file after
    /// its association was written is put in place (its public key must be the one the
    /// association publishes); every other temp file of the keys folders goes.
    pub fn recover_key_files(&self) {
        for a in self.associations.load().all() {
            for k in a.dkim.iter().flat_map(|g| g.keys.iter()) {
                let path = self.key_file(&a.domain, &k.selector);
                if path.exists() {
                    continue;
                }
                if let Some(tmp) = pending_key_file(&path, &k.public) {
                    match std::fs::rename(&tmp, &path)
                        .and_then(|()| crate::durable::sync_dir(path.parent().unwrap_or(&path)))
                    {
                        Ok(()) => {
                            tracing::warn!(file = %path.display(), "DKIM key file of an interrupted change put in place")
                        }
                        Err(e) => {
                            tracing::error!(file = %path.display(), error = %e, "cannot put a DKIM key file in place")
                        }
                    }
                }
            }
        }
        let Ok(domains) = std::fs::read_dir(self.config.keys_dir.join("dkim")) else {
            return;
        };
        for dir in domains.filter_map(Result::ok) {
            if let Ok(n) = crate::durable::remove_stale_temp_files(&dir.path())
                && n > 0
            {
                tracing::warn!(dir = %dir.path().display(), removed = n, "removed temp files left by a crash");
            }
        }
    }

    /// The signing key of a selector. The file is checked on every use (it must exist and be
    /// private); it is parsed again only when its stamp (mtime, length) changed.
    pub(super) fn signing_key(
        &self,
        domain: &str,
        selector: &str,
    ) -> Result<Arc<SigningKey>, String> {
        let path = self.key_file(domain, selector);
        let stamp = key::check_file(&path).map_err(|e| e.to_string())?;
        if let Some((cached, k)) = self
            .dkim_keys
            .lock()
            .ok()
            .and_then(|c| c.get(&path).cloned())
            && cached == stamp
        {
            return Ok(k);
        }
        let k = Arc::new(SigningKey::load(&path).map_err(|e| e.to_string())?);
        if let Ok(mut c) = self.dkim_keys.lock() {
            c.insert(path, (stamp, k.clone()));
        }
        Ok(k)
    }

    /// Signs a message for `domain` with its active key(s); returns the header lines.
    pub fn dkim_sign(
        &self,
        domain: &Name,
        platform: Option<&str>,
        raw: &[u8],
    ) -> Result<Vec<String>, SignError> {
        let message = Message::parse(raw)?;
        let domain_text = domain.to_lowercase().to_ascii();
        let set = self.associations.load();
        let association = set
            .for_domain(&domain_text)
            .find(|a| a.records.dkim && platform.is_none_or(|p| a.platform == p))
            .ok_or_else(|| SignError::NotFound(domain_text.clone()))?;
        let generation = active(&association.dkim).ok_or_else(|| {
            SignError::NotReady(format!(
                "{domain_text} has no active DKIM key yet: its key record must be published first"
            ))
        })?;
        let now = unix_now();
        let mut headers = Vec::new();
        for k in &generation.keys {
            let key = self.signing_key(&domain_text, &k.selector).map_err(|e| {
                if let Ok(mut errors) = self.dkim_errors.lock() {
                    errors.insert(domain_text.clone(), e.clone());
                }
                tracing::error!(domain = %domain_text, error = %e, "DKIM key unusable: not signing");
                SignError::Key(format!("{e}; {domain_text} does not sign until the key file is fixed"))
            })?;
            headers.push(sign(&message, &domain_text, &k.selector, &key, now)?);
            self.metrics
                .dkim_signatures
                .with_label_values(&[k.algorithm.key_type()])
                .inc();
        }
        Ok(headers)
    }
}

/// What `/v1/status` says of a key file no association names.
pub const LEFTOVER_KEY: &str = "no association names this key file (left by an interrupted change); it is never used to sign: remove it, or a new key taking its name replaces it";

/// The temp file, next to `path`, holding the private key whose `p=` value is `public`.
fn pending_key_file(path: &std::path::Path, public: &str) -> Option<PathBuf> {
    let dir = path.parent()?;
    let prefix = format!(".{}.tmp-", path.file_name()?.to_str()?);
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".old"))
        })
        .find(|p| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|text| key::from_pem(&text).ok())
                .and_then(|der| key::public_of(&der).ok())
                .is_some_and(|p| p == public)
        })
}
