//! The catalog zone (RFC 9432, version 2): one zone listing every hosted zone, which
//! catalog-consuming secondaries (Knot, BIND) read to start and stop serving zones by
//! themselves.
//!
//! This module owns what the catalog holds — apex SOA and `NS invalid.`, `version TXT "2"`,
//! one `<id>.zones PTR <member>.` per member — and the rule for member ids: an id once given
//! stays with its member for as long as the member is listed (the catalog on disk is where
//! the ids are remembered), and a new member gets the hash of its lower-case wire name, made
//! unique when it collides. It only computes zones and changes: it must not do I/O nor
//! decide when the catalog is written (the daemon's writer does both).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;

use hickory_proto::rr::rdata::{NS, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::edit::{ChangeKind, RrsetChange};
use super::{SourcedRecord, Zone, ZoneError, label_count};

/// The catalog schema version we write (RFC 9432 §4.2.1).
pub const VERSION: &str = "2";

/// TTL of every catalog record: nobody should cache a catalog (RFC 9432 §4, examples).
pub const TTL: u32 = 0;

/// Bytes of the SHA-256 of a member's name kept in its id (16 hex digits). Collisions are
/// handled anyway; this only keeps them out of reach in practice.
const ID_BYTES: usize = 8;

/// `zones.<catalog>`, under which members are listed.
pub fn zones_name(catalog: &Name) -> Name {
    // "zones" is a valid label; appending it to a valid name can only fail past 255 bytes,
    // which a catalog name checked at load leaves room for.
    catalog
        .prepend_label("zones")
        .unwrap_or_else(|_| catalog.clone())
}

/// `version.<catalog>`, which carries the schema version.
pub fn version_name(catalog: &Name) -> Name {
    catalog
        .prepend_label("version")
        .unwrap_or_else(|_| catalog.clone())
}

/// The id a member gets when it has none yet: the first bytes of the SHA-256 of its
/// lower-case wire name, in hex. The same member always gets the same id, so a catalog
/// rebuilt after its file was lost gives secondaries the ids they already know.
pub fn hashed_id(member: &Name) -> String {
    let mut wire = Vec::with_capacity(member.len() + 2);
    for label in member.iter() {
        wire.push(label.len() as u8);
        wire.extend(label.iter().map(|b| b.to_ascii_lowercase()));
    }
    wire.push(0);
    let digest = ring::digest::digest(&ring::digest::SHA256, &wire);
    let mut id = String::with_capacity(2 * ID_BYTES);
    for b in &digest.as_ref()[..ID_BYTES] {
        let _ = write!(id, "{b:02x}");
    }
    id
}

/// A catalog with no member yet: SOA, `NS invalid.` and the version.
pub fn empty(
    catalog: &Name,
    serial: u32,
    refresh: u32,
    retry: u32,
    expire: u32,
) -> Result<Zone, ZoneError> {
    // RFC 9432 §4.1: the apex NS is `invalid.`; the SOA names are never used either.
    let invalid = Name::from_ascii("invalid.").unwrap_or_else(|_| Name::root());
    let as_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let soa = SOA::new(
        invalid.clone(),
        invalid.clone(),
        serial,
        as_i32(refresh),
        as_i32(retry),
        as_i32(expire),
        0,
    );
    let records = vec![
        Record::from_rdata(catalog.clone(), TTL, RData::SOA(soa)),
        Record::from_rdata(catalog.clone(), TTL, RData::NS(NS(invalid))),
        Record::from_rdata(
            version_name(catalog),
            TTL,
            RData::TXT(TXT::new(vec![VERSION.to_string()])),
        ),
    ];
    Zone::build(
        catalog.clone(),
        records
            .into_iter()
            .map(|record| SourcedRecord { record, line: 0 })
            .collect(),
    )
}

/// Whether `zone` looks like a catalog: its version name holds a TXT.
pub fn is_catalog(zone: &Zone) -> bool {
    zone.view()
        .node(&version_name(zone.origin()))
        .is_some_and(|n| n.rrset(RecordType::TXT).is_some())
}

/// The members a catalog lists: member name (lower case) → its id, for every id holding
/// exactly one PTR; when two ids list the same member, the first id in order keeps it.
pub fn members(catalog: &Zone) -> BTreeMap<Name, String> {
    let mut out = BTreeMap::new();
    for (id, entry) in entries(catalog) {
        if let Some(member) = entry.member
            && !out.contains_key(&member)
        {
            out.insert(member, id);
        }
    }
    out
}

/// What is listed under one id.
#[derive(Default)]
struct Entry {
    /// The member, when the id holds exactly one PTR.
    member: Option<Name>,
    /// Every rrset at and below the id (the PTR, member properties), to delete it whole.
    rrsets: BTreeSet<(Name, RecordType)>,
}

/// The ids under `zones.<catalog>`, in order (lower case), with what each holds.
fn entries(catalog: &Zone) -> BTreeMap<String, Entry> {
    let zones = zones_name(catalog.origin());
    let id_labels = label_count(&zones) + 1;
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    let mut ptrs: BTreeMap<String, Vec<Name>> = BTreeMap::new();
    let view = catalog.view();
    for r in view.records() {
        if label_count(&r.name) < id_labels || !zones.zone_of(&r.name) {
            continue;
        }
        let id_name = r.name.trim_to(id_labels);
        let id = id_name
            .iter()
            .next()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .unwrap_or_default();
        let entry = out.entry(id.clone()).or_default();
        entry.rrsets.insert((r.name.clone(), r.record_type()));
        if r.name == id_name
            && let RData::PTR(PTR(member)) = &r.data
        {
            ptrs.entry(id).or_default().push(member.to_lowercase());
        }
    }
    for (id, mut targets) in ptrs {
        if targets.len() == 1
            && let Some(entry) = out.get_mut(&id)
        {
            entry.member = targets.pop();
        }
    }
    out
}

/// The changes that make `catalog` list exactly `wanted` (lower-case names, the catalog
/// itself not among them) with the current schema version; empty when it already does.
/// A listed member keeps its id; an id that lists a member no longer wanted, lists it a
/// second time or holds anything but one PTR goes whole (its properties with it).
pub fn plan(catalog: &Zone, wanted: &BTreeSet<Name>) -> Vec<RrsetChange> {
    let origin = catalog.origin();
    let mut changes = Vec::new();
    let view = catalog.view();
    let version_ok = view
        .node(&version_name(origin))
        .and_then(|n| n.rrset(RecordType::TXT))
        .is_some_and(|set| {
            set.records.len() == 1
                && matches!(&set.records[0].data, RData::TXT(t)
                    if t.txt_data.len() == 1 && &*t.txt_data[0] == VERSION.as_bytes())
        });
    if !version_ok {
        changes.push(RrsetChange {
            kind: ChangeKind::Replace,
            name: version_name(origin),
            rtype: RecordType::TXT,
            ttl: Some(TTL),
            records: vec![RData::TXT(TXT::new(vec![VERSION.to_string()]))],
        });
    }

    let entries = entries(catalog);
    // Ids never reused within one change, even those going: a secondary could take a
    // new member under an old id for the old member reset (RFC 9432 §5.4).
    let taken: HashSet<String> = entries.keys().cloned().collect();
    let mut listed: HashSet<Name> = HashSet::new();
    for entry in entries.values() {
        let keep = entry
            .member
            .as_ref()
            .is_some_and(|m| wanted.contains(m) && !listed.contains(m));
        if keep {
            if let Some(m) = &entry.member {
                listed.insert(m.clone());
            }
            continue;
        }
        for (name, rtype) in &entry.rrsets {
            changes.push(RrsetChange {
                kind: ChangeKind::Delete,
                name: name.clone(),
                rtype: *rtype,
                ttl: None,
                records: vec![],
            });
        }
    }

    let zones = zones_name(origin);
    let mut assigned: HashSet<String> = HashSet::new();
    for member in wanted.iter().filter(|m| !listed.contains(*m)) {
        let base = hashed_id(member);
        let mut id = base.clone();
        let mut n = 1;
        while taken.contains(&id) || assigned.contains(&id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        let Ok(owner) = zones.prepend_label(id.as_str()) else {
            continue;
        };
        assigned.insert(id);
        changes.push(RrsetChange {
            kind: ChangeKind::Replace,
            name: owner,
            rtype: RecordType::PTR,
            ttl: Some(TTL),
            records: vec![RData::PTR(PTR(member.clone()))],
        });
    }
    changes
}

/// The catalog listing `member` too, under its hashed id, with `serial`: the quick way for
/// a zone just created (a copy of the catalog, no rebuild). `None` when the quick way does
/// not apply (the id is taken): the caller then uses [`plan`].
///
/// Correct only when `catalog` lists exactly the other zones, which the writer keeps true
/// (every change of the zone set changes the catalog; start and reload re-check it).
pub fn with_member(catalog: &Zone, member: &Name, serial: u32) -> Option<Zone> {
    let zones = zones_name(catalog.origin());
    let owner = zones.prepend_label(hashed_id(member).as_str()).ok()?;
    let view = catalog.view();
    if view.node(&owner).is_some() {
        return None;
    }
    let member = member.to_lowercase();
    let rdata_len = super::limits::rdata_len(&RData::PTR(PTR(member.clone())));
    let record = Record::from_rdata(owner.clone(), TTL, RData::PTR(PTR(member)));
    let mut next = (*view).clone();
    next.nodes.entry(zones).or_default();
    next.nodes.insert(
        owner.clone(),
        super::Node {
            rrsets: vec![super::RrSet {
                rtype: RecordType::PTR,
                records: vec![record],
                answer_size: super::limits::answer_size(&owner, [rdata_len]),
            }],
            delegation: false,
        },
    );
    let mut soa = catalog.soa().clone();
    set_serial(&mut soa, &mut next, serial);
    Some(Zone::from_view(next, soa, catalog.record_count() + 1))
}

/// The catalog without `member`, with `serial`: the quick way for a zone just deleted.
/// `None` when it does not apply (the member is not under its hashed id, or its id has
/// names below it): the caller then uses [`plan`]. Same condition as [`with_member`].
pub fn without_member(catalog: &Zone, member: &Name, serial: u32) -> Option<Zone> {
    let zones = zones_name(catalog.origin());
    let owner = zones.prepend_label(hashed_id(member).as_str()).ok()?;
    let view = catalog.view();
    let node = view.node(&owner)?;
    let lists_it = node.rrsets.len() == 1
        && node.rrsets[0].records.len() == 1
        && matches!(&node.rrsets[0].records[0].data, RData::PTR(PTR(m)) if m == member);
    let owner_labels = label_count(&owner);
    let below = |n: &Name| label_count(n) > owner_labels && owner.zone_of(n);
    if !lists_it || view.nodes.keys().any(below) {
        return None;
    }
    let mut next = (*view).clone();
    next.nodes.remove(&owner);
    // `zones.<catalog>` goes with its last member, as a rebuild would have it.
    let zones_labels = label_count(&zones);
    let has_member = next
        .nodes
        .keys()
        .any(|n| label_count(n) > zones_labels && zones.zone_of(n));
    if !has_member && next.nodes.get(&zones).is_some_and(|n| n.rrsets.is_empty()) {
        next.nodes.remove(&zones);
    }
    let mut soa = catalog.soa().clone();
    set_serial(&mut soa, &mut next, serial);
    Some(Zone::from_view(next, soa, catalog.record_count() - 1))
}

/// Sets the SOA serial everywhere a zone keeps its SOA.
fn set_serial(soa: &mut Record, zone: &mut super::View, serial: u32) {
    for soa in [soa, &mut zone.negative_soa] {
        if let RData::SOA(s) = &mut soa.data {
            s.serial = serial;
        }
    }
    let origin = zone.origin.clone();
    if let Some(set) = zone
        .nodes
        .get_mut(&origin)
        .and_then(|n| n.rrsets.iter_mut().find(|s| s.rtype == RecordType::SOA))
    {
        for r in &mut set.records {
            if let RData::SOA(s) = &mut r.data {
                s.serial = serial;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn catalog() -> Name {
        name("catalog.invalid.")
    }

    fn with(zone: &Zone, members: &[&str], serial: u32) -> Zone {
        let wanted: BTreeSet<Name> = members.iter().map(|m| name(m)).collect();
        zone.with_changes(&plan(zone, &wanted), serial, TTL)
            .unwrap()
    }

    #[test]
    fn a_member_added_after_the_answers_were_compiled_is_answered() {
        // The catalog gains members by cloning its zone: the clone must not keep the
        // answers compiled for the records before the change.
        let z = with(
            &empty(&catalog(), 1, 3600, 600, 86400).unwrap(),
            &["a.test."],
            2,
        );
        let owner = zones_name(&catalog())
            .prepend_label(hashed_id(&name("b.test.")))
            .unwrap();
        let key = crate::zone::compiled::wire_key(&owner);
        let (qname, _) = crate::zone::compiled::WireName::read(&key).unwrap();
        let before = z.compiled().find(&qname, 12, 2).unwrap();
        assert_eq!(before.entry.answers, 0, "b.test. is not a member yet");
        let next = with_member(&z, &name("b.test."), 3).unwrap();
        let after = next.compiled().find(&qname, 12, 2).unwrap();
        assert_eq!(after.entry.answers, 1);
    }

    #[test]
    fn an_empty_catalog_has_soa_ns_invalid_and_version_2() {
        let z = empty(&catalog(), 1, 3600, 600, 86400).unwrap();
        assert_eq!(z.record_count(), 3);
        assert!(is_catalog(&z));
        assert!(plan(&z, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn each_member_gets_one_ptr_under_zones_with_its_hashed_id() {
        let z = with(
            &empty(&catalog(), 1, 3600, 600, 86400).unwrap(),
            &["a.test.", "b.test."],
            2,
        );
        let m = members(&z);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&name("a.test.")], hashed_id(&name("a.test.")));
        let owner = name(&format!("{}.zones.catalog.invalid.", m[&name("b.test.")]));
        assert!(
            z.view()
                .node(&owner)
                .unwrap()
                .rrset(RecordType::PTR)
                .is_some()
        );
        assert!(plan(&z, &m.keys().cloned().collect()).is_empty());
    }

    #[test]
    fn the_hashed_id_ignores_case() {
        assert_eq!(hashed_id(&name("A.Test.")), hashed_id(&name("a.test.")));
        assert_ne!(hashed_id(&name("a.test.")), hashed_id(&name("b.test.")));
    }

    #[test]
    fn ids_stay_with_their_members_when_others_come_and_go() {
        let z = with(
            &empty(&catalog(), 1, 3600, 600, 86400).unwrap(),
            &["a.test.", "b.test."],
            2,
        );
        let before = members(&z);
        let z = with(&z, &["b.test.", "c.test."], 3);
        let after = members(&z);
        assert_eq!(after[&name("b.test.")], before[&name("b.test.")]);
        assert!(!after.contains_key(&name("a.test.")));
        assert_eq!(z.serial(), 3);
    }

    #[test]
    fn a_colliding_id_gets_a_suffix_and_the_holder_keeps_its_own() {
        // Another member already sits on the id c.test. would hash to.
        let squatted = hashed_id(&name("c.test."));
        let text = format!(
            "$TTL 0\n@ SOA invalid. invalid. 1 3600 600 86400 0\n@ NS invalid.\n\
             version TXT \"2\"\n{squatted}.zones PTR x.test.\n"
        );
        let z = Zone::from_master_text(&catalog(), &text).unwrap();
        let z = with(&z, &["x.test.", "c.test."], 2);
        let m = members(&z);
        assert_eq!(m[&name("x.test.")], squatted);
        assert_eq!(m[&name("c.test.")], format!("{squatted}-2"));
    }

    #[test]
    fn a_removed_member_goes_with_its_properties() {
        let id = hashed_id(&name("a.test."));
        let text = format!(
            "$TTL 0\n@ SOA invalid. invalid. 1 3600 600 86400 0\n@ NS invalid.\n\
             version TXT \"2\"\n{id}.zones PTR a.test.\ngroup.{id}.zones TXT \"g\"\n"
        );
        let z = Zone::from_master_text(&catalog(), &text).unwrap();
        let z = with(&z, &[], 2);
        assert_eq!(
            z.record_count(),
            3,
            "{:?}",
            z.view().records().collect::<Vec<_>>()
        );
    }

    /// Every record as text, sorted: two zones with the same records compare equal.
    fn lines(z: &Zone) -> Vec<String> {
        let mut v: Vec<String> = z
            .view()
            .records()
            .map(super::super::writer::record_line)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_quick_add_and_remove_give_what_a_rebuild_gives() {
        let base = with(
            &empty(&catalog(), 1, 3600, 600, 86400).unwrap(),
            &["a.test."],
            2,
        );
        let added = with_member(&base, &name("B.test."), 3).unwrap();
        let rebuilt = with(&base, &["a.test.", "b.test."], 3);
        assert_eq!(lines(&added), lines(&rebuilt));
        assert_eq!(added.record_count(), rebuilt.record_count());
        assert_eq!(added.serial(), 3);
        assert!(added.view().node(&name("zones.catalog.invalid.")).is_some());

        let removed = without_member(&added, &name("a.test."), 4).unwrap();
        assert_eq!(lines(&removed), lines(&with(&added, &["b.test."], 4)));
        let last = without_member(&removed, &name("b.test."), 5).unwrap();
        assert_eq!(lines(&last), lines(&with(&removed, &[], 5)));
        assert!(last.view().node(&name("zones.catalog.invalid.")).is_none());
        // Not listed, or listed under another id: the quick way declines.
        assert!(without_member(&last, &name("b.test."), 6).is_none());
        assert!(with_member(&added, &name("a.test."), 6).is_none());
    }

    #[test]
    fn a_duplicate_listing_and_a_wrong_version_are_repaired() {
        let text = "$TTL 0\n@ SOA invalid. invalid. 1 3600 600 86400 0\n@ NS invalid.\n\
             version TXT \"1\"\naa.zones PTR a.test.\nbb.zones PTR a.test.\n";
        let z = Zone::from_master_text(&catalog(), text).unwrap();
        let z = with(&z, &["a.test."], 2);
        assert_eq!(members(&z)[&name("a.test.")], "aa");
        assert_eq!(z.record_count(), 4);
        assert!(plan(&z, &[name("a.test.")].into_iter().collect()).is_empty());
    }
}
