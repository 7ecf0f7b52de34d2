//! Diagnosis of associated domains as the world sees them.
//!
//! [`probe`] asks a domain's own nameservers directly, [`checks`] gathers their answers and
//! judges them into [`check::Finding`]s, [`spf`] evaluates SPF records. The daemon schedules
//! runs (`daemon::diagnosis`); `mailzone diagnose` runs the same checks once.

pub mod check;
pub mod checks;
pub mod probe;
pub mod spf;

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
}

/// Gathers, evaluates SPF and judges: the checks of one subject, once.
pub async fn check_once(
    prober: &Prober,
    subject: &checks::Subject<'_>,
    per_server: &(dyn Fn(SocketAddr) -> Arc<Semaphore> + Sync),
) -> RunOutcome {
    let gathered = checks::gather(prober, subject, per_server).await;
    let mut queries = gathered.queries;
    let spf = match checks::served_spf(&subject.association.domain, &gathered) {
        Ok(records) if subject.association.records.spf && records.len() == 1 => {
            let r = spf::evaluate(
                prober,
                &subject.association.domain,
                &records[0],
                &subject.platform.spf,
            )
            .await;
            queries += r.queries;
            Some(r)
        }
        _ => None,
    };
    let failures = gathered
        .answers
        .values()
        .flat_map(|m| m.values())
        .filter(|s| matches!(s, checks::Served::Failed(_)))
        .count() as u32;
    RunOutcome {
        findings: checks::judge(subject, &gathered, spf.as_ref()),
        queries,
        failures,
    }
}
