//! AXFR (RFC 5936) and IXFR (RFC 1995) out: from one transfer request to the messages that
//! answer it.
//!
//! This module owns the order of checks (TSIG, then protocol, then zone, then ACL), the
//! answers that are a single message (errors, the single SOA of an up-to-date IXFR) and the
//! packing of a transfer into messages of about 16 KB from one `Arc<Zone>` snapshot taken at
//! the start, each TSIG-signed when the request was. It is synchronous and never touches a
//! socket: the DNS loop writes the messages and yields between them, so a transfer never
//! holds up other connections or the UDP path. It must not log per message nor count
//! metrics (the caller does, from [`Outcome`]).

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, Query};
use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::acl::Acl;
use super::status::TransferStatus;
use super::tsig::{self, Keyring, ResponseSigner, SignedRequest, Verdict};
use crate::zone::journal::IxfrPlan;
use crate::zone::serial::serial_gt;
use crate::zone::{View, Zone, ZoneSet};

/// A message is closed once it holds this many bytes (a record more may follow): large
/// enough to amortise headers and TSIGs, small enough to keep each write short.
const TARGET_MESSAGE_BYTES: usize = 16 * 1024;
/// Room left under the 64 KB TCP message limit for the OPT and TSIG records.
const MAX_MESSAGE_BYTES: u16 = u16::MAX - 1024;

/// The transfer server: keys, ACL and where completed transfers are reported.
#[derive(Debug)]
pub struct Service {
    keys: Keyring,
    acl: Acl,
    max_udp_payload: u16,
    pub status: Arc<TransferStatus>,
}

/// How a transfer request ended, for the metrics (`result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
    NotAuth,
    BadKey,
    BadSig,
    BadTime,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::NotAuth,
        Outcome::BadKey,
        Outcome::BadSig,
        Outcome::BadTime,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::NotAuth => "notauth",
            Outcome::BadKey => "badkey",
            Outcome::BadSig => "badsig",
            Outcome::BadTime => "badtime",
            Outcome::Error => "error",
        }
    }
}

/// AXFR or IXFR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Axfr,
    Ixfr,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Axfr => "axfr",
            Kind::Ixfr => "ixfr",
        }
    }
}

/// The answer to a transfer request.
pub enum Reply {
    /// One message: an error, a refusal, or the single SOA of an IXFR.
    Single {
        bytes: Vec<u8>,
        kind: Kind,
        rcode: ResponseCode,
        outcome: Outcome,
    },
    /// A transfer to stream over TCP (boxed: it is much larger than an error reply).
    Stream(Box<Transfer>),
}

/// True when `request` asks for AXFR or IXFR (one question, opcode QUERY, not a response),
/// read from the raw header and question without decoding: the answer path calls it on
/// every query.
pub fn is_transfer_query(request: &[u8]) -> bool {
    let Some(header) = request.get(..12) else {
        return false;
    };
    // QR=0, opcode 0, QDCOUNT=1.
    if header[2] & 0xF8 != 0 || header[4..6] != [0, 1] {
        return false;
    }
    let mut at = 12;
    for _ in 0..128 {
        let Some(&len) = request.get(at) else {
            return false;
        };
        match len {
            0 => {
                return matches!(request.get(at + 1..at + 3), Some([0, 251 | 252]));
            }
            l if l & 0xC0 != 0 => return false,
            l => at += 1 + usize::from(l),
        }
    }
    false
}

/// What the TSIG of an ordinary (non-transfer) query means for its answer.
pub enum QueryTsig {
    /// Answer as usual, then sign the response with this.
    Sign(ResponseSigner),
    /// Send this error instead of an answer (NOTAUTH with the TSIG error, or FORMERR).
    Reply(Vec<u8>),
    /// Not signed after all, or a response: answer (or drop) as usual.
    Unsigned,
}

impl Service {
    /// A signed ordinary query (a secondary's SOA check before a transfer is one): the
    /// answer must be signed too, or the secondary discards it (RFC 8945 §5.3).
    pub fn check_query_tsig(&self, request: &[u8]) -> QueryTsig {
        let mut decoder = BinDecoder::new(request);
        let Ok(header) = Header::read(&mut decoder) else {
            return QueryTsig::Unsigned;
        };
        if header.metadata.message_type == MessageType::Response {
            return QueryTsig::Unsigned;
        }
        let mut meta = Metadata::response_from_request(&header.metadata);
        let Ok(message) = Message::from_vec(request) else {
            return QueryTsig::Unsigned;
        };
        match tsig::verify_request(&self.keys, request, &message, tsig::now()) {
            Ok(Verdict::Unsigned) => QueryTsig::Unsigned,
            Ok(Verdict::Signed(s)) => QueryTsig::Sign(s.response_signer()),
            Err(_) => {
                meta.response_code = ResponseCode::FormErr;
                QueryTsig::Reply(encode_one(meta, message.queries.first(), &[], None))
            }
            Ok(Verdict::Rejected(rejection)) => {
                meta.response_code = rejection.rcode();
                let mut bytes = encode_one(meta, message.queries.first(), &[], None);
                if rejection.finish(&mut bytes).is_err() {
                    meta.response_code = ResponseCode::ServFail;
                    bytes = encode_one(meta, message.queries.first(), &[], None);
                }
                QueryTsig::Reply(bytes)
            }
        }
    }

    pub fn new(
        keys: &[super::TsigKey],
        config: &crate::config::TransferConfig,
        max_udp_payload: u16,
        status: Arc<TransferStatus>,
    ) -> Result<Self, tsig::TsigFailure> {
        Ok(Self {
            keys: Keyring::new(keys)?,
            acl: Acl::new(config),
            max_udp_payload,
            status,
        })
    }

    /// Answers a transfer request from `peer` against the zones of `zones`. `None`: drop it
    /// (a response, or too short for a header). Over UDP the reply is always a single
    /// message.
    pub fn handle(
        &self,
        zones: &ZoneSet,
        request: &[u8],
        peer: IpAddr,
        udp: bool,
    ) -> Option<Reply> {
        let mut decoder = BinDecoder::new(request);
        let header = Header::read(&mut decoder).ok()?;
        if header.metadata.message_type == MessageType::Response {
            return None;
        }
        let meta = Metadata::response_from_request(&header.metadata);
        let Ok(message) = Message::from_vec(request) else {
            // A garbled TSIG (or anything else) that does not decode.
            return Some(single(
                meta,
                None,
                ResponseCode::FormErr,
                Outcome::Error,
                Kind::Axfr,
            ));
        };
        let Some(query) = message
            .queries
            .first()
            .filter(|_| message.queries.len() == 1)
        else {
            return Some(single(
                meta,
                None,
                ResponseCode::FormErr,
                Outcome::Error,
                Kind::Axfr,
            ));
        };
        let kind = if query.query_type == RecordType::IXFR {
            Kind::Ixfr
        } else {
            Kind::Axfr
        };
        let edns = message.edns.as_ref().map(|asked| {
            let mut e = Edns::new();
            e.set_max_payload(self.max_udp_payload);
            e.set_version(0);
            e.set_dnssec_ok(asked.flags().dnssec_ok);
            e
        });
        let mut answer = Answer {
            meta,
            query,
            edns: edns.as_ref(),
            signed: None,
            kind,
        };
        if self.acl.is_empty() || message.metadata.op_code != OpCode::Query {
            // No secondaries: transfers stay refused, as before they existed.
            return Some(answer.error(ResponseCode::Refused, Outcome::Refused));
        }
        match tsig::verify_request(&self.keys, request, &message, tsig::now()) {
            Err(_) => return Some(answer.error(ResponseCode::FormErr, Outcome::Error)),
            Ok(Verdict::Rejected(rejection)) => {
                let outcome = match rejection.error {
                    hickory_proto::rr::rdata::tsig::TsigError::BadKey => Outcome::BadKey,
                    hickory_proto::rr::rdata::tsig::TsigError::BadTime => Outcome::BadTime,
                    _ => Outcome::BadSig,
                };
                let mut reply = answer.error(rejection.rcode(), outcome);
                if let Reply::Single { bytes, .. } = &mut reply
                    && rejection.finish(bytes).is_err()
                {
                    return Some(answer.error(ResponseCode::ServFail, Outcome::Error));
                }
                return Some(reply);
            }
            Ok(Verdict::Signed(s)) => answer.signed = Some(s),
            Ok(Verdict::Unsigned) => {}
        }
        if udp && kind == Kind::Axfr {
            // RFC 5936 §4.2: AXFR is not done over UDP.
            return Some(answer.error(ResponseCode::Refused, Outcome::Refused));
        }
        if query.query_class != DNSClass::IN {
            return Some(answer.error(ResponseCode::Refused, Outcome::Refused));
        }
        // Only the apex of a zone we host can be transferred (RFC 5936 §2.2.1: NOTAUTH).
        let Some(zone) = zones
            .find_arc(&query.name)
            .filter(|z| z.origin() == &query.name)
        else {
            return Some(answer.error(ResponseCode::NotAuth, Outcome::NotAuth));
        };
        let key = answer.signed.as_ref().map(SignedRequest::key_name);
        if !self.acl.allows(peer, key, zone.origin()) {
            return Some(answer.error(ResponseCode::Refused, Outcome::Refused));
        }

        let source = match kind {
            Kind::Axfr => Source::Full,
            Kind::Ixfr => {
                // RFC 1995 §3: the client's SOA is in the authority section.
                let client = message.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) if r.name == *zone.origin() => Some(soa.serial),
                    _ => None,
                });
                let Some(client) = client else {
                    return Some(answer.error(ResponseCode::FormErr, Outcome::Error));
                };
                // A client at our serial or ahead of it (RFC 1982) gets the single SOA, as
                // BIND does: a serial from the future means its copy did not come from this
                // primary's history, and an AXFR with a lower serial would be refused anyway.
                let plan = if !serial_gt(zone.serial(), client) {
                    IxfrPlan::UpToDate
                } else {
                    zone.ixfr(client)
                };
                match plan {
                    IxfrPlan::UpToDate => {
                        self.status
                            .transferred(peer, zone.origin(), zone.serial(), kind.as_str());
                        return Some(answer.soa_only(&zone));
                    }
                    // Over UDP the whole answer rarely fits: the single SOA tells the
                    // client to come back over TCP (RFC 1995 §2).
                    _ if udp => return Some(answer.soa_only(&zone)),
                    IxfrPlan::Incremental(records) => Source::Incremental(records),
                    IxfrPlan::Full => Source::Full,
                }
            }
        };
        Some(Reply::Stream(Box::new(Transfer {
            meta: answer.meta,
            query: query.clone(),
            edns: edns.clone(),
            signer: answer.signed.as_ref().map(SignedRequest::response_signer),
            kind,
            peer,
            zone,
            view: None,
            source,
        })))
    }
}

/// The common parts of the single-message answers.
struct Answer<'a> {
    meta: Metadata,
    query: &'a Query,
    edns: Option<&'a Edns>,
    signed: Option<SignedRequest>,
    kind: Kind,
}

impl Answer<'_> {
    fn error(&self, rcode: ResponseCode, outcome: Outcome) -> Reply {
        let mut meta = self.meta;
        meta.response_code = rcode;
        self.finish(meta, &[], outcome)
    }

    fn soa_only(&self, zone: &Zone) -> Reply {
        let mut meta = self.meta;
        meta.authoritative = true;
        self.finish(meta, &[zone.soa()], Outcome::Ok)
    }

    fn finish(&self, meta: Metadata, answers: &[&Record], outcome: Outcome) -> Reply {
        let mut encoded = encode_one(meta, Some(self.query), answers, self.edns);
        if let Some(signed) = &self.signed
            && signed
                .response_signer()
                .sign(&mut encoded, tsig::now())
                .is_err()
        {
            let mut meta = meta;
            meta.response_code = ResponseCode::ServFail;
            encoded = encode_one(meta, Some(self.query), &[], None);
        }
        Reply::Single {
            bytes: encoded,
            kind: self.kind,
            rcode: meta.response_code,
            outcome,
        }
    }
}

fn single(
    meta: Metadata,
    query: Option<&Query>,
    rcode: ResponseCode,
    outcome: Outcome,
    kind: Kind,
) -> Reply {
    let mut meta = meta;
    meta.response_code = rcode;
    Reply::Single {
        bytes: encode_one(meta, query, &[], None),
        kind,
        rcode,
        outcome,
    }
}

fn encode_one(
    meta: Metadata,
    query: Option<&Query>,
    answers: &[&Record],
    edns: Option<&Edns>,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buf);
    let header = hickory_proto::op::emit_message_parts(
        &meta,
        &mut query.into_iter(),
        &mut answers.iter().copied(),
        &mut std::iter::empty::<&Record>(),
        &mut std::iter::empty::<&Record>(),
        edns,
        None,
        &mut encoder,
    );
    if header.is_err() {
        // Only an encoder bug gets here: a bare header still tells the client something.
        buf.clear();
        let mut encoder = BinEncoder::new(&mut buf);
        let _ = Header {
            metadata: meta,
            counts: HeaderCounts::default(),
        }
        .emit(&mut encoder);
    }
    buf
}

/// What a transfer sends between its SOAs.
enum Source {
    Full,
    Incremental(Vec<Record>),
}

/// A transfer in progress: the snapshot it is served from, and how far it has come.
pub struct Transfer {
    meta: Metadata,
    query: Query,
    edns: Option<Edns>,
    signer: Option<ResponseSigner>,
    kind: Kind,
    peer: IpAddr,
    zone: Arc<Zone>,
    /// The zone's records, decoded for a full transfer when its messages are asked for.
    view: Option<Arc<View>>,
    source: Source,
}

impl Transfer {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn zone(&self) -> &Arc<Zone> {
        &self.zone
    }

    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// Whether the transfer is AXFR-style (the whole zone), even when IXFR was asked.
    pub fn is_full(&self) -> bool {
        matches!(self.source, Source::Full)
    }

    /// The messages of the transfer, encoded one at a time as they are asked for.
    pub fn messages(&mut self) -> Messages<'_> {
        let soa = self.zone.soa();
        let records: Box<dyn Iterator<Item = &Record> + Send + '_> = match &self.source {
            // RFC 5936 §2.2: SOA first and last, the rest in any order. The apex's other
            // records come right after the SOA: BIND 9.18 warns "addnode: NSEC node already
            // exists" when a name's records (the apex NSEC) come in two separate runs.
            Source::Full => {
                let origin = self.zone.origin();
                let view: &View = self.view.get_or_insert_with(|| self.zone.view());
                let apex = view
                    .node(origin)
                    .into_iter()
                    .flat_map(|n| n.rrsets.iter().flat_map(|s| s.records.iter()))
                    .filter(|r| r.record_type() != RecordType::SOA);
                Box::new(
                    std::iter::once(soa)
                        .chain(apex)
                        .chain(view.records().filter(move |r| r.name != *origin))
                        .chain(std::iter::once(soa)),
                )
            }
            // Already in IXFR order, our SOA first and last (RFC 1995 §4).
            Source::Incremental(records) => Box::new(records.iter()),
        };
        Messages {
            records: records.peekable(),
            meta: self.meta,
            query: &self.query,
            edns: self.edns.as_ref(),
            signer: self.signer.take(),
            messages: 0,
            records_sent: 0,
            bytes_sent: 0,
        }
    }

    /// Tells the status that `peer` now has the zone at our serial.
    pub fn completed(&self, status: &TransferStatus) {
        status.transferred(
            self.peer,
            self.zone.origin(),
            self.zone.serial(),
            self.kind.as_str(),
        );
    }
}

/// Why a transfer stopped half-way (the client gets no more messages).
#[derive(Debug, thiserror::Error)]
pub enum XfrError {
    #[error("cannot encode a transfer message: {0}")]
    Encode(String),
    #[error("cannot sign a transfer message: {0}")]
    Sign(#[from] tsig::TsigFailure),
}

/// The messages of one transfer.
pub struct Messages<'a> {
    records: std::iter::Peekable<Box<dyn Iterator<Item = &'a Record> + Send + 'a>>,
    meta: Metadata,
    query: &'a Query,
    edns: Option<&'a Edns>,
    signer: Option<ResponseSigner>,
    pub messages: usize,
    pub records_sent: usize,
    pub bytes_sent: usize,
}

impl Messages<'_> {
    /// The next message, or `None` when every record has been sent.
    pub fn next_message(&mut self) -> Option<Result<Vec<u8>, XfrError>> {
        self.records.peek()?;
        Some(self.encode_next())
    }

    fn encode_next(&mut self) -> Result<Vec<u8>, XfrError> {
        let mut buf = Vec::with_capacity(TARGET_MESSAGE_BYTES + 2048);
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(MAX_MESSAGE_BYTES);
        let fail = |e: hickory_proto::ProtoError| XfrError::Encode(e.to_string());
        let place = encoder.place::<Header>().map_err(fail)?;
        // RFC 5936 §2.2: the question in the first message; later ones may omit it.
        let first = self.messages == 0;
        if first {
            self.query.emit(&mut encoder).map_err(fail)?;
        }
        let mut answers: u16 = 0;
        while let Some(record) = self.records.peek() {
            if answers > 0 && encoder.offset() >= TARGET_MESSAGE_BYTES {
                break;
            }
            // `emit_iter` rolls back a record that does not fit; it then starts the next
            // message (a record alone always fits: RDATA is at most 65535 bytes less
            // headers, and ours are far smaller).
            match encoder.emit_iter(&mut std::iter::once(*record)) {
                Ok(_) => {
                    self.records.next();
                    answers += 1;
                }
                Err(hickory_proto::ProtoError::NotAllRecordsWritten { .. }) if answers > 0 => break,
                Err(e) => return Err(fail(e)),
            }
        }
        let mut additionals = 0;
        if let Some(edns) = self.edns {
            Record::from(edns).emit(&mut encoder).map_err(fail)?;
            additionals = 1;
        }
        let mut meta = self.meta;
        meta.authoritative = true;
        meta.response_code = ResponseCode::NoError;
        place
            .replace(
                &mut encoder,
                Header {
                    metadata: meta,
                    counts: HeaderCounts {
                        queries: u16::from(first),
                        answers,
                        authorities: 0,
                        additionals,
                    },
                },
            )
            .map_err(fail)?;
        drop(encoder);
        if let Some(signer) = &mut self.signer {
            signer.sign(&mut buf, tsig::now())?;
        }
        self.messages += 1;
        self.records_sent += usize::from(answers);
        self.bytes_sent += buf.len();
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x04test\x00");
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m
    }

    #[test]
    fn transfer_queries_are_recognised_from_the_raw_bytes() {
        assert!(is_transfer_query(&query(252)));
        assert!(is_transfer_query(&query(251)));
        assert!(!is_transfer_query(&query(1)));
        assert!(!is_transfer_query(&query(252)[..14]));
        let mut response = query(252);
        response[2] |= 0x80;
        assert!(!is_transfer_query(&response));
    }
}
