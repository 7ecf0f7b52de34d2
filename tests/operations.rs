//! HTTP health, status and metrics, the token, and the binary as an operator runs it:
//! config errors, logs, SIGHUP and SIGTERM.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

#[test]
fn healthz_answers_ok() {
    let d = TestDaemon::example();
    let (status, body) = http(d.http, "GET", "/healthz", None, None);
    assert_eq!(status, 200);
    assert_eq!(body.trim(), "ok");
}

#[test]
fn status_lists_each_zone_with_serial_and_record_count_and_the_daemon_version() {
    let d = TestDaemon::example();
    let (status, body) = http(d.http, "GET", "/v1/status", None, None);
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_seconds"].is_u64());
    let z = &v["zones"][0];
    assert_eq!(z["name"], "example.test.");
    assert_eq!(z["serial"], 2026112301u32);
    assert_eq!(z["records"], 30);
    assert!(z["last_error"].is_null());
}

#[test]
fn metrics_count_queries_by_protocol_qtype_and_rcode() {
    let d = TestDaemon::example();
    udp(d.dns, "example.test.", RecordType::MX);
    udp(d.dns, "example.test.", RecordType::MX);
    udp(d.dns, "nope.example.test.", RecordType::A);
    tcp(d.dns, "example.org.", RecordType::A);
    let (status, body) = http(d.http, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"mailzone_dns_queries_total{protocol="udp",qtype="MX",rcode="NOERROR"} 2"#),
        "{body}"
    );
    assert!(
        body.contains(r#"mailzone_dns_queries_total{protocol="udp",qtype="A",rcode="NXDOMAIN"} 1"#)
    );
    assert!(
        body.contains(r#"mailzone_dns_queries_total{protocol="tcp",qtype="A",rcode="REFUSED"} 1"#)
    );
    // Response times are a sample: each loop times its first query, then about one in 64.
    let timed = body
        .lines()
        .find_map(|l| l.strip_prefix(r#"mailzone_dns_response_seconds_count{protocol="udp"} "#))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(matches!(timed, Some(1..=3)), "{body}");
    assert!(body.contains("mailzone_zones_loaded 1"));
    assert!(body.contains("mailzone_reloads_total 0"));
    assert!(body.contains("mailzone_reload_failures_total 0"));
}

#[test]
fn every_query_is_counted_but_only_a_sample_is_timed() {
    let d = TestDaemon::example();
    for _ in 0..300 {
        udp(d.dns, "example.test.", RecordType::A);
    }
    let (_, body) = http(d.http, "GET", "/metrics", None, None);
    // Counted by each UDP loop on its own, added up at scrape time: every query is there.
    assert!(
        body.contains(
            r#"mailzone_dns_queries_total{protocol="udp",qtype="A",rcode="NOERROR"} 300"#
        ),
        "{body}"
    );
    // About one in 64 timed, per loop (each loop's first included).
    let timed = body
        .lines()
        .find_map(|l| l.strip_prefix(r#"mailzone_dns_response_seconds_count{protocol="udp"} "#))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(matches!(timed, Some(2..=20)), "{body}");
}

#[test]
fn reloads_and_reload_failures_are_counted() {
    let d = TestDaemon::example();
    http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    std::fs::write(d.zones_dir().join("bad.test.zone"), "garbage\n").unwrap();
    http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    let (_, body) = http(d.http, "GET", "/metrics", None, None);
    assert!(body.contains("mailzone_reloads_total 2"), "{body}");
    assert!(body.contains("mailzone_reload_failures_total 1"), "{body}");
    assert!(body.contains("mailzone_zones_failing 1"), "{body}");
}

#[test]
fn reload_needs_the_bearer_token() {
    let d = TestDaemon::example();
    let (status, body) = http(d.http, "POST", "/v1/reload", None, None);
    assert_eq!(status, 401);
    assert_eq!(json(&body)["error"]["code"], "unauthorized");
    let (status, _) = http(
        d.http,
        "POST",
        "/v1/reload",
        Some("wrong-token-wrong-token"),
        None,
    );
    assert_eq!(status, 401);
}

#[test]
fn unknown_endpoint_is_a_json_404() {
    let d = TestDaemon::example();
    let (status, body) = http(d.http, "GET", "/v1/nope", None, None);
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["code"], "not_found");
}

// ---- the binary, as a child process ----

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailzone"))
}

#[test]
fn check_config_rejects_an_unknown_key_with_its_path_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(
        &file,
        "dns:\n  listen: [\"127.0.0.1:5300\"]\n  max_udp_payload: 1232\n  colour: blue\n",
    )
    .unwrap();
    let out = bin().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c.yaml: dns.colour: unknown field `colour`"),
        "{err}"
    );
}

#[test]
fn check_config_rejects_a_bad_value_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, "http:\n  listen: localhost\n").unwrap();
    let out = bin().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.listen"));
}

#[test]
fn check_config_prints_the_effective_config() {
    let out = bin().arg("check-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:5300"), "{text}");
    assert!(text.contains("127.0.0.1:8053"), "{text}");
    assert!(text.contains("max_udp_payload: 1232"), "{text}");
}

#[test]
fn serve_refuses_a_bad_config_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, "dns: [1, 2]\n").unwrap();
    let out = bin()
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn start_up_logs_addresses_and_zones_as_json() {
    let d = ChildDaemon::start(&[("one.test.zone", &small_zone("one.test", 1, "192.0.2.1"))]);
    assert_eq!(d.dns.ip().to_string(), "127.0.0.1");
    assert_ne!(d.dns.port(), 0);
    let (status, _) = http(d.http, "GET", "/healthz", None, None);
    assert_eq!(status, 200);
    // The zone was announced before "serving".
    drop(d.lines.try_recv());
    d.signal("TERM");
}

#[test]
fn sighup_reloads_the_zones() {
    let mut d = ChildDaemon::start(&[("one.test.zone", &small_zone("one.test", 1, "192.0.2.1"))]);
    std::fs::write(
        d.dir.path().join("zones/one.test.zone"),
        small_zone("one.test", 2, "192.0.2.77"),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("reload done");
    let m = udp(d.dns, "one.test.", RecordType::A);
    assert_eq!(m.answers[0].data.to_string(), "192.0.2.77");
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut d = ChildDaemon::start(&[("one.test.zone", &small_zone("one.test", 1, "192.0.2.1"))]);
    d.signal("TERM");
    d.wait_for("stopped");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigint_shuts_down_gracefully() {
    let mut d = ChildDaemon::start(&[("one.test.zone", &small_zone("one.test", 1, "192.0.2.1"))]);
    d.signal("INT");
    d.wait_for("stopped");
    let status = d.child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn generated_api_token_file_is_private_and_never_logged() {
    use std::os::unix::fs::PermissionsExt;
    let d = ChildDaemon::start(&[]);
    let path = d.dir.path().join("keys/api-token");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(d.dir.path().join("keys"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    let (status, _) = http(d.http, "POST", "/v1/reload", Some(&token), None);
    assert_eq!(status, 200);
    d.signal("TERM");
    let mut all = String::new();
    while let Ok(line) = d.lines.recv_timeout(Duration::from_secs(5)) {
        all.push_str(&line);
        if line.contains("stopped") {
            break;
        }
    }
    assert!(!all.contains(&token), "the token appeared in the log");
}

#[test]
fn the_configuration_reference_in_the_readme_is_a_valid_config() {
    let readme = include_str!("../README.md");
    let block = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|s| s.split("```yaml").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("a yaml block under ## Configuration");
    let config = mailzone::config::Config::from_yaml(block, "README.md").unwrap();
    assert_eq!(
        config,
        mailzone::config::Config::default(),
        "the README shows the embedded defaults"
    );
}

#[test]
fn the_grafana_dashboard_only_uses_metrics_the_daemon_exports() {
    let dashboard = include_str!("../deploy/grafana-dashboard.json");
    let _: serde_json::Value = serde_json::from_str(dashboard).expect("valid JSON");
    // Every metric name the daemon registers, from the metrics module.
    let source = include_str!("../src/metrics.rs");
    let mut exported = std::collections::BTreeSet::new();
    for quoted in source.split('"').skip(1).step_by(2) {
        if !quoted.is_empty()
            && quoted.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && quoted.contains('_')
        {
            let name = format!("mailzone_{quoted}");
            for suffix in ["", "_bucket", "_count", "_sum"] {
                exported.insert(format!("{name}{suffix}"));
            }
        }
    }
    let mut used = 0;
    for (i, _) in dashboard.match_indices("mailzone_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        assert!(
            exported.contains(&name),
            "the dashboard uses {name}, which the daemon does not export"
        );
        used += 1;
    }
    assert!(used > 10);
}

#[test]
fn serve_takes_other_listen_addresses_from_flags_and_mailzone_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/example.test.zone"), EXAMPLE_ZONE).unwrap();
    let config = format!(
        "zones_dir: {}\nkeys_dir: {}\ndns:\n  listen: [\"127.0.0.1:0\"]\nhttp:\n  listen: \"127.0.0.1:0\"\nlog:\n  format: json\n",
        dir.path().join("zones").display(),
        dir.path().join("keys").display()
    );
    let d = ChildDaemon::spawn_with(
        dir,
        &config,
        &[],
        &["--dns-listen", "127.0.0.5:0"],
        &[("MAILZONE_HTTP_LISTEN", "127.0.0.6:0")],
    );
    assert_eq!(
        d.dns.ip().to_string(),
        "127.0.0.5",
        "the flag replaces dns.listen"
    );
    assert_eq!(
        d.http.ip().to_string(),
        "127.0.0.6",
        "MAILZONE_HTTP_LISTEN replaces http.listen"
    );
    assert_eq!(udp(d.dns, "example.test.", RecordType::MX).answers.len(), 2);
    let (status, _) = http(d.http, "GET", "/healthz", None, None);
    assert_eq!(status, 200);
}

#[test]
fn readyz_is_200_when_listeners_zones_and_writer_are_ready() {
    let d = TestDaemon::example();
    let (status, body) = http(d.http, "GET", "/readyz", None, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"ready": true, "problems": []})
    );
}

#[test]
fn readyz_is_503_naming_a_zone_file_that_is_not_served_while_healthz_stays_ok() {
    let d = TestDaemon::start(&[
        ("example.test.zone", EXAMPLE_ZONE),
        ("broken.test.zone", "$ORIGIN broken.test.\n@ SOA oops\n"),
    ]);
    let (status, body) = http(d.http, "GET", "/readyz", None, None);
    assert_eq!(status, 503, "{body}");
    let v = json(&body);
    assert_eq!(v["ready"], false);
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("zone broken.test. is not served"),
        "{v}"
    );
    assert_eq!(http(d.http, "GET", "/healthz", None, None).0, 200);
    // Fixed and reloaded: ready.
    std::fs::write(
        d.zones_dir().join("broken.test.zone"),
        small_zone("broken.test", 1, "192.0.2.9"),
    )
    .unwrap();
    let (status, _) = http(d.http, "POST", "/v1/reload", Some(TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!(http(d.http, "GET", "/readyz", None, None).0, 200);
}

#[test]
fn readyz_is_503_while_the_writer_is_stuck() {
    let d = TestDaemon::example();
    let shared = d.daemon().shared().clone();
    let held = shared.writer_lock().try_lock().unwrap();
    let started = Instant::now();
    let (status, body) = http(d.http, "GET", "/readyz", None, None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("writer"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(held);
}
