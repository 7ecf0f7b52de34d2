//! The API bearer token: from the config, or generated once into `<keys_dir>/api-token`.
//!
//! This module owns creating the keys folder (0700) and the token file (0600), and refusing
//! either when group or others may read it (start-up fails with the path, the mode and the
//! `chmod` that fixes it). The token itself is never logged, only where it lives.

use std::path::PathBuf;

use ring::rand::{SecureRandom, SystemRandom};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

/// The token file's path.
pub fn token_path(config: &Config) -> PathBuf {
    config.keys_dir.join("api-token")
}

/// Returns the configured token, or the one in the keys folder, creating it if needed.
pub fn load_or_create(config: &Config) -> Result<String, TokenError> {
    check_private(&config.keys_dir, true)?;
    if let Some(t) = &config.http.token {
        return Ok(t.clone());
    }
    let path = token_path(config);
    let shown = path.display().to_string();
    let fail = |reason: String| TokenError::File {
        file: shown.clone(),
        reason,
    };
    check_private(&path, false)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() < 16 {
                return Err(fail("the token is shorter than 16 characters".into()));
            }
            tracing::info!(file = %shown, "API token loaded");
            return Ok(token);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format!("cannot read: {e}"))),
    }
    crate::durable::create_private_dir(&config.keys_dir)
        .map_err(|e| fail(format!("cannot create the keys folder: {e}")))?;
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| fail("no randomness available".into()))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::durable::write_atomically(&path, format!("{token}\n").as_bytes(), 0o600)
        .map_err(|e| fail(format!("cannot write: {e}")))?;
    tracing::info!(file = %shown, "API token generated");
    Ok(token)
}

/// Refuses an existing secret (the keys folder, the token file) that group or others may
/// read or enter; a missing one is fine (it is created private).
pub fn check_private(path: &std::path::Path, folder: bool) -> Result<(), TokenError> {
    let what = if folder {
        "the keys folder (API token, DKIM private keys)"
    } else {
        "the API token"
    };
    crate::durable::check_private(path, folder, what).map_err(|reason| TokenError::File {
        file: path.display().to_string(),
        reason,
    })
}
