//! RFC 2136 from the message to the rrset changes: the sections read and checked
//! (§3.1 zone, §3.2 prerequisites, §3.4.1 prescan), the prerequisites evaluated against a
//! zone, and the update section replayed on the rrsets it touches (§3.4.2) into
//! [`RrsetChange`]s for the writer.
//!
//! Everything here is pure and synchronous: it reads one [`Zone`] and never writes. It must
//! not verify signatures nor decide who may change what ([`super::policy`] does).

use std::collections::HashMap;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::zone::Zone;
use crate::zone::edit::{ChangeKind, RrsetChange};

/// One prerequisite (RFC 2136 §2.4).
#[derive(Debug, Clone, PartialEq)]
pub enum Prereq {
    /// Class ANY, type ANY: the name has at least one record.
    NameInUse(Name),
    /// Class NONE, type ANY: the name has no record.
    NameNotInUse(Name),
    /// Class ANY, type T: the rrset exists, whatever its records.
    RrsetExists(Name, RecordType),
    /// Class NONE, type T: the rrset does not exist.
    RrsetAbsent(Name, RecordType),
    /// Class IN: the rrset is exactly these records (all of one name and type together).
    RrsetEquals(Name, RecordType, Vec<RData>),
}

/// One operation of the update section (RFC 2136 §2.5).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Class IN: add this record to its rrset.
    Add { name: Name, ttl: u32, data: RData },
    /// Class ANY, type T: delete the rrset.
    DeleteRrset { name: Name, rtype: RecordType },
    /// Class ANY, type ANY: delete every rrset of the name (at the apex, SOA and NS stay).
    DeleteName { name: Name },
    /// Class NONE: delete this record from its rrset.
    DeleteRr { name: Name, data: RData },
}

impl Op {
    pub fn name(&self) -> &Name {
        match self {
            Op::Add { name, .. }
            | Op::DeleteRrset { name, .. }
            | Op::DeleteName { name }
            | Op::DeleteRr { name, .. } => name,
        }
    }

    /// The type it touches; `None` for a whole name.
    pub fn rtype(&self) -> Option<RecordType> {
        match self {
            Op::Add { data, .. } | Op::DeleteRr { data, .. } => Some(data.record_type()),
            Op::DeleteRrset { rtype, .. } => Some(*rtype),
            Op::DeleteName { .. } => None,
        }
    }
}

/// An UPDATE request, read and prescanned.
#[derive(Debug, Clone)]
pub struct Update {
    pub zone: Name,
    pub prereqs: Vec<Prereq>,
    pub ops: Vec<Op>,
}

/// Why a request was answered with an error rcode, and what to log about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rcode: ResponseCode,
    pub reason: String,
}

impl Refusal {
    pub fn new(rcode: ResponseCode, reason: impl Into<String>) -> Self {
        Self {
            rcode,
            reason: reason.into(),
        }
    }
}

/// The zone section (§3.1.1): exactly one question, type SOA, class IN.
pub fn zone_of(message: &Message) -> Result<Name, Refusal> {
    match message.queries.as_slice() {
        [q] if q.query_type == RecordType::SOA && q.query_class == DNSClass::IN => {
            let mut zone = q.name.clone();
            zone.set_fqdn(true);
            Ok(zone)
        }
        _ => Err(Refusal::new(
            ResponseCode::FormErr,
            "the zone section must hold one SOA question of class IN",
        )),
    }
}

/// Types that are not data: never added, never deleted one by one.
fn is_meta(rtype: RecordType) -> bool {
    matches!(
        rtype,
        RecordType::ANY
            | RecordType::AXFR
            | RecordType::IXFR
            | RecordType::OPT
            | RecordType::TSIG
            | RecordType::Unknown(253 | 254)
    )
}

fn formerr(reason: impl Into<String>) -> Refusal {
    Refusal::new(ResponseCode::FormErr, reason)
}

fn outside(zone: &Name, name: &Name) -> Option<Refusal> {
    (!zone.zone_of(name)).then(|| {
        Refusal::new(
            ResponseCode::NotZone,
            format!("{name} is outside the zone {zone}"),
        )
    })
}

/// Reads the prerequisite (answer) and update (authority) sections of a message whose zone
/// is `zone`, with the checks of §3.2 and §3.4.1 that need no zone data.
pub fn read(message: &Message, zone: Name) -> Result<Update, Refusal> {
    let mut prereqs = Vec::new();
    let mut equals: Vec<(Name, RecordType, Vec<RData>)> = Vec::new();
    for r in &message.answers {
        if let Some(refusal) = outside(&zone, &r.name) {
            return Err(refusal);
        }
        if r.ttl != 0 {
            return Err(formerr("a prerequisite has a TTL other than 0"));
        }
        let rtype = r.record_type();
        let empty = matches!(r.data, RData::Update0(_));
        let name = r.name.clone();
        match r.dns_class {
            DNSClass::ANY | DNSClass::NONE if !empty => {
                return Err(formerr("a class ANY or NONE prerequisite carries data"));
            }
            DNSClass::ANY if rtype == RecordType::ANY => prereqs.push(Prereq::NameInUse(name)),
            DNSClass::ANY => prereqs.push(Prereq::RrsetExists(name, rtype)),
            DNSClass::NONE if rtype == RecordType::ANY => prereqs.push(Prereq::NameNotInUse(name)),
            DNSClass::NONE => prereqs.push(Prereq::RrsetAbsent(name, rtype)),
            DNSClass::IN if !empty && !is_meta(rtype) => {
                match equals
                    .iter_mut()
                    .find(|(n, t, _)| *n == name && *t == rtype)
                {
                    Some((_, _, set)) => {
                        if !set.contains(&r.data) {
                            set.push(r.data.clone());
                        }
                    }
                    None => equals.push((name, rtype, vec![r.data.clone()])),
                }
            }
            _ => {
                return Err(formerr(
                    "a prerequisite of a class or form RFC 2136 does not know",
                ));
            }
        }
    }
    prereqs.extend(
        equals
            .into_iter()
            .map(|(n, t, set)| Prereq::RrsetEquals(n, t, set)),
    );

    let mut ops = Vec::new();
    for r in &message.authorities {
        if let Some(refusal) = outside(&zone, &r.name) {
            return Err(refusal);
        }
        ops.push(read_op(r)?);
    }
    Ok(Update { zone, prereqs, ops })
}

/// One record of the update section as an operation (§3.4.1.3's prescan).
fn read_op(r: &Record) -> Result<Op, Refusal> {
    let rtype = r.record_type();
    let empty = matches!(r.data, RData::Update0(_));
    let name = r.name.clone();
    match r.dns_class {
        DNSClass::IN => {
            if empty || is_meta(rtype) {
                return Err(formerr(format!("an addition of type {rtype} without data")));
            }
            Ok(Op::Add {
                name,
                ttl: r.ttl,
                data: r.data.clone(),
            })
        }
        DNSClass::ANY => {
            if r.ttl != 0 || !empty {
                return Err(formerr("a class ANY deletion with a TTL or data"));
            }
            if rtype == RecordType::ANY {
                Ok(Op::DeleteName { name })
            } else if is_meta(rtype) {
                Err(formerr(format!("a deletion of type {rtype}")))
            } else {
                Ok(Op::DeleteRrset { name, rtype })
            }
        }
        DNSClass::NONE => {
            if r.ttl != 0 || empty || is_meta(rtype) {
                return Err(formerr(
                    "a class NONE deletion needs TTL 0, data and a data type",
                ));
            }
            Ok(Op::DeleteRr {
                name,
                data: r.data.clone(),
            })
        }
        _ => Err(formerr(format!("an update of class {}", r.dns_class))),
    }
}

/// The prerequisites against the zone as it is (§3.2.5: the first one that fails decides).
pub fn check_prereqs(zone: &Zone, prereqs: &[Prereq]) -> Result<(), Refusal> {
    let view = zone.view();
    let in_use = |name: &Name| view.node(name).is_some_and(|n| !n.rrsets.is_empty());
    let rrset = |name: &Name, t: RecordType| view.node(name).and_then(|n| n.rrset(t));
    for p in prereqs {
        match p {
            Prereq::NameInUse(n) if !in_use(n) => {
                return Err(Refusal::new(
                    ResponseCode::NXDomain,
                    format!("prerequisite: {n} is not in use"),
                ));
            }
            Prereq::NameNotInUse(n) if in_use(n) => {
                return Err(Refusal::new(
                    ResponseCode::YXDomain,
                    format!("prerequisite: {n} is in use"),
                ));
            }
            Prereq::RrsetExists(n, t) if rrset(n, *t).is_none() => {
                return Err(Refusal::new(
                    ResponseCode::NXRRSet,
                    format!("prerequisite: no {t} rrset at {n}"),
                ));
            }
            Prereq::RrsetAbsent(n, t) if rrset(n, *t).is_some() => {
                return Err(Refusal::new(
                    ResponseCode::YXRRSet,
                    format!("prerequisite: a {t} rrset exists at {n}"),
                ));
            }
            Prereq::RrsetEquals(n, t, want) => {
                let same = rrset(n, *t).is_some_and(|set| {
                    set.records.len() == want.len()
                        && set.records.iter().all(|r| want.contains(&r.data))
                });
                if !same {
                    return Err(Refusal::new(
                        ResponseCode::NXRRSet,
                        format!("prerequisite: the {t} rrset at {n} differs"),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One rrset as the replay sees it: TTL and records.
#[derive(Debug, Clone, PartialEq)]
struct Set {
    ttl: u32,
    data: Vec<RData>,
}

/// The update section replayed (§3.4.2) on the rrsets it touches, starting from `zone`:
/// what each touched rrset becomes, as changes for the writer. Rrsets that end as they
/// began give no change. SOA and the apex NS are left to the caller to refuse; a name's
/// deletion at the apex keeps them, as §3.4.2.3 says.
pub fn replay(zone: &Zone, ops: &[Op]) -> Vec<RrsetChange> {
    let apex = zone.origin();
    let view = zone.view();
    let mut sets: HashMap<(Name, RecordType), Set> = HashMap::new();
    let mut order: Vec<(Name, RecordType)> = Vec::new();
    let original = |name: &Name, t: RecordType| -> Set {
        match view.node(name).and_then(|n| n.rrset(t)) {
            Some(set) => Set {
                ttl: set.records.first().map_or(0, |r| r.ttl),
                data: set.records.iter().map(|r| r.data.clone()).collect(),
            },
            None => Set {
                ttl: 0,
                data: Vec::new(),
            },
        }
    };
    // The types a name has now: the zone's, as replayed so far.
    let types_at = |sets: &HashMap<(Name, RecordType), Set>, name: &Name| -> Vec<RecordType> {
        let mut types: Vec<RecordType> = view
            .node(name)
            .map(|n| n.rrsets.iter().map(|s| s.rtype).collect())
            .unwrap_or_default();
        for (_, t) in sets.keys().filter(|(n, _)| n == name) {
            if !types.contains(t) {
                types.push(*t);
            }
        }
        types.retain(|t| {
            sets.get(&(name.clone(), *t))
                .is_none_or(|s| !s.data.is_empty())
        });
        types
    };
    let touch = |sets: &mut HashMap<(Name, RecordType), Set>,
                 order: &mut Vec<(Name, RecordType)>,
                 name: &Name,
                 t: RecordType| {
        let key = (name.clone(), t);
        if !sets.contains_key(&key) {
            sets.insert(key.clone(), original(name, t));
            order.push(key);
        }
    };
    for op in ops {
        match op {
            Op::Add { name, ttl, data } => {
                let t = data.record_type();
                let present = types_at(&sets, name);
                // §3.4.2.2: a CNAME beside other data, or other data beside a CNAME, is
                // ignored.
                if t == RecordType::CNAME && present.iter().any(|p| *p != RecordType::CNAME) {
                    continue;
                }
                if t != RecordType::CNAME && present.contains(&RecordType::CNAME) {
                    continue;
                }
                touch(&mut sets, &mut order, name, t);
                let Some(set) = sets.get_mut(&(name.clone(), t)) else {
                    continue;
                };
                if t == RecordType::CNAME {
                    set.data.clear();
                }
                if !set.data.contains(data) {
                    set.data.push(data.clone());
                }
                // One TTL per rrset (RFC 2181 §5.2): the last one given.
                set.ttl = *ttl;
            }
            Op::DeleteRrset { name, rtype } => {
                touch(&mut sets, &mut order, name, *rtype);
                if let Some(set) = sets.get_mut(&(name.clone(), *rtype)) {
                    set.data.clear();
                }
            }
            Op::DeleteName { name } => {
                for t in types_at(&sets, name) {
                    if name == apex && matches!(t, RecordType::SOA | RecordType::NS) {
                        continue;
                    }
                    touch(&mut sets, &mut order, name, t);
                    if let Some(set) = sets.get_mut(&(name.clone(), t)) {
                        set.data.clear();
                    }
                }
            }
            Op::DeleteRr { name, data } => {
                let t = data.record_type();
                touch(&mut sets, &mut order, name, t);
                if let Some(set) = sets.get_mut(&(name.clone(), t)) {
                    set.data.retain(|d| d != data);
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|(name, rtype)| {
            let end = sets.remove(&(name.clone(), rtype))?;
            let start = original(&name, rtype);
            let unchanged = start.data.len() == end.data.len()
                && start.data.iter().all(|d| end.data.contains(d))
                && (end.data.is_empty() || start.ttl == end.ttl);
            if unchanged {
                return None;
            }
            Some(if end.data.is_empty() {
                RrsetChange {
                    kind: ChangeKind::Delete,
                    name,
                    rtype,
                    ttl: None,
                    records: Vec::new(),
                }
            } else {
                RrsetChange {
                    kind: ChangeKind::Replace,
                    name,
                    rtype,
                    ttl: Some(end.ttl),
                    records: end.data,
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, TXT};

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn zone() -> Zone {
        Zone::from_master_text(
            &n("example.test."),
            "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.2\nwww A 192.0.2.3\nalias CNAME www\n",
        )
        .unwrap()
    }

    fn a(ip: [u8; 4]) -> RData {
        RData::A(A::from(std::net::Ipv4Addr::from(ip)))
    }

    #[test]
    fn prerequisites_give_the_rcode_of_the_first_that_fails() {
        let z = zone();
        let www = n("www.example.test.");
        let nope = n("nope.example.test.");
        assert!(check_prereqs(&z, &[Prereq::NameInUse(www.clone())]).is_ok());
        let rc = |p: Prereq| check_prereqs(&z, &[p]).unwrap_err().rcode;
        assert_eq!(rc(Prereq::NameInUse(nope.clone())), ResponseCode::NXDomain);
        assert_eq!(
            rc(Prereq::NameNotInUse(www.clone())),
            ResponseCode::YXDomain
        );
        assert_eq!(
            rc(Prereq::RrsetExists(www.clone(), RecordType::TXT)),
            ResponseCode::NXRRSet
        );
        assert_eq!(
            rc(Prereq::RrsetAbsent(www.clone(), RecordType::A)),
            ResponseCode::YXRRSet
        );
        assert_eq!(
            rc(Prereq::RrsetEquals(
                www.clone(),
                RecordType::A,
                vec![a([192, 0, 2, 2])]
            )),
            ResponseCode::NXRRSet
        );
        assert!(
            check_prereqs(
                &z,
                &[Prereq::RrsetEquals(
                    www,
                    RecordType::A,
                    vec![a([192, 0, 2, 3]), a([192, 0, 2, 2])]
                )]
            )
            .is_ok()
        );
    }

    #[test]
    fn deleting_the_apex_name_keeps_soa_and_ns() {
        let z = zone();
        let changes = replay(
            &z,
            &[Op::DeleteName {
                name: n("example.test."),
            }],
        );
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn adding_beside_a_cname_is_ignored_and_deleting_what_is_absent_changes_nothing() {
        let z = zone();
        let changes = replay(
            &z,
            &[
                Op::Add {
                    name: n("alias.example.test."),
                    ttl: 60,
                    data: RData::TXT(TXT::new(vec!["x".into()])),
                },
                Op::DeleteRr {
                    name: n("www.example.test."),
                    data: a([192, 0, 2, 9]),
                },
                Op::DeleteRrset {
                    name: n("none.example.test."),
                    rtype: RecordType::MX,
                },
            ],
        );
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn an_add_then_a_delete_of_the_same_record_in_one_update_changes_nothing() {
        let z = zone();
        let name = n("new.example.test.");
        let data = a([192, 0, 2, 7]);
        let changes = replay(
            &z,
            &[
                Op::Add {
                    name: name.clone(),
                    ttl: 60,
                    data: data.clone(),
                },
                Op::DeleteRr { name, data },
            ],
        );
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn deleting_one_record_leaves_the_rest_of_its_rrset() {
        let z = zone();
        let changes = replay(
            &z,
            &[Op::DeleteRr {
                name: n("www.example.test."),
                data: a([192, 0, 2, 2]),
            }],
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, ChangeKind::Replace);
        assert_eq!(changes[0].records, vec![a([192, 0, 2, 3])]);
        assert_eq!(changes[0].ttl, Some(300));
    }
}
