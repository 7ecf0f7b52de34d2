//! DNS-01 as an operator runs it: certbot with its RFC 2136 plugin obtains a certificate
//! from a local ACME server (pebble, whose DNS-01 checks ask mailzone), with a TSIG key that
//! may only touch `_acme-challenge` TXT records; the challenge records are gone afterwards.
//! Skipped, visibly, when certbot, its plugin, pebble or openssl is missing (scripts/test
//! installs them).

mod common;

use std::process::{Command, Stdio};

use common::pebble::{Pebble, have};
use common::*;
use mailzone::config::{TsigKeyConfig, UpdatePolicy, ZoneSelection};

const KEY: &str = "acme-key";

fn plugin_installed() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import certbot_dns_rfc2136"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "skipped: python3-certbot-dns-rfc2136 is not installed (scripts/test installs it)"
        );
    }
    ok
}

#[test]
fn certbot_obtains_a_certificate_through_rfc2136_with_a_key_scoped_to_acme_challenge_txt() {
    if !have("certbot", &["--version"])
        || !have("pebble", &["-h"])
        || !have("openssl", &["version"])
        || !plugin_installed()
    {
        return;
    }
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.transfer.keys = vec![TsigKeyConfig {
            name: KEY.into(),
            algorithm: Default::default(),
            update: Some(UpdatePolicy {
                zones: ZoneSelection::List(vec!["example.test.".into()]),
                names: vec!["_acme-challenge".into(), "_acme-challenge.mail".into()],
                types: vec!["TXT".into()],
            }),
        }];
    });
    let work = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(work.path(), d.dns);
    let secret = std::fs::read_to_string(d.dir.path().join(format!("keys/tsig/{KEY}.key")))
        .unwrap()
        .trim()
        .to_string();
    let credentials = work.path().join("rfc2136.ini");
    std::fs::write(
        &credentials,
        format!(
            "dns_rfc2136_server = 127.0.0.1\ndns_rfc2136_port = {}\ndns_rfc2136_name = {KEY}\n\
             dns_rfc2136_secret = {secret}\ndns_rfc2136_algorithm = HMAC-SHA256\n",
            d.dns.port()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("certbot")
        .args([
            "certonly",
            "--non-interactive",
            "--agree-tos",
            "--register-unsafely-without-email",
            "--no-verify-ssl",
            "--server",
            &pebble.directory,
            "--dns-rfc2136",
            "--dns-rfc2136-propagation-seconds",
            "1",
            "-d",
            "example.test",
            "-d",
            "mail.example.test",
        ])
        .arg("--dns-rfc2136-credentials")
        .arg(&credentials)
        .arg("--config-dir")
        .arg(work.path().join("config"))
        .arg("--work-dir")
        .arg(work.path().join("work"))
        .arg("--logs-dir")
        .arg(work.path().join("logs"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{text}\npebble: {}",
        std::fs::read_to_string(work.path().join("pebble.log")).unwrap_or_default()
    );
    let cert = work.path().join("config/live/example.test/fullchain.pem");
    let pem = std::fs::read_to_string(&cert).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
    // The challenges were cleaned up: nothing left in DNS nor in the zone file.
    for name in [
        "_acme-challenge.example.test",
        "_acme-challenge.mail.example.test",
    ] {
        assert_eq!(dig(d.dns, &["+short", name, "TXT"]).trim(), "", "{name}");
    }
    let file = std::fs::read_to_string(d.zones_dir().join("example.test.zone")).unwrap();
    assert!(!file.contains("_acme-challenge"), "{file}");
}
