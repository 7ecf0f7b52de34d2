//! The IXFR journal (issue 11 point 3): every change through the real daemon is journalled
//! beside the zone file in the same atomic commit; read back (a fresh load, a restart, a
//! SIGKILL in the middle of a burst), the journal gives for every earlier serial a condensed
//! difference that, applied to that version, yields exactly the zone served.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::{Name, Record, RecordType};
use mailzone::zone::edit::{ChangeKind, RrsetChange};
use mailzone::zone::journal::{IxfrPlan, Journal, JournalLimits};
use mailzone::zone::master::parse_rdata_text;
use mailzone::zone::serial::serial_gt;
use mailzone::zone::writer::{record_line, to_master_text};
use mailzone::zone::{Zone, ZoneSet};
use proptest::prelude::*;
use serde_json::{Value, json};

const ZONE: &str = "j.test";

fn origin() -> Name {
    Name::from_ascii("j.test.").unwrap()
}

fn base_zone(serial: u32) -> String {
    small_zone(ZONE, serial, "192.0.2.10")
}

fn lines_of(zone: &Zone) -> BTreeSet<String> {
    zone.view().records().map(record_line).collect()
}

fn lines_of_text(text: &str) -> BTreeSet<String> {
    lines_of(&Zone::from_master_text(&origin(), text).unwrap())
}

/// Applies an IXFR answer sequence (RFC 1995 §4, one condensed step) to the record lines of
/// the client's version, checking its shape on the way.
fn apply(client: &BTreeSet<String>, answer: &[Record]) -> BTreeSet<String> {
    let mut have = client.clone();
    let n = answer.len();
    assert!(n >= 4, "too short for an IXFR answer: {answer:?}");
    let soa = |r: &Record| r.record_type() == RecordType::SOA;
    assert!(soa(&answer[0]) && soa(&answer[1]) && soa(&answer[n - 1]));
    assert_eq!(record_line(&answer[0]), record_line(&answer[n - 1]));
    let split = 2 + answer[2..].iter().position(soa).unwrap();
    assert_eq!(record_line(&answer[split]), record_line(&answer[0]));
    assert_eq!(
        split + 1 + answer[split + 1..].iter().filter(|r| !soa(r)).count() + 1,
        n
    );
    for r in &answer[1..split] {
        assert!(
            have.remove(&record_line(r)),
            "removes what the client lacks: {r}"
        );
    }
    for r in &answer[split..n - 1] {
        assert!(have.insert(record_line(r)), "adds what the client has: {r}");
    }
    have
}

/// For every version (serial, record lines), `zone.ixfr(serial)` rebuilds `zone` exactly.
fn assert_ixfr_rebuilds(zone: &Zone, versions: &[(u32, BTreeSet<String>)]) {
    let now = lines_of(zone);
    for (serial, lines) in versions {
        match zone.ixfr(*serial) {
            IxfrPlan::UpToDate => {
                assert_eq!(*serial, zone.serial());
                assert_eq!(*lines, now, "the current version differs from the zone");
            }
            IxfrPlan::Incremental(answer) => {
                assert_eq!(apply(lines, &answer), now, "IXFR from {serial}");
            }
            IxfrPlan::Full => panic!(
                "no incremental answer from {serial} (zone at {}, journal of {} steps from {:?})",
                zone.serial(),
                zone.journal().len(),
                zone.journal().oldest_serial()
            ),
        }
    }
}

fn fresh_load(zones_dir: &Path) -> mailzone::zone::set::LoadReport {
    ZoneSet::load_dir(zones_dir, None, 1 << 26).unwrap()
}

fn loaded_zone(zones_dir: &Path) -> Arc<Zone> {
    let report = fresh_load(zones_dir);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report.set.get(&origin()).expect("the zone loads")
}

/// The `i`-th change, as the API takes it.
fn change_json(i: usize) -> Value {
    json!({ "operations": change_ops(i) })
}

fn change_ops(i: usize) -> Value {
    match i % 4 {
        0 => {
            json!([{"op": "replace", "name": format!("t{}", i % 3), "type": "TXT", "ttl": 300, "records": [format!("change {i}")]}])
        }
        1 => {
            json!([{"op": "add", "name": format!("h{i}"), "type": "A", "ttl": 300, "records": [format!("192.0.2.{}", i % 250)]}])
        }
        2 => json!([
            {"op": "delete", "name": format!("h{}", i.saturating_sub(1)), "type": "A"},
            {"op": "replace", "name": "@", "type": "A", "ttl": 60 + i as u32, "records": ["192.0.2.10"]}
        ]),
        _ => {
            json!([{"op": "replace", "name": "mx", "type": "TXT", "ttl": 300, "records": [format!("v {i}"), "kept"]}])
        }
    }
}

fn patch(d: &TestDaemon, i: usize) -> Value {
    let (status, body) = api(
        d.http,
        "PATCH",
        &format!("/v1/zones/{ZONE}/records"),
        &change_json(i),
    );
    assert_eq!(status, 200, "{body}");
    json(&body)
}

fn export(http_addr: SocketAddr, token: &str) -> String {
    let (status, body) = http(
        http_addr,
        "GET",
        &format!("/v1/zones/{ZONE}/export"),
        Some(token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn served(d: &TestDaemon) -> Arc<Zone> {
    d.daemon().shared().zones.load().get(&origin()).unwrap()
}

#[test]
fn every_earlier_serial_gets_an_ixfr_that_rebuilds_the_zone_after_a_fresh_load_and_a_restart() {
    let d = TestDaemon::start(&[("j.test.zone", &base_zone(1))]);
    let mut versions = vec![(1, lines_of_text(&export(d.http, TOKEN)))];
    for i in 0..12 {
        let serial = patch(&d, i)["serial"].as_u64().unwrap() as u32;
        versions.push((serial, lines_of_text(&export(d.http, TOKEN))));
    }
    let journal = d.zones_dir().join("j.test.journal");
    assert!(journal.is_file(), "the journal is beside the zone file");
    assert_eq!(served(&d).journal().len(), 12);

    let loaded = loaded_zone(&d.zones_dir());
    assert_eq!(lines_of(&loaded), versions.last().unwrap().1);
    assert_eq!(
        loaded.journal().len(),
        12,
        "the journal file has every change"
    );
    assert_ixfr_rebuilds(&loaded, &versions);

    let d = d.restart();
    let zone = served(&d);
    assert_eq!(
        lines_of(&zone),
        versions.last().unwrap().1,
        "served after the restart"
    );
    assert_ixfr_rebuilds(&zone, &versions);
    // The restart rewrote nothing: the journal still agrees with the zone file.
    assert!(fresh_load(&d.zones_dir()).journal_files.is_empty());
}

#[test]
fn the_journal_file_is_not_taken_for_a_zone_and_reload_keeps_it() {
    let d = TestDaemon::start(&[("j.test.zone", &base_zone(1))]);
    patch(&d, 0);
    let before = std::fs::read_to_string(d.zones_dir().join("j.test.journal")).unwrap();
    let (status, body) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["zones_loaded"], 1, "{v}");
    assert_eq!(v["errors"], json!([]), "{v}");
    let after = std::fs::read_to_string(d.zones_dir().join("j.test.journal")).unwrap();
    assert_eq!(before, after);
    assert_eq!(served(&d).journal().len(), 1);
}

#[test]
fn a_change_that_changes_nothing_adds_no_step() {
    let d = TestDaemon::start(&[("j.test.zone", &base_zone(1))]);
    patch(&d, 0);
    let zone = served(&d);
    // Reloading the unchanged file is no change: same serial, same records.
    let (status, _) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!(served(&d).serial(), zone.serial());
    assert_eq!(served(&d).journal().len(), 1);
}

#[test]
fn a_reload_of_a_hand_edited_file_with_a_higher_serial_appends_the_difference() {
    let d = TestDaemon::start_tuned(&[("j.test.zone", &base_zone(10))], |c| {
        c.zone_defaults.serial = mailzone::zone::serial::SerialScheme::Increment;
    });
    let v10 = lines_of_text(&export(d.http, TOKEN));
    patch(&d, 1);
    let v11 = lines_of_text(&export(d.http, TOKEN));
    assert_eq!(served(&d).serial(), 11);
    let file = d.zones_dir().join("j.test.zone");
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace(" 11 3600 ", " 12 3600 ")
        + "byhand.j.test. 300 IN TXT \"edited\"\n";
    std::fs::write(&file, &edited).unwrap();
    let (status, body) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    let zone = served(&d);
    assert_eq!(zone.serial(), 12);
    assert_eq!(zone.journal().len(), 2);
    assert_ixfr_rebuilds(&zone, &[(10, v10.clone()), (11, v11.clone())]);
    // And it is on disk, in agreement with the zone file.
    let loaded = loaded_zone(&d.zones_dir());
    assert_eq!(loaded.journal().len(), 2);
    assert_ixfr_rebuilds(&loaded, &[(10, v10), (11, v11)]);
}

fn child_config() -> &'static str {
    "zone_defaults:\n  serial: increment\n"
}

fn child_with_zone() -> ChildDaemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/j.test.zone"), base_zone(1)).unwrap();
    ChildDaemon::start_configured(dir, child_config())
}

fn child_patch(d: &ChildDaemon, i: usize) -> u32 {
    let token = d.token();
    let (status, body) = http(
        d.http,
        "PATCH",
        &format!("/v1/zones/{ZONE}/records"),
        Some(&token),
        Some(&change_json(i).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    json(&body)["serial"].as_u64().unwrap() as u32
}

#[test]
fn a_hand_edit_that_keeps_the_serial_resets_the_journal_and_says_so() {
    let mut d = child_with_zone();
    child_patch(&d, 0);
    let zones = d.dir.path().join("zones");
    assert!(zones.join("j.test.journal").is_file());
    let file = zones.join("j.test.zone");
    let edited =
        std::fs::read_to_string(&file).unwrap() + "byhand.j.test. 300 IN TXT \"same serial\"\n";
    std::fs::write(&file, edited).unwrap();
    let (status, body) = http(d.http, "POST", "/v1/reload", Some(&d.token()), None);
    assert_eq!(status, 200, "{body}");
    let line = d.wait_for("journal reset");
    assert!(line.contains("serial stayed 2"), "{line}");
    assert!(
        !zones.join("j.test.journal").exists(),
        "the journal file goes"
    );
    let zone = loaded_zone(&zones);
    assert!(zone.journal().is_empty());
    assert!(
        matches!(zone.ixfr(1), IxfrPlan::Full),
        "IXFR falls back to a full transfer"
    );
}

#[test]
fn a_damaged_journal_is_reported_and_dropped_at_start_never_a_failed_start() {
    let d = child_with_zone();
    child_patch(&d, 0);
    child_patch(&d, 1);
    let dir = d.kill_hard();
    let journal = dir.path().join("zones/j.test.journal");
    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, text.replace("change 0", "chanGe 0")).unwrap();

    // The report is logged while loading, before the daemon listens: read the start's log.
    let start_log = start_log_of(dir.path());
    let report = start_log
        .iter()
        .find(|l| l.contains("journal dropped"))
        .unwrap_or_else(|| panic!("no report of the damaged journal in {start_log:#?}"));
    assert!(report.contains("checksum"), "{report}");
    assert!(report.contains("j.test."), "{report}");

    let d = ChildDaemon::start_configured(dir, child_config());
    let zones = d.dir.path().join("zones");
    assert!(!zones.join("j.test.journal").exists());
    let zone = loaded_zone(&zones);
    assert!(matches!(zone.ixfr(1), IxfrPlan::Full));
    assert_eq!(zone.serial(), 3, "the zone itself is untouched");
    // The next change starts a new history.
    assert_eq!(child_patch(&d, 2), 4);
    let zone = loaded_zone(&zones);
    assert_eq!(zone.journal().len(), 1);
    assert!(matches!(zone.ixfr(3), IxfrPlan::Incremental(_)));
}

/// Kills the child it guards when dropped (a failed assertion must not leave it running).
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real daemon on the folder `root` (as `ChildDaemon` does), returns its log lines
/// up to the one saying it serves, and stops it.
fn start_log_of(root: &Path) -> Vec<String> {
    use std::io::BufRead;
    let config = format!(
        "zones_dir: {}\nkeys_dir: {}\ndns:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"127.0.0.1:0\"\nlog:\n  format: json\ndiagnosis:\n  resolver: \"127.0.0.1:9\"\n  timeout_ms: 200\n{}",
        root.join("zones").display(),
        root.join("keys").display(),
        child_config()
    );
    let file = root.join("start-log.yaml");
    std::fs::write(&file, config).unwrap();
    let mut child = Guard(
        std::process::Command::new(env!("CARGO_BIN_EXE_mailzone"))
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .env_remove("RUST_LOG")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let serving = line.contains("\"serving\"");
        lines.push(line);
        if serving {
            return lines;
        }
    }
    panic!("the daemon did not start: {lines:#?}")
}

#[test]
fn deleting_a_zone_deletes_its_journal_and_its_status() {
    let d = TestDaemon::start(&[("j.test.zone", &base_zone(1))]);
    patch(&d, 0);
    let journal = d.zones_dir().join("j.test.journal");
    assert!(journal.is_file());
    let (status, body) = http(
        d.http,
        "DELETE",
        &format!("/v1/zones/{ZONE}"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 204, "{body}");
    assert!(!journal.exists(), "the journal goes with the zone");
    assert!(!d.zones_dir().join("j.test.zone").exists());
    let (_, status_body) = http(d.http, "GET", "/v1/status", None, None);
    assert!(!status_body.contains("j.test"), "{status_body}");
    // A zone created again under the same name has no history.
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/zones",
        &json!({"name": ZONE, "nameservers": ["ns1.j.test."]}),
    );
    assert_eq!(status, 201, "{body}");
    assert!(!journal.exists());
    assert!(served(&d).journal().is_empty());
}

#[test]
fn a_journal_whose_zone_file_was_removed_by_hand_goes_at_the_next_reload() {
    let d = TestDaemon::start(&[("j.test.zone", &base_zone(1))]);
    patch(&d, 0);
    std::fs::remove_file(d.zones_dir().join("j.test.zone")).unwrap();
    let (status, _) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert!(!d.zones_dir().join("j.test.journal").exists());
    assert!(d.daemon().shared().zones.load().get(&origin()).is_none());
}

// ---------------------------------------------------------------------------------------
// Crash: SIGKILL in the middle of a burst of changes.

/// One PATCH that never panics: `None` when the daemon is gone.
fn try_patch(http_addr: SocketAddr, token: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&http_addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let req = format!(
        "PATCH /v1/zones/{ZONE}/records HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    mailzone::cli::client::parse_response(&raw).ok()
}

/// The `i`-th change as the zone model applies it (the same operations as `change_json`).
fn change_model(i: usize) -> Vec<RrsetChange> {
    let o = origin();
    let name = |n: &str| {
        if n == "@" {
            o.clone()
        } else {
            Name::from_ascii(n).unwrap().append_domain(&o).unwrap()
        }
    };
    let rdata = |t: RecordType, v: &str| parse_rdata_text(t, v, &o).unwrap();
    let op = |kind, n: &str, rtype, ttl, records: Vec<String>| RrsetChange {
        kind,
        name: name(n),
        rtype,
        ttl,
        records: records.iter().map(|v| rdata(rtype, v)).collect(),
    };
    let txt = |s: String| format!("\"{s}\"");
    match i % 4 {
        0 => vec![op(
            ChangeKind::Replace,
            &format!("t{}", i % 3),
            RecordType::TXT,
            Some(300),
            vec![txt(format!("change {i}"))],
        )],
        1 => vec![op(
            ChangeKind::Add,
            &format!("h{i}"),
            RecordType::A,
            Some(300),
            vec![format!("192.0.2.{}", i % 250)],
        )],
        2 => vec![
            op(
                ChangeKind::Delete,
                &format!("h{}", i.saturating_sub(1)),
                RecordType::A,
                None,
                vec![],
            ),
            op(
                ChangeKind::Replace,
                "@",
                RecordType::A,
                Some(60 + i as u32),
                vec!["192.0.2.10".into()],
            ),
        ],
        _ => vec![op(
            ChangeKind::Replace,
            "mx",
            RecordType::TXT,
            Some(300),
            vec![txt(format!("v {i}")), txt("kept".into())],
        )],
    }
}

/// Runs a burst of changes against `d`, SIGKILLs it after `after` acknowledged changes plus
/// `delay`, and returns the folder and the acknowledged versions (serial, record lines).
fn burst_then_kill(
    d: ChildDaemon,
    after: usize,
    delay: Duration,
) -> (tempfile::TempDir, Vec<(u32, BTreeSet<String>)>) {
    let token = d.token();
    let acked: Arc<Mutex<Vec<(usize, u32)>>> = Arc::default();
    let http_addr = d.http;
    let burst = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            for i in 0.. {
                let body = change_json(i).to_string();
                match try_patch(http_addr, &token, &body) {
                    Some((200, reply)) => {
                        let serial = json(&reply)["serial"].as_u64().unwrap() as u32;
                        acked.lock().unwrap().push((i, serial));
                    }
                    Some((status, reply)) => panic!("change {i}: {status} {reply}"),
                    None => return,
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < after {
        assert!(Instant::now() < deadline, "the burst does not progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(delay);
    let dir = d.kill_hard();
    burst.join().unwrap();
    // The versions the client was told about, rebuilt from the changes it sent.
    let mut model = Zone::from_master_text(&origin(), &base_zone(1)).unwrap();
    let mut versions = vec![(1, lines_of(&model))];
    for &(i, serial) in acked.lock().unwrap().iter() {
        model = model.with_changes(&change_model(i), serial, 3600).unwrap();
        versions.push((serial, lines_of(&model)));
    }
    (dir, versions)
}

#[test]
fn after_a_sigkill_in_a_burst_of_changes_ixfr_from_every_acknowledged_serial_rebuilds_the_zone_served()
 {
    for (round, delay_ms) in [0u64, 3, 11, 29].into_iter().enumerate() {
        let d = child_with_zone();
        let (dir, versions) = burst_then_kill(d, 5 + round * 3, Duration::from_millis(delay_ms));
        let last_acked = versions.last().unwrap().0;
        let zones = dir.path().join("zones");

        // On disk, before anything rewrites it: the journal leads to the zone file's version
        // (at most one step ahead, from a change whose zone file rename did not happen).
        let report = fresh_load(&zones);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let on_disk = report.set.get(&origin()).unwrap();
        let journal_text = std::fs::read_to_string(zones.join("j.test.journal")).unwrap();
        let journal = Journal::parse(&journal_text, &origin()).expect("the journal is whole");
        assert!(
            journal.len() <= on_disk.journal().len() + 1,
            "round {round}: {} steps on disk, {} kept",
            journal.len(),
            on_disk.journal().len()
        );
        assert!(
            !on_disk.journal().is_empty(),
            "round {round}: the journal was dropped"
        );
        let last = on_disk.journal().steps().last().unwrap();
        assert_eq!(last.to_serial(), on_disk.serial());
        assert!(
            on_disk.serial() == last_acked || serial_gt(on_disk.serial(), last_acked),
            "round {round}: serial {} on disk, {last_acked} acknowledged",
            on_disk.serial()
        );
        assert_ixfr_rebuilds(&on_disk, &versions);

        // After a restart of the real daemon, the zone served is that zone.
        let d = ChildDaemon::start_configured(dir, child_config());
        let served_text = export(d.http, &d.token());
        assert_eq!(
            lines_of_text(&served_text),
            lines_of(&on_disk),
            "round {round}"
        );
        let reloaded = loaded_zone(&d.dir.path().join("zones"));
        assert_ixfr_rebuilds(&reloaded, &versions);
        assert_eq!(lines_of(&reloaded), lines_of_text(&served_text));
    }
}

// ---------------------------------------------------------------------------------------
// Property: random sequences of changes.

#[derive(Debug, Clone)]
struct Op {
    kind: ChangeKind,
    name: &'static str,
    rtype: RecordType,
    ttl: Option<u32>,
    values: Vec<u8>,
}

fn op() -> impl Strategy<Value = Op> {
    (
        prop_oneof![
            Just(ChangeKind::Add),
            Just(ChangeKind::Replace),
            Just(ChangeKind::Delete)
        ],
        prop::sample::select(vec!["@", "a", "b", "c.d", "*.w"]),
        prop::sample::select(vec![RecordType::A, RecordType::TXT, RecordType::MX]),
        prop::option::of(prop::sample::select(vec![60u32, 300, 3600])),
        prop::collection::vec(0u8..6, 0..3),
    )
        .prop_map(|(kind, name, rtype, ttl, values)| Op {
            kind,
            name,
            rtype,
            ttl,
            values,
        })
}

fn to_change(op: &Op) -> RrsetChange {
    let o = origin();
    let name = if op.name == "@" {
        o.clone()
    } else {
        Name::from_ascii(op.name)
            .unwrap()
            .append_domain(&o)
            .unwrap()
    };
    let value = |v: u8| match op.rtype {
        RecordType::A => format!("192.0.2.{v}"),
        RecordType::TXT => format!("\"text {v}\""),
        _ => format!("{v} mx{v}.example."),
    };
    let mut values = op.values.clone();
    if values.is_empty() && op.kind != ChangeKind::Delete {
        values.push(0);
    }
    RrsetChange {
        kind: op.kind,
        name,
        rtype: op.rtype,
        ttl: op.ttl,
        records: values
            .iter()
            .map(|&v| parse_rdata_text(op.rtype, &value(v), &o).unwrap())
            .collect(),
    }
}

proptest! {
    #[test]
    fn journals_round_trip_through_their_file_and_condensed_differences_rebuild_the_zone(
        start in any::<u32>(),
        steps in prop::collection::vec((prop::collection::vec(op(), 1..4), 1u32..3_000_000), 1..25),
        max_changes in 1usize..30,
    ) {
        let limits = JournalLimits { max_changes, max_bytes: 1 << 20 };
        let mut zone = Zone::from_master_text(&origin(), &base_zone(start)).unwrap();
        zone.follow(None, &limits, 0);
        let mut versions = vec![(zone.serial(), lines_of(&zone))];
        for (ops, bump) in &steps {
            let changes: Vec<RrsetChange> = ops.iter().map(to_change).collect();
            let serial = zone.serial().wrapping_add(*bump);
            let Ok(mut next) = zone.with_changes(&changes, serial, 300) else { continue };
            let mut targeted = next.clone();
            next.follow(Some(&zone), &limits, 0);
            // The writer's shortcut (only the rrsets the changes name) gives the same step.
            targeted.follow_changes(&zone, &changes, &limits, 0);
            prop_assert_eq!(
                targeted.journal().to_text(zone.origin()),
                next.journal().to_text(zone.origin())
            );
            versions.push((serial, lines_of(&next)));
            zone = next;
        }
        prop_assert!(zone.journal().len() <= max_changes);
        // The file reads back identically, and fits the zone it was written with.
        let kept: usize = zone.journal().len();
        if let Some(text) = zone.journal().to_text(zone.origin()) {
            let read = Journal::parse(&text, zone.origin()).unwrap();
            prop_assert_eq!(read.to_text(zone.origin()).unwrap(), text.clone());
            let mut again = Zone::from_master_text(&origin(), &to_master_text(&zone)).unwrap();
            prop_assert_eq!(again.adopt_journal(read, &limits), Ok(0));
            prop_assert_eq!(again.journal().len(), kept);
            prop_assert_eq!(again.journal().to_text(zone.origin()).unwrap(), text);
        }
        // Every version the journal reaches is rebuilt exactly; older ones get a full transfer.
        let reach = versions.len() - 1 - kept;
        assert_ixfr_rebuilds(&zone, &versions[reach..]);
        for (serial, _) in &versions[..reach] {
            if *serial != zone.serial() {
                prop_assert!(matches!(zone.ixfr(*serial), IxfrPlan::Full));
            }
        }
    }
}

#[test]
fn a_crash_between_the_journal_and_the_zone_file_renames_loses_only_the_unacknowledged_step() {
    let d = child_with_zone();
    child_patch(&d, 0);
    let zones = d.dir.path().join("zones");
    let zone_at_2 = std::fs::read_to_string(zones.join("j.test.zone")).unwrap();
    let v1 = lines_of_text(&base_zone(1));
    let v2 = lines_of_text(&zone_at_2);
    child_patch(&d, 1);
    let dir = d.kill_hard();
    // What a crash after the journal's rename and before the zone file's leaves: the journal
    // of serial 3 beside the zone file of serial 2.
    std::fs::write(dir.path().join("zones/j.test.zone"), &zone_at_2).unwrap();
    let on_disk = Journal::parse(
        &std::fs::read_to_string(dir.path().join("zones/j.test.journal")).unwrap(),
        &origin(),
    )
    .unwrap();
    assert_eq!(on_disk.len(), 2);

    let d = ChildDaemon::start_configured(dir, child_config());
    assert_eq!(
        lines_of_text(&export(d.http, &d.token())),
        v2,
        "serial 2 is served"
    );
    let zones = d.dir.path().join("zones");
    let zone = loaded_zone(&zones);
    assert_eq!(
        zone.journal().len(),
        1,
        "the step to the lost serial 3 is dropped"
    );
    assert!(
        fresh_load(&zones).journal_files.is_empty(),
        "the start rewrote the journal to agree with the zone file"
    );
    assert_ixfr_rebuilds(&zone, &[(1, v1.clone()), (2, v2.clone())]);
    // Serial 3 is given again, to another change: the history stays consistent.
    assert_eq!(child_patch(&d, 3), 3);
    let v3 = lines_of_text(&export(d.http, &d.token()));
    let zone = loaded_zone(&zones);
    assert_eq!(lines_of(&zone), v3);
    assert_ixfr_rebuilds(&zone, &[(1, v1), (2, v2)]);
}

#[test]
fn associating_and_dissociating_a_domain_are_journalled_like_any_change() {
    let d = TestDaemon::start(&[("j.test.zone", &base_zone(1))]);
    let v1 = lines_of_text(&export(d.http, TOKEN));
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/domains",
        &json!({"domain": ZONE, "platform": "pro1", "mode": "authoritative"}),
    );
    assert_eq!(status, 201, "{body}");
    let s2 = served(&d).serial();
    let v2 = lines_of_text(&export(d.http, TOKEN));
    assert_ne!(v1, v2);
    let (status, body) = http(
        d.http,
        "DELETE",
        &format!("/v1/domains/{ZONE}"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let zone = loaded_zone(&d.zones_dir());
    assert_eq!(zone.journal().len(), 2);
    let records = |l: &BTreeSet<String>| -> BTreeSet<String> {
        l.iter()
            .filter(|l| !l.contains(" IN SOA "))
            .cloned()
            .collect()
    };
    assert_eq!(
        records(&lines_of(&zone)),
        records(&v1),
        "the records came back"
    );
    assert_ixfr_rebuilds(&zone, &[(1, v1), (s2, v2)]);
}

#[test]
fn at_load_a_journal_whose_zone_file_is_gone_is_removed_and_a_hidden_one_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.test", "c.test"] {
        std::fs::write(
            dir.path().join(format!("{name}.zone")),
            small_zone(name, 1, "192.0.2.1"),
        )
        .unwrap();
    }
    // Journals of a zone that is there (damaged: dropped for that reason), of one removed
    // by hand, and a hidden one.
    for name in ["a.test.journal", "b.test.journal", ".d.test.journal"] {
        std::fs::write(dir.path().join(name), b"not read").unwrap();
    }
    let report = fresh_load(dir.path());
    let removed: Vec<_> = report
        .journal_files
        .iter()
        .filter(|f| f.content.is_none())
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        removed.contains(&"b.test.journal".to_string()),
        "{removed:?}"
    );
    assert!(
        !removed.contains(&".d.test.journal".to_string()),
        "{removed:?}"
    );
    assert_eq!(report.set.len(), 2);
}
