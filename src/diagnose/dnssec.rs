//! Gathering for the `dnssec` check: the parent's DS set and the parent's own DNSKEY set
//! (both with their RRSIGs), asked at each of the parent zone's nameservers directly, and
//! what each nameserver of the domain serves with the DO bit (DNSKEY, and the SOA, MX and
//! mail TXT rrsets with their RRSIGs).
//!
//! This module keeps the raw records (the judge verifies signatures over them) and
//! concludes nothing: [`super::judge`] does, with hickory-proto's verifier. It is also what
//! the daemon asks before a CSK/KSK rollover or an unsigning takes its next step
//! ([`parent_ds`]): a step waits until the DS set the parent serves is seen at every parent
//! nameserver. It must not send RD=1 queries to nameservers nor judge.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::dnssec::rdata::{DNSSECRData, DS};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::sync::Semaphore;

use super::probe::Prober;

/// What one nameserver address answered to one question, records kept.
#[derive(Debug, Clone)]
pub struct Answered {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    /// The answer section, RRSIGs included.
    pub answers: Vec<Record>,
    /// The authority section of a negative answer: the NSEC/NSEC3 proof and the SOA, with
    /// their RRSIGs (empty for a positive answer, whose NS set is not kept).
    pub authority: Vec<Record>,
}

impl Answered {
    fn of(m: &Message) -> Self {
        let negative = m.answers.is_empty();
        Self {
            rcode: m.metadata.response_code,
            authoritative: m.metadata.authoritative,
            answers: m.answers.clone(),
            authority: if negative {
                m.authorities.clone()
            } else {
                Vec::new()
            },
        }
    }

    /// The records of `rtype` owned by `name`.
    pub fn rrset(&self, name: &Name, rtype: RecordType) -> Vec<&Record> {
        self.answers
            .iter()
            .filter(|r| r.record_type() == rtype && same_name(&r.name, name))
            .collect()
    }

    /// The DS records of the answer.
    pub fn ds(&self, name: &Name) -> Vec<(DS, u32)> {
        self.rrset(name, RecordType::DS)
            .into_iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::DS(ds)) => Some((ds.clone(), r.ttl)),
                _ => None,
            })
            .collect()
    }
}

/// Names compared without case and without regard to the final dot.
pub fn same_name(a: &Name, b: &Name) -> bool {
    let text = |n: &Name| {
        n.to_lowercase()
            .to_ascii()
            .trim_end_matches('.')
            .to_string()
    };
    text(a) == text(b)
}

/// `2026-11-23 10:00 UTC`, for what a signature's dates were.
pub fn utc(secs: u64) -> String {
    let (y, m, d) = crate::zone::serial::civil_date(secs);
    let day = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        day / 3600,
        day % 3600 / 60
    )
}

/// A question's answer from one server, or why there is none.
pub type Reply = Result<Answered, String>;

/// The parent's view of a domain's DS set.
#[derive(Debug, Clone, Default)]
pub struct ParentDs {
    /// The parent zone, or why its nameservers cannot be found.
    pub parent: Option<Name>,
    pub error: Option<String>,
    /// Each parent nameserver address (`ns (ip)`) and its answer to `domain DS`.
    pub servers: BTreeMap<String, Reply>,
    /// The same servers' answers to `parent DNSKEY` (with DO=1), when the diagnosis asked
    /// for them ([`gather`]); empty for [`parent_ds`], which only the DS set matters to.
    pub keys: BTreeMap<String, Reply>,
    pub queries: u32,
}

impl ParentDs {
    /// The DS set each server that answered with authority serves (an empty set: none).
    pub fn sets(&self, domain: &Name) -> BTreeMap<String, Result<Vec<(DS, u32)>, String>> {
        self.servers
            .iter()
            .map(|(server, reply)| {
                let set = match reply {
                    Err(e) => Err(e.clone()),
                    Ok(a) if !a.authoritative => {
                        Err("answers without authority (not a server of the parent zone)".into())
                    }
                    Ok(a) if !matches!(a.rcode, ResponseCode::NoError) => {
                        Err(format!("answers {}", a.rcode))
                    }
                    Ok(a) => Ok(a.ds(domain)),
                };
                (server.clone(), set)
            })
            .collect()
    }

    /// Whether every parent nameserver answered with authority and each serves a DS that
    /// `pick` accepts; `Some(largest DS TTL)` when so. No server at all is not "every".
    pub fn at_every_server(&self, domain: &Name, pick: impl Fn(&DS) -> bool) -> Option<u32> {
        let sets = self.sets(domain);
        if sets.is_empty() || self.error.is_some() {
            return None;
        }
        let mut ttl = 0;
        for set in sets.values() {
            let set = set.as_ref().ok()?;
            let matching: Vec<&(DS, u32)> = set.iter().filter(|(ds, _)| pick(ds)).collect();
            if matching.is_empty() {
                return None;
            }
            ttl = matching.iter().map(|(_, t)| *t).fold(ttl, u32::max);
        }
        Some(ttl)
    }

    /// Whether every parent nameserver answered with authority and none serves a DS.
    pub fn none_anywhere(&self, domain: &Name) -> bool {
        let sets = self.sets(domain);
        !sets.is_empty()
            && self.error.is_none()
            && sets
                .values()
                .all(|s| s.as_ref().is_ok_and(|set| set.is_empty()))
    }
}

/// The DS set of `domain` as each nameserver of its parent zone serves it. The parent zone
/// is the nearest ancestor with an NS set (found through the resolver); its servers are then
/// asked directly, all at once, within `deadline`.
pub async fn parent_ds(
    prober: &Prober,
    domain: &Name,
    per_server: &(dyn Fn(SocketAddr) -> Arc<Semaphore> + Sync),
    deadline: tokio::time::Instant,
) -> ParentDs {
    parent_side(prober, domain, per_server, deadline, false).await
}

/// [`parent_ds`], and with `keys` the parent zone's DNSKEY set at each of the same servers
/// (what a validator checks the DS set's RRSIGs with).
async fn parent_side(
    prober: &Prober,
    domain: &Name,
    per_server: &(dyn Fn(SocketAddr) -> Arc<Semaphore> + Sync),
    deadline: tokio::time::Instant,
    keys: bool,
) -> ParentDs {
    let mut out = ParentDs::default();
    let mut domain = domain.clone();
    domain.set_fqdn(true);
    let domain = &domain;
    let mut candidate = domain.base_name();
    let nameservers = loop {
        out.queries += 1;
        match tokio::time::timeout_at(deadline, prober.nameservers(&candidate)).await {
            Ok(Ok(ns)) => break ns,
            Ok(Err(e)) if candidate.is_root() => {
                out.error = Some(format!(
                    "the parent zone of {} cannot be found: {e}",
                    domain.to_ascii()
                ));
                return out;
            }
            Ok(Err(_)) => candidate = candidate.base_name(),
            Err(_) => {
                out.error = Some(format!(
                    "the parent zone of {} was not found within the diagnosis budget",
                    domain.to_ascii()
                ));
                return out;
            }
        }
    };
    out.parent = Some(candidate.clone());
    let mut questions = vec![(domain.clone(), RecordType::DS)];
    if keys {
        questions.push((candidate, RecordType::DNSKEY));
    }
    let mut set = tokio::task::JoinSet::new();
    for ns in &nameservers {
        if ns.addresses.is_empty() {
            let label = format!("{} (no address)", ns.name);
            out.servers.insert(label.clone(), Err("no address".into()));
            if keys {
                out.keys.insert(label, Err("no address".into()));
            }
            continue;
        }
        for addr in &ns.addresses {
            let label = format!("{} ({})", ns.name, addr.ip());
            for (qname, rtype) in &questions {
                let answers = if *rtype == RecordType::DS {
                    &mut out.servers
                } else {
                    &mut out.keys
                };
                answers.insert(
                    label.clone(),
                    Err("no answer within the diagnosis budget".into()),
                );
                let (prober, slots, addr, qname, rtype, label) = (
                    prober.clone(),
                    per_server(*addr),
                    *addr,
                    qname.clone(),
                    *rtype,
                    label.clone(),
                );
                set.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let reply = prober
                        .query_dnssec(addr, &qname, rtype)
                        .await
                        .map(|m| Answered::of(&m))
                        .map_err(|e| e.to_string());
                    (label, rtype, reply)
                });
            }
        }
    }
    out.queries += collect(&mut set, deadline, |(label, rtype, reply)| {
        if rtype == RecordType::DS {
            out.servers.insert(label, reply);
        } else {
            out.keys.insert(label, reply);
        }
    })
    .await;
    out
}

/// Everything the `dnssec` check looks at.
#[derive(Debug, Clone, Default)]
pub struct DnssecSeen {
    pub parent: ParentDs,
    /// Each nameserver address of the domain (`ns (ip)`), then each question's reply.
    pub servers: BTreeMap<String, BTreeMap<(String, RecordType), Reply>>,
    /// Why the domain's own nameservers could not be asked.
    pub error: Option<String>,
    pub queries: u32,
    /// When it was gathered (seconds since the epoch): signatures are judged at this time.
    pub checked_at: u64,
}

/// Asks the parent's servers for the DS set and the parent's DNSKEY set, and every
/// nameserver of `domain` each question (all with DO=1), within `deadline`.
pub async fn gather(
    prober: &Prober,
    domain: &Name,
    questions: &[(String, RecordType)],
    per_server: &(dyn Fn(SocketAddr) -> Arc<Semaphore> + Sync),
    deadline: tokio::time::Instant,
) -> DnssecSeen {
    let mut out = DnssecSeen {
        parent: parent_side(prober, domain, per_server, deadline, true).await,
        checked_at: crate::zone::set::unix_now(),
        ..Default::default()
    };
    out.queries += out.parent.queries + 1;
    let nameservers = match tokio::time::timeout_at(deadline, prober.nameservers(domain)).await {
        Ok(Ok(ns)) => ns,
        Ok(Err(e)) => {
            out.error = Some(e.to_string());
            return out;
        }
        Err(_) => {
            out.error = Some("no answer within the diagnosis budget".into());
            return out;
        }
    };
    let mut set = tokio::task::JoinSet::new();
    for ns in &nameservers {
        for addr in &ns.addresses {
            let label = format!("{} ({})", ns.name, addr.ip());
            let by_question = out.servers.entry(label.clone()).or_default();
            for (name, rtype) in questions {
                by_question.insert(
                    (name.clone(), *rtype),
                    Err("no answer within the diagnosis budget".into()),
                );
                let (prober, slots, addr, label) =
                    (prober.clone(), per_server(*addr), *addr, label.clone());
                let (name, rtype) = (name.clone(), *rtype);
                set.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let reply = match Name::from_ascii(&name) {
                        Err(e) => Err(e.to_string()),
                        Ok(qname) => prober
                            .query_dnssec(addr, &qname, rtype)
                            .await
                            .map(|m| Answered::of(&m))
                            .map_err(|e| e.to_string()),
                    };
                    (label, name, rtype, reply)
                });
            }
        }
    }
    out.queries += collect(&mut set, deadline, |(label, name, rtype, reply)| {
        out.servers
            .entry(label)
            .or_default()
            .insert((name, rtype), reply);
    })
    .await;
    out
}

/// Takes the results of `set` until it is empty or `deadline` passes; the queries sent.
async fn collect<T: 'static>(
    set: &mut tokio::task::JoinSet<T>,
    deadline: tokio::time::Instant,
    mut keep: impl FnMut(T),
) -> u32 {
    let mut queries = 0;
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok(v))) => {
                queries += 1;
                keep(v);
            }
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                queries += set.len() as u32;
                set.abort_all();
                break;
            }
        }
    }
    queries
}
