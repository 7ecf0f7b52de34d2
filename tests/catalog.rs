//! The catalog zone (`transfer.catalog`, RFC 9432 version 2): mailzone keeps one zone listing
//! every hosted zone, changed in the same commit as the zone it lists, served like any zone,
//! rebuilt at start when missing or stale, and closed to edits through the API.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};
use mailzone::zone::Zone;
use mailzone::zone::catalog::{hashed_id, members};
use serde_json::{Value, json};

const CATALOG: &str = "catalog.invalid.";

fn with_catalog(zones: &[(&str, &str)]) -> TestDaemon {
    TestDaemon::start_tuned(zones, |c| c.transfer.catalog = Some(CATALOG.into()))
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// The members the catalog file lists: member → id.
fn file_members(zones_dir: &std::path::Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(zones_dir.join("catalog.invalid.zone"))
        .expect("the catalog zone file exists");
    let zone = Zone::from_master_text(&name(CATALOG), &text).expect("the catalog file loads");
    members(&zone)
        .into_iter()
        .map(|(m, id)| (m.to_ascii(), id))
        .collect()
}

/// The member the catalog serves under `id`, asked over UDP.
fn served_member(d: &TestDaemon, id: &str) -> Option<String> {
    let m = udp(d.dns, &format!("{id}.zones.{CATALOG}"), RecordType::PTR);
    m.answers.iter().find_map(|r| match &r.data {
        RData::PTR(p) => Some(p.0.to_ascii()),
        _ => None,
    })
}

fn catalog_serial(d: &TestDaemon) -> u32 {
    let m = udp(d.dns, CATALOG, RecordType::SOA);
    match m.answers.first().map(|r| &r.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no catalog SOA: {other:?}"),
    }
}

fn create(d: &TestDaemon, zone: &str) -> (u16, Value) {
    let (status, text) = api(
        d.http,
        "POST",
        "/v1/zones",
        &json!({"name": zone, "nameservers": ["ns1.provider.example."]}),
    );
    (status, json(&text))
}

fn delete(d: &TestDaemon, zone: &str) -> (u16, String) {
    http(
        d.http,
        "DELETE",
        &format!("/v1/zones/{zone}"),
        Some(TOKEN),
        None,
    )
}

fn reload(d: &TestDaemon) {
    let (status, body) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
}

/// The catalog serial only moves on when something changed, and a change may land in the
/// same second as the one before it: wait for the clock to move so "greater" is testable.
fn next_second() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = now();
    while now() == start {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_catalog_lists_every_hosted_zone_at_start_with_version_2_and_ns_invalid() {
    let d = with_catalog(&[
        ("example.test.zone", EXAMPLE_ZONE),
        ("two.test.zone", &small_zone("two.test", 1, "192.0.2.2")),
    ]);
    let listed = file_members(&d.zones_dir());
    assert_eq!(
        listed.keys().cloned().collect::<Vec<_>>(),
        ["example.test.", "two.test."]
    );
    for (member, id) in &listed {
        assert_eq!(*id, hashed_id(&name(member)));
        assert_eq!(served_member(&d, id).as_deref(), Some(member.as_str()));
    }
    let version = dig(d.dns, &["+short", &format!("version.{CATALOG}"), "TXT"]);
    assert_eq!(version.trim(), "\"2\"");
    let ns = dig(d.dns, &["+short", CATALOG, "NS"]);
    assert_eq!(ns.trim(), "invalid.");
}

#[test]
fn named_checkzone_accepts_the_catalog_zone_file() {
    let d = with_catalog(&[("example.test.zone", EXAMPLE_ZONE)]);
    let (status, v) = create(&d, "new.test");
    assert_eq!(status, 201, "{v}");
    let file = d.zones_dir().join("catalog.invalid.zone");
    let out = std::process::Command::new("named-checkzone")
        .args(["-i", "local", CATALOG])
        .arg(&file)
        .output()
        .expect("named-checkzone is not installed: run the README's test command");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("OK"),
        "{text}\n{}",
        std::fs::read_to_string(&file).unwrap()
    );
}

#[test]
fn a_zone_created_through_the_api_is_in_the_catalog_when_the_201_comes() {
    let d = with_catalog(&[("example.test.zone", EXAMPLE_ZONE)]);
    let before = catalog_serial(&d);
    next_second();
    let (status, v) = create(&d, "new.test");
    assert_eq!(status, 201, "{v}");
    let id = hashed_id(&name("new.test."));
    // Served over UDP (our client and dig) and on disk, with a newer serial.
    assert_eq!(served_member(&d, &id).as_deref(), Some("new.test."));
    let short = dig(d.dns, &["+short", &format!("{id}.zones.{CATALOG}"), "PTR"]);
    assert_eq!(short.trim(), "new.test.");
    assert_eq!(
        file_members(&d.zones_dir()).get("new.test."),
        Some(&id),
        "the catalog file lists the new zone"
    );
    let after = catalog_serial(&d);
    assert!(
        mailzone::zone::serial::serial_gt(after, before),
        "{after} > {before}"
    );
}

#[test]
fn a_zone_deleted_through_the_api_leaves_the_catalog_when_the_204_comes() {
    let d = with_catalog(&[
        ("example.test.zone", EXAMPLE_ZONE),
        ("gone.test.zone", &small_zone("gone.test", 1, "192.0.2.9")),
    ]);
    let id = hashed_id(&name("gone.test."));
    assert_eq!(served_member(&d, &id).as_deref(), Some("gone.test."));
    let before = catalog_serial(&d);
    next_second();
    let (status, body) = delete(&d, "gone.test");
    assert_eq!(status, 204, "{body}");
    let m = udp(d.dns, &format!("{id}.zones.{CATALOG}"), RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(!file_members(&d.zones_dir()).contains_key("gone.test."));
    assert!(file_members(&d.zones_dir()).contains_key("example.test."));
    let after = catalog_serial(&d);
    assert!(
        mailzone::zone::serial::serial_gt(after, before),
        "{after} > {before}"
    );
}

#[test]
fn a_reload_lists_a_zone_file_added_by_hand_and_drops_one_removed_by_hand() {
    let d = with_catalog(&[
        ("example.test.zone", EXAMPLE_ZONE),
        ("old.test.zone", &small_zone("old.test", 1, "192.0.2.1")),
    ]);
    let before = catalog_serial(&d);
    next_second();
    std::fs::write(
        d.zones_dir().join("hand.test.zone"),
        small_zone("hand.test", 1, "192.0.2.7"),
    )
    .unwrap();
    std::fs::remove_file(d.zones_dir().join("old.test.zone")).unwrap();
    reload(&d);
    assert_eq!(
        served_member(&d, &hashed_id(&name("hand.test."))).as_deref(),
        Some("hand.test.")
    );
    assert_eq!(served_member(&d, &hashed_id(&name("old.test."))), None);
    assert_eq!(
        file_members(&d.zones_dir())
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        ["example.test.", "hand.test."]
    );
    assert!(mailzone::zone::serial::serial_gt(
        catalog_serial(&d),
        before
    ));
}

#[test]
fn a_reload_that_changes_no_zone_leaves_the_catalog_alone() {
    let d = with_catalog(&[("example.test.zone", EXAMPLE_ZONE)]);
    let before = std::fs::read_to_string(d.zones_dir().join("catalog.invalid.zone")).unwrap();
    let serial = catalog_serial(&d);
    next_second();
    reload(&d);
    assert_eq!(catalog_serial(&d), serial);
    let after = std::fs::read_to_string(d.zones_dir().join("catalog.invalid.zone")).unwrap();
    assert_eq!(before, after);
}

#[test]
fn ids_survive_a_restart_and_a_lost_catalog_file_is_rebuilt_with_the_same_ids() {
    let d = with_catalog(&[("example.test.zone", EXAMPLE_ZONE)]);
    for z in ["a.test", "b.test", "c.test"] {
        assert_eq!(create(&d, z).0, 201);
    }
    assert_eq!(delete(&d, "b.test").0, 204);
    let listed = file_members(&d.zones_dir());
    let serial = catalog_serial(&d);

    let d = d.restart();
    assert_eq!(file_members(&d.zones_dir()), listed);
    assert_eq!(
        catalog_serial(&d),
        serial,
        "an up-to-date catalog is not rewritten"
    );

    std::fs::remove_file(d.zones_dir().join("catalog.invalid.zone")).unwrap();
    let d = d.restart();
    assert_eq!(file_members(&d.zones_dir()), listed);
    for (member, id) in &listed {
        assert_eq!(served_member(&d, id).as_deref(), Some(member.as_str()));
    }
}

/// Starts the real binary on `dir` with the catalog configured, returns its log lines up
/// to "serving", and stops it.
fn start_up_log(dir: &std::path::Path) -> Vec<String> {
    use std::io::BufRead;
    let config = format!(
        "zones_dir: {}\nkeys_dir: {}\ndns:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"127.0.0.1:0\"\nlog:\n  format: json\ntransfer:\n  catalog: {CATALOG}\n",
        dir.join("zones").display(),
        dir.join("keys").display()
    );
    std::fs::write(dir.join("c.yaml"), config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailzone"))
        .arg("serve")
        .arg("--config")
        .arg(dir.join("c.yaml"))
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
    {
        let done = line.contains("\"serving\"");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.last().is_some_and(|l| l.contains("serving")),
        "the daemon did not start: {lines:?}"
    );
    lines
}

#[test]
fn a_zone_file_the_catalog_misses_after_a_crash_is_listed_at_the_next_start() {
    let d = with_catalog(&[("example.test.zone", EXAMPLE_ZONE)]);
    let zones = d.zones_dir();
    // What a crash between the zone file's rename and the catalog's leaves behind.
    std::fs::write(
        zones.join("late.test.zone"),
        small_zone("late.test", 1, "192.0.2.5"),
    )
    .unwrap();
    let d = d.restart();
    assert!(file_members(&zones).contains_key("late.test."));
    assert_eq!(
        served_member(&d, &hashed_id(&name("late.test."))).as_deref(),
        Some("late.test.")
    );
}

#[test]
fn a_missing_catalog_is_written_once_and_logged_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/example.test.zone"), EXAMPLE_ZONE).unwrap();
    let catalog_lines = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("catalog zone brought up to date"))
            .count()
    };
    let first = start_up_log(dir.path());
    assert_eq!(catalog_lines(&first), 1, "{first:#?}");
    assert!(dir.path().join("zones/catalog.invalid.zone").exists());
    let written = std::fs::read_to_string(dir.path().join("zones/catalog.invalid.zone")).unwrap();
    let second = start_up_log(dir.path());
    assert_eq!(
        catalog_lines(&second),
        0,
        "an up-to-date catalog is not written again: {second:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("zones/catalog.invalid.zone")).unwrap(),
        written
    );
}

#[test]
fn the_catalog_cannot_be_edited_or_deleted_through_the_api() {
    let d = with_catalog(&[("example.test.zone", EXAMPLE_ZONE)]);
    let before = std::fs::read_to_string(d.zones_dir().join("catalog.invalid.zone")).unwrap();
    let body = json!({"operations": [
        {"op": "add", "name": "x", "type": "TXT", "records": ["nope"]}
    ]});
    let (status, text) = api(d.http, "PATCH", "/v1/zones/catalog.invalid/records", &body);
    assert_eq!(status, 409, "{text}");
    assert!(
        json(&text)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("catalog zone")
    );
    let (status, text) = delete(&d, "catalog.invalid");
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("catalog zone"), "{text}");
    let after = std::fs::read_to_string(d.zones_dir().join("catalog.invalid.zone")).unwrap();
    assert_eq!(before, after);
    assert_eq!(
        udp(d.dns, CATALOG, RecordType::SOA).metadata.response_code,
        ResponseCode::NoError
    );
}

#[test]
fn no_zone_can_be_created_as_or_below_the_catalog() {
    let d = with_catalog(&[("example.test.zone", EXAMPLE_ZONE)]);
    for zone in ["catalog.invalid", "x.zones.catalog.invalid"] {
        let (status, v) = create(&d, zone);
        assert_eq!(status, 409, "{zone}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("catalog"),
            "{v}"
        );
    }
    assert!(!d.zones_dir().join("x.zones.catalog.invalid.zone").exists());
}

#[test]
fn a_domain_in_the_catalog_zone_cannot_be_associated() {
    let d = with_catalog(&[("example.test.zone", EXAMPLE_ZONE)]);
    let (status, text) = api(
        d.http,
        "POST",
        "/v1/domains",
        &json!({"domain": "x.catalog.invalid", "platform": "pro1", "mode": "authoritative",
                "records": {"dkim": false}}),
    );
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("catalog zone"), "{text}");
}

#[test]
fn a_zone_below_the_catalog_name_stops_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(
        zones.join("x.catalog.invalid.zone"),
        small_zone("x.catalog.invalid", 1, "192.0.2.1"),
    )
    .unwrap();
    let mut config = test_config(dir.path());
    config.transfer.catalog = Some(CATALOG.into());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = match runtime.block_on(mailzone::server::Daemon::start(config)) {
        Ok(_) => panic!("started with a zone below the catalog"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("x.catalog.invalid."), "{error}");
    assert!(error.contains("below the catalog zone"), "{error}");
}

#[test]
fn a_zone_of_the_catalog_name_that_is_not_a_catalog_stops_the_start_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let text = small_zone("catalog.invalid", 1, "192.0.2.1");
    std::fs::write(zones.join("catalog.invalid.zone"), &text).unwrap();
    let mut config = test_config(dir.path());
    config.transfer.catalog = Some(CATALOG.into());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = match runtime.block_on(mailzone::server::Daemon::start(config)) {
        Ok(_) => panic!("started on a zone that is not a catalog"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("not a catalog"), "{error}");
    assert_eq!(
        std::fs::read_to_string(zones.join("catalog.invalid.zone")).unwrap(),
        text
    );
}

#[test]
fn without_transfer_catalog_there_is_no_catalog_zone() {
    let d = TestDaemon::example();
    assert_eq!(create(&d, "new.test").0, 201);
    assert!(!d.zones_dir().join("catalog.invalid.zone").exists());
    assert_eq!(
        udp(d.dns, CATALOG, RecordType::SOA).metadata.response_code,
        ResponseCode::Refused
    );
}

/// Like `http`, but a dead daemon is a `None`, not a panic.
fn try_http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    text.split(' ').nth(1)?.parse().ok()
}

/// Creates and deletes zones `z<n>.burst.test` until stopped or the daemon dies; returns
/// the zones whose last acknowledged operation was a create (they must be listed) and
/// those whose last acknowledged operation was a delete (they must not).
fn burst(
    http_addr: std::net::SocketAddr,
    token: String,
    first: u32,
    stop: Arc<AtomicBool>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut created, mut deleted) = (BTreeSet::new(), BTreeSet::new());
    let mut n = first;
    while !stop.load(Ordering::Relaxed) {
        let zone = format!("z{n}.burst.test.");
        let body = json!({"name": zone, "nameservers": ["ns1.provider.example."]}).to_string();
        match try_http(http_addr, "POST", "/v1/zones", &token, &body) {
            Some(201) => {
                created.insert(zone.clone());
            }
            Some(_) => {}
            None => break,
        }
        // Every other zone is deleted again at once.
        if n.is_multiple_of(2) {
            match try_http(
                http_addr,
                "DELETE",
                &format!("/v1/zones/{zone}"),
                &token,
                "",
            ) {
                Some(204) => {
                    created.remove(&zone);
                    deleted.insert(zone);
                }
                Some(_) => {}
                None => {
                    // Killed during the delete: either outcome is right.
                    created.remove(&zone);
                    break;
                }
            }
        }
        n += 1;
    }
    (created, deleted)
}

/// The zones whose files are in `zones` (the catalog left out).
fn zone_files(zones: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(zones)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let stem = n.strip_suffix(".zone")?.to_string();
            (!n.starts_with('.') && stem != "catalog.invalid").then(|| format!("{stem}."))
        })
        .collect()
}

#[test]
fn after_a_sigkill_during_creates_and_deletes_the_catalog_lists_exactly_the_zone_files() {
    let extra = format!("transfer:\n  catalog: {CATALOG}\n");
    let mut d = ChildDaemon::start_configured(
        {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("zones")).unwrap();
            std::fs::write(dir.path().join("zones/example.test.zone"), EXAMPLE_ZONE).unwrap();
            dir
        },
        &extra,
    );
    let mut must_list: BTreeSet<String> = BTreeSet::from(["example.test.".to_string()]);
    let mut must_not: BTreeSet<String> = BTreeSet::new();
    let mut first = 0u32;
    for round in 0..4u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let client = {
            let (addr, token, stop) = (d.http, d.token(), stop.clone());
            std::thread::spawn(move || burst(addr, token, first, stop))
        };
        std::thread::sleep(Duration::from_millis(200 + 90 * round));
        let dir = d.kill_hard();
        stop.store(true, Ordering::Relaxed);
        let (created, deleted) = client.join().unwrap();
        assert!(
            !created.is_empty() || !deleted.is_empty(),
            "round {round}: nothing acknowledged before the kill"
        );
        must_list.extend(created.iter().cloned());
        must_not.extend(deleted.iter().cloned());
        first += 10_000;

        d = ChildDaemon::start_configured(dir, &extra);
        let zones = d.dir.path().join("zones");
        let listed: BTreeSet<String> = file_members(&zones).into_keys().collect();
        let files = zone_files(&zones);
        assert_eq!(
            listed, files,
            "round {round}: catalog and zone files disagree"
        );
        for z in &must_list {
            assert!(
                listed.contains(z),
                "round {round}: acknowledged {z} not listed"
            );
        }
        for z in &must_not {
            assert!(
                !listed.contains(z),
                "round {round}: deleted {z} still listed"
            );
        }
        // And the catalog served is the one on disk.
        let (_, body) = http(d.http, "GET", "/v1/status", None, None);
        let status = json(&body);
        let catalog = status["zones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["name"] == CATALOG)
            .cloned()
            .unwrap();
        assert_eq!(catalog["serving"], true, "{catalog}");
        assert_eq!(
            catalog["records"].as_u64().unwrap() as usize,
            3 + listed.len(),
            "{catalog}"
        );
    }
}

/// A loopback port on `ip` free for both UDP and TCP at the time of asking (for a child
/// that binds it later).
fn free_port(ip: &str) -> std::net::SocketAddr {
    std::net::SocketAddr::new(ip.parse().unwrap(), common::secondary::free_port(ip))
}

/// A real Knot DNS server (`knotd`) on loopback with its own folder, killed when dropped.
struct Knotd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
}

impl Knotd {
    /// Starts knotd on `addr` with `body` (remotes, acls, templates, zones) after the
    /// server, database, log and control sections; `@ROOT@` in it is knotd's own folder
    /// (every path must be in there: a relative one is taken from the working folder).
    fn start(addr: std::net::SocketAddr, body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Self {
            child: std::process::Command::new("true").spawn().unwrap(),
            dir,
            addr,
        };
        k.write_config(body);
        let _ = k.child.wait();
        // Knot 3.2 dies interpreting a catalog when its database folder is missing.
        std::fs::create_dir_all(k.dir.path().join("db")).unwrap();
        std::fs::create_dir_all(k.dir.path().join("zones")).unwrap();
        k.child = std::process::Command::new("knotd")
            .arg("-c")
            .arg(k.dir.path().join("knot.conf"))
            .stdout(std::fs::File::create(k.dir.path().join("knotd.out")).unwrap())
            .stderr(std::fs::File::create(k.dir.path().join("knotd.log")).unwrap())
            .spawn()
            .expect("knotd is not installed: run the README's test command");
        // Up once its control socket answers.
        k.wait("knotd did not start", || k.knotc(&["status"]).is_ok());
        k
    }

    fn write_config(&self, body: &str) {
        let root = self.dir.path().display();
        std::fs::write(
            self.dir.path().join("knot.conf"),
            format!(
                "server:\n    rundir: \"{root}\"\n    listen: {}@{}\n\
                 database:\n    storage: \"{root}/db\"\n\
                 control:\n    listen: \"{root}/knot.sock\"\n\
                 log:\n  - target: stderr\n    any: info\n{}",
                self.addr.ip(),
                self.addr.port(),
                body.replace("@ROOT@", &root.to_string())
            ),
        )
        .unwrap();
    }

    /// Runs knotc against this server; the error is its output.
    fn knotc(&self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new("knotc")
            .arg("-s")
            .arg(self.dir.path().join("knot.sock"))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Replaces the zones part of the config and has knotd re-read it.
    fn reconfigure(&self, body: &str) {
        self.write_config(body);
        if let Err(e) = self.knotc(&["reload"]) {
            panic!("knotc reload failed: {e}\n{}", self.log());
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    /// Whether knotd answers authoritatively for the zone `zone`.
    fn serves(&self, zone: &str) -> bool {
        let mut q = query_message(zone, RecordType::SOA, &Ask::default());
        q.metadata.recursion_desired = false;
        let Ok(bytes) = q.to_vec() else { return false };
        udp_raw(self.addr, &bytes)
            .and_then(|r| hickory_proto::op::Message::from_vec(&r).ok())
            .is_some_and(|m| {
                m.metadata.response_code == ResponseCode::NoError
                    && m.metadata.authoritative
                    && !m.answers.is_empty()
            })
    }

    /// Polls `ok` for up to 20 s (a loaded machine), then fails with knotd's log.
    fn wait(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Knotd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Knot consumer of the catalog from `primary`: it serves whatever the catalog lists,
/// transferring each member from the same primary, and never hears of a zone otherwise.
fn catalog_consumer(primary: std::net::SocketAddr) -> Knotd {
    let body = format!(
        "remote:\n  - id: primary\n    address: {}@{}\n\
         template:\n  - id: default\n    storage: \"@ROOT@/zones\"\n\
         \x20 - id: member\n    master: primary\n    storage: \"@ROOT@/zones\"\n\
         zone:\n  - domain: {CATALOG}\n    master: primary\n    catalog-role: interpret\n    catalog-template: member\n",
        primary.ip(),
        primary.port()
    );
    Knotd::start(free_port("127.0.0.3"), &body)
}

/// A Knot primary serving, from mailzone's own files, the catalog and every zone it lists.
fn knot_primary_config(zones_dir: &std::path::Path) -> String {
    let mut body = String::from(
        "acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    action: transfer\n\
         template:\n  - id: default\n    storage: \"@ROOT@/zones\"\n    acl: xfr\n    zonefile-sync: -1\n    journal-content: none\nzone:\n",
    );
    for zone in zone_files(zones_dir)
        .into_iter()
        .chain([CATALOG.to_string()])
    {
        let file = zones_dir.join(format!("{}zone", zone));
        body.push_str(&format!(
            "  - domain: {zone}\n    file: \"{}\"\n",
            file.display()
        ));
    }
    body
}

#[test]
fn knot_interprets_the_catalog_file_mailzone_writes_adding_and_dropping_members() {
    let d = with_catalog(&[("example.test.zone", EXAMPLE_ZONE)]);
    assert_eq!(create(&d, "first.test").0, 201);
    assert_eq!(create(&d, "gone.test").0, 201);
    // Knot, not mailzone, serves mailzone's files here: what is tested is that a consumer
    // understands the catalog mailzone writes (mailzone's own transfers have their tests).
    let primary = Knotd::start(free_port("127.0.0.2"), &knot_primary_config(&d.zones_dir()));
    primary.wait("the Knot primary did not load the catalog", || {
        primary.serves(CATALOG)
    });
    let consumer = catalog_consumer(primary.addr);
    for zone in ["example.test.", "first.test.", "gone.test."] {
        consumer.wait(&format!("the consumer never served {zone}"), || {
            consumer.serves(zone)
        });
    }

    assert_eq!(create(&d, "later.test").0, 201);
    assert_eq!(delete(&d, "gone.test").0, 204);
    primary.reconfigure(&knot_primary_config(&d.zones_dir()));
    primary.wait("the Knot primary did not load later.test.", || {
        primary.serves("later.test.")
    });
    // No NOTIFY between the two Knots: the consumer is told to look at the catalog.
    consumer.wait("the consumer did not refresh the catalog", || {
        consumer.knotc(&["zone-refresh", CATALOG]).is_ok()
    });
    consumer.wait("the consumer never served later.test.", || {
        consumer.serves("later.test.")
    });
    consumer.wait("the consumer still serves gone.test.", || {
        !consumer.serves("gone.test.")
    });
    assert!(consumer.serves("first.test."), "{}", consumer.log());
}

#[test]
fn knot_follows_the_catalog_served_by_mailzone_with_no_change_to_its_config() {
    let consumer_addr = free_port("127.0.0.3");
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.transfer.catalog = Some(CATALOG.into());
        c.transfer.secondaries = vec![mailzone::config::SecondaryConfig {
            address: consumer_addr.to_string(),
            key: None,
            zones: mailzone::config::ZoneSelection::All,
        }];
    });
    let body = format!(
        "remote:\n  - id: primary\n    address: {}@{}\n    via: {}\n\
         acl:\n  - id: notify\n    address: 127.0.0.1\n    action: notify\n\
         template:\n  - id: default\n    storage: \"@ROOT@/zones\"\n\
         \x20 - id: member\n    master: primary\n    acl: notify\n    storage: \"@ROOT@/zones\"\n\
         zone:\n  - domain: {CATALOG}\n    master: primary\n    acl: notify\n    catalog-role: interpret\n    catalog-template: member\n",
        d.dns.ip(),
        d.dns.port(),
        consumer_addr.ip()
    );
    let consumer = Knotd::start(consumer_addr, &body);
    consumer.wait("the consumer never served example.test.", || {
        consumer.serves("example.test.")
    });
    // From here on only the API: NOTIFY of the catalog brings the consumer along.
    assert_eq!(create(&d, "new.test").0, 201);
    consumer.wait("the consumer never served new.test.", || {
        consumer.serves("new.test.")
    });
    assert_eq!(delete(&d, "new.test").0, 204);
    consumer.wait("the consumer still serves new.test.", || {
        !consumer.serves("new.test.")
    });
    assert!(consumer.serves("example.test."), "{}", consumer.log());
}
