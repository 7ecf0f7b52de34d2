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
