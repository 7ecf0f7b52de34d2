//! Denial of existence as a validator checks it (RFC 4035 §5.4 for NSEC, RFC 5155 §8 for
//! NSEC3): a negative answer from a signed zone counts only with NSEC or NSEC3 records in
//! its authority section, each rrset signed by a key of the zone, that prove what the answer
//! says: the name has no such type (NODATA), or it does not exist and no wildcard stands in
//! for it (NXDOMAIN).
//!
//! Signatures are checked with hickory-proto's verifier (through [`super::verify_rrset`]);
//! the NSEC3 hash is hickory-proto's. hickory-proto has no proof checking (hickory-net's
//! validator keeps its own private), so the matching and covering rules are written here,
//! on hickory-proto's canonical name order. It concludes per answer and reports nothing:
//! the judge does.

use hickory_proto::dnssec::Nsec3HashAlgorithm;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, NSEC, NSEC3};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType, RecordTypeSet};

use super::{rrsigs_in, verify_rrset};
use crate::diagnose::dnssec::{Answered, same_name};

/// RFC 9276 §3.2: validators may treat an NSEC3 chain with more iterations as insecure, and
/// hashing costs grow with them; such a proof is not taken.
const MAX_ITERATIONS: u16 = 150;

/// Whether the negative answer `a` to `qname`/`qtype` from `zone` carries a proof signed by
/// one of `keys`, at time `now`: `Ok` names the kind (`NSEC`, `NSEC3`), `Err` says why not.
pub(super) fn check(
    zone: &Name,
    qname: &Name,
    qtype: RecordType,
    a: &Answered,
    keys: &[DNSKEY],
    now: u64,
) -> Result<&'static str, String> {
    let nxdomain = match a.rcode {
        ResponseCode::NXDomain => true,
        ResponseCode::NoError => false,
        other => return Err(format!("answers {other}")),
    };
    let (zone, qname) = (&fqdn(zone), fqdn(qname));
    let mut nsecs: Vec<(Name, &NSEC)> = Vec::new();
    let mut nsec3s: Vec<(Name, &NSEC3)> = Vec::new();
    let mut rrsets: Vec<(Name, RecordType)> = Vec::new();
    for r in &a.authority {
        let owner = fqdn(&r.name);
        if !zone.zone_of(&owner) {
            continue;
        }
        match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(n)) => nsecs.push((owner.clone(), n)),
            RData::DNSSEC(DNSSECRData::NSEC3(n)) => nsec3s.push((owner.clone(), n)),
            _ => continue,
        }
        let key = (owner, r.record_type());
        if !rrsets.contains(&key) {
            rrsets.push(key);
        }
    }
    if rrsets.is_empty() {
        return Err("no NSEC or NSEC3 proof in the answer".into());
    }
    for (owner, rtype) in &rrsets {
        let records: Vec<&Record> = a
            .authority
            .iter()
            .filter(|r| r.record_type() == *rtype && same_name(&r.name, owner))
            .collect();
        let sigs = rrsigs_in(&a.authority, owner, *rtype);
        verify_rrset(owner, &records, &sigs, keys, zone, now)
            .map_err(|e| format!("{} {rtype}: {e}", text(owner)))?;
    }
    if nsec3s.is_empty() {
        nsec_proof(zone, &qname, qtype, nxdomain, &nsecs).map(|()| "NSEC")
    } else {
        nsec3_proof(zone, &qname, qtype, nxdomain, &nsec3s).map(|()| "NSEC3")
    }
}

fn fqdn(name: &Name) -> Name {
    let mut n = name.to_lowercase();
    n.set_fqdn(true);
    n
}

fn text(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_string()
}

/// Whether the type set of an existing name shows `qtype` is absent: neither the type nor a
/// CNAME (which would have answered), and not a delegation seen from the parent (its types
/// are the child's business) unless the question is the parent's own DS.
fn lacks(types: &RecordTypeSet, qtype: RecordType, name: &Name) -> Result<(), String> {
    if types.contains(qtype) {
        return Err(format!(
            "the proof for {} lists {qtype}: the answer withholds an existing rrset",
            text(name)
        ));
    }
    if types.contains(RecordType::CNAME) {
        return Err(format!(
            "the proof for {} lists a CNAME, which should have been answered",
            text(name)
        ));
    }
    if qtype != RecordType::DS && types.contains(RecordType::NS) && !types.contains(RecordType::SOA)
    {
        return Err(format!(
            "the proof for {} is the parent's, at a delegation: it proves nothing about {qtype}",
            text(name)
        ));
    }
    Ok(())
}

/// The longest name that is an ancestor of (or equal to) both.
fn common_ancestor(a: &Name, b: &Name) -> Name {
    let most = usize::from(a.num_labels().min(b.num_labels()));
    for n in (0..=most).rev() {
        let mut c = a.trim_to(n);
        c.set_fqdn(true);
        if c.zone_of(b) {
            return c;
        }
    }
    Name::root()
}

/// `*.<name>`, if it can be spelled.
fn wildcard(name: &Name) -> Option<Name> {
    name.prepend_label("*").ok().map(|w| fqdn(&w))
}

/// Whether the NSEC from `owner` to `next` covers `name` (strictly between them in canonical
/// order; the last NSEC of the zone points back to the apex).
fn covers(owner: &Name, next: &Name, name: &Name) -> bool {
    if owner < next {
        owner < name && name < next
    } else {
        owner < name || name < next
    }
}

fn nsec_proof(
    zone: &Name,
    qname: &Name,
    qtype: RecordType,
    nxdomain: bool,
    nsecs: &[(Name, &NSEC)],
) -> Result<(), String> {
    let covering = |name: &Name| {
        nsecs
            .iter()
            .find(|(owner, n)| covers(owner, &fqdn(n.next_domain_name()), name))
    };
    let matching = |name: &Name| nsecs.iter().find(|(owner, _)| owner == name);
    if !nxdomain {
        if let Some((_, n)) = matching(qname) {
            return lacks(n.type_set(), qtype, qname);
        }
        // Wildcard NODATA: the name is covered and the wildcard that would answer it
        // exists without the type.
        if covering(qname).is_some()
            && let Some((w, n)) = nsecs.iter().find(|(owner, _)| {
                owner.iter().next() == Some(b"*".as_slice()) && owner.base_name().zone_of(qname)
            })
        {
            return lacks(n.type_set(), qtype, w);
        }
        return Err(format!(
            "no NSEC for {} proves it has no {qtype}",
            text(qname)
        ));
    }
    let Some((owner, n)) = covering(qname) else {
        return Err(format!("no NSEC covers {}", text(qname)));
    };
    let next = fqdn(n.next_domain_name());
    let (by_owner, by_next) = (common_ancestor(qname, owner), common_ancestor(qname, &next));
    let mut encloser = if by_owner.num_labels() >= by_next.num_labels() {
        by_owner
    } else {
        by_next
    };
    if !zone.zone_of(&encloser) {
        encloser = zone.clone();
    }
    let Some(star) = wildcard(&encloser) else {
        return Err(format!("no wildcard name below {}", text(&encloser)));
    };
    if matching(&star).is_some() {
        return Err(format!(
            "the wildcard {} exists: {} should have been answered from it",
            text(&star),
            text(qname)
        ));
    }
    if covering(&star).is_none() {
        return Err(format!(
            "no NSEC proves there is no wildcard {}",
            text(&star)
        ));
    }
    Ok(())
}

fn nsec3_proof(
    zone: &Name,
    qname: &Name,
    qtype: RecordType,
    nxdomain: bool,
    nsec3s: &[(Name, &NSEC3)],
) -> Result<(), String> {
    // The caller passes a non-empty set; an empty one is answered, not indexed.
    let Some((_, first)) = nsec3s.first() else {
        return Err(format!(
            "no NSEC3 record proves the absence at {}",
            text(qname)
        ));
    };
    let (salt, iterations) = (first.salt().to_vec(), first.iterations());
    if first.hash_algorithm() != Nsec3HashAlgorithm::SHA1 {
        return Err("NSEC3 with an unknown hash algorithm".into());
    }
    if iterations > MAX_ITERATIONS {
        return Err(format!(
            "NSEC3 with {iterations} iterations (validators may ignore more than {MAX_ITERATIONS}, RFC 9276)"
        ));
    }
    // Each NSEC3 of the chain the first names, by the hash its owner stands for.
    let entries: Vec<(Vec<u8>, &NSEC3)> = nsec3s
        .iter()
        .filter(|(_, n)| n.salt() == salt.as_slice() && n.iterations() == iterations)
        .filter_map(|(owner, n)| {
            if owner.num_labels() != zone.num_labels() + 1 {
                return None;
            }
            let label = owner.iter().next()?.to_ascii_lowercase();
            let hash = data_encoding::BASE32_DNSSEC.decode(&label).ok()?;
            Some((hash, *n))
        })
        .collect();
    let hash = |name: &Name| -> Result<Vec<u8>, String> {
        Nsec3HashAlgorithm::SHA1
            .hash(&salt, name, iterations)
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| format!("NSEC3 hash of {}: {e}", text(name)))
    };
    let matching = |name: &Name| -> Result<Option<&NSEC3>, String> {
        let h = hash(name)?;
        Ok(entries.iter().find(|(o, _)| *o == h).map(|(_, n)| *n))
    };
    let covering = |name: &Name| -> Result<Option<&NSEC3>, String> {
        let h = hash(name)?;
        Ok(entries
            .iter()
            .find(|(o, n)| {
                let next = n.next_hashed_owner_name();
                if o.as_slice() < next {
                    o.as_slice() < h.as_slice() && h.as_slice() < next
                } else {
                    o.as_slice() < h.as_slice() || h.as_slice() < next
                }
            })
            .map(|(_, n)| *n))
    };
    // RFC 5155 §8.3: the closest encloser matches, the next closer name is covered.
    let closest_encloser = || -> Result<(Name, &NSEC3), String> {
        let mut candidate = qname.base_name();
        while zone.zone_of(&candidate) {
            if matching(&candidate)?.is_some() {
                let next_closer = qname.trim_to(usize::from(candidate.num_labels()) + 1);
                return match covering(&next_closer)? {
                    Some(n) => Ok((candidate, n)),
                    None => Err(format!(
                        "no NSEC3 covers the next closer name {}",
                        text(&next_closer)
                    )),
                };
            }
            if candidate == *zone {
                break;
            }
            candidate = candidate.base_name();
        }
        Err(format!(
            "no NSEC3 proves a closest encloser of {}",
            text(qname)
        ))
    };
    if !nxdomain {
        if let Some(n) = matching(qname)? {
            return lacks(n.type_set(), qtype, qname);
        }
        let (encloser, next_closer) = closest_encloser()?;
        // An insecure delegation under opt-out: no DS, provably unsigned.
        if qtype == RecordType::DS && next_closer.opt_out() {
            return Ok(());
        }
        let star = wildcard(&encloser)
            .ok_or_else(|| format!("no wildcard name below {}", text(&encloser)))?;
        return match matching(&star)? {
            Some(n) => lacks(n.type_set(), qtype, &star),
            None => Err(format!(
                "no NSEC3 for {} proves it has no {qtype}",
                text(qname)
            )),
        };
    }
    let (encloser, _) = closest_encloser()?;
    let star =
        wildcard(&encloser).ok_or_else(|| format!("no wildcard name below {}", text(&encloser)))?;
    if matching(&star)?.is_some() {
        return Err(format!(
            "the wildcard {} exists: {} should have been answered from it",
            text(&star),
            text(qname)
        ));
    }
    if covering(&star)?.is_none() {
        return Err(format!(
            "no NSEC3 proves there is no wildcard {}",
            text(&star)
        ));
    }
    Ok(())
}
