//! DKIM benchmark: signatures per second for a 10 KB message (RSA-2048 and Ed25519, the
//! code the daemon runs for `/v1/dkim/sign`), and RSA-2048 key generation time.
//!
//! Run with `cargo bench --bench dkim`.

use std::time::{Duration, Instant};

use mailzone::dkim::message::{Message, sign};
use mailzone::dkim::{DkimAlgorithm, SigningKey, key};

fn main() {
    let mut body = String::new();
    while body.len() < 10 * 1024 {
        body.push_str(
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n",
        );
    }
    let raw = format!(
        "From: Alice <alice@shop.test>\r\nTo: bob@example.net\r\nSubject: A 10 KB message\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@shop.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}"
    );
    println!("message: {} bytes", raw.len());

    let runs = 10;
    let t = Instant::now();
    let mut rsa = None;
    for _ in 0..runs {
        rsa = Some(key::generate(DkimAlgorithm::Rsa, 2048).unwrap());
    }
    let each = t.elapsed() / runs;
    println!(
        "RSA-2048 key generation: {:.0} ms on average over {runs}",
        each.as_secs_f64() * 1e3
    );

    let ed = key::generate(DkimAlgorithm::Ed25519, 0).unwrap();
    for (name, generated) in [("RSA-2048", rsa.unwrap()), ("Ed25519", ed)] {
        let signing = SigningKey::from_pkcs8(&generated.pkcs8).unwrap();
        let budget = Duration::from_secs(3);
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < budget {
            // Parse and sign, as the API does for each request.
            let message = Message::parse(raw.as_bytes()).unwrap();
            std::hint::black_box(
                sign(&message, "shop.test", "s1", &signing, 1_795_428_000).unwrap(),
            );
            n += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{name}: {:.0} signatures/s (one core), {:.1} µs each",
            n as f64 / secs,
            secs * 1e6 / n as f64
        );
    }
}
