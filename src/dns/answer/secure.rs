//! The sections of a DO=1 answer from a signed zone (RFC 4035 §3.1): each rrset of the
//! answer and authority sections followed by its RRSIGs, and the NSEC or NSEC3 records
//! (RFC 5155 §7.2) that prove a name or type absent, a wildcard expansion legitimate, or a
//! delegation unsigned.
//!
//! It only picks records the signer stored in the zone ([`crate::zone::signed`]): nothing is
//! signed here. It runs on the general path only, for DO=1 queries on signed zones.

use std::borrow::Cow;

use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::zone::lookup::{Lookup, Outcome};
use crate::zone::signed::Nsec3Chain;
use crate::zone::{View, label_count};

type Section<'z> = Vec<Cow<'z, Record>>;

/// The answer and authority sections of `lookup` with their signatures and proofs.
pub fn sections<'z>(
    zone: &'z View,
    qname: &Name,
    lookup: &Lookup<'z>,
) -> (Section<'z>, Section<'z>) {
    let mut answers: Section<'z> = Vec::with_capacity(lookup.answers.len() * 2);
    let mut authorities: Section<'z> = Vec::new();
    // Names answered from a wildcard: a proof that no closer name exists goes with them.
    let mut expanded: Vec<Name> = Vec::new();
    let mut i = 0;
    while i < lookup.answers.len() {
        let first = lookup.answers[i].as_ref();
        let (name, rtype) = (first.name.clone(), first.record_type());
        let mut j = i;
        while j < lookup.answers.len()
            && lookup.answers[j].name == name
            && lookup.answers[j].record_type() == rtype
        {
            answers.push(lookup.answers[j].clone());
            j += 1;
        }
        i = j;
        let source = if zone.node(&name).is_some() {
            None
        } else {
            zone.source_of_synthesis(&name)
        };
        let owner = source.as_ref().unwrap_or(&name);
        push_signed_as(zone, owner, rtype, &name, &mut answers);
        if source.is_some() && !expanded.contains(&name) {
            expanded.push(name);
        }
    }

    // The name the negative part of the answer is about: the end of a CNAME chain.
    let last_target = lookup.answers.last().and_then(|r| match &r.data {
        RData::CNAME(c) if r.record_type() == RecordType::CNAME => Some(c.0.clone()),
        _ => None,
    });
    let final_name = match lookup.outcome {
        Outcome::NxDomain | Outcome::NoData => last_target.as_ref().unwrap_or(qname),
        _ => qname,
    };

    let mut proofs: Vec<&'z Record> = Vec::new();
    let mut prove = |r: Option<&'z Record>| {
        if let Some(r) = r
            && !proofs.iter().any(|p| std::ptr::eq(*p, r))
        {
            proofs.push(r);
        }
    };
    let nsec3 = zone.nsec3();
    match (lookup.outcome, nsec3) {
        (Outcome::Answer | Outcome::Referral, _) => {}
        (Outcome::NxDomain, None) => {
            // The name is not there, and neither is a wildcard that could have made it.
            prove(zone.nsec_covering(final_name));
            let encloser = zone.closest_encloser(final_name);
            if let Ok(wildcard) = encloser.prepend_label("*") {
                prove(zone.nsec_covering(&wildcard));
            }
        }
        (Outcome::NxDomain, Some(chain)) => {
            // RFC 5155 §7.2.2: the closest encloser proof, and no wildcard at it.
            let encloser = closest_encloser_proof(zone, chain, final_name, &mut prove);
            if let Ok(wildcard) = encloser.prepend_label("*") {
                prove(chain.covering(&wildcard).map(|e| &e.record));
            }
        }
        (Outcome::NoData, None) => {
            if zone.node(final_name).is_some() {
                // The name's own NSEC; an empty non-terminal has none, and the NSEC that
                // covers it (whose next name is below it) proves it empty.
                prove(
                    zone.nsec_at(final_name)
                        .or_else(|| zone.nsec_covering(final_name)),
                );
            } else if let Some(wildcard) = zone.source_of_synthesis(final_name) {
                // Wildcard NODATA (RFC 4035 §3.1.3.4): no closer name, and the wildcard
                // has not the type.
                prove(zone.nsec_covering(final_name));
                prove(zone.nsec_at(&wildcard));
            }
        }
        (Outcome::NoData, Some(chain)) => {
            if zone.node(final_name).is_some() {
                // RFC 5155 §7.2.3/§7.2.4: the name's own NSEC3 (empty non-terminals have
                // one too), whose bitmap lacks the type (DS at a delegation included).
                prove(chain.matching(final_name).map(|e| &e.record));
            } else if let Some(wildcard) = zone.source_of_synthesis(final_name) {
                // RFC 5155 §7.2.5: the closest encloser proof and the wildcard's NSEC3.
                closest_encloser_proof(zone, chain, final_name, &mut prove);
                prove(chain.matching(&wildcard).map(|e| &e.record));
            }
        }
    }
    for name in &expanded {
        match nsec3 {
            None => prove(zone.nsec_covering(name)),
            // RFC 5155 §7.2.6: the next closer name does not exist.
            Some(chain) => prove(chain.covering(&next_closer(zone, name)).map(|e| &e.record)),
        }
    }

    // Authority: the lookup's rrsets (SOA of a negative answer, NS of a referral) signed
    // where they are authoritative, then the proofs.
    let mut k = 0;
    let auth = &lookup.authorities;
    while k < auth.len() {
        let first = auth[k];
        let (name, rtype) = (first.name.clone(), first.record_type());
        while k < auth.len() && auth[k].name == name && auth[k].record_type() == rtype {
            authorities.push(Cow::Borrowed(auth[k]));
            k += 1;
        }
        if rtype == RecordType::NS && lookup.outcome == Outcome::Referral {
            // The delegation's NS is not signed; a DS (signed) or the NSEC proving there
            // is none says whether the child is signed (RFC 4035 §3.1.4).
            match zone.node(&name).and_then(|n| n.rrset(RecordType::DS)) {
                Some(ds) => {
                    authorities.extend(ds.records.iter().map(Cow::Borrowed));
                    push_signed_as(zone, &name, RecordType::DS, &name, &mut authorities);
                }
                None => match nsec3 {
                    None => prove(zone.nsec_at(&name)),
                    // RFC 5155 §7.2.7: the delegation's NSEC3, without the DS bit.
                    Some(chain) => prove(chain.matching(&name).map(|e| &e.record)),
                },
            }
        } else {
            push_signed_as(zone, &name, rtype, &name, &mut authorities);
        }
    }
    for proof in proofs {
        authorities.push(Cow::Borrowed(proof));
        push_signed_as(
            zone,
            &proof.name,
            proof.record_type(),
            &proof.name,
            &mut authorities,
        );
    }
    (answers, authorities)
}

/// The next closer name of `name`: its ancestor one label below its closest encloser.
fn next_closer(zone: &View, name: &Name) -> Name {
    let encloser = zone.closest_encloser(name);
    name.trim_to(label_count(&encloser) + 1)
}

/// Proves the closest encloser of `name` (RFC 5155 §7.2.1): the NSEC3 matching it and the
/// one covering the next closer name. Returns the closest encloser.
fn closest_encloser_proof<'z>(
    zone: &'z View,
    chain: &'z Nsec3Chain,
    name: &Name,
    prove: &mut impl FnMut(Option<&'z Record>),
) -> Name {
    let encloser = zone.closest_encloser(name);
    prove(chain.matching(&encloser).map(|e| &e.record));
    let next = name.trim_to(label_count(&encloser) + 1);
    prove(chain.covering(&next).map(|e| &e.record));
    encloser
}

/// Pushes the RRSIGs stored at `owner` over `rtype`, under the name `shown` (the query's
/// spelling, or the name a wildcard was expanded to).
fn push_signed_as<'z>(
    zone: &'z View,
    owner: &Name,
    rtype: RecordType,
    shown: &Name,
    out: &mut Section<'z>,
) {
    for sig in zone.rrsigs(owner, rtype) {
        if sig.name.eq_case(shown) {
            out.push(Cow::Borrowed(sig));
        } else {
            let mut copy = sig.clone();
            copy.name = shown.clone();
            out.push(Cow::Owned(copy));
        }
    }
}
