//! DNSSEC: the chain of trust from the parent's DS set to the mail records, as a validator
//! would walk it, on every server: `secure`, `insecure` (no DS at the parent) or `bogus`
//! (with what was seen where, and what to do).
//!
//! The DS set counts only as a validator would take it: signed by a key of the parent's own
//! DNSKEY set, itself self-signed, at every parent server (each server's DS checked with
//! every DNSKEY set the parent's servers serve, since a validator may take them from
//! different servers). A parent that serves no DNSKEY makes the domain `insecure` whatever
//! it serves. Above the parent nothing is walked: the `secure` finding says the chain was
//! checked from the parent's keys down.
//!
//! Signatures are checked with hickory-proto's verifier (`Verifier::verify_rrsig` of the
//! DNSKEY over the RFC 4034 §3.1.8.1 data) and DS digests with `DS::covers`: no crypto of our
//! own. A zone configured here to be signed is never green while the parent has no DS.
//! Negative answers (the parent's "no DS", the domain's NODATA/NXDOMAIN for an asked record)
//! count only with a signed NSEC/NSEC3 proof ([`denial`]). Not judged: the proof of no
//! closer match behind an answer expanded from a wildcard.

use std::collections::BTreeMap;

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, RRSIG};
use hickory_proto::dnssec::{DigestType, PublicKey, Verifier};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::*;
use crate::diagnose::dnssec::{DnssecSeen, same_name, utc};

mod denial;

const CHECK: &str = "dnssec";

/// How a finding is rated when nothing can be concluded: a warning for a zone that must be
/// signed, a notice otherwise.
fn unsure(expected: bool) -> Severity {
    if expected {
        Severity::Warning
    } else {
        Severity::Notice
    }
}

pub fn judge(subject: &Subject<'_>, seen: &DnssecSeen) -> Vec<Finding> {
    let Ok(domain) = Name::from_ascii(subject.domain()) else {
        return vec![];
    };
    let mut domain = domain.to_lowercase();
    domain.set_fqdn(true);
    let expected = subject.dnssec_expected;
    let now = seen.checked_at;
    let parent_text = seen
        .parent
        .parent
        .as_ref()
        .map_or_else(|| "the parent zone".to_string(), |p| p.to_ascii());
    if let Some(e) = &seen.parent.error {
        return vec![
            Finding::new(
                CHECK,
                "dnssec.parent_unknown",
                CheckStatus::Error,
                unsure(expected),
                format!("DNSSEC status unknown: {e}"),
            )
            .fix(vec![format!(
                "; make the parent zone of {} resolvable through diagnosis.resolver",
                subject.domain()
            )]),
        ];
    }
    // What each parent server serves, then the DS records any of them serves.
    let sets = seen.parent.sets(&domain);
    let mut parent_seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut with_ds = Vec::new();
    let mut without_ds = Vec::new();
    let mut anchors: Vec<DS> = Vec::new();
    for (server, set) in &sets {
        let label = format!("{server} at {parent_text}");
        match set {
            Err(e) => {
                failed.push(server.clone());
                parent_seen.insert(label, vec![e.clone()]);
            }
            Ok(set) if set.is_empty() => {
                without_ds.push(server.clone());
                parent_seen.insert(label, vec!["no DS".into()]);
            }
            Ok(set) => {
                with_ds.push(server.clone());
                parent_seen.insert(
                    label,
                    set.iter()
                        .map(|(ds, ttl)| format!("{ttl} DS {ds}"))
                        .collect(),
                );
                for (ds, _) in set {
                    if !anchors.contains(ds) {
                        anchors.push(ds.clone());
                    }
                }
            }
        }
    }
    let served_keys = served_sep_keys(seen, subject.domain(), &domain);
    let ds_lines: Vec<String> = served_keys
        .iter()
        .filter_map(|k| ds_line(&domain, k))
        .collect();
    let side = parent_side(seen, &domain, now);
    if with_ds.is_empty() {
        if let ParentSide::Bogus(why) = side {
            return vec![parent_bogus(subject, &parent_text, why, seen)];
        }
        if !failed.is_empty() || sets.is_empty() {
            return vec![
                Finding::new(
                    CHECK,
                    "dnssec.parent_unreachable",
                    CheckStatus::Error,
                    unsure(expected),
                    format!(
                        "DNSSEC status unknown: {} of {} nameservers of {parent_text} gave no usable answer for the DS of {}",
                        failed.len(),
                        sets.len(),
                        subject.domain()
                    ),
                )
                .seen(parent_seen),
            ];
        }
        if expected {
            let mut fix = vec![format!(
                "; at the registrar of {}: add the DS record(s) below (from the CDS the zone publishes), then wait for the parent's TTL",
                subject.domain()
            )];
            fix.extend(ds_lines.clone());
            return vec![
                Finding::new(
                    CHECK,
                    "dnssec.no_ds",
                    CheckStatus::Missing,
                    Severity::Warning,
                    format!(
                        "insecure: {} is signed here but {parent_text} has no DS for it, so validators do not check its signatures",
                        subject.domain()
                    ),
                )
                .expected(ds_lines)
                .seen(parent_seen)
                .fix(fix),
            ];
        }
        let mut f = Finding::new(
            CHECK,
            "dnssec.insecure",
            CheckStatus::Ok,
            Severity::Info,
            format!(
                "insecure: no DS for {} at {parent_text} (DNSSEC not in use)",
                subject.domain()
            ),
        );
        f.seen = parent_seen;
        return vec![f];
    }

    let mut out = Vec::new();
    if !without_ds.is_empty() || !failed.is_empty() {
        out.push(
            Finding::new(
                CHECK,
                "dnssec.ds_partial",
                CheckStatus::Mismatch,
                Severity::Warning,
                format!(
                    "the DS of {} is served by {} of {} nameservers of {parent_text}: validators asking the others see it {}",
                    subject.domain(),
                    with_ds.len(),
                    sets.len(),
                    if failed.is_empty() { "insecure" } else { "unresolvable" }
                ),
            )
            .seen(parent_seen.clone())
            .fix(vec![format!(
                "; wait for {parent_text} to publish the DS on every server (its zone transfer), or ask the registrar why {} lack it",
                without_ds
                    .iter()
                    .chain(failed.iter())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )]),
        );
    }
    let parent_keys = match side {
        ParentSide::Signed(tags) => Some(tags),
        ParentSide::Unknown(why) => {
            out.push(
                Finding::new(
                    CHECK,
                    "dnssec.parent_unverified",
                    CheckStatus::Error,
                    Severity::Warning,
                    format!(
                        "DNSSEC status unknown: the DNSKEY set of {parent_text} could not be obtained from {} of its nameservers, so the signature of {parent_text} over the DS of {} cannot be checked",
                        why.len(),
                        subject.domain()
                    ),
                )
                .seen(why),
            );
            None
        }
        ParentSide::Unsigned(why) => {
            out.push(
                Finding::new(
                    CHECK,
                    "dnssec.parent_unsigned",
                    CheckStatus::Missing,
                    Severity::Warning,
                    format!(
                        "insecure: {} is signed and {parent_text} has its DS, but {parent_text} itself is not signed (it serves no DNSKEY), so no validator reaches the keys of {} and nobody checks its signatures",
                        subject.domain(),
                        subject.domain()
                    ),
                )
                .seen(why)
                .fix(vec![format!(
                    "; nothing to change in {}: the operator of {parent_text} has to sign it (and have its own DS published above it) for validators to check {}",
                    subject.domain(),
                    subject.domain()
                )]),
            );
            None
        }
        ParentSide::Bogus(why) => {
            out.push(parent_bogus(subject, &parent_text, why, seen));
            None
        }
    };
    if seen.servers.is_empty() {
        out.push(Finding::new(
            CHECK,
            "dnssec.unchecked",
            CheckStatus::Error,
            Severity::Error,
            format!(
                "the nameservers of {} could not be asked: {}",
                subject.domain(),
                seen.error.clone().unwrap_or_else(|| "none found".into())
            ),
        ));
        return out;
    }

    let refresh = subject.dnssec_refresh_secs;
    let mut no_dnskey: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut mismatch: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut bogus: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut expiring: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut earliest: Option<u64> = None;
    let mut key_tags: Vec<u16> = Vec::new();
    let mut validated: Vec<String> = Vec::new();
    // The absences proven, as `no NAME TYPE (NSEC)`.
    let mut denied: Vec<String> = Vec::new();
    for (server, replies) in &seen.servers {
        let dnskey_reply = replies.get(&(subject.domain().to_string(), RecordType::DNSKEY));
        let answered = match dnskey_reply {
            Some(Ok(a)) if a.authoritative => a,
            Some(Ok(a)) => {
                no_dnskey
                    .entry(server.clone())
                    .or_default()
                    .push(format!("DNSKEY: answers {} without authority", a.rcode));
                continue;
            }
            Some(Err(e)) => {
                no_dnskey
                    .entry(server.clone())
                    .or_default()
                    .push(format!("DNSKEY: {e}"));
                continue;
            }
            None => {
                // Not asked is not validated: never a green by omission.
                no_dnskey
                    .entry(server.clone())
                    .or_default()
                    .push("DNSKEY: not asked".into());
                continue;
            }
        };
        let key_records = answered.rrset(&domain, RecordType::DNSKEY);
        let keys: Vec<DNSKEY> = key_records
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::DNSKEY(k)) => Some(k.clone()),
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            no_dnskey
                .entry(server.clone())
                .or_default()
                .push("serves no DNSKEY".into());
            continue;
        }
        // The keys a DS at the parent vouches for.
        let anchored: Vec<DNSKEY> = keys
            .iter()
            .filter(|k| k.zone_key() && !k.revoke())
            .filter(|k| {
                anchors
                    .iter()
                    .any(|ds| ds.covers(&domain, k).unwrap_or(false))
            })
            .cloned()
            .collect();
        if anchored.is_empty() {
            mismatch.entry(server.clone()).or_default().push(format!(
                "DNSKEY tags {} match no DS at the parent ({})",
                tags(&keys),
                anchors
                    .iter()
                    .map(|d| d.key_tag().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        }
        let sigs = rrsigs(answered, &domain, RecordType::DNSKEY);
        match verify_rrset(&domain, &key_records, &sigs, &anchored, &domain, now) {
            Err(e) => {
                bogus
                    .entry(server.clone())
                    .or_default()
                    .push(format!("DNSKEY: {e}"));
                continue;
            }
            Ok(exp) => note(
                &mut earliest,
                &mut expiring,
                server,
                "DNSKEY",
                exp,
                now,
                refresh,
            ),
        }
        for k in &anchored {
            if let Ok(t) = k.calculate_key_tag()
                && !key_tags.contains(&t)
            {
                key_tags.push(t);
            }
        }
        // Every other rrset answered, signed by a key of the validated DNSKEY set.
        for ((qname, qtype), reply) in replies {
            if *qtype == RecordType::DNSKEY {
                continue;
            }
            let Ok(a) = reply else { continue };
            if !a.authoritative {
                continue;
            }
            if let Ok(q) = Name::from_ascii(qname)
                && !a.answers.iter().any(|r| same_name(&r.name, &q))
            {
                // A negative answer: the name or the type is absent, and a validator
                // needs the signed proof of it.
                let what = format!("{} {qtype}", qname.trim_end_matches('.'));
                match denial::check(&domain, &q, *qtype, a, &keys, now) {
                    Ok(kind) => {
                        let line = format!("no {what} ({kind})");
                        if !denied.contains(&line) {
                            denied.push(line);
                        }
                    }
                    Err(e) => bogus
                        .entry(server.clone())
                        .or_default()
                        .push(format!("{what} is denied without a valid proof: {e}")),
                }
                continue;
            }
            let mut rrsets: BTreeMap<(String, u16), (Name, RecordType, Vec<&Record>)> =
                BTreeMap::new();
            for r in &a.answers {
                let t = r.record_type();
                if t == RecordType::RRSIG || !domain.zone_of(&r.name.to_lowercase()) {
                    continue;
                }
                rrsets
                    .entry((r.name.to_lowercase().to_ascii(), u16::from(t)))
                    .or_insert_with(|| (r.name.clone(), t, Vec::new()))
                    .2
                    .push(r);
            }
            for (owner, rtype, records) in rrsets.values() {
                let what = format!("{} {rtype}", owner.to_ascii().trim_end_matches('.'));
                let sigs = rrsigs(a, owner, *rtype);
                match verify_rrset(owner, records, &sigs, &keys, &domain, now) {
                    Err(e) => bogus
                        .entry(server.clone())
                        .or_default()
                        .push(format!("{what}: {e}")),
                    Ok(exp) => {
                        note(
                            &mut earliest,
                            &mut expiring,
                            server,
                            &what,
                            exp,
                            now,
                            refresh,
                        );
                        let t = rtype.to_string();
                        if !validated.contains(&t) {
                            validated.push(t);
                        }
                    }
                }
            }
        }
    }
    let fix_ds = |why: &str| {
        let mut fix = vec![format!(
            "; {why}: at the registrar of {}, replace the DS records with these (from the keys served), then wait for the parent's TTL",
            subject.domain()
        )];
        fix.extend(ds_lines.clone());
        fix
    };
    if !no_dnskey.is_empty() {
        out.push(
            Finding::new(
                CHECK,
                "dnssec.dnskey_missing",
                CheckStatus::Error,
                Severity::Error,
                format!(
                    "bogus: {} has a DS at {parent_text} but {} of {} nameservers serve no DNSKEY: validators asking them fail to resolve it",
                    subject.domain(),
                    no_dnskey.len(),
                    seen.servers.len()
                ),
            )
            .seen(no_dnskey.clone())
            .fix(vec![format!(
                "; make {} serve the signed zone (transfer it again from the signer), or remove the DS at the registrar before serving it unsigned",
                no_dnskey.keys().cloned().collect::<Vec<_>>().join(", ")
            )]),
        );
    }
    if !mismatch.is_empty() {
        let mut seen_all = mismatch.clone();
        seen_all.extend(parent_seen.clone());
        out.push(
            Finding::new(
                CHECK,
                "dnssec.ds_mismatch",
                CheckStatus::Mismatch,
                Severity::Error,
                format!(
                    "bogus: no DS of {parent_text} matches a key {} serves on {} of {} nameservers: validators fail to resolve it",
                    subject.domain(),
                    mismatch.len(),
                    seen.servers.len()
                ),
            )
            .expected(ds_lines.clone())
            .seen(seen_all)
            .fix(fix_ds("the DS at the parent is for a key the zone does not serve")),
        );
    }
    if !bogus.is_empty() {
        out.push(
            Finding::new(
                CHECK,
                "dnssec.bogus",
                CheckStatus::Error,
                Severity::Error,
                format!(
                    "bogus: signatures of {} fail validation on {} of {} nameservers: validators fail to resolve these records",
                    subject.domain(),
                    bogus.len(),
                    seen.servers.len()
                ),
            )
            .seen(bogus.clone())
            .fix(vec![format!(
                "; sign the zone again on its signer (signatures expired or made with a key not in the DNSKEY set), and make every nameserver transfer it"
            )]),
        );
    }
    if !expiring.is_empty() {
        out.push(
            Finding::new(
                CHECK,
                "dnssec.expiring",
                CheckStatus::Mismatch,
                Severity::Warning,
                format!(
                    "signatures of {} expire within {} days and have not been renewed",
                    subject.domain(),
                    refresh / 86400
                ),
            )
            .seen(expiring)
            .fix(vec![
                "; check that the signer re-signs the zone before its signatures expire (mailzone: dnssec.refresh_secs and the scheduler)".into(),
            ]),
        );
    }
    if out.iter().any(|f| f.status.is_bad()) {
        return out;
    }
    // Every bad outcome of the parent's side is a bad finding above: reaching here without
    // its key tags would be a bug, and never a green by omission.
    let Some(parent_tags) = parent_keys else {
        return out;
    };
    let days = earliest.map_or(0, |e| e.saturating_sub(now) / 86400);
    out.push(Finding::new(
        CHECK,
        "dnssec.ok",
        CheckStatus::Ok,
        Severity::Info,
        format!(
            "secure: the DS at {parent_text}, signed by its key {}, matches key {} served by all {} nameservers; DNSKEY and {} validate{}; earliest signature expiry in {days} days. Chain checked from the keys of {parent_text} down ({parent_text} and above not checked: no trust anchor configured)",
            join_tags(&parent_tags),
            join_tags(&key_tags),
            seen.servers.len(),
            validated.join(", "),
            if denied.is_empty() {
                String::new()
            } else {
                format!("; proven absent: {}", denied.join(", "))
            }
        ),
    ));
    out
}

/// The parent's side fails validation on some of its servers.
fn parent_bogus(
    subject: &Subject<'_>,
    parent_text: &str,
    why: BTreeMap<String, Vec<String>>,
    seen: &DnssecSeen,
) -> Finding {
    let servers = why.keys().cloned().collect::<Vec<_>>().join(", ");
    Finding::new(
        CHECK,
        "dnssec.parent_bogus",
        CheckStatus::Error,
        Severity::Error,
        format!(
            "bogus: what {parent_text} serves about the DS of {} does not validate with its keys on {} of {} of its nameservers ({servers}): validators fail to resolve {}",
            subject.domain(),
            why.len(),
            seen.parent.keys.len().max(seen.parent.servers.len()),
            subject.domain()
        ),
    )
    .seen(why)
    .fix(vec![format!(
        "; on the side of {parent_text}: its operator must serve one DNSKEY set on every nameserver and sign the zone again (signatures expired, not yet valid, made with a key it does not serve, or a missing proof of no DS) on {servers}"
    )])
}

fn join_tags(tags: &[u16]) -> String {
    tags.iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a validator makes of the DS set the parent's servers hand out.
#[derive(Debug)]
enum ParentSide {
    /// Every DS set served verifies under every (self-signed) DNSKEY set the parent's servers
    /// serve; the tags of the parent's keys that signed it.
    Signed(Vec<u16>),
    /// No parent server serves a DNSKEY: the parent is not signed, nobody validates below it.
    Unsigned(BTreeMap<String, Vec<String>>),
    /// What fails, per parent server.
    Bogus(BTreeMap<String, Vec<String>>),
    /// The parent's DNSKEY set could not be had (not asked, no answer, no authority).
    Unknown(BTreeMap<String, Vec<String>>),
}

/// Checks the parent's side of the chain: each parent server's DNSKEY set is self-signed,
/// and each server's DS set is signed by a key of each of those DNSKEY sets (a validator
/// may take the keys from one server and the DS from another).
fn parent_side(seen: &DnssecSeen, domain: &Name, now: u64) -> ParentSide {
    let Some(parent) = seen.parent.parent.as_ref() else {
        return ParentSide::Unknown(BTreeMap::from([(
            "the parent zone".to_string(),
            vec!["not found".to_string()],
        )]));
    };
    let parent_text = parent.to_ascii();
    let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unsigned: Vec<String> = Vec::new();
    let mut bogus: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // The self-signed DNSKEY sets, each with the servers that serve it.
    let mut key_sets: Vec<(Vec<DNSKEY>, Vec<String>)> = Vec::new();
    if seen.parent.keys.is_empty() {
        // Not asked is not verified: never a green by omission.
        unknown.insert(
            parent_text.clone(),
            vec![format!("DNSKEY of {parent_text}: not asked")],
        );
    }
    for (server, reply) in &seen.parent.keys {
        let a = match reply {
            Err(e) => {
                unknown
                    .entry(server.clone())
                    .or_default()
                    .push(format!("DNSKEY of {parent_text}: {e}"));
                continue;
            }
            Ok(a) if !a.authoritative || a.rcode != hickory_proto::op::ResponseCode::NoError => {
                unknown.entry(server.clone()).or_default().push(format!(
                    "DNSKEY of {parent_text}: answers {}{}",
                    a.rcode,
                    if a.authoritative {
                        ""
                    } else {
                        " without authority"
                    }
                ));
                continue;
            }
            Ok(a) => a,
        };
        let records = a.rrset(parent, RecordType::DNSKEY);
        let mut keys: Vec<DNSKEY> = records
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::DNSKEY(k)) if k.zone_key() && !k.revoke() => {
                    Some(k.clone())
                }
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            unsigned.push(server.clone());
            continue;
        }
        let sigs = rrsigs(a, parent, RecordType::DNSKEY);
        if let Err(e) = verify_rrset(parent, &records, &sigs, &keys, parent, now) {
            bogus
                .entry(server.clone())
                .or_default()
                .push(format!("DNSKEY of {parent_text}: {e}"));
            continue;
        }
        keys.sort_by_key(|k| k.calculate_key_tag().unwrap_or(0));
        match key_sets.iter_mut().find(|(set, _)| *set == keys) {
            Some((_, servers)) => servers.push(server.clone()),
            None => key_sets.push((keys, vec![server.clone()])),
        }
    }
    if key_sets.is_empty() && bogus.is_empty() {
        if !unsigned.is_empty() {
            return ParentSide::Unsigned(
                unsigned
                    .into_iter()
                    .map(|s| (s, vec![format!("serves no DNSKEY for {parent_text}")]))
                    .collect(),
            );
        }
        return ParentSide::Unknown(unknown);
    }
    // The parent is signed: a server of it that serves no DNSKEY breaks validation.
    for server in &unsigned {
        bogus.entry(server.clone()).or_default().push(format!(
            "serves no DNSKEY for {parent_text} while other servers of it do"
        ));
    }
    let mut used: Vec<u16> = Vec::new();
    for (server, reply) in &seen.parent.servers {
        let Ok(a) = reply else { continue };
        if !a.authoritative || a.rcode != hickory_proto::op::ResponseCode::NoError {
            continue;
        }
        let records = a.rrset(domain, RecordType::DS);
        if records.is_empty() {
            // No DS from a signed parent: a validator needs the proof that there is none,
            // or it cannot tell the answer from a forged one.
            for (keys, from) in &key_sets {
                if let Err(e) = denial::check(parent, domain, RecordType::DS, a, keys, now) {
                    let whose = if key_sets.len() > 1 {
                        format!(" (with the DNSKEY set served by {})", from.join(", "))
                    } else {
                        String::new()
                    };
                    bogus
                        .entry(server.clone())
                        .or_default()
                        .push(format!("no DS, and no valid proof of it: {e}{whose}"));
                }
            }
            continue;
        }
        let sigs = rrsigs(a, domain, RecordType::DS);
        for (keys, from) in &key_sets {
            match verify_rrset_by(domain, &records, &sigs, keys, parent, now) {
                Ok((_, tags)) => {
                    for tag in tags {
                        if !used.contains(&tag) {
                            used.push(tag);
                        }
                    }
                }
                Err(e) => {
                    let whose = if key_sets.len() > 1 {
                        format!(" (with the DNSKEY set served by {})", from.join(", "))
                    } else {
                        String::new()
                    };
                    bogus
                        .entry(server.clone())
                        .or_default()
                        .push(format!("DS: {e}{whose}"));
                }
            }
        }
    }
    if !bogus.is_empty() {
        return ParentSide::Bogus(bogus);
    }
    if !unknown.is_empty() {
        return ParentSide::Unknown(unknown);
    }
    used.sort_unstable();
    ParentSide::Signed(used)
}

#[allow(clippy::too_many_arguments)]
fn note(
    earliest: &mut Option<u64>,
    expiring: &mut BTreeMap<String, Vec<String>>,
    server: &str,
    what: &str,
    expiry: u64,
    now: u64,
    refresh: u64,
) {
    *earliest = Some(earliest.map_or(expiry, |e| e.min(expiry)));
    if expiry < now.saturating_add(refresh) {
        expiring
            .entry(server.to_string())
            .or_default()
            .push(format!("{what}: signature expires {}", utc(expiry)));
    }
}

fn tags(keys: &[DNSKEY]) -> String {
    keys.iter()
        .filter_map(|k| k.calculate_key_tag().ok())
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The RRSIGs of an answer that cover `owner`/`rtype`.
fn rrsigs<'a>(
    a: &'a crate::diagnose::dnssec::Answered,
    owner: &Name,
    rtype: RecordType,
) -> Vec<&'a RRSIG> {
    rrsigs_in(&a.answers, owner, rtype)
}

/// The RRSIGs among `records` that cover `owner`/`rtype`.
fn rrsigs_in<'a>(records: &'a [Record], owner: &Name, rtype: RecordType) -> Vec<&'a RRSIG> {
    records
        .iter()
        .filter(|r| same_name(&r.name, owner))
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) if sig.input().type_covered == rtype => {
                Some(sig)
            }
            _ => None,
        })
        .collect()
}

/// Checks an rrset against its RRSIGs with hickory-proto's verifier: one signature by one of
/// `keys` (right tag and algorithm, signer the zone) that is within its validity period and
/// verifies is enough. `Ok` holds its expiry; `Err` says why none holds.
fn verify_rrset(
    owner: &Name,
    records: &[&Record],
    sigs: &[&RRSIG],
    keys: &[DNSKEY],
    zone: &Name,
    now: u64,
) -> Result<u64, String> {
    verify_rrset_by(owner, records, sigs, keys, zone, now).map(|(expiry, _)| expiry)
}

/// [`verify_rrset`], with the tags of the keys whose signatures verified.
fn verify_rrset_by(
    owner: &Name,
    records: &[&Record],
    sigs: &[&RRSIG],
    keys: &[DNSKEY],
    zone: &Name,
    now: u64,
) -> Result<(u64, Vec<u16>), String> {
    if sigs.is_empty() {
        return Err("no RRSIG".into());
    }
    let mut why = Vec::new();
    let mut best: Option<u64> = None;
    let mut by: Vec<u16> = Vec::new();
    for sig in sigs {
        let input = sig.input();
        let tag = input.key_tag;
        if !same_name(&input.signer_name, zone) {
            why.push(format!("RRSIG by {} (not the zone)", input.signer_name));
            continue;
        }
        let inception = u64::from(input.sig_inception.get());
        let expiration = u64::from(input.sig_expiration.get());
        if expiration < now {
            why.push(format!("RRSIG by key {tag} expired {}", utc(expiration)));
            continue;
        }
        if inception > now {
            why.push(format!(
                "RRSIG by key {tag} not valid before {}",
                utc(inception)
            ));
            continue;
        }
        let candidates: Vec<&DNSKEY> = keys
            .iter()
            .filter(|k| {
                k.calculate_key_tag().ok() == Some(tag)
                    && k.public_key().algorithm() == input.algorithm
            })
            .collect();
        if candidates.is_empty() {
            why.push(format!(
                "RRSIG by key {tag}, which is not in the DNSKEY set"
            ));
            continue;
        }
        let ok = candidates.iter().any(|k| {
            k.verify_rrsig(owner, DNSClass::IN, sig, records.iter().copied())
                .is_ok()
        });
        if ok {
            best = Some(best.map_or(expiration, |b| b.max(expiration)));
            if !by.contains(&tag) {
                by.push(tag);
            }
        } else {
            why.push(format!("RRSIG by key {tag} does not verify"));
        }
    }
    best.map(|b| (b, by)).ok_or_else(|| why.join("; "))
}

/// The SEP keys the domain's servers publish (for the DS lines of a fix).
fn served_sep_keys(seen: &DnssecSeen, question: &str, domain: &Name) -> Vec<DNSKEY> {
    let mut out: Vec<DNSKEY> = Vec::new();
    for replies in seen.servers.values() {
        let Some(Ok(a)) = replies.get(&(question.to_string(), RecordType::DNSKEY)) else {
            continue;
        };
        for r in a.rrset(domain, RecordType::DNSKEY) {
            if let RData::DNSSEC(DNSSECRData::DNSKEY(k)) = &r.data
                && k.zone_key()
                && k.secure_entry_point()
                && !k.revoke()
                && !out.contains(k)
            {
                out.push(k.clone());
            }
        }
    }
    out
}

/// `domain. 3600 IN DS tag alg 2 HEX` for a key.
fn ds_line(domain: &Name, key: &DNSKEY) -> Option<String> {
    let digest = key.to_digest(domain, DigestType::SHA256).ok()?;
    let ds = DS::new(
        key.calculate_key_tag().ok()?,
        key.public_key().algorithm(),
        DigestType::SHA256,
        digest.as_ref().to_vec(),
    );
    Some(format!(
        "{}. 3600 IN DS {ds}",
        domain.to_ascii().trim_end_matches('.')
    ))
}

#[cfg(test)]
mod tests {
    //! The judge on answers signed here with a real key: valid, expired, tampered, expiring,
    //! missing DNSKEY; the parent's side (its DNSKEY set, its signature over the DS, its
    //! proof of no DS); NSEC and NSEC3 proofs of negative answers. The verifier is
    //! hickory-proto's; these show it is asked.

    use std::collections::BTreeMap;

    use hickory_proto::dnssec::TBS;
    use hickory_proto::dnssec::rdata::sig::SigInput;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::SOA;
    use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};

    use super::*;
    use crate::diagnose::dnssec::{Answered, DnssecSeen, ParentDs};
    use crate::dnssec::keys::{Role, ZoneKey, generate};
    use crate::provision::association::{Association, Mode};
    use crate::provision::platform::Platform;
    use crate::provision::records::Families;

    const NOW: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;
    const NS: &str = "ns.far.example. (192.0.2.1)";

    fn origin() -> Name {
        Name::from_ascii("far.example.").unwrap()
    }

    fn parent_origin() -> Name {
        Name::from_ascii("example.").unwrap()
    }

    fn key_of(zone: &Name) -> ZoneKey {
        generate(
            zone,
            crate::dnssec::AlgorithmName::Ecdsap256sha256,
            Role::Csk,
            NOW,
        )
        .unwrap()
        .0
    }

    fn key() -> ZoneKey {
        key_of(&origin())
    }

    fn parent_key() -> ZoneKey {
        key_of(&parent_origin())
    }

    fn sign(key: &ZoneKey, records: &[Record], inception: u64, expiration: u64) -> Record {
        sign_as(key, &origin(), records, inception, expiration)
    }

    fn sign_as(
        key: &ZoneKey,
        signer: &Name,
        records: &[Record],
        inception: u64,
        expiration: u64,
    ) -> Record {
        let first = &records[0];
        let input = SigInput {
            type_covered: first.record_type(),
            algorithm: key.record.algorithm.algorithm(),
            num_labels: first.name.num_labels(),
            original_ttl: first.ttl,
            sig_expiration: SerialNumber::new(expiration as u32),
            sig_inception: SerialNumber::new(inception as u32),
            key_tag: key.record.key_tag,
            signer_name: signer.clone(),
        };
        let tbs = TBS::from_input(&first.name, DNSClass::IN, &input, records.iter()).unwrap();
        let sig = key.signer.sign(&tbs).unwrap();
        Record::from_rdata(
            first.name.clone(),
            first.ttl,
            RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
        )
    }

    fn soa(serial: u32) -> Record {
        Record::from_rdata(
            origin(),
            300,
            RData::SOA(SOA::new(
                Name::from_ascii("ns.far.example.").unwrap(),
                Name::from_ascii("hostmaster.far.example.").unwrap(),
                serial,
                3600,
                600,
                86400,
                60,
            )),
        )
    }

    fn answer(records: Vec<Record>) -> Answered {
        Answered {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: records,
            authority: vec![],
        }
    }

    const PARENT_NS: &str = "a.example. (192.0.2.9)";
    const PARENT_NS2: &str = "b.example. (192.0.2.10)";

    /// The parent's self-signed DNSKEY answer of `parent_key` (none: the parent is unsigned).
    fn parent_keys_answer(parent_key: Option<&ZoneKey>) -> Answered {
        let Some(pk) = parent_key else {
            return answer(vec![]);
        };
        let dnskey = Record::from_rdata(
            parent_origin(),
            3600,
            RData::DNSSEC(DNSSECRData::DNSKEY(pk.dnskey.clone())),
        );
        let sig = sign_as(
            pk,
            &parent_origin(),
            std::slice::from_ref(&dnskey),
            NOW - DAY,
            NOW + 14 * DAY,
        );
        answer(vec![dnskey, sig])
    }

    /// The DS of `key` at the parent, signed by `signer` with these dates (none: unsigned).
    fn ds_answer(key: &ZoneKey, signer: Option<(&ZoneKey, u64, u64)>) -> Answered {
        let ds = Record::from_rdata(
            origin(),
            3600,
            RData::DNSSEC(DNSSECRData::DS(key.ds(&origin()).unwrap())),
        );
        let mut records = vec![ds.clone()];
        if let Some((pk, inception, expiration)) = signer {
            records.push(sign_as(
                pk,
                &parent_origin(),
                std::slice::from_ref(&ds),
                inception,
                expiration,
            ));
        }
        answer(records)
    }

    /// One parent server serving `ds` and the DNSKEY set of `parent_key`.
    fn parent(ds: Answered, parent_key: Option<&ZoneKey>) -> ParentDs {
        ParentDs {
            parent: Some(parent_origin()),
            error: None,
            servers: BTreeMap::from([(PARENT_NS.to_string(), Ok(ds))]),
            keys: BTreeMap::from([(PARENT_NS.to_string(), Ok(parent_keys_answer(parent_key)))]),
            queries: 2,
        }
    }

    /// A signed parent serving the DS of `key` (signed by the parent), and the domain's
    /// server serving its DNSKEY (signed) and `soa_answer` for the SOA.
    fn seen(key: &ZoneKey, dnskey_served: bool, soa_answer: Vec<Record>) -> DnssecSeen {
        let pk = parent_key();
        let parent = parent(
            ds_answer(key, Some((&pk, NOW - DAY, NOW + 14 * DAY))),
            Some(&pk),
        );
        let dnskey = Record::from_rdata(
            origin(),
            3600,
            RData::DNSSEC(DNSSECRData::DNSKEY(key.dnskey.clone())),
        );
        let dnskey_answer = if dnskey_served {
            let sig = sign(
                key,
                std::slice::from_ref(&dnskey),
                NOW - DAY,
                NOW + 14 * DAY,
            );
            vec![dnskey, sig]
        } else {
            vec![]
        };
        let replies = BTreeMap::from([
            (
                ("far.example.".to_string(), RecordType::DNSKEY),
                Ok(answer(dnskey_answer)),
            ),
            (
                ("far.example.".to_string(), RecordType::SOA),
                Ok(answer(soa_answer)),
            ),
        ]);
        DnssecSeen {
            parent,
            servers: BTreeMap::from([(NS.to_string(), replies)]),
            error: None,
            queries: 3,
            checked_at: NOW,
        }
    }

    fn judged(seen: &DnssecSeen) -> Vec<Finding> {
        let association = Association::new(
            "far.example.",
            "pro1",
            Mode::Authoritative,
            Families::default(),
            true,
            "tok".into(),
        );
        let platform = Platform::example();
        let mut subject = Subject::new(&association, &platform);
        subject.dnssec_expected = true;
        judge(&subject, seen)
    }

    fn only(findings: &[Finding], code: &str) -> Finding {
        let f: Vec<&Finding> = findings.iter().filter(|f| f.code == code).collect();
        assert_eq!(f.len(), 1, "{code}: {findings:#?}");
        f[0].clone()
    }

    fn signed_soa(k: &ZoneKey) -> Vec<Record> {
        let s = soa(7);
        let sig = sign(k, std::slice::from_ref(&s), NOW - DAY, NOW + 14 * DAY);
        vec![s, sig]
    }

    #[test]
    fn valid_signatures_under_a_matching_ds_are_secure() {
        let k = key();
        let findings = judged(&seen(&k, true, signed_soa(&k)));
        let f = only(&findings, "dnssec.ok");
        assert!(f.message.contains("DNSKEY and SOA validate"), "{f:?}");
        assert_eq!(findings.len(), 1, "{findings:#?}");
    }

    #[test]
    fn the_secure_finding_names_the_parent_key_and_says_the_chain_starts_at_the_parent() {
        let k = key();
        let mut s = seen(&k, true, signed_soa(&k));
        let pk = parent_key();
        s.parent = parent(
            ds_answer(&k, Some((&pk, NOW - DAY, NOW + 14 * DAY))),
            Some(&pk),
        );
        let f = only(&judged(&s), "dnssec.ok");
        let tag = pk.record.key_tag.to_string();
        assert!(
            f.message.contains(&format!("signed by its key {tag}")),
            "{f:?}"
        );
        assert!(
            f.message
                .contains("Chain checked from the keys of example. down"),
            "{f:?}"
        );
    }

    #[test]
    fn a_ds_at_an_unsigned_parent_is_insecure_never_secure() {
        let k = key();
        let mut s = seen(&k, true, signed_soa(&k));
        s.parent = parent(ds_answer(&k, None), None);
        let findings = judged(&s);
        let f = only(&findings, "dnssec.parent_unsigned");
        assert!(f.message.starts_with("insecure"), "{f:?}");
        assert!(f.message.contains("not signed"), "{f:?}");
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.status.is_bad());
        assert!(
            !findings.iter().any(|f| f.code == "dnssec.ok"),
            "{findings:#?}"
        );
    }

    #[test]
    fn an_unsigned_ds_at_a_signed_parent_is_bogus() {
        let k = key();
        let pk = parent_key();
        let mut s = seen(&k, true, signed_soa(&k));
        s.parent = parent(ds_answer(&k, None), Some(&pk));
        let findings = judged(&s);
        let f = only(&findings, "dnssec.parent_bogus");
        assert!(f.seen[PARENT_NS][0].contains("no RRSIG"), "{f:?}");
        assert!(!findings.iter().any(|f| f.code == "dnssec.ok"));
    }

    #[test]
    fn an_expired_ds_signature_is_bogus_and_names_the_parent_server() {
        let k = key();
        let pk = parent_key();
        let mut s = seen(&k, true, signed_soa(&k));
        s.parent = parent(
            ds_answer(&k, Some((&pk, NOW - 20 * DAY, NOW - DAY))),
            Some(&pk),
        );
        let findings = judged(&s);
        let f = only(&findings, "dnssec.parent_bogus");
        assert_eq!(f.severity, Severity::Error);
        assert!(f.message.starts_with("bogus"), "{f:?}");
        assert!(f.message.contains(PARENT_NS), "{f:?}");
        assert!(f.seen[PARENT_NS][0].contains("expired"), "{f:?}");
        assert!(!findings.iter().any(|f| f.code == "dnssec.ok"));
    }

    #[test]
    fn a_ds_signed_by_a_key_the_parent_does_not_serve_is_bogus() {
        let k = key();
        let mut s = seen(&k, true, signed_soa(&k));
        let (served, other) = (parent_key(), parent_key());
        s.parent = parent(
            ds_answer(&k, Some((&other, NOW - DAY, NOW + 14 * DAY))),
            Some(&served),
        );
        let f = only(&judged(&s), "dnssec.parent_bogus");
        assert!(
            f.seen[PARENT_NS][0].contains("not in the DNSKEY set"),
            "{f:?}"
        );
    }

    #[test]
    fn a_parent_dnskey_set_without_a_valid_self_signature_is_bogus() {
        let k = key();
        let pk = parent_key();
        let mut s = seen(&k, true, signed_soa(&k));
        let mut p = parent(
            ds_answer(&k, Some((&pk, NOW - DAY, NOW + 14 * DAY))),
            Some(&pk),
        );
        // The parent's DNSKEY served without its RRSIG.
        if let Some(Ok(a)) = p.keys.get_mut(PARENT_NS) {
            a.answers.retain(|r| r.record_type() == RecordType::DNSKEY);
        }
        s.parent = p;
        let f = only(&judged(&s), "dnssec.parent_bogus");
        assert!(
            f.seen[PARENT_NS][0].starts_with("DNSKEY of example."),
            "{f:?}"
        );
    }

    #[test]
    fn parent_servers_with_different_keys_make_the_ds_bogus_and_name_both() {
        // Each parent server is consistent on its own, but a validator taking the keys from
        // one and the DS from the other fails.
        let k = key();
        let (p1, p2) = (parent_key(), parent_key());
        let mut s = seen(&k, true, signed_soa(&k));
        s.parent.servers = BTreeMap::from([
            (
                PARENT_NS.to_string(),
                Ok(ds_answer(&k, Some((&p1, NOW - DAY, NOW + 14 * DAY)))),
            ),
            (
                PARENT_NS2.to_string(),
                Ok(ds_answer(&k, Some((&p2, NOW - DAY, NOW + 14 * DAY)))),
            ),
        ]);
        s.parent.keys = BTreeMap::from([
            (PARENT_NS.to_string(), Ok(parent_keys_answer(Some(&p1)))),
            (PARENT_NS2.to_string(), Ok(parent_keys_answer(Some(&p2)))),
        ]);
        let f = only(&judged(&s), "dnssec.parent_bogus");
        assert!(f.seen[PARENT_NS][0].contains(PARENT_NS2), "{f:?}");
        assert!(f.seen[PARENT_NS2][0].contains(PARENT_NS), "{f:?}");
    }

    fn name(n: &str) -> Name {
        Name::from_ascii(n).unwrap()
    }

    fn nsec(owner: &str, next: &str, types: &[RecordType]) -> Record {
        Record::from_rdata(
            name(owner),
            60,
            RData::DNSSEC(DNSSECRData::NSEC(hickory_proto::dnssec::rdata::NSEC::new(
                name(next),
                types.iter().copied(),
            ))),
        )
    }

    fn nsec3_hash(n: &str) -> Vec<u8> {
        hickory_proto::dnssec::Nsec3HashAlgorithm::SHA1
            .hash(&[], &name(n), 0)
            .unwrap()
            .as_ref()
            .to_vec()
    }

    /// The NSEC3 (SHA-1, no salt, no extra iteration) of `owner` pointing to `next`.
    fn nsec3(owner: &str, next: &str, types: &[RecordType]) -> Record {
        let label = data_encoding::BASE32_DNSSEC.encode(&nsec3_hash(owner));
        Record::from_rdata(
            name(&format!("{label}.far.example.")),
            60,
            RData::DNSSEC(DNSSECRData::NSEC3(
                hickory_proto::dnssec::rdata::NSEC3::new(
                    hickory_proto::dnssec::Nsec3HashAlgorithm::SHA1,
                    false,
                    0,
                    vec![],
                    nsec3_hash(next),
                    types.iter().copied(),
                ),
            )),
        )
    }

    /// Each record as its own rrset, signed by `key` for `signer`.
    fn signed_each(key: &ZoneKey, signer: &Name, records: Vec<Record>) -> Vec<Record> {
        records
            .into_iter()
            .flat_map(|r| {
                let sig = sign_as(
                    key,
                    signer,
                    std::slice::from_ref(&r),
                    NOW - DAY,
                    NOW + 14 * DAY,
                );
                [r, sig]
            })
            .collect()
    }

    fn negative(rcode: ResponseCode, authority: Vec<Record>) -> Answered {
        Answered {
            rcode,
            authoritative: true,
            answers: vec![],
            authority,
        }
    }

    /// A secure world in which the domain's server answers `q`/`t` with `a`.
    fn seen_with(k: &ZoneKey, q: &str, t: RecordType, a: Answered) -> DnssecSeen {
        let mut s = seen(k, true, signed_soa(k));
        s.servers
            .get_mut(NS)
            .unwrap()
            .insert((q.to_string(), t), Ok(a));
        s
    }

    const APEX_TYPES: &[RecordType] = &[
        RecordType::SOA,
        RecordType::NS,
        RecordType::DNSKEY,
        RecordType::NSEC,
        RecordType::RRSIG,
    ];

    #[test]
    fn a_nodata_with_a_signed_nsec_proof_is_secure_and_says_what_is_proven_absent() {
        let k = key();
        let proof = signed_each(
            &k,
            &origin(),
            vec![nsec("far.example.", "mail.far.example.", APEX_TYPES)],
        );
        let s = seen_with(
            &k,
            "far.example.",
            RecordType::MX,
            negative(ResponseCode::NoError, proof),
        );
        let f = only(&judged(&s), "dnssec.ok");
        assert!(
            f.message
                .contains("proven absent: no far.example MX (NSEC)"),
            "{f:?}"
        );
    }

    #[test]
    fn a_negative_answer_without_a_proof_is_bogus() {
        let k = key();
        let s = seen_with(
            &k,
            "far.example.",
            RecordType::MX,
            negative(ResponseCode::NoError, signed_soa(&k)),
        );
        let f = only(&judged(&s), "dnssec.bogus");
        assert!(f.seen[NS][0].contains("no NSEC or NSEC3 proof"), "{f:?}");
    }

    #[test]
    fn an_nsec_that_lists_the_denied_type_is_bogus() {
        let k = key();
        let mut types = APEX_TYPES.to_vec();
        types.push(RecordType::MX);
        let proof = signed_each(
            &k,
            &origin(),
            vec![nsec("far.example.", "mail.far.example.", &types)],
        );
        let s = seen_with(
            &k,
            "far.example.",
            RecordType::MX,
            negative(ResponseCode::NoError, proof),
        );
        let f = only(&judged(&s), "dnssec.bogus");
        assert!(f.seen[NS][0].contains("lists MX"), "{f:?}");
    }

    #[test]
    fn an_nsec_proof_signed_by_a_key_outside_the_dnskey_set_is_bogus() {
        let k = key();
        let proof = signed_each(
            &key(),
            &origin(),
            vec![nsec("far.example.", "mail.far.example.", APEX_TYPES)],
        );
        let s = seen_with(
            &k,
            "far.example.",
            RecordType::MX,
            negative(ResponseCode::NoError, proof),
        );
        let f = only(&judged(&s), "dnssec.bogus");
        assert!(f.seen[NS][0].contains("not in the DNSKEY set"), "{f:?}");
    }

    #[test]
    fn an_nxdomain_with_nsec_covering_the_name_and_the_wildcard_is_secure() {
        let k = key();
        // In canonical order `*` and `_dmarc` both sort between the apex and `mail`.
        let proof = signed_each(
            &k,
            &origin(),
            vec![nsec("far.example.", "mail.far.example.", APEX_TYPES)],
        );
        let s = seen_with(
            &k,
            "_dmarc.far.example.",
            RecordType::TXT,
            negative(ResponseCode::NXDomain, proof),
        );
        let f = only(&judged(&s), "dnssec.ok");
        assert!(
            f.message.contains("no _dmarc.far.example TXT (NSEC)"),
            "{f:?}"
        );
    }

    #[test]
    fn an_nxdomain_without_the_proof_of_no_wildcard_is_bogus() {
        let k = key();
        // `a` → `z` covers `m` but not `*` (which sorts before `a`).
        let proof = signed_each(
            &k,
            &origin(),
            vec![nsec(
                "a.far.example.",
                "z.far.example.",
                &[RecordType::TXT, RecordType::NSEC, RecordType::RRSIG],
            )],
        );
        let s = seen_with(
            &k,
            "m.far.example.",
            RecordType::TXT,
            negative(ResponseCode::NXDomain, proof),
        );
        let f = only(&judged(&s), "dnssec.bogus");
        assert!(f.seen[NS][0].contains("no wildcard *.far.example"), "{f:?}");
    }

    #[test]
    fn a_nodata_proven_by_a_matching_nsec3_is_secure() {
        let k = key();
        let proof = signed_each(
            &k,
            &origin(),
            vec![nsec3("far.example.", "mail.far.example.", APEX_TYPES)],
        );
        let s = seen_with(
            &k,
            "far.example.",
            RecordType::MX,
            negative(ResponseCode::NoError, proof),
        );
        let f = only(&judged(&s), "dnssec.ok");
        assert!(f.message.contains("no far.example MX (NSEC3)"), "{f:?}");
    }

    #[test]
    fn an_nxdomain_proven_by_nsec3_closest_encloser_and_no_wildcard_is_secure() {
        let k = key();
        // A chain of two hashes (apex, mail) covers every other hash.
        let proof = signed_each(
            &k,
            &origin(),
            vec![
                nsec3("far.example.", "mail.far.example.", APEX_TYPES),
                nsec3(
                    "mail.far.example.",
                    "far.example.",
                    &[RecordType::TXT, RecordType::RRSIG],
                ),
            ],
        );
        let s = seen_with(
            &k,
            "x.far.example.",
            RecordType::TXT,
            negative(ResponseCode::NXDomain, proof),
        );
        let f = only(&judged(&s), "dnssec.ok");
        assert!(f.message.contains("no x.far.example TXT (NSEC3)"), "{f:?}");
    }

    #[test]
    fn an_nxdomain_with_nsec3_but_no_closest_encloser_is_bogus() {
        let k = key();
        // Only the record of `mail`: nothing matches an ancestor of x.far.example.
        let proof = signed_each(
            &k,
            &origin(),
            vec![nsec3(
                "mail.far.example.",
                "far.example.",
                &[RecordType::TXT, RecordType::RRSIG],
            )],
        );
        let s = seen_with(
            &k,
            "x.far.example.",
            RecordType::TXT,
            negative(ResponseCode::NXDomain, proof),
        );
        let f = only(&judged(&s), "dnssec.bogus");
        assert!(f.seen[NS][0].contains("closest encloser"), "{f:?}");
    }

    #[test]
    fn no_ds_at_a_signed_parent_without_a_proof_is_bogus_not_insecure() {
        let k = key();
        let mut s = seen(&k, true, signed_soa(&k));
        s.parent = parent(negative(ResponseCode::NoError, vec![]), Some(&parent_key()));
        let findings = judged(&s);
        let f = only(&findings, "dnssec.parent_bogus");
        assert!(f.seen[PARENT_NS][0].contains("no valid proof"), "{f:?}");
        assert!(
            !findings.iter().any(|f| f.code == "dnssec.no_ds"),
            "{findings:#?}"
        );
    }

    #[test]
    fn no_ds_at_a_signed_parent_with_its_nsec_proof_is_insecure() {
        let k = key();
        let pk = parent_key();
        let mut s = seen(&k, true, signed_soa(&k));
        let proof = signed_each(
            &pk,
            &parent_origin(),
            vec![nsec(
                "far.example.",
                "zz.example.",
                &[RecordType::NS, RecordType::NSEC, RecordType::RRSIG],
            )],
        );
        s.parent = parent(negative(ResponseCode::NoError, proof), Some(&pk));
        let findings = judged(&s);
        let f = only(&findings, "dnssec.no_ds");
        assert!(f.message.starts_with("insecure"), "{f:?}");
    }

    #[test]
    fn a_parent_dnskey_set_not_asked_is_never_secure() {
        let k = key();
        let mut s = seen(&k, true, signed_soa(&k));
        s.parent.keys.clear();
        let findings = judged(&s);
        let f = only(&findings, "dnssec.parent_unverified");
        assert!(f.status.is_bad());
        assert!(!findings.iter().any(|f| f.code == "dnssec.ok"));
    }

    #[test]
    fn a_parent_dnskey_set_unanswered_at_one_server_is_never_secure() {
        let k = key();
        let mut s = seen(&k, true, signed_soa(&k));
        s.parent.keys.insert(
            PARENT_NS2.to_string(),
            Err("no answer within the diagnosis budget".into()),
        );
        let findings = judged(&s);
        let f = only(&findings, "dnssec.parent_unverified");
        assert!(f.seen.contains_key(PARENT_NS2), "{f:?}");
        assert!(!findings.iter().any(|f| f.code == "dnssec.ok"));
    }

    #[test]
    fn an_expired_signature_is_bogus_and_says_when_it_expired() {
        let k = key();
        let s = soa(7);
        let sig = sign(&k, std::slice::from_ref(&s), NOW - 20 * DAY, NOW - DAY);
        let findings = judged(&seen(&k, true, vec![s, sig]));
        let f = only(&findings, "dnssec.bogus");
        assert_eq!(f.severity, Severity::Error);
        assert!(f.seen[NS][0].contains("expired"), "{f:?}");
        assert!(!findings.iter().any(|f| f.code == "dnssec.ok"));
    }

    #[test]
    fn a_signature_over_other_data_does_not_verify_and_is_bogus() {
        let k = key();
        let sig = sign(&k, &[soa(7)], NOW - DAY, NOW + 14 * DAY);
        // Served: serial 8 with the signature made over serial 7.
        let findings = judged(&seen(&k, true, vec![soa(8), sig]));
        let f = only(&findings, "dnssec.bogus");
        assert!(f.seen[NS][0].contains("does not verify"), "{f:?}");
    }

    #[test]
    fn a_signature_by_a_key_outside_the_dnskey_set_is_bogus() {
        let k = key();
        let other = key();
        let s = soa(7);
        let sig = sign(&other, std::slice::from_ref(&s), NOW - DAY, NOW + 14 * DAY);
        let findings = judged(&seen(&k, true, vec![s, sig]));
        let f = only(&findings, "dnssec.bogus");
        assert!(f.seen[NS][0].contains("not in the DNSKEY set"), "{f:?}");
    }

    #[test]
    fn an_unsigned_rrset_under_a_ds_is_bogus() {
        let k = key();
        let findings = judged(&seen(&k, true, vec![soa(7)]));
        let f = only(&findings, "dnssec.bogus");
        assert!(f.seen[NS][0].contains("no RRSIG"), "{f:?}");
    }

    #[test]
    fn a_signature_expiring_within_the_refresh_window_is_a_warning() {
        let k = key();
        let s = soa(7);
        let sig = sign(&k, std::slice::from_ref(&s), NOW - DAY, NOW + 2 * DAY);
        let findings = judged(&seen(&k, true, vec![s, sig]));
        let f = only(&findings, "dnssec.expiring");
        assert_eq!(f.severity, Severity::Warning);
        assert!(!findings.iter().any(|f| f.code == "dnssec.ok"));
    }

    #[test]
    fn no_dnskey_under_a_ds_is_bogus() {
        let k = key();
        let s = soa(7);
        let sig = sign(&k, std::slice::from_ref(&s), NOW - DAY, NOW + 14 * DAY);
        let findings = judged(&seen(&k, false, vec![s, sig]));
        only(&findings, "dnssec.dnskey_missing");
    }

    #[test]
    fn a_ds_for_another_key_is_a_mismatch_with_the_served_key_ds_as_fix() {
        let k = key();
        let mut s = seen(&k, true, vec![]);
        let other = key();
        s.parent = seen(&other, true, vec![]).parent;
        let findings = judged(&s);
        let f = only(&findings, "dnssec.ds_mismatch");
        let right = k.ds(&origin()).unwrap().to_string();
        assert!(f.fix.iter().any(|l| l.ends_with(&right)), "{f:?}");
    }
}
