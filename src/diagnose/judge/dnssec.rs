//! DNSSEC: the chain of trust from the parent's DS set to the mail records, as a validator
//! would walk it, on every server: `secure`, `insecure` (no DS at the parent) or `bogus`
//! (with what was seen where, and what to do).
//!
//! Signatures are checked with hickory-proto's verifier (`Verifier::verify_rrsig` of the
//! DNSKEY over the RFC 4034 §3.1.8.1 data) and DS digests with `DS::covers`: no crypto of our
//! own. A zone configured here to be signed is never green while the parent has no DS. Not
//! judged: denial of existence (NSEC proofs of absent records) and the parent's own
//! signatures over the DS set.

use std::collections::BTreeMap;

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, RRSIG};
use hickory_proto::dnssec::{DigestType, PublicKey, Verifier};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::*;
use crate::diagnose::dnssec::{DnssecSeen, same_name, utc};

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
    if with_ds.is_empty() {
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
        for ((_, qtype), reply) in replies {
            if *qtype == RecordType::DNSKEY {
                continue;
            }
            let Ok(a) = reply else { continue };
            if !a.authoritative {
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
    let days = earliest.map_or(0, |e| e.saturating_sub(now) / 86400);
    out.push(Finding::new(
        CHECK,
        "dnssec.ok",
        CheckStatus::Ok,
        Severity::Info,
        format!(
            "secure: the DS at {parent_text} matches key {} served by all {} nameservers; DNSKEY and {} validate; earliest signature expiry in {days} days",
            key_tags
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            seen.servers.len(),
            validated.join(", ")
        ),
    ));
    out
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
    a.answers
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
    if sigs.is_empty() {
        return Err("no RRSIG".into());
    }
    let mut why = Vec::new();
    let mut best: Option<u64> = None;
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
        } else {
            why.push(format!("RRSIG by key {tag} does not verify"));
        }
    }
    best.ok_or_else(|| why.join("; "))
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
    //! missing DNSKEY. The verifier is hickory-proto's; these show it is asked.

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

    fn key() -> ZoneKey {
        generate(
            &origin(),
            crate::dnssec::AlgorithmName::Ecdsap256sha256,
            Role::Csk,
            NOW,
        )
        .unwrap()
        .0
    }

    fn sign(key: &ZoneKey, records: &[Record], inception: u64, expiration: u64) -> Record {
        let first = &records[0];
        let input = SigInput {
            type_covered: first.record_type(),
            algorithm: key.record.algorithm.algorithm(),
            num_labels: first.name.num_labels(),
            original_ttl: first.ttl,
            sig_expiration: SerialNumber::new(expiration as u32),
            sig_inception: SerialNumber::new(inception as u32),
            key_tag: key.record.key_tag,
            signer_name: origin(),
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
        }
    }

    /// A parent serving the DS of `key`, and the domain's server serving its DNSKEY (signed)
    /// and `soa_answer` for the SOA.
    fn seen(key: &ZoneKey, dnskey_served: bool, soa_answer: Vec<Record>) -> DnssecSeen {
        let ds = key.ds(&origin()).unwrap();
        let parent = ParentDs {
            parent: Some(Name::from_ascii("example.").unwrap()),
            error: None,
            servers: BTreeMap::from([(
                "a.example. (192.0.2.9)".to_string(),
                Ok(answer(vec![Record::from_rdata(
                    origin(),
                    3600,
                    RData::DNSSEC(DNSSECRData::DS(ds)),
                )])),
            )]),
            queries: 1,
        };
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

    #[test]
    fn valid_signatures_under_a_matching_ds_are_secure() {
        let k = key();
        let s = soa(7);
        let sig = sign(&k, std::slice::from_ref(&s), NOW - DAY, NOW + 14 * DAY);
        let findings = judged(&seen(&k, true, vec![s, sig]));
        let f = only(&findings, "dnssec.ok");
        assert!(f.message.contains("DNSKEY and SOA validate"), "{f:?}");
        assert_eq!(findings.len(), 1, "{findings:#?}");
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
