//! Authoritative answers, checked over real UDP and TCP sockets against a running daemon.

mod common;

use common::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use std::str::FromStr;

fn corp_zone() -> String {
    let big: Vec<String> = (0..4)
        .map(|i| format!("\"{}\"", format!("{i}").repeat(200)))
        .collect();
    format!(
        "$ORIGIN corp.test.
$TTL 300
@ SOA ns1 hostmaster 7 3600 600 86400 60
@ NS ns1
ns1 A 192.0.2.53
a CNAME b
b CNAME c
c A 192.0.2.3
loop1 CNAME loop2
loop2 CNAME loop1
dangling CNAME nothere
out CNAME www.elsewhere.example.
sub NS ns.sub
ns.sub A 192.0.2.99
*.wild A 192.0.2.42
*.wild TXT \"wildcard\"
host.wild A 192.0.2.43
deep.ent.x A 192.0.2.44
big TXT {}
",
        big.join(" ")
    )
}

fn daemon() -> TestDaemon {
    TestDaemon::start(&[
        ("example.test.zone", EXAMPLE_ZONE),
        ("corp.test.zone", &corp_zone()),
    ])
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn soa_in_authority(m: &Message) -> bool {
    m.authorities.len() == 1 && m.authorities[0].record_type() == RecordType::SOA
}

#[test]
fn answer_from_a_hosted_zone_is_authoritative() {
    let d = daemon();
    let m = udp(d.dns, "example.test.", RecordType::MX);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(!m.metadata.recursion_available);
    assert_eq!(m.answers.len(), 2);
    // Additional-section processing gives the MX hosts' addresses.
    assert!(
        m.additionals
            .iter()
            .any(|r| r.name == name("mx1.example.test."))
    );
}

#[test]
fn nxdomain_carries_the_soa_with_the_negative_ttl() {
    let d = daemon();
    let m = udp(d.dns, "nothing.corp.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert!(soa_in_authority(&m));
    assert_eq!(
        m.authorities[0].ttl, 60,
        "min(SOA TTL, MINIMUM) per RFC 2308"
    );
}

#[test]
fn nodata_carries_the_soa() {
    let d = daemon();
    let m = udp(d.dns, "ns1.corp.test.", RecordType::MX);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert!(soa_in_authority(&m));
}

#[test]
fn cname_chain_inside_the_zone_is_followed() {
    let d = daemon();
    let m = udp(d.dns, "a.corp.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let types: Vec<RecordType> = m.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::CNAME, RecordType::CNAME, RecordType::A]);
    assert_eq!(m.answers[2].name, name("c.corp.test."));
}

#[test]
fn cname_to_a_missing_name_gives_nxdomain_with_the_cname() {
    let d = daemon();
    let m = udp(d.dns, "dangling.corp.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.answers.len(), 1);
    assert!(soa_in_authority(&m));
}

#[test]
fn cname_loop_ends_without_hanging() {
    let d = daemon();
    let m = udp(d.dns, "loop1.corp.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 2);
}

#[test]
fn cname_leaving_the_zone_is_returned_alone() {
    let d = daemon();
    let m = udp(d.dns, "out.corp.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
}

#[test]
fn delegation_is_answered_with_a_referral_and_glue() {
    let d = daemon();
    let m = udp(d.dns, "host.sub.corp.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative, "a referral is not authoritative");
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::NS);
    assert_eq!(m.authorities[0].name, name("sub.corp.test."));
    assert_eq!(m.additionals.len(), 1);
    assert_eq!(m.additionals[0].name, name("ns.sub.corp.test."));
}

#[test]
fn wildcard_synthesises_the_answer_under_the_query_name() {
    let d = daemon();
    let m = udp(d.dns, "anything.wild.corp.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].name, name("anything.wild.corp.test."));
    assert_eq!(m.answers[0].data, RData::A("192.0.2.42".parse().unwrap()));
}

#[test]
fn wildcard_does_not_cover_an_existing_name() {
    let d = daemon();
    let m = udp(d.dns, "host.wild.corp.test.", RecordType::A);
    assert_eq!(m.answers[0].data, RData::A("192.0.2.43".parse().unwrap()));
    let m = udp(d.dns, "host.wild.corp.test.", RecordType::TXT);
    assert!(
        m.answers.is_empty(),
        "an existing name is never wildcard-matched (RFC 4592)"
    );
}

#[test]
fn wildcard_without_the_type_gives_nodata() {
    let d = daemon();
    let m = udp(d.dns, "x.wild.corp.test.", RecordType::MX);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(soa_in_authority(&m));
}

#[test]
fn empty_non_terminal_is_nodata_not_nxdomain() {
    let d = daemon();
    let m = udp(d.dns, "ent.x.corp.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

#[test]
fn large_txt_gets_tc_over_udp_at_512_and_the_full_answer_over_tcp() {
    let d = daemon();
    let small = dig(
        d.dns,
        &["+bufsize=512", "+ignore", "+norec", "big.corp.test", "TXT"],
    );
    assert!(
        small.contains(" tc"),
        "TC expected with a 512-byte buffer:\n{small}"
    );
    assert!(!small.contains("ANSWER: 1"), "{small}");
    let full = dig(d.dns, &["+tcp", "+norec", "big.corp.test", "TXT"]);
    assert!(full.contains("ANSWER: 1"), "{full}");
    assert!(!full.contains(" tc"), "{full}");
    assert!(full.contains(&"3".repeat(200)), "{full}");
}

#[test]
fn client_payload_size_is_honoured() {
    let d = daemon();
    // Without EDNS the limit is 512: truncated.
    let m = udp_with(
        d.dns,
        "big.corp.test.",
        RecordType::TXT,
        &Ask {
            edns: None,
            ..Ask::default()
        },
    );
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty(), "never a partial rrset");
    // With 1232 the ~830-byte answer fits.
    let m = udp_with(
        d.dns,
        "big.corp.test.",
        RecordType::TXT,
        &Ask {
            edns: Some(1232),
            ..Ask::default()
        },
    );
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 1);
    // Our OPT advertises the server's own limit.
    assert_eq!(m.edns.as_ref().map(Edns::max_payload), Some(1232));
}

#[test]
fn edns_version_above_zero_gets_badvers() {
    let d = daemon();
    let m = udp_with(
        d.dns,
        "example.test.",
        RecordType::A,
        &Ask {
            edns_version: 1,
            ..Ask::default()
        },
    );
    // BADVERS and BADSIG share the value 16; hickory decodes it as BADSIG.
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert_eq!(m.edns.as_ref().map(Edns::version), Some(0));
    assert!(m.answers.is_empty());
    let out = dig(
        d.dns,
        &["+edns=1", "+noednsnegotiation", "example.test", "A"],
    );
    assert!(out.contains("status: BADVERS"), "{out}");
}

#[test]
fn the_do_bit_is_copied_into_the_reply() {
    // RFC 3225 §3: the DO bit of the query is copied into the response (six EDNS
    // compliance tests hinge on it); without it the reply's OPT says DO=0.
    let d = daemon();
    for asked in [true, false] {
        let mut q = query_message("example.test.", RecordType::A, &Ask::default());
        if let Some(edns) = q.edns.as_mut() {
            edns.set_dnssec_ok(asked);
        }
        let reply = exchange(d.dns, &q);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            reply.edns.as_ref().map(|e| e.flags().dnssec_ok),
            Some(asked),
            "DO={asked}"
        );
    }
    let out = dig(d.dns, &["+dnssec", "example.test", "A"]);
    assert!(out.contains("flags: do;"), "{out}");
}

#[test]
fn unknown_edns_options_are_ignored() {
    let d = daemon();
    let mut q = query_message("example.test.", RecordType::A, &Ask::default());
    if let Some(edns) = q.edns.as_mut() {
        edns.options_mut()
            .insert(EdnsOption::Unknown(65001, vec![1, 2, 3]));
    }
    let reply = exchange(d.dns, &q);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
    assert!(
        reply.edns.unwrap().options().as_ref().is_empty(),
        "unknown options are not echoed"
    );
}

#[test]
fn names_outside_hosted_zones_are_refused() {
    let d = daemon();
    let m = udp_with(
        d.dns,
        "www.google.com.",
        RecordType::A,
        &Ask {
            rd: true,
            ..Ask::default()
        },
    );
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    assert!(!m.metadata.recursion_available);
    assert!(!m.metadata.authoritative);
}

#[test]
fn recursion_desired_is_ignored_and_never_offered() {
    let d = daemon();
    let m = udp_with(
        d.dns,
        "example.test.",
        RecordType::A,
        &Ask {
            rd: true,
            ..Ask::default()
        },
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.recursion_desired, "RD is copied from the query");
    assert!(!m.metadata.recursion_available);
    assert!(m.metadata.authoritative);
}

#[test]
fn any_is_answered_with_one_rrset() {
    let d = daemon();
    let m = udp(d.dns, "example.test.", RecordType::ANY);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.answers.is_empty());
    let first = m.answers[0].record_type();
    assert!(
        m.answers.iter().all(|r| r.record_type() == first),
        "RFC 8482: one rrset only"
    );
}

#[test]
fn axfr_is_refused_by_default() {
    let d = daemon();
    let m = tcp(d.dns, "example.test.", RecordType::AXFR);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    let out = dig(d.dns, &["example.test", "AXFR"]);
    assert!(out.contains("Transfer failed"), "{out}");
}

#[test]
fn ixfr_is_refused_by_default() {
    let d = daemon();
    let m = tcp(d.dns, "example.test.", RecordType::IXFR);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn query_name_case_is_preserved_in_the_answer() {
    let d = daemon();
    let m = udp(d.dns, "ExAmPlE.TeSt.", RecordType::MX);
    assert!(m.queries[0].name.eq_case(&name("ExAmPlE.TeSt.")));
    assert_eq!(m.answers.len(), 2);
    for r in &m.answers {
        assert!(
            r.name.eq_case(&name("ExAmPlE.TeSt.")),
            "owner {} lost the query's case",
            r.name
        );
    }
}

#[test]
fn garbage_after_a_valid_header_gets_formerr() {
    let d = daemon();
    let mut bytes = query_message("example.test.", RecordType::A, &Ask::default())
        .to_vec()
        .unwrap();
    bytes.truncate(20);
    bytes.extend_from_slice(&[0xff; 7]);
    let reply = Message::from_vec(&udp_raw(d.dns, &bytes).expect("FORMERR expected")).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(reply.metadata.id, 0x5a5a);
}

#[test]
fn too_short_packets_and_responses_are_dropped_and_serving_goes_on() {
    let d = daemon();
    assert!(udp_raw(d.dns, &[1, 2, 3]).is_none());
    let mut response = query_message("example.test.", RecordType::A, &Ask::default());
    response.metadata.message_type = MessageType::Response;
    assert!(
        udp_raw(d.dns, &response.to_vec().unwrap()).is_none(),
        "responses are never answered"
    );
    assert_eq!(udp(d.dns, "example.test.", RecordType::A).answers.len(), 1);
}

#[test]
fn other_opcodes_get_notimp() {
    let d = daemon();
    let mut q = query_message("example.test.", RecordType::SOA, &Ask::default());
    q.metadata.op_code = OpCode::Status;
    let reply = exchange(d.dns, &q);
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn other_classes_are_refused() {
    let d = daemon();
    let mut q = query_message("example.test.", RecordType::TXT, &Ask::default());
    q.queries[0].set_query_class(DNSClass::CH);
    let reply = exchange(d.dns, &q);
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn two_questions_get_formerr() {
    let d = daemon();
    let mut q = query_message("example.test.", RecordType::A, &Ask::default());
    q.add_query(hickory_proto::op::Query::query(
        name("example.test."),
        RecordType::MX,
    ));
    let reply = exchange(d.dns, &q);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn tcp_serves_several_queries_on_one_connection() {
    use std::io::{Read, Write};
    let d = daemon();
    let mut s = std::net::TcpStream::connect(d.dns).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    for qtype in [RecordType::A, RecordType::MX, RecordType::TXT] {
        let bytes = query_message("example.test.", qtype, &Ask::default())
            .to_vec()
            .unwrap();
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        s.write_all(&out).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut reply).unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.queries[0].query_type, qtype);
        assert!(!m.answers.is_empty());
    }
}

#[test]
fn dig_sees_an_authoritative_mx_answer() {
    let d = daemon();
    let out = dig(d.dns, &["+norec", "example.test", "MX"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa;"), "{out}");
    assert!(out.contains("10 mx1.example.test."), "{out}");
    assert!(out.contains("20 mx2.example.test."), "{out}");
}

#[test]
fn kdig_reads_the_multi_line_dkim_record_as_written() {
    let d = daemon();
    let out = std::process::Command::new("kdig")
        .arg(format!("@{}", d.dns.ip()))
        .args([
            "-p",
            &d.dns.port().to_string(),
            "+short",
            "mail._domainkey.example.test",
            "TXT",
        ])
        .output()
        .expect("kdig is not installed: run the README's test command");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.starts_with("\"v=DKIM1; k=rsa; \" \"p=MIIB"), "{out}");
    assert!(out.trim_end().ends_with("M3QIDAQAB\""), "{out}");
}

#[test]
fn thousands_of_random_and_mangled_packets_never_stop_the_server() {
    let d = daemon();
    let valid = query_message("example.test.", RecordType::MX, &Ask::default())
        .to_vec()
        .unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // A small deterministic generator: the same packets every run.
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..3000 {
        let packet: Vec<u8> = if i % 2 == 0 {
            // A valid query with a few bytes flipped or cut.
            let mut p = valid.clone();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % p.len();
                p[at] = next() as u8;
            }
            p.truncate(12 + (next() as usize) % (p.len() - 11));
            p
        } else {
            (0..(next() % 600)).map(|_| next() as u8).collect()
        };
        socket.send_to(&packet, d.dns).unwrap();
        if i % 200 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    // Still answering, over both transports.
    assert_eq!(udp(d.dns, "example.test.", RecordType::MX).answers.len(), 2);
    assert_eq!(tcp(d.dns, "example.test.", RecordType::MX).answers.len(), 2);
}

#[test]
fn a_question_for_the_opt_pseudo_type_gets_formerr() {
    // RFC 6891 §6.1.1: OPT is a pseudo-record of the message, not data one can ask for.
    let d = daemon();
    let m = udp(d.dns, "example.test.", RecordType::OPT);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(m.answers.is_empty());
    // The zone still answers ordinary questions.
    let m = udp(d.dns, "example.test.", RecordType::SOA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

/// The IPv4 header of the next UDP datagram from `from` to `to` seen on loopback by a raw
/// socket (which needs CAP_NET_RAW: `None` without it).
fn capture_ipv4_header(
    from: std::net::SocketAddr,
    to: std::net::SocketAddr,
    send: impl FnOnce(),
) -> Option<Vec<u8>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).ok()?;
    raw.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    send();
    let mut raw = raw;
    let mut buf = [0u8; 2048];
    loop {
        let n =
            std::io::Read::read(&mut raw, &mut buf).expect("the response seen by the raw socket");
        let packet = &buf[..n];
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let sport = u16::from_be_bytes([packet[ihl], packet[ihl + 1]]);
        let dport = u16::from_be_bytes([packet[ihl + 2], packet[ihl + 3]]);
        if sport == from.port() && dport == to.port() {
            return Some(packet[..ihl].to_vec());
        }
    }
}

#[test]
fn udp_responses_leave_with_the_dont_fragment_bit_and_are_never_fragmented() {
    // RFC 9715 R1/R2: with the default dns.max_udp_payload (1232) responses are sent with
    // DF set and may never be fragmented. Linux sets DF on a small datagram by default too,
    // but keeps the right to fragment it (after a forged ICMP lowers the path MTU), and then
    // gives it a hashed IP ID; a datagram it will never fragment gets ID 0.
    let d = daemon();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = client.local_addr().unwrap();
    let query = query_message("example.test.", RecordType::MX, &Ask::default())
        .to_vec()
        .unwrap();
    let Some(header) = capture_ipv4_header(d.dns, local, || {
        client.send_to(&query, d.dns).unwrap();
    }) else {
        eprintln!("skipped: no raw socket (CAP_NET_RAW) to see the IP header");
        return;
    };
    let flags_and_offset = u16::from_be_bytes([header[6], header[7]]);
    assert_eq!(flags_and_offset & 0x4000, 0x4000, "DF set: {header:?}");
    assert_eq!(flags_and_offset & 0x3fff, 0, "not a fragment: {header:?}");
    assert_eq!(
        u16::from_be_bytes([header[4], header[5]]),
        0,
        "IP ID 0: the kernel will never fragment it: {header:?}"
    );
    let mut reply = [0u8; 2048];
    let (n, _) = client.recv_from(&mut reply).unwrap();
    assert!(n > 12, "the response itself arrives");
}
