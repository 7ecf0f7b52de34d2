//! octoDNS as an operator runs it: the `octodns-bind` RFC 2136 provider syncs a YAML zone
//! into mailzone (it reads the zone by AXFR and writes it by UPDATE, both with TSIG), and a
//! second run plans no change. octoDNS comes from PyPI into a venv under `target/` that
//! scripts/test makes; without it the test is skipped, visibly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mailzone::config::{SecondaryConfig, TsigKeyConfig, UpdatePolicy, ZoneSelection};

const KEY: &str = "octodns-key";

/// `target/octodns-venv/bin/octodns-sync`, made by scripts/test.
fn octodns_sync() -> Option<PathBuf> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/octodns-venv/bin/octodns-sync");
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: {} is missing (scripts/test installs octodns and octodns-bind from PyPI there)",
            path.display()
        );
        None
    }
}

const ZONE: &str = "$ORIGIN sync.test.\n$TTL 3600\n@ SOA ns1.sync.test. hostmaster 1 3600 900 1209600 300\n\
    @ NS ns1.sync.test.\nns1 A 192.0.2.1\nold A 192.0.2.99\n";

/// The zone as the operator keeps it in git (root NS left to mailzone).
const YAML: &str = r#"---
'':
  - type: A
    value: 192.0.2.10
  - type: MX
    values:
      - exchange: mail.sync.test.
        preference: 10
  - type: TXT
    value: v=spf1 mx -all
_dmarc:
  type: TXT
  value: v=DMARC1\; p=reject
_submission._tcp:
  type: SRV
  value:
    port: 587
    priority: 0
    target: mail.sync.test.
    weight: 1
mail:
  type: A
  values:
    - 192.0.2.30
    - 192.0.2.31
ns1:
  type: A
  value: 192.0.2.1
www:
  ttl: 300
  type: CNAME
  value: sync.test.
"#;

fn run(sync: &Path, config: &Path, doit: bool) -> String {
    let mut cmd = Command::new(sync);
    cmd.arg(format!("--config-file={}", config.display()));
    if doit {
        cmd.arg("--doit");
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn octodns_syncs_a_yaml_zone_over_rfc2136_and_a_second_run_plans_no_change() {
    let Some(sync) = octodns_sync() else {
        return;
    };
    let d = TestDaemon::start_tuned(&[("sync.test.zone", ZONE)], |c| {
        c.transfer.keys = vec![TsigKeyConfig {
            name: KEY.into(),
            algorithm: Default::default(),
            update: Some(UpdatePolicy {
                zones: ZoneSelection::List(vec!["sync.test.".into()]),
                names: vec![],
                types: vec![],
            }),
        }];
        // octoDNS reads the zone by AXFR with the same key.
        c.transfer.secondaries = vec![SecondaryConfig {
            address: "127.0.0.1".into(),
            key: Some(KEY.into()),
            zones: ZoneSelection::List(vec!["sync.test.".into()]),
        }];
    });
    let secret = std::fs::read_to_string(d.dir.path().join(format!("keys/tsig/{KEY}.key")))
        .unwrap()
        .trim()
        .to_string();
    let work = tempfile::tempdir().unwrap();
    let zones = work.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(zones.join("sync.test.yaml"), YAML).unwrap();
    let config = work.path().join("octodns.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  config:\n    class: octodns.provider.yaml.YamlProvider\n    directory: {}\n\
             \x20 mailzone:\n    class: octodns_bind.Rfc2136Provider\n    host: 127.0.0.1\n    port: {}\n\
             \x20   key_name: {KEY}\n    key_secret: {secret}\n    key_algorithm: hmac-sha256\n\
             zones:\n  sync.test.:\n    sources: [config]\n    targets: [mailzone]\n",
            zones.display(),
            d.dns.port()
        ),
    )
    .unwrap();

    let first = run(&sync, &config, true);
    assert_eq!(
        dig(d.dns, &["+short", "sync.test", "MX"]).trim(),
        "10 mail.sync.test."
    );
    assert_eq!(
        dig(d.dns, &["+short", "old.sync.test", "A"]).trim(),
        "",
        "{first}"
    );
    assert_eq!(
        dig(d.dns, &["+short", "_dmarc.sync.test", "TXT"]).trim(),
        "\"v=DMARC1; p=reject\""
    );
    let mut mail: Vec<String> = dig(d.dns, &["+short", "mail.sync.test", "A"])
        .lines()
        .map(str::to_string)
        .collect();
    mail.sort();
    assert_eq!(mail, ["192.0.2.30", "192.0.2.31"]);
    let file = std::fs::read_to_string(d.zones_dir().join("sync.test.zone")).unwrap();
    assert!(
        file.contains("www.sync.test. 300 IN CNAME sync.test."),
        "{file}"
    );

    let second = run(&sync, &config, false);
    assert!(
        second.contains("No changes were planned"),
        "the second run plans changes:\n{second}"
    );
}
