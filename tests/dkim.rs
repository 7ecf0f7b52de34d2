//! DKIM: keys made and published by an association, messages signed by the daemon and
//! verified by dkimpy (not ours) through the daemon's own DNS answers, and rotation.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use mailzone::dkim::DkimAlgorithm;
use mailzone::provision::platform::{DkimPolicy, DkimPublication, Platform};
use serde_json::{Value, json};

const SHOP: &str = "$ORIGIN shop.test.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n\
    @ NS ns1.provider.example.\n@ A 192.0.2.80\n";

fn platform(id: &str, tune: impl FnOnce(&mut DkimPolicy)) -> Platform {
    let mut p = Platform::example();
    p.id = id.into();
    let mut policy = DkimPolicy::default();
    tune(&mut policy);
    p.dkim = Some(policy);
    p
}

fn daemon(extra: Vec<Platform>, check_ms: u64) -> TestDaemon {
    TestDaemon::start_tuned(&[("shop.test.zone", SHOP)], move |c| {
        c.platforms.extend(extra);
        c.dkim_check_interval_ms = check_ms;
    })
}

fn associate(d: &TestDaemon, domain: &str, platform: &str) -> Value {
    let body = json!({"domain": domain, "platform": platform, "mode": "authoritative", "records": {"dkim": true}});
    let (status, text) = api(d.http, "POST", "/v1/domains", &body);
    assert_eq!(status, 201, "{text}");
    json(&text)
}

fn sign(d: &TestDaemon, domain: &str, message: &str) -> (u16, Value) {
    let body = json!({"domain": domain, "message": message});
    let (status, text) = api(d.http, "POST", "/v1/dkim/sign", &body);
    (status, json(&text))
}

/// The message as sent: the signature headers on top, CRLF line ends.
fn signed(d: &TestDaemon, domain: &str, message: &str) -> Vec<u8> {
    let (status, v) = sign(d, domain, message);
    assert_eq!(status, 200, "{v}");
    let mut out: Vec<u8> = v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_str().unwrap().bytes())
        .collect();
    out.extend_from_slice(&mailzone::dkim::message::to_crlf(message.as_bytes()));
    out
}

/// dkimpy's verdict, keys fetched from the daemon's DNS.
fn dkimpy(d: &TestDaemon, message: &[u8]) -> (bool, String) {
    let mut child = Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tools/dkim_verify.py"
        ))
        .args([d.dns.ip().to_string(), d.dns.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3-dkim is not installed: run the README's test command");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), message).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Our own `mailzone dkim verify`, asking the daemon's DNS.
fn our_verify(d: &TestDaemon, message: &[u8]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailzone"))
        .args(["dkim", "verify", "--nameserver", &d.dns.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), message).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn generations(d: &TestDaemon, domain: &str) -> Vec<Value> {
    let (_, text) = http(
        d.http,
        "GET",
        &format!("/v1/domains/{domain}"),
        Some(TOKEN),
        None,
    );
    json(&text)["associations"][0]["dkim"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn selectors_in(g: &Value) -> Vec<String> {
    g["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["selector"].as_str().unwrap().to_string())
        .collect()
}

fn txt(d: &TestDaemon, name: &str) -> (ResponseCode, Vec<Vec<u8>>) {
    let m = tcp(d.dns, name, RecordType::TXT);
    let strings = m
        .answers
        .iter()
        .flat_map(|r| match &r.data {
            RData::TXT(t) => t.txt_data.iter().map(|s| s.to_vec()).collect(),
            _ => vec![],
        })
        .collect();
    (m.metadata.response_code, strings)
}

const MESSAGE: &str = "From: Alice <alice@shop.test>\r\nTo: bob@example.net\r\nSubject: Hello\r\n\
    Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@shop.test>\r\n\r\nHi Bob,\r\nsee you.\r\n";

#[test]
fn an_association_with_dkim_publishes_an_active_key_and_its_successor() {
    let d = daemon(vec![], 60_000);
    associate(&d, "shop.test", "pro1");
    let gens = generations(&d, "shop.test");
    assert_eq!(gens.len(), 2);
    assert_eq!(gens[0]["state"], "active");
    assert_eq!(gens[1]["state"], "published");
    for g in &gens {
        let selector = &selectors_in(g)[0];
        let (rcode, strings) = txt(&d, &format!("{selector}._domainkey.shop.test."));
        assert_eq!(rcode, ResponseCode::NoError);
        let value: Vec<u8> = strings.concat();
        assert!(
            value.starts_with(b"v=DKIM1; k=rsa; p=MIIBIjAN"),
            "SPKI form: {}",
            String::from_utf8_lossy(&value)
        );
    }
    // The zone stays standard.
    let out = Command::new("named-checkzone")
        .args(["-i", "local", "shop.test"])
        .arg(d.zones_dir().join("shop.test.zone"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn signatures_verify_with_dkimpy_for_rsa_and_ed25519() {
    let d = daemon(
        vec![platform("dual", |p| {
            p.algorithms = vec![DkimAlgorithm::Rsa, DkimAlgorithm::Ed25519]
        })],
        60_000,
    );
    associate(&d, "shop.test", "dual");
    let (status, v) = sign(&d, "shop.test", MESSAGE);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["signatures"].as_array().unwrap().len(),
        2,
        "dual signing: RSA and Ed25519"
    );
    let message = signed(&d, "shop.test", MESSAGE);
    let (ok, out) = dkimpy(&d, &message);
    assert!(ok, "dkimpy: {out}\n{}", String::from_utf8_lossy(&message));
    assert_eq!(out.matches("pass").count(), 2, "{out}");
    let (ok, out) = our_verify(&d, &message);
    assert!(ok, "{out}");
}

#[test]
fn tricky_messages_all_verify() {
    let d = daemon(
        vec![platform("dual", |p| {
            p.algorithms = vec![DkimAlgorithm::Rsa, DkimAlgorithm::Ed25519]
        })],
        60_000,
    );
    associate(&d, "shop.test", "dual");
    let long = "x".repeat(2000);
    let corpus = [
        ("trailing whitespace-only lines", "From: a@shop.test\r\nSubject: t\r\n\r\nHello!\r\n  \r\n\t\r\n".to_string()),
        ("folded headers", "From: a@shop.test\r\nSubject: a very\r\n  long\r\n\tsubject\r\nTo: x@y.example,\r\n z@y.example\r\n\r\nbody\r\n".to_string()),
        ("empty body", "From: a@shop.test\r\nSubject: empty\r\n\r\n".to_string()),
        ("LF line ends", "From: a@shop.test\nSubject: lf\n\nline one\nline two\n".to_string()),
        ("8-bit body", "From: a@shop.test\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nh\u{e9}llo w\u{f6}rld \u{2603}\r\n".to_string()),
        ("very long lines", format!("From: a@shop.test\r\nSubject: long\r\n\r\n{long}\r\n{long} {long}\r\n")),
        ("spaces inside lines", "From: a@shop.test\r\nSubject:   spaced    out  \r\n\r\n a  b \t c \r\n\r\n\r\n".to_string()),
    ];
    for (what, message) in corpus {
        let signed = signed(&d, "shop.test", &message);
        let (ok, out) = dkimpy(&d, &signed);
        assert!(ok, "{what}: dkimpy says {out}");
        let (ok, out) = our_verify(&d, &signed);
        assert!(ok, "{what}: we say {out}");
    }
}

#[test]
fn a_message_altered_after_signing_fails() {
    let d = daemon(vec![], 60_000);
    associate(&d, "shop.test", "pro1");
    let message = signed(&d, "shop.test", MESSAGE);
    let text = String::from_utf8(message).unwrap();
    for altered in [
        text.replace("see you.", "see you!"),
        text.replace("Subject: Hello", "Subject: Hel1o"),
    ] {
        let (ok, out) = dkimpy(&d, altered.as_bytes());
        assert!(!ok, "dkimpy accepted an altered message: {out}");
        let (ok, out) = our_verify(&d, altered.as_bytes());
        assert!(!ok, "we accepted an altered message: {out}");
    }
}

#[test]
fn a_long_key_record_is_split_in_255_byte_strings_and_served_over_udp_and_tcp() {
    let d = daemon(vec![platform("big", |p| p.rsa_bits = 4096)], 60_000);
    associate(&d, "shop.test", "big");
    let selector = selectors_in(&generations(&d, "shop.test")[0])[0].clone();
    let name = format!("{selector}._domainkey.shop.test.");
    let (_, strings) = txt(&d, &name);
    assert!(strings.len() >= 3, "a 4096-bit key needs several strings");
    assert!(strings.iter().all(|s| s.len() <= 255));
    let whole = strings.concat();
    let over_udp = udp(d.dns, &name, RecordType::TXT);
    assert!(!over_udp.metadata.truncation, "fits in 1232 bytes");
    let RData::TXT(t) = &over_udp.answers[0].data else {
        panic!()
    };
    assert_eq!(t.txt_data.concat(), whole);
    let small = dig(d.dns, &["+bufsize=512", "+ignore", &name, "TXT"]);
    assert!(small.contains(" tc"), "{small}");
    let message = signed(&d, "shop.test", MESSAGE);
    let (ok, out) = dkimpy(&d, &message);
    assert!(ok, "{out}");
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_rotation_runs_on_its_own_with_short_durations() {
    let quick = platform("quick", |p| {
        p.rotate_after_secs = 1;
        // Long enough for the test to see the retiring state on a loaded machine.
        p.keep_retired_secs = 3;
    });
    let d = daemon(vec![quick], 100);
    associate(&d, "shop.test", "quick");
    let first = generations(&d, "shop.test");
    let old = selectors_in(&first[0])[0].clone();
    let successor = selectors_in(&first[1])[0].clone();

    wait_for("the successor to sign", || {
        let g = generations(&d, "shop.test");
        g.iter()
            .any(|g| g["state"] == "active" && selectors_in(g)[0] == successor)
    });
    let g = generations(&d, "shop.test");
    assert!(
        g.iter()
            .any(|g| g["state"] == "retiring" && selectors_in(g)[0] == old),
        "{g:?}"
    );
    assert!(
        g.iter().any(|g| g["state"] == "published"),
        "a new successor is prepared: {g:?}"
    );
    let message = signed(&d, "shop.test", MESSAGE);
    assert!(String::from_utf8_lossy(&message).contains(&format!("s={successor};")));
    assert!(dkimpy(&d, &message).0);

    wait_for("the retired key to go", || {
        txt(&d, &format!("{old}._domainkey.shop.test.")).0 == ResponseCode::NXDomain
    });
    wait_for("its key file to be removed", || {
        !d.dir
            .path()
            .join(format!("keys/dkim/shop.test/{old}.pem"))
            .exists()
    });
    // The record goes first, then the key file, then the event is counted.
    wait_for("the removal to be counted", || {
        http(d.http, "GET", "/metrics", None, None)
            .1
            .contains(r#"mailzone_dkim_rotation_events_total{event="removed"}"#)
    });
    let (_, metrics) = http(d.http, "GET", "/metrics", None, None);
    assert!(
        metrics.contains("mailzone_dkim_key_age_seconds{domain=\"shop.test.\""),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mailzone_dkim_signatures_total{algorithm="rsa"}"#),
        "{metrics}"
    );
}

#[test]
fn rotation_can_be_asked_for() {
    let d = daemon(vec![], 60_000);
    associate(&d, "shop.test", "pro1");
    let successor = selectors_in(&generations(&d, "shop.test")[1])[0].clone();
    let (status, text) = http(
        d.http,
        "POST",
        "/v1/domains/shop.test/dkim/rotate",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let g = generations(&d, "shop.test");
    assert_eq!(g.len(), 3);
    assert!(
        g.iter()
            .any(|g| g["state"] == "active" && selectors_in(g)[0] == successor)
    );
    assert!(dkimpy(&d, &signed(&d, "shop.test", MESSAGE)).0);
}

#[test]
fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = daemon(vec![], 60_000);
    associate(&d, "shop.test", "pro1");
    let dir = d.dir.path().join("keys/dkim/shop.test");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let mut files = 0;
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap();
        assert_eq!(
            f.metadata().unwrap().permissions().mode() & 0o777,
            0o600,
            "{:?}",
            f.path()
        );
        files += 1;
    }
    assert_eq!(files, 2);
    // Never through the API.
    let (_, text) = http(d.http, "GET", "/v1/domains/shop.test", Some(TOKEN), None);
    assert!(!text.contains("PRIVATE"), "{text}");
}

#[test]
fn a_malformed_message_is_refused_with_422() {
    let d = daemon(vec![], 60_000);
    associate(&d, "shop.test", "pro1");
    let (status, v) = sign(
        &d,
        "shop.test",
        "From: a@shop.test\r\nSubject: no body separator",
    );
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no empty line"),
        "{v}"
    );
    let (status, v) = sign(&d, "shop.test", "Subject: no from\r\n\r\nbody");
    assert_eq!(status, 422);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("no From"),
        "{v}"
    );
    let (status, _) = sign(&d, "unknown.test", MESSAGE);
    assert_eq!(status, 404);
}

#[test]
fn an_unusable_key_file_is_reported_and_stops_signing_without_being_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let d = daemon(vec![], 60_000);
    associate(&d, "shop.test", "pro1");
    let selector = selectors_in(&generations(&d, "shop.test")[0])[0].clone();
    let file = d
        .dir
        .path()
        .join(format!("keys/dkim/shop.test/{selector}.pem"));
    let content = std::fs::read(&file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, v) = sign(&d, "shop.test", MESSAGE);
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("0600"),
        "{v}"
    );
    let (_, text) = http(d.http, "GET", "/v1/status", None, None);
    assert!(
        json(&text)["dkim_errors"]["shop.test."]
            .as_str()
            .unwrap_or("")
            .contains("0600"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        content,
        "the key is never replaced"
    );

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        &file,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (status, v) = sign(&d, "shop.test", MESSAGE);
    assert_eq!(status, 409, "corrupt key: {v}");
    std::fs::remove_file(&file).unwrap();
    let (status, v) = sign(&d, "shop.test", MESSAGE);
    assert_eq!(status, 409, "missing key: {v}");
    assert!(!file.exists(), "no key is generated over a missing one");
}

#[test]
fn an_external_domain_gets_its_key_records_to_paste_and_does_not_sign_before_they_are_seen() {
    let d = daemon(vec![], 60_000);
    let v = associate(&d, "far.example", "pro1");
    let lines = v["to_paste"]["dkim"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "the active key and its successor");
    let line = lines[0].as_str().unwrap();
    assert!(
        line.contains("._domainkey.far.example. 3600 IN TXT \"v=DKIM1; k=rsa; p=MIIB"),
        "{line}"
    );
    assert!(
        line.contains("\" \""),
        "split into strings of at most 255 bytes: {line}"
    );
    assert_eq!(generations(&d, "far.example")[0]["state"], "generated");
    let (status, v) = sign(&d, "far.example", "From: a@far.example\r\n\r\nx\r\n");
    assert_eq!(status, 409, "{v}");
}

#[test]
fn cname_publication_serves_the_key_in_the_delegation_zone() {
    let dz = "$ORIGIN dkim.provider.test.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n@ NS ns1.provider.example.\n";
    let delegating = platform("deleg", |p| {
        p.publication = DkimPublication::Cname;
        p.delegation_zone = Some("dkim.provider.test.".into());
    });
    let d = TestDaemon::start_tuned(&[("dkim.provider.test.zone", dz)], move |c| {
        c.platforms.push(delegating)
    });
    let v = associate(&d, "far.example", "deleg");
    let line = v["to_paste"]["dkim"][0].as_str().unwrap().to_string();
    let selector = selectors_in(&generations(&d, "far.example")[0])[0].clone();
    assert_eq!(
        line,
        format!(
            "{selector}._domainkey.far.example. 3600 IN CNAME {selector}._domainkey.far.example.dkim.provider.test."
        )
    );
    let (rcode, strings) = txt(
        &d,
        &format!("{selector}._domainkey.far.example.dkim.provider.test."),
    );
    assert_eq!(rcode, ResponseCode::NoError);
    assert!(strings.concat().starts_with(b"v=DKIM1; k=rsa; p="));
    assert_eq!(
        generations(&d, "far.example")[0]["state"],
        "active",
        "served by us, so it signs"
    );
    let (status, _) = sign(&d, "far.example", "From: a@far.example\r\n\r\nx\r\n");
    assert_eq!(status, 200);
    // Dissociating removes the delegated records and the keys.
    let (status, _) = http(
        d.http,
        "DELETE",
        "/v1/domains/far.example",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        txt(
            &d,
            &format!("{selector}._domainkey.far.example.dkim.provider.test.")
        )
        .0,
        ResponseCode::NXDomain
    );
    assert!(
        !d.dir
            .path()
            .join(format!("keys/dkim/far.example/{selector}.pem"))
            .exists()
    );
}

#[test]
fn the_cli_signs_through_the_daemon_or_with_a_key_file() {
    let d = daemon(vec![], 60_000);
    associate(&d, "shop.test", "pro1");
    let run = |args: &[&str], input: &[u8]| -> (bool, Vec<u8>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailzone"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), out.stdout)
    };
    let api = d.http.to_string();
    let (ok, signed) = run(
        &[
            "dkim",
            "sign",
            "--domain",
            "shop.test",
            "--api",
            &api,
            "--token",
            TOKEN,
        ],
        MESSAGE.as_bytes(),
    );
    assert!(ok);
    assert!(dkimpy(&d, &signed).0);
    let selector = selectors_in(&generations(&d, "shop.test")[0])[0].clone();
    let key = d
        .dir
        .path()
        .join(format!("keys/dkim/shop.test/{selector}.pem"));
    let (ok, signed) = run(
        &[
            "dkim",
            "sign",
            "--domain",
            "shop.test",
            "--key",
            key.to_str().unwrap(),
            "--selector",
            &selector,
        ],
        MESSAGE.as_bytes(),
    );
    assert!(ok);
    assert!(dkimpy(&d, &signed).0);
    let (ok, out) = run(
        &["dkim", "verify", "--nameserver", &d.dns.to_string()],
        &signed,
    );
    assert!(ok, "{}", String::from_utf8_lossy(&out));
    assert!(String::from_utf8_lossy(&out).starts_with("pass d=shop.test"));
}

#[test]
fn dissociating_removes_the_key_records_and_files() {
    let d = daemon(vec![], 60_000);
    associate(&d, "shop.test", "pro1");
    let selector = selectors_in(&generations(&d, "shop.test")[0])[0].clone();
    let (status, _) = http(d.http, "DELETE", "/v1/domains/shop.test", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!(
        txt(&d, &format!("{selector}._domainkey.shop.test.")).0,
        ResponseCode::NXDomain
    );
    assert!(
        !d.dir
            .path()
            .join(format!("keys/dkim/shop.test/{selector}.pem"))
            .exists()
    );
}

/// The zone of an external domain as served by "the world": two nameservers on 127.0.0.2
/// and 127.0.0.3, the same port, each a real mailzone.
fn world() -> (TestDaemon, TestDaemon) {
    let zone = "$ORIGIN far.example.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\n@ NS ns2\n\
        ns1 A 127.0.0.2\nns2 A 127.0.0.3\n@ MX 10 mx.elsewhere.example.\n";
    let ns1 = TestDaemon::start_tuned(&[("far.example.zone", zone)], |c| {
        c.dns.listen = vec!["127.0.0.2:0".parse().unwrap()];
    });
    let port = ns1.dns.port();
    let ns2 = TestDaemon::start_tuned(&[("far.example.zone", zone)], move |c| {
        c.dns.listen = vec![format!("127.0.0.3:{port}").parse().unwrap()];
    });
    (ns1, ns2)
}

fn publish(ns: &TestDaemon, line: &str) {
    // "<sel>._domainkey.far.example. 3600 IN TXT "..." "..."" -> owner and data
    let (owner, rest) = line.split_once(' ').unwrap();
    let data = rest.split_once(" IN TXT ").unwrap().1;
    let body =
        json!({"operations": [{"op": "replace", "name": owner, "type": "TXT", "records": [data]}]})
            .to_string();
    let (status, text) = http(
        ns.http,
        "PATCH",
        "/v1/zones/far.example/records",
        Some(TOKEN),
        Some(&body),
    );
    assert_eq!(status, 200, "{text}");
}

#[test]
fn an_external_domain_signs_once_every_nameserver_serves_its_key() {
    let (ns1, ns2) = world();
    let resolver = ns1.dns;
    let d = TestDaemon::start_tuned(&[], move |c| {
        c.dkim_check_interval_ms = 100;
        c.diagnosis.resolver = Some(resolver);
        c.diagnosis.port = resolver.port();
    });
    let v = associate(&d, "far.example", "pro1");
    let lines: Vec<String> = v["to_paste"]["dkim"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();

    // On one nameserver of two: not yet.
    publish(&ns1, &lines[0]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        generations(&d, "far.example")[0]["state"],
        "generated",
        "ns2 does not serve it yet"
    );
    assert_eq!(
        sign(&d, "far.example", "From: a@far.example\r\n\r\nx\r\n").0,
        409
    );

    publish(&ns2, &lines[0]);
    wait_for("the key to be seen everywhere and signing to start", || {
        generations(&d, "far.example")[0]["state"] == "active"
    });
    let message = signed(
        &d,
        "far.example",
        "From: a@far.example\r\nSubject: hi\r\n\r\nhello\r\n",
    );
    let (ok, out) = dkimpy(&ns1, &message);
    assert!(ok, "verified against the customer's own nameserver: {out}");

    // The successor can take over once it too is published everywhere.
    let (status, _) = http(
        d.http,
        "POST",
        "/v1/domains/far.example/dkim/rotate",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 422, "the successor is not published yet");
    publish(&ns1, &lines[1]);
    publish(&ns2, &lines[1]);
    wait_for("the successor to be seen", || {
        generations(&d, "far.example")[1]["state"] == "published"
    });
    let (status, text) = http(
        d.http,
        "POST",
        "/v1/domains/far.example/dkim/rotate",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(generations(&d, "far.example")[1]["state"], "active");
}
