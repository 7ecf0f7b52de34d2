//! The authoritative lookup algorithm (RFC 1034 §4.3.2, RFC 4592 wildcards, RFC 6604 rcodes
//! after CNAME chains, RFC 8482 minimal ANY), over one immutable [`View`] of a zone.
//!
//! It returns references into the zone wherever it can, so that the common answer costs no
//! record clone; a record is copied only to carry the query name's case or a wildcard's
//! synthesised owner. It must not know about the wire format.

use std::borrow::Cow;

use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Node, View, label_count};

/// CNAME chains longer than this inside one zone are cut (as hickory and BIND do).
const MAX_CNAME_CHAIN: usize = 8;

/// What kind of answer a lookup produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Records of the asked type (possibly after CNAMEs).
    Answer,
    /// The name exists but has no record of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// The name is at or below a delegation: NS in authority, glue in additional, AA unset.
    Referral,
}

/// The sections of an authoritative answer, borrowing from the zone.
#[derive(Debug)]
pub struct Lookup<'z> {
    pub outcome: Outcome,
    pub answers: Vec<Cow<'z, Record>>,
    pub authorities: Vec<&'z Record>,
    pub additionals: Vec<&'z Record>,
}

enum Step {
    Done(Outcome),
    Follow(Name),
}

impl View {
    /// Answers `qname`/`qtype` from this zone. `qname` must be at or below the origin.
    pub fn lookup<'z>(&'z self, qname: &Name, qtype: RecordType) -> Lookup<'z> {
        let mut out = Lookup {
            outcome: Outcome::Answer,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        };
        let mut name = Cow::Borrowed(qname);
        for _ in 0..=MAX_CNAME_CHAIN {
            match self.step(&name, qtype, &mut out) {
                Step::Done(outcome) => {
                    out.outcome = outcome;
                    return out;
                }
                Step::Follow(target) => {
                    if !self.origin.zone_of(&target) {
                        // The chain leaves the zone: the resolver follows it from here.
                        out.outcome = Outcome::Answer;
                        return out;
                    }
                    name = Cow::Owned(target);
                }
            }
        }
        out.outcome = Outcome::Answer;
        out
    }

    fn step<'z>(&'z self, name: &Name, qtype: RecordType, out: &mut Lookup<'z>) -> Step {
        if self.has_delegations
            && let Some(cut) = self.delegation_above(name, qtype)
        {
            self.referral(cut, out);
            return Step::Done(Outcome::Referral);
        }
        if let Some(node) = self.nodes.get(name) {
            return self.answer_from_node(node, name, qtype, out);
        }
        if self.has_wildcards
            && let Some(node) = self.wildcard_for(name)
        {
            return self.answer_from_node(node, name, qtype, out);
        }
        out.authorities.push(&self.negative_soa);
        Step::Done(Outcome::NxDomain)
    }

    /// The delegation point at or above `name`, if any. At the cut itself DS belongs to the
    /// parent side, so it is answered here rather than referred.
    fn delegation_above(&self, name: &Name, qtype: RecordType) -> Option<&Node> {
        let labels = label_count(name);
        for k in (label_count(&self.origin) + 1)..=labels {
            let node = if k == labels {
                self.nodes.get(name)
            } else {
                self.nodes.get(&name.trim_to(k))
            };
            if let Some(node) = node
                && node.delegation
                && !(k == labels && qtype == RecordType::DS)
            {
                return Some(node);
            }
        }
        None
    }

    fn referral<'z>(&'z self, cut: &'z Node, out: &mut Lookup<'z>) {
        if let Some(ns) = cut.rrset(RecordType::NS) {
            out.authorities.extend(ns.records.iter());
            for r in &ns.records {
                if let RData::NS(target) = &r.data {
                    self.push_addresses(&target.0, out);
                }
            }
        }
    }

    /// RFC 4592: the source of synthesis is `*.` + the closest encloser.
    fn wildcard_for(&self, name: &Name) -> Option<&Node> {
        let apex = label_count(&self.origin);
        let mut k = label_count(name);
        while k > apex {
            k -= 1;
            let ancestor = name.trim_to(k);
            if self.nodes.contains_key(&ancestor) {
                let wildcard = ancestor.prepend_label("*").ok()?;
                return self.nodes.get(&wildcard);
            }
        }
        None
    }

    fn answer_from_node<'z>(
        &'z self,
        node: &'z Node,
        owner: &Name,
        qtype: RecordType,
        out: &mut Lookup<'z>,
    ) -> Step {
        if qtype == RecordType::ANY {
            // RFC 8482: one rrset is enough.
            return match node.rrsets.first() {
                Some(set) => {
                    out.answers
                        .extend(set.records.iter().map(|r| named(r, owner)));
                    Step::Done(Outcome::Answer)
                }
                None => self.no_data(out),
            };
        }
        if let Some(set) = node.rrset(qtype) {
            out.answers
                .extend(set.records.iter().map(|r| named(r, owner)));
            for r in &set.records {
                match &r.data {
                    RData::MX(mx) => self.push_addresses(&mx.exchange, out),
                    RData::SRV(srv) => self.push_addresses(&srv.target, out),
                    RData::NS(ns) => self.push_addresses(&ns.0, out),
                    _ => {}
                }
            }
            return Step::Done(Outcome::Answer);
        }
        if let Some(cname) = node.rrset(RecordType::CNAME) {
            let record = &cname.records[0];
            out.answers.push(named(record, owner));
            if let RData::CNAME(target) = &record.data {
                // A loop comes back to a name already answered: stop there.
                if out.answers.len() > 1 && out.answers.iter().any(|a| a.name == target.0) {
                    return Step::Done(Outcome::Answer);
                }
                return Step::Follow(target.0.clone());
            }
            return Step::Done(Outcome::Answer);
        }
        self.no_data(out)
    }

    fn no_data<'z>(&'z self, out: &mut Lookup<'z>) -> Step {
        out.authorities.push(&self.negative_soa);
        Step::Done(Outcome::NoData)
    }

    /// Additional-section processing: in-zone addresses of MX, SRV and NS targets.
    fn push_addresses<'z>(&'z self, target: &Name, out: &mut Lookup<'z>) {
        if !self.origin.zone_of(target) || out.additionals.iter().any(|r| r.name == *target) {
            return;
        }
        if let Some(node) = self.nodes.get(target) {
            for rtype in [RecordType::A, RecordType::AAAA] {
                if let Some(set) = node.rrset(rtype) {
                    out.additionals.extend(set.records.iter());
                }
            }
        }
    }
}

/// The record under the query's spelling of its owner: resolvers using 0x20 case
/// randomisation compare it, and a wildcard answer is owned by the query name.
fn named<'z>(record: &'z Record, owner: &Name) -> Cow<'z, Record> {
    if record.name.eq_case(owner) {
        Cow::Borrowed(record)
    } else {
        let mut copy = record.clone();
        copy.name = owner.clone();
        Cow::Owned(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_below_empty_non_terminals_covers_deeper_names() {
        let origin = Name::from_ascii("mail.example.net.").unwrap();
        let text = "$TTL 300\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns A 127.0.0.2\n*._report._dmarc TXT \"v=DMARC1\"\n";
        let zone = crate::zone::Zone::from_master_text(&origin, text).unwrap();
        let q = Name::from_ascii("far.example._report._dmarc.mail.example.net.").unwrap();
        let view = zone.view();
        let l = view.lookup(&q, RecordType::TXT);
        assert_eq!(l.outcome, Outcome::Answer);
        assert_eq!(l.answers.len(), 1);
    }
}
