//! DNSSEC zone keys: generating, storing, loading, and the per-zone state file.
//!
//! A key is a PKCS#8 private key in PEM, `keys/dnssec/<zone>/<id>.pem`, mode 0600 (a looser
//! file is refused, with the `chmod` that fixes it); it is never returned by the API nor
//! logged. What the keys are for and where they are in their life (published, active,
//! retired, removed, with times) is in `zones/dnssec/<zone>.yaml`, beside the associations,
//! with the zone's own on/off setting. This module does no committing: it returns file
//! contents and the daemon's writer commits them with the zone, all or nothing.

use std::path::{Path, PathBuf};

use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::rdata::{DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, DnssecSigner, SigningKey};
use hickory_proto::rr::Name;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};

use super::AlgorithmName;

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Combined signing key: every rrset, DNSKEY included; its DS is at the parent.
    Csk,
    /// Key-signing key: the DNSKEY, CDS and CDNSKEY rrsets; its DS is at the parent.
    Ksk,
    /// Zone-signing key: everything else.
    Zsk,
}

impl Role {
    /// Whether this key's DS belongs at the parent (SEP flag, signs the DNSKEY rrset).
    pub fn is_sep(self) -> bool {
        matches!(self, Role::Csk | Role::Ksk)
    }

    /// Whether it signs the zone's data.
    pub fn signs_data(self) -> bool {
        matches!(self, Role::Csk | Role::Zsk)
    }
}

/// Where a key is in its life (RFC 7583 terms, simplified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// In the DNSKEY rrset, not signing yet.
    Published,
    /// Signing.
    Active,
    /// Still in the DNSKEY rrset, no longer signing.
    Retired,
    /// Gone from the zone; its file is deleted.
    Removed,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Published => "published",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Removed => "removed",
        }
    }
}

/// One key of a zone, as the state file has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The file stem under `keys/dnssec/<zone>/`.
    pub id: String,
    pub role: Role,
    pub algorithm: AlgorithmName,
    pub key_tag: u16,
    pub state: KeyState,
    /// Seconds since the epoch.
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_since: Option<u64>,
    /// A new CSK/KSK of a double-DS rollover: when (signing clock) its DS was first seen at
    /// every nameserver of the parent zone; it signs only after that plus the DS TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_seen_at: Option<u64>,
    /// The largest TTL of that DS at the parent's servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_ttl: Option<u32>,
}

/// A zone's DNSSEC state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneState {
    /// The zone's own setting; absent: the global `dnssec.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The zone's own denial of existence; absent: the global `dnssec.denial`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<super::Denial>,
    #[serde(default)]
    pub keys: Vec<KeyRecord>,
    /// Unsigning (RFC 8078 §4): since when (signing clock) the zone has been publishing the
    /// CDS/CDNSKEY delete records while it stays signed until the parent has no DS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsigning_since: Option<u64>,
    /// When no DS was first seen at any parent nameserver during unsigning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_gone_at: Option<u64>,
    /// The largest DS TTL the parent served during unsigning, which caches may still hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_ttl: Option<u32>,
    /// The zone's own ZSK lifetime; absent: the global `dnssec.zsk_lifetime_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zsk_lifetime_secs: Option<u64>,
    /// The zone's own KSK/CSK lifetime; absent: the global `dnssec.ksk_lifetime_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ksk_lifetime_secs: Option<u64>,
}

impl ZoneState {
    pub fn parse(text: &str, file: &Path) -> Result<Self, KeyError> {
        serde_yaml::from_str(text).map_err(|e| KeyError::File {
            file: file.display().to_string(),
            reason: e.to_string(),
        })
    }

    pub fn to_yaml(&self) -> String {
        let mut out = String::from(
            "# DNSSEC state of this zone, kept by mailzone (see the README, \"DNSSEC\").\n",
        );
        out.push_str(&serde_yaml::to_string(self).unwrap_or_default());
        out
    }

    /// The keys still in the zone.
    pub fn live_keys(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.iter().filter(|k| k.state != KeyState::Removed)
    }
}

/// Why a key cannot be used; always names the file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("cannot generate a {algorithm} key: {reason}")]
    Generate { algorithm: String, reason: String },
}

/// `zones/dnssec/<zone>.yaml`.
pub fn state_file(zones_dir: &Path, origin: &Name) -> PathBuf {
    state_dir(zones_dir).join(state_file_name(origin))
}

/// `zones/dnssec/`: the folder of every zone's state file.
pub fn state_dir(zones_dir: &Path) -> PathBuf {
    zones_dir.join("dnssec")
}

/// `<zone>.yaml`: the name of a zone's state file in [`state_dir`].
pub fn state_file_name(origin: &Name) -> String {
    format!("{}.yaml", zone_stem(origin))
}

/// `keys/dnssec/<zone>/`.
pub fn key_dir(keys_dir: &Path, origin: &Name) -> PathBuf {
    keys_dir.join("dnssec").join(zone_stem(origin))
}

/// `keys/dnssec/<zone>/<id>.pem`.
pub fn key_file(keys_dir: &Path, origin: &Name, id: &str) -> PathBuf {
    key_dir(keys_dir, origin).join(format!("{id}.pem"))
}

fn zone_stem(origin: &Name) -> String {
    let text = crate::zone::writer::name_text(&origin.to_lowercase());
    let stem = text.trim_end_matches('.');
    if stem.is_empty() {
        "root".into()
    } else {
        stem.replace('/', "_")
    }
}

/// A key ready to sign.
pub struct ZoneKey {
    pub record: KeyRecord,
    pub dnskey: DNSKEY,
    pub signer: DnssecSigner,
}

impl std::fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("ZoneKey")
            .field("record", &self.record)
            .finish()
    }
}

impl ZoneKey {
    /// The DS record for the parent (SHA-256, RFC 4509).
    pub fn ds(&self, origin: &Name) -> Result<DS, String> {
        let digest = self
            .dnskey
            .to_digest(origin, DigestType::SHA256)
            .map_err(|e| e.to_string())?;
        Ok(DS::new(
            self.record.key_tag,
            self.record.algorithm.algorithm(),
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        ))
    }
}

fn signing_key(algorithm: Algorithm, der: &[u8]) -> Result<Box<dyn SigningKey>, String> {
    let pkcs8 = PrivatePkcs8KeyDer::from(der.to_vec());
    match algorithm {
        Algorithm::ED25519 => Ed25519SigningKey::from_pkcs8(&pkcs8)
            .map(|k| Box::new(k) as Box<dyn SigningKey>)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}")),
        other => EcdsaSigningKey::from_pkcs8(&pkcs8, other)
            .map(|k| Box::new(k) as Box<dyn SigningKey>)
            .map_err(|e| format!("not an {other} PKCS#8 key: {e}")),
    }
}

fn zone_key(origin: &Name, record: KeyRecord, key: Box<dyn SigningKey>) -> Result<ZoneKey, String> {
    let public = key.to_public_key().map_err(|e| e.to_string())?;
    // The signer must be given the DNSKEY we publish, flags included: its key tag goes into
    // every RRSIG (HICKORY-NOTES §3, the key tag trap).
    let dnskey = DNSKEY::new(true, record.role.is_sep(), false, public);
    let tag = dnskey.calculate_key_tag().map_err(|e| e.to_string())?;
    let signer = DnssecSigner::new(
        dnskey.clone(),
        key,
        origin.to_lowercase(),
        std::time::Duration::from_secs(14 * 86400),
    );
    let mut record = record;
    if record.key_tag != tag && record.key_tag != 0 {
        return Err(format!(
            "the key's tag is {tag}, the state file says {}: not the key it names",
            record.key_tag
        ));
    }
    record.key_tag = tag;
    Ok(ZoneKey {
        record,
        dnskey,
        signer,
    })
}

/// A new key: its record (state `Published`), the key, and the PEM to store (0600).
pub fn generate(
    origin: &Name,
    algorithm: AlgorithmName,
    role: Role,
    now: u64,
) -> Result<(ZoneKey, String), KeyError> {
    let fail = |reason: String| KeyError::Generate {
        algorithm: algorithm.algorithm().to_string(),
        reason,
    };
    let der = match algorithm {
        AlgorithmName::Ed25519 => Ed25519SigningKey::generate_pkcs8(),
        AlgorithmName::Ecdsap256sha256 => EcdsaSigningKey::generate_pkcs8(algorithm.algorithm()),
    }
    .map_err(|e| fail(e.to_string()))?;
    let der = der.secret_pkcs8_der().to_vec();
    let key = signing_key(algorithm.algorithm(), &der).map_err(fail)?;
    let record = KeyRecord {
        id: String::new(),
        role,
        algorithm,
        key_tag: 0,
        state: KeyState::Published,
        created: now,
        active_since: None,
        retired_since: None,
        ds_seen_at: None,
        ds_ttl: None,
    };
    let mut key = zone_key(origin, record, key).map_err(fail)?;
    // The tag alone may repeat across keys of a zone; the creation time makes it unique.
    key.record.id = format!(
        "{}-{}-{:05}-{now}",
        match role {
            Role::Csk => "csk",
            Role::Ksk => "ksk",
            Role::Zsk => "zsk",
        },
        algorithm.number(),
        key.record.key_tag
    );
    Ok((key, crate::dkim::key::to_pem(&der)))
}

/// Loads the key a record names, refusing a file group or others may read.
pub fn load(keys_dir: &Path, origin: &Name, record: &KeyRecord) -> Result<ZoneKey, KeyError> {
    let path = key_file(keys_dir, origin, &record.id);
    let fail = |reason: String| KeyError::File {
        file: path.display().to_string(),
        reason,
    };
    crate::dkim::key::check_file(&path).map_err(|e| match e {
        crate::dkim::key::KeyError::File { reason, .. } => fail(reason),
        other => fail(other.to_string()),
    })?;
    let text = std::fs::read_to_string(&path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let der = crate::dkim::key::from_pem(&text).map_err(fail)?;
    let key = signing_key(record.algorithm.algorithm(), &der).map_err(fail)?;
    zone_key(origin, record.clone(), key).map_err(fail)
}
