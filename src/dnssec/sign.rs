//! Signing one zone version: the records DNSSEC adds to it.
//!
//! [`sign`] computes the apex key records (DNSKEY, CDS, CDNSKEY), the NSEC chain and the
//! RRSIGs of a zone version, reusing each signature of the previous version whose rrset is
//! unchanged, made by a key still signing, and not expiring within the refresh window: a
//! change to one rrset signs that rrset, the SOA and the NSEC records whose content moved.
//! What is signed follows RFC 4035 §2.2: every authoritative rrset; not the NS rrset of a
//! delegation, not glue nor anything else below a zone cut.

use std::collections::HashMap;

use hickory_proto::dnssec::rdata::sig::SigInput;
use hickory_proto::dnssec::rdata::{CDNSKEY, CDS, DNSSECRData, NSEC, NSEC3, NSEC3PARAM, RRSIG};
use hickory_proto::dnssec::{Nsec3HashAlgorithm, PublicKey, TBS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};

use super::keys::{KeyState, ZoneKey};
use super::{Denial, Policy};
use crate::zone::signed::{covered, is_generated, nsec3_hash, nsec3_owner};
use crate::zone::{View, Zone, label_count};

/// NSEC3 hash iterations beyond the first: none (RFC 9276 §3.1).
const NSEC3_ITERATIONS: u16 = 0;

/// What a signing run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SignStats {
    /// Signatures made (not reused).
    pub made: usize,
    pub reused: usize,
    /// The earliest expiration of any signature of the result (seconds since the epoch).
    pub earliest_expiry: Option<u64>,
}

/// Why a zone could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no active key signs the zone's data")]
    NoDataKey,
    #[error("no active key signs the DNSKEY rrset")]
    NoSepKey,
    #[error("signing {owner} {rtype}: {reason}")]
    Sign {
        owner: String,
        rtype: RecordType,
        reason: String,
    },
}

/// The DNSSEC records of `zone` (whose own records are taken, its old DNSSEC records
/// ignored), given the version served before (`previous`, for reuse), the keys and the
/// policy, at `now` (seconds since the epoch). `ds_delete`: publish CDS/CDNSKEY delete
/// records (RFC 8078 §4) instead of ones for the keys.
pub fn sign(
    zone: &Zone,
    previous: Option<&Zone>,
    keys: &[ZoneKey],
    policy: &Policy,
    now: u64,
    ds_delete: bool,
) -> Result<(Vec<Record>, SignStats), SignError> {
    let origin = zone.origin().clone();
    // Both versions' records, decoded once for the whole signing pass.
    let view = zone.view();
    let previous_view = previous.map(Zone::view);
    let previous = previous_view.as_deref();
    let live: Vec<&ZoneKey> = keys
        .iter()
        .filter(|k| k.record.state != KeyState::Removed)
        .collect();
    let data_keys: Vec<&ZoneKey> = live
        .iter()
        .copied()
        .filter(|k| k.record.state == KeyState::Active && k.record.role.signs_data())
        .collect();
    let sep_keys: Vec<&ZoneKey> = live
        .iter()
        .copied()
        .filter(|k| k.record.state == KeyState::Active && k.record.role.is_sep())
        .collect();
    if data_keys.is_empty() {
        return Err(SignError::NoDataKey);
    }
    if sep_keys.is_empty() {
        return Err(SignError::NoSepKey);
    }
    let (soa_ttl, soa_minimum) = match &zone.soa().data {
        RData::SOA(s) => (zone.soa().ttl, s.minimum),
        _ => (zone.soa().ttl, zone.soa().ttl),
    };
    // RFC 9077: NSEC TTL is the negative-caching TTL.
    let nsec_ttl = soa_ttl.min(soa_minimum);
    let key_ttl = policy.dnskey_ttl;

    // The rrsets to carry, by owner: the zone's own, and the apex key records.
    let mut owners: HashMap<Name, Vec<(RecordType, Vec<Record>)>> = HashMap::new();
    let mut cuts: Vec<Name> = Vec::new();
    for (name, node) in view.nodes() {
        let sets: Vec<(RecordType, Vec<Record>)> = node
            .rrsets
            .iter()
            .filter(|s| !is_generated(s.rtype))
            .map(|s| (s.rtype, s.records.clone()))
            .collect();
        if node.delegation {
            cuts.push(name.clone());
        }
        if !sets.is_empty() {
            owners.insert(name.clone(), sets);
        }
    }
    let apex_sets = owners.entry(origin.clone()).or_default();
    let dnskeys: Vec<Record> = live
        .iter()
        .map(|k| {
            Record::from_rdata(
                origin.clone(),
                key_ttl,
                RData::DNSSEC(DNSSECRData::DNSKEY(k.dnskey.clone())),
            )
        })
        .collect();
    apex_sets.push((RecordType::DNSKEY, dnskeys));
    // CDS/CDNSKEY (RFC 7344): the SEP keys the parent should have a DS for.
    let (cds, cdnskey): (Vec<Record>, Vec<Record>) = if ds_delete {
        (
            vec![Record::from_rdata(
                origin.clone(),
                key_ttl,
                RData::DNSSEC(DNSSECRData::CDS(CDS::new(
                    0,
                    None,
                    hickory_proto::dnssec::DigestType::Unknown(0),
                    vec![0],
                ))),
            )],
            vec![Record::from_rdata(
                origin.clone(),
                key_ttl,
                RData::DNSSEC(DNSSECRData::CDNSKEY(CDNSKEY::with_flags(0, None, vec![0]))),
            )],
        )
    } else {
        live.iter()
            .filter(|k| k.record.role.is_sep() && k.record.state != KeyState::Retired)
            .filter_map(|k| {
                let ds = k.ds(&origin).ok()?;
                let cds = CDS::new(
                    ds.key_tag(),
                    Some(ds.algorithm()),
                    ds.digest_type(),
                    ds.digest().to_vec(),
                );
                let cdnskey = CDNSKEY::with_flags(
                    k.dnskey.flags(),
                    Some(k.record.algorithm.algorithm()),
                    k.dnskey.public_key().public_bytes().to_vec(),
                );
                Some((
                    Record::from_rdata(
                        origin.clone(),
                        key_ttl,
                        RData::DNSSEC(DNSSECRData::CDS(cds)),
                    ),
                    Record::from_rdata(
                        origin.clone(),
                        key_ttl,
                        RData::DNSSEC(DNSSECRData::CDNSKEY(cdnskey)),
                    ),
                ))
            })
            .unzip()
    };
    if !cds.is_empty() {
        apex_sets.push((RecordType::CDS, cds));
        apex_sets.push((RecordType::CDNSKEY, cdnskey));
    }

    let nsec3 = policy.denial == Denial::Nsec3;
    if nsec3 {
        // RFC 9276: SHA-1, no extra iteration, no salt, no opt-out.
        apex_sets.push((
            RecordType::NSEC3PARAM,
            vec![Record::from_rdata(
                origin.clone(),
                nsec_ttl,
                RData::DNSSEC(DNSSECRData::NSEC3PARAM(NSEC3PARAM::new(
                    Nsec3HashAlgorithm::SHA1,
                    false,
                    NSEC3_ITERATIONS,
                    Vec::new(),
                ))),
            )],
        ));
    }

    // Below a cut nothing is authoritative: no NSEC, no RRSIG.
    let below_cut = |name: &Name| {
        cuts.iter()
            .any(|cut| cut != name && cut.zone_of(name) && label_count(name) > label_count(cut))
    };
    let mut chain: Vec<Name> = owners.keys().filter(|n| !below_cut(n)).cloned().collect();
    chain.sort();

    let mut out: Vec<Record> = Vec::new();
    let mut stats = SignStats::default();
    let inception = now.saturating_sub(policy.inception_offset_secs);
    let jitter_seed = now ^ u64::from(crate::zone::signed::user_digest(zone) as u32);
    let mut to_sign: Vec<(Name, RecordType, Vec<Record>)> = Vec::new();
    // The types of a name as its NSEC or NSEC3 record lists them: at a cut only NS and DS
    // are ours, anything else there is occluded glue.
    let types_at = |name: &Name| -> Vec<RecordType> {
        let is_cut = cuts.contains(name);
        owners
            .get(name)
            .into_iter()
            .flatten()
            .map(|(t, _)| *t)
            .filter(|t| !is_cut || matches!(t, RecordType::NS | RecordType::DS))
            .collect()
    };
    for name in &chain {
        let Some(sets) = owners.get(name) else {
            continue;
        };
        let is_cut = cuts.contains(name);
        for (rtype, records) in sets {
            if is_cut && *rtype != RecordType::DS {
                continue;
            }
            to_sign.push((name.clone(), *rtype, records.clone()));
        }
    }
    if nsec3 {
        // Every authoritative name has an NSEC3 record, empty non-terminals too (RFC 5155
        // §7.1), in the order of their hashes.
        // The names with data and the names between them and the apex. Not the zone's
        // nodes: a name whose records were all deleted may still hold stale signatures.
        let apex_labels = label_count(&origin);
        let mut names: Vec<Name> = Vec::with_capacity(chain.len() * 2);
        for name in &chain {
            for k in (apex_labels + 1)..label_count(name) {
                names.push(name.trim_to(k));
            }
            names.push(name.clone());
        }
        names.sort();
        names.dedup();
        let mut hashed: Vec<(Vec<u8>, Name)> = names
            .into_iter()
            .filter(|n| !below_cut(n))
            .filter_map(|n| Some((nsec3_hash(&n, &[], NSEC3_ITERATIONS)?, n)))
            .collect();
        hashed.sort();
        hashed.dedup_by(|a, b| a.0 == b.0);
        for (i, (hash, name)) in hashed.iter().enumerate() {
            let next = &hashed[(i + 1) % hashed.len()].0;
            let mut types = types_at(name);
            // The RRSIG bit says whether signatures sit at the name itself: not at an
            // empty non-terminal, nor at a delegation without DS (its NS is not signed).
            let signed_here = if cuts.contains(name) {
                types.contains(&RecordType::DS)
            } else {
                !types.is_empty()
            };
            if signed_here {
                types.push(RecordType::RRSIG);
            }
            let Some(owner) = nsec3_owner(hash, &origin) else {
                continue;
            };
            let record = Record::from_rdata(
                owner.clone(),
                nsec_ttl,
                RData::DNSSEC(DNSSECRData::NSEC3(NSEC3::new(
                    Nsec3HashAlgorithm::SHA1,
                    false,
                    NSEC3_ITERATIONS,
                    Vec::new(),
                    next.clone(),
                    types,
                ))),
            );
            out.push(record.clone());
            to_sign.push((owner, RecordType::NSEC3, vec![record]));
        }
    } else {
        for (i, name) in chain.iter().enumerate() {
            let next = chain[(i + 1) % chain.len()].to_lowercase();
            let mut types = types_at(name);
            types.push(RecordType::NSEC);
            types.push(RecordType::RRSIG);
            let nsec = Record::from_rdata(
                name.clone(),
                nsec_ttl,
                RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(next, types))),
            );
            out.push(nsec.clone());
            to_sign.push((name.clone(), RecordType::NSEC, vec![nsec]));
        }
    }
    // The key records are data too: they go in with the rest.
    for (rtype, records) in owners.get(&origin).into_iter().flatten() {
        if is_generated(*rtype) {
            out.extend(records.iter().cloned());
        }
    }

    for (n, (name, rtype, records)) in to_sign.into_iter().enumerate() {
        let signers: &[&ZoneKey] = if matches!(
            rtype,
            RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY
        ) {
            &sep_keys
        } else {
            &data_keys
        };
        let unchanged = previous.is_some_and(|p| same_rrset(p, &name, rtype, &records));
        for key in signers {
            if unchanged
                && let Some(old) =
                    previous.and_then(|p| reusable(p, &name, rtype, key, now, policy))
            {
                stats.reused += 1;
                note_expiry(&mut stats, old);
                out.push(old.clone());
                continue;
            }
            let jitter = if policy.jitter_secs == 0 {
                0
            } else {
                mix(jitter_seed.wrapping_add(n as u64)) % policy.jitter_secs
            };
            let expiration = now + policy.validity_secs - jitter;
            let record = make_rrsig(&origin, &name, rtype, &records, key, inception, expiration)
                .map_err(|reason| SignError::Sign {
                    owner: crate::zone::writer::name_text(&name),
                    rtype,
                    reason,
                })?;
            stats.made += 1;
            note_expiry(&mut stats, &record);
            out.push(record);
        }
    }
    Ok((out, stats))
}

fn note_expiry(stats: &mut SignStats, rrsig: &Record) {
    if let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &rrsig.data {
        let exp = u64::from(sig.input().sig_expiration.get());
        stats.earliest_expiry = Some(stats.earliest_expiry.map_or(exp, |e| e.min(exp)));
    }
}

/// The earliest signature expiry of a signed zone (seconds since the epoch).
pub fn earliest_expiry(zone: &Zone) -> Option<u64> {
    // Noted when the zone was built: no walk over its signatures.
    zone.earliest_expiry()
}

/// splitmix64: spreads a seed into a well-mixed value (no randomness needed, only spread).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether `zone` has exactly this rrset (records and TTL) at `name`.
fn same_rrset(zone: &View, name: &Name, rtype: RecordType, records: &[Record]) -> bool {
    if rtype == RecordType::NSEC3 {
        // NSEC3 records live in the chain, not in the nodes.
        return zone
            .nsec3()
            .and_then(|c| c.at_owner(name))
            .is_some_and(|e| {
                records.len() == 1
                    && e.record.ttl == records[0].ttl
                    && e.record.data == records[0].data
            });
    }
    let Some(set) = zone.node(name).and_then(|n| n.rrset(rtype)) else {
        return false;
    };
    set.records.len() == records.len()
        && set.records.iter().all(|r| {
            records
                .iter()
                .any(|x| x.ttl == r.ttl && x.data == r.data && x.name.eq_case(&r.name))
        })
}

/// A signature of the previous version that can stay: same key, not expiring soon.
fn reusable<'z>(
    zone: &'z View,
    name: &Name,
    rtype: RecordType,
    key: &ZoneKey,
    now: u64,
    policy: &Policy,
) -> Option<&'z Record> {
    zone.rrsigs(name, rtype).find(|r| {
        covered(r) == Some(rtype)
            && match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                    let input = sig.input();
                    input.key_tag == key.record.key_tag
                        && input.algorithm == key.record.algorithm.algorithm()
                        && u64::from(input.sig_expiration.get()) > now + policy.refresh_secs
                        && u64::from(input.sig_inception.get()) <= now
                }
                _ => false,
            }
    })
}

fn make_rrsig(
    origin: &Name,
    name: &Name,
    rtype: RecordType,
    records: &[Record],
    key: &ZoneKey,
    inception: u64,
    expiration: u64,
) -> Result<Record, String> {
    let ttl = records.first().map_or(0, |r| r.ttl);
    let input = SigInput {
        type_covered: rtype,
        algorithm: key.record.algorithm.algorithm(),
        // Labels of the owner, a leading `*` not counted (RFC 4034 §3.1.3).
        num_labels: name.num_labels(),
        original_ttl: ttl,
        sig_expiration: SerialNumber::new(expiration as u32),
        sig_inception: SerialNumber::new(inception as u32),
        key_tag: key.record.key_tag,
        signer_name: origin.to_lowercase(),
    };
    let tbs =
        TBS::from_input(name, DNSClass::IN, &input, records.iter()).map_err(|e| e.to_string())?;
    let signature = key.signer.sign(&tbs).map_err(|e| e.to_string())?;
    Ok(Record::from_rdata(
        name.clone(),
        ttl,
        RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, signature))),
    ))
}
