//! mailzone: an authoritative DNS server that knows about e-mail.
//!
//! A map of the crate, one folder per concern (see `../shared/DESIGN.md`):
//! - [`config`]: the YAML configuration and its embedded defaults.
//! - [`zone`]: the zone model and lookup (RFC 1034 §4.3.2), master files, the zone set on disk.
//! - [`dns`]: where a query is answered: the UDP/TCP loops and the answer path (no locks).
//! - [`provision`]: where an association's records are computed (platforms, expected
//!   records, DKIM selectors and their states, association rules and zone plans).
//! - [`dkim`]: key material, signing and verifying messages.
//! - [`diagnose`]: where a domain is checked as the world sees it and the verdict is made
//!   (`diagnose::verdict`: pending, no flapping, `since`).
//! - [`daemon`]: the running process: start-up, the single writer, reload, and the one
//!   scheduler of background jobs (diagnoses, key rotations, dropping retired keys);
//!   `daemon::shared` is all the HTTP side sees of it.
//! - [`http`]: the HTTP API, the status page, health and Prometheus metrics.
//! - [`metrics`]: the metric handles; [`durable`]: crash-safe file writes.
//! - [`cli`]: the command-line clients; `main.rs` is only the command line on top.
//!
//! Imports go one way: `zone`, `provision`, `dkim` know nothing of `daemon`, `diagnose`
//! nothing of `daemon`, `http` nothing of `daemon` beyond `daemon::shared`. (`dkim::lookup`,
//! the resolver of `mailzone dkim verify`, still borrows a helper of `diagnose` until it
//! gives way to the one DNS client.)

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
