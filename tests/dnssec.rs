//! DNSSEC online signing (issue 12), checked by third-party validators: `delv` validates
//! live answers over UDP and TCP with the zone's key as trust anchor; `ldns-verify-zone`,
//! `dnssec-verify` and `named-checkzone` check an AXFR of the signed zone.

mod common;

use std::process::Command;

use common::*;
use hickory_proto::rr::RecordType;
use mailzone::config::{Config, SecondaryConfig, ZoneSelection};
use mailzone::dnssec::Denial;

/// The example zone plus a wildcard, a signed delegation (with DS) and an unsigned one.
fn zone_text() -> String {
    format!(
        "{EXAMPLE_ZONE}\
         *.wild IN TXT \"from the wildcard\"\n\
         secure IN NS ns.secure\n\
         ns.secure IN A 192.0.2.77\n\
         secure IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n\
         insecure IN NS ns.elsewhere.test.\n"
    )
}

fn signed_config(config: &mut Config) {
    config.dnssec.enabled = true;
    config.transfer.secondaries = vec![SecondaryConfig {
        address: "127.0.0.1".into(),
        key: None,
        zones: ZoneSelection::All,
    }];
}

fn signed_daemon() -> TestDaemon {
    signed_daemon_with(Denial::Nsec)
}

/// The example zone signed with NSEC or NSEC3 denial of existence.
fn signed_daemon_with(denial: Denial) -> TestDaemon {
    TestDaemon::start_tuned(&[("example.test.zone", &zone_text())], |c| {
        signed_config(c);
        c.dnssec.denial = denial;
    })
}

fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: {name} is not installed (run the README's test command)");
    }
    found
}

/// A `delv` trust-anchor file with the zone's published SEP keys.
fn trust_anchor(d: &TestDaemon, dir: &std::path::Path) -> std::path::PathBuf {
    let keys = dig(d.dns, &["example.test", "DNSKEY", "+short"]);
    let mut text = String::from("trust-anchors {\n");
    for line in keys.lines().filter(|l| l.starts_with("257 ")) {
        let mut parts = line.split_whitespace();
        let (flags, proto, alg) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let key: String = parts.collect();
        text.push_str(&format!(
            "  example.test. static-key {flags} {proto} {alg} \"{key}\";\n"
        ));
    }
    text.push_str("};\n");
    assert!(text.contains("static-key"), "no SEP key published: {keys}");
    let path = dir.join("anchor.conf");
    std::fs::write(&path, text).unwrap();
    path
}

fn delv(d: &TestDaemon, anchor: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("delv")
        .arg(format!("@{}", d.dns.ip()))
        .args(["-p", &d.dns.port().to_string()])
        .arg("-a")
        .arg(anchor)
        .arg("+root=example.test")
        .args(args)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn axfr(d: &TestDaemon) -> String {
    let text = dig(
        d.dns,
        &[
            "example.test",
            "AXFR",
            "+nocmd",
            "+nostats",
            "+nocomments",
            "+noquestion",
        ],
    );
    // The closing SOA repeats the first.
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines.pop();
    lines.join("\n") + "\n"
}

#[test]
fn delv_validates_positive_answers_over_udp_and_tcp() {
    delv_validates_positive_answers_over_udp_and_tcp_with(Denial::Nsec);
}

#[test]
fn nsec3_delv_validates_positive_answers_over_udp_and_tcp() {
    delv_validates_positive_answers_over_udp_and_tcp_with(Denial::Nsec3);
}

fn delv_validates_positive_answers_over_udp_and_tcp_with(denial: Denial) {
    if !tool("delv") {
        return;
    }
    let d = signed_daemon_with(denial);
    let tmp = tempfile::tempdir().unwrap();
    let anchor = trust_anchor(&d, tmp.path());
    for transport in ["+notcp", "+tcp"] {
        for (name, rtype) in [
            ("example.test", "SOA"),
            ("example.test", "MX"),
            ("example.test", "TXT"),
            ("_dmarc.example.test", "TXT"),
            ("mail._domainkey.example.test", "TXT"),
            ("_submission._tcp.example.test", "SRV"),
            ("imap.example.test", "A"),
            ("www.example.test", "AAAA"),
            ("example.test", "DNSKEY"),
            ("example.test", "CDS"),
        ] {
            let out = delv(&d, &anchor, &[transport, name, rtype]);
            assert!(
                out.contains("; fully validated"),
                "{name} {rtype} {transport}: {out}"
            );
        }
    }
}

#[test]
fn delv_validates_a_wildcard_answer_and_its_no_closer_name_proof() {
    delv_validates_a_wildcard_answer_and_its_no_closer_name_proof_with(Denial::Nsec);
}

#[test]
fn nsec3_delv_validates_a_wildcard_answer_and_its_no_closer_name_proof() {
    delv_validates_a_wildcard_answer_and_its_no_closer_name_proof_with(Denial::Nsec3);
}

fn delv_validates_a_wildcard_answer_and_its_no_closer_name_proof_with(denial: Denial) {
    if !tool("delv") {
        return;
    }
    let d = signed_daemon_with(denial);
    let tmp = tempfile::tempdir().unwrap();
    let anchor = trust_anchor(&d, tmp.path());
    let out = delv(&d, &anchor, &["anything.wild.example.test", "TXT"]);
    assert!(out.contains("; fully validated"), "{out}");
    assert!(out.contains("from the wildcard"), "{out}");
}

#[test]
fn delv_validates_nxdomain_nodata_and_wildcard_nodata() {
    delv_validates_nxdomain_nodata_and_wildcard_nodata_with(Denial::Nsec);
}

#[test]
fn nsec3_delv_validates_nxdomain_nodata_and_wildcard_nodata() {
    delv_validates_nxdomain_nodata_and_wildcard_nodata_with(Denial::Nsec3);
}

fn delv_validates_nxdomain_nodata_and_wildcard_nodata_with(denial: Denial) {
    if !tool("delv") {
        return;
    }
    let d = signed_daemon_with(denial);
    let tmp = tempfile::tempdir().unwrap();
    let anchor = trust_anchor(&d, tmp.path());
    for transport in ["+notcp", "+tcp"] {
        for (name, rtype, expect) in [
            ("nothing-here.example.test", "A", "NXDOMAIN"),
            ("zzz.example.test", "A", "NXDOMAIN"),
            ("mail.example.test", "TXT", "NXRRSET"),
            ("_tcp.example.test", "A", "NXRRSET"),
            ("other.wild.example.test", "A", "NXRRSET"),
            ("smtp.nothing.example.test", "MX", "NXDOMAIN"),
        ] {
            let out = delv(&d, &anchor, &[transport, name, rtype]);
            assert!(
                out.contains("; negative response, fully validated") && out.contains(expect),
                "{name} {rtype} {transport}: {out}"
            );
        }
    }
}

#[test]
fn delv_validates_the_ds_of_a_signed_delegation_and_the_proof_of_none() {
    delv_validates_the_ds_of_a_signed_delegation_and_the_proof_of_none_with(Denial::Nsec);
}

#[test]
fn nsec3_delv_validates_the_ds_of_a_signed_delegation_and_the_proof_of_none() {
    delv_validates_the_ds_of_a_signed_delegation_and_the_proof_of_none_with(Denial::Nsec3);
}

fn delv_validates_the_ds_of_a_signed_delegation_and_the_proof_of_none_with(denial: Denial) {
    if !tool("delv") {
        return;
    }
    let d = signed_daemon_with(denial);
    let tmp = tempfile::tempdir().unwrap();
    let anchor = trust_anchor(&d, tmp.path());
    let out = delv(&d, &anchor, &["secure.example.test", "DS"]);
    assert!(out.contains("; fully validated"), "{out}");
    let out = delv(&d, &anchor, &["insecure.example.test", "DS"]);
    assert!(out.contains("negative response, fully validated"), "{out}");
}

#[test]
fn a_referral_with_do_carries_the_ds_or_the_nsec_proving_there_is_none() {
    let d = signed_daemon();
    let out = dig(
        d.dns,
        &["+dnssec", "+norec", "host.secure.example.test", "A"],
    );
    assert!(out.contains("\tDS\t12345"), "{out}");
    assert!(out.contains("RRSIG\tDS"), "{out}");
    let out = dig(
        d.dns,
        &["+dnssec", "+norec", "host.insecure.example.test", "A"],
    );
    assert!(
        out.contains("insecure.example.test.\t300\tIN\tNSEC"),
        "{out}"
    );
    assert!(out.contains("RRSIG\tNSEC"), "{out}");
}

#[test]
fn an_axfr_of_the_signed_zone_passes_ldns_verify_zone_dnssec_verify_and_named_checkzone() {
    an_axfr_of_the_signed_zone_passes_ldns_verify_zone_dnssec_verify_and_named_checkzone_with(
        Denial::Nsec,
    );
}

#[test]
fn nsec3_an_axfr_of_the_signed_zone_passes_ldns_verify_zone_dnssec_verify_and_named_checkzone() {
    an_axfr_of_the_signed_zone_passes_ldns_verify_zone_dnssec_verify_and_named_checkzone_with(
        Denial::Nsec3,
    );
}

fn an_axfr_of_the_signed_zone_passes_ldns_verify_zone_dnssec_verify_and_named_checkzone_with(
    denial: Denial,
) {
    if !tool("ldns-verify-zone") || !tool("dnssec-verify") || !tool("named-checkzone") {
        return;
    }
    let d = signed_daemon_with(denial);
    assert_axfr_verifies(&d, denial);
}

/// The zone's AXFR, one record a line, sorted (the order of names is the daemon's own).
fn sorted_axfr(d: &TestDaemon) -> Vec<String> {
    let mut lines: Vec<String> = axfr(d).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The zone's AXFR carries the signatures and the chain `denial` says (and not the other),
/// and passes `ldns-verify-zone`, `dnssec-verify` and `named-checkzone -i local`.
fn assert_axfr_verifies(d: &TestDaemon, denial: Denial) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("example.test.axfr");
    let text = axfr(d);
    assert!(text.contains("\tRRSIG\t"), "{text}");
    let (chain, other) = match denial {
        Denial::Nsec => ("NSEC", "NSEC3"),
        Denial::Nsec3 => ("NSEC3", "NSEC"),
    };
    let has_type = |t: &str| text.lines().any(|l| l.split_whitespace().nth(3) == Some(t));
    assert!(has_type(chain) && !has_type(other), "{text}");
    std::fs::write(&file, &text).unwrap();
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run(Command::new("ldns-verify-zone").arg(&file));
    assert!(ok, "ldns-verify-zone: {out}");
    // -z: a combined signing key has the SEP flag and signs everything.
    let (ok, out) = run(Command::new("dnssec-verify")
        .args(["-z", "-o", "example.test"])
        .arg(&file));
    assert!(
        ok && out.contains("Zone fully signed"),
        "dnssec-verify: {out}"
    );
    let (ok, out) = run(Command::new("named-checkzone")
        .args(["-i", "local", "example.test"])
        .arg(&file));
    assert!(
        ok && out.contains("DNSSEC signed"),
        "named-checkzone: {out}"
    );
    // BIND warns when a name's records come in two runs (the apex: SOA first, the rest
    // elsewhere).
    assert!(!out.contains("addnode"), "named-checkzone: {out}");
}

#[test]
fn do0_answers_carry_no_dnssec_records_and_do1_answers_do() {
    let d = signed_daemon();
    let plain = dig(d.dns, &["+norec", "example.test", "MX"]);
    assert!(!plain.contains("RRSIG"), "{plain}");
    let signed = dig(d.dns, &["+norec", "+dnssec", "example.test", "MX"]);
    assert!(signed.contains("RRSIG\tMX"), "{signed}");
    assert!(signed.contains("flags: do;"), "{signed}");
}

#[test]
fn do0_answers_of_a_signed_zone_are_the_unsigned_zones_bytes() {
    do0_answers_of_a_signed_zone_are_the_unsigned_zones_bytes_with(Denial::Nsec);
}

#[test]
fn nsec3_do0_answers_of_a_signed_zone_are_the_unsigned_zones_bytes() {
    do0_answers_of_a_signed_zone_are_the_unsigned_zones_bytes_with(Denial::Nsec3);
}

fn do0_answers_of_a_signed_zone_are_the_unsigned_zones_bytes_with(denial: Denial) {
    let unsigned = TestDaemon::start(&[("example.test.zone", &zone_text())]);
    let signed = signed_daemon_with(denial);
    for (name, rtype) in [
        ("example.test.", RecordType::MX),
        ("_dmarc.example.test.", RecordType::TXT),
        ("nothing.example.test.", RecordType::A),
    ] {
        let a = udp(unsigned.dns, name, rtype);
        let b = udp(signed.dns, name, rtype);
        assert_eq!(a.answers, b.answers, "{name} {rtype}");
        // The SOA of a negative answer differs only by its serial.
        assert_eq!(a.authorities.len(), b.authorities.len(), "{name} {rtype}");
        assert_eq!(a.additionals, b.additionals, "{name} {rtype}");
    }
}

#[test]
fn a_restart_serves_the_stored_signatures_without_signing_again() {
    a_restart_serves_the_stored_signatures_without_signing_again_with(Denial::Nsec);
}

#[test]
fn nsec3_a_restart_serves_the_stored_signatures_without_signing_again() {
    a_restart_serves_the_stored_signatures_without_signing_again_with(Denial::Nsec3);
}

fn a_restart_serves_the_stored_signatures_without_signing_again_with(denial: Denial) {
    let d = signed_daemon_with(denial);
    let (_, metrics) = http(d.http, "GET", "/metrics", Some(TOKEN), None);
    assert!(
        metric(&metrics, "mailzone_dnssec_signatures_total") > 50.0,
        "{metrics}"
    );
    let before = dig(d.dns, &["+short", "+dnssec", "example.test", "SOA"]);
    let (serial_before, axfr_before) = (serial(&d), sorted_axfr(&d));
    let d = d.restart();
    let after = dig(d.dns, &["+short", "+dnssec", "example.test", "SOA"]);
    assert_eq!(before, after);
    let (_, metrics) = http(d.http, "GET", "/metrics", Some(TOKEN), None);
    assert_eq!(
        metric(&metrics, "mailzone_dnssec_signatures_total"),
        0.0,
        "{metrics}"
    );
    // The start's policy pass (after the first answer) is done and re-signed nothing:
    // same serial, the very same records and signatures.
    assert!(
        metric(&metrics, "mailzone_dnssec_start_pass_seconds") > 0.0,
        "{metrics}"
    );
    assert_eq!(serial(&d), serial_before);
    assert_eq!(sorted_axfr(&d), axfr_before);
    if tool("ldns-verify-zone") && tool("dnssec-verify") && tool("named-checkzone") {
        assert_axfr_verifies(&d, denial);
    }
}

#[test]
fn the_api_gives_the_ds_for_the_parent_and_never_the_private_key() {
    let d = signed_daemon();
    let (status, body) = http(
        d.http,
        "GET",
        "/v1/zones/example.test./dnssec",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["signed"], true);
    let ds = v["ds"][0].as_str().unwrap();
    assert!(ds.starts_with("example.test. 3600 IN DS "), "{ds}");
    // The DS matches the published key, as dnssec-dsfromkey computes it.
    let keys = dig(d.dns, &["+noall", "+answer", "example.test", "DNSKEY"]);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("keys"), &keys).unwrap();
    if tool("dnssec-dsfromkey") {
        let out = Command::new("dnssec-dsfromkey")
            .args(["-2", "-f"])
            .arg(tmp.path().join("keys"))
            .arg("example.test")
            .output()
            .unwrap();
        let expected = String::from_utf8_lossy(&out.stdout);
        let digest = ds.split_whitespace().last().unwrap();
        assert!(expected.contains(digest), "{expected} vs {ds}");
    }
    assert!(!body.contains("PRIVATE"), "{body}");
}

/// `PATCH /v1/zones/example.test.` `{"dnssec": true}`: the zone's own setting signs it.
fn sign_through_the_zones_api(d: &TestDaemon) {
    let (status, body) = api(
        d.http,
        "PATCH",
        "/v1/zones/example.test.",
        &serde_json::json!({"dnssec": true}),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_zone_is_signed_through_the_zones_api_and_unsigning_starts_with_cds_delete() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", &zone_text())], |_| {});
    assert!(!dig(d.dns, &["+dnssec", "example.test", "SOA"]).contains("RRSIG"));
    sign_through_the_zones_api(&d);
    assert!(dig(d.dns, &["+dnssec", "example.test", "SOA"]).contains("RRSIG"));
    let key_dir = d.dir.path().join("keys/dnssec/example.test");
    let key = std::fs::read_dir(&key_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    let (status, _) = api(
        d.http,
        "PATCH",
        "/v1/zones/example.test.",
        &serde_json::json!({"dnssec": false}),
    );
    assert_eq!(status, 200);
    // Unsigning starts with the RFC 8078 delete records; the zone stays signed until the
    // parent has no DS (here the parent cannot be asked: it stays signed; the end of an
    // unsigning is in tests/dnssec_chain.rs).
    assert_eq!(
        dig(d.dns, &["+short", "example.test", "CDS"]).trim(),
        "0 0 0 00"
    );
    assert!(dig(d.dns, &["+dnssec", "example.test", "SOA"]).contains("RRSIG"));
    assert!(d.zones_dir().join("example.test.signed").exists());
}

#[test]
fn changes_through_the_api_keep_the_zone_verified_and_sign_only_what_changed() {
    changes_through_the_api_keep_the_zone_verified_and_sign_only_what_changed_with(Denial::Nsec);
}

#[test]
fn nsec3_changes_through_the_api_keep_the_zone_verified_and_sign_only_what_changed() {
    changes_through_the_api_keep_the_zone_verified_and_sign_only_what_changed_with(Denial::Nsec3);
}

fn changes_through_the_api_keep_the_zone_verified_and_sign_only_what_changed_with(denial: Denial) {
    if !tool("ldns-verify-zone") || !tool("dnssec-verify") || !tool("named-checkzone") {
        return;
    }
    let d = signed_daemon_with(denial);
    let (_, metrics) = http(d.http, "GET", "/metrics", Some(TOKEN), None);
    let start = metric(&metrics, "mailzone_dnssec_signatures_total");
    for i in 0..40 {
        let (status, body) = api(
            d.http,
            "PATCH",
            "/v1/zones/example.test./records",
            &serde_json::json!({"operations": [
                {"op": "replace", "name": format!("host{}", i % 7), "type": "A", "records": [format!("192.0.2.{i}")]},
            ]}),
        );
        assert_eq!(status, 200, "{body}");
    }
    let (_, metrics) = http(d.http, "GET", "/metrics", Some(TOKEN), None);
    let made = metric(&metrics, "mailzone_dnssec_signatures_total") - start;
    // Each change: its A rrset, the SOA, and at most a few NSEC or NSEC3 links. The zone has ~90
    // rrsets: re-signing it whole would be thousands.
    assert!(
        (80.0..=200.0).contains(&made),
        "{made} signatures for 40 changes"
    );
    assert_axfr_verifies(&d, denial);
}

#[test]
fn a_key_file_readable_by_others_is_refused_and_the_zone_keeps_its_signed_version() {
    let d = signed_daemon();
    let before = dig(d.dns, &["+short", "+dnssec", "example.test", "SOA"]);
    let key_dir = d.dir.path().join("keys/dnssec/example.test");
    let key = std::fs::read_dir(&key_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = d.restart();
    let after = dig(d.dns, &["+short", "+dnssec", "example.test", "SOA"]);
    assert_eq!(before, after, "the stored signed version is served");
    let (status, body) = api(
        d.http,
        "PATCH",
        "/v1/zones/example.test./records",
        &serde_json::json!({"operations": [
            {"op": "replace", "name": "x", "type": "A", "records": ["192.0.2.1"]},
        ]}),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("chmod 600"), "{body}");
    let (_, body) = http(
        d.http,
        "GET",
        "/v1/zones/example.test./dnssec",
        Some(TOKEN),
        None,
    );
    assert!(body.contains("chmod 600"), "{body}");
}

#[test]
fn a_corrupt_key_file_is_refused_and_the_zone_keeps_its_signed_version() {
    let d = signed_daemon();
    let before = dig(d.dns, &["+short", "+dnssec", "example.test", "MX"]);
    let key_dir = d.dir.path().join("keys/dnssec/example.test");
    let key = std::fs::read_dir(&key_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let d = d.restart();
    assert_eq!(
        before,
        dig(d.dns, &["+short", "+dnssec", "example.test", "MX"])
    );
    // Reported by the start's policy pass, before anything asks to change the zone.
    let (_, status) = http(d.http, "GET", "/v1/status", Some(TOKEN), None);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let error = status["dnssec_errors"]["example.test."]
        .as_str()
        .unwrap_or("");
    assert!(error.contains("keys/dnssec/example.test/"), "{status}");
    let (status, _) = api(
        d.http,
        "PATCH",
        "/v1/zones/example.test./records",
        &serde_json::json!({"operations": [
            {"op": "replace", "name": "x", "type": "A", "records": ["192.0.2.1"]},
        ]}),
    );
    assert_eq!(status, 409);
}

#[test]
fn a_signed_answer_that_does_not_fit_512_bytes_is_truncated() {
    let d = signed_daemon();
    let out = dig(
        d.dns,
        &[
            "+norec",
            "+dnssec",
            "+bufsize=512",
            "+ignore",
            "mail._domainkey.example.test",
            "TXT",
        ],
    );
    assert!(out.contains(" tc"), "{out}");
    let out = dig(
        d.dns,
        &[
            "+norec",
            "+dnssec",
            "+tcp",
            "mail._domainkey.example.test",
            "TXT",
        ],
    );
    assert!(out.contains("RRSIG\tTXT"), "{out}");
}

#[test]
fn generated_record_types_are_refused_through_the_api() {
    let d = signed_daemon();
    for rtype in ["RRSIG", "NSEC", "DNSKEY", "CDS", "CDNSKEY"] {
        let (status, body) = api(
            d.http,
            "PATCH",
            "/v1/zones/example.test./records",
            &serde_json::json!({"operations": [
                {"op": "replace", "name": "@", "type": rtype, "records": ["0 0 0 00"]},
            ]}),
        );
        assert_eq!(status, 400, "{rtype}: {body}");
        assert!(body.contains("generated by mailzone"), "{body}");
    }
}

fn serial(d: &TestDaemon) -> u32 {
    dig(d.dns, &["+short", "example.test", "SOA"])
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn ixfr_carries_the_changed_signatures_and_nsec_links_even_after_a_restart() {
    let d = signed_daemon();
    let old = serial(&d);
    let (status, body) = api(
        d.http,
        "PATCH",
        "/v1/zones/example.test./records",
        &serde_json::json!({"operations": [
            {"op": "replace", "name": "new", "type": "A", "records": ["192.0.2.99"]},
        ]}),
    );
    assert_eq!(status, 200, "{body}");
    let d = d.restart();
    let ixfr = dig(
        d.dns,
        &[
            "example.test",
            &format!("IXFR={old}"),
            "+nocmd",
            "+nostats",
            "+nocomments",
        ],
    );
    let lines: Vec<&str> = ixfr
        .lines()
        .filter(|l| !l.starts_with(';') && !l.is_empty())
        .collect();
    assert!(
        ixfr.contains("new.example.test.\t3600\tIN\tRRSIG\tA"),
        "{ixfr}"
    );
    assert!(ixfr.contains("new.example.test.\t300\tIN\tNSEC"), "{ixfr}");
    assert!(ixfr.contains("RRSIG\tSOA"), "{ixfr}");
    // Incremental: the new name, its neighbour's NSEC and the SOA, not the whole zone.
    assert!(lines.len() < 30, "{} lines: {ixfr}", lines.len());
}

/// `YYYYMMDDHHMMSS` of a Unix time, as dig prints RRSIG times.
fn dig_time(unix: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y%m%d%H%M%S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The inception of every RRSIG of an AXFR, as dig prints it.
fn inceptions(axfr: &str) -> Vec<String> {
    axfr.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"RRSIG")).then(|| f[9].to_string())
        })
        .collect()
}

#[test]
fn moving_the_clock_past_the_refresh_point_renews_every_signature_through_the_scheduler() {
    let d = signed_daemon();
    let first = serial(&d);
    let before = inceptions(&axfr(&d));
    assert!(before.len() > 50);
    let days8 = 8 * 86400;
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    d.daemon().shared().advance_clock(days8);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while serial(&d) == first {
        assert!(std::time::Instant::now() < deadline, "not re-signed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let after = inceptions(&axfr(&d));
    assert_eq!(before.len(), after.len());
    // Every signature made at the moved clock (inception back-dated one hour).
    let floor = dig_time(unix + days8 - 3600 - 60);
    for i in &after {
        assert!(*i >= floor, "{i} is older than {floor}: not renewed");
    }
}

#[test]
fn a_ksk_and_zsk_pair_signs_with_the_ksk_only_over_the_key_rrsets() {
    if !tool("dnssec-verify") || !tool("delv") {
        return;
    }
    let d = TestDaemon::start_tuned(&[("example.test.zone", &zone_text())], |c| {
        signed_config(c);
        c.dnssec.keys = mailzone::dnssec::KeyScheme::KskZsk;
    });
    let keys = dig(d.dns, &["+short", "example.test", "DNSKEY"]);
    assert_eq!(
        keys.lines().filter(|l| l.starts_with("257 ")).count(),
        1,
        "{keys}"
    );
    assert_eq!(
        keys.lines().filter(|l| l.starts_with("256 ")).count(),
        1,
        "{keys}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("z");
    std::fs::write(&file, axfr(&d)).unwrap();
    // Without -z: the KSK flag matters, the DNSKEY rrset must be signed by the KSK and the
    // rest by the ZSK.
    let out = Command::new("dnssec-verify")
        .args(["-o", "example.test"])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("KSKs: 1 active") && text.contains("ZSKs: 1 active"),
        "{text}"
    );
    let anchor = trust_anchor(&d, tmp.path());
    let out = delv(&d, &anchor, &["example.test", "MX"]);
    assert!(out.contains("; fully validated"), "{out}");
    let (_, body) = http(
        d.http,
        "GET",
        "/v1/zones/example.test./dnssec",
        Some(TOKEN),
        None,
    );
    // One DS: the KSK's.
    assert_eq!(json(&body)["ds"].as_array().unwrap().len(), 1, "{body}");
}

#[test]
fn an_ed25519_signed_zone_validates() {
    if !tool("delv") || !tool("ldns-verify-zone") {
        return;
    }
    let d = TestDaemon::start_tuned(&[("example.test.zone", &zone_text())], |c| {
        signed_config(c);
        c.dnssec.algorithm = mailzone::dnssec::AlgorithmName::Ed25519;
    });
    let keys = dig(d.dns, &["+short", "example.test", "DNSKEY"]);
    assert!(keys.starts_with("257 3 15 "), "{keys}");
    let tmp = tempfile::tempdir().unwrap();
    let anchor = trust_anchor(&d, tmp.path());
    for (name, rtype) in [("example.test", "MX"), ("nothing.example.test", "A")] {
        let out = delv(&d, &anchor, &[name, rtype]);
        assert!(out.contains("fully validated"), "{name}: {out}");
    }
    let file = tmp.path().join("z");
    std::fs::write(&file, axfr(&d)).unwrap();
    let out = Command::new("ldns-verify-zone")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nsec3_is_accepted_in_the_config_and_an_unknown_denial_is_refused_with_its_key() {
    let config =
        mailzone::config::Config::from_yaml("dnssec:\n  denial: nsec3\n", "mailzone.yaml").unwrap();
    assert_eq!(config.dnssec.denial, mailzone::dnssec::Denial::Nsec3);
    let e = mailzone::config::Config::from_yaml("dnssec:\n  denial: nsec5\n", "mailzone.yaml")
        .unwrap_err();
    assert!(e.to_string().contains("denial"), "{e}");
}

/// ISC's EDNS compliance tests (ednscomp, genreport) that involve the DO bit, as dig runs
/// them, on a signed zone: the DO bit is echoed, and the answer is right.
#[test]
fn the_ednscomp_do_tests_pass_on_a_signed_zone() {
    let d = signed_daemon();
    for (test, args, status) in [
        (
            "do",
            vec![
                "+norec",
                "+edns=0",
                "+nocookie",
                "+dnssec",
                "example.test",
                "SOA",
            ],
            "NOERROR",
        ),
        (
            "docd",
            vec![
                "+norec",
                "+edns=0",
                "+nocookie",
                "+dnssec",
                "+cd",
                "example.test",
                "SOA",
            ],
            "NOERROR",
        ),
        (
            "edns1do",
            vec![
                "+norec",
                "+edns=1",
                "+noednsneg",
                "+nocookie",
                "+dnssec",
                "example.test",
                "SOA",
            ],
            "BADVERS",
        ),
        (
            "ednstcp",
            vec![
                "+norec",
                "+edns=0",
                "+nocookie",
                "+dnssec",
                "+tcp",
                "example.test",
                "SOA",
            ],
            "NOERROR",
        ),
        (
            "bind11",
            vec![
                "+norec",
                "+edns=0",
                "+cookie",
                "+nsid",
                "+expire",
                "+dnssec",
                "example.test",
                "SOA",
            ],
            "NOERROR",
        ),
        (
            "edns@512",
            vec![
                "+norec",
                "+edns=0",
                "+nocookie",
                "+dnssec",
                "+bufsize=512",
                "+ignore",
                "example.test",
                "DNSKEY",
            ],
            "NOERROR",
        ),
    ] {
        let out = dig(d.dns, &args);
        assert!(out.contains(&format!("status: {status}")), "{test}: {out}");
        assert!(
            out.contains("; EDNS: version: 0, flags: do;"),
            "{test}: DO not echoed: {out}"
        );
        if status == "NOERROR" && test != "edns@512" {
            assert!(out.contains("RRSIG\tSOA"), "{test}: {out}");
        }
    }
}

/// Stops `d` and starts a daemon on its folders with its configuration changed by `tune`.
fn restart_tuned(d: TestDaemon, tune: impl FnOnce(&mut Config)) -> TestDaemon {
    let mut config = d.daemon().shared().config.clone();
    tune(&mut config);
    config.dns.listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
    config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut d = d;
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);
    TestDaemon::run(dir, config)
}

#[test]
fn an_algorithm_rollover_is_refused_clearly_and_the_zone_keeps_its_keys() {
    let d = signed_daemon();
    let before = dig(d.dns, &["+short", "example.test", "DNSKEY"]);
    assert!(before.starts_with("257 3 13 "), "{before}");
    let d = restart_tuned(d, |c| {
        c.dnssec.algorithm = mailzone::dnssec::AlgorithmName::Ed25519;
    });
    let after = dig(d.dns, &["+short", "example.test", "DNSKEY"]);
    assert_eq!(before, after);
    let (_, body) = http(d.http, "GET", "/v1/status", Some(TOKEN), None);
    assert!(
        body.contains("algorithm rollovers are not supported"),
        "{body}"
    );
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

#[test]
fn a_zsk_rollover_pre_publishes_the_new_key_then_signs_with_it_then_drops_the_old_one() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", &zone_text())], |c| {
        signed_config(c);
        c.dnssec.keys = mailzone::dnssec::KeyScheme::KskZsk;
        c.dnssec.dnskey_ttl = 1;
        c.dnssec.propagation_secs = 1;
    });
    let old_zsk = signing_tags(&d, "example.test", "MX");
    assert_eq!(old_zsk.len(), 1);
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/zones/example.test./dnssec/rollover",
        &serde_json::json!({"key": "zsk"}),
    );
    assert_eq!(status, 200, "{body}");
    let new_zsk = json(&body)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "published")
        .map(|k| k["key_tag"].to_string())
        .expect("a published key");
    // Pre-published: in the DNSKEY rrset, not signing yet.
    let keys = dig(d.dns, &["+short", "example.test", "DNSKEY"]);
    assert_eq!(keys.lines().count(), 3, "{keys}");
    assert_eq!(signing_tags(&d, "example.test", "MX"), old_zsk);
    // A second rollover while this one runs is refused.
    let (status, _) = api(
        d.http,
        "POST",
        "/v1/zones/example.test./dnssec/rollover",
        &serde_json::json!({"key": "zsk"}),
    );
    assert_eq!(status, 409);
    // After the DNSKEY TTL and the propagation time, the new key signs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while signing_tags(&d, "example.test", "MX") != vec![new_zsk.clone()] {
        assert!(
            std::time::Instant::now() < deadline,
            "the new ZSK never signed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let keys = dig(d.dns, &["+short", "example.test", "DNSKEY"]);
    assert_eq!(
        keys.lines().count(),
        3,
        "the old key stays while its signatures may be cached: {keys}"
    );
    // Once the zone's largest TTL has passed, the old key goes.
    d.daemon().shared().advance_clock(3700);
    while dig(d.dns, &["+short", "example.test", "DNSKEY"])
        .lines()
        .count()
        != 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the old ZSK never left"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if tool("ldns-verify-zone") {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("z");
        std::fs::write(&file, axfr(&d)).unwrap();
        // Validated at the moved clock.
        let out = Command::new("ldns-verify-zone")
            .args(["-t", "+3700"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, body) = http(
        d.http,
        "GET",
        "/v1/zones/example.test./dnssec",
        Some(TOKEN),
        None,
    );
    assert!(
        !body.contains(&format!("\"key_tag\":{},", old_zsk[0])),
        "{body}"
    );
    let files = std::fs::read_dir(d.dir.path().join("keys/dnssec/example.test")).unwrap();
    assert_eq!(files.count(), 2, "the old ZSK's file is deleted");
}

#[test]
fn a_csk_rollover_is_refused_until_the_parent_ds_can_be_checked() {
    let d = signed_daemon();
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/zones/example.test./dnssec/rollover",
        &serde_json::json!({"key": "csk"}),
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("parent"), "{body}");
}

/// The records of one type in a section of `dig +dnssec` output (the type is the 4th field).
fn of_type<'a>(out: &'a str, rtype: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| !l.starts_with(';') && l.split_whitespace().nth(3) == Some(rtype))
        .collect()
}

#[test]
fn nsec3_nxdomain_carries_the_closest_encloser_the_next_closer_and_the_wildcard_proofs() {
    let d = signed_daemon_with(Denial::Nsec3);
    let out = dig(
        d.dns,
        &["+dnssec", "+norec", "a.b.nothing.example.test", "A"],
    );
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    // Three distinct NSEC3 records (RFC 5155 §7.2.2), each signed; no NSEC.
    let nsec3 = of_type(&out, "NSEC3");
    assert_eq!(nsec3.len(), 3, "{out}");
    assert_eq!(of_type(&out, "RRSIG").len(), 4, "SOA + 3 NSEC3: {out}");
    assert!(of_type(&out, "NSEC").is_empty(), "{out}");
}

#[test]
fn nsec3_nodata_at_an_empty_non_terminal_is_its_own_nsec3_with_an_empty_bitmap() {
    let d = signed_daemon_with(Denial::Nsec3);
    let out = dig(d.dns, &["+dnssec", "+norec", "_tcp.example.test", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    let nsec3 = of_type(&out, "NSEC3");
    assert_eq!(nsec3.len(), 1, "{out}");
    // "1 0 0 - NEXTHASH" and no type after it.
    assert_eq!(nsec3[0].split_whitespace().count(), 9, "{out}");
}

#[test]
fn nsec3_the_apex_has_an_nsec3param_with_the_rfc_9276_parameters() {
    let d = signed_daemon_with(Denial::Nsec3);
    let out = dig(d.dns, &["+short", "example.test", "NSEC3PARAM"]);
    assert_eq!(out.trim(), "1 0 0 -", "{out}");
}

#[test]
fn nsec3_a_query_for_an_nsec3_owner_name_is_nxdomain() {
    let d = signed_daemon_with(Denial::Nsec3);
    let text = axfr(&d);
    let owner = text
        .lines()
        .find(|l| l.split_whitespace().nth(3) == Some("NSEC3"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let out = dig(d.dns, &["+dnssec", "+norec", &owner, "NSEC3"]);
    assert!(out.contains("status: NXDOMAIN"), "{owner}: {out}");
}

#[test]
fn switching_a_live_zone_between_nsec_and_nsec3_rechains_it_and_it_still_verifies() {
    if !tool("ldns-verify-zone") || !tool("dnssec-verify") || !tool("named-checkzone") {
        return;
    }
    let d = signed_daemon_with(Denial::Nsec);
    for denial in [Denial::Nsec3, Denial::Nsec] {
        let name = match denial {
            Denial::Nsec => "nsec",
            Denial::Nsec3 => "nsec3",
        };
        let (status, body) = api(
            d.http,
            "PATCH",
            "/v1/zones/example.test.",
            &serde_json::json!({"dnssec_denial": name}),
        );
        assert_eq!(status, 200, "{body}");
        assert_axfr_verifies(&d, denial);
    }
}

#[test]
fn a_restart_with_nsec3_configured_rechains_a_zone_stored_with_nsec() {
    if !tool("ldns-verify-zone") || !tool("dnssec-verify") || !tool("named-checkzone") {
        return;
    }
    let d = signed_daemon_with(Denial::Nsec);
    let d = restart_tuned(d, |c| c.dnssec.denial = Denial::Nsec3);
    assert_axfr_verifies(&d, Denial::Nsec3);
    let tmp = tempfile::tempdir().unwrap();
    let anchor = trust_anchor(&d, tmp.path());
    let out = delv(&d, &anchor, &["nothing-here.example.test", "A"]);
    assert!(
        out.contains("; negative response, fully validated"),
        "{out}"
    );
}

#[test]
fn a_name_whose_records_are_all_deleted_is_proven_absent() {
    a_name_whose_records_are_all_deleted_is_proven_absent_with(Denial::Nsec);
}

#[test]
fn nsec3_a_name_whose_records_are_all_deleted_is_proven_absent() {
    a_name_whose_records_are_all_deleted_is_proven_absent_with(Denial::Nsec3);
}

fn a_name_whose_records_are_all_deleted_is_proven_absent_with(denial: Denial) {
    if !tool("delv") || !tool("ldns-verify-zone") || !tool("dnssec-verify") {
        return;
    }
    let d = signed_daemon_with(denial);
    let (status, body) = api(
        d.http,
        "PATCH",
        "/v1/zones/example.test./records",
        &serde_json::json!({"operations": [{"op": "delete", "name": "mx2", "type": "A"}]}),
    );
    assert_eq!(status, 200, "{body}");
    let tmp = tempfile::tempdir().unwrap();
    let anchor = trust_anchor(&d, tmp.path());
    let out = delv(&d, &anchor, &["mx2.example.test", "A"]);
    assert!(
        out.contains("; negative response, fully validated") && out.contains("NXDOMAIN"),
        "{out}"
    );
    if tool("named-checkzone") {
        assert_axfr_verifies(&d, denial);
    }
}

#[test]
fn a_dnskey_written_by_hand_in_a_zone_file_is_refused_with_its_file_and_line() {
    let text = format!("{EXAMPLE_ZONE}@ IN DNSKEY 257 3 13 AAAA\n");
    let line = text.lines().count();
    let d = TestDaemon::start(&[("example.test.zone", &text)]);
    let m = udp(d.dns, "example.test.", RecordType::SOA);
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::Refused
    );
    let (_, body) = http(d.http, "GET", "/v1/status", None, None);
    let v = json(&body);
    let zone = v["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["name"] == "example.test.")
        .cloned()
        .unwrap();
    let error = zone["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("example.test.zone:{line}:")) && error.contains("DNSKEY"),
        "{error}"
    );
}

#[test]
fn nsec3_ixfr_carries_the_new_nsec3_and_its_neighbour_only_even_after_a_restart() {
    let d = signed_daemon_with(Denial::Nsec3);
    let old = serial(&d);
    let (status, body) = api(
        d.http,
        "PATCH",
        "/v1/zones/example.test./records",
        &serde_json::json!({"operations": [
            {"op": "replace", "name": "new", "type": "A", "records": ["192.0.2.99"]},
        ]}),
    );
    assert_eq!(status, 200, "{body}");
    let d = d.restart();
    let ixfr = dig(
        d.dns,
        &[
            "example.test",
            &format!("IXFR={old}"),
            "+nocmd",
            "+nostats",
            "+nocomments",
        ],
    );
    let lines: Vec<&str> = ixfr
        .lines()
        .filter(|l| !l.starts_with(';') && !l.is_empty())
        .collect();
    let nsec3: Vec<&&str> = lines
        .iter()
        .filter(|l| l.split_whitespace().nth(3) == Some("NSEC3"))
        .collect();
    // Out: the neighbour's old NSEC3; in: its new one and the new name's.
    assert_eq!(nsec3.len(), 3, "{ixfr}");
    assert!(of_type(&ixfr, "NSEC").is_empty(), "{ixfr}");
    assert!(ixfr.contains("RRSIG\tSOA"), "{ixfr}");
    assert!(lines.len() < 30, "{} lines: {ixfr}", lines.len());
}

/// `dnssec-verify` (and `ldns-verify-zone` when installed) on an AXFR of a KSK+ZSK zone; the
/// signatures are checked at the real clock (the tests below back-date inceptions so that
/// signatures made at a moved test clock are already valid).
fn assert_ksk_zsk_axfr_verifies(d: &TestDaemon, step: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("z");
    let text = axfr(d);
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("dnssec-verify")
        .args(["-o", "example.test"])
        .arg(&file)
        .output()
        .unwrap();
    let out_text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && out_text.contains("Zone fully signed"),
        "{step}: dnssec-verify: {out_text}\n{text}"
    );
    if tool("ldns-verify-zone") {
        let out = Command::new("ldns-verify-zone")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{step}: ldns-verify-zone: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn dnssec_view(d: &TestDaemon) -> serde_json::Value {
    let (status, body) = http(
        d.http,
        "GET",
        "/v1/zones/example.test./dnssec",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    json(&body)
}

/// The key of `role` in state `state`, from the API.
fn key_in(d: &TestDaemon, role: &str, state: &str) -> Option<serde_json::Value> {
    dnssec_view(d)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == role && k["state"] == state)
        .cloned()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The `mailzone_dnssec_next_rollover_timestamp_seconds` lines of the zone.
fn next_rollover_series(d: &TestDaemon, zone: &str) -> Vec<String> {
    let (_, metrics) = http(d.http, "GET", "/metrics", Some(TOKEN), None);
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("mailzone_dnssec_next_rollover_timestamp_seconds{")
                && l.contains(&format!("zone=\"{zone}\""))
        })
        .map(str::to_string)
        .collect()
}

/// A KSK+ZSK zone whose ZSK lives a day, with quick rollover steps; inceptions back-dated
/// four days so that what is signed at a test clock moved by up to three days verifies
/// at the real clock.
fn auto_rolling_daemon(tune: impl FnOnce(&mut Config)) -> TestDaemon {
    TestDaemon::start_tuned(&[("example.test.zone", &zone_text())], |c| {
        signed_config(c);
        c.dnssec.keys = mailzone::dnssec::KeyScheme::KskZsk;
        c.dnssec.dnskey_ttl = 1;
        c.dnssec.propagation_secs = 1;
        c.dnssec.inception_offset_secs = 4 * 86400;
        c.dnssec.zsk_lifetime_secs = 86400;
        tune(c);
    })
}

#[test]
fn a_zsk_is_rolled_by_itself_once_its_lifetime_has_passed_and_the_zone_verifies_at_each_step() {
    if !tool("dnssec-verify") {
        return;
    }
    let d = auto_rolling_daemon(|_| {});
    let old = key_in(&d, "zsk", "active").expect("an active ZSK");
    let old_tag = old["key_tag"].to_string();
    let due = dnssec_view(&d)["next_rollover"]["zsk"]
        .as_u64()
        .expect("a ZSK rollover planned");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A day after activation, less this zone's fixed spread (at most a tenth of a day).
    let spread = mailzone::daemon::dnssec::rollover_spread(
        &hickory_proto::rr::Name::from_ascii("example.test.").unwrap(),
        mailzone::dnssec::keys::Role::Zsk,
        86400,
    );
    assert!(spread <= 8640);
    let lifetime_left = 86400 - spread;
    assert!(
        (now + lifetime_left - 60..=now + lifetime_left + 60).contains(&due),
        "due a day after activation less its spread {spread}: {due} vs now {now}"
    );
    assert!(
        dnssec_view(&d)["next_rollover"]["ksk"].is_null(),
        "KSK lifetime 0: never"
    );
    let series = next_rollover_series(&d, "example.test.");
    assert_eq!(series.len(), 1, "{series:?}");
    assert!(series[0].contains("role=\"zsk\""), "{series:?}");
    assert_ksk_zsk_axfr_verifies(&d, "before");

    // Just before the end of its lifetime, nothing happens.
    d.daemon().shared().advance_clock(lifetime_left - 120);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(key_in(&d, "zsk", "published").is_none());
    assert_eq!(
        signing_tags(&d, "example.test", "MX"),
        vec![old_tag.clone()]
    );

    // Past it: the new ZSK is published by itself, the old one still signs.
    d.daemon().shared().advance_clock(180);
    wait_until("a new ZSK published", || {
        key_in(&d, "zsk", "published").is_some() || key_in(&d, "zsk", "retired").is_some()
    });
    let new = key_in(&d, "zsk", "published")
        .or_else(|| key_in(&d, "zsk", "active"))
        .unwrap();
    let new_tag = new["key_tag"].to_string();
    assert_ne!(new_tag, old_tag);
    let (_, metrics) = http(d.http, "GET", "/metrics", Some(TOKEN), None);
    assert!(
        metrics.contains("mailzone_dnssec_key_events_total{event=\"rollover_automatic\"} 1"),
        "{metrics}"
    );
    if key_in(&d, "zsk", "published").is_some() {
        assert_eq!(
            signing_tags(&d, "example.test", "MX"),
            vec![old_tag.clone()]
        );
        assert_ksk_zsk_axfr_verifies(&d, "new ZSK published");
    }

    // After the DNSKEY TTL and the propagation time, the new key signs; the old one stays
    // published while its signatures may be cached.
    wait_until("the new ZSK signing", || {
        signing_tags(&d, "example.test", "MX") == vec![new_tag.clone()]
    });
    assert_eq!(
        dig(d.dns, &["+short", "example.test", "DNSKEY"])
            .lines()
            .count(),
        3
    );
    assert_ksk_zsk_axfr_verifies(&d, "new ZSK active, old retired");

    // After the zone's largest TTL the old key goes.
    d.daemon().shared().advance_clock(3700);
    wait_until("the old ZSK removed", || {
        dig(d.dns, &["+short", "example.test", "DNSKEY"])
            .lines()
            .count()
            == 2
    });
    assert_ksk_zsk_axfr_verifies(&d, "old ZSK removed");

    // The next automatic rollover is planned from the new key's activation.
    let next = dnssec_view(&d)["next_rollover"]["zsk"].as_u64().unwrap();
    assert!(next > due + lifetime_left - 60, "{next} vs first {due}");
    let key = mailzone::daemon::scheduler::AssociationKey::zone("example.test.");
    assert!(
        d.daemon()
            .shared()
            .scheduler
            .deadline(&key, mailzone::daemon::scheduler::Job::RollKeys)
            .is_some(),
        "the next rollover is scheduled"
    );
}

#[test]
fn a_key_lifetime_of_zero_never_rolls() {
    // The global ZSK lifetime is a day; the zone's own setting of 0 wins.
    let d = auto_rolling_daemon(|_| {});
    let (status, body) = api(
        d.http,
        "PATCH",
        "/v1/zones/example.test.",
        &serde_json::json!({"dnssec_zsk_lifetime_secs": 0}),
    );
    assert_eq!(status, 200, "{body}");
    let v = dnssec_view(&d);
    assert!(v["next_rollover"]["zsk"].is_null(), "{v}");
    assert!(v["next_rollover"]["ksk"].is_null(), "{v}");
    assert!(next_rollover_series(&d, "example.test.").is_empty());
    let key = mailzone::daemon::scheduler::AssociationKey::zone("example.test.");
    let roll_job = || {
        d.daemon()
            .shared()
            .scheduler
            .deadline(&key, mailzone::daemon::scheduler::Job::RollKeys)
    };
    assert!(roll_job().is_none(), "no rollover job");
    let before = dig(d.dns, &["+short", "example.test", "DNSKEY"]);
    assert_eq!(before.lines().count(), 2);
    // Four hundred days later (the zone re-signed meanwhile), the same two keys.
    d.daemon().shared().advance_clock(400 * 86400);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let mut after: Vec<String> = dig(d.dns, &["+short", "example.test", "DNSKEY"])
        .lines()
        .map(str::to_string)
        .collect();
    let mut before: Vec<String> = before.lines().map(str::to_string).collect();
    after.sort();
    before.sort();
    assert_eq!(before, after);
    assert!(key_in(&d, "zsk", "published").is_none());
    assert!(roll_job().is_none(), "no rollover job");
}

#[test]
fn a_key_lifetime_shorter_than_a_day_is_refused_with_its_key() {
    for key in ["zsk_lifetime_secs", "ksk_lifetime_secs"] {
        let e = mailzone::config::Config::from_yaml(
            &format!("dnssec:\n  {key}: 3600\n"),
            "mailzone.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains(&format!("dnssec.{key}")), "{e}");
        for fine in [0, 86400] {
            mailzone::config::Config::from_yaml(
                &format!("dnssec:\n  {key}: {fine}\n"),
                "mailzone.yaml",
            )
            .unwrap();
        }
    }
    let d = signed_daemon();
    for key in ["dnssec_zsk_lifetime_secs", "dnssec_ksk_lifetime_secs"] {
        let (status, body) = api(
            d.http,
            "PATCH",
            "/v1/zones/example.test.",
            &serde_json::json!({ key: 600 }),
        );
        assert_eq!(status, 400, "{body}");
        assert_eq!(json(&body)["error"]["field"], key, "{body}");
    }
    let state = std::fs::read_to_string(d.zones_dir().join("dnssec/example.test.yaml")).unwrap();
    assert!(!state.contains("lifetime"), "nothing stored: {state}");
}

#[test]
fn deleting_a_signed_zone_leaves_no_rollover_nor_resign_job_nor_series() {
    let d = auto_rolling_daemon(|_| {});
    let jobs = || zone_jobs(&d, "example.test.");
    assert!(
        jobs().contains(&mailzone::daemon::scheduler::Job::RollKeys),
        "{:?}",
        jobs()
    );
    let (status, body) = http(
        d.http,
        "DELETE",
        "/v1/zones/example.test.",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 204, "{body}");
    assert!(jobs().is_empty(), "{:?}", jobs());
    assert!(next_rollover_series(&d, "example.test.").is_empty());
}

/// Stops `d`, lets `edit` change its zones folder, and starts a daemon on it again.
fn restart_after_editing(d: TestDaemon, edit: impl FnOnce(&std::path::Path)) -> TestDaemon {
    let mut config = d.daemon().shared().config.clone();
    config.dns.listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
    config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let zones = d.zones_dir();
    let mut d = d;
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);
    edit(&zones);
    TestDaemon::run(dir, config)
}

fn signatures_made(d: &TestDaemon) -> f64 {
    let (_, metrics) = http(d.http, "GET", "/metrics", Some(TOKEN), None);
    metric(&metrics, "mailzone_dnssec_signatures_total")
}

fn served_journal_len(d: &TestDaemon) -> usize {
    let origin = hickory_proto::rr::Name::from_ascii("example.test.").unwrap();
    d.daemon()
        .shared()
        .zones
        .load()
        .get(&origin)
        .unwrap()
        .journal()
        .len()
}

#[test]
fn a_restart_keeps_the_journal_that_leads_to_the_stored_signed_version() {
    let d = signed_daemon();
    let kept = served_journal_len(&d);
    assert!(kept >= 1, "the first signing is a journal step");
    let d = d.restart();
    assert_eq!(signatures_made(&d), 0.0);
    assert_eq!(served_journal_len(&d), kept, "IXFR still reaches back");
}

/// FNV-1a 64, the signatures file's checksum.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The checksum of format 4: little-endian words, a multiply and a rotation each, the tail
/// bytes one by one, a final mix.
fn word_checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = K ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().unwrap()))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The checksum of format 5 (its first word) and its text hash (all four words, big-endian):
/// four lanes of [`word_checksum`]'s step over 32-byte blocks, the tail bytes round the
/// lanes, each word out mixing its lane with all four.
fn lanes_hash(bytes: &[u8]) -> [u64; 4] {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |mut h: u64| {
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    };
    let len = bytes.len() as u64;
    let mut h = [0u32, 16, 32, 48].map(|r| K.rotate_left(r) ^ len);
    let blocks = bytes.len() / 32 * 32;
    for (i, w) in bytes[..blocks].chunks_exact(8).enumerate() {
        let lane = &mut h[i % 4];
        *lane = (*lane ^ u64::from_le_bytes(w.try_into().unwrap()))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    for (i, &b) in bytes[blocks..].iter().enumerate() {
        let lane = &mut h[i % 4];
        *lane = (*lane ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    let all = h[0] ^ h[1].rotate_left(16) ^ h[2].rotate_left(32) ^ h[3].rotate_left(48);
    [1u64, 2, 3, 4].map(|n| mix(all.wrapping_add(mix(h[n as usize - 1] ^ n))))
}

/// The parts of a signatures file of format 5 as the daemon writes it: the hash of the zone
/// file's text, the fixed fields (serial, user digest, zone digest), the summary, the arena
/// header (layout, record count, where the NSEC3 run starts) and the zone's arena.
struct Format5<'a> {
    text_hash: &'a [u8],
    fixed: &'a [u8],
    summary: &'a [u8],
    arena_header: &'a [u8],
    arena: &'a [u8],
}

fn format5_parts(v5: &[u8]) -> Format5<'_> {
    let magic = b"mailzone-signed 5\n";
    assert!(v5.starts_with(magic), "written in format 5");
    let end = v5.len() - 8;
    assert_eq!(
        lanes_hash(&v5[..end])[0].to_be_bytes(),
        v5[end..],
        "the file's own checksum"
    );
    let body = &v5[magic.len()..end];
    // The summary: expiry (8), flags (1), keys (count, 5 bytes each), SOA signers and
    // DNSKEY signers (count, 2 bytes each).
    let mut at = 52 + 9;
    at += 1 + 5 * body[at] as usize;
    at += 1 + 2 * body[at] as usize;
    at += 1 + 2 * body[at] as usize;
    Format5 {
        text_hash: &body[..32],
        fixed: &body[32..52],
        summary: &body[52..at],
        arena_header: &body[at..at + 9],
        arena: &body[at + 9..],
    }
}

/// The DNSSEC records of an arena (nodes: owner, count, then type, TTL, RDLENGTH, RDATA per
/// record) as uncompressed wire RRs, and how many: the body of formats 1 to 3.
fn generated_rrs(mut arena: &[u8]) -> (u32, Vec<u8>) {
    let generated = [48u16, 59, 60, 46, 47, 50, 51];
    let (mut n, mut out) = (0u32, Vec::new());
    while !arena.is_empty() {
        let mut owner_len = 0;
        while arena[owner_len] != 0 {
            owner_len += 1 + arena[owner_len] as usize;
        }
        let owner = &arena[..=owner_len];
        let count = u16::from_be_bytes([arena[owner_len + 1], arena[owner_len + 2]]);
        arena = &arena[owner_len + 3..];
        for _ in 0..count {
            let rtype = u16::from_be_bytes([arena[0], arena[1]]);
            let len = 8 + u16::from_be_bytes([arena[6], arena[7]]) as usize;
            if generated.contains(&rtype) {
                out.extend_from_slice(owner);
                out.extend_from_slice(&arena[..2]);
                out.extend_from_slice(&1u16.to_be_bytes());
                out.extend_from_slice(&arena[2..len]);
                n += 1;
            }
            arena = &arena[len..];
        }
    }
    (n, out)
}

/// SHA-256 of a zone file's text: the text hash of formats 3 and 4.
fn sha256(text: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, text)
        .as_ref()
        .to_vec()
}

/// A signatures file of format 4, 3, 2 or 1 with the same content as a format 5 one, made
/// for the zone file `text`.
fn older_format(v5: &[u8], version: u8, text: &[u8]) -> Vec<u8> {
    let parts = format5_parts(v5);
    let (count, rrs) = generated_rrs(parts.arena);
    let mut out = format!("mailzone-signed {version}\n").into_bytes();
    if version >= 3 {
        out.extend_from_slice(&sha256(text));
    }
    // Version 1 has no zone digest after the user digest.
    out.extend_from_slice(if version == 1 {
        &parts.fixed[..12]
    } else {
        parts.fixed
    });
    if version >= 3 {
        out.extend_from_slice(parts.summary);
    }
    if version == 4 {
        out.extend_from_slice(parts.arena_header);
        out.extend_from_slice(parts.arena);
        let sum = word_checksum(&out);
        out.extend_from_slice(&sum.to_be_bytes());
        return out;
    }
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&rrs);
    let sum = fnv(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    out
}

#[test]
fn a_restart_reads_signatures_stored_in_the_first_format_without_signing_again() {
    a_restart_reads_signatures_stored_in_an_older_format_without_signing_again(1);
}

#[test]
fn a_restart_reads_signatures_stored_in_the_second_format_without_signing_again() {
    a_restart_reads_signatures_stored_in_an_older_format_without_signing_again(2);
}

#[test]
fn a_restart_reads_signatures_stored_in_the_third_format_without_signing_again() {
    a_restart_reads_signatures_stored_in_an_older_format_without_signing_again(3);
}

#[test]
fn a_restart_reads_signatures_stored_in_the_fourth_format_without_signing_again() {
    a_restart_reads_signatures_stored_in_an_older_format_without_signing_again(4);
}

#[test]
fn the_text_hash_of_the_current_format_is_of_the_zone_file_as_it_is() {
    let d = signed_daemon();
    let d = restart_after_editing(d, |zones| {
        let v5 = std::fs::read(zones.join("example.test.signed")).unwrap();
        let text = std::fs::read(zones.join("example.test.zone")).unwrap();
        let parts = format5_parts(&v5);
        let words: Vec<u8> = lanes_hash(&text)
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(parts.text_hash, &words[..]);
    });
    assert_eq!(signatures_made(&d), 0.0, "restarted from its signatures");
}

fn a_restart_reads_signatures_stored_in_an_older_format_without_signing_again(version: u8) {
    let d = signed_daemon();
    let kept = served_journal_len(&d);
    let before = dig(d.dns, &["+short", "+dnssec", "example.test", "SOA"]);
    let axfr_before = sorted_axfr(&d);
    let d = restart_after_editing(d, |zones| {
        let path = zones.join("example.test.signed");
        let v5 = std::fs::read(&path).unwrap();
        let text = std::fs::read(zones.join("example.test.zone")).unwrap();
        std::fs::write(&path, older_format(&v5, version, &text)).unwrap();
    });
    assert_eq!(signatures_made(&d), 0.0);
    assert_eq!(
        dig(d.dns, &["+short", "+dnssec", "example.test", "SOA"]),
        before
    );
    assert_eq!(sorted_axfr(&d), axfr_before);
    assert_eq!(served_journal_len(&d), kept);
}

#[test]
fn signatures_stored_with_another_record_layout_are_not_used_and_the_zone_is_signed_again() {
    let d = signed_daemon();
    let d = restart_after_editing(d, |zones| {
        let path = zones.join("example.test.signed");
        let mut v5 = std::fs::read(&path).unwrap();
        let arena_len = format5_parts(&v5).arena.len();
        // The layout byte sits 9 bytes before the arena (then count, NSEC3 start).
        let layout_at = v5.len() - 8 - arena_len - 9;
        let end = v5.len() - 8;
        v5[layout_at] = v5[layout_at].wrapping_add(1);
        let sum = lanes_hash(&v5[..end])[0];
        v5[end..].copy_from_slice(&sum.to_be_bytes());
        std::fs::write(&path, v5).unwrap();
    });
    assert!(signatures_made(&d) > 0.0, "signed again");
    let out = dig(d.dns, &["+dnssec", "example.test", "SOA"]);
    assert!(out.contains("RRSIG"), "{out}");
}

#[test]
fn a_zone_file_with_a_duplicate_record_still_restarts_from_its_stored_signatures() {
    let d = signed_daemon();
    let before = dig(d.dns, &["+short", "+dnssec", "example.test", "SOA"]);
    let d = restart_after_editing(d, |zones| {
        // A duplicate is merged by the build (RFC 2181 §5): the zone is the same one.
        let path = zones.join("example.test.zone");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\nns1.example.test. 3600 IN A 192.0.2.1\n");
        std::fs::write(&path, text).unwrap();
    });
    assert_eq!(signatures_made(&d), 0.0);
    assert_eq!(
        dig(d.dns, &["+short", "+dnssec", "example.test", "SOA"]),
        before
    );
}

#[test]
fn a_zone_file_changed_by_hand_while_stopped_is_signed_again_at_start() {
    if !tool("dnssec-verify") {
        return;
    }
    let d = signed_daemon();
    let d = restart_after_editing(d, |zones| {
        let path = zones.join("example.test.zone");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("192.0.2.1\n", "192.0.2.111\n");
        std::fs::write(&path, text).unwrap();
    });
    assert!(signatures_made(&d) > 0.0, "the changed records are signed");
    assert_eq!(
        dig(d.dns, &["+short", "ns1.example.test", "A"]).trim(),
        "192.0.2.111"
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("z");
    std::fs::write(&file, axfr(&d)).unwrap();
    let out = Command::new("dnssec-verify")
        .args(["-z", "-o", "example.test"])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Zone fully signed"),
        "{text}"
    );
}

#[test]
fn a_damaged_journal_found_when_first_needed_after_a_restart_is_dropped_and_the_zone_served() {
    let d = signed_daemon();
    let before = dig(d.dns, &["+short", "+dnssec", "example.test", "SOA"]);
    let d = restart_after_editing(d, |zones| {
        // Its last step still names the zone's version, so the start does not parse it;
        // the checksum says it is damaged when it is read.
        let path = zones.join("example.test.journal");
        let text = std::fs::read_to_string(&path).unwrap();
        let end = text.rfind("$END ").unwrap();
        let damaged = format!("{}$END 0000000000000000\n", &text[..end]);
        std::fs::write(&path, damaged).unwrap();
    });
    assert_eq!(
        dig(d.dns, &["+short", "+dnssec", "example.test", "SOA"]),
        before
    );
    assert_eq!(
        served_journal_len(&d),
        0,
        "dropped: IXFR falls back to AXFR"
    );
    assert_eq!(signatures_made(&d), 0.0);
}

#[test]
fn a_restart_with_another_denial_configured_serves_the_rechained_zone_from_the_first_answer() {
    let d = signed_daemon_with(Denial::Nsec);
    let mut config = d.daemon().shared().config.clone();
    config.dns.listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
    config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.dnssec.denial = Denial::Nsec3;
    let mut d = d;
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);
    // One thread: the pass that runs after the first answer has not run when `start`
    // returns, so what is served now is what the first answer sees.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let daemon = runtime
        .block_on(mailzone::server::Daemon::start(config))
        .unwrap();
    assert_eq!(
        daemon.shared().metrics.dnssec_start_pass.get(),
        0.0,
        "the pass after the first answer already ran: this test sees nothing"
    );
    let origin = hickory_proto::rr::Name::from_ascii("example.test.").unwrap();
    let zone = daemon.shared().zones.load().get(&origin).unwrap();
    assert!(zone.is_signed());
    assert!(zone.has_nsec3(), "re-chained before the first answer");
    runtime.block_on(daemon.shutdown());
    drop(dir);
}

#[test]
fn a_zone_signed_by_its_own_setting_whose_signatures_were_removed_while_stopped_is_signed_at_start()
{
    // DNSSEC is off in the configuration: only the zone's state file says to sign it.
    let d = TestDaemon::start_tuned(&[("example.test.zone", &zone_text())], |_| {});
    sign_through_the_zones_api(&d);
    let d = restart_after_editing(d, |zones| {
        std::fs::remove_file(zones.join("example.test.signed")).unwrap();
    });
    assert!(
        dig(d.dns, &["+dnssec", "example.test", "SOA"]).contains("RRSIG"),
        "signed before the first answer"
    );
    assert!(d.zones_dir().join("example.test.signed").exists());
}
