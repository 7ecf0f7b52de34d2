//! mailzone: an authoritative DNS server that knows about e-mail.
//!
//! A map of the crate, one folder per concern (see `../shared/DESIGN.md`):
//! - [`config`]: the YAML configuration and its embedded defaults.
//! - [`zone`]: the zone model and lookup (RFC 1034 §4.3.2), master files, the zone set on disk.
//! - [`dns`]: where a query is answered: the UDP/TCP loops and the answer path (no locks).
//! - [`provision`]: where an association's records are computed (platforms, expected
//!   records, DKIM selectors and their states, association rules and zone plans).
//! - [`dkim`]: key material, signing and verifying messages.
//! - [`dnssec`]: online signing: the policy, zone keys and their state, signing a zone
//!   version (reusing what did not change); the records it makes live in the zone
//!   (`zone::signed`).
//! - [`diagnose`]: where a domain is checked as the world sees it and the verdict is made
//!   (`diagnose::verdict`: pending, no flapping, `since`).
//! - [`daemon`]: the state and the work on it: the single writer, reload, associations, DKIM
//!   keys, diagnosis results, and the one scheduler of background jobs (diagnoses, key
//!   rotations, dropping retired keys, certificate orders by ACME, installed into the web
//!   listener's `web::tls` store); `daemon::shared` is all the HTTP side sees of it.
//! - [`http`]: the HTTP API, the status page, health and Prometheus metrics, and its
//!   connection limits.
//! - [`server`]: the running process: start-up order, binding the listeners, shutdown (the
//!   composition root above `daemon`, `dns` and `http`).
//! - [`accept`]: accepting TCP connections for the two HTTP listeners (connection cap,
//!   accept-error back-off, drain at shutdown).
//! - [`metrics`]: the metric handles; [`problems`]: what outsiders cause, counted and
//!   summarised, never logged per packet; [`durable`]: crash-safe file writes.
//! - [`transfer`]: zone transfers out: TSIG keys and their config forms, NOTIFY to
//!   secondaries (`transfer::notify`), what each secondary has had (`transfer::status`).
//! - [`update`]: RFC 2136 UPDATE signed with TSIG, through the daemon's single writer, as
//!   each key's `update:` policy allows.
//! - [`web`]: the public web listener (off by default): Thunderbird autoconfig, Outlook
//!   autodiscover and MTA-STS policies for associated domains, its TLS certificates, and
//!   over plain HTTP the pending ACME HTTP-01 tokens (`web::challenge`, filled by the
//!   daemon). It knows nothing of `daemon`: `server` tells it which domains are associated.
//! - [`acme`]: certificates by ACME (RFC 8555) with DNS-01 or HTTP-01: the account, one
//!   order, the CA's reason when it fails, the files under `keys/acme/`; the daemon writes
//!   the challenge records (or tokens) and schedules renewals.
//! - [`cli`]: the command-line clients; `main.rs` is only the command line on top.
//!
//! Imports go one way: `zone`, `provision`, `dkim` know nothing of `daemon`, `diagnose`
//! nothing of `daemon`, `http` nothing of `daemon` beyond `daemon::shared`, `daemon` nothing
//! of `http` or `server`. No two folders import each other.

pub mod accept;
pub mod acme;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod diagnose;
pub mod dkim;
pub mod dns;
pub mod dnssec;
pub mod durable;
pub mod http;
pub mod metrics;
pub mod problems;
pub mod provision;
pub mod server;
pub mod transfer;
pub mod update;
pub mod web;
pub mod zone;
