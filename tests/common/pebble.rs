//! pebble, the ACME test server (Debian package), on free loopback ports, its DNS-01
//! checks sent to a mailzone: used by certbot's test (tests/acme.rs), mailzone's own ACME
//! client (tests/acme_issue.rs, tests/acme_http01.rs — whose HTTP-01 checks go to a given
//! port) and bench/acme.sh's Rust side.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use super::secondary::free_port;
use super::{TestDaemon, api, json};

/// Whether `tool` runs; says so visibly when it does not.
pub fn have(tool: &str, probe: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("skipped: {tool} is not installed (scripts/test installs it)");
    }
    ok
}

/// Whether pebble and openssl (for its test certificate) are there.
pub fn available() -> bool {
    have("pebble", &["-h"]) && have("openssl", &["version"])
}

/// pebble on a free loopback port, its DNS-01 checks sent to `dns`; killed when dropped.
pub struct Pebble {
    child: Child,
    /// The ACME directory URL.
    pub directory: String,
    /// Its management port (`/roots/0`: the root issuing certificates chain to).
    pub management: u16,
    /// The CA of its HTTPS listeners' certificate (trust it to talk to pebble).
    pub tls_cert: PathBuf,
    log: PathBuf,
    dir: PathBuf,
    dns: std::net::SocketAddr,
    port: u16,
}

fn spawn(dir: &Path, dns: std::net::SocketAddr, port: u16, log_path: &Path) -> Child {
    let log = std::fs::File::create(log_path).unwrap();
    let child = Command::new("pebble")
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .args(["-dnsserver", &dns.to_string()])
        // No random waits before validating, no random nonce rejections. Validation
        // itself is real: PEBBLE_VA_ALWAYS_VALID is never set.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        // Every order proves control again (no authorization reused from an earlier one).
        .env("PEBBLE_AUTHZREUSE", "0")
        .env_remove("PEBBLE_VA_ALWAYS_VALID")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pebble did not start: {}",
            std::fs::read_to_string(log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    pub fn start(dir: &Path, dns: std::net::SocketAddr) -> Self {
        Self::start_with_http_port(dir, dns, free_port("127.0.0.1"))
    }

    /// Like `start`, its HTTP-01 checks fetching from `http_port` of the address the name
    /// resolves to (through `dns`).
    pub fn start_with_http_port(dir: &Path, dns: std::net::SocketAddr, http_port: u16) -> Self {
        // Debian's pebble ships no test certificate: a CA and a leaf for 127.0.0.1 made
        // here (webpki refuses a CA certificate as the server's own, so not one self-signed).
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-days",
                    "2",
                    "-subj",
                    "/CN=pebble test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "key.pem",
                    "-out",
                    "leaf.csr",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "1",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ]);
        let port = free_port("127.0.0.1");
        let management = free_port("127.0.0.1");
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port("127.0.0.1"),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let log_path = dir.join("pebble.log");
        let child = spawn(dir, dns, port, &log_path);
        Self {
            child,
            directory: format!("https://127.0.0.1:{port}/dir"),
            management,
            tls_cert: dir.join("ca.pem"),
            log: log_path,
            dir: dir.to_path_buf(),
            dns,
            port,
        }
    }

    /// Stops pebble and starts it again on the same ports: a new CA that knows no account.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.dir, self.dns, self.port, &self.log);
    }

    /// What pebble logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The root its certificates chain to, in PEM (fetched from the management port,
    /// trusting pebble's own TLS certificate).
    pub fn issuing_root_pem(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&self.tls_cert)
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "{out:?}");
        let pem = String::from_utf8(out.stdout).unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
        pem
    }
}

/// `domain`'s entry of `certificates` in `/v1/status` (null when there is none).
pub fn certificate_status(d: &TestDaemon, domain: &str) -> Value {
    let (status, body) = api(d.http, "GET", "/v1/status", &Value::Null);
    assert_eq!(status, 200, "{body}");
    json(&body)["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["domain"] == domain)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits (at most 90 s) until `domain`'s certificate status satisfies `done`; the failure
/// message carries pebble's log.
pub fn wait_certificate(
    d: &TestDaemon,
    domain: &str,
    pebble: Option<&Pebble>,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let s = certificate_status(d, domain);
        if done(&s) {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "certificate status: {s}\npebble: {}",
            pebble.map(Pebble::log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A file's permission bits.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// What the HTTPS listener serves for `sni`, verified against `root_pem`: the leaf's serial
/// (hex) and DNS names, and the status line of a GET of the MTA-STS policy.
pub fn served(addr: SocketAddr, sni: &str, root_pem: &str) -> (String, Vec<String>, String) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, s);
    stream
        .write_all(
            format!(
                "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => panic!("{sni}: {e}"),
    }
    let der = stream.conn.peer_certificates().unwrap()[0].clone();
    let cert = webpki::EndEntityCert::try_from(&der).unwrap();
    let serial: String = cert.serial().iter().map(|b| format!("{b:02x}")).collect();
    let names = cert.valid_dns_names().map(str::to_string).collect();
    let text = String::from_utf8_lossy(&out);
    (serial, names, text.lines().next().unwrap_or("").to_string())
}
