//! Hosted zones through the HTTP API: created, changed and deleted through the single
//! writer, written atomically as standard zone files, and served at once.

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{Value, json};

fn create(d: &TestDaemon, body: Value) -> (u16, Value) {
    let (status, text) = api(d.http, "POST", "/v1/zones", &body);
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            json(&text)
        },
    )
}

fn patch(d: &TestDaemon, zone: &str, operations: Value) -> (u16, Value) {
    let body = json!({ "operations": operations }).to_string();
    let (status, text) = http(
        d.http,
        "PATCH",
        &format!("/v1/zones/{zone}/records"),
        Some(TOKEN),
        Some(&body),
    );
    (status, json(&text))
}

fn new_zone(d: &TestDaemon, name: &str) {
    let (status, v) = create(
        d,
        json!({"name": name, "nameservers": ["ns1.provider.example.", "ns2.provider.example."]}),
    );
    assert_eq!(status, 201, "{v}");
}

fn serial(d: &TestDaemon, zone: &str) -> u32 {
    let m = udp(d.dns, zone, RecordType::SOA);
    match &m.answers[0].data {
        RData::SOA(soa) => soa.serial,
        other => panic!("not a SOA: {other:?}"),
    }
}

fn error_field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

#[test]
fn a_created_zone_is_served_at_once() {
    let d = TestDaemon::start(&[]);
    new_zone(&d, "new.test");
    let m = udp(d.dns, "new.test.", RecordType::NS);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 2);
    assert!(d.zones_dir().join("new.test.zone").exists());
}

#[test]
fn a_zone_gets_a_sensible_soa_when_none_is_given() {
    let d = TestDaemon::start(&[]);
    new_zone(&d, "soa.test");
    let m = udp(d.dns, "soa.test.", RecordType::SOA);
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!()
    };
    assert_eq!(
        soa.mname,
        Name::from_ascii("ns1.provider.example.").unwrap()
    );
    assert_eq!(soa.rname, Name::from_ascii("hostmaster.soa.test.").unwrap());
    assert_eq!(soa.minimum, 300);
    assert!(soa.serial >= 2026000000, "date scheme: {}", soa.serial);
}

#[test]
fn the_configured_default_nameservers_are_used_when_none_are_given() {
    let d = TestDaemon::start_tuned(&[], |c| {
        c.zone_defaults.nameservers = vec!["ns.default.example.".into()]
    });
    let (status, v) = create(&d, json!({"name": "dflt.test"}));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["nameservers"], json!(["ns.default.example."]));
}

#[test]
fn creating_an_existing_zone_is_a_conflict() {
    let d = TestDaemon::example();
    let (status, v) = create(
        &d,
        json!({"name": "example.test", "nameservers": ["ns1.x.example."]}),
    );
    assert_eq!(status, 409);
    assert_eq!(v["error"]["code"], "conflict");
}

#[test]
fn every_zone_call_needs_the_token() {
    let d = TestDaemon::example();
    for (method, path) in [
        ("GET", "/v1/zones"),
        ("POST", "/v1/zones"),
        ("GET", "/v1/zones/example.test"),
        ("DELETE", "/v1/zones/example.test"),
        ("GET", "/v1/zones/example.test/records"),
        ("PATCH", "/v1/zones/example.test/records"),
        ("GET", "/v1/zones/example.test/export"),
    ] {
        let (status, body) = http(d.http, method, path, None, Some("{}"));
        assert_eq!(status, 401, "{method} {path}: {body}");
        let (status, _) = http(
            d.http,
            method,
            path,
            Some("not-the-token-at-all"),
            Some("{}"),
        );
        assert_eq!(status, 401, "{method} {path} with a wrong token");
    }
    assert!(d.zones_dir().join("example.test.zone").exists());
}

#[test]
fn a_change_is_served_as_soon_as_it_is_acknowledged() {
    let d = TestDaemon::example();
    let (status, v) = patch(
        &d,
        "example.test",
        json!([{"op": "add", "name": "new", "type": "A", "ttl": 60, "records": ["192.0.2.77"]}]),
    );
    assert_eq!(status, 200, "{v}");
    let m = udp(d.dns, "new.example.test.", RecordType::A);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].ttl, 60);

    patch(
        &d,
        "example.test",
        json!([{"op": "replace", "name": "new", "type": "A", "records": ["192.0.2.78", "192.0.2.79"]}]),
    );
    assert_eq!(
        udp(d.dns, "new.example.test.", RecordType::A).answers.len(),
        2
    );

    patch(
        &d,
        "example.test",
        json!([{"op": "delete", "name": "new", "type": "A", "records": ["192.0.2.78"]}]),
    );
    assert_eq!(
        udp(d.dns, "new.example.test.", RecordType::A).answers.len(),
        1
    );

    patch(
        &d,
        "example.test",
        json!([{"op": "delete", "name": "new", "type": "A"}]),
    );
    let m = udp(d.dns, "new.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn a_failed_operation_applies_none_of_the_patch() {
    let d = TestDaemon::example();
    let before = serial(&d, "example.test.");
    let (status, v) = patch(
        &d,
        "example.test",
        json!([
            {"op": "add", "name": "first", "type": "A", "records": ["192.0.2.1"]},
            {"op": "add", "name": "second", "type": "MX", "records": ["ten mx1"]}
        ]),
    );
    assert_eq!(status, 400);
    assert_eq!(error_field(&v), "operations[1].records[0]", "{v}");
    assert_eq!(
        udp(d.dns, "first.example.test.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(serial(&d, "example.test."), before);
}

#[test]
fn cname_beside_other_data_is_refused_naming_the_operation() {
    let d = TestDaemon::example();
    let before = std::fs::read_to_string(d.zones_dir().join("example.test.zone")).unwrap();
    let (status, v) = patch(
        &d,
        "example.test",
        json!([
            {"op": "add", "name": "ok", "type": "A", "records": ["192.0.2.1"]},
            {"op": "add", "name": "mail", "type": "CNAME", "records": ["mx1"]}
        ]),
    );
    assert_eq!(status, 400);
    assert_eq!(error_field(&v), "operations[1]", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("CNAME"),
        "{v}"
    );
    let after = std::fs::read_to_string(d.zones_dir().join("example.test.zone")).unwrap();
    assert_eq!(before, after, "nothing is written when a change is refused");
}

#[test]
fn bad_input_is_rejected_with_the_field_at_fault() {
    let d = TestDaemon::example();
    let long_label = "a".repeat(64);
    let cases = [
        (
            json!([{"op": "add", "name": "bad name", "type": "A", "records": ["192.0.2.1"]}]),
            "operations[0].name",
        ),
        (
            json!([{"op": "add", "name": long_label, "type": "A", "records": ["192.0.2.1"]}]),
            "operations[0].name",
        ),
        (
            json!([{"op": "add", "name": "x", "type": "A", "records": ["192.0.2.300"]}]),
            "operations[0].records[0]",
        ),
        (
            json!([{"op": "add", "name": "x", "type": "AAAA", "records": ["192.0.2.1"]}]),
            "operations[0].records[0]",
        ),
        (
            json!([{"op": "add", "name": "x", "type": "A", "ttl": 2147483648u64, "records": ["192.0.2.1"]}]),
            "operations[0].ttl",
        ),
        (
            json!([{"op": "add", "name": "x", "type": "BOGUS", "records": ["1"]}]),
            "operations[0].type",
        ),
        (
            json!([{"op": "add", "name": "@", "type": "SOA", "records": ["a b 1 2 3 4 5"]}]),
            "operations[0].type",
        ),
        (
            json!([{"op": "add", "name": "www.other.test.", "type": "A", "records": ["192.0.2.1"]}]),
            "operations[0].name",
        ),
        (
            json!([{"op": "upsert", "name": "x", "type": "A", "records": ["192.0.2.1"]}]),
            "operations[0].op",
        ),
        (
            json!([{"op": "add", "name": "x", "type": "A", "records": ["192.0.2.1"], "colour": 1}]),
            "operations[0]",
        ),
        (
            json!([{"op": "replace", "name": "x", "type": "A", "records": []}]),
            "operations[0]",
        ),
        (
            json!([{"op": "delete", "name": "@", "type": "NS"}]),
            "operations[0]",
        ),
    ];
    for (ops, field) in cases {
        let (status, v) = patch(&d, "example.test", ops.clone());
        assert_eq!(status, 400, "{ops}: {v}");
        assert_eq!(v["error"]["code"], "invalid");
        assert!(
            error_field(&v).starts_with(field),
            "{ops}: expected field {field}, got {v}"
        );
    }
    let (status, v) = create(
        &d,
        json!({"name": "bad_zone!.test", "nameservers": ["ns.x.example."]}),
    );
    assert_eq!(status, 400);
    assert_eq!(error_field(&v), "name");
    let (status, v) = create(
        &d,
        json!({"name": "ok.test", "nameservers": ["relative-ns"]}),
    );
    assert_eq!(status, 400);
    assert_eq!(error_field(&v), "nameservers[0]");
}

#[test]
fn a_body_over_the_size_limit_gets_413() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.http.max_body_bytes = 4096
    });
    let big = "x".repeat(10_000);
    let body = json!({"operations": [{"op": "add", "name": "x", "type": "TXT", "records": [big]}]})
        .to_string();
    let (status, text) = http(
        d.http,
        "PATCH",
        "/v1/zones/example.test/records",
        Some(TOKEN),
        Some(&body),
    );
    assert_eq!(status, 413, "{text}");
    assert_eq!(json(&text)["error"]["code"], "too_large");
}

#[test]
fn the_serial_is_bumped_once_per_change() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.zone_defaults.serial = mailzone::zone::serial::SerialScheme::Increment
    });
    let before = serial(&d, "example.test.");
    patch(
        &d,
        "example.test",
        json!([
            {"op": "add", "name": "a", "type": "A", "records": ["192.0.2.1"]},
            {"op": "add", "name": "b", "type": "A", "records": ["192.0.2.2"]},
            {"op": "add", "name": "c", "type": "A", "records": ["192.0.2.3"]}
        ]),
    );
    assert_eq!(serial(&d, "example.test."), before + 1);
}

#[test]
fn the_serial_never_goes_backwards_across_many_changes_and_a_restart() {
    let d = TestDaemon::start(&[]);
    new_zone(&d, "fast.test");
    let mut last = serial(&d, "fast.test.");
    // More changes than the date scheme's 100 a day, as fast as the writer takes them.
    for i in 0..120 {
        patch(
            &d,
            "fast.test",
            json!([{"op": "replace", "name": "n", "type": "TXT", "records": [format!("change {i}")]}]),
        );
        let s = serial(&d, "fast.test.");
        assert!(
            mailzone::zone::serial::serial_gt(s, last),
            "{s} after {last}"
        );
        last = s;
    }
    let d = d.restart();
    assert_eq!(serial(&d, "fast.test."), last, "the serial is on disk");
    patch(
        &d,
        "fast.test",
        json!([{"op": "replace", "name": "n", "type": "TXT", "records": ["after restart"]}]),
    );
    assert!(mailzone::zone::serial::serial_gt(
        serial(&d, "fast.test."),
        last
    ));
}

#[test]
fn every_file_written_is_accepted_by_named_checkzone() {
    let d = TestDaemon::start(&[]);
    new_zone(&d, "check.test");
    let dkim = format!(
        "v=DKIM1; k=rsa; p={}",
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA".repeat(9)
    );
    let (status, v) = patch(
        &d,
        "check.test",
        json!([
            {"op": "add", "name": "@", "type": "A", "records": ["192.0.2.10"]},
            {"op": "add", "name": "@", "type": "MX", "records": ["10 mx1", "20 mx2.provider.example."]},
            {"op": "add", "name": "mx1", "type": "AAAA", "records": ["2001:db8::25"]},
            {"op": "add", "name": "@", "type": "TXT", "records": ["\"v=spf1 include:_spf.provider.example -all\""]},
            {"op": "add", "name": "quoted", "type": "TXT", "records": ["\"say \\\"hi\\\" \\\\ \\255\" \"second\""]},
            {"op": "add", "name": "mail._domainkey", "type": "TXT", "records": [dkim]},
            {"op": "add", "name": "_dmarc", "type": "TXT", "records": ["v=DMARC1; p=none"]},
            {"op": "add", "name": "_imaps._tcp", "type": "SRV", "records": ["0 1 993 mx1"]},
            {"op": "add", "name": "@", "type": "CAA", "records": ["0 issue \"letsencrypt.org\""]},
            {"op": "add", "name": "www", "type": "CNAME", "records": ["@"]},
            {"op": "add", "name": "*.wild", "type": "A", "records": ["192.0.2.99"]}
        ]),
    );
    assert_eq!(status, 200, "{v}");
    let file = d.zones_dir().join("check.test.zone");
    let out = std::process::Command::new("named-checkzone")
        .args(["-i", "local", "check.test"])
        .arg(&file)
        .output()
        .expect("named-checkzone is not installed: run the README's test command");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        std::fs::read_to_string(&file).unwrap()
    );
    assert!(text.contains("OK"), "{text}");
    // The long DKIM key was split into 255-byte strings and is served whole.
    let m = udp(d.dns, "mail._domainkey.check.test.", RecordType::TXT);
    let RData::TXT(txt) = &m.answers[0].data else {
        panic!()
    };
    let joined: Vec<u8> = txt
        .txt_data
        .iter()
        .flat_map(|s| s.iter().copied())
        .collect();
    assert_eq!(joined, dkim.as_bytes());
}

#[test]
fn a_hand_written_zone_keeps_every_record_when_changed_through_the_api() {
    let d = TestDaemon::example();
    let origin = Name::from_ascii("example.test.").unwrap();
    let original = mailzone::zone::Zone::from_master_text(&origin, EXAMPLE_ZONE).unwrap();
    patch(
        &d,
        "example.test",
        json!([{"op": "add", "name": "added", "type": "A", "records": ["192.0.2.200"]}]),
    );
    let written = std::fs::read_to_string(d.zones_dir().join("example.test.zone")).unwrap();
    let reread = mailzone::zone::Zone::from_master_text(&origin, &written).unwrap();
    let lines = |z: &mailzone::zone::Zone| -> std::collections::BTreeSet<String> {
        z.view()
            .records()
            .filter(|r| r.record_type() != RecordType::SOA)
            .map(mailzone::zone::writer::record_line)
            .collect()
    };
    let before = lines(&original);
    let after = lines(&reread);
    assert!(
        before.is_subset(&after),
        "lost: {:?}",
        before.difference(&after).collect::<Vec<_>>()
    );
    assert_eq!(after.len(), before.len() + 1);
    let out = std::process::Command::new("named-checkzone")
        .args(["-i", "local", "example.test"])
        .arg(d.zones_dir().join("example.test.zone"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn export_returns_the_zone_file_text() {
    let d = TestDaemon::example();
    patch(
        &d,
        "example.test",
        json!([{"op": "add", "name": "x", "type": "A", "records": ["192.0.2.1"]}]),
    );
    let (status, text) = http(
        d.http,
        "GET",
        "/v1/zones/example.test/export",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        text,
        std::fs::read_to_string(d.zones_dir().join("example.test.zone")).unwrap()
    );
    assert!(
        text.contains("x.example.test. 3600 IN A 192.0.2.1"),
        "{text}"
    );
}

#[test]
fn records_can_be_filtered_by_name_and_type() {
    let d = TestDaemon::example();
    let (status, text) = http(
        d.http,
        "GET",
        "/v1/zones/example.test/records?name=@&type=MX",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200);
    let v = json(&text);
    assert_eq!(
        v,
        json!([{"name": "example.test.", "type": "MX", "ttl": 3600, "records": ["10 mx1.example.test.", "20 mx2.example.test."]}])
    );
    let (_, text) = http(
        d.http,
        "GET",
        "/v1/zones/example.test/records?type=SRV",
        Some(TOKEN),
        None,
    );
    assert_eq!(json(&text).as_array().unwrap().len(), 7);
}

#[test]
fn list_and_show_describe_the_zones() {
    let d = TestDaemon::example();
    let (status, text) = http(d.http, "GET", "/v1/zones", Some(TOKEN), None);
    assert_eq!(status, 200);
    let v = json(&text);
    assert_eq!(v[0]["name"], "example.test.");
    assert_eq!(v[0]["serial"], 2026112301u32);
    let (status, text) = http(d.http, "GET", "/v1/zones/EXAMPLE.test.", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!(
        json(&text)["nameservers"],
        json!(["ns1.example.test.", "ns2.example.test."])
    );
    let (status, text) = http(d.http, "GET", "/v1/zones/missing.test", Some(TOKEN), None);
    assert_eq!(status, 404, "{text}");
}

#[test]
fn a_deleted_zone_stops_being_served_and_its_file_goes() {
    let d = TestDaemon::example();
    let (status, _) = http(
        d.http,
        "DELETE",
        "/v1/zones/example.test",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 204);
    assert!(!d.zones_dir().join("example.test.zone").exists());
    assert_eq!(
        udp(d.dns, "example.test.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::Refused
    );
    let (status, _) = http(
        d.http,
        "DELETE",
        "/v1/zones/example.test",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 404);
}

#[test]
fn the_cli_manages_zones_through_the_api() {
    let d = TestDaemon::start(&[]);
    let cli = |args: &[&str]| -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailzone"))
            .arg("zone")
            .args(args)
            .args(["--api", &d.http.to_string(), "--token", TOKEN])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&["create", "cli.test", "--ns", "ns1.provider.example."]);
    assert!(ok, "{err}");
    assert!(out.starts_with("created cli.test."), "{out}");
    let (ok, _, err) = cli(&["set", "cli.test", "@", "MX", "10 mx.provider.example."]);
    assert!(ok, "{err}");
    assert_eq!(udp(d.dns, "cli.test.", RecordType::MX).answers.len(), 1);
    let (ok, out, _) = cli(&["list"]);
    assert!(ok);
    assert!(out.starts_with("ZONE"), "{out}");
    assert!(out.contains("cli.test."), "{out}");
    let (ok, out, _) = cli(&["show", "cli.test"]);
    assert!(ok);
    assert!(out.contains("MX    10 mx.provider.example."), "{out}");
    let (ok, out, _) = cli(&["show", "cli.test", "--json"]);
    assert!(ok);
    assert_eq!(json(&out)["zone"]["name"], "cli.test.");
    let (ok, out, _) = cli(&["export", "cli.test"]);
    assert!(ok);
    assert!(
        out.contains("cli.test. 3600 IN MX 10 mx.provider.example."),
        "{out}"
    );
    let (ok, _, err) = cli(&["set", "cli.test", "@", "MX", "ten mx"]);
    assert!(!ok);
    assert!(err.contains("field operations[0].records[0]"), "{err}");
    let (ok, out, _) = cli(&["delete", "cli.test"]);
    assert!(ok);
    assert_eq!(out, "deleted cli.test\n");
}

fn named_checkzone(zone: &str, file: &std::path::Path) {
    let out = std::process::Command::new("named-checkzone")
        .args(["-i", "local", zone])
        .arg(file)
        .output()
        .expect("named-checkzone is not installed: run the README's test command");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(file).unwrap_or_default()
    );
}

#[test]
fn punycode_owners_and_targets_survive_a_restart() {
    let d = TestDaemon::start(&[]);
    new_zone(&d, "example.test");
    let (status, v) = patch(
        &d,
        "example.test",
        json!([
            {"op": "add", "name": "xn--bcher-kva", "type": "A", "records": ["192.0.2.7"]},
            {"op": "add", "name": "@", "type": "MX", "records": ["10 mail.xn--bcher-kva.example.test."]},
            {"op": "add", "name": "www", "type": "CNAME", "records": ["xn--bcher-kva"]},
            {"op": "add", "name": "sub", "type": "NS", "records": ["ns.xn--caf-dma.example."]},
            {"op": "add", "name": "_imaps._tcp", "type": "SRV", "records": ["0 1 993 xn--bcher-kva"]}
        ]),
    );
    assert_eq!(status, 200, "{v}");
    let file = d.zones_dir().join("example.test.zone");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.is_ascii(),
        "names must be written as A-labels:\n{text}"
    );
    named_checkzone("example.test", &file);

    let d = d.restart();
    let m = udp(d.dns, "xn--bcher-kva.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    let m = udp(d.dns, "example.test.", RecordType::MX);
    let RData::MX(mx) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(mx.exchange.to_ascii(), "mail.xn--bcher-kva.example.test.");
    let m = udp(d.dns, "www.example.test.", RecordType::A);
    assert_eq!(m.answers.len(), 2, "CNAME and its target: {m:?}");
    let m = udp(d.dns, "x.sub.example.test.", RecordType::A);
    let RData::NS(ns) = &m.authorities[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(ns.0.to_ascii(), "ns.xn--caf-dma.example.");
    let m = udp(d.dns, "_imaps._tcp.example.test.", RecordType::SRV);
    assert_eq!(m.answers.len(), 1);
    // The API shows the names as written, A-labels included.
    let (status, body) = http(
        d.http,
        "GET",
        "/v1/zones/example.test/records?type=SRV",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)[0]["records"][0],
        "0 1 993 xn--bcher-kva.example.test."
    );
}

#[test]
fn a_punycode_zone_survives_a_restart() {
    let d = TestDaemon::start(&[]);
    new_zone(&d, "xn--bcher-kva.test");
    let (status, v) = patch(
        &d,
        "xn--bcher-kva.test",
        json!([{"op": "add", "name": "www", "type": "A", "records": ["192.0.2.8"]}]),
    );
    assert_eq!(status, 200, "{v}");
    let file = d.zones_dir().join("xn--bcher-kva.test.zone");
    assert!(std::fs::read_to_string(&file).unwrap().is_ascii());
    named_checkzone("xn--bcher-kva.test", &file);

    let d = d.restart();
    let m = udp(d.dns, "www.xn--bcher-kva.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    let (status, body) = http(d.http, "GET", "/v1/zones", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!(json(&body)[0]["name"], "xn--bcher-kva.test.");
}

#[test]
fn a_txt_record_over_65535_bytes_is_refused_naming_the_record() {
    let d = TestDaemon::start(&[]);
    new_zone(&d, "big.test");
    // 70,000 bytes of raw text: split into 255-byte strings it is 70,275 bytes of data.
    let text = "k".repeat(70_000);
    let (status, v) = patch(
        &d,
        "big.test",
        json!([{"op": "add", "name": "huge", "type": "TXT", "records": [text]}]),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(error_field(&v), "operations[0].records[0]");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("TXT at huge.big.test."), "{message}");
    assert!(message.contains("65535"), "{message}");
    let m = udp(d.dns, "huge.big.test.", RecordType::TXT);
    assert!(m.answers.is_empty());
}

#[test]
fn a_1_mib_txt_record_is_refused() {
    // Under a body limit that lets it reach the zone code (the default 1 MiB limit gives 413).
    let d = TestDaemon::start_tuned(&[], |c| c.http.max_body_bytes = 4 << 20);
    new_zone(&d, "big.test");
    let text = "k".repeat(1 << 20);
    let (status, v) = patch(
        &d,
        "big.test",
        json!([{"op": "add", "name": "huge", "type": "TXT", "records": [text]}]),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(error_field(&v), "operations[0].records[0]");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.len() < 300, "the message does not quote the data");
    let m = udp(d.dns, "huge.big.test.", RecordType::TXT);
    assert!(m.answers.is_empty());
}

#[test]
fn an_rrset_whose_answer_cannot_fit_a_dns_message_is_refused() {
    let d = TestDaemon::start(&[]);
    new_zone(&d, "big.test");
    let ips: Vec<String> = (0..10_000)
        .map(|i| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256))
        .collect();
    let (status, v) = patch(
        &d,
        "big.test",
        json!([{"op": "add", "name": "many", "type": "A", "records": ips}]),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(error_field(&v), "operations[0].records");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("A at many.big.test."), "{message}");

    // Grown in steps, the rrset is refused at the step that makes it too large.
    let (status, v) = patch(
        &d,
        "big.test",
        json!([{"op": "add", "name": "many", "type": "A", "records": ips[..2000]}]),
    );
    assert_eq!(status, 200, "{v}");
    let (status, v) = patch(
        &d,
        "big.test",
        json!([{"op": "add", "name": "many", "type": "A", "records": ips[2000..3000]}]),
    );
    assert_eq!(status, 422, "{v}");
    // What was accepted is served whole, over TCP.
    let m = tcp(d.dns, "many.big.test.", RecordType::A);
    assert_eq!(m.answers.len(), 2000, "{:?}", m.metadata);
    assert!(!m.metadata.truncation);
}

#[test]
fn escaped_names_are_rewritten_so_that_bind_and_a_restart_read_the_same_bytes() {
    let zone = format!(
        "{}a\\.b 60 A 192.0.2.11\nsp\\032ace\\000\\255 60 TXT \"x\"\n@ 60 MX 10 m\\\"x\\;\n",
        small_zone("esc.test", 1, "192.0.2.1")
    );
    let d = TestDaemon::start(&[("esc.test.zone", &zone)]);
    // Any change makes the writer write the whole file again.
    let (status, v) = patch(
        &d,
        "esc.test",
        json!([{"op": "add", "name": "www", "type": "A", "records": ["192.0.2.12"]}]),
    );
    assert_eq!(status, 200, "{v}");
    let file = d.zones_dir().join("esc.test.zone");
    named_checkzone("esc.test", &file);

    let d = d.restart();
    let origin = Name::from_ascii("esc.test.").unwrap();
    let ask = |label: &[u8], rtype: RecordType| {
        let name = Name::from_labels([label])
            .unwrap()
            .append_domain(&origin)
            .unwrap();
        let mut m = hickory_proto::op::Message::new(
            3,
            hickory_proto::op::MessageType::Query,
            hickory_proto::op::OpCode::Query,
        );
        m.add_query(hickory_proto::op::Query::query(name, rtype));
        hickory_proto::op::Message::from_vec(&udp_raw(d.dns, &m.to_vec().unwrap()).unwrap())
            .unwrap()
    };
    assert_eq!(ask(b"a.b", RecordType::A).answers.len(), 1);
    assert_eq!(ask(b"sp ace\0\xff", RecordType::TXT).answers.len(), 1);
    let m = udp(d.dns, "esc.test.", RecordType::MX);
    let RData::MX(mx) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(mx.exchange.iter().next().unwrap(), b"m\"x;");
}

#[test]
fn deleting_what_is_not_there_writes_nothing_and_keeps_the_serial() {
    let d = TestDaemon::start(&[]);
    new_zone(&d, "quiet.test");
    let (status, _) = patch(
        &d,
        "quiet.test",
        json!([{"op": "add", "name": "www", "type": "A", "records": ["192.0.2.1"]}]),
    );
    assert_eq!(status, 200);
    let file = d.zones_dir().join("quiet.test.zone");
    let text_before = std::fs::read_to_string(&file).unwrap();
    let modified_before = std::fs::metadata(&file).unwrap().modified().unwrap();
    let before = serial(&d, "quiet.test.");
    for operations in [
        json!([{"op": "delete", "name": "nothere", "type": "A"}]),
        json!([{"op": "delete", "name": "www", "type": "A", "records": ["192.0.2.99"]}]),
        json!([{"op": "delete", "name": "www", "type": "TXT"}]),
        json!([{"op": "add", "name": "www", "type": "A", "records": ["192.0.2.1"]}]),
    ] {
        let (status, v) = patch(&d, "quiet.test", operations.clone());
        assert_eq!(status, 200, "{operations}: {v}");
        assert_eq!(
            v["serial"], before,
            "{operations}: the API reports the unchanged serial"
        );
        assert_eq!(
            serial(&d, "quiet.test."),
            before,
            "{operations}: no bump served"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text_before);
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        modified_before,
        "the file was not rewritten"
    );
    // A real change still bumps.
    let (_, v) = patch(
        &d,
        "quiet.test",
        json!([{"op": "delete", "name": "www", "type": "A"}]),
    );
    assert_ne!(v["serial"], before);
}

#[test]
fn creating_a_zone_without_nameservers_on_the_embedded_defaults_says_they_are_required() {
    let d = TestDaemon::start(&[]);
    let (status, v) = create(&d, json!({"name": "nons.test"}));
    assert_eq!(status, 400, "{v}");
    assert_eq!(error_field(&v), "nameservers");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("zone_defaults.nameservers"),
        "{v}"
    );
    assert!(!d.zones_dir().join("nons.test.zone").exists());
    // The README says so where it describes the call.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains("`nameservers` is required unless `zone_defaults.nameservers` is set"),
        "README must say nameservers are required on the embedded defaults"
    );
}
