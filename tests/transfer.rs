//! Zone transfers out, as far as they exist: the `transfer:` configuration, TSIG key files
//! and `mailzone tsig show`, checked by BIND's own config parser; unlisted clients stay REFUSED (transfers: tests/xfr.rs).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{EXAMPLE_ZONE, TestDaemon, dig};

const CONFIG: &str = "\
transfer:
  keys:
    - {name: xfr-ns2}
    - {name: xfr-big, algorithm: hmac-sha512}
  secondaries:
    - {address: \"127.0.0.2\", key: xfr-ns2, zones: all}
    - {address: \"127.0.0.3:5353\", zones: [\"example.test.\"]}
";

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let file = dir.join("c.yaml");
    std::fs::write(
        &file,
        format!("keys_dir: {}\n{extra}", dir.join("keys").display()),
    )
    .unwrap();
    file
}

fn tsig_show(config: &Path, name: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailzone"))
        .args(["tsig", "show", name, "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn tsig_show_generates_a_private_key_once_and_prints_it_for_nsd_knot_and_bind() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), CONFIG);
    let first = tsig_show(&config, "xfr-ns2");
    assert!(first.status.success(), "{first:?}");
    let key_file = dir.path().join("keys/tsig/xfr-ns2.key");
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&dir.path().join("keys/tsig")), 0o700);
    let secret = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&secret)
        .unwrap();
    assert_eq!(raw.len(), 32, "hmac-sha256 gets a 256-bit secret");
    let out = String::from_utf8(first.stdout).unwrap();
    assert!(
        out.contains(&format!("  secret: \"{secret}\"")),
        "NSD form: {out}"
    );
    assert!(
        out.contains(&format!("    secret: {secret}")),
        "Knot form: {out}"
    );
    assert!(
        out.contains(&format!("  secret \"{secret}\";")),
        "BIND form: {out}"
    );
    assert!(
        out.contains(&format!("-y hmac-sha256:xfr-ns2:{secret}")),
        "{out}"
    );
    // A second run reads the same key rather than making a new one.
    let second = tsig_show(&config, "xfr-ns2");
    assert_eq!(String::from_utf8(second.stdout).unwrap(), out);
}

#[test]
fn the_bind_form_of_tsig_show_passes_named_checkconf() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), CONFIG);
    for name in ["xfr-ns2", "xfr-big"] {
        let out = tsig_show(&config, name);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let bind = text
            .split("# BIND (named.conf)\n")
            .nth(1)
            .and_then(|s| s.split("\n\n").next())
            .unwrap();
        let conf = dir.path().join(format!("{name}.conf"));
        std::fs::write(&conf, format!("{bind}\n")).unwrap();
        let check = Command::new("named-checkconf")
            .arg(&conf)
            .output()
            .expect("named-checkconf is not installed: run the README's test command");
        assert!(
            check.status.success(),
            "named-checkconf refused {bind}: {check:?}"
        );
    }
}

#[test]
fn hmac_sha512_keys_get_a_512_bit_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), CONFIG);
    let out = tsig_show(&config, "xfr-big");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("algorithm: hmac-sha512"), "{text}");
    let secret = std::fs::read_to_string(dir.path().join("keys/tsig/xfr-big.key")).unwrap();
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(secret.trim())
        .unwrap();
    assert_eq!(raw.len(), 64);
}

#[test]
fn a_group_readable_tsig_key_is_refused_with_the_chmod_that_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), CONFIG);
    assert!(tsig_show(&config, "xfr-ns2").status.success());
    let key_file = dir.path().join("keys/tsig/xfr-ns2.key");
    let before = std::fs::read(&key_file).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = tsig_show(&config, "xfr-ns2");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no secret printed");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains("xfr-ns2.key"), "{err}");
    assert_eq!(std::fs::read(&key_file).unwrap(), before, "the key is kept");
}

#[test]
fn tsig_show_of_a_key_not_configured_fails_without_creating_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), CONFIG);
    let out = tsig_show(&config, "nobody");
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("\"nobody\"")
    );
    assert!(!dir.path().join("keys/tsig/nobody.key").exists());
}

#[test]
fn a_secondary_naming_an_unknown_key_is_refused_with_its_path() {
    let text =
        "transfer:\n  keys: [{name: a}]\n  secondaries:\n    - {address: \"127.0.0.2\", key: b}\n";
    let err = mailzone::config::Config::from_yaml(text, "c.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("transfer.secondaries[0].key"), "{err}");
}

#[test]
fn bad_transfer_entries_are_refused_with_their_path() {
    for (text, path) in [
        (
            "transfer:\n  secondaries: [{address: \"ns2.example\"}]\n",
            "transfer.secondaries[0].address",
        ),
        (
            "transfer:\n  secondaries: [{address: \"127.0.0.2\", zones: [\"example.test\"]}]\n",
            "transfer.secondaries[0].zones[0]",
        ),
        (
            "transfer:\n  secondaries: [{address: \"127.0.0.2\", zones: some}]\n",
            "transfer.secondaries[0].zones",
        ),
        (
            "transfer:\n  keys: [{name: \"../etc\"}]\n",
            "transfer.keys[0].name",
        ),
        (
            "transfer:\n  keys: [{name: a}, {name: a}]\n",
            "transfer.keys[1].name",
        ),
        (
            "transfer:\n  keys: [{name: a, algorithm: hmac-md5}]\n",
            "transfer.keys[0].algorithm",
        ),
    ] {
        let err = mailzone::config::Config::from_yaml(text, "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains(path), "{text}: {err}");
    }
}

#[test]
fn a_transfer_configuration_round_trips_through_yaml() {
    let config = mailzone::config::Config::from_yaml(CONFIG, "c.yaml").unwrap();
    let again = mailzone::config::Config::from_yaml(&config.to_yaml_redacted(), "again").unwrap();
    assert_eq!(config, again);
    assert_eq!(config.transfer.secondaries.len(), 2);
}

#[test]
fn the_daemon_generates_configured_keys_at_start_and_axfr_stays_refused() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.transfer = mailzone::config::Config::from_yaml(CONFIG, "c.yaml")
            .unwrap()
            .transfer;
    });
    let key_file = d.dir.path().join("keys/tsig/xfr-ns2.key");
    assert_eq!(mode(&key_file), 0o600, "generated at start");
    let out = dig(d.dns, &["example.test.", "AXFR"]);
    assert!(
        out.contains("Transfer failed") || out.contains("REFUSED"),
        "{out}"
    );
    assert!(!out.contains("IN\tSOA"), "no record is sent: {out}");
}
