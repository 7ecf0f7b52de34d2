//! The web listener's certificates: read from `<keys_dir>/certs/`, chosen by SNI, replaced
//! without a restart.
//!
//! This module owns the certificate folder's layout (`<host>.crt` with the chain in PEM,
//! `<host>.key` with the private key in PEM, mode 0600 and refused when looser; `_.<domain>`
//! for a wildcard certificate of `*.<domain>`; `default` for any other name), reading it,
//! installing a new pair durably (key file first, then the chain, each temp+fsync+rename),
//! and the rustls resolver that picks a certificate per handshake from an `ArcSwap`, so a
//! reload or an installation takes effect at the next handshake. It must not decide when
//! certificates are renewed nor serve HTTP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate pair could not be used; says which file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Default)]
struct Certs {
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// The certificates the web listener presents.
pub struct CertStore {
    dir: PathBuf,
    certs: ArcSwap<Certs>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").field("dir", &self.dir).finish()
    }
}

/// The file stem of a host's certificate: `mta-sts.shop.test`, `_.shop.test`, `default`.
fn stem_ok(stem: &str) -> bool {
    !stem.is_empty()
        && stem.len() <= 253
        && !stem.starts_with('.')
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

/// Reads one `<stem>.crt` / `<stem>.key` pair into a signing certificate.
pub fn read_pair(crt: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let text = |p: &Path| {
        std::fs::read(p).map_err(|source| CertError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let invalid = |p: &Path, reason: String| CertError::Invalid {
        path: p.display().to_string(),
        reason,
    };
    crate::durable::check_private(key, false, "a TLS private key")
        .map_err(|reason| invalid(key, reason))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text(crt)?)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(crt, format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(crt, "no CERTIFICATE block".into()));
    }
    let der = PrivateKeyDer::from_pem_slice(&text(key)?)
        .map_err(|e| invalid(key, format!("not a PEM private key: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| invalid(key, format!("unusable key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| invalid(key, format!("does not match {}: {e}", crt.display())))?;
    Ok(certified)
}

impl CertStore {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            certs: ArcSwap::from_pointee(Certs::default()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads every pair of the folder and serves them from the next handshake on. A pair
    /// that does not load keeps its previous version (if any) and is reported; a missing
    /// folder is no certificates.
    pub fn load(&self) -> Vec<CertError> {
        let mut errors = Vec::new();
        let previous = self.certs.load_full();
        let mut next = Certs::default();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.certs.store(Arc::new(next));
                return errors;
            }
            Err(source) => {
                errors.push(CertError::Read {
                    path: self.dir.display().to_string(),
                    source,
                });
                return errors;
            }
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".crt") else {
                continue;
            };
            if !stem_ok(stem) {
                continue;
            }
            let stem = stem.to_ascii_lowercase();
            let key = self.dir.join(format!("{stem}.key"));
            match read_pair(&entry.path(), &key) {
                Ok(c) => {
                    next.by_name.insert(stem, Arc::new(c));
                }
                Err(e) => {
                    if let Some(old) = previous.by_name.get(&stem) {
                        next.by_name.insert(stem, old.clone());
                    }
                    errors.push(e);
                }
            }
        }
        self.certs.store(Arc::new(next));
        errors
    }

    /// Writes a new pair for `stem` (key 0600 first, then the chain) and serves it from the
    /// next handshake on. Refused, and nothing changed, if the pair does not load.
    pub fn install(&self, stem: &str, chain_pem: &str, key_pem: &str) -> Result<(), CertError> {
        let stem = stem.to_ascii_lowercase();
        if !stem_ok(&stem) {
            return Err(CertError::Invalid {
                path: stem,
                reason: "not a host name".into(),
            });
        }
        crate::durable::create_private_dir(&self.dir).map_err(|source| CertError::Write {
            path: self.dir.display().to_string(),
            source,
        })?;
        let crt = self.dir.join(format!("{stem}.crt"));
        let key = self.dir.join(format!("{stem}.key"));
        // Checked from temp copies first, so a bad pair never replaces a good one.
        let probe_crt = self.dir.join(format!(".{stem}.crt.check"));
        let probe_key = self.dir.join(format!(".{stem}.key.check"));
        let write = |p: &Path, bytes: &[u8], mode: u32| {
            crate::durable::write_atomically(p, bytes, mode).map_err(|source| CertError::Write {
                path: p.display().to_string(),
                source,
            })
        };
        write(&probe_key, key_pem.as_bytes(), 0o600)?;
        write(&probe_crt, chain_pem.as_bytes(), 0o644)?;
        let checked = read_pair(&probe_crt, &probe_key);
        let _ = std::fs::remove_file(&probe_crt);
        let _ = std::fs::remove_file(&probe_key);
        let certified = checked?;
        write(&key, key_pem.as_bytes(), 0o600)?;
        write(&crt, chain_pem.as_bytes(), 0o644)?;
        let mut next = Certs {
            by_name: self.certs.load().by_name.clone(),
        };
        next.by_name.insert(stem, Arc::new(certified));
        self.certs.store(Arc::new(next));
        Ok(())
    }

    /// The certificate for `name` (lower case, no final dot): its own, the wildcard of its
    /// parent, or the default one.
    pub fn find(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.load();
        if let Some(name) = name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(c) = certs.by_name.get(&name) {
                return Some(c.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(c) = certs.by_name.get(&format!("_.{parent}"))
            {
                return Some(c.clone());
            }
        }
        certs.by_name.get("default").cloned()
    }

    /// The leaf certificate (DER) served for `name`, for expiry checks.
    pub fn leaf(&self, name: &str) -> Option<CertificateDer<'static>> {
        self.find(Some(name)).and_then(|c| c.cert.first().cloned())
    }

    /// A rustls server configuration choosing certificates from this store (HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        // ring, like the rest of the crate (no aws-lc C build). rustls marks it deprecated
        // for lacking post-quantum key exchange; what is served here is public anyway.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            // ring's provider supports the safe defaults: this cannot fail.
            .map(|b| b.with_no_client_auth().with_cert_resolver(self.clone()))
            .unwrap_or_else(|_| {
                rustls::ServerConfig::builder()
                    .with_no_client_auth()
                    .with_cert_resolver(self.clone())
            });
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(hello.server_name())
    }
}
