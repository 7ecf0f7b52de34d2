//! Real secondaries following mailzone: Knot (knotd 3.2) and NSD (4.6) on loopback
//! addresses of their own, transferring with TSIG, and answering exactly as we do. A
//! secondary with the wrong secret gets nothing.

mod common;

use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::Name;
use mailzone::config::{Config, SecondaryConfig, TsigKeyConfig, ZoneSelection};

use common::secondary::{Key, Secondary, kdig_short};
use common::{EXAMPLE_ZONE, TestDaemon};

const KEY: &str = "xfr-sec";
const SERIAL: u32 = 2026112301;

/// The primary: the example zone, transferable by 127.0.0.2–127.0.0.7 with the key.
fn primary() -> (TestDaemon, Key) {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c: &mut Config| {
        c.transfer.keys = vec![TsigKeyConfig {
            name: KEY.into(),
            algorithm: Default::default(),
            update: None,
        }];
        c.transfer.secondaries = (2..=7)
            .map(|i| SecondaryConfig {
                address: format!("127.0.0.{i}"),
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
