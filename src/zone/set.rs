//! The set of hosted zones as served, and loading it from the zones folder.
//!
//! This module owns reading `zones/*.zone` into a [`ZoneSet`]: one immutable snapshot holding
//! every servable zone plus, per file, how its last load went. A file that fails to load is
//! reported (file:line: reason) and, on a reload, its last good version keeps being served.
//! It must not touch sockets; publishing the snapshot is the daemon's job.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use hickory_proto::rr::Name;
use serde::Serialize;

use super::Zone;

/// How one zone file fared at the last (re)load.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneStatus {
    /// The zone name, with its trailing dot.
    pub name: String,
    pub file: PathBuf,
    /// Serial of the version being served, if any.
    pub serial: Option<u32>,
    /// Records of the version being served.
    pub records: usize,
    /// Whether this zone answers queries.
    pub serving: bool,
    /// The last load error (`file:line: reason`), if the newest file is broken.
    pub last_error: Option<String>,
    /// Seconds since the epoch of the load that produced the served version.
    pub loaded_at: Option<u64>,
}

/// An immutable snapshot of every hosted zone. Swapped whole on every change.
#[derive(Debug, Default)]
pub struct ZoneSet {
    zones: HashMap<Name, Arc<Zone>>,
    /// Label counts of the shortest and longest origin, to bound the suffix walk.
    min_labels: u8,
    max_labels: u8,
    statuses: Vec<ZoneStatus>,
}

/// The result of reading the zones folder.
#[derive(Debug)]
pub struct LoadReport {
    pub set: ZoneSet,
    /// Files that failed (each error as `file:line: reason`).
    pub errors: Vec<String>,
}

impl ZoneSet {
    /// Builds a snapshot from ready zones (used by tests and by the state writer).
    pub fn from_zones(
        zones: impl IntoIterator<Item = Arc<Zone>>,
        statuses: Vec<ZoneStatus>,
    ) -> Self {
        let zones: HashMap<Name, Arc<Zone>> =
            zones.into_iter().map(|z| (z.origin().clone(), z)).collect();
        let min_labels = zones.keys().map(Name::num_labels).min().unwrap_or(0);
        let max_labels = zones.keys().map(Name::num_labels).max().unwrap_or(0);
        Self {
            zones,
            min_labels,
            max_labels,
            statuses,
        }
    }

    /// The zone with the longest origin that contains `name`.
    pub fn find(&self, name: &Name) -> Option<&Arc<Zone>> {
        if self.zones.is_empty() {
            return None;
        }
        let labels = name.num_labels();
        let top = labels.min(self.max_labels);
        if top < self.min_labels {
            return None;
        }
        for k in (self.min_labels..=top).rev() {
            let found = if k == labels {
                self.zones.get(name)
            } else {
                self.zones.get(&name.trim_to(k as usize))
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    pub fn get(&self, origin: &Name) -> Option<&Arc<Zone>> {
        self.zones.get(origin)
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }

    /// Per-file load results, sorted by zone name.
    pub fn statuses(&self) -> &[ZoneStatus] {
        &self.statuses
    }

    /// A copy of this set with `zone` added or replaced, read from or written to `file`.
    pub fn with_zone(&self, zone: Arc<Zone>, file: PathBuf) -> ZoneSet {
        let mut zones: Vec<Arc<Zone>> = self
            .zones
            .values()
            .filter(|z| z.origin() != zone.origin())
            .cloned()
            .collect();
        let mut statuses: Vec<ZoneStatus> = self
            .statuses
            .iter()
            .filter(|s| s.file != file)
            .cloned()
            .collect();
        statuses.push(ZoneStatus {
            name: zone.origin().to_ascii(),
            file,
            serial: Some(zone.serial()),
            records: zone.record_count(),
            serving: true,
            last_error: None,
            loaded_at: Some(unix_now()),
        });
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        zones.push(zone);
        ZoneSet::from_zones(zones, statuses)
    }

    /// A copy of this set without the zone `origin` and without the status of `file`.
    pub fn without_zone(&self, origin: &Name, file: &Path) -> ZoneSet {
        let zones: Vec<Arc<Zone>> = self
            .zones
            .values()
            .filter(|z| z.origin() != origin)
            .cloned()
            .collect();
        let statuses = self
            .statuses
            .iter()
            .filter(|s| s.file != file)
            .cloned()
            .collect();
        ZoneSet::from_zones(zones, statuses)
    }

    /// Reads every `*.zone` file of `dir`. `previous` is the snapshot being served: a zone
    /// whose new file is broken keeps its previous version.
    pub fn load_dir(dir: &Path, previous: Option<&ZoneSet>) -> Result<LoadReport, std::io::Error> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_zone_file(p))
            .collect();
        files.sort();

        let now = unix_now();
        let mut zones = Vec::with_capacity(files.len());
        let mut statuses = Vec::with_capacity(files.len());
        let mut errors = Vec::new();
        for file in files {
            let shown = file.display().to_string();
            let origin = match origin_from_file_name(&file) {
                Ok(o) => o,
                Err(message) => {
                    let e = format!("{shown}: {message}");
                    errors.push(e.clone());
                    statuses.push(ZoneStatus {
                        name: file_stem(&file),
                        file,
                        serial: None,
                        records: 0,
                        serving: false,
                        last_error: Some(e),
                        loaded_at: None,
                    });
                    continue;
                }
            };
            let loaded = std::fs::read_to_string(&file)
                .map_err(|e| format!("{shown}: cannot read: {e}"))
                .and_then(|text| {
                    Zone::from_master_text(&origin, &text).map_err(|e| {
                        if e.line > 0 {
                            format!("{shown}:{}: {}", e.line, e.message)
                        } else {
                            format!("{shown}: {}", e.message)
                        }
                    })
                });
            let old_status = previous.and_then(|p| p.statuses.iter().find(|s| s.file == file));
            match loaded {
                Ok(zone) => {
                    // Reloading an unchanged file keeps its load time.
                    let same = previous.and_then(|p| p.get(&origin)).is_some_and(|old| {
                        old.serial() == zone.serial() && old.record_count() == zone.record_count()
                    });
                    let loaded_at = if same {
                        old_status.and_then(|s| s.loaded_at).or(Some(now))
                    } else {
                        Some(now)
                    };
                    statuses.push(ZoneStatus {
                        name: origin.to_ascii(),
                        file,
                        serial: Some(zone.serial()),
                        records: zone.record_count(),
                        serving: true,
                        last_error: None,
                        loaded_at,
                    });
                    zones.push(Arc::new(zone));
                }
                Err(e) => {
                    errors.push(e.clone());
                    let kept = previous.and_then(|p| p.get(&origin)).cloned();
                    statuses.push(ZoneStatus {
                        name: origin.to_ascii(),
                        file,
                        serial: kept.as_ref().map(|z| z.serial()),
                        records: kept.as_ref().map_or(0, |z| z.record_count()),
                        serving: kept.is_some(),
                        last_error: Some(e),
                        loaded_at: kept.as_ref().and(old_status.and_then(|s| s.loaded_at)),
                    });
                    zones.extend(kept);
                }
            }
        }
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(LoadReport {
            set: ZoneSet::from_zones(zones, statuses),
            errors,
        })
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The file that holds zone `origin` in `dir`: `<zone>.zone`, lower case, no trailing dot.
pub fn zone_file(dir: &Path, origin: &Name) -> PathBuf {
    let name = origin.to_lowercase().to_ascii();
    dir.join(format!("{}.zone", name.trim_end_matches('.')))
}

/// Zone files are `<zone>.zone`; dot-files and editor or temp files are not zones.
fn is_zone_file(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".zone") && name.len() > ".zone".len() && p.is_file()
}

fn file_stem(p: &Path) -> String {
    p.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".zone"))
        .unwrap_or("")
        .to_string()
}

/// `zones/example.test.zone` serves `example.test.`.
fn origin_from_file_name(p: &Path) -> Result<Name, String> {
    let stem = file_stem(p);
    let mut name =
        Name::from_ascii(&stem).map_err(|e| format!("the file name is not a zone name: {e}"))?;
    name.set_fqdn(true);
    if name.is_root() {
        return Err("the file name is not a zone name".into());
    }
    Ok(name.to_lowercase())
}
