//! Certificates by ACME HTTP-01 for external domains (`acme.http01`): mailzone's own client
//! against a local pebble whose HTTP-01 checks fetch from mailzone's plain-HTTP web
//! listener. The external domain's zone is served by a second mailzone, "the world's DNS",
//! whose A records point the web names at the first one's loopback address, as an operator
//! would point them at the listener. The certificate is issued, served over HTTPS,
//! renewed by the test clock, kept when a renewal fails (with the CA's reason), and removed
//! with the association; the pending tokens are answered only over plain HTTP, only on
//! their host, and only while their order runs.
//! The pebble tests are skipped, visibly, when pebble, openssl or curl is missing
//! (scripts/test installs them).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::pebble::{self, Pebble, have, mode, served};
use common::secondary::free_port;
use common::*;
use mailzone::config::Config;
use mailzone::provision::platform::Platform;
use serde_json::{Value, json};

const DOMAIN: &str = "ext.test";
const NAMES: [&str; 3] = [
    "autoconfig.ext.test",
    "autodiscover.ext.test",
    "mta-sts.ext.test",
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
        "ownership_target": "check.mail.test.",
        "spf": ["include:spf.mail.test"],
        "dmarc": {"policy": "none"},
        "mta_sts": {"mode": "enforce", "max_age_secs": 86400, "web_host": "web.mail.test."}
    }))
    .unwrap()
}

fn tools() -> bool {
    common::pebble::available() && have("curl", &["--version"])
}

/// ext.test as the world serves it: its web names at `ip`.
fn world_zone(serial: u32, ip: &str) -> String {
    format!(
        "$ORIGIN ext.test.\n$TTL 60\n@ SOA ns1 hostmaster {serial} 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\nmta-sts A {ip}\nautoconfig A {ip}\nautodiscover A {ip}\n"
    )
}

/// The world's DNS: a second mailzone hosting ext.test, its web names at 127.0.0.1.
fn start_world() -> TestDaemon {
    TestDaemon::start(&[("ext.test.zone", &world_zone(1, "127.0.0.1"))])
}

/// Points the world's ext.test web names at `ip` (a new serial, then a reload).
fn repoint_world(world: &TestDaemon, serial: u32, ip: &str) {
    std::fs::write(
        world.zones_dir().join("ext.test.zone"),
        world_zone(serial, ip),
    )
    .unwrap();
    let (status, body) = api(world.http, "POST", "/v1/reload", &Value::Null);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        dig(world.dns, &["+short", "mta-sts.ext.test", "A"]).trim(),
        ip
    );
}

/// The daemon under test: ext.test is not hosted here (external), web listener on (plain
/// HTTP on `http_port`, where pebble's HTTP-01 checks go), ACME with HTTP-01 on.
fn start_daemon(http_port: u16, directory: &str, ca: &Path, http01: bool) -> TestDaemon {
    TestDaemon::start_tuned(&[], |c: &mut Config| {
        c.web.enabled = true;
        c.web.http_listen = Some(SocketAddr::from(([127, 0, 0, 1], http_port)));
        c.web.https_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.platforms = vec![platform()];
        c.acme.enabled = true;
        c.acme.http01 = http01;
        c.acme.directory_url = directory.to_string();
        c.acme.contact = Some("hostmaster@mail.test".into());
        // Only pebble's own TLS certificate: nothing of the system's bundle.
        c.acme.ca_file = ca.to_path_buf();
        c.acme.extra_ca_file = None;
        c.acme.retry_secs = 3600;
    })
}

/// The three of a test with pebble: the world's DNS, pebble asking it, and mailzone.
struct Setup {
    d: TestDaemon,
    pebble: Pebble,
    world: TestDaemon,
    _work: tempfile::TempDir,
}

fn setup() -> Setup {
    let world = start_world();
    let work = tempfile::tempdir().unwrap();
    let http_port = free_port("127.0.0.1");
    let pebble = Pebble::start_with_http_port(work.path(), world.dns, http_port);
    let d = start_daemon(http_port, &pebble.directory, &pebble.tls_cert, true);
    Setup {
        d,
        pebble,
        world,
        _work: work,
    }
}

fn associate(d: &TestDaemon) {
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/domains",
        &json!({"domain": DOMAIN, "platform": "web1", "mode": "authoritative",
                "records": {"mta-sts": true}}),
    );
    assert_eq!(status, 201, "{body}");
    assert!(
        json(&body)["to_paste"].is_object(),
        "external, not hosted: {body}"
    );
}

/// ext.test's entry of `certificates` in `/v1/status` (null when there is none).
fn certificate_status(d: &TestDaemon) -> Value {
    pebble::certificate_status(d, DOMAIN)
}

/// Waits (at most 90 s) until ext.test's certificate status satisfies `done`.
fn wait_status(d: &TestDaemon, pebble: Option<&Pebble>, done: impl Fn(&Value) -> bool) -> Value {
    pebble::wait_certificate(d, DOMAIN, pebble, done)
}

fn issued(s: &Setup) -> Value {
    associate(&s.d);
    let first = wait_status(&s.d, Some(&s.pebble), |c| {
        !c["serial"].is_null() || c["failures"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(first["failures"], 0, "{first}\npebble: {}", s.pebble.log());
    first
}

/// A GET over plain HTTP with this `Host`: (status, body).
fn plain_get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    mailzone::cli::client::parse_response(&raw).unwrap()
}

/// A GET over HTTPS (curl, any certificate accepted) with SNI and Host `host`: the status.
fn https_status(addr: SocketAddr, host: &str, path: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--resolve")
        .arg(format!("{host}:{}:127.0.0.1", addr.port()))
        .arg(format!("https://{host}:{}{path}", addr.port()))
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The challenge tokens pebble fetched (its log names each URL it validates).
fn tokens_fetched(pebble: &Pebble) -> Vec<String> {
    let log = pebble.log();
    let mut out: Vec<String> = log
        .split("/.well-known/acme-challenge/")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>()
        })
        .filter(|t| !t.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Moves the daemon's clock past the renewal point of the certificate in `status`.
fn past_renewal(d: &TestDaemon, status: &Value) {
    let not_after = status["not_after"].as_u64().unwrap();
    let now = d.daemon().shared().clock_now();
    d.daemon()
        .shared()
        .advance_clock((not_after - 30 * 86_400).saturating_sub(now) + 60);
}

#[test]
fn an_external_domain_gets_a_certificate_by_http01_served_by_the_https_listener() {
    if !tools() {
        return;
    }
    let s = setup();
    let root = s.pebble.issuing_root_pem();
    let first = issued(&s);
    assert_eq!(first["challenge"], "http-01", "{first}");
    assert_eq!(first["names"], json!(NAMES), "{first}");
    let https = s.d.daemon().web_https_addr().unwrap();
    for name in NAMES {
        let (serial, sans, _) = served(https, name, &root);
        assert_eq!(json!(serial), first["serial"], "{name}");
        let mut sans = sans;
        sans.sort();
        assert_eq!(
            sans, NAMES,
            "one certificate for all of the domain's web names"
        );
    }
    let (_, _, line) = served(https, "mta-sts.ext.test", &root);
    assert!(line.contains("200"), "the policy is served: {line}");
    let keys = s.d.dir.path().join("keys");
    assert_eq!(mode(&keys.join("acme/ext.test.key")), 0o600);
    assert_eq!(mode(&keys.join("certs/mta-sts.ext.test.key")), 0o600);
    assert!(
        s.d.daemon().shared().acme_tokens.is_empty(),
        "no token pending once the order ended"
    );
}

#[test]
fn the_tokens_of_an_order_are_gone_when_it_ends() {
    if !tools() {
        return;
    }
    let s = setup();
    issued(&s);
    let tokens = tokens_fetched(&s.pebble);
    assert_eq!(
        tokens.len(),
        3,
        "pebble fetched one token per name: {}",
        s.pebble.log()
    );
    let http = s.d.daemon().web_http_addr().unwrap();
    for name in NAMES {
        for token in &tokens {
            let (status, body) =
                plain_get(http, name, &format!("/.well-known/acme-challenge/{token}"));
            assert_eq!(status, 404, "{name} {token}: {body}");
            assert!(!body.contains(token.as_str()), "{body}");
        }
    }
    assert!(s.d.daemon().shared().acme_tokens.is_empty());
}

#[test]
fn renewal_by_http01_follows_the_test_clock() {
    if !tools() {
        return;
    }
    let s = setup();
    let root = s.pebble.issuing_root_pem();
    let first = issued(&s);
    past_renewal(&s.d, &first);
    let second = wait_status(&s.d, Some(&s.pebble), |c| {
        c["serial"] != first["serial"] || c["failures"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(
        second["failures"],
        0,
        "{second}\npebble: {}",
        s.pebble.log()
    );
    assert_eq!(second["challenge"], "http-01");
    let https = s.d.daemon().web_https_addr().unwrap();
    for name in NAMES {
        let (serial, _, _) = served(https, name, &root);
        assert_eq!(json!(serial), second["serial"], "{name}: no restart needed");
    }
    let next = second["next_order_at"].as_u64().unwrap();
    assert!(
        next > s.d.daemon().shared().clock_now() + 86_400,
        "the next renewal is planned from the new expiry: {second}"
    );
    assert!(s.d.daemon().shared().acme_tokens.is_empty());
}

#[test]
fn a_failed_http01_validation_is_reported_with_the_cas_reason_and_the_certificate_kept() {
    if !tools() {
        return;
    }
    let s = setup();
    let root = s.pebble.issuing_root_pem();
    let first = issued(&s);
    // The web names now point where no listener is: pebble cannot fetch the tokens.
    repoint_world(&s.world, 2, "127.0.0.2");
    past_renewal(&s.d, &first);
    let failed = wait_status(&s.d, Some(&s.pebble), |c| {
        c["failures"].as_u64().unwrap_or(0) > 0 || c["serial"] != first["serial"]
    });
    assert_eq!(failed["failures"], 1, "{failed}");
    let error = failed["last_error"].as_str().unwrap();
    // The problem document of the failed challenge, as the CA wrote it: its type, and the
    // address it could not reach.
    assert!(error.contains("http-01 validation failed"), "{error}");
    assert!(error.contains("urn:ietf:params:acme:error:"), "{error}");
    assert!(error.contains("127.0.0.2"), "{error}");
    assert!(error.contains(".ext.test:"), "which name: {error}");
    // The certificate held is kept: the same one in the status and on the wire.
    assert_eq!(failed["serial"], first["serial"], "{failed}");
    assert_eq!(failed["not_after"], first["not_after"], "{failed}");
    let https = s.d.daemon().web_https_addr().unwrap();
    for name in NAMES {
        let (serial, _, _) = served(https, name, &root);
        assert_eq!(json!(serial), first["serial"], "{name}");
    }
    let keys = s.d.dir.path().join("keys");
    assert!(keys.join("acme/ext.test.crt").exists());
    // Retried after `retry_secs`, not at once; its tokens are withdrawn.
    let next = failed["next_order_at"].as_u64().unwrap();
    assert!(next >= s.d.daemon().shared().clock_now() + 3000, "{failed}");
    assert!(s.d.daemon().shared().acme_tokens.is_empty());
}

#[test]
fn dissociating_an_external_domain_removes_its_http01_certificate() {
    if !tools() {
        return;
    }
    let s = setup();
    issued(&s);
    let keys = s.d.dir.path().join("keys");
    assert!(keys.join("certs/mta-sts.ext.test.crt").exists());
    let (status, body) = api(s.d.http, "DELETE", "/v1/domains/ext.test", &Value::Null);
    assert!(status == 200 || status == 204, "{status} {body}");
    assert_eq!(certificate_status(&s.d), Value::Null);
    for f in [
        "acme/ext.test.crt",
        "acme/ext.test.key",
        "certs/mta-sts.ext.test.crt",
        "certs/mta-sts.ext.test.key",
        "certs/autoconfig.ext.test.crt",
        "certs/autodiscover.ext.test.key",
    ] {
        assert!(!keys.join(f).exists(), "{f} is left");
    }
    let jobs = s.d.daemon().shared().scheduler.snapshot();
    assert!(
        !jobs
            .iter()
            .any(|(_, k, _)| k.domain.trim_end_matches('.') == DOMAIN),
        "{jobs:?}"
    );
    let (_, metrics) = api(s.d.http, "GET", "/metrics", &Value::Null);
    assert!(!metrics.contains(DOMAIN), "no series of it is left");
    // Not served any more: no certificate for its names.
    let https = s.d.daemon().web_https_addr().unwrap();
    assert_eq!(
        https_status(https, "mta-sts.ext.test", "/.well-known/mta-sts.txt"),
        0
    );
}

#[test]
fn http01_is_off_by_default_so_an_external_domain_gets_no_order() {
    // A directory nobody listens on: an order would show as a failure.
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    assert!(!Config::default().acme.http01);
    let dead = free_port("127.0.0.1");
    let d = start_daemon(
        free_port("127.0.0.1"),
        &format!("https://127.0.0.1:{dead}/dir"),
        &ca,
        Config::default().acme.http01,
    );
    associate(&d);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(certificate_status(&d), Value::Null);
    let jobs = d.daemon().shared().scheduler.snapshot();
    assert!(
        !jobs
            .iter()
            .any(|(_, _, j)| format!("{j:?}") == "RenewCertificate"),
        "{jobs:?}"
    );
    let (_, metrics) = api(d.http, "GET", "/metrics", &Value::Null);
    assert_eq!(
        metric(&metrics, r#"mailzone_acme_orders_total{result="failed"}"#),
        0.0
    );
}

#[test]
fn http01_without_the_plain_http_listener_is_refused_with_the_key_named() {
    let err = Config::from_yaml(
        "acme: {enabled: true, http01: true}\nweb: {enabled: true, http_listen: null}\n",
        "c.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("acme.http01"), "{err}");
    assert!(err.contains("web.http_listen"), "why: {err}");
    let err = Config::from_yaml("acme: {enabled: true, http01: true}\n", "c.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("acme.http01") && err.contains("web.enabled"),
        "{err}"
    );
}

/// A daemon with the web listener on and a certificate for mta-sts.ext.test (self-signed,
/// for the HTTPS side), ext.test associated, and one token pending for mta-sts.ext.test.
fn with_pending_token() -> (TestDaemon, &'static str, &'static str) {
    let dead = free_port("127.0.0.1");
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, "").unwrap();
    let d = start_daemon(0, &format!("https://127.0.0.1:{dead}/dir"), &ca, false);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["mta-sts.ext.test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    d.daemon()
        .web_certs()
        .unwrap()
        .install("mta-sts.ext.test", &cert.pem(), &key.serialize_pem())
        .unwrap();
    associate(&d);
    let token = "tok_ABC-123def456ghi789jkl";
    let key_authorization = "tok_ABC-123def456ghi789jkl.thumbprint";
    d.daemon()
        .shared()
        .acme_tokens
        .insert(DOMAIN, "mta-sts.ext.test", token, key_authorization)
        .unwrap();
    (d, token, key_authorization)
}

fn challenge_requests(d: &TestDaemon, status: u16) -> f64 {
    let (_, metrics) = api(d.http, "GET", "/metrics", &Value::Null);
    metric(
        &metrics,
        &format!(r#"mailzone_web_requests_total{{document="acme_challenge",status="{status}"}}"#),
    )
}

#[test]
fn a_pending_token_is_answered_with_its_key_authorization_over_plain_http() {
    let (d, token, key_authorization) = with_pending_token();
    let http = d.daemon().web_http_addr().unwrap();
    let path = format!("/.well-known/acme-challenge/{token}");
    // As pebble and Let's Encrypt ask: the host with the port.
    let (status, body) = plain_get(http, &format!("mta-sts.ext.test:{}", http.port()), &path);
    assert_eq!((status, body.as_str()), (200, key_authorization));
    assert_eq!(challenge_requests(&d, 200), 1.0);
}

#[test]
fn a_token_asked_for_with_another_host_is_a_404() {
    let (d, token, key_authorization) = with_pending_token();
    let http = d.daemon().web_http_addr().unwrap();
    let path = format!("/.well-known/acme-challenge/{token}");
    for host in [
        "autoconfig.ext.test",
        "ext.test",
        "mta-sts.other.test",
        "127.0.0.1",
    ] {
        let (status, body) = plain_get(http, host, &path);
        assert_eq!(status, 404, "{host}");
        assert!(!body.contains(key_authorization), "{host}: {body}");
    }
    assert_eq!(challenge_requests(&d, 404), 4.0);
}

#[test]
fn a_token_asked_for_over_https_is_a_404() {
    let (d, token, _) = with_pending_token();
    let https = d.daemon().web_https_addr().unwrap();
    let path = format!("/.well-known/acme-challenge/{token}");
    // The HTTPS listener answers the host (the policy is there), never a token.
    assert_eq!(
        https_status(https, "mta-sts.ext.test", "/.well-known/mta-sts.txt"),
        200
    );
    assert_eq!(https_status(https, "mta-sts.ext.test", &path), 404);
    assert_eq!(challenge_requests(&d, 404), 1.0);
}

#[test]
fn an_unknown_or_oversized_token_is_a_404() {
    let (d, token, _) = with_pending_token();
    let http = d.daemon().web_http_addr().unwrap();
    let long = "a".repeat(5000);
    let upper = token.to_ascii_uppercase();
    for t in [
        "unknown-token",
        upper.as_str(),
        "",
        "../../etc/passwd",
        long.as_str(),
    ] {
        let (status, _) = plain_get(
            http,
            "mta-sts.ext.test",
            &format!("/.well-known/acme-challenge/{t}"),
        );
        assert_eq!(status, 404, "{t:.40}");
    }
}

#[test]
fn dissociating_the_domain_withdraws_its_pending_tokens() {
    let (d, token, _) = with_pending_token();
    let (status, body) = api(d.http, "DELETE", "/v1/domains/ext.test", &Value::Null);
    assert!(status == 200 || status == 204, "{status} {body}");
    assert!(d.daemon().shared().acme_tokens.is_empty());
    let http = d.daemon().web_http_addr().unwrap();
    let (status, _) = plain_get(
        http,
        "mta-sts.ext.test",
        &format!("/.well-known/acme-challenge/{token}"),
    );
    assert_eq!(status, 404);
}
