//! Provisioning: e-mail platforms, domain associations and the records they need.
//!
//! This module owns the product rules of the "add an associated domain" flow: what a
//! platform offers ([`platform`]), which records an association expects ([`records`]) and
//! how SPF is shared between platforms ([`spf`]). It computes; it does not write zones.
//!
//! Status (issue 4 is open): the record model, SPF sharing, the association rules and the
//! apply/remove plans ([`association`]) are done and unit-tested. Still to build: the
//! `/v1/domains` API and `mailzone domain` CLI, persisting `zones/domains.yaml` through the
//! writer, applying plans through the writer, reconcile at start/reload, and the benchmark.

pub mod association;
pub mod platform;
pub mod records;
pub mod spf;
