//! Signed zones: which records mailzone generates for DNSSEC, the file that keeps them
//! between runs, and the denial-of-existence lookups the DO=1 answer path needs.
//!
//! This module owns the list of generated types (DNSKEY, CDS, CDNSKEY, RRSIG, NSEC, NSEC3,
//! NSEC3PARAM: never in a zone file, never edited by hand), the signatures file
//! `zones/<zone>.signed` (the generated records in DNS wire form, tied to the serial and the
//! digest of the records they sign, so that a restart re-signs nothing and a zone file edited
//! by hand is never served with signatures over other data), and picking the RRSIGs and NSEC
//! records of an answer. It must not sign nor know keys: `crate::dnssec` does, and it must not
//! do I/O beyond the pure encoding (the daemon writes the file, [`super::set`] reads it).

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::{SourcedRecord, View, Zone, ZoneError, label_count};

/// The first line of a signatures file (version 1: no zone digest; still read).
const MAGIC_V1: &[u8] = b"mailzone-signed 1\n";
/// Version 2 also keeps the journal digest of the whole signed zone ([`super::journal::zone_digest`]).
const MAGIC: &[u8] = b"mailzone-signed 2\n";

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

/// The signatures file of a signed zone: magic, serial, digest of the signed records, the
/// journal digest of the whole signed zone, the generated records in wire form (names
/// uncompressed), a checksum.
pub fn encode(zone: &Zone) -> Vec<u8> {
    let view = zone.view();
    let generated: Vec<&Record> = view
        .records()
        .filter(|r| is_generated(r.record_type()))
        .collect();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&zone.serial().to_be_bytes());
    out.extend_from_slice(&user_digest(zone).to_be_bytes());
    out.extend_from_slice(&zone.journal_digest().to_be_bytes());
    out.extend_from_slice(&(generated.len() as u32).to_be_bytes());
    let mut body = Vec::with_capacity(generated.len() * 160);
    {
        let mut encoder = BinEncoder::new(&mut body);
        for r in generated {
            // Canonical form: no compression, so each record decodes on its own.
            encoder.set_canonical_form(true);
            let _ = r.emit(&mut encoder);
        }
    }
    out.extend_from_slice(&body);
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    out
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What a signatures file holds.
#[derive(Debug)]
pub struct Stored {
    pub serial: u32,
    pub digest: u64,
    /// The journal digest of the signed zone (version 2 files).
    pub zone_digest: Option<u64>,
    pub records: Vec<Record>,
}

/// Reads a signatures file; any damage is an error saying what.
pub fn decode(bytes: &[u8]) -> Result<Stored, String> {
    let (magic, version2) = if bytes.starts_with(MAGIC) {
        (MAGIC, true)
    } else if bytes.starts_with(MAGIC_V1) {
        (MAGIC_V1, false)
    } else {
        return Err("not a mailzone signatures file".into());
    };
    let header = if version2 { 32 } else { 24 };
    if bytes.len() < magic.len() + header {
        return Err("the file is cut short".into());
    }
    let (content, sum) = bytes.split_at(bytes.len() - 8);
    let sum = u64::from_be_bytes(sum.try_into().map_err(|_| "the file is cut short")?);
    if checksum(content) != sum {
        return Err("the checksum does not match: the file is damaged".into());
    }
    let body = &content[magic.len()..];
    let serial = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let digest = u64::from_be_bytes(body[4..12].try_into().map_err(|_| "cut short")?);
    let (zone_digest, body) = if version2 {
        (
            Some(u64::from_be_bytes(
                body[12..20].try_into().map_err(|_| "cut short")?,
            )),
            &body[8..],
        )
    } else {
        (None, body)
    };
    let count = u32::from_be_bytes([body[12], body[13], body[14], body[15]]);
    let mut decoder = BinDecoder::new(&body[16..]);
    let mut records = Vec::with_capacity(count.min(1 << 20) as usize);
    for i in 0..count {
        let r = Record::read(&mut decoder).map_err(|e| format!("record {i}: {e}"))?;
        if !is_generated(r.record_type()) {
            return Err(format!("record {i} is a {} record", r.record_type()));
        }
        records.push(r);
    }
    if !decoder.is_empty() {
        return Err("bytes after the last record".into());
    }
    Ok(Stored {
        serial,
        digest,
        zone_digest,
        records,
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

impl Zone {
    /// Parses a zone file: like [`Zone::from_master_text`], but DNSSEC records written by
    /// hand are refused with their line. mailzone makes them when it signs the zone; a
    /// hand-written DNSKEY or CDS would be served beside (or instead of) the real ones and
    /// could point the parent at a key nobody signs with.
    pub fn from_zone_file_text(origin: &Name, text: &str) -> Result<Zone, ZoneError> {
        Zone::build(origin.clone(), zone_file_records(origin, text)?)
    }

    /// A zone file's zone with its stored signatures, built once, when they were made for
    /// exactly the file's records (serial and digest of the records as read). `Err` gives
    /// the records back when they do not apply that way (the caller builds the zone alone
    /// and tries [`Zone::with_stored`], which also sees through duplicates and TTLs that
    /// the build merges); a build that fails with them is `Ok(Err(..))`.
    pub fn build_with_stored(
        origin: &Name,
        records: Vec<SourcedRecord>,
        stored: Stored,
    ) -> Result<Result<Zone, ZoneError>, (Vec<SourcedRecord>, Stored)> {
        let serial = records.iter().find_map(|r| match &r.record.data {
            RData::SOA(soa) if r.record.name == *origin => Some(soa.serial),
            _ => None,
        });
        if serial != Some(stored.serial) || records_digest(&records) != stored.digest {
            return Err((records, stored));
        }
        let known = stored.zone_digest;
        let all: Vec<SourcedRecord> = records
            .into_iter()
            .chain(
                stored
                    .records
                    .into_iter()
                    .map(|record| SourcedRecord { record, line: 0 }),
            )
            .collect();
        Ok(Zone::build(origin.clone(), all).map(|mut zone| {
            if let Some(d) = known {
                zone.set_known_digest(d);
            }
            zone
        }))
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
        let mut zone = self
            .with_generated(stored.records)
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
    fn a_damaged_signatures_file_is_refused() {
        let origin = Name::from_ascii("example.test.").unwrap();
        let zone = Zone::from_master_text(
            &origin,
            "$TTL 300\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n",
        )
        .unwrap();
        let mut bytes = encode(&zone);
        assert!(decode(&bytes).is_ok());
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        assert!(decode(&bytes).unwrap_err().contains("damaged"));
    }
}
