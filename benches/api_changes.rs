//! Write-path benchmark: changes per second through the HTTP API on one zone and across
//! 1,000 zones, and the time from a 2xx to the new answer being served over UDP.
//!
//! Run with `cargo bench --bench api_changes`. It starts the real daemon in-process on
//! loopback ports, with its zones in a temp folder (so fsync cost is the temp folder's disk).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use mailzone::config::Config;
use mailzone::server::Daemon;

const TOKEN: &str = "bench-token-0123456789abcdef";

fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn add_txt(addr: SocketAddr, zone: &str, name: &str, value: &str) {
    let body = format!(
        r#"{{"operations":[{{"op":"replace","name":"{name}","type":"TXT","records":["{value}"]}}]}}"#
    );
    let status = http(addr, "PATCH", &format!("/v1/zones/{zone}/records"), &body);
    assert_eq!(status, 200, "change refused");
}

/// Queries until the TXT answer carries `value`; returns how long that took.
fn time_until_served(
    socket: &UdpSocket,
    dns: SocketAddr,
    qname: &str,
    value: &str,
    since: Instant,
) -> Duration {
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_str(qname).unwrap(),
        RecordType::TXT,
    ));
    let bytes = q.to_vec().unwrap();
    let mut buf = [0u8; 4096];
    loop {
        socket.send_to(&bytes, dns).unwrap();
        if let Ok(n) = socket.recv(&mut buf)
            && let Ok(m) = Message::from_vec(&buf[..n])
            && m.answers.iter().any(|r| r.data.to_string().contains(value))
        {
            return since.elapsed();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    let mut config = Config {
        zones_dir: dir.path().join("zones"),
        keys_dir: dir.path().join("keys"),
        ..Config::default()
    };
    config.dns.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.http.token = Some(TOKEN.into());
    config.zone_defaults.nameservers = vec![
        "ns1.provider.example.".into(),
        "ns2.provider.example.".into(),
    ];
    config.log.level = "warn".into();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let daemon = runtime.block_on(Daemon::start(config)).unwrap();
    let (dns, api) = (daemon.dns_addrs()[0], daemon.http_addr());

    // 1,000 zones created through the API.
    let t = Instant::now();
    for i in 0..1000 {
        let status = http(
            api,
            "POST",
            "/v1/zones",
            &format!(r#"{{"name":"zone{i:04}.test"}}"#),
        );
        assert_eq!(status, 201);
    }
    let created = t.elapsed();
    println!(
        "zone creations: 1000 in {:.2} s = {:.0}/s",
        created.as_secs_f64(),
        1000.0 / created.as_secs_f64()
    );

    // Changes on one zone, each followed by a UDP query until the new data is served.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let n = 1000;
    let mut visible = Vec::with_capacity(n);
    let t = Instant::now();
    let mut change_time = Duration::ZERO;
    for i in 0..n {
        let value = format!("v{i}");
        let c = Instant::now();
        add_txt(api, "zone0000.test", "bench", &value);
        change_time += c.elapsed();
        let acked = Instant::now();
        visible.push(time_until_served(
            &socket,
            dns,
            "bench.zone0000.test.",
            &value,
            acked,
        ));
    }
    let total = t.elapsed();
    println!(
        "changes on one zone: {n} in {:.2} s = {:.0} changes/s (API round trip alone: {:.0}/s)",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        n as f64 / change_time.as_secs_f64()
    );
    visible.sort();
    println!(
        "2xx -> served over UDP: median {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        percentile(&visible, 0.5).as_secs_f64() * 1e6,
        percentile(&visible, 0.99).as_secs_f64() * 1e6,
        visible.last().unwrap().as_secs_f64() * 1e6
    );

    // Changes spread over the 1,000 zones.
    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        add_txt(
            api,
            &format!("zone{:04}.test", i % 1000),
            "bench",
            &format!("w{i}"),
        );
    }
    let total = t.elapsed();
    println!(
        "changes across 1000 zones: {n} in {:.2} s = {:.0} changes/s",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    runtime.block_on(daemon.shutdown());
}
