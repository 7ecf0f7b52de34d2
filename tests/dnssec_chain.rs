//! The chain of trust as the world sees it (issue 12, points 5 and 6): the diagnosis
//! `dnssec` check, CSK rollover by double DS and unsigning, each with a real parent.
//!
//! The world, all on loopback, one /24 of 127.0.0.0/8 per test: the parent zone
//! `parent.test` served signed by two mailzone instances (`.1`, `.2`, same port, same key),
//! the daemon under
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
    // The parent is signed (one key on both servers): a DS only counts when the parent's
    // keys sign it (tests/dnssec_diagnosis.rs has the unsigned and the bogus parent).
    let parent_addrs: Vec<SocketAddr> = (1..=2)
        .map(|i| format!("127.0.{net}.{i}:{port}").parse().unwrap())
        .collect();
    let parents = common::replicas::start_signed_replicas(
        &parent_addrs,
        &[("parent.test.zone", &parent)],
        "parent.test",
    );
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
        common::replicas::ds_from_api(&self.d, DOMAIN)
    }

    /// The registrar: the DS set of `shop` on the given parent servers (empty: none).
    fn put_ds_on(&self, which: &[usize], ds: &[String], ttl: u32) {
        let parents: Vec<&TestDaemon> = which.iter().map(|&i| &self.parents[i]).collect();
        common::replicas::put_ds(&parents, DOMAIN, ds, ttl);
    }

    fn put_ds(&self, ds: &[String], ttl: u32) {
        self.put_ds_on(&[0, 1], ds, ttl);
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
    w.d.daemon().shared().advance_clock(30 * 86400);
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

/// Stops the daemon under test and starts it again on the same folder, address and
/// configuration (the signing clock's test offset starts again from zero).
fn restart_in_place(d: TestDaemon) -> TestDaemon {
    let config = d.daemon().shared().config.clone();
    let mut d = d;
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);
    TestDaemon::run(dir, config)
}

/// The key tags of the RRSIGs over `name`/`rtype`, as dig shows them.
fn signing_tags(d: &TestDaemon, name: &str, rtype: &str) -> Vec<String> {
    dig(
        d.dns,
        &["+norec", "+dnssec", "+noall", "+answer", name, rtype],
    )
    .lines()
    .filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(3) == Some(&"RRSIG") && f.get(4) == Some(&rtype)).then(|| f[10].to_string())
    })
    .collect()
}

fn view(d: &TestDaemon) -> Value {
    let (status, body) = http(
        d.http,
        "GET",
        &format!("/v1/zones/{DOMAIN}./dnssec"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    json(&body)
}

fn key_with_tag(d: &TestDaemon, tag: &str) -> Value {
    let v = view(d);
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_tag"].as_u64().map(|t| t.to_string()).as_deref() == Some(tag))
        .cloned()
        .unwrap_or_else(|| panic!("no key {tag}: {v}"))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn short(d: &TestDaemon, rtype: &str) -> Vec<String> {
    let mut v: Vec<String> = dig(d.dns, &["+short", "+norec", DOMAIN, rtype])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn quick_rollover(c: &mut Config) {
    c.dnssec.dnskey_ttl = 1;
    c.dnssec.propagation_secs = 1;
    c.dnssec.parent_check_secs = 1;
}

#[test]
fn a_csk_rollover_retires_the_old_key_only_after_the_new_ds_is_at_every_parent_server_and_its_ttl_passed()
 {
    let w = world(48, false, quick_rollover);
    let old_ds = w.ds_from_api();
    assert_eq!(old_ds.len(), 1);
    w.put_ds(&old_ds, 300);
    let old_tag = signing_tags(&w.d, DOMAIN, "SOA");
    assert_eq!(old_tag.len(), 1);
    let old_tag = old_tag[0].clone();

    let (status, body) = api(
        w.d.http,
        "POST",
        &format!("/v1/zones/{DOMAIN}./dnssec/rollover"),
        &json!({"key": "csk"}),
    );
    assert_eq!(status, 200, "{body}");
    let new_tag = json(&body)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "published")
        .map(|k| k["key_tag"].to_string())
        .expect("a published key");
    // Published, named by CDS and CDNSKEY beside the old key; the old key still signs.
    assert_eq!(short(&w.d, "DNSKEY").len(), 2);
    let cds = short(&w.d, "CDS");
    assert_eq!(cds.len(), 2, "{cds:?}");
    assert!(
        cds.iter().any(|c| c.starts_with(&format!("{new_tag} "))),
        "{cds:?}"
    );
    assert_eq!(short(&w.d, "CDNSKEY").len(), 2);
    let both = w.ds_from_api();
    assert_eq!(both.len(), 2, "{both:?}");

    // The registrar puts the new DS beside the old on one parent server only: however long
    // we wait, the old key stays.
    w.put_ds_on(&[0], &both, 300);
    std::thread::sleep(Duration::from_millis(2500));
    w.d.daemon().shared().advance_clock(400);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(signing_tags(&w.d, DOMAIN, "SOA"), vec![old_tag.clone()]);
    let k = key_with_tag(&w.d, &new_tag);
    assert_eq!(k["state"], "published", "{k}");
    assert!(k["ds_seen_at"].is_null(), "{k}");

    // Now at every parent server: seen, kept in the state file, but the DS TTL (300 s) must
    // pass before the new key takes over.
    w.put_ds_on(&[1], &both, 300);
    wait_for("the new DS seen at every parent server", || {
        !key_with_tag(&w.d, &new_tag)["ds_seen_at"].is_null()
    });
    assert_eq!(key_with_tag(&w.d, &new_tag)["ds_ttl"], 300);
    assert_eq!(signing_tags(&w.d, DOMAIN, "SOA"), vec![old_tag.clone()]);
    let state_file = w.d.zones_dir().join(format!("dnssec/{DOMAIN}.yaml"));
    let state = std::fs::read_to_string(&state_file).unwrap();
    assert!(state.contains("ds_seen_at:"), "{state}");

    // A restart keeps what was seen (the test clock starts again from zero).
    let World {
        parents,
        _resolver,
        d,
        _second,
    } = w;
    let d = restart_in_place(d);
    let w = World {
        parents,
        _resolver,
        d,
        _second,
    };
    assert!(!key_with_tag(&w.d, &new_tag)["ds_seen_at"].is_null());
    assert_eq!(signing_tags(&w.d, DOMAIN, "SOA"), vec![old_tag.clone()]);
    // Seen at clock +400; the TTL passes at +701.
    w.d.daemon().shared().advance_clock(600);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(signing_tags(&w.d, DOMAIN, "SOA"), vec![old_tag.clone()]);
    w.d.daemon().shared().advance_clock(200);
    wait_for("the new key signing", || {
        signing_tags(&w.d, DOMAIN, "SOA") == vec![new_tag.clone()]
    });
    assert_eq!(signing_tags(&w.d, DOMAIN, "DNSKEY"), vec![new_tag.clone()]);
    // The old key is retired: still in the DNSKEY set, no longer in CDS.
    assert_eq!(short(&w.d, "DNSKEY").len(), 2);
    let cds = short(&w.d, "CDS");
    assert_eq!(cds.len(), 1, "{cds:?}");
    assert!(cds[0].starts_with(&format!("{new_tag} ")), "{cds:?}");
    assert_eq!(key_with_tag(&w.d, &old_tag)["state"], "retired");

    // The registrar follows the CDS; the chain is secure through the new key.
    let new_ds: Vec<String> = w.ds_from_api();
    assert_eq!(new_ds.len(), 1, "{new_ds:?}");
    assert!(new_ds[0].starts_with(&format!("{new_tag} ")));
    w.put_ds(&new_ds, 300);
    let f = w.finding("dnssec.ok");
    assert!(f["message"].as_str().unwrap().contains(&new_tag), "{f}");

    // Once the zone's largest TTL (the platform's records: 3600 s) has passed, the old key
    // leaves the zone and its file goes.
    w.d.daemon().shared().advance_clock(3700);
    wait_for("the old key gone", || short(&w.d, "DNSKEY").len() == 1);
    let files = std::fs::read_dir(w.d.dir.path().join(format!("keys/dnssec/{DOMAIN}")))
        .unwrap()
        .count();
    assert_eq!(files, 1, "the old key's file is deleted");
    assert_eq!(signing_tags(&w.d, DOMAIN, "DNSKEY"), vec![new_tag]);
}

#[test]
fn a_csk_rollover_is_refused_while_the_parent_cannot_be_asked() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.dnssec.enabled = true
    });
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/zones/example.test./dnssec/rollover",
        &json!({"key": "csk"}),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("the parent cannot be asked"), "{body}");
    assert_eq!(
        view_of(&d, "example.test.")["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn view_of(d: &TestDaemon, zone: &str) -> Value {
    let (_, body) = http(
        d.http,
        "GET",
        &format!("/v1/zones/{zone}/dnssec"),
        Some(TOKEN),
        None,
    );
    json(&body)
}

#[test]
fn unsigning_publishes_cds_delete_and_keeps_signing_until_no_parent_server_has_the_ds() {
    let w = world(49, false, quick_rollover);
    w.put_ds(&w.ds_from_api(), 300);
    let (status, body) = api(
        w.d.http,
        "PATCH",
        &format!("/v1/zones/{DOMAIN}."),
        &json!({"dnssec": false}),
    );
    assert_eq!(status, 200, "{body}");
    // RFC 8078 §4 delete records, and the zone still signed.
    assert_eq!(short(&w.d, "CDS"), vec!["0 0 0 00".to_string()]);
    assert_eq!(short(&w.d, "CDNSKEY"), vec!["0 3 0 AA==".to_string()]);
    assert_eq!(signing_tags(&w.d, DOMAIN, "SOA").len(), 1);
    assert_eq!(signing_tags(&w.d, DOMAIN, "CDS").len(), 1);
    assert!(!view(&w.d)["unsigning_since"].is_null());
    w.finding("dnssec.ok");
    // The parent's DS TTL is noted while the DS is there.
    wait_for("the DS TTL noted", || view(&w.d)["ds_ttl"] == 300);

    // The registrar removes the DS from one parent server: the zone stays signed.
    w.put_ds_on(&[0], &[], 300);
    std::thread::sleep(Duration::from_millis(2500));
    w.d.daemon().shared().advance_clock(2000);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(signing_tags(&w.d, DOMAIN, "SOA").len(), 1);
    assert!(view(&w.d)["ds_gone_at"].is_null());

    // Gone from every parent server: the DS TTL (300 s) must still pass.
    w.put_ds_on(&[1], &[], 300);
    wait_for("no DS seen anywhere", || {
        !view(&w.d)["ds_gone_at"].is_null()
    });
    w.d.daemon().shared().advance_clock(200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(signing_tags(&w.d, DOMAIN, "SOA").len(), 1);
    w.d.daemon().shared().advance_clock(200);
    wait_for("the zone unsigned", || {
        !dig(w.d.dns, &["+dnssec", "+norec", DOMAIN, "SOA"]).contains("RRSIG")
    });
    assert!(short(&w.d, "DNSKEY").is_empty());
    assert!(short(&w.d, "CDS").is_empty());
    let v = view(&w.d);
    assert_eq!(v["signed"], false, "{v}");
    let files = std::fs::read_dir(w.d.dir.path().join(format!("keys/dnssec/{DOMAIN}")))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(files, 0, "the key files are deleted");
    assert!(!w.d.zones_dir().join(format!("{DOMAIN}.signed")).exists());
    w.finding("dnssec.insecure");
}

#[test]
fn a_ksk_rollover_waits_for_the_new_ds_at_every_parent_server_and_leaves_the_zsk_alone() {
    let w = world(50, false, |c| {
        quick_rollover(c);
        c.dnssec.keys = mailzone::dnssec::KeyScheme::KskZsk;
    });
    w.put_ds(&w.ds_from_api(), 300);
    let zsk = signing_tags(&w.d, DOMAIN, "SOA");
    let old_ksk = signing_tags(&w.d, DOMAIN, "DNSKEY");
    assert_eq!((zsk.len(), old_ksk.len()), (1, 1));
    let (status, body) = api(
        w.d.http,
        "POST",
        &format!("/v1/zones/{DOMAIN}./dnssec/rollover"),
        &json!({"key": "ksk"}),
    );
    assert_eq!(status, 200, "{body}");
    let new_ksk = json(&body)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "published")
        .map(|k| k["key_tag"].to_string())
        .expect("a published key");
    assert_eq!(short(&w.d, "DNSKEY").len(), 3);
    let both = w.ds_from_api();
    assert_eq!(both.len(), 2);
    // Not at the second parent server yet: the DS TTL passing changes nothing.
    w.put_ds_on(&[1], &both, 300);
    std::thread::sleep(Duration::from_millis(2500));
    w.d.daemon().shared().advance_clock(400);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(signing_tags(&w.d, DOMAIN, "DNSKEY"), old_ksk);
    w.put_ds_on(&[0], &both, 300);
    wait_for("the new DS seen at every parent server", || {
        !key_with_tag(&w.d, &new_ksk)["ds_seen_at"].is_null()
    });
    w.d.daemon().shared().advance_clock(400);
    wait_for("the new KSK signing the DNSKEY set", || {
        signing_tags(&w.d, DOMAIN, "DNSKEY") == vec![new_ksk.clone()]
    });
    assert_eq!(
        signing_tags(&w.d, DOMAIN, "SOA"),
        zsk,
        "the ZSK still signs the data"
    );
    assert_eq!(key_with_tag(&w.d, &old_ksk[0])["state"], "retired");
    w.put_ds(&w.ds_from_api(), 300);
    w.finding("dnssec.ok");
}

#[test]
fn turning_dnssec_back_on_during_unsigning_cancels_it() {
    let w = world(51, false, quick_rollover);
    w.put_ds(&w.ds_from_api(), 300);
    for on in [false, true] {
        let (status, body) = api(
            w.d.http,
            "PATCH",
            &format!("/v1/zones/{DOMAIN}."),
            &json!({"dnssec": on}),
        );
        assert_eq!(status, 200, "{body}");
    }
    let cds = short(&w.d, "CDS");
    assert_eq!(cds.len(), 1);
    assert_ne!(cds[0], "0 0 0 00");
    assert!(view(&w.d)["unsigning_since"].is_null());
    w.finding("dnssec.ok");
}

/// Quick rollover steps, a CSK living a day, and inceptions back-dated four days so that
/// what is signed at a test clock moved by up to three days validates at the real clock
/// (the diagnosis checks signatures at the real clock).
fn auto_csk(c: &mut Config) {
    quick_rollover(c);
    c.dnssec.ksk_lifetime_secs = 86400;
    c.dnssec.inception_offset_secs = 4 * 86400;
}

fn key_in_state(d: &TestDaemon, state: &str) -> Option<String> {
    view(d)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == state)
        .map(|k| k["key_tag"].to_string())
}

#[test]
fn a_csk_is_rolled_by_itself_after_its_lifetime_and_the_old_key_goes_only_once_the_new_ds_is_at_every_parent_server()
 {
    let w = world(52, false, auto_csk);
    w.put_ds(&w.ds_from_api(), 300);
    let old_tag = signing_tags(&w.d, DOMAIN, "SOA");
    assert_eq!(old_tag.len(), 1);
    let old_tag = old_tag[0].clone();
    let due = view(&w.d)["next_rollover"]["csk"]
        .as_u64()
        .expect("a CSK rollover planned");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A day after activation, less this zone's fixed spread (at most a tenth of a day).
    let spread = mailzone::daemon::dnssec::rollover_spread(
        &hickory_proto::rr::Name::from_ascii(format!("{DOMAIN}.")).unwrap(),
        mailzone::dnssec::keys::Role::Csk,
        86400,
    );
    assert!(spread <= 8640);
    let lifetime_left = 86400 - spread;
    assert!(
        (now + lifetime_left - 60..=now + lifetime_left + 60).contains(&due),
        "{due} vs now {now}, spread {spread}"
    );

    // The lifetime passes: the new CSK is published by itself, CDS/CDNSKEY name both keys,
    // the old key still signs.
    w.d.daemon().shared().advance_clock(86400 + 60);
    wait_for("a new CSK published", || {
        key_in_state(&w.d, "published").is_some()
    });
    let new_tag = key_in_state(&w.d, "published").unwrap();
    assert_eq!(short(&w.d, "CDS").len(), 2);
    assert_eq!(short(&w.d, "DNSKEY").len(), 2);
    assert_eq!(signing_tags(&w.d, DOMAIN, "SOA"), vec![old_tag.clone()]);
    let both = w.ds_from_api();
    assert_eq!(both.len(), 2, "{both:?}");

    // The new DS at one parent server only: however long we wait, the old key stays.
    w.put_ds_on(&[0], &both, 300);
    std::thread::sleep(Duration::from_millis(2500));
    w.d.daemon().shared().advance_clock(400);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(signing_tags(&w.d, DOMAIN, "SOA"), vec![old_tag.clone()]);
    assert_eq!(key_with_tag(&w.d, &new_tag)["state"], "published");
    assert_eq!(key_with_tag(&w.d, &old_tag)["state"], "active");

    // At every parent server, then its TTL: the new key signs, the old one is retired.
    w.put_ds_on(&[1], &both, 300);
    wait_for("the new DS seen at every parent server", || {
        !key_with_tag(&w.d, &new_tag)["ds_seen_at"].is_null()
    });
    w.d.daemon().shared().advance_clock(400);
    wait_for("the new key signing", || {
        signing_tags(&w.d, DOMAIN, "SOA") == vec![new_tag.clone()]
    });
    assert_eq!(key_with_tag(&w.d, &old_tag)["state"], "retired");
    w.put_ds(&w.ds_from_api(), 300);

    // The old key leaves after the zone's largest TTL; the chain is secure through the new
    // one, and the next rollover is planned a lifetime after its activation.
    w.d.daemon().shared().advance_clock(3700);
    wait_for("the old key gone", || short(&w.d, "DNSKEY").len() == 1);
    let f = w.finding("dnssec.ok");
    assert!(f["message"].as_str().unwrap().contains(&new_tag), "{f}");
    let next = view(&w.d)["next_rollover"]["csk"].as_u64().unwrap();
    assert!(next >= due + lifetime_left, "{next} vs first {due}");
}

#[test]
fn unsigning_a_zone_leaves_no_rollover_nor_resign_job_nor_series() {
    let w = world(53, false, auto_csk);
    let jobs = || zone_jobs(&w.d, &format!("{DOMAIN}."));
    assert!(
        jobs().contains(&mailzone::daemon::scheduler::Job::RollKeys),
        "the automatic rollover is planned: {:?}",
        jobs()
    );
    let series = || {
        let (_, metrics) = http(w.d.http, "GET", "/metrics", Some(TOKEN), None);
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("mailzone_dnssec_next_rollover_timestamp_seconds{")
                    && l.contains(&format!("zone=\"{DOMAIN}.\""))
            })
            .count()
    };
    assert_eq!(series(), 1);
    let (status, body) = api(
        w.d.http,
        "PATCH",
        &format!("/v1/zones/{DOMAIN}."),
        &json!({"dnssec": false}),
    );
    assert_eq!(status, 200, "{body}");
    // No DS was ever at the parent: the wait is the unknown DS TTL (a day).
    wait_for("no DS seen anywhere", || {
        !view(&w.d)["ds_gone_at"].is_null()
    });
    w.d.daemon().shared().advance_clock(86400 + 60);
    wait_for("the zone unsigned", || view(&w.d)["signed"] == false);
    std::thread::sleep(Duration::from_millis(500));
    assert!(jobs().is_empty(), "{:?}", jobs());
    assert!(view(&w.d)["next_rollover"].as_object().unwrap().is_empty());
    assert_eq!(series(), 0);
}
