//! Diagnosis of associated domains as the world sees them.
//!
//! [`probe`] finds a domain's nameservers (hickory-resolver) and asks them directly (our one
//! client), [`gather`] collects their answers, [`judge`] turns them into [`check::Finding`]s
//! (one module per family), [`spf`] evaluates SPF records. The daemon schedules runs
//! (`daemon::diagnosis`); `mailzone diagnose` runs the same checks once.

pub mod check;
pub mod checks;
pub mod dnssec;
pub mod gather;
pub mod judge;
pub mod probe;
pub mod spf;
pub mod verdict;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::DiagnosisConfig;
use probe::Prober;

/// The prober configured by `diagnosis:`; `None` when no resolver is known.
pub fn prober(config: &DiagnosisConfig) -> Option<Prober> {
    Prober::new(config)
}

/// What one run found.
pub struct RunOutcome {
    pub findings: Vec<check::Finding>,
    pub queries: u32,
    /// Queries a nameserver did not answer usefully.
    pub failures: u32,
    /// Answers received, by response code.
    pub rcodes: std::collections::BTreeMap<String, u32>,
}

/// Gathers, evaluates SPF and DMARC report destinations, and judges: the checks of one
/// subject, once, within the prober's budget.
pub async fn check_once(
    prober: &Prober,
    subject: &checks::Subject<'_>,
    per_server: &(dyn Fn(SocketAddr) -> Arc<Semaphore> + Sync),
) -> RunOutcome {
    let deadline = tokio::time::Instant::now() + prober.budget;
    let mut gathered = checks::gather(prober, subject, per_server, deadline).await;
    let records = &subject.association.records;
    if records.mta_sts || (records.autoconfig && prober.check_autoconfig_http) {
        let look = web::look(prober, &prober.web, subject, prober.check_autoconfig_http);
        gathered.web = tokio::time::timeout_at(deadline, look)
            .await
            .unwrap_or_else(|_| {
                let late = || Some(Err("no answer within the diagnosis budget".to_string()));
                web::WebSeen {
                    mta_sts_policy: if records.mta_sts { late() } else { None },
                    autoconfig: None,
                    autodiscover: None,
                }
            });
    }
    if let Ok(name) = hickory_proto::rr::Name::from_ascii(subject.domain()) {
        let seen = dnssec::gather(
            prober,
            &name,
            &subject.dnssec_questions(),
            per_server,
            deadline,
        )
        .await;
        gathered.queries += seen.queries;
        gathered.dnssec = Some(seen);
    }
    let mut queries = gathered.queries;
    let domain = &subject.association.domain;
    let spf = match checks::served_spf(domain, &gathered) {
        Ok(records) if subject.association.records.spf && records.len() == 1 => {
            let evaluation = spf::evaluate(prober, domain, &records[0], &subject.platform.spf);
            match tokio::time::timeout_at(deadline, evaluation).await {
                Ok(r) => {
                    queries += r.queries;
                    Some(r)
                }
                Err(_) => Some(spf::SpfReport {
                    unfinished: true,
                    ..Default::default()
                }),
            }
        }
        _ => None,
    };
    // DMARC reports sent to another domain need its consent (RFC 7489 §7.1).
    let mut rua = Vec::new();
    if subject.association.records.dmarc {
        for dest in checks::external_rua(domain, &gathered) {
            let name = format!("{}_report._dmarc.{dest}.", domain);
            queries += 1;
            let authorised = match hickory_proto::rr::Name::from_ascii(&name) {
                Ok(qname) => tokio::time::timeout_at(
                    deadline,
                    prober.query(
                        prober.resolver,
                        &qname,
                        hickory_proto::rr::RecordType::TXT,
                        true,
                    ),
                )
                .await
                .ok()
                .and_then(Result::ok)
                .map(|m| {
                    probe::txt_values(&m)
                        .iter()
                        .any(|v| v.starts_with("v=DMARC1"))
                })
                .unwrap_or(false),
                Err(_) => false,
            };
            rua.push((dest, authorised));
        }
    }
    let mut failures = 0;
    let mut rcodes = std::collections::BTreeMap::new();
    for served in gathered.answers.values().flat_map(|m| m.values()) {
        match served {
            checks::Served::Failed(_) => failures += 1,
            checks::Served::Answer { rcode, .. } => {
                *rcodes.entry(rcode.to_string()).or_insert(0) += 1
            }
        }
    }
    RunOutcome {
        findings: checks::judge(subject, &gathered, spf.as_ref(), &rua),
        queries,
        failures,
        rcodes,
    }
}

/// How long an API call waits for the served SPF ([`served_spf_now`]): the association is
/// already made, so a dead resolver must not hold the caller for the whole diagnosis budget.
const SERVED_SPF_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// The SPF records a domain's nameservers serve now: the first authoritative answer, within
/// the prober's budget (at most [`SERVED_SPF_BUDGET`]). `Err` says why nothing could be
/// read, so the caller can say that it did not check rather than imply there is none.
pub async fn served_spf_now(prober: &Prober, domain: &str) -> Result<Vec<String>, String> {
    let name = hickory_proto::rr::Name::from_ascii(domain)
        .map_err(|e| format!("{domain} is not a domain name: {e}"))?;
    let ask = async {
        let nameservers = prober
            .nameservers(&name)
            .await
            .map_err(|e| format!("its nameservers were not found: {e}"))?;
        let mut asked = Vec::new();
        for addr in nameservers.iter().flat_map(|n| n.addresses.iter()) {
            asked.push(addr.to_string());
            if let Ok(m) = prober
                .query(*addr, &name, hickory_proto::rr::RecordType::TXT, false)
                .await
                && m.metadata.authoritative
                && m.metadata.response_code == hickory_proto::op::ResponseCode::NoError
            {
                return Ok(probe::txt_values(&m)
                    .into_iter()
                    .filter(|v| crate::provision::spf::SpfRecord::parse(v).is_some())
                    .collect());
            }
        }
        Err(if asked.is_empty() {
            "its nameservers have no addresses".to_string()
        } else {
            format!(
                "no authoritative answer for its TXT records from {}",
                asked.join(", ")
            )
        })
    };
    let budget = prober.budget.min(SERVED_SPF_BUDGET);
    tokio::time::timeout(budget, ask).await.unwrap_or_else(|_| {
        Err(format!(
            "no answer within {} ms (diagnosis resolver and the domain's nameservers)",
            budget.as_millis()
        ))
    })
}
