//! mailzone's own ACME client against a local pebble whose DNS-01 checks ask mailzone: the
//! certificate of a hosted domain's web names is issued through challenge records written
//! by mailzone's writer, served by the web listener without a restart, renewed when the
//! daemon's test clock passes the renewal point, and removed with the association. An
//! unreachable directory or a failed validation is reported with its reason, its challenge
//! records removed, nothing lost.
//! Skipped, visibly, when pebble, openssl or curl is missing (scripts/test installs them).

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::pebble::{self, Pebble, have, mode, served};
use common::secondary::free_port;
use common::*;
use mailzone::config::Config;
use mailzone::provision::platform::Platform;
use serde_json::{Value, json};

const MAIL_ZONE: &str = "$ORIGIN mail.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\nweb A 127.0.0.1\n";
const NAMES: [&str; 3] = [
    "autoconfig.shop.test",
    "autodiscover.shop.test",
    "mta-sts.shop.test",
];

fn platform() -> Platform {
    serde_json::from_value(json!({
        "id": "web1",
        "mx": [{"host": "mx1.mail.test.", "priority": 10}],
        "endpoints": [
            {"service": "imap", "host": "imap.mail.test.", "port": 993, "security": "implicit-tls"},
            {"service": "submission", "host": "smtp.mail.test.", "port": 465, "security": "implicit-tls"}
        ],
        "autodiscover_host": "web.mail.test.",
        "autoconfig_host": "web.mail.test.",
        "spf": ["include:spf.mail.test"],
        "dmarc": {"policy": "none"},
        "mta_sts": {"mode": "enforce", "max_age_secs": 86400, "web_host": "web.mail.test."}
    }))
    .unwrap()
}

fn tools() -> bool {
    common::pebble::available() && have("curl", &["--version"])
}

/// A daemon hosting shop.test and mail.test, web listener and ACME on, ACME pointed at
/// `directory` (trusting `ca`), its DNS on `dns_port`.
fn start_daemon(dns_port: u16, directory: &str, ca: &Path) -> TestDaemon {
    TestDaemon::start_tuned(
        &[
            ("shop.test.zone", &small_zone("shop.test", 1, "192.0.2.80")),
            ("mail.test.zone", MAIL_ZONE),
        ],
        |c: &mut Config| {
            c.dns.listen = vec![SocketAddr::from(([127, 0, 0, 1], dns_port))];
            c.web.enabled = true;
            c.web.http_listen = None;
            c.web.https_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            c.platforms = vec![platform()];
            c.acme.enabled = true;
            c.acme.directory_url = directory.to_string();
            c.acme.contact = Some("hostmaster@mail.test".into());
            // Only pebble's own TLS certificate: nothing of the system's bundle.
            c.acme.ca_file = ca.to_path_buf();
            c.acme.extra_ca_file = None;
            c.acme.retry_secs = 3600;
        },
    )
}

fn associate(d: &TestDaemon) {
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/domains",
        &json!({"domain": "shop.test", "platform": "web1", "mode": "authoritative",
                "records": {"mta-sts": true}}),
    );
    assert_eq!(status, 201, "{body}");
}

/// shop.test's entry of `certificates` in `/v1/status`.
fn certificate_status(d: &TestDaemon) -> Value {
    pebble::certificate_status(d, "shop.test")
}

/// Waits (at most 90 s) until shop.test's certificate status satisfies `done`.
fn wait_status(d: &TestDaemon, pebble: Option<&Pebble>, done: impl Fn(&Value) -> bool) -> Value {
    pebble::wait_certificate(d, "shop.test", pebble, done)
}

fn challenges_gone(d: &TestDaemon) {
    for name in NAMES {
        let owner = format!("_acme-challenge.{name}");
        assert_eq!(dig(d.dns, &["+short", &owner, "TXT"]).trim(), "", "{owner}");
    }
    let file = std::fs::read_to_string(d.zones_dir().join("shop.test.zone")).unwrap();
    assert!(!file.contains("_acme-challenge"), "{file}");
}

#[test]
fn a_certificate_is_issued_through_dns01_served_and_renewed_by_the_test_clock() {
    if !tools() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dns_port = free_port("127.0.0.1");
    let pebble = Pebble::start(work.path(), SocketAddr::from(([127, 0, 0, 1], dns_port)));
    let d = start_daemon(dns_port, &pebble.directory, &pebble.tls_cert);
    let root = pebble.issuing_root_pem();
    associate(&d);
    let first = wait_status(&d, Some(&pebble), |s| !s["serial"].is_null());
    let soa_serial = || -> u64 {
        let soa = dig(d.dns, &["+short", "shop.test", "SOA"]);
        soa.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    assert_eq!(first["failures"], 0, "{first}");
    assert_eq!(first["challenge"], "dns-01", "hosted: {first}");
    assert_eq!(
        first["names"],
        json!(NAMES),
        "every web name the families publish: {first}"
    );
    let https = d.daemon().web_https_addr().unwrap();
    for name in NAMES {
        let (serial, _, _) = served(https, name, &root);
        assert_eq!(json!(serial), first["serial"], "{name}");
    }
    let (_, _, line) = served(https, "mta-sts.shop.test", &root);
    assert!(line.contains("200"), "{line}");
    challenges_gone(&d);
    // The status page's TLS box: green, with the expiry.
    let (_, page) = http(d.http, "GET", "/", Some(TOKEN), None);
    assert!(
        page.contains(r#"class="box green" data-check="tls" title="valid until"#),
        "{page}"
    );
    let keys = d.dir.path().join("keys");
    assert_eq!(mode(&keys.join("acme/account.json")), 0o600);
    assert_eq!(mode(&keys.join("acme/shop.test.key")), 0o600);
    assert_eq!(mode(&keys.join("certs/mta-sts.shop.test.key")), 0o600);

    // Past the renewal point (30 days before expiry): a new certificate, no restart, its
    // challenges written and removed through the writer again (the zone's serial moves).
    let serial_before_renewal = soa_serial();
    let not_after = first["not_after"].as_u64().unwrap();
    let now = d.daemon().shared().clock_now();
    let to_renewal = (not_after - 30 * 86_400).saturating_sub(now) + 60;
    d.daemon().shared().advance_clock(to_renewal);
    let second = wait_status(&d, Some(&pebble), |s| {
        !s["serial"].is_null() && s["serial"] != first["serial"]
    });
    assert_eq!(second["failures"], 0, "{second}");
    for name in NAMES {
        let (serial, _, _) = served(https, name, &root);
        assert_eq!(json!(serial), second["serial"], "{name}");
    }
    challenges_gone(&d);
    assert!(
        soa_serial() >= serial_before_renewal + 2,
        "challenge added then removed"
    );
    let next = second["next_order_at"].as_u64().unwrap();
    assert!(
        next > d.daemon().shared().clock_now() + 86_400,
        "the next renewal is planned from the new expiry: {second}"
    );
}

#[test]
fn after_a_restart_the_saved_certificate_is_served_and_not_ordered_again() {
    if !tools() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dns_port = free_port("127.0.0.1");
    let pebble = Pebble::start(work.path(), SocketAddr::from(([127, 0, 0, 1], dns_port)));
    let d = start_daemon(dns_port, &pebble.directory, &pebble.tls_cert);
    let root = pebble.issuing_root_pem();
    associate(&d);
    let first = wait_status(&d, Some(&pebble), |s| !s["serial"].is_null());
    let orders = r#"mailzone_acme_orders_total{result="ok"}"#;
    let (_, metrics) = api(d.http, "GET", "/metrics", &Value::Null);
    assert_eq!(metric(&metrics, orders), 1.0, "{metrics}");
    let d = d.restart();
    let after = certificate_status(&d);
    assert_eq!(after["serial"], first["serial"], "{after}");
    assert_eq!(after["next_order_at"], first["next_order_at"], "{after}");
    let https = d.daemon().web_https_addr().unwrap();
    let (serial, _, _) = served(https, "mta-sts.shop.test", &root);
    assert_eq!(json!(serial), first["serial"]);
    std::thread::sleep(Duration::from_millis(500));
    let (_, metrics) = api(d.http, "GET", "/metrics", &Value::Null);
    assert_eq!(metric(&metrics, orders), 0.0, "no new order: {metrics}");
}

#[test]
fn an_account_the_ca_no_longer_knows_is_made_again() {
    if !tools() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dns_port = free_port("127.0.0.1");
    let mut pebble = Pebble::start(work.path(), SocketAddr::from(([127, 0, 0, 1], dns_port)));
    let d = start_daemon(dns_port, &pebble.directory, &pebble.tls_cert);
    associate(&d);
    let first = wait_status(&d, Some(&pebble), |s| !s["serial"].is_null());
    let account = d.dir.path().join("keys/acme/account.json");
    let before = std::fs::read(&account).unwrap();
    // A new pebble on the same address forgets every account.
    pebble.restart();
    let now = d.daemon().shared().clock_now();
    let not_after = first["not_after"].as_u64().unwrap();
    d.daemon()
        .shared()
        .advance_clock((not_after - 30 * 86_400).saturating_sub(now) + 60);
    let second = wait_status(&d, Some(&pebble), |s| {
        s["serial"] != first["serial"] || s["failures"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(second["failures"], 0, "{second}\npebble: {}", pebble.log());
    assert_ne!(
        std::fs::read(&account).unwrap(),
        before,
        "a new account saved"
    );
    assert_eq!(mode(&account), 0o600);
}

#[test]
fn dissociating_the_domain_removes_its_certificate_and_job() {
    if !tools() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dns_port = free_port("127.0.0.1");
    let pebble = Pebble::start(work.path(), SocketAddr::from(([127, 0, 0, 1], dns_port)));
    let d = start_daemon(dns_port, &pebble.directory, &pebble.tls_cert);
    associate(&d);
    wait_status(&d, Some(&pebble), |s| !s["serial"].is_null());
    let keys = d.dir.path().join("keys");
    // An operator's own certificate for another name stays.
    std::fs::write(keys.join("certs/other.test.crt"), "operator's").unwrap();
    let (status, body) = api(d.http, "DELETE", "/v1/domains/shop.test", &Value::Null);
    assert!(status == 200 || status == 204, "{status} {body}");
    assert_eq!(certificate_status(&d), Value::Null);
    for f in [
        "acme/shop.test.crt",
        "acme/shop.test.key",
        "certs/mta-sts.shop.test.crt",
        "certs/mta-sts.shop.test.key",
        "certs/autoconfig.shop.test.crt",
    ] {
        assert!(!keys.join(f).exists(), "{f} is left");
    }
    assert!(keys.join("certs/other.test.crt").exists());
    let jobs = d.daemon().shared().scheduler.snapshot();
    assert!(
        !jobs
            .iter()
            .any(|(_, k, j)| k.domain == "shop.test" && format!("{j:?}") == "RenewCertificate"),
        "{jobs:?}"
    );
}

#[test]
fn a_failed_validation_is_reported_and_its_challenge_records_are_removed() {
    if !tools() {
        return;
    }
    // pebble asks another server for shop.test, which never has the challenge records.
    let elsewhere_port = free_port("127.0.0.1");
    let _elsewhere = TestDaemon::start_tuned(
        &[("shop.test.zone", &small_zone("shop.test", 1, "192.0.2.80"))],
        |c| c.dns.listen = vec![SocketAddr::from(([127, 0, 0, 1], elsewhere_port))],
    );
    let work = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(
        work.path(),
        SocketAddr::from(([127, 0, 0, 1], elsewhere_port)),
    );
    let d = start_daemon(free_port("127.0.0.1"), &pebble.directory, &pebble.tls_cert);
    associate(&d);
    let s = wait_status(&d, Some(&pebble), |s| {
        s["failures"].as_u64().unwrap_or(0) >= 1
    });
    let error = s["last_error"].as_str().unwrap();
    // The CA's reason: the problem document of each failed challenge, with its name.
    assert!(error.contains("dns-01 validation failed"), "{error}");
    assert!(error.contains("urn:ietf:params:acme:error:"), "{error}");
    assert!(error.contains("shop.test: "), "which name: {error}");
    assert_eq!(s["challenge"], "dns-01", "{s}");
    assert!(s["serial"].is_null(), "{s}");
    challenges_gone(&d);
    assert!(
        !d.dir
            .path()
            .join("keys/certs/mta-sts.shop.test.crt")
            .exists()
    );
}

#[test]
fn an_unreachable_acme_server_is_reported_with_its_reason_and_retried_later() {
    let work = tempfile::tempdir().unwrap();
    // A port nobody listens on; any PEM file as the trusted root.
    let dead = free_port("127.0.0.1");
    let ca = work.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    let dns_port = free_port("127.0.0.1");
    let d = start_daemon(dns_port, &format!("https://127.0.0.1:{dead}/dir"), &ca);
    let serial_before = dig(d.dns, &["+short", "shop.test", "SOA"]);
    associate(&d);
    let s = wait_status(&d, None, |s| s["failures"].as_u64().unwrap_or(0) >= 1);
    let error = s["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("127.0.0.1:{dead}")) && error.contains("cannot connect"),
        "{error}"
    );
    assert!(s["serial"].is_null(), "{s}");
    // Retried after `retry_secs`, not at once.
    let next = s["next_order_at"].as_u64().unwrap();
    assert!(next >= d.daemon().shared().clock_now() + 3000, "{s}");
    // The status page's TLS box is red and says why and when the next order is.
    let (_, page) = http(d.http, "GET", "/", Some(TOKEN), None);
    let tls = page
        .split(r#"<details class="box red" data-check="tls">"#)
        .nth(1)
        .unwrap_or_else(|| panic!("a red TLS box: {page}"));
    let tls = &tls[..tls.find("</details>").unwrap()];
    assert!(tls.contains("no certificate"), "{tls}");
    assert!(tls.contains("cannot connect"), "{tls}");
    assert!(tls.contains("next order"), "{tls}");
    // Nothing lost: the association and its records are there, no challenge was written.
    let (status, body) = api(d.http, "GET", "/v1/domains/shop.test", &Value::Null);
    assert_eq!(status, 200, "{body}");
    assert!(
        !dig(d.dns, &["+short", "_mta-sts.shop.test", "TXT"])
            .trim()
            .is_empty()
    );
    challenges_gone(&d);
    assert_ne!(serial_before.trim(), "");
}

#[test]
fn an_account_file_others_may_read_is_refused_with_its_path() {
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    let dns_port = free_port("127.0.0.1");
    let dead = free_port("127.0.0.1");
    let d = start_daemon(dns_port, &format!("https://127.0.0.1:{dead}/dir"), &ca);
    let acme = d.dir.path().join("keys/acme");
    std::fs::create_dir_all(&acme).unwrap();
    std::fs::set_permissions(&acme, std::fs::Permissions::from_mode(0o700)).unwrap();
    let account = acme.join("account.json");
    std::fs::write(&account, "{}").unwrap();
    std::fs::set_permissions(&account, std::fs::Permissions::from_mode(0o644)).unwrap();
    associate(&d);
    let s = wait_status(&d, None, |s| s["failures"].as_u64().unwrap_or(0) >= 1);
    let error = s["last_error"].as_str().unwrap();
    assert!(error.contains("account.json"), "{error}");
    assert!(error.contains("chmod"), "{error}");
    assert_eq!(std::fs::read_to_string(&account).unwrap(), "{}");
}
