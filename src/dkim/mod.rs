//! DKIM: keys, signatures, and the key records mailzone publishes.
//!
//! [`key`] owns key material (generation, PEM files, loading for signing); [`message`] the
//! signature algorithm itself. Selectors, their states and rotation are part of an
//! association (`provision`), and the daemon's writer drives them.

pub mod key;
pub mod message;

pub use key::{DkimAlgorithm, SigningKey};

/// The TXT value of a key record: `v=DKIM1; k=rsa; p=...`.
pub fn key_record(algorithm: DkimAlgorithm, public: &str) -> String {
    format!("v=DKIM1; k={}; p={public}", algorithm.key_type())
}

/// Whether a served key record carries this public key (compared as bytes, not text).
pub fn same_key(record: &str, public: &str) -> bool {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let served = record
        .split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| k.trim() == "p")
        .map(|(_, v)| v.chars().filter(|c| !c.is_whitespace()).collect::<String>());
    match (
        served.and_then(|p| b64.decode(p).ok()),
        b64.decode(public).ok(),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}
