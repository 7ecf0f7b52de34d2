//! Associating domains with e-mail platforms: records written into hosted zones and served
//! at once, listed for external domains, and taken out exactly.

mod common;

use std::collections::BTreeSet;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};
use mailzone::provision::platform::{MxHost, Platform};
use serde_json::{Value, json};

/// A second platform, for coexistence: its own MX hosts and SPF mechanism.
fn other_platform() -> Platform {
    let mut p = Platform::example();
    p.id = "other".into();
    p.mx = vec![MxHost {
        host: "in.other-mail.example.".into(),
        priority: 10,
    }];
    p.spf = vec!["ip4:198.51.100.0/24".into()];
    p.autoconfig_host = Some("config.other-mail.example.".into());
    p
}

fn daemon() -> TestDaemon {
    TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.platforms.push(other_platform())
    })
}

/// A daemon with an empty hosted zone `shop.test` (no user records in the way).
fn daemon_with_shop() -> TestDaemon {
    let shop = "$ORIGIN shop.test.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n\
        @ NS ns1.provider.example.\n@ NS ns2.provider.example.\n@ A 192.0.2.80\n";
    TestDaemon::start_tuned(
        &[
            ("example.test.zone", EXAMPLE_ZONE),
            ("shop.test.zone", shop),
        ],
        |c| c.platforms.push(other_platform()),
    )
}

fn associate(d: &TestDaemon, query: &str, body: Value) -> (u16, Value) {
    let (status, text) = http(
        d.http,
        "POST",
        &format!("/v1/domains{query}"),
        Some(TOKEN),
        Some(&body.to_string()),
    );
    (status, json(&text))
}

fn txt_values(d: &TestDaemon, name: &str) -> Vec<String> {
    udp(d.dns, name, RecordType::TXT)
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn zone_lines(d: &TestDaemon, zone: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(d.zones_dir().join(format!("{zone}.zone"))).unwrap();
    let z = mailzone::zone::Zone::from_master_text(
        &Name::from_ascii(format!("{zone}.")).unwrap(),
        &text,
    )
    .unwrap();
    z.view()
        .records()
        .filter(|r| r.record_type() != RecordType::SOA)
        .map(mailzone::zone::writer::record_line)
        .collect()
}

fn serial(d: &TestDaemon, zone: &str) -> u32 {
    match &udp(d.dns, zone, RecordType::SOA).answers[0].data {
        RData::SOA(s) => s.serial,
        _ => 0,
    }
}

#[test]
fn associating_a_hosted_domain_serves_its_records_at_once() {
    let d = daemon_with_shop();
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative"}),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["zone"], "shop.test.");

    let mx = dig(d.dns, &["+short", "shop.test", "MX"]);
    let mx: BTreeSet<&str> = mx.lines().collect();
    let want: BTreeSet<&str> = [
        "1 mx0.mail.example.net.",
        "5 mx1.mail.example.net.",
        "50 mx2.mail.example.net.",
        "100 mx3.mail.example.net.",
        "200 mx4.mail.example.net.",
    ]
    .into();
    assert_eq!(mx, want);
    assert_eq!(
        dig(d.dns, &["+short", "_imaps._tcp.shop.test", "SRV"]).trim(),
        "0 1 993 pro1.mail.example.net."
    );
    assert_eq!(
        dig(d.dns, &["+short", "_autodiscover._tcp.shop.test", "SRV"]).trim(),
        "0 0 443 pro1.mail.example.net."
    );
    assert_eq!(
        dig(d.dns, &["+short", "_imap._tcp.shop.test", "SRV"]).trim(),
        "0 0 0 ."
    );
    assert_eq!(
        dig(d.dns, &["+short", "autoconfig.shop.test", "CNAME"]).trim(),
        "pro1.mail.example.net."
    );
    assert_eq!(
        txt_values(&d, "shop.test."),
        ["v=spf1 include:mx.mail.example.net ~all"]
    );
    assert_eq!(
        txt_values(&d, "_dmarc.shop.test."),
        ["v=DMARC1; p=none; rua=mailto:dmarc-reports@mail.example.net"]
    );

    let out = std::process::Command::new("named-checkzone")
        .args(["-i", "local", "shop.test"])
        .arg(d.zones_dir().join("shop.test.zone"))
        .output()
        .expect("named-checkzone is not installed: run the README's test command");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn user_records_in_the_way_are_a_conflict_unless_replace_and_nothing_is_written() {
    let d = daemon();
    let before = zone_lines(&d, "example.test");
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "example.test", "platform": "pro1", "mode": "authoritative"}),
    );
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("autoconfig.example.test. already has CNAME"),
        "{v}"
    );
    assert_eq!(zone_lines(&d, "example.test"), before);
    assert!(
        !d.zones_dir().join("associations").exists(),
        "nothing is stored"
    );

    let (status, v) = associate(
        &d,
        "?replace=true",
        json!({"domain": "example.test", "platform": "pro1", "mode": "authoritative"}),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        dig(d.dns, &["+short", "autoconfig.example.test", "CNAME"]).trim(),
        "pro1.mail.example.net."
    );
}

#[test]
fn existing_spf_is_extended_and_existing_dmarc_is_left_alone() {
    let d = daemon();
    let (status, v) = associate(
        &d,
        "?replace=true",
        json!({"domain": "example.test", "platform": "pro1", "mode": "authoritative"}),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        txt_values(&d, "example.test."),
        ["v=spf1 mx include:_spf.mail.example.net include:mx.mail.example.net -all"]
    );
    let dmarc = txt_values(&d, "_dmarc.example.test.");
    assert_eq!(dmarc.len(), 1);
    assert!(dmarc[0].starts_with("v=DMARC1; p=quarantine;"), "{dmarc:?}");
}

#[test]
fn dissociating_removes_exactly_its_records_and_restores_what_it_replaced() {
    let d = daemon();
    let before = zone_lines(&d, "example.test");
    associate(
        &d,
        "?replace=true",
        json!({"domain": "example.test", "platform": "pro1", "mode": "authoritative"}),
    );
    // A record the user adds afterwards is theirs and stays.
    let body = json!({"operations": [{"op": "add", "name": "user", "type": "A", "records": ["192.0.2.99"]}]}).to_string();
    http(
        d.http,
        "PATCH",
        "/v1/zones/example.test/records",
        Some(TOKEN),
        Some(&body),
    );

    let (status, text) = http(
        d.http,
        "DELETE",
        "/v1/domains/example.test?platform=pro1",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let mut expected = before.clone();
    expected.insert("user.example.test. 3600 IN A 192.0.2.99".into());
    assert_eq!(zone_lines(&d, "example.test"), expected);
    assert_eq!(
        dig(d.dns, &["+short", "example.test", "MX"])
            .lines()
            .count(),
        2,
        "the user's MX set is back"
    );
    let (_, text) = http(d.http, "GET", "/v1/domains", Some(TOKEN), None);
    assert_eq!(json(&text), json!([]));
}

#[test]
fn an_external_domain_gets_the_lines_to_paste_and_nothing_is_written() {
    let d = daemon();
    let files_before: BTreeSet<_> = std::fs::read_dir(d.zones_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "elsewhere.example", "platform": "pro1", "mode": "authoritative"}),
    );
    assert_eq!(status, 201, "{v}");
    assert!(v["zone"].is_null());
    assert_eq!(v["association"]["hosted"], false);
    assert_eq!(v["association"]["validated"], false);
    let paste = &v["to_paste"];
    assert_eq!(
        paste["mx"][0],
        "elsewhere.example. 3600 IN MX 1 mx0.mail.example.net."
    );
    assert_eq!(
        paste["spf"][0],
        "elsewhere.example. 3600 IN TXT \"v=spf1 include:mx.mail.example.net ~all\""
    );
    let token = v["association"]["ownership_token"].as_str().unwrap();
    assert_eq!(
        paste["ownership"][0],
        format!("{token}-check.elsewhere.example. 3600 IN CNAME check.mail.example.net.")
    );
    assert!(v["added"].as_array().unwrap().is_empty());
    let files_after: BTreeSet<_> = std::fs::read_dir(d.zones_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files_after
            .difference(&files_before)
            .cloned()
            .collect::<Vec<_>>(),
        vec![std::ffi::OsString::from("associations")],
        "only the association is stored"
    );
    assert!(
        d.zones_dir()
            .join("associations/elsewhere.example.yaml")
            .exists()
    );
    assert_eq!(
        udp(d.dns, "elsewhere.example.", RecordType::MX)
            .metadata
            .response_code,
        ResponseCode::Refused
    );
}

#[test]
fn a_second_platform_on_an_authoritative_domain_gets_409_naming_the_holder() {
    let d = daemon_with_shop();
    associate(
        &d,
        "",
        json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative"}),
    );
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "shop.test", "platform": "other", "mode": "non-authoritative", "relay_host": "relay.other-mail.example."}),
    );
    assert_eq!(status, 409);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("authoritative domain detected"),
        "{message}"
    );
    assert!(message.contains("pro1"), "{message}");
    assert_eq!(v["error"]["code"], "authoritative_domain");
}

#[test]
fn two_non_authoritative_platforms_share_spf_and_one_can_leave() {
    let d = daemon_with_shop();
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "shop.test", "platform": "pro1", "mode": "non-authoritative", "relay_host": "relay.other-mail.example."}),
    );
    assert_eq!(status, 201, "{v}");
    // Only one association may manage MX.
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "shop.test", "platform": "other", "mode": "non-authoritative", "relay_host": "in.mail.example.net."}),
    );
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mx of shop.test. is already managed by platform pro1"),
        "{v}"
    );
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "shop.test", "platform": "other", "mode": "non-authoritative", "relay_host": "in.mail.example.net.",
               "records": {"mx": false, "srv": false, "autoconfig": false}}),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        txt_values(&d, "shop.test."),
        ["v=spf1 include:mx.mail.example.net ip4:198.51.100.0/24 ~all"]
    );

    let (status, _) = http(
        d.http,
        "DELETE",
        "/v1/domains/shop.test?platform=pro1",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        txt_values(&d, "shop.test."),
        ["v=spf1 ip4:198.51.100.0/24 ~all"]
    );
    let (status, _) = http(d.http, "DELETE", "/v1/domains/shop.test", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert!(
        txt_values(&d, "shop.test.").is_empty(),
        "the SPF record mailzone created goes with the last platform"
    );
}

#[test]
fn a_dry_run_changes_nothing() {
    let d = daemon_with_shop();
    let serial_before = serial(&d, "shop.test.");
    let lines_before = zone_lines(&d, "shop.test");
    let (status, v) = associate(
        &d,
        "?dry_run=true",
        json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["dry_run"], true);
    assert!(
        v["added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "shop.test. 3600 IN MX 1 mx0.mail.example.net."),
        "{v}"
    );
    assert_eq!(serial(&d, "shop.test."), serial_before);
    assert_eq!(zone_lines(&d, "shop.test"), lines_before);
    let (_, text) = http(d.http, "GET", "/v1/domains", Some(TOKEN), None);
    assert_eq!(json(&text), json!([]));
}

#[test]
fn re_applying_the_same_association_changes_nothing() {
    let d = daemon_with_shop();
    let body = json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative"});
    associate(&d, "", body.clone());
    let s = serial(&d, "shop.test.");
    let (status, v) = associate(&d, "", body);
    assert_eq!(status, 201, "{v}");
    assert!(
        v["added"].as_array().unwrap().is_empty() && v["removed"].as_array().unwrap().is_empty(),
        "{v}"
    );
    assert_eq!(serial(&d, "shop.test."), s, "no serial bump for a no-op");
}

#[test]
fn associations_survive_a_restart_and_can_still_be_removed_exactly() {
    let d = daemon();
    let before = zone_lines(&d, "example.test");
    associate(
        &d,
        "?replace=true",
        json!({"domain": "example.test", "platform": "pro1", "mode": "authoritative"}),
    );
    // A temp file a crash left beside the association files is cleaned up, never loaded.
    std::fs::write(
        d.zones_dir()
            .join("associations/.example.test.yaml.tmp-1-1"),
        "garbage",
    )
    .unwrap();
    let d = d.restart();
    assert!(
        !d.zones_dir()
            .join("associations/.example.test.yaml.tmp-1-1")
            .exists()
    );
    let (_, text) = http(d.http, "GET", "/v1/domains/example.test", Some(TOKEN), None);
    let v = json(&text);
    assert_eq!(v["associations"][0]["platform"], "pro1");
    assert!(v["associations"][0]["expected"].as_array().unwrap().len() > 10);
    let (status, _) = http(
        d.http,
        "DELETE",
        "/v1/domains/example.test",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(zone_lines(&d, "example.test"), before);
}

#[test]
fn changing_an_association_updates_its_records() {
    let d = daemon_with_shop();
    associate(
        &d,
        "",
        json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative"}),
    );
    let body = json!({"records": {"srv": false}}).to_string();
    let (status, text) = http(
        d.http,
        "PATCH",
        "/v1/domains/shop.test",
        Some(TOKEN),
        Some(&body),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        udp(d.dns, "_imaps._tcp.shop.test.", RecordType::SRV)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        dig(d.dns, &["+short", "shop.test", "MX"]).lines().count(),
        5
    );
    let body = json!({"mode": "non-authoritative"}).to_string();
    let (status, text) = http(
        d.http,
        "PATCH",
        "/v1/domains/shop.test",
        Some(TOKEN),
        Some(&body),
    );
    assert_eq!(status, 422, "relay_host is needed: {text}");
}

#[test]
fn bad_association_requests_are_refused_with_the_field() {
    let d = daemon();
    let cases = [
        (
            json!({"domain": "shop.test", "platform": "nope", "mode": "authoritative"}),
            422,
            "platform",
        ),
        (
            json!({"domain": "bad domain!", "platform": "pro1", "mode": "authoritative"}),
            400,
            "domain",
        ),
        (
            json!({"domain": "shop.test", "platform": "pro1", "mode": "non-authoritative"}),
            422,
            "relay_host",
        ),
        (
            json!({"domain": "shop.test", "platform": "pro1", "mode": "sometimes"}),
            400,
            "mode",
        ),
        (
            json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative", "records": {"bimi": true}}),
            400,
            "records",
        ),
    ];
    for (body, status, field) in cases {
        let (s, v) = associate(&d, "", body.clone());
        assert_eq!(s, status, "{body}: {v}");
        assert!(
            v["error"]["field"]
                .as_str()
                .unwrap_or("")
                .starts_with(field),
            "{body}: {v}"
        );
    }
    let (status, text) = http(d.http, "POST", "/v1/domains", None, Some("{}"));
    assert_eq!(status, 401, "{text}");
    assert!(
        !d.zones_dir().join("domains.yaml").exists(),
        "nothing written on any error"
    );
}

#[test]
fn a_family_the_platform_cannot_provide_is_422_naming_the_setting() {
    let d = TestDaemon::start_tuned(&[], |c| {
        let mut p = other_platform();
        p.autoconfig_host = None;
        c.platforms.push(p);
    });
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "x.example", "platform": "other", "mode": "authoritative"}),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["field"], "records.autoconfig");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("autoconfig_host"),
        "{v}"
    );
}

#[test]
fn a_platform_change_in_the_config_is_applied_on_reload() {
    let shop = "$ORIGIN shop.test.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n@ NS ns1.provider.example.\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/shop.test.zone"), shop).unwrap();
    let platform = |mx: &str| {
        format!(
            "platforms:\n  - id: p\n    mx: [{{host: {mx}, priority: 10}}]\n    spf: [\"include:p.example\"]\n    dmarc: {{policy: none}}\n"
        )
    };
    let mut d = ChildDaemon::start_configured(dir, &platform("mx-old.p.example."));
    let token = d.token();
    let body = json!({"domain": "shop.test", "platform": "p", "mode": "authoritative", "records": {"srv": false, "autoconfig": false}}).to_string();
    let (status, text) = http(d.http, "POST", "/v1/domains", Some(&token), Some(&body));
    assert_eq!(status, 201, "{text}");
    assert_eq!(
        dig(d.dns, &["+short", "shop.test", "MX"]).trim(),
        "10 mx-old.p.example."
    );

    let config = std::fs::read_to_string(d.dir.path().join("c.yaml")).unwrap();
    std::fs::write(
        d.dir.path().join("c.yaml"),
        config.replace("mx-old.p.example.", "mx-new.p.example."),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("association reconciled");
    assert_eq!(
        dig(d.dns, &["+short", "shop.test", "MX"]).trim(),
        "10 mx-new.p.example."
    );
}

#[test]
fn the_cli_associates_lists_and_removes_domains() {
    let d = daemon_with_shop();
    let cli = |args: &[&str]| -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailzone"))
            .arg("domain")
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
    let (ok, out, err) = cli(&["add", "shop.test", "--platform", "pro1", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("would change zone shop.test.:"), "{out}");
    assert!(
        out.contains("+ shop.test. 3600 IN MX 1 mx0.mail.example.net."),
        "{out}"
    );
    let (ok, _, err) = cli(&["add", "shop.test", "--platform", "pro1", "--skip", "dmarc"]);
    assert!(ok, "{err}");
    assert!(txt_values(&d, "_dmarc.shop.test.").is_empty());
    let (ok, out, _) = cli(&["list"]);
    assert!(ok);
    assert!(
        out.contains("shop.test.  pro1      authoritative  hosted"),
        "{out}"
    );
    let (ok, out, _) = cli(&["records", "shop.test"]);
    assert!(ok);
    assert!(
        out.contains("_submissions._tcp.shop.test. 3600 IN SRV 0 1 465 pro1.mail.example.net."),
        "{out}"
    );
    let (ok, out, _) = cli(&["add", "far.example", "--platform", "pro1"]);
    assert!(ok);
    assert!(out.starts_with("far.example is not hosted here"), "{out}");
    let (ok, _, err) = cli(&["add", "x.example", "--platform", "nope"]);
    assert!(!ok);
    assert!(err.contains("unknown platform nope"), "{err}");
    let (ok, out, _) = cli(&["remove", "shop.test"]);
    assert!(ok);
    assert!(out.starts_with("removed shop.test"), "{out}");
    assert_eq!(dig(d.dns, &["+short", "shop.test", "MX"]).trim(), "");
}

#[test]
fn a_broken_association_file_is_reported_and_blocks_only_its_domain() {
    let shop = "$ORIGIN shop.test.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n@ NS ns1.provider.example.\n";
    let d = TestDaemon::start(&[
        ("shop.test.zone", shop),
        ("other.test.zone", &small_zone("other.test", 1, "192.0.2.1")),
    ]);
    std::fs::create_dir(d.zones_dir().join("associations")).unwrap();
    std::fs::write(
        d.zones_dir().join("associations/shop.test.yaml"),
        "associations:\n  - domain: shop.test.\n    colour: red\n",
    )
    .unwrap();
    let (status, _) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200);
    let (_, text) = http(d.http, "GET", "/v1/status", None, None);
    let v = json(&text);
    let error = v["association_errors"]["shop.test."]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("associations/shop.test.yaml:3:"), "{v}");
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative"}),
    );
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "broken_file");
    assert!(
        std::fs::read_to_string(d.zones_dir().join("associations/shop.test.yaml"))
            .unwrap()
            .contains("colour"),
        "the file is kept as it was"
    );
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "other.test", "platform": "pro1", "mode": "authoritative", "records": {"autoconfig": false}}),
    );
    assert_eq!(status, 201, "{v}");
}

#[test]
fn an_association_body_over_the_size_limit_gets_413() {
    let d = TestDaemon::start_tuned(&[], |c| c.http.max_body_bytes = 2048);
    let body = json!({"domain": "x.example", "platform": "pro1", "mode": "authoritative", "relay_host": "r".repeat(5000)});
    let (status, v) = associate(&d, "", body);
    assert_eq!(status, 413, "{v}");
}

fn families(d: &TestDaemon, domain: &str) -> Value {
    let (_, text) = http(
        d.http,
        "GET",
        &format!("/v1/domains/{domain}"),
        Some(TOKEN),
        None,
    );
    json(&text)["associations"][0]["records"].clone()
}

#[test]
fn patching_one_family_changes_only_that_family() {
    let d = daemon_with_shop();
    let (status, v) = associate(
        &d,
        "",
        json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative", "records": {"dmarc": false}}),
    );
    assert_eq!(status, 201, "{v}");
    let body = json!({"records": {"srv": false}}).to_string();
    let (status, text) = http(
        d.http,
        "PATCH",
        "/v1/domains/shop.test",
        Some(TOKEN),
        Some(&body),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        families(&d, "shop.test"),
        json!({"mx": true, "srv": false, "autoconfig": true, "spf": true, "dmarc": false, "dkim": false, "mta-sts": false, "tls-rpt": false}),
        "only srv changed; dmarc stays off"
    );
    assert!(
        txt_values(&d, "_dmarc.shop.test.").is_empty(),
        "DMARC must not come back"
    );
    // An unknown family is still refused, naming it.
    let body = json!({"records": {"colour": true}}).to_string();
    let (status, text) = http(
        d.http,
        "PATCH",
        "/v1/domains/shop.test",
        Some(TOKEN),
        Some(&body),
    );
    assert_eq!(status, 400, "{text}");
}

#[test]
fn a_dry_run_shows_the_ownership_token_the_association_gets() {
    let d = daemon();
    let body = json!({"domain": "elsewhere.example", "platform": "pro1", "mode": "authoritative"});
    let (status, dry) = associate(&d, "?dry_run=true", body.clone());
    assert_eq!(status, 200, "{dry}");
    let planned = dry["association"]["ownership_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(planned.len() >= 16, "{planned}");
    let (status, real) = associate(&d, "", body);
    assert_eq!(status, 201, "{real}");
    assert_eq!(real["association"]["ownership_token"], planned.as_str());
    assert_eq!(dry["to_paste"]["ownership"], real["to_paste"]["ownership"]);
    // Another domain gets another token.
    let (_, other) = associate(
        &d,
        "?dry_run=true",
        json!({"domain": "other.example", "platform": "pro1", "mode": "authoritative"}),
    );
    assert_ne!(other["association"]["ownership_token"], planned.as_str());
}

fn cli(d: &TestDaemon, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailzone"))
        .arg("domain")
        .args(args)
        .args(["--api", &format!("http://{}/", d.http), "--token", TOKEN])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_chooses_families_with_with_and_skip_and_set_changes_them() {
    let d = daemon_with_shop();
    let (ok, _, err) = cli(
        &d,
        &[
            "add",
            "shop.test",
            "--platform",
            "pro1",
            "--with",
            "dkim",
            "--skip",
            "dmarc",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        families(&d, "shop.test"),
        json!({"mx": true, "srv": true, "autoconfig": true, "spf": true, "dmarc": false, "dkim": true, "mta-sts": false, "tls-rpt": false})
    );
    assert!(txt_values(&d, "_dmarc.shop.test.").is_empty());
    let (ok, out, err) = cli(
        &d,
        &["set", "shop.test", "--skip", "srv", "--with", "dmarc"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("families mx autoconfig spf dmarc dkim"),
        "{out}"
    );
    assert_eq!(
        families(&d, "shop.test"),
        json!({"mx": true, "srv": false, "autoconfig": true, "spf": true, "dmarc": true, "dkim": true, "mta-sts": false, "tls-rpt": false}),
        "dkim stays on"
    );
    assert_eq!(txt_values(&d, "_dmarc.shop.test.").len(), 1);
    let (ok, _, err) = cli(&d, &["set", "shop.test", "--with", "srv", "--skip", "srv"]);
    assert!(!ok);
    assert!(err.contains("contradict"), "{err}");
    let (ok, _, err) = cli(&d, &["set", "shop.test", "--with", "colour"]);
    assert!(!ok);
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn domain_show_prints_a_table_and_json_with_the_flag() {
    let d = daemon_with_shop();
    let (ok, _, err) = cli(&d, &["add", "shop.test", "--platform", "pro1"]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&d, &["show", "shop.test"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("domain shop.test.\n"), "{out}");
    assert!(
        out.contains("PLATFORM  MODE           ZONE    FAMILIES"),
        "{out}"
    );
    assert!(
        out.contains("pro1      authoritative  hosted  mx srv autoconfig spf dmarc"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == [
                "mx",
                "shop.test.",
                "3600",
                "MX",
                "1",
                "mx0.mail.example.net."
            ]),
        "{out}"
    );
    assert!(serde_json::from_str::<Value>(&out).is_err(), "not JSON");
    let (ok, out, _) = cli(&d, &["show", "shop.test", "--json"]);
    assert!(ok);
    assert_eq!(json(&out)["associations"][0]["platform"], "pro1");
}

#[test]
fn the_cli_api_flag_takes_an_http_url_and_refuses_https() {
    let d = daemon_with_shop();
    // `cli` passes `--api http://127.0.0.1:PORT/`.
    let (ok, out, err) = cli(&d, &["list"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("DOMAIN"), "{out}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailzone"))
        .args(["domain", "list", "--api", &format!("https://{}", d.http)])
        .args(["--token", TOKEN])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("plain HTTP"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
