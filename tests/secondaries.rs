//! Real secondaries following mailzone: Knot (knotd 3.2) and NSD (4.6) on loopback
//! addresses of their own, transferring with TSIG, and answering exactly as we do. A
//! secondary with the wrong secret gets nothing. A change made through the API reaches both by
//! NOTIFY and an incremental transfer within a second, and a zone larger than one 64 KB
//! message reaches them whole.

mod common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use serde_json::json;

use hickory_proto::rr::Name;
use mailzone::config::{Config, SecondaryConfig, TsigKeyConfig, ZoneSelection};

use common::secondary::{Key, Secondary, free_port, kdig_short};
use common::{EXAMPLE_ZONE, TOKEN, TestDaemon};

const KEY: &str = "xfr-sec";
const SERIAL: u32 = 2026112301;

/// The primary: the example zone, transferable by 127.0.0.2–127.0.0.9 with the key.
fn primary() -> (TestDaemon, Key) {
    primary_serving(&[("example.test.zone", EXAMPLE_ZONE)], &[])
}

/// A primary serving these zone files, transferable by 127.0.0.2–127.0.0.9 with the key;
/// the secondaries at `listening` (ip, port) are also sent NOTIFY there.
fn primary_serving(zones: &[(&str, &str)], listening: &[(&str, u16)]) -> (TestDaemon, Key) {
    let d = TestDaemon::start_tuned(zones, |c: &mut Config| {
        c.transfer.keys = vec![TsigKeyConfig {
            name: KEY.into(),
            algorithm: Default::default(),
            update: None,
        }];
        c.transfer.secondaries = (2..=9)
            .map(|i| SecondaryConfig {
                address: match listening
                    .iter()
                    .find(|(ip, _)| *ip == format!("127.0.0.{i}"))
                {
                    Some((ip, port)) => format!("{ip}:{port}"),
                    None => format!("127.0.0.{i}"),
                },
                key: Some(KEY.into()),
                zones: ZoneSelection::All,
            })
            .collect();
    });
    let secret = std::fs::read_to_string(d.dir.path().join(format!("keys/tsig/{KEY}.key")))
        .unwrap()
        .trim()
        .to_string();
    let key = Key {
        name: KEY.into(),
        algorithm: "hmac-sha256".into(),
        secret,
    };
    (d, key)
}

/// Every (name, type) of the zone file.
fn questions() -> Vec<(String, String)> {
    let zone = mailzone::zone::Zone::from_master_text(
        &Name::from_str("example.test.").unwrap(),
        EXAMPLE_ZONE,
    )
    .unwrap();
    let mut q: Vec<(String, String)> = zone
        .view()
        .records()
        .map(|r| (r.name.to_string(), r.record_type().to_string()))
        .collect();
    q.sort();
    q.dedup();
    q
}

fn assert_answers_equal(d: &TestDaemon, s: &Secondary) {
    let questions = questions();
    assert!(questions.len() > 10);
    for (name, qtype) in questions {
        let ours = kdig_short(d.dns, &name, &qtype);
        let theirs = kdig_short(s.addr, &name, &qtype);
        assert!(!ours.is_empty(), "{name} {qtype}");
        assert_eq!(ours, theirs, "{name} {qtype}");
    }
}

fn wrong(key: &Key) -> Key {
    Key {
        secret: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        ..key.clone()
    }
}

#[test]
fn knot_transfers_the_zone_with_tsig_and_answers_like_us() {
    let (d, key) = primary();
    let knot = Secondary::knot("127.0.0.2", d.dns, &key, &["example.test."]);
    assert!(
        knot.wait_for_serial("example.test.", SERIAL, Duration::from_secs(20)),
        "knot never served our serial:\n{}",
        knot.log()
    );
    assert_answers_equal(&d, &knot);
}

#[test]
fn nsd_transfers_the_zone_with_tsig_and_answers_like_us() {
    let (d, key) = primary();
    let nsd = Secondary::nsd("127.0.0.3", d.dns, &key, &["example.test."]);
    assert!(
        nsd.wait_for_serial("example.test.", SERIAL, Duration::from_secs(20)),
        "nsd never served our serial:\n{}",
        nsd.log()
    );
    assert_answers_equal(&d, &nsd);
}

#[test]
fn knot_and_nsd_with_the_wrong_secret_get_nothing() {
    let (d, key) = primary();
    let bad = wrong(&key);
    let knot = Secondary::knot("127.0.0.4", d.dns, &bad, &["example.test."]);
    let nsd = Secondary::nsd("127.0.0.5", d.dns, &bad, &["example.test."]);
    for s in [&knot, &nsd] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let log = s.log().to_lowercase();
            if log.contains("tsig") || log.contains("badsig") || log.contains("bad signature") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = s.log().to_lowercase();
        assert!(
            log.contains("tsig") || log.contains("badsig") || log.contains("bad signature"),
            "no TSIG error logged:\n{log}"
        );
        assert_eq!(s.serial("example.test."), None, "{}", s.log());
    }
    let metrics = d.daemon().shared().metrics.render();
    assert_eq!(
        common::metric(
            &metrics,
            "mailzone_transfers_total{result=\"ok\",type=\"axfr\"}"
        ) + common::metric(
            &metrics,
            "mailzone_transfers_total{result=\"ok\",type=\"ixfr\"}"
        ),
        0.0,
        "{metrics}"
    );
}

/// Replaces the TXT at note.example.test through the API; returns the zone's new serial.
fn change(d: &TestDaemon, text: &str) -> u32 {
    let body = json!({"operations": [
        {"op": "replace", "name": "note", "type": "TXT", "ttl": 60, "records": [format!("\"{text}\"")]}
    ]});
    let (status, reply) = common::api(d.http, "PATCH", "/v1/zones/example.test/records", &body);
    assert_eq!(status, 200, "{reply}");
    let (status, zone) = common::http(d.http, "GET", "/v1/zones/example.test", Some(TOKEN), None);
    assert_eq!(status, 200, "{zone}");
    common::json(&zone)["serial"].as_u64().unwrap() as u32
}

#[test]
fn knot_and_nsd_follow_an_api_change_by_notify_and_ixfr_within_a_second() {
    let (knot_port, nsd_port) = (free_port("127.0.0.6"), free_port("127.0.0.7"));
    let (d, key) = primary_serving(
        &[("example.test.zone", EXAMPLE_ZONE)],
        &[("127.0.0.6", knot_port), ("127.0.0.7", nsd_port)],
    );
    let knot = Secondary::knot_at("127.0.0.6", knot_port, d.dns, &key, &["example.test."]);
    let nsd = Secondary::nsd_at("127.0.0.7", nsd_port, d.dns, &key, &["example.test."]);
    for s in [&knot, &nsd] {
        assert!(
            s.wait_for_serial("example.test.", SERIAL, Duration::from_secs(20)),
            "the first transfer never came:\n{}",
            s.log()
        );
    }
    // The start NOTIFY went before they listened; its retry must have been acknowledged, or
    // the first change would ride on that retry's backoff rather than go at once.
    wait_for_acks(&d, 2);
    let ixfrs_before = ixfrs_served(&d);
    let mut slowest = [Duration::ZERO; 2];
    for round in 0..3 {
        // One change at a time, as an operator makes them (bursts coalesce by design).
        std::thread::sleep(Duration::from_millis(1500));
        let asked = Instant::now();
        let serial = change(&d, &format!("round {round}"));
        // Both polled side by side, so that one's delay is not charged to the other.
        let mut took: [Option<Duration>; 2] = [None; 2];
        while took.iter().any(Option::is_none) && asked.elapsed() < Duration::from_secs(5) {
            for (k, s) in [&knot, &nsd].into_iter().enumerate() {
                if took[k].is_none() && s.serial("example.test.") == Some(serial) {
                    took[k] = Some(asked.elapsed());
                }
            }
        }
        eprintln!("round {round}: Knot {:?}, NSD {:?}", took[0], took[1]);
        for (k, s) in [&knot, &nsd].into_iter().enumerate() {
            // From the API request (write and fsync included) to the secondary serving it;
            // no SOA refresh timer can help: the zone's refresh is an hour.
            let t = took[k].unwrap_or(Duration::MAX);
            assert!(
                t < Duration::from_secs(1),
                "serial {serial} not served within a second of the API change ({t:?}):\n{}",
                s.log()
            );
            slowest[k] = slowest[k].max(t);
            assert_eq!(
                kdig_short(s.addr, "note.example.test.", "TXT"),
                format!("\"round {round}\"")
            );
        }
    }
    eprintln!(
        "slowest API change to the secondary serving it: Knot {:?}, NSD {:?}",
        slowest[0], slowest[1]
    );
    // Incremental, by Knot's own account ("IXFR, incoming") and by ours: every change went to
    // each secondary as an IXFR, none as a whole zone.
    let log = knot.log();
    assert!(
        log.lines()
            .any(|l| l.contains("IXFR, incoming") && l.contains("finished")),
        "Knot logged no incoming IXFR:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("AXFR, incoming") && l.contains("serial 2026112301 ->")),
        "Knot fell back to AXFR:\n{log}"
    );
    assert!(
        ixfrs_served(&d) - ixfrs_before >= 6.0,
        "fewer IXFRs served than changes x secondaries: {}",
        d.daemon().shared().metrics.render()
    );
    // NSD does not name the transfer type in its log; our status does, per secondary.
    let (_, zone) = common::http(d.http, "GET", "/v1/zones/example.test", Some(TOKEN), None);
    let v = common::json(&zone);
    for ip in ["127.0.0.6", "127.0.0.7"] {
        let s = v["secondaries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["address"].as_str().unwrap().starts_with(ip))
            .unwrap();
        assert_eq!(s["last_transfer_kind"], json!("ixfr"), "{zone}");
        assert_eq!(s["last_transferred_serial"], v["serial"], "{zone}");
    }
}

/// Waits until `n` secondaries have acknowledged a NOTIFY of the zone's current serial.
fn wait_for_acks(d: &TestDaemon, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, zone) = common::http(d.http, "GET", "/v1/zones/example.test", Some(TOKEN), None);
        let v = common::json(&zone);
        let acked = v["secondaries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["last_notify_acked"]["serial"] == v["serial"])
            .count();
        if acked >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no acknowledgements: {zone}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ixfrs_served(d: &TestDaemon) -> f64 {
    common::metric(
        &d.daemon().shared().metrics.render(),
        "mailzone_transfers_total{result=\"ok\",type=\"ixfr\"}",
    )
}

/// The answer section of a reply, one record per line, sorted.
fn answers(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.to_string()).collect();
    v.sort();
    v
}

#[test]
fn knot_and_nsd_receive_a_zone_larger_than_one_message_whole() {
    let big = common::big_zone();
    let (d, key) = primary_serving(&[("big.test.zone", &big)], &[]);
    let knot = Secondary::knot("127.0.0.8", d.dns, &key, &["big.test."]);
    let nsd = Secondary::nsd("127.0.0.9", d.dns, &key, &["big.test."]);
    for s in [&knot, &nsd] {
        assert!(
            s.wait_for_serial("big.test.", 7, Duration::from_secs(30)),
            "the big zone never arrived:\n{}",
            s.log()
        );
        // The 2,000-record set (32 KB) over TCP, record for record.
        let ours = answers(&common::tcp(d.dns, "pool.big.test.", RecordType::A));
        assert_eq!(ours.len(), 2000);
        assert_eq!(
            answers(&common::tcp(s.addr, "pool.big.test.", RecordType::A)),
            ours
        );
        // Every one of the 2,000 TXT names.
        for i in 0..2000 {
            let name = format!("host-{i}.big.test.");
            let ours = answers(&common::udp(d.dns, &name, RecordType::TXT));
            assert_eq!(ours.len(), 1, "{name}");
            assert_eq!(
                answers(&common::udp(s.addr, &name, RecordType::TXT)),
                ours,
                "{name}"
            );
        }
    }
}
