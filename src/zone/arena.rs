//! The compact form of a zone's records, and building a zone into it.
//!
//! This module owns the one byte arena each [`Zone`] keeps its records in, checking records
//! into it (the zone rules of [`Zone::build`]: one SOA at the apex, no CNAME beside other
//! data, nothing outside the zone, sizes an answer can carry), and decoding it back into a
//! [`View`] on demand. It must not answer queries nor keep views: [`Zone::view`] decides
//! when one is kept.
//!
//! Layout: nodes one after the other, sorted by lower-cased owner; each node is its owner
//! name in uncompressed wire form, with the spelling the first of its records had (answers
//! and AXFR give it back), a 16-bit record count, then each record as RFC 1035 §3.2.1 lays
//! it out without owner nor class (all IN): TYPE (16), TTL (32), RDLENGTH (16), RDATA with
//! its names uncompressed. The records of one rrset follow each other, rrsets sorted by
//! type; empty non-terminals are not stored (the view derives them). The NSEC3 chain (NSEC3
//! records and their RRSIGs) is a second run of nodes from `nsec3_at`, kept apart as the
//! view keeps it apart. A node over 65,535 records is written as two nodes with one owner.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::OnceLock;

use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding, Restrict,
};

use super::{
    CompiledCell, Node, RrSet, SourcedRecord, View, ViewCell, Zone, ZoneError, from_line,
    label_count, limits, signed, writer,
};

/// One record on its way into the arena: byte ranges into the build's scratch buffers.
struct Item {
    /// Lower-cased owner in wire form (in `keys`): the grouping key.
    key: (u32, u16),
    /// The owner as spelled, wire form (in `names`).
    name: (u32, u16),
    /// RDATA, wire form (in `rdata`); length `u32::MAX` when it could not be encoded.
    rdata: (u32, u32),
    rtype: u16,
    ttl: u32,
    line: usize,
    /// Index in the user records, or `None` for a generated wire record.
    user: Option<usize>,
}

/// The scratch buffers of one build.
#[derive(Default)]
struct Scratch {
    keys: Vec<u8>,
    names: Vec<u8>,
    rdata: Vec<u8>,
}

impl Scratch {
    fn key(&self, i: &Item) -> &[u8] {
        &self.keys[i.key.0 as usize..i.key.0 as usize + usize::from(i.key.1)]
    }
    fn name(&self, i: &Item) -> &[u8] {
        &self.names[i.name.0 as usize..i.name.0 as usize + usize::from(i.name.1)]
    }
    fn rdata(&self, i: &Item) -> &[u8] {
        if i.rdata.1 == u32::MAX {
            return &[];
        }
        &self.rdata[i.rdata.0 as usize..(i.rdata.0 + i.rdata.1) as usize]
    }
}

/// The first error in file order wins, whichever check found it: the build reports what
/// a reader going down the file would meet first.
#[derive(Default)]
struct FirstError(Option<ZoneError>);

impl FirstError {
    fn offer(&mut self, line: usize, message: impl FnOnce() -> String) {
        if self.0.as_ref().is_none_or(|e| line < e.line) {
            self.0 = Some(ZoneError {
                line,
                message: message(),
            });
        }
    }
}

/// A name as the zone file writes it, formatted only when shown.
fn shown(name: &Name) -> String {
    writer::name_text(name)
}

/// Writes `name` in wire form, as spelled and lower-cased.
fn push_name(name: &Name, spelled: &mut Vec<u8>, lower: &mut Vec<u8>) {
    let start = spelled.len();
    for label in name.iter() {
        spelled.push(label.len() as u8);
        spelled.extend_from_slice(label);
    }
    spelled.push(0);
    // Lower-cased in place: length bytes (at most 63) have no upper-case letters.
    let at = lower.len();
    lower.extend_from_slice(&spelled[start..]);
    lower[at..].make_ascii_lowercase();
}

/// Writes the record data of the common types in wire form (names uncompressed, as
/// spelled) to `out`, as hickory's encoder would, without it: it keeps a table of name
/// offsets per record, a third of building a zone. `false` (and `out` partly
/// written) for any other type, or data hickory would refuse to encode: the caller then
/// encodes it with hickory.
fn emit_common(data: &RData, out: &mut Vec<u8>) -> bool {
    fn name(n: &Name, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        for label in n.iter() {
            if label.len() > 63 {
                return false;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        }
        out.push(0);
        out.len() - start <= 255
    }
    match data {
        RData::A(a) => out.extend_from_slice(&a.0.octets()),
        RData::AAAA(a) => out.extend_from_slice(&a.0.octets()),
        RData::NS(n) => return name(&n.0, out),
        RData::CNAME(n) => return name(&n.0, out),
        RData::PTR(n) => return name(&n.0, out),
        RData::MX(mx) => {
            out.extend_from_slice(&mx.preference.to_be_bytes());
            return name(&mx.exchange, out);
        }
        RData::SRV(srv) => {
            out.extend_from_slice(&srv.priority.to_be_bytes());
            out.extend_from_slice(&srv.weight.to_be_bytes());
            out.extend_from_slice(&srv.port.to_be_bytes());
            return name(&srv.target, out);
        }
        RData::TXT(txt) => {
            for s in txt.txt_data.iter() {
                let Ok(len) = u8::try_from(s.len()) else {
                    return false;
                };
                out.push(len);
                out.extend_from_slice(s);
            }
        }
        RData::SOA(soa) => {
            if !name(&soa.mname, out) || !name(&soa.rname, out) {
                return false;
            }
            out.extend_from_slice(&soa.serial.to_be_bytes());
            out.extend_from_slice(&soa.refresh.to_be_bytes());
            out.extend_from_slice(&soa.retry.to_be_bytes());
            out.extend_from_slice(&soa.expire.to_be_bytes());
            out.extend_from_slice(&soa.minimum.to_be_bytes());
        }
        _ => return false,
    }
    true
}

/// The length of an owner in an answer ([`limits`]' rule): a wildcard's is the longest
/// name it can stand for.
fn answer_owner_len(wire: &[u8]) -> usize {
    if wire.starts_with(b"\x01*") {
        255
    } else {
        wire.len()
    }
}

/// [`limits::answer_size`] for an owner in wire form.
fn answer_size(owner: &[u8], rdata_lens: impl IntoIterator<Item = usize>) -> usize {
    let owner_len = answer_owner_len(owner);
    let fixed = 12 + owner_len + 4 + 11;
    rdata_lens.into_iter().fold(fixed, |t, len| {
        t.saturating_add(len.saturating_add(owner_len + 10))
    })
}

/// Checks `records` (and `generated`, raw wire RRs) as a zone of `origin` and builds it.
pub(super) fn build(
    mut origin: Name,
    records: Vec<SourcedRecord>,
    generated: &[u8],
) -> Result<Zone, ZoneError> {
    origin.set_fqdn(true);
    // Sized for a typical record (owner ~30 bytes, data ~40) so that they rarely grow: a
    // start builds 100,000 zones.
    let mut scratch = Scratch {
        keys: Vec::with_capacity(records.len() * 32 + generated.len() / 4),
        names: Vec::with_capacity(records.len() * 32 + generated.len() / 4),
        rdata: Vec::with_capacity(records.len() * 48 + generated.len()),
    };
    let mut origin_key = Vec::new();
    push_name(&origin, &mut Vec::new(), &mut origin_key);
    let mut errors = FirstError::default();
    let mut items: Vec<Item> = Vec::with_capacity(records.len());
    let mut nsec3_items: Vec<Item> = Vec::new();
    let mut soa: Option<(usize, usize)> = None;
    let mut nsec3_records: Vec<SourcedRecord> = Vec::new();

    {
        let mut one = Vec::with_capacity(512);
        for (i, SourcedRecord { record, line }) in records.iter().enumerate() {
            let line = *line;
            if !origin.zone_of(&record.name) {
                errors.offer(line, || {
                    format!(
                        "{} is outside the zone {}",
                        shown(&record.name),
                        shown(&origin)
                    )
                });
                continue;
            }
            let rtype = record.record_type();
            if rtype == RecordType::SOA {
                if record.name != origin {
                    errors.offer(line, || {
                        format!(
                            "SOA at {} is not at the zone apex {}",
                            shown(&record.name),
                            shown(&origin)
                        )
                    });
                } else if let Some((_, first)) = soa {
                    errors.offer(line, || format!("a second SOA record{}", from_line(first)));
                } else {
                    soa = Some((i, line));
                }
            }
            // Data no answer could carry is refused here, naming the record, rather than
            // served as an empty truncated answer for ever.
            let rdata_len = limits::rdata_len(&record.data);
            let start = scratch.rdata.len();
            if rdata_len <= limits::MAX_RDATA && !emit_common(&record.data, &mut scratch.rdata) {
                scratch.rdata.truncate(start);
                one.clear();
                let mut encoder = BinEncoder::new(&mut one);
                encoder.set_name_encoding(NameEncoding::Uncompressed);
                if record.data.emit(&mut encoder).is_err() {
                    errors.offer(line, || {
                        format!(
                            "{rtype} at {}: the record data cannot be encoded",
                            shown(&record.name)
                        )
                    });
                }
                scratch.rdata.extend_from_slice(&one);
            }
            let stored_len = scratch.rdata.len() - start;
            let covered = signed::covered(record).map_or(0, u16::from);
            let nsec3 = rtype == RecordType::NSEC3 || covered == u16::from(RecordType::NSEC3);
            if !nsec3 && let Some(problem) = limits::rdata_problem(rdata_len) {
                errors.offer(line, || {
                    format!("{rtype} at {}: {problem}", shown(&record.name))
                });
            }
            let (ks, ns) = (scratch.keys.len(), scratch.names.len());
            push_name(&record.name, &mut scratch.names, &mut scratch.keys);
            let item = Item {
                key: (ks as u32, (scratch.keys.len() - ks) as u16),
                name: (ns as u32, (scratch.names.len() - ns) as u16),
                rdata: (start as u32, stored_len as u32),
                rtype: u16::from(rtype),
                ttl: record.ttl,
                line,
                user: Some(i),
            };
            if nsec3 {
                nsec3_records.push(SourcedRecord {
                    record: record.clone(),
                    line,
                });
                nsec3_items.push(item);
            } else {
                items.push(item);
            }
        }
    }
    if !generated.is_empty() {
        let mut rest = generated;
        let mut n = 0usize;
        while !rest.is_empty() {
            let rr = walk_wire_rr(rest, &origin_key).map_err(|m| ZoneError {
                line: 0,
                message: format!("generated record {n}: {m}"),
            })?;
            let ks = scratch.keys.len();
            scratch
                .keys
                .extend(rr.owner.iter().map(u8::to_ascii_lowercase));
            let ns = scratch.names.len();
            scratch.names.extend_from_slice(rr.owner);
            let rs = scratch.rdata.len();
            scratch.rdata.extend_from_slice(rr.rdata);
            let item = Item {
                key: (ks as u32, rr.owner.len() as u16),
                name: (ns as u32, rr.owner.len() as u16),
                rdata: (rs as u32, rr.rdata.len() as u32),
                rtype: rr.rtype,
                ttl: rr.ttl,
                line: 0,
                user: None,
            };
            if rr.rtype == u16::from(RecordType::NSEC3)
                || rr.covered == u16::from(RecordType::NSEC3)
            {
                nsec3_items.push(item);
            } else {
                items.push(item);
            }
            rest = &rest[rr.len..];
            n += 1;
        }
    }

    // One sort puts each node's records together, rrsets by type, in input order.
    let order = |a: &Item, b: &Item| {
        scratch
            .key(a)
            .cmp(scratch.key(b))
            .then(a.rtype.cmp(&b.rtype))
    };
    items.sort_by(order);
    nsec3_items.sort_by(order);

    let mut record_count = 0usize;
    let mut arena: Vec<u8> = Vec::with_capacity(scratch.rdata.len() + items.len() * 8 + 256);
    let mut signed = false;
    let mut apex_has_ns = false;
    let mut i = 0;
    while i < items.len() {
        let mut j = i + 1;
        while j < items.len() && scratch.key(&items[j]) == scratch.key(&items[i]) {
            j += 1;
        }
        let group = &items[i..j];
        let at_apex = scratch.key(&group[0]) == origin_key.as_slice();
        check_cname(group, &records, &mut errors);
        // The owner as its first record (in input order) spells it.
        let first = group
            .iter()
            .min_by_key(|it| (it.user.is_none(), it.user, it.line))
            .unwrap_or(&group[0]);
        let kept = write_node(
            &mut arena,
            scratch.name(first),
            group,
            &scratch,
            &records,
            &mut errors,
            true,
        );
        record_count += kept;
        if at_apex {
            apex_has_ns |= group.iter().any(|it| it.rtype == u16::from(RecordType::NS));
            signed |= group
                .iter()
                .any(|it| it.rtype == u16::from(RecordType::DNSKEY));
        }
        i = j;
    }
    let nsec3_at = arena.len();
    let mut i = 0;
    while i < nsec3_items.len() {
        let mut j = i + 1;
        while j < nsec3_items.len() && scratch.key(&nsec3_items[j]) == scratch.key(&nsec3_items[i])
        {
            j += 1;
        }
        let group = &nsec3_items[i..j];
        // The chain keeps every record as given, as it did before the arena.
        write_node(
            &mut arena,
            scratch.name(&group[0]),
            group,
            &scratch,
            &records,
            &mut errors,
            false,
        );
        record_count += group.len();
        i = j;
    }
    if let Some(e) = errors.0 {
        return Err(e);
    }
    let Some((soa_index, _)) = soa else {
        return Err(ZoneError {
            line: 0,
            message: format!("no SOA record at the zone apex {}", shown(&origin)),
        });
    };
    if !apex_has_ns {
        return Err(ZoneError {
            line: 0,
            message: format!("no NS record at the zone apex {}", shown(&origin)),
        });
    }
    if !nsec3_records.is_empty() {
        // Checked here so that a broken chain is refused at load, as before.
        signed::Nsec3Chain::build(&origin, nsec3_records)?;
    }
    let soa = records
        .into_iter()
        .nth(soa_index)
        .map(|r| r.record)
        .ok_or_else(|| ZoneError {
            line: 0,
            message: "the SOA went missing".into(),
        })?;
    Ok(Zone {
        origin,
        soa,
        arena: arena.into_boxed_slice(),
        nsec3_at: nsec3_at as u32,
        record_count: u32::try_from(record_count).unwrap_or(u32::MAX),
        signed,
        signature_facts: OnceLock::new(),
        journal: Default::default(),
        compiled: CompiledCell::default(),
        view: ViewCell::default(),
    })
}

/// The CNAME rules (RFC 1034 §3.6.2, RFC 2181 §10.1) for one owner's records, replayed in
/// input order so that the error names the same two lines a reader of the file would.
fn check_cname(group: &[Item], records: &[SourcedRecord], errors: &mut FirstError) {
    let cname = u16::from(RecordType::CNAME);
    if !group.iter().any(|it| it.rtype == cname) {
        return;
    }
    let mut in_order: Vec<&Item> = group.iter().collect();
    in_order.sort_by_key(|it| (it.user.is_none(), it.user));
    let mut cname_line: Option<usize> = None;
    let mut other_line: Option<usize> = None;
    for it in in_order {
        let rtype = RecordType::from(it.rtype);
        let owner = || {
            it.user
                .and_then(|u| records.get(u))
                .map_or_else(String::new, |r| shown(&r.record.name))
        };
        match rtype {
            // RRSIG and NSEC live beside a CNAME (RFC 4035 §2.5); the SOA has its own rule.
            RecordType::RRSIG | RecordType::NSEC | RecordType::SOA => {}
            RecordType::CNAME => {
                if let Some(first) = cname_line {
                    errors.offer(it.line, || {
                        format!("a second CNAME at {}{}", owner(), from_line(first))
                    });
                    return;
                }
                if let Some(other) = other_line {
                    errors.offer(it.line, || {
                        format!("CNAME at {} beside other data{}", owner(), from_line(other))
                    });
                    return;
                }
                cname_line = Some(it.line);
            }
            _ => {
                if let Some(c) = cname_line {
                    errors.offer(it.line, || {
                        format!("{rtype} at {} beside a CNAME{}", owner(), from_line(c))
                    });
                    return;
                }
                other_line.get_or_insert(it.line);
            }
        }
    }
}

/// Writes one node (its records sorted by type, input order within a type), merging
/// duplicates and giving each rrset its first record's TTL when `merge`; returns how many
/// records it kept.
fn write_node(
    arena: &mut Vec<u8>,
    owner: &[u8],
    group: &[Item],
    scratch: &Scratch,
    records: &[SourcedRecord],
    errors: &mut FirstError,
    merge: bool,
) -> usize {
    let mut kept: Vec<&Item> = Vec::with_capacity(group.len());
    let mut set_start = 0;
    let mut set_size = 0usize;
    for it in group {
        let first = kept.get(set_start).filter(|f| f.rtype == it.rtype);
        if first.is_none() {
            set_start = kept.len();
            set_size = answer_size(owner, []);
        }
        if merge {
            let duplicate = kept[set_start..].iter().any(|k| match (k.user, it.user) {
                (Some(a), Some(b)) => records[a].record.data == records[b].record.data,
                _ => scratch.rdata(k) == scratch.rdata(it),
            });
            if duplicate {
                continue;
            }
            set_size = set_size
                .saturating_add((it.rdata.1 as usize).saturating_add(answer_owner_len(owner) + 10));
            let count = kept.len() - set_start + 1;
            if let Some(problem) = limits::answer_problem(set_size, count) {
                let rtype = RecordType::from(it.rtype);
                let name = it
                    .user
                    .map_or_else(String::new, |u| shown(&records[u].record.name));
                errors.offer(it.line, || format!("{rtype} at {name}: {problem}"));
            }
        }
        kept.push(it);
    }
    for chunk in kept.chunks(usize::from(u16::MAX)) {
        arena.extend_from_slice(owner);
        arena.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        let mut set_ttl: Option<(u16, u32)> = None;
        for it in chunk {
            // RRSIGs keep their own TTLs: each is its covered rrset's (RFC 4035 §2.2).
            let ttl = match set_ttl {
                Some((t, ttl)) if t == it.rtype && merge && it.rtype != 46 => ttl,
                _ => {
                    set_ttl = Some((it.rtype, it.ttl));
                    it.ttl
                }
            };
            let rdata = scratch.rdata(it);
            arena.extend_from_slice(&it.rtype.to_be_bytes());
            arena.extend_from_slice(&ttl.to_be_bytes());
            arena.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            arena.extend_from_slice(rdata);
        }
    }
    kept.len()
}

/// One raw wire RR, walked.
struct WireRr<'a> {
    owner: &'a [u8],
    rtype: u16,
    covered: u16,
    ttl: u32,
    rdata: &'a [u8],
    len: usize,
}

/// The length of the uncompressed wire name at the start of `bytes`.
fn name_len(bytes: &[u8]) -> Result<usize, String> {
    let mut at = 0usize;
    loop {
        let l = usize::from(*bytes.get(at).ok_or("a name is cut short")?);
        if l == 0 {
            return Ok(at + 1);
        }
        if l > 63 {
            return Err("a compressed or malformed name".into());
        }
        at += 1 + l;
        if at >= 255 {
            return Err("a name over 255 bytes".into());
        }
    }
}

/// Walks the RR at the start of `bytes`: lengths and names, the owner inside the zone
/// (`origin_key`, lower-cased wire), a generated type, class IN, and the RDATA's fixed
/// parts for the types mailzone generates.
fn walk_wire_rr<'a>(bytes: &'a [u8], origin_key: &[u8]) -> Result<WireRr<'a>, String> {
    let owner_len = name_len(bytes)?;
    let owner = &bytes[..owner_len];
    if !inside_zone(owner, origin_key) {
        return Err("its owner is outside the zone".into());
    }
    let fixed = bytes
        .get(owner_len..owner_len + 10)
        .ok_or("the record is cut short")?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let rdata = bytes
        .get(owner_len + 10..owner_len + 10 + rdlen)
        .ok_or("the RDATA is cut short")?;
    if !signed::is_generated(RecordType::from(rtype)) {
        return Err(format!(
            "a {} record is not generated",
            RecordType::from(rtype)
        ));
    }
    if class != u16::from(DNSClass::IN) {
        return Err(format!("class {class}, not IN"));
    }
    let short = || "its RDATA is too short".to_string();
    let mut covered = 0;
    match RecordType::from(rtype) {
        RecordType::RRSIG => {
            // Type covered, algorithm, labels, original TTL, expiration, inception, key
            // tag (18 bytes), the signer's name, the signature.
            let fixed = rdata.get(..18).ok_or_else(short)?;
            covered = u16::from_be_bytes([fixed[0], fixed[1]]);
            let signer = name_len(&rdata[18..])?;
            if 18 + signer >= rdata.len() {
                return Err("an RRSIG without a signature".into());
            }
        }
        RecordType::NSEC => {
            let next = name_len(rdata)?;
            walk_type_bitmaps(&rdata[next..])?;
        }
        RecordType::NSEC3 => {
            // Algorithm, flags, iterations, salt, hash, type bitmaps.
            let salt = usize::from(*rdata.get(4).ok_or_else(short)?);
            let hash_at = 5 + salt;
            let hash = usize::from(*rdata.get(hash_at).ok_or_else(short)?);
            let bitmaps = rdata.get(hash_at + 1 + hash..).ok_or_else(short)?;
            walk_type_bitmaps(bitmaps)?;
        }
        RecordType::NSEC3PARAM => {
            let salt = usize::from(*rdata.get(4).ok_or_else(short)?);
            if rdata.len() != 5 + salt {
                return Err("its NSEC3PARAM RDATA has the wrong length".into());
            }
        }
        // DNSKEY/CDNSKEY: flags, protocol, algorithm, key; CDS: key tag, algorithm,
        // digest type, digest.
        _ => {
            if rdata.len() < 5 {
                return Err(short());
            }
        }
    }
    Ok(WireRr {
        owner,
        rtype,
        covered,
        ttl,
        rdata,
        len: owner_len + 10 + rdlen,
    })
}

/// Type bitmaps (RFC 4034 §4.1.2): window, length 1..=32, bitmap; to the end.
fn walk_type_bitmaps(mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        let len = usize::from(*bytes.get(1).ok_or("a type bitmap is cut short")?);
        if !(1..=32).contains(&len) || bytes.len() < 2 + len {
            return Err("a malformed type bitmap".into());
        }
        bytes = &bytes[2 + len..];
    }
    Ok(())
}

/// Reads the nodes of `bytes` (a run of the arena) as records, calling `each` per node with
/// its owner and records (one rrset's records consecutive). A record whose RDATA does not
/// decode is skipped.
fn read_nodes(bytes: &[u8], mut each: impl FnMut(Name, Vec<(Record, usize)>)) {
    let mut decoder = BinDecoder::new(bytes);
    while !decoder.is_empty() {
        let Ok(name) = Name::read(&mut decoder) else {
            tracing::warn!("a zone's arena has a damaged name: the rest is not read");
            return;
        };
        let Ok(count) = decoder.read_u16().map(|c| c.unverified()) else {
            return;
        };
        let mut out = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let (Ok(rtype), Ok(ttl), Ok(rdlen)) = (
                decoder.read_u16().map(|v| v.unverified()),
                decoder.read_u32().map(|v| v.unverified()),
                decoder.read_u16().map(|v| v.unverified()),
            ) else {
                return;
            };
            let start = decoder.index();
            let rtype = RecordType::from(rtype);
            match RData::read(&mut decoder, rtype, Restrict::new(rdlen)) {
                Ok(data) if decoder.index() == start + usize::from(rdlen) => {
                    let mut record = Record::from_rdata(name.clone(), ttl, data);
                    record.dns_class = DNSClass::IN;
                    out.push((record, usize::from(rdlen)));
                }
                _ => {
                    tracing::warn!(%name, %rtype, "a stored record does not decode: left out");
                    // Skip to the next record, whatever the failed read consumed.
                    let Some(rest) = bytes.get(start + usize::from(rdlen)..) else {
                        return;
                    };
                    let consumed = bytes.len() - rest.len();
                    decoder = BinDecoder::new(bytes);
                    if decoder.read_slice(consumed).is_err() {
                        return;
                    }
                }
            }
        }
        each(name, out);
    }
}

/// What [`check_stored`] learnt of a stored arena while walking it.
pub(super) struct StoredFacts {
    pub record_count: usize,
    pub signed: bool,
    pub signatures: SignatureFacts,
    /// The apex owner (wire form, as spelled) and the SOA's TTL and RDATA.
    pub soa: (Vec<u8>, u32, Vec<u8>),
}

/// Walks an arena read back from a signatures file (format 4) before a zone is made of it:
/// every name and length in bounds, each run a whole number of nodes, every owner inside
/// the zone (`origin_key`, lower-cased wire), one SOA, at the apex, and NS there. The walk
/// touches each byte about once and decodes nothing: a restart of a signed zone costs its
/// file's bytes, not a parse. RDATA is not checked here: a damaged one that passes is left
/// out when a [`View`] decodes it, never served half-read.
pub(super) fn check_stored(
    arena: &[u8],
    nsec3_at: usize,
    origin_key: &[u8],
) -> Result<StoredFacts, String> {
    if nsec3_at > arena.len() {
        return Err("the NSEC3 run starts past the end".into());
    }
    let (soa_type, ns_type, dnskey) = (
        u16::from(RecordType::SOA),
        u16::from(RecordType::NS),
        u16::from(RecordType::DNSKEY),
    );
    let mut record_count = 0usize;
    let mut signed = false;
    let mut apex_ns = false;
    let mut signatures = SignatureFacts::default();
    let mut soa: Option<(Vec<u8>, u32, Vec<u8>)> = None;
    for (run, chain) in [(&arena[..nsec3_at], false), (&arena[nsec3_at..], true)] {
        let mut at = 0usize;
        while at < run.len() {
            let owner_len = name_len(&run[at..])?;
            let owner = &run[at..at + owner_len];
            if !inside_zone(owner, origin_key) {
                return Err("an owner is outside the zone".into());
            }
            let apex = !chain && owner.eq_ignore_ascii_case(origin_key);
            at += owner_len;
            let count = run.get(at..at + 2).ok_or("a node is cut short")?;
            let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
            at += 2;
            for _ in 0..count {
                let h = run.get(at..at + 8).ok_or("a record is cut short")?;
                let rtype = u16::from_be_bytes([h[0], h[1]]);
                let ttl = u32::from_be_bytes([h[2], h[3], h[4], h[5]]);
                let len = usize::from(u16::from_be_bytes([h[6], h[7]]));
                let rdata = run
                    .get(at + 8..at + 8 + len)
                    .ok_or("the RDATA is cut short")?;
                if rtype == soa_type {
                    if !apex || soa.is_some() {
                        return Err("an SOA record away from the apex, or a second one".into());
                    }
                    soa = Some((owner.to_vec(), ttl, rdata.to_vec()));
                }
                apex_ns |= apex && rtype == ns_type;
                signed |= apex && rtype == dnskey;
                signatures.note(rtype, rdata);
                at += 8 + len;
            }
            record_count += count;
        }
    }
    let soa = soa.ok_or("no SOA record at the apex")?;
    if !apex_ns {
        return Err("no NS record at the apex".into());
    }
    Ok(StoredFacts {
        record_count,
        signed,
        signatures,
        soa,
    })
}

/// A zone made of an arena read back from a signatures file (format 4), after
/// [`check_stored`]; `Err` says what is wrong with it.
pub(super) fn from_stored(mut origin: Name, arena: Vec<u8>, nsec3_at: u32) -> Result<Zone, String> {
    origin.set_fqdn(true);
    let mut origin_key = Vec::new();
    push_name(&origin, &mut Vec::new(), &mut origin_key);
    let facts = check_stored(&arena, nsec3_at as usize, &origin_key)?;
    let (owner, ttl, rdata) = facts.soa;
    let name =
        Name::read(&mut BinDecoder::new(&owner)).map_err(|e| format!("the apex name: {e}"))?;
    let mut decoder = BinDecoder::new(&rdata);
    let len = u16::try_from(rdata.len()).unwrap_or(u16::MAX);
    let data = RData::read(&mut decoder, RecordType::SOA, Restrict::new(len))
        .map_err(|e| format!("the SOA record: {e}"))?;
    if !decoder.is_empty() {
        return Err("the SOA record has bytes after its fields".into());
    }
    let mut soa = Record::from_rdata(name, ttl, data);
    soa.dns_class = DNSClass::IN;
    Ok(Zone {
        origin,
        soa,
        arena: arena.into_boxed_slice(),
        nsec3_at,
        record_count: u32::try_from(facts.record_count).unwrap_or(u32::MAX),
        signed: facts.signed,
        signature_facts: OnceLock::from(facts.signatures),
        journal: Default::default(),
        compiled: CompiledCell::default(),
        view: ViewCell::default(),
    })
}

/// Whether the wire name `owner` is `origin_key` (lower-cased wire) or below it, the origin
/// starting at one of its label boundaries.
fn inside_zone(owner: &[u8], origin_key: &[u8]) -> bool {
    if owner.len() < origin_key.len()
        || !owner[owner.len() - origin_key.len()..].eq_ignore_ascii_case(origin_key)
    {
        return false;
    }
    let mut at = 0;
    while at < owner.len() - origin_key.len() {
        at += 1 + usize::from(owner[at]);
    }
    at == owner.len() - origin_key.len()
}

/// One record of an arena, in place: its node's owner (wire form, as spelled), the record
/// header (TYPE, TTL, RDLENGTH: 8 bytes) and its RDATA.
struct InPlace<'a> {
    owner: &'a [u8],
    header: &'a [u8],
    rdata: &'a [u8],
}

impl InPlace<'_> {
    fn rtype(&self) -> u16 {
        u16::from_be_bytes([self.header[0], self.header[1]])
    }
}

/// The records of `arena` in order, read in place: nothing decoded nor allocated. The walk
/// ends at the first damaged length (an arena this build made has none; a stored one was
/// walked by [`check_stored`] before it was used).
fn in_place(arena: &[u8]) -> impl Iterator<Item = InPlace<'_>> {
    let mut at = 0usize;
    let mut owner: &[u8] = &[];
    let mut left = 0u16;
    std::iter::from_fn(move || {
        while left == 0 {
            let len = name_len(arena.get(at..)?).ok()?;
            owner = arena.get(at..at + len)?;
            let count = arena.get(at + len..at + len + 2)?;
            left = u16::from_be_bytes([count[0], count[1]]);
            at += len + 2;
        }
        let header = arena.get(at..at + 8)?;
        let len = usize::from(u16::from_be_bytes([header[6], header[7]]));
        let rdata = arena.get(at + 8..at + 8 + len)?;
        at += 8 + len;
        left -= 1;
        Some(InPlace {
            owner,
            header,
            rdata,
        })
    })
}

/// The generated (DNSSEC) records of `arena` as raw uncompressed wire RRs, one after the
/// other (owner, type, class IN, TTL, RDLENGTH, RDATA): the form
/// [`Zone::build_with_generated_wire`] takes, for stored signatures that must be joined
/// with a zone file's records read anew.
pub(super) fn generated_wire(arena: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in in_place(arena).filter(|r| signed::is_generated(RecordType::from(r.rtype()))) {
        out.extend_from_slice(r.owner);
        out.extend_from_slice(&r.header[..2]);
        out.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
        out.extend_from_slice(&r.header[2..]);
        out.extend_from_slice(r.rdata);
    }
    out
}

/// Whether a record of `arena` has type `rtype`, walking the record headers only.
pub(super) fn holds_type(arena: &[u8], rtype: u16) -> bool {
    any_record(arena, rtype, |_| true)
}

/// Whether a record of type `rtype` whose RDATA satisfies `check` is in `arena`: a walk
/// over the record headers, nothing decoded nor allocated.
pub(super) fn any_record(arena: &[u8], rtype: u16, check: impl Fn(&[u8]) -> bool) -> bool {
    in_place(arena).any(|r| r.rtype() == rtype && check(r.rdata))
}

/// The [`SignatureFacts`] of `arena`, in one walk over its record headers, nothing decoded
/// (for a zone built any other way than from stored signatures, on first use).
pub(super) fn signature_facts(arena: &[u8]) -> SignatureFacts {
    let mut facts = SignatureFacts::default();
    for r in in_place(arena) {
        facts.note(r.rtype(), r.rdata);
    }
    facts
}

/// What the DNSSEC policy asks of every signed zone at start, noted while an arena is walked
/// anyway (a stored one is checked record by record before it is served): planning the
/// re-signing of 10,000 zones then walks none of them again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignatureFacts {
    /// The earliest RRSIG expiration (unix seconds, RFC 4034 §3.1.5: RDATA bytes 8..12).
    pub earliest_expiry: Option<u64>,
    /// A CDS record with algorithm 0 (the RFC 8078 §4 delete record) is published.
    pub cds_delete: bool,
}

impl SignatureFacts {
    fn note(&mut self, rtype: u16, rdata: &[u8]) {
        if rtype == u16::from(RecordType::RRSIG) {
            if let Some(e) = rdata.get(8..12) {
                let e = u64::from(u32::from_be_bytes([e[0], e[1], e[2], e[3]]));
                self.earliest_expiry = Some(self.earliest_expiry.map_or(e, |x| x.min(e)));
            }
        } else if rtype == u16::from(RecordType::CDS) {
            // CDS RDATA: key tag (2), algorithm (1), digest type (1), digest.
            self.cds_delete |= rdata.get(2) == Some(&0);
        }
    }
}

/// The view of `zone`: its arena decoded into nodes, empty non-terminals, the NSEC owners
/// and the NSEC3 chain.
pub(super) fn decode(zone: &Zone) -> View {
    let origin = zone.origin.clone();
    let (main, chain) = zone.arena.split_at(zone.nsec3_at as usize);
    let mut nodes: HashMap<Name, Node> = HashMap::new();
    read_nodes(main, |name, records| {
        let node = nodes.entry(name).or_default();
        for (record, len) in records {
            let rtype = record.record_type();
            match node.rrsets.last_mut().filter(|s| s.rtype == rtype) {
                Some(set) => {
                    set.answer_size = set
                        .answer_size
                        .saturating_add(limits::record_size(&record.name, len));
                    set.records.push(record);
                }
                None => node.rrsets.push(RrSet {
                    rtype,
                    answer_size: limits::answer_size(&record.name, [len]),
                    records: vec![record],
                }),
            }
        }
    });
    let mut nsec3_records = Vec::new();
    read_nodes(chain, |_, records| {
        nsec3_records.extend(
            records
                .into_iter()
                .map(|(record, _)| SourcedRecord { record, line: 0 }),
        );
    });
    finish_view(zone, origin, nodes, nsec3_records)
}

fn finish_view(
    zone: &Zone,
    origin: Name,
    mut nodes: HashMap<Name, Node>,
    nsec3_records: Vec<SourcedRecord>,
) -> View {
    // Empty non-terminals: every name between a record's owner and the apex exists.
    let apex_labels = label_count(&origin);
    let deep: Vec<Name> = nodes
        .keys()
        .filter(|n| label_count(n) > apex_labels + 1)
        .cloned()
        .collect();
    for owner in deep {
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
    }
    let mut nsec_owners: Vec<Name> = if zone.signed {
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
        match signed::Nsec3Chain::build(&origin, nsec3_records) {
            Ok(chain) => Some(Box::new(chain)),
            Err(e) => {
                tracing::warn!(zone = %origin, error = %e, "the stored NSEC3 chain does not build: served without it");
                None
            }
        }
    };
    let mut negative_soa = zone.soa.clone();
    if let RData::SOA(s) = &zone.soa.data {
        negative_soa.ttl = zone.soa.ttl.min(s.minimum);
    }
    View {
        origin,
        negative_soa,
        nodes,
        has_delegations,
        has_wildcards,
        signed: zone.signed,
        nsec_owners,
        nsec3,
    }
}

/// The arena of exactly the records of `view` (nodes in canonical order), and where its
/// NSEC3 run starts.
pub(super) fn encode_view(view: &View) -> (Box<[u8]>, u32) {
    let mut arena = Vec::new();
    let mut names: Vec<&Name> = view
        .nodes
        .iter()
        .filter(|(_, n)| !n.rrsets.is_empty())
        .map(|(name, _)| name)
        .collect();
    names.sort_by(|a, b| canonical(a, b));
    let mut buf = Vec::new();
    for name in names {
        let Some(node) = view.nodes.get(name) else {
            continue;
        };
        let records: Vec<&Record> = node.rrsets.iter().flat_map(|s| &s.records).collect();
        write_records(&mut arena, &mut buf, name, &records);
    }
    let nsec3_at = arena.len() as u32;
    if let Some(chain) = &view.nsec3 {
        for record in chain.records() {
            write_records(&mut arena, &mut buf, &record.name, &[record]);
        }
    }
    (arena.into_boxed_slice(), nsec3_at)
}

fn canonical(a: &Name, b: &Name) -> Ordering {
    a.cmp(b)
}

fn write_records(arena: &mut Vec<u8>, buf: &mut Vec<u8>, owner: &Name, records: &[&Record]) {
    for chunk in records.chunks(usize::from(u16::MAX)) {
        push_name(owner, arena, &mut Vec::new());
        arena.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        for r in chunk {
            buf.clear();
            let mut encoder = BinEncoder::new(buf);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            // Data that does not encode was refused when the zone was built.
            let _ = r.data.emit(&mut encoder);
            arena.extend_from_slice(&u16::from(r.record_type()).to_be_bytes());
            arena.extend_from_slice(&r.ttl.to_be_bytes());
            arena.extend_from_slice(&(buf.len() as u16).to_be_bytes());
            arena.extend_from_slice(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_ascii("example.test.").unwrap()
    }

    #[test]
    fn the_common_types_are_encoded_byte_for_byte_as_hickory_encodes_them() {
        let text = "$TTL 300\n@ SOA Ns1 hostmaster.Example.test. 4294967295 2147483647 600 86400 300\n\
            @ NS ns1\n@ NS .\nns1 A 192.0.2.1\n@ AAAA 2001:db8::2\nwww CNAME A\\.b\\255\n\
            @ MX 0 .\n@ MX 65535 Mx.Other.\n_s._tcp SRV 1 2 65535 Mail\n\
            @ TXT \"\" \"v=spf1 -all\" \"\\000\\255\"\nr PTR x.y.\n";
        let records = crate::zone::master::read(text, &origin()).unwrap();
        let long = RData::TXT(hickory_proto::rr::rdata::TXT::from_bytes(vec![
            &[b'x'; 255][..],
            &[b'y'; 256][..],
        ]));
        let mut checked = 0;
        for data in records.iter().map(|r| &r.record.data).chain([&long]) {
            let mut want = Vec::new();
            let mut encoder = BinEncoder::new(&mut want);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            let encodes = data.emit(&mut encoder).is_ok();
            let mut ours = Vec::new();
            let ok = emit_common(data, &mut ours);
            assert_eq!(ok, encodes, "{data:?}");
            if ok {
                assert_eq!(ours, want, "{data:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, records.len());
    }

    #[test]
    fn an_owner_keeps_the_spelling_of_its_first_record() {
        let text = "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\n\
                    ns1 A 192.0.2.1\nMail A 192.0.2.2\nmail AAAA 2001:db8::2\n";
        let zone = Zone::from_master_text(&origin(), text).unwrap();
        let view = zone.view();
        let node = view
            .node(&Name::from_ascii("mail.example.test.").unwrap())
            .unwrap();
        assert_eq!(node.rrsets.len(), 2);
        for set in &node.rrsets {
            assert!(
                set.records[0]
                    .name
                    .eq_case(&Name::from_ascii("Mail.example.test.").unwrap())
            );
        }
    }

    #[test]
    fn the_first_error_in_file_order_is_reported_whichever_check_finds_it() {
        let text = "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\n\
                    ns1 A 192.0.2.1\nzz CNAME ns1\nzz A 192.0.2.3\naa CNAME ns1\naa CNAME ns2\n";
        let e = Zone::from_master_text(&origin(), text).unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("beside a CNAME (line 5)"), "{e}");
    }
}
