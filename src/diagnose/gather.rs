//! Gathering: what every authoritative nameserver of a domain serves, for every name the
//! association needs, and the helpers the judges read it through.
//!
//! Gathering asks each nameserver address directly (RD=0) through [`super::probe`]; it keeps
//! every answer by question and by server and concludes nothing. Judging is
//! [`super::judge`]'s job and is pure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::sync::Semaphore;

use super::check::{CheckStatus, Finding, Severity};
use super::probe::{ProbeError, Prober};
use crate::provision::association::Association;
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
    /// What the HTTPS checks saw (MTA-STS policy, autoconfig), when they ran.
    pub web: super::web::WebSeen,
    /// What the `dnssec` check saw (DS at the parent, DO=1 answers), when it ran.
    pub dnssec: Option<super::dnssec::DnssecSeen>,
}

impl Gathered {
    /// The same answers, from these servers only.
    pub fn only(&self, servers: &[String]) -> Gathered {
        Gathered {
            servers: servers.to_vec(),
            answers: self
                .answers
                .iter()
                .map(|(q, by)| {
                    let kept = by
                        .iter()
                        .filter(|(s, _)| servers.contains(s))
                        .map(|(s, v)| (s.clone(), v.clone()))
                        .collect();
                    (q.clone(), kept)
                })
                .collect(),
            discovery_error: self.discovery_error.clone(),
            queries: self.queries,
            web: self.web.clone(),
            dnssec: self.dnssec.clone(),
        }
    }
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
    /// The domain is a zone this daemon is configured to sign: no DS at the parent is then a
    /// warning, never green.
    pub dnssec_expected: bool,
    /// Signatures expiring sooner than this are reported (`dnssec.refresh_secs`).
    pub dnssec_refresh_secs: u64,
}

impl<'a> Subject<'a> {
    pub fn new(association: &'a Association, platform: &'a Platform) -> Self {
        let domain = Name::from_ascii(&association.domain).unwrap_or_else(|_| Name::root());
        let token = (!association.hosted).then_some(association.ownership_token.as_str());
        let mut expected =
            expected_records(&domain, platform, &association.records, token).unwrap_or_default();
        if association.records.dkim {
            // Every selector we issued and expect published is judged. An external domain
            // must publish a generation as soon as it is issued (the customer pastes it: not
            // seen yet is `missing`, never a green by omission); a hosted zone gets a
            // generation's records from us when it leaves `generated`.
            let published: Vec<_> = association
                .dkim
                .iter()
                .filter(|g| !association.hosted || g.state != SelectorState::Generated)
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
            dnssec_expected: false,
            dnssec_refresh_secs: crate::dnssec::Policy::default().refresh_secs,
        }
    }

    pub fn domain(&self) -> &str {
        &self.association.domain
    }

    /// The questions the `dnssec` check asks every nameserver with the DO bit: the DNSKEY
    /// set, the SOA, and the mail records of the association (MX, SPF, DMARC, DKIM).
    pub fn dnssec_questions(&self) -> Vec<(String, RecordType)> {
        let d = self.domain().to_string();
        let records = &self.association.records;
        let mut q = vec![
            (d.clone(), RecordType::DNSKEY),
            (d.clone(), RecordType::SOA),
        ];
        if records.mx {
            q.push((d.clone(), RecordType::MX));
        }
        if records.spf {
            q.push((d.clone(), RecordType::TXT));
        }
        if records.dmarc {
            q.push((format!("_dmarc.{d}"), RecordType::TXT));
        }
        for e in self.expected.iter().filter(|e| e.family == Family::Dkim) {
            let question = (e.name.clone(), RecordType::TXT);
            if !q.contains(&question) {
                q.push(question);
            }
        }
        q
    }

    /// The questions to ask every nameserver.
    pub fn questions(&self) -> Vec<(String, RecordType)> {
        let d = self.domain().to_string();
        let mut q: BTreeSet<(String, u16)> = BTreeSet::new();
        for t in [RecordType::SOA, RecordType::MX, RecordType::TXT] {
            q.insert((d.clone(), u16::from(t)));
        }
        q.insert((format!("_dmarc.{d}"), u16::from(RecordType::TXT)));
        for label in ["autoconfig", "autodiscover"] {
            q.insert((format!("{label}.{d}"), u16::from(RecordType::CNAME)));
        }
        if self.association.records.mta_sts {
            // The MX set the policy must cover.
            q.insert((d.clone(), u16::from(RecordType::MX)));
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

pub fn record_text(m: &Message) -> Vec<(RecordType, String)> {
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

/// Asks every nameserver of the domain every question: all servers at once, each address at
/// most `per_server` queries at a time, the whole run (discovery included) bounded by
/// `deadline`. What is still unanswered then is recorded as such, so one dead server costs
/// the budget at most, however many questions or servers there are.
pub async fn gather(
    prober: &Prober,
    subject: &Subject<'_>,
    per_server: &(dyn Fn(SocketAddr) -> Arc<Semaphore> + Sync),
    deadline: tokio::time::Instant,
) -> Gathered {
    let mut out = Gathered::default();
    let domain = Name::from_ascii(subject.domain()).unwrap_or_else(|_| Name::root());
    out.queries += 1;
    let nameservers = match tokio::time::timeout_at(deadline, prober.nameservers(&domain)).await {
        Ok(Ok(ns)) => ns,
        Ok(Err(e)) => {
            out.discovery_error = Some(e.to_string());
            return out;
        }
        Err(_) => {
            out.discovery_error = Some(format!(
                "the resolver did not answer within the diagnosis budget ({} ms)",
                prober.budget.as_millis()
            ));
            return out;
        }
    };
    let questions = subject.questions();
    let unanswered = format!(
        "no answer within the diagnosis budget ({} ms)",
        prober.budget.as_millis()
    );
    let mut set = tokio::task::JoinSet::new();
    for ns in &nameservers {
        if ns.addresses.is_empty() {
            out.servers.push(format!("{} (no address)", ns.name));
            continue;
        }
        for addr in &ns.addresses {
            let label = format!("{} ({})", ns.name, addr.ip());
            out.servers.push(label.clone());
            let slots = per_server(*addr);
            for (name, rtype) in questions.clone() {
                // Until an answer arrives, the question counts as unanswered.
                out.answers
                    .entry((name.clone(), rtype))
                    .or_default()
                    .insert(label.clone(), Served::Failed(unanswered.clone()));
                let prober = prober.clone();
                let slots = slots.clone();
                let addr = *addr;
                let label = label.clone();
                set.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let served = match Name::from_ascii(&name) {
                        Err(_) => Served::Failed("bad name".into()),
                        Ok(qname) => match prober.query(addr, &qname, rtype, false).await {
                            Ok(m) => Served::Answer {
                                rcode: m.metadata.response_code,
                                authoritative: m.metadata.authoritative,
                                records: record_text(&m),
                            },
                            Err(ProbeError::Timeout { .. }) => {
                                Served::Failed("no answer (timeout)".into())
                            }
                            Err(e) => Served::Failed(e.to_string()),
                        },
                    };
                    (name, rtype, label, served)
                });
            }
        }
    }
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok((name, rtype, label, served)))) => {
                out.queries += 1;
                out.answers
                    .entry((name, rtype))
                    .or_default()
                    .insert(label, served);
            }
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                // The budget is spent: the rest stays "unanswered".
                out.queries += set.len() as u32;
                set.abort_all();
                break;
            }
        }
    }
    out
}

/// The records of one type each server serves for a question (`None` when a server failed).
pub fn per_server(
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

pub fn seen_map(p: &BTreeMap<String, Option<Vec<String>>>) -> BTreeMap<String, Vec<String>> {
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
pub fn consensus(
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

pub fn expected_of<'s>(subject: &'s Subject<'_>, family: Family) -> Vec<&'s ExpectedRecord> {
    subject
        .expected
        .iter()
        .filter(|e| e.family == family)
        .collect()
}

/// Record data compared case-insensitively, names without their final dot.
pub fn normalise(rtype: RecordType, v: &str) -> String {
    match rtype {
        RecordType::TXT => v.to_string(),
        _ => v.to_ascii_lowercase().trim_end_matches('.').to_string(),
    }
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
