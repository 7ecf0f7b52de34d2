//! Several daemons serving the same zones signed with the same keys, as the nameservers of a
//! signed parent zone do (one signer, its keys and state copied to the others), each on its
//! own loopback address.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mailzone::config::Config;

use serde_json::json;

use super::{TOKEN, TestDaemon, dig, http, json, test_config};

/// Starts one daemon per address serving `zones` (file name, text) signed (DNSSEC on): the
/// first generates the keys of `origin`; the others start from a copy of its `keys/dnssec`
/// and `zones/dnssec` folders, so that all serve the same DNSKEY set.
pub fn start_signed_replicas(
    addrs: &[SocketAddr],
    zones: &[(&str, &str)],
    origin: &str,
) -> Vec<TestDaemon> {
    start_signed_replicas_tuned(addrs, zones, origin, |_| {})
}

/// Like [`start_signed_replicas`], `more` adjusting every configuration (e.g. NSEC3).
pub fn start_signed_replicas_tuned(
    addrs: &[SocketAddr],
    zones: &[(&str, &str)],
    origin: &str,
    more: impl Fn(&mut Config),
) -> Vec<TestDaemon> {
    let tune = |c: &mut Config, addr: SocketAddr| {
        c.dns.listen = vec![addr];
        c.dnssec.enabled = true;
        more(c);
    };
    let mut out = Vec::new();
    let Some((first, others)) = addrs.split_first() else {
        return out;
    };
    let signer = TestDaemon::start_tuned(zones, |c| tune(c, *first));
    // The keys are made when the zone is first signed: wait until its DNSKEY is served.
    let deadline = Instant::now() + Duration::from_secs(15);
    while dig(signer.dns, &["+short", "+norec", origin, "DNSKEY"])
        .trim()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "{origin} never served a DNSKEY");
        std::thread::sleep(Duration::from_millis(100));
    }
    for addr in others {
        let dir = tempfile::tempdir().unwrap();
        let zones_dir = dir.path().join("zones");
        std::fs::create_dir(&zones_dir).unwrap();
        for (name, text) in zones {
            std::fs::write(zones_dir.join(name), text).unwrap();
        }
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::set_permissions(
            &keys,
            std::fs::metadata(signer.dir.path().join("keys"))
                .unwrap()
                .permissions(),
        )
        .unwrap();
        copy_tree(
            &signer.dir.path().join("keys/dnssec"),
            &dir.path().join("keys/dnssec"),
        );
        copy_tree(
            &signer.dir.path().join("zones/dnssec"),
            &dir.path().join("zones/dnssec"),
        );
        let mut config = test_config(dir.path());
        tune(&mut config, *addr);
        out.push(TestDaemon::run(dir, config));
    }
    out.insert(0, signer);
    out
}

/// Copies a folder with its files and their modes.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            // std::fs::copy keeps the mode (0600 for keys).
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The DS records `d` gives the registrar for `domain` (`tag alg 2 HEX`).
pub fn ds_from_api(d: &TestDaemon, domain: &str) -> Vec<String> {
    let (status, body) = http(
        d.http,
        "GET",
        &format!("/v1/zones/{domain}./dnssec"),
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

/// The registrar: `domain`'s DS set in `parent.test` on each of `parents` (an empty `ds`
/// deletes it).
pub fn put_ds(parents: &[&TestDaemon], domain: &str, ds: &[String], ttl: u32) {
    for p in parents {
        let op = if ds.is_empty() {
            json!({"op": "delete", "name": format!("{domain}."), "type": "DS"})
        } else {
            json!({"op": "replace", "name": format!("{domain}."), "type": "DS", "ttl": ttl, "records": ds})
        };
        let body = json!({ "operations": [op] }).to_string();
        let (status, text) = http(
            p.http,
            "PATCH",
            "/v1/zones/parent.test/records",
            Some(TOKEN),
            Some(&body),
        );
        assert_eq!(status, 200, "{text}");
    }
}

/// A fresh diagnosis of `domain` through the API.
pub fn diagnose(d: &TestDaemon, domain: &str) -> serde_json::Value {
    let (status, text) = http(
        d.http,
        "POST",
        &format!("/v1/domains/{domain}/diagnose"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{text}");
    json(&text)
}

/// The `dnssec` findings of a diagnosis.
pub fn dnssec_findings(diagnosis: &serde_json::Value) -> Vec<serde_json::Value> {
    diagnosis["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "dnssec")
        .cloned()
        .collect()
}

/// The finding with `code` among `all`; the test fails naming them all when there is none.
pub fn finding_among(all: &[serde_json::Value], code: &str) -> serde_json::Value {
    all.iter()
        .find(|f| f["code"] == code)
        .cloned()
        .unwrap_or_else(|| panic!("no {code}: {}", serde_json::to_string_pretty(all).unwrap()))
}
