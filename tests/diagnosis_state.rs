//! The state diagnosis keeps follows the associations: a removed association leaves no
//! result, count, metric series or job behind; `pending` is only for records we changed
//! ourselves in a hosted zone, family by family; saving bookkeeping is not logged as a
//! change.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn associate(http_addr: std::net::SocketAddr, domain: &str, token: &str) {
    let body = json!({"domain": domain, "platform": "pro1", "mode": "authoritative", "records": {"dkim": true}});
    let (status, text) = http(
        http_addr,
        "POST",
        "/v1/domains",
        Some(token),
        Some(&body.to_string()),
    );
    assert_eq!(status, 201, "{text}");
}

/// Waits for the scheduler's first diagnosis of `domain` and returns it.
fn first_diagnosis(d: &TestDaemon, domain: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = http(
            d.http,
            "GET",
            &format!("/v1/domains/{domain}"),
            Some(TOKEN),
            None,
        );
        let v = json(&text)["associations"][0]["diagnosis"].clone();
        if !v.is_null() {
            return v;
        }
        assert!(Instant::now() < deadline, "never diagnosed: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SHOP: &str = "$ORIGIN shop.test.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n\
    @ NS ns1.provider.example.\n@ A 192.0.2.80\n";

#[test]
fn removing_an_association_removes_its_results_counts_series_and_jobs() {
    // Nothing answers the resolver (port 9): the diagnosis is red.
    let d = TestDaemon::start(&[("shop.test.zone", SHOP)]);
    associate(d.http, "shop.test", TOKEN);
    first_diagnosis(&d, "shop.test");
    let (_, status) = http(d.http, "GET", "/v1/status", None, None);
    assert_eq!(json(&status)["domains_by_status"]["error"], 1, "{status}");
    let (_, metrics) = http(d.http, "GET", "/metrics", None, None);
    assert!(
        metrics
            .contains(r#"mailzone_diagnosis_check_status{check="delegation",domain="shop.test."}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mailzone_dkim_key_age_seconds{domain="shop.test.""#),
        "{metrics}"
    );

    let (code, text) = http(d.http, "DELETE", "/v1/domains/shop.test", Some(TOKEN), None);
    assert_eq!(code, 200, "{text}");
    let (_, status) = http(d.http, "GET", "/v1/status", None, None);
    let counts = &json(&status)["domains_by_status"];
    assert!(
        counts.as_object().unwrap().values().all(|n| n == 0),
        "{status}"
    );
    let (_, metrics) = http(d.http, "GET", "/metrics", None, None);
    assert!(
        !metrics.contains(r#"domain="shop.test.""#),
        "no series of the removed domain is left: {metrics}"
    );
    assert!(
        metrics.contains(r#"mailzone_diagnosis_domains{status="error"} 0"#),
        "{metrics}"
    );
    assert!(
        d.daemon()
            .shared()
            .scheduler
            .snapshot()
            .iter()
            .all(|(_, k, _)| k.domain != "shop.test."),
        "its jobs are cancelled"
    );
}

const FAR_WORLD: &str = "$ORIGIN far.example.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n\
    @ NS ns1\n@ NS ns2\nns1 A 127.0.0.2\nns2 A 127.0.0.3\n";

/// "The world": two nameservers on 127.0.0.2 and 127.0.0.3 (the same port) serving
/// `far.example` without any of the platform's records.
fn world() -> (TestDaemon, TestDaemon) {
    let ns1 = TestDaemon::start_tuned(&[("far.example.zone", FAR_WORLD)], |c| {
        c.dns.listen = vec!["127.0.0.2:0".parse().unwrap()]
    });
    let port = ns1.dns.port();
    let ns2 = TestDaemon::start_tuned(&[("far.example.zone", FAR_WORLD)], move |c| {
        c.dns.listen = vec![format!("127.0.0.3:{port}").parse().unwrap()]
    });
    (ns1, ns2)
}

fn diagnose(d: &TestDaemon) -> Value {
    let (status, text) = http(
        d.http,
        "POST",
        "/v1/domains/far.example/diagnose",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{text}");
    json(&text)
}

fn status_of(v: &Value, check: &str) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .map(|f| f["status"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_hosted_change_is_pending_only_for_the_family_that_changed() {
    let (ns1, _ns2) = world();
    let resolver = ns1.dns;
    // We host far.example too (SOA refresh and platform TTL: an hour); the world's
    // nameservers stand for secondaries that have not caught up.
    let hosted = "$ORIGIN far.example.\n$TTL 3600\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n\
        @ NS ns1\n@ NS ns2\nns1 A 127.0.0.2\nns2 A 127.0.0.3\n";
    let d = TestDaemon::start_tuned(&[("far.example.zone", hosted)], move |c| {
        c.diagnosis.resolver = Some(resolver);
        c.diagnosis.port = resolver.port();
        c.diagnosis.timeout_ms = 300;
    });
    associate(d.http, "far.example", TOKEN);
    assert_eq!(
        status_of(&diagnose(&d), "mx"),
        ["pending"],
        "records we just wrote may still be propagating"
    );

    // Make every change an hour old (as a restart a while later would find it).
    let file = d.zones_dir().join("associations/far.example.yaml");
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let changed = doc["associations"][0]["changed_at"]
        .as_mapping_mut()
        .expect("per-family change times are saved");
    for (_, at) in changed.iter_mut() {
        *at = serde_yaml::Value::from(1u64);
    }
    std::fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let (status, text) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200, "{text}");
    let v = diagnose(&d);
    assert_eq!(status_of(&v, "mx"), ["missing"], "{v}");

    // A key rotation saves the association and changes only the DKIM records.
    let (status, text) = http(
        d.http,
        "POST",
        "/v1/domains/far.example/dkim/rotate",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let v = diagnose(&d);
    assert_eq!(status_of(&v, "mx"), ["missing"], "still red: {v}");
    assert_eq!(v["overall"], "error", "{v}");
}

#[test]
fn saving_a_validation_is_not_logged_as_a_change() {
    let (ns1, ns2) = world();
    let port = ns1.dns.port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    let config = format!(
        "zones_dir: {zones}\nkeys_dir: {keys}\ndns:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"127.0.0.1:0\"\n\
         log:\n  format: json\ndiagnosis:\n  resolver: \"{resolver}\"\n  port: {port}\n  timeout_ms: 300\n",
        zones = dir.path().join("zones").display(),
        keys = dir.path().join("keys").display(),
        resolver = ns1.dns,
    );
    let mut d = ChildDaemon::start_with_config(dir, &config);
    let token = d.token();
    associate(d.http, "far.example", &token);
    d.wait_for("association applied");
    // The customer publishes the ownership token; the next diagnosis sees it and saves
    // `validated` in the association.
    let (_, text) = http(d.http, "GET", "/v1/domains/far.example", Some(&token), None);
    let line = json(&text)["associations"][0]["expected"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}"))
        .iter()
        .find(|e| e["family"] == "ownership")
        .map(|e| e["line"].as_str().unwrap().to_string())
        .expect("an ownership line");
    let parts: Vec<&str> = line.splitn(5, ' ').collect();
    let (owner, rtype, data) = (parts[0], parts[3], parts[4]);
    for ns in [&ns1, &ns2] {
        let body = json!({"operations": [{"op": "replace", "name": owner, "type": rtype, "records": [data]}]});
        let (status, text) = api(ns.http, "PATCH", "/v1/zones/far.example/records", &body);
        assert_eq!(status, 200, "{text}");
    }
    let (status, text) = http(
        d.http,
        "POST",
        "/v1/domains/far.example/diagnose",
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{text}");
    // Every line up to the validation and a while after: none claims the association was
    // applied again (the validation line itself is the news).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut validated = false;
    let mut quiet_until = deadline;
    while let Ok(line) = d
        .lines
        .recv_timeout(quiet_until.saturating_duration_since(Instant::now()))
    {
        assert!(
            !line.contains("association applied"),
            "saving a validation logged as a change: {line}"
        );
        if line.contains("domain validated") {
            assert!(line.contains("\"INFO\""), "{line}");
            validated = true;
            quiet_until = Instant::now() + Duration::from_millis(500);
        }
    }
    assert!(validated, "the ownership token was never seen");
}
