//! A zone built from its records plus generated DNSSEC records given as raw RFC 1035 wire
//! RRs (`Zone::build_with_generated_wire`, what a restart of a signed zone uses to skip
//! decoding its stored signatures) is the zone built from the decoded records; records that
//! are not generated, lie outside the zone or are cut short are refused.

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use mailzone::dnssec::keys::{KeyState, Role, generate};
use mailzone::dnssec::{AlgorithmName, Denial, Policy};
use mailzone::zone::{SourcedRecord, Zone};

const NOW: u64 = 1_767_225_600;

fn origin() -> Name {
    Name::from_ascii("example.test.").unwrap()
}

const TEXT: &str = "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\n\
                    ns1 A 192.0.2.1\nwww CNAME ns1\n*.w TXT \"x\"\n";

/// The zone's records and the DNSSEC records a signing with `denial` generates for it.
fn signed_parts(denial: Denial) -> (Vec<SourcedRecord>, Vec<Record>) {
    let records = mailzone::zone::master::read(TEXT, &origin()).unwrap();
    let zone = Zone::build(origin(), records.clone()).unwrap();
    let mut key = generate(&origin(), AlgorithmName::Ecdsap256sha256, Role::Csk, NOW)
        .unwrap()
        .0;
    key.record.state = KeyState::Active;
    let policy = Policy {
        denial,
        ..Policy::default()
    };
    let (generated, _) =
        mailzone::dnssec::sign::sign(&zone, None, &[key], &policy, NOW, false).unwrap();
    (records, generated)
}

/// `records` as raw RFC 1035 wire RRs, names uncompressed.
fn wire(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = BinEncoder::new(&mut out);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    for r in records {
        r.emit(&mut encoder).unwrap();
    }
    out
}

fn lines(zone: &Zone) -> Vec<String> {
    let mut v: Vec<String> = zone.view().records().map(|r| r.to_string()).collect();
    v.sort();
    v
}

#[test]
fn generated_wire_records_build_the_same_zone_as_the_decoded_records() {
    for denial in [Denial::Nsec, Denial::Nsec3] {
        let (records, generated) = signed_parts(denial);
        let all: Vec<SourcedRecord> = records
            .iter()
            .cloned()
            .chain(
                generated
                    .iter()
                    .cloned()
                    .map(|record| SourcedRecord { record, line: 0 }),
            )
            .collect();
        let decoded = Zone::build(origin(), all).unwrap();
        let from_wire =
            Zone::build_with_generated_wire(origin(), records, &wire(&generated)).unwrap();
        assert!(from_wire.is_signed());
        assert_eq!(from_wire.has_nsec3(), matches!(denial, Denial::Nsec3));
        assert_eq!(from_wire.record_count(), decoded.record_count());
        assert_eq!(lines(&from_wire), lines(&decoded));
        assert_eq!(
            from_wire.view().nsec3().map(|c| c.len()),
            decoded.view().nsec3().map(|c| c.len())
        );
    }
}

#[test]
fn generated_wire_records_that_are_not_dnssec_outside_or_cut_short_are_refused() {
    let (records, generated) = signed_parts(Denial::Nsec);
    let a = Record::from_rdata(
        Name::from_ascii("x.example.test.").unwrap(),
        300,
        RData::A("192.0.2.9".parse().unwrap()),
    );
    let mut outside = generated[0].clone();
    outside.name = Name::from_ascii("example.other.").unwrap();
    let good = wire(&generated);
    for (bytes, why) in [
        (wire(&[a]), "is not generated"),
        (wire(&[outside]), "outside the zone"),
        (good[..good.len() - 1].to_vec(), "cut short"),
    ] {
        let e = Zone::build_with_generated_wire(origin(), records.clone(), &bytes)
            .err()
            .unwrap_or_else(|| panic!("accepted a record that {why}"));
        assert!(e.message.contains(why), "{e}");
    }
}

#[test]
fn a_type_is_found_in_the_arena_without_decoding_it() {
    let (records, generated) = signed_parts(Denial::Nsec);
    let plain = Zone::build(origin(), records.clone()).unwrap();
    let signed = Zone::build_with_generated_wire(origin(), records, &wire(&generated)).unwrap();
    assert!(plain.holds_type(RecordType::TXT) && plain.holds_type(RecordType::CNAME));
    assert!(!plain.holds_type(RecordType::RRSIG));
    assert!(signed.holds_type(RecordType::RRSIG) && signed.holds_type(RecordType::NSEC));
    assert!(!signed.keeps_view());
}

#[test]
fn the_earliest_expiry_and_the_cds_delete_are_read_from_the_arena_as_decoded() {
    use hickory_proto::dnssec::rdata::DNSSECRData;
    let (records, generated) = signed_parts(Denial::Nsec);
    let earliest = generated
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                Some(u64::from(sig.input().sig_expiration.get()))
            }
            _ => None,
        })
        .min();
    let zone =
        Zone::build_with_generated_wire(origin(), records.clone(), &wire(&generated)).unwrap();
    assert!(earliest.is_some());
    assert_eq!(zone.earliest_expiry(), earliest);
    assert!(!zone.publishes_cds_delete());
    assert_eq!(
        Zone::build(origin(), records.clone())
            .unwrap()
            .earliest_expiry(),
        None
    );

    // Unsigning: the CDS delete record (`0 0 0 00`) is published.
    let unsigned = Zone::build(origin(), records.clone()).unwrap();
    let mut key = generate(&origin(), AlgorithmName::Ecdsap256sha256, Role::Csk, NOW)
        .unwrap()
        .0;
    key.record.state = KeyState::Active;
    let (deleting, _) =
        mailzone::dnssec::sign::sign(&unsigned, None, &[key], &Policy::default(), NOW, true)
            .unwrap();
    let zone = Zone::build_with_generated_wire(origin(), records, &wire(&deleting)).unwrap();
    assert!(zone.publishes_cds_delete());
    assert!(!zone.keeps_view(), "nothing decoded and kept");
}
