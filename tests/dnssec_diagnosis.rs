//! The diagnosis `dnssec` check on the parent's side of the chain (issue 12, point 6): the
//! DS set counts only when the parent's own keys sign it, as a validator takes it.
//!
//! The world, all on loopback, one /24 of 127.0.0.0/8 per test: the parent zone
//! `parent.test` served by two mailzone instances (`.1`, `.2`, same port), signed with one
//! shared key or not at all; the daemon under test (`.3`, same port) serving
//! `shop.parent.test` signed; and a "resolver" (`.4`), one more mailzone serving unsigned
//! copies of both zones so that discovery (NS and addresses) works. The test acts as the
//! registrar: it puts the DS records into the parent on both parent servers through their
//! API (a signed parent signs them on the change).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::replicas::start_signed_replicas_tuned;
use common::*;
use mailzone::config::Config;
use mailzone::dnssec::Denial;
use serde_json::{Value, json};

const DOMAIN: &str = "shop.parent.test";

fn parent_zone(net: u8) -> String {
    format!(
        "$ORIGIN parent.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\n@ NS ns2\n\
         ns1 A 127.0.{net}.1\nns2 A 127.0.{net}.2\nshop NS ns.shop\nns.shop A 127.0.{net}.3\n"
    )
}

fn child_zone(net: u8) -> String {
    format!(
        "$ORIGIN shop.parent.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\n\
         ns A 127.0.{net}.3\n"
    )
}

struct World {
    parents: Vec<TestDaemon>,
    /// The resolver of discovery; kept running.
    _resolver: TestDaemon,
    d: TestDaemon,
}

fn start_at(addr: String, zones: &[(&str, &str)], tune: impl FnOnce(&mut Config)) -> TestDaemon {
    let addr: SocketAddr = addr.parse().unwrap();
    TestDaemon::start_tuned(zones, move |c| {
        c.dns.listen = vec![addr];
        tune(c);
    })
}

/// The world of network `127.0.net.0/24`, the parent signed (one key on both servers) or not.
fn world(net: u8, parent_signed: bool) -> World {
    world_with(net, parent_signed, Denial::Nsec)
}

/// [`world`], every signed zone (parent and domain) denying with `denial`.
fn world_with(net: u8, parent_signed: bool, denial: Denial) -> World {
    let port = common::secondary::free_port(&format!("127.0.{net}.1"));
    let parent = parent_zone(net);
    let child = child_zone(net);
    let parent_addrs: Vec<SocketAddr> = (1..=2)
        .map(|i| format!("127.0.{net}.{i}:{port}").parse().unwrap())
        .collect();
    let parents = if parent_signed {
        start_signed_replicas_tuned(
            &parent_addrs,
            &[("parent.test.zone", &parent)],
            "parent.test",
            |c| c.dnssec.denial = denial,
        )
    } else {
        parent_addrs
            .iter()
            .map(|a| start_at(a.to_string(), &[("parent.test.zone", &parent)], |_| {}))
            .collect()
    };
    let resolver = start_at(
        format!("127.0.{net}.4:0"),
        &[
            ("parent.test.zone", &parent),
            ("shop.parent.test.zone", &child),
        ],
        |_| {},
    );
    let resolver_addr = resolver.dns;
    let d = start_at(
        format!("127.0.{net}.3:{port}"),
        &[("shop.parent.test.zone", &child)],
        move |c| {
            c.dnssec.enabled = true;
            c.dnssec.denial = denial;
            c.diagnosis.resolver = Some(resolver_addr);
            c.diagnosis.port = port;
            c.diagnosis.timeout_ms = 300;
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
    }
}

impl World {
    /// The DS records the daemon under test gives for the registrar (`tag alg 2 HEX`).
    fn ds_from_api(&self) -> Vec<String> {
        common::replicas::ds_from_api(&self.d, DOMAIN)
    }

    /// The registrar: the DS set of `shop` on both parent servers.
    fn put_ds(&self, ds: &[String]) {
        let parents: Vec<&TestDaemon> = self.parents.iter().collect();
        common::replicas::put_ds(&parents, DOMAIN, ds, 300);
    }

    /// Deletes an rrset of the domain's zone through the API of the daemon under test.
    fn delete(&self, name: &str, rtype: &str) {
        let op = json!({"op": "delete", "name": name, "type": rtype});
        let body = json!({ "operations": [op] }).to_string();
        let (status, text) = http(
            self.d.http,
            "PATCH",
            &format!("/v1/zones/{DOMAIN}/records"),
            Some(TOKEN),
            Some(&body),
        );
        assert_eq!(status, 200, "{text}");
    }

    /// A fresh diagnosis through the API.
    fn diagnose(&self) -> Value {
        common::replicas::diagnose(&self.d, DOMAIN)
    }

    /// The `dnssec` findings of a fresh diagnosis.
    fn dnssec_findings(&self) -> Vec<Value> {
        common::replicas::dnssec_findings(&self.diagnose())
    }

    fn finding(&self, code: &str) -> Value {
        common::replicas::finding_among(&self.dnssec_findings(), code)
    }

    /// The `dnssec` findings of the stored verdict, as `GET /v1/domains/{d}` gives them.
    fn stored_findings(&self) -> Vec<Value> {
        let (status, text) = http(
            self.d.http,
            "GET",
            &format!("/v1/domains/{DOMAIN}"),
            Some(TOKEN),
            None,
        );
        assert_eq!(status, 200, "{text}");
        let v = json(&text);
        let checks = v["associations"][0]["diagnosis"]["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("no checks: {v}"));
        checks
            .iter()
            .filter(|f| f["check"] == "dnssec")
            .cloned()
            .collect()
    }

    fn status_page(&self) -> String {
        http(self.d.http, "GET", "/", Some(TOKEN), None).1
    }
}

#[test]
fn a_signed_child_under_an_unsigned_parent_is_insecure_not_secure() {
    let w = world(61, false);
    // The DS matches the served key and every signature of the child validates: all that
    // is missing is the parent's signature over the DS.
    w.put_ds(&w.ds_from_api());
    let f = w.finding("dnssec.parent_unsigned");
    assert_eq!(f["severity"], "warning", "{f}");
    let message = f["message"].as_str().unwrap();
    assert!(message.starts_with("insecure"), "{f}");
    assert!(message.contains("itself is not signed"), "{f}");
    let all = w.dnssec_findings();
    assert!(!all.iter().any(|f| f["code"] == "dnssec.ok"), "{all:?}");
    assert_ne!(w.diagnose()["overall"], "ok");
    // The stored verdict and the status page show it, not green.
    assert!(
        w.stored_findings()
            .iter()
            .any(|f| f["code"] == "dnssec.parent_unsigned"),
        "{:?}",
        w.stored_findings()
    );
    let page = w.status_page();
    assert!(page.contains("data-check=\"dnssec\""), "{page}");
    assert!(
        !page.contains("class=\"box green\" data-check=\"dnssec\""),
        "{page}"
    );
}

#[test]
fn a_ds_whose_parent_signature_fails_is_bogus_and_names_the_parent_servers() {
    let w = world(62, true);
    // The second parent server's signer runs 30 days ahead: what it signs from now on is
    // not valid yet for a validator on the real clock, among it the DS set put next.
    w.parents[1].daemon().shared().advance_clock(30 * 86400);
    w.put_ds(&w.ds_from_api());
    let bad = "127.0.62.2";
    let good = "127.0.62.1";
    let deadline = Instant::now() + Duration::from_secs(10);
    let f = loop {
        let all = w.dnssec_findings();
        if let Some(f) = all.iter().find(|f| f["code"] == "dnssec.parent_bogus") {
            break f.clone();
        }
        assert!(Instant::now() < deadline, "never bogus: {all:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(f["severity"], "error", "{f}");
    let message = f["message"].as_str().unwrap();
    assert!(message.starts_with("bogus"), "{f}");
    assert!(message.contains(bad) && !message.contains(good), "{f}");
    let seen = f["seen"].as_object().unwrap();
    assert!(seen.keys().all(|k| k.contains(bad)), "{f}");
    assert!(f["seen"].to_string().contains("not valid before"), "{f}");
    assert_eq!(w.diagnose()["overall"], "error");
    assert!(
        w.stored_findings()
            .iter()
            .any(|f| f["code"] == "dnssec.parent_bogus")
    );
    assert!(
        w.status_page()
            .contains("class=\"box red\" data-check=\"dnssec\""),
        "{}",
        w.status_page()
    );
}

#[test]
fn a_child_under_a_signed_parent_with_a_signed_ds_is_secure_and_says_where_the_chain_starts() {
    let w = world(63, true);
    w.put_ds(&w.ds_from_api());
    let f = w.finding("dnssec.ok");
    assert_eq!(f["status"], "ok");
    let message = f["message"].as_str().unwrap();
    assert!(message.starts_with("secure"), "{f}");
    assert!(
        message.contains("Chain checked from the keys of parent.test. down"),
        "{f}"
    );
    assert!(message.contains("no trust anchor configured"), "{f}");
    // The parent key named is the one both parent servers serve.
    let parent_key = dig(
        w.parents[0].dns,
        &[
            "+norec",
            "+noall",
            "+answer",
            "+dnssec",
            "shop.parent.test",
            "DS",
        ],
    );
    let tag = parent_key
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"RRSIG")).then(|| f[10].to_string())
        })
        .unwrap_or_else(|| panic!("the parent does not sign the DS: {parent_key}"));
    assert!(message.contains(&format!("signed by its key {tag}")), "{f}");
    assert_eq!(w.dnssec_findings().len(), 1);
    assert!(
        w.status_page()
            .contains("class=\"box green\" data-check=\"dnssec\""),
        "{}",
        w.status_page()
    );
}

/// A record the check asks for is absent: the domain's signed proof of it is checked, and
/// the secure finding says what is proven absent.
fn an_absent_record_is_proven_absent_with(net: u8, denial: Denial, kind: &str) {
    let w = world_with(net, true, denial);
    w.put_ds(&w.ds_from_api());
    w.delete(&format!("_dmarc.{DOMAIN}."), "TXT");
    let f = w.finding("dnssec.ok");
    let message = f["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("proven absent: no _dmarc.{DOMAIN} TXT ({kind})")),
        "{f}"
    );
}

#[test]
fn an_absent_dmarc_record_is_proven_absent_by_the_domain_nsec() {
    an_absent_record_is_proven_absent_with(64, Denial::Nsec, "NSEC");
}

#[test]
fn an_absent_dmarc_record_is_proven_absent_by_the_domain_nsec3() {
    an_absent_record_is_proven_absent_with(65, Denial::Nsec3, "NSEC3");
}

#[test]
fn no_ds_at_an_nsec3_signed_parent_is_insecure_with_its_proof_checked() {
    // The parent's NSEC3 proof of no DS at the delegation holds: insecure (the DS to add is
    // the fix), not bogus.
    let w = world_with(66, true, Denial::Nsec3);
    let f = w.finding("dnssec.no_ds");
    assert!(
        f["message"].as_str().unwrap().starts_with("insecure"),
        "{f}"
    );
}
