//! NOTIFY to secondaries (RFC 1996): what a secondary receives after a change, coalescing of
//! bursts, retries and give-ups, TSIG, and the status and metrics that show it. The
//! secondaries here are test-owned UDP sockets on loopback that decode each NOTIFY with
//! hickory and answer (or not) as each test needs.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{DNSClass, Name, RData, RecordType, TSigResponseContext, TSigner};
use serde_json::{Value, json};

use common::{EXAMPLE_ZONE, TOKEN, TestDaemon, api, exchange, http, metric, query_message};

/// The serial of `zones/example.test.zone`.
const START_SERIAL: u32 = 2026112301;
const KEY_NAME: &str = "xfr-ns2";
const SECRET: [u8; 32] = [7u8; 32];

/// How a fake secondary answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// A NOTIFY response (signed when the NOTIFY was).
    Ack,
    /// Nothing at all.
    Silent,
    /// Nothing to the first `n` packets, then `Ack`.
    AckAfter(usize),
    /// A NOTIFY response without TSIG, even to a signed NOTIFY.
    Unsigned,
}

/// One NOTIFY as a secondary received it.
#[derive(Clone)]
struct Received {
    at: Instant,
    message: Message,
    /// `Some(true)`: signed with our key and the MAC verifies; `Some(false)`: signed, bad.
    tsig_ok: Option<bool>,
}

impl Received {
    fn serial(&self) -> u32 {
        match self.message.answers.first().map(|r| &r.data) {
            Some(RData::SOA(soa)) => soa.serial,
            other => panic!("no SOA in the answer section: {other:?}"),
        }
    }
}

/// A secondary's NOTIFY endpoint: a UDP socket on loopback and a thread answering on it.
struct FakeSecondary {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn signer() -> TSigner {
    TSigner::new(
        SECRET.to_vec(),
        TsigAlgorithm::HmacSha256,
        Name::from_ascii(KEY_NAME).unwrap(),
        300,
    )
    .unwrap()
}

impl FakeSecondary {
    fn start(answer: Answer) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let bytes = &buf[..n];
                    let message = Message::from_vec(bytes).unwrap();
                    let verified = message
                        .signature
                        .as_ref()
                        .map(|_| signer().verify_message_byte(bytes, None, true));
                    let tsig_ok = verified.as_ref().map(Result::is_ok);
                    let seen = {
                        let mut log = log.lock().unwrap();
                        log.push(Received {
                            at: Instant::now(),
                            message: message.clone(),
                            tsig_ok,
                        });
                        log.len()
                    };
                    let reply = match answer {
                        Answer::Silent => continue,
                        Answer::AckAfter(k) if seen <= k => continue,
                        _ => {
                            let mut r = Message::response(message.metadata.id, OpCode::Notify);
                            r.metadata.authoritative = true;
                            r.queries = message.queries.clone();
                            if answer != Answer::Unsigned
                                && let Some(Ok((mac, _, _))) = verified
                            {
                                let now = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .unwrap()
                                    .as_secs();
                                let ctx = TSigResponseContext::new(
                                    message.metadata.id,
                                    now,
                                    signer(),
                                    mac,
                                    None,
                                );
                                let tsig = ctx.sign(&r.to_vec().unwrap()).unwrap();
                                r.set_signature(tsig);
                            }
                            r.to_vec().unwrap()
                        }
                    };
                    let _ = socket.send_to(&reply, from);
                }
            })
        };
        Self {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until a received NOTIFY satisfies `f`.
    fn wait_for(&self, what: &str, f: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if f(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeSecondary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A daemon serving example.test. whose `transfer:` section is `transfer` (YAML), with the
/// TSIG key `xfr-ns2` set to [`SECRET`] beforehand.
fn daemon(transfer: &str) -> TestDaemon {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(zones.join("example.test.zone"), EXAMPLE_ZONE).unwrap();
    let tsig = dir.path().join("keys/tsig");
    std::fs::create_dir_all(&tsig).unwrap();
    for d in [dir.path().join("keys"), tsig.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    use base64::Engine;
    let key_file = tsig.join(format!("{KEY_NAME}.key"));
    std::fs::write(
        &key_file,
        format!(
            "{}\n",
            base64::engine::general_purpose::STANDARD.encode(SECRET)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = common::test_config(dir.path());
    config.transfer = mailzone::config::Config::from_yaml(
        &format!("transfer:\n  keys: [{{name: {KEY_NAME}}}]\n{transfer}"),
        "test",
    )
    .unwrap()
    .transfer;
    TestDaemon::run(dir, config)
}

fn secondaries(entries: &[String]) -> String {
    format!("  secondaries:\n{}", entries.join(""))
}

fn entry(addr: SocketAddr, extra: &str) -> String {
    format!("    - {{address: \"{addr}\"{extra}}}\n")
}

/// Sets the apex TXT of example.test. (one change, one new serial); returns that serial.
fn change(d: &TestDaemon, text: &str) -> u32 {
    let body = json!({"operations": [
        {"op": "replace", "name": "note", "type": "TXT", "ttl": 60, "records": [format!("\"{text}\"")]}
    ]});
    let (status, reply) = api(d.http, "PATCH", "/v1/zones/example.test/records", &body);
    assert_eq!(status, 200, "{reply}");
    zone(d)["serial"].as_u64().unwrap() as u32
}

fn zone(d: &TestDaemon) -> Value {
    let (status, body) = http(d.http, "GET", "/v1/zones/example.test", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    common::json(&body)
}

fn metrics(d: &TestDaemon) -> String {
    http(d.http, "GET", "/metrics", None, None).1
}

/// Waits (up to 20 s) until `f` holds of the zone's JSON.
fn wait_zone(d: &TestDaemon, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = zone(d);
        if f(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_change_sends_a_notify_with_the_new_soa_that_the_status_shows_acknowledged() {
    let ns2 = FakeSecondary::start(Answer::Ack);
    let d = daemon(&secondaries(&[entry(ns2.addr, "")]));
    ns2.wait_for("the NOTIFY at start", |r| !r.is_empty());
    // Past the least interval after the start NOTIFY: the change's NOTIFY goes at once.
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    let serial = change(&d, "v1");
    let got = ns2.wait_for("the NOTIFY of the change", |r| {
        r.iter().any(|m| m.serial() == serial)
    });
    let n = got.iter().find(|m| m.serial() == serial).unwrap();
    // From the API request (its write and fsync included) to the secondary.
    let latency = n.at.saturating_duration_since(asked);
    eprintln!("API request to NOTIFY received: {latency:?}");
    assert!(
        latency < Duration::from_secs(1),
        "the secondary hears of the change within a second: {latency:?}"
    );
    let m = &n.message;
    assert_eq!(m.metadata.op_code, OpCode::Notify);
    assert_eq!(m.metadata.message_type, MessageType::Query);
    assert!(m.metadata.authoritative, "AA=1 as in RFC 1996 §3.7");
    assert_eq!(m.queries.len(), 1);
    assert_eq!(
        m.queries[0].name(),
        &Name::from_ascii("example.test.").unwrap()
    );
    assert_eq!(m.queries[0].query_type(), RecordType::SOA);
    assert_eq!(m.queries[0].query_class(), DNSClass::IN);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(n.tsig_ok, None, "no key, no TSIG");
    let v = wait_zone(&d, "the acknowledgement", |v| {
        v["secondaries"][0]["last_notify_acked"]["serial"] == json!(serial)
    });
    let s = &v["secondaries"][0];
    assert_eq!(s["address"], json!(ns2.addr.to_string()));
    assert_eq!(s["last_notify_sent"]["serial"], json!(serial));
    assert!(s["last_notify_acked"]["at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(s["key"], Value::Null);
}

#[test]
fn associating_a_domain_notifies_its_zone_with_the_new_serial() {
    let ns2 = FakeSecondary::start(Answer::Ack);
    let d = daemon(&secondaries(&[entry(ns2.addr, "")]));
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/zones",
        &json!({"name": "shop.test", "nameservers": ["ns1.provider.example."]}),
    );
    assert_eq!(status, 201, "{body}");
    let created = common::json(&body)["serial"].as_u64().unwrap() as u32;
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/domains",
        &json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative"}),
    );
    assert_eq!(status, 201, "{body}");
    let (_, shown) = http(d.http, "GET", "/v1/zones/shop.test", Some(TOKEN), None);
    let serial = common::json(&shown)["serial"].as_u64().unwrap() as u32;
    assert_ne!(serial, created, "the association changed the zone");
    let shop = Name::from_ascii("shop.test.").unwrap();
    ns2.wait_for("the NOTIFY of the association", |r| {
        r.iter()
            .any(|m| m.message.queries[0].name() == &shop && m.serial() == serial)
    });
}

#[test]
fn the_start_notifies_every_secondary_of_every_zone() {
    let ns2 = FakeSecondary::start(Answer::Ack);
    let _d = daemon(&secondaries(&[entry(ns2.addr, "")]));
    ns2.wait_for("the NOTIFY sent at start", |r| {
        r.iter().any(|m| m.serial() == START_SERIAL)
    });
}

#[test]
fn only_secondaries_serving_the_zone_are_notified() {
    let all = FakeSecondary::start(Answer::Ack);
    let other = FakeSecondary::start(Answer::Ack);
    let d = daemon(&secondaries(&[
        entry(all.addr, ", zones: all"),
        entry(other.addr, ", zones: [\"other.test.\"]"),
    ]));
    let serial = change(&d, "v1");
    all.wait_for("the NOTIFY", |r| r.iter().any(|m| m.serial() == serial));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        other.received().is_empty(),
        "a secondary of other zones hears nothing of example.test."
    );
    assert_eq!(zone(&d)["secondaries"].as_array().unwrap().len(), 1);
}

#[test]
fn a_burst_of_100_changes_gives_a_handful_of_notifies_and_the_last_carries_the_final_serial() {
    let ns2 = FakeSecondary::start(Answer::Ack);
    let d = daemon(&secondaries(&[entry(ns2.addr, "")]));
    ns2.wait_for("the NOTIFY at start", |r| !r.is_empty());
    let before = ns2.received().len();
    let started = Instant::now();
    // 100 changes paced over about a second (one every 10 ms, as a busy API client would).
    for i in 0..100u32 {
        change(&d, &format!("v{i}"));
        let next = started + Duration::from_millis(10 * u64::from(i + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let burst = started.elapsed();
    let last = zone(&d)["serial"].as_u64().unwrap() as u32;
    let got = ns2.wait_for("the NOTIFY of the final serial", |r| {
        r.last().is_some_and(|m| m.serial() == last)
    });
    // Nothing more comes after the final serial has been announced.
    std::thread::sleep(Duration::from_millis(600));
    let all = ns2.received();
    assert_eq!(all.len(), got.len(), "no NOTIFY after the final one");
    let notifies = all.len() - before;
    // One per 250 ms interval at most, plus the first and the last one.
    let bound = (burst.as_millis() / 250) as usize + 2;
    eprintln!(
        "100 changes in {} ms gave {notifies} NOTIFYs (bound {bound})",
        burst.as_millis()
    );
    assert!(
        notifies <= bound,
        "{notifies} NOTIFYs for 100 changes in {burst:?}"
    );
    assert!(notifies < 20, "a handful, never one per change: {notifies}");
    assert_eq!(all.last().unwrap().serial(), last);
}

#[test]
fn a_silent_secondary_gets_the_bounded_tries_with_doubling_gaps_then_a_give_up() {
    let silent = FakeSecondary::start(Answer::Silent);
    let d = daemon(&format!(
        "  notify_timeout_ms: 100\n  notify_tries: 4\n{}",
        secondaries(&[entry(silent.addr, "")])
    ));
    let v = wait_zone(&d, "the give-up", |v| {
        !v["secondaries"][0]["last_notify_failed"].is_null()
    });
    let got = silent.received();
    assert_eq!(got.len(), 4, "exactly notify_tries packets");
    assert!(got.iter().all(|m| m.serial() == START_SERIAL));
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    // 100, 200, 400 ms: each gap at least its wait, and growing.
    for (gap, wait) in gaps.iter().zip([100u64, 200, 400]) {
        assert!(
            *gap >= Duration::from_millis(wait - 5),
            "gaps {gaps:?} below the waits"
        );
    }
    assert!(gaps[2] > gaps[0], "the gaps grow: {gaps:?}");
    let s = &v["secondaries"][0];
    assert_eq!(s["last_notify_acked"], Value::Null, "never acknowledged");
    assert_eq!(s["last_notify_failed"]["serial"], json!(START_SERIAL));
    assert_eq!(s["last_notify_error"], json!("no answer"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(silent.received().len(), 4, "nothing after the give-up");
    let m = metrics(&d);
    assert_eq!(metric(&m, "mailzone_notify_total{result=\"failed\"}"), 1.0);
    assert_eq!(metric(&m, "mailzone_notify_total{result=\"retried\"}"), 3.0);
    assert_eq!(metric(&m, "mailzone_notify_total{result=\"acked\"}"), 0.0);
    let (_, status) = http(d.http, "GET", "/v1/status", None, None);
    let status = common::json(&status);
    assert_eq!(status["secondaries"][0]["notifies_failed"], json!(1));
}

#[test]
fn a_secondary_that_answers_late_is_acknowledged_by_a_retry() {
    let late = FakeSecondary::start(Answer::AckAfter(2));
    let d = daemon(&format!(
        "  notify_timeout_ms: 100\n{}",
        secondaries(&[entry(late.addr, "")])
    ));
    let v = wait_zone(&d, "the acknowledgement", |v| {
        !v["secondaries"][0]["last_notify_acked"].is_null()
    });
    assert_eq!(
        v["secondaries"][0]["last_notify_acked"]["serial"],
        json!(START_SERIAL)
    );
    assert_eq!(late.received().len(), 3);
    let m = metrics(&d);
    assert_eq!(metric(&m, "mailzone_notify_total{result=\"acked\"}"), 1.0);
    assert_eq!(metric(&m, "mailzone_notify_total{result=\"retried\"}"), 2.0);
    assert_eq!(metric(&m, "mailzone_notify_total{result=\"failed\"}"), 0.0);
}

#[test]
fn a_secondary_with_a_key_gets_notifies_signed_with_it_and_its_signed_answer_counts() {
    let ns2 = FakeSecondary::start(Answer::Ack);
    let d = daemon(&secondaries(&[entry(
        ns2.addr,
        &format!(", key: {KEY_NAME}"),
    )]));
    let serial = change(&d, "signed");
    let got = ns2.wait_for("the signed NOTIFY", |r| {
        r.iter().any(|m| m.serial() == serial)
    });
    assert!(
        got.iter().all(|m| m.tsig_ok == Some(true)),
        "every NOTIFY carries a TSIG that verifies with the key"
    );
    let v = wait_zone(&d, "the acknowledgement", |v| {
        v["secondaries"][0]["last_notify_acked"]["serial"] == json!(serial)
    });
    assert_eq!(v["secondaries"][0]["key"], json!(KEY_NAME));
    assert!(
        !v.to_string()
            .contains("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc")
    );
}

#[test]
fn an_unsigned_answer_to_a_signed_notify_does_not_count() {
    let ns2 = FakeSecondary::start(Answer::Unsigned);
    let d = daemon(&format!(
        "  notify_timeout_ms: 50\n  notify_tries: 2\n{}",
        secondaries(&[entry(ns2.addr, &format!(", key: {KEY_NAME}"))])
    ));
    let v = wait_zone(&d, "the give-up", |v| {
        !v["secondaries"][0]["last_notify_failed"].is_null()
    });
    assert_eq!(v["secondaries"][0]["last_notify_acked"], Value::Null);
    let why = v["secondaries"][0]["last_notify_error"].as_str().unwrap();
    assert!(why.contains("TSIG"), "{why}");
    assert_eq!(ns2.received().len(), 2);
    assert!(ns2.received().iter().all(|m| m.tsig_ok == Some(true)));
}

#[test]
fn the_lag_grows_while_a_secondary_is_behind_and_is_zero_once_it_transferred() {
    let ns2 = FakeSecondary::start(Answer::Ack);
    let d = daemon(&secondaries(&[entry(ns2.addr, "")]));
    let origin = Name::from_ascii("example.test.").unwrap();
    let status = d.daemon().shared().transfer_status.clone();
    status.transferred(ns2.addr.ip(), &origin, START_SERIAL, "axfr");
    assert_eq!(zone(&d)["secondaries"][0]["lag_seconds"], json!(0.0));
    let serial = change(&d, "behind");
    std::thread::sleep(Duration::from_millis(200));
    let first = zone(&d)["secondaries"][0]["lag_seconds"].as_f64().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let second = zone(&d)["secondaries"][0]["lag_seconds"].as_f64().unwrap();
    assert!(first >= 0.2, "behind since the change: {first}");
    assert!(
        second >= first + 0.25,
        "the lag grows: {first} then {second}"
    );
    let (_, s) = http(d.http, "GET", "/v1/status", None, None);
    let s = common::json(&s);
    assert_eq!(s["secondaries"][0]["zones_behind"], json!(1));
    assert!(s["secondaries"][0]["max_lag_seconds"].as_f64().unwrap() >= 0.5);
    let series = format!(
        "mailzone_secondary_lag_seconds{{secondary=\"{}\"}}",
        ns2.addr
    );
    assert!(metric(&metrics(&d), &series) >= 0.5, "{}", metrics(&d));

    status.transferred(ns2.addr.ip(), &origin, serial, "ixfr");
    let v = zone(&d);
    let s2 = &v["secondaries"][0];
    assert_eq!(s2["lag_seconds"], json!(0.0));
    assert_eq!(s2["last_transferred_serial"], json!(serial));
    assert_eq!(s2["last_transfer_kind"], json!("ixfr"));
    assert_eq!(metric(&metrics(&d), &series), 0.0);
    let (_, s) = http(d.http, "GET", "/v1/status", None, None);
    assert_eq!(common::json(&s)["secondaries"][0]["zones_behind"], json!(0));
}

#[test]
fn the_metrics_have_one_lag_series_per_secondary_not_per_zone() {
    let a = FakeSecondary::start(Answer::Ack);
    let b = FakeSecondary::start(Answer::Ack);
    let d = daemon(&secondaries(&[entry(a.addr, ""), entry(b.addr, "")]));
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/zones",
        &json!({"name": "second.test", "nameservers": ["ns1.provider.example."]}),
    );
    assert_eq!(status, 201, "{body}");
    let m = metrics(&d);
    let lag_series: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("mailzone_secondary_lag_seconds{"))
        .collect();
    assert_eq!(lag_series.len(), 2, "{lag_series:?}");
    assert!(m.contains(&format!("secondary=\"{}\"", a.addr)));
}

#[test]
fn a_deleted_zone_stops_its_notifies_and_loses_its_status_entries() {
    let silent = FakeSecondary::start(Answer::Silent);
    let d = daemon(&format!(
        "  notify_timeout_ms: 300\n  notify_tries: 10\n{}",
        secondaries(&[entry(silent.addr, "")])
    ));
    let (status, body) = api(
        d.http,
        "POST",
        "/v1/zones",
        &json!({"name": "gone.test", "nameservers": ["ns1.provider.example."]}),
    );
    assert_eq!(status, 201, "{body}");
    let gone = Name::from_ascii("gone.test.").unwrap();
    silent.wait_for("a NOTIFY of gone.test.", |r| {
        r.iter().any(|m| m.message.queries[0].name() == &gone)
    });
    let shared = d.daemon().shared().clone();
    assert_eq!(shared.notifier.tracked(), 2, "example.test. and gone.test.");
    let (status, body) = http(d.http, "DELETE", "/v1/zones/gone.test", Some(TOKEN), None);
    assert!(status == 200 || status == 204, "{status} {body}");
    let count = |r: &[Received]| {
        r.iter()
            .filter(|m| m.message.queries[0].name() == &gone)
            .count()
    };
    let at_delete = count(&silent.received());
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        count(&silent.received()),
        at_delete,
        "no retry of a deleted zone's NOTIFY"
    );
    assert_eq!(shared.notifier.tracked(), 1, "only example.test. is left");
    assert!(
        shared
            .transfer_status
            .zone(&gone)
            .iter()
            .all(|s| s.last_notify_sent.is_none())
    );
    let (_, s) = http(d.http, "GET", "/v1/status", None, None);
    assert_eq!(common::json(&s)["secondaries"][0]["zones"], json!(1));
}

#[test]
fn a_reload_notifies_only_the_zones_whose_serial_changed() {
    let ns2 = FakeSecondary::start(Answer::Ack);
    let d = daemon(&secondaries(&[entry(ns2.addr, "")]));
    std::fs::write(
        d.zones_dir().join("other.test.zone"),
        common::small_zone("other.test", 7, "192.0.2.7"),
    )
    .unwrap();
    ns2.wait_for("the NOTIFY at start", |r| !r.is_empty());
    let (status, body) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    let got = ns2.wait_for("the NOTIFY of the new zone", |r| {
        r.iter().any(|m| m.serial() == 7)
    });
    std::thread::sleep(Duration::from_millis(400));
    let all = ns2.received();
    assert_eq!(all.len(), got.len());
    let of_example = all.iter().filter(|m| m.serial() == START_SERIAL).count();
    assert_eq!(of_example, 1, "the unchanged zone is not notified again");
}

#[test]
fn an_incoming_notify_gets_notimp() {
    let d = TestDaemon::example();
    let mut q = query_message("example.test.", RecordType::SOA, &common::Ask::default());
    q.metadata.op_code = OpCode::Notify;
    q.metadata.authoritative = true;
    let reply = exchange(d.dns, &q);
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(reply.metadata.op_code, OpCode::Notify);
}

/// A real Knot DNS secondary (`knotd`) on loopback, killed when dropped.
struct Knot {
    child: std::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Knot {
    /// Starts knotd on `listen` as a secondary of example.test. from `primary`, taking
    /// NOTIFY from 127.0.0.1 signed with `secret` (base64).
    fn start(listen: SocketAddr, primary: SocketAddr, secret: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let conf = dir.path().join("knot.conf");
        std::fs::write(
            &conf,
            format!(
                "server:\n    rundir: \"{root}\"\n    listen: {}@{}\n\
                 database:\n    storage: \"{root}/db\"\n\
                 log:\n  - target: stderr\n    any: info\n\
                 key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {secret}\n\
                 remote:\n  - id: primary\n    address: {}@{}\n    key: {KEY_NAME}\n\
                 acl:\n  - id: from_primary\n    address: 127.0.0.1\n    key: {KEY_NAME}\n    action: notify\n\
                 template:\n  - id: default\n    storage: \"{root}/zones\"\n\
                 zone:\n  - domain: example.test.\n    master: primary\n    acl: from_primary\n",
                listen.ip(),
                listen.port(),
                primary.ip(),
                primary.port()
            ),
        )
        .unwrap();
        let log = dir.path().join("knotd.log");
        let child = std::process::Command::new("knotd")
            .arg("-c")
            .arg(&conf)
            .stdout(std::fs::File::create(dir.path().join("knotd.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("knotd is not installed: run the README's test command");
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 20 s) for a log line containing every one of `needles`.
    fn wait_for_line(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "knotd never logged {needles:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP at the time of asking (for a child that binds it
/// later), on an address of its own: on 127.0.0.1 the port, checked for UDP only, was once
/// taken for TCP by another test's connection before knotd bound it.
fn free_port() -> SocketAddr {
    let ip = "127.0.0.20";
    SocketAddr::new(ip.parse().unwrap(), common::secondary::free_port(ip))
}

#[test]
fn knot_as_a_secondary_accepts_our_signed_notify_and_acknowledges_it() {
    let knot_addr = free_port();
    let d = daemon(&format!(
        "  notify_timeout_ms: 200\n  notify_tries: 8\n{}",
        secondaries(&[entry(knot_addr, &format!(", key: {KEY_NAME}"))])
    ));
    use base64::Engine;
    let knot = Knot::start(
        knot_addr,
        d.dns,
        &base64::engine::general_purpose::STANDARD.encode(SECRET),
    );
    // knotd is up once it answers a query (REFUSED or SERVFAIL: it has no data yet).
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::udp_raw(
        knot_addr,
        &query_message("example.test.", RecordType::SOA, &common::Ask::default())
            .to_vec()
            .unwrap(),
    )
    .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "knotd did not start:\n{}",
            knot.log()
        );
    }
    let serial = change(&d, "for knot");
    let line = knot.wait_for_line(&[
        "[example.test.]",
        "notify, incoming",
        &format!("serial {serial}"),
    ]);
    // The zone's ACL takes NOTIFY only signed with the key: an unsigned or badly signed
    // one would be logged "ACL, denied" or with a TSIG error instead.
    assert!(line.contains("notify, incoming"), "{line}");
    let log = knot.log();
    for refusal in ["BADSIG", "BADKEY", "BADTIME", "denied"] {
        assert!(
            !log.lines()
                .any(|l| l.contains("notify") && l.contains(refusal)),
            "knotd refused a NOTIFY ({refusal}):\n{log}"
        );
    }
    // Knot's signed answer verifies: the NOTIFY counts as acknowledged.
    wait_zone(&d, "Knot's acknowledgement", |v| {
        v["secondaries"][0]["last_notify_acked"]["serial"] == json!(serial)
    });
}

/// The fenced blocks of the README's "Running several nameservers" section, unindented.
fn readme_blocks() -> Vec<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .find("## Running several nameservers")
        .expect("the README has the section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<&str>)> = None;
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                None => current = Some((line.len() - line.trim_start().len(), Vec::new())),
                Some((indent, lines)) => blocks.push(
                    lines
                        .iter()
                        .map(|l| l.get(indent..).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
            }
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    blocks
}

#[test]
fn the_readme_secondary_snippets_pass_nsd_knot_and_bind_config_checks() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = Vec::new();
    for (i, block) in readme_blocks().iter().enumerate() {
        let first = block.lines().next().unwrap_or("");
        let file = dir.path().join(format!("snippet{i}.conf"));
        // BIND's snippet names Debian's /var/cache/bind, which exists only with the `bind9`
        // package; named-checkconf insists the directory exists, so check it against ours.
        let block = block.replace(
            "\"/var/cache/bind\"",
            &format!("\"{}\"", dir.path().display()),
        );
        std::fs::write(&file, format!("{block}\n")).unwrap();
        let (tool, args): (&str, Vec<&std::ffi::OsStr>) = if first.starts_with("# nsd.conf") {
            ("nsd-checkconf", vec![file.as_os_str()])
        } else if first.starts_with("# knot.conf") {
            (
                "knotc",
                vec!["-c".as_ref(), file.as_os_str(), "conf-check".as_ref()],
            )
        } else if first.starts_with("# named.conf") {
            ("named-checkconf", vec![file.as_os_str()])
        } else {
            continue;
        };
        let out = std::process::Command::new(tool)
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!("{tool} is not installed ({e}): run the README's test command")
            });
        assert!(
            out.status.success(),
            "{tool} refuses the README snippet {first:?}:\n{block}\n{out:?}"
        );
        checked.push(first.to_string());
    }
    for wanted in [
        "# nsd.conf",
        "# knot.conf on ns3 (",
        "# named.conf on ns4 (",
        "# knot.conf on ns3, catalog consumer",
        "# named.conf on ns4, catalog consumer",
    ] {
        assert!(
            checked.iter().any(|c| c.starts_with(wanted)),
            "no {wanted:?} snippet checked: {checked:?}"
        );
    }
}

#[test]
fn the_readme_mailzone_snippet_for_several_nameservers_is_a_valid_config() {
    let block = readme_blocks()
        .into_iter()
        .find(|b| b.starts_with("transfer:"))
        .expect("a transfer: block");
    let config = mailzone::config::Config::from_yaml(&block, "README.md").unwrap();
    assert_eq!(config.transfer.secondaries.len(), 3);
    assert!(
        config.transfer.secondaries.iter().all(|s| s.key.is_some()),
        "every secondary signs"
    );
}

#[test]
fn a_dead_secondary_does_not_hold_up_the_notifies_of_the_others() {
    let dead = FakeSecondary::start(Answer::Silent);
    let alive = FakeSecondary::start(Answer::Ack);
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    // More zones than NOTIFYs may be in flight to one secondary.
    for i in 0..80 {
        std::fs::write(
            zones.join(format!("z{i}.test.zone")),
            common::small_zone(&format!("z{i}.test"), 1, "192.0.2.1"),
        )
        .unwrap();
    }
    let mut config = common::test_config(dir.path());
    config.transfer = mailzone::config::Config::from_yaml(
        &format!(
            "transfer:\n  notify_timeout_ms: 5000\n{}",
            secondaries(&[entry(dead.addr, ""), entry(alive.addr, "")])
        ),
        "test",
    )
    .unwrap()
    .transfer;
    let _d = TestDaemon::run(dir, config);
    // The dead secondary's first tries wait 5 s each: hearing of every zone sooner shows
    // they did not queue behind them.
    let started = Instant::now();
    alive.wait_for("the start NOTIFY of every zone", |r| {
        let mut names: Vec<&Name> = r.iter().map(|m| m.message.queries[0].name()).collect();
        names.sort();
        names.dedup();
        names.len() == 80
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the live secondary heard of every zone in {took:?}, not after the dead one's tries"
    );
    assert!(
        dead.received().len() <= 32,
        "at most 32 NOTIFYs in flight to one secondary: {}",
        dead.received().len()
    );
}
