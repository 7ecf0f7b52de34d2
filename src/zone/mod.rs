//! Zones: the in-memory model that the DNS path answers from, and how it is built and found.
//!
//! This module owns the rules a zone must satisfy (one SOA at the apex, NS at the apex, no
//! CNAME beside other data, nothing outside the zone) and the authoritative lookup algorithm
//! of RFC 1034 §4.3.2 (delegations, CNAME, wildcards of RFC 4592, empty non-terminals). A
//! built [`Zone`] is immutable: a change builds a new one and the snapshot is swapped. It must
//! not do I/O: reading files is [`set`]'s job, the wire format is `dns`'s.

mod arena;
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

/// An authoritative zone, ready to answer from: its records in compact wire form
/// ([`arena`]), the few facts every query or status needs (origin, SOA, serial, counts), its
/// journal and its answers once compiled. Everything that walks names and records goes
/// through a [`View`] ([`Zone::view`]), built from the arena on demand and kept only while
/// the zone is hot: 100,000 zones nobody asks cost their records' bytes, not hickory's.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    soa: Record,
    /// Every record, owner names once per node, RDATA in uncompressed wire form; the NSEC3
    /// chain from `nsec3_at` on ([`arena`]).
    arena: Box<[u8]>,
    nsec3_at: u32,
    record_count: u32,
    /// The zone carries DNSSEC records (a DNSKEY rrset at the apex): answers with DO=1 take
    /// the general path, which adds signatures and denial proofs ([`signed`]).
    signed: bool,
    /// Its signatures' earliest expiry and CDS delete, noted when a stored zone's arena was
    /// checked, else found on first use (the arena never changes).
    signature_facts: OnceLock<arena::SignatureFacts>,
    /// The differences that led to this version ([`journal`]); empty until the writer or
    /// the loader attaches one.
    journal: journal::JournalSlot,
    /// The precompiled wire answers, built once the zone has been asked
    /// [`compiled::COMPILE_AFTER`] times rather than at load: a zone nobody (or only a
    /// monitor) asks for costs no time nor memory for them — the general path answers it —,
    /// and 100,000 zones load as fast as their files are read. After that, reading it is
    /// one atomic load.
    compiled: CompiledCell,
    /// The view of the records, kept once it was asked for [`VIEW_KEPT_AFTER`] times;
    /// before that each caller gets its own, dropped with it. Nothing on the load path asks
    /// for one.
    view: ViewCell,
}

/// A zone's view is kept from its this-many-th use on. A loaded zone asked once (a monitor,
/// the benchmark's check) keeps none: it costs its arena. Decoding a view costs some 40 µs,
/// so a zone asked again keeps it rather than decode it for each of the queries the general
/// path answers before the compiled answers take over ([`compiled::COMPILE_AFTER`]): with
/// 10,000 zones asked in turn, decoding for each of those 16 queries halved the q/s. A
/// zone asked now and then ends up keeping it either way, as before the arena.
pub const VIEW_KEPT_AFTER: u32 = 2;

/// The hickory form of a zone's records, built from its arena: the map of nodes (empty
/// non-terminals included), the NSEC owners and the NSEC3 chain. Immutable, and never kept
/// for a cold zone ([`Zone::view`]).
#[derive(Debug, Clone)]
pub struct View {
    origin: Name,
    /// The SOA as sent with negative answers: TTL = min(TTL, MINIMUM) (RFC 2308 §3).
    negative_soa: Record,
    /// Every name of the zone, empty non-terminals included. `Name` hashes and compares
    /// case-insensitively, so the query name can be used as the key as it arrives.
    nodes: HashMap<Name, Node>,
    has_delegations: bool,
    has_wildcards: bool,
    signed: bool,
    /// The owners of the NSEC records, in canonical order (RFC 4034 §6.1), to find the one
    /// covering a name by binary search. Empty when the zone is not signed.
    nsec_owners: Vec<Name>,
    /// The NSEC3 chain (RFC 5155) with its signatures, sorted by hash. It is kept apart from
    /// the nodes: its owners are hashes, not names of the zone, and a query for one must
    /// find nothing there (RFC 5155 §7.2.8). `None` unless the zone is signed with NSEC3.
    nsec3: Option<Box<signed::Nsec3Chain>>,
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

/// The cell keeping a hot version's [`View`], and how often one was asked for. A clone
/// starts empty, as [`CompiledCell`]'s does: a clone is made to be changed.
#[derive(Debug, Default)]
struct ViewCell(OnceLock<Arc<View>>, std::sync::atomic::AtomicU32);

impl Clone for ViewCell {
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
    pub fn build(origin: Name, records: Vec<SourcedRecord>) -> Result<Self, ZoneError> {
        arena::build(origin, records, &[])
    }

    /// Like [`Zone::build`], plus DNSSEC records mailzone generated (a signed zone's
    /// stored signatures, read back at a restart) given as raw RFC 1035 wire RRs,
    /// concatenated: owner (uncompressed), type, class (IN), TTL, RDLENGTH, RDATA. They are
    /// checked cheaply (every length and name walked, owners inside the zone, generated
    /// types only, class IN) and copied into the zone's arena as they are, without building
    /// a hickory `Record` for each: a restart of a signed zone does not decode its
    /// signatures. A damaged RDATA that passes the walk is skipped when a [`View`] decodes
    /// it, never served half-read.
    pub fn build_with_generated_wire(
        origin: Name,
        records: Vec<SourcedRecord>,
        generated: &[u8],
    ) -> Result<Self, ZoneError> {
        arena::build(origin, records, generated)
    }

    /// A zone holding exactly the records of `view` (a changed copy of another version's
    /// view), with `soa` and `record_count` as the caller keeps them. The view is kept, as
    /// for a hot zone: only a zone changed often (a catalog) is built this way.
    fn from_view(view: View, soa: Record, record_count: usize) -> Zone {
        let (arena, nsec3_at) = arena::encode_view(&view);
        let zone = Zone {
            origin: view.origin.clone(),
            soa,
            arena,
            nsec3_at,
            record_count: u32::try_from(record_count).unwrap_or(u32::MAX),
            signed: view.signed,
            signature_facts: OnceLock::new(),
            journal: Default::default(),
            compiled: CompiledCell::default(),
            view: ViewCell::default(),
        };
        let _ = zone.view.0.set(Arc::new(view));
        zone
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// Whether the zone carries DNSSEC records (see [`signed`]).
    pub fn is_signed(&self) -> bool {
        self.signed
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
        self.record_count as usize
    }

    /// Whether the zone has an NSEC3 chain (without building a [`View`]).
    pub fn has_nsec3(&self) -> bool {
        (self.nsec3_at as usize) < self.arena.len()
    }

    /// Whether any record of the zone has type `rtype`: a walk over the arena's record
    /// headers, nothing decoded nor allocated.
    pub fn holds_type(&self, rtype: RecordType) -> bool {
        arena::holds_type(&self.arena, u16::from(rtype))
    }

    /// When its earliest signature expires (unix seconds); `None` without signatures. Read
    /// from the arena in place, no record decoded.
    pub fn earliest_expiry(&self) -> Option<u64> {
        self.signature_facts().earliest_expiry
    }

    fn signature_facts(&self) -> arena::SignatureFacts {
        *self
            .signature_facts
            .get_or_init(|| arena::signature_facts(&self.arena))
    }

    /// Whether the zone publishes the CDS delete record (`0 0 0 00`, RFC 8078 §4: algorithm
    /// 0), seen in the arena without decoding it (asked of every signed zone at start).
    pub fn publishes_cds_delete(&self) -> bool {
        self.signature_facts().cds_delete
    }

    /// The bytes of the compact records (for memory accounting).
    pub fn arena_bytes(&self) -> usize {
        self.arena.len()
    }

    /// The names and records of this version. Once asked for [`VIEW_KEPT_AFTER`] times it
    /// is kept and shared; before, it is built for this caller and freed when the caller
    /// drops it, so that loading and a first query leave nothing behind.
    pub fn view(&self) -> Arc<View> {
        if let Some(v) = self.view.0.get() {
            return v.clone();
        }
        let asked = self
            .view
            .1
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let view = Arc::new(arena::decode(self));
        if asked + 1 >= VIEW_KEPT_AFTER {
            return self.view.0.get_or_init(|| view).clone();
        }
        view
    }

    /// Whether this version keeps its view (it is hot, or was built from one).
    pub fn keeps_view(&self) -> bool {
        self.view.0.get().is_some()
    }

    /// Whether this version's answers are compiled.
    pub fn is_compiled(&self) -> bool {
        self.compiled.0.get().is_some()
    }

    /// The precompiled answers of this version, compiled on the first call.
    pub fn compiled(&self) -> &compiled::Compiled {
        self.compiled.0.get_or_init(|| {
            let view = match self.view.0.get() {
                Some(v) => v.clone(),
                None => Arc::new(arena::decode(self)),
            };
            Arc::new(compiled::Compiled::build(&view))
        })
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

    /// Whether `other` holds exactly the same records, the SOA serial aside: a change that
    /// leaves the zone like this changes nothing (no write, no serial bump).
    pub fn same_data_as(&self, other: &Zone) -> bool {
        self.record_count == other.record_count && self.view().same_data_as(&other.view())
    }
}

impl View {
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// Whether the zone carries DNSSEC records (see [`signed`]).
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// Every name of the zone and its node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = (&Name, &Node)> {
        self.nodes.iter()
    }

    pub fn node(&self, name: &Name) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// The SOA as negative answers carry it (TTL = min(TTL, MINIMUM)).
    pub fn negative_soa(&self) -> &Record {
        &self.negative_soa
    }

    /// Whether `other` holds exactly the same records, the SOA serial aside.
    pub fn same_data_as(&self, other: &View) -> bool {
        let without_serial = |r: &Record| match &r.data {
            RData::SOA(soa) => {
                let mut soa = soa.clone();
                soa.serial = 0;
                (r.ttl, RData::SOA(soa))
            }
            data => (r.ttl, data.clone()),
        };
        let chain = |v: &View| v.nsec3.as_ref().map_or(0, |c| c.records().count());
        chain(self) == chain(other)
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
            z.view()
                .node(&Name::from_ascii("c.example.test.").unwrap())
                .is_some()
        );
        assert!(
            z.view()
                .node(&Name::from_ascii("B.C.example.test.").unwrap())
                .is_some()
        );
    }
}
