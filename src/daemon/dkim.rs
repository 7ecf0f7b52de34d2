//! The writer's side of DKIM: making keys, publishing and rotating selectors, signing.
//!
//! Key generation runs on blocking threads; key files are written before the association
//! that names them, and removed only after the association and zone no longer publish them.
//! A key file that cannot be used (missing, unreadable, readable by others, corrupt) is
//! reported in `/v1/status` and the log, and its domain stops signing; no key is ever
//! regenerated over an existing one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::{Name, RData, RecordType};

use super::Shared;
use super::associations::{AssociationError, AssociationReport};
use super::scheduler::{AssociationKey, Job};
use crate::dkim::key::{self, SigningKey};
use crate::dkim::message::{Message, MessageError, sign};
use crate::provision::association::Association;
use crate::provision::dkim::{
    DkimGeneration, DkimKey, SelectorState, active, delegated, delegated_name, selector_names,
};
use crate::provision::platform::Platform;
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

    /// Makes generation `n`: one key per algorithm, written to new files.
    async fn make_generation(
        &self,
        domain: &str,
        platform: &Platform,
        n: u32,
        state: SelectorState,
        files: &mut Vec<PathBuf>,
    ) -> Result<DkimGeneration, AssociationError> {
        let Some(policy) = &platform.dkim else {
            return Err(AssociationError::Unprocessable {
                field: "records.dkim",
                message: format!("platform {} has no dkim policy", platform.id),
            });
        };
        let now = unix_now();
        let mut keys = Vec::new();
        for (algorithm, selector) in selector_names(policy, &platform.id, n, now) {
            let path = self.key_file(domain, &selector);
            let bits = policy.rsa_bits;
            let target = path.clone();
            let generated =
                tokio::task::spawn_blocking(move || -> Result<String, key::KeyError> {
                    let k = key::generate(algorithm, bits)?;
                    key::write_new(&target, &k.pkcs8)?;
                    Ok(k.public)
                })
                .await
                .map_err(|e| AssociationError::Unprocessable {
                    field: "records.dkim",
                    message: e.to_string(),
                })?;
            let public = generated.map_err(|e| AssociationError::Unprocessable {
                field: "records.dkim",
                message: e.to_string(),
            })?;
            files.push(path);
            self.metrics
                .dkim_events
                .with_label_values(&["generated"])
                .inc();
            tracing::info!(%domain, %selector, algorithm = algorithm.key_type(), "DKIM key generated");
            keys.push(DkimKey {
                selector,
                algorithm,
                public,
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

    /// Gives an association with DKIM on an active key and a successor (making them if
    /// needed), or drops its keys when DKIM is off. Returns the files of the keys it made.
    pub(super) async fn prepare_dkim(
        &self,
        association: &mut Association,
        platform: &Platform,
    ) -> Result<Vec<PathBuf>, AssociationError> {
        let mut files = Vec::new();
        if !association.records.dkim {
            association.dkim.clear();
            return Ok(files);
        }
        if !association.dkim.is_empty() {
            return Ok(files);
        }
        let served = Self::serves_dkim(association, platform);
        let (first, second) = if served {
            (SelectorState::Active, SelectorState::Published)
        } else {
            (SelectorState::Generated, SelectorState::Generated)
        };
        let domain = association.domain.clone();
        let made = async {
            let a = self
                .make_generation(&domain, platform, 1, first, &mut files)
                .await?;
            let b = self
                .make_generation(&domain, platform, 2, second, &mut files)
                .await?;
            Ok::<_, AssociationError>(vec![a, b])
        }
        .await;
        match made {
            Ok(generations) => {
                association.dkim = generations;
                Ok(files)
            }
            Err(e) => {
                for f in files {
                    let _ = std::fs::remove_file(f);
                }
                Err(e)
            }
        }
    }

    /// Serves the TXT of every selector of a delegated (cname) association in the
    /// delegation zone, and removes those of selectors that went.
    pub(super) async fn sync_delegated_dkim(
        &self,
        association: &Association,
        previous: Option<&Association>,
        platform: &Platform,
    ) -> Result<(), AssociationError> {
        let Some(zone_name) = delegated(platform, association.hosted) else {
            return Ok(());
        };
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
        let same = next.records().count() == zone.records().count()
            && zone
                .records()
                .all(|r| r.record_type() == RecordType::SOA || next.records().any(|n| n == r));
        if !same {
            let file = zone_file(&self.config.zones_dir, next.origin());
            self.store_zone(next, file).await?;
        }
        Ok(())
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
        let _writer = self.writer.lock().await;
        let domain_text = domain.to_lowercase().to_ascii();
        let set = self.associations.load_full();
        let existing = set
            .for_domain(&domain_text)
            .find(|a| a.records.dkim && platform.is_none_or(|p| a.platform == p))
            .cloned()
            .ok_or_else(|| AssociationError::NotFound {
                domain: domain_text.clone(),
                platform: platform.unwrap_or("(any with dkim)").to_string(),
            })?;
        self.rotate_locked(&existing).await
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
        let fresh = self
            .make_generation(&next.domain, &platform, n, state, &mut files)
            .await?;
        next.dkim.push(fresh);
        let outcome = self.commit(next, Some(existing), &platform, false).await;
        match &outcome {
            Ok(_) => {
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
            Err(_) => {
                for f in files {
                    let _ = std::fs::remove_file(f);
                }
            }
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
            tracing::error!(domain = %a.domain, error = %e, "DKIM rotation failed; retried later");
            let retry = std::time::Duration::from_secs(self.config.diagnosis.interval_secs.max(1));
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
        for g in &a.dkim {
            for k in &g.keys {
                self.metrics
                    .dkim_key_age
                    .with_label_values(&[&a.domain, &k.selector])
                    .set(now.saturating_sub(g.created_at) as i64);
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
        if let Ok(mut current) = self.dkim_errors.lock() {
            *current = errors;
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
