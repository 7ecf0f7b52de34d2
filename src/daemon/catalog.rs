//! The writer's side of the catalog zone (`transfer.catalog`, RFC 9432): keeping it equal
//! to the set of hosted zones.
//!
//! This module owns when the catalog changes: a zone created or deleted through the writer
//! takes the new catalog into the same all-or-nothing commit (the zone file first, so a
//! crash in between leaves a catalog that the next start completes); a start or a reload
//! that finds it missing or out of date writes it once. It also owns the refusals: the
//! catalog is not edited, deleted or created through the API, and no zone lives below it.
//! What the catalog holds is [`crate::zone::catalog`]'s business; this module must not
//! build records itself.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::Name;

use super::Shared;
use super::writer::{WriteError, commit_files, zone_change, zone_files};
use crate::durable::FileChange;
use crate::zone::serial::{SerialScheme, next_serial};
use crate::zone::set::{unix_now, zone_file};
use crate::zone::writer::name_text;
use crate::zone::{Zone, ZoneSet, catalog};

/// A new catalog zone, its file and the change that writes it.
pub(super) type CatalogUpdate = Option<(Arc<Zone>, PathBuf, FileChange)>;

impl Shared {
    /// The catalog zone's name, when one is configured.
    pub fn catalog_name(&self) -> Option<Name> {
        self.config.transfer.catalog_name()
    }

    /// Refuses, with the reason, an API change (`what`: "edited", "deleted", "created")
    /// of the catalog zone, and when `below` too of a zone below it.
    pub(super) fn refuse_catalog(
        &self,
        origin: &Name,
        what: &str,
        below: bool,
    ) -> Result<(), WriteError> {
        let Some(catalog) = self.catalog_name() else {
            return Ok(());
        };
        if *origin == catalog {
            return Err(WriteError::Conflict(format!(
                "{} is the catalog zone (transfer.catalog): mailzone keeps it listing every hosted zone, it cannot be {what} through the API",
                name_text(&catalog)
            )));
        }
        if below && catalog.zone_of(origin) {
            return Err(WriteError::Conflict(format!(
                "{} is below the catalog zone {} (transfer.catalog): no zone can be {what} there",
                name_text(origin),
                name_text(&catalog)
            )));
        }
        Ok(())
    }

    /// The catalog as it must be once `added` is in and `removed` is out of the zones of
    /// `set`, with the file change that writes it; `None` when no catalog is configured or
    /// it already is so. `floor`: a serial the new one must pass (the last one served, when
    /// the file went missing). The work is proportional to the number of zones: it runs
    /// off the runtime.
    pub(super) async fn catalog_update(
        &self,
        set: Arc<ZoneSet>,
        added: Option<Name>,
        removed: Option<Name>,
        floor: u32,
    ) -> Result<CatalogUpdate, WriteError> {
        let Some(origin) = self.catalog_name() else {
            return Ok(None);
        };
        let file = zone_file(&self.config.zones_dir, &origin);
        let shown = file.display().to_string();
        let d = self.config.zone_defaults.clone();
        let soa = (d.refresh, d.retry, d.expire);
        tokio::task::spawn_blocking(move || {
            let fail = |message: String| WriteError::Io {
                file: shown.clone(),
                message,
            };
            let current = set.get(&origin);
            let old_serial = current.as_ref().map_or(floor, |c| c.serial());
            // Unix time, whatever zone_defaults.serial says: a catalog rebuilt after its
            // file was lost then still starts above the serial secondaries hold (unless a
            // burst of more than one change a second ran it ahead of the clock).
            let serial = next_serial(SerialScheme::Unixtime, old_serial, unix_now());
            // One zone in or out: a copy with one name more or less, no rebuild.
            let quick = match (&current, &added, &removed) {
                (Some(c), Some(a), None) => catalog::with_member(c, a, serial),
                (Some(c), None, Some(r)) => catalog::without_member(c, r, serial),
                _ => None,
            };
            let next = match quick {
                Some(next) => next,
                None => {
                    let mut wanted: BTreeSet<Name> = set
                        .origins()
                        .map(Name::to_lowercase)
                        .chain(added.as_ref().map(Name::to_lowercase))
                        .collect();
                    if let Some(r) = &removed {
                        wanted.remove(&r.to_lowercase());
                    }
                    wanted.remove(&origin);
                    let fresh;
                    let base = match &current {
                        Some(c) => c.as_ref(),
                        None => {
                            fresh = catalog::empty(&origin, 0, soa.0, soa.1, soa.2)
                                .map_err(|e| fail(e.to_string()))?;
                            &fresh
                        }
                    };
                    let changes = catalog::plan(base, &wanted);
                    if changes.is_empty() && current.is_some() {
                        return Ok(None);
                    }
                    base.with_changes(&changes, serial, catalog::TTL)
                        .map_err(|e| fail(e.message))?
                }
            };
            let change = zone_change(&next, &file);
            Ok(Some((Arc::new(next), file, change)))
        })
        .await
        .map_err(|e| WriteError::Io {
            file: "(writer)".into(),
            message: e.to_string(),
        })?
    }

    /// Writes a new zone and the catalog listing it, all or nothing, then serves both.
    /// Call with the writer lock held.
    pub(super) async fn store_new_zone(
        &self,
        zone: Zone,
        file: PathBuf,
    ) -> Result<Arc<Zone>, WriteError> {
        let zone = Arc::new(zone);
        let catalog = self
            .catalog_update(self.zones.load_full(), Some(zone.origin().clone()), None, 0)
            .await?;
        // Each with its journal (the catalog's IXFR is what consumers follow); one commit.
        let mut zones = vec![(zone, file)];
        zones.extend(catalog.map(|(c, f, _)| (c, f)));
        let zones = self.journal_zones(zones).await?;
        let zone = zones[0].0.clone();
        commit_files(zones.iter().flat_map(|(z, f)| zone_files(z, f)).collect()).await?;
        for (z, f) in zones {
            self.publish_zone(z, f);
        }
        Ok(zone)
    }

    /// Start and reload: writes the catalog once if it is missing or does not list exactly
    /// the zones served. `floor` is the serial of the catalog served before, if any. Call
    /// with the writer lock held. Returns whether it was written.
    pub(super) async fn sync_catalog_locked(&self, floor: u32) -> Result<bool, WriteError> {
        let Some(origin) = self.catalog_name() else {
            return Ok(false);
        };
        let set = self.zones.load_full();
        let before = set.get(&origin).map(|c| catalog::members(&c));
        if before.is_none() && zone_file(&self.config.zones_dir, &origin).exists() {
            // The file is there but does not load (the reason is in the zone's status):
            // it is not overwritten behind the operator's back.
            tracing::error!(catalog = %name_text(&origin), "the catalog zone file does not load; fix or remove it (mailzone then rebuilds it)");
            return Ok(false);
        }
        for zone in set.origins() {
            if *zone != origin && origin.zone_of(zone) {
                tracing::error!(zone = %name_text(zone), catalog = %name_text(&origin), "a zone below the catalog zone is served; move it or choose another transfer.catalog");
            }
        }
        let Some((zone, file, change)) = self.catalog_update(set, None, None, floor).await? else {
            return Ok(false);
        };
        drop(change);
        let journalled = self.journal_zones(vec![(zone, file)]).await?;
        let Some((zone, file)) = journalled.into_iter().next() else {
            return Ok(false);
        };
        commit_files(zone_files(&zone, &file).into()).await?;
        let after = catalog::members(&zone);
        let (added, removed) = match &before {
            Some(b) => (
                after.keys().filter(|m| !b.contains_key(*m)).count(),
                b.keys().filter(|m| !after.contains_key(*m)).count(),
            ),
            None => (after.len(), 0),
        };
        tracing::info!(catalog = %name_text(&origin), members = after.len(), added, removed, rebuilt = before.is_none(), serial = zone.serial(), "catalog zone brought up to date");
        self.publish_zone(zone, file);
        Ok(true)
    }

    /// At start, before the first query: refuses a catalog name that clashes with the
    /// zones (a zone below it, a zone of that name that is not a catalog, a catalog file
    /// that does not load), then brings the catalog up to date. The error says what to do.
    pub async fn sync_catalog_at_start(&self) -> Result<(), String> {
        let Some(origin) = self.catalog_name() else {
            return Ok(());
        };
        let _writer = self.writer.lock().await;
        let set = self.zones.load_full();
        let shown = name_text(&origin);
        if let Some(below) = set.origins().find(|z| **z != origin && origin.zone_of(z)) {
            return Err(format!(
                "the zone {} is below the catalog zone {shown}: choose another transfer.catalog (e.g. catalog.invalid.) or move that zone",
                name_text(below)
            ));
        }
        let file = zone_file(&self.config.zones_dir, &origin);
        match set.get(&origin) {
            Some(zone) if !catalog::is_catalog(&zone) => {
                return Err(format!(
                    "{} holds the zone {shown}, which is not a catalog (no TXT at version.{shown}): transfer.catalog must name a zone mailzone keeps; choose another name",
                    file.display()
                ));
            }
            None if file.exists() => {
                let reason = set
                    .statuses()
                    .into_iter()
                    .find(|s| s.file == file)
                    .and_then(|s| s.last_error)
                    .unwrap_or_else(|| "it does not load".into());
                return Err(format!(
                    "the catalog zone file does not load: {reason}; fix it, or remove it and mailzone rebuilds it"
                ));
            }
            _ => {}
        }
        self.sync_catalog_locked(0)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot write the catalog zone: {e}"))
    }
}
