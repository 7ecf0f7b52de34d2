//! What can ever be served: the size limits of DNS messages applied to stored data.
//!
//! This module owns the arithmetic that refuses, at input (API and zone file), data that no
//! answer could carry: record data over 65,535 bytes (RDLENGTH is 16 bits) and rrsets whose
//! answer would not fit a 65,535-byte TCP message. It computes sizes only; callers say
//! which record or field is at fault.

use hickory_proto::rr::{Name, RData};

use super::master::wire_bytes;

/// The largest DNS message (RFC 1035 §4.2.2: a TCP message has a 16-bit length) and the
/// largest record data (RDLENGTH is 16 bits).
pub const MAX_MESSAGE: usize = 65_535;
pub const MAX_RDATA: usize = 65_535;

/// The length of a name on the wire, uncompressed.
pub fn name_wire_len(name: &Name) -> usize {
    if name.is_root() { 1 } else { name.len() + 1 }
}

/// The length of the record data on the wire, names uncompressed (so never less than what
/// is sent). Computed without encoding for the common types.
pub fn rdata_len(data: &RData) -> usize {
    match data {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::TXT(txt) => txt.txt_data.iter().map(|s| 1 + s.len()).sum(),
        RData::NS(n) => name_wire_len(&n.0),
        RData::CNAME(n) => name_wire_len(&n.0),
        RData::PTR(n) => name_wire_len(&n.0),
        RData::MX(mx) => 2 + name_wire_len(&mx.exchange),
        RData::SRV(srv) => 6 + name_wire_len(&srv.target),
        RData::SOA(soa) => name_wire_len(&soa.mname) + name_wire_len(&soa.rname) + 20,
        // What cannot be encoded at all can never be sent either.
        other => wire_bytes(other).map_or(usize::MAX, |b| b.len()),
    }
}

/// The size of the answer to a question for the rrset at `owner` whose record data have
/// these lengths: header, question, OPT record, and each record with its owner written out
/// in full. hickory's encoder stops compressing names after the first ~16 KB of a message,
/// so counting owners as compression pointers would accept rrsets that are then always
/// truncated. A wildcard answers names of up to 255 bytes, so it is counted at that length.
pub fn answer_size(owner: &Name, rdata_lens: impl IntoIterator<Item = usize>) -> usize {
    const HEADER: usize = 12;
    const OPT: usize = 11;
    let fixed = HEADER + answer_owner_len(owner) + 4 + OPT;
    rdata_lens.into_iter().fold(fixed, |total, len| {
        total.saturating_add(record_size(owner, len))
    })
}

/// The length of the owner name as an answer carries it.
fn answer_owner_len(owner: &Name) -> usize {
    if owner.is_wildcard() {
        255
    } else {
        name_wire_len(owner)
    }
}

/// What one record adds to an answer: its owner, type, class, TTL, RDLENGTH and the data.
pub fn record_size(owner: &Name, rdata_len: usize) -> usize {
    rdata_len.saturating_add(answer_owner_len(owner) + 10)
}

/// Why a record or rrset can never be served, or `None`.
pub fn rdata_problem(len: usize) -> Option<String> {
    (len > MAX_RDATA).then(|| {
        format!("the record data is {len} bytes, over the {MAX_RDATA} bytes a record can hold")
    })
}

/// Why an rrset's answer can never be sent, or `None`.
pub fn answer_problem(size: usize, records: usize) -> Option<String> {
    (size > MAX_MESSAGE).then(|| {
        format!(
            "with this record the rrset ({records} records) needs an answer of at least {size} \
             bytes, over the {MAX_MESSAGE} bytes of the largest DNS message"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA, TXT};

    #[test]
    fn the_sizes_match_the_encoded_answer_for_common_types() {
        let txt = RData::TXT(TXT::new(vec!["a".repeat(255), "b".into()]));
        assert_eq!(rdata_len(&txt), wire_bytes(&txt).unwrap().len());
        let a = RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(rdata_len(&a), 4);
        for (mname, rname) in [
            ("ns1.example.test.", "hostmaster.example.test."),
            (".", "."),
        ] {
            let soa = RData::SOA(SOA::new(
                Name::from_ascii(mname).unwrap(),
                Name::from_ascii(rname).unwrap(),
                1,
                2,
                3,
                4,
                5,
            ));
            // Uncompressed, as the zone stores it (`wire_bytes` compresses rname).
            let mut wire = Vec::new();
            let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(&mut wire);
            encoder.set_name_encoding(hickory_proto::serialize::binary::NameEncoding::Uncompressed);
            hickory_proto::serialize::binary::BinEncodable::emit(&soa, &mut encoder).unwrap();
            assert_eq!(rdata_len(&soa), wire.len());
        }
        let owner = Name::from_ascii("www.example.test.").unwrap();
        // 12 + 18 + 4 + 11 + 2 * (18 + 10 + 4)
        assert_eq!(answer_size(&owner, [4, 4]), 109);
    }
}
