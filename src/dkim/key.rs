//! DKIM keys: generation, PEM files, and the public key as published.
//!
//! This module owns key material. RSA keys are generated with the `rsa` crate (ring cannot
//! generate them) and Ed25519 keys with ring; both are stored as PKCS#8 PEM, mode 0600, in
//! folders of mode 0700, written atomically and never over an existing file; signing loads
//! them into ring. A key file readable by group or others is refused. Private keys never
//! leave this module except as ring key pairs.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde::{Deserialize, Serialize};

/// A DKIM signing algorithm (RFC 6376, RFC 8463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

impl DkimAlgorithm {
    /// The `k=` tag of the key record.
    pub fn key_type(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        }
    }

    /// The `a=` tag of a signature.
    pub fn signature_algorithm(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa => "rsa-sha256",
            DkimAlgorithm::Ed25519 => "ed25519-sha256",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("RSA keys must be 2048, 3072 or 4096 bits, not {0}")]
    RsaSize(usize),
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// A freshly generated key: its PKCS#8 DER and the `p=` value to publish.
pub struct GeneratedKey {
    pub pkcs8: Vec<u8>,
    /// Base64 of the SubjectPublicKeyInfo (RSA) or of the raw 32-byte key (Ed25519).
    pub public: String,
}

/// Generates a key. RSA generation takes around 100 ms to a few seconds: call it on a
/// blocking thread.
pub fn generate(algorithm: DkimAlgorithm, rsa_bits: usize) -> Result<GeneratedKey, KeyError> {
    match algorithm {
        DkimAlgorithm::Rsa => {
            use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
            if ![2048, 3072, 4096].contains(&rsa_bits) {
                return Err(KeyError::RsaSize(rsa_bits));
            }
            let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, rsa_bits)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let pkcs8 = private
                .to_pkcs8_der()
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let spki = private
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            Ok(GeneratedKey {
                pkcs8: pkcs8.as_bytes().to_vec(),
                public: B64.encode(spki.as_bytes()),
            })
        }
        DkimAlgorithm::Ed25519 => {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| KeyError::Generate("no randomness".into()))?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            Ok(GeneratedKey {
                pkcs8: doc.as_ref().to_vec(),
                public: B64.encode(pair.public_key().as_ref()),
            })
        }
    }
}

/// PKCS#8 DER as a `PRIVATE KEY` PEM block.
pub fn to_pem(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// The DER inside a `PRIVATE KEY` PEM block.
pub fn from_pem(text: &str) -> Result<Vec<u8>, String> {
    let body: String = text
        .lines()
        .skip_while(|l| l.trim() != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| l.trim() != "-----END PRIVATE KEY-----")
        .map(str::trim)
        .collect();
    if body.is_empty() {
        return Err("no PRIVATE KEY PEM block".into());
    }
    B64.decode(body)
        .map_err(|e| format!("bad base64 in the PEM block: {e}"))
}

/// Writes a new private key file: 0600, folders 0700, atomically, never over an existing
/// file (a key is never replaced silently).
pub fn write_new(path: &Path, pkcs8: &[u8]) -> Result<(), KeyError> {
    let shown = path.display().to_string();
    let fail = |reason: String| KeyError::File {
        file: shown.clone(),
        reason,
    };
    if path.exists() {
        return Err(fail(
            "a key file already exists there; it is not replaced".into(),
        ));
    }
    if let Some(dir) = path.parent() {
        crate::durable::create_private_dir(dir)
            .map_err(|e| fail(format!("cannot create the folder: {e}")))?;
    }
    crate::durable::write_atomically(path, to_pem(pkcs8).as_bytes(), 0o600)
        .map_err(|e| fail(format!("cannot write: {e}")))
}

/// A key ready to sign.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl SigningKey {
    pub fn algorithm(&self) -> DkimAlgorithm {
        match self {
            SigningKey::Rsa(_) => DkimAlgorithm::Rsa,
            SigningKey::Ed25519(_) => DkimAlgorithm::Ed25519,
        }
    }

    /// Parses PKCS#8 DER (RSA or Ed25519).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            if k.public().modulus_len() * 8 < 2048 {
                return Err("RSA keys below 2048 bits are refused".into());
            }
            return Ok(SigningKey::Rsa(k));
        }
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(SigningKey::Ed25519)
            .map_err(|_| "not an RSA or Ed25519 PKCS#8 private key".to_string())
    }

    /// Loads a key file, refusing one that group or others may read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        check_file(path)?;
        let fail = |reason: String| KeyError::File {
            file: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let der = from_pem(&text).map_err(fail)?;
        Self::from_pkcs8(&der).map_err(fail)
    }
}

/// What identifies a key file's content without reading it: modification time and length.
pub type FileStamp = (Option<std::time::SystemTime>, u64);

/// Checks a key file exists and that only its owner may read it; returns its stamp.
pub fn check_file(path: &Path) -> Result<FileStamp, KeyError> {
    let fail = |reason: String| KeyError::File {
        file: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "mode {mode:o} lets others read the private key; it must be 0600"
            )));
        }
    }
    Ok((meta.modified().ok(), meta.len()))
}

/// Where a selector's key lives under the keys folder.
pub fn key_path(keys_dir: &Path, domain: &str, selector: &str) -> PathBuf {
    keys_dir
        .join("dkim")
        .join(domain.trim_end_matches('.'))
        .join(format!("{selector}.pem"))
}
