//! Secrets are private and the daemon says so: a token file or keys folder that group or
//! others may read stops the start with the path, the mode and the `chmod` that fixes it; and
//! every file and folder the daemon creates gets its mode explicitly, whatever the umask.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use mailzone::server::Daemon;
use serde_json::json;

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Starts an in-process daemon on `root` without a configured token; returns the start
/// error with its causes, as `main` prints it.
fn start_error(root: &Path) -> String {
    std::fs::create_dir_all(root.join("zones")).unwrap();
    let mut config = test_config(root);
    config.http.token = None;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match runtime.block_on(Daemon::start(config)) {
        Ok(_) => panic!("the daemon started"),
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}

#[test]
fn a_token_file_others_may_read_stops_the_start_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    set_mode(&keys, 0o700);
    let token = keys.join("api-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    set_mode(&token, 0o644);

    let e = start_error(dir.path());
    assert!(e.contains(&token.display().to_string()), "{e}");
    assert!(e.contains("644"), "{e}");
    assert!(e.contains(&format!("chmod 600 {}", token.display())), "{e}");
}

#[test]
fn a_keys_folder_others_may_read_stops_the_start_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    set_mode(&keys, 0o755);

    let e = start_error(dir.path());
    assert!(e.contains(&keys.display().to_string()), "{e}");
    assert!(e.contains("755"), "{e}");
    assert!(e.contains(&format!("chmod 700 {}", keys.display())), "{e}");
}

#[test]
fn under_umask_000_every_file_and_folder_gets_an_explicit_mode() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    let platform = "platforms:\n  - id: p\n    mx: [{host: mx.p.example., priority: 10}]\n    spf: [\"include:p.example\"]\n    dmarc: {policy: none}\n    dkim: {}\n";
    let d = ChildDaemon::start_with_umask(dir, platform, Some("000"));
    let token = d.token();
    let (status, text) = http(
        d.http,
        "POST",
        "/v1/zones",
        Some(&token),
        Some(&json!({"name": "shop.test", "nameservers": ["ns1.provider.example."]}).to_string()),
    );
    assert_eq!(status, 201, "{text}");
    let body = json!({"domain": "shop.test", "platform": "p", "mode": "authoritative", "records": {"dkim": true, "srv": false, "autoconfig": false}});
    let (status, text) = http(
        d.http,
        "POST",
        "/v1/domains",
        Some(&token),
        Some(&body.to_string()),
    );
    assert_eq!(status, 201, "{text}");

    let root = d.dir.path();
    let expected = [
        ("keys", 0o700),
        ("keys/api-token", 0o600),
        ("keys/dkim", 0o700),
        ("keys/dkim/shop.test", 0o700),
        ("zones/associations", 0o755),
        ("zones/associations/shop.test.yaml", 0o644),
        ("zones/shop.test.zone", 0o644),
    ];
    for (path, want) in expected {
        assert_eq!(
            mode(&root.join(path)),
            want,
            "{path}: {:o}",
            mode(&root.join(path))
        );
    }
    let keys: Vec<_> = std::fs::read_dir(root.join("keys/dkim/shop.test"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in keys {
        assert_eq!(mode(&k), 0o600, "{}", k.display());
    }
}
