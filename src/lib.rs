//! mailzone: an authoritative DNS server that knows about e-mail.
//!
//! The crate is split by concern, one folder each (see `../shared/DESIGN.md`):
//! - [`config`]: the YAML configuration and its embedded defaults;
//! - [`zone`]: the zone model, the master-file reader and the on-disk zone set;
//! - [`dns`]: the UDP/TCP listeners and the authoritative answer path;
//! - [`http`]: the HTTP API, health and Prometheus metrics;
//! - [`daemon`]: wiring the pieces together into one running process.
//!
//! `main.rs` is only the command line on top of this library.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod diagnose;
pub mod dkim;
pub mod dns;
pub mod durable;
pub mod http;
pub mod metrics;
pub mod problems;
pub mod provision;
pub mod zone;
