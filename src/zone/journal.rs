//! The per-zone journal of committed differences, and the IXFR answer computed from it
//! (RFC 1995).
//!
//! This module owns what a change of a zone removed and added (SOA aside), the bounded list
//! of those steps that a [`Zone`] snapshot carries (so a transfer reads one consistent
//! version), the journal's text format (`zones/<zone>.journal`, written by the daemon's
//! writer in the same atomic commit as the zone file), checking a journal read back against
//! the zone file it sits beside, and the condensed difference [`Zone::ixfr`] answers with.
//! Like the rest of `zone`, it must not do I/O: `set` reads the file (at start, through a
//! reader it hands over, only when the steps are first needed, if the file's last step
//! already leads to the zone's version), the writer writes it.
//!
//! Every step records the digest of the zone version it leads to (an order-independent hash
//! of the zone's records). That is how a journal read at start is matched to its zone file:
//! a crash between the two renames of a commit leaves the journal one step ahead, and that
//! step is dropped; a zone file edited by hand while the daemon was stopped matches no step,
//! and the journal is dropped (IXFR then falls back to a full transfer).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::Arc;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde::{Deserialize, Serialize};

use super::serial::serial_gt;
use super::writer::{name_text, rdata_text, record_line};
use super::{Zone, master};

/// What an IXFR from `client_serial` should carry.
#[derive(Debug, Clone)]
pub enum IxfrPlan {
    /// The client has the current serial: answer with the single current SOA.
    UpToDate,
    /// The condensed differences, as the IXFR answer section carries them (RFC 1995 §4):
    /// new SOA, then for each step old SOA, removed records, new SOA, added records, and the
    /// new SOA last.
    Incremental(Vec<Record>),
    /// The journal does not reach back to `client_serial` (or it is from the future): send
    /// the whole zone, AXFR-style.
    Full,
}

/// How much history a zone keeps (`transfer.journal` in the config). The oldest steps go
/// first; a single change larger than `max_bytes` leaves the journal empty (a full transfer
/// is then cheaper than the difference anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalLimits {
    /// Most changes kept per zone.
    pub max_changes: usize,
    /// Most bytes of the journal file per zone (it is rewritten whole at each change, so
    /// this also bounds the cost of a change).
    pub max_bytes: usize,
}

impl Default for JournalLimits {
    fn default() -> Self {
        Self {
            max_changes: 100,
            max_bytes: 262_144,
        }
    }
}

/// One committed change: the SOA before and after, and the records it removed and added.
#[derive(Debug)]
pub struct Step {
    pub from: Record,
    pub to: Record,
    pub removed: Vec<Record>,
    pub added: Vec<Record>,
    /// Seconds since the epoch of the commit.
    pub time: u64,
    /// [`zone_digest`] of the version this step leads to.
    pub digest: u64,
    /// The step as the journal file has it (also its size for the bound).
    text: String,
}

impl Step {
    fn new(
        from: Record,
        to: Record,
        removed: Vec<Record>,
        added: Vec<Record>,
        time: u64,
        digest: u64,
    ) -> Self {
        let mut text = format!("$STEP {time} {digest:016x}\n");
        for r in std::iter::once(&from).chain(&removed) {
            let _ = writeln!(text, "- {}", journal_line(r));
        }
        for r in std::iter::once(&to).chain(&added) {
            let _ = writeln!(text, "+ {}", journal_line(r));
        }
        Self {
            from,
            to,
            removed,
            added,
            time,
            digest,
            text,
        }
    }

    pub fn from_serial(&self) -> u32 {
        soa_serial(&self.from)
    }

    pub fn to_serial(&self) -> u32 {
        soa_serial(&self.to)
    }
}

/// The history of one zone, oldest step first. Shared (`Arc`) between the snapshots of
/// successive versions; a change builds a new one.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    steps: VecDeque<Arc<Step>>,
    /// [`zone_digest`] of the zone this journal belongs to, once known.
    digest: Option<u64>,
}

/// Reads a zone's journal file when it is first needed (given by the loader: this module
/// does no I/O itself); `None`: there is no journal file.
pub type JournalReader = Box<dyn Fn() -> Result<Option<String>, String> + Send + Sync>;

/// The journal file of a zone loaded with its digest known (from its stored signatures),
/// not read until something needs its steps (IXFR, the next change); it is then cut to the
/// steps that lead to the zone's version, or dropped.
pub struct PendingJournal {
    read: JournalReader,
    origin: Name,
    digest: u64,
    limits: JournalLimits,
}

/// The journal a zone version carries: ready, or pending (read and parsed once, on first
/// use; a file found damaged then is dropped, and IXFR falls back to a full transfer).
#[derive(Clone, Default)]
pub struct JournalSlot {
    ready: std::sync::OnceLock<Arc<Journal>>,
    pending: Option<Arc<PendingJournal>>,
}

impl std::fmt::Debug for JournalSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalSlot")
            .field("ready", &self.ready.get())
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

impl JournalSlot {
    fn of(journal: Journal) -> Self {
        let ready = std::sync::OnceLock::new();
        let _ = ready.set(Arc::new(journal));
        Self {
            ready,
            pending: None,
        }
    }

    /// [`zone_digest`] of the zone, when known, without reading a pending journal.
    fn digest(&self) -> Option<u64> {
        match (self.ready.get(), &self.pending) {
            (Some(j), _) => j.digest,
            (None, Some(p)) => Some(p.digest),
            (None, None) => None,
        }
    }

    fn get(&self) -> &Arc<Journal> {
        self.ready.get_or_init(|| {
            let Some(p) = &self.pending else {
                return Arc::default();
            };
            let read = match (p.read)() {
                // No journal file: no history, nothing to report.
                Ok(None) => Ok(Journal::default()),
                Ok(Some(text)) => Journal::parse(&text, &p.origin).and_then(|mut journal| {
                    let keep = journal
                        .steps
                        .iter()
                        .rposition(|s| s.digest == p.digest)
                        .ok_or("it no longer leads to the zone's version")?;
                    journal.steps.truncate(keep + 1);
                    Ok(journal)
                }),
                Err(e) => Err(e),
            };
            let mut journal = read.unwrap_or_else(|reason| {
                tracing::warn!(zone = %name_text(&p.origin), reason = %reason, "journal dropped: IXFR falls back to a full transfer for older serials");
                Journal::default()
            });
            journal.digest = Some(p.digest);
            let current = journal.steps.back().map_or(0, |s| s.to_serial());
            journal.bound(&p.limits, current);
            Arc::new(journal)
        })
    }
}

/// What [`Zone::follow`] did to the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// No previous version: the journal starts empty.
    New,
    /// Same serial, same records: the previous journal is kept as it is.
    Unchanged,
    /// The difference was appended (and the oldest steps dropped to the bounds).
    Appended,
    /// The history cannot continue (the serial did not advance, or went back): the journal
    /// starts again empty, and IXFR from older serials falls back to a full transfer.
    Reset(String),
}

const MAGIC: &str = "$JOURNAL 1";

fn soa_serial(r: &Record) -> u32 {
    match &r.data {
        RData::SOA(s) => s.serial,
        _ => 0,
    }
}

/// FNV-1a, 64 bits: stable across builds and Rust versions (the digests are persisted).
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One record's share of the digest (the mix spreads FNV's bits before they are summed).
fn record_hash(r: &Record) -> u64 {
    let mut z = fnv(record_line(r).as_bytes());
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An order-independent digest of every record of `zone`, SOA included: a sum, so that a
/// change updates it from the records it removed and added alone.
pub fn zone_digest(zone: &Zone) -> u64 {
    zone.view()
        .records()
        .fold(0u64, |acc, r| acc.wrapping_add(record_hash(r)))
}

/// Records as compared by a difference: owner (case-insensitive), data and TTL.
type Key<'a> = (&'a Name, &'a RData, u32);

fn key(r: &Record) -> Key<'_> {
    (&r.name, &r.data, r.ttl)
}

/// What `new` has that `old` has not (added), and the reverse (removed), SOA aside; each in
/// the order of the zone file (owner, type, data).
pub fn diff(old: &Zone, new: &Zone) -> (Vec<Record>, Vec<Record>) {
    let (old, new) = (old.view(), new.view());
    let (old, new) = (old.as_ref(), new.as_ref());
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for (name, node) in &old.nodes {
        let other = new.nodes.get(name);
        for set in node.rrsets.iter().filter(|s| s.rtype != RecordType::SOA) {
            let theirs = other.and_then(|n| n.rrset(set.rtype));
            missing_from(&set.records, theirs.map(|s| &s.records[..]), &mut removed);
        }
    }
    for (name, node) in &new.nodes {
        let other = old.nodes.get(name);
        for set in node.rrsets.iter().filter(|s| s.rtype != RecordType::SOA) {
            let theirs = other.and_then(|n| n.rrset(set.rtype));
            missing_from(&set.records, theirs.map(|s| &s.records[..]), &mut added);
        }
    }
    // The NSEC3 chain lives beside the nodes.
    let chain = |z: &super::View| -> Vec<Record> {
        z.nsec3()
            .map(|c| c.records().cloned().collect())
            .unwrap_or_default()
    };
    let (old_chain, new_chain) = (chain(old), chain(new));
    missing_from(&old_chain, Some(&new_chain), &mut removed);
    missing_from(&new_chain, Some(&old_chain), &mut added);
    sort_records(&mut removed);
    sort_records(&mut added);
    (removed, added)
}

/// Like [`diff`], looking only at the rrsets `touched`: exact when `new` is `old` with rrset
/// changes at those names and types (and its SOA), at a cost proportional to the change
/// rather than to the zone.
pub fn diff_touched(
    old: &Zone,
    new: &Zone,
    touched: &[(&Name, RecordType)],
) -> (Vec<Record>, Vec<Record>) {
    let mut removed = Vec::new();
    let mut added = Vec::new();
    let (old, new) = (old.view(), new.view());
    let mut seen = std::collections::HashSet::new();
    for &(name, rtype) in touched {
        if rtype == RecordType::SOA || !seen.insert((name, rtype)) {
            continue;
        }
        let rrset = |z: &super::View| -> Vec<Record> {
            z.node(name)
                .and_then(|n| n.rrset(rtype))
                .map(|s| s.records.clone())
                .unwrap_or_default()
        };
        let (before, after) = (rrset(&old), rrset(&new));
        missing_from(&before, Some(&after), &mut removed);
        missing_from(&after, Some(&before), &mut added);
    }
    sort_records(&mut removed);
    sort_records(&mut added);
    (removed, added)
}

/// Pushes the records of `ours` that `theirs` lacks.
fn missing_from(ours: &[Record], theirs: Option<&[Record]>, out: &mut Vec<Record>) {
    let Some(theirs) = theirs else {
        out.extend(ours.iter().cloned());
        return;
    };
    // Large rrsets (thousands of records) are compared through a set, small ones directly.
    if theirs.len() > 16 {
        let present: std::collections::HashSet<Key> = theirs.iter().map(key).collect();
        out.extend(ours.iter().filter(|r| !present.contains(&key(r))).cloned());
    } else {
        out.extend(
            ours.iter()
                .filter(|r| !theirs.iter().any(|t| key(t) == key(r)))
                .cloned(),
        );
    }
}

fn sort_records(records: &mut [Record]) {
    records.sort_by_cached_key(|r| {
        (
            r.name.clone(),
            u16::from(r.record_type()),
            rdata_text(&r.data),
        )
    });
}

impl Journal {
    /// [`zone_digest`] of the zone this journal belongs to, when known.
    pub fn digest(&self) -> Option<u64> {
        self.digest
    }

    /// The steps kept, oldest first.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().map(|s| s.as_ref())
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The oldest serial an IXFR can start from, if any.
    pub fn oldest_serial(&self) -> Option<u32> {
        self.steps.front().map(|s| s.from_serial())
    }

    /// Bytes of the journal file (0 when it has no step: then there is no file).
    pub fn file_bytes(&self) -> usize {
        self.to_text(&Name::root()).map_or(0, |t| t.len())
    }

    /// Drops the oldest steps until the bounds hold, and those whose serial is no longer
    /// comparable with `current` (RFC 1982: over half the serial space away).
    fn bound(&mut self, limits: &JournalLimits, current: u32) {
        let mut bytes: usize = self.steps.iter().map(|s| s.text.len()).sum();
        while let Some(oldest) = self.steps.front() {
            let too_far = !serial_gt(current, oldest.from_serial());
            if !too_far && self.steps.len() <= limits.max_changes && bytes <= limits.max_bytes {
                break;
            }
            bytes -= oldest.text.len();
            self.steps.pop_front();
        }
    }

    /// The journal file's text, or `None` when there is no step (the file is removed).
    pub fn to_text(&self, origin: &Name) -> Option<String> {
        if self.steps.is_empty() {
            return None;
        }
        let zone = name_text(origin);
        let mut out = format!(
            "; mailzone IXFR journal of {zone}: the last changes of the zone, oldest first.\n\
             ; Written with the zone file in one atomic step; do not edit (a journal that does not\n\
             ; match the zone file is dropped, and IXFR falls back to a full transfer).\n\
             {MAGIC} {zone}\n"
        );
        for s in &self.steps {
            out.push_str(&s.text);
        }
        let sum = fnv(out.as_bytes());
        let _ = writeln!(out, "$END {sum:016x}");
        Some(out)
    }

    /// Reads a journal file's text for zone `origin`. Anything damaged (checksum, syntax, a
    /// step that does not follow the previous one) is an error naming the line.
    pub fn parse(text: &str, origin: &Name) -> Result<Journal, String> {
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or("no $END line: the file is cut short")?;
        let (body, end) = text.split_at(body_end);
        let sum = end
            .trim_end()
            .strip_prefix("$END ")
            .ok_or("no $END line: the file is cut short")?;
        if u64::from_str_radix(sum, 16).ok() != Some(fnv(body.as_bytes())) {
            return Err("the checksum does not match: the file is damaged".into());
        }
        let mut journal = Journal::default();
        let mut current: Option<Building> = None;
        let mut seen_magic = false;
        for (i, line) in body.lines().enumerate() {
            let n = i + 1;
            let fail = |m: &str| format!("line {n}: {m}");
            if line.starts_with(';') || line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix(MAGIC) {
                let named = master::parse_name(rest.trim(), &Name::root(), n)
                    .map_err(|e| fail(&e.message))?;
                if named != *origin {
                    return Err(fail(&format!(
                        "the journal is for {}, not {}",
                        name_text(&named),
                        name_text(origin)
                    )));
                }
                seen_magic = true;
                continue;
            }
            if !seen_magic {
                return Err(fail("not a mailzone journal (no $JOURNAL 1 line)"));
            }
            if let Some(rest) = line.strip_prefix("$STEP ") {
                if let Some(b) = current.take() {
                    journal.push_parsed(b.finish().map_err(|m| fail(&m))?)?;
                }
                let mut words = rest.split(' ');
                let time = words.next().and_then(|w| w.parse::<u64>().ok());
                let digest = words.next().and_then(|w| u64::from_str_radix(w, 16).ok());
                let (Some(time), Some(digest), None) = (time, digest, words.next()) else {
                    return Err(fail("$STEP takes a time and a digest"));
                };
                current = Some(Building {
                    time,
                    digest,
                    removed: Vec::new(),
                    added: Vec::new(),
                    text: format!("{line}\n"),
                });
                continue;
            }
            let (sign, record_text) = line.split_at_checked(2).ok_or_else(|| fail("bad line"))?;
            let b = current
                .as_mut()
                .ok_or_else(|| fail("a record before the first $STEP"))?;
            let record = parse_record(record_text, origin, n)?;
            match sign {
                "- " if b.added.is_empty() => b.removed.push(record),
                "+ " => b.added.push(record),
                _ => return Err(fail("expected a line starting with \"- \" or \"+ \"")),
            }
            b.text.push_str(line);
            b.text.push('\n');
        }
        if !seen_magic {
            return Err("not a mailzone journal (no $JOURNAL 1 line)".into());
        }
        if let Some(b) = current.take() {
            journal.push_parsed(b.finish()?)?;
        }
        journal.digest = journal.steps.back().map(|s| s.digest);
        Ok(journal)
    }

    /// Appends a step read from a file, checking that it follows the previous one.
    fn push_parsed(&mut self, step: Step) -> Result<(), String> {
        let (from, to) = (step.from_serial(), step.to_serial());
        if !serial_gt(to, from) {
            return Err(format!(
                "a step from serial {from} to {to} does not go forward"
            ));
        }
        if let Some(last) = self.steps.back()
            && record_line(&last.to) != record_line(&step.from)
        {
            return Err(format!(
                "a step from serial {from} does not follow the previous one (to {})",
                last.to_serial()
            ));
        }
        self.steps.push_back(Arc::new(step));
        Ok(())
    }
}

/// A step being read: the SOA lines come first in `removed` and `added`.
struct Building {
    time: u64,
    digest: u64,
    removed: Vec<Record>,
    added: Vec<Record>,
    /// The step's lines as read: kept as its text rather than written again (formatting
    /// every record of 10,000 journals again was most of a restart's time).
    text: String,
}

impl Building {
    fn finish(mut self) -> Result<Step, String> {
        let is_soa = |r: Option<&Record>| r.is_some_and(|r| r.record_type() == RecordType::SOA);
        if !is_soa(self.removed.first()) || !is_soa(self.added.first()) {
            return Err("a step must start with the old and the new SOA".into());
        }
        let from = self.removed.remove(0);
        let to = self.added.remove(0);
        let soa_elsewhere = self
            .removed
            .iter()
            .chain(&self.added)
            .any(|r| r.record_type() == RecordType::SOA);
        if soa_elsewhere {
            return Err("a step has a second SOA".into());
        }
        Ok(Step {
            from,
            to,
            removed: self.removed,
            added: self.added,
            time: self.time,
            digest: self.digest,
            text: self.text,
        })
    }
}

/// A record as a journal line: master-file form, except the DNSSEC records mailzone
/// generates, which no master-file reader here parses back (hickory refuses RRSIG text):
/// those are written in the RFC 3597 generic form, `owner TTL IN TYPEnn \# len hex`.
fn journal_line(r: &Record) -> String {
    if !super::signed::is_generated(r.record_type()) {
        return record_line(r);
    }
    let bytes = master::wire_bytes(&r.data).unwrap_or_default();
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in &bytes {
        let _ = write!(hex, "{b:02x}");
    }
    format!(
        "{} {} IN TYPE{} \\# {} {hex}",
        name_text(&r.name),
        r.ttl,
        u16::from(r.record_type()),
        bytes.len()
    )
}

/// Reads a line written by [`journal_line`] in the generic form; `None` if it is not one.
fn parse_generic(text: &str, origin: &Name, line: usize) -> Option<Result<Record, String>> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [owner, ttl, "IN", rtype, "\\#", len, hex] = words.as_slice() else {
        return None;
    };
    let rtype = rtype.strip_prefix("TYPE")?.parse::<u16>().ok()?;
    let parsed = (|| -> Result<Record, String> {
        let name = master::parse_name(owner, origin, line).map_err(|e| e.message)?;
        let ttl: u32 = ttl.parse().map_err(|_| "bad TTL".to_string())?;
        let len: usize = len.parse().map_err(|_| "bad length".to_string())?;
        if hex.len() != len * 2 {
            return Err("the data length does not match".into());
        }
        let bytes = (0..len)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| "bad hex data".to_string())?;
        let rtype = RecordType::from(rtype);
        if !super::signed::is_generated(rtype) {
            return Err(format!("{rtype} in generic form"));
        }
        let mut decoder = hickory_proto::serialize::binary::BinDecoder::new(&bytes);
        let data = RData::read(
            &mut decoder,
            rtype,
            hickory_proto::serialize::binary::Restrict::new(len as u16),
        )
        .map_err(|e| format!("invalid {rtype} data: {e}"))?;
        if !origin.zone_of(&name) {
            return Err("a record outside the zone".into());
        }
        Ok(Record::from_rdata(name, ttl, data))
    })();
    Some(parsed.map_err(|m| format!("line {line}: {m}")))
}

fn parse_record(text: &str, origin: &Name, line: usize) -> Result<Record, String> {
    if let Some(generic) = parse_generic(text, origin, line) {
        return generic;
    }
    let records = master::read(text, origin).map_err(|e| format!("line {line}: {}", e.message))?;
    match <[_; 1]>::try_from(records) {
        Ok([r]) if origin.zone_of(&r.record.name) => Ok(r.record),
        Ok(_) => Err(format!("line {line}: a record outside the zone")),
        Err(_) => Err(format!("line {line}: expected exactly one record")),
    }
}

impl Zone {
    /// Records what [`zone_digest`] of this zone is, as stored with its signatures (a
    /// load then need not format every record to match its journal).
    pub(super) fn set_known_digest(&mut self, digest: u64) {
        self.journal = JournalSlot::of(Journal {
            steps: VecDeque::new(),
            digest: Some(digest),
        });
    }

    /// Whether the digest of this zone is known without a pass over its records.
    pub(super) fn known_digest(&self) -> Option<u64> {
        self.journal.digest()
    }

    /// Gives this zone (just loaded, its digest known) the journal file `read` returns,
    /// read and parsed only when first needed, and checked then to lead to this version.
    pub(super) fn defer_journal(&mut self, read: JournalReader, limits: &JournalLimits) {
        let Some(digest) = self.journal.digest() else {
            return;
        };
        self.journal = JournalSlot {
            ready: std::sync::OnceLock::new(),
            pending: Some(Arc::new(PendingJournal {
                read,
                origin: self.origin.clone(),
                digest,
                limits: *limits,
            })),
        };
    }

    /// [`zone_digest`] of this zone: the journal's when it knows it.
    pub fn journal_digest(&self) -> u64 {
        self.journal.digest().unwrap_or_else(|| zone_digest(self))
    }

    /// The journal this version carries (a journal pending since start is read now).
    pub fn journal(&self) -> &Journal {
        self.journal.get()
    }

    /// Makes this zone (a new version, not yet served) the successor of `previous` (the
    /// version served until now): its journal is the previous one plus their difference,
    /// within `limits`. `now`: seconds since the epoch, recorded with the step.
    ///
    /// CPU work proportional to the zone (the difference): call it off the async runtime.
    pub fn follow(
        &mut self,
        previous: Option<&Zone>,
        limits: &JournalLimits,
        now: u64,
    ) -> Followed {
        self.follow_with(previous, limits, now, diff)
    }

    /// Like [`Zone::follow`] for a zone made by `previous.with_changes(changes, ..)`: only the
    /// rrsets the changes name are compared, so the cost is that of the change.
    pub fn follow_changes(
        &mut self,
        previous: &Zone,
        changes: &[super::edit::RrsetChange],
        limits: &JournalLimits,
        now: u64,
    ) -> Followed {
        let touched: Vec<(&Name, RecordType)> =
            changes.iter().map(|c| (&c.name, c.rtype)).collect();
        self.follow_with(Some(previous), limits, now, |old, new| {
            diff_touched(old, new, &touched)
        })
    }

    fn follow_with(
        &mut self,
        previous: Option<&Zone>,
        limits: &JournalLimits,
        now: u64,
        diff: impl FnOnce(&Zone, &Zone) -> (Vec<Record>, Vec<Record>),
    ) -> Followed {
        let Some(previous) = previous else {
            self.journal = JournalSlot::of(Journal {
                steps: VecDeque::new(),
                digest: Some(zone_digest(self)),
            });
            return Followed::New;
        };
        let (old, new) = (previous.serial(), self.serial());
        let old_digest = previous
            .journal
            .digest()
            .unwrap_or_else(|| zone_digest(previous));
        if old == new {
            let digest = zone_digest(self);
            if digest == old_digest {
                self.journal = JournalSlot::of(Journal {
                    steps: previous.journal().steps.clone(),
                    digest: Some(digest),
                });
                return Followed::Unchanged;
            }
            self.journal = JournalSlot::of(Journal {
                steps: VecDeque::new(),
                digest: Some(digest),
            });
            return Followed::Reset(format!("the zone changed but its serial stayed {new}"));
        }
        if !serial_gt(new, old) {
            self.journal = JournalSlot::of(Journal {
                steps: VecDeque::new(),
                digest: Some(zone_digest(self)),
            });
            return Followed::Reset(format!("the serial went back from {old} to {new}"));
        }
        let (removed, added) = diff(previous, self);
        // The digest follows from the difference alone: no pass over the whole zone.
        let digest = removed
            .iter()
            .chain(std::iter::once(previous.soa()))
            .fold(old_digest, |d, r| d.wrapping_sub(record_hash(r)));
        let digest = added
            .iter()
            .chain(std::iter::once(self.soa()))
            .fold(digest, |d, r| d.wrapping_add(record_hash(r)));
        let step = Step::new(
            previous.soa().clone(),
            self.soa().clone(),
            removed,
            added,
            now,
            digest,
        );
        let mut journal = Journal {
            steps: previous.journal().steps.clone(),
            digest: Some(digest),
        };
        journal.steps.push_back(Arc::new(step));
        journal.bound(limits, new);
        self.journal = JournalSlot::of(journal);
        Followed::Appended
    }

    /// Takes `journal` (read from this zone's journal file) if it leads to this version:
    /// steps past it (a crash after the journal's rename and before the zone file's) are
    /// dropped. Returns how many were dropped, or why the journal does not fit this zone.
    pub fn adopt_journal(
        &mut self,
        mut journal: Journal,
        limits: &JournalLimits,
    ) -> Result<usize, String> {
        // Known when the stored signatures said what it was (no pass over every record).
        let digest = self.journal.digest().unwrap_or_else(|| zone_digest(self));
        let soa = record_line(self.soa());
        let keep = journal
            .steps
            .iter()
            .rposition(|s| s.digest == digest && record_line(&s.to) == soa);
        let dropped = match keep {
            Some(k) => journal.steps.len() - (k + 1),
            None if journal.steps.is_empty() => 0,
            None => {
                return Err(format!(
                    "it does not lead to the zone file's version (serial {})",
                    self.serial()
                ));
            }
        };
        journal.steps.truncate(journal.steps.len() - dropped);
        journal.digest = Some(digest);
        journal.bound(limits, self.serial());
        self.journal = JournalSlot::of(journal);
        Ok(dropped)
    }

    /// The IXFR answer for a client at `client_serial`: the condensed difference from that
    /// version to this one (RFC 1995 §4), or `Full` when the journal does not reach back
    /// there or the serial is not older than ours (RFC 1982).
    pub fn ixfr(&self, client_serial: u32) -> IxfrPlan {
        let current = self.serial();
        if client_serial == current {
            return IxfrPlan::UpToDate;
        }
        if !serial_gt(current, client_serial) {
            return IxfrPlan::Full;
        }
        let steps = &self.journal().steps;
        let mut starts = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.from_serial() == client_serial);
        let (Some((first, _)), None) = (starts.next(), starts.next()) else {
            // Not in the journal, or there twice (ambiguous after a wrap-around).
            return IxfrPlan::Full;
        };
        let Some(last) = steps.back() else {
            return IxfrPlan::Full;
        };
        if record_line(&last.to) != record_line(&self.soa) {
            return IxfrPlan::Full;
        }
        // Condense: a record added then removed (or removed then added back) cancels out.
        let mut removed = Condensed::default();
        let mut added = Condensed::default();
        for step in steps.iter().skip(first) {
            for r in &step.removed {
                if !added.take(r) {
                    removed.put(r);
                }
            }
            for r in &step.added {
                if !removed.take(r) {
                    added.put(r);
                }
            }
        }
        let new_soa = self.soa.clone();
        let mut out = Vec::with_capacity(removed.len() + added.len() + 4);
        out.push(new_soa.clone());
        out.push(steps[first].from.clone());
        out.extend(removed.into_records());
        out.push(new_soa.clone());
        out.extend(added.into_records());
        out.push(new_soa);
        IxfrPlan::Incremental(out)
    }
}

/// A set of records in the order they were first put in.
#[derive(Default)]
struct Condensed<'a> {
    index: HashMap<Key<'a>, usize>,
    records: Vec<Option<&'a Record>>,
}

impl<'a> Condensed<'a> {
    fn put(&mut self, r: &'a Record) {
        if !self.index.contains_key(&key(r)) {
            self.index.insert(key(r), self.records.len());
            self.records.push(Some(r));
        }
    }

    /// Removes `r`; whether it was there.
    fn take(&mut self, r: &'a Record) -> bool {
        match self.index.remove(&key(r)) {
            Some(i) => {
                self.records[i] = None;
                true
            }
            None => false,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn into_records(self) -> impl Iterator<Item = Record> + 'a {
        self.records.into_iter().flatten().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn origin() -> Name {
        Name::from_ascii("example.test.").unwrap()
    }

    fn zone(serial: u32, body: &str) -> Zone {
        let text = format!(
            "$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\n{body}"
        );
        Zone::from_master_text(&origin(), &text).unwrap()
    }

    fn lines(records: impl IntoIterator<Item = Record>) -> BTreeSet<String> {
        records.into_iter().map(|r| record_line(&r)).collect()
    }

    fn zone_lines(z: &Zone) -> BTreeSet<String> {
        lines(z.view().records().cloned())
    }

    /// Applies an IXFR answer sequence to the record lines of the client's version.
    fn apply(client: &Zone, answer: &[Record]) -> BTreeSet<String> {
        let mut have = zone_lines(client);
        let n = answer.len();
        assert!(n >= 4, "{answer:?}");
        let new_soa = &answer[0];
        assert_eq!(record_line(&answer[n - 1]), record_line(new_soa));
        assert_eq!(record_line(&answer[1]), record_line(client.soa()));
        let split = 2 + answer[2..]
            .iter()
            .position(|r| r.record_type() == RecordType::SOA)
            .unwrap();
        for r in &answer[1..split] {
            assert!(
                have.remove(&record_line(r)),
                "removing what is not there: {r}"
            );
        }
        for r in &answer[split..n - 1] {
            assert!(have.insert(record_line(r)), "adding what is there: {r}");
        }
        have
    }

    fn chain(versions: &[Zone], limits: &JournalLimits) -> Vec<Zone> {
        let mut out: Vec<Zone> = Vec::new();
        for v in versions {
            let mut v = v.clone();
            v.follow(out.last(), limits, 1);
            out.push(v);
        }
        out
    }

    #[test]
    fn the_difference_of_two_zones_is_what_was_removed_and_added_soa_aside() {
        let a = zone(1, "www A 192.0.2.2\nmail A 192.0.2.3\n@ MX 10 mail\n");
        let b = zone(
            2,
            "www A 192.0.2.9\nmail A 192.0.2.3\n@ MX 10 mail\n@ TXT \"hi\"\n",
        );
        let (removed, added) = diff(&a, &b);
        assert_eq!(
            lines(removed),
            BTreeSet::from(["www.example.test. 300 IN A 192.0.2.2".to_string()])
        );
        assert_eq!(
            lines(added),
            BTreeSet::from([
                "www.example.test. 300 IN A 192.0.2.9".to_string(),
                "example.test. 300 IN TXT \"hi\"".to_string()
            ])
        );
    }

    #[test]
    fn a_ttl_change_removes_and_adds_the_record() {
        let a = zone(1, "www 300 A 192.0.2.2\n");
        let b = zone(2, "www 60 A 192.0.2.2\n");
        let (removed, added) = diff(&a, &b);
        assert_eq!(removed.len(), 1);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].ttl, 60);
    }

    #[test]
    fn a_record_added_then_removed_condenses_to_nothing() {
        let limits = JournalLimits::default();
        let v = chain(
            &[
                zone(1, "www A 192.0.2.2\n"),
                zone(2, "www A 192.0.2.2\ntmp A 192.0.2.7\n"),
                zone(3, "www A 192.0.2.2\n"),
                zone(4, "www A 192.0.2.5\n"),
            ],
            &limits,
        );
        let IxfrPlan::Incremental(answer) = v[3].ixfr(1) else {
            panic!("expected an incremental answer")
        };
        let text = lines(answer.iter().cloned());
        assert!(!text.iter().any(|l| l.contains("tmp")), "{text:?}");
        // new SOA, old SOA, one removed, new SOA, one added, new SOA.
        assert_eq!(answer.len(), 6, "{answer:?}");
        assert_eq!(apply(&v[0], &answer), zone_lines(&v[3]));
        // A record removed then put back condenses away too.
        let IxfrPlan::Incremental(answer) = v[2].ixfr(1) else {
            panic!("expected an incremental answer")
        };
        assert_eq!(answer.len(), 4, "{answer:?}");
    }

    #[test]
    fn every_earlier_serial_gets_a_difference_that_rebuilds_the_current_zone() {
        let limits = JournalLimits::default();
        let v = chain(
            &[
                zone(10, "a A 192.0.2.1\n"),
                zone(11, "a A 192.0.2.1\nb A 192.0.2.2\n"),
                zone(12, "b A 192.0.2.2\nc 60 TXT \"x\"\n"),
                zone(15, "b A 192.0.2.3\nc 120 TXT \"x\"\n"),
            ],
            &limits,
        );
        let last = v.last().unwrap();
        for old in &v[..3] {
            let IxfrPlan::Incremental(answer) = last.ixfr(old.serial()) else {
                panic!("no incremental answer from {}", old.serial())
            };
            assert_eq!(
                apply(old, &answer),
                zone_lines(last),
                "from {}",
                old.serial()
            );
        }
    }

    #[test]
    fn serials_wrap_around() {
        let limits = JournalLimits::default();
        let v = chain(
            &[
                zone(4_294_967_294, "a A 192.0.2.1\n"),
                zone(4_294_967_295, "a A 192.0.2.2\n"),
                zone(0, "a A 192.0.2.3\n"),
                zone(5, "a A 192.0.2.4\n"),
            ],
            &limits,
        );
        let last = v.last().unwrap();
        assert_eq!(last.journal().len(), 3);
        for old in &v[..3] {
            let IxfrPlan::Incremental(answer) = last.ixfr(old.serial()) else {
                panic!("no incremental answer from {}", old.serial())
            };
            assert_eq!(apply(old, &answer), zone_lines(last));
        }
        // 3 is "before" 5 but was never a version: not in the journal.
        assert!(matches!(last.ixfr(3), IxfrPlan::Full));
    }

    #[test]
    fn the_current_serial_is_up_to_date_and_others_get_a_full_transfer() {
        let limits = JournalLimits::default();
        let v = chain(&[zone(5, ""), zone(6, "a A 192.0.2.1\n")], &limits);
        assert!(matches!(v[1].ixfr(6), IxfrPlan::UpToDate));
        // From the future.
        assert!(matches!(v[1].ixfr(7), IxfrPlan::Full));
        assert!(matches!(v[1].ixfr(2_000_000_000), IxfrPlan::Full));
        // From before the oldest step.
        assert!(matches!(v[1].ixfr(4), IxfrPlan::Full));
        assert!(matches!(v[1].ixfr(5), IxfrPlan::Incremental(_)));
    }

    #[test]
    fn the_bounds_drop_the_oldest_steps() {
        let versions: Vec<Zone> = (1..=6)
            .map(|i| zone(i, &format!("a A 192.0.2.{i}\n")))
            .collect();
        let v = chain(
            &versions,
            &JournalLimits {
                max_changes: 3,
                max_bytes: 1 << 20,
            },
        );
        let last = v.last().unwrap();
        assert_eq!(last.journal().len(), 3);
        assert_eq!(last.journal().oldest_serial(), Some(3));
        assert!(matches!(last.ixfr(2), IxfrPlan::Full));
        assert!(matches!(last.ixfr(3), IxfrPlan::Incremental(_)));

        let one_step = v[1].journal().file_bytes();
        let v = chain(
            &versions,
            &JournalLimits {
                max_changes: 100,
                max_bytes: one_step * 2,
            },
        );
        let last = v.last().unwrap();
        assert!(last.journal().len() < 5, "{}", last.journal().len());
        assert!(last.journal().file_bytes() <= one_step * 2 + 200);
        // A single step over the byte bound leaves nothing.
        let v = chain(
            &versions[..2],
            &JournalLimits {
                max_changes: 100,
                max_bytes: 10,
            },
        );
        assert!(v[1].journal().is_empty());
        assert!(matches!(v[1].ixfr(1), IxfrPlan::Full));
    }

    #[test]
    fn a_serial_that_goes_back_or_stays_with_other_records_resets_the_journal() {
        let limits = JournalLimits::default();
        let v = chain(&[zone(5, ""), zone(6, "a A 192.0.2.1\n")], &limits);
        let mut back = zone(4, "a A 192.0.2.9\n");
        assert!(matches!(
            back.follow(Some(&v[1]), &limits, 1),
            Followed::Reset(_)
        ));
        assert!(back.journal().is_empty());
        let mut same = zone(6, "a A 192.0.2.9\n");
        assert!(matches!(
            same.follow(Some(&v[1]), &limits, 1),
            Followed::Reset(_)
        ));
        let mut unchanged = zone(6, "a A 192.0.2.1\n");
        assert_eq!(
            unchanged.follow(Some(&v[1]), &limits, 1),
            Followed::Unchanged
        );
        assert_eq!(unchanged.journal().len(), 1);
    }

    #[test]
    fn the_incremental_digest_equals_the_digest_of_the_whole_zone() {
        let limits = JournalLimits::default();
        let v = chain(
            &[
                zone(1, "a A 192.0.2.1\n"),
                zone(2, "a A 192.0.2.2\nb TXT \"q\"\n"),
                zone(3, "b TXT \"q\" \"r\"\n"),
            ],
            &limits,
        );
        for z in &v {
            assert_eq!(z.journal().digest, Some(zone_digest(z)));
        }
    }

    #[test]
    fn the_journal_text_reads_back_identically() {
        let limits = JournalLimits::default();
        let v = chain(
            &[
                zone(1, "a A 192.0.2.1\n"),
                zone(2, "a A 192.0.2.2\nb TXT \"q \\\"x\\\" \\255\"\n"),
                zone(3, "b TXT \"q\"\n_25._tcp.mx TLSA 3 1 1 0011aabb\n"),
            ],
            &limits,
        );
        let last = v.last().unwrap();
        let text = last.journal().to_text(&origin()).unwrap();
        let read = Journal::parse(&text, &origin()).unwrap();
        assert_eq!(read.to_text(&origin()).unwrap(), text);
        let mut again = last.clone();
        assert_eq!(again.adopt_journal(read, &limits), Ok(0));
        assert_eq!(again.journal().len(), 2);
    }

    #[test]
    fn a_damaged_journal_is_refused() {
        let limits = JournalLimits::default();
        let v = chain(&[zone(1, ""), zone(2, "a A 192.0.2.2\n")], &limits);
        let text = v[1].journal().to_text(&origin()).unwrap();
        let garbled = text.replace("192.0.2.2", "192.0.2.3");
        assert!(
            Journal::parse(&garbled, &origin())
                .unwrap_err()
                .contains("checksum")
        );
        let cut = &text[..text.len() - 30];
        assert!(Journal::parse(cut, &origin()).is_err());
        assert!(Journal::parse("", &origin()).is_err());
        let other = Name::from_ascii("other.test.").unwrap();
        assert!(Journal::parse(&text, &other).is_err());
    }

    #[test]
    fn a_journal_one_step_ahead_of_the_zone_file_loses_that_step() {
        let limits = JournalLimits::default();
        let v = chain(
            &[
                zone(1, ""),
                zone(2, "a A 192.0.2.2\n"),
                zone(3, "a A 192.0.2.3\n"),
            ],
            &limits,
        );
        let text = v[2].journal().to_text(&origin()).unwrap();
        let read = Journal::parse(&text, &origin()).unwrap();
        let mut on_disk = zone(2, "a A 192.0.2.2\n");
        assert_eq!(on_disk.adopt_journal(read, &limits), Ok(1));
        assert!(matches!(on_disk.ixfr(1), IxfrPlan::Incremental(_)));
        // A zone file edited by hand without the journal: no step leads to it.
        let read = Journal::parse(&text, &origin()).unwrap();
        let mut edited = zone(3, "a A 192.0.2.99\n");
        assert!(edited.adopt_journal(read, &limits).is_err());
    }
}
