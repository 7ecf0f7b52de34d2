//! Test support: a real daemon on ephemeral loopback ports, and small real clients (DNS over
//! UDP and TCP, HTTP/1.1, dig) that talk to it over sockets.
#![allow(dead_code)]

pub mod pebble;
pub mod replicas;
pub mod secondary;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;
use std::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use mailzone::config::Config;
use mailzone::server::Daemon;

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// The standard zone most tests use.
pub const EXAMPLE_ZONE: &str = include_str!("../../zones/example.test.zone");

/// A daemon running in its own runtime, with its own zones and keys folders.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub dns: SocketAddr,
    pub http: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    daemon: Option<Daemon>,
}

impl TestDaemon {
    /// Starts a daemon serving the given `(file name, text)` zone files.
    pub fn start(zones: &[(&str, &str)]) -> Self {
        Self::start_tuned(zones, |_| {})
    }

    /// Like `start`, with a chance to change the configuration first.
    pub fn start_tuned(zones: &[(&str, &str)], tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let zones_dir = dir.path().join("zones");
        std::fs::create_dir(&zones_dir).unwrap();
        for (name, text) in zones {
            std::fs::write(zones_dir.join(name), text).unwrap();
        }
        let mut config = test_config(dir.path());
        tune(&mut config);
        Self::run(dir, config)
    }

    /// Starts a daemon on an existing folder with this configuration.
    pub fn run(dir: tempfile::TempDir, config: Config) -> Self {
        Self::run_with_file(dir, config, None)
    }

    /// Like `run`, remembering the config file a reload re-reads platforms from.
    pub fn run_with_file(dir: tempfile::TempDir, config: Config, file: Option<PathBuf>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let daemon = runtime
            .block_on(Daemon::start_with_config_file(config, file))
            .unwrap();
        // The start's DNSSEC pass over zones served from stored signatures runs after the
        // first answer: tests start once it is done, as a start did before it moved there.
        runtime.block_on(daemon.shared().start_pass_done());
        Self {
            dns: daemon.dns_addrs()[0],
            http: daemon.http_addr(),
            dir,
            runtime: Some(runtime),
            daemon: Some(daemon),
        }
    }

    /// Stops this daemon and starts a new one on the same folder and configuration.
    pub fn restart(mut self) -> Self {
        let config = self.daemon().shared().config.clone();
        if let (Some(rt), Some(d)) = (self.runtime.take(), self.daemon.take()) {
            rt.block_on(d.shutdown());
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let mut config = config;
        config.dns.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::run(dir, config)
    }

    pub fn example() -> Self {
        Self::start(&[("example.test.zone", EXAMPLE_ZONE)])
    }

    pub fn zones_dir(&self) -> PathBuf {
        self.dir.path().join("zones")
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let (Some(rt), Some(d)) = (self.runtime.take(), self.daemon.take()) {
            rt.block_on(d.shutdown());
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// A configuration on ephemeral loopback ports inside `root`.
pub fn test_config(root: &Path) -> Config {
    let mut config = Config {
        zones_dir: root.join("zones"),
        keys_dir: root.join("keys"),
        ..Config::default()
    };
    config.dns.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.http.token = Some(TOKEN.to_string());
    // Diagnosis stays on this machine: nothing listens on port 9 (discard) of loopback.
    config.diagnosis.resolver = Some(SocketAddr::from(([127, 0, 0, 1], 9)));
    config.diagnosis.timeout_ms = 200;
    config
}

/// How to send a query.
#[derive(Clone)]
pub struct Ask {
    pub edns: Option<u16>,
    pub edns_version: u8,
    pub rd: bool,
}

impl Default for Ask {
    fn default() -> Self {
        Self {
            edns: Some(1232),
            edns_version: 0,
            rd: false,
        }
    }
}

pub fn query_message(name: &str, qtype: RecordType, ask: &Ask) -> Message {
    let mut m = Message::new(0x5a5a, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = ask.rd;
    m.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    if let Some(size) = ask.edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        e.set_version(ask.edns_version);
        m.set_edns(e);
    }
    m
}

/// Sends raw bytes over UDP and returns the raw reply, or None on timeout.
pub fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    socket.send_to(bytes, server).unwrap();
    let mut buf = vec![0u8; 65535];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => None,
    }
}

/// Sends a prepared query over UDP and decodes the reply.
pub fn exchange(server: SocketAddr, query: &Message) -> Message {
    let reply = udp_raw(server, &query.to_vec().unwrap()).expect("no UDP answer");
    Message::from_vec(&reply).unwrap()
}

pub fn udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp_with(server, name, qtype, &Ask::default())
}

pub fn udp_with(server: SocketAddr, name: &str, qtype: RecordType, ask: &Ask) -> Message {
    let bytes = query_message(name, qtype, ask).to_vec().unwrap();
    let reply = udp_raw(server, &bytes).expect("no UDP answer");
    Message::from_vec(&reply).unwrap()
}

/// Sends raw bytes over TCP (length-prefixed) and returns the raw reply.
pub fn tcp_raw(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    s.write_all(&out).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).unwrap();
    reply
}

pub fn tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let bytes = query_message(name, qtype, &Ask::default())
        .to_vec()
        .unwrap();
    Message::from_vec(&tcp_raw(server, &bytes)).unwrap()
}

/// Runs dig against the daemon; returns stdout.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is not installed: run the README's test command, which installs it");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A minimal HTTP/1.1 exchange; returns (status, body).
pub fn http(
    server: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(server).unwrap();
    // A guard against a hung daemon, not a latency bound: creating an association with
    // 4096-bit RSA keys takes several seconds on a loaded 2-core machine.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    mailzone::cli::client::parse_response(&raw).unwrap_or_else(|e| panic!("bad HTTP reply: {e}"))
}

/// An authorised API call with a JSON body; returns (status, body).
pub fn api(
    server: SocketAddr,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> (u16, String) {
    http(server, method, path, Some(TOKEN), Some(&body.to_string()))
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Zone-file text for a small zone `name` whose apex A record is `ip`.
pub fn small_zone(name: &str, serial: u32, ip: &str) -> String {
    format!(
        "$ORIGIN {name}.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\n@ A {ip}\n"
    )
}

/// A daemon child process with JSON logs; its ports are read from its log lines.
pub struct ChildDaemon {
    pub child: Child,
    pub dns: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    pub lines: std::sync::mpsc::Receiver<String>,
    pub dir: tempfile::TempDir,
}

impl ChildDaemon {
    pub fn start(zones: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        for (n, t) in zones {
            std::fs::write(dir.path().join("zones").join(n), t).unwrap();
        }
        Self::start_in(dir)
    }

    /// Starts a daemon on the zones and keys already in `dir` (a restart).
    pub fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_configured(dir, "")
    }

    /// Starts with `extra` appended to the generated config (e.g. a `platforms:` list).
    pub fn start_configured(dir: tempfile::TempDir, extra: &str) -> Self {
        Self::start_with_umask(dir, extra, None)
    }

    /// Like `start_configured`, the daemon running under `umask` (e.g. "000") if given.
    pub fn start_with_umask(dir: tempfile::TempDir, extra: &str, umask: Option<&str>) -> Self {
        let config = format!(
            "zones_dir: {}\nkeys_dir: {}\ndns:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"127.0.0.1:0\"\nlog:\n  format: json\ndiagnosis:\n  resolver: \"127.0.0.1:9\"\n  timeout_ms: 200\n{extra}",
            dir.path().join("zones").display(),
            dir.path().join("keys").display()
        );
        match umask {
            // `sh -c` runs the daemon as `$0` with its arguments, under the umask.
            Some(mask) => {
                let script = format!("umask {mask} && exec \"$0\" \"$@\"");
                Self::spawn(dir, &config, &["sh", "-c", &script])
            }
            None => Self::spawn(dir, &config, &[]),
        }
    }

    /// Starts with this whole configuration text (it must log in JSON).
    pub fn start_with_config(dir: tempfile::TempDir, config: &str) -> Self {
        Self::spawn(dir, config, &[])
    }

    /// Starts the daemon with this whole configuration text (it must ask for JSON logs),
    /// through `wrapper` if not empty (e.g. `["prlimit", "--nofile=64"]`).
    pub fn spawn(dir: tempfile::TempDir, config: &str, wrapper: &[&str]) -> Self {
        Self::spawn_with(dir, config, wrapper, &[], &[])
    }

    /// Like `spawn`, with more `serve` arguments and environment variables.
    pub fn spawn_with(
        dir: tempfile::TempDir,
        config: &str,
        wrapper: &[&str],
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        std::fs::write(dir.path().join("c.yaml"), config).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_mailzone"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_mailzone")),
        };
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("c.yaml"))
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = ChildDaemon {
            child,
            dns: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            lines,
            dir,
        };
        let dns_line = d.wait_for("DNS listening");
        d.dns = log_field(&dns_line, "addr").parse().unwrap();
        let http_line = d.wait_for("HTTP listening");
        d.http = log_field(&http_line, "addr").parse().unwrap();
        d.wait_for("\"serving\"");
        d
    }

    /// Waits for a log line containing `needle`; every line must be JSON.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {needle}"));
            assert!(
                serde_json::from_str::<serde_json::Value>(&line).is_ok(),
                "not a JSON log line: {line}"
            );
            if line.contains(needle) {
                return line;
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_field(line: &str, field: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["fields"][field].as_str().unwrap_or_default().to_string()
}

impl ChildDaemon {
    /// SIGKILLs the daemon and hands its folder back for a restart.
    pub fn kill_hard(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// The generated API token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("keys/api-token"))
            .unwrap()
            .trim()
            .to_string()
    }
}

/// A TCP connection to `server` from the loopback address `source` (127.0.0.2, …), so that
/// the daemon sees another client address.
pub fn tcp_from(source: &str, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&local.into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// One query over an open TCP connection; `None` if the daemon closed it or did not answer.
pub fn tcp_ask(stream: &mut TcpStream, query: &[u8]) -> Option<Message> {
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = (query.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(query);
    stream.write_all(&out).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut reply).ok()?;
    Message::from_vec(&reply).ok()
}

/// A UDP socket on the loopback address `source`, answers awaited for `timeout`.
pub fn udp_from(source: &str, timeout: Duration) -> UdpSocket {
    let socket = UdpSocket::bind(format!("{source}:0")).unwrap();
    socket.set_read_timeout(Some(timeout)).unwrap();
    socket
}

/// The value of one series (`name{labels}` exactly as exported) in a /metrics body; 0 when absent.
pub fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A zone of more than 64 KB: a 2,000-record A rrset and 2,000 TXT names.
pub fn big_zone() -> String {
    let mut z = String::from(
        "$ORIGIN big.test.\n$TTL 300\n@ SOA ns1 hostmaster 7 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\n",
    );
    for i in 0..2000u32 {
        z.push_str(&format!(
            "pool A 10.{}.{}.{}\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    for i in 0..2000u32 {
        z.push_str(&format!(
            "host-{i} TXT \"record number {i} of the big zone, padded to be longer\"\n"
        ));
    }
    z
}

/// The background jobs planned for `zone` (`example.test.`), in time order.
pub fn zone_jobs(d: &TestDaemon, zone: &str) -> Vec<mailzone::daemon::scheduler::Job> {
    let key = mailzone::daemon::scheduler::AssociationKey::zone(zone);
    d.daemon()
        .shared()
        .scheduler
        .snapshot()
        .into_iter()
        .filter(|(_, k, _)| *k == key)
        .map(|(_, _, j)| j)
        .collect()
}
