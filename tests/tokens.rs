//! Scoped API tokens: created and revoked by the admin token, limited to zones (or to the
//! associations of one platform) and to read or write, stored hashed, refused outside their
//! scope and at once when revoked.

mod common;

use common::*;
use serde_json::{Value, json};

const SHOP: &str = "$ORIGIN shop.test.\n$TTL 3600\n@ SOA ns1.provider.example. hostmaster 1 3600 900 1209600 300\n\
    @ NS ns1.provider.example.\n@ A 192.0.2.80\n";

fn daemon() -> TestDaemon {
    TestDaemon::start(&[
        ("example.test.zone", EXAMPLE_ZONE),
        ("shop.test.zone", SHOP),
    ])
}

/// Creates a token with the admin token; returns its JSON (with the clear `token`).
fn create_token(d: &TestDaemon, body: Value) -> Value {
    let (status, text) = api(d.http, "POST", "/v1/tokens", &body);
    assert_eq!(status, 201, "{text}");
    json(&text)
}

fn secret(t: &Value) -> String {
    t["token"].as_str().unwrap().to_string()
}

fn call(d: &TestDaemon, token: &str, method: &str, path: &str, body: Option<Value>) -> u16 {
    let body = body.map(|b| b.to_string());
    http(d.http, method, path, Some(token), body.as_deref()).0
}

fn add_a(name: &str) -> Value {
    json!({"operations": [{"op": "add", "name": name, "type": "A", "records": ["192.0.2.7"]}]})
}

#[test]
fn a_zone_token_changes_its_zone_and_nothing_else() {
    let d = daemon();
    let t = secret(&create_token(
        &d,
        json!({"access": "write", "zones": ["shop.test"], "name": "shop deploy"}),
    ));
    assert_eq!(
        call(
            &d,
            &t,
            "PATCH",
            "/v1/zones/shop.test/records",
            Some(add_a("www"))
        ),
        200
    );
    assert_eq!(
        call(
            &d,
            &t,
            "PATCH",
            "/v1/zones/example.test/records",
            Some(add_a("www"))
        ),
        403
    );
    assert_eq!(
        call(&d, &t, "GET", "/v1/zones/example.test/export", None),
        403
    );
    assert_eq!(call(&d, &t, "DELETE", "/v1/zones/example.test", None), 403);
    let (status, text) = http(d.http, "GET", "/v1/zones", Some(&t), None);
    assert_eq!(status, 200);
    let names: Vec<Value> = json(&text)
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("shop.test.")], "only its zone is listed");
    // Only the admin token manages tokens and reloads.
    assert_eq!(
        call(
            &d,
            &t,
            "POST",
            "/v1/tokens",
            Some(json!({"access": "write"}))
        ),
        403
    );
    assert_eq!(call(&d, &t, "GET", "/v1/tokens", None), 403);
    assert_eq!(call(&d, &t, "POST", "/v1/reload", None), 403);
    // The refused change wrote nothing.
    assert_eq!(
        dig(d.dns, &["+short", "refused.example.test", "A"]).trim(),
        "",
        "unchanged"
    );
}

#[test]
fn a_read_token_reads_and_cannot_write() {
    let d = daemon();
    let t = secret(&create_token(&d, json!({"access": "read"})));
    assert_eq!(
        call(&d, &t, "GET", "/v1/zones/example.test/records", None),
        200
    );
    assert_eq!(call(&d, &t, "GET", "/v1/domains", None), 200);
    assert_eq!(
        call(
            &d,
            &t,
            "PATCH",
            "/v1/zones/shop.test/records",
            Some(add_a("www"))
        ),
        403
    );
    assert_eq!(
        call(
            &d,
            &t,
            "POST",
            "/v1/domains",
            Some(json!({"domain": "shop.test", "platform": "pro1", "mode": "authoritative"}))
        ),
        403
    );
    assert!(
        dig(d.dns, &["+short", "www.shop.test", "A"])
            .trim()
            .is_empty(),
        "nothing written"
    );
}

#[test]
fn a_platform_token_manages_only_that_platforms_associations() {
    let d = daemon();
    let t = secret(&create_token(
        &d,
        json!({"access": "write", "platform": "pro1"}),
    ));
    let associate = |platform: &str| {
        call(
            &d,
            &t,
            "POST",
            "/v1/domains",
            Some(json!({"domain": "shop.test", "platform": platform, "mode": "authoritative"})),
        )
    };
    assert_eq!(associate("pro1"), 201);
    assert_eq!(associate("other"), 403);
    assert_eq!(call(&d, &t, "GET", "/v1/zones/shop.test", None), 403);
    assert_eq!(
        call(
            &d,
            &t,
            "PATCH",
            "/v1/zones/shop.test/records",
            Some(add_a("www"))
        ),
        403
    );
    assert_eq!(call(&d, &t, "GET", "/v1/domains/shop.test", None), 200);
    assert_eq!(
        call(
            &d,
            &t,
            "DELETE",
            "/v1/domains/shop.test?platform=pro1",
            None
        ),
        200
    );
}

#[test]
fn a_revoked_token_is_refused_at_once() {
    let d = daemon();
    let created = create_token(&d, json!({"access": "read"}));
    let t = secret(&created);
    assert_eq!(call(&d, &t, "GET", "/v1/zones", None), 200);
    let id = created["id"].as_str().unwrap();
    let (status, text) = http(
        d.http,
        "DELETE",
        &format!("/v1/tokens/{id}"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 204, "{text}");
    assert_eq!(call(&d, &t, "GET", "/v1/zones", None), 401);
    let (status, _) = http(
        d.http,
        "DELETE",
        &format!("/v1/tokens/{id}"),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 404, "already gone");
}

#[test]
fn tokens_are_stored_hashed_in_a_0600_file_and_survive_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let d = daemon();
    let created = create_token(&d, json!({"access": "read", "zones": ["shop.test"]}));
    let t = secret(&created);
    assert!(created.get("sha256").is_none(), "{created}");
    let file = d.dir.path().join("keys/api-tokens.yaml");
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(!stored.contains(&t), "the clear token is never on disk");
    let digest = ring::digest::digest(&ring::digest::SHA256, t.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert!(stored.contains(&hex), "its SHA-256 is: {stored}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (_, text) = http(d.http, "GET", "/v1/tokens", Some(TOKEN), None);
    assert!(!text.contains(&t) && !text.contains(&hex), "{text}");
    assert_eq!(json(&text)[0]["zones"], json!(["shop.test."]));
    let d = d.restart();
    assert_eq!(call(&d, &t, "GET", "/v1/zones/shop.test", None), 200);
    assert_eq!(call(&d, &t, "GET", "/v1/zones/example.test", None), 403);
}

#[test]
fn bad_token_requests_are_refused_with_the_field() {
    let d = daemon();
    let (status, text) = api(
        d.http,
        "POST",
        "/v1/tokens",
        &json!({"access": "write", "zones": ["shop.test"], "platform": "pro1"}),
    );
    assert_eq!(status, 400, "{text}");
    let (status, text) = api(
        d.http,
        "POST",
        "/v1/tokens",
        &json!({"access": "write", "platform": "nope"}),
    );
    assert_eq!(status, 422, "{text}");
    assert_eq!(json(&text)["error"]["field"], "platform");
    let (status, text) = api(d.http, "POST", "/v1/tokens", &json!({"access": "admin"}));
    assert_eq!(status, 400, "{text}");
    let (status, _) = http(d.http, "GET", "/v1/tokens", None, None);
    assert_eq!(status, 401);
    assert!(!d.dir.path().join("keys/api-tokens.yaml").exists());
}

#[test]
fn status_and_metrics_need_a_token_when_open_reads_is_never() {
    let d = TestDaemon::start_tuned(&[("example.test.zone", EXAMPLE_ZONE)], |c| {
        c.http.open_reads = mailzone::config::OpenReads::Never
    });
    for path in ["/v1/status", "/metrics", "/"] {
        assert_eq!(http(d.http, "GET", path, None, None).0, 401, "{path}");
    }
    let t = secret(&create_token(
        &d,
        json!({"access": "read", "zones": ["example.test"]}),
    ));
    for path in ["/v1/status", "/metrics", "/"] {
        assert_eq!(http(d.http, "GET", path, Some(&t), None).0, 200, "{path}");
    }
    assert_eq!(http(d.http, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(d.http, "GET", "/readyz", None, None).0, 200);
}

#[test]
fn on_loopback_status_and_metrics_are_open_by_default() {
    let d = TestDaemon::example();
    for path in ["/v1/status", "/metrics", "/"] {
        assert_eq!(http(d.http, "GET", path, None, None).0, 200, "{path}");
    }
}

#[test]
fn the_cli_creates_lists_and_revokes_tokens() {
    let d = daemon();
    let cli = |args: &[&str]| -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailzone"))
            .arg("token")
            .args(args)
            .args(["--api", &d.http.to_string(), "--token", TOKEN])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&[
        "create",
        "--access",
        "write",
        "--zone",
        "shop.test",
        "--name",
        "ci",
    ]);
    assert!(ok, "{err}");
    let secret = out.lines().last().unwrap().trim().to_string();
    assert!(secret.starts_with("mzt_"), "{out}");
    assert_eq!(
        call(
            &d,
            &secret,
            "PATCH",
            "/v1/zones/shop.test/records",
            Some(add_a("ci"))
        ),
        200
    );
    let (ok, out, _) = cli(&["list"]);
    assert!(ok);
    assert!(out.contains("write   shop.test.  ci"), "{out}");
    assert!(!out.contains(&secret));
    let id = out
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let (ok, out, err) = cli(&["revoke", &id]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("revoked {id}\n"));
    assert_eq!(call(&d, &secret, "GET", "/v1/zones", None), 401);
}
