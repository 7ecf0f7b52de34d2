//! Diagnosis benchmark: 10,000 external domains served by a local authoritative server (a
//! mailzone "world" on 127.0.0.2), diagnosed by a release `mailzone` child process at its
//! start. Prints domains diagnosed per minute, the daemon's peak memory and queries per domain.
//!
//! Run with `cargo bench --bench diagnosis`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailzone::config::Config;
use mailzone::provision::association::{Association, Mode};
use mailzone::provision::records::Families;
use mailzone::server::Daemon;

const DOMAINS: usize = 10_000;

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    mailzone::cli::client::parse_response(&raw)
        .map(|(_, b)| b)
        .unwrap_or_default()
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    // The world: every customer zone, published correctly, plus the platform's zone.
    let world_zones = root.path().join("world");
    std::fs::create_dir(&world_zones).unwrap();
    std::fs::write(
        world_zones.join("mail.example.net.zone"),
        "$ORIGIN mail.example.net.\n$TTL 300\n@ SOA ns h 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.2\nmx TXT \"v=spf1 ip4:198.51.100.0/24 -all\"\n*._report._dmarc TXT \"v=DMARC1\"\n",
    )
    .unwrap();
    let ours = root.path().join("ours");
    std::fs::create_dir_all(ours.join("zones/associations")).unwrap();
    let platform = mailzone::provision::platform::Platform::example();
    for i in 0..DOMAINS {
        let d = format!("shop{i:05}.test.");
        let mut association = Association::new(
            &d,
            "pro1",
            Mode::Authoritative,
            Families::default(),
            false,
            "bench".into(),
        );
        association.applied_platform = Some(platform.clone());
        association.validated = true;
        let set = mailzone::provision::association::Associations::default().with(association);
        std::fs::write(
            ours.join(format!("zones/associations/shop{i:05}.test.yaml")),
            set.domain_yaml(&d).unwrap(),
        )
        .unwrap();
        let name = hickory_proto::rr::Name::from_ascii(&d).unwrap();
        let expected = mailzone::provision::records::expected_records(
            &name,
            &platform,
            &Families::default(),
            Some("bench"),
        )
        .unwrap();
        let mut zone = format!(
            "$ORIGIN {d}\n$TTL 300\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.2\n"
        );
        for e in expected {
            zone.push_str(&e.line);
            zone.push('\n');
        }
        zone = zone.replace("p=none", "p=quarantine");
        std::fs::write(world_zones.join(format!("shop{i:05}.test.zone")), zone).unwrap();
    }
    let mut world = Config {
        zones_dir: world_zones,
        keys_dir: root.path().join("world-keys"),
        ..Config::default()
    };
    world.dns.listen = vec!["127.0.0.2:0".parse().unwrap()];
    world.http.listen = "127.0.0.1:0".parse().unwrap();
    world.http.token = Some("bench-token-0123456789abcdef".into());
    world.diagnosis.resolver = Some("127.0.0.1:9".parse().unwrap());
    world.log.level = "warn".into();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let world = runtime.block_on(Daemon::start(world)).unwrap();
    let ns = world.dns_addrs()[0];

    // The daemon under test, as a release child process.
    let config = format!(
        "zones_dir: {z}\nkeys_dir: {k}\ndns:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"127.0.0.1:0\"\nlog:\n  format: json\n  level: info\ndiagnosis:\n  resolver: \"{ns}\"\n  port: {p}\n  interval_secs: 86400\n",
        z = ours.join("zones").display(),
        k = ours.join("keys").display(),
        p = ns.port()
    );
    std::fs::write(ours.join("c.yaml"), config).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailzone"))
        .args(["serve", "--config"])
        .arg(ours.join("c.yaml"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let http: SocketAddr = loop {
        let line = lines.next().expect("daemon exited").unwrap();
        if line.contains("HTTP listening") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let mut peak_kib = 0u64;
    let done_at = loop {
        std::thread::sleep(Duration::from_millis(250));
        let status: serde_json::Value =
            serde_json::from_str(&get(http, "/v1/status")).unwrap_or_default();
        let done: u64 = status["domains_by_status"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0);
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(v) = s
                .lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        {
            peak_kib = v;
        }
        if done as usize >= DOMAINS {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "only {done} domains diagnosed"
        );
    };
    let status: serde_json::Value = serde_json::from_str(&get(http, "/v1/status")).unwrap();
    let metrics = get(http, "/metrics");
    let queries: f64 = metrics
        .lines()
        .find(|l| l.starts_with("mailzone_diagnosis_queries_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    println!(
        "{DOMAINS} external domains diagnosed in {:.1} s (from exec) = {:.0} domains/minute",
        done_at.as_secs_f64(),
        DOMAINS as f64 * 60.0 / done_at.as_secs_f64()
    );
    println!("results: {}", status["domains_by_status"]);
    println!(
        "peak memory (VmHWM) of the daemon: {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    println!("queries per domain: {:.1}", queries / DOMAINS as f64);
    let _ = child.kill();
    let _ = child.wait();
    runtime.block_on(world.shutdown());
}
