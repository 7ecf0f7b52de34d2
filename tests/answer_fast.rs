//! The fast answer path (precompiled wire answers) against the general one: the same 100,000
//! generated queries through both, over mail-style zones with CNAME chains, wildcards, empty
//! non-terminals, delegations, nested zones, NXDOMAIN, NODATA, REFUSED, EDNS or not, small
//! payloads that force TC, and 0x20 mixed case. Whenever the fast path answers, its response
//! must carry the same header flags, rcode, question and record sets; for a lower-case query
//! it must be the very same bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use mailzone::dns::{answer, fast};
use mailzone::metrics::Protocol;
use mailzone::zone::{Zone, ZoneSet};

use hickory_proto::rr::Name;

const MAX_UDP_PAYLOAD: u16 = 1232;

fn mail_zone(origin: &str) -> String {
    let dkim = "p=".to_string() + &"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA".repeat(9);
    format!(
        "$ORIGIN {origin}.
$TTL 3600
@ SOA ns1 hostmaster 2024060101 7200 3600 1209600 300
@ NS ns1
@ NS ns2.{origin}.
@ A 198.18.0.1
@ AAAA 2001:db8::1
@ MX 10 mx1
@ MX 20 Mx2
@ TXT \"v=spf1 mx ip4:198.18.0.0/15 ~all\"
_dmarc TXT \"v=DMARC1; p=quarantine; rua=mailto:dmarc@{origin}\"
sel1._domainkey TXT \"v=DKIM1; k=rsa; \" \"{}\" \"{}\"
_imaps._tcp SRV 0 1 993 mail
_submission._tcp SRV 0 1 587 mail.{origin}.
autoconfig CNAME mail
www CNAME @
c1 CNAME c2
c2 CNAME C3
c3 CNAME mail
loop1 CNAME loop2
loop2 CNAME loop1
dangling CNAME nothere
out CNAME www.elsewhere.example.
tomx CNAME mx1
ns1 A 198.18.255.1
ns2 A 198.18.255.2
ns2 AAAA 2001:db8::53
mx1 A 198.18.0.2
Mx2 A 198.18.254.2
MAIL A 198.18.0.3
mail AAAA 2001:db8::3
sub NS ns.sub
sub NS ns.elsewhere.example.
sub DS 12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE4E0E0F3B3E0E3D16A3B7E1A0
ns.sub A 198.18.9.9
*.wild A 198.18.42.42
*.wild TXT \"wildcard\"
host.wild A 198.18.42.43
tow CNAME x.wild
deep.ent.x A 198.18.0.44
*._report._dmarc TXT \"v=DMARC1\"
big TXT \"{}\" \"{}\" \"{}\"
caa CAA 0 issue \"ca.example\"
ptr PTR mail
hinfo HINFO \"pc\" \"linux\"
",
        &dkim[..200],
        &dkim[200..],
        "1".repeat(200),
        "2".repeat(200),
        "3".repeat(200),
    )
}

const CHILD: &str = "$ORIGIN deep.example.test.
$TTL 300
@ SOA ns1 hostmaster 5 3600 600 86400 60
@ NS ns1
ns1 A 192.0.2.1
@ MX 10 mx.example.test.
a A 192.0.2.5
";

fn zones() -> ZoneSet {
    let zone = |origin: &str, text: &str| {
        Arc::new(Zone::from_master_text(&Name::from_ascii(origin).unwrap(), text).unwrap())
    };
    ZoneSet::from_zones(
        vec![
            zone("example.test.", &mail_zone("example.test")),
            zone("mail.example.net.", &mail_zone("mail.example.net")),
            zone("deep.example.test.", CHILD),
        ],
        Vec::new(),
    )
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const LABELS: &[&str] = &[
    "",
    "www",
    "_dmarc",
    "sel1._domainkey",
    "_imaps._tcp",
    "_submission._tcp",
    "_tcp",
    "autoconfig",
    "c1",
    "c2",
    "c3",
    "loop1",
    "dangling",
    "out",
    "tomx",
    "ns1",
    "ns2",
    "mx1",
    "mx2",
    "mail",
    "sub",
    "ns.sub",
    "a.b.sub",
    "wild",
    "host.wild",
    "any.wild",
    "a.b.wild",
    "tow",
    "x",
    "ent.x",
    "deep.ent.x",
    "nope.ent.x",
    "far.example._report._dmarc",
    "_report._dmarc",
    "big",
    "caa",
    "ptr",
    "hinfo",
    "nx1",
    "a.nx2",
    "deep",
    "a.deep",
    "nx.deep",
];
const ORIGINS: &[&str] = &[
    "example.test",
    "mail.example.net",
    "example.org",
    "test",
    "",
];
/// A, NS, CNAME, SOA, PTR, HINFO, MX, TXT, AAAA, SRV, DS, RRSIG, IXFR, AXFR, ANY, CAA,
/// private use, 0, OPT, NULL.
const QTYPES: &[u16] = &[
    1, 1, 1, 2, 5, 6, 12, 13, 15, 15, 16, 16, 16, 28, 28, 33, 43, 46, 251, 252, 255, 257, 65280, 0,
    41, 10,
];

fn query_name(rng: &mut Rng) -> String {
    let label = rng.pick(LABELS);
    let origin = rng.pick(ORIGINS);
    let mut name = match (label.is_empty(), origin.is_empty()) {
        (true, true) => ".".to_string(),
        (true, false) => format!("{origin}."),
        (false, true) => format!("{label}."),
        (false, false) => format!("{label}.{origin}."),
    };
    if rng.below(4) == 0 {
        // 0x20: a random spelling.
        name = name
            .chars()
            .map(|c| {
                if rng.below(2) == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
    }
    name
}

fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// One generated request: mostly plain queries, some with odd headers, classes, EDNS.
fn request(rng: &mut Rng, id: u16) -> Vec<u8> {
    let name = query_name(rng);
    let qtype = *rng.pick(QTYPES);
    let mut flags: u16 = if rng.below(2) == 0 { 0x0100 } else { 0 }; // RD
    if rng.below(10) == 0 {
        flags |= 0x0010; // CD
    }
    match rng.below(100) {
        0 => flags |= 0x8000,  // a response
        1 => flags |= 4 << 11, // NOTIFY
        2 => flags |= 2 << 11, // STATUS
        3 => flags |= 0x0020,  // Z bit
        _ => {}
    }
    let qclass: u16 = match rng.below(50) {
        0 => 3,   // CH
        1 => 255, // ANY
        _ => 1,
    };
    let edns = rng.below(3) != 0;
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    let qd: u16 = if rng.below(200) == 0 { 2 } else { 1 };
    m.extend_from_slice(&qd.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 0, u8::from(edns)]);
    for _ in 0..qd {
        m.extend_from_slice(&wire_name(&name));
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&qclass.to_be_bytes());
    }
    if edns {
        let payload: u16 = *rng.pick(&[0, 256, 512, 600, 1000, 1232, 1400, 4096, 65535]);
        let version: u8 = if rng.below(30) == 0 { 1 } else { 0 };
        let do_bit: u8 = if rng.below(3) == 0 { 0x80 } else { 0 };
        let options: Vec<u8> = match rng.below(8) {
            // A client cookie, well formed.
            0 => vec![0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
            // An option claiming more than there is.
            1 => vec![0, 10, 0, 8, 1, 2],
            _ => Vec::new(),
        };
        m.push(0);
        m.extend_from_slice(&41u16.to_be_bytes());
        m.extend_from_slice(&payload.to_be_bytes());
        m.extend_from_slice(&[0, version, do_bit, 0]);
        m.extend_from_slice(&(options.len() as u16).to_be_bytes());
        m.extend_from_slice(&options);
    }
    if rng.below(100) == 0 {
        m.push(0xAB); // trailing garbage
    }
    m
}

/// The records of a section as comparable text (names lower-cased: DNS names compare
/// without case), sorted.
fn section(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| r.to_string().to_ascii_lowercase())
        .collect();
    out.sort();
    out
}

#[test]
fn the_fast_path_answers_100000_queries_as_the_general_path_does() {
    let zones = zones();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut out = Vec::with_capacity(65_536);
    let mut handled: BTreeMap<&str, usize> = BTreeMap::new();
    let mut fell_back = 0usize;
    let mut identical = 0usize;
    for i in 0..100_000u32 {
        let req = request(&mut rng, i as u16);
        let protocol = if rng.below(5) == 0 {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let Some(fast) = fast::respond(&zones, &req, protocol, MAX_UDP_PAYLOAD, &mut out) else {
            fell_back += 1;
            continue;
        };
        let general = answer::respond(&zones, &req, protocol, MAX_UDP_PAYLOAD)
            .unwrap_or_else(|| panic!("query {i} answered by the fast path only: {req:02x?}"));
        let context = || {
            format!(
                "query {i} ({protocol:?}) {req:02x?}\n general {:02x?}\n fast    {:02x?}",
                general.bytes, out
            )
        };
        assert_eq!(fast.rcode, general.rcode, "{}", context());
        assert_eq!(fast.qtype, general.qtype, "{}", context());
        // ID, flags and rcode: the whole header but the counts.
        assert_eq!(out[..4], general.bytes[..4], "{}", context());
        let (f, g) = (
            Message::from_vec(&out).unwrap_or_else(|e| panic!("{e}: {}", context())),
            Message::from_vec(&general.bytes).unwrap(),
        );
        assert_eq!(f.queries, g.queries, "{}", context());
        assert!(
            f.queries[0].name.eq_case(&g.queries[0].name),
            "{}",
            context()
        );
        assert_eq!(section(&f.answers), section(&g.answers), "{}", context());
        assert_eq!(
            section(&f.authorities),
            section(&g.authorities),
            "{}",
            context()
        );
        assert_eq!(
            section(&f.additionals),
            section(&g.additionals),
            "{}",
            context()
        );
        assert_eq!(f.edns, g.edns, "{}", context());
        // Answer owners carry the query's spelling (0x20), as in the general path.
        for (a, b) in f.answers.iter().zip(&g.answers) {
            if a.name == f.queries[0].name {
                assert!(a.name.eq_case(&f.queries[0].name), "{}", context());
                assert!(b.name.eq_case(&g.queries[0].name), "{}", context());
            }
        }
        if out == general.bytes {
            identical += 1;
        } else {
            let lower = !req.iter().any(u8::is_ascii_uppercase);
            assert!(!lower, "a lower-case query gave other bytes: {}", context());
        }
        let kind = match (
            general.rcode.low(),
            f.answers.is_empty(),
            f.metadata.authoritative,
        ) {
            (3, _, _) => "nxdomain",
            (5, _, _) => "refused",
            (0, false, _) => "answer",
            (0, true, true) => "nodata",
            (0, true, false) => "referral",
            _ => "other",
        };
        *handled.entry(kind).or_default() += 1;
    }
    let total: usize = handled.values().sum();
    eprintln!(
        "fast path: {total} answered ({identical} byte-identical), {fell_back} left to the general path; {handled:?}"
    );
    // The comparison means something only if the fast path answers most plain queries
    // and every kind of answer.
    assert!(total > 50_000, "{total} answered by the fast path");
    for kind in ["answer", "nodata", "nxdomain", "referral", "refused"] {
        assert!(
            handled.get(kind).copied().unwrap_or(0) > 500,
            "{kind}: {handled:?}"
        );
    }
}

/// A plain MX query for `origin`, with no EDNS.
fn plain_mx(origin: &str) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&wire_name(origin));
    m.extend_from_slice(&[0, 15, 0, 1]);
    m
}

#[test]
fn a_cold_zone_is_answered_by_the_general_path_until_it_has_been_asked_often() {
    let zones = zones();
    let req = plain_mx("mail.example.net.");
    let mut out = Vec::new();
    let compile_after = mailzone::zone::compiled::COMPILE_AFTER;
    for i in 1..compile_after {
        assert!(
            fast::respond(&zones, &req, Protocol::Udp, MAX_UDP_PAYLOAD, &mut out).is_none(),
            "query {i} of a cold zone answered from compiled answers"
        );
    }
    // The COMPILE_AFTER-th query compiles the zone's answers; from then on the fast path
    // answers, as the general path would.
    for _ in 0..3 {
        let answered = fast::respond(&zones, &req, Protocol::Udp, MAX_UDP_PAYLOAD, &mut out);
        assert_eq!(answered.map(|a| a.rcode), Some(ResponseCode::NoError));
    }
    let general = answer::respond(&zones, &req, Protocol::Udp, MAX_UDP_PAYLOAD).unwrap();
    let (fast, general) = (
        Message::from_vec(&out).unwrap(),
        Message::from_vec(&general.bytes).unwrap(),
    );
    assert_eq!(section(&fast.answers), section(&general.answers));
    assert_eq!(section(&fast.additionals), section(&general.additionals));
}
