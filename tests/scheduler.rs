//! The one scheduler of background work, over the real daemon: a key rotates at its
//! deadline (`active_since + rotate_after`), a retired key goes at its deadline
//! (`retiring_since + keep_retired`), and a reload derives every deadline again from the
//! saved timestamps. The DKIM check interval is an hour here: nothing else could do it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use mailzone::daemon::scheduler::{AssociationKey, Job};
use mailzone::provision::platform::{DkimPolicy, Platform};
use serde_json::{Value, json};

const SHOP: &str = "$ORIGIN shop.test.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n\
    @ NS ns1.provider.example.\n@ A 192.0.2.80\n";

fn daemon(rotate_after_secs: u64, keep_retired_secs: u64) -> TestDaemon {
    let mut p = Platform::example();
    p.id = "timed".into();
    p.dkim = Some(DkimPolicy {
        rotate_after_secs,
        keep_retired_secs,
        ..DkimPolicy::default()
    });
    TestDaemon::start_tuned(&[("shop.test.zone", SHOP)], move |c| {
        c.platforms.push(p);
        c.dkim_check_interval_ms = 3_600_000;
    })
}

fn associate(d: &TestDaemon) {
    let body = json!({"domain": "shop.test", "platform": "timed", "mode": "authoritative", "records": {"dkim": true}});
    let (status, text) = api(d.http, "POST", "/v1/domains", &body);
    assert_eq!(status, 201, "{text}");
}

fn generations(d: &TestDaemon) -> Vec<Value> {
    let (_, text) = http(d.http, "GET", "/v1/domains/shop.test", Some(TOKEN), None);
    json(&text)["associations"][0]["dkim"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn in_state(d: &TestDaemon, state: &str) -> Vec<Value> {
    generations(d)
        .into_iter()
        .filter(|g| g["state"] == state)
        .collect()
}

fn selector(g: &Value) -> String {
    g["keys"][0]["selector"].as_str().unwrap().to_string()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn jobs_of(d: &TestDaemon, domain: &str) -> Vec<Job> {
    d.daemon()
        .shared()
        .scheduler
        .snapshot()
        .into_iter()
        .filter(|(_, k, _)| k.domain == domain)
        .map(|(_, _, j)| j)
        .collect()
}

#[test]
fn a_key_rotates_at_its_deadline_and_not_before() {
    let d = daemon(3, 3600);
    associate(&d);
    let first = in_state(&d, "active")[0].clone();
    let since = first["active_since"].as_u64().unwrap();
    let key = AssociationKey::new("shop.test.", "timed");
    assert!(
        d.daemon()
            .shared()
            .scheduler
            .deadline(&key, Job::Rotate)
            .is_some(),
        "the rotation is scheduled"
    );
    // Watched closely: the successor must not sign before `active_since + 3 s` (timestamps
    // are whole seconds, hence the one second of slack).
    wait_for("the successor to sign", Duration::from_secs(8), || {
        let rotated = in_state(&d, "active")
            .first()
            .is_some_and(|g| selector(g) != selector(&first));
        if rotated {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            assert!(now >= (since + 2) as f64, "rotated {now} < {since} + 3 s");
        }
        rotated
    });
    let now_active = in_state(&d, "active")[0].clone();
    assert!(now_active["active_since"].as_u64().unwrap() >= since + 3);
    assert_eq!(selector(&in_state(&d, "retiring")[0]), selector(&first));
}

#[test]
fn a_retired_key_is_dropped_at_its_deadline() {
    let d = daemon(3600, 2);
    associate(&d);
    let old = selector(&in_state(&d, "active")[0]);
    let (status, text) = http(
        d.http,
        "POST",
        "/v1/domains/shop.test/dkim/rotate",
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let owner = format!("{old}._domainkey.shop.test.");
    assert_eq!(
        tcp(d.dns, &owner, RecordType::TXT).metadata.response_code,
        ResponseCode::NoError,
        "a retiring key is still published"
    );
    wait_for(
        "the retired key record to go",
        Duration::from_secs(8),
        || tcp(d.dns, &owner, RecordType::TXT).metadata.response_code == ResponseCode::NXDomain,
    );
    assert!(in_state(&d, "retiring").is_empty());
    assert!(
        !d.dir
            .path()
            .join(format!("keys/dkim/shop.test/{old}.pem"))
            .exists(),
        "its key file goes too"
    );
    assert!(
        !jobs_of(&d, "shop.test.").contains(&Job::DropRetired),
        "nothing more to drop"
    );
}

#[test]
fn a_reload_derives_the_deadlines_again_from_the_saved_timestamps() {
    let d = daemon(3600, 3600);
    associate(&d);
    let first = selector(&in_state(&d, "active")[0]);
    // The file now says the active key has signed since 1970: overdue for rotation.
    let file = d.zones_dir().join("associations/shop.test.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for g in doc["associations"][0]["dkim"].as_sequence_mut().unwrap() {
        if g["state"] == "active" {
            g["active_since"] = serde_yaml::Value::from(1u64);
        }
    }
    std::fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        selector(&in_state(&d, "active")[0]),
        first,
        "the jobs in memory still say in an hour"
    );
    let (status, text) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200, "{text}");
    wait_for(
        "the overdue rotation after the reload",
        Duration::from_secs(8),
        || {
            in_state(&d, "active")
                .first()
                .is_some_and(|g| selector(g) != first)
        },
    );

    // An association whose file went is forgotten at the reload: no job is left for it.
    std::fs::remove_file(&file).unwrap();
    let (status, text) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200, "{text}");
    assert_eq!(jobs_of(&d, "shop.test."), vec![]);
}
