//! The single state writer: every change to the hosted zones goes through here.
//!
//! Each change, under the one writer lock: validate and build the new zone off the answer
//! path, bump the serial, write the zone file atomically and durably, and only then publish
//! a new snapshot. A change is therefore either on disk and served, or neither; a 2xx is only
//! returned after the file is durable. This module must not parse HTTP or JSON.

use std::sync::Arc;

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::SOA;

use super::Shared;
use crate::zone::edit::{EditError, RrsetChange};
use crate::zone::journal::Followed;
use crate::zone::serial::next_serial;
use crate::zone::set::{journal_change, journal_file_for, unix_now, zone_file};
use crate::zone::{Zone, writer};

/// Why a change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("zone {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Bad input; `operation` names the culprit in a list of operations.
    #[error("{0}")]
    Invalid(EditError),
    #[error("cannot write {file}: {message}")]
    Io { file: String, message: String },
}

/// The zone after a change, and whether anything changed (nothing written otherwise).
#[derive(Debug, Clone)]
pub struct Changed {
    pub zone: Arc<Zone>,
    pub changed: bool,
}

/// The SOA fields a new zone may set; the rest come from `zone_defaults`.
#[derive(Debug, Clone, Default)]
pub struct SoaRequest {
    pub mname: Option<Name>,
    pub rname: Option<Name>,
    pub refresh: Option<u32>,
    pub retry: Option<u32>,
    pub expire: Option<u32>,
    pub minimum: Option<u32>,
    pub ttl: Option<u32>,
}

fn invalid(message: impl Into<String>) -> WriteError {
    WriteError::Invalid(EditError {
        operation: None,
        message: message.into(),
    })
}

impl Shared {
    /// Creates a zone with its SOA and NS records.
    pub async fn create_zone(
        &self,
        origin: Name,
        nameservers: Vec<Name>,
        soa: SoaRequest,
    ) -> Result<Arc<Zone>, WriteError> {
        let _writer = self.writer.lock().await;
        self.refuse_catalog(&origin, "created", true)?;
        let file = zone_file(&self.config.zones_dir, &origin);
        let current = self.zones.load_full();
        if current.get(&origin).is_some() || file.exists() {
            return Err(WriteError::Conflict(format!(
                "zone {origin} already exists"
            )));
        }
        if current.find(&origin).is_some() {
            // Serving a child zone separately would need a delegation in the parent.
            tracing::info!(zone = %origin, "creating a zone below a hosted zone");
        }
        let d = &self.config.zone_defaults;
        let nameservers = if nameservers.is_empty() {
            d.nameservers
                .iter()
                .filter_map(|n| Name::from_ascii(n).ok())
                .collect()
        } else {
            nameservers
        };
        let Some(first_ns) = nameservers.first().cloned() else {
            return Err(invalid(
                "nameservers: at least one name server is needed (none given and zone_defaults.nameservers is empty)",
            ));
        };
        let rname = match (soa.rname, &d.hostmaster) {
            (Some(r), _) => r,
            (None, Some(h)) => Name::from_ascii(h)
                .map_err(|e| invalid(format!("zone_defaults.hostmaster: {e}")))?,
            (None, None) => origin
                .prepend_label("hostmaster")
                .map_err(|e| invalid(format!("name: {e}")))?,
        };
        let as_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let record = SOA::new(
            soa.mname.unwrap_or(first_ns),
            rname,
            next_serial(d.serial, 0, unix_now()),
            as_i32(soa.refresh.unwrap_or(d.refresh)),
            as_i32(soa.retry.unwrap_or(d.retry)),
            as_i32(soa.expire.unwrap_or(d.expire)),
            soa.minimum.unwrap_or(d.minimum),
        );
        let zone = Zone::new_with_soa(&origin, record, soa.ttl.unwrap_or(d.ttl), &nameservers)
            .map_err(|e| invalid(e.message))?;
        // The catalog, if any, lists it in the same commit.
        self.store_new_zone(zone, file).await
    }

    /// Applies rrset operations to a zone, all or nothing.
    pub async fn change_records(
        &self,
        origin: &Name,
        changes: Vec<RrsetChange>,
    ) -> Result<Arc<Zone>, WriteError> {
        let changed = self
            .change_records_checked(origin, move |_| Ok::<_, std::convert::Infallible>(changes))
            .await?;
        match changed {
            Ok(c) => Ok(c.zone),
            Err(never) => match never {},
        }
    }

    /// Applies the rrset operations that `plan` derives from the zone as it is under the
    /// writer lock, all or nothing: what a change checks against the zone (RFC 2136
    /// prerequisites, protected records) cannot go stale before it is written. `plan`
    /// refusing gives `Ok(Err(..))` and changes nothing.
    pub async fn change_records_checked<E>(
        &self,
        origin: &Name,
        plan: impl FnOnce(&Zone) -> Result<Vec<RrsetChange>, E> + Send,
    ) -> Result<Result<Changed, E>, WriteError> {
        let _writer = self.writer.lock().await;
        self.refuse_catalog(origin, "edited", false)?;
        let current = self.zones.load_full();
        let Some(zone) = current.get(origin) else {
            return Err(WriteError::NotFound(origin.to_string()));
        };
        let changes = match plan(&zone) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        if changes.is_empty() {
            return Ok(Ok(Changed {
                zone,
                changed: false,
            }));
        }
        let serial = next_serial(self.config.zone_defaults.serial, zone.serial(), unix_now());
        let ttl = self.config.zone_defaults.ttl;
        let limits = self.config.transfer.journal;
        let keys = self
            .keys_for(&[(zone.clone(), Default::default())])?
            .pop()
            .flatten();
        let policy = self.config.dnssec.clone();
        let sign_now = self.dnssec_now();
        // Building the zone is CPU work proportional to its size: keep it off the runtime,
        // with its journal step (the difference at the rrsets the changes name) and, for a
        // signed zone, its signatures (the changed rrsets, their NSEC neighbours and the SOA).
        let built = tokio::task::spawn_blocking(move || {
            let next = zone.with_changes(&changes, serial, ttl)?;
            // A change that changes nothing is seen before signing (which always differs).
            if next.same_data_as(&zone) {
                return Ok((next, None));
            }
            if keys.is_none() && !zone.is_signed() {
                let mut next = next;
                next.follow_changes(&zone, &changes, &limits, unix_now());
                return Ok((next, None));
            }
            let (mut signed, stats) =
                super::dnssec::sign_version(next, Some(&zone), keys.as_deref(), &policy, sign_now)
                    .map_err(|message| EditError {
                        operation: None,
                        message: format!("the zone cannot be signed: {message}"),
                    })?;
            // Signatures and NSEC links move beyond the named rrsets: the whole difference.
            signed.follow(Some(&zone), &limits, unix_now());
            Ok((signed, Some(stats)))
        })
        .await
        .map_err(|e| WriteError::Io {
            file: origin.to_string(),
            message: e.to_string(),
        })?;
        let (built, stats) = built.map_err(WriteError::Invalid)?;
        // A change that changes nothing (deleting what is not there) writes nothing and
        // bumps nothing: the zone as it is answers.
        if let Some(current) = current.get(origin)
            && built.same_data_as(&current)
        {
            return Ok(Ok(Changed {
                zone: current,
                changed: false,
            }));
        }
        if let Some(stats) = stats {
            self.metrics.dnssec_signatures.inc_by(stats.made as u64);
            self.note_expiry(&built);
        }
        let zone = Arc::new(built);
        let file = zone_file(&self.config.zones_dir, origin);
        self.store_journalled(vec![(zone.clone(), file)]).await?;
        Ok(Ok(Changed {
            zone,
            changed: true,
        }))
    }

    /// Deletes a zone: its file goes, and it stops being served.
    pub async fn delete_zone(&self, origin: &Name) -> Result<(), WriteError> {
        let _writer = self.writer.lock().await;
        self.refuse_catalog(origin, "deleted", false)?;
        let current = self.zones.load_full();
        let file = zone_file(&self.config.zones_dir, origin);
        if current.get(origin).is_none() && !file.exists() {
            return Err(WriteError::NotFound(origin.to_string()));
        }
        // The journal first: a crash in between leaves a zone without history, never a
        // journal without its zone. Then the zone file, then the catalog no longer lists it
        // (with its own journal step), all or nothing (a missing file is fine: a retried
        // delete does no harm).
        let catalog = self
            .catalog_update(current.clone(), None, Some(origin.clone()), 0)
            .await?;
        let catalog = self
            .journal_zones(catalog.into_iter().map(|(c, f, _)| (c, f)).collect())
            .await?;
        let mut changes = vec![
            crate::durable::FileChange::remove(&journal_file_for(&file)),
            crate::durable::FileChange::remove(&crate::zone::signed::signatures_file_for(&file)),
            crate::durable::FileChange::remove(&file),
        ];
        // Its DNSSEC keys and state go with it.
        changes.extend(self.dnssec_files_to_remove(origin));
        changes.extend(catalog.iter().flat_map(|(c, f)| zone_files(c, f)));
        commit_files(changes).await?;
        self.publish_set(current.without_zone(origin, &file));
        for (c, f) in catalog {
            self.publish_zone(c, f);
        }
        self.notifier.removed(origin);
        self.forget_dnssec(origin);
        tracing::info!(zone = %origin, "zone deleted");
        Ok(())
    }

    /// Writes zones that already carry their journal (zone file and journal in one commit),
    /// then publishes them. Call with the writer lock held.
    pub(super) async fn store_journalled(
        &self,
        zones: Vec<(Arc<Zone>, std::path::PathBuf)>,
    ) -> Result<(), WriteError> {
        commit_files(zones.iter().flat_map(|(z, f)| zone_files(z, f)).collect()).await?;
        for (zone, file) in zones {
            self.publish_zone(zone, file);
        }
        Ok(())
    }

    /// Gives each new zone version its journal: the served version's plus their difference
    /// (`transfer.journal` bounds). The difference is CPU work proportional to the zone: it
    /// runs off the runtime. Call with the writer lock held, before committing the files.
    pub(super) async fn journal_zones(
        &self,
        zones: Vec<(Arc<Zone>, std::path::PathBuf)>,
    ) -> Result<Vec<(Arc<Zone>, std::path::PathBuf)>, WriteError> {
        if zones.is_empty() {
            return Ok(zones);
        }
        let served = self.zones.load_full();
        let limits = self.config.transfer.journal;
        let keys = self.keys_for(&zones)?;
        let policy = self.config.dnssec.clone();
        let sign_now = self.dnssec_now();
        let signed = tokio::task::spawn_blocking(move || {
            let mut out: Vec<(Arc<Zone>, std::path::PathBuf)> = Vec::with_capacity(zones.len());
            let mut made = 0;
            for ((mut zone, file), keys) in zones.into_iter().zip(keys) {
                // A zone changed twice in one commit follows its first new version.
                let previous = out
                    .iter()
                    .rev()
                    .find(|(z, _)| z.origin() == zone.origin())
                    .map(|(z, _)| z.clone())
                    .or_else(|| served.get(zone.origin()));
                let now = unix_now();
                // Signed (or unsigned) as the zone's DNSSEC policy says, before its journal
                // step is taken, so that the step carries the signatures too.
                if keys.is_some() || zone.is_signed() {
                    let (z, stats) = super::dnssec::sign_version(
                        (*zone).clone(),
                        previous.as_deref(),
                        keys.as_deref(),
                        &policy,
                        sign_now,
                    )
                    .map_err(|message| WriteError::Conflict(format!(
                        "zone {} cannot be signed: {message}",
                        zone.origin()
                    )))?;
                    made += stats.made;
                    zone = Arc::new(z);
                }
                let followed = Arc::make_mut(&mut zone).follow(previous.as_deref(), &limits, now);
                if let Followed::Reset(reason) = followed {
                    tracing::warn!(zone = %zone.origin(), %reason, "journal reset: IXFR falls back to a full transfer for older serials");
                }
                out.push((zone, file));
            }
            Ok::<_, WriteError>((out, made))
        })
        .await
        .map_err(|e| WriteError::Io {
            file: "(writer)".into(),
            message: e.to_string(),
        })?;
        let (out, made) = signed?;
        self.metrics.dnssec_signatures.inc_by(made as u64);
        for (zone, _) in &out {
            self.note_expiry(zone);
        }
        Ok(out)
    }

    /// Serves a zone whose file is already durable. Call with the writer lock held.
    pub(super) fn publish_zone(&self, zone: Arc<Zone>, file: std::path::PathBuf) {
        let current = self.zones.load_full();
        // An existing zone is swapped in place; only a new zone needs a new set.
        if !current.replace_zone(zone.clone(), file.clone()) {
            self.publish_set(current.with_zone(zone.clone(), file));
        }
        self.notifier.changed(zone.origin(), zone.soa());
        tracing::info!(zone = %zone.origin(), serial = zone.serial(), records = zone.record_count(), "zone written");
    }

    fn publish_set(&self, set: crate::zone::ZoneSet) {
        self.metrics.zones_loaded.set(set.len() as i64);
        self.zones.store(Arc::new(set));
    }
}

/// The file change that writes `zone` to `file`.
pub(super) fn zone_change(zone: &Zone, file: &std::path::Path) -> crate::durable::FileChange {
    crate::durable::FileChange::write(
        file,
        writer::to_master_text(zone).into_bytes(),
        crate::durable::PUBLIC_FILE_MODE,
    )
}

/// The files of a new zone version: its journal first, then the zone file, in one commit.
/// A crash between the two renames leaves the journal one step ahead, which the next start
/// drops (`ZoneSet::load_dir_with`); never a zone file whose journal misses a step.
pub(super) fn zone_files(zone: &Zone, file: &std::path::Path) -> [crate::durable::FileChange; 3] {
    // The text once: the signatures file notes its hash.
    let text = writer::to_master_text(zone);
    [
        journal_change(zone, file),
        signatures_change(zone, file, &text),
        crate::durable::FileChange::write(
            file,
            text.into_bytes(),
            crate::durable::PUBLIC_FILE_MODE,
        ),
    ]
}

/// The signatures file of a signed zone, or its removal. Written before the zone file: a
/// crash between leaves signatures for a serial the zone file has not, which the next start
/// ignores (and signs again) rather than serve.
pub(super) fn signatures_change(
    zone: &Zone,
    file: &std::path::Path,
    text: &str,
) -> crate::durable::FileChange {
    let path = crate::zone::signed::signatures_file_for(file);
    if zone.is_signed() {
        crate::durable::FileChange::write(
            &path,
            crate::zone::signed::encode(zone, text),
            crate::durable::PUBLIC_FILE_MODE,
        )
    } else {
        crate::durable::FileChange::remove(&path)
    }
}

/// Writes or removes the journal files a load asked for (blocking). A failure is logged and
/// harmless: a journal that does not match its zone file is dropped at the next start.
pub fn commit_journal_files(changes: &[crate::durable::FileChange]) {
    if changes.is_empty() {
        return;
    }
    if let Err(e) = crate::durable::commit(changes) {
        tracing::error!(error = %e, "cannot update the zone journals; IXFR may fall back to full transfers after a restart");
    }
}

/// Applies file changes all or nothing, off the runtime; an error names the file.
pub(super) async fn commit_files(
    changes: Vec<crate::durable::FileChange>,
) -> Result<(), WriteError> {
    if changes.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || crate::durable::commit(&changes))
        .await
        .map_err(|e| WriteError::Io {
            file: "(writer)".into(),
            message: e.to_string(),
        })?
        .map_err(|e| WriteError::Io {
            file: e.file.display().to_string(),
            message: e.source.to_string(),
        })
}

/// Runs blocking file work off the runtime; an error names the file.
pub(super) async fn on_disk(
    file: &std::path::Path,
    work: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Result<(), WriteError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| WriteError::Io {
            file: file.display().to_string(),
            message: e.to_string(),
        })
}
