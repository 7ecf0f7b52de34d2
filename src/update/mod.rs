//! RFC 2136 UPDATE: dynamic updates signed with TSIG, applied through the daemon's single
//! writer (the same validation, atomic file write, serial bump, IXFR journal and NOTIFY as
//! the HTTP API).
//!
//! This module owns the order of checks (TSIG, zone section, the key's `update:` policy,
//! protected records, prerequisites under the writer lock) and the response, signed with
//! the request's key. Unsigned requests are REFUSED and a bad signature gets NOTAUTH with
//! the TSIG error; both are only counted, never logged (anyone can send them). A verified
//! key's update, accepted or refused, is one log line. It must not touch sockets (the DNS
//! loops route UPDATEs here, off the answer path) nor write files itself.

pub mod plan;
pub mod policy;

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::op::{Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::daemon::Shared;
use crate::daemon::shared::WriteError;
use crate::transfer::TsigKey;
use crate::transfer::tsig::{self, Keyring, SignedRequest, Verdict};
use crate::zone::Zone;
use crate::zone::edit::RrsetChange;
use plan::{Op, Refusal};
use policy::{KeyPolicy, Policies};

/// The UPDATE service handed to the DNS loops.
#[derive(Clone)]
pub struct Service(Arc<Inner>);

struct Inner {
    shared: Arc<Shared>,
    keys: Keyring,
    policies: Policies,
}

/// The `result` label of `mailzone_updates_total`.
pub const RESULTS: [&str; 8] = [
    "changed",
    "unchanged",
    "refused",
    "unsigned",
    "notauth",
    "prerequisite",
    "formerr",
    "servfail",
];

impl Service {
    pub fn new(shared: Arc<Shared>, keys: &[TsigKey]) -> Result<Self, tsig::TsigFailure> {
        let policies = Policies::new(&shared.config.transfer);
        Ok(Self(Arc::new(Inner {
            keys: Keyring::new(keys)?,
            policies,
            shared,
        })))
    }
}

impl crate::dns::UpdateHandler for Service {
    fn handle(
        &self,
        request: Vec<u8>,
        peer: IpAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send + 'static>>
    {
        let inner = self.0.clone();
        Box::pin(async move { inner.respond(&request, peer).await })
    }
}

/// What the check of a verified request came to.
struct Outcome {
    rcode: ResponseCode,
    result: &'static str,
}

impl Inner {
    async fn respond(&self, request: &[u8], peer: IpAddr) -> Option<Vec<u8>> {
        let mut decoder = BinDecoder::new(request);
        let header = Header::read(&mut decoder).ok()?;
        if header.metadata.message_type == MessageType::Response {
            return None;
        }
        let meta = Metadata::response_from_request(&header.metadata);
        let Ok(message) = Message::from_vec(request) else {
            self.count("formerr");
            return encode(meta, ResponseCode::FormErr, None);
        };
        // The zone section is echoed, as BIND and Knot do.
        let zone_question = message.queries.first();
        let signed = match tsig::verify_request(&self.keys, request, &message, tsig::now()) {
            Err(_) => {
                self.count("formerr");
                return encode(meta, ResponseCode::FormErr, zone_question);
            }
            Ok(Verdict::Unsigned) => {
                self.count("unsigned");
                return encode(meta, ResponseCode::Refused, zone_question);
            }
            Ok(Verdict::Rejected(rejection)) => {
                self.count("notauth");
                let mut bytes = encode(meta, rejection.rcode(), zone_question)?;
                if rejection.finish(&mut bytes).is_err() {
                    return encode(meta, ResponseCode::ServFail, zone_question);
                }
                return Some(bytes);
            }
            Ok(Verdict::Signed(signed)) => signed,
        };
        let outcome = self.decide(&message, &signed, peer).await;
        self.count(outcome.result);
        let mut bytes = encode(meta, outcome.rcode, zone_question)?;
        let mut signer = signed.response_signer();
        signer.sign(&mut bytes, tsig::now()).ok()?;
        Some(bytes)
    }

    fn count(&self, result: &str) {
        self.shared
            .metrics
            .updates
            .with_label_values(&[result])
            .inc();
    }

    /// Everything after the signature: one log line per verified request.
    async fn decide(&self, message: &Message, signed: &SignedRequest, peer: IpAddr) -> Outcome {
        let key = signed.key_name();
        let zone = match plan::zone_of(message) {
            Ok(z) => z,
            Err(r) => return refused(key, None, peer, r, "formerr"),
        };
        let Some(policy) = self.policies.for_key(key) else {
            let r = Refusal::new(ResponseCode::Refused, "the key has no update policy");
            return refused(key, Some(&zone), peer, r, "refused");
        };
        if !policy.allows_zone(&zone) {
            let r = Refusal::new(ResponseCode::Refused, "the key may not update this zone");
            return refused(key, Some(&zone), peer, r, "refused");
        }
        let update = match plan::read(message, zone.clone()) {
            Ok(u) => u,
            Err(r) => {
                let result = if r.rcode == ResponseCode::FormErr {
                    "formerr"
                } else {
                    "refused"
                };
                return refused(key, Some(&zone), peer, r, result);
            }
        };
        if let Err(r) = check_ops(policy, &zone, &update.ops) {
            return refused(key, Some(&zone), peer, r, "refused");
        }
        let managed = managed_records(&self.shared, &zone);
        let prereqs = update.prereqs;
        let ops = update.ops;
        let changed = self
            .shared
            .change_records_checked(&zone, |current: &Zone| {
                plan::check_prereqs(current, &prereqs).map_err(|r| (r, "prerequisite"))?;
                let changes = plan::replay(current, &ops);
                check_changes(policy, &zone, &changes, &managed).map_err(|r| (r, "refused"))?;
                Ok(changes)
            })
            .await;
        match changed {
            Ok(Ok(c)) if c.changed => {
                tracing::info!(zone = %zone, key = %key, %peer, serial = c.zone.serial(), operations = ops.len(), "zone updated through RFC 2136");
                Outcome {
                    rcode: ResponseCode::NoError,
                    result: "changed",
                }
            }
            Ok(Ok(_)) => {
                tracing::info!(zone = %zone, key = %key, %peer, operations = ops.len(), "RFC 2136 update changed nothing (nothing written)");
                Outcome {
                    rcode: ResponseCode::NoError,
                    result: "unchanged",
                }
            }
            Ok(Err((r, result))) => refused(key, Some(&zone), peer, r, result),
            Err(WriteError::NotFound(_)) => {
                let r = Refusal::new(ResponseCode::NotAuth, "the zone is not served here");
                refused(key, Some(&zone), peer, r, "refused")
            }
            Err(WriteError::Conflict(m)) => refused(
                key,
                Some(&zone),
                peer,
                Refusal::new(ResponseCode::Refused, m),
                "refused",
            ),
            Err(WriteError::Invalid(e)) => refused(
                key,
                Some(&zone),
                peer,
                Refusal::new(ResponseCode::Refused, e.message),
                "refused",
            ),
            Err(e @ WriteError::Io { .. }) => {
                tracing::error!(zone = %zone, key = %key, error = %e, "RFC 2136 update not written");
                Outcome {
                    rcode: ResponseCode::ServFail,
                    result: "servfail",
                }
            }
        }
    }
}

/// Logs a verified key's refused update (one line) and gives its outcome.
fn refused(
    key: &Name,
    zone: Option<&Name>,
    peer: IpAddr,
    r: Refusal,
    result: &'static str,
) -> Outcome {
    let zone = zone.map(|z| z.to_string()).unwrap_or_default();
    tracing::info!(%zone, key = %key, %peer, rcode = %r.rcode, reason = %r.reason, "RFC 2136 update refused");
    Outcome {
        rcode: r.rcode,
        result,
    }
}

/// What needs no zone data: SOA and the apex NS are mailzone's; the key's names and types;
/// data that a zone file can hold.
fn check_ops(policy: &KeyPolicy, zone: &Name, ops: &[Op]) -> Result<(), Refusal> {
    let refuse = |m: String| Err(Refusal::new(ResponseCode::Refused, m));
    for op in ops {
        let name = op.name();
        match op.rtype() {
            Some(RecordType::SOA) => return refuse("the SOA record is managed by mailzone".into()),
            Some(RecordType::NS) if name == zone => {
                return refuse(format!(
                    "the NS records at the apex of {zone} are managed by mailzone"
                ));
            }
            _ => {}
        }
        if !policy.allows_name(zone, name)
            || op
                .rtype()
                .is_some_and(|t| !policy.allows(zone, name, Some(t)))
        {
            let what = op.rtype().map_or("records".to_string(), |t| t.to_string());
            return refuse(format!("the key may not change {what} at {name}"));
        }
        if let Op::Add { name, data, ttl } = op {
            if *ttl > crate::zone::master::MAX_TTL {
                return refuse(format!(
                    "TTL {ttl} is larger than {}",
                    crate::zone::master::MAX_TTL
                ));
            }
            if let Err(m) = crate::zone::master::storable(name, data) {
                return refuse(m);
            }
        }
    }
    Ok(())
}

/// What needs the replayed changes: a name's deletion under a key limited to some types
/// touches only those; records an association wrote stay as it wrote them.
fn check_changes(
    policy: &KeyPolicy,
    zone: &Name,
    changes: &[RrsetChange],
    managed: &HashMap<(Name, RecordType), (String, Vec<RData>)>,
) -> Result<(), Refusal> {
    let refuse = |m: String| Err(Refusal::new(ResponseCode::Refused, m));
    for c in changes {
        if !policy.allows(zone, &c.name, Some(c.rtype)) {
            return refuse(format!("the key may not change {} at {}", c.rtype, c.name));
        }
        let Some((platform, written)) = managed.get(&(c.name.clone(), c.rtype)) else {
            continue;
        };
        // Other TXT values live beside an association's (verification tokens beside SPF);
        // any other rrset it wrote is its own, as a whole.
        let fights = if c.rtype == RecordType::TXT {
            !written.iter().all(|w| c.records.contains(w))
        } else {
            true
        };
        if fights {
            tracing::info!(zone = %zone, name = %c.name, r#type = %c.rtype, %platform, "RFC 2136 update refused: it would change records an association manages");
            return refuse(format!(
                "{} {} is managed by the association with platform {platform}; change the association instead",
                c.name, c.rtype
            ));
        }
    }
    Ok(())
}

/// The records the associations of hosted domains wrote into `zone`, by rrset, with the
/// platform that wrote them.
fn managed_records(
    shared: &Shared,
    zone: &Name,
) -> HashMap<(Name, RecordType), (String, Vec<RData>)> {
    let associations = shared.associations.load();
    let mut out: HashMap<(Name, RecordType), (String, Vec<RData>)> = HashMap::new();
    for a in associations.all().filter(|a| a.hosted) {
        for r in &a.applied {
            let Ok(mut name) = Name::from_ascii(&r.name) else {
                continue;
            };
            name.set_fqdn(true);
            let Ok(rtype) = RecordType::from_str(&r.rtype) else {
                continue;
            };
            if !zone.zone_of(&name) {
                continue;
            }
            let data = crate::zone::master::parse_rdata_text(rtype, &r.value, zone).ok();
            let entry = out
                .entry((name, rtype))
                .or_insert_with(|| (a.platform.clone(), Vec::new()));
            entry.1.extend(data);
        }
    }
    out
}

/// A response header with the zone section echoed, as bytes ready for the TSIG.
fn encode(meta: Metadata, rcode: ResponseCode, zone: Option<&Query>) -> Option<Vec<u8>> {
    let mut m = Message::new(meta.id, MessageType::Response, OpCode::Update);
    m.metadata = meta;
    m.metadata.response_code = rcode;
    m.metadata.op_code = OpCode::Update;
    if let Some(q) = zone {
        m.add_query(q.clone());
    }
    m.to_vec().ok()
}
