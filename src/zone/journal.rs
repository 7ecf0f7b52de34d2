//! The per-zone journal of committed differences, and the IXFR answer computed from it
//! (RFC 1995).
//!
//! STUB (seam between workstreams): the journal itself is not built yet. [`Zone::ixfr`] is
//! the one call the transfer code makes; until the journal exists it answers "up to date"
//! or "send the whole zone".

use hickory_proto::rr::Record;

use super::Zone;

/// What an IXFR from `client_serial` should carry.
#[derive(Debug, Clone)]
pub enum IxfrPlan {
    /// The client has the current serial: answer with the single current SOA.
    UpToDate,
    /// The condensed differences, as the IXFR answer section carries them (RFC 1995 §4):
    /// new SOA, then for each step old SOA, removed records, new SOA, added records, and the
    /// new SOA last.
    Incremental(Vec<Record>),
    /// The journal does not reach back to `client_serial` (or it is from the future): send
    /// the whole zone, AXFR-style.
    Full,
}

impl Zone {
    /// The IXFR answer for a client at `client_serial`.
    pub fn ixfr(&self, client_serial: u32) -> IxfrPlan {
        if client_serial == self.serial() {
            IxfrPlan::UpToDate
        } else {
            IxfrPlan::Full
        }
    }
}
