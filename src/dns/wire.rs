//! Cheap checks on a raw DNS message that the decoder does not report.
//!
//! This module owns spotting, without allocating, problems that hickory's decoder silently
//! repairs (and used to log a WARN for): EDNS options whose lengths do not fill the OPT
//! record exactly. It must not decide what to answer; the caller counts what it finds.

/// True when the message has an OPT record whose options do not exactly fill its data
/// (an option claims more, or fewer, bytes than are there). A message that does not parse
/// this far is not reported here: the decoder rejects it with FORMERR.
pub fn has_bad_edns_options(msg: &[u8]) -> bool {
    any_record(msg, |rtype, data, additional| {
        additional && rtype == 41 && data.is_some_and(|d| !options_fill(d))
    })
}

/// True when the message is an RFC 2136 UPDATE request (QR=0, opcode 5), from its header.
pub fn is_update(msg: &[u8]) -> bool {
    msg.get(2).is_some_and(|b| b & 0xF8 == 5 << 3) && msg.len() >= 12
}

/// True when the message carries a TSIG record (type 250) among its records: such a query
/// is answered signed. Most queries have no additional record beyond OPT and are ruled out
/// after a few reads.
pub fn has_tsig(msg: &[u8]) -> bool {
    any_record(msg, |rtype, _, _| rtype == 250)
}

/// Walks the records after the question without allocating and tells whether `found`
/// holds for one: it gets the type, the data (`None` when the message ends inside it) and
/// whether the record is in the additional section. The walk stops, false, where the
/// message stops making sense.
fn any_record(msg: &[u8], found: impl Fn(u16, Option<&[u8]>, bool) -> bool) -> bool {
    let count = |at: usize| {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (Some(qd), Some(an), Some(ns), Some(ar)) = (count(4), count(6), count(8), count(10)) else {
        return false;
    };
    if ar == 0 {
        return false;
    }
    let mut at = 12;
    for _ in 0..qd {
        let Some(end) = skip_name(msg, at) else {
            return false;
        };
        at = end + 4;
    }
    let answers_and_authority = u32::from(an) + u32::from(ns);
    for i in 0..answers_and_authority + u32::from(ar) {
        let Some(end) = skip_name(msg, at) else {
            return false;
        };
        let Some(fixed) = msg.get(end..end + 10) else {
            return false;
        };
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data_start = end + 10;
        let data = msg.get(data_start..data_start + rdlen);
        if found(rtype, data, i >= answers_and_authority) {
            return true;
        }
        if data.is_none() {
            return false;
        }
        at = data_start + rdlen;
    }
    false
}

/// True when `data` is a sequence of (code, length, value) options ending exactly at its end.
fn options_fill(data: &[u8]) -> bool {
    let mut at = 0;
    while at < data.len() {
        let Some(head) = data.get(at..at + 4) else {
            return false;
        };
        at += 4 + usize::from(u16::from_be_bytes([head[2], head[3]]));
    }
    at == data.len()
}

/// The offset just past the (possibly compressed) name starting at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    // A name has at most 127 labels; bound the walk whatever the packet says.
    for _ in 0..128 {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return (at + 2 <= msg.len()).then_some(at + 2),
            l if l & 0xC0 != 0 => return None,
            l => at += 1 + usize::from(l),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_with_opt(rdata: &[u8]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        m.extend_from_slice(b"\x07example\x04test\x00\x00\x01\x00\x01");
        m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
        m
    }

    #[test]
    fn an_option_longer_than_its_data_is_spotted() {
        assert!(has_bad_edns_options(&query_with_opt(&[0, 10, 0, 8, 1, 2])));
        assert!(has_bad_edns_options(&query_with_opt(&[0, 10, 0])));
    }

    #[test]
    fn well_formed_options_and_none_are_fine() {
        assert!(!has_bad_edns_options(&query_with_opt(&[])));
        assert!(!has_bad_edns_options(&query_with_opt(&[
            0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8
        ])));
        assert!(!has_bad_edns_options(&[0u8; 5]));
    }
}
