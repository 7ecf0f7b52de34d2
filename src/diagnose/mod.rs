//! Diagnosis of associated domains as the world sees them.
//!
//! [`probe`] asks a domain's own nameservers directly. For now it serves one check: whether
//! an external domain's DKIM key records are served by every authoritative nameserver, which
//! is what lets such a domain start signing (and rotate) once the customer published them.

pub mod check;
pub mod checks;
pub mod probe;
pub mod spf;

use std::net::SocketAddr;
use std::time::Duration;

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
