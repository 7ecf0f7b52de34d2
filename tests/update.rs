//! RFC 2136 UPDATE with TSIG, driven by the operators' own tools (nsupdate, knsupdate) and
//! by raw signed messages: changes go through the single writer (served at once, in the zone
//! file, kept across a restart), prerequisites hold, and what is not the key's to change —
//! or not signed at all — changes nothing.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use mailzone::config::{Config, TsigKeyConfig, UpdatePolicy, ZoneSelection};
use mailzone::transfer::TsigKey;
use mailzone::transfer::tsig;
use serde_json::json;

/// May change anything in example.test. but SOA and apex NS.
const OPS: &str = "ops-key";
/// May change only `_acme-challenge` TXT records of example.test.
const ACME: &str = "acme-key";
/// A transfer key without an update policy.
const XFR: &str = "xfr-key";
/// A key that may update any zone, to reach the "not hosted here" answer.
const WIDE: &str = "wide-key";

fn keys(c: &mut Config) {
    let zone = ZoneSelection::List(vec!["example.test.".into()]);
    c.transfer.keys = vec![
        TsigKeyConfig {
            name: OPS.into(),
            algorithm: Default::default(),
            update: Some(UpdatePolicy {
                zones: zone.clone(),
                names: vec![],
                types: vec![],
            }),
        },
        TsigKeyConfig {
            name: ACME.into(),
            algorithm: Default::default(),
            update: Some(UpdatePolicy {
                zones: zone,
                names: vec!["_acme-challenge".into(), "_acme-challenge.www".into()],
                types: vec!["TXT".into()],
            }),
        },
        TsigKeyConfig {
            name: XFR.into(),
            algorithm: Default::default(),
            update: None,
        },
        TsigKeyConfig {
            name: WIDE.into(),
            algorithm: Default::default(),
            update: Some(UpdatePolicy {
                zones: ZoneSelection::All,
                names: vec![],
                types: vec![],
            }),
        },
    ];
}

fn daemon() -> TestDaemon {
    TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], keys)
}

fn secret(d: &TestDaemon, key: &str) -> String {
    std::fs::read_to_string(d.dir.path().join(format!("keys/tsig/{key}.key")))
        .unwrap()
        .trim()
        .to_string()
}

/// `-y` for nsupdate and knsupdate.
fn key_arg(d: &TestDaemon, key: &str) -> String {
    format!("hmac-sha256:{key}:{}", secret(d, key))
}

/// Runs a tool with `script` on stdin: (success, stdout + stderr).
fn run(tool: &str, args: &[&str], script: &str) -> (bool, String) {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: {tool} is not installed (scripts/test installs it)");
    }
    found
}

/// nsupdate with a script addressed to the daemon; `extra` are more flags (`-v`: TCP).
fn nsupdate(d: &TestDaemon, key: Option<&str>, extra: &[&str], body: &str) -> (bool, String) {
    let script = format!(
        "server {} {}\nzone example.test.\n{body}\nsend\n",
        d.dns.ip(),
        d.dns.port()
    );
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    if let Some(k) = key {
        args.push("-y".into());
        args.push(key_arg(d, k));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("nsupdate", &args, &script)
}

fn knsupdate(d: &TestDaemon, key: Option<&str>, extra: &[&str], body: &str) -> (bool, String) {
    let script = format!(
        "server {} {}\nzone example.test.\n{body}\nsend\nanswer\n",
        d.dns.ip(),
        d.dns.port()
    );
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    if let Some(k) = key {
        args.push("-y".into());
        args.push(key_arg(d, k));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("knsupdate", &args, &script)
}

fn short(d: &TestDaemon, name: &str, qtype: &str) -> String {
    dig(d.dns, &["+short", name, qtype]).trim().to_string()
}

fn zone_file(d: &TestDaemon) -> String {
    std::fs::read_to_string(d.zones_dir().join("example.test.zone")).unwrap()
}

fn serial(d: &TestDaemon) -> u32 {
    match &udp(d.dns, "example.test.", RecordType::SOA).answers[0].data {
        RData::SOA(s) => s.serial,
        _ => 0,
    }
}

// ---- raw signed UPDATE messages -------------------------------------------------------

fn tsig_key(d: &TestDaemon, name: &str) -> TsigKey {
    TsigKey {
        name: name.into(),
        algorithm: Default::default(),
        secret: base64::engine::general_purpose::STANDARD
            .decode(secret(d, name))
            .unwrap(),
    }
}

fn update_message(prereqs: Vec<Record>, updates: Vec<Record>) -> Message {
    let mut m = Message::new(0x2136, MessageType::Query, OpCode::Update);
    let mut zone = Query::query(Name::from_ascii("example.test.").unwrap(), RecordType::SOA);
    zone.query_class = DNSClass::IN;
    m.add_query(zone);
    m.answers = prereqs;
    m.authorities = updates;
    m
}

/// Sends an UPDATE over UDP, signed with `key` when given; the response's rcode, TSIG error
/// and whether its TSIG verified.
fn send(
    server: SocketAddr,
    key: Option<&TsigKey>,
    message: &Message,
) -> (ResponseCode, Option<TsigError>, bool) {
    send_signed_at(server, key, message, tsig::now())
}

/// [`send`], with the request signed as if the clock said `signed_at` (Unix seconds).
fn send_signed_at(
    server: SocketAddr,
    key: Option<&TsigKey>,
    message: &Message,
    signed_at: u64,
) -> (ResponseCode, Option<TsigError>, bool) {
    let mut bytes = message.to_vec().unwrap();
    let mut mac = None;
    if let Some(k) = key {
        let signer = tsig::signer(k).unwrap();
        mac = Some((
            signer.clone(),
            tsig::sign_request(&signer, &mut bytes, signed_at).unwrap(),
        ));
    }
    let reply = udp_raw(server, &bytes).expect("no response");
    let parsed = Message::from_vec(&reply).unwrap();
    let verified =
        mac.is_some_and(|(s, m)| tsig::verify_response(&s, &m, &reply, tsig::now()).is_ok());
    (
        parsed.metadata.response_code,
        parsed.signature.and_then(|s| s.data.error),
        verified,
    )
}

fn add(name: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(Name::from_ascii(name).unwrap(), ttl, data)
}

fn txt(s: &str) -> RData {
    RData::TXT(hickory_proto::rr::rdata::TXT::new(vec![s.into()]))
}

// ---- nsupdate and knsupdate -----------------------------------------------------------

#[test]
fn nsupdate_adds_a_record_served_at_once_over_udp_and_written_to_the_zone_file() {
    if !have("nsupdate") {
        return;
    }
    let d = daemon();
    let before = serial(&d);
    let (ok, out) = nsupdate(
        &d,
        Some(OPS),
        &[],
        "update add host1.example.test. 300 A 192.0.2.77",
    );
    assert!(ok, "{out}");
    assert_eq!(short(&d, "host1.example.test", "A"), "192.0.2.77");
    assert!(serial(&d) > before);
    assert!(
        zone_file(&d).contains("host1.example.test. 300 IN A 192.0.2.77"),
        "{}",
        zone_file(&d)
    );
}

#[test]
fn nsupdate_over_tcp_deletes_a_record_and_its_rrset() {
    if !have("nsupdate") {
        return;
    }
    let d = daemon();
    let (ok, out) = nsupdate(
        &d,
        Some(OPS),
        &["-v"],
        "update delete mail.example.test. A 192.0.2.30\nupdate delete mx2.example.test. A",
    );
    assert!(ok, "{out}");
    assert_eq!(short(&d, "mail.example.test", "A"), "");
    assert_eq!(short(&d, "mx2.example.test", "A"), "");
    assert!(!zone_file(&d).contains("mail.example.test. 3600 IN A 192.0.2.30"));
    assert!(!zone_file(&d).contains("mx2.example.test. 3600 IN A"));
}

#[test]
fn knsupdate_adds_and_deletes_with_a_key() {
    if !have("knsupdate") {
        return;
    }
    let d = daemon();
    let (ok, out) = knsupdate(
        &d,
        Some(OPS),
        &[],
        "update add k1.example.test. 120 TXT \"from knot\"",
    );
    assert!(ok, "{out}");
    assert_eq!(short(&d, "k1.example.test", "TXT"), "\"from knot\"");
    let (ok, out) = knsupdate(&d, Some(OPS), &[], "update delete k1.example.test. TXT");
    assert!(ok, "{out}");
    assert_eq!(short(&d, "k1.example.test", "TXT"), "");
    assert!(!zone_file(&d).contains("from knot"));
}

#[test]
fn an_unsigned_nsupdate_is_refused_and_changes_nothing() {
    if !have("nsupdate") {
        return;
    }
    let d = daemon();
    let before = zone_file(&d);
    let (ok, out) = nsupdate(&d, None, &[], "update add x.example.test. 300 A 192.0.2.9");
    assert!(!ok, "{out}");
    assert!(out.contains("REFUSED"), "{out}");
    assert_eq!(short(&d, "x.example.test", "A"), "");
    assert_eq!(zone_file(&d), before);
}

#[test]
fn an_unsigned_knsupdate_is_refused() {
    if !have("knsupdate") {
        return;
    }
    let d = daemon();
    let (_, out) = knsupdate(&d, None, &[], "update add x.example.test. 300 A 192.0.2.9");
    assert!(out.contains("REFUSED"), "{out}");
    assert_eq!(short(&d, "x.example.test", "A"), "");
}

#[test]
fn the_acme_key_may_set_its_challenge_txt_and_nothing_else() {
    if !have("nsupdate") {
        return;
    }
    let d = daemon();
    let (ok, out) = nsupdate(
        &d,
        Some(ACME),
        &[],
        "update add _acme-challenge.example.test. 60 TXT \"token-1\"\nupdate add _acme-challenge.www.example.test. 60 TXT \"token-2\"",
    );
    assert!(ok, "{out}");
    assert_eq!(
        short(&d, "_acme-challenge.example.test", "TXT"),
        "\"token-1\""
    );
    let before = zone_file(&d);
    for body in [
        "update add www2.example.test. 60 TXT \"nope\"",
        "update add _acme-challenge.example.test. 60 CAA 0 issue \"ca.example\"",
        "update delete example.test. TXT",
        "update delete example.test.",
    ] {
        let (ok, out) = nsupdate(&d, Some(ACME), &[], body);
        assert!(!ok, "{body}: {out}");
        assert!(out.contains("REFUSED"), "{body}: {out}");
    }
    assert_eq!(zone_file(&d), before);
    // Deleting its own name removes what is there: the key's TXT records only.
    let (ok, out) = nsupdate(
        &d,
        Some(ACME),
        &[],
        "update delete _acme-challenge.example.test.",
    );
    assert!(ok, "{out}");
    assert_eq!(short(&d, "_acme-challenge.example.test", "TXT"), "");
}

#[test]
fn knsupdate_outside_the_keys_scope_is_refused() {
    if !have("knsupdate") {
        return;
    }
    let d = daemon();
    let (_, out) = knsupdate(
        &d,
        Some(ACME),
        &[],
        "update add www2.example.test. 60 TXT \"nope\"",
    );
    assert!(out.contains("REFUSED"), "{out}");
    assert_eq!(short(&d, "www2.example.test", "TXT"), "");
}

#[test]
fn a_key_without_an_update_policy_is_refused() {
    if !have("nsupdate") {
        return;
    }
    let d = daemon();
    let (ok, out) = nsupdate(
        &d,
        Some(XFR),
        &[],
        "update add x.example.test. 300 A 192.0.2.9",
    );
    assert!(!ok && out.contains("REFUSED"), "{out}");
    assert_eq!(short(&d, "x.example.test", "A"), "");
}

#[test]
fn nsupdate_prerequisites_decide_and_a_failed_one_changes_nothing() {
    if !have("nsupdate") {
        return;
    }
    let d = daemon();
    let before = zone_file(&d);
    for (prereq, rcode) in [
        ("prereq nxdomain mail.example.test.", "YXDOMAIN"),
        ("prereq yxdomain nothing.example.test.", "NXDOMAIN"),
        ("prereq nxrrset mail.example.test. A", "YXRRSET"),
        ("prereq yxrrset mail.example.test. TXT", "NXRRSET"),
        ("prereq yxrrset mail.example.test. A 192.0.2.99", "NXRRSET"),
    ] {
        let body = format!("{prereq}\nupdate add p.example.test. 60 A 192.0.2.5");
        let (ok, out) = nsupdate(&d, Some(OPS), &[], &body);
        assert!(!ok, "{prereq}: {out}");
        assert!(out.contains(rcode), "{prereq}: want {rcode}: {out}");
    }
    assert_eq!(zone_file(&d), before);
    let (ok, out) = nsupdate(
        &d,
        Some(OPS),
        &[],
        "prereq yxrrset mail.example.test. A 192.0.2.30\nprereq nxdomain p.example.test.\nupdate add p.example.test. 60 A 192.0.2.5",
    );
    assert!(ok, "{out}");
    assert_eq!(short(&d, "p.example.test", "A"), "192.0.2.5");
}

#[test]
fn the_soa_and_the_apex_ns_are_protected() {
    if !have("nsupdate") {
        return;
    }
    let d = daemon();
    let before = zone_file(&d);
    for body in [
        "update delete example.test. NS",
        "update add example.test. 300 NS ns3.example.net.",
        "update delete example.test. NS ns2.example.test.",
        "update add example.test. 300 SOA ns1.example.test. h.example.test. 1 2 3 4 5",
        "update delete example.test. SOA",
    ] {
        let (ok, out) = nsupdate(&d, Some(OPS), &[], body);
        assert!(!ok && out.contains("REFUSED"), "{body}: {out}");
    }
    assert_eq!(zone_file(&d), before);
}

#[test]
fn deleting_the_apex_name_keeps_soa_and_ns() {
    if !have("nsupdate") {
        return;
    }
    let d = daemon();
    let (ok, out) = nsupdate(&d, Some(OPS), &[], "update delete example.test.");
    assert!(ok, "{out}");
    assert_eq!(short(&d, "example.test", "MX"), "");
    assert_eq!(short(&d, "example.test", "A"), "");
    assert!(!short(&d, "example.test", "NS").is_empty());
    assert!(!short(&d, "example.test", "SOA").is_empty());
}

#[test]
fn records_an_association_wrote_are_protected() {
    if !have("nsupdate") {
        return;
    }
    let shop = "$ORIGIN shop.test.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n\
        @ NS ns1.provider.example.\n@ NS ns2.provider.example.\n@ A 192.0.2.80\n";
    let d = TestDaemon::start_tuned(
        &[
            ("example.test.zone", EXAMPLE_ZONE),
            ("shop.test.zone", shop),
        ],
        |c| {
            keys(c);
            c.transfer.keys[0].update.as_mut().unwrap().zones = ZoneSelection::All;
        },
    );
    let (status, body) = http(
        d.http,
        "POST",
        "/v1/domains",
        Some(TOKEN),
        Some(
            &json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative"})
                .to_string(),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let mx = short(&d, "shop.test", "MX");
    assert!(!mx.is_empty());
    let script = |body: &str| {
        format!(
            "server {} {}\nzone shop.test.\n{body}\nsend\n",
            d.dns.ip(),
            d.dns.port()
        )
    };
    let key = key_arg(&d, OPS);
    for body in [
        "update delete shop.test. MX",
        "update add shop.test. 300 MX 5 mx.elsewhere.example.",
    ] {
        let (ok, out) = run("nsupdate", &["-y", &key], &script(body));
        assert!(!ok && out.contains("REFUSED"), "{body}: {out}");
    }
    assert_eq!(short(&d, "shop.test", "MX"), mx);
    // Beside the association's SPF, another TXT value is the user's to add.
    let (ok, out) = run(
        "nsupdate",
        &["-y", &key],
        &script("update add shop.test. 300 TXT \"site-verification=abc\""),
    );
    assert!(ok, "{out}");
}

#[test]
fn a_change_is_kept_across_a_restart() {
    if !have("nsupdate") {
        return;
    }
    let d = daemon();
    let (ok, out) = nsupdate(
        &d,
        Some(OPS),
        &[],
        "update add kept.example.test. 300 MX 10 mx1.example.test.",
    );
    assert!(ok, "{out}");
    let d = d.restart();
    assert_eq!(short(&d, "kept.example.test", "MX"), "10 mx1.example.test.");
}

// ---- raw messages ---------------------------------------------------------------------

#[test]
fn an_update_that_changes_nothing_writes_nothing_and_bumps_nothing() {
    let d = daemon();
    let key = tsig_key(&d, OPS);
    let before = (serial(&d), zone_file(&d));
    let mut gone = add("absent.example.test.", 0, RData::Update0(RecordType::A));
    gone.dns_class = DNSClass::ANY;
    let again = add(
        "mail.example.test.",
        3600,
        RData::A("192.0.2.30".parse().unwrap()),
    );
    let (rcode, _, verified) = send(
        d.dns,
        Some(&key),
        &update_message(vec![], vec![gone, again]),
    );
    assert_eq!(rcode, ResponseCode::NoError);
    assert!(verified, "the response is signed with the request's key");
    assert_eq!((serial(&d), zone_file(&d)), before);
}

#[test]
fn a_wrong_secret_gets_notauth_badsig_and_an_unknown_key_badkey() {
    let d = daemon();
    let before = zone_file(&d);
    let message = update_message(vec![], vec![add("w.example.test.", 60, txt("x"))]);
    let mut wrong = tsig_key(&d, OPS);
    wrong.secret[0] ^= 1;
    let (rcode, error, _) = send(d.dns, Some(&wrong), &message);
    assert_eq!(
        (rcode, error),
        (ResponseCode::NotAuth, Some(TsigError::BadSig))
    );
    let mut unknown = tsig_key(&d, OPS);
    unknown.name = "who-is-this".into();
    let (rcode, error, _) = send(d.dns, Some(&unknown), &message);
    assert_eq!(
        (rcode, error),
        (ResponseCode::NotAuth, Some(TsigError::BadKey))
    );
    assert_eq!(zone_file(&d), before);
}

#[test]
fn an_update_for_a_zone_outside_the_keys_zones_is_refused_signed() {
    let d = daemon();
    let key = tsig_key(&d, OPS);
    let mut m = update_message(vec![], vec![add("a.other.test.", 60, txt("x"))]);
    m.queries[0].name = Name::from_ascii("other.test.").unwrap();
    let (rcode, _, verified) = send(d.dns, Some(&key), &m);
    assert_eq!(rcode, ResponseCode::Refused);
    assert!(verified);
}

#[test]
fn an_update_for_a_zone_not_hosted_here_gets_notauth_signed() {
    let d = daemon();
    let key = tsig_key(&d, WIDE);
    let mut m = update_message(vec![], vec![add("a.elsewhere.test.", 60, txt("x"))]);
    m.queries[0].name = Name::from_ascii("elsewhere.test.").unwrap();
    let (rcode, error, verified) = send(d.dns, Some(&key), &m);
    assert_eq!((rcode, error), (ResponseCode::NotAuth, None));
    assert!(verified, "the refusal is signed with the request's key");
    // The key's own zone still takes its updates.
    let m = update_message(vec![], vec![add("w.example.test.", 60, txt("x"))]);
    assert_eq!(send(d.dns, Some(&key), &m).0, ResponseCode::NoError);
}

#[test]
fn an_update_signed_an_hour_ago_gets_notauth_badtime_and_changes_nothing() {
    let d = daemon();
    let before = (serial(&d), zone_file(&d));
    let key = tsig_key(&d, OPS);
    let message = update_message(vec![], vec![add("late.example.test.", 60, txt("x"))]);
    // The fudge is 300 s: a request signed an hour ago is a replay or a broken clock.
    let (rcode, error, _) = send_signed_at(d.dns, Some(&key), &message, tsig::now() - 3600);
    assert_eq!(
        (rcode, error),
        (ResponseCode::NotAuth, Some(TsigError::BadTime))
    );
    assert_eq!(short(&d, "late.example.test", "TXT"), "");
    assert_eq!((serial(&d), zone_file(&d)), before);
}

#[test]
fn a_flood_of_unsigned_updates_is_held_to_the_rrl_error_rate() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        keys(c);
        c.dns.rrl.enabled = true;
        c.dns.rrl.errors_per_second = 5;
        c.dns.rrl.slip = 0;
    });
    let message = update_message(vec![], vec![add("f.example.test.", 60, txt("x"))]);
    let bytes = message.to_vec().unwrap();
    let socket = udp_from("127.0.1.20", Duration::from_millis(300));
    let started = Instant::now();
    for _ in 0..60 {
        socket.send_to(&bytes, d.dns).unwrap();
        // Under the 256 UPDATEs in flight: every one is answered or limited, none dropped
        // for backlog.
        std::thread::sleep(Duration::from_millis(2));
    }
    let windows = started.elapsed().as_secs() as usize + 2;
    let mut buf = [0u8; 2048];
    let mut refused = 0;
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        refused += 1;
    }
    assert!(
        (5..=5 * windows).contains(&refused),
        "{refused} REFUSED in {windows} one-second windows at 5/s"
    );
    let body = d.daemon().shared().metrics.render();
    let dropped = metric(&body, "mailzone_dns_rrl_limited_total{action=\"dropped\"}");
    assert_eq!(dropped as usize + refused, 60);
    // A signed update from another prefix is not held back by the flood.
    let key = tsig_key(&d, OPS);
    let m = update_message(vec![], vec![add("g.example.test.", 60, txt("x"))]);
    assert_eq!(send(d.dns, Some(&key), &m).0, ResponseCode::NoError);
}

#[test]
fn queries_are_answered_while_updates_wait_for_the_writer() {
    let d = daemon();
    let key = tsig_key(&d, OPS);
    let held = d
        .daemon()
        .shared()
        .writer_lock()
        .try_lock()
        .expect("writer free");
    let message = update_message(vec![], vec![add("late.example.test.", 60, txt("x"))]);
    let mut bytes = message.to_vec().unwrap();
    let signer = tsig::signer(&key).unwrap();
    tsig::sign_request(&signer, &mut bytes, tsig::now()).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(&bytes, d.dns).unwrap();
    // The update waits; a query on the same socket path is answered meanwhile.
    assert_eq!(short(&d, "mail.example.test", "A"), "192.0.2.30");
    drop(held);
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(
        Message::from_vec(&buf[..n]).unwrap().metadata.response_code,
        ResponseCode::NoError
    );
    assert_eq!(short(&d, "late.example.test", "TXT"), "\"x\"");
}

// ---- round trip ----------------------------------------------------------------------

mod roundtrip {
    use super::*;
    use hickory_proto::rr::Label;
    use hickory_proto::rr::rdata::{AAAA, CNAME, MX, SRV, TXT};
    use mailzone::zone::master::wire_bytes;
    use proptest::prelude::*;
    use proptest::test_runner::Config as ProptestConfig;

    /// A few owners, so that operations meet: host names, `_service`, arbitrary bytes.
    fn owner() -> impl Strategy<Value = Name> {
        prop_oneof![
            Just(b"a".to_vec()),
            Just(b"B".to_vec()),
            Just(b"_x".to_vec()),
            prop::collection::vec(any::<u8>(), 1..=12),
        ]
        .prop_map(|label| {
            Name::from_labels(vec![Label::from_raw_bytes(&label).unwrap()])
                .unwrap()
                .append_domain(&Name::from_ascii("example.test.").unwrap())
                .unwrap()
        })
    }

    fn data() -> impl Strategy<Value = RData> {
        let target = prop_oneof![
            Just("mx1.example.test."),
            Just("mail.example.test."),
            Just("elsewhere.example.net.")
        ]
        .prop_map(|t| Name::from_ascii(t).unwrap());
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| RData::A(std::net::Ipv4Addr::from(b).into())),
            any::<[u8; 16]>().prop_map(|b| RData::AAAA(AAAA::from(std::net::Ipv6Addr::from(b)))),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..3).prop_map(
                |parts| RData::TXT(TXT::from_bytes(parts.iter().map(Vec::as_slice).collect()))
            ),
            (any::<u16>(), target.clone()).prop_map(|(p, t)| RData::MX(MX::new(p, t))),
            target.clone().prop_map(|t| RData::CNAME(CNAME(t))),
            (any::<u16>(), any::<u16>(), any::<u16>(), target)
                .prop_map(|(a, b, c, t)| RData::SRV(SRV::new(a, b, c, t))),
        ]
    }

    const TYPES: [RecordType; 6] = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::MX,
        RecordType::CNAME,
        RecordType::SRV,
    ];

    /// One record of the update section (RFC 2136 §2.5).
    fn op() -> impl Strategy<Value = Record> {
        let rtype = prop::sample::select(TYPES.to_vec());
        prop_oneof![
            4 => (owner(), prop_oneof![4 => 0u32..100_000, 1 => any::<u32>()], data()).prop_map(|(n, ttl, d)| Record::from_rdata(n, ttl, d)),
            1 => (owner(), rtype).prop_map(|(n, t)| {
                let mut r = Record::from_rdata(n, 0, RData::Update0(t));
                r.dns_class = DNSClass::ANY;
                r
            }),
            1 => owner().prop_map(|n| {
                let mut r = Record::from_rdata(n, 0, RData::Update0(RecordType::ANY));
                r.dns_class = DNSClass::ANY;
                r
            }),
            1 => (owner(), data()).prop_map(|(n, d)| {
                let mut r = Record::from_rdata(n, 0, d);
                r.dns_class = DNSClass::NONE;
                r
            }),
        ]
    }

    /// What the daemon answers for every owner and type the operations named, over TCP:
    /// (owner, type, TTL, data as wire bytes), sorted.
    fn answers(server: SocketAddr, owners: &[Name]) -> Vec<(String, u16, u32, Vec<u8>)> {
        let mut out = Vec::new();
        for name in owners {
            for t in TYPES {
                let mut m = Message::new(7, MessageType::Query, OpCode::Query);
                m.add_query(Query::query(name.clone(), t));
                let reply = Message::from_vec(&tcp_raw(server, &m.to_vec().unwrap())).unwrap();
                for r in reply
                    .answers
                    .iter()
                    .filter(|r| r.name == *name && r.record_type() == t)
                {
                    out.push((
                        name.to_ascii().to_lowercase(),
                        u16::from(t),
                        r.ttl,
                        wire_bytes(&r.data).unwrap(),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    proptest! {
        // Each case starts and restarts a daemon: few cases by default
        // (PROPTEST_CASES=200 for a longer run).
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(12),
            ..ProptestConfig::default()
        })]

        #[test]
        fn what_an_update_accepts_is_answered_the_same_after_a_restart_and_read_back_from_the_file(
            updates in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..5)
        ) {
            let d = daemon();
            let key = tsig_key(&d, OPS);
            let mut owners: Vec<Name> = Vec::new();
            for ops in &updates {
                for r in ops {
                    if !owners.contains(&r.name) {
                        owners.push(r.name.clone());
                    }
                }
                let (rcode, _, verified) = send(d.dns, Some(&key), &update_message(vec![], ops.clone()));
                prop_assert!(verified);
                prop_assert!(
                    matches!(rcode, ResponseCode::NoError | ResponseCode::Refused),
                    "{rcode:?} for {ops:?}"
                );
            }
            let before = answers(d.dns, &owners);
            let file = zone_file(&d);
            let zone = mailzone::zone::Zone::from_master_text(
                &Name::from_ascii("example.test.").unwrap(),
                &file,
            );
            prop_assert!(zone.is_ok(), "{file}");
            let d = d.restart();
            let after = answers(d.dns, &owners);
            prop_assert_eq!(&before, &after);
        }
    }
}

#[test]
fn the_readme_update_policy_example_is_a_valid_configuration() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Dynamic updates")
        .nth(1)
        .expect("README section");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("yaml block");
    let config = Config::from_yaml(block, "README.md").unwrap();
    let acme = &config.transfer.keys[1];
    assert_eq!(acme.update.as_ref().unwrap().types, ["TXT"]);
}
