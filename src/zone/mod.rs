//! Zones: the in-memory model that the DNS path answers from, and how it is built and found.
//!
//! This module owns the rules a zone must satisfy (one SOA at the apex, NS at the apex, no
//! CNAME beside other data, nothing outside the zone) and the authoritative lookup algorithm
//! of RFC 1034 §4.3.2 (delegations, CNAME, wildcards of RFC 4592, empty non-terminals). A
//! built [`Zone`] is immutable: a change builds a new one and the snapshot is swapped. It must
//! not do I/O: reading files is [`set`]'s job, the wire format is `dns`'s.

pub mod catalog;
pub mod compiled;
pub mod edit;
pub mod journal;
pub mod limits;
pub mod lookup;
pub mod master;
pub mod serial;
pub mod set;
pub mod signed;
pub mod writer;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use hickory_proto::rr::{Name, RData, Record, RecordType};

pub use lookup::Lookup;
pub use master::{MasterFileError, SourcedRecord};
pub use set::{ZoneSet, ZoneStatus};

/// All records of one type at one name. Records share one TTL (RFC 2181 §5.2).
#[derive(Debug, Clone)]
pub struct RrSet {
    pub rtype: RecordType,
    pub records: Vec<Record>,
    /// The least size of an answer carrying this rrset ([`limits::answer_size`]).
    pub answer_size: usize,
}

/// One name of the zone. A node with no rrsets is an empty non-terminal: it exists (NODATA,
/// not NXDOMAIN) because a name below it has records.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub rrsets: Vec<RrSet>,
    /// NS records at a name below the apex: everything at and below is delegated.
    pub delegation: bool,
}

impl Node {
    pub fn rrset(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }
}

/// An authoritative zone, ready to answer from.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    soa: Record,
    /// The SOA as sent with negative answers: TTL = min(TTL, MINIMUM) (RFC 2308 §3).
    negative_soa: Record,
    /// Every name of the zone, empty non-terminals included. `Name` hashes and compares
    /// case-insensitively, so the query name can be used as the key as it arrives.
    nodes: HashMap<Name, Node>,
    record_count: usize,
    has_delegations: bool,
    has_wildcards: bool,
    /// The zone carries DNSSEC records (a DNSKEY rrset at the apex): answers with DO=1 take
    /// the general path, which adds signatures and denial proofs ([`signed`]).
    signed: bool,
    /// The owners of the NSEC records, in canonical order (RFC 4034 §6.1), to find the one
    /// covering a name by binary search. Empty when the zone is not signed.
    nsec_owners: Vec<Name>,
    /// The NSEC3 chain (RFC 5155) with its signatures, sorted by hash. It is kept apart from
    /// the nodes: its owners are hashes, not names of the zone, and a query for one must
    /// find nothing there (RFC 5155 §7.2.8). `None` unless the zone is signed with NSEC3.
    nsec3: Option<Box<signed::Nsec3Chain>>,
    /// When the first of its signatures expires (unix seconds), noted while building so
    /// that planning the re-signing of 10,000 zones walks no signature.
    earliest_expiry: Option<u64>,
    /// The differences that led to this version ([`journal`]); empty until the writer or
    /// the loader attaches one.
    journal: journal::JournalSlot,
    /// The precompiled wire answers, built once the zone has been asked
    /// [`compiled::COMPILE_AFTER`] times rather than at load: a zone nobody (or only a
    /// monitor) asks for costs no time nor memory for them — the general path answers it —,
    /// and 100,000 zones load as fast as their files are read. After that, reading it is
    /// one atomic load.
    compiled: CompiledCell,
}

/// The cell holding a version's precompiled answers, and how often they were asked for
/// before being compiled. A clone starts empty: zones are cloned to be changed (a catalog
/// gaining a member, a new serial), and answers compiled from the records before the change
/// would be served for the records after it.
#[derive(Debug, Default)]
struct CompiledCell(
    OnceLock<Arc<compiled::Compiled>>,
    std::sync::atomic::AtomicU32,
);

impl Clone for CompiledCell {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Why records do not make a valid zone; `line` is 0 when the problem is the zone as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if *line > 0 { format!("line {line}: ") } else { String::new() })]
pub struct ZoneError {
    pub line: usize,
    pub message: String,
}

impl From<MasterFileError> for ZoneError {
    fn from(e: MasterFileError) -> Self {
        Self {
            line: e.line,
            message: e.message,
        }
    }
}

/// The number of labels of a name, a leading `*` included (hickory's `num_labels` leaves
/// it out, as RRSIG label counts do, which is not what walking a zone needs).
pub fn label_count(name: &Name) -> usize {
    name.iter().count()
}

/// A name as the zone file writes it, formatted only when shown.
struct Shown<'n>(&'n Name);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&writer::name_text(self.0))
    }
}

/// " (line N)" naming the other record of a conflict, when it came from a file.
fn from_line(line: usize) -> String {
    if line > 0 {
        format!(" (line {line})")
    } else {
        String::new()
    }
}

impl Zone {
    /// Parses master-file text into a zone.
    pub fn from_master_text(origin: &Name, text: &str) -> Result<Self, ZoneError> {
        let records = master::read(text, origin)?;
        Self::build(origin.clone(), records)
    }

    /// Checks the records and builds the zone. Duplicate records are merged (RFC 2181 §5);
    /// the TTLs of one rrset are set to the first one's.
    pub fn build(mut origin: Name, records: Vec<SourcedRecord>) -> Result<Self, ZoneError> {
        origin.set_fqdn(true);
        // Names in messages are shown in their wire form, as the zone file has them.
        let shown_origin = writer::name_text(&origin);
        let mut nodes: HashMap<Name, Node> = HashMap::new();
        let mut soa: Option<(Record, usize)> = None;
        let mut record_count = 0;
        let mut cname_lines: HashMap<Name, usize> = HashMap::new();
        let mut other_lines: HashMap<Name, usize> = HashMap::new();
        let mut nsec3_records: Vec<SourcedRecord> = Vec::new();
        let mut earliest_expiry: Option<u64> = None;

        for SourcedRecord { record, line } in records {
            let fail = |message: String| Err(ZoneError { line, message });
            if let RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(sig)) =
                &record.data
            {
                let e = u64::from(sig.input().sig_expiration.get());
                earliest_expiry = Some(earliest_expiry.map_or(e, |x| x.min(e)));
            }
            // Shown in an error only: not formatted for every record of every zone.
            let owner = Shown(&record.name);
            if !origin.zone_of(&record.name) {
                return fail(format!("{owner} is outside the zone {shown_origin}"));
            }
            let rtype = record.record_type();
            if rtype == RecordType::NSEC3 || signed::covered(&record) == Some(RecordType::NSEC3) {
                record_count += 1;
                nsec3_records.push(SourcedRecord { record, line });
                continue;
            }
            match rtype {
                RecordType::SOA => {
                    if record.name != origin {
                        return fail(format!(
                            "SOA at {owner} is not at the zone apex {shown_origin}"
                        ));
                    }
                    if let Some((_, first)) = &soa {
                        return fail(format!("a second SOA record{}", from_line(*first)));
                    }
                    soa = Some((record.clone(), line));
                }
                // RRSIG and NSEC live beside a CNAME (RFC 4035 §2.5).
                RecordType::RRSIG | RecordType::NSEC => {}
                RecordType::CNAME => {
                    if let Some(first) = cname_lines.get(&record.name) {
                        return fail(format!("a second CNAME at {owner}{}", from_line(*first)));
                    }
                    if let Some(other) = other_lines.get(&record.name) {
                        return fail(format!(
                            "CNAME at {owner} beside other data{}",
                            from_line(*other)
                        ));
                    }
                    cname_lines.insert(record.name.clone(), line);
                }
                _ => {
                    if let Some(c) = cname_lines.get(&record.name) {
                        return fail(format!(
                            "{rtype} at {owner} beside a CNAME{}",
                            from_line(*c)
                        ));
                    }
                    other_lines.entry(record.name.clone()).or_insert(line);
                }
            }
            // Data no answer could carry is refused here, naming the record, rather than
            // served as an empty truncated answer for ever.
            let rdata_len = limits::rdata_len(&record.data);
            if let Some(problem) = limits::rdata_problem(rdata_len) {
                return fail(format!("{rtype} at {owner}: {problem}"));
            }
            let node = nodes.entry(record.name.clone()).or_default();
            match node.rrsets.iter_mut().find(|s| s.rtype == rtype) {
                Some(set) => {
                    if set.records.iter().any(|r| r.data == record.data) {
                        continue;
                    }
                    set.answer_size = set
                        .answer_size
                        .saturating_add(limits::record_size(&record.name, rdata_len));
                    if let Some(problem) =
                        limits::answer_problem(set.answer_size, set.records.len() + 1)
                    {
                        return fail(format!("{rtype} at {owner}: {problem}"));
                    }
                    let mut record = record;
                    // RRSIGs keep their own TTLs: each is its covered rrset's (RFC 4035 §2.2).
                    if rtype != RecordType::RRSIG {
                        record.ttl = set.records[0].ttl;
                    }
                    set.records.push(record);
                }
                None => {
                    let answer_size = limits::answer_size(&record.name, [rdata_len]);
                    if let Some(problem) = limits::answer_problem(answer_size, 1) {
                        return fail(format!("{rtype} at {owner}: {problem}"));
                    }
                    node.rrsets.push(RrSet {
                        rtype,
                        records: vec![record],
                        answer_size,
                    })
                }
            }
            record_count += 1;
        }

        let Some((soa, _)) = soa else {
            return Err(ZoneError {
                line: 0,
                message: format!("no SOA record at the zone apex {shown_origin}"),
            });
        };
        let apex_has_ns = nodes
            .get(&origin)
            .is_some_and(|n| n.rrset(RecordType::NS).is_some());
        if !apex_has_ns {
            return Err(ZoneError {
                line: 0,
                message: format!("no NS record at the zone apex {shown_origin}"),
            });
        }

        // Empty non-terminals: every name between a record's owner and the apex exists.
        let apex_labels = label_count(&origin);
        let owners: Vec<Name> = nodes.keys().cloned().collect();
        for owner in owners {
            for n in (apex_labels + 1)..label_count(&owner) {
                nodes.entry(owner.trim_to(n)).or_default();
            }
        }
        let mut has_delegations = false;
        let mut has_wildcards = false;
        for (name, node) in nodes.iter_mut() {
            if *name != origin && node.rrset(RecordType::NS).is_some() {
                node.delegation = true;
                has_delegations = true;
            }
            has_wildcards |= name.is_wildcard();
            // A stable order: SOA and NS first, which also makes ANY answers predictable.
            node.rrsets.sort_by_key(|s| u16::from(s.rtype));
        }

        // Capacities left over from growing are a large part of a small zone's memory
        // (100,000 zones are held at once).
        nodes.shrink_to_fit();
        for node in nodes.values_mut() {
            node.rrsets.shrink_to_fit();
            for set in &mut node.rrsets {
                set.records.shrink_to_fit();
            }
        }
        let signed = nodes
            .get(&origin)
            .is_some_and(|n| n.rrset(RecordType::DNSKEY).is_some());
        let mut nsec_owners: Vec<Name> = if signed {
            nodes
                .iter()
                .filter(|(_, n)| n.rrset(RecordType::NSEC).is_some())
                .map(|(name, _)| name.clone())
                .collect()
        } else {
            Vec::new()
        };
        nsec_owners.sort();
        let nsec3 = if nsec3_records.is_empty() {
            None
        } else {
            Some(Box::new(signed::Nsec3Chain::build(&origin, nsec3_records)?))
        };
        let mut negative_soa = soa.clone();
        if let RData::SOA(s) = &soa.data {
            negative_soa.ttl = soa.ttl.min(s.minimum);
        }
        Ok(Self {
            origin,
            soa,
            negative_soa,
            nodes,
            record_count,
            has_delegations,
            has_wildcards,
            signed,
            nsec_owners,
            nsec3,
            earliest_expiry,
            journal: Default::default(),
            compiled: CompiledCell::default(),
        })
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// Whether the zone carries DNSSEC records (see [`signed`]).
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// When its earliest signature expires (unix seconds); `None` without signatures.
    pub fn earliest_expiry(&self) -> Option<u64> {
        self.earliest_expiry
    }

    /// Every name of the zone and its node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = (&Name, &Node)> {
        self.nodes.iter()
    }

    pub fn soa(&self) -> &Record {
        &self.soa
    }

    pub fn serial(&self) -> u32 {
        match &self.soa.data {
            RData::SOA(soa) => soa.serial,
            _ => 0,
        }
    }

    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// The precompiled answers of this version, compiled on the first call.
    pub fn compiled(&self) -> &compiled::Compiled {
        self.compiled
            .0
            .get_or_init(|| Arc::new(compiled::Compiled::build(self)))
    }

    /// The precompiled answers once this version has been asked for them
    /// [`compiled::COMPILE_AFTER`] times (compiled then); `None` before: the caller answers
    /// with the general path. The count is one atomic add, and only while the zone is cold.
    pub fn compiled_when_hot(&self) -> Option<&compiled::Compiled> {
        if let Some(c) = self.compiled.0.get() {
            return Some(c);
        }
        let asked = self
            .compiled
            .1
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (asked + 1 >= compiled::COMPILE_AFTER).then(|| self.compiled())
    }

    /// The number of labels of the origin.
    pub fn origin_labels(&self) -> usize {
        label_count(&self.origin)
    }

    pub fn node(&self, name: &Name) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Whether `other` holds exactly the same records, the SOA serial aside: a change that
    /// leaves the zone like this changes nothing (no write, no serial bump).
    pub fn same_data_as(&self, other: &Zone) -> bool {
        let without_serial = |r: &Record| match &r.data {
            RData::SOA(soa) => {
                let mut soa = soa.clone();
                soa.serial = 0;
                (r.ttl, RData::SOA(soa))
            }
            data => (r.ttl, data.clone()),
        };
        self.record_count == other.record_count
            && self.nodes.len() == other.nodes.len()
            && self.nodes.iter().all(|(name, node)| {
                other.nodes.get(name).is_some_and(|o| {
                    node.rrsets.len() == o.rrsets.len()
                        && node.rrsets.iter().all(|set| {
                            o.rrset(set.rtype).is_some_and(|os| {
                                set.records.len() == os.records.len()
                                    && set.records.iter().all(|r| {
                                        let mine = without_serial(r);
                                        os.records.iter().any(|x| without_serial(x) == mine)
                                    })
                            })
                        })
                })
            })
    }

    /// Every record that is not generated for DNSSEC ([`signed::is_generated`]): what the
    /// zone file holds.
    pub fn user_records(&self) -> impl Iterator<Item = &Record> {
        self.nodes.values().flat_map(|n| {
            n.rrsets
                .iter()
                .filter(|s| !signed::is_generated(s.rtype))
                .flat_map(|s| s.records.iter())
        })
    }

    /// Every record, in no particular order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.nodes
            .values()
            .flat_map(|n| n.rrsets.iter().flat_map(|s| s.records.iter()))
            .chain(self.nsec3.iter().flat_map(|c| c.records()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<Zone, ZoneError> {
        Zone::from_master_text(&Name::from_ascii("example.test.").unwrap(), text)
    }

    const HEAD: &str =
        "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\n";

    #[test]
    fn a_minimal_zone_builds() {
        let z = build(HEAD).unwrap();
        assert_eq!(z.serial(), 1);
        assert_eq!(z.record_count(), 3);
    }

    #[test]
    fn cname_beside_other_data_is_refused_with_both_lines() {
        let e = build(&format!("{HEAD}www A 192.0.2.2\nwww CNAME ns1\n")).unwrap_err();
        assert_eq!(e.line, 6);
        assert!(e.message.contains("line 5"), "{e}");
    }

    #[test]
    fn record_outside_the_zone_is_refused() {
        let e = build(&format!("{HEAD}www.other.test. A 192.0.2.2\n")).unwrap_err();
        assert_eq!(e.line, 5);
    }

    #[test]
    fn missing_soa_is_refused() {
        let e = build("$TTL 300\n@ NS ns1\n").unwrap_err();
        assert!(e.message.contains("SOA"), "{e}");
    }

    #[test]
    fn empty_non_terminals_exist() {
        let z = build(&format!("{HEAD}a.b.c A 192.0.2.9\n")).unwrap();
        assert!(
            z.node(&Name::from_ascii("c.example.test.").unwrap())
                .is_some()
        );
        assert!(
            z.node(&Name::from_ascii("B.C.example.test.").unwrap())
                .is_some()
        );
    }
}
