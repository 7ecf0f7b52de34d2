//! Precompiled wire answers: every answer a zone can give, encoded once per zone version.
//!
//! This module owns turning an immutable zone (its [`View`]) into ready-made response sections (answer,
//! authority, additional, with their counts, rcode and AA bit) keyed by the lower-cased wire
//! form of each owner name and the query type, plus the negative answers (NXDOMAIN with the
//! SOA, referrals for names below a delegation). Each entry is produced by the zone's own
//! [`View::lookup`] and hickory's encoder, with the question at offset 12, so its content is by
//! construction what the general answer path sends. Lookups here take no lock and allocate
//! nothing. It must not read packets nor decide protocol rules (EDNS, TC, opcodes): the DNS
//! fast path (`dns::fast`) does, and falls back to the general path for anything not here.
//!
//! Compression pointers: an entry is encoded against a question whose name is the entry's
//! *base* name (the owner itself, or for a name below it, the apex or the closest node). A
//! query for a name below the base has a longer question; every pointer then moves by the
//! length difference, so the positions of the pointers are kept with each entry.
//!
//! DNSSEC (later): answers with DO=1 will need RRSIGs; they will be a second set of entries in
//! [`NodeAnswers`] (same keys), chosen by the fast path on the DO bit. Until zones are signed the
//! DO=0 and DO=1 answers are the same bytes.

use std::collections::{HashMap, HashSet};

use hickory_proto::op::{MessageType, Metadata, OpCode, Query, ResponseCode, emit_message_parts};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;

use super::View;
use super::lookup::{Lookup, Outcome};

/// A zone's answers are compiled at its this-many-th fast-path query: the few queries of a
/// cold zone (a monitor's SOA check) go to the general path, and its memory stays that of
/// its records.
pub const COMPILE_AFTER: u32 = 16;

/// The query type used to compile the answer to "a type this zone has nowhere": private use
/// (RFC 6895), and checked to be absent from the zone.
const FIRST_ABSENT_TYPE: u16 = 65280;

/// A query name in wire form, lower-cased, with the offset of each label: built on the stack
/// from the datagram, so that finding a zone and a node allocates nothing.
pub struct WireName {
    bytes: [u8; 255],
    len: u8,
    starts: [u8; 128],
    labels: u8,
    /// Whether the name as received had an upper-case letter (0x20 randomisation).
    pub mixed_case: bool,
}

impl WireName {
    /// Reads an uncompressed name at the start of `wire`; returns it and its length on the
    /// wire. `None` for a compressed, malformed or over-long name.
    pub fn read(wire: &[u8]) -> Option<(WireName, usize)> {
        let mut name = WireName {
            bytes: [0; 255],
            len: 0,
            starts: [0; 128],
            labels: 0,
            mixed_case: false,
        };
        let mut at = 0usize;
        loop {
            let l = usize::from(*wire.get(at)?);
            if l == 0 {
                *name.bytes.get_mut(at)? = 0;
                name.len = u8::try_from(at + 1).ok()?;
                return Some((name, at + 1));
            }
            if l > 63 || at + 1 + l >= 255 {
                return None;
            }
            *name.starts.get_mut(usize::from(name.labels))? = at as u8;
            name.labels += 1;
            name.bytes[at] = l as u8;
            let label = wire.get(at + 1..at + 1 + l)?;
            for (d, s) in name.bytes[at + 1..at + 1 + l].iter_mut().zip(label) {
                name.mixed_case |= s.is_ascii_uppercase();
                *d = s.to_ascii_lowercase();
            }
            at += 1 + l;
        }
    }

    /// The whole name, lower case, with its final root label.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The number of labels, the root not counted.
    pub fn labels(&self) -> usize {
        usize::from(self.labels)
    }

    /// The name without its first `skip` labels (`skip == labels()` gives the root).
    pub fn suffix(&self, skip: usize) -> &[u8] {
        let start = if skip >= self.labels() {
            usize::from(self.len) - 1
        } else {
            usize::from(self.starts[skip])
        };
        &self.bytes[start..usize::from(self.len)]
    }
}

/// The lower-cased wire form of `name` (for keys).
pub fn wire_key(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

/// One precompiled response, after the question: sections and what the header says.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    start: u32,
    len: u32,
    pointers_start: u32,
    pointers_len: u32,
    /// The wire length of the question name it was encoded against.
    pub base_len: u8,
    /// The rcode (4 bits: NOERROR or NXDOMAIN) and the AA bit.
    pub rcode: u8,
    pub authoritative: bool,
    /// Whether every compression pointer is known, so the entry may be moved (base_len <
    /// the query name's length). An entry with an unknown record type is used in place only.
    pub movable: bool,
    pub answers: u16,
    pub authorities: u16,
    pub additionals: u16,
}

/// The answers for one owner name.
#[derive(Debug)]
pub struct NodeAnswers {
    /// For any type not listed in `by_type`; `None`: not compiled (encoding failed).
    default: Option<u32>,
    /// Types whose answer differs from the default one, sorted by type.
    by_type: Box<[(u16, Option<u32>)]>,
    /// For a name below this one that does not exist: NXDOMAIN, or a referral.
    below: Option<u32>,
    /// `*.` this name exists: a missing name below is answered by the wildcard (not here).
    wildcard_child: bool,
}

/// Every precompiled answer of one zone version.
#[derive(Debug, Default)]
pub struct Compiled {
    nodes: HashMap<Box<[u8]>, NodeAnswers>,
    entries: Vec<Entry>,
    arena: Vec<u8>,
    pointers: Vec<u16>,
}

/// What a lookup in the precompiled answers found.
pub struct Found<'c> {
    pub entry: Entry,
    /// The sections, as encoded against a question of `entry.base_len` bytes.
    pub bytes: &'c [u8],
    /// Positions in `bytes` of the 2-byte compression pointers.
    pub pointers: &'c [u16],
}

impl Compiled {
    /// Compiles every answer of a zone, from its (transient or kept) view.
    pub fn build(zone: &View) -> Self {
        let mut types: HashSet<u16> = zone
            .nodes
            .values()
            .flat_map(|n| n.rrsets.iter().map(|s| u16::from(s.rtype)))
            .collect();
        types.insert(u16::from(RecordType::CNAME));
        types.insert(u16::from(RecordType::DS));
        // A type present nowhere: its answer is the answer to every other such type.
        let absent = (FIRST_ABSENT_TYPE..=u16::MAX)
            .find(|t| !types.contains(t))
            .unwrap_or(FIRST_ABSENT_TYPE);
        let mut types: Vec<u16> = types.into_iter().collect();
        types.sort_unstable();

        let mut out = Compiled::default();
        let origin = zone.origin.to_lowercase();
        let nxdomain = {
            let lookup = Lookup {
                outcome: Outcome::NxDomain,
                answers: Vec::new(),
                authorities: vec![&zone.negative_soa],
                additionals: Vec::new(),
            };
            out.add(&origin, &lookup)
        };
        // Names with a `*` child, in wire form (the `\x01*` label stripped).
        let wildcard_parents: HashSet<Box<[u8]>> = zone
            .nodes
            .keys()
            .filter(|n| n.is_wildcard())
            .map(|n| wire_key(n)[2..].into())
            .collect();
        for name in zone.nodes.keys() {
            let lower = name.to_lowercase();
            let default_lookup = zone.lookup(&lower, RecordType::from(absent));
            let referral = default_lookup.outcome == Outcome::Referral;
            let default = out.add(&lower, &default_lookup);
            let mut by_type = Vec::new();
            for &t in &types {
                let lookup = zone.lookup(&lower, RecordType::from(t));
                let first_new = out.entries.len();
                let entry = out.add(&lower, &lookup);
                if entry.is_some() && out.same(entry, default) {
                    // The same answer as for any other type: keep the default one only.
                    out.drop_from(first_new);
                    continue;
                }
                by_type.push((t, entry));
            }
            let key = wire_key(name);
            let wildcard_child = wildcard_parents.contains(&key);
            out.nodes.insert(
                key,
                NodeAnswers {
                    default,
                    by_type: by_type.into_boxed_slice(),
                    below: if referral { default } else { nxdomain },
                    wildcard_child,
                },
            );
        }
        out
    }

    /// The answer for `qname`/`qtype` if it was compiled; `None` sends the query to the
    /// general path (a wildcard, or an entry that could not be encoded).
    pub fn find(&self, qname: &WireName, qtype: u16, apex_labels: usize) -> Option<Found<'_>> {
        let id = match self.nodes.get(qname.as_bytes()) {
            Some(node) => match node.by_type.binary_search_by_key(&qtype, |(t, _)| *t) {
                Ok(i) => node.by_type[i].1?,
                Err(_) => node.default?,
            },
            None => {
                // The closest existing ancestor decides: NXDOMAIN or a referral, unless a
                // wildcard below it answers (left to the general path).
                let encloser = (1..=qname.labels().saturating_sub(apex_labels))
                    .find_map(|skip| self.nodes.get(qname.suffix(skip)))?;
                if encloser.wildcard_child {
                    return None;
                }
                encloser.below?
            }
        };
        let entry = *self.entries.get(id as usize)?;
        let bytes = self
            .arena
            .get(entry.start as usize..(entry.start + entry.len) as usize)?;
        let pointers = self.pointers.get(
            entry.pointers_start as usize..(entry.pointers_start + entry.pointers_len) as usize,
        )?;
        Some(Found {
            entry,
            bytes,
            pointers,
        })
    }

    /// Bytes held by the compiled answers (arena, pointer lists, entries).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.pointers.capacity() * 2
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self
                .nodes
                .iter()
                .map(|(k, v)| k.len() + v.by_type.len() * 8 + 48)
                .sum::<usize>()
    }

    fn same(&self, a: Option<u32>, b: Option<u32>) -> bool {
        let (Some(a), Some(b)) = (a, b) else {
            return false;
        };
        let (ea, eb) = (self.entries[a as usize], self.entries[b as usize]);
        let bytes = |e: Entry| &self.arena[e.start as usize..(e.start + e.len) as usize];
        ea.rcode == eb.rcode
            && ea.authoritative == eb.authoritative
            && ea.answers == eb.answers
            && ea.authorities == eb.authorities
            && ea.additionals == eb.additionals
            && bytes(ea) == bytes(eb)
    }

    /// Forgets the entries from `first` on (the last ones added).
    fn drop_from(&mut self, first: usize) {
        if let Some(e) = self.entries.get(first).copied() {
            self.arena.truncate(e.start as usize);
            self.pointers.truncate(e.pointers_start as usize);
            self.entries.truncate(first);
        }
    }

    /// Encodes the sections of `lookup` against a question for `question`; `None` when they
    /// cannot be encoded (the general path then answers, and reports what it can).
    fn add(&mut self, question: &Name, lookup: &Lookup<'_>) -> Option<u32> {
        let mut meta = Metadata::new(0, MessageType::Response, OpCode::Query);
        meta.authoritative = lookup.outcome != Outcome::Referral || !lookup.answers.is_empty();
        meta.response_code = match lookup.outcome {
            Outcome::NxDomain => ResponseCode::NXDomain,
            _ => ResponseCode::NoError,
        };
        let query = Query::query(question.clone(), RecordType::A);
        let answers: Vec<&Record> = lookup.answers.iter().map(|c| c.as_ref()).collect();
        let mut buf = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut buf);
        emit_message_parts(
            &meta,
            &mut std::iter::once(&query),
            &mut answers.iter().copied(),
            &mut lookup.authorities.iter().copied(),
            &mut lookup.additionals.iter().copied(),
            None,
            None,
            &mut encoder,
        )
        .ok()?;
        let base_len = u8::try_from(wire_key(question).len()).ok()?;
        let sections_at = 12 + usize::from(base_len) + 4;
        let sections = buf.get(sections_at..)?;
        let count = |at: usize| u16::from_be_bytes([buf[at], buf[at + 1]]);
        let (answers, authorities, additionals) = (count(6), count(8), count(10));
        let pointers_start = self.pointers.len();
        let movable = find_pointers(
            sections,
            usize::from(answers) + usize::from(authorities) + usize::from(additionals),
            &mut self.pointers,
        );
        let entry = Entry {
            start: u32::try_from(self.arena.len()).ok()?,
            len: u32::try_from(sections.len()).ok()?,
            pointers_start: u32::try_from(pointers_start).ok()?,
            pointers_len: u32::try_from(self.pointers.len() - pointers_start).ok()?,
            base_len,
            rcode: meta.response_code.low(),
            authoritative: meta.authoritative,
            movable,
            answers,
            authorities,
            additionals,
        };
        self.arena.extend_from_slice(sections);
        self.entries.push(entry);
        u32::try_from(self.entries.len() - 1).ok()
    }
}

/// Record types whose data holds no domain name, so no compression pointer.
const NO_NAME_TYPES: [u16; 12] = [1, 28, 16, 257, 44, 52, 43, 48, 61, 53, 13, 99];

/// Appends to `out` the offsets (in `sections`) of every compression pointer of `records`
/// records; `false` when a record's data may hold one it cannot find (unknown type).
fn find_pointers(sections: &[u8], records: usize, out: &mut Vec<u16>) -> bool {
    let mut at = 0usize;
    let mut known = true;
    for _ in 0..records {
        let Some(end) = walk_name(sections, at, out) else {
            return false;
        };
        let Some(fixed) = sections.get(end..end + 10) else {
            return false;
        };
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = end + 10;
        // Where the names are in the data of the types that carry one.
        let names: &[usize] = match rtype {
            2 | 5 | 12 | 39 => &[0], // NS, CNAME, PTR, DNAME
            15 => &[2],              // MX
            33 => &[6],              // SRV
            6 => &[0, usize::MAX],   // SOA: two names
            t if NO_NAME_TYPES.contains(&t) => &[],
            _ => {
                known = false;
                &[]
            }
        };
        let mut name_at = data;
        for &offset in names {
            if offset != usize::MAX {
                name_at = data + offset;
            }
            match walk_name(sections, name_at, out) {
                Some(next) => name_at = next,
                None => return false,
            }
        }
        at = data + rdlen;
    }
    known
}

/// Walks the name at `at`, recording its pointer if it ends in one; the offset after it.
fn walk_name(bytes: &[u8], mut at: usize, out: &mut Vec<u16>) -> Option<usize> {
    for _ in 0..128 {
        let l = *bytes.get(at)?;
        if l == 0 {
            return Some(at + 1);
        }
        if l & 0xC0 == 0xC0 {
            out.push(u16::try_from(at).ok()?);
            return Some(at + 2);
        }
        at += 1 + usize::from(l);
    }
    None
}
