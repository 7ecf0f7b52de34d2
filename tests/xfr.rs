//! Zone transfers out (AXFR, IXFR) over real sockets: TSIG checked by kdig, dig and
//! hickory's own verifier, the TSIG error answers, the ACL, and transfers not slowing answers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigner};
use mailzone::config::{Config, SecondaryConfig, TsigKeyConfig, ZoneSelection};

use common::{EXAMPLE_ZONE, TestDaemon, tcp_from};

const KEY: &str = "xfr-test";

/// The example zone, transferable by 127.0.0.1 with the key and by 127.0.0.4 unsigned.
fn daemon_with(zones: &[(&str, &str)]) -> TestDaemon {
    TestDaemon::start_tuned(zones, allow_transfers)
}

fn allow_transfers(config: &mut Config) {
    config.transfer.keys = vec![TsigKeyConfig {
        name: KEY.into(),
        algorithm: Default::default(),
        update: None,
    }];
    config.transfer.secondaries = vec![
        SecondaryConfig {
            address: "127.0.0.1".into(),
            key: Some(KEY.into()),
            zones: ZoneSelection::All,
        },
        SecondaryConfig {
            address: "127.0.0.4".into(),
            key: None,
            zones: ZoneSelection::List(vec!["example.test.".into()]),
        },
    ];
}

fn example() -> TestDaemon {
    daemon_with(&[("example.test.zone", EXAMPLE_ZONE)])
}

fn secret(d: &TestDaemon) -> String {
    std::fs::read_to_string(d.dir.path().join(format!("keys/tsig/{KEY}.key")))
        .unwrap()
        .trim()
        .to_string()
}

fn signer(secret_b64: &str, name: &str) -> TSigner {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret_b64)
        .unwrap();
    TSigner::new(
        key,
        TsigAlgorithm::HmacSha256,
        Name::from_ascii(name).unwrap(),
        300,
    )
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A transfer request, signed by hickory's own client code when `signer` is given (signed
/// at `time`); returns the bytes and the request MAC.
fn request(
    zone: &str,
    qtype: RecordType,
    client_serial: Option<u32>,
    signer: Option<(&TSigner, u64)>,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    let name = Name::from_str(zone).unwrap();
    m.add_query(Query::query(name.clone(), qtype));
    if let Some(serial) = client_serial {
        let soa = SOA::new(
            name.clone(),
            Name::from_str("h.example.").unwrap(),
            serial,
            1,
            1,
            1,
            1,
        );
        m.add_authority(Record::from_rdata(name, 0, RData::SOA(soa)));
    }
    let mut mac = None;
    if let Some((s, time)) = signer {
        m.finalize(s, time).unwrap();
        mac = m.signature().map(|r| r.data.mac.clone());
    }
    (m.to_vec().unwrap(), mac)
}

/// Sends a request over TCP from `source` and reads messages until the transfer is over
/// (second SOA), an error, or a single-SOA answer.
fn transfer(server: SocketAddr, source: &str, req: &[u8]) -> Vec<Vec<u8>> {
    let mut s = tcp_from(source, server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = (req.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(req);
    s.write_all(&out).unwrap();
    read_transfer(&mut s)
}

fn read_transfer(s: &mut TcpStream) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut soas = 0;
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return messages;
        }
        let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut m).unwrap();
        let parsed = Message::from_vec(&m).unwrap();
        messages.push(m);
        soas += parsed
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        let single_soa = messages.len() == 1 && parsed.answers.len() == 1 && soas == 1;
        if parsed.metadata.response_code != ResponseCode::NoError || soas >= 2 || single_soa {
            return messages;
        }
    }
}

/// The records of all messages, in order.
fn records(messages: &[Vec<u8>]) -> Vec<Record> {
    messages
        .iter()
        .flat_map(|m| Message::from_vec(m).unwrap().answers)
        .collect()
}

fn rcode_and_tsig_error(message: &[u8]) -> (ResponseCode, Option<TsigError>, Option<Vec<u8>>) {
    let m = Message::from_vec(message).unwrap();
    let sig = m.signature();
    (
        m.metadata.response_code,
        sig.and_then(|s| s.data.error),
        sig.map(|s| s.data.mac.clone()),
    )
}

/// The zone file's records as sorted text, the way the daemon itself reads them.
fn zone_file_records(origin: &str, text: &str) -> Vec<String> {
    let zone =
        mailzone::zone::Zone::from_master_text(&Name::from_str(origin).unwrap(), text).unwrap();
    let mut v: Vec<String> = zone.view().records().map(|r| r.to_string()).collect();
    v.sort();
    v
}

fn kdig(server: SocketAddr, args: &[&str]) -> (String, String) {
    let out = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+time=20", "+retry=0"])
        .args(args)
        .output()
        .expect("kdig is not installed: run scripts/test, which installs it");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_signed_axfr_carries_the_whole_zone_soa_first_and_last_with_a_verified_tsig_chain() {
    let d = example();
    let s = signer(&secret(&d), KEY);
    let (req, mac) = request("example.test.", RecordType::AXFR, None, Some((&s, now())));
    let messages = transfer(d.dns, "127.0.0.1", &req);
    let recs = records(&messages);
    assert_eq!(recs.first().unwrap().record_type(), RecordType::SOA);
    assert_eq!(recs.last().unwrap().record_type(), RecordType::SOA);
    let mut got: Vec<String> = recs[..recs.len() - 1]
        .iter()
        .map(|r| r.to_string())
        .collect();
    got.sort();
    assert_eq!(got, zone_file_records("example.test.", EXAMPLE_ZONE));
    // hickory's client-side verifier checks every message of the chain.
    let mut previous = mac.unwrap();
    for (i, m) in messages.iter().enumerate() {
        let (mac, _, range) = s
            .verify_message_byte(m, Some(&previous), i == 0)
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert!(range.contains(&now()));
        previous = mac;
    }
}

#[test]
fn a_zone_over_64_kb_comes_in_several_messages_each_signed_and_kdig_verifies_them() {
    let big = common::big_zone();
    let d = daemon_with(&[("big.test.zone", &big)]);
    let key = format!("hmac-sha256:{KEY}:{}", secret(&d));
    let (out, err) = kdig(d.dns, &["-y", &key, "AXFR", "big.test."]);
    // kdig fails the transfer on a bad chained MAC (";; WARNING: ... TSIG ..." or
    // ";; ERROR: ...").
    let complaints: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| {
            l.starts_with(";; WARNING") || l.starts_with(";; ERROR") || l.contains("BADSIG")
        })
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
    // ";; Received 150000 B (10 messages, 4004 records)"
    let line = out
        .lines()
        .find(|l| l.starts_with(";; Received"))
        .unwrap_or_else(|| panic!("{out}\n{err}"));
    let expected = zone_file_records("big.test.", &big).len() + 1;
    assert!(line.contains(&format!("{expected} records")), "{line}");
    let bytes: usize = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(bytes > 65_535, "{line}");
    let messages: usize = line
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(messages > 4, "{line}");
    // dig checks every message too, and says so when one fails.
    let out = common::dig(d.dns, &["-y", &key, "AXFR", "big.test."]);
    assert!(!out.contains("Couldn't verify"), "{out}");
    assert!(out.contains("XFR size"), "{out}");
}

#[test]
fn a_wrong_secret_gets_notauth_badsig_unsigned_and_no_records() {
    let d = example();
    let wrong = signer("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", KEY);
    let (req, _) = request(
        "example.test.",
        RecordType::AXFR,
        None,
        Some((&wrong, now())),
    );
    let messages = transfer(d.dns, "127.0.0.1", &req);
    assert_eq!(messages.len(), 1);
    let (rcode, error, mac) = rcode_and_tsig_error(&messages[0]);
    assert_eq!(rcode, ResponseCode::NotAuth);
    assert_eq!(error, Some(TsigError::BadSig));
    assert_eq!(mac, Some(Vec::new()), "BADSIG answers are unsigned");
    assert!(records(&messages).is_empty());
}

#[test]
fn an_unknown_key_gets_notauth_badkey() {
    let d = example();
    let other = signer(&secret(&d), "not-a-key-we-know");
    let (req, _) = request(
        "example.test.",
        RecordType::AXFR,
        None,
        Some((&other, now())),
    );
    let messages = transfer(d.dns, "127.0.0.1", &req);
    let (rcode, error, mac) = rcode_and_tsig_error(&messages[0]);
    assert_eq!(rcode, ResponseCode::NotAuth);
    assert_eq!(error, Some(TsigError::BadKey));
    assert_eq!(mac, Some(Vec::new()));
    assert!(records(&messages).is_empty());
}

#[test]
fn a_request_signed_an_hour_ago_gets_badtime_signed_with_our_time() {
    let d = example();
    let s = signer(&secret(&d), KEY);
    let then = now() - 3600;
    let (req, mac) = request("example.test.", RecordType::AXFR, None, Some((&s, then)));
    let messages = transfer(d.dns, "127.0.0.1", &req);
    assert_eq!(messages.len(), 1);
    let m = Message::from_vec(&messages[0]).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NotAuth);
    let tsig = &m.signature().unwrap().data;
    assert_eq!(tsig.error, Some(TsigError::BadTime));
    assert_eq!(tsig.time, then, "Time Signed is the request's");
    let mut other = [0u8; 8];
    other[2..].copy_from_slice(&tsig.other);
    assert!(
        u64::from_be_bytes(other).abs_diff(now()) < 60,
        "Other Data: our time"
    );
    // Signed, chained to the request's MAC.
    s.verify_message_byte(&messages[0], mac.as_deref(), true)
        .unwrap();
    assert!(m.answers.is_empty());
}

#[test]
fn unsigned_axfr_from_an_address_not_listed_is_refused() {
    let d = example();
    let (req, _) = request("example.test.", RecordType::AXFR, None, None);
    let messages = transfer(d.dns, "127.0.0.9", &req);
    assert_eq!(rcode_and_tsig_error(&messages[0]).0, ResponseCode::Refused);
    assert!(records(&messages).is_empty());
}

#[test]
fn unsigned_axfr_from_a_listed_address_with_a_key_is_refused_and_without_one_allowed() {
    let d = example();
    let (req, _) = request("example.test.", RecordType::AXFR, None, None);
    let refused = transfer(d.dns, "127.0.0.1", &req);
    assert_eq!(rcode_and_tsig_error(&refused[0]).0, ResponseCode::Refused);
    let allowed = transfer(d.dns, "127.0.0.4", &req);
    assert_eq!(
        records(&allowed).len(),
        zone_file_records("example.test.", EXAMPLE_ZONE).len() + 1
    );
}

#[test]
fn axfr_over_udp_is_refused() {
    let d = example();
    let s = signer(&secret(&d), KEY);
    let (req, _) = request("example.test.", RecordType::AXFR, None, Some((&s, now())));
    let reply = common::udp_raw(d.dns, &req).expect("an answer");
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
}

#[test]
fn axfr_for_a_zone_we_do_not_host_is_notauth() {
    let d = example();
    let s = signer(&secret(&d), KEY);
    for zone in ["other.test.", "www.example.test."] {
        let (req, mac) = request(zone, RecordType::AXFR, None, Some((&s, now())));
        let messages = transfer(d.dns, "127.0.0.1", &req);
        assert_eq!(
            rcode_and_tsig_error(&messages[0]).0,
            ResponseCode::NotAuth,
            "{zone}"
        );
        // The answer to a signed request is signed.
        s.verify_message_byte(&messages[0], mac.as_deref(), true)
            .unwrap();
    }
}

#[test]
fn truncated_or_garbled_tsig_gets_formerr_or_notauth_and_the_daemon_keeps_answering() {
    let d = example();
    let s = signer(&secret(&d), KEY);
    let (req, _) = request("example.test.", RecordType::AXFR, None, Some((&s, now())));
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for cut in [1, 5, 20, 40, 60] {
        cases.push(req[..req.len() - cut].to_vec());
    }
    for at in [
        req.len() - 3,
        req.len() - 20,
        req.len() - 40,
        req.len() - 50,
    ] {
        let mut g = req.clone();
        g[at] ^= 0xFF;
        cases.push(g);
    }
    // A TSIG signed at time 0 (below its fudge) must not upset the time arithmetic.
    let (zero, _) = request("example.test.", RecordType::AXFR, None, Some((&s, 0)));
    cases.push(zero);
    for case in cases {
        let messages = transfer(d.dns, "127.0.0.1", &case);
        if let Some(first) = messages.first() {
            let rcode = Message::from_vec(first).unwrap().metadata.response_code;
            assert!(
                matches!(rcode, ResponseCode::FormErr | ResponseCode::NotAuth),
                "{rcode:?}"
            );
            assert!(records(&messages).is_empty());
        }
    }
    let m = common::udp(d.dns, "example.test.", RecordType::SOA);
    assert_eq!(m.answers.len(), 1);
}

#[test]
fn ixfr_with_the_current_serial_gets_the_single_soa_over_udp_and_tcp() {
    let d = example();
    let s = signer(&secret(&d), KEY);
    let (req, _) = request(
        "example.test.",
        RecordType::IXFR,
        Some(2026112301),
        Some((&s, now())),
    );
    let over_tcp = transfer(d.dns, "127.0.0.1", &req);
    let over_udp = common::udp_raw(d.dns, &req).expect("an answer");
    for m in [&over_tcp[0], &over_udp] {
        let m = Message::from_vec(m).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        let RData::SOA(soa) = &m.answers[0].data else {
            panic!("not a SOA")
        };
        assert_eq!(soa.serial, 2026112301);
    }
    assert_eq!(over_tcp.len(), 1);
}

#[test]
fn ixfr_with_a_serial_from_the_future_gets_the_single_soa() {
    let d = example();
    let s = signer(&secret(&d), KEY);
    let (req, _) = request(
        "example.test.",
        RecordType::IXFR,
        Some(2026112301 + 1000),
        Some((&s, now())),
    );
    let messages = transfer(d.dns, "127.0.0.1", &req);
    assert_eq!(records(&messages).len(), 1);
}

#[test]
fn ixfr_with_an_old_serial_gets_the_whole_zone_axfr_style_over_tcp_and_the_soa_over_udp() {
    let d = example();
    let s = signer(&secret(&d), KEY);
    let (req, _) = request(
        "example.test.",
        RecordType::IXFR,
        Some(2026112300),
        Some((&s, now())),
    );
    let messages = transfer(d.dns, "127.0.0.1", &req);
    assert_eq!(
        records(&messages).len(),
        zone_file_records("example.test.", EXAMPLE_ZONE).len() + 1
    );
    let over_udp = Message::from_vec(&common::udp_raw(d.dns, &req).unwrap()).unwrap();
    assert_eq!(over_udp.answers.len(), 1, "the client retries over TCP");
    // kdig agrees, signature and all.
    let key = format!("hmac-sha256:{KEY}:{}", secret(&d));
    let (out, err) = kdig(d.dns, &["-y", &key, "IXFR=2026112300", "example.test."]);
    assert!(
        !err.contains("TSIG") && !err.contains("ERROR"),
        "{out}\n{err}"
    );
    assert!(out.contains("mx1.example.test."), "{out}");
}

#[test]
fn transfers_are_counted_by_type_and_result() {
    let d = example();
    let s = signer(&secret(&d), KEY);
    let (ok, _) = request("example.test.", RecordType::AXFR, None, Some((&s, now())));
    transfer(d.dns, "127.0.0.1", &ok);
    let (unsigned, _) = request("example.test.", RecordType::AXFR, None, None);
    transfer(d.dns, "127.0.0.9", &unsigned);
    // The counters move once the last byte is written: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = d.daemon().shared().metrics.render();
    while Instant::now() < deadline
        && common::metric(
            &metrics,
            "mailzone_transfers_total{result=\"refused\",type=\"axfr\"}",
        ) + common::metric(
            &metrics,
            "mailzone_transfers_total{result=\"ok\",type=\"axfr\"}",
        ) < 2.0
    {
        std::thread::sleep(Duration::from_millis(50));
        metrics = d.daemon().shared().metrics.render();
    }
    assert_eq!(
        common::metric(
            &metrics,
            "mailzone_transfers_total{result=\"ok\",type=\"axfr\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        common::metric(
            &metrics,
            "mailzone_transfers_total{result=\"refused\",type=\"axfr\"}"
        ),
        1.0
    );
    assert!(common::metric(&metrics, "mailzone_transfer_records_total") > 20.0);
}

#[test]
fn two_hundred_concurrent_axfrs_do_not_slow_udp_answers() {
    let big = common::big_zone();
    let d = TestDaemon::start_tuned(
        &[("big.test.zone", &big), ("example.test.zone", EXAMPLE_ZONE)],
        |c| {
            allow_transfers(c);
            // One secondary address opening 200 connections at once.
            c.dns.tcp_max_per_address = 256;
        },
    );
    let s = signer(&secret(&d), KEY);
    // UDP latency with nothing else going on.
    let idle = udp_latencies(d.dns, 200, || true);
    let server = d.dns;
    let expected = zone_file_records("example.test.", EXAMPLE_ZONE).len() + 1;
    // 200 requests at once, each read by its own client; one of them for the big zone.
    let workers: Vec<_> = (0..200)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                let zone = if i == 0 { "big.test." } else { "example.test." };
                let (req, _) = request(zone, RecordType::AXFR, None, Some((&s, now())));
                records(&transfer(server, "127.0.0.1", &req)).len()
            })
        })
        .collect();
    // Queries keep going for as long as any transfer runs.
    let started = Instant::now();
    let busy = udp_latencies(d.dns, 200, || {
        workers.iter().all(|w| w.is_finished()) || started.elapsed() > Duration::from_secs(60)
    });
    let took = started.elapsed();
    let counts: Vec<usize> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(counts[0], zone_file_records("big.test.", &big).len() + 1);
    assert!(counts[1..].iter().all(|n| *n == expected), "{counts:?}");
    let p = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    eprintln!(
        "UDP latency idle p50 {:?} p99 {:?}; during 200 transfers ({took:?}, {} queries) p50 {:?} p99 {:?}",
        p(&idle, 0.5),
        p(&idle, 0.99),
        busy.len(),
        p(&busy, 0.5),
        p(&busy, 0.99)
    );
    // Every query answered (udp_latencies panics otherwise), and the median within a
    // normal time for a loaded 2-core box.
    assert!(
        p(&busy, 0.5) < Duration::from_millis(50),
        "{:?}",
        p(&busy, 0.5)
    );
    assert!(
        p(&busy, 0.99) < Duration::from_millis(500),
        "{:?}",
        p(&busy, 0.99)
    );
}

/// Sorted latencies of at least `n` UDP SOA queries, and more until `done()`; each must be
/// answered within 2 s.
fn udp_latencies(server: SocketAddr, n: usize, done: impl Fn() -> bool) -> Vec<Duration> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let query = common::query_message("example.test.", RecordType::SOA, &Default::default())
        .to_vec()
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n || !done() {
        let t = Instant::now();
        socket.send_to(&query, server).unwrap();
        socket
            .recv_from(&mut buf)
            .expect("a UDP query went unanswered");
        out.push(t.elapsed());
    }
    out.sort();
    out
}
