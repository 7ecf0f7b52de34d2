//! The writer's side of associations: applying, changing, removing and reconciling them.
//!
//! Everything here runs under the single writer lock; DKIM keys are generated before it is
//! taken. A change writes its files all or nothing (`durable::commit`): every file is
//! prepared first, and if one cannot be written none is replaced and nothing is published,
//! so an error answer never follows a visible change. Order of the renames, for a crash in
//! the middle: when an association is added or changed, its file
//! `zones/associations/<domain>.yaml` goes first, then its new key files, then the zones (a
//! reconcile at start completes the records, and start-up puts in place a key file left as a
//! temp file); when one is removed, the zone goes first (a crash in between leaves the
//! association, and the unanswered DELETE can be retried). A request that changes nothing
//! writes nothing and bumps no serial.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};
use serde::Serialize;

use super::Shared;
use super::writer::{WriteError, zone_files};
use crate::durable::{self, FileChange};
use crate::provision::association::{
    ASSOCIATIONS_DIR, Association, Associations, Mode, RuleError, domain_file, plan_apply,
    plan_remove,
};
use crate::provision::dkim::expected_dkim;
use crate::provision::platform::Platform;
use crate::provision::records::{
    ExpectedRecord, Families, FamiliesPatch, MissingSetting, expected_records,
};
use crate::zone::edit::EditError;
use crate::zone::serial::next_serial;
use crate::zone::set::{unix_now, zone_file};
use crate::zone::{Zone, writer};

/// What a client asks for.
#[derive(Debug, Clone)]
pub struct AssociateRequest {
    pub domain: Name,
    pub platform: String,
    pub mode: Mode,
    pub relay_host: Option<String>,
    pub records: Families,
}

/// What a change of an association sets; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct AssociationChange {
    pub mode: Option<Mode>,
    /// `Some(None)` clears the relay host.
    pub relay_host: Option<Option<String>>,
    /// Only the families named change.
    pub records: Option<FamiliesPatch>,
}

/// What happened (or, in a dry run, would happen).
#[derive(Debug, Serialize)]
pub struct AssociationReport {
    pub association: Association,
    /// The hosted zone the records go into, if the domain is served here.
    pub zone: Option<String>,
    pub expected: Vec<ExpectedRecord>,
    /// Zone lines this request adds and removes (hosted domains); empty on a no-op.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// External domains: the lines to paste into the domain's zone, by family.
    pub to_paste: BTreeMap<String, Vec<String>>,
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AssociationError {
    #[error("unknown platform {0}")]
    UnknownPlatform(String),
    /// 422: the request is well formed but cannot be served (`field` says which part).
    #[error("{message}")]
    Unprocessable {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Rule(#[from] RuleError),
    #[error("{0}")]
    Missing(#[from] MissingSetting),
    /// 409: the records would not make a valid zone with the user's data.
    #[error("{}", .0.message)]
    Zone(EditError),
    #[error("no association of {domain} with platform {platform}")]
    NotFound { domain: String, platform: String },
    #[error("{0}")]
    Write(#[from] WriteError),
    /// 409: the domain's association file does not load; fix it first.
    #[error("the association file of {domain} is broken ({error}); fix or remove it, then reload")]
    Broken { domain: String, error: String },
    /// The DKIM keys the change needs were taken by a concurrent change: they are generated
    /// (outside the writer lock) and the change is tried again.
    #[error("new DKIM keys are still being generated; try again")]
    KeysPending,
}

fn lines(zone: &Zone) -> BTreeSet<String> {
    zone.view()
        .records()
        .filter(|r| r.record_type() != RecordType::SOA)
        .map(writer::record_line)
        .collect()
}

/// The ownership token of a new association: an HMAC of the domain and platform under the
/// daemon's API token, so a dry run shows exactly the token the real association will get
/// (also after a restart), and nobody without the API token can predict it.
fn new_token(secret: &str, domain: &str, platform: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("ownership\0{domain}\0{platform}").as_bytes());
    tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Shared {
    /// The file change that persists `domain`'s associations as they are in `set` (its file
    /// goes when it has none left).
    fn association_change(&self, set: &Associations, domain: &str) -> FileChange {
        let path = domain_file(&self.associations_dir(), domain);
        match set.domain_yaml(domain) {
            Some(text) => FileChange::write(&path, text.into_bytes(), durable::PUBLIC_FILE_MODE),
            None => FileChange::remove(&path),
        }
    }

    fn associations_dir(&self) -> PathBuf {
        self.config.zones_dir.join(ASSOCIATIONS_DIR)
    }

    /// Writes `changes` all or nothing, creating the associations folder and the folders
    /// of new key files (private) first.
    async fn write_files(&self, changes: Vec<FileChange>) -> Result<(), WriteError> {
        let public = self.associations_dir();
        let private: BTreeSet<PathBuf> = changes
            .iter()
            .filter(|c| c.content.is_some() && c.mode == durable::PRIVATE_FILE_MODE)
            .filter_map(|c| c.path.parent().map(PathBuf::from))
            .collect();
        super::writer::on_disk(&public.clone(), move || {
            durable::create_dir_with_mode(&public, durable::PUBLIC_DIR_MODE)?;
            for dir in private {
                crate::durable::create_private_dir(&dir)?;
            }
            Ok(())
        })
        .await?;
        super::writer::commit_files(changes).await
    }

    /// Serves what a committed change wrote: the associations, then the zones.
    fn publish_change(&self, set: Associations, zones: Vec<(Arc<Zone>, PathBuf)>) {
        self.associations.store(Arc::new(set));
        for (zone, file) in zones {
            self.publish_zone(zone, file);
        }
    }

    pub(super) fn platform(&self, id: &str) -> Result<Platform, AssociationError> {
        self.platforms
            .load()
            .iter()
            .find(|p| p.id == id)
            .cloned()
            .ok_or_else(|| AssociationError::UnknownPlatform(id.to_string()))
    }

    /// The zone with `association` (re)applied, `previous` taken out first; fills in what
    /// the association remembers. Returns the new zone and the lines added and removed.
    fn rebuild(
        &self,
        zone: &Zone,
        previous: Option<&Association>,
        others: &[&Association],
        association: &mut Association,
        platform: &Platform,
        expected: &[ExpectedRecord],
    ) -> Result<(Zone, Vec<String>, Vec<String>), AssociationError> {
        let domain = Name::from_ascii(&association.domain).unwrap_or_else(|_| Name::root());
        let serial = next_serial(self.config.zone_defaults.serial, zone.serial(), unix_now());
        let ttl = platform.ttl;
        let base = match previous {
            Some(p) => {
                let changes = plan_remove(zone, p, others)?;
                zone.with_changes(&changes, serial, ttl)
                    .map_err(AssociationError::Zone)?
            }
            None => zone.clone(),
        };
        let plan = plan_apply(&base, &domain, platform, expected, association.replace)?;
        let next = base
            .with_changes(&plan.changes, serial, ttl)
            .map_err(AssociationError::Zone)?;
        association.applied = plan.applied;
        association.replaced = plan.replaced;
        association.spf_mechanisms = plan.spf_mechanisms;
        // Whoever created the SPF record, it stays "created by mailzone".
        association.spf_created = plan.spf_created || previous.is_some_and(|p| p.spf_created);
        association.applied_platform = Some(platform.clone());
        let (before, after) = (lines(zone), lines(&next));
        let added = after.difference(&before).cloned().collect();
        let removed = before.difference(&after).cloned().collect();
        Ok((next, added, removed))
    }

    /// Associates a domain with a platform (or re-applies / changes an existing association).
    pub async fn associate(
        &self,
        req: AssociateRequest,
        dry_run: bool,
        replace: bool,
    ) -> Result<AssociationReport, AssociationError> {
        let mut attempts = 0;
        loop {
            if !dry_run {
                self.fill_keys_for(&req.domain, &req.platform, req.records.dkim)
                    .await?;
            }
            let _writer = self.writer.lock().await;
            match self.associate_locked(req.clone(), dry_run, replace).await {
                Err(AssociationError::KeysPending) if attempts < 4 => attempts += 1,
                outcome => return outcome,
            }
        }
    }

    /// Before the writer lock: generates the keys an association of `domain` with
    /// `platform` will need if DKIM is on and it has none yet.
    async fn fill_keys_for(
        &self,
        domain: &Name,
        platform: &str,
        dkim: bool,
    ) -> Result<(), AssociationError> {
        let Ok(platform) = self.platform(platform) else {
            return Ok(());
        };
        let domain_text = domain.to_lowercase().to_ascii();
        let has_keys = self
            .associations
            .load()
            .find(&domain_text, &platform.id)
            .is_some_and(|a| !a.dkim.is_empty());
        if dkim && platform.dkim.is_some() && !has_keys {
            self.fill_key_pool(&platform, 2).await?;
        }
        Ok(())
    }

    async fn associate_locked(
        &self,
        req: AssociateRequest,
        dry_run: bool,
        replace: bool,
    ) -> Result<AssociationReport, AssociationError> {
        let platform = self.platform(&req.platform)?;
        if req.mode == Mode::NonAuthoritative && req.relay_host.is_none() {
            return Err(AssociationError::Unprocessable {
                field: "relay_host",
                message: "relay_host is required in non-authoritative mode (where mail for unknown recipients goes)".into(),
            });
        }
        let domain = req.domain.to_lowercase();
        let domain_text = domain.to_ascii();
        let set = self.associations.load_full();
        refuse_broken(&set, &domain_text)?;
        let existing = set.find(&domain_text, &platform.id).cloned();
        let zone = self.zones.load().find_arc(&domain);
        if let Some(z) = &zone
            && self.catalog_name().as_ref() == Some(z.origin())
        {
            return Err(AssociationError::Unprocessable {
                field: "domain",
                message: format!(
                    "{domain_text} is in the catalog zone (transfer.catalog), which mailzone keeps listing the hosted zones: it takes no e-mail records"
                ),
            });
        }
        let mut association = Association {
            domain: domain_text.clone(),
            platform: platform.id.clone(),
            mode: req.mode,
            relay_host: req.relay_host,
            records: req.records,
            ownership_token: existing.as_ref().map_or_else(
                || new_token(&self.token, &domain_text, &platform.id),
                |e| e.ownership_token.clone(),
            ),
            hosted: zone.is_some(),
            spf_mechanisms: vec![],
            spf_created: false,
            applied: vec![],
            replaced: vec![],
            replace: replace || existing.as_ref().is_some_and(|e| e.replace),
            applied_platform: None,
            validated: existing.as_ref().is_some_and(|e| e.validated),
            dkim: existing
                .as_ref()
                .map(|e| e.dkim.clone())
                .unwrap_or_default(),
            updated_at: existing.as_ref().map_or(0, |e| e.updated_at),
            changed_at: existing
                .as_ref()
                .map(|e| e.changed_at.clone())
                .unwrap_or_default(),
        };
        set.check(&association)?;
        if association.records.dkim && platform.dkim.is_none() {
            return Err(AssociationError::Missing(MissingSetting {
                platform: platform.id.clone(),
                family: "dkim",
                missing: "dkim",
            }));
        }

        // Re-applying the same association whose records are all in place: nothing to do.
        if let Some(e) = &existing
            && e.mode == association.mode
            && e.relay_host == association.relay_host
            && e.records == association.records
            && e.applied_platform.as_ref() == Some(&platform)
            && zone.as_ref().is_none_or(|z| records_present(z, e))
        {
            let mut report = self.report(e, &platform, zone.as_deref(), dry_run)?;
            report.association = e.clone();
            return Ok(report);
        }
        let key_files = if dry_run {
            Vec::new()
        } else {
            self.prepare_dkim(&mut association, &platform)?
        };
        self.commit_with_keys(
            association,
            existing.as_ref(),
            &platform,
            dry_run,
            key_files,
        )
        .await
    }

    /// The report of `association` on `platform` before any zone change.
    fn report(
        &self,
        association: &Association,
        platform: &Platform,
        zone: Option<&Zone>,
        dry_run: bool,
    ) -> Result<AssociationReport, AssociationError> {
        let domain = Name::from_ascii(&association.domain).unwrap_or_else(|_| Name::root());
        let token = (!association.hosted).then_some(association.ownership_token.as_str());
        let mut expected = expected_records(&domain, platform, &association.records, token)?;
        if association.records.dkim {
            expected.extend(expected_dkim(
                &domain,
                platform,
                &association.dkim,
                association.hosted,
            ));
        }
        let mut to_paste: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if zone.is_none() {
            for e in &expected {
                to_paste
                    .entry(e.family.as_str().to_string())
                    .or_default()
                    .push(e.line.clone());
            }
        }
        Ok(AssociationReport {
            association: association.clone(),
            zone: zone.map(|z| z.origin().to_ascii()),
            expected,
            added: vec![],
            removed: vec![],
            to_paste,
            dry_run,
        })
    }

    /// Writes `association` (replacing `previous`): its file, the domain's zone if hosted,
    /// the delegation zone for delegated DKIM, all or nothing; then removes the keys of
    /// dropped selectors.
    pub(super) async fn commit(
        &self,
        association: Association,
        previous: Option<&Association>,
        platform: &Platform,
        dry_run: bool,
    ) -> Result<AssociationReport, AssociationError> {
        self.commit_with_keys(association, previous, platform, dry_run, Vec::new())
            .await
    }

    /// Like [`Shared::commit`], writing the new key files `key_files` with the association.
    pub(super) async fn commit_with_keys(
        &self,
        mut association: Association,
        previous: Option<&Association>,
        platform: &Platform,
        dry_run: bool,
        key_files: Vec<FileChange>,
    ) -> Result<AssociationReport, AssociationError> {
        let domain = Name::from_ascii(&association.domain).unwrap_or_else(|_| Name::root());
        let domain_text = association.domain.clone();
        let set = self.associations.load_full();
        let zone = self.zones.load().find_arc(&domain);
        let mut report = self.report(&association, platform, zone.as_deref(), dry_run)?;
        let expected = report.expected.clone();
        let next = match &zone {
            Some(zone) => {
                let others: Vec<&Association> = set
                    .for_domain(&domain_text)
                    .filter(|a| a.platform != platform.id)
                    .collect();
                let (next, added, removed) = self.rebuild(
                    zone,
                    previous,
                    &others,
                    &mut association,
                    platform,
                    &expected,
                )?;
                report.added = added;
                report.removed = removed;
                Some(next)
            }
            None => {
                association.applied_platform = Some(platform.clone());
                None
            }
        };
        let changed = !report.added.is_empty()
            || !report.removed.is_empty()
            || previous.is_none_or(|p| {
                p.records != association.records
                    || p.dkim != association.dkim
                    || p.mode != association.mode
            });
        if changed {
            association.updated_at = unix_now();
            let before = match previous {
                Some(p) => self.report(p, platform, zone.as_deref(), dry_run)?.expected,
                None => vec![],
            };
            let touched: Vec<String> = report
                .added
                .iter()
                .chain(&report.removed)
                .cloned()
                .collect();
            association.stamp_changes(&before, &expected, &touched, unix_now());
        }
        report.association = association.clone();
        if dry_run {
            return Ok(report);
        }
        let mut zones = Vec::new();
        if let Some(next) = next
            && (!report.added.is_empty() || !report.removed.is_empty())
        {
            let file = zone_file(&self.config.zones_dir, next.origin());
            zones.push((Arc::new(next), file));
        }
        zones.extend(self.delegated_dkim_zone(&association, previous, platform)?);
        let set = set.with(association.clone());
        let written_keys: Vec<PathBuf> = key_files.iter().map(|k| k.path.clone()).collect();
        let mut changes = vec![self.association_change(&set, &domain_text)];
        changes.extend(key_files);
        let zones = self.journal_zones(zones).await?;
        changes.extend(zones.iter().flat_map(|(z, f)| zone_files(z, f)));
        self.write_files(changes).await?;
        self.publish_change(set, zones);
        self.forget_leftovers(&written_keys);
        self.remove_dropped_keys(&association, previous);
        // New jobs follow the saved timestamps; a new or changed association is checked now.
        self.reschedule(&association, changed);
        // Only a real change is news for an operator; saving an observation or a
        // validation is not.
        let records_changed = !report.added.is_empty()
            || !report.removed.is_empty()
            || previous
                .is_none_or(|p| p.records != association.records || p.mode != association.mode);
        if records_changed {
            tracing::info!(domain = %domain_text, platform = %platform.id, hosted = association.hosted, added = report.added.len(), removed = report.removed.len(), "association applied");
        } else {
            tracing::debug!(domain = %domain_text, platform = %platform.id, "association saved");
        }
        Ok(report)
    }

    /// Changes an association's mode, relay host or families.
    pub async fn change_association(
        &self,
        domain: &Name,
        platform: &str,
        change: AssociationChange,
        dry_run: bool,
        replace: bool,
    ) -> Result<AssociationReport, AssociationError> {
        let domain_text = domain.to_lowercase().to_ascii();
        let request = || {
            let Some(existing) = self
                .associations
                .load()
                .find(&domain_text, platform)
                .cloned()
            else {
                return Err(AssociationError::NotFound {
                    domain: domain_text.clone(),
                    platform: platform.to_string(),
                });
            };
            Ok(AssociateRequest {
                domain: domain.clone(),
                platform: platform.to_string(),
                mode: change.mode.unwrap_or(existing.mode),
                relay_host: change.relay_host.clone().unwrap_or(existing.relay_host),
                records: change
                    .records
                    .map_or(existing.records, |p| p.apply(existing.records)),
            })
        };
        let mut attempts = 0;
        loop {
            if !dry_run {
                let req = request()?;
                self.fill_keys_for(domain, platform, req.records.dkim)
                    .await?;
            }
            let _writer = self.writer.lock().await;
            match self.associate_locked(request()?, dry_run, replace).await {
                Err(AssociationError::KeysPending) if attempts < 4 => attempts += 1,
                outcome => return outcome,
            }
        }
    }

    /// Removes an association: exactly its records go, what it replaced comes back.
    pub async fn dissociate(
        &self,
        domain: &Name,
        platform: &str,
    ) -> Result<AssociationReport, AssociationError> {
        let _writer = self.writer.lock().await;
        let domain_text = domain.to_lowercase().to_ascii();
        let set = self.associations.load_full();
        refuse_broken(&set, &domain_text)?;
        let Some(association) = set.find(&domain_text, platform).cloned() else {
            return Err(AssociationError::NotFound {
                domain: domain_text,
                platform: platform.to_string(),
            });
        };
        let others: Vec<&Association> = set
            .for_domain(&domain_text)
            .filter(|a| a.platform != platform)
            .collect();
        let mut report = AssociationReport {
            association: association.clone(),
            zone: None,
            expected: vec![],
            added: vec![],
            removed: vec![],
            to_paste: BTreeMap::new(),
            dry_run: false,
        };
        let mut zones = Vec::new();
        let served = self.zones.load_full();
        if association.hosted
            && let Some(zone) = served.find_arc(&domain.to_lowercase())
        {
            let changes = plan_remove(&zone, &association, &others)?;
            let serial = next_serial(self.config.zone_defaults.serial, zone.serial(), unix_now());
            let next = zone
                .with_changes(&changes, serial, 3600)
                .map_err(AssociationError::Zone)?;
            let (before, after) = (lines(&zone), lines(&next));
            report.zone = Some(zone.origin().to_ascii());
            report.added = after.difference(&before).cloned().collect();
            report.removed = before.difference(&after).cloned().collect();
            if !report.added.is_empty() || !report.removed.is_empty() {
                let file = zone_file(&self.config.zones_dir, next.origin());
                zones.push((Arc::new(next), file));
            }
        }
        let mut remaining = set.without(&domain_text, platform);
        if association.spf_created {
            remaining.hand_spf_to_another(&domain_text);
        }
        let mut gone = association.clone();
        gone.dkim.clear();
        if let Ok(platform) = self.platform(platform) {
            zones.extend(self.delegated_dkim_zone(&gone, Some(&association), &platform)?);
        }
        // The zone first: a crash before the association file goes leaves the association,
        // and the DELETE can be retried.
        let zones = self.journal_zones(zones).await?;
        let mut changes: Vec<FileChange> =
            zones.iter().flat_map(|(z, f)| zone_files(z, f)).collect();
        changes.push(self.association_change(&remaining, &domain_text));
        self.write_files(changes).await?;
        self.publish_change(remaining, zones);
        self.remove_dropped_keys(&gone, Some(&association));
        // Its results, counts, metric series and jobs go with it.
        self.forget(&association);
        tracing::info!(domain = %domain_text, platform, removed = report.removed.len(), restored = report.added.len(), "domain dissociated");
        Ok(report)
    }

    /// Brings every hosted association to the state its platform now asks for: after a
    /// platform changed in the config, or after a crash between the two writes of a change.
    pub async fn reconcile(&self) -> usize {
        let _writer = self.writer.lock().await;
        let mut changed = 0;
        let all: Vec<Association> = self.associations.load().all().cloned().collect();
        for a in all.iter().filter(|a| a.hosted) {
            let platform = match self.platform(&a.platform) {
                Ok(p) => p,
                Err(_) => {
                    tracing::warn!(domain = %a.domain, platform = %a.platform, "platform no longer configured; its records are left as they are");
                    continue;
                }
            };
            let Ok(domain) = Name::from_ascii(&a.domain) else {
                continue;
            };
            let Some(zone) = self.zones.load().find_arc(&domain) else {
                tracing::warn!(domain = %a.domain, "the zone of an associated domain is no longer hosted");
                continue;
            };
            if a.applied_platform.as_ref() == Some(&platform) && records_present(&zone, a) {
                continue;
            }
            let req = AssociateRequest {
                domain,
                platform: a.platform.clone(),
                mode: a.mode,
                relay_host: a.relay_host.clone(),
                records: a.records,
            };
            match self.associate_locked(req, false, a.replace).await {
                Ok(r) => {
                    changed += 1;
                    tracing::info!(domain = %a.domain, platform = %a.platform, added = ?r.added, removed = ?r.removed, "association reconciled");
                }
                Err(e) => {
                    tracing::error!(domain = %a.domain, platform = %a.platform, error = %e, "association cannot be reconciled")
                }
            }
        }
        changed
    }
}

fn refuse_broken(set: &Associations, domain: &str) -> Result<(), AssociationError> {
    match set.broken().get(domain) {
        Some(error) => Err(AssociationError::Broken {
            domain: domain.to_string(),
            error: error.clone(),
        }),
        None => Ok(()),
    }
}

/// Whether every record the association wrote is still in the zone, and its SPF mechanisms
/// in the SPF record.
fn records_present(zone: &Zone, a: &Association) -> bool {
    let present = lines(zone);
    let records = a.applied.iter().all(|r| {
        let line = format!("{} {} IN {} {}", r.name, r.ttl, r.rtype, r.value);
        present.contains(&line)
    });
    let spf = !a.records.spf || {
        let prefix = format!("{} ", a.domain);
        present
            .iter()
            .filter(|l| l.starts_with(&prefix) && l.contains(" IN TXT \"v=spf1"))
            .any(|l| {
                a.spf_mechanisms
                    .iter()
                    .all(|m| l.split([' ', '"']).any(|t| t.eq_ignore_ascii_case(m)))
            })
    };
    records && spf
}
