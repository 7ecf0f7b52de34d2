//! Signed zones: which records mailzone generates for DNSSEC, the file that keeps them
//! between runs, and the denial-of-existence lookups the DO=1 answer path needs.
//!
//! This module owns the list of generated types (DNSKEY, CDS, CDNSKEY, RRSIG, NSEC, NSEC3,
//! NSEC3PARAM: never in a zone file, never edited by hand), the signatures file
//! `zones/<zone>.signed` (the generated records as raw DNS wire RRs, tied to the hash of the
//! zone file's text and to the serial and digest of the records they sign, with a header of
//! what a start needs without decoding them, so that a restart re-signs nothing and a zone
//! file edited by hand is never served with signatures over other data), and picking the RRSIGs and NSEC
//! records of an answer. It must not sign nor know keys: `crate::dnssec` does, and it must not
//! do I/O beyond the pure encoding (the daemon writes the file, [`super::set`] reads it).

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::{SourcedRecord, View, Zone, ZoneError, label_count};

/// The first line of a signatures file (version 1: no zone digest; still read).
const MAGIC_V1: &[u8] = b"mailzone-signed 1\n";
/// Version 2 also keeps the journal digest of the whole signed zone ([`super::journal::zone_digest`]).
const MAGIC_V2: &[u8] = b"mailzone-signed 2\n";
/// Version 3 has a header with what a start needs without decoding a record: the hash of
/// the zone file's text, the earliest expiry, the keys and signers ([`Summary`]); still read.
const MAGIC_V3: &[u8] = b"mailzone-signed 3\n";
/// Version 4 has the header of version 3, then the whole signed zone as its arena
/// ([`super::arena`]): a restart whose zone file hashes the same reads no zone file record
/// and builds nothing, it walks the bytes and serves them; still read.
const MAGIC_V4: &[u8] = b"mailzone-signed 4\n";
/// Version 5 (written now) is version 4 with its text hash and checksum taken four words at
/// a time ([`lanes_hash`]): SHA-256 of every zone file and a one-word-at-a-time checksum of
/// every stored zone were a seventh of a signed restart.
const MAGIC: &[u8] = b"mailzone-signed 5\n";
/// The arena's layout and the zone rules it was built under. A stored arena is served as it
/// is, without the checks of [`Zone::build`]: when the layout or a rule changes, this
/// changes, and a file stored before is not used (the zone is signed again at start).
const ARENA_LAYOUT: u8 = 1;

/// The types mailzone generates when it signs a zone.
pub fn is_generated(rtype: RecordType) -> bool {
    matches!(
        rtype,
        RecordType::DNSKEY
            | RecordType::CDS
            | RecordType::CDNSKEY
            | RecordType::RRSIG
            | RecordType::NSEC
            | RecordType::NSEC3
            | RecordType::NSEC3PARAM
    )
}

/// The signatures file beside a zone file: `example.com.zone` → `example.com.signed`.
pub fn signatures_file_for(zone_file: &std::path::Path) -> std::path::PathBuf {
    zone_file.with_extension("signed")
}

/// An order-independent digest of the zone's own records (SOA included, generated ones
/// left out): what the stored signatures were made over.
pub fn user_digest(zone: &Zone) -> u64 {
    zone.view()
        .user_records()
        .fold(0u64, |acc, r| acc.wrapping_add(record_hash(r)))
}

/// [`user_digest`] of the zone these records (a zone file's, as read) would build, when
/// they have no duplicate and each rrset one TTL (otherwise it differs, never falsely
/// equal under the hash).
fn records_digest(records: &[SourcedRecord]) -> u64 {
    records
        .iter()
        .fold(0u64, |acc, r| acc.wrapping_add(record_hash(&r.record)))
}

fn record_hash(r: &Record) -> u64 {
    let mut buf = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_canonical_form(true);
    // Case-insensitive owner: the digest must not change with the spelling of a name.
    let _ = r.name.to_lowercase().emit(&mut encoder);
    let _ = encoder.emit_u16(u16::from(r.record_type()));
    let _ = encoder.emit_u32(r.ttl);
    let _ = r.data.emit(&mut encoder);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in buf {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Spread FNV's bits before they are summed.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The hash of a zone file's text that a version 3 signatures file was made for: when the
/// file read at start hashes the same, its records are those signed (no canonical encoding
/// of each record to find out). SHA-256: a file edited by hand never matches by chance.
pub fn text_hash(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref());
    out
}

/// The text hash of version 5: [`lanes_hash`] of the text, its four words. Not a
/// cryptographic hash (whoever can write the zone file can write the signatures beside
/// it); 256 well-mixed bits, so that an edit never matches by chance.
pub fn lanes_text_hash(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(8).zip(lanes_hash(text.as_bytes())) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// A published DNSKEY as the header of a signatures file notes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyNote {
    pub key_tag: u16,
    pub flags: u16,
    pub algorithm: u8,
}

/// What the DNSSEC policy check needs to know of a signed zone, without its records: kept
/// in the header of a version 3 signatures file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The earliest signature expiry (unix seconds).
    pub earliest_expiry: Option<u64>,
    /// Denial by NSEC3 (else NSEC).
    pub nsec3: bool,
    /// The apex publishes the CDS delete record (`0 0 0 00`, RFC 8078 §4).
    pub cds_delete: bool,
    /// The apex DNSKEY rrset.
    pub dnskeys: Vec<KeyNote>,
    /// The key tags of the RRSIGs over the apex SOA and over the DNSKEY rrset, sorted.
    pub soa_signers: Vec<u16>,
    pub dnskey_signers: Vec<u16>,
}

impl Summary {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.earliest_expiry.unwrap_or(0).to_be_bytes());
        out.push(u8::from(self.nsec3) | (u8::from(self.cds_delete) << 1));
        // A zone has a handful of keys: one byte counts them (more are cut, never wrapped).
        let keys = &self.dnskeys[..self.dnskeys.len().min(255)];
        out.push(keys.len() as u8);
        for k in keys {
            out.extend_from_slice(&k.key_tag.to_be_bytes());
            out.extend_from_slice(&k.flags.to_be_bytes());
            out.push(k.algorithm);
        }
        for tags in [&self.soa_signers, &self.dnskey_signers] {
            let tags = &tags[..tags.len().min(255)];
            out.push(tags.len() as u8);
            for t in tags {
                out.extend_from_slice(&t.to_be_bytes());
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, String> {
        let expiry = r.u64()?;
        let flags = r.u8()?;
        let mut dnskeys = Vec::new();
        for _ in 0..r.u8()? {
            dnskeys.push(KeyNote {
                key_tag: r.u16()?,
                flags: r.u16()?,
                algorithm: r.u8()?,
            });
        }
        let mut tags = || -> Result<Vec<u16>, String> {
            let n = r.u8()?;
            (0..n).map(|_| r.u16()).collect()
        };
        let soa_signers = tags()?;
        let dnskey_signers = tags()?;
        Ok(Self {
            earliest_expiry: (expiry != 0).then_some(expiry),
            nsec3: flags & 1 != 0,
            cds_delete: flags & 2 != 0,
            dnskeys,
            soa_signers,
            dnskey_signers,
        })
    }
}

/// Reads the fixed fields of a signatures file.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the file is cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
}

/// The signatures file of a signed zone whose zone file is `text` (version 5): magic, the
/// [`lanes_text_hash`] of `text`, serial, digest of the signed records, the journal digest of the whole
/// signed zone, the [`Summary`], the arena layout, the record count, where the NSEC3 run
/// starts, then the zone's arena as it is (every record, the zone file's included), a
/// checksum.
pub fn encode(zone: &Zone, text: &str) -> Vec<u8> {
    let view = zone.view();
    let mut out = Vec::with_capacity(MAGIC.len() + 128 + zone.arena.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&lanes_text_hash(text));
    out.extend_from_slice(&zone.serial().to_be_bytes());
    out.extend_from_slice(&user_digest(zone).to_be_bytes());
    out.extend_from_slice(&zone.journal_digest().to_be_bytes());
    zone.summary_of(&view).encode(&mut out);
    out.push(ARENA_LAYOUT);
    out.extend_from_slice(&zone.record_count.to_be_bytes());
    out.extend_from_slice(&zone.nsec3_at.to_be_bytes());
    out.extend_from_slice(&zone.arena);
    let sum = lanes_hash(&out)[0];
    out.extend_from_slice(&sum.to_be_bytes());
    out
}

/// The checksum of versions 1 to 3: FNV-1a 64, a byte at a time.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The checksum of version 4: eight bytes at a time (little-endian words, a multiply and a
/// rotation each, the tail bytes one by one, then a final mix). Version 4 files hold the
/// whole zone; FNV's byte-at-a-time chain over them was a tenth of a signed restart.
fn word_checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = K ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(K).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Four lanes of [`word_checksum`]'s step over 32-byte blocks, independent of each other
/// so that the processor runs them side by side (four times the bytes per cycle of one
/// chain); the tail bytes go round the lanes; each word out mixes its lane with all four.
/// Any change to one word changes its lane (each step is a bijection of the lane), hence
/// every word out. Version 5's checksum is the first word, its text hash all four.
pub fn lanes_hash(bytes: &[u8]) -> [u64; 4] {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let len = bytes.len() as u64;
    let mut h = [0u32, 16, 32, 48].map(|r| K.rotate_left(r) ^ len);
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, w) in h.iter_mut().zip(block.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            *lane = (*lane ^ u64::from_le_bytes(a))
                .wrapping_mul(K)
                .rotate_left(29);
        }
    }
    for (i, &b) in blocks.remainder().iter().enumerate() {
        let lane = &mut h[i % 4];
        *lane = (*lane ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    let all = h[0] ^ h[1].rotate_left(16) ^ h[2].rotate_left(32) ^ h[3].rotate_left(48);
    let mut lane_no = 0u64;
    h.map(|x| {
        lane_no += 1;
        mix64(all.wrapping_add(mix64(x ^ lane_no)))
    })
}

/// The splitmix64 finaliser: every bit of `h` reaches every bit out.
fn mix64(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// What a signatures file holds. The generated records stay in wire form until
/// [`Stored::records`] decodes them (once it is known they apply).
#[derive(Debug)]
pub struct Stored {
    pub serial: u32,
    pub digest: u64,
    /// The journal digest of the signed zone (versions 2 and 3).
    pub zone_digest: Option<u64>,
    /// The hash of the zone file's text they were made for (version 3).
    pub text_hash: Option<[u8; 32]>,
    /// That hash is [`lanes_text_hash`] (version 5), else SHA-256 ([`text_hash`]).
    pub lanes_text_hash: bool,
    /// The policy check's view of the signed zone (version 3).
    pub summary: Option<Box<Summary>>,
    /// How many records [`Stored::wire`] holds.
    pub count: u32,
    /// Versions 1 to 3: the generated records, uncompressed wire RRs one after the other.
    /// Version 4: the whole zone's arena.
    pub wire: Vec<u8>,
    /// Version 4: where the arena's NSEC3 run starts (`None`: `wire` holds wire RRs).
    pub arena: Option<u32>,
}

impl Stored {
    /// Whether these signatures were made for exactly this zone file text (version 3).
    pub fn made_for_text(&self, text: &str) -> bool {
        self.text_hash.is_some_and(|h| {
            h == if self.lanes_text_hash {
                lanes_text_hash(text)
            } else {
                text_hash(text)
            }
        })
    }

    /// The generated records as uncompressed wire RRs (version 4: taken out of the arena).
    pub fn generated_wire(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.arena {
            None => std::borrow::Cow::Borrowed(&self.wire),
            Some(_) => std::borrow::Cow::Owned(super::arena::generated_wire(&self.wire)),
        }
    }

    /// The generated records, decoded; any damage is an error saying what.
    pub fn records(&self) -> Result<Vec<Record>, String> {
        let wire = self.generated_wire();
        let mut decoder = BinDecoder::new(&wire);
        let mut records = Vec::new();
        let mut i = 0usize;
        while !decoder.is_empty() {
            if self.arena.is_none() && i >= self.count as usize {
                return Err("bytes after the last record".into());
            }
            let r = Record::read(&mut decoder).map_err(|e| format!("record {i}: {e}"))?;
            if !is_generated(r.record_type()) {
                return Err(format!("record {i} is a {} record", r.record_type()));
            }
            records.push(r);
            i += 1;
        }
        if self.arena.is_none() && i < self.count as usize {
            return Err("the file is cut short".into());
        }
        Ok(records)
    }
}

/// Reads a signatures file (versions 1 to 3); any damage to the file is an error saying
/// what (the records themselves are checked when [`Stored::records`] decodes them).
pub fn decode(bytes: &[u8]) -> Result<Stored, String> {
    let version = if bytes.starts_with(MAGIC) {
        5
    } else if bytes.starts_with(MAGIC_V4) {
        4
    } else if bytes.starts_with(MAGIC_V3) {
        3
    } else if bytes.starts_with(MAGIC_V2) {
        2
    } else if bytes.starts_with(MAGIC_V1) {
        1
    } else {
        return Err("not a mailzone signatures file".into());
    };
    if bytes.len() < MAGIC.len() + 8 {
        return Err("the file is cut short".into());
    }
    let (content, sum) = bytes.split_at(bytes.len() - 8);
    let sum = u64::from_be_bytes(sum.try_into().map_err(|_| "the file is cut short")?);
    let computed = match version {
        5 => lanes_hash(content)[0],
        4 => word_checksum(content),
        _ => checksum(content),
    };
    if computed != sum {
        return Err("the checksum does not match: the file is damaged".into());
    }
    // The magic lines have the same length.
    let mut r = Reader(&content[MAGIC.len()..]);
    let text_hash = if version >= 3 {
        let mut h = [0u8; 32];
        h.copy_from_slice(r.take(32)?);
        Some(h)
    } else {
        None
    };
    let serial = r.u32()?;
    let digest = r.u64()?;
    let zone_digest = if version >= 2 { Some(r.u64()?) } else { None };
    let summary = if version >= 3 {
        Some(Box::new(Summary::decode(&mut r)?))
    } else {
        None
    };
    let (count, arena) = if version >= 4 {
        if r.u8()? != ARENA_LAYOUT {
            return Err("written by a build that lays records out otherwise".into());
        }
        let count = r.u32()?;
        let nsec3_at = r.u32()?;
        if nsec3_at as usize > r.0.len() {
            return Err("the NSEC3 run starts past the end".into());
        }
        (count, Some(nsec3_at))
    } else {
        (r.u32()?, None)
    };
    Ok(Stored {
        serial,
        digest,
        zone_digest,
        text_hash,
        lanes_text_hash: version >= 5,
        summary,
        count,
        wire: r.0.to_vec(),
        arena,
    })
}

/// A zone file's records, DNSSEC records written by hand refused with their line (see
/// [`Zone::from_zone_file_text`]).
pub fn zone_file_records(origin: &Name, text: &str) -> Result<Vec<SourcedRecord>, ZoneError> {
    let records = super::master::read(text, origin)?;
    if let Some(r) = records
        .iter()
        .find(|r| is_generated(r.record.record_type()))
    {
        return Err(ZoneError {
            line: r.line,
            message: format!(
                "{} records are made by mailzone when it signs the zone (dnssec:), not written in the zone file: remove this one",
                r.record.record_type()
            ),
        });
    }
    Ok(records)
}

/// A zone file's records and stored signatures that were not made for them as read (see
/// [`Zone::build_with_stored`]).
pub type NotMadeFor = (Vec<SourcedRecord>, Stored);

impl Zone {
    /// Parses a zone file: like [`Zone::from_master_text`], but DNSSEC records written by
    /// hand are refused with their line. mailzone makes them when it signs the zone; a
    /// hand-written DNSKEY or CDS would be served beside (or instead of) the real ones and
    /// could point the parent at a key nobody signs with.
    pub fn from_zone_file_text(origin: &Name, text: &str) -> Result<Zone, ZoneError> {
        Zone::build(origin.clone(), zone_file_records(origin, text)?)
    }

    /// The zone stored whole in a version 4 signatures file made for exactly this zone file
    /// `text`: its arena walked and served as it is, no record of the file read. `None` when
    /// the file is of another version or made for another text (the caller reads the zone
    /// file and tries [`Zone::build_with_stored`]); `Some(Err)` says what is damaged.
    pub fn from_stored_arena(
        origin: &Name,
        text: &str,
        stored: &mut Stored,
    ) -> Option<Result<Zone, String>> {
        let nsec3_at = stored.arena?;
        if !stored.made_for_text(text) {
            return None;
        }
        let arena = std::mem::take(&mut stored.wire);
        Some(
            super::arena::from_stored(origin.clone(), arena, nsec3_at).map(|mut zone| {
                if let Some(d) = stored.zone_digest {
                    zone.set_known_digest(d);
                }
                zone
            }),
        )
    }

    /// A zone file's zone with its stored signatures, built once, when they were made for
    /// exactly the file's records: its very text (version 3), else the serial and the digest
    /// of the records as read. `Err` gives the records back when they do not apply that way
    /// (the caller builds the zone alone and tries [`Zone::with_stored`], which also sees
    /// through duplicates and TTLs that the build merges); a build that fails with them (or
    /// stored records that do not decode) is `Ok(Err(..))`.
    pub fn build_with_stored(
        origin: &Name,
        text: &str,
        records: Vec<SourcedRecord>,
        stored: Stored,
    ) -> Result<Result<Zone, ZoneError>, Box<NotMadeFor>> {
        // The text's hash settles it at once; an older file, or a file whose text changed
        // (a comment, a duplicate), is compared record by record.
        if !stored.made_for_text(text) {
            let serial = records.iter().find_map(|r| match &r.record.data {
                RData::SOA(soa) if r.record.name == *origin => Some(soa.serial),
                _ => None,
            });
            if serial != Some(stored.serial) || records_digest(&records) != stored.digest {
                return Err(Box::new((records, stored)));
            }
        }
        let known = stored.zone_digest;
        if stored.text_hash.is_none() {
            // Versions 1 and 2 wrote names compressed: decoded record by record.
            let generated = match stored.records() {
                Ok(g) => g,
                Err(message) => return Ok(Err(ZoneError { line: 0, message })),
            };
            let all: Vec<SourcedRecord> = records
                .into_iter()
                .chain(
                    generated
                        .into_iter()
                        .map(|record| SourcedRecord { record, line: 0 }),
                )
                .collect();
            return Ok(Zone::build(origin.clone(), all).map(|mut zone| {
                if let Some(d) = known {
                    zone.set_known_digest(d);
                }
                zone
            }));
        }
        // Version 3: the stored records go into the zone's arena as they are (uncompressed
        // wire RRs, walked and checked, not decoded): a restart of 10,000 signed zones
        // builds no hickory record for their ~80 signatures and denial records each.
        Ok(
            Zone::build_with_generated_wire(origin.clone(), records, &stored.generated_wire()).map(
                |mut zone| {
                    if let Some(d) = known {
                        zone.set_known_digest(d);
                    }
                    zone
                },
            ),
        )
    }

    /// What the DNSSEC policy check needs to know of this zone's signatures ([`Summary`]).
    pub fn summary(&self) -> Summary {
        self.summary_of(&self.view())
    }

    /// [`Zone::summary`] from this zone's view, when the caller has decoded it already (a
    /// cold zone's view is decoded anew for each caller).
    fn summary_of(&self, view: &View) -> Summary {
        use hickory_proto::dnssec::rdata::DNSSECRData as D;
        let apex = view.node(&self.origin);
        let rrset = |t: RecordType| apex.and_then(|n| n.rrset(t)).map(|s| s.records.as_slice());
        let dnskeys = rrset(RecordType::DNSKEY)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(D::DNSKEY(k)) => Some(KeyNote {
                    key_tag: k.calculate_key_tag().ok()?,
                    flags: k.flags(),
                    algorithm: u8::from(hickory_proto::dnssec::PublicKey::algorithm(
                        k.public_key(),
                    )),
                }),
                _ => None,
            })
            .collect();
        let signers = |t: RecordType| {
            let mut tags: Vec<u16> = view
                .rrsigs(&self.origin, t)
                .filter_map(|r| match &r.data {
                    RData::DNSSEC(D::RRSIG(sig)) => Some(sig.input().key_tag),
                    _ => None,
                })
                .collect();
            tags.sort_unstable();
            tags
        };
        let cds_delete = rrset(RecordType::CDS)
            .unwrap_or_default()
            .iter()
            .any(|r| matches!(&r.data, RData::DNSSEC(D::CDS(c)) if c.algorithm().is_none()));
        Summary {
            earliest_expiry: self.earliest_expiry(),
            nsec3: view.nsec3().is_some(),
            cds_delete,
            dnskeys,
            soa_signers: signers(RecordType::SOA),
            dnskey_signers: signers(RecordType::DNSKEY),
        }
    }

    /// This zone's own records with `generated` in place of the DNSSEC records it had.
    pub fn with_generated(&self, generated: Vec<Record>) -> Result<Zone, ZoneError> {
        let records: Vec<SourcedRecord> = self
            .view()
            .user_records()
            .cloned()
            .chain(generated)
            .map(|record| SourcedRecord { record, line: 0 })
            .collect();
        Zone::build(self.origin.clone(), records)
    }

    /// This zone without any DNSSEC record.
    pub fn unsigned(&self) -> Result<Zone, ZoneError> {
        self.with_generated(Vec::new())
    }

    /// Attaches stored signatures when they were made for exactly these records (serial and
    /// digest match); `Err` says why they do not apply.
    pub fn with_stored(&self, stored: Stored) -> Result<Zone, String> {
        if stored.serial != self.serial() {
            return Err(format!(
                "they are for serial {}, the zone file has {}",
                stored.serial,
                self.serial()
            ));
        }
        if stored.digest != user_digest(self) {
            return Err("the zone file was changed since they were made".into());
        }
        let known = stored.zone_digest;
        let generated = stored.records()?;
        let mut zone = self
            .with_generated(generated)
            .map_err(|e| format!("they do not fit the zone: {e}"))?;
        if let Some(d) = known {
            zone.set_known_digest(d);
        }
        Ok(zone)
    }
}

impl View {
    /// The RRSIGs at `owner` covering `rtype`, as stored (owner spelled as in the zone);
    /// those of an NSEC3 record come from the NSEC3 chain.
    pub fn rrsigs(&self, owner: &Name, rtype: RecordType) -> impl Iterator<Item = &Record> {
        let chained = if rtype == RecordType::NSEC3 {
            self.nsec3.as_ref().and_then(|c| c.at_owner(owner))
        } else {
            None
        };
        self.nodes
            .get(owner)
            .and_then(|n| n.rrset(RecordType::RRSIG))
            .into_iter()
            .flat_map(|s| s.records.iter())
            .chain(chained.into_iter().flat_map(|e| e.rrsigs.iter()))
            .filter(move |r| covered(r) == Some(rtype))
    }

    /// The NSEC3 chain, when the zone is signed with NSEC3.
    pub fn nsec3(&self) -> Option<&Nsec3Chain> {
        self.nsec3.as_deref()
    }

    /// The NSEC record at `owner`, if the chain has one there.
    pub fn nsec_at(&self, owner: &Name) -> Option<&Record> {
        self.nodes
            .get(owner)
            .and_then(|n| n.rrset(RecordType::NSEC))
            .and_then(|s| s.records.first())
    }

    /// The NSEC record whose owner is the last one at or before `name` in canonical order:
    /// it matches `name` or covers it (the apex's NSEC covers names past the last owner).
    pub fn nsec_covering(&self, name: &Name) -> Option<&Record> {
        let owner = match self.nsec_owners.binary_search(name) {
            Ok(i) => &self.nsec_owners[i],
            Err(0) => self.nsec_owners.last()?,
            Err(i) => &self.nsec_owners[i - 1],
        };
        self.nsec_at(owner)
    }

    /// The closest encloser of a name that does not exist: its longest existing ancestor.
    pub fn closest_encloser(&self, name: &Name) -> Name {
        let apex = label_count(&self.origin);
        let mut k = label_count(name);
        while k > apex {
            k -= 1;
            let ancestor = name.trim_to(k);
            if self.nodes.contains_key(&ancestor) {
                return ancestor;
            }
        }
        self.origin.clone()
    }

    /// The wildcard that synthesised answers for `name`, if any ([`Zone::lookup`]'s rule).
    pub fn source_of_synthesis(&self, name: &Name) -> Option<Name> {
        if self.nodes.contains_key(name) {
            return None;
        }
        let wildcard = self.closest_encloser(name).prepend_label("*").ok()?;
        self.nodes.contains_key(&wildcard).then_some(wildcard)
    }
}

/// One NSEC3 record and the signatures over it.
#[derive(Debug, Clone)]
pub struct Nsec3Entry {
    /// The owner's hash: its first label, base32hex-decoded.
    pub hash: Box<[u8]>,
    pub record: Record,
    pub rrsigs: Vec<Record>,
}

/// A zone's NSEC3 chain: its parameters and its records in hash order, so that the record
/// matching or covering a hash is found by binary search.
#[derive(Debug, Clone)]
pub struct Nsec3Chain {
    salt: Box<[u8]>,
    iterations: u16,
    entries: Vec<Nsec3Entry>,
}

/// The hash of `name` under NSEC3 parameters (SHA-1, the only algorithm defined).
pub fn nsec3_hash(name: &Name, salt: &[u8], iterations: u16) -> Option<Vec<u8>> {
    hickory_proto::dnssec::Nsec3HashAlgorithm::SHA1
        .hash(salt, name, iterations)
        .ok()
        .map(|d| d.as_ref().to_vec())
}

/// The owner name of the NSEC3 record for `hash` in the zone `origin`.
pub fn nsec3_owner(hash: &[u8], origin: &Name) -> Option<Name> {
    let label = data_encoding::BASE32_DNSSEC.encode(hash);
    Name::from_ascii(&label).ok()?.append_domain(origin).ok()
}

/// The hash an NSEC3 owner name stands for, if it is one label of base32hex below `origin`.
fn owner_hash(owner: &Name, origin: &Name) -> Option<Box<[u8]>> {
    if label_count(owner) != label_count(origin) + 1 || !origin.zone_of(owner) {
        return None;
    }
    let label = owner.iter().next()?;
    data_encoding::BASE32_DNSSEC
        .decode(label)
        .ok()
        .filter(|h| !h.is_empty())
        .map(Vec::into_boxed_slice)
}

impl Nsec3Chain {
    /// The chain of the NSEC3 records of a zone and their RRSIGs. Each owner must be a hash
    /// one label below the apex with one NSEC3 record, and every record must use the same
    /// parameters (one chain per zone, the one the NSEC3PARAM names).
    pub fn build(origin: &Name, records: Vec<SourcedRecord>) -> Result<Self, ZoneError> {
        use std::collections::BTreeMap;
        // By hash: the NSEC3 record, its RRSIGs, the line of the first.
        type Gathered = (Option<Record>, Vec<Record>, usize);
        let mut by_hash: BTreeMap<Box<[u8]>, Gathered> = BTreeMap::new();
        let mut params: Option<(Vec<u8>, u16)> = None;
        for SourcedRecord { record, line } in records {
            let fail = |message: String| Err(ZoneError { line, message });
            let owner = crate::zone::writer::name_text(&record.name);
            let Some(hash) = owner_hash(&record.name, origin) else {
                return fail(format!(
                    "{owner}: an NSEC3 owner must be a base32hex hash one label below the apex"
                ));
            };
            let entry = by_hash.entry(hash).or_insert((None, Vec::new(), line));
            match &record.data {
                RData::DNSSEC(DNSSECRData::NSEC3(n)) => {
                    let these = (n.salt().to_vec(), n.iterations());
                    match &params {
                        None => params = Some(these),
                        Some(p) if *p != these => {
                            return fail(format!(
                                "NSEC3 at {owner}: its salt or iterations differ from the chain's"
                            ));
                        }
                        Some(_) => {}
                    }
                    if entry.0.as_ref().is_some_and(|r| r.data != record.data) {
                        return fail(format!("a second NSEC3 record at {owner}"));
                    }
                    entry.0 = Some(record);
                }
                _ => entry.1.push(record),
            }
        }
        let mut entries = Vec::with_capacity(by_hash.len());
        for (hash, (record, rrsigs, line)) in by_hash {
            let Some(record) = record else {
                return Err(ZoneError {
                    line,
                    message: "an RRSIG over NSEC3 where there is no NSEC3 record".into(),
                });
            };
            entries.push(Nsec3Entry {
                hash,
                record,
                rrsigs,
            });
        }
        let (salt, iterations) = params.unwrap_or_default();
        Ok(Self {
            salt: salt.into_boxed_slice(),
            iterations,
            entries,
        })
    }

    /// Every record of the chain: the NSEC3 records and their signatures.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.entries
            .iter()
            .flat_map(|e| std::iter::once(&e.record).chain(e.rrsigs.iter()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose owner is `owner`.
    pub fn at_owner(&self, owner: &Name) -> Option<&Nsec3Entry> {
        let origin = owner.base_name();
        let hash = owner_hash(owner, &origin)?;
        self.entries
            .binary_search_by(|e| e.hash.as_ref().cmp(&hash))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The entry that matches `name` (`true`) or covers its hash (`false`): the last one at
    /// or before the hash, the last of the chain covering hashes before the first.
    pub fn find(&self, name: &Name) -> Option<(&Nsec3Entry, bool)> {
        let hash = nsec3_hash(name, &self.salt, self.iterations)?;
        match self
            .entries
            .binary_search_by(|e| e.hash.as_ref().cmp(hash.as_slice()))
        {
            Ok(i) => Some((&self.entries[i], true)),
            Err(0) => self.entries.last().map(|e| (e, false)),
            Err(i) => Some((&self.entries[i - 1], false)),
        }
    }

    /// The NSEC3 entry of `name`, if the chain has one for it.
    pub fn matching(&self, name: &Name) -> Option<&Nsec3Entry> {
        self.find(name).filter(|(_, m)| *m).map(|(e, _)| e)
    }

    /// The NSEC3 entry covering `name`, a name that does not exist.
    pub fn covering(&self, name: &Name) -> Option<&Nsec3Entry> {
        self.find(name).filter(|(_, m)| !*m).map(|(e, _)| e)
    }
}

/// The type an RRSIG record covers.
pub fn covered(r: &Record) -> Option<RecordType> {
    match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig.input().type_covered),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dnssec_type_is_generated_and_data_types_are_not() {
        assert!(is_generated(RecordType::RRSIG));
        assert!(is_generated(RecordType::CDS));
        assert!(!is_generated(RecordType::DS));
        assert!(!is_generated(RecordType::TXT));
    }

    #[test]
    fn dnssec_records_written_in_a_zone_file_are_refused_with_their_line() {
        let origin = Name::from_ascii("example.test.").unwrap();
        let head = "$TTL 300\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n";
        assert!(Zone::from_zone_file_text(&origin, head).is_ok());
        for extra in [
            "@ DNSKEY 257 3 13 AAAA\n",
            "@ CDS 0 0 0 00\n",
            "@ CDNSKEY 0 3 0 AA==\n",
        ] {
            let e = Zone::from_zone_file_text(&origin, &format!("{head}{extra}")).unwrap_err();
            // The parser refuses some itself (hickory: "should be dynamically generated").
            assert_eq!(e.line, 5, "{extra}: {e}");
        }
    }

    #[test]
    fn a_signatures_file_applies_to_the_exact_text_it_was_made_for_and_keeps_its_records() {
        let origin = Name::from_ascii("example.test.").unwrap();
        let text = "$TTL 300\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n";
        let zone = Zone::from_master_text(&origin, text).unwrap();
        let stored = decode(&encode(&zone, text)).unwrap();
        assert!(stored.made_for_text(text));
        assert!(!stored.made_for_text(&text.replace("192.0.2.1", "192.0.2.2")));
        assert!(!stored.made_for_text(&format!("{text}; a comment\n")));
        assert_eq!(stored.serial, 1);
        assert_eq!(stored.summary.as_deref(), Some(&zone.summary()));
        assert_eq!(stored.count, 3);
        assert!(stored.records().unwrap().is_empty());
    }

    fn exact(view: &View) -> Vec<String> {
        let mut all: Vec<String> = view
            .records()
            .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn a_zone_stored_whole_comes_back_with_every_record_as_spelled() {
        let origin = Name::from_ascii("example.test.").unwrap();
        let text = "$TTL 300\n@ SOA ns h 7 1 1 1 1\n@ NS ns\nNS A 192.0.2.1\n\
                    *.Wild 60 TXT \"v=spf1 -all\"\ndeep.er.x MX 10 Mail.example.test.\n";
        let zone = Zone::from_master_text(&origin, text).unwrap();
        let mut stored = decode(&encode(&zone, text)).unwrap();
        let back = Zone::from_stored_arena(&origin, text, &mut stored)
            .expect("made for this text")
            .unwrap();
        assert_eq!(exact(&back.view()), exact(&zone.view()));
        assert_eq!(back.serial(), 7);
        assert_eq!(back.record_count(), zone.record_count());
        assert_eq!(back.soa().to_string(), zone.soa().to_string());
        assert_eq!(back.is_signed(), zone.is_signed());
        assert_eq!(back.has_nsec3(), zone.has_nsec3());
    }

    #[test]
    fn a_stored_zone_is_not_used_for_another_text() {
        let origin = Name::from_ascii("example.test.").unwrap();
        let text = "$TTL 300\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n";
        let zone = Zone::from_master_text(&origin, text).unwrap();
        let mut stored = decode(&encode(&zone, text)).unwrap();
        let other = text.replace("192.0.2.1", "192.0.2.9");
        assert!(Zone::from_stored_arena(&origin, &other, &mut stored).is_none());
    }

    #[test]
    fn a_stored_arena_cut_short_or_outside_the_zone_is_refused_saying_why() {
        let origin = Name::from_ascii("example.test.").unwrap();
        let text = "$TTL 300\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n";
        let zone = Zone::from_master_text(&origin, text).unwrap();
        let arena = zone.arena.to_vec();
        let at = zone.nsec3_at;
        let cut = super::super::arena::from_stored(
            origin.clone(),
            arena[..arena.len() - 3].to_vec(),
            at.min(arena.len() as u32 - 3),
        );
        assert!(cut.unwrap_err().contains("cut short"));
        let other = Name::from_ascii("other.test.").unwrap();
        let outside = super::super::arena::from_stored(other, arena.clone(), at);
        assert!(outside.unwrap_err().contains("outside the zone"));
        let past =
            super::super::arena::from_stored(origin.clone(), arena.clone(), arena.len() as u32 + 1);
        assert!(past.unwrap_err().contains("past the end"));
        // The apex without its SOA (the record's type changed to TXT in place).
        let soa_at = arena.windows(2).position(|w| w == [0, 6]).unwrap();
        let mut no_soa = arena.clone();
        no_soa[soa_at + 1] = 16;
        let e = super::super::arena::from_stored(origin, no_soa, at).unwrap_err();
        assert!(e.contains("no SOA"), "{e}");
    }

    #[test]
    fn a_damaged_signatures_file_is_refused() {
        let origin = Name::from_ascii("example.test.").unwrap();
        let zone = Zone::from_master_text(
            &origin,
            "$TTL 300\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n",
        )
        .unwrap();
        let mut bytes = encode(&zone, "");
        assert!(decode(&bytes).is_ok());
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        assert!(decode(&bytes).unwrap_err().contains("damaged"));
    }

    #[test]
    fn every_changed_bit_changes_every_word_of_the_lanes_hash() {
        // Lengths around the 32-byte block, so the tail is covered too.
        for len in [0usize, 1, 7, 31, 32, 33, 100] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let base = lanes_hash(&bytes);
            for at in 0..len {
                for bit in 0..8 {
                    let mut changed = bytes.clone();
                    changed[at] ^= 1 << bit;
                    let words = lanes_hash(&changed);
                    assert!(
                        words.iter().zip(base).all(|(a, b)| *a != b),
                        "len {len}, byte {at}, bit {bit}"
                    );
                }
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_ne!(lanes_hash(&longer)[0], base[0], "a byte more, len {len}");
        }
    }
}
