//! The checks: gather what every authoritative nameserver of a domain serves, then judge it
//! against what the association expects.
//!
//! Gathering asks each nameserver address directly (RD=0) for every name the platform needs;
//! judging is pure and compares per nameserver, so an inconsistency ("on 2 of 3 nameservers")
//! is a finding of its own. Fixes are given as zone-file lines.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::sync::Semaphore;

use super::check::{CheckStatus, Diagnosis, Finding, Severity};
use super::probe::{ProbeError, Prober};
use crate::dkim::message::{Message as MailMessage, sign, verify};
use crate::provision::association::{Association, Mode};
use crate::provision::dkim::{SelectorState, expected_dkim};
use crate::provision::platform::Platform;
use crate::provision::records::{ExpectedRecord, Family, expected_records};
use crate::provision::spf::SpfRecord;
use crate::zone::writer::rdata_text;

/// What one nameserver address said to one question.
#[derive(Debug, Clone)]
pub enum Served {
    Answer {
        rcode: ResponseCode,
        authoritative: bool,
        records: Vec<(RecordType, String)>,
    },
    Failed(String),
}

/// Everything gathered about a domain, by question then by nameserver.
#[derive(Debug, Default)]
pub struct Gathered {
    /// `ns-name (address)` labels, in a stable order.
    pub servers: Vec<String>,
    pub answers: HashMap<(String, RecordType), BTreeMap<String, Served>>,
    pub discovery_error: Option<String>,
    pub queries: u32,
}

/// Everything the checks need besides the network.
pub struct Subject<'a> {
    pub association: &'a Association,
    pub platform: &'a Platform,
    /// The expected records (platform records, DKIM, ownership).
    pub expected: Vec<ExpectedRecord>,
    /// A signing key per selector we can sign with (for the end-to-end DKIM probe).
    pub keys: HashMap<String, Arc<crate::dkim::SigningKey>>,
    /// TXT values of our own delegation zone, for delegated DKIM (`name` → values).
    pub delegated_txt: HashMap<String, Vec<String>>,
    /// Seconds since the association last changed (within TTL, failures are pending).
    pub changed_ago: u64,
}

impl<'a> Subject<'a> {
    pub fn new(association: &'a Association, platform: &'a Platform) -> Self {
        let domain = Name::from_ascii(&association.domain).unwrap_or_else(|_| Name::root());
        let token = (!association.hosted).then_some(association.ownership_token.as_str());
        let mut expected =
            expected_records(&domain, platform, &association.records, token).unwrap_or_default();
        if association.records.dkim {
            let published: Vec<_> = association
                .dkim
                .iter()
                .filter(|g| g.state != SelectorState::Generated)
                .cloned()
                .collect();
            expected.extend(expected_dkim(
                &domain,
                platform,
                &published,
                association.hosted,
            ));
        }
        Self {
            association,
            platform,
            expected,
            keys: HashMap::new(),
            delegated_txt: HashMap::new(),
            changed_ago: u64::MAX,
        }
    }

    fn domain(&self) -> &str {
        &self.association.domain
    }

    /// The questions to ask every nameserver.
    fn questions(&self) -> Vec<(String, RecordType)> {
        let d = self.domain().to_string();
        let mut q: BTreeSet<(String, u16)> = BTreeSet::new();
        for t in [RecordType::SOA, RecordType::MX, RecordType::TXT] {
            q.insert((d.clone(), u16::from(t)));
        }
        q.insert((format!("_dmarc.{d}"), u16::from(RecordType::TXT)));
        for label in ["autoconfig", "autodiscover"] {
            q.insert((format!("{label}.{d}"), u16::from(RecordType::CNAME)));
        }
        for e in &self.expected {
            let t: RecordType = e.rtype.parse().unwrap_or(RecordType::NULL);
            let t = if e.family == Family::Dkim {
                RecordType::TXT
            } else {
                t
            };
            q.insert((e.name.clone(), u16::from(t)));
        }
        q.into_iter()
            .map(|(n, t)| (n, RecordType::from(t)))
            .collect()
    }
}

fn record_text(m: &Message) -> Vec<(RecordType, String)> {
    m.answers
        .iter()
        .map(|r| {
            let text = match &r.data {
                RData::TXT(t) => t
                    .txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect::<String>(),
                other => rdata_text(other),
            };
            (r.record_type(), text)
        })
        .collect()
}

/// Asks every nameserver of the domain every question, each address at most `per_server`
/// queries at a time.
pub async fn gather(
    prober: &Prober,
    subject: &Subject<'_>,
    per_server: &(dyn Fn(SocketAddr) -> Arc<Semaphore> + Sync),
) -> Gathered {
    let mut out = Gathered::default();
    let domain = Name::from_ascii(subject.domain()).unwrap_or_else(|_| Name::root());
    out.queries += 1;
    let nameservers = match prober.nameservers(&domain).await {
        Ok(ns) => ns,
        Err(e) => {
            out.discovery_error = Some(e.to_string());
            return out;
        }
    };
    let questions = subject.questions();
    for ns in &nameservers {
        if ns.addresses.is_empty() {
            out.servers.push(format!("{} (no address)", ns.name));
            continue;
        }
        for addr in &ns.addresses {
            let label = format!("{} ({})", ns.name, addr.ip());
            out.servers.push(label.clone());
            let slots = per_server(*addr);
            let mut set = tokio::task::JoinSet::new();
            for (name, rtype) in questions.clone() {
                let prober = prober.clone();
                let slots = slots.clone();
                let addr = *addr;
                set.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let Ok(qname) = Name::from_ascii(&name) else {
                        return (name, rtype, Served::Failed("bad name".into()));
                    };
                    let served = match prober.query(addr, &qname, rtype, false).await {
                        Ok(m) => Served::Answer {
                            rcode: m.metadata.response_code,
                            authoritative: m.metadata.authoritative,
                            records: record_text(&m),
                        },
                        Err(ProbeError::Timeout { .. }) => {
                            Served::Failed("no answer (timeout)".into())
                        }
                        Err(e) => Served::Failed(e.to_string()),
                    };
                    (name, rtype, served)
                });
            }
            while let Some(Ok((name, rtype, served))) = set.join_next().await {
                out.queries += 1;
                out.answers
                    .entry((name, rtype))
                    .or_default()
                    .insert(label.clone(), served);
            }
        }
    }
    out
}

/// The records of one type each server serves for a question (`None` when a server failed).
fn per_server(
    g: &Gathered,
    name: &str,
    rtype: RecordType,
) -> BTreeMap<String, Option<Vec<String>>> {
    let mut out = BTreeMap::new();
    if let Some(by_server) = g.answers.get(&(name.to_string(), rtype)) {
        for (server, served) in by_server {
            let v = match served {
                Served::Answer {
                    rcode: ResponseCode::NoError | ResponseCode::NXDomain,
                    authoritative: true,
                    records,
                } => {
                    let mut v: Vec<String> = records
                        .iter()
                        .filter(|(t, _)| *t == rtype)
                        .map(|(_, r)| r.clone())
                        .collect();
                    v.sort();
                    Some(v)
                }
                _ => None,
            };
            out.insert(server.clone(), v);
        }
    }
    out
}

fn seen_map(p: &BTreeMap<String, Option<Vec<String>>>) -> BTreeMap<String, Vec<String>> {
    p.iter()
        .map(|(s, v)| {
            (
                s.clone(),
                v.clone()
                    .unwrap_or_else(|| vec!["(no usable answer)".into()]),
            )
        })
        .collect()
}

/// The record set every answering server agrees on, or a consistency finding.
fn consensus(
    check: &str,
    what: &str,
    p: &BTreeMap<String, Option<Vec<String>>>,
) -> Result<Vec<String>, Box<Finding>> {
    let answers: Vec<&Vec<String>> = p.values().flatten().collect();
    let Some(first) = answers.first() else {
        return Ok(vec![]);
    };
    let agree = answers.iter().filter(|a| **a == *first).count();
    if agree == answers.len() {
        return Ok((*first).clone());
    }
    // Name the majority and the odd ones.
    let mut counts: BTreeMap<&Vec<String>, usize> = BTreeMap::new();
    for a in &answers {
        *counts.entry(a).or_default() += 1;
    }
    let (majority, n) = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(v, n)| ((*v).clone(), *n))
        .unwrap_or_default();
    Err(Box::new(
        Finding::new(
            check,
            &format!("{check}.inconsistent"),
            CheckStatus::Mismatch,
            Severity::Error,
            format!(
                "{what} differs between nameservers: {n} of {} serve {:?}",
                answers.len(),
                majority
            ),
        )
        .seen(seen_map(p)),
    ))
}

fn expected_of<'s>(subject: &'s Subject<'_>, family: Family) -> Vec<&'s ExpectedRecord> {
    subject
        .expected
        .iter()
        .filter(|e| e.family == family)
        .collect()
}

/// Judges what was gathered. `spf` is the SPF evaluation (it needs its own lookups).
pub fn judge(
    subject: &Subject<'_>,
    g: &Gathered,
    spf: Option<&super::spf::SpfReport>,
    rua: &[(String, bool)],
) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(delegation(subject, g));
    if g.discovery_error.is_some() || g.servers.is_empty() {
        return out;
    }
    let records = &subject.association.records;
    if records.mx {
        out.extend(mx(subject, g));
    }
    if records.srv {
        out.extend(srv(subject, g));
    }
    if records.autoconfig {
        out.extend(autoconfig(subject, g));
    }
    if records.spf {
        out.extend(spf_findings(subject, g, spf));
    }
    if records.dmarc {
        out.extend(dmarc(subject, g, rua));
    }
    if records.dkim {
        out.extend(dkim(subject, g));
    }
    if !subject.association.hosted {
        out.extend(ownership(subject, g));
    }
    out
}

fn delegation(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    if let Some(e) = &g.discovery_error {
        return vec![Finding::new(
            "delegation",
            "delegation.no_nameservers",
            CheckStatus::Error,
            Severity::Error,
            format!(
                "the nameservers of {} cannot be found: {e}",
                subject.domain()
            ),
        )];
    }
    let mut out = Vec::new();
    let soa = g
        .answers
        .get(&(subject.domain().to_string(), RecordType::SOA));
    let mut serials: BTreeMap<String, u32> = BTreeMap::new();
    for server in &g.servers {
        match soa.and_then(|m| m.get(server)) {
            None => out.push(Finding::new(
                "delegation",
                "delegation.no_address",
                CheckStatus::Error,
                Severity::Error,
                format!("{server} has no address"),
            )),
            Some(Served::Failed(e)) => out.push(
                Finding::new(
                    "delegation",
                    "delegation.unreachable",
                    CheckStatus::Error,
                    Severity::Error,
                    format!("{server} does not answer: {e}"),
                )
                .seen(BTreeMap::from([(server.clone(), vec![e.clone()])])),
            ),
            Some(Served::Answer {
                rcode,
                authoritative,
                records,
            }) => {
                if *rcode != ResponseCode::NoError {
                    out.push(Finding::new(
                        "delegation",
                        "delegation.rcode",
                        CheckStatus::Error,
                        Severity::Error,
                        format!("{server} answers {rcode} for {}", subject.domain()),
                    ));
                } else if !authoritative {
                    out.push(Finding::new(
                        "delegation",
                        "delegation.lame",
                        CheckStatus::Error,
                        Severity::Error,
                        format!("{server} answers without authority (lame delegation): it does not serve {}", subject.domain()),
                    ));
                } else if let Some(serial) = records
                    .iter()
                    .find(|(t, _)| *t == RecordType::SOA)
                    .and_then(|(_, r)| r.split_whitespace().nth(2).and_then(|s| s.parse().ok()))
                {
                    serials.insert(server.clone(), serial);
                }
            }
        }
    }
    let distinct: BTreeSet<u32> = serials.values().copied().collect();
    if distinct.len() > 1 {
        let newest = distinct
            .iter()
            .copied()
            .max_by(|a, b| {
                if crate::zone::serial::serial_gt(*a, *b) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Less
                }
            })
            .unwrap_or(0);
        let on_newest = serials.values().filter(|s| **s == newest).count();
        let behind: Vec<String> = serials
            .iter()
            .filter(|(_, s)| **s != newest)
            .map(|(n, s)| format!("{n} serves {s}"))
            .collect();
        out.push(
            Finding::new(
                "delegation",
                "delegation.serial_mismatch",
                CheckStatus::Mismatch,
                Severity::Error,
                format!(
                    "{on_newest} of {} nameservers serve serial {newest}; {}",
                    serials.len(),
                    behind.join(", ")
                ),
            )
            .seen(
                serials
                    .iter()
                    .map(|(n, s)| (n.clone(), vec![s.to_string()]))
                    .collect(),
            ),
        );
    }
    or_ok(
        out,
        "delegation",
        format!(
            "{} nameserver address(es) answer authoritatively with serial {}",
            g.servers.len(),
            distinct.iter().next().copied().unwrap_or(0)
        ),
    )
}

/// Compares an expected record set at one name with what is served.
fn set_check(
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

/// Record data compared case-insensitively, names without their final dot.
fn normalise(rtype: RecordType, v: &str) -> String {
    match rtype {
        RecordType::TXT => v.to_string(),
        _ => v.to_ascii_lowercase().trim_end_matches('.').to_string(),
    }
}

fn mx(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Mx);
    let mut out = set_check("mx", "the MX set", &expected, g, RecordType::MX);
    if out.is_empty() && subject.association.mode == Mode::Authoritative {
        let p = per_server(g, subject.domain(), RecordType::MX);
        let served = consensus("mx", "the MX set", &p).unwrap_or_default();
        let want: Vec<String> = expected
            .iter()
            .map(|e| normalise(RecordType::MX, &e.value))
            .collect();
        let others: Vec<&String> = served
            .iter()
            .filter(|s| !want.contains(&normalise(RecordType::MX, s)))
            .collect();
        if !others.is_empty() {
            out.push(
                Finding::new("mx", "mx.other_platform", CheckStatus::Conflict, Severity::Error, format!("MX hosts of another platform receive mail of this authoritative domain: {}", others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")))
                    .seen(seen_map(&p))
                    .fix(others.iter().map(|o| format!("; remove: {} IN MX {o}", subject.domain())).collect()),
            );
        }
    }
    or_ok(
        out,
        "mx",
        "the platform's MX set is served by every nameserver",
    )
}

fn srv(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Srv);
    let mut names: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let at: Vec<&ExpectedRecord> = expected
            .iter()
            .copied()
            .filter(|e| e.name == name)
            .collect();
        out.extend(set_check(
            "srv",
            &format!("SRV {name}"),
            &at,
            g,
            RecordType::SRV,
        ));
    }
    or_ok(
        out,
        "srv",
        "every SRV record is served with the right target, port and priority",
    )
}

fn autoconfig(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Autoconfig);
    let mut out = Vec::new();
    for e in &expected {
        let p = per_server(g, &e.name, RecordType::CNAME);
        let served = match consensus("autoconfig", &e.name, &p) {
            Ok(s) => s,
            Err(f) => {
                out.push((*f).fix(vec![e.line.clone()]));
                continue;
            }
        };
        if served.is_empty() {
            out.push(
                Finding::new(
                    "autoconfig",
                    "autoconfig.missing",
                    CheckStatus::Missing,
                    Severity::Warning,
                    format!("{} is missing", e.name),
                )
                .expected(vec![e.line.clone()])
                .seen(seen_map(&p))
                .fix(vec![e.line.clone()]),
            );
        } else if normalise(RecordType::CNAME, &served[0]) != normalise(RecordType::CNAME, &e.value)
        {
            out.push(
                Finding::new("autoconfig", "autoconfig.stale", CheckStatus::Conflict, Severity::Warning, format!("{} points to {} (another provider): clients may take it over the SRV records", e.name, served[0]))
                    .expected(vec![e.line.clone()])
                    .seen(seen_map(&p))
                    .fix(vec![e.line.clone()]),
            );
        }
    }
    or_ok(
        out,
        "autoconfig",
        "autoconfig and autodiscover point to the platform",
    )
}

/// The SPF records at the apex, by consensus.
pub fn served_spf(domain: &str, g: &Gathered) -> Result<Vec<String>, Box<Finding>> {
    let p = per_server(g, domain, RecordType::TXT);
    consensus("spf", "the SPF record", &p).map(|all| {
        all.into_iter()
            .filter(|t| SpfRecord::parse(t).is_some())
            .collect()
    })
}

fn spf_findings(
    subject: &Subject<'_>,
    g: &Gathered,
    report: Option<&super::spf::SpfReport>,
) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Spf);
    let lines: Vec<String> = expected.iter().map(|e| e.line.clone()).collect();
    let p = per_server(g, subject.domain(), RecordType::TXT);
    let records = match served_spf(subject.domain(), g) {
        Ok(r) => r,
        Err(f) => return vec![(*f).fix(lines)],
    };
    let seen = seen_map(&p);
    let mut out = Vec::new();
    match records.len() {
        0 => out.push(Finding::new("spf", "spf.missing", CheckStatus::Missing, Severity::Error, "there is no SPF record").expected(lines.clone()).seen(seen.clone()).fix(lines.clone())),
        1 => {}
        n => out.push(
            Finding::new("spf", "spf.several", CheckStatus::Conflict, Severity::Error, format!("{n} SPF records: receivers treat that as a permanent error; merge them into one"))
                .seen(seen.clone())
                .fix(merged_spf_line(subject, &records)),
        ),
    }
    if records.len() == 1 {
        if let Some(r) = report {
            if !r.authorises {
                out.push(
                    Finding::new(
                        "spf",
                        "spf.not_authorised",
                        CheckStatus::Mismatch,
                        Severity::Error,
                        format!(
                            "the SPF record does not authorise the platform ({})",
                            subject.platform.spf.join(" ")
                        ),
                    )
                    .expected(lines.clone())
                    .seen(seen.clone())
                    .fix(merged_spf_line(subject, &records)),
                );
            }
            if r.lookups > 10 {
                out.push(Finding::new("spf", "spf.too_many_lookups", CheckStatus::Error, Severity::Error, format!("the SPF record needs {} DNS lookups; at most 10 are allowed (RFC 7208 §4.6.4)", r.lookups)).seen(seen.clone()));
            }
            if r.void_lookups > 2 {
                out.push(
                    Finding::new(
                        "spf",
                        "spf.too_many_void_lookups",
                        CheckStatus::Error,
                        Severity::Error,
                        format!(
                            "{} SPF lookups find nothing; at most 2 are allowed",
                            r.void_lookups
                        ),
                    )
                    .seen(seen.clone()),
                );
            }
        }
        if let Some(spf) = SpfRecord::parse(&records[0]) {
            let text = spf.to_string();
            if text.split_whitespace().any(|t| t == "+all" || t == "all") {
                out.push(
                    Finding::new(
                        "spf",
                        "spf.pass_all",
                        CheckStatus::Error,
                        Severity::Error,
                        "the SPF record ends in +all: it authorises every server on the internet",
                    )
                    .seen(seen.clone()),
                );
            } else if !text
                .split_whitespace()
                .any(|t| t.ends_with("all") || t.starts_with("redirect="))
            {
                out.push(
                    Finding::new(
                        "spf",
                        "spf.no_all",
                        CheckStatus::Mismatch,
                        Severity::Warning,
                        "the SPF record has no all term: end it with ~all or -all",
                    )
                    .seen(seen.clone()),
                );
            }
        }
    }
    or_ok(
        out,
        "spf",
        "one SPF record, authorising the platform, within the lookup limits",
    )
}

fn merged_spf_line(subject: &Subject<'_>, records: &[String]) -> Vec<String> {
    let mut merged = SpfRecord::parse(records.first().map(String::as_str).unwrap_or("v=spf1 ~all"))
        .unwrap_or_else(|| SpfRecord::new(&[]));
    for other in records.iter().skip(1) {
        if let Some(o) = SpfRecord::parse(other) {
            let terms: Vec<String> = o
                .to_string()
                .split_whitespace()
                .skip(1)
                .filter(|t| !t.ends_with("all"))
                .map(str::to_string)
                .collect();
            merged.merge(&terms);
        }
    }
    merged.merge(&subject.platform.spf);
    vec![format!(
        "{} {} IN TXT \"{merged}\"",
        subject.domain(),
        subject.platform.ttl
    )]
}

fn dmarc(subject: &Subject<'_>, g: &Gathered, rua: &[(String, bool)]) -> Vec<Finding> {
    let name = format!("_dmarc.{}", subject.domain());
    let expected = expected_of(subject, Family::Dmarc);
    let lines: Vec<String> = expected.iter().map(|e| e.line.clone()).collect();
    let p = per_server(g, &name, RecordType::TXT);
    let all = match consensus("dmarc", "the DMARC record", &p) {
        Ok(a) => a,
        Err(f) => return vec![*f],
    };
    let records: Vec<&String> = all.iter().filter(|t| t.starts_with("v=DMARC1")).collect();
    let seen = seen_map(&p);
    let mut out = Vec::new();
    match records.len() {
        0 => out.push(
            Finding::new(
                "dmarc",
                "dmarc.missing",
                CheckStatus::Missing,
                Severity::Warning,
                "there is no DMARC record",
            )
            .expected(lines.clone())
            .seen(seen.clone())
            .fix(lines.clone()),
        ),
        1 => {
            let tags: BTreeMap<String, String> = records[0]
                .split(';')
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            match tags.get("p").map(String::as_str) {
                Some("none") => out.push(
                    Finding::new(
                        "dmarc",
                        "dmarc.policy_none",
                        CheckStatus::Mismatch,
                        Severity::Notice,
                        "the DMARC policy is p=none: receivers only report, they do not act",
                    )
                    .seen(seen.clone()),
                ),
                Some("quarantine" | "reject") => {}
                _ => out.push(
                    Finding::new(
                        "dmarc",
                        "dmarc.invalid",
                        CheckStatus::Mismatch,
                        Severity::Error,
                        "the DMARC record has no valid p= tag",
                    )
                    .seen(seen.clone())
                    .fix(lines.clone()),
                ),
            }
            let removed: Vec<&str> = ["pct", "rf", "ri"]
                .into_iter()
                .filter(|t| tags.contains_key(*t))
                .collect();
            if !removed.is_empty() {
                out.push(
                    Finding::new(
                        "dmarc",
                        "dmarc.removed_tags",
                        CheckStatus::Mismatch,
                        Severity::Notice,
                        format!(
                            "tags removed by the current DMARC specification: {}",
                            removed.join(", ")
                        ),
                    )
                    .seen(seen.clone()),
                );
            }
        }
        n => out.push(
            Finding::new(
                "dmarc",
                "dmarc.several",
                CheckStatus::Conflict,
                Severity::Error,
                format!("{n} DMARC records: receivers ignore them all"),
            )
            .seen(seen.clone()),
        ),
    }
    for (dest, authorised) in rua {
        if !authorised {
            let line = format!(
                "{}_report._dmarc.{dest}. IN TXT \"v=DMARC1\"",
                subject.domain()
            );
            out.push(
                Finding::new("dmarc", "dmarc.rua_unauthorised", CheckStatus::Mismatch, Severity::Warning, format!("aggregate reports go to {dest}, which has not agreed to receive them: they will be dropped"))
                    .seen(seen.clone())
                    .fix(vec![format!("; in the zone of {dest}:"), line]),
            );
        }
    }
    or_ok(out, "dmarc", "one valid DMARC record")
}

fn dkim(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let expected = expected_of(subject, Family::Dkim);
    let mut out = Vec::new();
    for e in &expected {
        let selector = e
            .name
            .split("._domainkey.")
            .next()
            .unwrap_or_default()
            .to_string();
        let p = per_server(g, &e.name, RecordType::TXT);
        let cname_p = g.answers.get(&(e.name.clone(), RecordType::TXT));
        // A CNAME into our delegation zone: the TXT is ours, served from there.
        let via_cname: Vec<String> = cname_p
            .map(|m| {
                m.values()
                    .filter_map(|s| match s {
                        Served::Answer { records, .. } => records
                            .iter()
                            .find(|(t, _)| *t == RecordType::CNAME)
                            .map(|(_, v)| v.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let served: Vec<String> = if e.rtype == "CNAME" {
            if via_cname.len() < g.servers.len()
                || via_cname.iter().any(|c| {
                    normalise(RecordType::CNAME, c) != normalise(RecordType::CNAME, &e.value)
                })
            {
                out.push(
                    Finding::new(
                        "dkim",
                        "dkim.missing",
                        CheckStatus::Missing,
                        Severity::Error,
                        format!(
                            "{} must be a CNAME to {} on every nameserver",
                            e.name, e.value
                        ),
                    )
                    .expected(vec![e.line.clone()])
                    .seen(seen_map(&p))
                    .fix(vec![e.line.clone()]),
                );
                continue;
            }
            subject
                .delegated_txt
                .get(&e.value.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default()
        } else {
            let answered: Vec<&Option<Vec<String>>> = p.values().collect();
            let with_key = answered
                .iter()
                .filter(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
                .count();
            if with_key == 0 {
                out.push(
                    Finding::new(
                        "dkim",
                        "dkim.missing",
                        CheckStatus::Missing,
                        Severity::Error,
                        format!("the DKIM key of selector {selector} is not published"),
                    )
                    .expected(vec![e.line.clone()])
                    .seen(seen_map(&p))
                    .fix(vec![e.line.clone()]),
                );
                continue;
            }
            if with_key < g.servers.len() {
                out.push(Finding::new("dkim", "dkim.inconsistent", CheckStatus::Mismatch, Severity::Error, format!("the DKIM key of selector {selector} is on {with_key} of {} nameservers", g.servers.len())).expected(vec![e.line.clone()]).seen(seen_map(&p)).fix(vec![e.line.clone()]));
                continue;
            }
            match consensus("dkim", &format!("the DKIM key of selector {selector}"), &p) {
                Ok(s) => s,
                Err(f) => {
                    out.push((*f).fix(vec![e.line.clone()]));
                    continue;
                }
            }
        };
        let ours = subject
            .association
            .dkim
            .iter()
            .flat_map(|g| g.keys.iter())
            .find(|k| k.selector == selector);
        let Some(ours) = ours else { continue };
        let matches = served
            .iter()
            .any(|v| crate::dkim::same_key(v, &ours.public));
        if !matches {
            out.push(Finding::new("dkim", "dkim.key_mismatch", CheckStatus::Mismatch, Severity::Error, format!("the key published for selector {selector} is not ours: mail signed with our key would fail")).expected(vec![e.line.clone()]).seen(seen_map(&p)).fix(vec![e.line.clone()]));
            continue;
        }
        // End to end: sign a probe with our private key, verify it with the key as served.
        if let Some(key) = subject.keys.get(&selector) {
            let probe = format!(
                "From: probe@{0}\r\nTo: probe@{0}\r\nSubject: mailzone DKIM probe\r\n\r\nprobe\r\n",
                subject.domain().trim_end_matches('.')
            );
            let verified = MailMessage::parse(probe.as_bytes()).ok().and_then(|m| {
                let header = sign(
                    &m,
                    subject.domain(),
                    &selector,
                    key,
                    crate::zone::set::unix_now(),
                )
                .ok()?;
                let mut signed = header.into_bytes();
                signed.extend_from_slice(&m.to_bytes());
                let parsed = MailMessage::parse(&signed).ok()?;
                let verdicts = verify(&parsed, |_| Ok(served.clone()));
                Some(verdicts.first().is_some_and(|v| v.result.is_ok()))
            });
            if verified != Some(true) {
                out.push(Finding::new("dkim", "dkim.probe_failed", CheckStatus::Mismatch, Severity::Error, format!("a message signed with selector {selector} does not verify with the key as served")).seen(seen_map(&p)).fix(vec![e.line.clone()]));
            }
        }
    }
    or_ok(
        out,
        "dkim",
        "every DKIM key is published on every nameserver and verifies",
    )
}

fn ownership(subject: &Subject<'_>, g: &Gathered) -> Vec<Finding> {
    let Some(e) = expected_of(subject, Family::Ownership).into_iter().next() else {
        return vec![];
    };
    let p = per_server(g, &e.name, RecordType::CNAME);
    let seen_everywhere = !p.is_empty()
        && p.values().all(|v| {
            v.as_ref().is_some_and(|v| {
                v.iter().any(|c| {
                    normalise(RecordType::CNAME, c) == normalise(RecordType::CNAME, &e.value)
                })
            })
        });
    if seen_everywhere {
        vec![Finding::ok(
            "ownership",
            "the ownership token is published: the domain is validated",
        )]
    } else {
        vec![
            Finding::new(
                "ownership",
                "ownership.missing",
                CheckStatus::Missing,
                Severity::Warning,
                "the ownership token is not published yet",
            )
            .expected(vec![e.line.clone()])
            .seen(seen_map(&p))
            .fix(vec![e.line.clone()]),
        ]
    }
}

/// Puts the findings of one run together, marking recent changes pending.
pub fn diagnosis(
    subject: &Subject<'_>,
    mut findings: Vec<Finding>,
    queries: u32,
    now: u64,
) -> Diagnosis {
    let ttl = u64::from(subject.platform.ttl);
    for f in findings.iter_mut() {
        // The world may still cache the old records for up to a TTL after a change.
        if f.status.is_bad() && f.check != "delegation" && subject.changed_ago < ttl {
            f.status = CheckStatus::Pending;
            f.message = format!("{} (a change was made less than a TTL ago)", f.message);
        }
    }
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

/// The report destinations (`rua=mailto:` domains) of the served DMARC record that are
/// outside the domain.
pub fn external_rua(domain: &str, g: &Gathered) -> Vec<String> {
    let name = format!("_dmarc.{domain}");
    let p = per_server(g, &name, RecordType::TXT);
    let Ok(all) = consensus("dmarc", "the DMARC record", &p) else {
        return vec![];
    };
    let Some(record) = all.iter().find(|t| t.starts_with("v=DMARC1")) else {
        return vec![];
    };
    let own = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut out: Vec<String> = record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("rua"))
        .flat_map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|uri| {
            uri.strip_prefix("mailto:")
                .and_then(|a| a.split('!').next())
                .and_then(|a| a.rsplit_once('@'))
                .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        })
        .filter(|d| d != &own && !d.ends_with(&format!(".{own}")))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The findings of a check, or one `ok` finding when there are none.
fn or_ok(mut out: Vec<Finding>, check: &str, message: impl Into<String>) -> Vec<Finding> {
    if out.is_empty() {
        out.push(Finding::ok(check, message));
    }
    out
}
