//! DNSSEC online signing: the policy, the zone keys and signing a zone version.
//!
//! This module owns what a signed zone must carry (DNSKEY, CDS and CDNSKEY at the apex, an
//! NSEC or NSEC3 chain, an RRSIG over every authoritative rrset), the signing keys (generated with
//! ring through hickory-proto, PKCS#8 PEM files of mode 0600 under `keys/dnssec/<zone>/`,
//! their state beside the associations in `zones/dnssec/<zone>.yaml`) and the DS records
//! to hand to the parent. Signing reuses every signature of the previous version whose
//! rrset did not change and that does not expire within the refresh window, so a change
//! signs only what it touched. It must not do the writer's job (files are committed by
//! `daemon`), and it must not be reached from the answer path: answers only pick records
//! signed here ([`crate::zone::signed`]).
//!
//! Signatures are made with hickory-proto's `dnssec-ring` pieces: `SigInput` + `TBS` (the
//! RFC 4034 §3.1.8.1 data to be signed, canonical order and names) and `DnssecSigner::sign`
//! over ring's ECDSA P-256 / Ed25519 keys. We do not use `RRSIG::from_rrset` because its
//! inception is exactly "now" and its expiry fixed: we back-date inception and spread
//! expiries with jitter. hickory-server's `InMemoryZoneHandler::secure_zone` re-signs the
//! whole zone on every change and is not our zone model, so it is not used. NSEC3 hashes
//! come from hickory-proto's `Nsec3HashAlgorithm::hash` and its `NSEC3`/`NSEC3PARAM` rdata;
//! hickory-server's NSEC3 chain building is inside `secure_zone`, so it is not used either.

pub mod keys;
pub mod sign;

use serde::{Deserialize, Serialize};

/// The signing algorithm (RFC 8624: 13 recommended, 15 allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmName {
    Ecdsap256sha256,
    Ed25519,
}

impl AlgorithmName {
    pub fn algorithm(self) -> hickory_proto::dnssec::Algorithm {
        match self {
            Self::Ecdsap256sha256 => hickory_proto::dnssec::Algorithm::ECDSAP256SHA256,
            Self::Ed25519 => hickory_proto::dnssec::Algorithm::ED25519,
        }
    }

    pub fn number(self) -> u8 {
        self.algorithm().into()
    }
}

/// One combined signing key, or a key-signing key with a zone-signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyScheme {
    Csk,
    KskZsk,
}

/// Authenticated denial of existence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Denial {
    Nsec,
    /// NSEC3 (RFC 5155) with SHA-1, no extra iterations, no salt and no opt-out (RFC 9276).
    Nsec3,
}

/// The `dnssec:` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Sign every hosted zone; a zone's own setting (`PATCH /v1/zones/{zone}`) wins.
    pub enabled: bool,
    pub algorithm: AlgorithmName,
    pub keys: KeyScheme,
    /// How long a new signature is valid.
    pub validity_secs: u64,
    /// A signature expiring sooner than this is made again.
    pub refresh_secs: u64,
    /// Inception is back-dated by this much, for validators whose clock is behind.
    pub inception_offset_secs: u64,
    /// Each signature's validity is shortened by a random part of this, so that zones
    /// signed together are not all refreshed together.
    pub jitter_secs: u64,
    pub denial: Denial,
    /// TTL of the DNSKEY, CDS and CDNSKEY records.
    pub dnskey_ttl: u32,
    /// Time for a change to reach every secondary and cache; rollover steps wait for it on
    /// top of the TTLs involved.
    pub propagation_secs: u64,
    /// How often the parent's DS set is asked at every parent nameserver while a CSK/KSK
    /// rollover or an unsigning waits for it.
    pub parent_check_secs: u64,
    /// A ZSK is rolled by itself (pre-publication) this long after it began signing; 0:
    /// never. A zone's own setting wins.
    pub zsk_lifetime_secs: u64,
    /// A KSK, or the CSK when the zone has one, is rolled by itself (double DS) this long
    /// after it began signing; 0 (the default): never. A zone's own setting wins.
    pub ksk_lifetime_secs: u64,
}

/// The shortest key lifetime accepted (besides 0, never): a rollover takes at least the
/// DNSKEY TTL and the propagation time, a double-DS one the parent's DS TTL too.
pub const MIN_KEY_LIFETIME_SECS: u64 = 86_400;

/// Checks a key lifetime (`key` names it in the error): 0 or at least a day.
pub fn check_key_lifetime(key: &str, secs: u64) -> Result<(), (String, String)> {
    if secs != 0 && secs < MIN_KEY_LIFETIME_SECS {
        return Err((
            key.to_string(),
            format!(
                "{secs} is below a day: give 0 (never roll) or at least {MIN_KEY_LIFETIME_SECS} seconds"
            ),
        ));
    }
    Ok(())
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            enabled: false,
            algorithm: AlgorithmName::Ecdsap256sha256,
            keys: KeyScheme::Csk,
            validity_secs: 14 * 86400,
            refresh_secs: 7 * 86400,
            inception_offset_secs: 3600,
            jitter_secs: 86400,
            denial: Denial::Nsec,
            dnskey_ttl: 3600,
            propagation_secs: 3600,
            parent_check_secs: 3600,
            zsk_lifetime_secs: 90 * 86400,
            ksk_lifetime_secs: 0,
        }
    }
}

impl Policy {
    /// Checks the figures; the error names the key under `dnssec.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.validity_secs < 3600 {
            return Err((
                "dnssec.validity_secs".into(),
                "must be at least 3600".into(),
            ));
        }
        if self.refresh_secs + self.jitter_secs >= self.validity_secs {
            return Err((
                "dnssec.refresh_secs".into(),
                format!(
                    "refresh_secs + jitter_secs ({}) must be below validity_secs ({}): signatures would be refreshed as soon as made",
                    self.refresh_secs + self.jitter_secs,
                    self.validity_secs
                ),
            ));
        }
        check_key_lifetime("dnssec.zsk_lifetime_secs", self.zsk_lifetime_secs)?;
        check_key_lifetime("dnssec.ksk_lifetime_secs", self.ksk_lifetime_secs)?;
        Ok(())
    }
}
