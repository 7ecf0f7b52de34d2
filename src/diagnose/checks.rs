//! The checks as one door: gather ([`super::gather`]) then judge ([`super::judge`]). Kept so
//! that callers name one module; the work is in those two.

pub use super::gather::{Gathered, Served, Subject, external_rua, gather, served_spf};
pub use super::judge::{diagnosis, judge};
