//! The fast answer path: a plain query answered from the precompiled answers, without
//! parsing the request into a `Message`, without allocating, and without a lock.
//!
//! This module owns recognising the common query (opcode QUERY, one question of class IN, no
//! records but an optional EDNS(0) OPT without options or with well-formed ones) and writing
//! its response into the caller's reused buffer: the header and question as received (the
//! query's 0x20 spelling kept), the precompiled sections from [`crate::zone::compiled`] with
//! their compression pointers moved when needed, and our OPT. Anything else — a zone transfer,
//! ANY, a wildcard, DO=1 on a signed zone, a response that would need TC, BADVERS, a malformed request — returns
//! `None`, and the caller answers with the general path ([`super::answer::respond`]), which
//! stays the reference for every protocol rule. It must not count, log nor touch sockets.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::metrics::Protocol;
use crate::zone::ZoneSet;
use crate::zone::compiled::WireName;

/// The smallest UDP payload every client accepts (RFC 1035 §4.2.1).
const CLASSIC_UDP_PAYLOAD: u16 = 512;
/// OPT (RFC 6891).
const OPT: u16 = 41;
/// Query types the general path answers: IXFR, AXFR (transfers), ANY (RFC 8482 rules).
const GENERAL_PATH_TYPES: [u16; 4] = [OPT, 251, 252, 255];

/// What the fast path answered, for the counters.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    pub qtype: Option<RecordType>,
    pub rcode: ResponseCode,
}

/// The EDNS(0) part of a query that the answer depends on.
struct Edns {
    payload: u16,
    dnssec_ok: bool,
}

/// Answers `request` into `out` (cleared first) if it is a query the fast path handles;
/// `None` leaves the request to the general path (and `out` in an unspecified state).
pub fn respond(
    zones: &ZoneSet,
    request: &[u8],
    protocol: Protocol,
    max_udp_payload: u16,
    out: &mut Vec<u8>,
) -> Option<Answered> {
    let header = request.get(..12)?;
    // QR=0, opcode QUERY; one question, nothing else but at most the OPT record.
    if header[2] & 0xF8 != 0 || header[4..10] != [0, 1, 0, 0, 0, 0] || header[10] != 0 {
        return None;
    }
    let additional = header[11];
    let (qname, name_len) = WireName::read(request.get(12..)?)?;
    let question_end = 12 + name_len + 4;
    let fixed = request.get(12 + name_len..question_end)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    if qclass != 1 || GENERAL_PATH_TYPES.contains(&qtype) {
        return None;
    }
    let edns = match additional {
        0 if request.len() == question_end => None,
        1 => Some(read_opt(request.get(question_end..)?)?),
        _ => return None,
    };
    let limit = match (protocol, &edns) {
        (Protocol::Tcp, _) => usize::from(u16::MAX),
        (Protocol::Udp, Some(e)) => {
            usize::from(e.payload.clamp(CLASSIC_UDP_PAYLOAD, max_udp_payload))
        }
        (Protocol::Udp, None) => usize::from(CLASSIC_UDP_PAYLOAD),
    };

    out.clear();
    out.extend_from_slice(&request[..question_end]);
    let mut flags = [0x80 | (header[2] & 0x01), header[3] & 0x10];
    let Some(zone) = zones.find_wire(&qname) else {
        // Not ours: REFUSED, no records (we are no resolver).
        flags[1] |= ResponseCode::Refused.low();
        finish(out, flags, [0, 0, 0], edns.as_ref(), max_udp_payload);
        return Some(Answered {
            qtype: Some(RecordType::from(qtype)),
            rcode: ResponseCode::Refused,
        });
    };
    // DO=1 on a signed zone needs signatures and proofs: the general path adds them. The
    // DO=0 answers stay these precompiled bytes.
    if zone.is_signed() && edns.as_ref().is_some_and(|e| e.dnssec_ok) {
        return None;
    }
    let found = zone
        .compiled_when_hot()?
        .find(&qname, qtype, zone.origin_labels())?;
    let entry = found.entry;
    let base = out.len();
    out.extend_from_slice(found.bytes);
    let delta = name_len.checked_sub(usize::from(entry.base_len))?;
    if delta > 0 {
        if !entry.movable {
            return None;
        }
        for &at in found.pointers {
            let at = base + usize::from(at);
            let pointer = u16::from_be_bytes([*out.get(at)?, *out.get(at + 1)?]);
            let moved = usize::from(pointer & 0x3FFF) + delta;
            if moved > 0x3FFF {
                return None;
            }
            out[at..at + 2].copy_from_slice(&(0xC000 | moved as u16).to_be_bytes());
        }
    }
    if entry.authoritative {
        flags[0] |= 0x04;
    }
    flags[1] |= entry.rcode;
    finish(
        out,
        flags,
        [entry.answers, entry.authorities, entry.additionals],
        edns.as_ref(),
        max_udp_payload,
    );
    // A response that may not fit goes to the general path, which alone decides about TC
    // and dropping the additional section. With 0x20 mixed case the general path compresses
    // less (it matches names byte for byte), so its size is bounded from above here.
    let worst = if qname.mixed_case {
        out.len() + found.pointers.len() * name_len
    } else {
        out.len()
    };
    if worst > limit {
        return None;
    }
    Some(Answered {
        qtype: Some(RecordType::from(qtype)),
        rcode: if entry.rcode == 3 {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        },
    })
}

/// Reads the OPT record that must make up the rest of the request: `None` when it is
/// anything else, a version other than 0, an extended rcode, or malformed options.
fn read_opt(rest: &[u8]) -> Option<Edns> {
    // Root owner, TYPE, CLASS (payload), TTL (ext rcode, version, flags), RDLENGTH.
    let rr = rest.get(..11)?;
    if rr[0] != 0 || u16::from_be_bytes([rr[1], rr[2]]) != OPT || rr[5] != 0 || rr[6] != 0 {
        return None;
    }
    let rdlen = usize::from(u16::from_be_bytes([rr[9], rr[10]]));
    let options = rest.get(11..)?;
    if options.len() != rdlen {
        return None;
    }
    // The options are ignored (not echoed), but must be well formed: the general path
    // counts the ill-formed ones as a client problem.
    let mut at = 0;
    while at < options.len() {
        let head = options.get(at..at + 4)?;
        at += 4 + usize::from(u16::from_be_bytes([head[2], head[3]]));
    }
    if at != options.len() {
        return None;
    }
    Some(Edns {
        payload: u16::from_be_bytes([rr[3], rr[4]]),
        dnssec_ok: rr[7] & 0x80 != 0,
    })
}

/// Writes the flags and counts into the header at the start of `out` and appends our OPT.
fn finish(
    out: &mut Vec<u8>,
    flags: [u8; 2],
    counts: [u16; 3],
    edns: Option<&Edns>,
    max_udp_payload: u16,
) {
    let additionals = counts[2] + u16::from(edns.is_some());
    out[2..4].copy_from_slice(&flags);
    out[6..8].copy_from_slice(&counts[0].to_be_bytes());
    out[8..10].copy_from_slice(&counts[1].to_be_bytes());
    out[10..12].copy_from_slice(&additionals.to_be_bytes());
    if let Some(e) = edns {
        // Our own limit, version 0, the DO bit copied (RFC 3225 §3), no options.
        let payload = max_udp_payload.to_be_bytes();
        let do_bit = if e.dnssec_ok { 0x80 } else { 0 };
        out.extend_from_slice(&[0, 0, 41, payload[0], payload[1], 0, 0, do_bit, 0, 0, 0]);
    }
}
