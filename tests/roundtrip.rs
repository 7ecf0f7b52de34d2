//! Round-trip properties: every record the zone reader or the API accepts comes back
//! identical (owner bytes and case, TTL, type, RDATA wire bytes) after being written, read
//! again, and served after a restart.
//!
//! The default case counts keep this file at about two seconds; a longer run (about 95 s):
//! `PROPTEST_CASES=20000 cargo test --test roundtrip` (the API property runs one case in 16
//! of that, as each case starts and restarts a daemon).

mod common;

use std::net::SocketAddr;

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Label, Name, Record, RecordType};
use mailzone::zone::Zone;
use mailzone::zone::master::{parse_rdata_text, read, wire_bytes};
use mailzone::zone::writer::{record_line, to_master_text};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::json;

const ORIGIN: &str = "example.test.";

fn origin() -> Name {
    Name::from_ascii(ORIGIN).unwrap()
}

// ---------------------------------------------------------------------------------------
// Generators of master-file text.

/// One label's bytes, biased towards the shapes that matter: host names, `_service`,
/// A-labels, `*`, 63-byte labels, and arbitrary bytes.
fn label_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[a-zA-Z0-9][a-zA-Z0-9-]{0,15}".prop_map(String::into_bytes),
        1 => "_[a-z0-9]{1,10}".prop_map(String::into_bytes),
        2 => "xn--[a-z0-9]{2,20}(-[a-z0-9]{1,5})?".prop_map(String::into_bytes),
        1 => Just(b"*".to_vec()),
        1 => "[a-z0-9]{63}".prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 1..=63),
    ]
}

/// A label in presentation form; `escapes` picks, byte by byte, `\DDD` over the shorter
/// form where both are possible.
fn label_text(bytes: &[u8], escapes: &[bool]) -> String {
    if bytes == b"*" {
        return "*".into();
    }
    let mut s = String::new();
    for (i, &b) in bytes.iter().enumerate() {
        let decimal = escapes
            .get(i % escapes.len().max(1))
            .copied()
            .unwrap_or(false);
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' if !decimal => s.push(b as char),
            0x21..=0x7e if !decimal => {
                s.push('\\');
                s.push(b as char);
            }
            _ => s.push_str(&format!("\\{b:03}")),
        }
    }
    s
}

/// A name relative to the origin (`labels` is never empty), cut to fit 255 bytes.
fn fit(mut labels: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let room = 255 - origin().len() - 1;
    while labels.iter().map(|l| l.len() + 1).sum::<usize>() > room {
        labels.pop();
    }
    if labels.is_empty() {
        labels.push(b"a".to_vec());
    }
    labels
}

/// Labels of a relative owner name, sometimes exactly 255 bytes long with the origin.
fn owner_labels() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop_oneof![
        6 => prop::collection::vec(label_bytes(), 1..5).prop_map(fit),
        1 => Just(()).prop_map(|_| {
            // 3 × 64 + 49 + 14 ("example.test." on the wire) = 255.
            let mut l = vec![vec![b'x'; 63]; 3];
            l.push(vec![b'y'; 48]);
            l
        }),
    ]
}

/// A name in presentation form: relative, or absolute under the origin.
fn name_text() -> impl Strategy<Value = String> {
    (
        owner_labels(),
        prop::collection::vec(any::<bool>(), 1..8),
        any::<bool>(),
    )
        .prop_map(|(labels, escapes, absolute)| {
            let rel: Vec<String> = labels.iter().map(|l| label_text(l, &escapes)).collect();
            let rel = rel.join(".");
            if absolute {
                format!("{rel}.{ORIGIN}")
            } else {
                rel
            }
        })
}

/// A character-string of at most 255 bytes, quoted, with every byte either printable or
/// escaped (`\"`, `\\`, `\DDD`).
fn quoted() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..=255).prop_map(|bytes| {
        let mut s = String::from("\"");
        for b in bytes {
            match b {
                b'"' | b'\\' => {
                    s.push('\\');
                    s.push(b as char);
                }
                0x20..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\{b:03}")),
            }
        }
        s.push('"');
        s
    })
}

fn hex(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), min..=max)
        .prop_map(|b| b.iter().map(|b| format!("{b:02X}")).collect())
}

/// Record data for the types the reader builds itself: every value must be accepted.
fn native_rdata() -> impl Strategy<Value = (RecordType, String)> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(|a| (RecordType::A, a.to_string())),
        any::<std::net::Ipv6Addr>().prop_map(|a| (RecordType::AAAA, a.to_string())),
        name_text().prop_map(|n| (RecordType::NS, n)),
        name_text().prop_map(|n| (RecordType::CNAME, n)),
        name_text().prop_map(|n| (RecordType::PTR, n)),
        (any::<u16>(), name_text()).prop_map(|(p, n)| (RecordType::MX, format!("{p} {n}"))),
        (any::<u16>(), any::<u16>(), any::<u16>(), name_text())
            .prop_map(|(a, b, c, n)| (RecordType::SRV, format!("{a} {b} {c} {n}"))),
        prop::collection::vec(quoted(), 1..4).prop_map(|s| (RecordType::TXT, s.join(" "))),
    ]
}

/// Record data of the types hickory parses for us: a value may be refused (with an error)
/// but what is accepted must round-trip.
fn other_rdata() -> impl Strategy<Value = (RecordType, String)> {
    prop_oneof![
        (
            prop::sample::select(vec![0u8, 128]),
            prop::sample::select(vec!["issue", "issuewild"]),
            "[a-z0-9]{1,10}\\.[a-z]{2,5}"
        )
            .prop_map(|(f, t, v)| (RecordType::CAA, format!("{f} {t} \"{v}\""))),
        (0u8..4, 0u8..2, 0u8..3, hex(1, 64))
            .prop_map(|(u, s, m, h)| (RecordType::TLSA, format!("{u} {s} {m} {h}"))),
        (1u8..5, 1u8..3, hex(20, 32))
            .prop_map(|(a, t, h)| (RecordType::SSHFP, format!("{a} {t} {h}"))),
        ("[ -~&&[^\"\\\\]]{0,30}", "[ -~&&[^\"\\\\]]{0,30}")
            .prop_map(|(c, o)| (RecordType::HINFO, format!("\"{c}\" \"{o}\""))),
        (any::<u16>(), name_text())
            .prop_map(|(p, n)| (RecordType::HTTPS, format!("{} {n} alpn=h2", p.max(1)))),
    ]
}

fn owner_text() -> impl Strategy<Value = String> {
    prop_oneof![Just("@".to_string()), name_text()]
}

// ---------------------------------------------------------------------------------------
// Comparing records exactly: `Name` and `RData` equality ignore case.

/// The owner's labels (bytes, case kept), TTL, type and RDATA wire bytes.
type Exact = (Vec<Vec<u8>>, u32, RecordType, Option<Vec<u8>>);

fn exact(r: &Record) -> Exact {
    (
        r.name.iter().map(<[u8]>::to_vec).collect(),
        r.ttl,
        r.record_type(),
        wire_bytes(&r.data),
    )
}

fn read_one(text: &str) -> Result<Record, String> {
    let mut records = read(text, &origin()).map_err(|e| e.to_string())?;
    match records.len() {
        1 => Ok(records.remove(0).record),
        n => Err(format!("{n} records from one line: {text}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// reader → writer → reader gives the identical record, for the types the reader
    /// builds itself (which must accept every value generated here).
    #[test]
    fn a_record_read_written_and_read_again_is_identical(
        owner in owner_text(),
        ttl in 0u32..=0x7FFF_FFFF,
        (rtype, data) in native_rdata(),
    ) {
        let line = format!("{owner} {ttl} IN {rtype} {data}\n");
        let first = read_one(&line).map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        let written = record_line(&first);
        prop_assert!(written.is_ascii(), "{written}");
        let again = read_one(&format!("{written}\n"))
            .map_err(|e| TestCaseError::fail(format!("{written}: {e}")))?;
        prop_assert_eq!(exact(&first), exact(&again), "{} -> {}", line, written);
    }

    /// The same for the types hickory parses: refused with a line number, or identical.
    #[test]
    fn a_rare_type_record_is_refused_or_identical_after_a_round_trip(
        owner in owner_text(),
        (rtype, data) in other_rdata(),
    ) {
        let line = format!("{owner} 300 IN {rtype} {data}\n");
        match read_one(&line) {
            Err(e) => prop_assert!(e.starts_with("line 1: "), "{}", e),
            Ok(first) => {
                let written = record_line(&first);
                prop_assert!(written.is_ascii(), "{written}");
                let again = read_one(&format!("{written}\n"))
                    .map_err(|e| TestCaseError::fail(format!("{written}: {e}")))?;
                prop_assert_eq!(exact(&first), exact(&again), "{} -> {}", line, written);
            }
        }
    }

    /// A whole zone with an SOA of random names survives `to_master_text`.
    #[test]
    fn a_zone_written_and_read_again_has_the_identical_records(
        mname in name_text(),
        rname in name_text(),
        serial in any::<u32>(),
        records in prop::collection::vec((owner_text(), native_rdata()), 0..12),
    ) {
        let mut text = format!("$TTL 300\n@ SOA {mname} {rname} {serial} 3600 600 86400 60\n@ NS ns1\n");
        // A CNAME may not share its owner: give every record an owner of its own.
        for (i, (owner, (rtype, data))) in records.iter().enumerate() {
            let owner = if owner == "@" { format!("r{i}") } else { format!("r{i}.{owner}") };
            if owner.len() < 200 {
                text.push_str(&format!("{owner} {rtype} {data}\n"));
            }
        }
        let zone = match Zone::from_master_text(&origin(), &text) {
            Ok(z) => z,
            // Names made too long by the r{i} prefix are refused, with their line.
            Err(e) => { prop_assert!(e.line > 0, "{e}"); return Ok(()); }
        };
        let written = to_master_text(&zone);
        let again = Zone::from_master_text(&origin(), &written)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{written}")))?;
        let mut a: Vec<Exact> = zone.view().records().map(exact).collect();
        let mut b: Vec<Exact> = again.view().records().map(exact).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b, "{}", written);
    }

    /// A zone stored whole in its signatures file (format 4) comes back from it at a
    /// restart with every record identical, owners as spelled.
    #[test]
    fn a_zone_stored_whole_and_read_back_has_the_identical_records(
        serial in any::<u32>(),
        records in prop::collection::vec((owner_text(), native_rdata()), 0..12),
    ) {
        let mut text = format!("$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 60\n@ NS ns1\n");
        for (i, (owner, (rtype, data))) in records.iter().enumerate() {
            let owner = if owner == "@" { format!("r{i}") } else { format!("r{i}.{owner}") };
            if owner.len() < 200 {
                text.push_str(&format!("{owner} {rtype} {data}\n"));
            }
        }
        let Ok(zone) = Zone::from_master_text(&origin(), &text) else { return Ok(()) };
        let bytes = mailzone::zone::signed::encode(&zone, &text);
        let mut stored = mailzone::zone::signed::decode(&bytes)
            .map_err(TestCaseError::fail)?;
        let back = Zone::from_stored_arena(&origin(), &text, &mut stored)
            .ok_or_else(|| TestCaseError::fail("not taken for its own text"))?
            .map_err(TestCaseError::fail)?;
        let mut a: Vec<Exact> = zone.view().records().map(exact).collect();
        let mut b: Vec<Exact> = back.view().records().map(exact).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b, "{}", text);
        prop_assert_eq!(back.serial(), serial);
        prop_assert_eq!(back.record_count(), zone.record_count());
    }
}

// ---------------------------------------------------------------------------------------
// API → file → restart → answer.

/// A host-style label the API accepts.
fn api_label() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9][a-zA-Z0-9-]{0,12}",
        1 => "_[a-z0-9]{1,8}",
        1 => "xn--[a-z0-9]{2,16}",
        1 => "[a-z0-9]{63}",
    ]
}

/// Record data the API must accept: the native types (NS left out: it delegates) in
/// presentation form, TXT also as raw text, and common rare types.
fn api_rdata() -> impl Strategy<Value = (RecordType, String)> {
    prop_oneof![
        6 => native_rdata().prop_filter("NS delegates", |(t, _)| *t != RecordType::NS),
        1 => "[ -~]{1,600}".prop_filter("raw text", |s| !s.starts_with('"') && !s.trim().is_empty() && s.trim_start() == s)
            .prop_map(|t| (RecordType::TXT, t)),
        1 => (0u8..4, 0u8..2, 0u8..3, hex(1, 64))
            .prop_map(|(u, s, m, h)| (RecordType::TLSA, format!("{u} {s} {m} {h}"))),
    ]
}

/// An rrset to add: wildcard or not, labels of the owner, TTL, type, record data.
type ApiRrset = (bool, Vec<String>, u32, RecordType, Vec<String>);

fn api_rrsets() -> impl Strategy<Value = Vec<ApiRrset>> {
    prop::collection::vec(
        (
            any::<bool>(),
            prop::collection::vec(api_label(), 0..3),
            0u32..=86400,
            api_rdata(),
            prop::collection::vec(api_rdata(), 0..3),
        )
            .prop_map(|(wild, labels, ttl, (rtype, first), more)| {
                let mut data = vec![first];
                // A CNAME rrset holds one record (RFC 2181 §10.1).
                if rtype != RecordType::CNAME {
                    data.extend(
                        more.into_iter()
                            .filter(|(t, _)| *t == rtype)
                            .map(|(_, d)| d),
                    );
                }
                (wild, labels, ttl, rtype, data)
            }),
        1..6,
    )
}

/// Asks over TCP (no truncation) with a name built from its labels.
fn ask(server: SocketAddr, name: &Name, rtype: RecordType) -> Message {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name.clone(), rtype));
    Message::from_vec(&tcp_raw(server, &m.to_vec().unwrap())).unwrap()
}

fn api_config() -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: (default.cases / 16).max(3),
        max_shrink_iters: 16,
        ..default
    }
}

/// Records added through the API are written, read at the next start and served exactly.
/// Run by hand rather than by `proptest!`, which would let `PROPTEST_CASES` set its case
/// count: each case starts and restarts a daemon, so it runs one case in 16 of that.
#[test]
fn records_added_through_the_api_are_served_identically_after_a_restart() {
    let mut runner = proptest::test_runner::TestRunner::new(api_config());
    let result = runner.run(&api_rrsets(), api_case);
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// One case of the API property: create the zone, add `rrsets`, restart, ask for each.
fn api_case(rrsets: Vec<ApiRrset>) -> Result<(), TestCaseError> {
    let d = TestDaemon::start(&[]);
    let (status, body) = http(
        d.http,
        "POST",
        "/v1/zones",
        Some(TOKEN),
        Some(
            &json!({
                "name": ORIGIN, "nameservers": ["ns1.provider.example."]
            })
            .to_string(),
        ),
    );
    prop_assert_eq!(status, 201, "{}", body);
    let mut operations = Vec::new();
    let mut expected = Vec::new();
    for (i, (wild, labels, ttl, rtype, data)) in rrsets.iter().enumerate() {
        // One owner per rrset, so that no CNAME shares its name.
        let mut owner: Vec<String> = labels.clone();
        owner.push(format!("r{i}"));
        if *wild {
            owner.insert(0, "*".into());
        }
        let owner = owner.join(".");
        operations.push(json!({"op": "add", "name": owner, "type": rtype.to_string(), "ttl": ttl, "records": data}));
        let name = Name::from_labels(
            owner
                .split('.')
                .map(|l| Label::from_raw_bytes(l.as_bytes()).unwrap()),
        )
        .unwrap()
        .append_domain(&origin())
        .unwrap();
        let mut wire: Vec<Vec<u8>> = data
            .iter()
            .map(|t| wire_bytes(&parse_rdata_text(*rtype, t, &origin()).unwrap()).unwrap())
            .collect();
        wire.sort();
        wire.dedup();
        expected.push((name, *ttl, *rtype, wire));
    }
    let (status, body) = http(
        d.http,
        "PATCH",
        "/v1/zones/example.test/records",
        Some(TOKEN),
        Some(&json!({"operations": operations}).to_string()),
    );
    prop_assert_eq!(status, 200, "{}\n{:#}", body, json!(operations));

    let d = d.restart();
    for (name, ttl, rtype, wire) in expected {
        let m = ask(d.dns, &name, rtype);
        prop_assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{:?}",
            name
        );
        let mut got: Vec<Vec<u8>> = m
            .answers
            .iter()
            .filter(|r| r.record_type() == rtype)
            .map(|r| wire_bytes(&r.data).unwrap())
            .collect();
        got.sort();
        prop_assert_eq!(&got, &wire, "{:?} {}", name, rtype);
        prop_assert!(m.answers.iter().all(|r| r.ttl == ttl));
        prop_assert!(
            m.answers.iter().all(|r| r.name.iter().eq(name.iter())),
            "owner case"
        );
    }
    Ok(())
}
