//! Association benchmark: associations per second through the API on 10,000 hosted zones,
//! and the time from the 2xx to the new MX answer being served over UDP.
//!
//! Run with `cargo bench --bench associations`. The zones are written as files before the
//! daemon starts; every association then goes through the API and the single writer
//! (association file and zone file written durably, snapshot published).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use mailzone::config::Config;
use mailzone::server::Daemon;

const TOKEN: &str = "bench-token-0123456789abcdef";
const DOMAINS: usize = 10_000;

fn post(addr: SocketAddr, path: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
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

/// Queries MX until the platform's MX set is served; returns how long that took.
fn until_mx_served(socket: &UdpSocket, dns: SocketAddr, domain: &str, since: Instant) -> Duration {
    let mut q = Message::new(9, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_str(domain).unwrap(),
        RecordType::MX,
    ));
    let bytes = q.to_vec().unwrap();
    let mut buf = [0u8; 4096];
    loop {
        socket.send_to(&bytes, dns).unwrap();
        if let Ok(n) = socket.recv(&mut buf)
            && let Ok(m) = Message::from_vec(&buf[..n])
            && m.answers.len() == 5
        {
            return since.elapsed();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    for i in 0..DOMAINS {
        let z = format!("shop{i:05}.test");
        std::fs::write(
            zones.join(format!("{z}.zone")),
            format!("$ORIGIN {z}.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n@ NS ns1.provider.example.\n@ NS ns2.provider.example.\n@ A 192.0.2.80\nwww CNAME @\n"),
        )
        .unwrap();
    }
    let mut config = Config {
        zones_dir: zones,
        keys_dir: dir.path().join("keys"),
        ..Config::default()
    };
    config.dns.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.http.token = Some(TOKEN.into());
    // Diagnosis stays on loopback (nothing listens on port 9).
    config.diagnosis.resolver = Some(SocketAddr::from(([127, 0, 0, 1], 9)));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let t = Instant::now();
    let daemon = runtime.block_on(Daemon::start(config)).unwrap();
    println!(
        "start-up with {DOMAINS} zones: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let (dns, api) = (daemon.dns_addrs()[0], daemon.http_addr());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let mut visible = Vec::with_capacity(DOMAINS);
    let mut in_api = Duration::ZERO;
    let t = Instant::now();
    for i in 0..DOMAINS {
        let domain = format!("shop{i:05}.test");
        let body = format!(r#"{{"domain":"{domain}","platform":"pro1","mode":"authoritative"}}"#);
        let c = Instant::now();
        assert_eq!(
            post(api, "/v1/domains", &body),
            201,
            "association of {domain} refused"
        );
        in_api += c.elapsed();
        let acked = Instant::now();
        visible.push(until_mx_served(&socket, dns, &format!("{domain}."), acked));
    }
    let total = t.elapsed();
    println!(
        "associations on hosted zones: {DOMAINS} in {:.1} s = {:.0}/s (API round trip alone: {:.0}/s)",
        total.as_secs_f64(),
        DOMAINS as f64 / total.as_secs_f64(),
        DOMAINS as f64 / in_api.as_secs_f64()
    );
    visible.sort();
    println!(
        "2xx -> MX served over UDP: median {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        percentile(&visible, 0.5).as_secs_f64() * 1e6,
        percentile(&visible, 0.99).as_secs_f64() * 1e6,
        visible.last().unwrap().as_secs_f64() * 1e6
    );
    runtime.block_on(daemon.shutdown());
}
