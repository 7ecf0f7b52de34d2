//! Diagnosis of associated domains as the world sees them.
//!
//! [`probe`] asks a domain's own nameservers directly, [`checks`] gathers their answers and
//! judges them into [`check::Finding`]s, [`spf`] evaluates SPF records. The daemon schedules
//! runs (`daemon::diagnosis`); `mailzone diagnose` runs the same checks once.

pub mod check;
pub mod checks;
pub mod probe;
pub mod spf;
pub mod verdict;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::DiagnosisConfig;
use probe::Prober;

/// The prober configured by `diagnosis:`; `None` when no resolver is known.
pub fn prober(config: &DiagnosisConfig) -> Option<Prober> {
    let resolver = config
        .resolver
        .or_else(|| crate::dkim::lookup::system_nameserver().map(|s: SocketAddr| s))?;
    Some(Prober {
        resolver,
        port: config.port,
        timeout: Duration::from_millis(config.timeout_ms.max(1)),
    })
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
/// subject, once.
pub async fn check_once(
    prober: &Prober,
    subject: &checks::Subject<'_>,
    per_server: &(dyn Fn(SocketAddr) -> Arc<Semaphore> + Sync),
) -> RunOutcome {
    let gathered = checks::gather(prober, subject, per_server).await;
    let mut queries = gathered.queries;
    let domain = &subject.association.domain;
    let spf = match checks::served_spf(domain, &gathered) {
        Ok(records) if subject.association.records.spf && records.len() == 1 => {
            let r = spf::evaluate(prober, domain, &records[0], &subject.platform.spf).await;
            queries += r.queries;
            Some(r)
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
                Ok(qname) => prober
                    .query(
                        prober.resolver,
                        &qname,
                        hickory_proto::rr::RecordType::TXT,
                        true,
                    )
                    .await
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
