//! Loading the zones folder: broken files, reloads through the API, serving during reloads.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

fn apex_a(d: &TestDaemon, zone: &str) -> Option<String> {
    let m = udp(d.dns, zone, RecordType::A);
    m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.to_string()),
        _ => None,
    })
}

fn reload(d: &TestDaemon) -> serde_json::Value {
    let (status, body) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    json(&body)
}

#[test]
fn a_broken_zone_file_is_reported_with_file_and_line_and_others_are_served() {
    let broken = "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 300.1.1.1\n";
    let d = TestDaemon::start(&[
        ("good.test.zone", &small_zone("good.test", 1, "192.0.2.1")),
        ("broken.test.zone", broken),
    ]);
    assert_eq!(apex_a(&d, "good.test.").as_deref(), Some("192.0.2.1"));
    let m = udp(d.dns, "broken.test.", RecordType::A);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::Refused,
        "a zone that never loaded is not served"
    );

    let (status, body) = http(d.http, "GET", "/v1/status", None, None);
    assert_eq!(status, 200);
    let v = json(&body);
    let zones = v["zones"].as_array().unwrap();
    let broken = zones.iter().find(|z| z["name"] == "broken.test.").unwrap();
    let error = broken["last_error"].as_str().unwrap();
    assert!(
        error.contains("broken.test.zone:4:"),
        "file:line expected: {error}"
    );
    assert!(error.contains("IPv4"), "{error}");
    assert_eq!(broken["serving"], false);
    assert_eq!(v["zones_failing"], 1);
    assert_eq!(v["zones_loaded"], 1);
}

#[test]
fn reload_picks_up_changed_added_and_removed_files() {
    let d = TestDaemon::start(&[
        ("one.test.zone", &small_zone("one.test", 1, "192.0.2.1")),
        ("two.test.zone", &small_zone("two.test", 1, "192.0.2.2")),
    ]);
    let dir = d.zones_dir();
    std::fs::write(
        dir.join("one.test.zone"),
        small_zone("one.test", 2, "192.0.2.11"),
    )
    .unwrap();
    std::fs::remove_file(dir.join("two.test.zone")).unwrap();
    std::fs::write(
        dir.join("three.test.zone"),
        small_zone("three.test", 1, "192.0.2.3"),
    )
    .unwrap();

    let summary = reload(&d);
    assert_eq!(summary["zones_loaded"], 2);
    assert_eq!(apex_a(&d, "one.test.").as_deref(), Some("192.0.2.11"));
    assert_eq!(
        udp(d.dns, "two.test.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::Refused
    );
    assert_eq!(apex_a(&d, "three.test.").as_deref(), Some("192.0.2.3"));
}

#[test]
fn a_zone_whose_new_file_is_broken_keeps_serving_its_last_good_version() {
    let d = TestDaemon::start(&[("one.test.zone", &small_zone("one.test", 1, "192.0.2.1"))]);
    std::fs::write(
        d.zones_dir().join("one.test.zone"),
        "$TTL 300\n@ SOA ns1 hostmaster 2 (\n",
    )
    .unwrap();
    let summary = reload(&d);
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].as_str().unwrap().contains("one.test.zone:2:"),
        "{errors:?}"
    );
    assert_eq!(apex_a(&d, "one.test.").as_deref(), Some("192.0.2.1"));

    let (_, body) = http(d.http, "GET", "/v1/status", None, None);
    let v = json(&body);
    let z = &v["zones"][0];
    assert_eq!(z["serving"], true);
    assert_eq!(z["serial"], 1);
    assert!(
        z["last_error"]
            .as_str()
            .unwrap()
            .contains("is never closed"),
        "{z}"
    );
}

#[test]
fn temp_files_and_dot_files_are_never_loaded_as_zones() {
    let d = TestDaemon::start(&[
        ("one.test.zone", &small_zone("one.test", 1, "192.0.2.1")),
        (
            ".one.test.zone.tmp-1-1",
            &small_zone("one.test", 9, "192.0.2.9"),
        ),
        (
            ".hidden.test.zone",
            &small_zone("hidden.test", 1, "192.0.2.9"),
        ),
        ("notes.txt", "not a zone"),
    ]);
    assert_eq!(apex_a(&d, "one.test.").as_deref(), Some("192.0.2.1"));
    assert_eq!(
        udp(d.dns, "hidden.test.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::Refused
    );
    assert!(
        !d.zones_dir().join(".one.test.zone.tmp-1-1").exists(),
        "stale temp files are removed at start"
    );
}

#[test]
fn reload_drops_no_query() {
    let d = TestDaemon::start(&[("one.test.zone", &small_zone("one.test", 1, "192.0.2.1"))]);
    let stop = Arc::new(AtomicBool::new(false));
    let server = d.dns;
    let asker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut answered = 0u32;
            let mut seen = std::collections::HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                let m = udp(server, "one.test.", RecordType::A);
                assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                let RData::A(a) = &m.answers[0].data else {
                    panic!("no A")
                };
                seen.insert(a.to_string());
                answered += 1;
            }
            (answered, seen)
        })
    };
    for i in 0..20u32 {
        let ip = if i % 2 == 1 { "192.0.2.2" } else { "192.0.2.1" };
        std::fs::write(
            d.zones_dir().join("one.test.zone"),
            small_zone("one.test", 2 + i, ip),
        )
        .unwrap();
        reload(&d);
    }
    stop.store(true, Ordering::Relaxed);
    // `udp` panics on a timeout: reaching here means every query was answered.
    let (answered, seen) = asker
        .join()
        .expect("a query was lost or wrong during reloads");
    assert!(answered > 20, "only {answered} queries");
    assert!(
        seen.contains("192.0.2.2"),
        "the new version was served: {seen:?}"
    );
}

#[test]
fn include_directive_is_refused() {
    let text = format!(
        "{}$INCLUDE /etc/passwd\n",
        small_zone("inc.test", 1, "192.0.2.1")
    );
    let d = TestDaemon::start(&[("inc.test.zone", &text)]);
    let (_, body) = http(d.http, "GET", "/v1/status", None, None);
    let v = json(&body);
    assert!(
        v["zones"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("inc.test.zone:7: $INCLUDE"),
        "{v}"
    );
}

/// The status entry of the zone `name`.
fn zone_status(d: &TestDaemon, name: &str) -> serde_json::Value {
    let (status, body) = http(d.http, "GET", "/v1/status", None, None);
    assert_eq!(status, 200);
    let v = json(&body);
    v["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no status for {name}: {v}"))
}

/// A zone `big.test` with `extra` appended at line 5; the daemon serving it and `good.test`.
fn start_with_big(extra: &str) -> TestDaemon {
    let text = format!("{}{extra}", small_zone("big.test", 1, "192.0.2.1"));
    TestDaemon::start(&[
        ("good.test.zone", &small_zone("good.test", 1, "192.0.2.2")),
        ("big.test.zone", &text),
    ])
}

fn assert_refused_at_line_7(d: &TestDaemon, what: &str) {
    let error = zone_status(d, "big.test.")["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("big.test.zone:7:"),
        "file:line expected: {error}"
    );
    assert!(error.contains(what), "{error}");
    assert!(error.len() < 400, "a short message: {error}");
    assert_eq!(apex_a(d, "good.test.").as_deref(), Some("192.0.2.2"));
    let m = udp(d.dns, "big.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

fn txt_line(owner: &str, bytes: usize) -> String {
    let strings: Vec<String> = (0..bytes.div_ceil(255))
        .map(|i| format!("\"{}\"", "k".repeat(255.min(bytes - i * 255))))
        .collect();
    format!("{owner} TXT {}\n", strings.join(" "))
}

#[test]
fn a_zone_file_with_a_txt_record_over_65535_bytes_is_refused_at_its_line() {
    let d = start_with_big(&txt_line("huge", 70_000));
    assert_refused_at_line_7(&d, "TXT at huge.big.test.");
}

#[test]
fn a_zone_file_with_a_1_mib_txt_record_is_refused_at_its_line() {
    let d = start_with_big(&txt_line("huge", 1 << 20));
    assert_refused_at_line_7(&d, "65535");
}

#[test]
fn a_zone_file_with_an_rrset_too_large_for_any_answer_is_refused() {
    let lines: String = (0..10_000)
        .map(|i| format!("many A 10.0.{}.{}\n", i / 256, i % 256))
        .collect();
    let d = start_with_big(&lines);
    let error = zone_status(&d, "big.test.")["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("A at many.big.test."), "{error}");
    assert!(error.contains("65535"), "{error}");
    assert_eq!(apex_a(&d, "good.test.").as_deref(), Some("192.0.2.2"));
}

#[test]
fn a_zone_file_with_an_unsplit_256_byte_string_is_refused_at_its_line() {
    let d = start_with_big(&format!("long TXT \"{}\"\n", "k".repeat(256)));
    assert_refused_at_line_7(&d, "255");
}

#[test]
fn a_nul_filled_zone_file_gives_a_short_error_and_a_small_status() {
    let d = TestDaemon::start(&[("good.test.zone", &small_zone("good.test", 1, "192.0.2.2"))]);
    std::fs::write(d.zones_dir().join("garbage.test.zone"), vec![0u8; 4 << 20]).unwrap();
    let report = reload(&d);
    let text = report.to_string();
    assert!(
        text.len() < 2000,
        "the reload report quotes the file: {} bytes",
        text.len()
    );
    let error = zone_status(&d, "garbage.test.")["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("garbage.test.zone:1:"), "{error}");
    assert!(error.len() < 400, "{} bytes: {error:.200}", error.len());
    assert!(
        error.contains("\\000"),
        "non-printable bytes are escaped: {error}"
    );
    let (status, body) = http(d.http, "GET", "/v1/status", None, None);
    assert_eq!(status, 200);
    assert!(body.len() < 16_384, "/v1/status is {} bytes", body.len());
    assert_eq!(apex_a(&d, "good.test.").as_deref(), Some("192.0.2.2"));
}

#[test]
fn a_zone_file_over_the_size_bound_is_refused_without_being_read() {
    let d = TestDaemon::start(&[("good.test.zone", &small_zone("good.test", 1, "192.0.2.2"))]);
    // A sparse 64 GiB file: reading it would take minutes and the memory of the machine.
    let huge = std::fs::File::create(d.zones_dir().join("huge.test.zone")).unwrap();
    huge.set_len(64 << 30).unwrap();
    let started = std::time::Instant::now();
    reload(&d);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let error = zone_status(&d, "huge.test.")["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("huge.test.zone:"), "{error}");
    assert!(
        error.contains("over max_zone_file_bytes (67108864)"),
        "{error}"
    );
    assert_eq!(apex_a(&d, "good.test.").as_deref(), Some("192.0.2.2"));
}

#[test]
fn the_zone_file_bound_is_configurable() {
    let text = small_zone("good.test", 1, "192.0.2.2");
    let d = TestDaemon::start_tuned(&[("good.test.zone", &text)], |c| {
        c.max_zone_file_bytes = 1024
    });
    assert_eq!(apex_a(&d, "good.test.").as_deref(), Some("192.0.2.2"));
    let padded = format!("{text}{}", "; padding\n".repeat(200));
    std::fs::write(d.zones_dir().join("good.test.zone"), padded).unwrap();
    reload(&d);
    let status = zone_status(&d, "good.test.");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("over max_zone_file_bytes (1024)"),
        "{status}"
    );
    // The last good version keeps being served.
    assert_eq!(apex_a(&d, "good.test.").as_deref(), Some("192.0.2.2"));
}

#[test]
fn many_zone_files_are_loaded_on_every_core_with_each_broken_one_reported_in_order() {
    // Enough files for several loading threads; every 50th one broken on its line 4.
    let broken = "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 300.1.1.1\n";
    let files: Vec<(String, String)> = (0..400)
        .map(|i| {
            let name = format!("z{i:03}.test");
            let text = if i % 50 == 7 {
                broken.to_string()
            } else {
                small_zone(&name, 1, &format!("192.0.2.{}", i % 250 + 1))
            };
            (format!("{name}.zone"), text)
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    let d = TestDaemon::start(&refs);
    for i in [0, 1, 123, 398, 399] {
        let zone = format!("z{i:03}.test.");
        let want = format!("192.0.2.{}", i % 250 + 1);
        assert_eq!(apex_a(&d, &zone).as_deref(), Some(want.as_str()), "{zone}");
    }
    let (_, body) = http(d.http, "GET", "/v1/status", None, None);
    let zones = json(&body)["zones"].as_array().unwrap().clone();
    assert_eq!(zones.len(), 400);
    let names: Vec<&str> = zones.iter().map(|z| z["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        names, sorted,
        "statuses in name order, whatever thread loaded them"
    );
    let failing: Vec<&str> = zones
        .iter()
        .filter(|z| !z["last_error"].is_null())
        .map(|z| z["name"].as_str().unwrap())
        .collect();
    assert_eq!(failing.len(), 8, "{failing:?}");
    for z in zones.iter().filter(|z| !z["last_error"].is_null()) {
        assert!(
            z["last_error"].as_str().unwrap().contains(".zone:4:"),
            "{z}"
        );
    }
}
