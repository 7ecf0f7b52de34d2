//! The set of hosted zones as served, and loading it from the zones folder.
//!
//! This module owns reading `zones/*.zone` into a [`ZoneSet`]: every servable zone plus, per
//! file, how its last load went. A file that fails to load is
//! reported (file:line: reason) and, on a reload, its last good version keeps being served.
//! It must not touch sockets; publishing the snapshot is the daemon's job.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use hickory_proto::rr::Name;
use serde::Serialize;

use super::compiled::{WireName, wire_key};
use super::journal::{Followed, Journal, JournalLimits};
use super::writer::name_text;
use super::{Zone, ZoneError, label_count};
use crate::durable::{self, FileChange};

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

/// One served zone: its current version and how it got there. A change to an existing zone
/// swaps these in place (one atomic store), so it costs the same with 10 or 100,000 zones.
#[derive(Debug)]
struct ZoneEntry {
    zone: ArcSwap<Zone>,
    status: ArcSwap<ZoneStatus>,
}

/// Every hosted zone. Queries read it without locks; adding or removing a zone swaps a new
/// set in, changing one swaps that zone's entry.
#[derive(Debug, Default)]
pub struct ZoneSet {
    zones: HashMap<Name, Arc<ZoneEntry>>,
    /// The same entries by the lower-cased wire form of the origin: the DNS fast path finds
    /// a zone from the datagram's bytes without building a `Name`.
    by_wire: HashMap<Box<[u8]>, Arc<ZoneEntry>>,
    /// Label counts of the shortest and longest origin, to bound the suffix walk.
    min_labels: usize,
    max_labels: usize,
    /// Files that serve nothing (they never loaded).
    failed: Vec<ZoneStatus>,
}

/// The result of reading the zones folder.
#[derive(Debug)]
pub struct LoadReport {
    pub set: ZoneSet,
    /// Files that failed (each error as `file:line: reason`).
    pub errors: Vec<String>,
    /// Journal files to write or remove so that they match the zones loaded (a reload that
    /// found a hand-edited file, a damaged or orphaned journal); the caller commits them.
    pub journal_files: Vec<FileChange>,
    /// Temp files a crash left in the folder, seen in the listing (the loader removes
    /// nothing: on a reload a writer may be filling one; at start nothing is).
    pub temp_files: Vec<PathBuf>,
}

/// The names of the zones folder's files other than zone files (journals, signatures, …),
/// from its one listing: looked up by file name, hashed as bytes, not as path components.
pub(super) struct Present(std::collections::HashSet<std::ffi::OsString>);

impl Present {
    /// Whether `path` (a file of the listed folder) was listed.
    fn contains(&self, path: &Path) -> bool {
        path.file_name().is_some_and(|n| self.0.contains(n))
    }
}

/// A served zone as a query sees it: a cheap guard, no reference count touched.
pub type ZoneRef = arc_swap::Guard<Arc<Zone>>;

impl ZoneSet {
    /// Builds a set from ready zones and their statuses (matched by zone name; a status
    /// without a zone is a file that serves nothing).
    pub fn from_zones(
        zones: impl IntoIterator<Item = Arc<Zone>>,
        statuses: Vec<ZoneStatus>,
    ) -> Self {
        // Each status's name is moved into the key and back, not copied.
        let mut by_name: HashMap<String, ZoneStatus> = statuses
            .into_iter()
            .map(|mut s| (std::mem::take(&mut s.name), s))
            .collect();
        let named = |(name, mut status): (String, ZoneStatus)| {
            status.name = name;
            status
        };
        let zones: HashMap<Name, Arc<ZoneEntry>> = zones
            .into_iter()
            .map(|z| {
                let status = by_name
                    .remove_entry(&name_text(z.origin()))
                    .map(named)
                    .unwrap_or_else(|| ZoneStatus {
                        name: name_text(z.origin()),
                        file: PathBuf::new(),
                        serial: Some(z.serial()),
                        records: z.record_count(),
                        serving: true,
                        last_error: None,
                        loaded_at: Some(unix_now()),
                    });
                let entry = ZoneEntry {
                    zone: ArcSwap::new(z.clone()),
                    status: ArcSwap::from_pointee(status),
                };
                (z.origin().clone(), Arc::new(entry))
            })
            .collect();
        Self::from_entries(zones, by_name.into_iter().map(named).collect())
    }

    /// Builds a set from zones each given with its own status (a status without a zone is
    /// a file that serves nothing); the zones' origins are all different.
    fn from_pairs(pairs: Vec<(Option<Arc<Zone>>, ZoneStatus)>) -> Self {
        let mut zones = HashMap::with_capacity(pairs.len());
        let mut failed = Vec::new();
        for (zone, status) in pairs {
            match zone {
                Some(z) => {
                    let entry = ZoneEntry {
                        zone: ArcSwap::new(z.clone()),
                        status: ArcSwap::from_pointee(status),
                    };
                    zones.insert(z.origin().clone(), Arc::new(entry));
                }
                None => failed.push(status),
            }
        }
        Self::from_entries(zones, failed)
    }

    /// The zone with the longest origin that contains `name`.
    pub fn find(&self, name: &Name) -> Option<ZoneRef> {
        if self.zones.is_empty() {
            return None;
        }
        let labels = label_count(name);
        let top = labels.min(self.max_labels);
        if top < self.min_labels {
            return None;
        }
        for k in (self.min_labels..=top).rev() {
            let found = if k == labels {
                self.zones.get(name)
            } else {
                self.zones.get(&name.trim_to(k))
            };
            if let Some(entry) = found {
                return Some(entry.zone.load());
            }
        }
        None
    }

    /// [`ZoneSet::find`] for a name read from a datagram: no allocation.
    pub fn find_wire(&self, name: &WireName) -> Option<ZoneRef> {
        let labels = name.labels();
        let top = labels.min(self.max_labels);
        if self.zones.is_empty() || top < self.min_labels {
            return None;
        }
        (self.min_labels..=top)
            .rev()
            .find_map(|k| self.by_wire.get(name.suffix(labels - k)))
            .map(|entry| entry.zone.load())
    }

    /// Like [`ZoneSet::find`], as an owned `Arc` (for callers that keep it).
    pub fn find_arc(&self, name: &Name) -> Option<Arc<Zone>> {
        self.find(name).map(|g| Arc::clone(&g))
    }

    /// The zone whose origin is exactly `origin`.
    pub fn get(&self, origin: &Name) -> Option<Arc<Zone>> {
        self.zones.get(origin).map(|e| e.zone.load_full())
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The origin of every served zone.
    pub fn origins(&self) -> impl Iterator<Item = &Name> {
        self.zones.keys()
    }

    /// Every served zone, at this instant.
    pub fn zones(&self) -> Vec<Arc<Zone>> {
        self.zones.values().map(|e| e.zone.load_full()).collect()
    }

    /// Per-file load results, sorted by zone name.
    pub fn statuses(&self) -> Vec<ZoneStatus> {
        let mut out: Vec<ZoneStatus> = self
            .zones
            .values()
            .map(|e| e.status.load().as_ref().clone())
            .chain(self.failed.iter().cloned())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn fresh_status(zone: &Zone, file: PathBuf) -> ZoneStatus {
        ZoneStatus {
            name: name_text(zone.origin()),
            file,
            serial: Some(zone.serial()),
            records: zone.record_count(),
            serving: true,
            last_error: None,
            loaded_at: Some(unix_now()),
        }
    }

    /// Replaces a zone this set serves, in place; `false` if it serves no such zone.
    pub fn replace_zone(&self, zone: Arc<Zone>, file: PathBuf) -> bool {
        let Some(entry) = self.zones.get(zone.origin()) else {
            return false;
        };
        entry
            .status
            .store(Arc::new(Self::fresh_status(&zone, file)));
        entry.zone.store(zone);
        true
    }

    /// A copy of this set with `zone` added (or replaced), written to `file`.
    pub fn with_zone(&self, zone: Arc<Zone>, file: PathBuf) -> ZoneSet {
        let mut zones = self.zones.clone();
        let status = Self::fresh_status(&zone, file.clone());
        zones.insert(
            zone.origin().clone(),
            Arc::new(ZoneEntry {
                zone: ArcSwap::new(zone),
                status: ArcSwap::from_pointee(status),
            }),
        );
        let failed = self
            .failed
            .iter()
            .filter(|s| s.file != file)
            .cloned()
            .collect();
        Self::from_entries(zones, failed)
    }

    /// A copy of this set without the zone `origin` and without the status of `file`.
    pub fn without_zone(&self, origin: &Name, file: &Path) -> ZoneSet {
        let mut zones = self.zones.clone();
        zones.remove(origin);
        let failed = self
            .failed
            .iter()
            .filter(|s| s.file != file)
            .cloned()
            .collect();
        Self::from_entries(zones, failed)
    }

    fn from_entries(zones: HashMap<Name, Arc<ZoneEntry>>, failed: Vec<ZoneStatus>) -> Self {
        let min_labels = zones.keys().map(label_count).min().unwrap_or(0);
        let max_labels = zones.keys().map(label_count).max().unwrap_or(0);
        let by_wire = zones
            .iter()
            .map(|(name, entry)| (wire_key(name), entry.clone()))
            .collect();
        Self {
            zones,
            by_wire,
            min_labels,
            max_labels,
            failed,
        }
    }

    /// Reads every `*.zone` file of `dir`. `previous` is the snapshot being served: a zone
    /// whose new file is broken keeps its previous version.
    /// Files over `max_file_bytes` are refused unread. Journals are kept to the default bounds.
    pub fn load_dir(
        dir: &Path,
        previous: Option<&ZoneSet>,
        max_file_bytes: u64,
    ) -> Result<LoadReport, std::io::Error> {
        Self::load_dir_with(dir, previous, max_file_bytes, &JournalLimits::default())
    }

    /// Like [`ZoneSet::load_dir`], journals kept within `limits`. Each zone gets its journal:
    /// on a reload, the served version's plus the difference when the file's serial went
    /// forward (reset when it did not); at start, its journal file if that leads to the
    /// zone file's version (dropped and reported otherwise: never a failed load) — for a
    /// zone loaded with stored signatures, read and checked only when first needed.
    pub fn load_dir_with(
        dir: &Path,
        previous: Option<&ZoneSet>,
        max_file_bytes: u64,
        limits: &JournalLimits,
    ) -> Result<LoadReport, std::io::Error> {
        let previous_statuses: HashMap<PathBuf, ZoneStatus> = previous
            .map(|p| {
                p.statuses()
                    .into_iter()
                    .map(|s| (s.file.clone(), s))
                    .collect()
            })
            .unwrap_or_default();
        let now = unix_now();
        // Every core reads and parses files (start-up is then bounded by reading them),
        // starting while the folder is still being listed; the results are put back in file
        // order, so the outcome does not depend on timing.
        let feed = Feed::default();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (listing, mut loaded) = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        while let Some(batch) = feed.take() {
                            for file in batch {
                                mine.push(load_one(
                                    &file,
                                    &feed.listed,
                                    previous,
                                    &previous_statuses,
                                    limits,
                                    max_file_bytes,
                                    now,
                                ));
                            }
                        }
                        mine
                    })
                })
                .collect();
            // The workers stop once the feed is finished, whatever the listing gave.
            let listing = list_zones_folder(dir, &feed);
            feed.finish();
            let loaded: Vec<Loaded> = workers
                .into_iter()
                .flat_map(|w| match w.join() {
                    Ok(mine) => mine,
                    // A panic while loading is a bug: the caller's thread reports it as usual.
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect();
            (listing, loaded)
        });
        let Listing { files, temp_files } = listing?;
        // All in one folder: their bytes sort them as their components would, faster.
        loaded.sort_unstable_by(|a, b| a.status.file.as_os_str().cmp(b.status.file.as_os_str()));
        let present =
            feed.listed.0.get().ok_or_else(|| {
                std::io::Error::other("the zones folder listing did not complete")
            })?;
        let mut errors = Vec::new();
        let mut journal_files = orphan_journals(dir, present, &files);
        let mut pairs = Vec::with_capacity(loaded.len());
        for one in loaded {
            errors.extend(one.error);
            journal_files.extend(one.journal);
            pairs.push((one.zone, one.status));
        }
        // At start, each zone is its own file's and no two files name one zone (nearly
        // always): the pairs are the entries, not matched again by name (a fifth of the
        // serial part of a 100,000-zone start).
        let unique = || {
            let mut names = std::collections::HashSet::with_capacity(pairs.len());
            pairs.iter().all(|(_, s)| names.insert(s.name.as_str()))
        };
        if previous.is_none() && unique() {
            return Ok(LoadReport {
                set: ZoneSet::from_pairs(pairs),
                errors,
                journal_files,
                temp_files,
            });
        }
        let mut zones = Vec::with_capacity(pairs.len());
        let mut statuses = Vec::with_capacity(pairs.len());
        for (zone, status) in pairs {
            statuses.push(status);
            zones.extend(zone);
        }
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(LoadReport {
            set: ZoneSet::from_zones(zones, statuses),
            errors,
            journal_files,
            temp_files,
        })
    }
}

/// What loading one zone file gave.
struct Loaded {
    status: ZoneStatus,
    /// The version to serve: the new one, or on failure the one served before, if any.
    zone: Option<Arc<Zone>>,
    error: Option<String>,
    journal: Option<FileChange>,
}

/// The zone files of the folder being listed, handed to the loading threads in batches
/// while the listing goes on: beside 10,000 signed zones' files are their signatures and
/// journals, and listing those 30,000 names before loading anything was a tenth of a
/// restart.
#[derive(Default)]
struct Feed {
    queue: std::sync::Mutex<(Vec<PathBuf>, bool)>,
    more: std::sync::Condvar,
    listed: Listed,
}

/// A batch of zone files is handed over once it has this many.
const FEED_BATCH: usize = 32;

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<PathBuf>, bool)> {
        // A worker that panicked is reported when joined; the queue itself stays sound.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn give(&self, batch: &mut Vec<PathBuf>) {
        if batch.is_empty() {
            return;
        }
        self.lock().0.append(batch);
        self.more.notify_all();
    }

    /// The listing is over (the rest is in the queue): waiting workers take it and stop.
    fn finish(&self) {
        self.lock().1 = true;
        self.more.notify_all();
    }

    /// The next files to load, `None` once the listing is over and the queue empty.
    fn take(&self) -> Option<Vec<PathBuf>> {
        let mut queue = self.lock();
        loop {
            let (files, finished) = &mut *queue;
            if !files.is_empty() {
                let at = files.len().saturating_sub(FEED_BATCH / 2);
                return Some(files.split_off(at));
            }
            if *finished {
                return None;
            }
            queue = self.more.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The folder's other files once its listing is complete; before that, a file's presence
/// is not known and the caller looks for it itself.
#[derive(Default)]
pub(super) struct Listed(OnceLock<Present>);

impl Listed {
    /// Whether `path` was listed; `None` while the listing goes on.
    fn knows(&self, path: &Path) -> Option<bool> {
        self.0.get().map(|p| p.contains(path))
    }
}

/// What listing the zones folder found besides what it fed to the loaders.
struct Listing {
    /// The zone files, sorted by their bytes.
    files: Vec<PathBuf>,
    temp_files: Vec<PathBuf>,
}

/// Lists `dir` once, feeding its zone files to the loaders as they come and noting the
/// other files (journals, signatures: what is looked up) in [`Feed::listed`]. The file type
/// comes with the listing; only a symlink is followed. With 100,000 zones, a stat per zone
/// file and two for its journal and signatures (nearly always absent) were a large part of
/// a start.
fn list_zones_folder(dir: &Path, feed: &Feed) -> std::io::Result<Listing> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut present = Present(Default::default());
    let mut temp_files = Vec::new();
    let mut batch = Vec::with_capacity(FEED_BATCH);
    for e in std::fs::read_dir(dir)? {
        let Ok(e) = e else { continue };
        let Ok(kind) = e.file_type() else { continue };
        let name = e.file_name();
        let is_file = if kind.is_symlink() {
            dir.join(&name).is_file()
        } else {
            kind.is_file()
        };
        if !is_file {
            continue;
        }
        let text = name.to_str().unwrap_or("");
        if durable::is_temp_name(text) {
            temp_files.push(dir.join(&name));
        } else if is_zone_name(Path::new(&name)) {
            let file = dir.join(&name);
            files.push(file.clone());
            batch.push(file);
            if batch.len() == FEED_BATCH {
                feed.give(&mut batch);
            }
        } else {
            present.0.insert(name);
        }
    }
    feed.give(&mut batch);
    let _ = feed.listed.0.set(present);
    files.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(Listing { files, temp_files })
}

/// Reads, parses and checks one zone file, attaching its journal.
fn load_one(
    file: &Path,
    present: &Listed,
    previous: Option<&ZoneSet>,
    previous_statuses: &HashMap<PathBuf, ZoneStatus>,
    limits: &JournalLimits,
    max_file_bytes: u64,
    now: u64,
) -> Loaded {
    let file = file.to_path_buf();
    let shown = file.display().to_string();
    let origin = match origin_from_file_name(&file) {
        Ok(o) => o,
        Err(message) => {
            let e = format!("{shown}: {message}");
            return Loaded {
                status: ZoneStatus {
                    name: file_stem(&file),
                    file,
                    serial: None,
                    records: 0,
                    serving: false,
                    last_error: Some(e.clone()),
                    loaded_at: None,
                },
                zone: None,
                error: Some(e),
                journal: None,
            };
        }
    };
    let loaded = with_read_buffers(|text, signed| {
        read_bounded_into(&file, max_file_bytes, text)
            .and_then(|()| as_text(text))
            .map_err(|e| format!("{shown}{e}"))
            .and_then(|text| {
                load_zone(&origin, text, &file, present, max_file_bytes, signed).map_err(|e| {
                    // The message goes to the log and /v1/status: bounded, whatever the file
                    // holds.
                    let message = bounded(&e.message);
                    if e.line > 0 {
                        format!("{shown}:{}: {message}", e.line)
                    } else {
                        format!("{shown}: {message}")
                    }
                })
            })
    });
    let old_status = previous_statuses.get(&file);
    match loaded {
        Ok(mut zone) => {
            let served = previous.and_then(|p| p.get(&origin));
            let journal = attach_journal(
                &mut zone,
                &file,
                present,
                served.as_deref(),
                limits,
                max_file_bytes,
            );
            // Reloading an unchanged file keeps its load time.
            let same = served.is_some_and(|old| {
                old.serial() == zone.serial() && old.record_count() == zone.record_count()
            });
            let loaded_at = if same {
                old_status.and_then(|s| s.loaded_at).or(Some(now))
            } else {
                Some(now)
            };
            Loaded {
                status: ZoneStatus {
                    name: name_text(&origin),
                    file,
                    serial: Some(zone.serial()),
                    records: zone.record_count(),
                    serving: true,
                    last_error: None,
                    loaded_at,
                },
                zone: Some(Arc::new(zone)),
                error: None,
                journal,
            }
        }
        Err(e) => {
            let kept = previous.and_then(|p| p.get(&origin));
            Loaded {
                status: ZoneStatus {
                    name: name_text(&origin),
                    file,
                    serial: kept.as_ref().map(|z| z.serial()),
                    records: kept.as_ref().map_or(0, |z| z.record_count()),
                    serving: kept.is_some(),
                    last_error: Some(e.clone()),
                    loaded_at: kept.as_ref().and(old_status.and_then(|s| s.loaded_at)),
                },
                zone: kept,
                error: Some(e),
                journal: None,
            }
        }
    }
}

/// The longest error message about a file's content we keep (log line, `/v1/status`).
const MAX_MESSAGE_CHARS: usize = 300;

/// Reads a zone file as text if it is at most `max` bytes; a larger one is not read at all
/// (and one that grows while being read is cut at `max + 1` bytes and refused). The error
/// starts with `: ` or `:LINE: `, to follow the file name.
fn read_bounded(file: &Path, max: u64) -> Result<String, String> {
    let mut bytes = Vec::new();
    read_bounded_into(file, max, &mut bytes)?;
    // Checked once; the error says where, as for a zone file.
    String::from_utf8(bytes).map_err(|e| {
        as_text(e.as_bytes())
            .err()
            .unwrap_or_else(|| ": invalid UTF-8".to_string())
    })
}

/// [`read_bounded`] into `buf` (cleared first), as bytes: the loader reads every zone file
/// into one buffer per thread rather than allocate and free one per file.
fn read_bounded_into(file: &Path, max: u64, buf: &mut Vec<u8>) -> Result<(), String> {
    let f = std::fs::File::open(file).map_err(|e| format!(": cannot read: {e}"))?;
    let len = f
        .metadata()
        .map_err(|e| format!(": cannot read: {e}"))?
        .len();
    let too_large =
        |len: u64| format!(": the file is {len} bytes, over max_zone_file_bytes ({max}): not read");
    if len > max {
        return Err(too_large(len));
    }
    read_open_file(&f, len, max, buf).map_err(|e| format!(": cannot read: {e}"))?;
    if buf.len() as u64 > max {
        return Err(too_large(buf.len() as u64));
    }
    Ok(())
}

/// Reads the open file `f`, `len` bytes by its metadata, into `buf` (cleared first), at
/// most `max + 1` bytes: the size is known, so no second `stat` as `read_to_end` on a
/// `File` makes.
fn read_open_file(f: &std::fs::File, len: u64, max: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read;
    buf.clear();
    buf.reserve(usize::try_from(len.min(max)).unwrap_or(0).saturating_add(1));
    f.take(max.saturating_add(1)).read_to_end(buf)?;
    Ok(())
}

/// `bytes` as text; the error says on which line the first invalid UTF-8 is.
fn as_text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format!(":{line}: invalid UTF-8")
    })
}

/// A buffer kept by each loading thread for the files it reads; one that grew past this
/// is not kept (a loader may run on a long-lived thread).
const KEPT_BUFFER_BYTES: usize = 1 << 20;

thread_local! {
    /// The zone file's text and its signatures file, read by this thread.
    static READ_BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

/// Runs `f` with this thread's read buffers, or fresh ones if they are in use.
fn with_read_buffers<R>(f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> R) -> R {
    READ_BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let (text, signed) = &mut *bufs;
            let out = f(text, signed);
            for b in [text, signed] {
                if b.capacity() > KEPT_BUFFER_BYTES {
                    *b = Vec::new();
                }
            }
            out
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

/// `message` cut to [`MAX_MESSAGE_CHARS`] with control characters escaped: an error may
/// quote input, and input may be anything.
fn bounded(message: &str) -> String {
    let mut out = String::new();
    for (i, c) in message.chars().enumerate() {
        if i >= MAX_MESSAGE_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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
    let name = name_text(&origin.to_lowercase());
    dir.join(format!("{}.zone", name.trim_end_matches('.')))
}

/// The journal beside a zone file: `<zone>.journal`.
pub fn journal_file_for(zone_file: &Path) -> PathBuf {
    zone_file.with_extension("journal")
}

/// The file change that makes `zone`'s journal file match its journal (removed when empty).
pub fn journal_change(zone: &Zone, zone_file: &Path) -> FileChange {
    let path = journal_file_for(zone_file);
    match zone.journal().to_text(zone.origin()) {
        Some(text) => FileChange::write(&path, text.into_bytes(), durable::PUBLIC_FILE_MODE),
        None => FileChange::remove(&path),
    }
}

/// Gives a zone just read its journal; returns the change its journal file needs, if any.
fn attach_journal(
    zone: &mut Zone,
    file: &Path,
    present: &Listed,
    served: Option<&Zone>,
    limits: &JournalLimits,
    max_file_bytes: u64,
) -> Option<FileChange> {
    let shown = name_text(zone.origin());
    if let Some(served) = served {
        return match zone.follow(Some(served), limits, unix_now()) {
            Followed::Unchanged | Followed::New => None,
            Followed::Appended => Some(journal_change(zone, file)),
            Followed::Reset(reason) => {
                tracing::warn!(zone = %shown, %reason, "zone file edited by hand: journal reset, IXFR falls back to a full transfer for older serials");
                Some(journal_change(zone, file))
            }
        };
    }
    let path = journal_file_for(file);
    // Not listed: none. Listing still under way: looked for below (or when first needed).
    if present.knows(&path) == Some(false) {
        return None;
    }
    // The zone's digest is known (from its stored signatures): its journal is not opened
    // at start, only when first needed (IXFR, the next change, compaction); it then keeps
    // the steps that lead to this version, and is dropped if it does not lead there or is
    // damaged (a missing file is an empty journal).
    if zone.known_digest().is_some() {
        let reader_path = path.clone();
        zone.defer_journal(
            Box::new(move || match std::fs::metadata(&reader_path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                _ => read_bounded(&reader_path, max_file_bytes)
                    .map(Some)
                    .map_err(|e| e.trim_start_matches(':').trim().to_string()),
            }),
            limits,
        );
        return None;
    }
    if !path.is_file() {
        return None;
    }
    let read = read_bounded(&path, max_file_bytes)
        .map_err(|e| e.trim_start_matches(':').trim().to_string())
        .and_then(|text| Journal::parse(&text, zone.origin()))
        .and_then(|journal| zone.adopt_journal(journal, limits));
    match read {
        Ok(0) => None,
        Ok(dropped) => {
            tracing::warn!(zone = %shown, dropped, "journal steps past the zone file dropped (a crash between the two writes of a change)");
            Some(journal_change(zone, file))
        }
        Err(reason) => {
            tracing::warn!(zone = %shown, file = %path.display(), reason = %bounded(&reason), "journal dropped: IXFR falls back to a full transfer for older serials");
            Some(journal_change(zone, file))
        }
    }
}

/// A zone file's zone, with its stored DNSSEC records (`<zone>.signed`) when they were made
/// for exactly this zone file; otherwise the zone as the file has it (the daemon signs it
/// again). The common case (signatures for this very file) builds the zone once.
fn load_zone(
    origin: &Name,
    text: &str,
    file: &Path,
    present: &Listed,
    max_file_bytes: u64,
    buf: &mut Vec<u8>,
) -> Result<Zone, ZoneError> {
    let path = super::signed::signatures_file_for(file);
    // Not listed: none; listing still under way: opened if there (a missing one is no error).
    let mut stored = if present.knows(&path) != Some(false) {
        read_signatures(&path, max_file_bytes, buf)
    } else {
        None
    };
    // The common restart of a signed zone: its whole signed version stored for this very
    // text, served as stored without reading a record of the zone file.
    if let Some(s) = stored.as_mut() {
        match Zone::from_stored_arena(origin, text, s) {
            Some(Ok(zone)) => return Ok(zone),
            Some(Err(reason)) => {
                tracing::warn!(file = %path.display(), reason = %bounded(&reason), "stored signatures not used; the zone is signed again");
                stored = None;
            }
            None => {}
        }
    }
    let records = super::signed::zone_file_records(origin, text)?;
    let Some(stored) = stored else {
        return Zone::build(origin.clone(), records);
    };
    match Zone::build_with_stored(origin, text, records, stored) {
        Ok(Ok(zone)) => Ok(zone),
        Ok(Err(e)) => {
            // The file's records alone may be at fault: building them alone says which line.
            let zone = Zone::from_zone_file_text(origin, text)?;
            tracing::warn!(file = %path.display(), reason = %bounded(&e.to_string()), "stored signatures not used; the zone is signed again");
            Ok(zone)
        }
        Err(unused) => {
            let (records, stored) = *unused;
            let zone = Zone::build(origin.clone(), records)?;
            match zone.with_stored(stored) {
                Ok(signed) => Ok(signed),
                Err(reason) => {
                    tracing::warn!(file = %path.display(), reason = %bounded(&reason), "stored signatures not used; the zone is signed again");
                    Ok(zone)
                }
            }
        }
    }
}

/// A signatures file, decoded; `None` when there is none or it cannot be used (said in the
/// log).
fn read_signatures(
    path: &Path,
    max_file_bytes: u64,
    bytes: &mut Vec<u8>,
) -> Option<super::signed::Stored> {
    // Opened once, its size read from the open file: no separate `stat` by path.
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "signatures not read; the zone is signed again");
            return None;
        }
    };
    let max = max_file_bytes.saturating_mul(4);
    let read = f
        .metadata()
        .and_then(|m| read_open_file(&f, m.len(), max, bytes));
    if let Err(e) = read {
        tracing::warn!(file = %path.display(), error = %e, "signatures not read; the zone is signed again");
        return None;
    }
    if bytes.len() as u64 > max {
        tracing::warn!(file = %path.display(), "signatures file too large; the zone is signed again");
        return None;
    }
    match super::signed::decode(bytes) {
        Ok(stored) => Some(stored),
        Err(reason) => {
            tracing::warn!(file = %path.display(), reason = %bounded(&reason), "stored signatures not used; the zone is signed again");
            None
        }
    }
}

/// Journal files whose zone file is gone (removed by hand): they go too. `present` is the
/// folder's files other than zone files (from its one listing), `zone_files` the zone files
/// sorted by their bytes.
fn orphan_journals(dir: &Path, present: &Present, zone_files: &[PathBuf]) -> Vec<FileChange> {
    // A binary search in the sorted list, not a look-up one by one: 10,000 journals looked
    // up in 10,000 zone files one by one took seconds of every start.
    let is_zone_file = |p: &Path| {
        zone_files
            .binary_search_by(|z| z.as_os_str().cmp(p.as_os_str()))
            .is_ok()
    };
    let mut orphans: Vec<FileChange> = present
        .0
        .iter()
        .filter(|n| {
            n.to_str()
                .is_some_and(|n| !n.starts_with('.') && n.ends_with(".journal"))
        })
        .map(|n| dir.join(n))
        .filter(|p| !is_zone_file(&p.with_extension("zone")))
        .map(|p| FileChange::remove(&p))
        .collect();
    orphans.sort_by(|x, y| x.path.cmp(&y.path));
    orphans
}

/// Zone files are `<zone>.zone`; dot-files and editor or temp files are not zones.
fn is_zone_name(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".zone") && name.len() > ".zone".len()
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
