//! Zone transfers out: the TSIG keys of `transfer.keys` and the forms operators paste into
//! their secondaries (NSD, Knot, BIND); NOTIFY to secondaries (`notify`) and what each
//! secondary has had (`status`).
//!
//! This module owns the key files `<keys_dir>/tsig/<name>.key` (0600 in a 0700 folder,
//! generated when absent, refused when group or others may read them). It must not log or
//! return a secret anywhere but to the caller that asked for it (`mailzone tsig show`), and
//! it knows nothing of the daemon or the answer path.

pub mod acl;
pub mod notify;
pub mod status;
pub mod tsig;
pub mod xfr;

use std::path::{Path, PathBuf};

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::{Config, TsigAlgorithm, TsigKeyConfig};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no TSIG key named {0:?} in transfer.keys")]
    Unknown(String),
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

/// A TSIG key with its secret, as read from (or generated into) its file.
#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    // The secret never reaches a log line, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Folder of the TSIG key files.
pub fn tsig_dir(config: &Config) -> PathBuf {
    config.keys_dir.join("tsig")
}

/// The file holding one key's secret (base64, one line).
pub fn key_path(config: &Config, name: &str) -> PathBuf {
    tsig_dir(config).join(format!("{name}.key"))
}

/// Reads every configured key, generating the missing ones.
pub fn load_or_create_all(config: &Config) -> Result<Vec<TsigKey>, KeyError> {
    config
        .transfer
        .keys
        .iter()
        .map(|k| load_or_create(config, k))
        .collect()
}

/// Reads the key named `name` (generating it when absent).
pub fn load_named(config: &Config, name: &str) -> Result<TsigKey, KeyError> {
    let k = config
        .transfer
        .keys
        .iter()
        .find(|k| k.name == name)
        .ok_or_else(|| KeyError::Unknown(name.to_string()))?;
    load_or_create(config, k)
}

fn load_or_create(config: &Config, key: &TsigKeyConfig) -> Result<TsigKey, KeyError> {
    let path = key_path(config, &key.name);
    let shown = path.display().to_string();
    let fail = |reason: String| KeyError::File {
        file: shown.clone(),
        reason,
    };
    check_private(&config.keys_dir, true)?;
    check_private(&tsig_dir(config), true)?;
    check_private(&path, false)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| fail(format!("not a base64 secret: {e}")))?;
            if secret.len() < 16 {
                return Err(fail("the secret is shorter than 16 bytes".into()));
            }
            return Ok(TsigKey {
                name: key.name.clone(),
                algorithm: key.algorithm,
                secret,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format!("cannot read: {e}"))),
    }
    crate::durable::create_private_dir(&config.keys_dir)
        .and_then(|()| crate::durable::create_private_dir(&tsig_dir(config)))
        .map_err(|e| fail(format!("cannot create the keys folder: {e}")))?;
    let mut secret = vec![0u8; key.algorithm.secret_len()];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| fail("no randomness available".into()))?;
    let text = base64::engine::general_purpose::STANDARD.encode(&secret);
    crate::durable::write_atomically(
        &path,
        format!("{text}\n").as_bytes(),
        crate::durable::PRIVATE_FILE_MODE,
    )
    .map_err(|e| fail(format!("cannot write: {e}")))?;
    tracing::info!(file = %shown, key = %key.name, "TSIG key generated");
    Ok(TsigKey {
        name: key.name.clone(),
        algorithm: key.algorithm,
        secret,
    })
}

/// The shared check of secrets (`durable::check_private`), worded for TSIG keys.
fn check_private(path: &Path, folder: bool) -> Result<(), KeyError> {
    let what = if folder {
        "the keys folder (TSIG secrets)"
    } else {
        "a TSIG secret"
    };
    crate::durable::check_private(path, folder, what).map_err(|reason| KeyError::File {
        file: path.display().to_string(),
        reason,
    })
}

impl TsigKey {
    /// The secret in base64, as every config format takes it.
    pub fn secret_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.secret)
    }

    /// The key in the forms NSD (`nsd.conf`), Knot (`knot.conf`) and BIND (`named.conf`)
    /// take, each ready to paste.
    pub fn config_snippets(&self) -> String {
        let (name, alg, secret) = (&self.name, self.algorithm.name(), self.secret_base64());
        format!(
            "# NSD (nsd.conf)\n\
             key:\n  name: \"{name}\"\n  algorithm: {alg}\n  secret: \"{secret}\"\n\
             \n# Knot (knot.conf)\n\
             key:\n  - id: {name}\n    algorithm: {alg}\n    secret: {secret}\n\
             \n# BIND (named.conf)\n\
             key \"{name}\" {{\n  algorithm {alg};\n  secret \"{secret}\";\n}};\n\
             \n# dig / kdig\n-y {alg}:{name}:{secret}\n"
        )
    }
}
