//! Scoped API tokens: besides the admin token, tokens limited to read or write and to some
//! zones (or to the associations of one platform), created and revoked by the admin.
//!
//! This module owns the token store `<keys_dir>/api-tokens.yaml` (0600, written whole and
//! atomically through [`crate::durable`]): only the SHA-256 of each token is kept, the clear
//! token is returned once, at creation. It owns deciding whether a token may do something
//! ([`Grant`]). It must not parse HTTP, nor ever log or return a token or its hash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// What a token may do with what is in its scope. Write includes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

/// A scoped token as stored (its hash) and shown (never the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopedToken {
    /// Public handle, to list and revoke.
    pub id: String,
    /// A label for humans.
    #[serde(default)]
    pub name: String,
    pub access: Access,
    /// Absolute, lower-case zone names: the token reaches these zones, the names below
    /// them and the associations of domains in them. Empty with no platform: everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Only the associations of this platform (and no zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub created_at: u64,
    /// Hex SHA-256 of the token; never serialised into API answers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}

impl ScopedToken {
    /// The token as the API shows it (without its hash).
    pub fn shown(&self) -> ScopedToken {
        ScopedToken {
            sha256: String::new(),
            ..self.clone()
        }
    }
}

/// Who is calling, once its token is known.
#[derive(Debug, Clone)]
pub enum Grant {
    Admin,
    Scoped(Arc<ScopedToken>),
}

/// What a call touches.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Token management, reload: the admin token only.
    Admin,
    /// Something of no zone in particular (a list, to be filtered; the status page).
    Any,
    /// A zone, or a name in it.
    Zone(&'a Name),
    /// An association: its domain and platform.
    Association(&'a Name, &'a str),
}

impl Grant {
    /// Whether this caller may do `access` on `target`.
    pub fn allows(&self, access: Access, target: Target<'_>) -> bool {
        let token = match self {
            Grant::Admin => return true,
            Grant::Scoped(t) => t,
        };
        if token.access < access {
            return false;
        }
        match target {
            Target::Admin => false,
            Target::Any => true,
            Target::Zone(name) => token.platform.is_none() && token.covers(name),
            Target::Association(domain, platform) => match &token.platform {
                Some(p) => p == platform,
                None => token.covers(domain),
            },
        }
    }

    /// Whether this caller sees `zone` in lists.
    pub fn sees_zone(&self, zone: &Name) -> bool {
        self.allows(Access::Read, Target::Zone(zone))
    }

    /// Whether this caller sees the association in lists.
    pub fn sees_association(&self, domain: &Name, platform: &str) -> bool {
        self.allows(Access::Read, Target::Association(domain, platform))
    }
}

impl ScopedToken {
    /// Whether `name` is one of the token's zones or below one (no zones: all).
    fn covers(&self, name: &Name) -> bool {
        if self.zones.is_empty() {
            return true;
        }
        self.zones.iter().any(|z| {
            Name::from_ascii(z)
                .map(|z| z.zone_of(name))
                .unwrap_or(false)
        })
    }
}

/// Why a token could not be created, revoked or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error("{0}")]
    Invalid(String),
    #[error("no token {0}")]
    NotFound(String),
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default)]
    tokens: Vec<ScopedToken>,
}

/// The scoped tokens: a lock-free snapshot for checks, one writer for changes.
pub struct TokenStore {
    file: PathBuf,
    by_hash: ArcSwap<HashMap<[u8; 32], Arc<ScopedToken>>>,
    writer: tokio::sync::Mutex<()>,
}

/// The store's file.
pub fn store_path(config: &Config) -> PathBuf {
    config.keys_dir.join("api-tokens.yaml")
}

fn sha256(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn random_hex(len: usize) -> Result<String, TokenStoreError> {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenStoreError::Invalid("no randomness available".into()))?;
    Ok(hex(&bytes))
}

impl TokenStore {
    /// An empty store kept in `<keys_dir>/api-tokens.yaml`; [`TokenStore::load_file`] reads it.
    pub fn new(config: &Config) -> Self {
        Self {
            file: store_path(config),
            by_hash: ArcSwap::from_pointee(HashMap::new()),
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads the store's file (none yet: no scoped token). A file group or others may read,
    /// or one that does not parse, is refused with its path.
    pub fn load_file(&self) -> Result<usize, TokenStoreError> {
        let shown = self.file.display().to_string();
        let fail = |reason: String| TokenStoreError::File {
            file: shown.clone(),
            reason,
        };
        crate::durable::check_private(&self.file, false, "the API token hashes").map_err(&fail)?;
        let stored = match std::fs::read_to_string(&self.file) {
            Ok(text) => {
                serde_yaml::from_str::<StoreFile>(&text).map_err(|e| fail(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreFile::default(),
            Err(e) => return Err(fail(format!("cannot read: {e}"))),
        };
        let mut by_hash = HashMap::new();
        for t in stored.tokens {
            let hash = unhex(&t.sha256)
                .ok_or_else(|| fail(format!("token {}: sha256 is not 64 hex digits", t.id)))?;
            by_hash.insert(hash, Arc::new(t));
        }
        let count = by_hash.len();
        self.by_hash.store(Arc::new(by_hash));
        Ok(count)
    }

    /// The scoped token `given` is, if any. Looked up by its SHA-256: what a lookup's timing
    /// could tell is about the hash, never the token.
    pub fn find(&self, given: &str) -> Option<Arc<ScopedToken>> {
        self.by_hash.load().get(&sha256(given)).cloned()
    }

    /// Every token, by id, as the API shows them.
    pub fn list(&self) -> Vec<ScopedToken> {
        let mut all: Vec<ScopedToken> = self.by_hash.load().values().map(|t| t.shown()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Creates a token; returns it as shown and the clear token (the only time it exists).
    pub async fn create(
        &self,
        name: String,
        access: Access,
        zones: Vec<Name>,
        platform: Option<String>,
        now: u64,
    ) -> Result<(ScopedToken, String), TokenStoreError> {
        if !zones.is_empty() && platform.is_some() {
            return Err(TokenStoreError::Invalid(
                "a token is limited to zones or to a platform, not both".into(),
            ));
        }
        let _writer = self.writer.lock().await;
        let clear = format!("mzt_{}", random_hex(32)?);
        let hash = sha256(&clear);
        let token = ScopedToken {
            id: random_hex(6)?,
            name,
            access,
            zones: zones
                .iter()
                .map(|z| {
                    let mut z = z.to_lowercase();
                    z.set_fqdn(true);
                    z.to_ascii()
                })
                .collect(),
            platform,
            created_at: now,
            sha256: hex(&hash),
        };
        let mut next = HashMap::clone(&self.by_hash.load());
        next.insert(hash, Arc::new(token.clone()));
        self.save(&next).await?;
        self.by_hash.store(Arc::new(next));
        tracing::info!(id = %token.id, access = ?token.access, "API token created");
        Ok((token.shown(), clear))
    }

    /// Revokes a token: refused from the moment this returns.
    pub async fn revoke(&self, id: &str) -> Result<(), TokenStoreError> {
        let _writer = self.writer.lock().await;
        let mut next = HashMap::clone(&self.by_hash.load());
        let before = next.len();
        next.retain(|_, t| t.id != id);
        if next.len() == before {
            return Err(TokenStoreError::NotFound(id.to_string()));
        }
        self.save(&next).await?;
        self.by_hash.store(Arc::new(next));
        tracing::info!(id = %id, "API token revoked");
        Ok(())
    }

    /// Writes the whole store (hashes only) atomically, 0600 in the private keys folder.
    async fn save(
        &self,
        tokens: &HashMap<[u8; 32], Arc<ScopedToken>>,
    ) -> Result<(), TokenStoreError> {
        let mut list: Vec<ScopedToken> = tokens.values().map(|t| (**t).clone()).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        let text = serde_yaml::to_string(&StoreFile { tokens: list }).map_err(|e| {
            TokenStoreError::File {
                file: self.file.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let file = self.file.clone();
        let result = tokio::task::spawn_blocking(move || {
            if let Some(dir) = file.parent() {
                crate::durable::create_private_dir(dir)?;
            }
            crate::durable::write_atomically(
                &file,
                text.as_bytes(),
                crate::durable::PRIVATE_FILE_MODE,
            )
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        result.map_err(|e| TokenStoreError::File {
            file: self.file.display().to_string(),
            reason: format!("cannot write: {e}"),
        })
    }

    /// The store's file (for messages).
    pub fn path(&self) -> &Path {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(access: Access, zones: &[&str], platform: Option<&str>) -> Grant {
        Grant::Scoped(Arc::new(ScopedToken {
            id: "x".into(),
            name: String::new(),
            access,
            zones: zones.iter().map(|z| z.to_string()).collect(),
            platform: platform.map(str::to_string),
            created_at: 0,
            sha256: String::new(),
        }))
    }

    fn name(n: &str) -> Name {
        Name::from_ascii(n).unwrap()
    }

    #[test]
    fn a_zone_token_reaches_its_zones_and_names_below_only() {
        let g = scoped(Access::Write, &["shop.test."], None);
        assert!(g.allows(Access::Write, Target::Zone(&name("shop.test."))));
        assert!(g.allows(Access::Write, Target::Zone(&name("www.shop.test."))));
        assert!(!g.allows(Access::Read, Target::Zone(&name("other.test."))));
        assert!(!g.allows(Access::Read, Target::Zone(&name("xshop.test."))));
        assert!(g.allows(
            Access::Write,
            Target::Association(&name("shop.test."), "pro1")
        ));
        assert!(!g.allows(Access::Read, Target::Admin));
    }

    #[test]
    fn a_read_token_cannot_write() {
        let g = scoped(Access::Read, &[], None);
        assert!(g.allows(Access::Read, Target::Zone(&name("any.test."))));
        assert!(!g.allows(Access::Write, Target::Zone(&name("any.test."))));
    }

    #[test]
    fn a_platform_token_reaches_that_platforms_associations_and_no_zone() {
        let g = scoped(Access::Write, &[], Some("pro1"));
        assert!(g.allows(Access::Write, Target::Association(&name("a.test."), "pro1")));
        assert!(!g.allows(
            Access::Write,
            Target::Association(&name("a.test."), "other")
        ));
        assert!(!g.allows(Access::Read, Target::Zone(&name("a.test."))));
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = sha256("abc");
        assert_eq!(unhex(&hex(&h)), Some(h));
        assert_eq!(unhex("zz"), None);
    }
}
