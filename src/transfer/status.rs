//! What each secondary has had from us: NOTIFYs sent and acknowledged, serials transferred,
//! and the lag derived from them (for `/v1/status`, `/v1/zones/{zone}` and the metrics).
//!
//! STUB (seam between workstreams): the transfer server reports completed transfers here;
//! the NOTIFY sender and the status output are not built yet.

use std::net::IpAddr;

use hickory_proto::rr::Name;

/// Per secondary and zone, what was sent and what was taken.
#[derive(Debug, Default)]
pub struct TransferStatus {}

impl TransferStatus {
    pub fn new() -> Self {
        Self::default()
    }

    /// A secondary at `peer` completed a transfer (`kind`: "axfr" or "ixfr") of `zone` at
    /// `serial`.
    pub fn transferred(&self, peer: IpAddr, zone: &Name, serial: u32, kind: &str) {
        let _ = (peer, zone, serial, kind);
    }
}
