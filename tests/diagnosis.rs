//! Diagnosis of domains hosted elsewhere. "The world" is real: two mailzone instances on
//! 127.0.0.2 and 127.0.0.3 (same port) serve the customer's zone `far.example` and the
//! platform's `mail.example.net`; the daemon under test finds them through a resolver (the
//! first of them) and asks each directly. Each failure is made, seen red, fixed, seen green.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use mailzone::provision::platform::Platform;
use serde_json::{Value, json};

struct World {
    ns1: TestDaemon,
    ns2: TestDaemon,
    port: u16,
    d: TestDaemon,
    token: String,
    lines: Vec<String>,
}

const PLATFORM_ZONE: &str = "$ORIGIN mail.example.net.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.2\n\
    mx TXT \"v=spf1 ip4:198.51.100.0/24 -all\"\npro1 A 198.51.100.10\n*._report._dmarc TXT \"v=DMARC1\"\n";

fn zone_head(serial: u32) -> String {
    format!(
        "$ORIGIN far.example.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 60\n@ 0 NS ns1\n@ 0 NS ns2\nns1 0 A 127.0.0.2\nns2 0 A 127.0.0.3\n"
    )
}

/// The platform of these tests: pro1 with a 1-second TTL, so that fixes are not "pending".
fn quick_platform() -> Platform {
    let mut p = Platform::example();
    p.id = "quick".into();
    p.ttl = 1;
    p
}

fn world(dkim: bool) -> World {
    world_with(dkim, 1)
}

/// `ttl` is the platform's TTL: within it after a change, failures are only pending.
fn world_with(dkim: bool, ttl: u32) -> World {
    world_publishing(dkim, ttl, |_| true, |_| {})
}

/// A world where the customer publishes the lines `publish` keeps; `tune` adjusts the
/// daemon under test.
fn world_publishing(
    dkim: bool,
    ttl: u32,
    publish: impl Fn(&str) -> bool,
    tune: impl FnOnce(&mut mailzone::config::Config) + Send + 'static,
) -> World {
    let zones = [
        ("far.example.zone", zone_head(1)),
        ("mail.example.net.zone", PLATFORM_ZONE.to_string()),
    ];
    let zones: Vec<(&str, &str)> = zones.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let ns1 = TestDaemon::start_tuned(&zones, |c| {
        c.dns.listen = vec!["127.0.0.2:0".parse().unwrap()]
    });
    let port = ns1.dns.port();
    let ns2 = TestDaemon::start_tuned(&zones, move |c| {
        c.dns.listen = vec![format!("127.0.0.3:{port}").parse().unwrap()]
    });
    let resolver = ns1.dns;
    let d = TestDaemon::start_tuned(&[], move |c| {
        let mut p = quick_platform();
        p.ttl = ttl;
        c.platforms.push(p);
        c.diagnosis.resolver = Some(resolver);
        c.diagnosis.port = port;
        c.diagnosis.timeout_ms = 300;
        c.dkim_check_interval_ms = 100;
        tune(c);
    });
    let body = json!({"domain": "far.example", "platform": "quick", "mode": "authoritative", "records": {"dkim": dkim}});
    let (status, text) = api(d.http, "POST", "/v1/domains", &body);
    assert_eq!(status, 201, "{text}");
    let v = json(&text);
    let lines: Vec<String> = v["to_paste"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
        })
        .collect();
    let w = World {
        ns1,
        ns2,
        port,
        d,
        token: TOKEN.to_string(),
        lines,
    };
    // The customer publishes (by default everything), on both nameservers.
    let published: Vec<String> = w.lines.iter().filter(|l| publish(l)).cloned().collect();
    w.put(&published);
    // Let the association be older than the platform's 1-second TTL (no "pending").
    std::thread::sleep(Duration::from_millis(1100));
    w
}

impl World {
    /// Replaces the rrsets of these zone lines on both nameservers.
    fn put(&self, lines: &[String]) {
        self.put_on(&self.ns1, lines);
        self.put_on(&self.ns2, lines);
    }

    fn put_on(&self, ns: &TestDaemon, lines: &[String]) {
        let mut sets: BTreeMap<(String, String), (u32, Vec<String>)> = BTreeMap::new();
        for line in lines {
            let mut parts = line.splitn(5, ' ');
            let (name, ttl, _, rtype, data) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let e = sets
                .entry((name.to_string(), rtype.to_string()))
                .or_insert((ttl.parse().unwrap(), vec![]));
            e.1.push(data.to_string());
        }
        let ops: Vec<Value> = sets
            .into_iter()
            .map(|((name, rtype), (ttl, records))| json!({"op": "replace", "name": name, "type": rtype, "ttl": ttl, "records": records}))
            .collect();
        self.patch_on(ns, json!(ops));
    }

    fn patch_on(&self, ns: &TestDaemon, ops: Value) {
        let body = json!({ "operations": ops }).to_string();
        let (status, text) = http(
            ns.http,
            "PATCH",
            "/v1/zones/far.example/records",
            Some(&self.token),
            Some(&body),
        );
        assert_eq!(status, 200, "{text}");
    }

    fn patch(&self, ops: Value) {
        self.patch_on(&self.ns1, ops.clone());
        self.patch_on(&self.ns2, ops);
    }

    fn line(&self, prefix: &str) -> String {
        self.lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .cloned()
            .unwrap_or_else(|| panic!("no line {prefix}"))
    }

    fn diagnose(&self) -> Value {
        let (status, text) = http(
            self.d.http,
            "POST",
            "/v1/domains/far.example/diagnose",
            Some(TOKEN),
            None,
        );
        assert_eq!(status, 200, "{text}");
        json(&text)
    }

    fn assert_green(&self) {
        let v = self.diagnose();
        assert_eq!(
            v["overall"],
            "ok",
            "{}",
            serde_json::to_string_pretty(&v).unwrap()
        );
    }

    fn assert_red(&self, code: &str) -> Value {
        let v = self.diagnose();
        let found = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == code)
            .cloned();
        let f = found
            .unwrap_or_else(|| panic!("no {code}: {}", serde_json::to_string_pretty(&v).unwrap()));
        assert_ne!(v["overall"], "ok");
        f
    }

    /// Points ns2's address (on both nameservers) somewhere else. TTL 0: discovery goes
    /// through a caching resolver, which would otherwise keep the old address for its TTL.
    fn move_ns2(&self, ip: &str) {
        self.patch(
            json!([{"op": "replace", "name": "ns2", "type": "A", "ttl": 0, "records": [ip]}]),
        );
    }
}

#[test]
fn a_domain_with_every_record_published_is_green() {
    let w = world(false);
    w.assert_green();
    let (_, text) = http(
        w.d.http,
        "GET",
        "/v1/domains/far.example",
        Some(TOKEN),
        None,
    );
    let v = json(&text);
    let d = &v["associations"][0]["diagnosis"];
    assert_eq!(d["overall"], "ok");
    assert!(
        d["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["since"].as_u64().unwrap() > 0)
    );
    assert_eq!(
        v["associations"][0]["validated"], true,
        "the ownership token was seen"
    );
}

#[test]
fn mx_missing_then_fixed() {
    let w = world(false);
    w.patch(json!([{"op": "delete", "name": "@", "type": "MX"}]));
    let f = w.assert_red("mx.missing");
    assert!(
        f["fix"][0]
            .as_str()
            .unwrap()
            .contains("IN MX 1 mx0.mail.example.net."),
        "{f}"
    );
    assert_eq!(
        f["seen"].as_object().unwrap().len(),
        2,
        "what each nameserver served: {f}"
    );
    w.put(&[
        w.line("far.example. 1 IN MX 1 "),
        w.line("far.example. 1 IN MX 5 "),
        w.line("far.example. 1 IN MX 50 "),
        w.line("far.example. 1 IN MX 100 "),
        w.line("far.example. 1 IN MX 200 "),
    ]);
    w.assert_green();
}

#[test]
fn mx_wrong_then_fixed() {
    let w = world(false);
    w.patch(json!([{"op": "replace", "name": "@", "type": "MX", "records": ["10 mx.other-provider.example."]}]));
    w.assert_red("mx.mismatch");
    let mx: Vec<String> = w
        .lines
        .iter()
        .filter(|l| l.contains(" IN MX "))
        .cloned()
        .collect();
    w.put(&mx);
    w.assert_green();
}

#[test]
fn two_spf_records_then_fixed() {
    let w = world(false);
    let spf = w.line("far.example. 1 IN TXT \"v=spf1");
    w.patch(json!([{"op": "add", "name": "@", "type": "TXT", "records": ["\"v=spf1 mx -all\""]}]));
    let f = w.assert_red("spf.several");
    assert!(
        f["fix"][0]
            .as_str()
            .unwrap()
            .contains("include:mx.mail.example.net"),
        "{f}"
    );
    w.put(&[spf]);
    w.assert_green();
}

#[test]
fn spf_not_authorising_the_platform_then_fixed() {
    let w = world(false);
    w.patch(json!([{"op": "replace", "name": "@", "type": "TXT", "records": ["\"v=spf1 ip4:192.0.2.1 ~all\""]}]));
    w.assert_red("spf.not_authorised");
    w.put(&[w.line("far.example. 1 IN TXT \"v=spf1")]);
    w.assert_green();
}

#[test]
fn spf_over_ten_lookups_then_fixed() {
    let w = world(false);
    let mut ops = vec![];
    let mut terms = vec!["include:mx.mail.example.net".to_string()];
    for i in 0..10 {
        ops.push(json!({"op": "replace", "name": format!("h{i}"), "type": "A", "records": ["192.0.2.1"]}));
        terms.push(format!("a:h{i}.far.example"));
    }
    ops.push(json!({"op": "replace", "name": "@", "type": "TXT", "records": [format!("\"v=spf1 {} ~all\"", terms.join(" "))]}));
    w.patch(json!(ops));
    let f = w.assert_red("spf.too_many_lookups");
    assert!(
        f["message"].as_str().unwrap().contains("11 DNS lookups"),
        "{f}"
    );
    w.put(&[w.line("far.example. 1 IN TXT \"v=spf1")]);
    w.assert_green();
}

#[test]
fn dmarc_p_none_is_a_notice_until_strengthened() {
    let w = world(false);
    let v = w.diagnose();
    let notice = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "dmarc.policy_none")
        .cloned();
    let notice = notice.expect("p=none is reported");
    assert_eq!(notice["severity"], "notice");
    w.patch(json!([{"op": "replace", "name": "_dmarc", "type": "TXT", "records": ["\"v=DMARC1; p=quarantine\""]}]));
    let v = w.diagnose();
    assert!(
        !v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "dmarc.policy_none"),
        "{v}"
    );
    assert_eq!(v["overall"], "ok");
}

/// DKIM: the daemon's key is published by the customer; the checks then compare keys.
fn world_with_active_dkim() -> World {
    let w = world(true);
    wait_for_an_active_generation(&w);
    w
}

/// Diagnoses until one of the association's DKIM generations is active: the customer's
/// nameservers serve it and a diagnosis has seen it (either generation may come first).
fn wait_for_an_active_generation(w: &World) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = http(
            w.d.http,
            "GET",
            "/v1/domains/far.example",
            Some(TOKEN),
            None,
        );
        let generations = json(&text)["associations"][0]["dkim"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if generations.iter().any(|g| g["state"] == "active") {
            return;
        }
        w.diagnose();
        assert!(
            std::time::Instant::now() < deadline,
            "no DKIM generation became active: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dkim_missing_then_fixed() {
    let w = world_with_active_dkim();
    w.assert_green();
    let key_line = w
        .lines
        .iter()
        .find(|l| l.contains("._domainkey."))
        .unwrap()
        .clone();
    let owner = key_line.split(' ').next().unwrap().to_string();
    w.patch(json!([{"op": "delete", "name": owner, "type": "TXT"}]));
    w.assert_red("dkim.missing");
    let dkim: Vec<String> = w
        .lines
        .iter()
        .filter(|l| l.contains("._domainkey."))
        .cloned()
        .collect();
    w.put(&dkim);
    w.assert_green();
}

#[test]
fn dkim_key_different_from_ours_then_fixed() {
    let w = world_with_active_dkim();
    let key_line = w
        .lines
        .iter()
        .find(|l| l.contains("._domainkey."))
        .unwrap()
        .clone();
    let owner = key_line.split(' ').next().unwrap().to_string();
    let other = mailzone::dkim::key::generate(mailzone::dkim::DkimAlgorithm::Ed25519, 0).unwrap();
    w.patch(json!([{"op": "replace", "name": owner, "type": "TXT", "records": [format!("v=DKIM1; k=ed25519; p={}", other.public)]}]));
    w.assert_red("dkim.key_mismatch");
    let dkim: Vec<String> = w
        .lines
        .iter()
        .filter(|l| l.contains("._domainkey."))
        .cloned()
        .collect();
    w.put(&dkim);
    w.assert_green();
}

#[test]
fn one_nameserver_serving_an_older_zone_then_fixed() {
    let w = world(false);
    w.patch_on(&w.ns1, json!([{"op": "replace", "name": "note", "type": "TXT", "records": ["changed on ns1 only"]}]));
    let f = w.assert_red("delegation.serial_mismatch");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("1 of 2 nameservers serve serial"),
        "{f}"
    );
    w.patch_on(&w.ns2, json!([{"op": "replace", "name": "note", "type": "TXT", "records": ["changed on ns1 only"]}]));
    w.assert_green();
}

#[test]
fn one_nameserver_not_answering_then_fixed() {
    let w = world(false);
    w.move_ns2("127.0.0.4");
    let f = w.assert_red("delegation.unreachable");
    assert!(f["message"].as_str().unwrap().contains("127.0.0.4"), "{f}");
    w.move_ns2("127.0.0.3");
    w.assert_green();
}

#[test]
fn one_nameserver_answering_without_authority_then_fixed() {
    let w = world(false);
    // A server for the parent zone only: it refers, without AA.
    let port = w.port;
    let parent = "$ORIGIN example.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.5\nfar NS ns1.far.example.\n";
    let _lame = TestDaemon::start_tuned(&[("example.zone", parent)], move |c| {
        c.dns.listen = vec![format!("127.0.0.5:{port}").parse().unwrap()];
    });
    w.move_ns2("127.0.0.5");
    w.assert_red("delegation.lame");
    w.move_ns2("127.0.0.3");
    w.assert_green();
}

#[test]
fn a_nameserver_answering_servfail_then_fixed() {
    let w = world(false);
    let socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 6], w.port))).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80; // QR
                reply[3] = (reply[3] & 0xf0) | 2; // SERVFAIL
                let _ = socket.send_to(&reply, from);
            }
        }
    });
    w.move_ns2("127.0.0.6");
    let f = w.assert_red("delegation.rcode");
    assert!(
        f["message"].as_str().unwrap().contains("SERVFAIL")
            || f["message"].as_str().unwrap().contains("Server Failure"),
        "{f}"
    );
    w.move_ns2("127.0.0.3");
    w.assert_green();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn red_domains_are_listed_counted_and_measured() {
    let w = world(false);
    w.patch(json!([{"op": "delete", "name": "@", "type": "MX"}]));
    w.assert_red("mx.missing");
    let (_, text) = http(
        w.d.http,
        "GET",
        "/v1/domains?status=error",
        Some(TOKEN),
        None,
    );
    assert_eq!(json(&text).as_array().unwrap().len(), 1);
    let (_, text) = http(w.d.http, "GET", "/v1/domains?status=ok", Some(TOKEN), None);
    assert!(json(&text).as_array().unwrap().is_empty(), "{text}");
    let (_, text) = http(w.d.http, "GET", "/v1/status", None, None);
    assert_eq!(json(&text)["domains_by_status"]["error"], 1);
    let (_, metrics) = http(w.d.http, "GET", "/metrics", None, None);
    assert!(
        metrics.contains(r#"mailzone_diagnosis_check_status{check="mx",domain="far.example."} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mailzone_diagnosis_domains{status="error"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("mailzone_diagnosis_run_seconds_count"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mailzone_diagnosis_queries_total"),
        "{metrics}"
    );
}

#[test]
fn the_standalone_command_prints_the_table_and_fails_when_red() {
    let w = world(false);
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailzone"))
            .args([
                "diagnose",
                "far.example",
                "--platform",
                "pro1",
                "--resolver",
                &w.ns1.dns.to_string(),
                "--port",
                &w.port.to_string(),
            ])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("CHECK"), "{out}");
    w.patch(json!([{"op": "delete", "name": "@", "type": "MX"}]));
    let (code, out) = run();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("mx.missing"), "{out}");
    assert!(out.contains("Lines to add:"), "{out}");
}

#[test]
fn dmarc_reports_to_a_domain_that_has_not_agreed_are_flagged() {
    let w = world(false);
    w.patch(json!([{"op": "replace", "name": "_dmarc", "type": "TXT", "records": ["\"v=DMARC1; p=reject; rua=mailto:reports@stranger.example\""]}]));
    let f = w.assert_red("dmarc.rua_unauthorised");
    assert!(
        f["fix"][1]
            .as_str()
            .unwrap()
            .starts_with("far.example._report._dmarc.stranger.example."),
        "{f}"
    );
    w.patch(json!([{"op": "replace", "name": "_dmarc", "type": "TXT", "records": ["\"v=DMARC1; p=reject; rua=mailto:dmarc-reports@mail.example.net\""]}]));
    w.assert_green();
}

#[test]
fn the_status_page_shows_the_boxes_in_a_real_browser() {
    let w = world(false);
    w.patch(json!([{"op": "delete", "name": "@", "type": "MX"}]));
    w.assert_red("mx.missing");
    let profile = tempfile::tempdir().unwrap();
    let shot = profile.path().join("page.png");
    let url = format!("http://{}/", w.d.http);
    let chromium = |extra: &[&str]| {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,700",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium is not installed: run the README's test command")
    };
    let out = chromium(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(r#"<tr data-domain="far.example." data-overall="error">"#),
        "the row shows its overall status: {dom}"
    );
    assert!(
        dom.contains(r#"class="box green" data-check="delegation""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"class="box green" data-check="autoconfig""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<details class="box red" data-check="mx"><summary>MX</summary>"#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"class="box green" data-check="spf""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"class="box green" data-check="srv""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"class="box green" data-check="ownership""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"class="box grey" data-check="dkim""#),
        "DKIM is not managed: {dom}"
    );
    assert!(
        dom.contains("far.example. 1 IN MX 1 mx0.mail.example.net."),
        "the red box holds the lines to add: {dom}"
    );
    let shot_arg = format!("--screenshot={}", shot.display());
    chromium(&[&shot_arg]);
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 1000)
            .unwrap_or(false),
        "no screenshot"
    );
    // To look at it: MAILZONE_SCREENSHOT=/tmp/page.png cargo test status_page
    if let Ok(keep) = std::env::var("MAILZONE_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

/// The finding with this code in a diagnosis.
fn finding(v: &Value, code: &str) -> Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .cloned()
        .unwrap_or_else(|| panic!("no {code}: {}", serde_json::to_string_pretty(v).unwrap()))
}

#[test]
fn an_external_domain_missing_a_record_is_red_at_once_even_with_a_long_ttl() {
    // Its nameservers are asked directly: there is no cache to wait for.
    let w = world_with(false, 3600);
    w.patch(json!([{"op": "delete", "name": "@", "type": "MX"}]));
    let v = w.diagnose();
    assert_eq!(finding(&v, "mx.missing")["status"], "missing", "{v}");
    assert_eq!(v["overall"], "error");
}

#[test]
fn a_new_external_association_with_nothing_published_is_red_at_its_first_diagnosis() {
    let w = world_with(false, 3600);
    // The customer takes everything down, and the domain is associated afresh.
    let ops: Vec<Value> = w
        .lines
        .iter()
        .map(|l| {
            let mut p = l.split(' ');
            let name = p.next().unwrap();
            let rtype = p.nth(2).unwrap();
            json!({"op": "delete", "name": name, "type": rtype})
        })
        .collect();
    w.patch(json!(ops));
    let (status, text) = http(
        w.d.http,
        "DELETE",
        "/v1/domains/far.example",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let body = json!({"domain": "far.example", "platform": "quick", "mode": "authoritative"});
    let (status, text) = api(w.d.http, "POST", "/v1/domains", &body);
    assert_eq!(status, 201, "{text}");
    // The scheduler diagnoses a new association at once, without being asked.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let d = loop {
        let (_, text) = http(
            w.d.http,
            "GET",
            "/v1/domains/far.example",
            Some(TOKEN),
            None,
        );
        let d = json(&text)["associations"][0]["diagnosis"].clone();
        if !d.is_null() {
            break d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never diagnosed: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(d["overall"], "error", "{d}");
    let mx = finding(&d, "mx.missing");
    assert_eq!(mx["status"], "missing", "{mx}");
    assert!(
        !mx["fix"].as_array().unwrap().is_empty(),
        "the lines to paste: {mx}"
    );
    assert!(
        d["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["status"] != "pending"),
        "{d}"
    );
}

#[test]
fn saving_an_observed_dkim_key_does_not_turn_a_red_check_pending() {
    let w = world_with(true, 3600);
    w.patch(json!([{"op": "delete", "name": "@", "type": "MX"}]));
    assert_eq!(finding(&w.diagnose(), "mx.missing")["status"], "missing");
    // The published keys are seen and saved (a write of the association), then judged.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let v = w.diagnose();
        let (_, text) = http(
            w.d.http,
            "GET",
            "/v1/domains/far.example",
            Some(TOKEN),
            None,
        );
        let active = json(&text)["associations"][0]["dkim"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["state"] == "active"));
        if active {
            let v = w.diagnose();
            assert_eq!(finding(&v, "mx.missing")["status"], "missing", "{v}");
            assert_eq!(v["overall"], "error", "{v}");
            break;
        }
        assert_eq!(finding(&v, "mx.missing")["status"], "missing", "{v}");
        assert!(
            std::time::Instant::now() < deadline,
            "the key was never seen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dkim_lines(w: &World) -> Vec<String> {
    let mut lines: Vec<String> = w
        .lines
        .iter()
        .filter(|l| l.contains("._domainkey."))
        .cloned()
        .collect();
    lines.sort();
    lines
}

#[test]
fn dkim_keys_pasted_nowhere_are_missing_with_the_lines_to_paste() {
    let w = world_publishing(true, 1, |l| !l.contains("._domainkey."), |_| {});
    let f = w.assert_red("dkim.missing");
    assert_eq!(f["status"], "missing", "{f}");
    let fix: Vec<String> = f["fix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let first = &dkim_lines(&w)[0];
    let v = w.diagnose();
    let all_fixes: Vec<String> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "dkim")
        .flat_map(|f| f["fix"].as_array().cloned().unwrap_or_default())
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    for line in dkim_lines(&w) {
        assert!(all_fixes.contains(&line), "{line} is to paste: {v}");
    }
    assert!(
        !fix.is_empty() && fix.iter().all(|l| l.contains("._domainkey.")),
        "{f} {first}"
    );
    assert!(
        !v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "dkim.ok"),
        "no green DKIM: {v}"
    );
}

#[test]
fn a_foreign_key_at_an_issued_selector_is_a_mismatch_while_another_generation_is_active() {
    let other = mailzone::dkim::key::generate(mailzone::dkim::DkimAlgorithm::Ed25519, 0).unwrap();
    let foreign = format!("\"v=DKIM1; k=ed25519; p={}\"", other.public);
    // The customer pastes the first selector wrong and the second right.
    let w = world_publishing(true, 1, |l| !l.contains("._domainkey."), |_| {});
    let lines = dkim_lines(&w);
    assert!(lines.len() >= 2, "two generations to paste: {lines:?}");
    let owner0 = lines[0].split(' ').next().unwrap().to_string();
    let wrong = format!("{owner0} 1 IN TXT {foreign}");
    w.put(&[wrong, lines[1].clone()]);
    wait_for_an_active_generation(&w);
    // The activation changed the association: let the platform's 1-second TTL pass.
    std::thread::sleep(Duration::from_millis(1100));
    let f = w.assert_red("dkim.key_mismatch");
    assert_eq!(f["status"], "mismatch", "{f}");
    let selector = owner0.split("._domainkey.").next().unwrap();
    assert!(f["message"].as_str().unwrap().contains(selector), "{f}");
}

/// DKIM and ownership judged on the one server that answers; only delegation is red.
fn assert_only_delegation_is_red(v: &Value, delegation_code: &str) {
    let pretty = serde_json::to_string_pretty(v).unwrap();
    finding(v, delegation_code);
    for f in v["checks"].as_array().unwrap() {
        if f["check"] == "delegation" {
            continue;
        }
        assert_ne!(f["severity"], "error", "only delegation is red: {pretty}");
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains("(1 of 2 nameservers answered)"),
            "says which servers it judged on: {pretty}"
        );
    }
    let dkim = finding(v, "dkim.ok");
    assert_eq!(dkim["status"], "ok", "{pretty}");
    assert_eq!(finding(v, "ownership.ok")["status"], "ok", "{pretty}");
}

#[test]
fn one_unreachable_nameserver_turns_only_delegation_red() {
    let w = world_with_active_dkim();
    w.move_ns2("127.0.0.4");
    let v = w.diagnose();
    assert_only_delegation_is_red(&v, "delegation.unreachable");
}

#[test]
fn one_lame_nameserver_turns_only_delegation_red() {
    let w = world_with_active_dkim();
    let port = w.port;
    let parent = "$ORIGIN example.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.5\nfar NS ns1.far.example.\n";
    let _lame = TestDaemon::start_tuned(&[("example.zone", parent)], move |c| {
        c.dns.listen = vec![format!("127.0.0.5:{port}").parse().unwrap()];
    });
    w.move_ns2("127.0.0.5");
    let v = w.diagnose();
    assert_only_delegation_is_red(&v, "delegation.lame");
}

#[test]
fn with_no_nameserver_answering_with_authority_no_other_check_is_green() {
    let w = world(false);
    w.patch(
        json!([{"op": "replace", "name": "ns1", "type": "A", "ttl": 0, "records": ["127.0.0.4"]},
        {"op": "replace", "name": "ns2", "type": "A", "ttl": 0, "records": ["127.0.0.4"]}]),
    );
    let v = w.diagnose();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    assert_eq!(v["overall"], "error", "{pretty}");
    for check in ["mx", "srv", "spf", "dmarc", "ownership"] {
        let f = finding(&v, &format!("{check}.unchecked"));
        assert_eq!(f["status"], "error", "{pretty}");
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains("no nameserver answered with authority"),
            "{pretty}"
        );
    }
}

#[test]
fn a_domain_with_a_dead_nameserver_is_diagnosed_within_the_budget() {
    // 127.0.0.4 swallows every query: a real timeout, not a refusal.
    let w = world_publishing(
        false,
        1,
        |_| true,
        |c| {
            c.diagnosis.timeout_ms = 500;
            c.diagnosis.budget_ms = 1000;
            // One query at a time to a server: without the budget, 17 questions × 500 ms.
            c.diagnosis.per_nameserver = 1;
        },
    );
    let dead = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 4], w.port))).unwrap();
    w.move_ns2("127.0.0.4");
    let first = w.diagnose();
    finding(&first, "delegation.unreachable");
    // Timed again once the failure is known (a new failure may be confirmed by a second run).
    let started = std::time::Instant::now();
    let v = w.diagnose();
    let took = started.elapsed();
    // The budget, plus the HTTP exchange and judging on a loaded 2-core machine.
    assert!(
        took < Duration::from_millis(1000 + 1000),
        "took {took:?} with a budget of 1000 ms"
    );
    assert_eq!(finding(&v, "mx.ok")["status"], "ok", "{v}");
    drop(dead);
}

#[test]
fn expected_and_domain_records_list_the_same_lines_as_to_paste() {
    let w = world(true);
    let mut pasted = w.lines.clone();
    pasted.sort();
    assert!(
        pasted.iter().any(|l| l.contains("._domainkey.")),
        "{pasted:?}"
    );
    let (_, text) = http(
        w.d.http,
        "GET",
        "/v1/domains/far.example",
        Some(TOKEN),
        None,
    );
    let mut expected: Vec<String> = json(&text)["associations"][0]["expected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    assert_eq!(expected, pasted, "GET expected");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailzone"))
        .args(["domain", "records", "far.example"])
        .args(["--api", &w.d.http.to_string(), "--token", TOKEN])
        .output()
        .unwrap();
    let mut listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';') && !l.is_empty())
        .map(str::to_string)
        .collect();
    listed.sort();
    assert_eq!(listed, pasted, "mailzone domain records");
}

fn red_finding(w: &World, code: &str) -> Value {
    w.assert_red(code)
}

fn lines_of(f: &Value, key: &str) -> Vec<String> {
    f[key]
        .as_array()
        .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn an_spf_fix_is_the_one_merged_record_replacing_the_served_one() {
    let w = world(false);
    w.patch(json!([{"op": "replace", "name": "@", "type": "TXT", "records": ["\"v=spf1 ip4:192.0.2.1 ~all\""]}]));
    let f = red_finding(&w, "spf.not_authorised");
    assert_eq!(
        lines_of(&f, "fix"),
        vec![
            "far.example. 1 IN TXT \"v=spf1 ip4:192.0.2.1 include:mx.mail.example.net ~all\""
                .to_string()
        ],
        "{f}"
    );
    assert_eq!(
        lines_of(&f, "remove"),
        vec!["far.example. IN TXT \"v=spf1 ip4:192.0.2.1 ~all\"".to_string()],
        "{f}"
    );
}

#[test]
fn foreign_mx_hosts_are_listed_to_remove_in_the_mx_finding() {
    let w = world(false);
    w.patch(json!([{"op": "replace", "name": "@", "type": "MX", "records": ["10 mx.other-provider.example."]}]));
    let f = red_finding(&w, "mx.mismatch");
    assert!(
        lines_of(&f, "fix")
            .iter()
            .any(|l| l.contains("IN MX 1 mx0.mail.example.net.")),
        "{f}"
    );
    assert_eq!(
        lines_of(&f, "remove"),
        vec!["far.example. IN MX 10 mx.other-provider.example.".to_string()],
        "{f}"
    );
}

#[test]
fn pass_all_too_many_lookups_several_dmarc_and_delegation_findings_carry_a_fix() {
    let w = world(false);
    w.patch(json!([{"op": "replace", "name": "@", "type": "TXT", "records": ["\"v=spf1 include:mx.mail.example.net +all\""]}]));
    let f = red_finding(&w, "spf.pass_all");
    assert_eq!(
        lines_of(&f, "fix"),
        vec!["far.example. 1 IN TXT \"v=spf1 include:mx.mail.example.net ~all\"".to_string()],
        "{f}"
    );
    assert_eq!(lines_of(&f, "remove").len(), 1, "{f}");
    w.patch(json!([{"op": "replace", "name": "_dmarc", "type": "TXT", "records": ["\"v=DMARC1; p=reject\"", "\"v=DMARC1; p=none\""]}]));
    let f = red_finding(&w, "dmarc.several");
    assert_eq!(lines_of(&f, "remove").len(), 2, "{f}");
    assert!(
        lines_of(&f, "fix")[0].starts_with("_dmarc.far.example. 1 IN TXT \"v=DMARC1"),
        "{f}"
    );
    w.move_ns2("127.0.0.4");
    let f = red_finding(&w, "delegation.unreachable");
    assert!(lines_of(&f, "fix")[0].starts_with("; "), "a sentence: {f}");
    let mut ops = vec![];
    let mut terms = vec!["include:mx.mail.example.net".to_string()];
    for i in 0..10 {
        ops.push(json!({"op": "replace", "name": format!("h{i}"), "type": "A", "records": ["192.0.2.1"]}));
        terms.push(format!("a:h{i}.far.example"));
    }
    ops.push(json!({"op": "replace", "name": "@", "type": "TXT", "records": [format!("\"v=spf1 {} ~all\"", terms.join(" "))]}));
    w.move_ns2("127.0.0.3");
    w.patch(json!(ops));
    let f = red_finding(&w, "spf.too_many_lookups");
    assert!(lines_of(&f, "fix")[0].starts_with("; "), "a sentence: {f}");
}

/// The page as a real browser builds it.
fn browser_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("chromium is not installed: run the README's test command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_hosted_domain_with_a_broken_delegation_shows_a_red_ns_box_in_a_real_browser() {
    let zones = [
        ("far.example.zone", zone_head(1)),
        ("mail.example.net.zone", PLATFORM_ZONE.to_string()),
    ];
    let zones: Vec<(&str, &str)> = zones.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let ns1 = TestDaemon::start_tuned(&zones, |c| {
        c.dns.listen = vec!["127.0.0.2:0".parse().unwrap()]
    });
    let port = ns1.dns.port();
    let _ns2 = TestDaemon::start_tuned(&zones, move |c| {
        c.dns.listen = vec![format!("127.0.0.3:{port}").parse().unwrap()]
    });
    let resolver = ns1.dns;
    // The daemon under test hosts far.example itself; the world sees it through ns1/ns2.
    let head = zone_head(1);
    let d = TestDaemon::start_tuned(&[("far.example.zone", head.as_str())], move |c| {
        c.platforms.push(quick_platform());
        c.diagnosis.resolver = Some(resolver);
        c.diagnosis.port = port;
        c.diagnosis.timeout_ms = 300;
    });
    let body = json!({"domain": "far.example", "platform": "quick", "mode": "authoritative"});
    let (status, text) = api(d.http, "POST", "/v1/domains", &body);
    assert_eq!(status, 201, "{text}");
    assert!(!json(&text)["zone"].is_null(), "hosted: {text}");
    // ns2's address points nowhere.
    let ops = json!({"operations": [{"op": "replace", "name": "ns2", "type": "A", "ttl": 0, "records": ["127.0.0.4"]}]}).to_string();
    let (status, text) = http(
        ns1.http,
        "PATCH",
        "/v1/zones/far.example/records",
        Some(TOKEN),
        Some(&ops),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = http(
        d.http,
        "POST",
        "/v1/domains/far.example/diagnose",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    finding(&v, "delegation.unreachable");
    let dom = browser_dom(&format!("http://{}/", d.http));
    assert!(
        dom.contains(r#"<tr data-domain="far.example." data-overall="error">"#),
        "the row shows its overall status: {dom}"
    );
    assert!(
        dom.contains(r#"<details class="box red" data-check="delegation"><summary>NS</summary>"#),
        "the NS box is red and opens: {dom}"
    );
    assert!(
        dom.contains("127.0.0.4"),
        "the broken server is named: {dom}"
    );
    assert!(dom.contains(r#"data-check="autoconfig""#), "{dom}");
}

#[test]
fn an_external_domain_serving_spf_gets_one_merged_record_to_paste_that_replaces_it() {
    let head = format!("{}@ TXT \"v=spf1 ip4:192.0.2.1 -all\"\n", zone_head(1));
    let zones = [
        ("far.example.zone", head.as_str()),
        ("mail.example.net.zone", PLATFORM_ZONE),
    ];
    let ns1 = TestDaemon::start_tuned(&zones, |c| {
        c.dns.listen = vec!["127.0.0.2:0".parse().unwrap()]
    });
    let port = ns1.dns.port();
    let _ns2 = TestDaemon::start_tuned(&zones, move |c| {
        c.dns.listen = vec![format!("127.0.0.3:{port}").parse().unwrap()]
    });
    let resolver = ns1.dns;
    let d = TestDaemon::start_tuned(&[], move |c| {
        c.platforms.push(quick_platform());
        c.diagnosis.resolver = Some(resolver);
        c.diagnosis.port = port;
        c.diagnosis.timeout_ms = 300;
    });
    let body = json!({"domain": "far.example", "platform": "quick", "mode": "authoritative"});
    let (status, text) = api(d.http, "POST", "/v1/domains", &body);
    assert_eq!(status, 201, "{text}");
    let v = json(&text);
    assert_eq!(
        v["to_paste"]["spf"],
        json!(["far.example. 1 IN TXT \"v=spf1 ip4:192.0.2.1 include:mx.mail.example.net -all\""]),
        "one merged record, never a second v=spf1: {v}"
    );
    assert_eq!(
        v["to_remove"]["spf"],
        json!(["far.example. IN TXT \"v=spf1 ip4:192.0.2.1 -all\""]),
        "{v}"
    );
    assert_eq!(
        v["served_spf"],
        json!({"checked": true, "records": ["v=spf1 ip4:192.0.2.1 -all"]}),
        "what was read is said: {v}"
    );
}

#[test]
fn an_external_domain_whose_spf_cannot_be_read_is_told_so_within_two_seconds() {
    // A resolver that never answers: a bound socket nobody reads.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = silent.local_addr().unwrap();
    let d = TestDaemon::start_tuned(&[], move |c| {
        c.platforms.push(quick_platform());
        c.diagnosis.resolver = Some(resolver);
        c.diagnosis.timeout_ms = 300;
        c.diagnosis.budget_ms = 10_000;
    });
    let body = json!({"domain": "far.example", "platform": "quick", "mode": "authoritative"});
    let started = std::time::Instant::now();
    let (status, text) = api(d.http, "POST", "/v1/domains", &body);
    let took = started.elapsed();
    assert_eq!(status, 201, "{text}");
    assert!(
        took < std::time::Duration::from_secs(4),
        "the diagnosis budget (10 s) does not hold the API call: {took:?}"
    );
    let v = json(&text);
    assert_eq!(v["served_spf"]["checked"], false, "{v}");
    let reason = v["served_spf"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("timed out") || reason.contains("no answer within"),
        "{v}"
    );
    assert!(
        v["served_spf"]["action"]
            .as_str()
            .unwrap()
            .contains("merge the line to paste"),
        "{v}"
    );
    assert!(
        v["to_paste"]["spf"].is_array(),
        "the line is still given: {v}"
    );
}

fn series_of_far_example(w: &World) -> Vec<String> {
    let (_, metrics) = http(w.d.http, "GET", "/metrics", None, None);
    metrics
        .lines()
        .filter(|l| l.contains(r#"domain="far.example.""#))
        .map(str::to_string)
        .collect()
}

#[test]
fn per_domain_failing_exports_a_domains_series_only_while_it_fails() {
    let w = world_publishing(
        false,
        1,
        |_| true,
        |c| c.metrics.per_domain = mailzone::config::PerDomain::Failing,
    );
    w.assert_green();
    assert!(
        series_of_far_example(&w).is_empty(),
        "{:?}",
        series_of_far_example(&w)
    );
    w.patch(json!([{"op": "delete", "name": "@", "type": "MX"}]));
    w.assert_red("mx.missing");
    assert!(
        series_of_far_example(&w)
            .iter()
            .any(|l| l == r#"mailzone_diagnosis_check_status{check="mx",domain="far.example."} 3"#),
        "{:?}",
        series_of_far_example(&w)
    );
    let data: Vec<String> = w
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("far.example. 1 IN MX "))
        .map(str::to_string)
        .collect();
    assert_eq!(data.len(), 5);
    w.patch(json!([{"op": "add", "name": "@", "type": "MX", "ttl": 1, "records": data}]));
    w.assert_green();
    assert!(
        series_of_far_example(&w).is_empty(),
        "green again: its series go: {:?}",
        series_of_far_example(&w)
    );
}

#[test]
fn per_domain_none_exports_no_per_domain_series_but_the_totals() {
    let w = world_publishing(
        false,
        1,
        |_| true,
        |c| c.metrics.per_domain = mailzone::config::PerDomain::None,
    );
    w.patch(json!([{"op": "delete", "name": "@", "type": "MX"}]));
    w.assert_red("mx.missing");
    assert!(series_of_far_example(&w).is_empty());
    let (_, metrics) = http(w.d.http, "GET", "/metrics", None, None);
    assert!(
        metrics.contains(r#"mailzone_diagnosis_domains{status="error"} 1"#),
        "{metrics}"
    );
}
