//! Changing a zone: new zones, rrset operations applied all-or-nothing, serial bumps.
//!
//! This module owns the meaning of add / replace / delete on an rrset and produces a new
//! [`Zone`] (the old one is untouched, as the DNS path may still be reading it). It must not
//! write files or publish: the daemon's writer does both, after this succeeded.

use std::collections::HashMap;

use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::writer::name_text;
use super::{SourcedRecord, Zone, ZoneError};

/// What to do to one rrset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Add these records to the rrset (creating it).
    Add,
    /// Make the rrset exactly these records.
    Replace,
    /// Remove these records, or the whole rrset when none are given. Deleting what is not
    /// there is not an error, so a retried request does no harm.
    Delete,
}

/// One operation on the rrset `name`/`rtype`.
#[derive(Debug, Clone)]
pub struct RrsetChange {
    pub kind: ChangeKind,
    pub name: Name,
    pub rtype: RecordType,
    pub ttl: Option<u32>,
    pub records: Vec<RData>,
}

/// Why a change was refused: which operation (if one is to blame) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EditError {
    pub operation: Option<usize>,
    pub message: String,
}

impl Zone {
    /// A new zone holding only its SOA and NS records.
    pub fn new_with_soa(
        origin: &Name,
        soa: SOA,
        ttl: u32,
        nameservers: &[Name],
    ) -> Result<Zone, ZoneError> {
        let mut records = vec![SourcedRecord {
            record: Record::from_rdata(origin.clone(), ttl, RData::SOA(soa)),
            line: 0,
        }];
        records.extend(nameservers.iter().map(|ns| SourcedRecord {
            record: Record::from_rdata(origin.clone(), ttl, RData::NS(NS(ns.clone()))),
            line: 0,
        }));
        Zone::build(origin.clone(), records)
    }

    /// This zone with `changes` applied in order and the SOA serial set to `serial`.
    /// `default_ttl` is used for a new rrset whose change gives no TTL.
    pub fn with_changes(
        &self,
        changes: &[RrsetChange],
        serial: u32,
        default_ttl: u32,
    ) -> Result<Zone, EditError> {
        // rrsets keyed by (name, type); `Name` compares case-insensitively. The value keeps
        // which operation last touched the rrset, to blame the right one on failure.
        let mut rrsets: HashMap<(Name, RecordType), (Vec<Record>, usize)> = HashMap::new();
        let mut order: Vec<(Name, RecordType)> = Vec::new();
        let view = self.view();
        for r in view.records() {
            let key = (r.name.clone(), r.record_type());
            let entry = rrsets.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (Vec::new(), 0)
            });
            entry.0.push(r.clone());
        }

        for (i, change) in changes.iter().enumerate() {
            let fail = |message: String| EditError {
                operation: Some(i),
                message,
            };
            if !self.origin().zone_of(&change.name) {
                return Err(fail(format!(
                    "{} is outside the zone {}",
                    name_text(&change.name),
                    name_text(self.origin())
                )));
            }
            if change.rtype == RecordType::SOA {
                return Err(fail("the SOA record is managed by mailzone".into()));
            }
            let key = (change.name.clone(), change.rtype);
            let existing_ttl = rrsets.get(&key).and_then(|(v, _)| v.first()).map(|r| r.ttl);
            let ttl = change.ttl.or(existing_ttl).unwrap_or(default_ttl);
            let fresh = |data: &RData| Record::from_rdata(change.name.clone(), ttl, data.clone());
            match change.kind {
                ChangeKind::Add | ChangeKind::Replace => {
                    if change.records.is_empty() {
                        return Err(fail(
                            "at least one record is needed (use delete to remove an rrset)".into(),
                        ));
                    }
                    let entry = rrsets.entry(key.clone()).or_insert_with(|| {
                        order.push(key);
                        (Vec::new(), i + 1)
                    });
                    if change.kind == ChangeKind::Replace {
                        entry.0.clear();
                    }
                    for data in &change.records {
                        if !entry.0.iter().any(|r| r.data == *data) {
                            entry.0.push(fresh(data));
                        }
                    }
                    for r in &mut entry.0 {
                        r.ttl = ttl;
                    }
                    entry.1 = i + 1;
                }
                ChangeKind::Delete => {
                    if let Some(entry) = rrsets.get_mut(&key) {
                        if change.records.is_empty() {
                            entry.0.clear();
                        } else {
                            entry.0.retain(|r| !change.records.contains(&r.data));
                        }
                        entry.1 = i + 1;
                    }
                }
            }
        }

        // A zone must keep name servers at its apex: blame the operation that removed them.
        if let Some((set, line)) = rrsets.get(&(self.origin().clone(), RecordType::NS))
            && set.is_empty()
        {
            return Err(EditError {
                operation: line.checked_sub(1),
                message: format!(
                    "the zone {} must keep at least one NS record at its apex",
                    name_text(self.origin())
                ),
            });
        }
        let mut records = Vec::new();
        for key in order {
            let Some((set, line)) = rrsets.remove(&key) else {
                continue;
            };
            for mut record in set {
                if let RData::SOA(soa) = &mut record.data {
                    soa.serial = serial;
                }
                records.push(SourcedRecord { record, line });
            }
        }
        Zone::build(self.origin().clone(), records).map_err(|e| EditError {
            operation: e.line.checked_sub(1),
            message: e.message,
        })
    }

    /// This zone, unchanged but for its SOA serial.
    pub fn with_serial(&self, serial: u32) -> Result<Zone, EditError> {
        self.with_changes(&[], serial, 0)
    }
}
