//! Judging: from what was gathered to findings, one module per family. Pure: no I/O, no
//! clock (the caller gives `now`), so each judge has table tests from answers to findings.
//!
//! Every red finding carries its fix: the zone lines to add and, marked `; remove:`, the lines
//! to remove; a sentence (a `;` comment) where no line fits.

mod autoconfig;
mod delegation;
mod dkim;
mod dmarc;
mod dnssec;
mod mta_sts;
mod mx;
mod ownership;
mod spf;
mod srv;
#[cfg(test)]
mod tests;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use std::collections::{BTreeMap, BTreeSet};

use super::check::{CheckStatus, Diagnosis, Finding, Severity};
use super::gather::{Gathered, Served, Subject, consensus, normalise, per_server, seen_map};
use super::gather::{expected_of, served_spf};
use crate::dkim::message::{Message as MailMessage, sign, verify};
use crate::provision::association::Mode;
use crate::provision::records::ExpectedRecord;
use crate::provision::records::Family;
use crate::provision::spf::SpfRecord;

/// Judges what was gathered. `spf` is the SPF evaluation (it needs its own lookups).
///
/// Only `delegation` looks at every server. Every other check is judged on the servers that
/// answered the apex SOA with authority, and says so when that is not all of them: a dead or
/// lame server is a delegation fault, not a missing DKIM key.
pub fn judge(
    subject: &Subject<'_>,
    g: &Gathered,
    spf: Option<&super::spf::SpfReport>,
    rua: &[(String, bool)],
) -> Vec<Finding> {
    let mut out = delegation::judge(subject, g);
    let records = &subject.association.records;
    let mut checks: Vec<&str> = Vec::new();
    for (on, check) in [
        (records.mx, "mx"),
        (records.srv, "srv"),
        (records.autoconfig, "autoconfig"),
        (records.spf, "spf"),
        (records.dmarc, "dmarc"),
        (records.dkim, "dkim"),
        (records.mta_sts, "mta-sts"),
        (records.tls_rpt, "tls-rpt"),
        (!subject.association.hosted, "ownership"),
        (g.dnssec.is_some(), "dnssec"),
    ] {
        if on {
            checks.push(check);
        }
    }
    let answering = authoritative_servers(subject, g);
    if answering.is_empty() {
        let why = match &g.discovery_error {
            Some(_) => "its nameservers cannot be found",
            None => "no nameserver answered with authority",
        };
        for check in checks {
            out.push(
                Finding::new(
                    check,
                    &format!("{check}.unchecked"),
                    CheckStatus::Error,
                    Severity::Error,
                    format!("not checked: {why} (see delegation)"),
                )
                .fix(vec![
                    "; fix the delegation first: every nameserver must answer with authority"
                        .into(),
                ]),
            );
        }
        return out;
    }
    let total = g.servers.len();
    let g = &g.only(&answering);
    let mut rest = Vec::new();
    for check in checks {
        rest.extend(match check {
            "mx" => mx::judge(subject, g),
            "srv" => srv::judge(subject, g),
            "autoconfig" => autoconfig::judge(subject, g),
            "spf" => spf::judge(subject, g, spf),
            "dmarc" => dmarc::judge(subject, g, rua),
            "dkim" => dkim::judge(subject, g),
            "mta-sts" => mta_sts::judge_mta_sts(subject, g),
            "tls-rpt" => mta_sts::judge_tls_rpt(subject, g),
            "dnssec" => g
                .dnssec
                .as_ref()
                .map(|seen| dnssec::judge(subject, seen))
                .unwrap_or_default(),
            _ => ownership::judge(subject, g),
        });
    }
    if answering.len() < total {
        for f in rest.iter_mut() {
            f.message = format!(
                "{} ({} of {total} nameservers answered)",
                f.message,
                answering.len()
            );
        }
    }
    out.extend(rest);
    out
}

/// The servers whose answer to the apex SOA was NOERROR with the AA bit.
fn authoritative_servers(subject: &Subject<'_>, g: &Gathered) -> Vec<String> {
    let soa = g
        .answers
        .get(&(subject.domain().to_string(), RecordType::SOA));
    g.servers
        .iter()
        .filter(|s| {
            matches!(
                soa.and_then(|m| m.get(*s)),
                Some(Served::Answer {
                    rcode: ResponseCode::NoError,
                    authoritative: true,
                    ..
                })
            )
        })
        .cloned()
        .collect()
}

/// Compares an expected record set at one name with what is served.
pub fn set_check(
    check: &str,
    what: &str,
    expected: &[&ExpectedRecord],
    g: &Gathered,
    rtype: RecordType,
) -> Vec<Finding> {
    let Some(first) = expected.first() else {
        return vec![];
    };
    let p = per_server(g, &first.name, rtype);
    let served = match consensus(check, what, &p) {
        Ok(s) => s,
        Err(f) => {
            return vec![
                f.expected(expected.iter().map(|e| e.line.clone()).collect())
                    .fix(expected.iter().map(|e| e.line.clone()).collect()),
            ];
        }
    };
    let mut want: Vec<String> = expected
        .iter()
        .map(|e| normalise(rtype, &e.value))
        .collect();
    want.sort();
    let have: Vec<String> = served.iter().map(|v| normalise(rtype, v)).collect();
    let lines: Vec<String> = expected.iter().map(|e| e.line.clone()).collect();
    if have.is_empty() {
        return vec![
            Finding::new(
                check,
                &format!("{check}.missing"),
                CheckStatus::Missing,
                Severity::Error,
                format!("{what} is missing"),
            )
            .expected(lines.clone())
            .seen(seen_map(&p))
            .fix(lines),
        ];
    }
    let missing: Vec<&String> = want.iter().filter(|w| !have.contains(w)).collect();
    if !missing.is_empty() {
        return vec![
            Finding::new(
                check,
                &format!("{check}.mismatch"),
                CheckStatus::Mismatch,
                Severity::Error,
                format!(
                    "{what} is not what the platform needs: missing {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .expected(lines.clone())
            .seen(seen_map(&p))
            .fix(lines),
        ];
    }
    vec![]
}

/// Puts the findings of one run together. Whether a failure is reported or still pending is
/// decided over time, by [`crate::diagnose::verdict`].
pub fn diagnosis(
    subject: &Subject<'_>,
    findings: Vec<Finding>,
    queries: u32,
    now: u64,
) -> Diagnosis {
    let overall = Diagnosis::overall_of(&findings);
    Diagnosis {
        domain: subject.association.domain.clone(),
        platform: subject.platform.id.clone(),
        checked_at: now,
        overall,
        checks: findings,
        queries,
    }
}

/// The findings of a check, or one `ok` finding when there are none.
pub fn or_ok(mut out: Vec<Finding>, check: &str, message: impl Into<String>) -> Vec<Finding> {
    if out.is_empty() {
        out.push(Finding::ok(check, message));
    }
    out
}
