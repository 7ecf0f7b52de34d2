//! Provisioning: e-mail platforms, domain associations and the records they need.
//!
//! This module owns the product rules of the "add an associated domain" flow: what a
//! platform offers ([`platform`]), which records an association expects ([`records`]) and
//! how SPF is shared between platforms ([`spf`]). It computes; it does not write zones.

pub mod association;
pub mod dkim;
pub mod mta_sts;
pub mod platform;
pub mod records;
pub mod spf;
