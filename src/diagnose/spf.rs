//! Evaluating an SPF record the way a receiver would count it (RFC 7208 §4.6.4): DNS-querying
//! terms (include, redirect, a, mx, ptr, exists) at most 10 in all, void lookups at most 2,
//! includes and redirects followed through the resolver; and whether the platform's
//! mechanisms are reached with a pass qualifier.

use std::collections::BTreeSet;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use super::probe::{Prober, txt_values};
use crate::provision::spf::SpfRecord;

/// What the evaluation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpfReport {
    pub authorises: bool,
    pub lookups: usize,
    pub void_lookups: usize,
    pub queries: u32,
    /// The evaluation did not finish within the diagnosis budget: nothing above is known.
    pub unfinished: bool,
}

/// Evaluates `record` (an SPF record of `domain`) for `platform` mechanisms.
pub async fn evaluate(
    prober: &Prober,
    domain: &str,
    record: &str,
    platform: &[String],
) -> SpfReport {
    let mut report = SpfReport::default();
    let mut reached: BTreeSet<String> = BTreeSet::new();
    let mut visited: BTreeSet<String> = BTreeSet::new();
    // (record text, its domain, depth)
    let mut stack: Vec<(String, String, usize)> = vec![(record.to_string(), domain.to_string(), 0)];
    while let Some((text, at, depth)) = stack.pop() {
        let Some(spf) = SpfRecord::parse(&text) else {
            continue;
        };
        for term in spf.to_string().split_whitespace().skip(1) {
            let pass = !term.starts_with(['-', '~', '?']);
            let bare = term
                .trim_start_matches(['+', '-', '~', '?'])
                .to_ascii_lowercase();
            if pass {
                reached.insert(bare.clone());
            }
            let (kind, arg) = match bare.split_once([':', '=']) {
                Some((k, a)) => (k.to_string(), Some(a.to_string())),
                None => (bare.split('/').next().unwrap_or_default().to_string(), None),
            };
            match kind.as_str() {
                "include" | "redirect" => {
                    report.lookups += 1;
                    let Some(target) = arg else { continue };
                    if depth >= 10 || !visited.insert(target.clone()) {
                        continue;
                    }
                    report.queries += 1;
                    match lookup(prober, &target, RecordType::TXT).await {
                        Some(values) => {
                            match values.into_iter().find(|v| SpfRecord::parse(v).is_some()) {
                                Some(next) => stack.push((next, target, depth + 1)),
                                None => report.void_lookups += 1,
                            }
                        }
                        None => report.void_lookups += 1,
                    }
                }
                "a" | "mx" | "exists" | "ptr" => {
                    report.lookups += 1;
                    if kind == "ptr" {
                        continue;
                    }
                    let target = arg
                        .map(|a| a.split('/').next().unwrap_or_default().to_string())
                        .unwrap_or_else(|| at.clone());
                    let rtype = match kind.as_str() {
                        "mx" => RecordType::MX,
                        _ => RecordType::A,
                    };
                    report.queries += 1;
                    if lookup(prober, &target, rtype)
                        .await
                        .is_none_or(|v| v.is_empty())
                    {
                        report.void_lookups += 1;
                    }
                }
                _ => {}
            }
        }
    }
    report.authorises = platform
        .iter()
        .all(|m| reached.contains(&m.to_ascii_lowercase()));
    report
}

/// The answers of a recursive query through the resolver; `None` for NXDOMAIN or a failure.
async fn lookup(prober: &Prober, name: &str, rtype: RecordType) -> Option<Vec<String>> {
    let qname = Name::from_ascii(name).ok()?;
    let m = prober
        .query(prober.resolver, &qname, rtype, true)
        .await
        .ok()?;
    if m.metadata.response_code != ResponseCode::NoError {
        return None;
    }
    Some(match rtype {
        RecordType::TXT => txt_values(&m),
        _ => m
            .answers
            .iter()
            .filter(|r| r.record_type() == rtype)
            .map(|r| r.data.to_string())
            .collect(),
    })
}
