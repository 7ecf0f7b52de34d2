//! A change that spans several files (zone, association, key files) is all or nothing: when
//! one file cannot be written, the answer is an error, nothing is served differently, and a
//! restart brings back exactly the state before the request. A key file left by an
//! interrupted creation never blocks the domain, and creating keys never holds up other
//! changes.
//!
//! How a write is made to fail: the tests run as root, for whom `chmod 0555` does not stop a
//! write. Instead the path the daemon must write is taken by something of the wrong kind,
//! which fails for every user on every file system: the associations folder is replaced by a
//! plain file (no file can be created inside it), or a zone file by a folder (no file can be
//! renamed over it). The test puts the original back before restarting.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::{RData, RecordType};
use mailzone::dkim::key;
use mailzone::provision::platform::{DkimPolicy, Platform};
use serde_json::{Value, json};

const SHOP: &str = "$ORIGIN shop.test.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n\
    @ NS ns1.provider.example.\n@ A 192.0.2.80\n";

fn dkim_platform(id: &str, rsa_bits: usize) -> Platform {
    let mut p = Platform::example();
    p.id = id.into();
    p.dkim = Some(DkimPolicy {
        rsa_bits,
        ..DkimPolicy::default()
    });
    p
}

fn daemon() -> TestDaemon {
    TestDaemon::start_tuned(&[("shop.test.zone", SHOP)], |c| {
        c.platforms.push(dkim_platform("signing", 2048))
    })
}

fn call(d: &TestDaemon, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let body = body.map(|b| b.to_string());
    http(d.http, method, path, Some(TOKEN), body.as_deref())
}

fn associate(d: &TestDaemon, platform: &str, dkim: bool) -> (u16, String) {
    call(
        d,
        "POST",
        "/v1/domains",
        Some(
            json!({"domain": "shop.test", "platform": platform, "mode": "authoritative", "records": {"dkim": dkim}}),
        ),
    )
}

fn serial(d: &TestDaemon) -> u32 {
    match &udp(d.dns, "shop.test", RecordType::SOA).answers[0].data {
        RData::SOA(s) => s.serial,
        _ => 0,
    }
}

fn mx_count(d: &TestDaemon) -> usize {
    udp(d.dns, "shop.test", RecordType::MX).answers.len()
}

fn association_status(d: &TestDaemon) -> u16 {
    call(d, "GET", "/v1/domains/shop.test", None).0
}

/// What a client can see of the domain: MX records served, serial, association listed.
fn visible(d: &TestDaemon) -> (usize, u32, u16) {
    (mx_count(d), serial(d), association_status(d))
}

/// Takes `path` away (renamed aside) and puts something of the other kind in its place;
/// returns where the original went, for [`restore`].
fn block(path: &Path) -> PathBuf {
    let aside = path.with_extension("aside");
    std::fs::rename(path, &aside).unwrap();
    if aside.is_dir() {
        std::fs::write(path, "not a folder").unwrap();
    } else {
        std::fs::create_dir(path).unwrap();
    }
    aside
}

fn restore(path: &Path, aside: &Path) {
    if path.is_dir() {
        std::fs::remove_dir_all(path).unwrap();
    } else {
        std::fs::remove_file(path).unwrap();
    }
    std::fs::rename(aside, path).unwrap();
}

#[test]
fn a_delete_whose_association_file_cannot_go_changes_nothing_even_after_a_restart() {
    let d = daemon();
    assert_eq!(associate(&d, "pro1", false).0, 201);
    let before = visible(&d);
    assert!(before.0 > 0 && before.2 == 200, "{before:?}");

    let folder = d.zones_dir().join("associations");
    let aside = block(&folder);
    let (status, text) = call(&d, "DELETE", "/v1/domains/shop.test", None);
    assert!(status >= 400, "{status} {text}");
    assert!(
        text.contains("associations"),
        "the error names the file: {text}"
    );
    assert_eq!(visible(&d), before, "nothing changed after an error");

    restore(&folder, &aside);
    let d = d.restart();
    assert_eq!(visible(&d), before, "a restart brings back the same state");
    // And the DELETE can be done now.
    assert_eq!(call(&d, "DELETE", "/v1/domains/shop.test", None).0, 200);
    assert_eq!(mx_count(&d), 0);
}

#[test]
fn a_delete_whose_zone_cannot_be_written_changes_nothing_even_after_a_restart() {
    let d = daemon();
    assert_eq!(associate(&d, "pro1", false).0, 201);
    let before = visible(&d);

    let zone = d.zones_dir().join("shop.test.zone");
    let aside = block(&zone);
    let (status, text) = call(&d, "DELETE", "/v1/domains/shop.test", None);
    assert!(status >= 400, "{status} {text}");
    assert_eq!(visible(&d), before);

    restore(&zone, &aside);
    let d = d.restart();
    assert_eq!(visible(&d), before);
}

#[test]
fn an_association_whose_zone_cannot_be_written_is_not_kept_even_after_a_restart() {
    let d = daemon();
    let before = visible(&d);
    assert_eq!(before.2, 404);

    let zone = d.zones_dir().join("shop.test.zone");
    let aside = block(&zone);
    let (status, text) = associate(&d, "pro1", false);
    assert!(status >= 400, "{status} {text}");
    assert_eq!(
        visible(&d),
        before,
        "no association listed, no record served"
    );

    restore(&zone, &aside);
    let d = d.restart();
    assert_eq!(
        visible(&d),
        before,
        "a restart does not complete a refused change"
    );
}

#[test]
fn a_change_of_an_association_that_cannot_be_saved_changes_nothing() {
    let d = daemon();
    assert_eq!(associate(&d, "pro1", false).0, 201);
    let before = visible(&d);
    let srv = |d: &TestDaemon| {
        udp(d.dns, "_imaps._tcp.shop.test", RecordType::SRV)
            .answers
            .len()
    };
    assert_eq!(srv(&d), 1);

    let folder = d.zones_dir().join("associations");
    let aside = block(&folder);
    let (status, text) = call(
        &d,
        "PATCH",
        "/v1/domains/shop.test",
        Some(json!({"records": {"srv": false}})),
    );
    assert!(status >= 400, "{status} {text}");
    assert_eq!(visible(&d), before);
    assert_eq!(srv(&d), 1, "the SRV records are still served");

    restore(&folder, &aside);
    let d = d.restart();
    assert_eq!(visible(&d), before);
    assert_eq!(srv(&d), 1);
}

#[test]
fn a_change_of_an_association_whose_zone_cannot_be_written_is_not_kept() {
    let d = daemon();
    assert_eq!(associate(&d, "pro1", false).0, 201);
    let before = visible(&d);
    let families = |d: &TestDaemon| {
        json(&call(d, "GET", "/v1/domains/shop.test", None).1)["associations"][0]["records"].clone()
    };
    let families_before = families(&d);

    let zone = d.zones_dir().join("shop.test.zone");
    let aside = block(&zone);
    let (status, text) = call(
        &d,
        "PATCH",
        "/v1/domains/shop.test",
        Some(json!({"records": {"srv": false}})),
    );
    assert!(status >= 400, "{status} {text}");
    assert_eq!(visible(&d), before);
    assert_eq!(
        families(&d),
        families_before,
        "the association is unchanged"
    );

    restore(&zone, &aside);
    let d = d.restart();
    assert_eq!(visible(&d), before);
    assert_eq!(families(&d), families_before);
}

#[test]
fn an_association_with_dkim_that_cannot_be_saved_leaves_no_key_file() {
    let d = daemon();
    let folder = d.zones_dir().join("associations");
    // The folder does not exist before the first association: make it, then block it.
    std::fs::create_dir(&folder).unwrap();
    let aside = block(&folder);
    let (status, text) = associate(&d, "signing", true);
    assert!(status >= 400, "{status} {text}");
    let keys = d.dir.path().join("keys/dkim/shop.test");
    let files: Vec<_> = std::fs::read_dir(&keys)
        .map(|r| r.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "{files:?}");
    restore(&folder, &aside);
    assert_eq!(associate(&d, "signing", true).0, 201);
}

fn status(d: &TestDaemon) -> Value {
    json(&http(d.http, "GET", "/v1/status", None, None).1)
}

fn active_selector(d: &TestDaemon) -> (String, String) {
    let v = json(&call(d, "GET", "/v1/domains/shop.test", None).1);
    let dkim = v["associations"][0]["dkim"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no dkim in {v}"));
    let g = dkim
        .iter()
        .find(|g| g["state"] == "active")
        .unwrap_or_else(|| panic!("no active generation in {v}"));
    (
        g["keys"][0]["selector"].as_str().unwrap().to_string(),
        g["keys"][0]["public"].as_str().unwrap().to_string(),
    )
}

fn signs(d: &TestDaemon) -> u16 {
    call(
        d,
        "POST",
        "/v1/dkim/sign",
        Some(json!({"domain": "shop.test", "message": "From: a@shop.test\r\nSubject: x\r\n\r\nhello\r\n"})),
    )
    .0
}

#[test]
fn a_key_file_left_by_an_interrupted_creation_does_not_block_the_retry() {
    let d = daemon();
    // What a crash between the key file and the association file left: the key file of
    // generation 1 where the creation puts it, and no association.
    let policy = DkimPolicy::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let names = mailzone::provision::dkim::selector_names(&policy, "signing", 1, now);
    let keys = d.dir.path().join("keys");
    let left = key::key_path(&keys, "shop.test.", &names[0].1);
    std::fs::create_dir_all(left.parent().unwrap()).unwrap();
    std::fs::write(&left, "half-done").unwrap();
    set_mode(&keys, 0o700);
    set_mode(&left, 0o600);

    let d = d.restart();
    let shown = left.display().to_string();
    assert!(
        status(&d)["dkim_errors"][&shown].is_string(),
        "the leftover is reported: {}",
        status(&d)
    );
    let (code, text) = associate(&d, "signing", true);
    assert_eq!(code, 201, "{text}");
    let (selector, public) = active_selector(&d);
    assert_eq!(selector, names[0].1);
    let pem = std::fs::read_to_string(&left).unwrap();
    let der = key::from_pem(&pem).unwrap();
    assert_eq!(
        key::public_of(&der).unwrap(),
        public,
        "the new key took its place"
    );
    assert_eq!(signs(&d), 200);
    assert!(
        status(&d)["dkim_errors"].as_object().unwrap().is_empty(),
        "{}",
        status(&d)
    );
}

#[test]
fn a_key_file_a_crash_left_as_a_temp_file_is_put_in_place_at_start() {
    let d = daemon();
    assert_eq!(associate(&d, "signing", true).0, 201);
    let (selector, _) = active_selector(&d);
    let file = key::key_path(&d.dir.path().join("keys"), "shop.test.", &selector);
    // The association file was renamed into place, the key file not yet: it is still the
    // temp file the change prepared.
    let tmp = file.with_file_name(format!(".{selector}.pem.tmp-1-1"));
    std::fs::rename(&file, &tmp).unwrap();

    let d = d.restart();
    assert!(file.exists(), "the prepared key file is put in place");
    assert!(!tmp.exists());
    assert_eq!(signs(&d), 200);
    assert!(
        status(&d)["dkim_errors"].as_object().unwrap().is_empty(),
        "{}",
        status(&d)
    );
}

#[test]
fn a_key_file_no_generation_can_claim_is_reported() {
    let d = daemon();
    assert_eq!(associate(&d, "signing", true).0, 201);
    let stray = key::key_path(&d.dir.path().join("keys"), "shop.test.", "old-200001-1");
    std::fs::write(&stray, "stray").unwrap();
    set_mode(&stray, 0o600);

    let d = d.restart();
    let errors = status(&d)["dkim_errors"].clone();
    let shown = stray.display().to_string();
    assert!(
        errors[&shown]
            .as_str()
            .is_some_and(|e| e.contains("no association names")),
        "{errors}"
    );
    assert_eq!(signs(&d), 200, "the domain itself still signs");
    assert!(
        stray.exists(),
        "a private key is not deleted behind the operator's back"
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn changes_do_not_wait_for_dkim_keys_being_generated() {
    // RSA 4096: one key takes far longer than any PATCH, so waiting for one shows.
    let d = TestDaemon::start_tuned(
        &[
            ("shop.test.zone", SHOP),
            ("other.test.zone", &small_zone("other.test", 1, "192.0.2.1")),
        ],
        |c| c.platforms.push(dkim_platform("big", 4096)),
    );
    let http_addr = d.http;
    let creating = std::thread::spawn(move || {
        let body = json!({"domain": "a.shop.test", "platform": "big", "mode": "authoritative", "records": {"dkim": true}}).to_string();
        let started = Instant::now();
        let (status, text) = http(http_addr, "POST", "/v1/domains", Some(TOKEN), Some(&body));
        assert_eq!(status, 201, "{text}");
        started.elapsed()
    });
    let mut slowest = Duration::ZERO;
    let mut n = 0;
    while !creating.is_finished() {
        let body = json!({"operations": [{"op": "add", "name": format!("p{n}"), "type": "TXT", "records": ["x"]}]});
        let started = Instant::now();
        let (status, text) = call(&d, "PATCH", "/v1/zones/other.test/records", Some(body));
        assert_eq!(status, 200, "{text}");
        slowest = slowest.max(started.elapsed());
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let creation = creating.join().unwrap();
    // The creation makes two 4096-bit keys (seconds): a change waiting for them would take
    // about as long, and only one or two would get through meanwhile. The bound leaves room
    // for a slow fsync of the disk.
    let figures = format!("slowest change {slowest:?}, creation {creation:?}, {n} changes");
    eprintln!("{figures}");
    assert!(n >= 10, "{figures}");
    assert!(slowest * 2 < creation, "{figures}");
}
