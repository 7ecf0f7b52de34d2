//! Packaging as an operator installs it: the systemd unit's hardening, the container build
//! context and image configuration, and the health command a container health check runs.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_systemd_unit_scores_2_5_or_better_in_systemd_analyze_security() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mailzone.service");
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            // scripts/test installs it; a bare `cargo test` elsewhere may not have it.
            eprintln!("skipped: no systemd-analyze ({e})");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for mailzone.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score: {text}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(score <= 2.5, "exposure {score} > 2.5:\n{text}");
}

#[test]
fn the_systemd_unit_keeps_state_and_config_in_systemd_managed_directories() {
    let unit = repo("deploy/mailzone.service");
    for line in [
        "StateDirectory=mailzone",
        "ConfigurationDirectory=mailzone",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=yes",
        "ExecStart=/usr/local/bin/mailzone serve --config /etc/mailzone/config.yaml",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
    // The production config keeps its state where StateDirectory= puts it.
    let config = mailzone::config::Config::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config.yaml"),
    )
    .unwrap();
    assert!(config.zones_dir.starts_with("/var/lib/mailzone"));
    assert!(config.keys_dir.starts_with("/var/lib/mailzone"));
}

#[test]
fn the_container_build_context_leaves_out_build_output_secrets_state_and_git() {
    let ignore = repo(".containerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["target/", "keys/", "zones/associations/", ".git/"] {
        assert!(rules.contains(&needed), "{needed} not excluded: {rules:?}");
    }
    // docker reads .dockerignore: the same rules.
    assert_eq!(repo(".dockerignore"), ignore);
}

#[test]
fn the_container_image_listens_on_all_addresses_with_one_volume_and_a_health_check() {
    let file = repo("deploy/Containerfile");
    assert!(
        file.lines().any(|l| l.starts_with("HEALTHCHECK")),
        "no HEALTHCHECK"
    );
    assert!(file.contains("\"/usr/local/bin/mailzone\", \"health\""));
    let volumes: Vec<&str> = file.lines().filter(|l| l.starts_with("VOLUME")).collect();
    assert_eq!(volumes, vec![r#"VOLUME ["/var/lib/mailzone"]"#]);
    assert!(file.contains("COPY deploy/container.yaml /etc/mailzone/config.yaml"));
    let config = mailzone::config::Config::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/container.yaml"),
    )
    .unwrap();
    assert!(
        config.http.listen.ip().is_unspecified(),
        "{:?}",
        config.http.listen
    );
    assert!(config.dns.listen.iter().all(|a| a.ip().is_unspecified()));
    assert!(config.zones_dir.starts_with("/var/lib/mailzone"));
    assert!(config.keys_dir.starts_with("/var/lib/mailzone"));
}

fn health(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailzone"))
        .arg("health")
        .args(args)
        .env_remove("MAILZONE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mailzone_health_exits_0_when_ready_and_1_when_not() {
    let d = TestDaemon::example();
    let (ok, out, err) = health(&["--api", &format!("http://{}", d.http)]);
    assert!(ok, "{err}");
    assert!(out.contains("\"ready\":true"), "{out}");
    let broken = TestDaemon::start(&[("bad.test.zone", "garbage\n")]);
    let (ok, _, err) = health(&["--api", &broken.http.to_string()]);
    assert!(!ok);
    assert!(err.contains("503"), "{err}");
    let (ok, out, _) = health(&["--api", &broken.http.to_string(), "--live"]);
    assert!(ok, "alive though not ready");
    assert_eq!(out, "ok\n");
    drop(d);
    let (ok, _, err) = health(&[
        "--api",
        &broken
            .http
            .to_string()
            .replace(&broken.http.port().to_string(), "9"),
    ]);
    assert!(!ok, "nothing listens: {err}");
}
