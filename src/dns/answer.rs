//! The authoritative answer path: one request datagram in, one response datagram out.
//!
//! This module owns the DNS protocol rules around the zone lookup: header checks, opcode and
//! class handling, EDNS(0) (payload size, BADVERS), REFUSED outside hosted zones, AA/RA/RD,
//! and truncation. It is synchronous and takes no lock: it reads one [`ZoneSet`] snapshot.
//! It must not touch sockets or metrics; the listeners do.

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode, emit_message_parts,
};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};

mod secure;

use crate::metrics::Protocol;
use crate::zone::ZoneSet;
use crate::zone::lookup::Outcome;

/// The smallest UDP payload every client accepts (RFC 1035 §4.2.1).
const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// A response ready for the socket, and what to count about it.
#[derive(Debug)]
pub struct Response {
    pub bytes: Vec<u8>,
    pub qtype: Option<RecordType>,
    pub rcode: ResponseCode,
}

/// Answers one request. `None` means drop it silently: too short to carry a header, or a
/// response rather than a query (answering those would let anyone bounce packets off us).
pub fn respond(
    zones: &ZoneSet,
    request: &[u8],
    protocol: Protocol,
    max_udp_payload: u16,
) -> Option<Response> {
    let mut decoder = BinDecoder::new(request);
    let header = Header::read(&mut decoder).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let mut meta = Metadata::response_from_request(&header.metadata);
    let message = match Message::from_vec(request) {
        Ok(m) => m,
        Err(_) => return Some(bare(meta, ResponseCode::FormErr, None, None)),
    };
    let query = message.queries.first();
    let qtype = query.map(|q| q.query_type);
    let udp_limit = |edns: Option<&Edns>| match edns {
        Some(e) => e.max_payload().clamp(CLASSIC_UDP_PAYLOAD, max_udp_payload),
        None => CLASSIC_UDP_PAYLOAD,
    };
    let limit = match protocol {
        Protocol::Udp => udp_limit(message.edns.as_ref()),
        Protocol::Tcp => u16::MAX,
    };
    // Our OPT advertises our own limit, whatever the client said (RFC 6891 §6.2.3); the
    // client's options (cookies, ECS, …) are ignored, not echoed. The DO bit is copied
    // (RFC 3225 §3): a validator reads it back to know we understood it.
    let response_edns = message.edns.as_ref().map(|asked| {
        let mut e = Edns::new();
        e.set_max_payload(max_udp_payload);
        e.set_version(0);
        e.set_dnssec_ok(asked.flags().dnssec_ok);
        e
    });

    if let Some(edns) = &message.edns
        && edns.version() > 0
    {
        return Some(bare(
            meta,
            ResponseCode::BADVERS,
            query,
            response_edns.as_ref(),
        ));
    }
    if message.metadata.op_code != OpCode::Query {
        return Some(bare(
            meta,
            ResponseCode::NotImp,
            query,
            response_edns.as_ref(),
        ));
    }
    let Some(query) = query.filter(|_| message.queries.len() == 1) else {
        return Some(bare(
            meta,
            ResponseCode::FormErr,
            None,
            response_edns.as_ref(),
        ));
    };
    if query.query_type == RecordType::OPT {
        // OPT is a pseudo-record of the message itself, never data that can be asked for
        // (RFC 6891 §6.1.1): a question for it is malformed.
        return Some(bare(
            meta,
            ResponseCode::FormErr,
            Some(query),
            response_edns.as_ref(),
        ));
    }
    if query.query_class != DNSClass::IN {
        return Some(bare(
            meta,
            ResponseCode::Refused,
            Some(query),
            response_edns.as_ref(),
        ));
    }
    let Some(zone) = zones.find(&query.name) else {
        // Not ours: we are no resolver, and say so rather than stay silent.
        return Some(bare(
            meta,
            ResponseCode::Refused,
            Some(query),
            response_edns.as_ref(),
        ));
    };
    if matches!(query.query_type, RecordType::AXFR | RecordType::IXFR) {
        // Zone transfers are refused until an ACL allows them.
        return Some(bare(
            meta,
            ResponseCode::Refused,
            Some(query),
            response_edns.as_ref(),
        ));
    }

    // A cold zone's view is built for this answer and dropped with it ([`Zone::view`]).
    let view = zone.view();
    let lookup = view.lookup(&query.name, query.query_type);
    meta.authoritative = lookup.outcome != Outcome::Referral || !lookup.answers.is_empty();
    meta.response_code = match lookup.outcome {
        Outcome::NxDomain => ResponseCode::NXDomain,
        _ => ResponseCode::NoError,
    };
    let dnssec_ok = response_edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    let signed =
        (dnssec_ok && zone.is_signed()).then(|| secure::sections(&view, &query.name, &lookup));
    let (answers, authorities): (Vec<&Record>, Vec<&Record>) = match &signed {
        Some((answers, authorities)) => (
            answers.iter().map(|c| c.as_ref()).collect(),
            authorities.iter().map(|c| c.as_ref()).collect(),
        ),
        None => (
            lookup.answers.iter().map(|c| c.as_ref()).collect(),
            lookup.authorities.clone(),
        ),
    };
    let bytes = encode_fitting(
        meta,
        query,
        &answers,
        &authorities,
        &lookup.additionals,
        response_edns.as_ref(),
        limit,
        lookup.outcome == Outcome::Referral,
    );
    Some(Response {
        bytes,
        qtype,
        rcode: meta.response_code,
    })
}

/// A response with no records: errors, REFUSED, NOTIMP, BADVERS.
fn bare(
    mut meta: Metadata,
    rcode: ResponseCode,
    query: Option<&Query>,
    edns: Option<&Edns>,
) -> Response {
    meta.response_code = rcode;
    let bytes =
        encode(meta, query, &[], &[], &[], edns, u16::MAX).unwrap_or_else(|_| header_only(meta));
    Response {
        bytes,
        qtype: query.map(|q| q.query_type),
        rcode,
    }
}

/// Encodes within `limit` bytes. When the answer or authority section does not fit, the
/// client gets TC=1 and no records, so it retries over TCP (RFC 2181 §9: never a partial
/// rrset). When only the additional section does not fit, it is dropped without TC, except
/// for a referral, whose glue the resolver needs (RFC 9471).
#[allow(clippy::too_many_arguments)]
fn encode_fitting(
    meta: Metadata,
    query: &Query,
    answers: &[&Record],
    authorities: &[&Record],
    additionals: &[&Record],
    edns: Option<&Edns>,
    limit: u16,
    referral: bool,
) -> Vec<u8> {
    match encode(
        meta,
        Some(query),
        answers,
        authorities,
        additionals,
        edns,
        limit,
    ) {
        Ok(bytes) if !truncated(&bytes) => return bytes,
        Ok(_) => {}
        Err(_) => return header_only(servfail(meta)),
    }
    if let Ok(mut bytes) = encode(meta, Some(query), answers, authorities, &[], edns, limit)
        && !truncated(&bytes)
    {
        if referral {
            bytes[2] |= 0x02;
        }
        return bytes;
    }
    let mut meta = meta;
    meta.truncation = true;
    encode(meta, Some(query), &[], &[], &[], edns, limit)
        .unwrap_or_else(|_| header_only(servfail(meta)))
}

fn servfail(mut meta: Metadata) -> Metadata {
    meta.response_code = ResponseCode::ServFail;
    meta.authoritative = false;
    meta
}

/// The TC bit of an encoded message.
fn truncated(bytes: &[u8]) -> bool {
    bytes.get(2).is_some_and(|b| b & 0x02 != 0)
}

fn encode(
    meta: Metadata,
    query: Option<&Query>,
    answers: &[&Record],
    authorities: &[&Record],
    additionals: &[&Record],
    edns: Option<&Edns>,
    limit: u16,
) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let mut buf = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_max_size(limit);
    emit_message_parts(
        &meta,
        &mut query.into_iter(),
        &mut answers.iter().copied(),
        &mut authorities.iter().copied(),
        &mut additionals.iter().copied(),
        edns,
        None,
        &mut encoder,
    )?;
    Ok(buf)
}

/// A 12-byte header with no sections: the response of last resort.
fn header_only(meta: Metadata) -> Vec<u8> {
    let mut buf = Vec::with_capacity(12);
    let mut encoder = BinEncoder::new(&mut buf);
    let header = Header {
        metadata: meta,
        counts: Default::default(),
    };
    use hickory_proto::serialize::binary::BinEncodable;
    if header.emit(&mut encoder).is_err() {
        return Vec::new();
    }
    buf
}
