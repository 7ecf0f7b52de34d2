//! The daemon's state and the work done on it: the shared state handed to the DNS and HTTP
//! sides ([`shared`]), the single writer, associations, DKIM keys, diagnosis results and the
//! one scheduler of background jobs.
//!
//! It owns reload (one at a time, never dropping a query) and every change to zones and
//! associations. It must not parse DNS or HTTP itself, nor bind listeners: starting the
//! process is [`crate::server`]'s job, which sits above this module and the HTTP side.

pub mod acme;
pub mod associations;
pub mod catalog;
pub mod diagnosis;
pub mod dkim;
pub mod dnssec;
pub mod scheduler;
pub mod shared;
pub mod token;
pub mod tokens;
pub mod writer;

pub use shared::{ReloadSummary, Shared};
pub use writer::commit_journal_files;
