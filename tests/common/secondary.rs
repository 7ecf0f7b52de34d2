//! Real secondaries for tests: knotd (Knot 3.2) and nsd (NSD 4.6) as child processes on a
//! loopback address of their own, each with its own temp folder and config, killed when
//! dropped. They follow a primary (mailzone) at `primary`, signing with a TSIG key.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TSIG key as both ends write it.
#[derive(Clone)]
pub struct Key {
    pub name: String,
    pub algorithm: String,
    pub secret: String,
}

pub enum Software {
    Knot,
    Nsd,
}

/// A running secondary. Dropping it kills it.
pub struct Secondary {
    pub software: Software,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
    log: PathBuf,
}

impl Drop for Secondary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free UDP+TCP port on `ip` (bound and released; the secondary binds it next).
pub fn free_port(ip: &str) -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind(format!("{ip}:0")).unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(format!("{ip}:{port}")).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

impl Secondary {
    /// knotd serving `zones` as a secondary of `primary`, listening (and transferring
    /// from) `ip`.
    pub fn knot(ip: &str, primary: SocketAddr, key: &Key, zones: &[&str]) -> Self {
        Self::knot_at(ip, free_port(ip), primary, key, zones)
    }

    /// Like `knot`, on a port chosen beforehand (so the primary can NOTIFY it).
    pub fn knot_at(ip: &str, port: u16, primary: SocketAddr, key: &Key, zones: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let mut conf = format!(
            "server:\n  listen: {ip}@{port}\n  rundir: {d}\n\
             database:\n  storage: {d}\n\
             log:\n  - target: stderr\n    any: info\n\
             key:\n  - id: {name}\n    algorithm: {alg}\n    secret: {secret}\n\
             remote:\n  - id: primary\n    address: {pip}@{pport}\n    key: {name}\n    via: {ip}\n\
             acl:\n  - id: notify_from_primary\n    address: {pip}\n    key: {name}\n    action: notify\n\
             template:\n  - id: default\n    storage: {d}\n    zonefile-sync: -1\n    journal-content: none\n\
             zone:\n",
            name = key.name,
            alg = key.algorithm,
            secret = key.secret,
            pip = primary.ip(),
            pport = primary.port(),
        );
        for z in zones {
            conf.push_str(&format!(
                "  - domain: {z}\n    master: primary\n    acl: notify_from_primary\n"
            ));
        }
        let conf_file = dir.path().join("knot.conf");
        std::fs::write(&conf_file, conf).unwrap();
        let log = dir.path().join("knotd.log");
        let child = Command::new("knotd")
            .arg("-c")
            .arg(&conf_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("knotd is not installed: run scripts/test, which installs it");
        Self {
            software: Software::Knot,
            addr: format!("{ip}:{port}").parse().unwrap(),
            dir,
            child,
            log,
        }
    }

    /// nsd serving `zones` as a secondary of `primary`, listening (and transferring from)
    /// `ip`.
    pub fn nsd(ip: &str, primary: SocketAddr, key: &Key, zones: &[&str]) -> Self {
        Self::nsd_at(ip, free_port(ip), primary, key, zones)
    }

    /// Like `nsd`, on a port chosen beforehand (so the primary can NOTIFY it).
    pub fn nsd_at(ip: &str, port: u16, primary: SocketAddr, key: &Key, zones: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let log = dir.path().join("nsd.log");
        let mut conf = format!(
            "server:\n  ip-address: {ip}\n  port: {port}\n  zonesdir: \"{d}\"\n\
             \x20 xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n\
             \x20 pidfile: \"{d}/nsd.pid\"\n  logfile: \"{log}\"\n  username: \"\"\n  chroot: \"\"\n\
             \x20 database: \"\"\n  verbosity: 2\n  server-count: 1\n  xfrd-reload-timeout: 0\n\
             remote-control:\n  control-enable: no\n\
             key:\n  name: \"{name}\"\n  algorithm: {alg}\n  secret: \"{secret}\"\n",
            log = log.display(),
            name = key.name,
            alg = key.algorithm,
            secret = key.secret,
        );
        for z in zones {
            conf.push_str(&format!(
                "zone:\n  name: \"{z}\"\n  zonefile: \"{z}zone\"\n\
                 \x20 request-xfr: {pip}@{pport} {name}\n  allow-notify: {pip} {name}\n\
                 \x20 outgoing-interface: {ip}\n",
                pip = primary.ip(),
                pport = primary.port(),
                name = key.name,
            ));
        }
        let conf_file = dir.path().join("nsd.conf");
        std::fs::write(&conf_file, conf).unwrap();
        let child = Command::new("nsd")
            .arg("-d")
            .arg("-c")
            .arg(&conf_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("nsd.stderr")).unwrap())
            .spawn()
            .expect("nsd is not installed: run scripts/test, which installs it");
        Self {
            software: Software::Nsd,
            addr: format!("{ip}:{port}").parse().unwrap(),
            dir,
            child,
            log,
        }
    }

    /// Everything the secondary logged so far.
    pub fn log(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Ok(more) = std::fs::read_to_string(self.dir.path().join("nsd.stderr")) {
            text.push_str(&more);
        }
        text
    }

    /// The serial of `zone` the secondary serves, if it answers the SOA authoritatively.
    pub fn serial(&self, zone: &str) -> Option<u32> {
        let out = kdig_short(self.addr, zone, "SOA");
        out.split_whitespace().nth(2)?.parse().ok()
    }

    /// Waits up to `timeout` for the secondary to serve `zone` at `serial`.
    pub fn wait_for_serial(&self, zone: &str, serial: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.serial(zone) == Some(serial) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Waits up to `timeout` for `needle` to appear in the log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// `kdig +short` for one name and type at `server`, answers sorted one per line.
pub fn kdig_short(server: SocketAddr, name: &str, qtype: &str) -> String {
    let out = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+short", "+norec", "+time=2", "+retry=1"])
        .args([name, qtype])
        .output()
        .expect("kdig is not installed");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines.join("\n")
}
