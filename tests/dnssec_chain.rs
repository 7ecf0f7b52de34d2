//! The chain of trust as the world sees it (issue 12, points 5 and 6): the diagnosis
//! `dnssec` check, CSK rollover by double DS and unsigning, each with a real parent.
//!
//! The world, all on loopback, one /24 of 127.0.0.0/8 per test: the parent zone
//! `parent.test` served by two mailzone instances (`.1`, `.2`, same port), the daemon under
//! test (`.3`, same port) serving `shop.parent.test` signed, and a "resolver" (`.4`) that is
//! one more mailzone serving copies of both zones, so that discovery (NS and addresses)
//! works; `diagnosis.resolver` points at it. The test acts as the registrar: it puts DS
//! records into the parent on both parent servers through their API.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use mailzone::config::Config;
use serde_json::{Value, json};

const DOMAIN: &str = "shop.parent.test";

fn parent_zone(net: u8, second_child: bool) -> String {
    let mut z = format!(
        "$ORIGIN parent.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\n@ NS ns2\n\
         ns1 A 127.0.{net}.1\nns2 A 127.0.{net}.2\nshop NS ns.shop\nns.shop A 127.0.{net}.3\n"
    );
    if second_child {
        z.push_str(&format!("shop NS ns2.shop\nns2.shop A 127.0.{net}.5\n"));
    }
    z
}

fn child_zone(net: u8, second_child: bool) -> String {
    let mut z = format!(
        "$ORIGIN shop.parent.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\n\
         ns A 127.0.{net}.3\n"
    );
    if second_child {
        z.push_str(&format!("@ NS ns2\nns2 A 127.0.{net}.5\n"));
    }
    z
}

struct World {
    parents: Vec<TestDaemon>,
    /// The resolver of discovery; kept running.
    _resolver: TestDaemon,
    d: TestDaemon,
    /// A second, unsigned nameserver of the domain, when asked for.
    _second: Option<TestDaemon>,
}

fn start_at(addr: String, zones: &[(&str, &str)], tune: impl FnOnce(&mut Config)) -> TestDaemon {
    let addr: SocketAddr = addr.parse().unwrap();
    TestDaemon::start_tuned(zones, move |c| {
        c.dns.listen = vec![addr];
        tune(c);
    })
}

/// The world of network `127.0.net.0/24`; `tune` adjusts the daemon under test.
fn world(net: u8, second_child: bool, tune: impl FnOnce(&mut Config)) -> World {
    let port = common::secondary::free_port(&format!("127.0.{net}.1"));
    let parent = parent_zone(net, second_child);
    let child = child_zone(net, second_child);
    let parents: Vec<TestDaemon> = (1..=2)
        .map(|i| {
            start_at(
                format!("127.0.{net}.{i}:{port}"),
                &[("parent.test.zone", &parent)],
                |_| {},
            )
        })
        .collect();
    let resolver = start_at(
        format!("127.0.{net}.4:0"),
        &[
            ("parent.test.zone", &parent),
            ("shop.parent.test.zone", &child),
        ],
        |_| {},
    );
    let second = second_child.then(|| {
        start_at(
            format!("127.0.{net}.5:{port}"),
            &[("shop.parent.test.zone", &child)],
            |_| {},
        )
    });
    let resolver_addr = resolver.dns;
    let d = start_at(
        format!("127.0.{net}.3:{port}"),
        &[("shop.parent.test.zone", &child)],
        move |c| {
            c.dnssec.enabled = true;
            c.diagnosis.resolver = Some(resolver_addr);
            c.diagnosis.port = port;
            c.diagnosis.timeout_ms = 300;
            tune(c);
        },
    );
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/domains",
        &json!({"domain": DOMAIN, "platform": "pro1", "mode": "authoritative"}),
    );
    assert_eq!(status, 201, "{body}");
    World {
        parents,
        _resolver: resolver,
        d,
        _second: second,
    }
}

impl World {
    /// The DS records the daemon under test gives for the registrar (`tag alg 2 HEX`).
    fn ds_from_api(&self) -> Vec<String> {
        let (status, body) = http(
            self.d.http,
            "GET",
            &format!("/v1/zones/{DOMAIN}./dnssec"),
            Some(TOKEN),
            None,
        );
        assert_eq!(status, 200, "{body}");
        json(&body)["ds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let l = l.as_str().unwrap();
                l.split(" IN DS ").nth(1).unwrap().to_string()
            })
            .collect()
    }

    /// The registrar: the DS set of `shop` on the given parent servers (empty: none).
    fn put_ds_on(&self, which: &[usize], ds: &[String], ttl: u32) {
        for &i in which {
            let op = if ds.is_empty() {
                json!({"op": "delete", "name": format!("{DOMAIN}."), "type": "DS"})
            } else {
                json!({"op": "replace", "name": format!("{DOMAIN}."), "type": "DS", "ttl": ttl, "records": ds})
            };
            let body = json!({ "operations": [op] }).to_string();
            let (status, text) = http(
                self.parents[i].http,
                "PATCH",
                "/v1/zones/parent.test/records",
                Some(TOKEN),
                Some(&body),
            );
            assert_eq!(status, 200, "{text}");
        }
    }

    fn put_ds(&self, ds: &[String], ttl: u32) {
        self.put_ds_on(&[0, 1], ds, ttl);
    }

    fn diagnose(&self) -> Value {
        let (status, text) = http(
            self.d.http,
            "POST",
            &format!("/v1/domains/{DOMAIN}/diagnose"),
            Some(TOKEN),
            None,
        );
        assert_eq!(status, 200, "{text}");
        json(&text)
    }

    /// The `dnssec` findings of a fresh diagnosis.
    fn dnssec_findings(&self) -> Vec<Value> {
        let v = self.diagnose();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "dnssec")
            .cloned()
            .collect()
    }

    fn finding(&self, code: &str) -> Value {
        let all = self.dnssec_findings();
        all.iter()
            .find(|f| f["code"] == code)
            .cloned()
            .unwrap_or_else(|| panic!("no {code}: {}", serde_json::to_string_pretty(&all).unwrap()))
    }
}

#[test]
fn the_dnssec_check_says_secure_when_the_parent_ds_matches_and_signatures_validate() {
    let w = world(41, false, |_| {});
    w.put_ds(&w.ds_from_api(), 300);
    let f = w.finding("dnssec.ok");
    assert_eq!(f["status"], "ok");
    assert!(f["message"].as_str().unwrap().starts_with("secure"), "{f}");
    assert!(
        f["message"].as_str().unwrap().contains("all 1 nameservers"),
        "{f}"
    );
    let all = w.dnssec_findings();
    assert_eq!(all.len(), 1, "{all:?}");
    // One more box on the status page, green, and one more metric series.
    let (_, page) = http(w.d.http, "GET", "/", Some(TOKEN), None);
    assert!(
        page.contains("class=\"box green\" data-check=\"dnssec\""),
        "{page}"
    );
    let (_, metrics) = http(w.d.http, "GET", "/metrics", Some(TOKEN), None);
    assert!(
        metrics.contains(&format!(
            "mailzone_diagnosis_check_status{{check=\"dnssec\",domain=\"{DOMAIN}.\"}} 0"
        )),
        "{metrics}"
    );
}

#[test]
fn a_signed_zone_without_ds_at_the_parent_is_a_warning_with_the_ds_to_add_never_green() {
    let w = world(42, false, |_| {});
    let f = w.finding("dnssec.no_ds");
    assert_eq!(f["severity"], "warning");
    assert!(
        f["message"].as_str().unwrap().starts_with("insecure"),
        "{f}"
    );
    let ds = w.ds_from_api();
    let fix = f["fix"].to_string();
    assert!(fix.contains(&ds[0]), "the fix gives the DS: {fix}");
    let v = w.diagnose();
    assert_ne!(v["overall"], "ok", "{v}");
    let (_, page) = http(w.d.http, "GET", "/", Some(TOKEN), None);
    assert!(
        !page.contains("class=\"box green\" data-check=\"dnssec\""),
        "{page}"
    );
}

#[test]
fn an_unsigned_zone_without_ds_is_insecure_and_not_red() {
    let w = world(43, false, |c| c.dnssec.enabled = false);
    let f = w.finding("dnssec.insecure");
    assert_eq!(f["status"], "ok");
    assert!(
        f["message"].as_str().unwrap().starts_with("insecure"),
        "{f}"
    );
    let (_, page) = http(w.d.http, "GET", "/", Some(TOKEN), None);
    assert!(
        page.contains("class=\"box grey\" data-check=\"dnssec\" title=\"insecure"),
        "{page}"
    );
}

#[test]
fn a_ds_matching_no_served_key_is_bogus_with_the_right_ds_as_fix() {
    let w = world(44, false, |_| {});
    let good = w.ds_from_api();
    // The registrar has a DS for some other key (digest changed).
    let mut bad = good[0].clone();
    let last = bad.pop().unwrap();
    bad.push(if last == '0' { '1' } else { '0' });
    w.put_ds(std::slice::from_ref(&bad), 300);
    let f = w.finding("dnssec.ds_mismatch");
    assert_eq!(f["severity"], "error");
    assert!(f["message"].as_str().unwrap().starts_with("bogus"), "{f}");
    assert!(f["fix"].to_string().contains(&good[0]), "{f}");
    assert!(f["seen"].to_string().contains(&bad), "{f}");
    assert_eq!(w.diagnose()["overall"], "error");
}

#[test]
fn a_ds_at_only_one_parent_server_is_reported() {
    let w = world(45, false, |_| {});
    w.put_ds_on(&[0], &w.ds_from_api(), 300);
    let f = w.finding("dnssec.ds_partial");
    assert!(f["message"].as_str().unwrap().contains("1 of 2"), "{f}");
}

#[test]
fn a_nameserver_serving_the_zone_unsigned_while_the_parent_has_a_ds_is_bogus() {
    let w = world(46, true, |_| {});
    w.put_ds(&w.ds_from_api(), 300);
    let f = w.finding("dnssec.dnskey_missing");
    assert_eq!(f["severity"], "error");
    let seen = f["seen"].as_object().unwrap();
    assert_eq!(seen.len(), 1, "{f}");
    assert!(seen.keys().next().unwrap().contains("127.0.46.5"), "{f}");
}

#[test]
fn signatures_not_valid_at_the_time_of_the_check_are_bogus() {
    let w = world(47, false, |_| {});
    w.put_ds(&w.ds_from_api(), 300);
    assert_eq!(w.finding("dnssec.ok")["status"], "ok");
    // The signer's clock runs 30 days ahead: every signature it makes is not valid yet
    // (inception in the future) for a validator on the real clock.
    w.d.daemon().shared().advance_dnssec_clock(30 * 86400);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = w.dnssec_findings();
        if let Some(f) = all.iter().find(|f| f["code"] == "dnssec.bogus") {
            assert!(f["seen"].to_string().contains("not valid before"), "{f}");
            break;
        }
        assert!(Instant::now() < deadline, "never bogus: {all:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
