//! No acknowledged change is lost: the daemon is SIGKILLed again and again while a client
//! streams changes, and after every restart each change that got a 2xx is there.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use hickory_proto::rr::RecordType;
use serde_json::json;

const ROUNDS: usize = 6;

/// Streams one change per request until the daemon stops answering; returns the
/// numbers of the changes that were acknowledged with a 2xx.
fn stream_changes(
    http_addr: std::net::SocketAddr,
    token: String,
    first: u32,
    stop: Arc<AtomicBool>,
) -> Vec<u32> {
    let mut acked = Vec::new();
    let mut n = first;
    while !stop.load(Ordering::Relaxed) {
        let body = json!({"operations": [
            {"op": "add", "name": format!("c{n}"), "type": "TXT", "records": [format!("change {n}")]}
        ]})
        .to_string();
        let Some(status) = try_http(
            http_addr,
            "PATCH",
            "/v1/zones/crash.test/records",
            &token,
            &body,
        ) else {
            break;
        };
        if (200..300).contains(&status) {
            acked.push(n);
        }
        n += 1;
    }
    acked
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

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

#[test]
fn sigkill_during_a_stream_of_changes_loses_no_acknowledged_change() {
    let mut d =
        ChildDaemon::start(&[("crash.test.zone", &small_zone("crash.test", 1, "192.0.2.1"))]);
    let mut acked: Vec<u32> = Vec::new();
    let mut next = 0u32;
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let client = {
            let (addr, token, stop) = (d.http, d.token(), stop.clone());
            std::thread::spawn(move || stream_changes(addr, token, next, stop))
        };
        // Kill at a different point of the stream each round.
        std::thread::sleep(Duration::from_millis(150 + 70 * round as u64));
        let dir = d.kill_hard();
        stop.store(true, Ordering::Relaxed);
        let round_acked = client.join().unwrap();
        assert!(
            !round_acked.is_empty(),
            "round {round}: no change went through before the kill"
        );
        next = round_acked.last().unwrap() + 1_000;
        acked.extend(round_acked);

        d = ChildDaemon::start_in(dir);
        let zones = d.dir.path().join("zones");
        assert!(
            temp_files(&zones).is_empty(),
            "temp files left after restart: {:?}",
            temp_files(&zones)
        );
        let (status, body) = http(d.http, "GET", "/v1/status", None, None);
        assert_eq!(status, 200);
        let v = json(&body);
        assert_eq!(
            v["zones_failing"], 0,
            "a zone file does not parse after the kill: {v}"
        );
        assert_eq!(v["zones_loaded"], 1, "{v}");
        let token = d.token();
        let (_, body) = http(
            d.http,
            "GET",
            "/v1/zones/crash.test/records?type=TXT",
            Some(&token),
            None,
        );
        let present: std::collections::HashSet<String> = json(&body)
            .as_array()
            .unwrap()
            .iter()
            .map(|set| set["name"].as_str().unwrap().to_string())
            .collect();
        for n in &acked {
            assert!(
                present.contains(&format!("c{n}.crash.test.")),
                "round {round}: acknowledged change {n} is lost"
            );
        }
        // And the DNS side serves them.
        let last = acked.last().unwrap();
        assert_eq!(
            udp(d.dns, &format!("c{last}.crash.test."), RecordType::TXT)
                .answers
                .len(),
            1
        );
    }
    assert!(
        acked.len() >= ROUNDS * 5,
        "only {} changes in all",
        acked.len()
    );
}
