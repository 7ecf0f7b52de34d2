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
use crate::zone::serial::next_serial;
use crate::zone::set::{unix_now, zone_file};
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
        self.store_zone(zone, file).await
    }

    /// Applies rrset operations to a zone, all or nothing.
    pub async fn change_records(
        &self,
        origin: &Name,
        changes: Vec<RrsetChange>,
    ) -> Result<Arc<Zone>, WriteError> {
        let _writer = self.writer.lock().await;
        let current = self.zones.load_full();
        let Some(zone) = current.get(origin) else {
            return Err(WriteError::NotFound(origin.to_string()));
        };
        let serial = next_serial(self.config.zone_defaults.serial, zone.serial(), unix_now());
        let ttl = self.config.zone_defaults.ttl;
        // Building the zone is CPU work proportional to its size: keep it off the runtime.
        let built = tokio::task::spawn_blocking(move || zone.with_changes(&changes, serial, ttl))
            .await
            .map_err(|e| WriteError::Io {
                file: origin.to_string(),
                message: e.to_string(),
            })?;
        let built = built.map_err(WriteError::Invalid)?;
        // A change that changes nothing (deleting what is not there) writes nothing and
        // bumps nothing: the zone as it is answers.
        if let Some(current) = current.get(origin)
            && built.same_data_as(&current)
        {
            return Ok(current);
        }
        let zone = built;
        let file = zone_file(&self.config.zones_dir, origin);
        self.store_zone(zone, file).await
    }

    /// Deletes a zone: its file goes, and it stops being served.
    pub async fn delete_zone(&self, origin: &Name) -> Result<(), WriteError> {
        let _writer = self.writer.lock().await;
        let current = self.zones.load_full();
        let file = zone_file(&self.config.zones_dir, origin);
        if current.get(origin).is_none() && !file.exists() {
            return Err(WriteError::NotFound(origin.to_string()));
        }
        let dir = self.config.zones_dir.clone();
        let target = file.clone();
        on_disk(&file, move || {
            match std::fs::remove_file(&target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            crate::durable::sync_dir(&dir)
        })
        .await?;
        self.publish_set(current.without_zone(origin, &file));
        tracing::info!(zone = %origin, "zone deleted");
        Ok(())
    }

    /// Writes the zone file durably, then publishes the zone. Call with the writer lock held.
    pub(super) async fn store_zone(
        &self,
        zone: Zone,
        file: std::path::PathBuf,
    ) -> Result<Arc<Zone>, WriteError> {
        let zone = Arc::new(zone);
        commit_files(vec![zone_change(&zone, &file)]).await?;
        self.publish_zone(zone.clone(), file);
        Ok(zone)
    }

    /// Serves a zone whose file is already durable. Call with the writer lock held.
    pub(super) fn publish_zone(&self, zone: Arc<Zone>, file: std::path::PathBuf) {
        let current = self.zones.load_full();
        // An existing zone is swapped in place; only a new zone needs a new set.
        if !current.replace_zone(zone.clone(), file.clone()) {
            self.publish_set(current.with_zone(zone.clone(), file));
        }
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
